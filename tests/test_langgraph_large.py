"""LangGraph states of any size: a 2 MB state and a conversation that grows 20 KB a turn, under JournalSaver and
ArchivingSaver, give what the in-memory saver gives; checkpoints are binary (FORMAT.md 3.4, no base64) and large
ones are stored apart (3.5); a thread written in the savers' earlier JSON form still reads.
"""

from __future__ import annotations

import base64
import operator
import os
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langgraph")

from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402

from wormjournal import Journal, JournalConfig, verify_store  # noqa: E402
from wormjournal.integrations.langgraph import (  # noqa: E402
    ArchivingSaver,
    JournalSaver,
    codec,  # noqa: E402
)
from wormjournal.integrations.langgraph import saver as saver_module  # noqa: E402

CONFIG = JournalConfig(seal_max_age_seconds=None, seal_worker=False)
TURNS = 45  # past the 39th turn, where a 1 MiB event limit with base64 ended such a chat


class Chat(TypedDict, total=False):
    document: str
    messages: Annotated[list[dict[str, Any]], operator.add]
    turns: int


def build(checkpointer: Any) -> Any:
    def retrieve(s: Chat) -> Chat:
        n = s.get("turns", 0)
        chunk = base64.b64encode(n.to_bytes(4, "big") * 3750).decode()  # 20 KB of tool output each turn
        return {"messages": [{"role": "tool", "content": chunk}], "turns": n + 1}

    def answer(s: Chat) -> Chat:
        return {"messages": [{"role": "assistant", "content": f"answer {s['turns']} of {len(s['document'])}"}]}

    g = StateGraph(Chat)
    g.add_node("retrieve", retrieve)
    g.add_node("answer", answer)
    g.add_edge(START, "retrieve")
    g.add_edge("retrieve", "answer")
    g.add_edge("answer", END)
    return g.compile(checkpointer=checkpointer)


def run(checkpointer: Any, document: str, turns: int = TURNS) -> tuple[Any, list[Any]]:
    graph = build(checkpointer)
    config = {"configurable": {"thread_id": "retrieval-chat"}}
    graph.invoke({"document": document, "messages": [{"role": "user", "content": "hello"}]}, config)
    for k in range(1, turns):
        graph.invoke({"messages": [{"role": "user", "content": f"question {k}"}]}, config)
    history = [(s.metadata.get("step"), s.next) for s in graph.get_state_history(config)]
    return graph.get_state(config).values, history


@pytest.fixture(scope="module")
def document() -> str:
    return os.urandom(1_000_000).hex()  # a 2 MB state that does not compress below the inline limit (5 MB: the
    # realistic graph of test_langgraph_workers.py)


@pytest.fixture(scope="module")
def expected(document: str) -> tuple[Any, list[Any]]:
    return run(InMemorySaver(), document)


@pytest.mark.parametrize("kind", ["journal", "archiving"])
def test_a_large_state_and_a_growing_chat_equal_the_in_memory_saver(
        kind: str, tmp_path: Path, document: str, expected: tuple[Any, list[Any]]) -> None:
    with Journal.create(tmp_path / "store", key_dir=tmp_path / "keys", config=CONFIG) as journal:
        # The in-memory inner saver: SqliteSaver writes the whole message list at every put (LangGraph's way), which
        # takes it 9 of the 11 seconds of this chat, the journal 2.
        saver = JournalSaver(journal) if kind == "journal" else ArchivingSaver(InMemorySaver(), journal)
        assert run(saver, document) == expected
        events = journal.reader().thread_events("retrieval-chat")
        checkpoints = [e for e in events if e.event_type == codec.CHECKPOINT_EVENT]
        assert checkpoints and all(e.payload_codec.startswith("bytes") for e in checkpoints)  # binary, no base64
        assert any(e.payload_codec.endswith("+ref") for e in checkpoints)  # the document, stored apart
        journal.seal()
        assert verify_store(tmp_path / "store").ok
        if kind == "journal":  # a fresh saver reads it all back from the sealed journal
            assert build(JournalSaver(journal)).get_state(
                {"configurable": {"thread_id": "retrieval-chat"}}).values == expected[0]


def _old_checkpoint_payload(ns: str, cid: str, saved: codec.Saved, blobs: Any, step: Any, source: Any,
                            thread_id: str) -> dict[str, Any]:
    """The savers' JSON form of FORMAT.md 3.4 before version 4: typed values as [type, base64]."""
    def pack(typed: Any) -> list[str]:
        return [typed[0], base64.b64encode(typed[1]).decode()]

    return {"kind": "checkpoint", "checkpoint_ns": ns, "checkpoint_id": cid, "parent_checkpoint_id": saved.parent,
            "run_id": saved.run_id, "step": step, "source": source, "checkpoint": pack(saved.checkpoint),
            "metadata": pack(saved.metadata),
            "blobs": {ch: [version, *(pack(v) if v is not None else ["empty", ""])]
                      for ch, (version, v) in blobs.items()}}


def _old_writes_payload(ns: str, cid: str, task_id: str, task_path: str, writes: Any) -> dict[str, Any]:
    return {"kind": "writes", "checkpoint_ns": ns, "checkpoint_id": cid, "task_id": task_id, "task_path": task_path,
            "writes": [[idx, channel, value[0], base64.b64encode(value[1]).decode()] for idx, channel, value in writes]}


def test_a_thread_written_in_the_earlier_json_form_still_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document = "a small document"
    want = run(InMemorySaver(), document, turns=6)
    with Journal.create(tmp_path / "store", key_dir=tmp_path / "keys", config=CONFIG) as journal:
        with monkeypatch.context() as m:
            m.setattr(codec, "checkpoint_payload", _old_checkpoint_payload)
            m.setattr(saver_module, "writes_payload", _old_writes_payload)
            run(JournalSaver(journal), document, turns=3)
        events = journal.reader().thread_events("retrieval-chat")
        assert {e.payload_codec.split("+")[0] for e in events} == {"json"}  # written as before version 4
        graph = build(JournalSaver(journal))  # a new saver reads the old form, and goes on in the new one
        config = {"configurable": {"thread_id": "retrieval-chat"}}
        for k in range(3, 6):
            graph.invoke({"messages": [{"role": "user", "content": f"question {k}"}]}, config)
        assert graph.get_state(config).values == want[0]
        assert [(s.metadata.get("step"), s.next) for s in graph.get_state_history(config)] == want[1]
        assert journal.reader().state_at("retrieval-chat") == want[0]  # the auditor's reader reads both forms too
