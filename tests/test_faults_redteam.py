"""Red team of three changes: one snapshot per Reader read (index/reader.py), verify's wait for a seal it
saw half written (verify/verifier.py ``_StreamVerifier.settle``), and the payload/time limits of event
validation (events.py).

The attacker has write access to the store (not the signing key, not the WAL key) or is a faulty
environment (a writer sealing concurrently, a split brain of two writers). For each attack the test asks what
``verify`` says and what the Reader's methods return. Attacks that hold are plain tests; those that break
something are ``xfail(strict=True)`` with what is wrong.

Journals: one module template (4 segments of 6 events, row groups of 4: seq 0..23), copied per test.
"""

from __future__ import annotations

import datetime as dt
import enum
import shutil
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from wormjournal import Journal, JournalConfig, Reader
from wormjournal.errors import IntegrityError, ValidationError
from wormjournal.events import MAX_TS, MIN_TS, canonical_json, parse_ts, validate_event
from wormjournal.journal import wal as walmod
from wormjournal.segments.manifest import Checkpoint
from wormjournal.segments.notes import SigningKey, split_note
from wormjournal.storage import layout
from wormjournal.storage.base import ObjectInfo
from wormjournal.storage.local import LocalStore
from wormjournal.verify import VerifyReport, verifier, verify_store

from conftest import (
    BASE_TS,
    History,
    StorePaths,
    build_history,
    copy_history,
    make_writable,
    plant,
    rewrite_parquet,
    wal_key,
)

STREAM = "main"
SEGMENTS = 4
PER_SEGMENT = 6
TOTAL = SEGMENTS * PER_SEGMENT
CFG = JournalConfig(seal_max_age_seconds=None, row_group_rows=4)
DAY = BASE_TS.date().isoformat()


# -- fixtures and tools -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> History:
    root = tmp_path_factory.mktemp("faults-redteam")
    return build_history(StorePaths(root / "store", root / "keys"), segments=SEGMENTS, events_per_segment=PER_SEGMENT,
                         config=CFG)


@pytest.fixture
def fresh(template: History, tmp_path: Path) -> History:
    return copy_history(template, tmp_path / "a")


def verify(h: History, store: Any = None) -> VerifyReport:
    return verify_store(store if store is not None else h.store, public_keys=[h.verify_key])


def kinds(report: VerifyReport) -> set[str]:
    return {f.kind for f in report.findings}


def reader(h: History, store: Any = None) -> Reader:
    return Reader(store if store is not None else h.store, public_keys=[h.verify_key])


def wal_reader(h: History, store: Any = None) -> Reader:
    return Reader(store if store is not None else h.store, public_keys=[h.verify_key],
                  wal_dir=h.paths.store / ".wal", wal_key=wal_key(h.paths.store, h.paths.keys))


def wal_dir(h: History) -> Path:
    return h.paths.store / ".wal" / f"stream={STREAM}"


def unlink(path: Path) -> None:
    make_writable(path)
    path.unlink()


def append(j: Journal, tag: str, n: int = 1, execution: str = "run-alpha", at: int = 300) -> None:
    for i in range(n):
        j.append("node_started", execution, {"tag": tag, "i": i}, ts=BASE_TS + dt.timedelta(seconds=at + i),
                 thread_id="thread-1")


class HookStore(LocalStore):
    """A LocalStore that runs ``hook`` right after it lists ``prefix`` (once, or ``times`` times): what another
    process did between two steps of a reader or of the verifier (a deterministic race)."""

    def __init__(self, root: Path, prefix: str, hook: Callable[[], None] | None = None, times: int = 1) -> None:
        super().__init__(root)
        self.prefix, self.hook, self.times = prefix, hook, times

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        found = list(super().list(prefix))
        if prefix == self.prefix and self.hook is not None and self.times > 0:
            self.times -= 1
            self.hook()
        return iter(found)


