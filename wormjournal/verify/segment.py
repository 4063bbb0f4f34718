"""Steps 4 to 8 of the verification procedure (FORMAT.md, section 10) for one segment.

:func:`fetch_segment` is the part that needs the store (the object's name, bytes and
version); it runs in the verifying process. :func:`check_segment` is everything else:
it needs only the manifest, the object's bytes, the journal id, the stream and the
trusted public keys as raw bytes, so it can run in a worker process (it is a
top-level function and its arguments and result are plain picklable values).

For step 8 (execution back-links), which runs over the whole stream, a segment
checks the links between its own events and returns, per execution, its first
event (position, seq, ``exec_prev_seq``) and its last seq; the caller checks each
first event against the last seq of the execution in the earlier segments
(:func:`link_findings`).

The checks are those of the straightforward reading of section 10, in the same
order, with the same findings. The rows are read a few row groups at a time and
only the columns the whole-segment checks need (seq, ts, ids, hashes; not the
payloads) are kept for every row, so a worker's memory does not grow with the
segment's payload bytes. What makes the checks fast: every event hash is first
recomputed over the row's *stored* ``prev_hash``, in storage order, in one call of
the C extension per record batch over the columns' Arrow buffers (no sort of the
rows, no Python object per row; in Python, over one joined buffer); when every recomputed
hash equals the stored one and the stored ``prev_hash`` values link the rows in
seq order from the manifest's ``prev_hash`` to its ``last_hash``, the chain of
step 6 holds (by induction over the rows in seq order, the chained hash of each
row is its stored hash). Only when something is wrong is the chain walked in seq
order to locate the first bad row and report it as that walk reports it. With the C extension, a segment
laid out as the writer lays it out (pages of the same rows in every column) is decoded and hashed in one
pass (``decode_hashed``): the payloads are hashed where they were decompressed, and only the columns below
are built; any other layout is read a few row groups at a time as above. Seq order
is a permutation of the stored rows (each row's place is its seq - first_seq in an
intact segment, so no sort either), and the Merkle leaves, block roots and root are
one more call over the packed stored hashes, which also takes step 4's SHA-256 of the object (with
SHA-NI, the object's blocks in one lane beside the tree's hashes in the other).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.ma  # noqa: F401 - pa.array() of a numpy array imports it on first use (~10 ms): here, the fork server's
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .. import native
from ..errors import IntegrityError, JournalError
from ..payload import STORED_APART, decode_payload, parse_ref
from ..segments import merkle
from ..segments.manifest import NO_VERSION, Manifest
from ..segments.notes import VerifyKey, raw_public
from ..segments.table import (
    BLOCK_ROOTS_KEY,
    BLOCK_ROWS_KEY,
    FORMAT_VERSION,
    SCHEMA,
    block_layout_problem,
    bounded_batches,
    chain_hashes,
    decode_block_roots,
    decode_hashed,
    decode_rows,
    first_out_of_order,
    in_seq_order,
    packed_row_hashes,
    parquet_fragment,
    parquet_schema_problem,
    read_segment,
)
from ..storage import layout
from ..storage.base import ObjectReader
from ..storage.local import LocalStore
from ..trust.receipts import RECEIPT_TYPE, open_receipt

# kind, message, segment, seq, object: a Finding without its stream (the caller knows it).
RawFinding = tuple[str, str, int | None, int | None, str | None]
_DAY_MICROS = 86_400_000_000
_MERGE_BYTES = 1 << 28  # merge row groups into batches of at most this many bytes
_PART_ROWS = 1 << 13  # rows read from a segment at a time (whole row groups)
# The columns kept for every row of a segment while it is checked (not the payloads and ids).
_LIGHT = ["seq", "ts", "execution_id", "exec_prev_seq", "event_type", "payload_codec", "payload_key_id", "prev_hash",
          "hash"]
_sha256 = hashlib.sha256
_HEAP_BLOCK = (32 << 20) - (1 << 16)  # below glibc's largest dynamic mmap threshold (32 MiB on 64-bit)


@dataclasses.dataclass
class SegmentResult:
    """What :func:`check_segment` found in one segment; small, picklable."""

    segment: int
    findings: list[RawFinding] = dataclasses.field(default_factory=list)  # in check order, but step 8's
    key_uses: dict[str, int] = dataclasses.field(default_factory=dict)  # payload_key_id -> events
    # (seq, receipt whose note verified, its signer's key id: where it may sign is checked by the caller)
    receipts: list[tuple[int, dict[str, Any], str]] = dataclasses.field(default_factory=list)
    # Step 8, or None when the segment could not be read that far. Positions are row indexes in seq order.
    # Per execution: (position of its first event, execution id, that event's seq, its exec_prev_seq, last seq).
    executions: list[tuple[int, str, int, int | None, int]] | None = None
    # Wrong links between events of the same execution inside the segment: (position, finding).
    link_findings: list[tuple[int, RawFinding]] = dataclasses.field(default_factory=list)
    # Payloads stored apart (FORMAT.md 3.5), in seq order: (seq, SHA-256 hex, length); the caller checks the objects.
    payload_refs: list[tuple[int, str, int]] = dataclasses.field(default_factory=list)


def warm_up() -> None:
    """Submitted once per worker when a pool starts, so that its processes start at once; readies the worker's
    heap for segments. glibc's malloc serves a block above its mmap threshold (128 KiB at first) by mmap and
    returns it to the system when freed, and only such a free raises the threshold: a fresh worker's first segment
    is read and decoded in mapped memory that is then given back, and its second faults in a heap of the same size
    again (about 11,000 page faults, 6-8% of that segment's CPU time, on 100,000 events). One block of about a
    segment's size allocated and freed here, never touched, raises the threshold at once; other allocators
    just allocate it."""
    np.empty(_HEAP_BLOCK, dtype=np.uint8)


def public_key_bytes(keys: Sequence[VerifyKey]) -> tuple[bytes, ...]:
    """The trusted keys as raw 32-byte Ed25519 public keys (what a worker process is sent)."""
    return tuple(raw_public(k.public) for k in keys)


@functools.lru_cache(maxsize=8)
def _verify_keys(key_name: str, raw: tuple[bytes, ...]) -> list[VerifyKey]:
    return [VerifyKey(key_name, Ed25519PublicKey.from_public_bytes(r)) for r in raw]


def _day_start_micros(date: str) -> int:
    return (dt.date.fromisoformat(date) - dt.date(1970, 1, 1)).days * _DAY_MICROS


# -- step 4, in the verifying process --------------------------------------------------------------------


def fetch_segment(store: ObjectReader, m: Manifest, stream: str) -> tuple[list[RawFinding], bytes | None]:
    """The manifest's count and object name, then the object's bytes and current version.

    Returns the findings so far and the bytes (None when the object cannot be checked further).
    """
    found: list[RawFinding] = []
    if m.last_seq < m.first_seq or m.events != m.last_seq - m.first_seq + 1:
        found.append(("manifest_count", f"manifest counts {m.events} events for seq {m.first_seq}..{m.last_seq}",
                      m.segment, None, m.object))
    parsed = layout.parse_segment(m.object)
    if parsed is None or parsed[0] != stream or parsed[2] != m.segment:
        found.append(("object_name", f"manifest names object {m.object!r}, not a segment {m.segment} of this stream",
                      m.segment, None, m.object))
        return found, None
    try:
        data = store.get(m.object)
    except JournalError as e:
        found.append(("object_missing", f"segment object cannot be read: {e}", m.segment, None, m.object))
        return found, None
    if m.object_version != NO_VERSION:
        info = store.head(m.object)
        current = info.version_id if info else None
        if current != m.object_version:
            found.append(("object_version",
                          f"current version {current} is not the version {m.object_version} that was sealed",
                          m.segment, None, m.object))
    return found, data


# -- steps 4 to 8, anywhere ----------------------------------------------------------------------------


def _packed_hashes(column: pa.ChunkedArray) -> np.ndarray | None:
    """The column as an (n, 32) uint8 matrix, if every value is a non-null 32-byte hash; else None."""
    if column.null_count:
        return None
    try:
        fixed = column.cast(pa.binary(32))  # fails unless every value is 32 bytes long
    except pa.ArrowInvalid:
        return None
    parts = [np.frombuffer(c.buffers()[1], dtype=np.uint8)[c.offset * 32 : (c.offset + len(c)) * 32]
             for c in fixed.chunks if len(c)]
    if not parts:
        return np.empty((0, 32), dtype=np.uint8)
    return (parts[0] if len(parts) == 1 else np.concatenate(parts)).reshape(-1, 32)


def _merkle_checks(meta: dict[str, str], stored: pa.ChunkedArray, packed: np.ndarray | None,
                   data: bytes) -> tuple[bytes, bool, bytes]:
    """The segment Merkle root over the stored ``hash`` values in storage order (``packed``: the same as an
    (n, 32) matrix, None unless each is 32 bytes), whether the footer's block roots are those of the rows, and
    the SHA-256 of the object's bytes (``data``, step 4).

    With a usable block size the root is taken over the block roots, which are complete
    subtrees (FORMAT.md, section 5): each node of the tree is hashed once, not twice. With the C extension the
    object's SHA-256 is taken in the same call: with SHA-NI, its blocks go through one lane while the tree's
    hashes take the other, in little more than the time of the object's hash alone.
    """
    try:
        block = int(meta[BLOCK_ROWS_KEY])
        usable = block >= 1 and not block & (block - 1)
    except (KeyError, ValueError):
        block, usable = 0, False
    # Any block of at least all the rows is one run: its root is the segment's (and no huge number reaches C).
    whole = 1 << max(0, len(stored) - 1).bit_length()
    block = min(block, whole) if usable else whole
    if packed is None:  # a value that is not 32 bytes (a damaged row): leaf by leaf, a null as empty
        leaves = [merkle.leaf_hash(h if isinstance(h, bytes) else b"") for h in stored.to_pylist()]
        roots = merkle.block_roots(leaves, block)
        raw_roots, root, digest = b"".join(roots), merkle.root_from_leaf_hashes(roots), _sha256(data).digest()
    elif merkle.bulk():
        raw_roots, root, digest = native.module.merkle_blocks(packed.data.cast("B") if len(packed) else b"", block,
                                                             data)
    else:
        raw_roots, root = merkle.packed_block_roots(packed.data.cast("B") if len(packed) else b"", block)
        digest = _sha256(data).digest()
    if not usable:
        return root, False, digest
    try:
        footer_ok = b"".join(decode_block_roots(meta[BLOCK_ROOTS_KEY])) == raw_roots
    except (KeyError, ValueError):
        footer_ok = False
    return root, footer_ok, digest


def _first_out_of_order(table: pa.Table) -> int | None:
    """As :func:`first_out_of_order`, with a linear check first: a sort only when some row is out of order."""
    n = table.num_rows
    if n < 2:
        return None
    ex = table.column("execution_id")
    seq = table.column("seq")
    a_ex, b_ex, a_seq, b_seq = ex.slice(0, n - 1), ex.slice(1), seq.slice(0, n - 1), seq.slice(1)
    # Row i+1 before row i in (execution_id, seq) order (UTF-8 byte order, as the sort compares).
    descent = pc.or_kleene(pc.less(b_ex, a_ex), pc.and_kleene(pc.equal(b_ex, a_ex), pc.less(b_seq, a_seq)))
    if descent.null_count == 0 and not pc.any(descent).as_py():
        return None
    return first_out_of_order(table)


def _seq_order(seqs: np.ndarray, first: int) -> np.ndarray | None:
    """The stored rows in seq order, as their positions (None: they are stored in seq order), as a stable sort
    by seq puts them. When the seqs are first, first + 1, ... in any order (an intact segment), each row's
    place is its seq - first: one pass, no sort."""
    n = len(seqs)
    if n < 2 or bool(np.all(seqs[1:] > seqs[:-1])):
        return None
    place = seqs - first
    if int(place.min()) >= 0 and int(place.max()) < n:
        perm = np.full(n, -1, dtype=np.int64)
        perm[place] = np.arange(n)
        if int(perm.min()) >= 0:  # every place taken once: the seqs are distinct
            return perm
    return np.argsort(seqs, kind="stable")


def _rank(perm: np.ndarray | None, n: int) -> np.ndarray:
    """Position in seq order of each stored row."""
    if perm is None:
        return np.arange(n)
    rank = np.empty(n, dtype=np.int64)
    rank[perm] = np.arange(n)
    return rank


class _Unreadable(Exception):
    """The segment's bytes are not a readable wormjournal segment (``error`` as read_segment raised it)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _read_whole(data: bytes) -> pa.Table:
    try:
        return read_segment(data, use_threads=False)
    except (pa.ArrowException, ValueError, OSError) as e:
        raise _Unreadable(e) from e


@dataclasses.dataclass
class _Scan:
    """One pass over a segment's rows: what the checks need of every row, without the payloads."""

    meta: dict[str, str]
    light: pa.Table = dataclasses.field(default_factory=lambda: SCHEMA.empty_table().select(_LIGHT))
    rows_ok: bool = True  # every row's hash over its stored prev_hash is its stored hash
    receipts: list[pa.Table] = dataclasses.field(default_factory=list)  # seq, codec, payload of receipt rows
    receipt_rows: list[int] = dataclasses.field(default_factory=list)  # their stored row numbers
    apart: list[pa.Table] = dataclasses.field(default_factory=list)  # seq, payload of rows stored apart (3.5)
    row_groups: list[int] | None = None  # rows of each row group, when the file was read by row groups
    stored: np.ndarray | None = None  # the hash column packed (_packed_hashes), when add_hashed took it
    _parts: list[pa.Table] = dataclasses.field(default_factory=list)
    _rows: int = 0

    def add(self, part: pa.Table) -> None:
        """Rows read from the file, in storage order."""
        if self.rows_ok:
            stored = _packed_hashes(part.column("hash"))
            packed = stored.data.cast("B") if stored is not None and len(stored) else memoryview(b"")
            self.rows_ok = stored is not None and _rows_hash_to(part, packed)
        is_receipt = pc.fill_null(pc.equal(part.column("event_type"), RECEIPT_TYPE), False)
        if pc.any(is_receipt).as_py():
            rows = np.flatnonzero(np.asarray(is_receipt))
            self.receipts.append(part.take(rows).select(["seq", "payload_codec", "payload"]))
            self.receipt_rows += (rows + self._rows).tolist()
        self._take_apart(part, lambda: part)
        self._parts.append(part.select(_LIGHT))  # the payload and the ids are dropped with ``part``
        self._rows += part.num_rows

    def add_hashed(self, hashes: bytes, light: pa.Table, whole: Callable[[], pa.Table]) -> _Scan:
        """Every row at once: the light columns and each row's recomputed hash (packed) as decode_hashed gives
        them; ``whole`` decodes every column, for the payloads of erasure receipts (rare)."""
        self.stored = stored = _packed_hashes(light.column("hash"))
        # Compared as four uint64 per row, in place (no copy of either).
        self.rows_ok = stored is not None and len(hashes) == stored.size and bool(
            np.array_equal(stored.view(np.uint64), np.frombuffer(hashes, dtype=np.uint64).reshape(-1, 4)))
        is_receipt = pc.fill_null(pc.equal(light.column("event_type"), RECEIPT_TYPE), False)
        whole = functools.cache(whole)
        if pc.any(is_receipt).as_py():
            rows = np.flatnonzero(np.asarray(is_receipt))
            self.receipts.append(whole().take(rows).select(["seq", "payload_codec", "payload"]))
            self.receipt_rows += rows.tolist()
        self._take_apart(light, whole)
        self.light = light
        self._rows = light.num_rows
        return self

    def _take_apart(self, light: pa.Table, rows_of: Callable[[], pa.Table]) -> None:
        """Keep the seq and payload of the rows whose payload is stored apart (``rows_of``: the rows with their
        payloads, decoded only when there are some)."""
        apart = pc.fill_null(pc.ends_with(light.column("payload_codec"), STORED_APART), False)
        if pc.any(apart).as_py():
            self.apart.append(rows_of().take(np.flatnonzero(np.asarray(apart))).select(["seq", "payload"]))

    def finish(self) -> _Scan:
        if self._parts:
            self.light = pa.concat_tables(self._parts)
        self._parts = []
        return self


def _rows_hash_to(part: pa.Table, stored: memoryview) -> bool:
    """Whether each row's event hash over its stored prev_hash is its stored hash (packed, 32 bytes a row).
    With the C extension, one call per record batch over its Arrow buffers; in Python, batches merged so
    that the per-batch work of building hash inputs is small per row."""
    done = 0
    for batch in part.to_batches() if merkle.bulk() else _hash_batches(part):
        k = batch.num_rows
        if packed_row_hashes(batch) != stored[32 * done : 32 * (done + k)].tobytes():  # memcmp, not per item
            return False
        done += k
    return True


def _scan(data: bytes) -> _Scan:
    """Read the segment a few row groups at a time (memory: those row groups, plus the light columns
    of every row), hashing each row on the way. Raises _Unreadable with what read_segment raises,
    so that an unreadable segment is reported the same whichever way it was read."""
    try:
        fragment = parquet_fragment(data)
        md = fragment.metadata
        schema = fragment.physical_schema
        if parquet_schema_problem(md.schema) is not None:
            raise ValueError("segment schema differs from the wormjournal schema")
        groups: list[list[int]] = [[]]
        rows = 0
        for i in range(md.num_row_groups):
            rg = md.row_group(i)
            if groups[-1] and (rows + rg.num_rows > _PART_ROWS or rg.total_byte_size > _MERGE_BYTES):
                groups.append([])
                rows = 0
            groups[-1].append(i)
            rows += rg.num_rows
    except (pa.ArrowException, ValueError, OSError):
        return _scan_table(_read_whole(data))
    scan = _Scan(_text_metadata(schema), row_groups=[md.row_group(i).num_rows for i in range(md.num_row_groups)])
    fused = decode_hashed(data, fragment, _LIGHT)
    if fused is not None:  # decoded and hashed in one pass: the payloads are never copied
        return scan.add_hashed(*fused, lambda: decode_rows(data, fragment, range(md.num_row_groups)))
    for group in groups:
        if not group:
            continue
        try:
            part = decode_rows(data, fragment, group)
        except (pa.ArrowException, ValueError, OSError):
            return _scan_table(_read_whole(data))
        scan.add(part)
    return scan.finish()


def _scan_table(table: pa.Table) -> _Scan:
    scan = _Scan(_text_metadata(table.schema))
    scan.add(table)
    return scan.finish()


def _text_metadata(schema: pa.Schema) -> dict[str, str]:
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in (schema.metadata or {}).items()}


