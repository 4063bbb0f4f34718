"""The crypto-shredding key store: one AES-256 data key per scope, wrapped by a key-encryption key.

The key store is the one mutable part of the system, and it lives outside the WORM
store, in a directory beside the writer's signing key (FORMAT.md, "Payload
encryption"; README, "Forgetting a person")::

    <dir>/../master.key           the local provider's key-encryption key (32 bytes, hex)
    <dir>/keystore.json           format, journal, provider and its settings (no key material)
    <dir>/keys/<key_id>.json      one wrapped data key: wrapped bytes (and its scope, unless made ahead)
    <dir>/scopes/<hash>.<n>       the scope's n-th key (n = 0, 1, ...): key id, scope, scope reference
    <dir>/scopes/<hash>/<key_id>  the same, as an empty marker (the layout before keys were made ahead)
    <dir>/ready/<key_id>          a key made ahead: its marker, written ahead (MARKER_BYTES; the key id alone until
                                  the key is given to a scope), then linked as scopes/<hash>.<n>
    <dir>/shredded/<key_id>.json  tombstone of a destroyed key: when, how, which receipt (seq and stream)
    <dir>/pending/<hash>.json     a shred under way: its scope, and the stream its receipt goes to once chosen
    <dir>/shred.lock              held (flock) while a shred or a recovery destroys keys and writes a receipt

A scope is (kind, value): a data subject (the default), a thread, an execution or a
tenant. ``<hash>`` is an HMAC of the scope under the journal's pseudonym key, so no
identifier is a file name. A data key is written (and fsync'd) before the first event
it encrypts reaches the write-ahead log, so a crash never loses the key of an
acknowledged event. Shredding writes the tombstone, then overwrites the key file with
zeros and removes it, and asks the provider (kek.py) to destroy its own copy (KMS key deletion).

A scope's first key costs one fdatasync of data: keys are made ahead, durably and without a scope, by a
background thread (``POOL`` of them; not with a KMS key per scope), each with its marker file written ahead in
``ready/``. Giving one to a scope writes the scope into that file in place (its size and blocks unchanged, so
the fdatasync commits no metadata) and links it as ``scopes/<hash>.<n>`` (exclusively, so two writers never
give a scope two keys at one n). The background thread then makes ``scopes/`` durable (one fsync for many) and
removes the ``ready/`` name. A crash before that can lose the link, never the marker: opening the key store links
every given marker of ``ready/`` that no marker names (``_recover_ready``). Keys made ahead and never given are
erased when the key store closes; a crash leaves them unused.

A shred (``Journal.shred``) writes its intent (``pending/``) before it destroys anything and removes
it only once its erasure receipt is in the journal and noted in the tombstones: a crash in between
leaves the intent, and the next writer to open finishes it (``Journal.open``). Writers of several
streams share one key store, so a shred and its recovery hold the key store's shred lock.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import steps
from ..errors import (
    CorruptKeyError,
    KeyStoreError,
    KeyStoreMissingError,
    StorageError,
    UnknownKeyError,
    UnknownScopeError,
    ValidationError,
    WrongKekError,
)
from ..events import format_ts, now_micros, pseudonymize
from ..storage.local import create_synced, fsync_dir, write_file_atomic
from .kek import AwsKmsKek, KekProvider, LocalKek

SCOPES = ("subject", "thread", "execution", "tenant")
log = logging.getLogger(__name__)

STORE_FILE = "keystore.json"
READY_DIR = "ready"  # keys made ahead: their markers written ahead, to be given to a scope
MARKER_BYTES = 4096  # a marker written ahead: one block, overwritten in place when its key is given
SETTLE_BATCH = 16  # given markers whose scopes/ links one fsync makes durable (or after SETTLE_SECONDS)
SETTLE_SECONDS = 0.5
MASTER_FILE = "master.key"  # beside the key store directory, so that it can be backed up apart
PENDING_DIR = "pending"  # shreds under way (created when the first shred begins)
SHRED_LOCK = "shred.lock"
POOL = 2  # data keys made ahead of need (a new scope then waits for its marker's fsync alone); more would only cost
# every journal that encrypts a few fsyncs at its start and close, as new scopes come one at a time per appender
FORMAT = 1
_SCOPE_TAG = b"wormjournal:scope:v1\x00"


# -- the key store ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    """What the key store says of one data key (never the key itself)."""

    key_id: str
    scope: str
    scope_ref: str  # the subject's pseudonym, or the thread, execution or tenant id
    created: str
    shredded: str | None = None  # when, or None while the key is live
    deletion_reference: str | None = None
    receipt_seq: int | None = None
    receipt_stream: str | None = None  # the stream of the receipt (None: the shredding writer's, as before)


@dataclasses.dataclass(frozen=True)
class ShredIntent:
    """A shred under way (``<dir>/pending/<scope_hash>.json``): which scope, why, and the stream its
    erasure receipt is appended to, once that is chosen (None: no receipt was appended anywhere yet)."""

    scope: str
    scope_ref: str
    scope_hash: str
    reason: str | None = None
    stream: str | None = None


@dataclasses.dataclass(frozen=True)
class Destroyed:
    """The keys of one scope that a shred destroyed (or had destroyed, when it is repeated)."""

    scope: str
    scope_ref: str
    keys: list[KeyInfo]
    already: bool  # True when every key was destroyed by an earlier shred


def _tomb_bytes(info: KeyInfo) -> bytes:
    """The tombstone file of a shredded key: its KeyInfo as one JSON line."""
    return json.dumps(dataclasses.asdict(info), sort_keys=True).encode() + b"\n"


def _erase(path: str) -> None:
    """Overwrite a file with zeros, fsync, remove it, fsync its directory."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, bytes(size))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)
    fsync_dir(os.path.dirname(path))


