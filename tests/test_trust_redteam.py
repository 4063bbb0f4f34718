"""Red team: an attacker with write access to the store (and sometimes a retired signing key), and a
faulty environment (a writer sealing and rotating concurrently, a writer killed mid-seal).

Each test asserts the secure behaviour: ``verify_store(store, public_keys=[first key])`` reports every
attack, a ``Reader`` never returns forged or altered data without raising IntegrityError, the two agree,
and an intact journal never looks broken. Tests that fail today carry ``xfail(strict=True)`` with what is
wrong; the others are attacks that were tried and held.

Journals: one module template (4 segments of 6 events, row groups of 4: seq 0..23, executions run-alpha,
run-beta, run-gamma) and one rotated template (the same, then a rotation and one segment sealed with the
new key), each copied per test.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wormjournal import Journal, JournalConfig, Reader
from wormjournal.errors import IntegrityError, JournalError
from wormjournal.journal import keys as keys_mod
from wormjournal.journal import wal as walmod
from wormjournal.segments.identity import RetentionPolicy
from wormjournal.segments.keyhistory import KeyEntry, entry_name
from wormjournal.segments.notes import SigningKey, raw_public, split_note
from wormjournal.segments.table import events_to_table, utc_date, write_segment
from wormjournal.storage import layout
from wormjournal.storage.base import ObjectInfo
from wormjournal.storage.local import LocalStore
from wormjournal.trust.policy import PolicySet, policy_in_force
from wormjournal.verify import VerifyReport, verify_store
from wormjournal.verify.proof import check_proof, make_proof

from conftest import (
    BASE_TS,
    History,
    StorePaths,
    build_history,
    copy_history,
    forge_seal,
    make_writable,
    overwrite,
    plant,
    wal_key,
    wal_mac,
)

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("crash_child.py")
STREAM = "main"
SEGMENTS = 4
PER_SEGMENT = 6
CFG = JournalConfig(seal_max_age_seconds=None, row_group_rows=4)
ARABIC = "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"  # Unicode decimal digits (category Nd)
THIEF = [("human_approved", "run-alpha", {"approved": True, "by": "mallory"})]


# -- fixtures ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Rotated:
    h: History
    k0: SigningKey  # the first key, retired by entry 1 (a thief kept a copy)
    k1: SigningKey  # the current key


def _signing_key(h: History) -> SigningKey:
    return keys_mod.load_keys(h.paths.keys, h.journal_id)[0]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> History:
    root = tmp_path_factory.mktemp("redteam")
    return build_history(StorePaths(root / "store", root / "keys"), segments=SEGMENTS, events_per_segment=PER_SEGMENT,
                         config=CFG)


@pytest.fixture(scope="module")
def rotated_template(tmp_path_factory: pytest.TempPathFactory) -> Rotated:
    root = tmp_path_factory.mktemp("redteam-rotated")
    h = build_history(StorePaths(root / "store", root / "keys"), segments=SEGMENTS, events_per_segment=PER_SEGMENT,
                      config=CFG)
    k0 = _signing_key(h)
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        j.rotate_key()
        for i in range(3):
            j.append("node_completed", "run-after", {"i": i}, ts=BASE_TS + dt.timedelta(seconds=100 + i))
        j.seal()
    return Rotated(h, k0, _signing_key(h))


@pytest.fixture
def fresh(template: History, tmp_path: Path) -> History:
    return copy_history(template, tmp_path)


@pytest.fixture
def rfresh(rotated_template: Rotated, tmp_path: Path) -> Rotated:
    return dataclasses.replace(rotated_template, h=copy_history(rotated_template.h, tmp_path))


# -- tools -------------------------------------------------------------------------------------------------------


def verify(h: History, keys: list[Any] | None = None, store: Any = None, **kw: Any) -> VerifyReport:
    return verify_store(store if store is not None else h.store, public_keys=keys or [h.verify_key], **kw)


def kinds(report: VerifyReport) -> set[str]:
    return {f.kind for f in report.findings}


def reader(h: History, **kw: Any) -> Reader:
    return Reader(h.store, public_keys=[h.verify_key], **kw)


def wal_reader(h: History, store: Any = None) -> Reader:
    return Reader(store if store is not None else h.store, public_keys=[h.verify_key], wal_dir=h.paths.store / ".wal",
                  wal_key=wal_key(h.paths.store, h.paths.keys))


def unlink(path: Path) -> None:
    make_writable(path)
    path.unlink()


def arabic(n: int) -> str:
    """``n`` in 12 Arabic-Indic digits: Python's ``\\d`` matches them and ``int()`` reads them."""
    return "".join(ARABIC[int(c)] for c in f"{n:012d}")


def summary(h: History) -> tuple[int, list[int]]:
    """What a clean read says: the event count and run-alpha's seqs."""
    r = reader(h)
    return r.count_events(), [e.seq for e in r.events("run-alpha")]


