"""One writer per stream: an exclusive, non-blocking flock on the stream's WAL directory.

flock locks belong to an open file description, so a second writer in the
same process is refused as surely as one in another process, and the kernel
releases the lock when the holder dies (kill -9 included).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import LockedError, StorageError


class PidLock:
    """An exclusive, non-blocking flock on ``path``, which names the holder's pid. ``held`` says what a second
    holder is refused for (LockedError: "<held> (pid N, lock PATH)")."""

    def __init__(self, path: Path, held: str) -> None:
        self.path = path
        self.held = held
        self._fd = -1

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StorageError(f"cannot open the lock {self.path}: {e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise LockedError(f"{self.held} (pid {holder}, lock {self.path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class StreamLock(PidLock):
    def __init__(self, directory: Path, stream: str) -> None:
        super().__init__(directory / "LOCK", f"stream {stream!r} already has a writer")
        self.stream = stream


@contextlib.contextmanager
def signing_lock(directory: Path | None, *, exclusive: bool) -> Iterator[None]:
    """The key directory's signing lock: writers hold it shared while they sign a seal, a rotation
    exclusively while it fixes each stream's cutover and swaps the key, so no writer on this machine
    signs across a cutover with the retired key. No-op without a key directory."""
    if directory is None:
        yield
        return
    try:
        fd = os.open(directory / "sign.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise StorageError(f"cannot open the signing lock in {directory}: {e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def seal_lock(directory: Path) -> Iterator[None]:
    """A stream's seal lock, in its WAL directory: held (blocking, exclusive) by whoever seals its WAL files,
    the writer or its seal worker, and by a writer that opens the stream, so that two never seal (and cut)
    the same WAL at once. The kernel releases it when its holder dies."""
    try:
        fd = os.open(directory / "SEAL.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise StorageError(f"cannot open the seal lock in {directory}: {e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