def check_segment(
    m: Manifest,
    data: bytes,
    *,
    journal_id: str,
    stream: str,
    key_name: str,
    public_keys: Sequence[bytes],
) -> SegmentResult:
    """Steps 4 (size, SHA-256) to 8 of one segment whose bytes :func:`fetch_segment` returned.

    ``public_keys`` are raw Ed25519 public keys; they check erasure receipts (FORMAT.md 3.2).
    """
    out = SegmentResult(m.segment)
    found = out.findings
    seg, obj = m.segment, m.object
    parsed = layout.parse_segment(m.object)
    assert parsed is not None, "fetch_segment checked the object name"
    date = parsed[1]
    if len(data) != m.object_size:
        found.append(("object_size", f"object is {len(data)} bytes, manifest says {m.object_size}", seg, None, obj))
    # The object's SHA-256 is taken with the Merkle root (step 7), in one call; its finding goes here.
    sha_at = len(found)

    def object_sha256(digest: bytes) -> None:
        if digest != m.object_sha256:
            found.insert(sha_at, ("object_sha256", "object's SHA-256 differs from the signed manifest", seg, None, obj))

    try:
        scan = _scan(data)
    except _Unreadable as e:
        object_sha256(_sha256(data).digest())
        found.append(("segment_unreadable", f"not a readable wormjournal segment: {e.error}", seg, None, obj))
        return out
    table = scan.light  # the columns the checks below need, every row, in storage order
    # Step 5: the segment's own metadata names this journal, stream and segment.
    meta = scan.meta
    expected_meta = {
        "wormjournal.format": FORMAT_VERSION,
        "wormjournal.journal": journal_id,
        "wormjournal.stream": stream,
        "wormjournal.segment": str(m.segment),
    }
    if any(meta.get(k) != v for k, v in expected_meta.items()):
        found.append(("segment_metadata", "segment metadata names another format, journal, stream or segment",
                      seg, None, obj))
    # Step 6: rows are stored in (execution_id, seq) order; the chain runs in seq order.
    n = table.num_rows
    stored_seq = np.asarray(table.column("seq"))
    wrong = _first_out_of_order(table)
    if wrong is not None:
        found.append(("row_order", f"row {wrong} is out of (execution_id, seq) order", seg,
                      int(stored_seq[wrong]), None))
    # Step 7: the Merkle root over the stored hashes in storage order (step 6 proves each
    # one is its event's hash), and the footer's row-group roots that partial readers use.
    stored = scan.stored if scan.stored is not None else _packed_hashes(table.column("hash"))
    root, footer_ok, digest = _merkle_checks(meta, table.column("hash"), stored, data)
    object_sha256(digest)
    if root != m.merkle_root:
        found.append(("merkle_root", "Merkle root over the event hashes differs from the manifest", seg, None, obj))
    if not footer_ok:
        found.append(("block_roots", "the footer's row-group Merkle roots do not match the rows", seg, None, obj))
    elif scan.row_groups is not None:  # the blocks must be the row groups, as partial readers use them
        problem = block_layout_problem(scan.row_groups, int(meta[BLOCK_ROWS_KEY]),
                                       len(decode_block_roots(meta[BLOCK_ROOTS_KEY])), n)
        if problem is not None:
            found.append(("block_layout", f"the row groups are not the Merkle blocks: {problem}", seg, None, obj))
    # The rows in seq order, as positions of the stored rows (no copy of the table).
    perm = _seq_order(stored_seq, m.first_seq)
    seqs = stored_seq if perm is None else stored_seq[perm]
    if n != m.events:
        found.append(("row_count", f"segment holds {n} rows, manifest says {m.events}", seg, None, obj))
    off = np.flatnonzero(seqs != np.arange(m.first_seq, m.first_seq + n, dtype=np.int64))
    if off.size:
        i = int(off[0])
        found.append(("seq_order", f"row {i} has seq {int(seqs[i])}, expected {m.first_seq + i}", seg,
                      m.first_seq + i, None))
    if not _chain_holds(m, scan, stored, perm):
        found += _chain_findings(m, read_segment(data, use_threads=False), seqs.tolist())
    # Step 6 (continued), the partition: every event's UTC date is the segment's date= folder.
    day = _day_start_micros(date)
    ts = np.asarray(table.column("ts").cast(pa.int64()))
    if perm is not None:
        ts = ts[perm]
    outside = np.flatnonzero((ts < day) | (ts >= day + _DAY_MICROS))
    if outside.size:
        i = int(outside[0])
        found.append(("partition_date", f"row {i}'s ts is not on {date}, the segment's date", seg, int(seqs[i]), None))
    _check_payloads(scan, perm, out, _verify_keys(key_name, tuple(public_keys)))
    _execution_links(table, perm, seqs, wrong is None, out)
    return out