def every_read(r: Reader) -> dict[str, Any]:
    """What each public read of the Reader returns, reduced to comparable values."""
    alpha = r.events("run-alpha")
    last = alpha[-1]
    return {
        "count": r.count_events(),
        "count_alpha": r.count_events("run-alpha"),
        "events": [(e.seq, e.event_id) for e in alpha],
        "replay": [e.seq for e in r.replay("run-alpha")],
        "events_after": [e.seq for e in r.events_after("run-alpha", TOTAL - 6)],
        "latest_seq": r.latest_seq("run-alpha"),
        "thread": [e.seq for e in r.thread_events("thread-1")],
        "find": [e.seq for e in r.find()],
        "executions": [(s.execution_id, s.events, s.last_seq) for s in r.executions()],
        "get_event": (lambda e: e and e.seq)(r.get_event(last.event_id)),
        "exists": r.execution_exists("run-late"),
        "state_keys": sorted(r.state_at("run-alpha")),
    }


# ================================================================================================================
# 1. verify's settle wait: can an attacker hide tampering in it, or make it wait forever?
# ================================================================================================================


def test_held_a_planted_trailing_segment_is_still_an_orphan(fresh: History) -> None:
    """A segment object numbered past the last manifest looks like a seal in progress: verify waits, then
    reports it. Every Reader read ignores it (no manifest names it)."""
    before = _reads_without_wal(fresh)
    plant(fresh, layout.segment(STREAM, DAY, SEGMENTS), fresh.segment_path(1).read_bytes())
    t0 = time.monotonic()
    report = verify(fresh)
    assert "orphan_object" in kinds(report)
    assert time.monotonic() - t0 < verifier.SETTLE_SECONDS + 2
    assert _reads_without_wal(fresh) == before


def test_held_a_planted_far_segment_number_is_an_orphan(fresh: History) -> None:
    plant(fresh, layout.segment(STREAM, DAY, 10**11), fresh.segment_path(1).read_bytes())
    assert "orphan_object" in kinds(verify(fresh))


def _reads_without_wal(h: History) -> dict[str, Any]:
    r = reader(h)
    alpha = r.events("run-alpha")
    return {"count": r.count_events(), "alpha": [(e.seq, e.event_id) for e in alpha],
            "find": [e.seq for e in r.find()], "executions": [(s.execution_id, s.events) for s in r.executions()],
            "get": r.get_event(alpha[-1].event_id).seq}  # type: ignore[union-attr]


def test_held_a_deleted_latest_checkpoint_is_still_reported(fresh: History) -> None:
    """Deleting the newest checkpoint (to hide the last seal from an auditor comparing roots) is a half-written
    state: verify waits and still reports checkpoint_behind; a Reader deliberately reads the signed manifests
    past it (FORMAT.md 10: a seal in progress, to a reader)."""
    unlink(fresh.checkpoint_path(SEGMENTS))
    assert "checkpoint_behind" in kinds(verify(fresh))
    r = reader(fresh)
    assert r.count_events() == TOTAL
    assert r.latest_checkpoint()[0].tree_size == SEGMENTS - 1


def test_held_every_checkpoint_deleted_is_reported(fresh: History) -> None:
    for n in range(1, SEGMENTS + 1):
        unlink(fresh.checkpoint_path(n))
    assert "checkpoint_missing" in kinds(verify(fresh))


def _plant_during_settle(h: History, plants: Callable[[], None]) -> VerifyReport:
    """Run verify; ``plants`` runs at the settle wait's first listing (the stream's checkpoints prefix, which
    only the wait lists: verify_store's own listing is of ``checkpoints/``)."""
    store = HookStore(h.paths.store, layout.checkpoints_prefix(STREAM), plants)
    report = verify(h, store)
    assert store.times == 0, "the settle wait did not run"
    return report


def test_held_a_forged_checkpoint_planted_during_the_wait(fresh: History) -> None:
    """The latest checkpoint deleted, and during verify's wait a forged one (the real root and size, signed
    by a key the journal never had) planted to finish the 'seal in progress'."""
    real = fresh.checkpoint_path(SEGMENTS).read_bytes()
    cp = Checkpoint.parse(split_note(real)[0])
    forged = cp.sign(SigningKey.generate("mallory"))
    unlink(fresh.checkpoint_path(SEGMENTS))
    report = _plant_during_settle(fresh, lambda: plant(fresh, layout.checkpoint(STREAM, SEGMENTS), forged))
    assert report.findings, "a forged checkpoint finished the wait unreported"
    with pytest.raises(IntegrityError):
        reader(fresh).count_events()


