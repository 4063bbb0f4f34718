"""Building the index: per-segment lookup tables, runs that merge them, and their Merkle roots.

The index (FORMAT.md, "Index") is three Parquet tables per segment, each sorted by
its key: ``executions`` (one row per execution in the segment: where its rows are,
its seqs, times, tenant and thread), ``threads`` (thread -> execution) and
``events`` (event id -> row and seq). Runs merge the tables of ``FANOUT**level``
aligned segments, so that a lookup reads a few objects however many segments
there are. Every index object's rows form a Merkle tree, row groups are its
subtrees (as in segments), and the manifest of the seal that wrote the object
signs its root: a reader authenticates the rows it reads and, because the rows
are sorted, that no row with its key was left out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import ConflictError
from ..events import Kind
from ..segments import merkle
from ..segments.manifest import IndexRoot
from ..segments.table import (
    bounded_batches,
    constant_piece,
    encode_block_roots,
    field_pieces,
    hash_rows,
    join_pieces,
)
from ..storage import layout
from ..storage.base import Store

log = logging.getLogger(__name__)

INDEX_FORMAT = "2"
LEAF_TAG = b"wormjournal:index:v1\x00"
FANOUT = 8  # a run at level L covers FANOUT**L segments
# Merged event-id tables grow with every event; beyond this level they would cost the
# writer too much memory to build, so event-id lookups read level-1 runs at most.
MAX_LEVEL = {"executions": 4, "threads": 4, "events": 1}
KEY_COLUMNS = ["execution_id", "seq", "ts", "tenant_id", "thread_id", "event_type", "exec_prev_seq", "event_id"]
BLOCK_ROWS_KEY = "wormjournal.block_rows"
BLOCK_ROOTS_KEY = "wormjournal.block_roots"

_TS = pa.timestamp("us", tz="UTC")
EXECUTIONS_SCHEMA = pa.schema(
    [
        pa.field("execution_id", pa.string(), nullable=False),
        pa.field("segment", pa.int64(), nullable=False),
        pa.field("row", pa.int64(), nullable=False),  # first row of the execution in the segment
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("first_seq", pa.int64(), nullable=False),
        pa.field("last_seq", pa.int64(), nullable=False),
        pa.field("prev_seq", pa.int64()),  # exec_prev_seq of the first of these rows
        pa.field("first_ts", _TS, nullable=False),
        pa.field("last_ts", _TS, nullable=False),
        pa.field("tenant_id", pa.string()),
        pa.field("thread_id", pa.string()),  # of the first of these rows
        pa.field("last_event_type", pa.string(), nullable=False),
    ]
)
THREADS_SCHEMA = pa.schema(
    [
        pa.field("thread_id", pa.string(), nullable=False),
        pa.field("execution_id", pa.string(), nullable=False),
        pa.field("segment", pa.int64(), nullable=False),
    ]
)
EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("segment", pa.int64(), nullable=False),
        pa.field("row", pa.int64(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
    ]
)
SCHEMAS = {"executions": EXECUTIONS_SCHEMA, "threads": THREADS_SCHEMA, "events": EVENTS_SCHEMA}
KEY = {"executions": "execution_id", "threads": "thread_id", "events": "event_id"}
# Each table is sorted by all of its columns that make a row unique, the key first.
_SORT_KEY = {
    "executions": [("execution_id", "ascending"), ("segment", "ascending")],
    "threads": [("thread_id", "ascending"), ("execution_id", "ascending"), ("segment", "ascending")],
    "events": [("event_id", "ascending"), ("segment", "ascending"), ("row", "ascending")],
}
# Row groups are Merkle subtrees, so powers of two; small enough that proving a key's
# neighbours costs little, large enough that the footer stays small.
BLOCK_ROWS = {"executions": 1024, "threads": 1024, "events": 4096}
_DICTIONARY = {"executions": ["tenant_id", "thread_id", "last_event_type"], "threads": False, "events": False}


def segment_tables(table: pa.Table, segment: int) -> dict[str, pa.Table]:
    """The index tables of one segment, from its rows in storage order (at least KEY_COLUMNS)."""
    n = table.num_rows
    ids = table.column("execution_id").combine_chunks()
    if n:
        changed = np.asarray(pc.not_equal(ids[1:], ids[:-1]).fill_null(True), dtype=bool)
        starts = np.concatenate([[0], np.flatnonzero(changed) + 1]).astype(np.int64)
    else:
        starts = np.zeros(0, dtype=np.int64)
    ends = np.append(starts[1:], n).astype(np.int64) - 1

    def at(name: str, rows: np.ndarray) -> pa.Array:
        return table.column(name).take(pa.array(rows, pa.int64())).combine_chunks()

    executions = pa.Table.from_arrays(
        [
            at("execution_id", starts),
            pa.array(np.full(len(starts), segment, dtype=np.int64)),
            pa.array(starts),
            pa.array(ends - starts + 1),
            at("seq", starts),
            at("seq", ends),
            at("exec_prev_seq", starts),
            at("ts", starts).cast(_TS),
            at("ts", ends).cast(_TS),
            at("tenant_id", starts),
            at("thread_id", starts),
            at("event_type", ends),
        ],
        schema=EXECUTIONS_SCHEMA,
    )
    pairs = table.select(["thread_id", "execution_id"]).filter(pc.is_valid(table.column("thread_id")))
    pairs = pairs.group_by(["thread_id", "execution_id"]).aggregate([])
    threads = pa.Table.from_arrays(
        [pairs.column("thread_id"), pairs.column("execution_id"),
         pa.array(np.full(pairs.num_rows, segment, dtype=np.int64))],
        schema=THREADS_SCHEMA,
    )
    events = pa.Table.from_arrays(
        [
            table.column("event_id").combine_chunks(),
            pa.array(np.full(n, segment, dtype=np.int64)),
            pa.array(np.arange(n, dtype=np.int64)),
            table.column("seq").combine_chunks(),
        ],
        schema=EVENTS_SCHEMA,
    )
    return {kind: sort_rows(kind, t) for kind, t in
            {"executions": executions, "threads": threads, "events": events}.items()}


def sort_rows(kind: str, table: pa.Table) -> pa.Table:
    table = table.replace_schema_metadata(None).cast(SCHEMAS[kind])
    return table.take(pc.sort_indices(table, sort_keys=_SORT_KEY[kind]))


def leaf_hashes(kind: str, table: pa.Table) -> list[bytes]:
    """The Merkle leaf hash of each row (FORMAT.md, "Index"): its columns in schema order,
    each encoded as an event field is (strings as STR, integers and timestamps as INT), in bulk."""
    prefix = b"\x00" + LEAF_TAG + kind.encode() + b"\x00"
    hashes: list[bytes] = []
    for batch in bounded_batches(table.select([f.name for f in SCHEMAS[kind]])):
        pieces = [constant_piece(prefix, batch.num_rows)]
        for field in SCHEMAS[kind]:
            col = batch.column(field.name).cast(field.type)
            if pa.types.is_timestamp(field.type):
                col = col.cast(pa.int64())
            pieces += field_pieces(Kind.STR if pa.types.is_string(field.type) else Kind.INT, col)
        hashes += hash_rows(join_pieces(pieces))
    return hashes


def encode(kind: str, table: pa.Table, *, journal_id: str, stream: str, first: int,
           last: int) -> tuple[bytes, IndexRoot]:
    """Parquet bytes of one index object (``table`` sorted by :func:`sort_rows`), and its root."""
    table = table.cast(SCHEMAS[kind])
    block = BLOCK_ROWS[kind]
    leaves = leaf_hashes(kind, table)
    roots = merkle.block_roots(leaves, block)
    table = table.replace_schema_metadata(
        {
            "wormjournal.index": INDEX_FORMAT,
            "wormjournal.journal": journal_id,
            "wormjournal.stream": stream,
            "wormjournal.kind": kind,
            "wormjournal.first_segment": str(first),
            "wormjournal.last_segment": str(last),
            BLOCK_ROWS_KEY: str(block),
            BLOCK_ROOTS_KEY: encode_block_roots(roots),
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=block, compression="zstd", use_dictionary=_DICTIONARY[kind],
                   write_statistics=True)
    return sink.getvalue().to_pybytes(), IndexRoot(kind, first, last, table.num_rows,
                                                   merkle.root_from_leaf_hashes(roots))


def _put(store: Store, name: str, data: bytes) -> None:
    """Write-once put; an object already there with other bytes (another pyarrow's encoding of
    the same rows, or an interrupted seal's) is kept: readers check it against the signed root."""
    try:
        store.put(name, data)
    except ConflictError:
        log.info("index object %s exists with other bytes; keeping it", name)


def run_bounds(level: int, k: int) -> tuple[int, int]:
    span = FANOUT**level
    return k * span, (k + 1) * span - 1


def runs_ending_at(kind: str, segment: int) -> list[tuple[int, int, int]]:
    """(level, first, last) of every run of ``kind`` that segment ``segment`` completes."""
    out = []
    for level in range(1, MAX_LEVEL[kind] + 1):
        span = FANOUT**level
        if (segment + 1) % span:
            break
        out.append((level, segment + 1 - span, segment))
    return out


# Reads the rows of an earlier index object (kind, first, last), authenticated against the root
# its manifest signs; None when it is missing or does not authenticate.
EarlierRows = Callable[[str, int, int], "pa.Table | None"]


# A run of more rows than this is left out (lookups read its smaller inputs): the rows of a merge are held in
# memory, and the executions and threads tables grow with the executions, so a writer's memory stays bounded.
MAX_RUN_ROWS = 2_000_000

# Called with each index object a seal writes, (kind, first, last, rows): rows a later run may merge.
Written = Callable[[str, int, int, pa.Table], None]


def write_seal_index(store: Store, *, journal_id: str, stream: str, segment: int, table: pa.Table,
                     earlier: EarlierRows, written: Written | None = None) -> list[IndexRoot]:
    """Store segment ``segment``'s index objects and every run it completes; returns their roots.

    ``table`` is the segment's rows in storage order (at least KEY_COLUMNS). A run whose
    earlier inputs are missing or damaged, or that would hold more than MAX_RUN_ROWS rows, is left out:
    lookups then read smaller objects.
    """
    roots: list[IndexRoot] = []
    for kind, rows in segment_tables(table, segment).items():
        current = rows  # the rows of the object ending at this segment, at the level being built
        data, root = encode(kind, rows, journal_id=journal_id, stream=stream, first=segment, last=segment)
        _put(store, layout.index_object(stream, kind, segment, segment), data)
        roots.append(root)
        if written is not None:
            written(kind, segment, segment, rows)
        for level, first, last in runs_ending_at(kind, segment):
            parts = []
            for i in range(FANOUT - 1):
                part = earlier(kind, *run_bounds(level - 1, first // FANOUT ** (level - 1) + i))
                if part is None:
                    break
                parts.append(part)
            if len(parts) != FANOUT - 1:
                log.warning("index run %s %d-%d left out: an input is missing or damaged (lookups read smaller "
                            "objects there)", kind, first, last)
                break
            if sum(p.num_rows for p in parts) + current.num_rows > MAX_RUN_ROWS:
                log.info("index run %s %d-%d left out: over %d rows (lookups read its inputs)", kind, first, last,
                         MAX_RUN_ROWS)
                break
            current = sort_rows(kind, pa.concat_tables(
                [p.replace_schema_metadata(None).cast(SCHEMAS[kind]) for p in parts] + [current]))
            data, root = encode(kind, current, journal_id=journal_id, stream=stream, first=first, last=last)
            _put(store, layout.index_object(stream, kind, first, last), data)
            roots.append(root)
            if written is not None:
                written(kind, first, last, current)
    return roots


def expected_objects(roots: Sequence[IndexRoot], stream: str) -> dict[str, IndexRoot]:
    return {layout.index_object(stream, r.kind, r.first, r.last): r for r in roots}
