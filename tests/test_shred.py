"""Crypto-shredding (issue 5): no plaintext or raw subject id anywhere on disk or in logs, every read
path after a shred, erasure receipts and their tampering, scopes and idempotency, AAD binding,
typed key-store errors, crash safety of key creation, and AWS KMS (moto) as the key-encryption key.

Everything runs on real components: a local store, the writer, the readers, the verifier, a killed
child process and a moto server. The CLI side of shredding is in test_shred_cli.py.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wormjournal import (
    AwsKmsKek,
    CorruptKeyError,
    IntegrityError,
    Journal,
    JournalConfig,
    KeyStore,
    KeyStoreError,
    KeyStoreMissingError,
    LocalKek,
    Reader,
    UnknownKeyError,
    UnknownScopeError,
    ValidationError,
    WrongKekError,
)
from wormjournal import payload as payloads
from wormjournal.events import validate_event
from wormjournal.index.model import Event
from wormjournal.journal import wal as walmod
from wormjournal.journal.writer import DATAKEYS_DIR
from wormjournal.retention.keystore import MASTER_FILE, STORE_FILE
from wormjournal.retention.shred import RECEIPT_EXECUTION, RECEIPT_TYPE, check_receipt, receipt_payload
from wormjournal.segments.notes import SigningKey
from wormjournal.storage.local import LocalStore
from wormjournal.trust.load import read_identity

from conftest import wal_mac

ROOT = Path(__file__).resolve().parents[1]
CONFIG = JournalConfig(seal_max_age_seconds=None, row_group_rows=4)
BASE_TS = dt.datetime(2025, 3, 14, 9, 0, 0, tzinfo=dt.UTC)  # one fixed day: one segment per seal
SHREDDED = "shredded"
LOCAL_REFERENCE = "local: wrapped key overwritten and removed"


# -- helpers ------------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def files_under(*roots: Path) -> list[Path]:
    return sorted(p for root in roots if root.exists() for p in root.rglob("*") if p.is_file())


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def zstd_frames(data: bytes) -> Iterator[bytes]:
    """Whatever decompresses from each zstd frame magic in ``data`` (Parquet pages, json+zstd payloads)."""
    start = 0
    while (i := data.find(_ZSTD_MAGIC, start)) >= 0:
        start = i + 1
        try:
            out = zstandard.ZstdDecompressor().decompressobj().decompress(data[i:])
        except zstandard.ZstdError:
            continue
        if out:
            yield out


def flatten(value: Any) -> Iterator[bytes]:
    """Every value of a Parquet cell or a WAL field as bytes, decompressing zstd frames in binary values."""
    if value is None:
        return
    if isinstance(value, bytes):
        yield value
        yield from zstd_frames(value)
    elif isinstance(value, str):
        yield value.encode("utf-8")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from flatten(k)
            yield from flatten(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from flatten(v)
    else:
        yield str(value).encode()


def file_views(path: Path, roots: Iterable[Path] = ()) -> Iterator[tuple[str, bytes]]:
    """A file as raw bytes, as its decompressed zstd frames, as every Parquet cell, as every WAL field (a WAL
    file is read with its journal's WAL key, from whichever of ``roots`` is its key directory)."""
    data = path.read_bytes()
    yield "raw", data
    for frame in zstd_frames(data):
        yield "zstd", frame
    if len(data) >= 8 and data[:4] == b"PAR1" and data[-4:] == b"PAR1":
        table = pq.read_table(pa.BufferReader(data))
        for k, v in (table.schema.metadata or {}).items():
            yield "parquet-metadata", k + b"=" + v
        for name in table.column_names:
            for cell in table.column(name).to_pylist():
                for b in flatten(cell):
                    yield f"parquet:{name}", b
    if path.suffix == ".wal":
        store = path.parents[2]  # <store>/.wal/stream=<s>/<n>.wal
        jid = read_identity(LocalStore(store)).journal_id
        keys = next((r for r in roots if (r / jid).is_dir()), store.parent / "keys")  # the tests' layout
        for e in walmod.read_wal(path, wal_mac(store, keys, path.parent.name.removeprefix("stream="))).events:
            for b in flatten(list(e.field_values())):
                yield "wal-field", b
            if not e.payload_codec.endswith(payloads.ENCRYPTED):
                yield "wal-payload", payloads.decode_payload_json(e.payload_codec, e.payload)


def where_found(needles: Iterable[bytes], *roots: Path) -> list[str]:
    """``path (view)`` for every file view under ``roots`` holding any of ``needles``."""
    needles = [n for n in needles if n]
    hits = []
    for path in files_under(*roots):
        for view, data in file_views(path, roots):
            if any(n in data for n in needles):
                hits.append(f"{path} ({view})")
    return hits


def key_forms(key: bytes) -> list[bytes]:
    """The ways a key's bytes could sit in a file: raw, hex, base64."""
    return [key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key),
            base64.urlsafe_b64encode(key), base64.b64encode(key).rstrip(b"=")]


def error_texts(exc: BaseException) -> str:
    """An exception's message, hint and repr, with every exception chained to it."""
    parts = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen), getattr(seen, "hint", "") or ""]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def datakeys_dir(keys: Path, journal_id: str) -> Path:
    return keys / journal_id / DATAKEYS_DIR


def open_keystore(keys: Path, journal_id: str, provider: Any = None) -> KeyStore:
    pseudonym = bytes.fromhex((keys / journal_id / "pseudonym.key").read_text().strip())
    return KeyStore.open(datakeys_dir(keys, journal_id), journal_id, pseudonym, provider)


def marker_of(e: Event) -> dict[str, Any]:
    return {"$wormjournal": SHREDDED, "key_id": e.payload_key_id}


def check_reads(events: Iterable[Event], expected: dict[str, Any], shredded: set[str]) -> int:
    """Each event reads as the shredded marker when its id is in ``shredded``, else as its payload."""
    n = 0
    for e in events:
        if e.event_type == RECEIPT_TYPE:
            continue
        n += 1
        if e.event_id in shredded:
            assert e.shredded and e.payload == marker_of(e), (e.event_id, e.payload)
            assert e.payload_codec.endswith(payloads.ENCRYPTED)
        else:
            assert not e.shredded and e.payload == expected[e.event_id], (e.event_id, e.payload)
    return n


def wrapped_of(keys: Path, journal_id: str, key_id: str) -> str:
    return json.loads((datakeys_dir(keys, journal_id) / "keys" / f"{key_id}.json").read_text())["wrapped"]


# -- 1. no plaintext marker, no raw subject id, anywhere ---------------------------------------


