"""The write path and the Journal API: seqs, batches, group commit, sealing rules, formats, errors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from wormjournal.errors import ConfigError, IntegrityError, JournalError, NotFoundError, ValidationError
from wormjournal.events import StoredEvent, pseudonymize
from wormjournal.index import Reader
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal import wal as walmod
from wormjournal.journal.keys import SIGNING_FILE, load_keys
from wormjournal.payload import CODEC_JSON_ZSTD, decode_payload
from wormjournal.segments.manifest import Manifest
from wormjournal.segments.notes import SigningKey, open_note
from wormjournal.segments.table import read_segment, table_to_events
from wormjournal.storage import layout
from wormjournal.storage.local import LocalStore
from wormjournal.verify import verify_store

from conftest import StorePaths, make_writable

NO_AGE = JournalConfig(seal_max_age_seconds=None)


def create(paths: StorePaths, config: JournalConfig = NO_AGE, **kwargs: Any) -> Journal:
    return Journal.create(paths.store, key_dir=paths.keys, config=config, **kwargs)


def reopen(paths: StorePaths, config: JournalConfig = NO_AGE, **kwargs: Any) -> Journal:
    return Journal.open(paths.store, key_dir=paths.keys, config=config, **kwargs)


def segment_files(paths: StorePaths, stream: str = "main") -> list[Path]:
    return sorted((paths.store / layout.stream_segments_prefix(stream)).rglob("*.parquet"))


def sealed_events(paths: StorePaths, stream: str = "main") -> list[StoredEvent]:
    events = [e for f in segment_files(paths, stream) for e in table_to_events(read_segment(f.read_bytes()))]
    return sorted(events, key=lambda e: e.seq)


def wal_files(paths: StorePaths, stream: str = "main") -> list[Path]:
    return walmod.list_wal_files(paths.store / ".wal" / f"stream={stream}")


def wal_size(paths: StorePaths) -> int:
    return sum(p.stat().st_size for p in wal_files(paths))


# -- append ---------------------------------------------------------------------------


def test_append_returns_gapless_seqs_from_zero(tmp_store: StorePaths) -> None:
    with create(tmp_store) as j:
        seqs = [j.append("step_started", f"run-{i % 3}", {"i": i}) for i in range(25)]
        assert seqs == list(range(25))
        assert j.append_batch([{"event_type": "step_completed", "execution_id": "run-0"}] * 5) == list(range(25, 30))
        assert j.next_seq == 30
        j.seal()
        assert j.sealed_seq == 30
        report = j.verify()
    assert report.ok, report.to_text()
    assert [e.seq for e in sealed_events(tmp_store)] == list(range(30))


def test_append_batch_is_atomic(tmp_store: StorePaths) -> None:
    with create(tmp_store) as j:
        j.append("execution_started", "run-1", {"x": 1})
        before_seq, before_size, before_head = j.next_seq, wal_size(tmp_store), j.head_hash
        good = {"event_type": "step_started", "execution_id": "run-1", "payload": {"ok": True}}
        with pytest.raises(ValidationError) as info:
            j.append_batch([good, good, dict(good, colour="red"), good])
        assert info.value.field == "colour"
        assert info.value.where == "event 2"
        assert "event 2" in str(info.value) and "colour" in str(info.value)
        with pytest.raises(ValidationError) as info:
            j.append_batch([good, dict(good, payload={"when": object()})])
        assert (info.value.field, info.value.where) == ("payload", "event 1")
        with pytest.raises(ValidationError) as info:
            j.append_batch([good, good, good, dict(good, execution_id="a/b")])
        assert (info.value.field, info.value.where) == ("execution_id", "event 3")
        # Nothing written: same seq, same chain head, same WAL bytes.
        assert (j.next_seq, wal_size(tmp_store), j.head_hash) == (before_seq, before_size, before_head)
        assert j.append_batch([good, good]) == [1, 2]
        j.seal()
        assert j.verify().ok
    assert len(sealed_events(tmp_store)) == 3


def test_empty_batch_returns_empty_list(tmp_store: StorePaths) -> None:
    with create(tmp_store) as j:
        size = wal_size(tmp_store)
        assert j.append_batch([]) == []
        assert j.next_seq == 0 and wal_size(tmp_store) == size


def test_group_commit_concurrent_appends(tmp_store: StorePaths, monkeypatch: pytest.MonkeyPatch) -> None:
    threads_n, per_thread = 8, 200
    syncs = 0
    real = os.fdatasync
    count_lock = threading.Lock()

    def counting_fdatasync(fd: int) -> None:
        nonlocal syncs
        with count_lock:
            syncs += 1
        real(fd)

    monkeypatch.setattr(walmod.os, "fdatasync", counting_fdatasync)
    results: list[list[int]] = [[] for _ in range(threads_n)]
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    with create(tmp_store) as j:

        def worker(k: int) -> None:
            try:
                start.wait()
                for i in range(per_thread):
                    results[k].append(j.append("tool_called", f"run-{k}", {"k": k, "i": i}, thread_id=f"t-{k}"))
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads_n)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert not errors
        appends_syncs = syncs
        j.seal()
        report = j.verify()
    everything = sorted(s for r in results for s in r)
    assert everything == list(range(threads_n * per_thread))
    for r in results:
        assert r == sorted(r)  # each thread sees its own appends in order
    assert report.ok, report.to_text()
    assert report.events == threads_n * per_thread
    # Group commit: waiters share an fsync, so there are fewer fsyncs than appends.
    assert 0 < appends_syncs < threads_n * per_thread
    # Per execution, exec_prev_seq links each thread's events in order.
    events = sealed_events(tmp_store)
    for k in range(threads_n):
        mine = [e for e in events if e.execution_id == f"run-{k}"]
        assert [e.exec_prev_seq for e in mine] == [None] + [e.seq for e in mine[:-1]]


# -- sealing rules ---------------------------------------------------------------------


def test_auto_seal_by_event_count(tmp_store: StorePaths) -> None:
    with create(tmp_store, JournalConfig(seal_max_age_seconds=None, seal_max_events=10)) as j:
        for i in range(25):
            j.append("step_completed", "run-1", {"i": i})
        assert j.wait_for_seals(30)  # the seal worker seals in the background
        assert j.sealed_seq == 20
        assert len(segment_files(tmp_store)) == 2
        j.seal()
        assert j.verify().ok
    assert [pq.read_metadata(f).num_rows for f in segment_files(tmp_store)] == [10, 10, 5]


def test_auto_seal_by_bytes(tmp_store: StorePaths) -> None:
    with create(tmp_store, JournalConfig(seal_max_age_seconds=None, seal_max_bytes=4096)) as j:
        for _ in range(20):
            j.append("llm_completed", "run-1", {"text": os.urandom(400).hex()})
        assert j.wait_for_seals(30)
        assert j.sealed_seq > 0
        assert segment_files(tmp_store)
        sealed = j.sealed_seq
        j.append("llm_completed", "run-1", {"text": "one more, below the threshold"})
        j.seal()
        assert j.sealed_seq == 21 > sealed
        assert j.verify().ok


def test_auto_seal_by_age(tmp_store: StorePaths) -> None:
    with create(tmp_store, JournalConfig(seal_max_age_seconds=0.5)) as j:
        j.append("execution_started", "run-1", {"x": 1})
        j.append("execution_completed", "run-1")
        assert j.sealed_seq == 0
        # The checkpoint is the last object a seal stores: wait for it, not just the manifest.
        checkpoint = tmp_store.store / layout.checkpoint("main", 1)
        deadline = time.monotonic() + 5
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkpoint.exists(), "no segment sealed by age within 5 s"
        # the worker stores the checkpoint before its answer reaches the writer: wait for the answer
        assert j.wait_for_seals(10)
        assert j.sealed_seq == 2
        assert len(segment_files(tmp_store)) == 1
        assert j.verify().ok


def test_segments_never_mix_two_utc_dates(tmp_store: StorePaths) -> None:
    times = ["2025-06-30T23:59:58Z", "2025-06-30T23:59:59.999999Z", "2025-07-01T00:00:00Z", "2025-07-01T00:00:01Z"]
    with create(tmp_store) as j:
        for t in times:
            j.append("step_completed", "run-1", ts=t)
        manifests = j.seal()
        assert j.verify().ok
    assert [(m.first_seq, m.last_seq) for m in manifests] == [(0, 1), (2, 3)]
    folders = [f.parent.name for f in segment_files(tmp_store)]
    assert folders == ["date=2025-06-30", "date=2025-07-01"]
    for f in segment_files(tmp_store):
        dates = {e.timestamp.date().isoformat() for e in table_to_events(read_segment(f.read_bytes()))}
        assert {f"date={d}" for d in dates} == {f.parent.name}


def test_exec_prev_seq_links_across_seals_and_reopen(tmp_store: StorePaths) -> None:
    plan = ["A", "B", "A", "seal", "C", "A", "B", "close", "B", "A", "seal", "A", "C", "close"]
    j = create(tmp_store)
    for step in plan:
        if step == "seal":
            j.seal()
        elif step == "close":
            j.close()  # leaves unsealed events in the WAL
            j = reopen(tmp_store)
        else:
            j.append("node_completed", f"run-{step}")
    j.seal()
    assert j.verify().ok
    j.close()
    events = sealed_events(tmp_store)
    assert [e.seq for e in events] == list(range(10))
    last: dict[str, int] = {}
    for e in events:
        assert e.exec_prev_seq == last.get(e.execution_id), e
        last[e.execution_id] = e.seq


# -- what reaches disk --------------------------------------------------------------------


def test_subject_id_is_stored_as_a_pseudonym(tmp_store: StorePaths) -> None:
    raw = "alice.raw-subject-7781@example.com"
    with create(tmp_store) as j:
        j.append("human_approved", "run-1", {"approved": True}, subject_id=raw)
        j.append("step_completed", "run-1", {"n": 1})
        j.seal()
        j.append("human_rejected", "run-2", {"approved": False}, subject_id=raw)  # stays in the WAL
        journal_id = j.journal_id
    _, key = load_keys(tmp_store.keys, journal_id)
    expected = pseudonymize(key, raw)
    assert expected.startswith("psn:")
    stored = [e.subject_id for e in sealed_events(tmp_store)]
    assert stored == [expected, None]
    files = [p for p in tmp_store.store.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wal" for p in files) and any(p.suffix == ".parquet" for p in files)
    for p in files:
        data = p.read_bytes()
        assert raw.encode() not in data, p
    # The WAL carries the pseudonym instead.
    assert any(expected.encode() in p.read_bytes() for p in files if p.suffix == ".wal")


PAYLOADS: list[Any] = [
    None,
    0,
    -1.5,
    "text",
    "héllo ✓ 日本 🚀",
    [1, "two", None, True],
    {"nested": {"list": [{"a": 1}, {"b": [2, 3]}], "flag": False}},
    {"big": "the same words again and again " * 200},  # over compress_min_bytes: its own zstd frame
]


def test_payloads_round_trip_through_segments(tmp_store: StorePaths) -> None:
    with create(tmp_store) as j:
        for p in PAYLOADS:
            j.append("state_updated", "run-1", p)
        j.seal()
    (f,) = segment_files(tmp_store)
    table = pq.read_table(f, columns=["seq", "payload_codec", "payload"])
    rows = table.to_pylist()
    assert [decode_payload(r["payload_codec"], r["payload"]) for r in rows] == PAYLOADS
    assert CODEC_JSON_ZSTD in {r["payload_codec"] for r in rows}  # the big one is compressed
    big = rows[-1]
    assert len(big["payload"]) < len(str(PAYLOADS[-1]))


def test_row_groups_and_bloom_filters(tmp_store: StorePaths) -> None:
    with create(tmp_store, JournalConfig(seal_max_age_seconds=None, row_group_rows=4)) as j:
        for i in range(10):
            j.append("tool_called", f"run-{i % 2}", {"i": i}, thread_id=f"t-{i % 2}")
        j.seal()
    (f,) = segment_files(tmp_store)
    meta = pq.ParquetFile(f).metadata
    assert meta.num_row_groups == 3
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for col in ("execution_id", "thread_id", "event_id"):
            chunk = group.column(names.index(col))
            assert chunk.bloom_filter_offset is not None and chunk.bloom_filter_offset > 0, (rg, col)
    # Rows are stored in (execution_id, seq) order: row groups hold runs of one execution.
    stats = [meta.row_group(rg).column(names.index("execution_id")).statistics for rg in range(3)]
    assert [(st.min, st.max) for st in stats] == [("run-0", "run-0"), ("run-0", "run-1"), ("run-1", "run-1")]
    # DuckDB sees the same bloom filters.
    con = duckdb.connect()
    offsets = con.execute(
        "SELECT path_in_schema, bloom_filter_offset FROM parquet_metadata(?) WHERE row_group_id = 0", [str(f)]
    ).fetchall()
    blooms = {name for name, off in offsets if off is not None and off > 0}
    assert {"execution_id", "thread_id", "event_id"} <= blooms


def test_duckdb_reads_segments_with_hive_partitioning(tmp_store: StorePaths) -> None:
    with create(tmp_store) as j:
        for i in range(6):
            j.append("step_completed", "run-1", {"i": i}, ts=dt.datetime(2025, 1, 1, 12, i, tzinfo=dt.UTC))
        j.seal()
        for i in range(4):
            j.append("step_completed", "run-2", {"i": i}, ts=dt.datetime(2025, 1, 2, 12, i, tzinfo=dt.UTC))
        j.seal()
    with create_stream(tmp_store, "other") as j2:
        j2.append("execution_started", "run-3", ts="2025-01-02T13:00:00Z")
        j2.seal()
    pattern = str(tmp_store.store / "segments" / "**" / "*.parquet")
    con = duckdb.connect()
    rows = con.execute(
        "SELECT stream, CAST(date AS VARCHAR), count(*) FROM read_parquet(?, hive_partitioning=true) "
        "GROUP BY ALL ORDER BY ALL",
        [pattern],
    ).fetchall()
    assert rows == [("main", "2025-01-01", 6), ("main", "2025-01-02", 4), ("other", "2025-01-02", 1)]
    (n,) = con.execute(
        "SELECT count(*) FROM read_parquet(?, hive_partitioning=true) WHERE execution_id = 'run-2'", [pattern]
    ).fetchone()
    assert n == 4


def create_stream(paths: StorePaths, stream: str) -> Journal:
    return reopen(paths, stream=stream)


# -- reopen and errors -----------------------------------------------------------------------


def test_reopen_continues_the_chain(tmp_store: StorePaths) -> None:
    with create(tmp_store) as j:
        assert [j.append("step_started", "run-1", {"i": i}) for i in range(3)] == [0, 1, 2]
        j.seal()
        j.append("step_started", "run-1", {"i": 3})  # unsealed, in the WAL
        head = j.head_hash
    with reopen(tmp_store) as j:
        assert (j.next_seq, j.sealed_seq, j.head_hash) == (4, 3, head)
        assert j.append("step_completed", "run-1") == 4
        j.seal()
        report = j.verify()
    assert report.ok, report.to_text()
    assert report.events == 5 and report.segments == 2
    events = sealed_events(tmp_store)
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]


def test_create_on_existing_journal_raises(tmp_store: StorePaths) -> None:
    create(tmp_store).close()
    keys_before = sorted(p.name for p in tmp_store.keys.iterdir())
    with pytest.raises(ConfigError):
        create(tmp_store)
    assert sorted(p.name for p in tmp_store.keys.iterdir()) == keys_before  # no new keys made


def test_open_or_create_creates_once_then_opens(tmp_store: StorePaths) -> None:
    with Journal.open_or_create(tmp_store.store, key_dir=tmp_store.keys, config=NO_AGE) as j:
        first = j.journal_id
        j.append("execution_started", "run-1")
    with Journal.open_or_create(tmp_store.store, key_dir=tmp_store.keys, config=NO_AGE) as j:
        assert j.journal_id == first and j.append("execution_completed", "run-1") == 1
        j.seal()
        assert j.verify().ok


@pytest.mark.parametrize("attempt", range(3))
def test_processes_starting_together_share_one_journal(tmp_path: Path, attempt: int) -> None:
    """Writers of two streams start at once on an empty store with one key directory: one creates the journal,
    the other opens it (a write-once put refuses a second creation), and the store verifies."""
    store, keys = tmp_path / "journal", tmp_path / "keys"
    start = threading.Barrier(2)
    got: dict[str, Any] = {}

    def writer(stream: str) -> None:
        start.wait()
        try:
            j = Journal.open_or_create(store, key_dir=keys, stream=stream, config=NO_AGE)
        except Exception as e:  # reported below
            got[stream] = e
            return
        with j:
            j.append("execution_started", f"run-{stream}")
            j.seal()
            got[stream] = j.journal_id

    threads = [threading.Thread(target=writer, args=(s,)) for s in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(got["a"], str) and got["a"] == got["b"], got
    report = verify_store(store)
    assert report.ok and report.events == 2, report.to_text()


def test_open_on_empty_dir_raises_not_found(tmp_store: StorePaths) -> None:
    tmp_store.store.mkdir()
    with pytest.raises(NotFoundError):
        reopen(tmp_store)


def test_key_dir_inside_store_raises(tmp_store: StorePaths) -> None:
    with pytest.raises(ConfigError, match="inside the store"):
        Journal.create(tmp_store.store, key_dir=tmp_store.store / "keys", config=NO_AGE)
    with pytest.raises(ConfigError, match="inside the store"):
        Journal.create(tmp_store.store, key_dir=tmp_store.store, config=NO_AGE)
    assert not (tmp_store.store / "journal.json").exists()
    create(tmp_store).close()
    with pytest.raises(ConfigError, match="inside the store"):
        Journal.open(tmp_store.store, key_dir=tmp_store.store / "keys", config=NO_AGE)


def test_wrong_key_dir_raises(tmp_store: StorePaths, tmp_path: Path) -> None:
    create(tmp_store).close()
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no signing key"):
        Journal.open(tmp_store.store, key_dir=empty, config=NO_AGE)


@pytest.mark.parametrize("sealed", [False, True])
def test_wrong_signing_key_raises(tmp_store: StorePaths, sealed: bool) -> None:
    """A key directory with another signing key under this journal's id is refused."""
    with create(tmp_store) as j:
        j.append("execution_started", "run-1")
        if sealed:
            j.seal()
        journal_id, name = j.journal_id, j.identity.key_name
    key_file = tmp_store.keys / journal_id / SIGNING_FILE
    key_file.chmod(0o600)
    key_file.write_bytes(SigningKey.generate(name).private_pem())
    with pytest.raises(ConfigError, match="signing key"):
        reopen(tmp_store)


