"""kill -9 at every step of every operation that takes more than one durable step (issue: crash safety).

Each operation runs as a ``wormjournal`` command in a child process (``step_child.py``, forked from a server
that imported wormjournal once), which kills itself with SIGKILL at the N-th time it reaches a named step
(:mod:`wormjournal.steps`). A clean, traced run of each operation first lists the steps it reaches; the
operation is then killed at each (step, occurrence) of that list, one kill a round, on one journal. After
every kill the next open must succeed and finish the operation (or roll it back, where nothing of it was
announced yet), every erasure receipt and audit-trail event must be in the journal exactly once, and the
store must verify.

Kills per run: a seal 11, a key rotation 9 (and 4 more of rotations an older version or a late seal left),
shreds 16 (and 3 across two streams), the retention actions (set 9, its seal's steps included; hold and
release 8, extend 6, their own steps only; a step taken once per object is killed at its first, middle and last
time); and the recoveries themselves, each killed at every step of theirs: a seal's 22, a rotation's 12, a
shred's 28. That is 128 in all, each followed by a reopening, the exactly-once checks and a verification.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError
from s3_fixtures import TEST_ENV, TEST_ENV_UNSET, S3Bucket

from wormjournal.errors import ConfigError, WrongKekError
from wormjournal.index import Reader
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal import keys as keys_mod
from wormjournal.journal.keys import load_wal_key
from wormjournal.payload import decode_payload
from wormjournal.retention import RetentionPolicy
from wormjournal.retention.actions import PENDING_DIR
from wormjournal.retention.kek import AwsKmsKek
from wormjournal.retention.keystore import KeyStore
from wormjournal.retention.policy import RETENTION_EXECUTION, RETENTION_STREAM, load_policy
from wormjournal.retention.shred import RECEIPT_EXECUTION, RECEIPT_TYPE
from wormjournal.segments.notes import SigningKey, VerifyKey
from wormjournal.storage import layout
from wormjournal.storage.local import LocalStore
from wormjournal.trust import load_trust
from wormjournal.verify import verify_store

from conftest import heads_naming

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("step_child.py")
KILLED = -signal.SIGKILL
ANSWER_SECONDS = 120  # a command that takes longer than this hangs
QUIET = JournalConfig(seal_max_age_seconds=None, lease_check_seconds=None)
BASE_TS = dt.datetime(2025, 3, 14, 9, 0, 0, tzinfo=dt.UTC)
SEAL_STEPS = ["seal.start", *["seal.segment_stored", "seal.index_stored", "seal.manifest_stored"] * 3,
              "seal.checkpoint_stored"]


# -- the children ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    code: int
    steps: list[str]  # every step reached, in order
    output: str


class Forker:
    """A ``step_child.py serve`` process: runs one ``wormjournal`` command at a time in a forked child."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.jobs = 0
        self.kills = 0
        self.proc = subprocess.Popen([sys.executable, str(CHILD), "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self._out, self._in = self.proc.stdout.fileno(), self.proc.stdin
        self._buf = b""
        assert self._line() == "READY"

    def _line(self) -> str:
        deadline = time.monotonic() + ANSWER_SECONDS
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._out], [], [], remaining)[0]:
                raise AssertionError(f"no answer from {CHILD.name} in {ANSWER_SECONDS} s")
            chunk = os.read(self._out, 4096)
            if not chunk:
                raise AssertionError(f"{CHILD.name} ended")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def run(self, *argv: object, crash_at: str | None = None, occurrence: int = 1, s3: bool = False) -> Run:
        """``wormjournal ARGV`` (with the test's S3 credentials when ``s3``); with ``crash_at`` it must die there."""
        self.jobs += 1
        trace, log = self.work / f"{self.jobs}.trace", self.work / f"{self.jobs}.log"
        job = {"argv": [str(a) for a in argv], "crash_at": crash_at, "occurrence": occurrence, "trace": str(trace),
               "log": str(log), "env": TEST_ENV if s3 else {}, "unset": list(TEST_ENV_UNSET) if s3 else []}
        self._in.write(json.dumps(job).encode() + b"\n")
        self._in.flush()
        line = self._line()
        code = int(line.removeprefix("EXIT "))
        run = Run(code, trace.read_text().splitlines() if trace.exists() else [],
                  log.read_text(errors="replace") if log.exists() else "")
        if crash_at is not None:
            assert code == KILLED, f"{argv[:2]} did not die at {crash_at} #{occurrence} (exit {code}):\n{run.output}"
            self.kills += 1
        else:
            assert code == 0, f"{argv[:2]} failed (exit {code}):\n{run.output}"
        return run

    def close(self) -> None:
        self._in.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def forker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forker]:
    f = Forker(tmp_path_factory.mktemp("children"))
    try:
        yield f
    finally:
        f.close()


