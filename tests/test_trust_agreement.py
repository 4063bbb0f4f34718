"""Trust agreement: the auditor (verify_store) and the reader (every Reader method) agree on each forgery.

One table of attacks, each applied to a private copy of one template journal (stream ``main``, 5
segments of 9 events, row groups of 4 rows: the journal of tests/test_tamper_matrix.py). For each
case, both sides run against the attacked copy, trusting only the journal's first public key:

* ``verify_store`` must report at least one finding (``report.ok`` is False);
* every read method of :class:`wormjournal.Reader` (a fresh Reader per call) must either raise
  :class:`~wormjournal.errors.IntegrityError` or return exactly what it returns on the clean
  template (the "truth", computed once). It must never return anything else without raising:
  no forged event, no missing one, no wrong count. Cases marked ``all_reads_raise`` are breaks a
  reader can see from the manifests, checkpoints and key history alone: there EVERY method must
  raise IntegrityError.

The first part of the table is the tamper matrix (test_tamper_matrix.CASES, same attack functions,
verify run as the matrix runs it, with the auditor's saved point where the case has one); the second
part is the forgeries of issue 17 (a retired key that still signs, a backdated manifest, the key
history or journal.json removed or replaced, checkpoints re-signed or extended, row groups that are
not Merkle blocks, stray objects, the newest manifest removed, lying footer statistics, a forged
write-ahead log frame).

Cases that fail today carry ``xfail(strict=True, raises=PropertyViolation)``: once the fix lands they
XPASS, which fails the run: remove their marker then. An attack that breaks (any other exception) is a
plain failure, never an expected one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import test_tamper_matrix as tm

import wormjournal.errors as errors_mod
from wormjournal import Event, ExecutionSummary, Reader, ResumePoint
from wormjournal.errors import IntegrityError, JournalError, NotFoundError
from wormjournal.events import StoredEvent, canonical_json, encode_fields, event_hash, format_ts, now_micros
from wormjournal.journal import Journal
from wormjournal.journal import keys as keys_mod
from wormjournal.journal import wal as walmod
from wormjournal.segments.keyhistory import HISTORY_PREFIX, KeyEntry, entry_name
from wormjournal.segments.manifest import NO_VERSION, Checkpoint, Manifest, checkpoint_origin
from wormjournal.segments.notes import SigningKey, split_note
from wormjournal.segments.table import read_segment, segment_merkle_root, table_to_events, utc_date, write_segment
from wormjournal.storage import layout
from wormjournal.verify import verify_store

from conftest import BASE_TS, History, StorePaths, build_history, make_writable, overwrite, plant, wal_key, wal_mac

# Raised by the fix when a key that a rotation retired signs; until then any refusal will do.
KeyRetiredError: type[JournalError] = getattr(errors_mod, "KeyRetiredError", JournalError)

STREAM = tm.STREAM
SEGMENTS = tm.SEGMENTS  # 5 segments of tm.PER_SEGMENT (9) events: seq 0..44
CFG = tm.CFG


class PropertyViolation(AssertionError):
    """The property under test does not hold (the only failure an xfail marker of this file expects)."""


# -- what is read ------------------------------------------------------------------------------------------------

# run-alpha and run-beta have events in every segment (every attacked one); run-alpha is where the
# forgeries put a human_modified / human_approved event. run-thief does not exist in the clean journal:
# the forged segments (the matrix's thief, and ours) hold it.
EXECUTIONS = ("run-alpha", "run-beta", "run-thief")
AFTER_SEQ = 20
THREADS = ("thread-1",)
TENANT = "tenant-a"
# Events by seq whose ids are looked up: in segments 1 and 2 (the attacked ones) and the last one.
LOOKUP_SEQS = (tm.seq_of(1, 2), tm.seq_of(2, 2), tm.seq_of(4, 8))
# Ids the forgeries of this file give their events: never found in the clean journal.
FORGED_IDS = ("evt-retired-2", "evt-backdated-2", "evt-wal-fake")
FIND_TYPES = ("tool_called", "node_completed", "human_modified", "human_approved")
WINDOWS = (  # [since, until): inside segments 1..3; from segment 3 to far in the future (forged segments)
    (BASE_TS + dt.timedelta(seconds=10), BASE_TS + dt.timedelta(seconds=30)),
    (BASE_TS + dt.timedelta(seconds=30), dt.datetime(2100, 1, 1, tzinfo=dt.UTC)),
)

Call = tuple[str, Callable[[Reader], Any]]


def read_calls(event_ids: dict[int, str]) -> list[Call]:
    """Every read method of Reader, with the arguments that cover the attacked data."""
    calls: list[Call] = []
    for x in EXECUTIONS:
        calls += [
            (f"replay({x})", lambda r, x=x: list(r.replay(x))),
            (f"events({x})", lambda r, x=x: r.events(x)),
            (f"events_after({x}, {AFTER_SEQ})", lambda r, x=x: r.events_after(x, AFTER_SEQ)),
            (f"latest_seq({x})", lambda r, x=x: r.latest_seq(x)),
            (f"execution_exists({x})", lambda r, x=x: r.execution_exists(x)),
            (f"count_events({x})", lambda r, x=x: r.count_events(x)),
            (f"state_at({x})", lambda r, x=x: r.state_at(x)),
            (f"resume_point({x})", lambda r, x=x: r.resume_point(x)),
            (f"segments_of(execution_id={x})", lambda r, x=x: r.segments_of(execution_id=x)),
        ]
    calls.append(("count_events()", lambda r: r.count_events()))
    calls += [(f"thread_events({t})", lambda r, t=t: r.thread_events(t)) for t in THREADS]
    calls += [("executions()", lambda r: r.executions()),
              (f"executions({TENANT})", lambda r: r.executions(TENANT))]
    calls += [(f"get_event(<id of seq {seq}>)", lambda r, i=event_ids[seq]: r.get_event(i)) for seq in LOOKUP_SEQS]
    calls += [(f"get_event({i})", lambda r, i=i: r.get_event(i)) for i in FORGED_IDS]
    calls += [(f"find(event_type={t})", lambda r, t=t: r.find(event_type=t)) for t in FIND_TYPES]
    calls += [(f"find(since={a:%H:%M:%S}, until={b:%Y-%m-%d})", lambda r, a=a, b=b: r.find(since=a, until=b))
              for a, b in WINDOWS]
    return calls


def normalise(value: Any) -> Any:
    """Plain, comparable data: Events, summaries and resume points by every field they carry."""
    if isinstance(value, (Event, ExecutionSummary, ResumePoint)):
        return (type(value).__name__, normalise(value.to_dict()))
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one read did: returned ``value``, or raised ``error`` (in the constructor when ``in_ctor``)."""

    value: Any = None
    error: BaseException | None = None
    in_ctor: bool = False

    def same_as(self, truth: Outcome) -> bool:
        if self.error is not None or truth.error is not None:
            return type(self.error) is type(truth.error) and not self.in_ctor and not truth.in_ctor
        return self.value == truth.value

    def describe(self, limit: int = 300) -> str:
        if self.error is not None:
            where = "Reader() raised" if self.in_ctor else "raised"
            return f"{where} {type(self.error).__name__}: {str(self.error)[:limit]}"
        return _short(self.value, limit)


