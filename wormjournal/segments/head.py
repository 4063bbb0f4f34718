"""The journal head (FORMAT.md 8a): a signed note committing to every stream's latest checkpoint.

Heads form a log of their own, the head log: head ``n`` is leaf ``n`` of an RFC 6962 tree, and its first three
lines are a C2SP checkpoint of that tree at size ``n + 1``, so a witness cosigns a head as it cosigns any
checkpoint. The lines after them (the extension lines, which a witness's cosignature covers) are the head's
own content, and their SHA-256 is the head's leaf data::

    wormjournal/<journal_id>
    <n + 1>
    <base64 root of the head tree over heads 0 .. n>
    time <time written>
    frontier <hex> ... | -            the frontier of the head tree over heads 0 .. n - 1
    stream <name> <tree size> <hex root>   one per stream, sorted by name: its latest checkpoint

A head carries the frontier of the heads before it, as a manifest carries that of the manifests before it, so
the root of every head is computed from the head alone and its predecessor, and a writer extends the log from
the newest head without reading the others.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re

from ..errors import NoteError
from ..events import canonical_time
from ..storage.layout import STREAM_RE
from . import merkle
from .manifest import Checkpoint
from .notes import SigningKey

_HEX64 = re.compile(r"[0-9a-f]{64}")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


def head_origin(journal_id: str) -> str:
    """The origin of a journal's head log (a stream's checkpoints have ``wormjournal/<journal_id>/<stream>``)."""
    return f"wormjournal/{journal_id}"


@dataclasses.dataclass(frozen=True, order=True)
class StreamTip:
    """A stream as a head names it: its latest checkpoint's tree size and root."""

    stream: str
    size: int
    root: bytes

    def line(self) -> str:
        return f"stream {self.stream} {self.size} {self.root.hex()}"


@dataclasses.dataclass(frozen=True)
class Head:
    """Head ``number`` of a journal: the streams it names and the frontier of the heads before it."""

    journal_id: str
    number: int
    time: str
    frontier: tuple[bytes, ...]
    streams: tuple[StreamTip, ...]

    def __post_init__(self) -> None:
        if len(self.frontier) != self.number.bit_count():
            raise NoteError(f"head {self.number} needs a frontier of {self.number.bit_count()} hashes, "
                            f"not {len(self.frontier)}")
        names = [t.stream for t in self.streams]
        if names != sorted(set(names)):
            raise NoteError("a head names each stream once, sorted by name")
        if any(not STREAM_RE.fullmatch(t.stream) or t.size < 1 or len(t.root) != 32 for t in self.streams):
            raise NoteError("a head's streams have valid names, a tree size of 1 or more and a 32-byte root")

    def extension(self) -> str:
        """The lines after the checkpoint lines: what the head's hash covers."""
        lines = [f"time {self.time}", "frontier " + (" ".join(h.hex() for h in self.frontier) or "-")]
        lines += [t.line() for t in self.streams]
        return "\n".join(lines) + "\n"

    def head_hash(self) -> bytes:
        """The leaf data of this head in the head log: SHA-256 of its extension lines."""
        return hashlib.sha256(self.extension().encode("utf-8")).digest()

    def tree_after(self) -> list[bytes]:
        """The frontier of the head log over heads 0 .. number (this head included)."""
        return merkle.frontier_push(self.frontier, self.number, merkle.leaf_hash(self.head_hash()))

    def checkpoint(self) -> Checkpoint:
        """The head log's checkpoint this head is: size number + 1, root over heads 0 .. number."""
        return Checkpoint(head_origin(self.journal_id), self.number + 1, merkle.frontier_root(self.tree_after()))

    def text(self) -> str:
        return self.checkpoint().text() + self.extension()

    def sign(self, key: SigningKey) -> bytes:
        return key.sign_note(self.text())

    def tips(self) -> dict[str, StreamTip]:
        return {t.stream: t for t in self.streams}

    @classmethod
    def first(cls, journal_id: str, time: str, streams: tuple[StreamTip, ...]) -> Head:
        return cls(journal_id, 0, time, (), streams)

    def next(self, time: str, streams: tuple[StreamTip, ...]) -> Head:
        """The head after this one."""
        return Head(self.journal_id, self.number + 1, time, tuple(self.tree_after()), streams)

    @classmethod
    def parse(cls, text: str, journal_id: str) -> Head:
        """A head's note text, strictly (every line in order, canonical, its root consistent with its own lines).
        Raises NoteError."""
        lines = text.split("\n")
        if len(lines) < 6 or lines[-1] != "":
            raise NoteError("a head is a checkpoint of the head log, then a time, a frontier and its streams")
        origin, size = lines[0], lines[1]
        if origin != head_origin(journal_id):
            raise NoteError(f"head origin {origin[:80]!r} is not {head_origin(journal_id)!r}")
        if not _DECIMAL.fullmatch(size) or size == "0":
            raise NoteError(f"head tree size {size[:24]!r} is not a decimal of 1 or more")
        try:
            root = base64.b64decode(lines[2], validate=True)
        except (binascii.Error, ValueError) as e:
            raise NoteError("head root hash is not base64") from e
        time_key, _, time = lines[3].partition(" ")
        frontier_key, _, frontier_text = lines[4].partition(" ")
        if time_key != "time" or frontier_key != "frontier" or not time or not frontier_text:
            raise NoteError("a head's fourth and fifth lines are 'time <time>' and 'frontier <hashes or ->'")
        hashes = [] if frontier_text == "-" else frontier_text.split(" ")
        if any(not _HEX64.fullmatch(h) for h in hashes):
            raise NoteError("a head's frontier is '-' or hashes of 64 lowercase hex digits")
        tips = []
        for line in lines[5:-1]:
            parts = line.split(" ")
            if len(parts) != 4 or parts[0] != "stream" or not _DECIMAL.fullmatch(parts[2]) \
                    or not _HEX64.fullmatch(parts[3]):
                raise NoteError(f"head line {line[:60]!r}: expected 'stream <name> <tree size> <hex root>'")
            tips.append(StreamTip(parts[1], int(parts[2]), bytes.fromhex(parts[3])))
        head = cls(journal_id, int(size) - 1, time, tuple(bytes.fromhex(h) for h in hashes), tuple(tips))
        if merkle.frontier_root(head.tree_after()) != root:
            raise NoteError("head root is not the root of its frontier with its own leaf")
        if not canonical_time(time) or head.text() != text:
            raise NoteError("head is not in canonical form")
        return head
