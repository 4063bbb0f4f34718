"""One process of the read-while-sealing stress test (tests/test_stress_reads.py).

``python tests/stress_child.py ROLE --store S --keys K --wal-dir W --until T [--endpoint-url URL]``

ROLE ``writer`` appends events ``ev-0``, ``ev-1``, ... (batches of 1 to 4, over 8 executions)
with small seal thresholds, so that a seal runs every few dozen events, until the wall clock
passes T; it prints ``READY`` once open and, at the end, ``ACKED <n>``: events 0..n-1 were
acknowledged. The other roles read in a loop until T, through a Reader that also reads the
writer's WAL, and print one JSON summary: ``ops`` done, ``errors`` (each one a read that failed:
on an intact journal there must be none) and ``findings`` of verify runs.

- ``replay``: one execution's events, checked in seq order and back-linked;
- ``get_event``: an event by id, for an id below the count just read;
- ``count``: count_events, which never goes down;
- ``verify``: verify_store of the whole store, which must have no finding.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from wormjournal import Journal, JournalConfig, Reader, verify_store
from wormjournal.journal.keys import load_wal_key
from wormjournal.storage import open_store
from wormjournal.trust.load import read_identity

EXECUTIONS = [f"exec-{k}" for k in range(8)]


def writer(args: argparse.Namespace, store: Any) -> dict[str, Any]:
    cfg = JournalConfig(seal_max_events=40, seal_max_age_seconds=None, segment_max_events=24, row_group_rows=8,
                        key_scope=None)
    rng = random.Random(7)
    n = seals = 0
    with Journal.open(store, key_dir=args.keys, wal_dir=args.wal_dir, config=cfg) as j:
        sealed = j.sealed_seq
        print("READY", flush=True)
        while time.time() < args.until:
            size = rng.randint(1, 4)
            batch = [{"event_id": f"ev-{n + i}", "event_type": "node_completed",
                      "execution_id": EXECUTIONS[(n + i) % len(EXECUTIONS)],
                      # frames of a few pages too (random text: zstd leaves it long), which a reader copies while
                      # they are being written
                      "payload": {"n": n + i, "pad": rng.randbytes(rng.choice((100, 100, 1500, 4500))).hex()}}
                     for i in range(size)]
            j.append_batch(batch)
            n += size
            seals += j.sealed_seq != sealed  # the seal worker answers when it does: counted at the next append
            sealed = j.sealed_seq
            if j.last_seal_error is not None:
                raise j.last_seal_error
            time.sleep(0.02)  # an agent's pace: the seal worker keeps up, and the checks after stay short
        j.seal()
    return {"acked": n, "seals": seals}


def reader_loop(role: str, args: argparse.Namespace, store: Any) -> dict[str, Any]:
    journal_id = read_identity(store).journal_id
    wal_key = load_wal_key(Path(args.keys), journal_id)
    rng = random.Random(os.getpid())
    ops = 0
    errors: list[str] = []
    findings: list[str] = []
    last_count = 0
    reader: Reader | None = None
    while time.time() < args.until and len(errors) < 5:
        try:
            if role == "verify":
                report = verify_store(store)
                # before the seal worker's first seal, the store is rightly empty
                findings += [f"{f.kind}: {f.message}" for f in report.findings if f.kind != "nothing_to_verify"]
            else:
                if reader is None or rng.random() < 0.1:  # a fresh reader now and then, a long-lived one mostly
                    reader = Reader(store, wal_dir=args.wal_dir, wal_key=wal_key)
                if role == "count":
                    count = reader.count_events()
                    if count < last_count:
                        errors.append(f"count_events went down from {last_count} to {count}")
                    last_count = count
                elif role == "get_event":
                    count = reader.count_events()
                    if count:
                        k = rng.randrange(count)
                        event = reader.get_event(f"ev-{k}")
                        if event is None or event.seq != k:
                            errors.append(f"get_event(ev-{k}) of {count} gave {event and event.seq}")
                elif role == "replay":
                    execution = rng.choice(EXECUTIONS)
                    seqs = [e.seq for e in reader.events(execution)]
                    k = EXECUTIONS.index(execution)
                    if seqs != list(range(k, k + len(EXECUTIONS) * len(seqs), len(EXECUTIONS))):
                        errors.append(f"replay of {execution} gave seqs {seqs[:5]}... ({len(seqs)})")
            ops += 1
        except Exception as e:  # noqa: BLE001 - every failure is the test's finding
            errors.append(f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")
    return {"role": role, "ops": ops, "errors": errors, "findings": findings[:20], "last_count": last_count}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["writer", "replay", "get_event", "count", "verify"])
    ap.add_argument("--store", required=True)
    ap.add_argument("--keys", required=True)
    ap.add_argument("--wal-dir", required=True)
    ap.add_argument("--until", type=float, required=True)
    ap.add_argument("--endpoint-url", default=None)
    args = ap.parse_args()
    store = open_store(args.store, endpoint_url=args.endpoint_url)
    result = writer(args, store) if args.role == "writer" else reader_loop(args.role, args, store)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # no native teardown that could abort (see wormjournal.cli.run)
