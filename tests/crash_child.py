"""A writer process for the crash tests: appends forever (or N events) and reports what was acknowledged.

Run as ``python tests/crash_child.py --store S --keys K --run-id R [options]`` with the
repository root on PYTHONPATH. It opens the journal (recovering whatever the last
process left behind), prints ``READY <next_seq> <sealed_seq>``, then appends a mix of
single events and small batches over several executions, sealing automatically every
few dozen events. After every ``append``/``append_batch`` has returned it prints one
line per event, ``ACK <seq> <event_id>``, with a single write (so a line is either
whole or absent when the process is killed).

``--seal-worker`` seals in the seal worker process instead of the writer's (the journal's default; the
step tests seal in the writer, where its hooks are), and prints ``WORKER <pid>`` whenever the writer has a new
worker, so that the parent can kill it too.

``--crash-at STEP`` kills the process with SIGKILL at the ``--crash-occurrence``-th
(1-based) time a seal reaches STEP: one of the sealer's steps ("segment_stored", "index_stored",
"manifest_stored", "checkpoint_stored"), or "seal_start" (the WAL has been rotated,
nothing of the seal is stored yet), or any step of :mod:`wormjournal.steps` by its full name
("seal.manifest_stored", "shred.keys_destroyed", ...). ``--trace`` prints ``STEP <name>`` at
each step (a seal's by its short name), so that the parent can time a kill into a seal. With
``--max-events`` it stops after that many events, closes the journal and prints ``DONE <next_seq>``.

For a journal on S3, ``--store s3://bucket/prefix`` with ``--endpoint-url URL`` (the
test's moto server, or a fault proxy in front of it) and ``--wal-dir DIR`` (the WAL stays
on local disk); credentials come from the environment (the moto fixture sets dummy ones).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import sys
from typing import Any

from wormjournal import steps
from wormjournal.journal import Journal, JournalConfig
from wormjournal.storage import open_store

BASE_TS = dt.datetime(2025, 3, 14, 9, 0, 0, tzinfo=dt.UTC)
EXECUTIONS = [f"exec-{k}" for k in range(5)]
TYPES = ["node_started", "tool_called", "tool_returned", "llm_completed", "state_updated", "node_completed"]


def _say(line: str) -> None:
    os.write(1, line.encode())


def short_name(step: str) -> str:
    """A seal's steps by the names these tests have always used ("seal.start" is "seal_start")."""
    if step == "seal.start":
        return "seal_start"
    return step.removeprefix("seal.")


def install_hooks(crash_at: str | None, occurrence: int, trace: bool) -> None:
    """Hook every step (:mod:`wormjournal.steps`): print ``STEP <name>`` (with ``trace``) and die by SIGKILL
    the ``occurrence``-th time ``crash_at`` (a full or a seal's short name) is reached."""
    seen = 0

    def on_step(step: str) -> None:
        nonlocal seen
        name = short_name(step)
        if trace:
            _say(f"STEP {name}\n")
        if crash_at in (step, name):
            seen += 1
            if seen == occurrence:
                os.kill(os.getpid(), signal.SIGKILL)

    steps.hook = on_step


def make_event(rng: random.Random, run_id: str, n: int) -> dict[str, Any]:
    exec_id = rng.choice(EXECUTIONS)
    payload: Any = {"n": n, "run": run_id, "tokens": [n, n * 2]}
    if rng.random() < 0.2:
        payload = {"n": n, "text": "lorem ipsum dolor sit amet " * rng.randint(1, 30)}
    return {
        "event_id": f"{run_id}-{n}",
        "event_type": rng.choice(TYPES),
        "execution_id": exec_id,
        "thread_id": f"thread-{exec_id[-1]}",
        "step_id": f"step-{n}",
        # One fixed day (milliseconds apart), so the only segment boundaries are segment_max_events.
        "ts": BASE_TS + dt.timedelta(milliseconds=n),
        "payload": payload,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--keys", required=True)
    ap.add_argument("--stream", default="main")
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crash-at", default=None)
    ap.add_argument("--crash-occurrence", type=int, default=1)
    ap.add_argument("--trace", action="store_true", help="print STEP <name> at each step of a seal")
    ap.add_argument("--max-events", type=int, default=None)
    ap.add_argument("--max-batch", type=int, default=5)
    ap.add_argument("--seal-max-events", type=int, default=30)
    ap.add_argument("--segment-max-events", type=int, default=16)
    ap.add_argument("--row-group-rows", type=int, default=8)
    ap.add_argument("--endpoint-url", default=None, help="S3 endpoint, for an s3:// store")
    ap.add_argument("--wal-dir", default=None, help="write-ahead log directory (required for an s3:// store)")
    ap.add_argument("--seal-worker", action="store_true",
                    help="seal in the seal worker process (prints WORKER <pid> whenever it has a new one)")
    args = ap.parse_args(argv)

    install_hooks(args.crash_at, args.crash_occurrence, args.trace)
    rng = random.Random(args.seed)
    config = JournalConfig(
        seal_max_events=args.seal_max_events,
        seal_max_age_seconds=None,
        segment_max_events=args.segment_max_events,
        row_group_rows=args.row_group_rows,
        seal_worker=args.seal_worker,
    )
    store = open_store(args.store, endpoint_url=args.endpoint_url)
    j = Journal.open(store, key_dir=args.keys, stream=args.stream, wal_dir=args.wal_dir, config=config)
    _say(f"READY {j.next_seq} {j.sealed_seq}\n")
    n = 0
    worker_pid = None
    while args.max_events is None or n < args.max_events:
        size = 1 if rng.random() < 0.6 else rng.randint(2, args.max_batch)
        if args.max_events is not None:
            size = min(size, args.max_events - n)
        events = [make_event(rng, args.run_id, n + i) for i in range(size)]
        if size == 1 and rng.random() < 0.5:
            ev = dict(events[0])
            seqs = [j.append(ev.pop("event_type"), ev.pop("execution_id"), ev.pop("payload"), **ev)]
        else:
            seqs = j.append_batch(events)
        _say("".join(f"ACK {s} {e['event_id']}\n" for s, e in zip(seqs, events, strict=True)))
        n += size
        pid = j._worker.pid if j._worker is not None else None  # noqa: SLF001 - the crash tests kill it
        if pid is not None and pid != worker_pid:
            worker_pid = pid
            _say(f"WORKER {pid}\n")
    j.close()
    _say(f"DONE {j.next_seq}\n")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # no native teardown that could abort (see wormjournal.cli.run)