# What a worker that fetches the object itself returns: fetch_segment's findings, the object's size (None when it
# could not be checked further) and check_segment's result (None then too).
Checked = tuple[list[RawFinding], int | None, "SegmentResult | None"]


def check_local_segment(root: str, m: Manifest, stream: str, **kwargs: Any) -> Checked:
    """:func:`fetch_segment` and :func:`check_segment` of a segment of a local directory store
    (``LocalStore(root)``), in a worker: the bytes are read once, there, not read by the caller and
    then again by the worker (nor pickled and piped, which costs more)."""
    fetched, data = fetch_segment(LocalStore(root), m, stream)
    if data is None:
        return fetched, None, None
    return fetched, len(data), check_segment(m, data, stream=stream, **kwargs)


def _hash_batches(table: pa.Table, rows: int = _PART_ROWS) -> Iterator[pa.RecordBatch]:
    """The table's rows in batches of about ``rows`` (row groups merged: the per-batch work of
    building hash inputs is then small per row), each small enough for 32-bit offsets."""
    group: list[pa.RecordBatch] = []
    count = 0
    for batch in [*table.to_batches(), None]:
        if batch is not None:
            group.append(batch)
            count += batch.num_rows
            if count < rows:
                continue
        if group:
            merged = pa.Table.from_batches(group)
            if len(group) > 1 and merged.nbytes <= _MERGE_BYTES:
                merged = merged.combine_chunks()
            yield from bounded_batches(merged)
        group, count = [], 0


