#!/usr/bin/env python3
"""Write docs/performance.md from benchmark results (the shared JSON schema of scripts/benchlib.py).

Usage (from the repository root):

    .venv/bin/python scripts/bench_append.py --json /tmp/append.json
    .venv/bin/python scripts/bench_peers.py --json /tmp/peers.json
    .venv/bin/python scripts/bench_verify.py --json /tmp/verify.json
    .venv/bin/python scripts/bench_query.py --json /tmp/query.json
    .venv/bin/python scripts/bench_lookup.py --json /tmp/lookup.json
    .venv/bin/python scripts/bench_audit.py --json /tmp/audit.json
    .venv/bin/python scripts/perf_report.py /tmp/append.json /tmp/peers.json        # writes docs/performance.md
    .venv/bin/python scripts/perf_report.py /tmp/append.json --out -                 # to stdout

A section per benchmark (SECTIONS), in the order of the files given. bench_audit's section reads the same
schema, with bench_audit's own result (its "audits", "fill", ...) as "results".

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


def targets_block(targets: dict[str, Any]) -> list[str]:
    """The targets table and a blank line after it; nothing when the run checks no target."""
    table = targets_table(targets)
    return table + [""] if table else []


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


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


def section_verify(res: dict[str, Any]) -> list[str]:
    r, p = res["results"], res["params"]
    j, s, raw = r["journal"], r["summary"], r["raw_sha256"]
    out = ["## Verification alone: `scripts/bench_verify.py`", "",
           f"`{command(res)}`, {res['date']}; {machine_line(res['machine'])}; "
           f"{res['machine'].get('openssl', 'OpenSSL ?')}.", "",
           f"A sealed local journal of {j['events']:,} events in {j['segments']} segments of "
           f"{j['segment_events']:,} ({j['segment_bytes'] / 1e6:,.1f} MB of segments, "
           f"{fmt(j.get('mean_payload_json_bytes'))} bytes of JSON payload on average), and a store holding its first "
           f"{s['segments_small']} segments. `verify_store(store, workers=W)`, each configuration in a process of its "
           f"own, best of {p['runs']} runs; memory sampled every 20 ms from the verifying process tree "
           "(the verifier, the fork server, the workers). Raw SHA-256: one `hashlib.sha256` call per event over "
           "exactly the bytes its event hash covers, in one process.", "",
           "| configuration | events/s | first run events/s | events/s per worker | events per CPU second | "
           "seconds | verifier peak RSS MB | process tree peak RSS MB | process tree peak PSS MB |",
           "| --- |" + " --- |" * 8]
    for v in r["verify"]:
        out.append(f"| {v['segments']} segments, {v['workers']} worker{'s' if v['workers'] > 1 else ''} | "
                   f"{fmt(v['events_per_s'])} | {fmt(v['first_run_events_per_s'])} | "
                   f"{fmt(v['events_per_s_per_worker'])} | {fmt(v['events_per_cpu_s'])} | {fmt(v['seconds'], '.3f')} | "
                   f"{fmt(v['peak_rss_mb_verifier_process'])} | {fmt(v['peak_rss_mb_process_tree'])} | "
                   f"{fmt(v['peak_pss_mb_process_tree'])} |")
    out.append(f"| raw SHA-256, one call per event ({fmt(raw['mean_bytes_hashed'])} bytes on average) | "
               f"{fmt(raw['events_per_s'])} | | | | {fmt(raw['seconds'], '.3f')} | | | |")
    out += ["", "| measure | result |", "| --- | --- |",
            f"| verify events/s against raw SHA-256 events/s | {s['ratio_1_worker_to_raw_sha256']}x with 1 worker, "
            f"{s['ratio_2_workers_to_raw_sha256']}x with 2 |",
            f"| scaling, events/s with 2 workers / with 1 | {s['scaling_2_over_1']}x |",
            f"| memory, {s['segments_small']} against {s['segments_large']} segments | verifier peak RSS "
            f"{fmt(s['rss_verifier_small_mb'])} MB against {fmt(s['rss_verifier_large_mb'])} MB; process tree peak "
            f"PSS with 2 workers {fmt(s['pss_tree_2w_small_mb'])} MB against {fmt(s['pss_tree_2w_large_mb'])} MB |",
            ""]
    return out + targets_block(res["targets"])


def section_query(res: dict[str, Any]) -> list[str]:
    r = res["results"]
    out = ["## SQL over the segments: `scripts/bench_query.py`", "",
           f"`{command(res)}`, {res['date']}; {machine_line(res['machine'])}.", "",
           f"A sealed local journal of {r['journal']['events']:,} agent-like events. Each query through "
           "`wormjournal.analytics.connect` (the view `events`, as `wormjournal query` has it) in a fresh process, "
           "over one day (`WHERE date = ...`, pruned by partition) and over every event; its peak memory is the "
           "process's.", "",
           "| query | scope | events | seconds | events/s | peak RSS MB |", "| --- | --- | --- | --- | --- | --- |"]
    for q in r["queries"]:
        out.append(f"| `{q['query']}` | {q['scope']} | {q['events']:,} | {fmt(q['seconds'], '.3f')} | "
                   f"{fmt(q['events_per_s'])} | {fmt(q['peak_rss_mb'], '.1f')} |")
    out += ["", "Bounded memory: the peak over every event against the peak over one day.", "",
            "| query | peak RSS, all / one day | events, all / one day |", "| --- | --- | --- |"]
    for name, m in r["memory"].items():
        out.append(f"| `{name}` | {fmt(m['peak_rss_ratio_all_to_day'], '.2f')}x | "
                   f"{fmt(m['events_ratio_all_to_day'], '.1f')}x |")
    return out + [""] + targets_block(res["targets"])


def _lookup_column(m: dict[str, Any] | None) -> list[str]:
    """The figures of one pass of bench_lookup (a fresh Reader), in the order of LOOKUP_ROWS."""
    if not m:
        return ["not measured"] * len(LOOKUP_ROWS)
    ev, ge, xs = m["events"], m["get_event"], m["executions"]
    lat, by, cold = ev["latency"], ev["bytes_per_lookup"], ev["cold_first"]
    wu = ev.get("warmup") or {}
    segs = {int(k): v for k, v in ev.get("segments_per_lookup", {}).items()}
    return [
        f"{fmt(m['reader_open']['ms'], '.2f')} ms, {m['reader_open']['bytes']:,} bytes",
        f"{fmt(cold.get('ms'), '.2f')} ms, {fmt(cold.get('bytes'))} bytes "
        f"({fmt(cold.get('pct_of_store'), '.3f')}% of the store), {cold.get('requests')} reads",
        (f"{fmt(wu.get('p50_ms'), '.2f')} / {fmt(wu.get('p99_ms'), '.2f')} / {fmt(wu.get('max_ms'), '.2f')} ms "
         f"(n={wu['n']}, {wu.get('opening_segments')} opening segments)") if wu.get("n") else "none",
        f"{fmt(lat.get('p50_ms'), '.2f')} / {fmt(lat.get('p99_ms'), '.2f')} ms (n={lat['n']})",
        f"{sum(k * v for k, v in segs.items()) / max(1, sum(segs.values())):.1f} (from {min(segs, default=0)} "
        f"to {max(segs, default=0)})",
        f"{fmt(by.get('p50'))} bytes ({fmt(by.get('p50_pct_of_store'), '.3f')}% of the store) / "
        f"{fmt(by.get('max'))} bytes ({fmt(by.get('max_pct_of_store'), '.3f')}%)",
        f"{ev['requests_per_lookup'].get('p50')} / {ev['requests_per_lookup'].get('max')}",
        f"{ev['events_per_lookup_mean']}; {ev['count_mismatches']} counts differing from the appended",
        f"{fmt(ge['latency'].get('p50_ms'), '.2f')} / {fmt(ge['latency'].get('p99_ms'), '.2f')} ms "
        f"(n={ge['latency']['n']}), {ge['not_found_or_wrong']} wrong",
        f"{fmt(xs['latency'].get('p50_ms'), '.2f')} / {fmt(xs['latency'].get('max_ms'), '.2f')} ms (n={xs['calls']})",
    ]


LOOKUP_ROWS = [
    "`Reader()` open",
    "first lookup (cold: it reads the footers)",
    "next lookups, warming the `Reader` up, p50 / p99 / max",
    "`events(execution_id)` p50 / p99",
    "segments per lookup (mean)",
    "bytes read per lookup p50 / max",
    "reads per lookup p50 / max",
    "events per lookup (mean)",
    "`get_event(event_id)` p50 / p99",
    "`executions(tenant_id=..., limit=20)` p50 / max",
]


def section_lookup(res: dict[str, Any]) -> list[str]:
    r, p = res["results"], res["params"]
    b, st = r["build"], r["store"]
    warmup = (r["warm"]["events"].get("warmup") or {}).get("n", 0)
    out = [f"## Lookups by execution, {p['events']:,} events, about {p['active']:,} running at a time: "
           "`scripts/bench_lookup.py`", "",
           f"`{command(res)}`, {res['date']}; {machine_line(res['machine'])}.", "",
           f"A sealed local journal of {p['events']:,} agent-like events over {p['executions']:,} executions "
           f"(about {p['active']} running at a time), `row_group_rows` {p['row_group_rows']:,}, "
           f"{fmt(b.get('mean_payload_json_bytes'))} bytes of JSON payload on average: {st['total_bytes']:,} bytes "
           f"in the store ({st['total_bytes'] / p['events']:,.0f} per event), {plural(st['segments'], 'segment')}, "
           f"{plural(st['index_objects'], 'index object')}. Random executions looked up with a fresh `Reader`: "
           f"the first (cold) reported alone, the next {warmup} (the `Reader` opening the segments they "
           f"touch, as one in service has) apart, then {p['lookups']} measured; then other executions with another "
           "fresh `Reader` after the store's files were dropped from the page cache (unless `--no-evict`).", "",
           "| measure | page cache as the build left it | store evicted from the page cache |",
           "| --- | --- | --- |"]
    for label, warm, evicted in zip(LOOKUP_ROWS, _lookup_column(r["warm"]), _lookup_column(r.get("evicted")),
                                    strict=True):
        out.append(f"| {label} | {warm} | {evicted} |")
    return out + [""] + targets_block(res["targets"])


def section_audit(res: dict[str, Any]) -> list[str]:
    r = res["results"]
    out = ["## The lock audit on S3: `scripts/bench_audit.py`", "",
           f"`{command(res)}`, {res['date']}; {machine_line(res['machine'])}.", "",
           f"A journal in a moto S3 server on 127.0.0.1 with Object Lock ({r.get('retention')}"
           f"{f'; {tp}' if (tp := r.get('tenant_policy')) else ''}), filled by {r.get('streams')} writer process(es) "
           f"with seals of {r.get('events_per_seal')} events"
           f"{f', {lat:g} ms added to each read request' if (lat := r.get('latency_ms')) else ''}; "
           "`audit_store` in a fresh process at each size. The moto server's peak memory: "
           f"{fmt(r.get('server_peak_rss_mb'), '.1f')} MB.", "",
           "| size | workers | objects | seconds | objects/s | peak RSS MB | added by the audit MB | CPU s | "
           "server CPU s | HEADs in flight at most | findings |",
           "| --- |" + " --- |" * 10]
    for a in r["audits"]:
        out.append(f"| {a.get('size', a.get('label'))} | {a['workers']} | {a['objects']:,} | "
                   f"{fmt(a['seconds'], '.2f')} | {fmt(a['objects_per_s'])} | {fmt(a['peak_rss_mb'], '.1f')} | "
                   f"{fmt(a['audit_added_mb'], '.1f')} | {fmt(a['cpu_seconds'], '.1f')} | "
                   f"{fmt(a['server_cpu_seconds'], '.1f')} | {a['max_heads_in_flight']} | {a['findings']} |")
    rows = []
    if r.get("concurrency_ratio") is not None:
        rows.append(f"| concurrency: objects/s with {r.get('workers')} workers / with 1 | {r['concurrency_ratio']}x |")
    if r.get("memory"):
        m = r["memory"]
        rows.append(f"| memory: peak RSS at the largest size / at a quarter of it | {m['peak_rss_ratio']}x "
                    f"(VmHWM {m['vm_hwm_ratio']}x): {'flat' if m['flat'] else '**grew**'} |")
    if rows:
        out += ["", "| measure | result |", "| --- | --- |"] + rows
    return out + [""] + targets_block(res["targets"])


SECTIONS = {"append": section_append, "peers": section_peers, "verify": section_verify, "query": section_query,
            "lookup": section_lookup, "audit": section_audit}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path, help="JSON results of the bench_*.py scripts (see SECTIONS)")
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
