"""FORMAT.md is the contract with auditors: check the library against it.

1. The test vectors in FORMAT.md ("Test vectors") are parsed out of the document and the
   library must reproduce each of them exactly, through its C extension and its pure-Python path.
2. An independent implementation of the event hash, the genesis hash, the pseudonym, the
   signed-note check, the RFC 6962 root, the key history entry and the key validity rule,
   written from FORMAT.md with ``struct`` and ``hashlib`` only, must agree with the library
   on the vectors and on random events.
3. The field table of FORMAT.md must match the library's FIELDS and Parquet schema.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import random
import re
import struct
import types
import uuid
import zlib
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wormjournal import events, payload
from wormjournal.errors import IntegrityError
from wormjournal.events import StoredEvent
from wormjournal.index import build as index_build
from wormjournal.journal import sealer, stages
from wormjournal.segments import merkle, pages, table
from wormjournal.segments.cosign import Cosigner, cosignatures, parse_add_checkpoint
from wormjournal.segments.head import Head
from wormjournal.segments.identity import JournalIdentity
from wormjournal.segments.keyhistory import KeyEntry, entry_name, first_entry, identity_hash
from wormjournal.segments.manifest import ZERO_HASH, Checkpoint, Manifest, checkpoint_origin
from wormjournal.segments.notes import NoteError, SigningKey, VerifyKey, open_note, raw_public
from wormjournal.segments.table import events_to_table, storage_order
from wormjournal.storage import layout, wal
from wormjournal.trust import (
    KeyRing,
    ManifestChain,
    Sink,
    check_checkpoint_root,
    check_complete,
    check_history,
    open_checkpoint,
    open_manifest,
)

FORMAT_MD = Path(__file__).resolve().parents[1] / "FORMAT.md"


@pytest.fixture(autouse=True, params=["c", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every vector through both paths: the C extension (when built) and the pure-Python one."""
    if request.param == "python":
        monkeypatch.setattr(events, "_native", None)
        monkeypatch.setattr(merkle, "_bulk", None)
        monkeypatch.setattr(pages, "_native", None)
        monkeypatch.setattr(payload, "_native", None)
    elif events._native is None:  # noqa: SLF001
        pytest.skip("the C extension is not built")
    return str(request.param)

# -- reading FORMAT.md ----------------------------------------------------------------

_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_VECTOR_LINE = re.compile(r"([A-Za-z0-9_.]+):(?: (.*))?")


@cache
def format_text() -> str:
    return FORMAT_MD.read_text(encoding="utf-8")


def parse_key_values(body: str) -> dict[str, str]:
    """``name: value`` lines (blank lines skipped); a repeated name is an error."""
    out: dict[str, str] = {}
    for line in body.splitlines():
        if not line.strip():
            continue
        m = _VECTOR_LINE.fullmatch(line)
        assert m, f"malformed vector line in FORMAT.md: {line!r}"
        assert m[1] not in out, f"vector {m[1]!r} given twice"
        out[m[1]] = m[2] or ""
    return out


class Vectors:
    """The ``vectors`` block and the ``vector <name>`` blocks of FORMAT.md."""

    def __init__(self, text: str) -> None:
        self.values: dict[str, str] = {}
        self.blocks: dict[str, str] = {}
        for m in _FENCE.finditer(text):
            info, body = m[1].split(), m[2]
            if info[:1] == ["vectors"]:
                for name, value in parse_key_values(body).items():
                    assert name not in self.values, f"vector {name!r} given twice"
                    self.values[name] = value
            elif info[:1] == ["vector"]:
                assert len(info) == 2, f"vector block needs one name: {m[1]!r}"
                assert info[1] not in self.blocks, f"vector block {info[1]!r} given twice"
                self.blocks[info[1]] = body
        assert self.values and self.blocks, "FORMAT.md has no test vectors"

    def raw(self, name: str) -> str:
        assert name in self.values, f"FORMAT.md has no vector {name!r}"
        return self.values[name]

    def hex(self, name: str) -> bytes:
        value = self.raw(name)
        assert value == value.lower(), f"{name}: hex must be lowercase"
        return bytes.fromhex(value)

    def int(self, name: str) -> int:
        value = self.raw(name)
        assert re.fullmatch(r"-?(0|[1-9][0-9]*)", value), f"{name}: not a decimal"
        return int(value)

    def text(self, name: str) -> str:
        value = json.loads(self.raw(name))
        assert isinstance(value, str), f"{name}: not a JSON string"
        return value

    def field(self, name: str, kind: str, nullable: bool) -> Any:
        if self.raw(name) == "null":
            assert nullable, f"{name} is null but the field is not nullable"
            return None
        return {"int": self.int, "str": self.text, "bytes": self.hex}[kind](name)

    def block(self, name: str) -> str:
        assert name in self.blocks, f"FORMAT.md has no vector block {name!r}"
        return self.blocks[name]


@pytest.fixture(scope="module")
def vec() -> Vectors:
    return Vectors(format_text())


@cache
def spec_field_table() -> list[tuple[str, str, str, bool, str]]:
    """Rows of FORMAT.md 2.1: (number or '–', name, kind, nullable, Arrow type)."""
    text = format_text()
    start = text.index("### 2.1 Stored fields")
    section = text[start : text.index("\n### ", start + 1)]
    row = re.compile(r"\| (\d+|–) \| `(\w+)` \| (int|str|bytes) \| (yes|no) \| `([^`]+)` \|")
    rows = [(m[1], m[2], m[3], m[4] == "yes", m[5]) for m in row.finditer(section)]
    assert len(rows) == 18, f"FORMAT.md 2.1 has {len(rows)} field rows"
    return rows


def spec_fields() -> list[tuple[str, str, bool]]:
    """The hashed fields in hashing order, as FORMAT.md 2.1 lists them."""
    rows = spec_field_table()
    hashed = [r for r in rows if r[0] != "–"]
    assert [int(r[0]) for r in hashed] == list(range(1, len(hashed) + 1))
    return [(name, kind, nullable) for _, name, kind, nullable, _ in hashed]


# -- an independent implementation, from FORMAT.md alone --------------------------------

SPEC_EVENT_TAG = b"wormjournal:event:v1\x00"
SPEC_GENESIS_TAG = b"wormjournal:genesis:v1\x00"
SPEC_SUBJECT_TAG = b"wormjournal:subject:v1\x00"
SPEC_MANIFEST_KEYS = [
    "journal", "stream", "segment", "first_seq", "last_seq", "events", "prev_hash",
    "last_hash", "merkle_root", "object", "object_size", "object_sha256", "object_version", "prev_manifest",
    "frontier", "key_id", "time",
]  # fmt: skip


def spec_encode(kind: str, value: Any) -> bytes:
    if value is None:
        return b"\xff\xff\xff\xff"
    if kind == "int":
        return struct.pack(">Iq", 8, value)
    raw = value.encode("utf-8") if kind == "str" else bytes(value)
    return struct.pack(">I", len(raw)) + raw


def spec_canonical(values: dict[str, Any]) -> bytes:
    return b"".join(spec_encode(kind, values[name]) for name, kind, _ in spec_fields())


def spec_event_hash(prev_hash: bytes, values: dict[str, Any]) -> bytes:
    return hashlib.sha256(SPEC_EVENT_TAG + prev_hash + spec_canonical(values)).digest()


def spec_genesis(journal_id: str, stream: str) -> bytes:
    body = spec_encode("str", journal_id) + spec_encode("str", stream)
    return hashlib.sha256(SPEC_GENESIS_TAG + body).digest()


def spec_pseudonym(key: bytes, subject: str) -> str:
    mac = hmac.new(key, SPEC_SUBJECT_TAG + subject.encode("utf-8"), hashlib.sha256).digest()
    return "psn:" + mac[:16].hex()


def spec_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 2.1, recursively: split at the largest power of two smaller than n."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + spec_mth(leaves[:k]) + spec_mth(leaves[k:])).digest()


def spec_decode(data: bytes) -> dict[str, Any]:
    """Canonical field bytes (2.2) back to the field values, by name."""
    out: dict[str, Any] = {}
    pos = 0
    for name, kind, _ in spec_fields():
        (n,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if n == 0xFFFFFFFF:
            out[name] = None
            continue
        raw = data[pos : pos + n]
        pos += n
        out[name] = struct.unpack(">q", raw)[0] if kind == "int" else raw.decode("utf-8") if kind == "str" else raw
    assert pos == len(data)
    return out


def spec_mth_nodes(nodes: list[bytes]) -> bytes:
    """FORMAT.md 5: the RFC 6962 recursion with subtree roots (the block roots) in place of leaf hashes."""
    if len(nodes) == 1:
        return nodes[0]
    k = 1 << ((len(nodes) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + spec_mth_nodes(nodes[:k]) + spec_mth_nodes(nodes[k:])).digest()


SPEC_KEY_LINES = ["journal", "entry", "key_id", "public_key", "valid_from", "prev_entry", "identity"]


def spec_key_entry(text: str) -> tuple[dict[str, str], dict[str, int]]:
    """A version 2 key history entry (FORMAT.md 6.1): its fixed lines by name, and its cutovers."""
    lines = text.split("\n")
    assert lines[0] == "wormjournal/key/v2" and lines[-1] == ""
    fixed = [line.split(" ", 1) for line in lines[1 : len(SPEC_KEY_LINES) + 1]]
    assert [k for k, _ in fixed] == SPEC_KEY_LINES
    cutovers: dict[str, int] = {}
    for line in lines[len(SPEC_KEY_LINES) + 1 : -1]:
        word, stream, segment = line.split(" ")
        assert word == "cutover" and stream not in cutovers and re.fullmatch(r"0|[1-9][0-9]*", segment)
        cutovers[stream] = int(segment)
    assert list(cutovers) == sorted(cutovers)
    return dict(fixed), cutovers


def spec_valid_entry(cutovers: list[dict[str, int]], stream: str, segment: int) -> int:
    """FORMAT.md 6.1, key validity by position: the last entry whose cutover for the stream (0 for entry 0,
    and for a stream the entry does not name) is at most the segment."""
    return max(n for n, cut in enumerate(cutovers) if n == 0 or cut.get(stream, 0) <= segment)


def spec_open_note(note: bytes, name: str, public: bytes) -> str:
    """Check a one-signature wormjournal note (FORMAT.md 6); return its text."""
    whole = note.decode("utf-8")
    sep = whole.rindex("\n\n")
    text, sig_lines = whole[: sep + 1], whole[sep + 2 :]
    m = re.fullmatch("\u2014 (\\S+) ([A-Za-z0-9+/=]+)\n", sig_lines)
    assert m and m[1] == name
    blob = base64.b64decode(m[2], validate=True)
    assert blob[:4] == hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], text.encode("utf-8"))
    return text


