"""Several LangGraph worker processes on one journal, each writing its own stream (tests/langgraph_worker_child.py).

Four workers start together on an empty store (one creates the journal, the others open it) and serve
interleaved requests for the same threads: consecutive turns of a thread run in different workers, turns of
different threads at once. Every saver reads a thread across all the streams, so each turn sees the ones before
it, whichever worker served them: every answer, final state and checkpoint list equals what LangGraph's
in-memory saver gives for the same inputs, with one JournalSaver per process, one per request (as LangGraph's
server makes them), and ArchivingSaver around one SqliteSaver file. Then a thread deleted in one worker is gone
in the others, and the store verifies. The Reader method the savers follow the other streams with is tested
first, in this process.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph")

from langgraph.checkpoint.base import empty_checkpoint  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph_scenario import STEPS, step  # noqa: E402
from langgraph_worker_child import build, summary  # noqa: E402

from wormjournal.index import Reader  # noqa: E402
from wormjournal.integrations.langgraph import ArchivingSaver, JournalSaver  # noqa: E402
from wormjournal.journal import Journal, JournalConfig  # noqa: E402
from wormjournal.storage.wal import WalFollower  # noqa: E402
from wormjournal.verify import verify_store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "langgraph_worker_child.py"
WORKERS = 4
NO_AGE = JournalConfig(seal_max_age_seconds=None, seal_worker=False)
EXPECTED: dict[str, Any] = {}  # thread -> its summary on the in-memory saver, checked again by a fresh process


# -- the Reader method: a thread's events from a seq on ------------------------------------------------------------


def test_thread_events_from_reads_what_was_appended_since(tmp_path: Path) -> None:
    store, keys = tmp_path / "journal", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, stream="a", config=NO_AGE) as a, \
            Journal.open(store, key_dir=keys, stream="b", config=NO_AGE) as b:
        reader = a._stream_reader("b")  # noqa: SLF001 - how JournalSaver reads another stream
        assert reader.thread_events_from("t", 0) == ([], 0)
        b.append("node_started", "x1", thread_id="t")
        b.append("node_started", "x2", thread_id="u")
        events, end = reader.thread_events_from("t", 0)
        assert [e.seq for e in events] == [0] and end == 2
        b.append("node_started", "x1", thread_id="t")
        events, end = reader.thread_events_from("t", end)  # from the write-ahead log's new frames
        assert [e.seq for e in events] == [2] and end == 3 and not events[0].sealed
        b.seal()
        b.append("node_started", "x1", thread_id="t")
        events, end = reader.thread_events_from("t", 1)  # seq 2 is sealed now: through the index
        assert [(e.seq, e.sealed) for e in events] == [(2, True), (3, False)] and end == 4
        assert reader.thread_events_from("t", end) == ([], 4)
        b.seal()
        assert reader.thread_events_from("t", 4) == ([], 4)
        assert [e.seq for e in reader.thread_events_from("t", 0)[0]] == [0, 2, 3]
        fresh = Reader(store, stream="b")  # sealed events only, no write-ahead log
        assert [e.seq for e in fresh.thread_events_from("t", 1)[0]] == [2, 3]


def test_thread_events_again_reads_the_last_snapshot_and_nothing_else(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """What JournalSaver asks its own stream's reader of a thread it has not cached when the writer says nothing of
    the thread was appended since the last read: that read's snapshot, with nothing read again."""
    with Journal.create(tmp_path / "journal", key_dir=tmp_path / "keys", config=NO_AGE) as j:
        reader = j.reader()
        assert reader.snapshot_end() is None and reader.thread_events_again("t") is None
        j.append("node_started", "x1", thread_id="t")
        assert reader.thread_events_from("u", 0) == ([], 1)
        assert reader.snapshot_end() == 1 and not j.appended_since("t", 1)
        j.append("node_started", "x2", thread_id="t")  # after the snapshot: the writer says so
        assert j.appended_since("t", 1)
        with monkeypatch.context() as m:
            m.setattr(WalFollower, "follow", lambda self: pytest.fail("the write-ahead log was read again"))
            requests = reader.store.requests
            events, end = reader.thread_events_again("t")  # type: ignore[misc]
            assert [e.seq for e in events] == [0] and end == 1 and reader.store.requests == requests
        assert [e.seq for e in reader.thread_events_from("t", 0)[0]] == [0, 1]
        j.seal()
        reader.refresh()  # the sealed segments counted again outside a read: that snapshot is not read again
        assert reader.snapshot_end() is None and reader.thread_events_again("t") is None
        assert [e.seq for e in reader.thread_events_from("t", 0)[0]] == [0, 1]
        assert reader.snapshot_end() == 2


