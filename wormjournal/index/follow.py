"""Following a stream live: each event once it is durable, in seq order, verified like any read.

A :class:`Tail` is where a follower stands in one stream: the last event it passed (handed over, or
left out by its filter) and that event's hash. Each step reads one snapshot of the stream
(``Reader.poll``): the rest of the sealed segment that holds the next seq, read whole and checked
against its signed manifest (its Merkle root, then its chain), or else the unsealed events of the
write-ahead log, chained onto the sealed head. Each event must continue the last one passed (its seq
the next, its ``prev_hash`` that event's hash), so a follower resumed from a saved tail sees a
rewritten history as an :class:`~wormjournal.errors.IntegrityError`, not as new events. Events taken
from the write-ahead log are remembered by hash until a seal covers them, and the sealed ones must be
the same: what a follower handed over is what the archive keeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import IntegrityError, ValidationError
from ..events import StoredEvent
from .model import Event

# How long a caught-up follower waits before it looks again: from the first to the second bound, doubling while
# nothing comes. A write-ahead log on this machine is a few file reads a look; a store alone is one HEAD a look,
# and events reach it only when they are sealed (seal_max_age_seconds), so it is looked at less often.
WAL_POLL_SECONDS = (0.001, 0.05)
STORE_POLL_SECONDS = (0.05, 1.0)


@dataclass(frozen=True)
class EventFilter:
    """Which events a follower hands over; None matches every value. Every event is still read and verified."""

    event_types: frozenset[str] | None = None
    execution_id: str | None = None
    thread_id: str | None = None
    tenant_id: str | None = None

    @classmethod
    def of(cls, event_type: str | Iterable[str] | None = None, *, execution_id: str | None = None,
           thread_id: str | None = None, tenant_id: str | None = None) -> EventFilter:
        """``event_type`` is one type or several."""
        types = None if event_type is None else frozenset([event_type] if isinstance(event_type, str) else event_type)
        if types is not None and not all(isinstance(t, str) for t in types):
            raise ValidationError("event_type", "give event types as strings")
        return cls(types, execution_id, thread_id, tenant_id)

    def __call__(self, e: StoredEvent) -> bool:
        return ((self.event_types is None or e.event_type in self.event_types)
                and (self.execution_id is None or e.execution_id == self.execution_id)
                and (self.thread_id is None or e.thread_id == self.thread_id)
                and (self.tenant_id is None or e.tenant_id == self.tenant_id))


EVERY_EVENT = EventFilter()


@dataclass
class Tail:
    """Where a follower stands in a stream: ``seq`` the last event passed (-1: none yet), ``hash`` its hash when
    known (a tail saved with its hash is checked on resume: the next event must continue it)."""

    seq: int = -1
    hash: bytes | None = None
    # The events handed over from the write-ahead log, by seq, until a seal covers them: the sealed ones must be
    # the same (Tail.sealed).
    unsealed: dict[int, bytes] = field(default_factory=dict)
    # The segment that held the last sealed event passed: where the next lookup starts.
    segment: int = 0

    def check_next(self, events: list[StoredEvent], where: str) -> None:
        """The first event must be the next seq, continuing the hash of the last one passed (when known)."""
        if not events:
            return
        first = events[0]
        if first.seq != self.seq + 1:
            raise IntegrityError(f"stream follower: {where} holds seq {first.seq} where seq {self.seq + 1} comes next "
                                 "(events missing)", seq=self.seq + 1)
        if self.hash is not None and first.prev_hash != self.hash:
            raise IntegrityError(f"stream follower: seq {first.seq} in {where} does not continue seq {self.seq} as "
                                 "it was handed over (the history was rewritten)", seq=first.seq)

    def sealed(self, seq: int, digest: bytes, where: str) -> None:
        """A sealed event at or before the tail (``digest`` its hash): if it was handed over unsealed, it must be
        the same; the sealed chain then vouches for every earlier one, which are forgotten."""
        handed = self.unsealed.get(seq)
        if handed is not None and handed != digest:
            raise IntegrityError(f"stream follower: seq {seq} was handed over from the write-ahead log, and {where} "
                                 "seals another event under that seq", seq=seq)
        if self.unsealed and seq >= next(iter(self.unsealed)):  # in seq order: the first is the least
            self.unsealed = {s: h for s, h in self.unsealed.items() if s > seq}

    def passed(self, events: list[StoredEvent], *, unsealed: bool) -> None:
        if not events:
            return
        last = events[-1]
        self.seq, self.hash = last.seq, last.hash
        if unsealed:
            self.unsealed.update((e.seq, e.hash) for e in events)


class Polls(Protocol):
    """What a Follower needs of a stream's Reader."""

    stream: str

    def poll(self, tail: Tail, wanted: Callable[[StoredEvent], bool] = ...) -> list[Event]: ...


