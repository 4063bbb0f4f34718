"""S3 Object Lock as a store sees it: an object's lock, and the one rule every change to it obeys."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Protocol

from ..errors import RetentionError
from .layout import LOCK_MODES as MODES


class LockPolicy(Protocol):
    """What a store locks objects with: an Object Lock mode and period (``RetentionPolicy`` is one).
    A protocol, so that storage needs nothing of the format modules that name one."""

    @property
    def mode(self) -> str: ...

    @property
    def days(self) -> int: ...

    def retain_until(self, now: dt.datetime) -> dt.datetime: ...


NO_LOCK_HINT = (
    "the bucket has no Object Lock: create a bucket with --object-lock-enabled-for-bucket, "
    "or, for development only, write without a retention policy (--allow-unlocked)"
)


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectLockState:
    """What the store says of one object's lock (None where it says nothing)."""

    name: str
    version_id: str | None = None
    size: int = 0
    last_modified: dt.datetime | None = None
    mode: str | None = None
    retain_until: dt.datetime | None = None
    legal_hold: bool = False


def check_extension(state: ObjectLockState, until: dt.datetime, mode: str | None) -> None:
    """Refuse (RetentionError) a change to ``state``'s lock that would shorten or weaken it."""
    if until.tzinfo is None:
        raise RetentionError(f"{state.name}: a retain-until date needs a time zone")
    if state.retain_until is not None and until < state.retain_until:
        raise RetentionError(
            f"refused: {state.name} is retained until {state.retain_until:%Y-%m-%dT%H:%M:%SZ}; "
            f"{until.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ} would shorten it",
            hint="a retention can only be lengthened: give a later date")
    if mode is not None and mode not in MODES:
        raise RetentionError(f"retention mode must be COMPLIANCE or GOVERNANCE, not {mode!r}")
    if state.mode == "COMPLIANCE" and mode == "GOVERNANCE":
        raise RetentionError(f"refused: {state.name} is locked in COMPLIANCE mode, which never becomes GOVERNANCE")
