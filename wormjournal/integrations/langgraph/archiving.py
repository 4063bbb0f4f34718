"""``ArchivingSaver``: any LangGraph checkpoint saver, with every write archived in the journal.

``ArchivingSaver(inner, journal)`` is a drop-in checkpointer: reads go to ``inner``
(the in-memory saver, SqliteSaver, PostgresSaver, ...); every ``put`` and
``put_writes`` is first appended to the journal (durable when it returns) and only
then handed to ``inner``, so nothing reaches the application's store that the archive
does not hold. The archived values are serialized by ``inner``'s serializer and
encrypted in the thread's key scope (FORMAT.md, section 3.4: ``checkpoint_saved`` and
``custom:langgraph.pending_writes`` events). ``delete_thread`` also crypto-shreds the thread's archived
copies (the right to be forgotten) and leaves a tombstone; ``delete_for_runs`` and ``prune``
are passed on and recorded as tombstones of each thread they touch, and ``copy_thread``
archives the copies before ``inner`` makes them: a ``JournalSaver`` on the journal reads
every thread as ``inner`` holds it.
"""

from __future__ import annotations

import asyncio
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
)

from ...errors import UnknownScopeError
from .codec import (
    CHECKPOINT_EVENT,
    TOMBSTONE_EVENT,
    TOMBSTONE_EXECUTION,
    WRITES_EVENT,
    execution_of,
    journal_id,
    serialize_put,
    writes_payload,
)
from .saver import JournalSaver


