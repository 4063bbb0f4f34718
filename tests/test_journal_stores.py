"""Journal-level behaviour on every backend: the same tests on a local directory and on S3.

``loc`` gives a fresh journal location on each backend: a directory, and an S3Store
under ``archive/prod`` of an Object Lock bucket on moto's server (over HTTP). Both
come with a key directory and a write-ahead log directory on local disk. The tests
that take ``loc`` run unchanged on both: append, seal, verify; reopen; recovery after
a close without seal and after ``kill -9`` of a writer process; several seals; tamper
detection. The S3-only tests after them check what only S3 has: every object's Object
Lock, a bucket without Object Lock, object versions.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import itertools
import json
import logging
import signal
from pathlib import Path
from typing import Any

import pytest
from s3_fixtures import S3Bucket
from test_crash import Child  # the crash tests' writer process runner

from wormjournal.errors import ConfigError
from wormjournal.events import StoredEvent
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal import wal as walmod
from wormjournal.journal.keys import load_wal_key
from wormjournal.payload import decode_payload
from wormjournal.retention import RetentionPolicy
from wormjournal.retention.policy import DAYS_PER_YEAR
from wormjournal.segments.manifest import Manifest
from wormjournal.segments.notes import VerifyKey, open_note
from wormjournal.segments.table import read_segment, table_to_events
from wormjournal.storage import layout
from wormjournal.storage.base import Store
from wormjournal.storage.local import LocalStore
from wormjournal.verify import VerifyReport, verify_store

from conftest import BASE_TS, make_writable

NO_AGE = JournalConfig(seal_max_age_seconds=None)
PREFIX = "archive/prod"
STREAM = "main"


# -- a journal location on each backend ------------------------------------------------------


@dataclasses.dataclass
class Location:
    """Where a journal lives: a store, a key directory and a WAL directory (both local)."""

    backend: str
    store: Store
    keys: Path
    wal: Path
    bucket: S3Bucket | None = None

    def create(self, config: JournalConfig = NO_AGE, **kwargs: Any) -> Journal:
        return Journal.create(self.store, key_dir=self.keys, wal_dir=self.wal, config=config, **kwargs)

    def open(self, config: JournalConfig = NO_AGE, **kwargs: Any) -> Journal:
        return Journal.open(self.store, key_dir=self.keys, wal_dir=self.wal, config=config, **kwargs)

    def wal_files(self, stream: str = STREAM) -> list[Path]:
        return walmod.list_wal_files(self.wal / f"stream={stream}")

    def child_args(self) -> list[str]:
        """crash_child.py options that reach this store (its ``--store`` is ``store.url``)."""
        args = ["--wal-dir", str(self.wal)]
        if self.bucket is not None:
            args += ["--endpoint-url", self.bucket.endpoint_url]
        return args

    def overwrite(self, name: str, data: bytes) -> None:
        """Replace an object's bytes behind the journal's back (an attacker with write access).

        On S3 that is a plain PutObject: on a versioned (Object Lock) bucket it adds a new
        current version, the sealed one stays, locked.
        """
        if self.bucket is None:
            assert isinstance(self.store, LocalStore)
            path = self.store.root / name
            make_writable(path)
            path.write_bytes(data)
        else:
            self.bucket.client.put_object(Bucket=self.bucket.name, Key=f"{PREFIX}/{name}", Body=data)


@pytest.fixture(params=["local", "s3"])
def loc(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    keys, wal = tmp_path / "keys", tmp_path / "wal"
    if request.param == "local":
        return Location("local", LocalStore(tmp_path / "store"), keys, wal)
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    return Location("s3", bucket.store(PREFIX), keys, wal, bucket)


# -- reading a journal back, on any store ---------------------------------------------------------


def sealed_segments(store: Store, stream: str = STREAM) -> dict[int, list[str]]:
    """Segment objects by segment number (a number with two objects is a duplicate)."""
    out: dict[int, list[str]] = collections.defaultdict(list)
    for info in store.list(layout.stream_segments_prefix(stream)):
        parsed = layout.parse_segment(info.name)
        assert parsed is not None, f"unexpected object {info.name}"
        out[parsed[2]].append(info.name)
    return dict(out)


def sealed_events(store: Store, stream: str = STREAM) -> list[StoredEvent]:
    """Every event of every segment object, in seq order."""
    events = [
        e
        for names in sealed_segments(store, stream).values()
        for name in names
        for e in table_to_events(read_segment(store.get(name)))
    ]
    return sorted(events, key=lambda e: e.seq)


def stored_manifests(store: Store, key: VerifyKey, stream: str = STREAM) -> list[Manifest]:
    return [Manifest.parse(open_note(store.get(i.name), [key])[0]) for i in store.list(layout.manifests_prefix(stream))]


def checkpoint_sizes(store: Store, stream: str = STREAM) -> list[int]:
    return [layout.parse_numbered(i.name)[2] for i in store.list(layout.checkpoints_prefix(stream))]  # type: ignore[index]


def check_sealed(store: Store, key: VerifyKey, acked: dict[str, int], *, next_seq: int,
                 context: str = "") -> VerifyReport:
    """Everything below ``next_seq`` is sealed exactly once: gapless seqs, every acknowledged
    event at its seq, one object per segment number, contiguous numbers, one manifest each,
    a store that verifies."""
    segments = sealed_segments(store)
    numbers = sorted(segments)
    assert numbers == list(range(len(numbers))), f"{context}: segment numbers not contiguous: {numbers}"
    doubled = {n: names for n, names in segments.items() if len(names) != 1}
    assert not doubled, f"{context}: a segment stored twice: {doubled}"
    ms = stored_manifests(store, key)
    assert [m.segment for m in ms] == numbers, f"{context}: manifests {[m.segment for m in ms]} for segments {numbers}"
    assert [m.object for m in ms] == [segments[n][0] for n in numbers]
    events = sealed_events(store)
    assert [e.seq for e in events] == list(range(next_seq)), f"{context}: seqs not gapless 0..{next_seq - 1}"
    ids = collections.Counter(e.event_id for e in events)
    assert not [i for i, n in ids.items() if n > 1], f"{context}: events stored more than once"
    at = {e.event_id: e.seq for e in events}
    lost = sorted(i for i, s in acked.items() if at.get(i) != s)
    assert not lost, f"{context}: acknowledged events lost or moved: {lost[:10]}"
    report = verify_store(store, public_keys=[key])
    assert report.ok, f"{context}: {[(f.kind, f.message) for f in report.findings]}"
    return report


def kinds(report: VerifyReport) -> set[str]:
    return {f.kind for f in report.findings}


def ev(i: int, execution: str = "run-a", **fields: Any) -> dict[str, Any]:
    return {
        "event_type": "step_completed",
        "execution_id": execution,
        "event_id": f"ev-{i}",
        "ts": BASE_TS + dt.timedelta(seconds=i),
        "payload": {"i": i, "text": "x" * (i % 7)},
        **fields,
    }


# -- the same tests on both stores -------------------------------------------------------------------


def test_append_seal_verify(loc: Location) -> None:
    with loc.create() as j:
        seqs = [j.append("step_started", "run-a", {"i": i}, event_id=f"s-{i}", ts=BASE_TS) for i in range(5)]
        seqs += j.append_batch([ev(i, "run-b" if i % 2 else "run-a") for i in range(5, 12)])
        assert seqs == list(range(12))
        assert (j.next_seq, j.sealed_seq) == (12, 0)
        assert sealed_segments(loc.store) == {}  # nothing reaches the store before a seal
        (m,) = j.seal()
        assert (m.segment, m.first_seq, m.last_seq, m.events) == (0, 0, 11, 12)
        assert j.sealed_seq == 12
        assert j.seal() == []  # nothing left
        report = j.verify()
        key = j.verify_key
    assert report.ok, report.to_text()
    assert (report.streams[0].events, report.streams[0].segments, report.streams[0].checkpoint_size) == (12, 1, 1)
    check_sealed(loc.store, key, {}, next_seq=12)
    events = sealed_events(loc.store)
    assert [e.event_id for e in events] == [f"s-{i}" for i in range(5)] + [f"ev-{i}" for i in range(5, 12)]
    assert decode_payload(events[7].payload_codec, events[7].payload) == {"i": 7, "text": "x" * 0}
    # Each event links to the previous event of its execution.
    last: dict[str, int] = {}
    for e in events:
        assert e.exec_prev_seq == last.get(e.execution_id), e
        last[e.execution_id] = e.seq
    # The keys of the store verify too (what an auditor without our PEM gets).
    assert verify_store(loc.store).ok
    assert len(loc.wal_files()) == 1  # the sealed WAL file is gone


def test_reopen_continues_the_chain(loc: Location) -> None:
    with loc.create() as j:
        j.append_batch([ev(0, "run-a"), ev(1, "run-b"), ev(2, "run-a")])
        j.seal()
        head = j.head_hash
        key = j.verify_key
    with loc.open() as j:
        assert (j.next_seq, j.sealed_seq, j.head_hash) == (3, 3, head)
        assert j.append_batch([ev(3, "run-b"), ev(4, "run-c")]) == [3, 4]  # run-b's head is in a segment
        head = j.head_hash
    with loc.open() as j:  # not sealed: the chain continues from the WAL
        assert (j.next_seq, j.sealed_seq, j.head_hash) == (5, 3, head)
        assert j.append_batch([ev(5, "run-a"), ev(6, "run-c"), ev(7, "run-b")]) == [5, 6, 7]
        manifests = j.seal()
        assert [(m.segment, m.first_seq, m.last_seq) for m in manifests] == [(1, 3, 7)]
        assert manifests[0].prev_hash == stored_manifests(loc.store, key)[0].last_hash
    check_sealed(loc.store, key, {}, next_seq=8)
    links = {e.event_id: e.exec_prev_seq for e in sealed_events(loc.store)}
    assert links == {
        "ev-0": None, "ev-1": None, "ev-2": 0,
        "ev-3": 1,  # from a sealed segment, read back from the store at open
        "ev-4": None,
        "ev-5": 2,
        "ev-6": 4,  # from the WAL of the previous writer
        "ev-7": 3,
    }


def test_recover_after_close_without_seal(loc: Location) -> None:
    with loc.create() as j:
        acked = {f"ev-{i}": s for i, s in zip(range(20), j.append_batch([ev(i) for i in range(20)]), strict=True)}
        j.seal()
        for i in range(20, 45):
            acked[f"ev-{i}"] = j.append("step_completed", "run-a", {"i": i}, event_id=f"ev-{i}", ts=BASE_TS)
        key = j.verify_key
    # Closed without sealing, like a process that exited: the WAL holds 25 unsealed events.
    assert len(sealed_segments(loc.store)) == 1
    with loc.open() as j:
        assert (j.next_seq, j.sealed_seq) == (45, 20)
        j.seal()
        assert j.sealed_seq == 45
    check_sealed(loc.store, key, acked, next_seq=45)


@pytest.mark.parametrize(
    ("step", "occurrence", "orphan"),
    [("segment_stored", 2, True), ("checkpoint_stored", 1, False)],
    ids=["after-a-segment", "after-a-checkpoint"],
)
def test_recover_after_kill(loc: Location, tmp_path: Path, step: str, occurrence: int, orphan: bool) -> None:
    """A writer process killed (SIGKILL) inside a seal: reopening completes it exactly once."""
    with loc.create() as j:
        key = j.verify_key
    logs = tmp_path / "logs"
    logs.mkdir()
    child = Child(
        loc.store.url, loc.keys, "k",  # type: ignore[arg-type]
        "--crash-at", step, "--crash-occurrence", str(occurrence), "--max-events", "200",
        "--seal-max-events", "40", "--segment-max-events", "16", *loc.child_args(),
        log_dir=logs,
    )
    assert child.finish() == -signal.SIGKILL, child.stderr()
    acked = {event_id: seq for seq, event_id in child.acks()}
    assert len(acked) >= 30  # the batch whose append triggered the seal is in the WAL, not acknowledged
    manifested = {m.object for m in stored_manifests(loc.store, key)}
    left = [n for names in sealed_segments(loc.store).values() for n in names if n not in manifested]
    assert len(left) == (1 if orphan else 0), left  # a segment stored, its manifest not
    assert len(loc.wal_files()) == 2  # the seal had rotated the WAL
    # The parent encodes segments with another row-group size: a stored orphan must be adopted.
    with loc.open(JournalConfig(seal_max_age_seconds=None, row_group_rows=4)) as j:
        next_seq = j.next_seq
        assert next_seq > max(acked.values())
        mac = walmod.WalMac(load_wal_key(loc.keys, j.journal_id), j.journal_id, "main")
        assert j.sealed_seq == next_seq - len(walmod.read_wal(loc.wal_files()[-1], mac).events)
        j.seal()
    check_sealed(loc.store, key, acked, next_seq=next_seq, context=step)
    assert len(loc.wal_files()) == 1
    if loc.bucket is not None:
        loc.bucket.assert_one_version_each(PREFIX)
    # The stream goes on: a new writer process appends after the recovered one.
    child = Child(loc.store.url, loc.keys, "m", "--max-events", "10", *loc.child_args(), log_dir=logs)  # type: ignore[arg-type]
    assert child.finish() == 0, child.stderr()
    acked.update({event_id: seq for seq, event_id in child.acks()})
    with loc.open() as j:
        j.seal()
        next_seq = j.next_seq
    check_sealed(loc.store, key, acked, next_seq=next_seq, context="continued")


def test_several_seals_make_segments_and_checkpoints(loc: Location) -> None:
    config = JournalConfig(seal_max_age_seconds=None, segment_max_events=10, row_group_rows=4)
    with loc.create(config) as j:
        key = j.verify_key
        counts = []
        for r in range(3):
            j.append_batch([ev(i) for i in range(r * 25, r * 25 + 25)])
            counts.append([m.events for m in j.seal()])
            assert checkpoint_sizes(loc.store)[-1] == 3 * (r + 1)
        # A seal over a UTC day boundary cuts a segment at midnight.
        j.append_batch([ev(75, ts=BASE_TS.replace(hour=23, minute=59, second=59)),
                        ev(76, ts=BASE_TS + dt.timedelta(days=1))])
        counts.append([m.events for m in j.seal()])
    assert counts == [[10, 10, 5]] * 3 + [[1, 1]]
    assert checkpoint_sizes(loc.store) == [3, 6, 9, 11]
    report = check_sealed(loc.store, key, {}, next_seq=77)
    s = report.streams[0]
    assert (s.segments, s.events, s.checkpoint_size, s.last_seq) == (11, 77, 11, 76)
    dates = [layout.parse_segment(names[0])[1] for _, names in sorted(sealed_segments(loc.store).items())]  # type: ignore[index]
    assert dates == ["2025-03-14"] * 10 + ["2025-03-15"]
    # Each manifest links to the one before; each checkpoint commits to a prefix of them.
    ms = stored_manifests(loc.store, key)
    assert all(b.prev_manifest == a.manifest_hash() for a, b in itertools.pairwise(ms))
    assert all(b.first_seq == a.last_seq + 1 and b.prev_hash == a.last_hash for a, b in itertools.pairwise(ms))


@pytest.mark.parametrize("target", ["segment", "manifest"])
def test_tampering_is_detected(loc: Location, target: str) -> None:
    config = JournalConfig(seal_max_age_seconds=None, segment_max_events=5)
    with loc.create(config) as j:
        j.append_batch([ev(i) for i in range(12)])
        ms = j.seal()
        key = j.verify_key
    assert j.verify().ok
    if target == "segment":
        name = ms[1].object
        data = bytearray(loc.store.get(name))
        data[len(data) // 2] ^= 0x01
        expected = {"object_sha256"} | ({"object_version"} if loc.bucket else set())
    else:
        name = layout.manifest(STREAM, 1)
        data = bytearray(loc.store.get(name).replace(b"last_seq 9", b"last_seq 8"))
        expected = {"manifest_signature"}
    loc.overwrite(name, bytes(data))
    assert loc.store.get(name) == data  # readers now see the altered bytes
    report = verify_store(loc.store, public_keys=[key])
    assert not report.ok
    assert expected <= kinds(report), report.to_text()
    # Segment 0 is intact; what follows the altered one cannot be trusted either.
    assert min(f.segment for f in report.findings if f.segment is not None) == 1, report.to_text()


# -- S3 only: locks, versions, buckets without Object Lock -------------------------------------------


def _utc(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.UTC)


@pytest.mark.parametrize(
    ("policy", "mode", "days"),
    [(None, "COMPLIANCE", 7 * DAYS_PER_YEAR), (RetentionPolicy("COMPLIANCE", 30), "COMPLIANCE", 30),
     (RetentionPolicy("GOVERNANCE", 2), "GOVERNANCE", 2)],
    ids=["default-7y", "compliance-30d", "governance-2d"],
)
def test_every_object_is_locked_by_the_journals_policy(
    s3_bucket: S3Bucket, tmp_path: Path, policy: RetentionPolicy | None, mode: str, days: int
) -> None:
    loc = Location("s3", s3_bucket.store(PREFIX), tmp_path / "keys", tmp_path / "wal", s3_bucket)
    config = JournalConfig(seal_max_age_seconds=None, segment_max_events=4)
    before = dt.datetime.now(dt.UTC)
    with loc.create(config, retention=policy) as j:
        j.append_batch([ev(i) for i in range(10)])
        j.seal()
    with loc.open(config) as j:  # a reopened writer takes the policy from journal.json
        j.append_batch([ev(i) for i in range(10, 15)])
        j.seal()
    after = dt.datetime.now(dt.UTC)
    identity = json.loads(loc.store.get(layout.JOURNAL_OBJECT))
    assert (identity["retention_mode"], identity["retention_days"]) == (mode, days)
    keys = s3_bucket.keys()
    # journal.json, a key and its key history entry, 5 segments, 5 manifests, 2 checkpoints, 2 heads, 4 index objects
    # per segment and per run (0-1 and 0-3: FORMAT.md 11a)
    assert len(keys) == 3 + 5 + 5 + 2 + 2 + 4 * (5 + 2), keys
    low = before + dt.timedelta(days=days) - dt.timedelta(seconds=1)
    high = after + dt.timedelta(days=days, seconds=2)
    for key in keys:
        assert key.startswith(f"{PREFIX}/")
        head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=key)
        assert head["ObjectLockMode"] == mode, key
        assert low <= _utc(head["ObjectLockRetainUntilDate"]) <= high, (key, head["ObjectLockRetainUntilDate"])
    s3_bucket.assert_one_version_each(PREFIX)


def test_a_locked_sealed_version_survives_an_overwrite(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    """Overwriting a segment adds a version; verify flags it, and the sealed bytes stay, locked."""
    loc = Location("s3", s3_bucket.store(PREFIX), tmp_path / "keys", tmp_path / "wal", s3_bucket)
    with loc.create() as j:
        j.append_batch([ev(i) for i in range(6)])
        (m,) = j.seal()
        key = j.verify_key
    original = loc.store.get(m.object)
    loc.overwrite(m.object, original)  # the same bytes again: only the version tells
    report = verify_store(loc.store, public_keys=[key])
    assert kinds(report) == {"object_version"}, report.to_text()
    versions = s3_bucket.versions(f"{PREFIX}/{m.object}")
    assert len(versions) == 2
    assert m.object_version in {v["VersionId"] for v in versions}
    sealed = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=f"{PREFIX}/{m.object}", VersionId=m.object_version)
    assert sealed["Body"].read() == original
    assert sealed["ObjectLockMode"] == "COMPLIANCE"


def test_init_on_a_bucket_without_object_lock(
    s3_bucket_unlocked: S3Bucket, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = s3_bucket_unlocked
    loc = Location("s3", bucket.store(PREFIX), tmp_path / "keys", tmp_path / "wal", bucket)
    with pytest.raises(ConfigError) as exc:
        loc.create()
    assert "Object Lock" in str(exc.value)
    assert "--object-lock-enabled-for-bucket" in exc.value.hint and "--allow-unlocked" in exc.value.hint
    assert bucket.keys() == []  # refused before writing anything
    assert not loc.keys.exists() or not any(loc.keys.iterdir())

    with caplog.at_level(logging.WARNING, logger="wormjournal.journal.writer"):
        j = loc.create(allow_unlocked=True)
    assert any("UNLOCKED" in r.getMessage() for r in caplog.records)
    with j:
        assert j.identity.retention_policy() is None
        j.append_batch([ev(i) for i in range(4)])
        j.seal()
        key = j.verify_key
    identity = json.loads(loc.store.get(layout.JOURNAL_OBJECT))
    assert identity["retention_mode"] is None and identity["retention_days"] is None
    for k in bucket.keys():
        assert "ObjectLockMode" not in bucket.client.head_object(Bucket=bucket.name, Key=k), k
    with loc.open() as j:
        j.append("step_completed", "run-a", {"i": 4}, event_id="ev-4", ts=BASE_TS)
        j.seal()
    check_sealed(loc.store, key, {}, next_seq=5)


def test_create_on_s3_without_a_wal_dir_is_refused_before_writing(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = s3_bucket.store(PREFIX)
    with pytest.raises(ConfigError) as exc:
        Journal.create(store, key_dir=tmp_path / "keys", config=NO_AGE)
    assert "write-ahead log" in str(exc.value) and "wal_dir" in exc.value.hint
    assert s3_bucket.keys() == []
    # Nothing was left behind: the same create, with a WAL directory, succeeds.
    Journal.create(store, key_dir=tmp_path / "keys", wal_dir=tmp_path / "wal", config=NO_AGE).close()
