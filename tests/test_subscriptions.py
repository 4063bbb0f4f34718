"""Subscriptions: a handler on each event, at least once, with a durable cursor that survives SIGKILL at any
instant; retries, then a handler_failed event; one consumer per name; nothing that does not verify reaches a
handler; S3 as well as a local directory."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from s3_fixtures import S3Bucket

from wormjournal import (
    ALL_STREAMS,
    ConfigError,
    EventFilter,
    HandlerError,
    IntegrityError,
    Journal,
    JournalConfig,
    LockedError,
    Reader,
    Subscription,
    ValidationError,
)
from wormjournal.events import HANDLER_FAILED
from wormjournal.journal.keys import load_wal_key

from conftest import StorePaths, wait_for

QUIET = JournalConfig(seal_max_age_seconds=None, seal_worker=False)


def journal_of(paths: StorePaths, n: int, *, seal_at: tuple[int, ...] = (9,)) -> Journal:
    j = Journal.create(paths.store, key_dir=paths.keys, config=QUIET)
    for i in range(n):
        j.append("tool_returned" if i % 4 == 3 else "tool_called", f"x{i % 3}", {"i": i, "ok": i % 8 != 7})
        if i in seal_at:
            j.seal()
    return j


def test_a_cursor_resumes_where_it_stopped_and_names_are_independent(tmp_store: StorePaths) -> None:
    with journal_of(tmp_store, 15) as j:
        seen: dict[str, list[int]] = {"a": [], "b": []}
        with Subscription("a", j.reader(), lambda e: seen["a"].append(e.seq)) as a:
            assert a.run(timeout=0) == 15
            assert a.cursor == {"main": 14}
            with pytest.raises(LockedError, match="running already"):
                Subscription("a", j.reader(), print)
            with Subscription("b", j.reader(), lambda e: seen["b"].append(e.seq), EventFilter.of("tool_returned")) as b:
                assert b.run(timeout=0) == 3
                assert b.cursor == {"main": 14}  # past the events its filter left out
        for i in range(15, 20):
            j.append("tool_called", "x1", {"i": i})
        with Subscription("a", j.reader(), lambda e: seen["a"].append(e.seq)) as a:
            assert a.run(timeout=0) == 5
        assert seen == {"a": list(range(20)), "b": [3, 7, 11]}
        saved = json.loads((tmp_store.store / ".wal" / "subscriptions" / "a.json").read_text())
        assert saved["journal"] == j.journal_id and saved["streams"]["main"]["seq"] == 19
        assert not list((tmp_store.store / ".wal" / "subscriptions").glob("*.tmp"))
        with Subscription("late", j.reader(), lambda e: seen.setdefault("late", []).append(e.seq), start="end") as s:
            j.append("tool_called", "x1", {"i": 20})
            s.run(timeout=0)
        assert seen["late"] == [20]


def test_a_cursor_that_cannot_be_used_is_refused_not_reset(tmp_store: StorePaths, tmp_path: Path) -> None:
    with journal_of(tmp_store, 3) as j:
        cursors = tmp_path / "cursors"
        with Subscription("a", j.reader(), print, cursor_dir=cursors) as a:
            a.run(timeout=0)
        path = cursors / "a.json"
        good = path.read_text()
        for bad in ("{", good.replace(j.journal_id, "another-journal"), good.replace('"seq": 2', '"seq": "2"'),
                    good.replace('"format": "wormjournal-cursor/1"', '"format": "x"')):
            path.write_text(bad)
            with pytest.raises(ConfigError, match="cannot be used"):
                Subscription("a", j.reader(), print, cursor_dir=cursors)
        with pytest.raises(ValidationError):
            Subscription("../a", j.reader(), print, cursor_dir=cursors)
        with pytest.raises(ConfigError, match="cursor_dir"):
            Subscription("a", Reader(tmp_store.store), print)  # no WAL directory: no default place for it


def test_a_failing_handler_is_retried_then_recorded_and_skipped(tmp_store: StorePaths) -> None:
    with journal_of(tmp_store, 12) as j:
        calls: list[int] = []

        def handler(e: Any) -> None:
            calls.append(e.seq)
            if e.seq == 5 or (e.seq == 6 and calls.count(6) < 3):
                raise RuntimeError(f"cannot handle {e.seq}")

        with Subscription("s", j.reader(), handler, failures=j, on_failure="skip", retries=3,
                          retry_seconds=(0.001, 0.002)) as sub:
            assert sub.run(timeout=0) == 11 and sub.failed == 1
        assert calls == [0, 1, 2, 3, 4, 5, 5, 5, 6, 6, 6, 7, 8, 9, 10, 11]
        (failure,) = [e for e in j.reader().follow(timeout=0) if e.event_type == HANDLER_FAILED]
        assert failure.seq == 12 and failure.execution_id == "x2" and failure.payload_key_id is not None
        assert failure.payload == {"subscription": "s", "stream": "main", "seq": 5, "event_id": failure.parent_event_id,
                                   "event_type": "tool_called", "attempts": 3, "error": "RuntimeError",
                                   "message": "cannot handle 5"}
        assert j.verify().ok
        with pytest.raises(ValidationError, match="appended by the library only"):
            j.append(HANDLER_FAILED, "x1", {"subscription": "s"})
        with pytest.raises(ConfigError, match="failures="):
            Subscription("t", j.reader(), handler, on_failure="skip")


def test_a_failure_record_is_forgotten_with_the_event_it_names(tmp_store: StorePaths) -> None:
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=QUIET) as j:
        j.append("tool_called", "x1", {"card": "4111"}, subject_id="alice")

        def handler(e: Any) -> None:
            raise ValueError(f"bad card {e.payload['card']}")  # the message quotes the personal data

        with Subscription("s", j.reader(), handler, failures=j, on_failure="skip", retries=1) as sub:
            sub.run(timeout=0)
        event, failure = j.reader().follow(timeout=0)
        assert failure.payload_key_id == event.payload_key_id and failure.payload["message"] == "bad card 4111"
        j.shred(subject="alice")
        j.seal()
        event, failure, _receipt = j.reader().follow(timeout=0)
        assert event.shredded and failure.shredded
        assert b"4111" not in b"".join(p.read_bytes() for p in tmp_store.store.rglob("*") if p.is_file())
        with Subscription("t", j.reader(), handler, EventFilter.of("tool_called"), failures=j, on_failure="skip",
                          retries=1) as sub:
            sub.run(timeout=0)  # the handler fails on the shredded event: no message kept, in clear
        (last,) = j.reader().follow(2, timeout=0)
        assert last.payload["message"] is None and last.payload["error"] == "KeyError" and last.payload_key_id is None
        assert j.verify().ok


def test_a_handler_that_keeps_failing_stops_the_subscription_before_its_event(tmp_store: StorePaths) -> None:
    with journal_of(tmp_store, 12) as j:
        broken = True
        seen: list[int] = []

        def handler(e: Any) -> None:
            if e.seq == 10 and broken:
                raise KeyError("missing")
            seen.append(e.seq)

        with Subscription("s", j.reader(), handler, failures=j, retries=2, retry_seconds=(0.001, 0.001)) as sub:
            with pytest.raises(HandlerError, match="seq 10") as err:
                sub.run(timeout=0)
            assert err.value.event.seq == 10 and isinstance(err.value.__cause__, KeyError)
            assert sub.cursor == {"main": 9}
        broken = False
        with Subscription("s", j.reader(), handler) as sub:  # its own failure record (seq 12) is not handed over
            sub.run(timeout=0)
        assert seen == list(range(12))


def test_async_handlers_run_on_their_loop(tmp_store: StorePaths) -> None:
    with journal_of(tmp_store, 6) as j:
        seen: list[tuple[str, int]] = []

        async def handler(e: Any) -> None:
            await asyncio.sleep(0)
            seen.append((asyncio.current_task().get_name(), e.seq))  # type: ignore[union-attr]

        with Subscription("sync", j.reader(), handler) as sub:
            assert sub.run(timeout=0) == 6

        async def main() -> int:
            with Subscription("async", j.reader(), handler) as sub:
                return await sub.run_async(timeout=0)

        assert asyncio.run(main()) == 6
        assert [s for _, s in seen] == list(range(6)) * 2


def test_nothing_that_does_not_verify_reaches_a_handler(tmp_store: StorePaths, rewrite_segment: Any) -> None:
    with journal_of(tmp_store, 20, seal_at=(9, 19)) as j:
        (seg,) = sorted(tmp_store.store.glob("segments/stream=main/*/seg-*1.parquet"))

        def alter(table: pa.Table) -> pa.Table:
            ts = table.column("ts").to_pylist()
            ts[7] = ts[7] + dt.timedelta(microseconds=1)
            column = pa.array(ts, table.schema.field("ts").type)
            return table.set_column(table.schema.get_field_index("ts"), "ts", column)

        rewrite_segment(seg, alter)
        seen: list[int] = []
        for _ in range(2):  # and again from the cursor
            with Subscription("s", j.reader(), lambda e: seen.append(e.seq)) as sub:
                with pytest.raises(IntegrityError):
                    sub.run(timeout=0)
                assert sub.cursor == {"main": 9}
        assert seen == list(range(10))


def test_every_stream_of_the_journal(tmp_store: StorePaths) -> None:
    with journal_of(tmp_store, 4) as j:
        with Journal.open(tmp_store.store, key_dir=tmp_store.keys, stream="side", config=QUIET) as side:
            side.append("tool_called", "y", {"side": 0})
            seen: list[tuple[str, int]] = []
            with Subscription("all", j.reader(), lambda e: seen.append((e.stream, e.seq)), streams=ALL_STREAMS) as s:
                s.run(timeout=0)
                assert s.cursor == {"main": 3, "side": 0}
            side.append("tool_called", "y", {"side": 1})
            side.seal()
            with Subscription("all", j.reader(), lambda e: seen.append((e.stream, e.seq)), streams=ALL_STREAMS) as s:
                s.run(timeout=0)
        assert sorted(seen) == [("main", 0), ("main", 1), ("main", 2), ("main", 3), ("side", 0), ("side", 1)]


def test_a_subscription_on_s3(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    config = JournalConfig(seal_max_age_seconds=0.2, seal_max_events=50)
    with Journal.create(s3_bucket.store("j"), key_dir=tmp_path / "keys", wal_dir=tmp_path / "wal", config=config) as j:
        seen: list[int] = []
        sub = Subscription("remote", Reader(s3_bucket.store("j")), lambda e: seen.append(e.seq),
                           cursor_dir=tmp_path / "cursors", poll_seconds=0.05)
        t = threading.Thread(target=sub.run)
        t.start()
        for i in range(120):
            j.append("tool_called", f"x{i % 4}", {"i": i})
        wait_for(lambda: len(seen) >= 120)
        sub.stop()
        t.join(10)
        sub.close()
        assert seen == list(range(120))
        with Subscription("remote", Reader(s3_bucket.store("j")), print, cursor_dir=tmp_path / "cursors") as again:
            assert again.cursor == {"main": 119} and again.run(timeout=0) == 0


# -- SIGKILL at any instant ------------------------------------------------------------------------------

KILLS = 24
EVENTS = 4000
COMMIT_EVERY = 25


def _write(paths: StorePaths, ready: int) -> None:
    """The writer (a forked child): EVENTS events in small batches, sealed every 500 by its seal worker."""
    config = JournalConfig(seal_max_events=500, seal_max_age_seconds=None, row_group_rows=64)
    with Journal.create(paths.store, key_dir=paths.keys, config=config) as j:
        os.write(ready, j.journal_id.encode())
        for k in range(0, EVENTS, 8):
            j.append_batch([{"event_type": "tool_called", "execution_id": f"x{s % 13}", "payload": {"s": s}}
                            for s in range(k, k + 8)])
            time.sleep(0.006)


def _consume(paths: StorePaths, journal_id: str, log: Path, run: int, timeout: float) -> None:
    """A consumer (a forked child): each event handled is a line "<run> <seq>" in ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    reader = Reader(paths.store, wal_dir=paths.store / ".wal", wal_key=load_wal_key(paths.keys, journal_id))
    with Subscription("killed", reader, lambda e: os.write(fd, f"{run} {e.seq}\n".encode()),
                      commit_every=COMMIT_EVERY) as sub:
        sub.run(timeout=timeout)


