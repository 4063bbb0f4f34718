"""A realistic LangGraph graph and the steps of one conversation with it, for the multi-worker acceptance test.

The graph: a ReAct loop (an agent whose scripted chat model asks for tools, a ``ToolNode``), a ``Send`` fan-out to
three workers, and a review subgraph that calls ``interrupt``; the state holds a large document, the messages
(``add_messages``) and the workers' notes (``operator.add``). :func:`step` runs one step of a conversation on a
thread (a first question that ends paused in the review, the resume, a fork from an earlier checkpoint, a turn
streamed with ``astream``, a plain turn) and answers what LangGraph reports, ids left out, so that any saver and any
process give the same answer. Used by ``langgraph_worker_child.py`` and ``test_langgraph_realistic.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, Send, interrupt


class State(TypedDict, total=False):
    document: str
    messages: Annotated[list[AnyMessage], add_messages]
    notes: Annotated[list[str], operator.add]
    verdict: str


@tool
def lookup(query: str) -> str:
    """Look a query up in the document."""
    return f"found {query!r}: " + "passage " * 200


@tool
def count_words(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


def agent(s: State) -> dict[str, Any]:
    """A scripted model: two rounds of tool calls per question, then an answer."""
    asked = sum(1 for m in s["messages"] if isinstance(m, HumanMessage))
    since = 0
    for m in reversed(s["messages"]):
        if isinstance(m, HumanMessage):
            break
        since += isinstance(m, AIMessage)
    if since < 2:
        n = f"{asked}-{since}"
        calls = [{"name": "lookup", "args": {"query": f"q{n}"}, "id": f"call-lookup-{n}"},
                 {"name": "count_words", "args": {"text": f"how many words in {n}"}, "id": f"call-count-{n}"}]
        return {"messages": [AIMessage(content="", tool_calls=calls, id=f"ai-{n}")]}
    return {"messages": [AIMessage(content=f"answer {asked} over {len(s['document'])} bytes", id=f"ai-{asked}")]}


def route(s: State) -> str:
    last = s["messages"][-1]
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else "fan_out"


def fan_out(s: State) -> list[Send]:
    return [Send("summarize", {"part": i, "of": len(s["messages"])}) for i in range(3)]


def summarize(task: dict[str, Any]) -> dict[str, Any]:
    return {"notes": [f"part {task['part']} of {task['of']} messages"]}


class Review(TypedDict, total=False):
    notes: list[str]
    verdict: str


def build_review() -> Any:
    def ask(r: Review) -> dict[str, Any]:
        answer = interrupt({"question": "publish?", "notes": len(r.get("notes", []))})
        return {"verdict": f"{answer} after {len(r.get('notes', []))} notes"}

    g = StateGraph(Review)
    g.add_node("ask", ask)
    g.add_edge(START, "ask")
    g.add_edge("ask", END)
    return g.compile()


def build(checkpointer: Any) -> Any:
    g = StateGraph(State)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode([lookup, count_words]))
    g.add_node("summarize", summarize)
    g.add_node("gather", lambda s: {})
    g.add_node("review", build_review())
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", route, {"tools": "tools", "fan_out": "fan_out_marker"})
    g.add_node("fan_out_marker", lambda s: {})
    g.add_conditional_edges("fan_out_marker", fan_out, ["summarize"])
    g.add_edge("tools", "agent")
    g.add_edge("summarize", "gather")
    g.add_edge("gather", "review")
    g.add_edge("review", END)
    return g.compile(checkpointer=checkpointer)


def plain(value: Any) -> Any:
    """LangGraph's answer as plain data, without what is random (message, interrupt and checkpoint ids)."""
    if isinstance(value, BaseMessage):
        calls = [(c["name"], c["args"]) for c in getattr(value, "tool_calls", [])]
        return [value.type, value.content, calls]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != "__interrupt__"} | (
            {"__interrupt__": [i.value for i in value["__interrupt__"]]} if "__interrupt__" in value else {})
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def state_of(graph: Any, config: dict[str, Any]) -> dict[str, Any]:
    snapshot = graph.get_state(config, subgraphs=True)
    history = [[h.metadata.get("source"), h.metadata.get("step"), list(h.next), len(h.values.get("messages", [])),
                len(h.values.get("notes", []))] for h in graph.get_state_history(config)]
    return {"values": plain(snapshot.values), "next": list(snapshot.next),
            "interrupts": [i.value for t in snapshot.tasks for i in t.interrupts], "history": history}


def document(seed: int, size: int) -> str:
    """A document of ``size`` characters that compresses poorly (a large state is stored apart: FORMAT.md 3.5)."""
    return random.Random(seed).randbytes(size // 2).hex()


STEPS: list[tuple[str, Any]] = [
    ("ask", {"seed": 7, "size": 5_000_000, "text": "what is in it?"}), ("resume", "yes"),
    ("turn", {"text": "and then?", "id": "q1"}), ("resume", "no"), ("fork", None), ("resume", "maybe"),
    ("stream", {"text": "streamed?", "id": "q2"}), ("resume", "yes"), ("state", None),
]  # a conversation: each step may run in another process


def step(saver: Any, thread: str, name: str, arg: Any = None, *,
         open_async: Callable[[], AbstractAsyncContextManager[Any]] | None = None) -> Any:
    """One step of a conversation on ``thread`` (see the module's docstring); answers plain data. ``open_async``
    opens the saver the streamed step uses, for a saver whose async methods need one of their own (an
    ArchivingSaver around an AsyncSqliteSaver, where the others use a SqliteSaver)."""
    graph = build(saver)
    config: dict[str, Any] = {"configurable": {"thread_id": thread}}
    if name == "ask":  # a first question with the document: the loop, the fan-out, then paused in review
        text = document(arg["seed"], arg["size"])
        return plain(graph.invoke({"document": text, "messages": [HumanMessage(arg["text"], id="q0")]}, config))
    if name == "resume":
        return plain(graph.invoke(Command(resume=arg), config))
    if name == "turn":  # another question: the loop again, paused in review again
        return plain(graph.invoke({"messages": [HumanMessage(arg["text"], id=arg["id"])]}, config))
    if name == "fork":  # run again from the checkpoint before the fan-out of the first question, edited
        history = list(graph.get_state_history(config))
        before = next(h for h in reversed(history) if h.next == ("fan_out_marker",))
        forked = graph.update_state(before.config, {"messages": [HumanMessage("a human's aside", id="aside")]})
        return plain(graph.invoke(None, forked))
    if name == "stream":  # a question streamed asynchronously, its updates as they come
        async def run() -> list[Any]:
            async with (open_async() if open_async is not None else contextlib.nullcontext(saver)) as s:
                return [plain(chunk) async for chunk in build(s).astream(
                    {"messages": [HumanMessage(arg["text"], id=arg["id"])]}, config, stream_mode="updates")]

        return asyncio.run(run())
    if name == "state":
        return state_of(graph, config)
    raise ValueError(f"unknown step {name!r}")
