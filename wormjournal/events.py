"""The event model: event types, validation, canonical bytes and the hash chain.

The byte-level constructions here are specified in FORMAT.md ("Event hash");
the test vectors there are checked by ``tests/test_format_vectors.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from . import native
from .errors import ValidationError

# The optional C extension (wormjournal.native): the same bytes as the Python functions here, faster.
_native: Any = native.module
NATIVE = _native is not None

EVENT_TAG = b"wormjournal:event:v1\x00"
GENESIS_TAG = b"wormjournal:genesis:v1\x00"
SUBJECT_TAG = b"wormjournal:subject:v1\x00"
HASH_SIZE = 32
NULL_MARK = b"\xff\xff\xff\xff"
MAX_ID_BYTES = 256
DEFAULT_MAX_EVENT_BYTES = 256 << 20  # type, ids and payload; a large payload is stored apart (FORMAT.md 3.5)


class EventType(StrEnum):
    """The known event types. Others are written as ``custom:<namespace>.<name>``."""

    EXECUTION_STARTED = "execution_started"
    EXECUTION_PAUSED = "execution_paused"
    EXECUTION_RESUMED = "execution_resumed"
    EXECUTION_COMPLETED = "execution_completed"
    EXECUTION_FAILED = "execution_failed"
    EXECUTION_CANCELLED = "execution_cancelled"
    NODE_STARTED = "node_started"
    NODE_COMPLETED = "node_completed"
    NODE_FAILED = "node_failed"
    NODE_DISCOVERED = "node_discovered"
    STEP_STARTED = "step_started"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    STEP_DISCOVERED = "step_discovered"
    STATE_UPDATED = "state_updated"
    EDGE_SELECTED = "edge_selected"
    LLM_REQUESTED = "llm_requested"
    LLM_COMPLETED = "llm_completed"
    TOOL_CALLED = "tool_called"
    TOOL_RETURNED = "tool_returned"
    HUMAN_INTERRUPTED = "human_interrupted"
    HUMAN_APPROVED = "human_approved"
    HUMAN_REJECTED = "human_rejected"
    HUMAN_MODIFIED = "human_modified"
    CHECKPOINT_SAVED = "checkpoint_saved"
    ARTIFACT_STORED = "artifact_stored"
    GOAL_EVALUATED = "goal_evaluated"
    RETRY_SCHEDULED = "retry_scheduled"
    EXCEPTION_RAISED = "exception_raised"
    ERASURE_RECEIPT = "erasure_receipt"  # appended by shred (FORMAT.md, section 3.2)
    # Appended by the retention commands (FORMAT.md, section 3.3)
    LEGAL_HOLD_PLACED = "legal_hold_placed"
    LEGAL_HOLD_RELEASED = "legal_hold_released"
    RETENTION_EXTENDED = "retention_extended"
    RETENTION_POLICY_SET = "retention_policy_set"


KNOWN_EVENT_TYPES = frozenset(t.value for t in EventType)
# Types only the library appends: a caller's append of one is refused.
HANDLER_FAILED = "custom:wormjournal.handler_failed"  # a subscription's handler gave up on an event (FORMAT.md 3.6)
RESERVED_EVENT_TYPES = frozenset({"erasure_receipt", "legal_hold_placed", "legal_hold_released",
                                  "retention_extended", "retention_policy_set", HANDLER_FAILED})
_BAD_ID_CHAR = re.compile("[\x00-\x1f\x7f-\x9f/\\\\\ud800-\udfff]")
_CUSTOM_TYPE = re.compile(r"custom:[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+")


class Kind:
    """How a stored field is encoded (see FORMAT.md, "Field encoding")."""

    INT = "int"
    STR = "str"
    BYTES = "bytes"


# The stored fields, in hashing order. ``prev_hash`` and ``hash`` are the chain fields.
FIELDS: tuple[tuple[str, str, bool], ...] = (
    # name, kind, nullable
    ("seq", Kind.INT, False),
    ("event_id", Kind.STR, False),
    ("ts", Kind.INT, False),
    ("event_type", Kind.STR, False),
    ("tenant_id", Kind.STR, True),
    ("execution_id", Kind.STR, False),
    ("thread_id", Kind.STR, True),
    ("node", Kind.STR, True),
    ("step_id", Kind.STR, True),
    ("parent_event_id", Kind.STR, True),
    ("correlation_id", Kind.STR, True),
    ("subject_id", Kind.STR, True),
    ("exec_prev_seq", Kind.INT, True),
    ("payload_codec", Kind.STR, False),
    ("payload_key_id", Kind.STR, True),
    ("payload", Kind.BYTES, False),
)
FIELD_NAMES = tuple(name for name, _, _ in FIELDS)

# Fields a caller may give to ``append``; everything else is refused.
ID_FIELDS = (
    "event_id",
    "tenant_id",
    "execution_id",
    "thread_id",
    "node",
    "step_id",
    "parent_event_id",
    "correlation_id",
    "subject_id",
)
INPUT_FIELDS = frozenset(ID_FIELDS + ("event_type", "payload", "ts"))
ASSIGNED_FIELDS = frozenset(
    {"seq", "exec_prev_seq", "payload_codec", "payload_key_id", "prev_hash", "hash"}
)


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event exactly as stored: every hashed field plus the chain fields.

    ``payload`` holds the stored bytes (see ``payload_codec``); use
    :func:`wormjournal.payload.decode_payload` to get the JSON value back.
    """

    seq: int
    event_id: str
    ts: int
    event_type: str
    tenant_id: str | None
    execution_id: str
    thread_id: str | None
    node: str | None
    step_id: str | None
    parent_event_id: str | None
    correlation_id: str | None
    subject_id: str | None
    exec_prev_seq: int | None
    payload_codec: str
    payload_key_id: str | None
    payload: bytes
    prev_hash: bytes
    hash: bytes

    def field_values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in FIELD_NAMES)

    @property
    def timestamp(self) -> dt.datetime:
        return micros_to_datetime(self.ts)

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; bytes as lowercase hex, ``ts`` as RFC 3339."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bytes):
                value = value.hex()
            out[f.name] = value
        out["ts"] = format_ts(self.ts)
        return out

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> StoredEvent:
        """The inverse of :meth:`to_json_dict`."""
        kwargs = dict(data)
        kwargs["ts"] = parse_ts(kwargs["ts"], "ts")
        for name in ("payload", "prev_hash", "hash"):
            kwargs[name] = bytes.fromhex(kwargs[name])
        return cls(**kwargs)


