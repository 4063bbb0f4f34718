"""The event model: validation refusals, canonical bytes, timestamps, ids and round trips."""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import json
import math
import os
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wormjournal.errors import JournalError, ValidationError
from wormjournal.events import (
    DEFAULT_MAX_EVENT_BYTES,
    FIELDS,
    ID_FIELDS,
    KNOWN_EVENT_TYPES,
    MAX_ID_BYTES,
    NULL_MARK,
    EventInput,
    EventType,
    Kind,
    StoredEvent,
    canonical_json,
    check_event_type,
    check_id,
    decode_fields,
    encode_fields,
    encode_value,
    format_ts,
    micros_to_datetime,
    parse_ts,
    uuid7,
    uuid7s,
    validate_event,
)


def event(**overrides: Any) -> dict[str, Any]:
    """A minimal valid event, with overrides (a value of ... removes the field)."""
    fields: dict[str, Any] = {
        "event_type": "tool_called",
        "execution_id": "exec-1",
        "payload": {"tool": "search"},
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not ...}


def refused(fields: dict[str, Any], **kwargs: Any) -> ValidationError:
    with pytest.raises(ValidationError) as exc:
        validate_event(fields, **kwargs)
    assert isinstance(exc.value, JournalError)
    return exc.value


# -- the happy path ----------------------------------------------------------------


def test_valid_event_is_accepted_and_normalised() -> None:
    before = time.time_ns() // 1000
    result = validate_event(event(thread_id="t-1", node="plan", payload={"b": 1, "a": [1, "x"]}))
    after = time.time_ns() // 1000
    assert isinstance(result, EventInput)
    assert result.event_type == "tool_called"
    assert result.execution_id == "exec-1"
    assert (result.thread_id, result.node) == ("t-1", "plan")
    assert (result.tenant_id, result.step_id, result.subject_id) == (None, None, None)
    assert result.payload_json == b'{"a":[1,"x"],"b":1}'
    assert before <= result.ts <= after
    assert uuid.UUID(result.event_id).version == 7


def test_given_event_id_and_ts_are_kept() -> None:
    result = validate_event(event(event_id="evt-42", ts="2024-05-01T12:00:00Z"))
    assert result.event_id == "evt-42"
    assert result.ts == calendar.timegm((2024, 5, 1, 12, 0, 0)) * 1_000_000


def test_absent_payload_is_json_null() -> None:
    assert validate_event(event(payload=...)).payload_json == b"null"


def test_every_known_event_type_is_accepted() -> None:
    assert KNOWN_EVENT_TYPES == {t.value for t in EventType}
    for t in EventType:
        assert validate_event(event(event_type=t.value)).event_type == t.value


def test_where_is_named_in_the_message() -> None:
    err = refused(event(bogus=1), where="line 7")
    assert err.where == "line 7"
    assert "line 7" in str(err) and "bogus" in str(err)


# -- refusals: fields --------------------------------------------------------------


@pytest.mark.parametrize("name", ["bogus", "Event_Type", "payload_json", "timestamp", "eventType", ""])
def test_unknown_field_is_refused(name: str) -> None:
    assert refused(event(**{name: "x"})).field == name


@pytest.mark.parametrize(
    "name", ["seq", "hash", "prev_hash", "exec_prev_seq", "payload_codec", "payload_key_id"]
)
def test_assigned_field_is_refused(name: str) -> None:
    err = refused(event(**{name: 1}))
    assert err.field == name
    assert "assigned" in str(err)


def test_missing_event_type_is_refused() -> None:
    assert refused(event(event_type=...)).field == "event_type"


@pytest.mark.parametrize("value", [..., None])
def test_missing_execution_id_is_refused(value: Any) -> None:
    assert refused(event(execution_id=value)).field == "execution_id"


@pytest.mark.parametrize(
    "value", ["run_started", "Tool_Called", "tool_called ", "", "custom", "tool_called\n", 7, None]
)
def test_unknown_event_type_is_refused(value: Any) -> None:
    assert refused(event(event_type=value)).field == "event_type"


@pytest.mark.parametrize(
    "value", ["custom:acme.invoice_sent", "custom:acme.billing.invoice-sent", "custom:a1.b_2", "custom:9x.y"]
)
def test_custom_event_type_is_accepted(value: str) -> None:
    assert check_event_type(value) == value
    assert validate_event(event(event_type=value)).event_type == value


