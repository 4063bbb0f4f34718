"""The retention audit trail kept by a stream's writer: each retention action applied to the store, then
recorded as an event of the stream and sealed, exactly once whichever step a crash came after (FORMAT.md 3.3;
the pending records are :mod:`wormjournal.retention.actions`').

The writer (:class:`~wormjournal.journal.writer.Journal`) owns a :class:`RetentionTrail` and hands it what it
needs of the writer as callables: appending a library event, sealing and reading this stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import steps
from ..errors import ConflictError, JournalError, ValidationError
from ..index import Reader
from ..retention.actions import (
    PENDING_DIR,
    RetentionAction,
    apply_action,
    pending_actions,
    remove_pending,
    write_pending,
)
from ..retention.audit import DEFAULT_WORKERS, Progress
from ..retention.policy import RETENTION_EVENT_TYPES, RETENTION_EXECUTION
from ..storage.base import Store

log = logging.getLogger(__name__)


class RetentionTrail:
    """The retention actions of one stream. Pending records live in ``wal_dir/pending/``, authenticated by the
    WAL key and bound to ``context`` (``<journal id>/<stream>``). ``append`` appends one library event and
    returns its seq; ``seal`` seals the stream; ``reader()`` reads it, unsealed events included."""

    def __init__(self, store: Store, wal_dir: Path, wal_key: bytes, context: str, *,
                 append: Callable[[Mapping[str, Any]], int], seal: Callable[[], object],
                 reader: Callable[[], Reader]) -> None:
        self.store = store
        self.directory = wal_dir / PENDING_DIR
        self._wal_key = wal_key
        self._context = context
        self._append = append
        self._seal = seal
        self._reader = reader

    def record(self, action: RetentionAction, *, workers: int = DEFAULT_WORKERS,
               progress: Progress | None = None) -> int:
        """See :meth:`wormjournal.Journal.record_retention`."""
        if action.event_type not in RETENTION_EVENT_TYPES:
            raise ValidationError("event_type", f"not a retention action: {action.event_type!r}")
        write_pending(self.directory, action, self._wal_key, self._context)
        steps.reached("retention.pending_written")
        try:
            apply_action(self.store, action, workers=workers, progress=progress)
        except ConflictError:
            remove_pending(self.directory, action.op)  # the policy object was not stored: the action never happened
            raise
        return self._finish(action, append=True)

    def resume(self) -> None:
        """Finish the retention actions a crash cut short (at open), oldest first."""
        for action in pending_actions(self.directory, self._wal_key, self._context):
            self._resume(action)

    def _resume(self, action: RetentionAction) -> None:
        """Unless its event is in this stream already, apply its steps again (idempotent); then record it. A
        step that fails now leaves it pending for the next open, and this one goes on; one that can no longer
        be applied (its policy number was taken by another change) is dropped: none of it happened."""
        recorded = self._event_of(action.op) is not None
        if not recorded:
            log.warning("finishing the retention action %s (%s) that a crash interrupted", action.op,
                        action.event_type)
            try:
                apply_action(self.store, action)
            except ConflictError:
                log.warning("dropping the retention action %s: another policy object took its number, so it was "
                            "never applied", action.op)
                remove_pending(self.directory, action.op)
                return
            except JournalError as e:
                log.warning("the retention action %s stays pending (finished at the next open): %s", action.op, e)
                return
        self._finish(action, append=not recorded)

    def _finish(self, action: RetentionAction, *, append: bool) -> int:
        """Record an applied retention action: append its event (``append``; else it is in this stream), seal,
        forget its pending record. Returns the event's seq (-1 when it was not appended now)."""
        seq = -1
        if append:
            seq = self._append({"event_type": action.event_type, "execution_id": RETENTION_EXECUTION,
                                "payload": action.payload(), "key_scope": "none"})
            steps.reached("retention.event_appended")
        self._seal()
        remove_pending(self.directory, action.op)
        steps.reached("retention.done")
        return seq

    def _event_of(self, op: str) -> int | None:
        """The seq of the audit-trail event of retention action ``op`` in this stream (sealed or not), or None."""
        for e in self._reader().events(RETENTION_EXECUTION):
            if isinstance(e.payload, dict) and e.payload.get("op") == op:
                return e.seq
        return None
