"""The auditor: recompute everything from the store, read-only, with public keys only.

The numbered steps follow FORMAT.md, "Verification procedure". Each segment
is checked on its own against its manifest; then the links between manifests
and the checkpoints are checked. Nothing here imports the writer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import IntegrityError, JournalError
from ..events import genesis_hash
from ..payload import decode_payload
from ..retention.shred import RECEIPT_TYPE, check_receipt
from ..segments import merkle
from ..segments.identity import JournalIdentity, read_identity
from ..segments.manifest import NO_VERSION, ZERO_HASH, Checkpoint, Manifest, checkpoint_origin
from ..segments.notes import NoteError, VerifyKey, open_note, split_note
from ..segments.table import BLOCK_ROOTS_KEY, BLOCK_ROWS_KEY, FORMAT_VERSION, chain_hashes, decode_block_roots, first_out_of_order, in_seq_order, read_segment
from ..storage import layout
from ..storage.base import ObjectReader
from .report import Finding, StreamSummary, VerifyReport

Progress = Callable[[int, int], None]
_DAY_MICROS = 86_400_000_000


def _day_start_micros(date: str) -> int:
    return (dt.date.fromisoformat(date) - dt.date(1970, 1, 1)).days * _DAY_MICROS


def _claimed_object(data: bytes) -> str | None:
    """The object an unverifiable manifest names, so that it is not reported twice."""
    try:
        return Manifest.parse(split_note(data)[0]).object
    except NoteError:
        return None


def _block_roots_match(meta: dict[str, str], leaves: list[bytes]) -> bool:
    """Whether the footer's block roots (FORMAT.md, section 5) are those of the rows."""
    try:
        block = int(meta[BLOCK_ROWS_KEY])
        return decode_block_roots(meta[BLOCK_ROOTS_KEY]) == merkle.block_roots(leaves, block)
    except (KeyError, ValueError):
        return False


def load_store_keys(store: ObjectReader, identity: JournalIdentity) -> list[VerifyKey]:
    """The public keys the store carries under keys/ (trust them only for self-checks)."""
    keys = []
    for info in store.list(layout.KEYS_PREFIX):
        if info.name.endswith(".pem"):
            keys.append(VerifyKey.from_pem(identity.key_name, store.get(info.name)))
    return keys


