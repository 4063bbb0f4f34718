"""The C extension (wormjournal._native) against the pure-Python path it stands in for: byte for byte.

``canonical_json`` in C writes exact JSON types only, and hands anything else (None) to the Python path, which
writes the same bytes or refuses with its message; ``encode_fields`` in C is ``encode_fields_py``. The FORMAT.md
vectors run through both paths too (tests/test_format_vectors.py, its ``path`` fixture).
"""

from __future__ import annotations

import collections
import hashlib
import math
import os
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wormjournal import events
from wormjournal.errors import ValidationError
from wormjournal.events import FIELDS, Kind, canonical_json_py, encode_fields_py
from wormjournal.index import build as index_build
from wormjournal.journal import stages
from wormjournal.segments import merkle, table
from wormjournal.storage import wal

native = events._native  # noqa: SLF001
needs_native = pytest.mark.skipif(native is None, reason="the C extension is not built")


def test_the_extension_is_built_where_it_is_required() -> None:
    """scripts/test builds with WORMJOURNAL_NATIVE=require: a machine whose compiler fails is a failed install."""
    if os.environ.get("WORMJOURNAL_NATIVE") == "require":
        assert events.NATIVE


scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text() | st.characters().map(str)
           | st.text(alphabet=st.characters(codec="utf-8", exclude_categories=[])))
json_values = st.recursive(
    scalars,
    lambda children: (st.lists(children, max_size=5) | st.lists(children, max_size=5).map(tuple)
                      | st.dictionaries(st.text(max_size=8), children, max_size=5)),
    max_leaves=30,
)


def python_path(value: Any, limit: int) -> bytes | None:
    try:
        return canonical_json_py(value, limit=limit)
    except ValidationError:
        return None


@needs_native
@settings(max_examples=600, deadline=None)
@given(json_values, st.sampled_from([1 << 20, 64, 8]))
@example({"b": [1, 2.5, "x\n\"é\u2028\x7f"], "a": None, "\x00": {}}, 1 << 20)
@example([1e16, 1e-5, -0.0, 5e-324, 1.7976931348623157e308, 123456789.0], 1 << 20)
@example({"k": "\ud800"}, 1 << 20)  # a lone surrogate: the Python path refuses it
@example([2**63 - 1, -(2**63), 2**64], 1 << 20)
@example(float("nan"), 1 << 20)
def test_canonical_json_in_c_is_the_python_path(value: Any, limit: int) -> None:
    out = native.canonical_json(value, limit)
    expected = python_path(value, limit)
    if out is False:  # over the limit in bytes: refused (the Python path refuses it too, or writes more bytes)
        assert expected is None or len(expected) > limit
    elif out is not None:
        assert out == expected
        assert len(out) <= limit
    elif expected is not None:  # handed over: beyond 64 bits, over the limit in bytes, or too deep
        assert len(expected) > limit or _has_big_int(value) or _depth(value) > events.MAX_PAYLOAD_DEPTH


