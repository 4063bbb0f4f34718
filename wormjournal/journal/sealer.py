"""Sealing: WAL records -> Parquet segments -> signed manifests -> a checkpoint.

Every step is a write-once put, so a seal interrupted at any point is finished
by running it again: identical bytes are no-ops, and a segment object stored
by an interrupted seal is adopted when its rows are exactly the WAL's records.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import steps
from ..errors import ConflictError, IndexDamaged, IntegrityError, JournalError, StorageError
from ..events import StoredEvent, format_ts, now_micros
from ..index import build as index_build
from ..index.catalog import Catalog, IndexFile, IndexObject
from ..retention.policy import PolicySet, load_policy
from ..segments import merkle
from ..segments.head import Head, StreamTip
from ..segments.manifest import NO_VERSION, ZERO_HASH, Checkpoint, IndexRoot, Manifest, checkpoint_origin
from ..segments.notes import SigningKey
from ..segments.table import (
    MIN_PAGE_ROWS,
    PAGE_ROWS,
    SCHEMA,
    build_segment,
    events_to_table,
    in_seq_order,
    page_rows_for,
    payload_refs,
    read_segment,
    utc_date,
)
from ..storage import layout
from ..storage.base import Store
from ..storage.local import fsync_dir
from ..storage.wal import PAYLOADS_DIR, WalMac, read_wal_table
from ..trust import KeyRing, ManifestChain, Sink, check_names, open_checkpoint, open_manifest
from ..trust.load import key_name
from ..verify.segment import check_segment, public_key_bytes
from .heads import HeadWriter
from .keys import SigningKeys

log = logging.getLogger(__name__)

HELD_RUN_BYTES = 64 << 20  # a run's bytes kept for the run that merges it next (_hold), at most this size
HELD_RUNS = 32  # and this many of them

_DAY = 86_400_000_000  # microseconds


def _step(name: str) -> None:
    steps.reached(f"seal.{name}")


def _ends(chunk: pa.Table) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first and the last row of ``chunk`` (seq order): seq, prev_hash and hash."""
    ends = chunk.select(["seq", "prev_hash", "hash"]).take([0, chunk.num_rows - 1]).to_pylist()
    return ends[0], ends[1]


SEALED_FILE = "SEALED"  # in the stream's WAL directory: what this writer sealed (FORMAT.md 11)


def load_sealed_state(store: Store, journal_id: str, stream: str, ring: KeyRing, wal_dir: Path | None = None,
                      mac: WalMac | None = None) -> ManifestChain:
    """The stream's manifests, checked by the trust core (raising at the first broken promise): enough to
    continue its chain.

    With the ``SEALED`` record of ``wal_dir`` (the hashes of the manifests this writer's seals left, MAC'd by
    the WAL key), only the newest of those and the manifests stored since are read and checked here; an older
    one is read when its index roots are needed (:meth:`Sealer.manifest`: the few that sign the executions
    index's runs), so that opening does not grow with the stream. Without it, every manifest is read. Raises
    IntegrityError when the store lacks a manifest the record names or holds another one there (the store
    rolled back, or rewritten)."""
    chain = ManifestChain(journal_id, stream, Sink(collect=False))
    recorded = read_sealed_record(wal_dir, mac) if wal_dir is not None and mac is not None else None
    if recorded:
        n = len(recorded)
        name = layout.manifest(stream, n - 1)
        info = store.head(name)
        if info is None:
            raise IntegrityError(f"stream {stream}: this writer sealed {n} segments, but the store has no manifest "
                                 f"{n - 1}", hint="the store was rolled back, or the WAL directory is not this store's")
        m = open_manifest(store.get(name), name, n - 1, journal_id=journal_id, stream=stream, ring=ring,
                          sink=chain.sink)
        assert m is not None  # the sink raises
        try:
            chain = ManifestChain.resumed(journal_id, stream, chain.sink, recorded, m)
        except ValueError as e:
            raise IntegrityError(f"stream {stream}: {e}: the store's manifests are not the ones this writer sealed",
                                 hint="the store was rewritten, or the WAL directory is not this store's") from e
    return refresh_sealed_state(store, chain, ring)