class Follower:
    """The events of one or more streams after their tails, step by step (:meth:`poll`) or blocking (:meth:`events`,
    :meth:`batches`): each stream's in seq order, the streams side by side. ``discover`` (optional) names the
    journal's streams; it is asked every ``discover_seconds``, and a stream it names that is not followed yet is
    followed from ``new_tail()`` with a reader from ``open_stream``. ``poll_seconds`` bounds the wait between two
    looks once caught up."""

    def __init__(self, readers: Iterable[Polls], tails: dict[str, Tail] | None = None,
                 wanted: Callable[[StoredEvent], bool] = EVERY_EVENT, *, poll_seconds: float | None = None,
                 has_wal: bool = False, discover: Callable[[], list[str]] | None = None,
                 open_stream: Callable[[str], Polls] | None = None,
                 new_tail: Callable[[Polls], Tail] = lambda reader: Tail(),
                 discover_seconds: float = 30.0) -> None:
        self.readers = {r.stream: r for r in readers}
        self.tails = tails if tails is not None else {}
        self._new_tail = new_tail
        for stream, reader in self.readers.items():
            if stream not in self.tails:
                self.tails[stream] = new_tail(reader)
        self.wanted = wanted
        low, high = WAL_POLL_SECONDS if has_wal else STORE_POLL_SECONDS
        if poll_seconds is not None and not 0 < poll_seconds < float("inf"):
            raise ValidationError("poll_seconds", "must be a number of seconds more than 0")
        self.poll_bounds = (min(low, poll_seconds), poll_seconds) if poll_seconds is not None else (low, high)
        self._discover, self._open_stream = discover, open_stream
        self._discover_seconds = discover_seconds
        self._discovered = -float("inf")

    def _find_streams(self) -> None:
        if self._discover is None or time.monotonic() - self._discovered < self._discover_seconds:
            return
        self._discovered = time.monotonic()
        for stream in self._discover():
            if stream not in self.readers and self._open_stream is not None:
                reader = self.readers[stream] = self._open_stream(stream)
                if stream not in self.tails:
                    self.tails[stream] = self._new_tail(reader)

    def poll(self) -> list[Event]:
        """The next events that pass the filter, verified: one step in each stream, each stream's in seq order
        ([] when all are caught up). Each tail moves past every event read, kept or not."""
        self._find_streams()
        out: list[Event] = []
        for stream, reader in self.readers.items():
            out += reader.poll(self.tails[stream], self.wanted)
        return out

    def _positions(self) -> list[int]:
        return [tail.seq for tail in self.tails.values()]

    def batches(self, *, timeout: float | None = None, stop: threading.Event | None = None) -> Iterator[list[Event]]:
        """Each step that read something (its events that pass the filter: maybe none), blocking while there is
        nothing new. Ends after ``timeout`` seconds without a new event (None: never), or once ``stop`` is set.
        Raises IntegrityError at the first event that does not verify, before handing over any other event of
        the segment or the write-ahead log read that holds it."""
        stop = stop if stop is not None else threading.Event()
        low, high = self.poll_bounds
        delay = low
        idle_since = time.monotonic()
        while not stop.is_set():
            before = self._positions()
            batch = self.poll()
            if self._positions() != before:  # events read: look again at once
                yield batch
                delay, idle_since = low, time.monotonic()
                continue
            left = None if timeout is None else timeout - (time.monotonic() - idle_since)
            if left is not None and left <= 0:
                return
            stop.wait(delay if left is None else min(delay, left))
            delay = min(delay * 2, high)

    def events(self, *, timeout: float | None = None, stop: threading.Event | None = None) -> Iterator[Event]:
        """Each event as it comes (see :meth:`batches`)."""
        for batch in self.batches(timeout=timeout, stop=stop):
            yield from batch
