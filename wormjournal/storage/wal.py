"""The write-ahead log's files: their format, and reading them back authenticated (FORMAT.md 11).

A WAL file is ``<first_seq, 20 digits>.wal`` in the stream's WAL directory::

    header  = MAGIC(8) || u64be first_seq || prev_hash(32) || u32be crc32(preceding bytes)
    frame   = u32be body_len || u32be crc32(body || mac) || body || mac(32)
    body    = u32be count || count * (u32be len || encode_fields(...) || hash(32))
    mac     = HMAC-SHA256(WAL key, WAL_TAG || STR(journal id) || STR(stream) || body)

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

import dataclasses
import hashlib
import hmac
import struct
import zlib
from pathlib import Path

from ..errors import ConfigError, IntegrityError
from ..events import HASH_SIZE, Kind, StoredEvent, decode_fields, encode_value, event_hash

MAGIC = b"WJWAL\x00\x02\n"
MAGIC_V1 = b"WJWAL\x00\x01\n"  # frames without a MAC: refused (FORMAT.md 11)
HEADER_SIZE = len(MAGIC) + 8 + HASH_SIZE + 4
_FRAME_HEAD = struct.Struct(">II")
WAL_TAG = b"wormjournal:wal:v2\x00"
MAC_SIZE = 32


class WalMac:
    """The frames' authenticator: HMAC-SHA256 under the WAL key, bound to one journal and stream."""

    def __init__(self, key: bytes, journal_id: str, stream: str) -> None:
        if len(key) != 32:
            raise ConfigError("the WAL key is not 32 bytes")
        self._base = hmac.new(key, WAL_TAG + encode_value(Kind.STR, journal_id) + encode_value(Kind.STR, stream),
                              hashlib.sha256)

    def tag(self, body: bytes | memoryview) -> bytes:
        h = self._base.copy()
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
    def decode(cls, data: bytes) -> WalHeader:
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


def encode_frame(records: list[tuple[bytes, bytes]], mac: WalMac) -> bytes:
    """One frame holding (encoded fields, hash) records, authenticated by ``mac``."""
    parts = [struct.pack(">I", len(records))]
    for enc, h in records:
        parts.append(struct.pack(">I", len(enc) + HASH_SIZE))
        parts.append(enc)
        parts.append(h)
    body = b"".join(parts)
    tail = body + mac.tag(body)
    return _FRAME_HEAD.pack(len(body), zlib.crc32(tail)) + tail


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


def _refuse_damage_before_frames(path: Path, data: bytes, pos: int, seq: int, mac: WalMac) -> None:
    """Raise IntegrityError if a valid frame follows the bad one at ``pos``.

    A torn tail is the end of the file, never followed by a valid frame; a bad
    frame with valid frames after it is damage in the middle, and cutting it off
    would drop acknowledged events. The scan costs time only after a crash.
    """
    view = memoryview(data)
    for off in range(pos + 1, len(data) - _FRAME_HEAD.size - _MIN_BODY + 1):
        if _frame_continues_at(view, off, seq, mac):
            raise IntegrityError(
                f"{path}: the frame at offset {pos} is damaged, but a valid frame follows at offset {off}: "
                "this is not a torn tail, and cutting it would lose acknowledged events"
            )


def read_wal(path: Path, mac: WalMac) -> WalContents:
    """Read a WAL file, stopping at a torn tail: a last frame that is short or fails its CRC.

    Every whole frame must carry the writer's MAC, and every record is checked against
    the chain: its hash must be the event hash of its fields after the previous record's
    hash. Raises IntegrityError otherwise, and when a bad frame is followed by a valid
    one (damage, not a torn tail).
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
            end + MAC_SIZE > len(data)
            or not _MIN_BODY <= body_len <= MAX_FRAME_BYTES
            or zlib.crc32(data[pos + _FRAME_HEAD.size : end + MAC_SIZE]) != crc
        ):
            _refuse_damage_before_frames(path, data, pos, seq, mac)
            break
        body = data[pos + _FRAME_HEAD.size : end]
        if not hmac.compare_digest(mac.tag(body), data[end : end + MAC_SIZE]):
            raise IntegrityError(f"{path}: the frame at offset {pos} is whole but not authenticated by the writer's "
                                 "WAL key (forged, or the WAL of another key directory)")
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
                # values are the FIELDS, exactly (decode_fields); mypy cannot count a tuple[Any, ...]
                batch.append(StoredEvent(*values, prev_hash=prev, hash=h))  # type: ignore[misc]
                prev = h
                seq += 1
        except (ValueError, struct.error) as e:
            raise IntegrityError(f"{path}: frame at offset {pos} passes its CRC but does not parse: {e}") from e
        events.extend(batch)
        pos = end + MAC_SIZE
    return WalContents(path, header, events, pos, len(data))


def wal_name(first_seq: int) -> str:
    return f"{first_seq:020d}.wal"


def list_wal_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.wal") if p.stem.isdigit())