def key_entry(h: History, n: int) -> KeyEntry:
    return KeyEntry.parse(split_note((h.paths.store / entry_name(n)).read_bytes())[0])


class HookStore(LocalStore):
    """A LocalStore that runs ``hook`` once, right after it lists ``prefix``: what another process did
    between two steps of a reader or of the verifier (a deterministic race)."""

    def __init__(self, root: Path, prefix: str, hook: Callable[[], None] | None = None) -> None:
        super().__init__(root)
        self.prefix, self.hook = prefix, hook

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        found = list(super().list(prefix))
        if prefix == self.prefix and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return iter(found)

    def head(self, name: str) -> ObjectInfo | None:
        """A warm reader asks for the next manifest by name instead of listing: the same step."""
        found = super().head(name)
        if name.startswith(self.prefix) and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return found


def append_and_seal(j: Journal, tag: str, n: int = 2) -> None:
    for i in range(n):
        j.append("node_completed", "run-alpha", {"tag": tag, "i": i}, ts=BASE_TS + dt.timedelta(seconds=200 + i))
    j.seal()


# ================================================================================================================
# 1. Key rotation takes each stream's cutover from an unauthenticated listing (high)
# ================================================================================================================


def test_a_planted_manifest_name_cannot_move_the_rotation_cutover(fresh: History) -> None:
    h = fresh
    stolen = _signing_key(h)  # the thief's copy: the reason the owner rotates
    planted = plant(h, layout.manifest(STREAM, 999_999), b"junk\n")
    try:  # the owner rotates, as `wormjournal rotate-key` does
        keys_mod.rotate_signing_key(h.paths.keys, LocalStore(h.paths.store), h.journal_id, stolen)
    except JournalError:
        return  # refused to extend the history from a store that does not verify: secure
    unlink(planted)
    forge_seal(h.store, stolen, THIEF)  # the retired key seals segment 4
    report = verify(h)
    try:
        seqs = [(e.seq, e.event_type) for e in reader(h).events("run-alpha")]
    except IntegrityError:
        seqs = None
    assert key_entry(h, 1).cutovers == {STREAM: SEGMENTS}, key_entry(h, 1).cutovers
    assert not report.ok and seqs is None, (sorted(kinds(report)), seqs)


# ================================================================================================================
# 2. Concurrency: a writer seals and rotates while a reader or the verifier runs (medium)
# ================================================================================================================


def test_verify_during_a_seal_reports_nothing(fresh: History) -> None:
    h = fresh
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        store = HookStore(h.paths.store, layout.manifests_prefix(STREAM), lambda: append_and_seal(j, "x"))
        report = verify(h, store=store)
    assert verify(h).ok  # the journal is intact
    assert report.ok, sorted(kinds(report))


def test_verify_during_a_rotation_reports_nothing(fresh: History) -> None:
    h = fresh
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        def rotate_and_seal() -> None:
            j.rotate_key()
            append_and_seal(j, "after")
        report = verify(h, store=HookStore(h.paths.store, layout.MANIFESTS_PREFIX, rotate_and_seal))
    assert verify(h).ok
    assert report.ok, sorted(kinds(report))


def test_a_long_lived_reader_survives_a_rotation(fresh: History) -> None:
    h = fresh
    r = reader(h)
    assert r.count_events() == SEGMENTS * PER_SEGMENT
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        own = j.reader()
        own.count_events()
        j.rotate_key()
        append_and_seal(j, "after")
        assert verify(h).ok
        errors = []
        for who, rd in (("Reader", r), ("Journal.reader()", own)):
            try:
                assert rd.count_events() == SEGMENTS * PER_SEGMENT + 2
            except IntegrityError as e:
                errors.append(f"{who}: {e}")
    assert not errors, errors


def test_a_wal_reader_survives_a_concurrent_seal(fresh: History) -> None:
    h = fresh
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        j.append("node_started", "run-alpha", {"u": 1}, ts=BASE_TS + dt.timedelta(seconds=300))
        store = HookStore(h.paths.store, "never")
        r = wal_reader(h, store)
        assert r.count_events() == SEGMENTS * PER_SEGMENT + 1

        def seal_then_append() -> None:
            j.seal()
            j.append("node_started", "run-alpha", {"u": 2}, ts=BASE_TS + dt.timedelta(seconds=301))

        store.prefix, store.hook = layout.manifests_prefix(STREAM), seal_then_append
        try:
            seqs = [e.seq for e in r.events("run-alpha")]
        except IntegrityError as e:
            pytest.fail(f"a concurrent seal broke the read: {e}")
    # One snapshot, taken when the read began (seq 24 appended, 25 not yet); the next read sees 25 too.
    assert seqs[-1] == SEGMENTS * PER_SEGMENT
    assert [e.seq for e in r.events("run-alpha")][-2:] == [SEGMENTS * PER_SEGMENT, SEGMENTS * PER_SEGMENT + 1]


