"""A LangGraph worker process for the multi-worker tests: serves requests on its own stream of one journal.

Run as ``python tests/langgraph_worker_child.py --store S --keys K --stream worker-N [--sqlite FILE]`` with the
repository root on PYTHONPATH. It opens (or creates, racing the other workers) the journal with
``Journal.open_or_create``, prints ``READY <journal id>``, then answers one JSON request per line of stdin
with one line ``ANSWER <json>`` on stdout (anything else it prints is to be passed over):

- ``{"op": "turn", "saver": S, "thread": T, "text": X}``: invoke the graph with the user message X, answer its
  output;
- ``{"op": "state", "saver": S, "thread": T}``: the thread as the saver reads it (``summary``);
- ``{"op": "delete", "saver": S, "thread": T}``: ``delete_thread``;
- ``{"op": "step", "saver": S, "thread": T, "name": N, "arg": A}``: a step of the realistic conversation
  (``langgraph_scenario.step``);
- ``{"op": "seal"}``; ``{"op": "quit"}`` (closes the journal, sealing).

``S`` is ``journal`` (this process's one JournalSaver), ``request`` (a new JournalSaver for each request, as
LangGraph's server makes them) or ``archiving`` (``ArchivingSaver`` around a SqliteSaver on ``--sqlite``, a
file every worker shares). A request that fails is answered ``{"error": "..."}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import operator
import sqlite3
import sys
import traceback
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypedDict

import langgraph_scenario
from langgraph.graph import END, START, StateGraph

from wormjournal.integrations.langgraph import ArchivingSaver, JournalSaver
from wormjournal.journal import Journal, JournalConfig

# Seals in the appending thread every few dozen events: the other workers read this stream while it is sealed.
CONFIG = JournalConfig(seal_max_age_seconds=None, seal_max_events=40, seal_worker=False)


class Chat(TypedDict, total=False):
    messages: Annotated[list[str], operator.add]
    count: int


def build(saver: Any) -> Any:
    """Two steps a turn: the user's message is answered, then counted."""

    def answer(s: Chat) -> Chat:
        return {"messages": [f"echo {s['messages'][-1]} ({len(s['messages'])})"]}

    def count(s: Chat) -> Chat:
        return {"count": s.get("count", 0) + 1}

    g = StateGraph(Chat)
    g.add_node("answer", answer)
    g.add_node("count", count)
    g.add_edge(START, "answer")
    g.add_edge("answer", "count")
    g.add_edge("count", END)
    return g.compile(checkpointer=saver)


def summary(saver: Any, thread: str) -> dict[str, Any]:
    """A thread as a saver holds it, ids left out: its latest values and every checkpoint ``list`` gives (newest
    first) as step, source, values and pending writes."""
    config = {"configurable": {"thread_id": thread}}
    latest = saver.get_tuple(config)
    listed = [[t.metadata.get("step"), t.metadata.get("source"), t.checkpoint["channel_values"],
               sorted([channel, value] for _, channel, value in t.pending_writes or [])]
              for t in saver.list(config)]
    return {"values": latest.checkpoint["channel_values"] if latest else None, "list": listed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--keys", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--sqlite")
    args = parser.parse_args()
    journal = Journal.open_or_create(args.store, key_dir=args.keys, stream=args.stream, config=CONFIG)
    savers: dict[str, Any] = {"journal": JournalSaver(journal)}
    if args.sqlite:
        from langgraph.checkpoint.sqlite import SqliteSaver

        inner = SqliteSaver(sqlite3.connect(args.sqlite, check_same_thread=False, timeout=30))
        inner.setup()
        savers["archiving"] = ArchivingSaver(inner, journal)

        @contextlib.asynccontextmanager
        async def open_async() -> AsyncIterator[ArchivingSaver]:  # the async methods: around an AsyncSqliteSaver
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            async with AsyncSqliteSaver.from_conn_string(args.sqlite) as inner_async:
                yield ArchivingSaver(inner_async, journal)
    print(f"READY {journal.journal_id}", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        try:
            if op == "quit":
                journal.close(seal=True)
                answer: Any = {"ok": True}
            elif op == "seal":
                journal.seal()
                answer = {"ok": True}
            else:
                kind = request["saver"]
                saver = JournalSaver(journal) if kind == "request" else savers[kind]
                thread = request["thread"]
                if op == "turn":
                    answer = build(saver).invoke({"messages": [request["text"]]},
                                                 {"configurable": {"thread_id": thread}})
                elif op == "state":
                    answer = summary(saver, thread)
                elif op == "step":  # a step of the realistic conversation (langgraph_scenario.py)
                    answer = langgraph_scenario.step(saver, thread, request["name"], request.get("arg"),
                                                     open_async=open_async if kind == "archiving" else None)
                elif op == "delete":
                    saver.delete_thread(thread)
                    answer = {"ok": True}
                else:
                    answer = {"error": f"unknown op {op!r}"}
        except Exception:  # noqa: BLE001 - reported to the test
            answer = {"error": traceback.format_exc()}
        print("ANSWER " + json.dumps(answer), flush=True)
        if op == "quit":
            return


if __name__ == "__main__":
    main()
