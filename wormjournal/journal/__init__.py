"""The write path: WAL, durable append, group commit, sealing, crash recovery, one-writer lock."""

from .config import JournalConfig
from .writer import DEFAULT_STREAM, Journal

__all__ = ["DEFAULT_STREAM", "Journal", "JournalConfig"]