WRITER_LOOP = """
import sys, time
from wormjournal import Journal, JournalConfig
store, keys, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
cfg = JournalConfig(seal_max_age_seconds=None, row_group_rows=4)
end, n = time.monotonic() + seconds, 0
with Journal.open(store, key_dir=keys, config=cfg) as j:
    print("READY", flush=True)
    while time.monotonic() < end:
        for i in range(3):
            j.append("node_started", "run-loop", {"n": n, "i": i})
        j.seal()
        n += 1
"""


def test_verify_in_a_loop_beside_a_sealing_writer_process(fresh: History) -> None:
    h = fresh
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", WRITER_LOOP, str(h.paths.store), str(h.paths.keys), "5"],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    false: list[str] = []
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("READY")
        while proc.poll() is None and not false:
            false += sorted(kinds(verify(h)))
        assert proc.wait(timeout=60) == 0  # the writer stops by itself, its journal closed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert verify(h).ok  # intact once the writer stopped
    assert not false, false


def _crash_first_seal(tmp_path: Path, occurrence: int) -> tuple[Path, Path]:
    """A new journal whose writer process is killed (SIGKILL) when a seal has stored manifest ``occurrence``
    (3 segments a seal: occurrence 1 is inside the first seal, 4 inside the second), before its checkpoint."""
    store, keys = tmp_path / "store", tmp_path / "keys"
    Journal.create(store, key_dir=keys, config=JournalConfig(seal_max_age_seconds=None)).close()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, str(CHILD), "--store", str(store), "--keys", str(keys), "--run-id", "a", "--crash-at",
         "manifest_stored", "--crash-occurrence", str(occurrence), "--max-events", "400", "--seal-max-events", "20",
         "--segment-max-events", "8"], capture_output=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    return store, keys


def _read_everything(store: Path, keys: Path) -> tuple[int, dict[str, list[int]]]:
    from wormjournal.trust import load_trust

    first = load_trust(LocalStore(store)).keys()[:1]
    r = Reader(LocalStore(store), public_keys=first, wal_dir=store / ".wal", wal_key=wal_key(store, keys))
    xs = sorted(s.execution_id for s in r.executions(limit=None))
    return r.count_events(), {x: [e.seq for e in r.events(x)] for x in xs}


def test_reads_during_the_first_seal_in_progress(tmp_path: Path) -> None:
    store, keys = _crash_first_seal(tmp_path, 1)
    try:
        before = _read_everything(store, keys)
    except IntegrityError as e:
        pytest.fail(f"read of a crashed first seal: {e}")
    with Journal.open(store, key_dir=keys, config=JournalConfig(seal_max_age_seconds=None)):
        pass
    assert _read_everything(store, keys) == before


def test_held_reads_and_verify_around_a_writer_killed_mid_seal(tmp_path: Path) -> None:
    """Killed inside its second seal (manifest 3 stored, checkpoint 4 not): the reader reads everything, verify says
    only what FORMAT.md says it says (checkpoint_behind), and after reopening both are clean and agree."""
    store, keys = _crash_first_seal(tmp_path, 4)
    before = _read_everything(store, keys)
    from wormjournal.trust import load_trust

    first = load_trust(LocalStore(store)).keys()[:1]
    assert kinds(verify_store(LocalStore(store), public_keys=first)) <= {"checkpoint_behind", "orphan_object"}
    with Journal.open(store, key_dir=keys, config=JournalConfig(seal_max_age_seconds=None)):
        pass
    assert verify_store(LocalStore(store), public_keys=first).ok
    assert _read_everything(store, keys) == before


# ================================================================================================================
# 3. The writer adopts a planted "next segment" and signs it (medium)
# ================================================================================================================


def test_the_writer_does_not_sign_a_planted_next_segment(fresh: History) -> None:
    h = fresh
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        for i in range(6):
            j.append("node_started", ("run-alpha", "run-beta")[i % 2], {"i": i}, ts=BASE_TS + dt.timedelta(seconds=50))
        wal_dir = h.paths.store / ".wal" / f"stream={STREAM}"
        mac = wal_mac(h.paths.store, h.paths.keys)  # the records are plain text; read here with the key for brevity
        events = [e for p in walmod.list_wal_files(wal_dir) for e in walmod.read_wal(p, mac).events
                  if e.seq >= SEGMENTS * PER_SEGMENT]
        good = write_segment(events, journal_id=h.journal_id, stream=STREAM, segment=SEGMENTS, row_group_rows=4)
        meta = pq.read_table(pa.BufferReader(good)).schema.metadata
        planted = events_to_table(sorted(events, key=lambda e: e.seq)).replace_schema_metadata(meta)  # seq order
        path = h.paths.store / layout.segment(STREAM, utc_date(events[0].ts), SEGMENTS)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(planted, path, row_group_size=4)
        try:
            j.seal()
        except JournalError:
            return  # refused to sign it: secure
    report = verify(h)
    try:
        summary(h)
        raised = None
    except IntegrityError as e:
        raised = str(e)
    assert report.ok and raised is None, (sorted(kinds(report)), raised)