def _chain_holds(m: Manifest, scan: _Scan, stored: np.ndarray | None, perm: np.ndarray | None) -> bool:
    """Whether step 6's hash checks all pass: every row's hash over its stored prev_hash is its stored
    hash (``scan.rows_ok``), and the stored prev_hash values chain the rows in seq order from the
    manifest's prev_hash to its last_hash. Then the hashes chained in seq order are the stored
    ones (by induction over the rows in seq order)."""
    if not scan.rows_ok or stored is None or scan.light.num_rows == 0:
        return False
    prevs = _packed_hashes(scan.light.column("prev_hash"))
    if prevs is None:
        return False
    # Compared as four uint64 per hash: one element per row and word, not 32 bytes. In seq order, row k's
    # prev_hash is row k-1's hash; through the permutation, each side is one take of whole rows.
    hs, ps = stored.view(np.uint64), prevs.view(np.uint64)
    if perm is None:
        return ps[0].tobytes() == m.prev_hash and hs[-1].tobytes() == m.last_hash and np.array_equal(ps[1:], hs[:-1])
    return (ps[perm[0]].tobytes() == m.prev_hash and hs[perm[-1]].tobytes() == m.last_hash
            and np.array_equal(np.take(ps, perm[1:], axis=0), np.take(hs, perm[:-1], axis=0)))


