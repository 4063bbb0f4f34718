"""Verification in worker processes gives the same report as in one process.

Segments are checked (steps 4 to 8 of FORMAT.md section 10) by ``check_segment`` in a
pool of processes when ``workers`` > 1; the results are applied in segment order, and
execution back-links across segments are checked by the parent. Every report here is
compared field by field between ``workers=1`` (inline, no pool) and ``workers=2``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from test_tamper import STREAM, change_block_root, replace_rows, seq_of

from wormjournal.events import StoredEvent, encode_fields, event_hash, genesis_hash
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal import sealer as sealer_mod
from wormjournal.journal.keys import load_keys
from wormjournal.segments import merkle
from wormjournal.segments.table import in_seq_order, read_segment, row_hashes
from wormjournal.storage.local import LocalStore
from wormjournal.trust import load_trust
from wormjournal.trust.load import read_identity
from wormjournal.verify import VerifyReport, verify_store
from wormjournal.verify import verifier as verifier_mod
from wormjournal.verify.segment import _merkle_checks, _packed_hashes, check_segment, public_key_bytes

from conftest import BASE_TS, History, overwrite, rewrite_parquet


def comparable(report: VerifyReport) -> dict[str, Any]:
    """Everything in the report but the time it took and the number of processes."""
    d = dataclasses.asdict(report)
    d.pop("seconds")
    d.pop("workers", None)
    return d


def verify_both(history: History, **kwargs: Any) -> VerifyReport:
    """Verify with one process and with two; assert the reports are the same; return the second."""
    keys = [history.verify_key]
    one = verify_store(history.store, public_keys=keys, workers=1, **kwargs)
    two = verify_store(history.store, public_keys=keys, workers=2, **kwargs)
    assert comparable(one) == comparable(two), f"workers=1:\n{one.to_text()}\n\nworkers=2:\n{two.to_text()}"
    return two


# -- tampering, each verified with 1 and 2 workers -------------------------------------------


def _payload_flipped(h: History) -> None:
    def edit(events):  # type: ignore[no-untyped-def]
        e = events[2]
        events[2] = dataclasses.replace(e, payload=e.payload[:-1] + bytes([e.payload[-1] ^ 1]))
        return events

    replace_rows(h, 1, edit)


def _row_deleted(h: History) -> None:
    replace_rows(h, 2, lambda events: events[:4] + events[5:])


def _row_copied(h: History) -> None:
    replace_rows(h, 1, lambda events: events[:4] + [events[3]] + events[4:])


def _rows_swapped(h: History) -> None:
    def transform(table: pa.Table) -> pa.Table:
        order = list(range(table.num_rows))
        order[3], order[4] = order[4], order[3]
        return table.take(order)

    rewrite_parquet(h.segment_path(2), transform)


def _contents_swapped(h: History) -> None:
    def edit(events):  # type: ignore[no-untyped-def]
        a, b = events[3], events[4]
        events[3], events[4] = dataclasses.replace(b, seq=a.seq), dataclasses.replace(a, seq=b.seq)
        return events

    replace_rows(h, 3, edit)


def _truncated(h: History) -> None:
    data = h.segment_path(2).read_bytes()
    overwrite(h.segment_path(2), data[: len(data) // 2])


def _object_removed(h: History) -> None:
    h.segment_path(1).unlink()


def _segment_and_manifest_removed(h: History) -> None:
    h.segment_path(1).unlink()
    h.manifest_path(1).unlink()


def _exec_link_cleared(h: History) -> None:
    # The first event of an execution in segment 2 loses its link to segment 1 (hash now wrong too).
    def edit(events):  # type: ignore[no-untyped-def]
        events[0] = dataclasses.replace(events[0], exec_prev_seq=None)
        return events

    replace_rows(h, 2, edit)


TAMPERS: dict[str, Callable[[History], None]] = {
    "intact": lambda h: None,
    "payload_flipped": _payload_flipped,
    "row_deleted": _row_deleted,
    "row_copied": _row_copied,
    "rows_swapped": _rows_swapped,
    "contents_swapped": _contents_swapped,
    "block_root_changed": change_block_root,
    "truncated": _truncated,
    "object_removed": _object_removed,
    "segment_and_manifest_removed": _segment_and_manifest_removed,
    "exec_link_cleared": _exec_link_cleared,
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_one_and_two_workers_give_the_same_report(history: History, tamper: str) -> None:
    TAMPERS[tamper](history)
    report = verify_both(history)
    assert report.ok == (tamper == "intact"), report.to_text()
    assert report.workers == 2
    if tamper == "intact":
        assert (report.events, report.segments) == (36, 4)
        assert report.encrypted_events > 0  # subject events are encrypted: key_uses came back from the workers


def test_a_workers_finding_names_its_segment_and_seq(history: History) -> None:
    def edit(events):  # type: ignore[no-untyped-def]
        events[6] = dataclasses.replace(events[6], node="approver")
        return events

    replace_rows(history, 3, edit)
    report = verify_both(history)
    hashes = [f for f in report.findings if f.kind == "event_hash"]
    assert [(f.stream, f.segment, f.seq) for f in hashes] == [(STREAM, 3, seq_of(3, 6))]
    assert {f.segment for f in report.findings} == {3}


def test_findings_stay_in_segment_order(history: History) -> None:
    """Tampered segments 3 and 1: segment 1's findings still come first, however the workers finish."""
    _payload_flipped(history)
    replace_rows(history, 3, lambda events: events[:2] + events[3:])
    report = verify_both(history)
    segments = [f.segment for f in report.findings if f.segment is not None]
    assert segments == sorted(segments) and set(segments) == {1, 3}


