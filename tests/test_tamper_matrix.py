"""The tamper matrix: one table row per attack on a sealed store, each detected with the right finding.

Every case starts from its own copy of one freshly built journal (stream ``main``, 5 segments
of 9 events, row groups of 4 rows: segment n holds seq 9n..9n+8, checkpoints of tree size
1..5). A case applies its attack to the copy, as an attacker with write access to the
directory would (stored files are read-only: they are chmod u+w first); the attacks marked
"stolen key" also re-sign with the journal's real private key. A case may bring a saved
checkpoint or manifest (taken *before* the attack) that the auditor verifies against
(FORMAT.md 10, "Since"). The auditor always trusts only the journal's first public key.

The second table is the control: a clean journal gives no finding, however it is verified.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wormjournal import Reader
from wormjournal.events import FIELDS, StoredEvent, encode_fields, event_hash, format_ts
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal.keys import key_name, load_keys
from wormjournal.segments import merkle
from wormjournal.segments.keyhistory import KeyEntry, entry_name, first_entry
from wormjournal.segments.manifest import ZERO_HASH, Checkpoint, Manifest, checkpoint_origin
from wormjournal.segments.notes import SigningKey, raw_public, split_note
from wormjournal.segments.table import (
    events_to_table,
    read_segment,
    segment_merkle_root,
    table_to_events,
    write_segment,
)
from wormjournal.storage import layout
from wormjournal.verify import Finding, VerifyReport, verify_store
from wormjournal.verify.proof import ProofError, check_proof, make_proof

from conftest import (
    BASE_TS,
    History,
    StorePaths,
    build_history,
    forge_seal,
    make_writable,
    overwrite,
    resign_stream_heads,
    rewrite_parquet,
)

STREAM = "main"
SEGMENTS = 5
PER_SEGMENT = 9
ROWS = 4  # rows per row group
CFG = JournalConfig(seal_max_age_seconds=None, row_group_rows=ROWS)


def seq_of(segment: int, k: int) -> int:
    """The seq of the k-th event (in seq order) of a segment."""
    return segment * PER_SEGMENT + k


# -- fixtures: one template journal per module, a private copy per case -------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> History:
    root = tmp_path_factory.mktemp("template")
    return build_history(StorePaths(root / "store", root / "keys"), segments=SEGMENTS, events_per_segment=PER_SEGMENT,
                         config=CFG)


@pytest.fixture
def fresh(template: History, tmp_path: Path) -> History:
    """A copy of the template journal (store and key directory) that this test may attack."""
    paths = StorePaths(tmp_path / "store", tmp_path / "keys")
    shutil.copytree(template.paths.store, paths.store, symlinks=True)
    shutil.copytree(template.paths.keys, paths.keys, symlinks=True)
    return dataclasses.replace(template, paths=paths, manifests=list(template.manifests))


# -- attack tools ----------------------------------------------------------------------------------------------


def verify(h: History, since: bytes | None = None, **kw: Any) -> VerifyReport:
    return verify_store(h.store, public_keys=[h.verify_key], since=since, **kw)


def stolen_key(h: History) -> SigningKey:
    """The journal's real private signing key, as a thief who copied the key directory has it."""
    return load_keys(h.paths.keys, h.journal_id)[0]


def forged_key(h: History) -> SigningKey:
    """An attacker's own Ed25519 key under this journal's note key name."""
    return SigningKey.generate(key_name(h.journal_id))


def remove(h: History, *paths: Path) -> None:
    for path in paths:
        make_writable(path)
        path.unlink()


def events_of(h: History, n: int) -> list[StoredEvent]:
    """Segment n's events in seq order."""
    return table_to_events(read_segment(h.segment_path(n).read_bytes()))


def replace_rows(h: History, n: int, edit: Callable[[list[StoredEvent]], list[StoredEvent]]) -> None:
    """Rewrite segment n's rows (in seq order) through ``edit``, stored back in (execution_id, seq) order."""
    rewrite_parquet(h.segment_path(n),
                    lambda t: events_to_table(sorted(edit(table_to_events(t)), key=lambda e: (e.execution_id, e.seq))))


