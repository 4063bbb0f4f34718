"""The writer's secrets: the Ed25519 signing key and the subject pseudonym key.

They live in a key directory outside the store (``<key_dir>/<journal_id>/``),
files readable by their owner only. Verification never needs them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..errors import ConfigError
from ..segments.notes import SigningKey

SIGNING_FILE = "signing.pem"
PSEUDONYM_FILE = "pseudonym.key"


def key_name(journal_id: str) -> str:
    """The signed-note key name of a journal's signing keys."""
    return f"wormjournal/{journal_id}"


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def check_outside(key_dir: Path, store_root: Path | None) -> None:
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
