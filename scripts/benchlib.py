"""What the benchmark scripts share: the 1 KiB tool-call workload, percentiles, a process's memory, the machine,
the child-process runner and the one JSON result schema that scripts/perf_report.py turns into
docs/performance.md.

Standard library only: bench_peers' parent imports it and must stay small (a child's ru_maxrss can start at its
parent's RSS).

The result schema (``wormjournal-bench/1``), one JSON object per benchmark run::

    {"schema": "wormjournal-bench/1", "benchmark": "append" | "peers" | ..., "command": [argv...],
     "date": "...Z", "wall_seconds": s, "machine": {...}, "params": {...}, "results": {...}, "targets": {...}}

``results`` is the benchmark's own; ``targets`` maps each target it checks to {"target": text, "value": number,
"met": bool}.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

SCHEMA = "wormjournal-bench/1"
PAYLOAD_BYTES = 1024


def log(tag: str, msg: str) -> None:
    print(f"[{tag}] {msg}", file=sys.stderr, flush=True)


# -- percentiles -------------------------------------------------------------------------------------------------


def pct(sorted_values: list[Any], q: float) -> Any:
    """Nearest-rank percentile of an ascending list."""
    k = max(1, math.ceil(round(q * len(sorted_values), 9)))
    return sorted_values[k - 1]


def summary(ns: list[int], unit: str = "us") -> dict[str, Any]:
    """n, p50, p99, mean, min and max of durations in nanoseconds, in ``unit`` (us or ms)."""
    if not ns:
        return {"n": 0}
    scale, digits = {"us": (1e3, 1), "ms": (1e6, 3)}[unit]
    v = sorted(x / scale for x in ns)
    return {"n": len(v), f"p50_{unit}": round(statistics.median(v), digits), f"p99_{unit}": round(pct(v, 0.99), digits),
            f"mean_{unit}": round(statistics.fmean(v), digits), f"min_{unit}": round(v[0], digits),
            f"max_{unit}": round(v[-1], digits)}


# -- memory ------------------------------------------------------------------------------------------------------


def status_kb(field: str, pid: int | str = "self") -> int:
    """A field of /proc/<pid>/status in kB (VmHWM: peak resident memory; VmRSS: now), 0 where unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith(field + ":")), 0)
    except OSError:
        return 0


# -- the machine -------------------------------------------------------------------------------------------------


def profile_text(prof: Any, *, tottime: int = 0, cumulative: int = 0) -> str:
    """A cProfile.Profile's top entries by own time, then by cumulative time (0: left out), as pstats prints them."""
    import io
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    if tottime:
        stats.sort_stats("tottime").print_stats(tottime)
    if cumulative:
        stats.sort_stats("cumulative").print_stats(cumulative)
    return out.getvalue()


