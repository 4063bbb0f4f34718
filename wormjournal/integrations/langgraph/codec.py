"""How LangGraph checkpoints and pending writes become journal events, and back.

A checkpoint is a ``checkpoint_saved`` event; the pending writes of one task are a
``custom:langgraph.pending_writes`` event (not ``state_updated``, whose payload the
journal folds into an execution's state); a deletion is a
``custom:langgraph.checkpoints_deleted`` tombstone. LangGraph's serializer turns each value into
``(type, bytes)``, stored as they are in the event's binary payload (FORMAT.md 3.4,
:mod:`wormjournal.index.lgformat`): the saver never pickles, and the bytes are handed back to the
serializer only after the journal verified the event that holds them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ...errors import IntegrityError, ValidationError
from ...index import lgformat
from ...index.lgformat import (
    CHECKPOINT_EVENT,
    EMPTY,
    HASHED_ID,
    SAVER_EVENTS,
    TOMBSTONE_EVENT,
    TOMBSTONE_EXECUTION,
    WRITES_EVENT,
    Typed,
    journal_id,
    original_thread,
    read_saver_payload,
)

__all__ = ["CHECKPOINT_EVENT", "EMPTY", "HASHED_ID", "SAVER_EVENTS", "TOMBSTONE_EVENT", "TOMBSTONE_EXECUTION",
           "WRITES_EVENT", "Typed", "journal_id", "original_thread", "read_saver_payload"]


def execution_of(thread_id: str, metadata: Mapping[str, Any]) -> str:
    """The journal execution of a checkpoint: its LangGraph run, or the thread's own when it has none."""
    run_id = metadata.get("run_id")
    return journal_id(str(run_id) if run_id else f"langgraph-thread-{thread_id}")


@dataclasses.dataclass
class Saved:
    """A checkpoint as the saver keeps it (serialized, as LangGraph's in-memory saver does)."""

    checkpoint: Typed  # without channel_values
    metadata: Typed
    parent: str | None
    run_id: str | None
    seq: int | None
    execution: str | None = None  # the journal execution its event is in (its run's, or a copy's own)


@dataclasses.dataclass
class ThreadState:
    """One thread's checkpoints, channel blobs and pending writes, rebuilt from its verified events."""

    checkpoints: dict[str, dict[str, Saved]] = dataclasses.field(default_factory=dict)  # ns -> id -> saved
    blobs: dict[tuple[str, str, Any], Typed] = dataclasses.field(default_factory=dict)  # (ns, channel, version)
    writes: dict[tuple[str, str], dict[tuple[str, int], tuple[str, str, Typed, str]]] = dataclasses.field(
        default_factory=dict)  # (ns, checkpoint id) -> (task id, idx) -> (task id, channel, value, task path)
    executions: set[str] = dataclasses.field(default_factory=set)  # journal executions of its checkpoints
    upto: int = 0  # the events of the thread below this seq are all in it (JournalSaver)

    def add_checkpoint(self, ns: str, cid: str, saved: Saved, blobs: Mapping[str, tuple[Any, Typed]]) -> None:
        for channel, (version, value) in blobs.items():
            self.blobs[(ns, channel, version)] = value
        self.checkpoints.setdefault(ns, {})[cid] = saved

    def add_writes(self, ns: str, cid: str, task_id: str, task_path: str,
                   writes: Iterable[tuple[int, str, Typed]]) -> None:
        stored = self.writes.setdefault((ns, cid), {})
        existing = dict(stored)
        for idx, channel, value in writes:
            key = (task_id, idx)
            if idx >= 0 and key in existing:
                continue  # a regular write is kept once; special ones (errors, interrupts) are replaced
            stored[key] = (task_id, channel, value, task_path)

    def drop(self, predicate: Any) -> None:
        """Forget the checkpoints (and their writes) for which ``predicate(ns, id, saved)`` holds."""
        for ns, by_id in self.checkpoints.items():
            for cid in [c for c, s in by_id.items() if predicate(ns, c, s)]:
                del by_id[cid]
                self.writes.pop((ns, cid), None)
        # Blobs stay: they are reached only through a kept checkpoint's channel versions.

    def clear(self) -> None:
        """Forget everything so far (a deleted thread; events come in seq order, so all of it is older)."""
        self.checkpoints.clear()
        self.blobs.clear()
        self.writes.clear()


