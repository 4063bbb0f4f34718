"""Writing the journal's heads (FORMAT.md 8a) without a coordinator.

Heads are numbered objects written once (``If-None-Match: *`` on S3, an exclusive link on a local directory),
so of writers racing for number n exactly one stores it. Each writer keeps the newest head it knows; after its
seal it writes the next number with its own stream's new checkpoint and every other stream as that head
says. When the number is taken, it lists the heads and reads the newest (verified as any reader would), carries
what it says and tries the number after it: one request per seal without contention, and a stream's entry is
only ever replaced by its own writer, with a larger checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..errors import ConflictError, IntegrityError, NoteError
from ..events import format_ts, now_micros
from ..segments.head import Head, StreamTip
from ..segments.notes import SigningKey, open_note
from ..storage import layout
from ..storage.base import ObjectReader, Store
from ..trust.keyring import KeyRing

log = logging.getLogger(__name__)

MAX_TRIES = 64  # each try starts from the newest head: this many lost races in a row is a store that refuses us


class HeadWriter:
    """The heads one writer (one stream) stores after its seals."""

    def __init__(self, store: ObjectReader, journal_id: str, ring: Callable[[], KeyRing]) -> None:
        self.store = store
        self.journal_id = journal_id
        self._ring = ring
        self._newest: Head | None = None
        self._listed = False

    def _open(self, n: int, data: bytes) -> Head:
        """Head ``n``, verified under the journal's keys. Raises IntegrityError."""
        try:
            text, _ = open_note(data, self._ring().keys())
            head = Head.parse(text, self.journal_id)
        except NoteError as e:
            raise IntegrityError(f"{layout.head(n)} is not a head of this journal: {e}",
                                 hint="run `wormjournal verify`; no head is written on top of it") from e
        if head.number != n:
            raise IntegrityError(f"{layout.head(n)} holds head {head.number}")
        return head

    def newest(self) -> Head | None:
        """The newest head in the store: listed (a writer that seals rarely beside busy ones may be many heads
        behind: one LIST, not a walk of every number it missed)."""
        numbers = [n for o in self.store.list(layout.HEADS_PREFIX) if (n := layout.parse_head(o.name)) is not None]
        if numbers:
            top = max(numbers)
            known = self._newest
            if known is None or top > known.number:
                self._newest = self._open(top, self.store.get(layout.head(top)))
        self._listed = True
        return self._newest

    def publish(self, tip: StreamTip, key: SigningKey, store: Store) -> Head:
        """Store a head naming ``tip`` (this stream's newest checkpoint) and what the newest head says of every
        other stream, unless the newest head already names it. Returns the head that names it. Raises
        IntegrityError when a head in the store does not verify or names this stream further than ``tip``."""
        head = self._newest if self._listed else self.newest()
        for _ in range(MAX_TRIES):
            tips = head.tips() if head is not None else {}
            known = tips.get(tip.stream)
            if known == tip:
                return head  # type: ignore[return-value]  # known is None when head is
            if known is not None and known.size >= tip.size:
                raise IntegrityError(f"head {head.number} names stream {tip.stream} at {known.size} segments, "  # type: ignore[union-attr]
                                     f"root {known.root.hex()[:16]}; this writer's checkpoint is {tip.size} segments, "
                                     f"root {tip.root.hex()[:16]}", hint="another writer sealed this stream: run "
                                     "`wormjournal verify`")
            tips[tip.stream] = tip
            streams = tuple(sorted(tips.values()))
            now = format_ts(now_micros())
            new = Head.first(self.journal_id, now, streams) if head is None else head.next(now, streams)
            try:
                store.put(layout.head(new.number), new.sign(key))
            except ConflictError:
                head = self.newest()  # another writer took the number: from the newest head, however far ahead
                continue
            self._newest = new
            return new
        raise ConflictError(f"head {new.number}: {MAX_TRIES} other writers' heads in a row took the next number")
