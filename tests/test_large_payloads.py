"""Payloads of any size (FORMAT.md 3, 3.5): bytes payloads, and payloads stored apart in objects of their own.

A payload whose stored bytes are over ``inline_payload_bytes`` is staged in the WAL directory before its frame,
copied into the store by the seal (before the segment that names it) and named by its event (SHA-256 and length,
codec ``+ref``). For each attack on such an object the tests ask what ``verify`` says and what every read path
returns; a shred leaves the object as it is and makes it unreadable; a crash between staging and the frame leaves
nothing behind; on S3 the objects are locked like the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from s3_fixtures import S3Bucket

from wormjournal import IntegrityError, Journal, JournalConfig, verify_store
from wormjournal.analytics import connect
from wormjournal.journal import wal as walmod
from wormjournal.journal.stages import stage_payload
from wormjournal.payload import MARKER_KEY, make_ref
from wormjournal.storage import layout
from wormjournal.storage.local import LocalStore

from conftest import make_writable

CONFIG = JournalConfig(seal_max_age_seconds=None, seal_worker=False, inline_payload_bytes=64 << 10)


def objects(store: Path) -> dict[str, bytes]:
    root = store / "payloads"
    return {str(p.relative_to(store)): p.read_bytes() for p in root.rglob("*") if p.is_file()} if root.exists() else {}


def staged(j: Journal) -> list[Path]:
    d = j._wal_dir / walmod.PAYLOADS_DIR
    return sorted(d.iterdir()) if d.exists() else []


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal.create(tmp_path / "store", key_dir=tmp_path / "keys", config=CONFIG)


def test_a_64_mib_state_as_bytes_is_appended_read_sealed_and_verified(journal: Journal, tmp_path: Path) -> None:
    big = os.urandom(64 << 20) + b"PLAINTEXT-MARKER"  # incompressible: stored apart, encrypted
    seq = journal.append("state_updated", "run-1", big, thread_id="t-1", key_scope="thread")
    small = journal.append("state_updated", "run-1", b"\x00\x01 small bytes", thread_id="t-1", key_scope="none")
    events = journal.reader().events("run-1")
    assert [e.payload_codec for e in events] == ["bytes+aes256gcm+ref", "bytes"]
    assert events[0].payload == big and events[1].payload == b"\x00\x01 small bytes"
    assert len(staged(journal)) == 1 and not objects(tmp_path / "store")  # unsealed: in the WAL directory only
    journal.seal()
    assert staged(journal) == []  # the seal took it into the store
    [(name, data)] = objects(tmp_path / "store").items()
    assert b"PLAINTEXT-MARKER" not in data  # encrypted before it was stored apart
    assert name == layout.payload("main", hashlib.sha256(data).hexdigest())
    assert len(data) == len(big) + 28  # nonce and tag
    got = journal.reader().events("run-1")  # a fresh reader: from the segment and the store's object
    assert [e.seq for e in got] == [seq, small] and got[0].payload == big and got[0].sealed
    report = verify_store(tmp_path / "store")
    assert report.ok, report.findings
    assert report.bytes_checked > len(big)  # the object was read and hashed
    journal.close()


def test_a_large_json_payload_is_stored_apart_and_queried(journal: Journal, tmp_path: Path) -> None:
    value = {"chunks": [os.urandom(48).hex() for _ in range(4000)]}  # about 400 KB of JSON, poorly compressible
    journal.append("tool_returned", "run-2", value, key_scope="none")
    [event] = journal.reader().events("run-2")
    assert event.payload_codec in ("json+ref", "json+zstd+ref") and event.payload == value
    journal.seal()
    con = connect(tmp_path / "store")
    [(text,)] = con.sql("SELECT payload_json FROM events WHERE execution_id = 'run-2'").fetchall()
    assert json.loads(text) == value
    journal.close()


def tamper_target(tmp_path: Path) -> Path:
    (path,) = [p for p in (tmp_path / "store" / "payloads").rglob("*") if p.is_file()]
    make_writable(path)
    return path


@pytest.mark.parametrize("attack", ["flip", "truncate", "swap", "delete"])
def test_an_altered_payload_object_is_found_by_verify_and_refused_by_every_read(
        journal: Journal, tmp_path: Path, attack: str) -> None:
    big = os.urandom(300 << 10)
    seq = journal.append("state_updated", "run-3", big, thread_id="t-3", key_scope="none")
    journal.append("node_completed", "run-3", {"ok": True}, key_scope="none")
    journal.seal()
    path = tamper_target(tmp_path)
    if attack == "flip":
        data = bytearray(path.read_bytes())
        data[1000] ^= 1
        path.write_bytes(bytes(data))
    elif attack == "truncate":
        path.write_bytes(path.read_bytes()[:-1])
    elif attack == "swap":  # another payload's bytes under this name
        path.write_bytes(os.urandom(300 << 10))
    else:
        path.unlink()
    report = verify_store(tmp_path / "store")
    assert not report.ok
    [finding] = report.findings
    assert finding.kind == ("payload_missing" if attack == "delete" else "payload_object")
    assert (finding.seq, finding.object) == (seq, str(path.relative_to(tmp_path / "store")))
    reader = journal.reader()
    with pytest.raises(IntegrityError, match="payload object"):
        reader.events("run-3")
    with pytest.raises(IntegrityError, match="payload object"):
        reader.thread_events("t-3")
    with pytest.raises(IntegrityError, match="payload object"):
        list(reader.find(event_type="state_updated"))
    con = connect(tmp_path / "store")  # the analyst's view: the damaged payload is NULL, the rest readable
    rows = con.sql("SELECT seq, payload_json FROM events WHERE execution_id = 'run-3' ORDER BY seq").fetchall()
    assert rows[0] == (seq, None) and json.loads(rows[1][1]) == {"ok": True}
    journal.close()


def test_an_inserted_payload_object_is_a_notice_not_a_finding(journal: Journal, tmp_path: Path) -> None:
    journal.append("state_updated", "run-4", os.urandom(100 << 10), key_scope="none")
    journal.seal()
    stray = os.urandom(1000)
    LocalStore(tmp_path / "store").put(layout.payload("main", hashlib.sha256(stray).hexdigest()), stray)
    report = verify_store(tmp_path / "store")
    assert report.ok, report.findings
    assert any("1 payload object(s) named by no sealed event" in n for n in report.notices)
    bad = tmp_path / "store" / "payloads" / "stream=main" / "not-a-digest"
    bad.write_bytes(b"x")
    report = verify_store(tmp_path / "store")
    assert [(f.kind, f.object) for f in report.findings] == [("unexpected_object", "payloads/stream=main/not-a-digest")]
    journal.close()


def test_a_shred_makes_a_payload_stored_apart_unreadable_and_the_journal_still_verifies(
        journal: Journal, tmp_path: Path) -> None:
    big = os.urandom(200 << 10)
    journal.append("state_updated", "run-5", big, subject_id="alice", thread_id="t-5")  # the subject's key
    journal.seal()
    before = objects(tmp_path / "store")
    journal.shred(subject="alice", reason="request 17")
    [event] = [e for e in journal.reader().events("run-5")]
    assert event.payload == {MARKER_KEY: "shredded", "key_id": event.payload_key_id}
    assert objects(tmp_path / "store") == before  # write once: the object stays, its key is gone
    journal.seal()
    assert verify_store(tmp_path / "store").ok
    journal.close()


def test_a_crash_between_staging_and_the_frame_leaves_nothing(tmp_path: Path) -> None:
    j = Journal.create(tmp_path / "store", key_dir=tmp_path / "keys", config=CONFIG)
    j.append("state_updated", "run-6", os.urandom(100 << 10), key_scope="none")  # named by the WAL: kept
    orphan = os.urandom(100 << 10)
    digest, _ = make_ref(orphan)
    stage_payload(j._wal_dir / walmod.PAYLOADS_DIR, digest, orphan)  # staged, its frame never written
    j._wal.close()  # a crash: no seal, no close
    j._release_locks()
    j.keystore.close()
    again = Journal.open(tmp_path / "store", key_dir=tmp_path / "keys", config=CONFIG)
    names = [p.name for p in staged(again)]
    assert digest not in names and len(names) == 1
    [event] = again.reader().events("run-6")
    assert event.payload_codec == "bytes+ref"
    again.seal()
    assert staged(again) == [] and verify_store(tmp_path / "store").ok
    again.close()


def test_a_seal_whose_staged_payload_is_gone_is_refused_and_loses_nothing(journal: Journal, tmp_path: Path) -> None:
    journal.append("state_updated", "run-7", os.urandom(100 << 10), key_scope="none")
    [path] = staged(journal)
    kept = path.read_bytes()
    path.unlink()
    with pytest.raises(IntegrityError, match="neither in the write-ahead log's directory nor in the store"):
        journal.seal()
    assert not list((tmp_path / "store").rglob("seg-*.parquet"))  # nothing sealed without its payload
    path.write_bytes(kept)
    journal.seal()
    assert verify_store(tmp_path / "store").ok
    journal.close()


def test_payload_objects_on_s3_are_locked_like_the_segments(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = s3_bucket.store("archive/big")
    config = JournalConfig(seal_max_age_seconds=None, inline_payload_bytes=64 << 10)
    big = os.urandom(5 << 20)  # a 5 MB LangGraph-sized state
    with Journal.create(store, key_dir=tmp_path / "keys", wal_dir=tmp_path / "wal", config=config) as j:
        j.append("state_updated", "run-8", big, thread_id="t-8", key_scope="thread")
        j.seal()
        [event] = j.reader().events("run-8")
        assert event.payload == big and event.sealed
    keys = [k for k in s3_bucket.keys() if "/payloads/" in k]
    assert len(keys) == 1 and keys[0].startswith("archive/big/payloads/stream=main/")
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=keys[0])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert verify_store(store).ok
