#!/usr/bin/env python3
"""Benchmark per-execution lookups ("Lookup reads little") on a local-disk journal.

Builds a journal of --events agent-like events over --executions executions
(about --active executions running at once, so one execution's events are spread
over a window of the global sequence and usually sit in one or two segments),
seals it, then opens a fresh ``Reader`` and measures:

  lookup          ``Reader.events(execution_id)`` of random executions: the first (cold: it
                  reads the footers of index objects and segments) reported alone, the next
                  --warmup (the Reader opening the segments they touch, as one in service has)
                  reported apart, then --lookups more: their p50/p99 latency, bytes read per
                  lookup (``Reader.bytes_read`` differences) against the store's total size,
                  and a check that each lookup returns as many events as were appended
  get_event       ``Reader.get_event(event_id)`` of random event ids
  executions      ``Reader.executions(tenant_id=..., limit=20)``
  thread_events   ``Reader.thread_events`` of --long-threads conversations of about --thread-events
                  events each, their executions spread evenly over the whole store: latency and
                  milliseconds per 1,000 events returned
  evicted cache   the lookups again, with a fresh Reader and another sample of
                  executions, after the store's files were dropped from the OS page
                  cache (posix_fadvise DONTNEED; --no-evict skips this), without warming up

Targets (reported as PASS/MISS with the measured value, never asserted): p50 lookup
<= 10 ms and p99 <= 30 ms on local disk, bytes read per lookup <= 0.1% of the store. The
latencies of lookups that open a segment for the first time (its footer and offset index)
and of the others are also reported apart.

With --requests N,N,... it counts requests instead: journals of N segments of short
executions (24 events each), built on a local directory and on S3 (moto's server on
127.0.0.1, real HTTP), and for each the requests and LISTs of warm ``events``,
``get_event`` and ``executions(tenant, limit=20)`` (a Reader that has read before, its
cached index rows dropped: ``Catalog.drop_cached_rows``) and of a fresh Reader's first
``events``, side by side, against the budget 2*ceil(log8 N)+4.

Prints the result as one JSON object (stdout) in the shared result schema of
scripts/benchlib.py (--json FILE writes it too, for scripts/perf_report.py); a readable
table and progress go to stderr. The journal is built in a temp dir removed at the end, unless
--dir is given: then it is built there and kept, and a journal already there
(from an earlier run with the same --events/--executions/--row-group-rows/--seed)
is reused without building it again (read once first, to be in the page cache as a build leaves it).

Usage (from the repository root):

    .venv/bin/python scripts/bench_lookup.py                              # 1M events, a few minutes
    .venv/bin/python scripts/bench_lookup.py --events 100000 --executions 1000   # quick
    .venv/bin/python scripts/bench_lookup.py --dir bench-out/lookup-1m    # keep (and later reuse) the journal
    .venv/bin/python scripts/bench_lookup.py --row-group-rows 1024 --json lookup-1024.json
    .venv/bin/python scripts/bench_lookup.py --profile                    # cProfile the warm lookups to stderr
    .venv/bin/python scripts/bench_lookup.py --requests 5,50,200,600      # requests per call, local and S3
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import math
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True  # no scripts/__pycache__ from importing benchlib
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import _NODES, _WORDS, make_payload, pct  # noqa: E402  (the realistic payload generator)

from wormjournal import Journal, JournalConfig, Reader  # noqa: E402
from wormjournal.errors import ConfigError  # noqa: E402
from wormjournal.storage import layout, open_store  # noqa: E402

# The targets of one-execution replay (100 events, a store of at least 1M events), whether each execution lies
# in one segment or is spread over 40 or more.
TARGET_P50_MS = 10.0
TARGET_P99_MS = 30.0
TARGET_BYTES_PCT = 0.1
META_FILE = "bench_lookup_meta.json"
META_VERSION = 1
SEAL_MAX_EVENTS = 100_000


def log(msg: str) -> None:
    benchlib.log("bench_lookup", msg)


# -- the workload: interleaved agent executions --------------------------------------------------

# The body of an execution after execution_started: one "node" step is these six events.
_CYCLE = ("node_started", "llm_completed", "tool_called", "tool_returned", "state_updated", "node_completed")
_MODELS = ("gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022", "gpt-4o-mini")
_STATE_KEYS = ("messages", "plan", "scratchpad", "documents", "answer", "tool_results", "next_node", "retries")


def _text(rng: random.Random, size: int) -> str:
    """About ``size`` bytes of text-like words (unique per event: compresses like real text, ~2-3x)."""
    return " ".join(rng.choices(_WORDS, k=size // 6 + 4))[:size]


def _sized(rng: random.Random, ranges: tuple[tuple[float, int, int], ...]) -> int:
    """A size from a mixture: (probability, low, high) ranges, uniform within each."""
    u = rng.random()
    for p, lo, hi in ranges:
        if u < p:
            return rng.randint(lo, hi)
        u -= p
    return rng.randint(ranges[-1][1], ranges[-1][2])


class _Exec:
    __slots__ = ("execution_id", "tenant_id", "thread_id", "length", "emitted", "call_id", "tool")

    def __init__(self, execution_id: str, tenant_id: str, thread_id: str, length: int) -> None:
        self.execution_id = execution_id
        self.tenant_id = tenant_id
        self.thread_id = thread_id
        self.length = length
        self.emitted = 0
        self.call_id = ""
        self.tool = ""


class Workload:
    """``events`` events over ``executions`` executions, ``active`` of them running at a time.

    Execution lengths vary (0.3x..1.7x the mean, at least 2) and sum to ``events``
    exactly. Each event goes to a random running execution; a finished one is
    replaced by the next. Everything follows from ``seed``; only the running
    executions' state and the (id, count, tenant) of each execution are kept.
    """

    def __init__(self, seed: int, events: int, executions: int, active: int, tenants: int = 20,
                 long_threads: int = 0, thread_events: int = 5000) -> None:
        if events < 2 * executions:
            raise ValueError("need at least 2 events per execution")
        self.rng = rng = random.Random(seed)
        weights = [rng.uniform(0.3, 1.7) for _ in range(executions)]
        spare, total_w = events - 2 * executions, sum(weights)
        lengths = [2 + int(spare * w / total_w) for w in weights]
        for i in rng.sample(range(executions), events - sum(lengths)):
            lengths[i] += 1
        assert sum(lengths) == events
        self.events = events
        self.active = active
        # Tenants of unequal size (a few big customers), threads sometimes shared by executions.
        tenant_w = [1 / (k + 1) for k in range(tenants)]
        recent_threads: dict[str, list[str]] = {}
        self.executions: list[tuple[str, int, str, str]] = []  # (execution_id, events, tenant_id, thread_id)
        for n in lengths:
            tenant = f"tenant-{rng.choices(range(tenants), tenant_w)[0]:03d}"
            threads = recent_threads.setdefault(tenant, [])
            if threads and rng.random() < 0.3:
                thread = rng.choice(threads)  # a follow-up run in the same conversation
            else:
                thread = f"thread-{uuid.UUID(int=rng.getrandbits(128))}"
                threads.append(thread)
                del threads[:-50]
            self.executions.append((f"run-{uuid.UUID(int=rng.getrandbits(128))}", n, tenant, thread))
        # Long conversations: each of ``long_threads`` threads takes executions spread evenly over the whole
        # build (so over every segment) until it holds about ``thread_events`` events.
        step = max(1, executions // max(1, long_threads * max(1, thread_events // max(1, events // executions))))
        picks = iter(range(0, executions, step))
        for k in range(long_threads):
            held = 0
            for i in picks:
                x, n, tenant, _ = self.executions[i]
                self.executions[i] = (x, n, tenant, f"thread-long-{k}")
                held += n
                if held >= thread_events:
                    break

    def batches(self, size: int) -> Iterator[list[dict[str, Any]]]:
        rng = self.rng
        pending = iter(self.executions)
        running: list[_Exec] = []
        for _ in range(self.active):
            nxt = next(pending, None)
            if nxt is None:
                break
            running.append(_Exec(nxt[0], nxt[2], nxt[3], nxt[1]))
        batch: list[dict[str, Any]] = []
        while running:
            k = rng.randrange(len(running))
            x = running[k]
            batch.append(self._event(x))
            x.emitted += 1
            if x.emitted == x.length:
                nxt = next(pending, None)
                if nxt is None:
                    running[k] = running[-1]
                    running.pop()
                else:
                    running[k] = _Exec(nxt[0], nxt[2], nxt[3], nxt[1])
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _event(self, x: _Exec) -> dict[str, Any]:
        rng = self.rng
        i = x.emitted
        step = (i - 1) // len(_CYCLE)
        node = _NODES[step % len(_NODES)]
        ev: dict[str, Any] = {"execution_id": x.execution_id, "tenant_id": x.tenant_id, "thread_id": x.thread_id}
        if i == 0:
            ev.update(event_type="execution_started", payload={
                "graph": "support-agent",
                "input": {"messages": [{"role": "user", "content": _text(rng, rng.randint(80, 600))}]},
                "config": {"recursion_limit": 50, "model": rng.choice(_MODELS), "temperature": 0.2},
            })
            return ev
        if i == x.length - 1:
            ev.update(event_type="execution_completed", payload={
                "status": "completed",
                "output": _text(rng, rng.randint(100, 1200)),
                "usage": {"prompt_tokens": rng.randint(2000, 90000), "completion_tokens": rng.randint(100, 9000)},
                "steps": step + 1,
            })
            return ev
        etype = _CYCLE[(i - 1) % len(_CYCLE)]
        ev.update(event_type=etype, node=node, step_id=f"step-{step:04d}")
        if etype == "node_started":
            payload: Any = {"node": node, "step": step, "input_keys": rng.sample(_STATE_KEYS, rng.randint(1, 4))}
        elif etype == "llm_completed":
            payload = {
                "model": rng.choice(_MODELS),
                "finish_reason": rng.choice(["tool_calls", "stop"]),
                "usage": {"prompt_tokens": rng.randint(200, 12000), "completion_tokens": rng.randint(10, 1500)},
                "content": _text(rng, _sized(rng, ((0.7, 150, 800), (0.25, 800, 3000), (0.05, 3000, 8000)))),
            }
        elif etype == "tool_called":
            payload = make_payload(rng, rng.randint(400, 1200))
            x.call_id, x.tool = payload["call_id"], payload["tool"]
            ev["correlation_id"] = x.call_id
        elif etype == "tool_returned":
            payload = {
                "call_id": x.call_id,
                "tool": x.tool,
                "status": "ok" if rng.random() < 0.95 else "error",
                "latency_ms": rng.randint(20, 4000),
                "result": _text(rng, _sized(rng, ((0.6, 100, 600), (0.3, 600, 2500), (0.1, 2500, 12000)))),
            }
            ev["correlation_id"] = x.call_id
        elif etype == "state_updated":
            keys = rng.sample(_STATE_KEYS, rng.randint(1, 3))
            payload = {"updated": keys, "values": {k: _text(rng, rng.randint(30, 200)) for k in keys}}
        else:  # node_completed
            payload = {"node": node, "status": "ok", "duration_ms": rng.randint(50, 30000),
                       "next": _NODES[(step + 1) % len(_NODES)]}
        ev["payload"] = payload
        return ev


# -- build ---------------------------------------------------------------------------------------


def build(store: Path, keys: Path, wl: Workload, config: JournalConfig, batch: int) -> dict[str, Any]:
    log(f"building {wl.events:,} events over {len(wl.executions):,} executions "
        f"({wl.active} running at a time), row_group_rows={config.row_group_rows}, in {store}")
    store.mkdir(parents=True, exist_ok=True)
    j = Journal.create(store, key_dir=keys, config=config)
    wall0 = time.perf_counter()
    journal_secs = 0.0
    payload_bytes = 0
    done = 0
    step = max(wl.events // 20, 1)
    next_report = step
    try:
        for events in wl.batches(batch):
            payload_bytes += sum(len(json.dumps(e["payload"], separators=(",", ":"))) for e in events)  # not timed
            t0 = time.perf_counter()
            j.append_batch(events)  # seals by itself every SEAL_MAX_EVENTS events
            journal_secs += time.perf_counter() - t0
            done += len(events)
            if done >= next_report:
                log(f"  {done:,}/{wl.events:,} events ({100 * done / wl.events:.0f}%), "
                    f"{done / journal_secs:,.0f} events/s in append+seal, {time.perf_counter() - wall0:.0f} s")
                next_report += step
        t0 = time.perf_counter()
        j.seal()
        final_seal = time.perf_counter() - t0
        journal_secs += final_seal
    finally:
        j.close()
    wall = time.perf_counter() - wall0
    log(f"built in {wall:.1f} s ({journal_secs:.1f} s in append_batch + seal)")
    return {
        "events": wl.events,
        "executions": len(wl.executions),
        "active_executions": wl.active,
        "batch_size": batch,
        "row_group_rows": config.row_group_rows,
        "seal_max_events": config.seal_max_events,
        "wall_seconds": round(wall, 2),
        "journal_seconds": round(journal_secs, 2),  # append_batch (incl. its automatic seals) + final seal
        "final_seal_seconds": round(final_seal, 2),
        "events_per_s": round(wl.events / journal_secs),
        "events_per_s_wall": round(wl.events / wall),  # including generating the events
        "mean_payload_json_bytes": round(payload_bytes / wl.events, 1),
    }


# -- store statistics ----------------------------------------------------------------------------


def store_stats(store: Path) -> dict[str, Any]:
    """Sizes of the store's objects (not the .wal and .locks directories), and its index objects."""
    sizes: Counter[str] = Counter()
    files = 0
    segments = 0
    index: Counter[str] = Counter()
    index_bytes: Counter[str] = Counter()
    for root, dirs, names in os.walk(store):
        if Path(root) == store:
            dirs[:] = [d for d in dirs if d not in (".wal", ".locks")]
        for name in names:
            path = Path(root, name)
            rel = path.relative_to(store).as_posix()
            size = path.stat().st_size
            files += 1
            top = rel.split("/", 1)[0] if "/" in rel else "other"
            sizes[top] += size
            if layout.parse_segment(rel):
                segments += 1
            parsed = layout.parse_index(rel)
            if parsed:
                span = parsed[3] - parsed[2] + 1
                index[f"{parsed[1]} over {span:>4} segment(s)"] += 1
                index_bytes[parsed[1]] += size
    total = sum(sizes.values())
    return {
        "total_bytes": total,
        "files": files,
        "bytes_by_dir": dict(sorted(sizes.items())),
        "segments": segments,
        "index_objects": sum(index.values()),
        "index_objects_by_kind": dict(sorted(index.items())),
        "index_bytes_by_kind": dict(sorted(index_bytes.items())),
    }