def test_a_run_deleted_through_another_workers_archiving_saver_is_gone_from_the_archive(tmp_path: Path) -> None:
    """ArchivingSaver's delete_for_runs in the writer of stream b finds the run's thread in stream a (another worker
    served the run): a JournalSaver reading the archive lists the thread as the inner saver does."""
    run = "1f0a0000-0000-7000-8000-000000000001"
    config = {"configurable": {"thread_id": "x"}}
    with Journal.create(tmp_path / "inner", key_dir=tmp_path / "inner-keys", config=NO_AGE) as ji, \
            Journal.create(tmp_path / "archive", key_dir=tmp_path / "keys", stream="a", config=NO_AGE) as a, \
            Journal.open(tmp_path / "archive", key_dir=tmp_path / "keys", stream="b", config=NO_AGE) as b:
        inner = JournalSaver(ji)  # a saver with delete_for_runs, which the in-memory saver does not have
        build(ArchivingSaver(inner, a)).invoke({"messages": ["one"]}, {**config, "metadata": {"run_id": run}})
        build(ArchivingSaver(inner, b)).invoke({"messages": ["two"]}, config)
        assert {t.metadata.get("run_id") for t in inner.list(config)} >= {run}
        ArchivingSaver(inner, b).delete_for_runs([run])
        kept = summary(inner, "x")
        assert kept["list"] and run not in {t.metadata.get("run_id") for t in inner.list(config)}
        assert summary(JournalSaver(b), "x") == summary(JournalSaver(a), "x") == kept


def test_a_tombstone_read_late_applies_in_the_order_it_was_written(tmp_path: Path) -> None:
    """Stream b deletes the thread; then stream a, which has not read that yet, puts a checkpoint. When a reads the
    tombstone it comes before that checkpoint in time: the thread is read again in time order (the checkpoint
    stays), as a saver of a third writer reads it, and as the in-memory saver has it."""

    def checkpoint(cid: str, version: int) -> Any:
        c = empty_checkpoint()
        c.update(id=cid, channel_values={"a": cid}, channel_versions={"a": version})
        return c

    def calls(first: Any, second: Any) -> list[str]:
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        assert first.get_tuple(config) is None  # first caches the thread
        one = first.put(config, checkpoint("1ef-01", 1), {"source": "input", "step": -1}, {"a": 1})
        second.delete_thread("t")
        first.put(one, checkpoint("1ef-02", 2), {"source": "loop", "step": 0}, {"a": 2})
        return [t.checkpoint["id"] for t in first.list(config)]

    memory = InMemorySaver()
    expected = calls(memory, memory)
    store, keys = tmp_path / "journal", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, stream="a", config=NO_AGE) as a, \
            Journal.open(store, key_dir=keys, stream="b", config=NO_AGE) as b, \
            Journal.open(store, key_dir=keys, stream="c", config=NO_AGE) as c:
        assert calls(JournalSaver(a), JournalSaver(b)) == expected == ["1ef-02"]
        config = {"configurable": {"thread_id": "t"}}
        assert [t.checkpoint["id"] for t in JournalSaver(c).list(config)] == expected


# -- the workers ---------------------------------------------------------------------------------------------------


