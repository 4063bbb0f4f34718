"""Recovering LangGraph runs from the journal: a subscription reroutes a failed run and resumes a rejected one.

Two refund orders run through a small LangGraph graph, checkpointed by ``JournalSaver`` and recorded by
``RunRecorder`` on one journal. Order ``A-1`` reaches a human review and pauses; the human rejects it. Order
``B-2``'s price lookup tool fails, so its run fails. A ``Subscription`` on ``tool_returned`` and
``human_rejected`` then fixes both from the journal alone: it reroutes ``B-2`` to a fallback node and resumes
``A-1`` down its "rejected" branch, through the same ``JournalSaver``.

Run it: ``python examples/langgraph_recovery.py [an empty directory]`` (needs ``wormjournal[langgraph]``).
"""

from __future__ import annotations

import operator
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from wormjournal import Event, EventFilter, Journal, Subscription
from wormjournal.integrations.langgraph import JournalSaver, RunRecorder

PRICES = {"A-1": 40}  # what the price service knows: B-2 is missing
ESTIMATE = 25  # the fallback's price


class Order(TypedDict, total=False):
    order: str
    price: int
    route: str  # where the run goes after the quote: "review", or "fallback" once rerouted
    decision: str  # the human's answer at the review: "approved" or "rejected"
    log: Annotated[list[str], operator.add]  # each node adds a line


@tool
def price_lookup(order: str) -> int:
    """The order's price, from the price service."""
    if order not in PRICES:
        raise LookupError(f"no price for {order}")
    return PRICES[order]


def build_graph(saver: JournalSaver) -> Any:
    """quote -> review (a human approves or rejects) -> refund | decline; a rerouted quote goes to fallback."""

    def quote(s: Order) -> Order:
        # A tool called in a node: RunRecorder writes tool_called, then tool_returned (ok false if it raises).
        return {"price": price_lookup.invoke({"order": s["order"]}), "route": "review", "log": ["quoted"]}

    def fallback(s: Order) -> Order:
        return {"price": ESTIMATE, "log": [f"fallback: estimated {ESTIMATE}"]}

    def review(s: Order) -> Order:
        answer = interrupt({"question": f"refund {s['price']} for {s['order']}?"})  # pauses the run
        return {"decision": answer, "log": [f"review: {answer}"]}

    def refund(s: Order) -> Order:
        return {"log": ["refunded"]}

    def decline(s: Order) -> Order:
        return {"log": ["declined"]}

    g = StateGraph(Order)
    g.add_node("quote", quote)
    g.add_node("fallback", fallback)
    g.add_node("review", review)
    g.add_node("refund", refund)
    g.add_node("decline", decline)
    g.add_edge(START, "quote")
    g.add_conditional_edges("quote", lambda s: s["route"], ["review", "fallback"])
    g.add_conditional_edges("review", lambda s: "refund" if s["decision"] == "approved" else "decline")
    for name in ("fallback", "refund", "decline"):
        g.add_edge(name, END)
    return g.compile(checkpointer=saver)


def config(thread_id: str, recorder: RunRecorder) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}, "callbacks": [recorder]}


def start_orders(graph: Any, recorder: RunRecorder) -> None:
    """A-1 pauses at its review and a human rejects it; B-2 fails in its price lookup."""
    graph.invoke({"order": "A-1", "log": []}, config("A-1", recorder))  # returns paused, at "review"
    recorder.record_human_decision(config("A-1", recorder), approved=False, by="ops-lead", comment="sale item")
    try:
        graph.invoke({"order": "B-2", "log": []}, config("B-2", recorder))
    except LookupError:
        pass  # the run failed; the journal keeps its last checkpoint, before "quote"


def make_handler(graph: Any, recorder: RunRecorder, seen: list[Event]) -> Callable[[Event], None]:
    """What the subscription runs on each tool_returned and human_rejected event."""

    def handle(event: Event) -> None:
        seen.append(event)
        if event.thread_id is None:
            return
        cfg = config(event.thread_id, recorder)
        # Events come at least once (again after a crash): act only while the thread still waits where it stopped.
        waiting = graph.get_state(cfg).next
        if event.event_type == "tool_returned" and event.payload.get("ok") is False and waiting == ("quote",):
            # Reroute: save a checkpoint as if "quote" had chosen the fallback route, then run on from it.
            graph.update_state(cfg, {"route": "fallback", "log": [f"rerouted after {event.payload['error']}"]},
                               as_node="quote")
            graph.invoke(None, cfg)
        elif event.event_type == "human_rejected" and waiting == ("review",):
            graph.invoke(Command(resume="rejected"), cfg)  # the review node returns "rejected": the decline branch

    return handle


def recover(journal: Journal, graph: Any, recorder: RunRecorder, *, name: str = "recovery",
            timeout: float = 0.5) -> list[Event]:
    """Hand the journal's tool results and rejections to the handler until none comes for ``timeout`` seconds (a
    service would call ``sub.run()`` in its own process, forever); returns the events the handler saw."""
    seen: list[Event] = []
    wanted = EventFilter.of(["tool_returned", "human_rejected"])
    # Its cursor, saved in the journal's WAL directory, makes a restarted subscription go on where it stopped.
    with Subscription(name, journal.reader(), make_handler(graph, recorder, seen), wanted, failures=journal) as sub:
        sub.run(timeout=timeout)
    return seen


def main(directory: str | Path) -> dict[str, dict[str, Any]]:
    """Run both orders, recover them from the journal; returns each thread's final state."""
    directory = Path(directory)
    # One journal (a local directory; its signing and data keys beside it) holds the checkpoints and the run history.
    with Journal.create(directory / "journal", key_dir=directory / "keys") as journal:
        graph, recorder = build_graph(JournalSaver(journal)), RunRecorder(journal)
        start_orders(graph, recorder)  # A-1 paused and rejected, B-2 failed
        recover(journal, graph, recorder)  # the subscription reroutes B-2 and resumes A-1
        final = {t: graph.get_state(config(t, recorder)).values for t in ("A-1", "B-2")}
        journal.seal()  # sign what was appended, then check the whole journal
        verified = journal.verify().ok
    for thread, values in final.items():
        print(f"{thread}: {' -> '.join(values['log'])}")
    print(f"journal verified: {verified}")
    return final


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(tmp)