def read_sealed_record(directory: Path, mac: WalMac) -> list[bytes] | None:
    """The manifest hashes of the ``SEALED`` record, or None when there is none or it is not this writer's
    (its MAC fails: then every manifest is read, as without one)."""
    try:
        data = (directory / SEALED_FILE).read_bytes()
    except FileNotFoundError:
        return None
    tag, body = data[:32], data[32:]
    if len(tag) != 32 or len(body) % 32 or not hmac.compare_digest(tag, mac.state_tag(body)):
        log.warning("%s is not authenticated by the WAL key: every manifest of the stream is read instead",
                    directory / SEALED_FILE)
        return None
    return [body[i : i + 32] for i in range(0, len(body), 32)]


def sealed_record(mac: WalMac, hashes: Sequence[bytes]) -> bytes:
    """The bytes of a ``SEALED`` record of manifest hashes (FORMAT.md 11): its MAC, then the hashes."""
    body = b"".join(hashes)
    return mac.state_tag(body) + body


def write_sealed_record(directory: Path, mac: WalMac, chain: ManifestChain) -> None:
    """Record the hashes of the stream's manifests (atomically: temporary file, fsync, rename), unless the record
    holds them already (an open that found nothing new). The caller holds the seal lock."""
    if not chain.size or b"" in chain.hashes:
        return  # a manifest the chain could not use (it would have raised): nothing to vouch for
    data = sealed_record(mac, chain.hashes)
    path = directory / SEALED_FILE
    try:
        if path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    tmp = directory / (SEALED_FILE + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(directory)


def refresh_sealed_state(store: Store, chain: ManifestChain, ring: KeyRing) -> ManifestChain:
    """``chain`` continued with the manifests stored since (another process of the writer sealed)."""
    names = [info.name for info in store.list(layout.manifests_prefix(chain.stream))]
    check_names(names, chain.sink)
    for name in names:
        parsed = layout.parse_numbered(name)
        if parsed is None or parsed[2] >= chain.size:
            chain.open(name, store.get(name), ring)
    return chain


def seal_wal_files(sealer: Sealer, keys: SigningKeys, directory: Path, mac: WalMac,
                   paths: Sequence[Path]) -> list[Manifest]:
    """Seal the frozen WAL files ``paths`` one by one (a file's records at a time in memory), each cut only once
    its segments, index, manifests and checkpoint are stored. The caller holds the stream's seal lock. This
    writer's own files: their MACs are checked, their hashes taken as written (no re-hash)."""
    manifests: list[Manifest] = []
    for path in paths:
        wal = read_wal_table(path, mac, rehash=False, mapped=True)  # under the seal lock: frozen, whole
        if wal.torn_bytes:
            raise IntegrityError(f"{path} is damaged at offset {wal.good_end}, but it is not the newest WAL file")
        sealed = sealer.state.next_seq - wal.header.first_seq  # its first records were sealed before a crash
        if sealed > 0 and wal.table.num_rows:
            # ... as these very records: the last of them must be where the stored chain is at its seq (another
            # writer that took the stream over may have sealed other events at those seqs: a fork, never cut)
            last = min(sealed, wal.table.num_rows) - 1
            if wal.table.column("hash")[last].as_py() != sealer.stored_hash(wal.header.first_seq + last):
                raise IntegrityError(f"{path} holds other events than the store at seq {wal.header.first_seq + last}: "
                                     "another writer sealed into this stream (a take-over); its events are kept, "
                                     "this WAL's are not sealed", hint="keep the WAL file for the investigation")
        staged = directory / PAYLOADS_DIR
        with keys.signing():
            manifests += sealer.seal(wal.table.slice(max(0, sealed)), staged=staged)
        write_sealed_record(directory, mac, sealer.state)  # before the cut: the next open starts from it
        path.unlink()
        fsync_dir(directory)
        # Their payloads stored apart are in the store now (an unsealed event with the same bytes reads it there).
        for digest, _ in payload_refs(wal.table):
            (staged / digest).unlink(missing_ok=True)
    if not paths:
        with keys.signing():
            sealer.seal(SCHEMA.empty_table())  # the checkpoint the last seal may have missed
    return manifests


class Sealer:
    def __init__(self, store: Store, state: ManifestChain, key: Callable[[int], SigningKey],
                 ring: Callable[[], KeyRing], *, row_group_rows: int, segment_max_events: int,
                 page_rows: int = PAGE_ROWS, min_page_rows: int = MIN_PAGE_ROWS) -> None:
        self.store = store
        self.state = state
        # Asked before each signature, with the segment it signs: another process may have rotated the key.
        self._key_for = key
        self._ring = ring
        self.row_group_rows = row_group_rows
        self.page_rows = page_rows
        self.min_page_rows = min_page_rows
        self.segment_max_events = segment_max_events
        self._checkpoint_size = 0  # tree size of the last checkpoint this sealer stored
        self._held: dict[tuple[str, int, int], pa.Table] = {}  # index rows a later run merges (_hold)
        self._held_runs: dict[tuple[str, int, int], bytes] = {}  # and runs' bytes
        self._starts: dict[str, int] | None = None  # execution -> start (_execution_starts)
        self._heads = HeadWriter(store, state.journal_id, ring)
        self.head: Head | None = None  # the newest head naming this stream's last checkpoint

    def _chunk_end(self, days: np.ndarray, start: int) -> int:
        """A segment holds one UTC date and at most segment_max_events events."""
        limit = min(len(days), start + self.segment_max_events)
        other = np.flatnonzero(days[start:limit] != days[start])
        return start + int(other[0]) if other.size else limit

    def _adopt(self, name: str, table: pa.Table, start: int) -> tuple[int, bytes]:
        """Accept a segment stored by an interrupted seal if it holds exactly our next records."""
        data = self.store.get(name)
        try:
            stored = in_seq_order(read_segment(data)).replace_schema_metadata(None)
        except Exception as e:  # a torn or foreign object: never adopt it
            raise IntegrityError(f"{name} exists but is not a readable segment: {e}") from e
        n = stored.num_rows
        if not n or not stored.equals(table.slice(start, n).replace_schema_metadata(None)):
            raise IntegrityError(f"{name} exists and does not hold the events of the write-ahead log")
        log.info("adopting %s, stored by an interrupted seal", name)
        return start + n, data

    def _check_adopted(self, name: str, data: bytes, chunk: pa.Table, root: bytes, segment: int) -> None:
        """An adopted object must be exactly a segment of ``chunk`` as FORMAT.md 10 checks one (steps 4 to 7:
        its rows in storage order, its row groups as Merkle blocks, its metadata), against the manifest
        about to be signed: a planted object holding the right events otherwise laid out is refused,
        never signed. Raises IntegrityError."""
        st = self.state
        first, last = _ends(chunk)
        probe = Manifest(journal=st.journal_id, stream=st.stream, segment=segment, first_seq=first["seq"],
                         last_seq=last["seq"], events=chunk.num_rows, prev_hash=first["prev_hash"],
                         last_hash=last["hash"], merkle_root=root, object=name, object_size=len(data),
                         object_sha256=hashlib.sha256(data).digest(), object_version=NO_VERSION,
                         prev_manifest=ZERO_HASH, frontier=tuple(st.frontier), key_id="-", time="-")
        result = check_segment(probe, data, journal_id=st.journal_id, stream=st.stream,
                               key_name=key_name(st.journal_id), public_keys=public_key_bytes(self._ring().keys()))
        wrong = result.findings + [f for _, f in result.link_findings]
        if wrong:
            raise IntegrityError(f"{name} exists and is not the segment of the write-ahead log's events "
                                 f"({wrong[0][0]}: {wrong[0][1]}); it is never signed",
                                 hint="an object was planted at the next segment's name; keep it for the "
                                      "investigation and seal into a new store, or ask the store's owner")

    def _check_records(self, table: pa.Table) -> None:
        """The records continue the store's chain: seq after seq from its next seq, each linked to the one
        before (whole WAL files each link inside; this checks where they meet). Raises IntegrityError."""
        st = self.state
        seqs = np.asarray(table.column("seq"))
        first = int(seqs[0])
        if first != st.next_seq or table.column("prev_hash")[0].as_py() != st.last_hash:
            raise IntegrityError(
                f"stream {st.stream}: the write-ahead log starts at seq {first}, "
                f"but the store's chain continues at seq {st.next_seq}"
            )
        gap = np.flatnonzero(seqs != first + np.arange(len(seqs), dtype=np.int64))
        links = pc.equal(table.column("prev_hash").slice(1), table.column("hash").slice(0, len(seqs) - 1))
        broken = np.flatnonzero(~np.asarray(links.combine_chunks() if len(seqs) > 1 else pa.array([], pa.bool_()),
                                            dtype=bool))
        if gap.size or broken.size:
            at = int(gap[0]) if gap.size else int(broken[0]) + 1
            raise IntegrityError(f"stream {st.stream}: the write-ahead log's records do not follow on at seq "
                                 f"{first + at}")

    def _store_payloads(self, locked: Store, chunk: pa.Table, staged: Path | None) -> None:
        """Store the payloads the chunk's events hold apart (FORMAT.md 3.5) before their segment: from the WAL
        directory's ``payloads/`` (``staged``), or already in the store (an interrupted seal stored them). Raises
        IntegrityError when one is in neither: its event could never be read."""
        for digest, seq in payload_refs(chunk):
            name = layout.payload(self.state.stream, digest)
            try:
                data = (staged / digest).read_bytes() if staged is not None else None
            except FileNotFoundError:
                data = None
            if data is None:
                if self.store.head(name) is None:
                    raise IntegrityError(f"stream {self.state.stream}: the payload of seq {seq}, stored apart as "
                                         f"{digest}, is neither in the write-ahead log's directory nor in the store")
                continue
            if hashlib.sha256(data).hexdigest() != digest:
                raise IntegrityError(f"the staged payload {digest} in the write-ahead log's directory is not the bytes "
                                     "its name says")
            locked.put(name, data)

    def seal(self, events: Sequence[StoredEvent] | pa.Table, *, staged: Path | None = None) -> list[Manifest]:
        """Seal ``events`` (contiguous, starting at the state's next seq: events, or their rows in the segment
        schema in seq order) and write a checkpoint. Payloads stored apart are taken from ``staged`` (the WAL
        directory's ``payloads/``) or must be in the store."""
        table = events if isinstance(events, pa.Table) else events_to_table(events)
        if not table.num_rows:
            if self._checkpoint_size != self.state.size:
                self.write_checkpoint()  # the last seal failed at its checkpoint
            return []
        st = self.state
        self._check_records(table)
        steps.reached("seal.start")  # the WAL is cut, nothing of this seal is stored yet
        manifests = []
        policies = self._policies()
        days = np.asarray(table.column("ts").cast(pa.int64())) // _DAY
        pos = 0
        while pos < table.num_rows:
            segment = st.size
            end = self._chunk_end(days, pos)
            name = layout.segment(st.stream, utc_date(int(days[pos]) * _DAY), segment)
            chunk = table.slice(pos, end - pos)
            page_rows = page_rows_for(chunk, self.page_rows, self.min_page_rows)
            data, stored, root = build_segment(chunk, journal_id=st.journal_id, stream=st.stream, segment=segment,
                                               row_group_rows=self.row_group_rows, page_rows=page_rows)
            locked = self._store_for(policies, chunk.column("tenant_id").unique().to_pylist())
            self._store_payloads(locked, chunk, staged)  # before the segment that names them
            try:
                version = locked.put(name, data).version_id
            except ConflictError:
                end, data = self._adopt(name, table, pos)
                chunk = table.slice(pos, end - pos)
                page_rows = page_rows_for(chunk, self.page_rows, self.min_page_rows)
                # the stored rows, whatever their row groups and pages: same index, same root
                _, stored, root = build_segment(chunk, journal_id=st.journal_id, stream=st.stream,
                                                segment=segment, row_group_rows=self.row_group_rows,
                                                page_rows=page_rows)
                self._check_adopted(name, data, chunk, root, segment)
                info = self.store.head(name)
                version = info.version_id if info else None
            _step("segment_stored")
            sha256 = hashlib.sha256(data).digest()
            # The index goes in before the manifest, which signs its roots.
            keys = stored.select(index_build.KEY_COLUMNS)
            started = self._execution_starts()
            index_roots = index_build.write_seal_index(
                locked, journal_id=st.journal_id, stream=st.stream, segment=segment, table=keys,
                earlier=self._earlier_index, started=started, manifests=st.hashes, written=self._hold,
            )
            begun = keys.filter(pc.is_null(keys.column("exec_prev_seq")))  # the executions that begin here
            ts = begun.column("ts").cast(pa.int64()).to_pylist()
            started.update(zip(begun.column("execution_id").to_pylist(), ts, strict=True))
            _step("index_stored")
            key = self._key_for(segment)
            first, last = _ends(chunk)
            m = Manifest(
                journal=st.journal_id,
                stream=st.stream,
                segment=segment,
                first_seq=first["seq"],
                last_seq=last["seq"],
                events=chunk.num_rows,
                prev_hash=first["prev_hash"],
                last_hash=last["hash"],
                merkle_root=root,
                object=name,
                object_size=len(data),
                object_sha256=sha256,
                object_version=version or NO_VERSION,
                prev_manifest=st.hashes[-1] if st.size else ZERO_HASH,
                frontier=tuple(st.frontier),
                key_id=key.verify_key.key_id,
                time=format_ts(now_micros()),
                index=tuple(index_roots),
            )
            locked.put(layout.manifest(st.stream, segment), m.sign(key))
            _step("manifest_stored")
            st.add(segment, m)
            manifests.append(m)
            pos = end
        self.write_checkpoint(policies)
        _step("checkpoint_stored")
        return manifests

    def execution_heads(self) -> dict[str, int]:
        """The last seq of each execution in the sealed segments (what ``exec_prev_seq`` links to), from the
        executions index every seal stores: its largest runs, a few objects however many segments there are,
        each checked against the root its manifest signs. A segment no usable object covers is read itself.
        The executions' starts (what a seal's tenants rows carry) come with them."""
        table = self._all_executions_rows()
        self._starts = index_build.execution_starts(table)
        if not table.num_rows:
            return {}
        heads = table.group_by("execution_id").aggregate([("last_seq", "max")])
        return dict(zip(heads.column("execution_id").to_pylist(), heads.column("last_seq_max").to_pylist(),
                        strict=True))

    def _execution_starts(self) -> dict[str, int]:
        """The start of every execution of the sealed segments (FORMAT.md 11a, ``started``): read once from the
        executions index, then kept up to date by each seal."""
        if self._starts is None:
            self._starts = index_build.execution_starts(self._all_executions_rows())
        return self._starts

    def _all_executions_rows(self) -> pa.Table:
        st = self.state

        def bound(kind: str, first: int, last: int) -> IndexRoot | None:
            m = self.manifest(last) if 0 <= last < st.size else None
            return m.index_root(kind, first) if m is not None else None

        catalog = Catalog(self.store, st.journal_id, st.stream, bound, self._index_of_segment)
        while True:
            try:
                return catalog.lookup("executions", st.size)
            except IndexDamaged:  # left out now: the next lookup reads around it
                continue

    def manifest(self, n: int) -> Manifest | None:
        """Manifest ``n`` of the stream: as the trust core checked it when the stream was opened or sealed, or
        (opened from the writer's record, load_sealed_state) read now, opened (step 2) and required to be the
        one whose hash the chain holds. None for a manifest the chain could not use."""
        st = self.state
        m = st.manifests.get(n)
        if m is not None or not 0 <= n < st.size or not st.hashes[n]:
            return m
        name = layout.manifest(st.stream, n)
        m = open_manifest(self.store.get(name), name, n, journal_id=st.journal_id, stream=st.stream, ring=self._ring(),
                          sink=Sink(collect=False))
        if m is None or m.manifest_hash() != st.hashes[n]:
            raise IntegrityError(f"{name} is not the manifest this writer sealed (the store was rewritten?)")
        st.manifests[n] = m
        return m

    def _index_of_segment(self, n: int) -> dict[str, pa.Table]:
        """The index tables of sealed segment ``n`` from its own rows (its bytes checked against its manifest)."""
        m = self.manifest(n)
        if m is None:
            raise IntegrityError(f"stream {self.state.stream}: segment {n} has no usable manifest")
        data = self.store.get(m.object)
        if hashlib.sha256(data).digest() != m.object_sha256:
            raise IntegrityError(f"{m.object} is not the segment its manifest signs")
        return index_build.segment_tables(pq.read_table(pa.BufferReader(data), columns=index_build.KEY_COLUMNS), n)

    def stored_hash(self, seq: int) -> bytes | None:
        """The hash of the sealed event ``seq`` (None when no manifest covers it): from its manifest when it ends
        a segment, else from the segment's rows (its bytes checked against the manifest)."""
        st = self.state
        if seq == st.next_seq - 1:
            return st.last_hash
        m = None
        for n in range(st.size - 1, -1, -1):  # from the newest: the seq is a crash's, near the end
            m = self.manifest(n)
            if m is None or m.first_seq <= seq:
                break
        if m is None or not m.first_seq <= seq <= m.last_seq:
            return None
        if seq == m.last_seq:
            return m.last_hash
        data = self.store.get(m.object)
        if hashlib.sha256(data).digest() != m.object_sha256:
            raise IntegrityError(f"{m.object} is not the segment its manifest signs")
        table = read_segment(data)
        rows = np.flatnonzero(np.asarray(table.column("seq")) == seq)
        return table.column("hash")[int(rows[0])].as_py() if rows.size else None

    def _hold(self, kind: str, first: int, last: int, rows: pa.Table | bytes) -> None:
        """Keep what a later run merges of an index object this sealer wrote: a segment's own rows for the runs
        of the next two seals, a run's Parquet bytes (up to HELD_RUN_BYTES, the newest HELD_RUNS) for the run that
        merges it next, so that it is neither read back nor hashed again to authenticate it."""
        if isinstance(rows, bytes):
            if len(rows) <= HELD_RUN_BYTES:
                self._held_runs[(kind, first, last)] = rows
                while len(self._held_runs) > HELD_RUNS:
                    del self._held_runs[next(iter(self._held_runs))]
            return
        self._held[(kind, first, last)] = rows
        for key in [k for k in self._held if k[0] == kind and k[2] < last - 1]:
            del self._held[key]

    def _earlier_index(self, kind: str, first: int, last: int) -> tuple[int, Iterable[pa.Table]] | None:
        """The rows of an index object an earlier seal wrote: held since this sealer wrote them, else read
        and checked against the root its manifest signs, a row group at a time (a run merges them and is
        signed anew: it must not launder altered rows)."""
        held = self._held.pop((kind, first, last), None)
        if held is not None:
            return held.num_rows, (held,)
        data = self._held_runs.pop((kind, first, last), None)
        if data is not None:
            return pq.read_metadata(pa.BufferReader(data)).num_rows, index_build.row_groups_of(data)
        name = layout.index_object(self.state.stream, kind, first, last)
        m = self.manifest(last) if 0 <= last < self.state.size else None
        root = m.index_root(kind, first) if m is not None else None
        try:
            info = self.store.head(name)
            if root is None or info is None:
                return None
            obj = IndexObject(name, first, last, info.size)
            f = IndexFile(self.store, obj, kind, root, self.state.journal_id, self.state.stream)
            if f.schema != index_build.SCHEMAS[kind]:  # an older format's rows (format 2's events: at most 8 segments)
                return root.rows, (index_build.current_rows(kind, f.format, f.all()),)
            return root.rows, f.rows()
        except JournalError as e:
            log.warning("index object %s cannot be used for a run: %s", name, e)
            return None

    def _policies(self) -> PolicySet | None:
        """The retention policy in force now (re-read at each seal: an officer may have strengthened it)."""
        base = getattr(self.store, "retention", None)
        if base is None:
            return None  # a store that does not lock objects
        policies, problems = load_policy(self.store, base, self._ring().keys())
        for problem in problems:
            log.warning("retention policy: %s", problem)
        return policies

    def _store_for(self, policies: PolicySet | None, tenants: Iterable[str | None]) -> Store:
        """The store writing under the policy of ``tenants`` (the journal's when none has its own)."""
        if policies is None:
            return self.store
        return self.store.with_retention(policies.for_tenants(tenants))  # type: ignore[attr-defined, no-any-return]

    def checkpoint_store(self) -> Store:
        """The store writing under the policy of checkpoints (the strongest in force): heads and cosignatures too."""
        policies = self._policies()
        return self._store_for(policies, policies.tenants if policies else ())

    def write_checkpoint(self, policies: PolicySet | None = None) -> None:
        """Sign and store the checkpoint over every manifest so far (idempotent), then a head naming it.

        A checkpoint vouches for every segment, so it is kept as long as the strongest policy; so is a head.
        """
        st = self.state
        if not st.size:
            return
        if policies is None:
            policies = self._policies()
        cp = Checkpoint(checkpoint_origin(st.journal_id, st.stream), st.size, merkle.frontier_root(st.frontier))
        name = layout.checkpoint(st.stream, cp.tree_size)
        store = self._store_for(policies, policies.tenants if policies else ())
        try:
            # the newest key: it may sign any checkpoint
            store.put(name, cp.sign(self._key_for(st.size)))
        except ConflictError:
            # Stored before, maybe under a key since rotated: the same checkpoint is fine, any other is not.
            stored = open_checkpoint(self.store.get(name), name, journal_id=st.journal_id, stream=st.stream,
                                     ring=self._ring(), sink=Sink(collect=False))
            if stored != cp:
                raise IntegrityError(f"{name} exists and commits to other manifests") from None
        self._checkpoint_size = cp.tree_size
        # The head after the checkpoint it names (FORMAT.md 8a), kept as long as the checkpoint. The seal is done
        # whatever becomes of it: a head that cannot be written now is written after the next seal.
        try:
            self.head = self._heads.publish(StreamTip(st.stream, cp.tree_size, cp.root_hash), self._key_for(st.size),
                                            store)
        except (StorageError, IntegrityError) as e:
            log.error("stream %s: no journal head names checkpoint %d yet: %s", st.stream, cp.tree_size, e)
