"""The journal's retention policy: an Object Lock mode and a period.

Every object is written with an explicit mode and retain-until date from this
policy, never relying on the bucket default. The library only ever sets a
retention when it creates an object; it has no operation that shortens or
weakens one.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from .. import steps
from ..errors import ConfigError, ConflictError, RetentionError
from ..segments.identity import DAYS_PER_YEAR, MODES, RetentionPolicy
from ..segments.notes import SigningKey, VerifyKey
from ..storage import layout
from ..storage.base import ObjectReader, Store
from ..storage.objectlock import NO_LOCK_HINT, ObjectLockState, check_extension
from ..trust import load_trust
from ..trust.policy import POLICY_FORMAT, PolicySet, policy_in_force

__all__ = ["DAYS_PER_YEAR", "MODES", "NO_LOCK_HINT", "POLICY_FORMAT", "RETENTION_EVENT_TYPES", "RETENTION_EXECUTION",
           "RETENTION_STREAM", "ObjectLockState", "PolicySet", "RetentionPolicy", "check_extension", "load_policy",
           "parse_period", "prepare_policy", "set_policy", "store_policy"]

# The audit trail of retention actions: events of one execution (FORMAT.md, section 3.3).
RETENTION_EXECUTION = "wormjournal-retention"
RETENTION_STREAM = "retention"
RETENTION_EVENT_TYPES = frozenset({"legal_hold_placed", "legal_hold_released", "retention_extended",
                                   "retention_policy_set"})
_PERIOD = re.compile(r"(\d+)\s*([dy])")


def parse_period(text: str) -> int:
    """Days in a period written as ``<n>d`` or ``<n>y`` (e.g. ``30d``, ``7y``)."""
    m = _PERIOD.fullmatch(text.strip().lower())
    if not m or int(m[1]) < 1:
        raise ConfigError(f"retention period {text!r} is not like 30d or 7y")
    n = int(m[1])
    return n * DAYS_PER_YEAR if m[2] == "y" else n


def load_policy(store: ObjectReader, base: RetentionPolicy,
                keys: Sequence[VerifyKey] | None = None) -> tuple[PolicySet, list[str]]:
    """The journal's policy now, and the problems found on the way (the trust core's
    ``policy_in_force`` over the store's policy objects). ``keys`` None: the store's own key history's."""
    if keys is None:
        keys = load_trust(store).keys()
    objects = ((info.name, store.get(info.name)) for info in store.list(layout.RETENTION_POLICY_PREFIX))
    return policy_in_force(objects, base, keys)


def prepare_policy(store: ObjectReader, base: RetentionPolicy, key: SigningKey,
                   keys: Sequence[VerifyKey] | None = None, *, journal: RetentionPolicy | None = None,
                   tenant: tuple[str, RetentionPolicy] | None = None, by: str, reason: str,
                   now: dt.datetime | None = None) -> tuple[PolicySet, bytes]:
    """The next policy, strengthening the journal's or one tenant's, and its object signed with ``key``
    (the journal's current signing key; ``keys`` are its trusted keys); nothing is written.

    Raises RetentionError when the change would shorten a period or turn COMPLIANCE into
    GOVERNANCE, or changes nothing.
    """
    current, _ = load_policy(store, base, keys)
    tenants = dict(current.tenants)
    if tenant is not None:
        tenants[tenant[0]] = tenant[1]
    new = PolicySet(
        journal=journal or current.journal, tenants=tenants, number=current.number + 1,
        set_at=(now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"), set_by=by, reason=reason,
    )
    weaker = new.weakenings(current)
    if weaker:
        raise RetentionError("refused: " + "; ".join(weaker),
                             hint="a retention can only be lengthened, and COMPLIANCE never becomes GOVERNANCE")
    if new.journal == current.journal and new.tenants == current.tenants:
        raise RetentionError("the policy is already that: nothing to change")
    return new, new.sign(key)


def store_policy(store: Store, number: int, strongest: RetentionPolicy, note: bytes) -> None:
    """Write policy object ``number`` (locked as ``strongest``, the strongest policy it sets). Idempotent:
    the same bytes stored already are fine. Raises ConflictError when another change was stored under
    that number (repeat the command)."""
    if hasattr(store, "with_retention"):
        store = store.with_retention(strongest)
    name = layout.retention_policy(number)
    try:
        store.put(name, note)
    except ConflictError:
        if store.get(name) != note:
            raise
    steps.reached("retention.policy_stored")


def set_policy(store: Store, base: RetentionPolicy, key: SigningKey, keys: Sequence[VerifyKey] | None = None, *,
               journal: RetentionPolicy | None = None, tenant: tuple[str, RetentionPolicy] | None = None, by: str,
               reason: str, now: dt.datetime | None = None) -> PolicySet:
    """Strengthen the policy: the journal's, or one tenant's, signed with ``key`` (the journal's
    current signing key; ``keys`` are its trusted keys). Returns the new policy.

    Raises RetentionError, before anything is written, when the change would shorten
    a period or turn COMPLIANCE into GOVERNANCE; ConflictError when another change
    was stored at the same time (repeat the command).
    """
    new, note = prepare_policy(store, base, key, keys, journal=journal, tenant=tenant, by=by, reason=reason, now=now)
    store_policy(store, new.number, new.strongest(), note)
    return new