def _has_big_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -(2**63) <= value < 2**63
    if isinstance(value, dict):
        return any(_has_big_int(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_big_int(v) for v in value)
    return False


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@needs_native
def test_what_c_hands_to_python() -> None:
    """Subclasses, other types, too deep, a cycle: None (the Python path's), never a refusal or a crash; a bomb of
    shared lists: False, over the limit (refused at once)."""

    class D(dict):  # type: ignore[type-arg]
        pass

    deep: list[Any] = []
    for _ in range(200):
        deep = [deep]
    cycle: list[Any] = []
    cycle.append(cycle)
    bomb: list[Any] = []
    for _ in range(100):
        bomb = [bomb, bomb]
    for value in (D(a=1), collections.OrderedDict(a=1), {1: 2}, {"a": {b"x": 1}}, b"bytes", object(), deep, cycle,
                  math.inf, [float("-inf")], True.__class__, 10**5000):
        assert native.canonical_json(value, 1 << 20) is None
    assert native.canonical_json(bomb, 1 << 20) is False
    assert native.canonical_json(deep, 1 << 20) is None
    one_twenty_eight: Any = 1
    for _ in range(128):
        one_twenty_eight = [one_twenty_eight]
    assert native.canonical_json(one_twenty_eight, 1 << 20) == b"[" * 128 + b"1" + b"]" * 128
    assert native.canonical_json([one_twenty_eight], 1 << 20) is None  # 129 levels
    assert sys.getrefcount(cycle) < 10  # no reference left behind


field_values = st.tuples(*[
    (st.integers(min_value=-(2**63), max_value=2**63 - 1) if kind == Kind.INT
     else st.text() if kind == Kind.STR else st.binary())
    | (st.none() if nullable else st.nothing())
    for _, kind, nullable in FIELDS
])


@needs_native
@settings(max_examples=300, deadline=None)
@given(field_values)
def test_encode_fields_in_c_is_the_python_path(values: tuple[Any, ...]) -> None:
    assert native.encode_fields(values, events.KIND_CODES) == encode_fields_py(values)  # noqa: SLF001


@needs_native
@settings(max_examples=300, deadline=None)
@given(field_values, st.binary(max_size=8), st.data())
def test_decode_fields_in_c_is_the_python_path(values: tuple[Any, ...], trailer: bytes, data: st.DataObject) -> None:
    """Whole, cut short, or with a byte changed: C parses as Python does, or hands over (None) what Python refuses."""
    encoded = encode_fields_py(values) + trailer
    cases = [encoded, encoded[: data.draw(st.integers(0, len(encoded)))]]
    at = data.draw(st.integers(0, len(encoded) - 1))
    cases.append(encoded[:at] + bytes([data.draw(st.sampled_from([0x00, 0x80, 0xED, 0xFF]))]) + encoded[at + 1 :])
    for case in cases:
        parsed = native.decode_fields(case, events.KIND_CODES, events._NULLABLE_CODES)  # noqa: SLF001
        try:
            expected = events.decode_fields_py(case)
        except ValueError:
            assert parsed is None
        else:
            assert parsed == expected
    assert events.decode_fields(encoded) == (values, len(encoded) - len(trailer))


@needs_native
def test_encode_fields_in_c_refuses_what_python_refuses() -> None:
    good = [0, "id", 1, "t", None, "e", None, None, None, None, None, None, None, "json", None, b"{}"]
    assert native.encode_fields(good, events.KIND_CODES) == encode_fields_py(good)  # noqa: SLF001
    with pytest.raises(ValueError, match="expected 16 field values"):
        native.encode_fields(good[:-1], events.KIND_CODES)
    for i, bad in ((0, "1"), (1, 5), (15, "text"), (0, 2**64)):
        values = list(good)
        values[i] = bad
        with pytest.raises((TypeError, OverflowError)):
            native.encode_fields(values, events.KIND_CODES)
    values = list(good)
    values[1] = "\ud800"
    with pytest.raises(UnicodeEncodeError):
        native.encode_fields(values, events.KIND_CODES)


ids = (st.sampled_from(["exec-1", "th/1", "ab", "x" * 64, "x" * 65, "é-1", "a\x7fb", "a\\b", "t\tx", "\ud800ab"])
       | st.text(max_size=70) | st.integers() | st.none())
event_fields = st.fixed_dictionaries(
    {"event_type": st.sampled_from(["tool_called", "run_started", "custom:a.b", "nope", 5])},
    optional={**{name: ids for name in events.ID_FIELDS}, "payload": st.just({"k": 1}),
              "ts": st.sampled_from([None, 1_700_000_000_000_000, "2024-06-01T12:00:00.123456Z", "yesterday", -5]),
              "seq": st.just(1), "other": st.just(1)},
)


@needs_native
@settings(max_examples=500, deadline=None)
@given(event_fields)
@example({"event_type": "tool_called", "execution_id": "exec-1", "thread_id": "thread-1", "payload": None})
@example({"event_type": "tool_called", "execution_id": "exec-1", "ts": "yesterday"})
@example({"event_type": "tool_called", "execution_id": "exec-1", "ts": "2024-06-01T12:00:00.123456Z"})
def test_check_fields_in_c_is_the_python_path(fields: dict[str, Any]) -> None:
    """The common case of an event's fields in C (events.stored_values) gives what the Python path gives, or
    hands the event to it (None); whatever C takes, Python takes the same way."""
    fast = native.check_fields(fields, events._FIELDS_SPEC)  # noqa: SLF001
    try:
        expected = events.stored_values_py(fields, new_id=lambda: "new-id")
    except ValidationError:
        with pytest.raises(ValidationError):  # C hands it to Python, or takes all but ts, which Python refuses
            events.stored_values(fields)
        return
    if fast is not None:
        values, size, ts_given = fast
        assert ts_given == (fields.get("ts") is not None)
        if fields.get("event_id") is None:  # a new UUIDv7 of the extension's
            assert uuid.UUID(values[1]).version == 7
            values[1] = "new-id"
        if ts_given:  # as given: stored_values parses it
            values[2] = events.parse_ts(values[2])
        else:  # now, in microseconds
            assert abs(values[2] - expected[0][2]) < 60_000_000
            values[2] = expected[0][2]
        assert (values, size) == expected
        assert events.stored_values(fields)[0][3:] == expected[0][3:]


@needs_native
def test_a_custom_type_is_checked_in_python_once_then_taken_in_c() -> None:
    fields = {"event_type": "custom:native.once", "execution_id": "exec-1", "payload": None}
    assert native.check_fields(fields, events._FIELDS_SPEC) is None  # noqa: SLF001
    first = events.stored_values(fields)
    again = native.check_fields(fields, events._FIELDS_SPEC)  # noqa: SLF001
    assert again is not None and again[0][3] == "custom:native.once" == first[0][3]
    bad = {"event_type": "custom:no spaces allowed", "execution_id": "exec-1"}
    with pytest.raises(ValidationError, match="unknown type"):
        events.stored_values(bad)
    assert native.check_fields(bad, events._FIELDS_SPEC) is None  # noqa: SLF001


class _Drafts:
    def __init__(self, values: list[Any]) -> None:
        self.values = values


@pytest.mark.skipif(not wal.native.SHA, reason="no SHA-256 from libcrypto in the C extension")
@settings(max_examples=200, deadline=None)
@given(st.lists(field_values, min_size=1, max_size=6), st.binary(min_size=32, max_size=32),
       st.binary(min_size=32, max_size=32), st.text(max_size=40), st.text(max_size=70))
def test_chain_frame_in_c_is_chain_then_frame(batch: list[tuple[Any, ...]], prev: bytes, key: bytes, journal: str,
                                              stream: str) -> None:
    """One WAL frame of chained records from C (Frame.chained) is the Python stages' Chain then Frame, byte for
    byte: fields, event hashes, the frame's length, CRC and HMAC."""
    drafts: Any = [_Drafts(list(v)) for v in batch]
    mac = wal.WalMac(key, journal, stream)
    assert mac.native_states is not None
    frame, last = stages.Frame(mac).chained(stages.Chain(lambda _: None), drafts, prev)
    python = wal.WalMac(key, journal, stream)
    python.native_states = None
    records = stages.Chain(lambda _: None)(drafts, prev)
    assert (frame, last) == stages.Frame(python).chained(stages.Chain(lambda _: None), drafts, prev)
    assert (frame, last) == (wal.encode_frame(records, mac), records[-1][2])
    with pytest.raises(ValueError, match="1 to 2"):
        native.chain_frame([], events.KIND_CODES, prev, events.EVENT_TAG, mac.native_states, zlib.crc32)
    with pytest.raises(TypeError):
        native.chain_frame([[*batch[0][:-1], 5]], events.KIND_CODES, prev, events.EVENT_TAG, mac.native_states,
                           zlib.crc32)


_HOSTILE = {
    # an item whose iteration (encode_fields reads it) empties the outer list chain_frame walks
    "outer list emptied": """
class Evil:
    def __iter__(self):
        outer.clear()
        return iter(vals)
outer = [Evil(), Evil(), Evil()]
frame, _ = m.chain_frame(outer, KIND_CODES, bytes(32), EVENT_TAG, states, zlib.crc32)
assert frame == m.chain_frame([vals] * 3, KIND_CODES, bytes(32), EVENT_TAG, states, zlib.crc32)[0]
""",
    # bytes that would pass for OpenSSL's contexts: only hmac_states' capsule is taken
    "states not hmac_states'": """
try:
    m.chain_frame([vals], KIND_CODES, bytes(32), EVENT_TAG, b"\\xff" * 512, zlib.crc32)
except TypeError:
    pass
else:
    raise AssertionError("garbage states taken")
""",
    # the view crc32 is given keeps its frame alive
    "view kept by crc32": """
kept = []
def crc(v):
    kept.append((v, bytes(v)))
    return 0
m.chain_frame([vals], KIND_CODES, bytes(32), EVENT_TAG, states, crc)
junk = [bytes([7]) * len(kept[0][1]) for _ in range(1000)]
assert bytes(kept[0][0]) == kept[0][1]
""",
}


@pytest.mark.skipif(not wal.native.SHA, reason="no SHA-256 from libcrypto in the C extension")
@pytest.mark.parametrize("case", sorted(_HOSTILE))
def test_chain_frame_survives_hostile_arguments(case: str) -> None:
    """chain_frame raises or answers rightly, never crashes or reads freed memory (in a child process: a crash
    is a signal there, not a dead test run)."""
    pre = ("import zlib\nfrom wormjournal import native\nfrom wormjournal.events import KIND_CODES, FIELDS, EVENT_TAG\n"
           "m = native.module\nstates = m.hmac_states(b'k' * 32, b'prefix')\nvals = [None] * len(FIELDS)\n"
           "vals[0], vals[1], vals[2], vals[3], vals[5], vals[13], vals[15] = 0, 'id-1', 1, 'tool_called', "
           "'exec-1', 'json', b'{}'\n")
    run = subprocess.run([sys.executable, "-X", "dev", "-c", pre + _HOSTILE[case]], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.skipif(merkle._bulk is None, reason="no bulk SHA-256 (no C extension, or no libcrypto)")  # noqa: SLF001
@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=70), st.sampled_from([1, 2, 4, 8, 64]),
       st.lists(st.binary(max_size=200), max_size=40))