def kill_points(steps: list[str], *, sample: bool = False) -> list[tuple[str, int]]:
    """(step, occurrence) of every step a traced run reached, in order; with ``sample``, a step reached more
    than three times (once per object) only at its first, middle and last occurrence."""
    total = collections.Counter(steps)
    seen: collections.Counter[str] = collections.Counter()
    out = []
    for step in steps:
        seen[step] += 1
        n, k = total[step], seen[step]
        if not sample or n <= 3 or k in (1, (n + 1) // 2, n):
            out.append((step, k))
    return out


def assert_verifies(store: Any, keys: list[VerifyKey], context: str) -> None:
    report = verify_store(store, public_keys=keys)
    assert report.ok, f"{context}: verify failed: {[(f.kind, f.message) for f in report.findings]}"


# -- seal -------------------------------------------------------------------------------------------------------


def sealed_ids(store: LocalStore, stream: str = "main") -> list[str]:
    ids: list[str] = []
    for info in store.list(layout.stream_segments_prefix(stream)):
        ids += pq.read_table(pa.BufferReader(store.get(info.name)), columns=["event_id"]).column(0).to_pylist()
    return ids


def append_days(store: Path, keys: Path, appended: list[str], tag: str) -> None:
    """Three events on each of three new UTC dates (unsealed): a seal of them stores three segments. Their ids
    are added to ``appended``."""
    with Journal.open(store, key_dir=keys, config=QUIET) as j:
        for day in range(len(appended) // 3, len(appended) // 3 + 3):
            for k in range(3):
                appended.append(f"{tag}-{day}-{k}")
                j.append("tool_called", f"run-{tag}", {"k": k}, event_id=appended[-1],
                         ts=BASE_TS + dt.timedelta(days=day))


def test_kill_at_every_step_of_a_seal(tmp_path: Path, forker: Forker) -> None:
    """Three segments a seal (three UTC dates): killed after each step, the next open finishes the seal."""
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=QUIET) as j:
        first = j.verify_key
    appended: list[str] = []
    append_days(store, keys, appended, "clean")
    points = kill_points(forker.run("seal", store, "--key-dir", keys).steps)
    assert [step for step, _ in points] == SEAL_STEPS
    before = forker.kills
    for step, n in points:
        context = f"seal killed at {step} #{n}"
        append_days(store, keys, appended, f"{step}-{n}")
        forker.run("seal", store, "--key-dir", keys, crash_at=step, occurrence=n)
        with Journal.open(store, key_dir=keys, config=QUIET) as j:
            assert j.sealed_seq == j.next_seq, f"{context}: the open did not finish the seal"
        ids = sealed_ids(LocalStore(store))
        assert sorted(ids) == sorted(appended), f"{context}: events lost or sealed twice"
        assert_verifies(store, [first], context)
    assert forker.kills - before == 11


# -- rotate-key -------------------------------------------------------------------------------------------------


def rotation_leftovers(key_dir: Path) -> list[str]:
    return sorted(p.name for p in key_dir.iterdir()
                  if p.name in (keys_mod.PENDING_FILE, keys_mod.NEXT_FILE) or p.name.endswith(".tmp"))


def history_keys(store: Path) -> list[str]:
    return [e.key_id for e in load_trust(LocalStore(store)).ring.entries]


# Where a killed rotation ends up: before the entry is signed nothing was announced and it is dropped;
# from then on it is finished.
ROTATION_OUTCOME = {"rotate.start": "dropped", "keys.secret_staged": "dropped", "rotate.next_written": "dropped",
                    "rotate.entry_signed": "finished", "rotate.key_replaced": "finished",
                    "rotate.public_key_stored": "finished", "rotate.entry_stored": "finished",
                    "rotate.done": "finished"}


def add_events(store: Path, keys: Path, tag: str, n: int = 3, **kwargs: Any) -> None:
    with Journal.open(store, key_dir=keys, config=QUIET, **kwargs) as j:
        for i in range(n):
            j.append("node_completed", f"run-{tag}", {"i": i})
        j.seal()


def test_kill_at_every_step_of_a_key_rotation(tmp_path: Path, forker: Forker) -> None:
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=QUIET) as j:
        first = j.verify_key
        key_dir = keys / j.journal_id
    add_events(store, keys, "start")
    points = kill_points(forker.run("rotate-key", store, "--key-dir", keys).steps)
    assert [step for step, _ in points] == ["rotate.start", "keys.secret_staged", "rotate.next_written",
                                            "keys.secret_staged", "rotate.entry_signed", "rotate.key_replaced",
                                            "rotate.public_key_stored", "rotate.entry_stored", "rotate.done"]
    before = forker.kills
    for step, n in points:
        context = f"rotate-key killed at {step} #{n}"
        entries = history_keys(store)
        forker.run("rotate-key", store, "--key-dir", keys, crash_at=step, occurrence=n)
        add_events(store, keys, f"{step}-{n}")  # the open finishes or drops the rotation; the seal signs
        assert not rotation_leftovers(key_dir), f"{context}: {rotation_leftovers(key_dir)} left"
        after = history_keys(store)
        outcome = "finished" if len(after) == len(entries) + 1 else "dropped" if after == entries else "broken"
        assert outcome == ROTATION_OUTCOME[step], f"{context}: the rotation was {outcome}"
        signing, _ = keys_mod.load_keys(keys, load_trust(LocalStore(store)).journal_id)
        assert signing.verify_key.key_id == after[-1], f"{context}: the signing key is not the history's last"
        assert (key_dir / f"{after[-1]}.pub.pem").read_bytes() == signing.verify_key.pem()
        assert_verifies(store, [first], context)
    assert forker.kills - before == 9
    forker.run("rotate-key", store, "--key-dir", keys)  # and a rotation still works
    add_events(store, keys, "end")
    assert_verifies(store, [first], "after the kills")


