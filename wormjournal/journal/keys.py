"""The writer's secrets: the Ed25519 signing key and the subject pseudonym key.

They live in a key directory outside the store (``<key_dir>/<journal_id>/``),
files readable by their owner only. Verification never needs them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ConflictError
from ..events import format_ts, now_micros
from ..segments.keyhistory import KeyEntry, entry_name, identity_hash
from ..segments.notes import SigningKey, raw_public, split_note
from ..storage import layout
from ..storage.base import Store
from ..storage.local import LocalStore
from ..trust import load_trust
from ..trust.load import key_name
from ..verify.info import stream_sizes
from .lock import signing_lock

__all__ = ["check_outside", "create_keys", "finish_rotation", "key_name", "load_keys", "load_wal_key",
           "rotate_signing_key"]

SIGNING_FILE = "signing.pem"
PSEUDONYM_FILE = "pseudonym.key"
WAL_KEY_FILE = "wal.key"  # authenticates the write-ahead log's frames (FORMAT.md 11)


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


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
    try:
        directory.mkdir(parents=True, exist_ok=False, mode=0o700)
    except FileExistsError as e:
        raise ConfigError(f"keys for journal {journal_id} already exist in {directory}") from e
    signing = SigningKey.generate(key_name(journal_id))
    pseudonym = secrets.token_bytes(32)
    _write_secret(directory / SIGNING_FILE, signing.private_pem())
    _write_secret(directory / PSEUDONYM_FILE, pseudonym.hex().encode() + b"\n")
    _write_secret(directory / WAL_KEY_FILE, secrets.token_bytes(32).hex().encode() + b"\n")
    public_path = directory / f"{signing.verify_key.key_id}.pub.pem"
    public_path.write_bytes(signing.verify_key.pem())
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
            _fsync_dir(path.parent)
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
    Crash-safe: a rotation interrupted at any step is finished (or dropped, before the entry
    was signed) by ``finish_rotation``, which every writer runs when it opens the journal.
    """
    directory = key_dir / journal_id
    with signing_lock(directory, exclusive=True):
        finish_rotation(key_dir, store, journal_id)
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
        _write_secret(directory / NEXT_FILE, new.private_pem())
        _write_secret(directory / PENDING_FILE, entry.sign([current, new]))  # the old key's last use
        _fsync_dir(directory)
        os.replace(directory / NEXT_FILE, directory / SIGNING_FILE)  # the old private key is gone from here on
        _fsync_dir(directory)
        finish_rotation(key_dir, store, journal_id)
    return new


def finish_rotation(key_dir: Path, store: Store, journal_id: str) -> None:
    """Complete a rotation a crash interrupted; no-op when there is none."""
    directory = key_dir / journal_id
    pending, nxt = directory / PENDING_FILE, directory / NEXT_FILE
    if not pending.exists():
        nxt.unlink(missing_ok=True)  # generated, never announced: never used
        return
    note = pending.read_bytes()
    entry = KeyEntry.parse(split_note(note)[0])
    if nxt.exists():
        os.replace(nxt, directory / SIGNING_FILE)
        _fsync_dir(directory)
    signing = SigningKey.from_pem(key_name(journal_id), (directory / SIGNING_FILE).read_bytes())
    if signing.verify_key.key_id != entry.key_id:
        raise ConfigError(f"{pending} announces key {entry.key_id}, but {directory / SIGNING_FILE} holds another key")
    for name, data in ((layout.public_key(entry.key_id), signing.verify_key.pem()), (entry_name(entry.entry), note)):
        try:
            store.put(name, data)
        except ConflictError:
            if store.get(name) != data:
                raise
    public_path = directory / f"{entry.key_id}.pub.pem"
    if not public_path.exists():
        public_path.write_bytes(signing.verify_key.pem())
    pending.unlink()
    _fsync_dir(directory)