class Worker:
    """One child process; ``send`` a request, then ``receive`` its answer."""

    def __init__(self, store: Path, keys: Path, stream: str, sqlite: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), "--store", str(store), "--keys", str(keys), "--stream", stream,
             "--sqlite", str(sqlite)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def line(self, prefix: str) -> str:
        while True:
            line = self.lines.get(timeout=120)
            if not line:
                raise AssertionError(f"worker exited with {self.proc.wait()}")
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def send(self, **request: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> Any:
        answer = json.loads(self.line("ANSWER "))
        if isinstance(answer, dict) and "error" in answer:
            raise AssertionError(answer["error"])
        return answer

    def ask(self, **request: Any) -> Any:
        self.send(**request)
        return self.receive()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Four workers started together on an empty store, and the store's paths."""
    base = tmp_path_factory.mktemp("workers")
    store, keys = base / "journal", base / "keys"
    workers = [Worker(store, keys, f"worker-{n}", base / "checkpoints.sqlite") for n in range(WORKERS)]
    try:
        ids = {w.line("READY ") for w in workers}
        yield workers, ids, store, keys
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
            w.proc.wait()


def remember(thread: str, turns: list[str], deleted_after: int | None = None) -> tuple[list[Any], dict[str, Any]]:
    """The thread's turns on LangGraph's in-memory saver: each turn's output, and the thread's summary."""
    saver = InMemorySaver()
    graph = build(saver)
    outputs = []
    for k, text in enumerate(turns):
        if k == deleted_after:
            saver.delete_thread(thread)
        outputs.append(graph.invoke({"messages": [text]}, {"configurable": {"thread_id": thread}}))
    EXPECTED[thread] = summary(saver, thread)
    return outputs, EXPECTED[thread]


def test_workers_starting_together_share_one_journal(pool: Any) -> None:
    _, ids, store, _ = pool
    assert len(ids) == 1  # one created it, the others opened it
    assert {p.name for p in (store / ".wal").iterdir()} >= {f"stream=worker-{n}" for n in range(WORKERS)}


@pytest.mark.parametrize("kind", ["journal", "request", "archiving"])
def test_interleaved_turns_of_the_same_threads_in_four_workers(pool: Any, kind: str) -> None:
    """3 threads x 12 turns: turn k of thread i in worker (3k + i) mod 4, the three threads' turns at once."""
    workers = pool[0]
    threads = [f"{kind}-{i}" for i in range(3)]
    turns = {t: [f"{t} turn {k}" for k in range(12)] for t in threads}
    outputs = {t: [] for t in threads}
    for k in range(12):
        serving = [(workers[(3 * k + i) % WORKERS], t) for i, t in enumerate(threads)]
        for w, t in serving:
            w.send(op="turn", saver=kind, thread=t, text=turns[t][k])
        for w, t in serving:
            outputs[t].append(w.receive())
        if k == 5:
            workers[1].ask(op="seal")  # readers of worker-1's stream see its events move to a segment
    for i, t in enumerate(threads):
        expected_outputs, expected = remember(t, turns[t])
        assert outputs[t] == expected_outputs
        assert expected["values"]["messages"][::2] == turns[t] and expected["values"]["count"] == 12
        reader = workers[(i + 2) % WORKERS]  # not the worker that served the last turn
        assert reader.ask(op="state", saver="request", thread=t) == expected  # a fresh saver
        assert reader.ask(op="state", saver=kind, thread=t) == expected


def test_runs_a_b_a_in_two_workers_leave_three_turns(pool: Any) -> None:
    """Worker 0 caches the thread at run A; run B in worker 1; run A again in worker 0 continues from B."""
    workers = pool[0]
    turns = ["A", "B", "A again"]
    got = [workers[k % 2].ask(op="turn", saver="journal", thread="aba", text=text) for k, text in enumerate(turns)]
    outputs, expected = remember("aba", turns)
    assert got == outputs and got[-1]["count"] == 3 and got[-1]["messages"][::2] == turns
    assert workers[0].ask(op="state", saver="journal", thread="aba") == expected
    assert len(expected["list"]) == 3 * 4  # input, loop, loop and the step that ends, per run


def test_a_thread_deleted_in_one_worker_is_gone_in_the_others(pool: Any) -> None:
    workers = pool[0]
    for k in range(3):
        workers[k].ask(op="turn", saver="journal", thread="gone", text=f"before {k}")
    for w in workers[:3]:
        assert w.ask(op="state", saver="journal", thread="gone")["values"]["count"] == 3  # cached in each
    workers[3].ask(op="delete", saver="journal", thread="gone")
    for w in workers:
        assert w.ask(op="state", saver="journal", thread="gone") == {"values": None, "list": []}
        assert w.ask(op="state", saver="request", thread="gone") == {"values": None, "list": []}
    after = workers[1].ask(op="turn", saver="journal", thread="gone", text="after")
    outputs, expected = remember("gone", ["before 0", "before 1", "before 2", "after"], deleted_after=3)
    assert after == outputs[-1] and after["count"] == 1
    assert workers[2].ask(op="state", saver="journal", thread="gone") == expected

# -- the realistic graph with a 5 MB state, and a 200-turn conversation, in four workers ----------------------------


def test_the_realistic_graph_as_in_memory_in_one_process(tmp_path: Path) -> None:
    """The ReAct loop, Send, the subgraph's interrupt, a fork and async streaming with a 5 MB document, in this
    process first: JournalSaver and ArchivingSaver answer every step as the in-memory saver does."""
    memory = InMemorySaver()
    expected = [step(memory, "r", name, arg) for name, arg in STEPS]
    with Journal.create(tmp_path / "journal", key_dir=tmp_path / "keys", config=NO_AGE) as j:
        assert [step(JournalSaver(j), "r", name, arg) for name, arg in STEPS] == expected
        archiving = ArchivingSaver(InMemorySaver(), j)
        assert [step(archiving, "r2", name, arg) for name, arg in STEPS] == expected
        assert any(e.payload_codec.endswith("+ref") for e in j.reader().thread_events("r"))  # the document, apart


@pytest.mark.parametrize("kind", ["journal", "request", "archiving"])
def test_the_realistic_graph_with_a_5_mb_state_in_four_workers(pool: Any, kind: str) -> None:
    """Each step of the conversation in the next worker: the answers are the in-memory saver's."""
    workers, _, store, _ = pool
    memory = InMemorySaver()
    expected = [step(memory, "realistic", name, arg) for name, arg in STEPS]
    thread = f"realistic-{kind}"
    answers = [workers[k % WORKERS].ask(op="step", saver=kind, thread=thread, name=name, arg=arg)
               for k, (name, arg) in enumerate(STEPS)]
    assert answers == json.loads(json.dumps(expected))  # as it came through the pipe


@pytest.mark.parametrize("kind", ["journal", "archiving"])
def test_a_200_turn_conversation_in_four_workers(pool: Any, kind: str) -> None:
    workers, _, _, _ = pool
    thread = f"long-{kind}"
    turns = [f"message {k}" for k in range(200)]
    outputs, expected = remember(thread, turns)
    for k, text in enumerate(turns):
        assert workers[k % WORKERS].ask(op="turn", saver=kind, thread=thread, text=text) == outputs[k]
    assert workers[1].ask(op="state", saver=kind, thread=thread) == json.loads(json.dumps(expected))


def test_a_fresh_process_reads_every_thread_and_the_store_verifies(pool: Any, wj: Any) -> None:
    """Every thread the workers served (those of the tests before it in this process, and two of its own: tests
    are spread over processes) reads the same from a fresh process, and the store verifies."""
    workers, _, store, keys = pool
    for kind in ("journal", "archiving"):
        thread = f"fresh-{kind}"
        turns = [f"message {k}" for k in range(3)]
        outputs, _ = remember(thread, turns)
        for k, text in enumerate(turns):
            assert workers[k % WORKERS].ask(op="turn", saver=kind, thread=thread, text=text) == outputs[k]
    for w in workers:
        w.ask(op="quit")  # closes its journal, sealing
        assert w.proc.wait(timeout=60) == 0
    with Journal.open(store, key_dir=keys, stream="auditor", config=NO_AGE) as journal:
        saver = JournalSaver(journal)
        for thread, expected in EXPECTED.items():
            if "archiving" not in thread:  # those are in the shared SqliteSaver; the journal archives them
                assert summary(saver, thread) == expected, thread
        for thread in (t for t in EXPECTED if t.startswith("archiving") or t == "fresh-archiving"):
            assert summary(saver, thread)["values"] == EXPECTED[thread]["values"], thread
    report = verify_store(store)
    assert report.ok and report.events > 0, report.to_text()
    assert wj("verify", store).code == 0