# -- helpers ------------------------------------------------------------------------


def signing_key(vec: Vectors, which: str = "key") -> SigningKey:
    """The key of the vectors (``key``), or the one the key history rotates to (``key2``)."""
    private = Ed25519PrivateKey.from_private_bytes(vec.hex(f"{which}.seed"))
    return SigningKey(vec.text("key.name"), private)


def later_events(vec: Vectors) -> dict[int, StoredEvent]:
    """event2, event3, ... (given by canonical field bytes and hash), chained onto event1, by seq."""
    out: dict[int, StoredEvent] = {}
    prev, seq = vec.hex("event1.hash"), 2
    while f"event{seq}.canonical" in vec.values:
        values, size = events.decode_fields(vec.hex(f"event{seq}.canonical"))
        assert size == len(vec.hex(f"event{seq}.canonical"))
        out[seq] = StoredEvent(**dict(zip(events.FIELD_NAMES, values, strict=True)), prev_hash=prev,
                               hash=vec.hex(f"event{seq}.hash"))
        prev, seq = out[seq].hash, seq + 1
    return out


def key_ring(vec: Vectors, trusted: list[VerifyKey] | None = None, identity: bytes | None = None) -> KeyRing:
    """The trust core's key ring from keyhistory0.note and keyhistory1.note and journal.json."""
    notes = [(entry_name(n), vec.block(f"keyhistory{n}.note").encode()) for n in (0, 1)]
    return check_history(notes, vec.text("journal_id"), vec.text("key.name"),
                         [signing_key(vec).verify_key] if trusted is None else trusted,
                         identity=vec.block("journal.json").encode() if identity is None else identity)


def event_values(vec: Vectors, i: int) -> dict[str, Any]:
    return {
        name: vec.field(f"event{i}.{name}", kind, nullable) for name, kind, nullable in spec_fields()
    }


def stored_event(vec: Vectors, i: int) -> StoredEvent:
    return StoredEvent(
        **event_values(vec, i),
        prev_hash=vec.hex(f"event{i}.prev_hash"),
        hash=vec.hex(f"event{i}.hash"),
    )


def note_text(note: bytes) -> bytes:
    return note[: note.rindex(b"\n\n") + 1]


# -- 1. the document matches the library ------------------------------------------------


def test_field_table_matches_library() -> None:
    assert spec_fields() == [(name, str(kind), nullable) for name, kind, nullable in events.FIELDS]
    rows = spec_field_table()
    assert [r[1] for r in rows] == table.SCHEMA.names
    for _, name, _, nullable, arrow_type in rows:
        field = table.SCHEMA.field(name)
        assert str(field.type) == arrow_type, name
        assert field.nullable == nullable, name


def test_tags_match_library() -> None:
    text = format_text()
    for name, value in (
        ("EVENT_TAG", events.EVENT_TAG),
        ("GENESIS_TAG", events.GENESIS_TAG),
        ("SUBJECT_TAG", events.SUBJECT_TAG),
    ):
        m = re.search(rf"\| `{name}` \| [^|]+ \| `([0-9a-f]+)` \|", text)
        assert m, f"FORMAT.md does not give {name}"
        assert bytes.fromhex(m[1]) == value
    assert (SPEC_EVENT_TAG, SPEC_GENESIS_TAG, SPEC_SUBJECT_TAG) == (
        events.EVENT_TAG,
        events.GENESIS_TAG,
        events.SUBJECT_TAG,
    )
    assert events.NULL_MARK == b"\xff\xff\xff\xff"


def test_event_types_match_library() -> None:
    text = format_text()
    section = text[text.index("### 2.5 Event types") : text.index("### 2.6")]
    listed = section[section.index("known types") : section.index("or a custom type")]
    assert set(re.findall(r"`([a-z_]+)`", listed)) == set(events.KNOWN_EVENT_TYPES)
    pattern = re.search(r"`(custom:[^`]+)`", section)
    assert pattern and pattern[1] == events._CUSTOM_TYPE.pattern
    events.check_event_type("custom:acme.invoice_sent")


def test_key_vectors(vec: Vectors) -> None:
    key = signing_key(vec)
    vk = key.verify_key
    assert vec.text("key.name") == f"wormjournal/{vec.text('journal_id')}"
    assert raw_public(vk.public) == vec.hex("key.public")
    assert vk.key_id == vec.text("key.key_id")
    assert vk.key_id == hashlib.sha256(vec.hex("key.public")).hexdigest()[:32]
    assert vk.note_hash == vec.hex("key.note_key_hash")
    assert vk.pem().decode() == vec.block("key.pem")
    from_pem = VerifyKey.from_pem(key.name, vec.block("key.pem").encode())
    assert raw_public(from_pem.public) == vec.hex("key.public")
    assert layout.public_key(vk.key_id) == vec.text("key.object")


def test_genesis_vector(vec: Vectors) -> None:
    journal_id, stream = vec.text("journal_id"), vec.text("stream")
    assert events.genesis_hash(journal_id, stream) == vec.hex("genesis_hash")
    assert spec_genesis(journal_id, stream) == vec.hex("genesis_hash")


def test_pseudonym_vector(vec: Vectors) -> None:
    key, subject = vec.hex("subject.key"), vec.text("subject.id")
    assert events.pseudonymize(key, subject) == vec.text("subject.pseudonym")
    assert spec_pseudonym(key, subject) == vec.text("subject.pseudonym")
    assert re.fullmatch(r"psn:[0-9a-f]{32}", vec.text("subject.pseudonym"))


@pytest.mark.parametrize("i", [0, 1])
def test_event_vectors(vec: Vectors, i: int) -> None:
    values = event_values(vec, i)
    ordered = tuple(values[name] for name in events.FIELD_NAMES)
    canonical = vec.hex(f"event{i}.canonical")
    assert events.encode_fields(ordered) == canonical
    assert spec_canonical(values) == canonical
    assert events.decode_fields(canonical) == (ordered, len(canonical))

    prev = vec.hex("genesis_hash") if i == 0 else vec.hex(f"event{i - 1}.hash")
    assert vec.hex(f"event{i}.prev_hash") == prev
    assert events.event_hash(prev, canonical) == vec.hex(f"event{i}.hash")
    assert spec_event_hash(prev, values) == vec.hex(f"event{i}.hash")

    # The field values follow the rules of FORMAT.md 2.4 to 3.
    assert values["seq"] == i
    assert events.format_ts(values["ts"]) == vec.text(f"event{i}.ts_text")
    assert events.parse_ts(vec.text(f"event{i}.ts_text")) == values["ts"]
    assert uuid.UUID(values["event_id"]).version == 7
    events.check_event_type(values["event_type"])
    for name in events.ID_FIELDS:
        if values[name] is not None:
            events.check_id(name, values[name])
    assert values["payload_key_id"] is None
    doc_json = json.loads(vec.raw(f"event{i}.payload_json"))
    assert values["payload_codec"] == payload.CODEC_JSON
    assert values["payload"] == events.canonical_json(doc_json)
    assert payload.decode_payload(values["payload_codec"], values["payload"]) == doc_json


def test_event_vectors_chain_and_back_link(vec: Vectors) -> None:
    e0, e1 = event_values(vec, 0), event_values(vec, 1)
    assert e0["exec_prev_seq"] is None
    assert e1["execution_id"] == e0["execution_id"] and e1["exec_prev_seq"] == e0["seq"]
    assert e1["parent_event_id"] == e0["event_id"]
    assert e1["subject_id"] == vec.text("subject.pseudonym")


def test_event0_field_breakdown(vec: Vectors) -> None:
    parts = parse_key_values(vec.block("event0.fields"))
    assert list(parts) == list(events.FIELD_NAMES)
    values = event_values(vec, 0)
    for name, kind, _ in spec_fields():
        assert bytes.fromhex(parts[name]) == spec_encode(kind, values[name]), name
    assert bytes.fromhex("".join(parts.values())) == vec.hex("event0.canonical")


