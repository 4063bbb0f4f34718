"""Red-team round 2 of the fault handling added with S3 writer leases, interrupted operations finished on
the next open (rotate-key, shred, retention actions) and the CLI's exit codes (FORMAT.md 3.2, 3.3, 6.1,
11, 11b; README "Exit codes", "Interrupted actions").

The attacker can write the bucket, the WAL directory or (for a few tests) the key directory, or the
environment is faulty (a garbage path, a huge input). Each test checks what the next open does, what
``verify`` says and whether an acknowledged event is lost or an audit-trail event / erasure receipt is
written twice or never. Attacks that hold are plain tests; the ones that break something are
``xfail(strict=True)`` with the reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from s3_fixtures import S3Bucket

from wormjournal import steps
from wormjournal.cli import main
from wormjournal.errors import (
    ConfigError,
    JournalError,
    KeyStoreError,
    LeaseHeldError,
    LeaseLostError,
)
from wormjournal.events import uuid7
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal.keys import load_wal_key
from wormjournal.journal.lease import LeaseRecord
from wormjournal.retention import RetentionPolicy
from wormjournal.retention.actions import ACTION_FORMAT, PENDING_DIR, PENDING_TAG
from wormjournal.retention.policy import RETENTION_EXECUTION, RETENTION_STREAM
from wormjournal.storage import layout
from wormjournal.storage.local import LocalStore
from wormjournal.verify import verify_store

QUIET = JournalConfig(seal_max_age_seconds=None, lease_check_seconds=None)
PREFIX = "rt2"
LEASE = layout.lease("main")


def ev(i: int, prefix: str = "ev", **fields: Any) -> dict[str, Any]:
    return {"event_type": "tool_called", "execution_id": f"run-{prefix}", "event_id": f"{prefix}-{i}",
            "payload": {"i": i}, **fields}


def cli(*args: object, stdin: str | None = None) -> tuple[int, str, str]:
    """``wormjournal ARGS`` in this process, WORMJOURNAL_DEBUG unset: (exit code, stdout, stderr)."""
    import contextlib
    import sys

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    try:
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORMJOURNAL_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def no_traceback(text: str) -> None:
    assert "Traceback (most recent call last)" not in text, text


# -- a local journal -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Local:
    store: Path
    keys: Path
    key: Any

    @property
    def wal(self) -> Path:
        return self.store / ".wal"

    def open(self, **kwargs: Any) -> Journal:
        return Journal.open(self.store, key_dir=self.keys, config=QUIET, **kwargs)

    def verify(self) -> Any:
        return verify_store(LocalStore(self.store), public_keys=[self.key])


@pytest.fixture
def local(tmp_path: Path) -> Local:
    store, keys = tmp_path / "journal", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=QUIET) as j:
        j.append_batch([ev(i) for i in range(3)])
        j.seal()
        key = j.verify_key
    return Local(store, keys, key)


def plant_action(directory: Path, *, writer: Local | None = None, **overrides: Any) -> Path:
    """A pending retention action record with ``overrides``: as write_pending writes it (with its MAC) when
    ``writer`` (a local journal whose stream main's writer wrote it) is given, else forged (no MAC)."""
    op = overrides.pop("op", uuid7())
    record = {"format": ACTION_FORMAT, "op": op, "event_type": "legal_hold_released",
              "details": {"selector": {"execution": "run-ev"}, "objects": {"count": 0, "sha256": "0" * 64,
                                                                           "names": []}},
              "by": "attacker", "reason": "planted", "apply": {"kind": "holds", "on": False, "names": []}}
    record.update(overrides)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{op}.json"
    body = json.dumps(record, sort_keys=True).encode()
    if writer is None:
        path.write_bytes(body)
    else:
        jid = journal_id(writer)
        mac = hmac.new(load_wal_key(writer.keys, jid), PENDING_TAG + f"{jid}/main".encode() + b"\x00" + body,
                       hashlib.sha256).hexdigest().encode()
        path.write_bytes(body + b"\n" + mac + b"\n")
    return path


# == pending retention actions (FORMAT.md 3.3, 11) ===============================================================


def test_a_garbage_pending_action_stops_the_open_with_exit_2_and_removing_it_recovers(local: Local) -> None:
    with local.open() as j:
        acked = j.append_batch([ev(i, "late") for i in range(2)])  # acknowledged, not sealed
    pending = local.wal / "stream=main" / PENDING_DIR
    pending.mkdir()
    (pending / f"{uuid7()}.json").write_bytes(b"{not json\xff")
    with pytest.raises(ConfigError, match="damaged"):
        local.open()
    code, _, err = cli("seal", local.store, "--key-dir", local.keys)
    assert code == 2 and "pending retention action" in err and "hint" in err, err
    no_traceback(err)
    for p in pending.iterdir():
        p.unlink()
    with local.open() as j:
        j.seal()
        assert j.sealed_seq == acked[-1] + 1  # the acknowledged events survived the blocked opens
    assert local.verify().ok


@pytest.mark.parametrize("apply", [
    {"kind": "holds", "on": False},                      # no names
    {"kind": "extend", "until": "not a date", "mode": None},
    {"kind": "policy", "number": "one"},                 # no mode, days, note
], ids=["holds-without-names", "extend-bad-until", "policy-without-note"])
def test_a_malformed_pending_action_is_a_clear_usage_error(local: Local, apply: dict[str, Any]) -> None:
    plant_action(local.wal / "stream=main" / PENDING_DIR, writer=local, apply=apply)
    code, _, err = cli("seal", local.store, "--key-dir", local.keys)
    no_traceback(err)
    assert code == 2 and "pending retention action" in err, (code, err)


def test_a_pending_action_under_another_op_name_is_refused(local: Local) -> None:
    path = plant_action(local.wal / "stream=main" / PENDING_DIR, writer=local)
    path.rename(path.with_name(f"{uuid7()}.json"))
    code, _, err = cli("seal", local.store, "--key-dir", local.keys)
    assert code == 2 and "another op id" in err, err
    no_traceback(err)


def test_a_pending_hold_on_a_local_store_stays_pending_and_writes_nothing(local: Local,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A local directory cannot hold: the action never applies, so no audit event is recorded."""
    path = plant_action(local.wal / "stream=main" / PENDING_DIR, writer=local)
    with caplog.at_level(logging.WARNING), local.open() as j:
        assert j.next_seq == 3
        assert not list(j.reader().events(RETENTION_EXECUTION))
    assert path.exists() and "stays pending" in caplog.text
    assert local.verify().ok


# == shred intents (FORMAT.md 3.2) ==============================================================================


def journal_id(local: Local) -> str:
    return json.loads((local.store / "journal.json").read_text())["journal_id"]


def test_a_garbage_shred_intent_stops_every_stream_with_exit_2_until_removed(local: Local) -> None:
    pending = local.keys / journal_id(local) / "datakeys" / "pending"
    pending.mkdir(parents=True, exist_ok=True)
    (pending / ("0" * 64 + ".json")).write_text("[1, 2")
    for stream in ("main", "other"):
        with pytest.raises(KeyStoreError, match="damaged"):
            local.open(stream=stream)
    code, _, err = cli("seal", local.store, "--key-dir", local.keys)
    assert code == 2 and "shred under way" in err, err
    no_traceback(err)
    (pending / ("0" * 64 + ".json")).unlink()
    with local.open() as j:
        assert j.next_seq == 3
    assert local.verify().ok


def test_a_planted_intent_for_a_scope_without_keys_is_dropped_once(local: Local,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with local.open() as j:  # a scope with a key, so that the key store and its pending/ exist
        j.append("tool_called", "run-s", {"secret": 1}, subject_id="alice")
        j.seal()
        scope_hash = j.keystore._scope_hash("subject", "nobody@example.com")
        scope_ref = j.keystore.scope_ref("subject", "nobody@example.com")
    pending = local.keys / journal_id(local) / "datakeys" / "pending"
    pending.mkdir(exist_ok=True)
    path = pending / f"{scope_hash}.json"
    path.write_text(json.dumps({"scope": "subject", "scope_ref": scope_ref, "scope_hash": scope_hash,
                                "reason": "planted", "stream": None}))
    with caplog.at_level(logging.WARNING), local.open() as j:
        assert not list(j.reader().events("wormjournal-erasures"))  # no receipt for a scope never encrypted
    assert "dropped the interrupted shred" in caplog.text
    assert not path.exists(), "the 'dropped' intent is still there"


def test_a_planted_intent_naming_another_stream_blocks_only_that_scope(local: Local) -> None:
    """An intent claimed by stream 'other' is left to it: main opens, and shredding that scope from main is
    refused with a clear error; opening 'other' finishes it exactly once."""
    with local.open() as j:
        j.append("tool_called", "run-s", {"secret": 1}, subject_id="alice")
        j.seal()
        scope_hash = j.keystore._scope_hash("subject", "alice")
        scope_ref = j.keystore.scope_ref("subject", "alice")
    pending = local.keys / journal_id(local) / "datakeys" / "pending"
    pending.mkdir(exist_ok=True)
    (pending / f"{scope_hash}.json").write_text(json.dumps(
        {"scope": "subject", "scope_ref": scope_ref, "scope_hash": scope_hash, "reason": "r", "stream": "other"}))
    code, _, err = cli("shred", local.store, "--subject", "alice", "--key-dir", local.keys)
    assert code == 2 and "stream other" in err, err
    no_traceback(err)
    with local.open(stream="other") as j:
        receipts = list(j.reader().events("wormjournal-erasures"))
        assert len(receipts) == 1
    with local.open(stream="other") as j:  # exactly once
        assert len(list(j.reader().events("wormjournal-erasures"))) == 1
    code, out, err = cli("shred", local.store, "--subject", "alice", "--key-dir", local.keys)
    assert code == 0, err
    assert local.verify().ok


# == key rotation leftovers (FORMAT.md 6.1) ======================================================================


def test_a_garbage_rotation_note_without_a_staged_key_is_removed(local: Local,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """'After the rename it is always finished': a pending note that cannot finish, while the signing key is
    the history's, is removed instead of being stored as a history entry (the store is write-once)."""
    directory = local.keys / journal_id(local)
    (directory / "rotation.pending.note").write_bytes(b"wormjournal/key/v2\ngarbage\n")
    with caplog.at_level(logging.WARNING), local.open() as j:
        assert j.next_seq == 3
    assert not (directory / "rotation.pending.note").exists()
    assert sorted(p.name for p in (local.store / "keys" / "history").iterdir()) == ["000000000000.note"]
    assert local.verify().ok


def test_a_planted_staged_key_and_note_are_dropped(local: Local) -> None:
    from wormjournal.journal.keys import key_name
    from wormjournal.segments.notes import SigningKey

    directory = local.keys / journal_id(local)
    stranger = SigningKey.generate(key_name(journal_id(local)))
    (directory / "signing.next.pem").write_bytes(stranger.private_pem())
    (directory / "rotation.pending.note").write_bytes(b"not a note\n")
    old = (directory / "signing.pem").read_bytes()
    with local.open() as j:
        assert j.verify_key.key_id == local.key.key_id
    assert (directory / "signing.pem").read_bytes() == old
    assert not (directory / "signing.next.pem").exists() and not (directory / "rotation.pending.note").exists()
    assert local.verify().ok


# == S3: forged pending actions, leases ==========================================================================


@dataclasses.dataclass
class S3Journal:
    bucket: S3Bucket
    keys: Path
    tmp: Path
    key: Any

    def store(self) -> Any:
        return self.bucket.store(PREFIX)

    def open(self, wal: str = "w1", **kwargs: Any) -> Journal:
        return Journal.open(self.store(), key_dir=self.keys, wal_dir=self.tmp / wal, config=QUIET, **kwargs)

    def retention(self, verb: str, *args: object) -> tuple[int, str, str]:
        return cli("retention", verb, self.bucket.url(PREFIX), "--endpoint-url", self.bucket.endpoint_url,
                   "--key-dir", self.keys, "--wal-dir", self.tmp / "trail", "--by", "officer-7", "--reason", "r",
                   "--workers", "1", *args)

    def hold_status(self, name: str) -> str | None:
        head = self.bucket.client.head_object(Bucket=self.bucket.name, Key=f"{PREFIX}/{name}")
        return head.get("ObjectLockLegalHoldStatus")

    def trail_events(self) -> list[Any]:
        with Journal.open(self.store(), key_dir=self.keys, stream=RETENTION_STREAM, wal_dir=self.tmp / "trail",
                          config=QUIET) as j:
            return list(j.reader().events(RETENTION_EXECUTION))

    def verify(self) -> Any:
        return verify_store(self.store(), public_keys=[self.key])


@pytest.fixture
def s3j(s3_bucket: S3Bucket, tmp_path: Path) -> S3Journal:
    keys = tmp_path / "keys"
    with Journal.create(s3_bucket.store(PREFIX), key_dir=keys, wal_dir=tmp_path / "w1",
                        retention=RetentionPolicy("COMPLIANCE", 30), config=QUIET) as j:
        j.append_batch([ev(i, "a") for i in range(3)])
        j.seal()
        key = j.verify_key
    return S3Journal(s3_bucket, keys, tmp_path, key)


def test_a_forged_pending_release_cannot_lift_legal_holds(s3j: S3Journal) -> None:
    code, _, err = s3j.retention("hold", "--execution", "run-a")
    assert code == 0, err
    [placed] = s3j.trail_events()
    names = placed.payload["objects"]["names"]
    assert names and {s3j.hold_status(n) for n in names} == {"ON"}
    plant_action(s3j.tmp / "trail" / f"stream={RETENTION_STREAM}" / PENDING_DIR, by="chief-justice",
                 reason="case dismissed", details={"selector": {"execution": "run-a"}, "objects": {"names": names}},
                 apply={"kind": "holds", "on": False, "names": names})
    try:
        events = s3j.trail_events()  # what every retention command does first
    except JournalError:
        events = [placed]  # refusing the unauthenticated record is fine too
    assert {s3j.hold_status(n) for n in names} == {"ON"}, "the planted record lifted the legal holds"
    assert [e.event_type for e in events] == ["legal_hold_placed"], "a forged release was signed into the trail"


def test_a_forged_pending_policy_is_never_stored(s3j: S3Journal) -> None:
    plant_action(s3j.tmp / "trail" / f"stream={RETENTION_STREAM}" / PENDING_DIR, event_type="retention_policy_set",
                 details={"number": 1, "tenant": None, "mode": "COMPLIANCE", "days": 36500},
                 apply={"kind": "policy", "number": 1, "mode": "COMPLIANCE", "days": 36500,
                        "note": "forged policy\n"})
    try:
        s3j.trail_events()
    except JournalError:
        pass
    stored = list(s3j.store().list(layout.retention_policy(1)))
    if stored:
        head = s3j.bucket.client.head_object(Bucket=s3j.bucket.name, Key=f"{PREFIX}/{layout.retention_policy(1)}")
        report = s3j.verify()
        raise AssertionError(f"the forged policy object is in the store, locked {head.get('ObjectLockMode')} until "
                             f"{head.get('ObjectLockRetainUntilDate')}; "
                             f"trail {[e.event_type for e in s3j.trail_events()]}; "
                             f"verify: {[(f.kind, f.message) for f in report.findings]}")
    assert s3j.verify().ok


def test_kill_in_a_hold_then_a_release_first_finishes_the_hold_then_releases(s3j: S3Journal) -> None:
    """A hold cut short (in-process: the step hook raises after the first object) and then a *different*
    command, `retention release`: its open finishes the hold (recorded once), then it releases."""
    class Crash(BaseException):
        pass

    def die(name: str) -> None:
        if name == "retention.hold_set":
            raise Crash(name)

    steps.hook = die
    try:
        with pytest.raises(Crash):
            s3j.retention("hold", "--execution", "run-a")
    finally:
        steps.hook = None
    code, _, err = s3j.retention("release", "--execution", "run-a")
    assert code == 0, err
    events = s3j.trail_events()
    assert [e.event_type for e in events] == ["legal_hold_placed", "legal_hold_released"]
    assert len({e.payload["op"] for e in events}) == 2
    names = events[0].payload["objects"]["names"]
    assert {s3j.hold_status(n) for n in names} == {"OFF"}
    assert not list((s3j.tmp / "trail" / f"stream={RETENTION_STREAM}" / PENDING_DIR).iterdir())
    assert s3j.verify().ok


def put_lease(s3j: S3Journal, data: bytes) -> None:
    store = s3j.store()
    current = store.read_lease(LEASE)
    assert store.swap_lease(LEASE, data, current[1] if current else None) is not None


def append_cli(s3j: S3Journal, wal: str) -> tuple[int, str, str]:
    f = s3j.tmp / "in.jsonl"
    f.write_text(json.dumps(ev(0, "cli")) + "\n")
    return cli("append", s3j.bucket.url(PREFIX), f, "--endpoint-url", s3j.bucket.endpoint_url, "--key-dir", s3j.keys,
               "--wal-dir", s3j.tmp / wal)


def other_journal_lease() -> bytes:
    return LeaseRecord(journal_id="01a00000-0000-7000-8000-000000000000", stream="main", epoch=7, holder="f" * 32,
                       host="evil", pid=1, wal_dir="/x", acquired_at="2026-01-01T00:00:00.000000Z",
                       state="held").encode()


@pytest.mark.parametrize("planted", [
    pytest.param(other_journal_lease(), id="another-journal"),
    pytest.param(b'{"format":"wormjournal/lease/v1"}\n', id="fields-missing"),
    pytest.param(b"\xff" * (6 << 20), id="huge-binary"),
    pytest.param(json.dumps({"format": "wormjournal/lease/v1", "journal_id": "x", "stream": "main",
                             "epoch": 1.5, "holder": "0" * 32, "host": "h", "pid": 1, "wal_dir": "/",
                             "acquired_at": "t", "state": "held"}).encode(), id="float-epoch"),
])
def test_a_planted_lease_is_refused_with_exit_2_and_taken_over(s3j: S3Journal, planted: bytes) -> None:
    put_lease(s3j, planted)
    with pytest.raises(LeaseHeldError, match="unreadable"):
        s3j.open("w2")
    code, _, err = append_cli(s3j, "w2")
    assert code == 2 and "lease" in err, (code, err)
    no_traceback(err)
    with s3j.open("w2", take_over=True) as j:
        seqs = j.append_batch([ev(i, "b") for i in range(2)])
        j.seal()
    assert seqs == [3, 4]
    assert s3j.verify().ok


def test_a_deeply_nested_lease_is_unreadable_and_can_be_taken_over(s3j: S3Journal) -> None:
    put_lease(s3j, b"[" * 100_000)
    code, _, err = append_cli(s3j, "w2")
    no_traceback(err)
    assert code == 2, (code, err)
    with s3j.open("w2", take_over=True) as j:
        j.append_batch([ev(0, "b")])
        j.seal()
    assert s3j.verify().ok


def test_a_deleted_lease_stops_the_holder_which_reopens_and_seals_everything(s3j: S3Journal) -> None:
    j = s3j.open("w1")
    acked = j.append_batch([ev(i, "b") for i in range(3)])
    s3j.bucket.client.delete_object(Bucket=s3j.bucket.name, Key=f"{PREFIX}/{LEASE}")  # anyone with DeleteObject
    with pytest.raises(LeaseLostError, match="gone"):
        j.seal()
    with pytest.raises(LeaseLostError):
        j.append_batch([ev(9, "b")])  # nothing more is acknowledged
    j.close()
    with s3j.open("w1") as j2:  # the same WAL directory: no lease, so a new one, and its events are sealed
        j2.seal()
        assert j2.sealed_seq == acked[-1] + 1
    assert s3j.verify().ok


def test_two_simultaneous_take_overs_fork_nothing_and_one_seals(s3j: S3Journal) -> None:
    gone = s3j.open("w0")
    gone.append_batch([ev(i, "gone") for i in range(2)])  # acknowledged, never sealed: given up by a take-over
    barrier = threading.Barrier(2)
    opened: dict[str, Journal] = {}
    errors: list[BaseException] = []

    def take(name: str) -> None:
        barrier.wait()
        try:
            opened[name] = s3j.open(name, take_over=True)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=take, args=(n,)) for n in ("wa", "wb")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    sealed = []
    for name, j in opened.items():
        j.append_batch([ev(i, name) for i in range(2)])
        try:
            j.seal()
            sealed.append(name)
        except (LeaseLostError, JournalError):
            pass
        j.close()
    assert len(sealed) == 1, sealed
    with pytest.raises(LeaseLostError):
        gone.seal()
    gone.close()
    report = s3j.verify()
    assert report.ok, [(f.kind, f.message) for f in report.findings]


def test_a_take_over_during_a_seal_forks_nothing(s3j: S3Journal) -> None:
    """The lease is taken while the holder's seal is between its segment and its manifest: that seal still lands
    (documented); the taker's seal is then refused, and the stored chain verifies with the holder's events."""
    first = s3j.open("w1")
    acked = first.append_batch([ev(i, "b") for i in range(3)])
    taker: list[Journal] = []

    def take(name: str) -> None:
        if name == "seal.segment_stored" and not taker:
            taker.append(s3j.open("w2", take_over=True))

    steps.hook = take
    try:
        first.seal()
    finally:
        steps.hook = None
    first.close()
    second = taker[0]
    second.append_batch([ev(i, "c") for i in range(2)])
    with pytest.raises(JournalError):
        second.seal()
    second.close()
    with Journal.open(s3j.store(), key_dir=s3j.keys, wal_dir=s3j.tmp / "w3", config=QUIET, take_over=True) as j3:
        assert j3.next_seq == acked[-1] + 1  # the holder's events are all sealed, the taker's given up
    report = s3j.verify()
    assert report.ok, [(f.kind, f.message) for f in report.findings]


# == the CLI: inputs and exit codes (README "Exit codes", append) =================================================


def test_append_inputs_that_are_not_files_give_clear_exit_codes(local: Local, tmp_path: Path) -> None:
    good = json.dumps(ev(0, "cli"))
    # A directory as FILE, a key directory that is a file: usage errors.
    code, _, err = cli("append", local.store, tmp_path, "--key-dir", local.keys)
    assert code == 2 and "Is a directory" in err, err
    f = tmp_path / "one.jsonl"
    f.write_text(good + "\n")
    code, _, err = cli("append", local.store, f, "--key-dir", f)
    assert code == 2 and "not a directory" in err, err
    # A FIFO is read once, held in memory, and appended whole.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(good + "\n" + json.dumps(ev(1, "cli")) + "\n"))
    writer.start()
    code, out, err = cli("append", local.store, fifo, "--key-dir", local.keys)
    writer.join()
    assert code == 0 and "seq 3..4" in out, err
    # A single stdin line over 16 MiB: exit 2 naming line 1, nothing written.
    code, _, err = cli("append", local.store, "-", "--key-dir", local.keys, stdin=good + "\n" + "x" * (17 << 20))
    assert code == 2 and "line 2" in err, err
    # --skip-lines past the end of the input: a resume against another input, refused (exit 2), nothing written.
    code, _, err = cli("append", local.store, f, "--key-dir", local.keys, "--skip-lines", "99",
                       "--expect-next-seq", "12345")
    assert code == 2 and "--skip-lines" in err and "nothing written" in err, err
    # Garbage store URLs.
    for url in ("s3://", "s3:///prefix", "ftp://x/y"):
        code, _, err = cli("append", url, f, "--key-dir", local.keys)
        assert code == 2, (url, code, err)
        no_traceback(err)
    with local.open() as j:
        assert j.next_seq == 5
    for _, _, err in [cli("verify", local.store)]:
        no_traceback(err)


@pytest.mark.parametrize("args", [
    ("info", "journal\0x"),
    ("verify", "{store}", "--public-key", "key\0.pem"),
    ("verify", "{store}", "--since", "cp\0.txt"),
    ("append", "{store}", "in\0.jsonl", "--key-dir", "{keys}"),
    ("seal", "{store}", "--key-dir", "keys\0"),
    ("seal", "{store}", "--key-dir", "{keys}", "--wal-dir", "wal\0"),
], ids=["store", "public-key", "since", "input", "key-dir", "wal-dir"])
def test_a_path_with_a_nul_byte_is_a_usage_error(local: Local, args: tuple[str, ...]) -> None:
    argv = [a.format(store=local.store, keys=local.keys) for a in args]
    code, _, err = cli(*argv)
    no_traceback(err)
    assert code == 2, (code, err)


def test_an_invalid_bucket_name_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = cli("verify", "s3://Bad Bucket!/prefix")
    no_traceback(err)
    assert code == 2, (code, err)


class _EndlessLine:
    """A stdin whose one line never ends (a producer gone wrong, /dev/zero): bytes without a newline, until
    ``cap`` bytes were read, then Ctrl-C (so that the test ends)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.served = 0

    def readline(self, n: int = -1) -> bytes:
        if self.served >= self.cap:
            raise KeyboardInterrupt
        n = min(n if n > 0 else 1 << 20, self.cap - self.served)
        self.served += n
        return b"a" * n


def test_an_endless_stdin_line_stops_once_it_is_over_the_limit(local: Local,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    endless = _EndlessLine(cap=48 << 20)
    monkeypatch.setattr("sys.stdin", type("Stdin", (), {"buffer": endless})())
    code, _, err = cli("append", local.store, "-", "--key-dir", local.keys)
    assert code == 2 and "line 1" in err, (code, err, endless.served)


def test_no_command_prints_a_traceback_on_a_damaged_journal(local: Local, tmp_path: Path) -> None:
    """A journal.json replaced by garbage and a key directory holding garbage keys: every command gives one line
    and its exit code."""
    (local.store / "journal.json").chmod(0o644)
    (local.store / "journal.json").write_bytes(b"\x00garbage")
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps(ev(0, "cli")) + "\n")
    for argv in (["verify", local.store], ["info", local.store], ["append", local.store, f, "--key-dir", local.keys],
                 ["seal", local.store, "--key-dir", local.keys], ["rotate-key", local.store, "--key-dir", local.keys],
                 ["replay", local.store, "--execution", "run-ev"], ["retention", "show", local.store],
                 ["keys", local.store, "--key-dir", local.keys], ["checkpoint", local.store]):
        code, _, err = cli(*argv)
        no_traceback(err)
        assert code in (1, 2, 4), (argv[0], code, err)
        assert "internal error" not in err, (argv[0], err)