def test_no_plaintext_or_raw_subject_on_disk_or_in_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store, keys = tmp_path / "store", tmp_path / "keys"
    marker = unique("PLAINTEXT-MARKER")
    control = unique("CONTROL-PLAINTEXT")  # unscoped: stored as given, so the search must find it
    subjects = [f"{unique('subj')}@example.org" for _ in range(3)]
    thread_marker_thread = unique("thread")
    secret_needles = [marker.encode()] + [s.encode() for s in subjects]

    def secrets_found() -> list[str]:
        return where_found(secret_needles, store, keys)

    with Journal.create(store, key_dir=keys, config=CONFIG) as j:
        jid = j.journal_id
        for i, subject in enumerate(subjects):
            j.append("llm_requested", f"run-{i}", {"prompt": f"{marker} small {i}", "who": subject},
                     subject_id=subject, ts=BASE_TS)
            # Large and compressible: json+zstd+aes256gcm.
            j.append("llm_completed", f"run-{i}", {"text": (marker + " lorem ipsum ") * 400, "i": i},
                     subject_id=subject, thread_id=f"t-{i}", ts=BASE_TS)
        j.append_batch([
            {"event_type": "tool_called", "execution_id": "run-x", "payload": {"m": marker}, "ts": BASE_TS,
             "thread_id": thread_marker_thread, "key_scope": "thread"},
            {"event_type": "tool_called", "execution_id": "run-x", "payload": {"m": marker}, "ts": BASE_TS,
             "key_scope": "execution"},
            {"event_type": "tool_called", "execution_id": "run-x", "payload": {"m": marker}, "ts": BASE_TS,
             "tenant_id": "acme", "key_scope": "tenant"},
        ])
        # Positive controls: a plaintext payload small (found raw) and large (found only decompressed).
        j.append("tool_returned", "run-x", {"c": control}, key_scope="none", ts=BASE_TS)
        j.append("tool_returned", "run-x", {"c": (control + " ") * 600}, key_scope="none", ts=BASE_TS)
        codecs = {e.payload_codec for e in j.reader().events("run-0")}
        assert codecs == {"json+aes256gcm", "json+zstd+aes256gcm"}
        pseudonyms = {e.subject_id for x in ("run-0", "run-1", "run-2") for e in j.reader().events(x)}
        assert len(pseudonyms) == 3 and all(p.startswith("psn:") for p in pseudonyms)

        # (a) before sealing: the write-ahead log and the key store are all there is.
        assert not list((store / "segments").rglob("*.parquet"))
        assert secrets_found() == []
        control_hits = where_found([control.encode()], store)
        assert any(".wal (raw)" in h for h in control_hits) and any(".wal (wal-payload)" in h for h in control_hits)
        assert where_found([p.encode() for p in pseudonyms], store)  # the pseudonym is what is stored

        # (b) after sealing: segments, index objects, manifests, checkpoints.
        j.seal()
        assert list((store / "segments").rglob("*.parquet")) and list((store / "index").rglob("*.parquet"))
        assert secrets_found() == []
        control_hits = where_found([control.encode()], store)
        assert any(".parquet (parquet:payload)" in h for h in control_hits), control_hits
        assert any("seg-" in h and "(parquet:subject_id)" in h
                   for h in where_found([p.encode() for p in pseudonyms], store))

        # Error messages name the pseudonym, never the identifier or the payload.
        stranger = f"{unique('stranger')}@example.org"
        with pytest.raises(UnknownScopeError) as unknown:
            j.shred(subject=stranger)
        assert stranger not in error_texts(unknown.value) and "psn:" in str(unknown.value)
        with pytest.raises(ValidationError) as bad_id:
            j.append("tool_called", "run-9", {"m": marker}, subject_id=subjects[0] + "/x")
        assert subjects[0] not in error_texts(bad_id.value) and marker not in error_texts(bad_id.value)
        with pytest.raises(ValidationError) as too_big:  # the event limit's refusal (1 MiB here, 256 by default)
            validate_event({"event_type": "tool_called", "execution_id": "run-9", "payload": {"m": marker * 40_000},
                            "subject_id": subjects[0]}, max_event_bytes=1 << 20)
        assert subjects[0] not in error_texts(too_big.value) and marker not in error_texts(too_big.value)

        # (c) after shredding one subject (and sealing its receipt).
        receipt = j.shred(subject=subjects[0], reason="erasure request")
        j.shred(thread=thread_marker_thread)
        j.seal()
        assert receipt.receipt["scope_ref"] in pseudonyms
        jid = j.journal_id
    assert secrets_found() == []
    assert where_found([control.encode()], store)  # the search still sees plaintext where there is some
    assert (datakeys_dir(keys, jid) / "shredded").is_dir() and list((datakeys_dir(keys, jid) / "shredded").iterdir())

    # Logs: the shred was logged (by pseudonym), the secrets never.
    records = caplog.records
    assert any("shredded subject psn:" in r.getMessage() for r in records), [r.getMessage() for r in records]
    for r in records:
        text = r.getMessage() + repr(r.args) + (r.exc_text or "")
        assert marker not in text and not any(s in text for s in subjects), text


# -- 2. every read path after a shred ----------------------------------------------------------


@dataclasses.dataclass
class People:
    alice: str
    bob: str
    carol: str


def populate(j: Journal, people: People, start: int, count: int) -> dict[str, tuple[Any, str | None]]:
    """Events over two executions and two threads; every third one alice's, bob's, or nobody's."""
    out = {}
    who = [people.alice, people.bob, None]
    for i in range(start, start + count):
        subject = who[i % 3]
        name = "alice" if subject == people.alice else "bob" if subject == people.bob else "none"
        event_id = f"ev-{i}"
        if i % 4 == 0:
            event_type, payload = "state_updated", {"new_state": {f"k{i}": f"v{i}-{name}"}}
        elif i == 1 or i == 3:
            event_type, payload = "llm_completed", {"i": i, "text": f"{name} said " + "blah " * 1200}  # zstd
        else:
            event_type, payload = "tool_called", {"i": i, "who": name, "secret": f"S-{i}"}
        fields: dict[str, Any] = {"event_id": event_id, "thread_id": "t-1" if i < 6 else "t-2",
                                  "ts": BASE_TS + dt.timedelta(seconds=i)}
        if subject is not None:
            fields["subject_id"] = subject
        j.append(event_type, f"run-{i % 2 + 1}", payload, **fields)
        out[event_id] = (payload, subject)
    return out