def test_a_rotation_killed_after_signing_is_dropped_if_the_old_key_sealed_past_its_cutover(
        tmp_path: Path, forker: Forker) -> None:
    """Between the entry's signature and the key's replacement, a writer that was open already seals with the
    old key: storing the entry then would retire that key before the segment it signed. The rotation is
    dropped instead (nothing of it was announced, and the old key is still the signing key)."""
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=QUIET) as j:
        first = j.verify_key
        key_dir = keys / j.journal_id
    add_events(store, keys, "start")
    with Journal.open(store, key_dir=keys, config=QUIET) as j:
        forker.run("rotate-key", store, "--key-dir", keys, crash_at="rotate.entry_signed")
        j.append("node_completed", "run-late", {})
        (m,) = j.seal()
        assert m.key_id == first.key_id
    add_events(store, keys, "after")
    assert history_keys(store) == [first.key_id] and not rotation_leftovers(key_dir)
    assert_verifies(store, [first], "dropped rotation")


@pytest.mark.parametrize("pending", ["empty", "torn-text", "torn-signature"])
def test_a_pending_rotation_cut_short_by_an_older_version_is_dropped(tmp_path: Path, forker: Forker,
                                                                     pending: str) -> None:
    """Older versions wrote the pending entry in place: a kill could leave it empty or short (always before the
    key was replaced). Every open used to fail on it; now the rotation is dropped, with the staged key."""
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=QUIET) as j:
        first = j.verify_key
        key_dir = keys / j.journal_id
    add_events(store, keys, "start")
    forker.run("rotate-key", store, "--key-dir", keys, crash_at="rotate.entry_signed")
    note = (key_dir / keys_mod.PENDING_FILE).read_bytes()
    cut = {"empty": 0, "torn-text": 40, "torn-signature": len(note) - 20}[pending]
    (key_dir / keys_mod.PENDING_FILE).write_bytes(note[:cut])
    add_events(store, keys, "after")
    assert history_keys(store) == [first.key_id] and not rotation_leftovers(key_dir)
    assert_verifies(store, [first], pending)
    # Without the staged key, a pending file that announces nothing is only dropped when the signing key is the
    # history's own; otherwise it says what is wrong rather than guess.
    (key_dir / keys_mod.PENDING_FILE).write_bytes(b"")
    add_events(store, keys, "again")
    assert not rotation_leftovers(key_dir)
    (key_dir / keys_mod.PENDING_FILE).write_bytes(b"")
    stranger = SigningKey.generate(keys_mod.key_name(j.journal_id))
    signing = key_dir / keys_mod.SIGNING_FILE
    saved = signing.read_bytes()
    signing.write_bytes(stranger.private_pem())
    with pytest.raises(ConfigError, match="cannot finish the key rotation"):
        Journal.open(store, key_dir=keys, config=QUIET)
    signing.write_bytes(saved)


