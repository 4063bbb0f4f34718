"""Reads by page (FORMAT.md 5, "Pages"): a lookup fetches the pages that hold its rows, not whole row groups,
and an altered page, page root or page layout never gives it a wrong answer."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import random
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wormjournal import IntegrityError, Journal, JournalConfig, PageLayoutError, Reader, native
from wormjournal.events import EVENT_TAG, encode_fields
from wormjournal.segments import pages, thrift
from wormjournal.segments.table import (
    PAGE_ROOTS_KEY,
    PAGE_ROWS_KEY,
    SCHEMA,
    as_segment_table,
    bounded_batches,
    decode_hashed,
    encode_parquet,
    events_to_table,
    packed_row_hashes,
    parquet_fragment,
    read_segment,
    storage_order,
    storage_sorted,
    table_to_events,
)
from wormjournal.storage.base import ObjectInfo
from wormjournal.storage.local import LocalStore

from conftest import StorePaths, overwrite

ROWS, EXECUTIONS, GROUP = 1000, 40, 512  # 25 rows per execution; row groups of 512 rows, pages of 64


class Recording:
    """An ObjectReader that records every ranged read (name, offset, length)."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self.url = store.url
        self.reads: list[tuple[str, int, int]] = []

    def get(self, name: str) -> bytes:
        data = self._store.get(name)
        self.reads.append((name, 0, len(data)))
        return data

    def get_range(self, name: str, start: int, length: int) -> bytes:
        self.reads.append((name, start, length))
        return self._store.get_range(name, start, length)

    def head(self, name: str) -> ObjectInfo | None:
        return self._store.head(name)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self._store.list(prefix)


@dataclasses.dataclass
class Sealed:
    paths: StorePaths
    segment: Path
    payloads: dict[str, list[str]]


@pytest.fixture
def sealed(tmp_store: StorePaths) -> Sealed:
    payloads: dict[str, list[str]] = {}
    config = JournalConfig(seal_max_age_seconds=None, row_group_rows=GROUP, page_rows=64, seal_worker=False)
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=config) as j:
        batch = []
        for i in range(ROWS):
            x = f"run-{i % EXECUTIONS:03d}"
            text = f"event {i} " + hashlib.sha256(str(i).encode()).hexdigest() * 6  # compresses like ciphertext
            payloads.setdefault(x, []).append(text)
            batch.append({"execution_id": x, "event_type": "tool_called", "payload": {"text": text}})
        j.append_batch(batch)
        j.seal()
    (segment,) = tmp_store.store.glob("segments/**/*.parquet")
    return Sealed(tmp_store, segment, payloads)


def rewrite(path: Path, table: pa.Table, page_rows: int) -> None:
    """``table`` written over the segment at ``path`` as segments are, with the signed size (zeros before the
    footer)."""
    size = path.stat().st_size
    for level in (3, 5, 9, 15, 19):  # an attacker compresses harder where an altered row takes more bytes
        data = encode_parquet(table, row_group_rows=GROUP, page_rows=page_rows, compression_level=level)
        if len(data) <= size:
            break
    assert len(data) <= size
    footer = struct.unpack("<I", data[-8:-4])[0]
    cut = len(data) - 8 - footer
    overwrite(path, data[:cut] + bytes(size - len(data)) + data[cut:])


def all_read(r: Reader, s: Sealed) -> None:
    for x, texts in s.payloads.items():
        assert [e.payload["text"] for e in r.events(x)] == texts


