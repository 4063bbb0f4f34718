"""The journal's retention policy: an Object Lock mode and a period.

Every object is written with an explicit mode and retain-until date from this
policy, never relying on the bucket default. The library only ever sets a
retention when it creates an object; it has no operation that shortens or
weakens one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterable
from typing import Any

from ..errors import ConfigError, RetentionError
from ..segments.identity import DAYS_PER_YEAR, MODES, RetentionPolicy
from ..storage import layout
from ..storage.base import ObjectReader, Store
from ..storage.objectlock import NO_LOCK_HINT, ObjectLockState, check_extension

__all__ = ["DAYS_PER_YEAR", "MODES", "NO_LOCK_HINT", "POLICY_FORMAT", "RETENTION_EVENT_TYPES", "RETENTION_EXECUTION",
           "RETENTION_STREAM", "ObjectLockState", "PolicySet", "RetentionPolicy", "check_extension", "load_policy",
           "parse_period", "set_policy"]

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


POLICY_FORMAT = "wormjournal/retention-policy/v1"
_POLICY_KEYS = {"format", "number", "journal", "tenants", "set_at", "set_by", "reason"}


@dataclasses.dataclass(frozen=True)
class PolicySet:
    """The journal's retention policy now: one for the journal, and stronger ones for some tenants.

    Number 0 is the policy ``journal.json`` was created with; each later one is a
    write-once object ``retention/policy/<number>.json`` that may only strengthen
    its predecessor (FORMAT.md, "Retention policy"). A segment and its manifest are
    written under the strongest policy of the journal and of the tenants whose
    events they hold; every other object under the journal's.
    """

    journal: RetentionPolicy
    tenants: dict[str, RetentionPolicy] = dataclasses.field(default_factory=dict)
    number: int = 0
    set_at: str | None = None
    set_by: str | None = None
    reason: str | None = None

    def for_tenants(self, tenants: Iterable[str | None]) -> RetentionPolicy:
        """The policy an object holding events of ``tenants`` is written with."""
        policy = self.journal
        for t in tenants:
            if t is not None and t in self.tenants:
                policy = policy.stronger(self.tenants[t])
        return policy

    def strongest(self) -> RetentionPolicy:
        return self.for_tenants(self.tenants)

    def weakenings(self, earlier: PolicySet) -> list[str]:
        """What this policy weakens of ``earlier``, in words (empty when it only strengthens)."""
        out = []
        if not self.journal.at_least(earlier.journal):
            out.append(f"the journal's policy {self.journal.mode} {self.journal.days}d is weaker than "
                       f"{earlier.journal.mode} {earlier.journal.days}d")
        for tenant, old in sorted(earlier.tenants.items()):
            new = self.for_tenants([tenant])
            if not new.at_least(old):
                out.append(f"tenant {tenant!r}: {new.mode} {new.days}d is weaker than {old.mode} {old.days}d")
        return out

    def encode(self) -> bytes:
        raw = {
            "format": POLICY_FORMAT, "number": self.number, "journal": self.journal.to_json(),
            "tenants": {t: p.to_json() for t, p in sorted(self.tenants.items())},
            "set_at": self.set_at, "set_by": self.set_by, "reason": self.reason,
        }
        return (json.dumps(raw, sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes, *, where: str) -> PolicySet:
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict) or set(raw) != _POLICY_KEYS or raw["format"] != POLICY_FORMAT:
                raise ValueError(f"not a {POLICY_FORMAT} object with the keys {sorted(_POLICY_KEYS)}")
            if not isinstance(raw["tenants"], dict) or not isinstance(raw["number"], int):
                raise ValueError("tenants must be an object and number an integer")
            return cls(
                journal=RetentionPolicy.from_json(raw["journal"]),
                tenants={str(t): RetentionPolicy.from_json(p) for t, p in raw["tenants"].items()},
                number=raw["number"], set_at=raw["set_at"], set_by=raw["set_by"], reason=raw["reason"],
            )
        except (ValueError, TypeError, ConfigError) as e:
            raise ConfigError(f"{where} is not a retention policy: {e}") from e

    def describe_lines(self) -> list[str]:
        lines = [f"journal: {self.journal.describe()}"]
        for tenant in sorted(self.tenants):
            eff = self.for_tenants([tenant])
            lines.append(f"tenant {tenant}: {eff.mode} for {eff.days} days (segments holding its events, "
                         "and their manifests, are kept this long)")
        return lines


def load_policy(store: ObjectReader, base: RetentionPolicy) -> tuple[PolicySet, list[str]]:
    """The journal's policy now, and the problems found on the way (in words).

    ``base`` is the policy of ``journal.json``. A policy object that is damaged, out
    of sequence or weakens its predecessor is passed over (the one before it stays in
    force) and named in the problems: the lock audit reports them.
    """
    current = PolicySet(journal=base)
    problems: list[str] = []
    for info in store.list(layout.RETENTION_POLICY_PREFIX):
        n = layout.parse_retention_policy(info.name)
        if n is None:
            problems.append(f"{info.name}: not a retention policy object name")
            continue
        try:
            new = PolicySet.decode(store.get(info.name), where=info.name)
        except ConfigError as e:
            problems.append(str(e))
            continue
        if new.number != n or n <= current.number:
            problems.append(f"{info.name}: numbered {new.number}, after policy {current.number}")
            continue
        weaker = new.weakenings(current)
        if weaker:
            problems.append(f"{info.name} weakens the policy and is not in force: " + "; ".join(weaker))
            continue
        current = new
    return current, problems


def set_policy(store: Store, base: RetentionPolicy, *, journal: RetentionPolicy | None = None,
               tenant: tuple[str, RetentionPolicy] | None = None, by: str, reason: str,
               now: dt.datetime | None = None) -> PolicySet:
    """Strengthen the policy: the journal's, or one tenant's. Returns the new policy.

    Raises RetentionError, before anything is written, when the change would shorten
    a period or turn COMPLIANCE into GOVERNANCE; ConflictError when another change
    was stored at the same time (repeat the command).
    """
    current, _ = load_policy(store, base)
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
    if hasattr(store, "with_retention"):
        store = store.with_retention(new.strongest())
    store.put(layout.retention_policy(new.number), new.encode())
    return new