def _short(value: Any, limit: int) -> str:
    if isinstance(value, list) and value and all(isinstance(v, tuple) and v[0] == "Event" for v in value):
        return f"{len(value)} events, seqs {[v[1]['seq'] for v in value]}"[:limit]
    if isinstance(value, tuple) and value and value[0] == "Event":
        return f"event seq {value[1]['seq']} {value[1]['event_type']} {value[1]['event_id']}"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _first_difference(got: Any, truth: Any) -> str:
    """Where two normalised values first differ (for a readable failure)."""
    if isinstance(got, list) and isinstance(truth, list):
        for i, (a, b) in enumerate(zip(got, truth, strict=False)):
            if a != b:
                return f"item {i}: " + _first_difference(a, b)
        return f"{len(got)} items, not {len(truth)}"
    if isinstance(got, tuple) and isinstance(truth, tuple) and got[:1] == truth[:1] and len(got) == len(truth) == 2:
        return _first_difference(got[1], truth[1])
    if isinstance(got, dict) and isinstance(truth, dict):
        keys = [k for k in {**truth, **got} if got.get(k) != truth.get(k)]
        return ", ".join(f"{k}={_short(got.get(k), 80)} (truth {_short(truth.get(k), 80)})" for k in keys[:4])
    return f"{_short(got, 120)} (truth {_short(truth, 120)})"


