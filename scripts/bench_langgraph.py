#!/usr/bin/env python3
"""Benchmark LangGraph checkpointing: JournalSaver and ArchivingSaver(SqliteSaver) against SqliteSaver.

One small agent graph (an agent node and a tool node in a loop of two tool calls, its messages
kept with ``operator.add``), run in one process per saver (its memory its own), on a local disk. The three
processes take turns, CHUNK invocations each, so that they share whatever else loads the machine over the run
(one after the other, a burst of load on a shared machine would land on one saver's figures alone):

  threads      --threads new threads, one invocation each: milliseconds per invocation for the first
               50 threads after the 10th and for the last 50, and their ratio (flat when near 1);
               peak RSS after a tenth of the threads and at the end
  one thread   --turns invocations of one thread (its state grows by a turn each): p50 and mean ms

Targets (reported as PASS/MISS with the measured value, never asserted), from one run: per-invoke
time flat in the number of threads (the last 50 within 1.2x threads 10..59) for JournalSaver and
ArchivingSaver, JournalSaver at most 1.5x SqliteSaver per invocation, memory flat (peak RSS at the
end within 1.2x of that after a tenth of the threads).

Prints the result as one JSON object (stdout) in the shared result schema of scripts/benchlib.py
(--json FILE writes it too); a readable table and progress go to stderr.

Usage (from the repository root):

    .venv/bin/python scripts/bench_langgraph.py                       # 1,000 threads, 200 turns
    .venv/bin/python scripts/bench_langgraph.py --threads 200 --turns 50
"""

from __future__ import annotations

import argparse
import json
import operator
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

import benchlib

SAVERS = ("sqlite", "journal", "archiving")
WINDOW = 50
CHUNK = 50  # invocations a saver's process runs in its turn (long enough to run with warm caches)


class State(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]
    calls: int


def build(checkpointer: Any) -> Any:
    from langgraph.graph import END, START, StateGraph

    def agent(s: State) -> State:
        n = s.get("calls", 0)
        return {"messages": [{"role": "assistant", "content": f"calling the tool, step {n}", "tool": "search"}]}

    def tool(s: State) -> State:
        return {"messages": [{"role": "tool", "content": "result " * 40}], "calls": s.get("calls", 0) + 1}

    def route(s: State) -> str:
        return "tool" if s.get("calls", 0) % 2 == 1 or s["messages"][-1]["role"] == "user" else END

    g = StateGraph(State)
    g.add_node("agent", agent)
    g.add_node("tool", tool)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", route, {"tool": "tool", END: END})
    g.add_edge("tool", "agent")
    return g.compile(checkpointer=checkpointer)


