"""State reconstruction from an execution's events, and the point to resume it from.

The state is a fold, as in the reference event stores: each ``state_updated`` (and
``human_modified``) event's ``new_state`` object, or its whole payload when it has
none, is merged key by key (a JSON object merge at the top level: a key's new value
replaces the old one) into the state before it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .model import TERMINAL_STATUS, Event, ResumePoint

STATE_EVENTS = frozenset({"state_updated", "human_modified"})


def state_change(event: Event) -> dict[str, Any] | None:
    """The object an event merges into the state, or None if it changes nothing."""
    if event.event_type not in STATE_EVENTS or not isinstance(event.payload, dict):
        return None
    new = event.payload.get("new_state", event.payload)
    return new if isinstance(new, dict) else None


def fold(events: Iterable[Event]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for event in events:
        change = state_change(event)
        if change is not None:
            state.update(change)
    return state


def resume_point(execution_id: str, events: list[Event]) -> ResumePoint:
    status = "open"
    last_node = last_step = None
    started: list[str] = []
    for e in events:
        if e.event_type in TERMINAL_STATUS:
            status = TERMINAL_STATUS[e.event_type]
        elif e.event_type in ("execution_started", "execution_resumed"):
            status = "open"
        if e.event_type == "node_started" and e.node is not None:
            started.append(e.node)
        elif e.event_type in ("node_completed", "node_failed") and e.node in started:
            started.remove(e.node)
        if e.event_type == "node_completed":
            last_node = e.node
            last_step = e.step_id or last_step
        elif e.event_type == "step_completed":
            last_step = e.step_id
    last = events[-1]
    return ResumePoint(
        execution_id=execution_id,
        status=status,
        last_seq=last.seq,
        last_event_type=last.event_type,
        last_completed_node=last_node,
        last_completed_step=last_step,
        pending=started,
        state=fold(events),
    )
