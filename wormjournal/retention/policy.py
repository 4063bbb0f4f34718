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
from ..storage import layout
from ..storage.base import ObjectReader, Store

MODES = ("COMPLIANCE", "GOVERNANCE")
# The audit trail of retention actions: events of one execution (FORMAT.md, section 3.3).
RETENTION_EXECUTION = "wormjournal-retention"
RETENTION_STREAM = "retention"
RETENTION_EVENT_TYPES = frozenset({"legal_hold_placed", "legal_hold_released", "retention_extended",
                                   "retention_policy_set"})
_PERIOD = re.compile(r"(\d+)\s*([dy])")
DAYS_PER_YEAR = 366  # a "year" never falls short of a calendar year, leap years included
NO_LOCK_HINT = (
    "the bucket has no Object Lock: create a bucket with --object-lock-enabled-for-bucket, "
    "or, for development only, write without a retention policy (--allow-unlocked)"
)


def parse_period(text: str) -> int:
    """Days in a period written as ``<n>d`` or ``<n>y`` (e.g. ``30d``, ``7y``)."""
    m = _PERIOD.fullmatch(text.strip().lower())
    if not m or int(m[1]) < 1:
        raise ConfigError(f"retention period {text!r} is not like 30d or 7y")
    n = int(m[1])
    return n * DAYS_PER_YEAR if m[2] == "y" else n


@dataclasses.dataclass(frozen=True)
class RetentionPolicy:
    """Object Lock ``mode`` (COMPLIANCE by default) and a period of ``days``."""

    mode: str = "COMPLIANCE"
    days: int = 7 * DAYS_PER_YEAR

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"retention mode must be COMPLIANCE or GOVERNANCE, not {self.mode!r}")
        if not isinstance(self.days, int) or isinstance(self.days, bool) or not 1 <= self.days <= 100 * DAYS_PER_YEAR:
            raise ConfigError(f"retention days must be 1..{100 * DAYS_PER_YEAR}, not {self.days!r}")

    def retain_until(self, now: dt.datetime) -> dt.datetime:
        """The retain-until date of an object written at ``now`` (whole seconds, UTC)."""
        return (now.astimezone(dt.UTC) + dt.timedelta(days=self.days)).replace(microsecond=0) + dt.timedelta(seconds=1)

    def describe(self) -> str:
        kind = (
            "nobody, not even the account root, can delete or overwrite an object or shorten its lock"
            if self.mode == "COMPLIANCE"
            else "only users granted s3:BypassGovernanceRetention can delete an object or shorten its lock"
        )
        return f"{self.mode} for {self.days} days after each object is written: {kind} until then"

    def at_least(self, other: RetentionPolicy) -> bool:
        """Whether this policy keeps every object at least as long and as strictly as ``other``."""
        return self.days >= other.days and (self.mode == "COMPLIANCE" or other.mode == "GOVERNANCE")

    def stronger(self, other: RetentionPolicy) -> RetentionPolicy:
        """The policy that satisfies both: the longer period, COMPLIANCE if either is."""
        mode = "COMPLIANCE" if "COMPLIANCE" in (self.mode, other.mode) else "GOVERNANCE"
        return RetentionPolicy(mode, max(self.days, other.days))

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "days": self.days}

    @classmethod
    def from_json(cls, raw: Any) -> RetentionPolicy:
        if not isinstance(raw, dict) or set(raw) != {"mode", "days"}:
            raise ConfigError(f"a retention policy is {{mode, days}}, not {raw!r}")
        return cls(raw["mode"], raw["days"])


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