def test_segment_vectors(vec: Vectors) -> None:
    hashes = [vec.hex("event0.hash"), vec.hex("event1.hash")]
    assert merkle.merkle_root(hashes) == vec.hex("segment.merkle_root")
    assert spec_mth(hashes) == vec.hex("segment.merkle_root")
    date = vec.text("segment.date")
    assert {table.utc_date(vec.int("event0.ts")), table.utc_date(vec.int("event1.ts"))} == {date}
    name = layout.segment(vec.text("stream"), date, 0)
    assert name == vec.text("segment.object")
    assert layout.parse_segment(name) == (vec.text("stream"), date, 0)


def test_segment_file_of_the_vectors(vec: Vectors, path: str) -> None:
    """A real Parquet segment of the two vector events: schema, metadata, bloom filters, hashes; decoded by
    the C extension's page decoder on the C path, by pyarrow on the Python one."""
    stored = [stored_event(vec, 0), stored_event(vec, 1)]
    data = table.write_segment(
        stored,
        journal_id=vec.text("journal_id"),
        stream=vec.text("stream"),
        segment=0,
        row_group_rows=1024,
    )
    t = table.read_segment(data)
    assert table.table_to_events(t) == stored
    assert t.column("ts").type == pa.timestamp("us", tz="UTC")
    chunks = pages.chunks_of_metadata(pq.ParquetFile(pa.BufferReader(data)).metadata, [0])
    assert (pages.decode_plain(data, table.SCHEMA, chunks) is not None) == (path == "c")
    assert table.chain_hashes(vec.hex("genesis_hash"), t) == [e.hash for e in stored]
    meta = pq.ParquetFile(pa.BufferReader(data)).metadata
    assert {k: v for k, v in meta.metadata.items() if k.startswith(b"wormjournal.")} == {
        b"wormjournal.format": b"1",
        b"wormjournal.journal": vec.text("journal_id").encode(),
        b"wormjournal.stream": vec.text("stream").encode(),
        b"wormjournal.segment": b"0",
        b"wormjournal.block_rows": b"1024",
        b"wormjournal.block_roots": vec.hex("segment.merkle_root").hex().encode(),  # one block: the whole tree
        b"wormjournal.page_rows": b"128",
        b"wormjournal.page_roots": vec.hex("segment.merkle_root").hex().encode(),  # one page: the whole tree
    }
    rg = meta.row_group(0)
    for i in range(rg.num_columns):
        col = rg.column(i)
        assert col.compression == "ZSTD"
        has_bloom = getattr(col, "bloom_filter_offset", None) is not None
        wanted = col.path_in_schema in ("execution_id", "thread_id", "event_id")
        assert has_bloom == wanted, col.path_in_schema


def test_manifest_vector(vec: Vectors) -> None:
    note = vec.block("manifest0.note").encode("utf-8")
    key = signing_key(vec)
    text, signer = open_note(note, [key.verify_key])
    assert signer.key_id == vec.text("key.key_id")
    assert spec_open_note(note, vec.text("key.name"), vec.hex("key.public")) == text

    lines = text.split("\n")
    assert lines[0] == "wormjournal/manifest/v1" and lines[-1] == ""
    assert [line.split(" ", 1)[0] for line in lines[1:-1]] == SPEC_MANIFEST_KEYS + ["index"] * 4
    # The index lines: kind, first and last segment, rows, root; sorted by kind.
    assert lines[-5:-1] == [
        f"index {kind} 0 0 {len(json.loads(vec.raw(f'index.{kind}.rows')))} {vec.raw(f'index.{kind}.root')}"
        for kind in ("events", "executions", "tenants", "threads")
    ]

    m = Manifest.parse(text)
    assert m.journal == vec.text("journal_id") and m.stream == vec.text("stream")
    assert (m.segment, m.first_seq, m.last_seq, m.events) == (0, 0, 1, 2)
    assert m.prev_hash == vec.hex("genesis_hash")
    assert m.last_hash == vec.hex("event1.hash")
    assert m.merkle_root == vec.hex("segment.merkle_root")
    assert m.object == vec.text("segment.object")
    assert m.prev_manifest == ZERO_HASH == bytes(32)
    assert m.frontier == () and "\nfrontier -\n" in text  # segment 0: the tree before it is empty
    assert m.key_id == vec.text("key.key_id")
    assert m.text() == text
    assert m.manifest_hash() == vec.hex("manifest0.hash") == hashlib.sha256(text.encode()).digest()
    assert m.sign(key) == note
    assert layout.manifest(vec.text("stream"), 0) == vec.text("manifest0.object")


# The index tables' columns (FORMAT.md, "Index"): name and encoding, in leaf order.
SPEC_INDEX_COLUMNS = {
    "executions": [("execution_id", "str"), ("segment", "int"), ("row", "int"), ("rows", "int"), ("first_seq", "int"),
                   ("last_seq", "int"), ("prev_seq", "int"), ("first_ts", "int"), ("last_ts", "int"),
                   ("tenant_id", "str"), ("thread_id", "str"), ("last_event_type", "str")],
    "threads": [("thread_id", "str"), ("execution_id", "str"), ("segment", "int")],
    "events": [("fingerprint", "int"), ("segment", "int"), ("row", "int")],
    "tenants": [("tenant_id", "str"), ("started", "int"), ("execution_id", "str"), ("segment", "int"), ("rows", "int"),
                ("first_seq", "int"), ("last_seq", "int"), ("last_ts", "int"), ("thread_id", "str"),
                ("last_event_type", "str")],
}


def spec_fingerprint(event_id: str) -> int:
    """Section 11a: the first 4 bytes of SHA-256 of the tag and the event id as a STR field, big-endian."""
    digest = hashlib.sha256(b"wormjournal:event-id:v1\x00" + spec_encode("str", event_id)).digest()
    return int.from_bytes(digest[:4], "big")


def spec_index_leaf(kind: str, row: list[Any]) -> bytes:
    data = b"wormjournal:index:v1\x00" + kind.encode() + b"\x00"
    return data + b"".join(spec_encode(k, v) for (_, k), v in zip(SPEC_INDEX_COLUMNS[kind], row, strict=True))


@pytest.mark.parametrize("kind", ["executions", "threads", "events", "tenants"])
def test_index_vectors(vec: Vectors, kind: str) -> None:
    """The index rows of segment 0, their leaves and root, by the text of FORMAT.md and by the library."""
    rows = json.loads(vec.raw(f"index.{kind}.rows"))
    if rows:
        assert spec_index_leaf(kind, rows[0]) == vec.hex(f"index.{kind}.leaf0")
    else:  # segment 0's one execution has no tenant on its first event: no tenants row, the empty tree's root
        assert kind == "tenants" and vec.hex(f"index.{kind}.root") == hashlib.sha256(b"").digest()
    assert spec_mth([spec_index_leaf(kind, r) for r in rows]) == vec.hex(f"index.{kind}.root")
    # The library computes the same rows from the two events, and the same root.
    stored = storage_order([stored_event(vec, 0), stored_event(vec, 1)])
    table = index_build.segment_tables(events_to_table(stored), 0)[kind]
    as_vector = [[events.datetime_to_micros(v) if isinstance(v, dt.datetime) else v for v in r.values()]
                 for r in table.to_pylist()]
    assert as_vector == rows
    if kind == "events":  # the fingerprint of each event id, at its row in storage order
        assert sorted(rows) == sorted([spec_fingerprint(e.event_id), 0, i] for i, e in enumerate(stored))
        assert [index_build.fingerprint(e.event_id) for e in stored] == [spec_fingerprint(e.event_id) for e in stored]
    assert [name for name, _ in SPEC_INDEX_COLUMNS[kind]] == table.schema.names
    _, root = index_build.encode(kind, table, journal_id=vec.text("journal_id"), stream=vec.text("stream"), first=0,
                                 last=0)
    assert (root.rows, root.root) == (len(rows), vec.hex(f"index.{kind}.root"))
    assert index_build.leaf_hashes(kind, table) == [hashlib.sha256(b"\x00" + spec_index_leaf(kind, r)).digest()
                                                    for r in rows]


def test_tenants_vectors_carry_each_executions_start(vec: Vectors) -> None:
    """Segment 1's tenants rows: exec-0001 began in segment 0 (its start is event0's ts), exec-0002 begins here."""
    rows = json.loads(vec.raw("index1.tenants.rows"))
    assert spec_index_leaf("tenants", rows[0]) == vec.hex("index1.tenants.leaf0")
    assert spec_mth([spec_index_leaf("tenants", r) for r in rows]) == vec.hex("index1.tenants.root")
    later = later_events(vec)
    segment1 = storage_order([later[seq] for seq in json.loads(vec.raw("segment1.rows"))])
    started = {"exec-0001": stored_event(vec, 0).ts}
    assert {r[2]: r[1] for r in rows} == {"exec-0001": started["exec-0001"],
                                          "exec-0002": min(e.ts for e in segment1 if e.execution_id == "exec-0002")}
    table = index_build.segment_tables(events_to_table(segment1), 1, started)["tenants"]
    assert [[events.datetime_to_micros(v) if isinstance(v, dt.datetime) else v for v in r.values()]
            for r in table.to_pylist()] == rows


def spec_writes(n: int) -> list[tuple[int, int]]:
    """Section 11a, "Runs": the segment's own objects, then for each L = 1..4 with n + 1 a multiple of
    2 * 8^(L-1), the run from the multiple of 8^L at or below n to n."""
    out = [(n, n)]
    for level in range(1, 5):
        if (n + 1) % (2 * 8 ** (level - 1)) == 0:
            out.append((n - n % 8**level, n))
    return out


