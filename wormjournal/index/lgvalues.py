"""LangGraph's serialized values read as plain data, never as the objects they name (FORMAT.md 3.4).

LangGraph's serializer (``JsonPlusSerializer``) writes a value as a type name and bytes: ``msgpack``
(whose ext types name a Python module, a class and the arguments to construct it), ``json``,
``bytes``, ``bytearray``, ``null``, or ``pickle``. Decoding them as LangGraph does imports the
named modules and calls the named constructors, which an auditor's reader must never do with stored
bytes. Here they become plain data instead: msgpack is decoded by the small decoder below (the core
has no msgpack dependency, and an auditor needs no LangGraph), and each constructor ext type becomes
a description, ``{"$type": "module.Name", ...}``:

- a keyword-argument or pydantic object (LangChain messages, dataclasses, named tuples):
  ``{"$type": ..., **its fields}`` (its fields under ``"fields"`` should one be named ``$type``);
- a one-argument constructor (UUID, Decimal, set, Enum ...): ``{"$type": ..., "value": arg}``;
- a positional-argument constructor (Path, date, Send ...): ``{"$type": ..., "args": [...]}``;
- a class method called with one argument (datetime.fromisoformat):
  ``{"$type": ..., "method": name, "value": arg}``;
- a numpy array: ``{"$type": "numpy.ndarray", "dtype", "shape", "order", "data"}`` (data as bytes);
- a delta channel's snapshot: the value it holds (as LangGraph's channels read it).

What cannot be read this way is an ``{"$undecoded": what, "size": n, "sha256": hex}`` marker: a pickle
(never unpickled), an unknown serializer type or ext type, bytes that are not msgpack or JSON. None of
this raises, imports or calls anything named by the bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
from typing import Any

TYPE_KEY = "$type"
UNDECODED_KEY = "$undecoded"
# LangGraph's msgpack ext codes (langgraph.checkpoint.serde.jsonplus, EXT_*), and msgpack's timestamp
EXT_CONSTRUCTOR_SINGLE_ARG = 0
EXT_CONSTRUCTOR_POS_ARGS = 1
EXT_CONSTRUCTOR_KW_ARGS = 2
EXT_METHOD_SINGLE_ARG = 3
EXT_PYDANTIC_V1 = 4
EXT_PYDANTIC_V2 = 5
EXT_NUMPY_ARRAY = 6
EXT_DELTA_SNAPSHOT = 7
EXT_TIMESTAMP = -1
MAX_DEPTH = 256  # nesting deeper than this is refused (LangGraph's own values are far shallower)


class _Malformed(Exception):
    """Bytes that are not the msgpack they claim to be (caught here: decoding never raises)."""


def undecoded(what: str, data: bytes) -> dict[str, Any]:
    """The marker of bytes that are not read: what they are, their size and SHA-256."""
    return {UNDECODED_KEY: what, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def is_undecoded(value: Any) -> bool:
    return isinstance(value, dict) and UNDECODED_KEY in value


def decode_typed(kind: str, data: bytes) -> Any:
    """A ``(type, bytes)`` pair of LangGraph's serializer as plain data (see the module docstring).
    Never raises on content: what it cannot read is an ``$undecoded`` marker."""
    if kind == "null":
        return None
    if kind in ("bytes", "bytearray"):
        return bytes(data)
    if kind == "msgpack":
        return decode_msgpack(data)
    if kind == "json":
        try:
            return json.loads(data)  # LangChain's {"lc": ...} constructor objects stay the plain objects they are
        except (ValueError, RecursionError):
            return undecoded("json that does not parse", data)
    if kind == "pickle":
        return undecoded("pickle (never unpickled)", data)
    return undecoded(f"serializer type {kind[:64]!r}", data)


def decode_msgpack(data: bytes) -> Any:
    """msgpack bytes as plain data, LangGraph's ext types as descriptions; an ``$undecoded`` marker when
    they are not one whole msgpack value."""
    try:
        value, end = _Unpacker(data).read(0, 0)
        if end != len(data):
            raise _Malformed(f"{len(data) - end} bytes after the value")
    except _Malformed as e:
        return undecoded(f"msgpack that does not decode: {e}", data)
    return value


class _Unpacker:
    """msgpack (the spec's every format), reading positions in one buffer; raises _Malformed."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)

    def _take(self, pos: int, n: int) -> tuple[bytes, int]:
        if n < 0 or pos + n > len(self.data):
            raise _Malformed(f"a length of {n} runs past the end")
        return bytes(self.data[pos:pos + n]), pos + n

    def _uint(self, pos: int, size: int) -> tuple[int, int]:
        raw, pos = self._take(pos, size)
        return int.from_bytes(raw, "big"), pos

    def _count(self, pos: int, size: int) -> tuple[int, int]:
        n, pos = self._uint(pos, size)
        if n > len(self.data) - pos:  # every element takes at least a byte: no allocation beyond the input
            raise _Malformed(f"a count of {n} exceeds the bytes left")
        return n, pos

    def read(self, pos: int, depth: int) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise _Malformed(f"nested deeper than {MAX_DEPTH}")
        if pos >= len(self.data):
            raise _Malformed("it ends inside a value")
        b = self.data[pos]
        pos += 1
        if b <= 0x7F:
            return b, pos
        if b >= 0xE0:
            return b - 0x100, pos
        if 0x80 <= b <= 0x8F:
            return self._map(pos, b & 0x0F, depth)
        if 0x90 <= b <= 0x9F:
            return self._array(pos, b & 0x0F, depth)
        if 0xA0 <= b <= 0xBF:
            return self._str(pos, b & 0x1F)
        if b == 0xC0:
            return None, pos
        if b in (0xC2, 0xC3):
            return b == 0xC3, pos
        if b in (0xC4, 0xC5, 0xC6):
            n, pos = self._uint(pos, 1 << (b - 0xC4))
            return self._take(pos, n)
        if b in (0xC7, 0xC8, 0xC9):
            n, pos = self._uint(pos, 1 << (b - 0xC7))
            return self._ext(pos, n, depth)
        if b == 0xCA:
            raw, pos = self._take(pos, 4)
            return struct.unpack(">f", raw)[0], pos
        if b == 0xCB:
            raw, pos = self._take(pos, 8)
            return struct.unpack(">d", raw)[0], pos
        if 0xCC <= b <= 0xCF:
            return self._uint(pos, 1 << (b - 0xCC))
        if 0xD0 <= b <= 0xD3:
            raw, pos = self._take(pos, 1 << (b - 0xD0))
            return int.from_bytes(raw, "big", signed=True), pos
        if 0xD4 <= b <= 0xD8:
            return self._ext(pos, 1 << (b - 0xD4), depth)
        if 0xD9 <= b <= 0xDB:
            n, pos = self._uint(pos, 1 << (b - 0xD9))
            return self._str(pos, n)
        if b in (0xDC, 0xDD):
            n, pos = self._count(pos, 2 if b == 0xDC else 4)
            return self._array(pos, n, depth)
        if b in (0xDE, 0xDF):
            n, pos = self._count(pos, 2 if b == 0xDE else 4)
            return self._map(pos, n, depth)
        raise _Malformed(f"byte 0x{b:02x} begins no msgpack value")  # 0xc1, never used

    def _str(self, pos: int, n: int) -> tuple[str, int]:
        raw, pos = self._take(pos, n)
        try:
            return raw.decode("utf-8"), pos
        except UnicodeDecodeError:
            return raw.decode("utf-8", "surrogateescape"), pos  # as LangGraph writes lone surrogates replaced

    def _array(self, pos: int, n: int, depth: int) -> tuple[list[Any], int]:
        items = []
        for _ in range(n):
            item, pos = self.read(pos, depth + 1)
            items.append(item)
        return items, pos

    def _map(self, pos: int, n: int, depth: int) -> tuple[dict[Any, Any], int]:
        out: dict[Any, Any] = {}
        for _ in range(n):
            key, pos = self.read(pos, depth + 1)
            value, pos = self.read(pos, depth + 1)
            out[_hashable(key)] = value
        return out, pos

    def _ext(self, pos: int, n: int, depth: int) -> tuple[Any, int]:
        raw, pos = self._take(pos, 1)
        code = int.from_bytes(raw, "big", signed=True)
        data, pos = self._take(pos, n)
        return self._describe(code, data, depth), pos

    def _describe(self, code: int, data: bytes, depth: int) -> Any:
        """A LangGraph ext type as plain data: the module and class it names are only ever a string."""
        if code == EXT_TIMESTAMP:
            return _timestamp(data)
        if not EXT_CONSTRUCTOR_SINGLE_ARG <= code <= EXT_DELTA_SNAPSHOT:
            return undecoded(f"msgpack ext type {code}", data)
        try:
            inner, end = _Unpacker(data).read(0, depth + 1)
            if end != len(data):
                raise _Malformed("bytes after the value")
        except _Malformed as e:
            return undecoded(f"msgpack ext type {code} that does not decode: {e}", data)
        if code == EXT_DELTA_SNAPSHOT:
            return inner
        if code == EXT_NUMPY_ARRAY:
            if isinstance(inner, list) and len(inner) == 4:
                dtype, shape, order, buf = inner
                return {TYPE_KEY: "numpy.ndarray", "dtype": dtype, "shape": shape, "order": order, "data": buf}
            return undecoded("a numpy array ext that is not [dtype, shape, order, data]", data)
        sizes = {EXT_METHOD_SINGLE_ARG: (4,), EXT_PYDANTIC_V2: (3, 4)}.get(code, (3,))
        if not (isinstance(inner, list) and len(inner) in sizes and all(isinstance(s, str) for s in inner[:2])):
            return undecoded(f"msgpack ext type {code} that is not [module, name, ...]", data)
        name = f"{inner[0]}.{inner[1]}"
        arg = inner[2]
        if code == EXT_CONSTRUCTOR_SINGLE_ARG:
            return {TYPE_KEY: name, "value": arg}
        if code == EXT_CONSTRUCTOR_POS_ARGS:
            return {TYPE_KEY: name, "args": arg}
        if code == EXT_METHOD_SINGLE_ARG:
            return {TYPE_KEY: name, "method": inner[3], "value": arg}
        # keyword arguments, pydantic v1 and v2: the object's fields
        if isinstance(arg, dict) and TYPE_KEY not in arg:
            return {TYPE_KEY: name, **arg}
        return {TYPE_KEY: name, "fields": arg}


def _hashable(key: Any) -> Any:
    """A map key as a dict key: arrays and maps (which msgpack allows) as their JSON text."""
    if isinstance(key, (list, dict)):
        return json.dumps(key, sort_keys=True, default=repr)
    return key


def _timestamp(data: bytes) -> Any:
    """msgpack's timestamp ext (-1) as an ISO 8601 UTC string."""
    try:
        if len(data) == 4:
            seconds, nanos = int.from_bytes(data, "big"), 0
        elif len(data) == 8:
            value = int.from_bytes(data, "big")
            seconds, nanos = value & 0x3_FFFF_FFFF, value >> 34
        elif len(data) == 12:
            nanos, seconds = struct.unpack(">Iq", data)
        else:
            return undecoded("a msgpack timestamp of unknown length", data)
        when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds, microseconds=nanos // 1000)
        return when.isoformat()
    except (OverflowError, ValueError):
        return undecoded("a msgpack timestamp out of range", data)


def jsonable(value: Any) -> Any:
    """A decoded value as JSON can hold it: bytes as ``{"$bytes": base64}``, a map key that JSON cannot
    hold (bytes, a float ...) as its ``repr``, tuples as lists."""
    if isinstance(value, dict):
        return {k if isinstance(k, (str, int, bool)) or k is None else repr(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    return value
