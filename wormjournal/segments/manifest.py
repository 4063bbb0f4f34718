"""Segment manifests and stream checkpoints, both C2SP signed notes.

See FORMAT.md, "Manifest" and "Checkpoint", for the exact text.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib

from . import merkle
from .notes import NoteError, SigningKey

MANIFEST_HEADER = "wormjournal/manifest/v1"
ZERO_HASH = b"\x00" * 32
NO_VERSION = "-"

# (line key, attribute, kind) in the exact order they appear in the note.
_MANIFEST_LINES: tuple[tuple[str, str], ...] = (
    ("journal", "str"),
    ("stream", "str"),
    ("segment", "int"),
    ("first_seq", "int"),
    ("last_seq", "int"),
    ("events", "int"),
    ("prev_hash", "hash"),
    ("last_hash", "hash"),
    ("merkle_root", "hash"),
    ("object", "str"),
    ("object_size", "int"),
    ("object_sha256", "hash"),
    ("object_version", "str"),
    ("prev_manifest", "hash"),
    ("key_id", "str"),
    ("time", "str"),
)


@dataclasses.dataclass(frozen=True)
class Manifest:
    journal: str
    stream: str
    segment: int
    first_seq: int
    last_seq: int
    events: int
    prev_hash: bytes
    last_hash: bytes
    merkle_root: bytes
    object: str
    object_size: int
    object_sha256: bytes
    object_version: str  # the store's version id of the segment object, "-" when it has none
    prev_manifest: bytes
    key_id: str
    time: str

    def text(self) -> str:
        lines = [MANIFEST_HEADER]
        for key, kind in _MANIFEST_LINES:
            value = getattr(self, key)
            lines.append(f"{key} {value.hex() if kind == 'hash' else value}")
        return "\n".join(lines) + "\n"

    def manifest_hash(self) -> bytes:
        """SHA-256 of the note text (signatures excluded): the link and the checkpoint leaf."""
        return hashlib.sha256(self.text().encode("utf-8")).digest()

    def sign(self, key: SigningKey) -> bytes:
        return key.sign_note(self.text())

    @classmethod
    def parse(cls, text: str) -> Manifest:
        """Parse a manifest note's text strictly: every line, in order, nothing else."""
        lines = text.split("\n")
        if lines[-1] != "" or lines[0] != MANIFEST_HEADER:
            raise NoteError("not a wormjournal manifest")
        body = lines[1:-1]
        if len(body) != len(_MANIFEST_LINES):
            raise NoteError(f"manifest has {len(body)} lines, expected {len(_MANIFEST_LINES)}")
        values: dict[str, object] = {}
        for line, (key, kind) in zip(body, _MANIFEST_LINES, strict=True):
            got_key, _, raw = line.partition(" ")
            if got_key != key or not raw:
                raise NoteError(f"manifest line {line[:40]!r}: expected {key!r}")
            try:
                if kind == "int":
                    if not raw.isdigit():
                        raise ValueError("not a decimal")
                    values[key] = int(raw)
                elif kind == "hash":
                    if len(raw) != 64 or raw != raw.lower():
                        raise ValueError("not 64 lowercase hex digits")
                    values[key] = bytes.fromhex(raw)
                else:
                    values[key] = raw
            except ValueError as e:
                raise NoteError(f"manifest {key}: {e}") from e
        m = cls(**values)  # type: ignore[arg-type]
        if m.text() != text:
            raise NoteError("manifest is not in canonical form")
        return m


def checkpoint_origin(journal_id: str, stream: str) -> str:
    return f"wormjournal/{journal_id}/{stream}"


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint over a stream's manifest hashes (one leaf per segment)."""

    origin: str
    tree_size: int
    root_hash: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.tree_size}\n{base64.b64encode(self.root_hash).decode()}\n"

    def sign(self, key: SigningKey) -> bytes:
        return key.sign_note(self.text())

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("checkpoint needs origin, tree size and root hash lines")
        origin, size, root = lines[0], lines[1], lines[2]
        if not size.isdigit() or (size != "0" and size.startswith("0")):
            raise NoteError(f"checkpoint tree size {size!r} is not a decimal")
        try:
            root_hash = base64.b64decode(root, validate=True)
        except binascii.Error as e:
            raise NoteError("checkpoint root hash is not base64") from e
        if len(root_hash) != 32:
            raise NoteError("checkpoint root hash is not 32 bytes")
        cp = cls(origin, int(size), root_hash)
        if "\n".join(lines[:3]) + "\n" != cp.text():  # extension lines may follow
            raise NoteError("checkpoint is not in canonical form")
        return cp

    @classmethod
    def for_manifests(cls, origin: str, manifest_hashes: list[bytes]) -> Checkpoint:
        return cls(origin, len(manifest_hashes), merkle.merkle_root(manifest_hashes))
