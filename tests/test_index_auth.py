"""The authenticated index: reindex, encodings, lying statistics, runs from damaged inputs, strict manifests.

The module's journal (``hist``, built once, copied by the tests that damage it) is
written with index row groups of 2 rows (executions, threads) and 4 rows (events), so
that every index object has several row groups. Twelve executions over 10 sealed
segments, interleaved; segments 0..7 form a level-1 run, 8 and 9 keep their
per-segment objects. ``x-05`` changes thread at segment 6 and ``x-11`` has no thread.

Every answer is compared with what was appended (the ``Rec`` list of the Recorder).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_reader import Built, Rec, Recorder, view, views

from wormjournal import ExecutionSummary, IntegrityError, Journal, JournalConfig, Reader
from wormjournal.index import build as index_build
from wormjournal.index.catalog import IndexFile, IndexObject
from wormjournal.index.reindex import reindex_store
from wormjournal.journal import sealer as sealer_mod
from wormjournal.segments import pages
from wormjournal.segments.manifest import IndexRoot, Manifest
from wormjournal.segments.notes import NoteError, open_note
from wormjournal.segments.table import encode_block_roots
from wormjournal.storage import layout
from wormjournal.storage.local import LocalStore

from conftest import make_writable, overwrite

STREAM = "main"
CONFIG = JournalConfig(seal_max_age_seconds=None, row_group_rows=4)
BASE = dt.datetime(2025, 3, 14, 9, 0, tzinfo=dt.UTC)
SMALL_BLOCKS = {"executions": 2, "threads": 2, "events": 4, "tenants": 2}
SEGMENTS = 10
KINDS = ("executions", "threads", "events", "tenants")
# execution -> (first segment, last segment, tenant, thread)
SPANS: dict[str, tuple[int, int, str, str | None]] = {
    "x-00": (0, 9, "tn-a", "t-0"), "x-01": (0, 5, "tn-b", "t-1"), "x-02": (0, 3, "tn-a", "t-2"),
    "x-03": (1, 7, "tn-b", "t-0"), "x-04": (2, 2, "tn-a", "t-1"), "x-05": (3, 9, "tn-b", "t-2"),
    "x-06": (4, 5, "tn-a", "t-3"), "x-07": (5, 5, "tn-b", "t-1"), "x-08": (6, 9, "tn-a", "t-2"),
    "x-09": (7, 8, "tn-b", "t-3"), "x-10": (8, 9, "tn-a", "t-2"), "x-11": (0, 9, "tn-b", None),
}
EXECS = list(SPANS)
THREADS = ["t-0", "t-1", "t-2", "t-3"]


def thread_of(x: str, segment: int) -> str | None:
    return "t-3" if x == "x-05" and segment >= 6 else SPANS[x][3]


def append_segment(rec: Recorder, s: int, *, threads: bool = True) -> None:
    """Segment ``s``'s events: each active execution 1 or 2 events, appended round-robin."""
    active = [x for x, (a, b, _, _) in SPANS.items() if a <= s <= b]
    left = {x: 1 + (s + i) % 2 for i, x in enumerate(active)}
    while any(left.values()):
        for x in active:
            if not left[x]:
                continue
            left[x] -= 1
            n = sum(r.execution_id == x for r in rec.recs)
            last = s == SPANS[x][1] and not left[x] and s < SEGMENTS - 1
            kind = "execution_started" if n == 0 else "execution_completed" if last else "step_completed"
            rec.append(kind, x, {"x": x, "s": s, "n": n}, ts=BASE + dt.timedelta(minutes=len(rec.recs)),
                       tenant_id=SPANS[x][2], thread_id=thread_of(x, s) if threads else None, step_id=f"{x}-{n}")


def build_journal(root: Path, segments: int = SEGMENTS, *, threads: bool = True,
                  before_last: Callable[[Path], None] | None = None) -> Built:
    with Journal.create(root / "store", key_dir=root / "keys", config=CONFIG) as j:
        rec = Recorder(j)
        for s in range(segments):
            if before_last is not None and s == segments - 1:
                before_last(root / "store")
            append_segment(rec, s, threads=threads)
            assert [m.segment for m in rec.seal()] == [s]
        return Built(root, rec.recs, rec.manifests, j.journal_id, j.verify_key)


@pytest.fixture(scope="module")
def hist(tmp_path_factory: pytest.TempPathFactory) -> Built:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(index_build, "BLOCK_ROWS", SMALL_BLOCKS)
        return build_journal(tmp_path_factory.mktemp("index-auth") / "journal")


