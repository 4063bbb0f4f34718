"""``state_at`` of a LangGraph run is the state LangGraph had: its checkpoint, reducers applied.

Real graphs with ``add_messages`` and ``operator.add`` reducers, ten turns, under JournalSaver and
under ArchivingSaver(InMemorySaver): the reader's state of the thread (and of each recorded run)
equals ``graph.get_state``, and at an earlier seq that of the checkpoint then
(``get_state_history``); the CLI says which way the state was obtained; a deleted thread says
shredded; a plain execution still folds; and stored bytes naming modules and constructors are
read as plain descriptions, never imported or called.
"""

from __future__ import annotations

import base64
import json
import operator
import os
import sys
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langgraph")

import ormsgpack  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.graph.message import add_messages  # noqa: E402
from langgraph.types import Command, interrupt  # noqa: E402

from wormjournal.cli import main  # noqa: E402
from wormjournal.errors import NotFoundError  # noqa: E402
from wormjournal.index import Reader  # noqa: E402
from wormjournal.index.lgstate import SOURCE_CHECKPOINT, SOURCE_FOLD  # noqa: E402
from wormjournal.index.lgvalues import decode_msgpack, decode_typed, is_undecoded  # noqa: E402
from wormjournal.index.state import fold  # noqa: E402
from wormjournal.integrations.langgraph import ArchivingSaver, JournalSaver, RunRecorder  # noqa: E402
from wormjournal.journal import Journal, JournalConfig  # noqa: E402

NO_AGE = JournalConfig(seal_max_age_seconds=None)
TURNS = 10


class Chat(TypedDict, total=False):
    messages: Annotated[list[BaseMessage], add_messages]
    log: Annotated[list[str], operator.add]
    turns: int


def chat_graph(saver: Any) -> Any:
    def answer(s: Chat) -> Chat:
        question = s["messages"][-1]
        n = s.get("turns", 0) + 1
        return {"messages": [AIMessage(f"answer to {question.content}", id=f"a{n}")], "log": [f"turn {n}"],
                "turns": n}

    g = StateGraph(Chat)
    g.add_node("answer", answer)
    g.add_edge(START, "answer")
    g.add_edge("answer", END)
    return g.compile(checkpointer=saver)


def make_saver(kind: str, journal: Journal) -> Any:
    return JournalSaver(journal) if kind == "journal" else ArchivingSaver(InMemorySaver(), journal)