class ArchivingSaver(BaseCheckpointSaver[Any]):
    """Wraps ``inner``; archives each checkpoint and pending write in ``journal`` before ``inner`` gets it."""

    def __init__(self, inner: BaseCheckpointSaver[Any], journal: Any) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.journal = journal

    @property
    def config_specs(self) -> list[Any]:
        return list(self.inner.config_specs)

    def get_next_version(self, current: Any, channel: None) -> Any:
        return self.inner.get_next_version(current, channel)

    # -- archiving --------------------------------------------------------------------------------

    def _archive_put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                     new_versions: ChannelVersions) -> None:
        put = serialize_put(self.serde, config, checkpoint, metadata, new_versions)
        self.journal.append(CHECKPOINT_EVENT, put.execution, put.payload(), thread_id=journal_id(put.thread_id),
                            step_id=put.checkpoint_id, key_scope="thread")

    def _archive_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                        task_path: str) -> None:
        thread_id = config["configurable"]["thread_id"]
        ns = config["configurable"].get("checkpoint_ns", "")
        cid = config["configurable"]["checkpoint_id"]
        items = [(WRITES_IDX_MAP.get(channel, idx), channel, self.serde.dumps_typed(value))
                 for idx, (channel, value) in enumerate(writes)]
        run_id = (config.get("metadata") or {}).get("run_id")
        self.journal.append(WRITES_EVENT, execution_of(thread_id, {"run_id": run_id}),
                            writes_payload(ns, cid, task_id, task_path, items),
                            thread_id=journal_id(thread_id), step_id=cid, key_scope="thread")

    def _tombstone(self, thread_id: str | None, payload: dict[str, Any]) -> None:
        """A tombstone of the thread the journal knows as ``thread_id`` (journal_id of LangGraph's)."""
        self.journal.append(TOMBSTONE_EVENT, TOMBSTONE_EXECUTION,
                            {"kind": "deleted", "thread_id": thread_id, **payload},
                            thread_id=thread_id, key_scope="none")

    def _archive_copy(self, tuples: Sequence[CheckpointTuple], target_thread_id: str) -> None:
        """Archive what ``copy_thread`` gives the target thread: the source's checkpoints (``tuples``, as ``inner``
        lists them) with their pending writes, each whole (every channel's value), in the order LangGraph wrote
        them (checkpoint ids increase with time)."""
        execution = execution_of(target_thread_id, {})  # the target thread's own, as JournalSaver's copies
        for t in sorted(tuples, key=lambda t: t.checkpoint["id"]):
            ns = t.config["configurable"].get("checkpoint_ns", "")
            cid = t.checkpoint["id"]
            parent = (t.parent_config or {}).get("configurable", {}).get("checkpoint_id")
            config = {"configurable": {"thread_id": target_thread_id, "checkpoint_ns": ns, "checkpoint_id": parent}}
            put = serialize_put(self.serde, config, t.checkpoint, t.metadata, t.checkpoint["channel_versions"])
            self.journal.append(CHECKPOINT_EVENT, execution, put.payload(), thread_id=journal_id(target_thread_id),
                                step_id=cid, key_scope="thread")
            by_task: dict[str, list[tuple[int, str, Any]]] = {}
            for task_id, channel, value in t.pending_writes or ():
                items = by_task.setdefault(task_id, [])
                items.append((WRITES_IDX_MAP.get(channel, len(items)), channel, self.serde.dumps_typed(value)))
            for task_id, items in by_task.items():
                self.journal.append(WRITES_EVENT, execution, writes_payload(ns, cid, task_id, "", items),
                                    thread_id=journal_id(target_thread_id), step_id=cid, key_scope="thread")

    def _record_runs_deleted(self, run_ids: Sequence[str]) -> None:
        """A tombstone of each thread the runs wrote in (found through the index of every stream of the journal: a
        run is an execution, perhaps of another worker's stream), or one without a thread when the archive holds none
        of them."""
        runs = sorted(str(r) for r in run_ids)
        threads: list[str | None] = [*JournalSaver(self.journal)._run_threads(runs)]  # noqa: SLF001 - every stream
        for thread_id in threads or [None]:
            self._tombstone(thread_id, {"scope": "runs", "run_ids": runs})

    def _pruned(self, tuples: Sequence[CheckpointTuple]) -> list[list[str]]:
        """The checkpoints ``prune(strategy="keep_latest")`` removes from a thread listed as ``tuples``: all but
        each namespace's latest, as ``[ns, checkpoint_id]``."""
        by_ns: dict[str, list[str]] = {}
        for t in tuples:
            by_ns.setdefault(t.config["configurable"].get("checkpoint_ns", ""), []).append(t.checkpoint["id"])
        return [[ns, cid] for ns, ids in sorted(by_ns.items()) for cid in sorted(ids) if cid != max(ids)]

    def _record_pruned(self, gone: dict[str, list[list[str]]], strategy: str) -> None:
        for thread_id, checkpoints in gone.items():
            if strategy == "delete":
                self._forget_thread(thread_id)
            elif checkpoints:
                self._tombstone(journal_id(thread_id), {"scope": "checkpoints", "checkpoints": checkpoints})

    def _forget_thread(self, thread_id: str) -> None:
        try:
            self.journal.shred(thread=journal_id(thread_id), reason="LangGraph delete_thread")
        except UnknownScopeError:
            pass  # nothing of the thread was archived
        self._tombstone(journal_id(thread_id), {"scope": "thread"})

    # -- the saver ---------------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.inner.get_tuple(config)

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None, limit: int | None = None) -> Iterator[CheckpointTuple]:
        return self.inner.list(config, filter=filter, before=before, limit=limit)

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        self._archive_put(config, checkpoint, metadata, new_versions)
        return self.inner.put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        self._archive_writes(config, writes, task_id, task_path)
        self.inner.put_writes(config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        """Delete the thread from ``inner`` and forget the archived copies: the thread's key is destroyed."""
        self.inner.delete_thread(thread_id)
        self._forget_thread(thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.inner.delete_for_runs(run_ids)
        self._record_runs_deleted(run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._archive_copy(list(self.inner.list(_thread(source_thread_id))), target_thread_id)
        self.inner.copy_thread(source_thread_id, target_thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        gone = {t: self._pruned(list(self.inner.list(_thread(t)))) for t in thread_ids}
        self.inner.prune(thread_ids, strategy=strategy)
        self._record_pruned(gone, strategy)

    # -- async -------------------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self.inner.aget_tuple(config)

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        async for item in self.inner.alist(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        await asyncio.to_thread(self._archive_put, config, checkpoint, metadata, new_versions)
        return await self.inner.aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        await asyncio.to_thread(self._archive_writes, config, writes, task_id, task_path)
        await self.inner.aput_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self.inner.adelete_thread(thread_id)
        await asyncio.to_thread(self._forget_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self.inner.adelete_for_runs(run_ids)
        await asyncio.to_thread(self._record_runs_deleted, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        tuples = [t async for t in self.inner.alist(_thread(source_thread_id))]
        await asyncio.to_thread(self._archive_copy, tuples, target_thread_id)
        await self.inner.acopy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        gone = {t: self._pruned([x async for x in self.inner.alist(_thread(t))]) for t in thread_ids}
        await self.inner.aprune(thread_ids, strategy=strategy)
        await asyncio.to_thread(self._record_pruned, gone, strategy)


def _thread(thread_id: str) -> RunnableConfig:
    """The config that lists every checkpoint of a thread, in every namespace."""
    return {"configurable": {"thread_id": thread_id}}
