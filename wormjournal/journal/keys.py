"""The writer's secrets: the Ed25519 signing key and the subject pseudonym key.

They live in a key directory outside the store (``<key_dir>/<journal_id>/``),
files readable by their owner only. Verification never needs them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import steps
from ..errors import ConfigError, ConflictError, KeyRetiredError, NoteError, NotFoundError
from ..events import format_ts, now_micros
from ..segments.keyhistory import HISTORY_PREFIX, KeyEntry, entry_name, identity_hash
from ..segments.notes import SigningKey, raw_public, split_note
from ..storage import layout
from ..storage.base import Store
from ..storage.local import LocalStore, makedirs_durable, write_file_atomic
from ..trust import KeyRing, Sink, check_history, load_trust
from ..trust.load import key_name
from ..verify.info import stream_sizes
from .lock import signing_lock

__all__ = ["SigningKeys", "check_outside", "checked_ring", "create_keys", "finish_rotation", "key_name", "load_keys",
           "load_wal_key", "rotate_signing_key"]

log = logging.getLogger(__name__)

SIGNING_FILE = "signing.pem"
PSEUDONYM_FILE = "pseudonym.key"
WAL_KEY_FILE = "wal.key"  # authenticates the write-ahead log's frames (FORMAT.md 11)
_TMP_SUFFIX = ".tmp"


def _write_secret(path: Path, data: bytes) -> None:
    """Create ``path`` (owner only) holding ``data``, whole or not at all (FileExistsError when it exists)."""
    write_file_atomic(path, data, exclusive=True, staged=lambda: steps.reached("keys.secret_staged"))


def _write_public(path: Path, data: bytes) -> None:
    """Write a public key file in the key directory, whole or not at all."""
    write_file_atomic(path, data, mode=0o644)


def check_outside(key_dir: Path, store: Any) -> None:
    """Refuse a key directory inside a local store (secrets must never be archived)."""
    store_root = store.root if isinstance(store, LocalStore) else None
    if store_root is None:
        return
    kd, root = key_dir.resolve(), store_root.resolve()
    if kd == root or root in kd.parents:
        raise ConfigError(
            f"the key directory {key_dir} is inside the store {store_root}",
            hint="keep secrets out of the archive: choose a --key-dir outside the store",
        )


def create_keys(key_dir: Path, journal_id: str) -> tuple[SigningKey, bytes, Path]:
    """Generate and save a journal's keys; returns them and the exported public key path."""
    directory = key_dir / journal_id
    makedirs_durable(key_dir, mode=0o700)  # missing parents private too, whatever the umask
    try:
        directory.mkdir(exist_ok=False, mode=0o700)
    except FileExistsError as e:
        raise ConfigError(f"keys for journal {journal_id} already exist in {directory}") from e
    signing = SigningKey.generate(key_name(journal_id))
    pseudonym = secrets.token_bytes(32)
    _write_secret(directory / SIGNING_FILE, signing.private_pem())
    _write_secret(directory / PSEUDONYM_FILE, pseudonym.hex().encode() + b"\n")
    _write_secret(directory / WAL_KEY_FILE, secrets.token_bytes(32).hex().encode() + b"\n")
    public_path = directory / f"{signing.verify_key.key_id}.pub.pem"
    _write_public(public_path, signing.verify_key.pem())
    return signing, pseudonym, public_path


def load_keys(key_dir: Path, journal_id: str) -> tuple[SigningKey, bytes]:
    directory = key_dir / journal_id
    try:
        signing = SigningKey.from_pem(key_name(journal_id), (directory / SIGNING_FILE).read_bytes())
        pseudonym = bytes.fromhex((directory / PSEUDONYM_FILE).read_text().strip())
    except FileNotFoundError as e:
        raise ConfigError(
            f"no signing key for journal {journal_id} in {directory}",
            hint="pass the --key-dir (or WORMJOURNAL_KEY_DIR) used at `wormjournal init`",
        ) from e
    except ValueError as e:
        raise ConfigError(f"the pseudonym key in {directory} is not hex: {e}") from e
    if len(pseudonym) != 32:
        raise ConfigError(f"the pseudonym key in {directory} is not 32 bytes")
    return signing, pseudonym


