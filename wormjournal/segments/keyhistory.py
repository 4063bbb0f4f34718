"""The signing-key history's entries: which Ed25519 key signs the journal, from where (FORMAT.md, 6.1).

Each entry is a signed note ``keys/history/<entry>.note``. Entry 0 is signed by its own key;
entry n > 0 by the key it retires (entry n-1's) and by the key it introduces, and links to
entry n-1 by hash. Format 2 entries pin ``journal.json`` (``identity``) and say, per stream,
at which segment the key they introduce takes over (``cutover``). This module is the format
only; which entries are trusted and which key may sign where is decided in :mod:`wormjournal.trust`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import JournalError, NoteError
from ..events import format_ts, parse_ts
from ..storage import layout
from .notes import SigningKey, VerifyKey, key_id_of, raw_public

HEADER_V1 = "wormjournal/key/v1"
HEADER = "wormjournal/key/v2"
ZERO = b"\x00" * 32
_LINES = ("journal", "entry", "key_id", "public_key", "valid_from", "prev_entry")


def identity_hash(identity_bytes: bytes) -> bytes:
    """What a format 2 entry pins ``journal.json`` by: SHA-256 of its bytes."""
    return hashlib.sha256(identity_bytes).digest()


@dataclasses.dataclass(frozen=True)
class KeyEntry:
    journal: str
    entry: int
    public_key: bytes  # the raw 32-byte Ed25519 public key
    valid_from: str  # RFC 3339, UTC, as format_ts writes it (format 2: informational)
    prev_entry: bytes  # SHA-256 of entry n-1's text; zeros for entry 0
    # Format 2 (None: a format 1 entry): SHA-256 of journal.json, and per stream the segment
    # from which this entry's key signs (the streams that had segments when it was written).
    identity: bytes | None = None
    cutovers: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        if self.cutovers is not None:
            object.__setattr__(self, "cutovers", dict(sorted(self.cutovers.items())))

    @property
    def version(self) -> int:
        return 1 if self.identity is None else 2

    @property
    def key_id(self) -> str:
        return key_id_of(Ed25519PublicKey.from_public_bytes(self.public_key))

    @property
    def valid_from_micros(self) -> int:
        return parse_ts(self.valid_from)

    def verify_key(self, name: str) -> VerifyKey:
        return VerifyKey(name, Ed25519PublicKey.from_public_bytes(self.public_key))

    def text(self) -> str:
        values = {"journal": self.journal, "entry": str(self.entry), "key_id": self.key_id,
                  "public_key": base64.b64encode(self.public_key).decode(), "valid_from": self.valid_from,
                  "prev_entry": self.prev_entry.hex()}
        lines = [HEADER if self.version == 2 else HEADER_V1] + [f"{k} {values[k]}" for k in _LINES]
        if self.identity is not None:
            lines.append(f"identity {self.identity.hex()}")
            lines += [f"cutover {s} {n}" for s, n in (self.cutovers or {}).items()]
        return "\n".join(lines) + "\n"

    def entry_hash(self) -> bytes:
        return hashlib.sha256(self.text().encode()).digest()

    def sign(self, keys: Sequence[SigningKey]) -> bytes:
        """The note with one signature line per key (the retiring key first)."""
        note = keys[0].sign_note(self.text())
        for k in keys[1:]:
            note += k.sign_note(self.text()).split(b"\n\n", 1)[1]
        return note

    @classmethod
    def parse(cls, text: str) -> KeyEntry:
        """Parse an entry's text strictly (format 1 or 2); raises NoteError."""
        lines = text.split("\n")
        if lines[0] not in (HEADER, HEADER_V1) or lines[-1] != "" or len(lines) < len(_LINES) + 2:
            raise NoteError("not a wormjournal key history entry")
        v2 = lines[0] == HEADER
        values = {}
        for line, key in zip(lines[1 : len(_LINES) + 1], _LINES, strict=True):
            got, _, raw = line.partition(" ")
            if got != key or not raw:
                raise NoteError(f"key history line {line[:40]!r}: expected {key!r}")
            values[key] = raw
        rest = lines[len(_LINES) + 1 : -1]
        identity: bytes | None = None
        cutovers: dict[str, int] | None = None
        if v2:
            if not rest or not rest[0].startswith("identity "):
                raise NoteError("a format 2 key history entry needs an identity line")
            cutovers = {}
            for line in rest[1:]:
                parts = line.split(" ")
                if (len(parts) != 3 or parts[0] != "cutover" or not layout.is_valid_stream(parts[1])
                        or not _decimal(parts[2])):
                    raise NoteError(f"key history line {line[:40]!r}: expected 'cutover <stream> <segment>'")
                if parts[1] in cutovers:
                    raise NoteError(f"key history entry names stream {parts[1]} twice")
                cutovers[parts[1]] = int(parts[2])
        elif rest:
            raise NoteError(f"key history line {rest[0][:40]!r}: a format 1 entry has no further lines")
        try:
            if not _decimal(values["entry"]):
                raise ValueError("entry is not a decimal")
            if v2:
                identity = bytes.fromhex(rest[0].partition(" ")[2])
                if len(identity) != 32:
                    raise ValueError("identity is not 32 bytes")
            entry = cls(values["journal"], int(values["entry"]), base64.b64decode(values["public_key"], validate=True),
                        values["valid_from"], bytes.fromhex(values["prev_entry"]), identity, cutovers)
            Ed25519PublicKey.from_public_bytes(entry.public_key)
            if format_ts(parse_ts(entry.valid_from)) != entry.valid_from:
                raise ValueError("valid_from is not a canonical RFC 3339 UTC time")
        except (ValueError, binascii.Error, JournalError) as e:  # parse_ts raises ValidationError
            raise NoteError(f"key history entry does not parse: {e}") from e
        if len(entry.prev_entry) != 32 or entry.text() != text or values["key_id"] != entry.key_id:
            raise NoteError("key history entry is not in canonical form")
        if entry.entry == 0 and entry.cutovers:
            raise NoteError("key history entry 0 has cutover lines (nothing came before it)")
        return entry


def _decimal(text: str) -> bool:
    return text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))


HISTORY_PREFIX = f"{layout.KEYS_PREFIX}history/"
_ENTRY_RE = re.compile(r"keys/history/([0-9]{12})\.note")


def entry_name(n: int) -> str:
    return f"{HISTORY_PREFIX}{n:0{layout.NUMBER_WIDTH}d}.note"


def parse_entry_name(name: str) -> int | None:
    """The entry number of a key history object name, or None."""
    m = _ENTRY_RE.fullmatch(name)
    return int(m[1]) if m else None


def first_entry(journal_id: str, key: SigningKey, valid_from_micros: int, identity_bytes: bytes) -> bytes:
    """Entry 0, pinning ``journal.json`` (its bytes ``identity_bytes``)."""
    return KeyEntry(journal_id, 0, raw_public(key.verify_key.public), format_ts(valid_from_micros), ZERO,
                    identity_hash(identity_bytes), {}).sign([key])
