"""A Reader reads each WAL file once and then follows it: a read costs the frames appended since the last one,
and what it returns is what a fresh reader returns, damage included."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from wormjournal import IntegrityError, Journal, JournalConfig, Reader
from wormjournal.index import reader as reader_mod
from wormjournal.storage import wal
from wormjournal.trust.chain import continue_chain

from conftest import StorePaths

CONFIG = JournalConfig(seal_max_age_seconds=None, seal_worker=False)


def wal_files(paths: StorePaths) -> list[Path]:
    return sorted(paths.store.glob(".wal/stream=main/*.wal"))


@pytest.fixture
def whole_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The WAL files read whole (by read_live), in order."""
    read: list[Path] = []
    real = wal.read_live

    def counting(path: Path, mac: wal.WalMac, *, rehash: bool = True) -> wal.WalTable:
        read.append(path)
        return real(path, mac, rehash=rehash)

    monkeypatch.setattr(wal, "read_live", counting)
    return read


def ids(r: Reader, x: str) -> list[tuple[int, str]]:
    return [(e.seq, e.event_id) for e in r.events(x)]


def test_each_read_reads_only_the_new_frames(tmp_store: StorePaths, whole_reads: list[Path]) -> None:
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CONFIG) as j:
        r = j.reader()
        for k in range(5):
            j.append_batch([{"execution_id": "run-1", "event_type": "tool_called", "payload": {"k": k, "i": i}}
                            for i in range(10)])
            j.append("tool_called", "run-2", {"k": k})
            assert [seq for seq, _ in ids(r, "run-1")] == [s for s in range(11 * (k + 1)) if s % 11 != 10]
        (path,) = wal_files(tmp_store)
        assert whole_reads == [path]  # read whole once, then only its new frames
        fresh = j.reader()
        assert ids(fresh, "run-1") == ids(r, "run-1") and ids(fresh, "run-2") == ids(r, "run-2")
        j.seal()  # the file is sealed and removed: the reader forgets it, the events come from the segment
        j.append("tool_called", "run-1", {"after": "seal"})
        assert ids(r, "run-1") == ids(j.reader(), "run-1") and len(ids(r, "run-1")) == 51


def test_damage_in_frames_appended_after_a_read_is_refused(tmp_store: StorePaths) -> None:
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CONFIG) as j:
        r = j.reader()
        j.append("tool_called", "run-1", {"n": 1})
        assert len(r.events("run-1")) == 1
        j.append("tool_called", "run-1", {"n": "second"})
        j.append("tool_called", "run-1", {"n": "third"})  # damage before a whole frame is not a torn tail
        (path,) = wal_files(tmp_store)
        data = bytearray(path.read_bytes())
        at = data.rindex(b"second")
        with open(path, "r+b") as f:  # a byte of the new frame changed on disk
            f.seek(at)
            f.write(b"S")
        with pytest.raises(IntegrityError) as followed:
            r.events("run-1")
        with pytest.raises(IntegrityError) as fresh:
            j.reader().events("run-1")
        assert str(followed.value) == str(fresh.value)


def test_a_file_replaced_under_the_same_name_is_read_again(tmp_store: StorePaths, whole_reads: list[Path]) -> None:
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CONFIG) as j:
        r = j.reader()
        j.append_batch([{"execution_id": "run-1", "event_type": "tool_called", "payload": {"i": i}} for i in range(3)])
        before = ids(r, "run-1")
        (path,) = wal_files(tmp_store)
        copy = path.with_name("copy")
        shutil.copyfile(path, copy)
        os.replace(copy, path)  # the same bytes under another inode
        assert ids(r, "run-1") == before
        assert whole_reads == [path, path]


def test_a_few_new_records_read_as_many_do(tmp_store: StorePaths) -> None:
    """A follower reads up to 32 new records one by one and more through the columnar walk: the same events as a
    fresh reader's, every field (nulls, tenants, threads, subjects' pseudonyms, payloads) alike."""
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CONFIG) as j:
        r = j.reader()
        for n in (1, 5, 40, 32, 33, 2):
            j.append_batch([{"execution_id": "run-1", "event_type": "tool_called", "payload": {"n": n, "i": i},
                             **({"thread_id": f"t-{i}", "tenant_id": "acme", "node": "tools"} if i % 2 else {}),
                             **({"subject_id": "alice"} if i % 3 == 0 else {})} for i in range(n)])
            assert r.events("run-1") == j.reader().events("run-1")
        assert len(r.events("run-1")) == 113


def test_each_read_checks_the_chain_of_the_new_events_only_and_as_strictly(tmp_store: StorePaths,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A read links only the events read since the last one to the chain (continue_chain over the new ones); an
    event after the checked ones that does not follow them is refused, never passed over as sealed."""
    checked: list[int] = []
    genuine = reader_mod.continue_chain

    def counting(events: Any, *args: Any, **kwargs: Any) -> Any:
        events = list(events)
        checked.append(len(events))
        return genuine(events, *args, **kwargs)

    monkeypatch.setattr(reader_mod, "continue_chain", counting)
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CONFIG) as j:
        r = j.reader()
        for k in range(4):
            j.append_batch([{"execution_id": "run-1", "event_type": "tool_called", "payload": {"k": k}}] * 5)
            assert len(r.events("run-1")) == 5 * (k + 1)
        assert checked == [5, 5, 5, 5]
        events = [e for f in r._followers.values() for e in f.events]  # noqa: SLF001
    head = events[-1]
    with pytest.raises(IntegrityError, match="does not continue"):
        continue_chain(events[:1], head.seq + 1, head.hash, continuing=True)
    assert continue_chain(events[:1], head.seq + 1, head.hash) == []  # a fresh check passes sealed ones over