# -- shred ------------------------------------------------------------------------------------------------------


def receipts(store: Path, keys: Path, streams: list[str], trusted: list[VerifyKey]) -> dict[str, list[tuple[str, int]]]:
    """Key id -> every (stream, seq) of an erasure receipt naming it, sealed or in the WAL."""
    jid = load_trust(LocalStore(store)).journal_id
    out: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    for stream in streams:
        reader = Reader(store, stream=stream, public_keys=trusted, wal_dir=store / ".wal",
                        wal_key=load_wal_key(keys, jid))
        for e in reader.events(RECEIPT_EXECUTION):
            if e.event_type == RECEIPT_TYPE:
                for key_id in e.payload["receipt"]["key_ids"]:
                    out[key_id].append((stream, e.seq))
    return out


def open_keystore(store: Path, keys: Path) -> KeyStore:
    jid = load_trust(LocalStore(store)).journal_id
    return KeyStore.open(keys / jid / "datakeys", jid, keys_mod.load_keys(keys, jid)[1])


def check_shreds(store: Path, keys: Path, trusted: list[VerifyKey], streams: list[str], context: str) -> None:
    """Every destroyed key is named by exactly one receipt, the one its tombstone notes; nothing is pending."""
    ks = open_keystore(store, keys)
    assert not ks.pending_shreds(), f"{context}: a shred is still pending"
    named = receipts(store, keys, streams, trusted)
    for info in ks.keys():
        if info.shredded:
            assert len(named.get(info.key_id, [])) == 1, f"{context}: key {info.key_id} in receipts {named}"
            assert named[info.key_id][0] == (info.receipt_stream or "main", info.receipt_seq), context
    assert not set(named) - {k.key_id for k in ks.keys() if k.shredded}, f"{context}: a receipt for a live key"


def subject_events(store: Path, keys: Path, subject: str, *, key_scope: str = "subject", sealed: int = 2,
                   unsealed: int = 1) -> None:
    """Events of a data subject in its thread (their payloads encrypted with the key of ``key_scope``), some
    sealed, some in the WAL."""
    with Journal.open(store, key_dir=keys, config=QUIET) as j:
        for i in range(sealed + unsealed):
            j.append("tool_called", f"run-{subject}", {"i": i}, subject_id=subject, thread_id=f"thread-{subject}",
                     key_scope=key_scope)
            if i == sealed - 1:
                j.seal()


@pytest.mark.parametrize("scope", ["subject", "thread"])
def test_kill_at_every_step_of_a_shred(tmp_path: Path, forker: Forker, scope: str) -> None:
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=QUIET) as j:
        first = j.verify_key

    def shred(who: str, **kwargs: Any) -> Run:
        value = who if scope == "subject" else f"thread-{who}"
        return forker.run("shred", store, "--key-dir", keys, f"--{scope}", value, "--reason", "request", **kwargs)

    subject_events(store, keys, "clean", key_scope=scope)
    points = kill_points(shred("clean").steps)
    assert [step for step, _ in points] == ["shred.intent_written", "shred.tombstone_written", "shred.key_erased",
                                            "shred.keys_destroyed", "shred.stream_claimed", "shred.receipt_appended",
                                            "shred.receipt_recorded", "shred.done"]
    before = forker.kills
    for step, n in points:
        who = f"{step}-{n}"
        context = f"shred killed at {step} #{n}"
        subject_events(store, keys, who, key_scope=scope)
        shred(who, crash_at=step, occurrence=n)
        with Journal.open(store, key_dir=keys, config=QUIET) as j:  # finishes the shred
            events = j.reader().events(f"run-{who}")
            assert events and all(e.shredded for e in events), f"{context}: a payload is still readable"
            j.seal()
        check_shreds(store, keys, [first], ["main"], context)
        again = shred(who)  # the receipt is there: shredding again only says so
        assert "was already shredded" in again.output, f"{context}: {again.output}"
        assert_verifies(store, [first], context)
    assert forker.kills - before == 8


