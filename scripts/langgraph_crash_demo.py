#!/usr/bin/env python3
"""A LangGraph run that crashes the process in its third step, then resumes from the journal.

The graph has three steps with plain Python nodes. Its checkpointer is ``JournalSaver``
(the journal alone) and a ``RunRecorder`` records the run. Each step also appends a line
to ``effects.log`` beside the journal, the stand-in for a side effect (a payment, an
e-mail) that must not happen twice.

    .venv/bin/python scripts/langgraph_crash_demo.py [DIR]      # default: ./demo-langgraph

1. A child process runs the graph; in step 3 it kills itself with SIGKILL (no exception,
   no cleanup: what a power cut or an OOM kill does).
2. A second child process opens the journal (recovering its write-ahead log), and
   ``graph.invoke(None, config)`` resumes the thread from the last checkpoint in the
   journal: step 3 runs again, steps 1 and 2 do not.
3. The whole history is replayed (``wormjournal replay``), the crash included, the
   journal is sealed and verified.

Needs ``pip install wormjournal[langgraph]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, TypedDict

THREAD = "claim-4711"


class State(TypedDict, total=False):
    claim: str
    steps: list[str]
    paid: bool


def effect(directory: Path, line: str) -> None:
    with open(directory / "effects.log", "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def build(journal: Any, directory: Path, crash: bool) -> Any:
    from langgraph.graph import END, START, StateGraph

    from wormjournal.integrations.langgraph import JournalSaver

    def step(name: str):  # noqa: ANN202 - a node factory
        def node(state: State) -> State:
            effect(directory, f"{name} started")
            if name == "step_3" and crash:
                os.kill(os.getpid(), signal.SIGKILL)  # the process dies here, mid-step
            effect(directory, f"{name} done")
            return {"steps": [*state.get("steps", []), name], "paid": name == "step_3"}

        return node

    g = StateGraph(State)
    for name in ("step_1", "step_2", "step_3"):
        g.add_node(name, step(name))
    g.add_edge(START, "step_1")
    g.add_edge("step_1", "step_2")
    g.add_edge("step_2", "step_3")
    g.add_edge("step_3", END)
    return g.compile(checkpointer=JournalSaver(journal))


def child(directory: Path, phase: str) -> int:
    from wormjournal import Journal
    from wormjournal.integrations.langgraph import RunRecorder

    store, keys = directory / "journal", directory / "keys"
    if phase == "run":
        Journal.create(store, key_dir=keys).close()
    with Journal.open(store, key_dir=keys) as journal:  # after a crash: recovery of the write-ahead log
        graph = build(journal, directory, crash=phase == "run")
        config = {"configurable": {"thread_id": THREAD}, "callbacks": [RunRecorder(journal)]}
        # durability="sync": each step's checkpoint is in the journal before the next step starts (LangGraph's
        # default, "async", saves it while the next step runs: a crash there would run a step twice)
        if phase == "run":
            graph.invoke({"claim": "water damage, flat 3"}, config, durability="sync")
            return 0  # not reached: step 3 kills the process
        before = graph.get_state({"configurable": {"thread_id": THREAD}})
        print(f"resuming thread {THREAD} at {before.next} from checkpoint "
              f"{before.config['configurable']['checkpoint_id']} (read from the journal)")
        final = graph.invoke(None, config, durability="sync")
        print(f"completed: steps {final['steps']}, paid={final['paid']}")
        journal.seal()
        execution = next(e.execution_id for e in journal.reader().thread_events(THREAD)
                         if e.event_type == "execution_started")
        (directory / "execution.txt").write_text(execution + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", default="demo-langgraph", type=Path)
    parser.add_argument("--phase", choices=["run", "resume"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        return child(args.directory, args.phase)
    directory = args.directory
    if directory.exists():
        subprocess.run(["chmod", "-R", "u+w", str(directory)], check=False)
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    me = [sys.executable, __file__, str(directory), "--phase"]
    print("== run: the graph starts; step 3 kills the process")
    crashed = subprocess.run([*me, "run"], check=False)
    print(f"   the process ended with {crashed.returncode} (-9: SIGKILL)")
    if crashed.returncode != -signal.SIGKILL:
        print("error: the run did not crash as planned", file=sys.stderr)
        return 1
    print("== resume: a new process picks the thread up from the journal")
    resumed = subprocess.run([*me, "resume"], check=False)
    if resumed.returncode != 0:
        return resumed.returncode
    print("== side effects (effects.log): steps 1 and 2 ran once")
    print((directory / "effects.log").read_text(), end="")
    wj = [sys.executable, "-m", "wormjournal"]
    execution = (directory / "execution.txt").read_text().strip()
    print(f"== wormjournal replay --execution {execution}: the whole history, the crash included")
    subprocess.run([*wj, "replay", str(directory / "journal"), "--execution", execution, "--key-dir",
                    str(directory / "keys")], check=True)
    print("== wormjournal verify")
    return subprocess.run([*wj, "verify", str(directory / "journal")], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
