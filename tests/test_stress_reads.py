"""Reads and verification beside a writer that appends and seals: an intact journal never looks broken.

Four reader processes (replay, get_event, count_events, verify) loop against a writer process that
appends and seals every few dozen events, for WORMJOURNAL_STRESS_SECONDS (12 by default) on a local
directory and on S3 (moto's server over HTTP). Every read must succeed (no false IntegrityError),
every verify run must have no finding, and afterwards every acknowledged event is readable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from s3_fixtures import S3Bucket

from wormjournal import Journal, JournalConfig, Reader, verify_store
from wormjournal.journal.keys import load_wal_key
from wormjournal.storage import open_store

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "stress_child.py"
SECONDS = float(os.environ.get("WORMJOURNAL_STRESS_SECONDS", "12"))
READERS = ("replay", "get_event", "count", "verify")


def _run(store_url: str, keys: Path, wal_dir: Path, endpoint: str | None) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    common = ["--store", store_url, "--keys", str(keys), "--wal-dir", str(wal_dir)]
    if endpoint is not None:
        common += ["--endpoint-url", endpoint]
    until = time.time() + SECONDS + 5  # the writer's open and first events, then SECONDS of reads
    writer = subprocess.Popen([sys.executable, str(CHILD), "writer", *common, "--until", str(until)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    procs: list[subprocess.Popen[str]] = []
    try:
        assert writer.stdout is not None
        line = writer.stdout.readline()
        assert line.startswith("READY"), (line, writer.stderr.read() if writer.stderr else "")
        procs = [subprocess.Popen([sys.executable, str(CHILD), role, *common, "--until", str(until)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
                 for role in READERS]
        results: list[dict[str, Any]] = []
        for proc in [writer, *procs]:
            out, err = proc.communicate(timeout=SECONDS + 240)
            assert proc.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in [writer, *procs]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    written, reads = results[0], results[1:]
    summary = ", ".join(f"{r['role']} {r['ops']} ops" for r in reads)
    print(f"writer: {written['acked']} events, {written['seals']} seals; {summary}")
    for r in reads:
        assert not r["errors"], f"{r['role']}: {len(r['errors'])} failed reads, the first: {r['errors'][0]}"
        assert not r["findings"], f"verify beside a sealing writer: {r['findings']}"
        assert r["ops"] > 0
    assert written["seals"] >= 5, written  # the reads did run across seals
    # Afterwards, every acknowledged event is readable, and the journal verifies.
    store = open_store(store_url, endpoint_url=endpoint)
    reader = Reader(store, wal_dir=wal_dir, wal_key=load_wal_key(keys, store_journal_id(store)))
    acked = written["acked"]
    assert reader.count_events() == acked
    seqs = sorted(e.seq for k in range(8) for e in reader.events(f"exec-{k}"))
    assert seqs == list(range(acked))
    report = verify_store(store)
    assert report.ok, report.findings


def store_journal_id(store: Any) -> str:
    return Reader(store).identity.journal_id


def test_reads_beside_a_sealing_writer_local(tmp_path: Path) -> None:
    store, keys = tmp_path / "store", tmp_path / "keys"
    Journal.create(store, key_dir=keys, config=JournalConfig(seal_max_age_seconds=None)).close()
    _run(str(store), keys, store / ".wal", None)


def test_reads_beside_a_sealing_writer_s3(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    keys, wal = tmp_path / "keys", tmp_path / "wal"
    Journal.create(s3_bucket.store("j"), key_dir=keys, wal_dir=wal,
                   config=JournalConfig(seal_max_age_seconds=None)).close()
    _run(s3_bucket.url("j"), keys, wal, s3_bucket.endpoint_url)

