"""Subscriptions: run a handler on each event of a journal as it arrives, at least once, with a durable cursor.

::

    def on_tool_error(event):
        if event.payload.get("ok") is False:
            reroute(event.execution_id)

    reader = journal.reader()
    with Subscription("recovery", reader, on_tool_error, EventFilter.of("tool_returned"), failures=journal) as sub:
        sub.run()  # until sub.stop() (from another thread or a signal handler)

Each event is verified before the handler sees it (``Reader.follow``); a forged or tampered one stops the
subscription with IntegrityError. The cursor (the last seq handled, and its hash, per stream) is a file
``<cursor_dir>/<name>.json``, written atomically after every ``commit_every`` events and whenever the
subscription waits or stops; a consumer killed at any instant resumes from it, so it hands over again at
most the events handled since the last write, and never skips one. ``<cursor_dir>/<name>.lock`` (a flock,
released by the kernel when the process dies) refuses a second consumer of the same name.

A handler that raises is tried again with backoff, ``retries`` times in all. Then, with ``failures`` (a
Journal), ``custom:wormjournal.handler_failed`` is appended (FORMAT.md 3.6), and the subscription goes on
(``on_failure="skip"``) or stops with HandlerError, its cursor before the event (``"stop"``, the default).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

from .errors import ConfigError, HandlerError, NotFoundError, ValidationError
from .events import HANDLER_FAILED
from .index import Event, Reader
from .index.follow import EventFilter, Follower, Tail
from .journal.lock import PidLock
from .storage import layout
from .storage.local import makedirs_durable, write_file_atomic

log = logging.getLogger(__name__)

ALL_STREAMS = "*"
CURSOR_FORMAT = "wormjournal-cursor/1"
CURSOR_DIR = "subscriptions"  # in the WAL directory, beside the streams' own directories
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_SAVE_SECONDS = 1.0  # while events are only read (none passes the filter), the cursor is written at most this often

Handler = Callable[[Event], Any]


class FailureLog(Protocol):
    """Where a handler's failure is recorded: a Journal (of any stream of the journal)."""

    def record_handler_failure(self, subscription: str, event: Event, error: BaseException, attempts: int) -> int: ...


def default_cursor_dir(reader: Reader) -> Path:
    """``<wal_dir>/subscriptions``: the cursors of a journal's consumers on this machine, beside its WAL."""
    if reader.wal_root is None:
        raise ConfigError("a subscription of a reader without a WAL directory needs cursor_dir= (a local directory "
                          "where its cursor is kept)")
    return reader.wal_root / CURSOR_DIR


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValidationError("name", "a subscription's name is 1 to 128 letters, digits, '.', '_' or '-', "
                              "not starting with '.'")
    return name