def evict_page_cache(store: Path) -> int:
    """Drop the store's files from the OS page cache (clean pages only, hence the sync first)."""
    os.sync()
    count = 0
    for root, _, names in os.walk(store):
        for name in names:
            fd = os.open(Path(root, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                count += 1
            finally:
                os.close(fd)
    return count


def warm_page_cache(store: Path) -> int:
    """Read the store's files once, so that a journal reused from an earlier run is in the OS page cache as a
    build leaves it (hosts that page out memory idle for a while, DAMON's pageout, evict it meanwhile)."""
    total = 0
    for root, _, names in os.walk(store):
        for name in names:
            with open(Path(root, name), "rb") as f:
                while chunk := f.read(1 << 20):
                    total += len(chunk)
    return total


# -- measuring -------------------------------------------------------------------------------------


def ms_summary(ns: list[int]) -> dict[str, Any]:
    return benchlib.summary(ns, "ms")


def bytes_summary(values: list[int], store_bytes: int) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    v = sorted(values)
    p50 = statistics.median(v)
    return {
        "n": len(v),
        "p50": round(p50),
        "p99": pct(v, 0.99),
        "mean": round(statistics.fmean(v)),
        "max": v[-1],
        "p50_pct_of_store": round(100 * p50 / store_bytes, 4),
        "p99_pct_of_store": round(100 * pct(v, 0.99) / store_bytes, 4),
        "max_pct_of_store": round(100 * v[-1] / store_bytes, 4),
    }


def run_lookups(r: Reader, sample: list[tuple[str, int, str, str]], store_bytes: int, rng: random.Random,
                profile: bool, warmup: int = 0) -> tuple[dict[str, Any], list[str]]:
    """Lookups of ``sample`` with one Reader; the first one (cold) is reported alone, the next ``warmup`` (the
    Reader opening the segments they touch) apart, and the figures are those of the lookups after them."""
    clock = time.perf_counter_ns
    lat: list[int] = []
    opening: list[int] = []  # the latencies of lookups that opened a segment no lookup before had opened
    settled: list[int] = []  # and of the others
    got_bytes: list[int] = []
    requests: list[int] = []
    segs: Counter[int] = Counter()
    mismatches: list[dict[str, Any]] = []
    returned = 0
    event_ids: list[str] = []
    cold: dict[str, Any] = {}
    warming: list[int] = []
    warming_opened = 0
    prof = cProfile.Profile() if profile else None
    for k, (xid, expected, _, _) in enumerate(sample):
        if prof is not None and k == 1 + warmup:
            prof.enable()
        b0, q0, opened = r.bytes_read, r.store.requests, set(r._files)  # noqa: SLF001 - the segments opened
        t0 = clock()
        events = r.events(xid)
        spent = clock() - t0
        nbytes, nreq = r.bytes_read - b0, r.store.requests - q0
        if len(events) != expected:
            mismatches.append({"execution_id": xid, "expected": expected, "returned": len(events)})
        returned += len(events)
        if events:
            event_ids.append(rng.choice(events).event_id)
        if k == 0:
            cold = {"ms": round(spent / 1e6, 3), "bytes": nbytes, "requests": nreq,
                    "pct_of_store": round(100 * nbytes / store_bytes, 4), "events": len(events)}
            continue
        if k <= warmup:
            warming.append(spent)
            warming_opened += bool({e.segment for e in events} - opened - {None})
            continue
        lat.append(spent)
        (opening if {e.segment for e in events} - opened - {None} else settled).append(spent)
        got_bytes.append(nbytes)
        requests.append(nreq)
        segs[len({e.segment for e in events})] += 1
    if prof is not None:
        prof.disable()
        text = benchlib.profile_text(prof, tottime=25, cumulative=30)
        print(f"\n===== cProfile: {len(lat)} warm lookups =====\n{text}", file=sys.stderr, flush=True)
    return {
        "lookups": len(sample),
        "cold_first": cold,
        "warmup": {**ms_summary(warming), "opening_segments": warming_opened},
        "latency": ms_summary(lat),
        "latency_opening_segments": ms_summary(opening),
        "latency_segments_opened": ms_summary(settled),
        "bytes_per_lookup": bytes_summary(got_bytes, store_bytes),
        "requests_per_lookup": {"p50": statistics.median(requests), "max": max(requests)} if requests else {},
        "events_per_lookup_mean": round(returned / len(sample), 1) if sample else 0,
        "segments_per_lookup": {str(k): v for k, v in sorted(segs.items())},
        "count_mismatches": len(mismatches),
        "mismatch_examples": mismatches[:5],
    }, event_ids


def run_get_event(r: Reader, event_ids: list[str], store_bytes: int) -> dict[str, Any]:
    clock = time.perf_counter_ns
    lat, got, wrong = [], [], 0
    cold: dict[str, Any] = {}
    for k, eid in enumerate(event_ids):
        b0 = r.bytes_read
        t0 = clock()
        e = r.get_event(eid)
        spent = clock() - t0
        if e is None or e.event_id != eid:
            wrong += 1
        if k == 0:
            cold = {"ms": round(spent / 1e6, 3), "bytes": r.bytes_read - b0}
            continue
        lat.append(spent)
        got.append(r.bytes_read - b0)
    return {"lookups": len(event_ids), "cold_first": cold, "latency": ms_summary(lat),
            "bytes_per_lookup": bytes_summary(got, store_bytes), "not_found_or_wrong": wrong}


def run_executions(r: Reader, tenants: list[str], store_bytes: int) -> dict[str, Any]:
    clock = time.perf_counter_ns
    lat, got, counts = [], [], []
    for tenant in tenants:
        b0 = r.bytes_read
        t0 = clock()
        rows = r.executions(tenant_id=tenant, limit=20)
        lat.append(clock() - t0)
        got.append(r.bytes_read - b0)
        counts.append(len(rows))
        if any(s.tenant_id != tenant for s in rows):
            raise SystemExit(f"executions(tenant_id={tenant!r}) returned another tenant's execution")
    return {"calls": len(tenants), "latency": ms_summary(lat), "bytes_per_call": bytes_summary(got, store_bytes),
            "rows_returned": counts}


def run_threads(r: Reader, executions: list[tuple[str, int, str, str]], rounds: int = 3) -> dict[str, Any]:
    """``thread_events`` of each long thread (its executions spread over the whole store), ``rounds`` times:
    latency, events returned, and milliseconds per 1,000 events (linear in what it returns if that is flat)."""
    threads: dict[str, int] = {}
    for _, n, _, thread in executions:
        if thread.startswith("thread-long-"):
            threads[thread] = threads.get(thread, 0) + n
    lat, per_k, wrong, segs = [], [], 0, []
    for _ in range(rounds):
        for thread, expected in sorted(threads.items()):
            r.catalog.drop_cached_rows()
            t0 = time.perf_counter_ns()
            got = r.thread_events(thread)
            spent = time.perf_counter_ns() - t0
            wrong += len(got) != expected
            lat.append(spent)
            per_k.append(spent / 1e6 / max(1, len(got)) * 1000)
            segs.append(len({e.segment for e in got}))
    return {"threads": len(threads), "events_per_thread": sorted(threads.values()), "latency": ms_summary(lat),
            "ms_per_1000_events_p50": round(statistics.median(per_k), 2) if per_k else None,
            "segments_per_thread": sorted(set(segs)), "count_mismatches": wrong}


def measure(store: Path, executions: list[tuple[str, int, str, str]], n_lookups: int, n_get: int,
            store_bytes: int, rng: random.Random, profile: bool, warmup: int = 0) -> tuple[dict[str, Any], list[str]]:
    t0 = time.perf_counter()
    r = Reader(store)
    reader_open = {"ms": round((time.perf_counter() - t0) * 1e3, 3), "bytes": r.bytes_read}
    sample = rng.sample(executions, min(n_lookups + warmup + 1, len(executions)))
    log(f"lookups: {len(sample)} executions (the first cold, then {warmup} warming the Reader up)")
    lookups, event_ids = run_lookups(r, sample, store_bytes, rng, profile, warmup)
    log(f"get_event: {min(n_get, len(event_ids))} event ids")
    get_event = run_get_event(r, event_ids[:n_get], store_bytes)
    tenants = sorted({x[2] for x in executions})
    picks = (tenants * 2)[:10] if len(tenants) < 10 else rng.sample(tenants, 10)
    log(f"executions(tenant_id=..., limit=20): {len(picks)} calls")
    execs = run_executions(r, picks, store_bytes)
    log("thread_events of the long threads")
    threads = run_threads(r, executions)
    return {"reader_open": reader_open, "events": lookups, "get_event": get_event, "executions": execs,
            "threads": threads}, \
        [x[0] for x in sample]


# -- reporting ---------------------------------------------------------------------------------------


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1024
    return str(n)


def print_table(res: dict[str, Any]) -> None:
    """The result (the shared schema) as a readable table, on stderr."""
    p, r = res["params"], res["results"]
    b, st = r["build"], r["store"]
    total = st["total_bytes"]
    rows: list[tuple[str, str, str]] = []

    def section(title: str) -> None:
        rows.append((f"-- {title}", "", ""))

    def row(label: str, value: str, target: str = "") -> None:
        rows.append((label, value, target))

    section("journal")
    row("events / executions", f"{p['events']:,} / {p['executions']:,} (~{p['active']} running at a time)")
    row("row_group_rows", f"{p['row_group_rows']:,}")
    if b.get("reused"):
        row("build", f"reused journal in {p['dir']} "
                     f"(built earlier: {b['journal_seconds']} s, {b['events_per_s']:,} events/s)")
    else:
        row("build time (append_batch + seal)", f"{b['journal_seconds']:.1f} s  ({b['events_per_s']:,} events/s)")
        row("build wall time (incl. generating)", f"{b['wall_seconds']:.1f} s  ({b['events_per_s_wall']:,} events/s)")
    row("mean payload (JSON)", f"{b['mean_payload_json_bytes']:,.0f} B")
    row("store size (excl. .wal, .locks)", f"{human(total)}  ({total:,} B, {total / p['events']:,.0f} B/event)")
    for d, n in st["bytes_by_dir"].items():
        row(f"  {d}/", human(n))
    row("segments", f"{st['segments']}")
    row("index objects", f"{st['index_objects']}")
    for k, v in st["index_objects_by_kind"].items():
        row(f"  {k}", f"{v}")
    for k, v in st.get("index_bytes_by_kind", {}).items():
        row(f"  {k} bytes", f"{human(v)}  ({v / p['events']:,.1f} B/event)")

    for key, title in (("warm", "lookups, page cache as left by the build"),
                       ("evicted", "lookups, store evicted from page cache")):
        m = r.get(key)
        if not m:
            continue
        ev = m["events"]
        lat, by, cold = ev["latency"], ev["bytes_per_lookup"], ev["cold_first"]
        section(f"{title} (events(execution_id), fresh Reader)")
        row("Reader() open", f"{m['reader_open']['ms']:.2f} ms, {human(m['reader_open']['bytes'])}")
        row("first lookup (cold: footers)",
            f"{cold['ms']:.2f} ms, {human(cold['bytes'])} ({cold['pct_of_store']:.3f}% of store), "
            f"{cold['requests']} reads")
        wu = ev.get("warmup", {})
        if wu.get("n"):
            row(f"next {wu['n']} lookups, warming up ({wu['opening_segments']} opening segments) p50 / p99 / max",
                f"{wu['p50_ms']:.2f} / {wu['p99_ms']:.2f} / {wu['max_ms']:.2f} ms")
        row(f"lookup latency p50 (n={lat['n']})", f"{lat['p50_ms']:.2f} ms",
            f"<= {TARGET_P50_MS:g} ms  {mark(lat['p50_ms'] <= TARGET_P50_MS)}")
        row("lookup latency p99 / mean / max", f"{lat['p99_ms']:.2f} / {lat['mean_ms']:.2f} / {lat['max_ms']:.2f} ms",
            f"p99 <= {TARGET_P99_MS:g} ms  {mark(lat['p99_ms'] <= TARGET_P99_MS)}")
        for name, label in (("latency_opening_segments", "that open a segment for the first time"),
                            ("latency_segments_opened", "of segments opened before")):
            part = ev[name]
            if part["n"]:
                row(f"  lookups {label} (n={part['n']}) p50 / p99 / max",
                    f"{part['p50_ms']:.2f} / {part['p99_ms']:.2f} / {part['max_ms']:.2f} ms")
        row("bytes/lookup p50", f"{human(by['p50'])} = {by['p50_pct_of_store']:.3f}% of store",
            f"<= {TARGET_BYTES_PCT:g}%  {mark(by['p50_pct_of_store'] <= TARGET_BYTES_PCT)}")
        row("bytes/lookup max", f"{human(by['max'])} = {by['max_pct_of_store']:.3f}% of store",
            f"<= {TARGET_BYTES_PCT:g}%  {mark(by['max_pct_of_store'] <= TARGET_BYTES_PCT)}")
        row("bytes/lookup mean / p99", f"{human(by['mean'])} / {human(by['p99'])}")
        row("reads/lookup p50 / max",
            f"{ev['requests_per_lookup'].get('p50')} / {ev['requests_per_lookup'].get('max')}")
        row("segments per lookup", ", ".join(f"{k} seg: {v}" for k, v in ev["segments_per_lookup"].items()))
        row("events per lookup (mean)", f"{ev['events_per_lookup_mean']}")
        row("event count mismatches", f"{ev['count_mismatches']}", f"== 0  {mark(ev['count_mismatches'] == 0)}")
        ge = m["get_event"]
        if ge["latency"]["n"]:
            row("get_event first (cold)", f"{ge['cold_first']['ms']:.2f} ms, {human(ge['cold_first']['bytes'])}")
            row(f"get_event p50 / p99 (n={ge['latency']['n']})",
                f"{ge['latency']['p50_ms']:.2f} / {ge['latency']['p99_ms']:.2f} ms, "
                f"{human(ge['bytes_per_lookup']['p50'])}/lookup p50", f"wrong: {ge['not_found_or_wrong']}")
        xs = m["executions"]
        row(f"executions(tenant, limit=20) p50/max (n={xs['calls']})",
            f"{xs['latency']['p50_ms']:.2f} / {xs['latency']['max_ms']:.2f} ms, "
            f"{human(xs['bytes_per_call']['p50'])}/call p50")
        th = m.get("threads")
        if th and th["threads"]:
            row(f"thread_events p50/max ({th['threads']} threads of {min(th['events_per_thread']):,}.."
                f"{max(th['events_per_thread']):,} events over {min(th['segments_per_thread'])}.."
                f"{max(th['segments_per_thread'])} segments)",
                f"{th['latency']['p50_ms']:.1f} / {th['latency']['max_ms']:.1f} ms, "
                f"{th['ms_per_1000_events_p50']:.1f} ms per 1,000 events", f"wrong: {th['count_mismatches']}")

    w1 = max(len(r[0]) for r in rows if not r[0].startswith("-- "))
    w2 = max(len(r[1]) for r in rows if r[2])  # longer values (no target) run past the column
    m = res["machine"]
    lines = [f"wormjournal lookup benchmark  (wormjournal {m['wormjournal']}, python {m['python']}, "
             f"pyarrow {m['pyarrow']}, {m['cpu_count']} cpus)"]
    for label, value, target in rows:
        if label.startswith("-- "):
            lines.append(f"\n{label}")
        else:
            lines.append(f"  {label:<{w1}}  {value:<{w2}}  {target}".rstrip())
    lines.append("")
    for t in res["targets"].values():
        lines.append(f"  target {t['target']}: {t['value']}  {mark(t['met'])}")
    lines.append(f"  wall time {res['wall_seconds']} s")
    print("\n".join(lines), file=sys.stderr, flush=True)


# -- requests per lookup (--requests) ---------------------------------------------------------------------------


REQ_PER_SEGMENT = 24  # events per segment: 4 executions of 6 events, each in one segment


def build_small(store: Any, work: Path, segments: int) -> list[str]:
    """A journal of ``segments`` segments of short executions (each in one segment), 3 tenants, threads."""
    config = JournalConfig(seal_max_age_seconds=None, seal_max_events=REQ_PER_SEGMENT, seal_worker=False)
    ids: list[str] = []
    with Journal.create(store, key_dir=work / "keys", wal_dir=work / "wal", config=config) as j:
        for s in range(segments):
            batch = []
            for k in range(REQ_PER_SEGMENT // 6):
                x = f"run-{s:05d}-{k}"
                ids.append(x)
                batch += [{"event_type": "node_completed", "execution_id": x, "tenant_id": f"tenant-{k % 3}",
                           "thread_id": f"thread-{(s * 4 + k) % 40}", "payload": {"i": i, "text": "x" * 200}}
                          for i in range(6)]
            j.append_batch(batch)
            j.seal()
    return ids


def count_requests(store: Any, ids: list[str], segments: int, rng: random.Random) -> dict[str, Any]:
    """Requests and LISTs of warm reads (a Reader that has read before: footers known, row groups not
    cached, Catalog.drop_cached_rows) and of a fresh Reader's first events()."""
    r = Reader(store)
    for x in rng.sample(ids, 3):  # warm up: manifests, key history, the footers of each kind's index objects
        r.get_event(r.events(x)[0].event_id)
    r.executions("tenant-0", limit=20)
    out: dict[str, Any] = {}
    sample = rng.sample(ids, 5)
    event_ids = {x: Reader(store).events(x)[2].event_id for x in sample}
    calls = {"events": lambda x: r.events(x), "get_event": lambda x: r.get_event(event_ids[x]),
             "executions(tenant, limit=20)": lambda x: r.executions("tenant-1", limit=20)}
    for name, call in calls.items():
        requests, lists = [], []
        for x in sample:
            r.catalog.drop_cached_rows()
            q0, l0 = r.store.requests, r.store.lists
            call(x)
            requests.append(r.store.requests - q0)
            lists.append(r.store.lists - l0)
        out[name] = {"max": max(requests), "p50": statistics.median(requests), "lists": max(lists)}
    fresh = Reader(store)
    fresh.events(sample[0])
    out["fresh Reader + events"] = {"max": fresh.store.requests, "p50": fresh.store.requests,
                                    "lists": fresh.store.lists}
    return out


# A fresh reader's requests beyond the warm budget: journal.json, the key history (a LIST and its entry), the
# checkpoints and the heads (a LIST and the newest of each), the look for a manifest after them
# (tests/test_index_runs.py alike).
FRESH_EXTRA = 8


def run_requests(sizes: list[int], seed: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    base = Path(tempfile.mkdtemp(prefix="bench-requests-"))
    server = None
    try:
        for backend in ("local", "s3"):
            if backend == "s3":
                server, endpoint = start_moto()
            for n in sizes:
                t0 = time.perf_counter()
                if backend == "local":
                    store: Any = base / f"local-{n}" / "store"
                else:
                    bucket = f"requests-{n}"
                    __import__("boto3").client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket,
                                                                           ObjectLockEnabledForBucket=True)
                    store = open_store(f"s3://{bucket}/j", endpoint_url=endpoint)
                ids = build_small(store, base / f"{backend}-{n}", n)
                log(f"{backend}: {n} segments built in {time.perf_counter() - t0:.1f} s")
                counts = count_requests(store, ids, n, random.Random(seed))
                results.setdefault(str(n), {})[backend] = counts
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return results


def start_moto() -> tuple[Any, str]:
    """moto's S3 server on 127.0.0.1 (a real HTTP endpoint), with made-up credentials."""
    from moto.server import ThreadedMotoServer

    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def print_requests(res: dict[str, Any]) -> None:
    lines = ["requests per call (max of 5; p50 in brackets), LISTs, budget 2*ceil(log8 n)+4 for warm calls",
             f"  {'segments':>8}  {'call':<30} {'local':>14} {'s3 (moto)':>14}  budget"]
    for n, by in res.items():
        budget = 2 * math.ceil(math.log(int(n), 8)) + 4
        for call in by["local"]:
            cells = []
            for backend in ("local", "s3"):
                c = by[backend][call]
                cells.append(f"{c['max']} ({c['p50']:g}), {c['lists']} L")
            warm = not call.startswith("fresh")
            ok = all(by[b][call]["max"] <= budget and not by[b][call]["lists"] for b in ("local", "s3"))
            lines.append(f"  {n:>8}  {call:<30} {cells[0]:>14} {cells[1]:>14}  "
                         + (f"{budget} {mark(ok)}" if warm else "-"))
    print("\n".join(lines), file=sys.stderr, flush=True)


# -- main ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="events in the journal (default 1000000)")
    ap.add_argument("--executions", type=int, default=10_000, help="executions they belong to (default 10000)")
    ap.add_argument("--lookups", type=int, default=300, help="random executions looked up (default 300)")
    ap.add_argument("--warmup", type=int, default=100,
                    help="lookups after the first (cold) one and before the measured ones, reported apart: a Reader "
                         "in service has opened the segments (default 100; 0 measures them)")
    ap.add_argument("--get-events", type=int, default=100,
                    help="random event ids looked up with get_event (default 100)")
    ap.add_argument("--active", type=int, default=150,
                    help="executions running at a time while building (default 150)")
    ap.add_argument("--dir", type=Path, default=None,
                    help="build the journal here and keep it; reuse the journal there if present "
                         "(default: a temp dir, removed)")
    ap.add_argument("--row-group-rows", type=int, default=None,
                    help=f"JournalConfig.row_group_rows, a power of two (default {JournalConfig().row_group_rows})")
    ap.add_argument("--page-rows", type=int, default=None,
                    help=f"JournalConfig.page_rows, a power of two (default {JournalConfig().page_rows})")
    ap.add_argument("--segment-events", type=int, default=SEAL_MAX_EVENTS,
                    help=f"events per sealed segment (seal_max_events, default {SEAL_MAX_EVENTS})")
    ap.add_argument("--batch", type=int, default=1000, help="events per append_batch (default 1000)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the workload and of the samples (default 1)")
    ap.add_argument("--no-evict", action="store_true",
                    help="skip the lookups after evicting the store from the page cache")
    ap.add_argument("--profile", action="store_true", help="cProfile the warm lookups (top costs to stderr)")
    ap.add_argument("--long-threads", type=int, default=3,
                    help="threads (conversations) whose executions are spread over the whole store (default 3)")
    ap.add_argument("--thread-events", type=int, default=5000,
                    help="events of each of those threads (default 5000)")
    ap.add_argument("--requests", default=None, metavar="N,N,...",
                    help="instead: count the requests of warm and fresh reads on journals of N segments, on a local "
                         "directory and on S3 (moto's server), side by side (e.g. 5,50,200,600)")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the result to FILE")
    ap.add_argument("--json-out", dest="json", type=Path, help=argparse.SUPPRESS)  # the old name
    args = ap.parse_args(argv)
    if args.requests is not None:
        started = time.perf_counter()
        sizes = [int(v) for v in args.requests.split(",")]
        counts = run_requests(sizes, args.seed)
        print_requests(counts)
        targets = {}
        for call in ("events", "get_event", "executions(tenant, limit=20)"):
            worst = {n: max(by[b][call]["max"] - 2 * math.ceil(math.log(int(n), 8)) - 4 for b in by)
                     for n, by in counts.items()}
            lists = sum(by[b][call]["lists"] for by in counts.values() for b in by)
            targets[f"{call}_requests_within_budget"] = benchlib.target(
                f"warm {call}: no LIST and at most 2*ceil(log8 n)+4 requests at every n, local and S3 "
                "(largest excess over the budget)", max(worst.values()), max(worst.values()) <= 0 and not lists)
        fresh = {n: max(by[b]["fresh Reader + events"]["max"] - 2 * math.ceil(math.log(int(n), 8)) - 4 for b in by)
                 for n, by in counts.items()}
        targets["fresh_requests_within_budget"] = benchlib.target(
            f"a fresh Reader's first events(): at most {FRESH_EXTRA} requests over the warm budget at every n (the "
            "trust, the newest checkpoint and head), local and S3 (largest excess over the budget)",
            max(fresh.values()), max(fresh.values()) <= FRESH_EXTRA)
        result = benchlib.result("lookup-requests", Path(tempfile.gettempdir()),
                                 {"segments": sizes, "events_per_segment": REQ_PER_SEGMENT, "seed": args.seed},
                                 {"requests": counts}, targets, started=started)
        for t in targets.values():
            print(f"  target {t['target']}: {t['value']}  {mark(t['met'])}", file=sys.stderr)
        benchlib.emit(result, args.json)
        return 0
    for name in ("events", "executions", "lookups", "active", "batch", "segment_events"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.events < 2 * args.executions:
        ap.error("--events must be at least 2 x --executions")
    try:
        extra: dict[str, Any] = {} if args.row_group_rows is None else {"row_group_rows": args.row_group_rows}
        if args.page_rows is not None:
            extra["page_rows"] = args.page_rows
        config = JournalConfig(seal_max_age_seconds=None, seal_max_events=args.segment_events, **extra)
    except ConfigError as e:
        ap.error(str(e))

    started = time.perf_counter()
    params = {"events": args.events, "executions": args.executions, "active": args.active,
              "long_threads": args.long_threads, "thread_events": args.thread_events,
              "row_group_rows": config.row_group_rows, "seed": args.seed, "batch": args.batch,
              "segment_events": args.segment_events}
    if args.page_rows is not None:  # only when given: journals built before the option are reused as they are
        params["page_rows"] = args.page_rows
    temp = args.dir is None
    base = Path(tempfile.mkdtemp(prefix="bench-lookup-")) if temp else args.dir.absolute()
    store, keys, meta_path = base / "store", base / "keys", base / META_FILE
    try:
        if (store / layout.JOURNAL_OBJECT).exists():
            if not meta_path.exists():
                raise SystemExit(f"{store} holds a journal but {meta_path} is missing (an interrupted build?): "
                                 "remove the directory or use another --dir")
            meta = json.loads(meta_path.read_text())
            if meta.get("version") != META_VERSION or meta["params"] != params:
                raise SystemExit(f"the journal in {base} was built with {meta.get('params')}, not {params}: "
                                 "use another --dir (or the same options)")
            log(f"reusing the journal in {store} (built earlier); reading it into the page cache: "
                f"{warm_page_cache(store):,} bytes")
            build_info = {**meta["build"], "reused": True}
            executions = [tuple(x) for x in meta["executions"]]
        else:
            if store.exists() and any(store.iterdir()):
                raise SystemExit(f"{store} is not empty and holds no journal")
            wl = Workload(args.seed, args.events, args.executions, args.active, long_threads=args.long_threads,
                          thread_events=args.thread_events)
            build_info = build(store, keys, wl, config, args.batch)
            executions = wl.executions
            if not temp:
                meta_path.write_text(json.dumps({"version": META_VERSION, "params": params, "build": build_info,
                                                 "executions": executions}))
        executions = [(str(x), int(n), str(t), str(th)) for x, n, t, th in executions]

        st = store_stats(store)
        total = st["total_bytes"]
        log(f"store: {total:,} bytes, {st['segments']} segments, {st['index_objects']} index objects")
        rng = random.Random(args.seed + 1)
        warm, looked_up = measure(store, executions, args.lookups, args.get_events, total, rng, args.profile,
                                  args.warmup)
        evicted = None
        if not args.no_evict:
            n = evict_page_cache(store)
            log(f"evicted {n} files of the store from the page cache; lookups of other executions, fresh Reader")
            seen = set(looked_up)
            rest = [x for x in executions if x[0] not in seen] or executions
            evicted, _ = measure(store, rest, args.lookups, args.get_events, total, rng, False)

        w = warm["events"]
        p50, by = w["latency"].get("p50_ms"), w["bytes_per_lookup"]
        mismatches = w["count_mismatches"] + (evicted["events"]["count_mismatches"] if evicted else 0)
        targets = {
            f"lookup_p50_le_{TARGET_P50_MS:g}ms": benchlib.target(
                f"events(execution_id) p50 <= {TARGET_P50_MS:g} ms on local disk (ms)", p50,
                p50 is not None and p50 <= TARGET_P50_MS),
            f"lookup_p99_le_{TARGET_P99_MS:g}ms": benchlib.target(
                f"events(execution_id) p99 <= {TARGET_P99_MS:g} ms on local disk (ms)", w["latency"].get("p99_ms"),
                w["latency"].get("p99_ms", math.inf) <= TARGET_P99_MS),
            f"bytes_per_lookup_p50_le_{TARGET_BYTES_PCT:g}pct_of_store": benchlib.target(
                f"bytes read per lookup p50 <= {TARGET_BYTES_PCT:g}% of the store (%)", by.get("p50_pct_of_store"),
                by.get("p50_pct_of_store", math.inf) <= TARGET_BYTES_PCT),
            f"bytes_per_lookup_max_le_{TARGET_BYTES_PCT:g}pct_of_store": benchlib.target(
                f"bytes read per lookup max <= {TARGET_BYTES_PCT:g}% of the store (%)", by.get("max_pct_of_store"),
                by.get("max_pct_of_store", math.inf) <= TARGET_BYTES_PCT),
            "event_counts_match": benchlib.target(
                "every lookup returns as many events as were appended (lookups that differ)", mismatches,
                mismatches == 0),
        }
        if evicted is not None:
            evicted_p50 = evicted["events"]["latency"].get("p50_ms")
            targets[f"evicted_cache_lookup_p50_le_{TARGET_P50_MS:g}ms"] = benchlib.target(
                f"events(execution_id) p50 <= {TARGET_P50_MS:g} ms, store evicted from the page cache (ms)",
                evicted_p50, evicted_p50 is not None and evicted_p50 <= TARGET_P50_MS)
        result = benchlib.result(
            "lookup", base, {**params, "lookups": args.lookups, "warmup": args.warmup,
                             "get_events": args.get_events, "evict": not args.no_evict,
                             "dir": None if temp else base.name},
            {"build": build_info, "store": st, "warm": warm, "evicted": evicted},
            targets, started=started)  # while the store is there: its file system
    finally:
        if temp:
            shutil.rmtree(base, ignore_errors=True)
    print_table(result)
    benchlib.emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