@pytest.fixture
def h(hist: Built, tmp_path: Path) -> Built:
    return hist.copy(tmp_path / "journal")


def reader_of(b: Built) -> Reader:
    return Reader(b.store, public_keys=[b.verify_key])


def index_names(b: Built) -> set[str]:
    return {p.relative_to(b.store).as_posix() for p in (b.store / "index").rglob("*.parquet")}


def remove_names(b: Built, names: set[str]) -> None:
    for name in names:
        make_writable(b.store / name)
        (b.store / name).unlink()


def read_note(b: Built, n: int) -> str:
    text, _ = open_note((b.store / layout.manifest(STREAM, n)).read_bytes(), [b.verify_key])
    return text


def rewrite(path: Path, rows: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None, *,
            group: int | None = None, meta: dict[bytes, bytes] | None = None, **options: Any) -> None:
    """Re-encode an index object: its rows (edited by ``rows``), its metadata (or ``meta``), row groups of
    ``group`` rows (default: its own wormjournal.block_rows), other pyarrow ``options``."""
    table = pq.read_table(path)
    metadata = meta or table.schema.metadata
    if rows is not None:
        table = pa.Table.from_pylist(rows(table.to_pylist()), schema=table.schema)
    block = int(table.schema.metadata[index_build.BLOCK_ROWS_KEY.encode()])
    make_writable(path)
    pq.write_table(table.replace_schema_metadata(metadata), path, row_group_size=group or block, **options)


# -- the truth, from the appended events -----------------------------------------------------------------


def storage_rows(recs: list[Rec], s: int) -> list[Rec]:
    return sorted((r for r in recs if r.segment == s), key=lambda r: (r.execution_id, r.seq))


def truth(recs: list[Rec], kind: str, history: list[Rec] | None = None) -> list[tuple[Any, ...]]:
    """Every index row of ``kind`` for the sealed ``recs`` (of a ``history``, all of them by default): key first."""
    out: list[tuple[Any, ...]] = []
    history = recs if history is None else history
    for s in sorted({r.segment for r in recs if r.segment is not None}):
        rows = storage_rows(recs, s)
        for i, r in enumerate(rows):
            if kind == "events":
                out.append((index_build.fingerprint(r.event_id), s, i))
            elif kind == "threads" and r.thread_id is not None:
                out.append((r.thread_id, r.execution_id, s))
            elif kind == "executions" and (i == 0 or rows[i - 1].execution_id != r.execution_id):
                mine = [q for q in rows if q.execution_id == r.execution_id]
                out.append((r.execution_id, s, i, len(mine), mine[0].seq, mine[-1].seq))
            elif (kind == "tenants" and r.tenant_id is not None
                  and (i == 0 or rows[i - 1].execution_id != r.execution_id)):
                mine = [q for q in rows if q.execution_id == r.execution_id]
                start = min((q for q in history if q.execution_id == r.execution_id), key=lambda q: q.seq).ts
                out.append((r.tenant_id, start, r.execution_id, len(mine), mine[0].seq, mine[-1].seq))
    return combined(out) if kind == "tenants" else sorted(set(out))


