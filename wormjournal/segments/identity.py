"""journal.json: the journal's identity, written once at creation, and the retention it names (FORMAT.md 9)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from ..errors import ConfigError
from ..storage import layout

FORMAT_NAME = "wormjournal/1"
# A journal created by format 5 or later: it writes heads (FORMAT.md 8a) from its first seal on, so a store
# of it without heads had them removed. Older journals get heads too once sealed by a newer writer.
FORMAT_HEADS = "wormjournal/2"
FORMATS = (FORMAT_NAME, FORMAT_HEADS)
MODES = layout.LOCK_MODES
DAYS_PER_YEAR = 366  # a "year" never falls short of a calendar year, leap years included


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


@dataclasses.dataclass(frozen=True)
class JournalIdentity:
    journal_id: str
    created: str
    key_name: str
    format: str = FORMAT_NAME
    # The Object Lock retention every object is written with; None for a store without locks.
    retention_mode: str | None = None
    retention_days: int | None = None

    @property
    def writes_heads(self) -> bool:
        return self.format == FORMAT_HEADS

    def retention_policy(self) -> RetentionPolicy | None:
        if self.retention_mode is None:
            return None
        return RetentionPolicy(self.retention_mode, int(self.retention_days or 0))

    def encode(self) -> bytes:
        return (json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes) -> JournalIdentity:
        try:
            raw = json.loads(data)
            ident = cls(**raw)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{layout.JOURNAL_OBJECT} is not a wormjournal identity: {e}") from e
        if ident.format not in FORMATS:
            raise ConfigError(f"unsupported journal format {ident.format!r}; this reads {' and '.join(FORMATS)}")
        return ident