# ================================================================================================================
# 4. verify --since takes deletion for expiry (medium)
# ================================================================================================================


@pytest.mark.xfail(strict=True, reason="with a saved checkpoint (verify --since), manifests, segments and "
                   "checkpoints deleted before it are counted as 'expired' and verify passes, even in a local "
                   "directory whose journal.json has no retention (nothing can expire); the Reader raises")
def test_since_does_not_pass_off_deleted_history_as_expired(fresh: History) -> None:
    h = fresh
    saved = h.checkpoint_path(3).read_bytes()
    for n in (0, 1):
        unlink(h.manifest_path(n))
        unlink(h.segment_path(n))
    for size in (1, 2):
        unlink(h.checkpoint_path(size))
    assert json.loads((h.paths.store / layout.JOURNAL_OBJECT).read_bytes())["retention_mode"] is None
    report = verify(h, since=saved)
    assert not report.ok, [(s.horizon, s.expired_segments) for s in report.streams]


def _rm_tree(path: Path) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            make_writable(f)
    shutil.rmtree(path)


def test_a_stream_truncated_below_its_signed_cutover_is_a_finding(fresh: History) -> None:
    h = fresh
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        j.rotate_key()
    assert key_entry(h, 1).cutovers == {STREAM: SEGMENTS}
    unlink(h.manifest_path(SEGMENTS - 1))
    unlink(h.segment_path(SEGMENTS - 1))
    unlink(h.checkpoint_path(SEGMENTS))
    report = verify(h)
    try:
        count = reader(h).count_events()
    except IntegrityError:
        count = None
    assert not report.ok and count is None, (sorted(kinds(report)), count)


def test_a_stream_named_by_the_key_history_cannot_vanish(fresh: History) -> None:
    h = fresh
    with Journal.open(h.paths.store, key_dir=h.paths.keys, stream="side", config=CFG) as j:
        for i in range(3):
            j.append("node_started", "run-side", {"i": i}, ts=BASE_TS + dt.timedelta(seconds=600 + i))
        j.seal()
        j.rotate_key()
    assert key_entry(h, 1).cutovers == {STREAM: SEGMENTS, "side": 1}
    for prefix in (layout.MANIFESTS_PREFIX, layout.SEGMENTS_PREFIX, layout.CHECKPOINTS_PREFIX, layout.INDEX_PREFIX):
        _rm_tree(h.paths.store / prefix / "stream=side")
    report = verify(h)
    try:
        count = reader(h, stream="side").count_events()
    except IntegrityError:
        count = None
    assert not report.ok and count is None, (sorted(kinds(report)), count)


# ================================================================================================================
# 5. verify and readers disagree (low to medium)
# ================================================================================================================


@pytest.mark.xfail(strict=True, reason="verify ignores index objects, but a reader raises IntegrityError when a "
                   "forged index object would mislead it: the auditor is told the journal is fine while "
                   "events() refuses; pre-planted at the name a seal writes next, the writer keeps the forged "
                   "object (index._put), so the refusal is permanent")
def test_a_forged_index_object_is_reported_when_it_breaks_reads(fresh: History) -> None:
    h = fresh
    truth = summary(h)
    reader = Reader(h.paths.store)
    objects, _ = reader.catalog.cover("executions", reader.refresh())
    (used,) = [o for o in objects if o.first <= 1 <= o.last]  # the object reads use for segment 1
    path = h.paths.store / used.name
    rows = pq.read_table(path).to_pylist()
    for row in rows:
        if row["execution_id"] == "run-alpha" and row["segment"] == 1:
            row["rows"] += 1
            row["last_seq"] += 1
    make_writable(path)
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(path)), path)
    try:
        got, raised = summary(h), False
    except IntegrityError:
        got, raised = None, True
    assert raised or got == truth
    report = verify(h)
    assert not raised or not report.ok, "a read raises IntegrityError, verify reports nothing"


def test_a_format_1_rotated_store_reads_its_erasure_receipts(rfresh: Rotated) -> None:
    h = rfresh.h
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        j.append("node_started", "run-s", {"x": 1}, subject_id="alice", ts=BASE_TS + dt.timedelta(seconds=400))
        j.shred(subject="alice")
        j.seal()
    e0, e1 = key_entry(h, 0), key_entry(h, 1)  # rewrite the history as a format 1 one (what version 1 wrote)
    v0 = dataclasses.replace(e0, identity=None, cutovers=None)
    v1 = dataclasses.replace(e1, identity=None, cutovers=None, prev_entry=v0.entry_hash())
    overwrite(h.paths.store / entry_name(0), v0.sign([rfresh.k0]))
    overwrite(h.paths.store / entry_name(1), v1.sign([rfresh.k0, rfresh.k1]))
    report = verify(h)
    assert report.ok, sorted(kinds(report))  # a legitimate format 1 store: notices only
    assert report.notices
    receipts = [e.event_type for e in reader(h).events("wormjournal-erasures")]
    assert receipts == ["erasure_receipt"]