# -- canonical bytes ---------------------------------------------------------


_pack_len = struct.Struct(">I").pack
_pack_int = struct.Struct(">Iq").pack


def _encode_int(value: int | None) -> bytes:
    return NULL_MARK if value is None else _pack_int(8, value)


def _encode_str(value: str | None) -> bytes:
    if value is None:
        return NULL_MARK
    raw = value.encode("utf-8")
    return _pack_len(len(raw)) + raw


def _encode_bytes(value: bytes | None) -> bytes:
    return NULL_MARK if value is None else _pack_len(len(value)) + bytes(value)


_ENCODERS: dict[str, Callable[[Any], bytes]] = {Kind.INT: _encode_int, Kind.STR: _encode_str, Kind.BYTES: _encode_bytes}
_FIELD_ENCODERS = tuple(_ENCODERS[kind] for _, kind, _ in FIELDS)


def encode_value(kind: str, value: Any) -> bytes:
    """The canonical bytes of one field value (FORMAT.md, "Field encoding")."""
    return _ENCODERS[kind](value)


# Each stored field's kind as the C extension takes it (i INT, s STR, b BYTES), in FIELDS order.
KIND_CODES = bytes(ord({Kind.INT: "i", Kind.STR: "s", Kind.BYTES: "b"}[kind]) for _, kind, _ in FIELDS)


def encode_fields(values: Sequence[Any]) -> bytes:
    """The canonical bytes of an event's stored fields, in ``FIELDS`` order."""
    if _native is not None:
        return _native.encode_fields(values, KIND_CODES)  # type: ignore[no-any-return]
    return encode_fields_py(values)


def encode_fields_py(values: Sequence[Any]) -> bytes:
    """:func:`encode_fields` in Python (the C extension's fallback, and its reference in the tests)."""
    if len(values) != len(_FIELD_ENCODERS):
        raise ValueError(f"expected {len(_FIELD_ENCODERS)} field values, got {len(values)}")
    return b"".join([enc(v) for enc, v in zip(_FIELD_ENCODERS, values, strict=True)])


_NULLABLE_CODES = bytes(ord("1" if nullable else "0") for _, _, nullable in FIELDS)