def load_wal_key(key_dir: Path, journal_id: str, *, create: bool = False) -> bytes:
    """The key that authenticates the write-ahead log's frames. ``create``: make it when the key
    directory predates it (the writer's open; a reader never creates one). Raises ConfigError."""
    path = key_dir / journal_id / WAL_KEY_FILE
    try:
        key = bytes.fromhex(path.read_text().strip())
    except FileNotFoundError as e:
        if not create or not (key_dir / journal_id).is_dir():
            raise ConfigError(f"no WAL key for journal {journal_id} in {key_dir / journal_id}",
                              hint="unsealed events are read with the writer's key directory (--key-dir)") from e
        try:
            _write_secret(path, secrets.token_bytes(32).hex().encode() + b"\n")
        except FileExistsError:
            pass  # another writer of this key directory made it meanwhile
        return load_wal_key(key_dir, journal_id)
    except ValueError as e:
        raise ConfigError(f"the WAL key in {path} is not hex: {e}") from e
    if len(key) != 32:
        raise ConfigError(f"the WAL key in {path} is not 32 bytes")
    return key


# -- rotation (FORMAT.md 6.1) ------------------------------------------------------------------------------------

NEXT_FILE = "signing.next.pem"
PENDING_FILE = "rotation.pending.note"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rotate_signing_key(key_dir: Path, store: Store, journal_id: str, current: SigningKey) -> SigningKey:
    """Replace the signing key: the new key's history entry is signed by the key it retires and by
    itself, the old private key is then gone, and the entry and public key are stored.

    The entry fixes, for every stream with segments, the segment from which the new key signs (its
    number of segments now): the retired key can never sign after it, whatever clock it claims.
    Writers of this key directory hold the signing lock while they seal, so none signs across it.
    Crash-safe: a rotation interrupted at any step is finished (or dropped, before the old key was
    replaced) by ``finish_rotation``, which every writer runs when it opens the journal.
    """
    directory = key_dir / journal_id
    with signing_lock(directory, exclusive=True):
        finish_rotation(key_dir, store, journal_id, True)
        trust = load_trust(store)
        ring = trust.ring
        if not ring.ok or not ring.entries:
            problems = "; ".join(p for _, p in ring.all_problems()) or "it has no entry"
            raise ConfigError(f"the journal's key history cannot be extended: {problems}",
                              hint="run `wormjournal verify` first")
        last = ring.entries[-1]
        if last.key_id != current.verify_key.key_id:
            raise ConfigError(f"the signing key in {directory} is not the journal's current key {last.key_id}")
        positions = dict(last.cutovers or {})
        positions.update(stream_sizes(store))  # from the verified manifests: nothing planted moves a cutover
        identity = last.identity or identity_hash(store.get(layout.JOURNAL_OBJECT))
        new = SigningKey.generate(key_name(journal_id))
        valid_from = max(now_micros(), last.valid_from_micros + 1)
        entry = KeyEntry(journal_id, last.entry + 1, raw_public(new.verify_key.public), format_ts(valid_from),
                         last.entry_hash(), identity, positions)
        steps.reached("rotate.start")
        _write_secret(directory / NEXT_FILE, new.private_pem())
        steps.reached("rotate.next_written")
        _write_secret(directory / PENDING_FILE, entry.sign([current, new]))  # the old key's last use
        steps.reached("rotate.entry_signed")
        os.replace(directory / NEXT_FILE, directory / SIGNING_FILE)  # the old private key is gone from here on
        _fsync_dir(directory)
        steps.reached("rotate.key_replaced")
        finish_rotation(key_dir, store, journal_id, True)
    return new


def finish_rotation(key_dir: Path, store: Store, journal_id: str, held: bool = False) -> None:
    """Finish (or roll back) a rotation a crash interrupted; a no-op when there is none.

    Takes the key directory's signing lock (exclusively; ``held``: the caller holds it already) when
    there is something to do, so that a rotation in progress in another process is never mistaken for
    an interrupted one. Raises ConfigError when the directory holds a state no crash of a rotation
    leaves behind.
    """
    directory = key_dir / journal_id
    if held:
        _finish_rotation(directory, store, journal_id)
    elif _rotation_leftovers(directory):
        with signing_lock(directory, exclusive=True):
            _finish_rotation(directory, store, journal_id)


def _rotation_leftovers(directory: Path) -> bool:
    return ((directory / PENDING_FILE).exists() or (directory / NEXT_FILE).exists()
            or any(True for _ in _staged_files(directory)))


def _staged_files(directory: Path) -> list[Path]:
    """Temporary files a rotation's writes left when a crash cut them short (never linked to their name)."""
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir() if p.name.endswith(_TMP_SUFFIX)
            and (p.name.startswith((f".{NEXT_FILE}.", f".{PENDING_FILE}.")) or ".pub.pem." in p.name)]


