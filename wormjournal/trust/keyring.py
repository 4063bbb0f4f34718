"""Which keys sign a journal, and where each may sign (FORMAT.md, 6.1): the key history, checked once.

Fed the history's notes (bytes, in entry order), the bytes of ``journal.json`` and the keys the
caller trusts out of band; does no IO. Trust flows forward along the history from the first
trusted key. A key signs a stream's segments from the cutover its entry names (format 2) up to
the next entry's cutover: by position in the stream, never by a time the signer writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..errors import NoteError
from ..events import parse_ts
from ..segments.keyhistory import ZERO, KeyEntry, entry_name, identity_hash
from ..segments.notes import VerifyKey, signers, split_note


@dataclasses.dataclass
class KeyRing:
    """The accepted key history (entries 0.. that verify) and what was wrong with the rest.

    ``first_trusted`` is the first entry whose key the caller trusts: that key and every later
    one are trusted. ``problems`` are findings of kind ``key_history`` (``identity`` for
    journal.json); ``notices`` say what a format 1 history cannot prove.
    """

    name: str  # the note key name, wormjournal/<journal_id>
    entries: list[KeyEntry]
    notes: list[bytes]
    first_trusted: int | None
    problems: list[str]
    identity_problems: list[str] = dataclasses.field(default_factory=list)
    notices: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.identity_problems and self.first_trusted is not None

    def all_problems(self) -> list[tuple[str, str]]:
        return [("key_history", p) for p in self.problems] + [("identity", p) for p in self.identity_problems]

    def keys(self) -> list[VerifyKey]:
        """The trusted keys: those of the entries from the first trusted one on."""
        if self.first_trusted is None:
            return []
        return [e.verify_key(self.name) for e in self.entries[self.first_trusted :]]

    def committed_streams(self) -> dict[str, int]:
        """Each stream a trusted entry names, with the most segments an entry says it had: a rotation
        saw them, so the stream can never have fewer (a lower bound on its length, and on which exist)."""
        out: dict[str, int] = {}
        if self.first_trusted is None:
            return out
        for e in self.entries[self.first_trusted :]:
            for stream, at in (e.cutovers or {}).items():
                out[stream] = max(out.get(stream, 0), at)
        return out

    def entry_of(self, key_id: str) -> int | None:
        return next((i for i, e in enumerate(self.entries) if e.key_id == key_id), None)

    def valid_entry(self, stream: str, segment: int, time: str | None = None) -> int:
        """The entry whose key signs segment ``segment`` of ``stream``: the last entry whose cutover
        for the stream (0 for a stream it does not name: one created after it) is at or before the
        segment. A format 1 entry has no cutovers; it takes over from its ``valid_from`` by the
        manifest's ``time`` (``time`` None: never)."""
        valid = 0
        sealed = _micros(time) if time is not None else None
        for n, e in enumerate(self.entries[1:], start=1):
            if e.cutovers is None:
                starts = sealed is not None and sealed >= e.valid_from_micros
            else:
                starts = segment >= e.cutovers.get(stream, 0)
            if starts:
                valid = n
        return valid

    def signer_problem(self, key_id: str, stream: str, segment: int, time: str | None = None) -> str | None:
        """Why ``key_id`` may not sign manifest ``segment`` of ``stream``, or None (FORMAT.md 6.1)."""
        n = self.entry_of(key_id)
        if n is None:
            return f"key {key_id} is not in the journal's key history"
        valid = self.valid_entry(stream, segment, time)
        if n == valid:
            return None
        if n < valid:
            return (f"key {key_id} (entry {n}) was retired by entry {valid}, which signs segment {segment} of "
                    f"stream {stream} on")
        return f"key {key_id} (entry {n}) signs stream {stream} only from a later segment than {segment}"

    def checkpoint_signer_problem(self, key_id: str, stream: str, tree_size: int,
                                  time: str | None = None) -> str | None:
        """A checkpoint of ``tree_size`` segments is signed by the key of its last segment or a later one
        (a writer may finish a checkpoint after a rotation), never by a key retired before it."""
        n = self.entry_of(key_id)
        if n is None:
            return f"key {key_id} is not in the journal's key history"
        valid = self.valid_entry(stream, max(tree_size - 1, 0), time)
        if n < valid:
            return f"key {key_id} (entry {n}) was retired by entry {valid} before this checkpoint's last segment"
        return None

    def receipt_signer_problem(self, key_id: str, stream: str, segment: int, time: str | None = None) -> str | None:
        """An erasure receipt sealed in ``segment`` is signed by that segment's key or an earlier one
        (it was signed when appended, before its seal)."""
        n = self.entry_of(key_id)
        if n is None:
            return f"key {key_id} is not in the journal's key history"
        if n > self.valid_entry(stream, segment, time):
            return f"key {key_id} (entry {n}) did not sign yet when segment {segment} of stream {stream} was sealed"
        return None


