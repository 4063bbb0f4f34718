"""Which retention policy is in force (FORMAT.md 9): journal.json's, then the signed policy objects
that only strengthen it. IO-free: fed the objects' names and bytes; the writer locks by it and
``verify`` reports what it passed over, so nothing unsigned steers how objects are locked.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence

from ..errors import ConfigError, NoteError
from ..segments.identity import RetentionPolicy
from ..segments.notes import SigningKey, VerifyKey, open_note
from ..storage import layout

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

    def sign(self, key: SigningKey) -> bytes:
        """The policy object: a signed note whose text is the policy's one line of canonical JSON."""
        return key.sign_note(self.encode().decode())

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


def policy_in_force(objects: Iterable[tuple[str, bytes]], base: RetentionPolicy,
                    keys: Sequence[VerifyKey]) -> tuple[PolicySet, list[str]]:
    """The policy in force and the problems found on the way (in words), from the objects under
    ``retention/policy/`` (name, bytes) in name order. ``base`` is the policy of ``journal.json`` (which
    the key history pins); ``keys`` the journal's trusted keys. A policy object must be a note signed
    by one of them: an unsigned one (format 1), a forged, damaged or out-of-sequence one, or one that
    weakens its predecessor is passed over (the one before it stays in force) and named in the problems.
    Any key of the history may sign one: a retired key could at most strengthen the policy."""
    current = PolicySet(journal=base)
    problems: list[str] = []
    for name, data in objects:
        n = layout.parse_retention_policy(name)
        if n is None:
            why = ("an unsigned policy object (format 1): not in force; `wormjournal retention set` writes a "
                   "signed one" if layout.is_unsigned_retention_policy(name) else "not a retention policy object name")
            problems.append(f"{name}: {why}")
            continue
        try:
            text, _ = open_note(data, list(keys))
            new = PolicySet.decode(text.encode(), where=name)
        except NoteError as e:
            problems.append(f"{name} is not signed by a key of the journal: {e}")
            continue
        except ConfigError as e:
            problems.append(str(e))
            continue
        if new.number != n or n <= current.number:
            problems.append(f"{name}: numbered {new.number}, after policy {current.number}")
            continue
        weaker = new.weakenings(current)
        if weaker:
            problems.append(f"{name} weakens the policy and is not in force: " + "; ".join(weaker))
            continue
        current = new
    return current, problems