@pytest.mark.xfail(strict=True, reason="a manifest with a second (cosigner's, unknown) signature line verifies "
                   "(C2SP: unknown signers are ignored), but make_proof copies the note as stored and check_proof "
                   "refuses any note with more than one signature line: verify passes, proofs of the segment fail")
def test_a_cosigned_manifest_still_gives_checkable_proofs(fresh: History) -> None:
    h = fresh
    path = h.manifest_path(2)
    data = path.read_bytes()
    cosig = SigningKey.generate("witness.example/w1").sign_note(split_note(data)[0]).split(b"\n\n", 1)[1]
    overwrite(path, data + cosig)
    assert verify(h).ok
    proof = make_proof(reader(h), seq=2 * PER_SEGMENT + 1)
    check_proof(proof.to_json(), [h.verify_key])


# ================================================================================================================
# 6. Names and keys nobody reports (low)
# ================================================================================================================


def test_a_checkpoint_under_unicode_digits_is_reported(fresh: History) -> None:
    h = fresh
    src = h.checkpoint_path(SEGMENTS)
    plant(h, f"{layout.checkpoints_prefix(STREAM)}{arabic(SEGMENTS)}.note", src.read_bytes())
    assert not verify(h).ok


def test_a_manifest_renamed_to_unicode_digits_is_reported(fresh: History) -> None:
    h = fresh
    src = h.manifest_path(3)
    data = src.read_bytes()
    unlink(src)
    plant(h, f"{layout.manifests_prefix(STREAM)}{arabic(3)}.note", data)
    assert not verify(h).ok


def test_a_reader_refuses_a_homoglyph_stream_name(fresh: History) -> None:
    from wormjournal.errors import ValidationError

    with pytest.raises((ValidationError, JournalError)):
        assert reader(fresh, stream="m\u0430in").count_events() == 0


@pytest.mark.xfail(strict=True, reason="nothing ties the history's end to anything else: a thief with the retired "
                   "key deletes the newest entry (before the new key has sealed) and seals with the old key; an "
                   "auditor who holds the new public key too is not told that the history does not contain it")
def test_an_undone_rotation_is_reported_to_an_auditor_who_knows_the_new_key(fresh: History) -> None:
    h = fresh
    k0 = _signing_key(h)
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        j.rotate_key()
    k1 = _signing_key(h)
    unlink(h.paths.store / entry_name(1))
    forge_seal(h.store, k0, THIEF)
    assert verify(h).ok  # inherent with the first key alone (no saved point): the store is self-consistent
    assert not verify(h, keys=[h.verify_key, k1.verify_key]).ok


@pytest.mark.xfail(strict=True, reason="`wormjournal query` (analytics.connect) reads the segments that signed "
                   "manifests name but never checks their bytes (not even object_sha256): rows altered in place "
                   "are returned with no warning (documented: 'run wormjournal verify for that')")
def test_query_does_not_return_altered_rows(fresh: History) -> None:
    import test_tamper_matrix as tm

    from wormjournal import analytics

    h = fresh

    def edit(ev: list[Any]) -> list[Any]:
        ev[2] = dataclasses.replace(ev[2], event_type="human_approved")
        return ev

    tm.replace_rows(h, 1, edit)  # type: ignore[arg-type]
    assert not verify(h).ok
    try:
        con = analytics.connect(h.store, public_keys=[h.verify_key])
        rows = con.sql("select seq from events where event_type = 'human_approved'").fetchall()
    except JournalError:
        rows = []
    assert rows == []


# ================================================================================================================
# 7. Held: key history tricks (each one ends the accepted history: a finding, and every read refuses)
# ================================================================================================================


def _entry2(r: Rotated, *, v1: bool = False, cutovers: dict[str, int] | None = None, valid_from: str | None = None,
            identity: bytes | None = None) -> tuple[KeyEntry, SigningKey]:
    k2 = SigningKey.generate(r.k0.name)
    e1 = key_entry(r.h, 1)
    entry = KeyEntry(r.h.journal_id, 2, raw_public(k2.verify_key.public), valid_from or "2099-01-01T00:00:00.000000Z",
                     e1.entry_hash(), None if v1 else (identity or e1.identity),
                     None if v1 else (cutovers if cutovers is not None else {STREAM: SEGMENTS + 1}))
    return entry, k2


