"""What a store holds, stream by stream, as the trust core reads it: ``wormjournal info``.

Steps 0 to 3 and 9 to 11 of FORMAT.md section 10 on the notes alone (no segment is read): the
counts come from manifests that verified and linked, and whatever did not is said beside them,
so a summary never passes off an unverified manifest's numbers as the journal's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..segments.manifest import Checkpoint
from ..segments.notes import VerifyKey
from ..storage import layout
from ..storage.base import ObjectReader
from ..trust import (
    Finding,
    ManifestChain,
    Sink,
    check_checkpoint_root,
    check_complete,
    check_names,
    load_trust,
    open_checkpoint,
    open_manifest,
)


@dataclasses.dataclass
class SealedObjects:
    """The segment objects that manifests accepted by the trust core name, per stream, and what was left out."""

    journal_id: str
    objects: list[str]  # segment object names, stream by stream, in segment order
    left_out: list[str]  # objects under segments/ that no accepted manifest names
    findings: list[Finding]


def sealed_objects(store: ObjectReader, public_keys: Sequence[VerifyKey] | None = None) -> SealedObjects:
    """The segments a query may read: those named by a manifest that verified with no finding of its own
    (signature, identity, key validity, links; FORMAT.md 10 steps 1 to 3), stream by stream. The objects'
    bytes are not read here (``verify`` checks them); what is left out is listed, never read."""
    trust = load_trust(store, public_keys)
    sink = Sink(collect=True)
    for kind, problem in trust.ring.all_problems():
        sink(kind, problem)
    manifests = [o.name for o in store.list(layout.MANIFESTS_PREFIX)]
    present = [o.name for o in store.list(layout.SEGMENTS_PREFIX)]
    check_names(manifests, sink)
    accepted: list[str] = []
    for stream in [s for s in layout.streams_from_names(manifests) if layout.is_valid_stream(s)]:
        chain = ManifestChain(trust.journal_id, stream, sink)
        for name in manifests:
            parsed = layout.parse_numbered(name)
            if parsed is None or parsed[1] != stream:
                continue
            before = len(sink.findings)
            m = open_manifest(store.get(name), name, parsed[2], journal_id=trust.journal_id, stream=stream,
                              ring=trust.ring, sink=sink)
            chain.add(parsed[2], m)
            if m is not None and len(sink.findings) == before and layout.parse_segment(m.object) is not None:
                accepted.append(m.object)
    named = set(accepted)
    return SealedObjects(trust.journal_id, accepted, [n for n in present if n not in named], sink.findings)


def journal_info(store: ObjectReader, public_keys: Sequence[VerifyKey] | None = None) -> dict[str, Any]:
    """The journal's streams (segments, events, last seq, chain head, latest checkpoint), each from
    notes the trust core accepted, with the findings it made on the way (``findings``: kind and
    message, empty when every note verified). ``public_keys`` None trusts entry 0 of the key history
    on its own signature. Raises NotFoundError when there is no journal."""
    trust = load_trust(store, public_keys)
    sink = Sink(collect=True)
    for kind, problem in trust.ring.all_problems():
        sink(kind, problem)
    # Checkpoints are listed before manifests, as readers do: none is ahead of a seal in progress.
    checkpoints = [o.name for o in store.list(layout.CHECKPOINTS_PREFIX)]
    manifests = [o.name for o in store.list(layout.MANIFESTS_PREFIX)]
    segments = [o for o in store.list(layout.SEGMENTS_PREFIX)]
    check_names(checkpoints + manifests + [o.name for o in segments], sink)
    streams = []
    for stream in [s for s in layout.streams_from_names(manifests + [o.name for o in segments])
                   if layout.is_valid_stream(s)]:
        chain = ManifestChain(trust.journal_id, stream, sink)
        for name in manifests:
            parsed = layout.parse_numbered(name)
            if parsed is None or parsed[1] != stream:
                continue
            chain.add(parsed[2], open_manifest(store.get(name), name, parsed[2], journal_id=trust.journal_id,
                                               stream=stream, ring=trust.ring, sink=sink))
        latest: Checkpoint | None = None
        for name in checkpoints:
            parsed = layout.parse_numbered(name)
            if parsed is None or parsed[1] != stream:
                continue
            cp = open_checkpoint(store.get(name), name, journal_id=trust.journal_id, stream=stream, ring=trust.ring,
                                 sink=sink)
            if cp is not None:
                check_checkpoint_root(cp, name, chain)
                latest = cp if latest is None or cp.tree_size > latest.tree_size else latest
        check_complete(latest, chain)
        last = max(chain.manifests.values(), key=lambda m: m.segment, default=None)
        streams.append({
            "stream": stream,
            "segments": len(chain.manifests),
            "events": sum(m.events for m in chain.manifests.values()),
            "last_seq": last.last_seq if last else None,
            "head_hash": last.last_hash.hex() if last else None,
            "checkpoint": {"tree_size": latest.tree_size, "root_hash": latest.root_hash.hex()} if latest else None,
        })
    return {
        "journal_id": trust.journal_id,
        "created": trust.identity.created,
        "store": getattr(store, "url", str(store)),
        "bytes": sum(o.size for o in store.list("")),
        "keys_from_store": trust.keys_from_store,
        "streams": streams,
        "findings": [{"kind": f.kind, "where": f.where(), "message": f.message} for f in sink.findings],
    }