class _StreamVerifier:
    def __init__(self, store: ObjectReader, identity: JournalIdentity, stream: str, keys: list[VerifyKey], report: VerifyReport) -> None:
        self.store = store
        self.identity = identity
        self.stream = stream
        self.keys = keys
        self.report = report
        self.summary = StreamSummary(stream)
        report.streams.append(self.summary)

    def find(self, kind: str, message: str, **where: object) -> None:
        self.report.findings.append(Finding(kind, message, stream=self.stream, **where))  # type: ignore[arg-type]

    def read_manifests(self) -> list[tuple[int, Manifest | None]]:
        """Steps 1 and 2: every manifest, signature-checked and parsed (None when unusable)."""
        out: list[tuple[int, Manifest | None]] = []
        for info in self.store.list(layout.manifests_prefix(self.stream)):
            parsed = layout.parse_numbered(info.name)
            if parsed is None:
                self.find("unexpected_object", "not a manifest name", object=info.name)
                continue
            n = parsed[2]
            data = self.store.get(info.name)
            try:
                text, key = open_note(data, self.keys)
                m = Manifest.parse(text)
            except NoteError as e:
                self.find("manifest_signature", f"manifest does not verify: {e}", segment=n, object=info.name)
                out.append((n, None))
                self._unverified_objects.add(_claimed_object(data))
                continue
            if m.key_id != key.key_id:
                self.find("manifest_key", f"manifest names key {m.key_id} but is signed by {key.key_id}", segment=n)
            if (m.journal, m.stream, m.segment) != (self.identity.journal_id, self.stream, n):
                self.find("manifest_identity", "manifest names another journal, stream or segment number", segment=n)
            out.append((n, m))
        return out

    def run(self, progress: Callable[[int], None]) -> None:
        self._unverified_objects: set[str | None] = set()
        self._exec_heads: dict[str, int] = {}
        manifests = self.read_manifests()
        hashes: list[bytes] = []
        prev_manifest = ZERO_HASH
        prev_last_seq, prev_last_hash = -1, genesis_hash(self.identity.journal_id, self.stream)
        expected = 0
        for n, m in manifests:
            # Steps 1 and 3: numbers contiguous from 0; each manifest links to the one before.
            if n != expected:
                self.find("manifest_missing", f"segments {expected}..{n - 1} have no manifest (removed?)", segment=expected)
            expected = n + 1  # report each gap once, not again at every later manifest
            if m is None:
                prev_manifest = None  # the link after an unusable manifest cannot be checked
                hashes.append(b"")
                continue
            if prev_manifest is not None and m.prev_manifest != prev_manifest:
                self.find("manifest_link", "manifest does not link to the previous manifest", segment=n)
            if m.first_seq != prev_last_seq + 1:
                self.find("seq_gap", f"segment starts at seq {m.first_seq}, expected {prev_last_seq + 1}", segment=n, seq=m.first_seq)
            if m.prev_hash != prev_last_hash:
                self.find("chain_link", "segment's prev_hash is not the previous segment's last hash", segment=n, seq=m.first_seq)
            self.verify_segment(m)
            hashes.append(m.manifest_hash())
            prev_manifest = hashes[-1]
            prev_last_seq, prev_last_hash = m.last_seq, m.last_hash
            s = self.summary
            s.segments += 1
            s.events += m.events
            s.first_seq = m.first_seq if s.first_seq is None else s.first_seq
            s.last_seq, s.head_hash = m.last_seq, m.last_hash.hex()
            progress(1)
        self.check_strays({m.object for _, m in manifests if m is not None})
        self.check_checkpoints(hashes)

    def verify_segment(self, m: Manifest) -> None:
        """Steps 4 to 8: the object's bytes, then every event, its chain, the Merkle root, the back-links."""
        where = {"segment": m.segment, "object": m.object}
        if m.last_seq < m.first_seq or m.events != m.last_seq - m.first_seq + 1:
            self.find("manifest_count", f"manifest counts {m.events} events for seq {m.first_seq}..{m.last_seq}", **where)
        # Step 4: the object, named as the layout names it, with the signed size and SHA-256.
        parsed = layout.parse_segment(m.object)
        if parsed is None or parsed[0] != self.stream or parsed[2] != m.segment:
            self.find("object_name", f"manifest names object {m.object!r}, not a segment {m.segment} of this stream", **where)
            return
        try:
            data = self.store.get(m.object)
        except JournalError as e:
            self.find("object_missing", f"segment object cannot be read: {e}", **where)
            return
        self.report.bytes_checked += len(data)
        if m.object_version != NO_VERSION:
            info = self.store.head(m.object)
            current = info.version_id if info else None
            if current != m.object_version:
                self.find("object_version", f"current version {current} is not the version {m.object_version} that was sealed", **where)
        if len(data) != m.object_size:
            self.find("object_size", f"object is {len(data)} bytes, manifest says {m.object_size}", **where)
        if hashlib.sha256(data).digest() != m.object_sha256:
            self.find("object_sha256", "object's SHA-256 differs from the signed manifest", **where)
        try:
            table = read_segment(data)
        except (pa.ArrowException, ValueError, OSError) as e:
            self.find("segment_unreadable", f"not a readable wormjournal segment: {e}", **where)
            return
        del data
        # Step 5: the segment's own metadata names this journal, stream and segment.
        meta = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in (table.schema.metadata or {}).items()}
        expected_meta = {
            "wormjournal.format": FORMAT_VERSION,
            "wormjournal.journal": self.identity.journal_id,
            "wormjournal.stream": self.stream,
            "wormjournal.segment": str(m.segment),
        }
        if any(meta.get(k) != v for k, v in expected_meta.items()):
            self.find("segment_metadata", "segment metadata names another format, journal, stream or segment", **where)
        # Step 6: rows are stored in (execution_id, seq) order; the chain runs in seq order.
        wrong = first_out_of_order(table)
        if wrong is not None:
            self.find("row_order", f"row {wrong} is out of (execution_id, seq) order", segment=m.segment,
                      seq=table.column("seq")[wrong].as_py())
        # Step 7: the Merkle root over the stored hashes in storage order (step 6 proves each
        # one is its event's hash), and the footer's row-group roots that partial readers use.
        stored_order_hashes = table.column("hash").to_pylist()
        leaves = [merkle.leaf_hash(h if isinstance(h, bytes) else b"") for h in stored_order_hashes]
        if merkle.root_from_leaf_hashes(leaves) != m.merkle_root:
            self.find("merkle_root", "Merkle root over the event hashes differs from the manifest", **where)
        if not _block_roots_match(meta, leaves):
            self.find("block_roots", "the footer's row-group Merkle roots do not match the rows", **where)
        del stored_order_hashes
        table = in_seq_order(table)
        seqs = table.column("seq").to_pylist()
        if len(seqs) != m.events:
            self.find("row_count", f"segment holds {len(seqs)} rows, manifest says {m.events}", **where)
        if seqs != list(range(m.first_seq, m.first_seq + len(seqs))):  # one C-level compare; the loop only on a mismatch
            for i, seq in enumerate(seqs):
                if seq != m.first_seq + i:
                    self.find("seq_order", f"row {i} has seq {seq}, expected {m.first_seq + i}", segment=m.segment, seq=m.first_seq + i)
                    break

        def packed_hashes(name: str) -> bytes | None:
            """The column's values back to back, if every one is a non-null 32-byte hash; else None."""
            column = table.column(name)
            if column.null_count:
                return None
            try:
                fixed = column.cast(pa.binary(32))  # fails unless every value is 32 bytes long
            except pa.ArrowInvalid:
                return None
            return b"".join(memoryview(c.buffers()[1])[c.offset * 32 : (c.offset + len(c)) * 32] for c in fixed.chunks if len(c))

        computed = chain_hashes(m.prev_hash, table)
        # With every value 32 bytes, two hash lists are equal exactly when their concatenations are;
        # the Python lists are built only to locate a mismatch.
        stored_packed = packed_hashes("hash")
        if stored_packed != b"".join(computed):
            stored = table.column("hash").to_pylist()
            i = next((i for i, (a, b) in enumerate(zip(computed, stored)) if a != b), min(len(computed), len(stored)))
            seq = seqs[i] if i < len(seqs) else None
            self.find("event_hash", f"event hash of row {i} does not match its fields and chain", segment=m.segment, seq=seq)
        prevs_packed = packed_hashes("prev_hash")
        # Row i's prev_hash is row i-1's stored hash: packed, the column is prev_hash + stored[:-1].
        if not computed or stored_packed is None or prevs_packed != m.prev_hash + stored_packed[:-32]:
            stored = table.column("hash").to_pylist()
            prevs = table.column("prev_hash").to_pylist()
            if prevs != [m.prev_hash] + stored[:-1]:
                i = next((i for i, (a, b) in enumerate(zip(prevs, [m.prev_hash] + stored)) if a != b), 0)
                self.find("prev_hash", f"row {i}'s prev_hash is not the previous event's hash", segment=m.segment, seq=seqs[i] if i < len(seqs) else None)
        if not computed or computed[-1] != m.last_hash:
            self.find("last_hash", "the segment's last event hash differs from the manifest", segment=m.segment, seq=m.last_seq)
        # Step 6 (continued), the partition: every event's UTC date is the segment's date= folder.
        day = _day_start_micros(parsed[1])
        ts = np.asarray(table.column("ts").cast(pa.int64()))
        outside = np.flatnonzero((ts < day) | (ts >= day + _DAY_MICROS))
        if outside.size:
            i = int(outside[0])
            self.find("partition_date", f"row {i}'s ts is not on {parsed[1]}, the segment's date", segment=m.segment, seq=seqs[i])
        self.check_payloads(table, m.segment)
        # Step 8: each event links to the previous event of its execution in this stream.
        heads = self._exec_heads
        links = zip(seqs, table.column("execution_id").to_pylist(), table.column("exec_prev_seq").to_pylist(), strict=True)
        for seq, execution, linked in links:
            if heads.get(execution) != linked:
                self.find(
                    "exec_link",
                    f"exec_prev_seq is {linked}, but the previous event of execution {execution!r} is {heads.get(execution)}",
                    segment=m.segment,
                    seq=seq,
                )
            heads[execution] = seq

    def check_payloads(self, table: pa.Table, segment: int) -> None:
        """Count encrypted payloads by key id, and check each erasure receipt's signed note
        (FORMAT.md 3.2); shredded events are counted once every receipt is known."""
        keys = table.column("payload_key_id")
        if keys.null_count < len(keys):
            for item in pc.value_counts(keys.drop_null()).to_pylist():
                self.report.key_uses[item["values"]] = self.report.key_uses.get(item["values"], 0) + item["counts"]
        receipts = table.filter(pc.equal(table.column("event_type"), RECEIPT_TYPE))
        for row in receipts.select(["seq", "payload_codec", "payload"]).to_pylist():
            try:
                receipt = check_receipt(decode_payload(row["payload_codec"], row["payload"]), self.keys)
            except IntegrityError as e:
                self.find("erasure_receipt", str(e), segment=segment, seq=row["seq"])
                continue
            self.report.receipts.append(dict(receipt, stream=self.stream, seq=row["seq"]))

    def check_strays(self, covered: set[str]) -> None:
        """Step 11: every object under segments/ must be covered by a manifest."""
        for info in self.store.list(layout.stream_segments_prefix(self.stream)):
            if info.name not in covered and info.name not in self._unverified_objects:
                self.find("orphan_object", "segment object not covered by any manifest (an interrupted seal, or inserted)", object=info.name)

    def check_checkpoints(self, hashes: Sequence[bytes]) -> None:
        """Steps 9 and 10: every checkpoint verifies and commits to the manifests; the latest covers them all."""
        origin = checkpoint_origin(self.identity.journal_id, self.stream)
        latest: Checkpoint | None = None
        for info in self.store.list(layout.checkpoints_prefix(self.stream)):
            parsed = layout.parse_numbered(info.name)
            if parsed is None:
                self.find("unexpected_object", "not a checkpoint name", object=info.name)
                continue
            try:
                text, _ = open_note(self.store.get(info.name), self.keys)
                cp = Checkpoint.parse(text)
            except NoteError as e:
                self.find("checkpoint_signature", f"checkpoint does not verify: {e}", object=info.name)
                continue
            if cp.origin != origin or cp.tree_size != parsed[2]:
                self.find("checkpoint_identity", f"checkpoint origin {cp.origin!r} / size {cp.tree_size} does not match its name", object=info.name)
                continue
            if latest is None or cp.tree_size > latest.tree_size:
                latest = cp
            if cp.tree_size > len(hashes):
                self.find(
                    "checkpoint_ahead",
                    f"checkpoint commits to {cp.tree_size} segments but only {len(hashes)} are in the store (segments removed)",
                    object=info.name,
                )
                continue
            prefix = hashes[: cp.tree_size]
            if any(h == b"" for h in prefix) or merkle.merkle_root(prefix) != cp.root_hash:
                self.find("checkpoint_root", f"checkpoint root over {cp.tree_size} manifests does not match (history rewritten?)", object=info.name)
        if latest is None:
            if hashes:
                self.find("checkpoint_missing", "the stream has segments but no checkpoint that verifies")
            return
        self.summary.checkpoint_size = latest.tree_size
        self.summary.checkpoint_root = latest.root_hash.hex()
        if latest.tree_size < len(hashes):
            self.find("checkpoint_behind", f"the latest checkpoint covers {latest.tree_size} of {len(hashes)} segments")