def _put_entry(r: Rotated, n: int, note: bytes) -> None:
    plant(r.h, entry_name(n), note)


def hist_v1_after_v2(r: Rotated) -> None:
    e, k2 = _entry2(r, v1=True)
    _put_entry(r, 2, e.sign([r.k1, k2]))


def hist_drops_cutover(r: Rotated) -> None:
    e, k2 = _entry2(r, cutovers={"other": 1})
    _put_entry(r, 2, e.sign([r.k1, k2]))


def hist_cutover_back(r: Rotated) -> None:
    e, k2 = _entry2(r, cutovers={STREAM: SEGMENTS - 1})
    _put_entry(r, 2, e.sign([r.k1, k2]))


def hist_three_signatures(r: Rotated) -> None:
    e, k2 = _entry2(r)
    _put_entry(r, 2, e.sign([r.k1, k2, r.k0]))


def hist_new_key_signs_twice(r: Rotated) -> None:
    e, k2 = _entry2(r)
    _put_entry(r, 2, e.sign([k2, k2]))


def hist_unknown_extra_signature(r: Rotated) -> None:
    e, k2 = _entry2(r)
    _put_entry(r, 2, e.sign([r.k1, k2]) + SigningKey.generate("x/y").sign_note(e.text()).split(b"\n\n", 1)[1])


def hist_other_identity(r: Rotated) -> None:
    e, k2 = _entry2(r, identity=b"\x11" * 32)
    _put_entry(r, 2, e.sign([r.k1, k2]))


def hist_valid_from_back(r: Rotated) -> None:
    e, k2 = _entry2(r, valid_from="2000-01-01T00:00:00.000000Z")
    _put_entry(r, 2, e.sign([r.k1, k2]))


def hist_second_entry_1(r: Rotated) -> None:
    plant(r.h, "keys/history/000000000001.note.bak", (r.h.paths.store / entry_name(1)).read_bytes())


def hist_entry_1_under_unicode_digits(r: Rotated) -> None:
    plant(r.h, f"keys/history/{arabic(1)}.note", (r.h.paths.store / entry_name(1)).read_bytes())


def hist_entry_1_13_digits(r: Rotated) -> None:
    path = r.h.paths.store / entry_name(1)
    data = path.read_bytes()
    unlink(path)
    plant(r.h, "keys/history/0000000000001.note", data)


def hist_thief_forks_entry_1(r: Rotated) -> None:
    """The retired key's holder replaces entry 1 by his own rotation (K0 -> his key)."""
    evil = SigningKey.generate(r.k0.name)
    e1 = key_entry(r.h, 1)
    fork = dataclasses.replace(e1, public_key=raw_public(evil.verify_key.public), cutovers={STREAM: 10**6})
    _put_entry(r, 1, fork.sign([r.k0, evil]))


def hist_thief_downgrades_entry_0(r: Rotated) -> None:
    """The retired key's holder rewrites entry 0 as a format 1 entry (journal.json no longer pinned)."""
    e0 = key_entry(r.h, 0)
    _put_entry(r, 0, dataclasses.replace(e0, identity=None, cutovers=None).sign([r.k0]))


def hist_entry_0_signed_twice(r: Rotated) -> None:
    path = r.h.paths.store / entry_name(0)
    data = path.read_bytes()
    overwrite(path, data + data.split(b"\n\n", 1)[1])


HISTORY_ATTACKS = [hist_v1_after_v2, hist_drops_cutover, hist_cutover_back, hist_three_signatures,
                   hist_new_key_signs_twice, hist_unknown_extra_signature, hist_other_identity, hist_valid_from_back,
                   hist_second_entry_1, hist_entry_1_under_unicode_digits, hist_entry_1_13_digits,
                   hist_thief_forks_entry_1, hist_thief_downgrades_entry_0, hist_entry_0_signed_twice]


@pytest.mark.parametrize("attack", HISTORY_ATTACKS, ids=lambda f: f.__name__[5:])
def test_held_key_history_tricks(rfresh: Rotated, attack: Callable[[Rotated], None]) -> None:
    """Each is a finding (key_history, or for the thief's fork the new key's manifest that no longer verifies),
    and every read refuses."""
    attack(rfresh)
    h = rfresh.h
    report = verify(h)
    assert kinds(report) & {"key_history", "manifest_signature"}, sorted(kinds(report))
    with pytest.raises(IntegrityError):
        reader(h).count_events()


def test_held_a_retired_key_signs_nothing_after_its_cutover(rfresh: Rotated) -> None:
    """The thief's seal with the retired key (after a real rotation), and its checkpoint, are findings and refused."""
    forge_seal(rfresh.h.store, rfresh.k0, THIEF)
    assert "key_validity" in kinds(verify(rfresh.h))
    with pytest.raises(IntegrityError):
        reader(rfresh.h).count_events()


