"""Building the index: per-segment lookup tables, and runs that merge them.

The index is derived data (FORMAT.md, "Index"): two Parquet tables per segment,
``executions`` (one row per execution in the segment: where its rows are, its
seqs, times, tenant and thread) and ``events`` (event id -> row and seq). Both are
computed from the segment's rows alone, so ``reindex`` rebuilds them from the store.
Runs merge the tables of ``FANOUT**level`` aligned segments, so that a lookup
reads a few objects however many segments there are. Nothing here is trusted by
readers: every event found through the index is verified against its segment's
signed manifest before it is returned.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import ConflictError, JournalError
from ..storage import layout
from ..storage.base import ObjectReader, Store
from ..storage.objectfile import ObjectFile

log = logging.getLogger(__name__)

INDEX_FORMAT = "1"
FANOUT = 8  # a run at level L covers FANOUT**L segments
# Merged event-id tables grow with every event; beyond this level they would cost the
# writer too much memory to build, so event-id lookups read level-1 runs at most.
MAX_LEVEL = {"executions": 4, "events": 1}
KEY_COLUMNS = ["execution_id", "seq", "ts", "tenant_id", "thread_id", "event_type", "exec_prev_seq", "event_id"]

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
        pa.field("thread_id", pa.string()),
        pa.field("last_event_type", pa.string(), nullable=False),
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
SCHEMAS = {"executions": EXECUTIONS_SCHEMA, "events": EVENTS_SCHEMA}
_SORT_KEY = {"executions": [("execution_id", "ascending"), ("segment", "ascending")], "events": [("event_id", "ascending")]}
_ROW_GROUP_ROWS = {"executions": 4096, "events": 16384}
_DICTIONARY = {"executions": ["tenant_id", "thread_id", "last_event_type"], "events": False}


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
    events = pa.Table.from_arrays(
        [
            table.column("event_id").combine_chunks(),
            pa.array(np.full(n, segment, dtype=np.int64)),
            pa.array(np.arange(n, dtype=np.int64)),
            table.column("seq").combine_chunks(),
        ],
        schema=EVENTS_SCHEMA,
    )
    return {"executions": executions, "events": _sorted("events", events)}


def _sorted(kind: str, table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, sort_keys=_SORT_KEY[kind]))


def encode(kind: str, table: pa.Table, *, journal_id: str, stream: str, first: int, last: int,
           sources: Sequence[str]) -> bytes:
    """Parquet bytes of one index object; ``sources`` are the covered segments' SHA-256 (hex)."""
    table = table.cast(SCHEMAS[kind]).replace_schema_metadata(
        {
            "wormjournal.index": INDEX_FORMAT,
            "wormjournal.journal": journal_id,
            "wormjournal.stream": stream,
            "wormjournal.first_segment": str(first),
            "wormjournal.last_segment": str(last),
            # Which segment bytes these rows were computed from: a reader ignores an index
            # object whose sources are not the segments its manifests sign.
            "wormjournal.sources": ",".join(sources),
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(
        table, sink, row_group_size=_ROW_GROUP_ROWS[kind], compression="zstd", use_dictionary=_DICTIONARY[kind],
        write_statistics=True,
    )
    return sink.getvalue().to_pybytes()


def sources_of(metadata: dict[bytes, bytes] | None) -> list[str]:
    text = (metadata or {}).get(b"wormjournal.sources", b"").decode()
    return text.split(",") if text else []


def _put(store: Store, name: str, data: bytes) -> None:
    """Write-once put; an index object already there with other bytes (another pyarrow's
    encoding of the same rows, say) is kept: readers check what they use."""
    try:
        store.put(name, data)
    except ConflictError:
        log.info("index object %s exists with other bytes; keeping it", name)


def write_segment_index(store: Store, *, journal_id: str, stream: str, segment: int, table: pa.Table, sha256: str) -> None:
    """Store the index objects of one segment (``table``: its rows in storage order)."""
    for kind, t in segment_tables(table, segment).items():
        data = encode(kind, t, journal_id=journal_id, stream=stream, first=segment, last=segment, sources=[sha256])
        _put(store, layout.index_object(stream, kind, segment, segment), data)


def read_index_table(store: ObjectReader, name: str, size: int | None = None) -> pa.Table:
    return pq.ParquetFile(ObjectFile(store, name, size)).read()


def run_bounds(level: int, k: int) -> tuple[int, int]:
    span = FANOUT**level
    return k * span, (k + 1) * span - 1


def compact(store: Store, *, journal_id: str, stream: str, segments: int) -> list[str]:
    """Write every missing run whose segments are all sealed and indexed; returns their names.

    A run of level L merges the FANOUT runs of level L-1 (level 0: single segments) that it
    covers. Runs are aligned, so their names and rows are a function of the segments alone.
    """
    written: list[str] = []
    for kind in layout.INDEX_KINDS:
        present = {info.name: info.size for info in store.list(layout.index_prefix(stream, kind))}
        for level in range(1, MAX_LEVEL[kind] + 1):
            span = FANOUT**level
            for k in range(segments // span):
                first, last = run_bounds(level, k)
                name = layout.index_object(stream, kind, first, last)
                if name in present:
                    continue
                parts = [layout.index_object(stream, kind, *run_bounds(level - 1, k * FANOUT + i)) for i in range(FANOUT)]
                if any(p not in present for p in parts):
                    continue  # an input is missing (a crash, or never built): reindex fills it
                tables = [pq.ParquetFile(ObjectFile(store, p, present[p])) for p in parts]
                sources = [s for pf in tables for s in sources_of(pf.schema_arrow.metadata)]
                merged = _sorted(kind, pa.concat_tables([pf.read().replace_schema_metadata(None) for pf in tables]))
                data = encode(kind, merged, journal_id=journal_id, stream=stream, first=first, last=last, sources=sources)
                _put(store, name, data)
                present[name] = len(data)
                written.append(name)
    return written


def reindex(store: Store, *, journal_id: str, stream: str, manifests: Iterable[tuple[int, str, int, str]],
            progress: Callable[[int], None] | None = None) -> tuple[int, list[str]]:
    """Index every segment ``(number, object, size, sha256 hex)`` that lacks its objects, then compact.

    Reads the key columns of each unindexed segment, never its payloads. Returns the
    number of segments indexed and the runs written.
    """
    count = 0
    present = {info.name for kind in layout.INDEX_KINDS for info in store.list(layout.index_prefix(stream, kind))}
    total = 0
    for n, obj, size, sha in manifests:
        total = max(total, n + 1)
        if all(layout.index_object(stream, kind, n, n) in present for kind in layout.INDEX_KINDS):
            if progress:
                progress(1)
            continue
        try:
            data = store.get(obj)
            if hashlib.sha256(data).hexdigest() != sha:
                raise ValueError("its bytes are not the ones its manifest signs")
            table = pq.read_table(pa.BufferReader(data), columns=KEY_COLUMNS)
        except JournalError:
            raise
        except Exception as e:  # a damaged segment is verify's to report; it stays unindexed
            log.warning("segment %s cannot be indexed: %s", obj, e)
            continue
        write_segment_index(store, journal_id=journal_id, stream=stream, segment=n, table=table, sha256=sha)
        count += 1
        if progress:
            progress(1)
    return count, compact(store, journal_id=journal_id, stream=stream, segments=total)
