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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

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
    tagged_hashes,
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
# A run's claim of the manifest hashes of its segments but the last (FORMAT.md 11a, "Manifest hashes"): not signed,
# checked by a reader against a checkpoint's root, so that it need not read every manifest.
MANIFESTS_KEY = "wormjournal.manifests"

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
# One row per (execution, segment) with a tenant, by tenant and newest start first: executions(tenant, limit) reads
# the first rows of its tenant in each object. ``started`` is the ts of the execution's first event, wherever it is.
TENANTS_SCHEMA = pa.schema(
    [
        pa.field("tenant_id", pa.string(), nullable=False),
        pa.field("started", _TS, nullable=False),
        pa.field("execution_id", pa.string(), nullable=False),
        pa.field("segment", pa.int64(), nullable=False),
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("first_seq", pa.int64(), nullable=False),
        pa.field("last_seq", pa.int64(), nullable=False),
        pa.field("last_ts", _TS, nullable=False),
        pa.field("thread_id", pa.string()),
        pa.field("last_event_type", pa.string(), nullable=False),
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
SCHEMAS = {"executions": EXECUTIONS_SCHEMA, "threads": THREADS_SCHEMA, "events": EVENTS_SCHEMA,
           "tenants": TENANTS_SCHEMA}
KEY = {"executions": "execution_id", "threads": "thread_id", "events": "fingerprint", "tenants": "tenant_id"}
# Each table is sorted by all of its columns that make a row unique, the key first.
_SORT_KEY = {
    "executions": [("execution_id", "ascending"), ("segment", "ascending")],
    "threads": [("thread_id", "ascending"), ("execution_id", "ascending"), ("segment", "ascending")],
    "events": [("fingerprint", "ascending"), ("segment", "ascending"), ("row", "ascending")],
    "tenants": [("tenant_id", "ascending"), ("started", "descending"), ("execution_id", "ascending"),
                ("segment", "ascending")],
}
# Row groups are Merkle subtrees, so powers of two; small enough that proving a key's
# neighbours costs little, large enough that the footer stays small.
BLOCK_ROWS = {"executions": 1024, "threads": 1024, "events": 4096, "tenants": 1024}


def segment_tables(table: pa.Table, segment: int, started: Mapping[str, int] | None = None) -> dict[str, pa.Table]:
    """The index tables of one segment, from its rows in storage order (at least KEY_COLUMNS). ``started`` has
    the start (FORMAT.md 11a: the ts of its first event, microseconds) of each execution that began in an
    earlier segment; one it lacks (a table computed to read, not to sign) gets its first ts here."""
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
            {"executions": executions, "threads": threads, "events": events,
             "tenants": tenant_rows(executions, started or {})}.items()}


def tenant_rows(executions: pa.Table, started: Mapping[str, int]) -> pa.Table:
    """The tenants rows of executions rows (those with a tenant), each with its execution's start: its first
    ts here when it begins here (no ``prev_seq``), else ``started[execution_id]``."""
    rows = executions.filter(pc.is_valid(executions.column("tenant_id")))
    first = rows.column("first_ts").cast(pa.int64()).to_pylist()
    begins = rows.column("prev_seq").is_null().to_pylist()
    ids = rows.column("execution_id").to_pylist()
    starts = [f if b else started.get(x, f) for x, f, b in zip(ids, first, begins, strict=True)]
    return pa.Table.from_arrays(
        [rows.column("tenant_id"), pa.array(starts, pa.int64()).cast(_TS), rows.column("execution_id"),
         rows.column("segment"), rows.column("rows"), rows.column("first_seq"), rows.column("last_seq"),
         rows.column("last_ts"), rows.column("thread_id"), rows.column("last_event_type")],
        schema=TENANTS_SCHEMA,
    )


def execution_starts(executions: pa.Table) -> dict[str, int]:
    """Each execution's start (microseconds) from executions rows that hold its first event (no ``prev_seq``)."""
    rows = executions.filter(pc.is_null(executions.column("prev_seq")))
    rows = rows.sort_by([("first_seq", "descending")])  # the earliest wins where one begins twice (a fork)
    return dict(zip(rows.column("execution_id").to_pylist(), rows.column("first_ts").cast(pa.int64()).to_pylist(),
                    strict=True))


def current_rows(kind: str, fmt: str, table: pa.Table) -> pa.Table:
    """Rows of an object of index format ``fmt`` as the current format has them, sorted: format 2's events rows
    (an event id, not its fingerprint) with their fingerprints."""
    if kind != "events" or fmt != "2":
        return table
    rows = pa.table({"fingerprint": pa.array(fingerprints(table.column("event_id").combine_chunks()), pa.int64()),
                     "segment": table.column("segment"), "row": table.column("row")}, schema=EVENTS_SCHEMA)
    return sort_rows(kind, rows)


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
    return merkle.split_hashes(packed_leaf_hashes(kind, table, schema))


def packed_leaf_hashes(kind: str, table: pa.Table, schema: pa.Schema | None = None) -> bytes:
    """:func:`leaf_hashes`, concatenated."""
    schema = SCHEMAS[kind] if schema is None else schema
    prefix = b"\x00" + LEAF_TAG + kind.encode() + b"\x00"
    order = [(f.name, "s" if pa.types.is_string(f.type) else "i") for f in schema]
    packed = tagged_hashes(table, prefix, order)  # no joined inputs: no batches to bound
    if packed is not None:
        return packed
    hashes: list[bytes] = []
    for batch in bounded_batches(table.select(schema.names)):
        pieces = [constant_piece(prefix, batch.num_rows)]
        for field in schema:
            col = batch.column(field.name).cast(field.type)
            if pa.types.is_timestamp(field.type):
                col = col.cast(pa.int64())
            pieces += field_pieces(Kind.STR if pa.types.is_string(field.type) else Kind.INT, col)
        hashes += hash_rows(join_pieces(pieces))
    return b"".join(hashes)


def encode(kind: str, table: pa.Table, *, journal_id: str, stream: str, first: int,
           last: int, manifests: Sequence[bytes] = ()) -> tuple[bytes, IndexRoot]:
    """Parquet bytes of one index object (``table`` sorted by :func:`sort_rows`), and its root."""
    return encode_sorted(kind, [table], journal_id=journal_id, stream=stream, first=first, last=last,
                         manifests=manifests)


def encode_sorted(kind: str, parts: Iterable[pa.Table], *, journal_id: str, stream: str, first: int,
                  last: int, manifests: Sequence[bytes] = ()) -> tuple[bytes, IndexRoot]:
    """Parquet bytes of one index object whose rows are ``parts`` one after another (sorted by
    :func:`sort_rows` as a whole), and its root; each row group is hashed and written as it fills.
    ``manifests``: the manifest hashes of segments ``first .. last - 1`` (run_manifests), or none."""
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
    if manifests:
        if len(manifests) != last - first:
            raise ValueError(f"{len(manifests)} manifest hashes for an index object over segments {first}-{last}")
        meta[MANIFESTS_KEY] = b"".join(manifests).hex()
    sink = pa.BufferOutputStream()
    roots: list[bytes] = []
    rows = 0
    # No ARROW:schema: it is written first, before the block roots are known; the Parquet types give the same
    # Arrow schema back, and the footer's key-value metadata (every key above, the block roots last) is its metadata.
    # No dictionaries (4.5% more bytes for the executions kind, less for the others): a row group then decodes in
    # one C call (pages.decode_plain), 1 ms less per first read of a group than pyarrow's reader.
    with pq.ParquetWriter(sink, schema, compression="zstd", use_dictionary=False,
                          write_statistics=True, store_schema=False) as writer:
        previous: tuple[Any, ...] | None = None
        for group in _blocks((p.replace_schema_metadata(None).cast(schema) for p in parts), block):
            # Nothing is signed out of order: a reader's proof that no row was left out rests on it.
            order = np.asarray(pc.sort_indices(group, sort_keys=_SORT_KEY[kind]))
            keys = _SortKeys(kind, group)
            if (order != np.arange(group.num_rows)).any() or (previous is not None and keys.at(0) < previous):
                raise IndexDamaged(layout.index_object(stream, kind, first, last),
                                   "would hold rows out of order (an input is not sorted)")
            previous = keys.at(group.num_rows - 1)
            roots.append(merkle.root_of_packed(packed_leaf_hashes(kind, group)))
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
    into one sorted sequence; a source is read a table at a time, so memory holds one table per source. The
    sources hold distinct rows (runs of distinct segments: every sort key ends in ``segment``)."""
    schema = SCHEMAS[kind]
    its = [iter(source) for source in sources]
    done = [False] * len(its)
    bufs = [schema.empty_table() for _ in its]  # each source's rows not merged yet, from its current table
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
            return
        keys = {i: _SortKeys(kind, bufs[i]) for i in live}
        # Every row up to the smallest last row of the tables in hand: no source holds a smaller one later.
        frontier = min(keys[i].at(bufs[i].num_rows - 1) for i in live)
        out = []
        for i in live:
            cut = keys[i].count_up_to(frontier)
            out.append(bufs[i].slice(0, cut))
            bufs[i] = bufs[i].slice(cut)
        yield sort_rows(kind, pa.concat_tables(out))


class _SortKeys:
    """A sorted table's rows as sort-key tuples (descending columns negated), computed only where looked at."""

    def __init__(self, kind: str, table: pa.Table) -> None:
        self._cols = []
        for name, order in _SORT_KEY[kind]:
            col = table.column(name)
            if pa.types.is_timestamp(col.type):
                col = col.cast(pa.int64())
            self._cols.append((col, order == "descending"))
        self._n = table.num_rows

    def at(self, i: int) -> tuple[Any, ...]:
        return tuple(-col[i].as_py() if desc else col[i].as_py() for col, desc in self._cols)

    def count_up_to(self, key: tuple[Any, ...]) -> int:
        """How many rows, from the first, sort at or before ``key``."""
        lo, hi = 0, self._n
        while lo < hi:
            mid = (lo + hi) // 2
            if self.at(mid) <= key:
                lo = mid + 1
            else:
                hi = mid
        return lo


def merge_runs(kind: str, sources: Sequence[Iterable[pa.Table]]) -> Iterator[pa.Table]:
    """The rows of a run from the rows of its parts (FORMAT.md 11a, "Runs"): merged in order; for ``tenants``,
    the rows of one execution made one (combine_executions)."""
    merged = merge_sorted(kind, sources)
    if kind != "tenants":
        yield from merged
        return
    carry: pa.Table | None = None  # the last execution's rows of the batch before: more may follow
    for batch in merged:
        table = batch if carry is None else pa.concat_tables([carry, batch])
        last = table.slice(table.num_rows - 1)
        same = pc.and_(pc.and_(pc.equal(table.column("execution_id"), last.column("execution_id")[0]),
                               pc.equal(table.column("started"), last.column("started")[0])),
                       pc.equal(table.column("tenant_id"), last.column("tenant_id")[0]))
        tail = int(np.asarray(same).sum())  # sorted by these first: its rows end the table
        done, carry = table.slice(0, table.num_rows - tail), table.slice(table.num_rows - tail)
        if done.num_rows:
            yield combine_executions(done)
    if carry is not None and carry.num_rows:
        yield combine_executions(carry)


def combine_executions(table: pa.Table) -> pa.Table:
    """Tenants rows (sorted) with one row per execution: the first segment, first_seq and thread_id of its first
    row, the last_seq, last_ts and last_event_type of its last, the sum of the rows."""
    n = table.num_rows
    if n < 2:
        return table
    key = [table.column(c).combine_chunks() for c in ("tenant_id", "started", "execution_id")]
    changed = np.zeros(n - 1, dtype=bool)
    for col in key:
        changed |= np.asarray(pc.not_equal(col[1:], col[:-1]), dtype=bool)
    starts = np.concatenate([[0], np.flatnonzero(changed) + 1]).astype(np.int64)
    if len(starts) == n:
        return table
    ends = np.append(starts[1:], n) - 1
    rows = np.add.reduceat(np.asarray(table.column("rows"), dtype=np.int64), starts)

    def at(name: str, idx: np.ndarray) -> pa.Array:
        return table.column(name).take(pa.array(idx, pa.int64())).combine_chunks()

    return pa.Table.from_arrays(
        [at("tenant_id", starts), at("started", starts), at("execution_id", starts), at("segment", starts),
         pa.array(rows, pa.int64()), at("first_seq", starts), at("last_seq", ends), at("last_ts", ends),
         at("thread_id", starts), at("last_event_type", ends)],
        schema=TENANTS_SCHEMA,
    )


def row_groups_of(data: bytes) -> Iterator[pa.Table]:
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

# Called with each index object a seal writes, (kind, first, last, rows): what a later run may merge, the rows of
# the segment's own objects, a run's Parquet bytes (row_groups_of reads them a row group at a time).
Written = Callable[[str, int, int, "pa.Table | bytes"], None]


def run_manifests(hashes: Sequence[bytes], first: int, last: int) -> Sequence[bytes]:
    """What a run over segments ``first .. last`` carries of ``hashes`` (the manifest hashes of segments 0 ..,
    b"" where one is not known): those of ``first .. last - 1``, or none when one is not known."""
    part = hashes[first:last]
    return part if len(part) == last - first and all(part) else ()


def parse_manifests(meta: Mapping[str, str], first: int, last: int) -> list[bytes] | None:
    """The manifest hashes a run's footer claims (MANIFESTS_KEY), or None when it claims none or not exactly
    ``last - first`` of them."""
    text = meta.get(MANIFESTS_KEY)
    if text is None or len(text) != 64 * (last - first) or not first < last:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return [raw[i : i + 32] for i in range(0, len(raw), 32)]


def write_seal_index(store: Store, *, journal_id: str, stream: str, segment: int, table: pa.Table,
                     earlier: EarlierRows, started: Mapping[str, int], manifests: Sequence[bytes] = (),
                     written: Written | None = None) -> list[IndexRoot]:
    """Store segment ``segment``'s index objects and every run it completes; returns their roots.

    ``table`` is the segment's rows in storage order (at least KEY_COLUMNS); ``started`` the start of every
    execution of earlier segments (execution_starts); ``manifests`` the manifest hashes of segments 0 ..
    ``segment - 1``, which the runs carry (run_manifests). A run whose
    earlier inputs are missing or damaged, or that would hold more than MAX_RUN_ROWS rows, is left out:
    lookups then read its inputs.
    """
    roots: list[IndexRoot] = []
    for kind, rows in segment_tables(table, segment, started).items():
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
                data, root = encode_sorted(kind, merge_runs(kind, [source for _, source in sources]),
                                           journal_id=journal_id, stream=stream, first=first, last=last,
                                           manifests=run_manifests(manifests, first, last))
            except IndexDamaged as e:  # an input found altered while it was merged
                log.warning("index run %s %d-%d left out: %s (lookups read its inputs)", kind, first, last, e)
                break
            _put(store, layout.index_object(stream, kind, first, last), data)
            roots.append(root)
            made[(first, last)] = (root.rows, row_groups_of(data))  # the input of the next run of this seal
            if written is not None:
                written(kind, first, last, data)
    return roots
