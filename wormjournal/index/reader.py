"""Reading a journal back: lookups through the index, every event verified before it is returned.

A :class:`Reader` needs read access to the store and, for events not sealed yet,
the writer's WAL directory. Sealed events are authenticated against their
segment's signed manifest (event hash, Merkle subtree, signature); unsealed ones
against the chain that continues the last sealed event. One execution's events
are also checked as a whole: each links to the previous one of the execution
(``exec_prev_seq``), so a missing, duplicated, reordered or injected event raises
:class:`~wormjournal.errors.IntegrityError` naming its seq.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import ConfigError, IndexDamaged, IntegrityError, NotFoundError, ValidationError
from ..events import StoredEvent, datetime_to_micros, genesis_hash, micros_to_datetime
from ..payload import KeySource
from ..segments.identity import JournalIdentity
from ..segments.keyhistory import HISTORY_PREFIX
from ..segments.manifest import Checkpoint, Manifest
from ..segments.notes import VerifyKey
from ..segments.pages import DEFAULT_GAP
from ..segments.table import in_seq_order, table_to_events
from ..storage import layout, open_store
from ..storage.base import ObjectInfo, ObjectReader, Store, get_ranges, tail_by_head
from ..storage.wal import PAYLOADS_DIR, WalFollower, WalMac, durable_limit, list_wal_files, read_durable
from ..trust import (
    KeyRing,
    ManifestChain,
    Sink,
    Trust,
    chain_from_checkpoint,
    check_checkpoint_root,
    check_committed_length,
    check_names,
    continue_chain,
    load_trust,
    open_checkpoint,
    open_manifest,
)
from ..trust.heads import check_tip, open_head
from ..trust.partial import SegmentFile, read_many
from ..trust.receipts import RECEIPT_TYPE, open_receipt
from . import build, lgformat, lgstate, state
from .catalog import Catalog, IndexFile, IndexObject
from .follow import EVERY_EVENT, EventFilter, Follower, Tail
from .lgstate import StateAt
from .model import Event, ExecutionSummary, ResumePoint

log = logging.getLogger(__name__)
T = TypeVar("T")
_SCANNED_CACHE = 64  # segments without an index object, their key columns decoded (a MB or so each)
_CLAIMS_KIND = "executions"  # whose runs' manifest hashes a fresh reader takes (every kind's runs carry them)
_MANIFEST_CACHE = 4096  # manifests read when needed, kept per reader
_GAP_SECONDS = 5.0  # how often a caught-up follower looks past the next manifest (Reader._check_next_manifest)


class CountingReader:
    """An ObjectReader that counts the bytes it fetches (for benchmarks and reports)."""

    def __init__(self, store: ObjectReader) -> None:
        self._store = store
        self.url = getattr(store, "url", repr(store))
        self.bytes_read = 0
        self.requests = 0  # GETs (whole or ranged), HEADs and LISTs
        self.lists = 0

    def get(self, name: str) -> bytes:
        data = self._store.get(name)
        self.bytes_read += len(data)
        self.requests += 1
        return data

    def get_range(self, name: str, start: int, length: int) -> bytes:
        data = self._store.get_range(name, start, length)
        self.bytes_read += len(data)
        self.requests += 1
        return data

    def get_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        data = get_ranges(self._store, name, ranges)
        self.bytes_read += sum(map(len, data))
        self.requests += len(ranges)
        return data

    def get_tail(self, name: str, length: int) -> tuple[bytes, int]:
        tail = getattr(self._store, "get_tail", None)
        if tail is None:
            return tail_by_head(self, name, length)  # each request counted here
        data, size = tail(name, length)
        self.bytes_read += len(data)
        self.requests += 1
        return data, size

    @property
    def range_gap(self) -> int:
        return int(getattr(self._store, "range_gap", DEFAULT_GAP))

    def head(self, name: str) -> ObjectInfo | None:
        self.requests += 1
        return self._store.head(name)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self.requests += 1  # the first page of keys; a long listing takes more
        self.lists += 1
        return self._store.list(prefix)


def _snapshot(method: Callable[..., T]) -> Callable[..., T]:
    """Run a read on one snapshot of the stream (see ``Reader._take_snapshot``): the write-ahead log read
    first, then the manifests listed, so that a seal running meanwhile leaves no gap between the two. Reads
    nested in it use the same snapshot. Should the read still fail while the store grew under it, it runs
    once more on a new snapshot: a broken promise that is still there fails again."""

    @functools.wraps(method)
    def read(self: Reader, *args: Any, **kwargs: Any) -> T:
        if self._snap is not None:
            return method(self, *args, **kwargs)
        for attempt in (1, 2):
            size = self._take_snapshot()
            try:
                return method(self, *args, **kwargs)
            except IntegrityError:
                self._snap = None
                if attempt == 2 or self.refresh() == size:
                    raise
            finally:
                self._snap = None
        raise AssertionError("unreachable")

    return read


class Reader:
    """Read one stream of a journal. Every method that returns events verifies them.

    ``store`` is a Store, a directory path or an ``s3://bucket/prefix`` URL. ``public_keys`` are the
    trusted signing keys; with None, entry 0 of the journal's key history is trusted on its own
    signature (fine for the deployment itself; an auditor passes their own). ``wal_dir`` is the
    writer's WAL directory, for events not sealed yet, read with ``wal_key`` (the writer's, from its
    key directory: ``Journal.reader()`` passes both); ``keystore`` decrypts encrypted payloads
    (without it they read as the ``encrypted`` marker). The stream's newest checkpoint and every
    manifest a read needs go through the trust core first (FORMAT.md 10, "Readers").
    Raises NotFoundError when there is no journal, IntegrityError (its ``kind`` as ``wormjournal
    verify`` names the finding) on any broken promise, ConfigError for a WAL without its key.
    Each read sees one snapshot of the stream, however seals run meanwhile. A Reader caches what it
    checked and is not thread-safe: give each thread its own. ``cache_segments``: segments kept open (their
    page layouts, up to about 100 KB each in a store of executions spread over many segments, far less
    otherwise), so that lookups across them read only pages.
    """

    def __init__(self, store: str | os.PathLike[str] | Store | ObjectReader, *, stream: str = "main",
                 public_keys: Sequence[VerifyKey] | None = None, wal_dir: str | os.PathLike[str] | None = None,
                 wal_key: bytes | None = None,
                 cache_segments: int = 1024, keystore: KeySource | None = None) -> None:
        if not layout.is_valid_stream(stream):
            raise ValidationError("stream", f"{stream!r} is not a stream name (FORMAT.md 9: letters, digits, . _ -)")
        base = open_store(store) if isinstance(store, (str, os.PathLike)) else store
        self.store = CountingReader(base)
        self.stream = stream
        # The key ring, the newest checkpoint and the manifests a read needs go through the trust core, raising
        # at the first broken promise: what `wormjournal verify` would report about them, a read refuses.
        self._public_keys = public_keys
        self._sink = Sink(collect=False)
        self._load_trust()
        self._wal_root = Path(wal_dir) if wal_dir is not None else None
        self._wal_key = wal_key
        self._keystore = keystore
        self._wal_dir = self._wal_root / f"stream={stream}" if self._wal_root is not None else None
        if self._wal_dir is not None and wal_key is None:
            raise ConfigError("reading unsealed events needs the writer's WAL key (wal_key=, from its key directory: "
                              "wormjournal.journal.keys.load_wal_key), which authenticates them")
        self._wal_mac = WalMac(wal_key, self.identity.journal_id, stream) if wal_key is not None else None
        self._data_key = keystore.data_key if keystore is not None else None
        self._chain = ManifestChain(self.identity.journal_id, stream, self._sink)
        self._checkpoints: dict[str, tuple[Checkpoint, bytes]] = {}  # checked, by name (in name order)
        self._manifests: OrderedDict[int, Manifest] = OrderedDict()  # read when needed, checked by hash
        self._files: OrderedDict[int, SegmentFile] = OrderedDict()
        self._scanned: OrderedDict[int, dict[str, pa.Table]] = OrderedDict()
        self._cache_segments = cache_segments
        self._segment_count = 0
        self._listed = False  # listed once; then a read checks for what a seal adds (_grew), not by listing
        self._gap_checked = -_GAP_SECONDS  # when a follower last looked past the next manifest
        self._followers: dict[str, WalFollower] = {}  # the WAL files, each read once and followed
        self._snap: list[StoredEvent] | None = None  # the unsealed events of the read in progress (a snapshot)
        self._snap_count = -1  # the sealed segments of the last snapshot
        # The last snapshot's chain check: the sealed head, each WAL file's events list and its length, the events
        # that continue the chain and how many events were checked (Reader._chained).
        self._chain_memo: tuple[tuple[int, bytes], list[tuple[list[StoredEvent], int]],
                                list[StoredEvent]] | None = None
        # The snapshot's unsealed events by thread and by execution (kept with the memo: a thread's or an
        # execution's unsealed events cost what they are, not a walk of every unsealed event).
        self._snap_threads: dict[str, list[StoredEvent]] = {}
        self._snap_executions: dict[str, list[StoredEvent]] = {}
        self.catalog = Catalog(self.store, self.identity.journal_id, stream,
                               lambda kind, first, last: self.manifest(last).index_root(kind, first),
                               self._scan_segment)

    def for_stream(self, stream: str) -> Reader:
        """A Reader of another stream of the same journal, with this one's store, keys, WAL directory and key store
        (the store and its request counts shared)."""
        return Reader(self.store, stream=stream, public_keys=self._public_keys, wal_dir=self._wal_root,
                      wal_key=self._wal_key, cache_segments=self._cache_segments, keystore=self._keystore)

    @property
    def reads_wal(self) -> bool:
        """Whether unsealed events are read too (a WAL directory and its key were given)."""
        return self._wal_dir is not None

    @property
    def wal_root(self) -> Path | None:
        """The writer's WAL directory this reader reads unsealed events from (its ``stream=<name>/`` holds them)."""
        return self._wal_root

    def streams(self) -> list[str]:
        """Every stream of the journal: those with sealed segments in the store (one listing of the manifests) and
        those with a directory in the WAL directory (a stream is there from its first append on)."""
        found = set(layout.streams_from_names([info.name for info in self.store.list(layout.MANIFESTS_PREFIX)]))
        if self._wal_root is not None and self._wal_root.is_dir():
            with os.scandir(self._wal_root) as entries:
                found.update(stream for entry in entries if (stream := entry.name.removeprefix("stream=")) != entry.name
                             and layout.is_valid_stream(stream) and entry.is_dir())
        return sorted(found | {self.stream})

    def _load_trust(self) -> None:
        """journal.json and the key history, checked (again after a rotation)."""
        trust = load_trust(self.store, self._public_keys)
        self._history_names = list(trust.history_names)
        for kind, problem in trust.ring.all_problems():
            self._sink(kind, problem)
        if hasattr(self, "identity") and trust.journal_id != self.identity.journal_id:
            self._sink("identity", "journal.json now names another journal")
        self._trust: Trust = trust
        self.identity: JournalIdentity = trust.identity
        self._keys: list[VerifyKey] = trust.keys()
        if not self._keys:
            raise IntegrityError("no trusted public key to verify with")

    @property
    def key_ring(self) -> KeyRing:
        """The journal's key history as the trust core accepted it."""
        return self._trust.ring

    def latest_checkpoint(self) -> tuple[Checkpoint, bytes]:
        """The stream's newest checkpoint (checked) and its note. Raises NotFoundError when there is none."""
        self.refresh()
        if not self._checkpoints:
            raise NotFoundError(f"stream {self.stream} has no checkpoint yet (seal first)")
        return self._checkpoints[max(self._checkpoints)]

    @property
    def trusted_keys(self) -> list[VerifyKey]:
        """The public keys signatures are checked against."""
        return list(self._keys)

    @property
    def bytes_read(self) -> int:
        """Bytes fetched from the store so far."""
        return self.store.bytes_read

    # -- sealed segments ---------------------------------------------------------------

    def refresh(self) -> int:
        """The number of sealed segments now, the manifests and checkpoint it reads checked by the trust core.
        Raises IntegrityError. Inside a read, the snapshot's number.

        The first time, the chain comes from the newest checkpoint and the manifest hashes the index runs
        of its cover claim (FORMAT.md 11a, "Manifest hashes"): a few objects, however many segments there
        are; each manifest is read when a read needs it, and must have its hash. Where the store does not
        allow it (no checkpoint yet, an index without the claims, claims that do not make the root), every
        manifest and checkpoint is walked instead (FORMAT.md 10, "Readers"). After that, a read looks for
        what seals added with one request (:meth:`_grew`) and reads the new manifests only."""
        if self._snap is not None:
            return self._segment_count  # the read in progress keeps its snapshot
        if not self._listed:
            heads = [info.name for info in self.store.list(layout.HEADS_PREFIX)]  # before the checkpoints they name
            if not self._open_by_checkpoint():
                self._walk()
            self._check_newest_head(heads)
        elif self._grew():
            self._follow()
        # No checkpoint yet, or one behind the manifests: a seal in progress (or a writer that died before its
        # checkpoint, which it writes on reopen). Its manifests are signed and linked: they are read like the rest.
        self._segment_count = self._chain.size
        self._listed = True
        return self._segment_count

    def _check_newest_head(self, names: list[str]) -> None:
        """Step 12 as a reader runs it (FORMAT.md 10, "Readers"): the newest head, verified, names no more of this
        stream than the store holds, nor other segments. No head, or none naming the stream yet, is a seal in
        progress to a reader (a journal's first head follows its first checkpoint)."""
        numbered = [(n, name) for name in names if (n := layout.parse_head(name)) is not None]
        if not numbered:
            return
        n, name = max(numbered)
        head = open_head(self.store.get(name), name, n, journal_id=self.identity.journal_id, ring=self._trust.ring,
                         sink=self._sink)
        tip = head.tips().get(self.stream) if head is not None else None
        if tip is not None:
            check_tip(tip, self._chain, f"head {n}", self._sink)

    def _walk(self) -> None:
        """Every manifest and checkpoint of the stream, listed and checked in order (steps 1 to 3, 9 and 10)."""
        self._chain = ManifestChain(self.identity.journal_id, self.stream, self._sink)
        self._checkpoints = {}
        # Checkpoints are listed before manifests: a seal stores a checkpoint after its manifests,
        # so every checkpoint listed here covers manifests that the listing below will show.
        checkpoints = [info.name for info in self.store.list(layout.checkpoints_prefix(self.stream))]
        manifests = [info.name for info in self.store.list(layout.manifests_prefix(self.stream))]
        check_names(checkpoints + manifests, self._sink)
        # The key history is listed after the notes: a rotation stores its entry before any note its new key
        # signs, so every note listed above is signed by a key read here.
        self._reload_history()
        for name in manifests:  # numbered 0.. without gaps, or the chain raises
            self._chain.open(name, self.store.get(name), self._trust.ring)
        for name in checkpoints:  # steps 9 and 10, as verify runs them
            self._check_checkpoint(name, self.store.get(name))
        check_committed_length(self._chain, self._trust.ring)

    def _reload_history(self) -> None:
        if [o.name for o in self.store.list(HISTORY_PREFIX)] != self._history_names:
            self._load_trust()

    def _check_checkpoint(self, name: str, note: bytes) -> None:
        cp = open_checkpoint(note, name, journal_id=self.identity.journal_id, stream=self.stream,
                             ring=self._trust.ring, sink=self._sink)
        assert cp is not None  # the sink raised otherwise
        check_checkpoint_root(cp, name, self._chain)
        self._checkpoints[name] = (cp, note)

    def _open_by_checkpoint(self) -> bool:
        """The chain over the newest checkpoint's segments from the manifest hashes the index runs of its cover
        claim (FORMAT.md 11a), checked against the checkpoint's root: the checkpoint, and per object of the cover
        the manifest of its last segment and the object's footer. False when the store does not allow it."""
        names = [info.name for info in self.store.list(layout.checkpoints_prefix(self.stream))]
        check_names(names, self._sink)
        sized = [(p[2], name) for name in names if (p := layout.parse_numbered(name)) and p[0] == "checkpoints"]
        if not sized:
            return False
        size, name = max(sized)
        note = self.store.get(name)
        cp = open_checkpoint(note, name, journal_id=self.identity.journal_id, stream=self.stream,
                             ring=self._trust.ring, sink=self._sink)
        assert cp is not None  # the sink raised otherwise
        hashes: list[bytes] = []
        opened: dict[int, Manifest] = {}
        files: list[IndexFile] = []

        def claim(first: int, last: int) -> bool:
            """Append the hashes of segments first..last: the run's claim, then its last manifest's own hash."""
            m = opened.get(last)
            if m is None:
                try:
                    data = self.store.get(layout.manifest(self.stream, last))
                except NotFoundError:
                    return False  # removed? the walk says
                m = open_manifest(data, layout.manifest(self.stream, last), last, journal_id=self.identity.journal_id,
                                  stream=self.stream, ring=self._trust.ring, sink=self._sink)
                assert m is not None  # the sink raised otherwise
                opened[last] = m
            if first < last:
                root = m.index_root(_CLAIMS_KIND, first)
                f: IndexFile | None = None
                if root is not None:
                    obj = IndexObject(layout.index_object(self.stream, _CLAIMS_KIND, first, last), first, last)
                    try:
                        f = IndexFile(self.store, obj, _CLAIMS_KIND, root, self.identity.journal_id, self.stream)
                    except IndexDamaged:
                        f = None
                if f is None or f.manifests is None:  # what it merged claims the same
                    return all(claim(a, b) for a, b in build.run_inputs(first, last))
                files.append(f)
                hashes.extend(f.manifests)
            hashes.append(m.manifest_hash())
            return True

        if not all(claim(first, last) for first, last in build.cover(size)):
            return False
        chain = chain_from_checkpoint(cp, hashes, opened[size - 1], journal_id=self.identity.journal_id,
                                      stream=self.stream, sink=self._sink)
        if chain is None:
            return False
        self._chain, self._checkpoints = chain, {name: (cp, note)}
        for n, m in opened.items():
            self._keep(n, m)
        for f in files:
            self.catalog.adopt(f)
        self._follow()  # manifests after it: a seal in progress
        return True

    def _follow(self) -> None:
        """What seals added: the next manifests, each linked to the chain (steps 1 to 3), until one is missing;
        then the checkpoint over all of them, if it is stored yet (step 9)."""
        new = False
        while True:
            name = layout.manifest(self.stream, self._chain.size)
            try:
                data = self.store.get(name)
            except NotFoundError:
                break
            if not new:
                self._reload_history()  # a new key's history entry is stored before the first note it signs
                new = True
            self._chain.open(name, data, self._trust.ring)
        name = layout.checkpoint(self.stream, self._chain.size)
        if self._chain.size and name not in self._checkpoints:
            try:
                note = self.store.get(name)
            except NotFoundError:
                note = None  # a seal in progress
            if note is not None:
                self._check_checkpoint(name, note)
        check_committed_length(self._chain, self._trust.ring)

    def _keep(self, n: int, m: Manifest) -> None:
        self._manifests[n] = m
        self._manifests.move_to_end(n)
        if len(self._manifests) > _MANIFEST_CACHE:
            self._manifests.popitem(last=False)

    def manifest_hashes(self) -> list[bytes]:
        """The manifest hashes of the stream's segments, 0 .. refresh() - 1."""
        self.refresh()
        return list(self._chain.hashes)

    def _grew(self) -> bool:
        """Whether the stream may have changed since it was listed, for one request: the next manifest, or
        the checkpoint of the manifests known when none covered them yet (a seal stores its manifests, then
        its checkpoint; write-once objects do not change once listed). Reads stay O(what they return) with
        no LIST; a removal after the listing is not seen here (``wormjournal verify`` reports it), and every
        row read is still checked against the manifests read then."""
        n = self._chain.size
        if self.store.head(layout.manifest(self.stream, n)) is not None:
            return True
        covered = max((cp.tree_size for cp, _ in self._checkpoints.values()), default=0)
        return covered < n and self.store.head(layout.checkpoint(self.stream, n)) is not None

    def manifest(self, n: int) -> Manifest:
        """Segment ``n``'s manifest, checked by the trust core: linked to the one before it, or read when first
        needed and checked against the hash the checkpoint commits to."""
        if n >= self._chain.size:
            self.refresh()
        m = self._chain.manifests.get(n) or self._manifests.get(n)
        if m is not None:
            return m
        if not 0 <= n < self._chain.size:
            raise IntegrityError(f"stream {self.stream} has no segment {n}")
        name = layout.manifest(self.stream, n)
        try:
            data = self.store.get(name)
        except NotFoundError:
            self._sink("manifest_missing", f"segment {n}'s manifest is missing (removed?)", stream=self.stream,
                       segment=n, object=name)
            raise  # the sink raised already
        m = open_manifest(data, name, n, journal_id=self.identity.journal_id, stream=self.stream,
                          ring=self._trust.ring, sink=self._sink)
        assert m is not None  # the sink raised otherwise
        self._chain.check_hash(m, name)
        self._keep(n, m)
        return m

    def _segment_file(self, n: int) -> SegmentFile:
        f = self._files.get(n)
        if f is None:
            f = self._files[n] = SegmentFile(self.store, self.manifest(n), self.identity.journal_id)
            if len(self._files) > self._cache_segments:
                self._files.popitem(last=False)
        else:
            self._files.move_to_end(n)
        return f

    def _scan_segment(self, n: int) -> dict[str, pa.Table]:
        """The index tables of a segment computed from its key columns (no index object for it)."""
        tables = self._scanned.get(n)
        if tables is None:
            m = self.manifest(n)
            try:
                data = self.store.get(m.object)
            except NotFoundError as e:
                raise IntegrityError(f"segment {n} ({m.object}) is missing") from e
            if hashlib.sha256(data).digest() != m.object_sha256:
                raise IntegrityError(f"segment {n} ({m.object}) is not the object its manifest signs "
                                     "(its bytes were changed)")
            table = pq.read_table(pa.BufferReader(data), columns=build.KEY_COLUMNS)
            tables = self._scanned[n] = build.segment_tables(table, n)
            if len(self._scanned) > min(self._cache_segments, _SCANNED_CACHE):
                self._scanned.popitem(last=False)
        return tables

    def _read(self, segment: int, row: int, rows: int) -> list[StoredEvent]:
        """Authenticated rows of a segment, in seq order."""
        return table_to_events(self._segment_file(segment).read_rows(row, rows))

    def _read_many(self, spans: Sequence[tuple[int, int, int]]) -> list[list[StoredEvent] | IntegrityError]:
        """Authenticated rows (segment, first row, rows) of several segments, each in seq order, or the
        IntegrityError that refuses them: their pages decoded and hashed together."""
        table, reads = read_many([(self._segment_file(n), start, count) for n, start, count in spans])
        # in storage order: one execution's rows of a segment are in seq order already
        events = iter(table_to_events(table, sort=False))
        return [r if isinstance(r, IntegrityError) else [next(events) for _ in range(r)] for r in reads]

    # -- unsealed events -------------------------------------------------------------------

    def _take_snapshot(self) -> int:
        """Fix the view of a read: the WAL's events first, then the sealed segments (listed after them), then the
        unsealed events after the sealed chain's head. A seal stores its manifests before it deletes the WAL
        files it sealed, so every event missing from the WAL read is in a manifest listed after it: the two
        overlap (the overlap is passed over) and never leave a gap. Returns the number of sealed segments."""
        self._snap = None
        parts: list[tuple[list[StoredEvent], int]] = []  # each file's events, as its follower holds them; how many
        # of them are durable
        if self._wal_dir is not None and self._wal_dir.is_dir():
            assert self._wal_mac is not None
            followers = {}
            durable = read_durable(self._wal_dir)  # before the files: no more than was durable then
            for path in list_wal_files(self._wal_dir):
                follower = self._followers.get(path.name) or WalFollower(path, self._wal_mac)
                try:
                    read = follower.follow()  # each frame authenticated by the WAL key, read once: a file's new ones
                except FileNotFoundError:
                    continue  # sealed and removed meanwhile: those events are in manifests listed below
                # those the writer says are durable are handed over (an event once its append can return)
                parts.append((read, follower.durable(durable_limit(durable, int(path.stem)))))
                followers[path.name] = follower
            self._followers = followers  # files sealed and removed are forgotten
        n = self.refresh()
        last = self.manifest(n - 1) if n else None
        seq = last.last_seq + 1 if last else 0
        prev = last.last_hash if last else genesis_hash(self.identity.journal_id, self.stream)
        self._snap = self._chained(parts, seq, prev)
        self._snap_count = n
        return n

    def snapshot_end(self) -> int | None:
        """The seq the last read's snapshot ends at (every event below it was in it), or None when there is none
        to read again (:meth:`thread_events_again`)."""
        memo = self._chain_memo
        if memo is None or self._snap_count != self._segment_count:
            return None  # none yet, or the sealed segments were counted again since (refresh outside a read)
        return memo[2][-1].seq + 1 if memo[2] else memo[0][0]

    def thread_events_again(self, thread_id: str) -> tuple[list[Event], int] | None:
        """:meth:`thread_events_from` seq 0 on the last read's snapshot, with nothing read again and no request:
        for a caller that knows nothing of the thread was appended at or after :meth:`snapshot_end` (its writer:
        ``Journal.appended_since``). None when there is no snapshot to read again."""
        if self._snap is not None or self.snapshot_end() is None:
            return None
        assert self._chain_memo is not None
        self._snap = self._chain_memo[2]  # checked when it was taken, as its by-thread index (_snap_threads)
        try:
            return self.thread_events_from(thread_id, 0)
        finally:
            self._snap = None

    def _chained(self, parts: list[tuple[list[StoredEvent], int]], seq: int, prev: bytes) -> list[StoredEvent]:
        """The snapshot's unsealed events: continue_chain of the durable ones of each WAL file (its events list and how
        many of them are durable, in order) onto the sealed head (seq, prev), checking only those read since the
        last snapshot when the sealed head and every file's events before them are as they were (followers append to
        the lists they hold; a file read again is a new list): O(new events), not O(unsealed events), per read; the
        list of the last snapshot grows in place. The events after them, not durable yet (or never to be: planted),
        must continue them too, but are not handed over."""
        memo = self._chain_memo
        if memo is not None and memo[0] == (seq, prev) and len(parts) >= len(memo[1]) and all(
                parts[i][0] is lst and (parts[i][1] == count or (i == len(memo[1]) - 1 and parts[i][1] > count))
                for i, (lst, count) in enumerate(memo[1])):
            out = memo[2]
            new = parts[len(memo[1]) - 1][0][memo[1][-1][1] : parts[len(memo[1]) - 1][1]] if memo[1] else []
            for lst, count in parts[len(memo[1]):]:
                new += lst[:count]
            head = (out[-1].seq + 1, out[-1].hash) if out else (seq, prev)
            added = continue_chain(new, *head, sink=self._sink, continuing=bool(out))
            out += added  # in place: the snapshots a read took before are done with
        else:
            events = [e for lst, count in parts for e in lst[:count]]
            out = added = continue_chain(events, seq, prev, sink=self._sink)  # linked to the sealed chain's head
            self._snap_threads, self._snap_executions = {}, {}
        pending = [e for lst, count in parts for e in lst[count:]]
        if pending:
            head = (out[-1].seq + 1, out[-1].hash) if out else (seq, prev)
            continue_chain(pending, *head, sink=self._sink, continuing=bool(out))
        for e in added:
            if e.thread_id is not None:
                self._snap_threads.setdefault(e.thread_id, []).append(e)
            self._snap_executions.setdefault(e.execution_id, []).append(e)
        self._chain_memo = ((seq, prev), [(lst, count) for lst, count in parts], out)
        return out

    def _unsealed(self) -> list[StoredEvent]:
        """The unsealed events of the read in progress ([] without a WAL dir)."""
        if self._snap is None:
            raise RuntimeError("Reader._unsealed outside a read's snapshot")
        return self._snap

    def _unsealed_of(self, *, thread_id: str | None = None, execution_id: str | None = None) -> list[StoredEvent]:
        """The unsealed events of the read in progress of one thread or one execution, in seq order."""
        if self._snap is None:
            raise RuntimeError("Reader._unsealed_of outside a read's snapshot")
        if thread_id is not None:
            return self._snap_threads.get(thread_id, [])
        return self._snap_executions.get(execution_id or "", [])

    def _payload_object(self, digest: str) -> bytes:
        """The bytes of a payload stored apart (FORMAT.md 3.5): in the WAL directory while its event is unsealed,
        then in the store. Raises IntegrityError when neither holds it."""
        if self._wal_dir is not None:
            try:
                return (self._wal_dir / PAYLOADS_DIR / digest).read_bytes()
            except FileNotFoundError:
                pass  # sealed meanwhile: in the store
        try:
            return self.store.get(layout.payload(self.stream, digest))
        except NotFoundError as e:
            raise IntegrityError(f"the payload object {digest} of stream {self.stream} is missing") from e

    def _event(self, e: StoredEvent, segment: int | None) -> Event:
        event = Event.from_stored(e, stream=self.stream, segment=segment, journal_id=self.identity.journal_id,
                                  data_key=self._data_key, fetch=self._payload_object)
        if e.event_type == RECEIPT_TYPE:  # its signed note is checked as verify checks it (FORMAT.md 3.2, 6.1)
            position = segment if segment is not None else self._chain.size  # unsealed: sealed no earlier
            try:
                _, signer = open_receipt(event.payload, self._keys)
            except IntegrityError as err:
                self._sink("erasure_receipt", str(err), stream=self.stream, segment=segment, seq=e.seq)
                raise  # the sink raised already; for the type checker
            time = self.manifest(segment).time if segment is not None else None  # a format 1 rotation's rule
            problem = self._trust.ring.receipt_signer_problem(signer, self.stream, position, time)
            if problem is not None:
                self._sink("erasure_receipt", f"an erasure receipt is signed out of its key's validity: {problem}",
                           stream=self.stream, segment=segment, seq=e.seq)
        return event

    # -- one execution ------------------------------------------------------------------------

    def _lookup(self, kind: str, value: Any = None) -> tuple[pa.Table, list[IndexDamaged]]:
        """Authenticated index rows for ``value`` (every row with None), and the damaged index
        objects that had to be read around to get them."""
        damaged: list[IndexDamaged] = []
        while True:
            try:
                return self.catalog.lookup(kind, self._segment_count, value), damaged
            except IndexDamaged as e:  # left out from now on: the next try reads around it
                damaged.append(e)

    def _execution_rows(self, execution_id: str) -> pa.Table:
        return _by_segment(self._lookup("executions", execution_id)[0])

    @_snapshot
    def _execution_events(self, execution_id: str, upto: int | None = None) -> list[Event]:
        """Every event of the execution (to ``upto``), verified one by one and as a whole.

        A damaged index object is read around; if what it says would have changed this
        execution's history, the read raises IntegrityError naming the first seq it gets wrong.
        """
        self.refresh()
        table, damaged = self._lookup("executions", execution_id)
        events = self._events_from(execution_id, _entries(table), upto)
        if damaged or self.catalog.damaged:  # met now or by an earlier read: the answer must not depend on which
            self._check_claims(execution_id, upto, events)
        return events

    def _check_claims(self, execution_id: str, upto: int | None, events: list[Event]) -> None:
        names = ", ".join(sorted(self.catalog.damaged))
        try:
            claims = self.catalog.claims("executions", self._segment_count, execution_id)
            claimed = [e.seq for e in self._events_from(execution_id, _entries(claims), upto,
                                                         neighbours=True)]
        except IntegrityError as e:
            raise IntegrityError(f"index object {names} does not match its signed root, and would mislead this "
                                 f"read: {e}", seq=e.seq) from e
        except Exception:  # a damaged object pyarrow cannot even read as a table misleads no one
            return
        diff = sorted(set(claimed) ^ {e.seq for e in events})
        if diff:
            raise IntegrityError(
                f"execution {execution_id!r}: index object {names} does not match its signed root, and "
                f"{'leaves out' if diff[0] not in claimed else 'adds'} seq {diff[0]}",
                seq=diff[0],
            )

    def _events_from(self, execution_id: str, entries: list[dict[str, Any]], upto: int | None, *,
                     neighbours: bool = False) -> list[Event]:
        """The execution's events from its index entries (plus the unsealed ones), each checked."""
        return self._events_of({execution_id: entries}, upto, neighbours=neighbours)[execution_id]

    def _events_of(self, executions: dict[str, list[dict[str, Any]]], upto: int | None, *,
                   neighbours: bool = False) -> dict[str, list[Event]]:
        """The events of each execution from its index entries (plus the unsealed ones), each checked: the
        rows of all of them read together (one plan of pages, one decode)."""
        # A row left out at either end of a run in a segment is seen by the links: the first event returned
        # after it links to it (exec_prev_seq). Only the execution's very last event has no event after it:
        # the row after the last run is read too, and must belong to another execution. With ``neighbours``
        # (what an index that fails its root claims), the rows on both sides of every run are read, so that
        # the event it leaves out is named, not the one whose link breaks.
        spans = []
        wanted: dict[str, list[dict[str, Any]]] = {}
        for execution_id, entries in executions.items():
            if upto is not None:
                entries = [entry for entry in entries if entry["first_seq"] <= upto]
            wanted[execution_id] = entries
            for k, entry in enumerate(entries):
                start = max(entry["row"] - 1, 0) if neighbours else entry["row"]
                after = int(neighbours or k == len(entries) - 1)
                stop = min(entry["row"] + entry["rows"] + after, self.manifest(entry["segment"]).events)
                spans.append((entry["segment"], start, stop - start))
        reads = iter(self._read_many(spans))
        result = {}
        for execution_id, entries in wanted.items():
            out: list[Event] = []
            claimed_last = None
            for entry in entries:
                read = next(reads)
                if isinstance(read, IntegrityError):
                    if read.seq is not None:
                        raise read
                    # The damage is in the pages holding this execution's rows: name its first event there.
                    raise IntegrityError(str(read), seq=entry["first_seq"]) from read
                rows = read
                mine = [e for e in rows if e.execution_id == execution_id]
                if len(mine) != entry["rows"] or (
                        mine and (mine[0].seq, mine[-1].seq) != (entry["first_seq"], entry["last_seq"])):
                    # The authenticated rows show the truth: name the first event the index left out.
                    claimed = set(range(entry["first_seq"], entry["last_seq"] + 1))
                    injected = [e.seq for e in rows if e.seq in claimed and e.execution_id != execution_id]
                    extra = [e.seq for e in mine
                             if e.seq not in claimed or e.exec_prev_seq not in claimed | {entry["prev_seq"]}]
                    raise IntegrityError(
                        f"execution {execution_id!r}: the index entry for segment {entry['segment']} "
                        "does not match its rows",
                        seq=(injected or extra or [entry["first_seq"]])[0],
                    )
                out.extend(self._event(e, entry["segment"]) for e in mine)
                claimed_last = entry["last_seq"]
            tail = [e for e in self._unsealed_of(execution_id=execution_id) if upto is None or e.seq <= upto]
            out.extend(self._event(e, None) for e in tail)
            if tail:
                claimed_last = tail[-1].seq
            check_chain(execution_id, out)
            if upto is None and claimed_last is not None and out[-1].seq != claimed_last:
                raise IntegrityError(f"execution {execution_id!r}: its last event is seq {claimed_last}, "
                                     f"replay ended at {out[-1].seq}", seq=claimed_last)
            result[execution_id] = [e for e in out if upto is None or e.seq <= upto]
        return result

    def replay(self, execution_id: str, upto: int | None = None) -> Iterator[Event]:
        """The execution's events in seq order, up to ``upto`` (a seq) if given, each verified.

        Raises IntegrityError (with ``seq``) when an event is altered, missing,
        duplicated, reordered or injected, NotFoundError when there is no such execution.
        """
        events = self._execution_events(execution_id, upto)
        if not events and upto is None:
            raise NotFoundError(f"no execution {execution_id!r} in stream {self.stream}")
        yield from events

    def events(self, execution_id: str) -> list[Event]:
        """All events of an execution (a run, an agent request), in order; [] if none."""
        return self._execution_events(execution_id)

    def events_after(self, execution_id: str, after_seq: int) -> list[Event]:
        """The execution's events with seq > ``after_seq`` (incremental catch-up)."""
        return [e for e in self._execution_events(execution_id) if e.seq > after_seq]

    def latest_seq(self, execution_id: str) -> int | None:
        """The seq of the execution's last event, or None when it has none."""
        events = self._execution_events(execution_id)
        return events[-1].seq if events else None

    @_snapshot
    def execution_exists(self, execution_id: str) -> bool:
        self.refresh()
        if self._execution_rows(execution_id).num_rows:
            return True
        return bool(self._unsealed_of(execution_id=execution_id))

    @_snapshot
    def count_events(self, execution_id: str | None = None) -> int:
        """Events of one execution, or of the whole stream (sealed and not) with None."""
        if execution_id is not None:
            self.refresh()
            total: int = sum(self._execution_rows(execution_id).column("rows").to_pylist())
            return total + len(self._unsealed_of(execution_id=execution_id))
        n = self.refresh()
        sealed = self.manifest(n - 1).last_seq + 1 if n else 0
        return sealed + len(self._unsealed())

    def state_at(self, execution_or_thread: str, upto: int | None = None) -> dict[str, Any]:
        """The state of an execution or a LangGraph thread after seq ``upto`` (default: now): ``state(...).values``,
        LangGraph's own state for a LangGraph run whose checkpoints are in the journal, else the fold of the
        execution's ``state_updated`` and ``human_modified`` events. Raises as :meth:`state`."""
        return self.state(execution_or_thread, upto).values

    @_snapshot
    def state(self, execution_or_thread: str, upto: int | None = None, *, checkpoint_ns: str = "") -> StateAt:
        """The state after seq ``upto`` (a seq of the stream; default: the execution's last event, or now for a
        thread), and which way it was obtained (:class:`StateAt`, ``source``).

        ``execution_or_thread`` is an execution, or a LangGraph thread (its id as LangGraph gives it, or as the
        journal stores it). When the thread (an execution's own, for an execution: a LangGraph run recorded by
        ``RunRecorder``, or one whose events are the savers' checkpoints) has checkpoint events, the state is that
        of its latest checkpoint by ``upto`` in namespace ``checkpoint_ns``: what LangGraph had, its reducers
        applied, decoded as plain data without importing anything the stored bytes name; a checkpoint whose key
        was shredded reads as the shredded marker (``unreadable``). Otherwise it is the fold of the execution's
        verified events (``state.fold``, no reducers). Raises NotFoundError when there is neither an execution
        nor a LangGraph thread of that id (and no ``upto``), IntegrityError (with ``seq``) as :meth:`replay`
        does, or when a checkpoint event is not in the savers' format (FORMAT.md 3.4).
        """
        events = self._execution_events(execution_or_thread, upto)
        if events:
            checkpoints = [e for e in events if e.event_type == lgformat.CHECKPOINT_EVENT and e.thread_id]
            thread = next((e.thread_id for e in reversed(checkpoints or events) if e.thread_id), None)
            if thread is not None:
                found = self.thread_events(thread)
                if lgstate.is_langgraph_thread(found):
                    return lgstate.checkpoint_state(found, thread, events[-1].seq if upto is None else upto,
                                                    checkpoint_ns)
            return StateAt(state.fold(events), lgstate.SOURCE_FOLD, events[-1].seq if upto is None else upto)
        for thread in dict.fromkeys((execution_or_thread, lgformat.journal_id(execution_or_thread))):
            found = self.thread_events(thread)
            if lgstate.is_langgraph_thread(found):
                return lgstate.checkpoint_state(found, thread, upto, checkpoint_ns)
        if upto is None:
            raise NotFoundError(f"no execution or LangGraph thread {execution_or_thread!r} in stream {self.stream}")
        return StateAt({}, lgstate.SOURCE_FOLD, upto)

    def resume_point(self, execution_id: str) -> ResumePoint:
        """Where to pick the execution up after a crash (see :class:`ResumePoint`)."""
        return state.resume_point(execution_id, list(self.replay(execution_id)))

    # -- threads, tenants, ids ------------------------------------------------------------------

    @_snapshot
    def thread_events(self, thread_id: str) -> list[Event]:
        """Every event of a thread (a conversation) across its executions, in seq order."""
        self.refresh()
        rows, damaged = self._lookup("threads", thread_id)
        executions = set(rows.column("execution_id").to_pylist())
        executions |= {e.execution_id for e in self._unsealed_of(thread_id=thread_id)}
        entries = {}
        for x in sorted(executions):
            table, more = self._lookup("executions", x)
            entries[x] = _entries(table)
            damaged += more
        found = self._events_of(entries, None)  # every execution's pages read at once
        if damaged or self.catalog.damaged:  # as _execution_events: the answer must not depend on which
            for x, events in found.items():
                self._check_claims(x, None, events)
        return sorted((e for events in found.values() for e in events if e.thread_id == thread_id),
                      key=lambda e: e.seq)

    @_snapshot
    def thread_events_from(self, thread_id: str, from_seq: int) -> tuple[list[Event], int]:
        """The thread's events with a seq of ``from_seq`` or more, in seq order, and the seq the stream's snapshot
        ends at (every event of the thread below it is returned now or was at ``from_seq``): what a cache of the
        thread built from the events below ``from_seq`` applies to be whole again. When none of them was sealed
        yet it costs what they are (the write-ahead log's events of the thread); otherwise the thread is looked
        up through the index and its events from ``from_seq`` kept. Raises as :meth:`thread_events`."""
        # It returns the snapshot's end too (not None when some were sealed): a caller that re-read the thread
        # without it could not tell how far it got, and would re-read it whole after every seal of the stream.
        n = self.refresh()
        end = self.manifest(n - 1).last_seq + 1 if n else 0
        unsealed = self._unsealed()
        if unsealed:
            end = unsealed[-1].seq + 1
        if from_seq < (unsealed[0].seq if unsealed else end):
            return [e for e in self.thread_events(thread_id) if e.seq >= from_seq], end  # the same snapshot
        mine = self._unsealed_of(thread_id=thread_id)
        k = len(mine)
        while k and mine[k - 1].seq >= from_seq:
            k -= 1
        return [self._event(e, None) for e in mine[k:]], end

    @_snapshot
    def executions(self, tenant_id: str | None = None, *, limit: int | None = 100,
                   offset: int = 0) -> list[ExecutionSummary]:
        """Executions (of ``tenant_id`` if given), newest first by start time, paginated."""
        self.refresh()
        wanted = None if limit is None else offset + limit
        rows = None if tenant_id is None else self._newest_of_tenant(tenant_id, wanted)
        if rows is None:  # every execution, or a tenant some segment has no tenants object for: all the rows
            table = self._lookup("executions")[0]
            if tenant_id is not None:
                table = table.filter(pc.equal(table.column("tenant_id"), tenant_id))
            rows = [dict(r, started=r["first_ts"]) for r in table.to_pylist()]
        found: dict[str, dict[str, Any]] = {}
        for r in sorted(rows, key=lambda r: r["segment"]):
            _merge(found, r["execution_id"], r["tenant_id"], r["thread_id"], r["first_seq"], r["last_seq"], r["rows"],
                   r["started"].astimezone(dt.UTC), r["last_ts"].astimezone(dt.UTC), r["last_event_type"])
        for e in self._unsealed():
            if tenant_id is None or e.tenant_id == tenant_id:
                ts = micros_to_datetime(e.ts)
                _merge(found, e.execution_id, e.tenant_id, e.thread_id, e.seq, e.seq, 1, ts, ts, e.event_type)
        summaries = [ExecutionSummary(execution_id=x, stream=self.stream, **v) for x, v in found.items()]
        summaries.sort(key=lambda s: (s.started, s.first_seq), reverse=True)
        return summaries[offset : None if limit is None else offset + limit]

    def _newest_of_tenant(self, tenant_id: str, count: int | None) -> list[dict[str, Any]] | None:
        """The tenants rows of the ``count`` sealed executions of the tenant that started last (all with None):
        the first rows of the tenant in each index object (FORMAT.md 11a); None where the index lacks them."""
        while True:
            try:
                return self.catalog.first_rows("tenants", self._segment_count, tenant_id, _newest_first, count,
                                               "execution_id")
            except IndexDamaged:  # left out from now on: the next try reads what it merged
                continue

    def segments_of(self, *, execution_id: str | None = None, tenant_id: str | None = None) -> list[int]:
        """The sealed segments holding events of ``execution_id`` or of ``tenant_id`` (index rows, authenticated)."""
        self.refresh()
        table = self._lookup("executions", execution_id)[0]
        if tenant_id is not None:
            table = table.filter(pc.equal(table.column("tenant_id"), tenant_id))
        return sorted(set(table.column("segment").to_pylist()))

    @_snapshot
    def get_event(self, event_id: str) -> Event | None:
        """The event with this id (verified), or None."""
        self.refresh()
        hits = self._lookup("events", event_id)[0].to_pylist()  # the rows of its fingerprint: of it, or of others
        reads = self._read_many([(hit["segment"], hit["row"], 1) for hit in hits])
        for hit, read in zip(hits, reads, strict=True):
            if isinstance(read, IntegrityError):
                raise read
            (e,) = read
            if e.event_id == event_id:
                return self._event(e, hit["segment"])
        for e in self._unsealed():
            if e.event_id == event_id:
                return self._event(e, None)
        return None

    @_snapshot
    def find(self, *, event_type: str | None = None, since: dt.datetime | None = None,
             until: dt.datetime | None = None, execution_id: str | None = None,
             limit: int | None = None) -> list[Event]:
        """Events by type and/or time range ``[since, until)``, in seq order, each verified.

        Segments outside the dates are skipped by their object names, which the manifests sign. Every
        row group of the others is read: nothing a signature does not cover (Parquet statistics, bloom
        filters) decides what is left out.
        """
        self.refresh()
        lo = None if since is None else datetime_to_micros(since)
        hi = None if until is None else datetime_to_micros(until)
        out: list[Event] = []

        def wanted(e: StoredEvent) -> bool:
            return ((event_type is None or e.event_type == event_type) and (lo is None or e.ts >= lo)
                    and (hi is None or e.ts < hi) and (execution_id is None or e.execution_id == execution_id))

        for n in range(self._segment_count):
            m = self.manifest(n)
            date = layout.parse_segment(m.object)
            if date is not None and not _date_overlaps(date[1], lo, hi):
                continue
            f = self._segment_file(n)
            for j in range(f.groups):
                start = j * f.block
                count = min(f.block, m.events - start)
                out.extend(self._event(e, n) for e in table_to_events(f.read_rows(start, count)) if wanted(e))
            if limit is not None and len(out) >= limit:
                break
        out.extend(self._event(e, None) for e in self._unsealed() if wanted(e))
        out.sort(key=lambda e: e.seq)
        return out if limit is None else out[:limit]


    # -- following the stream -------------------------------------------------------------------

    def follow(self, after_seq: int = -1, *, after_hash: bytes | None = None,
               event_type: str | Sequence[str] | None = None, execution_id: str | None = None,
               thread_id: str | None = None, tenant_id: str | None = None, timeout: float | None = None,
               poll_seconds: float | None = None, stop: threading.Event | None = None) -> Iterator[Event]:
        """Every event after seq ``after_seq`` as it becomes durable, in seq order, each verified: unsealed ones (with
        a WAL directory) against the chain as soon as ``append`` returned, sealed ones against their segment's signed
        manifest, across seals, key rotations and shreds (a shredded payload is the shredded marker). Blocks while
        it is caught up; ends after ``timeout`` seconds without a new event (None: never) or once ``stop`` is set.

        ``after_hash`` (the hash of event ``after_seq``, as a saved cursor has it) makes the follower check that the
        history it resumes is the one it left. The filters (``event_type`` one type or several, the ids) choose what
        is handed over; every event is read and checked. Without a WAL directory (a store on S3 read from
        elsewhere) events arrive when they are sealed: about one seal interval late, looked for every
        ``poll_seconds`` at most (default 1 s; 50 ms with a WAL directory). Raises IntegrityError at the first
        event that does not verify, before handing over any other event of its segment."""
        if type(after_seq) is not int or after_seq < -1:
            raise ValidationError("after_seq", "is a seq, or -1 for every event")
        wanted = EventFilter.of(event_type, execution_id=execution_id, thread_id=thread_id, tenant_id=tenant_id)
        follower = Follower([self], {self.stream: Tail(after_seq, after_hash)}, wanted, poll_seconds=poll_seconds,
                            has_wal=self.reads_wal)
        return follower.events(timeout=timeout, stop=stop)

    @_snapshot
    def poll(self, tail: Tail, wanted: Callable[[StoredEvent], bool] = EVERY_EVENT) -> list[Event]:
        """One step of a follower (see :meth:`follow`), on one snapshot: the events after ``tail`` in the sealed
        segment that holds the next seq (read whole and checked), or else in the write-ahead log; those ``wanted``
        are returned, verified, and ``tail`` moves past all of them. [] when there is nothing after the tail."""
        n = self._segment_count
        k = self._segment_holding(tail.seq + 1, n, tail.segment)
        if k < n:
            events, at_tail = self._segment_from(k, tail.seq + 1)
            where, segment = f"segment {k}", k
            if at_tail is not None:  # the sealed event at the tail: handed over unsealed earlier, it must be the same
                tail.sealed(*at_tail, where)
        else:
            unsealed = self._unsealed()
            events = unsealed[bisect.bisect_left(unsealed, tail.seq + 1, key=lambda e: e.seq):]
            where, segment = "the write-ahead log", None
        if k:  # the sealed event before the first one read: handed over unsealed earlier, it must be the same
            last = self.manifest(k - 1)
            tail.sealed(last.last_seq, last.last_hash, f"segment {k - 1}")
        tail.check_next(events, where)
        if not events and segment is None:
            self._check_next_manifest()
        out = [self._event(e, segment) for e in events if wanted(e)]
        tail.passed(events, unsealed=segment is None)
        if segment is not None:
            tail.segment = segment
        return out

    def _check_next_manifest(self) -> None:
        """A caught-up follower looks, every _GAP_SECONDS, whether the manifest after the next one is stored while the
        next one is not: a seal's manifest removed (reads, which look for the next one only, would wait for ever)."""
        now = time.monotonic()
        if now - self._gap_checked < _GAP_SECONDS:
            return
        self._gap_checked = now
        n = self._chain.size
        if self.store.head(layout.manifest(self.stream, n + 1)) is not None and \
                self.store.head(layout.manifest(self.stream, n)) is None:
            self._sink("manifest_missing", f"segment {n}'s manifest is missing (removed?) and segment {n + 1}'s is "
                       "stored", stream=self.stream, segment=n, object=layout.manifest(self.stream, n))

    def _segment_holding(self, seq: int, n: int, hint: int) -> int:
        """The first of the ``n`` sealed segments whose last seq is ``seq`` or later (``n``: none), looked for from
        ``hint`` (the segment a follower read last), else by bisection over the manifests."""
        if not n or self.manifest(n - 1).last_seq < seq:
            return n
        for k in (hint, hint + 1):
            if 0 <= k < n and self.manifest(k).first_seq <= seq <= self.manifest(k).last_seq:
                return k
        lo, hi = 0, n - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.manifest(mid).last_seq < seq:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _segment_from(self, k: int, seq: int) -> tuple[list[StoredEvent], tuple[int, bytes] | None]:
        """The events of sealed segment ``k`` from ``seq`` on, in seq order, and the (seq, hash) of the one before
        them when the segment holds it. The whole segment is read and checked first (its rows against the signed
        Merkle root, its chain from the segment before it to the manifest's last hash: steps 4 to 6 of FORMAT.md
        10), as columns: only the events handed over become objects."""
        m = self.manifest(k)
        table = in_seq_order(self._segment_file(k).read_rows(0, m.events))  # each row's hash recomputed, Merkle root
        prev = self.manifest(k - 1).last_hash if k else genesis_hash(self.identity.journal_id, self.stream)
        seqs = np.asarray(table.column("seq"))
        hashes, prevs = table.column("hash"), table.column("prev_hash")
        count = table.num_rows
        bad = np.flatnonzero(seqs != m.first_seq + np.arange(count, dtype=np.int64))
        if not bad.size and count:
            links = pc.equal(prevs.slice(1), hashes.slice(0, count - 1)).to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(~links) + 1
            if prevs[0].as_py() != prev:
                bad = np.array([0])
        if bad.size or count != m.events or (count and hashes[count - 1].as_py() != m.last_hash):
            at = int(seqs[bad[0]]) if bad.size else m.last_seq
            self._sink("chain_link", f"segment {k}: seq {at} does not continue the chain, or its events do not end at "
                       "the last hash its manifest signs", stream=self.stream, segment=k, seq=at)
        start = min(max(seq - m.first_seq, 0), count)
        before = (int(seqs[start - 1]), hashes[start - 1].as_py()) if start else None
        return table_to_events(table.slice(start), sort=False), before