@dataclasses.dataclass(frozen=True)
class Put:
    """A ``put`` call, serialized: what both savers append."""

    thread_id: str
    ns: str
    checkpoint_id: str
    saved: Saved
    blobs: dict[str, tuple[Any, Typed | None]]  # channel -> (version, value; None: no value)
    metadata: Mapping[str, Any]

    @property
    def execution(self) -> str:
        return self.saved.execution or execution_of(self.thread_id, self.metadata)

    def payload(self) -> bytes:
        return checkpoint_payload(self.ns, self.checkpoint_id, self.saved, self.blobs, self.metadata.get("step"),
                                  self.metadata.get("source"), self.thread_id)

    def stored_blobs(self) -> dict[str, tuple[Any, Typed]]:
        return {k: (v, typed if typed is not None else (EMPTY, b"")) for k, (v, typed) in self.blobs.items()}


def serialize_put(serde: Any, config: Mapping[str, Any], checkpoint: Mapping[str, Any], metadata: Mapping[str, Any],
                  new_versions: Mapping[str, Any]) -> Put:
    """A checkpoint as LangGraph's in-memory saver keeps it: without its values, plus a blob per new version."""
    from langgraph.checkpoint.base import get_checkpoint_metadata

    c = dict(checkpoint)
    values: dict[str, Any] = c.pop("channel_values")
    blobs = {k: (v, serde.dumps_typed(values[k]) if k in values else None) for k, v in new_versions.items()}
    md = get_checkpoint_metadata(config, metadata)  # type: ignore[arg-type]
    run_id = md.get("run_id")
    configurable = config["configurable"]
    saved = Saved(serde.dumps_typed(c), serde.dumps_typed(md), configurable.get("checkpoint_id"),
                  None if run_id is None else str(run_id), None, execution_of(configurable["thread_id"], md))
    return Put(configurable["thread_id"], configurable.get("checkpoint_ns", ""), checkpoint["id"], saved, blobs, md)


def checkpoint_payload(ns: str, cid: str, saved: Saved, blobs: Mapping[str, tuple[Any, Typed | None]],
                       step: Any, source: Any, thread_id: str) -> bytes:
    return lgformat.checkpoint_payload(ns, cid, saved.parent, saved.run_id, saved.checkpoint, saved.metadata, blobs,
                                       step, source, thread_id)


def writes_payload(ns: str, cid: str, task_id: str, task_path: str,
                   writes: Iterable[tuple[int, str, Typed]]) -> bytes:
    return lgformat.writes_payload(ns, cid, task_id, task_path, writes)


def apply_event(state: ThreadState, event_type: str, payload: Any, seq: int, execution_id: str) -> None:
    """Replay one verified event of the thread into ``state`` (events in seq order). Raises IntegrityError when it
    is not in the savers' format."""
    try:
        p = read_saver_payload(payload)
        if p is None:
            return  # shredded or unreadable: a deleted thread or run, which a tombstone also names
        if event_type == CHECKPOINT_EVENT and p.get("kind") == "checkpoint":
            saved = Saved(p["checkpoint"], p["metadata"], p["parent_checkpoint_id"], p["run_id"], seq, execution_id)
            state.add_checkpoint(p["checkpoint_ns"], p["checkpoint_id"], saved, p["blobs"])
            state.executions.add(execution_id)
        elif event_type == WRITES_EVENT and p.get("kind") == "writes":
            state.add_writes(p["checkpoint_ns"], p["checkpoint_id"], p["task_id"], p["task_path"], p["writes"])
        elif event_type == TOMBSTONE_EVENT and p.get("kind") == "deleted":
            apply_tombstone(state, p, seq)
    except (KeyError, TypeError, ValueError) as e:
        raise IntegrityError(f"the LangGraph {event_type} event at seq {seq} is not in the saver's format: {e}",
                             seq=seq) from e


def apply_tombstone(state: ThreadState, payload: Mapping[str, Any], seq: int) -> None:
    scope = payload["scope"]
    if scope == "thread":
        state.clear()
    elif scope == "runs":
        runs = set(payload["run_ids"])
        state.drop(lambda ns, cid, s: s.run_id in runs)
    elif scope == "checkpoints":
        gone = {(ns, cid) for ns, cid in payload["checkpoints"]}
        state.drop(lambda ns, cid, s: (ns, cid) in gone)
    else:
        raise ValidationError("scope", f"unknown tombstone scope {scope!r}")