def test_a_shred_killed_in_one_stream_is_finished_once_whichever_stream_opens_first(tmp_path: Path,
                                                                                     forker: Forker) -> None:
    """Writers of several streams share the key store. A shred killed before its receipt was appended is finished
    by the first writer to open (once: the key store's shred lock); one killed after is left to its own stream,
    the only one that can see the receipt in its WAL."""
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=QUIET) as j:
        first = j.verify_key
    streams = ["main", "other"]
    before = forker.kills
    add_events(store, keys, "other", stream="other")
    # Killed after the receipt was appended to main (not yet noted): opening other leaves it alone.
    subject_events(store, keys, "ann")
    forker.run("shred", store, "--key-dir", keys, "--subject", "ann", crash_at="shred.receipt_appended")
    add_events(store, keys, "other-1", stream="other")
    assert len(open_keystore(store, keys).pending_shreds()) == 1
    add_events(store, keys, "main-1")
    check_shreds(store, keys, [first], streams, "receipt in main's WAL")
    # Killed before any receipt: other's writer appends it; main's then has nothing to do.
    subject_events(store, keys, "bob")
    forker.run("shred", store, "--key-dir", keys, "--subject", "bob", crash_at="shred.keys_destroyed")
    add_events(store, keys, "other-2", stream="other")
    add_events(store, keys, "main-2")
    check_shreds(store, keys, [first], streams, "receipt appended by other")
    bob = [k for k in open_keystore(store, keys).keys() if k.shredded and k.receipt_stream == "other"]
    assert len(bob) == 1
    again = forker.run("shred", store, "--key-dir", keys, "--subject", "bob")  # from main: other's receipt
    assert f"erasure receipt at seq {bob[0].receipt_seq}" in again.output
    # Killed before any receipt, then both streams open at once: one of them appends it.
    subject_events(store, keys, "cy")
    forker.run("shred", store, "--key-dir", keys, "--subject", "cy", crash_at="shred.tombstone_written")
    errors: list[BaseException] = []

    def open_stream(stream: str) -> None:
        try:
            add_events(store, keys, f"{stream}-3", stream=stream)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_stream, args=(s,)) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    check_shreds(store, keys, [first], streams, "two streams opened at once")
    assert_verifies(store, [first], "shreds across streams")
    assert forker.kills - before == 3


class KmsPendingDeletion:
    """A KMS client whose key is scheduled for deletion already, answering as AWS does (moto does not refuse)."""

    def __init__(self, state: str) -> None:
        self.state = state

    def schedule_key_deletion(self, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "KMSInvalidStateException", "Message": "arn is pending deletion"}},
                          "ScheduleKeyDeletion")

    def describe_key(self, KeyId: str) -> Any:  # noqa: N803 - boto3's name
        return {"KeyMetadata": {"KeyState": self.state, "DeletionDate": dt.datetime(2030, 1, 2, tzinfo=dt.UTC)}}


def test_a_kms_key_deletion_scheduled_before_a_crash_is_not_an_error_when_the_shred_is_finished() -> None:
    """Killed between the provider's deletion and the tombstone, a shred destroys the key again when it is
    finished: KMS refuses a second ScheduleKeyDeletion, which must not make every open fail."""
    kek = AwsKmsKek(client=KmsPendingDeletion("PendingDeletion"))
    assert kek.destroy("arn:key") == "aws-kms: deletion of arn:key scheduled for 2030-01-02T00:00:00Z"
    with pytest.raises(WrongKekError, match="KMSInvalidStateException"):
        AwsKmsKek(client=KmsPendingDeletion("Disabled")).destroy("arn:key")


# -- recoveries, killed in turn ---------------------------------------------------------------------------------


def test_kill_at_every_step_of_the_recovery_of_a_seal(tmp_path: Path, forker: Forker) -> None:
    """A seal killed after its first segment is finished by the next open; that recovery, killed at each of
    its steps (it adopts the stored segment, then seals the rest), is finished by the open after it."""
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=QUIET) as j:
        first = j.verify_key
    appended: list[str] = []

    def killed_seal(tag: str) -> None:
        append_days(store, keys, appended, tag)
        forker.run("seal", store, "--key-dir", keys, crash_at="seal.segment_stored")

    killed_seal("clean")
    points = kill_points(forker.run("seal", store, "--key-dir", keys).steps)  # the open's recovery seals
    assert [step for step, _ in points] == SEAL_STEPS
    before = forker.kills
    for step, n in points:
        context = f"the recovery of a seal killed at {step} #{n}"
        killed_seal(f"{step}-{n}")
        forker.run("seal", store, "--key-dir", keys, crash_at=step, occurrence=n)
        with Journal.open(store, key_dir=keys, config=QUIET) as j:
            assert j.sealed_seq == j.next_seq, f"{context}: the open did not finish the seal"
        assert sorted(sealed_ids(LocalStore(store))) == sorted(appended), f"{context}: events lost or sealed twice"
        assert_verifies(store, [first], context)
    assert forker.kills - before == 2 * len(points)


