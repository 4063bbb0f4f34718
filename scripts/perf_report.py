#!/usr/bin/env python3
"""Write docs/performance.md from benchmark results (the shared JSON schema of scripts/benchlib.py).

Usage (from the repository root):

    .venv/bin/python scripts/bench_append.py --json /tmp/append.json
    .venv/bin/python scripts/bench_peers.py --json /tmp/peers.json
    .venv/bin/python scripts/perf_report.py /tmp/append.json /tmp/peers.json        # writes docs/performance.md
    .venv/bin/python scripts/perf_report.py /tmp/append.json --out -                 # to stdout

Every figure in the page comes from those files: nothing is typed in by hand. The results themselves are not
committed (benchmark output); the page names the command and date of each.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchlib import SCHEMA

OUT = Path(__file__).resolve().parents[1] / "docs" / "performance.md"

INTRO = """\
# Performance

This page is written by `scripts/perf_report.py` from the JSON results of the benchmark scripts (one schema,
`scripts/benchlib.py`); do not edit it by hand. Each section names the command that produced it, the date and
the machine. Figures from one run are compared only with figures of the same run: the machines are shared and
their disks and CPUs drift.
"""


def command(res: dict[str, Any]) -> str:
    """The command of a run, file arguments by their names only."""
    return " ".join(Path(a).name if "/" in a else a for a in res["command"])


def fmt(value: Any, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def machine_line(m: dict[str, Any]) -> str:
    fs = m.get("fs") or {}
    return (f"{m.get('cpu_count')} CPUs ({m.get('cpu_model')}), {m.get('memory_gb')} GB, {m.get('platform')}, "
            f"Python {m.get('python')}, pyarrow {m.get('pyarrow')}, file system {fs.get('type', '?')}; "
            f"load {m.get('loadavg_1_5_15')} at the end")


def targets_table(targets: dict[str, Any]) -> list[str]:
    if not targets:
        return []
    lines = ["| target | measured | met |", "| --- | --- | --- |"]
    for t in targets.values():
        value = t["value"]
        lines.append(f"| {t['target']} | {fmt(value, ',.3g') if isinstance(value, float) else fmt(value)} | "
                     f"{'yes' if t['met'] else '**no**'} |")
    return lines


def section_append(res: dict[str, Any]) -> list[str]:
    r = res["results"]
    out = ["## The write path: `scripts/bench_append.py`", "",
           f"`{command(res)}`, {res['date']}; {machine_line(res['machine'])}.", ""]
    rows = ["| measure | result |", "| --- | --- |"]
    if "single_append" in r:
        s, raw = r["single_append"], r["raw_fsync"]
        rows.append(f"| durable single append (1 KiB payload) against raw `write` + `fdatasync` of the same bytes, "
                    f"interleaved, {s['n']} each, {r.get('background_seals', 0)} seals in the background | "
                    f"p50 {r['ratio_p50']}x ({s['p50_us']} us against {raw['p50_us']} us), p99 {r['ratio_p99']}x "
                    f"({s['p99_us']} us against {raw['p99_us']} us) |")
        if "raw_fsync_preallocated" in r:
            pre = r["raw_fsync_preallocated"]
            rows.append(f"| the same against the floor: `write` + `fdatasync` into space allocated ahead, as the WAL "
                        f"writes | p50 {r['ratio_p50_to_preallocated']}x ({pre['p50_us']} us) |")
    if "sustained_append" in r:
        s = r["sustained_append"]
        rows.append(f"| sustained `append_batch` of {s['batch_size']}, automatic seals in the seal worker, "
                    f"{s['events']:,} events until all are sealed | {fmt(s['events_per_s'])} events/s "
                    f"({fmt(s['appends_only_events_per_s'])} in the append calls; the last seal "
                    f"{s['final_seal_seconds']} s), {s['segments']} segments |")
        rows.append(f"| peak memory of the seal worker over those {s['events']:,} events | "
                    f"{s['seal_worker_peak_rss_mb']} MB (writer: {s['writer_peak_rss_mb']} MB, with the generated "
                    f"events) |")
    if "batched_append" in r:
        b = r["batched_append"]
        rows.append(f"| `append_batch` of {b['batch_size']} without seals, {b['events']:,} events | "
                    f"{fmt(b['events_per_s'])} events/s, {b['payload_mb_per_s']} MB/s of payload |")
    if "encrypted_batched_append" in r:
        e = r["encrypted_batched_append"]
        ratio = e.get("ratio_to_plaintext_events_per_s")
        rows.append(f"| the same, every payload AES-256-GCM encrypted (500 subjects) | {fmt(e['events_per_s'])} "
                    f"events/s{f' ({ratio}x plaintext)' if ratio else ''} |")
    if "concurrent_append" in r:
        c = r["concurrent_append"]
        rows.append(f"| {c['threads']} threads of single appends | {fmt(c['events_per_s'])} events/s, "
                    f"{c['appends_per_fdatasync']} appends per fdatasync (group commit) |")
    if "seal" in r:
        s = r["seal"]
        rows.append(f"| `seal()` of {s['events']:,} events in the writer's process | {fmt(s['events_per_s'])} "
                    f"events/s; segments {s['segment_bytes_per_event']} bytes per event "
                    f"({s['compression_ratio']}x smaller than the payload JSON) |")
    if "verify" in r:
        v = r["verify"]
        rows.append(f"| `verify_store` over them, best of {len(v['runs_seconds'])} | {fmt(v['events_per_s'])} "
                    f"events/s ({r['ratio']}x one SHA-256 per event) |")
    out += rows + [""]
    if r.get("sustained_append", {}).get("progress"):
        out += ["The seal worker's peak memory as the journal grows (its seals take one WAL file of at most "
                "`seal_max_events` events at a time, and index runs of at most `MAX_RUN_ROWS` rows):", "",
                "| events appended | appended per second so far | sealed | seal worker peak MB |",
                "| --- | --- | --- | --- |"]
        out += [f"| {p['events']:,} | {fmt(p['appended_per_s'])} | {p['sealed']:,} | {p['seal_worker_peak_rss_mb']} |"
                for p in r["sustained_append"]["progress"]]
        out.append("")
    out += targets_table(res["targets"]) + [""]
    return out


PEER_COLUMNS = [
    ("single_p50_ms", "single append p50 ms", ".3f"),
    ("single_p99_ms", "single append p99 ms", ".3f"),
    ("batch_events_per_s", "batched appends/s", ",.0f"),
    ("bytes_per_event", "bytes per event", ",.0f"),
    ("lookup_p50_ms", "one-execution lookup p50 ms", ".2f"),
    ("analytics_s", "analytics query s", ".2f"),
    ("peak_rss_mb", "peak memory MB", ",.0f"),
]


def section_peers(res: dict[str, Any]) -> list[str]:
    r = res["results"]
    w = r["workload"]
    out = ["## Against the systems users would otherwise pick: `scripts/bench_peers.py`", "",
           f"`{command(res)}`, {res['date']}; {machine_line(res['machine'])}.", "",
           f"One workload of {w.get('events', 0):,} agent-like events ({w.get('executions', 0):,} executions, "
           f"{fmt(w.get('mean_payload_json_bytes'))} bytes of JSON payload on average, in clear in every system), "
           "each phase of each system in a process of its own. Batched appends count until every event is "
           "sealed (wormjournal) or checkpointed (SQLite). wormjournal's memory is its writer's and its seal "
           "worker's peaks added.", ""]
    names = list(r["table"])
    out.append("| system | " + " | ".join(h for _, h, _ in PEER_COLUMNS) + " |")
    out.append("| --- |" + " --- |" * len(PEER_COLUMNS))
    labels = {n: r["systems"][n]["label"] for n in names}
    for n in names:
        row = r["table"][n]
        out.append(f"| {labels[n]} | " + " | ".join(fmt(row.get(k), f) for k, _, f in PEER_COLUMNS) + " |")
    out += ["", "As ratios, " + r["ratio_meaning"] + ":", ""]
    out.append("| peer | " + " | ".join(h for _, h, _ in PEER_COLUMNS) + " |")
    out.append("| --- |" + " --- |" * len(PEER_COLUMNS))
    for n, ratio in r["ratios"].items():
        out.append(f"| {labels[n]} | " + " | ".join(
            f"{fmt(ratio.get(k), '.2f')}x" if ratio.get(k) is not None else "n/a" for k, _, _ in PEER_COLUMNS) + " |")
    out += [""] + targets_table(res["targets"]) + [""]
    return out


SECTIONS = {"append": section_append, "peers": section_peers}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path, help="JSON results of bench_append.py / bench_peers.py")
    ap.add_argument("--out", default=str(OUT), help="the page to write (default docs/performance.md; - for stdout)")
    args = ap.parse_args(argv)
    lines = [INTRO]
    for path in args.results:
        res = json.loads(path.read_text())
        if res.get("schema") != SCHEMA:
            ap.error(f"{path} is not a result of the schema {SCHEMA}")
        section = SECTIONS.get(res["benchmark"])
        if section is None:
            ap.error(f"{path}: no section for benchmark {res['benchmark']!r}")
        lines += section(res)
    text = "\n".join(lines).rstrip() + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
