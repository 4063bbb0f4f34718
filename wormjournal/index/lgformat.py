"""The LangGraph savers' events (FORMAT.md 3.4), both ways: event types, ids, and payloads.

The savers of ``wormjournal.integrations.langgraph`` write them and the core reads them (an auditor's
``state_at`` reads without LangGraph, and the core never imports the integrations), so the format is
defined once, here.

A checkpoint or pending-writes payload is binary (the journal's ``bytes`` payload, FORMAT.md 3)::

    u32be(n) || head (n bytes: canonical JSON, "format": 2) || body

where each of LangGraph's serialized values (a type name and bytes, "typed") is ``[type, offset, length]`` in the
head, its bytes at ``offset`` in the body: no base64, so a state costs its own size, and a large one is stored
apart by the journal (3.5) like any large payload. Stores written before hold JSON payloads with each typed value
as ``[type, base64]``; :func:`read_saver_payload` reads both into one form.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ValidationError
from ..events import canonical_json, check_id
from ..payload import MARKER_KEY

CHECKPOINT_EVENT = "checkpoint_saved"
WRITES_EVENT = "custom:langgraph.pending_writes"
TOMBSTONE_EVENT = "custom:langgraph.checkpoints_deleted"
SAVER_EVENTS = (CHECKPOINT_EVENT, WRITES_EVENT, TOMBSTONE_EVENT)
TOMBSTONE_EXECUTION = "wormjournal-langgraph-deletions"
EMPTY = "empty"  # LangGraph's marker of a channel with no value at a version
# A LangGraph id the journal does not take as an id (FORMAT.md 2.6), or one that begins with this, is stored as this
# prefix and a hash of it: LangGraph takes any string as a thread id.
HASHED_ID = "lg:"
FORMAT = 2

Typed = tuple[str, bytes]


@functools.lru_cache(maxsize=4096)  # a graph's ids come back at every step
def journal_id(value: str) -> str:
    """The journal's id for a LangGraph id (a thread, a node): the id itself when the journal takes it as an id and
    it does not begin with ``lg:``; else ``lg:`` and the first 32 hex digits of SHA-256(UTF-8(id)) (FORMAT.md 3.4).
    One to one but for SHA-256 collisions; the original is kept in the payloads that need it (``thread_id``)."""
    if not value.startswith(HASHED_ID):
        try:
            return check_id("thread_id", value)
        except ValidationError:
            pass
    return HASHED_ID + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class _Body:
    """The body of a binary payload being written: typed values appended, each named by its place."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def ref(self, typed: Typed) -> list[Any]:
        kind, data = typed
        self.parts.append(data)
        self.size += len(data)
        return [kind, self.size - len(data), len(data)]


def _pack(head: dict[str, Any], body: _Body) -> bytes:
    text = canonical_json(dict(head, format=FORMAT))
    return b"".join([len(text).to_bytes(4, "big"), text, *body.parts])


def checkpoint_payload(ns: str, cid: str, parent: str | None, run_id: str | None, checkpoint: Typed,
                       metadata: Typed, blobs: Mapping[str, tuple[Any, Typed | None]], step: Any, source: Any,
                       thread_id: str) -> bytes:
    """A ``checkpoint_saved`` payload: the checkpoint (without its channel values), its metadata, and a blob per new
    channel version (None: the channel has no value at that version)."""
    body = _Body()
    head: dict[str, Any] = {
        "kind": "checkpoint", "checkpoint_ns": ns, "checkpoint_id": cid, "parent_checkpoint_id": parent,
        "run_id": run_id, "step": step, "source": source,
        "checkpoint": body.ref(checkpoint), "metadata": body.ref(metadata),
        "blobs": {ch: [version, *(body.ref(v) if v is not None else [EMPTY, 0, 0])]
                  for ch, (version, v) in blobs.items()},
    }
    if journal_id(thread_id) != thread_id:
        head["thread_id"] = thread_id  # the event's thread_id is its hash (journal_id)
    return _pack(head, body)


