"""The write-ahead log's files: their format, and reading them back authenticated (FORMAT.md 11).

A WAL file is ``<first_seq, 20 digits>.wal`` in the stream's WAL directory::

    header  = MAGIC(8) || u64be first_seq || prev_hash(32) || u32be crc32(preceding bytes)
    frame   = u32be body_len || u32be crc32(body || mac) || body || mac(32)
    body    = u32be count || count * (u32be len || encode_fields(...) || hash(32))
    mac     = HMAC-SHA256(WAL key, WAL_TAG || STR(journal id) || STR(stream) || body)

A file may go on past its last frame in zero bytes: space the writer allocated ahead, so that
the fdatasync of an append does not also have to commit a new file size. A reader stops where
the rest of the file is zeros (that is not a torn tail).

One frame is one ``append``/``append_batch`` call: a batch is all or nothing,
because a torn frame fails its CRC and is dropped as a whole. Only the tail
of the newest file can be torn (older files were fsync'd whole when frozen).
The MAC, with a key from the writer's key directory, is what makes a frame the
writer's: the chain alone needs no key, so without it anyone who can write the
WAL directory could add a correctly chained event that the next seal would sign.
The CRC covers the MAC too, so a torn write (of the MAC included) fails the CRC and is a
torn tail; a frame that passes its CRC but not its MAC was written whole by someone
without the key: an IntegrityError, never a torn tail to cut off.
The writer (:mod:`wormjournal.journal.wal`) and the readers share this module.
"""

from __future__ import annotations

import array
import bisect
import dataclasses
import hashlib
import hmac
import mmap
import os
import stat
import struct
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .. import native
from ..errors import ConfigError, IntegrityError
from ..events import HASH_SIZE, Kind, StoredEvent, decode_fields, encode_value, event_hash
from ..segments.table import records_table, row_hashes, table_to_events

MAGIC = b"WJWAL\x00\x02\n"
MAGIC_V1 = b"WJWAL\x00\x01\n"  # frames without a MAC: refused (FORMAT.md 11)
HEADER_SIZE = len(MAGIC) + 8 + HASH_SIZE + 4
_FRAME_HEAD = struct.Struct(">II")
WAL_TAG = b"wormjournal:wal:v2\x00"
SEALED_TAG = b"wormjournal:sealed:v1\x00"  # the SEALED file's MAC (what the writer sealed)
MAC_SIZE = 32


class WalMac:
    """The frames' authenticator: HMAC-SHA256 under the WAL key, bound to one journal and stream."""

    def __init__(self, key: bytes, journal_id: str, stream: str) -> None:
        if len(key) != 32:
            raise ConfigError("the WAL key is not 32 bytes")
        ids = encode_value(Kind.STR, journal_id) + encode_value(Kind.STR, stream)
        prefix = WAL_TAG + ids
        self._base = hmac.new(key, prefix, hashlib.sha256)
        self._state = hmac.new(key, SEALED_TAG + ids, hashlib.sha256)
        # the C extension's copy of the same HMAC state (native.chain_frame), when it has SHA-256
        self.native_states: object | None = native.module.hmac_states(key, prefix) if native.SHA else None

    def tag(self, body: bytes | memoryview) -> bytes:
        h = self._base.copy()
        h.update(body)
        return h.digest()

    def state_tag(self, body: bytes) -> bytes:
        """The MAC of a ``SEALED`` file's body (FORMAT.md 11): another tag than the frames', so neither passes
        for the other."""
        h = self._state.copy()
        h.update(body)
        return h.digest()
# A frame larger than this is a corrupt length, not a real batch.
MAX_FRAME_BYTES = 1 << 31


@dataclasses.dataclass(frozen=True)
class WalHeader:
    first_seq: int
    prev_hash: bytes

    def encode(self) -> bytes:
        head = MAGIC + struct.pack(">Q", self.first_seq) + self.prev_hash
        return head + struct.pack(">I", zlib.crc32(head))

    @classmethod
    def decode(cls, data: bytes | memoryview) -> WalHeader:
        if len(data) >= len(MAGIC_V1) and data[: len(MAGIC_V1)] == MAGIC_V1:
            raise ValueError("a WAL file of format 1, whose frames carry no MAC: seal it with the wormjournal "
                             "version that wrote it before upgrading")
        if len(data) < HEADER_SIZE or data[: len(MAGIC)] != MAGIC:
            raise ValueError("not a wormjournal WAL file")
        head = data[: HEADER_SIZE - 4]
        (crc,) = struct.unpack_from(">I", data, HEADER_SIZE - 4)
        if zlib.crc32(head) != crc:
            raise ValueError("WAL header checksum mismatch")
        (first_seq,) = struct.unpack_from(">Q", data, len(MAGIC))
        return cls(first_seq, bytes(data[len(MAGIC) + 8 : HEADER_SIZE - 4]))