def test_held_an_older_checkpoint_renamed_during_the_wait(fresh: History) -> None:
    """Checkpoint 3's (validly signed) bytes planted under checkpoint 4's name during the wait."""
    older = fresh.checkpoint_path(SEGMENTS - 1).read_bytes()
    unlink(fresh.checkpoint_path(SEGMENTS))
    report = _plant_during_settle(fresh, lambda: plant(fresh, layout.checkpoint(STREAM, SEGMENTS), older))
    assert report.findings
    with pytest.raises(IntegrityError):
        reader(fresh).count_events()


def test_held_a_junk_manifest_and_far_checkpoint_planted_during_the_wait(fresh: History) -> None:
    """A trailing orphan segment starts the wait; the attacker then plants manifest 4 (junk) and a checkpoint of
    size 9 (junk) to 'finish' it: both are opened and reported, and the orphan too."""
    plant(fresh, layout.segment(STREAM, DAY, SEGMENTS), fresh.segment_path(1).read_bytes())

    def plants() -> None:
        plant(fresh, layout.manifest(STREAM, SEGMENTS), fresh.manifest_path(1).read_bytes())
        plant(fresh, layout.checkpoint(STREAM, 9), fresh.checkpoint_path(SEGMENTS).read_bytes())

    report = _plant_during_settle(fresh, plants)
    assert "orphan_object" in kinds(report)
    assert len(kinds(report)) >= 2, kinds(report)  # the junk manifest (or checkpoint) too


def test_held_a_valid_seal_finished_during_the_wait_is_clean(fresh: History) -> None:
    """The control: a real writer seals between verify's listing of checkpoints and of segments (the listing
    ends half written: manifest 4 without its checkpoint); verify waits for the checkpoint and reports nothing."""
    def seal() -> None:
        with Journal.open(fresh.paths.store, key_dir=fresh.paths.keys, config=CFG) as j:
            append(j, "during-verify", 2)
            j.seal()

    store = HookStore(fresh.paths.store, layout.CHECKPOINTS_PREFIX, seal)
    report = verify(fresh, store)
    assert report.findings == [], report.findings
    assert "orphan_object" not in kinds(verify(fresh))


class _FakeClock:
    """verify's clock, advanced only by its sleeps: a wait of hours costs no time."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class _Gave_up(Exception):  # noqa: N801
    pass


def test_verify_time_is_bounded_while_objects_keep_appearing(fresh: History, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _FakeClock()
    monkeypatch.setattr(verifier, "time", types.SimpleNamespace(monotonic=clock.monotonic, sleep=clock.sleep,
                                                                perf_counter=clock.perf_counter))
    unlink(fresh.checkpoint_path(SEGMENTS))  # the half-written state that starts the wait
    junk = fresh.paths.store / layout.manifest(STREAM, 999)

    class Flicker(LocalStore):
        """The attacker: a junk manifest appears and disappears between the wait's listings."""

        def list(self, prefix: str) -> Iterator[ObjectInfo]:
            if prefix == layout.manifests_prefix(STREAM):
                if clock.now > 600:  # ten minutes of (fake) waiting: unbounded
                    raise _Gave_up
                if junk.exists():
                    unlink(junk)
                else:
                    junk.write_bytes(b"junk\n")
            return super().list(prefix)

    report = verify(fresh, Flicker(fresh.paths.store))
    assert "checkpoint_behind" in kinds(report)
    assert clock.now < 60


def test_verify_time_does_not_grow_with_junk_streams(fresh: History) -> None:
    n = 5
    data = fresh.segment_path(1).read_bytes()
    for i in range(n):
        plant(fresh, layout.segment(f"junk{i}", DAY, 0), data)
    t0 = time.monotonic()
    report = verify(fresh)
    elapsed = time.monotonic() - t0
    assert "orphan_object" in kinds(report)
    # One wait is about 2 x SETTLE_SECONDS in-process (the pause granularity); n waits in a row cost n times that.
    assert elapsed < 4 * verifier.SETTLE_SECONDS + 0.5, f"{n} junk streams: verify took {elapsed:.1f} s"


