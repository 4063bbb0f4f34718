"""Shared fixtures: a store with its key directory, a sealed history, and a Parquet rewriter."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from s3_fixtures import moto_server, s3_bucket, s3_bucket_unlocked  # noqa: F401 - S3 fixtures
from test_cli import cli_paths, wj  # noqa: F401 - the CLI fixtures (the in-process runner), for every module

from wormjournal.journal import Journal, JournalConfig
from wormjournal.segments.manifest import Manifest
from wormjournal.segments.notes import SigningKey, VerifyKey
from wormjournal.storage import layout
from wormjournal.storage.local import LocalStore
from wormjournal.verify import VerifyReport, verifier, verify_store

# A fixed day, so that a run across midnight UTC never splits a segment in two.
BASE_TS = dt.datetime(2025, 3, 14, 9, 0, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _short_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process, verify waits 0.3 s (not 3) for a half-written seal to finish before reporting it: the
    tamper tests leave such states on purpose. Child processes (tests/test_stress_reads.py) keep the default."""
    monkeypatch.setattr(verifier, "SETTLE_SECONDS", 0.3)
    monkeypatch.setattr(verifier, "SETTLE_LIMIT_SECONDS", 3.0)


@dataclasses.dataclass(frozen=True)
class StorePaths:
    """A fresh store directory and a key directory outside it (neither created)."""

    store: Path
    keys: Path


@pytest.fixture
def tmp_store(tmp_path: Path) -> StorePaths:
    return StorePaths(store=tmp_path / "store", keys=tmp_path / "keys")


def make_writable(path: Path) -> None:
    """Stored objects are read-only; tamper tests chmod u+w first."""
    path.chmod(path.stat().st_mode | stat.S_IWUSR)


def overwrite(path: Path, data: bytes) -> None:
    """Replace a stored file's bytes in place (an attacker with write access)."""
    make_writable(path)
    path.write_bytes(data)


@dataclasses.dataclass
class History:
    """A closed journal with several sealed segments, and where its pieces are."""

    paths: StorePaths
    stream: str
    journal_id: str
    verify_key: VerifyKey
    manifests: list[Manifest]
    # (event_type, execution_id, payload, fields) of every event, in seq order.
    appended: list[tuple[str, str, object, dict[str, object]]]

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.paths.store)

    def segment_path(self, n: int) -> Path:
        return self.paths.store / self.manifests[n].object

    def manifest_path(self, n: int) -> Path:
        return self.paths.store / layout.manifest(self.stream, n)

    def checkpoint_path(self, tree_size: int) -> Path:
        return self.paths.store / layout.checkpoint(self.stream, tree_size)

    def verify(self, keys: list[VerifyKey] | None = None) -> VerifyReport:
        return verify_store(self.store, public_keys=keys if keys is not None else [self.verify_key])


def copy_history(h: History, dest: Path) -> History:
    """A copy of ``h``'s store and key directory under ``dest`` (to tamper with one and keep the other)."""
    paths = StorePaths(dest / "store", dest / "keys")
    shutil.copytree(h.paths.store, paths.store, symlinks=True)
    shutil.copytree(h.paths.keys, paths.keys, symlinks=True)
    return dataclasses.replace(h, paths=paths, manifests=list(h.manifests))


