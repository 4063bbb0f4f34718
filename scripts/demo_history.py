#!/usr/bin/env python3
"""Print a realistic agent run history as JSON Lines, one event a line.

Several executions of a support agent over a few tenants and threads, spread
over several UTC days: node steps, LLM calls with token counts, tool calls,
state updates, a human approval, a failed tool call with a retry, and a
failed execution. Deterministic for a given --seed.

    python scripts/demo_history.py --executions 12 > events.jsonl
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys

TENANTS = ["acme-bank", "globex-insurance", "initech"]
NODES = ["classify", "retrieve", "draft_reply", "review"]
TOOLS = {"retrieve": "search_knowledge_base", "draft_reply": "lookup_customer"}


class History:
    def __init__(self, rng: random.Random, start: dt.datetime) -> None:
        self.rng = rng
        self.now = start
        self.events: list[dict] = []

    def emit(self, event_type: str, run: dict, payload: object, **fields: str) -> str:
        self.now += dt.timedelta(milliseconds=self.rng.randint(20, 900))
        event_id = f"{run['execution_id']}-e{len(run['ids']):03d}"
        run["ids"].append(event_id)
        event = {
            "event_id": event_id,
            "ts": self.now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "event_type": event_type,
            "tenant_id": run["tenant_id"],
            "execution_id": run["execution_id"],
            "thread_id": run["thread_id"],
            "subject_id": run["subject_id"],
            "correlation_id": run["correlation_id"],
            "payload": payload,
            **fields,
        }
        if len(run["ids"]) > 1:
            event["parent_event_id"] = run["ids"][-2]
        self.events.append(event)
        return event_id

    def llm_call(self, run: dict, node: str, step: str) -> None:
        prompt_tokens, completion_tokens = self.rng.randint(300, 2500), self.rng.randint(40, 600)
        self.emit("llm_requested", run, {"model": "gpt-4.1-mini", "messages": [
            {"role": "system", "content": f"You are the {node} step of a customer-support agent."},
            {"role": "user", "content": run["question"]},
        ]}, node=node, step_id=step)
        self.emit("llm_completed", run, {
            "model": "gpt-4.1-mini",
            "output": f"[{node}] " + self.rng.choice(["Refund policy applies.", "Escalate to billing.",
                                                      "Answer drafted."]),
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
            "cost_usd": round(prompt_tokens * 4e-7 + completion_tokens * 1.6e-6, 6),
            "latency_ms": self.rng.randint(300, 4000),
        }, node=node, step_id=step)

    def run(self, n: int, *, fail: bool, flaky_tool: bool, needs_human: bool) -> None:
        tenant = TENANTS[n % len(TENANTS)]
        run = {
            "execution_id": f"run-{n:04d}",
            "tenant_id": tenant,
            "thread_id": f"{tenant}-thread-{n % 4}",
            "subject_id": f"customer-{(n * 7) % 11}@example.com",
            "correlation_id": f"ticket-{5000 + n}",
            "question": self.rng.choice([
                "I was charged twice for my subscription this month.",
                "How do I change the beneficiary on my policy?",
                "My card was declined at checkout, why?",
            ]),
            "ids": [],
        }
        self.emit("execution_started", run,
                  {"graph": "support-agent", "version": "2.3.1", "input": {"question": run["question"]}})
        state: dict[str, object] = {"messages": 1}
        for i, node in enumerate(NODES):
            step = f"step-{i}"
            self.emit("node_started", run, {"input_keys": sorted(state)}, node=node, step_id=step)
            if node in TOOLS:
                tool = TOOLS[node]
                self.emit("tool_called", run, {"tool": tool, "args": {"query": run["question"][:40], "top_k": 5}},
                          node=node, step_id=step)
                if flaky_tool and node == "retrieve":
                    self.emit("tool_returned", run,
                              {"tool": tool, "error": "TimeoutError: upstream took 30s", "ok": False},
                              node=node, step_id=step)
                    self.emit("retry_scheduled", run, {"attempt": 2, "backoff_ms": 500, "reason": "tool timeout"},
                              node=node, step_id=step)
                    self.emit("tool_called", run,
                              {"tool": tool, "args": {"query": run["question"][:40], "top_k": 5}, "attempt": 2},
                              node=node, step_id=step)
                self.emit("tool_returned", run,
                          {"tool": tool, "ok": True, "result": [f"doc-{self.rng.randint(1, 999)}" for _ in range(3)]},
                          node=node, step_id=step)
            self.llm_call(run, node, step)
            if fail and node == "draft_reply":
                self.emit("exception_raised", run,
                          {"type": "ValueError", "message": "reply exceeds policy length", "node": node},
                          node=node, step_id=step)
                self.emit("node_failed", run, {"error": "ValueError"}, node=node, step_id=step)
                self.emit("execution_failed", run,
                          {"error": "ValueError: reply exceeds policy length", "failed_node": node})
                return
            state[node] = "done"
            self.emit("state_updated", run, {"new_state": {node: "done", "version": i + 1}}, node=node, step_id=step)
            self.emit("checkpoint_saved", run, {"checkpoint_id": f"{run['execution_id']}-cp{i}", "version": i + 1},
                      node=node, step_id=step)
            if node == "review" and needs_human:
                self.emit("human_interrupted", run,
                          {"reason": "refund over 100 EUR needs approval", "amount_eur": 149.0},
                          node=node, step_id=step)
                self.emit("human_approved", run,
                          {"approver": "agent-supervisor-3", "comment": "approved per policy 4.2"},
                          node=node, step_id=step)
            self.emit("node_completed", run, {"duration_ms": self.rng.randint(200, 6000)}, node=node, step_id=step)
            if i + 1 < len(NODES):
                self.emit("edge_selected", run, {"from": node, "to": NODES[i + 1], "condition": "ok"}, node=node)
        self.emit("execution_completed", run, {"status": "resolved", "steps": len(NODES)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    start = dt.datetime.now(dt.UTC).replace(hour=21, minute=0, second=0, microsecond=0) - dt.timedelta(days=4)
    history = History(rng, start)
    for n in range(args.executions):
        history.run(n, fail=(n % 5 == 3), flaky_tool=(n % 4 == 1), needs_human=(n % 3 == 0))
        history.now += dt.timedelta(hours=rng.randint(2, 8))
    for event in history.events:
        sys.stdout.write(json.dumps(event) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
