"""Erasure receipts: what a shred reports, signed, and how a verifier reads them (FORMAT.md, 3.2)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..segments.notes import SigningKey
from ..storage import layout
from ..storage.base import ObjectReader
from ..storage.objectfile import ObjectFile
from ..trust.receipts import RECEIPT_EXECUTION, RECEIPT_TYPE, check_receipt, receipt_text

__all__ = ["RECEIPT_EXECUTION", "RECEIPT_TYPE", "ErasureReceipt", "check_receipt", "count_key_uses", "key_use_counts",
           "make_receipt", "receipt_payload", "receipt_text"]


@dataclasses.dataclass(frozen=True)
class ErasureReceipt:
    """The result of a shred: the receipt and the seq of the event that holds it.

    ``repeated`` is True when the scope had been shredded before: nothing was destroyed
    or appended now, and ``seq`` is the earlier receipt's.
    """

    seq: int | None
    receipt: dict[str, Any]
    repeated: bool = False


def make_receipt(scope: str, scope_ref: str, destroyed: Sequence[Any], events_affected: int, provider: str,
                 reason: str | None) -> dict[str, Any]:
    """The receipt of FORMAT.md section 3.2 for the data keys ``destroyed`` (their KeyInfo records)."""
    ordered = sorted(destroyed, key=lambda k: k.key_id)
    return {
        "scope": scope, "scope_ref": scope_ref, "key_ids": [k.key_id for k in ordered],
        "destroyed_at": max(k.shredded or "" for k in ordered), "events_affected": events_affected,
        "provider": provider, "deletion_references": [k.deletion_reference for k in ordered], "reason": reason,
    }


def receipt_payload(receipt: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """The payload of an erasure_receipt event: the receipt and a signed note of it."""
    return {"receipt": receipt, "note": key.sign_note(receipt_text(receipt)).decode()}


def key_use_counts(store: ObjectReader, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Events per payload_key_id in every stream's sealed segments.

    Reads one column of each segment (ranged reads), never a payload.
    """
    infos = [i for i in store.list(layout.SEGMENTS_PREFIX) if layout.parse_segment(i.name) is not None]
    counts: dict[str, int] = {}
    for done, info in enumerate(infos, 1):
        column = pq.ParquetFile(ObjectFile(store, info.name, info.size)).read(columns=["payload_key_id"]).column(0)
        if column.null_count < len(column):
            for item in pc.value_counts(column.drop_null()).to_pylist():
                counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
        if progress is not None:
            progress(done, len(infos))
    return counts


def count_key_uses(store: ObjectReader, key_ids: Iterable[str], extra: Iterable[str | None] = (),
                   progress: Callable[[int, int], None] | None = None) -> int:
    """Events of every stream's sealed segments (and ``extra`` payload_key_ids) encrypted with ``key_ids``."""
    wanted = set(key_ids)
    counts = key_use_counts(store, progress)
    return sum(counts.get(k, 0) for k in wanted) + sum(1 for k in extra if k in wanted)
