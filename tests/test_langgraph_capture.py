"""RunRecorder: a real LangGraph run recorded as one journal execution, resumes continuing it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import operator
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict
from uuid import UUID

import pytest

pytest.importorskip("langgraph")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.messages import HumanMessage  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.types import Command, interrupt  # noqa: E402

from wormjournal import Journal, JournalConfig, JournalError  # noqa: E402
from wormjournal.integrations.langgraph import RunRecorder  # noqa: E402
from wormjournal.integrations.langgraph.capture import to_json  # noqa: E402
from wormjournal.integrations.langgraph.codec import journal_id  # noqa: E402

EMAIL = "alice@example.com"


class State(TypedDict, total=False):
    email: str
    a: str
    b: str
    c: str
    answer: str


class Crash(BaseException):
    """Not an Exception: stands for the process being torn down (like KeyboardInterrupt)."""


class RootIds(BaseCallbackHandler):
    """Collects the LangGraph root run ids, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                       **kwargs: Any) -> None:
        if parent_run_id is None:
            self.ids.append(str(run_id))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.create(tmp_path / "journal", key_dir=tmp_path / "keys", config=JournalConfig(seal_max_age_seconds=None))
    yield j
    j.close()


def config(recorder: BaseCallbackHandler, roots: RootIds | None = None, thread: str = "t1") -> dict[str, Any]:
    callbacks = [recorder] if roots is None else [recorder, roots]
    return {"configurable": {"thread_id": thread}, "callbacks": callbacks}


def linear(b: Any = None, **compile_kwargs: Any) -> Any:
    """START -> a -> b -> c -> END; ``b`` may be replaced (to fail, crash or interrupt)."""
    g = StateGraph(State)
    g.add_node("a", lambda s: {"a": f"hello {s['email']}"})
    g.add_node("b", b or (lambda s: {"b": "B"}))
    g.add_node("c", lambda s: {"c": "C"})
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", END)
    return g.compile(checkpointer=InMemorySaver(), **compile_kwargs)


def shape(events: list[Any]) -> list[tuple[str, str | None]]:
    return [(e.event_type, e.node) for e in events]


NODE = [("node_started", None), ("node_completed", None), ("state_updated", None)]


def node_run(name: str) -> list[tuple[str, str | None]]:
    return [(t, name) for t, _ in NODE]


def test_linear_run_is_one_execution(journal: Journal) -> None:
    roots = RootIds()
    out = linear().invoke({"email": EMAIL}, config(RunRecorder(journal, tenant_id="acme"), roots))
    assert out["c"] == "C"
    (execution_id,) = roots.ids
    events = journal.reader().events(execution_id)
    assert shape(events) == [("execution_started", None), *node_run("a"), *node_run("b"), *node_run("c"),
                             ("execution_completed", None)]
    assert all(e.execution_id == execution_id and e.thread_id == "t1" and e.tenant_id == "acme" for e in events)
    assert all(e.payload_key_id is not None for e in events)  # encrypted, in the thread's scope
    assert [e.step_id for e in events if e.event_type == "node_started"] == ["1", "2", "3"]
    assert events[0].payload == {"inputs": {"email": EMAIL}}
    assert events[2].payload == {"update": {"a": f"hello {EMAIL}"}}
    assert events[3].payload == {"new_state": {"a": f"hello {EMAIL}"}}
    assert events[-1].payload == {"outputs": {"email": EMAIL, "a": f"hello {EMAIL}", "b": "B", "c": "C"}}
    # node_started names the execution's start; the node's other events name its node_started
    starts = {e.node: e.event_id for e in events if e.event_type == "node_started"}
    assert all(e.parent_event_id == events[0].event_id for e in events if e.event_type == "node_started")
    assert all(e.parent_event_id == starts[e.node]
               for e in events if e.event_type in ("node_completed", "state_updated"))
    reader = journal.reader()
    assert reader.state_at(execution_id) == {"a": f"hello {EMAIL}", "b": "B", "c": "C"}
    assert reader.resume_point(execution_id).status == "completed"
    journal.seal()
    assert journal.verify().ok
    assert shape(journal.reader().events(execution_id)) == shape(events)