def plain(value: Any) -> Any:
    """LangGraph's values as the reader gives them: a message as its type and fields."""
    if isinstance(value, BaseMessage):
        return {"$type": f"{type(value).__module__}.{type(value).__name__}", **value.model_dump()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def same_state(ours: dict[str, Any], langgraph: dict[str, Any]) -> bool:
    """The reader's state is LangGraph's: a reducer channel never written is not in the checkpoint (LangGraph
    shows its empty default, such as [])."""
    unwritten = {k: v for k, v in langgraph.items() if k not in ours}
    return all(v in ([], {}) for v in unwritten.values()) and ours == plain(
        {k: v for k, v in langgraph.items() if k in ours})


def checkpoint_seq(reader: Reader, thread: str, checkpoint_id: str) -> int:
    [seq] = [e.seq for e in reader.thread_events(thread)
             if e.event_type == "checkpoint_saved" and e.step_id == checkpoint_id]
    return seq


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "journal", tmp_path / "keys"


def ten_turns(journal: Journal, kind: str, thread: str = "chat-1") -> tuple[Any, dict[str, Any], list[str]]:
    """Ten turns of one thread, each run recorded; returns the graph, the config and the runs' executions."""
    graph = chat_graph(make_saver(kind, journal))
    recorder = RunRecorder(journal)
    config = {"configurable": {"thread_id": thread}, "callbacks": [recorder]}
    for i in range(1, TURNS + 1):
        graph.invoke({"messages": [HumanMessage(f"question {i}", id=f"q{i}")]}, config)
    reader = journal.reader()
    runs = [e.execution_id for e in reader.thread_events(thread) if e.event_type == "execution_started"]
    assert len(runs) == TURNS
    return graph, config, runs


@pytest.mark.parametrize("kind", ["journal", "archiving"])
def test_state_at_is_the_state_langgraph_has(paths: tuple[Path, Path], kind: str) -> None:
    with Journal.create(paths[0], key_dir=paths[1], config=NO_AGE) as journal:
        graph, config, runs = ten_turns(journal, kind)
        expected = graph.get_state(config)
        assert len(expected.values["messages"]) == 2 * TURNS
        reader = journal.reader()

        got = reader.state("chat-1")
        assert got.source == SOURCE_CHECKPOINT and got.thread_id == "chat-1" and got.checkpoint_ns == ""
        assert got.checkpoint_id == expected.config["configurable"]["checkpoint_id"]
        assert got.values == plain(expected.values)
        assert [(m["type"], m["content"], m["id"]) for m in got.values["messages"]] == [
            (m.type, m.content, m.id) for m in expected.values["messages"]]
        assert got.values["log"] == [f"turn {i}" for i in range(1, TURNS + 1)] and got.values["turns"] == TURNS
        assert got.seq == checkpoint_seq(reader, "chat-1", got.checkpoint_id) and got.pending_writes == ()
        assert "reducers applied by LangGraph" in got.describe()
        assert reader.state_at("chat-1") == got.values

        # A recorded run: the fold of its node updates knows no reducers (the issue: 1 message of 20) ...
        last = runs[-1]
        assert len(fold(reader.events(last))["messages"]) == 1
        # ... its state is LangGraph's, at its end; the first run's is the state after the first turn.
        assert reader.state_at(last) == plain(expected.values)
        first = reader.state(runs[0])
        assert first.source == SOURCE_CHECKPOINT
        assert [m["content"] for m in first.values["messages"]] == ["question 1", "answer to question 1"]
        assert first.values["log"] == ["turn 1"]

        # Every earlier checkpoint, at its own seq and just before the next one's.
        history = list(graph.get_state_history(config))
        assert len(history) == 3 * TURNS  # per turn: the input, the step before the node, the node's
        seqs = [checkpoint_seq(reader, "chat-1", s.config["configurable"]["checkpoint_id"]) for s in history]
        assert seqs == sorted(seqs, reverse=True)
        for k, (snapshot, seq) in enumerate(zip(history, seqs, strict=True)):
            cid = snapshot.config["configurable"]["checkpoint_id"]
            at = reader.state("chat-1", upto=seq)
            assert (at.checkpoint_id, at.seq) == (cid, seq)
            assert same_state(at.values, snapshot.values), (at.values, snapshot.values)
            if k:  # just before the next checkpoint: still this one
                assert reader.state("chat-1", upto=seqs[k - 1] - 1).checkpoint_id == cid
        # The last run's id at the seq of its step before the node: its thread's state then (turn 10's question).
        assert reader.state_at(runs[-1], upto=seqs[1]) == plain(history[1].values)
        assert reader.state_at(runs[-1], upto=seqs[1])["messages"][-1]["content"] == f"question {TURNS}"
        before_any = min(e.seq for e in reader.thread_events("chat-1") if e.event_type == "checkpoint_saved") - 1
        empty = reader.state("chat-1", upto=before_any)
        assert empty.checkpoint_id is None and empty.values == {} and "no LangGraph checkpoint" in empty.describe()

        # Sealed, read by an auditor's Reader with the key store: the same.
        journal.seal()
        auditor = Reader(paths[0], keystore=journal.keystore)
        assert auditor.state_at("chat-1") == plain(expected.values)


def test_an_id_langgraph_takes_and_the_journal_does_not(paths: tuple[Path, Path]) -> None:
    with Journal.create(paths[0], key_dir=paths[1], config=NO_AGE) as journal:
        graph = chat_graph(JournalSaver(journal))
        config = {"configurable": {"thread_id": "user/42: chat"}}
        graph.invoke({"messages": [HumanMessage("hi", id="q1")]}, config)
        got = journal.reader().state("user/42: chat")
        assert got.thread_id == "user/42: chat" and got.values == plain(graph.get_state(config).values)


def test_pending_writes_of_an_interrupted_step_are_listed(paths: tuple[Path, Path]) -> None:
    def ask(s: Chat) -> Chat:
        reply = interrupt({"question": "go on?"})
        return {"log": [f"asked: {reply}"]}

    g = StateGraph(Chat)
    g.add_node("ask", ask)
    g.add_edge(START, "ask")
    g.add_edge("ask", END)
    with Journal.create(paths[0], key_dir=paths[1], config=NO_AGE) as journal:
        graph = g.compile(checkpointer=JournalSaver(journal))
        config = {"configurable": {"thread_id": "ask-1"}}
        graph.invoke({"log": ["start"]}, config)
        paused = journal.reader().state("ask-1")
        assert paused.values == {"log": ["start"]} and same_state(paused.values, graph.get_state(config).values)
        [write] = [w for w in paused.pending_writes if w.channel == "__interrupt__"]
        assert write.value[0]["$type"] == "langgraph.types.Interrupt"
        assert write.value[0]["value"] == {"question": "go on?"}
        assert "pending write(s) after it, not applied" in paused.describe()
        graph.invoke(Command(resume="yes"), config)
        assert journal.reader().state_at("ask-1") == {"log": ["start", "asked: yes"]}


@pytest.mark.parametrize("kind", ["journal", "archiving"])
def test_a_deleted_thread_reads_as_shredded(paths: tuple[Path, Path], kind: str) -> None:
    with Journal.create(paths[0], key_dir=paths[1], config=NO_AGE) as journal:
        saver = make_saver(kind, journal)
        graph, config, runs = ten_turns(journal, kind)
        graph.checkpointer.delete_thread("chat-1")
        reader = journal.reader()
        events = reader.thread_events("chat-1")
        [tombstone] = [e.seq for e in events if e.event_type == "custom:langgraph.checkpoints_deleted"]
        before = reader.state("chat-1", upto=tombstone - 1)
        assert before.source == SOURCE_CHECKPOINT and before.unreadable == "shredded"
        assert before.values["$wormjournal"] == "shredded" and "shredded, its state cannot be read" in before.describe()
        assert reader.state_at(runs[-1], upto=tombstone - 1)["$wormjournal"] == "shredded"
        after = reader.state("chat-1")
        assert after.checkpoint_id is None and after.values == {} and after.deleted_at == tombstone
        assert f"deleted at seq {tombstone}" in after.describe()
        del saver


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().out


def test_the_cli_says_which(paths: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    store, keys = paths
    with Journal.create(store, key_dir=keys, config=NO_AGE) as journal:
        graph, config, runs = ten_turns(journal, "journal")
        journal.append("execution_started", "plain-1", {"input": "x"})
        journal.append("state_updated", "plain-1", {"new_state": {"messages": ["only the last"]}})
        expected = plain(graph.get_state(config).values)
        checkpoint_id = graph.get_state(config).config["configurable"]["checkpoint_id"]
        journal.seal()

    code, out = run_cli(capsys, "state", store, "chat-1", "--key-dir", keys)
    assert code == 0
    first, rest = out.split("\n", 1)
    assert first.startswith(f"state of LangGraph checkpoint {checkpoint_id} (seq ")
    assert first.endswith("thread chat-1), reducers applied by LangGraph")
    assert json.loads(rest) == expected

    code, out = run_cli(capsys, "state", store, "--execution", runs[0], "--key-dir", keys, "--json")
    found = json.loads(out)
    assert code == 0 and found["source"] == SOURCE_CHECKPOINT and len(found["values"]["messages"]) == 2
    assert found["description"].startswith("state of LangGraph checkpoint ")

    code, out = run_cli(capsys, "state", store, "plain-1", "--key-dir", keys)
    first, rest = out.split("\n", 1)
    assert code == 0 and first.startswith("fold of state_updated events (no reducers)")
    assert json.loads(rest) == {"messages": ["only the last"]}
    code, out = run_cli(capsys, "state", store, "plain-1", "--key-dir", keys, "--json")
    assert json.loads(out)["source"] == SOURCE_FOLD

    # Without the key store the checkpoint is there, its state cannot be read.
    code, out = run_cli(capsys, "state", store, "chat-1", "--key-dir", store.parent / "no-keys")
    assert code == 0 and "encrypted, its state cannot be read" in out.splitlines()[0]
    code, _ = run_cli(capsys, "state", store, "nobody", "--key-dir", keys)
    assert code != 0


def test_a_plain_execution_still_folds(paths: tuple[Path, Path]) -> None:
    with Journal.create(paths[0], key_dir=paths[1], config=NO_AGE) as journal:
        journal.append("execution_started", "run-7", {"input": "refund?"}, thread_id="conv-1")
        journal.append("state_updated", "run-7", {"new_state": {"intent": "refund", "n": 1}}, thread_id="conv-1")
        journal.append("human_modified", "run-7", {"new_state": {"intent": "complaint"}}, thread_id="conv-1")
        reader = journal.reader()
        got = reader.state("run-7")
        assert got.source == SOURCE_FOLD and got.checkpoint_id is None and got.upto == 2
        assert got.values == {"intent": "complaint", "n": 1} == reader.state_at("run-7")
        assert reader.state_at("run-7", upto=1) == {"intent": "refund", "n": 1}
        assert reader.state_at("run-7", upto=99) == {"intent": "complaint", "n": 1}
        assert "fold of state_updated events (no reducers)" in got.describe()
        with pytest.raises(NotFoundError):
            reader.state_at("conv-1")  # a thread without checkpoints is no LangGraph thread
        with pytest.raises(NotFoundError):
            reader.state("nobody")


# -- stored bytes are untrusted ---------------------------------------------------------------------------

MISSING_MODULE = "wormjournal_no_such_module_7f3a"


def ext(code: int, *parts: Any) -> ormsgpack.Ext:
    return ormsgpack.Ext(code, ormsgpack.packb(list(parts)))


def typed(kind: str, data: bytes) -> list[str]:
    return [kind, base64.b64encode(data).decode("ascii")]


def test_hostile_checkpoint_bytes_are_described_not_run(paths: tuple[Path, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def no_call(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"called with {args}")

    monkeypatch.setattr(os, "system", no_call)
    serde = JsonPlusSerializer()
    checkpoint = {"v": 4, "id": "1f0-evil", "ts": "2026-01-01T00:00:00+00:00", "versions_seen": {},
                  "channel_versions": {k: 1 for k in ("system", "pos", "kw", "v2", "method", "unknown", "pickled",
                                                       "lc", "broken", "numpy", "deep")}}
    values = {
        "system": ext(0, "os", "system", "echo pwned"),
        "pos": ext(1, MISSING_MODULE, "Boom", ["a"]),
        "kw": ext(2, MISSING_MODULE, "Boom", {"x": 1}),
        "v2": ext(5, MISSING_MODULE, "Model", {"y": 2}, "model_validate_json"),
        "method": ext(3, "os", "system", "echo pwned", "__call__"),
        "unknown": ormsgpack.Ext(42, b"\x00\x01"),
        "numpy": ext(6, "<f8", [1], "C", b"\x00" * 8),
    }
    blobs = {ch: [1, *typed("msgpack", ormsgpack.packb(v))] for ch, v in values.items()}
    blobs["pickled"] = [1, *typed("pickle", b"cos\nsystem\n(S'echo pwned'\ntR.")]
    blobs["lc"] = [1, *typed("json", json.dumps({"lc": 2, "type": "constructor", "id": [MISSING_MODULE, "X"],
                                                   "kwargs": {}}).encode())]
    blobs["broken"] = [1, *typed("msgpack", b"\xdd\xff\xff\xff\xff")]  # an array of 4 billion, in 5 bytes
    blobs["deep"] = [1, *typed("msgpack", b"\x91" * 400 + b"\x01")]  # 400 nested arrays
    payload = {"kind": "checkpoint", "checkpoint_ns": "", "checkpoint_id": "1f0-evil", "parent_checkpoint_id": None,
               "run_id": None, "step": 0, "source": "loop", "checkpoint": typed(*serde.dumps_typed(checkpoint)),
               "metadata": typed(*serde.dumps_typed({"step": 0})), "blobs": blobs}
    modules = set(sys.modules)
    with Journal.create(paths[0], key_dir=paths[1], config=NO_AGE) as journal:
        journal.append("checkpoint_saved", "langgraph-thread-evil", payload, thread_id="evil", step_id="1f0-evil")
        got = journal.reader().state("evil")
    assert MISSING_MODULE not in sys.modules and not any(MISSING_MODULE in m for m in set(sys.modules) - modules)
    v = got.values
    assert v["system"] == {"$type": "os.system", "value": "echo pwned"}
    assert v["pos"] == {"$type": f"{MISSING_MODULE}.Boom", "args": ["a"]}
    assert v["kw"] == {"$type": f"{MISSING_MODULE}.Boom", "x": 1}
    assert v["v2"] == {"$type": f"{MISSING_MODULE}.Model", "y": 2}
    assert v["method"] == {"$type": "os.system", "method": "__call__", "value": "echo pwned"}
    assert v["numpy"] == {"$type": "numpy.ndarray", "dtype": "<f8", "shape": [1], "order": "C", "data": b"\x00" * 8}
    assert v["lc"]["id"] == [MISSING_MODULE, "X"]  # JSON stays the plain object it is
    for channel in ("unknown", "pickled", "broken", "deep"):
        assert is_undecoded(v[channel]), channel
    assert "pickle" in v["pickled"]["$undecoded"] and "ext type 42" in v["unknown"]["$undecoded"]


def test_the_decoder_reads_what_langgraph_writes() -> None:
    serde = JsonPlusSerializer()
    value = {"ints": [0, 127, 128, -1, -33, 2**16, 2**40, -2**40, 2**63], "floats": [1.5, -0.0], "none": None,
             "flags": [True, False], "text": "é" * 40 + "x" * 70000, "bytes": b"\x00\xff" * 40,
             "nested": {"a": {"b": []}}, "int_keys": {1: "one"}}
    assert decode_typed(*serde.dumps_typed(value)) == value
    assert decode_typed(*serde.dumps_typed(list(range(70000)))) == list(range(70000))
    assert decode_typed("null", b"") is None and decode_typed("bytes", b"ab") == b"ab"
    assert decode_typed("json", b'{"a": [1]}') == {"a": [1]}
    assert is_undecoded(decode_typed("no-such-type", b"x")) and is_undecoded(decode_typed("json", b"{"))
    packed = ormsgpack.packb({"a": [1, 2, 3]})
    for cut in range(len(packed)):
        assert is_undecoded(decode_msgpack(packed[:cut])), cut
    assert is_undecoded(decode_msgpack(packed + b"\x00"))  # bytes after the value
    assert is_undecoded(decode_msgpack(b"\xc1"))  # never used
