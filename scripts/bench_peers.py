#!/usr/bin/env python3
"""Benchmark wormjournal against peers, in one run, on one disk, on the same events.

The systems (each phase of each system in a child process of its own, so its memory is its own):

  wormjournal       ``Journal.append`` / ``append_batch`` (fsync'd WAL), sealed into Parquet segments
                    with the default rules (a seal every 100,000 events), payloads in plaintext
                    (``JournalConfig(key_scope=None)``), events read back with ``Reader.events``
                    (verified: signed manifests, Merkle row groups, the execution's chain), the
                    analytics query in DuckDB over the segment files (``read_parquet`` of
                    segments/**/*.parquet, hive partitions; that path does not verify).
  sqlite_chain      SQLite 3 (WAL mode, synchronous=FULL), one append-only table ``events`` with
                    ``prev_hash`` and ``hash = sha256(prev_hash || canonical JSON of the row)``
                    (seq, event_id, ts, event_type, tenant_id, execution_id, thread_id, node,
                    step_id, correlation_id, payload), computed in Python; an index on execution_id.
                    A lookup is ``SELECT ... WHERE execution_id = ? ORDER BY seq`` and recomputes
                    each returned row's hash (not the links to the rows in between, which are
                    other executions'). Analytics: SQL (json_extract, ROW_NUMBER for the p95).
  langgraph_sqlite  LangGraph's ``SqliteSaver`` (sqlite3 connection with synchronous=FULL; the
                    saver sets WAL mode): one thread per execution, one checkpoint per event, the
                    event as the checkpoint's only channel value ("event", versions from
                    ``get_next_version``), metadata {"source": "loop", "step": n, "parents": {}}.
                    No ``put_writes`` (a real graph step adds those), no versions_seen: the
                    smallest checkpoint that holds the event, so bytes flatter the saver. A lookup
                    is ``list({"configurable": {"thread_id": execution_id}})`` (it also queries the
                    pending writes of every checkpoint). The saver has no query path: the
                    analytics deserialize every checkpoint in Python (``serde.loads_typed``).
                    It has no batch API either: the batched figure uses a subclass whose
                    ``cursor()`` leaves the commit to the end of each batch (one transaction, one
                    fsync per batch), the best a caller could do; a graph commits every ``put``.
                    No hash chain, no tamper evidence.
  jsonl             JSON Lines: ``os.write`` of the line(s) + ``os.fdatasync`` (as wormjournal's
                    WAL; for an append-only file it also flushes the size). A lookup scans the
                    whole file in 8 MiB chunks for the execution id (no index) and parses the
                    matching lines. Analytics: DuckDB ``read_json`` of the file.

The workload: a generator process writes the events once (scripts/bench_lookup.py's
``Workload``: --executions agent executions, --active running at a time, interleaved;
execution_started, then node_started / llm_completed (token usage) / tool_called /
tool_returned / state_updated / node_completed (duration_ms) cycles over 5 nodes,
execution_completed; text-like payloads of ~100 B to 12 KB, ~660 B mean; event ids and
increasing timestamps added here, seeded). Every system reads the same file and appends the
same events (reading and parsing the file is not timed).

Measured, per system:

  single append   --single durable appends one by one into a fresh store of each system (after
                  --warmup more): p50 / p99 ms; each returns after its fsync. These run in one
                  child process of their own, the systems taking turns event by event (the order
                  rotating): fsync latency on a virtual disk drifts several-fold within seconds,
                  and turns give every system the same disk at the same moments. (The jsonl row is
                  then the floor: one write + fdatasync of the event's line.)
  batched append  the whole workload (--events) in batches of --batch, one fsync each: events/s
                  over the time in the append calls plus the final seal (wormjournal) or WAL
                  checkpoint (the SQLite ones)
  bytes/event     on disk after that, divided by --events: wormjournal's store without its
                  write-ahead log (.wal, emptied by the seal) and .locks (segments, manifests,
                  checkpoints, index objects, journal.json, keys/); the SQLite database file +
                  its -wal (0 after the checkpoint; -shm not counted); the .jsonl file
  lookup          all events of --lookups random executions (the same ones for every system),
                  fresh reader, page cache as the build left it (--evict drops the files first):
                  p50 / p99 ms, and the first one alone; the returned counts are checked
  analytics       count by event_type over all events, and the p95 (nearest rank) of
                  node_completed's payload duration_ms per node: seconds for both; the answers
                  are checked against the generator's
  memory          three child processes per system: the batched build, the lookups, the analytics
                  (each opens the store afresh). Each reports its peak RSS (VmHWM; ru_maxrss too)
                  and its RSS after the imports (the interpreter and the modules, part of every
                  peak); the table's "peak RSS" is the largest of the three. The orchestrating
                  process imports the standard library only (a child's ru_maxrss can start at its
                  parent's RSS); duckdb is imported only by the analytics children.

Prints a table (stdout) with the ratios peer / wormjournal (what the README quotes), then
the whole result as one JSON line; --json FILE writes it indented; a PNG chart of the ratios
goes to --chart FILE (default: beside --json, else in --dir, else in the system temp dir).
Progress goes to stderr. Everything is built in a temp dir (removed afterwards) unless
--dir DIR is given (then kept there). Needs duckdb, langgraph-checkpoint-sqlite, matplotlib.

Usage (from the repository root):

    .venv/bin/python scripts/bench_peers.py                       # 1,000,000 events, ~6 min on 2 cores
    .venv/bin/python scripts/bench_peers.py --events 20000        # quick
    .venv/bin/python scripts/bench_peers.py --json peers.json     # and peers.png beside it
    .venv/bin/python scripts/bench_peers.py --systems wormjournal jsonl --events 100000 --dir /mnt/nvme/peers
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import benchlib

# The parent imports the standard library only (plus matplotlib at the end): a child's
# ru_maxrss can start at its parent's RSS, and each child imports what its system needs.
sys.dont_write_bytecode = True  # no scripts/__pycache__ from importing bench_lookup

SYSTEMS = ("wormjournal", "sqlite_chain", "langgraph_sqlite", "jsonl")
LABELS = {
    "wormjournal": "wormjournal",
    "sqlite_chain": "SQLite hash-chained table",
    "langgraph_sqlite": "LangGraph SqliteSaver",
    "jsonl": "JSON Lines + fsync",
}
START = dt.datetime(2025, 6, 2, 8, 0, tzinfo=dt.UTC)
GENESIS = b"\x00" * 32
SCAN_CHUNK = 8 << 20
TERMINAL = ("execution_completed", "execution_failed", "execution_cancelled")


def log(msg: str) -> None:
    benchlib.log("bench_peers", msg)


pct = benchlib.pct  # nearest rank: the same rule as the SQL below
status_kb = benchlib.status_kb


def ms_summary(ns: list[int]) -> dict[str, Any]:
    return benchlib.summary(ns, "ms")


def memory_report(after_imports_kb: int) -> dict[str, Any]:
    """This process's peak RSS (VmHWM; not ru_maxrss alone: after a vfork+exec that can be the parent's)."""
    return {
        "peak_rss_mb": round(status_kb("VmHWM") / 1024, 1),
        "after_imports_rss_mb": round(after_imports_kb / 1024, 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def dir_files(path: Path, skip: tuple[str, ...] = ()) -> Iterator[Path]:
    for root, dirs, names in os.walk(path):
        if Path(root) == path:
            dirs[:] = [d for d in dirs if d not in skip]
        for name in names:
            yield Path(root, name)


def evict(path: Path) -> int:
    """Drop a directory's files from the page cache (clean pages only, hence the sync first)."""
    os.sync()
    count = 0
    for p in dir_files(path):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            count += 1
        finally:
            os.close(fd)
    return count


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        for line in f:
            yield json.loads(line)


