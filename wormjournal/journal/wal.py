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
    HEADER_SIZE,
    MAC_SIZE,
    MAGIC,
    MAX_FRAME_BYTES,
    WAL_TAG,
    WalContents,
    WalHeader,
    WalMac,
    WalTable,
    encode_frame,
    list_wal_files,
    read_wal,
    read_wal_table,
    wal_name,
)

__all__ = ["HEADER_SIZE", "MAC_SIZE", "MAGIC", "MAX_FRAME_BYTES", "WAL_TAG", "WalContents", "WalHeader", "WalMac",
           "WalWriter", "claim_wal_dir", "create_wal_file", "default_wal_dir", "encode_frame", "fsync_dir",
           "list_wal_files", "read_wal", "read_wal_table", "truncate_torn_tail", "wal_name", "WalTable"]

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
    """

    commit_delay = 0.0005

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._cond = threading.Condition()
        self._written = 0  # ticket of the last frame written
        self._synced = 0  # every ticket <= this is durable
        self._syncing = False
        self._inflight = 0  # appenders between begin() and end()
        self._failed: BaseException | None = None
        self.bytes_written = 0

    def begin(self) -> None:
        """An appender starts preparing a frame."""
        with self._cond:
            self._inflight += 1

    def end(self) -> None:
        """The appender has written its frame (or given up)."""
        with self._cond:
            self._inflight -= 1
            if self._syncing:
                self._cond.notify_all()

    def _check(self) -> None:
        if self._failed is not None:
            raise StorageError(
                f"the write-ahead log failed earlier ({self._failed}); close and reopen the journal",
                hint="reopening recovers every acknowledged event and drops only unacknowledged ones",
            )

    def write(self, frame: bytes) -> int:
        """Write a frame (not yet durable); returns its ticket for ``sync``."""
        self._check()
        try:
            view = memoryview(frame)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as e:
            self._failed = e
            raise StorageError(f"cannot write the write-ahead log {self.path}: {e}") from e
        self.bytes_written += len(frame)
        self._written += 1
        return self._written

    def sync(self, ticket: int) -> None:
        """Return once the frame with ``ticket`` is fsync'd; one fsync serves many waiters."""
        with self._cond:
            while self._synced < ticket:
                self._check()
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing = True
                deadline = time.monotonic() + self.commit_delay
                while self._inflight > 0:  # let appenders still preparing join this fsync
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                target = self._written
                fd = self._fd
                self._cond.release()
                error: OSError | None = None
                try:
                    os.fdatasync(fd)
                except OSError as e:
                    error = e
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    if error is None:
                        self._synced = max(self._synced, target)
                    else:
                        self._failed = error
                    self._cond.notify_all()
            self._check()

    def rotate(self, header: WalHeader) -> Path:
        """Make everything written durable, then continue in a new file. Returns the old path."""
        with self._cond:
            while self._syncing:
                self._cond.wait()
            self._check()
            try:
                os.fdatasync(self._fd)
                self._synced = self._written
                new_path = create_wal_file(self.path.parent, header)
                new_fd = os.open(new_path, os.O_WRONLY | os.O_APPEND)
            except OSError as e:
                self._failed = e
                raise StorageError(f"cannot start a new write-ahead log file: {e}") from e
            os.close(self._fd)
            old, self.path, self._fd = self.path, new_path, new_fd
            self.bytes_written = 0
            return old

    def close(self) -> None:
        with self._cond:
            while self._syncing:
                self._cond.wait()
            if self._fd >= 0:
                try:
                    if self._failed is None:
                        os.fdatasync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = -1


def truncate_torn_tail(contents: WalContents | WalTable) -> None:
    """Cut an unacknowledged torn tail off the newest WAL file."""
    if contents.torn_bytes <= 0:
        return
    log.warning(
        "dropping a torn tail of %d bytes at offset %d of %s (never acknowledged)",
        contents.torn_bytes,
        contents.good_end,
        contents.path,
    )
    fd = os.open(contents.path, os.O_WRONLY)
    try:
        os.ftruncate(fd, contents.good_end)
        os.fsync(fd)
    finally:
        os.close(fd)

