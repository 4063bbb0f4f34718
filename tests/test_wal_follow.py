"""A Reader reads each WAL file once and then follows it: a read costs the frames appended since the last one,
and what it returns is what a fresh reader returns, damage included."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from wormjournal import IntegrityError, Journal, JournalConfig, Reader, StorageError
from wormjournal.index import reader as reader_mod
from wormjournal.index.follow import Follower, Tail
from wormjournal.storage import wal
from wormjournal.trust.chain import continue_chain

from conftest import StorePaths, wal_key

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


def test_a_frame_longer_than_the_read_window_is_read_without_a_damage_scan(tmp_store: StorePaths,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose frame is longer than a follower's first window (64 KiB) is one frame cut by the window, not a
    torn tail: it is read whole next time, with no byte-by-byte search for damage (which cost seconds a frame)."""
    scans: list[int] = []
    genuine = wal._refuse_damage_before_frames  # noqa: SLF001

    def counting(*args: Any, **kwargs: Any) -> bool:
        scans.append(1)
        return genuine(*args, **kwargs)

    monkeypatch.setattr(wal, "_refuse_damage_before_frames", counting)
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CONFIG) as j:
        r = j.reader()
        j.append("tool_called", "run-1", {"first": True})
        assert len(r.events("run-1")) == 1
        for size in (300, 1000):  # frames of about 300 KB and 1 MB
            j.append_batch([{"execution_id": "run-1", "event_type": "tool_called", "payload": {"pad": "x" * 1000,
                                                                                              "i": i}}
                            for i in range(size)])
            assert ids(r, "run-1") == ids(j.reader(), "run-1")
        assert len(ids(r, "run-1")) == 1301
    assert scans == []


def test_an_event_is_read_only_once_its_append_can_return(tmp_store: StorePaths,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The WAL's frame is written before its fsync; a reader (a follower) reads no further than the writer says is
    durable (DURABLE), so an append whose fsync fails hands nothing to anyone. Without DURABLE (a writer of an
    earlier version) a file is read whole."""
    from wormjournal.journal import wal as walmod

    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CONFIG) as j:
        j.append("tool_called", "run-1", {"i": 0})
        r = j.reader()
        assert len(r.events("run-1")) == 1
        written = threading.Event()
        seen: list[list[int]] = []

        class FailingSync:
            def __getattr__(self, name: str) -> Any:
                return getattr(os, name)

            def fdatasync(self, fd: int) -> None:
                written.set()
                deadline = time.monotonic() + 5  # readers look meanwhile: the frame is in the file
                while len(seen) < 3 and time.monotonic() < deadline:
                    time.sleep(0.01)
                raise OSError(5, "Input/output error (simulated)")

        def look() -> None:
            written.wait(5)
            for _ in range(3):
                seen.append([e.seq for e in r.follow(timeout=0)])

        t = threading.Thread(target=look)
        t.start()
        monkeypatch.setattr(walmod, "os", FailingSync())
        with pytest.raises(StorageError):
            j.append("tool_called", "run-1", {"i": 1})
        monkeypatch.setattr(walmod, "os", os)
        t.join(10)
        assert seen == [[0]] * 3  # the frame of seq 1 was in the file, and never read
        (path,) = wal_files(tmp_store)
        assert len(wal.read_live(path, j._wal_mac).table) == 2  # noqa: SLF001 - it is there
        (tmp_store.store / ".wal" / "stream=main" / wal.DURABLE_NAME).unlink()
        assert [e.seq for e in Reader(tmp_store.store, wal_dir=tmp_store.store / ".wal",
                                      wal_key=wal_key(tmp_store.store, tmp_store.keys)).follow(timeout=0)] == [0, 1]


def test_a_follow_reads_to_the_end_of_the_file_when_a_window_ends_where_a_frame_does(
        tmp_store: StorePaths, monkeypatch: pytest.MonkeyPatch) -> None:
    """A window of new bytes that ends exactly at a frame's end is followed by the next one: a follower that stopped
    there read a file only in part, and a newer file read after it looked like a gap in the chain (an IntegrityError
    on an intact journal, with a writer that rotates while a follower is behind)."""
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CONFIG) as j:
        j.append("tool_called", "run-1", {"first": True})
        (path,) = wal_files(tmp_store)
        follower = wal.WalFollower(path, j._wal_mac)  # noqa: SLF001
        assert len(follower.follow()) == 1
        before = follower._good_end  # noqa: SLF001
        batch = [{"execution_id": "run-1", "event_type": "tool_called", "payload": {"pad": "y" * 200, "i": 0}}]
        j.append_batch(batch * 5)
        frame = wal.read_live(path, j._wal_mac).good_end - before  # noqa: SLF001 - one frame's bytes
        j.append_batch(batch * 5)
        j.append_batch(batch * 5)
        monkeypatch.setattr(wal, "_FOLLOW_WINDOW", frame)
        assert len(follower.follow()) == 16
        assert follower.events == wal.read_wal(path, j._wal_mac, live=True).events  # noqa: SLF001


def test_a_durable_record_that_does_not_read_holds_events_back_and_raises_nothing(tmp_store: StorePaths) -> None:
    """DURABLE is advisory and unauthenticated: one torn by a concurrent read, garbage, a symlink or a FIFO (which
    must not block the reader) says nothing is durable, and one that goes backwards is no damage; a follower then
    waits, and goes on once the writer writes it again."""
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CONFIG) as j:
        for i in range(3):
            j.append("tool_called", "run-1", {"i": i})
        r = j.reader()
        f = Follower([r], {"main": Tail()}, has_wal=True)
        assert [e.seq for e in f.poll()] == [0, 1, 2]
        durable = tmp_store.store / ".wal" / "stream=main" / wal.DURABLE_NAME
        good = durable.read_bytes()
        j.append("tool_called", "run-1", {"i": 3})
        for bad in ("garbage", "fifo", "symlink", "backwards"):
            durable.unlink()
            if bad == "garbage":
                durable.write_bytes(b"\xff" * 20)
            elif bad == "fifo":
                os.mkfifo(durable)
            elif bad == "symlink":
                durable.symlink_to(tmp_store.store / "journal.json")
            else:
                durable.write_bytes(good)  # as it was before seq 3 was synced
            assert f.poll() == []
            assert [e.seq for e in r.events("run-1")] == ([0, 1, 2] if bad == "backwards" else [])
        durable.unlink()  # the writer writes its DURABLE through the file it opened: gone, as with an older writer
        j.append("tool_called", "run-1", {"i": 4})
        assert [e.seq for e in f.poll()] == [3, 4]