def run_reads(h: History, calls: list[Call], *, wal: bool = False) -> dict[str, Outcome]:
    """Every call, each on a fresh Reader that trusts the journal's first public key only."""
    out: dict[str, Outcome] = {}
    wal_dir = h.paths.store / ".wal" if wal else None
    for label, call in calls:
        try:
            reader = Reader(h.store, public_keys=[h.verify_key], wal_dir=wal_dir,
                            wal_key=wal_key(h.paths.store, h.paths.keys) if wal else None)
        except Exception as e:  # noqa: BLE001 - judged below
            out[label] = Outcome(error=e, in_ctor=True)
            continue
        try:
            out[label] = Outcome(value=normalise(call(reader)))
        except Exception as e:  # noqa: BLE001 - judged below
            out[label] = Outcome(error=e)
    return out


# -- fixtures: one template journal per module, its truth, a private copy per case --------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> History:
    root = tmp_path_factory.mktemp("trust-template")
    return build_history(StorePaths(root / "store", root / "keys"), segments=SEGMENTS,
                         events_per_segment=tm.PER_SEGMENT, config=CFG)


@pytest.fixture(scope="module")
def calls(template: History) -> list[Call]:
    ids = {e.seq: e.event_id for n in range(SEGMENTS) for e in tm.events_of(template, n)}
    return read_calls(ids)


@pytest.fixture(scope="module")
def truth(template: History, calls: list[Call]) -> dict[str, Outcome]:
    """What every read returns on the clean template."""
    return run_reads(template, calls)


@pytest.fixture
def fresh(template: History, tmp_path: Path) -> History:
    """A copy of the template journal (store with its WAL directory, and key directory) to attack."""
    paths = StorePaths(tmp_path / "store", tmp_path / "keys")
    shutil.copytree(template.paths.store, paths.store, symlinks=True)
    shutil.copytree(template.paths.keys, paths.keys, symlinks=True)
    return dataclasses.replace(template, paths=paths, manifests=list(template.manifests))


# -- attack tools ------------------------------------------------------------------------------------------------


def stored_manifests(h: History) -> list[Manifest]:
    """The store's manifests 0..n-1 as they are now (parsed, not verified)."""
    out = []
    for n in range(10**6):
        path = h.paths.store / layout.manifest(STREAM, n)
        if not path.exists():
            return out
        out.append(Manifest.parse(split_note(path.read_bytes())[0]))
    return out


def execution_heads(h: History, manifests: list[Manifest]) -> dict[str, int]:
    """The last seq of each execution in the stored segments (what exec_prev_seq links to)."""
    heads: dict[str, int] = {}
    for m in manifests:
        for e in table_to_events(read_segment((h.paths.store / m.object).read_bytes())):
            heads[e.execution_id] = max(heads.get(e.execution_id, -1), e.seq)
    return heads


def make_events(specs: list[dict[str, Any]], *, seq: int, prev: bytes, heads: dict[str, int],
                ts: int) -> list[StoredEvent]:
    """Correctly chained events (hash chain and exec_prev_seq links) continuing at ``seq`` / ``prev``."""
    out = []
    for spec in specs:
        x = spec["execution_id"]
        e = StoredEvent(seq=seq, event_id=spec["event_id"], ts=ts, event_type=spec["event_type"],
                        tenant_id=spec.get("tenant_id"), execution_id=x, thread_id=spec.get("thread_id"), node=None,
                        step_id=None, parent_event_id=None, correlation_id=None, subject_id=None,
                        exec_prev_seq=heads.get(x), payload_codec="json", payload_key_id=None,
                        payload=canonical_json(spec["payload"]), prev_hash=prev, hash=b"")
        e = dataclasses.replace(e, hash=event_hash(prev, encode_fields(e.field_values())))
        out.append(e)
        heads[x], seq, prev = e.seq, e.seq + 1, e.hash
    return out