def test_failing_node(journal: Journal) -> None:
    def b(s: State) -> State:
        raise ValueError(f"no such user {s['email']}")

    roots = RootIds()
    with pytest.raises(ValueError, match="no such user"):
        linear(b).invoke({"email": EMAIL}, config(RunRecorder(journal), roots))
    events = journal.reader().events(roots.ids[0])
    assert shape(events) == [("execution_started", None), *node_run("a"), ("node_started", "b"), ("node_failed", "b"),
                             ("execution_failed", None)]
    error = {"error": "ValueError", "message": f"no such user {EMAIL}"}
    assert events[-2].payload == error and events[-1].payload == error


def test_interrupt_pauses_and_resume_continues_the_execution(journal: Journal) -> None:
    def b(s: State) -> State:
        return {"answer": interrupt({"question": "send the mail?"})}

    graph, roots = linear(b), RootIds()
    cfg = config(RunRecorder(journal), roots)
    out = graph.invoke({"email": EMAIL}, cfg)
    assert "__interrupt__" in out
    first = roots.ids[0]
    events = journal.reader().events(first)
    assert shape(events) == [("execution_started", None), *node_run("a"), ("node_started", "b"),
                             ("human_interrupted", "b"), ("execution_paused", None)]
    (asked,) = events[-2].payload["interrupts"]
    assert asked["value"] == {"question": "send the mail?"} and asked["id"]
    assert journal.reader().resume_point(first).status == "open"

    assert graph.invoke(Command(resume="yes"), cfg)["answer"] == "yes"
    second = roots.ids[1]
    events = journal.reader().events(first)
    assert shape(events[7:]) == [("execution_resumed", None), *node_run("b"), *node_run("c"),
                                 ("execution_completed", None)]
    resumed = events[7].payload
    assert resumed["resumed_by"] == second and resumed["unfinished_nodes"] == []
    assert resumed["inputs"]["resume"] == "yes"
    assert journal.reader().events(second) == []
    assert {e.execution_id for e in journal.reader().thread_events("t1")} == {first}
    assert journal.reader().state_at(first)["answer"] == "yes"


def test_static_interrupt_is_recorded_from_the_lifecycle_callback(journal: Journal) -> None:
    graph, roots = linear(interrupt_before=["c"]), RootIds()
    cfg = config(RunRecorder(journal), roots)
    graph.invoke({"email": EMAIL}, cfg)
    events = journal.reader().events(roots.ids[0])
    assert shape(events[-2:]) == [("human_interrupted", None), ("execution_paused", None)]
    assert events[-2].payload == {"interrupts": [], "status": "interrupt_before"}
    graph.invoke(None, cfg)
    events = journal.reader().events(roots.ids[0])
    assert shape(events[-5:]) == [("execution_resumed", None), *node_run("c"), ("execution_completed", None)]


def test_resume_after_an_abort_continues_the_execution(journal: Journal) -> None:
    calls = []

    def b(s: State) -> State:
        calls.append(1)
        if len(calls) == 1:
            raise Crash("killed")
        return {"b": "B"}

    graph, roots = linear(b), RootIds()
    cfg = config(RunRecorder(journal), roots)
    with pytest.raises(Crash):
        graph.invoke({"email": EMAIL}, cfg)
    first = roots.ids[0]
    events = journal.reader().events(first)
    # LangGraph reports a BaseException through on_chain_error: the node did not end, the run was aborted
    assert shape(events) == [("execution_started", None), *node_run("a"), ("node_started", "b"),
                             ("exception_raised", "b"), ("execution_cancelled", None)]
    assert events[-2].payload == {"error": "Crash", "message": "killed", "aborted": True}
    assert journal.reader().resume_point(first).pending == ["b"]

    assert graph.invoke(None, cfg)["c"] == "C"
    events = journal.reader().events(first)
    assert shape(events[7:]) == [("execution_resumed", None), *node_run("b"), *node_run("c"),
                                 ("execution_completed", None)]
    assert events[7].payload == {"resumed_by": roots.ids[1], "unfinished_nodes": ["b"], "inputs": None}
    assert {e.execution_id for e in journal.reader().thread_events("t1")} == {first}


