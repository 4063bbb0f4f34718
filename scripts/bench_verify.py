#!/usr/bin/env python3
"""Benchmark verification ("Fast"): events/s with 1 and 2 worker processes, against raw SHA-256.

Builds (or reuses, with --store) a sealed local journal of --events agent-like events
(tool-call payloads of 600..1000 bytes of canonical JSON, 2000 interleaved executions)
in segments of --segment-events events, then measures:

  verify        ``verify_store(store, workers=W)`` for W = 1 and 2 (and --workers ...):
                best wall time of --runs runs, events/s, events/s per worker, the scaling
                factor (events/s with 2 workers / with 1) and the peak memory of the
                verifying process tree (see below)
  raw_sha256    one ``hashlib.sha256(x).digest()`` per event, in one process, where x is
                exactly the bytes the event hash is taken over (EVENT_TAG || prev_hash ||
                canonical field bytes, about the payload size plus 250 bytes); also SHA-256
                over the segment objects' bytes (one call per segment) for comparison
  ratio         verify events/s (1 worker) / raw SHA-256 events/s: the share of a core's
                time per event that is the event hash itself
  memory        each configuration runs in a fresh child process, and once more in another one
                while the bench samples that child's process tree (the verifier, the fork server,
                the workers) every 20 ms from /proc (the times are the unsampled child's: the
                sampler's reads of /proc take about 8% of a core, which two workers on two cores
                lose and one worker does not): peak RSS of the verifying process (its VmHWM), peak summed
                RSS of the tree, and (every 100 ms) peak summed PSS (shared pages divided among the
                processes sharing them). Measured on the whole journal and on a prefix of it
                (--small-segments segments, the same objects hard-linked into a second store):
                with streaming, memory does not grow with the number of segments.
  pool startup  a pool of 2 workers started (the fork server included, as a fresh `wormjournal verify` starts
                it) and shut down, in fresh processes, median of --runs; with the bytes per second of 1 and
                2 workers, the journal size from which 2 workers finish sooner than 1 (WORKER_MIN_BYTES in
                wormjournal/verify/verifier.py is set from it)
  columns       events/s: the best of --runs runs; 1st run: the first run in a fresh process
                (it also starts the fork server, once per process); /worker: events/s divided
                by the workers; /CPU-s (of the sampled child): events per CPU second of the whole process tree (user +
                system, all runs, including the child's imports), which is less sensitive than
                wall time to other load on the machine.

Each configuration runs in its own child process, so its import and pool start-up are
not shared with another configuration; the measured time is the ``verify_store`` call
(which includes starting the worker pool). The numbers are for this machine at this
moment: the load average at the start and the end is reported.

Prints the result as one JSON object (stdout) in the shared result schema of
scripts/benchlib.py (--json FILE writes it too, for scripts/perf_report.py): the machine,
the parameters, the figures above and the target. A readable table and progress go to
stderr. The journal is built in a temp dir (removed at the end) unless --store DIR is
given: it is then built there and kept, and reused by later runs with the same
--events/--segment-events/--seed.

Usage (from the repository root):

    .venv/bin/python scripts/bench_verify.py                          # 1M events, ~3-4 min
    .venv/bin/python scripts/bench_verify.py --events 200000 --segment-events 20000   # quick
    .venv/bin/python scripts/bench_verify.py --store bench-out/verify-1m --json verify.json
    .venv/bin/python scripts/bench_verify.py --store bench-out/verify-1m --profile   # cProfile one segment
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import json
import os
import random
import shutil
import ssl
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True  # no scripts/__pycache__ from importing benchlib
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import _NODES, _TOOLS, make_payload  # noqa: E402  (the realistic payload generator)

from wormjournal import Journal, JournalConfig  # noqa: E402
from wormjournal.segments.manifest import Manifest  # noqa: E402
from wormjournal.segments.notes import split_note  # noqa: E402
from wormjournal.segments.table import bounded_batches, read_segment, row_hash_inputs  # noqa: E402
from wormjournal.storage import layout  # noqa: E402
from wormjournal.storage.local import LocalStore  # noqa: E402
from wormjournal.verify import verify_store  # noqa: E402

TARGET_EPS_PER_PROCESS = 500_000
TARGET_RATIO = 0.5  # issue 20: verify in one process at half the speed of one SHA-256 call per event, or better
TARGET_SCALING = 1.7  # and 2 processes at 1.7 times 1
META_FILE = "bench_verify_meta.json"
META_VERSION = 1
EXECUTIONS = 2000


def log(msg: str) -> None:
    benchlib.log("bench_verify", msg)


# -- the journal -------------------------------------------------------------------------------------


def build(base: Path, events: int, segment_events: int, seed: int, batch: int = 1000) -> dict[str, Any]:
    """A sealed journal in base/store (keys in base/keys): agent tool calls over interleaved executions."""
    store, keys = base / "store", base / "keys"
    store.mkdir(parents=True, exist_ok=True)
    config = JournalConfig(seal_max_age_seconds=None, seal_max_events=segment_events, seal_max_bytes=1 << 40,
                           segment_max_events=segment_events)
    rng = random.Random(seed)
    execs = [(f"exec-{uuid.UUID(int=rng.getrandbits(128))}", f"thread-{uuid.UUID(int=rng.getrandbits(128))}")
             for _ in range(EXECUTIONS)]
    log(f"building {events:,} events in segments of {segment_events:,} in {store}")
    t0 = time.perf_counter()
    payload_bytes = 0
    j = Journal.create(store, key_dir=keys, config=config)
    try:
        for start in range(0, events, batch):
            evs = []
            for i in range(start, min(events, start + batch)):
                execution, thread = execs[rng.randrange(EXECUTIONS)]
                payload = make_payload(rng, rng.randint(600, 1000))
                evs.append({"event_type": "tool_called", "execution_id": execution, "thread_id": thread,
                            "node": _NODES[i % len(_NODES)], "tenant_id": f"tenant-{i % 7:04d}", "payload": payload,
                            "step_id": f"step-{i // len(_TOOLS)}"})
            payload_bytes += sum(len(json.dumps(e["payload"], sort_keys=True, separators=(",", ":"))) for e in evs)
            j.append_batch(evs)  # seals by itself every segment_events events
            if (start // batch) % max(1, events // batch // 10) == 0 and start:
                log(f"  {start:,} events, {time.perf_counter() - t0:.0f} s")
        j.seal()
    finally:
        j.close()
    meta = {"version": META_VERSION, "events": events, "segment_events": segment_events, "seed": seed,
            "build_seconds": round(time.perf_counter() - t0, 1),
            "mean_payload_json_bytes": round(payload_bytes / events, 1)}
    (base / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    log(f"built in {meta['build_seconds']} s")
    return meta


def prefix_store(src: Path, dst: Path, segments: int) -> int:
    """A second store holding the journal's first segments: hard links to the same objects.

    Takes the largest checkpoint tree size <= ``segments`` (each seal wrote one), copies
    that many segments, manifests and the checkpoints up to it. Returns the tree size.
    """
    sizes = sorted(layout.parse_numbered(p.relative_to(src).as_posix())[2]  # type: ignore[index]
                   for p in (src / "checkpoints").rglob("*.note"))
    size = max(s for s in sizes if s <= segments)

    def link(path: Path) -> None:
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)

    for path in src.rglob("*"):
        if not path.is_file():
            continue
        name = path.relative_to(src).as_posix()
        if name.startswith("."):
            continue  # the writer's WAL and locks
        if (seg := layout.parse_segment(name)) is not None:
            keep = seg[2] < size
        elif (num := layout.parse_numbered(name)) is not None:
            keep = num[2] < size if num[0] == "manifests" else num[2] <= size
        elif (idx := layout.parse_index(name)) is not None:
            keep = idx[3] < size
        else:
            keep = True  # journal.json, keys/
        if keep:
            link(path)
    return size


# -- one measured configuration, in a child process --------------------------------------------------


def child(store: Path, workers: int, runs: int) -> None:
    """Run verify_store ``runs`` times; print one JSON line with the timings (stdout)."""
    st = LocalStore(store)
    secs: list[float] = []
    cpu: list[float] = []
    report = None
    for _ in range(runs):
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        report = verify_store(st, workers=workers)
        secs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if not report.ok:
            raise SystemExit(f"verification failed: {report.to_text()}")
    assert report is not None
    print(json.dumps({
        "events": report.events, "segments": report.segments, "bytes_checked": report.bytes_checked,
        "runs_seconds": secs, "runs_parent_cpu_seconds": cpu,
        # VmHWM, not ru_maxrss: after a vfork+exec that can be the parent's
        "parent_peak_rss_mb": benchlib.status_kb("VmHWM") / 1024,
    }))


def _tree(root: int) -> list[int]:
    """``root`` and its descendants, from each thread's /proc/PID/task/TID/children (a few small reads, not a
    scan of every process: the sampler must not take much of the cores it measures)."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return out