def history_events(n_events: int, *, start: int = 0) -> list[tuple[str, str, object, dict[str, object]]]:
    """A small, realistic agent history: interleaved executions, threads, tenants, tools."""
    executions = [
        ("run-alpha", "thread-1", "tenant-a"),
        ("run-beta", "thread-2", "tenant-b"),
        ("run-gamma", "thread-1", "tenant-a"),
    ]
    nodes = ["planner", "search", "writer", None]
    types = ["node_started", "tool_called", "tool_returned", "llm_completed", "state_updated", "node_completed"]
    out = []
    for i in range(start, start + n_events):
        exec_id, thread, tenant = executions[i % len(executions)]
        kind = "execution_started" if i < len(executions) else types[i % len(types)]
        payload: object = {"i": i, "note": f"step {i} of {exec_id}", "tokens": [i, i * 2]}
        if i % 5 == 0:
            payload = {"i": i, "text": "lorem ipsum dolor sit amet " * 20}  # compressible: json+zstd
        fields: dict[str, object] = {
            "thread_id": thread,
            "tenant_id": tenant,
            "ts": BASE_TS + dt.timedelta(seconds=i),
            "step_id": f"step-{i}",
        }
        if nodes[i % len(nodes)] is not None:
            fields["node"] = nodes[i % len(nodes)]
        if i % 7 == 3:
            fields["subject_id"] = "customer-4711"
        out.append((kind, exec_id, payload, fields))
    return out


def build_history(
    paths: StorePaths,
    *,
    segments: int = 4,
    events_per_segment: int = 9,
    stream: str = "main",
    config: JournalConfig | None = None,
) -> History:
    """Create a journal and seal ``segments`` segments, each by an explicit seal(); then close it."""
    cfg = config or JournalConfig(seal_max_age_seconds=None, row_group_rows=4)
    appended = []
    with Journal.create(paths.store, key_dir=paths.keys, stream=stream, config=cfg) as j:
        manifests: list[Manifest] = []
        for s in range(segments):
            batch = history_events(events_per_segment, start=s * events_per_segment)
            for kind, exec_id, payload, fields in batch:
                j.append(kind, exec_id, payload, **fields)
            appended.extend(batch)
            new = j.seal()
            assert len(new) == 1
            manifests.extend(new)
        return History(paths, stream, j.journal_id, j._key.verify_key, manifests, appended)


@pytest.fixture
def history(tmp_store: StorePaths) -> History:
    """A closed journal with 4 sealed segments of 9 events each (seq 0..35)."""
    return build_history(tmp_store)


def rewrite_parquet(path: Path, transform: Callable[[pa.Table], pa.Table]) -> None:
    """Rewrite a Parquet file in place with ``transform(table)``, keeping schema and metadata."""
    table = pq.read_table(path)
    schema = table.schema
    new = transform(table)
    new = pa.Table.from_pylist(new.to_pylist(), schema=schema) if new.schema != schema else new
    new = new.replace_schema_metadata(schema.metadata)
    make_writable(path)
    pq.write_table(new, path, compression="zstd")
    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


@pytest.fixture
def make_history(tmp_store: StorePaths) -> Callable[..., History]:
    """``build_history`` bound to this test's store: ``make_history(segments=3, ...)``."""
    return lambda **kwargs: build_history(tmp_store, **kwargs)


@pytest.fixture
def rewrite_segment() -> Callable[[Path, Callable[[pa.Table], pa.Table]], None]:
    """``rewrite_parquet`` as a fixture: ``rewrite_segment(path, lambda table: ...)``."""
    return rewrite_parquet


