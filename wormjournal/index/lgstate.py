"""The state at a seq: LangGraph's own, from a thread's verified checkpoint events, or the fold.

A LangGraph checkpoint holds the graph's channel values after its reducers (``add_messages``,
``operator.add`` ...) were applied: the state LangGraph itself had. The savers of
``wormjournal.integrations.langgraph`` store each checkpoint and each task's pending writes as
events (FORMAT.md 3.4); this module reads them back by that section's rules, with the payloads
as plain data (``lgvalues``: nothing the bytes name is imported or called). It is the reader's side
of the saver's ``codec.apply_event``, in the core because an auditor reads without LangGraph, and
the core never imports the integrations.

The state at ``upto`` is that of the thread's latest checkpoint (the greatest checkpoint id, as
LangGraph's ``get_state`` picks it) among the events up to ``upto``, tombstones applied in seq
order; its pending writes (those of tasks of the next step, recorded by then) are listed, not
applied: LangGraph's ``get_state`` does not apply them either, and applying them would need the
graph's reducers on LangGraph's own objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import IntegrityError
from ..payload import MARKER_KEY, is_marker
from .lgformat import CHECKPOINT_EVENT, EMPTY, TOMBSTONE_EVENT, WRITES_EVENT, Typed, read_saver_payload
from .lgformat import journal_id as thread_key
from .lgvalues import decode_typed, jsonable
from .model import Event

SOURCE_CHECKPOINT = "langgraph-checkpoint"
SOURCE_FOLD = "fold"


def is_internal(channel: str) -> bool:
    """A channel of LangGraph's own (``__start__``, ``branch:to:node``, ``join:...``), not a state key."""
    return channel.startswith(("__", "branch:", "join:"))


@dataclasses.dataclass(frozen=True)
class PendingWrite:
    """A write of a task of the step after the checkpoint, recorded before the next checkpoint (an interrupt,
    an error, a task that finished while another failed). ``value`` is plain data; a write whose event could
    not be read has ``channel`` None and the event's marker as ``value``."""

    task_id: str | None
    channel: str | None
    value: Any
    task_path: str
    seq: int


