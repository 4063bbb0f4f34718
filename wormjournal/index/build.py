"""Building the index: per-segment lookup tables, runs that merge them, and their Merkle roots.

The index (FORMAT.md, "Index") is three Parquet tables per segment, each sorted by
its key: ``executions`` (one row per execution in the segment: where its rows are,
its seqs, times, tenant and thread), ``threads`` (thread -> execution) and
``events`` (a fingerprint of the event id -> segment and row). Runs merge the tables
of aligned segments: ``2, 4, 6`` and ``8`` blocks of ``8**(L-1)`` segments from a
multiple of ``8**L`` (:func:`ranges_ending_at`), so that the segments ``0..n-1`` are
covered by at most two objects per octal digit of ``n`` (:func:`cover`). Every index
object's rows form a Merkle tree, row groups are its subtrees (as in segments), and
the manifest of the seal that wrote the object signs its root: a reader authenticates
the rows it reads and, because the rows are sorted, that no row with its key was left
out. Runs are merged a row group at a time (:func:`merge_sorted`), so a writer's memory
does not grow with them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import ConflictError, IndexDamaged
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

INDEX_FORMAT = "3"
READ_FORMATS = ("2", "3")  # format 2: events rows by event id, runs of 8**L segments only
LEAF_TAG = b"wormjournal:index:v1\x00"
FINGERPRINT_TAG = b"wormjournal:event-id:v1\x00"
FANOUT = 8
# Runs cover at most FANOUT**MAX_LEVEL segments (4096): a larger one would hold a seal for minutes while it is
# merged. Beyond that, a lookup reads one more object per 4096 segments.
MAX_LEVEL = 4
# A run of more rows than this is left out (lookups read its inputs): merging it would hold a seal too long.
MAX_RUN_ROWS = 50_000_000
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
        pa.field("fingerprint", pa.int64(), nullable=False),
        pa.field("segment", pa.int64(), nullable=False),
        pa.field("row", pa.int64(), nullable=False),
    ]
)
# Index format 2's events rows: the event id itself, and its seq (read, never written).
EVENTS_SCHEMA_2 = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("segment", pa.int64(), nullable=False),
        pa.field("row", pa.int64(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
    ]
)
SCHEMAS = {"executions": EXECUTIONS_SCHEMA, "threads": THREADS_SCHEMA, "events": EVENTS_SCHEMA}
KEY = {"executions": "execution_id", "threads": "thread_id", "events": "fingerprint"}
# Each table is sorted by all of its columns that make a row unique, the key first.
_SORT_KEY = {
    "executions": [("execution_id", "ascending"), ("segment", "ascending")],
    "threads": [("thread_id", "ascending"), ("execution_id", "ascending"), ("segment", "ascending")],
    "events": [("fingerprint", "ascending"), ("segment", "ascending"), ("row", "ascending")],
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
            pa.array(fingerprints(table.column("event_id").combine_chunks()), pa.int64()),
            pa.array(np.full(n, segment, dtype=np.int64)),
            pa.array(np.arange(n, dtype=np.int64)),
        ],
        schema=EVENTS_SCHEMA,
    )
    return {kind: sort_rows(kind, t) for kind, t in
            {"executions": executions, "threads": threads, "events": events}.items()}


def fingerprint(event_id: str) -> int:
    """An event id's fingerprint (FORMAT.md 11a): the first 4 bytes of SHA-256(FINGERPRINT_TAG || the id as a
    STR field), big-endian. Ids that share one are told apart by the rows they point at."""
    data = event_id.encode()
    return int.from_bytes(hashlib.sha256(FINGERPRINT_TAG + len(data).to_bytes(4, "big") + data).digest()[:4], "big")


def fingerprints(ids: pa.Array) -> np.ndarray:
    """:func:`fingerprint` of each id of a string array, hashed in bulk."""
    if not len(ids):
        return np.zeros(0, dtype=np.int64)
    pieces = [constant_piece(FINGERPRINT_TAG, len(ids)), *field_pieces(Kind.STR, ids)]
    digests = b"".join(hash_rows(join_pieces(pieces)))
    return np.frombuffer(digests, dtype=">u4")[::8].astype(np.int64)


def sort_rows(kind: str, table: pa.Table) -> pa.Table:
    table = table.replace_schema_metadata(None).cast(SCHEMAS[kind])
    return table.take(pc.sort_indices(table, sort_keys=_SORT_KEY[kind]))


def leaf_hashes(kind: str, table: pa.Table, schema: pa.Schema | None = None) -> list[bytes]:
    """The Merkle leaf hash of each row (FORMAT.md, "Index"): its columns in schema order (the kind's, or
    ``schema``, an older format's), each encoded as an event field is (strings as STR, integers and
    timestamps as INT), in bulk."""
    schema = SCHEMAS[kind] if schema is None else schema
    prefix = b"\x00" + LEAF_TAG + kind.encode() + b"\x00"
    hashes: list[bytes] = []
    for batch in bounded_batches(table.select(schema.names)):
        pieces = [constant_piece(prefix, batch.num_rows)]
        for field in schema:
            col = batch.column(field.name).cast(field.type)
            if pa.types.is_timestamp(field.type):
                col = col.cast(pa.int64())
            pieces += field_pieces(Kind.STR if pa.types.is_string(field.type) else Kind.INT, col)
        hashes += hash_rows(join_pieces(pieces))
    return hashes


def encode(kind: str, table: pa.Table, *, journal_id: str, stream: str, first: int,
           last: int) -> tuple[bytes, IndexRoot]:
    """Parquet bytes of one index object (``table`` sorted by :func:`sort_rows`), and its root."""
    return encode_sorted(kind, [table], journal_id=journal_id, stream=stream, first=first, last=last)


def encode_sorted(kind: str, parts: Iterable[pa.Table], *, journal_id: str, stream: str, first: int,
                  last: int) -> tuple[bytes, IndexRoot]:
    """Parquet bytes of one index object whose rows are ``parts`` one after another (sorted by
    :func:`sort_rows` as a whole), and its root; each row group is hashed and written as it fills."""
    schema = SCHEMAS[kind]
    block = BLOCK_ROWS[kind]
    meta = {
        "wormjournal.index": INDEX_FORMAT,
        "wormjournal.journal": journal_id,
        "wormjournal.stream": stream,
        "wormjournal.kind": kind,
        "wormjournal.first_segment": str(first),
        "wormjournal.last_segment": str(last),
        BLOCK_ROWS_KEY: str(block),
    }
    sink = pa.BufferOutputStream()
    roots: list[bytes] = []
    rows = 0
    # No ARROW:schema: it is written first, before the block roots are known; the Parquet types give the same
    # Arrow schema back, and the footer's key-value metadata (every key above, the block roots last) is its metadata.
    with pq.ParquetWriter(sink, schema, compression="zstd", use_dictionary=_DICTIONARY[kind],
                          write_statistics=True, store_schema=False) as writer:
        for group in _blocks((p.replace_schema_metadata(None).cast(schema) for p in parts), block):
            roots.append(merkle.root_from_leaf_hashes(leaf_hashes(kind, group)))
            writer.write_table(group, row_group_size=block)
            rows += group.num_rows
        writer.add_key_value_metadata({**meta, BLOCK_ROOTS_KEY: encode_block_roots(roots)})
    root = merkle.root_from_leaf_hashes(roots)  # the blocks are complete subtrees
    return sink.getvalue().to_pybytes(), IndexRoot(kind, first, last, rows, root)


def _blocks(parts: Iterable[pa.Table], block: int) -> Iterator[pa.Table]:
    """The rows of ``parts`` in tables of ``block`` rows (the last may hold fewer)."""
    pending: list[pa.Table] = []
    held = 0
    for part in parts:
        while part.num_rows:
            take = min(block - held, part.num_rows)
            pending.append(part.slice(0, take))
            part = part.slice(take)
            held += take
            if held == block:
                yield pa.concat_tables(pending).combine_chunks()
                pending, held = [], 0
    if held:
        yield pa.concat_tables(pending).combine_chunks()


def merge_sorted(kind: str, sources: Sequence[Iterable[pa.Table]]) -> Iterator[pa.Table]:
    """The rows of several sources, each a sequence of tables sorted by :func:`sort_rows` as a whole, merged
    into one sorted sequence; a source is read a table at a time, so memory holds one table per source (and
    the rows of one key that spans tables)."""
    key = KEY[kind]
    schema = SCHEMAS[kind]
    its = [iter(source) for source in sources]
    done = [False] * len(its)
    bufs = [schema.empty_table() for _ in its]  # each source's rows not merged yet, from its current table
    waiting: list[pa.Table] = []  # rows of the current smallest key, while a source may hold more of it
    while True:
        for i, it in enumerate(its):
            while not done[i] and not bufs[i].num_rows:
                nxt = next(it, None)
                if nxt is None:
                    done[i] = True
                else:
                    bufs[i] = nxt.replace_schema_metadata(None).cast(schema)
        live = [i for i, b in enumerate(bufs) if b.num_rows]
        if not live:
            if waiting:
                yield sort_rows(kind, pa.concat_tables(waiting))
            return
        frontier = min(bufs[i].column(key)[-1].as_py() for i in live)
        below = pa.scalar(frontier, schema.field(key).type)
        out: list[pa.Table] = []
        if waiting and waiting[0].column(key)[0].as_py() < frontier:  # all of that key is in: no source holds more
            out, waiting = waiting, []
        for i in live:
            mask = pc.less(bufs[i].column(key), below)
            out.append(bufs[i].filter(mask))
            rest = bufs[i].filter(pc.invert(mask))
            if rest.num_rows and rest.column(key)[-1].as_py() == frontier:
                waiting.append(rest)  # all of the frontier key: the source's next table may hold more of it
                bufs[i] = rest.slice(0, 0)
            else:
                bufs[i] = rest
        merged = pa.concat_tables(out)
        if merged.num_rows:
            yield sort_rows(kind, merged)


def _row_groups(data: bytes) -> Iterator[pa.Table]:
    """The row groups of index object bytes this writer made, one table at a time."""
    pf = pq.ParquetFile(pa.BufferReader(data))
    for j in range(pf.metadata.num_row_groups):
        yield pf.read_row_group(j)


def _put(store: Store, name: str, data: bytes) -> None:
    """Write-once put; an object already there with other bytes (another pyarrow's encoding of
    the same rows, or an interrupted seal's) is kept: readers check it against the signed root."""
    try:
        store.put(name, data)
    except ConflictError:
        log.info("index object %s exists with other bytes; keeping it", name)


# -- which objects exist ----------------------------------------------------------------------------------------


def _run_shape(first: int, last: int) -> tuple[int, int] | None:
    """(s, j) when segments first..last are a run: j in (2, 4, 6, 8) blocks of s = 8**(L-1) segments from a
    multiple of 8**L, for L = 1..MAX_LEVEL; None for anything else (one segment included)."""
    size = last - first + 1
    s = 1
    for _ in range(MAX_LEVEL):
        if size % s == 0 and size // s in (2, 4, 6, 8) and first % (FANOUT * s) == 0:
            return s, size // s
        s *= FANOUT
    return None


def is_object_range(first: int, last: int) -> bool:
    """Whether an index object may cover segments first..last (FORMAT.md 11a): one segment, or a run."""
    return 0 <= first == last or (0 <= first < last and _run_shape(first, last) is not None)


def run_inputs(first: int, last: int) -> list[tuple[int, int]]:
    """The objects a run merges, in segment order: the run of two blocks fewer (none for two blocks) and the
    last two blocks; [] for one segment. They cover the same segments, so they also stand in for it."""
    shape = _run_shape(first, last)
    if shape is None:
        return []
    s, j = shape
    head = [(first, first + (j - 2) * s - 1)] if j > 2 else []
    return head + [(first + (j - 2) * s, first + (j - 1) * s - 1), (first + (j - 1) * s, last)]


def ranges_ending_at(segment: int) -> list[tuple[int, int]]:
    """Every object a seal of ``segment`` writes, each kind: the segment's own, then each run it completes."""
    out = [(segment, segment)]
    s = 1
    for _ in range(MAX_LEVEL):
        if (segment + 1) % (2 * s):
            break
        out.append((segment - segment % (FANOUT * s), segment))
        s *= FANOUT
    return out


def cover(segments: int) -> list[tuple[int, int]]:
    """The objects that cover segments 0..segments-1, largest first: for each octal digit d of the count (from
    the top), the run of d - d % 2 blocks and, for an odd d, one block more; so at most two per digit."""
    out = []
    top = FANOUT**MAX_LEVEL
    pos = 0
    while pos + top <= segments:
        out.append((pos, pos + top - 1))
        pos += top
    size = top // FANOUT
    while size:
        d = (segments - pos) // size
        if d >= 2:
            out.append((pos, pos + (d - d % 2) * size - 1))
            pos += (d - d % 2) * size
        if d % 2:
            out.append((pos, pos + size - 1))
            pos += size
        size //= FANOUT
    return out


# The rows of an earlier index object (kind, first, last): how many its manifest signs, and the rows, read a table
# at a time and authenticated against the signed root as they are; None when it is missing or not signed.
EarlierRows = Callable[[str, int, int], "tuple[int, Iterable[pa.Table]] | None"]

# Called with each index object a seal writes, (kind, first, last, rows): rows a later run may merge (the rows of
# the segment's own objects; a run's, None: a later run reads them back).
Written = Callable[[str, int, int, "pa.Table | None"], None]


def write_seal_index(store: Store, *, journal_id: str, stream: str, segment: int, table: pa.Table,
                     earlier: EarlierRows, written: Written | None = None) -> list[IndexRoot]:
    """Store segment ``segment``'s index objects and every run it completes; returns their roots.

    ``table`` is the segment's rows in storage order (at least KEY_COLUMNS). A run whose
    earlier inputs are missing or damaged, or that would hold more than MAX_RUN_ROWS rows, is left out:
    lookups then read its inputs.
    """
    roots: list[IndexRoot] = []
    for kind, rows in segment_tables(table, segment).items():
        data, root = encode(kind, rows, journal_id=journal_id, stream=stream, first=segment, last=segment)
        _put(store, layout.index_object(stream, kind, segment, segment), data)
        roots.append(root)
        made: dict[tuple[int, int], tuple[int, Iterable[pa.Table]]] = {(segment, segment): (rows.num_rows, (rows,))}
        if written is not None:
            written(kind, segment, segment, rows)
        for first, last in ranges_ending_at(segment)[1:]:
            inputs = run_inputs(first, last)
            found = [made.pop(r, None) or earlier(kind, *r) for r in inputs]
            sources = [f for f in found if f is not None]
            if len(sources) != len(inputs):
                log.warning("index run %s %d-%d left out: an input is missing or damaged (lookups read its inputs)",
                            kind, first, last)
                break
            if sum(n for n, _ in sources) > MAX_RUN_ROWS:
                log.info("index run %s %d-%d left out: over %d rows (lookups read its inputs)", kind, first, last,
                         MAX_RUN_ROWS)
                break
            try:
                data, root = encode_sorted(kind, merge_sorted(kind, [source for _, source in sources]),
                                           journal_id=journal_id, stream=stream, first=first, last=last)
            except IndexDamaged as e:  # an input found altered while it was merged
                log.warning("index run %s %d-%d left out: %s (lookups read its inputs)", kind, first, last, e)
                break
            _put(store, layout.index_object(stream, kind, first, last), data)
            roots.append(root)
            made[(first, last)] = (root.rows, _row_groups(data))  # the input of the next run of this seal
            if written is not None:
                written(kind, first, last, None)
    return roots


def expected_objects(roots: Sequence[IndexRoot], stream: str) -> dict[str, IndexRoot]:
    return {layout.index_object(stream, r.kind, r.first, r.last): r for r in roots}
