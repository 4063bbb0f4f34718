#!/usr/bin/env python3
"""Benchmark the write and verify paths of wormjournal on one disk, in one run.

Prints one JSON object to stdout (progress goes to stderr) in the shared result schema
(scripts/benchlib.py; --json FILE writes it too, for scripts/perf_report.py), whose results hold:

  single_append      durable single-event ``append`` latency (1 KiB JSON payload), the seal
                     worker sealing every 200 events in the background, against ``raw_fsync``:
                     os.write + os.fdatasync of one WAL frame's worth of bytes appended to a plain
                     file in the same directory, interleaved event by event: p50 and p99 ratios;
                     and ``raw_fsync_preallocated``, the same bytes written into space allocated
                     ahead (as the WAL does), measured after: the floor, no new file size to commit
  sustained_append   ``append_batch`` of --batch events as a user runs it, automatic seals on
                     (the seal worker), --sustained events (1,000,000: index merges included),
                     until every event is sealed: events/s, the seal worker's peak memory as the
                     journal grows (every 100,000 events)
  batched_append     ``append_batch`` of --batch events, no seals: events/s and payload MB/s
  encrypted_batched_append  the same with a subject_id on every event (500 subjects): every
                     payload AES-256-GCM encrypted with its subject's key; ratio to plaintext
  concurrent_append  --threads threads doing single ``append`` calls: events/s and the
                     number of WAL fdatasync calls (group commit: fsyncs < appends)
  seal               ``seal()`` of the batched events: WAL MB/s, events/s, segment size
  verify             ``verify_store`` of the sealed store vs. one SHA-256 per event
                     (``raw_sha256``), plus ``verify_breakdown`` of the largest segment
The result also names the machine (cpu, platform, versions, the bench directory's file
system, load) and each target with its value and whether it is met.

Everything runs in a fresh temp directory inside --dir (default ./bench-out/,
git-ignored), removed afterwards unless --keep.

Usage (from the repository root):

    .venv/bin/python scripts/bench_append.py --json append.json   # defaults, ~3-5 min
    .venv/bin/python scripts/bench_append.py --events 20000 --single 100 --sustained 100000   # quick
    .venv/bin/python scripts/bench_append.py --phases single sustained
    .venv/bin/python scripts/bench_append.py --dir /mnt/nvme/tmp --keep > result.json
    .venv/bin/python scripts/bench_append.py --profile        # cProfile top costs to stderr
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import hashlib
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from benchlib import (
    PAYLOAD_BYTES,
    EventFactory,
    SubjectEventFactory,
    emit,
    profile_text,
    result,
    status_kb,
    summary,
    target,
)
from benchlib import log as blog

from wormjournal import Journal, JournalConfig, verify_store
from wormjournal.events import EVENT_TAG, encode_fields
from wormjournal.journal import wal as walmod
from wormjournal.segments import merkle
from wormjournal.segments.manifest import Manifest
from wormjournal.segments.notes import open_note
from wormjournal.segments.table import chain_hashes, first_out_of_order, in_seq_order, read_segment, table_to_events
from wormjournal.storage import layout
from wormjournal.storage.local import LocalStore

NO_SEAL = JournalConfig(seal_max_age_seconds=None, seal_max_events=10**9, seal_max_bytes=1 << 40)

TARGET_SINGLE_RATIO = 1.2
TARGET_SUSTAINED_EPS = 100_000
TARGET_VERIFY_EPS = 500_000

PROFILE = False


def log(msg: str) -> None:
    blog("bench", msg)


latency_summary = functools.partial(summary, unit="us")


@contextmanager
def profiled(name: str) -> Iterator[cProfile.Profile | None]:
    """With --profile, print the top costs of the block to stderr (yields the profiler, else None)."""
    if not PROFILE:
        yield None
        return
    prof = cProfile.Profile()
    prof.enable()
    try:
        yield prof
    finally:
        prof.disable()
        text = profile_text(prof, tottime=18, cumulative=18)
        print(f"\n===== cProfile: {name} =====\n{text}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def wal_files(store: Path) -> list[Path]:
    return sorted((store / ".wal").glob("stream=*/*.wal"))


def wal_bytes(store: Path) -> int:
    """The WAL's bytes up to its frames' end: without the zeros the writer allocated ahead (a frame that ends in
    a zero byte is counted a byte short, which is no matter for a figure)."""
    total = 0
    for path in wal_files(store):
        with open(path, "rb") as f:
            total += len(f.read().rstrip(b"\0"))
    return total


class CountingOs:
    """Stands in for the ``os`` module inside ``wormjournal.journal.wal``: counts and times fdatasync."""

    def __init__(self) -> None:
        self.fdatasync_calls = 0
        self.fdatasync_ns: list[int] = []
        self._lock = threading.Lock()

    def fdatasync(self, fd: int) -> None:
        t0 = time.perf_counter_ns()
        try:
            os.fdatasync(fd)
        finally:
            spent = time.perf_counter_ns() - t0
            with self._lock:
                self.fdatasync_calls += 1
                self.fdatasync_ns.append(spent)

    def __getattr__(self, name: str) -> Any:
        value = getattr(os, name)
        setattr(self, name, value)  # later look-ups cost what ``os.<name>`` costs
        return value


@contextmanager
def count_wal_fdatasync() -> Iterator[CountingOs]:
    counter = CountingOs()
    saved = walmod.os
    walmod.os = counter  # type: ignore[assignment]  # this process only, restored below
    try:
        yield counter
    finally:
        walmod.os = saved


def new_journal(base: Path, name: str, config: JournalConfig = NO_SEAL) -> tuple[Journal, Path]:
    store = base / name / "store"
    keys = base / name / "keys"
    store.mkdir(parents=True)
    return Journal.create(store, key_dir=keys, config=config), store


# -- 1. single append vs raw fsync -----------------------------------------------------------


def bench_single(base: Path, n: int, factory: EventFactory) -> dict[str, Any]:
    log(f"single_append: {n} durable appends, interleaved with raw write+fdatasync, the seal worker sealing "
        "every 200 events in the background")
    # automatic seals on, in the seal worker: the appends go on while it seals
    j, store = new_journal(base, "single", JournalConfig(seal_max_age_seconds=None, seal_max_events=200))
    try:
        # One event's WAL frame, from the WAL's growth over the first appends (before any seal cuts it).
        before = wal_bytes(store)
        for i in range(20):
            ev = factory.event(i)
            j.append(ev.pop("event_type"), ev.pop("execution_id"), ev.pop("payload"), **ev)
        frame_bytes = round((wal_bytes(store) - before) / 20)
        block = os.urandom(frame_bytes)
        # The baseline: write + fdatasync appended to a plain file, which grows with each write.
        fd = os.open(store.parent / "raw-fsync.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # The floor: the same bytes written into space allocated ahead (what the WAL does): no new file size
        # for the fdatasync to commit.
        pre_fd = os.open(store.parent / "raw-preallocated.bin", os.O_WRONLY | os.O_CREAT, 0o600)
        os.posix_fallocate(pre_fd, 0, frame_bytes * (n + 1000))
        os.fsync(pre_fd)
        pre_at = 0
        warm = max(20, n // 10)
        for i in range(warm):
            ev = factory.event(20 + i)
            j.append(ev.pop("event_type"), ev.pop("execution_id"), ev.pop("payload"), **ev)
            os.write(fd, block)
            os.fdatasync(fd)
            os.pwrite(pre_fd, block, pre_at)
            os.fdatasync(pre_fd)
            pre_at += frame_bytes
        ours: list[int] = []
        ours_cpu: list[int] = []
        ours_sync: list[int] = []
        raw: list[int] = []
        raw_cpu: list[int] = []
        pre: list[int] = []
        events = [factory.event(20 + warm + i) for i in range(n)]
        clock, cpu = time.perf_counter_ns, time.thread_time_ns
        with profiled("single_append"), count_wal_fdatasync() as counter:
            syncs = counter.fdatasync_ns
            for ev in events:
                et, ex, pl = ev.pop("event_type"), ev.pop("execution_id"), ev.pop("payload")
                k = len(syncs)
                c0 = cpu()
                t0 = clock()
                j.append(et, ex, pl, **ev)
                t1 = clock()
                c1 = cpu()
                t2 = clock()
                os.write(fd, block)
                os.fdatasync(fd)
                t3 = clock()
                c3 = cpu()
                raw_cpu.append(c3 - c1)
                ours_cpu.append(c1 - c0)
                ours.append(t1 - t0)
                ours_sync.append(sum(syncs[k:]))  # the WAL's fdatasync (and a WAL file's rotation's, if any)
                raw.append(t3 - t2)
        # The floor, after: interleaved too, it would stand between two appends and cool their caches.
        for _ in range(n):
            t3 = clock()
            os.pwrite(pre_fd, block, pre_at)
            os.fdatasync(pre_fd)
            pre.append(clock() - t3)
            pre_at += frame_bytes
        os.close(fd)
        os.close(pre_fd)
        j.wait_for_seals()
        seals = j.sealed_seq // 200
    finally:
        j.close()
    s_ours, s_raw, s_pre = latency_summary(ours), latency_summary(raw), latency_summary(pre)
    return {
        "single_append": {
            **s_ours,
            "payload_bytes": PAYLOAD_BYTES,
            "wal_frame_bytes": frame_bytes,
            "wal_fdatasync_calls": counter.fdatasync_calls,
            "of_which_wal_fdatasync": latency_summary(ours_sync),
            "of_which_not_fdatasync": latency_summary([a - b for a, b in zip(ours, ours_sync, strict=True)]),
            "cpu_time_of_append": latency_summary(ours_cpu),
        },
        "raw_fsync": {**s_raw, "bytes_per_write": frame_bytes, "cpu_time": latency_summary(raw_cpu)},
        "raw_fsync_preallocated": {**s_pre, "bytes_per_write": frame_bytes},
        "background_seals": seals,
        "ratio_p50": round(s_ours["p50_us"] / s_raw["p50_us"], 3),
        "ratio_p99": round(s_ours["p99_us"] / s_raw["p99_us"], 3),
        "ratio_mean": round(s_ours["mean_us"] / s_raw["mean_us"], 3),
        "overhead_p50_us": round(s_ours["p50_us"] - s_raw["p50_us"], 1),
        "ratio_p50_to_preallocated": round(s_ours["p50_us"] / s_pre["p50_us"], 3),
    }


# -- 2. batched and concurrent append --------------------------------------------------------


def bench_batched(base: Path, total: int, batch: int, factory: EventFactory,
                  name: str = "batched") -> tuple[dict[str, Any], Journal, Path]:
    log(f"{name}_append: {total} events in batches of {batch}")
    j, store = new_journal(base, name)
    payload_bytes = 0
    elapsed = cpu_secs = 0.0
    starts = range(0, total, batch)
    with profiled("batched_append") as prof:
        for k, start in enumerate(starts):
            if prof is not None:
                prof.disable()
            events = [factory.event(i) for i in range(start, min(total, start + batch))]  # not timed
            payload_bytes += PAYLOAD_BYTES * len(events)
            if prof is not None:
                prof.enable()
            c0, t0 = time.process_time(), time.perf_counter()
            j.append_batch(events)
            elapsed += time.perf_counter() - t0
            cpu_secs += time.process_time() - c0
            if k and k % max(1, len(starts) // 5) == 0:
                done = start + len(events)
                log(f"  {done} events, {done / elapsed:,.0f} events/s so far")
    wal = wal_bytes(store)
    return (
        {
            "events": total,
            "batch_size": batch,
            "seconds": round(elapsed, 3),
            "events_per_s": round(total / elapsed),
            "payload_mb_per_s": round(payload_bytes / elapsed / 1e6, 2),
            "payload_bytes": payload_bytes,
            "wal_bytes": wal,
            "wal_mb_per_s": round(wal / elapsed / 1e6, 2),
            "us_per_event": round(elapsed / total * 1e6, 2),
            "cpu_seconds": round(cpu_secs, 3),
            "events_per_cpu_s": round(total / cpu_secs),
        },
        j,
        store,
    )


def bench_concurrent(base: Path, threads: int, per_thread: int, factory: EventFactory) -> dict[str, Any]:
    log(f"concurrent_append: {threads} threads x {per_thread} single appends")
    j, _ = new_journal(base, "concurrent")
    lat: list[list[int]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def worker(t: int) -> None:
        evs = [factory.event(t * per_thread + i) for i in range(per_thread)]
        clock = time.perf_counter_ns
        start.wait()
        try:
            for ev in evs:
                et, ex, pl = ev.pop("event_type"), ev.pop("execution_id"), ev.pop("payload")
                t0 = clock()
                j.append(et, ex, pl, **ev)
                lat[t].append(clock() - t0)
        except BaseException as e:  # reported below
            errors.append(e)

    try:
        with count_wal_fdatasync() as counter:
            ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
            for t in ts:
                t.start()
            start.wait()
            t0 = time.perf_counter()
            for t in ts:
                t.join()
            elapsed = time.perf_counter() - t0
        if errors:
            raise errors[0]
    finally:
        j.close()
    total = threads * per_thread
    return {
        "threads": threads,
        "appends": total,
        "seconds": round(elapsed, 3),
        "events_per_s": round(total / elapsed),
        "fdatasync_calls": counter.fdatasync_calls,
        "fdatasync_seconds_total": round(sum(counter.fdatasync_ns) / 1e9, 3),
        "fdatasync_latency": latency_summary(counter.fdatasync_ns) if counter.fdatasync_ns else None,
        "appends_per_fdatasync": round(total / max(1, counter.fdatasync_calls), 2),
        "group_commit": counter.fdatasync_calls < total,
        "latency": latency_summary([v for per in lat for v in per]),
    }


# -- 2b. sustained appends with automatic seals ---------------------------------------------------------------


def bench_sustained(base: Path, total: int, batch: int, factory: EventFactory) -> dict[str, Any]:
    """append_batch as a user runs it: automatic seals on (every 100,000 events, in the seal worker), until every
    event is sealed; the events are made between the calls, untimed."""
    log(f"sustained: {total} events in batches of {batch}, automatic seals in the seal worker")
    j, store = new_journal(base, "sustained", JournalConfig(seal_max_age_seconds=None))
    elapsed = 0.0
    marks: list[dict[str, Any]] = []
    try:
        for start in range(0, total, batch):
            events = [factory.event(i) for i in range(start, min(total, start + batch))]  # not timed
            t0 = time.perf_counter()
            j.append_batch(events)
            elapsed += time.perf_counter() - t0
            done = start + len(events)
            if done % 100_000 < batch or done == total:
                worker = j._worker  # noqa: SLF001 - its memory is the seal's
                marks.append({"events": done, "appended_per_s": round(done / elapsed), "sealed": j.sealed_seq,
                              "seal_worker_peak_rss_mb": round((worker.peak_rss_kb if worker else 0) / 1024)})
                log(f"  {done} events, {done / elapsed:,.0f} events/s so far, {j.sealed_seq} sealed")
        appended = elapsed
        t0 = time.perf_counter()
        j.wait_for_seals()
        j.seal()  # the last events, in this process
        elapsed += time.perf_counter() - t0
        assert j.sealed_seq == total and j.last_seal_error is None, j.last_seal_error
        worker = j._worker  # noqa: SLF001
        peak_worker = worker.peak_rss_kb if worker is not None else 0
        restarts = worker.starts - 1 if worker is not None else 0
    finally:
        j.close()
    return {
        "events": total, "batch_size": batch, "seconds": round(elapsed, 2),
        "events_per_s": round(total / elapsed), "appends_only_events_per_s": round(total / appended),
        "final_seal_seconds": round(elapsed - appended, 2), "segments": len(list((store / "manifests").rglob("*"))),
        "seal_worker_peak_rss_mb": round(peak_worker / 1024), "seal_worker_restarts": restarts,
        "writer_peak_rss_mb": round(status_kb("VmHWM") / 1024), "progress": marks,
    }


# -- 3. seal -------------------------------------------------------------------------------------


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_seal(j: Journal, store: Path, events: int, payload_bytes: int) -> dict[str, Any]:
    log(f"seal: sealing {events} events")
    wal = wal_bytes(store)
    c0 = time.process_time()
    with profiled("seal"):
        secs, manifests = timed(j.seal)
    cpu_secs = time.process_time() - c0
    seg_bytes = dir_bytes(store / "segments")
    return {
        "events": events,
        "seconds": round(secs, 3),
        "events_per_s": round(events / secs),
        "cpu_seconds": round(cpu_secs, 3),
        "wal_bytes": wal,
        "wal_mb_per_s": round(wal / secs / 1e6, 2),
        "segments": len(manifests),
        "segment_bytes": seg_bytes,
        "segment_bytes_per_event": round(seg_bytes / events, 1),
        "payload_json_bytes": payload_bytes,
        "compression_ratio": round(payload_bytes / seg_bytes, 3),
        "manifest_and_checkpoint_bytes": dir_bytes(store / "manifests") + dir_bytes(store / "checkpoints"),
    }


# -- 4. verify -------------------------------------------------------------------------------------


def bench_verify(store_path: Path, key: Any, runs: int) -> dict[str, Any]:
    store = LocalStore(store_path)
    log(f"verify: verify_store over the sealed store, best of {runs}")
    all_secs = []
    all_cpu = []
    for _ in range(runs):
        gc.collect()
        c0 = time.process_time()
        with profiled("verify_store"):
            secs, report = timed(lambda: verify_store(store, public_keys=[key]))
        all_cpu.append(time.process_time() - c0)
        if not report.ok:
            raise SystemExit(f"verification failed: {[f.message for f in report.findings]}")
        all_secs.append(secs)
    secs = min(all_secs)
    n = report.events

    log("raw_sha256: precomputing the hashed bytes of every event")
    segments = sorted(store.list(layout.SEGMENTS_PREFIX), key=lambda o: o.size)
    inputs: list[bytes] = []
    for info in sorted(segments, key=lambda o: o.name):
        for e in table_to_events(read_segment(store.get(info.name))):
            inputs.append(EVENT_TAG + e.prev_hash + encode_fields(e.field_values()))
            if len(inputs) == 1 or len(inputs) % 50_000 == 0:  # spot-check that these are the hashed bytes
                assert hashlib.sha256(inputs[-1]).digest() == e.hash
    assert len(inputs) == n, (len(inputs), n)
    hashed_bytes = sum(map(len, inputs))
    sha = hashlib.sha256
    raw_all = []
    for _ in range(runs):
        gc.collect()
        t0 = time.perf_counter()
        for x in inputs:
            sha(x).digest()
        raw_all.append(time.perf_counter() - t0)
    raw_secs = min(raw_all)
    del inputs

    log("verify_breakdown: timing the parts on the largest segment")
    breakdown = verify_breakdown(store, segments[-1].name, key, runs)
    eps = n / secs
    raw_eps = n / raw_secs
    return {
        "verify": {
            "events": n,
            "segments": sum(s.segments for s in report.streams),
            "seconds": round(secs, 3),
            "runs_seconds": [round(x, 3) for x in all_secs],
            "runs_cpu_seconds": [round(x, 3) for x in all_cpu],
            "events_per_cpu_s": round(n / min(all_cpu)),
            "events_per_s": round(eps),
            "mb_per_s_of_segments": round(report.bytes_checked / secs / 1e6, 2),
            "ok": report.ok,
        },
        "raw_sha256": {
            "events": n,
            "seconds": round(raw_secs, 4),
            "events_per_s": round(raw_eps),
            "mean_bytes_hashed": round(hashed_bytes / n, 1),
            "mb_per_s": round(hashed_bytes / raw_secs / 1e6, 1),
        },
        "ratio": round(eps / raw_eps, 4),
        "verify_breakdown": breakdown,
    }


def verify_breakdown(store: LocalStore, name: str, key: Any, runs: int) -> dict[str, Any]:
    """The steps of one segment's check (wormjournal.verify.segment.check_segment), timed one by one
    (best of ``runs``); scripts/bench_verify.py measures the whole verification."""
    manifest = None
    for info in store.list(layout.MANIFESTS_PREFIX):
        m = Manifest.parse(open_note(store.get(info.name), [key])[0])
        if m.object == name:
            manifest = m
    assert manifest is not None
    parts: dict[str, float] = {}

    def step(label: str, fn: Callable[[], Any]) -> Any:
        best, result = math.inf, None
        for _ in range(runs):
            result = None
            gc.collect()
            secs, result = timed(fn)
            best = min(best, secs)
        parts[label] = best
        return result

    data = step("store_get", lambda: store.get(name))
    step("object_sha256", lambda: hashlib.sha256(data).digest())
    stored_order = step("read_parquet", lambda: read_segment(data))
    step("storage_order_check", lambda: first_out_of_order(stored_order))
    table = step("sort_by_seq", lambda: in_seq_order(stored_order))  # rows are stored by (execution_id, seq)
    first = manifest.first_seq
    step("seq_check", lambda: all(s == first + i for i, s in enumerate(table.column("seq").to_pylist())))
    computed = step("chain_hashes", lambda: chain_hashes(manifest.prev_hash, table))
    stored = step("hash_column_to_pylist", lambda: table.column("hash").to_pylist())
    step("compare_hashes", lambda: computed == stored)
    step("prev_hash_check", lambda: table.column("prev_hash").to_pylist() == [manifest.prev_hash] + stored[:-1])
    root = step("merkle_root", lambda: merkle.merkle_root(stored_order.column("hash").to_pylist()))  # storage order
    assert computed == stored and computed[-1] == manifest.last_hash and root == manifest.merkle_root
    total = sum(parts.values())
    n = table.num_rows
    return {
        "segment": name,
        "events": n,
        "segment_bytes": len(data),
        "row_groups": pq.ParquetFile(pa.BufferReader(data)).num_row_groups,
        "seconds": {k: round(v, 4) for k, v in parts.items()},
        "share": {k: round(v / total, 3) for k, v in parts.items()},
        "us_per_event": {k: round(v / n * 1e6, 3) for k, v in parts.items()},
        "total_seconds": round(total, 4),
        "events_per_s_of_parts": round(n / total),
    }


# -- main ---------------------------------------------------------------------------------------------


PHASES = ("single", "sustained", "batched", "encrypted", "concurrent", "seal", "verify")


def main(argv: list[str] | None = None) -> int:
    global PROFILE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path("bench-out"), help="parent of the temp dir (default ./bench-out)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (stores, WAL, raw fsync file)")
    ap.add_argument("--single", type=int, default=2000, metavar="N",
                    help="durable single appends, each interleaved with the raw writes (default 2000)")
    ap.add_argument("--sustained", type=int, default=1_000_000, metavar="N",
                    help="events appended with automatic seals (default 1000000)")
    ap.add_argument("--events", type=int, default=200_000,
                    help="events appended in batches without seals, then sealed and verified (default 200000)")
    ap.add_argument("--batch", type=int, default=1000, help="batch size of append_batch (default 1000)")
    ap.add_argument("--threads", type=int, default=8, help="threads of concurrent_append (default 8)")
    ap.add_argument("--per-thread", type=int, default=300, help="single appends per thread (default 300)")
    ap.add_argument("--runs", type=int, default=3,
                    help="verify, raw sha256 and breakdown: best of this many runs (default 3)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the generated events")
    ap.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES), help="what to measure (default all)")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the result to FILE")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile each phase, top costs to stderr (slows the numbers)")
    args = ap.parse_args(argv)
    for name in ("single", "sustained", "events", "batch", "threads", "per_thread", "runs"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    PROFILE = args.profile
    phases = set(args.phases)

    created_dir = not args.dir.exists()
    args.dir.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="bench-", dir=args.dir)).absolute()
    log(f"working in {base}")
    started = time.perf_counter()
    out: dict[str, Any] = {"profiled": PROFILE}
    targets: dict[str, Any] = {}
    try:
        factory = EventFactory(args.seed)
        if "single" in phases:
            single = bench_single(base, args.single, factory)
            out.update(single)
            targets["single_append_p50_le_1_2x_raw_fsync"] = target(
                "durable single append p50 <= 1.2x raw write + fdatasync", single["ratio_p50"],
                single["ratio_p50"] <= TARGET_SINGLE_RATIO)
        if "sustained" in phases:
            sustained = bench_sustained(base, args.sustained, args.batch, factory)
            out["sustained_append"] = sustained
            targets["sustained_ge_100k_events_per_s"] = target(
                "sustained batched appends with automatic seals >= 100,000 events/s (the goal)",
                sustained["events_per_s"], sustained["events_per_s"] >= TARGET_SUSTAINED_EPS)
        j = None
        if phases & {"batched", "seal", "verify"}:
            batched, j, store = bench_batched(base, args.events, args.batch, factory)
            out["batched_append"] = batched
        if "encrypted" in phases:
            encrypted, j_enc, _ = bench_batched(base, args.events, args.batch, SubjectEventFactory(args.seed),
                                                "encrypted")
            j_enc.close()
            if "batched_append" in out:
                encrypted["ratio_to_plaintext_events_per_s"] = round(
                    encrypted["events_per_s"] / out["batched_append"]["events_per_s"], 3)
            out["encrypted_batched_append"] = encrypted
        if "concurrent" in phases:
            concurrent = bench_concurrent(base, args.threads, args.per_thread, factory)
            out["concurrent_append"] = concurrent
            targets["concurrent_append_group_commit"] = target(
                "concurrent single appends share fsyncs (group commit)", concurrent["appends_per_fdatasync"],
                concurrent["group_commit"])
        if j is not None:
            try:
                if phases & {"seal", "verify"}:
                    out["seal"] = bench_seal(j, store, args.events, out["batched_append"]["payload_bytes"])
                key = j.verify_key
            finally:
                j.close()
            if "verify" in phases:
                verify = bench_verify(store, key, args.runs)
                out.update(verify)
                targets["verify_ge_500k_events_per_s"] = target(
                    "verify >= 500,000 events/s", verify["verify"]["events_per_s"],
                    verify["verify"]["events_per_s"] >= TARGET_VERIFY_EPS)
        params = {k: getattr(args, k) for k in ("single", "sustained", "events", "batch", "threads", "per_thread",
                                                "runs", "seed")} | {"phases": sorted(phases),
                                                                    "payload_bytes": PAYLOAD_BYTES}
        res = result("append", base, params, out, targets, started=started)
    finally:
        if args.keep:
            log(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
            if created_dir:
                try:
                    args.dir.rmdir()  # only if we made it and it is empty
                except OSError:
                    pass
    emit(res, args.json)
    log(f"done in {res['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
