"""A Reader reads each WAL file once and then follows it: a read costs the frames appended since the last one,
and what it returns is what a fresh reader returns, damage included."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from wormjournal import IntegrityError, Journal, JournalConfig, Reader
from wormjournal.storage import wal

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