def writes_payload(ns: str, cid: str, task_id: str, task_path: str, writes: Iterable[tuple[int, str, Typed]]) -> bytes:
    """A ``custom:langgraph.pending_writes`` payload: one task's writes, ``(index, channel, value)`` each."""
    body = _Body()
    head = {"kind": "writes", "checkpoint_ns": ns, "checkpoint_id": cid, "task_id": task_id, "task_path": task_path,
            "writes": [[idx, channel, *body.ref(value)] for idx, channel, value in writes]}
    return _pack(head, body)


def _head(payload: bytes) -> dict[str, Any]:
    """The head of a binary payload. Raises ValueError."""
    n = int.from_bytes(payload[:4], "big")
    if len(payload) < 4 or 4 + n > len(payload):
        raise ValueError("a binary savers' payload is shorter than its head")
    head = json.loads(payload[4 : 4 + n])
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise ValueError("a binary savers' payload without a head of format 2")
    return head


def read_saver_payload(payload: Any) -> dict[str, Any] | None:
    """A checkpoint or pending-writes payload (either form) with every typed value as ``(type, bytes)``: in
    ``checkpoint`` and ``metadata``, blobs as ``{channel: (version, typed)}``, writes as ``[(index, channel,
    typed)]``. A tombstone's (JSON) payload is returned as it is; None for a marker (a shredded or unreadable
    payload). Raises ValueError (KeyError, TypeError) when it is not in the savers' format."""
    if isinstance(payload, bytes):
        head = _head(payload)
        body = memoryview(payload)[4 + int.from_bytes(payload[:4], "big") :]

        def typed(kind: Any, offset: Any, length: Any) -> Typed:
            if not (isinstance(kind, str) and isinstance(offset, int) and isinstance(length, int)
                    and 0 <= offset and 0 <= length and offset + length <= len(body)):
                raise ValueError(f"a typed value [{kind!r}, {offset!r}, {length!r}] is not in the payload's body")
            return kind, bytes(body[offset : offset + length])
    elif isinstance(payload, dict):
        if MARKER_KEY in payload:
            return None
        head = payload
        if head.get("kind") not in ("checkpoint", "writes"):
            return head  # a tombstone: JSON, no typed values

        def typed(kind: Any, data: Any) -> Typed:  # type: ignore[misc]  # the JSON form: [type, base64]
            if not (isinstance(kind, str) and isinstance(data, str)):
                raise ValueError("a typed value is not [type, base64]")
            try:
                return kind, base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as e:
                raise ValueError(f"a typed value is not valid base64: {e}") from e
    else:
        return None
    out = dict(head)
    if head["kind"] == "checkpoint":
        out["checkpoint"] = typed(*head["checkpoint"])
        out["metadata"] = typed(*head["metadata"])
        out["blobs"] = {channel: (entry[0], (EMPTY, b"") if entry[1] == EMPTY else typed(*entry[1:]))
                        for channel, entry in head["blobs"].items()}
    elif head["kind"] == "writes":
        out["writes"] = [(int(w[0]), str(w[1]), typed(*w[2:])) for w in head["writes"]]
    return out


def original_thread(stored: str, payload: Any) -> str:
    """The LangGraph thread id of a checkpoint event whose thread_id is ``stored``: the ``thread_id`` of its payload
    (as stored, or as :func:`read_saver_payload` gives it) when the journal stored a hash of it, else ``stored``."""
    if not stored.startswith(HASHED_ID):
        return stored
    head = payload
    if isinstance(payload, bytes):
        try:
            head = _head(payload)
        except ValueError:
            return stored
    if isinstance(head, Mapping) and isinstance(head.get("thread_id"), str) and journal_id(head["thread_id"]) == stored:
        return str(head["thread_id"])
    return stored
