"""The Reader: every lookup returns exactly the appended events, whatever state the index is in.

The module's journal (``hist``, built once and copied by the tests that damage it):
five executions over 11 sealed segments (row groups of 4 rows) and a WAL tail,
timestamps on two UTC dates so that the segments land in two date partitions, and
a seal whose events straddle midnight (it makes two segments). Segments 0..7 are
merged into a level-1 index run; 8..10 keep their per-segment index objects.

==========  ========  ========  ==========================================
execution   tenant    thread    where
==========  ========  ========  ==========================================
x-alpha     tenant-a  thread-1  sealed, segments 0..4, completed
x-beta      tenant-b  thread-2  sealed, segments 0..7, failed
x-eps       tenant-b  thread-2  sealed, every segment, open
x-gamma     tenant-a  thread-1  sealed (segments 3..10) and unsealed, open
x-delta     tenant-a  thread-1  unsealed only, open
==========  ========  ========  ==========================================

Every answer is compared with what was appended (the ``Rec`` list), not with
another answer of the library.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from s3_fixtures import S3Bucket

from wormjournal import Event, ExecutionSummary, IntegrityError, Journal, JournalConfig, NotFoundError, Reader
from wormjournal.journal.keys import key_name, load_wal_key
from wormjournal.segments.manifest import Manifest
from wormjournal.segments.notes import SigningKey, VerifyKey
from wormjournal.storage import layout
from wormjournal.storage.base import ObjectInfo, ObjectReader
from wormjournal.storage.local import LocalStore

from conftest import make_writable, overwrite, wal_key

STREAM = "main"
CONFIG = JournalConfig(seal_max_age_seconds=None, row_group_rows=4)
DAY1 = dt.datetime(2025, 3, 14, 8, 0, tzinfo=dt.UTC)
DAY2 = dt.datetime(2025, 3, 15, 8, 0, tzinfo=dt.UTC)
MIDNIGHT = dt.datetime(2025, 3, 15, 0, 0, tzinfo=dt.UTC)


# -- recording what is appended -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rec:
    """One appended event as the test knows it: what was given, and what the journal must assign."""

    seq: int
    event_id: str
    event_type: str
    execution_id: str
    tenant_id: str | None
    thread_id: str | None
    node: str | None
    step_id: str | None
    payload: Any
    ts: dt.datetime
    exec_prev_seq: int | None
    segment: int | None = None  # set when sealed


class Recorder:
    """A journal wrapper that records every append and which segment each seq was sealed into."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.recs: list[Rec] = []
        self.manifests: list[Manifest] = []
        self._heads: dict[str, int] = {}

    def append(self, event_type: str, execution_id: str, payload: Any, *, ts: dt.datetime, event_id: str | None = None,
               tenant_id: str | None = None, thread_id: str | None = None, node: str | None = None,
               step_id: str | None = None) -> int:
        event_id = event_id or f"ev-{len(self.recs):04d}"
        fields = {k: v for k, v in dict(tenant_id=tenant_id, thread_id=thread_id, node=node, step_id=step_id).items()
                  if v is not None}
        seq = self.journal.append(event_type, execution_id, payload, ts=ts, event_id=event_id, **fields)
        assert seq == len(self.recs)
        self.recs.append(Rec(seq, event_id, event_type, execution_id, tenant_id, thread_id, node, step_id, payload, ts,
                             self._heads.get(execution_id)))
        self._heads[execution_id] = seq
        return seq

    def seal(self) -> list[Manifest]:
        new = self.journal.seal()
        for m in new:
            for s in range(m.first_seq, m.last_seq + 1):
                self.recs[s] = dataclasses.replace(self.recs[s], segment=m.segment)
        self.manifests.extend(new)
        return new


def view(e: Event | Rec) -> tuple[Any, ...]:
    """What an Event must agree on with its Rec (everything the appender chose or the journal assigns)."""
    sealed = e.sealed if isinstance(e, Event) else e.segment is not None
    return (e.seq, e.event_id, e.event_type, e.execution_id, e.tenant_id, e.thread_id, e.node, e.step_id, e.payload,
            e.ts, e.exec_prev_seq, e.segment, sealed)


def views(events: list[Event] | list[Rec]) -> list[tuple[Any, ...]]:
    return [view(e) for e in events]


def check_event(e: Event) -> None:
    """Fields the appender did not give: their defaults, and the chain fields' format."""
    assert e.stream == STREAM
    assert (e.parent_event_id, e.correlation_id, e.subject_id, e.payload_key_id) == (None, None, None, None)
    assert e.payload_codec == "json"
    assert len(e.hash) == 64 and len(e.prev_hash) == 64 and e.hash == e.hash.lower()
    assert e.ts.tzinfo is not None
    assert e.sealed == (e.segment is not None)


# -- the module's journal ----------------------------------------------------------------------------

EXECS = {  # execution -> (tenant, thread)
    "x-alpha": ("tenant-a", "thread-1"),
    "x-beta": ("tenant-b", "thread-2"),
    "x-gamma": ("tenant-a", "thread-1"),
    "x-delta": ("tenant-a", "thread-1"),
    "x-eps": ("tenant-b", "thread-2"),
}
THREADS = ["thread-1", "thread-2", "thread-3"]
TENANTS = ["tenant-a", "tenant-b", "tenant-z"]

