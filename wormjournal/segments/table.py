"""The Parquet segment: its schema, writer, reader, and columnar hash recomputation."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Sequence
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..events import EVENT_TAG, FIELD_NAMES, FIELDS, HASH_SIZE, NULL_MARK, Kind, StoredEvent, encode_fields, event_hash
from ..payload import STORED_APART, parse_ref
from . import merkle, pages

FORMAT_VERSION = "1"

SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("tenant_id", pa.string()),
        pa.field("execution_id", pa.string(), nullable=False),
        pa.field("thread_id", pa.string()),
        pa.field("node", pa.string()),
        pa.field("step_id", pa.string()),
        pa.field("parent_event_id", pa.string()),
        pa.field("correlation_id", pa.string()),
        pa.field("subject_id", pa.string()),
        pa.field("exec_prev_seq", pa.int64()),
        pa.field("payload_codec", pa.string(), nullable=False),
        pa.field("payload_key_id", pa.string()),
        pa.field("payload", pa.binary(), nullable=False),
        pa.field("prev_hash", pa.binary(), nullable=False),
        pa.field("hash", pa.binary(), nullable=False),
    ]
)
assert tuple(SCHEMA.names[: len(FIELD_NAMES)]) == FIELD_NAMES

# Low-cardinality columns get dictionary encoding; ids, payloads and hashes do not.
# Min/max of payloads and hashes prune nothing and would only swell every footer.
_STATISTICS_COLUMNS = [name for name in SCHEMA.names if name not in ("payload", "prev_hash", "hash")]
BLOCK_ROWS_KEY = "wormjournal.block_rows"
BLOCK_ROOTS_KEY = "wormjournal.block_roots"
PAGE_ROWS_KEY = "wormjournal.page_rows"
PAGE_ROOTS_KEY = "wormjournal.page_roots"
# Rows per Parquet data page, in every column: a page is a Merkle subtree whose root the footer carries
# (FORMAT.md 5, "Pages"), so a reader fetches and hashes a few pages, not whole row groups (JournalConfig.page_rows).
PAGE_ROWS = 128
# The fewest rows a writer puts in a page (page_rows_for): a segment whose executions interleave row by row.
MIN_PAGE_ROWS = 16


def page_rows_for(table: pa.Table, most: int = PAGE_ROWS, fewest: int = MIN_PAGE_ROWS) -> int:
    """The rows per page for a segment of ``table``'s rows: about 8 times its executions' mean run (its rows over
    its distinct ``execution_id`` values, null one of them), a power of two from ``fewest`` to ``most``. A lookup
    of one execution reads whole pages: where executions interleave (each open for days, a row or two per
    segment), small pages spare it reading and decoding hundreds of other rows per segment; where each execution
    has a run of rows, large pages cost it little and take less space and decode faster for whole-segment
    readers (verify, queries). The reader takes the size from the footer (FORMAT.md 5), whatever it is."""
    fewest = min(fewest, most)
    runs = pc.count_distinct(table.column("execution_id"), mode="all").as_py() if table.num_rows else 1
    target = 8 * table.num_rows / max(runs, 1)
    rows = fewest
    while rows * 2 <= min(most, target):
        rows *= 2
    return rows


def utc_date(ts_micros: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=ts_micros)).date().isoformat()


def events_to_table(events: Sequence[StoredEvent], columns: Sequence[str] | None = None) -> pa.Table:
    schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(name) for name in columns])
    return pa.Table.from_pydict({name: [getattr(e, name) for e in events] for name in schema.names}, schema=schema)


def storage_order(events: Sequence[StoredEvent]) -> list[StoredEvent]:
    """The events in the order a segment stores them, (execution_id, seq) (FORMAT.md, section 5)."""
    return sorted(events, key=lambda e: (e.execution_id, e.seq))  # code point order = UTF-8 byte order


def segment_merkle_root(events: Sequence[StoredEvent]) -> bytes:
    """The segment Merkle root: the MTH over the event hashes in storage order."""
    return merkle.merkle_root([e.hash for e in storage_order(events)])


def encode_block_roots(roots: Sequence[bytes]) -> str:
    return "".join(r.hex() for r in roots)


def decode_block_roots(text: str) -> list[bytes]:
    """Raises ValueError unless ``text`` is whole 32-byte hashes in hex."""
    if len(text) % 64:
        raise ValueError("block roots are not whole 32-byte hashes")
    raw = bytes.fromhex(text)
    return [raw[i : i + 32] for i in range(0, len(raw), 32)]


def block_layout_problem(row_group_rows: Sequence[int], block: int, roots: int, events: int) -> str | None:
    """Why a segment's row groups are not its Merkle blocks (FORMAT.md, section 5), or None: every row
    group but the last holds ``block`` rows (a power of two), the last 1..block, one block root each,
    ``events`` rows in all. Readers authenticate row groups as blocks, so the verifier requires it too."""
    if block <= 0 or block & (block - 1):
        return f"block_rows {block} is not a power of two"
    sizes = list(row_group_rows)
    if any(n != block for n in sizes[:-1]) or (sizes and not 0 < sizes[-1] <= block):
        return f"row groups of {sizes[:8]}{'...' if len(sizes) > 8 else ''} rows are not blocks of {block}"
    if len(sizes) != roots:
        return f"{len(sizes)} row groups but {roots} block roots"
    if sum(sizes) != events:
        return f"the row groups hold {sum(sizes)} rows, not {events}"
    return None


def write_segment(
    events: Sequence[StoredEvent] | pa.Table,
    *,
    journal_id: str,
    stream: str,
    segment: int,
    row_group_rows: int,
) -> bytes:
    """The Parquet bytes of one segment (see :func:`build_segment`)."""
    return build_segment(events, journal_id=journal_id, stream=stream, segment=segment,
                         row_group_rows=row_group_rows)[0]


def storage_sorted(table: pa.Table) -> pa.Table:
    """The rows of ``table`` in storage order, (execution_id, seq): Arrow compares strings by their UTF-8
    bytes, which is code point order (FORMAT.md, section 5)."""
    if table.num_rows < 2:
        return table
    order = pc.sort_indices(table, sort_keys=[("execution_id", "ascending"), ("seq", "ascending")])
    return table.take(order)


def leaf_hashes(hashes: pa.Array | pa.ChunkedArray) -> list[bytes]:
    """The Merkle leaf hash ``SHA-256(0x00 || h)`` of each 32-byte event hash, in bulk."""
    return merkle.split_hashes(leaf_hashes_of(hashes))


def leaf_hashes_of(hashes: pa.Array | pa.ChunkedArray) -> bytes:
    """:func:`leaf_hashes`, concatenated (no object per row)."""
    col = hashes.combine_chunks() if isinstance(hashes, pa.ChunkedArray) else hashes
    n = len(col)
    matrix = _fixed_width(col.cast(pa.binary()), 32)
    if matrix is None:  # not all 32 bytes (a damaged row): one by one
        return b"".join(merkle.leaf_hash(h or b"") for h in col.to_pylist())
    if merkle._bulk is not None:
        return merkle._bulk.merkle_leaves(matrix)  # type: ignore[no-any-return]
    return b"".join(hash_rows(join_pieces([constant_piece(b"\x00", n), matrix])))


def packed_hashes(hashes: pa.Array | pa.ChunkedArray) -> bytes | None:
    """The values of a column of hashes concatenated (what :func:`packed_row_hashes` gives for rows whose stored
    hashes are right), or None unless every value is 32 bytes."""
    col = hashes.combine_chunks() if isinstance(hashes, pa.ChunkedArray) else hashes
    matrix = _fixed_width(col.cast(pa.binary()), 32)
    return None if matrix is None else matrix.tobytes()


def build_segment(
    events: Sequence[StoredEvent] | pa.Table,
    *,
    journal_id: str,
    stream: str,
    segment: int,
    row_group_rows: int,
    page_rows: int = PAGE_ROWS,
) -> tuple[bytes, pa.Table, bytes]:
    """The Parquet bytes of one segment, its rows as a table, and its Merkle root: zstd, statistics, page index,
    bloom filters. ``events`` are the segment's events, or their rows as a table in :data:`SCHEMA`.

    Rows are stored in (execution_id, seq) order, so that one execution's events
    are one run of rows, and each row group is a complete subtree of the segment's
    Merkle tree whose root the footer carries (FORMAT.md, section 5): a reader
    authenticates one row group against the signed root without the others.
    """
    if row_group_rows & (row_group_rows - 1):
        raise ValueError(f"row_group_rows must be a power of two, not {row_group_rows}")
    if page_rows & (page_rows - 1):
        raise ValueError(f"page_rows must be a power of two, not {page_rows}")
    page_rows = min(page_rows, row_group_rows)
    rows = events if isinstance(events, pa.Table) else events_to_table(events)
    ordered = storage_sorted(rows.replace_schema_metadata(None).select(SCHEMA.names).cast(SCHEMA))
    leaves = leaf_hashes(ordered.column("hash"))
    pages = merkle.block_roots(leaves, page_rows)
    roots = merkle.block_roots(pages, row_group_rows // page_rows)  # pages are complete subtrees of blocks
    table = ordered.replace_schema_metadata(
        {
            "wormjournal.format": FORMAT_VERSION,
            "wormjournal.journal": journal_id,
            "wormjournal.stream": stream,
            "wormjournal.segment": str(segment),
            BLOCK_ROWS_KEY: str(row_group_rows),
            BLOCK_ROOTS_KEY: encode_block_roots(roots),
            PAGE_ROWS_KEY: str(page_rows),
            PAGE_ROOTS_KEY: encode_block_roots(pages),
        }
    )
    data = encode_parquet(table, row_group_rows=row_group_rows, page_rows=page_rows)
    # The block roots are complete subtrees, so they give the segment's root (FORMAT.md, section 5).
    return data, table, merkle.root_from_leaf_hashes(roots)


def encode_parquet(table: pa.Table, *, row_group_rows: int, page_rows: int, compression_level: int = 3) -> bytes:
    """``table`` as a segment's Parquet bytes (FORMAT.md 5): its rows as given, its schema's metadata as the
    footer's key-value metadata, row groups of ``row_group_rows`` and pages of ``page_rows`` rows in every
    column, zstd, statistics, page index, bloom filters."""
    sink = pa.BufferOutputStream()
    ndv = max(table.num_rows, 16)
    with pq.ParquetWriter(
        sink,
        table.schema.remove_metadata(),
        compression="zstd",
        compression_level=compression_level,
        # No dictionaries: a chunk's pages then decode without a page of its own, so a reader decodes the
        # pages of many segments as one column chunk (segments.pages); zstd gets most of what they saved (~1.5%).
        use_dictionary=False,
        write_statistics=_STATISTICS_COLUMNS,
        write_page_index=True,
        # No ARROW:schema: it would repeat the footer's metadata (the page roots) in base64, doubling the footer
        # a reader fetches to open a segment; the Parquet types give the same Arrow schema back (as_segment_table)
        # and the key-value metadata is the schema's metadata.
        store_schema=False,
        max_rows_per_page=page_rows,
        data_page_size=1 << 30,  # pages end at page_rows rows only, so that they are Merkle subtrees
        bloom_filter_options={
            "execution_id": {"ndv": ndv, "fpp": 0.01},
            "thread_id": {"ndv": ndv, "fpp": 0.01},
            "event_id": {"ndv": ndv, "fpp": 0.01},
        },
    ) as writer:
        writer.write_table(table.replace_schema_metadata(None), row_group_size=row_group_rows)
        writer.add_key_value_metadata(table.schema.metadata or {})
    return bytes(sink.getvalue().to_pybytes())


def parquet_schema_problem(schema: pq.ParquetSchema) -> str | None:
    """Why a file's Parquet schema is not a segment's (FORMAT.md, section 5), or None: the columns of 2.1 in
    order, INT64 or BYTE_ARRAY, the STRING or TIMESTAMP(UTC, micros) logical types, ``required`` exactly
    where not nullable. The ``ARROW:schema`` metadata is not looked at: it is pyarrow's, not the format's."""
    if len(schema) != len(SCHEMA):
        return f"{len(schema)} columns, not {len(SCHEMA)}"
    for i, field in enumerate(SCHEMA):
        c = schema.column(i)
        logical = str(c.logical_type)
        if pa.types.is_timestamp(field.type):
            want = ("INT64", logical.startswith("Timestamp(isAdjustedToUTC=true, timeUnit=microseconds,"))
        elif pa.types.is_integer(field.type):
            want = ("INT64", logical == "None")
        else:
            want = ("BYTE_ARRAY", logical == ("String" if pa.types.is_string(field.type) else "None"))
        if (c.path != field.name or c.physical_type != want[0] or not want[1] or c.max_repetition_level != 0
                or c.max_definition_level != (1 if field.nullable else 0)):
            return f"column {i} is {c.path} {c.physical_type} {logical}, not {field.name} as section 5 has it"
    return None


def as_segment_table(table: pa.Table) -> pa.Table:
    """Rows read by pyarrow, in the segment's Arrow schema (its footer metadata kept), whatever the
    ``ARROW:schema`` hint made of them. Raises pyarrow errors when they do not convert."""
    if table.schema.remove_metadata() == SCHEMA:
        return table
    return table.cast(SCHEMA.with_metadata(table.schema.metadata))


# In-memory bytes need no pre-buffering (it only copies them once more).
_PARQUET = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False))


def parquet_fragment(data: bytes | pa.Buffer, row_groups: Sequence[int] | None = None) -> ds.ParquetFileFragment:
    """Parquet bytes (all, or those row groups) as a dataset fragment: ``.metadata`` is the footer,
    ``.to_table(use_threads=False)`` the rows with the footer metadata, the same table as
    ``ParquetFile.read`` decoded in about 0.6 of its time (which pages of a few hundred rows make
    count). Raises pyarrow errors on a file that is not Parquet or is corrupt."""
    buf = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    return _PARQUET.make_fragment(buf, row_groups=None if row_groups is None else list(row_groups))


def read_segment(data: bytes, *, use_threads: bool = True) -> pa.Table:
    """Parse segment bytes; raises ValueError for a file that is not a segment (its Parquet schema,
    section 5) and pyarrow errors on a corrupt file.

    ``use_threads=False`` decodes on the calling thread only (a verifier that runs
    one process per core).
    """
    fragment = parquet_fragment(data)
    md = fragment.metadata
    problem = parquet_schema_problem(md.schema)
    if problem is not None:
        raise ValueError(f"segment schema differs from the wormjournal schema: {problem}")
    return decode_rows(data, fragment, range(md.num_row_groups), use_threads=use_threads)


def decode_rows(data: bytes, fragment: ds.ParquetFileFragment, row_groups: Sequence[int], *,
                use_threads: bool = False) -> pa.Table:
    """Row groups of a segment whose Parquet schema was checked (parquet_schema_problem), with its footer
    metadata: decoded by the C extension when its pages are plain ones (pages.decode_plain), else by pyarrow."""
    table = pages.decode_plain(data, SCHEMA, pages.chunks_of_metadata(fragment.metadata, row_groups))
    if table is not None:
        return table.replace_schema_metadata(fragment.physical_schema.metadata)
    return as_segment_table(fragment.subset(row_group_ids=list(row_groups)).to_table(use_threads=use_threads))


_HASH_KINDS = {Kind.INT: "i", Kind.STR: "s", Kind.BYTES: "b"}
# The columns an event hash covers, in its order (FORMAT.md 2.3), with their kinds as event_hashes takes them.
_HASH_ORDER = [("prev_hash", "r"), *((name, _HASH_KINDS[kind]) for name, kind, _ in FIELDS)]


def decode_hashed(data: bytes, fragment: ds.ParquetFileFragment,
                  columns: Sequence[str]) -> tuple[bytes, pa.Table] | None:
    """Every row of a segment whose Parquet schema was checked (parquet_schema_problem) decoded and hashed in one
    pass by the C extension (pages.decode_hashed): each row's event hash over its stored prev_hash, 32 bytes a
    row in storage order (what :func:`packed_row_hashes` gives for all rows), and ``columns`` of every row as a
    table. None when its pages are laid out otherwise or without the extension: then :func:`decode_rows` and
    :func:`packed_row_hashes`, whose answer stands."""
    md = fragment.metadata
    got = pages.decode_hashed(data, SCHEMA, pages.chunks_of_metadata(md, range(md.num_row_groups)), _HASH_ORDER,
                              EVENT_TAG, columns)
    if got is None:
        return None
    hashes, arrays = got
    schema = pa.schema([SCHEMA.field(name) for name in columns])
    return hashes, pa.Table.from_arrays([arrays[name] for name in columns], schema=schema)


def first_out_of_order(table: pa.Table) -> int | None:
    """The first row not in (execution_id, seq) order, or None when the order is right."""
    order = np.asarray(pc.sort_indices(table, sort_keys=[("execution_id", "ascending"), ("seq", "ascending")]))
    wrong = np.flatnonzero(order != np.arange(len(order)))
    return int(wrong[0]) if wrong.size else None


def in_seq_order(table: pa.Table) -> pa.Table:
    """The rows sorted by seq: the order of the chain and of the Merkle tree."""
    seq = np.asarray(table.column("seq"))
    if len(seq) < 2 or bool(np.all(seq[1:] > seq[:-1])):
        return table
    return table.take(pc.sort_indices(table.column("seq")))


def table_to_events(table: pa.Table, *, sort: bool = True) -> list[StoredEvent]:
    """The events of a segment table, in seq order (in the table's order with ``sort=False``)."""
    if sort:
        table = in_seq_order(table)
    elif table.num_columns and table.column(0).num_chunks > 1:
        table = table.combine_chunks()  # each column read once, not a chunk at a time (rows of many reads)
    # ts as int64 micros: a tampered value outside datetime's range must not crash the reader.
    cols = [
        (table.column(name).cast(pa.int64()) if name == "ts" else table.column(name)).to_pylist()
        for name in SCHEMA.names
    ]
    return [StoredEvent(*row) for row in zip(*cols, strict=True)]


_INT_PREFIX = np.frombuffer(b"\x00\x00\x00\x08", dtype=np.uint8)
_NULL_MARK = np.frombuffer(NULL_MARK, dtype=np.uint8)

# A field's encoding is built from pieces: a numpy (rows, width) uint8 matrix when every
# row has the same width (length prefixes, non-null ints), else an Arrow binary array.
_Piece: TypeAlias = np.ndarray | pa.Array


def _rows(matrix: np.ndarray, keep: np.ndarray | None = None) -> pa.Array:
    """A binary array whose row i is ``matrix[i]``, restricted to the bytes where ``keep[i]``."""
    n, width = matrix.shape
    if keep is None:
        offsets = np.arange(0, n * width + 1, width, dtype=np.int32)
        data = np.ascontiguousarray(matrix)
    else:
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(keep.sum(axis=1), out=offsets[1:])
        data = matrix[keep]  # a 2-D boolean mask selects row by row, in C order
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _valid(col: pa.Array) -> np.ndarray | None:
    """The validity of each row as a numpy bool array, or None when there is no null."""
    if not col.null_count:
        return None
    bits = np.frombuffer(col.buffers()[0], dtype=np.uint8)
    # Arrow's validity bitmap is LSB-first; unpacking it beats converting is_valid().
    return np.unpackbits(bits, count=col.offset + len(col), bitorder="little")[col.offset :].view(bool)


def _null_marks(n: int) -> np.ndarray:
    return np.broadcast_to(_NULL_MARK, (n, 4))


def constant_piece(value: bytes, n: int) -> np.ndarray:
    """The same bytes on each of ``n`` rows."""
    return np.broadcast_to(np.frombuffer(value, dtype=np.uint8), (n, len(value)))


def _fixed_width(data: pa.Array, width: int) -> np.ndarray | None:
    """The values of a binary array as an (n, width) matrix (no copy), or None unless each is ``width`` bytes."""
    n = len(data)
    if data.null_count:
        return None
    offsets = _offsets(data)
    if not n or offsets[-1] - offsets[0] != width * n or not np.all(np.diff(offsets) == width):
        return None
    return np.frombuffer(data.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]].reshape(n, width)