@dataclasses.dataclass(frozen=True)
class StateAt:
    """The state of an execution or a LangGraph thread after seq ``upto``, and how it was obtained.

    ``source`` is ``"langgraph-checkpoint"``: ``values`` are the state keys of the thread's latest checkpoint
    by then (``checkpoint_id``, in namespace ``checkpoint_ns``, event ``seq``), which LangGraph wrote after
    applying the graph's reducers; ``channels`` has LangGraph's internal channels too; ``pending_writes`` are
    listed, not applied. ``checkpoint_id`` is None when the thread had no checkpoint by then (or none is
    left: ``deleted_at`` is the seq of the tombstone that removed them). ``unreadable`` is ``"shredded"``
    (its key was destroyed) or ``"encrypted"`` (read without the key store) when the checkpoint's payload
    cannot be read: ``values`` is then that marker. ``incomplete`` names channels whose value could not be
    rebuilt (its blob is in an unreadable event, or it is a delta channel, which LangGraph rebuilds from
    earlier writes). Or ``source`` is ``"fold"``: ``values`` is the documented fold of the execution's
    ``state_updated`` and ``human_modified`` events (no reducers), and the checkpoint fields are empty.
    """

    values: dict[str, Any]
    source: str
    upto: int | None
    thread_id: str | None = None
    checkpoint_id: str | None = None
    checkpoint_ns: str = ""
    seq: int | None = None
    step: Any = None
    channels: dict[str, Any] = dataclasses.field(default_factory=dict)
    pending_writes: tuple[PendingWrite, ...] = ()
    unreadable: str | None = None
    incomplete: tuple[str, ...] = ()
    deleted_at: int | None = None

    def describe(self) -> str:
        """One line saying where the state comes from."""
        at = f"seq {self.upto}" if self.upto is not None else "now"
        if self.source == SOURCE_FOLD:
            return f"fold of state_updated events (no reducers), at {at}"
        thread = f"thread {self.thread_id}" + (f", namespace {self.checkpoint_ns!r}" if self.checkpoint_ns else "")
        if self.checkpoint_id is None:
            gone = f" (deleted at seq {self.deleted_at})" if self.deleted_at is not None else ""
            return f"no LangGraph checkpoint of {thread} at {at}{gone}"
        line = f"state of LangGraph checkpoint {self.checkpoint_id} (seq {self.seq}, {thread})"
        if self.unreadable is not None:
            return f"{line}: {self.unreadable}, its state cannot be read"
        line += ", reducers applied by LangGraph"
        if self.pending_writes:
            line += f"; {len(self.pending_writes)} pending write(s) after it, not applied"
        if self.incomplete:
            line += f"; not rebuilt: {', '.join(self.incomplete)}"
        return line

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (bytes as ``{"$bytes": base64}``), with ``describe()`` as ``"description"``."""
        out = jsonable(dataclasses.asdict(self))
        out["description"] = self.describe()
        return dict(out)


def is_langgraph_thread(events: Iterable[Event]) -> bool:
    return any(e.event_type == CHECKPOINT_EVENT for e in events)


@dataclasses.dataclass
class _Checkpoint:
    seq: int
    execution_id: str
    payload: dict[str, Any] | None  # None: unreadable (marker)
    marker: Any = None


class _Thread:
    """A thread's checkpoints, blobs and writes by the rules of FORMAT.md 3.4, kept as stored (decoded only
    for the checkpoint asked for)."""

    def __init__(self) -> None:
        self.clear()
        self.deleted_at: int | None = None

    def clear(self) -> None:
        self.checkpoints: dict[tuple[str, str], _Checkpoint] = {}
        self.unreadable: dict[str, _Checkpoint] = {}  # by checkpoint id (the event's step_id): namespace unknown
        self.blobs: dict[tuple[str, str, Any], Typed] = {}  # (ns, channel, version) -> (type, bytes)
        self.writes: dict[tuple[str, str], dict[tuple[str, int], tuple[str, str, Typed, str, int]]] = {}
        self.unreadable_writes: dict[str, list[tuple[int, Any]]] = {}  # checkpoint id -> (seq, marker)
        self.lost: Any = None  # the marker of the last unreadable checkpoint event (its blobs are lost)

    def apply(self, e: Event) -> None:
        marker = e.payload
        p = read_saver_payload(e.payload) if e.event_type in (CHECKPOINT_EVENT, WRITES_EVENT, TOMBSTONE_EVENT) \
            else None
        if e.event_type == CHECKPOINT_EVENT:
            if p is None:
                if e.step_id is not None:
                    self.unreadable[e.step_id] = _Checkpoint(e.seq, e.execution_id, None, marker)
                self.lost = marker
            elif p.get("kind") == "checkpoint":
                ns, cid = p["checkpoint_ns"], p["checkpoint_id"]
                for channel, (version, typed) in p["blobs"].items():
                    self.blobs[(ns, channel, _key(version))] = typed
                self.checkpoints[(ns, cid)] = _Checkpoint(e.seq, e.execution_id, p)
        elif e.event_type == WRITES_EVENT:
            if p is None:
                if e.step_id is not None:
                    self.unreadable_writes.setdefault(e.step_id, []).append((e.seq, marker))
            elif p.get("kind") == "writes":
                stored = self.writes.setdefault((p["checkpoint_ns"], p["checkpoint_id"]), {})
                existing = set(stored)
                for idx, channel, typed in p["writes"]:
                    key = (str(p["task_id"]), int(idx))
                    if key[1] >= 0 and key in existing:
                        continue  # a regular write is kept once; special ones (errors, interrupts) are replaced
                    stored[key] = (key[0], str(channel), typed, str(p["task_path"]), e.seq)
        elif e.event_type == TOMBSTONE_EVENT and p is not None and p.get("kind") == "deleted":
            self.tombstone(p, e.seq)

    def tombstone(self, p: Mapping[str, Any], seq: int) -> None:
        scope = p["scope"]
        if scope == "thread":
            self.clear()  # events come in seq order: all of it is older
            self.deleted_at = seq
            return
        if scope == "runs":
            runs = {str(r) for r in p["run_ids"]}
            executions = {thread_key(r) for r in runs}
            self._drop(lambda ns, cid, c: c.payload is not None and c.payload.get("run_id") in runs,
                       lambda cid, c: c.execution_id in executions)
        elif scope == "checkpoints":
            gone = {(str(ns), str(cid)) for ns, cid in p["checkpoints"]}
            self._drop(lambda ns, cid, c: (ns, cid) in gone, lambda cid, c: cid in {g[1] for g in gone})
        else:
            raise ValueError(f"unknown tombstone scope {scope!r}")
        if not self.checkpoints and not self.unreadable:
            self.deleted_at = seq

    def _drop(self, readable: Any, unreadable: Any) -> None:
        for (ns, cid), c in list(self.checkpoints.items()):
            if readable(ns, cid, c):
                del self.checkpoints[(ns, cid)]
                self.writes.pop((ns, cid), None)
        for cid, c in list(self.unreadable.items()):
            if unreadable(cid, c):
                del self.unreadable[cid]
                self.unreadable_writes.pop(cid, None)


def checkpoint_state(events: Sequence[Event], thread_id: str, upto: int | None, ns: str = "") -> StateAt:
    """The LangGraph state of the thread whose verified events (in seq order) are ``events``, after seq ``upto``
    (None: all of them), in checkpoint namespace ``ns`` (the root graph's by default).

    Raises IntegrityError (with ``seq``) when a readable event is not in the savers' format (FORMAT.md 3.4).
    Values that do not decode are markers (``lgvalues``), never an error.
    """
    thread = _Thread()
    last = None
    for e in events:
        if upto is not None and e.seq > upto:
            break
        last = e.seq
        try:
            thread.apply(e)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise IntegrityError(f"the LangGraph {e.event_type} event at seq {e.seq} is not in the savers' format "
                                 f"(FORMAT.md 3.4): {err}", seq=e.seq) from err
    upto = upto if upto is not None else last
    candidates: dict[str, _Checkpoint] = dict(thread.unreadable)  # an unreadable one may be of any namespace
    candidates.update({cid: c for (n, cid), c in thread.checkpoints.items() if n == ns})
    base = StateAt(values={}, source=SOURCE_CHECKPOINT, upto=upto, thread_id=thread_id, checkpoint_ns=ns,
                   deleted_at=thread.deleted_at)
    if not candidates:
        return base
    cid = max(candidates)
    chosen = candidates[cid]
    if chosen.payload is None:
        state = chosen.marker[MARKER_KEY] if is_marker(chosen.marker) else "unreadable"
        return dataclasses.replace(base, values=chosen.marker, checkpoint_id=cid, seq=chosen.seq, unreadable=state)
    try:
        return _rebuild(thread, base, ns, cid, chosen)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise IntegrityError(f"the LangGraph checkpoint at seq {chosen.seq} is not in the savers' format "
                             f"(FORMAT.md 3.4): {err}", seq=chosen.seq) from err


def _rebuild(thread: _Thread, base: StateAt, ns: str, cid: str, chosen: _Checkpoint) -> StateAt:
    p = chosen.payload
    assert p is not None
    checkpoint = _typed(p["checkpoint"])
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("channel_versions"), dict):
        raise ValueError("its checkpoint does not decode to one with channel_versions")
    metadata = _typed(p["metadata"])
    deltas = metadata.get("counters_since_delta_snapshot") if isinstance(metadata, dict) else None
    channels: dict[str, Any] = {}
    incomplete = []
    for channel, version in checkpoint["channel_versions"].items():
        blob = thread.blobs.get((ns, channel, _key(version)))
        if blob is None:
            if thread.lost is not None:  # its value was in an event that cannot be read
                channels[channel] = thread.lost
                incomplete.append(str(channel))
            continue
        if blob[0] == EMPTY:
            if isinstance(deltas, dict) and channel in deltas:
                incomplete.append(str(channel))  # a delta channel between snapshots: LangGraph replays writes
            continue
        channels[channel] = _typed(blob)
    stored = thread.writes.get((ns, cid), {})
    pending = [PendingWrite(task_id, channel, _typed(value), task_path, seq)
               for task_id, channel, value, task_path, seq in
               (stored[k] for k in sorted(stored, key=lambda k: (stored[k][3], k[0], k[1])))]
    pending += [PendingWrite(None, None, marker, "", seq) for seq, marker in thread.unreadable_writes.get(cid, [])]
    thread_id = base.thread_id
    if isinstance(p.get("thread_id"), str) and thread_id == thread_key(p["thread_id"]):
        thread_id = p["thread_id"]
    return dataclasses.replace(
        base, values={k: v for k, v in channels.items() if not (isinstance(k, str) and is_internal(k))},
        channels=channels, checkpoint_id=cid, seq=chosen.seq, step=p.get("step"), thread_id=thread_id,
        pending_writes=tuple(pending), incomplete=tuple(incomplete), deleted_at=None)


def _typed(value: Typed) -> Any:
    """A stored (type, bytes) value as plain data."""
    return decode_typed(value[0], value[1])


def _key(version: Any) -> Any:
    """A channel version as a dict key (JSON and msgpack give the same scalars; anything else as text)."""
    return version if isinstance(version, (str, int, float)) or version is None else repr(version)

