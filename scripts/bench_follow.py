#!/usr/bin/env python3
"""Benchmark ``Reader.follow``: how soon a live follower sees what a writer appends, and that it sees all of it.

The issue's acceptance: a writer appends --events events (100,000) while two followers run, one in another
process; both must receive every event exactly in seq order, nothing duplicated, and the delay from ``append``
returning to a local follower seeing the event is reported (p50, p99).

The run, on one machine, one local store (its write-ahead log in ``<store>/.wal``):

  writer      this process: ``Journal.append`` of one event at a time (--batch 1), or ``append_batch`` of
              --batch events, as fast as it can, the 1 KiB tool-call events of scripts/benchlib.py (each
              payload also carries ``"i": <its seq>``), plaintext (``key_scope=None``). Seals run in the
              journal's seal worker process during the run: every --seal-every-seconds
              (``seal_max_age_seconds``) or --seal-max-events (``seal_max_events``), whichever comes first.
              Just after each call returns it records ``time.monotonic_ns()`` (CLOCK_MONOTONIC: one clock for
              every process of the machine) for each seq of the call.
  follower 1  a thread of a child process (this script, --child), with a Reader of its own built as a
              process apart builds one: ``Reader(store, wal_dir=<store>/.wal, wal_key=load_wal_key(...))``.
  follower 2  a thread of the writer's process (``Journal.reader().follow``), or with --second process
              another child process like follower 1. In the writer's process it shares the GIL with the
              writer: its work slows the appends, and the appends delay it.

Each follower runs ``Reader.follow(poll_seconds=--poll-seconds, timeout=--timeout)`` from the start and records
(seq, monotonic_ns when the iterator handed the event over) for each event, until it has --events of them. The
checks, per follower: the seqs are exactly 0..N-1 in that order, none twice, each payload's ``i`` is its seq.
The latency of an event is its seen time minus the time its append call returned (one time for a whole batch);
a follower may see an event a moment before the writer's call returns (the writer says it is durable, in the
WAL directory's DURABLE file, just before the call returns): such latencies count as 0, and how many there were
is reported. Also: the append rate, each follower's
throughput (events / time from the writer's first append to the follower's last event) and CPU time, how many
events it was handed from sealed segments (it was behind a seal) and from the WAL, the seals during the run, and
a timeline (every 5% of the events: when appended, when seen). The first events carry the followers' idle wait:
caught up before the writer starts, a follower looks at most every poll_seconds (50 ms by default with a WAL).

A follower that falls behind is not waited for forever: once the writer is done, the followers get
--drain-seconds to finish, then they are stopped and what they saw is reported (FAIL); each also ends on its
own after --timeout seconds without a new event.

Prints one JSON object to stdout in the shared result schema of scripts/benchlib.py (--json FILE writes it too);
a readable report and progress go to stderr. The store is built in a temp dir removed at the end, unless --store
DIR is given (a new directory; its keys go in DIR.keys beside it; both are kept).

Usage (from the repository root):

    .venv/bin/python scripts/bench_follow.py                         # 100,000 single appends, ~1 min
    .venv/bin/python scripts/bench_follow.py --events 20000          # quick
    .venv/bin/python scripts/bench_follow.py --batch 100 --second process --json follow.json
    .venv/bin/python scripts/bench_follow.py --poll-seconds 0.01 --seal-every-seconds 1
    .venv/bin/python scripts/bench_follow.py --events 20000 --profile   # cProfile of each follower to stderr
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import EventFactory, emit, pct, profile_text, result, summary, target
from benchlib import log as blog

from wormjournal import Journal, JournalConfig, Reader
from wormjournal.journal.keys import load_wal_key

CLOCK = time.monotonic_ns  # CLOCK_MONOTONIC on Linux: the same clock in every process of the machine
READY_SECONDS = 120.0  # a child's imports and its Reader's first reads


def log(msg: str) -> None:
    blog("bench_follow", msg)


# -- a follower (a thread of this process or of a child) --------------------------------------------------------


@dataclass
class Seen:
    """What one follower was handed: seqs and the times it saw them, and how it ended."""

    seqs: array = field(default_factory=lambda: array("q"))
    times: array = field(default_factory=lambda: array("q"))
    sealed: int = 0  # handed over from a sealed segment (the follower was behind a seal)
    bad_payloads: int = 0  # a payload whose "i" is not the event's seq
    ended: str = "running"  # all | idle timeout | stopped | error
    error: str | None = None
    cpu_seconds: float = 0.0
    profile: str | None = None

    def meta(self) -> dict[str, Any]:
        return {"count": len(self.seqs), "sealed": self.sealed, "bad_payloads": self.bad_payloads,
                "ended": self.ended, "error": self.error, "cpu_seconds": round(self.cpu_seconds, 3)}


def follow_into(reader: Reader, n: int, seen: Seen, *, poll_seconds: float | None, timeout: float,
                stop: threading.Event, profile: bool) -> None:
    """Follow ``reader`` from the start until ``n`` events were handed over (or it ends otherwise), into ``seen``."""
    prof = cProfile.Profile() if profile else None
    c0 = time.thread_time()
    seqs, times, clock = seen.seqs, seen.times, CLOCK
    try:
        if prof is not None:
            prof.enable()
        for e in reader.follow(timeout=timeout, poll_seconds=poll_seconds, stop=stop):
            t = clock()
            seqs.append(e.seq)
            times.append(t)
            if e.sealed:
                seen.sealed += 1
            payload = e.payload
            if not isinstance(payload, dict) or payload.get("i") != e.seq:
                seen.bad_payloads += 1
            if len(seqs) >= n:
                seen.ended = "all"
                break
        else:
            seen.ended = "stopped" if stop.is_set() else "idle timeout"
    except Exception as e:  # noqa: BLE001 - reported, with its traceback
        seen.ended = "error"
        seen.error = f"{type(e).__name__}: {e}"
        traceback.print_exc(file=sys.stderr)
    finally:
        if prof is not None:
            prof.disable()
            seen.profile = profile_text(prof, tottime=20, cumulative=25)
        seen.cpu_seconds = time.thread_time() - c0


def child_follower(args: argparse.Namespace) -> int:
    """--child: follower 1 (and 2 with --second process), in a thread of this process; stdout says "ready", then
    one JSON line of what it saw (the seqs and times go to --out). A line "stop" on stdin (or its end) stops it."""
    store, keys = args.store, args.keys
    reader = Reader(store, wal_dir=store / ".wal", wal_key=load_wal_key(keys, args.journal_id))
    stop = threading.Event()

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()  # asked to, or the parent is gone

    threading.Thread(target=watch_stdin, daemon=True).start()
    seen = Seen()
    t = threading.Thread(target=follow_into, args=(reader, args.events, seen),
                         kwargs={"poll_seconds": args.poll_seconds, "timeout": args.timeout, "stop": stop,
                                 "profile": args.profile}, name="follower")
    t.start()
    print("ready", flush=True)
    t.join()
    if seen.profile:
        print(f"\n===== cProfile: follower in process {os.getpid()} ({args.label}) =====\n{seen.profile}",
              file=sys.stderr, flush=True)
    with open(args.out, "wb") as f:
        seen.seqs.tofile(f)
        seen.times.tofile(f)
    print(json.dumps({**seen.meta(), "pid": os.getpid(), "process_cpu_seconds": round(time.process_time(), 3)}),
          flush=True)
    return 0


class ChildFollower:
    """A follower in a child process: this script with --child."""

    def __init__(self, label: str, args: argparse.Namespace, store: Path, keys: Path, journal_id: str,
                 work: Path) -> None:
        self.label = label
        self.out = work / f"follower-{label}.bin"
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--label", label, "--store", str(store),
                "--keys", str(keys), "--journal-id", journal_id, "--events", str(args.events),
                "--timeout", str(args.timeout), "--out", str(self.out)]
        if args.poll_seconds is not None:
            argv += ["--poll-seconds", str(args.poll_seconds)]
        if args.profile:
            argv.append("--profile")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.stopped = False

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], READY_SECONDS)
        line = self.proc.stdout.readline().strip() if ready else ""
        if line != "ready":
            self.proc.kill()
            raise SystemExit(f"follower {self.label}: the child did not start ({line!r})")

    def finish(self, deadline: float) -> tuple[Seen, dict[str, Any]]:
        """Wait for it until ``deadline`` (time.monotonic()), then stop it; what it saw."""
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log(f"follower {self.label} has not got every event by the deadline: stopping it")
            self.stopped = True
            assert self.proc.stdin is not None
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        lines = out.strip().splitlines() if out else []
        if self.proc.returncode or not lines:
            seen = Seen(ended="error", error=f"the child exited with code {self.proc.returncode}")
            return seen, {}
        meta = json.loads(lines[-1])
        data = np.fromfile(self.out, dtype=np.int64)
        count = meta["count"]
        seen = Seen(seqs=array("q", data[:count].tobytes()), times=array("q", data[count:].tobytes()),
                    sealed=meta["sealed"], bad_payloads=meta["bad_payloads"], ended=meta["ended"],
                    error=meta["error"], cpu_seconds=meta["cpu_seconds"])
        return seen, {"pid": meta["pid"], "process_cpu_seconds": meta["process_cpu_seconds"]}


class ThreadFollower:
    """A follower in a thread of the writer's process: ``Journal.reader().follow``."""

    def __init__(self, label: str, args: argparse.Namespace, journal: Journal) -> None:
        self.label = label
        self.seen = Seen()
        self.stop = threading.Event()
        self.stopped = False
        self.thread = threading.Thread(
            target=follow_into, args=(journal.reader(), args.events, self.seen),
            kwargs={"poll_seconds": args.poll_seconds, "timeout": args.timeout, "stop": self.stop,
                    "profile": args.profile}, name=f"follower-{label}")
        self.thread.start()

    def wait_ready(self) -> None:
        pass

    def finish(self, deadline: float) -> tuple[Seen, dict[str, Any]]:
        self.thread.join(max(0.0, deadline - time.monotonic()))
        if self.thread.is_alive():
            log(f"follower {self.label} has not got every event by the deadline: stopping it")
            self.stopped = True
            self.stop.set()
            self.thread.join(30)
        if self.seen.profile:
            print(f"\n===== cProfile: follower thread of the writer's process ({self.label}) =====\n"
                  f"{self.seen.profile}", file=sys.stderr, flush=True)
        return self.seen, {"pid": os.getpid()}