@pytest.mark.parametrize("killed_at", ["rotate.entry_signed", "rotate.key_replaced"])
def test_kill_at_every_step_of_the_recovery_of_a_rotation(tmp_path: Path, forker: Forker, killed_at: str) -> None:
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=QUIET) as j:
        first = j.verify_key
        key_dir = keys / j.journal_id
    add_events(store, keys, "start")
    forker.run("rotate-key", store, "--key-dir", keys, crash_at=killed_at)
    points = kill_points(forker.run("seal", store, "--key-dir", keys).steps)
    assert [step for step, _ in points] == ["rotate.public_key_stored", "rotate.entry_stored", "rotate.done"]
    before = forker.kills
    for step, n in points:
        context = f"the recovery of a rotation killed at {step} #{n}"
        entries = history_keys(store)
        forker.run("rotate-key", store, "--key-dir", keys, crash_at=killed_at)
        forker.run("seal", store, "--key-dir", keys, crash_at=step, occurrence=n)
        add_events(store, keys, f"{step}-{n}")
        assert len(history_keys(store)) == len(entries) + 1 and not rotation_leftovers(key_dir), context
        assert_verifies(store, [first], context)
    assert forker.kills - before == 2 * len(points)


@pytest.mark.parametrize("scope", ["subject", "thread"])
def test_kill_at_every_step_of_the_recovery_of_a_shred(tmp_path: Path, forker: Forker, scope: str) -> None:
    """A shred killed before it destroyed anything is finished by the next open, which destroys the keys and
    appends the receipt itself; killed at each of those steps, the open after it finishes the shred."""
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=QUIET) as j:
        first = j.verify_key

    def killed_shred(who: str) -> None:
        subject_events(store, keys, who, key_scope=scope)
        value = who if scope == "subject" else f"thread-{who}"
        forker.run("shred", store, "--key-dir", keys, f"--{scope}", value, crash_at="shred.intent_written")

    killed_shred("clean")
    trace = forker.run("seal", store, "--key-dir", keys).steps
    points = [(step, n) for step, n in kill_points(trace) if step.startswith("shred.")]
    assert [step for step, _ in points] == ["shred.tombstone_written", "shred.key_erased", "shred.keys_destroyed",
                                            "shred.stream_claimed", "shred.receipt_appended",
                                            "shred.receipt_recorded", "shred.done"]
    before = forker.kills
    for step, n in points:
        context = f"the recovery of a shred killed at {step} #{n}"
        killed_shred(f"{step}-{n}")
        forker.run("seal", store, "--key-dir", keys, crash_at=step, occurrence=n)
        with Journal.open(store, key_dir=keys, config=QUIET) as j:
            j.seal()
        check_shreds(store, keys, [first], ["main"], context)
        assert_verifies(store, [first], context)
    assert forker.kills - before == 2 * len(points)


# -- retention actions (S3) -------------------------------------------------------------------------------------

PREFIX = "archive"
DAYS = 30


