"""Inclusion proofs: one event, proved to be in the journal without the store (FORMAT.md, section 10a).

A proof carries the event as stored, its audit path to its segment's Merkle root, the
segment's signed manifest, a signed checkpoint and the manifest's audit path to the
checkpoint root. ``check_proof`` needs only the proof's bytes and trusted public keys.
The file has exactly one encoding, so a proof whose bytes changed in any way is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ..errors import IntegrityError, NoteError, NotFoundError, ProofError, ValidationError
from ..events import FIELDS, Kind, canonical_time, encode_fields, event_hash, format_ts
from ..segments import merkle
from ..segments.keyhistory import entry_name
from ..segments.manifest import Checkpoint, Manifest, checkpoint_origin
from ..segments.notes import VerifyKey, open_note, split_note
from ..segments.table import read_segment
from ..storage import layout
from ..trust import KeyRing, check_history
from ..trust.load import key_name

PROOF_FORMAT = "wormjournal/proof/v1"
_KEYS = ("checkpoint", "checkpoint_path", "event", "event_path", "format", "key_history", "leaf_index", "manifest",
         "prev_hash")


@dataclasses.dataclass(frozen=True)
class Proof:
    event: dict[str, Any]  # the stored fields (FORMAT.md 2.1), bytes as bytes
    prev_hash: bytes
    leaf_index: int  # the event's row in its segment, in storage order
    event_path: tuple[bytes, ...]
    manifest: bytes  # the signed note, as stored
    checkpoint: bytes  # the signed note, as stored
    checkpoint_path: tuple[bytes, ...]
    # The journal's key history (FORMAT.md 6.1), each entry's signed note as stored: with it, a proof made
    # after a key rotation checks under the journal's first public key alone.
    key_history: tuple[bytes, ...] = ()

    def to_json(self) -> bytes:
        event = {name: (self.event[name].hex() if kind == Kind.BYTES and self.event[name] is not None
                        else self.event[name])
                 for name, kind, _ in FIELDS}
        doc = {
            "checkpoint": self.checkpoint.decode("utf-8"),
            "checkpoint_path": [h.hex() for h in self.checkpoint_path],
            "event": event,
            "event_path": [h.hex() for h in self.event_path],
            "format": PROOF_FORMAT,
            "key_history": [n.decode("utf-8") for n in self.key_history],
            "leaf_index": self.leaf_index,
            "manifest": self.manifest.decode("utf-8"),
            "prev_hash": self.prev_hash.hex(),
        }
        return (json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode("ascii")

    @classmethod
    def from_json(cls, data: bytes) -> Proof:
        """Parse a proof; refuse anything but the one encoding ``to_json`` writes."""
        try:
            doc = json.loads(data.decode("ascii"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ProofError(f"not a proof: not ASCII JSON ({e})") from e
        if not isinstance(doc, dict) or sorted(doc) != list(_KEYS):
            raise ProofError(f"not a proof: expected exactly the keys {', '.join(_KEYS)}")
        if doc["format"] != PROOF_FORMAT:
            raise ProofError(f"not a proof: format is {str(doc['format'])[:40]!r}, expected {PROOF_FORMAT!r}")
        event = doc["event"]
        if not isinstance(event, dict) or sorted(event) != sorted(name for name, _, _ in FIELDS):
            raise ProofError("proof event must have exactly the stored fields of FORMAT.md 2.1")
        values: dict[str, Any] = {}
        for name, kind, nullable in FIELDS:
            v = event[name]
            if v is None and nullable:
                values[name] = None
            elif kind == Kind.INT and type(v) is int and v >= 0:
                values[name] = v
            elif kind == Kind.STR and isinstance(v, str):
                values[name] = v
            elif kind == Kind.BYTES and isinstance(v, str):
                values[name] = _hex(v, None, f"event.{name}")
            else:
                raise ProofError(f"proof event field {name!r} is not a valid {kind}")
        if type(doc["leaf_index"]) is not int or doc["leaf_index"] < 0:
            raise ProofError("proof leaf_index is not a non-negative integer")
        for name in ("manifest", "checkpoint"):
            if not isinstance(doc[name], str):
                raise ProofError(f"proof {name} is not a signed note")
        history = doc["key_history"]
        if not isinstance(history, list) or len(history) > 4096 or not all(isinstance(n, str) for n in history):
            raise ProofError("proof key_history is not a list of signed notes")
        proof = cls(
            event=values,
            prev_hash=_hex(doc["prev_hash"], 32, "prev_hash"),
            leaf_index=doc["leaf_index"],
            event_path=_path(doc["event_path"], "event_path"),
            manifest=doc["manifest"].encode("utf-8"),
            checkpoint=doc["checkpoint"].encode("utf-8"),
            checkpoint_path=_path(doc["checkpoint_path"], "checkpoint_path"),
            key_history=tuple(n.encode("utf-8") for n in history),
        )
        if proof.to_json() != data:
            raise ProofError("proof is not in canonical form (it was edited)")
        return proof


def _hex(value: object, size: int | None, where: str) -> bytes:
    if (not isinstance(value, str) or value != value.lower() or len(value) % 2
            or (size is not None and len(value) != 2 * size)):
        raise ProofError(f"proof {where} is not lowercase hex{'' if size is None else f' of {size} bytes'}")
    try:
        return bytes.fromhex(value)
    except ValueError as e:
        raise ProofError(f"proof {where} is not lowercase hex") from e


def _path(value: object, where: str) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > 64:
        raise ProofError(f"proof {where} is not a list of at most 64 hashes")
    return tuple(_hex(h, 32, where) for h in value)


@dataclasses.dataclass(frozen=True)
class ProofCheck:
    """What a proof that checked proves: this event is at this seq of this stream, under this checkpoint."""

    journal_id: str
    stream: str
    segment: int
    seq: int
    event_id: str
    execution_id: str
    event_type: str
    ts: str
    event_hash: str
    manifest_key_id: str
    checkpoint_key_id: str
    checkpoint_size: int
    checkpoint_root: str
    proof_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _open(note: bytes, keys: Sequence[VerifyKey], what: str) -> tuple[str, VerifyKey]:
    """Open a note of the proof with the trusted public keys. Trust is in the key, not its name: each
    key is tried under the note's key name, which must then be the name of the journal the note is of."""
    try:
        _, sigs = split_note(note)
        if len(sigs) != 1:
            raise NoteError("a proof's notes carry exactly one signature")
        text, key = open_note(note, [VerifyKey(sigs[0].name, k.public) for k in keys])
    except NoteError as e:
        raise ProofError(f"the proof's {what} does not verify: {e}") from e
    return text, key