_U32 = struct.Struct(">I")


def encode_frame(records: Sequence[tuple[int, bytes, bytes] | tuple[bytes, bytes]], mac: WalMac) -> bytes:
    """One frame holding records, each (seq, encoded fields, hash) or (encoded fields, hash), authenticated by
    ``mac``."""
    pack = _U32.pack
    parts = [pack(len(records))]
    for record in records:
        enc, h = record[-2], record[-1]
        parts += (pack(len(enc) + HASH_SIZE), enc, h)
    body = b"".join(parts)
    tag = mac.tag(body)
    return b"".join([_FRAME_HEAD.pack(len(body), zlib.crc32(tag, zlib.crc32(body))), body, tag])


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
    size: int  # file size as found, less the zero bytes after the last whole frame (allocated ahead)
    frames_after_tail: bool = False  # valid frames follow the torn tail: written over unwritten space, never synced

    @property
    def torn_bytes(self) -> int:
        return self.size - self.good_end


_MIN_BODY = 4  # a frame body holds at least its record count


def _frame_continues_at(view: memoryview, off: int, seq: int, mac: WalMac) -> bool:
    """Whether a whole, CRC- and MAC-valid frame of records seq, seq+1, ... (first >= ``seq``) starts at ``off``."""
    body_len, crc = _FRAME_HEAD.unpack_from(view, off)
    end = off + _FRAME_HEAD.size + body_len
    if (body_len < _MIN_BODY or end + MAC_SIZE > len(view)
            or zlib.crc32(view[off + _FRAME_HEAD.size : end + MAC_SIZE]) != crc
            or not hmac.compare_digest(mac.tag(view[off + _FRAME_HEAD.size : end]), view[end : end + MAC_SIZE])):
        return False
    try:
        seqs = [decode_fields(enc)[0][0] for enc, _ in _decode_body(bytes(view[off + _FRAME_HEAD.size : end]))]
    except (ValueError, struct.error):
        return False
    return bool(seqs) and seqs[0] >= seq and seqs == list(range(seqs[0], seqs[0] + len(seqs)))


# Space the writer allocated ahead reads as zeros until a frame is written there, in whole pages: a reader that
# copies the file while a frame is being written, or a file system that lost the last writes of a crash
# out of order, shows a run of zeros that ends at a page boundary. Frame bytes hold no such run of this length.
_PAGE = 4096
_UNWRITTEN_RUN = 32


def _unwritten(data: bytes | memoryview, pos: int, end: int) -> bool:
    """Whether the bad frame at ``pos`` (a valid one follows at ``end``) lies over space not written yet: its
    length field is zero, or a run of zeros starting at ``pos`` or at least _UNWRITTEN_RUN long ends at a page
    boundary before ``end``. Then the frames from ``pos`` on were never synced (an fdatasync covers every
    frame written before it): a torn tail, not damage."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if not buf[pos : pos + 4].any():
        return True
    for boundary in range((pos // _PAGE + 1) * _PAGE, end + 1, _PAGE):
        start = max(pos, boundary - _UNWRITTEN_RUN)
        if not buf[start:boundary].any():
            return True
    return False


def _refuse_damage_before_frames(path: Path, data: bytes | memoryview, pos: int, seq: int, mac: WalMac,
                                 content_end: int) -> bool:
    """Raise IntegrityError if a valid frame follows the bad one at ``pos`` (and starts before ``content_end``,
    past which the file holds only zeros), unless the bad one lies over space not written yet (_unwritten):
    then return True (valid, never synced frames follow the torn tail); False when none follows.

    A torn tail is the end of the file, never followed by a valid frame; a bad
    frame with valid frames after it is damage in the middle, and cutting it off
    would drop acknowledged events. The scan costs time only after a crash.
    """
    view = memoryview(data)
    for off in range(pos + 1, min(content_end, len(data) - _FRAME_HEAD.size - _MIN_BODY + 1)):
        if _frame_continues_at(view, off, seq, mac):
            if _unwritten(data, pos, off):
                return True
            raise IntegrityError(
                f"{path}: the frame at offset {pos} is damaged, but a valid frame follows at offset {off}: "
                "this is not a torn tail, and cutting it would lose acknowledged events"
            )
    return False


@dataclasses.dataclass
class WalTable:
    """A WAL file's whole frames as rows of the segment schema (:data:`~wormjournal.segments.table.SCHEMA`)."""

    path: Path
    header: WalHeader
    table: pa.Table
    good_end: int  # offset just past the last whole frame
    size: int  # file size as found, less the zero bytes after the last whole frame (allocated ahead)
    frames_after_tail: bool = False  # valid frames follow the torn tail: written over unwritten space, never synced
    record_ends: Sequence[int] = ()  # the offset past each record (its frame's MAC follows the last of a frame)

    @property
    def torn_bytes(self) -> int:
        return self.size - self.good_end


