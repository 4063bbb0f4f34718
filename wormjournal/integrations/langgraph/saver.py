"""``JournalSaver``: a LangGraph checkpoint saver on the journal alone.

Every ``put`` and ``put_writes`` is an event of the journal (durable when it returns),
its payload encrypted in the key scope of the LangGraph run (the journal execution of
the checkpoint). Reads rebuild a thread from its events, which the journal's
``Reader`` verifies (hash chain, Merkle root, signed manifest; the chain alone for
events not sealed yet) before anything is handed to LangGraph's serializer: stored
bytes are untrusted input.

Several worker processes serve one journal, each writing its own stream
(``Journal.open_or_create(store, stream=f"worker-{n}", ...)``); a thread is read across every
stream of the journal, its events merged in (time, stream, seq) order. The savers of one
``Journal`` object in a process (one per request, as LangGraph's server makes them) share one
``Reader`` per stream, each following its stream's write-ahead log, and one cache of the
threads read last (at most ``cache_threads``): a cached thread remembers, per stream, the seq
it has read up to, and a read applies only the thread's events appended since (this writer's
own stream is asked only when ``Journal.appended_since`` says it wrote to the thread, and a thread
not cached is read from that stream's last snapshot when nothing of it was appended since), so it
is never stale and a read costs what was added, not the thread.

Deletion on a write-once store is crypto-shredding plus a tombstone: ``delete_thread``
destroys the keys of the thread's runs (and of the thread's scope), ``delete_for_runs``
those of the runs; then a tombstone event says what is gone, so those checkpoints are
never returned again, and ``verify`` still passes. ``prune`` only writes a tombstone
(the kept checkpoint shares its run's key). It behaves like LangGraph's in-memory saver
in everything they share (the tests run both side by side).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import random
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from ...errors import UnknownScopeError, ValidationError
from ...storage import layout
from .codec import (
    CHECKPOINT_EVENT,
    EMPTY,
    SAVER_EVENTS,
    TOMBSTONE_EVENT,
    TOMBSTONE_EXECUTION,
    WRITES_EVENT,
    Saved,
    ThreadState,
    Typed,
    apply_event,
    apply_tombstone,
    checkpoint_payload,
    execution_of,
    journal_id,
    original_thread,
    serialize_put,
    writes_payload,
)

# The streams sealed in the store are listed at most this often (a LIST of its checkpoints); the streams of the
# write-ahead log directory the workers share are listed at every read (one small directory).
STORE_STREAMS_SECONDS = 30.0
_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclasses.dataclass
class _Thread:
    """A cached thread: its state, and per stream the seq below which every event of the thread is in it."""

    state: ThreadState
    next: dict[str, int] = dataclasses.field(default_factory=dict)
    ts: dt.datetime = _NEVER  # the latest time of an event applied (an upper bound)
    deleted_ts: dt.datetime = _NEVER  # the latest time of a tombstone applied (an upper bound)


class _Shared:
    """What the savers of one Journal object share in a process: a Reader per stream (each follows its stream's
    write-ahead log, reading each frame once), the cache of threads, and the lock that guards both (a Reader is
    not thread-safe). It holds no reference to the journal: it lives as long as the journal does."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.readers: dict[str, Any] = {}
        self.threads: OrderedDict[str, _Thread] = OrderedDict()
        self.cache_threads = 0
        self.store_streams: set[str] = set()
        self.store_listed = -float("inf")
        # The execution of each checkpoint put last (thread, ns, id), set before its event is appended: the writes
        # LangGraph puts on a checkpoint while its put is still being appended go to the checkpoint's run.
        self.put_executions: OrderedDict[tuple[str, str, str], str] = OrderedDict()


_PUT_EXECUTIONS = 4096  # checkpoints whose execution _Shared.put_executions remembers