def forge_seal(h: History, key: SigningKey, specs: list[dict[str, Any]], *, when: int | None = None) -> Manifest:
    """Seal ``specs`` by hand into the next segment, as the library would (links, frontier, Merkle root),
    its manifest timed ``when`` (default now; the events' ts too) and it and a checkpoint over every
    manifest signed with ``key``. No index lines: readers read the segment directly."""
    manifests = stored_manifests(h)
    last = manifests[-1]
    when = now_micros() if when is None else when
    events = make_events(specs, seq=last.last_seq + 1, prev=last.last_hash, heads=execution_heads(h, manifests),
                         ts=when)
    n = len(manifests)
    name = layout.segment(STREAM, utc_date(when), n)
    data = write_segment(events, journal_id=h.journal_id, stream=STREAM, segment=n, row_group_rows=tm.ROWS)
    plant(h, name, data)
    m = Manifest(journal=h.journal_id, stream=STREAM, segment=n, first_seq=events[0].seq, last_seq=events[-1].seq,
                 events=len(events), prev_hash=events[0].prev_hash, last_hash=events[-1].hash,
                 merkle_root=segment_merkle_root(events), object=name, object_size=len(data),
                 object_sha256=hashlib.sha256(data).digest(), object_version=NO_VERSION,
                 prev_manifest=last.manifest_hash(), frontier=tuple(last.tree_after()), key_id=key.verify_key.key_id,
                 time=format_ts(when))
    plant(h, layout.manifest(STREAM, n), m.sign(key))
    hashes = [x.manifest_hash() for x in manifests] + [m.manifest_hash()]
    plant(h, layout.checkpoint(STREAM, n + 1),
        Checkpoint.for_manifests(checkpoint_origin(h.journal_id, STREAM), hashes).sign(key))
    return m


def steal_then_rotate(h: History) -> SigningKey:
    """A thief copies the key directory; then the owner rotates the key (no seal after it)."""
    stolen = h.paths.keys.parent / "stolen-keys"
    shutil.copytree(h.paths.keys, stolen)
    tm.rotate(h)
    return SigningKey.from_pem(keys_mod.key_name(h.journal_id),
                               (stolen / h.journal_id / keys_mod.SIGNING_FILE).read_bytes())


def key_entry(h: History, n: int) -> KeyEntry:
    return KeyEntry.parse(split_note((h.paths.store / entry_name(n)).read_bytes())[0])


def remove(h: History, *paths: Path) -> None:
    tm.remove(h, *paths)


# -- the attacks of issue 17 -------------------------------------------------------------------------------------

THIEF_EVENTS = [{"event_type": "node_completed", "execution_id": "run-thief", "payload": {"i": i},
                 "event_id": f"evt-thief-{i}"} for i in range(3)]


def old_key_signs_after_rotation(h: History) -> None:
    """The matrix's attack (the library seals with the stolen old key after a rotation); once the library
    refuses to, the same segment forged by hand with the old key."""
    stolen = tm.stolen_key(h)
    try:
        tm.old_key_signs_after_rotation(h)
    except JournalError:  # KeyRetiredError, after the fix
        forge_seal(h, stolen, THIEF_EVENTS)


RETIRED_EVENTS = [
    {"event_type": "node_completed", "execution_id": "run-thief", "payload": {"i": 1}, "event_id": "evt-retired-1"},
    {"event_type": "human_modified", "execution_id": "run-alpha", "payload": {"new_state": {"amount": 1}},
     "thread_id": "thread-1", "tenant_id": "tenant-a", "event_id": "evt-retired-2"},
    {"event_type": "node_completed", "execution_id": "run-thief", "payload": {"i": 3}, "event_id": "evt-retired-3"},
]


