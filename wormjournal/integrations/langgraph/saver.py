"""``JournalSaver``: a LangGraph checkpoint saver on the journal alone.

Every ``put`` and ``put_writes`` is an event of the journal (durable when it returns),
its payload encrypted in the key scope of the LangGraph run (the journal execution of
the checkpoint). Reads rebuild a thread from its events, which the journal's
``Reader`` verifies (hash chain, Merkle root, signed manifest; the chain alone for
events not sealed yet) before anything is handed to LangGraph's serializer: stored
bytes are untrusted input. A thread is read from the journal when first needed, through
the saver's one ``Reader`` (which follows the write-ahead log), then kept up to date by
this saver's own writes, in a cache of the ``cache_threads`` threads read last; a thread
another saver of the journal wrote to since is read again (``Journal.appended_since``).

Deletion on a write-once store is crypto-shredding plus a tombstone: ``delete_thread``
destroys the keys of the thread's runs (and of the thread's scope), ``delete_for_runs``
those of the runs; then a tombstone event says what is gone, so those checkpoints are
never returned again, and ``verify`` still passes. ``prune`` only writes a tombstone
(the kept checkpoint shares its run's key). It behaves like LangGraph's in-memory saver
in everything they share (the tests run both side by side).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Sequence
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


class JournalSaver(BaseCheckpointSaver[str]):
    """A complete checkpoint saver backed by ``journal`` (a :class:`wormjournal.Journal`)."""

    def __init__(self, journal: Any, *, serde: SerializerProtocol | None = None, cache_threads: int = 256) -> None:
        super().__init__(serde=serde)
        self.journal = journal
        # The threads read last (at most cache_threads), each whole as long as the journal appended nothing of it
        # that this saver did not apply (Journal.appended_since): another saver's writes are read, never missed.
        self._threads: OrderedDict[str, ThreadState] = OrderedDict()
        self._cache_threads = cache_threads
        self._reader: Any = None
        self._lock = threading.RLock()

    # -- the thread's state, from verified events -----------------------------------------------

    def _read(self) -> Any:
        """The saver's one Reader (under its lock): it follows the write-ahead log, reading each frame once."""
        if self._reader is None:
            self._reader = self.journal.reader()
        return self._reader

    def _state(self, thread_id: str) -> ThreadState:
        with self._lock:
            state = self._threads.get(thread_id)
            if state is not None and not self.journal.appended_since(journal_id(thread_id), state.upto):
                self._threads.move_to_end(thread_id)
                return state
            state = ThreadState(upto=self.journal.next_seq)  # what is read holds at least the events before it
            for e in self._read().thread_events(journal_id(thread_id)):  # each verified first
                if e.event_type in SAVER_EVENTS:
                    apply_event(state, e.event_type, e.payload, e.seq, e.execution_id)
            self._threads[thread_id] = state
            while len(self._threads) > self._cache_threads:
                self._threads.popitem(last=False)
            return state

    def _appended(self, thread_id: str, state: ThreadState, seq: int) -> None:
        """After this saver appended the thread's event ``seq`` and applied it to ``state``: the state stays whole
        when nothing was appended since it was; else it is read again when next needed."""
        if seq == state.upto:
            state.upto = seq + 1
        elif self._threads.get(thread_id) is state:
            del self._threads[thread_id]

    def _all_threads(self) -> list[str]:
        """Every thread with a checkpoint, in the order of its first one (as the in-memory saver lists them)."""
        with self._lock:
            found = {original_thread(e.thread_id, e.payload): None
                     for e in self._read().find(event_type=CHECKPOINT_EVENT) if e.thread_id}
            return list(found) + [t for t in self._threads if t not in found]

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
            state = self._state(put.thread_id)
            put.saved.seq = self.journal.append(CHECKPOINT_EVENT, put.execution, put.payload(),
                                                thread_id=journal_id(put.thread_id),
                                                step_id=put.checkpoint_id, key_scope="execution")
            state.add_checkpoint(put.ns, put.checkpoint_id, put.saved, put.stored_blobs())
            state.executions.add(put.execution)
            self._appended(put.thread_id, state, put.saved.seq)
        return _config(put.thread_id, put.ns, put.checkpoint_id)

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        thread_id = config["configurable"]["thread_id"]
        ns = config["configurable"].get("checkpoint_ns", "")
        cid = config["configurable"]["checkpoint_id"]
        items = [(WRITES_IDX_MAP.get(channel, idx), channel, self.serde.dumps_typed(value))
                 for idx, (channel, value) in enumerate(writes)]
        with self._lock:
            state = self._state(thread_id)
            saved = state.checkpoints.get(ns, {}).get(cid)
            execution = saved.run_id if saved and saved.run_id else execution_of(thread_id, {})
            seq = self.journal.append(WRITES_EVENT, execution, writes_payload(ns, cid, task_id, task_path, items),
                                      thread_id=journal_id(thread_id), step_id=cid, key_scope="execution")
            state.add_writes(ns, cid, task_id, task_path, items)
            self._appended(thread_id, state, seq)

    # -- deleting: keys destroyed, then a tombstone ----------------------------------------------

    def _tombstone(self, thread_id: str, payload: dict[str, Any]) -> ThreadState:
        """Append the tombstone and apply it; returns the thread's state it was applied to."""
        payload = {"kind": "deleted", "thread_id": thread_id, **payload}
        state = self._state(thread_id)
        seq = self.journal.append(TOMBSTONE_EVENT, TOMBSTONE_EXECUTION, payload, thread_id=journal_id(thread_id),
                                  key_scope="none")
        apply_tombstone(state, payload, seq)
        self._appended(thread_id, state, seq)
        return state

    def _shred(self, scope: str, value: str, reason: str) -> None:
        try:
            self.journal.shred(**{scope: value}, reason=reason)
        except UnknownScopeError:
            pass  # nothing was ever encrypted in that scope

    def delete_thread(self, thread_id: str) -> None:
        """Forget a thread: the keys of its runs and of its scope are destroyed, then a tombstone."""
        with self._lock:
            state = self._state(thread_id)
            if not state.executions and not any(state.checkpoints.values()):
                return
            for execution in sorted(state.executions):
                self._shred("execution", execution, "LangGraph delete_thread")
            self._shred("thread", journal_id(thread_id), "LangGraph delete_thread")
            self._tombstone(thread_id, {"scope": "thread"}).executions.clear()

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Forget the checkpoints and writes of these runs, in every thread: their keys, then tombstones."""
        runs = sorted({str(r) for r in run_ids})
        with self._lock:
            # Every thread with a checkpoint of those runs: theirs, and copies of them in other threads.
            threads = {t for t in self._all_threads()
                       if any(s.run_id in runs
                              for by_id in self._state(t).checkpoints.values() for s in by_id.values())}
            for run in runs:
                self._shred("execution", run, "LangGraph delete_for_runs")
            for thread_id in sorted(threads):
                self._tombstone(thread_id, {"scope": "runs", "run_ids": runs})
                self._state(thread_id).executions.difference_update(runs)

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
            target = self._state(target_thread_id)
            ordered = sorted(((s.seq or 0, ns, cid, s) for ns, by_id in source.checkpoints.items()
                              for cid, s in by_id.items()), key=lambda item: item[0])
            sent: set[tuple[str, str, Any]] = set()
            for _, ns, cid, saved in ordered:
                versions = self.serde.loads_typed(saved.checkpoint)["channel_versions"]
                blobs: dict[str, tuple[Any, Typed | None]] = {}
                for channel, version in versions.items():
                    blob = source.blobs.get((ns, channel, version))
                    if blob is not None and (ns, channel, version) not in sent:
                        sent.add((ns, channel, version))
                        blobs[channel] = (version, None if blob[0] == EMPTY else blob)
                metadata = self.serde.loads_typed(saved.metadata)
                copy = Saved(saved.checkpoint, saved.metadata, saved.parent, saved.run_id, None)
                # The copy has a key of its own (the target thread's execution): deleting the source, which
                # destroys its runs' keys, must not take the copy with it.
                execution = execution_of(target_thread_id, {})
                copy.seq = self.journal.append(
                    CHECKPOINT_EVENT, execution,
                    checkpoint_payload(ns, cid, copy, blobs, metadata.get("step"), metadata.get("source"),
                                       target_thread_id),
                    thread_id=journal_id(target_thread_id), step_id=cid, key_scope="execution")
                target.add_checkpoint(ns, cid, copy,
                                      {k: (v, b if b is not None else (EMPTY, b"")) for k, (v, b) in blobs.items()})
                target.executions.add(execution)
                self._appended(target_thread_id, target, copy.seq)
                by_task: dict[tuple[str, str], list[tuple[int, str, Typed]]] = {}
                for (task_id, idx), (_, channel, value, task_path) in source.writes.get((ns, cid), {}).items():
                    by_task.setdefault((task_id, task_path), []).append((idx, channel, value))
                for (task_id, task_path), items in by_task.items():
                    seq = self.journal.append(WRITES_EVENT, execution,
                                              writes_payload(ns, cid, task_id, task_path, items),
                                              thread_id=journal_id(target_thread_id), step_id=cid,
                                              key_scope="execution")
                    target.add_writes(ns, cid, task_id, task_path, items)
                    self._appended(target_thread_id, target, seq)

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

