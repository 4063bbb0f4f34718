"""The verification report: what was checked, what was found, and where."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..trust.findings import Finding

__all__ = ["CHECKS", "Finding", "StreamSummary", "VerifyReport"]


# What verify checks, in FORMAT.md's order (section 10).
CHECKS = (
    "manifest names, signatures and key validity (steps 1-2, 6.1)",
    "manifest links, seq ranges and frontiers (step 3)",
    "segment objects: name, size, SHA-256, version (step 4)",
    "segment schema and metadata (step 5)",
    "event hashes, chain links, seq order, partition dates (step 6)",
    "Merkle roots and row-group roots (step 7)",
    "execution back-links (step 8)",
    "checkpoints: signatures and roots (step 9)",
    "completeness: the latest checkpoint covers every segment (step 10)",
    "stray objects (step 11)",
    "journal heads: a chain, every stream they name present and extended (step 12)",
    "cosigned checkpoints extended; the newest head cosigned by enough witnesses, with --witness-key (step 13)",
    "erasure receipts' signed notes (3.2)",
    "extension of a saved checkpoint or manifest, with --since (10, since)",
)


@dataclasses.dataclass
class StreamSummary:
    stream: str
    segments: int = 0
    events: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str | None = None
    checkpoint_size: int | None = None
    checkpoint_root: str | None = None
    # Verification started at this segment: the ones before it expired, under a trusted --since point.
    horizon: int = 0
    expired_segments: int = 0  # segments before the horizon whose objects (or manifests) are gone
    expired_seqs: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # their seq ranges, merged


@dataclasses.dataclass
class VerifyReport:
    store: str
    journal_id: str | None
    keys: list[str]
    keys_from_store: bool
    streams: list[StreamSummary] = dataclasses.field(default_factory=list)
    findings: list[Finding] = dataclasses.field(default_factory=list)
    bytes_checked: int = 0
    seconds: float = 0.0
    key_uses: dict[str, int] = dataclasses.field(default_factory=dict)  # payload_key_id -> events
    receipts: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # verified erasure receipts
    keys_used: dict[str, int] = dataclasses.field(default_factory=dict)  # signing key id -> manifests it signed
    key_history: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # accepted entries (FORMAT.md 6.1)
    since: dict[str, Any] | None = None  # the saved checkpoint or manifest verified against, and the result
    workers: int = 1
    head: dict[str, Any] | None = None  # the newest journal head (FORMAT.md 8a): number, time, streams
    witnesses: dict[str, Any] | None = None  # with witness keys (step 13): quorum, high-water mark, each one's newest
    notices: list[str] = dataclasses.field(default_factory=list)  # what this store's format cannot prove
    # Set by the writer's own check (Journal.verify) of a journal that has sealed nothing yet: its appended events,
    # read back through the write-ahead log's chain. The store then has nothing to prove, and that is not a finding.
    unsealed: int | None = None

    @property
    def encrypted_events(self) -> int:
        return sum(self.key_uses.values())

    @property
    def shredded_keys(self) -> set[str]:
        return {k for r in self.receipts for k in r["key_ids"]}

    @property
    def shredded_events(self) -> int:
        """Sealed events whose payload's key an erasure receipt reports destroyed."""
        return sum(self.key_uses.get(k, 0) for k in self.shredded_keys)

    @property
    def ok(self) -> bool:
        """True only when something was checked and nothing was wrong (fail closed); for a writer's own check of a
        journal with nothing sealed yet (``unsealed`` set), when its write-ahead log's chain holds."""
        return not self.findings and (any(s.events for s in self.streams) or self.unsealed is not None)

    @property
    def events(self) -> int:
        return sum(s.events for s in self.streams)

    @property
    def segments(self) -> int:
        return sum(s.segments for s in self.streams)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "store": self.store,
            "journal_id": self.journal_id,
            "keys": self.keys,
            "keys_from_store": self.keys_from_store,
            "keys_used": self.keys_used,
            "key_history": self.key_history,
            "checked": list(CHECKS),
            "since": self.since,
            "head": self.head,
            "witnesses": self.witnesses,
            "notices": self.notices,
            "unsealed": self.unsealed,
            "streams_count": len(self.streams),
            "events": self.events,
            "segments": self.segments,
            "bytes_checked": self.bytes_checked,
            "encrypted_events": self.encrypted_events,
            "shredded_events": self.shredded_events,
            "receipts": self.receipts,
            "seconds": round(self.seconds, 3),
            "streams": [dataclasses.asdict(s) for s in self.streams],
            "findings": [dataclasses.asdict(f) for f in self.findings],
        }

    def to_text(self) -> str:
        lines = [
            f"store        {self.store}",
            f"journal      {self.journal_id}",
            f"keys         {', '.join(self.keys) or 'none'}"
            + ("  (taken from the store itself; pass --public-key for an independent check)"
               if self.keys_from_store else ""),
            f"signed by    {', '.join(f'{k} ({n} manifests)' for k, n in sorted(self.keys_used.items())) or 'nothing'}"
            + (f"; key history of {len(self.key_history)} entr{'y' if len(self.key_history) == 1 else 'ies'}"
               if self.key_history else ""),
        ]
        if self.since is not None:
            sc = self.since
            lines.append(f"since        saved {sc['kind']} of stream {sc['stream']}, {sc['tree_size']} segments, root "
                         f"{sc['root'][:16]}…: " + (f"extended to {sc['extends_to']} segments"
                         + (f" (RFC 6962 consistency proof of {len(sc['consistency_proof'])} "
                            f"hash{'' if len(sc['consistency_proof']) == 1 else 'es'} checked)"
                            if "consistency_proof" in sc else " (roots recomputed from the horizon's frontier)")
                         if "extends_to" in sc else "NOT extended (see findings)"))
        for s in self.streams:
            lines.append(
                f"stream {s.stream:<8} {s.events} events, {s.segments} segments, seq {s.first_seq}..{s.last_seq}, "
                f"last hash {s.head_hash[:16] if s.head_hash else '-'}…, checkpoint size {s.checkpoint_size}"
            )
            if s.horizon:
                lines.append(f"  horizon    verified from segment {s.horizon}; segments 0..{s.horizon - 1} "
                             f"are before it ({s.expired_segments} expired), trusted through the saved point")
            if s.expired_seqs:
                ranges = ", ".join(f"{lo}..{hi}" for lo, hi in s.expired_seqs)
                lines.append(f"  expired    events seq {ranges}: gone past their retention, "
                             "vouched for by the saved point")
        if self.head is not None:
            h = self.head
            lines.append(f"head         {h['heads']} head(s), the newest written {h['time']} names "
                         f"{len(h['streams'])} stream(s): " + ", ".join(f"{t['stream']} at {t['size']}"
                                                                       for t in h['streams']))
        if self.witnesses is not None:
            w = self.witnesses
            lines.append(f"witnesses    high-water mark {w['high_water']} heads (cosigned by {w['quorum']}); "
                         + ", ".join(f"{name} cosigned {size}" for name, size in sorted(w['cosigned'].items())))
        lines.append(f"checked      {self.events} events, {self.segments} segments, {len(self.streams)} stream(s), "
                     f"{self.bytes_checked} bytes in {self.seconds:.2f}s ({self.workers} process(es))")
        lines.append(f"payloads     {self.encrypted_events} encrypted, {self.shredded_events} shredded "
                     f"({len(self.receipts)} erasure receipt(s))")
        for r in self.receipts:
            lines.append(f"  erasure seq {r['seq']} ({r['stream']}): {r['scope']} {r['scope_ref']}, "
                         f"{len(r['key_ids'])} key(s) destroyed {r['destroyed_at']}, {r['events_affected']} event(s); "
                         f"{r['deletion_references'][0] if r['deletion_references'] else ''}")
        lines.extend(f"notice       {n}" for n in self.notices)
        if self.findings:
            lines.append(f"FAILED       {len(self.findings)} finding(s):")
            lines.extend(f"  [{f.kind}] {f.where()}: {f.message}" for f in self.findings)
        else:
            lines.append("result       OK: every event hash, chain link, Merkle root, signature, object hash "
                         "and checkpoint verified")
        return "\n".join(lines)
