"""One negative test per way a sealed store can be tampered with, and what verify reports.

Every test starts from the same closed journal (conftest ``history``): stream
``main``, 4 segments of 9 events each, segment n holding seq 9n..9n+8, and
checkpoints of tree size 1..4. The store's files are read-only; the tests
chmod them first, as an attacker with write access to the directory would.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wormjournal.events import encode_fields, event_hash, genesis_hash
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal.keys import key_name, load_keys
from wormjournal.segments import merkle
from wormjournal.segments.manifest import Checkpoint, Manifest, checkpoint_origin
from wormjournal.segments.notes import SigningKey, open_note
from wormjournal.segments.table import (
    events_to_table,
    read_segment,
    segment_merkle_root,
    table_to_events,
    write_segment,
)
from wormjournal.storage import layout
from wormjournal.verify import VerifyReport, verify_store

from conftest import History, StorePaths, make_writable, overwrite, resign_stream_heads, rewrite_parquet

STREAM = "main"
PER_SEGMENT = 9


def seq_of(segment: int, row: int) -> int:
    return segment * PER_SEGMENT + row


def kinds(report: VerifyReport) -> set[str]:
    return {f.kind for f in report.findings}


def assert_finding(report: VerifyReport, kind: str, **where: object) -> None:
    """The report fails and holds a finding of ``kind`` at exactly ``where``."""
    assert not report.ok, report.to_text()
    where.setdefault("stream", STREAM)
    matches = [f for f in report.findings if f.kind == kind and all(getattr(f, k) == v for k, v in where.items())]
    assert matches, f"no [{kind}] finding at {where}:\n{report.to_text()}"


def replace_rows(history: History, segment: int, edit) -> None:  # type: ignore[no-untyped-def]
    """Rewrite a segment's rows through ``edit(list[StoredEvent]) -> list[StoredEvent]``."""

    def transform(table: pa.Table) -> pa.Table:
        # Written back in the storage order, (execution_id, seq), so only the edit itself differs.
        return events_to_table(sorted(edit(table_to_events(table)), key=lambda e: (e.execution_id, e.seq)))

    rewrite_parquet(history.segment_path(segment), transform)


def forged_key(history: History) -> SigningKey:
    """Another Ed25519 key that carries this journal's note key name."""
    return SigningKey.generate(key_name(history.journal_id))


# -- positive controls --------------------------------------------------------------


def test_intact_store_verifies(history: History) -> None:
    report = history.verify()
    assert report.ok, report.to_text()
    assert report.findings == []
    assert (report.events, report.segments) == (36, 4)
    (s,) = report.streams
    assert (s.stream, s.first_seq, s.last_seq, s.checkpoint_size) == (STREAM, 0, 35, 4)
    assert s.head_hash == history.manifests[-1].last_hash.hex()


def test_intact_store_verifies_with_the_stores_own_keys(history: History) -> None:
    report = verify_store(history.store)
    assert report.ok and report.keys_from_store
    assert report.keys == [history.verify_key.key_id]


def test_nothing_sealed_fails_closed_for_an_auditor_and_not_for_its_writer(tmp_store: StorePaths) -> None:
    """An auditor (verify_store) has nothing to prove in a store with nothing sealed: a finding. The writer's own
    check (Journal.verify), which knows it sealed nothing, reads its appended events back through the WAL's
    chain: ok, with a notice; once it has sealed, a store emptied behind it fails again."""
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=JournalConfig(seal_max_age_seconds=None)) as j:
        assert j.verify().ok and j.verify().unsealed == 0
        j.append("execution_started", "run-1", {"x": 1})
        j.append("execution_completed", "run-1")
        report = j.verify()
        assert report.ok and report.unsealed == 2 and report.events == 0
        assert any("nothing is sealed yet" in n for n in report.notices)
        auditor = verify_store(tmp_store.store)
        assert not auditor.ok and kinds(auditor) == {"nothing_to_verify"} and auditor.unsealed is None
        j.seal()
        for manifest in (tmp_store.store / "manifests").rglob("*.note"):
            make_writable(manifest)
            manifest.unlink()
        report = j.verify()
    assert not report.ok and report.unsealed is None


def test_empty_journal_fails_closed(tmp_store: StorePaths) -> None:
    Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=JournalConfig(seal_max_age_seconds=None)).close()
    report = verify_store(Journal.open(tmp_store.store, key_dir=tmp_store.keys).store)
    assert not report.ok
    assert kinds(report) == {"nothing_to_verify"}