def spec_cover(count: int) -> list[tuple[int, int]]:
    """Section 11a, "Cover": each whole block of 8^4, then per octal digit d (place s) the run of d - d mod 2
    blocks and, for an odd d, one block more."""
    out, pos = [], 0
    while pos + 8**4 <= count:
        out.append((pos, pos + 8**4 - 1))
        pos += 8**4
    for place in (8**3, 8**2, 8, 1):
        d = (count - pos) // place
        if d >= 2:
            out.append((pos, pos + (d - d % 2) * place - 1))
            pos += (d - d % 2) * place
        if d % 2:
            out.append((pos, pos + place - 1))
            pos += place
    return out


def test_index_runs_and_cover_vectors(vec: Vectors) -> None:
    """Which objects a seal writes and which a lookup reads, by the text of section 11a and by the library."""
    def ranges(text: str) -> list[tuple[int, int]]:
        return [tuple(int(v) for v in part.split("-")) for part in text.split(" ")]  # type: ignore[misc]

    writes = {int(k.split(".")[2]): ranges(v) for k, v in vec.values.items() if k.startswith("index.writes.")}
    covers = {int(k.split(".")[2]): ranges(v) for k, v in vec.values.items() if k.startswith("index.cover.")}
    assert len(writes) >= 8 and len(covers) >= 6
    for n, got in writes.items():
        assert got == spec_writes(n) == index_build.ranges_ending_at(n), n
    for count, got in covers.items():
        assert got == spec_cover(count) == index_build.cover(count), count
        assert all(r in spec_writes(r[1]) for r in got), count  # each one some seal writes


def test_manifest_claims_vector(vec: Vectors) -> None:
    """Section 11a, "Manifest hashes", by its text: the claim of the run over segments 0-1 of the cover of 3, then
    the hashes of manifests 1 and 2, make the checkpoint's root; the library parses the claim alike."""
    claim = vec.values["index.manifests.run_0_1"]
    assert spec_cover(3) == [(0, 1), (2, 2)] and len(claim) == 64 * (1 - 0)
    hashes = [bytes.fromhex(claim[i : i + 64]) for i in range(0, len(claim), 64)]
    hashes += [vec.hex("manifest1.hash"), vec.hex("manifest2.hash")]
    assert hashes[0] == vec.hex("manifest0.hash")
    assert spec_mth(hashes) == vec.hex("checkpoint3.root")
    assert index_build.parse_manifests({index_build.MANIFESTS_KEY: claim}, 0, 1) == hashes[:1]


def test_encrypted_payload_vector(vec: Vectors) -> None:
    """Section 3.1 by its text: the associated data, AES-256-GCM with the nonce in front, and the library agrees."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    seq, key_id = vec.int("encrypted.seq"), vec.text("encrypted.payload_key_id")
    codec = vec.text("encrypted.payload_codec")
    aad = (b"wormjournal:payload:v1\x00" + spec_encode("str", vec.text("journal_id"))
           + spec_encode("str", vec.text("stream")) + spec_encode("int", seq) + spec_encode("str", key_id)
           + spec_encode("str", codec))
    assert aad == vec.hex("encrypted.aad")
    stored, key, nonce = vec.hex("encrypted.payload"), vec.hex("encrypted.data_key"), vec.hex("encrypted.nonce")
    assert stored[:12] == nonce
    assert AESGCM(key).decrypt(nonce, stored[12:], aad) == vec.hex("encrypted.plaintext")
    assert payload.payload_aad(vec.text("journal_id"), vec.text("stream"), seq, key_id, codec) == aad
    value = payload.read_payload(codec, stored, key_id, journal_id=vec.text("journal_id"), stream=vec.text("stream"),
                                 seq=seq, data_key={key_id: key}.get)
    assert events.canonical_json(value) == vec.hex("encrypted.plaintext")
    # Bound to its seq: the same bytes at another seq do not decrypt; without the key, a marker.
    with pytest.raises(IntegrityError):
        payload.read_payload(codec, stored, key_id, journal_id=vec.text("journal_id"), stream=vec.text("stream"),
                             seq=seq + 1, data_key={key_id: key}.get)
    assert payload.read_payload(codec, stored, key_id, journal_id="j", stream="s", seq=seq,
                                data_key=lambda k: None) == {"$wormjournal": "shredded", "key_id": key_id}


def test_stored_apart_vector(vec: Vectors) -> None:
    """Section 3.5 by its text: the event holds SHA-256 || u64be(length) of the object, named by the hex digest; the
    object's bytes are the encrypted payload of 3.1, decrypted with the codec without ``+ref``."""
    import hashlib

    stored, ref = vec.hex("encrypted.payload"), vec.hex("apart.payload")
    assert ref == hashlib.sha256(stored).digest() + len(stored).to_bytes(8, "big")
    assert vec.text("apart.object") == f"payloads/stream={vec.text('stream')}/{hashlib.sha256(stored).hexdigest()}"
    assert vec.text("apart.payload_codec") == vec.text("encrypted.payload_codec") + "+ref"
    key_id, key = vec.text("encrypted.payload_key_id"), vec.hex("encrypted.data_key")
    objects = {hashlib.sha256(stored).hexdigest(): stored}
    value = payload.read_payload(vec.text("apart.payload_codec"), ref, key_id, journal_id=vec.text("journal_id"),
                                 stream=vec.text("stream"), seq=vec.int("encrypted.seq"), data_key={key_id: key}.get,
                                 fetch=objects.__getitem__)
    assert events.canonical_json(value) == vec.hex("encrypted.plaintext")
    objects[hashlib.sha256(stored).hexdigest()] = stored[:-1] + bytes([stored[-1] ^ 1])  # not the bytes it names
    with pytest.raises(IntegrityError):
        payload.read_payload(vec.text("apart.payload_codec"), ref, key_id, journal_id=vec.text("journal_id"),
                             stream=vec.text("stream"), seq=vec.int("encrypted.seq"), data_key={key_id: key}.get,
                             fetch=objects.__getitem__)


def test_saver_payload_vector(vec: Vectors) -> None:
    """Section 3.4, format 2 by its text: u32be(head length) || head (canonical JSON) || body, each typed value
    [type, offset, length] in the body; the library reads it so."""
    from wormjournal.index.lgformat import read_saver_payload

    data = vec.hex("saver.writes.payload")
    n = int.from_bytes(data[:4], "big")
    head, body = json.loads(data[4 : 4 + n]), data[4 + n :]
    assert events.canonical_json(head) == data[4 : 4 + n] and head["format"] == 2 and head["kind"] == "writes"
    spec = [(idx, channel, (kind, body[off : off + size])) for idx, channel, kind, off, size in head["writes"]]
    assert spec == [(0, "messages", ("msgpack", b"\x91\xa2hi")), (1, "count", ("json", b"3"))]
    assert read_saver_payload(data)["writes"] == spec  # type: ignore[index]


def test_checkpoint_vector(vec: Vectors) -> None:
    note = vec.block("checkpoint1.note").encode("utf-8")
    key = signing_key(vec)
    text, _ = open_note(note, [key.verify_key])
    assert spec_open_note(note, vec.text("key.name"), vec.hex("key.public")) == text

    origin = vec.text("checkpoint1.origin")
    assert origin == checkpoint_origin(vec.text("journal_id"), vec.text("stream"))
    assert origin == f"wormjournal/{vec.text('journal_id')}/{vec.text('stream')}"
    root = vec.hex("checkpoint1.root")
    assert spec_mth([vec.hex("manifest0.hash")]) == root
    assert text == f"{origin}\n1\n{base64.b64encode(root).decode()}\n"

    cp = Checkpoint.for_manifests(origin, [vec.hex("manifest0.hash")])
    assert (cp.origin, cp.tree_size, cp.root_hash) == (origin, 1, root)
    assert Checkpoint.parse(text) == cp
    assert cp.text() == text
    assert cp.sign(key) == note
    assert layout.checkpoint(vec.text("stream"), 1) == vec.text("checkpoint1.object")


# The one-signature notes of the vectors and the key (``key`` or ``key2``) that signs each.
SIGNED_NOTES = [("manifest0.note", "key"), ("checkpoint1.note", "key"), ("manifest1.note", "key2"),
                ("checkpoint3.note", "key2"), ("head0.note", "key"), ("head1.note", "key2")]


@pytest.mark.parametrize(("name", "signer"), SIGNED_NOTES)
def test_changed_note_text_is_refused(vec: Vectors, name: str, signer: str) -> None:
    note = vec.block(name).encode("utf-8")
    keys = [signing_key(vec, signer).verify_key]
    open_note(note, keys)
    for pos in range(len(note_text(note))):
        for flip in (0x01, 0x20):
            changed = bytearray(note)
            changed[pos] ^= flip
            with pytest.raises(NoteError):
                open_note(bytes(changed), keys)