@pytest.mark.parametrize(
    "value",
    [
        "custom:bad",  # no namespace
        "custom:Acme.x",  # upper case
        "custom:a/b.c",  # path separator
        "custom:",
        "custom:.x",
        "custom:acme.",
        "custom:acme..x",
        "custom:_acme.x",
        "custom:acme.x\n",
        "custom:acme.x y",
        "CUSTOM:acme.x",
        "custom:acme.é",
        "x-custom:acme.x",
    ],
)
def test_bad_custom_event_type_is_refused(value: str) -> None:
    with pytest.raises(ValidationError) as exc:
        check_event_type(value)
    assert exc.value.field == "event_type"
    assert refused(event(event_type=value)).field == "event_type"


# -- refusals: ids -----------------------------------------------------------------

BAD_IDS = {
    "empty": "",
    "257-ascii": "a" * 257,
    "257-utf8": "é" * 128 + "a",  # 129 characters, 257 bytes
    "258-utf8-3byte": "€" * 86,  # 86 characters, 258 bytes
    "nul": "a\x00b",
    "newline": "a\nb",
    "tab": "a\tb",
    "unit-sep": "a\x1fb",
    "del": "a\x7fb",
    "nel": "a\x85b",
    "c1-end": "a\x9fb",
    "slash": "a/b",
    "backslash": "a\\b",
    "leading-slash": "/etc",
    "dot": ".",
    "dotdot": "..",
    "lone-surrogate": "a\ud800b",
}

GOOD_IDS = {
    "256-ascii": "a" * 256,
    "256-utf8-2byte": "é" * 128,
    "256-utf8-3byte": "€" * 85 + "a",
    "256-utf8-4byte": "😀" * 64,
    "one-char": "x",
    "dots-inside": "a..b",
    "punctuation": "run:2024-05-01T12:00:00Z#1",
    "space": "a b",
    "nbsp-after-c1": "a\xa0b",
}


def test_id_limit_is_in_bytes() -> None:
    assert MAX_ID_BYTES == 256
    assert len(GOOD_IDS["256-utf8-2byte"].encode()) == 256
    assert len(BAD_IDS["257-utf8"].encode()) == 257
    assert len(BAD_IDS["257-utf8"]) < 256