@dataclasses.dataclass
class Trail:
    """A journal on an Object Lock bucket, and how to run its retention commands."""

    bucket: S3Bucket
    keys: Path
    wal: Path
    first: VerifyKey
    ran: list[str] = dataclasses.field(default_factory=list)  # the event type of each action run so far

    def store(self) -> Any:
        return self.bucket.store(PREFIX)

    def command(self, verb: str, *args: object) -> list[object]:
        return ["retention", verb, self.bucket.url(PREFIX), "--endpoint-url", self.bucket.endpoint_url,
                "--key-dir", self.keys, "--wal-dir", self.wal, "--by", "officer-7", "--reason", "case 114",
                "--workers", "1", *args]

    def lock(self, name: str) -> dict[str, Any]:
        head = self.bucket.client.head_object(Bucket=self.bucket.name, Key=f"{PREFIX}/{name}")
        return {"until": head.get("ObjectLockRetainUntilDate"), "hold": head.get("ObjectLockLegalHoldStatus")}

    def check(self, context: str) -> list[Any]:
        """Open the trail stream (finishing what a kill left pending), then: each action recorded exactly once,
        in order, nothing pending, and the store verifies. Returns the trail's events."""
        with Journal.open(self.store(), key_dir=self.keys, stream=RETENTION_STREAM, wal_dir=self.wal,
                          config=QUIET) as j:
            assert j.sealed_seq == j.next_seq, f"{context}: the trail is not sealed"
        left = list((self.wal / f"stream={RETENTION_STREAM}" / PENDING_DIR).glob("*"))
        assert not left, f"{context}: still pending: {left}"
        assert_verifies(self.store(), [self.first], context)  # so the segments read below are the signed ones
        events = self.events()
        assert [e.event_type for e in events] == self.ran, f"{context}: the audit trail is not one event an action"
        ops = [e.payload["op"] for e in events]
        assert len(set(ops)) == len(ops), f"{context}: an action was recorded twice"
        return events

    def events(self) -> list[Any]:
        """The trail's sealed events, read straight from its segments (fewer requests than a Reader's lookups)."""
        store = self.store()
        out = []
        for info in sorted(store.list(layout.stream_segments_prefix(RETENTION_STREAM)),
                           key=lambda i: layout.parse_segment(i.name)[2]):
            table = pq.read_table(pa.BufferReader(store.get(info.name)),
                                  columns=["seq", "event_type", "execution_id", "payload_codec", "payload"])
            for row in table.to_pylist():
                assert row["execution_id"] == RETENTION_EXECUTION
                out.append(TrailEvent(row["seq"], row["event_type"],
                                      decode_payload(row["payload_codec"], row["payload"])))
        return out


@dataclasses.dataclass(frozen=True)
class TrailEvent:
    seq: int
    event_type: str
    payload: dict[str, Any]


def make_trail(bucket: S3Bucket, tmp_path: Path, seals: list[list[str]]) -> Trail:
    """A journal on an Object Lock bucket (COMPLIANCE, DAYS days): one segment for each of ``seals``, holding
    events of those executions."""
    keys, wal = tmp_path / "keys", tmp_path / "wal"
    with Journal.create(bucket.store(PREFIX), key_dir=keys, wal_dir=wal,
                        retention=RetentionPolicy("COMPLIANCE", DAYS), config=QUIET) as j:
        first = j.verify_key
        for seal in seals:
            for execution in seal:
                j.append("tool_called", execution, {}, tenant_id="acme")
            j.seal()
    return Trail(bucket, keys, wal, first)


@pytest.fixture
def trail(s3_bucket: S3Bucket, tmp_path: Path) -> Trail:
    """Three sealed segments: run-a in 0 and 1, run-b in 1, run-c in 2."""
    return make_trail(s3_bucket, tmp_path, [["run-a"] * 2, ["run-b", "run-a"], ["run-c"]])


def retention_kills(forker: Forker, t: Trail, verb: str, args: Any, points: list[tuple[str, int]],
                    check: Any) -> None:
    """Kill ``retention VERB *args(round)`` at each point; after each, ``t.check`` and ``check(round, context,
    the trail's events)``."""
    for n, (step, k) in enumerate(points, 1):
        context = f"retention {verb} killed at {step} #{k}"
        forker.run(*t.command(verb, *args(n)), crash_at=step, occurrence=k, s3=True)
        t.ran.append(EVENT_OF[verb])
        check(n, context, t.check(context))


EVENT_OF = {"set": "retention_policy_set", "hold": "legal_hold_placed", "release": "legal_hold_released",
            "extend": "retention_extended"}
ACTION_STEPS = ["retention.pending_written", "retention.event_appended", *SEAL_STEPS[:4], "seal.checkpoint_stored",
                "retention.done"]


def test_kill_at_every_step_of_retention_set(trail: Trail, forker: Forker) -> None:
    def days(n: int) -> list[object]:
        return ["--retention", f"{DAYS + 1 + n}d"]

    run = forker.run(*trail.command("set", *days(0)), s3=True)
    trail.ran.append("retention_policy_set")
    points = kill_points(run.steps)
    assert [s for s, _ in points] == ["retention.pending_written", "retention.policy_stored", *ACTION_STEPS[1:]]

    def check(n: int, context: str, events: list[Any]) -> None:
        policy, problems = load_policy(trail.store(), RetentionPolicy("COMPLIANCE", DAYS), [trail.first])
        assert not problems and policy.number == n + 1 and policy.journal.days == DAYS + 1 + n, context

    before = forker.kills
    retention_kills(forker, trail, "set", days, points, check)
    assert forker.kills - before == 9