def rewrite_row_groups(path: Path, transform: Callable[[pa.Table], pa.Table]) -> None:
    """Rewrite a segment in place keeping its footer metadata and its row groups of ROWS rows."""
    table = pq.read_table(path)
    new = transform(table).replace_schema_metadata(table.schema.metadata)
    make_writable(path)
    pq.write_table(new, path, compression="zstd", row_group_size=ROWS)


def rechain(events: list[StoredEvent], prev: bytes) -> list[StoredEvent]:
    """Recompute prev_hash and hash of ``events`` (in seq order) onto ``prev``: a valid chain."""
    out = []
    for e in events:
        h = event_hash(prev, encode_fields(e.field_values()))
        out.append(dataclasses.replace(e, prev_hash=prev, hash=h))
        prev = h
    return out


def reseal(h: History, first: int, new_events: dict[int, list[StoredEvent]] | None = None,
           edit: Callable[[int, Manifest], Manifest] | None = None) -> list[bytes]:
    """Stolen key: re-sign manifests ``first``.. with correct links and frontiers, and every checkpoint
    that covers them. ``new_events`` replaces segments' rows (new objects, seq ranges, roots);
    ``edit`` alters a manifest just before it is signed (after its links were set). Returns the
    new manifest hashes of the whole stream."""
    key = stolen_key(h)
    new_events = new_events or {}
    hashes = [m.manifest_hash() for m in h.manifests[:first]]
    for n in range(first, len(h.manifests)):
        m = h.manifests[n]
        if n in new_events:
            ev = new_events[n]
            data = write_segment(ev, journal_id=h.journal_id, stream=STREAM, segment=n, row_group_rows=ROWS)
            overwrite(h.segment_path(n), data)
            m = dataclasses.replace(m, first_seq=ev[0].seq, last_seq=ev[-1].seq, events=len(ev),
                                    prev_hash=ev[0].prev_hash, last_hash=ev[-1].hash,
                                    merkle_root=segment_merkle_root(ev), object_size=len(data),
                                    object_sha256=hashlib.sha256(data).digest())
        m = dataclasses.replace(m, prev_manifest=hashes[-1] if n else ZERO_HASH,
                                frontier=tuple(merkle.frontier_of([merkle.leaf_hash(x) for x in hashes])))
        if edit is not None:
            m = edit(n, m)
        overwrite(h.manifest_path(n), m.sign(key))
        h.manifests[n] = m
        hashes.append(m.manifest_hash())
    origin = checkpoint_origin(h.journal_id, STREAM)
    for size in range(first + 1, len(hashes) + 1):
        if h.checkpoint_path(size).exists():
            overwrite(h.checkpoint_path(size), Checkpoint.for_manifests(origin, hashes[:size]).sign(key))
    resign_stream_heads(h.paths.store, h.journal_id, STREAM, key, hashes)  # and the heads that name them
    return hashes


def rotate(h: History) -> None:
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        j.rotate_key()


def seal_one(h: History, tag: str) -> None:
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        for i in range(3):
            j.append("node_completed", f"run-{tag}", {"i": i})
        j.seal()


def saved_checkpoint(size: int) -> Callable[[History], bytes]:
    return lambda h: h.checkpoint_path(size).read_bytes()


def saved_manifest(n: int) -> Callable[[History], bytes]:
    return lambda h: h.manifest_path(n).read_bytes()


def cp_name(size: int) -> str:
    return layout.checkpoint(STREAM, size)


def head_path(h: History, n: int) -> Path:
    return h.paths.store / layout.head(n)


# -- the attacks -----------------------------------------------------------------------------------------------


def payload_byte_changed(h: History) -> None:
    def edit(ev: list[StoredEvent]) -> list[StoredEvent]:
        e = ev[2]
        ev[2] = dataclasses.replace(e, payload=e.payload[:-1] + bytes([e.payload[-1] ^ 0x01]))
        return ev

    replace_rows(h, 1, edit)


def event_hash_changed(h: History) -> None:
    def edit(ev: list[StoredEvent]) -> list[StoredEvent]:
        ev[2] = dataclasses.replace(ev[2], hash=hashlib.sha256(b"forged").digest())
        return ev

    replace_rows(h, 2, edit)