def _finish_rotation(directory: Path, store: Store, journal_id: str) -> None:
    """``finish_rotation`` with the signing lock held.

    The rotation's files say how far it got: the new key staged as NEXT_FILE, then the entry signed by
    both keys as PENDING_FILE, then NEXT_FILE renamed over SIGNING_FILE (the old key gone), then the
    public key and the entry stored, then PENDING_FILE removed. Before the rename it can still be
    dropped, and it is when its entry is not the history's next (a file left by an older version that
    wrote it in place, cut short) or when a writer sealed with the old key past the entry's cutovers
    since (the entry would make those segments invalid); after the rename it is always finished.
    """
    pending, nxt = directory / PENDING_FILE, directory / NEXT_FILE
    for tmp in _staged_files(directory):
        tmp.unlink(missing_ok=True)
    if not pending.exists():
        if nxt.exists():
            nxt.unlink()  # generated, never announced: never used
            _fsync_dir(directory)
        return
    note = pending.read_bytes()
    entry, why = _check_pending(store, journal_id, note)
    signing_path = directory / SIGNING_FILE
    if nxt.exists():  # the old key is still the signing key: the rotation may be dropped
        staged = _staged_key_id(nxt, journal_id)
        if entry is not None and entry.key_id != staged:
            why = f"it announces key {entry.key_id}, not the staged key {staged}"
            entry = None
        if entry is not None:
            why = _stale_cutover(store, entry)
        if entry is None or why is not None:
            log.warning("dropping the key rotation interrupted in %s: %s", directory, why)
            pending.unlink()
            nxt.unlink()
            _fsync_dir(directory)
            return
        os.replace(nxt, signing_path)
        _fsync_dir(directory)
    signing = SigningKey.from_pem(key_name(journal_id), signing_path.read_bytes())
    if entry is None:
        if load_trust(store).ring.entry_of(signing.verify_key.key_id) is not None:
            log.warning("removing %s, which no rotation can finish (%s): the signing key is in the history", pending,
                        why)
            pending.unlink()
            _fsync_dir(directory)
            return
        raise ConfigError(f"{pending} cannot finish the key rotation it belongs to ({why}), and the signing key "
                          f"{signing.verify_key.key_id} in {signing_path} is not in the journal's key history",
                          hint="restore the key directory from a backup made after the rotation")
    if signing.verify_key.key_id != entry.key_id:
        raise ConfigError(f"{pending} announces key {entry.key_id}, but {signing_path} holds another key")
    _put_once(store, layout.public_key(entry.key_id), signing.verify_key.pem())
    steps.reached("rotate.public_key_stored")
    _put_once(store, entry_name(entry.entry), note)
    steps.reached("rotate.entry_stored")
    public_path = directory / f"{entry.key_id}.pub.pem"
    if not public_path.exists() or public_path.read_bytes() != signing.verify_key.pem():
        _write_public(public_path, signing.verify_key.pem())
    pending.unlink()
    _fsync_dir(directory)
    steps.reached("rotate.done")


def _staged_key_id(path: Path, journal_id: str) -> str | None:
    """The key id of the staged next key, or None when the file is not a key (cut short by an older version)."""
    try:
        return SigningKey.from_pem(key_name(journal_id), path.read_bytes()).verify_key.key_id
    except (ValueError, TypeError, ConfigError):
        return None


def _check_pending(store: Store, journal_id: str, note: bytes) -> tuple[KeyEntry | None, str | None]:
    """The entry of a pending rotation if the trust core accepts it as the history's next entry (or it is
    stored already, byte for byte); else None and why not."""
    try:
        entry = KeyEntry.parse(split_note(note)[0])
    except NoteError as e:
        return None, f"the pending entry does not parse ({e})"
    ring = load_trust(store).ring
    if entry.entry < len(ring.notes):
        if ring.notes[entry.entry] == note:
            return entry, None
        return None, f"key history entry {entry.entry} is stored already, with other bytes"
    notes = [(entry_name(i), n) for i, n in enumerate(ring.notes)] + [(entry_name(entry.entry), note)]
    try:
        identity: bytes | None = store.get(layout.JOURNAL_OBJECT)
    except NotFoundError:
        identity = None
    checked = check_history(notes, journal_id, key_name(journal_id), None, identity=identity)
    if len(checked.entries) != len(notes):
        return None, checked.problems[-1] if checked.problems else "it is not the history's next entry"
    return entry, None