# ================================================================================================================
# 8. Held: notes, names, planted files, WAL
# ================================================================================================================


def note_crlf(h: History) -> None:
    p = h.manifest_path(2)
    overwrite(p, p.read_bytes().replace(b"\n", b"\r\n"))


def note_cr_in_signature_line(h: History) -> None:
    p = h.manifest_path(2)
    overwrite(p, p.read_bytes()[:-1] + b"\r\n")


def note_bom(h: History) -> None:
    p = h.manifest_path(2)
    overwrite(p, b"\xef\xbb\xbf" + p.read_bytes())


def note_trailing_blank_line(h: History) -> None:
    p = h.manifest_path(2)
    overwrite(p, p.read_bytes() + b"\n")


def note_untrusted_signature_first(h: History) -> None:
    """A signature line under the journal's key name by a key it does not know, before the signer's."""
    p = h.checkpoint_path(SEGMENTS)
    data = p.read_bytes()
    other = SigningKey.generate(keys_mod.key_name(h.journal_id)).sign_note(split_note(data)[0])
    overwrite(p, other + data.split(b"\n\n", 1)[1])  # an untrusted key's line first, then the real one


def checkpoint_13_digits(h: History) -> None:
    plant(h, f"{layout.checkpoints_prefix(STREAM)}0{SEGMENTS:012d}.note", h.checkpoint_path(SEGMENTS).read_bytes())


def segment_in_another_date_folder(h: History) -> None:
    src = h.segment_path(2)
    data = src.read_bytes()
    unlink(src)
    plant(h, layout.segment(STREAM, "2025-03-15", 2), data)


def planted_manifest_copy_after_a_gap_same_popcount(h: History) -> None:
    plant(h, layout.manifest(STREAM, 6), h.manifest_path(3).read_bytes())  # popcount(6) == popcount(3)


NOTE_ATTACKS = [note_crlf, note_cr_in_signature_line, note_bom, note_trailing_blank_line, checkpoint_13_digits,
                segment_in_another_date_folder, planted_manifest_copy_after_a_gap_same_popcount]


@pytest.mark.parametrize("attack", NOTE_ATTACKS, ids=lambda f: f.__name__)
def test_held_malformed_notes_and_names(fresh: History, attack: Callable[[History], None]) -> None:
    truth = summary(fresh)
    attack(fresh)
    assert not verify(fresh).ok
    try:
        assert summary(fresh) == truth
    except IntegrityError:
        pass


def test_verify_reports_a_manifest_copied_past_a_gap(fresh: History) -> None:
    plant(fresh, layout.manifest(STREAM, 8), fresh.manifest_path(3).read_bytes())  # popcount(8) = 1, frontier of 3: 2
    try:
        report = verify(fresh)
    except IntegrityError:
        raise
    except Exception as e:  # noqa: BLE001 - the property: a report, not a crash
        pytest.fail(f"verify_store crashed: {type(e).__name__}: {e}")
    assert {"manifest_missing", "manifest_identity"} <= kinds(report)
    # A reader starts from the newest checkpoint and reads on until a manifest is missing: the copy past the gap
    # is not part of what it reads, and what it returns is the truth.
    assert reader(fresh).count_events() == SEGMENTS * PER_SEGMENT


def test_held_an_extra_untrusted_signature_line_changes_nothing(fresh: History) -> None:
    """Signature lines of unknown keys (C2SP: ignored) and a duplicated line: nothing signed changes, nothing
    reported."""
    truth = summary(fresh)
    note_untrusted_signature_first(fresh)
    p = fresh.manifest_path(1)
    overwrite(p, p.read_bytes() + p.read_bytes().split(b"\n\n", 1)[1])
    assert verify(fresh).ok
    assert summary(fresh) == truth


def test_held_a_planted_tmp_file_is_invisible_and_unreachable(fresh: History) -> None:
    """`.tmp-<32 hex>` (a put in progress) is not listed anywhere; no object name can reach it (check_name
    refuses dot parts), so a forged segment planted under that name is never read, queried or reported."""
    from wormjournal import analytics

    truth = summary(fresh)
    forged = fresh.segment_path(1).parent / (".tmp-" + "ab" * 16)
    forged.write_bytes(fresh.segment_path(1).read_bytes())
    assert verify(fresh).ok and summary(fresh) == truth
    con = analytics.connect(fresh.store, public_keys=[fresh.verify_key])
    assert con.sql("select count(*) from events").fetchall() == [(SEGMENTS * PER_SEGMENT,)]


def test_held_a_planted_segment_is_not_queried(fresh: History) -> None:
    from wormjournal import analytics

    plant(fresh, layout.segment(STREAM, "2025-03-14", 9), fresh.segment_path(1).read_bytes())
    assert "orphan_object" in kinds(verify(fresh))
    con = analytics.connect(fresh.store, public_keys=[fresh.verify_key])
    assert con.sql("select count(*) from events").fetchall() == [(SEGMENTS * PER_SEGMENT,)]


