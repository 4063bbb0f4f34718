"""Print the "Test vectors" section of FORMAT.md, computed with the library.

Deterministic: fixed ids, times, keys and payloads; Ed25519 signatures are
deterministic too. Run from the repository root and paste the output over the
section in FORMAT.md; ``tests/test_format_vectors.py`` checks that the library
still produces exactly what the document says.

    PYTHONPATH=. python scripts/format_vectors.py
"""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wormjournal import events
from wormjournal import payload as payload_mod
from wormjournal.events import StoredEvent
from wormjournal.index import build as index_build
from wormjournal.index import lgformat
from wormjournal.journal.sealer import sealed_record
from wormjournal.segments import merkle
from wormjournal.segments.cosign import Cosigner, add_checkpoint_body, cosign
from wormjournal.segments.head import Head, StreamTip
from wormjournal.segments.identity import JournalIdentity
from wormjournal.segments.keyhistory import KeyEntry, entry_name, first_entry, identity_hash
from wormjournal.segments.manifest import ZERO_HASH, Checkpoint, IndexRoot, Manifest, checkpoint_origin
from wormjournal.segments.notes import SigningKey, raw_public, split_note
from wormjournal.segments.table import build_segment, events_to_table, storage_order, utc_date
from wormjournal.storage import layout
from wormjournal.storage.wal import WalHeader, WalMac, durable_record, encode_frame
from wormjournal.trust import check_history
from wormjournal.verify.proof import Proof

JOURNAL_ID = "01J0000000000000000000TEST"
STREAM = "main"
SEED = bytes(range(32))
SUBJECT_KEY = bytes(range(0x20, 0x40))
SUBJECT_ID = "alice@example.com"
TS0 = events.parse_ts("2024-06-10T06:13:20Z")
TS1 = events.parse_ts("2024-06-10T06:13:20.123456Z")
# Illustrative: the bytes of a real Parquet file depend on the writer's version.
OBJECT_SIZE = 4096
OBJECT_SHA256 = bytes(range(0xA0, 0xC0))
OBJECT_VERSION = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"  # an S3 version id; "-" on a local store
ENC_SEQ = 7
ENC_KEY_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
ENC_CODEC = "json+aes256gcm"
ENC_KEY = bytes(range(0x40, 0x60))
ENC_NONCE = bytes(range(0x80, 0x8C))
WAL_KEY = bytes(range(0x60, 0x80))  # the WAL key of the wal.* vectors (FORMAT.md 11)
ENC_PAYLOAD = {"email": "alice@example.com", "note": "personal"}
SEAL_TIME = "2024-06-10T06:15:00.000000Z"
JOURNAL_CREATED = "2024-06-10T06:13:20Z"
RETENTION = ("COMPLIANCE", 2562)
# The rotation to the key whose seed is 20 21 .. 3f, after segment 0 of stream main was sealed: from
# segment 1 of main on, the new key signs (FORMAT.md 6.1).
ROTATION_TIME = events.parse_ts("2024-06-10T06:20:00Z")
# Segments 1 and 2 of main: (seq, event_type, execution_id, payload), appended one second apart from
# SEGMENT1_TS and SEGMENT2_TS; segment 1 is written in row groups (blocks) of SEGMENT1_BLOCK_ROWS rows.
SEGMENT1 = [
    (2, "tool_returned", "exec-0001", {"hits": 3}),
    (3, "execution_started", "exec-0002", {"input": "bye"}),
    (4, "llm_completed", "exec-0001", {"text": "done"}),
    (5, "node_started", "exec-0002", {"node": "agent"}),
    (6, "execution_completed", "exec-0001", {"status": "ok"}),
]
SEGMENT2 = [(7, "execution_completed", "exec-0002", {"status": "ok"})]
TENANTS = {"exec-0001": "acme", "exec-0002": "globex"}  # of segments 1 and 2's events
# Segments whose seal writes runs (index.writes.*) and segment counts (index.cover.*): each level, the top.
RUN_CASES = [0, 1, 5, 7, 15, 47, 63, 511, 4095, 8191]
COVER_CASES = [1, 5, 13, 50, 511, 600, 4097]
SEGMENT1_TS = events.parse_ts("2024-06-10T06:16:00Z")
SEGMENT2_TS = events.parse_ts("2024-06-10T06:26:00Z")
SEGMENT1_BLOCK_ROWS = 2
# The journal's heads (FORMAT.md 8a): head 0 after segment 0's seal, head 1 after segments 1 and 2 (and stream
# side's first seal); witness.example (seed 40 41 .. 5f) cosigns head 1 at WITNESS_TIME (8b).
HEAD_TIMES = ("2024-06-10T06:15:00.100000Z", "2024-06-10T06:30:00.100000Z")
SIDE_TIP = StreamTip("side", 1, bytes(range(0xE0, 0x100)))  # illustrative: stream side's first checkpoint
WITNESS_SEED = bytes(range(0x40, 0x60))
WITNESS_NAME = "witness.example"
WITNESS_TIME = 1718000000
# Illustrative (object_size, object_sha256, object_version) and seal time of segments 1 and 2.
SEGMENT_OBJECTS = {
    1: (6144, bytes(range(0xC0, 0xE0)), "q2nZ7vK1cX9wE4tR8yU0iO5pA3sD6fGh", "2024-06-10T06:25:00.000000Z"),
    2: (3072, bytes(range(0xE0, 0x100)), "Lm4nB7vC0xZ9aS2dF5gH8jK1qW3eR6tY", "2024-06-10T06:30:00.000000Z"),
}
# (stream, segment) whose signing key the keyvalidity vectors give: before, at and after main's cutover,
# and a stream the rotation does not name (created after it: the new key signs it from segment 0).
KEY_VALIDITY_CASES = [("main", 0), ("main", 1), ("main", 2), ("side", 0)]
# RFC 6962 leaf data of the certificate-transparency / transparency-dev test suites.
RFC6962_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
# (leaf index, tree size) and (old size, new size) of the proof vectors: edges, odd sizes, powers of two.
INCLUSION_CASES = [(0, 1), (0, 8), (5, 8), (2, 3), (6, 7), (4, 5), (3, 8)]
CONSISTENCY_CASES = [(1, 1), (1, 8), (3, 7), (4, 7), (6, 8), (2, 5), (7, 8)]