# -- the figures ----------------------------------------------------------------------------------------------------


def check(seen: Seen, n: int) -> dict[str, Any]:
    """Exactly seqs 0..n-1 in order, none twice, every payload its own."""
    seqs = np.frombuffer(seen.seqs, dtype=np.int64) if len(seen.seqs) else np.zeros(0, dtype=np.int64)
    in_order = bool(len(seqs) == 0 or (np.diff(seqs) > 0).all())
    exact_prefix = bool((seqs == np.arange(len(seqs))).all())  # no gap, no duplicate, nothing out of order
    unique = np.unique(seqs)
    duplicates = int(len(seqs) - len(unique))
    missing = int(n - np.count_nonzero((unique >= 0) & (unique < n)))
    first_bad = None
    if not exact_prefix:
        k = int(np.argmax(seqs != np.arange(len(seqs))))
        first_bad = {"position": k, "seq": int(seqs[k]), "expected": k}
    ok = exact_prefix and len(seqs) == n and seen.bad_payloads == 0 and seen.error is None
    return {"pass": ok, "received": int(len(seqs)), "in_seq_order": in_order, "exactly_0_to_n_minus_1": exact_prefix
            and len(seqs) == n, "duplicates": duplicates, "missing": missing, "bad_payloads": seen.bad_payloads,
            "first_out_of_place": first_bad}