@pytest.mark.parametrize(("name", "signer"), SIGNED_NOTES)
def test_bad_signatures_are_refused(vec: Vectors, name: str, signer: str) -> None:
    note = vec.block(name).encode("utf-8")
    key = signing_key(vec, signer)
    keys = [key.verify_key]
    text = note_text(note)
    head, blob = note[len(text) + 1 :].rstrip(b"\n").rsplit(b" ", 1)
    raw = base64.b64decode(blob)

    def with_blob(new: bytes) -> bytes:
        return text + b"\n" + head + b" " + base64.b64encode(new) + b"\n"

    assert with_blob(raw) == note
    sig = bytearray(raw)
    sig[10] ^= 0x01
    with pytest.raises(NoteError, match="bad signature"):
        open_note(with_blob(bytes(sig)), keys)
    key_hash = bytearray(raw)
    key_hash[0] ^= 0x01
    with pytest.raises(NoteError, match="not signed by a trusted key"):
        open_note(with_blob(bytes(key_hash)), keys)
    with pytest.raises(NoteError):
        open_note(text, keys)
    with pytest.raises(NoteError):
        open_note(text + b"\n", keys)
    other = SigningKey(key.name, Ed25519PrivateKey.from_private_bytes(bytes(32)))
    with pytest.raises(NoteError, match="not signed by a trusted key"):
        open_note(note, [other.verify_key])
    with pytest.raises(NoteError):
        open_note(note, [])


def test_rfc6962_vectors(vec: Vectors) -> None:
    leaves = [vec.hex(f"rfc6962.leaf{i}") for i in range(8)]
    assert leaves[0] == b""
    for n in range(9):
        expected = vec.hex(f"rfc6962.root{n}")
        assert merkle.merkle_root(leaves[:n]) == expected, n
        assert spec_mth(leaves[:n]) == expected, n


def spec_hashes(value: str) -> list[bytes]:
    return [] if value == "-" else [bytes.fromhex(h) for h in value.split(" ")]


def spec_frontier(leaves: list[bytes]) -> list[bytes]:
    """FORMAT.md 4: the MTH of each perfect subtree, sizes the set bits of n from the largest."""
    out, start = [], 0
    for bit in reversed(range(len(leaves).bit_length())):
        if len(leaves) >> bit & 1:
            out.append(spec_mth(leaves[start : start + (1 << bit)]))
            start += 1 << bit
    return out