def test_bulk_sha256_is_hashlib(hashes: list[bytes], block: int, rows: list[bytes]) -> None:
    """Merkle leaves, block roots, whole roots and row hashes from OpenSSL in C are hashlib's, the textbook way."""
    bulk = merkle._bulk  # noqa: SLF001
    leaves = [hashlib.sha256(b"\x00" + h).digest() for h in hashes]
    assert merkle.split_hashes(bulk.merkle_leaves(b"".join(hashes))) == leaves
    with_python = pytest.MonkeyPatch()
    with_python.setattr(merkle, "_bulk", None)
    try:
        expected_blocks = merkle.block_roots(leaves, block)
        expected_root = merkle.root_from_leaf_hashes(leaves)
    finally:
        with_python.undo()
    assert merkle.block_roots(leaves, block) == expected_blocks
    assert merkle.root_from_leaf_hashes(leaves) == expected_root == textbook_root(leaves)
    array = pa.array(rows, pa.binary())
    assert table.hash_rows(array) == [hashlib.sha256(r).digest() for r in rows]
    assert table.hash_rows(array.slice(len(rows) // 2)) == [hashlib.sha256(r).digest() for r in rows[len(rows) // 2:]]


def textbook_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 2.1: MTH splits n leaves at the largest power of two below n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << (len(leaves) - 1).bit_length() - 1
    return hashlib.sha256(b"\x01" + textbook_root(leaves[:k]) + textbook_root(leaves[k:])).digest()


# -- the verifier's bulk hashes: event hashes from Arrow buffers, a segment's Merkle blocks --------------------

long_bytes = st.binary(min_size=120, max_size=700)  # around and past the length C hashes in place (STREAM_BYTES)
row_values = st.tuples(*[
    (st.integers(min_value=-(2**63), max_value=2**63 - 1) if kind == Kind.INT
     else st.text() | st.text(min_size=130, max_size=300) if kind == Kind.STR
     else st.binary() | long_bytes)
    | (st.none() if nullable else st.nothing())
    for _, kind, nullable in FIELDS
])
prev_hashes = st.binary(min_size=32, max_size=32) | st.binary(max_size=200) | st.none()


def rows_batch(rows: list[tuple[Any, ...]], prevs: list[bytes | None]) -> pa.RecordBatch:
    """The rows as a batch in the segment schema (prev_hash nullable, as damage may have it; hash zeroed), sliced
    from a batch of three more rows before them: its arrays then have an offset, in values and in validity bits."""
    columns: dict[str, list[Any]] = {name: [r[i] for r in rows] for i, (name, _, _) in enumerate(FIELDS)}
    columns["prev_hash"] = prevs
    columns["hash"] = [bytes(32)] * len(rows)
    schema = pa.schema([f.with_nullable(True) if f.name == "prev_hash" else f for f in table.SCHEMA])
    padded = {name: values[:1] * 3 + values for name, values in columns.items()}
    sliced = pa.RecordBatch.from_pydict(padded, schema=schema).slice(3)
    assert sliced.column(0).offset == 3
    return sliced


def textbook_row_hash(values: tuple[Any, ...], prev: bytes | None) -> bytes:
    return hashlib.sha256(events.EVENT_TAG + (prev or b"") + encode_fields_py(values)).digest()


@pytest.fixture(params=["sha-ni", "openssl"])
def two_at_once(request: pytest.FixtureRequest) -> Iterator[bool]:
    """event_hashes and merkle_blocks with SHA-NI two messages at once (where the CPU has them), and without. The
    switch holds for every example a property test draws, so the fixture need not run again for each."""
    bulk = merkle._bulk  # noqa: SLF001
    if bulk is None:
        pytest.skip("no bulk SHA-256 (no C extension, or no libcrypto)")
    before = bulk.sha_ni(None)
    try:
        yield bulk.sha_ni(request.param == "sha-ni")
    finally:
        bulk.sha_ni(before)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(row_values, prev_hashes), min_size=1, max_size=12))