def decode_fields(data: bytes) -> tuple[tuple[Any, ...], int]:
    """Parse ``encode_fields`` output; returns the values and the bytes consumed. Raises ValueError."""
    if _native is not None:
        parsed = _native.decode_fields(data, KIND_CODES, _NULLABLE_CODES)
        if parsed is not None:
            return parsed  # type: ignore[no-any-return]
    return decode_fields_py(data)


def decode_fields_py(data: bytes) -> tuple[tuple[Any, ...], int]:
    """:func:`decode_fields` in Python (what refuses, with the reason, whatever the C extension could not parse)."""
    values: list[Any] = []
    pos = 0
    for name, kind, nullable in FIELDS:
        if pos + 4 > len(data):
            raise ValueError(f"truncated before field {name}")
        (length,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if length == 0xFFFFFFFF:
            if not nullable:
                raise ValueError(f"field {name} is null")
            values.append(None)
            continue
        if pos + length > len(data):
            raise ValueError(f"truncated inside field {name}")
        raw = data[pos : pos + length]
        pos += length
        if kind == Kind.INT:
            if length != 8:
                raise ValueError(f"field {name} has {length} bytes, not 8")
            values.append(struct.unpack(">q", raw)[0])
        elif kind == Kind.STR:
            values.append(raw.decode("utf-8"))
        else:
            values.append(bytes(raw))
    return tuple(values), pos


def event_hash(prev_hash: bytes, encoded_fields: bytes) -> bytes:
    """SHA-256(EVENT_TAG || prev_hash || canonical fields)."""
    return hashlib.sha256(EVENT_TAG + prev_hash + encoded_fields).digest()


def genesis_hash(journal_id: str, stream: str) -> bytes:
    """The ``prev_hash`` of a stream's first event; binds the chain to journal and stream."""
    return hashlib.sha256(
        GENESIS_TAG + encode_value(Kind.STR, journal_id) + encode_value(Kind.STR, stream)
    ).digest()


def pseudonymize(key: bytes, subject_id: str) -> str:
    """The stored form of a subject id: a keyed pseudonym, never the raw identifier."""
    mac = hmac.new(key, SUBJECT_TAG + subject_id.encode("utf-8"), hashlib.sha256)
    return "psn:" + mac.hexdigest()[:32]


# -- validation ----------------------------------------------------------------


def check_id(field: str, value: Any, *, where: str | None = None) -> str:
    """Refuse ids that are not non-empty, short, printable, path-safe strings."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, not {type(value).__name__}", where=where)
    if not value:
        raise ValidationError(field, "is empty", where=where)
    if len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise ValidationError(field, f"is longer than {MAX_ID_BYTES} bytes", where=where)
    bad = _BAD_ID_CHAR.search(value)
    if bad is not None:
        ch = bad.group()
        o = ord(ch)
        if ch in "/\\":
            raise ValidationError(field, f"contains path separator {ch!r}", where=where)
        if 0xD800 <= o <= 0xDFFF:
            raise ValidationError(field, "contains a lone surrogate", where=where)
        raise ValidationError(field, f"contains control character U+{o:04X}", where=where)
    if value in (".", ".."):
        raise ValidationError(field, f"{value!r} is not a safe id", where=where)
    return value


def check_event_type(value: Any, *, where: str | None = None) -> str:
    if not isinstance(value, str):
        raise ValidationError("event_type", "must be a string", where=where)
    if value in KNOWN_EVENT_TYPES or _CUSTOM_TYPE.fullmatch(value):
        return value
    raise ValidationError(
        "event_type",
        f"unknown type {value!r}; use a known type or 'custom:<namespace>.<name>'",
        where=where,
    )


# Payload limits, checked before anything is written (FORMAT.md 3, "Payload"): deeper nesting would
# overflow a reader's recursive JSON parser, longer integers do not parse back in Python (4300 digits
# is its int/str conversion limit) and lose precision elsewhere.
MAX_PAYLOAD_DEPTH = 128
MAX_INT_DIGITS = 4300
_INT_LIMIT = 10**MAX_INT_DIGITS


def _check_json_value(value: Any, where: str | None, limit: int) -> None:
    """Refuse what canonical JSON cannot hold or a reader cannot parse back: non-string keys,
    nesting deeper than MAX_PAYLOAD_DEPTH, integers of more than MAX_INT_DIGITS digits, cycles.
    A container subclass with its own items() or __iter__ is refused: it could show this check one value
    and the encoder another. Written out, each value takes at least a byte, so more than ``limit`` values cannot
    fit: they are counted as written, but a container met again (a shared subtree) is walked once, its count and
    height remembered, so that a payload of shared subtrees is refused in the time of its distinct parts."""
    done: dict[int, tuple[int, int]] = {}  # id of a container walked whole -> (values under it, its height)
    stack: list[tuple[Any, int, int]] = [(value, 1, -1)]  # (item, depth, values before it; >= 0: leaving it)
    values = 0
    while stack:
        item, depth, before = stack.pop()
        if before >= 0:  # every child walked: remember the container
            height = 1 + max((done[id(c)][1] for c in (dict.values(item) if isinstance(item, dict) else item)
                              if id(c) in done and isinstance(c, (dict, list, tuple))), default=0)
            done[id(item)] = (values - before, height)
            continue
        if isinstance(item, int) and not isinstance(item, bool):
            if not -_INT_LIMIT < int.__int__(item) < _INT_LIMIT:  # the value the encoder writes
                raise ValidationError("payload", f"holds an integer of more than {MAX_INT_DIGITS} digits",
                                      where=where)
            continue
        if isinstance(item, dict):
            if type(item) is not dict and type(item).items is not dict.items:
                raise ValidationError("payload", f"a {type(item).__name__} with its own items() is not JSON data",
                                      where=where)
            children: Any = dict.values(item)
            for k in dict.keys(item):
                if not isinstance(k, str):
                    raise ValidationError("payload", f"object key {k!r} is not a string", where=where)
        elif isinstance(item, (list, tuple)):
            base = list if isinstance(item, list) else tuple
            if type(item) is not base and type(item).__iter__ is not base.__iter__:
                raise ValidationError("payload", f"a {type(item).__name__} with its own __iter__ is not JSON data",
                                      where=where)
            children = item
        else:
            continue
        seen = done.get(id(item))
        if depth > MAX_PAYLOAD_DEPTH or (seen is not None and depth + seen[1] - 1 > MAX_PAYLOAD_DEPTH):
            raise ValidationError("payload", f"is nested deeper than {MAX_PAYLOAD_DEPTH} levels "
                                  "(or refers to itself)", where=where)  # a cycle ends here too
        values += seen[0] if seen is not None else len(item)
        if values > limit:
            raise ValidationError("payload", f"holds more than {limit} values, over the event limit of {limit} bytes",
                                  where=where)
        if seen is None:
            stack.append((item, depth, values - len(item)))
            stack.extend((child, depth + 1, -1) for child in children
                         if isinstance(child, (dict, list, tuple, int)) and not isinstance(child, bool))


_QUICK_BYTES = 1 << 20  # JSON up to this long is written by the C extension at once, longer JSON checked first

_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any, *, where: str | None = None, limit: int = DEFAULT_MAX_EVENT_BYTES) -> bytes:
    """Canonical JSON bytes of a payload: sorted keys, no spaces, UTF-8, no NaN; of at most ``limit`` values
    (its bytes are checked against the event limit by the caller). Raises ValidationError."""
    if _native is not None:
        # exact JSON types within the limits, written out in at most ``limit`` bytes (so at most ``limit``
        # values); anything else (None) goes the Python way, which writes the same bytes or says what is wrong
        first = min(limit, _QUICK_BYTES)
        out = _native.canonical_json(value, first)
        if out is False and limit > first:
            # A large value: its values counted first, a shared subtree once (refusing a bomb of shared lists at
            # once, where writing it out would take the time of ``limit`` bytes), then written out.
            _check_json_value(value, where, limit)
            out = _native.canonical_json(value, limit)
        if out is False:
            raise ValidationError("payload", f"is over the limit of {limit} bytes as JSON", where=where)
        if out is not None:
            return out  # type: ignore[no-any-return]
    return canonical_json_py(value, where=where, limit=limit)


def canonical_json_py(value: Any, *, where: str | None = None, limit: int = DEFAULT_MAX_EVENT_BYTES) -> bytes:
    """:func:`canonical_json` in Python (the C extension's fallback, and its reference in the tests)."""
    _check_json_value(value, where, limit)
    try:
        text = _JSON.encode(value)
    except (TypeError, ValueError) as e:
        raise ValidationError("payload", f"is not JSON: {e}", where=where) from e
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValidationError("payload", "contains a lone surrogate", where=where) from e


def parse_ts(value: Any, field: str = "ts", *, where: str | None = None) -> int:
    """Microseconds since the Unix epoch (UTC) from an aware datetime or RFC 3339 text."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as e:
            raise ValidationError(field, f"is not an RFC 3339 time: {e}", where=where) from e
    if not isinstance(value, dt.datetime):
        raise ValidationError(field, "must be a datetime or RFC 3339 text", where=where)
    if value.tzinfo is None:
        raise ValidationError(field, "has no time zone; give UTC", where=where)
    try:  # datetime's own subtraction, whatever a subclass defines; its tzinfo may still raise anything
        delta = dt.datetime.__sub__(value, _EPOCH)
    except Exception as e:  # noqa: BLE001 - a time we cannot compute is bad input
        raise ValidationError(field, f"is not a usable time: {e}", where=where) from e
    if type(delta) is not dt.timedelta:
        raise ValidationError(field, "is not a usable time", where=where)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if not MIN_TS <= micros <= MAX_TS:  # every reader turns ts back into a datetime (and a partition date)
        raise ValidationError(field, "is outside UTC years 1 to 9999", where=where)
    return micros


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MIN_TS = (dt.datetime.min.replace(tzinfo=dt.UTC) - _EPOCH) // dt.timedelta(microseconds=1)
MAX_TS = (dt.datetime.max.replace(tzinfo=dt.UTC) - _EPOCH) // dt.timedelta(microseconds=1)


def micros_to_datetime(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=micros)


def datetime_to_micros(value: dt.datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - _EPOCH) // dt.timedelta(microseconds=1)


def format_ts(micros: int) -> str:
    return micros_to_datetime(micros).isoformat(timespec="microseconds").replace("+00:00", "Z")


def canonical_time(text: str) -> bool:
    """Whether ``text`` is a time exactly as FORMAT.md writes one (``2024-06-10T06:15:00.000000Z``)."""
    try:
        return format_ts(parse_ts(text)) == text
    except Exception:  # noqa: BLE001 - ValidationError or ValueError: not a time
        return False


def now_micros() -> int:
    return time.time_ns() // 1000


def uuid7() -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits."""
    return _native.uuid7() if _native is not None else uuid7s(1)[0]


class _RandomPool:
    """``os.urandom`` read 4 KiB at a time: one system call per 400 event ids, not one per append. A child
    process forgets its parent's pool (it would repeat the parent's ids)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._buf, self._pos = b"", 0

    def take(self, n: int) -> bytes:
        with self._lock:
            pos = self._pos
            if pos + n > len(self._buf):
                self._buf, pos = os.urandom(max(4096, n)), 0
            self._pos = pos + n
            return self._buf[pos : pos + n]


_random = _RandomPool()


def uuid7s(n: int) -> list[str]:
    """``n`` UUIDv7s of this millisecond (RFC 9562): 48-bit Unix milliseconds, version 7, 12 random bits,
    variant 0b10, 62 random bits (from ``os.urandom``)."""
    ms = (time.time_ns() // 1_000_000) & ((1 << 48) - 1)
    head = ms.to_bytes(6, "big")
    rand = _random.take(10 * n)
    out = []
    for i in range(0, 10 * n, 10):
        h = (head + bytes((0x70 | (rand[i] & 0x0F), rand[i + 1], 0x80 | (rand[i + 2] & 0x3F)))
             + rand[i + 3 : i + 10]).hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class EventInput:
    """A validated event before the journal assigns seq, encodes and chains it."""

    event_id: str
    ts: int
    event_type: str
    tenant_id: str | None
    execution_id: str
    thread_id: str | None
    node: str | None
    step_id: str | None
    parent_event_id: str | None
    correlation_id: str | None
    subject_id: str | None
    payload_json: bytes


def check_fields(fields: Mapping[str, Any], *, where: str | None = None,
                 new_id: Callable[[], str] = uuid7) -> tuple[str, dict[str, str | None], int, int]:
    """Check one event's fields but its payload (given as a mapping of field names): its type, ids and ``ts``.
    Returns the event type, the ids (``event_id`` made with ``new_id`` when not given), ``ts`` in microseconds
    and the bytes they count towards the event limit. Raises ValidationError naming the field."""
    if not INPUT_FIELDS.issuperset(fields):
        for name in fields:
            if name in ASSIGNED_FIELDS:
                raise ValidationError(name, "is assigned by the journal, not given", where=where)
            if name not in INPUT_FIELDS:
                raise ValidationError(name, "unknown field", where=where)
    if "event_type" not in fields:
        raise ValidationError("event_type", "is required", where=where)
    if fields.get("execution_id") is None:
        raise ValidationError("execution_id", "is required", where=where)
    event_type = fields["event_type"]
    if type(event_type) is not str or event_type not in KNOWN_EVENT_TYPES:
        event_type = check_event_type(event_type, where=where)
    ids: dict[str, str | None] = {}
    size = len(event_type.encode("utf-8"))
    get, bad = fields.get, _BAD_ID_CHAR.search
    for name in ID_FIELDS:
        value = get(name)
        if value is not None:
            # Fast path for the common clean ASCII id of 3 to 64 characters (so not '.' or '..').
            if type(value) is str and 2 < len(value) <= 64 and value.isascii() and not bad(value):
                size += len(value)
            else:
                check_id(name, value, where=where)
                size += len(value.encode("utf-8"))  # bytes, like the payload
        ids[name] = value
    if ids["event_id"] is None:
        ids["event_id"] = new_id()
    ts = fields.get("ts")
    micros = now_micros() if ts is None else parse_ts(ts, where=where)
    return event_type, ids, micros, size


_AT = {name: i for i, name in enumerate(FIELD_NAMES)}
_ID_SLOTS = tuple(_AT[name] for name in ID_FIELDS)
# What the C extension's check of the common case needs to know (its check_fields).
# Its event types: the known ones and the custom ones the Python path has taken (up to _CUSTOM_TYPES_SEEN of them).
_ACCEPTED_TYPES = set(KNOWN_EVENT_TYPES)
_CUSTOM_TYPES_SEEN = 4096
_FIELDS_SPEC = (INPUT_FIELDS, _ACCEPTED_TYPES, "event_type", "payload", "ts", ID_FIELDS, _ID_SLOTS, len(FIELDS),
                _AT["event_type"], _AT["payload"], _AT["execution_id"], _AT["event_id"], _AT["ts"])


def stored_values(fields: Mapping[str, Any], *, where: str | None = None,
                  new_id: Callable[[], str] = uuid7) -> tuple[list[Any], int]:
    """:func:`check_fields`, giving the stored fields' values in FIELDS order (seq, exec_prev_seq, payload_codec
    and payload_key_id None, the payload as given) and the bytes of type and ids towards the event limit. The
    common case in C when the extension is built (``new_id`` is then the extension's :func:`uuid7`); anything
    else in :func:`stored_values_py`."""
    fast = _native.check_fields(fields, _FIELDS_SPEC) if _native is not None else None
    if fast is None:
        values, size = stored_values_py(fields, where=where, new_id=new_id)
        event_type = values[_AT["event_type"]]
        if event_type not in _ACCEPTED_TYPES and len(_ACCEPTED_TYPES) < len(KNOWN_EVENT_TYPES) + _CUSTOM_TYPES_SEEN:
            _ACCEPTED_TYPES.add(event_type)  # checked (a custom type): the C check takes it from now on
        return values, size
    values, size, ts_given = fast  # its own UUIDv7 (uuid7) for an event_id not given; ts now, or as given
    if ts_given:
        values[_AT["ts"]] = parse_ts(values[_AT["ts"]], where=where)
    return values, size


def stored_values_py(fields: Mapping[str, Any], *, where: str | None = None,
                     new_id: Callable[[], str] = uuid7) -> tuple[list[Any], int]:
    """:func:`stored_values` in Python."""
    event_type, ids, ts, size = check_fields(fields, where=where, new_id=new_id)
    values: list[Any] = [None] * len(FIELDS)
    for name, at in zip(ID_FIELDS, _ID_SLOTS, strict=True):
        values[at] = ids[name]
    values[_AT["ts"]], values[_AT["event_type"]], values[_AT["payload"]] = ts, event_type, fields.get("payload")
    return values, size


def check_size(size: int, max_event_bytes: int, where: str | None = None) -> None:
    """Refuse an event of more than ``max_event_bytes`` (its type, ids and canonical JSON payload)."""
    if size > max_event_bytes:
        raise ValidationError("payload", f"event is {size} bytes, over the limit of {max_event_bytes}", where=where)


def validate_event(
    fields: Mapping[str, Any],
    *,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    where: str | None = None,
) -> EventInput:
    """Check one event given as a mapping of field names; raise ValidationError naming the field."""
    event_type, ids, micros, size = check_fields(fields, where=where)
    payload_json = canonical_json(fields.get("payload"), where=where, limit=max_event_bytes)
    check_size(size + len(payload_json), max_event_bytes, where)
    return EventInput(ts=micros, event_type=event_type, payload_json=payload_json, **ids)  # type: ignore[arg-type]