def test_a_footer_decodes_and_encodes_back_to_its_bytes(sealed: Sealed) -> None:
    data = sealed.segment.read_bytes()
    footer = pages.read_footer(len(data), lambda ranges: [data[a : a + n] for a, n in ranges])[0]
    decoded, end = thrift.decode(footer)
    assert end == len(footer) and thrift.encode(decoded) == footer
    with pytest.raises(PageLayoutError):
        thrift.decode(footer[: len(footer) // 2])  # truncated: an error, never a partial struct


@pytest.fixture(params=["c", "pyarrow"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which decodes the pages a lookup fetches: the C extension, each column's pages as one chunk, or pyarrow,
    from a Parquet file assembled around them (what the reader falls back to)."""
    if request.param == "pyarrow":
        monkeypatch.setattr(pages, "_native", None)
    elif pages._native is None:
        pytest.skip("the C extension is not built")
    return str(request.param)


def test_pages_read_alike_whichever_decodes_them(sealed: Sealed, decoder: str) -> None:
    r = Reader(sealed.paths.store)
    all_read(r, sealed)
    assert r._segment_file(0).page_rows == 64
    layout = r._segment_file(0)._layout
    assert layout is not None and bool(layout._kept) == (decoder == "pyarrow")  # a file was assembled for pyarrow


def test_a_lookup_fetches_its_pages_not_its_row_groups(sealed: Sealed) -> None:
    store = Recording(LocalStore(sealed.paths.store))
    r = Reader(store)
    assert r.events("run-000")  # opens the segment's footer and the index
    name = str(sealed.segment.relative_to(sealed.paths.store))
    meta = pq.ParquetFile(sealed.segment).metadata
    group = max(sum(meta.row_group(j).column(c).total_compressed_size for c in range(meta.num_columns))
                for j in range(meta.num_row_groups))
    assert r._segment_file(0).page_rows == 64
    for x in ("run-007", "run-023", "run-039"):
        store.reads.clear()
        assert len(r.events(x)) == ROWS // EXECUTIONS
        fetched = sum(n for obj, _, n in store.reads if obj == name)
        # 25 rows (and one on each side) lie in 1 or 2 pages of 64 of a 512-row group: well under half of it
        assert 0 < fetched < group / 2, (x, fetched, group)


def test_an_altered_row_is_named_and_spoils_no_other_page(sealed: Sealed, decoder: str) -> None:
    table = read_segment(sealed.segment.read_bytes())
    events = storage_order(table_to_events(table))
    victim = events[130]  # run-005's rows are 125..149: page 2 (rows 128..191)
    assert victim.execution_id == "run-005"
    events[130] = dataclasses.replace(victim, payload=victim.payload.replace(b"event", b"evEnt"))
    rewrite(sealed.segment, events_to_table(events).replace_schema_metadata(table.schema.metadata),
            page_rows=64)
    r = Reader(sealed.paths.store)
    with pytest.raises(IntegrityError) as e:
        r.events("run-005")
    assert e.value.seq == victim.seq
    assert r._segment_file(0).page_rows == 64  # read by pages, not around them
    for x in ("run-000", "run-004", "run-010", "run-039"):  # other pages; run-004 ends on page 1
        assert [ev.payload["text"] for ev in r.events(x)] == sealed.payloads[x]


@pytest.mark.parametrize("at", [0, -1])
def test_page_roots_that_do_not_make_the_signed_root_are_read_around(sealed: Sealed, at: int) -> None:
    """A page root altered in the first row group or in the last (checked when a read first needs its group)."""
    table = read_segment(sealed.segment.read_bytes())
    meta = dict(table.schema.metadata)
    roots = list(meta[PAGE_ROOTS_KEY.encode()].decode())
    roots[at] = "f" if roots[at] != "f" else "e"
    meta[PAGE_ROOTS_KEY.encode()] = "".join(roots).encode()
    rewrite(sealed.segment, table.replace_schema_metadata(meta), page_rows=64)
    r = Reader(sealed.paths.store)
    all_read(r, sealed)
    assert r._segment_file(0).page_rows == 0  # whole row groups, checked against the block roots


def test_pages_that_are_not_the_page_roots_pages_are_read_around(sealed: Sealed) -> None:
    table = read_segment(sealed.segment.read_bytes())  # footer metadata kept, pages of 100 rows
    rewrite(sealed.segment, table, page_rows=100)
    r = Reader(sealed.paths.store)
    all_read(r, sealed)
    assert r._segment_file(0).page_rows == 0


def test_a_page_of_another_segment_is_refused(tmp_store: StorePaths, decoder: str) -> None:
    """Two segments of the same shape; segment 1's page 1 (rows 64..127, run-0's) replaced by segment 0's
    (genuine rows of run-0, with genuine hashes, of another segment): the page root refuses them."""
    config = JournalConfig(seal_max_age_seconds=None, row_group_rows=GROUP, page_rows=64, seal_worker=False)
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=config) as j:
        for _ in range(2):
            j.append_batch([{"execution_id": f"run-{i % 4}", "event_type": "tool_called", "payload": {"i": i}}
                            for i in range(GROUP)])
            j.seal()
    seg0, seg1 = sorted(tmp_store.store.glob("segments/**/*.parquet"))
    t0, t1 = (storage_sorted(read_segment(p.read_bytes())) for p in (seg0, seg1))
    assert set(t1.slice(0, 128).column("execution_id").to_pylist()) == {"run-0"}
    mixed = pa.concat_tables([t1.slice(0, 64), t0.slice(64, 64), t1.slice(128)]).replace_schema_metadata(
        read_segment(seg1.read_bytes()).schema.metadata)
    rewrite(seg1, mixed, page_rows=64)
    r = Reader(tmp_store.store)
    with pytest.raises(IntegrityError, match="do not match the signed Merkle root"):
        r.events("run-0")
    assert r._segment_file(1).page_rows == 64
    assert len(r.events("run-3")) == GROUP // 2  # pages 6 and 7 of segment 1 are its own


@pytest.mark.skipif(native.module is None, reason="the C extension is not built")
def test_a_footer_decoded_in_c_is_not_left_to_the_garbage_collector(sealed: Sealed) -> None:
    """Its thousands of containers die with it (a tree: reference counting frees them); tracked, each footer a
    reader opens would bring the next full collection of the whole heap closer."""
    data = sealed.segment.read_bytes()
    footer = pages.read_footer(len(data), lambda ranges: [data[a : a + n] for a, n in ranges])[0]
    tree = thrift.decode(footer)
    containers, stack = 0, [tree]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            stack += x.values()
        elif isinstance(x, (list, tuple)):
            stack += x
        else:
            continue
        containers += 1
        assert not gc.is_tracked(x), type(x)
    assert containers > 100


@pytest.mark.skipif(native.module is None, reason="the C extension is not built")
def test_a_page_layout_from_c_is_the_one_from_the_decoded_footer(sealed: Sealed,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """footer_layout reads only what pages are read by: the same values as the footer decoded whole, and from a
    damaged footer either those of the whole decode or a refusal (the reader then reads row groups)."""
    data = sealed.segment.read_bytes()
    footer = pages.read_footer(len(data), lambda ranges: [data[a : a + n] for a, n in ranges])[0]

    def both(blob: bytes) -> tuple[object, object]:
        out = []
        for decoder in (pages._native, None):
            monkeypatch.setattr(pages, "_native", decoder)
            try:
                out.append(pages._footer_layout(blob)[1:])
            except PageLayoutError:
                out.append(None)
        return out[0], out[1]

    c, py = both(footer)
    assert c is not None and c == py and len(c[0]) == -(-ROWS // GROUP)
    arrow = pages.file_metadata(footer).metadata  # the key-value metadata, as pyarrow reads them
    assert c[2] == {k.decode(): v.decode() for k, v in arrow.items()} and "wormjournal.page_roots" in c[2]
    rnd = random.Random(4)
    refused = 0
    for _ in range(2000):
        blob = bytearray(footer)
        for _ in range(rnd.randint(1, 3)):
            blob[rnd.randrange(len(blob))] = rnd.randrange(256)
        c, py = both(bytes(blob))
        refused += c is None
        assert c is None or c == py
    assert refused


@pytest.mark.skipif(native.module is None, reason="the C extension is not built")
def test_page_offsets_from_c_are_those_checked_in_python(sealed: Sealed, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row group's page offsets, checked in one C call (page_offsets): the same as column by column in Python,
    and from damaged offset indexes either the same or a refusal, never other offsets."""
    data = sealed.segment.read_bytes()
    footer = pages.read_footer(len(data), lambda ranges: [data[a : a + n] for a, n in ranges])[0]

    def columns(blob: bytes, decoder: Any, j: int) -> object:
        monkeypatch.setattr(pages, "_native", decoder)
        layout = pages.PageLayout(footer, lambda ranges: [blob[a : a + n] for a, n in ranges], 64)
        try:
            return layout.columns(j)
        except PageLayoutError:
            return None

    native_module = pages._native
    groups = -(-ROWS // GROUP)
    for j in range(groups):
        c, py = columns(data, native_module, j), columns(data, None, j)
        assert c is not None and c == py
    lo = min(o for _, chunks in pages.PageLayout(footer, lambda r: [], 64)._groups for o, _, _ in chunks)
    rnd = random.Random(6)
    refused = 0
    for _ in range(1000):
        blob = bytearray(data)
        for _ in range(rnd.randint(1, 3)):
            blob[rnd.randrange(lo, len(data) - 8 - len(footer))] = rnd.randrange(256)
        j = rnd.randrange(groups)
        c, py = columns(bytes(blob), native_module, j), columns(bytes(blob), None, j)
        refused += c is None
        assert c is None or c == py
    assert refused


@pytest.mark.skipif(native.module is None, reason="the C extension is not built")
def test_the_c_decoder_reads_footers_and_offset_indexes_as_the_python_one(sealed: Sealed) -> None:
    data = sealed.segment.read_bytes()
    footer = pages.read_footer(len(data), lambda ranges: [data[a : a + n] for a, n in ranges])[0]
    assert thrift.decode(footer) == thrift.decode_py(footer)
    fmd, _ = thrift.decode_py(footer)
    chunk = fmd[4][1][1][0][1][1][1][0]  # row group 0, column 0
    at, length = chunk[4][1], chunk[5][1]
    assert thrift.page_locations(data, at, at + length) == thrift.page_locations_py(data, at, at + length)
    assert [p[2] for p in thrift.page_locations(data, at, at + length)] == list(range(0, GROUP, 64))
    rnd = random.Random(1)
    for _ in range(2000):  # damaged bytes: the same values, or both refuse
        blob = bytearray(footer[: rnd.randint(1, 2000)])
        for _ in range(rnd.randint(0, 4)):
            blob[rnd.randrange(len(blob))] = rnd.randrange(256)
        outcomes = []
        for decode in (thrift.decode, thrift.decode_py):
            try:
                outcomes.append(decode(bytes(blob)))
            except PageLayoutError:
                outcomes.append("refused")
        assert outcomes[0] == outcomes[1]


def test_warm_reads_list_nothing(sealed: Sealed) -> None:
    r = Reader(sealed.paths.store)
    r.events("run-000")  # the first read lists the stream's manifests and checkpoints
    lists, requests = r.store.lists, r.store.requests
    for x in ("run-001", "run-020", "run-039"):
        assert len(r.events(x)) == ROWS // EXECUTIONS
    assert r.store.lists == lists
    # per read: one probe for a new manifest, the index object's row group, the pages of one segment
    assert r.store.requests - requests <= 3 * (1 + 2 + 22)


# -- the C page decoder -----------------------------------------------------------------------------------------

needs_decoder = pytest.mark.skipif(pages._native is None, reason="the C extension is not built")  # noqa: SLF001


def random_segment_table(rnd: random.Random, rows: int) -> pa.Table:
    """Rows of the segment schema with every kind of value a column may hold: nulls, empty and non-ASCII
    strings, all-null columns, large and negative integers, payloads from empty to a few KiB."""
    text = ["", "a", "run-1", "é✓", "\U0001f600x" * 3, "x" * 300]
    columns = {}
    for field in SCHEMA:
        all_null = field.nullable and rnd.random() < 0.2
        values: list = []
        for _ in range(rows):
            if field.nullable and (all_null or rnd.random() < 0.3):
                values.append(None)
            elif pa.types.is_integer(field.type) or pa.types.is_timestamp(field.type):
                values.append(rnd.choice([0, -1, 2**62, rnd.randrange(-(2**63), 2**63)]))
            elif pa.types.is_string(field.type):
                values.append(rnd.choice(text) + str(rnd.randrange(1000)))
            else:
                values.append(rnd.randbytes(rnd.choice([0, 1, 32, rnd.randrange(4096)])))
        columns[field.name] = pa.array(values, type=pa.int64() if pa.types.is_timestamp(field.type) else field.type)
    columns["ts"] = columns["ts"].cast(pa.timestamp("us", tz="UTC"))
    return pa.table(columns, schema=SCHEMA)


def parquet_bytes(t: pa.Table, **options: object) -> bytes:
    sink = pa.BufferOutputStream()
    settings = {"compression": "zstd", "use_dictionary": False, "write_page_index": True, "data_page_size": 1 << 30,
                **options}
    pq.write_table(t, sink, **settings)  # type: ignore[arg-type]
    return sink.getvalue().to_pybytes()


def decode_both(data: bytes) -> tuple[pa.Table | None, pa.Table | str]:
    """The C decoder's rows (None: it declined) and pyarrow's (or "refused")."""
    md = pq.ParquetFile(pa.BufferReader(data)).metadata
    mine = pages.decode_plain(data, SCHEMA, pages.chunks_of_metadata(md, range(md.num_row_groups)))
    try:
        theirs: pa.Table | str = as_segment_table(pq.read_table(pa.BufferReader(data))).replace_schema_metadata(None)
    except Exception:  # noqa: BLE001 - pyarrow's errors are not typed
        theirs = "refused"
    return mine, theirs


@needs_decoder
@pytest.mark.parametrize("seed", range(6))
def test_the_c_page_decoder_gives_pyarrows_rows(seed: int) -> None:
    rnd = random.Random(seed)
    t = random_segment_table(rnd, rnd.choice([1, 7, 64, 300, 1000]))
    for options in ({"max_rows_per_page": 1 << rnd.randrange(0, 8), "row_group_size": 1 << rnd.randrange(4, 11)},
                    {"max_rows_per_page": 64, "compression": "none"},
                    {"max_rows_per_page": 128, "compression": "zstd", "compression_level": 19}):
        mine, theirs = decode_both(parquet_bytes(t, **options))
        assert mine is not None, options
        assert isinstance(theirs, pa.Table) and mine.equals(theirs) and mine.equals(t), options


@needs_decoder
def test_the_c_page_decoder_declines_what_it_does_not_know() -> None:
    """Other layouts are pyarrow's to read: dictionaries, version 2 pages, other codecs."""
    t = random_segment_table(random.Random(9), 200)
    for options in ({"use_dictionary": True}, {"data_page_version": "2.0"}, {"compression": "snappy"},
                    {"compression": "gzip"}):
        mine, theirs = decode_both(parquet_bytes(t, **options))
        assert mine is None and isinstance(theirs, pa.Table) and theirs.equals(t), options


def damaged_copies(data: bytes, rnd: random.Random, count: int = 400) -> Iterator[bytes]:
    """``count`` copies of Parquet ``data`` with 1 to 3 bytes changed between its magic and its footer."""
    footer_at = len(data) - 8 - struct.unpack("<I", data[-8:-4])[0]
    for _ in range(count):
        blob = bytearray(data)
        for _ in range(rnd.randint(1, 3)):
            blob[rnd.randrange(4, footer_at)] = rnd.randrange(256)
        yield bytes(blob)


@needs_decoder
def test_damaged_pages_decode_as_pyarrow_has_them_or_are_declined() -> None:
    """A damaged page never crashes the C decoder, and an uncompressed one never makes it answer rows that pyarrow
    reads otherwise: it declines, and pyarrow's read (rows or error) stands. Hashes judge the rows, whichever
    decoded them."""
    rnd = random.Random(5)
    t = random_segment_table(rnd, 300)
    for compression in ("zstd", "none"):
        declined = 0
        for blob in damaged_copies(parquet_bytes(t, max_rows_per_page=32, row_group_size=128,
                                                 compression=compression), rnd):
            mine, theirs = decode_both(blob)
            if mine is None:
                declined += 1
            elif isinstance(theirs, pa.Table) and compression == "none":  # two zstds may read a corrupt frame
                assert mine.equals(theirs)  # differently (no checksum): the rows' hashes refuse both
        assert declined > 0  # the checks do refuse


@needs_decoder
def test_the_c_page_decoder_refuses_hostile_arguments() -> None:
    t = random_segment_table(random.Random(2), 100)
    data = parquet_bytes(t, max_rows_per_page=16)
    md = pq.ParquetFile(pa.BufferReader(data)).metadata
    start, end, codec, _ = pages.chunks_of_metadata(md, [0])[0][1][1]  # event_id: a string, never null
    c = pages._native  # noqa: SLF001
    valid, offsets, values = pa.allocate_buffer(13), pa.allocate_buffer(404), pa.allocate_buffer(1 << 16)
    assert c.decode_chunk(data, start, end, codec, ord("b"), 0, 100, valid, offsets, values)[0] == 0
    for args in ((data, start, end + 10**9, codec, ord("b"), 0, 100),  # beyond the bytes
                 (data, end, start, codec, ord("b"), 0, 100),  # backwards
                 (data, start, end, codec, ord("b"), 0, 99),  # more values than rows
                 (data, start, end, codec, ord("b"), 0, 101),  # fewer
                 (data, start, end, 1, ord("b"), 0, 100),  # another codec
                 (data, start, end, codec, ord("x"), 0, 100),  # another type
                 (data, start, end, codec, ord("b"), 1, 100)):  # levels that are not there
        with pytest.raises(ValueError):
            c.decode_chunk(*args, valid, offsets, values)
    with pytest.raises(ValueError):  # buffers too small for the rows
        c.decode_chunk(data, start, end, codec, ord("b"), 0, 100, pa.allocate_buffer(1), offsets, values)
    with pytest.raises(ValueError):
        c.decode_chunk(data, start, end, codec, ord("b"), 0, 100, valid, offsets, pa.allocate_buffer(10))
    with pytest.raises(TypeError):  # read-only buffers
        c.decode_chunk(data, start, end, codec, ord("b"), 0, 100, b"\0" * 13, offsets, values)


# -- decode and hash in one pass (the verifier's) ------------------------------------------------------------------

_LIGHT = ["seq", "ts", "execution_id", "exec_prev_seq", "event_type", "payload_key_id", "prev_hash", "hash"]


def hashed_both(data: bytes, keep: list[str]) -> tuple[tuple[bytes, pa.Table] | None, tuple[bytes, pa.Table] | str]:
    """decode_hashed's hashes and kept columns (None: it declined), and the two-step path's: pyarrow's rows
    (or "refused") hashed by packed_row_hashes."""
    fragment = parquet_fragment(data)
    mine = decode_hashed(data, fragment, keep)
    try:
        t = as_segment_table(pq.read_table(pa.BufferReader(data))).replace_schema_metadata(None)
    except Exception:  # noqa: BLE001 - pyarrow's errors are not typed
        return mine, "refused"
    return mine, (b"".join(packed_row_hashes(b) for b in bounded_batches(t)), t.select(keep))


@needs_decoder
@pytest.mark.parametrize("seed", range(6))
def test_decode_hashed_is_decode_then_hash(seed: int) -> None:
    rnd = random.Random(seed)
    t = random_segment_table(rnd, rnd.choice([1, 7, 64, 300, 1000]))
    for keep in (_LIGHT, ["hash"], SCHEMA.names):
        for options in ({"max_rows_per_page": 1 << rnd.randrange(0, 8), "row_group_size": 1 << rnd.randrange(4, 11)},
                        {"max_rows_per_page": 64, "compression": "none"},
                        {"max_rows_per_page": 128, "compression": "zstd", "compression_level": 19}):
            mine, theirs = hashed_both(parquet_bytes(t, **options), keep)
            assert mine is not None and not isinstance(theirs, str), options
            assert mine[0] == theirs[0] == b"".join(packed_row_hashes(b) for b in bounded_batches(t)), options
            assert mine[1].equals(theirs[1]) and mine[1].equals(t.select(keep)), options


@needs_decoder
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 300), st.sampled_from([1, 2, 3, 8, 64, 128]))
def test_decode_hashed_rows_in_either_lane_are_the_textbook_hashes(seed: int, rows: int, page: int) -> None:
    """With SHA-NI each row of a page goes to whichever of the two lanes is free first (rows of every length, an
    odd number of them, a page of one row); without, one row at a time with OpenSSL: both give each row's
    SHA-256(EVENT_TAG || prev_hash || canonical field bytes), as the Python path computes it."""
    t = random_segment_table(random.Random(seed), rows)
    data = parquet_bytes(t, max_rows_per_page=page, row_group_size=max(page, 128))
    textbook = b"".join(hashlib.sha256(EVENT_TAG + e.prev_hash + encode_fields(e.field_values())).digest()
                        for e in table_to_events(t, sort=False))
    bulk = native.module
    before = bulk.sha_ni(None)
    try:
        for lanes in (True, False):
            bulk.sha_ni(lanes)
            got = decode_hashed(data, parquet_fragment(data), ["hash"])
            assert got is not None and got[0] == textbook, lanes
    finally:
        bulk.sha_ni(before)


@needs_decoder
def test_decode_hashed_declines_pages_of_other_rows() -> None:
    """Pages cut by size, not rows, hold other rows in each column: the two steps decode and hash them."""
    t = random_segment_table(random.Random(3), 600)
    data = parquet_bytes(t, data_page_size=2048, write_batch_size=16, row_group_size=600)
    mine, theirs = hashed_both(data, _LIGHT)
    assert mine is None and not isinstance(theirs, str)
    md = pq.ParquetFile(pa.BufferReader(data)).metadata
    assert pages.decode_plain(data, SCHEMA, pages.chunks_of_metadata(md, range(md.num_row_groups))) is not None
    for options in ({"use_dictionary": True}, {"data_page_version": "2.0"}, {"compression": "snappy"}):
        assert hashed_both(parquet_bytes(t, max_rows_per_page=64, **options), _LIGHT)[0] is None, options


@needs_decoder
def test_damaged_pages_are_hashed_as_pyarrow_reads_them_or_declined() -> None:
    """A damaged page never crashes decode_hashed; uncompressed, it hashes and keeps what pyarrow reads, or declines.
    A string that is not UTF-8 it declines, as decode_plain does: the two steps (pyarrow's read) then stand."""
    rnd = random.Random(8)
    t = random_segment_table(rnd, 300)
    for compression in ("zstd", "none"):
        declined = 0
        for blob in damaged_copies(parquet_bytes(t, max_rows_per_page=32, row_group_size=128,
                                                 compression=compression), rnd):
            try:
                mine, theirs = hashed_both(blob, _LIGHT)
            except Exception:  # noqa: BLE001 - a footer pyarrow cannot read: nothing to compare
                continue
            if mine is None:
                declined += 1
            elif compression == "none":  # two zstds may read a corrupt frame differently (no checksum)
                assert not isinstance(theirs, str) and mine[0] == theirs[0] and mine[1].equals(theirs[1])
        assert declined > 0
    # A string that is not UTF-8 (planted in the bytes: pyarrow will not write one).
    marked = t.set_column(SCHEMA.get_field_index("node"), "node", pa.array(["n\x01X" if i == 5 else "n" for i in
                                                                            range(300)], pa.string()))
    data = bytearray(parquet_bytes(marked, max_rows_per_page=32, row_group_size=128, compression="none"))
    at = bytes(data).index(b"n\x01X")
    data[at + 1] = 0xFF  # not UTF-8
    assert hashed_both(bytes(data), _LIGHT)[0] is None
    md = pq.ParquetFile(pa.BufferReader(bytes(data))).metadata
    assert pages.decode_plain(bytes(data), SCHEMA, pages.chunks_of_metadata(md, range(md.num_row_groups))) is None


@needs_decoder
def test_decode_hashed_refuses_hostile_arguments() -> None:
    t = random_segment_table(random.Random(4), 100)
    data = parquet_bytes(t, max_rows_per_page=16)
    md = pq.ParquetFile(pa.BufferReader(data)).metadata
    rows, chunks = pages.chunks_of_metadata(md, [0])[0]
    group = (rows, tuple((start, end, codec) for start, end, codec, _ in chunks))
    columns = tuple((ord("l") if i in (0, 2, 12) else ord("b"), int(f.nullable), 1) for i, f in enumerate(SCHEMA))
    order = ((16, ord("r")), (0, ord("i")), (1, ord("s")))
    c = pages._native  # noqa: SLF001
    hashes, buffers = c.decode_hash(data, (group,), columns, order, b"tag")
    assert len(hashes) == 32 * rows and len(buffers) == len(SCHEMA)
    far = (rows, ((0, len(data) + 10**9, 6), *group[1][1:]))
    for args in (((far,), columns, order),  # beyond the bytes
                 (((rows + 1, group[1]),), columns, order),  # more rows than the pages hold
                 (((rows, group[1][:-1]),), columns, order),  # a column short
                 ((group,), ((ord("x"), 0, 1), *columns[1:]), order),  # another type
                 ((group,), columns, ((0, ord("s")),)),  # an int hashed as a string
                 ((group,), columns, ((99, ord("r")),)),  # no such column
                 ((group,), tuple((k, 1, w) if i == 1 else (k, n, w) for i, (k, n, w) in enumerate(columns)), order),
                 ((group,), columns, ((0, ord("q")),))):  # another hash kind
        with pytest.raises(ValueError):
            c.decode_hash(data, *args, b"tag")
    with pytest.raises(TypeError):
        c.decode_hash(data, [group], columns, order, b"tag")


@needs_decoder
@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=40), st.text(max_size=20).map(lambda s: s.encode()),
                 st.lists(st.sampled_from([b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xe0\x80\xaf", b"a",
                                           b"\xc3\xa9", b"\xf0\x9f\x98\x80", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf",
                                           b"\x80", b"\xf8\x88\x80\x80\x80"]), max_size=12).map(b"".join)))
