"""What reads return: typed, verified events and execution summaries, JSON round-trippable."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from ..events import StoredEvent, datetime_to_micros, format_ts, micros_to_datetime, parse_ts
from ..payload import DataKeys, Fetch, is_marker, read_payload

# Event types that end an execution, and the status each one means.
TERMINAL_STATUS = {
    "execution_completed": "completed",
    "execution_failed": "failed",
    "execution_cancelled": "cancelled",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One event as read back, after verification.

    ``payload`` is the JSON value; ``sealed`` is False for an event still in the
    write-ahead log (its chain is checked, but no signature covers it yet), and
    then ``segment`` is None. ``hash`` and ``prev_hash`` are lowercase hex.
    """

    stream: str
    segment: int | None
    sealed: bool
    seq: int
    event_id: str
    ts: dt.datetime
    event_type: str
    tenant_id: str | None
    execution_id: str
    thread_id: str | None
    node: str | None
    step_id: str | None
    parent_event_id: str | None
    correlation_id: str | None
    subject_id: str | None
    exec_prev_seq: int | None
    payload_codec: str
    payload_key_id: str | None
    payload: Any
    prev_hash: str
    hash: str

    @property
    def shredded(self) -> bool:
        """True when the payload's data key was destroyed: ``payload`` is the shredded marker."""
        return is_marker(self.payload, "shredded")

    @classmethod
    def from_stored(cls, e: StoredEvent, *, stream: str, segment: int | None, journal_id: str = "",
                    data_key: DataKeys | None = None, fetch: Fetch | None = None) -> Event:
        """Raises IntegrityError when the stored payload does not decode (or decrypt), or is stored apart in an
        object that is not the bytes the event names.

        An encrypted payload is decrypted with ``data_key`` (the key store's); without
        it, or once its key was shredded, ``payload`` is the marker of FORMAT.md 3.1. A payload
        stored apart (3.5) is read with ``fetch``; without it, ``payload`` is a marker.
        """
        return cls(
            stream=stream, segment=segment, sealed=segment is not None, seq=e.seq, event_id=e.event_id,
            ts=micros_to_datetime(e.ts), event_type=e.event_type, tenant_id=e.tenant_id, execution_id=e.execution_id,
            thread_id=e.thread_id, node=e.node, step_id=e.step_id, parent_event_id=e.parent_event_id,
            correlation_id=e.correlation_id, subject_id=e.subject_id, exec_prev_seq=e.exec_prev_seq,
            payload_codec=e.payload_codec, payload_key_id=e.payload_key_id,
            payload=read_payload(e.payload_codec, e.payload, e.payload_key_id, journal_id=journal_id, stream=stream,
                                 seq=e.seq, data_key=data_key, fetch=fetch),
            prev_hash=e.prev_hash.hex(), hash=e.hash.hex(),
        )

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["ts"] = format_ts(datetime_to_micros(self.ts))
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        kwargs = dict(data)
        kwargs["ts"] = micros_to_datetime(parse_ts(kwargs["ts"]))
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> Event:
        return cls.from_dict(json.loads(text))


@dataclasses.dataclass(frozen=True, slots=True)
class ExecutionSummary:
    """One execution (a run, an agent request) as the index knows it.

    ``status`` is ``completed``, ``failed`` or ``cancelled`` after a terminal event,
    else ``open``. ``events`` counts its events, sealed and not.
    """

    execution_id: str
    stream: str
    tenant_id: str | None
    thread_id: str | None
    first_seq: int
    last_seq: int
    events: int
    started: dt.datetime
    last_ts: dt.datetime
    last_event_type: str

    @property
    def status(self) -> str:
        return TERMINAL_STATUS.get(self.last_event_type, "open")

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["started"] = format_ts(datetime_to_micros(self.started))
        out["last_ts"] = format_ts(datetime_to_micros(self.last_ts))
        out["status"] = self.status
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutionSummary:
        kwargs = {k: v for k, v in data.items() if k != "status"}
        kwargs["started"] = micros_to_datetime(parse_ts(kwargs["started"]))
        kwargs["last_ts"] = micros_to_datetime(parse_ts(kwargs["last_ts"]))
        return cls(**kwargs)


@dataclasses.dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a runtime picks an execution up after a crash.

    ``status``: ``completed``, ``failed``, ``cancelled`` or ``open`` (no terminal event:
    resume it). ``last_completed_node`` is the node of the last ``node_completed`` event,
    ``last_completed_step`` the step id of the last ``step_completed`` or ``node_completed`` one; ``state`` is
    :meth:`Reader.state_at` at ``last_seq``; ``pending`` lists nodes started and not completed (interrupted work).
    """

    execution_id: str
    status: str
    last_seq: int
    last_event_type: str
    last_completed_node: str | None
    last_completed_step: str | None
    pending: list[str]
    state: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
