"""The LangGraph checkpoint savers: JournalSaver (the journal alone) and ArchivingSaver (around another).

JournalSaver is run side by side with LangGraph's own InMemorySaver on the same calls:
every answer must be the same. Then what only it has: it survives a restart (a new
process reads the journal), it verifies before it deserializes, and deletion is
crypto-shredding plus a tombstone that verify accepts.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, TypedDict

import pytest

pytest.importorskip("langgraph")

from langgraph.checkpoint.base import ERROR, INTERRUPT, empty_checkpoint  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer  # noqa: E402
from langgraph.checkpoint.sqlite import SqliteSaver  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.types import Command, interrupt  # noqa: E402

from wormjournal.errors import IntegrityError  # noqa: E402
from wormjournal.integrations.langgraph import ArchivingSaver, JournalSaver, RunRecorder  # noqa: E402
from wormjournal.integrations.langgraph.codec import (  # noqa: E402
    CHECKPOINT_EVENT,
    TOMBSTONE_EVENT,
    WRITES_EVENT,
    journal_id,
    read_saver_payload,
)
from wormjournal.journal import Journal, JournalConfig  # noqa: E402

from conftest import rewrite_parquet  # noqa: E402

NO_AGE = JournalConfig(seal_max_age_seconds=None)
SECRET = "alice@example.com"


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    store, keys = tmp_path / "journal", tmp_path / "keys"
    Journal.create(store, key_dir=keys, config=NO_AGE).close()
    return store, keys


@pytest.fixture
def journal(paths: tuple[Path, Path]) -> Any:
    j = Journal.open(paths[0], key_dir=paths[1], config=NO_AGE)
    yield j
    j.close()


# -- side by side with InMemorySaver ------------------------------------------------------------------------


def cp(cid: str, values: dict[str, Any], versions: dict[str, int]) -> dict[str, Any]:
    c = empty_checkpoint()
    c["id"] = cid
    c["ts"] = "2026-01-01T00:00:00+00:00"
    c["channel_values"] = dict(values)
    c["channel_versions"] = dict(versions)
    return c


def cfg(thread: str, ns: str = "", cid: str | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if cid is not None:
        conf["checkpoint_id"] = cid
    return {"configurable": conf}


def scenario(saver: Any) -> list[Any]:
    """A fixed sequence of saver calls; returns every answer."""
    out: list[Any] = []
    a = saver.put(cfg("t1"), cp("1ef-01", {"a": 1, "b": "x"}, {"a": 1, "b": 1}), {"source": "input", "step": -1},
                  {"a": 1, "b": 1})
    out.append(a)
    saver.put_writes(a, [("a", 2), ("c", SECRET)], "task-1", "~path")
    saver.put_writes(a, [("a", 99)], "task-1", "~path")  # a regular write is kept once
    saver.put_writes(a, [(ERROR, "boom")], "task-2")
    saver.put_writes(a, [(ERROR, "boom again")], "task-2")  # a special one is replaced
    b = saver.put(a, cp("1ef-02", {"a": 2, "b": "x"}, {"a": 2, "b": 1}), {"source": "loop", "step": 0, "run_id": "r1"},
                  {"a": 2})
    out.append(b)
    saver.put_writes(b, [(INTERRUPT, {"ask": "approve?"})], "task-3")
    c = saver.put(cfg("t1", "sub:1"), cp("1ef-03", {"z": [1, 2]}, {"z": 1}), {"source": "loop", "step": 1}, {"z": 1})
    out.append(c)
    d = saver.put(cfg("t2"), cp("1ef-04", {"a": 7}, {"a": 1}), {"source": "input", "step": -1, "run_id": "r2"},
                  {"a": 1})
    out.append(d)
    e = saver.put(b, cp("1ef-05", {"a": 2, "b": None}, {"a": 2, "b": 3}), {"source": "update", "step": 1}, {"b": 3})
    out.append(e)
    for conf in (cfg("t1"), cfg("t1", cid="1ef-01"), cfg("t1", cid="1ef-02"), cfg("t1", "sub:1"), cfg("t1", cid="nope"),
                 cfg("t2"), cfg("t3")):
        out.append(saver.get_tuple(conf))
    out.append(list(saver.list(cfg("t1"))))
    out.append(list(saver.list({"configurable": {"thread_id": "t1"}})))
    out.append(list(saver.list(cfg("t1"), limit=1)))
    out.append(list(saver.list(cfg("t1"), before=cfg("t1", cid="1ef-05"))))
    out.append(list(saver.list(cfg("t1"), filter={"source": "loop"})))
    out.append(list(saver.list(None, filter={"step": -1})))
    out.append(list(saver.list(None, limit=3)))
    saver.delete_thread("t1")
    out.append(saver.get_tuple(cfg("t1")))
    out.append(list(saver.list(None)))
    return out


def test_journal_saver_answers_as_the_in_memory_saver(journal: Any) -> None:
    expected = scenario(InMemorySaver())
    assert scenario(JournalSaver(journal)) == expected


def test_a_reopened_journal_saver_reads_the_same_from_the_journal(paths: tuple[Path, Path]) -> None:
    with Journal.open(paths[0], key_dir=paths[1], config=NO_AGE) as j:
        saver = JournalSaver(j)
        scenario_until_delete(saver)
        live = [saver.get_tuple(cfg("t1")), list(saver.list(None))]
        j.seal()
    with Journal.open(paths[0], key_dir=paths[1], config=NO_AGE) as j:  # a new saver: nothing cached
        assert [JournalSaver(j).get_tuple(cfg("t1")), list(JournalSaver(j).list(None))] == live
        assert j.verify().ok


def scenario_until_delete(saver: Any) -> None:
    a = saver.put(cfg("t1"), cp("1ef-01", {"a": 1}, {"a": 1}), {"source": "input", "step": -1}, {"a": 1})
    saver.put_writes(a, [("a", 2)], "task-1")
    b = saver.put(a, cp("1ef-02", {"a": 2}, {"a": 2}), {"source": "loop", "step": 0, "run_id": "r1"}, {"a": 2})
    saver.put_writes(b, [(INTERRUPT, {"ask": SECRET})], "task-2")
    saver.put(cfg("t2"), cp("1ef-04", {"a": 7}, {"a": 1}), {"source": "input", "step": -1, "run_id": "r2"}, {"a": 1})


# -- graphs ----------------------------------------------------------------------------------------------


class State(TypedDict, total=False):
    text: str
    steps: list[str]
    approved: bool


def build(checkpointer: Any) -> Any:
    def draft(s: State) -> State:
        return {"text": f"draft for {SECRET}", "steps": [*s.get("steps", []), "draft"]}

    def review(s: State) -> State:
        answer = interrupt({"question": "approve?", "text": s["text"]})
        return {"approved": answer == "yes", "steps": [*s["steps"], "review"]}

    def publish(s: State) -> State:
        return {"steps": [*s["steps"], "publish"]}

    g = StateGraph(State)
    for name, fn in (("draft", draft), ("review", review), ("publish", publish)):
        g.add_node(name, fn)
    g.add_edge(START, "draft")
    g.add_edge("draft", "review")
    g.add_edge("review", "publish")
    g.add_edge("publish", END)
    return g.compile(checkpointer=checkpointer)


def run_graph(saver: Any, thread: str = "conv-1", callbacks: list[Any] | None = None) -> dict[str, Any]:
    """A run with an interrupt, a human edit and a resume; what LangGraph reports, ids left out."""
    graph = build(saver)
    config: dict[str, Any] = {"configurable": {"thread_id": thread}}
    if callbacks:
        config["callbacks"] = callbacks
    first = graph.invoke({"steps": []}, config)
    paused = graph.get_state(config)
    graph.update_state(config, {"text": "edited by a human"})
    done = graph.invoke(Command(resume="yes"), config)
    history = list(graph.get_state_history(config))
    first = {k: [i.value for i in v] if k == "__interrupt__" else v for k, v in first.items()}  # ids are random
    return {
        "first": first, "paused_next": paused.next, "paused_values": paused.values,
        "interrupts": [i.value for t in paused.tasks for i in t.interrupts],
        "done": done, "final": graph.get_state(config).values,
        "history": [(h.metadata.get("source"), h.metadata.get("step"), h.next, h.values) for h in history],
    }


def test_a_graph_runs_the_same_on_the_journal_saver(journal: Any) -> None:
    expected = run_graph(InMemorySaver())
    assert run_graph(JournalSaver(journal)) == expected
    assert expected["final"]["approved"] and expected["final"]["text"] == "edited by a human"


def test_a_graph_resumes_in_a_new_process_from_the_journal(paths: tuple[Path, Path]) -> None:
    config = {"configurable": {"thread_id": "conv-2"}}
    with Journal.open(paths[0], key_dir=paths[1], config=NO_AGE) as j:
        build(JournalSaver(j)).invoke({"steps": []}, config)  # paused at review
        j.seal()
    with Journal.open(paths[0], key_dir=paths[1], config=NO_AGE) as j:
        graph = build(JournalSaver(j))
        assert graph.get_state(config).next == ("review",)
        final = graph.invoke(Command(resume="yes"), config)
        assert final["steps"] == ["draft", "review", "publish"]


def test_async_graph_on_the_journal_saver(journal: Any) -> None:
    saver = JournalSaver(journal)
    graph = build(saver)
    config = {"configurable": {"thread_id": "conv-async"}}

    async def go() -> tuple[Any, list[Any]]:
        await graph.ainvoke({"steps": []}, config)
        done = await graph.ainvoke(Command(resume="no"), config)
        return done, [t async for t in saver.alist(config)]

    done, listed = asyncio.run(go())
    assert done["steps"] == ["draft", "review", "publish"] and done["approved"] is False
    assert [t.config for t in listed] == [t.config for t in saver.list(config)]


# -- what only the journal saver does ---------------------------------------------------------------------


class CountingSerde(JsonPlusSerializer):
    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        self.loads += 1
        return super().loads_typed(data)


def test_nothing_is_deserialized_before_it_is_verified(paths: tuple[Path, Path]) -> None:
    with Journal.open(paths[0], key_dir=paths[1], config=NO_AGE) as j:
        scenario_until_delete(JournalSaver(j))
        j.seal()
    [segment] = list((paths[0] / "segments").rglob("*.parquet"))

    def flip(table: Any) -> Any:
        import pyarrow as pa

        payloads = table.column("payload").to_pylist()
        payloads[0] = payloads[0][:-1] + bytes([payloads[0][-1] ^ 1])
        return table.set_column(table.schema.get_field_index("payload"), "payload", pa.array(payloads, pa.binary()))

    rewrite_parquet(segment, flip)
    with Journal.open(paths[0], key_dir=paths[1], config=NO_AGE) as j:
        serde = CountingSerde()
        with pytest.raises(IntegrityError):
            JournalSaver(j, serde=serde).get_tuple(cfg("t1"))
        assert serde.loads == 0


def on_disk(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_delete_thread_shreds_and_leaves_a_tombstone(paths: tuple[Path, Path]) -> None:
    with Journal.open(paths[0], key_dir=paths[1], config=NO_AGE) as j:
        saver = JournalSaver(j)
        scenario_until_delete(saver)
        assert SECRET.encode() not in on_disk(paths[0])  # encrypted before the first write, WAL included
        saver.delete_thread("t1")
        assert saver.get_tuple(cfg("t1")) is None
        assert [t.config["configurable"]["thread_id"] for t in saver.list(None)] == ["t2"]
        j.seal()
        report = j.verify()
        assert report.ok, report.findings
        # The run's key and the thread's own (its first checkpoint had no run id) were destroyed.
        assert sorted((r["scope"], r["scope_ref"]) for r in report.receipts) == [
            ("execution", "langgraph-thread-t1"), ("execution", "r1")]
    with Journal.open(paths[0], key_dir=paths[1], config=NO_AGE) as j:
        fresh = JournalSaver(j)
        assert fresh.get_tuple(cfg("t1")) is None
        assert fresh.get_tuple(cfg("t2")) is not None
        # The thread's events are still there, unreadable: their keys are gone.
        events = [e for e in j.reader().thread_events("t1") if e.event_type in (CHECKPOINT_EVENT, WRITES_EVENT)]
        assert events and all(e.payload.get("$wormjournal") == "shredded" for e in events)
        # The thread can be used again afterwards.
        fresh.put(cfg("t1"), cp("1ef-09", {"a": 9}, {"a": 1}), {"source": "input", "step": -1}, {"a": 1})
        assert fresh.get_tuple(cfg("t1")).checkpoint["channel_values"] == {"a": 9}


def test_delete_for_runs_prune_and_copy_thread(journal: Any) -> None:
    saver = JournalSaver(journal)
    scenario_until_delete(saver)
    c = saver.put(cfg("t1", cid="1ef-02"), cp("1ef-03", {"a": 3}, {"a": 3}),
                  {"source": "loop", "step": 1, "run_id": "r3"}, {"a": 3})
    saver.copy_thread("t1", "t1-copy")
    original = [(t.checkpoint, t.metadata, t.pending_writes) for t in saver.list(cfg("t1"))]
    assert [(t.checkpoint, t.metadata, t.pending_writes) for t in saver.list(cfg("t1-copy"))] == original
    saver.delete_for_runs(["r1"])
    assert [t.config["configurable"]["checkpoint_id"] for t in saver.list(cfg("t1"))] == ["1ef-03", "1ef-01"]
    assert [t.config["configurable"]["checkpoint_id"] for t in saver.list(cfg("t1-copy"))] == ["1ef-03", "1ef-01"]
    saver.prune(["t1"])
    assert [t.config["configurable"]["checkpoint_id"] for t in saver.list(cfg("t1"))] == ["1ef-03"]
    assert saver.get_tuple(c).checkpoint["channel_values"] == {"a": 3}
    with pytest.raises(ValueError, match="unknown prune strategy"):
        saver.prune(["t1"], strategy="most")
    journal.seal()
    fresh = JournalSaver(journal)
    assert [t.config["configurable"]["checkpoint_id"] for t in fresh.list(cfg("t1"))] == ["1ef-03"]
    assert [t.config["configurable"]["checkpoint_id"] for t in fresh.list(cfg("t1-copy"))] == ["1ef-03", "1ef-01"]
    assert journal.verify().ok


# -- ArchivingSaver ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("inner", ["memory", "sqlite"])
def test_archiving_saver_archives_every_write_and_reads_from_the_inner_saver(journal: Any, inner: str,
                                                                              paths: tuple[Path, Path]) -> None:
    base = InMemorySaver() if inner == "memory" else SqliteSaver(sqlite3.connect(":memory:", check_same_thread=False))
    puts: list[str] = []
    original_put = base.put

    def spy_put(config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        puts.append(checkpoint["id"])
        return original_put(config, checkpoint, metadata, new_versions)

    base.put = spy_put  # type: ignore[method-assign]
    saver = ArchivingSaver(base, journal)
    result = run_graph(saver)
    assert result == run_graph(InMemorySaver())
    events = journal.reader().thread_events("conv-1")
    archived = [e for e in events if e.event_type == CHECKPOINT_EVENT]
    assert [e.step_id for e in archived] == puts  # every put, in order, before the inner saver got it
    assert any(e.event_type == WRITES_EVENT for e in events)
    assert all(e.payload_key_id is not None for e in events if e.event_type in (CHECKPOINT_EVENT, WRITES_EVENT))
    # An archived checkpoint decodes to what the inner saver holds.
    last = read_saver_payload(archived[-1].payload)
    assert isinstance(archived[-1].payload, bytes) and last is not None  # binary: no base64 (FORMAT.md 3.4)
    tup = base.get_tuple({"configurable": {"thread_id": "conv-1", "checkpoint_ns": "",
                                           "checkpoint_id": last["checkpoint_id"]}})
    assert tup is not None
    assert last["parent_checkpoint_id"] == (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    assert SECRET.encode() not in on_disk(paths[0])
    saver.delete_thread("conv-1")
    assert base.get_tuple({"configurable": {"thread_id": "conv-1", "checkpoint_ns": ""}}) is None
    journal.seal()
    assert journal.verify().ok
    assert all(e.payload.get("$wormjournal") == "shredded" for e in journal.reader().thread_events("conv-1")
               if e.event_type in (CHECKPOINT_EVENT, WRITES_EVENT))


def test_the_async_deletions_copy_and_prune_match_the_sync_ones(paths: tuple[Path, Path], tmp_path: Path) -> None:
    def outcome(saver: JournalSaver) -> list[list[str]]:
        return [[t.config["configurable"]["checkpoint_id"] for t in saver.list(cfg(t))]
                for t in ("t1", "t1-copy", "t2")]

    results = []
    for mode in ("sync", "async"):
        store, keys = tmp_path / mode, tmp_path / f"{mode}-keys"
        with Journal.create(store, key_dir=keys, config=NO_AGE) as j:
            saver = JournalSaver(j)
            scenario_until_delete(saver)
            if mode == "sync":
                saver.copy_thread("t1", "t1-copy")
                saver.delete_for_runs(["r2"])
                saver.prune(["t1-copy"])
                saver.delete_thread("t1")
            else:
                async def go(saver: JournalSaver) -> None:
                    await saver.acopy_thread("t1", "t1-copy")
                    await saver.adelete_for_runs(["r2"])
                    await saver.aprune(["t1-copy"])
                    await saver.adelete_thread("t1")

                asyncio.run(go(saver))
            results.append(outcome(saver))
            assert outcome(JournalSaver(j)) == results[-1]  # and read back from the journal
    assert results[0] == results[1] == [[], ["1ef-02"], []]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_archive_holds_copies_prunes_and_deleted_runs_as_the_inner_saver_does(tmp_path: Path, mode: str) -> None:
    """copy_thread, delete_for_runs and prune through ArchivingSaver (sync and async, around a saver that has them
    all): a JournalSaver reading the archive alone lists every thread as the inner saver does."""

    def view(saver: Any, thread: str) -> list[Any]:
        return [(t.config["configurable"]["checkpoint_id"], t.checkpoint, t.metadata, t.pending_writes,
                 (t.parent_config or {}).get("configurable", {}).get("checkpoint_id"))
                for t in saver.list({"configurable": {"thread_id": thread}})]

    with Journal.create(tmp_path / "inner", key_dir=tmp_path / "inner-keys", config=NO_AGE) as ji, \
            Journal.create(tmp_path / "archive", key_dir=tmp_path / "archive-keys", config=NO_AGE) as ja:
        inner = JournalSaver(ji)
        saver = ArchivingSaver(inner, ja)
        scenario_until_delete(saver)
        sub = saver.put(cfg("t1", "sub:1"), cp("1ef-03", {"z": [1, 2]}, {"z": 1}), {"source": "loop", "step": 1},
                        {"z": 1})
        saver.put_writes(sub, [("z", [3])], "task-4")
        if mode == "sync":
            saver.copy_thread("t1", "t1-copy")
            saver.delete_for_runs(["r2"])
            saver.prune(["t1-copy"])
        else:
            async def go() -> None:
                await saver.acopy_thread("t1", "t1-copy")
                await saver.adelete_for_runs(["r2"])
                await saver.aprune(["t1-copy"])

            asyncio.run(go())
        ja.seal()
        archive = JournalSaver(ja)
        for thread in ("t1", "t1-copy", "t2"):
            assert view(archive, thread) == view(inner, thread), thread
        assert [x[0] for x in view(inner, "t1-copy")] == ["1ef-02", "1ef-03"]  # each namespace's latest
        assert view(inner, "t2") == [] and len(view(inner, "t1")) == 3
        kinds = [e.payload.get("scope") for e in ja.reader().find(event_type=TOMBSTONE_EVENT)]
        assert sorted(kinds) == ["checkpoints", "runs"]
        assert ja.verify().ok


def test_without_langgraph_the_error_says_what_to_install() -> None:
    code = ("import sys\nsys.modules['langgraph'] = None\n"
            "from wormjournal.integrations import langgraph\n"
            "try:\n    langgraph.JournalSaver\nexcept ImportError as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.startswith("ImportError ") and "pip install 'wormjournal[langgraph]'" in out, out


ODD_THREADS = ["tenant-a/conv 7", "x" * 300, "line\nbreak", "lg:conv-1", "tab\there", "..", "conv-1"]


def test_any_thread_id_langgraph_takes_is_stored(paths: tuple[Path, Path]) -> None:
    """Thread ids the journal does not take as ids (a slash, over 256 bytes, a newline, ``..``, or one that looks like
    a stored hash) run as under the in-memory saver, through JournalSaver, ArchivingSaver and RunRecorder alike;
    a fresh saver lists them by their own ids (FORMAT.md 3.4: the event holds a hash, the payload the id)."""
    with Journal.open(paths[0], key_dir=paths[1], config=NO_AGE) as j:
        for thread in ODD_THREADS:
            expected = run_graph(InMemorySaver(), thread)
            assert run_graph(JournalSaver(j), thread, [RunRecorder(j)]) == expected, thread
            assert run_graph(ArchivingSaver(InMemorySaver(), j), f"archived {thread}") == run_graph(
                InMemorySaver(), f"archived {thread}"), thread
        j.seal()
        fresh = JournalSaver(j)
        listed = {t.config["configurable"]["thread_id"] for t in fresh.list(None)}
        assert set(ODD_THREADS) <= listed
        hashed = {journal_id(t) for t in ODD_THREADS} - set(ODD_THREADS)
        assert len(hashed) == 6 and all(h.startswith("lg:") and len(h) == 35 for h in hashed)
        recorded = {e.thread_id for e in j.reader().find(event_type="execution_started")}
        assert {journal_id(t) for t in ODD_THREADS} <= recorded  # RunRecorder recorded every run
        fresh.delete_thread("x" * 300)
        assert fresh.get_tuple({"configurable": {"thread_id": "x" * 300, "checkpoint_ns": ""}}) is None
        assert JournalSaver(j).get_tuple({"configurable": {"thread_id": "line\nbreak", "checkpoint_ns": ""}})
        j.seal()
        assert j.verify().ok


def test_writes_go_to_their_checkpoints_run_and_odd_run_ids_are_shredded(paths: tuple[Path, Path]) -> None:
    """The writes on a checkpoint are in the execution of the checkpoint's event: its run's (hashed when the journal
    does not take the run id as an id), whether the saver put it or reads it from the journal, and a copy's own
    after copy_thread. delete_for_runs destroys the key of a run with such an id."""
    runs = ("tenant/run 1", "r" * 300)

    def executions(j: Any, thread: str) -> list[tuple[str, str]]:
        return [(e.event_type, e.execution_id) for e in j.reader().thread_events(journal_id(thread))
                if e.event_type in (CHECKPOINT_EVENT, WRITES_EVENT)]

    with Journal.open(paths[0], key_dir=paths[1], config=NO_AGE) as j:
        saver = JournalSaver(j)
        for k, run in enumerate(runs):
            saver.put(cfg(f"t{k}"), cp(f"1ef-0{k}", {"a": SECRET}, {"a": 1}),
                      {"source": "input", "step": -1, "run_id": run}, {"a": 1})
    with Journal.open(paths[0], key_dir=paths[1], config=NO_AGE) as j:
        saver = JournalSaver(j)  # a new process: the checkpoints' runs are read from the journal
        for k, run in enumerate(runs):
            saver.put_writes(cfg(f"t{k}", cid=f"1ef-0{k}"), [("a", SECRET)], "task-1")
            assert executions(j, f"t{k}") == [(CHECKPOINT_EVENT, journal_id(run)), (WRITES_EVENT, journal_id(run))]
        saver.copy_thread("t0", "t0-copy")
        saver.put_writes(cfg("t0-copy", cid="1ef-00"), [("b", 1)], "task-2")
        own = journal_id("langgraph-thread-t0-copy")
        assert {x for _, x in executions(j, "t0-copy")} == {own}  # deleting the source's run leaves the copy
        saver.delete_for_runs(list(runs))
        for k in range(len(runs)):
            assert saver.get_tuple(cfg(f"t{k}")) is None
            events = [e for e in j.reader().thread_events(journal_id(f"t{k}"))
                      if e.event_type in (CHECKPOINT_EVENT, WRITES_EVENT)]
            assert events and all(e.payload.get("$wormjournal") == "shredded" for e in events)
        assert JournalSaver(j).get_tuple(cfg("t0-copy")) is None  # its checkpoint came from a deleted run
        j.seal()
        report = j.verify()
        assert report.ok, report.findings
        assert {r["scope_ref"] for r in report.receipts} == {journal_id(run) for run in runs}
        assert SECRET.encode() not in on_disk(paths[0])


def test_a_graphs_writes_are_in_its_runs_execution_before_its_checkpoint_is_put(journal: Any) -> None:
    """LangGraph sends a step's writes before the put of the checkpoint they belong to (async durability): they are
    still in the run's execution (the run LangGraph names in the config's metadata), so that delete_for_runs destroys
    them with the run's checkpoints."""
    run = "server/run 42"
    graph = build(JournalSaver(journal))
    config = {"configurable": {"thread_id": "async-writes"}, "metadata": {"run_id": run}}
    graph.invoke({"steps": []}, config)
    events = [e for e in journal.reader().thread_events("async-writes")
              if e.event_type in (CHECKPOINT_EVENT, WRITES_EVENT)]
    assert {e.event_type for e in events} == {CHECKPOINT_EVENT, WRITES_EVENT}
    assert {e.execution_id for e in events} == {journal_id(run)}
    JournalSaver(journal).delete_for_runs([run])
    events = [e for e in journal.reader().thread_events("async-writes")
              if e.event_type in (CHECKPOINT_EVENT, WRITES_EVENT)]
    assert all(e.payload.get("$wormjournal") == "shredded" for e in events)


