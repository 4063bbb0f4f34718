"""examples/langgraph_recovery.py: a Subscription's handler recovers LangGraph runs through JournalSaver.

A ``tool_returned`` with ``ok`` false reroutes the failed thread (B-2) to its fallback node; a ``human_rejected``
resumes the paused thread (A-1) down its "rejected" branch. The journal keeps both triggers, the handler saw each,
handing the events over again changes nothing, and the journal verifies.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("langgraph")

from wormjournal import Event, Journal, JournalConfig  # noqa: E402
from wormjournal.integrations.langgraph import JournalSaver, RunRecorder  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "langgraph_recovery.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("langgraph_recovery_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # LangGraph resolves the state's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


example = load_example()


class Scenario:
    """Both orders started (A-1 paused and rejected, B-2 failed) on one journal, not recovered yet."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.graph = example.build_graph(JournalSaver(journal))
        self.recorder = RunRecorder(journal)
        example.start_orders(self.graph, self.recorder)

    def state(self, thread: str) -> Any:
        return self.graph.get_state(example.config(thread, self.recorder))

    def recover(self, name: str = "recovery") -> list[Event]:
        seen: list[Event] = example.recover(self.journal, self.graph, self.recorder, name=name, timeout=0.3)
        return seen


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    with Journal.create(tmp_path / "journal", key_dir=tmp_path / "keys",
                        config=JournalConfig(seal_max_age_seconds=None)) as journal:
        yield Scenario(journal)


def kinds(events: list[Event]) -> list[str]:
    return [e.event_type for e in events if not e.event_type.startswith(("checkpoint", "custom:"))]


def seen_by(seen: list[Event], event_type: str, thread: str) -> list[Event]:
    return [e for e in seen if e.event_type == event_type and e.thread_id == thread]


def test_a_failed_tool_is_rerouted_to_the_fallback(scenario: Scenario) -> None:
    before = scenario.state("B-2")
    assert before.next == ("quote",) and "LookupError" in str(before.tasks[0].error)
    reader = scenario.journal.reader()
    [failed] = [e for e in reader.thread_events("B-2") if e.event_type == "tool_returned"]
    assert failed.payload == {"tool": "price_lookup", "tool_call_id": None, "ok": False, "error": "LookupError"}
    assert failed.node == "quote"
    assert kinds(reader.events(failed.execution_id))[-2:] == ["node_failed", "execution_failed"]

    seen = scenario.recover()

    assert [e.seq for e in seen_by(seen, "tool_returned", "B-2")] == [failed.seq]
    assert seen_by(seen, "tool_returned", "B-2")[0].payload["ok"] is False
    after = scenario.state("B-2")
    assert after.next == ()
    assert after.values == {"order": "B-2", "price": example.ESTIMATE, "route": "fallback",
                            "log": ["rerouted after LookupError", f"fallback: estimated {example.ESTIMATE}"]}
    # The rerouted run is a new execution of the thread (the failed one stays failed): it ran the fallback alone.
    executions = list(dict.fromkeys(e.execution_id for e in reader.thread_events("B-2")
                                    if e.event_type.startswith("execution_")))
    assert len(executions) == 2 and executions[0] == failed.execution_id
    rerouted = reader.events(executions[1])
    assert kinds(rerouted) == ["execution_started", "node_started", "node_completed", "state_updated",
                               "execution_completed"]
    assert {e.node for e in rerouted if e.node} == {"fallback"}
    assert scenario.journal.verify().ok  # the write-ahead log's chain, before any seal
    scenario.journal.seal()
    assert scenario.journal.verify().ok


def test_a_rejected_run_is_resumed_down_its_rejected_branch(scenario: Scenario) -> None:
    assert scenario.state("A-1").next == ("review",)
    reader = scenario.journal.reader()
    [rejected] = [e for e in reader.thread_events("A-1") if e.event_type == "human_rejected"]
    assert rejected.payload == {"by": "ops-lead", "comment": "sale item"}  # encrypted; the journal's reader decrypts

    seen = scenario.recover()

    [handed] = seen_by(seen, "human_rejected", "A-1")
    assert handed.seq == rejected.seq and handed.payload == rejected.payload
    # The tool of A-1 succeeded: the handler saw its tool_returned (ok true) and left the thread alone.
    assert [e.payload["ok"] for e in seen_by(seen, "tool_returned", "A-1")] == [True]
    after = scenario.state("A-1")
    assert after.next == ()
    assert after.values == {"order": "A-1", "price": 40, "route": "review", "decision": "rejected",
                            "log": ["quoted", "review: rejected", "declined"]}
    # One execution: paused, rejected, then resumed by the handler to its end.
    events = reader.events(rejected.execution_id)
    assert kinds(events) == ["execution_started", "node_started", "tool_called", "tool_returned", "node_completed",
                             "state_updated", "node_started", "human_interrupted", "execution_paused",
                             "human_rejected", "execution_resumed", "node_started", "node_completed",
                             "state_updated", "node_started", "node_completed", "state_updated",
                             "execution_completed"]
    assert [e.node for e in events if e.event_type == "node_completed"] == ["quote", "review", "decline"]
    assert {e.execution_id for e in reader.thread_events("A-1") if e.event_type.startswith("execution_")} == {
        rejected.execution_id}
    scenario.journal.seal()
    assert scenario.journal.verify().ok


def test_events_handed_over_again_change_nothing(scenario: Scenario) -> None:
    first = scenario.recover()
    assert sorted((e.event_type, e.thread_id) for e in first) == [
        ("human_rejected", "A-1"), ("tool_returned", "A-1"), ("tool_returned", "B-2")]
    states = {t: scenario.state(t).values for t in ("A-1", "B-2")}
    count = scenario.journal.reader().count_events()

    assert scenario.recover() == []  # the same subscription goes on from its cursor: nothing new
    # A consumer that lost its cursor (killed before saving it) is handed every event again: the handler sees the
    # threads recovered already and leaves them be.
    again = scenario.recover(name="recovery-restarted")
    assert [e.seq for e in again] == [e.seq for e in first]
    assert {t: scenario.state(t).values for t in ("A-1", "B-2")} == states
    assert scenario.journal.reader().count_events() == count  # no run, no update: nothing was appended


def test_the_example_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    final = example.main(tmp_path)
    assert final["A-1"]["decision"] == "rejected" and final["A-1"]["log"][-1] == "declined"
    assert final["B-2"]["route"] == "fallback" and final["B-2"]["log"][-1] == f"fallback: estimated {example.ESTIMATE}"
    assert capsys.readouterr().out.splitlines() == [
        "A-1: quoted -> review: rejected -> declined",
        f"B-2: rerouted after LookupError -> fallback: estimated {example.ESTIMATE}",
        "journal verified: True"]
