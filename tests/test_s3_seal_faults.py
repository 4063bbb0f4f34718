"""Faults during a seal on S3, injected by a proxy in front of moto (issue 3, point 4).

- Transient faults (500, 503 SlowDown, connection resets, a reset after the object was
  stored, a request that lands late) on the puts of a seal are retried: the seal
  completes, every object is stored once (one version per key), and the store verifies.
- A seal whose puts keep failing raises StorageError, leaves the write-ahead log intact
  (nothing acknowledged lost, next_seq unchanged) and the next seal, once the fault has
  cleared, completes it exactly once: no duplicate segment, contiguous numbers.
- ``kill -9`` of a writer process in the middle of an upload (the proxy holds the PUT),
  then reopen: the seal completes exactly once and the store verifies.

botocore's retries are kept small (1 or 2 attempts a request, a 0.5 s read timeout)
and the store's backoff tiny, so that the file stays fast.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_proxy import DELAY, HANG, INTERNAL_ERROR, RESET_AFTER, RESET_BEFORE, SLOW_DOWN, FaultProxy
from s3_fixtures import S3Bucket, make_client
from test_crash import Child
from test_journal_stores import check_sealed, sealed_segments, stored_manifests

from wormjournal.errors import ConflictError, StorageError
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal import wal as walmod
from wormjournal.journal.keys import load_wal_key
from wormjournal.segments.notes import VerifyKey
from wormjournal.storage.s3 import S3Store
from wormjournal.trust.load import read_identity

from conftest import BASE_TS

PREFIX = "archive/prod"
READ_TIMEOUT = 0.5
SLOW = 1.0  # a DELAY / HANG: longer than READ_TIMEOUT
# Two segments a seal of 12 events: the faults can hit a seal half-way.
CONFIG = JournalConfig(seal_max_age_seconds=None, segment_max_events=6, row_group_rows=4)

SEGMENT_PUT = r"/segments/.*seg-\d+\.parquet$"
MANIFEST_PUT = r"/manifests/.*\.note$"
CHECKPOINT_PUT = r"/checkpoints/.*\.note$"


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # On the class: Journal.create/open derive their store with with_retention().
    monkeypatch.setattr(S3Store, "backoff_base", 0.01)


@pytest.fixture
def proxy(moto_server: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server) as p:
        yield p
        p.clear()
        p.wait_idle()


@dataclasses.dataclass
class Proxied:
    """A journal on an Object Lock bucket, reached through the fault proxy."""

    bucket: S3Bucket
    proxy: FaultProxy
    keys: Path
    wal: Path
    verify_key: VerifyKey | None = None

    def store(self, *, attempts: int = 2, put_attempts: int = 3) -> S3Store:
        client = make_client(self.proxy.url, attempts=attempts, read_timeout=READ_TIMEOUT)
        return S3Store(self.bucket.name, PREFIX, client=client, put_attempts=put_attempts)

    def open(self, config: JournalConfig = CONFIG, **kwargs: Any) -> Journal:
        return Journal.open(self.store(**kwargs), key_dir=self.keys, wal_dir=self.wal, config=config)

    @property
    def direct(self) -> S3Store:
        """The same journal, straight to moto (for checks behind the proxy's back)."""
        return self.bucket.store(PREFIX)

    def wal_dir(self) -> Path:
        return self.wal / "stream=main"

    def wal_snapshot(self) -> dict[Path, bytes]:
        return {p: p.read_bytes() for p in walmod.list_wal_files(self.wal_dir())}

    def wal_events(self) -> dict[str, int]:
        jid = read_identity(self.direct).journal_id
        mac = walmod.WalMac(load_wal_key(self.keys, jid), jid, "main")
        return {e.event_id: e.seq
                for p in walmod.list_wal_files(self.wal_dir()) for e in walmod.read_wal(p, mac).events}

    def check(self, acked: dict[str, int], next_seq: int, context: str = "") -> None:
        assert self.verify_key is not None
        self.proxy.wait_idle()  # a request held by the proxy may still land
        check_sealed(self.direct, self.verify_key, acked, next_seq=next_seq, context=context)
        self.bucket.assert_one_version_each(PREFIX)


@pytest.fixture
def pj(proxy: FaultProxy, s3_bucket: S3Bucket, tmp_path: Path) -> Proxied:
    p = Proxied(s3_bucket, proxy, tmp_path / "keys", tmp_path / "wal")
    with Journal.create(p.store(), key_dir=p.keys, wal_dir=p.wal, config=CONFIG) as j:
        p.verify_key = j.verify_key
    return p


def append(j: Journal, start: int, n: int, acked: dict[str, int]) -> None:
    events = [
        {"event_type": "tool_called", "execution_id": f"run-{i % 3}", "event_id": f"ev-{i}", "ts": BASE_TS,
         "payload": {"i": i}}
        for i in range(start, start + n)
    ]
    acked.update({e["event_id"]: s for e, s in zip(events, j.append_batch(events), strict=True)})


# -- transient faults: retried, the seal completes, each object stored once -------------------------


@pytest.mark.parametrize("attempts", [1, 2], ids=["store-retries", "botocore-retries"])
@pytest.mark.parametrize("kind", [INTERNAL_ERROR, SLOW_DOWN, RESET_BEFORE, RESET_AFTER, DELAY])
def test_a_seal_survives_transient_faults(pj: Proxied, kind: str, attempts: int) -> None:
    faults = [
        pj.proxy.inject(kind, method="PUT", path=SEGMENT_PUT, times=2, delay=SLOW),
        pj.proxy.inject(kind, method="PUT", path=MANIFEST_PUT, times=1, delay=SLOW),
        pj.proxy.inject(kind, method="PUT", path=CHECKPOINT_PUT, times=1, delay=SLOW),
    ]
    acked: dict[str, int] = {}
    with pj.open(attempts=attempts, put_attempts=4) as j:
        append(j, 0, 12, acked)
        manifests = j.seal()
        assert [m.events for m in manifests] == [6, 6]
        assert j.sealed_seq == 12
    assert [f.hits for f in faults] == [2, 1, 1]  # every fault was hit, and the seal went on
    pj.check(acked, 12, kind)
    assert len(walmod.list_wal_files(pj.wal_dir())) == 1
    # The manifests name the version that is stored (a re-put after a lost answer reads it back).
    for m in manifests:
        (version,) = pj.bucket.versions(f"{PREFIX}/{m.object}")
        assert m.object_version == version["VersionId"]


def test_a_reset_after_every_put_of_a_seal_is_an_idempotent_re_put(pj: Proxied) -> None:
    """Every object of the seal is stored by its first PUT, and each answer is lost once."""
    fault = pj.proxy.inject(RESET_AFTER, method="PUT", path=r"/(segments|manifests|checkpoints)/", times=None)
    seen: set[str] = set()

    def first_time_only(method: str, path: str) -> bool:  # only the first PUT of each key is reset
        hit = method == "PUT" and fault.path.search(path) is not None and path not in seen
        seen.add(path)
        return hit

    fault.matches = first_time_only  # type: ignore[method-assign]
    acked: dict[str, int] = {}
    with pj.open(attempts=1) as j:
        append(j, 0, 12, acked)
        j.seal()
    assert fault.hits == 5  # 2 segments, 2 manifests, a checkpoint: each stored, then re-put (412)
    # Each key: stored by its first PUT, refused (412) on every later one. A re-put whose 412 is itself lost
    # on the closing connection is sent again by botocore, so a key may see more than one 412.
    by_key: dict[str, list[int | None]] = {}
    for r in pj.proxy.requests:
        if r.method == "PUT" and fault.path.search(r.path):
            by_key.setdefault(r.path, []).append(r.upstream_status)
    assert len(by_key) == 5
    for statuses in by_key.values():
        assert statuses[0] == 200 and len(statuses) >= 2 and set(statuses[1:]) == {412}, statuses
    pj.check(acked, 12)


# -- a seal that keeps failing: StorageError, the WAL intact, the next seal completes it ---------------


@pytest.mark.parametrize(
    ("kind", "path", "stored_before"),
    [
        (INTERNAL_ERROR, r"seg-000000000000\.parquet$", 0),  # nothing of the seal is stored
        (SLOW_DOWN, r"seg-000000000001\.parquet$", 1),  # the first segment and manifest are
        (RESET_BEFORE, r"manifests/.*000000000000\.note$", 0),  # a segment without its manifest
        (HANG, SEGMENT_PUT, 0),  # timeouts
        (RESET_AFTER, r"seg-000000000000\.parquet$", 0),  # stored, but every answer lost
        (INTERNAL_ERROR, CHECKPOINT_PUT, 2),  # everything but the checkpoint
    ],
    ids=["segment-500", "second-segment-503", "manifest-reset", "segment-timeout", "segment-reset-after",
         "checkpoint-500"],
)
def test_a_failing_seal_leaves_the_wal_intact_and_the_next_seal_completes_it(
    pj: Proxied, kind: str, path: str, stored_before: int
) -> None:
    acked: dict[str, int] = {}
    with pj.open(attempts=2, put_attempts=2) as j:
        append(j, 0, 12, acked)
        wal_before = pj.wal_snapshot()
        assert len(wal_before) == 1
        pj.proxy.inject(kind, method="PUT", path=path, times=None, delay=SLOW)
        started = time.monotonic()
        with pytest.raises(StorageError) as exc:
            j.seal()
        assert time.monotonic() - started < 10
        assert not isinstance(exc.value, ConflictError)
        assert "after 2 attempts" in str(exc.value)
        # The WAL is intact: the file that held the events is unchanged, the seal only rotated.
        wal_after = pj.wal_snapshot()
        assert {p: wal_after[p] for p in wal_before} == wal_before
        assert len(wal_after) == 2
        assert pj.wal_events() == acked
        assert j.next_seq == 12
        assert j.sealed_seq == 6 * stored_before
        # Sealing again while the fault lasts fails the same way, and changes nothing.
        with pytest.raises(StorageError):
            j.seal()
        assert pj.wal_snapshot() == wal_after
        # The writer goes on accepting events meanwhile.
        append(j, 12, 5, acked)
        pj.proxy.clear()
        pj.proxy.wait_idle()
        manifests = j.seal()
        assert [m.segment for m in manifests] == list(range(stored_before, 3))
        assert (j.sealed_seq, j.next_seq) == (17, 17)
    pj.check(acked, 17, f"{kind} {path}")
    assert len(walmod.list_wal_files(pj.wal_dir())) == 1


def test_a_failed_checkpoint_is_written_by_the_next_seal_even_with_nothing_to_seal(pj: Proxied) -> None:
    acked: dict[str, int] = {}
    with pj.open(attempts=1, put_attempts=2) as j:
        append(j, 0, 12, acked)
        pj.proxy.inject(INTERNAL_ERROR, method="PUT", path=CHECKPOINT_PUT, times=None)
        with pytest.raises(StorageError):
            j.seal()
        assert j.sealed_seq == 12  # both segments and their manifests are stored
        pj.proxy.clear()
        assert j.seal() == []  # nothing left to seal, but the checkpoint is still owed
    pj.check(acked, 12)


def test_automatic_seals_that_fail_lose_nothing(pj: Proxied, caplog: pytest.LogCaptureFixture) -> None:
    """Appends go on while every automatic seal fails; the first seal after the fault seals all once."""
    config = JournalConfig(seal_max_age_seconds=None, seal_max_events=8, segment_max_events=6)
    pj.proxy.inject(INTERNAL_ERROR, method="PUT", path=MANIFEST_PUT, times=None)
    acked: dict[str, int] = {}
    with caplog.at_level(logging.WARNING, logger="wormjournal.journal.writer"):
        with pj.open(config, attempts=1, put_attempts=2) as j:
            for start in range(0, 30, 3):
                append(j, start, 3, acked)  # the automatic seals fail and are logged
            assert j.sealed_seq == 0 and j.next_seq == 30
            assert pj.wal_events() == acked
            assert len(walmod.list_wal_files(pj.wal_dir())) > 2
            pj.proxy.clear()
            manifests = j.seal()
            assert sum(m.events for m in manifests) == 30
    assert any("automatic seal failed" in r.getMessage() for r in caplog.records)
    pj.check(acked, 30)


# -- kill -9 in the middle of an upload ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "path", "lands"),
    [
        (HANG, r"seg-000000000001\.parquet$", False),  # killed while the second segment is in flight
        (DELAY, r"seg-000000000001\.parquet$", True),  # ... and it lands after the writer died
        (DELAY, r"manifests/.*000000000001\.note$", True),  # a manifest lands after the kill
        (HANG, CHECKPOINT_PUT, False),  # everything but the checkpoint
    ],
    ids=["segment-never-lands", "segment-lands-late", "manifest-lands-late", "checkpoint-never-lands"],
)
def test_killed_mid_upload_then_reopened_seals_exactly_once(
    pj: Proxied, tmp_path: Path, kind: str, path: str, lands: bool
) -> None:
    fault = pj.proxy.inject(kind, method="PUT", path=path, times=1, delay=1.5)
    # One seal of 400 events in 3 segments (150, 150, 100), when the last batch is appended.
    child = Child(
        f"s3://{pj.bucket.name}/{PREFIX}", pj.keys, "up",  # type: ignore[arg-type]
        "--endpoint-url", pj.proxy.url, "--wal-dir", str(pj.wal), "--trace",
        "--max-events", "400", "--seal-max-events", "400", "--segment-max-events", "150", "--row-group-rows", "64",
        log_dir=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while fault.hits == 0:  # the writer sent the PUT; the proxy holds it
            assert not child.eof and time.monotonic() < deadline, child.stderr()
            child.pump(time.monotonic() + 0.01)
        assert child.proc.poll() is None, child.stderr()
    finally:
        status = child.kill()
    assert status == -signal.SIGKILL
    acked = {event_id: seq for seq, event_id in child.acks()}
    assert "seal_start" in child.steps()
    assert child.steps().count("segment_stored") == (1 if "seg-" in path else 2 if "manifests" in path else 3)
    pj.proxy.wait_idle()  # the held request is dropped, or lands now
    assert pj.proxy.count("PUT", path, fault=kind) == 1
    ms = stored_manifests(pj.direct, pj.verify_key)  # type: ignore[arg-type]
    segments = sealed_segments(pj.direct)
    if "seg-" in path:
        assert len(ms) == 1 and len(segments) == (2 if lands else 1)
    elif "manifests" in path:
        assert len(ms) == (2 if lands else 1) and len(segments) == 2
    else:
        assert len(ms) == 3 and len(segments) == 3
    before = pj.bucket.all_versions(PREFIX)

    # Reopen in the parent (the fault is gone), with another row-group size: a segment that
    # landed late is re-encoded differently, so it must be adopted, not stored again.
    with pj.open(JournalConfig(seal_max_age_seconds=None, segment_max_events=150, row_group_rows=4)) as j:
        next_seq = j.next_seq
        assert next_seq >= max(acked.values()) + 1
        assert j.sealed_seq == next_seq  # open() finished the interrupted seal
        assert j.seal() == []
    assert next_seq == 400
    pj.check(acked, 400, f"{kind} {path}")
    assert len(sealed_segments(pj.direct)) == 3
    after = pj.bucket.all_versions(PREFIX)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing stored was replaced
    for m in stored_manifests(pj.direct, pj.verify_key):  # type: ignore[arg-type]
        (version,) = after[f"{PREFIX}/{m.object}"]
        assert m.object_version == version["VersionId"]