def test_kill_at_every_step_of_a_legal_hold_and_its_release(trail: Trail, forker: Forker) -> None:
    """Hold and release in turn, each killed at each step: after any kill every object is held, or none."""
    run = forker.run(*trail.command("hold", "--execution", "run-a"), s3=True)
    trail.ran.append("legal_hold_placed")
    names = trail.check("clean hold")[0].payload["objects"]["names"]
    assert len(names) >= 6
    assert run.steps.count("retention.hold_set") == len(names)
    points = kill_points(run.steps, sample=True)
    assert [s for s, _ in points] == ["retention.pending_written", *["retention.hold_set"] * 3, *ACTION_STEPS[1:]]
    points = [p for p in points if not p[0].startswith("seal.")]  # the seal's steps: killed under retention set
    before = forker.kills
    rounds = [("release" if n % 2 == 0 else "hold", step, k) for n, (step, k) in enumerate(points)]
    for verb, step, k in rounds:
        context = f"retention {verb} killed at {step} #{k}"
        forker.run(*trail.command(verb, "--execution", "run-a"), crash_at=step, occurrence=k, s3=True)
        trail.ran.append(EVENT_OF[verb])
        trail.check(context)
        held = {name for name in names if trail.lock(name)["hold"] == "ON"}
        assert held == (set(names) if verb == "hold" else set()), f"{context}: held {sorted(held)}"
    # A kill inside the recovery of a kill: the next command dies while its open finishes the last one.
    forker.run(*trail.command("hold", "--execution", "run-a"), crash_at="retention.hold_set", occurrence=3, s3=True)
    forker.run(*trail.command("release", "--execution", "run-a"), crash_at="retention.event_appended", s3=True)
    trail.ran.append("legal_hold_placed")  # the release never began: its open died finishing the hold
    trail.check("killed while finishing a killed hold")
    assert {trail.lock(name)["hold"] for name in names} == {"ON"}
    assert forker.kills - before == 8


def test_kill_at_every_step_of_a_retention_extension(s3_bucket: S3Bucket, tmp_path: Path, forker: Forker) -> None:
    """``extend --until D``, run again and again: each run lengthens what was written since the one before (the
    trail's objects of its seal), and a run killed after any of them is finished by the next open. (A journal of
    one segment: an extension inspects every object, twice.)"""
    trail = make_trail(s3_bucket, tmp_path, [["run-a"]])
    until = dt.datetime.combine(dt.datetime.now(dt.UTC).date() + dt.timedelta(days=400), dt.time(), dt.UTC)
    args = ["--until", until.date().isoformat()]
    forker.run(*trail.command("extend", *args), s3=True)  # every object, the first time
    run = forker.run(*trail.command("extend", *args), s3=True)  # then the objects of the trail's seal
    trail.ran += ["retention_extended"] * 2
    objects = trail.check("clean extension")[-1].payload["extended"]
    assert objects == len(trail_objects_of(trail, 0)) == run.steps.count("retention.retention_extended") >= 6
    points = kill_points(run.steps, sample=True)
    assert [s for s, _ in points] == ["retention.pending_written", *["retention.retention_extended"] * 3,
                                      *ACTION_STEPS[1:]]
    points = [p for p in points if not p[0].startswith("seal.")]  # the seal's steps: killed under retention set

    def check(n: int, context: str, events: list[Any]) -> None:
        # What the seal before wrote (everything older was extended before, and nothing shortens a retention),
        # counted before anything changed: the same whichever step the kill came after.
        due = trail_objects_of(trail, len(events) - 2)
        assert events[-1].payload["extended"] == len(due), context
        short = sorted(name for name in due if trail.lock(name)["until"] < until)
        assert not short, f"{context}: not extended: {short}"

    before = forker.kills
    retention_kills(forker, trail, "extend", lambda n: args, points, check)
    assert forker.kills - before == 6


def trail_objects_of(t: Trail, segment: int) -> set[str]:
    """The objects the trail stream's seal of ``segment`` stored (one action a seal), as its manifest names them."""
    m = Reader(t.store(), stream=RETENTION_STREAM, public_keys=[t.first]).manifest(segment)
    return ({m.object, layout.manifest(RETENTION_STREAM, segment), layout.checkpoint(RETENTION_STREAM, segment + 1)}
            | {layout.index_object(RETENTION_STREAM, r.kind, r.first, r.last) for r in m.index}
            | set(heads_naming(t.store(), m.journal, RETENTION_STREAM, segment + 1)))  # the head after its checkpoint