def combined(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Tenants rows (tenant, started, execution, rows, first_seq, last_seq) as one per execution: runs combine
    an execution's rows (FORMAT.md 11a), so which ones an object holds depends on its range."""
    out: dict[tuple[Any, ...], list[int]] = {}
    for tenant, started, x, n, first, last in rows:
        cur = out.setdefault((tenant, started, x), [0, first, last])
        cur[0] += n
        cur[1], cur[2] = min(cur[1], first), max(cur[2], last)
    return sorted((*k, *v) for k, v in out.items())


def got(table: pa.Table, kind: str) -> list[tuple[Any, ...]]:
    if kind == "tenants":
        return combined([(r["tenant_id"], r["started"], r["execution_id"], r["rows"], r["first_seq"], r["last_seq"])
                         for r in table.to_pylist()])
    cols = {"events": ["fingerprint", "segment", "row"], "threads": ["thread_id", "execution_id", "segment"],
            "executions": ["execution_id", "segment", "row", "rows", "first_seq", "last_seq"],
            }[kind]
    return sorted(tuple(r[c] for c in cols) for r in table.to_pylist())


def summaries(b: Built) -> list[ExecutionSummary]:
    out = []
    for x in EXECS:
        recs = b.of(x)
        if not recs:
            continue
        out.append(ExecutionSummary(
            execution_id=x, stream=STREAM, tenant_id=recs[0].tenant_id, thread_id=recs[0].thread_id,
            first_seq=recs[0].seq, last_seq=recs[-1].seq, events=len(recs), started=recs[0].ts,
            last_ts=recs[-1].ts, last_event_type=recs[-1].event_type))
    return sorted(out, key=lambda s: (s.started, s.first_seq), reverse=True)


def check_reads(reader: Reader, b: Built, executions: list[str] | None = None) -> None:
    """Every read equals the appended events."""
    for x in executions if executions is not None else EXECS:
        assert views(list(reader.replay(x))) == views(b.of(x)), x
    if executions is None:
        for t in [*THREADS, "t-9"]:
            assert views(reader.thread_events(t)) == views([r for r in b.recs if r.thread_id == t]), t
        for r in b.recs:
            e = reader.get_event(r.event_id)
            assert e is not None and view(e) == view(r), r.event_id
        assert reader.get_event("ev-9999") is None
        assert reader.executions(limit=None) == summaries(b)
        for tenant in ("tn-a", "tn-b", "tn-c"):  # through the tenants objects: the newest first, a page at a time
            mine = [x for x in summaries(b) if x.tenant_id == tenant]
            assert reader.executions(tenant, limit=None) == mine, tenant
            assert [reader.executions(tenant, limit=2, offset=k) for k in range(0, 8, 2)] == [
                mine[k : k + 2] for k in range(0, 8, 2)], tenant


def test_the_journal_is_what_the_tests_assume(hist: Built) -> None:
    assert [m.segment for m in hist.manifests] == list(range(SEGMENTS))
    names = index_names(hist)
    assert names == {layout.index_object(STREAM, k, a, b) for k in KINDS for n in range(SEGMENTS)
                     for a, b in index_build.ranges_ending_at(n)}
    assert {layout.index_object(STREAM, "events", 0, 5), layout.index_object(STREAM, "threads", 8, 9)} <= names
    reader = reader_of(hist)
    reader.refresh()
    for kind in KINDS:
        objects, missing = reader.catalog.cover(kind, SEGMENTS)
        assert [(o.first, o.last) for o in objects] == [(0, 7), (8, 9)] and missing == []
        f = reader.catalog._file(kind, objects[0])  # noqa: SLF001
        assert f.groups > 4  # several row groups: lookups must prove their neighbours
        assert got(reader.catalog.lookup(kind, SEGMENTS), kind) == truth(hist.recs, kind)
    check_reads(reader, hist)
    assert reader.catalog.damaged == {}


# -- 1. reindex restores what was removed --------------------------------------------------------------------


REMOVALS: dict[str, Callable[[set[str]], set[str]]] = {
    "all": lambda names: names,
    "runs": lambda names: {n for n in names if "000000000000-000000000007" in n},
    "some-segments": lambda names: {layout.index_object(STREAM, "executions", 9, 9),
                                    layout.index_object(STREAM, "events", 3, 3),
                                    layout.index_object(STREAM, "threads", 8, 8)},
    "one-kind": lambda names: {n for n in names if "/threads/" in n},
}


@pytest.mark.parametrize("removal", list(REMOVALS))
def test_reindex_writes_back_exactly_what_was_removed(h: Built, removal: str) -> None:
    before = {n: (h.store / n).read_bytes() for n in index_names(h)}
    removed = REMOVALS[removal](set(before))
    assert removed and removed <= set(before)
    remove_names(h, removed)
    (result,) = reindex_store(LocalStore(h.store), public_keys=[h.verify_key])
    assert (result.stream, result.segments) == (STREAM, SEGMENTS)
    assert sorted(result.written) == sorted(removed)
    assert (result.damaged, result.unrebuildable) == ([], [])
    assert index_names(h) == set(before)
    reader = reader_of(h)
    reader.refresh()
    for kind in KINDS:
        objects, missing = reader.catalog.cover(kind, SEGMENTS)
        assert missing == [] and [(o.first, o.last) for o in objects] == [(0, 7), (8, 9)]
        for n in removed:  # every rebuilt object passes the checks, each row group authenticated
            parsed = layout.parse_index(n)
            if parsed is not None and parsed[1] == kind:
                root = reader.manifest(parsed[3]).index_root(kind, parsed[2])
                assert root is not None
                obj = IndexObject(n, parsed[2], parsed[3])
                f = IndexFile(reader.store, obj, kind, root, h.journal_id, STREAM)
                assert got(f.all(), kind) == truth([r for r in h.recs if parsed[2] <= r.segment <= parsed[3]], kind,
                                                   h.recs)
    check_reads(reader, h)
    assert reader.catalog.damaged == {}
    (again,) = reindex_store(LocalStore(h.store), public_keys=[h.verify_key])
    assert (again.written, again.damaged, again.unrebuildable) == ([], [], [])


def cli_reindex(store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wormjournal", "reindex", str(store)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "250"}, timeout=120)


def test_the_reindex_command_writes_the_missing_objects(h: Built) -> None:
    removed = REMOVALS["runs"](index_names(h)) | REMOVALS["some-segments"](index_names(h))
    remove_names(h, removed)
    proc = cli_reindex(h.store)
    assert proc.returncode == 0, proc.stderr
    assert f"stream main: {SEGMENTS} segments, {len(removed)} index objects written" in proc.stdout
    assert removed <= index_names(h)
    check_reads(reader_of(h), h, ["x-00", "x-03", "x-09"])


# -- 2. a damaged object is reported and never replaced ------------------------------------------------------


DAMAGE = {  # how executions 8-9 (the run reads use) is damaged, and the execution whose history it would change
    "another-segments-object": None,
    "an-entry-dropped": "x-09",  # x-09's last events are in segment 8
    "an-entry-altered-same-count": "x-09",  # one row fewer for x-09 in segment 8; row count kept
    # (None: no history changes)
}


def damage_executions_8(h: Built, how: str) -> None:
    path = h.index_path("executions", 8, 9)
    if how == "another-segments-object":
        overwrite(path, h.index_path("executions", 9, 9).read_bytes())
    elif how == "an-entry-dropped":
        rewrite(path, lambda rows: [r for r in rows if r["execution_id"] != "x-09"])
    else:
        rewrite(path, lambda rows: [dict(r, rows=r["rows"] - 1, last_seq=r["first_seq"])
                                    if r["execution_id"] == "x-09" else r for r in rows])


def damage_params() -> list[Any]:
    return [pytest.param(k, id=k) for k in DAMAGE]


@pytest.mark.parametrize("how", damage_params())
def test_reindex_reports_a_damaged_object_and_keeps_it(h: Built, how: str) -> None:
    name = layout.index_object(STREAM, "executions", 8, 9)
    damage_executions_8(h, how)
    data = (h.store / name).read_bytes()
    (result,) = reindex_store(LocalStore(h.store), public_keys=[h.verify_key])
    assert (result.written, result.damaged, result.unrebuildable) == ([], [name], [])
    assert (h.store / name).read_bytes() == data
    proc = cli_reindex(h.store)
    assert proc.returncode == 1
    assert f"{SEGMENTS} segments, 0 index objects written" in proc.stdout
    assert name in proc.stderr and "damaged" in proc.stderr
    assert (h.store / name).read_bytes() == data
    touched = DAMAGE[how]
    check_reads(reader_of(h), h, None if touched is None else [x for x in EXECS if x != touched])
    if touched is not None:
        with pytest.raises(IntegrityError):
            list(reader_of(h).replay(touched))


# -- 3. the encoding does not matter, the rows do -------------------------------------------------------------


def regroup_with_roots(path: Path) -> None:
    """The same rows in row groups of twice the size, the footer's block roots recomputed to match."""
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    kind = meta[b"wormjournal.kind"].decode()
    block = 2 * int(meta[index_build.BLOCK_ROWS_KEY.encode()])
    roots = index_build.merkle.block_roots(index_build.leaf_hashes(kind, table.replace_schema_metadata(None)), block)
    meta[index_build.BLOCK_ROWS_KEY.encode()] = str(block).encode()
    meta[index_build.BLOCK_ROOTS_KEY.encode()] = encode_block_roots(roots).encode()
    rewrite(path, group=block, meta=meta)


ENCODINGS: dict[str, tuple[Callable[[Path], None], bool]] = {  # (re-encode, accepted)
    "uncompressed": (lambda p: rewrite(p, compression="none"), True),
    "zstd-with-dictionaries": (lambda p: rewrite(p, compression="zstd", use_dictionary=True), True),  # as before
    "snappy-no-dictionary-no-stats": (lambda p: rewrite(p, compression="snappy", use_dictionary=False,
                                                        write_statistics=False), True),
    "regrouped-with-its-block-roots": (regroup_with_roots, True),
    "regrouped-without-its-block-roots": (lambda p: rewrite(p, group=4 * 2, compression="none"), False),
    "non-power-of-two-groups": (lambda p: rewrite(p, group=3), False),
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_another_encoding_of_the_same_rows_is_used(h: Built, encoding: str) -> None:
    reencode, accepted = ENCODINGS[encoding]
    used = {layout.index_object(STREAM, k, 0, 7) for k in KINDS} | {layout.index_object(STREAM, "events", 8, 9)}
    for name in used:
        data = (h.store / name).read_bytes()
        reencode(h.store / name)
        assert (h.store / name).read_bytes() != data
    reader = reader_of(h)
    check_reads(reader, h)
    assert set(reader.catalog.damaged) == (set() if accepted else used)
    reader.refresh()
    for kind in KINDS:  # and the lookups return exactly the true rows either way
        assert got(reader.catalog.lookup(kind, SEGMENTS), kind) == truth(h.recs, kind)


def test_index_row_groups_are_decoded_by_the_extension(h: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects as the writer lays them out (no dictionaries, zstd) are read a row group in one request and decoded
    in C; the encodings above, pyarrow's defaults among them, are read by pyarrow (and give the same rows)."""
    if pages.decodable([(1, [(0, 1, 6, 2)])]) is False:
        pytest.skip("the C extension is not built")
    genuine = pq.ParquetFile.read_row_group
    calls: list[Any] = []
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, *a, **k: calls.append(a) or genuine(self, *a, **k))
    check_reads(reader_of(h), h)
    assert calls == []
    rewrite(h.store / layout.index_object(STREAM, "executions", 0, 7), compression="zstd", use_dictionary=True)
    check_reads(reader_of(h), h, EXECS)
    assert calls


# -- 4. lying statistics cannot hide rows ----------------------------------------------------------------------


HINTS: dict[str, Callable[[int, tuple[int, int], random.Random], tuple[int, int]]] = {  # (groups, true hint, rng)
    "first": lambda g, t, rng: (0, 0),
    "last": lambda g, t, rng: (g - 1, g - 1),
    "far": lambda g, t, rng: (g - 1, g - 1) if t[0] < g // 2 else (0, 0),
    "everything": lambda g, t, rng: (0, g - 1),
    "inverted": lambda g, t, rng: (g - 1, 0),
    "random": lambda g, t, rng: tuple(sorted((rng.randrange(g), rng.randrange(g)))),  # type: ignore[return-value]
}


@pytest.mark.parametrize("lie", list(HINTS))
def test_lying_statistics_cannot_hide_rows(hist: Built, monkeypatch: pytest.MonkeyPatch, lie: str) -> None:
    genuine = IndexFile._hint  # noqa: SLF001
    rng, calls = random.Random(lie), []

    def hint(self: IndexFile, value: Any) -> tuple[int, int]:
        calls.append(value)
        return HINTS[lie](self.groups, genuine(self, value), rng)

    monkeypatch.setattr(IndexFile, "_hint", hint)
    reader = reader_of(hist)
    reader.refresh()
    keys = {"executions": [*EXECS, "", "a", "x-", "x-055", "x-11a", "zzz"],
            "threads": [*THREADS, "", "t-", "t-25", "u"],
            "events": [r.event_id for r in hist.recs] + ["", "ev-", "ev-0050a", "ev-9999"]}
    for kind, values in keys.items():
        true_rows = truth(hist.recs, kind)
        for value in values:
            key = index_build.fingerprint(value) if kind == "events" else value
            expected = [t for t in true_rows if t[0] == key]
            assert got(reader.catalog.lookup(kind, SEGMENTS, value), kind) == expected, (kind, value)
    assert len(calls) >= 2 * sum(len(v) for v in keys.values())  # runs 0-7 and 8-9
    check_reads(reader, hist)
    assert reader.catalog.damaged == {}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=9), st.integers(-2, 33))
def test_footer_statistics_give_a_range_of_groups_whatever_they_say(stats: list[tuple[int, int]], value: int) -> None:
    """IndexFile._hint from the footer's (unauthenticated) min and max keys: a range of existing row groups however
    they lie (find() widens it until the rows around the key prove the rows whole), and when they are true (sorted,
    apart), exactly the groups that can hold the key, or the one after which it would be inserted."""
    f = object.__new__(IndexFile)
    f._roots = tuple(b"" for _ in stats)  # noqa: SLF001
    f._stats = ([low for low, _ in stats], [high for _, high in stats])  # noqa: SLF001
    first, last = f._hint(value)  # noqa: SLF001
    assert 0 <= first <= last < len(stats)
    bounds = sorted(b for pair in stats for b in pair)
    true = all(low <= high for low, high in stats) and [b for pair in stats for b in pair] == bounds
    if true:
        holding = [j for j, (low, high) in enumerate(stats) if low <= value <= high]
        if holding:
            assert (first, last) == (holding[0], holding[-1])
        else:  # between groups: the neighbours, whose rows around the key show it absent
            assert last - first <= 1 and (first == 0 or stats[first - 1][1] < value)


# -- 5. a run is never built from a damaged input ----------------------------------------------------------------


def test_a_run_is_built_from_the_rows_its_writer_holds_not_the_damaged_object(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A writer merges the rows it wrote itself (held since), never the stored object: the run is signed over
    the genuine rows, and readers find every execution through it, the damaged object unused."""
    monkeypatch.setattr(index_build, "BLOCK_ROWS", SMALL_BLOCKS)
    dropped = {"x-02", "x-03"}

    def tamper(store: Path) -> None:
        rewrite(store / layout.index_object(STREAM, "executions", 3, 3),
                lambda rows: [r for r in rows if r["execution_id"] not in dropped])

    b = build_journal(tmp_path / "journal", 8, before_last=tamper)
    m = Manifest.parse(read_note(b, 7))
    assert m.index_root("executions", 0) is not None and b.index_path("executions", 0, 7).exists()
    for x in sorted({r.execution_id for r in b.recs}):
        assert views(list(reader_of(b).replay(x))) == views(b.of(x)), x
    assert not reader_of(b).catalog.damaged


def test_a_run_is_not_built_from_a_damaged_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A writer that did not write the inputs itself (a new process) reads them, checked against their signed
    roots: a damaged one leaves the run out, its altered rows are never laundered into a signed run."""
    monkeypatch.setattr(index_build, "BLOCK_ROWS", SMALL_BLOCKS)
    monkeypatch.setattr(sealer_mod.Sealer, "_hold", lambda self, kind, first, last, rows: None)
    dropped = {"x-02", "x-03"}  # x-02 ends in segment 3; x-03 goes on to segment 7

    def tamper(store: Path) -> None:  # run 0-5: an input of run 0-7, which the last seal builds
        rewrite(store / layout.index_object(STREAM, "executions", 0, 5),
                lambda rows: [r for r in rows if r["execution_id"] not in dropped])

    with caplog.at_level(logging.WARNING):
        b = build_journal(tmp_path / "journal", 8, before_last=tamper)
    m = Manifest.parse(read_note(b, 7))
    assert m.index_root("executions", 0) is None
    assert m.index_root("threads", 0) is not None and m.index_root("events", 0) is not None
    assert m.index_root("executions", 7) is not None
    assert not b.index_path("executions", 0, 7).exists() and b.index_path("threads", 0, 7).exists()
    assert any("index run executions 0-7 left out" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)
    for x in sorted({r.execution_id for r in b.recs} - dropped):
        assert views(list(reader_of(b).replay(x))) == views(b.of(x)), x
    first = b.of("x-02")[0].seq  # the run claims none of x-02's events
    with pytest.raises(IntegrityError, match=f"leaves out seq {first}") as info:
        list(reader_of(b).replay("x-02"))
    assert info.value.seq == first
    before = [r.seq for r in b.of("x-03") if r.segment <= 5]
    after_gap = next(r for r in b.of("x-03") if r.segment == 6)  # whose link into the run breaks
    with pytest.raises(IntegrityError, match=f"seq {after_gap.seq} links to seq {before[-1]}") as info:
        list(reader_of(b).replay("x-03"))
    assert info.value.seq == after_gap.seq
    reader = reader_of(b)
    assert reader.executions(limit=None) == summaries(b)
    assert layout.index_object(STREAM, "executions", 0, 5) in reader.catalog.damaged


# -- 6. a truncated tail is named ---------------------------------------------------------------------------------


def runs_from_0(b: Built) -> set[str]:
    """The runs from segment 0 (0-1, 0-3, 0-5, 0-7): without them, reads use each segment's own object."""
    return {n for n in index_names(b) if "/000000000000-" in n and not n.endswith("000000000000-000000000000.parquet")}


@pytest.mark.parametrize("x", ["x-03", "x-07", "x-02"])  # ends in segment 7 (inside the run), 5 (only there), 3
def test_a_dropped_last_entry_names_the_first_seq_left_out(h: Built, x: str) -> None:
    remove_names(h, runs_from_0(h))
    last = max(r.segment for r in h.of(x))
    rewrite(h.index_path("executions", last, last), lambda rows: [r for r in rows if r["execution_id"] != x])
    first_left_out = min(r.seq for r in h.of(x) if r.segment == last)
    with pytest.raises(IntegrityError, match=f"leaves out seq {first_left_out}") as info:
        list(reader_of(h).replay(x))
    assert info.value.seq == first_left_out
    others = [y for y in EXECS if y != x]
    check_reads(reader_of(h), h, others)


def test_a_damaged_object_met_before_still_raises_for_the_execution_it_misleads(h: Built) -> None:
    remove_names(h, runs_from_0(h))
    rewrite(h.index_path("executions", 7, 7), lambda rows: [r for r in rows if r["execution_id"] != "x-03"])
    reader = reader_of(h)
    assert views(list(reader.replay("x-00"))) == views(h.of("x-00"))  # meets the damaged object first
    assert reader.catalog.damaged
    with pytest.raises(IntegrityError, match="leaves out seq"):
        list(reader.replay("x-03"))


# -- 7. manifest index lines are parsed strictly ------------------------------------------------------------------


def test_manifest_index_lines_are_the_signed_roots(hist: Built) -> None:
    text = read_note(hist, 7)
    m = Manifest.parse(text)
    assert m == hist.manifests[7] and m.text() == text and Manifest.parse(m.text()) == m
    lines = [line for line in text.splitlines() if line.startswith("index ")]
    assert lines == sorted(lines, key=lambda s: (s.split()[1], int(s.split()[2]))) and len(lines) == 2 * len(KINDS)
    reader = reader_of(hist)
    reader.refresh()
    for kind in KINDS:
        for first in (0, 7):
            root = m.index_root(kind, first)
            assert root is not None and (root.kind, root.first, root.last) == (kind, first, 7)
            rows = truth([r for r in hist.recs if first <= r.segment <= 7], kind)
            assert root.rows == len(rows)
    handmade = dataclasses.replace(m, index=(IndexRoot("threads", 7, 7, 0, b"\x01" * 32),
                                             IndexRoot("events", 0, 7, 5, b"\xab" * 32)))
    assert Manifest.parse(handmade.text()) == handmade
    assert handmade.text().endswith(f"index events 0 7 5 {'ab' * 32}\nindex threads 7 7 0 {'01' * 32}\n")


def index_variants(text: str) -> dict[str, str]:
    lines = text.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("index executions 7 7 "))
    _, kind, first, last, rows, root = lines[at].split(" ")
    run = next(line for line in lines if line.startswith("index executions 0 7 "))

    def with_line(*new: str) -> str:
        return "\n".join(lines[:at] + list(new) + lines[at + 1 :])

    return {
        "five-fields": with_line(f"index {kind} {first} {last} {rows}"),
        "seven-fields": with_line(f"index {kind} {first} {last} {rows} {root} x"),
        "double-space": with_line(f"index {kind} {first}  {last} {rows} {root}"),
        "uppercase-hex": with_line(f"index {kind} {first} {last} {rows} {root[:-1]}{'A' if root[-1] != 'a' else 'B'}"),
        "63-hex-digits": with_line(f"index {kind} {first} {last} {rows} {root[:-1]}"),
        "65-hex-digits": with_line(f"index {kind} {first} {last} {rows} {root}0"),
        "leading-zero": with_line(f"index {kind} 07 {last} {rows} {root}"),
        "leading-zero-rows": with_line(f"index {kind} {first} {last} 0{rows} {root}"),
        "negative": with_line(f"index {kind} {first} {last} -{rows} {root}"),
        "last-not-segment": with_line(f"index {kind} 6 6 {rows} {root}"),
        "two-for-one-kind-and-first": with_line(f"index {kind} 7 7 {rows} {root}",
                                                f"index {kind} 7 7 {int(rows) + 1} {root}"),
        "same-line-twice": with_line(lines[at], lines[at]),
        "unsorted": with_line(lines[at], run).replace(run + "\n", "", 1),  # the run's line after the segment's
        "uppercase-kind": with_line(f"index Executions {first} {last} {rows} {root}"),
        "last-below-first": with_line(f"index {kind} 8 7 {rows} {root}"),
        "not-index": with_line(f"indexes {kind} {first} {last} {rows} {root}"),
        "empty-line": with_line(lines[at], ""),
        "no-final-newline": text[:-1],
    }


VARIANTS = ["five-fields", "seven-fields", "double-space", "uppercase-hex", "63-hex-digits", "65-hex-digits",
            "leading-zero", "leading-zero-rows", "negative", "last-not-segment", "two-for-one-kind-and-first",
            "same-line-twice", "unsorted", "uppercase-kind", "last-below-first", "not-index", "empty-line",
            "no-final-newline"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_malformed_index_line_is_refused(hist: Built, variant: str) -> None:
    text = read_note(hist, 7)
    variants = index_variants(text)
    assert sorted(variants) == sorted(VARIANTS)
    bad = variants[variant]
    assert bad != text
    with pytest.raises(NoteError):
        Manifest.parse(bad)


def test_a_superscript_digit_in_an_index_line_raises_note_error(hist: Built) -> None:
    text = read_note(hist, 7).replace("index executions 7 7 ", "index executions 7 7 ²", 1)
    with pytest.raises(NoteError):
        Manifest.parse(text)


def digits(min_size: int = 1) -> st.SearchStrategy[str]:
    # Any Unicode digit (category Nd, and others isdigit() accepts, such as superscripts).
    return st.text(st.one_of(st.characters(categories=("Nd",)), st.sampled_from("²³¹")), min_size=min_size, max_size=3)


NUMBER = st.one_of(st.integers(0, 12).map(str), st.sampled_from(["07", "00", "-1", "+1", "1 ", ""]), digits())
HEX = st.one_of(st.binary(min_size=32, max_size=32).map(bytes.hex), st.text("0123456789abcdefABCDEF", max_size=66))
KIND = st.one_of(st.sampled_from([*KINDS, "Executions", "x", ""]), st.text(max_size=6))
INDEX_LINE = st.builds(lambda *p: " ".join(p), st.sampled_from(["index", "index", "Index", ""]), KIND, NUMBER, NUMBER,
                       NUMBER, HEX)
LINE = st.one_of(INDEX_LINE, st.text(max_size=40))
_TEMPLATE = Manifest("j", "main", 7, 0, 1, 1, b"\x00" * 32, b"\x22" * 32, b"\x00" * 32, "o", 1, b"\x00" * 32, "-",
                     b"\x00" * 32, (b"\x11" * 32, b"\x22" * 32, b"\x33" * 32), "k", "2025-03-14T09:00:00Z")


@settings(max_examples=300, deadline=None, database=None)
@given(lines=st.lists(LINE, max_size=4), newline=st.booleans())
def test_random_index_lines_parse_canonically_or_raise_note_error(lines: list[str], newline: bool) -> None:
    text = _TEMPLATE.text() + "\n".join(lines) + ("\n" if newline and lines else "")
    try:
        m = Manifest.parse(text)
    except NoteError:
        return
    assert m.text() == text
    assert all(r.last == 7 and r.first <= 7 for r in m.index)


# -- 8. a segment with no threads ----------------------------------------------------------------------------------


def test_segments_without_threads_get_empty_threads_objects(tmp_path: Path) -> None:
    b = build_journal(tmp_path / "journal", 3, threads=False)
    for m in b.manifests:
        root = m.index_root("threads", m.segment)
        assert root is not None and root.rows == 0
        executions = {r.execution_id for r in b.recs if r.segment == m.segment}
        assert m.index_root("executions", m.segment).rows == len(executions)  # type: ignore[union-attr]
        assert b.index_path("threads", m.segment, m.segment).exists()
    reader = reader_of(b)
    for t in [*THREADS, "", "t-9"]:
        assert reader.thread_events(t) == []
    reader.refresh()
    assert reader.catalog.cover("threads", 3)[1] == [] and reader.catalog.lookup("threads", 3).num_rows == 0
    actives = sorted({r.execution_id for r in b.recs})
    assert views([e for x in actives for e in reader.events(x)]) == views(
        sorted(b.recs, key=lambda r: (r.execution_id, r.seq)))
    assert all(view(reader.get_event(r.event_id)) == view(r) for r in b.recs)  # type: ignore[arg-type]
    assert reader.catalog.damaged == {}
    # An empty object is rebuilt too, to its signed (empty) root.
    name = layout.index_object(STREAM, "threads", 1, 1)
    remove_names(b, {name})
    (result,) = reindex_store(LocalStore(b.store), public_keys=[b.verify_key])
    assert (result.written, result.damaged, result.unrebuildable) == ([name], [], [])
    fresh = reader_of(b)
    assert fresh.thread_events("t-0") == [] and fresh.catalog.damaged == {}