def retired_key_still_writes(h: History) -> None:
    """After a rotation, the old signing.pem is put back and the journal opened and sealed with it: a
    human_modified event lands in run-alpha. If the library refuses, the segment is forged by hand."""
    old = steal_then_rotate(h)
    (h.paths.keys / h.journal_id / keys_mod.SIGNING_FILE).write_bytes(old.private_pem())
    try:
        with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
            for spec in RETIRED_EVENTS:
                fields = {k: v for k, v in spec.items() if k not in ("event_type", "execution_id", "payload")}
                j.append(spec["event_type"], spec["execution_id"], spec["payload"], **fields)
            j.seal()
    except JournalError:  # KeyRetiredError, after the fix: the thief writes the segment himself
        forge_seal(h, old, RETIRED_EVENTS)
    assert len(stored_manifests(h)) == SEGMENTS + 1


BACKDATED_EVENTS = [
    {"event_type": "node_completed", "execution_id": "run-thief", "payload": {"i": 1}, "event_id": "evt-backdated-1"},
    {"event_type": "human_modified", "execution_id": "run-alpha", "payload": {"new_state": {"amount": 2}},
     "thread_id": "thread-1", "tenant_id": "tenant-a", "event_id": "evt-backdated-2"},
]


def backdated_manifest(h: History) -> None:
    """The stolen old key seals a segment after the rotation, its manifest (and events) dated just before
    the rotation, inside the old key's validity; a checkpoint over it signed with the old key too."""
    old = steal_then_rotate(h)
    valid_from = key_entry(h, 1).valid_from_micros
    m = forge_seal(h, old, BACKDATED_EVENTS, when=valid_from - 1)
    assert stored_manifests(h)[SEGMENTS - 1].time < m.time < key_entry(h, 1).valid_from


def key_history_removed(h: History) -> None:
    remove(h, *sorted((h.paths.store / HISTORY_PREFIX).iterdir()))


def journal_json_removed(h: History) -> None:
    remove(h, h.paths.store / layout.JOURNAL_OBJECT)