def latency(seen: Seen, returned: np.ndarray) -> dict[str, Any]:
    """Seen time minus the time the seq's append call returned, clamped at 0, in ms."""
    seqs = np.frombuffer(seen.seqs, dtype=np.int64) if len(seen.seqs) else np.zeros(0, dtype=np.int64)
    times = np.frombuffer(seen.times, dtype=np.int64) if len(seen.times) else np.zeros(0, dtype=np.int64)
    ok = (seqs >= 0) & (seqs < len(returned))
    raw = times[ok] - returned[seqs[ok]]
    early = int(np.count_nonzero(raw < 0))
    if not len(raw):
        return {"n": 0}
    v = sorted((np.maximum(raw, 0) / 1e6).tolist())
    return {"n": len(v), "p50_ms": round(pct(v, 0.50), 3), "p90_ms": round(pct(v, 0.90), 3),
            "p99_ms": round(pct(v, 0.99), 3), "p999_ms": round(pct(v, 0.999), 3), "max_ms": round(v[-1], 3),
            "mean_ms": round(float(np.mean(v)), 3), "seen_before_append_returned": early,
            "earliest_before_return_ms": round(float(-raw.min()) / 1e6, 3) if early else 0.0}


def timeline(seen: Seen, returned: np.ndarray, started_ns: int, points: int = 20) -> list[dict[str, Any]]:
    """Every len/points-th event the follower got: when its append returned and when the follower saw it, in
    seconds from the writer's first append."""
    got = len(seen.seqs)
    out = []
    for k in sorted({min(got - 1, max(0, round(got * i / points) - 1)) for i in range(1, points + 1)} if got else ()):
        seq = seen.seqs[k]
        appended = (int(returned[seq]) - started_ns) / 1e9 if 0 <= seq < len(returned) else None
        out.append({"seq": seq, "appended_s": None if appended is None else round(appended, 3),
                    "seen_s": round((seen.times[k] - started_ns) / 1e9, 3)})
    return out


