"""The Thrift compact protocol, as Parquet writes its footer, page index and page headers.

Just enough to read a footer's column chunks and offset indexes and to write a
footer back with other offsets: a struct decodes to ``{field id: (type, value)}``
in field order, a list to ``(element type, [values])``, and encodes back to the
same bytes. pyarrow reads Parquet but does not expose the offset index, which says
where each page starts; :mod:`wormjournal.segments.pages` uses it to fetch a few
pages of a segment instead of whole row groups.
"""

from __future__ import annotations

import struct
from typing import Any

from .. import native
from ..errors import PageLayoutError

STOP, TRUE, FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(13)

Struct = dict[int, tuple[int, Any]]


class _Reader:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes | memoryview, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise PageLayoutError("truncated")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            if shift == 63 and (b & 0x7F) > 1:
                raise PageLayoutError("varint too long")  # over 64 bits
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise PageLayoutError("varint too long")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise PageLayoutError("truncated")
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def value(self, kind: int, depth: int) -> Any:
        if depth > 32:
            raise PageLayoutError("nested too deep")
        if kind in (TRUE, FALSE):  # a bool in a collection: one byte
            return self.byte() == TRUE
        if kind == BYTE:
            b = self.byte()
            return b - 256 if b > 127 else b
        if kind in (I16, I32, I64):
            return self.zigzag()
        if kind == DOUBLE:
            return struct.unpack("<d", self.take(8))[0]
        if kind == BINARY:
            return self.take(self.varint())
        if kind in (LIST, SET):
            head = self.byte()
            size, elem = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            if size > self.end - self.pos:
                raise PageLayoutError("list longer than its bytes")
            return elem, [self.value(elem, depth + 1) for _ in range(size)]
        if kind == MAP:
            size = self.varint()
            if not size:
                return 0, 0, []
            if size > self.end - self.pos:
                raise PageLayoutError("map longer than its bytes")
            types = self.byte()
            kt, vt = types >> 4, types & 0x0F
            return kt, vt, [(self.value(kt, depth + 1), self.value(vt, depth + 1)) for _ in range(size)]
        if kind == STRUCT:
            return self.struct(depth + 1)
        raise PageLayoutError(f"unknown type {kind}")

    def struct(self, depth: int = 0) -> Struct:
        out: Struct = {}
        last = 0
        while True:
            head = self.byte()
            kind = head & 0x0F
            if kind == STOP:
                return out
            delta = head >> 4
            fid = last + delta if delta else self.zigzag()
            out[fid] = (kind, True if kind == TRUE else False if kind == FALSE else self.value(kind, depth))
            last = fid


def decode(data: bytes | memoryview, pos: int = 0, end: int | None = None) -> tuple[Struct, int]:
    """The struct at ``pos`` and the offset just after it (the C extension's decoder when there is one: the
    same values, or the same refusal). Raises PageLayoutError."""
    if native.module is not None:
        try:
            return native.module.thrift_decode(data, pos, len(data) if end is None else end)  # type: ignore[no-any-return]
        except ValueError as e:
            raise PageLayoutError(str(e)) from None
    return decode_py(data, pos, end)


def decode_py(data: bytes | memoryview, pos: int = 0, end: int | None = None) -> tuple[Struct, int]:
    """:func:`decode` in Python."""
    r = _Reader(data, pos, end)
    try:
        return r.struct(), r.pos
    except IndexError as e:
        raise PageLayoutError("truncated") from e


def _varint(out: bytearray, n: int) -> None:
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def _zigzag(out: bytearray, n: int) -> None:
    _varint(out, (n << 1) ^ (n >> 63) if n < 0 else n << 1)


class Raw:
    """A value already encoded: written as it is (for the parts of a struct that are written many times)."""

    __slots__ = ("data",)

    def __init__(self, kind: int, value: Any) -> None:
        out = bytearray()
        _value(out, kind, value)
        self.data = bytes(out)

    @classmethod
    def of(cls, data: bytes) -> Raw:
        raw = cls.__new__(cls)
        raw.data = data
        return raw


