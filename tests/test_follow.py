"""Reader.follow: every event once it is durable, in seq order, verified, across seals, rotations and shreds, on a
local directory (the WAL too) and on S3 (sealed events only); a tampered or forged event stops it before it is
handed over, and a resumed follower refuses a history other than the one it left."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from s3_fixtures import S3Bucket

from wormjournal import IntegrityError, Journal, JournalConfig, Reader
from wormjournal.index.follow import EventFilter, Follower, Tail
from wormjournal.journal.keys import key_name, load_wal_key
from wormjournal.segments.notes import SigningKey
from wormjournal.storage.local import LocalStore

from conftest import StorePaths, forge_seal, make_writable, wait_for

QUIET = JournalConfig(seal_max_age_seconds=None, seal_worker=False)


def seqs(events: Any) -> list[int]:
    return [e.seq for e in events]


def test_follow_hands_over_sealed_then_unsealed_events_in_order(tmp_store: StorePaths) -> None:
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=QUIET) as j:
        for i in range(30):
            j.append("tool_called", f"x{i % 3}", {"i": i}, tenant_id=f"t{i % 2}", thread_id=f"th{i % 5}")
            if i in (9, 19):
                j.seal()
        r = j.reader()
        events = list(r.follow(timeout=0))
        assert seqs(events) == list(range(30))
        assert [e.sealed for e in events] == [True] * 20 + [False] * 10
        assert [e.segment for e in events[:20]] == [0] * 10 + [1] * 10
        assert seqs(r.follow(14, timeout=0)) == list(range(15, 30))
        assert seqs(r.follow(29, timeout=0)) == []
        assert seqs(r.follow(14, execution_id="x1", timeout=0)) == [16, 19, 22, 25, 28]
        assert seqs(r.follow(tenant_id="t1", thread_id="th3", timeout=0)) == [3, 13, 23]
        assert seqs(r.follow(event_type=["tool_returned"], timeout=0)) == []
        # a follower that started before the seals hands over each event once, whatever was sealed meanwhile
        f = Follower([r], {"main": Tail()}, has_wal=True)
        first = f.poll()  # segment 0
        j.seal()
        rest = list(f.events(timeout=0))
        assert seqs(first + rest) == list(range(30))
        assert all(e.sealed for e in rest)


def test_follow_blocks_until_an_append_returns_and_ends_on_stop_or_timeout(tmp_store: StorePaths) -> None:
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys,
                        config=JournalConfig(seal_max_events=40, seal_max_age_seconds=None)) as j:
        got: list[int] = []
        stop = threading.Event()

        def follow() -> None:
            for e in j.reader().follow(stop=stop):
                got.append(e.seq)

        t = threading.Thread(target=follow)
        t.start()
        for i in range(200):  # sealed every 40 events by the seal worker meanwhile
            j.append("tool_called", f"x{i % 7}", {"i": i})
        wait_for(lambda: len(got) >= 200)
        stop.set()
        t.join(5)
        assert not t.is_alive()
        assert got == list(range(200))
        started = time.monotonic()
        assert list(j.reader().follow(199, timeout=0.2)) == []
        assert 0.15 < time.monotonic() - started < 5


def test_follow_across_a_key_rotation_and_a_shred(tmp_store: StorePaths) -> None:
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=QUIET) as j:
        for i in range(6):
            j.append("tool_called", "x1", {"i": i, "who": "alice" if i % 2 else "bob"},
                     subject_id="alice" if i % 2 else "bob")
        j.seal()
        r = j.reader()
        f = Follower([r], {"main": Tail()}, has_wal=True)
        assert [e.payload["i"] for e in f.poll()] == list(range(6))
        j.rotate_key()
        for i in range(6, 9):
            j.append("tool_called", "x1", {"i": i}, subject_id="alice")
        j.seal()  # signed by the new key: the follower reloads the key history
        j.shred(subject="alice")
        j.seal()
        rest = list(f.events(timeout=0))
        assert seqs(rest) == [6, 7, 8, 9]
        assert all(e.shredded for e in rest[:3])  # read after the shred: the marker, not the payload
        assert rest[3].event_type == "erasure_receipt"
        again = list(j.reader().follow(timeout=0))
        assert [e.shredded for e in again[:6]] == [False, True, False, True, False, True]


FOLLOWER_CHILD = """
import json, sys, time
from wormjournal import Reader
from wormjournal.journal.keys import key_name, load_wal_key
store, keys, journal_id, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
r = Reader(store, wal_dir=store + "/.wal", wal_key=load_wal_key(__import__("pathlib").Path(keys), journal_id))
got = []
print("ready", flush=True)
for e in r.follow(timeout=30):
    got.append(e.seq)
    if len(got) == n:
        break