def test_every_read_path_after_a_shred(tmp_path: Path) -> None:
    store, keys = tmp_path / "store", tmp_path / "keys"
    people = People(*(f"{unique(n)}@example.com" for n in ("alice", "bob", "carol")))
    with Journal.create(store, key_dir=keys, config=CONFIG) as j:
        jid = j.journal_id
        history = populate(j, people, 0, 8)
        j.seal()
        history |= populate(j, people, 8, 4)  # seq 8..11 stay in the WAL
        expected = {k: v[0] for k, v in history.items()}
        alice_ids = {k for k, v in history.items() if v[1] == people.alice}
        reader_before = j.reader()
        all_before = reader_before.events("run-1") + reader_before.events("run-2")
        assert check_reads(all_before, expected, set()) == 12
        alice_keys = {e.payload_key_id for e in all_before if e.event_id in alice_ids}
        bob_keys = {e.payload_key_id for e in all_before if e.subject_id and e.event_id not in alice_ids}
        assert len(alice_keys) == 1 and len(bob_keys) == 1 and alice_keys != bob_keys
        (alice_key,) = alice_keys
        dek = j.keystore.data_key(alice_key)
        assert dek is not None and len(dek) == 32
        wrapped = wrapped_of(keys, jid, alice_key)
        assert where_found([wrapped.encode()], keys)  # positive control: the wrapped copy is there now
        plain_none = {k for k, v in history.items() if v[1] is None}
        assert all(e.payload_key_id is None and e.payload_codec in ("json", "json+zstd")
                   for e in all_before if e.event_id in plain_none)

        receipt = j.shred(subject=people.alice, reason="art. 17 request")
        assert not receipt.repeated and receipt.receipt["key_ids"] == [alice_key]
        assert receipt.receipt["events_affected"] == len(alice_ids) == 4  # sealed and unsealed alike

        # Every read path of the live writer, sealed and unsealed events alike.
        for reader in (j.reader(), reader_before):  # a reader made before the shred sees it too
            events = reader.events("run-1") + reader.events("run-2")
            assert check_reads(events, expected, alice_ids) == 12
            assert any(not e.sealed and e.event_id in alice_ids for e in events)
            assert any(e.sealed and e.event_id in alice_ids for e in events)
            replayed = list(reader.replay("run-1")) + list(reader.replay("run-2"))  # does not stop on a marker
            assert check_reads(replayed, expected, alice_ids) == 12
            for event_id in expected:
                got = reader.get_event(event_id)
                assert got is not None
                check_reads([got], expected, alice_ids)
            threads = reader.thread_events("t-1") + reader.thread_events("t-2")
            assert check_reads(threads, expected, alice_ids) == 12
            found = reader.find(event_type="tool_called")
            assert check_reads(found, expected, alice_ids) == sum(1 for p in expected.values() if "secret" in p)
            assert check_reads(reader.events_after("run-1", 3), expected, alice_ids) == 4
            for x in ("run-1", "run-2"):
                states = [reader.state_at(x), reader.resume_point(x).state]
                wanted = {k: v for eid, (p, subj) in history.items() if subj != people.alice and "new_state" in p
                          and int(eid.split("-")[1]) % 2 + 1 == int(x[-1]) for k, v in p["new_state"].items()}
                for state in states:
                    data = {k: v for k, v in state.items() if k not in ("$wormjournal", "key_id")}
                    assert data == wanted
                    assert not any(str(v).endswith("-alice") for v in state.values())
        assert j.keystore.data_key(alice_key) is None and j.keystore.is_shredded(alice_key)
        j.seal()
        report = j.verify()
    assert report.ok, report.to_text()
    assert report.encrypted_events == 8 and report.shredded_events == 4
    [listed] = report.receipts
    assert listed["seq"] == receipt.seq and listed["key_ids"] == [alice_key] and listed["reason"] == "art. 17 request"
    assert "1 erasure receipt(s)" in report.to_text() and "4 shredded" in report.to_text()

    # The destroyed key is gone from every file: raw, hex, base64, and its wrapped copy.
    assert where_found(key_forms(dek) + [wrapped.encode()], store, keys) == []
    assert not (datakeys_dir(keys, jid) / "keys" / f"{alice_key}.json").exists()
    assert (datakeys_dir(keys, jid) / "shredded" / f"{alice_key}.json").exists()

    # A fresh process: a reopened writer, and a reader with only the key store.
    with Journal.open(store, key_dir=keys, config=CONFIG) as j:
        events = j.reader().events("run-1") + j.reader().events("run-2")
        assert check_reads(events, expected, alice_ids) == 12
    reader = Reader(store, keystore=open_keystore(keys, jid))
    assert check_reads(list(reader.replay("run-1")) + list(reader.replay("run-2")), expected, alice_ids) == 12
    [receipt_event] = reader.events(RECEIPT_EXECUTION)
    assert receipt_event.payload["receipt"] == receipt.receipt and receipt_event.payload_codec == "json"


def test_a_shred_reaches_readers_and_writers_with_their_own_key_store(tmp_path: Path) -> None:
    """Another stream's writer and a long-lived reader (each with its own KeyStore, as in another
    process) have alice's key cached: after the shred they must not read with it, nor encrypt with it."""
    store, keys = tmp_path / "store", tmp_path / "keys"
    alice = f"{unique('alice')}@example.com"
    with Journal.create(store, key_dir=keys, config=CONFIG) as a, \
            Journal.open(store, key_dir=keys, stream="other", config=CONFIG) as b:
        jid = a.journal_id
        a.append("tool_called", "run-1", {"x": "a-before"}, subject_id=alice)
        b_before = b.append("tool_called", "run-1", {"x": "b-before"}, subject_id=alice)
        a.seal()
        reader = Reader(store, keystore=open_keystore(keys, jid))
        assert reader.events("run-1")[0].payload == {"x": "a-before"}  # its key is cached now
        assert b.reader().events("run-1")[0].payload == {"x": "b-before"}
        [old_key] = a.shred(subject=alice).receipt["key_ids"]

        assert reader.events("run-1")[0].shredded
        assert b.reader().events("run-1")[0].shredded
        b_after = b.append("tool_called", "run-1", {"x": "b-after"}, subject_id=alice)
        by_seq = {e.seq: e for e in b.reader().events("run-1")}
        assert by_seq[b_before].shredded and by_seq[b_after].payload == {"x": "b-after"}
        assert by_seq[b_after].payload_key_id != old_key  # a new key, not the destroyed one
        b.seal()
    with Journal.open(store, key_dir=keys, stream="other", config=CONFIG) as b:
        by_seq = {e.seq: e for e in b.reader().events("run-1")}
        assert by_seq[b_before].shredded and by_seq[b_after].payload == {"x": "b-after"}


@pytest.mark.xfail(strict=True, reason="writer.shred counts the unsealed events of its own stream's WAL only "
                   "(Journal._unsealed), so events_affected misses another stream's unsealed events")
def test_events_affected_counts_every_streams_unsealed_events(tmp_path: Path) -> None:
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=CONFIG) as a, \
            Journal.open(store, key_dir=keys, stream="other", config=CONFIG) as b:
        a.append("tool_called", "run-1", {"x": 1}, subject_id="alice")
        b.append("tool_called", "run-1", {"x": 2}, subject_id="alice")  # the same key, in another stream's WAL
        r = a.shred(subject="alice")
        a.seal()
        b.seal()
        assert a.verify().shredded_events == 2
        assert r.receipt["events_affected"] == 2


# -- 3. receipts -----------------------------------------------------------------------------------