def verify_store(
    store: ObjectReader,
    *,
    public_keys: Sequence[VerifyKey] | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Verify every stream of the journal in ``store``; never writes.

    With ``public_keys`` None, the keys stored in the journal are used and the
    report says so. Returns a report whose ``ok`` is False on any finding, and
    also when there was nothing to verify. Raises NotFoundError / StorageError
    when the store cannot be read at all.
    """
    started = time.perf_counter()
    identity = read_identity(store)
    keys_from_store = public_keys is None
    keys = list(public_keys) if public_keys is not None else load_store_keys(store, identity)
    # Our keys carry this journal's note name, whatever name they were loaded with.
    keys = [VerifyKey(identity.key_name, k.public) for k in keys]
    report = VerifyReport(
        store=getattr(store, "url", repr(store)),
        journal_id=identity.journal_id,
        keys=[k.key_id for k in keys],
        keys_from_store=keys_from_store,
    )
    if not keys:
        report.findings.append(Finding("no_keys", "no public key to verify with"))
    names = [o.name for prefix in (layout.MANIFESTS_PREFIX, layout.SEGMENTS_PREFIX, layout.CHECKPOINTS_PREFIX) for o in store.list(prefix)]
    streams = layout.streams_from_names(names)
    total = sum(1 for n in names if n.startswith(layout.MANIFESTS_PREFIX))
    done = 0

    def step(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, total)

    for stream in streams:
        _StreamVerifier(store, identity, stream, keys, report).run(step)
    if not any(s.events for s in report.streams):
        report.findings.append(Finding("nothing_to_verify", "the store holds no sealed event; there is nothing to prove"))
    report.seconds = time.perf_counter() - started
    return report