def test_closed_journal_refuses_writes(tmp_store: StorePaths) -> None:
    j = create(tmp_store)
    j.append("execution_started", "run-1")
    j.close()
    with pytest.raises(JournalError, match="closed"):
        j.append("execution_completed", "run-1")
    with pytest.raises(JournalError, match="closed"):
        j.append_batch([{"event_type": "execution_completed", "execution_id": "run-1"}])
    with pytest.raises(JournalError, match="closed"):
        j.seal()
    j.close()  # idempotent
    with reopen(tmp_store) as j2:
        assert j2.next_seq == 1


def test_multiple_streams_verify_together(tmp_store: StorePaths) -> None:
    with create(tmp_store, stream="main") as a, reopen(tmp_store, stream="billing") as b:
        for i in range(5):
            a.append("step_completed", "run-a", {"i": i})
            b.append("tool_called", "run-b", {"i": i})
        b.append("tool_returned", "run-b")
        assert (a.next_seq, b.next_seq) == (5, 6)  # one chain, one seq space per stream
        a.seal()
        b.seal()
        report = a.verify()
    assert report.ok, report.to_text()
    assert sorted((s.stream, s.events) for s in report.streams) == [("billing", 6), ("main", 5)]
    assert report.events == 11


class CountingStore(LocalStore):
    """A local store that counts the reads of segment objects (whole or ranged) and of manifests."""

    segment_reads = 0
    manifest_reads = 0

    def get(self, name: str) -> bytes:
        self.segment_reads += name.startswith("segments/")
        self.manifest_reads += name.startswith("manifests/")
        return super().get(name)

    def get_range(self, name: str, start: int, length: int) -> bytes:
        self.segment_reads += name.startswith("segments/")
        return super().get_range(name, start, length)