def test_receipt_contents_and_tampering(tmp_path: Path) -> None:
    store, keys = tmp_path / "store", tmp_path / "keys"
    alice = f"{unique('alice')}@example.com"
    with Journal.create(store, key_dir=keys, config=CONFIG) as j:
        for i in range(5):
            j.append("tool_called", "run-1", {"i": i}, subject_id=alice)
        j.append("tool_called", "run-1", {"i": 99}, subject_id="someone-else")
        j.seal()
        j.append("tool_called", "run-1", {"i": 5}, subject_id=alice)  # unsealed, still counted
        events = j.reader().events("run-1")
        pseudonym = events[0].subject_id
        key_ids = sorted({e.payload_key_id for e in events if e.subject_id == pseudonym})
        before = dt.datetime.now(dt.UTC)
        result = j.shred(subject=alice, reason="ticket 42")
        after = dt.datetime.now(dt.UTC)
        receipt = result.receipt
        assert set(receipt) == {"scope", "scope_ref", "key_ids", "destroyed_at", "events_affected", "provider",
                                "deletion_references", "reason"}
        assert receipt["scope"] == "subject" and receipt["scope_ref"] == pseudonym and alice not in json.dumps(receipt)
        assert receipt["key_ids"] == key_ids and len(key_ids) == 1
        destroyed = dt.datetime.fromisoformat(receipt["destroyed_at"].replace("Z", "+00:00"))
        assert receipt["destroyed_at"].endswith("Z") and before - dt.timedelta(seconds=1) <= destroyed <= after
        assert receipt["events_affected"] == 6 and receipt["provider"] == "local"
        assert receipt["deletion_references"] == [LOCAL_REFERENCE] and receipt["reason"] == "ticket 42"
        # The tombstone names the receipt; the key store never holds the key again.
        infos = {k.key_id: k for k in j.keystore.keys()}
        tomb = infos[key_ids[0]]
        assert tomb.shredded == receipt["destroyed_at"] and tomb.receipt_seq == result.seq
        assert tomb.deletion_reference == LOCAL_REFERENCE and tomb.scope_ref == pseudonym

        [event] = j.reader().events(RECEIPT_EXECUTION)
        assert (event.seq, event.event_type, event.payload_key_id, event.subject_id) == (
            result.seq, RECEIPT_TYPE, None, None)
        payload = event.payload
        vk = j.verify_key
        assert check_receipt(payload, [vk]) == receipt
        note = payload["note"]
        assert note.startswith("wormjournal/erasure-receipt/v1\n")

        def receipt_edit(**changes: Any) -> dict[str, Any]:
            return {"receipt": dict(copy.deepcopy(receipt), **changes), "note": note}

        other_key = SigningKey.generate(f"wormjournal/{j.journal_id}")
        body, sig_line = note.rstrip("\n").rsplit("\n", 1)
        sig_prefix, blob = sig_line.rsplit(" ", 1)
        raw_sig = bytearray(base64.b64decode(blob))
        raw_sig[-1] ^= 1
        bad_sig_note = f"{body}\n{sig_prefix} {base64.b64encode(bytes(raw_sig)).decode()}\n"
        tampered = {
            "reason": receipt_edit(reason="nothing to see"),
            "key ids added": receipt_edit(key_ids=key_ids + ["0" * 32]),
            "key ids emptied": receipt_edit(key_ids=[]),
            "key id replaced": receipt_edit(key_ids=["f" * 32]),
            "key ids not a list": receipt_edit(key_ids=key_ids[0]),
            "events affected": receipt_edit(events_affected=5),
            "scope ref": receipt_edit(scope_ref="psn:" + "0" * 32),
            "scope": receipt_edit(scope="thread"),
            "destroyed at": receipt_edit(destroyed_at="2020-01-01T00:00:00.000000Z"),
            "deletion reference": receipt_edit(deletion_references=["kept"]),
            "extra field": receipt_edit(extra=1),
            "missing field": {"receipt": {k: v for k, v in receipt.items() if k != "reason"}, "note": note},
            "note text": {"receipt": receipt, "note": note.replace('"events_affected":6', '"events_affected":7')},
            "note signature": {"receipt": receipt, "note": bad_sig_note},
            "note by another key": receipt_payload(receipt, other_key),
            "note of another receipt": {"receipt": receipt,
                                        "note": receipt_payload(dict(receipt, reason="x"), j._key)["note"]},  # noqa: SLF001
            "extra payload key": dict(payload, extra="x"),
            "no note": {"receipt": receipt},
            "not an object": [payload],
        }
        assert tampered["note text"]["note"] != note
        for name, bad in tampered.items():
            with pytest.raises(IntegrityError):
                check_receipt(bad, [vk])
                pytest.fail(f"tampered receipt ({name}) was accepted")
        with pytest.raises(IntegrityError):
            check_receipt(payload, [other_key.verify_key])  # not the journal's key
        assert check_receipt(payload, [other_key.verify_key, vk]) == receipt  # any trusted key that signed


# -- 4. scopes, idempotency, unknown scopes, keys after a shred --------------------------------


