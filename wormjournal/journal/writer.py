"""The Journal: one writer of one stream. It appends (durably, with group commit) and recovers after a crash
itself, and is the facade over the rest: the sealer (:mod:`.sealer`, in the seal worker of :mod:`.sealworker`),
the key ring (:mod:`.keys`), the shredder (:mod:`.shredder`) and the retention trail (:mod:`.trail`).

The write path of one batch is the stages of :mod:`wormjournal.journal.stages`::

    Validate -> Canonicalize -> Compress -> (Encrypt's data keys, created durably on first use)
      -> under the lock: seqs, Encrypt (bound to the seq), Chain, Frame -> WAL write
      -> fsync (a group commit) -> return seqs
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa

from ..errors import ConfigError, ConflictError, IntegrityError, JournalError, StorageError, ValidationError
from ..events import FIELD_NAMES, HANDLER_FAILED, now_micros, uuid7
from ..index import Event, Reader
from ..payload import STORED_APART, parse_ref
from ..retention.actions import RetentionAction
from ..retention.audit import DEFAULT_WORKERS, Progress
from ..retention.kek import KekProvider
from ..retention.keystore import KeyStore
from ..retention.policy import NO_LOCK_HINT, RetentionPolicy
from ..retention.shred import ErasureReceipt
from ..segments.identity import FORMAT_HEADS, JournalIdentity
from ..segments.keyhistory import entry_name, first_entry
from ..segments.manifest import Manifest
from ..segments.notes import SigningKey, VerifyKey
from ..segments.table import SCHEMA
from ..storage import layout, open_store, store_spec
from ..storage.base import LeaseStore, LockingStore, Store
from ..storage.local import LocalStore, makedirs_durable
from ..trust import continue_chain
from ..trust.load import read_identity
from ..verify import VerifyReport, verify_store
from ..witness.client import WitnessConfig, WitnessRelay, WitnessStatus
from . import wal as walmod
from .config import JournalConfig
from .keys import (
    SigningKeys,
    check_outside,
    checked_ring,
    create_keys,
    finish_rotation,
    key_name,
    load_keys,
    load_wal_key,
)
from .lease import FREE, NEW, StreamLease
from .lock import StreamLock, seal_lock
from .sealer import Sealer, load_sealed_state, refresh_sealed_state, seal_wal_files, write_sealed_record
from .sealworker import SealWorker, error_of
from .shredder import Shredder
from .stages import Canonicalize, Chain, Compress, Draft, Encrypt, Frame, StoreApart, Validate
from .trail import RetentionTrail

log = logging.getLogger(__name__)

_THREAD = FIELD_NAMES.index("thread_id")  # in a Draft's values
_THREAD_HEADS = 65536  # threads whose last appended seq a writer remembers (Journal.appended_since)

DEFAULT_STREAM = "main"
HANDLER_MESSAGE_CHARS = 2000  # of a handler's error message, in its failure's event
DATAKEYS_DIR = "datakeys"  # the key store, in <key_dir>/<journal_id>/


class Journal:
    """One writer of one stream of a journal.

    Use :meth:`create` or :meth:`open`, preferably as a context manager. Methods
    raise :class:`~wormjournal.errors.ValidationError` for bad input (nothing is
    written), :class:`~wormjournal.errors.StorageError` when the WAL or store
    fails, :class:`~wormjournal.errors.LockedError` when the stream has a writer.
    """

    #: The error of the last automatic seal, None once one succeeds (an automatic seal never raises).
    last_seal_error: Exception | None = None
    SEAL_RETRY_SECONDS = 0.5  # after a failed automatic seal, the first append this long after retries it
    _worker: SealWorker | None = None  # the seal worker process's handle (config.seal_worker)
    _relay: WitnessRelay | None = None  # submits heads to the witnesses (config.witnesses)
    _worker_sealed = 0  # the next unsealed seq, as the seal worker last answered
    _seal_retry_at: float | None = None
    _seal_backoff = SEAL_RETRY_SECONDS / 2  # doubled at each failure, up to a minute

    def __init__(
        self,
        store: Store,
        identity: JournalIdentity,
        signing_key: SigningKey,
        pseudonym_key: bytes,
        *,
        stream: str,
        wal_dir: Path,
        config: JournalConfig,
        keystore: KeyStore,
        wal_key: bytes,
        key_dir: Path | None = None,
        take_over: bool = False,
    ) -> None:
        if not layout.is_valid_stream(stream):
            raise ValidationError("stream",
                                  f"{stream!r} is not a valid stream name (letters, digits, . _ -; at most 64)")
        self.store = store
        self.identity = identity
        self.stream = stream
        self.config = config
        self._keys = SigningKeys(store, identity.journal_id, stream, key_dir, signing_key)
        self.keystore = keystore
        # the write path's stages (stages.py); Chain reads the execution heads that recovery sets up
        self._validate = Validate(config.key_scope)
        self._canonicalize = Canonicalize(config.max_event_bytes, pseudonym_key)
        self._compress = Compress(config.zstd_level, config.compress_min_bytes)
        self._encrypt = Encrypt(keystore.key_for, identity.journal_id, stream)
        self._chain = Chain(lambda execution: self._exec_heads.get(execution))
        self._wal_dir = wal_dir / f"stream={stream}"
        self._store_apart = StoreApart(config.inline_payload_bytes, self._wal_dir / walmod.PAYLOADS_DIR)
        self._wal_key = wal_key
        self._wal_mac = walmod.WalMac(wal_key, identity.journal_id, stream)
        self._frame = Frame(self._wal_mac)
        self._shredder = Shredder(store, keystore, stream, append=self._append_internal, reader=self._stream_reader,
                                  trusted_keys=self.trusted_keys, unsealed=self._unsealed,
                                  receipt_key=lambda: self._key_for(self._sealed_size()), forget=self._encrypt.forget)
        self._trail = RetentionTrail(store, self._wal_dir, wal_key, f"{identity.journal_id}/{stream}",
                                     append=self._append_internal, seal=self.seal, reader=self.reader)
        self._lock = threading.Lock()  # guards seq, chain head and WAL writes
        self._seal_lock = threading.Lock()
        self._closed = False
        self._age_thread: threading.Thread | None = None
        self._stop = threading.Event()  # stops the age sealer (at close, or when the lease is lost)
        makedirs_durable(self._wal_dir, mode=0o700)  # unencrypted payloads: readable by the owner only
        # Lock the WAL directory, and for a local store the stream in the store itself,
        # so that a second writer is refused whichever wal_dir it was given.
        lock_dirs = [self._wal_dir]
        if isinstance(store, LocalStore):
            lock_dirs.append(store.root / ".locks" / f"stream={stream}")
        self._stream_locks: list[StreamLock] = []
        # A store that is not a local directory (S3): the stream's lease in the store, held before anything is
        # acknowledged (FORMAT.md 11b); the flocks above cannot see a writer on another machine.
        self._lease: StreamLease | None = None
        try:
            for directory in lock_dirs:
                makedirs_durable(directory)
                lock = StreamLock(directory, stream)
                lock.acquire()
                self._stream_locks.append(lock)
            walmod.claim_wal_dir(self._wal_dir, identity.journal_id)
            if isinstance(store, LeaseStore) and not isinstance(store, LocalStore):
                self._lease = StreamLease(store, identity.journal_id, stream, self._wal_dir,
                                          unsealed=lambda: (self.sealed_seq, self._next_seq),
                                          on_lost=lambda _: self._stop.set())  # the age sealer stops too
                self._lease.acquire(take_over=take_over)
            self._recover()
        except BaseException:
            # A lease that was free when this writer took it is free again: no event of this WAL needs it.
            self._release_locks(release=self._lease is not None and self._lease.how in (NEW, FREE))
            raise
        if self._lease is not None and config.lease_check_seconds is not None:
            self._lease.watch(config.lease_check_seconds)
        spec = store_spec(store) if config.seal_worker and key_dir is not None else None
        if spec is not None:
            assert key_dir is not None
            self._worker = SealWorker({"store": spec, "journal_id": identity.journal_id, "stream": stream,
                                       "wal_dir": str(self._wal_dir), "key_dir": str(key_dir),
                                       "row_group_rows": config.row_group_rows, "page_rows": config.page_rows,
                                       "min_page_rows": config.min_page_rows,
                                       "segment_max_events": config.segment_max_events}, self._worker_answered)
        if config.seal_max_age_seconds is not None:
            self._age_thread = threading.Thread(target=self._age_loop, name="wormjournal-age-sealer", daemon=True)
            self._age_thread.start()
        if config.witnesses:
            self._relay = WitnessRelay(store, identity.journal_id, stream,
                                       [WitnessConfig.parse(w) for w in config.witnesses],
                                       interval=config.witness_interval_seconds,
                                       store_for=self._sealer.checkpoint_store)
            self._relay.poke()  # a head an earlier writer left uncosigned

    # -- construction ---------------------------------------------------------

    @classmethod
    def create(
        cls,
        store: str | os.PathLike[str] | Store,
        *,
        key_dir: str | os.PathLike[str],
        stream: str = DEFAULT_STREAM,
        wal_dir: str | os.PathLike[str] | None = None,
        config: JournalConfig | None = None,
        retention: RetentionPolicy | None = None,
        allow_unlocked: bool = False,
        kek: KekProvider | None = None,
    ) -> Journal:
        """Create a journal in an empty store and open a writer on ``stream``.

        Generates the Ed25519 signing key and the pseudonym key under
        ``key_dir/<journal_id>/`` (which must lie outside the store), the key
        store of data keys beside them (wrapped by ``kek``: a master key file
        there by default, or :class:`~wormjournal.AwsKmsKek`), and stores the
        public key in the store. On S3 every object is written with the
        Object Lock ``retention`` (COMPLIANCE, 7 years by default); a bucket
        without Object Lock is refused unless ``allow_unlocked``. Raises
        ConfigError if a journal exists or the bucket cannot lock.
        """
        st = open_store(store)
        key_path = Path(key_dir)
        check_outside(key_path, st)
        if wal_dir is None:
            wal_dir = walmod.default_wal_dir(st)  # refuse before anything is written to the store
        if st.head(layout.JOURNAL_OBJECT) is not None:
            raise ConfigError(f"{st.url} already holds a journal", hint="use Journal.open / a new directory")
        policy = None  # a local directory cannot lock objects: tamper-evident, not tamper-proof
        if isinstance(st, LockingStore):
            if st.object_lock_enabled():
                policy = retention or RetentionPolicy()
            elif allow_unlocked:
                log.warning("UNLOCKED: %s has no Object Lock; objects can be deleted or overwritten. "
                            "Development only.", st.url)
                policy = None
            else:
                raise ConfigError(
                    f"the bucket of {st.url} does not have Object Lock enabled, so the archive could be deleted",
                    hint=NO_LOCK_HINT,
                )
            st = st.with_retention(policy)
        journal_id = uuid7()
        signing, pseudonym, _ = create_keys(key_path, journal_id)
        keystore = KeyStore.create(key_path / journal_id / DATAKEYS_DIR, journal_id, pseudonym, kek)
        identity = JournalIdentity(
            journal_id=journal_id,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            key_name=key_name(journal_id),
            format=FORMAT_HEADS,
            retention_mode=policy.mode if policy else None,
            retention_days=policy.days if policy else None,
        )
        st.put(layout.public_key(signing.verify_key.key_id), signing.verify_key.pem())
        st.put(entry_name(0), first_entry(journal_id, signing, now_micros(), identity.encode()))  # pins journal.json
        st.put(layout.JOURNAL_OBJECT, identity.encode())
        return cls._open(st, identity, signing, pseudonym, stream, wal_dir, config, keystore, key_path)

    @classmethod
    def open_or_create(
        cls,
        store: str | os.PathLike[str] | Store,
        *,
        key_dir: str | os.PathLike[str],
        stream: str = DEFAULT_STREAM,
        wal_dir: str | os.PathLike[str] | None = None,
        config: JournalConfig | None = None,
        retention: RetentionPolicy | None = None,
        allow_unlocked: bool = False,
        kek: KekProvider | None = None,
    ) -> Journal:
        """Open a writer on ``stream`` of the journal in ``store``, creating the journal first when the store
        holds none (a deployment's first start). Processes that start together on one store: one creates it,
        the others open it (they need its keys: the same ``key_dir``). Raises what :meth:`create` and
        :meth:`open` raise."""
        st = open_store(store)
        if st.head(layout.JOURNAL_OBJECT) is None:
            try:
                return cls.create(st, key_dir=key_dir, stream=stream, wal_dir=wal_dir, config=config,
                                  retention=retention, allow_unlocked=allow_unlocked, kek=kek)
            except ConfigError:
                if st.head(layout.JOURNAL_OBJECT) is None:
                    raise  # not a journal created meanwhile: the configuration is wrong
            except ConflictError:
                # Another process is creating it: a write-once put refused ours (only the key files this one
                # made in key_dir, under its own journal id, are left). Open that journal once it is stored.
                deadline = time.monotonic() + 10
                while st.head(layout.JOURNAL_OBJECT) is None:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        return cls.open(st, key_dir=key_dir, stream=stream, wal_dir=wal_dir, config=config, kek=kek)

    @classmethod
    def open(
        cls,
        store: str | os.PathLike[str] | Store,
        *,
        key_dir: str | os.PathLike[str],
        stream: str = DEFAULT_STREAM,
        wal_dir: str | os.PathLike[str] | None = None,
        config: JournalConfig | None = None,
        kek: KekProvider | None = None,
        take_over: bool = False,
    ) -> Journal:
        """Open a writer on ``stream`` of an existing journal, recovering after a crash.

        Recovery drops a torn, never-acknowledged WAL tail, checks the WAL's
        chain against the last sealed segment and finishes an interrupted seal.
        Raises NotFoundError when there is no journal, ConfigError when the key
        directory holds no key or not this journal's signing key, KeyStoreError
        (KeyStoreMissingError, WrongKekError) when its key store is missing or its
        key-encryption key is not the one it was created with, IntegrityError
        when the WAL and the store disagree.

        On S3 the writer first takes the stream's lease (FORMAT.md 11b); LeaseHeldError
        when another writer holds it. ``take_over=True`` takes it anyway, giving up the
        events that writer acknowledged and did not seal: only for a writer that is gone.
        """
        st = open_store(store)
        identity = read_identity(st)
        key_path = Path(key_dir)
        check_outside(key_path, st)
        finish_rotation(key_path, st, identity.journal_id)  # a key rotation a crash interrupted
        # Nothing unsigned steers the writer: journal.json (and the retention it names) must be the
        # one the key history pins, and the history must verify.
        ring = checked_ring(st)
        if isinstance(st, LockingStore):
            st = st.with_retention(identity.retention_policy())
        signing, pseudonym = load_keys(key_path, identity.journal_id)
        if ring.entry_of(signing.verify_key.key_id) is None:
            # Refuse before writing: events sealed with a foreign key would never verify.
            raise ConfigError(
                f"the signing key in {key_path / identity.journal_id} (key id {signing.verify_key.key_id}) "
                f"is not a key of the journal's key history in {st.url}",
                hint="pass the --key-dir (or WORMJOURNAL_KEY_DIR) used at `wormjournal init`",
            )
        keystore = KeyStore.open(key_path / identity.journal_id / DATAKEYS_DIR, identity.journal_id, pseudonym, kek)
        return cls._open(st, identity, signing, pseudonym, stream, wal_dir, config, keystore, key_path,
                         take_over=take_over)

    @classmethod
    def _open(cls, st: Store, identity: JournalIdentity, signing: SigningKey, pseudonym: bytes, stream: str,
              wal_dir: str | os.PathLike[str] | None, config: JournalConfig | None, keystore: KeyStore,
              key_path: Path | None = None, *, take_over: bool = False) -> Journal:
        wd = Path(wal_dir) if wal_dir is not None else walmod.default_wal_dir(st)
        if key_path is None:
            raise ConfigError("a writer needs its key directory")
        wal_key = load_wal_key(key_path, identity.journal_id, create=True)
        return cls(st, identity, signing, pseudonym, stream=stream, wal_dir=wd, config=config or JournalConfig(),
                   keystore=keystore, wal_key=wal_key, key_dir=key_path, take_over=take_over)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def journal_id(self) -> str:
        return self.identity.journal_id

    @property
    def verify_key(self) -> VerifyKey:
        """The public half of the signing key (give its PEM to auditors)."""
        return self._keys.current().verify_key

    @property
    def _key(self) -> SigningKey:
        return self._keys.current()

    def _key_for(self, segment: int) -> SigningKey:
        return self._keys.key_for(segment)

    def trusted_keys(self) -> list[VerifyKey]:
        """Every key of the journal's key history: what its own reads trust."""
        return self._keys.ring().keys()

    def rotate_key(self) -> VerifyKey:
        """Replace the signing key (FORMAT.md 6.1). Old segments keep verifying with the old public key;
        the new one is announced in the signed key history. Returns the new public key."""
        with self._seal_lock:
            key = self._keys.rotate()
        log.info("rotated the signing key of journal %s to key %s", self.journal_id, key.verify_key.key_id)
        return key.verify_key

    # -- recovery ------------------------------------------------------------------

    def _recover(self) -> None:
        with seal_lock(self._wal_dir):  # the seal worker of a writer that died finishes its seal first
            frozen = self._recover_wal()
        if frozen:
            self.seal()  # finish the interrupted seal: exactly once, thanks to write-once puts
        self._shredder.finish_interrupted()  # shreds that died before their receipt was noted
        self._trail.resume()  # retention actions that died before their event was sealed

    def _recover_wal(self) -> bool:
        """Load the sealed state, check the WAL against it, cut a torn tail, set up appends; returns whether
        frozen WAL files wait to be sealed."""
        state = load_sealed_state(self.store, self.journal_id, self.stream, self._keys.ring(), self._wal_dir,
                                  self._wal_mac)
        write_sealed_record(self._wal_dir, self._wal_mac, state)  # so that the next open reads no more than it must
        self._keys.key_for(state.size)  # refuse a retired key before anything is appended
        self._sealer = Sealer(
            self.store, state, self._keys.key_for, self._keys.ring,
            row_group_rows=self.config.row_group_rows, segment_max_events=self.config.segment_max_events,
            page_rows=self.config.page_rows, min_page_rows=self.config.min_page_rows,
        )
        with self._keys.signing():
            self._sealer.write_checkpoint()  # a seal may have died between manifest and checkpoint
        for tmp in self._wal_dir.glob("*.wal.tmp"):
            tmp.unlink()  # a WAL file whose creation never completed held no event
        files = walmod.list_wal_files(self._wal_dir)
        contents = [walmod.read_wal(p, self._wal_mac) for p in files]
        if contents:
            walmod.truncate_torn_tail(contents[-1])
            for c in contents[:-1]:
                if c.torn_bytes:
                    raise IntegrityError(f"{c.path} is damaged at offset {c.good_end}, "
                                         "but it is not the newest WAL file")
        # Records below the sealed seq were sealed from this WAL before a crash cut it, so the last of them must
        # be the stored event of its seq: else another writer (a take-over) sealed other events there, and this
        # WAL's are kept for the investigation, never sealed, never appended to.
        sealed = [e for c in contents for e in c.events if e.seq < state.next_seq]
        if sealed and sealed[-1].hash != self._sealer.stored_hash(sealed[-1].seq):
            raise IntegrityError(
                f"{self._wal_dir} holds other events than the store at seq {sealed[-1].seq}: another writer sealed "
                "into this stream (a take-over); its events are kept, this WAL's are not sealed",
                hint="move this WAL directory aside for the investigation; a new one opens the stream")
        # Link the WAL files to each other and to the store's chain (the trust core's continue_chain).
        expect_seq, expect_hash = state.next_seq, state.last_hash
        pending: list[Any] = []
        for c in contents:
            if c.header.first_seq > expect_seq or (
                c.header.first_seq == expect_seq and c.header.prev_hash != expect_hash
            ):
                raise IntegrityError(
                    f"{c.path} starts at seq {c.header.first_seq}, but the chain continues at seq {expect_seq}",
                    hint="the WAL does not belong to this store, or the store was altered",
                )
            pending += continue_chain(c.events, expect_seq, expect_hash, where=str(c.path))
            if pending:
                expect_seq, expect_hash = pending[-1].seq + 1, pending[-1].hash
        self._next_seq = expect_seq
        self._last_hash = expect_hash
        self._drop_unnamed_payloads(contents)
        self._exec_heads = self._sealer.execution_heads()  # the index, not every segment
        for e in pending:
            self._exec_heads[e.execution_id] = e.seq
        # The seq of the last event of each thread appended from here on (bounded: the oldest are forgotten, and
        # _thread_heads_from moves past them), so that what caches a thread can tell it changed (appended_since).
        self._thread_heads: OrderedDict[str, int] = OrderedDict()
        self._thread_heads_from = self._next_seq
        # Appends go on in the newest file; older ones are frozen and get sealed now.
        if contents and contents[-1].header.first_seq + len(contents[-1].events) < self._next_seq:
            contents.append(walmod.WalContents(  # the newest file is all sealed: go on in a new one, seqs in order
                walmod.create_wal_file(self._wal_dir, walmod.WalHeader(self._next_seq, self._last_hash)),
                walmod.WalHeader(self._next_seq, self._last_hash), [], walmod.HEADER_SIZE, walmod.HEADER_SIZE))
        if contents:
            active = contents[-1]
            self._wal = walmod.WalWriter(active.path, end=active.good_end)  # zeros after it: allocated ahead
            self._pending_events = sum(1 for e in active.events if e.seq >= state.next_seq)
            self._pending_bytes = active.good_end - walmod.HEADER_SIZE
        else:
            path = walmod.create_wal_file(self._wal_dir, walmod.WalHeader(self._next_seq, self._last_hash))
            self._wal = walmod.WalWriter(path)
            self._pending_events = self._pending_bytes = 0
        self._oldest_pending = time.monotonic() if self._pending_events else None
        return len(contents) > 1

    def _drop_unnamed_payloads(self, contents: list[walmod.WalContents]) -> None:
        """Remove the staged payloads (FORMAT.md 3.5) that no event of the WAL names: a crash came between one's
        write and its frame (its append was never acknowledged), or after the seal that stored it and cut its
        file. Before any append: an append stages its payload before its frame."""
        staged = self._wal_dir / walmod.PAYLOADS_DIR
        if not staged.is_dir():
            return
        named = {parse_ref(e.payload)[0] for c in contents for e in c.events
                 if e.payload_codec.endswith(STORED_APART)}
        for path in staged.iterdir():
            if path.name not in named:
                path.unlink()

    # -- append ----------------------------------------------------------------------

    def append(self, event_type: str, execution_id: str, payload: Any = None, **fields: Any) -> int:
        """Append one event; returns its seq once it is fsync'd in the WAL."""
        return self._append([dict(fields, event_type=event_type, execution_id=execution_id, payload=payload)])[0]

    def append_batch(self, events: Iterable[Mapping[str, Any]]) -> list[int]:
        """Append events atomically (all or none) with one fsync; returns their seqs.

        Every event is validated before anything is written.
        """
        batch = list(events)
        if not batch:
            return []
        return list(self._append(batch))

    def record_handler_failure(self, subscription: str, event: Event, error: BaseException, attempts: int) -> int:
        """Append ``custom:wormjournal.handler_failed`` (FORMAT.md 3.6): a subscription's handler gave up on
        ``event`` after ``attempts`` tries. It goes into the event's execution (and tenant), its parent the event.
        Its payload holds the handler's error message, which may quote the event's personal data: it is encrypted
        under the event's own data key (a shred of the event's scope forgets it too), or, for an event in clear, in
        the execution's scope; when the event's key was shredded already, the message is left out. Returns its
        seq."""
        payload = {"subscription": subscription, "stream": event.stream, "seq": event.seq, "event_id": event.event_id,
                   "event_type": event.event_type, "attempts": attempts, "error": type(error).__name__,
                   "message": str(error)[:HANDLER_MESSAGE_CHARS]}
        record: dict[str, Any] = {"event_type": HANDLER_FAILED, "execution_id": event.execution_id,
                                  "tenant_id": event.tenant_id, "parent_event_id": event.event_id, "payload": payload,
                                  "key_scope": "execution"}
        if event.payload_key_id is not None:
            try:
                key = self.keystore.data_key(event.payload_key_id)
            except JournalError:  # a key this key store cannot give: nothing it could not forget is written
                key = None
            if key is None:
                payload["message"] = None
                record["key_scope"] = None
            else:
                record["data_key"] = (event.payload_key_id, key)
        return self._append_internal(record)

    def _append_internal(self, event: Mapping[str, Any]) -> int:
        """Append one of the library's own events (a reserved type: an erasure receipt, a retention action)."""
        return self._append([event], internal=True)[0]

    def _append(self, batch: list[Mapping[str, Any]], *, internal: bool = False) -> range:
        """Append a non-empty batch; returns its seqs."""
        wal = self._wal
        wal.begin()  # while preparing too: a group commit in progress waits for this frame
        try:
            drafts = self._validate(batch, internal=internal)
            drafts = self._encrypt.keys(self._compress(self._canonicalize(drafts)))
            first, seq, ticket, due = self._write_batch(drafts)
        finally:
            wal.end()
        wal.sync(ticket)  # the same writer object: rotation swaps its file, not the object
        if due:
            self._auto_seal()
        return range(first, seq)

    def _write_batch(self, drafts: list[Draft]) -> tuple[int, int, int, bool]:
        """Assign seqs, link, encrypt, chain and write one frame; returns (first seq, next seq, ticket, seal due)."""
        with self._lock:
            self._check_open()
            if self._lease is not None:
                self._lease.raise_if_lost()  # before anything is written: never acknowledge what cannot be sealed
            heads = self._chain.number(drafts, self._next_seq)
            self._encrypt(drafts)  # bound to the seqs
            staged = self._store_apart(drafts)  # large payloads' objects, durable before their frame
            frame, last = self._frame.chained(self._chain, drafts, self._last_hash)
            ticket = self._wal.write(frame)
            first = self._next_seq
            self._next_seq, self._last_hash = first + len(drafts), last
            self._exec_heads.update(heads)
            for seq, draft in enumerate(drafts, first):
                thread = draft.values[_THREAD]
                if thread is not None:
                    self._thread_heads[thread] = seq
                    self._thread_heads.move_to_end(thread)
            while len(self._thread_heads) > _THREAD_HEADS:
                _, forgotten = self._thread_heads.popitem(last=False)
                self._thread_heads_from = max(self._thread_heads_from, forgotten + 1)
            self._pending_events += len(drafts)
            self._pending_bytes += len(frame) + staged
            if self._oldest_pending is None:
                self._oldest_pending = time.monotonic()
            due = (self._pending_events >= self.config.seal_max_events
                   or self._pending_bytes >= self.config.seal_max_bytes
                   or (self._seal_retry_at is not None and time.monotonic() >= self._seal_retry_at))
        return first, self._next_seq, ticket, due

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError("the journal is closed")

    # -- sealing ------------------------------------------------------------------------

    def _auto_seal(self) -> None:
        """Seal after an append or from the age sealer: ask the seal worker to (it answers in the background),
        or seal here when there is none. Never raises: the events are durable in the WAL already, so a failure
        here is not the append's (a caller that retried would write them twice). It is logged, kept in
        ``last_seal_error`` and retried by the next seal."""
        try:
            if self._worker is not None:
                self._request_seal(self._worker)
                return
            self.seal()
        except Exception as e:  # noqa: BLE001 - whatever it is, the appended events are safe
            self._seal_failed(e)
        else:
            self._seal_succeeded()

    def _seal_failed(self, e: BaseException) -> None:
        if self._closed:
            return  # closed under the age sealer: close() seals if asked to
        self.last_seal_error = e  # type: ignore[assignment]
        log.warning("automatic seal failed (stream %s), will retry: %s", self.stream, e,
                    exc_info=not isinstance(e, JournalError))
        self._seal_backoff = min(2 * self._seal_backoff, 60.0)
        self._seal_retry_at = time.monotonic() + self._seal_backoff  # an append after it seals again
        if self._oldest_pending is None:
            self._oldest_pending = time.monotonic()  # so the age rule retries it

    def _seal_succeeded(self) -> None:
        self.last_seal_error = self._seal_retry_at = None
        self._seal_backoff = self.SEAL_RETRY_SECONDS / 2

    def _freeze(self) -> int:
        """Go on in a new WAL file if the active one holds events; returns the first seq of the active file
        (every file before it is frozen, to be sealed). Called with the journal's lock held."""
        self._check_open()
        if self._pending_events:
            self._wal.rotate(walmod.WalHeader(self._next_seq, self._last_hash))
            self._pending_events = 0
            self._pending_bytes = 0
            self._oldest_pending = None
        return int(self._wal.path.stem)

    def _request_seal(self, worker: SealWorker) -> None:
        """Freeze the WAL and ask the seal worker to seal it (without waiting). One that cannot be started
        is given up for this writer: it seals in the appending thread from then on."""
        with self._seal_lock:
            if self._lease is not None:
                self._lease.check()  # one HEAD: a writer that lost its lease stores nothing
            with self._lock:
                upto = self._freeze()
            try:
                worker.request(upto)
            except StorageError as e:
                log.warning("sealing in the writer's process from now on: %s", e)
                self._worker = None
                self.seal()
                return
            # Back-pressure: a worker slower than the appends falls at most seal_backlog_files behind.
            limit = self.config.seal_backlog_files
            while len(walmod.list_wal_files(self._wal_dir)) - 1 > limit and self.last_seal_error is None:
                worker.wait_answer(1.0)

    def _worker_answered(self, reply: dict[str, Any]) -> None:
        if reply.get("ok"):
            self._worker_sealed = max(self._worker_sealed, int(reply["sealed"]))
            self._seal_succeeded()
            if self._relay is not None:
                self._relay.poke()
        else:
            self._seal_failed(error_of(reply))

    def _age_loop(self) -> None:
        limit = self.config.seal_max_age_seconds
        assert limit is not None
        while not self._stop.wait(min(limit / 4, 1.0)):
            oldest = self._oldest_pending
            if oldest is not None and time.monotonic() - oldest >= limit:
                self._auto_seal()

    def wait_for_seals(self, timeout: float | None = None) -> bool:
        """Wait until the automatic seals asked for so far are done (or failed: see ``last_seal_error``);
        False if ``timeout`` seconds passed first. At once without a seal worker: its seals are done in
        the appending thread."""
        worker = self._worker
        return worker.wait(timeout) if worker is not None else True

    def seal(self) -> list[Manifest]:
        """Seal every unsealed event into segments, in this process; returns the new manifests.

        The WAL is cut only after segments, manifests and checkpoint are stored.
        Raises StorageError if the store fails (the WAL stays intact; sealing again completes it).
        """
        with self._seal_lock:
            if self._lease is not None:
                self._lease.check()  # one HEAD: a writer that lost its lease stores nothing
            with self._lock:
                upto = self._freeze()
            with seal_lock(self._wal_dir):  # the seal worker may be sealing: after it, from where it got
                refresh_sealed_state(self.store, self._sealer.state, self._keys.ring())
                frozen = [p for p in walmod.list_wal_files(self._wal_dir) if int(p.stem) < upto]
                manifests = seal_wal_files(self._sealer, self._keys, self._wal_dir, self._wal_mac, frozen)
        if manifests and self._relay is not None:
            self._relay.poke()
        return manifests

    def witness_status(self) -> list[WitnessStatus]:
        """Each configured witness: the newest head log size it cosigned for this writer, the newest head, its last
        error and since when it is behind (FORMAT.md 8b). Empty without witnesses."""
        return self._relay.status() if self._relay is not None else []

    # -- shredding and the retention trail (shredder.py, trail.py) ------------------------------

    def shred(self, *, subject: str | None = None, thread: str | None = None, execution: str | None = None,
              tenant: str | None = None, reason: str | None = None,
              progress: Callable[[int, int], None] | None = None) -> ErasureReceipt:
        """Forget one scope: destroy its data keys, then append a signed erasure receipt.

        Give exactly one of ``subject`` (the raw identifier; only its pseudonym is
        recorded), ``thread``, ``execution`` or ``tenant``. Idempotent: shredding a
        scope again appends nothing and returns the earlier receipt (``repeated``).
        Raises UnknownScopeError when no payload of that scope was ever encrypted.
        """
        return self._shredder.shred(subject=subject, thread=thread, execution=execution, tenant=tenant,
                                    reason=reason, progress=progress)

    def record_retention(self, action: RetentionAction, *, workers: int = DEFAULT_WORKERS,
                         progress: Progress | None = None) -> int:
        """Apply a retention action (a legal hold placed or released, a retention extended, a policy
        strengthened: :mod:`wormjournal.retention.actions`) and record it in this stream, the audit trail:
        an event of execution ``wormjournal-retention``, payload unencrypted, sealed at once. Returns its seq.

        Crash-safe: the action is written down as pending (in this stream's WAL directory) before its first
        step and forgotten once its event is sealed; an action a crash cut short is finished, its event
        appended exactly once, when this stream is opened next. Raises ValidationError for an action that is
        not a retention action, StorageError (the action stays pending), ConflictError when another policy
        object took the number of the one to store (nothing was done: repeat the command).
        """
        return self._trail.record(action, workers=workers, progress=progress)

    def _sealed_size(self) -> int:
        """The stream's segments, read again from the store (the seal worker may have sealed more)."""
        with seal_lock(self._wal_dir):
            return refresh_sealed_state(self.store, self._sealer.state, self._keys.ring()).size

    def _unsealed(self) -> pa.Table:
        """The records of the WAL files not sealed yet, in seq order, as rows of the segment schema. This
        writer's own files: their MACs are checked, their hashes taken as written."""
        tables = [SCHEMA.empty_table()]
        with seal_lock(self._wal_dir):  # no seal cuts a file while it is read
            refresh_sealed_state(self.store, self._sealer.state, self._keys.ring())
            start = self._sealer.state.next_seq
            for path in walmod.list_wal_files(self._wal_dir):
                wal = walmod.read_live(path, self._wal_mac, rehash=False)  # other threads may be appending
                sealed = start - wal.header.first_seq  # its first rows were sealed (before a crash)
                tables.append(wal.table.slice(max(0, sealed)))
        return pa.concat_tables(tables)

    # -- status and close --------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def appended_since(self, thread_id: str, seq: int) -> bool:
        """Whether this writer appended an event of the thread with a seq of ``seq`` or more (True when it cannot
        tell: before it was opened, or too many threads ago). What a cache of the thread built from the events
        below ``seq`` asks to know whether it is still whole."""
        with self._lock:
            head = self._thread_heads.get(thread_id)
            return head >= seq if head is not None else seq < self._thread_heads_from

    @property
    def head_hash(self) -> bytes:
        """The hash of the last appended event (the chain head)."""
        return self._last_hash

    @property
    def sealed_seq(self) -> int:
        """Events with a seq below this are sealed into segments (as far as this writer knows)."""
        return max(self._sealer.state.next_seq, self._worker_sealed)

    def reader(self) -> Reader:
        """A :class:`~wormjournal.Reader` of this stream that also sees the unsealed events."""
        return self._stream_reader(self.stream)

    def _stream_reader(self, stream: str) -> Reader:
        """A reader of ``stream`` of this journal, with the unsealed events of its WAL in this WAL directory."""
        return Reader(self.store, stream=stream, public_keys=self.trusted_keys(), wal_dir=self._wal_dir.parent,
                      wal_key=self._wal_key, keystore=self.keystore)

    def verify(self, **kwargs: Any) -> VerifyReport:
        """Verify the whole store with this journal's public key; returns a VerifyReport.

        Before anything is sealed the store has nothing to prove, which an auditor's ``verify_store`` reports as
        a finding (it fails closed). The writer knows better: when it has sealed nothing and the store holds no
        sealed event, the events it appended are read back through the write-ahead log's chain instead, and the
        report is ok when that chain holds (``unsealed``: how many; a notice says none is signed yet)."""
        kwargs.setdefault("public_keys", self.trusted_keys())
        report = verify_store(self.store, **kwargs)
        if self.sealed_seq == 0 and report.events == 0 and {f.kind for f in report.findings} == {"nothing_to_verify"}:
            report.unsealed = len(self.reader().find(limit=None))  # each event checked against the chain
            report.findings = []
            report.notices.append(f"nothing is sealed yet: the {report.unsealed} event(s) appended are chained in "
                                  "the write-ahead log, not signed; seal to have them proven")
        return report

    def close(self, *, seal: bool = False) -> None:
        """Stop the age sealer, optionally seal, fsync and release the stream."""
        if self._closed:
            return
        self._stop.set()
        if self._age_thread is not None:
            self._age_thread.join()
        try:
            if self._worker is not None:
                self._worker.close()  # it finishes the seals it was asked for
            if seal:
                self.seal()
            if self._relay is not None:
                self._relay.close()  # one last round: the heads of the last seals, cosigned if the witnesses answer
        finally:
            with self._lock:
                self._closed = True
                try:
                    self._wal.close()
                    self.keystore.close()  # its keys made ahead and never used are erased
                finally:
                    self._release_locks(release=self._next_seq == self.sealed_seq)

    def _release_locks(self, *, release: bool = False) -> None:
        """Give back the lease (marked released when ``release``: nothing is left unsealed; else it stays
        held for this WAL directory) and the flocks."""
        try:
            if self._lease is not None:
                self._lease.close(release=release)
        finally:
            for lock in self._stream_locks:
                lock.release()