def test_progress_reaches_the_total(history: History) -> None:
    calls: list[tuple[int, int]] = []
    report = verify_store(history.store, public_keys=[history.verify_key], workers=2,
                          progress=lambda d, t: calls.append((d, t)))
    assert report.ok
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_erasure_receipts_are_checked_in_the_workers(make_history: Callable[..., History]) -> None:
    h = make_history(segments=3)
    config = JournalConfig(seal_max_age_seconds=None, row_group_rows=4)
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=config) as j:
        j.shred(subject="customer-4711", reason="test")
        j.append("node_started", "run-alpha", {"after": "shred"}, ts=BASE_TS)
        j.seal()
    report = verify_both(h)
    assert report.ok, report.to_text()
    assert len(report.receipts) == 1 and report.receipts[0]["stream"] == STREAM
    assert report.shredded_events == report.encrypted_events > 0


def test_s3_store_with_two_workers(s3_bucket, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The parent fetches the objects, so a store whose client cannot be pickled works too."""
    store = s3_bucket.store("archive")
    config = JournalConfig(seal_max_age_seconds=None, segment_max_events=5, row_group_rows=4)
    with Journal.create(store, key_dir=tmp_path / "keys", wal_dir=tmp_path / "wal", config=config) as j:
        j.append_batch([{"event_type": "tool_called", "execution_id": f"run-{i % 3}", "payload": {"i": i},
                         "ts": BASE_TS} for i in range(17)])
        j.seal()
        key = j.verify_key
    one = verify_store(store, public_keys=[key], workers=1)
    two = verify_store(store, public_keys=[key], workers=2)
    assert two.ok and two.segments == 4, two.to_text()
    assert comparable(one) == comparable(two)


# -- execution back-links across segments ------------------------------------------------------

DAY = dt.datetime(2025, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def seal_links(tmp_path: Path, executions: list[str], links: list[int | None], per_segment: int) -> LocalStore:
    """Events with the given exec_prev_seq values, correctly hashed and signed, sealed by the real
    Sealer into segments of ``per_segment`` events: only step 8 can catch a wrong link."""
    store_dir, keys = tmp_path / "store", tmp_path / "keys"
    Journal.create(store_dir, key_dir=keys, config=JournalConfig(seal_max_age_seconds=None)).close()
    store = LocalStore(store_dir)
    journal_id = read_identity(store).journal_id
    key, _ = load_keys(keys, journal_id)
    prev = genesis_hash(journal_id, "main")
    events = []
    for seq, (execution, link) in enumerate(zip(executions, links, strict=True)):
        values = (seq, f"ev-{seq}", int(DAY.timestamp() * 1e6) + seq, "node_started", None, execution, None, None, None,
                  None, None, None, link, "json", None, b"{}")
        h = event_hash(prev, encode_fields(values))
        events.append(StoredEvent(*values, prev_hash=prev, hash=h))
        prev = h
    ring = load_trust(store).ring
    state = sealer_mod.load_sealed_state(store, journal_id, "main", ring)
    sealer_mod.Sealer(store, state, lambda _segment: key, lambda: ring, row_group_rows=2,
                      segment_max_events=per_segment).seal(events)
    return store


def correct_links(executions: list[str]) -> list[int | None]:
    last: dict[str, int] = {}
    out: list[int | None] = []
    for seq, e in enumerate(executions):
        out.append(last.get(e))
        last[e] = seq
    return out


EXECUTIONS = ["a", "b", "a", "c", "b", "a", "c", "a", "b", "b", "a", "c"]


@pytest.mark.parametrize(
    ("seq", "link", "expected"),
    [
        (None, None, []),  # all correct
        # a's first in segment 2 -> skips seq 2
        (5, 0, [(5, 2, "exec_prev_seq is 0, but the previous event of execution 'a' is 2")]),
        # cut from segment 1
        (5, None, [(5, 2, "exec_prev_seq is None, but the previous event of execution 'a' is 2")]),
        # another execution's event
        (4, 3, [(4, 2, "exec_prev_seq is 3, but the previous event of execution 'b' is 1")]),
        (7, 2, [(7, 3, "exec_prev_seq is 2, but the previous event of execution 'a' is 5")]),  # skips segment 2's event
        (9, None, [(9, 4, "exec_prev_seq is None, but the previous event of execution 'b' is 8")]),  # inside segment 4
    ],
)
def test_cross_segment_exec_links(tmp_path: Path, seq: int | None, link: int | None,
                                  expected: list[tuple[int, int, str]]) -> None:
    links = correct_links(EXECUTIONS)
    if seq is not None:
        links[seq] = link
    store = seal_links(tmp_path, EXECUTIONS, links, per_segment=2)  # segments of seqs 0-1, 2-3, 4-5, ...
    one = verify_store(store, workers=1)
    two = verify_store(store, workers=2)
    assert comparable(one) == comparable(two)
    assert two.segments == 6
    assert [(f.seq, f.segment, f.message) for f in two.findings] == expected
    assert {f.kind for f in two.findings} <= {"exec_link"}


def test_exec_links_checked_in_seq_order_when_rows_are_out_of_order(tmp_path: Path) -> None:
    """A segment whose rows are not in (execution_id, seq) order: the links are still walked in seq order."""
    links = correct_links(EXECUTIONS)
    links[9] = None  # b's second event in segment 4 (seqs 8, 9): within-segment link cut
    store = seal_links(tmp_path, EXECUTIONS, links, per_segment=4)
    name = [o.name for o in store.list("segments/")][2]  # seqs 8..11
    path = store.root / name
    rewrite_parquet(path, lambda t: t.take(list(reversed(range(t.num_rows)))))
    one = verify_store(store, workers=1)
    two = verify_store(store, workers=2)
    assert comparable(one) == comparable(two)
    links_found = [(f.seq, f.message) for f in two.findings if f.kind == "exec_link"]
    assert links_found == [(9, "exec_prev_seq is None, but the previous event of execution 'b' is 8")]
    assert "row_order" in {f.kind for f in two.findings}


# -- the pieces ------------------------------------------------------------------------------------


def test_worker_count() -> None:
    wc = verifier_mod.worker_count
    assert wc(1, 10) == 1 and wc(2, 10) == 2 and wc(8, 3) == 3 and wc(2, 0) == 1
    assert wc(None, 100, 0) == 1  # a small journal is verified in this process: a pool would cost more than it saves
    cores = len(os.sched_getaffinity(0))
    assert wc(None, 100, 1 << 40) == min(cores, 100)
    # One process below the measured size from which a pool of 2 pays off, 2 (given 2 cores) from it on.
    assert wc(None, 100, verifier_mod.WORKER_MIN_BYTES - 1) == 1
    assert wc(None, 100, verifier_mod.WORKER_MIN_BYTES) == min(cores, 2)
    assert wc(None, 1, 1 << 40) == 1  # never more workers than segments
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            wc(bad, 10)  # type: ignore[arg-type]


def test_two_workers_start_a_pool(history: History) -> None:
    runner = verifier_mod._SegmentRunner(read_identity(history.store), [history.verify_key], 2)
    try:
        assert runner.pool is not None and runner.window == 4
    finally:
        runner.close()
    assert verifier_mod._SegmentRunner(read_identity(history.store), [history.verify_key], 1).pool is None


def test_check_segment_result_is_small_and_picklable(history: History) -> None:
    m = history.manifests[1]
    data = history.segment_path(1).read_bytes()
    identity = read_identity(history.store)
    result = check_segment(m, data, journal_id=identity.journal_id, stream=STREAM, key_name=identity.key_name,
                           public_keys=public_key_bytes([history.verify_key]))
    assert result.findings == [] and result.link_findings == []
    assert result.executions is not None and {e[1] for e in result.executions} == {"run-alpha", "run-beta", "run-gamma"}
    assert len(pickle.dumps(result)) < 2000


@pytest.mark.parametrize("bulk", [True, False])
def test_the_object_hash_finding_keeps_its_place(history: History, bulk: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The object's SHA-256 is taken with the Merkle root (one call with the C extension), or, when the object is
    not a readable segment, on its own: either way its finding comes where step 4 puts it, after the size's and
    before every later step's."""
    if not bulk:
        monkeypatch.setattr(merkle, "_bulk", None)
    elif merkle._bulk is None:
        pytest.skip("no bulk SHA-256 (no C extension, or no libcrypto)")
    m = history.manifests[1]
    data = history.segment_path(1).read_bytes()
    identity = read_identity(history.store)

    def found(m: Any, data: bytes) -> list[str]:
        return [f[0] for f in check_segment(m, data, journal_id=identity.journal_id, stream=STREAM,
                                            key_name=identity.key_name, public_keys=()).findings]

    assert found(m, data) == []
    wrong = dataclasses.replace(m, object_size=m.object_size + 1, object_sha256=bytes(32), merkle_root=bytes(32))
    assert found(wrong, data) == ["object_size", "object_sha256", "merkle_root"]
    assert found(dataclasses.replace(m, merkle_root=bytes(32)), data) == ["merkle_root"]
    assert found(m, b"junk") == ["object_size", "object_sha256", "segment_unreadable"]
    assert found(dataclasses.replace(m, object_size=4, object_sha256=hashlib.sha256(b"junk").digest()),
                 b"junk") == ["segment_unreadable"]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 9, 17, 100])