_SHARED: weakref.WeakKeyDictionary[Any, _Shared] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def _shared_of(journal: Any) -> _Shared:
    with _SHARED_LOCK:
        shared = _SHARED.get(journal)
        if shared is None:
            shared = _SHARED[journal] = _Shared()
        return shared


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class JournalSaver(BaseCheckpointSaver[str]):
    """A complete checkpoint saver backed by ``journal`` (a :class:`wormjournal.Journal`), reading every stream of
    its journal. The savers of one ``Journal`` object share their readers and their cache of threads, which holds
    the ``cache_threads`` threads read last (the largest number any of them was given). Raises what the journal
    raises: IntegrityError when an event read is not genuine, ValidationError for what it refuses, StorageError.
    """

    def __init__(self, journal: Any, *, serde: SerializerProtocol | None = None, cache_threads: int = 256) -> None:
        super().__init__(serde=serde)
        self.journal = journal
        self._shared = _shared_of(journal)
        self._lock = self._shared.lock
        with self._lock:
            self._shared.cache_threads = max(self._shared.cache_threads, cache_threads)

    @property
    def _threads(self) -> OrderedDict[str, _Thread]:
        return self._shared.threads

    def get_next_version(self, current: Any, channel: None) -> str:
        """The in-memory saver's versions: the count, then a random fraction, so that a fork's channel versions
        never take an earlier branch's (blobs are kept by version: with plain counts, a checkpoint of the branch a
        fork left would read the fork's values)."""
        count = 0 if current is None else current if isinstance(current, int) else int(str(current).split(".")[0])
        return f"{count + 1:032}.{random.random():016}"

    # -- the journal's streams ---------------------------------------------------------------------

    def _reader(self, stream: str) -> Any:
        """The shared Reader of ``stream`` (under the lock): this writer's own, or one of another stream with the
        unsealed events of its write-ahead log when it is in this writer's WAL directory."""
        reader = self._shared.readers.get(stream)
        if reader is None:
            j = self.journal
            reader = j.reader() if stream == j.stream else j._stream_reader(stream)  # noqa: SLF001
            self._shared.readers[stream] = reader
        return reader

    def _streams(self) -> list[str]:
        """Every stream of the journal (under the lock): this writer's, each one with a directory in its WAL
        directory (the writers of one machine share it: a stream is there from its first append on), and those
        sealed in the store, listed at most every ``STORE_STREAMS_SECONDS`` (a writer elsewhere, whose events are
        seen once they are sealed)."""
        shared = self._shared
        found = {self.journal.stream, *shared.readers}
        wal_dir = self.journal._wal_dir.parent  # noqa: SLF001 - <wal_dir>/stream=<name>/, one per stream
        try:
            with os.scandir(wal_dir) as entries:
                for entry in entries:
                    stream = entry.name.removeprefix("stream=")
                    if stream != entry.name and layout.is_valid_stream(stream) and entry.is_dir():
                        found.add(stream)
        except FileNotFoundError:
            pass
        if time.monotonic() - shared.store_listed >= STORE_STREAMS_SECONDS:
            names = [info.name for info in self.journal.store.list(layout.CHECKPOINTS_PREFIX)]
            shared.store_streams = {s for s in layout.streams_from_names(names) if layout.is_valid_stream(s)}
            shared.store_listed = time.monotonic()
        return sorted(found | shared.store_streams)

    # -- the thread's state, from verified events -----------------------------------------------

    def _state(self, thread_id: str) -> ThreadState:
        """The thread with every event of every stream applied (under the lock): a cached thread gets the events
        appended since it was read, each stream asked from the seq it was read up to; this writer's own stream
        only when it appended to the thread since (``Journal.appended_since``)."""
        shared = self._shared
        key = journal_id(thread_id)
        cached = shared.threads.get(thread_id)
        entry = cached if cached is not None else _Thread(ThreadState())
        own = self.journal.stream
        found = []
        ends: dict[str, int] = {}
        for stream in self._streams():
            start = entry.next.get(stream)
            again = None
            if stream == own:
                if start is not None and not self.journal.appended_since(key, start):
                    continue
                end = self._reader(stream).snapshot_end()
                if start is None and end is not None and not self.journal.appended_since(key, end):
                    again = self._reader(stream).thread_events_again(key)  # a new thread: no request, nothing read
            events, ends[stream] = again or self._reader(stream).thread_events_from(key, start or 0)  # verified
            found += [e for e in events if e.event_type in SAVER_EVENTS]
        found.sort(key=lambda e: (e.ts, e.stream, e.seq))  # the order they were written in, across the streams
        if cached is not None and found and (
                found[0].ts <= entry.deleted_ts
                or any(e.event_type == TOMBSTONE_EVENT and e.ts <= entry.ts for e in found)):
            # A tombstone and events it came after or before, applied out of that order: read the thread whole.
            del shared.threads[thread_id]
            return self._state(thread_id)
        try:
            for e in found:
                apply_event(entry.state, e.event_type, e.payload, e.seq, e.execution_id)
                entry.ts = max(entry.ts, e.ts)
                if e.event_type == TOMBSTONE_EVENT:
                    entry.deleted_ts = max(entry.deleted_ts, e.ts)
        except BaseException:
            shared.threads.pop(thread_id, None)  # half applied: read whole next time
            raise
        entry.next.update(ends)
        shared.threads[thread_id] = entry
        shared.threads.move_to_end(thread_id)
        while len(shared.threads) > shared.cache_threads:
            shared.threads.popitem(last=False)
        return entry.state

    def _applied(self, thread_id: str, seq: int, apply: Callable[[ThreadState], None], *,
                 deleted: bool = False) -> None:
        """After this saver appended the thread's event ``seq``: apply it to the cached thread when that holds
        every event of this writer's stream before it; else the next read applies it, from the journal."""
        with self._lock:
            entry = self._shared.threads.get(thread_id)
            own = self.journal.stream
            if entry is None or entry.next.get(own) != seq:
                return
            apply(entry.state)
            entry.next[own] = seq + 1
            now = _now()  # at or after the event's time: what is compared with it only reads whole more often
            entry.ts = max(entry.ts, now)
            if deleted:
                entry.deleted_ts = max(entry.deleted_ts, now)

    def _all_threads(self) -> list[str]:
        """Every thread with a checkpoint, in the order of its first one (as the in-memory saver lists them)."""
        with self._lock:
            found = [e for stream in self._streams()
                     for e in self._reader(stream).find(event_type=CHECKPOINT_EVENT) if e.thread_id]
            found.sort(key=lambda e: (e.ts, e.stream, e.seq))
            threads = {original_thread(e.thread_id, e.payload): None for e in found}
            return list(threads) + [t for t in self._shared.threads if t not in threads]

    def _run_threads(self, run_ids: Sequence[str]) -> list[str]:
        """The threads (as the journal stores their ids) that the runs' events name, in any stream: a run is an
        execution, found through each stream's index."""
        with self._lock:
            return sorted({e.thread_id for stream in self._streams() for run in run_ids
                           for e in self._reader(stream).events(journal_id(run)) if e.thread_id is not None})

    def _tuple(self, thread_id: str, ns: str, cid: str, saved: Saved, state: ThreadState,
               config: RunnableConfig | None = None, metadata: Any = None) -> CheckpointTuple:
        checkpoint: Checkpoint = self.serde.loads_typed(saved.checkpoint)
        values: dict[str, Any] = {}
        for channel, version in checkpoint["channel_versions"].items():
            blob = state.blobs.get((ns, channel, version))
            if blob is not None and blob[0] != EMPTY:
                values[channel] = self.serde.loads_typed(blob)
        stored = state.writes.get((ns, cid), {})
        ordered = [stored[k] for k in sorted(stored, key=lambda k: writes_sort_key(stored[k][3], *k))]
        return CheckpointTuple(
            config=config or _config(thread_id, ns, cid),
            checkpoint={**checkpoint, "channel_values": values},
            metadata=metadata if metadata is not None else self.serde.loads_typed(saved.metadata),
            parent_config=_config(thread_id, ns, saved.parent) if saved.parent else None,
            pending_writes=[(task_id, channel, self.serde.loads_typed(value))
                            for task_id, channel, value, _ in ordered],
        )

    # -- reading ----------------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id = config["configurable"]["thread_id"]
        ns = config["configurable"].get("checkpoint_ns", "")
        with self._lock:
            state = self._state(thread_id)
            by_id = state.checkpoints.get(ns, {})
            if cid := get_checkpoint_id(config):
                saved = by_id.get(cid)
                return self._tuple(thread_id, ns, cid, saved, state, config=config) if saved else None
            if not by_id:
                return None
            cid = max(by_id)
            return self._tuple(thread_id, ns, cid, by_id[cid], state)

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None, limit: int | None = None) -> Iterator[CheckpointTuple]:
        thread_ids = [config["configurable"]["thread_id"]] if config else self._all_threads()
        config_ns = config["configurable"].get("checkpoint_ns") if config else None
        config_cid = get_checkpoint_id(config) if config else None
        before_cid = get_checkpoint_id(before) if before else None
        for thread_id in thread_ids:
            with self._lock:
                state = self._state(thread_id)
                found: list[CheckpointTuple] = []
                for ns, by_id in state.checkpoints.items():
                    if config_ns is not None and ns != config_ns:
                        continue
                    for cid, saved in sorted(by_id.items(), key=lambda item: item[0], reverse=True):
                        if config_cid and cid != config_cid:
                            continue
                        if before_cid and cid >= before_cid:
                            continue
                        metadata = self.serde.loads_typed(saved.metadata)
                        if filter and not all(metadata.get(k) == v for k, v in filter.items()):
                            continue
                        if limit is not None and len(found) >= limit:
                            break
                        found.append(self._tuple(thread_id, ns, cid, saved, state, metadata=metadata))
            if limit is not None:
                limit -= len(found)
            yield from found
            if limit is not None and limit <= 0:
                return

    # -- writing ----------------------------------------------------------------------------------

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        put = serialize_put(self.serde, config, checkpoint, metadata, new_versions)
        with self._lock:
            executions = self._shared.put_executions
            executions[(put.thread_id, put.ns, put.checkpoint_id)] = put.execution
            if len(executions) > _PUT_EXECUTIONS:
                executions.popitem(last=False)
        # Appended outside the lock: the savers of a process append together (one fsync for all: group commit).
        put.saved.seq = self.journal.append(CHECKPOINT_EVENT, put.execution, put.payload(),
                                            thread_id=journal_id(put.thread_id), step_id=put.checkpoint_id,
                                            key_scope="execution")

        def apply(state: ThreadState) -> None:
            state.add_checkpoint(put.ns, put.checkpoint_id, put.saved, put.stored_blobs())
            state.executions.add(put.execution)

        self._applied(put.thread_id, put.saved.seq, apply)
        return _config(put.thread_id, put.ns, put.checkpoint_id)

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        thread_id = config["configurable"]["thread_id"]
        ns = config["configurable"].get("checkpoint_ns", "")
        cid = config["configurable"]["checkpoint_id"]
        items = [(WRITES_IDX_MAP.get(channel, idx), channel, self.serde.dumps_typed(value))
                 for idx, (channel, value) in enumerate(writes)]
        # The checkpoint's execution: of one put here (most often), else of one read from the journal, else (its
        # put comes after its writes, as LangGraph's async durability sends them) the run putting it now. A thread
        # cached holds every checkpoint a graph here can write to but new ones (it started from what it read).
        with self._lock:
            execution = self._shared.put_executions.get((thread_id, ns, cid))
            if execution is None:
                cached = self._shared.threads.get(thread_id)
                state = cached.state if cached is not None else self._state(thread_id)
                saved = state.checkpoints.get(ns, {}).get(cid)
                execution = saved.execution if saved and saved.execution else execution_of(
                    thread_id, config.get("metadata") or {})
        seq = self.journal.append(WRITES_EVENT, execution, writes_payload(ns, cid, task_id, task_path, items),
                                  thread_id=journal_id(thread_id), step_id=cid, key_scope="execution")
        self._applied(thread_id, seq, lambda state: state.add_writes(ns, cid, task_id, task_path, items))

    # -- deleting: keys destroyed, then a tombstone ----------------------------------------------

    def _tombstone(self, thread_id: str, payload: dict[str, Any]) -> None:
        """Append the tombstone and apply it to the cached thread."""
        payload = {"kind": "deleted", "thread_id": thread_id, **payload}
        seq = self.journal.append(TOMBSTONE_EVENT, TOMBSTONE_EXECUTION, payload, thread_id=journal_id(thread_id),
                                  key_scope="none")
        self._applied(thread_id, seq, lambda state: apply_tombstone(state, payload, seq), deleted=True)

    def _shred(self, scope: str, value: str, reason: str) -> None:
        try:
            self.journal.shred(**{scope: value}, reason=reason)
        except UnknownScopeError:
            pass  # nothing was ever encrypted in that scope

    def delete_thread(self, thread_id: str) -> None:
        """Forget a thread: the keys of its runs (whichever stream wrote them) and of its scope are destroyed,
        then a tombstone."""
        with self._lock:
            state = self._state(thread_id)
            if not state.executions and not any(state.checkpoints.values()):
                return
            for execution in sorted(state.executions):
                self._shred("execution", execution, "LangGraph delete_thread")
            self._shred("thread", journal_id(thread_id), "LangGraph delete_thread")
            self._tombstone(thread_id, {"scope": "thread"})
            state.executions.clear()

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Forget the checkpoints and writes of these runs, in every thread: their keys, then tombstones."""
        runs = sorted({str(r) for r in run_ids})
        with self._lock:
            # Every thread with a checkpoint of those runs: theirs, and copies of them in other threads.
            threads = {t for t in self._all_threads()
                       if any(s.run_id in runs
                              for by_id in self._state(t).checkpoints.values() for s in by_id.values())}
            for run in runs:
                self._shred("execution", journal_id(run), "LangGraph delete_for_runs")
            for thread_id in sorted(threads):
                self._tombstone(thread_id, {"scope": "runs", "run_ids": runs})
                self._state(thread_id).executions.difference_update(journal_id(run) for run in runs)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``keep_latest``: only each namespace's latest checkpoint is returned afterwards (a tombstone names
        the others; they stay encrypted under their run's key). ``delete``: as :meth:`delete_thread`."""
        if strategy not in ("keep_latest", "delete"):
            raise ValidationError("strategy", f"unknown prune strategy {strategy!r}: keep_latest or delete")
        for thread_id in thread_ids:
            if strategy == "delete":
                self.delete_thread(thread_id)
                continue
            with self._lock:
                state = self._state(thread_id)
                gone = [[ns, cid] for ns, by_id in sorted(state.checkpoints.items()) for cid in sorted(by_id)
                        if cid != max(by_id)]
                if gone:
                    self._tombstone(thread_id, {"scope": "checkpoints", "checkpoints": gone})

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint (with its whole parent chain) and pending write of a thread to another.

        The copies are new events of the target thread, encrypted under the target thread's own key
        (deleting the source does not delete them); the source is unchanged. ``delete_for_runs`` hides
        copies of those runs' checkpoints too (a tombstone), without destroying the target's key.
        """
        with self._lock:
            source = self._state(source_thread_id)
            self._state(target_thread_id)  # cached, so that the copies are applied as they are appended
            # In checkpoint id order, which LangGraph makes the order it wrote them in (seqs of several streams
            # do not compare).
            ordered = sorted(((cid, ns, s) for ns, by_id in source.checkpoints.items() for cid, s in by_id.items()),
                             key=lambda item: (item[0], item[1]))
            sent: set[tuple[str, str, Any]] = set()
            execution = execution_of(target_thread_id, {})
            for cid, ns, saved in ordered:
                versions = self.serde.loads_typed(saved.checkpoint)["channel_versions"]
                blobs: dict[str, tuple[Any, Typed | None]] = {}
                for channel, version in versions.items():
                    blob = source.blobs.get((ns, channel, version))
                    if blob is not None and (ns, channel, version) not in sent:
                        sent.add((ns, channel, version))
                        blobs[channel] = (version, None if blob[0] == EMPTY else blob)
                metadata = self.serde.loads_typed(saved.metadata)
                copy = Saved(saved.checkpoint, saved.metadata, saved.parent, saved.run_id, None, execution)
                # The copy has a key of its own (the target thread's execution): deleting the source, which
                # destroys its runs' keys, must not take the copy with it.
                copy.seq = self.journal.append(
                    CHECKPOINT_EVENT, execution,
                    checkpoint_payload(ns, cid, copy, blobs, metadata.get("step"), metadata.get("source"),
                                       target_thread_id),
                    thread_id=journal_id(target_thread_id), step_id=cid, key_scope="execution")
                stored = {k: (v, b if b is not None else (EMPTY, b"")) for k, (v, b) in blobs.items()}

                def apply(state: ThreadState, ns: str = ns, cid: str = cid, copy: Saved = copy,
                          stored: dict[str, tuple[Any, Typed]] = stored) -> None:
                    state.add_checkpoint(ns, cid, copy, stored)
                    state.executions.add(execution)

                self._applied(target_thread_id, copy.seq, apply)
                by_task: dict[tuple[str, str], list[tuple[int, str, Typed]]] = {}
                for (task_id, idx), (_, channel, value, task_path) in source.writes.get((ns, cid), {}).items():
                    by_task.setdefault((task_id, task_path), []).append((idx, channel, value))
                for (task_id, task_path), items in by_task.items():
                    seq = self.journal.append(WRITES_EVENT, execution,
                                              writes_payload(ns, cid, task_id, task_path, items),
                                              thread_id=journal_id(target_thread_id), step_id=cid,
                                              key_scope="execution")

                    def add(state: ThreadState, ns: str = ns, cid: str = cid,
                            task: tuple[str, str] = (task_id, task_path),
                            items: list[tuple[int, str, Typed]] = items) -> None:
                        state.add_writes(ns, cid, task[0], task[1], items)

                    self._applied(target_thread_id, seq, add)

    # -- async: the same, off the event loop (appends fsync) -------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        items = await asyncio.to_thread(lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
        for item in items:
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(lambda: self.prune(thread_ids, strategy=strategy))


def _config(thread_id: str, ns: str, cid: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}}

