"""The write-ahead log: one file per generation, frames of records, group commit.

A WAL file is ``<first_seq, 20 digits>.wal`` in the stream's WAL directory::

    header  = MAGIC(8) || u64be first_seq || prev_hash(32) || u32be crc32(preceding bytes)
    frame   = u32be body_len || u32be crc32(body) || body
    body    = u32be count || count * (u32be len || encode_fields(...) || hash(32))

One frame is one ``append``/``append_batch`` call: a batch is all or nothing,
because a torn frame fails its CRC and is dropped as a whole. Only the tail
of the newest file can be torn (older files were fsync'd whole when frozen).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from ..errors import ConfigError, IntegrityError, StorageError
from ..events import HASH_SIZE, StoredEvent, decode_fields, event_hash
from ..storage.local import LocalStore, fsync_dir

log = logging.getLogger(__name__)

MAGIC = b"WJWAL\x00\x01\n"
HEADER_SIZE = len(MAGIC) + 8 + HASH_SIZE + 4
_FRAME_HEAD = struct.Struct(">II")
# A frame larger than this is a corrupt length, not a real batch.
MAX_FRAME_BYTES = 1 << 31


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
        marker.write_text(journal_id + "\n")
        return
    if owner != journal_id:
        raise ConfigError(
            f"the write-ahead log in {directory} belongs to journal {owner}, not {journal_id}",
            hint="give each journal its own --wal-dir",
        )


@dataclasses.dataclass(frozen=True)
class WalHeader:
    first_seq: int
    prev_hash: bytes

    def encode(self) -> bytes:
        head = MAGIC + struct.pack(">Q", self.first_seq) + self.prev_hash
        return head + struct.pack(">I", zlib.crc32(head))

    @classmethod
    def decode(cls, data: bytes) -> WalHeader:
        if len(data) < HEADER_SIZE or data[: len(MAGIC)] != MAGIC:
            raise ValueError("not a wormjournal WAL file")
        head = data[: HEADER_SIZE - 4]
        (crc,) = struct.unpack_from(">I", data, HEADER_SIZE - 4)
        if zlib.crc32(head) != crc:
            raise ValueError("WAL header checksum mismatch")
        (first_seq,) = struct.unpack_from(">Q", data, len(MAGIC))
        return cls(first_seq, bytes(data[len(MAGIC) + 8 : HEADER_SIZE - 4]))


def encode_frame(records: list[tuple[bytes, bytes]]) -> bytes:
    """One frame holding (encoded fields, hash) records."""
    parts = [struct.pack(">I", len(records))]
    for enc, h in records:
        parts.append(struct.pack(">I", len(enc) + HASH_SIZE))
        parts.append(enc)
        parts.append(h)
    body = b"".join(parts)
    return _FRAME_HEAD.pack(len(body), zlib.crc32(body)) + body


def _decode_body(body: bytes) -> list[tuple[bytes, bytes]]:
    (count,) = struct.unpack_from(">I", body, 0)
    pos = 4
    out = []
    for _ in range(count):
        (n,) = struct.unpack_from(">I", body, pos)
        pos += 4
        rec = body[pos : pos + n]
        if len(rec) != n or n < HASH_SIZE:
            raise ValueError("record overruns its frame")
        out.append((rec[:-HASH_SIZE], rec[-HASH_SIZE:]))
        pos += n
    if pos != len(body):
        raise ValueError("frame has trailing bytes")
    return out


@dataclasses.dataclass
class WalContents:
    path: Path
    header: WalHeader
    events: list[StoredEvent]
    good_end: int  # offset just past the last whole frame
    size: int  # file size as found

    @property
    def torn_bytes(self) -> int:
        return self.size - self.good_end


_MIN_BODY = 4  # a frame body holds at least its record count


def _frame_continues_at(view: memoryview, off: int, seq: int) -> bool:
    """Whether a whole, CRC-valid frame of records seq, seq+1, ... (first >= ``seq``) starts at ``off``."""
    body_len, crc = _FRAME_HEAD.unpack_from(view, off)
    end = off + _FRAME_HEAD.size + body_len
    if body_len < _MIN_BODY or end > len(view) or zlib.crc32(view[off + _FRAME_HEAD.size : end]) != crc:
        return False
    try:
        seqs = [decode_fields(enc)[0][0] for enc, _ in _decode_body(bytes(view[off + _FRAME_HEAD.size : end]))]
    except (ValueError, struct.error):
        return False
    return bool(seqs) and seqs[0] >= seq and seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def _refuse_damage_before_frames(path: Path, data: bytes, pos: int, seq: int) -> None:
    """Raise IntegrityError if a valid frame follows the bad one at ``pos``.

    A torn tail is the end of the file, never followed by a valid frame; a bad
    frame with valid frames after it is damage in the middle, and cutting it off
    would drop acknowledged events. The scan costs time only after a crash.
    """
    view = memoryview(data)
    for off in range(pos + 1, len(data) - _FRAME_HEAD.size - _MIN_BODY + 1):
        if _frame_continues_at(view, off, seq):
            raise IntegrityError(
                f"{path}: the frame at offset {pos} is damaged, but a valid frame follows at offset {off}: "
                "this is not a torn tail, and cutting it would lose acknowledged events"
            )


def read_wal(path: Path) -> WalContents:
    """Read a WAL file, stopping at a torn tail: a last frame that is short or fails its CRC.

    Every record is checked against the chain: its hash must be the event hash of
    its fields after the previous record's hash. Raises IntegrityError otherwise,
    and when a bad frame is followed by a valid one (damage, not a torn tail).
    """
    data = path.read_bytes()
    try:
        header = WalHeader.decode(data)
    except ValueError as e:
        raise IntegrityError(f"{path}: {e}") from e
    pos = HEADER_SIZE
    events: list[StoredEvent] = []
    prev = header.prev_hash
    seq = header.first_seq
    while pos + _FRAME_HEAD.size <= len(data):
        body_len, crc = _FRAME_HEAD.unpack_from(data, pos)
        end = pos + _FRAME_HEAD.size + body_len
        # body_len < 4 (no record count) is not a frame: a zero-filled tail has length 0 and CRC 0.
        if (
            end > len(data)
            or not _MIN_BODY <= body_len <= MAX_FRAME_BYTES
            or zlib.crc32(data[pos + _FRAME_HEAD.size : end]) != crc
        ):
            _refuse_damage_before_frames(path, data, pos, seq)
            break
        body = data[pos + _FRAME_HEAD.size : end]
        try:
            records = _decode_body(body)
            batch = []
            for enc, h in records:
                values, used = decode_fields(enc)
                if used != len(enc):
                    raise ValueError("record has trailing bytes")
                if values[0] != seq:
                    raise IntegrityError(f"{path}: record at offset {pos} has seq {values[0]}, expected {seq}")
                if event_hash(prev, enc) != h:
                    raise IntegrityError(f"{path}: record seq {seq} does not match its hash")
                batch.append(StoredEvent(*values, prev_hash=prev, hash=h))
                prev = h
                seq += 1
        except (ValueError, struct.error) as e:
            raise IntegrityError(f"{path}: frame at offset {pos} passes its CRC but does not parse: {e}") from e
        events.extend(batch)
        pos = end
    return WalContents(path, header, events, pos, len(data))


def wal_name(first_seq: int) -> str:
    return f"{first_seq:020d}.wal"


def list_wal_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.wal") if p.stem.isdigit())


def create_wal_file(directory: Path, header: WalHeader) -> Path:
    """Create a WAL file atomically (temp file, rename, directory fsync)."""
    path = directory / wal_name(header.first_seq)
    tmp = directory / (path.name + ".tmp")
    with open(tmp, "wb") as f:
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


def truncate_torn_tail(contents: WalContents) -> None:
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