@pytest.mark.parametrize("block", [1, 2, 4, 64])
@pytest.mark.parametrize("bulk", [True, False])
def test_merkle_root_over_block_roots_is_the_root(n: int, block: int, bulk: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if not bulk:
        monkeypatch.setattr(merkle, "_bulk", None)
    elif merkle._bulk is None:
        pytest.skip("no bulk SHA-256 (no C extension, or no libcrypto)")
    hashes = [hashlib.sha256(bytes([i % 256, i // 256])).digest() for i in range(n)]
    column = pa.chunked_array([pa.array(hashes, pa.binary())], type=pa.binary())
    data = bytes(range(256)) * n + b"PAR1"[: n % 5]  # the object's bytes: every length past a block edge
    whole = hashlib.sha256(data).digest()
    leaves = [merkle.leaf_hash(h) for h in hashes]
    roots = merkle.block_roots(leaves, block)
    good = {"wormjournal.block_rows": str(block), "wormjournal.block_roots": "".join(r.hex() for r in roots)}
    assert _merkle_checks(good, column, _packed_hashes(column), data) == (merkle.merkle_root(hashes), True, whole)
    for bad in ({}, {"wormjournal.block_rows": "3", "wormjournal.block_roots": good["wormjournal.block_roots"]},
                {"wormjournal.block_rows": "0", "wormjournal.block_roots": ""},
                {"wormjournal.block_rows": str(block), "wormjournal.block_roots": "zz"}):
        assert _merkle_checks(bad, column, _packed_hashes(column), data) == (merkle.merkle_root(hashes), False, whole)
    # A block of more rows than a machine word holds is one run of all the rows: no overflow on the way to C.
    huge = {"wormjournal.block_rows": str(1 << 70), "wormjournal.block_roots": merkle.merkle_root(hashes).hex()}
    assert _merkle_checks(huge, column, _packed_hashes(column), data) == (merkle.merkle_root(hashes), n > 0, whole)
    if n:  # a damaged value (not 32 bytes, or null) is a leaf of its bytes, a null of none: the same root as before
        damaged = [hashes[0][:5], *hashes[1:-1], None] if n > 1 else [None]
        column = pa.chunked_array([pa.array(damaged, pa.binary())], type=pa.binary())
        assert _packed_hashes(column) is None
        expected = merkle.merkle_root([h or b"" for h in damaged])
        assert _merkle_checks(good, column, None, data) == (expected, False, whole)
        leaves = [merkle.leaf_hash(h or b"") for h in damaged]
        footer = "".join(r.hex() for r in merkle.block_roots(leaves, block))
        footer_good = dict(good, **{"wormjournal.block_roots": footer})
        assert _merkle_checks(footer_good, column, None, data) == (expected, True, whole)


def test_row_hashes_match_the_chain(history: History) -> None:
    """table.row_hashes (one buffer, stored prev_hash) gives the event hashes the writer made."""
    for n in range(4):
        table = read_segment(history.segment_path(n).read_bytes())
        assert row_hashes(table) == table.column("hash").to_pylist()
        assert row_hashes(in_seq_order(table)) == in_seq_order(table).column("hash").to_pylist()


# -- how the bytes reach the workers, and the command line ---------------------------------------


def test_a_store_that_is_not_a_plain_local_directory_sends_the_bytes(history: History) -> None:
    """Workers read a LocalStore's objects themselves; any other store's bytes are sent to them."""

    class CountingStore(LocalStore):
        gets = 0

        def get(self, name: str) -> bytes:
            type(self).gets += 1
            return super().get(name)

    _payload_flipped(history)
    store = CountingStore(history.paths.store)
    one = verify_store(store, public_keys=[history.verify_key], workers=1)
    CountingStore.gets = 0
    two = verify_store(store, public_keys=[history.verify_key], workers=2)
    assert comparable(one) == comparable(two)
    assert CountingStore.gets >= 4  # every segment was fetched here, by the wrapper, not in a worker
    assert comparable(two) == comparable(verify_store(history.store, public_keys=[history.verify_key], workers=2))


def test_cli_verify_workers(history: History, capsys: pytest.CaptureFixture[str]) -> None:
    from wormjournal.cli import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, main

    pem = history.paths.keys.parent / "verify.pem"
    pem.write_bytes(history.verify_key.pem())
    assert main(["verify", str(history.paths.store), "--public-key", str(pem), "--workers", "2", "--json"]) == EXIT_OK
    assert '"ok": true' in capsys.readouterr().out
    _payload_flipped(history)
    assert main(["verify", str(history.paths.store), "--public-key", str(pem), "--workers", "2"]) == EXIT_FINDINGS
    assert f"segment 1, seq {seq_of(1, 2)}" in capsys.readouterr().out
    assert main(["verify", str(history.paths.store), "--workers", "0"]) == EXIT_ERROR


def test_cli_verify_workers_in_a_fresh_process(history: History) -> None:
    """``python -m wormjournal verify --workers 2``: the workers start from the command's own process."""
    _row_deleted(history)
    r = subprocess.run([sys.executable, "-m", "wormjournal", "verify", str(history.paths.store), "--workers", "2",
                        "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert {(f["kind"], f["segment"]) for f in report["findings"]} >= {("row_count", 2), ("seq_order", 2),
                                                                       ("prev_hash", 2)}
    expected = verify_store(history.store, workers=1)
    assert [dataclasses.asdict(f) for f in expected.findings] == report["findings"]


def _die(*args: object, **kwargs: object) -> None:
    os._exit(9)  # a worker killed mid-segment (out of memory, say)


def test_a_dead_worker_is_an_error_not_a_report(history: History, monkeypatch: pytest.MonkeyPatch) -> None:
    from wormjournal.errors import JournalError

    monkeypatch.setattr(verifier_mod, "check_local_segment", _die)
    with pytest.raises(JournalError, match="worker process died"):
        verify_store(history.store, public_keys=[history.verify_key], workers=2)


def test_objects_expired_before_a_saved_checkpoint_with_workers_that_fetch(history: History) -> None:
    """A local directory's workers fetch the objects themselves: one that is gone before the saved point
    expired, as the verifying process judges it with one worker."""
    saved = history.checkpoint_path(3).read_bytes()
    history.segment_path(0).unlink()
    history.segment_path(1).unlink()
    report = verify_both(history, since=saved)
    assert report.ok, report.to_text()
    assert report.streams[0].expired_segments == 2 and report.streams[0].expired_seqs
    history.segment_path(3).unlink()  # after the saved point (segments 0 to 2): missing, not expired
    report = verify_both(history, since=saved)
    assert [f.kind for f in report.findings if f.segment == 3] == ["object_missing"], report.to_text()