def test_utf8_check_in_c_is_pythons(data: bytes) -> None:
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert pages._native.utf8_valid(data) is valid  # noqa: SLF001


@pytest.mark.parametrize(("executions", "config", "expected"), [
    (2048, {}, 16),  # every row another execution (each open over many segments): the fewest rows
    (256, {}, 64),  # runs of 8 rows
    (8, {}, 128),  # runs of 256 rows: page_rows
    (2048, {"min_page_rows": 128}, 128),  # the size fixed
    (2048, {"page_rows": 8}, 8),  # page_rows below the default fewest: page_rows
])
def test_a_seal_picks_pages_by_how_its_executions_interleave(tmp_store: StorePaths, executions: int,
                                                              config: dict[str, int], expected: int) -> None:
    """About 8 times the mean run of rows of one execution, from min_page_rows to page_rows: a lookup of one
    execution reads a page per segment, so small pages where executions interleave row by row. Read back by pages
    whatever the size."""
    cfg = JournalConfig(seal_max_age_seconds=None, seal_worker=False, **config)  # type: ignore[arg-type]
    texts: dict[str, list[str]] = {}
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=cfg) as j:
        batch = []
        for i in range(2048):
            x = f"run-{i % executions:04d}"
            texts.setdefault(x, []).append(f"event {i}")
            batch.append({"execution_id": x, "event_type": "tool_called", "payload": {"text": f"event {i}"}})
        j.append_batch(batch)
        j.seal()
    (segment,) = tmp_store.store.glob("segments/**/*.parquet")
    meta = pq.ParquetFile(segment).schema_arrow.metadata
    assert meta[PAGE_ROWS_KEY.encode()] == str(expected).encode()
    r = Reader(tmp_store.store)
    for x in list(texts)[:: max(1, executions // 8)]:
        assert [e.payload["text"] for e in r.events(x)] == texts[x]
    assert r._segment_file(0).page_rows == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 30)), max_size=8), st.integers(0, 20))
def test_ranges_apart_are_what_coalescing_leaves_alone(ranges: list[tuple[int, int]], gap: int) -> None:
    """pages.apart (the reader then fetches each column's pages as they are) holds exactly when coalesce would
    return the ranges unchanged: in order, none empty, none within ``gap`` of the one before."""
    assert pages.apart(ranges, gap) == (pages.coalesce(ranges, gap) == ranges)