# ================================================================================================================
# 2. The Reader's snapshot: stale, inconsistent, hidden or duplicated events
# ================================================================================================================


def _with_wal(h: History) -> None:
    """Two unsealed events of run-alpha and one of run-late in the WAL."""
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        append(j, "unsealed", 2)
        append(j, "late", 1, execution="run-late", at=310)


def test_held_a_seal_between_the_wal_read_and_the_listing(fresh: History) -> None:
    """A seal (and new appends) between a read's WAL read and its listing (refresh lists the checkpoints
    first): every read returns exactly the snapshot it started with, nothing hidden or duplicated; the
    next read sees the new events."""
    _with_wal(fresh)
    before = every_read(wal_reader(fresh))
    assert before["count"] == TOTAL + 3 and before["exists"]

    def seal_and_append() -> None:
        with Journal.open(fresh.paths.store, key_dir=fresh.paths.keys, config=CFG) as j:
            j.seal()
            append(j, "after", 1, at=400)

    # One hook per read (a seal each time), so every method meets a seal under it.
    store = HookStore(fresh.paths.store, layout.checkpoints_prefix(STREAM), seal_and_append, times=1)
    r = wal_reader(fresh, store)
    during: dict[str, Any] = {}
    for name, read in every_read_fns().items():
        store.times = 1
        try:
            during[name] = read(r)
        except IntegrityError as e:
            pytest.fail(f"{name}: a concurrent seal broke the read: {e}")
    for name in ("count", "count_alpha", "events", "replay", "events_after", "latest_seq", "find", "thread"):
        got, was = during[name], before[name]
        if isinstance(was, list):  # later reads see later seals: what was there must still be there, in order, once
            assert got[: len(was)] == was, name
            assert len(set(map(str, got))) == len(got), f"{name}: duplicated"
    assert wal_reader(fresh).count_events() > before["count"]


def every_read_fns() -> dict[str, Callable[[Reader], Any]]:
    return {
        "count": lambda r: r.count_events(),
        "count_alpha": lambda r: r.count_events("run-alpha"),
        "events": lambda r: [(e.seq, e.event_id) for e in r.events("run-alpha")],
        "replay": lambda r: [e.seq for e in r.replay("run-alpha")],
        "events_after": lambda r: [e.seq for e in r.events_after("run-alpha", TOTAL - 6)],
        "latest_seq": lambda r: r.latest_seq("run-alpha"),
        "thread": lambda r: [e.seq for e in r.thread_events("thread-1")],
        "find": lambda r: [e.seq for e in r.find()],
        "executions": lambda r: [(s.execution_id, s.events, s.last_seq) for s in r.executions()],
        "exists": lambda r: r.execution_exists("run-late"),
    }


def test_held_one_snapshot_per_read_is_exact(fresh: History) -> None:
    """The snapshot is the state when the WAL was read: a seal plus an append under the read shows neither the
    seal's effect (the events are the same) nor the new event, and no event twice."""
    _with_wal(fresh)
    before = every_read(wal_reader(fresh))

    h = fresh

    def seal_and_append() -> None:
        with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
            j.seal()
            append(j, "after", 1, at=400)

    for name, read in every_read_fns().items():
        store = HookStore(h.paths.store, layout.checkpoints_prefix(STREAM), seal_and_append)
        r = wal_reader(h, store)
        expected = every_read_fns()[name](wal_reader(h))  # the state now (before this read's seal)
        assert read(r) == expected, name
        assert store.times == 0
    assert before["count"] == TOTAL + 3