def _content_end(data: bytes | memoryview, pos: int) -> int:
    """The offset past the last non-zero byte at or after ``pos`` (``pos`` when the rest is zeros)."""
    rest = np.frombuffer(data, dtype=np.uint8)[pos:]
    if not rest.any():
        return pos
    return pos + int(np.flatnonzero(rest)[-1]) + 1


def _frames(path: Path, data: bytes | memoryview, header: WalHeader, mac: WalMac,
            *, partial: bool = False) -> tuple[list[int], list[int], list[int], int, int, bool]:
    """Walk the whole frames (CRC and MAC checked): the offsets where each record starts and ends, the
    offset of each record's frame, and the offset past the last whole frame. Stops at a torn tail; raises
    IntegrityError for a forged frame, one that does not parse, or damage followed by a valid frame. The last
    value but one is where the file's content ends: the offset past the last whole frame when only zeros follow it
    (space allocated ahead), else past the torn tail's last non-zero byte; the last, whether valid frames follow
    the torn tail (over space not written yet: written, never synced). With ``partial`` (a follower's window of
    the file's new bytes) a frame that runs past the end of ``data`` ends the walk: its bytes were not read yet."""
    starts: list[int] = []
    ends: list[int] = []
    frames: list[int] = []
    pos = HEADER_SIZE
    unpack = struct.unpack_from
    while pos + _FRAME_HEAD.size <= len(data):
        body_len, crc = _FRAME_HEAD.unpack_from(data, pos)
        end = pos + _FRAME_HEAD.size + body_len
        if partial and end + MAC_SIZE > len(data) and _MIN_BODY <= body_len <= MAX_FRAME_BYTES:
            return starts, ends, frames, pos, len(data), False  # the frame goes on past the window
        # body_len < 4 (no record count) is not a frame: a zero-filled tail has length 0 and CRC 0.
        if (
            end + MAC_SIZE > len(data)
            or not _MIN_BODY <= body_len <= MAX_FRAME_BYTES
            or zlib.crc32(memoryview(data)[pos + _FRAME_HEAD.size : end + MAC_SIZE]) != crc
        ):
            content_end = _content_end(data, pos)
            after = content_end > pos and _refuse_damage_before_frames(path, data, pos, header.first_seq + len(starts),
                                                                       mac, content_end)
            return starts, ends, frames, pos, content_end, after
        body = memoryview(data)[pos + _FRAME_HEAD.size : end]
        if not hmac.compare_digest(mac.tag(body), data[end : end + MAC_SIZE]):
            raise IntegrityError(f"{path}: the frame at offset {pos} is whole but not authenticated by the writer's "
                                 "WAL key (forged, or the WAL of another key directory)")
        (count,) = unpack(">I", data, pos + _FRAME_HEAD.size)
        p = pos + _FRAME_HEAD.size + 4
        for _ in range(count):
            if p + 4 > end:
                raise IntegrityError(f"{path}: frame at offset {pos} passes its CRC but does not parse: "
                                     "record overruns its frame")
            (n,) = unpack(">I", data, p)
            p += 4
            if n < HASH_SIZE or p + n > end:
                raise IntegrityError(f"{path}: frame at offset {pos} passes its CRC but does not parse: "
                                     "record overruns its frame")
            starts.append(p)
            p += n
            ends.append(p)
            frames.append(pos)
        if p != end:
            raise IntegrityError(f"{path}: frame at offset {pos} passes its CRC but does not parse: "
                                 "frame has trailing bytes")
        pos = end + MAC_SIZE
    return starts, ends, frames, pos, _content_end(data, pos), False