def _chain_findings(m: Manifest, stored_order: pa.Table, seqs: list[int]) -> list[RawFinding]:
    """Step 6 walked in seq order, when the fast check did not pass: where the chain breaks."""
    found: list[RawFinding] = []
    seg = m.segment
    table = in_seq_order(stored_order)

    def packed(name: str) -> bytes | None:
        p = _packed_hashes(table.column(name))
        return None if p is None else p.tobytes()

    computed = chain_hashes(m.prev_hash, table)
    # With every value 32 bytes, two hash lists are equal exactly when their concatenations are;
    # the Python lists are built only to locate a mismatch.
    stored_packed = packed("hash")
    if stored_packed != b"".join(computed):
        stored = table.column("hash").to_pylist()
        i = next((i for i, (a, b) in enumerate(zip(computed, stored, strict=False)) if a != b),
                 min(len(computed), len(stored)))
        seq = seqs[i] if i < len(seqs) else None
        found.append(("event_hash", f"event hash of row {i} does not match its fields and chain", seg, seq, None))
    prevs_packed = packed("prev_hash")
    # Row i's prev_hash is row i-1's stored hash: packed, the column is prev_hash + stored[:-1].
    if not computed or stored_packed is None or prevs_packed != m.prev_hash + stored_packed[:-32]:
        stored = table.column("hash").to_pylist()
        prevs = table.column("prev_hash").to_pylist()
        if prevs != [m.prev_hash] + stored[:-1]:
            i = next((i for i, (a, b) in enumerate(zip(prevs, [m.prev_hash] + stored, strict=False)) if a != b), 0)
            found.append(("prev_hash", f"row {i}'s prev_hash is not the previous event's hash", seg,
                          seqs[i] if i < len(seqs) else None, None))
    if not computed or computed[-1] != m.last_hash:
        found.append(("last_hash", "the segment's last event hash differs from the manifest", seg, m.last_seq, None))
    return found