class Cursor:
    """A subscription's durable cursor, ``<directory>/<name>.json``: per stream the last seq handled (or passed by
    the filter) and that event's hash. Written whole or not at all (a temporary file, fsync'd, renamed)."""

    def __init__(self, directory: str | os.PathLike[str], name: str, journal_id: str) -> None:
        self.directory = Path(directory)
        self.name = check_name(name)
        self.journal_id = journal_id
        self.path = self.directory / f"{name}.json"
        self._lock = PidLock(self.directory / f"{name}.lock", f"subscription {name!r} is running already")

    def acquire(self) -> None:
        """Hold ``<name>.lock``: raises LockedError while another consumer of this name runs (on this machine)."""
        makedirs_durable(self.directory, mode=0o700)
        self._lock.acquire()
        for stale in self.directory.glob(f".{self.name}.json.*.tmp"):  # a write cut by a crash (ours: we hold the lock)
            stale.unlink(missing_ok=True)

    def release(self) -> None:
        self._lock.release()

    def load(self) -> dict[str, Tail]:
        """The saved tails ({} when there is no cursor yet). Raises ConfigError for a cursor that does not parse
        or belongs to another journal: a cursor is never reset silently (that would skip or repeat events)."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        return parse_cursor(text, str(self.path), self.journal_id, self.name)

    def save(self, tails: Mapping[str, Tail]) -> None:
        body = {"format": CURSOR_FORMAT, "journal": self.journal_id, "subscription": self.name,
                "saved": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "streams": {stream: {"seq": t.seq, "hash": t.hash.hex() if t.hash is not None else None}
                            for stream, t in sorted(tails.items())}}
        write_file_atomic(self.path, (json.dumps(body, indent=1) + "\n").encode())


def parse_cursor(text: bytes, where: str, journal_id: str | None = None, name: str | None = None) -> dict[str, Tail]:
    """A cursor file's tails. Raises ConfigError naming what is wrong."""
    try:
        body = json.loads(text)
        if not isinstance(body, dict) or body.get("format") != CURSOR_FORMAT:
            raise ValueError(f"not a {CURSOR_FORMAT} cursor")
        if journal_id is not None and body.get("journal") != journal_id:
            raise ValueError(f"it is a cursor of journal {body.get('journal')!r}, not {journal_id!r}")
        if name is not None and body.get("subscription") != name:
            raise ValueError(f"it is the cursor of subscription {body.get('subscription')!r}")
        tails = {}
        for stream, t in body["streams"].items():
            seq, digest = t["seq"], t["hash"]
            if not layout.is_valid_stream(stream) or type(seq) is not int or not -1 <= seq < 1 << 63:
                raise ValueError(f"stream {stream!r}: a bad stream name or seq")
            if digest is not None and not (isinstance(digest, str) and re.fullmatch("[0-9a-f]{64}", digest)):
                raise ValueError(f"stream {stream!r}: a bad hash")
            tails[stream] = Tail(seq, bytes.fromhex(digest) if digest is not None else None)
        return tails
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"the subscription cursor {where} cannot be used: {e}",
                          hint="restore it from a backup, or move it away to start again from the first event") from e