def segments_of(store: Path) -> int:
    d = store / "manifests" / "stream=main"
    return sum(1 for p in d.iterdir() if p.name.endswith(".note")) if d.is_dir() else 0


# -- the run --------------------------------------------------------------------------------------------------------


def make_events(n: int, seed: int) -> list[dict[str, Any]]:
    factory = EventFactory(seed)
    events = []
    for i in range(n):
        ev = factory.event(i)
        ev["payload"]["i"] = i  # the seq it gets: each follower checks it
        events.append(ev)
    return events


def run(args: argparse.Namespace, base: Path, store: Path, keys: Path) -> dict[str, Any]:
    n, batch = args.events, args.batch
    log(f"making {n:,} events (1 KiB payloads)")
    events = make_events(n, args.seed)
    config = JournalConfig(key_scope=None, seal_max_age_seconds=args.seal_every_seconds,
                           seal_max_events=args.seal_max_events)
    store.mkdir(parents=True)
    j = Journal.create(store, key_dir=keys, config=config)
    followers: list[ChildFollower | ThreadFollower] = []
    try:
        log(f"journal {j.journal_id} in {store}; starting the followers")
        followers.append(ChildFollower("1", args, store, keys, j.journal_id, base))
        if args.second == "process":
            followers.append(ChildFollower("2", args, store, keys, j.journal_id, base))
        for f in followers:
            f.wait_ready()
        if args.second == "thread":
            followers.append(ThreadFollower("2", args, j))
        time.sleep(0.2)  # the followers' first looks at the empty stream

        returned = np.zeros(n, dtype=np.int64)
        call_ns: list[int] = []
        thread_seen = next((f.seen for f in followers if isinstance(f, ThreadFollower)), None)
        every = max(batch, (n // 10) // batch * batch)
        log(f"appending {n:,} events, " + ("one append each" if batch == 1 else f"append_batch of {batch}"))
        clock = CLOCK
        started_ns = clock()
        c0, p0 = time.thread_time(), time.process_time()
        for k in range(0, n, batch):
            chunk = events[k:k + batch]
            if batch == 1:
                ev = dict(chunk[0])
                et, ex, pl = ev.pop("event_type"), ev.pop("execution_id"), ev.pop("payload")
                a0 = clock()
                seqs = [j.append(et, ex, pl, **ev)]
            else:
                a0 = clock()
                seqs = j.append_batch(chunk)
            t = clock()
            returned[k:k + len(chunk)] = t
            call_ns.append(t - a0)
            if seqs[0] != k or seqs[-1] != k + len(chunk) - 1:
                raise SystemExit(f"the writer got seqs {seqs[0]}..{seqs[-1]} for events {k}..{k + len(chunk) - 1}")
            done = k + len(chunk)
            if done % every == 0 or done == n:
                secs = (t - started_ns) / 1e9
                log(f"  {done:,} appended, {done / secs:,.0f} events/s, {j.sealed_seq:,} sealed"
                    + (f", follower 2 (thread) has {len(thread_seen.seqs):,}" if thread_seen is not None else ""))
        ended_ns = clock()
        writer_cpu, process_cpu = time.thread_time() - c0, time.process_time() - p0
        append_seconds = (ended_ns - started_ns) / 1e9
        sealed_at_end = j.sealed_seq
        segments_at_end = segments_of(store)
        log(f"writer done: {n / append_seconds:,.0f} events/s; waiting up to {args.drain_seconds} s for the followers")

        deadline = time.monotonic() + args.drain_seconds
        outcomes = [(f, *f.finish(deadline)) for f in followers]
        drained_ns = clock()
        wait_ok = j.wait_for_seals(timeout=60)
        seal_error = j.last_seal_error
    finally:
        for f in followers:
            if isinstance(f, ChildFollower) and f.proc.poll() is None:
                f.proc.kill()
            elif isinstance(f, ThreadFollower):
                f.stop.set()
        j.close()

    per: dict[str, Any] = {}
    for f, seen, extra in outcomes:
        where = ("a thread of the writer's process" if isinstance(f, ThreadFollower)
                 else "a thread of a child process (another process)")
        times = np.frombuffer(seen.times, dtype=np.int64) if len(seen.times) else None
        last_ns = int(times[-1]) if times is not None else None
        got = len(seen.seqs)
        span = (last_ns - started_ns) / 1e9 if last_ns is not None else None
        per[f"follower_{f.label}"] = {
            "where": where, **extra, "checks": check(seen, n), "latency": latency(seen, returned),
            **seen.meta(), "stopped_at_deadline": f.stopped,
            "from_sealed_segments": seen.sealed, "from_wal": got - seen.sealed,
            "events_per_s": round(got / span) if span else None,
            "last_event_after_writer_done_ms": round((last_ns - ended_ns) / 1e6, 3) if last_ns is not None else None,
            "timeline": timeline(seen, returned, started_ns),
        }
    return {
        "writer": {
            "events": n, "batch": batch, "calls": len(call_ns), "seconds": round(append_seconds, 3),
            "events_per_s": round(n / append_seconds), "cpu_seconds": round(writer_cpu, 3),
            "process_cpu_seconds": round(process_cpu, 3),
            "call_latency": summary(call_ns, "ms"),
            "process": "the main process" + (" (follower 2 is a thread of it)" if args.second == "thread" else ""),
        },
        "seals": {
            "seal_max_age_seconds": args.seal_every_seconds, "seal_max_events": args.seal_max_events,
            "segments_when_writer_done": segments_at_end, "sealed_seq_when_writer_done": sealed_at_end,
            "segments_at_end": segments_of(store), "seal_worker_caught_up": wait_ok,
            "last_seal_error": None if seal_error is None else repr(seal_error),
        },
        "followers": per,
        "drain_seconds": round((drained_ns - ended_ns) / 1e9, 3),
    }


def report(res: dict[str, Any]) -> None:
    r, p, m = res["results"], res["params"], res["machine"]
    w, s = r["writer"], r["seals"]

    def out(line: str = "") -> None:
        print(line, file=sys.stderr)

    out()
    out(f"bench_follow: {w['events']:,} events of ~1 KiB, "
        + ("one append per event" if w["batch"] == 1 else f"append_batch of {w['batch']}")
        + f", poll_seconds {p['poll_seconds'] if p['poll_seconds'] is not None else 'default'}, "
        f"follower 2 in {p['second']}")
    out(f"machine: {m['cpu_count']} cpus ({m['cpu_model']}), {m['memory_gb']} GB, python {m['python']}, "
        f"fs {m['fs']['type'] if m['fs'] else '?'}")
    cl = w["call_latency"]
    out(f"writer ({w['process']}): {w['events_per_s']:,} events/s over {w['seconds']} s, {w['calls']:,} calls, "
        f"call latency p50 {cl['p50_ms']} ms p99 {cl['p99_ms']} ms max {cl['max_ms']} ms, "
        f"CPU {w['cpu_seconds']} s (its process: {w['process_cpu_seconds']} s)")
    out(f"seals: {s['segments_when_writer_done']} segments when the writer was done "
        f"({s['sealed_seq_when_writer_done']:,} events sealed), {s['segments_at_end']} at the end "
        f"(rules: every {s['seal_max_age_seconds']} s or {s['seal_max_events']:,} events)"
        + (f"; seal error {s['last_seal_error']}" if s["last_seal_error"] else ""))
    out()
    out(f"{'follower':<10}{'where':<28}{'received':>10}{'p50 ms':>11}{'p90 ms':>11}{'p99 ms':>11}{'max ms':>11}"
        f"{'early':>7}{'ev/s':>9}{'sealed':>8}{'CPU s':>8}  order/dup")
    for name, f in r["followers"].items():
        lat, c = f["latency"], f["checks"]
        where = "writer's process, thread" if "writer" in f["where"] else "child process, thread"
        if lat.get("n"):
            figures = (f"{lat['p50_ms']:>11.3f}{lat['p90_ms']:>11.3f}{lat['p99_ms']:>11.3f}{lat['max_ms']:>11.3f}"
                       f"{lat['seen_before_append_returned']:>7}")
        else:
            figures = f"{'-':>11}{'-':>11}{'-':>11}{'-':>11}{'-':>7}"
        out(f"{name.removeprefix('follower_'):<10}{where:<28}{c['received']:>10,}{figures}"
            f"{f['events_per_s'] or 0:>9,}{f['sealed']:>8,}{f['cpu_seconds']:>8.2f}  "
            f"{'PASS' if c['pass'] else 'FAIL'}")
        if not c["pass"] or f["ended"] != "all":
            out(f"    ended: {f['ended']}{' (stopped at the deadline)' if f['stopped_at_deadline'] else ''}, "
                f"error {f['error']}, in order {c['in_seq_order']}, duplicates {c['duplicates']}, missing "
                f"{c['missing']}, bad payloads {c['bad_payloads']}, first out of place {c['first_out_of_place']}")
        last = f["last_event_after_writer_done_ms"]
        out(f"    last event seen at {'-' if last is None else f'{last:+}'} ms from the writer's last append return; "
            f"{f['from_wal']:,} from the WAL, {f['from_sealed_segments']:,} from sealed segments")
    out("(early: events seen before their append call returned, counted as 0 ms; ev/s: events / time from the "
        "writer's first append to the follower's last event)")
    for name, t in res["targets"].items():
        out(f"{'PASS' if t['met'] else 'FAIL'}  {name}: {t['target']} ({t['value']})")
    out(f"wall time {res['wall_seconds']} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000, help="events the writer appends (default 100000)")
    ap.add_argument("--batch", type=int, default=1,
                    help="events per call: 1 = one append per event (default), more = append_batch")
    ap.add_argument("--seal-every-seconds", type=float, default=5.0, metavar="S",
                    help="the writer seals unsealed events once the oldest is S s old (seal_max_age_seconds, "
                         "default 5), in its seal worker")
    ap.add_argument("--seal-max-events", type=int, default=JournalConfig.seal_max_events, metavar="N",
                    help=f"... or once N are unsealed (seal_max_events, default {JournalConfig.seal_max_events})")
    ap.add_argument("--poll-seconds", type=float, default=None, metavar="S",
                    help="the followers' poll_seconds: the longest wait between two looks once caught up "
                         "(default: follow's own, 50 ms with a WAL)")
    ap.add_argument("--second", choices=("thread", "process"), default="thread",
                    help="follower 2 in a thread of the writer's process (default) or in a child process")
    ap.add_argument("--timeout", type=float, default=30.0, metavar="S",
                    help="a follower ends after S s without a new event (follow's timeout, default 30)")
    ap.add_argument("--drain-seconds", type=float, default=120.0, metavar="S",
                    help="once the writer is done, how long the followers get to finish before they are "
                         "stopped and reported as behind (default 120)")
    ap.add_argument("--store", type=Path, default=None, metavar="DIR",
                    help="build the store in DIR (new; its keys in DIR.keys) and keep both (default: a temp dir, "
                         "removed)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the generated events")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the result to FILE")
    ap.add_argument("--profile", action="store_true", help="cProfile each follower, top costs to stderr")
    # a follower child (this script, run by itself)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--label", default="1", help=argparse.SUPPRESS)
    ap.add_argument("--keys", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--journal-id", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_follower(args)
    for name in ("events", "batch", "seal_max_events"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.seal_every_seconds <= 0 or (args.poll_seconds is not None and args.poll_seconds <= 0):
        ap.error("--seal-every-seconds and --poll-seconds must be > 0")

    started = time.perf_counter()
    if args.store is not None:
        store = args.store.absolute()
        if store.exists() and any(store.iterdir()):
            ap.error(f"--store {store}: not empty")
        if store.exists():
            store.rmdir()
        keys = store.with_name(store.name + ".keys")
        base = Path(tempfile.mkdtemp(prefix="bench-follow-"))  # the followers' seq/time files
    else:
        base = Path(tempfile.mkdtemp(prefix="bench-follow-"))
        store, keys = base / "store", base / "keys"
    try:
        results = run(args, base, store, keys)
        params = {k: getattr(args, k) for k in ("events", "batch", "seal_every_seconds", "seal_max_events",
                                                "poll_seconds", "second", "timeout", "drain_seconds", "seed")}
        params["profiled"] = args.profile
        fs = results["followers"]
        targets = {
            "every_follower_gets_every_event_in_order_once": target(
                "both followers receive every event exactly in seq order, nothing duplicated",
                min(f["checks"]["received"] for f in fs.values()), all(f["checks"]["pass"] for f in fs.values())),
        }
        res = result("follow", store.parent, params, results, targets, started=started)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if args.store is not None:
            log(f"kept {store} and {keys}")
    report(res)
    emit(res, args.json)
    return 0 if targets["every_follower_gets_every_event_in_order_once"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