def _stale_cutover(store: Store, entry: KeyEntry) -> str | None:
    """Why ``entry`` can no longer be stored: a stream has sealed more segments than its cutover says
    (with the old key, after the entry was signed), or None."""
    for stream, size in stream_sizes(store).items():
        at = (entry.cutovers or {}).get(stream, 0)
        if size > at:
            return (f"stream {stream} has {size} segments, more than the cutover {at} of the entry: they were "
                    "signed with the old key after it")
    return None


def _put_once(store: Store, name: str, data: bytes) -> None:
    """Store ``data`` under ``name``; what is stored there already must be the same bytes."""
    try:
        store.put(name, data)
    except ConflictError:
        if store.get(name) != data:
            raise


def checked_ring(store: Store) -> KeyRing:
    """The journal's key history and journal.json as the trust core checks them; raises IntegrityError
    at the first problem (a writer never signs on top of a history it cannot verify)."""
    ring = load_trust(store).ring
    sink = Sink(collect=False)
    for kind, problem in ring.all_problems():
        sink(kind, problem)
    return ring


class SigningKeys:
    """What a writer (or its seal worker) signs with: its signing key, reloaded when another process rotated
    it, and the journal's checked key history, re-read when an entry was added. One per stream."""

    def __init__(self, store: Store, journal_id: str, stream: str, key_dir: Path | None, key: SigningKey) -> None:
        self.store = store
        self.journal_id = journal_id
        self.stream = stream
        self.key_dir = key_dir
        self._key = key
        self._key_stat = self._file_stat()
        self._ring: KeyRing | None = None
        self._ring_names: list[str] = []
        self._pinned: KeyRing | None = None

    def _file_stat(self) -> tuple[int, int] | None:
        if self.key_dir is None:
            return None
        try:
            st = (self.key_dir / self.journal_id / SIGNING_FILE).stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def current(self) -> SigningKey:
        """The signing key, reloaded when another process rotated it (checked before each signature)."""
        stat = self._file_stat()
        if stat is not None and stat != self._key_stat:
            assert self.key_dir is not None
            self._key = load_keys(self.key_dir, self.journal_id)[0]
            self._key_stat = stat
        return self._key

    def ring(self) -> KeyRing:
        """The journal's key history, checked; re-read when another process added an entry (once per seal:
        while a seal holds the signing lock, no rotation of this key directory can add one)."""
        if self._pinned is not None:
            return self._pinned
        names = [o.name for o in self.store.list(HISTORY_PREFIX)]
        if self._ring is None or names != self._ring_names:
            self._ring, self._ring_names = checked_ring(self.store), names
        return self._ring

    def key_for(self, segment: int) -> SigningKey:
        """The key that signs segment ``segment`` of this stream (FORMAT.md 6.1): ours, unless a rotation
        retired it at or before that segment. Raises KeyRetiredError then, ConfigError for a foreign key."""
        key = self.current()
        ring = self.ring()
        valid = ring.valid_entry(self.stream, segment)
        mine = ring.entry_of(key.verify_key.key_id)
        if mine == valid:
            return key
        if mine is not None and mine < valid:
            raise KeyRetiredError(f"the signing key {key.verify_key.key_id} was retired by key history entry {valid}: "
                                  f"it may not sign segment {segment} of stream {self.stream}")
        raise ConfigError(f"the signing key {key.verify_key.key_id} does not sign segment {segment} of stream "
                          f"{self.stream} (key history entry {valid} does)")

    @contextlib.contextmanager
    def signing(self) -> Iterator[None]:
        """Held while a seal signs: the key directory's signing lock (shared: a rotation waits for it), and the
        key history read once, at the start."""
        directory = self.key_dir / self.journal_id if self.key_dir is not None else None
        with signing_lock(directory, exclusive=False):
            self._pinned = self.ring()
            try:
                yield
            finally:
                self._pinned = None

    def rotate(self) -> SigningKey:
        """Replace the signing key (FORMAT.md 6.1); returns the new one."""
        if self.key_dir is None:
            raise ConfigError("this journal was not opened with a key directory")
        self._key = rotate_signing_key(self.key_dir, self.store, self.journal_id, self.current())
        self._key_stat = self._file_stat()
        self._ring, self._ring_names = checked_ring(self.store), [o.name for o in self.store.list(HISTORY_PREFIX)]
        return self._key