def _entries(table: pa.Table) -> list[dict[str, Any]]:
    """An execution's index rows as _events_of reads them, by segment: only the columns it reads (the timestamps
    would each make a datetime)."""
    rows: list[dict[str, Any]] = _by_segment(table).select(["segment", "row", "rows", "first_seq", "last_seq",
                                                            "prev_seq"]).to_pylist()
    return rows


def _by_segment(table: pa.Table) -> pa.Table:
    return table.sort_by([("segment", "ascending"), ("first_seq", "ascending")])


def check_chain(execution_id: str, events: list[Event]) -> None:
    """The events of one execution, as returned, must be its whole linked history."""
    prev = None
    for i, e in enumerate(events):
        before = events[i - 1].seq if i else None
        if before is not None and e.seq == before:
            raise IntegrityError(f"execution {execution_id!r}: seq {e.seq} was returned twice (duplicated)", seq=e.seq)
        if before is not None and e.seq < before:
            raise IntegrityError(f"execution {execution_id!r}: seq {e.seq} came after seq {before} (reordered)",
                                 seq=e.seq)
        if e.execution_id != execution_id:
            raise IntegrityError(f"seq {e.seq} belongs to execution {e.execution_id!r}, "
                                 f"not {execution_id!r} (injected)", seq=e.seq)
        if e.exec_prev_seq != prev:
            returned = "no event" if prev is None else f"seq {prev}"
            raise IntegrityError(
                f"execution {execution_id!r}: seq {e.seq} links to seq {e.exec_prev_seq}, but the event returned "
                f"before it is {returned} (an event is missing)",
                seq=e.seq,
            )
        prev = e.seq


def _newest_first(row: dict[str, Any]) -> tuple[int, str, int]:
    """The order of a tenant's rows in a tenants object: newest start first, then execution, then segment."""
    return -datetime_to_micros(row["started"]), row["execution_id"], row["segment"]


def _merge(found: dict[str, dict[str, Any]], x: str, tenant: str | None, thread: str | None, first: int, last: int,
           rows: int, first_ts: dt.datetime, last_ts: dt.datetime, last_type: str) -> None:
    cur = found.get(x)
    if cur is None:
        found[x] = dict(tenant_id=tenant, thread_id=thread, first_seq=first, last_seq=last, events=rows,
                        started=first_ts, last_ts=last_ts, last_event_type=last_type)
        return
    cur["events"] += rows
    if last > cur["last_seq"]:
        cur.update(last_seq=last, last_ts=last_ts, last_event_type=last_type)


def _date_overlaps(date: str, lo: int | None, hi: int | None) -> bool:
    start = datetime_to_micros(dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC))
    end = start + 86_400_000_000
    return (lo is None or end > lo) and (hi is None or start < hi)