@pytest.mark.parametrize("value", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_check_id_refuses(value: str) -> None:
    with pytest.raises(ValidationError) as exc:
        check_id("thread_id", value)
    assert exc.value.field == "thread_id"


@pytest.mark.parametrize("value", GOOD_IDS.values(), ids=GOOD_IDS.keys())
def test_check_id_accepts(value: str) -> None:
    assert check_id("thread_id", value) == value


@pytest.mark.parametrize("value", [123, 1.5, b"abc", None, ["a"], True], ids=repr)
def test_check_id_refuses_non_strings(value: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        check_id("node", value)
    assert exc.value.field == "node"
    assert "string" in str(exc.value)


@pytest.mark.parametrize("name", ID_FIELDS)
@pytest.mark.parametrize("key", ["empty", "257-utf8", "nul", "nel", "slash", "backslash", "dotdot"])
def test_validate_event_names_the_bad_id_field(name: str, key: str) -> None:
    assert refused(event(**{name: BAD_IDS[key]})).field == name


@pytest.mark.parametrize("name", ID_FIELDS)
def test_validate_event_refuses_a_non_string_id(name: str) -> None:
    assert refused(event(**{name: 123})).field == name


@pytest.mark.parametrize("name", ID_FIELDS)
def test_validate_event_accepts_a_256_byte_id(name: str) -> None:
    result = validate_event(event(**{name: GOOD_IDS["256-utf8-2byte"]}))
    assert getattr(result, name) == GOOD_IDS["256-utf8-2byte"]


# -- refusals: payload -------------------------------------------------------------

BAD_PAYLOADS = {
    "set": {1, 2},
    "bytes": b"abc",
    "object": object(),
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "int-key": {1: "a"},
    "none-key": {None: "a"},
    "bool-key": {True: "a"},
    "tuple-key": {(1, 2): "a"},
    "nested-int-key": {"a": [{"b": {2: "x"}}]},
    "nested-in-tuple": ({"ok": 1}, {3: "x"}),
    "nested-set": {"a": [1, {2}]},
    "nested-nan": {"a": {"b": [1.0, float("nan")]}},
    "nested-bytes": [[[b"x"]]],
    "lone-surrogate": {"a": "\ud800"},
    "lone-surrogate-key": {"\udfff": 1},
    "datetime": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
}


@pytest.mark.parametrize("payload", BAD_PAYLOADS.values(), ids=BAD_PAYLOADS.keys())
def test_non_json_payload_is_refused(payload: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        canonical_json(payload)
    assert exc.value.field == "payload"
    assert refused(event(payload=payload)).field == "payload"


def _payload_of_size(n: int) -> str:
    """A string whose canonical JSON is exactly ``n`` bytes."""
    return "x" * (n - 2)


def test_payload_over_the_limit_is_refused() -> None:
    assert DEFAULT_MAX_EVENT_BYTES == 256 << 20  # a large payload is stored apart (FORMAT.md 3.5)
    limit = 1 << 20
    err = refused(event(payload=_payload_of_size(limit + 1)), max_event_bytes=limit)
    assert err.field == "payload"
    assert str(limit) in str(err)


def test_payload_just_under_the_limit_is_accepted() -> None:
    limit = 1 << 20
    payload = _payload_of_size(limit - 100)
    assert len(validate_event(event(payload=payload), max_event_bytes=limit).payload_json) == limit - 100


def test_multibyte_payload_is_measured_in_bytes() -> None:
    # 600,000 characters but 1,200,002 bytes of UTF-8 JSON.
    assert refused(event(payload="é" * 600_000), max_event_bytes=1 << 20).field == "payload"


def test_configured_limit_is_honoured() -> None:
    assert refused(event(payload=_payload_of_size(1001)), max_event_bytes=1000).field == "payload"
    assert refused(event(payload=_payload_of_size(2000)), max_event_bytes=1000).field == "payload"
    ok = validate_event(event(payload=_payload_of_size(900)), max_event_bytes=1000)
    assert len(ok.payload_json) == 900
    # The same payload is fine under the default limit.
    validate_event(event(payload=_payload_of_size(2000)))


def test_limit_boundary_is_exact() -> None:
    # The measured size is event_type + the given ids + the payload JSON, in UTF-8 bytes.
    fixed = len("tool_called") + len("exec-1") + len("t-é".encode())
    at_limit = event(thread_id="t-é", payload=_payload_of_size(1000 - fixed))
    validate_event(at_limit, max_event_bytes=1000)
    over = event(thread_id="t-é", payload=_payload_of_size(1001 - fixed))
    assert refused(over, max_event_bytes=1000).field == "payload"


def test_ids_count_towards_the_limit_in_bytes() -> None:
    # Nine 256-byte ids (128 two-byte characters each) add 2,304 bytes, not 1,152.
    ids = {name: "é" * 128 for name in ID_FIELDS}
    fields = event(payload=_payload_of_size(900), **ids)
    validate_event(fields, max_event_bytes=4000)
    assert refused(fields, max_event_bytes=3000).field == "payload"


# -- ts ----------------------------------------------------------------------------

UTC_NOON = calendar.timegm((2024, 5, 1, 12, 0, 0)) * 1_000_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T12:00:00Z", UTC_NOON),
        ("2024-05-01T12:00:00+00:00", UTC_NOON),
        ("2024-05-01T14:00:00+02:00", UTC_NOON),
        ("2024-05-01T07:30:00-04:30", UTC_NOON),
        ("2024-05-01T14:00:00.123456+02:00", UTC_NOON + 123_456),
        ("2024-05-01T12:00:00.5Z", UTC_NOON + 500_000),
        ("2024-05-02T01:00:00+13:00", UTC_NOON),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.999999Z", -1),
        (dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC), UTC_NOON),
        (dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), UTC_NOON),
        (dt.datetime(2024, 5, 1, 12, 0, 0, 7, tzinfo=dt.UTC), UTC_NOON + 7),
    ],
    ids=str,
)
def test_parse_ts_converts_to_utc_micros(value: Any, expected: int) -> None:
    assert parse_ts(value) == expected
    assert validate_event(event(ts=value)).ts == expected


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2024, 5, 1, 12, 0),  # naive
        "2024-05-01T12:00:00",  # naive text
        "2024-05-01",  # a date only, no zone
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-05-01T25:00:00Z",
        "",
        1714564800,
        1714564800.0,
        dt.date(2024, 5, 1),
    ],
    ids=repr,
)
def test_bad_ts_is_refused(value: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_ts(value)
    assert exc.value.field == "ts"
    assert refused(event(ts=value)).field == "ts"


def test_parse_ts_names_the_given_field() -> None:
    with pytest.raises(ValidationError) as exc:
        parse_ts("nope", "since")
    assert exc.value.field == "since"


def test_format_ts_round_trips() -> None:
    for micros in (0, -1, UTC_NOON + 123_456, 253402300799_999999):
        text = format_ts(micros)
        assert text.endswith("Z")
        assert parse_ts(text) == micros
        assert micros_to_datetime(micros).tzinfo == dt.UTC
    assert format_ts(UTC_NOON) == "2024-05-01T12:00:00.000000Z"


# -- uuid7 -------------------------------------------------------------------------


def test_uuid7_layout() -> None:
    before = time.time_ns() // 1_000_000
    text = uuid7()
    after = time.time_ns() // 1_000_000
    u = uuid.UUID(text)
    assert str(u) == text  # canonical lowercase, hyphenated
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    assert before <= u.int >> 80 <= after


def test_uuid7_is_unique_and_random() -> None:
    ids = [uuid7() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    # The 74 random bits differ: not just the timestamp changing.
    randoms = {uuid.UUID(i).int & ((1 << 62) - 1) for i in ids}
    assert len(randoms) == len(ids)


@pytest.mark.parametrize("make", [uuid7, lambda: uuid7s(1)[0]], ids=["uuid7", "python-pool"])
def test_a_forked_child_does_not_repeat_its_parents_ids(make: Callable[[], str]) -> None:
    """The random bits come from a pool of random bytes (the C extension's, or os.urandom's in Python); a child
    process forks with a copy of it, and must forget it, or it would make the ids its parent makes next."""
    make()  # the pool holds unused bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write, "\n".join(make() for _ in range(20)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = f.read().split("\n")
    os.waitpid(pid, 0)
    parent = [make() for _ in range(20)]
    strip = lambda ids: {uuid.UUID(i).int & ((1 << 62) - 1) for i in ids}  # noqa: E731 - the random bits
    assert len(child) == 20 and not strip(child) & strip(parent)


def test_uuid7_timestamps_do_not_go_backwards() -> None:
    stamps = [uuid.UUID(uuid7()).int >> 80 for _ in range(500)]
    assert stamps == sorted(stamps)


# -- canonical JSON ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [1, 2]}, b'{"a":[1,2],"b":1}'),
        ({"z": {"y": 1, "x": 2}}, b'{"z":{"x":2,"y":1}}'),
        ("é", '"é"'.encode()),
        ("\u2028", '"\u2028"'.encode()),
        (None, b"null"),
        (True, b"true"),
        ([], b"[]"),
        ({}, b"{}"),
        ((1, "a"), b'[1,"a"]'),
        (-(2**70), b"-1180591620717411303424"),
        ("a\"b\\c\n", b'"a\\"b\\\\c\\n"'),
    ],
    ids=repr,
)
def test_canonical_json_bytes(value: Any, expected: bytes) -> None:
    assert canonical_json(value) == expected


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.text(st.characters(exclude_categories=("Cs",)))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(st.characters(exclude_categories=("Cs",)), max_size=8), children, max_size=5),
    max_leaves=30,
)