def test_two_savers_on_one_journal_never_fork_a_thread(journal: Any) -> None:
    """Runs A, B, A on one thread through two JournalSavers of one journal (a server's saver per request): each
    sees the other's checkpoints, as one in-memory saver serving all three does."""

    def turns(savers: list[Any]) -> list[Any]:
        out = []
        for k, saver in enumerate(savers):
            graph = build(saver)
            config = {"configurable": {"thread_id": "shared"}}
            graph.invoke({"steps": [f"turn {k}"]}, config)
            graph.invoke(Command(resume="yes"), config)
            out.append([(h.metadata.get("step"), h.values) for h in graph.get_state_history(config)])
        return out

    a, b = JournalSaver(journal), JournalSaver(journal)
    memory = InMemorySaver()
    assert turns([a, b, a]) == turns([memory, memory, memory])
    assert len(list(a.list(cfg("shared")))) == len(list(memory.list(cfg("shared")))) == len(list(b.list(cfg("shared"))))


def test_a_saver_keeps_few_threads_and_one_reader(journal: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache of threads is bounded (the least recently used are read again when needed), and every thread is
    read through the saver's one Reader, which follows the write-ahead log rather than reading it again."""
    readers: list[Any] = []
    genuine = type(journal).reader
    monkeypatch.setattr(type(journal), "reader", lambda self: readers.append(1) or genuine(self))
    saver = JournalSaver(journal, cache_threads=3)
    expected = {f"conv-{k}": run_graph(InMemorySaver(), f"conv-{k}") for k in range(8)}
    for thread, answer in expected.items():
        assert run_graph(saver, thread) == answer
    assert len(saver._threads) <= 3  # noqa: SLF001
    for k in range(8):  # the evicted threads read back whole
        assert len(list(saver.list({"configurable": {"thread_id": f"conv-{k}"}}))) == len(
            expected[f"conv-{k}"]["history"])
    assert len(readers) == 1
