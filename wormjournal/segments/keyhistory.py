"""The signing-key history: which Ed25519 key signs the journal, from when (FORMAT.md, section 6.1).

Each entry is a signed note ``keys/history/<entry>.note``. Entry 0 is signed by its own key;
entry n > 0 by the key it retires (entry n-1's) and by the key it introduces, and links to
entry n-1 by hash. Key n is valid for manifests sealed in [valid_from(n), valid_from(n+1)).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import JournalError
from ..events import format_ts, parse_ts
from ..storage import layout
from ..storage.base import ObjectReader
from .notes import NoteError, SigningKey, VerifyKey, key_id_of, raw_public, split_note

HEADER = "wormjournal/key/v1"
ZERO = b"\x00" * 32
_LINES = ("journal", "entry", "key_id", "public_key", "valid_from", "prev_entry")


@dataclasses.dataclass(frozen=True)
class KeyEntry:
    journal: str
    entry: int
    public_key: bytes  # the raw 32-byte Ed25519 public key
    valid_from: str  # RFC 3339, UTC, as format_ts writes it
    prev_entry: bytes  # SHA-256 of entry n-1's text; zeros for entry 0

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
        return HEADER + "\n" + "".join(f"{k} {values[k]}\n" for k in _LINES)

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
        lines = text.split("\n")
        if lines[0] != HEADER or len(lines) != len(_LINES) + 2 or lines[-1] != "":
            raise NoteError("not a wormjournal key history entry")
        values = {}
        for line, key in zip(lines[1:-1], _LINES, strict=True):
            got, _, raw = line.partition(" ")
            if got != key or not raw:
                raise NoteError(f"key history line {line[:40]!r}: expected {key!r}")
            values[key] = raw
        try:
            if not values["entry"].isascii() or not values["entry"].isdigit():
                raise ValueError("entry is not a decimal")
            entry = cls(values["journal"], int(values["entry"]), base64.b64decode(values["public_key"], validate=True),
                        values["valid_from"], bytes.fromhex(values["prev_entry"]))
            Ed25519PublicKey.from_public_bytes(entry.public_key)
            if format_ts(parse_ts(entry.valid_from)) != entry.valid_from:
                raise ValueError("valid_from is not a canonical RFC 3339 UTC time")
        except (ValueError, binascii.Error, JournalError) as e:  # parse_ts raises ValidationError
            raise NoteError(f"key history entry does not parse: {e}") from e
        if len(entry.prev_entry) != 32 or entry.text() != text or values["key_id"] != entry.key_id:
            raise NoteError("key history entry is not in canonical form")
        return entry


HISTORY_PREFIX = f"{layout.KEYS_PREFIX}history/"
_ENTRY_RE = re.compile(r"keys/history/(\d{12})\.note")


def entry_name(n: int) -> str:
    return f"{HISTORY_PREFIX}{n:0{layout.NUMBER_WIDTH}d}.note"


def parse_entry_name(name: str) -> int | None:
    """The entry number of a key history object name, or None."""
    m = _ENTRY_RE.fullmatch(name)
    return int(m[1]) if m else None


def first_entry(journal_id: str, key: SigningKey, valid_from_micros: int) -> bytes:
    return KeyEntry(journal_id, 0, raw_public(key.verify_key.public), format_ts(valid_from_micros), ZERO).sign([key])


@dataclasses.dataclass
class KeyHistory:
    """The entries that verify, in order, and what was wrong with the rest."""

    entries: list[KeyEntry]
    problems: list[str]
    notes: list[bytes]

    def keys(self, name: str) -> list[VerifyKey]:
        return [e.verify_key(name) for e in self.entries]

    def validity(self, key_id: str) -> tuple[int, int | None] | None:
        """[from, until) in microseconds for a key of the history (until None: the current key)."""
        for i, e in enumerate(self.entries):
            if e.key_id == key_id:
                nxt = self.entries[i + 1].valid_from_micros if i + 1 < len(self.entries) else None
                return e.valid_from_micros, nxt
        return None


def _signers(note: bytes, keys: Sequence[VerifyKey]) -> set[str]:
    """Key ids of ``keys`` whose signature on the note verifies."""
    text, sigs = split_note(note)
    out = set()
    for sig in sigs:
        for k in keys:
            if (sig.name, sig.key_hash) == (k.name, k.note_hash):
                try:
                    k.public.verify(sig.signature, text.encode())
                    out.add(k.key_id)
                except Exception:  # noqa: BLE001 - a bad signature is simply not a signer
                    pass
    return out


def load_history(store: ObjectReader, journal_id: str, key_name: str, trusted: Sequence[VerifyKey] | None) -> KeyHistory:
    """Read and check the chain of entries. With ``trusted`` None, entry 0 is taken on its own
    signature (the writer checking its own store); otherwise entry 0's key, or any later entry's
    key, must be trusted for the chain to be accepted from there on."""
    names = sorted(o.name for o in store.list(HISTORY_PREFIX))
    notes: list[tuple[str, bytes]] = []
    for n, name in enumerate(names):
        if name != entry_name(n):
            return check_history(notes, journal_id, key_name, trusted,
                                 [f"{name}: expected {entry_name(n)} (an entry is missing or misnamed)"])
        notes.append((name, store.get(name)))
    return check_history(notes, journal_id, key_name, trusted)


def check_history(notes: Sequence[tuple[str, bytes]], journal_id: str, key_name: str,
                  trusted: Sequence[VerifyKey] | None, problems: Sequence[str] = ()) -> KeyHistory:
    """The accepted prefix of entries 0, 1, ... given as (name, note) in order (see ``load_history``)."""
    history = KeyHistory([], list(problems), [])
    trusted_ids = None if trusted is None else {k.key_id for k in trusted}
    prev: KeyEntry | None = None
    for n, (name, note) in enumerate(notes):
        try:
            entry = KeyEntry.parse(split_note(note)[0])
        except NoteError as e:
            history.problems.append(f"{name}: {e}")
            break
        own = entry.verify_key(key_name)
        signers = _signers(note, [own] + ([prev.verify_key(key_name)] if prev else []))
        if entry.journal != journal_id or entry.entry != n:
            history.problems.append(f"{name}: names another journal or entry number")
        elif own.key_id not in signers:
            history.problems.append(f"{name}: not signed by the key it introduces")
        elif prev is not None and (prev.key_id not in signers or entry.prev_entry != prev.entry_hash()):
            history.problems.append(f"{name}: not signed by the key it retires, or not linked to entry {n - 1}")
        elif prev is not None and entry.valid_from_micros <= prev.valid_from_micros:
            history.problems.append(f"{name}: valid from {entry.valid_from}, not after entry {n - 1}")
        elif prev is None and entry.prev_entry != ZERO:
            history.problems.append(f"{name}: entry 0 links to an earlier entry")
        elif len(split_note(note)[1]) != (1 if prev is None else 2):
            history.problems.append(f"{name}: carries other signatures than its keys'")
        else:
            history.entries.append(entry)
            history.notes.append(note)
            prev = entry
            continue
        break
    if trusted_ids is not None and history.entries:
        # Trust flows forward along signatures: start at the first entry whose key the caller trusts.
        start = next((i for i, e in enumerate(history.entries) if e.key_id in trusted_ids), None)
        if start is None:
            history.problems.append("no key of the history is a trusted key")
            history.entries, history.notes = [], []
        elif start:
            history.entries, history.notes = history.entries[start:], history.notes[start:]
    return history
