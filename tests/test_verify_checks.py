"""Verification steps that only a faulty or hostile writer holding the real key can break.

Each test seals events through the real Sealer and signing key, with one rule of
FORMAT.md broken, and checks that verify names that rule. Every signature and
hash in these stores is valid: only the semantic checks can catch them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from wormjournal.events import StoredEvent, encode_fields, event_hash, genesis_hash, parse_ts
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal import sealer as sealer_mod
from wormjournal.journal.keys import load_keys
from wormjournal.storage import layout
from wormjournal.storage.local import LocalStore
from wormjournal.trust import load_trust
from wormjournal.trust.load import read_identity
from wormjournal.verify import verify_store

DAY1 = dt.datetime(2025, 5, 1, 23, 59, 0, tzinfo=dt.UTC)


def chain(journal_id: str, rows: list[dict]) -> list[StoredEvent]:
    """StoredEvents with correct hashes for the given (possibly wrong) field values."""
    prev = genesis_hash(journal_id, "main")
    out = []
    for seq, row in enumerate(rows):
        values = (
            seq, f"ev-{seq}", parse_ts(row["ts"]), "node_started", None, row["execution_id"], None, None, None,
            None, None, None, row["exec_prev_seq"], "json", None, b"{}",
        )
        h = event_hash(prev, encode_fields(values))
        out.append(StoredEvent(*values, prev_hash=prev, hash=h))
        prev = h
    return out


def seal_forged(tmp_path: Path, rows: list[dict]) -> LocalStore:
    store_dir, keys = tmp_path / "store", tmp_path / "keys"
    Journal.create(store_dir, key_dir=keys, config=JournalConfig(seal_max_age_seconds=None)).close()
    store = LocalStore(store_dir)
    journal_id = read_identity(store).journal_id
    key, _ = load_keys(keys, journal_id)
    ring = load_trust(store).ring
    state = sealer_mod.load_sealed_state(store, journal_id, "main", ring)
    sealer = sealer_mod.Sealer(store, state, lambda _segment: key, lambda: ring, row_group_rows=128,
                               segment_max_events=1000)
    sealer.seal(chain(journal_id, rows))
    return store


def kinds(store: LocalStore) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in verify_store(store).findings:
        out.setdefault(f.kind, []).append(f)
    return out


def test_a_correct_forgery_control_passes(tmp_path: Path) -> None:
    rows = [
        {"ts": DAY1, "execution_id": "a", "exec_prev_seq": None},
        {"ts": DAY1, "execution_id": "b", "exec_prev_seq": None},
        {"ts": DAY1, "execution_id": "a", "exec_prev_seq": 0},
    ]
    report = verify_store(seal_forged(tmp_path, rows))
    assert report.ok, report.to_text()


@pytest.mark.parametrize(
    ("links", "bad_seq"),
    [
        ([None, None, None], 2),  # the back-link hides event 0 of execution a
        ([None, None, 1], 2),  # links to another execution's event
        ([None, 0, 0], 1),  # the first event of b claims a predecessor
    ],
)
def test_wrong_execution_back_link_is_found(tmp_path: Path, links: list, bad_seq: int) -> None:
    rows = [
        {"ts": DAY1, "execution_id": e, "exec_prev_seq": link}
        for e, link in zip(["a", "b", "a"], links, strict=True)
    ]
    found = kinds(seal_forged(tmp_path, rows))
    assert set(found) == {"exec_link"}
    assert found["exec_link"][0].seq == bad_seq


def test_event_outside_its_partition_date_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A writer that ignores the one-date-per-segment rule.
    monkeypatch.setattr(sealer_mod.Sealer, "_chunk_end", lambda self, events, start: len(events))
    rows = [
        {"ts": DAY1, "execution_id": "a", "exec_prev_seq": None},
        {"ts": DAY1 + dt.timedelta(minutes=2), "execution_id": "a", "exec_prev_seq": 0},
    ]
    found = kinds(seal_forged(tmp_path, rows))
    assert set(found) == {"partition_date"}
    assert found["partition_date"][0].seq == 1


def test_manifest_naming_a_foreign_object_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = layout.segment
    monkeypatch.setattr(layout, "segment", lambda stream, date, n: real("other", date, n))
    rows = [{"ts": DAY1, "execution_id": "a", "exec_prev_seq": None}]
    found = kinds(seal_forged(tmp_path, rows))
    assert "object_name" in found
    assert found["object_name"][0].segment == 0


def test_segment_metadata_of_another_journal_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = sealer_mod.build_segment
    monkeypatch.setattr(sealer_mod, "build_segment",
                        lambda events, **kw: real(events, **{**kw, "journal_id": "someone-else"}))
    rows = [{"ts": DAY1, "execution_id": "a", "exec_prev_seq": None}]
    found = kinds(seal_forged(tmp_path, rows))
    assert set(found) == {"segment_metadata"}
