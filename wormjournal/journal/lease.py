"""Writer leases: one writer per stream across machines, for stores that are not a local directory (S3).

A writer holds the lease object ``.leases/stream=<s>.json`` (FORMAT.md 11b) before it
acknowledges anything, and every change of the lease is a conditional put on its ETag,
with an epoch that grows at each acquisition (so the ETag changes at each one)::

    open    no lease            -> put If-None-Match: *      epoch 1, held
            held by this WAL dir -> put If-Match: <etag>      epoch + 1 (reopened after a crash)
            released             -> put If-Match: <etag>      epoch + 1
            held by another      -> LeaseHeldError, unless take_over: put If-Match: <etag>, epoch + 1
    seal    HEAD: the ETag must still be ours (and every lease_check_seconds in the background)
    close   nothing unsealed     -> put If-Match: <etag>      released; else it stays held

The holder id is random, made once and kept in the writer's WAL directory, so that the
same WAL directory holds its own lease again after a crash and seals what it acknowledged.
A lease never expires: the acknowledged events of a writer that died are in its WAL, which
only it can seal, so only an explicit take-over gives them up.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import re
import secrets
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import JournalError, LeaseHeldError, LeaseLostError, StorageError
from ..storage import layout
from ..storage.base import LeaseStore
from ..storage.local import fsync_dir

log = logging.getLogger(__name__)

LEASE_FORMAT = "wormjournal/lease/v1"
HOLDER_FILE = "HOLDER"  # in <wal dir>/stream=<s>/
HELD, RELEASED = "held", "released"
_HOLDER_RE = re.compile(r"[0-9a-f]{32}")
_MAX_RACES = 5  # acquisitions lost to another writer's put before giving up

# How a lease was acquired: no lease yet, held by this WAL directory, released, taken over, unreadable and taken.
NEW, OWN, FREE, TAKEN = "new", "own", "released", "taken"


@dataclasses.dataclass(frozen=True)
class LeaseRecord:
    """The content of a lease object (FORMAT.md 11b)."""

    journal_id: str
    stream: str
    epoch: int
    holder: str
    host: str
    pid: int
    wal_dir: str
    acquired_at: str
    state: str
    released_at: str | None = None

    def encode(self) -> bytes:
        """One JSON object, sorted keys, no spaces, a final LF."""
        fields = dict(dataclasses.asdict(self), format=LEASE_FORMAT)
        return (json.dumps(fields, sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes) -> LeaseRecord:
        """Parse a lease object; raises ValueError when it is not one."""
        try:
            fields: dict[str, Any] = json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ValueError(f"not JSON: {e}") from e
        if not isinstance(fields, dict) or fields.pop("format", None) != LEASE_FORMAT:
            raise ValueError(f"not a {LEASE_FORMAT} object")
        try:
            record = cls(**fields)
        except TypeError as e:
            raise ValueError(str(e)) from e
        if not isinstance(record.epoch, int) or record.state not in (HELD, RELEASED):
            raise ValueError(f"bad epoch or state: {record.epoch!r}, {record.state!r}")
        return record

    def describe(self) -> str:
        when = f"held since {self.acquired_at}" + (f", released at {self.released_at}" if self.released_at else "")
        return (f"holder {self.holder} on host {self.host} (pid {self.pid}, WAL directory {self.wal_dir}), "
                f"epoch {self.epoch}, {when}")


def holder_id(directory: Path) -> str:
    """The lease holder id of a WAL directory: random, made once and kept there (``HOLDER``)."""
    path = directory / HOLDER_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    except OSError as e:
        raise StorageError(f"cannot read the lease holder id {path}: {e}") from e
    if _HOLDER_RE.fullmatch(text):
        return text
    holder = secrets.token_hex(16)
    tmp = directory / (HOLDER_FILE + ".tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(holder + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(directory)
    except OSError as e:
        raise StorageError(f"cannot write the lease holder id {path}: {e}") from e
    return holder


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class StreamLease:
    """This writer's lease on one stream: acquired at open, checked before every seal and in the
    background, released at close when nothing is left unsealed.

    ``wal_dir`` is the stream's WAL directory (``<wal dir>/stream=<s>``, where the holder id is kept).
    ``unsealed`` says which seqs this writer acknowledged and has not sealed ((first, end)),
    for the error when the lease is lost; ``on_lost`` is called once, with that error.
    """

    def __init__(self, store: LeaseStore, journal_id: str, stream: str, wal_dir: Path, *,
                 unsealed: Callable[[], tuple[int, int]] | None = None,
                 on_lost: Callable[[LeaseLostError], None] | None = None) -> None:
        self.store = store
        self.journal_id = journal_id
        self.stream = stream
        self.name = layout.lease(stream)
        self.wal_dir = wal_dir
        self.holder = holder_id(wal_dir)
        self.record: LeaseRecord | None = None
        self.how: str | None = None  # NEW, OWN, FREE or TAKEN once acquired
        self._etag: str | None = None
        self._unsealed = unsealed
        self._on_lost = on_lost
        self._lost: LeaseLostError | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lost(self) -> LeaseLostError | None:
        """The error appends raise once the lease is lost, else None."""
        return self._lost

    def _where(self) -> str:
        return f"stream {self.stream!r} of {self.store.url}"

    def acquire(self, *, take_over: bool = False) -> None:
        """Hold the lease, or raise LeaseHeldError (another writer holds it and ``take_over`` is False)."""
        for _ in range(_MAX_RACES):
            current = self.store.read_lease(self.name)
            prior: LeaseRecord | None = None
            if current is None:
                how, expect = NEW, None
            else:
                data, expect = current
                try:
                    prior = LeaseRecord.decode(data)
                    if (prior.journal_id, prior.stream) != (self.journal_id, self.stream):
                        raise ValueError(f"it names journal {prior.journal_id}, stream {prior.stream}")
                except ValueError as e:
                    if not take_over:
                        raise LeaseHeldError(f"the lease {self.name} of {self._where()} is unreadable ({e})") from e
                    how, prior = TAKEN, None
                else:
                    if prior.state == RELEASED:
                        how = FREE
                    elif prior.holder == self.holder:
                        how = OWN
                    elif take_over:
                        how = TAKEN
                    else:
                        raise LeaseHeldError(
                            f"{self._where()} has another writer: {prior.describe()}. Close it, or reopen from that "
                            "WAL directory on that host to seal what it acknowledged; if it is gone for good, "
                            "take the stream over with Journal.open(..., take_over=True) (the CLI's append and seal: "
                            "--take-over)"
                        )
            record = LeaseRecord(
                journal_id=self.journal_id, stream=self.stream, epoch=(prior.epoch if prior else 0) + 1,
                holder=self.holder, host=socket.gethostname(), pid=os.getpid(), wal_dir=str(self.wal_dir.parent),
                acquired_at=_now(), state=HELD,
            )
            etag = self.store.swap_lease(self.name, record.encode(), expect)
            if etag is None:
                continue  # another writer changed the lease between our read and our put: look again
            self.record, self._etag, self.how = record, etag, how
            if how == TAKEN:
                log.warning("took over the lease of %s (epoch %d) from %s: events it acknowledged and did not seal "
                            "are given up (they stay in its WAL directory)", self._where(), record.epoch,
                            prior.describe() if prior else "an unreadable lease")
            elif how == OWN:
                log.info("holds its own lease of %s again (epoch %d): sealing what it acknowledged before",
                         self._where(), record.epoch)
            return
        raise LeaseHeldError(f"could not take the lease of {self._where()}: "
                             f"other writers changed it {_MAX_RACES} times in a row")

    def raise_if_lost(self) -> None:
        """Raise LeaseLostError once the lease is known to be lost (no request)."""
        if self._lost is not None:
            raise self._lost

    def check(self) -> None:
        """One HEAD: raise LeaseLostError when the lease is no longer ours, StorageError when the store fails."""
        self.raise_if_lost()
        etag = self.store.lease_etag(self.name)
        if etag is not None and self._etag is not None and etag.strip('"') == self._etag.strip('"'):
            return  # (some S3-compatible servers quote an ETag in one answer and not in another)
        self._lose(etag)
        self.raise_if_lost()

    def _lose(self, etag: str | None) -> None:
        try:
            current = self.store.read_lease(self.name) if etag is not None else None
            now = LeaseRecord.decode(current[0]).describe() if current is not None else None
        except (JournalError, ValueError) as e:
            now = f"a lease this writer cannot read ({e})"
        mine = self.record.epoch if self.record else 0
        given_up = ""
        if self._unsealed is not None:
            first, end = self._unsealed()
            if end > first:
                given_up = f"; the events it acknowledged and did not seal (seq {first}..{end - 1}) are given up"
        error = LeaseLostError(
            f"this writer lost its lease of {self._where()} (it held epoch {mine}): "
            + (f"now {now}" if now else "the lease object is gone")
            + f"; it appends and seals nothing more{given_up}"
        )
        with self._mutex:
            if self._lost is not None:
                return
            self._lost = error
        log.error("%s", error)
        if self._on_lost is not None:
            self._on_lost(error)

    def watch(self, interval: float) -> None:
        """Check the lease every ``interval`` seconds in a background thread, until close."""
        self._thread = threading.Thread(target=self._watch, args=(interval,), name="wormjournal-lease", daemon=True)
        self._thread.start()

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.check()
            except LeaseLostError:
                return
            except JournalError as e:  # the store did not answer: keep the lease, ask again (seals check too)
                log.warning("cannot check the lease of %s: %s", self._where(), e)

    def close(self, *, release: bool) -> None:
        """Stop checking; mark the lease released when ``release`` (nothing is left unsealed), else keep it
        held, so that only this WAL directory (or a take-over) writes the stream next."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self._lost is not None or self.record is None:
            return
        if not release:
            log.info("kept the lease of %s (epoch %d): its unsealed events are in %s; reopen from there to seal "
                     "them", self._where(), self.record.epoch, self.wal_dir)
            return
        released = dataclasses.replace(self.record, state=RELEASED, released_at=_now())
        try:
            etag = self.store.swap_lease(self.name, released.encode(), self._etag)
        except JournalError as e:
            log.warning("could not release the lease of %s: %s; it stays held by %s (reopen from there, or take "
                        "it over)", self._where(), e, self.wal_dir)
            return
        if etag is None:
            log.warning("the lease of %s was taken by another writer before this one released it", self._where())
            return
        self.record, self._etag = released, etag