def _rss_kb(pid: int) -> int:
    """RSS of a process in KiB from /proc/PID/statm (cheap), or 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, IndexError, ValueError):
        return 0


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process so far, in clock ticks (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def _memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB, or (0, 0) if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(line.split(":", 1) for line in f if line.startswith(("Rss:", "Pss:")))
        return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])
    except (OSError, KeyError, ValueError):
        return 0, 0


def measure(store: Path, workers: int, runs: int) -> dict[str, Any]:
    """One configuration in a fresh child process (benchlib.run_child), timed; then in another one, its process
    tree's memory and CPU sampled meanwhile: the tree of this process's descendants, of which the child is the
    only one then. Sampling costs CPU (/proc reads, page-table walks for the PSS) that two workers on two cores
    would lose, so it is not done while the times are taken."""
    argv = [str(Path(__file__).resolve()), "--child", str(store), "--workers", str(workers), "--runs", str(runs)]
    timed = benchlib.run_child(argv, tag="bench_verify", what=f"verify_store of {store.name}, workers={workers}")
    me = os.getpid()
    peak = {"rss": 0, "pss": 0, "processes": 0}
    ticks: dict[int, int] = {}  # pid -> the latest CPU ticks seen (a worker's last < 20 ms are missed)
    stop = threading.Event()

    def sample() -> None:
        n = 0
        while not stop.wait(0.02):
            pids = [p for p in _tree(me) if p != me]
            for p in pids:
                ticks[p] = max(ticks.get(p, 0), _cpu_ticks(p))
            rss = [_rss_kb(p) for p in pids]
            peak["rss"] = max(peak["rss"], sum(rss))
            peak["processes"] = max(peak["processes"], sum(1 for r in rss if r))
            n += 1
            if n % 5 == 0:  # smaps_rollup walks the page tables: every 100 ms
                peak["pss"] = max(peak["pss"], sum(_memory_kb(p)[1] for p in pids))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        r = benchlib.run_child(argv, tag="bench_verify",
                               what=f"verify_store of {store.name}, workers={workers}, memory sampled")
    finally:
        stop.set()
        sampler.join()
    best = min(timed["runs_seconds"])
    eps = timed["events"] / best
    tree_cpu = sum(ticks.values()) / os.sysconf("SC_CLK_TCK")  # includes the child's imports
    return {
        "workers": workers,
        "events": timed["events"],
        "segments": timed["segments"],
        "seconds": round(best, 3),
        "runs_seconds": [round(x, 3) for x in timed["runs_seconds"]],
        "runs_seconds_memory_sampled": [round(x, 3) for x in r["runs_seconds"]],
        "first_run_events_per_s": round(timed["events"] / timed["runs_seconds"][0]),
        "cpu_seconds_process_tree_all_runs": round(tree_cpu, 2),
        "events_per_cpu_s": round(r["events"] * len(r["runs_seconds"]) / tree_cpu) if tree_cpu else None,
        "events_per_s": round(eps),
        "events_per_s_per_worker": round(eps / workers),
        "mb_per_s_of_segments": round(timed["bytes_checked"] / best / 1e6, 1),
        "peak_rss_mb_verifier_process": round(r["parent_peak_rss_mb"], 1),
        "peak_rss_mb_process_tree": round(peak["rss"] / 1024, 1),
        "peak_pss_mb_process_tree": round(peak["pss"] / 1024, 1),
        "processes_seen": peak["processes"],
    }


# -- what a pool of workers costs to start --------------------------------------------------------------------


def child_startup() -> None:
    """Start the verifier's pool of 2 workers in this fresh process (the fork server too, as a `wormjournal
    verify` pays it), wait until both answer, shut it down; print the seconds as one JSON line."""
    from concurrent.futures import ProcessPoolExecutor

    from wormjournal.verify import verifier
    from wormjournal.verify.segment import warm_up

    t0 = time.perf_counter()
    pool = ProcessPoolExecutor(2, mp_context=verifier._context())  # noqa: SLF001 - the verifier's own pool
    for future in [pool.submit(warm_up) for _ in range(2)]:
        future.result()
    t1 = time.perf_counter()
    pool.shutdown(wait=True)
    print(json.dumps({"start_seconds": t1 - t0, "shutdown_seconds": time.perf_counter() - t1}))


def pool_startup(runs: int) -> dict[str, Any]:
    """The median over ``runs`` fresh processes of the pool's start and shutdown."""
    argv = [str(Path(__file__).resolve()), "--child-startup"]
    got = [benchlib.run_child(argv, tag="bench_verify", what="a pool of 2 workers started and stopped")
           for _ in range(runs)]
    total = sorted(g["start_seconds"] + g["shutdown_seconds"] for g in got)
    return {"seconds": round(total[len(total) // 2], 3), "runs_seconds": [round(t, 3) for t in total],
            "start_seconds": [round(g["start_seconds"], 3) for g in got]}


def break_even_bytes(startup_s: float, one: dict[str, Any], two: dict[str, Any], segment_bytes: int) -> int | None:
    """The journal size (bytes of segments) from which 2 workers verify sooner than 1, the pool's start-up
    included: B / r1 = startup + B / r2, with r1, r2 the bytes per second of 1 and 2 workers on the whole
    journal. None when 2 workers are not faster at all."""
    r1, r2 = segment_bytes / one["seconds"], segment_bytes / two["seconds"]
    return None if r2 <= r1 else round(startup_s * r1 * r2 / (r2 - r1))


# -- raw SHA-256 ------------------------------------------------------------------------------------------


def raw_sha256(store: Path, runs: int) -> dict[str, Any]:
    """One hashlib.sha256 call per event over exactly the bytes its event hash covers, one segment at a time."""
    st = LocalStore(store)
    sha = hashlib.sha256
    total_secs = [0.0] * runs
    seg_secs = [0.0] * runs
    events = hashed = seg_bytes = 0
    for info in sorted(st.list(layout.SEGMENTS_PREFIX), key=lambda o: o.name):
        data = st.get(info.name)
        seg_bytes += len(data)
        for k in range(runs):
            t0 = time.perf_counter()
            sha(data).digest()
            seg_secs[k] += time.perf_counter() - t0
        table = read_segment(data)
        inputs = [bytes(x) for batch in bounded_batches(table) for x in row_hash_inputs(batch).to_pylist()]
        stored = table.column("hash").to_pylist()
        assert sha(inputs[0]).digest() == stored[0] and sha(inputs[-1]).digest() == stored[-1], "not the hashed bytes"
        events += len(inputs)
        hashed += sum(map(len, inputs))
        del table, data
        for k in range(runs):
            gc.collect()
            t0 = time.perf_counter()
            for x in inputs:
                sha(x).digest()
            total_secs[k] += time.perf_counter() - t0
    best = min(total_secs)
    return {
        "events": events,
        "seconds": round(best, 3),
        "events_per_s": round(events / best),
        "mean_bytes_hashed": round(hashed / events, 1),
        "mb_per_s": round(hashed / best / 1e6, 1),
        "segment_objects": {"bytes": seg_bytes, "seconds": round(min(seg_secs), 4),
                            "mb_per_s": round(seg_bytes / min(seg_secs) / 1e6, 1)},
    }


# -- where a worker's time goes ----------------------------------------------------------------------------


def profile_segment(store: Path) -> str:
    """cProfile of check_segment on the journal's largest segment (top costs)."""
    from wormjournal.trust.load import read_identity
    from wormjournal.verify.segment import check_segment

    st = LocalStore(store)
    info = max(st.list(layout.SEGMENTS_PREFIX), key=lambda o: o.size)
    n = layout.parse_segment(info.name)[2]  # type: ignore[index]
    m = Manifest.parse(split_note(st.get(layout.manifest(layout.parse_segment(info.name)[0], n)))[0])  # type: ignore[index]
    identity = read_identity(st)
    data = st.get(info.name)
    kw: dict[str, Any] = {"journal_id": identity.journal_id, "stream": m.stream, "key_name": identity.key_name,
                          "public_keys": ()}
    check_segment(m, data, **kw)  # warm
    prof = cProfile.Profile()
    prof.enable()
    check_segment(m, data, **kw)
    prof.disable()
    return benchlib.profile_text(prof, tottime=15)


# -- main -----------------------------------------------------------------------------------------------------


def table(res: dict[str, Any]) -> str:
    """The result (the shared schema) as a readable table."""
    result = res["results"]
    lines = []
    j = result["journal"]
    lines.append(f"journal   {j['events']:,} events, {j['segments']} segments of {j['segment_events']:,}, "
                 f"{j['segment_bytes'] / 1e6:.1f} MB of segments, payloads ~{j['mean_payload_json_bytes']:.0f} B JSON")
    lines.append("")
    lines.append(f"{'configuration':<30}{'events/s':>10}{'1st run':>10}{'/worker':>10}{'/CPU-s':>10}{'seconds':>9}"
                 f"{'RSS verifier':>14}{'RSS tree':>10}{'PSS tree':>10}")
    for row in result["verify"]:
        label = f"{row['segments']} segments, {row['workers']} worker{'s' if row['workers'] > 1 else ''}"
        lines.append(f"{label:<30}{row['events_per_s']:>10,}{row['first_run_events_per_s']:>10,}"
                     f"{row['events_per_s_per_worker']:>10,}{row['events_per_cpu_s'] or 0:>10,}{row['seconds']:>9.2f}"
                     f"{row['peak_rss_mb_verifier_process']:>11.0f} MB{row['peak_rss_mb_process_tree']:>7.0f} MB"
                     f"{row['peak_pss_mb_process_tree']:>7.0f} MB")
    start = result["pool_startup"]
    even = result["summary"]["two_workers_pay_off_from_bytes"]
    lines.append(f"{'pool of 2 started and stopped':<30}{'':>60}{start['seconds']:>9.2f}"
                 f"   (fresh process, fork server included; 2 workers pay off from "
                 f"{'never' if even is None else f'{even / 2**20:.0f} MiB'} of segments)")
    raw = result["raw_sha256"]
    lines.append(f"{'raw SHA-256, 1 call per event':<30}{raw['events_per_s']:>10,}{'':>30}{raw['seconds']:>9.2f}"
                 f"   ({raw['mean_bytes_hashed']:.0f} B per call, {raw['mb_per_s']:.0f} MB/s)")
    lines.append("")
    s = result["summary"]
    lines.append(f"ratio to raw SHA-256 (1 worker)   {s['ratio_1_worker_to_raw_sha256']:.3f}")
    lines.append(f"ratio to raw SHA-256 (2 workers)  {s['ratio_2_workers_to_raw_sha256']:.3f}   "
                 "(raw SHA-256 on one core)")
    lines.append(f"scaling, 2 workers / 1            {s['scaling_2_over_1']:.2f}x")
    lines.append(f"memory, small vs whole journal    "
                 f"verifier {s['rss_verifier_small_mb']:.0f} -> {s['rss_verifier_large_mb']:.0f} MB, "
                 f"tree PSS (2 workers) {s['pss_tree_2w_small_mb']:.0f} -> {s['pss_tree_2w_large_mb']:.0f} MB "
                 f"for {s['segments_small']} -> {s['segments_large']} segments")
    for t in res["targets"].values():
        lines.append(f"target {t['target']}: {'PASS' if t['met'] else 'MISS'} ({t['value']:,})")
    m = res["machine"]
    lines.append(f"load average 1/5/15 min at start {m['loadavg_1_5_15_at_start']}, at end {m['loadavg_1_5_15']}; "
                 f"wall time {res['wall_seconds']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="events in the journal (default 1000000)")
    ap.add_argument("--segment-events", type=int, default=100_000, help="events per segment (default 100000)")
    ap.add_argument("--small-segments", type=int, default=4,
                    help="segments of the prefix store for the memory comparison (default 4)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure (default 1 2)")
    ap.add_argument("--runs", type=int, default=3, help="best of this many runs per configuration (default 3)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--store", type=Path, default=None,
                    help="build the journal here and keep it; reuse it if already built")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the results as JSON")
    ap.add_argument("--profile", action="store_true", help="also cProfile check_segment on one segment (stderr)")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-startup", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_startup:
        child_startup()
        return 0
    if args.child is not None:
        child(args.child, args.workers[0], args.runs)
        return 0
    if 1 not in args.workers or 2 not in args.workers:
        ap.error("--workers must include 1 and 2")
    started = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    tmp = None
    if args.store is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-verify-"))
        base = tmp
    else:
        base = args.store.absolute()
    try:
        meta_path = base / META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
        wanted = {"version": META_VERSION, "events": args.events, "segment_events": args.segment_events,
                  "seed": args.seed}
        reused = meta is not None and all(meta.get(k) == v for k, v in wanted.items())
        if reused:
            log(f"reusing the journal in {base}")
        else:
            if (base / "store").exists():
                raise SystemExit(f"{base} holds another journal; give another --store")
            meta = build(base, args.events, args.segment_events, args.seed)
        store = base / "store"
        small = base / "prefix-store"
        if small.exists():
            shutil.rmtree(small)
        small_size = prefix_store(store, small, args.small_segments)
        segments = sum(1 for _ in LocalStore(store).list(layout.SEGMENTS_PREFIX))
        segment_bytes = sum(o.size for o in LocalStore(store).list(layout.SEGMENTS_PREFIX))

        rows = []
        for path, label in ((small, "prefix"), (store, "whole")):
            for w in args.workers:
                log(f"verify {label} store ({path.name}), workers={w}, best of {args.runs}")
                rows.append(measure(path, w, args.runs))
                log(f"  {rows[-1]['events_per_s']:,} events/s, {rows[-1]['seconds']} s, "
                    f"verifier RSS {rows[-1]['peak_rss_mb_verifier_process']} MB, "
                    f"tree PSS {rows[-1]['peak_pss_mb_process_tree']} MB")
        log("a pool of 2 workers, started in fresh processes")
        startup = pool_startup(args.runs)
        log("raw SHA-256 over the same event bytes")
        raw = raw_sha256(store, args.runs)
        if args.profile:
            print(profile_segment(store), file=sys.stderr)

        by = {(r["segments"], r["workers"]): r for r in rows}
        one, two = by[(segments, 1)], by[(segments, 2)]
        assert meta is not None
        results: dict[str, Any] = {
            "journal": {**{k: v for k, v in meta.items() if k != "version"}, "segments": segments,
                        "segment_bytes": segment_bytes, "reused": reused},
            "verify": rows,
            "raw_sha256": raw,
            "pool_startup": startup,
            "summary": {
                "events_per_s_1_worker": one["events_per_s"],
                "events_per_s_2_workers": two["events_per_s"],
                "events_per_s_per_process_1_worker": one["events_per_s"],
                "ratio_1_worker_to_raw_sha256": round(one["events_per_s"] / raw["events_per_s"], 4),
                "ratio_2_workers_to_raw_sha256": round(two["events_per_s"] / raw["events_per_s"], 4),
                "scaling_2_over_1": round(two["events_per_s"] / one["events_per_s"], 3),
                "segments_small": small_size,
                "segments_large": segments,
                "rss_verifier_small_mb": by[(small_size, 1)]["peak_rss_mb_verifier_process"],
                "rss_verifier_large_mb": one["peak_rss_mb_verifier_process"],
                "pss_tree_2w_small_mb": by[(small_size, 2)]["peak_pss_mb_process_tree"],
                "pss_tree_2w_large_mb": two["peak_pss_mb_process_tree"],
                "two_workers_pay_off_from_bytes": break_even_bytes(startup["seconds"], one, two, segment_bytes),
            },
        }
        targets = {"verify_ge_500k_events_per_s_per_process": benchlib.target(
            f"verify_store with 1 worker >= {TARGET_EPS_PER_PROCESS:,} events/s per process", one["events_per_s"],
            one["events_per_s"] >= TARGET_EPS_PER_PROCESS),
            "verify_ge_half_raw_sha256": benchlib.target(
                f"verify_store with 1 worker >= {TARGET_RATIO} x raw SHA-256 events/s",
                results["summary"]["ratio_1_worker_to_raw_sha256"],
                results["summary"]["ratio_1_worker_to_raw_sha256"] >= TARGET_RATIO),
            "two_workers_ge_1_7x": benchlib.target(
                f"verify_store with 2 workers >= {TARGET_SCALING}x 1 worker", results["summary"]["scaling_2_over_1"],
                results["summary"]["scaling_2_over_1"] >= TARGET_SCALING)}
        params = {k: getattr(args, k) for k in ("events", "segment_events", "small_segments", "workers", "runs",
                                                "seed", "profile")} | {"store": None if tmp else base.name}
        res = benchlib.result("verify", base, params, results, targets, started=started)  # the store's file system
        res["machine"]["openssl"] = ssl.OPENSSL_VERSION  # hashlib's SHA-256
        res["machine"]["loadavg_1_5_15_at_start"] = load_start
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(table(res), file=sys.stderr, flush=True)
    benchlib.emit(res, args.json)
    if args.json is not None:
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