@pytest.mark.parametrize("index", ["whole", "an object removed", "an object altered"])
def test_open_reads_the_index_not_every_segment(tmp_store: StorePaths, index: str) -> None:
    """The back-links (exec_prev_seq) a writer continues come from the executions index that each seal stores
    (its largest runs, authenticated), not from reading every sealed segment; where the index lacks an object
    or it does not authenticate, that segment alone is read."""
    cfg = JournalConfig(seal_max_age_seconds=None, seal_worker=False)
    last: dict[str, int] = {}
    with create(tmp_store, cfg) as j:
        for k in range(10):  # 10 segments: runs over 0..7 and 8..9 (FORMAT.md 11a)
            for i in range(6):
                execution = f"run-{(k + i) % 4}"
                last[execution] = j.append("step_completed", execution, {"k": k, "i": i})
            j.seal()
    store = LocalStore(tmp_store.store)
    if index != "whole":  # the run over 8..9 and segment 9's own object: segment 9 has no usable object left
        for first in (8, 9):
            path = tmp_store.store / layout.index_object("main", "executions", first, 9)
            if index == "an object removed":
                path.unlink()
            else:  # another segment's (valid) object in its place
                make_writable(path)
                path.write_bytes(store.get(layout.index_object("main", "executions", 8, 8)))
    counting = CountingStore(tmp_store.store)
    with Journal.open(counting, key_dir=tmp_store.keys, config=cfg) as j:
        assert counting.segment_reads == (0 if index == "whole" else 1)
        seqs = {x: j.append("step_completed", x, {}) for x in sorted(last)}
        j.seal()
    events = {e.seq: e for x in last for e in Reader(store).events(x)}
    for x, seq in seqs.items():
        assert events[seq].exec_prev_seq == last[x], x
    assert verify_store(store).ok