def tenant_changed(h: History) -> None:
    def edit(ev: list[StoredEvent]) -> list[StoredEvent]:
        ev[5] = dataclasses.replace(ev[5], tenant_id="tenant-evil")
        return ev

    replace_rows(h, 2, edit)


def row_deleted(h: History) -> None:
    replace_rows(h, 1, lambda ev: ev[:4] + ev[5:])


def row_inserted(h: History) -> None:
    replace_rows(h, 1, lambda ev: ev[:4] + [ev[3]] + ev[4:])


def rows_reordered_in_row_group(h: History) -> None:
    """Storage rows 0 and 1 of segment 2 (both in row group 0, both of run-alpha) swapped."""

    def transform(t: pa.Table) -> pa.Table:
        order = list(range(t.num_rows))
        order[0], order[1] = order[1], order[0]
        return t.take(order)

    rewrite_row_groups(h.segment_path(2), transform)


def parquet_truncated(h: History) -> None:
    data = h.segment_path(1).read_bytes()
    overwrite(h.segment_path(1), data[: len(data) // 2])


def block_root_changed(h: History) -> None:
    def transform(t: pa.Table) -> pa.Table:
        meta = dict(t.schema.metadata)
        roots = meta[b"wormjournal.block_roots"].decode()
        meta[b"wormjournal.block_roots"] = (("0" if roots[0] != "0" else "1") + roots[1:]).encode()
        return t.replace_schema_metadata(meta)

    path = h.segment_path(1)
    table = transform(pq.read_table(path))
    make_writable(path)
    pq.write_table(table, path, compression="zstd", row_group_size=ROWS)


def segment_object_deleted(h: History) -> None:
    remove(h, h.segment_path(1))


def object_replaced_by_other_segments_copy(h: History) -> None:
    overwrite(h.segment_path(1), h.segment_path(2).read_bytes())


def segment_objects_swapped(h: History) -> None:
    one, two = h.segment_path(1).read_bytes(), h.segment_path(2).read_bytes()
    overwrite(h.segment_path(1), two)
    overwrite(h.segment_path(2), one)


def manifest_deleted(h: History) -> None:
    remove(h, h.manifest_path(1))


def middle_segment_and_manifest_deleted(h: History) -> None:
    remove(h, h.segment_path(2), h.manifest_path(2))


def last_segment_and_manifest_deleted(h: History) -> None:
    remove(h, h.segment_path(4), h.manifest_path(4))


def last_segment_manifest_checkpoint_deleted(h: History) -> None:
    """... and the head written after that seal: the heads left name 4 segments."""
    remove(h, h.segment_path(4), h.manifest_path(4), h.checkpoint_path(5), head_path(h, 4))


def last_segment_manifest_checkpoint_deleted_head_kept(h: History) -> None:
    remove(h, h.segment_path(4), h.manifest_path(4), h.checkpoint_path(5))


def checkpoint_rolled_back(h: History) -> None:
    """The last two segments, their manifests, the checkpoints that covered them and the heads that named them."""
    remove(h, h.segment_path(3), h.segment_path(4), h.manifest_path(3), h.manifest_path(4),
           h.checkpoint_path(4), h.checkpoint_path(5), head_path(h, 3), head_path(h, 4))


def latest_checkpoint_deleted(h: History) -> None:
    remove(h, h.checkpoint_path(5))


def all_checkpoints_deleted(h: History) -> None:
    remove(h, *(h.checkpoint_path(size) for size in range(1, SEGMENTS + 1)))


def checkpoint_renamed(h: History) -> None:
    overwrite(h.checkpoint_path(5), h.checkpoint_path(3).read_bytes())


def manifest_signature_broken(h: History) -> None:
    data = h.manifest_path(1).read_bytes()
    text, sig = data.rsplit(b" ", 1)  # the base64 of the signature line
    i = len(sig) // 2
    flipped = sig[:i] + (b"B" if sig[i:i + 1] != b"B" else b"C") + sig[i + 1:]
    overwrite(h.manifest_path(1), text + b" " + flipped)


def manifest_edited_signature_kept(h: History) -> None:
    data = h.manifest_path(1).read_bytes()
    root = h.manifests[1].merkle_root.hex().encode()
    assert data.count(root) == 1
    overwrite(h.manifest_path(1), data.replace(root, root[:-1] + (b"0" if root[-1:] != b"0" else b"1")))


def manifest_resigned_with_another_key(h: History) -> None:
    forged = forged_key(h)
    overwrite(h.manifest_path(1), dataclasses.replace(h.manifests[1], key_id=forged.verify_key.key_id).sign(forged))


def manifests_swapped(h: History) -> None:
    one, two = h.manifest_path(1).read_bytes(), h.manifest_path(2).read_bytes()
    overwrite(h.manifest_path(1), two)
    overwrite(h.manifest_path(2), one)


def stray_manifest_name(h: History) -> None:
    (h.paths.store / layout.manifests_prefix(STREAM) / "notes.txt").write_bytes(b"hello\n")


def checkpoint_signed_by_another_key(h: History) -> None:
    cp = Checkpoint(checkpoint_origin(h.journal_id, STREAM), 2, hashlib.sha256(b"not the root").digest())
    overwrite(h.checkpoint_path(2), cp.sign(forged_key(h)))


def checkpoint_wrong_root_stolen_key(h: History) -> None:
    cp = Checkpoint(checkpoint_origin(h.journal_id, STREAM), 2, hashlib.sha256(b"not the root").digest())
    overwrite(h.checkpoint_path(2), cp.sign(stolen_key(h)))


def stray_segment_object(h: History) -> None:
    date = layout.parse_segment(h.manifests[4].object)[1]  # type: ignore[index]
    h.store.put(layout.segment(STREAM, date, SEGMENTS), h.segment_path(4).read_bytes())


def history_rewritten_latest_checkpoint_resigned(h: History) -> None:
    """Stolen key: segments 1..4 rewritten with new payloads, re-chained and re-signed with every checkpoint;
    then the older checkpoints 2..4 are put back as they were, so only the latest one is forged."""
    old = {size: h.checkpoint_path(size).read_bytes() for size in (2, 3, 4)}
    rewrite_from(h, 1)
    for size, data in old.items():
        overwrite(h.checkpoint_path(size), data)


def rewrite_from(h: History, first: int) -> None:
    """Stolen key: new payloads for every plaintext event from segment ``first`` on, re-chained, re-sealed."""
    events = [e for n in range(first, SEGMENTS) for e in events_of(h, n)]
    events = [dataclasses.replace(e, payload=b'{"rewritten":true,"seq":%d}' % e.seq, payload_codec="json")
              if e.payload_key_id is None else e for e in events]
    events = rechain(events, h.manifests[first].prev_hash)
    reseal(h, first, {n: [e for e in events if h.manifests[n].first_seq <= e.seq <= h.manifests[n].last_seq]
                      for n in range(first, SEGMENTS)})


def tail_rewritten_and_resigned(h: History) -> None:
    """Stolen key: the last two segments rewritten with new events, new manifests (links, frontiers
    correct), checkpoints 4 and 5 re-signed. The store alone is perfectly consistent."""
    rewrite_from(h, 3)


def event_duplicated_across_segments(h: History) -> None:
    """The last event of segment 1 copied into segment 2's object."""
    last = events_of(h, 1)[-1]
    replace_rows(h, 2, lambda ev: [last] + ev)


def event_duplicated_and_resigned(h: History) -> None:
    """Stolen key: segment 2 re-sealed to start with segment 1's last event again (seq 17 twice)."""
    dup = events_of(h, 1)[-1]
    reseal(h, 2, {2: [dup] + events_of(h, 2)})  # seq 17..26; the chain inside the segment still holds


def manifest_frontier_wrong(h: History) -> None:
    """Stolen key: manifest 3's frontier line names a wrong subtree root; everything after it is re-signed
    consistently (links, frontiers, checkpoints), so the frontier check alone can tell."""

    def edit(n: int, m: Manifest) -> Manifest:
        return dataclasses.replace(m, frontier=(m.frontier[0], hashlib.sha256(b"forged").digest())) if n == 3 else m

    reseal(h, 3, edit=edit)


def manifest_time_unparseable(h: History) -> None:
    """Stolen key: the last manifest re-signed with a time that is not RFC 3339."""
    reseal(h, 4, edit=lambda n, m: dataclasses.replace(m, time="yesterday"))


def old_key_signs_after_rotation(h: History) -> None:
    """The old key, stolen before the rotation, seals a segment after it (by hand: a writer refuses)."""
    stolen = stolen_key(h)
    rotate(h)
    forge_seal(h.store, stolen, [("node_completed", "run-thief", {"i": i}) for i in range(3)])


def rotated(h: History) -> None:
    rotate(h)
    seal_one(h, "after-rotation")


def key_history_entry_removed(h: History) -> None:
    rotated(h)
    remove(h, h.paths.store / entry_name(0))


def key_history_entry_altered(h: History) -> None:
    rotated(h)
    path = h.paths.store / entry_name(1)
    data = path.read_bytes()
    entry = KeyEntry.parse(split_note(data)[0])
    later = format_ts(entry.valid_from_micros - 1_000_000)  # still after entry 0, still canonical
    overwrite(path, data.replace(entry.valid_from.encode(), later.encode()))


def key_history_entry_bad_time(h: History) -> None:
    """An attacker appends a history entry for their own key, whose valid_from is not a time."""
    forged = forged_key(h)
    prev = KeyEntry.parse(split_note((h.paths.store / entry_name(0)).read_bytes())[0])
    entry = KeyEntry(h.journal_id, 1, raw_public(forged.verify_key.public), "garbage", prev.entry_hash())
    (h.paths.store / entry_name(1)).write_bytes(entry.sign([forged]))


def no_attack(h: History) -> None:
    pass


def since_signed_by_untrusted_key(h: History) -> bytes:
    cp = Checkpoint.parse(split_note(h.checkpoint_path(5).read_bytes())[0])
    return cp.sign(forged_key(h))


# -- inclusion proofs: the "finding" is a ProofError from check_proof ---------------------------------------


def _proof_findings(h: History, data: bytes) -> list[Finding]:
    try:
        check_proof(data, [h.verify_key])
    except ProofError as e:
        return [Finding("proof_error", str(e))]
    return []


def proof_event_altered(h: History, since: bytes | None) -> list[Finding]:
    p = make_proof(Reader(h.store, public_keys=[h.verify_key]), seq=12)
    forged = dataclasses.replace(p, event={**p.event, "payload": b'{"approved":true}', "payload_codec": "json"})
    return _proof_findings(h, forged.to_json())


def proof_self_signed(h: History, since: bytes | None) -> list[Finding]:
    """A fully consistent proof of a fake event: the manifest and checkpoint forged and signed by the
    attacker's own key under the journal's key name. Only the trusted key tells."""
    p = make_proof(Reader(h.store, public_keys=[h.verify_key]), seq=12)
    forger = forged_key(h)
    event = {**p.event, "payload": b'{"approved":true}', "payload_codec": "json"}
    leaf = event_hash(p.prev_hash, encode_fields(tuple(event[name] for name, _, _ in FIELDS)))
    m = Manifest.parse(split_note(p.manifest)[0])
    m = dataclasses.replace(m, key_id=forger.verify_key.key_id,
                            merkle_root=merkle.root_from_inclusion(merkle.leaf_hash(leaf), p.leaf_index, m.events,
                                                                   p.event_path))
    cp = Checkpoint.parse(split_note(p.checkpoint)[0])
    cp = dataclasses.replace(cp, root_hash=merkle.root_from_inclusion(
        merkle.leaf_hash(m.manifest_hash()), m.segment, cp.tree_size, p.checkpoint_path))
    forged = dataclasses.replace(p, event=event, manifest=m.sign(forger), checkpoint=cp.sign(forger),
                                 key_history=(first_entry(h.journal_id, forger, 0, b"{}"),)).to_json()
    assert check_proof(forged, [forger.verify_key]).seq == 12  # the forgery is consistent in itself
    return _proof_findings(h, forged)


# -- the table ---------------------------------------------------------------------------------------------------

Where = dict[str, Any]


def F(kind: str, **where: Any) -> tuple[str, Where]:  # noqa: N802 - reads as a table
    return kind, where


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    attack: Callable[[History], None]
    expect: tuple[tuple[str, Where], ...]
    since: Callable[[History], bytes] | None = None  # the auditor's saved point, taken before the attack
    plain_ok: bool = False  # the store alone cannot tell: plain verify must pass (and does)
    exact: bool = False  # the expected kinds are all the kinds found
    run: Callable[[History, bytes | None], list[Finding]] | None = None  # default: verify_store's findings
    marks: tuple[Any, ...] = ()


CASES = [
    # -- rows of one segment
    Case("payload_byte_changed", payload_byte_changed,
         (F("event_hash", segment=1, seq=seq_of(1, 2)), F("object_sha256", segment=1))),
    Case("event_hash_changed", event_hash_changed,
         (F("event_hash", segment=2, seq=seq_of(2, 2)), F("merkle_root", segment=2))),
    Case("metadata_column_changed", tenant_changed, (F("event_hash", segment=2, seq=seq_of(2, 5)),)),
    Case("row_deleted", row_deleted,
         (F("row_count", segment=1), F("seq_order", segment=1, seq=seq_of(1, 4)),
          F("prev_hash", segment=1, seq=seq_of(1, 5)))),
    Case("row_inserted", row_inserted, (F("row_count", segment=1), F("seq_order", segment=1, seq=seq_of(1, 4)))),
    Case("rows_reordered_in_row_group", rows_reordered_in_row_group,
         (F("row_order", segment=2), F("merkle_root", segment=2), F("block_roots", segment=2),
          F("object_sha256", segment=2))),
    Case("parquet_truncated", parquet_truncated,
         (F("object_size", segment=1), F("object_sha256", segment=1), F("segment_unreadable", segment=1))),
    Case("block_root_in_footer_changed", block_root_changed,
         (F("block_roots", segment=1), F("object_sha256", segment=1))),
    Case("event_duplicated_across_segments", event_duplicated_across_segments,
         (F("row_count", segment=2), F("seq_order", segment=2, seq=seq_of(2, 0)), F("object_sha256", segment=2))),
    # -- segment objects
    Case("segment_object_deleted", segment_object_deleted, (F("object_missing", segment=1),)),
    Case("object_replaced_by_other_segments_copy", object_replaced_by_other_segments_copy,
         (F("object_sha256", segment=1), F("segment_metadata", segment=1))),
    Case("segment_objects_swapped", segment_objects_swapped,
         (F("object_sha256", segment=1), F("object_sha256", segment=2), F("segment_metadata", segment=1),
          F("segment_metadata", segment=2))),
    Case("stray_segment_object", stray_segment_object,
         (F("orphan_object", object=layout.segment(STREAM, BASE_TS.date().isoformat(), SEGMENTS)),), exact=True),
    # -- manifests
    Case("manifest_deleted", manifest_deleted, (F("manifest_missing", segment=1), F("orphan_object"))),
    Case("middle_segment_and_manifest_deleted", middle_segment_and_manifest_deleted,
         (F("manifest_missing", segment=2), F("seq_gap", segment=3, seq=seq_of(3, 0)), F("chain_link", segment=3),
          F("manifest_link", segment=3), F("checkpoint_root", object=cp_name(3)),
          F("checkpoint_ahead", object=cp_name(5)))),
    Case("last_segment_and_manifest_deleted", last_segment_and_manifest_deleted,
         (F("checkpoint_ahead", object=cp_name(5)), F("head_rollback", stream=STREAM)), exact=True),
    Case("manifest_signature_broken", manifest_signature_broken, (F("manifest_signature", segment=1),)),
    Case("manifest_edited_signature_kept", manifest_edited_signature_kept, (F("manifest_signature", segment=1),)),
    Case("manifest_resigned_with_another_key", manifest_resigned_with_another_key,
         (F("manifest_signature", segment=1),)),
    Case("manifests_swapped", manifests_swapped,
         (F("manifest_identity", segment=1), F("manifest_identity", segment=2))),
    Case("stray_manifest_name", stray_manifest_name, (F("unexpected_object"),), exact=True),
    # -- checkpoints
    Case("latest_checkpoint_deleted", latest_checkpoint_deleted, (F("checkpoint_behind"),), exact=True),
    Case("all_checkpoints_deleted", all_checkpoints_deleted, (F("checkpoint_missing"),), exact=True),
    Case("checkpoint_renamed", checkpoint_renamed, (F("checkpoint_identity", object=cp_name(5)),)),
    Case("checkpoint_signed_by_another_key", checkpoint_signed_by_another_key,
         (F("checkpoint_signature", object=cp_name(2)),), exact=True),
    Case("checkpoint_wrong_root_stolen_key", checkpoint_wrong_root_stolen_key,
         (F("checkpoint_root", object=cp_name(2)),), exact=True),
    # -- truncation and rollback: only a saved point tells
    Case("last_segment_manifest_checkpoint_deleted", last_segment_manifest_checkpoint_deleted,
         (F("checkpoint_rollback"),), since=saved_manifest(4), plain_ok=True, exact=True),
    Case("last_segment_manifest_checkpoint_deleted_head_kept", last_segment_manifest_checkpoint_deleted_head_kept,
         (F("head_rollback", stream=STREAM),), exact=True),
    Case("checkpoint_rolled_back", checkpoint_rolled_back,
         (F("checkpoint_rollback"),), since=saved_checkpoint(4), plain_ok=True, exact=True),
    # -- rewrites with the stolen key
    Case("history_rewritten_latest_checkpoint_resigned", history_rewritten_latest_checkpoint_resigned,
         (F("checkpoint_root", object=cp_name(2)), F("checkpoint_root", object=cp_name(3)),
          F("checkpoint_root", object=cp_name(4))), exact=True),
    Case("tail_rewritten_and_resigned", tail_rewritten_and_resigned,
         (F("since_inconsistent"),), since=saved_checkpoint(5), plain_ok=True, exact=True),
    Case("event_duplicated_and_resigned", event_duplicated_and_resigned,
         (F("seq_gap", segment=2, seq=seq_of(1, 8)), F("chain_link", segment=2, seq=seq_of(1, 8)))),
    Case("manifest_frontier_wrong", manifest_frontier_wrong, (F("manifest_frontier", segment=3),), exact=True),
    Case("manifest_time_unparseable", manifest_time_unparseable, (F("manifest_time", segment=4),), exact=True),
    # -- keys
    Case("old_key_signs_after_rotation", old_key_signs_after_rotation,
         (F("key_validity", segment=SEGMENTS), F("key_validity", object=cp_name(SEGMENTS + 1))), exact=True),
    Case("key_history_entry_removed", key_history_entry_removed,
         (F("key_history", stream=None), F("manifest_signature", segment=SEGMENTS))),
    Case("key_history_entry_altered", key_history_entry_altered,
         (F("key_history", stream=None), F("manifest_signature", segment=SEGMENTS))),
    Case("key_history_entry_with_bad_time", key_history_entry_bad_time, (F("key_history", stream=None),), exact=True),
    Case("since_signed_by_untrusted_key", no_attack, (F("since_signature"),), since=since_signed_by_untrusted_key,
         plain_ok=True, exact=True),
    # -- inclusion proofs
    Case("proof_event_altered", no_attack, (F("proof_error"),), run=proof_event_altered),
    Case("proof_self_signed_by_attacker", no_attack, (F("proof_error"),), run=proof_self_signed),
]


def _matches(f: Finding, kind: str, where: Where) -> bool:
    where = where if kind == "proof_error" else {"stream": STREAM, **where}
    return f.kind == kind and all(getattr(f, k) == v for k, v in where.items())


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_attack_is_detected(case: Case, fresh: History) -> None:
    since = case.since(fresh) if case.since is not None else None
    case.attack(fresh)
    if case.plain_ok:
        plain = verify(fresh)
        assert plain.ok, f"the store alone was expected to look clean:\n{plain.to_text()}"
    if case.run is not None:
        findings = case.run(fresh, since)
        text = "\n".join(f"[{f.kind}] {f.message}" for f in findings)
    else:
        report = verify(fresh, since)
        assert not report.ok
        findings, text = report.findings, report.to_text()
    for kind, where in case.expect:
        assert any(_matches(f, kind, where) for f in findings), f"no [{kind}] at {where}:\n{text}"
    if case.exact:
        assert {f.kind for f in findings} == {kind for kind, _ in case.expect}, text


# -- controls: a clean journal gives no finding ------------------------------------------------------------------


def clean_plain(h: History) -> VerifyReport:
    report = verify(h)
    assert report.events == SEGMENTS * PER_SEGMENT and report.streams[0].checkpoint_size == SEGMENTS
    return report


def clean_since_latest_checkpoint(h: History) -> VerifyReport:
    report = verify(h, h.checkpoint_path(SEGMENTS).read_bytes())
    assert report.since is not None and report.since["extends_to"] == SEGMENTS
    return report


def clean_since_older_checkpoint_then_growth(h: History) -> VerifyReport:
    saved = h.checkpoint_path(2).read_bytes()
    seal_one(h, "later")
    report = verify(h, saved)
    assert report.since is not None and report.since["extends_to"] == SEGMENTS + 1
    assert report.since["consistency_proof"]  # an RFC 6962 proof from 2 to 6 was made and checked
    return report


def clean_since_manifest(h: History) -> VerifyReport:
    report = verify(h, h.manifest_path(2).read_bytes())
    assert report.since is not None and (report.since["kind"], report.since["tree_size"]) == ("manifest", 3)
    return report


def clean_workers_1(h: History) -> VerifyReport:
    return verify(h, workers=1)


def clean_workers_2(h: History) -> VerifyReport:
    report = verify(h, workers=2)
    assert report.events == SEGMENTS * PER_SEGMENT
    return report


def clean_after_key_rotations(h: History) -> VerifyReport:
    first = h.verify_key
    rotated(h)
    rotated(h)
    report = verify(h)  # the auditor holds only the first key: trust flows through the signed history
    assert len(report.key_history) == 3 and report.key_history[0]["key_id"] == first.key_id
    assert sum(report.keys_used.values()) == SEGMENTS + 2 and len(report.keys_used) == 3
    return report


def expire(h: History, objects: bool = True, manifests: bool = True) -> None:
    """Retention: segments 0 and 1 are gone (their objects, and with ``manifests`` their manifests)."""
    for n in (0, 1):
        if objects:
            remove(h, h.segment_path(n))
        if manifests:
            remove(h, h.manifest_path(n))


def horizon(size: int) -> Callable[[History], VerifyReport]:
    def check(h: History) -> VerifyReport:
        saved = h.checkpoint_path(size).read_bytes()
        expire(h)
        without = verify(h)
        assert "manifest_missing" in {f.kind for f in without.findings}, without.to_text()
        report = verify(h, saved)
        assert report.streams[0].horizon == 2, report.to_text()
        assert report.since is not None and report.since["extends_to"] == SEGMENTS
        return report

    return check


def clean_objects_expired(h: History) -> VerifyReport:
    saved = h.checkpoint_path(3).read_bytes()
    expire(h, manifests=False)
    assert "object_missing" in {f.kind for f in verify(h).findings}
    report = verify(h, saved)
    assert report.streams[0].expired_segments == 2
    return report


CLEAN = [
    pytest.param(clean_plain, id="plain"),
    pytest.param(clean_since_latest_checkpoint, id="since_latest_checkpoint"),
    pytest.param(clean_since_older_checkpoint_then_growth, id="since_older_checkpoint_then_growth"),
    pytest.param(clean_since_manifest, id="since_manifest"),
    pytest.param(clean_workers_1, id="workers_1"),
    pytest.param(clean_workers_2, id="workers_2"),
    pytest.param(clean_after_key_rotations, id="after_key_rotations_first_key_only"),
    pytest.param(horizon(5), id="horizon_since_checkpoint_5"),
    pytest.param(horizon(3), id="horizon_since_checkpoint_3"),
    pytest.param(horizon(2), id="horizon_since_checkpoint_2"),
    pytest.param(clean_objects_expired, id="objects_expired_since_checkpoint_3"),
]


@pytest.mark.parametrize("check", CLEAN)
def test_clean_journal_has_no_finding(check: Callable[[History], VerifyReport], fresh: History) -> None:
    report = check(fresh)
    assert report.findings == [], report.to_text()
    assert report.ok
