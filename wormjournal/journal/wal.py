"""The write-ahead log, writer's side: where it lives, new files, appends with group commit, torn tails.

The file format and its authenticated reading are in :mod:`wormjournal.storage.wal` (re-exported here).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, StorageError
from ..storage.local import LocalStore, fsync_dir
from ..storage.wal import (
    DURABLE_NAME,
    HEADER_SIZE,
    MAC_SIZE,
    MAGIC,
    MAX_FRAME_BYTES,
    PAYLOADS_DIR,
    WAL_TAG,
    WalContents,
    WalHeader,
    WalMac,
    WalTable,
    encode_frame,
    list_wal_files,
    read_live,
    read_wal,
    read_wal_table,
    wal_name,
    write_durable,
)

__all__ = ["HEADER_SIZE", "MAC_SIZE", "MAGIC", "MAX_FRAME_BYTES", "PAYLOADS_DIR", "WAL_TAG", "WalContents",
           "WalHeader", "WalMac", "WalWriter", "claim_wal_dir", "create_wal_file", "default_wal_dir", "encode_frame",
           "fsync_dir", "list_wal_files", "read_live", "read_wal", "read_wal_table", "truncate_torn_tail", "wal_name",
           "WalTable"]

log = logging.getLogger(__name__)


def default_wal_dir(store: Any) -> Path:
    """Where the WAL lives when none is given: ``<store>/.wal`` for a local store."""
    if isinstance(store, LocalStore):
        return store.root / ".wal"
    raise ConfigError(
        f"{store.url} needs a write-ahead log directory on local disk",
        hint="pass wal_dir= (the CLI's --wal-dir has a default)",
    )


def claim_wal_dir(directory: Path, journal_id: str) -> None:
    """Mark a WAL directory as this journal's; refuse one that belongs to another journal."""
    marker = directory / "JOURNAL"
    try:
        owner = marker.read_text().strip()
    except FileNotFoundError:
        owner = ""
    if not owner:  # new, or its first write was cut short by a crash
        with open(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(journal_id + "\n")
        return
    if owner != journal_id:
        raise ConfigError(
            f"the write-ahead log in {directory} belongs to journal {owner}, not {journal_id}",
            hint="give each journal its own --wal-dir",
        )


def create_wal_file(directory: Path, header: WalHeader) -> Path:
    """Create a WAL file atomically (temp file, rename, directory fsync)."""
    path = directory / wal_name(header.first_seq)
    tmp = directory / (path.name + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:  # owner only
        f.write(header.encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(directory)
    return path


class WalWriter:
    """Appends frames to the newest WAL file; ``sync`` is a group commit.

    ``write`` is called under the journal's lock; ``sync`` outside it, so that
    appenders who wrote while an fsync was running share the next one. Appenders
    announce themselves with ``begin``/``end``; a syncing leader waits up to
    ``commit_delay`` seconds for those still preparing, so that they share its
    fsync too (a lone appender never waits).

    The file is allocated ``preallocate`` bytes ahead of the frames (zeros to a reader, FORMAT.md 11): an
    fdatasync then writes the frames' data alone, without a journal commit of the file's new size, which
    is most of the cost of syncing a small append on a journaling file system.

    After every fsync the writer says what is durable in the directory's DURABLE file (``write_durable``), before
    any appender it covers returns: readers on this machine hand over no event before its append can return.
    """

    commit_delay = 0.0005
    preallocate = 1 << 20

    def __init__(self, path: Path, end: int | None = None) -> None:
        """Write frames from offset ``end`` on (the file's size by default: the last whole frame's end when
        recovery found zeros after it)."""
        self.path = path
        self._durable_fd = os.open(path.parent / DURABLE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        self._open(path, end)
        os.fdatasync(self._fd)  # what recovery kept of a crashed writer's file is durable before it is said to be
        self._mark(self._end)
        self._mutex = threading.Lock()  # entered directly where nobody needs waking (cheaper than the Condition)
        self._cond = threading.Condition(self._mutex)
        self._waiting = 0  # threads in self._cond.wait(): notify only when there are some
        self._written = 0  # ticket of the last frame written
        self._synced = 0  # every ticket <= this is durable
        self._syncing = False
        self._inflight = 0  # appenders between begin() and end()
        self._failed: BaseException | None = None

    def _open(self, path: Path, end: int | None) -> None:
        self._fd = os.open(path, os.O_WRONLY)  # not O_APPEND: frames go at self._end, inside allocated space
        self._first_seq = int(path.stem)
        self._allocated = os.fstat(self._fd).st_size
        self._end = self._allocated if end is None else end

    def _mark(self, end: int) -> None:
        """Say that the current file is durable up to ``end`` (DURABLE: read by readers, never by recovery)."""
        write_durable(self._durable_fd, self._first_seq, end)

    def _allocate(self, end: int) -> None:
        """Make the file at least ``end`` bytes long, ``preallocate`` bytes ahead: zeros written and synced.

        Written, not ``posix_fallocate``'d: a frame written over allocated but unwritten space still changes
        the file's extent map, which its ``fdatasync`` must commit to the file system's journal (a third of
        its cost, and a wait behind every other file's commit); over written zeros it writes the data alone.
        """
        if self.preallocate:
            size = max(end, self._allocated + self.preallocate)
            zeros = bytes(size - self._allocated)
            view, at = memoryview(zeros), self._allocated
            while view:
                n = os.pwrite(self._fd, view, at)
                view, at = view[n:], at + n
            os.fdatasync(self._fd)
            self._allocated = size

    def begin(self) -> None:
        """An appender starts preparing a frame."""
        with self._mutex:
            self._inflight += 1

    def end(self) -> None:
        """The appender has written its frame (or given up)."""
        with self._mutex:
            self._inflight -= 1
            if self._syncing and self._waiting:
                self._cond.notify_all()

    def _wait(self, timeout: float | None = None) -> None:
        self._waiting += 1
        try:
            self._cond.wait(timeout)
        finally:
            self._waiting -= 1

    def _check(self) -> None:
        if self._failed is not None:
            raise StorageError(
                f"the write-ahead log failed earlier ({self._failed}); close and reopen the journal",
                hint="reopening recovers every acknowledged event and drops only unacknowledged ones",
            )

    def write(self, frame: bytes) -> int:
        """Write a frame (not yet durable); returns its ticket for ``sync``."""
        self._check()
        end = self._end + len(frame)
        try:
            if end > self._allocated:
                self._allocate(end)
            view, at = memoryview(frame), self._end
            while view:
                n = os.pwrite(self._fd, view, at)
                view, at = view[n:], at + n
        except OSError as e:
            self._failed = e
            raise StorageError(f"cannot write the write-ahead log {self.path}: {e}") from e
        self._end, self._allocated = end, max(self._allocated, end)
        self._written += 1
        return self._written

    def sync(self, ticket: int) -> None:
        """Return once the frame with ``ticket`` is fsync'd; one fsync serves many waiters."""
        with self._mutex:
            while self._synced < ticket:
                self._check()
                if self._syncing:
                    self._wait()
                    continue
                self._syncing = True
                if self._inflight > 0:  # let appenders still preparing join this fsync
                    deadline = time.monotonic() + self.commit_delay
                    while self._inflight > 0:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._wait(remaining)
                target = self._written
                durable_end = self._end  # read after the ticket: at least every frame up to it (write: _end first)
                fd = self._fd
                self._mutex.release()
                error: OSError | None = None
                try:
                    os.fdatasync(fd)
                except OSError as e:
                    error = e
                finally:
                    self._mutex.acquire()
                    self._syncing = False
                    if error is None:
                        try:
                            self._mark(durable_end)
                        except OSError as e:  # a reader would not see what is durable: the log is failing
                            error = e
                    if error is None:
                        self._synced = max(self._synced, target)
                    else:
                        self._failed = error
                    if self._waiting:
                        self._cond.notify_all()
            self._check()

    def rotate(self, header: WalHeader) -> Path:
        """Make everything written durable, then continue in a new file. Returns the old path."""
        with self._mutex:
            while self._syncing:
                self._wait()
            self._check()
            try:
                os.fdatasync(self._fd)
                self._mark(self._end)
                self._synced = self._written
                if self._waiting:
                    self._cond.notify_all()
                new_path = create_wal_file(self.path.parent, header)
                old_fd, old = self._fd, self.path
                self._open(new_path, None)
                self._mark(self._end)
            except OSError as e:
                self._failed = e
                raise StorageError(f"cannot start a new write-ahead log file: {e}") from e
            os.close(old_fd)  # the frozen file keeps its zeros after the last frame: readers stop there
            self.path = new_path
            return old

    def close(self) -> None:
        with self._mutex:
            while self._syncing:
                self._wait()
            if self._fd >= 0:
                try:
                    if self._failed is None:
                        if self._allocated > self._end:
                            os.ftruncate(self._fd, self._end)  # give back the space allocated ahead
                        os.fsync(self._fd)
                        self._mark(self._end)
                        os.fsync(self._durable_fd)  # a clean close: true after a power loss too
                finally:
                    os.close(self._fd)
                    os.close(self._durable_fd)
                    self._fd = -1


def truncate_torn_tail(contents: WalContents | WalTable) -> None:
    """Cut an unacknowledged torn tail off the newest WAL file. One that valid frames follow (over space never
    written: they were never synced either) is kept beside it first, as ``<name>.torn-<offset>``, for whoever
    wants to look: nothing that was on disk is destroyed."""
    if contents.torn_bytes <= 0:
        return
    log.warning(
        "dropping a torn tail of %d bytes at offset %d of %s (never acknowledged)%s",
        contents.torn_bytes,
        contents.good_end,
        contents.path,
        ", valid frames after space never written: kept in a .torn file" if contents.frames_after_tail else "",
    )
    if contents.frames_after_tail:
        with open(contents.path, "rb") as f:
            f.seek(contents.good_end)
            tail = f.read(contents.torn_bytes)
        keep = contents.path.with_name(f"{contents.path.name}.torn-{contents.good_end}")
        with open(os.open(keep, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(tail)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(contents.path.parent)
    fd = os.open(contents.path, os.O_WRONLY)
    try:
        os.ftruncate(fd, contents.good_end)
        os.fsync(fd)
    finally:
        os.close(fd)