def _check_payloads(scan: _Scan, perm: np.ndarray | None, out: SegmentResult, keys: list[VerifyKey]) -> None:
    """Count encrypted payloads by key id, and check each erasure receipt's signed note
    (FORMAT.md 3.2), in seq order; shredded events are counted once every receipt is known."""
    keys_col = scan.light.column("payload_key_id")
    if keys_col.null_count < len(keys_col):
        for item in pc.value_counts(keys_col.drop_null()).to_pylist():
            out.key_uses[item["values"]] = out.key_uses.get(item["values"], 0) + item["counts"]
    for part in scan.apart:
        for seq, ref in zip(part.column("seq").to_pylist(), part.column("payload").to_pylist(), strict=True):
            try:
                digest, length = parse_ref(ref)
            except IntegrityError as e:
                out.findings.append(("payload_object", str(e), out.segment, seq, None))
                continue
            out.payload_refs.append((seq, digest, length))
    out.payload_refs.sort()
    if not scan.receipt_rows:
        return
    receipts = pa.concat_tables(scan.receipts)
    rows = np.array(scan.receipt_rows, dtype=np.int64)
    if perm is not None:
        receipts = receipts.take(np.argsort(_rank(perm, scan.light.num_rows)[rows], kind="stable"))
    for row in receipts.to_pylist():
        try:
            receipt, signer = open_receipt(decode_payload(row["payload_codec"], row["payload"]), keys)
        except IntegrityError as e:
            out.findings.append(("erasure_receipt", str(e), out.segment, row["seq"], None))
            continue
        out.receipts.append((row["seq"], receipt, signer))