def test_open_reads_the_newest_manifest_it_sealed_not_every_one(tmp_store: StorePaths, caplog: Any) -> None:
    """The writer records the hashes of the manifests its seals left (SEALED in its WAL directory, MAC'd by the
    WAL key): an open reads the newest of them and any stored since, and an older one only when it needs its
    index roots, checked against the record. A store rolled back or rewritten under the record is refused; a
    record that is not the writer's is ignored, and every manifest is read as without one."""
    cfg = JournalConfig(seal_max_age_seconds=None, seal_worker=False)
    last: dict[str, int] = {}
    with create(tmp_store, cfg) as j:
        for k in range(30):
            for i in range(3):
                execution = f"run-{(k + i) % 5}"
                last[execution] = j.append("step_completed", execution, {"k": k, "i": i})
            j.seal()
    record = tmp_store.store / ".wal" / "stream=main" / "SEALED"
    assert len(record.read_bytes()) == 32 + 30 * 32

    counting = CountingStore(tmp_store.store)
    with Journal.open(counting, key_dir=tmp_store.keys, config=cfg) as j:
        opened = counting.manifest_reads
        assert counting.segment_reads == 0
        seqs = {x: j.append("step_completed", x, {}) for x in sorted(last)}
        j.seal()
    # the newest, and those that sign the executions index objects it reads (a few per level of runs)
    assert opened <= 10, f"{opened} manifests read to open a stream of 30 segments"
    store = LocalStore(tmp_store.store)
    events = {e.seq: e for x in last for e in Reader(store).events(x)}
    for x, seq in seqs.items():
        assert events[seq].exec_prev_seq == last[x], x
    assert verify_store(store).ok

    # A record that is not the writer's (another key's MAC): ignored, every manifest is read.
    good = record.read_bytes()
    record.write_bytes(bytes([good[0] ^ 1]) + good[1:])
    counting = CountingStore(tmp_store.store)
    with Journal.open(counting, key_dir=tmp_store.keys, config=cfg):
        assert counting.manifest_reads >= 31
    assert "not authenticated by the WAL key" in caplog.text
    assert record.read_bytes() == good  # recorded anew, from the manifests read

    # The newest manifest replaced by another one signed with the journal's key: refused.
    signing, _ = load_keys(tmp_store.keys, j.journal_id)
    newest = tmp_store.store / layout.manifest("main", 30)
    text, _ = open_note(newest.read_bytes(), [signing.verify_key])
    forged = dataclasses.replace(Manifest.parse(text), time="2020-01-01T00:00:00.000000Z")
    saved = newest.read_bytes()
    make_writable(newest)
    newest.write_bytes(forged.sign(signing))
    with pytest.raises(IntegrityError, match="not the ones this writer sealed"):
        Journal.open(tmp_store.store, key_dir=tmp_store.keys, config=cfg)
    newest.write_bytes(saved)

    # The newest segment, its manifest and checkpoint deleted (a rollback a plain verify cannot see): refused.
    for name in (layout.manifest("main", 30), layout.checkpoint("main", 31)):
        (tmp_store.store / name).unlink()
    with pytest.raises(IntegrityError, match="this writer sealed 31 segments, but the store has no manifest 30"):
        Journal.open(tmp_store.store, key_dir=tmp_store.keys, config=cfg)
