"""Writer leases on S3 (FORMAT.md 11b): two writers of one stream on two "machines" (two processes with
their own WAL directories) on moto's server. Acknowledged means kept: a writer acknowledges nothing
before it holds the stream's lease, and loses it visibly.

- The second writer is refused while the first holds the lease (also when the first closed with
  unsealed events, or was killed: a lease never expires); once the first closed with everything
  sealed, the second opens and continues the chain.
- A take-over makes the first writer's next append raise LeaseLostError with nothing written, and
  its seal refuse; the events it acknowledged and had not sealed are given up, nothing else.
- A writer killed with SIGKILL holds its own lease again from the same WAL directory and seals.
- The lease is a working object: unlocked, conditional, never listed, verified or audited.

After every scenario the store verifies and every acknowledged event not given up is sealed at its seq.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from s3_fixtures import S3Bucket
from test_journal_stores import check_sealed
from test_store_s3 import record_calls

from wormjournal.errors import ConfigError, LeaseHeldError, LeaseLostError, ValidationError
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal import wal as walmod
from wormjournal.journal.lease import HOLDER_FILE, LEASE_FORMAT, LeaseRecord
from wormjournal.retention.audit import audit_store
from wormjournal.segments.notes import VerifyKey
from wormjournal.storage import layout
from wormjournal.storage.local import LocalStore
from wormjournal.storage.s3 import S3Store
from wormjournal.verify import verify_store

from conftest import BASE_TS

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("lease_child.py")
PREFIX = "agents"
LEASE = layout.lease("main")
QUIET = JournalConfig(seal_max_age_seconds=None, lease_check_seconds=None)


class Writer:
    """A lease_child.py process: one writer of stream ``main`` with its own WAL directory (its "machine").

    Started at once, so that the imports of several writers overlap; ``ask`` waits for READY first.
    """

    def __init__(self, url: str, endpoint: str, keys: Path, wal: Path, log_dir: Path, name: str) -> None:
        self.wal = wal
        self.name = name
        self.stderr_path = log_dir / f"{name}.stderr"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(CHILD), url, endpoint, str(keys), str(wal)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=ROOT,
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
            )
        self._buffer = b""
        self._ready = False

    def _line(self, timeout: float = 30) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            assert left > 0, f"{self.name}: no answer in {timeout}s; stderr: {self.stderr()}"
            if select.select([self.proc.stdout], [], [], left)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, f"{self.name} exited ({self.proc.poll()}); stderr: {self.stderr()}"
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def ask(self, command: str) -> str:
        if not self._ready:
            assert self._line() == "READY"
            self._ready = True
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        return self._line()

    def append(self, n: int, prefix: str) -> dict[str, int]:
        """Append ``n`` events in one batch; returns the acknowledged {event_id: seq}."""
        reply = self.ask(f"append {n} {prefix}")
        assert reply.startswith("ACK "), reply
        return {f"{prefix}-{i}": int(s) for i, s in enumerate(reply[4:].split(","))}

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def holder(self) -> str:
        return (self.wal / "stream=main" / HOLDER_FILE).read_text().strip()


class Setup:
    """A journal on an Object Lock bucket (created, then closed, by this process) and its writers."""

    def __init__(self, bucket: S3Bucket, tmp: Path) -> None:
        self.bucket = bucket
        self.tmp = tmp
        self.keys = tmp / "keys"
        self.writers: list[Writer] = []
        with Journal.create(self.store(), key_dir=self.keys, wal_dir=tmp / "wal-init", config=QUIET) as j:
            self.key: VerifyKey = j.verify_key

    def store(self) -> S3Store:
        return self.bucket.store(PREFIX)

    def writer(self, name: str, wal: str | None = None) -> Writer:
        w = Writer(self.bucket.url(PREFIX), self.bucket.endpoint_url, self.keys, self.tmp / f"wal-{wal or name}",
                   self.tmp, name)
        self.writers.append(w)
        return w

    def open(self, wal: str, **kwargs: Any) -> Journal:
        """A writer in this process, with the WAL directory ``wal-<wal>``."""
        return Journal.open(self.store(), key_dir=self.keys, wal_dir=self.tmp / f"wal-{wal}", config=QUIET, **kwargs)

    @staticmethod
    def append(j: Journal, n: int, prefix: str) -> dict[str, int]:
        events = [ev(i, prefix) for i in range(n)]
        return {e["event_id"]: seq for e, seq in zip(events, j.append_batch(events), strict=True)}

    def lease(self) -> LeaseRecord:
        found = self.store().read_lease(LEASE)
        assert found is not None
        return LeaseRecord.decode(found[0])

    def objects(self) -> dict[str, list[str]]:
        """Every key of the journal (the lease left out) with its version ids."""
        return {k: [v.get("VersionId") for v in vs] for k, vs in self.bucket.all_versions(PREFIX).items()
                if not k.startswith(f"{PREFIX}/{layout.LEASES_PREFIX}")}

    def check(self, acked: dict[str, int], next_seq: int, context: str) -> None:
        check_sealed(self.store(), self.key, acked, next_seq=next_seq, context=context)
        audit = audit_store(self.store())
        assert audit.ok, [(f.kind, f.object, f.message) for f in audit.findings]


@pytest.fixture
def setup(s3_bucket: S3Bucket, tmp_path: Path) -> Any:
    s = Setup(s3_bucket, tmp_path)
    yield s
    for w in s.writers:
        w.stop()


def wal_files(wal: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in walmod.list_wal_files(wal / "stream=main")}


# -- two writer processes: a child and this one ----------------------------------------------------


def test_a_second_writer_is_refused_until_the_first_has_sealed_and_closed(setup: Setup) -> None:
    a = setup.writer("a")
    assert a.ask("open") == "OPEN 0 0"
    acked = a.append(8, "a")
    assert acked == {f"a-{i}": i for i in range(8)}
    objects = setup.objects()

    with pytest.raises(LeaseHeldError) as exc:
        setup.open("b")
    held = setup.lease()
    assert (held.holder, held.state, held.pid) == (a.holder(), "held", a.proc.pid)
    for words in (a.holder(), held.host, f"pid {a.proc.pid}", str(a.wal), "take_over=True"):
        assert words in str(exc.value), (words, str(exc.value))
    assert setup.objects() == objects  # refused before writing anything to the store
    assert wal_files(setup.tmp / "wal-b") == {}  # ... or to its WAL

    # Closed with unsealed events, the first keeps its lease: only its WAL directory can seal them.
    assert a.ask("close") == "CLOSED"
    assert setup.lease().state == "held"
    with pytest.raises(LeaseHeldError):
        setup.open("b")
    assert a.ask("open") == "OPEN 8 0"  # the same WAL directory: its own lease
    assert a.ask("seal") == "SEALED 8"
    assert a.ask("close") == "CLOSED"
    released = setup.lease()
    assert (released.holder, released.state) == (a.holder(), "released")

    with setup.open("b") as b:
        assert (b.next_seq, b.sealed_seq) == (8, 8)  # the chain goes on from the first writer's last event
        acked.update(setup.append(b, 4, "b"))
        b.seal()
    last = setup.lease()
    assert (last.state, last.epoch) == ("released", held.epoch + 2)
    assert last.holder == (setup.tmp / "wal-b" / "stream=main" / HOLDER_FILE).read_text().strip() != a.holder()
    setup.check(acked, 12, "refused, then continued")


def test_a_take_over_stops_the_first_writer_before_it_writes(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    a = setup.writer("a")
    assert a.ask("open check=0.1") == "OPEN 0 0"
    acked = a.append(6, "a")
    assert a.ask("seal") == "SEALED 6"
    given_up = a.append(3, "gone")  # acknowledged by the first writer, never sealed
    assert given_up == {"gone-0": 6, "gone-1": 7, "gone-2": 8}

    with pytest.raises(LeaseHeldError):
        setup.open("b")
    with caplog.at_level(logging.WARNING, logger="wormjournal"):
        b = setup.open("b", take_over=True)
    with b:
        assert (b.next_seq, b.sealed_seq) == (6, 6)  # from the sealed chain: the first writer's WAL is not its
        took = [r.getMessage() for r in caplog.records if "took over" in r.getMessage()]
        assert took and "given up" in took[0] and a.holder() in took[0]
        taken = setup.lease()
        assert (taken.state, taken.pid) == ("held", os.getpid())
        wal_before, objects = wal_files(a.wal), setup.objects()

        lost = a.ask("lost 10")  # the first writer's background check (every 0.1 s) notices
        assert lost.startswith("LOST "), lost
        assert taken.holder in lost and f"pid {os.getpid()}" in lost and "seq 6..8" in lost and "given up" in lost
        reply = a.ask("append 2 late")
        assert reply.startswith("ERR LeaseLostError"), reply
        assert taken.holder in reply
        assert a.ask("seal").startswith("ERR LeaseLostError")
        assert wal_files(a.wal) == wal_before  # nothing written: no event acknowledged that cannot be sealed
        assert setup.objects() == objects  # and nothing stored

        acked.update(setup.append(b, 4, "b"))
        assert set(acked.values()) == set(range(10))
        b.seal()
    assert a.ask("close") == "CLOSED"  # the lost writer leaves the lease alone
    assert (setup.lease().holder, setup.lease().state) == (taken.holder, "released")
    setup.check(acked, 10, "taken over")


def test_a_killed_writer_keeps_its_lease_and_seals_from_its_wal_directory(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    a = setup.writer("a")
    assert a.ask("open") == "OPEN 0 0"
    acked = a.append(5, "a")
    assert a.ask("seal") == "SEALED 5"
    acked.update(a.append(7, "unsealed"))
    held = setup.lease()
    a.kill()

    # No timeout: the dead writer's acknowledged events are in its WAL, which only it can seal.
    with pytest.raises(LeaseHeldError, match=f"pid {a.proc.pid}"):
        setup.open("b")
    # Another process (this one) reopens from the dead writer's WAL directory: its lease, its events.
    with caplog.at_level(logging.INFO, logger="wormjournal"):
        again = setup.open("a")
    with again:
        assert (again.next_seq, again.sealed_seq) == (12, 5)
        mine = setup.lease()
        assert (mine.holder, mine.epoch, mine.pid) == (held.holder, held.epoch + 1, os.getpid())
        assert any("its own lease" in r.getMessage() for r in caplog.records)
        again.seal()

    with setup.open("b") as b:
        assert (b.next_seq, b.sealed_seq) == (12, 12)
        acked.update(setup.append(b, 2, "b"))
        b.seal()
    setup.check(acked, 14, "killed, then resealed")


# -- in one process -----------------------------------------------------------------------------------


def ev(i: int, prefix: str = "ev") -> dict[str, Any]:
    return {"event_type": "tool_called", "execution_id": "run", "event_id": f"{prefix}-{i}", "ts": BASE_TS,
            "payload": {"i": i}}


def test_a_seal_checks_the_lease_even_without_the_background_check(setup: Setup) -> None:
    first = Journal.open(setup.store(), key_dir=setup.keys, wal_dir=setup.tmp / "wal-1", config=QUIET)
    acked = dict(zip([f"ev-{i}" for i in range(3)], first.append_batch([ev(i) for i in range(3)]), strict=True))
    first.seal()
    first.append_batch([ev(i, "gone") for i in range(2)])
    with pytest.raises(LeaseHeldError):
        Journal.open(setup.store(), key_dir=setup.keys, wal_dir=setup.tmp / "wal-2", config=QUIET)
    second = Journal.open(setup.store(), key_dir=setup.keys, wal_dir=setup.tmp / "wal-2", config=QUIET,
                          take_over=True)
    wal_before, objects = wal_files(setup.tmp / "wal-1"), setup.objects()
    with pytest.raises(LeaseLostError) as exc:
        first.seal()  # one HEAD before the seal: the lease is not its own any more
    assert "seq 3..4" in str(exc.value) and exc.value.hint
    with pytest.raises(LeaseLostError):
        first.append_batch([ev(9, "late")])
    assert wal_files(setup.tmp / "wal-1") == wal_before and setup.objects() == objects
    first.close(seal=False)
    with second:
        acked.update(zip(["b-0"], second.append_batch([ev(0, "b")]), strict=True))
        second.seal()
    assert acked["b-0"] == 3
    setup.check(acked, 4, "seal-time check")


def test_the_lease_is_an_unlocked_working_object_no_one_audits(setup: Setup) -> None:
    store = setup.store()
    calls = record_calls(setup.bucket.client)
    with Journal.open(store, key_dir=setup.keys, wal_dir=setup.tmp / "wal-1", config=QUIET) as j:
        j.append_batch([ev(i) for i in range(4)])
        opened = len(calls)
        j.seal()
        sealing = calls[opened:]
        j.close(seal=False)
    lease_puts = [p for op, p in calls if op == "PutObject" and p["Key"] == f"{PREFIX}/{LEASE}"]
    assert len(lease_puts) == 2  # held at open (If-Match the released lease of create), released at close
    for params in lease_puts:
        assert params.get("IfMatch") and "IfNoneMatch" not in params
        assert "ObjectLockMode" not in params and "ObjectLockRetainUntilDate" not in params
    # The seal checks the lease with one HEAD, never a PUT (no versions pile up under Object Lock).
    assert [op for op, p in sealing if p.get("Key") == f"{PREFIX}/{LEASE}"] == ["HeadObject"]

    record = json.loads(store.read_lease(LEASE)[0])  # type: ignore[index]
    assert record["format"] == LEASE_FORMAT and record["state"] == "released" and record["stream"] == "main"
    assert set(record) == {"format", "journal_id", "stream", "epoch", "holder", "host", "pid", "wal_dir",
                           "acquired_at", "state", "released_at"}
    versions = setup.bucket.versions(f"{PREFIX}/{LEASE}")
    assert len(versions) == 4  # create: held, released; this open: held, released
    head = setup.bucket.client.head_object(Bucket=setup.bucket.name, Key=f"{PREFIX}/{LEASE}")
    assert "ObjectLockMode" not in head
    # Not an object of the journal: never listed, so neither verify nor the lock audit nor retention sees it.
    assert not [o.name for o in store.list("") if "lease" in o.name]
    assert verify_store(store, public_keys=[setup.key]).ok
    audit = audit_store(store)
    assert audit.ok, audit.findings


def test_swap_lease_is_a_compare_and_swap_safe_to_repeat(s3_bucket: S3Bucket) -> None:
    store = s3_bucket.store(PREFIX)
    assert store.read_lease(LEASE) is None and store.lease_etag(LEASE) is None
    first = store.swap_lease(LEASE, b"1", None)
    assert first is not None and store.lease_etag(LEASE) == first
    assert store.swap_lease(LEASE, b"other", None) is None  # If-None-Match: someone holds it
    second = store.swap_lease(LEASE, b"2", first)
    assert second is not None and second != first
    assert store.swap_lease(LEASE, b"3", first) is None  # If-Match a stale ETag: lost the race
    assert store.swap_lease(LEASE, b"2", first) == second  # a repeat of a put that landed: ours
    assert store.read_lease(LEASE) == (b"2", second)
    with pytest.raises(ValidationError, match="not a lease object name"):
        store.swap_lease("segments/x", b"1", None)


def test_a_local_store_has_no_lease_and_the_setting_is_checked(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    with Journal.create(store, key_dir=tmp_path / "keys", config=QUIET) as j:
        j.append_batch([ev(0)])
    assert not (tmp_path / "store" / ".leases").exists()  # the flock in .locks is its one-writer lock
    assert not (tmp_path / "store" / ".wal" / "stream=main" / HOLDER_FILE).exists()
    with pytest.raises(ConfigError, match="lease_check_seconds"):
        JournalConfig(lease_check_seconds=0)


def test_an_unreadable_lease_is_refused_until_taken_over(setup: Setup) -> None:
    store = setup.store()
    _, etag = store.read_lease(LEASE)  # type: ignore[misc]
    assert store.swap_lease(LEASE, b"planted\n", etag) is not None  # anyone with s3:PutObject
    with pytest.raises(LeaseHeldError, match="unreadable"):
        Journal.open(store, key_dir=setup.keys, wal_dir=setup.tmp / "wal-1", config=QUIET)
    with Journal.open(store, key_dir=setup.keys, wal_dir=setup.tmp / "wal-1", config=QUIET, take_over=True) as j:
        acked = dict(zip(["ev-0"], j.append_batch([ev(0)]), strict=True))
        j.seal()
    assert (setup.lease().epoch, setup.lease().state) == (1, "released")
    setup.check(acked, 1, "unreadable lease")


def test_the_cli_is_refused_then_takes_over_with_a_flag(setup: Setup, wj: Any) -> None:
    """`wormjournal seal` with another WAL directory: refused (exit 2, naming --take-over) while the first writer
    holds the stream; with --take-over it takes the lease, and the first writer's next append is refused."""
    first = setup.open("1")
    acked = setup.append(first, 3, "a")
    first.seal()
    base = ["seal", setup.bucket.url(PREFIX), "--endpoint-url", setup.bucket.endpoint_url, "--key-dir",
            str(setup.keys), "--wal-dir", str(setup.tmp / "wal-cli")]
    refused = wj(*base)
    assert refused.code == 2 and "--take-over" in refused.err and "Traceback" not in refused.err, refused.err
    taken = wj(*base, "--take-over")
    assert taken.code == 0, taken.err
    with pytest.raises(LeaseLostError):
        first.seal()
    first.close(seal=False)
    setup.check(acked, 3, "CLI take-over")