def child(saver_name: str, directory: Path, threads: int, turns: int) -> dict[str, Any]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    from wormjournal import Journal, JournalConfig
    from wormjournal.integrations.langgraph import ArchivingSaver, JournalSaver

    journal = None
    if saver_name == "sqlite":
        saver: Any = SqliteSaver(sqlite3.connect(str(directory / "checkpoints.db"), check_same_thread=False))
    else:
        journal = Journal.create(directory / "journal", key_dir=directory / "keys", config=JournalConfig())
        saver = JournalSaver(journal) if saver_name == "journal" else ArchivingSaver(
            SqliteSaver(sqlite3.connect(str(directory / "checkpoints.db"), check_same_thread=False)), journal)
    graph = build(saver)
    per_thread: list[int] = []
    rss_tenth = rss_end = 0
    per_turn: list[int] = []
    for line in sys.stdin:  # the parent's turns: "<first> <end>" of the invocations (threads, then turns)
        first, end = map(int, line.split())
        for k in range(first, end):
            t0 = time.perf_counter_ns()
            if k < threads:
                graph.invoke({"messages": [{"role": "user", "content": f"question {k}"}]},
                             {"configurable": {"thread_id": f"thread-{k}"}})
                per_thread.append(time.perf_counter_ns() - t0)
                if k + 1 == max(1, threads // 10):
                    rss_tenth = benchlib.status_kb("VmHWM")
                if k + 1 == threads:
                    rss_end = benchlib.status_kb("VmHWM")
            else:
                graph.invoke({"messages": [{"role": "user", "content": f"turn {k - threads}"}]},
                             {"configurable": {"thread_id": "long"}})
                per_turn.append(time.perf_counter_ns() - t0)
        print("ok", flush=True)
        if end >= threads + turns:
            break
    if journal is not None:
        journal.close()
    first = per_thread[10 : 10 + WINDOW]
    last = per_thread[-WINDOW:]
    return {
        "threads": {"n": threads, "first_window_ms": round(statistics.fmean(first) / 1e6, 3),
                    "last_window_ms": round(statistics.fmean(last) / 1e6, 3),
                    "ratio_last_to_first": round(statistics.fmean(last) / statistics.fmean(first), 3),
                    "mean_ms": round(statistics.fmean(per_thread) / 1e6, 3),
                    "latency": benchlib.summary(per_thread, "ms")},
        "one_thread": {"n": turns, "latency": benchlib.summary(per_turn, "ms")},
        "rss_kb_after_tenth": rss_tenth, "rss_kb_end": rss_end,
    }


def in_turns(tmp: Path, threads: int, turns: int) -> dict[str, Any]:
    """Run the savers' processes in turns of CHUNK invocations; return each one's result."""
    procs = {}
    for name in SAVERS:
        (tmp / name).mkdir()
        procs[name] = subprocess.Popen([sys.executable, __file__, "--child", name, "--dir", str(tmp / name),
                                        "--threads", str(threads), "--turns", str(turns)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    total = threads + turns
    for first in range(0, total, CHUNK):
        for name, proc in procs.items():
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(f"{first} {min(total, first + CHUNK)}\n")
            proc.stdin.flush()
            if proc.stdout.readline().strip() != "ok":
                raise SystemExit(f"child {name} failed (exit code {proc.wait()})")
        if (first + CHUNK) % 200 == 0:
            benchlib.log("bench_langgraph", f"{min(total, first + CHUNK):,} of {total:,} invocations each")
    results = {}
    for name, proc in procs.items():
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        out = proc.stdout.read()  # not communicate(): it would pass over what readline() has buffered
        proc.wait()
        if proc.returncode or not out.strip():
            raise SystemExit(f"child {name} failed (exit code {proc.returncode}, output {out!r})")
        results[name] = json.loads(out.strip().splitlines()[-1])
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1000, help="new threads, one invocation each (default 1000)")
    ap.add_argument("--turns", type=int, default=200, help="invocations of one thread (default 200)")
    ap.add_argument("--json", type=Path, help="also write the result here")
    ap.add_argument("--child", choices=SAVERS, help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads < 10 + 2 * WINDOW:
        raise SystemExit(f"--threads must be at least {10 + 2 * WINDOW}")
    if args.child:
        print(json.dumps(child(args.child, args.dir, args.threads, args.turns)))
        return
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-langgraph-") as tmp:
        results = in_turns(Path(tmp), args.threads, args.turns)
        sql = results["sqlite"]["threads"]["mean_ms"]
        targets = {}
        for name in ("journal", "archiving"):
            r = results[name]
            targets[f"{name}_flat"] = benchlib.target(
                f"{name}: per-invoke time of the last {WINDOW} threads within 1.2x that of threads 10..{9 + WINDOW}",
                r["threads"]["ratio_last_to_first"], r["threads"]["ratio_last_to_first"] <= 1.2)
            growth = r["rss_kb_end"] / max(1, r["rss_kb_after_tenth"])
            targets[f"{name}_memory_flat"] = benchlib.target(
                f"{name}: peak RSS at the end within 1.2x of that after a tenth of the threads", round(growth, 3),
                growth <= 1.2)
        ratio = results["journal"]["threads"]["mean_ms"] / sql
        targets["journal_vs_sqlite"] = benchlib.target("JournalSaver per invocation at most 1.5x SqliteSaver",
                                                       round(ratio, 3), ratio <= 1.5)
        results["ratios_to_sqlite"] = {name: round(results[name]["threads"]["mean_ms"] / sql, 3)
                                       for name in ("journal", "archiving")}
        res = benchlib.result("langgraph", Path(tmp), {"threads": args.threads, "turns": args.turns}, results,
                              targets, started=started)
    lines = [f"{'saver':<10} {'ms/invoke':>10} {'10..59':>8} {'last 50':>8} {'ratio':>6} {'one thread p50':>15} "
             f"{'RSS MB tenth/end':>17}"]
    for name in SAVERS:
        r = results[name]
        lines.append(f"{name:<10} {r['threads']['mean_ms']:>10.2f} {r['threads']['first_window_ms']:>8.2f} "
                     f"{r['threads']['last_window_ms']:>8.2f} {r['threads']['ratio_last_to_first']:>6.2f} "
                     f"{r['one_thread']['latency']['p50_ms']:>15.2f} "
                     f"{r['rss_kb_after_tenth'] / 1024:>8.1f}/{r['rss_kb_end'] / 1024:<8.1f}")
    for t in targets.values():
        lines.append(f"target {t['target']}: {t['value']}  {'PASS' if t['met'] else 'MISS'}")
    print("\n".join(lines), file=sys.stderr)
    benchlib.emit(res, args.json)


if __name__ == "__main__":
    main()