class Killed(RunRecorder):
    """A recorder in a process that dies in node b: no callback after b's start ever runs."""

    dead = False

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        if not self.dead:
            super().on_chain_start(serialized, inputs, **kwargs)
            self.dead = kwargs.get("name") == "b"

    def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        if not self.dead:
            super().on_chain_end(outputs, **kwargs)

    def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
        pass


def test_resume_after_a_crash_shows_the_crash_in_one_history(journal: Journal) -> None:
    calls = []

    def b(s: State) -> State:
        calls.append(1)
        if len(calls) == 1:
            raise Crash("SIGKILL")
        return {"b": "B"}

    graph, roots = linear(b), RootIds()
    with pytest.raises(Crash):
        graph.invoke({"email": EMAIL}, config(Killed(journal), roots))
    first = roots.ids[0]
    assert shape(journal.reader().events(first)) == [("execution_started", None), *node_run("a"), ("node_started", "b")]

    graph.invoke(None, config(RunRecorder(journal), roots))  # the restarted process
    replayed = list(journal.reader().replay(first))
    assert shape(replayed) == [("execution_started", None), *node_run("a"), ("node_started", "b"),
                               ("execution_resumed", None), *node_run("b"), *node_run("c"),
                               ("execution_completed", None)]
    assert replayed[5].payload["unfinished_nodes"] == ["b"]


def test_a_new_input_after_a_finished_run_starts_a_new_execution(journal: Journal) -> None:
    graph, roots = linear(), RootIds()
    recorder = RunRecorder(journal)
    graph.invoke({"email": EMAIL}, config(recorder, roots))
    graph.invoke({"email": "bob@example.com"}, config(recorder, roots))
    graph.invoke(None, config(recorder, roots))  # nothing left to run: a new (empty) execution
    assert len(set(roots.ids)) == 3
    assert {e.execution_id for e in journal.reader().thread_events("t1")} == set(roots.ids)
    assert shape(journal.reader().events(roots.ids[2])) == [("execution_started", None), ("execution_completed", None)]


def test_no_plaintext_in_the_journal_files(journal: Journal, tmp_path: Path) -> None:
    def b(s: State) -> State:
        raise ValueError(f"cannot mail {s['email']}")

    with pytest.raises(ValueError):
        linear(b).invoke({"email": EMAIL}, config(RunRecorder(journal)))
    linear().invoke({"email": EMAIL}, config(RunRecorder(journal), thread="t2"))

    def files() -> list[Path]:
        return [p for p in (tmp_path / "journal").rglob("*") if p.is_file()]

    assert any(".wal" in p.parts for p in files())
    needle = EMAIL.encode()
    assert not [p for p in files() if needle in p.read_bytes()]
    journal.seal()
    assert not [p for p in files() if needle in p.read_bytes()]
    assert EMAIL in str([e.payload for e in journal.reader().thread_events("t2")])  # the reader decrypts


def test_strict_recorder_fails_the_run_when_the_journal_fails(journal: Journal) -> None:
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        linear().invoke({"email": EMAIL}, config(RunRecorder(journal)))


def test_a_thread_id_the_journal_refuses_as_an_id_is_recorded_under_its_hash(journal: Journal) -> None:
    """LangGraph takes any thread id; one with a path separator is recorded under journal_id (FORMAT.md 3.4)."""
    ran = []
    graph = linear(lambda s: ran.append(1) or {"b": "B"})
    graph.invoke({"email": EMAIL}, config(RunRecorder(journal), thread="users/alice"))
    assert ran == [1]
    events = journal.reader().thread_events(journal_id("users/alice"))
    assert events and events[0].event_type == "execution_started" and events[-1].event_type == "execution_completed"


def test_lenient_recorder_logs_and_the_run_completes(journal: Journal, caplog: pytest.LogCaptureFixture) -> None:
    journal.close()
    roots = RootIds()
    with caplog.at_level(logging.WARNING, logger="wormjournal.integrations.langgraph.capture"):
        out = linear().invoke({"email": EMAIL}, config(RunRecorder(journal, strict=False), roots, thread="t-lost"))
    assert out["c"] == "C"
    logged = [r for r in caplog.records if r.name == "wormjournal.integrations.langgraph.capture"]
    assert len(logged) == 8  # the start, three nodes' starts and ends, the end: each write names what was lost
    assert all(r.levelno == logging.WARNING and r.exc_info and isinstance(r.exc_info[1], JournalError)
               for r in logged)
    assert all(roots.ids[0] in r.getMessage() and "thread t-lost" in r.getMessage() for r in logged)
    assert "execution_started" in logged[0].getMessage()