def test_wrong_public_key_fails_every_manifest(history: History) -> None:
    other = forged_key(history).verify_key
    report = history.verify([other])
    assert not report.ok
    bad = {f.segment for f in report.findings if f.kind == "manifest_signature"}
    assert bad == {0, 1, 2, 3}
    bad_cps = {f.object for f in report.findings if f.kind == "checkpoint_signature"}
    assert bad_cps == {layout.checkpoint(STREAM, n) for n in (1, 2, 3, 4)}
    assert "nothing_to_verify" in kinds(report)  # no event was accepted


# -- one segment's rows ----------------------------------------------------------------


def test_payload_byte_changed(history: History) -> None:
    def edit(events):  # type: ignore[no-untyped-def]
        e = events[2]
        flipped = e.payload[:-1] + bytes([e.payload[-1] ^ 0x01])
        events[2] = dataclasses.replace(e, payload=flipped)
        return events

    replace_rows(history, 1, edit)
    report = history.verify()
    assert_finding(report, "event_hash", segment=1, seq=seq_of(1, 2))
    assert_finding(report, "object_sha256", segment=1, object=history.manifests[1].object)
    # The stored hash column is intact, so the Merkle root over it still matches.
    assert "merkle_root" not in kinds(report)
    # Only segment 1 is wrong: the other segments still verify on their own.
    assert {f.segment for f in report.findings} == {1}


@pytest.mark.parametrize(("column", "value"), [("tenant_id", "tenant-evil"), ("node", "approver"), ("ts", 0)])
def test_metadata_column_changed(history: History, column: str, value: object) -> None:
    def edit(events):  # type: ignore[no-untyped-def]
        events[5] = dataclasses.replace(events[5], **{column: value})
        return events

    replace_rows(history, 2, edit)
    report = history.verify()
    assert_finding(report, "event_hash", segment=2, seq=seq_of(2, 5))
    assert {f.segment for f in report.findings} == {2}


def test_row_deleted(history: History) -> None:
    replace_rows(history, 1, lambda events: events[:4] + events[5:])
    report = history.verify()
    assert_finding(report, "row_count", segment=1)
    assert_finding(report, "seq_order", segment=1, seq=seq_of(1, 4))  # the missing seq
    # The row after the gap no longer chains to the row before it.
    assert_finding(report, "prev_hash", segment=1, seq=seq_of(1, 5))


def test_row_inserted_as_copy(history: History) -> None:
    replace_rows(history, 1, lambda events: events[:4] + [events[3]] + events[4:])
    report = history.verify()
    assert_finding(report, "row_count", segment=1)
    assert_finding(report, "seq_order", segment=1, seq=seq_of(1, 4))  # row 4 repeats seq 12
    assert_finding(report, "event_hash", segment=1)


def test_forged_row_from_the_wrong_chain(history: History) -> None:
    """A row whose hash is right for its fields, but over another chain's prev_hash."""
    new_seq = seq_of(3, PER_SEGMENT)  # 36: it claims to extend the stream

    def edit(events):  # type: ignore[no-untyped-def]
        template = dataclasses.replace(events[-1], seq=new_seq, event_id="forged-event", exec_prev_seq=None)
        wrong_prev = genesis_hash(history.journal_id, "another-stream")
        forged = dataclasses.replace(
            template, prev_hash=wrong_prev, hash=event_hash(wrong_prev, encode_fields(template.field_values()))
        )
        return events + [forged]

    replace_rows(history, 3, edit)
    report = history.verify()
    assert_finding(report, "row_count", segment=3)
    assert_finding(report, "event_hash", segment=3, seq=new_seq)
    assert_finding(report, "prev_hash", segment=3, seq=new_seq)


def test_forged_row_correctly_chained_is_caught_by_the_manifest(history: History) -> None:
    """Even a row chained perfectly onto the segment is outside what the manifest signed."""
    new_seq = seq_of(3, PER_SEGMENT)

    def edit(events):  # type: ignore[no-untyped-def]
        last = events[-1]
        template = dataclasses.replace(last, seq=new_seq, event_id="forged-event", exec_prev_seq=None,
                                       prev_hash=last.hash)
        forged = dataclasses.replace(template, hash=event_hash(last.hash, encode_fields(template.field_values())))
        return events + [forged]

    replace_rows(history, 3, edit)
    report = history.verify()
    assert "event_hash" not in kinds(report)  # the chain itself is consistent
    assert_finding(report, "row_count", segment=3)
    assert_finding(report, "last_hash", segment=3, seq=history.manifests[3].last_seq)
    assert_finding(report, "merkle_root", segment=3)
    assert_finding(report, "object_sha256", segment=3)


