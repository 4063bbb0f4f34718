"""The trust core's inputs, read from a store: journal.json and the key history, fed to :mod:`.keyring`.

The only IO of the trust core, kept apart so that the checks themselves stay IO-free; every
reader, the verifier, the writer and proofs start here, so they all trust the same keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..errors import ConfigError, NoteError, NotFoundError
from ..segments.identity import JournalIdentity
from ..segments.keyhistory import HISTORY_PREFIX, KeyEntry
from ..segments.notes import VerifyKey, split_note
from ..storage import layout
from ..storage.base import ObjectReader
from .keyring import KeyRing, check_history


def key_name(journal_id: str) -> str:
    """The signed-note key name of a journal's signing keys."""
    return f"wormjournal/{journal_id}"


@dataclasses.dataclass
class Trust:
    """What a journal's notes are checked against: its identity and its key ring."""

    identity: JournalIdentity
    ring: KeyRing
    keys_from_store: bool  # no keys were given: entry 0 of the history is taken on its own signature
    history_names: tuple[str, ...] = ()  # the key history's objects it was read from, in name order

    @property
    def journal_id(self) -> str:
        return self.identity.journal_id

    def keys(self) -> list[VerifyKey]:
        return self.ring.keys()


def read_identity(store: ObjectReader) -> JournalIdentity:
    """journal.json as stored, parsed (not yet checked against the key history: ``load_trust`` does).
    Raises NotFoundError when it is missing, ConfigError when it is not a journal identity."""
    try:
        data = store.get(layout.JOURNAL_OBJECT)
    except NotFoundError as e:
        raise NotFoundError(
            f"no journal in {getattr(store, 'url', store)}: {layout.JOURNAL_OBJECT} is missing",
            hint="create one with `wormjournal init STORE`",
        ) from e
    return JournalIdentity.decode(data)


def history_notes(store: ObjectReader) -> list[tuple[str, bytes]]:
    """The key history's objects (name, bytes), in name order."""
    return [(o.name, store.get(o.name)) for o in store.list(HISTORY_PREFIX)]


def load_trust(store: ObjectReader, public_keys: Sequence[VerifyKey] | None = None) -> Trust:
    """journal.json and the key history of ``store``, checked (nothing raised for what is wrong in
    them: see ``trust.ring.all_problems()``). ``public_keys`` None trusts entry 0 on its own signature.

    Raises NotFoundError when the store holds no journal at all (neither journal.json nor a key
    history), StorageError when it cannot be read.
    """
    problems: list[str] = []
    try:
        data: bytes | None = store.get(layout.JOURNAL_OBJECT)
    except NotFoundError:
        data = None
    try:
        notes = history_notes(store)
    except NotFoundError as e:  # the store itself is not there
        raise NotFoundError(f"no journal in {getattr(store, 'url', store)}: {e}",
                            hint="create one with `wormjournal init STORE`") from e
    identity: JournalIdentity | None = None
    if data is not None:
        try:
            identity = JournalIdentity.decode(data)
        except ConfigError as e:
            problems.append(f"journal.json: {e}")
    if identity is None:
        entry0 = _entry0(notes)
        if entry0 is None:
            if data is None:
                raise NotFoundError(f"no journal in {getattr(store, 'url', store)}: {layout.JOURNAL_OBJECT} is missing",
                                    hint="create one with `wormjournal init STORE`")
            raise ConfigError(problems[0])
        identity = JournalIdentity(journal_id=entry0.journal, created="", key_name=key_name(entry0.journal))
    name = key_name(identity.journal_id)
    trusted = None if public_keys is None else [VerifyKey(name, k.public) for k in public_keys]
    ring = check_history(notes, identity.journal_id, name, trusted, identity=data)
    ring.identity_problems += problems
    if identity.key_name != name:
        ring.identity_problems.append(f"journal.json names key name {identity.key_name!r}, not {name!r}")
    return Trust(identity, ring, public_keys is None, tuple(name for name, _ in notes))


def _entry0(notes: list[tuple[str, bytes]]) -> KeyEntry | None:
    if not notes:
        return None
    try:
        return KeyEntry.parse(split_note(notes[0][1])[0])
    except NoteError:
        return None
