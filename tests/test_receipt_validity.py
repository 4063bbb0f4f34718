"""An erasure receipt's note is signed by a key of the history that signs its segment or an earlier one (FORMAT.md
3.2, 6.1): one signed by any other key (it would make a data key look destroyed) is a verify finding, and every
read of it refuses as verify does; one signed before a rotation and sealed after it reads."""

from __future__ import annotations

import pytest

from wormjournal import IntegrityError, Journal, JournalConfig, Reader, verify_store
from wormjournal.journal import keys as keys_mod
from wormjournal.retention.shred import RECEIPT_EXECUTION, RECEIPT_TYPE, receipt_payload
from wormjournal.segments.notes import SigningKey

from conftest import History, forge_seal

CFG = JournalConfig(seal_max_age_seconds=None, row_group_rows=4)
RECEIPT = {"scope": "subject", "scope_ref": "psn:" + "0" * 32, "key_ids": ["0" * 32],
           "destroyed_at": "2026-01-01T00:00:00Z",
           "events_affected": 0, "provider": "local", "deletion_references": ["none"], "reason": None}


def test_a_receipt_signed_by_a_key_outside_the_history_is_refused(history: History) -> None:
    current, _ = keys_mod.load_keys(history.paths.keys, history.journal_id)
    outsider = SigningKey.generate(current.name)
    # Sealed by the journal's key (valid here); the receipt inside is signed by a key the history does not hold.
    forge_seal(history.store, current, [(RECEIPT_TYPE, RECEIPT_EXECUTION, receipt_payload(RECEIPT, outsider))])
    report = verify_store(history.store, public_keys=[history.verify_key])
    assert [f.kind for f in report.findings] == ["erasure_receipt"] and not report.receipts
    with pytest.raises(IntegrityError) as err:
        Reader(history.store, public_keys=[history.verify_key]).events(RECEIPT_EXECUTION)
    assert err.value.kind == "erasure_receipt"


def test_a_receipt_signed_before_a_rotation_and_sealed_after_it_reads(history: History) -> None:
    before, _ = keys_mod.load_keys(history.paths.keys, history.journal_id)
    with Journal.open(history.paths.store, key_dir=history.paths.keys, config=CFG) as j:
        j.rotate_key()
    current, _ = keys_mod.load_keys(history.paths.keys, history.journal_id)
    forge_seal(history.store, current, [(RECEIPT_TYPE, RECEIPT_EXECUTION, receipt_payload(RECEIPT, before))])
    assert verify_store(history.store, public_keys=[history.verify_key]).ok
    (event,) = Reader(history.store, public_keys=[history.verify_key]).events(RECEIPT_EXECUTION)
    assert event.payload["receipt"] == RECEIPT