def test_two_rows_swapped(history: History) -> None:
    """Rows swapped in the file: the chain (in seq order) still holds, the storage order does not."""

    def transform(table: pa.Table) -> pa.Table:
        order = list(range(table.num_rows))
        order[3], order[4] = order[4], order[3]
        return table.take(order)

    rewrite_parquet(history.segment_path(2), transform)
    report = history.verify()
    assert_finding(report, "row_order", segment=2)
    assert_finding(report, "object_sha256", segment=2)
    assert_finding(report, "merkle_root", segment=2)  # the tree is over the rows as stored
    assert "event_hash" not in kinds(report)


def change_block_root(h: History, segment: int = 1) -> None:
    """Change the first hex digit of a segment's footer block roots, rows untouched."""
    path = h.segment_path(segment)
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    roots = meta[b"wormjournal.block_roots"].decode()
    meta[b"wormjournal.block_roots"] = (("0" if roots[0] != "0" else "1") + roots[1:]).encode()
    make_writable(path)
    pq.write_table(table.replace_schema_metadata(meta), path, compression="zstd", row_group_size=4)


def test_block_root_in_footer_changed(history: History) -> None:
    """A wrong row-group root in the footer: the rows are intact, the hint partial readers use is not."""
    change_block_root(history)
    report = history.verify()
    assert_finding(report, "block_roots", segment=1)
    assert "merkle_root" not in kinds(report) and "event_hash" not in kinds(report)


def test_two_rows_contents_swapped_seq_kept(history: History) -> None:
    """The seq column left in order, everything else swapped: the hashes catch it."""

    def edit(events):  # type: ignore[no-untyped-def]
        a, b = events[3], events[4]
        events[3] = dataclasses.replace(b, seq=a.seq)
        events[4] = dataclasses.replace(a, seq=b.seq)
        return events

    replace_rows(history, 2, edit)
    report = history.verify()
    assert "seq_order" not in kinds(report)
    assert_finding(report, "event_hash", segment=2, seq=seq_of(2, 3))