def put_field(out: bytearray, fid: int, kind: int, value: int | bytes) -> None:
    """An integer (or an encoded struct, ``kind`` STRUCT) field in the long form, whatever field came before
    it (Thrift readers take fields in any order): for appending fields to a struct encoded ahead."""
    out.append(kind)
    _zigzag(out, fid)
    if isinstance(value, bytes):
        out += value
    else:
        _zigzag(out, value)


def _value(out: bytearray, kind: int, v: Any) -> None:
    if type(v) is Raw:
        out += v.data
    elif kind in (TRUE, FALSE):
        out.append(TRUE if v else FALSE)
    elif kind == BYTE:
        out.append(v & 0xFF)
    elif kind in (I16, I32, I64):
        _zigzag(out, v)
    elif kind == DOUBLE:
        out += struct.pack("<d", v)
    elif kind == BINARY:
        _varint(out, len(v))
        out += v
    elif kind in (LIST, SET):
        elem, items = v
        list_header(out, len(items), elem)
        for item in items:
            _value(out, elem, item)
    elif kind == MAP:
        kt, vt, items = v
        _varint(out, len(items))
        if items:
            out.append(kt << 4 | vt)
            for k, x in items:
                _value(out, kt, k)
                _value(out, vt, x)
    elif kind == STRUCT:
        _struct(out, v)
    else:
        raise PageLayoutError(f"unknown type {kind}")


def list_header(out: bytearray, size: int, elem: int) -> None:
    if size < 15:
        out.append(size << 4 | elem)
    else:
        out.append(0xF0 | elem)
        _varint(out, size)


def _struct(out: bytearray, s: Struct) -> None:
    last = 0
    for fid in sorted(s):
        kind, v = s[fid]
        if kind in (TRUE, FALSE):
            kind = TRUE if v else FALSE
        if 0 < fid - last <= 15:
            out.append((fid - last) << 4 | kind)
        else:
            out.append(kind)
            _zigzag(out, fid)
        if kind not in (TRUE, FALSE):
            _value(out, kind, v)
        last = fid
    out.append(STOP)


def encode(s: Struct) -> bytes:
    out = bytearray()
    _struct(out, s)
    return bytes(out)


def page_locations(data: bytes | memoryview, pos: int, end: int) -> list[tuple[int, int, int]]:
    """The (offset, compressed size, first row) of each page of a Parquet OffsetIndex struct at ``pos``
    (in C when it can: no object per page while parsing). Raises PageLayoutError."""
    return list(zip(*page_columns(data, pos, end), strict=True))


Columns = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def page_columns(data: bytes | memoryview, pos: int, end: int) -> Columns:
    """:func:`page_locations` as three tuples: the pages' offsets, compressed sizes and first rows."""
    if native.module is not None:
        try:
            packed = native.module.thrift_page_locations(data, pos, end)
        except ValueError as e:
            raise PageLayoutError(str(e)) from None
        cells = struct.unpack(f"<{len(packed) // 8}q", packed)
        return cells[0::3], cells[1::3], cells[2::3]
    pages = page_locations_py(data, pos, end)
    return tuple(p[0] for p in pages), tuple(p[1] for p in pages), tuple(p[2] for p in pages)


def page_locations_py(data: bytes | memoryview, pos: int, end: int) -> list[tuple[int, int, int]]:
    """:func:`page_locations` in Python."""
    index, _ = decode_py(data, pos, end)
    try:
        kind, (elem, locations) = index[1]
        if kind != LIST or elem != STRUCT:
            raise PageLayoutError("page locations are not a list of structs")
        out = []
        for loc in locations:
            fields = [loc.get(k) for k in (1, 2, 3)]
            if any(f is None or f[0] not in (I32, I64) for f in fields):
                raise PageLayoutError("a page location lacks a field")
            out.append((fields[0][1], fields[1][1], fields[2][1]))
        return out
    except KeyError:
        raise PageLayoutError("no page locations") from None
