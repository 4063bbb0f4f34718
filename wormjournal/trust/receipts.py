"""Erasure receipts as a verifier reads them (FORMAT.md, 3.2): the signed note beside the receipt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import IntegrityError, NoteError
from ..events import canonical_json
from ..segments.notes import VerifyKey, open_note

RECEIPT_TYPE = "erasure_receipt"
RECEIPT_EXECUTION = "wormjournal-erasures"
RECEIPT_HEADER = "wormjournal/erasure-receipt/v1"
_RECEIPT_KEYS = {"scope", "scope_ref", "key_ids", "destroyed_at", "events_affected", "provider",
                 "deletion_references", "reason"}


def receipt_text(receipt: dict[str, Any]) -> str:
    return f"{RECEIPT_HEADER}\n{canonical_json(receipt).decode()}\n"


def open_receipt(payload: Any, keys: Sequence[VerifyKey]) -> tuple[dict[str, Any], str]:
    """The receipt of an erasure_receipt payload and the key id that signed it. Raises IntegrityError
    unless its note verifies under ``keys`` and is of the receipt beside it. Where in the stream
    that key may sign receipts is the key ring's question (``KeyRing.receipt_signer_problem``)."""
    if not isinstance(payload, dict) or set(payload) != {"receipt", "note"}:
        raise IntegrityError("an erasure receipt's payload is not {receipt, note}")
    receipt = payload["receipt"]
    if not isinstance(receipt, dict) or set(receipt) != _RECEIPT_KEYS or not isinstance(receipt["key_ids"], list):
        raise IntegrityError("an erasure receipt does not have the fields of FORMAT.md section 3.2")
    try:
        text, key = open_note(str(payload["note"]).encode(), list(keys))
    except NoteError as e:
        raise IntegrityError(f"an erasure receipt's signature does not verify: {e}") from e
    if text != receipt_text(receipt):
        raise IntegrityError("an erasure receipt's signed note is not of the receipt beside it")
    return receipt, key.key_id


def check_receipt(payload: Any, keys: Sequence[VerifyKey]) -> dict[str, Any]:
    """The receipt of an erasure_receipt payload, its note checked. Raises IntegrityError."""
    return open_receipt(payload, keys)[0]
