"""SQL over the segments as they are: DuckDB reads the Parquet files through pyarrow, no export step.

:func:`connect` opens a DuckDB connection with one view, ``events``, over every segment
of a store (a local directory or S3, through pyarrow's filesystems), partitioned by
``stream`` and ``date`` (hive folders, so a filter on either skips whole files). Its
columns are the stored fields of FORMAT.md section 5, ``ts`` as a UTC timestamp, and
``payload_json``: the payload decoded (JSON) when it is stored in clear; for an encrypted
one the ``encrypted`` marker, or, with ``decrypt`` and the key store, the payload itself;
the ``shredded`` marker when its key was destroyed (named by an erasure receipt, or
missing from the key store). ``payload`` stays the stored bytes.

The view reads only the segment objects that signed manifests name (those the trust core
accepts: signature, key validity, links), never another file under ``segments/``, and says what
it left out. It does not re-hash their rows: run ``wormjournal verify`` for that.
:data:`STATS` are ready queries over the view (``wormjournal stats``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from .errors import ConfigError, JournalError, NotFoundError
from .events import RESERVED_EVENT_TYPES
from .payload import (
    CODEC_JSON,
    CODEC_JSON_ZSTD,
    ENCRYPTED,
    MARKER_KEY,
    STORED_APART,
    decode_payload_json,
    read_payload,
)
from .retention.keystore import KeyStore
from .segments.notes import VerifyKey
from .storage import layout, open_store
from .storage.local import LocalStore
from .trust.load import read_identity
from .verify.info import sealed_objects

log = logging.getLogger(__name__)

PARTITIONING = ds.partitioning(pa.schema([("stream", pa.string()), ("date", pa.date32())]), flavor="hive")
EVENT_COLUMNS = ("stream", "date", "seq", "event_id", "ts", "event_type", "tenant_id", "execution_id", "thread_id",
                 "node", "step_id", "parent_event_id", "correlation_id", "subject_id", "exec_prev_seq",
                 "payload_codec", "payload_key_id", "payload", "payload_json", "prev_hash", "hash")


def segments_dataset(store: Any, *, endpoint_url: str | None = None,
                     public_keys: Sequence[VerifyKey] | None = None) -> ds.Dataset:
    """The segments of ``store`` that signed manifests name, as one pyarrow dataset (hive partitions
    ``stream``, ``date``). Objects under ``segments/`` that no accepted manifest names are left out
    (logged as a warning, with the findings that made a manifest unacceptable)."""
    sealed = sealed_objects(store, public_keys)
    if sealed.left_out or sealed.findings:
        log.warning("query: %d object(s) under segments/ left out, not named by a manifest that verifies%s",
                    len(sealed.left_out),
                    "".join(f"; [{f.kind}] {f.where()}: {f.message}" for f in sealed.findings[:5]))
    if not sealed.objects:
        raise NotFoundError(f"{store.url} has no sealed segments yet", hint="seal first: wormjournal seal STORE")
    if isinstance(store, LocalStore):
        base = store.root / layout.SEGMENTS_PREFIX.rstrip("/")
        return ds.dataset([str(store.root / n) for n in sealed.objects], format="parquet", partitioning=PARTITIONING,
                          partition_base_dir=str(base))
    bucket, prefix = getattr(store, "bucket", None), getattr(store, "prefix", "")
    if bucket is None:
        raise ConfigError(f"cannot query {store!r}: give a local directory or s3://bucket/prefix")
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs: dict[str, Any] = {}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs.update(endpoint_override=host or endpoint, scheme=scheme if host else "https")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    fs = pafs.S3FileSystem(**kwargs)
    path = "/".join(p for p in (bucket, prefix, layout.SEGMENTS_PREFIX.rstrip("/")) if p)
    root = "/".join(p for p in (bucket, prefix) if p)
    try:
        return ds.dataset([f"{root}/{n}" for n in sealed.objects], filesystem=fs, format="parquet",
                          partitioning=PARTITIONING, partition_base_dir=path)
    except (OSError, FileNotFoundError) as e:
        raise NotFoundError(f"cannot read the segments of {store.url}: {e}") from e


def shredded_key_ids(dataset: ds.Dataset) -> set[str]:
    """Key ids named by the erasure receipts (their payloads are in clear).

    Read file by file: the ``event_type`` column first, the payloads only of a file
    that holds a receipt; a file that cannot be read is passed over here (a query that
    touches it fails; ``verify`` names it).
    """
    found: set[str] = set()
    receipt = ds.field("event_type") == "erasure_receipt"
    for fragment in dataset.get_fragments():
        try:
            # The event types first (a small column): most segments hold no receipt, and their payloads stay unread.
            if not pc.any(pc.equal(fragment.to_table(columns=["event_type"]).column(0), "erasure_receipt")).as_py():
                continue
            rows = list(fragment.to_batches(columns=["payload_codec", "payload"], filter=receipt, batch_size=256))
        except (OSError, pa.ArrowException) as e:
            log.warning("erasure receipts: cannot read %s: %s", fragment.path, e)
            continue
        for codec, data in ((c, d) for b in rows for c, d in zip(b.column(0).to_pylist(), b.column(1).to_pylist(),
                                                                   strict=True)):
            try:
                receipt = json.loads(decode_payload_json(codec, data)).get("receipt", {})
                found.update(str(k) for k in receipt.get("key_ids", []))
            except (ValueError, AttributeError, JournalError):
                continue  # a damaged receipt: verify reports it
    return found


def _payload_function(journal_id: str, shredded: set[str], keystore: KeyStore | None,
                      store: Any = None) -> Callable[..., str | None]:
    """The SQL function behind ``payload_json``: one stored payload to JSON text (or a marker, or NULL if damaged).
    A payload given as bytes reads as a marker with its length and SHA-256; one stored apart (FORMAT.md 3.5) is
    fetched from ``store`` and checked against the hash its event holds.

    A row-at-a-time function: DuckDB 2.0 hands a vectorized (arrow) function empty
    arrays for filtered chunks, which would turn payloads into NULLs.
    """
    data_key = keystore.data_key if keystore is not None else None

    def marker(state: str, key_id: str | None) -> str:
        return json.dumps({MARKER_KEY: state, "key_id": key_id})

    def decode(data: bytes, codec: str, key_id: str | None, stream: str, seq: int) -> str | None:
        try:
            if codec in (CODEC_JSON, CODEC_JSON_ZSTD):  # the common case, as JSON text straight away
                return decode_payload_json(codec, data).decode()
            if codec.removesuffix(STORED_APART).endswith(ENCRYPTED):
                if key_id in shredded:
                    return marker("shredded", key_id)
                if data_key is None:
                    return marker("encrypted", key_id)

            def fetch(digest: str) -> bytes:
                if store is None:
                    raise NotFoundError(f"payload {digest}: no store to read it from")
                return bytes(store.get(layout.payload(stream, digest)))

            value = read_payload(codec, data, key_id, journal_id=journal_id, stream=stream, seq=seq,
                                 data_key=data_key, fetch=fetch)
            if isinstance(value, bytes):
                value = {MARKER_KEY: "bytes", "bytes": len(value), "sha256": hashlib.sha256(value).hexdigest()}
            return json.dumps(value, ensure_ascii=False)
        except (JournalError, ValueError):
            return None  # damaged bytes, or a payload object missing: verify names them

    return decode


def connect(store: Any, *, keystore: KeyStore | None = None, endpoint_url: str | None = None,
            threads: int | None = None, public_keys: Sequence[VerifyKey] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the view ``events`` over every segment of ``store`` that a signed
    manifest names (trusting ``public_keys``, or the store's own key history with None).

    With ``keystore`` (the journal's key store) encrypted payloads are decrypted in
    ``payload_json``; without, they read as the ``encrypted`` marker. Raises
    NotFoundError when the store has no journal or no segment.
    """
    if isinstance(store, (str, os.PathLike)):
        store = open_store(store, endpoint_url=endpoint_url)
    identity = read_identity(store)
    con = duckdb.connect()
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    dataset = segments_dataset(store, endpoint_url=endpoint_url, public_keys=public_keys)
    con.register("segments", dataset)
    shredded = shredded_key_ids(dataset)
    con.create_function("wj_payload_json", _payload_function(identity.journal_id, shredded, keystore, store),
                        ["BLOB", "VARCHAR", "VARCHAR", "VARCHAR", "BIGINT"], "VARCHAR", type="native",
                        null_handling="special", side_effects=False)  # type: ignore[call-overload]  # stubs: enums only
    con.execute("""
        CREATE VIEW events AS SELECT
            stream, date, seq, event_id, ts, event_type, tenant_id, execution_id, thread_id, node, step_id,
            parent_event_id, correlation_id, subject_id, exec_prev_seq, payload_codec, payload_key_id, payload,
            CAST(wj_payload_json(payload, payload_codec, payload_key_id, stream, seq) AS JSON) AS payload_json,
            prev_hash, hash
        FROM segments""")
    return con