def _split_brain(fresh: History, tmp_path: Path, b_events: int) -> History:
    """Two writers of one journal (a lease that failed): A seals seq 24 (its own event); B, a copy from before,
    appends ``b_events`` events from seq 24 that it never sealed. B's WAL is what B's readers read."""
    b = copy_history(fresh, tmp_path / "b")
    with Journal.open(fresh.paths.store, key_dir=fresh.paths.keys, config=CFG) as j:
        append(j, "writer-a", 1)
        j.seal()
    with Journal.open(b.paths.store, key_dir=b.paths.keys, config=CFG) as j:
        append(j, "writer-b", b_events)
    for p in walmod.list_wal_files(wal_dir(fresh)):
        p.unlink()
    for p in walmod.list_wal_files(wal_dir(b)):
        shutil.copy(p, wal_dir(fresh) / p.name)
    return b


def test_held_a_forked_wal_past_the_sealed_head_is_refused(fresh: History, tmp_path: Path) -> None:
    _split_brain(fresh, tmp_path, 2)  # B's seq 24 differs from the sealed 24, and B's 25 links to B's 24
    for name, read in every_read_fns().items():
        with pytest.raises(IntegrityError):
            read(wal_reader(fresh))
            pytest.fail(name)
    assert verify(fresh).findings == []  # the store itself is intact (verify reads no WAL)


def test_a_forked_wal_event_at_the_sealed_head_is_not_silently_dropped(fresh: History, tmp_path: Path) -> None:
    _split_brain(fresh, tmp_path, 1)  # B's only event is seq 24, sealed by A as another event
    r = wal_reader(fresh)
    with pytest.raises(IntegrityError):
        events = r.events("run-alpha")
        # Today: A's seq 24 is returned, B's (acknowledged to B's caller, authenticated by the WAL key) is gone.
        assert events[-1].payload["tag"] == "writer-a"


def test_held_a_wal_far_ahead_of_the_sealed_chain_is_refused(fresh: History, tmp_path: Path) -> None:
    """Valid, authenticated WAL frames whose first seq is far past the sealed head (a gap): every read raises,
    none returns the sealed events alone as if the gap were not there."""
    b = copy_history(fresh, tmp_path / "b")
    with Journal.open(b.paths.store, key_dir=b.paths.keys, config=CFG) as j:
        for k in range(3):
            append(j, f"b{k}", 3)
            j.seal()
        append(j, "ahead", 2)  # seq 33, 34 unsealed in B's WAL
    for p in walmod.list_wal_files(wal_dir(b)):
        shutil.copy(p, wal_dir(fresh) / p.name)
    for name, read in every_read_fns().items():
        with pytest.raises(IntegrityError):
            read(wal_reader(fresh))
            pytest.fail(name)


def test_held_a_wal_file_swapped_between_the_wal_read_and_the_listing(fresh: History, tmp_path: Path) -> None:
    """The WAL file is replaced (by one of a forked writer) after the read took its WAL events: the read
    finishes on its snapshot (those events were authentic when read)."""
    _with_wal(fresh)
    b = copy_history(fresh, tmp_path / "b")
    for p in walmod.list_wal_files(wal_dir(b)):
        p.unlink()
    with Journal.open(b.paths.store, key_dir=b.paths.keys, config=CFG) as j:
        append(j, "forked", 3)
    truth = [(e.seq, e.event_id) for e in wal_reader(fresh).events("run-alpha")]

    def swap() -> None:
        for p in walmod.list_wal_files(wal_dir(fresh)):
            p.unlink()
        for p in walmod.list_wal_files(wal_dir(b)):
            shutil.copy(p, wal_dir(fresh) / p.name)

    store = HookStore(fresh.paths.store, layout.checkpoints_prefix(STREAM), swap)
    assert [(e.seq, e.event_id) for e in wal_reader(fresh, store).events("run-alpha")] == truth
    # The next read sees the new WAL alone (it continues the sealed head: the forked writer had the WAL key),
    # never a mix of the two.
    tags = [e.payload.get("tag") for e in wal_reader(fresh).events("run-alpha") if e.seq >= TOTAL]
    assert tags == ["forked"] * 3