def forge_seal(store: LocalStore, key: SigningKey, events: list[tuple[str, str, object]], *, stream: str = "main",
               sealed_at: int | None = None) -> None:
    """A thief's seal: ``events`` (event type, execution id, payload) chained after the stream's head and
    sealed with ``key`` by the real Sealer, whatever the key history says (a writer would refuse), each
    linked to its execution's last event so that nothing but the key gives it away. ``sealed_at``
    (microseconds) backdates the manifests' time line."""
    from unittest import mock

    from wormjournal.events import StoredEvent, encode_fields, event_hash, now_micros
    from wormjournal.journal import sealer as sealer_mod
    from wormjournal.trust import load_trust

    trust = load_trust(store)
    state = sealer_mod.load_sealed_state(store, trust.journal_id, stream, trust.ring)
    heads: dict[str, int] = {}
    for n in range(state.size):
        table = pq.read_table(store.root / state.manifests[n].object, columns=["execution_id", "seq"])
        heads.update(zip(table.column("execution_id").to_pylist(), table.column("seq").to_pylist(), strict=True))
    seq, prev = state.next_seq, state.last_hash
    ts = now_micros() if sealed_at is None else sealed_at
    stored = []
    for event_type, execution, payload in events:
        values = (seq, f"forged-{seq}", ts, event_type, None, execution, None, None, None, None, None, None,
                  heads.get(execution), "json", None,
                  json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
        h = event_hash(prev, encode_fields(values))
        stored.append(StoredEvent(*values, prev_hash=prev, hash=h))
        heads[execution], seq, prev = seq, seq + 1, h
    sealer = sealer_mod.Sealer(store, state, lambda _segment: key, lambda: trust.ring, row_group_rows=4,
                               segment_max_events=1000)
    with mock.patch.object(sealer_mod, "now_micros", lambda: ts):
        sealer.seal(stored)


def resign_stream_heads(store: Path, journal_id: str, stream: str, key: SigningKey, hashes: list[bytes],
                        first: int = 0) -> None:
    """A thief's heads: every head in ``store`` (a directory) rebuilt with ``stream`` at the roots of ``hashes`` (its
    rewritten manifest hashes), the head log chained anew, each signed with ``key`` (FORMAT.md 8a)."""
    from wormjournal.segments import merkle
    from wormjournal.segments.head import Head, StreamTip
    from wormjournal.segments.notes import split_note

    names = sorted(p for p in (store / "heads").iterdir())
    prev: Head | None = None
    for path in names:
        head = Head.parse(split_note(path.read_bytes())[0], journal_id)
        tips = tuple(StreamTip(t.stream, t.size, merkle.merkle_root(hashes[: t.size]))
                     if t.stream == stream and t.size <= len(hashes) else t for t in head.streams)
        new = Head.first(journal_id, head.time, tips) if prev is None else prev.next(head.time, tips)
        overwrite(path, new.sign(key))
        prev = new


def heads_naming(store: Any, journal_id: str, stream: str, size: int) -> list[str]:
    """The names of the heads in ``store`` (any ObjectReader) that name ``stream`` at ``size`` segments: those written
    after the seal that made that checkpoint, before the stream's next one."""
    from wormjournal.segments.head import Head
    from wormjournal.segments.notes import split_note

    out = []
    for info in store.list(layout.HEADS_PREFIX):
        tip = Head.parse(split_note(store.get(info.name))[0], journal_id).tips().get(stream)
        if tip is not None and tip.size == size:
            out.append(info.name)
    return out


def wal_key(store: Path, keys: Path) -> bytes:
    """The WAL key of the journal in ``store`` (a directory), from its key directory ``keys``."""
    from wormjournal.journal.keys import load_wal_key
    from wormjournal.trust.load import read_identity

    return load_wal_key(keys, read_identity(LocalStore(store)).journal_id)


def wal_mac(store: Path, keys: Path, stream: str = "main") -> Any:
    """The authenticator of the WAL frames of ``stream`` of the journal in ``store`` (a directory)."""
    from wormjournal.storage.wal import WalMac
    from wormjournal.trust.load import read_identity

    return WalMac(wal_key(store, keys), read_identity(LocalStore(store)).journal_id, stream)


def plant(h: History, name: str, data: bytes) -> Path:
    """Write an object of ``h``'s store by name, as an attacker with write access does (over an existing one too)."""
    path = h.paths.store / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        overwrite(path, data)
    else:
        path.write_bytes(data)
    return path


class ManifestCounter:
    """A store (read side) that counts the manifests read through it."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.url = store.url
        self.manifests = 0

    def get(self, name: str) -> bytes:
        self.manifests += name.startswith("manifests/")
        return bytes(self._store.get(name))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def wait_for(done: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll ``done`` every 10 ms until it is true (returns True) or ``timeout`` seconds pass (returns False)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True