def test_only_the_graphs_own_nodes_are_recorded(journal: Journal) -> None:
    class Fan(TypedDict, total=False):
        seen: Annotated[list[str], operator.add]

    inner = RunnableLambda(lambda x: x, name="helper")

    def left(s: Fan) -> Fan:
        inner.invoke("x")  # a runnable inside a node
        return {"seen": ["left"]}

    sub = StateGraph(Fan)
    sub.add_node("deep", lambda s: {"seen": ["deep"]})
    sub.add_edge(START, "deep")
    g = StateGraph(Fan)
    g.add_node("left", left)
    g.add_node("right", lambda s: {"seen": ["right"]})
    g.add_node("sub", sub.compile())
    g.add_node("jump", lambda s: Command(update={"seen": ["jump"]}, goto=END))
    g.add_edge(START, "left")
    g.add_edge(START, "right")  # left and right run in parallel
    g.add_conditional_edges("left", lambda s: "sub")  # an edge function runs inside its node
    g.add_edge("sub", "jump")
    roots = RootIds()
    g.compile(checkpointer=InMemorySaver()).invoke({"seen": []}, config(RunRecorder(journal), roots))
    events = journal.reader().events(roots.ids[0])
    assert [e.node for e in events if e.event_type == "node_started"] in (
        ["left", "right", "sub", "jump"], ["right", "left", "sub", "jump"])
    assert {e.node for e in events if e.event_type == "node_completed"} == {"left", "right", "sub", "jump"}
    jump = [e for e in events if e.node == "jump" and e.event_type == "state_updated"]
    assert jump[0].payload == {"new_state": {"seen": ["jump"]}}
    assert events[-1].event_type == "execution_completed"


def test_async_run_is_recorded(journal: Journal) -> None:
    roots = RootIds()
    asyncio.run(linear().ainvoke({"email": EMAIL}, config(RunRecorder(journal), roots)))
    events = journal.reader().events(roots.ids[0])
    assert shape(events) == [("execution_started", None), *node_run("a"), *node_run("b"), *node_run("c"),
                             ("execution_completed", None)]


def test_a_payload_over_the_size_limit_is_replaced_by_its_digest(tmp_path: Path) -> None:
    config_ = JournalConfig(seal_max_age_seconds=None, max_event_bytes=4096)
    with Journal.create(tmp_path / "journal", key_dir=tmp_path / "keys", config=config_) as j:
        roots = RootIds()
        linear(lambda s: {"b": "x" * 10_000}).invoke({"email": EMAIL}, config(RunRecorder(j), roots))
        events = j.reader().events(roots.ids[0])
        big = [e.payload for e in events if e.node == "b" and e.event_type != "node_started"]
        assert len(big) == 2 and all(p["bytes"] > 10_000 and len(p["sha256"]) == 64 for p in big)
        assert events[-1].event_type == "execution_completed"


def test_to_json_converts_what_langgraph_produces() -> None:
    @dataclasses.dataclass
    class Point:
        x: int
        tags: set[str]

    class Opaque:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    value = {"msg": HumanMessage("hi"), "p": Point(1, {"b", "a"}), 2: float("nan"), "raw": b"\x00",
             "o": Opaque(), "t": (1, None)}
    out = to_json(value)
    assert out["msg"]["content"] == "hi" and out["msg"]["type"] == "human"
    assert out["p"] == {"x": 1, "tags": ["a", "b"]}
    assert out["2"] == "nan" and out["raw"] == "AA==" and out["t"] == [1, None]
    assert out["o"] == "<unrepresentable Opaque>"
    deep: list[Any] = []
    deep.append(deep)  # a cycle ends in a repr, not a RecursionError
    assert isinstance(to_json(deep), list)


def test_importing_wormjournal_does_not_import_langgraph() -> None:
    code = "import sys, wormjournal, wormjournal.integrations; assert 'langgraph' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