def check_proof(data: bytes, public_keys: Sequence[VerifyKey]) -> ProofCheck:
    """Check an inclusion proof offline (FORMAT.md 10a); raises ProofError unless it proves its event."""
    proof = Proof.from_json(data)
    try:
        journal = Manifest.parse(split_note(proof.manifest)[0]).journal  # which journal's key history applies
    except NoteError as e:
        raise ProofError(f"the proof's manifest does not parse: {e}") from e
    if not proof.key_history:
        raise ProofError("the proof carries no key history")
    name = key_name(journal)
    history = check_history([(entry_name(i), n) for i, n in enumerate(proof.key_history)], journal, name,
                            [VerifyKey(name, k.public) for k in public_keys])
    if history.problems:
        raise ProofError(f"the proof's key history does not verify: {'; '.join(history.problems)}")
    keys = history.keys()
    cp_text, cp_key = _open(proof.checkpoint, keys, "checkpoint")
    m_text, m_key = _open(proof.manifest, keys, "manifest")
    try:
        cp = Checkpoint.parse(cp_text)
        m = Manifest.parse(m_text)
    except NoteError as e:
        raise ProofError(f"the proof's notes do not parse: {e}") from e
    # Exactly the entries up to the newest key the proof uses: nothing left out, nothing added.
    used = [i for i, e in enumerate(history.entries) if e.key_id in (m_key.key_id, cp_key.key_id)]
    if not used or history.entries[used[-1]].entry != len(proof.key_history) - 1:
        raise ProofError("the proof's key history must end with the entry of the newest key that signed it")
    problem = (history.signer_problem(m_key.key_id, m.stream, m.segment, m.time) if canonical_time(m.time)
               else "its time")
    if problem is None:
        problem = history.checkpoint_signer_problem(cp_key.key_id, m.stream, cp.tree_size, m.time)
    if problem is not None:
        raise ProofError(f"the proof's notes are signed outside their keys' validity in the key history: {problem}")
    if m_key.name != key_name(m.journal) or cp_key.name != key_name(m.journal):
        raise ProofError(f"the notes are signed under key names {m_key.name!r} and {cp_key.name!r}, "
                         f"not journal {m.journal}'s")
    if m.key_id != m_key.key_id:
        raise ProofError(f"the manifest names key {m.key_id} but is signed by {m_key.key_id}")
    if cp.origin != checkpoint_origin(m.journal, m.stream):
        raise ProofError(f"the checkpoint is for {cp.origin!r}, not the manifest's stream")
    # The manifest is leaf `segment` of the checkpoint tree.
    if merkle.root_from_inclusion(merkle.leaf_hash(m.manifest_hash()), m.segment, cp.tree_size,
                                  proof.checkpoint_path) != cp.root_hash:
        raise ProofError(f"manifest {m.segment} is not in the checkpoint of size {cp.tree_size}")
    # The event is leaf `leaf_index` of the segment's tree, whose root the manifest signs.
    ev = proof.event
    h = event_hash(proof.prev_hash, encode_fields(tuple(ev[name] for name, _, _ in FIELDS)))
    if merkle.root_from_inclusion(merkle.leaf_hash(h), proof.leaf_index, m.events, proof.event_path) != m.merkle_root:
        raise ProofError(f"the event is not row {proof.leaf_index} of segment {m.segment} (its Merkle path fails)")
    if not m.first_seq <= ev["seq"] <= m.last_seq:
        raise ProofError(f"seq {ev['seq']} is outside segment {m.segment}'s range {m.first_seq}..{m.last_seq}")
    return ProofCheck(
        journal_id=m.journal, stream=m.stream, segment=m.segment, seq=ev["seq"], event_id=ev["event_id"],
        execution_id=ev["execution_id"], event_type=ev["event_type"], ts=format_ts(ev["ts"]), event_hash=h.hex(),
        manifest_key_id=m_key.key_id, checkpoint_key_id=cp_key.key_id, checkpoint_size=cp.tree_size,
        checkpoint_root=cp.root_hash.hex(), proof_bytes=len(data),
    )