def test_parquet_truncated(history: History) -> None:
    path = history.segment_path(1)
    data = path.read_bytes()
    overwrite(path, data[: len(data) // 2])
    report = history.verify()
    assert_finding(report, "object_size", segment=1, object=history.manifests[1].object)
    assert_finding(report, "object_sha256", segment=1)
    assert_finding(report, "segment_unreadable", segment=1)


# -- whole segments --------------------------------------------------------------------


def test_middle_segment_removed(history: History) -> None:
    for path in (history.segment_path(1), history.manifest_path(1)):
        path.unlink()
    report = history.verify()
    assert_finding(report, "manifest_missing", segment=1)
    # One gap, reported once (not again at every later manifest).
    assert {f.segment for f in report.findings if f.kind == "manifest_missing"} == {1}
    assert_finding(report, "seq_gap", segment=2, seq=seq_of(2, 0))
    assert_finding(report, "chain_link", segment=2, seq=seq_of(2, 0))
    assert_finding(report, "manifest_link", segment=2)
    # The checkpoints that covered segment 1 no longer match.
    assert_finding(report, "checkpoint_ahead", object=layout.checkpoint(STREAM, 4))
    assert_finding(report, "checkpoint_root", object=layout.checkpoint(STREAM, 2))


def test_middle_segment_object_only_removed(history: History) -> None:
    history.segment_path(1).unlink()
    report = history.verify()
    assert_finding(report, "object_missing", segment=1, object=history.manifests[1].object)


def test_last_segment_removed_with_its_manifest(history: History) -> None:
    history.segment_path(3).unlink()
    history.manifest_path(3).unlink()
    report = history.verify()
    # Segments 0..2 are a perfectly consistent prefix; the checkpoint and the head remember segment 3.
    assert kinds(report) == {"checkpoint_ahead", "head_rollback"}
    assert_finding(report, "checkpoint_ahead", object=layout.checkpoint(STREAM, 4))


def test_last_segment_manifest_and_checkpoint_removed(history: History) -> None:
    """Truncating the tail and its checkpoint: the head written after that seal names 4 segments (head_rollback).
    With that head removed too, the store is consistent on its own.

    What is *not* detectable from the store alone: the older checkpoint (size 3)
    and the older heads still cover exactly what remains. What *is* detectable:
    against a copy of the newer checkpoint kept outside the store (a witness, an
    auditor's last report), which still verifies with the public key and commits to more.
    """
    witnessed = history.checkpoint_path(4).read_bytes()
    for path in (history.segment_path(3), history.manifest_path(3), history.checkpoint_path(4)):
        path.unlink()
    assert kinds(history.verify()) == {"head_rollback"}
    (history.paths.store / layout.head(3)).unlink()
    report = history.verify()
    assert report.ok, report.to_text()  # not detectable from the store alone
    (s,) = report.streams
    assert (s.last_seq, s.checkpoint_size) == (seq_of(2, 8), 3)
    # Detectable against the witnessed checkpoint: validly signed, and larger than the store.
    text, _ = open_note(witnessed, [history.verify_key])
    cp = Checkpoint.parse(text)
    assert cp.tree_size == 4 > s.checkpoint_size


def test_orphan_segment_object(history: History) -> None:
    """An object under segments/ that no manifest covers (an inserted file or a half-done seal)."""
    m = history.manifests[3]
    date = layout.parse_segment(m.object)[1]  # type: ignore[index]
    name = layout.segment(STREAM, date, 4)
    history.store.put(name, history.segment_path(3).read_bytes())
    report = history.verify()
    assert kinds(report) == {"orphan_object"}
    assert_finding(report, "orphan_object", object=name)


# -- manifests and checkpoints -------------------------------------------------------------


def test_manifest_resigned_with_another_key(history: History) -> None:
    forged = forged_key(history)
    m = dataclasses.replace(history.manifests[1], key_id=forged.verify_key.key_id)
    overwrite(history.manifest_path(1), m.sign(forged))
    report = history.verify()
    assert_finding(report, "manifest_signature", segment=1, object=layout.manifest(STREAM, 1))
    assert {f.segment for f in report.findings if f.kind == "manifest_signature"} == {1}


def test_manifest_edited_signature_kept(history: History) -> None:
    path = history.manifest_path(1)
    text = path.read_text()
    root_hex = history.manifests[1].merkle_root.hex()
    flipped = root_hex[:-1] + ("0" if root_hex[-1] != "0" else "1")
    assert text.count(root_hex) == 1
    overwrite(path, text.replace(root_hex, flipped).encode())
    report = history.verify()
    assert_finding(report, "manifest_signature", segment=1, object=layout.manifest(STREAM, 1))


def test_checkpoint_wrong_root_signed_by_another_key(history: History) -> None:
    origin = checkpoint_origin(history.journal_id, STREAM)
    cp = Checkpoint(origin, 2, hashlib.sha256(b"not the root").digest())
    overwrite(history.checkpoint_path(2), cp.sign(forged_key(history)))
    report = history.verify()
    assert kinds(report) == {"checkpoint_signature"}
    assert_finding(report, "checkpoint_signature", object=layout.checkpoint(STREAM, 2))


def test_checkpoint_wrong_root_signed_by_the_real_key(history: History) -> None:
    signing, _ = load_keys(history.paths.keys, history.journal_id)
    origin = checkpoint_origin(history.journal_id, STREAM)
    overwrite(history.checkpoint_path(2), Checkpoint(origin, 2, hashlib.sha256(b"x").digest()).sign(signing))
    report = history.verify()
    assert kinds(report) == {"checkpoint_root"}
    assert_finding(report, "checkpoint_root", object=layout.checkpoint(STREAM, 2))


# -- a rewritten history with every signature valid ---------------------------------------


def resign_heads(history: History, signing: SigningKey, hashes: list[bytes]) -> None:
    """Stolen key: every head of the one stream re-signed with the roots of ``hashes`` (the rewritten manifests)."""
    resign_stream_heads(history.paths.store, history.journal_id, STREAM, signing, hashes)


def rewrite_history_from(history: History, first: int) -> tuple[SigningKey, list[bytes]]:
    """Replace an event in segment ``first``, re-chain, re-seal and re-sign every later segment.

    This is what a holder of the private key can do. Returns the key and the new
    manifest hashes (one per segment); checkpoints are left to the caller.
    """
    signing, _ = load_keys(history.paths.keys, history.journal_id)
    events = []
    for n in range(len(history.manifests)):
        events.extend(table_to_events(read_segment(history.segment_path(n).read_bytes())))
    start = history.manifests[first].first_seq
    events[start] = dataclasses.replace(events[start], payload=b'{"approved":true}', payload_codec="json")
    prev = history.manifests[first].prev_hash
    for i in range(start, len(events)):
        h = event_hash(prev, encode_fields(events[i].field_values()))
        events[i] = dataclasses.replace(events[i], prev_hash=prev, hash=h)
        prev = h
    hashes = [m.manifest_hash() for m in history.manifests[:first]]
    for n in range(first, len(history.manifests)):
        old = history.manifests[n]
        chunk = events[old.first_seq : old.last_seq + 1]
        data = write_segment(chunk, journal_id=history.journal_id, stream=STREAM, segment=n, row_group_rows=4)
        overwrite(history.segment_path(n), data)
        m = dataclasses.replace(
            old,
            prev_hash=chunk[0].prev_hash,
            last_hash=chunk[-1].hash,
            merkle_root=segment_merkle_root(chunk),
            object_size=len(data),
            object_sha256=hashlib.sha256(data).digest(),
            prev_manifest=hashes[-1],
            # the forger keeps these right too
            frontier=tuple(merkle.frontier_of([merkle.leaf_hash(h) for h in hashes])),
        )
        overwrite(history.manifest_path(n), m.sign(signing))
        hashes.append(m.manifest_hash())
    return signing, hashes


def test_rewritten_history_caught_by_older_checkpoints(history: History) -> None:
    """Segments, manifests and the latest checkpoint re-signed with the real key.

    Every event hash, chain link, manifest signature and Merkle root verifies;
    what catches it is the older checkpoints (sizes 2 and 3), which committed
    to the original manifest of segment 1. Checkpoint 1 covers only segment 0
    and still matches.
    """
    signing, hashes = rewrite_history_from(history, 1)
    origin = checkpoint_origin(history.journal_id, STREAM)
    overwrite(history.checkpoint_path(4), Checkpoint.for_manifests(origin, hashes).sign(signing))
    resign_heads(history, signing, hashes)
    report = history.verify()
    assert kinds(report) == {"checkpoint_root"}, report.to_text()
    assert {f.object for f in report.findings} == {layout.checkpoint(STREAM, 2), layout.checkpoint(STREAM, 3)}


def test_rewritten_history_with_every_checkpoint_resigned(history: History) -> None:
    """With every checkpoint re-signed too, the store alone cannot tell (the key was abused).

    Only a checkpoint kept outside the store (a witness) shows the rewrite: it
    still verifies, has the same size, and a different root.
    """
    witnessed = history.checkpoint_path(4).read_bytes()
    signing, hashes = rewrite_history_from(history, 1)
    origin = checkpoint_origin(history.journal_id, STREAM)
    for size in range(2, 5):
        overwrite(history.checkpoint_path(size), Checkpoint.for_manifests(origin, hashes[:size]).sign(signing))
    assert kinds(history.verify()) == {"head_inconsistent"}  # the heads remember the first history
    resign_heads(history, signing, hashes)
    report = history.verify()
    assert report.ok, report.to_text()
    text, _ = open_note(witnessed, [history.verify_key])
    cp = Checkpoint.parse(text)
    assert cp.tree_size == report.streams[0].checkpoint_size
    assert cp.root_hash.hex() != report.streams[0].checkpoint_root
    # Which is what `verify --since` does with it.
    caught = verify_store(history.store, public_keys=[history.verify_key], since=witnessed)
    assert kinds(caught) == {"since_inconsistent"}, caught.to_text()


def test_manifest_parse_roundtrip_is_what_the_tests_forge(history: History) -> None:
    """Sanity for the forgeries above: a re-signed unchanged manifest is byte-identical."""
    signing, _ = load_keys(history.paths.keys, history.journal_id)
    m = history.manifests[0]
    assert history.manifest_path(0).read_bytes() == m.sign(signing)
    assert Manifest.parse(open_note(m.sign(signing), [history.verify_key])[0]) == m


def test_rewrite_helper_keeps_schema_metadata_and_read_only_mode(history: History) -> None:
    """The rewriter changes rows only: an identity rewrite still reads as a segment."""
    path: Path = history.segment_path(0)
    before = read_segment(path.read_bytes())
    rewrite_parquet(path, lambda t: t)
    after = read_segment(path.read_bytes())
    assert after.schema.metadata == before.schema.metadata
    assert after.equals(before)
    assert path.stat().st_mode & 0o222 == 0
    report = history.verify()
    # Same rows, different Parquet bytes (and row groups): the object hash and size tell, and the row
    # groups that are no longer the Merkle blocks readers authenticate.
    assert kinds(report) <= {"object_sha256", "object_size", "block_layout"}
    assert_finding(report, "object_sha256", segment=0)
