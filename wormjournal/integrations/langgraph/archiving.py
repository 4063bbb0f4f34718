"""``ArchivingSaver``: any LangGraph checkpoint saver, with every write archived in the journal.

``ArchivingSaver(inner, journal)`` is a drop-in checkpointer: reads go to ``inner``
(the in-memory saver, SqliteSaver, PostgresSaver, ...); every ``put`` and
``put_writes`` is first appended to the journal (durable when it returns) and only
then handed to ``inner``, so nothing reaches the application's store that the archive
does not hold. The archived values are serialized by ``inner``'s serializer and
encrypted in the thread's key scope (FORMAT.md, section 3.4: ``checkpoint_saved`` and
``custom:langgraph.pending_writes`` events). ``delete_thread`` also crypto-shreds the thread's archived
copies (the right to be forgotten) and leaves a tombstone; the other deletions are
passed on and recorded.
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
    serialize_put,
    writes_payload,
)


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
        self.journal.append(CHECKPOINT_EVENT, put.execution, put.payload(), thread_id=put.thread_id,
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
                            thread_id=thread_id, step_id=cid, key_scope="thread")

    def _tombstone(self, thread_id: str | None, payload: dict[str, Any]) -> None:
        self.journal.append(TOMBSTONE_EVENT, TOMBSTONE_EXECUTION,
                            {"kind": "deleted", "thread_id": thread_id, **payload},
                            thread_id=thread_id, key_scope="none")

    def _forget_thread(self, thread_id: str) -> None:
        try:
            self.journal.shred(thread=thread_id, reason="LangGraph delete_thread")
        except UnknownScopeError:
            pass  # nothing of the thread was archived
        self._tombstone(thread_id, {"scope": "thread"})

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
        self._tombstone(None, {"scope": "runs", "run_ids": sorted(str(r) for r in run_ids)})

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.inner.copy_thread(source_thread_id, target_thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self.inner.prune(thread_ids, strategy=strategy)

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