# -- making proofs (from the store, with the same trusted keys) ---------------------------------------------------


def _history_upto(history: KeyRing, checkpoint_note: bytes) -> tuple[bytes, ...]:
    """The key history entries up to the checkpoint's signer, the newest key a proof uses."""
    if history.problems or not history.entries:
        raise IntegrityError("the journal's key history does not verify: "
                             f"{'; '.join(history.problems) or 'it is empty'}")
    try:
        signer = open_note(checkpoint_note, history.keys())[1].key_id
    except NoteError as e:
        raise IntegrityError(f"the checkpoint is not signed by a key of the key history: {e}") from e
    last = next(i for i, e in enumerate(history.entries) if e.key_id == signer)
    return tuple(history.notes[: last + 1])


def make_proof(reader: Any, *, event_id: str | None = None, seq: int | None = None) -> Proof:
    """The inclusion proof of one sealed event of ``reader``'s stream (a ``wormjournal.Reader``),
    under the stream's latest checkpoint. Everything put in it is checked first."""
    store, stream = reader.store, reader.stream
    keys = reader.trusted_keys
    count = reader.refresh()
    want: tuple[str, str | int]
    if event_id is not None:
        found = reader.get_event(event_id)
        if found is None or found.segment is None:
            raise NotFoundError(f"no sealed event {event_id!r} in stream {stream}")
        segment, want = found.segment, ("event_id", event_id)
    elif seq is not None:
        segment = next((n for n in range(count)
                        if reader.manifest(n).first_seq <= seq <= reader.manifest(n).last_seq), None)
        if segment is None:
            raise NotFoundError(f"seq {seq} of stream {stream} is not sealed")
        want = ("seq", seq)
    else:
        raise ValidationError("event", "give event_id or seq")
    m = reader.manifest(segment)
    data = store.get(m.object)
    if hashlib.sha256(data).digest() != m.object_sha256:
        raise IntegrityError(f"segment {segment} ({m.object}) is not the object its manifest signs")
    table: pa.Table = read_segment(data)
    column = table.column(want[0]).to_pylist()
    if column.count(want[1]) != 1:
        raise IntegrityError(f"segment {segment} holds {want[0]} {want[1]!r} {column.count(want[1])} times")
    index = column.index(want[1])
    leaves = [merkle.leaf_hash(h) for h in table.column("hash").to_pylist()]
    if merkle.root_from_leaf_hashes(leaves) != m.merkle_root:
        raise IntegrityError(f"segment {segment}'s rows do not hash to its signed Merkle root")
    row = table.slice(index, 1).to_pylist()[0]
    ts = row["ts"]
    row["ts"] = ts if isinstance(ts, int) else table.column("ts").cast(pa.int64())[index].as_py()
    cp, cp_note = reader.latest_checkpoint()
    if cp.tree_size <= segment:
        raise NotFoundError(f"segment {segment} is not under a checkpoint yet (the seal did not finish)")
    manifest_hashes = [reader.manifest(n).manifest_hash() for n in range(cp.tree_size)]
    proof = Proof(
        event={name: row[name] for name, _, _ in FIELDS},
        prev_hash=row["prev_hash"],
        leaf_index=index,
        event_path=tuple(merkle.inclusion_path(leaves, index)),
        manifest=store.get(layout.manifest(stream, segment)),
        checkpoint=cp_note,
        checkpoint_path=tuple(merkle.inclusion_path([merkle.leaf_hash(h) for h in manifest_hashes], segment)),
        key_history=_history_upto(reader.key_ring, cp_note),
    )
    check_proof(proof.to_json(), keys)  # never hand out a proof that does not check
    return proof