def uuid7_at(ts_micros: int, tail: int) -> str:
    """A fixed UUIDv7 with the millisecond of ``ts_micros`` and no randomness."""
    ms = f"{ts_micros // 1000:012x}"
    return f"{ms[:8]}-{ms[8:]}-7000-8000-{tail:012x}"


def _index_value(value: object) -> object:
    """Index cells as the vectors show them: timestamps as microseconds since the epoch."""
    return events.datetime_to_micros(value) if isinstance(value, dt.datetime) else value


def index_leaf_data(kind: str, table: object) -> bytes:
    """The leaf data of an index table's first row (what the leaf hash hashes after 0x00)."""
    row = index_build.sort_rows(kind, table).slice(0, 1).to_pylist()[0]  # type: ignore[arg-type]
    parts = [index_build.LEAF_TAG, kind.encode(), b"\x00"]
    for field in index_build.SCHEMAS[kind]:
        kind_of = events.Kind.STR if pa.types.is_string(field.type) else events.Kind.INT
        parts.append(events.encode_value(kind_of, _index_value(row[field.name])))
    return b"".join(parts)


def chain_events(rows: list[dict[str, object]], prev: bytes) -> list[StoredEvent]:
    """The events of ``rows`` (field values by name), hash-chained onto ``prev`` in the given (seq) order."""
    out = []
    for fields in rows:
        h = events.event_hash(prev, events.encode_fields(tuple(fields[name] for name in events.FIELD_NAMES)))
        out.append(StoredEvent(**fields, prev_hash=prev, hash=h))  # type: ignore[arg-type]
        prev = h
    return out


def plain_events(spec: list[tuple[int, str, str, object]], ts0: int,
                 last_seq_of: dict[str, int]) -> list[dict[str, object]]:
    """Field values of events with only seq, id, time, type, execution, tenant and payload given (and the
    back-link ``exec_prev_seq``, from ``last_seq_of``, which is updated)."""
    rows = []
    for k, (seq, event_type, execution_id, body) in enumerate(spec):
        ts = ts0 + k * 1_000_000
        fields: dict[str, object] = {name: None for name in events.FIELD_NAMES}
        fields.update(seq=seq, event_id=uuid7_at(ts, seq), ts=ts, event_type=event_type, execution_id=execution_id,
                      exec_prev_seq=last_seq_of.get(execution_id), payload_codec="json",
                      payload=events.canonical_json(body), tenant_id=TENANTS[execution_id])
        last_seq_of[execution_id] = seq
        rows.append(fields)
    return rows


