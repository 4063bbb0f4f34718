#!/usr/bin/env python3
"""Benchmark SQL over the segments (``wormjournal query``): seconds and peak memory over 1,000,000 events.

Builds (or reuses, with --store) a sealed local journal of --events agent-like events
over 4 UTC days (executions of node_started / tool_called / tool_returned /
llm_completed / node_completed, payloads of 300..1500 bytes of JSON in clear), then runs
each query of QUERIES through ``wormjournal.analytics.connect`` (the view ``events``, as
``wormjournal query`` does) in a fresh child process, twice: over every event, and over
one day (``WHERE date = <first day>``, a quarter of the files, pruned by partition). Each
child reports the wall time of the query, the rows it returned, the events in its scope and
its peak RSS (VmHWM from /proc; not ru_maxrss, which after a vfork+exec can be the parent's,
and the parent has just built the journal). Memory is bounded when the peak over all events
stays close to the peak over one day (the ratio is reported).

Prints the result as one JSON object (stdout) in the shared result schema of
scripts/benchlib.py (--json FILE writes it too, for scripts/perf_report.py); a readable
table and progress go to stderr.

    .venv/bin/python scripts/bench_query.py                       # 1,000,000 events (~1-2 min to build)
    .venv/bin/python scripts/bench_query.py --events 100000       # quick
    .venv/bin/python scripts/bench_query.py --store bench-out/query-1m --json query.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True  # no scripts/__pycache__ from importing benchlib
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import make_payload  # noqa: E402  (the realistic payload generator)

NODES = ("plan", "retrieve", "act", "respond")
DAY0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
QUERIES = {
    "count_by_type": "SELECT event_type, count(*) AS n FROM events {where} GROUP BY 1 ORDER BY 1",
    "p95_per_node": """
        WITH spans AS (
            SELECT execution_id, node, step_id,
                   min(ts) FILTER (WHERE event_type = 'node_started') AS t0,
                   max(ts) FILTER (WHERE event_type = 'node_completed') AS t1
            FROM events {where} GROUP BY ALL)
        SELECT node, count(*) AS runs, quantile_cont(epoch_ms(t1) - epoch_ms(t0), 0.95) AS p95_ms
        FROM spans WHERE t0 IS NOT NULL AND t1 IS NOT NULL GROUP BY node ORDER BY node""",
    "payload_json_filter": """
        SELECT payload_json->>'tool' AS tool, count(*) AS n FROM events
        {where} {and_} event_type = 'tool_called' GROUP BY 1 ORDER BY 2 DESC""",
}


def log(message: str) -> None:
    benchlib.log("bench_query", message)


def build(store: Path, keys: Path, events: int, seed: int) -> float:
    from wormjournal import Journal, JournalConfig

    config = JournalConfig(seal_max_age_seconds=None, seal_max_events=100_000, seal_max_bytes=1 << 40,
                           segment_max_events=100_000, key_scope=None)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    per_day = events // 4
    with Journal.create(store, key_dir=keys, config=config) as j:
        batch: list[dict[str, Any]] = []
        n = 0
        run = 0
        while n < events:
            day = min(3, n // per_day)
            start = DAY0 + dt.timedelta(days=day, seconds=(n % per_day) * 0.05)
            execution = f"run-{run:07d}"
            run += 1
            for step, node in enumerate(NODES):
                ts = start + dt.timedelta(seconds=step * 2)
                took = dt.timedelta(milliseconds=rng.randint(50, 3000))
                batch.append({"event_type": "node_started", "execution_id": execution, "node": node,
                              "step_id": str(step), "ts": ts, "payload": {"step": step}})
                tool = rng.choice(["search", "lookup", "send_mail"])
                batch.append({"event_type": "tool_called", "execution_id": execution, "node": node, "ts": ts,
                              "payload": {"tool": tool, "args": make_payload(rng, rng.randint(300, 1500))}})
                batch.append({"event_type": "llm_completed", "execution_id": execution, "node": node, "ts": ts,
                              "payload": {"model": "m-1", "usage": {"prompt_tokens": rng.randint(100, 900),
                                                                     "completion_tokens": rng.randint(10, 200)}}})
                batch.append({"event_type": "node_completed", "execution_id": execution, "node": node,
                              "step_id": str(step), "ts": ts + took, "payload": {"ok": True}})
            n += 4 * len(NODES)
            if len(batch) >= 2000:
                j.append_batch(batch)
                batch = []
            if n % 100_000 < 4 * len(NODES):
                log(f"  {n:,} events, {time.perf_counter() - t0:.0f} s")
        if batch:
            j.append_batch(batch)
        j.seal()
    return time.perf_counter() - t0


def child(store: Path, name: str, scope: str) -> None:
    from wormjournal.analytics import connect

    con = connect(store)
    where = f"WHERE date = DATE '{DAY0.date()}'" if scope == "day" else ""
    sql = QUERIES[name].format(where=where, and_="AND" if where else "WHERE")
    t0 = time.perf_counter()
    rows = con.sql(sql).fetchall()
    seconds = time.perf_counter() - t0
    scanned = con.execute(f"SELECT count(*) FROM events {where}").fetchall()[0][0]
    peak_rss_mb = round(benchlib.status_kb("VmHWM") / 1024, 1)
    print(json.dumps({"query": name, "scope": scope, "seconds": round(seconds, 3), "rows": len(rows),
                      "events": scanned, "peak_rss_mb": peak_rss_mb}))


def table(res: dict[str, Any]) -> str:
    """The result (the shared schema) as a readable table."""
    r = res["results"]
    lines = [f"{'query':<22}{'scope':<6}{'events':>11}{'seconds':>9}{'events/s':>12}{'peak RSS MB':>13}"]
    for q in r["queries"]:
        lines.append(f"{q['query']:<22}{q['scope']:<6}{q['events']:>11,}{q['seconds']:>9.2f}"
                     f"{q['events_per_s'] or 0:>12,}{q['peak_rss_mb']:>13.1f}")
    for name, m in r["memory"].items():
        lines.append(f"{name}: peak RSS over all events / over one day = {m['peak_rss_ratio_all_to_day']:.2f}x "
                     f"for {m['events_ratio_all_to_day']:.1f}x the events")
    lines.append(f"wall time {res['wall_seconds']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--store", type=Path, default=None,
                        help="build (or reuse) the journal here; default: a temp dir")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the result to FILE")
    parser.add_argument("--child", nargs=3, metavar=("STORE", "QUERY", "SCOPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(Path(args.child[0]), args.child[1], args.child[2])
        return 0
    started = time.perf_counter()
    base = args.store or Path(tempfile.mkdtemp(prefix="wj-bench-query-"))
    store, keys = base / "journal", base / "keys"
    try:
        reused = (store / "journal.json").exists()
        build_seconds = None
        if not reused:
            log(f"building {args.events:,} events in {store}")
            build_seconds = round(build(store, keys, args.events, args.seed), 1)
            log(f"built in {build_seconds} s (not measured)")
        else:
            log(f"reusing the journal in {store}")
        queries = []
        for name in QUERIES:
            for scope in ("day", "all"):
                r = benchlib.run_child([str(Path(__file__).resolve()), "--child", str(store), name, scope],
                                       tag="bench_query", what=f"{name} over {scope}")
                r["events_per_s"] = round(r["events"] / r["seconds"]) if r["seconds"] else None
                r["process_wall_seconds"] = r.pop("wall_seconds")  # the child's, with its imports
                queries.append(r)
                log(f"{name} over {scope}: {r['seconds']} s, peak RSS {r['peak_rss_mb']} MB")
        memory = {}
        for name in QUERIES:
            day, every = (next(r for r in queries if r["query"] == name and r["scope"] == s) for s in ("day", "all"))
            memory[name] = {"peak_rss_ratio_all_to_day": round(every["peak_rss_mb"] / day["peak_rss_mb"], 3),
                            "events_ratio_all_to_day": round(every["events"] / max(1, day["events"]), 2)}
        params = {"events": args.events, "seed": args.seed, "store": args.store.name if args.store else None}
        res = benchlib.result("query", base, params, {
            "journal": {"events": next(q["events"] for q in queries if q["scope"] == "all"), "reused": reused,
                        "build_seconds": build_seconds},
            "queries": queries,
            "memory": memory,
        }, started=started)  # while the store is there: its file system
    finally:
        if args.store is None:
            subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
            shutil.rmtree(base, ignore_errors=True)
    print(table(res), file=sys.stderr, flush=True)
    benchlib.emit(res, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