def field_pieces(kind: str, col: pa.Array) -> list[_Piece]:
    """The canonical bytes of one field (FORMAT.md 2.2) on each row of ``col``, as pieces for :func:`join_pieces`."""
    return _int_pieces(col) if kind == Kind.INT else _bytes_pieces(col)


def _int_pieces(col: pa.Array) -> list[_Piece]:
    """u32be(8) || i64be(value) per row, or NULL_MARK."""
    if col.null_count == len(col):
        return [_null_marks(len(col))]
    values = np.asarray(col.cast(pa.int64()).fill_null(0))
    rows = np.empty((len(values), 12), dtype=np.uint8)
    rows[:, :4] = _INT_PREFIX
    rows[:, 4:] = values.astype(">i8").view(np.uint8).reshape(-1, 8)
    valid = _valid(col)
    if valid is None:
        return [rows]
    rows[~valid, :4] = _NULL_MARK
    keep = np.ones(rows.shape, dtype=bool)
    keep[:, 4:] = valid[:, None]  # a null keeps only its 4-byte mark
    return [_rows(rows, keep)]


def _offsets(data: pa.Array) -> np.ndarray:
    """The n + 1 value offsets of a binary array."""
    return np.frombuffer(data.buffers()[1], dtype=np.int32, count=len(data) + 1, offset=data.offset * 4)