class Subscription:
    """Run ``handler`` on each event of ``reader``'s stream (``streams``: a list of streams of the journal, or
    ``ALL_STREAMS``, which follows streams that appear too) that passes ``filter``, at least once, in seq order per
    stream. ``handler`` is a function or a coroutine function. See the module's text for the cursor, the retries
    and the failures. ``start`` is where a stream without a cursor is taken up: its first event, or its end as it is
    when the subscription is made (a stream that appears later is taken up from its first event).

    Raises LockedError when a consumer of the same name runs already, ConfigError for a cursor that cannot be
    used; :meth:`run` raises HandlerError (``on_failure="stop"``) and IntegrityError (an event that does not
    verify: it is never handed to the handler)."""

    def __init__(self, name: str, reader: Reader, handler: Handler, filter: EventFilter | None = None, *,  # noqa: A002
                 streams: Sequence[str] | str | None = None, cursor_dir: str | os.PathLike[str] | None = None,
                 failures: FailureLog | None = None, retries: int = 5, retry_seconds: tuple[float, float] = (0.1, 5.0),
                 on_failure: Literal["stop", "skip"] = "stop", commit_every: int = 100,
                 start: Literal["beginning", "end"] = "beginning", poll_seconds: float | None = None) -> None:
        if on_failure not in ("stop", "skip"):
            raise ValidationError("on_failure", "is 'stop' or 'skip'")
        if on_failure == "skip" and failures is None:
            raise ConfigError("on_failure='skip' needs failures= (a Journal): an event a handler gives up on is "
                              "recorded there, never dropped unrecorded")
        if retries < 1 or commit_every < 1:
            raise ValidationError("retries" if retries < 1 else "commit_every", "must be at least 1")
        if start not in ("beginning", "end"):
            raise ValidationError("start", "is 'beginning' or 'end'")
        self.name = check_name(name)
        self.reader = reader
        self.handler = handler
        self.filter = filter if filter is not None else EventFilter()
        # Failure records (their type is in clear) reach a handler only when its filter names their type: a handler
        # that fails on every event would otherwise feed on the records of its own failures, or of another's.
        self._wants_failures = self.filter.event_types is not None and HANDLER_FAILED in self.filter.event_types
        self._closed = False
        self.failures = failures
        self.retries = retries
        self.retry_seconds = retry_seconds
        self.on_failure = on_failure
        self.commit_every = commit_every
        self.handled = 0  # events handed to the handler (and handled) by this object
        self.failed = 0  # events it gave up on
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outer_loop: asyncio.AbstractEventLoop | None = None
        directory = Path(cursor_dir) if cursor_dir is not None else default_cursor_dir(reader)
        self._cursor = Cursor(directory, name, reader.identity.journal_id)
        self._cursor.acquire()
        try:
            self._tails = self._cursor.load()
            if streams == ALL_STREAMS:
                self._streams: list[str] = []
                self._all = True
            else:
                names = [reader.stream] if streams is None else [streams] if isinstance(streams, str) else list(streams)
                for s in names:
                    if not layout.is_valid_stream(s):
                        raise ValidationError("streams", f"{s!r} is not a stream name")
                self._streams, self._all = names, False
            for stream, tail in self._tails.items():  # a cursor past a stream's end: not this history (a restore?)
                if stream in self._streams or self._all:
                    other = reader if stream == reader.stream else reader.for_stream(stream)
                    last = other.count_events() - 1
                    if tail.seq > last:
                        raise ConfigError(f"the cursor of subscription {name!r} stands at seq {tail.seq} of stream "
                                          f"{stream}, which ends at seq {last}: it is not this stream's history",
                                          hint="a journal or WAL restored from a backup older than the cursor? move "
                                          f"{self._cursor.path} away to start again (every event handed over again)")
            if start == "end":  # the streams there now, from their end; one that appears later, from its first event
                for stream in reader.streams() if self._all else self._streams:
                    if stream not in self._tails:
                        other = reader if stream == reader.stream else reader.for_stream(stream)
                        self._tails[stream] = Tail(other.count_events() - 1)
        except BaseException:
            self._cursor.release()
            raise

    # -- the cursor -------------------------------------------------------------------------------

    @property
    def cursor(self) -> dict[str, int]:
        """The last seq handled (or passed by the filter) per stream, as it stands in memory."""
        return {stream: t.seq for stream, t in self._tails.items()}

    @property
    def cursor_path(self) -> Path:
        return self._cursor.path

    # -- running ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return after the event in hand (from another thread, or a signal handler)."""
        self._stop.set()

    def run(self, *, timeout: float | None = None) -> int:
        """Hand each event to the handler as it comes, blocking while there is none, until :meth:`stop` or
        ``timeout`` seconds without a new event; returns the events handled. The cursor is saved on the way out,
        whatever ends the run. Raises ConfigError once closed (its lock is another consumer's to take)."""
        if self._closed:
            raise ConfigError(f"subscription {self.name!r} is closed: make a new one to run it again")
        self._stop.clear()
        # Where everything before is handled, per stream: what the cursor file gets. The follower's tails run ahead
        # of it by the batch in hand.
        safe = {stream: Tail(t.seq, t.hash) for stream, t in self._tails.items()}

        def new_tail(reader: Any) -> Tail:  # a stream without a cursor: from its first event
            safe[reader.stream] = Tail()
            return Tail()

        readers = [self.reader if s == self.reader.stream else self.reader.for_stream(s) for s in self._streams]
        follower = Follower(readers or [self.reader], {s: Tail(t.seq, t.hash) for s, t in safe.items()}, self._wanted,
                            poll_seconds=self._poll_seconds, has_wal=self.reader.reads_wal, new_tail=new_tail,
                            discover=self.reader.streams if self._all else None, open_stream=self.reader.for_stream)
        handled_before = self.handled
        pending, saved_at = 0, time.monotonic()
        try:
            for batch in follower.batches(timeout=timeout, stop=self._stop):
                for event in batch:
                    if self._stop.is_set():
                        break
                    if not self._is_own_failure(event):
                        self._deliver(event)
                    safe[event.stream] = Tail(event.seq, bytes.fromhex(event.hash))
                    pending += 1
                    if pending >= self.commit_every:
                        self._cursor.save(safe)
                        pending, saved_at = 0, time.monotonic()
                else:  # the whole batch: the follower's tails, past the events the filter left out too
                    safe.update((s, Tail(t.seq, t.hash)) for s, t in follower.tails.items())
                    if pending or time.monotonic() - saved_at >= _SAVE_SECONDS:
                        self._cursor.save(safe)
                        pending, saved_at = 0, time.monotonic()
                    continue
                break  # stopped in the middle of a batch
        except _Stopped:
            pass
        finally:
            self._tails = safe
            self._cursor.save(safe)
        return self.handled - handled_before

    async def run_async(self, *, timeout: float | None = None) -> int:
        """:meth:`run` from a coroutine: the follower waits in a thread, a coroutine handler runs on this loop."""
        self._outer_loop = asyncio.get_running_loop()
        try:
            return await asyncio.to_thread(self.run, timeout=timeout)
        except asyncio.CancelledError:
            self.stop()
            raise
        finally:
            self._outer_loop = None

    def _wanted(self, e: Any) -> bool:
        return (e.event_type != HANDLER_FAILED or self._wants_failures) and self.filter(e)

    def _is_own_failure(self, event: Event) -> bool:
        """This subscription's own failure records are not handed to it (a handler failing on them would loop)."""
        return (event.event_type == HANDLER_FAILED and isinstance(event.payload, dict)
                and event.payload.get("subscription") == self.name)

    def _deliver(self, event: Event) -> None:
        low, high = self.retry_seconds
        error: Exception | None = None
        for attempt in range(1, self.retries + 1):
            try:
                self._call(event)
            except Exception as e:  # a handler's error, whatever it is: tried again, then recorded
                error = e
                if attempt < self.retries:
                    # the type only: a message may quote the event's personal data, and logs are not encrypted
                    log.warning("subscription %s: the handler raised %s on seq %d of stream %s (try %d of %d)",
                                self.name, type(e).__name__, event.seq, event.stream, attempt, self.retries)
                    if self._stop.wait(min(high, low * 2 ** (attempt - 1))):
                        raise _Stopped from None  # handed over again on the next run
                continue
            self.handled += 1
            return
        assert error is not None
        self.failed += 1
        if self.failures is not None and event.event_type != HANDLER_FAILED:  # never a failure of a failure record
            self.failures.record_handler_failure(self.name, event, error, self.retries)
        where = f"seq {event.seq} of stream {event.stream} ({event.event_type}, execution {event.execution_id})"
        if self.on_failure == "stop":
            raise HandlerError(f"subscription {self.name}: the handler raised {type(error).__name__} on {where} "
                               f"{self.retries} times (its error is the cause)", event) from error
        log.error("subscription %s: the handler gave up on %s after %d tries, raising %s (recorded as %s)", self.name,
                  where, self.retries, type(error).__name__, HANDLER_FAILED)

    def _call(self, event: Event) -> None:
        result = self.handler(event)
        if not inspect.isawaitable(result):
            return
        if self._outer_loop is not None:  # run_async: on the caller's loop
            asyncio.run_coroutine_threadsafe(_awaited(result), self._outer_loop).result()
            return
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(result)

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the subscription's lock (its cursor is saved by every run)."""
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        self._closed = True
        self._cursor.release()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class _Stopped(Exception):
    """stop() during a handler's backoff: the event is handed over again on the next run."""


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


def cursor_status(directory: str | os.PathLike[str], name: str) -> dict[str, Any]:
    """What ``<directory>/<name>.json`` says (for ``wormjournal tail --since-cursor``): the journal, when it was
    saved, and per stream the last seq handled. Raises NotFoundError when there is none, ConfigError when it does
    not parse."""
    path = Path(directory) / f"{check_name(name)}.json"
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"no cursor of subscription {name!r} in {directory}",
                            hint="a subscription saves its cursor once it has run; check the name and --cursor-dir"
                            ) from None
    tails = parse_cursor(text, str(path), name=name)
    body = json.loads(text)
    return {"subscription": name, "journal": body["journal"], "saved": body.get("saved"), "path": str(path),
            "streams": {stream: {"seq": t.seq, "hash": t.hash.hex() if t.hash else None}
                        for stream, t in tails.items()}}