_CACHED = 4096  # scopes and keys a key store keeps in memory (the rest are read again when needed)
_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> _V:
    """Put ``value`` in ``cache`` (insertion ordered), forgetting the oldest entry beyond ``_CACHED``."""
    cache[key] = value
    if len(cache) > _CACHED:
        del cache[next(iter(cache))]
    return value


def _padded(marker: dict[str, Any]) -> bytes | None:
    """A marker written ahead: its JSON and spaces to MARKER_BYTES (None when it does not fit)."""
    text = json.dumps(marker, sort_keys=True).encode()
    return None if len(text) >= MARKER_BYTES else text + b" " * (MARKER_BYTES - 1 - len(text)) + b"\n"


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class KeyStore:
    """Data keys of one journal. Thread-safe; one process writes it at a time (the writer)."""

    def __init__(self, directory: Path, journal_id: str, pseudonym_key: bytes, provider: KekProvider) -> None:
        self.directory = directory
        self.journal_id = journal_id
        self.provider = provider
        self._pseudonym_key = pseudonym_key
        self._lock = threading.Lock()
        # Caches of the scopes and keys used last (at most _CACHED of each): scope hash -> (key id, data key), key
        # id -> data key for reads, (scope, value) -> scope hash.
        self._live: dict[str, tuple[str, bytes]] = {}
        self._hashes: dict[tuple[str, str], str] = {}
        self._deks: dict[str, bytes] = {}  # key id -> data key, for reads
        # Keys made ahead (durable, given to no scope yet), filled by a background thread.
        self._pool: list[tuple[str, bytes]] = []
        self._pool_wake = threading.Condition()
        self._pool_thread: threading.Thread | None = None
        self._pool_pid = os.getpid()  # the process whose keys made ahead _pool holds (a forked child holds none)
        self._closed = False
        # Paths as strings: a key's first event builds several, and pathlib costs more than the syscalls they name.
        self._keys_dir = os.path.join(directory, "keys")
        self._scopes_dir = os.path.join(directory, "scopes")
        self._tombs_dir = os.path.join(directory, "shredded")
        self._ready_dir = os.path.join(directory, READY_DIR)
        self._given: list[str] = []  # keys given to a scope whose scopes/ link is not known durable yet

    # -- creation and opening

    @classmethod
    def create(cls, directory: Path, journal_id: str, pseudonym_key: bytes,
               provider: KekProvider | None = None) -> KeyStore:
        """A new, empty key store (``provider``: a master key file beside it by default)."""
        directory.mkdir(parents=True, exist_ok=False, mode=0o700)
        if provider is None:
            provider = LocalKek.create(directory.parent / MASTER_FILE)
        for sub in ("keys", "scopes", "shredded", READY_DIR):
            (directory / sub).mkdir(mode=0o700)
        meta = {"format": FORMAT, "journal": journal_id, "provider": provider.name, "settings": provider.settings()}
        write_file_atomic(directory / STORE_FILE, json.dumps(meta, indent=1, sort_keys=True).encode() + b"\n")
        return cls(directory, journal_id, pseudonym_key, provider)

    @classmethod
    def open(cls, directory: Path, journal_id: str, pseudonym_key: bytes,
             provider: KekProvider | None = None) -> KeyStore:
        """Open an existing key store. Raises KeyStoreMissingError, KeyStoreError or WrongKekError."""
        try:
            meta = json.loads((directory / STORE_FILE).read_text())
        except FileNotFoundError as e:
            raise KeyStoreMissingError(
                f"no key store in {directory}: the data keys of encrypted payloads are kept there",
            ) from e
        except (ValueError, UnicodeDecodeError) as e:
            raise KeyStoreError(f"the key store file {directory / STORE_FILE} is damaged: {e}") from e
        if meta.get("format") != FORMAT or meta.get("journal") != journal_id:
            raise KeyStoreError(f"the key store in {directory} is not journal {journal_id}'s")
        settings = meta.get("settings") or {}
        if provider is None:
            if meta.get("provider") == "local":
                provider = LocalKek.load(directory.parent / MASTER_FILE)
            elif meta.get("provider") == "aws-kms":
                provider = AwsKmsKek.from_settings(settings)
            else:
                raise KeyStoreError(f"the key store in {directory} names an unknown provider {meta.get('provider')!r}")
        if provider.name != meta.get("provider"):
            raise WrongKekError(f"the key store in {directory} was created with provider {meta.get('provider')!r}, "
                                f"not {provider.name!r}")
        if isinstance(provider, LocalKek) and settings.get("kek_id") != provider.kek_id:
            raise WrongKekError(f"the master key {provider.path} is not the one that wraps this key store's data keys")
        for sub in ("keys", "scopes", "shredded"):
            if not (directory / sub).is_dir():
                raise KeyStoreError(f"the key store in {directory} lacks its {sub}/ directory")
        store = cls(directory, journal_id, pseudonym_key, provider)
        try:
            store._recover_ready()
        except OSError as e:  # a key directory this process may only read: its writers recover it
            log.warning("cannot recover the markers of keys given to scopes in %s: %s", directory, e)
        return store

    # -- scopes

    def scope_ref(self, scope: str, value: str) -> str:
        """How a scope is named in receipts: the subject's pseudonym (never the raw id), or the id."""
        if scope not in SCOPES:
            raise ValidationError("key_scope", f"{scope!r} is not one of {', '.join(SCOPES)}")
        return pseudonymize(self._pseudonym_key, value) if scope == "subject" else value

    def _scope_hash(self, scope: str, value: str) -> str:
        mac = hmac.new(self._pseudonym_key, _SCOPE_TAG + scope.encode() + b"\x00" + value.encode("utf-8"),
                       hashlib.sha256)
        return mac.hexdigest()[:40]

    def _key_path(self, key_id: str) -> str:
        return f"{self._keys_dir}{os.sep}{key_id}.json"

    def _tomb_path(self, key_id: str) -> str:
        return os.path.join(self._tombs_dir, key_id + ".json")

    def _read_key(self, key_id: str) -> dict[str, Any] | None:
        try:
            record = json.loads(_read(self._key_path(key_id)))
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError) as e:
            raise CorruptKeyError(f"the key file of data key {key_id} is damaged") from e
        if not isinstance(record, dict) or record.get("key_id") != key_id:
            raise CorruptKeyError(f"the key file of data key {key_id} is damaged")
        return record

    def _unwrap(self, record: dict[str, Any]) -> bytes:
        try:
            wrapped = base64.b64decode(record["wrapped"], validate=True)
        except (KeyError, ValueError, TypeError) as e:
            raise CorruptKeyError(f"the wrapped bytes of data key {record.get('key_id')} are damaged") from e
        dek = self.provider.unwrap(record["key_id"], wrapped, record.get("kms_key"))
        if len(dek) != 32:
            raise CorruptKeyError(f"data key {record['key_id']} does not unwrap to 32 bytes")
        return dek

    def key_for(self, scope: str, value: str) -> tuple[str, bytes]:
        """The live data key of a scope, created (durably) on first use: (key id, key)."""
        h = self._hashes.get((scope, value))
        if h is None:
            h = _remember(self._hashes, (scope, value), self._scope_hash(scope, value))
        found = self._live.get(h)
        # Cached, unless another writer (another stream, another process) shredded it since (checked outside the
        # lock: appenders of other scopes do not wait on this one's stat).
        if found is not None and os.path.exists(self._key_path(found[0])):
            return found
        with self._lock:
            found = self._live.get(h)
            if found is not None and os.path.exists(self._key_path(found[0])):
                return found  # made meanwhile by another appender of the scope
            found = None
            markers = self._markers(h)
            for key_id in markers:
                record = self._read_key(key_id)
                if record is not None:
                    found = (key_id, self._unwrap(record))
            if found is None:
                found = self._create(scope, value, h, len(markers))
            _remember(self._live, h, found)
            _remember(self._deks, found[0], found[1])
            return found

    def _legacy_dir(self, h: str) -> str:
        return os.path.join(self._scopes_dir, h)

    def _marker_path(self, h: str, n: int) -> str:
        return os.path.join(self._scopes_dir, f"{h}.{n}")

    def _markers(self, h: str) -> list[str]:
        """The key ids of a scope, oldest first (a marker a crash left empty names none)."""
        legacy = self._legacy_dir(h)
        key_ids = sorted(os.listdir(legacy)) if os.path.isdir(legacy) else []
        n = 0
        while True:
            try:
                marker = json.loads(_read(self._marker_path(h, n)))
            except FileNotFoundError:
                return key_ids
            except (ValueError, UnicodeDecodeError) as e:
                raise KeyStoreError(f"the scope marker {self._marker_path(h, n)} is damaged") from e
            key_ids.append(marker["key_id"])
            n += 1

    def _marker_scopes(self) -> dict[str, tuple[str, str]]:
        """key id -> (scope, scope reference), from every scope marker (keys made ahead hold no scope)."""
        out = {}
        for path in (self.directory / "scopes").glob("*.*"):
            if path.name.startswith("."):
                continue  # a marker being written
            try:
                marker = json.loads(path.read_bytes())
                out[marker["key_id"]] = (marker["scope"], marker["scope_ref"])
            except (ValueError, UnicodeDecodeError, KeyError, TypeError) as e:
                raise KeyStoreError(f"the scope marker {path} is damaged") from e
        return out

    def _new_key(self, scope: str | None, scope_ref: str | None, h: str | None, *,
                 ahead: bool = False) -> tuple[str, bytes]:
        """A data key wrapped and written durably (its scope, when known, in its file too). ``ahead`` (a key made
        ahead, which nothing names yet): the file is created in place, and its name durable once the caller fsyncs
        keys/; a crash can cut it short, and such a file is passed over (:meth:`keys`)."""
        key_id = secrets.token_hex(16)
        dek = AESGCM.generate_key(bit_length=256)
        wrapped, kms_key = self.provider.wrap(key_id, dek)
        record = {"key_id": key_id, "scope": scope, "scope_ref": scope_ref,
                  "scope_hash": h, "wrapped": base64.b64encode(wrapped).decode(), "kms_key": kms_key,
                  "provider": self.provider.name, "created": format_ts(now_micros())}
        data = json.dumps(record, sort_keys=True).encode() + b"\n"
        if ahead:
            create_synced(self._key_path(key_id), data)
        else:
            write_file_atomic(self._key_path(key_id), data)
        return key_id, dek

    def _create(self, scope: str, value: str, h: str, n: int) -> tuple[str, bytes]:
        """A key for the scope whose markers name ``n`` keys, none live: its key file first, then its marker, so
        a crash leaves at worst an unused key."""
        ref = self.scope_ref(scope, value)
        legacy = self._legacy_dir(h)
        if os.path.isdir(legacy):  # a scope begun by an older key store keeps its layout
            key_id, dek = self._new_key(scope, ref, h)
            write_file_atomic(os.path.join(legacy, key_id), b"")
            return key_id, dek
        taken = self._take_pooled()
        try:
            key_id, dek = taken if taken is not None else self._new_key(scope, ref, h)
            ready = self._ready_path(key_id) if taken is not None else None
            marker = {"key_id": key_id, "scope": scope, "scope_ref": ref, "scope_hash": h}
            data = _padded(marker) if ready is not None else None
            if ready is not None and data is not None:
                # Given in place: its file holds the scope durably (data alone) before it is linked.
                fd = os.open(ready, os.O_WRONLY)
                try:
                    os.pwrite(fd, data, 0)
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
            else:
                data = json.dumps(marker, sort_keys=True).encode() + b"\n"
            while True:
                try:
                    if ready is not None and len(data) == MARKER_BYTES:
                        os.link(ready, self._marker_path(h, n))
                        with self._pool_wake:
                            self._given.append(key_id)  # the link made durable in the background (_settle)
                    else:
                        write_file_atomic(self._marker_path(h, n), data, exclusive=True)
                        if ready is not None:  # too long to be given in place: its marker written ahead goes
                            with contextlib.suppress(FileNotFoundError):
                                os.unlink(ready)
                    return key_id, dek
                except (FileExistsError, FileNotFoundError) as e:
                    markers = self._markers(h)
                    if key_id in markers:  # another key store recovered its marker (_recover_ready) and linked it
                        return key_id, dek
                    if isinstance(e, FileNotFoundError):
                        raise
                    # Another writer gave the scope a key at n: use it, unless it was shredded since. Ours names this
                    # scope now: it is never given to another one, nor erased (a key store opening now may link its
                    # marker, and a writer then use it: the scope then has two keys, and a shred destroys both).
                    for other in markers[n:]:
                        record = self._read_key(other)
                        if record is not None:
                            if ready is not None:
                                with contextlib.suppress(FileNotFoundError):
                                    os.unlink(ready)
                            return other, self._unwrap(record)
                    n = len(markers)
        finally:
            self._refill()  # after the marker: the next key's fsyncs would delay this one's

    # -- keys made ahead

    def _take_pooled(self) -> tuple[str, bytes] | None:
        """A key made ahead, or None (the pool is empty, or the provider makes a key per scope)."""
        if not getattr(self.provider, "poolable", False):
            return None
        with self._pool_wake:
            self._forget_parents()
            return self._pool.pop() if self._pool and not self._closed else None

    def _forget_parents(self) -> None:
        """In a forked child (under _pool_wake): the keys made ahead and given that it inherited are its parent's,
        to give and to settle, never the child's (it would give a scope a key its parent gives another)."""
        if self._pool_pid != os.getpid():
            self._pool_pid = os.getpid()
            self._pool, self._given, self._pool_thread = [], [], None

    def _refill(self) -> None:
        """Wake the thread that makes keys ahead (started on the first new scope, again in a forked child)."""
        if not getattr(self.provider, "poolable", False):
            return
        with self._pool_wake:
            if self._closed:
                return
            self._forget_parents()
            if self._pool_thread is None:  # none yet (or a forked child's)
                self._pool_thread = threading.Thread(target=self._fill_pool, name="wormjournal-keys", daemon=True)
                self._pool_thread.start()
            self._pool_wake.notify()

    def _ready_path(self, key_id: str) -> str:
        return f"{self._ready_dir}{os.sep}{key_id}"

    def _fill_pool(self) -> None:
        """The background thread: keys made ahead with their markers, and the links of given markers made durable
        (every SETTLE_BATCH of them, or SETTLE_SECONDS after one: until then a crash leaves them to _recover_ready)."""
        while True:
            with self._pool_wake:
                waited = False
                while not self._closed and len(self._pool) >= POOL and len(self._given) < SETTLE_BATCH:
                    if not self._pool_wake.wait(SETTLE_SECONDS if self._given else None):
                        waited = True
                        break
                if self._closed:
                    return
                given: list[str] = []
                if waited or len(self._given) >= SETTLE_BATCH:
                    given, self._given = self._given, []
                wanted = len(self._pool) < POOL
            try:
                self._settle(given)
                if not wanted:
                    continue
                made = self._make_ahead()
            except (OSError, KeyStoreError):
                return  # the caller makes its own keys then (and sees the error itself)
            with self._pool_wake:
                if self._closed:
                    self._discard(made[0])
                    return
                self._pool.append(made)

    def _make_ahead(self) -> tuple[str, bytes]:
        """A key made ahead with its marker written ahead: each file created in place and fsync'd (a crash can cut
        one short: nothing names it yet, and it is passed over), then their directories (after the files' fsyncs,
        whose journal commits took the names along on most file systems)."""
        key_id, dek = self._new_key(None, None, None, ahead=True)
        if not os.path.isdir(self._ready_dir):  # a key store from before markers were written ahead
            os.makedirs(self._ready_dir, mode=0o700, exist_ok=True)
            fsync_dir(self.directory)
        data = _padded({"key_id": key_id})
        assert data is not None
        create_synced(self._ready_path(key_id), data)
        fsync_dir(self._keys_dir)
        fsync_dir(self._ready_dir)
        return key_id, dek

    def _settle(self, given: list[str]) -> None:
        """The markers of keys given to scopes are durable: their scopes/ links once that directory is fsync'd (one
        fsync for all), their content since it was given. Their ready/ names go then."""
        if not given:
            return
        fsync_dir(self._scopes_dir)
        for key_id in given:
            with contextlib.suppress(FileNotFoundError):  # recovered (and removed) by another key store meanwhile
                os.unlink(self._ready_path(key_id))

    def _discard(self, key_id: str) -> None:
        """A key made ahead that no scope will have: its key file erased, its marker written ahead removed."""
        _erase(self._key_path(key_id))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._ready_path(key_id))

    def _recover_ready(self) -> None:
        """Link each marker of ready/ that was given a scope and that no marker of the scope names (a crash lost its
        link, or came before it: the scope's events may use the key), durably, then remove the ready/ names of the
        markers given. Markers never given (another writer's keys made ahead, or a crash's) stay."""
        try:
            names = os.listdir(self._ready_dir)
        except FileNotFoundError:
            return
        given = []
        for name in names:
            if name.startswith("."):
                continue  # a marker being written ahead
            try:
                data = _read(self._ready_path(name))
                marker = json.loads(data)
            except FileNotFoundError:
                continue
            except (OSError, ValueError, UnicodeDecodeError):
                continue  # torn by a crash while it was given (its key was never returned to an appender), or not one
            if (not isinstance(marker, dict) or marker.get("scope") is None or marker.get("key_id") != name
                    or not isinstance(marker.get("scope_hash"), str)):
                continue
            h = marker["scope_hash"]
            markers = self._markers(h)
            while name not in markers:
                try:
                    write_file_atomic(self._marker_path(h, len(markers)), data, exclusive=True)
                    break
                except FileExistsError:
                    markers = self._markers(h)  # another key store took the slot: perhaps recovering this one
            given.append(name)
        self._settle(given)

    def close(self) -> None:
        """Stop making keys ahead, erase those never given to a scope, make the given ones' markers durable."""
        with self._pool_wake:
            self._forget_parents()
            self._closed = True
            self._pool_wake.notify_all()
            thread, self._pool_thread = self._pool_thread, None
        if thread is not None:
            thread.join()
        with self._pool_wake:
            unused, self._pool = self._pool, []
            given, self._given = self._given, []
        self._settle(given)
        for key_id, _ in unused:
            self._discard(key_id)

    # -- reads

    def data_key(self, key_id: str) -> bytes | None:
        """The data key with this id, or None when it was shredded.

        Raises UnknownKeyError for a key this store never held, CorruptKeyError or
        WrongKekError when it cannot be unwrapped.
        """
        dek = self._deks.get(key_id)
        if dek is not None and os.path.exists(self._key_path(key_id)):  # not shredded since by another key store
            return dek
        with self._lock:
            self._deks.pop(key_id, None)
            record = self._read_key(key_id)
            if record is None:
                if os.path.exists(self._tomb_path(key_id)):
                    return None
                raise UnknownKeyError(f"data key {key_id} is not in the key store {self.directory} (never held, "
                                      "nor shredded): is this the journal's key store?")
            return _remember(self._deks, key_id, self._unwrap(record))

    def is_shredded(self, key_id: str) -> bool:
        return os.path.exists(self._tomb_path(key_id)) and not os.path.exists(self._key_path(key_id))

    # -- shredding

    def destroy(self, scope: str, value: str) -> Destroyed:
        """Destroy every data key of a scope. Raises UnknownScopeError when it never had one."""
        return self._destroy(scope, self.scope_ref(scope, value), self._scope_hash(scope, value))

    def _scope_keys(self, scope: str, ref: str, h: str) -> list[str]:
        key_ids = list(dict.fromkeys(self._markers(h)))  # once each (two recoveries at once can both link one)
        if not key_ids:
            raise UnknownScopeError(f"no data key for {scope} {ref!r}: nothing of it was encrypted in this journal")
        return key_ids

    def _destroy(self, scope: str, ref: str, h: str) -> Destroyed:
        with self._lock:
            key_ids = self._scope_keys(scope, ref, h)
            destroyed, already = [], True
            for key_id in key_ids:
                record = self._read_key(key_id)
                tomb = self._read_tomb(key_id)
                if tomb is not None:
                    if record is not None:  # a crash came between the tombstone and the erasure: finish it
                        already = False
                        _erase(self._key_path(key_id))
                        steps.reached("shred.key_erased")
                    destroyed.append(tomb)
                    continue
                if record is None:
                    continue  # a marker whose key file was never written (a crash): nothing to destroy
                already = False
                reference = self.provider.destroy(record.get("kms_key"))
                info = KeyInfo(key_id, scope, ref, record.get("created", ""), format_ts(now_micros()), reference)
                # The tombstone first: a crash after it finishes the erasure on the next shred (or recovery).
                write_file_atomic(self._tomb_path(key_id), _tomb_bytes(info))
                steps.reached("shred.tombstone_written")
                _erase(self._key_path(key_id))
                steps.reached("shred.key_erased")
                destroyed.append(info)
            self._live.pop(h, None)
            for info in destroyed:
                self._deks.pop(info.key_id, None)
            return Destroyed(scope, ref, destroyed, already and bool(destroyed))

    def reapply(self, key_ids: list[str], note: str) -> list[str]:
        """Destroy again the keys an erasure receipt names that are live here (a key store restored
        from a backup older than the shred); returns their ids."""
        done = []
        with self._lock:
            for key_id in sorted(set(key_ids)):
                record = self._read_key(key_id)
                if record is None:
                    continue
                scope, ref = self._scope_of(record)
                reference = self.provider.destroy(record.get("kms_key"))
                info = KeyInfo(key_id, scope, ref, record.get("created", ""),
                               format_ts(now_micros()), f"{reference} ({note})")
                write_file_atomic(self._tomb_path(key_id), _tomb_bytes(info))
                _erase(self._key_path(key_id))
                self._deks.pop(key_id, None)
                self._live = {h: v for h, v in self._live.items() if v[0] != key_id}
                done.append(key_id)
        return done

    def _read_tomb(self, key_id: str) -> KeyInfo | None:
        try:
            data = json.loads(_read(self._tomb_path(key_id)))
            return KeyInfo(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as e:
            raise KeyStoreError(f"the tombstone of data key {key_id} is damaged") from e

    def record_receipt(self, key_ids: list[str], seq: int, stream: str | None = None) -> None:
        """Note in each tombstone the seq (and stream) of the erasure receipt that reports it."""
        with self._lock:
            for key_id in key_ids:
                tomb = self._read_tomb(key_id)
                if tomb is not None and tomb.receipt_seq is None:
                    info = dataclasses.replace(tomb, receipt_seq=seq, receipt_stream=stream)
                    write_file_atomic(self._tomb_path(key_id), _tomb_bytes(info))

    # -- shreds under way (the writer's side: Journal.shred and its recovery)

    @contextlib.contextmanager
    def shred_lock(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold the key store's shred lock (an exclusive flock, so also against other threads of this
        process); yields False, holding nothing, when ``wait`` is False and another holds it."""
        try:
            fd = os.open(self.directory / SHRED_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StorageError(f"cannot open the shred lock in {self.directory}: {e}") from e
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def _intent_path(self, scope_hash: str) -> Path:
        return self.directory / PENDING_DIR / f"{scope_hash}.json"

    def _write_intent(self, intent: ShredIntent) -> None:
        pending = self.directory / PENDING_DIR
        if not pending.is_dir():
            pending.mkdir(mode=0o700, exist_ok=True)
            fsync_dir(self.directory)
        write_file_atomic(self._intent_path(intent.scope_hash),
                       json.dumps(dataclasses.asdict(intent), sort_keys=True).encode() + b"\n")

    def begin_shred(self, scope: str, value: str, reason: str | None) -> ShredIntent:
        """Note durably that the scope is being shredded, before any key is destroyed (kept as it is when
        an interrupted shred of the scope left one). Raises UnknownScopeError when it never had a key."""
        ref, h = self.scope_ref(scope, value), self._scope_hash(scope, value)
        self._scope_keys(scope, ref, h)
        for intent in self.pending_shreds():
            if intent.scope_hash == h:
                return intent
        intent = ShredIntent(scope, ref, h, reason)
        self._write_intent(intent)
        steps.reached("shred.intent_written")
        return intent

    def pending_shreds(self) -> list[ShredIntent]:
        """The shreds under way: begun, their receipt not yet noted in the tombstones."""
        pending = self.directory / PENDING_DIR
        if not pending.is_dir():
            return []
        out = []
        for path in sorted(pending.glob("*.json")):
            try:
                intent = ShredIntent(**json.loads(path.read_text()))
            except (ValueError, TypeError, UnicodeDecodeError) as e:
                raise KeyStoreError(f"the record of a shred under way {path} is damaged: {e}") from e
            if intent.scope not in SCOPES or path.stem != intent.scope_hash:
                raise KeyStoreError(f"the record of a shred under way {path} is damaged")
            out.append(intent)
        return out

    def destroy_pending(self, intent: ShredIntent) -> Destroyed:
        """Destroy (again: idempotent) every data key of the scope of a shred under way."""
        return self._destroy(intent.scope, intent.scope_ref, intent.scope_hash)

    def claim_shred(self, intent: ShredIntent, stream: str) -> ShredIntent:
        """Note durably that the shred's receipt is being appended to ``stream`` (before it is)."""
        if intent.stream == stream:
            return intent
        intent = dataclasses.replace(intent, stream=stream)
        self._write_intent(intent)
        steps.reached("shred.stream_claimed")
        return intent

    def end_shred(self, intent: ShredIntent) -> None:
        """The shred is done: its receipt is in the journal and noted in the tombstones."""
        path = self._intent_path(intent.scope_hash)
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)

    def _scope_of(self, record: dict[str, Any], markers: dict[str, tuple[str, str]] | None = None) -> tuple[str, str]:
        """(scope, scope reference) of a key: in its file, or (a key made ahead) in its scope's marker."""
        if record.get("scope") is not None:
            return record["scope"], record["scope_ref"]
        found = (markers if markers is not None else self._marker_scopes()).get(record["key_id"])
        if found is None:
            raise KeyStoreError(f"data key {record['key_id']} belongs to no scope (it was made ahead, never given)")
        return found

    def keys(self) -> Iterator[KeyInfo]:
        """Every key the store holds or held (live first, by creation), never key material; keys made ahead and
        never given to a scope are left out."""
        live = []
        markers = self._marker_scopes()
        made_ahead = {key_id for key_id, _ in self._pool}
        for path in sorted((self.directory / "keys").glob("*.json")):
            if path.stem in made_ahead:
                continue
            try:
                record = self._read_key(path.stem)
            except CorruptKeyError:
                if path.stem in markers:
                    raise
                continue  # a key being made ahead, or one a crash cut short then: never given to a scope
            if record is None:
                continue
            if record.get("scope") is None and record["key_id"] not in markers:
                continue  # made ahead by a writer that crashed: never used
            scope, ref = self._scope_of(record, markers)
            live.append(KeyInfo(record["key_id"], scope, ref, record.get("created", "")))
        yield from sorted(live, key=lambda k: k.created)
        tombs = [t for path in sorted((self.directory / "shredded").glob("*.json"))
                 if (t := self._read_tomb(path.stem))]
        yield from sorted(tombs, key=lambda k: k.shredded or "")