def read_wal_table(path: Path, mac: WalMac, *, rehash: bool = True, mapped: bool = False) -> WalTable:
    """Read a WAL file into a table, stopping at a torn tail: a last frame that is short or fails its CRC.

    Every whole frame must carry the writer's MAC, and the records must be seq after seq from the header's.
    With ``rehash`` (a reader, or recovery after a crash) every record is also checked against the chain: its
    hash must be the event hash of its fields after the previous record's hash. A seal of the frozen files
    of its own writer leaves it out: the MAC already proves each frame is the writer's, hashes included.
    Raises IntegrityError otherwise, and when a bad frame is followed by a valid one (damage, not a torn tail).

    ``mapped`` maps the file instead of reading it (no copy of it in memory): only for a frozen file under the
    seal lock, which nobody truncates meanwhile (a mapped file cut shorter would kill the reader with SIGBUS).
    """
    data: bytes | memoryview
    if mapped:
        with open(path, "rb") as f:
            data = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    else:
        data = path.read_bytes()
    try:
        header = WalHeader.decode(data)
    except ValueError as e:
        raise IntegrityError(f"{path}: {e}") from e
    starts, ends, frames, good_end, content_end, after = _frames(path, data, header, mac)
    try:
        table = records_table(data, np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64),
                              header.prev_hash)
    except (ValueError, pa.ArrowException) as e:
        bad = _first_bad_record(data, starts, ends)
        raise IntegrityError(f"{path}: frame at offset {frames[bad] if bad is not None else HEADER_SIZE} passes its "
                             f"CRC but does not parse: {e}") from e
    seqs = np.asarray(table.column("seq"))
    wrong = np.flatnonzero(seqs != header.first_seq + np.arange(len(seqs), dtype=np.int64))
    if wrong.size:
        i = int(wrong[0])
        raise IntegrityError(f"{path}: record at offset {frames[i]} has seq {int(seqs[i])}, "
                             f"expected {header.first_seq + i}")
    if rehash:
        stored = table.column("hash").to_pylist()
        for i, h in enumerate(row_hashes(table)):  # prev_hash is the stored hash before: this checks each link
            if h != stored[i]:
                raise IntegrityError(f"{path}: record seq {header.first_seq + i} does not match its hash")
    return WalTable(path, header, table, good_end, content_end, after, ends)


def _first_bad_record(data: bytes | memoryview, starts: list[int], ends: list[int]) -> int | None:
    """The index of the first record whose fields do not parse (the slow path, for the error message)."""
    for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
        try:
            _, used = decode_fields(bytes(data[a : b - HASH_SIZE]))
            if used != b - HASH_SIZE - a:
                return i
        except (ValueError, UnicodeDecodeError, struct.error):
            return i
    return None


def read_wal(path: Path, mac: WalMac, *, live: bool = False) -> WalContents:
    """Read a WAL file as events (see :func:`read_wal_table`; every record's hash is checked). ``live``: a file
    a writer may be appending to (see :func:`read_live`)."""
    t = read_live(path, mac) if live else read_wal_table(path, mac)
    return WalContents(path, t.header, table_to_events(t.table), t.good_end, t.size, t.frames_after_tail)


LIVE_READS = 6  # reads of a live WAL file before damage that stays is believed


def read_live(path: Path, mac: WalMac, *, rehash: bool = True) -> WalTable:
    """:func:`read_wal_table` of a file a writer may be appending to. The file is allocated ahead (zeros), so a
    copy of it taken while a frame is written can show that frame half written with a whole one after it, for an
    instant: damage that goes away. The file is read again (a few times, a millisecond or more apart); only an
    IntegrityError that every read gives is raised."""
    for attempt in range(LIVE_READS):
        try:
            return read_wal_table(path, mac, rehash=rehash)
        except IntegrityError:
            if attempt == LIVE_READS - 1:
                raise
            time.sleep(0.001 * 2**attempt)
    raise AssertionError("unreachable")