def _reorder(value: Any, rnd: random.Random) -> Any:
    """The same JSON value with every object's keys inserted in a shuffled order."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: _reorder(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [_reorder(v, rnd) for v in value]
    return value


@given(JSON_VALUES, st.randoms(use_true_random=False))
def test_canonical_json_is_deterministic_and_key_order_independent(value: Any, rnd: random.Random) -> None:
    encoded = canonical_json(value)
    assert canonical_json(value) == encoded
    assert canonical_json(_reorder(value, rnd)) == encoded
    if isinstance(value, dict):
        assert canonical_json(dict(reversed(list(value.items())))) == encoded


@given(JSON_VALUES)
def test_canonical_json_round_trips(value: Any) -> None:
    encoded = canonical_json(value)
    assert json.loads(encoded) == value
    # Nothing outside strings is decoration: re-encoding the parse gives the same bytes.
    assert canonical_json(json.loads(encoded)) == encoded


@given(st.dictionaries(st.text(max_size=4), st.integers(), min_size=2, max_size=6))
def test_canonical_json_sorts_keys(value: dict[str, int]) -> None:
    parsed = json.loads(canonical_json(value), object_pairs_hook=list)
    keys = [k for k, _ in parsed]
    assert keys == sorted(value)


def test_canonical_json_floats_are_finite() -> None:
    assert canonical_json(1.5) == b"1.5"
    assert math.isfinite(json.loads(canonical_json({"x": 1e308}))["x"])


# -- field encoding ----------------------------------------------------------------

_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_BASE = {
    Kind.INT: st.integers(min_value=-(2**63), max_value=2**63 - 1),
    Kind.STR: _TEXT,
    Kind.BYTES: st.binary(max_size=200),
}
FIELD_VALUES = st.tuples(
    *(_BASE[kind] | st.none() if nullable else _BASE[kind] for _, kind, nullable in FIELDS)
)


@given(FIELD_VALUES, st.binary(max_size=16))
def test_encode_decode_fields_round_trip(values: tuple[Any, ...], trailer: bytes) -> None:
    encoded = encode_fields(values)
    assert decode_fields(encoded) == (values, len(encoded))
    # Bytes after the fields are not consumed.
    assert decode_fields(encoded + trailer) == (values, len(encoded))


@given(FIELD_VALUES, st.data())
@settings(max_examples=50)
def test_decode_fields_refuses_truncation(values: tuple[Any, ...], data: st.DataObject) -> None:
    encoded = encode_fields(values)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(ValueError):
        decode_fields(encoded[:cut])


def _valid_values() -> list[Any]:
    return [
        {Kind.INT: 1, Kind.STR: "s", Kind.BYTES: b"b"}[kind] if not nullable else None
        for _, kind, nullable in FIELDS
    ]


def test_decode_fields_refuses_null_in_a_required_field() -> None:
    values = _valid_values()
    encoded = encode_fields(values)
    # seq is first and required: replace its 12 bytes with the null mark.
    assert encoded[:4] == b"\x00\x00\x00\x08"
    with pytest.raises(ValueError, match="seq"):
        decode_fields(NULL_MARK + encoded[12:])


def test_decode_fields_refuses_a_wrong_int_width() -> None:
    encoded = encode_fields(_valid_values())
    bad = b"\x00\x00\x00\x04" + b"\x00\x00\x00\x01" + encoded[12:]
    with pytest.raises(ValueError, match="seq"):
        decode_fields(bad)


def test_encode_value_layout() -> None:
    assert encode_value(Kind.INT, 1) == b"\x00\x00\x00\x08" + b"\x00" * 7 + b"\x01"
    assert encode_value(Kind.INT, -1) == b"\x00\x00\x00\x08" + b"\xff" * 8
    assert encode_value(Kind.STR, "é") == b"\x00\x00\x00\x02\xc3\xa9"
    assert encode_value(Kind.BYTES, b"") == b"\x00\x00\x00\x00"
    assert encode_value(Kind.STR, None) == NULL_MARK


# -- StoredEvent -------------------------------------------------------------------

_MIN_TS = parse_ts("0001-01-01T00:00:00Z")
_MAX_TS = parse_ts("9999-12-31T23:59:59.999999Z")


@st.composite
def stored_events(draw: st.DrawFn) -> StoredEvent:
    values = list(draw(FIELD_VALUES))
    names = [name for name, _, _ in FIELDS]
    values[names.index("ts")] = draw(st.integers(min_value=_MIN_TS, max_value=_MAX_TS))
    kwargs = dict(zip(names, values, strict=True))
    hash32 = st.binary(min_size=32, max_size=32)
    return StoredEvent(**kwargs, prev_hash=draw(hash32), hash=draw(hash32))


@given(stored_events())
def test_stored_event_json_round_trip(ev: StoredEvent) -> None:
    data = ev.to_json_dict()
    assert isinstance(data["ts"], str)
    assert data["payload"] == ev.payload.hex()
    # JSON-ready: survives a trip through real JSON text.
    text = json.dumps(data)
    assert StoredEvent.from_json_dict(json.loads(text)) == ev
    assert StoredEvent.from_json_dict(data) == ev


def test_stored_event_json_dict_shape() -> None:
    ev = StoredEvent(
        seq=3,
        event_id="e",
        ts=UTC_NOON,
        event_type="tool_called",
        tenant_id=None,
        execution_id="x",
        thread_id=None,
        node=None,
        step_id=None,
        parent_event_id=None,
        correlation_id=None,
        subject_id=None,
        exec_prev_seq=1,
        payload_codec="json",
        payload_key_id=None,
        payload=b"\x01\xab",
        prev_hash=b"\x00" * 32,
        hash=b"\xff" * 32,
    )
    data = ev.to_json_dict()
    assert list(data) == [f.name for f in dataclasses.fields(StoredEvent)]
    assert data["ts"] == "2024-05-01T12:00:00.000000Z"
    assert data["payload"] == "01ab"
    assert data["hash"] == "ff" * 32
    assert data["tenant_id"] is None
    assert ev.timestamp == dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    assert ev.field_values()[0] == 3
    assert len(ev.field_values()) == len(FIELDS)