def _link_message(linked: int | None, execution: str, previous: int | None) -> str:
    return f"exec_prev_seq is {linked}, but the previous event of execution {execution!r} is {previous}"


def _execution_links(table: pa.Table, perm: np.ndarray | None, seqs: np.ndarray, stored_in_order: bool,
                     out: SegmentResult) -> None:
    """Step 8 inside the segment: each event after the first of its execution here must link to the
    previous one; the first ones, and each execution's last seq, are returned for the caller."""
    n = table.num_rows
    executions = table.column("execution_id")
    if n == 0:
        out.executions = []
        return
    rank = _rank(perm, n)
    # `order`: positions in seq order, grouped by execution, ascending within each group.
    if stored_in_order:
        # Stored rows are grouped by execution, seq ascending: their positions in storage order.
        order = rank
        ex = executions.combine_chunks()
        starts = np.ones(n, dtype=bool)
        if n > 1:
            starts[1:] = np.asarray(pc.fill_null(pc.not_equal(ex.slice(1), ex.slice(0, n - 1)), True))
    else:
        codes = np.asarray(pc.dictionary_encode(executions.combine_chunks(), null_encoding="encode").indices)
        by_code = codes[perm] if perm is not None else codes  # seq order
        order = np.argsort(by_code, kind="stable")
        grouped = by_code[order]
        starts = np.ones(n, dtype=bool)
        starts[1:] = grouped[1:] != grouped[:-1]
    stored_row = perm if perm is not None else np.arange(n)  # position in seq order -> stored row
    linked_col = table.column("exec_prev_seq")
    linked = np.asarray(linked_col.fill_null(0))
    valid = np.asarray(linked_col.is_valid())
    if perm is not None:
        linked, valid = linked[perm], valid[perm]
    prev_seq = np.empty(n, dtype=np.int64)  # for each group member but the first: the seq before it
    prev_seq[1:] = seqs[order[:-1]]
    at = order  # positions in seq order, in grouped order
    bad = np.flatnonzero(~starts & (~valid[at] | (linked[at] != prev_seq)))
    if bad.size:
        names = executions.take(pa.array(stored_row[at[bad]])).to_pylist()
        for k, execution in zip(bad.tolist(), names, strict=True):
            pos = int(at[k])
            got = int(linked[pos]) if valid[pos] else None
            finding = ("exec_link", _link_message(got, execution, int(prev_seq[k])), out.segment, int(seqs[pos]), None)
            out.link_findings.append((pos, finding))
        out.link_findings.sort(key=lambda item: item[0])
    first = np.flatnonzero(starts)
    last = np.append(first[1:], n) - 1
    first_pos, last_pos = at[first], at[last]
    names = executions.take(pa.array(stored_row[first_pos])).to_pylist()
    out.executions = [
        (pos, name, seq, link if ok else None, last_seq)
        for pos, name, seq, link, ok, last_seq in zip(
            first_pos.tolist(), names, seqs[first_pos].tolist(), linked[first_pos].tolist(),
            valid[first_pos].tolist(), seqs[last_pos].tolist(), strict=True)
    ]
    out.executions.sort()


def link_findings(result: SegmentResult, heads: dict[str, int]) -> list[RawFinding]:
    """Step 8 across segments: the first event of each execution in the segment must link to the
    execution's last seq in the earlier segments (``heads``, updated here); with the segment's own
    wrong links, in seq order."""
    found: list[tuple[int, RawFinding]] = []
    assert result.executions is not None
    for pos, execution, seq, linked, _ in result.executions:
        previous = heads.get(execution)
        if previous != linked:
            found.append((pos, ("exec_link", _link_message(linked, execution, previous), result.segment, seq, None)))
    for _, execution, _, _, last_seq in result.executions:
        heads[execution] = last_seq
    if result.link_findings:
        found = sorted(found + result.link_findings, key=lambda item: item[0])
    return [f for _, f in found]