class WalFollower:
    """One WAL file read as its writer appends to it: the first :meth:`follow` reads it whole (as
    :func:`read_live`), each later one only the bytes after the last whole frame seen, checked the same way
    (MAC, CRC, seq after seq, each record's hash after the one before). A file that is another one now (its
    inode), or shorter than what was read (a writer that cut its torn tail at recovery), is read whole
    again, and so is one whose new bytes do not check out: its error is then the whole file's."""

    def __init__(self, path: Path, mac: WalMac) -> None:
        self.path = path
        self.mac = mac
        self.events: list[StoredEvent] = []
        self._header: WalHeader | None = None
        self._good_end = 0
        self._identity: tuple[int, int] | None = None
        self._ends = array.array("q")  # the offset past each event's record (as WalTable.record_ends)

    def follow(self) -> list[StoredEvent]:
        """The file's events so far. Raises FileNotFoundError (sealed and removed), IntegrityError."""
        with open(self.path, "rb") as f:
            st = os.fstat(f.fileno())
            identity = (st.st_dev, st.st_ino)
            size = st.st_size
            if self._header is None or identity != self._identity or st.st_size < self._good_end:
                return self._read_whole(identity)
            # The new bytes a window at a time: the file goes on in zeros allocated ahead (up to a MiB), where
            # the frames stop; a window that ends inside a frame is followed by a larger one.
            window = _FOLLOW_WINDOW
            while size > self._good_end:
                at = self._good_end
                tail = os.pread(f.fileno(), min(size - at, window), at)
                try:  # a frame may run past a window, never past the file (space is allocated before a frame)
                    more = self._append(tail, partial=at + len(tail) < size)
                except IntegrityError:
                    return self._read_whole(identity)  # damage, or a frame being written: the whole file decides
                if at + len(tail) >= size:
                    break
                if self._good_end == at + len(tail):
                    continue  # the window ended where a frame did: read on (to the file's end, as a whole read does)
                if not more:
                    break  # zeros after the last frame: space allocated ahead
                if self._good_end == at:  # a frame longer than the window: read it whole next time
                    (body_len, _) = _FRAME_HEAD.unpack_from(tail, 0) if len(tail) >= _FRAME_HEAD.size else (0, 0)
                    window = max(2 * window, _FRAME_HEAD.size + body_len + MAC_SIZE)
        return self.events

    def durable(self, limit: int | None) -> int:
        """How many of :attr:`events` lie in the file's first ``limit`` bytes (None: all; :func:`durable_limit`)."""
        return len(self.events) if limit is None else bisect.bisect_right(self._ends, limit)

    def _read_whole(self, identity: tuple[int, int]) -> list[StoredEvent]:
        t = read_live(self.path, self.mac)
        self._header, self._identity, self._good_end = t.header, identity, t.good_end
        self.events = table_to_events(t.table)
        self._ends = array.array("q", t.record_ends)
        return self.events

    def _append(self, tail: bytes, *, partial: bool) -> bool:
        """The whole frames at the start of ``tail`` (the file's bytes from the last whole frame read); whether
        bytes other than zeros follow them (a frame that goes on past ``tail``, or is being written)."""
        assert self._header is not None
        seq = self._header.first_seq + len(self.events)
        prev = self.events[-1].hash if self.events else self._header.prev_hash
        # The tail behind a header of its own: the frame walk and its checks as for a whole file.
        data = bytes(HEADER_SIZE) + tail
        starts, ends, frames, good_end, content_end, _ = _frames(self.path, data, WalHeader(seq, prev), self.mac,
                                                                 partial=partial)
        more = content_end > good_end
        if not starts:
            return more
        base = self._good_end - HEADER_SIZE  # offsets in ``data`` to offsets in the file
        if len(starts) <= _FEW_RECORDS:
            self.events += self._records(data, starts, ends, seq, prev)
            self._ends.extend(base + e for e in ends)
            self._good_end += good_end - HEADER_SIZE
            return more
        table = records_table(data, np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64), prev)
        seqs = np.asarray(table.column("seq"))
        if (seqs != seq + np.arange(len(seqs), dtype=np.int64)).any():
            raise IntegrityError(f"{self.path}: a record after offset {self._good_end} is out of seq")
        stored = table.column("hash").to_pylist()
        if row_hashes(table) != stored:
            raise IntegrityError(f"{self.path}: a record after offset {self._good_end} does not match its hash")
        self.events += table_to_events(table)
        self._ends.extend(base + e for e in ends)
        self._good_end += good_end - HEADER_SIZE
        return more


    def _records(self, data: bytes, starts: Sequence[int], ends: Sequence[int], seq: int,
                 prev: bytes) -> list[StoredEvent]:
        """A few records one by one, checked as :func:`records_table` and the hashes check them (what a follower
        reads between two reads of a busy journal: the columnar walk costs milliseconds whatever the count)."""
        out = []
        for a, b in zip(starts, ends, strict=True):
            body, stored = data[a : b - HASH_SIZE], data[b - HASH_SIZE : b]
            try:
                values, used = decode_fields(body)
            except ValueError as e:
                raise IntegrityError(f"{self.path}: a record after offset {self._good_end} does not parse: {e}") from e
            if used != len(body) or values[0] != seq:
                raise IntegrityError(f"{self.path}: a record after offset {self._good_end} is out of seq or has "
                                     "bytes after its fields")
            if event_hash(prev, body) != stored:
                raise IntegrityError(f"{self.path}: a record after offset {self._good_end} does not match its hash")
            row: tuple[Any, ...] = (*values, prev, stored)  # the fields, then prev_hash and hash
            out.append(StoredEvent(*row))
            seq, prev = seq + 1, stored
        return out