SCRIPTS: dict[str, list[tuple[str, str | None, Any]]] = {  # (event_type, node, payload)
    "x-alpha": [
        ("execution_started", None, {"goal": "plan a trip"}),
        ("node_started", "planner", {}),
        ("state_updated", "planner", {"new_state": {"plan": "v1", "budget": 100}}),
        ("node_completed", "planner", {"ok": True}),
        ("node_started", "search", None),
        ("tool_called", "search", {"tool": "web", "q": "flights"}),
        ("tool_returned", "search", {"hits": [1, 2, 3]}),
        ("human_modified", "search", {"new_state": {"plan": "v2", "approved_by": "ann"}}),
        ("state_updated", "search", {"budget": 120}),  # no new_state: the payload itself is merged
        ("node_completed", "search", {}),
        ("llm_completed", None, {"tokens": 42, "text": "ünïcödé ✓"}),
        ("execution_completed", None, {"result": "ok"}),
    ],
    "x-beta": [
        ("execution_started", None, {"goal": "fetch"}),
        ("node_started", "search", {}),
        ("tool_called", "search", {"tool": "http"}),
        ("exception_raised", "search", {"error": "timeout"}),
        ("retry_scheduled", "search", {"attempt": 2}),
        ("tool_called", "search", {"tool": "http", "attempt": 2}),
        ("node_failed", "search", {"error": "timeout"}),
        ("execution_failed", None, {"error": "gave up"}),
    ],
    "x-gamma": [
        ("execution_started", None, {"goal": "write"}),
        ("node_started", "planner", {}),
        ("state_updated", "planner", {"new_state": {"draft": 1}}),
        ("node_completed", "planner", {}),
        ("node_started", "reviewer", {}),
        ("node_completed", "reviewer", {}),
        ("node_started", "writer", {}),
        ("llm_requested", "writer", {"prompt": "hi"}),
        ("llm_completed", "writer", {"tokens": 7}),
        ("step_completed", "writer", {}),
        ("state_updated", "writer", {"new_state": {"draft": 2, "words": 300}}),  # unsealed from here on
        ("tool_called", "writer", [1, "two", None]),
    ],
    "x-delta": [
        ("execution_started", None, {"goal": "later"}),
        ("node_started", "planner", {}),
        ("state_updated", "planner", {"new_state": {"q": "x"}}),
    ],
    "x-eps": [("execution_started", None, {"goal": "watch"})]
    + [("tool_called" if i % 2 else "tool_returned", None, {"i": i}) for i in range(1, 25)],
}

D1, D2 = 1, 2
# One list per seal: (execution, how many of its next events, which day).
ROUNDS: list[list[tuple[str, int, int]]] = [
    [("x-alpha", 3, D1), ("x-beta", 2, D1), ("x-eps", 2, D1)],  # segment 0
    [("x-alpha", 3, D1), ("x-eps", 2, D1), ("x-beta", 1, D1)],  # 1
    [("x-alpha", 2, D1), ("x-eps", 3, D1), ("x-beta", 1, D1)],  # 2
    [("x-alpha", 2, D1), ("x-gamma", 2, D1), ("x-eps", 2, D1)],  # 3
    [("x-alpha", 2, D1), ("x-gamma", 1, D1), ("x-eps", 2, D1), ("x-beta", 1, D1)],  # 4
    [("x-beta", 1, D1), ("x-eps", 2, D1), ("x-gamma", 1, D2), ("x-eps", 2, D2)],  # 5 (day 1) and 6 (day 2)
    [("x-beta", 2, D2), ("x-eps", 2, D2), ("x-gamma", 2, D2)],  # 7
    [("x-eps", 3, D2), ("x-gamma", 1, D2)],  # 8
    [("x-eps", 2, D2), ("x-gamma", 2, D2)],  # 9
    [("x-eps", 3, D2), ("x-gamma", 1, D2)],  # 10
]
UNSEALED: list[tuple[str, int, int]] = [("x-gamma", 1, D2), ("x-delta", 3, D2), ("x-gamma", 1, D2)]
SEGMENTS = 11


@dataclasses.dataclass
class Built:
    """A closed journal (its WAL tail kept) and everything that was appended to it."""

    root: Path
    recs: list[Rec]
    manifests: list[Manifest]
    journal_id: str
    verify_key: VerifyKey

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def wal(self) -> Path:
        return self.store / ".wal"

    def reader(self, *, wal: bool = True, **kwargs: Any) -> Reader:
        kwargs.setdefault("public_keys", [self.verify_key])
        return Reader(self.store, wal_dir=self.wal if wal else None,
                      wal_key=wal_key(self.store, self.keys) if wal else None, **kwargs)

    def of(self, execution_id: str, *, sealed_only: bool = False) -> list[Rec]:
        return [r for r in self.recs if r.execution_id == execution_id and (r.segment is not None or not sealed_only)]

    def sealed(self) -> list[Rec]:
        return [r for r in self.recs if r.segment is not None]

    def index_path(self, kind: str, first: int, last: int) -> Path:
        return self.store / layout.index_object(STREAM, kind, first, last)

    def copy(self, dest: Path) -> Built:
        shutil.copytree(self.root, dest)
        return dataclasses.replace(self, root=dest)