def spec_inclusion_root(leaf_hash: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """Recompute the root from an audit path by the recursion of RFC 6962 2.1.1, not RFC 9162's loop."""
    if size == 1:
        assert not path
        return leaf_hash
    k = 1 << ((size - 1).bit_length() - 1)
    node = lambda a, b: hashlib.sha256(b"\x01" + a + b).digest()  # noqa: E731
    if index < k:
        return node(spec_inclusion_root(leaf_hash, index, k, path[:-1]), path[-1])
    return node(path[-1], spec_inclusion_root(leaf_hash, index - k, size - k, path[:-1]))


def test_rfc6962_proof_vectors(vec: Vectors) -> None:
    """Frontiers, inclusion paths and consistency proofs (FORMAT.md 4) against the spec and the library."""
    leaves = [vec.hex(f"rfc6962.leaf{i}") for i in range(8)]
    hashes = [hashlib.sha256(b"\x00" + d).digest() for d in leaves]
    for n in range(9):
        frontier = spec_hashes(vec.raw(f"rfc6962.frontier{n}"))
        assert frontier == spec_frontier(leaves[:n]) == merkle.frontier_of(hashes[:n]), n
        assert merkle.frontier_root(frontier) == vec.hex(f"rfc6962.root{n}")
    cases = [k for k in vec.values if k.startswith("rfc6962.inclusion.")]
    assert len(cases) >= 5
    for name in cases:
        index, size = map(int, name.split(".")[2:])
        path = spec_hashes(vec.raw(name))
        root = vec.hex(f"rfc6962.root{size}")
        assert spec_inclusion_root(hashes[index], index, size, path) == root, name
        assert merkle.inclusion_path(hashes[:size], index) == path
        assert merkle.root_from_inclusion(hashes[index], index, size, path) == root
        assert merkle.root_from_inclusion(hashes[index], index, size, path + [root]) is None
        if index + 1 < size:
            assert merkle.root_from_inclusion(hashes[index], index + 1, size, path) != root
    cases = [k for k in vec.values if k.startswith("rfc6962.consistency.")]
    assert len(cases) >= 5
    for name in cases:
        old, new = map(int, name.split(".")[2:])
        path = spec_hashes(vec.raw(name))
        old_root, new_root = vec.hex(f"rfc6962.root{old}"), vec.hex(f"rfc6962.root{new}")
        assert merkle.consistency_path(hashes[:new], old) == path
        assert merkle.consistent(old, old_root, new, new_root, path), name
        assert not merkle.consistent(old, new_root if old != new else bytes(32), new, new_root, path)
        if path:
            assert not merkle.consistent(old, old_root, new, new_root, path[:-1] + [bytes(32)])


# -- 2. independent implementations agree with the library ------------------------------


def test_merkle_root_matches_textbook_recursion() -> None:
    rng = random.Random(6962)
    for n in range(0, 71):
        leaves = [rng.randbytes(rng.randrange(0, 40)) for _ in range(n)]
        assert merkle.merkle_root(leaves) == spec_mth(leaves), n
        leaf_hashes = [merkle.leaf_hash(d) for d in leaves]
        assert merkle.root_from_leaf_hashes(leaf_hashes) == spec_mth(leaves), n
    left, right = b"a" * 32, b"b" * 32
    assert merkle.node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


# ts (microseconds) of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z.
_DATETIME_MIN = -62_135_596_800_000_000
_DATETIME_MAX = 253_402_300_799_999_999

_BASE = {
    "int": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "str": st.text(st.characters(codec="utf-8"), max_size=40),
    "bytes": st.binary(max_size=200),
}


def _field(kind: str, nullable: bool) -> st.SearchStrategy[Any]:
    return st.none() | _BASE[kind] if nullable else _BASE[kind]


random_values = st.fixed_dictionaries(
    {name: _field(kind, nullable) for name, kind, nullable in spec_fields()}
)
_EMPTY = {"int": 0, "str": "", "bytes": b""}


@settings(max_examples=300, deadline=None)
@given(prev=st.binary(min_size=32, max_size=32), values=random_values)
@example(
    prev=bytes(32),
    values={name: None if nullable else _EMPTY[kind] for name, kind, nullable in spec_fields()},
)
def test_random_event_hash_matches_spec(prev: bytes, values: dict[str, Any]) -> None:
    ordered = tuple(values[name] for name in events.FIELD_NAMES)
    encoded = events.encode_fields(ordered)
    assert encoded == spec_canonical(values)
    assert events.decode_fields(encoded) == (ordered, len(encoded))
    assert events.event_hash(prev, encoded) == spec_event_hash(prev, values)


@settings(max_examples=40, deadline=None)
@given(
    journal_id=st.text(st.characters(codec="utf-8"), min_size=1, max_size=30),
    stream=st.from_regex(layout.STREAM_RE, fullmatch=True),
    rows=st.lists(random_values, min_size=1, max_size=12),
)
def test_random_segment_chain_matches_spec(
    journal_id: str, stream: str, rows: list[dict[str, Any]]
) -> None:
    """The columnar recomputation of a Parquet segment agrees with the spec chain."""
    genesis = events.genesis_hash(journal_id, stream)
    assert genesis == spec_genesis(journal_id, stream)
    stored, h = [], genesis
    for seq, values in enumerate(rows):
        values = {**values, "seq": seq}  # a segment holds consecutive seqs; the chain runs in seq order
        nxt = spec_event_hash(h, values)
        stored.append(StoredEvent(**values, prev_hash=h, hash=nxt))
        h = nxt
    hashes = [e.hash for e in stored]
    assert table.chain_hashes(genesis, table.events_to_table(stored)) == hashes
    data = table.write_segment(
        stored, journal_id=journal_id, stream=stream, segment=0, row_group_rows=4
    )
    read = table.read_segment(data)
    assert table.first_out_of_order(read) is None  # stored in (execution_id, seq) order
    assert table.chain_hashes(genesis, table.in_seq_order(read)) == hashes
    if all(_DATETIME_MIN <= e.ts <= _DATETIME_MAX for e in stored):
        # Outside Python's datetime range table_to_events raises OverflowError.
        assert table.table_to_events(read) == stored
    assert merkle.merkle_root(hashes) == spec_mth(hashes)
    # The Merkle tree runs in storage order, and each row group of 4 rows is a subtree.
    ordered = [e.hash for e in sorted(stored, key=lambda e: (e.execution_id.encode(), e.seq))]
    assert table.segment_merkle_root(stored) == spec_mth(ordered)
    assert read.column("hash").to_pylist() == ordered
    roots = table.decode_block_roots(read.schema.metadata[b"wormjournal.block_roots"].decode())
    assert roots == [spec_mth(ordered[i : i + 4]) for i in range(0, len(ordered), 4)]
    assert read.schema.metadata[b"wormjournal.block_rows"] == b"4"


@settings(max_examples=100, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    subject=st.text(st.characters(codec="utf-8"), max_size=60),
)
def test_random_pseudonym_matches_spec(key: bytes, subject: str) -> None:
    assert events.pseudonymize(key, subject) == spec_pseudonym(key, subject)


def test_proof_vector(vec: Vectors) -> None:
    """The proof of section 10a: event1 under checkpoint1, checked by the library and by FORMAT.md's steps."""
    from wormjournal.verify.proof import check_proof

    data = vec.block("proof.json").encode()
    key = signing_key(vec)
    got = check_proof(data, [key.verify_key])
    assert (got.seq, got.segment, got.checkpoint_size) == (1, 0, 1)
    assert got.event_hash == vec.raw("event1.hash")
    doc = json.loads(data)
    assert data == (json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode()
    assert doc["manifest"] == vec.block("manifest0.note") and doc["checkpoint"] == vec.block("checkpoint1.note")
    assert doc["key_history"] == [vec.block("keyhistory0.note")]  # the checkpoint's signer is entry 0's key
    # By hand: two leaves, so the event path is the sibling leaf hash, and the root is their node.
    leaf = lambda h: hashlib.sha256(b"\x00" + h).digest()  # noqa: E731
    assert doc["event_path"] == [leaf(vec.hex("event0.hash")).hex()] and doc["checkpoint_path"] == []
    assert hashlib.sha256(b"\x01" + leaf(vec.hex("event0.hash")) + leaf(vec.hex("event1.hash"))).digest() == vec.hex(
        "segment.merkle_root")


def test_journal_identity_vector(vec: Vectors) -> None:
    """journal.json (FORMAT.md 9): sorted keys, no spaces, a final LF; the key history pins its SHA-256."""
    data = vec.block("journal.json").encode()
    doc = json.loads(data)
    assert data == (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()
    assert doc == {"created": "2024-06-10T06:13:20Z", "format": "wormjournal/1", "journal_id": vec.text("journal_id"),
                   "key_name": vec.text("key.name"), "retention_days": 2562, "retention_mode": "COMPLIANCE"}
    assert hashlib.sha256(data).digest() == vec.hex("identity.sha256") == identity_hash(data)
    ident = JournalIdentity.decode(data)
    assert ident == JournalIdentity(vec.text("journal_id"), "2024-06-10T06:13:20Z", vec.text("key.name"),
                                    retention_mode="COMPLIANCE", retention_days=2562)
    assert ident.encode() == data


def test_rotated_key_vectors(vec: Vectors) -> None:
    key2 = signing_key(vec, "key2").verify_key
    assert raw_public(key2.public) == vec.hex("key2.public")
    assert key2.key_id == vec.text("key2.key_id") == hashlib.sha256(vec.hex("key2.public")).hexdigest()[:32]
    assert key2.key_id != vec.text("key.key_id")


def test_key_history_vectors(vec: Vectors) -> None:
    """FORMAT.md 6.1 by hand: entry 0 signed by its key; entry 1 signed by both, linked to entry 0 by hash;
    both pin journal.json; entry 1 hands stream main over to the new key from segment 1."""
    name = vec.text("key.name")
    first = vec.block("keyhistory0.note").encode()
    text0 = spec_open_note(first, name, vec.hex("key.public"))
    lines0, cutovers0 = spec_key_entry(text0)
    assert lines0["journal"] == vec.text("journal_id") and lines0["entry"] == "0"
    assert base64.b64decode(lines0["public_key"]) == vec.hex("key.public")
    assert lines0["key_id"] == vec.text("key.key_id") and lines0["prev_entry"] == "0" * 64
    assert lines0["identity"] == vec.raw("identity.sha256") and cutovers0 == {}
    assert lines0["valid_from"] == vec.text("event0.ts_text")
    second = vec.block("keyhistory1.note")
    text1, sig_block = second.split("\n\n")
    text1 += "\n"
    lines1, cutovers1 = spec_key_entry(text1)
    new_public = base64.b64decode(lines1["public_key"])
    assert lines1["journal"] == vec.text("journal_id") and lines1["entry"] == "1"
    assert new_public == vec.hex("key2.public")
    assert lines1["key_id"] == hashlib.sha256(new_public).digest()[:16].hex() == vec.text("key2.key_id")
    assert lines1["prev_entry"] == hashlib.sha256(text0.encode()).hexdigest()
    assert lines1["identity"] == lines0["identity"]
    assert cutovers1 == {vec.text("stream"): 1}
    assert events.parse_ts(lines1["valid_from"]) > events.parse_ts(lines0["valid_from"])
    sigs = sig_block.splitlines()
    assert len(sigs) == 2  # the retiring key, then the new one
    for line, public in zip(sigs, (vec.hex("key.public"), new_public), strict=True):
        assert spec_open_note((text1 + "\n" + line + "\n").encode(), name, public) == text1

    # The library writes and reads the same entries.
    journal_json = vec.block("journal.json").encode()
    key, key2 = signing_key(vec), signing_key(vec, "key2")
    assert first_entry(vec.text("journal_id"), key, vec.int("event0.ts"), journal_json) == first
    entry0, entry1 = KeyEntry.parse(text0), KeyEntry.parse(text1)
    assert (entry0.version, entry0.identity, entry0.cutovers) == (2, identity_hash(journal_json), {})
    assert (entry1.version, entry1.key_id, entry1.cutovers) == (2, vec.text("key2.key_id"), cutovers1)
    assert entry1.prev_entry == entry0.entry_hash() and entry1.text() == text1
    assert KeyEntry(vec.text("journal_id"), 1, new_public, lines1["valid_from"], entry0.entry_hash(),
                    identity_hash(journal_json), {"main": 1}).sign([key, key2]) == second.encode()


def test_key_history_checked_by_the_trust_core(vec: Vectors) -> None:
    """The trust core accepts both entries; trust flows forward from either key; journal.json is pinned."""
    key, key2 = signing_key(vec).verify_key, signing_key(vec, "key2").verify_key
    ring = key_ring(vec)
    assert ring.ok and not ring.notices and len(ring.entries) == 2 and ring.first_trusted == 0
    assert [k.key_id for k in ring.keys()] == [key.key_id, key2.key_id]
    later = key_ring(vec, trusted=[key2])
    assert later.ok and later.first_trusted == 1 and [k.key_id for k in later.keys()] == [key2.key_id]
    other = vec.block("journal.json").encode().replace(b"2562", b"2563")
    assert key_ring(vec, identity=other).identity_problems  # a journal.json the history does not pin
    stranger = SigningKey(key.name, Ed25519PrivateKey.from_private_bytes(bytes(32))).verify_key
    assert not key_ring(vec, trusted=[stranger]).ok  # no key of the history is trusted


def test_key_validity_vectors(vec: Vectors) -> None:
    """FORMAT.md 6.1: which entry's key signs a segment, by position; by the library and by the rule's text."""
    cases = {tuple(name.split(".")[1:]): vec.int(name) for name in vec.values if name.startswith("keyvalidity.")}
    assert set(cases) == {("main", "0"), ("main", "1"), ("main", "2"), ("side", "0")}
    ring = key_ring(vec)
    notes = [vec.block(f"keyhistory{n}.note") for n in (0, 1)]
    cutovers = [spec_key_entry(note[: note.index("\n\n") + 1])[1] for note in notes]
    for (stream, segment), entry in cases.items():
        assert ring.valid_entry(stream, int(segment)) == entry, (stream, segment)
        assert spec_valid_entry(cutovers, stream, int(segment)) == entry, (stream, segment)
        # A version 2 history decides by position alone: a manifest's time changes nothing.
        assert ring.valid_entry(stream, int(segment), "2000-01-01T00:00:00.000000Z") == entry
        assert ring.valid_entry(stream, int(segment), "2999-01-01T00:00:00.000000Z") == entry


def test_later_event_vectors(vec: Vectors) -> None:
    """event2 .. event7 (segments 1 and 2): canonical bytes decode by 2.2 and chain by 2.3 onto event1."""
    later = later_events(vec)
    assert list(later) == list(range(2, 8))
    prev = vec.hex("event1.hash")
    last_of = {vec.text("event0.execution_id"): 1}  # event0 and event1 are of one execution
    for seq, e in later.items():
        canonical = vec.hex(f"event{seq}.canonical")
        values = spec_decode(canonical)
        assert spec_canonical(values) == canonical
        assert values == {name: getattr(e, name) for name in events.FIELD_NAMES}
        assert values["seq"] == seq and e.prev_hash == prev
        assert hashlib.sha256(SPEC_EVENT_TAG + prev + canonical).digest() == vec.hex(f"event{seq}.hash")
        assert events.event_hash(prev, canonical) == e.hash
        assert values["exec_prev_seq"] == last_of.get(values["execution_id"])  # 2.4: the back-link
        last_of[values["execution_id"]] = seq
        assert uuid.UUID(values["event_id"]).version == 7
        events.check_event_type(values["event_type"])
        assert values["payload_codec"] == "json" and json.loads(values["payload"]) is not None
        prev = e.hash


def test_multi_block_segment_vectors(vec: Vectors) -> None:
    """Segment 1: five events of two executions in row groups of 2 rows. Storage order, the block roots
    of section 5 and the segment Merkle root, by hand and by the library (a real Parquet file of them)."""
    later = later_events(vec)
    rows = json.loads(vec.raw("segment1.rows"))
    block = vec.int("segment1.block_rows")
    assert block == 2 and sorted(rows) == list(range(2, 7))
    stored = [later[seq] for seq in range(2, 7)]
    # Section 5: rows in (execution_id as UTF-8 bytes, seq) order.
    assert rows == sorted(rows, key=lambda seq: (later[seq].execution_id.encode(), seq))
    hashes = [later[seq].hash for seq in rows]
    roots = [vec.hex(f"segment1.block_root{j}") for j in range(3)]
    assert "segment1.block_root3" not in vec.values
    assert roots == [spec_mth(hashes[i : i + block]) for i in range(0, len(hashes), block)]
    root = vec.hex("segment1.merkle_root")
    assert spec_mth_nodes(roots) == root == spec_mth(hashes)  # the blocks are complete subtrees
    node = lambda a, b: hashlib.sha256(b"\x01" + a + b).digest()  # noqa: E731
    leaves = [hashlib.sha256(b"\x00" + h).digest() for h in hashes]
    assert roots[:2] == [node(leaves[0], leaves[1]), node(leaves[2], leaves[3])] and roots[2] == leaves[4]
    assert root == node(node(roots[0], roots[1]), roots[2])  # 3 blocks: split at 2
    # The library.
    assert [e.seq for e in storage_order(stored)] == rows
    assert table.segment_merkle_root(stored) == root
    assert merkle.block_roots([merkle.leaf_hash(h) for h in hashes], block) == roots
    assert merkle.root_from_leaf_hashes(roots) == root
    data = table.write_segment(stored, journal_id=vec.text("journal_id"), stream=vec.text("stream"), segment=1,
                               row_group_rows=block)
    meta = pq.ParquetFile(pa.BufferReader(data)).metadata
    sizes = [meta.row_group(j).num_rows for j in range(meta.num_row_groups)]
    assert sizes == [2, 2, 1]
    assert table.block_layout_problem(sizes, block, len(roots), len(rows)) is None
    assert meta.metadata[b"wormjournal.block_rows"] == b"2" and meta.metadata[b"wormjournal.segment"] == b"1"
    assert meta.metadata[b"wormjournal.block_roots"] == "".join(r.hex() for r in roots).encode()
    t = table.read_segment(data)
    assert t.column("seq").to_pylist() == rows
    assert table.chain_hashes(vec.hex("event1.hash"), table.in_seq_order(t)) == [e.hash for e in stored]
    date = table.utc_date(stored[0].ts)
    assert {table.utc_date(e.ts) for e in stored} == {date}
    assert layout.segment(vec.text("stream"), date, 1) == vec.text("segment1.object")
    # Segment 2 holds event7 alone: its root is that event's leaf hash.
    assert vec.hex("segment2.merkle_root") == spec_mth([vec.hex("event7.hash")])
    assert layout.segment(vec.text("stream"), table.utc_date(later[7].ts), 2) == vec.text("segment2.object")


def test_checkpoint_over_segments_vectors(vec: Vectors) -> None:
    """Manifests 0, 1, 2 of main, linked as section 7 says, each signed by the key valid for its segment
    (6.1), and checkpoint3 over them, by hand and by the library."""
    stream, journal = vec.text("stream"), vec.text("journal_id")
    keys = {0: signing_key(vec), 1: signing_key(vec, "key2")}  # by key history entry
    publics = {0: vec.hex("key.public"), 1: vec.hex("key2.public")}
    later = later_events(vec)
    event_hash = {0: vec.hex("event0.hash"), 1: vec.hex("event1.hash")} | {seq: e.hash for seq, e in later.items()}
    roots = [vec.hex("segment.merkle_root"), vec.hex("segment1.merkle_root"), vec.hex("segment2.merkle_root")]
    objects = [vec.text("segment.object"), vec.text("segment1.object"), vec.text("segment2.object")]
    hashes: list[bytes] = []
    prev_last_seq, prev_last_hash = -1, vec.hex("genesis_hash")
    for n in range(3):
        entry = vec.int(f"keyvalidity.{stream}.{n}")
        note = vec.block(f"manifest{n}.note").encode()
        text = spec_open_note(note, vec.text("key.name"), publics[entry])
        hashes.append(hashlib.sha256(text.encode()).digest())
        assert vec.hex(f"manifest{n}.hash") == hashes[-1]
        assert layout.manifest(stream, n) == vec.text(f"manifest{n}.object")
        m = Manifest.parse(text)
        assert m.text() == text and m.manifest_hash() == hashes[-1] and m.sign(keys[entry]) == note
        assert (m.journal, m.stream, m.segment) == (journal, stream, n)
        assert m.key_id == keys[entry].verify_key.key_id
        # Section 7.1 and 10 step 3: the links to the manifest before.
        assert m.prev_manifest == (hashes[n - 1] if n else bytes(32))
        assert list(m.frontier) == spec_frontier(hashes[:n])
        assert m.first_seq == prev_last_seq + 1 and m.events == m.last_seq - m.first_seq + 1
        assert m.prev_hash == prev_last_hash and m.last_hash == event_hash[m.last_seq]
        assert (m.merkle_root, m.object) == (roots[n], objects[n])
        if n:  # the index lines a seal of these events signs (section 11a): exec-0001 began in segment 0
            chunk = [later[seq] for seq in range(m.first_seq, m.last_seq + 1)]
            began = {e.execution_id: e.ts for e in sorted(later.values(), key=lambda e: -e.seq)
                     if e.exec_prev_seq is None and e.seq < m.first_seq}
            began["exec-0001"] = stored_event(vec, 0).ts
            tables = index_build.segment_tables(events_to_table(storage_order(chunk)), n, began)
            assert m.index == tuple(sorted(
                index_build.encode(kind, tables[kind], journal_id=journal, stream=stream, first=n, last=n)[1]
                for kind in layout.INDEX_KINDS))
        prev_last_seq, prev_last_hash = m.last_seq, m.last_hash
    assert prev_last_seq == max(later)

    origin = checkpoint_origin(journal, stream)
    root = vec.hex("checkpoint3.root")
    assert spec_mth(hashes) == root
    note = vec.block("checkpoint3.note").encode()
    signer = vec.int(f"keyvalidity.{stream}.2")  # the key of the checkpoint's last segment
    text = spec_open_note(note, vec.text("key.name"), publics[signer])
    assert text == f"{origin}\n3\n{base64.b64encode(root).decode()}\n"
    cp = Checkpoint.for_manifests(origin, hashes)
    assert Checkpoint.parse(text) == cp and cp.sign(keys[signer]) == note
    assert layout.checkpoint(stream, 3) == vec.text("checkpoint3.object")
    with pytest.raises(NoteError):  # section 8: exactly three lines; an extension line is malformed
        Checkpoint.parse(text + "extension\n")
    # checkpoint3 extends checkpoint1 (section 4, consistency).
    path = merkle.consistency_path([merkle.leaf_hash(h) for h in hashes], 1)
    assert merkle.consistent(1, vec.hex("checkpoint1.root"), 3, root, path)


def _trust_core_findings(vec: Vectors, manifests: list[bytes], checkpoints: dict[int, bytes]) -> list[str]:
    """Run the trust core (section 10 steps 1 to 3, 9 and 10) over main's notes; the kinds of its findings."""
    stream, journal = vec.text("stream"), vec.text("journal_id")
    ring = key_ring(vec)
    sink = Sink(collect=True)
    chain = ManifestChain(journal, stream, sink)
    for n, data in enumerate(manifests):
        chain.add(n, open_manifest(data, layout.manifest(stream, n), n, journal_id=journal, stream=stream, ring=ring,
                                   sink=sink))
    latest = None
    for size, data in sorted(checkpoints.items()):
        name = layout.checkpoint(stream, size)
        cp = open_checkpoint(data, name, journal_id=journal, stream=stream, ring=ring, sink=sink)
        assert cp is not None
        check_checkpoint_root(cp, name, chain)
        latest = cp
    check_complete(latest, chain)
    return [f.kind for f in sink.findings]


def test_trust_core_accepts_the_vector_stream(vec: Vectors) -> None:
    """The trust core finds nothing wrong with manifests 0..2 and checkpoints 1 and 3 under keyhistory0/1,
    and finds a note signed by a key where it does not sign (6.1, key validity by position)."""
    manifests = [vec.block(f"manifest{n}.note").encode() for n in range(3)]
    checkpoints = {1: vec.block("checkpoint1.note").encode(), 3: vec.block("checkpoint3.note").encode()}
    assert _trust_core_findings(vec, manifests, checkpoints) == []
    key, key2 = signing_key(vec), signing_key(vec, "key2")

    def resigned(n: int, by: SigningKey) -> bytes:
        text = manifests[n].decode()[: manifests[n].index(b"\n\n") + 1]
        return dataclasses.replace(Manifest.parse(text), key_id=by.verify_key.key_id).sign(by)

    # The retired key after its cutover, the new key before it: the chain's links break too (other hash).
    assert "key_validity" in _trust_core_findings(vec, [manifests[0], resigned(1, key), manifests[2]], checkpoints)
    assert "key_validity" in _trust_core_findings(vec, [resigned(0, key2)] + manifests[1:], checkpoints)
    # A checkpoint over segment 2 by the key retired at segment 1.
    old = Checkpoint.parse(vec.block("checkpoint3.note").split("\n\n")[0] + "\n").sign(key)
    assert _trust_core_findings(vec, manifests, {1: checkpoints[1], 3: old}) == ["key_validity"]


def test_wal_vectors(vec: Vectors, path: str, tmp_path: Path) -> None:
    """Section 11, written from FORMAT.md with struct, zlib and hmac only: a WAL file's header, the frame of event0
    and event1 as one batch, a SEALED record. The library writes the same bytes (C and Python), reads the frame
    back (stopping at the zeros allocated after it, no torn tail) and reads the record."""
    key, jid, stream = vec.hex("wal.key"), vec.text("journal_id"), vec.text("stream")

    def text(value: str) -> bytes:  # STR (section 2.2)
        return struct.pack(">I", len(value.encode())) + value.encode()

    head = b"WJWAL\x00\x02\n" + struct.pack(">Q", 0) + vec.hex("genesis_hash")
    header = head + struct.pack(">I", zlib.crc32(head))
    assert vec.hex("wal.header") == header
    records = [(vec.hex(f"event{i}.canonical"), vec.hex(f"event{i}.hash")) for i in (0, 1)]
    body = struct.pack(">I", 2) + b"".join(struct.pack(">I", len(c) + 32) + c + h for c, h in records)
    mac = hmac.new(key, b"wormjournal:wal:v2\x00" + text(jid) + text(stream) + body, hashlib.sha256).digest()
    frame = struct.pack(">II", len(body), zlib.crc32(body + mac)) + body + mac
    assert vec.hex("wal.frame") == frame
    hashes = [vec.hex(f"manifest{n}.hash") for n in range(3)]
    state = b"wormjournal:sealed:v1\x00" + text(jid) + text(stream) + b"".join(hashes)
    assert vec.hex("wal.sealed") == hmac.new(key, state, hashlib.sha256).digest() + b"".join(hashes)

    wal_mac = wal.WalMac(key, jid, stream)
    if path == "python":
        wal_mac.native_states = None  # Chain then Frame in Python, not chain_frame in C
    drafts: Any = [types.SimpleNamespace(values=list(events.decode_fields(c)[0])) for c, _ in records]
    assert stages.Frame(wal_mac).chained(stages.Chain(lambda _: None), drafts, vec.hex("genesis_hash")) == (
        frame, records[-1][1])
    file = tmp_path / wal.wal_name(0)
    file.write_bytes(header + frame + bytes(5000))
    read = wal.read_wal(file, wal_mac)
    assert [(e.seq, e.hash) for e in read.events] == [(i, h) for i, (_, h) in enumerate(records)]
    assert read.good_end == len(header + frame) and read.torn_bytes == 0
    (tmp_path / sealer.SEALED_FILE).write_bytes(vec.hex("wal.sealed"))
    assert sealer.read_sealed_record(tmp_path, wal_mac) == hashes
    durable = struct.pack(">QQ", 0, len(header + frame))  # the file of seq 0, synced past that frame
    assert vec.hex("wal.durable") == durable + struct.pack(">I", zlib.crc32(durable))
    (tmp_path / wal.DURABLE_NAME).write_bytes(vec.hex("wal.durable"))
    assert wal.read_durable(tmp_path) == (0, len(header + frame))
    (tmp_path / wal.DURABLE_NAME).write_bytes(durable + bytes(4))  # a CRC that fails: nothing is durable
    assert wal.read_durable(tmp_path) == (0, 0)


def test_retention_policy_object_example() -> None:
    """The retention policy object of FORMAT.md section 9 decodes to what it says and encodes back byte for byte."""
    from wormjournal.retention.policy import PolicySet, RetentionPolicy

    text = format_text()
    example = re.search(r"`(\{\"format\":\"wormjournal/retention-policy/v1\".*?\})`", text)
    assert example, "FORMAT.md has no retention policy example"
    data = example[1].encode() + b"\n"
    policy = PolicySet.decode(data, where="FORMAT.md")
    assert policy == PolicySet(journal=RetentionPolicy("COMPLIANCE", 2562),
                               tenants={"acme-bank": RetentionPolicy("COMPLIANCE", 3660)}, number=1,
                               set_at="2026-11-02T09:30:00Z", set_by="dpo@example.com", reason="contract 2026-7")
    assert policy.encode() == data
    assert policy.for_tenants(["acme-bank"]) == RetentionPolicy("COMPLIANCE", 3660)
    assert policy.for_tenants(["other", None]) == RetentionPolicy("COMPLIANCE", 2562)


# -- heads and witnesses (sections 8a, 8b), from the text ---------------------------------------------------------


def spec_frontier_push(frontier: list[bytes], size: int, leaf: bytes) -> list[bytes]:
    """Section 4: push the leaf hash, then merge the last two for each trailing set bit of the old size."""
    out = [*frontier, leaf]
    while size & 1:
        right = out.pop()
        out[-1] = hashlib.sha256(b"\x01" + out[-1] + right).digest()
        size >>= 1
    return out


def spec_fold(frontier: list[bytes]) -> bytes:
    root = frontier[-1]
    for left in reversed(frontier[:-1]):
        root = hashlib.sha256(b"\x01" + left + root).digest()
    return root


def spec_head(text: str, journal_id: str) -> tuple[int, bytes, list[bytes], dict[str, tuple[int, bytes]], bytes]:
    """A head's note text (8a): its number, line 3's root, its frontier, its streams, and its head hash; asserts the
    root is that of its frontier with its own leaf."""
    lines = text.split("\n")
    assert lines[0] == f"wormjournal/{journal_id}" and lines[-1] == ""
    number = int(lines[1]) - 1
    root = base64.b64decode(lines[2], validate=True)
    assert re.fullmatch(r"time \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", lines[3])
    assert lines[4].startswith("frontier ")
    hashes = lines[4][len("frontier "):]
    frontier = [] if hashes == "-" else [bytes.fromhex(h) for h in hashes.split(" ")]
    assert len(frontier) == bin(number).count("1")
    streams = {}
    for line in lines[5:-1]:
        kind, name, size, hex_root = line.split(" ")
        assert kind == "stream" and name not in streams
        streams[name] = (int(size), bytes.fromhex(hex_root))
    assert list(streams) == sorted(streams)
    head_hash = hashlib.sha256("\n".join(lines[3:]).encode()).digest()
    leaf = hashlib.sha256(b"\x00" + head_hash).digest()
    assert spec_fold(spec_frontier_push(frontier, number, leaf)) == root
    return number, root, frontier, streams, head_hash


def test_head_vectors(vec: Vectors) -> None:
    jid = vec.text("journal_id")
    texts = []
    for n, signer in ((0, "key"), (1, "key2")):
        note = vec.block(f"head{n}.note").encode()
        key = signing_key(vec, signer)
        text = spec_open_note(note, vec.text("key.name"), raw_public(key.verify_key.public))
        number, root, frontier, streams, head_hash = spec_head(text, jid)
        assert number == n and root == vec.hex(f"head{n}.root") and head_hash == vec.hex(f"head{n}.hash")
        assert vec.text(f"head{n}.object") == f"heads/{n:012d}.note" == layout.head(n)
        head = Head.parse(text, jid)  # the library reads the same text, and writes it back signed the same
        assert head.head_hash() == head_hash and head.sign(key) == note
        texts.append((frontier, streams))
    # Head 0 names main at checkpoint1; head 1 extends the head log of head 0 and names main at checkpoint3.
    h0, h1 = vec.hex("head0.hash"), vec.hex("head1.hash")
    assert texts[0][1] == {vec.text("stream"): (1, vec.hex("checkpoint1.root"))}
    assert texts[1][0] == [hashlib.sha256(b"\x00" + h0).digest()]
    assert texts[1][1][vec.text("stream")] == (3, vec.hex("checkpoint3.root"))
    assert spec_mth([h0]) == vec.hex("head0.root") and spec_mth([h0, h1]) == vec.hex("head1.root")
    proof = [bytes.fromhex(h) for h in vec.raw("heads.consistency.1.2").split(" ")]
    assert merkle.consistent(1, vec.hex("head0.root"), 2, vec.hex("head1.root"), proof)
    # The verifier keys (signed-note vkeys): name, key hash, base64 of the type byte and the key.
    for which in ("key", "key2"):
        key = signing_key(vec, which).verify_key
        name, key_hash, blob = vec.text(f"{which}.vkey").split("+", 2)
        raw = raw_public(key.public)
        assert name == vec.text("key.name") and base64.b64decode(blob) == b"\x01" + raw
        assert bytes.fromhex(key_hash) == hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4]
        assert VerifyKey.from_vkey(vec.text(f"{which}.vkey")) == key


def test_witness_vectors(vec: Vectors) -> None:
    """cosignature/v1 (C2SP tlog-cosignature) and the add-checkpoint body (tlog-witness), from the text of 8b."""
    public = Ed25519PrivateKey.from_private_bytes(vec.hex("witness.seed")).public_key()
    raw = raw_public(public)
    name = vec.text("witness.name")
    key_hash = hashlib.sha256(name.encode() + b"\n\x04" + raw).digest()[:4]
    assert key_hash == vec.hex("witness.key_hash")
    typed = base64.b64encode(b"\x04" + raw).decode()
    assert vec.text("witness.vkey") == f"{name}+{key_hash.hex()}+{typed}"
    note, head1 = vec.block("head1.cosigned.note").encode(), vec.block("head1.note").encode()
    assert note.startswith(head1)
    text = note_text(note).decode()
    line = note[len(head1):].decode()
    m = re.fullmatch("\u2014 (\\S+) ([A-Za-z0-9+/=]+)\n", line)
    assert m and m[1] == name
    blob = base64.b64decode(m[2], validate=True)
    assert blob[:4] == key_hash and int.from_bytes(blob[4:12], "big") == vec.int("witness.time")
    signed = f"cosignature/v1\ntime {vec.int('witness.time')}\n{text}".encode()
    public.verify(blob[12:], signed)
    assert cosignatures(note, [Cosigner.from_vkey(vec.text("witness.vkey"))]) == {name: vec.int("witness.time")}
    assert vec.text("witness.object") == f"witness/heads/{2:012d}.{key_hash.hex()}.note"
    body = vec.block("witness.request").encode()
    proof = vec.raw("heads.consistency.1.2").split(" ")
    expected = "old 1\n" + "".join(base64.b64encode(bytes.fromhex(h)).decode() + "\n" for h in proof) + "\n"
    assert body == expected.encode() + head1
    assert parse_add_checkpoint(body) == (1, [bytes.fromhex(h) for h in proof], head1)