def segment_index(stored: list[StoredEvent], segment: int, started: dict[str, int]) -> list[IndexRoot]:
    """The roots of the index objects a seal of ``stored`` as segment ``segment`` signs (section 11a: the
    segment's own; the runs a seal also writes are left out of the vectors). ``started`` holds the start of each
    execution of earlier segments, and gets this segment's."""
    tables = index_build.segment_tables(events_to_table(storage_order(stored)), segment, started)
    started.update(index_build.execution_starts(tables["executions"]))
    return [index_build.encode(kind, tables[kind], journal_id=JOURNAL_ID, stream=STREAM, first=segment, last=segment)[1]
            for kind in layout.INDEX_KINDS]


def value_text(kind: str, value: object) -> str:
    if value is None:
        return "null"
    if kind == events.Kind.INT:
        return str(value)
    if kind == events.Kind.BYTES:
        return value.hex()  # type: ignore[attr-defined]
    return _json(value)


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def main() -> None:
    key = SigningKey(f"wormjournal/{JOURNAL_ID}", Ed25519PrivateKey.from_private_bytes(SEED))
    key2 = SigningKey(f"wormjournal/{JOURNAL_ID}", Ed25519PrivateKey.from_private_bytes(SUBJECT_KEY))
    vk = key.verify_key
    genesis = events.genesis_hash(JOURNAL_ID, STREAM)
    pseudonym = events.pseudonymize(SUBJECT_KEY, SUBJECT_ID)

    payload0 = {"input": "hi"}
    payload1 = {"args": {"q": "Zürich ☃"}, "tool": "search"}
    e0 = dict(
        seq=0,
        event_id=uuid7_at(TS0, 0),
        ts=TS0,
        event_type="execution_started",
        tenant_id=None,
        execution_id="exec-0001",
        thread_id=None,
        node=None,
        step_id=None,
        parent_event_id=None,
        correlation_id=None,
        subject_id=None,
        exec_prev_seq=None,
        payload_codec="json",
        payload_key_id=None,
        payload=events.canonical_json(payload0),
    )
    e1 = dict(
        seq=1,
        event_id=uuid7_at(TS1, 1),
        ts=TS1,
        event_type="tool_called",
        tenant_id="acme",
        execution_id="exec-0001",
        thread_id="thread-7",
        node="agent",
        step_id="step-1",
        parent_event_id=e0["event_id"],
        correlation_id="corr-42",
        subject_id=pseudonym,
        exec_prev_seq=0,
        payload_codec="json",
        payload_key_id=None,
        payload=events.canonical_json(payload1),
    )
    stored: list[StoredEvent] = []
    prev = genesis
    for fields in (e0, e1):
        values = tuple(fields[name] for name in events.FIELD_NAMES)
        h = events.event_hash(prev, events.encode_fields(values))
        stored.append(StoredEvent(**fields, prev_hash=prev, hash=h))
        prev = h
    root = merkle.merkle_root([e.hash for e in stored])
    date = utc_date(TS0)
    assert utc_date(TS1) == date

    # The index objects of segment 0 (FORMAT.md, "Index"): rows and the roots the manifest signs.
    tables = index_build.segment_tables(events_to_table(storage_order(stored)), 0)
    started = index_build.execution_starts(tables["executions"])
    index_rows = {kind: [[_index_value(v) for v in row.values()] for row in tables[kind].to_pylist()]
                  for kind in layout.INDEX_KINDS}
    index_roots = [index_build.encode(kind, tables[kind], journal_id=JOURNAL_ID, stream=STREAM, first=0, last=0)[1]
                   for kind in layout.INDEX_KINDS]

    manifest = Manifest(
        journal=JOURNAL_ID,
        stream=STREAM,
        segment=0,
        first_seq=0,
        last_seq=1,
        events=2,
        prev_hash=genesis,
        last_hash=stored[-1].hash,
        merkle_root=root,
        object=layout.segment(STREAM, date, 0),
        object_size=OBJECT_SIZE,
        object_sha256=OBJECT_SHA256,
        object_version=OBJECT_VERSION,
        prev_manifest=ZERO_HASH,
        frontier=(),
        key_id=vk.key_id,
        time=SEAL_TIME,
        index=tuple(index_roots),
    )
    mhash = manifest.manifest_hash()
    checkpoint = Checkpoint.for_manifests(checkpoint_origin(JOURNAL_ID, STREAM), [mhash])

    # journal.json and the key history (FORMAT.md 6.1, version 2): entry 0 pins journal.json; entry 1 rotates
    # to key2 after segment 0 of main was sealed, signed by the retiring key, then by the new one.
    identity = JournalIdentity(JOURNAL_ID, JOURNAL_CREATED, key.name, retention_mode=RETENTION[0],
                               retention_days=RETENTION[1]).encode()
    history0 = first_entry(JOURNAL_ID, key, TS0, identity)
    history1 = KeyEntry(JOURNAL_ID, 1, raw_public(key2.verify_key.public), events.format_ts(ROTATION_TIME),
                        KeyEntry.parse(split_note(history0)[0]).entry_hash(), identity_hash(identity), {STREAM: 1}
                        ).sign([key, key2])
    ring = check_history([(entry_name(0), history0), (entry_name(1), history1)], JOURNAL_ID, key.name, [vk],
                         identity=identity)
    assert ring.ok and not ring.notices and len(ring.entries) == 2
    signers = (key, key2)  # by entry number

    # Segments 1 and 2 of main, chained onto event1 and signed by the key valid for them (key2).
    last_seq_of = {"exec-0001": 1}
    stored1 = chain_events(plain_events(SEGMENT1, SEGMENT1_TS, last_seq_of), stored[-1].hash)
    stored2 = chain_events(plain_events(SEGMENT2, SEGMENT2_TS, last_seq_of), stored1[-1].hash)
    _, table1, root1 = build_segment(stored1, journal_id=JOURNAL_ID, stream=STREAM, segment=1,
                                     row_group_rows=SEGMENT1_BLOCK_ROWS)
    rows1 = table1.column("seq").to_pylist()
    block_roots1 = merkle.block_roots([merkle.leaf_hash(h) for h in table1.column("hash").to_pylist()],
                                      SEGMENT1_BLOCK_ROWS)
    assert len(block_roots1) == 3 and root1 == merkle.root_from_leaf_hashes(block_roots1)
    manifests = [manifest]
    for n, chunk in ((1, stored1), (2, stored2)):
        size, sha256, version, seal_time = SEGMENT_OBJECTS[n]
        signer = signers[ring.valid_entry(STREAM, n)]
        manifests.append(Manifest(
            journal=JOURNAL_ID,
            stream=STREAM,
            segment=n,
            first_seq=chunk[0].seq,
            last_seq=chunk[-1].seq,
            events=len(chunk),
            prev_hash=chunk[0].prev_hash,
            last_hash=chunk[-1].hash,
            merkle_root=merkle.merkle_root([e.hash for e in storage_order(chunk)]),
            object=layout.segment(STREAM, utc_date(chunk[0].ts), n),
            object_size=size,
            object_sha256=sha256,
            object_version=version,
            prev_manifest=manifests[-1].manifest_hash(),
            frontier=tuple(merkle.frontier_of([merkle.leaf_hash(m.manifest_hash()) for m in manifests])),
            key_id=signer.verify_key.key_id,
            time=seal_time,
            index=tuple(segment_index(chunk, n, started)),
        ))
    assert manifests[1].merkle_root == root1
    checkpoint3 = Checkpoint.for_manifests(checkpoint_origin(JOURNAL_ID, STREAM),
                                           [m.manifest_hash() for m in manifests])
    checkpoint3_signer = signers[ring.valid_entry(STREAM, checkpoint3.tree_size - 1)]

    # The heads (8a) and a witness's cosignature of head 1 (8b).
    head0 = Head.first(JOURNAL_ID, HEAD_TIMES[0], (StreamTip(STREAM, 1, checkpoint.root_hash),))
    head1 = head0.next(HEAD_TIMES[1], (StreamTip(STREAM, 3, checkpoint3.root_hash), SIDE_TIP))
    head_signers = (signers[ring.valid_entry(STREAM, 0)], signers[ring.valid_entry(STREAM, 2)])
    head_notes = [h.sign(k) for h, k in zip((head0, head1), head_signers, strict=True)]
    witness_key = Ed25519PrivateKey.from_private_bytes(WITNESS_SEED)
    witness = Cosigner(WITNESS_NAME, witness_key.public_key())
    cosigned1 = head_notes[1] + cosign(witness_key, WITNESS_NAME, head1.text(), WITNESS_TIME).encode()
    head_leaves = [merkle.leaf_hash(h.head_hash()) for h in (head0, head1)]
    head_proof = merkle.consistency_path(head_leaves, 1)
    assert head_proof == merkle.consistency_path_from(head1.frontier, 1, head_leaves[1:])

    out: list[str] = []
    line = out.append
    line("```vectors")
    line(f'journal_id: "{JOURNAL_ID}"')
    line(f'stream: "{STREAM}"')
    line(f"genesis_hash: {genesis.hex()}")
    line("")
    line(f"key.seed: {SEED.hex()}")
    line(f"key.public: {raw_public(vk.public).hex()}")
    line(f'key.name: "{key.name}"')
    line(f'key.key_id: "{vk.key_id}"')
    line(f"key.note_key_hash: {vk.note_hash.hex()}")
    line(f'key.object: "{layout.public_key(vk.key_id)}"')
    line("")
    line(f"key2.seed: {SUBJECT_KEY.hex()}")
    line(f"key2.public: {raw_public(key2.verify_key.public).hex()}")
    line(f'key2.key_id: "{key2.verify_key.key_id}"')
    line(f"identity.sha256: {identity_hash(identity).hex()}")
    for stream, segment in KEY_VALIDITY_CASES:
        line(f"keyvalidity.{stream}.{segment}: {ring.valid_entry(stream, segment)}")
    line("")
    line(f"subject.key: {SUBJECT_KEY.hex()}")
    line(f'subject.id: "{SUBJECT_ID}"')
    line(f'subject.pseudonym: "{pseudonym}"')
    for i, e in enumerate(stored):
        line("")
        for name, kind, _ in events.FIELDS:
            line(f"event{i}.{name}: {value_text(kind, getattr(e, name))}")
        line(f'event{i}.ts_text: "{events.format_ts(e.ts)}"')
        line(f"event{i}.payload_json: {_json((payload0, payload1)[i])}")
        line(f"event{i}.prev_hash: {e.prev_hash.hex()}")
        line(f"event{i}.canonical: {events.encode_fields(e.field_values()).hex()}")
        line(f"event{i}.hash: {e.hash.hex()}")
    line("")
    line(f'segment.date: "{date}"')
    line(f'segment.object: "{manifest.object}"')
    line(f"segment.merkle_root: {root.hex()}")
    for r in sorted(index_roots):
        line(f"index.{r.kind}.rows: {_json(index_rows[r.kind])}")
        if index_rows[r.kind]:
            line(f"index.{r.kind}.leaf0: {index_leaf_data(r.kind, tables[r.kind]).hex()}")
        line(f"index.{r.kind}.root: {r.root.hex()}")
    # Segment 1's tenants rows (segment 0's execution has no tenant on its first event): exec-0001 began in
    # segment 0, so its start is event0's ts.
    tables1 = index_build.segment_tables(events_to_table(storage_order(stored1)), 1,
                                         index_build.execution_starts(tables["executions"]))
    rows1_tenants = [[_index_value(v) for v in row.values()] for row in tables1["tenants"].to_pylist()]
    root1_tenants = index_build.encode("tenants", tables1["tenants"], journal_id=JOURNAL_ID, stream=STREAM, first=1,
                                       last=1)[1]
    line(f"index1.tenants.rows: {_json(rows1_tenants)}")
    line(f"index1.tenants.leaf0: {index_leaf_data('tenants', tables1['tenants']).hex()}")
    line(f"index1.tenants.root: {root1_tenants.root.hex()}")
    # Which objects a seal writes and which a lookup reads (section 11a, "Runs" and "Cover").
    for n in RUN_CASES:
        line(f"index.writes.{n}: {' '.join(f'{a}-{b}' for a, b in index_build.ranges_ending_at(n))}")
    for count in COVER_CASES:
        line(f"index.cover.{count}: {' '.join(f'{a}-{b}' for a, b in index_build.cover(count))}")
    # An encrypted payload (section 3.1), standalone: fixed data key and nonce.
    enc_plain = events.canonical_json(ENC_PAYLOAD)
    enc_aad = payload_mod.payload_aad(JOURNAL_ID, STREAM, ENC_SEQ, ENC_KEY_ID, ENC_CODEC)
    enc_stored = ENC_NONCE + AESGCM(ENC_KEY).encrypt(ENC_NONCE, enc_plain, enc_aad)
    line(f"encrypted.seq: {ENC_SEQ}")
    line(f'encrypted.payload_key_id: "{ENC_KEY_ID}"')
    line(f'encrypted.payload_codec: "{ENC_CODEC}"')
    line(f"encrypted.data_key: {ENC_KEY.hex()}")
    line(f"encrypted.nonce: {ENC_NONCE.hex()}")
    line(f"encrypted.plaintext: {enc_plain.hex()}")
    line(f"encrypted.aad: {enc_aad.hex()}")
    line(f"encrypted.payload: {enc_stored.hex()}")
    # The same payload stored apart (section 3.5): the event holds SHA-256 and length, the object the bytes.
    apart_digest, apart_ref = payload_mod.make_ref(enc_stored)
    line(f'apart.payload_codec: "{ENC_CODEC}{payload_mod.STORED_APART}"')
    line(f'apart.object: "{layout.payload(STREAM, apart_digest)}"')
    line(f"apart.payload: {apart_ref.hex()}")
    # A LangGraph savers' pending-writes payload (section 3.4, format 2): two typed values in its body.
    saver = lgformat.writes_payload("", "1ef0-cp", "task-1", "~__pregel_pull, agent",
                                    [(0, "messages", ("msgpack", b"\x91\xa2hi")), (1, "count", ("json", b"3"))])
    line(f"saver.writes.payload: {saver.hex()}")
    line(f'manifest0.object: "{layout.manifest(STREAM, 0)}"')
    line(f"manifest0.hash: {mhash.hex()}")
    line(f'checkpoint1.origin: "{checkpoint.origin}"')
    line(f'checkpoint1.object: "{layout.checkpoint(STREAM, 1)}"')
    line(f"checkpoint1.root: {checkpoint.root_hash.hex()}")
    line("")
    for e in stored1 + stored2:
        line(f"event{e.seq}.canonical: {events.encode_fields(e.field_values()).hex()}")
        line(f"event{e.seq}.hash: {e.hash.hex()}")
    line(f'segment1.object: "{manifests[1].object}"')
    line(f"segment1.block_rows: {SEGMENT1_BLOCK_ROWS}")
    line(f"segment1.rows: {_json(rows1)}")
    for j, r in enumerate(block_roots1):
        line(f"segment1.block_root{j}: {r.hex()}")
    line(f"segment1.merkle_root: {root1.hex()}")
    line(f'segment2.object: "{manifests[2].object}"')
    line(f"segment2.merkle_root: {manifests[2].merkle_root.hex()}")
    for m in manifests[1:]:
        line(f'manifest{m.segment}.object: "{layout.manifest(STREAM, m.segment)}"')
        line(f"manifest{m.segment}.hash: {m.manifest_hash().hex()}")
    # What a run over segments 0-1 claims in its footer (section 11a, "Manifest hashes"): with the cover of 3
    # segments (0-1, then 2) and the manifests 1 and 2, the checkpoint's root.
    claim = b"".join(index_build.run_manifests([m.manifest_hash() for m in manifests], 0, 1)).hex()
    line(f"index.manifests.run_0_1: {claim}")
    line(f'checkpoint3.object: "{layout.checkpoint(STREAM, checkpoint3.tree_size)}"')
    line(f"checkpoint3.root: {checkpoint3.root_hash.hex()}")
    line("")
    # The heads (section 8a): their objects, head hashes and head log roots; the consistency proof of the head log
    # from size 1 to 2; the journal key's verifier key (what a witness's --log takes) and witness.example's.
    line(f'key.vkey: "{key.verify_key.vkey()}"')
    line(f'key2.vkey: "{key2.verify_key.vkey()}"')
    for h in (head0, head1):
        line(f'head{h.number}.object: "{layout.head(h.number)}"')
        line(f"head{h.number}.hash: {h.head_hash().hex()}")
        line(f"head{h.number}.root: {h.checkpoint().root_hash.hex()}")
    line(f"heads.consistency.1.2: {' '.join(x.hex() for x in head_proof)}")
    line(f"witness.seed: {WITNESS_SEED.hex()}")
    line(f'witness.name: "{WITNESS_NAME}"')
    line(f"witness.key_hash: {witness.key_hash.hex()}")
    line(f'witness.vkey: "{witness.vkey()}"')
    line(f"witness.time: {WITNESS_TIME}")
    line(f'witness.object: "{layout.cosigned(None, 2, witness.key_hash)}"')
    line("")
    # The write-ahead log (section 11): a file's header, one frame of event0 and event1 appended as one batch, and
    # the SEALED record of a writer that sealed segments 0 to 2, and the DURABLE record once that frame is synced.
    wal_mac = WalMac(WAL_KEY, JOURNAL_ID, STREAM)
    line(f"wal.key: {WAL_KEY.hex()}")
    line(f"wal.header: {WalHeader(0, genesis).encode().hex()}")
    records = [(events.encode_fields(e.field_values()), e.hash) for e in stored]
    line(f"wal.frame: {encode_frame(records, wal_mac).hex()}")
    line(f"wal.sealed: {sealed_record(wal_mac, [m.manifest_hash() for m in manifests]).hex()}")
    frame = encode_frame(records, wal_mac)
    line(f"wal.durable: {durable_record(0, len(WalHeader(0, genesis).encode()) + len(frame)).hex()}")
    line("")
    for i, leaf in enumerate(RFC6962_LEAVES):
        line(f"rfc6962.leaf{i}: {leaf.hex()}")
    for n in range(len(RFC6962_LEAVES) + 1):
        line(f"rfc6962.root{n}: {merkle.merkle_root(RFC6962_LEAVES[:n]).hex()}")
    hashes = [merkle.leaf_hash(d) for d in RFC6962_LEAVES]
    for n in range(len(RFC6962_LEAVES) + 1):
        line(f"rfc6962.frontier{n}: {' '.join(h.hex() for h in merkle.frontier_of(hashes[:n])) or '-'}")
    for index, size in INCLUSION_CASES:
        path = merkle.inclusion_path(hashes[:size], index)
        line(f"rfc6962.inclusion.{index}.{size}: {' '.join(h.hex() for h in path) or '-'}")
    for old, new in CONSISTENCY_CASES:
        path = merkle.consistency_path(hashes[:new], old)
        line(f"rfc6962.consistency.{old}.{new}: {' '.join(h.hex() for h in path) or '-'}")
    line("```")
    blocks = {
        "event0.fields": "\n".join(
            f"{name}: {events.encode_value(kind, getattr(stored[0], name)).hex()}"
            for name, kind, _ in events.FIELDS
        )
        + "\n",
        "key.pem": vk.pem().decode(),
        "journal.json": identity.decode(),
        "manifest0.note": manifest.sign(key).decode(),
        "checkpoint1.note": checkpoint.sign(key).decode(),
        # FORMAT.md 6.1: entry 0 of the key history (signed by its own key) and entry 1, a rotation to the key
        # whose seed is 20 21 .. 3f, signed by both.
        "keyhistory0.note": history0.decode(),
        "keyhistory1.note": history1.decode(),
        "manifest1.note": manifests[1].sign(signers[ring.valid_entry(STREAM, 1)]).decode(),
        "manifest2.note": manifests[2].sign(signers[ring.valid_entry(STREAM, 2)]).decode(),
        "checkpoint3.note": checkpoint3.sign(checkpoint3_signer).decode(),
        "head0.note": head_notes[0].decode(),
        "head1.note": head_notes[1].decode(),
        # What witness.example stores for head 1 (8b), and the add-checkpoint request that asked for it.
        "head1.cosigned.note": cosigned1.decode(),
        "witness.request": add_checkpoint_body(1, head_proof, head_notes[1]).decode(),
        "proof.json": Proof(
            event={name: getattr(stored[1], name) for name in events.FIELD_NAMES},
            prev_hash=stored[1].prev_hash,
            leaf_index=1,
            event_path=tuple(merkle.inclusion_path([merkle.leaf_hash(e.hash) for e in stored], 1)),
            manifest=manifest.sign(key),
            checkpoint=checkpoint.sign(key),
            checkpoint_path=(),
            key_history=(history0,),
        ).to_json().decode(),
    }
    for name, body in blocks.items():
        line("")
        line(f"```vector {name}")
        line(body + "```")
    # An empty byte string is written as nothing after the colon (no trailing space).
    print("\n".join(text.rstrip(" ") for text in out))


if __name__ == "__main__":
    main()