def test_thread_execution_and_tenant_scopes_and_idempotency(tmp_path: Path) -> None:
    store, keys = tmp_path / "store", tmp_path / "keys"
    alice = f"{unique('alice')}@example.com"
    with Journal.create(store, key_dir=keys, config=CONFIG) as j:
        ids = {}
        ids["thread"] = j.append("tool_called", "run-a", {"s": "thread"}, thread_id="T-x", subject_id=alice,
                                 key_scope="thread")
        ids["thread-other"] = j.append("tool_called", "run-a", {"s": "thread-other"}, thread_id="T-y",
                                       key_scope="thread")
        ids["execution"] = j.append("tool_called", "run-e", {"s": "execution"}, key_scope="execution")
        ids["execution-2"] = j.append("tool_called", "run-e", {"s": "execution-2"}, thread_id="T-x",
                                      key_scope="execution")
        ids["tenant"] = j.append("tool_called", "run-t", {"s": "tenant"}, tenant_id="acme", key_scope="tenant")
        ids["tenant-other"] = j.append("tool_called", "run-t", {"s": "tenant-other"}, tenant_id="umbrella",
                                       key_scope="tenant")
        ids["subject"] = j.append("tool_called", "run-a", {"s": "subject"}, thread_id="T-x", subject_id=alice)
        ids["plain"] = j.append("tool_called", "run-a", {"s": "plain"}, thread_id="T-x", key_scope="none")
        j.seal()

        def payload_by_seq() -> dict[int, Any]:
            r = j.reader()
            return {e.seq: e.payload for x in ("run-a", "run-e", "run-t") for e in r.events(x)}

        before = payload_by_seq()
        key_of = {e.seq: e.payload_key_id for x in ("run-a", "run-e", "run-t") for e in j.reader().events(x)}
        assert key_of[ids["plain"]] is None
        scoped = [s for s in ids.values() if s != ids["plain"]]
        assert len({key_of[s] for s in scoped}) == len(scoped) - 1  # the two run-e events share one key
        assert key_of[ids["execution"]] == key_of[ids["execution-2"]]

        receipts = {}
        gone: set[int] = set()
        for scope, value, seqs in (("thread", "T-x", {ids["thread"]}),
                                   ("execution", "run-e", {ids["execution"], ids["execution-2"]}),
                                   ("tenant", "acme", {ids["tenant"]})):
            r = j.shred(**{scope: value})
            assert not r.repeated and r.receipt["scope"] == scope and r.receipt["scope_ref"] == value
            assert r.receipt["key_ids"] == [key_of[min(seqs)]] and r.receipt["events_affected"] == len(seqs)
            receipts[scope] = r
            gone |= seqs
            now = payload_by_seq()
            for seq, value_now in now.items():
                if seq in gone:
                    assert value_now == {"$wormjournal": SHREDDED, "key_id": key_of[seq]}
                else:
                    assert value_now == before[seq], seq  # other scopes (alice's subject key too) untouched

        # Idempotent: the same receipt, nothing appended, nothing destroyed.
        next_seq = j.next_seq
        for scope, value in (("thread", "T-x"), ("execution", "run-e"), ("tenant", "acme")):
            again = j.shred(**{scope: value}, reason="again")
            assert again.repeated and again.seq == receipts[scope].seq
            assert again.receipt == receipts[scope].receipt
        assert j.next_seq == next_seq
        assert payload_by_seq() == now
        j.seal()
        report = j.verify()
        assert report.ok and sorted(r["seq"] for r in report.receipts) == sorted(r.seq for r in receipts.values())
        assert report.shredded_events == 4 and report.encrypted_events == 7

    # The journal-wide rule: JournalConfig(key_scope="tenant") encrypts by tenant without key_scope=.
    with Journal.create(tmp_path / "s2", key_dir=tmp_path / "k2",
                        config=dataclasses.replace(CONFIG, key_scope="tenant")) as j2:
        a = j2.append("tool_called", "run-1", {"v": 1}, tenant_id="acme", subject_id=alice)
        b = j2.append("tool_called", "run-1", {"v": 2}, subject_id=alice)  # no tenant: stays plaintext
        r = j2.shred(tenant="acme")
        by_seq = {e.seq: e for e in j2.reader().events("run-1")}
        assert by_seq[a].shredded and by_seq[b].payload == {"v": 2} and by_seq[b].payload_key_id is None
        assert r.receipt["events_affected"] == 1
        with pytest.raises(UnknownScopeError):
            j2.shred(subject=alice)  # alice's payloads were never encrypted under a subject key


def test_unknown_scopes_and_a_new_key_after_a_shred(tmp_path: Path) -> None:
    store, keys = tmp_path / "store", tmp_path / "keys"
    alice, ghost = f"{unique('alice')}@example.com", f"{unique('ghost')}@example.com"
    with Journal.create(store, key_dir=keys, config=CONFIG) as j:
        jid = j.journal_id
        old = j.append("tool_called", "run-1", {"v": "old"}, subject_id=alice)
        plain = j.append("tool_called", "run-1", {"v": "plain"}, subject_id=ghost, key_scope="none")
        for kwargs in ({"subject": ghost}, {"thread": "no-such-thread"}, {"execution": "run-1"}, {"tenant": "t"}):
            with pytest.raises(UnknownScopeError) as info:
                j.shred(**kwargs)
            assert info.value.hint and ghost not in error_texts(info.value)
        with pytest.raises(ValidationError):
            j.shred()
        assert j.next_seq == plain + 1  # nothing appended by the refusals

        first = j.shred(subject=alice)
        new = j.append("tool_called", "run-1", {"v": "new"}, subject_id=alice)
        by_seq = {e.seq: e for e in j.reader().events("run-1")}
        old_key, new_key = by_seq[old].payload_key_id, by_seq[new].payload_key_id
        assert new_key not in (None, old_key)
        assert by_seq[old].shredded and by_seq[new].payload == {"v": "new"} and by_seq[plain].payload == {"v": "plain"}
        assert j.keystore.data_key(old_key) is None and j.keystore.data_key(new_key) is not None
        j.seal()
    # After a restart: still the new key for alice, the old one stays destroyed.
    with Journal.open(store, key_dir=keys, config=CONFIG) as j:
        newer = j.append("tool_called", "run-1", {"v": "newer"}, subject_id=alice)
        by_seq = {e.seq: e for e in j.reader().events("run-1")}
        assert by_seq[newer].payload_key_id == new_key and by_seq[newer].payload == {"v": "newer"}
        assert by_seq[old].shredded and by_seq[new].payload == {"v": "new"}
        # Shredding alice again destroys the new key only, and reports it in a new receipt.
        second = j.shred(subject=alice)
        assert not second.repeated and second.seq != first.seq
        assert second.receipt["key_ids"] == [new_key] and second.receipt["events_affected"] == 2
        third = j.shred(subject=alice)
        assert third.repeated and third.seq in (first.seq, second.seq)  # one of the earlier receipts, nothing new
        assert j.next_seq == second.seq + 1
        by_seq = {e.seq: e for e in j.reader().events("run-1")}
        assert by_seq[old].shredded and by_seq[new].shredded and by_seq[newer].shredded
        j.seal()
        report = j.verify()
    assert report.ok and report.shredded_events == 3 and len(report.receipts) == 2
    assert {k.key_id: k.receipt_seq for k in open_keystore(keys, jid).keys()} == {old_key: first.seq,
                                                                                   new_key: second.seq}


def test_a_shred_cut_short_before_its_receipt_is_finished_by_the_next(tmp_path: Path) -> None:
    """Keys destroyed, then the process died before the receipt: the next shred appends it."""
    store, keys = tmp_path / "store", tmp_path / "keys"
    alice = f"{unique('alice')}@example.com"
    with Journal.create(store, key_dir=keys, config=CONFIG) as j:
        for i in range(3):
            j.append("tool_called", "run-1", {"i": i}, subject_id=alice)
        j.seal()
        destroyed = j.keystore.destroy("subject", alice)  # the first half of shred(), as a crash leaves it
        assert not destroyed.already and [k.receipt_seq for k in destroyed.keys] == [None]
        next_seq = j.next_seq
    with Journal.open(store, key_dir=keys, config=CONFIG) as j:
        assert all(e.shredded for e in j.reader().events("run-1"))
        r = j.shred(subject=alice)
        assert not r.repeated and r.seq == next_seq and r.receipt["events_affected"] == 3
        assert r.receipt["key_ids"] == [destroyed.keys[0].key_id]
        assert j.shred(subject=alice).repeated


# -- 5. associated data binds the ciphertext to its event ------------------------------------------