def machine_info(directory: Path) -> dict[str, Any]:
    """CPU, memory, platform, Python, the versions that matter, the file system of ``directory``, the load."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": None, "memory_gb": None, "platform": platform.platform(), "python": platform.python_version(),
        "fs": None, "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
    for package in ("wormjournal", "pyarrow", "zstandard", "cryptography", "duckdb"):
        try:
            from importlib.metadata import version

            info[package] = version(package)
        except Exception:  # noqa: BLE001 - not installed
            info[package] = None
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                                     None)
        with open("/proc/meminfo") as f:
            total_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        info["memory_gb"] = round(total_kb / 2**20, 1)
        df = subprocess.run(["df", "-PT", str(directory)], capture_output=True, text=True, timeout=10, check=True)
        fields = df.stdout.splitlines()[-1].split()
        info["fs"] = {"device": fields[0], "type": fields[1], "mounted_on": fields[-1]}
    except (OSError, subprocess.SubprocessError, StopIteration, IndexError):
        pass
    return info


# -- child processes ---------------------------------------------------------------------------------------------


def run_child(argv: list[str], *, tag: str, what: str, env: dict[str, str] | None = None,
              timeout: float | None = None) -> dict[str, Any]:
    """Run ``python argv...`` (its memory its own) and return the JSON object of its last line of output, with
    ``wall_seconds``; its stderr (progress) passes through. Raises SystemExit when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], stdout=subprocess.PIPE, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))
    if proc.returncode:
        raise SystemExit(f"child {what} failed with exit code {proc.returncode}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    log(tag, f"{what} done in {out['wall_seconds']} s")
    return out


# -- the result --------------------------------------------------------------------------------------------------


def target(text: str, value: float | None, met: bool) -> dict[str, Any]:
    return {"target": text, "value": value, "met": bool(met)}


def result(benchmark: str, directory: Path, params: dict[str, Any], results: dict[str, Any],
           targets: dict[str, Any] | None = None, *, started: float | None = None) -> dict[str, Any]:
    """One run's result in the shared schema."""
    return {
        # file arguments by their names: a result names no machine's paths
        "schema": SCHEMA, "benchmark": benchmark,
        "command": [Path(a).name if "/" in a else a for a in [sys.argv[0], *sys.argv[1:]]],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "wall_seconds": round(time.perf_counter() - started, 1) if started is not None else None,
        "machine": machine_info(directory), "params": params, "results": results, "targets": targets or {},
    }


def emit(res: dict[str, Any], path: Path | None) -> None:
    """The result as one JSON object on stdout, and indented in ``path`` when given."""
    if path is not None:
        path.write_text(json.dumps(res, indent=2) + "\n")
    json.dump(res, sys.stdout, indent=2)
    sys.stdout.write("\n")


# -- the 1 KiB tool-call workload ------------------------------------------------------------------------------

_WORDS = (
    "the agent called tool search results order customer invoice refund policy status "
    "pending approved shipping address account balance summary document page section "
    "retrieved context answer question user request plan step next observation error "
    "retry timeout latency tokens model response json field value list item query filter "
    "date range region europe north america product sku warehouse inventory ticket priority"
).split()
_TOOLS = ["web_search", "sql_query", "crm_lookup", "send_email", "read_file", "http_get", "calculator"]
_NODES = ["planner", "agent", "tools", "reviewer", "executor"]


def canonical_len(value: Any) -> int:
    return len(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())


def make_payload(rng: random.Random, size: int = PAYLOAD_BYTES) -> dict[str, Any]:
    """A unique tool-call payload whose canonical JSON is exactly ``size`` bytes.

    Text-like (random words from a small vocabulary, random ids), so zstd gets a
    realistic ~2x per event and no two events share a payload (which would flatter
    Parquet's compression across rows).
    """
    payload: dict[str, Any] = {
        "tool": rng.choice(_TOOLS),
        "call_id": f"call_{rng.getrandbits(96):024x}",
        "model": "gpt-4o-2024-08-06",
        "attempt": rng.randint(1, 3),
        "arguments": {
            "query": " ".join(rng.choices(_WORDS, k=rng.randint(4, 12))),
            "max_results": rng.choice([5, 10, 20]),
            "filters": {"region": rng.choice(["eu", "us", "apac"]), "since": f"2024-06-{rng.randint(1, 28):02d}"},
        },
        "usage": {"prompt_tokens": rng.randint(200, 4000), "completion_tokens": rng.randint(10, 400)},
        "context": "",
    }
    need = size - canonical_len(payload)  # ASCII words and spaces: one byte per character, no escapes
    text = " ".join(rng.choices(_WORDS, k=need // 4 + 8))
    payload["context"] = text[:need]
    return payload


class EventFactory:
    """Agent events: tool_called with execution/thread/node/tenant ids and a unique 1 KiB payload."""

    def __init__(self, seed: int, executions: int = 2000) -> None:
        rng = random.Random(seed)
        self.execs = [(f"exec-{uuid.UUID(int=rng.getrandbits(128))}", f"thread-{uuid.UUID(int=rng.getrandbits(128))}")
                      for _ in range(executions)]
        self.rng = rng
        for _ in range(20):
            assert canonical_len(make_payload(rng)) == PAYLOAD_BYTES

    def event(self, i: int) -> dict[str, Any]:
        execution_id, thread_id = self.execs[i % len(self.execs)]
        return {
            "event_type": "tool_called",
            "execution_id": execution_id,
            "thread_id": thread_id,
            "node": _NODES[i % len(_NODES)],
            "tenant_id": f"tenant-{i % 7:04d}",
            "payload": make_payload(self.rng),
        }


class SubjectEventFactory(EventFactory):
    """The same events, each about one of ``subjects`` data subjects: encrypted with the subject's key."""

    def __init__(self, seed: int, subjects: int = 500) -> None:
        super().__init__(seed)
        self.subjects = subjects

    def event(self, i: int) -> dict[str, Any]:
        return dict(super().event(i), subject_id=f"customer-{i % self.subjects}@example.com")