def _length_prefix(data: pa.Array) -> np.ndarray:
    """u32be(len) per row of a binary array, or NULL_MARK for a null."""
    if data.null_count == len(data):
        return _null_marks(len(data))
    prefix = np.diff(_offsets(data)).astype(">u4").view(np.uint8).reshape(-1, 4)
    valid = _valid(data)
    if valid is not None:
        prefix[~valid] = _NULL_MARK
    return prefix


def _bytes_pieces(col: pa.Array) -> list[_Piece]:
    """u32be(len(b)) || b per row, or NULL_MARK."""
    data = col.cast(pa.binary())
    prefix = _length_prefix(data)
    if data.null_count == len(data):
        return [prefix]
    if not data.null_count:
        offsets = _offsets(data)
        width = int(offsets[1] - offsets[0])
        if np.all(np.diff(offsets) == width):
            if width == 0:
                return [prefix]  # every value is empty
            # Equal-length values (uuids, constant types) become a matrix, merged with its neighbours.
            values = np.frombuffer(data.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
            return [prefix, values.reshape(-1, width)]
    return [prefix, data.fill_null(b"")]  # a null's value adds no bytes


def _hstack(run: list[np.ndarray]) -> np.ndarray:
    """np.hstack of (n, width) uint8 matrices, each copied as one n-element column of a packed
    record dtype (an element of ``width`` bytes per row, not ``width`` one-byte copies)."""
    if len(run) == 1:
        return run[0]
    n = run[0].shape[0]
    record = np.dtype({"names": [f"f{i}" for i in range(len(run))], "formats": [f"V{m.shape[1]}" for m in run]})
    out = np.empty(n, dtype=record)
    for i, m in enumerate(run):
        out[f"f{i}"] = np.ascontiguousarray(m).view(f"V{m.shape[1]}").reshape(n)
    return out.view(np.uint8).reshape(n, record.itemsize)


def join_pieces(pieces: list[_Piece]) -> pa.Array:
    """Row-wise concatenation of the pieces; each run of adjacent matrices is one :func:`_hstack`."""
    arrays: list[pa.Array] = []
    run: list[np.ndarray] = []
    for piece in [*pieces, None]:
        if isinstance(piece, np.ndarray):
            run.append(piece)
            continue
        if run:
            arrays.append(_rows(_hstack(run)))
            run = []
        if piece is not None:
            arrays.append(piece)
    return arrays[0] if len(arrays) == 1 else pc.binary_join_element_wise(*arrays, b"")


def _values(array: pa.Array) -> memoryview:
    """The value bytes of a binary array, without a copy."""
    data = array.buffers()[2]
    return memoryview(data) if data is not None else memoryview(b"")


def chain_hashes(prev_hash: bytes, table: pa.Table) -> list[bytes]:
    """The event hash of every row of ``table`` (in seq order) chained from ``prev_hash``: row i's hash
    over the hash computed for row i-1, whatever its stored ``prev_hash`` says.

    Where the stored ``prev_hash`` is the chained one (an intact segment: every row), the row's hash is
    :func:`row_hashes`' (the vectorized encoding); past a break, each row is hashed one by one with
    :func:`wormjournal.events.event_hash` over its fields. Both are the one construction of FORMAT.md 2.3.
    """
    stored = row_hashes(table)
    prevs = table.column("prev_hash").to_pylist()
    out: list[bytes] = []
    h = prev_hash
    for i, (row, stored_prev) in enumerate(zip(stored, prevs, strict=True)):
        if stored_prev == h:
            h = row
        else:
            (e,) = table_to_events(table.slice(i, 1))
            h = event_hash(h, encode_fields(e.field_values()))
        out.append(h)
    return out


def bounded_batches(table: pa.Table, limit: int = 1 << 30) -> Iterator[pa.RecordBatch]:
    """The table's non-empty record batches, each cut in halves until it holds at most ``limit``
    bytes, so that one batch's joined hash inputs stay within a binary array's 32-bit offsets."""
    stack = [b for b in reversed(table.to_batches()) if b.num_rows]
    while stack:
        batch = stack.pop()
        if batch.num_rows > 1 and batch.nbytes > limit:
            half = batch.num_rows // 2
            stack += [batch.slice(half), batch.slice(0, half)]
        else:
            yield batch


def row_hash_inputs(batch: pa.RecordBatch) -> pa.Array:
    """Per row, the bytes its event hash is taken over: EVENT_TAG || stored prev_hash || canonical
    field bytes (a null prev_hash counts as empty), as one binary array (one contiguous buffer)."""
    n = batch.num_rows
    prev = batch.column("prev_hash").cast(pa.binary())
    pieces: list[_Piece] = [constant_piece(EVENT_TAG, n)]
    matrix = _fixed_width(prev, 32)
    pieces.append(matrix if matrix is not None else prev.fill_null(b""))
    for name, kind, _ in FIELDS:
        pieces += field_pieces(kind, batch.column(name))
    return join_pieces(pieces)


def hash_rows(inputs: pa.Array) -> list[bytes]:
    """SHA-256 of each value of a binary array (one hashlib call per row, no copies)."""
    if not len(inputs):
        return []
    if merkle._bulk is not None and inputs.type == pa.binary():
        data = inputs.buffers()[2]
        offsets = _offsets(inputs)
        return merkle.split_hashes(merkle._bulk.sha256_rows(data if data is not None else b"", offsets))
    bounds = _offsets(inputs).tolist()
    data = _values(inputs)
    sha = hashlib.sha256
    return [sha(data[a:b]).digest() for a, b in zip(bounds, bounds[1:], strict=False)]


def row_hashes(table: pa.Table) -> list[bytes]:
    """The event hash of each row from its own fields and stored ``prev_hash``, in table order.

    Unlike :func:`chain_hashes` this needs no neighbouring row, so it checks any subset
    of a segment's rows (a partial read); the chain links are checked separately.
    """
    hashes: list[bytes] = []
    for batch in bounded_batches(table):
        hashes += merkle.split_hashes(packed_row_hashes(batch))
    return hashes


def _arrow_column(code: str, col: pa.Array) -> tuple[str, pa.Buffer | None, int, pa.Buffer, pa.Buffer | None] | None:
    """An array as the C extension's event_hashes takes it: (kind, validity, offset, values, data) buffers; None
    when the array lacks a buffer that call needs."""
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if code == "i" and not (pa.types.is_int64(col.type) or pa.types.is_timestamp(col.type)):
        col = col.cast(pa.int64())
    elif code != "i" and not (pa.types.is_binary(col.type) or pa.types.is_string(col.type)):
        col = col.cast(pa.binary())  # the same layout: 32-bit offsets, then the bytes
    buffers = col.buffers()
    if buffers[1] is None:
        return None
    return code, buffers[0] if col.null_count else None, col.offset, buffers[1], None if code == "i" else buffers[2]


def packed_row_hashes(batch: pa.RecordBatch) -> bytes:
    """``b"".join(hash_rows(row_hash_inputs(batch)))``: each row's event hash over its stored prev_hash, 32 bytes
    a row; with the C extension, one call over the columns' Arrow buffers (no joined inputs, no object per row)."""
    packed = tagged_hashes(batch, EVENT_TAG, _HASH_ORDER)
    return packed if packed is not None else b"".join(hash_rows(row_hash_inputs(batch)))


def tagged_hashes(batch: pa.RecordBatch | pa.Table, tag: bytes, order: Sequence[tuple[str, str]]) -> bytes | None:
    """SHA-256(``tag`` || each column of ``order`` encoded as a field, FORMAT.md 2.2) of every row, 32 bytes a row,
    by one call of the C extension over the columns' Arrow buffers; ``order``: column names with their kinds (i: an
    INT, s: a STR, b: BYTES, r: raw bytes). None without the extension or when a column lacks a buffer it needs:
    the caller then builds the rows' bytes with :func:`field_pieces`, which give the same hashes."""
    if merkle._bulk is None or not batch.num_rows:
        return None
    columns = []
    for name, code in order:
        col = batch.column(name)
        column = _arrow_column(code, col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
        if column is None:
            return None
        columns.append(column)
    return merkle._bulk.event_hashes(batch.num_rows, tag, tuple(columns))  # type: ignore[no-any-return]


# -- records back to columns: the inverse of row_hash_inputs' field bytes, in bulk ---------------------------


def _u32be(data: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The big-endian u32 at each offset ``pos`` of ``data``."""
    out = data[pos].astype(np.uint32) << 24
    out |= data[pos + 1].astype(np.uint32) << 16
    out |= data[pos + 2].astype(np.uint32) << 8
    out |= data[pos + 3]
    return out  # type: ignore[no-any-return]


def _spans(buffer: pa.Buffer, starts: np.ndarray, lengths: np.ndarray, null: np.ndarray, kind: str,
           type_: pa.DataType) -> pa.Array:
    """The values ``buffer[starts[i] : starts[i] + lengths[i]]`` (spans in increasing order, not overlapping)
    as one array, copied by Arrow: the spans and the gaps between them are the values of one array over
    ``buffer``, and taking every other value keeps the spans."""
    n = len(starts)
    if kind == Kind.INT:
        raw = np.frombuffer(buffer, dtype=np.uint8)
        idx = starts[:, None] + np.arange(8)
        values = np.ascontiguousarray(raw[np.where(null[:, None], 0, idx)]).view(">i8").reshape(n).astype(np.int64)
        return pa.array(values, type=pa.int64(), mask=null if null.any() else None)
    small = buffer.size < 1 << 31  # 32-bit offsets: Arrow's take copies them faster
    bounds = np.empty(2 * n + 1, dtype=np.int32 if small else np.int64)
    bounds[0 : 2 * n : 2] = starts
    bounds[1 : 2 * n : 2] = starts + lengths
    bounds[2 * n] = bounds[2 * n - 1] if n else 0
    text = pa.types.is_string(type_)
    over = (pa.string() if text else pa.binary()) if small else (pa.large_string() if text else pa.large_binary())
    both = pa.Array.from_buffers(over, 2 * n, [None, pa.py_buffer(bounds), buffer])
    values = both.take(pa.array(np.arange(0, 2 * n, 2, dtype=np.int32 if small else np.int64)))
    if null.any():
        values = pc.if_else(pa.array(~null), values, pa.scalar(None, over))
    return values.cast(type_)


def records_table(buffer: bytes | pa.Buffer, starts: np.ndarray, ends: np.ndarray, prev_hash: bytes) -> pa.Table:
    """The rows of encoded records, in :data:`SCHEMA`, without a Python object per row: record i is
    ``buffer[starts[i] : ends[i]]``, its canonical field bytes (FORMAT.md 2.2) then its 32-byte hash; the
    records are in increasing order of offset and of seq, the first chained onto ``prev_hash``. Raises
    ValueError when a record does not parse (a field runs past its record, a null where none may be, an
    integer not of 8 bytes, text not UTF-8). The hashes are taken as they are: no hash is recomputed."""
    buf = pa.py_buffer(buffer) if not isinstance(buffer, pa.Buffer) else buffer
    data = np.frombuffer(buf, dtype=np.uint8)
    starts = np.asarray(starts, dtype=np.int64)
    field_end = np.asarray(ends, dtype=np.int64) - HASH_SIZE
    if np.any(field_end < starts):
        raise ValueError("a record is shorter than its hash")
    pos = starts.copy()
    columns: list[pa.Array] = []
    for name, kind, nullable in FIELDS:
        if np.any(pos + 4 > field_end):
            raise ValueError(f"a record ends before field {name}")
        length = _u32be(data, pos)
        null = length == 0xFFFFFFFF
        if null.any() and not nullable:
            raise ValueError(f"field {name} is null")
        size = np.where(null, 0, length).astype(np.int64)
        if kind == Kind.INT and np.any(size[~null] != 8):
            raise ValueError(f"field {name} is not 8 bytes")
        pos += 4
        if np.any(pos + size > field_end):
            raise ValueError(f"field {name} runs past its record")
        col = _spans(buf, pos, size, null, kind, SCHEMA.field(name).type if kind != Kind.INT else pa.int64())
        if pa.types.is_string(col.type):
            col.validate(full=True)  # UTF-8 (raises pyarrow.ArrowInvalid: a ValueError)
        columns.append(col)
        pos += size
    if np.any(pos != field_end):
        raise ValueError("a record has bytes between its fields and its hash")
    n = len(starts)
    hashes = data[field_end[:, None] + np.arange(HASH_SIZE)] if n else np.zeros((0, HASH_SIZE), np.uint8)
    hash_col = _rows(hashes)
    prev = np.empty((n, HASH_SIZE), dtype=np.uint8)
    if n:
        prev[0] = np.frombuffer(prev_hash, dtype=np.uint8)
        prev[1:] = hashes[:-1]
    columns[FIELD_NAMES.index("ts")] = columns[FIELD_NAMES.index("ts")].cast(SCHEMA.field("ts").type)
    return pa.Table.from_arrays([*columns, _rows(prev), hash_col], schema=SCHEMA)


def payload_refs(table: pa.Table) -> list[tuple[str, int]]:
    """(SHA-256 hex, seq) of every payload stored apart among the rows (codec ``+ref``, FORMAT.md 3.5)."""
    apart = pc.ends_with(table.column("payload_codec"), STORED_APART)
    if not pc.any(apart).as_py():
        return []
    rows = table.filter(apart)
    return [(parse_ref(ref)[0], seq) for ref, seq in zip(rows.column("payload").to_pylist(),
                                                          rows.column("seq").to_pylist(), strict=True)]