def test_event_hashes_in_c_are_the_python_path(two_at_once: bool,
                                               rows: list[tuple[tuple[Any, ...], bytes | None]]) -> None:
    """table.packed_row_hashes from the Arrow buffers in C is the joined-inputs Python path, and the textbook
    SHA-256(EVENT_TAG || prev_hash || canonical field bytes) of each row: nulls, long values, sliced arrays,
    an odd number of rows."""
    batch = rows_batch([r for r, _ in rows], [p for _, p in rows])
    in_c = table.packed_row_hashes(batch)
    with_python = pytest.MonkeyPatch()
    with_python.setattr(merkle, "_bulk", None)
    try:
        in_python = table.packed_row_hashes(batch)
    finally:
        with_python.undo()
    assert in_c == in_python == b"".join(textbook_row_hash(r, p) for r, p in rows)


_EXECUTION_ROWS = st.fixed_dictionaries({
    "execution_id": st.text(max_size=40), "segment": st.integers(0, 2**40), "row": st.integers(0, 2**20),
    "rows": st.integers(1, 2**20), "first_seq": st.integers(0, 2**62), "last_seq": st.integers(0, 2**62),
    "prev_seq": st.none() | st.integers(0, 2**62), "first_ts": st.integers(0, 2**60), "last_ts": st.integers(0, 2**60),
    "tenant_id": st.none() | st.text(max_size=300), "thread_id": st.none() | st.text(max_size=3),
    "last_event_type": st.sampled_from(["run_started", "tool_called", "x" * 70]),
})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_EXECUTION_ROWS, min_size=1, max_size=9), st.integers(0, 3), st.booleans())
def test_index_leaf_hashes_in_c_are_the_python_path(two_at_once: bool, rows: list[dict[str, Any]], cut: int,
                                                    dictionary: bool) -> None:
    """index build.leaf_hashes from the Arrow buffers in C (one call) is the field-pieces Python path: nulls, long
    strings, dictionary-encoded columns (as Parquet reads them back), tables of several chunks."""
    schema = index_build.SCHEMAS["executions"]
    tab = pa.Table.from_pylist(rows, schema=schema)
    if dictionary:
        tab = tab.set_column(9, "tenant_id", pa.chunked_array([tab.column(9).combine_chunks().dictionary_encode()]))
    if not dictionary:
        tab = pa.concat_tables([tab.slice(0, min(cut, len(rows))), tab.slice(min(cut, len(rows)))])
    in_c = index_build.leaf_hashes("executions", tab, schema)
    with_python = pytest.MonkeyPatch()
    with_python.setattr(merkle, "_bulk", None)
    try:
        in_python = index_build.leaf_hashes("executions", tab, schema)
    finally:
        with_python.undo()
    assert in_c == in_python and len(in_c) == len(rows)