def build(root: Path) -> Built:
    queues = {x: list(script) for x, script in SCRIPTS.items()}
    steps = {x: 0 for x in SCRIPTS}
    with Journal.create(root / "store", key_dir=root / "keys", config=CONFIG) as j:
        rec = Recorder(j)

        def run(items: list[tuple[str, int, int]]) -> None:
            for x, n, day in items:
                for _ in range(n):
                    event_type, node, payload = queues[x].pop(0)
                    tenant, thread = EXECS[x]
                    base = DAY1 if day == D1 else DAY2
                    steps[x] += 1
                    rec.append(event_type, x, payload, ts=base + dt.timedelta(minutes=len(rec.recs)), tenant_id=tenant,
                               thread_id=thread, node=node, step_id=f"{x}-step-{steps[x]}")

        for items in ROUNDS:
            run(items)
            rec.seal()
        run(UNSEALED)
        assert all(not q for q in queues.values()), "the scripts and the rounds disagree"
        assert len(rec.manifests) == SEGMENTS
        built = Built(root, rec.recs, rec.manifests, j.journal_id, j.verify_key)
    return built  # closed without a seal: the last events stay in the WAL


@pytest.fixture(scope="module")
def hist(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("reader") / "journal")


@pytest.fixture
def hist_copy(hist: Built, tmp_path: Path) -> Built:
    """A copy of the module's journal that the test may damage."""
    return hist.copy(tmp_path / "journal")


@pytest.fixture
def reader(hist: Built) -> Reader:
    return hist.reader()


def seqs(events: list[Event] | list[Rec]) -> list[int]:
    return [e.seq for e in events]


# -- the history is what the tests think it is ------------------------------------------------------------