# -- ready queries ----------------------------------------------------------------------------------

# Events that are no run's own doing: a LangGraph saver's checkpoints, pending writes and tombstones
# (FORMAT.md 3.4; written under a run's execution, "langgraph-thread-<id>" or the deletions'), and the
# library's own (erasure receipts, legal holds, retention). An execution that holds only these is no run.
BOOKKEEPING_EVENTS = ("checkpoint_saved", "custom:langgraph.pending_writes", "custom:langgraph.checkpoints_deleted",
                      *sorted(RESERVED_EVENT_TYPES))
_BOOKKEEPING = ", ".join(f"'{t}'" for t in BOOKKEEPING_EVENTS)

STATS: dict[str, tuple[str, str]] = {
    "runs_per_day": ("Runs per day and status (the last lifecycle event of each execution)", f"""
        WITH runs AS (
            SELECT stream, execution_id, min(ts) FILTER (WHERE event_type NOT IN ({_BOOKKEEPING})) AS started,
                   arg_max(event_type, seq) FILTER (WHERE event_type LIKE 'execution\\_%' ESCAPE '\\') AS last
            FROM events GROUP BY stream, execution_id
            HAVING started IS NOT NULL)
        SELECT CAST(started AS DATE) AS day, coalesce(replace(last, 'execution_', ''), 'no lifecycle events') AS status,
               count(*) AS runs
        FROM runs GROUP BY ALL ORDER BY day, status"""),
    "node_durations": ("Duration per node, from node_started to node_completed or node_failed (ms)", """
        WITH spans AS (
            SELECT stream, execution_id, node, step_id,
                   min(ts) FILTER (WHERE event_type = 'node_started') AS t0,
                   max(ts) FILTER (WHERE event_type IN ('node_completed', 'node_failed')) AS t1
            FROM events
            WHERE node IS NOT NULL AND event_type IN ('node_started', 'node_completed', 'node_failed')
            GROUP BY ALL)
        SELECT node, count(*) AS runs,
               round(quantile_cont(epoch_ms(t1) - epoch_ms(t0), 0.5), 1) AS p50_ms,
               round(quantile_cont(epoch_ms(t1) - epoch_ms(t0), 0.95), 1) AS p95_ms
        FROM spans WHERE t0 IS NOT NULL AND t1 IS NOT NULL GROUP BY node ORDER BY p95_ms DESC, node"""),
    # A tool_called whose payload is encrypted takes its tool's name from the tool_returned of the same call
    # (same correlation_id), which RunRecorder writes in clear.
    "tool_errors": ("Tool calls and error rates (a tool_returned with \"ok\": false or an \"error\")", """
        WITH tools AS (
            SELECT event_type, node, payload_json->>'tool' AS named,
                   CASE WHEN correlation_id IS NOT NULL THEN max(payload_json->>'tool')
                        OVER (PARTITION BY stream, execution_id, correlation_id) END AS linked,
                   event_type = 'tool_returned' AND ((payload_json->>'ok') = 'false'
                                                     OR (payload_json->>'error') IS NOT NULL) AS failed
            FROM events WHERE event_type IN ('tool_called', 'tool_returned'))
        SELECT coalesce(named, linked, node, '?') AS tool,
               count(*) FILTER (WHERE event_type = 'tool_called') AS calls,
               count(*) FILTER (WHERE failed) AS errors,
               round(errors / nullif(calls, 0), 4) AS error_rate
        FROM tools GROUP BY ALL ORDER BY error_rate DESC NULLS LAST, tool"""),
    "llm_usage": ("Tokens and cost per day and model (llm_completed: model, usage, cost_usd)", """
        SELECT CAST(ts AS DATE) AS day, coalesce(payload_json->>'model', '?') AS model, count(*) AS calls,
               sum(coalesce(TRY_CAST(payload_json->'usage'->>'total_tokens' AS BIGINT),
                            TRY_CAST(payload_json->'usage'->>'prompt_tokens' AS BIGINT)
                              + TRY_CAST(payload_json->'usage'->>'completion_tokens' AS BIGINT))) AS tokens,
               round(sum(TRY_CAST(payload_json->>'cost_usd' AS DOUBLE)), 6) AS cost_usd
        FROM events WHERE event_type = 'llm_completed' GROUP BY ALL ORDER BY day, model"""),
    "waiting_on_human": ("Executions waiting on a human (their last event is a pause or an interrupt)", f"""
        WITH last AS (
            SELECT stream, execution_id, arg_max(event_type, seq) AS last_event, max(ts) AS since,
                   any_value(tenant_id) AS tenant_id, any_value(thread_id) AS thread_id
            FROM events WHERE event_type NOT IN ({_BOOKKEEPING}) GROUP BY stream, execution_id)
        SELECT stream, execution_id, tenant_id, thread_id, last_event, since FROM last
        WHERE last_event IN ('human_interrupted', 'execution_paused') ORDER BY since"""),
}


def stats(con: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
    """Every ready query of :data:`STATS`, by name."""
    return {name: arrow_table(con.sql(sql)) for name, (_, sql) in STATS.items()}


def arrow_table(relation: Any) -> pa.Table:
    """A DuckDB relation's rows as a pyarrow table (``to_arrow_table`` in DuckDB 1.x and 2.x)."""
    return relation.to_arrow_table()
