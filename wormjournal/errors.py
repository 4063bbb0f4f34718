"""The error types of wormjournal: one family, all here.

Every error the library raises on purpose is a :class:`JournalError`. The
subclasses are the ones a caller can act on; each carries a ``hint`` that says
what to do next, shown by the CLI. ``tests/test_errors.py`` checks that no other
exception class is defined in the package.
"""

from __future__ import annotations

from typing import Any


class JournalError(Exception):
    """Base of every error raised by wormjournal."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def diagnostics(self) -> str:
        """The message and, when there is one, what to do about it."""
        text = str(self)
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text


class ValidationError(JournalError, ValueError):
    """An event or argument was refused before anything was written."""

    def __init__(self, field: str, message: str, *, where: str | None = None) -> None:
        self.field = field
        self.where = where
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}field {field!r}: {message}")


class ConfigError(JournalError):
    """The journal, its keys or its configuration are missing or inconsistent."""


class KeyRetiredError(ConfigError):
    """The signing key at hand was retired by a later entry of the journal's key history."""

    hint = ("this key directory holds a key that a rotation retired (an old copy?); use the key directory "
            "where `wormjournal rotate-key` ran, which holds the current signing key")


class StorageError(JournalError):
    """Reading or writing the store or the write-ahead log failed."""

    hint = "check the path or bucket, its permissions and free space; no acknowledged event was lost"


class ConflictError(StorageError):
    """A write-once object already exists with different bytes."""

    hint = "an object is never overwritten; another writer or a tampered store may be involved"


class LockedError(JournalError):
    """Another writer holds the stream."""

    hint = "one writer per stream: close the other writer or write to another --stream"


class LeaseHeldError(LockedError):
    """Another writer holds the stream's lease in the store (a writer on another machine or WAL directory)."""

    hint = ("close that writer (or reopen from its WAL directory, which seals what it acknowledged); if it is gone "
            "for good, Journal.open(..., take_over=True) takes the lease and gives up its unsealed events")


class LeaseLostError(LockedError):
    """This writer's lease was taken by another writer: it may append and seal nothing more."""

    hint = ("another writer took the stream over (take_over=True); events this writer acknowledged and did not "
            "seal are given up: they stay in its WAL directory")


class IntegrityError(JournalError):
    """Stored bytes do not match what their hashes or signatures promise.

    ``seq`` names the event at fault when there is one (replay sets it).
    """

    hint = "run `wormjournal verify` for a full report; do not write to this stream until it is understood"

    def __init__(self, message: str, *, hint: str | None = None, seq: int | None = None, finding: Any = None) -> None:
        super().__init__(message, hint=hint)
        self.seq = seq
        self.finding = finding  # the trust core's Finding, when a check of FORMAT.md section 10 raised it

    @property
    def kind(self) -> str | None:
        """The finding's kind (as ``wormjournal verify`` names it), or None."""
        return getattr(self.finding, "kind", None)


class NotFoundError(StorageError):
    """An object or journal that should exist is not there."""

    hint = "check the store path; create a journal with `wormjournal init STORE`"


class WitnessError(JournalError):
    """A witness did not cosign (FORMAT.md 8b): ``status`` is its HTTP status, 0 when it could not be reached. 409
    and 422 mean it holds a checkpoint the submitted one does not extend: a rollback or a fork."""

    hint = "check the witness's URL and key; a refusal as inconsistent is a fork: run `wormjournal verify`"

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class HandlerError(JournalError):
    """A subscription's handler raised on every try for one event (``event``, its ``stream`` and ``seq``); the
    exception of the last try is the cause. The subscription's cursor stays before that event."""

    hint = "fix the handler and run the subscription again: it resumes at this event"

    def __init__(self, message: str, event: Any) -> None:
        super().__init__(message)
        self.event = event


class RetentionError(JournalError):
    """A retention or legal-hold request was refused before it reached the store.

    Raised when it would shorten a retention, turn COMPLIANCE into GOVERNANCE, or
    ask a store for a lock it cannot hold.
    """


class NoteError(JournalError, ValueError):
    """A note that does not parse or whose signature does not verify."""


class ProofError(JournalError):
    """A proof that is malformed or does not prove what it claims."""


class IndexDamaged(IntegrityError):
    """An index object does not match the root its manifest signs (altered, replaced or torn)."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"index object {name} {why}", hint="run `wormjournal verify`; reads go around this object")
        self.name = name


class PageLayoutError(JournalError):
    """A Parquet object whose pages cannot be read on their own (no page index, pages not aligned, a footer
    that does not decode). Readers catch it and read whole row groups, authenticated the same way."""


class KeyStoreError(JournalError):
    """The key store is missing, damaged, or does not fit this journal."""

    hint = "point --key-dir at the directory used at `wormjournal init`; restore it from a backup if it is lost"


class KeyStoreMissingError(KeyStoreError):
    """There is no key store where the journal's keys are."""


class WrongKekError(KeyStoreError):
    """The key-encryption key is not the one that wrapped the data keys."""

    hint = "use the key-encryption key (master key file or KMS key) the journal was created with"


class CorruptKeyError(KeyStoreError):
    """A wrapped data key does not unwrap: its bytes were changed."""


class UnknownKeyError(KeyStoreError):
    """An encrypted payload names a key this key store never held (and never shredded)."""


class UnknownScopeError(JournalError):
    """Shredding was asked for a scope that has no data key."""

    hint = "check the identifier and the scope (--subject, --thread, --execution or --tenant)"
