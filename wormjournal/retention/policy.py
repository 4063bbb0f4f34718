"""The journal's retention policy: an Object Lock mode and a period.

Every object is written with an explicit mode and retain-until date from this
policy, never relying on the bucket default. The library only ever sets a
retention when it creates an object; it has no operation that shortens or
weakens one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from ..errors import ConfigError

MODES = ("COMPLIANCE", "GOVERNANCE")
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
