"""The human in the loop: a run pauses for approval, a human changes its state and approves, it goes on.

A real LangGraph graph (plain Python nodes) on either saver, recorded by RunRecorder:
the pause, the human's change (``human_modified``) and approval (``human_approved``) and
the rest of the run are one execution, and ``state_at`` shows the state before and after
the change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

import pytest

pytest.importorskip("langgraph")

from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.types import Command, interrupt  # noqa: E402

from wormjournal.errors import ValidationError  # noqa: E402
from wormjournal.integrations.langgraph import ArchivingSaver, JournalSaver, RunRecorder  # noqa: E402
from wormjournal.journal import Journal, JournalConfig  # noqa: E402


class Claim(TypedDict, total=False):
    amount: int
    decision: str
    log: list[str]


def build(saver: Any, conditional: bool = False) -> Any:
    def assess(s: Claim) -> Claim:
        return {"amount": 1200, "log": ["assessed"]}

    def approve(s: Claim) -> Claim:
        answer = interrupt({"question": f"pay {s['amount']}?"})
        return {"decision": answer, "log": [*s["log"], "approved"]}

    def pay(s: Claim) -> Claim:
        return {"log": [*s["log"], f"paid {s['amount']}"]}

    g = StateGraph(Claim)
    g.add_node("assess", assess)
    g.add_node("approve", approve)
    g.add_node("pay", pay)
    g.add_edge(START, "assess")
    if conditional:  # LangGraph then traces update_state as a root run (as_node "assess"): not a run to record
        g.add_conditional_edges("assess", lambda s: "approve", ["approve"])
    else:
        g.add_edge("assess", "approve")
    g.add_edge("approve", "pay")
    g.add_edge("pay", END)
    return g.compile(checkpointer=saver)


@pytest.mark.parametrize(("saver", "conditional"), [("journal", False), ("archiving", False), ("journal", True)])
def test_a_human_changes_and_approves_a_paused_run(tmp_path: Path, saver: str, conditional: bool) -> None:
    with Journal.create(tmp_path / "journal", key_dir=tmp_path / "keys",
                        config=JournalConfig(seal_max_age_seconds=None)) as journal:
        graph = build(JournalSaver(journal) if saver == "journal" else ArchivingSaver(InMemorySaver(), journal),
                      conditional)
        recorder = RunRecorder(journal)
        config = {"configurable": {"thread_id": "claim-9"}, "callbacks": [recorder]}
        paused = graph.invoke({"log": []}, config)
        assert "__interrupt__" in paused and graph.get_state(config).next == ("approve",)

        recorder.record_human_change(graph, config, {"amount": 950}, by="adjuster-3", reason="receipt checked")
        recorder.record_human_decision(config, approved=True, by="adjuster-3", comment="ok to pay")
        final = graph.invoke(Command(resume="yes"), config)
        assert final["log"] == ["assessed", "approved", "paid 950"] and final["decision"] == "yes"

        reader = journal.reader()
        [execution] = {e.execution_id for e in reader.thread_events("claim-9") if e.event_type == "execution_started"}
        assert {e.execution_id for e in reader.thread_events("claim-9")
                if e.event_type.startswith("execution_")} == {execution}  # one run: the update is none
        events = reader.events(execution)
        kinds = [e.event_type for e in events]
        order = ["human_interrupted", "execution_paused", "human_modified", "human_approved", "execution_resumed",
                 "execution_completed"]
        assert [k for k in kinds if k in order] == order
        modified = next(e for e in events if e.event_type == "human_modified")
        approved = next(e for e in events if e.event_type == "human_approved")
        assert modified.payload["by"] == "adjuster-3" and modified.payload["reason"] == "receipt checked"
        assert approved.payload == {"by": "adjuster-3", "comment": "ok to pay"}
        # LangGraph's state: the human's change is its update_state checkpoint, saved just before human_modified.
        update = next(e.seq for e in reader.thread_events("claim-9")
                      if e.event_type == "checkpoint_saved" and e.step_id == modified.payload["checkpoint_id"])
        assert update < modified.seq
        assert reader.state_at(execution, upto=update - 1)["amount"] == 1200  # before the human's change
        assert reader.state_at(execution, upto=update)["amount"] == 950
        assert reader.state_at(execution, upto=modified.seq)["amount"] == 950  # after it
        assert reader.state_at(execution)["log"] == ["assessed", "approved", "paid 950"]
        journal.seal()
        assert journal.verify().ok


def test_a_human_action_needs_a_paused_run(tmp_path: Path) -> None:
    with Journal.create(tmp_path / "journal", key_dir=tmp_path / "keys",
                        config=JournalConfig(seal_max_age_seconds=None)) as journal:
        recorder = RunRecorder(journal)
        with pytest.raises(ValidationError, match="no paused execution"):
            recorder.record_human_decision({"configurable": {"thread_id": "never-ran"}}, approved=True, by="x")