def test_the_history_spans_segments_row_groups_dates_and_the_wal(hist: Built) -> None:
    ms = hist.manifests
    assert [m.segment for m in ms] == list(range(SEGMENTS))
    dates = [layout.parse_segment(m.object)[1] for m in ms]  # type: ignore[index]
    assert dates == ["2025-03-14"] * 6 + ["2025-03-15"] * 5  # the straddling seal made segments 5 and 6
    assert ms[5].first_seq == ms[4].last_seq + 1 and ms[6].first_seq == ms[5].last_seq + 1
    for x, where in [("x-alpha", {0, 1, 2, 3, 4}), ("x-beta", {0, 1, 2, 4, 5, 7}), ("x-eps", set(range(SEGMENTS))),
                     ("x-gamma", {3, 4, 6, 7, 8, 9, 10, None}), ("x-delta", {None})]:
        assert {r.segment for r in hist.of(x)} == where, x
    assert len([r for r in hist.recs if r.segment is None]) == 5
    # Runs cover segments 0..7 and 8..9; 10 has its own object only.
    for kind in layout.INDEX_KINDS:
        assert hist.index_path(kind, 0, 7).exists() and hist.index_path(kind, 8, 9).exists()
        for n in range(SEGMENTS):
            assert hist.index_path(kind, n, n).exists()
    objects, missing = hist.reader().catalog.cover("executions", SEGMENTS)
    assert [(o.first, o.last) for o in objects] == [(0, 7), (8, 9), (10, 10)] and missing == []
    # Some execution's rows span two row groups in a segment (rows 2..5 of x-eps in segment 2, say).
    entries = hist.reader().catalog.lookup("executions", SEGMENTS).to_pylist()
    assert any(e["row"] // 4 != (e["row"] + e["rows"] - 1) // 4 for e in entries)


# -- one execution -------------------------------------------------------------------------------------


@pytest.mark.parametrize("x", list(EXECS))
def test_events_and_replay_return_exactly_the_appended_events(hist: Built, reader: Reader, x: str) -> None:
    expected = hist.of(x)
    events = reader.events(x)
    assert views(events) == views(expected)
    for e in events:
        check_event(e)
    assert views(list(reader.replay(x))) == views(expected)


def test_sealed_mixed_and_unsealed_executions(hist: Built, reader: Reader) -> None:
    alpha, gamma, delta = reader.events("x-alpha"), reader.events("x-gamma"), reader.events("x-delta")
    assert all(e.sealed for e in alpha) and alpha[-1].event_type == "execution_completed"
    assert [e.sealed for e in gamma] == [True] * 10 + [False] * 2
    assert [e.segment for e in gamma[-3:]] == [10, None, None]
    assert not any(e.sealed for e in delta) and len(delta) == 3
    # The unsealed events continue the stream's chain from the last sealed one.
    last_sealed = hist.manifests[-1]
    first_unsealed = min((e for e in gamma + delta if not e.sealed), key=lambda e: e.seq)
    assert first_unsealed.seq == last_sealed.last_seq + 1
    assert first_unsealed.prev_hash == last_sealed.last_hash.hex()


def test_the_whole_stream_is_one_hash_chain(hist: Built, reader: Reader) -> None:
    everything = reader.find()
    assert views(everything) == views(hist.recs)
    for a, b in itertools.pairwise(everything):
        assert b.prev_hash == a.hash
    assert everything[0].segment == 0


def test_replay_upto(hist: Built, reader: Reader) -> None:
    for x in ["x-alpha", "x-eps", "x-delta"]:  # sealed only, sealed only, unsealed only
        recs = hist.of(x)
        for upto in [recs[0].seq - 1, recs[0].seq, recs[len(recs) // 2].seq, recs[-1].seq - 1, recs[-1].seq, 10_000]:
            assert views(list(reader.replay(x, upto=upto))) == views([r for r in recs if r.seq <= upto]), (x, upto)
    # Sealed and unsealed: an upto from its last sealed event on.
    gamma = hist.of("x-gamma")
    for upto in [gamma[9].seq, gamma[10].seq, gamma[10].seq + 1, gamma[-1].seq, 10_000]:
        assert views(list(reader.replay("x-gamma", upto=upto))) == views([r for r in gamma if r.seq <= upto]), upto
    assert list(reader.replay("x-alpha", upto=-1)) == []  # before its first event: empty, not NotFoundError




def test_replay_upto_of_an_execution_with_sealed_and_unsealed_events(hist: Built, reader: Reader) -> None:
    gamma = hist.of("x-gamma")
    assert reader.state_at("x-gamma", upto=gamma[2].seq) == {"draft": 1}
    for upto in [gamma[0].seq - 1, gamma[0].seq, gamma[4].seq, gamma[8].seq]:
        assert views(list(reader.replay("x-gamma", upto=upto))) == views([r for r in gamma if r.seq <= upto]), upto


def test_replay_of_an_unknown_execution_raises_not_found(reader: Reader) -> None:
    with pytest.raises(NotFoundError, match="x-nobody"):
        list(reader.replay("x-nobody"))
    assert reader.events("x-nobody") == []
    assert reader.latest_seq("x-nobody") is None
    assert reader.events_after("x-nobody", -1) == []


@pytest.mark.parametrize("x", list(EXECS))
def test_events_after_and_latest_seq(hist: Built, reader: Reader, x: str) -> None:
    expected = hist.of(x)
    assert reader.latest_seq(x) == expected[-1].seq
    for after in [-1, expected[0].seq, expected[len(expected) // 2].seq, expected[-1].seq - 1, expected[-1].seq]:
        assert views(reader.events_after(x, after)) == views([r for r in expected if r.seq > after]), after


def test_execution_exists_and_count_events(hist: Built, reader: Reader) -> None:
    for x in EXECS:
        assert reader.execution_exists(x) is True
        assert reader.count_events(x) == len(hist.of(x))
    for x in ["x-nobody", "x-alph", "X-ALPHA", ""]:
        assert reader.execution_exists(x) is False
        assert reader.count_events(x) == 0
    assert reader.count_events() == len(hist.recs)
    assert sum(reader.count_events(x) for x in EXECS) == len(hist.recs)


def test_thread_events_across_executions(hist: Built, reader: Reader) -> None:
    for thread in THREADS:
        expected = [r for r in hist.recs if r.thread_id == thread]
        assert views(reader.thread_events(thread)) == views(expected), thread
    # thread-1: a sealed, a mixed and an unsealed execution, interleaved in seq order.
    assert {e.execution_id for e in reader.thread_events("thread-1")} == {"x-alpha", "x-gamma", "x-delta"}
    assert reader.thread_events("thread-3") == []


def test_get_event(hist: Built, reader: Reader) -> None:
    for r in hist.recs:
        e = reader.get_event(r.event_id)
        assert e is not None and view(e) == view(r), r.event_id
    assert reader.get_event("ev-9999") is None
    assert reader.get_event("") is None


# -- executions ----------------------------------------------------------------------------------------


def expected_summaries(hist: Built, tenant: str | None = None, *, sealed_only: bool = False) -> list[ExecutionSummary]:
    out = []
    for x in EXECS:
        recs = hist.of(x, sealed_only=sealed_only)
        if not recs or (tenant is not None and recs[0].tenant_id != tenant):
            continue
        out.append(ExecutionSummary(
            execution_id=x, stream=STREAM, tenant_id=recs[0].tenant_id, thread_id=recs[0].thread_id,
            first_seq=recs[0].seq, last_seq=recs[-1].seq, events=len(recs), started=recs[0].ts, last_ts=recs[-1].ts,
            last_event_type=recs[-1].event_type,
        ))
    return sorted(out, key=lambda s: s.started, reverse=True)


def test_executions_newest_first(hist: Built, reader: Reader) -> None:
    everything = reader.executions(limit=None)
    assert [s.execution_id for s in everything] == ["x-delta", "x-gamma", "x-eps", "x-beta", "x-alpha"]
    assert everything == expected_summaries(hist)
    assert {s.execution_id: s.status for s in everything} == {
        "x-delta": "open", "x-gamma": "open", "x-eps": "open", "x-beta": "failed", "x-alpha": "completed"}
    assert reader.executions() == everything  # the default limit (100) is more than enough


def test_executions_by_tenant(hist: Built, reader: Reader) -> None:
    for tenant in TENANTS:
        assert reader.executions(tenant, limit=None) == expected_summaries(hist, tenant), tenant
    assert [s.execution_id for s in reader.executions("tenant-a")] == ["x-delta", "x-gamma", "x-alpha"]
    assert reader.executions("tenant-z") == []


def test_executions_pagination(hist: Built, reader: Reader) -> None:
    everything = expected_summaries(hist)
    pages = [reader.executions(limit=2, offset=o) for o in (0, 2, 4, 6)]
    assert [[s.execution_id for s in p] for p in pages] == [["x-delta", "x-gamma"], ["x-eps", "x-beta"], ["x-alpha"],
                                                            []]
    assert [s for p in pages for s in p] == everything
    assert reader.executions(limit=0) == []
    assert reader.executions(limit=None, offset=3) == everything[3:]
    assert reader.executions("tenant-b", limit=1, offset=1) == [s for s in everything if s.tenant_id == "tenant-b"][1:2]


# -- find ------------------------------------------------------------------------------------------------


def test_find_by_event_type(hist: Built, reader: Reader) -> None:
    for event_type in ["state_updated", "tool_called", "human_modified", "execution_started", "node_failed"]:
        expected = [r for r in hist.recs if r.event_type == event_type]
        assert views(reader.find(event_type=event_type)) == views(expected), event_type
    assert reader.find(event_type="edge_selected") == []
    expected = [r for r in hist.recs if r.event_type == "state_updated" and r.execution_id == "x-gamma"]
    assert views(reader.find(event_type="state_updated", execution_id="x-gamma")) == views(expected)
    assert [e.sealed for e in reader.find(event_type="state_updated", execution_id="x-gamma")] == [True, False]


def test_find_by_time_range(hist: Built, reader: Reader) -> None:
    def between(since: dt.datetime | None, until: dt.datetime | None) -> list[Rec]:
        return [r for r in hist.recs if (since is None or r.ts >= since) and (until is None or r.ts < until)]

    ranges = [
        (None, MIDNIGHT),  # day 1 only
        (MIDNIGHT, None),  # day 2, sealed and unsealed
        (DAY1 + dt.timedelta(minutes=10), DAY1 + dt.timedelta(minutes=20)),  # within day 1, across segments
        (DAY1 + dt.timedelta(minutes=30), DAY2 + dt.timedelta(minutes=50)),  # across the date boundary
        (DAY2 + dt.timedelta(minutes=52), None),  # the tail, mostly unsealed
        (DAY1 + dt.timedelta(minutes=12), DAY1 + dt.timedelta(minutes=12, microseconds=1)),  # one event
        (DAY1 + dt.timedelta(minutes=12), DAY1 + dt.timedelta(minutes=12)),  # empty
        (DAY2 + dt.timedelta(days=1), None),  # after everything
    ]
    for since, until in ranges:
        assert views(reader.find(since=since, until=until)) == views(between(since, until)), (since, until)
    assert views(reader.find(since=DAY1 + dt.timedelta(minutes=12), until=DAY1 + dt.timedelta(minutes=13))) == views(
        [hist.recs[12]])
    # A naive datetime is taken as UTC.
    naive = (DAY1 + dt.timedelta(minutes=10)).replace(tzinfo=None)
    assert seqs(reader.find(since=naive, until=naive + dt.timedelta(minutes=3))) == [10, 11, 12]
    # Type and time together, and a limit (the first events in seq order).
    expected = [r for r in between(MIDNIGHT, None) if r.event_type == "tool_called"]
    assert views(reader.find(event_type="tool_called", since=MIDNIGHT)) == views(expected)
    assert views(reader.find(limit=5)) == views(hist.recs[:5])
    assert views(reader.find(since=MIDNIGHT, limit=3)) == views(between(MIDNIGHT, None)[:3])


class RecordingStore:
    """An ObjectReader that remembers which objects' bytes were fetched."""

    def __init__(self, store: ObjectReader) -> None:
        self.store = store
        self.fetched: set[str] = set()

    def get(self, name: str) -> bytes:
        self.fetched.add(name)
        return self.store.get(name)

    def get_range(self, name: str, start: int, length: int) -> bytes:
        self.fetched.add(name)
        return self.store.get_range(name, start, length)

    def head(self, name: str) -> ObjectInfo | None:
        return self.store.head(name)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.store.list(prefix)


def test_find_skips_the_other_dates_segments(hist: Built) -> None:
    store = RecordingStore(LocalStore(hist.store))
    reader = Reader(store, public_keys=[hist.verify_key])
    day2 = reader.find(since=MIDNIGHT)
    assert views(day2) == views([r for r in hist.sealed() if r.ts >= MIDNIGHT])
    segments = {m.object for m in hist.manifests}
    assert store.fetched & segments == {m.object for m in hist.manifests[6:]}


# -- state and resume point -------------------------------------------------------------------------------


def test_state_at_folds_state_updates_and_human_edits(hist: Built, reader: Reader) -> None:
    alpha = hist.of("x-alpha")
    human = next(r for r in alpha if r.event_type == "human_modified")
    assert reader.state_at("x-alpha", upto=alpha[1].seq) == {}
    assert reader.state_at("x-alpha", upto=human.seq - 1) == {"plan": "v1", "budget": 100}
    assert reader.state_at("x-alpha", upto=human.seq) == {"plan": "v2", "budget": 100, "approved_by": "ann"}
    assert reader.state_at("x-alpha") == {"plan": "v2", "budget": 120, "approved_by": "ann"}
    # Mixed sealed / unsealed: the last change is in the WAL.
    gamma = hist.of("x-gamma")
    assert reader.state_at("x-gamma", upto=gamma[9].seq) == {"draft": 1}  # (an earlier upto: see UPTO_BUG)
    assert reader.state_at("x-gamma") == {"draft": 2, "words": 300}
    assert reader.state_at("x-delta") == {"q": "x"}
    assert reader.state_at("x-beta") == {}
    with pytest.raises(NotFoundError):
        reader.state_at("x-nobody")


def test_resume_points(hist: Built, reader: Reader) -> None:
    alpha = reader.resume_point("x-alpha")
    assert (alpha.status, alpha.last_completed_node, alpha.pending) == ("completed", "search", [])
    assert (alpha.last_seq, alpha.last_event_type) == (hist.of("x-alpha")[-1].seq, "execution_completed")
    assert alpha.state == {"plan": "v2", "budget": 120, "approved_by": "ann"}
    # The step of the last node_completed / step_completed event (alpha has node_completed ones only).
    assert alpha.last_completed_step == "x-alpha-step-10"

    beta = reader.resume_point("x-beta")
    assert (beta.status, beta.last_completed_node, beta.pending) == ("failed", None, [])

    gamma = reader.resume_point("x-gamma")
    assert (gamma.status, gamma.last_completed_node, gamma.pending) == ("open", "reviewer", ["writer"])
    assert gamma.last_completed_step == "x-gamma-step-10"
    assert (gamma.last_seq, gamma.last_event_type) == (hist.of("x-gamma")[-1].seq, "tool_called")
    assert gamma.state == {"draft": 2, "words": 300}

    delta = reader.resume_point("x-delta")
    assert (delta.status, delta.last_completed_node, delta.pending, delta.state) == (
        "open", None, ["planner"], {"q": "x"})
    assert json.loads(json.dumps(delta.to_dict())) == dataclasses.asdict(delta)
    with pytest.raises(NotFoundError):
        reader.resume_point("x-nobody")


# -- JSON round trips ---------------------------------------------------------------------------------------


def test_event_json_round_trip(reader: Reader) -> None:
    events = reader.find()
    assert any(e.sealed for e in events) and any(not e.sealed for e in events)
    for e in events:
        assert Event.from_json(e.to_json()) == e
        assert Event.from_dict(e.to_dict()) == e
        assert Event.from_dict(json.loads(json.dumps(e.to_dict()))) == e
        d = json.loads(e.to_json())
        assert d["ts"].endswith("Z") and d["seq"] == e.seq and d["payload"] == e.payload


def test_execution_summary_json_round_trip(reader: Reader) -> None:
    for s in reader.executions(limit=None):
        d = s.to_dict()
        assert d["status"] == s.status
        assert ExecutionSummary.from_dict(d) == s
        assert ExecutionSummary.from_dict(json.loads(json.dumps(d))) == s


# -- with and without the WAL --------------------------------------------------------------------------------


def test_a_reader_without_the_wal_sees_only_sealed_events(hist: Built) -> None:
    reader = Reader(hist.store)  # the store's own keys, no WAL
    for x in ["x-alpha", "x-beta", "x-eps", "x-gamma"]:
        assert views(list(reader.replay(x))) == views(hist.of(x, sealed_only=True)), x
        assert reader.latest_seq(x) == hist.of(x, sealed_only=True)[-1].seq
        assert reader.count_events(x) == len(hist.of(x, sealed_only=True))
    assert reader.execution_exists("x-delta") is False
    with pytest.raises(NotFoundError):
        list(reader.replay("x-delta"))
    assert reader.count_events() == len(hist.sealed())
    assert reader.executions(limit=None) == expected_summaries(hist, sealed_only=True)
    assert views(reader.thread_events("thread-1")) == views([r for r in hist.sealed() if r.thread_id == "thread-1"])
    assert reader.get_event(hist.recs[-1].event_id) is None
    assert views(reader.find(since=MIDNIGHT)) == views([r for r in hist.sealed() if r.ts >= MIDNIGHT])
    assert reader.state_at("x-gamma") == {"draft": 1}
    # The same store with the WAL directory: the unsealed events too.
    with_wal = Reader(hist.store, wal_dir=hist.wal, wal_key=wal_key(hist.store, hist.keys))
    assert views(with_wal.events("x-delta")) == views(hist.of("x-delta"))
    assert with_wal.count_events() == len(hist.recs)
    assert with_wal.get_event(hist.recs[-1].event_id) is not None


def test_a_live_journals_reader_follows_appends_and_seals(tmp_path: Path) -> None:
    with Journal.create(tmp_path / "store", key_dir=tmp_path / "keys", config=CONFIG) as j:
        rec = Recorder(j)
        ts = DAY1
        reader = j.reader()
        assert reader.count_events() == 0 and reader.executions() == []
        for i in range(6):
            rec.append("step_completed", f"x-{i % 2}", {"i": i}, ts=ts, thread_id="t")
        assert views(reader.events("x-0")) == views(rec.recs[0::2])
        rec.seal()
        for i in range(6, 9):
            rec.append("step_completed", f"x-{i % 2}", {"i": i}, ts=ts, thread_id="t")
        # The same Reader object: now 6 sealed events and 3 in the WAL.
        assert views(reader.events("x-0")) == views([r for r in rec.recs if r.execution_id == "x-0"])
        assert views(reader.thread_events("t")) == views(rec.recs)
        assert reader.latest_seq("x-1") == 7
        rec.seal()
        assert views(reader.find()) == views(rec.recs)
        assert all(e.sealed for e in reader.find())


# -- the index is derived data: stale or missing, the answers stay right -------------------------------------


def snapshot(reader: Reader, hist: Built) -> dict[Any, Any]:
    """Every lookup's answer, as comparable values."""
    out: dict[Any, Any] = {}
    for x in [*EXECS, "x-nobody"]:
        out["events", x] = views(reader.events(x))
        out["latest", x] = reader.latest_seq(x)
        out["exists", x] = reader.execution_exists(x)
        out["count", x] = reader.count_events(x)
    out["count"] = reader.count_events()
    for thread in THREADS:
        out["thread", thread] = views(reader.thread_events(thread))
    out["executions"] = reader.executions(limit=None)
    for tenant in TENANTS:
        out["executions", tenant] = reader.executions(tenant, limit=None)
    for r in hist.recs:
        e = reader.get_event(r.event_id)
        out["get", r.event_id] = None if e is None else view(e)
    out["get", "ev-9999"] = reader.get_event("ev-9999")
    out["find"] = views(reader.find(event_type="state_updated"))
    return out


@pytest.fixture(scope="module")
def expected_snapshot(hist: Built) -> dict[Any, Any]:
    """The answers that are right: from the intact journal, each checked against the appended events."""
    snap = snapshot(hist.reader(), hist)
    for x in EXECS:
        assert snap["events", x] == views(hist.of(x))
        assert snap["count", x] == len(hist.of(x))
    for thread in THREADS:
        assert snap["thread", thread] == views([r for r in hist.recs if r.thread_id == thread])
    assert snap["executions"] == expected_summaries(hist)
    assert all(snap["get", r.event_id] == view(r) for r in hist.recs)
    return snap


def remove(path: Path) -> None:
    make_writable(path)
    path.unlink()


def index_objects(hist: Built) -> list[Path]:
    return sorted((hist.store / "index").rglob("*.parquet"))


def is_run(path: Path) -> bool:
    parsed = layout.parse_index(path.relative_to(path.parents[3]).as_posix())
    assert parsed is not None, path
    return parsed[2] != parsed[3]


@pytest.mark.parametrize(
    "damage",
    ["all", "runs", "some-segments", "runs-and-some-segments", "executions-only", "events-only"],
)
def test_missing_index_objects_give_the_same_answers(hist_copy: Built, expected_snapshot: dict[Any, Any],
                                                       damage: str) -> None:
    h = hist_copy
    if damage == "all":
        doomed = index_objects(h)
    elif damage == "runs":
        doomed = [p for p in index_objects(h) if is_run(p)]
    elif damage == "some-segments":  # outside the run: these are the objects that are read
        doomed = [h.index_path("executions", 9, 9), h.index_path("events", 8, 8), h.index_path("events", 10, 10)]
    elif damage == "runs-and-some-segments":
        doomed = [p for p in index_objects(h) if is_run(p)]
        doomed += [h.index_path("executions", 2, 2), h.index_path("executions", 5, 5), h.index_path("events", 3, 3)]
    else:
        kind = damage.split("-")[0]
        doomed = [p for p in index_objects(h) if f"/{kind}/" in p.as_posix()]
    assert doomed
    for path in doomed:
        remove(path)
    reader = h.reader()
    assert snapshot(reader, h) == expected_snapshot
    if damage == "all":
        assert index_objects(h) == []
        assert reader.catalog.cover("executions", SEGMENTS) == ([], list(range(SEGMENTS)))


def test_lookups_through_the_level_1_run(hist: Built, expected_snapshot: dict[Any, Any], tmp_path: Path) -> None:
    """The run is what lookups use for segments 0..7; its answers equal a scan of the segments."""
    reader = hist.reader()
    for kind in layout.INDEX_KINDS:
        objects, missing = reader.catalog.cover(kind, SEGMENTS)
        assert (objects[0].first, objects[0].last, missing) == (0, 7, [])
    # Per-segment objects of segments 0..7 are not needed while the run is there.
    h = hist.copy(tmp_path / "journal")
    for kind in layout.INDEX_KINDS:
        for n in range(8):
            remove(h.index_path(kind, n, n))
    assert snapshot(h.reader(), h) == expected_snapshot


def test_an_unreadable_index_object_is_read_around(hist_copy: Built, expected_snapshot: dict[Any, Any]) -> None:
    h = hist_copy
    overwrite(h.index_path("executions", 0, 7), b"not parquet at all")
    overwrite(h.index_path("events", 9, 9), h.index_path("events", 9, 9).read_bytes()[:100])
    assert snapshot(h.reader(), h) == expected_snapshot


def test_an_index_object_of_another_journal_is_ignored(hist: Built, hist_copy: Built, tmp_path: Path,
                                                       expected_snapshot: dict[Any, Any]) -> None:
    other = build(tmp_path / "other")  # same script, same names: only the journal id differs
    for kind in layout.INDEX_KINDS:
        for first, last in [(0, 7), (8, 8), (10, 10)]:
            overwrite(hist_copy.index_path(kind, first, last), other.index_path(kind, first, last).read_bytes())
    assert snapshot(hist_copy.reader(), hist_copy) == expected_snapshot




@pytest.mark.parametrize(("src", "dst", "drop_runs"), [(1, 2, True), (9, 10, False), (10, 9, False)],
                         ids=["1-over-2", "9-over-10", "10-over-9"])
def test_an_index_object_of_another_segment_gives_the_right_answers(
    hist_copy: Built, expected_snapshot: dict[Any, Any], src: int, dst: int, drop_runs: bool
) -> None:
    h = hist_copy
    if drop_runs:  # so that the per-segment objects are the ones used
        for path in index_objects(h):
            if is_run(path):
                remove(path)
    for kind in layout.INDEX_KINDS:
        overwrite(h.index_path(kind, dst, dst), h.index_path(kind, src, src).read_bytes())
    assert snapshot(h.reader(), h) == expected_snapshot


def test_an_index_object_of_another_segment_control(hist_copy: Built, expected_snapshot: dict[Any, Any]) -> None:
    """The same swap where the segment's own object is shadowed by the run: no effect (control for the xfail)."""
    h = hist_copy
    for kind in layout.INDEX_KINDS:
        overwrite(h.index_path(kind, 2, 2), h.index_path(kind, 1, 1).read_bytes())
    assert snapshot(h.reader(), h) == expected_snapshot


def test_thread_events_does_not_change_with_a_seal(tmp_path: Path) -> None:
    with Journal.create(tmp_path / "store", key_dir=tmp_path / "keys", config=CONFIG) as j:
        j.append("execution_started", "x-1", {}, thread_id="t-1", ts=DAY1)
        j.append("tool_called", "x-1", {}, thread_id="t-2", ts=DAY1)
        before = [e.seq for e in j.reader().thread_events("t-2")]
        assert before == [1]
        j.seal()
        assert [e.seq for e in j.reader().thread_events("t-2")] == before


# -- keys ------------------------------------------------------------------------------------------------------


def test_a_reader_with_the_wrong_public_key_raises(hist: Built) -> None:
    # Fail closed at once: no key of the journal's key history is one the caller trusts, so nothing
    # it could read (sealed, or unsealed and chained onto a sealed manifest) can be trusted.
    other = SigningKey.generate(key_name(hist.journal_id)).verify_key
    with pytest.raises(IntegrityError, match="no key of the key history is a trusted key") as err:
        hist.reader(public_keys=[other])
    assert err.value.kind == "key_history"


def test_a_reader_with_no_key_refuses(hist: Built) -> None:
    with pytest.raises(IntegrityError, match="no key of the key history is a trusted key"):
        hist.reader(public_keys=[])


# -- the same on S3 ----------------------------------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    return bucket.store("archive/reader")


def test_replay_executions_and_get_event_on_every_store(any_store: Any, tmp_path: Path) -> None:
    keys, wal = tmp_path / "keys", tmp_path / "wal"
    with Journal.create(any_store, key_dir=keys, wal_dir=wal, config=CONFIG) as j:
        rec = Recorder(j)
        for s in range(3):
            for i in range(5):
                x = ["x-a", "x-b", "x-c"][(s + i) % 3]
                rec.append("step_completed", x, {"s": s, "i": i},
                           ts=(DAY1 if s < 2 else DAY2) + dt.timedelta(minutes=i),
                           tenant_id="t-even" if x != "x-b" else "t-odd", thread_id="th")
            rec.seal()
        rec.append("execution_completed", "x-a", {"done": True}, ts=DAY2, tenant_id="t-even", thread_id="th")
        key = j.verify_key
    assert len(rec.manifests) == 3
    reader = Reader(any_store, public_keys=[key], wal_dir=wal, wal_key=load_wal_key(keys, j.journal_id))
    for x in ["x-a", "x-b", "x-c"]:
        assert views(list(reader.replay(x))) == views([r for r in rec.recs if r.execution_id == x]), x
    assert [e.sealed for e in reader.replay("x-a")][-1] is False
    summaries = reader.executions(limit=None)
    assert [(s.execution_id, s.events, s.status) for s in summaries] == [("x-c", 5, "open"), ("x-b", 5, "open"),
                                                                         ("x-a", 6, "completed")]
    assert [s.execution_id for s in reader.executions("t-odd")] == ["x-b"]
    assert [s.execution_id for s in reader.executions(limit=1, offset=1)] == ["x-b"]
    for r in rec.recs:
        e = reader.get_event(r.event_id)
        assert e is not None and view(e) == view(r)
    assert reader.get_event("nope") is None
    with pytest.raises(NotFoundError):
        list(reader.replay("x-nobody"))
    # Without the WAL: the sealed events only; with the wrong key: nothing.
    sealed_only = Reader(any_store, public_keys=[key])
    assert views(sealed_only.events("x-a")) == views(
        [r for r in rec.recs if r.execution_id == "x-a" and r.segment is not None])
    with pytest.raises(IntegrityError, match="no key of the key history is a trusted key"):
        Reader(any_store, public_keys=[SigningKey.generate(key_name(reader.identity.journal_id)).verify_key])
