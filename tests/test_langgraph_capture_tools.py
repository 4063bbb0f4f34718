"""RunRecorder inside nodes: tool and model calls, Send workers, forks, lost events; and `wormjournal stats` on them."""

from __future__ import annotations

import asyncio
import json
import logging
import operator
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict
from uuid import UUID

import pytest

pytest.importorskip("langgraph")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.language_models.chat_models import BaseChatModel  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from langchain_core.tools import StructuredTool, ToolException, tool  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import END, START, MessagesState, StateGraph  # noqa: E402
from langgraph.prebuilt import ToolNode, tools_condition  # noqa: E402
from langgraph.types import Command, Send, interrupt  # noqa: E402

from wormjournal import Journal, JournalConfig, ValidationError, analytics  # noqa: E402
from wormjournal.integrations.langgraph import JournalSaver, RunRecorder  # noqa: E402
from wormjournal.integrations.langgraph.capture import (  # noqa: E402
    LLM_FAILED_EVENT,
    LLM_OUTPUT_EVENT,
    TOOL_ERROR_STATUS,
    TOOL_OUTPUT_EVENT,
)

EMAIL = "alice@example.com"
CAPTURE_LOGGER = "wormjournal.integrations.langgraph.capture"


class RootIds(BaseCallbackHandler):
    """Collects the LangGraph root run ids, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                       **kwargs: Any) -> None:
        if parent_run_id is None:
            self.ids.append(str(run_id))


class ScriptedModel(BaseChatModel):
    """A chat model that answers with the next of its scripted results (an AIMessage and its llm_output), or
    raises the next one (an exception)."""

    script: list[Any]
    model: str = "fake-1"
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model}

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        message, llm_output = self.script[self.calls]
        self.calls += 1
        if isinstance(message, Exception):
            raise message
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output=llm_output)


@tool
def search(q: str) -> str:
    """Search the knowledge base."""
    return f"3 results for {q}"


@tool
def crm(user: str) -> str:
    """Look a customer up."""
    raise ValueError(f"no customer {user}")


def _refuse(user: str) -> str:
    raise ToolException(f"{user} opted out")


refuse = StructuredTool.from_function(_refuse, name="refuse", description="Refuse.", handle_tool_error=True)


def react_graph(model: ScriptedModel, **compile_kwargs: Any) -> Any:
    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.bind_tools([search, crm, refuse]).invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode([search, crm, refuse], handle_tool_errors=True))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition)
    g.add_edge("tools", "agent")
    return g.compile(**compile_kwargs)


def tool_turn() -> ScriptedModel:
    """The model calls three tools (usage in llm_output), then answers (usage_metadata, cost in response_metadata)."""
    calls = AIMessage("", tool_calls=[{"name": "search", "args": {"q": "refunds"}, "id": "call-1"},
                                      {"name": "crm", "args": {"user": EMAIL}, "id": "call-2"},
                                      {"name": "refuse", "args": {"user": EMAIL}, "id": "call-3"}],
                      response_metadata={"model_name": "fake-1-2026"})
    answer = AIMessage(f"Done, {EMAIL}", usage_metadata={"input_tokens": 200, "output_tokens": 20, "total_tokens": 220},
                       response_metadata={"model_name": "fake-1-2026", "cost_usd": 0.004})
    return ScriptedModel(script=[
        (calls, {"token_usage": {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130},
                 "model_name": "fake-1-2026", "cost_usd": 0.002}),
        (answer, {})])


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
def journal(store: Path, tmp_path: Path) -> Iterator[Journal]:
    j = Journal.create(store, key_dir=tmp_path / "keys", config=JournalConfig(seal_max_age_seconds=None))
    yield j
    j.close()


def config(*callbacks: BaseCallbackHandler, thread: str = "t1") -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "callbacks": list(callbacks)}


def of(events: list[Any], event_type: str) -> list[Any]:
    return [e for e in events if e.event_type == event_type]


def test_tool_and_model_calls_are_recorded_in_their_node(journal: Journal, store: Path, wj) -> None:  # noqa: ANN001
    roots = RootIds()
    out = react_graph(tool_turn()).invoke({"messages": [HumanMessage(f"refund for {EMAIL}?")]},
                                          config(RunRecorder(journal), roots))
    assert out["messages"][-1].content == f"Done, {EMAIL}"
    (execution_id,) = roots.ids
    events = journal.reader().events(execution_id)
    starts = {(e.node, e.step_id): e for e in of(events, "node_started")}
    assert sorted(starts) == [("agent", "1"), ("agent", "3"), ("tools", "2")]

    # the model: requested, completed (in clear: model, usage, cost and nothing else), its output (encrypted)
    requested, completed = of(events, "llm_requested"), of(events, "llm_completed")
    output = of(events, LLM_OUTPUT_EVENT)
    assert len(requested) == len(completed) == len(output) == 2
    for step, (ask, done, said) in zip(("1", "3"), zip(requested, completed, output, strict=True), strict=True):
        node_started = starts[("agent", step)]
        assert {(e.node, e.step_id, e.parent_event_id) for e in (ask, done, said)} == {
            ("agent", step, node_started.event_id)}
        assert ask.correlation_id == done.correlation_id == said.correlation_id
        assert ask.payload_key_id and said.payload_key_id and done.payload_key_id is None
        assert ask.payload["model"] == "fake-1"
    assert requested[0].payload["messages"][0][0]["content"] == f"refund for {EMAIL}?"
    assert completed[0].payload == {"model": "fake-1-2026", "cost_usd": 0.002,
                                    "usage": {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130}}
    assert completed[1].payload == {"model": "fake-1-2026", "cost_usd": 0.004,
                                    "usage": {"prompt_tokens": 200, "completion_tokens": 20, "total_tokens": 220}}
    assert [c["name"] for c in output[0].payload["generations"][0]["tool_calls"]] == ["search", "crm", "refuse"]
    assert output[1].payload == {"generations": [{"text": f"Done, {EMAIL}"}]}

    # the tools (run in parallel by ToolNode): called (encrypted), returned (in clear), output (encrypted)
    tools_started = starts[("tools", "2")]
    called = {e.payload["tool"]: e for e in of(events, "tool_called")}
    returned = {e.payload["tool"]: e for e in of(events, "tool_returned")}
    outputs = {e.correlation_id: e for e in of(events, TOOL_OUTPUT_EVENT)}
    assert sorted(called) == sorted(returned) == ["crm", "refuse", "search"] and len(outputs) == 3
    for name, call in called.items():
        assert (call.node, call.step_id, call.parent_event_id) == ("tools", "2", tools_started.event_id)
        assert call.payload_key_id and outputs[call.correlation_id].payload_key_id
        assert returned[name].correlation_id == call.correlation_id and returned[name].payload_key_id is None
    assert called["search"].payload == {"tool": "search", "input": {"q": "refunds"}, "tool_call_id": "call-1"}
    assert called["crm"].payload["input"] == {"user": EMAIL}
    assert returned["search"].payload == {"tool": "search", "tool_call_id": "call-1", "ok": True, "error": None}
    assert returned["crm"].payload == {"tool": "crm", "tool_call_id": "call-2", "ok": False, "error": "ValueError"}
    assert returned["refuse"].payload == {"tool": "refuse", "tool_call_id": "call-3", "ok": False,
                                          "error": TOOL_ERROR_STATUS}
    assert outputs[called["crm"].correlation_id].payload == {"error": "ValueError", "message": f"no customer {EMAIL}"}
    refused = outputs[called["refuse"].correlation_id].payload["output"]
    assert refused["content"] == f"{EMAIL} opted out" and refused["status"] == "error"
    assert outputs[called["search"].correlation_id].payload["output"]["content"] == "3 results for refunds"
    # the node that ran them ended after them
    tools_end = next(e for e in of(events, "node_completed") if e.node == "tools")
    assert all(e.seq < tools_end.seq for e in (*called.values(), *returned.values()))

    # what is in clear holds no personal data: the email is in no journal file
    journal.seal()
    assert journal.verify().ok
    assert not [p for p in store.rglob("*") if p.is_file() and EMAIL.encode() in p.read_bytes()]

    # stats count tools, errors, tokens and cost without the keys
    r = wj("stats", store, "--json")
    assert r.code == 0, r.err
    stats = json.loads(r.out)
    assert sorted(stats["tool_errors"], key=lambda row: row["tool"]) == [
        {"tool": "crm", "calls": 1, "errors": 1, "error_rate": 1.0},
        {"tool": "refuse", "calls": 1, "errors": 1, "error_rate": 1.0},
        {"tool": "search", "calls": 1, "errors": 0, "error_rate": 0.0}]
    (usage,) = stats["llm_usage"]
    assert (usage["model"], usage["calls"], usage["tokens"], usage["cost_usd"]) == ("fake-1-2026", 2, 350, 0.006)
    assert [(row["status"], row["runs"]) for row in stats["runs_per_day"]] == [("completed", 1)]
    r = wj("stats", store)
    assert r.code == 0 and "fake-1-2026" in r.out and "crm" in r.out and "0.006" in r.out


def test_a_model_that_fails_is_recorded(journal: Journal) -> None:
    model = ScriptedModel(script=[(RuntimeError(f"rate limited for {EMAIL}"), {}),
                                  (AIMessage("ok"), {})])

    def ask(state: MessagesState) -> dict[str, Any]:
        try:
            return {"messages": [model.invoke(state["messages"])]}
        except RuntimeError:
            return {"messages": [model.invoke(state["messages"])]}  # a retry inside the node

    g = StateGraph(MessagesState)
    g.add_node("ask", ask)
    g.add_edge(START, "ask")
    roots = RootIds()
    g.compile().invoke({"messages": [HumanMessage("hi")]}, config(RunRecorder(journal), roots))
    events = journal.reader().events(roots.ids[0])
    assert [e.event_type for e in events if e.node == "ask"] == [
        "node_started", "llm_requested", LLM_FAILED_EVENT, "llm_requested", "llm_completed", LLM_OUTPUT_EVENT,
        "node_completed", "state_updated"]
    (failed,) = of(events, LLM_FAILED_EVENT)
    assert failed.payload == {"model": "fake-1", "error": "RuntimeError", "message": f"rate limited for {EMAIL}"}
    assert failed.payload_key_id is not None
    # a model that reports neither usage nor cost: null, never made up
    assert of(events, "llm_completed")[0].payload == {"model": "fake-1", "usage": None, "cost_usd": None}


def test_a_tool_that_asks_a_human_is_a_pause_not_an_error(journal: Journal, store: Path, wj) -> None:  # noqa: ANN001
    @tool
    def pay(amount: int) -> str:
        """Pay, once a human agreed."""
        return f"paid {amount}" if interrupt({"question": f"pay {amount}?"}) == "yes" else "not paid"

    model = ScriptedModel(script=[(AIMessage("", tool_calls=[{"name": "pay", "args": {"amount": 5}, "id": "c-1"}]), {}),
                                  (AIMessage("paid"), {})])

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode([pay]))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition)
    g.add_edge("tools", "agent")
    graph, roots = g.compile(checkpointer=InMemorySaver()), RootIds()
    cfg = config(RunRecorder(journal), roots)
    graph.invoke({"messages": [HumanMessage("pay 5")]}, cfg)
    assert graph.invoke(Command(resume="yes"), cfg)["messages"][-1].content == "paid"
    events = journal.reader().events(roots.ids[0])
    paused, done = of(events, "tool_returned")  # the tool runs again on resume
    assert paused.payload == {"tool": "pay", "tool_call_id": "c-1", "ok": None, "error": None, "paused": True}
    assert done.payload == {"tool": "pay", "tool_call_id": "c-1", "ok": True, "error": None}
    journal.seal()
    tools = json.loads(wj("stats", store, "--json").out)["tool_errors"]
    assert tools == [{"tool": "pay", "calls": 2, "errors": 0, "error_rate": 0.0}]


def test_an_async_run_records_its_tool_and_model_calls(journal: Journal) -> None:
    roots = RootIds()
    out = asyncio.run(react_graph(tool_turn()).ainvoke({"messages": [HumanMessage("hi")]},
                                                       config(RunRecorder(journal), roots)))
    assert out["messages"][-1].content == f"Done, {EMAIL}"
    events = journal.reader().events(roots.ids[0])
    kinds = [e.event_type for e in events]
    assert kinds.count("tool_called") == kinds.count("tool_returned") == kinds.count(TOOL_OUTPUT_EVENT) == 3
    assert kinds.count("llm_requested") == kinds.count("llm_completed") == 2
    assert sorted(e.payload["ok"] for e in of(events, "tool_returned")) == [False, False, True]
    tools_start = next(e for e in of(events, "node_started") if e.node == "tools")
    assert all(e.parent_event_id == tools_start.event_id for e in of(events, "tool_called"))


class Fan(TypedDict, total=False):
    items: list[str]
    done: Annotated[list[str], operator.add]


def test_each_send_worker_is_its_own_step(journal: Journal, store: Path) -> None:
    def worker(state: dict[str, Any]) -> Fan:
        search.invoke({"q": state["item"]})  # a tool called inside the worker belongs to that worker
        return {"done": [state["item"]]}

    g = StateGraph(Fan)
    g.add_node("plan", lambda s: {})
    g.add_node("worker", worker)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", lambda s: [Send("worker", {"item": i}) for i in s["items"]])
    g.add_edge("worker", END)
    roots = RootIds()
    out = g.compile().invoke({"items": ["a", "b", "c"]}, config(RunRecorder(journal), roots))
    assert sorted(out["done"]) == ["a", "b", "c"]
    events = journal.reader().events(roots.ids[0])
    workers = [e for e in of(events, "node_started") if e.node == "worker"]
    assert sorted(e.step_id for e in workers) == ["2.0", "2.1", "2.2"]
    by_start = {e.event_id: e for e in workers}
    ends = [e for e in of(events, "node_completed") if e.node == "worker"]
    assert sorted(by_start[e.parent_event_id].step_id for e in ends) == ["2.0", "2.1", "2.2"]
    for e in ends:
        assert e.step_id == by_start[e.parent_event_id].step_id
    queries = {by_start[e.parent_event_id].step_id: e.payload["input"]["q"] for e in of(events, "tool_called")}
    updates = {by_start[e.parent_event_id].step_id: e.payload["update"]["done"][0] for e in ends}
    assert queries == updates and sorted(queries.values()) == ["a", "b", "c"]
    journal.seal()
    durations = analytics.stats(analytics.connect(store))["node_durations"].to_pylist()
    assert {r["node"]: r["runs"] for r in durations} == {"plan": 1, "worker": 3}


class Claim(TypedDict, total=False):
    amount: int
    log: Annotated[list[str], operator.add]


def claim_graph(pause: bool = False, checkpointer: Any = None) -> Any:
    def approve(state: Claim) -> Claim:
        if pause:
            interrupt({"question": f"pay {state['amount']}?"})
        return {"log": ["approved"]}

    g = StateGraph(Claim)
    g.add_node("assess", lambda s: {"amount": 1200, "log": ["assessed"]})
    g.add_node("approve", approve)
    g.add_edge(START, "assess")
    g.add_edge("assess", "approve")
    g.add_edge("approve", END)
    return g.compile(checkpointer=checkpointer if checkpointer is not None else InMemorySaver())


def test_a_call_from_an_updated_past_checkpoint_is_a_fork(journal: Journal) -> None:
    graph, roots = claim_graph(), RootIds()
    recorder = RunRecorder(journal)
    graph.invoke({"log": []}, config(recorder, roots))
    after_assess = next(s.config for s in graph.get_state_history(config()) if s.next == ("approve",))
    forked = graph.update_state(after_assess, {"amount": 900})
    out = graph.invoke(None, {**forked, "callbacks": [recorder, roots]})
    assert out["amount"] == 900
    first, second = roots.ids
    original = journal.reader().events(first)
    assert original[-1].event_type == "execution_completed" and "forked_from" not in original[0].payload
    fork = journal.reader().events(second)
    assert [(e.event_type, e.node) for e in fork if e.event_type != "state_updated"] == [
        ("execution_started", None), ("node_started", "approve"), ("node_completed", "approve"),
        ("execution_completed", None)]
    assert fork[0].payload == {"inputs": None, "forked_from": forked["configurable"]["checkpoint_id"]}
    assert fork[0].thread_id == original[0].thread_id == "t1"


def test_continuing_a_paused_run_from_the_human_s_checkpoint_names_it(journal: Journal) -> None:
    graph, roots = claim_graph(pause=True), RootIds()
    recorder = RunRecorder(journal)
    graph.invoke({"log": []}, config(recorder, roots))
    changed = recorder.record_human_change(graph, config(), {"amount": 950}, by="adjuster-3")
    out = graph.invoke(Command(resume="yes"), {**changed, "callbacks": [recorder, roots]})
    assert out["amount"] == 950
    events = journal.reader().events(roots.ids[0])
    (resumed,) = of(events, "execution_resumed")
    assert resumed.payload["forked_from"] == changed["configurable"]["checkpoint_id"]
    assert resumed.payload["resumed_by"] == roots.ids[1] and events[-1].event_type == "execution_completed"


def test_a_lenient_recorder_names_the_run_and_thread_of_what_it_could_not_record(
        journal: Journal, caplog: pytest.LogCaptureFixture) -> None:
    roots = RootIds()
    with caplog.at_level(logging.WARNING, logger=CAPTURE_LOGGER):  # the journal refuses "acme/eu" as a tenant id
        out = react_graph(tool_turn()).invoke({"messages": [HumanMessage("hi")]},
                                              config(RunRecorder(journal, tenant_id="acme/eu", strict=False), roots,
                                                     thread="t-9"))
    assert out["messages"][-1].content == f"Done, {EMAIL}"
    logged = [r for r in caplog.records if r.name == CAPTURE_LOGGER]
    assert logged and all(r.levelno == logging.WARNING and isinstance(r.exc_info[1], ValidationError)  # type: ignore[index]
                          for r in logged)
    assert all(roots.ids[0] in r.getMessage() and "thread t-9" in r.getMessage() for r in logged)
    lost = " ".join(r.getMessage() for r in logged)
    assert all(kind in lost for kind in ("execution_started", "tool_called", "tool_returned", "llm_completed",
                                         "execution_completed"))
    assert journal.reader().thread_events("t-9") == []

    with pytest.raises(ValidationError):  # strict: the run fails before its first node
        react_graph(tool_turn()).invoke({"messages": [HumanMessage("hi")]},
                                        config(RunRecorder(journal, tenant_id="acme/eu"), thread="t-9"))


class Broken(RunRecorder):
    """A recorder whose model-call recording fails (not the journal): a bug must not pass unseen either."""

    def _llm_start(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("recorder bug")


def test_a_recorder_failure_is_logged_or_raised(journal: Journal, caplog: pytest.LogCaptureFixture) -> None:
    roots = RootIds()
    with caplog.at_level(logging.WARNING, logger=CAPTURE_LOGGER):
        react_graph(tool_turn()).invoke({"messages": [HumanMessage("hi")]},
                                        config(Broken(journal, strict=False), roots, thread="t-5"))
    (first, second) = [r for r in caplog.records if r.name == CAPTURE_LOGGER]
    assert "on_chat_model_start" in first.getMessage() and f"execution {roots.ids[0]}" in first.getMessage()
    assert "thread t-5" in first.getMessage() and isinstance(first.exc_info[1], RuntimeError)  # type: ignore[index]
    assert of(journal.reader().events(roots.ids[0]), "tool_called")  # the rest is recorded
    with pytest.raises(RuntimeError, match="recorder bug"):
        react_graph(tool_turn()).invoke({"messages": [HumanMessage("hi")]}, config(Broken(journal), thread="t-6"))


def test_saver_only_executions_are_no_open_runs_in_stats(journal: Journal, store: Path, wj) -> None:  # noqa: ANN001
    """JournalSaver writes checkpoints under their LangGraph run id, and update_state's under the thread's own
    execution (``langgraph-thread-<id>``, checkpoints only). Only the recorder's run is a run."""
    graph, roots = claim_graph(pause=True, checkpointer=JournalSaver(journal)), RootIds()
    recorder = RunRecorder(journal)
    graph.invoke({"log": []}, config(recorder, roots))
    journal.seal()
    stats = json.loads(wj("stats", store, "--json").out)
    assert [(row["status"], row["runs"]) for row in stats["runs_per_day"]] == [("paused", 1)]
    assert [row["execution_id"] for row in stats["waiting_on_human"]] == [roots.ids[0]]

    recorder.record_human_change(graph, config(), {"amount": 950}, by="adjuster-3")
    graph.invoke(Command(resume="yes"), config(recorder, roots))
    journal.seal()
    executions = {e.execution_id for e in journal.reader().thread_events("t1")}
    assert executions == {roots.ids[0], "langgraph-thread-t1"}  # the human's change: a checkpoint without a run
    stats = json.loads(wj("stats", store, "--json").out)
    assert [(row["status"], row["runs"]) for row in stats["runs_per_day"]] == [("completed", 1)]
    assert stats["waiting_on_human"] == []
