"""Segment manifests and stream checkpoints, both C2SP signed notes.

See FORMAT.md, "Manifest" and "Checkpoint", for the exact text.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re

from ..errors import NoteError
from ..storage.layout import INDEX_KINDS
from . import merkle
from .notes import SigningKey

MANIFEST_HEADER = "wormjournal/manifest/v1"
INDEX_LINE = "index"
_HEX64 = re.compile(r"[0-9a-f]{64}")  # a hash as text: 64 lowercase hex digits
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
    ("frontier", "hashes"),
    ("key_id", "str"),
    ("time", "str"),
)


@dataclasses.dataclass(frozen=True, order=True)
class IndexRoot:
    """An index object this seal wrote: its kind, the segments it covers, its rows and their Merkle root."""

    kind: str
    first: int
    last: int
    rows: int
    root: bytes

    def line(self) -> str:
        return f"{INDEX_LINE} {self.kind} {self.first} {self.last} {self.rows} {self.root.hex()}"

    @classmethod
    def parse(cls, line: str) -> IndexRoot:
        parts = line.split(" ")
        if len(parts) != 6 or parts[0] != INDEX_LINE:
            raise NoteError(f"manifest line {line[:40]!r}: expected 'index <kind> <first> <last> <rows> <root>'")
        _, kind, first, last, rows, root = parts
        if kind not in INDEX_KINDS:
            raise NoteError(f"manifest index kind {kind[:20]!r} is not one of {', '.join(INDEX_KINDS)}")
        if not all(v.isascii() and v.isdigit() and (v == "0" or not v.startswith("0")) for v in (first, last, rows)):
            raise NoteError("manifest index first, last and rows must be decimals")
        if not _HEX64.fullmatch(root):
            raise NoteError("manifest index root is not 64 lowercase hex digits")
        if int(last) < int(first):
            raise NoteError("manifest index covers no segment (last < first)")
        return cls(kind, int(first), int(last), int(rows), bytes.fromhex(root))


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
    # The checkpoint tree over segments 0..segment-1 as its perfect subtrees' roots (FORMAT.md, 7.1):
    # any one trusted manifest is a starting point for verification, the segments before it not needed.
    frontier: tuple[bytes, ...]
    key_id: str
    time: str
    # The index objects stored with this segment (FORMAT.md, "Index"), in (kind, first) order.
    index: tuple[IndexRoot, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", tuple(sorted(self.index)))  # the order of the text

    def text(self) -> str:
        lines = [MANIFEST_HEADER]
        for key, kind in _MANIFEST_LINES:
            value = getattr(self, key)
            if kind == "hashes":
                value = " ".join(h.hex() for h in value) or "-"
            elif kind == "hash":
                value = value.hex()
            lines.append(f"{key} {value}")
        lines.extend(r.line() for r in self.index)
        return "\n".join(lines) + "\n"

    def index_root(self, kind: str, first: int) -> IndexRoot | None:
        """The root this manifest binds for the ``kind`` index object covering ``first..segment``."""
        for r in self.index:
            if r.kind == kind and r.first == first and r.last == self.segment:
                return r
        return None

    def tree_after(self) -> list[bytes]:
        """The frontier of the checkpoint tree over segments 0..segment: this manifest's, plus itself."""
        return merkle.frontier_push(self.frontier, self.segment, merkle.leaf_hash(self.manifest_hash()))

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
        body = lines[1 : 1 + len(_MANIFEST_LINES)]
        if len(body) != len(_MANIFEST_LINES):
            raise NoteError(f"manifest has {len(body)} lines, expected at least {len(_MANIFEST_LINES)}")
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
                elif kind == "hashes":
                    items = [] if raw == "-" else raw.split(" ")
                    if any(len(h) != 64 or h != h.lower() for h in items):
                        raise ValueError("not '-' or hashes of 64 lowercase hex digits")
                    values[key] = tuple(bytes.fromhex(h) for h in items)
                else:
                    values[key] = raw
            except ValueError as e:
                raise NoteError(f"manifest {key}: {e}") from e
        index = tuple(IndexRoot.parse(line) for line in lines[1 + len(_MANIFEST_LINES) : -1])
        m = cls(**values, index=index)  # type: ignore[arg-type]
        if len(m.frontier) != m.segment.bit_count():
            raise NoteError(f"manifest frontier has {len(m.frontier)} hashes; "
                            f"segment {m.segment} needs {m.segment.bit_count()}")
        if any(r.last != m.segment for r in index) or len({(r.kind, r.first) for r in index}) != len(index):
            raise NoteError("manifest index lines must cover segments ending at this one, once each")
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
        if len(lines) != 4 or lines[-1] != "":  # wormjournal writes no extension line: one is a forgery's
            raise NoteError("a checkpoint is exactly an origin, a tree size and a root hash line")
        origin, size, root = lines[0], lines[1], lines[2]
        if not size.isascii() or not size.isdigit() or (size != "0" and size.startswith("0")) or len(size) > 20:
            raise NoteError(f"checkpoint tree size {size[:24]!r} is not a decimal")
        try:
            root_hash = base64.b64decode(root, validate=True)
        except (binascii.Error, ValueError) as e:  # ValueError: non-ASCII characters
            raise NoteError("checkpoint root hash is not base64") from e
        if len(root_hash) != 32:
            raise NoteError("checkpoint root hash is not 32 bytes")
        cp = cls(origin, int(size), root_hash)
        if text != cp.text():
            raise NoteError("checkpoint is not in canonical form")
        return cp

    @classmethod
    def for_manifests(cls, origin: str, manifest_hashes: list[bytes]) -> Checkpoint:
        return cls(origin, len(manifest_hashes), merkle.merkle_root(manifest_hashes))