def journal_json_replaced(h: History) -> None:
    """Same journal id, weaker retention (GOVERNANCE, 1 day), in canonical form."""
    path = h.paths.store / layout.JOURNAL_OBJECT
    doc = json.loads(path.read_bytes())
    doc.update(retention_mode="GOVERNANCE", retention_days=1)
    overwrite(path, (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode())


def checkpoint_resigned_by_retired_key(h: History) -> None:
    """After a rotation and one seal with the new key, the latest checkpoint (same text) re-signed by the old key."""
    old = steal_then_rotate(h)
    tm.seal_one(h, "after-rotation")
    path = h.checkpoint_path(SEGMENTS + 1)
    overwrite(path, old.sign_note(split_note(path.read_bytes())[0]))


def checkpoint_extension_line(h: History) -> None:
    """The latest checkpoint re-signed (current key) with an extension line wormjournal never writes."""
    path = h.checkpoint_path(SEGMENTS)
    overwrite(path, tm.stolen_key(h).sign_note(split_note(path.read_bytes())[0] + "extra line\n"))


def row_groups_not_merkle_blocks(h: History) -> None:
    """Segment 2 rewritten in row groups of 3 rows (the footer still says blocks of 4): the same rows, the
    same metadata, so the same Merkle root; its manifests re-signed (object size and SHA-256) with the
    stolen key."""
    path = h.segment_path(2)
    table = pq.read_table(path)
    make_writable(path)
    pq.write_table(table, path, compression="zstd", row_group_size=3)
    data = path.read_bytes()
    assert pq.read_table(path).equals(table) and pq.ParquetFile(path).metadata.num_row_groups == 3
    assert pq.read_table(path).schema.metadata == table.schema.metadata
    tm.reseal(h, 2, edit=lambda n, m: dataclasses.replace(
        m, object_size=len(data), object_sha256=hashlib.sha256(data).digest()) if n == 2 else m)


def stray_note_in_manifests(h: History) -> None:
    plant(h, layout.manifests_prefix(STREAM) + "foo.note", b"not a manifest\n")


def dot_named_segment_object(h: History) -> None:
    date = layout.parse_segment(h.manifests[4].object)[1]  # type: ignore[index]
    plant(h, f"{layout.stream_segments_prefix(STREAM)}date={date}/.hidden", h.segment_path(4).read_bytes())


def segment_under_invalid_stream_name(h: History) -> None:
    plant(h, f"{layout.SEGMENTS_PREFIX}stream=bad name!/x.parquet", h.segment_path(4).read_bytes())


def newest_manifest_removed(h: History) -> None:
    remove(h, h.manifest_path(SEGMENTS - 1))


def footer_statistics_edited(h: History) -> None:
    """Segment 1's Parquet footer edited in place: every row group's event_type min/max become "zzz..." and
    its ts min/max 1970, so that statistics rule every row group out; the rows are untouched."""
    path = h.segment_path(1)
    data = path.read_bytes()
    rows = pq.read_table(path)
    (footer_len,) = struct.unpack("<I", data[-8:-4])
    start = len(data) - 8 - footer_len
    md = pq.ParquetFile(path).metadata
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    type_col, ts_col = names.index("event_type"), names.index("ts")
    types: set[bytes] = set()
    stamps: set[bytes] = set()
    for j in range(md.num_row_groups):
        st = md.row_group(j).column(type_col).statistics
        types |= {st.min.encode(), st.max.encode()}
        ts = md.row_group(j).column(ts_col).statistics
        for v in (ts.min, ts.max):
            stamps.add(struct.pack("<q", int((v - dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
                                             / dt.timedelta(microseconds=1))))
    footer = data[start:-8]
    for raw in sorted(types, key=len, reverse=True):
        footer = footer.replace(raw, b"z" * len(raw))
    for raw in stamps:
        footer = footer.replace(raw, struct.pack("<q", 0))
    assert len(footer) == footer_len
    overwrite(path, data[:start] + footer + data[-8:])
    md = pq.ParquetFile(path).metadata  # the footer still parses, and its statistics now lie
    for j in range(md.num_row_groups):
        st, ts = md.row_group(j).column(type_col).statistics, md.row_group(j).column(ts_col).statistics
        assert st.min.startswith("zzz") and st.max.startswith("zzz"), (st.min, st.max)
        assert ts.max.year == 1970, ts.max
    assert pq.read_table(path).equals(rows)


WAL_FAKE = {"event_type": "human_approved", "execution_id": "run-alpha", "payload": {"approved": True, "by": "mallory"},
            "thread_id": "thread-1", "tenant_id": "tenant-a", "event_id": "evt-wal-fake"}


def forged_wal_event(h: History) -> None:
    """A correctly chained, CRC-valid frame holding a fake human_approved event, appended to the newest WAL file.
    The attacker can write the WAL directory but has not the key directory: the frame's MAC is under a key of
    its own (the chain head is read as anyone can, here with the real key for brevity)."""
    wal_dir = h.paths.store / ".wal" / f"stream={STREAM}"
    path = walmod.list_wal_files(wal_dir)[-1]
    contents = walmod.read_wal(path, wal_mac(h.paths.store, h.paths.keys))
    last = contents.events[-1] if contents.events else None
    seq, prev = (last.seq + 1, last.hash) if last else (contents.header.first_seq, contents.header.prev_hash)
    (e,) = make_events([WAL_FAKE], seq=seq, prev=prev, heads=execution_heads(h, stored_manifests(h)),
                       ts=tm.seq_of(SEGMENTS, 0) * 1_000_000 + int(BASE_TS.timestamp() * 1_000_000))
    make_writable(path)
    with open(path, "ab") as f:
        f.write(walmod.encode_frame([(encode_fields(e.field_values()), e.hash)],
                                    walmod.WalMac(os.urandom(32), h.journal_id, STREAM)))


# -- the table ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    attack: Callable[[History], None]
    all_reads_raise: bool = False
    xfail: str | None = None  # why it fails today (issue 17); None: it passes
    since: Callable[[History], bytes] | None = None  # the auditor's saved point, taken before the attack
    run: Callable[[History, bytes | None], list[Any]] | None = None  # the verify side, when not verify_store
    ctor_errors: tuple[type[BaseException], ...] = (IntegrityError,)  # what Reader() may raise instead
    verify_errors: tuple[type[BaseException], ...] = ()  # what verify_store may raise instead of a finding
    wal: bool = False  # reads see the writer's WAL directory; verify cannot see unsealed data

    def param(self) -> Any:
        reason = self.xfail if self.xfail is None or self.xfail.startswith("issue ") else f"issue 17: {self.xfail}"
        marks = () if reason is None else pytest.mark.xfail(strict=True, raises=PropertyViolation, reason=reason)
        return pytest.param(self, id=self.id, marks=marks)


# Stream-level breaks every read sees: in the key history, the newest checkpoint or the manifests after it, which
# each Reader reads first. (A checkpoint behind the manifests is not one: to a reader it is a seal in progress,
# whose manifests are signed and linked, so reads return the whole truth while verify reports checkpoint_behind.)
# A manifest removed, swapped or with a broken signature elsewhere is refused by the reads that need it (each
# is checked against the hash the newest checkpoint commits to); the others return the truth: a reader reads
# the manifests of what it returns, not every manifest (FORMAT.md 10, "Readers").
MATRIX_ALL_READS_RAISE = {
    "last_segment_and_manifest_deleted", "last_segment_manifest_checkpoint_deleted",
    "old_key_signs_after_rotation", "key_history_entry_removed", "key_history_entry_altered",
}
MATRIX_ATTACKS = {"old_key_signs_after_rotation": old_key_signs_after_rotation}
# What is missing today, per case of the matrix that fails the property.
NO_SAVED_POINT = ("issue 22, by design: the store alone is consistent, its heads removed or re-signed too (plain "
                  "verify passes too; verify --since, or a witness's cosigned head, finds it): a Reader takes neither "
                  "to compare with")
MATRIX_XFAIL: dict[str, str] = {
    "last_segment_manifest_checkpoint_deleted": NO_SAVED_POINT,
    "checkpoint_rolled_back": NO_SAVED_POINT,
    "tail_rewritten_and_resigned": NO_SAVED_POINT + "; the rewritten payloads are returned",
}


def matrix_cases() -> list[Case]:
    out = []
    for c in tm.CASES:
        out.append(Case(c.id, MATRIX_ATTACKS.get(c.id, c.attack), all_reads_raise=c.id in MATRIX_ALL_READS_RAISE,
                        xfail=MATRIX_XFAIL.get(c.id), since=c.since, run=c.run))
    assert MATRIX_ALL_READS_RAISE | set(MATRIX_XFAIL) <= {c.id for c in out}
    return out


ISSUE_CASES = [
    Case("retired_key_still_writes", retired_key_still_writes, all_reads_raise=True),
    Case("backdated_manifest_signed_by_retired_key", backdated_manifest, all_reads_raise=True),
    Case("key_history_removed", key_history_removed, all_reads_raise=True),
    Case("journal_json_removed", journal_json_removed, all_reads_raise=True, ctor_errors=(JournalError,),
         verify_errors=(NotFoundError,)),
    Case("journal_json_replaced", journal_json_replaced),
    Case("checkpoint_resigned_by_retired_key", checkpoint_resigned_by_retired_key, all_reads_raise=True),
    Case("checkpoint_with_extension_line", checkpoint_extension_line, all_reads_raise=True),
    Case("row_groups_not_merkle_blocks", row_groups_not_merkle_blocks),
    Case("stray_note_in_manifests", stray_note_in_manifests),
    Case("dot_named_segment_object", dot_named_segment_object),
    Case("segment_under_invalid_stream_name", segment_under_invalid_stream_name),
    Case("newest_manifest_removed", newest_manifest_removed, all_reads_raise=True),
    Case("footer_statistics_edited", footer_statistics_edited),
    Case("forged_wal_event", forged_wal_event, wal=True),
]

CASES = matrix_cases() + ISSUE_CASES


def verify_side(case: Case, h: History, since: bytes | None) -> str | None:
    """None when the auditor's side reports the attack, else what went wrong."""
    if case.wal:
        return None  # unsealed data: verify_store cannot see it (nor is it meant to)
    try:
        if case.run is not None:
            findings = case.run(h, since)
            return None if findings else "the check reported no finding"
        report = verify_store(h.store, public_keys=[h.verify_key], since=since)
    except case.verify_errors:
        return None
    if report.ok:
        return "verify_store reported no finding: " + report.to_text().replace("\n", " | ")[:300]
    return None


def judge(case: Case, truth: dict[str, Outcome], got: dict[str, Outcome]) -> list[str]:
    """The reads that break the property: wrong answers without raising, or (all_reads_raise) no raise."""
    problems = []
    for label, outcome in got.items():
        e = outcome.error
        if e is not None and isinstance(e, case.ctor_errors if outcome.in_ctor else IntegrityError):
            continue
        if case.all_reads_raise:
            problems.append(f"{label}: must raise IntegrityError, {outcome.describe()}")
        elif not outcome.same_as(truth[label]):
            if e is not None or truth[label].error is not None:
                problems.append(f"{label}: {outcome.describe()}; clean journal: {truth[label].describe()}")
            else:
                problems.append(f"{label}: returned without raising, and differs from the clean journal: "
                                f"{_first_difference(outcome.value, truth[label].value)}")
    return problems


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_reads_and_verify_agree(case: Case, fresh: History, calls: list[Call], truth: dict[str, Outcome]) -> None:
    since = case.since(fresh) if case.since is not None else None
    case.attack(fresh)
    problems = []
    if (v := verify_side(case, fresh, since)) is not None:
        problems.append(f"verify: {v}")
    problems += judge(case, truth, run_reads(fresh, calls, wal=case.wal))
    if problems:
        raise PropertyViolation(f"{case.id}: {len(problems)} problem(s)\n" + "\n".join(problems))


# -- the writer side of two forgeries ----------------------------------------------------------------------------


def test_the_writer_refuses_to_seal_a_forged_wal_event(fresh: History) -> None:
    forged_wal_event(fresh)
    try:
        with Journal.open(fresh.paths.store, key_dir=fresh.paths.keys, config=CFG) as j:
            j.seal()
    except JournalError:
        refused = True
    else:
        refused = False
    signed = fresh.manifest_path(SEGMENTS).exists()
    if not refused or signed:
        raise PropertyViolation(f"the writer {'sealed and signed' if signed else 'accepted'} a forged WAL frame")


def test_a_retired_key_cannot_seal(fresh: History) -> None:
    old = steal_then_rotate(fresh)
    (fresh.paths.keys / fresh.journal_id / keys_mod.SIGNING_FILE).write_bytes(old.private_pem())
    try:
        with Journal.open(fresh.paths.store, key_dir=fresh.paths.keys, config=CFG) as j:
            j.append("node_completed", "run-thief", {"i": 0})
            j.seal()
    except KeyRetiredError:
        refused = True
    else:
        refused = False
    signed = fresh.manifest_path(SEGMENTS).exists()
    if not refused or signed:
        raise PropertyViolation(f"a retired key {'sealed and signed a segment' if signed else 'was not refused'}")


# -- the control: a clean journal --------------------------------------------------------------------------------


def test_the_clean_journal_agrees_with_its_truth(fresh: History, calls: list[Call], truth: dict[str, Outcome]) -> None:
    report = verify_store(fresh.store, public_keys=[fresh.verify_key])
    assert report.ok, report.to_text()
    absent = {f"{method}(run-thief)" for method in ("replay", "state_at", "resume_point")}  # NotFoundError
    for label, outcome in truth.items():  # the truth is what a clean journal answers: nothing raised but NotFound
        assert outcome.error is None or (isinstance(outcome.error, NotFoundError) and label in absent), \
            f"{label}: {outcome.describe()}"
    assert len(truth["events(run-alpha)"].value) == 15 and truth["count_events()"].value == SEGMENTS * tm.PER_SEGMENT
    assert truth["find(event_type=tool_called)"].value and truth["find(event_type=human_modified)"].value == []
    assert all(truth[f"get_event({i})"].value is None for i in FORGED_IDS)
    for wal in (False, True):  # a copy, with and without the (empty) WAL, answers the same
        got = run_reads(fresh, calls, wal=wal)
        bad = {label for label in truth if not got[label].same_as(truth[label])}
        assert not bad, [f"{label}: {got[label].describe()}" for label in sorted(bad)]