def _wal_history(h: History) -> list[bytes]:
    """Two unsealed frames in the newest WAL file; returns the file's frames."""
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        j.append("node_started", "run-alpha", {"u": 1}, ts=BASE_TS + dt.timedelta(seconds=500))
        j.append("node_started", "run-alpha", {"u": 2}, ts=BASE_TS + dt.timedelta(seconds=501))
    data = walmod.list_wal_files(h.paths.store / ".wal" / f"stream={STREAM}")[-1].read_bytes()
    frames, pos = [], walmod.HEADER_SIZE
    while pos < len(data):
        (body,) = struct.unpack_from(">I", data, pos)
        frames.append(data[pos : pos + 8 + body + 32])
        pos += 8 + body + 32
    return frames


def wal_frame_replayed(h: History, wal: Path, header: bytes, frames: list[bytes]) -> None:
    wal.write_bytes(header + b"".join(frames) + frames[-1])


def wal_frames_swapped(h: History, wal: Path, header: bytes, frames: list[bytes]) -> None:
    wal.write_bytes(header + frames[1] + frames[0])


def wal_of_another_journal_stream(h: History, wal: Path, header: bytes, frames: list[bytes]) -> None:
    """The same frames, MAC'd for stream 'side' (another stream's WAL copied in)."""
    from wormjournal.storage.wal import WalMac, _decode_body

    mac = WalMac(wal_key(h.paths.store, h.paths.keys), h.journal_id, "side")
    out = header
    for f in frames:
        (body_len,) = struct.unpack_from(">I", f, 0)
        out += walmod.encode_frame(_decode_body(f[8 : 8 + body_len]), mac)
    wal.write_bytes(out)


@pytest.mark.parametrize("attack", [wal_frame_replayed, wal_frames_swapped, wal_of_another_journal_stream],
                         ids=lambda f: f.__name__)
def test_held_wal_frames_out_of_place(fresh: History, attack: Callable[..., None]) -> None:
    frames = _wal_history(fresh)
    wal = walmod.list_wal_files(fresh.paths.store / ".wal" / f"stream={STREAM}")[-1]
    header = wal.read_bytes()[: walmod.HEADER_SIZE]
    make_writable(wal)
    attack(fresh, wal, header, frames)
    with pytest.raises(IntegrityError):
        wal_reader(fresh).events("run-alpha")


def test_held_an_old_sealed_wal_file_copied_back_is_passed_over(fresh: History, tmp_path: Path) -> None:
    """A WAL file kept by the attacker from before a seal (its events sealed since) adds nothing."""
    wal_dir = fresh.paths.store / ".wal" / f"stream={STREAM}"
    _wal_history(fresh)
    kept = {p.name: p.read_bytes() for p in walmod.list_wal_files(wal_dir)}
    with Journal.open(fresh.paths.store, key_dir=fresh.paths.keys, config=CFG) as j:
        j.seal()
        j.append("node_started", "run-alpha", {"u": 3}, ts=BASE_TS + dt.timedelta(seconds=502))
    truth = [e.seq for e in wal_reader(fresh).events("run-alpha")]
    for name, data in kept.items():
        if not (wal_dir / name).exists():
            (wal_dir / name).write_bytes(data)
    assert [e.seq for e in wal_reader(fresh).events("run-alpha")] == truth


# ================================================================================================================
# 9. Held: retention policy objects signed by a retired key (FORMAT.md 9: any key of the history may sign one)
# ================================================================================================================


def test_held_a_retired_key_can_only_strengthen_the_policy(rfresh: Rotated) -> None:
    base = RetentionPolicy("COMPLIANCE", 365)
    keys = [rfresh.h.verify_key, rfresh.k1.verify_key]
    weaker = PolicySet(journal=RetentionPolicy("GOVERNANCE", 30), number=1).sign(rfresh.k0)
    stronger = PolicySet(journal=RetentionPolicy("COMPLIANCE", 400), number=1).sign(rfresh.k0)
    unknown = PolicySet(journal=RetentionPolicy("COMPLIANCE", 400), number=1).sign(SigningKey.generate(rfresh.k0.name))
    name = layout.retention_policy(1)
    in_force, problems = policy_in_force([(name, weaker)], base, keys)
    assert in_force.number == 0 and problems
    in_force, problems = policy_in_force([(name, unknown)], base, keys)
    assert in_force.number == 0 and problems
    in_force, problems = policy_in_force([(name, stronger)], base, keys)
    assert in_force.number == 1 and not problems
    # The same object also under a name of Unicode digits: out of sequence, not in force twice.
    in_force, problems = policy_in_force([(name, stronger), (f"retention/policy/{arabic(1)}.note", stronger)],
                                         base, keys)
    assert in_force.number == 1 and problems
