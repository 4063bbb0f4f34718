"""Retention actions (set, hold, release, extend) as records that a crash cannot leave half done.

An action changes the store in one or more steps (a policy object; a legal hold on each of N
objects; a longer retention on each object), then is recorded as an event of the audit trail
(FORMAT.md, section 3.3). Before its first step it is written down, whole, as a pending record
``<wal dir>/stream=<trail>/pending/<op>.json`` (0600, written to a temporary file, fsync'd,
renamed), holding everything needed to finish it: what to apply, and the event to record. Its
``op`` (a UUIDv7) is also in the event's payload, so the event can be found again.

The trail stream's writer finishes what is pending when it opens (``Journal.open``, and so the next
retention command): unless the event with that ``op`` is in the stream already, it applies the
steps again (each is idempotent: a put of the same bytes, a hold that is on, a retention that is
long enough) and appends the event; it seals, then removes the record. The event is thereby
written exactly once, whichever step a crash came after.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..events import uuid7
from ..storage.local import fsync_dir, write_file_atomic
from .audit import DEFAULT_WORKERS, Progress
from .holds import Extension, Selector, apply_extension, names_record, set_holds
from .policy import RETENTION_EVENT_TYPES, PolicySet, RetentionPolicy, store_policy

__all__ = ["PENDING_DIR", "RetentionAction", "apply_action", "extend_action", "holds_action", "pending_actions",
           "policy_action", "remove_pending", "write_pending"]

log = logging.getLogger(__name__)

ACTION_FORMAT = "wormjournal/retention-action/v1"
PENDING_TAG = b"wormjournal:retention-action:v1\x00"  # the MAC's domain (FORMAT.md 3.3)
PENDING_DIR = "pending"  # in the trail stream's WAL directory
APPLY_KINDS = ("policy", "holds", "extend")


@dataclasses.dataclass(frozen=True)
class RetentionAction:
    """One retention action: the event it is recorded as, and the store steps it applies.

    ``details`` are the event payload's keys of its type (FORMAT.md 3.3); ``apply`` says what to
    change: ``{"kind": "policy", "number", "mode", "days", "note"}`` (the signed policy object and the
    lock it is written with), ``{"kind": "holds", "on", "names"}`` or ``{"kind": "extend", "until",
    "mode"}``.
    """

    op: str
    event_type: str
    details: dict[str, Any]
    by: str
    reason: str
    apply: dict[str, Any]

    def payload(self, at: dt.datetime | None = None) -> dict[str, Any]:
        """The event's payload: ``details`` and who, why, when (now by default) and the op id."""
        when = (at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return dict(self.details, op=self.op, by=self.by, reason=self.reason, at=when)

    def to_json(self) -> dict[str, Any]:
        return dict(dataclasses.asdict(self), format=ACTION_FORMAT)

    @classmethod
    def from_json(cls, data: Any) -> RetentionAction:
        """Raises ValueError unless ``data`` is a record of this format."""
        if not isinstance(data, dict) or data.get("format") != ACTION_FORMAT:
            raise ValueError(f"not a {ACTION_FORMAT} record")
        texts, maps = ("op", "event_type", "by", "reason"), ("details", "apply")
        if not all(isinstance(data.get(k), str) for k in texts) or not all(isinstance(data.get(k), dict) for k in maps):
            raise ValueError("a field is missing or of the wrong type")
        if data["event_type"] not in RETENTION_EVENT_TYPES or data["apply"].get("kind") not in APPLY_KINDS:
            raise ValueError("not a retention action")
        _check_apply(data["apply"])
        return cls(data["op"], data["event_type"], data["details"], data["by"], data["reason"], data["apply"])


def _check_apply(spec: dict[str, Any]) -> None:
    """Raises ValueError unless ``spec`` has the fields of its kind, of the right types."""
    def ok(name: str, kind: type | tuple[type, ...]) -> bool:
        value = spec.get(name)
        return isinstance(value, kind) and not (kind is int and isinstance(value, bool))

    kind = spec["kind"]
    if kind == "policy":
        good = ok("number", int) and ok("mode", str) and ok("days", int) and ok("note", str)
    elif kind == "holds":
        good = ok("on", bool) and ok("names", list) and all(isinstance(n, str) for n in spec["names"])
    else:
        good = ok("until", (str, type(None))) and ok("mode", (str, type(None)))
        if good and spec["until"] is not None:
            dt.datetime.fromisoformat(spec["until"].replace("Z", "+00:00"))  # ValueError when it is not a time
    if not good:
        raise ValueError(f"its {kind!r} step lacks a field or has one of the wrong type")


def policy_action(policy: PolicySet, note: bytes, *, tenant: str | None, new: RetentionPolicy, by: str,
                  reason: str) -> RetentionAction:
    """``retention set``: store the signed policy object ``note`` (policy ``policy``), recorded as
    ``retention_policy_set``."""
    strongest = policy.strongest()
    details = {"number": policy.number, "tenant": tenant, **new.to_json()}
    return RetentionAction(uuid7(), "retention_policy_set", details, by, reason,
                           {"kind": "policy", "number": policy.number, "mode": strongest.mode, "days": strongest.days,
                            "note": note.decode()})


def holds_action(names: Sequence[str], on: bool, selector: Selector, *, by: str, reason: str) -> RetentionAction:
    """``retention hold`` / ``release``: the legal hold of each of ``names`` on or off."""
    return RetentionAction(uuid7(), "legal_hold_placed" if on else "legal_hold_released",
                           {"selector": selector.to_json(), "objects": names_record(names)}, by, reason,
                           {"kind": "holds", "on": on, "names": sorted(names)})


def extend_action(until: dt.datetime | None, mode: str | None, plan: Extension, *, by: str,
                  reason: str) -> RetentionAction:
    """``retention extend``: every object retained until ``until`` (None: as the policy requires), ``mode``
    raised; ``plan`` counts what it lengthens and leaves (``plan_extension``, before anything changed)."""
    text = until.strftime("%Y-%m-%dT%H:%M:%SZ") if until else None
    return RetentionAction(uuid7(), "retention_extended",
                           {"until": text, "to_policy": until is None, "mode": mode, "extended": plan.extended,
                            "unchanged": plan.unchanged}, by, reason, {"kind": "extend", "until": text, "mode": mode})


def apply_action(store: Any, action: RetentionAction, *, workers: int = DEFAULT_WORKERS,
                 progress: Progress | None = None) -> None:
    """Apply the action's store steps; idempotent, so running it again finishes an interrupted one.
    Raises StorageError; ConflictError when another policy object was stored under its number."""
    spec = action.apply
    if spec["kind"] == "policy":
        store_policy(store, spec["number"], RetentionPolicy(spec["mode"], spec["days"]), spec["note"].encode())
    elif spec["kind"] == "holds":
        set_holds(store, spec["names"], spec["on"], workers=workers, progress=progress)
    else:
        until = dt.datetime.fromisoformat(spec["until"].replace("Z", "+00:00")) if spec["until"] else None
        apply_extension(store, until=until, mode=spec["mode"], workers=workers,
                        objects=action.details.get("extended", 0) + action.details.get("unchanged", 0),
                        progress=progress)


# -- pending records ------------------------------------------------------------------------------------------


def _path(directory: Path, op: str) -> Path:
    return directory / f"{op}.json"


def _mac(key: bytes, context: str, body: bytes) -> bytes:
    """HMAC-SHA256 of a record (FORMAT.md 3.3) under the writer's WAL key, bound to its journal and stream."""
    return hmac.new(key, PENDING_TAG + context.encode() + b"\x00" + body, hashlib.sha256).hexdigest().encode()


def write_pending(directory: Path, action: RetentionAction, key: bytes, context: str) -> None:
    """Write the action's pending record atomically (owner only) before any of its steps: the JSON line, then
    its MAC (``key``: the WAL key; ``context``: ``<journal id>/<stream>``) on a second line."""
    if not directory.is_dir():
        directory.mkdir(mode=0o700, exist_ok=True)
        fsync_dir(directory.parent)
    body = json.dumps(action.to_json(), sort_keys=True).encode()
    write_file_atomic(_path(directory, action.op), body + b"\n" + _mac(key, context, body) + b"\n")


def pending_actions(directory: Path, key: bytes, context: str) -> list[RetentionAction]:
    """The actions pending in ``directory``, oldest first (op ids are UUIDv7: by time), each authenticated by
    its MAC: whoever can write the WAL directory but not read the key directory cannot have an action applied
    and signed into the audit trail. Removes the temporary files of records whose writing a crash cut short
    (their action never began). Raises ConfigError for a record that is not one, or not this writer's: no
    crash leaves that behind."""
    if not directory.is_dir():
        return []
    for tmp in directory.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            body, tag, *rest = path.read_bytes().split(b"\n")
            if rest != [b""] or not hmac.compare_digest(tag, _mac(key, context, body)):
                raise ValueError("it is not authenticated by this journal's WAL key (not written by its writer)")
            action = RetentionAction.from_json(json.loads(body))
        except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as e:
            raise ConfigError(f"the pending retention action {path} is damaged: {e}",
                              hint="look at it, finish the action by hand if it was applied, then remove the file"
                              ) from e
        if action.op != path.stem:
            raise ConfigError(f"the pending retention action {path} names another op id, {action.op}")
        out.append(action)
    return out


def remove_pending(directory: Path, op: str) -> None:
    """The action is recorded and sealed: forget its pending record."""
    _path(directory, op).unlink(missing_ok=True)
    fsync_dir(directory)