def _fork(target: Any, *args: Any) -> int:
    pid = os.fork()
    if pid == 0:  # the child: run, then leave without pytest's teardown
        code = 0
        try:
            target(*args)
        except BaseException:  # noqa: BLE001 - reported by the exit code
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    return pid


def test_a_consumer_killed_at_any_instant_resumes_without_skipping(tmp_store: StorePaths) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    ready_r, ready_w = os.pipe()
    writer = _fork(_write, tmp_store, ready_w)
    os.close(ready_w)
    journal_id = os.read(ready_r, 100).decode()
    os.close(ready_r)
    log = tmp_store.store.parent / "handled.log"
    try:
        for run in range(KILLS):
            pid = _fork(_consume, tmp_store, journal_id, log, run, 60.0)
            time.sleep(rng.uniform(0.02, 0.3))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status), f"seed {seed}: consumer run {run} ended before its kill"
        _, status = os.waitpid(writer, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        writer = 0
        last = _fork(_consume, tmp_store, journal_id, log, KILLS, 1.0)  # to the end, then 1 s without an event
        _, status = os.waitpid(last, 0)
        assert os.waitstatus_to_exitcode(status) == 0, f"seed {seed}"
    finally:
        if writer:
            os.kill(writer, signal.SIGKILL)
            os.waitpid(writer, 0)
    runs: dict[int, list[int]] = {}
    for line in log.read_text().splitlines():
        run, seq = map(int, line.split())
        runs.setdefault(run, []).append(seq)
    handled = [seq for seqs in runs.values() for seq in seqs]
    assert set(handled) == set(range(EVENTS)), f"seed {seed}: events skipped"
    end = -1  # the last seq handled by the runs before
    repeats = []
    for run in sorted(runs):
        seqs = runs[run]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"seed {seed}: run {run} out of order"
        assert seqs[0] <= end + 1, f"seed {seed}: run {run} skipped seq {end + 1}..{seqs[0] - 1}"
        repeats.append(end + 1 - seqs[0])
        end = max(end, seqs[-1])
    # What a killed run had handled since its last cursor write: at most commit_every events.
    assert max(repeats) <= COMMIT_EVERY, f"seed {seed}: {repeats}"
    assert len([r for r in runs if r < KILLS]) >= KILLS // 2, f"seed {seed}: most kills came before any event"


def test_failure_records_do_not_feed_a_failing_handler(tmp_store: StorePaths) -> None:
    """A handler that fails on every event (its webhook is down) records one failure per event it was given, and is
    not handed the records: neither its own (which it cannot even read without the key store) nor another
    subscription's, so two of them do not feed each other; a filter that names the type asks for them."""
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=QUIET) as j:
        j.append("tool_called", "x1", {"i": 0}, subject_id="alice")

        def down(e: Any) -> None:
            raise ConnectionError("webhook down")

        blind = Reader(tmp_store.store, wal_dir=tmp_store.store / ".wal", wal_key=load_wal_key(tmp_store.keys,
                                                                                               j.journal_id))
        for _ in range(2):
            for name in ("a", "b"):
                with Subscription(name, blind if name == "a" else j.reader(), down, failures=j, on_failure="skip",
                                  retries=1) as sub:
                    sub.run(timeout=0.2)
        kinds = [e.event_type for e in j.reader().follow(timeout=0)]
        assert kinds == ["tool_called", HANDLER_FAILED, HANDLER_FAILED]
        watched: list[int] = []
        with Subscription("alerts", j.reader(), lambda e: watched.append(e.seq), EventFilter.of(HANDLER_FAILED)) as s:
            s.run(timeout=0)
        assert watched == [1, 2]
        with Subscription("alerts-down", j.reader(), down, EventFilter.of(HANDLER_FAILED), failures=j,
                          on_failure="skip", retries=1) as s:
            s.run(timeout=0.2)  # fails on both records: a failure of a failure record is logged, not recorded
        assert j.reader().count_events() == 3


