"""Crash and resume: a LangGraph run killed (SIGKILL) in its third step resumes from the journal.

Runs ``scripts/langgraph_crash_demo.py``: a real child process dies mid-step, a second one
resumes the thread from the journal alone, without running the first two steps again;
the replay shows the whole history, the crash included, and verify passes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("langgraph")

from wormjournal import Journal  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "langgraph_crash_demo.py"


def test_a_run_killed_in_step_three_resumes_from_the_journal(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    done = subprocess.run([sys.executable, str(SCRIPT), str(directory)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the process ended with -9" in done.stdout
    # Steps 1 and 2 ran once; step 3 started, died, and ran again to the end.
    assert (directory / "effects.log").read_text().splitlines() == [
        "step_1 started", "step_1 done", "step_2 started", "step_2 done", "step_3 started",
        "step_3 started", "step_3 done",
    ]
    assert "completed: steps ['step_1', 'step_2', 'step_3'], paid=True" in done.stdout
    assert "result       OK" in done.stdout  # wormjournal verify
    execution = (directory / "execution.txt").read_text().strip()
    with Journal.open(directory / "journal", key_dir=directory / "keys") as j:
        events = j.reader().events(execution)
        kinds = [(e.event_type, e.node) for e in events]
        # One execution: the crash (step 3 started, never ended), the resume, the end.
        assert kinds[0] == ("execution_started", None) and kinds[-1] == ("execution_completed", None)
        assert kinds.count(("node_started", "step_3")) == 2 and kinds.count(("node_completed", "step_3")) == 1
        assert kinds.count(("node_started", "step_1")) == 1 and kinds.count(("node_started", "step_2")) == 1
        resumed = [e for e in events if e.event_type == "execution_resumed"]
        assert len(resumed) == 1 and resumed[0].payload["unfinished_nodes"] == ["step_3"]
        assert kinds.index(("execution_resumed", None)) > kinds.index(("node_started", "step_3"))
        assert j.verify().ok
    # The replay printed by the script shows it too.
    assert done.stdout.count("node_started") >= 4 and "execution_resumed" in done.stdout