def _micros(time: str) -> int | None:
    try:
        return parse_ts(time)
    except Exception:  # noqa: BLE001 - ValidationError or ValueError: not a time
        return None


def check_history(notes: Sequence[tuple[str, bytes]], journal_id: str, key_name: str,
                  trusted: Sequence[VerifyKey] | None, *, identity: bytes | None = None,
                  problems: Sequence[str] = ()) -> KeyRing:
    """The key ring from the history's notes ``(object name, bytes)`` in entry order.

    ``trusted`` None: entry 0 is taken on its own signature (a writer checking its own store).
    ``identity`` is the bytes of journal.json, which format 2 entries pin (None: it is missing).
    A journal without entry 0 is damaged: that is a problem, never a history to do without.
    """
    ring = KeyRing(key_name, [], [], None, list(problems))
    if not notes and not ring.problems:
        ring.problems.append(f"the journal has no key history ({entry_name(0)} is missing; it is written at creation)")
    prev: KeyEntry | None = None
    for n, (name, note) in enumerate(notes):
        problem = _entry_problem(n, name, note, prev, journal_id, key_name)
        if isinstance(problem, str):
            ring.problems.append(problem)
            break
        ring.entries.append(problem)
        ring.notes.append(note)
        prev = problem
    pinned = [e for e in ring.entries if e.identity is not None]
    if identity is None:
        ring.identity_problems.append("journal.json is missing")
    elif pinned:
        if any(e.identity != identity_hash(identity) for e in pinned):
            ring.identity_problems.append("journal.json is not the one the key history pins (replaced or altered)")
    elif ring.entries:
        ring.notices.append("format 1 key history: journal.json is not pinned by a signature")
    if any(e.cutovers is None for e in ring.entries[1:]):
        ring.notices.append("format 1 key rotation: key validity rests on the manifests' own time lines")
    if trusted is None:
        ring.first_trusted = 0 if ring.entries else None
    else:
        ids = {k.key_id for k in trusted}
        ring.first_trusted = next((i for i, e in enumerate(ring.entries) if e.key_id in ids), None)
        if ring.first_trusted is None and ring.entries:
            ring.problems.append("no key of the key history is a trusted key")
    return ring


def _entry_problem(n: int, name: str, note: bytes, prev: KeyEntry | None, journal_id: str,
                   key_name: str) -> KeyEntry | str:
    """Entry ``n`` if it is accepted after ``prev``, else why not."""
    if name != entry_name(n):
        return f"{name}: expected {entry_name(n)} (an entry is missing or misnamed)"
    try:
        text, sigs = split_note(note)
        entry = KeyEntry.parse(text)
    except NoteError as e:
        return f"{name}: {e}"
    own = entry.verify_key(key_name)
    signed = signers(note, [own] + ([prev.verify_key(key_name)] if prev else []))
    if entry.journal != journal_id or entry.entry != n:
        return f"{name}: names another journal or entry number"
    if own.key_id not in signed:
        return f"{name}: not signed by the key it introduces"
    if prev is None:
        if entry.prev_entry != ZERO:
            return f"{name}: entry 0 links to an earlier entry"
        if len(sigs) != 1:
            return f"{name}: carries other signatures than its key's"
        return entry
    if prev.key_id not in signed or entry.prev_entry != prev.entry_hash():
        return f"{name}: not signed by the key it retires, or not linked to entry {n - 1}"
    if entry.valid_from_micros <= prev.valid_from_micros:
        return f"{name}: valid from {entry.valid_from}, not after entry {n - 1}"
    if len(sigs) != 2:
        return f"{name}: carries other signatures than its two keys'"
    if prev.identity is not None and entry.identity is None:
        return f"{name}: a format 1 entry after a format 2 one"
    if prev.identity is not None and entry.identity != prev.identity:
        return f"{name}: pins another journal.json than entry {n - 1}"
    if entry.cutovers is not None and prev.cutovers is not None:
        for stream, at in prev.cutovers.items():
            if entry.cutovers.get(stream, -1) < at:
                return f"{name}: moves stream {stream}'s cutover back (or drops the stream)"
    return entry
