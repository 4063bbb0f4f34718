#!/usr/bin/env python3
"""Benchmark the S3 lock audit ("Lock audit scales"): objects/s, peak memory, the bounded pool.

Starts moto's S3 server on 127.0.0.1 in a process of its own (dummy credentials in the
environment, so no real account can be reached; requests that write are serialised, as in
tests/s3_fixtures.py), creates a bucket with Object Lock and a real journal in it
(COMPLIANCE, --days days), and fills it with small seals: --events-per-seal events each,
from --streams writer processes (one stream each). A seal stores 6 objects (segment,
manifest, checkpoint, 3 index objects), and every 8th seal of a stream 3 more (the index
runs that merge 8 segments' tables; 64, ...). The journal is filled until a listing counts
at least --objects/4 objects, then at least --objects. Filling is timed, but it is not the
measured figure.

At each size the audit runs in a fresh child process, so its memory is its own (neither the
server's nor the writers'):

  audit         ``audit_store(store, workers=W, progress=callback)`` on
                ``S3Store.from_url(url, endpoint_url=...)``: the store the CLI's
                ``wormjournal retention audit`` builds, with the store's own boto3 client
                (--max-pool-connections gives the child a client with that connection pool
                instead). The callback is always passed, so a run on a terminal and a run into
                a file do the same work (with a callback, the audit counts the objects in a
                background listing, for the bar's total); it draws a rich progress bar on stderr
                when stderr is a terminal.
  figures       objects audited, wall time of the audit_store call, objects/s, CPU seconds in
                that call of the audit process and of the moto server, the audit process's peak
                RSS (ru_maxrss; VmHWM from /proc as a cross-check), its RSS before the audit
                (after the imports) and the difference (what the audit itself added), the most
                HEAD requests seen in flight at once and the most threads alive (the bounded
                pool), how many connections urllib3 discarded because its pool was full, the time
                of a bare listing of the same objects (for comparison), and whether the audit is
                ok. It must be: an untampered journal has zero findings; otherwise the findings
                are printed and the bench exits with status 1.
  latency       on 127.0.0.1 a request takes a few milliseconds of CPU and no network time, so
                the pool has little to overlap; --latency-ms L makes the server wait L ms before
                each read request (GET, HEAD: the audit's listings and HEADs; not the writers'
                puts), a stand-in for the round trip to S3, to show what the pool buys there.
  tenants       with --tenant-days D, tenant-1 gets a COMPLIANCE policy of D days before the journal
                is filled (its segments, their manifests and the checkpoints are locked for D days);
                the audit then checks each segment and manifest against its tenants' policy, which
                costs it a GET of each manifest and a read of each segment's tenant column.

Configurations: W = --workers at --objects/4 and at --objects, and W = 1 at --objects/4.
Concurrency ratio: objects/s with W workers / objects/s with 1, at --objects/4. Memory is
flat when the peak RSS at --objects is at most FLAT_RATIO times the peak at --objects/4.

The orchestrating process imports neither boto3 nor wormjournal: a child's ru_maxrss
starts at its parent's RSS at the fork, so the parent is kept small. Population and audit
children talk to the server over HTTP (moto runs in one Python process: on a small machine
it, not the audit, sets the pace; the load average at the start and the end is reported).

Prints the result as one JSON object (stdout) in the shared result schema of
scripts/benchlib.py (--json FILE writes it too, for scripts/perf_report.py); the figures,
a summary table and progress go to stderr. Targets (reported, never asserted): memory stays
flat, the bounded pool (HEADs in flight <= --workers), and no findings.

Usage (from the repository root):

    .venv/bin/python scripts/bench_audit.py                   # 10,000 objects, ~5 min on 2 cores (3 of them filling)
    .venv/bin/python scripts/bench_audit.py --objects 1000    # quick
    .venv/bin/python scripts/bench_audit.py --objects 1000 --latency-ms 20   # what the pool buys
    .venv/bin/python scripts/bench_audit.py --objects 1000 --tenant-days 60  # with a tenant policy
    .venv/bin/python scripts/bench_audit.py --workers 32 --max-pool-connections 32 --json audit.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
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

REGION = "us-east-1"
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    # Never read a developer's ~/.aws, never reach a real account.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
DUMMY_ENV_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
PREFIX = "bench"
OBJECTS_PER_SEAL = 6.375  # segment, manifest, checkpoint, 3 index objects; 3 index runs every 8th seal
FLAT_RATIO = 1.2
TENANT = "tenant-1"  # the tenant --tenant-days gives a policy of its own (events carry tenant-0..2)
MAX_FINDINGS_SHOWN = 50


def log(msg: str) -> None:
    benchlib.log("bench_audit", msg)


def say(text: str = "") -> None:
    """A readable line of the figures (stderr: stdout holds the JSON result)."""
    print(text, file=sys.stderr, flush=True)


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


# -- the S3 server (child process) ----------------------------------------------------------------------


class SerialWrites:
    """WSGI middleware: one writing request at a time.

    moto's ``If-None-Match: *`` is a check followed by a write; serialising the writes gives
    the conditional put the atomicity real S3 has. Reads (GET, HEAD) still run in parallel.
    """

    def __init__(self, app: Any, latency: float = 0.0) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.latency = latency  # seconds before each read request (--latency-ms)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            if self.latency:
                time.sleep(self.latency)
            return self.app(environ, start_response)
        with self.lock:
            return list(self.app(environ, start_response))  # the write happens while the body is built


def serve(bucket: str, latency: float) -> int:
    """Serve S3 on 127.0.0.1 with ``bucket`` (Object Lock); print the endpoint; stop at EOF on stdin."""
    import logging

    import boto3
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log
    app = SerialWrites(DomainDispatcherApplication(create_backend_app), latency)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(
        Bucket=bucket, ObjectLockEnabledForBucket=True)
    print(endpoint, flush=True)
    sys.stdin.read()  # until the bench closes our stdin (or dies)
    server.shutdown()
    thread.join()
    return 0


# -- filling the journal (child processes) ----------------------------------------------------------------


def populate(args: argparse.Namespace) -> int:
    """Create the journal (--create) or open a stream of it, and append+seal --seals small seals."""
    from wormjournal import Journal
    from wormjournal.journal import JournalConfig
    from wormjournal.retention import RetentionPolicy
    from wormjournal.storage.s3 import S3Store

    store = S3Store.from_url(args.url, endpoint_url=args.endpoint)
    config = JournalConfig(seal_max_age_seconds=None)
    common = {"key_dir": args.keys, "wal_dir": args.wal, "stream": args.stream, "config": config}
    t0 = time.perf_counter()
    if args.create:
        j = Journal.create(store, retention=RetentionPolicy("COMPLIANCE", args.days), **common)
        if args.tenant_days:
            from wormjournal.retention.policy import set_policy

            set_policy(store, RetentionPolicy("COMPLIANCE", args.days),
                       tenant=(TENANT, RetentionPolicy("COMPLIANCE", args.tenant_days)),
                       by="bench_audit", reason="benchmark: one tenant kept longer")
    else:
        j = Journal.open(store, **common)
    seq0 = j.next_seq
    try:
        for k in range(args.seals):
            for i in range(args.events_per_seal):
                n = seq0 + k * args.events_per_seal + i
                j.append("tool_called", f"exec-{args.stream}-{n // 12:06d}",
                         {"tool": ("search", "fetch", "write_file", "run_tests")[n % 4],
                          "args": {"query": f"step {n} of the plan", "limit": 10 + n % 5},
                          "result": {"status": "ok", "items": n % 7, "note": "x" * (40 + n % 60)}},
                         tenant_id=f"tenant-{n % 3}", thread_id=f"thread-{args.stream}-{n // 48:05d}")
            j.seal()
    finally:
        j.close()
    print(json.dumps({"stream": args.stream, "seals": args.seals, "seconds": time.perf_counter() - t0}))
    return 0


def count(args: argparse.Namespace) -> int:
    """Print the number of objects a listing of the store finds."""
    from wormjournal.storage.s3 import S3Store

    store = S3Store.from_url(args.url, endpoint_url=args.endpoint)
    print(sum(1 for _ in store.list("")))
    return 0


# -- one measured audit (child process) ----------------------------------------------------------------------


def audit_child(args: argparse.Namespace) -> int:
    """Audit the store once; print readable lines (stderr), then one JSON line (stdout). Exit 1 on findings."""
    import logging

    from wormjournal.retention.audit import audit_store
    from wormjournal.storage.s3 import S3Store

    client = None
    if args.max_pool_connections:
        import boto3
        import botocore.config

        client = boto3.client("s3", endpoint_url=args.endpoint, config=botocore.config.Config(
            retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5, read_timeout=30,
            max_pool_connections=args.max_pool_connections))
    store = S3Store.from_url(args.url, endpoint_url=args.endpoint, client=client)

    # urllib3 warns once per connection it drops because its pool is full: count them, quietly.
    class Discards(logging.Handler):
        n = 0

        def emit(self, record: logging.LogRecord) -> None:
            if "Connection pool is full" in record.getMessage():
                Discards.n += 1

    pool_log = logging.getLogger("urllib3.connectionpool")
    pool_log.addHandler(Discards())
    pool_log.propagate = False

    # HEADs in flight: wrap this store's lock_state (the audit's one request per object).
    lock = threading.Lock()
    flight = {"now": 0, "max": 0, "threads": 0}
    lock_state = store.lock_state

    def counted_lock_state(name: str, version_id: str | None = None) -> Any:
        with lock:
            flight["now"] += 1
            flight["max"] = max(flight["max"], flight["now"])
        try:
            return lock_state(name, version_id)
        finally:
            with lock:
                flight["now"] -= 1

    store.lock_state = counted_lock_state  # type: ignore[method-assign]

    bar = task = None
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn(f"audit {args.label}, {args.workers} worker(s)"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=Console(stderr=True))
        task = bar.add_task("audit", total=None, rate="")
    started = [0.0]

    def progress(done: int, total: int | None) -> None:
        flight["threads"] = max(flight["threads"], threading.active_count())
        if bar is not None:
            elapsed = time.perf_counter() - started[0]
            bar.update(task, completed=done, total=total,  # type: ignore[arg-type]
                       rate=f"{done / elapsed:,.0f} objects/s" if elapsed > 0 else "")

    rss_before = benchlib.status_kb("VmRSS")
    if bar is not None:
        bar.start()
    try:
        s0, c0 = _cpu_seconds(args.server_pid), time.process_time()
        started[0] = t0 = time.perf_counter()
        audit = audit_store(store, workers=args.workers, progress=progress)
        seconds = time.perf_counter() - t0
        cpu, server_cpu = time.process_time() - c0, _cpu_seconds(args.server_pid) - s0
    finally:
        if bar is not None:
            bar.stop()
    ru_maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    vm_hwm_kb = benchlib.status_kb("VmHWM")
    t1 = time.perf_counter()
    listed = sum(1 for _ in store.list(""))
    listing_seconds = time.perf_counter() - t1

    r = {
        "label": args.label, "workers": args.workers, "max_pool_connections": args.max_pool_connections,
        "objects": audit.objects, "listed": listed, "seconds": round(seconds, 3),
        "objects_per_s": round(audit.objects / seconds, 1), "cpu_seconds": round(cpu, 2),
        "server_cpu_seconds": round(server_cpu, 2),
        "peak_rss_mb": round(ru_maxrss_kb / 1024, 1), "vm_hwm_mb": round(vm_hwm_kb / 1024, 1),
        "rss_before_audit_mb": round(rss_before / 1024, 1),
        "audit_added_mb": round((vm_hwm_kb - rss_before) / 1024, 1),
        "max_heads_in_flight": flight["max"], "max_threads": flight["threads"],
        "pool_full_discards": Discards.n, "listing_seconds": round(listing_seconds, 3),
        "ok": audit.ok, "findings": len(audit.findings), "held": audit.held, "expired": audit.expired,
        "notes": audit.notes,
        "findings_shown": [f.to_json() for f in audit.findings[:MAX_FINDINGS_SHOWN]],
    }
    say(f"audit at {args.label} with {args.workers} worker(s): {r['objects']:,} objects in {r['seconds']:.2f} s = "
          f"{r['objects_per_s']:,.0f} objects/s; peak RSS {r['peak_rss_mb']:.1f} MB; ok={audit.ok} "
          f"({len(audit.findings)} findings)\n"
          f"    CPU {r['cpu_seconds']:.1f} s (audit process), {r['server_cpu_seconds']:.1f} s (moto server); "
          f"VmHWM {r['vm_hwm_mb']:.1f} MB, RSS before the audit {r['rss_before_audit_mb']:.1f} MB "
          f"(the audit added {r['audit_added_mb']:.1f} MB); HEADs in flight <= {r['max_heads_in_flight']}, "
          f"threads <= {r['max_threads']}, pool discards {r['pool_full_discards']}; "
          f"a bare listing takes {r['listing_seconds']:.2f} s")
    for f in audit.findings[:MAX_FINDINGS_SHOWN]:
        say(f"    FINDING {f.kind}: {f.object or '-'}: {f.message}")
    if len(audit.findings) > MAX_FINDINGS_SHOWN:
        say(f"    ... and {len(audit.findings) - MAX_FINDINGS_SHOWN} more")
    print(json.dumps(r), flush=True)
    return 0 if audit.ok and audit.objects > 0 else 1


# -- the orchestration (this process stays small) ------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.script = str(Path(__file__).resolve())
        self.tmp = Path(tempfile.mkdtemp(prefix="wj-bench-audit-"))
        self.bucket = f"wj-bench-{uuid.uuid4().hex[:12]}"
        self.url = f"s3://{self.bucket}/{PREFIX}"
        self.server: subprocess.Popen[str] | None = None
        self.endpoint = ""
        self.created = False
        self.fill_seconds = 0.0
        self.seals = 0

    def child(self, mode: str, *extra: str) -> list[str]:
        return [sys.executable, self.script, mode, "--endpoint", self.endpoint, "--url", self.url, *extra]

    def start_server(self) -> None:
        self.server = subprocess.Popen([sys.executable, self.script, "--serve", "--bucket", self.bucket,
                                        "--latency-ms", str(self.args.latency_ms)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.server.stdout is not None
        self.endpoint = self.server.stdout.readline().strip()
        if not self.endpoint.startswith("http://"):
            raise SystemExit("the moto server did not start")
        log(f"moto S3 server at {self.endpoint} (pid {self.server.pid}), bucket {self.bucket}")

    def stop_server(self) -> int:
        """Stop the server; returns its peak RSS in KiB."""
        if self.server is None:
            return 0
        hwm = benchlib.status_kb("VmHWM", self.server.pid)
        assert self.server.stdin is not None
        self.server.stdin.close()
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
        self.server = None
        return hwm

    def count(self) -> int:
        out = subprocess.run(self.child("--count"), check=True, stdout=subprocess.PIPE, text=True).stdout
        return int(out.strip().splitlines()[-1])

    def _populate(self, stream: str, seals: int, *, create: bool = False) -> subprocess.Popen[str]:
        cmd = self.child("--populate", "--keys", str(self.tmp / "keys"), "--wal", str(self.tmp / "wal"),
                         "--stream", stream, "--seals", str(seals), "--events-per-seal", str(self.args.events_per_seal),
                         "--days", str(self.args.days),
                         *(["--create", "--tenant-days", str(self.args.tenant_days or 0)] if create else []))
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)

    def fill(self, target: int) -> dict[str, Any]:
        """Seal until a listing counts at least ``target`` objects."""
        t0 = time.perf_counter()
        if not self.created:
            p = self._populate("main", 0, create=True)
            p.communicate()
            if p.returncode:
                raise SystemExit("creating the journal failed")
            self.created = True
        have = self.count()
        seals = 0
        while have < target:
            needed = math.ceil((target - have) / OBJECTS_PER_SEAL)
            streams = min(self.args.streams, needed)
            shares = [needed // streams + (1 if i < needed % streams else 0) for i in range(streams)]
            log(f"  {have:,} objects; sealing {needed:,} more times from {streams} stream(s)")
            procs = [self._populate("main" if i == 0 else f"s{i}", n) for i, n in enumerate(shares)]
            for p in procs:
                p.communicate()
            if any(p.returncode for p in procs):
                raise SystemExit("a writer process failed")
            seals += needed
            have = self.count()
        seconds = time.perf_counter() - t0
        self.fill_seconds += seconds
        self.seals += seals
        log(f"  {have:,} objects after {seals:,} seals in {seconds:.1f} s")
        return {"target": target, "objects": have, "seals": seals, "seconds": round(seconds, 1)}

    def audit(self, label: str, workers: int) -> dict[str, Any]:
        assert self.server is not None
        extra = ["--workers", str(workers), "--label", label, "--server-pid", str(self.server.pid)]
        if self.args.max_pool_connections:
            extra += ["--max-pool-connections", str(self.args.max_pool_connections)]
        proc = subprocess.run(self.child("--audit", *extra), stdout=subprocess.PIPE, text=True)
        lines = proc.stdout.strip().splitlines()
        for line in lines[:-1]:
            say(line)
        try:
            r = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            raise SystemExit(f"the audit child failed (exit code {proc.returncode}): {proc.stdout}") from None
        if proc.returncode:
            r["failed"] = True
        return r

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def summarize(result: dict[str, Any], workers: int) -> dict[str, Any]:
    """Add the concurrency ratio and the memory ratio to ``result`` (where measured); return the targets."""
    audits = result["audits"]
    big = [r for r in audits if r["size"] == "N" and r["workers"] == workers]
    quarter = [r for r in audits if r["size"] == "N/4" and r["workers"] == workers]
    one = [r for r in audits if r["workers"] == 1]
    base = quarter or big
    if base and one and workers != 1:
        result["concurrency_ratio"] = round(base[0]["objects_per_s"] / one[0]["objects_per_s"], 2)
    targets: dict[str, Any] = {}
    if big and quarter:
        ratio = big[0]["peak_rss_mb"] / quarter[0]["peak_rss_mb"]
        hwm_ratio = big[0]["vm_hwm_mb"] / quarter[0]["vm_hwm_mb"]
        flat = ratio <= FLAT_RATIO
        result["memory"] = {"peak_rss_ratio": round(ratio, 3), "vm_hwm_ratio": round(hwm_ratio, 3), "flat": flat}
        targets["memory_flat"] = benchlib.target(
            f"the audit's peak RSS at N objects <= {FLAT_RATIO}x its peak at N/4 (memory stays flat; ratio)",
            round(ratio, 3), flat)
    if audits:
        heads = max(r["max_heads_in_flight"] for r in audits)
        targets["bounded_pool"] = benchlib.target(
            f"HEAD requests in flight at once <= --workers ({workers}; the most seen)", heads, heads <= workers)
        findings = sum(r["findings"] for r in audits)
        targets["no_findings"] = benchlib.target(
            "the audit of an untampered journal is ok (findings)", findings,
            findings == 0 and all(r["ok"] and not r.get("failed") for r in audits))
    return targets


def table(res: dict[str, Any]) -> str:
    """The result (the shared schema) as a readable summary."""
    r, p = res["results"], res["params"]
    audits = r["audits"]
    lines = ["", f"{'size':<5} {'workers':>7} {'objects':>8} {'seconds':>8} {'objects/s':>10} {'peak RSS MB':>11} "
                 f"{'added MB':>8} {'CPU s':>6} {'server CPU s':>12} {'HEADs<=':>7}"]
    for a in audits:
        lines.append(f"{a['size']:<5} {a['workers']:>7} {a['objects']:>8,} {a['seconds']:>8.2f} "
                     f"{a['objects_per_s']:>10,.0f} {a['peak_rss_mb']:>11.1f} {a['audit_added_mb']:>8.1f} "
                     f"{a['cpu_seconds']:>6.1f} {a['server_cpu_seconds']:>12.1f} {a['max_heads_in_flight']:>7}")
    lines.append("")
    workers = p["workers"]
    big = [a for a in audits if a["size"] == "N" and a["workers"] == workers]
    quarter = [a for a in audits if a["size"] == "N/4" and a["workers"] == workers]
    one = [a for a in audits if a["workers"] == 1]
    if r.get("concurrency_ratio") is not None:
        base = (quarter or big)[0]
        lines.append(f"concurrency: {base['objects_per_s']:,.0f} objects/s with {workers} workers / "
                     f"{one[0]['objects_per_s']:,.0f} with 1 = {r['concurrency_ratio']:.2f}x "
                     f"(at {base['objects']:,} objects)")
    if r.get("memory"):
        m, b, q = r["memory"], big[0], quarter[0]
        lines.append(f"memory {'stayed flat' if m['flat'] else 'GREW'}: peak RSS {b['peak_rss_mb']:.1f} MB at "
                     f"{b['objects']:,} objects vs {q['peak_rss_mb']:.1f} MB at {q['objects']:,} "
                     f"= {m['peak_rss_ratio']:.2f}x for {b['objects'] / q['objects']:.1f}x the objects "
                     f"(VmHWM {m['vm_hwm_ratio']:.2f}x; flat means <= {FLAT_RATIO}x); the audit itself added "
                     f"{q['audit_added_mb']:.1f} MB and {b['audit_added_mb']:.1f} MB to the RSS after the imports")
    lines.append(f"bounded pool: at most {max((a['max_heads_in_flight'] for a in audits), default=0)} HEADs in "
                 f"flight (workers={workers}); urllib3 discarded "
                 f"{sum(a['pool_full_discards'] for a in audits)} connection(s) from a full pool")
    lines.append(f"filling took {r['fill_seconds']:.1f} s (not measured); the whole run {r['total_seconds']:.1f} s; "
                 f"moto server peak RSS {r['server_peak_rss_mb']:.1f} MB; load average at the end "
                 f"{r['load_average_end']}")
    for t in res["targets"].values():
        lines.append(f"target {t['target']}: {t['value']}  {'PASS' if t['met'] else 'MISS'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    for k, v in DUMMY_ENV.items():
        os.environ[k] = v  # inherited by every child
    for k in DUMMY_ENV_UNSET:
        os.environ.pop(k, None)
    small = max(1, args.objects // 4)
    params = {"objects": args.objects, "workers": args.workers, "streams": args.streams,
              "events_per_seal": args.events_per_seal, "days": args.days, "tenant_days": args.tenant_days,
              "max_pool_connections": args.max_pool_connections, "latency_ms": args.latency_ms}
    # perf_report's section reads the configuration from the results, too
    result: dict[str, Any] = {
        "objects_target": args.objects, "workers": args.workers, "streams": args.streams,
        "events_per_seal": args.events_per_seal, "retention": f"COMPLIANCE {args.days} days",
        "tenant_policy": f"{TENANT}: COMPLIANCE {args.tenant_days} days" if args.tenant_days else None,
        "max_pool_connections": args.max_pool_connections, "latency_ms": args.latency_ms,
        "load_average_start": [round(x, 2) for x in os.getloadavg()], "fill": [], "audits": [],
    }
    bench = Bench(args)
    t_start = time.perf_counter()
    failed: dict[str, Any] | None = None
    try:
        bench.start_server()
        say(f"S3 lock audit benchmark: moto server {bench.endpoint}, {bench.url}, COMPLIANCE {args.days} days, "
            f"{os.cpu_count()} CPU(s), load average {result['load_average_start']}"
            + (f", {TENANT} COMPLIANCE {args.tenant_days} days" if args.tenant_days else "")
            + (f", {args.latency_ms:g} ms added to each read request" if args.latency_ms else ""))
        plan = [(small, "N/4", [args.workers, 1]), (args.objects, "N", [args.workers])]
        if small >= args.objects:
            plan = [(args.objects, "N", [args.workers, 1])]
        for target, label, workers_list in plan:
            log(f"filling the journal to {target:,} objects")
            fill = bench.fill(target)
            result["fill"].append(fill)
            say(f"filled to {fill['objects']:,} objects ({fill['seals']:,} seals) in {fill['seconds']:.1f} s "
                "(not measured)")
            for w in workers_list:
                log(f"auditing {fill['objects']:,} objects with {w} worker(s)")
                r = bench.audit(label, w)
                r["size"] = label
                result["audits"].append(r)
                if r.get("failed"):
                    failed = r
                    break
            if failed:
                break
    finally:
        server_hwm = bench.stop_server()
        bench.cleanup()
    result["server_peak_rss_mb"] = round(server_hwm / 1024, 1)
    result["fill_seconds"] = round(bench.fill_seconds, 1)
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    targets = summarize(result, args.workers)
    # the machine: the file system of the temp dir (the writers' keys and WAL; the store is the moto server's)
    res = benchlib.result("audit", bench.tmp.parent, params, result, targets, started=t_start)
    say(table(res))
    benchlib.emit(res, args.json)
    if args.json:
        log(f"wrote {args.json}")
    if failed:
        say(f"FAILED: the audit at {failed['size']} with {failed['workers']} worker(s) is not ok: "
            f"{failed['findings']} finding(s), {failed['objects']} object(s)")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--objects", type=int, default=10_000, metavar="N",
                        help="objects in the store for the large audit; the small one has N/4 (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=16,
                        help="the audit's concurrent requests (default: %(default)s)")
    parser.add_argument("--streams", type=int, default=4,
                        help="writer processes filling the journal, one stream each (default: %(default)s)")
    parser.add_argument("--events-per-seal", type=int, default=3, metavar="E", help="(default: %(default)s)")
    parser.add_argument("--days", type=int, default=30, help="COMPLIANCE retention in days (default: %(default)s)")
    parser.add_argument("--max-pool-connections", type=int, default=None, metavar="P",
                        help="give the audit a boto3 client with this connection pool "
                             "(default: the store's own client, as the CLI has it)")
    parser.add_argument("--tenant-days", type=int, default=None, metavar="D",
                        help=f"give {TENANT} a COMPLIANCE policy of D days before filling: the audit then reads "
                             "each manifest and the tenants of each segment (default: no tenant policy)")
    parser.add_argument("--latency-ms", type=float, default=0.0, metavar="L",
                        help="the server waits L ms before each GET and HEAD (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the result to FILE")
    # Internal: the child processes.
    mode = parser.add_mutually_exclusive_group()
    for flag in ("--serve", "--populate", "--count", "--audit"):
        mode.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    for flag in ("--bucket", "--endpoint", "--url", "--keys", "--wal", "--stream", "--label"):
        parser.add_argument(flag, help=argparse.SUPPRESS)
    parser.add_argument("--seals", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--create", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.bucket, args.latency_ms / 1000)
    if args.populate:
        return populate(args)
    if args.count:
        return count(args)
    if args.audit:
        return audit_child(args)
    if args.latency_ms < 0:
        parser.error("--latency-ms must be >= 0")
    if args.tenant_days is not None and args.tenant_days < args.days:
        parser.error("--tenant-days must be at least --days (a tenant's policy can only be stronger)")
    if args.objects < 1 or args.workers < 1 or args.streams < 1 or args.events_per_seal < 1 or args.days < 1:
        parser.error("--objects, --workers, --streams, --events-per-seal and --days must be positive")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