def test_held_the_retry_does_not_mask_tampering(fresh: History) -> None:
    """A sealed payload changed, and a (real) seal under the first read so that the store grew: the read is
    retried on a new snapshot and fails again, for every read that touches the event."""
    _with_wal(fresh)
    target = fresh.segment_path(SEGMENTS - 1)

    def tamper(table: pa.Table) -> pa.Table:
        rows = table.to_pylist()
        for row in rows:
            if row["execution_id"] == "run-alpha":
                row["payload"] = b'{"i":0,"note":"rewritten"}'
        return pa.Table.from_pylist(rows, schema=table.schema)

    rewrite_parquet(target, tamper)
    for name, read in every_read_fns().items():
        if name in ("count", "count_alpha", "exists", "executions"):
            continue  # these read no payload
        def seal() -> None:
            with Journal.open(fresh.paths.store, key_dir=fresh.paths.keys, config=CFG) as j:
                append(j, "grow", 1, at=500)
                j.seal()

        store = HookStore(fresh.paths.store, layout.checkpoints_prefix(STREAM), seal, times=2)
        with pytest.raises(IntegrityError):
            read(wal_reader(fresh, store))
            pytest.fail(f"{name}: the retry returned tampered data")
    assert verify(fresh).findings


def test_held_a_planted_trailing_segment_changes_no_wal_read(fresh: History) -> None:
    _with_wal(fresh)
    before = every_read(wal_reader(fresh))
    plant(fresh, layout.segment(STREAM, DAY, SEGMENTS), fresh.segment_path(0).read_bytes())
    assert every_read(wal_reader(fresh)) == before
    assert "orphan_object" in kinds(verify(fresh))


# ================================================================================================================
# 3. Validation (events.py): payload depth, big integers, cycles, times
# ================================================================================================================


def _deep(n: int, leaf: Any = 1) -> Any:
    v = leaf
    for _ in range(n):
        v = [v]
    return v


class _Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize("payload", [
    _deep(129), {"a": _deep(128)}, [10**4300], [-(10**4300)], float("nan"), float("inf"), {(1, 2): 1}, {1: "x"},
], ids=["list129", "dict-then-128", "int4301", "neg4301", "nan", "inf", "tuple-key", "int-key"])
def test_held_payloads_refused(payload: Any) -> None:
    with pytest.raises(ValidationError):
        canonical_json(payload)


def test_held_cycles_refused() -> None:
    a: list[Any] = []
    a.append(a)
    d: dict[str, Any] = {}
    d["x"] = [d]
    t: list[Any] = []
    t.append((t,))
    for v in (a, d, t):
        with pytest.raises(ValidationError):
            canonical_json(v)


@pytest.mark.parametrize("payload", [
    _deep(128), [10**4300 - 1], [True, False, None], [_Color.RED], 1e308, -0.0, 5e-324, [(1, 2)],
    {"k": [0] * 10_000},
], ids=["list128", "int4300", "bools", "intenum", "1e308", "-0.0", "denormal", "tuple", "wide"])
def test_held_payloads_accepted_and_read_back(payload: Any) -> None:
    import json

    canonical = canonical_json(payload)
    json.loads(canonical)  # parses back (Python's own limits)


def test_held_wide_shared_subtrees_are_not_a_cycle() -> None:
    leaf = [1]
    canonical_json([leaf] * 1000)  # the same list many times: no cycle, no depth


class _Tz(dt.tzinfo):
    def __init__(self, offset: Any) -> None:
        self.offset = offset

    def utcoffset(self, d: Any) -> Any:
        return self.offset

    def dst(self, d: Any) -> None:
        return None


@pytest.mark.parametrize("ts", [
    dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=23, minutes=59))),
    dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone(-dt.timedelta(hours=23, minutes=59))),
    "0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59.999999-00:01", "10000-01-01T00:00:00Z",
    dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 1, tzinfo=_Tz(None)), dt.datetime(2020, 1, 1, tzinfo=_Tz(5)),
    dt.datetime(2020, 1, 1, tzinfo=_Tz(dt.timedelta(days=2))), True, 1_700_000_000, dt.date(2020, 1, 1),
    "2020-01-01T23:59:60Z",
], ids=["year0", "year10000", "str-year0", "str-year10000", "str-10000", "naive", "tz-none", "tz-int", "tz-2days",
        "bool", "int", "date", "leap-second"])
