"""The write path as stages around one encoded record (FORMAT.md 2, 3 and 11)::

    Validate -> Canonicalize -> Compress -> Encrypt -> StoreApart -> Chain -> Frame

Each stage is a small object that takes a batch and is testable alone. The first three need no seq and run
outside the writer's lock, in the appending thread; Encrypt (its associated data binds the seq), StoreApart
(a large payload's object, named by the hash of its encrypted bytes), Chain and Frame run under the lock, where
seqs are handed out. What comes out is one encoded record per event, its seq,
canonical field bytes and hash, framed and authenticated for the WAL: the bytes the seal turns straight into
Arrow columns (:func:`wormjournal.segments.table.records_table`), never re-hashed but in crash recovery. With
the C extension, Validate's common case is one C call per event, and Chain then Frame one per batch
(:meth:`Frame.chained`): the same bytes as the Python stages (tests/test_native.py).

Reading undoes the stages in one place each: :func:`wormjournal.storage.wal.read_wal_table` (Frame and Chain)
and :func:`wormjournal.payload.read_payload` (Encrypt, Compress and Canonicalize).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import native
from .. import payload as payloads
from ..errors import ValidationError
from ..events import (
    EVENT_TAG,
    FIELD_NAMES,
    ID_FIELDS,
    KIND_CODES,
    RESERVED_EVENT_TYPES,
    canonical_json,
    check_size,
    encode_fields,
    pseudonymize,
    stored_values,
    uuid7s,
)
from ..retention.keystore import SCOPES
from ..storage.local import makedirs_durable, write_file_atomic
from ..storage.wal import MAX_FRAME_BYTES, WalMac, encode_frame

# Who may be named as a key scope, and the event field that holds its value.
SCOPE_FIELD = {"subject": "subject_id", "thread": "thread_id", "execution": "execution_id", "tenant": "tenant_id"}


# The stored fields' positions in a record's values (events.FIELDS order) that the stages fill in.
_SEQ, _TYPE, _EXECUTION, _SUBJECT, _EXEC_PREV, _CODEC, _KEY_ID, _PAYLOAD = 0, 3, 5, 11, 12, 13, 14, 15
_ID_AT = {name: FIELD_NAMES.index(name) for name in ID_FIELDS}


class Draft:
    """One event between the stages: its stored fields' values (events.FIELDS order), filled in stage by stage
    (seq, exec_prev_seq, codec, key id and the stored payload last, by Chain and Encrypt)."""

    __slots__ = ("where", "scope", "scope_given", "values", "size", "subject", "payload_json", "base", "key")

    def __init__(self, where: str | None, scope: str | None, scope_given: bool, values: list[Any],
                 size: int) -> None:
        self.where = where
        self.scope = scope  # the key scope asked for (None or "none": plaintext)
        self.scope_given = scope_given  # key_scope was in the event (not the journal's default)
        self.values = values
        self.size = size  # bytes of type and ids, towards the event limit
        self.subject: str | None = values[_SUBJECT]  # the raw subject id (the stored one is its pseudonym)
        self.payload_json = b""  # after Canonicalize (the payload's bytes, for a payload given as bytes)
        self.base = payloads.CODEC_JSON  # the first codec step: json, or bytes
        self.key: tuple[str, bytes] | None = None  # the data key (id, key) that Encrypt uses

    @property
    def execution_id(self) -> str:
        return self.values[_EXECUTION]  # type: ignore[no-any-return]


# One encoded record, what the WAL stores and the seal turns into a segment row: (seq, canonical field bytes
# (FORMAT.md 2.2), event hash (2.3) chained onto the record before). A plain tuple: one per event.
Record = tuple[int, bytes, bytes]


class Validate:
    """Each caller mapping's fields but the payload: its type (a reserved one only for the library's own
    events), ids and time; pops its ``key_scope``. Raises ValidationError naming the event and field."""

    def __init__(self, default_scope: str | None) -> None:
        self.default_scope = default_scope

    def __call__(self, batch: Sequence[Mapping[str, Any]], *, internal: bool = False) -> list[Draft]:
        ids: Iterator[str] | None = None

        def new_id() -> str:  # one read of the random source for the batch's event ids
            nonlocal ids
            if ids is None:
                ids = iter(uuid7s(len(batch)))
            return next(ids)

        drafts = []
        many = len(batch) > 1
        for i, event in enumerate(batch):
            where = f"event {i}" if many else None
            given = "key_scope" in event
            if given:
                event = dict(event)
                scope = event.pop("key_scope")
                if scope not in (None, "none") and scope not in SCOPES:
                    raise ValidationError("key_scope", f"must be one of {', '.join(SCOPES)} or 'none'", where=where)
            else:
                scope = self.default_scope
            data_key = None
            if internal and "data_key" in event:  # the library's own event, encrypted under a given data key
                event = dict(event)
                data_key = event.pop("data_key")
                scope = None
            values, size = stored_values(event, where=where, new_id=new_id)
            if values[_TYPE] in RESERVED_EVENT_TYPES and not internal:
                raise ValidationError("event_type", f"{values[_TYPE]!r} is appended by the library only "
                                      "(shred, the retention commands, a subscription)", where=where)
            drafts.append(Draft(where, scope, given, values, size))
            drafts[-1].key = data_key
        return drafts


class Canonicalize:
    """The payload to canonical JSON (FORMAT.md 3), the event limit checked; the subject id to its keyed
    pseudonym (2.1), the only form in which it is stored."""

    def __init__(self, max_event_bytes: int, pseudonym_key: bytes) -> None:
        self.max_event_bytes = max_event_bytes
        self._pseudonym_key = pseudonym_key
        self._pseudonyms: dict[str, str] = {}  # recent subjects (bounded): one HMAC each

    def pseudonym(self, subject_id: str) -> str:
        p = self._pseudonyms.get(subject_id)
        if p is None:
            if len(self._pseudonyms) >= 65536:
                self._pseudonyms.clear()
            p = self._pseudonyms[subject_id] = pseudonymize(self._pseudonym_key, subject_id)
        return p

    def __call__(self, drafts: list[Draft]) -> list[Draft]:
        limit = self.max_event_bytes
        for d in drafts:
            v = d.values
            if isinstance(v[_PAYLOAD], bytes | bytearray | memoryview):
                d.payload_json, d.base = bytes(v[_PAYLOAD]), payloads.CODEC_BYTES
            else:
                d.payload_json = canonical_json(v[_PAYLOAD], where=d.where, limit=limit)
            check_size(d.size + len(d.payload_json), limit, d.where)
            if d.subject is not None:
                v[_SUBJECT] = self.pseudonym(d.subject)
        return drafts


class Compress:
    """zstd for a large payload where it makes it smaller (FORMAT.md 3; :class:`wormjournal.payload.Compressor`).
    Compressors are not thread-safe: each call takes one from a pool and gives it back (one per thread would make
    one for every thread of a pool that makes threads per task, as LangGraph's does per run)."""

    def __init__(self, level: int, min_bytes: int) -> None:
        self.level = level
        self.min_bytes = min_bytes
        self._pool: list[payloads.Compressor] = []

    def __call__(self, drafts: list[Draft]) -> list[Draft]:
        try:
            comp = self._pool.pop()  # atomic (the GIL), as the append below
        except IndexError:
            comp = payloads.Compressor(self.level, self.min_bytes)
        try:
            for d in drafts:
                d.values[_CODEC], d.values[_PAYLOAD] = comp.encode(d.payload_json, d.base)
        finally:
            self._pool.append(comp)
        return drafts


_AEADS = 1024  # AES-GCM contexts an Encrypt stage keeps


class Encrypt:
    """AES-256-GCM under the data key of the event's scope (FORMAT.md 3.1). :meth:`keys` runs before the lock:
    the key is created durably on first use, before its event can reach the WAL; calling the stage (under the
    lock, once the seqs are known) encrypts, the associated data binding journal, stream, seq, key id and codec."""

    def __init__(self, key_for: Callable[[str, str], tuple[str, bytes]], journal_id: str, stream: str) -> None:
        self._key_for = key_for
        self.journal_id = journal_id
        self.stream = stream
        self._aeads: dict[str, AESGCM] = {}

    def forget(self, key_id: str) -> None:
        """A shredded key: never used again."""
        self._aeads.pop(key_id, None)

    def keys(self, drafts: list[Draft]) -> list[Draft]:
        for d in drafts:
            if d.scope in (None, "none"):
                continue
            field = SCOPE_FIELD[d.scope]
            value = d.subject if field == "subject_id" else d.values[_ID_AT[field]]
            if value is None:
                if d.scope_given:
                    raise ValidationError("key_scope", f"is {d.scope!r} but the event has no {field}", where=d.where)
                continue
            d.key = self._key_for(d.scope, value)
        return drafts

    def __call__(self, drafts: list[Draft]) -> None:
        """Encrypt the payloads that have a data key, with their seqs as Chain set them."""
        for d in drafts:
            if d.key is None:
                continue
            v = d.values
            key_id, key = d.key
            aead = self._aeads.get(key_id)
            if aead is None:
                if len(self._aeads) >= _AEADS:
                    self._aeads.clear()  # one per key used last: a key per run would grow it for ever
                aead = self._aeads[key_id] = AESGCM(key)
            v[_CODEC] += payloads.ENCRYPTED
            v[_KEY_ID] = key_id
            aad = payloads.payload_aad(self.journal_id, self.stream, v[_SEQ], key_id, v[_CODEC])
            v[_PAYLOAD] = payloads.encrypt(aead, v[_PAYLOAD], aad)


class StoreApart:
    """A stored payload (compressed, encrypted) of more than ``inline_bytes`` goes to an object of its own, named by
    its SHA-256 (FORMAT.md 3.5): written and fsync'd into the WAL directory's ``payloads/`` before its frame is
    written, so a crash never leaves a frame whose payload is missing; the seal copies it into the store. The
    event holds the hash and the length (codec step ``+ref``). Returns the bytes staged."""

    def __init__(self, inline_bytes: int, directory: Path) -> None:
        self.inline_bytes = inline_bytes
        self.directory = directory

    def __call__(self, drafts: list[Draft]) -> int:
        staged = 0
        for d in drafts:
            v = d.values
            if len(v[_PAYLOAD]) <= self.inline_bytes:
                continue
            digest, ref = payloads.make_ref(v[_PAYLOAD])
            stage_payload(self.directory, digest, v[_PAYLOAD])
            staged += len(v[_PAYLOAD])
            v[_CODEC] += payloads.STORED_APART
            v[_PAYLOAD] = ref
        return staged


def stage_payload(directory: Path, digest: str, data: bytes) -> None:
    """Write a payload object into the WAL directory's ``payloads/`` (durably; kept as it is when a file of that
    hash is there: the same bytes)."""
    path = directory / digest
    if path.exists():
        return
    if not directory.is_dir():
        makedirs_durable(directory, 0o700)
    try:
        write_file_atomic(path, data, exclusive=True)
    except FileExistsError:
        pass  # staged by another batch meanwhile: the same bytes


class Chain:
    """Seqs, execution back-links (``exec_prev_seq``), then (after Encrypt) the canonical field bytes and the hash
    chain: one record per event (FORMAT.md 2). ``head`` gives the last seq of an execution before the batch."""

    def __init__(self, head: Callable[[str], int | None]) -> None:
        self._head = head

    def number(self, drafts: list[Draft], seq: int) -> dict[str, int]:
        """Give the drafts seqs ``seq``, ``seq + 1``, ... and their back-links; returns the executions' new heads."""
        heads: dict[str, int] = {}
        for d in drafts:
            v = d.values
            execution = v[_EXECUTION]
            prev = heads.get(execution)
            v[_EXEC_PREV] = prev if prev is not None else self._head(execution)
            v[_SEQ] = heads[execution] = seq
            seq += 1
        return heads

    def __call__(self, drafts: list[Draft], prev: bytes) -> list[Record]:
        """The records of the numbered (and encrypted) drafts, chained onto ``prev``."""
        records = []
        tagged = _EVENT_SHA.copy
        for d in drafts:
            enc = encode_fields(d.values)
            h = tagged()
            h.update(prev)
            h.update(enc)
            prev = h.digest()  # events.event_hash, without joining the bytes first
            records.append((d.values[_SEQ], enc, prev))
        return records


_EVENT_SHA = hashlib.sha256(EVENT_TAG)


class Frame:
    """One WAL frame of a batch's records, authenticated by the WAL key (FORMAT.md 11): all or nothing."""

    def __init__(self, mac: WalMac) -> None:
        self._mac = mac

    def __call__(self, records: list[Record]) -> bytes:
        return _checked(encode_frame(records, self._mac))

    def chained(self, chain: Chain, drafts: list[Draft], prev: bytes) -> tuple[bytes, bytes]:
        """``chain`` then this stage: the frame of the drafts' records chained onto ``prev``, and the last
        record's hash. One call of the C extension when it is built (the same bytes: tests/test_native.py)."""
        states = self._mac.native_states
        if states is None:
            records = chain(drafts, prev)
            return self(records), records[-1][2]
        frame, last = native.module.chain_frame([d.values for d in drafts], KIND_CODES, prev, EVENT_TAG, states,
                                                zlib.crc32)
        return _checked(frame), last


def _checked(frame: bytes) -> bytes:
    if len(frame) > MAX_FRAME_BYTES:  # recovery would take a longer frame for a torn tail
        raise ValidationError("events", f"the batch is {len(frame)} bytes, over the limit of "
                              f"{MAX_FRAME_BYTES} for one atomic write: append it in parts")
    return frame