def test_two_messages_at_once_cross_every_block_boundary(two_at_once: bool) -> None:
    """Rows whose head (the bytes before the payload) and payload end at each offset in a block and around the
    padding's edge (55, 56, 64 bytes), in pairs of every length against every other: the textbook hashes."""
    rows: list[tuple[tuple[Any, ...], bytes | None]] = []
    for tenant in ("", "t" * 23, "u" * 51):
        for size in [0, 1, 127, 128, 129, *range(180, 260)]:
            values = [7, "id", 1, "tool_called", tenant or None, "exec-1", None, None, None, None, None, None, None,
                      "json", None, bytes([size % 251]) * size]
            rows.append((tuple(values), bytes(32)))
    batch = rows_batch([r for r, _ in rows], [p for _, p in rows])
    assert table.packed_row_hashes(batch) == b"".join(textbook_row_hash(r, p) for r, p in rows)
    assert table.packed_row_hashes(batch.slice(1)) == b"".join(textbook_row_hash(r, p) for r, p in rows[1:])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=70), st.sampled_from([1, 2, 4, 8, 64, 128]))
def test_merkle_blocks_in_c_are_the_python_path(two_at_once: bool, hashes: list[bytes], block: int) -> None:
    """merkle.packed_block_roots in C: the block roots and the root of the Python path and of RFC 6962."""
    packed = b"".join(hashes)
    in_c = merkle.packed_block_roots(packed, block)
    with_python = pytest.MonkeyPatch()
    with_python.setattr(merkle, "_bulk", None)
    try:
        in_python = merkle.packed_block_roots(packed, block)
        expected_blocks = merkle.block_roots([merkle.leaf_hash(h) for h in hashes], block)
    finally:
        with_python.undo()
    assert in_c == in_python == (b"".join(expected_blocks), textbook_root([merkle.leaf_hash(h) for h in hashes]))
    for bad in (3, 0, -4):
        with pytest.raises(ValueError, match="power of two"):
            merkle.packed_block_roots(packed, bad)
    with pytest.raises(ValueError, match="32-byte"):
        merkle.packed_block_roots(packed + b"x", block)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=70), st.sampled_from([1, 2, 4, 64]),
       st.integers(0, 300).map(lambda n: bytes(range(256)) * (n // 2) + bytes(n % 133)))
@example([], 1, b"")
@example([bytes(32)] * 3, 2, bytes(55))
@example([bytes(32)], 1, bytes(10_000))
def test_merkle_blocks_with_the_object_hash_it_with_hashlib(two_at_once: bool, hashes: list[bytes], block: int,
                                                           whole: bytes) -> None:
    """merkle_blocks with the object's bytes: the same roots as without them, and hashlib's SHA-256 of the bytes
    (its blocks beside the tree's hashes with SHA-NI: a tree of fewer blocks than the object, or of more)."""
    bulk = merkle._bulk  # noqa: SLF001
    packed = b"".join(hashes)
    roots, root, digest = bulk.merkle_blocks(packed, block, whole)
    assert (roots, root) == bulk.merkle_blocks(packed, block)
    assert digest == hashlib.sha256(whole).digest()
    with pytest.raises(ValueError, match="32-byte"):
        bulk.merkle_blocks(packed + b"x", 1, whole)


# Each case: arguments that event_hashes must refuse with ValueError or TypeError, never read past a buffer for.
_HOSTILE_ROWS = {
    "offsets past the data": "m.event_hashes(2, b't', (('b', None, 0, off([0, 4, 90]), b'abcd'),))",
    "offsets out of order": "m.event_hashes(2, b't', (('s', None, 0, off([0, 4, 2]), b'abcd'),))",
    "negative offset": "m.event_hashes(1, b't', (('b', None, 0, off([-1, 2]), b'abcd'),))",
    "offsets too short": "m.event_hashes(3, b't', (('b', None, 0, off([0, 1, 2]), b'abcd'),))",
    "offset shifts past them": "m.event_hashes(2, b't', (('r', None, 1, off([0, 1, 2]), b'abcd'),))",
    "values too short": "m.event_hashes(3, b't', (('i', None, 0, bytes(16), None),))",
    "validity too short": "m.event_hashes(9, b't', (('i', b'\\xff', 0, bytes(72), None),))",
    "an unknown kind": "m.event_hashes(1, b't', (('x', None, 0, bytes(8), None),))",
    "not a column": "m.event_hashes(1, b't', ((1, 2),))",
    "negative rows": "m.event_hashes(-1, b't', ())",
    "negative array offset": "m.event_hashes(1, b't', (('i', None, -1, bytes(16), None),))",
}


@pytest.mark.skipif(not wal.native.SHA, reason="no SHA-256 from libcrypto in the C extension")
@pytest.mark.parametrize("case", sorted(_HOSTILE_ROWS))
def test_event_hashes_refuse_hostile_buffers(case: str) -> None:
    """event_hashes checks every offset and length before it reads (in a child process: a crash is a signal
    there, not a dead test run); the same call with sound buffers answers."""
    pre = ("import struct\nfrom wormjournal import native\nm = native.module\n"
           "def off(xs):\n    return struct.pack(f'<{len(xs)}i', *xs)\n"
           "assert len(m.event_hashes(2, b't', (('b', None, 0, off([0, 1, 4]), b'abcd'),))) == 64\n")
    body = f"try:\n    {_HOSTILE_ROWS[case]}\nexcept (ValueError, TypeError):\n    pass\n" \
           "else:\n    raise AssertionError('taken')\n"
    run = subprocess.run([sys.executable, "-X", "dev", "-c", pre + body], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
