"""Findings, and where they go: collected into a report (the verifier) or raised at the first (readers).

Every check of the trust core reports through a :class:`Sink`, so the verifier and every read
path run the same checks and differ only in what they do with a broken promise.
"""

from __future__ import annotations

import dataclasses

from ..errors import IntegrityError


@dataclasses.dataclass(frozen=True)
class Finding:
    """One broken promise, located by stream, segment and seq where they apply."""

    kind: str
    message: str
    stream: str | None = None
    segment: int | None = None
    seq: int | None = None
    object: str | None = None

    def where(self) -> str:
        parts = []
        if self.stream is not None:
            parts.append(f"stream {self.stream}")
        if self.segment is not None:
            parts.append(f"segment {self.segment}")
        if self.seq is not None:
            parts.append(f"seq {self.seq}")
        if self.object is not None:
            parts.append(self.object)
        return ", ".join(parts) or "journal"


class Sink:
    """Receives findings. ``collect=True`` keeps them all (the auditor's report); otherwise the first
    one raises :class:`~wormjournal.errors.IntegrityError` carrying it (every read path)."""

    def __init__(self, *, collect: bool) -> None:
        self.collect = collect
        self.findings: list[Finding] = []

    def __call__(self, kind: str, message: str, *, stream: str | None = None, segment: int | None = None,
                 seq: int | None = None, object: str | None = None) -> None:  # noqa: A002 - the finding's field
        self.add(Finding(kind, message, stream=stream, segment=segment, seq=seq, object=object))

    def add(self, finding: Finding) -> None:
        if not self.collect:
            raise IntegrityError(f"{finding.where()}: {finding.message} ({finding.kind})", seq=finding.seq,
                                 finding=finding)
        self.findings.append(finding)

    def extend(self, findings: list[Finding]) -> None:
        for f in findings:
            self.add(f)
