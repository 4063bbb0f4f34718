"""Run capture: record a LangGraph run's lifecycle in the journal through LangChain callbacks.

Pass a :class:`RunRecorder` in the config of a graph call::

    graph.invoke(inputs, {"configurable": {"thread_id": "t1"}, "callbacks": [RunRecorder(journal)]})

It works with any checkpointer (LangGraph's own, :class:`ArchivingSaver`, :class:`JournalSaver`):
it only listens to callbacks. One graph run is one journal execution whose ``execution_id``
is the LangGraph root run id, and every event carries the ``thread_id`` of the config.
What is recorded, in order:

- the graph run starts: ``execution_started`` (payload ``{"inputs": ...}``), or
  ``execution_resumed`` when the run continues an earlier one (below);
- each node of the graph (the top level; subgraph internals and runnables called inside
  a node are part of their node), one record per LangGraph task: ``node_started``
  (``node``, ``step_id`` = the LangGraph step, ``"<step>.<i>"`` for the i-th ``Send`` task
  of the step, so parallel ``Send`` workers of one node are one record each), then one of

  - ``node_completed`` (payload ``{"update": <what the node returned>}``) and, when that is
    a non-empty state update, ``state_updated`` (payload ``{"new_state": <the update>}``, the
    form :meth:`Reader.state_at` folds), written together in one atomic batch;
  - ``node_failed`` (payload ``{"error": <type name>, "message": <str>}``);
  - ``human_interrupted`` (payload ``{"interrupts": [{"value": ..., "id": ...}]}``) when the
    node called ``langgraph.types.interrupt``: a pause, not a failure;
  - ``exception_raised`` (payload ``{"error", "message", "aborted": true}``) when a
    ``BaseException`` that is not an ``Exception`` (KeyboardInterrupt, SystemExit) tore
    through it: the node did not finish, so it stays *unfinished*, as after a crash;

  node events name their ``node_started`` event as ``parent_event_id``, and ``node_started``
  names the run's ``execution_started``/``execution_resumed`` event;
- the tool calls and model calls made inside a node (by the node itself, a ``ToolNode``, a
  subgraph, a runnable it calls), with the node's ``node``, ``step_id`` and its
  ``node_started`` as ``parent_event_id``; the events of one call share its LangChain run id
  as ``correlation_id``:

  - ``tool_called`` (``{"tool", "input", "tool_call_id"}``), then ``tool_returned``
    (``{"tool", "tool_call_id", "ok", "error"}``: ``ok`` false and ``error`` the exception's
    type name when the tool raised, or ``"ToolMessage(status=error)"`` when it returned an
    error message; ``ok`` null and ``"paused": true`` when it called ``interrupt``) with
    ``custom:langgraph.tool_output`` (``{"output"}``, or ``{"error", "message"}``);
  - ``llm_requested`` (``{"model", "messages"}`` for a chat model, ``{"model", "prompts"}``
    for a text model, and ``"params"``, the invocation parameters), then ``llm_completed``
    (``{"model", "usage": {"prompt_tokens", "completion_tokens", "total_tokens"}, "cost_usd"}``)
    with ``custom:langgraph.llm_output`` (``{"generations": [{"text", "tool_calls"}]}``), or
    ``custom:langgraph.llm_failed`` (``{"model", "error", "message"}``);
- a static interrupt (``interrupt_before``/``interrupt_after``), which no node reports, is
  recorded from LangGraph's graph lifecycle callback as ``human_interrupted`` without a node;
- the graph run ends: ``execution_completed`` (payload ``{"outputs": <the final state>}``);
  ``execution_paused`` instead when it was interrupted or drained (``GraphDrained``);
  ``execution_failed`` on an error (``{"error", "message"}``); ``execution_cancelled`` on a
  KeyboardInterrupt-like abort (which, like a pause, can be resumed).

**Usage and cost.** ``usage`` is the model's own count: ``llm_output["token_usage"]``
(``prompt_tokens``, ``completion_tokens``, ``total_tokens``) when the model reports it,
else the messages' ``usage_metadata`` (``input_tokens``, ``output_tokens``,
``total_tokens``); null when it reports neither. ``cost_usd`` is a ``cost_usd`` number the
model reports in ``llm_output``, its ``token_usage`` or the messages' ``response_metadata``,
else null: never computed from a price list. ``model`` is the name the response gives
(``model_name``/``model``), else the request's.

**Resume.** A graph call whose input is ``None`` or a ``Command`` (``Command(resume=...)``)
continues a thread from its checkpoint. At such a root start the recorder makes one
``thread_events(thread_id)`` lookup: if the thread's most recent recorded execution has
not completed or failed (it crashed, was paused by an interrupt, or was aborted), the run
continues THAT execution: it appends ``execution_resumed`` (payload ``{"resumed_by": <the
new LangGraph run id>, "unfinished_nodes": [nodes started and never ended], "inputs": ...}``;
an interrupted node has ended, its pause is recorded) and records everything after under
the old ``execution_id``. So a run that crashed and
was resumed has one history, in which ``replay`` shows the node that started and never
ended, then the resume. Otherwise the call starts a new execution.

**Forks.** A graph call whose config names a ``checkpoint_id`` (time travel: a config from
``get_state_history``, or the one ``update_state`` returns) runs from that checkpoint, not
from the thread's latest: its ``execution_started`` (or ``execution_resumed``) payload
has ``"forked_from": <that checkpoint id>``. The recorder sees callbacks, not the
checkpointer: a call that names the thread's latest checkpoint is recorded as a fork too.

**The human in the loop.** While a run is paused, :meth:`RunRecorder.record_human_change`
updates its state through ``graph.update_state`` and records ``human_modified`` (the
change as ``new_state``, who, why), and :meth:`RunRecorder.record_human_decision` records
``human_approved`` or ``human_rejected``; both go into the paused execution, so
``state_at`` shows the state before and after the human's change.

Payloads (inputs, state updates, error messages, interrupt values, prompts, completions,
tool inputs and outputs) are personal data: each is encrypted in the thread's key scope
(``key_scope="thread"``), or the execution's when the config has no thread id. An event
has no clear field beside its payload, so what ``wormjournal stats`` counts without the
keys is written in events of its own, in clear: ``tool_returned`` (tool name, call id,
``ok``, the error's type name) and ``llm_completed`` (model, token usage, cost), and
nothing else; the outputs and messages that go with them are the encrypted
``custom:langgraph.tool_output`` and ``custom:langgraph.llm_output`` events, written in the
same atomic batch. Ids stay in clear: do not put personal data in thread ids, node names
or tool names. Values that are not JSON (messages, sets, dataclasses) are converted
by :func:`to_json`; a payload over the journal's event size limit is replaced by its size
and SHA-256.

**Failures.** An event the journal refuses (closed, an id it does not take, ...) fails
the graph run when ``strict`` (the default); otherwise it is logged as a warning of this
module's logger naming the execution and thread, and the run goes on without it. A
failure of the recorder itself is treated the same way.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import enum
import hashlib
import logging
import math
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import PurePath
from typing import Any
from uuid import UUID

from langgraph.errors import GraphBubbleUp, GraphInterrupt
from langgraph.types import Command

from ...errors import ValidationError
from ...events import EventType, canonical_json, uuid7
from ...journal import Journal
from .codec import journal_id

try:  # LangGraph 1.2 adds graph lifecycle callbacks (interrupt / resume) for these handlers
    from langgraph.callbacks import GraphCallbackHandler as _Handler
except ImportError:  # pragma: no cover - older LangGraph: static interrupts go unrecorded
    from langchain_core.callbacks import BaseCallbackHandler as _Handler  # type: ignore[assignment]  # the older base

log = logging.getLogger(__name__)

TOOL_OUTPUT_EVENT = "custom:langgraph.tool_output"
LLM_OUTPUT_EVENT = "custom:langgraph.llm_output"
LLM_FAILED_EVENT = "custom:langgraph.llm_failed"
TOOL_ERROR_STATUS = "ToolMessage(status=error)"
# LangGraph traces ``graph.update_state`` as a root run named ``<graph name>UpdateState`` (when the node it writes as
# has conditional edges): not a run of the graph.
UPDATE_STATE_RUN = "UpdateState"

_MAX_DEPTH = 64
_PUSH = "__pregel_push"  # LangGraph's task path kind of a Send (and of a functional API call)
_LIFECYCLE = frozenset({
    EventType.EXECUTION_STARTED.value, EventType.EXECUTION_RESUMED.value, EventType.EXECUTION_PAUSED.value,
    EventType.EXECUTION_COMPLETED.value, EventType.EXECUTION_FAILED.value, EventType.EXECUTION_CANCELLED.value,
})
_FINISHED = frozenset({EventType.EXECUTION_COMPLETED.value, EventType.EXECUTION_FAILED.value})
_NODE_ENDS = frozenset({EventType.NODE_COMPLETED.value, EventType.NODE_FAILED.value,
                        EventType.HUMAN_INTERRUPTED.value})


def to_json(value: Any, _depth: int = 0) -> Any:
    """A JSON value for ``value``; never raises.

    JSON values pass as they are; mappings become objects (keys as strings), sequences and
    sets lists; pydantic models (LangChain messages) their ``model_dump()``, dataclasses
    their fields; datetimes ISO text, bytes base64 text; anything else its ``repr``.
    """
    try:
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else repr(value)
        if _depth >= _MAX_DEPTH:
            return _repr(value)
        d = _depth + 1
        if isinstance(value, Mapping):
            return {k if isinstance(k, str) else str(k): to_json(v, d) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [to_json(v, d) for v in value]
        if isinstance(value, (set, frozenset)):
            return sorted((to_json(v, d) for v in value), key=repr)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return base64.b64encode(bytes(value)).decode("ascii")
        if isinstance(value, (dt.datetime, dt.date, dt.time)):
            return value.isoformat()
        if isinstance(value, (uuid.UUID, PurePath)):
            return str(value)
        if isinstance(value, enum.Enum):
            return to_json(value.value, d)
        if isinstance(value, BaseException):
            return {"error": type(value).__name__, "message": str(value)}
        dump = getattr(value, "model_dump", None)
        if callable(dump):
            return to_json(dump(), d)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: to_json(getattr(value, f.name, None), d) for f in dataclasses.fields(value)}
        legacy = getattr(value, "dict", None)  # pydantic v1
        if callable(legacy):
            return to_json(legacy(), d)
    except Exception:  # a broken __repr__/model_dump must not break the run
        pass
    return _repr(value)


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def _error(error: BaseException) -> dict[str, Any]:
    return {"error": type(error).__name__, "message": _str(error)}


def _str(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return _repr(error)


def _interrupts(interrupts: Any) -> list[dict[str, Any]]:
    out = []
    for item in interrupts or ():
        out.append({"value": to_json(getattr(item, "value", item)), "id": to_json(getattr(item, "id", None))})
    return out


def _state_update(outputs: Any) -> dict[str, Any] | None:
    """The state update a node returned (a dict, or a Command's ``update``), if it is a non-empty one."""
    if isinstance(outputs, Command):
        outputs = outputs.update
    if isinstance(outputs, Mapping) and outputs:
        update: dict[str, Any] = to_json(outputs)  # to_json turns a Mapping into a dict
        return update
    return None


def _step_id(md: Mapping[str, Any]) -> str | None:
    """A node task's step id: the LangGraph step, and for a ``Send`` task its index in the step
    (``"2.0"``, ``"2.1"``): parallel tasks of one node in one step are one record each."""
    step = md.get("langgraph_step")
    if step is None:
        return None
    path: Sequence[Any] = md.get("langgraph_path") or ()
    if len(path) > 1 and path[0] == _PUSH:
        if isinstance(path[1], int) and not isinstance(path[1], bool):
            return f"{step}.{path[1]}"
        task = str(md.get("langgraph_checkpoint_ns") or "").rpartition(":")[2]  # "<node>:<task id>"
        if task:
            return f"{step}.{task}"
    return str(step)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def _messages(response: Any) -> list[Any]:
    """The first message of each prompt's generations (the others are candidates of the same call)."""
    out = []
    for candidates in getattr(response, "generations", None) or ():
        for generation in candidates or ():
            message = getattr(generation, "message", None)
            if message is not None:
                out.append(message)
                break
    return out


def _usage(response: Any) -> dict[str, int | None] | None:
    """``{"prompt_tokens", "completion_tokens", "total_tokens"}`` as the model reported them, or None."""
    reported = (getattr(response, "llm_output", None) or {}).get("token_usage")
    if isinstance(reported, Mapping):
        found = _tokens(reported.get("prompt_tokens"), reported.get("completion_tokens"), reported.get("total_tokens"))
        if found is not None:
            return found
    counts = [m.usage_metadata for m in _messages(response) if isinstance(getattr(m, "usage_metadata", None), Mapping)]
    if not counts:
        return None

    def add(key: str) -> int | None:
        values = [_count(c.get(key)) for c in counts]
        return None if any(v is None for v in values) else sum(v for v in values if v is not None)

    return _tokens(add("input_tokens"), add("output_tokens"), add("total_tokens"))


def _tokens(prompt: Any, completion: Any, total: Any) -> dict[str, int | None] | None:
    prompt, completion, total = _count(prompt), _count(completion), _count(total)
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    if prompt is None and completion is None and total is None:
        return None
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _cost(response: Any) -> float | None:
    """The ``cost_usd`` the model reported (in ``llm_output``, its ``token_usage``, or the messages'
    ``response_metadata``), or None: a cost is never computed here."""
    llm_output = getattr(response, "llm_output", None) or {}
    token_usage = llm_output.get("token_usage")
    for where in (llm_output, token_usage if isinstance(token_usage, Mapping) else {}):
        cost = _number(where.get("cost_usd"))
        if cost is not None:
            return cost
    costs = [_number((getattr(m, "response_metadata", None) or {}).get("cost_usd")) for m in _messages(response)]
    found = [c for c in costs if c is not None]
    return sum(found) if found else None


def _model_name(*sources: Any) -> str | None:
    for source in sources:
        if isinstance(source, Mapping):
            for key in ("model_name", "model", "ls_model_name"):
                if isinstance(source.get(key), str) and source[key]:
                    return str(source[key])
    return None


def _generations(response: Any) -> list[dict[str, Any]]:
    out = []
    for candidates in getattr(response, "generations", None) or ():
        for generation in candidates or ():
            item: dict[str, Any] = {"text": to_json(getattr(generation, "text", None))}
            calls = getattr(getattr(generation, "message", None), "tool_calls", None)
            if calls:
                item["tool_calls"] = to_json(calls)
            out.append(item)
    return out


@dataclasses.dataclass(slots=True)
class _Run:
    """A LangGraph run the recorder follows: a graph run (root) or one of its nodes."""

    execution_id: str
    thread_id: str | None
    event_id: str  # the event a child names as parent: the root's start/resume, the node's node_started
    root: UUID | None = None  # for a node: its graph run
    node: str | None = None
    step_id: str | None = None
    paused: bool = False  # for a root: an interrupt was recorded in this call


@dataclasses.dataclass(slots=True)
class _Call:
    """A tool call or a model call made inside a node."""

    node: _Run
    name: str | None  # the tool, or the model named in the request
    tool_call_id: str | None = None


class RunRecorder(_Handler):
    """A LangChain callback handler that records a LangGraph run in a :class:`~wormjournal.Journal`.

    See the module docstring for the events. ``tenant_id`` is added to every event.
    With ``strict=True`` (the default: a compliance archive must not silently lose events)
    a journal error propagates and fails the graph run; with ``strict=False`` it is logged
    as a warning naming the execution and thread, and the run goes on without that event.
    The journal refuses ids that are not safe (a tenant id with ``/`` or a control
    character; thread ids and node names are stored under :func:`journal_id`): strict, the
    graph call then fails before its first node. Thread-safe: one recorder may serve
    parallel nodes, parallel tool calls and concurrent graph calls.
    """

    def __init__(self, journal: Journal, *, tenant_id: str | None = None, strict: bool = True) -> None:
        super().__init__()
        self.journal = journal
        self.tenant_id = tenant_id
        self.strict = strict
        self.raise_error = strict  # LangChain swallows a handler's exception unless this is set
        self._runs: dict[UUID, _Run] = {}
        self._inner: dict[UUID, UUID] = {}  # a run inside a node (a runnable, a subgraph, a tool) -> the node's run
        self._calls: dict[UUID, _Call] = {}
        self._lock = threading.Lock()

    # -- writing --------------------------------------------------------------------

    def _event(self, run: _Run, event_type: EventType | str, payload: Any, *, clear: bool = False,
               **fields: Any) -> dict[str, Any]:
        scope = "none" if clear else "thread" if run.thread_id is not None else "execution"
        event = {"event_type": str(event_type), "execution_id": run.execution_id, "payload": payload,
                 "key_scope": scope, **fields}
        if run.thread_id is not None:
            event["thread_id"] = run.thread_id
        if self.tenant_id is not None:
            event["tenant_id"] = self.tenant_id
        return event

    def _write(self, *events: dict[str, Any]) -> None:
        """Append atomically. A journal error is re-raised when strict, else logged as a warning
        that names the execution and thread."""
        try:
            try:
                self.journal.append_batch(events)
            except ValidationError as e:
                if e.field != "payload":
                    raise
                self.journal.append_batch([_shrink(event, self.journal.config.max_event_bytes) for event in events])
        except Exception:
            if self.strict:
                raise
            log.warning("could not record %s of LangGraph run %s (thread %s) in the journal; the run goes on "
                        "without it", ", ".join(str(e["event_type"]) for e in events), events[0]["execution_id"],
                        events[0].get("thread_id"), exc_info=True)

    @contextlib.contextmanager
    def _recording(self, callback: str, run_id: UUID, parent_run_id: UUID | None = None,
                   metadata: Mapping[str, Any] | None = None) -> Iterator[None]:
        """Around a callback: when strict, its failure propagates; else it is logged as a warning that
        names the run and thread, and the run goes on (journal errors are logged by :meth:`_write`)."""
        try:
            yield
        except Exception:
            if self.strict:
                raise
            run = self._followed(run_id) or self._followed(parent_run_id)
            thread = run.thread_id if run is not None else (metadata or {}).get("thread_id")
            log.warning("could not record LangGraph %s of run %s (execution %s, thread %s) in the journal; the run "
                        "goes on without it", callback, run_id, run.execution_id if run is not None else None,
                        thread, exc_info=True)

    def _followed(self, run_id: UUID | None) -> _Run | None:
        """The graph run or node that ``run_id`` is, or runs in, if we follow it."""
        if run_id is None:
            return None
        with self._lock:
            return self._runs.get(run_id) or self._runs.get(self._inner.get(run_id, run_id))

    # -- graph runs -------------------------------------------------------------------

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                       tags: list[str] | None = None, metadata: dict[str, Any] | None = None,
                       **kwargs: Any) -> None:
        with self._recording("on_chain_start", run_id, parent_run_id, metadata):
            self._chain_start(inputs, run_id, parent_run_id, metadata or {}, kwargs.get("name"))

    def _chain_start(self, inputs: Any, run_id: UUID, parent_run_id: UUID | None, md: Mapping[str, Any],
                     name: Any) -> None:
        node = md.get("langgraph_node")
        if parent_run_id is None and node is None:
            if isinstance(name, str) and name.endswith(UPDATE_STATE_RUN):
                return  # graph.update_state with the recorder in its config: a change of state, not a run
            self._start_root(run_id, inputs, md)
            return
        with self._lock:
            root = self._runs.get(parent_run_id) if parent_run_id is not None else None
            if (root is None or root.root is not None or node is None or name != node
                    or str(node).startswith("__")):
                # a runnable inside a node, a subgraph's own node, LangGraph's plumbing, or a run we do not follow
                owner = self._owner(parent_run_id)
                if owner is not None:
                    self._inner[run_id] = owner
                return
        run = _Run(execution_id=root.execution_id, thread_id=root.thread_id, event_id=uuid7(), root=parent_run_id,
                   node=journal_id(str(node)), step_id=_step_id(md))
        with self._lock:
            self._runs[run_id] = run
        self._write(self._event(run, EventType.NODE_STARTED, None, event_id=run.event_id, node=run.node,
                                step_id=run.step_id, parent_event_id=root.event_id))

    def _owner(self, parent_run_id: UUID | None) -> UUID | None:
        """The node run a child of ``parent_run_id`` runs in, if it is in a node we follow (under the lock)."""
        if parent_run_id is None:
            return None
        run = self._runs.get(parent_run_id)
        if run is not None:
            return parent_run_id if run.root is not None else None
        return self._inner.get(parent_run_id)

    def _start_root(self, run_id: UUID, inputs: Any, md: Mapping[str, Any]) -> None:
        thread = md.get("thread_id")
        thread_id = None if thread is None or thread == "" else journal_id(str(thread))
        checkpoint = md.get("checkpoint_id")
        forked = {"forked_from": str(checkpoint)} if checkpoint else {}
        event_id = uuid7()
        continued = None
        if thread_id is not None and (inputs is None or isinstance(inputs, Command)):
            continued = self._open_execution(thread_id, run_id)
        if continued is None:
            run = _Run(execution_id=str(run_id), thread_id=thread_id, event_id=event_id)
            event = self._event(run, EventType.EXECUTION_STARTED, {"inputs": to_json(inputs), **forked},
                                event_id=event_id)
        else:
            execution_id, unfinished = continued
            run = _Run(execution_id=execution_id, thread_id=thread_id, event_id=event_id)
            payload = {"resumed_by": str(run_id), "unfinished_nodes": unfinished, "inputs": to_json(inputs), **forked}
            event = self._event(run, EventType.EXECUTION_RESUMED, payload, event_id=event_id)
        self._write(event)  # before registering: in strict mode a refused start records nothing more
        with self._lock:
            self._runs[run_id] = run

    def _open_execution(self, thread_id: str, run_id: UUID | None = None) -> tuple[str, list[str]] | None:
        """The thread's latest execution if it has not finished, with its unfinished nodes (one lookup).
        A failed lookup raises when strict; else it is logged and the run starts a new execution."""
        try:
            events = self.journal.reader().thread_events(thread_id)
        except Exception:
            if self.strict:
                raise
            log.warning("could not look up thread %s in the journal to resume its execution; LangGraph run %s is "
                        "recorded as a new execution", thread_id, run_id, exc_info=True)
            return None
        last: dict[str, tuple[int, str]] = {}  # execution -> (seq, type) of its last lifecycle event
        for e in events:
            if e.event_type in _LIFECYCLE and (self.tenant_id is None or e.tenant_id == self.tenant_id):
                last[e.execution_id] = (e.seq, e.event_type)
        if not last:
            return None
        execution_id = max(last, key=lambda x: last[x][0])
        if last[execution_id][1] in _FINISHED:
            return None
        mine = [e for e in events if e.execution_id == execution_id]
        ended = {e.parent_event_id for e in mine if e.event_type in _NODE_ENDS}
        unfinished = [e.node for e in mine
                      if e.event_type == EventType.NODE_STARTED.value and e.event_id not in ended and e.node]
        return execution_id, unfinished

    def on_chain_end(self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        with self._recording("on_chain_end", run_id, parent_run_id):
            self._chain_end(outputs, run_id)

    def _chain_end(self, outputs: Any, run_id: UUID) -> None:
        with self._lock:
            self._inner.pop(run_id, None)
            run = self._runs.pop(run_id, None)
            if run is None:
                return
            paused = run.paused
        if run.root is not None:  # a node
            update = _state_update(outputs)
            events = [self._event(run, EventType.NODE_COMPLETED, {"update": to_json(outputs)}, **self._node(run))]
            if update is not None:
                events.append(self._event(run, EventType.STATE_UPDATED, {"new_state": update}, **self._node(run)))
            self._write(*events)
            return
        if isinstance(outputs, Mapping) and "__interrupt__" in outputs:
            paused = True
        kind = EventType.EXECUTION_PAUSED if paused else EventType.EXECUTION_COMPLETED
        self._write(self._event(run, kind, {"outputs": to_json(outputs)}))

    def on_chain_error(self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None,
                       **kwargs: Any) -> None:
        with self._recording("on_chain_error", run_id, parent_run_id):
            self._chain_error(error, run_id)

    def _chain_error(self, error: BaseException, run_id: UUID) -> None:
        with self._lock:
            self._inner.pop(run_id, None)
            run = self._runs.pop(run_id, None)
            if run is None:
                return
            root = self._runs.get(run.root) if run.root is not None else None
            if isinstance(error, GraphInterrupt) and root is not None:
                root.paused = True
        if run.root is not None:
            self._write(self._node_error(run, error))
        elif isinstance(error, GraphBubbleUp):  # an interrupt or a drain: the thread can be resumed
            self._write(self._event(run, EventType.EXECUTION_PAUSED, {"outputs": None, "reason": _error(error)}))
        elif not isinstance(error, Exception):
            self._write(self._event(run, EventType.EXECUTION_CANCELLED, {**_error(error), "aborted": True}))
        else:
            self._write(self._event(run, EventType.EXECUTION_FAILED, _error(error)))

    def _node_error(self, run: _Run, error: BaseException) -> dict[str, Any]:
        if isinstance(error, GraphInterrupt):
            interrupts = error.args[0] if error.args else ()
            return self._event(run, EventType.HUMAN_INTERRUPTED, {"interrupts": _interrupts(interrupts)},
                               **self._node(run))
        if isinstance(error, GraphBubbleUp):  # e.g. ParentCommand: control flow, the node did its work
            command = error.args[0] if error.args else None
            return self._event(run, EventType.NODE_COMPLETED, {"update": to_json(command)}, **self._node(run))
        if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: torn down, not finished
            return self._event(run, EventType.EXCEPTION_RAISED, {**_error(error), "aborted": True}, **self._node(run))
        return self._event(run, EventType.NODE_FAILED, _error(error), **self._node(run))

    @staticmethod
    def _node(run: _Run) -> dict[str, Any]:
        return {"node": run.node, "step_id": run.step_id, "parent_event_id": run.event_id}

    # -- calls inside a node: tools and models ------------------------------------------

    def _start_call(self, run_id: UUID, parent_run_id: UUID | None, name: str | None,
                    tool_call_id: str | None = None) -> _Call | None:
        """Follow a tool or model call made inside a node we follow; None for any other."""
        with self._lock:
            owner = self._owner(parent_run_id)
            node = self._runs.get(owner) if owner is not None else None
            if owner is None or node is None:
                return None
            call = _Call(node=node, name=name, tool_call_id=tool_call_id)
            self._calls[run_id] = call
            self._inner[run_id] = owner  # runs inside a tool (an agent as a tool) belong to the node too
        return call

    def _end_call(self, run_id: UUID) -> _Call | None:
        with self._lock:
            self._inner.pop(run_id, None)
            return self._calls.pop(run_id, None)

    def _call_event(self, call: _Call, run_id: UUID, event_type: EventType | str, payload: Any,
                    clear: bool = False) -> dict[str, Any]:
        return self._event(call.node, event_type, payload, clear=clear, correlation_id=str(run_id),
                           **self._node(call.node))

    def on_tool_start(self, serialized: dict[str, Any] | None, input_str: str, *, run_id: UUID,
                      parent_run_id: UUID | None = None, tags: list[str] | None = None,
                      metadata: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None,
                      **kwargs: Any) -> None:
        with self._recording("on_tool_start", run_id, parent_run_id, metadata):
            name = (serialized or {}).get("name") or kwargs.get("name")
            call_id = kwargs.get("tool_call_id")
            call = self._start_call(run_id, parent_run_id, None if name is None else str(name),
                                    None if call_id is None else str(call_id))
            if call is not None:
                payload = {"tool": call.name, "input": to_json(input_str if inputs is None else inputs),
                           "tool_call_id": call.tool_call_id}
                self._write(self._call_event(call, run_id, EventType.TOOL_CALLED, payload))

    def on_tool_end(self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        with self._recording("on_tool_end", run_id, parent_run_id):
            call = self._end_call(run_id)
            if call is None:
                return
            call_id = call.tool_call_id or getattr(output, "tool_call_id", None)
            failed = getattr(output, "status", None) == "error"  # a ToolMessage the tool (or its handler) made
            result = {"tool": call.name, "tool_call_id": to_json(call_id), "ok": not failed,
                      "error": TOOL_ERROR_STATUS if failed else None}
            self._write(self._call_event(call, run_id, EventType.TOOL_RETURNED, result, clear=True),
                        self._call_event(call, run_id, TOOL_OUTPUT_EVENT, {"output": to_json(output)}))

    def on_tool_error(self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None,
                      **kwargs: Any) -> None:
        with self._recording("on_tool_error", run_id, parent_run_id):
            call = self._end_call(run_id)
            if call is None:
                return
            call_id = call.tool_call_id or kwargs.get("tool_call_id")
            result: dict[str, Any] = {"tool": call.name, "tool_call_id": to_json(call_id)}
            if isinstance(error, GraphInterrupt):  # the tool asked a human: a pause, run again on resume
                result.update(ok=None, error=None, paused=True)
                output: dict[str, Any] = {"interrupts": _interrupts(error.args[0] if error.args else ())}
            elif isinstance(error, GraphBubbleUp):  # a Command to the parent graph (a handoff): control flow
                result.update(ok=True, error=None)
                output = {"output": to_json(error.args[0] if error.args else None)}
            else:
                result.update(ok=False, error=type(error).__name__)
                output = _error(error)
            self._write(self._call_event(call, run_id, EventType.TOOL_RETURNED, result, clear=True),
                        self._call_event(call, run_id, TOOL_OUTPUT_EVENT, output))

    def on_chat_model_start(self, serialized: dict[str, Any] | None, messages: list[list[Any]], *, run_id: UUID,
                            parent_run_id: UUID | None = None, tags: list[str] | None = None,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        with self._recording("on_chat_model_start", run_id, parent_run_id, metadata):
            self._llm_start(run_id, parent_run_id, serialized, metadata, kwargs, {"messages": to_json(messages)})

    def on_llm_start(self, serialized: dict[str, Any] | None, prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, tags: list[str] | None = None,
                     metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        with self._recording("on_llm_start", run_id, parent_run_id, metadata):
            self._llm_start(run_id, parent_run_id, serialized, metadata, kwargs, {"prompts": to_json(prompts)})

    def _llm_start(self, run_id: UUID, parent_run_id: UUID | None, serialized: Mapping[str, Any] | None,
                   metadata: Mapping[str, Any] | None, kwargs: Mapping[str, Any], asked: dict[str, Any]) -> None:
        params = kwargs.get("invocation_params")
        model = _model_name(params, (serialized or {}).get("kwargs"), metadata)
        call = self._start_call(run_id, parent_run_id, model)
        if call is not None:
            payload = {"model": model, **asked, "params": to_json(params)}
            self._write(self._call_event(call, run_id, EventType.LLM_REQUESTED, payload))

    def on_llm_end(self, response: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        with self._recording("on_llm_end", run_id, parent_run_id):
            call = self._end_call(run_id)
            if call is None:
                return
            messages = _messages(response)
            model = (_model_name(getattr(response, "llm_output", None),
                                 *(getattr(m, "response_metadata", None) for m in messages)) or call.name)
            metered = {"model": model, "usage": _usage(response), "cost_usd": _cost(response)}
            self._write(self._call_event(call, run_id, EventType.LLM_COMPLETED, metered, clear=True),
                        self._call_event(call, run_id, LLM_OUTPUT_EVENT, {"generations": _generations(response)}))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None,
                     **kwargs: Any) -> None:
        with self._recording("on_llm_error", run_id, parent_run_id):
            call = self._end_call(run_id)
            if call is not None:
                self._write(self._call_event(call, run_id, LLM_FAILED_EVENT, {"model": call.name, **_error(error)}))

    # -- LangGraph lifecycle callbacks (GraphCallbackHandler) ----------------------------

    def on_interrupt(self, event: Any) -> None:
        """A pause: recorded here only when no node reported it (a static interrupt_before/after)."""
        with self._recording("on_interrupt", event.run_id):
            with self._lock:
                run = self._runs.get(event.run_id) if event.run_id is not None else None
                if run is None or run.root is not None or run.paused:
                    return
                run.paused = True
            payload = {"interrupts": _interrupts(event.interrupts), "status": event.status}
            self._write(self._event(run, EventType.HUMAN_INTERRUPTED, payload, parent_event_id=run.event_id))

    def on_resume(self, event: Any) -> None:
        """Nothing to record: the root start already decided whether the run continues an execution."""

    # -- the human in the loop ----------------------------------------------------------------

    def _paused_run(self, config: Mapping[str, Any]) -> _Run:
        thread = (config.get("configurable") or {}).get("thread_id")
        opened = self._open_execution(journal_id(str(thread))) if thread is not None else None
        if opened is None:
            raise ValidationError("config", f"thread {thread!r} has no paused execution to record a human's action in")
        return _Run(execution_id=opened[0], thread_id=journal_id(str(thread)), event_id=uuid7())

    def record_human_change(self, graph: Any, config: Mapping[str, Any], values: Mapping[str, Any], *, by: str,
                            reason: str | None = None, as_node: str | None = None) -> Any:
        """A human changes a paused run's state: ``graph.update_state(config, values, as_node)``, then
        ``human_modified`` (payload ``{"new_state": values, "by", "reason", "checkpoint_id"}``, which
        :meth:`Reader.state_at` folds) in the paused execution. Returns the new checkpoint's config."""
        run = self._paused_run(config)
        new_config = graph.update_state(dict(config), dict(values), as_node=as_node)
        checkpoint_id = (new_config.get("configurable") or {}).get("checkpoint_id")
        self._write(self._event(run, EventType.HUMAN_MODIFIED, {"new_state": to_json(values), "by": by,
                                                                  "reason": reason, "checkpoint_id": checkpoint_id},
                                event_id=run.event_id))
        return new_config

    def record_human_decision(self, config: Mapping[str, Any], *, approved: bool, by: str,
                              comment: str | None = None) -> None:
        """A human approves (``human_approved``) or rejects (``human_rejected``) a paused run; payload
        ``{"by", "comment"}``. Resume the graph after it (``Command(resume=...)``)."""
        run = self._paused_run(config)
        kind = EventType.HUMAN_APPROVED if approved else EventType.HUMAN_REJECTED
        self._write(self._event(run, kind, {"by": by, "comment": comment}, event_id=run.event_id))


def _shrink(event: dict[str, Any], max_event_bytes: int) -> dict[str, Any]:
    """The event with its payload replaced by size and hash when that payload is too large to append."""
    raw = canonical_json(event.get("payload"))
    if len(raw) <= max_event_bytes // 2:
        return event
    summary = {"omitted": "payload over the journal's event size limit", "bytes": len(raw),
               "sha256": hashlib.sha256(raw).hexdigest()}
    return {**event, "payload": summary}
