"""The Parquet segment: its schema, writer, reader, and columnar hash recomputation."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..events import EVENT_TAG, FIELD_NAMES, FIELDS, NULL_MARK, Kind, StoredEvent

FORMAT_VERSION = "1"

SCHEMA = pa.schema(
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
_DICTIONARY_COLUMNS = ["event_type", "tenant_id", "node", "payload_codec", "payload_key_id", "thread_id"]


def utc_date(ts_micros: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=ts_micros)).date().isoformat()


def events_to_table(events: Sequence[StoredEvent]) -> pa.Table:
    columns = {name: [getattr(e, name) for e in events] for name in SCHEMA.names}
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def write_segment(
    events: Sequence[StoredEvent],
    *,
    journal_id: str,
    stream: str,
    segment: int,
    row_group_rows: int,
) -> bytes:
    """The Parquet bytes of one segment: zstd, statistics, page index, bloom filters."""
    table = events_to_table(events).replace_schema_metadata(
        {
            "wormjournal.format": FORMAT_VERSION,
            "wormjournal.journal": journal_id,
            "wormjournal.stream": stream,
            "wormjournal.segment": str(segment),
        }
    )
    sink = pa.BufferOutputStream()
    ndv = max(len(events), 16)
    pq.write_table(
        table,
        sink,
        row_group_size=row_group_rows,
        compression="zstd",
        compression_level=3,
        use_dictionary=_DICTIONARY_COLUMNS,
        write_statistics=True,
        write_page_index=True,
        bloom_filter_options={
            "execution_id": {"ndv": ndv, "fpp": 0.01},
            "thread_id": {"ndv": ndv, "fpp": 0.01},
            "event_id": {"ndv": ndv, "fpp": 0.01},
        },
    )
    return sink.getvalue().to_pybytes()


def read_segment(data: bytes) -> pa.Table:
    """Parse segment bytes; raises pyarrow errors on a corrupt file."""
    table = pq.read_table(pa.BufferReader(data))
    if table.schema.remove_metadata() != SCHEMA:
        raise ValueError("segment schema differs from the wormjournal schema")
    return table


def table_to_events(table: pa.Table) -> list[StoredEvent]:
    # ts as int64 micros: a tampered value outside datetime's range must not crash the reader.
    cols = [
        (table.column(name).cast(pa.int64()) if name == "ts" else table.column(name)).to_pylist()
        for name in SCHEMA.names
    ]
    return [StoredEvent(*row) for row in zip(*cols, strict=True)]


def _int_be(values: np.ndarray, dtype: str, width: int) -> pa.Array:
    raw = np.ascontiguousarray(values.astype(dtype)).tobytes()
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(values), [None, pa.py_buffer(raw)])
    return fixed.cast(pa.binary())


def _encoded_column(col: pa.Array, kind: str) -> pa.Array:
    """Per row, the canonical bytes of one field (events.encode_value, vectorized)."""
    nulls = col.is_null()
    if kind == Kind.INT:
        values = np.asarray(col.cast(pa.int64()).fill_null(0))
        body = pc.binary_join_element_wise(pa.scalar(b"\x00\x00\x00\x08"), _int_be(values, ">i8", 8), b"")
    else:
        data = col.cast(pa.binary()).fill_null(b"")
        lengths = np.asarray(pc.binary_length(data).cast(pa.int64()))
        body = pc.binary_join_element_wise(_int_be(lengths, ">u4", 4), data, b"")
    if col.null_count:
        body = pc.if_else(nulls, pa.scalar(NULL_MARK), body)
    return body


def chain_hashes(prev_hash: bytes, table: pa.Table) -> list[bytes]:
    """Recompute the event hash of every row of ``table``, starting after ``prev_hash``.

    The fields before ``payload`` are encoded column-wise (events.encode_fields,
    vectorized); the payload, the last field, is sliced from its column buffer.
    """
    *meta_fields, (payload_name, _, _) = FIELDS
    payload = table.column(payload_name).combine_chunks().cast(pa.binary())
    lengths = np.asarray(pc.binary_length(payload).cast(pa.int64()))
    parts = [_encoded_column(table.column(name).combine_chunks(), kind) for name, kind, _ in meta_fields]
    parts.append(_int_be(lengths, ">u4", 4))
    metas = pc.binary_join_element_wise(*parts, b"").to_pylist()
    _, offsets_buf, data_buf = payload.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[payload.offset : payload.offset + len(payload) + 1].tolist()
    data = memoryview(data_buf) if data_buf is not None else memoryview(b"")
    out: list[bytes] = []
    append = out.append
    sha = hashlib.sha256
    tag = EVENT_TAG
    h = prev_hash
    for i, meta in enumerate(metas):
        h = sha(tag + h + meta + data[offsets[i] : offsets[i + 1]]).digest()
        append(h)
    return out