_FEW_RECORDS = 32  # up to this many new records, a follower reads them one by one
_FOLLOW_WINDOW = 64 << 10  # a follower's first read of new bytes


# The writer's word on what is durable: its current file (by first seq) and the offset past its last frame fsync'd,
# rewritten after every fsync (not fsync'd itself: a reader on the machine reads what the writer wrote). A reader
# checks every frame and hands over the older files' events, that one's before the offset, none of a newer one: an
# event once its append can return, never before (FORMAT.md 11). Without the file (a writer of an earlier version),
# every whole frame's.
DURABLE_NAME = "DURABLE"
_DURABLE = struct.Struct(">QQI")  # first seq, offset, CRC-32 of the two: a read that caught a write half done fails it
_NOTHING = (0, 0)  # what a DURABLE that does not read says: nothing of any file is durable past its header


def durable_record(first_seq: int, end: int) -> bytes:
    """DURABLE's 20 bytes (FORMAT.md 11, "What is durable")."""
    body = struct.pack(">QQ", first_seq, end)
    return body + struct.pack(">I", zlib.crc32(body))


def write_durable(fd: int, first_seq: int, end: int) -> None:
    os.pwrite(fd, durable_record(first_seq, end), 0)


def read_durable(directory: Path) -> tuple[int, int] | None:
    """(first seq of the file, offset) from ``directory``'s DURABLE file, or None without one. A file that is not
    a regular one, or whose record does not check (read while written, or tampered with), says nothing is durable:
    the events wait, none is handed over early."""
    for _ in range(3):
        try:
            fd = os.open(directory / DURABLE_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError:
            return _NOTHING  # a symlink, or no access
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return _NOTHING
            data = os.pread(fd, _DURABLE.size, 0)
        finally:
            os.close(fd)
        if len(data) == _DURABLE.size:
            first, end, crc = _DURABLE.unpack(data)
            if zlib.crc32(data[:16]) == crc:
                return first, end
        time.sleep(0.0001)
    return _NOTHING


def durable_limit(durable: tuple[int, int] | None, first_seq: int) -> int | None:
    """How much of the WAL file whose first seq is ``first_seq`` is durable (None: all of it)."""
    if durable is None or first_seq < durable[0]:
        return None
    return durable[1] if first_seq == durable[0] else HEADER_SIZE


def wal_name(first_seq: int) -> str:
    return f"{first_seq:020d}.wal"


PAYLOADS_DIR = "payloads"  # a stream's WAL directory holds its unsealed large payloads here (FORMAT.md 3.5, 11)


def list_wal_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.wal") if p.stem.isdigit())