def test_a_cursor_past_the_end_of_its_stream_is_refused(tmp_store: StorePaths) -> None:
    with journal_of(tmp_store, 5) as j:
        with Subscription("a", j.reader(), print) as sub:
            sub.run(timeout=0)
        path = tmp_store.store / ".wal" / "subscriptions" / "a.json"
        body = json.loads(path.read_text())
        body["streams"]["main"] = {"seq": 40, "hash": None}  # a journal restored from a backup older than the cursor
        path.write_text(json.dumps(body))
        with pytest.raises(ConfigError, match="ends at seq 4"):
            Subscription("a", j.reader(), print)
        body["streams"]["main"] = {"seq": 1 << 70, "hash": None}
        path.write_text(json.dumps(body))
        with pytest.raises(ConfigError, match="cannot be used"):
            Subscription("a", j.reader(), print)
        for junk in range(3):  # writes a crash cut short leave their temporary files: the next consumer removes them
            (path.parent / f".a.json.{junk:016x}.tmp").write_text("{")
        path.unlink()
        with Subscription("a", j.reader(), print) as sub:
            assert not list(path.parent.glob(".a.json.*.tmp"))
        with pytest.raises(ConfigError, match="closed"):
            sub.run(timeout=0)
        with pytest.raises(ValidationError):
            list(j.reader().follow(-5, timeout=0))