def test_held_times_refused(ts: Any) -> None:
    with pytest.raises(ValidationError):
        parse_ts(ts)


def test_held_boundary_times_accepted_and_round_trip(tmp_path: Path) -> None:
    assert parse_ts(dt.datetime.min.replace(tzinfo=dt.UTC)) == MIN_TS
    assert parse_ts(dt.datetime.max.replace(tzinfo=dt.UTC)) == MAX_TS
    store, keys = tmp_path / "s", tmp_path / "k"
    with Journal.create(store, key_dir=keys, config=CFG) as j:
        j.append("node_started", "run-min", None, ts=dt.datetime.min.replace(tzinfo=dt.UTC))
        j.append("node_started", "run-max", None, ts=dt.datetime.max.replace(tzinfo=dt.UTC))
        j.seal()
    assert verify_store(store).findings == []
    r = Reader(store)
    assert [e.seq for e in r.find()] == [0, 1]
    assert r.find(since=dt.datetime(9999, 12, 31, tzinfo=dt.UTC))[0].execution_id == "run-max"


def test_held_ids_must_be_strings() -> None:
    for bad in (_deep(200, "x"), {"a": "b"}, 5, b"bytes"):
        with pytest.raises(ValidationError):
            validate_event({"event_type": "node_started", "execution_id": bad})
        with pytest.raises(ValidationError):
            validate_event({"event_type": "node_started", "execution_id": "run", "thread_id": bad})


class _ItemsDict(dict):  # type: ignore[type-arg]
    """A dict whose items() (what json's encoder writes) is not what iterating it shows (what the check walks)."""

    def __init__(self, shown: dict[str, Any], written: list[tuple[Any, Any]]) -> None:
        super().__init__(shown)
        self.written = written

    def items(self) -> Any:
        return self.written


def test_a_dict_subclass_cannot_smuggle_depth_past_the_check(tmp_path: Path) -> None:
    payload = _ItemsDict({"a": 1}, [("a", _deep(150))])
    with pytest.raises(ValidationError):
        canonical_json(payload)


def test_a_dict_subclass_cannot_write_duplicate_keys() -> None:
    with pytest.raises(ValidationError):
        canonical_json(_ItemsDict({"a": 1}, [("a", 1), ("a", 2)]))


def test_held_list_subclass_iteration_is_what_is_written() -> None:
    """The encoder iterates a list subclass, which may show it other items than this check saw: one with its
    own __iter__ is refused."""

    class Hidden(list):  # type: ignore[type-arg]
        def __iter__(self) -> Iterator[Any]:
            return iter(())

    with pytest.raises(ValidationError, match="own __iter__"):
        canonical_json(Hidden([_deep(500)]))


class _LyingInt(int):
    def __lt__(self, other: Any) -> bool:
        return True

    def __gt__(self, other: Any) -> bool:
        return True


def test_an_int_subclass_cannot_pass_the_digit_limit() -> None:
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        with pytest.raises(ValidationError):
            canonical_json([_LyingInt(10**5000)])
    finally:
        sys.set_int_max_str_digits(old)


def test_held_a_plain_huge_int_is_refused_even_without_the_process_limit() -> None:
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        with pytest.raises(ValidationError):
            canonical_json({"n": 10**5000})
    finally:
        sys.set_int_max_str_digits(old)


class _OddDatetime(dt.datetime):
    """A datetime whose subtraction returns a non-integral 'timedelta'."""

    def __sub__(self, other: Any) -> Any:
        return types.SimpleNamespace(days=0, seconds=0, microseconds=0.5)


def test_a_datetime_subclass_cannot_give_a_non_integer_ts() -> None:
    """datetime's own subtraction is used, whatever a subclass defines: the time is the one it holds."""
    ev = validate_event({"event_type": "node_started", "execution_id": "run",
                         "ts": _OddDatetime(2020, 1, 1, tzinfo=dt.UTC)})
    assert type(ev.ts) is int and ev.ts == 1_577_836_800_000_000