print(json.dumps(got), flush=True)
"""


def test_two_followers_one_in_another_process_get_every_event_once_in_order(tmp_store: StorePaths) -> None:
    n = 3000
    config = JournalConfig(seal_max_events=700, seal_max_age_seconds=None, row_group_rows=64)
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=config) as j:
        child = subprocess.Popen([sys.executable, "-c", FOLLOWER_CHILD, str(tmp_store.store), str(tmp_store.keys),
                                  j.journal_id, str(n)], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            got: list[int] = []
            stop = threading.Event()
            t = threading.Thread(target=lambda: [got.append(e.seq) for e in j.reader().follow(stop=stop, timeout=30)])
            t.start()
            k = 0
            while k < n:  # batches of 1 to 3 events, sealed by the worker meanwhile
                size = min(n - k, 1 + k % 3)
                j.append_batch([{"event_type": "tool_called", "execution_id": f"x{s % 11}", "payload": {"k": s}}
                                for s in range(k, k + size)])
                k += size
            out, _ = child.communicate(timeout=60)
            wait_for(lambda: len(got) >= n, 30)
            stop.set()
            t.join(10)
        finally:
            child.kill()
    other = json.loads(out.splitlines()[-1])
    assert other == list(range(n))
    assert got == list(range(n))


def test_follow_on_s3_sees_sealed_events(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = s3_bucket.store("j")
    config = JournalConfig(seal_max_age_seconds=None, seal_worker=False)
    with Journal.create(store, key_dir=tmp_path / "keys", wal_dir=tmp_path / "wal", config=config) as j:
        auditor = Reader(s3_bucket.store("j"))  # the store alone: sealed events, polled
        got: list[int] = []
        stop = threading.Event()
        t = threading.Thread(target=lambda: [got.append(e.seq) for e in auditor.follow(stop=stop, poll_seconds=0.05)])
        t.start()
        for round_ in range(4):
            j.append_batch([{"event_type": "tool_called", "execution_id": f"x{i}", "payload": {"r": round_}}
                            for i in range(25)])
            time.sleep(0.05)
            assert len(got) <= 25 * round_  # not sealed yet: not seen from the store
            j.seal()
        wait_for(lambda: len(got) >= 100)
        stop.set()
        t.join(10)
        assert got == list(range(100))
        j.rotate_key()
        j.append("tool_called", "x1", {"after": "rotation"})
        j.seal()
        assert seqs(Reader(s3_bucket.store("j")).follow(99, timeout=0)) == [100]


# -- what a follower refuses -------------------------------------------------------------------


def sealed_twice(paths: StorePaths) -> Journal:
    j = Journal.create(paths.store, key_dir=paths.keys, config=QUIET)
    for i in range(20):
        j.append("tool_called", f"x{i % 2}", {"i": i})
        if i in (9, 19):
            j.seal()
    return j


def test_a_tampered_row_stops_the_follower_before_any_event_of_its_segment(
        tmp_store: StorePaths, rewrite_segment: Any) -> None:
    with sealed_twice(tmp_store) as j:
        (seg,) = sorted(tmp_store.store.glob("segments/stream=main/*/seg-*1.parquet"))

        def alter(table: pa.Table) -> pa.Table:
            payload = table.column("payload").to_pylist()
            payload[4] = b'{"i":999}'
            return table.set_column(table.schema.get_field_index("payload"), "payload", pa.array(payload, pa.binary()))

        rewrite_segment(seg, alter)
        got: list[int] = []
        with pytest.raises(IntegrityError):
            for e in j.reader().follow(timeout=0):
                got.append(e.seq)
        assert got == list(range(10))  # segment 0 only: nothing of the tampered segment
        with pytest.raises(IntegrityError):
            next(iter(j.reader().follow(9, event_type="tool_returned", timeout=0)))  # filtered out, still checked


def test_a_forged_seal_stops_the_follower(tmp_store: StorePaths) -> None:
    with sealed_twice(tmp_store) as j:
        r = j.reader()
        f = Follower([r], {"main": Tail()}, has_wal=True)
        assert seqs(f.events(timeout=0)) == list(range(20))  # a follower running before the forgery
        thief = SigningKey.generate(key_name(j.journal_id))
        forge_seal(LocalStore(tmp_store.store), thief, [("tool_called", "x1", {"forged": True})])
        with pytest.raises(IntegrityError, match="signature|key"):
            f.poll()
        with pytest.raises(IntegrityError):  # and a new one: nothing handed over
            next(iter(j.reader().follow(timeout=0)))


def test_a_tampered_wal_frame_stops_the_follower(tmp_store: StorePaths) -> None:
    with sealed_twice(tmp_store) as j:
        for i in range(5):
            j.append("tool_called", "x1", {"note": f"n{i}"})
        (wal,) = sorted(tmp_store.store.glob(".wal/stream=main/*.wal"))
        data = bytearray(wal.read_bytes())
        at = data.rindex(b"n3")
        data[at + 1] ^= 1
        wal.write_bytes(bytes(data))
        r = Reader(tmp_store.store, wal_dir=tmp_store.store / ".wal",
                   wal_key=load_wal_key(tmp_store.keys, j.journal_id))
        with pytest.raises(IntegrityError):
            list(r.follow(19, timeout=0))


def test_a_follower_resumed_with_a_hash_refuses_another_history(tmp_store: StorePaths) -> None:
    with sealed_twice(tmp_store) as j:
        events = list(j.reader().follow(timeout=0))
        assert seqs(j.reader().follow(9, after_hash=bytes.fromhex(events[9].hash), timeout=0)) == list(range(10, 20))
        with pytest.raises(IntegrityError, match="rewritten"):
            list(j.reader().follow(9, after_hash=bytes.fromhex(events[8].hash), timeout=0))


def test_what_was_handed_over_unsealed_must_be_what_is_sealed(tmp_store: StorePaths) -> None:
    with sealed_twice(tmp_store) as j:
        for i in range(3):
            j.append("tool_called", "x1", {"i": i})
        r = j.reader()
        tail = Tail(19)
        assert seqs(r.poll(tail)) == [20, 21, 22]
        # as if the WAL had said otherwise when they were handed over (the chain: every later hash differs too)
        tail.unsealed.update({21: bytes(32), 22: bytes(32)})
        j.seal()
        j.append("tool_called", "x1", {"i": 3})
        with pytest.raises(IntegrityError, match="seals another event"):
            r.poll(tail)
        good = Tail(19)
        assert seqs(r.poll(good)) == [20, 21, 22]
        j.seal()
        assert seqs(r.poll(good)) == [23] and good.unsealed == {}


def test_event_filter_takes_one_type_or_several() -> None:
    assert EventFilter.of("a").event_types == frozenset({"a"})
    assert EventFilter.of(["a", "b"]).event_types == frozenset({"a", "b"})
    with pytest.raises(Exception, match="strings"):
        EventFilter.of([1])  # type: ignore[list-item]


def test_a_follower_from_the_store_alone_sees_a_removed_manifest(tmp_store: StorePaths) -> None:
    """A store-only follower looks for the next manifest; one removed after its last look, with seals after it, would
    leave it waiting for ever while verify reports the damage: it also looks past it (every few seconds)."""
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=QUIET) as j:
        j.append("tool_called", "x1", {"i": 0})
        j.seal()
        f = Follower([Reader(tmp_store.store, public_keys=j.trusted_keys())], {"main": Tail()})
        assert seqs(f.poll()) == [0]
        for i in (1, 2):
            j.append("tool_called", "x1", {"i": i})
            j.seal()
        (name,) = [p for p in tmp_store.store.glob("manifests/stream=main/*1.note")]
        make_writable(name.parent)
        make_writable(name)
        name.unlink()
        with pytest.raises(IntegrityError, match="manifest_missing"):
            f.poll()