def test_ciphertext_is_bound_to_journal_stream_seq_key_and_codec(tmp_path: Path) -> None:
    key = AESGCM.generate_key(bit_length=256)
    key_id, journal_id = secrets.token_hex(16), str(uuid.uuid4())
    codec = "json+aes256gcm"
    plain = b'{"secret":"PLAINTEXT"}'
    aad = payloads.payload_aad(journal_id, "main", 7, key_id, codec)
    data = payloads.encrypt(AESGCM(key), plain, aad)
    assert payloads.decrypt(key, data, aad) == plain and plain not in data
    assert payloads.encrypt(AESGCM(key), plain, aad) != data  # a fresh nonce each time
    moved = {
        "seq": payloads.payload_aad(journal_id, "main", 8, key_id, codec),
        "stream": payloads.payload_aad(journal_id, "other", 7, key_id, codec),
        "journal": payloads.payload_aad(str(uuid.uuid4()), "main", 7, key_id, codec),
        "key id": payloads.payload_aad(journal_id, "main", 7, secrets.token_hex(16), codec),
        "codec": payloads.payload_aad(journal_id, "main", 7, key_id, "json+zstd+aes256gcm"),
    }
    for name, other in moved.items():
        assert other != aad
        with pytest.raises(IntegrityError):
            payloads.decrypt(key, data, other)
            pytest.fail(f"ciphertext moved to another {name} decrypted")
    for i in (0, 12, len(data) // 2, len(data) - 1):  # nonce, ciphertext, tag
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        with pytest.raises(IntegrityError) as info:
            payloads.decrypt(key, bytes(flipped), aad)
        assert "PLAINTEXT" not in str(info.value) and key.hex() not in error_texts(info.value)
    for broken in (data[:-1], data[:10], b""):
        with pytest.raises(IntegrityError):
            payloads.decrypt(key, broken, aad)
    with pytest.raises(IntegrityError):
        payloads.decrypt(AESGCM.generate_key(bit_length=256), data, aad)

    # The same on a journal's own stored event: read_payload with any other binding refuses it.
    with Journal.create(tmp_path / "store", key_dir=tmp_path / "keys", config=CONFIG) as j:
        s0 = j.append("tool_called", "run-1", {"secret": "first"}, subject_id="alice")
        s1 = j.append("tool_called", "run-1", {"secret": "second"}, subject_id="alice")
        wal = [e for p in walmod.list_wal_files(tmp_path / "store" / ".wal" / "stream=main")
               for e in walmod.read_wal(p, wal_mac(tmp_path / "store", tmp_path / "keys")).events]
        e0, e1 = (next(e for e in wal if e.seq == s) for s in (s0, s1))
        kw = {"journal_id": j.journal_id, "stream": "main", "data_key": j.keystore.data_key}
        assert payloads.read_payload(e0.payload_codec, e0.payload, e0.payload_key_id, seq=s0, **kw) == {
            "secret": "first"}
        with pytest.raises(IntegrityError):  # event 0's ciphertext in event 1's place
            payloads.read_payload(e1.payload_codec, e0.payload, e1.payload_key_id, seq=s1, **kw)
        with pytest.raises(IntegrityError):
            payloads.read_payload(e0.payload_codec, e0.payload, e0.payload_key_id, seq=s0,
                                  **dict(kw, stream="other"))
        with pytest.raises(IntegrityError):
            payloads.read_payload(e0.payload_codec, e0.payload, e0.payload_key_id, seq=s0,
                                  **dict(kw, journal_id=str(uuid.uuid4())))
        with pytest.raises(IntegrityError):
            payloads.read_payload("json+aes256gcm", e0.payload, None, seq=s0, **kw)  # a codec without its key id


# -- 6. typed errors of the key store --------------------------------------------------------------


@dataclasses.dataclass
class KeyedJournal:
    store: Path
    keys: Path
    journal_id: str
    key_ids: list[str]
    secrets: list[str]  # every key's bytes in the forms a message could show them

    @property
    def datakeys(self) -> Path:
        return datakeys_dir(self.keys, self.journal_id)

    @property
    def master(self) -> Path:
        return self.keys / self.journal_id / MASTER_FILE

    def assert_no_secret(self, exc: BaseException) -> None:
        text = error_texts(exc)
        leaked = [s for s in self.secrets if s in text]
        assert not leaked, f"{type(exc).__name__} shows key material: {text}"


def keyed_journal(store: Path, keys: Path, subjects: tuple[str, ...] = ("alice", "bob")) -> KeyedJournal:
    with Journal.create(store, key_dir=keys, config=CONFIG) as j:
        for i, s in enumerate(subjects):
            j.append("tool_called", "run-1", {"i": i, "secret": f"S-{i}"}, subject_id=s)
        j.seal()
        key_ids = sorted({e.payload_key_id for e in j.reader().events("run-1")})
        deks = [j.keystore.data_key(k) for k in key_ids]
        jid = j.journal_id
    master = bytes.fromhex((keys / jid / MASTER_FILE).read_text().strip())
    pseudonym = bytes.fromhex((keys / jid / "pseudonym.key").read_text().strip())
    forms = [f.decode("latin-1") for k in [master, pseudonym, *deks] for f in key_forms(k) if len(f) > 16]
    forms += [wrapped_of(keys, jid, k) for k in key_ids]
    return KeyedJournal(store, keys, jid, key_ids, forms)


def test_typed_key_store_errors_never_show_key_bytes(tmp_path: Path) -> None:
    kj = keyed_journal(tmp_path / "store", tmp_path / "keys")

    def refused(cls: type[BaseException], exact: bool = True) -> Any:
        with pytest.raises(cls) as info:
            Journal.open(kj.store, key_dir=kj.keys, config=CONFIG).close()
        if exact:
            assert type(info.value) is cls, repr(info.value)
        kj.assert_no_secret(info.value)
        return info.value

    # A wrong master key (another key of the right shape).
    original = kj.master.read_bytes()
    other = secrets.token_bytes(32)
    kj.master.write_text(other.hex() + "\n")
    kj.secrets += [other.hex()]
    refused(WrongKekError)
    with pytest.raises(WrongKekError) as info:
        pseudonym = bytes.fromhex((kj.keys / kj.journal_id / "pseudonym.key").read_text().strip())
        KeyStore.open(kj.datakeys, kj.journal_id, pseudonym, LocalKek(kj.master, other))
    kj.assert_no_secret(info.value)
    # A master key file that is missing, not hex, or not 32 bytes.
    kj.master.unlink()
    assert "master.key" in str(refused(KeyStoreMissingError))
    kj.master.write_text("not hex at all\n")
    refused(KeyStoreError)
    kj.master.write_text(secrets.token_bytes(16).hex() + "\n")
    refused(KeyStoreError)
    kj.master.write_bytes(original)
    Journal.open(kj.store, key_dir=kj.keys, config=CONFIG).close()  # restored: opens again

    # The key store directory missing.
    moved = tmp_path / "moved-datakeys"
    kj.datakeys.rename(moved)
    refused(KeyStoreMissingError)
    blind = Reader(kj.store)  # an auditor without the key store reads markers, not errors
    assert [e.payload["$wormjournal"] for e in blind.events("run-1")] == ["encrypted", "encrypted"]
    moved.rename(kj.datakeys)

    # keystore.json damaged, of another journal, naming an unknown provider; a subdirectory missing.
    meta_path = kj.datakeys / STORE_FILE
    meta = meta_path.read_bytes()
    for damaged in (b"\x00\xff{not json", b'{"format": 1, "journal": "' + str(uuid.uuid4()).encode() + b'"}',
                    meta.replace(b'"local"', b'"vault"'), meta.replace(b'"format": 1', b'"format": 2')):
        assert damaged != meta
        meta_path.write_bytes(damaged)
        refused(KeyStoreError)
    meta_path.write_bytes(meta)
    (kj.datakeys / "shredded").rename(tmp_path / "shredded-away")
    assert "shredded/" in str(refused(KeyStoreError))
    (tmp_path / "shredded-away").rename(kj.datakeys / "shredded")

    # A wrapped key file altered: opening works (keys unwrap lazily), reading and appending refuse.
    key_file = kj.datakeys / "keys" / f"{kj.key_ids[0]}.json"
    good = key_file.read_bytes()
    record = json.loads(good)
    wrapped = bytearray(base64.b64decode(record["wrapped"]))
    wrapped[20] ^= 0x40
    alterations = {
        "wrapped bytes": dict(record, wrapped=base64.b64encode(bytes(wrapped)).decode()),
        "wrapped not base64": dict(record, wrapped="!!" + record["wrapped"]),
        "another key id": dict(record, key_id="0" * 32),
        "wrapped for another key id": None,  # the other key's wrapped bytes under this id
    }
    other_record = json.loads((kj.datakeys / "keys" / f"{kj.key_ids[1]}.json").read_text())
    alterations["wrapped for another key id"] = dict(record, wrapped=other_record["wrapped"])
    for name, altered in [*alterations.items(), ("not json", None)]:
        key_file.write_bytes(b"{\x00 garbage" if altered is None else json.dumps(altered).encode())
        with Journal.open(kj.store, key_dir=kj.keys, config=CONFIG) as j:
            with pytest.raises(CorruptKeyError) as info:
                j.reader().events("run-1")
            kj.assert_no_secret(info.value)
            [owner] = [e.subject_id for e in Reader(kj.store).events("run-1") if e.payload_key_id == kj.key_ids[0]]
            subject = next(s for s in ("alice", "bob") if j.keystore.scope_ref("subject", s) == owner)
            next_seq = j.next_seq
            with pytest.raises(CorruptKeyError):  # no new key is made behind a damaged one
                j.append("tool_called", "run-1", {"more": 1}, subject_id=subject)
            assert j.next_seq == next_seq, name
    key_file.write_bytes(good)
    with Journal.open(kj.store, key_dir=kj.keys, config=CONFIG) as j:
        assert [e.payload["secret"] for e in j.reader().events("run-1")] == ["S-0", "S-1"]


def test_another_journals_key_store_is_refused(tmp_path: Path) -> None:
    a = keyed_journal(tmp_path / "a", tmp_path / "ka")
    b = keyed_journal(tmp_path / "b", tmp_path / "kb")
    # B's key store read with A's journal: B never held A's keys.
    reader = Reader(a.store, keystore=open_keystore(b.keys, b.journal_id))
    with pytest.raises(UnknownKeyError) as info:
        reader.events("run-1")
    a.assert_no_secret(info.value)
    b.assert_no_secret(info.value)
    assert "is this the journal's key store?" in str(info.value)
    # B's key store (and master key) in A's place.
    shutil.rmtree(a.datakeys)
    shutil.copytree(b.datakeys, a.datakeys)
    a.master.write_bytes(b.master.read_bytes())
    with pytest.raises(KeyStoreError) as info2:
        Journal.open(a.store, key_dir=a.keys, config=CONFIG)
    assert type(info2.value) is KeyStoreError and a.journal_id in str(info2.value)
    a.assert_no_secret(info2.value)
    b.assert_no_secret(info2.value)
    # With B's keystore.json made to claim A's journal, the keys themselves still do not fit A's events.
    meta = json.loads((a.datakeys / STORE_FILE).read_text())
    (a.datakeys / STORE_FILE).write_text(json.dumps(dict(meta, journal=a.journal_id)))
    with Journal.open(a.store, key_dir=a.keys, config=CONFIG) as j:
        with pytest.raises(UnknownKeyError):
            j.reader().events("run-1")


# -- 7. crash safety of new keys -------------------------------------------------------------------

CHILD = r"""
import datetime as dt, os, signal, sys
from wormjournal import Journal, JournalConfig
store, keys, run, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg = JournalConfig(seal_max_age_seconds=None, seal_max_events=7, row_group_rows=4)
j = Journal.open(store, key_dir=keys, config=cfg)
os.write(1, b"READY\n")
i = 0
while limit < 0 or i < limit:
    events = []
    for k in range(1 + i % 3):
        ev = {"event_id": f"{run}-{i}-{k}", "event_type": "tool_called", "execution_id": f"x-{i % 2}",
              "payload": {"secret": f"S-{run}-{i}-{k}", "pad": "p" * (5000 if k == 1 else 10)},
              "ts": dt.datetime(2025, 3, 14, 9, tzinfo=dt.UTC) + dt.timedelta(milliseconds=i)}
        if k == 2:
            ev.update(thread_id=f"thr-{run}-{i}", key_scope="thread")  # a new thread key
        else:
            ev["subject_id"] = f"person-{run}-{i}-{k}"  # a new subject key
        events.append(ev)
    seqs = j.append_batch(events)
    os.write(1, "".join(f"ACK {s} {e['event_id']}\n" for s, e in zip(seqs, events)).encode())
    i += 1
    if i == limit:
        os.kill(os.getpid(), signal.SIGKILL)  # right after the append returned
"""


def run_child(store: Path, keys: Path, run: str, limit: int, *, kill_after_acks: int | None = None) -> list[str]:
    """The event ids a killed child acknowledged."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(store), str(keys), run, str(limit)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stdout is not None
    out = b""
    try:
        if kill_after_acks is not None:
            deadline = time.monotonic() + 60
            while out.count(b"ACK ") < kill_after_acks and time.monotonic() < deadline:
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                out += chunk
            proc.send_signal(signal.SIGKILL)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out += rest
    assert proc.returncode == -signal.SIGKILL, err.decode()
    lines = out.decode().split("\n")[:-1]  # a line cut short by the kill was not acknowledged
    assert lines[0] == "READY"
    return [line.split()[2] for line in lines if line.startswith("ACK ")]


def test_keys_of_acknowledged_events_survive_sigkill(tmp_path: Path) -> None:
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=CONFIG) as j:
        jid = j.journal_id
    acked = run_child(store, keys, "a", 6)  # dies by its own SIGKILL right after its 6th append returned
    assert len(acked) == sum(1 + i % 3 for i in range(6))
    acked += run_child(store, keys, "b", -1, kill_after_acks=25)  # killed from outside, mid-stream
    assert len(acked) >= 31

    with Journal.open(store, key_dir=keys, config=CONFIG) as j:
        reader = j.reader()
        for event_id in acked:
            e = reader.get_event(event_id)
            assert e is not None, event_id
            assert e.payload_key_id is not None and e.payload_codec.endswith(payloads.ENCRYPTED)
            assert e.payload["secret"] == f"S-{event_id}", event_id
        live = [k for k in j.keystore.keys() if k.shredded is None]
        assert len({reader.get_event(x).payload_key_id for x in acked}) == len(acked)  # a key per event here
        assert len(live) >= len(acked)  # at most some unused keys of an append that never returned
        # And they can still be shredded.
        r = j.shred(subject="person-a-0-0")
        assert r.receipt["events_affected"] == 1 and reader.get_event("a-0-0").shredded
        j.seal()
        assert j.verify().ok
    assert where_found([f"S-{x}".encode() for x in acked], store, keys) == []
    assert open_keystore(keys, jid).is_shredded(r.receipt["key_ids"][0])


# -- 8. AWS KMS through moto --------------------------------------------------------------------------


@pytest.fixture
def kms(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A KMS client on the moto server (which runs in this process).

    AWS's ScheduleKeyDeletion takes a key id or a key ARN; moto 5's backend
    looks the ARN up as if it were an id (KeyError, HTTP 500). Resolve it first, as AWS does.
    """
    from moto.kms.models import KmsBackend

    for name in ("schedule_key_deletion",):
        original = getattr(KmsBackend, name)
        monkeypatch.setattr(KmsBackend, name,
                            lambda self, key_id, *args, _o=original: _o(self, self.any_id_to_key_id(key_id), *args))
    return kms_client(moto_server)


def kms_client(endpoint: str) -> Any:
    return boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def test_aws_kms_per_scope_keys_are_scheduled_for_deletion(tmp_path: Path, kms: Any, moto_server: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store, keys = tmp_path / "store", tmp_path / "keys"
    alice, bob = f"{unique('alice')}@example.com", f"{unique('bob')}@example.com"
    with Journal.create(store, key_dir=keys, config=CONFIG, kek=AwsKmsKek(client=kms, pending_days=7)) as j:
        jid = j.journal_id
        a = j.append("tool_called", "run-1", {"who": "alice"}, subject_id=alice)
        b = j.append("tool_called", "run-1", {"who": "bob"}, subject_id=bob)
        j.seal()
        by_seq = {e.seq: e for e in j.reader().events("run-1")}
        records = {e.payload_key_id: json.loads((datakeys_dir(keys, jid) / "keys" / f"{e.payload_key_id}.json")
                                                .read_text()) for e in by_seq.values()}
        arn = {seq: records[e.payload_key_id]["kms_key"] for seq, e in by_seq.items()}
        assert arn[a] != arn[b] and all(r["provider"] == "aws-kms" for r in records.values())
        assert all(kms.describe_key(KeyId=x)["KeyMetadata"]["KeyState"] == "Enabled" for x in arn.values())
        assert alice not in json.dumps([kms.describe_key(KeyId=x)["KeyMetadata"] for x in arn.values()], default=str)

        r = j.shred(subject=alice)
        assert r.receipt["provider"] == "aws-kms"
        [reference] = r.receipt["deletion_references"]
        assert arn[a] in reference and "scheduled" in reference
        assert kms.describe_key(KeyId=arn[a])["KeyMetadata"]["KeyState"] == "PendingDeletion"
        assert kms.describe_key(KeyId=arn[b])["KeyMetadata"]["KeyState"] == "Enabled"
        by_seq = {e.seq: e for e in j.reader().events("run-1")}
        assert by_seq[a].shredded and by_seq[b].payload == {"who": "bob"}
        j.seal()
        assert j.verify().ok
    assert not (keys / jid / MASTER_FILE).exists()  # no local master key with KMS

    with Journal.open(store, key_dir=keys, config=CONFIG, kek=AwsKmsKek(client=kms)) as j:
        by_seq = {e.seq: e for e in j.reader().events("run-1")}
        assert by_seq[a].shredded and by_seq[b].payload == {"who": "bob"}
        c = j.append("tool_called", "run-1", {"who": "alice again"}, subject_id=alice)
        assert {e.seq: e for e in j.reader().events("run-1")}[c].payload == {"who": "alice again"}
    # Without a kek: the provider comes from keystore.json's settings (the endpoint from the environment).
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", moto_server)
    with Journal.open(store, key_dir=keys, config=CONFIG) as j:
        assert isinstance(j.keystore.provider, AwsKmsKek)
        assert {e.seq: e for e in j.reader().events("run-1")}[c].payload == {"who": "alice again"}
    # The local provider cannot open a KMS key store.
    master = keys / jid / MASTER_FILE
    master.write_text(secrets.token_bytes(32).hex())
    with pytest.raises(WrongKekError):
        Journal.open(store, key_dir=keys, config=CONFIG, kek=LocalKek.load(master))
    master.unlink()
    with pytest.raises(ValidationError):
        AwsKmsKek(client=kms, pending_days=3)  # KMS waits 7 to 30 days before deleting a key


def test_aws_kms_one_shared_key(tmp_path: Path, kms: Any) -> None:
    key_arn = kms.create_key(Description="wormjournal test shared key")["KeyMetadata"]["Arn"]
    keys_before = {k["KeyArn"] for k in kms.list_keys()["Keys"]}
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=CONFIG, kek=AwsKmsKek(key_arn=key_arn, client=kms)) as j:
        jid = j.journal_id
        a = j.append("tool_called", "run-1", {"who": "alice"}, subject_id="alice")
        b = j.append("tool_called", "run-1", {"who": "bob"}, subject_id="bob")
        assert {k["KeyArn"] for k in kms.list_keys()["Keys"]} == keys_before  # no key per scope
        j.seal()
        kids = {e.seq: e.payload_key_id for e in j.reader().events("run-1")}
        assert {json.loads((datakeys_dir(keys, jid) / "keys" / f"{k}.json").read_text())["kms_key"]
                for k in kids.values()} == {key_arn}
        r = j.shred(subject="alice")
        [reference] = r.receipt["deletion_references"]
        assert "kept" in reference and key_arn in reference
        assert kms.describe_key(KeyId=key_arn)["KeyMetadata"]["KeyState"] == "Enabled"
        assert not (datakeys_dir(keys, jid) / "keys" / f"{kids[a]}.json").exists()
        j.seal()
        assert j.verify().ok
    meta = json.loads((datakeys_dir(keys, jid) / STORE_FILE).read_text())
    assert meta["provider"] == "aws-kms" and meta["settings"]["key_arn"] == key_arn
    with Journal.open(store, key_dir=keys, config=CONFIG, kek=AwsKmsKek(key_arn=key_arn, client=kms)) as j:
        by_seq = {e.seq: e for e in j.reader().events("run-1")}
        assert by_seq[a].shredded and by_seq[b].payload == {"who": "bob"}
        assert j.shred(subject="alice").repeated
