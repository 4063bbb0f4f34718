"""Per-execution, per-thread and per-event lookup, and verified reads (the Reader)."""

from .model import Event, ExecutionSummary, ResumePoint
from .reader import Reader

__all__ = ["Event", "ExecutionSummary", "Reader", "ResumePoint"]