def read_batches(path: Path, size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for ev in read_events(path):
        batch.append(ev)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


P95_SQL = """
WITH d AS (
  SELECT node, {duration} AS dur FROM {source} WHERE event_type = 'node_completed'
), r AS (
  SELECT node, dur, ROW_NUMBER() OVER (PARTITION BY node ORDER BY dur) AS rn, COUNT(*) OVER (PARTITION BY node) AS n
  FROM d
)
SELECT node, dur FROM r WHERE rn = (95 * n + 99) {intdiv} 100 ORDER BY node
"""  # (95 n + 99) div 100 = ceil(0.95 n), the nearest rank, in integers
COUNT_SQL = "SELECT event_type, COUNT(*) FROM {source} GROUP BY event_type ORDER BY event_type"


# -- the workload (generator child) ---------------------------------------------------------------


def child_generate(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_lookup import Workload  # the agent-like workload of the lookup benchmark

    def write(path: Path, wl: Workload, rng: random.Random, start: dt.datetime) -> dict[str, Any]:
        t_us = int(start.timestamp() * 1e6)
        counts: Counter[str] = Counter()
        durations: dict[str, list[int]] = {}
        payload_bytes = line_bytes = 0
        with open(path, "w", encoding="utf-8") as f:
            for batch in wl.batches(10_000):
                lines = []
                for ev in batch:
                    t_us += rng.randint(1_000, 200_000)  # 1..200 ms apart (~28 h for 1M events)
                    ts = (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=t_us))
                    out = {"event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                           "ts": ts.isoformat(timespec="microseconds").replace("+00:00", "Z")}
                    out.update((k, v) for k, v in ev.items() if k != "payload")
                    out["payload"] = ev["payload"]
                    counts[out["event_type"]] += 1
                    if out["event_type"] == "node_completed":
                        durations.setdefault(out["node"], []).append(out["payload"]["duration_ms"])
                    payload_bytes += len(dumps(ev["payload"]).encode())
                    lines.append(dumps(out))
                text = "\n".join(lines) + "\n"
                line_bytes += len(text.encode())
                f.write(text)
        n = sum(counts.values())
        return {
            "events": n,
            "counts": dict(sorted(counts.items())),
            "p95_duration_ms_by_node": {k: pct(sorted(v), 0.95) for k, v in sorted(durations.items())},
            "mean_payload_json_bytes": round(payload_bytes / n, 1),
            "mean_line_bytes": round(line_bytes / n, 1),
        }

    t0 = time.perf_counter()
    log(f"generating {args.events:,} events over {args.executions:,} executions ({args.active} running at a time)")
    wl = Workload(args.seed, args.events, args.executions, args.active)
    main = write(work / "workload.jsonl", wl, random.Random(args.seed + 7), START)
    lookups = random.Random(args.seed + 1).sample(wl.executions, min(args.lookups, len(wl.executions)))
    n_single = args.single + args.warmup
    single_execs = max(1, n_single // 50)
    swl = Workload(args.seed + 100, n_single, single_execs, min(args.active, single_execs))
    write(work / "single.jsonl", swl, random.Random(args.seed + 107), START + dt.timedelta(days=30))
    meta = {
        "events": main["events"],
        "executions": len(wl.executions),
        "active": args.active,
        "mean_events_per_execution": round(main["events"] / len(wl.executions), 1),
        "mean_payload_json_bytes": main["mean_payload_json_bytes"],
        "mean_line_bytes": main["mean_line_bytes"],
        "truth": {"counts": main["counts"], "p95_duration_ms_by_node": main["p95_duration_ms_by_node"]},
        "lookups": [[x[0], x[1]] for x in lookups],
        "single_events": n_single,
        "generate_seconds": round(time.perf_counter() - t0, 1),
    }
    (work / "meta.json").write_text(json.dumps(meta))
    log(f"generated in {meta['generate_seconds']} s: mean payload {meta['mean_payload_json_bytes']} B, "
        f"mean JSON line {meta['mean_line_bytes']} B")
    return {k: v for k, v in meta.items() if k != "lookups"}


# -- the systems -------------------------------------------------------------------------------------


class System:
    """One system under test: a store in ``root/<name>``."""

    name = ""

    def __init__(self, root: Path) -> None:
        self.root = root

    def attach(self, name: str) -> None: ...  # the paths of store ``name`` (made by create)
    def create(self, name: str) -> None: ...
    def append_one(self, ev: dict[str, Any]) -> None: ...
    def append_batch(self, evs: list[dict[str, Any]]) -> None: ...
    def finish(self) -> None: ...  # timed with the batched appends (seal, WAL checkpoint)
    def close(self) -> None: ...
    def disk(self) -> dict[str, Any]: ...
    def open_reader(self) -> None: ...
    def lookup(self, execution_id: str) -> list[Any]: ...
    def close_reader(self) -> None: ...
    def analytics(self) -> tuple[dict[str, int], dict[str, int], dict[str, Any]]: ...
    def extra(self) -> dict[str, Any]:
        return {}

    def helper_peak_rss_mb(self) -> float:
        """The peak memory of a process the system ran beside the build's (wormjournal's seal worker), in MB."""
        return 0.0


class Wormjournal(System):
    name = "wormjournal"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        from importlib.metadata import version

        import wormjournal
        from wormjournal import Journal, JournalConfig, Reader

        self.Journal, self.Reader = Journal, Reader
        # Plaintext payloads, like the peers; sealing by the default size rules; no timer seals.
        self.config = JournalConfig(key_scope=None, seal_max_age_seconds=None)
        self.versions = {"wormjournal": wormjournal.__version__, "duckdb": version("duckdb"),
                         "pyarrow": version("pyarrow")}
        self.seal_seconds = 0.0
        self.seals = 0

    def attach(self, name: str) -> None:
        self.store = self.root / name / "store"

    def create(self, name: str) -> None:
        self.attach(name)
        self.store.mkdir(parents=True)
        self.j = self.Journal.create(self.store, key_dir=self.root / name / "keys", config=self.config)
        self.seal_seconds, self.seals = 0.0, 0

    def append_one(self, ev: dict[str, Any]) -> None:
        e = dict(ev)
        self.j.append(e.pop("event_type"), e.pop("execution_id"), e.pop("payload"), **e)

    def append_batch(self, evs: list[dict[str, Any]]) -> None:
        self.j.append_batch(evs)

    def finish(self) -> None:
        # the automatic seals ran in the seal worker, beside the appends; the last events are sealed here
        t0 = time.perf_counter()
        self.j.wait_for_seals()
        self.j.seal()
        self.seal_seconds = time.perf_counter() - t0
        self.seals = len(list((self.store / "manifests").rglob("*")))

    def close(self) -> None:
        worker = self.j._worker  # noqa: SLF001 - its memory is the seals'
        self.worker_peak_kb = worker.peak_rss_kb if worker is not None else 0
        self.j.close()

    def helper_peak_rss_mb(self) -> float:
        return round(getattr(self, "worker_peak_kb", 0) / 1024, 1)

    def disk(self) -> dict[str, Any]:
        by: Counter[str] = Counter()
        for p in dir_files(self.store, skip=(".wal", ".locks")):
            rel = p.relative_to(self.store).as_posix()
            by[rel.split("/", 1)[0]] += p.stat().st_size
        wal = sum(p.stat().st_size for p in dir_files(self.store / ".wal")) if (self.store / ".wal").exists() else 0
        return {"bytes": sum(by.values()), "by_part": dict(sorted(by.items())), "excluded": {".wal": wal},
                "segments": sum(1 for _ in (self.store / "segments").rglob("*.parquet"))}

    def open_reader(self) -> None:
        self.r = self.Reader(self.store)

    def lookup(self, execution_id: str) -> list[Any]:
        return self.r.events(execution_id)

    def close_reader(self) -> None:
        del self.r

    def analytics(self) -> tuple[dict[str, int], dict[str, int], dict[str, Any]]:
        import duckdb  # here: the build and lookup processes do without it

        con = duckdb.connect()
        source = f"read_parquet('{self.store}/segments/**/*.parquet', hive_partitioning = true)"
        counts = dict(con.execute(COUNT_SQL.format(source=source)).fetchall())
        duration = "CAST(decode(payload) ->> '$.duration_ms' AS BIGINT)"
        p95 = dict(con.execute(P95_SQL.format(source=source, intdiv="//", duration=duration)).fetchall())
        threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
        con.close()
        return counts, p95, {"how": "DuckDB read_parquet over segments/**/*.parquet (no verification)",
                             "duckdb_threads": threads}

    def extra(self) -> dict[str, Any]:
        return {"key_scope": "none (plaintext payloads)", "config": {"seal_max_events": self.config.seal_max_events,
                "row_group_rows": self.config.row_group_rows, "zstd_level": self.config.zstd_level}}


def chain_rows(evs: list[dict[str, Any]], seq: int, prev: bytes) -> tuple[list[tuple[Any, ...]], int, bytes]:
    """Rows of the hash-chained SQLite table: hash = sha256(prev_hash || canonical JSON of the row)."""
    sha = hashlib.sha256
    rows = []
    for ev in evs:
        row = (seq, ev["event_id"], parse_ts_us(ev["ts"]), ev["event_type"], ev.get("tenant_id"), ev["execution_id"],
               ev.get("thread_id"), ev.get("node"), ev.get("step_id"), ev.get("correlation_id"),
               json.dumps(ev.get("payload"), sort_keys=True, separators=(",", ":"), ensure_ascii=False))
        h = sha(prev + dumps(row).encode()).digest()
        rows.append((*row, prev, h))
        prev = h
        seq += 1
    return rows, seq, prev


def parse_ts_us(ts: str) -> int:
    d = dt.datetime.fromisoformat(ts.replace("Z", "+00:00")) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def sqlite_disk(path: Path) -> dict[str, Any]:
    db = path.stat().st_size
    wal = Path(f"{path}-wal").stat().st_size if Path(f"{path}-wal").exists() else 0
    shm = Path(f"{path}-shm").stat().st_size if Path(f"{path}-shm").exists() else 0
    return {"bytes": db + wal, "by_part": {"db": db, "db-wal": wal}, "excluded": {"db-shm": shm}}


class SqliteChain(System):
    name = "sqlite_chain"
    COLUMNS = ("seq, event_id, ts, event_type, tenant_id, execution_id, thread_id, node, step_id, correlation_id, "
               "payload, prev_hash, hash")

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.versions = {"sqlite": sqlite3.sqlite_version}
        self.insert = f"INSERT INTO events ({self.COLUMNS}) VALUES ({', '.join('?' * 13)})"

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None)  # explicit BEGIN / COMMIT below
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        con.execute("PRAGMA synchronous=FULL")
        assert mode == "wal" and con.execute("PRAGMA synchronous").fetchone()[0] == 2
        return con

    def attach(self, name: str) -> None:
        self.path = self.root / name / "events.db"

    def create(self, name: str) -> None:
        self.attach(name)
        self.path.parent.mkdir(parents=True)
        self.con = self._connect()
        self.con.executescript("""
            CREATE TABLE events (
                seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, ts INTEGER NOT NULL, event_type TEXT NOT NULL,
                tenant_id TEXT, execution_id TEXT NOT NULL, thread_id TEXT, node TEXT, step_id TEXT,
                correlation_id TEXT, payload TEXT NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL
            );
            CREATE INDEX events_execution ON events (execution_id);
            CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'append-only'); END;
            CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'append-only'); END;
        """)
        self.seq, self.prev = 0, GENESIS

    def append_one(self, ev: dict[str, Any]) -> None:
        rows, seq, prev = chain_rows([ev], self.seq, self.prev)
        self.con.execute("BEGIN IMMEDIATE")
        self.con.execute(self.insert, rows[0])
        self.con.execute("COMMIT")
        self.seq, self.prev = seq, prev

    def append_batch(self, evs: list[dict[str, Any]]) -> None:
        rows, seq, prev = chain_rows(evs, self.seq, self.prev)
        self.con.execute("BEGIN IMMEDIATE")
        self.con.executemany(self.insert, rows)
        self.con.execute("COMMIT")
        self.seq, self.prev = seq, prev

    def finish(self) -> None:
        self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.con.close()

    def disk(self) -> dict[str, Any]:
        return sqlite_disk(self.path)

    def open_reader(self) -> None:
        self.con = self._connect()

    def lookup(self, execution_id: str) -> list[Any]:
        sha = hashlib.sha256
        out = []
        for r in self.con.execute(f"SELECT {self.COLUMNS} FROM events WHERE execution_id = ? ORDER BY seq",
                                  (execution_id,)):
            if sha(r[11] + dumps(r[:11]).encode()).digest() != r[12]:
                raise SystemExit(f"sqlite_chain: row {r[0]} does not match its hash")
            out.append({"seq": r[0], "event_id": r[1], "ts": r[2], "event_type": r[3], "tenant_id": r[4],
                        "execution_id": r[5], "thread_id": r[6], "node": r[7], "step_id": r[8],
                        "correlation_id": r[9], "payload": json.loads(r[10])})
        return out

    def close_reader(self) -> None:
        self.con.close()

    def analytics(self) -> tuple[dict[str, int], dict[str, int], dict[str, Any]]:
        con = self._connect()
        counts = dict(con.execute(COUNT_SQL.format(source="events")).fetchall())
        p95 = dict(con.execute(P95_SQL.format(source="events", intdiv="/",
                                              duration="json_extract(payload, '$.duration_ms')")).fetchall())
        con.close()
        return counts, p95, {"how": "SQL in SQLite (json_extract, ROW_NUMBER window), full table scan"}

    def extra(self) -> dict[str, Any]:
        return {"lookup_check": "each returned row's hash recomputed; links to other executions' rows not checked",
                "append_only": "UPDATE/DELETE triggers raise"}


class LangGraphSqlite(System):
    name = "langgraph_sqlite"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        from importlib.metadata import version

        from langgraph.checkpoint.base import LATEST_VERSION
        from langgraph.checkpoint.base.id import uuid6
        from langgraph.checkpoint.sqlite import SqliteSaver

        class BatchingSaver(SqliteSaver):
            """SqliteSaver whose commits can be deferred to the end of a batch (it has no batch API)."""

            defer = False

            @contextmanager
            def cursor(self, transaction: bool = True) -> Iterator[sqlite3.Cursor]:
                with super().cursor(transaction=transaction and not self.defer) as cur:
                    yield cur

        self.Saver, self.uuid6, self.latest = BatchingSaver, uuid6, LATEST_VERSION
        self.versions = {"sqlite": sqlite3.sqlite_version, "langgraph-checkpoint": version("langgraph-checkpoint"),
                         "langgraph-checkpoint-sqlite": version("langgraph-checkpoint-sqlite")}

    def _connect(self) -> Any:
        con = sqlite3.connect(self.path, check_same_thread=False)
        con.execute("PRAGMA synchronous=FULL")
        saver = self.Saver(con)
        saver.setup()  # PRAGMA journal_mode=WAL, the tables
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA synchronous").fetchone()[0] == 2
        return saver

    def attach(self, name: str) -> None:
        self.path = self.root / name / "checkpoints.db"

    def create(self, name: str) -> None:
        self.attach(name)
        self.path.parent.mkdir(parents=True)
        self.saver = self._connect()
        self.heads: dict[str, tuple[str, int, str]] = {}  # execution -> (checkpoint id, step, channel version)

    def _put(self, ev: dict[str, Any]) -> None:
        xid = ev["execution_id"]
        head = self.heads.get(xid)
        configurable: dict[str, Any] = {"thread_id": xid, "checkpoint_ns": ""}
        if head is None:
            step, version = 0, self.saver.get_next_version(None, None)
        else:
            configurable["checkpoint_id"] = head[0]
            step, version = head[1] + 1, self.saver.get_next_version(head[2], None)
        checkpoint = {
            "v": self.latest, "id": str(self.uuid6(clock_seq=step)), "ts": ev["ts"],
            "channel_values": {"event": ev}, "channel_versions": {"event": version},
            "versions_seen": {}, "updated_channels": ["event"],
        }
        self.saver.put({"configurable": configurable}, checkpoint, {"source": "loop", "step": step, "parents": {}},
                       {"event": version})
        if ev["event_type"] in TERMINAL:
            self.heads.pop(xid, None)
        else:
            self.heads[xid] = (checkpoint["id"], step, version)

    def append_one(self, ev: dict[str, Any]) -> None:
        self._put(ev)  # the saver commits: one transaction, one fsync

    def append_batch(self, evs: list[dict[str, Any]]) -> None:
        self.saver.defer = True
        try:
            for ev in evs:
                self._put(ev)
        finally:
            self.saver.defer = False
        self.saver.conn.commit()

    def finish(self) -> None:
        self.saver.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.saver.conn.close()

    def disk(self) -> dict[str, Any]:
        return sqlite_disk(self.path)

    def open_reader(self) -> None:
        self.saver = self._connect()

    def lookup(self, execution_id: str) -> list[Any]:
        tuples = list(self.saver.list({"configurable": {"thread_id": execution_id}}))
        return [t.checkpoint["channel_values"]["event"] for t in reversed(tuples)]  # oldest first

    def close_reader(self) -> None:
        self.saver.conn.close()

    def analytics(self) -> tuple[dict[str, int], dict[str, int], dict[str, Any]]:
        saver = self._connect()
        loads = saver.serde.loads_typed
        counts: Counter[str] = Counter()
        durations: dict[str, list[int]] = {}
        limit = self.analytics_limit
        sql = "SELECT type, checkpoint FROM checkpoints" + (f" ORDER BY rowid LIMIT {limit}" if limit else "")
        cur = saver.conn.execute(sql)
        n = 0
        while rows := cur.fetchmany(10_000):
            for type_, blob in rows:
                ev = loads((type_, blob))["channel_values"]["event"]
                counts[ev["event_type"]] += 1
                if ev["event_type"] == "node_completed":
                    durations.setdefault(ev["node"], []).append(ev["payload"]["duration_ms"])
                n += 1
        saver.conn.close()
        p95 = {k: pct(sorted(v), 0.95) for k, v in durations.items()}
        return dict(counts), p95, {"how": "Python: every checkpoint deserialized (serde.loads_typed), counted; "
                                          "the saver has no query path", "checkpoints_read": n}

    def extra(self) -> dict[str, Any]:
        return {"mapping": "one thread per execution, one checkpoint per event, channel_values={'event': event}, "
                           "no put_writes", "batched": "commit deferred to the end of each batch (subclass of "
                           "SqliteSaver: it has no batch API); single appends commit every put, as a graph does",
                "tamper_evidence": "none"}


class Jsonl(System):
    name = "jsonl"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        from importlib.metadata import version

        self.versions = {"duckdb": version("duckdb")}

    def attach(self, name: str) -> None:
        self.path = self.root / name / "events.jsonl"

    def create(self, name: str) -> None:
        self.attach(name)
        self.path.parent.mkdir(parents=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)  # the new file's directory entry, once
        finally:
            os.close(dfd)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        os.fdatasync(self.fd)

    def append_one(self, ev: dict[str, Any]) -> None:
        self._write((dumps(ev) + "\n").encode())

    def append_batch(self, evs: list[dict[str, Any]]) -> None:
        self._write(("\n".join(map(dumps, evs)) + "\n").encode())

    def close(self) -> None:
        os.close(self.fd)

    def disk(self) -> dict[str, Any]:
        size = self.path.stat().st_size
        return {"bytes": size, "by_part": {"events.jsonl": size}, "excluded": {}}

    def open_reader(self) -> None:
        self.rf = open(self.path, "rb", buffering=0)

    def lookup(self, execution_id: str) -> list[Any]:
        needle = b'"execution_id":' + dumps(execution_id).encode() + b","
        f = self.rf
        f.seek(0)
        out = []
        tail = b""
        while chunk := f.read(SCAN_CHUNK):
            buf = tail + chunk
            end = buf.rfind(b"\n") + 1  # whole lines only; the rest waits for the next chunk
            tail = buf[end:]
            i = buf.find(needle, 0, end)
            while i >= 0:
                start = buf.rfind(b"\n", 0, i) + 1
                stop = buf.index(b"\n", i)
                out.append(json.loads(buf[start:stop]))
                i = buf.find(needle, stop, end)
        return out

    def close_reader(self) -> None:
        self.rf.close()

    def analytics(self) -> tuple[dict[str, int], dict[str, int], dict[str, Any]]:
        import duckdb  # here: the build and lookup processes do without it

        con = duckdb.connect()
        source = (f"read_json('{self.path}', format = 'newline_delimited', "
                  "columns = {event_type: 'VARCHAR', node: 'VARCHAR', payload: 'STRUCT(duration_ms BIGINT)'})")
        counts = dict(con.execute(COUNT_SQL.format(source=source)).fetchall())
        p95 = dict(con.execute(P95_SQL.format(source=source, intdiv="//", duration="payload.duration_ms")).fetchall())
        threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
        con.close()
        return counts, p95, {"how": "DuckDB read_json over the file (3 columns declared, the rest skipped)",
                             "duckdb_threads": threads}

    def extra(self) -> dict[str, Any]:
        return {"sync": "os.fdatasync per append / per batch", "lookup": "full scan of the file per lookup (no index)",
                "tamper_evidence": "none"}


IMPLS: dict[str, type[System]] = {"wormjournal": Wormjournal, "sqlite_chain": SqliteChain,
                                  "langgraph_sqlite": LangGraphSqlite, "jsonl": Jsonl}


# -- one system, in a child process ---------------------------------------------------------------------


def child_build(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The whole workload in batches into a fresh store; its size on disk."""
    impl = IMPLS[name](work / name)
    after_imports = status_kb("VmRSS")
    meta = json.loads((work / "meta.json").read_text())
    os.sync()  # the previous child's dirty pages are not this one's to write back
    log(f"{name}: {meta['events']:,} events in batches of {args.batch}")
    impl.create("main")
    appended = 0
    append_secs = 0.0
    wall0 = time.perf_counter()
    step = max(meta["events"] // 10, 1)
    next_report = step
    for batch in read_batches(work / "workload.jsonl", args.batch):
        t0 = time.perf_counter()
        impl.append_batch(batch)
        append_secs += time.perf_counter() - t0
        appended += len(batch)
        if appended >= next_report:
            log(f"  {name}: {appended:,} events, {appended / append_secs:,.0f} events/s, "
                f"{time.perf_counter() - wall0:.0f} s")
            next_report += step
    t0 = time.perf_counter()
    impl.finish()
    finish_secs = time.perf_counter() - t0
    impl.close()
    assert appended == meta["events"], (appended, meta["events"])
    total = append_secs + finish_secs
    res: dict[str, Any] = {
        "events": appended,
        "batch_size": args.batch,
        "seconds": round(total, 3),
        "events_per_s": round(appended / total),
        "append_call_seconds": round(append_secs, 3),
        "final_seal_or_checkpoint_seconds": round(finish_secs, 3),
        "wall_seconds_incl_reading_the_workload": round(time.perf_counter() - wall0, 1),
    }
    if isinstance(impl, Wormjournal):
        res["seals"] = impl.seals  # segments; the automatic seals ran in the seal worker, beside the appends
        res["events_per_s_of_the_append_calls"] = round(appended / append_secs)
    disk = impl.disk()
    disk["bytes_per_event"] = round(disk["bytes"] / appended, 1)
    disk["ratio_to_payload_json"] = round(disk["bytes"] / (appended * meta["mean_payload_json_bytes"]), 3)
    memory = memory_report(after_imports)
    worker_mb = impl.helper_peak_rss_mb()
    if worker_mb:  # its seal worker ran beside it: both at their peak at once, at most
        memory["seal_worker_peak_rss_mb"] = worker_mb
        memory["peak_rss_mb"] = round(memory["peak_rss_mb"] + worker_mb, 1)
    return {"batched_append": res, "disk": disk, "versions": impl.versions, "notes": impl.extra(),
            "memory": memory, "cpu_seconds": round(time.process_time(), 1)}


def child_lookup(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """All events of each sampled execution, with a fresh reader."""
    impl = IMPLS[name](work / name)
    after_imports = status_kb("VmRSS")
    impl.attach("main")
    sample = json.loads((work / "meta.json").read_text())["lookups"]
    if args.evict:
        log(f"{name}: evicted {evict(work / name)} files from the page cache")
    log(f"{name}: {len(sample)} lookups")
    clock = time.perf_counter_ns
    t0 = clock()
    impl.open_reader()
    open_ms = (clock() - t0) / 1e6
    lat: list[int] = []
    mismatches = []
    for xid, expected in sample:
        t0 = clock()
        got = impl.lookup(xid)
        lat.append(clock() - t0)
        if len(got) != expected:
            mismatches.append({"execution_id": xid, "expected": expected, "got": len(got)})
    impl.close_reader()
    return {"lookup": {**ms_summary(lat), "first_ms": round(lat[0] / 1e6, 4), "open_ms": round(open_ms, 3),
                       "count_mismatches": len(mismatches), "mismatch_examples": mismatches[:3],
                       "page_cache": "evicted" if args.evict else "as left by the build",
                       "events_per_lookup_mean": round(sum(x[1] for x in sample) / len(sample), 1)},
            "memory": memory_report(after_imports), "cpu_seconds": round(time.process_time(), 1)}


def child_analytics(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Count by event type, p95 of duration_ms per node; the answers checked against the generator's."""
    impl = IMPLS[name](work / name)
    after_imports = status_kb("VmRSS")
    impl.attach("main")
    meta = json.loads((work / "meta.json").read_text())
    if isinstance(impl, LangGraphSqlite):
        impl.analytics_limit = args.langgraph_analytics_limit
    if args.evict:
        log(f"{name}: evicted {evict(work / name)} files from the page cache")
    log(f"{name}: analytics")
    t0 = time.perf_counter()
    counts, p95, how = impl.analytics()
    secs = time.perf_counter() - t0
    truth = meta["truth"]
    events = meta["events"]
    read = how.pop("checkpoints_read", events)
    partial = read < events
    return {"analytics": {
        "seconds": round(secs * events / read, 3),
        "measured_seconds": round(secs, 3),
        "events_read": read,
        "extrapolated": partial,
        "counts_ok": None if partial else counts == truth["counts"],
        "p95_ok": None if partial else {k: int(v) for k, v in p95.items()} == truth["p95_duration_ms_by_node"],
        "counts": dict(sorted(counts.items())),
        "p95_duration_ms_by_node": dict(sorted(p95.items())),
        **how,
    }, "memory": memory_report(after_imports), "cpu_seconds": round(time.process_time(), 1)}


def child_single(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Durable single appends of every system, interleaved event by event (one process).

    The fsync latency of a (virtual) disk drifts by several times within seconds; taking
    turns gives every system the same disk at the same moments. The order of the turns
    rotates with each event.
    """
    names = list(args.systems)
    impls = {n: IMPLS[n](work / "single" / n) for n in names}
    events = list(read_events(work / "single.jsonl"))
    log(f"single appends: {len(events)} events, each appended to {', '.join(names)} in turn "
        f"({args.warmup} rounds of warm-up, not counted)")
    os.sync()
    for impl in impls.values():
        impl.create("store")
    lat: dict[str, list[int]] = {n: [] for n in names}
    clock = time.perf_counter_ns
    t_start = time.perf_counter()
    for i, ev in enumerate(events):
        k = i % len(names)
        for n in names[k:] + names[:k]:
            t0 = clock()
            impls[n].append_one(ev)
            spent = clock() - t0
            if i >= args.warmup:
                lat[n].append(spent)
    for impl in impls.values():
        impl.close()
    log(f"single appends done in {time.perf_counter() - t_start:.1f} s")
    return {n: ms_summary(v) for n, v in lat.items()}


# -- the parent: run the children, report ----------------------------------------------------------------

COLUMNS = (  # key, header, format, higher is better
    ("single_p50_ms", "single p50 ms", "{:.3f}", False),
    ("single_p99_ms", "single p99 ms", "{:.3f}", False),
    ("batch_events_per_s", "batch ev/s", "{:,.0f}", True),
    ("bytes_per_event", "bytes/event", "{:,.0f}", False),
    ("lookup_p50_ms", "lookup p50 ms", "{:.2f}", False),
    ("analytics_s", "analytics s", "{:.2f}", False),
    ("peak_rss_mb", "peak RSS MB", "{:,.0f}", False),
)


def row_of(r: dict[str, Any], single: dict[str, Any]) -> dict[str, Any]:
    return {
        "single_p50_ms": single["p50_ms"],
        "single_p99_ms": single["p99_ms"],
        "batch_events_per_s": r["batched_append"]["events_per_s"],
        "bytes_per_event": r["disk"]["bytes_per_event"],
        "lookup_p50_ms": r["lookup"]["p50_ms"],
        "analytics_s": r["analytics"]["seconds"],
        "peak_rss_mb": r["memory"]["peak_rss_mb"],
    }


def run_child(args: argparse.Namespace, work: Path, what: str) -> dict[str, Any]:
    argv = [str(Path(__file__).resolve()), "--child", what, "--workdir", str(work),
            "--events", str(args.events), "--executions", str(args.executions), "--active", str(args.active),
            "--batch", str(args.batch), "--single", str(args.single), "--warmup", str(args.warmup),
            "--lookups", str(args.lookups), "--seed", str(args.seed), "--systems", *args.systems,
            "--langgraph-analytics-limit", str(args.langgraph_analytics_limit)] + (["--evict"] if args.evict else [])
    return benchlib.run_child(argv, tag="bench_peers", what=what)


def ratios(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    base = rows.get("wormjournal")
    if base is None:
        return {}
    out = {}
    for name, row in rows.items():
        if name == "wormjournal":
            continue
        out[name] = {k: (round(row[k] / base[k], 3) if base[k] else None) for k, *_ in COLUMNS}
    return out


def print_report(result: dict[str, Any]) -> None:
    rows, w = result["table"], result["workload"]
    m = result["machine"]
    print(f"bench_peers: {w['events']:,} events over {w['executions']:,} executions "
          f"(~{w['mean_events_per_execution']} events each), mean payload {w['mean_payload_json_bytes']:.0f} B JSON "
          f"({w['mean_line_bytes']:.0f} B as a JSON line), batches of {result['params']['batch']}, "
          f"{result['params']['single']} single appends, {result['params']['lookups']} lookups")
    print(f"machine: {m['cpu_count']} cpus ({m['cpu_model']}), {m['memory_gb']} GB, {m['platform']}, "
          f"fs {m['fs']['type'] if m['fs'] else '?'} ({m['fs']['device'] if m['fs'] else '?'}), python {m['python']}")
    print()
    wl = max(len(LABELS[n]) for n in rows) + 2
    widths = [max(len(h), 12) for _, h, *_ in COLUMNS]
    print(f"{'system':<{wl}}" + "".join(f"{h:>{wd + 2}}" for (_, h, *_), wd in zip(COLUMNS, widths, strict=True)))
    for name, row in rows.items():
        print(f"{LABELS[name]:<{wl}}" + "".join(f"{fmt.format(row[k]):>{wd + 2}}"
                                                for (k, _, fmt, _), wd in zip(COLUMNS, widths, strict=True)))
    if result["ratios"]:
        print()
        print("ratios peer / wormjournal (above 1: the peer is slower, larger or uses more memory, except for "
              "batch ev/s, where above 1 means the peer is faster)")
        print(f"{'system':<{wl}}" + "".join(f"{h:>{wd + 2}}" for (_, h, *_), wd in zip(COLUMNS, widths, strict=True)))
        for name, rr in result["ratios"].items():
            print(f"{LABELS[name]:<{wl}}" + "".join(
                f"{('n/a' if rr[k] is None else f'{rr[k]:.2f}x'):>{wd + 2}}"
                for (k, *_), wd in zip(COLUMNS, widths, strict=True)))
    print()
    print("peak RSS (VmHWM) of each child process, MB: peak / after the imports (the interpreter and the modules)")
    phases = ("build", "lookup", "analytics")
    print(f"{'system':<{wl}}" + "".join(f"{p:>20}" for p in phases))
    for name, r in result["systems"].items():
        mm = r["memory"]
        print(f"{LABELS[name]:<{wl}}" + "".join(
            f"{mm[p]['peak_rss_mb']:>12,.0f} / {mm[p]['after_imports_rss_mb']:>4,.0f}" for p in phases))
    print()
    print("details")
    for name, r in result["systems"].items():
        b, a, lk, d = r["batched_append"], r["analytics"], r["lookup"], r["disk"]
        extra = ""
        if "seals" in b:
            extra = (f", {b['seals']} segments sealed in the seal worker beside the appends "
                     f"({b['events_per_s_of_the_append_calls']:,} ev/s in the append calls)")
        print(f"  {LABELS[name]}:")
        print(f"    batched: {b['events']:,} events in {b['seconds']:.1f} s{extra}; "
              f"final seal/checkpoint {b['final_seal_or_checkpoint_seconds']:.2f} s")
        print(f"    disk: {d['bytes']:,} B ({d['bytes_per_event']:,} B/event, "
              f"{d['ratio_to_payload_json']}x the payload JSON) "
              f"{d['by_part']}, not counted {d['excluded']}")
        print(f"    lookup: p50 {lk['p50_ms']:.2f} ms, p99 {lk['p99_ms']:.2f} ms, first {lk['first_ms']:.2f} ms, "
              f"{lk['count_mismatches']} count mismatches; single append p50 {r['single_append']['p50_ms']:.3f} / "
              f"p99 {r['single_append']['p99_ms']:.3f} ms")
        ext = (f" (measured {a['measured_seconds']} s on {a['events_read']:,} events, extrapolated)"
               if a["extrapolated"] else "")
        print(f"    analytics: {a['seconds']:.2f} s{ext}; answers match the generator's: counts {a['counts_ok']}, "
              f"p95 {a['p95_ok']}; {a['how']}")
        for k, v in r["notes"].items():
            print(f"    {k}: {v}")
        print(f"    wall s {r['wall_seconds']}, CPU s {r['cpu_seconds']}, versions {r['versions']}")
    print()
    print(f"wall time {result['wall_seconds']} s; "
          f"load average at start {result['load_start']}, at end {result['load_end']}")


def write_chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    peers = list(result["ratios"])
    if not peers:
        return
    fig, axes = plt.subplots(2, 4, figsize=(15, 7.5))
    colors = {"sqlite_chain": "#4C72B0", "langgraph_sqlite": "#DD8452", "jsonl": "#55A868"}
    for ax, (key, header, _, higher) in zip(axes.flat, COLUMNS, strict=False):  # 8 axes, 7 columns
        vals = [result["ratios"][p][key] or 0 for p in peers]
        bars = ax.bar(range(len(peers)), vals, color=[colors.get(p, "grey") for p in peers])
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_yscale("log")
        ax.set_xticks(range(len(peers)), [LABELS[p].replace(" ", "\n", 1) for p in peers], fontsize=8)
        ax.set_title(f"{header}\n({'higher' if higher else 'lower'} is better for the peer)", fontsize=9)
        for b, v in zip(bars, vals, strict=True):
            ax.annotate(f"{v:.2g}x", (b.get_x() + b.get_width() / 2, v), ha="center",
                        va="bottom" if v >= 1 else "top", fontsize=8)
        lo, hi = min(vals + [1.0]), max(vals + [1.0])
        ax.set_ylim(lo / 2.5, hi * 2.5)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax = axes.flat[-1]
    ax.axis("off")
    w = result["workload"]
    ax.text(0, 0.95, f"peer / wormjournal\n(wormjournal = 1, the line)\n\n{w['events']:,} events,\n"
            f"{w['executions']:,} executions,\nmean payload {w['mean_payload_json_bytes']:.0f} B\n\n"
            f"{result['machine']['cpu_count']} cpus, "
            f"{result['machine']['fs']['type'] if result['machine']['fs'] else ''}\n"
            f"{result['date']}", va="top", fontsize=9)
    fig.suptitle("wormjournal vs peers: ratio peer / wormjournal (log scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="events of the workload (default 1000000)")
    ap.add_argument("--executions", type=int, default=None, help="executions they belong to (default events/100)")
    ap.add_argument("--active", type=int, default=150, help="executions running at a time (default 150)")
    ap.add_argument("--batch", type=int, default=1000, help="events per batched append (default 1000)")
    ap.add_argument("--single", type=int, default=2000, help="durable single appends measured (default 2000)")
    ap.add_argument("--warmup", type=int, default=50, help="single appends before those, not counted (default 50)")
    ap.add_argument("--lookups", type=int, default=100, help="random executions looked up (default 100)")
    ap.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS),
                    help="the systems to run (default all)")
    ap.add_argument("--langgraph-analytics-limit", type=int, default=0, metavar="N",
                    help="deserialize only the first N checkpoints for the analytics and extrapolate (default 0: all)")
    ap.add_argument("--evict", action="store_true",
                    help="drop each system's files from the page cache before lookups and analytics")
    ap.add_argument("--seed", type=int, default=1, help="seed of the workload and the lookup sample (default 1)")
    ap.add_argument("--dir", type=Path, default=None,
                    help="work here and keep everything (default: a temp dir, removed)")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the result as indented JSON")
    ap.add_argument("--chart", type=Path, default=None, metavar="FILE",
                    help="the PNG chart (default: FILE.png beside --json, else in --dir, else in the temp dir)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.executions is None:
        args.executions = max(1, args.events // 100)
    for name in ("events", "executions", "active", "batch", "single", "lookups"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1")
    if args.events < 2 * args.executions:
        ap.error("--events must be at least 2 x --executions")

    if args.child is not None:
        if args.child == "generate":
            out = child_generate(args, args.workdir)
        elif args.child == "single":
            out = child_single(args, args.workdir)
        else:
            name, phase = args.child.split(":")
            child = {"build": child_build, "lookup": child_lookup, "analytics": child_analytics}[phase]
            out = child(name, args, args.workdir)
        print(json.dumps(out), flush=True)
        return 0

    started = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    if args.dir is None:
        work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    else:
        work = args.dir.absolute()
        if work.exists() and any(work.iterdir()):
            ap.error(f"--dir {work} is not empty")
        work.mkdir(parents=True, exist_ok=True)
    log(f"working in {work}")
    try:
        workload = run_child(args, work, "generate")
        single = run_child(args, work, "single")
        if args.dir is None:
            shutil.rmtree(work / "single", ignore_errors=True)
        systems = {}
        for name in SYSTEMS:
            if name in args.systems:
                r: dict[str, Any] = {"system": name, "label": LABELS[name], "memory": {}, "cpu_seconds": {},
                                     "wall_seconds": {}}
                for phase in ("build", "lookup", "analytics"):
                    out = run_child(args, work, f"{name}:{phase}")
                    for k in ("memory", "cpu_seconds", "wall_seconds"):
                        r[k][phase] = out.pop(k)
                    r.update(out)
                r["memory"]["peak_rss_mb"] = max(m["peak_rss_mb"] for m in r["memory"].values())
                systems[name] = r
                if args.dir is None:
                    shutil.rmtree(work / name, ignore_errors=True)  # free the disk as we go
        for n, r in systems.items():
            r["single_append"] = {**single[n], "measured": "interleaved with the other systems, one process"}
        rows = {n: row_of(r, single[n]) for n, r in systems.items()}
        params = {k: getattr(args, k) for k in ("events", "executions", "active", "batch", "single", "warmup",
                                                 "lookups", "seed", "evict", "langgraph_analytics_limit")}
        params["systems"] = list(systems)
        result = benchlib.result("peers", work, params, {
            "workload": workload,
            "table": rows,
            "ratios": ratios(rows),
            "ratio_meaning": "peer / wormjournal for every column (batch ev/s: above 1 = the peer is faster; "
                             "every other column: above 1 = the peer is slower, larger or uses more memory)",
            "checks": {n: {"lookup_counts_ok": r["lookup"]["count_mismatches"] == 0,
                           "analytics_counts_ok": r["analytics"]["counts_ok"],
                           "analytics_p95_ok": r["analytics"]["p95_ok"]} for n, r in systems.items()},
            "systems": systems,
            "load_start": load_start,
            "load_end": [round(x, 2) for x in os.getloadavg()],
        })
        sqlite = result["results"]["ratios"].get("sqlite_chain")
        if sqlite is not None and sqlite.get("batch_events_per_s"):
            times = round(1 / sqlite["batch_events_per_s"], 2)
            result["targets"]["batched_ge_2x_sqlite_chain"] = benchlib.target(
                "sustained batched appends with automatic seals >= 2x the hash-chained SQLite table", times,
                times >= 2)
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        result["machine"]["loadavg_1_5_15_at_start"] = load_start
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json is not None:  # first: the report below must not lose the figures
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print_report({**result["results"], "machine": result["machine"], "params": result["params"],
                  "wall_seconds": result["wall_seconds"]})
    chart = args.chart
    if chart is None:
        if args.json is not None:
            chart = args.json.with_suffix(".png")
        elif args.dir is not None:
            chart = work / "bench_peers.png"
        else:
            chart = Path(tempfile.gettempdir()) / f"bench_peers-{time.strftime('%Y%m%d-%H%M%S')}.png"
    try:
        import matplotlib  # noqa: F401  (the bench extra)
    except ImportError:
        log("no chart: matplotlib is not installed (pip install -e '.[bench]')")
    else:
        if result["results"]["ratios"]:
            write_chart(result["results"], chart)
            result["chart"] = str(chart)
            print(f"chart: {chart}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {args.json}")
    print(json.dumps(result, separators=(",", ":")), flush=True)
    checks = result["results"]["checks"]
    bad = [n for n, c in checks.items()
           if c["lookup_counts_ok"] is False or c["analytics_counts_ok"] is False or c["analytics_p95_ok"] is False]
    if bad:
        log(f"answers differ from the generator's for: {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
