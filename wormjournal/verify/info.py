"""What a store holds, stream by stream, as the trust core reads it: ``wormjournal info``.

Steps 0 to 3 and 9 to 11 of FORMAT.md section 10 on the notes alone (no segment is read): the
counts come from manifests that verified and linked, and whatever did not is said beside them,
so a summary never passes off an unverified manifest's numbers as the journal's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..errors import IntegrityError, NoteError
from ..segments.manifest import Checkpoint
from ..segments.notes import VerifyKey, split_note
from ..storage import layout
from ..storage.base import ObjectReader
from ..trust import (
    Finding,
    ManifestChain,
    Sink,
    Trust,
    check_checkpoint_root,
    check_committed_length,
    check_complete,
    check_names,
    load_trust,
    open_checkpoint,
)
from ..trust.heads import HeadLog, check_streams


@dataclasses.dataclass
class _Stream:
    chain: ManifestChain
    accepted: list[str]  # the objects of manifests with no finding of their own, in segment order
    latest: Checkpoint | None = None


def _walk(store: ObjectReader, public_keys: Sequence[VerifyKey] | None,
          checkpoints: bool) -> tuple[Trust, dict[str, _Stream], list[str], Sink, HeadLog]:
    """Steps 0 to 3 (and 9, 10 and 12 with ``checkpoints``) and the names of step 11, over every stream:
    the trust, each stream's walk, the objects under segments/, the findings and the heads."""
    trust = load_trust(store, public_keys)
    sink = Sink(collect=True)
    for kind, problem in trust.ring.all_problems():
        sink(kind, problem)
    # Heads before checkpoints before manifests, as verify lists them: none is ahead of a seal in progress.
    heads = sorted(o.name for o in store.list(layout.HEADS_PREFIX)) if checkpoints else []
    cps = [o.name for o in store.list(layout.CHECKPOINTS_PREFIX)] if checkpoints else []
    manifests = [o.name for o in store.list(layout.MANIFESTS_PREFIX)]
    segments = [o.name for o in store.list(layout.SEGMENTS_PREFIX)]
    check_names(cps + manifests + segments, sink)
    streams: dict[str, _Stream] = {}
    for stream in [s for s in layout.streams_from_names(manifests + segments) if layout.is_valid_stream(s)]:
        walk = streams[stream] = _Stream(ManifestChain(trust.journal_id, stream, sink), [])
        for name in manifests:
            if (parsed := layout.parse_numbered(name)) is None or parsed[1] != stream:
                continue
            before = len(sink.findings)
            m = walk.chain.open(name, store.get(name), trust.ring)
            if m is not None and len(sink.findings) == before and layout.parse_segment(m.object) is not None:
                walk.accepted.append(m.object)
        for name in cps:
            if (parsed := layout.parse_numbered(name)) is None or parsed[1] != stream:
                continue
            cp = open_checkpoint(store.get(name), name, journal_id=trust.journal_id, stream=stream, ring=trust.ring,
                                 sink=sink)
            if cp is not None:
                check_checkpoint_root(cp, name, walk.chain)
                walk.latest = cp if walk.latest is None or cp.tree_size > walk.latest.tree_size else walk.latest
        if checkpoints:
            check_complete(walk.latest, walk.chain)
        check_committed_length(walk.chain, trust.ring)
    for stream in sorted(set(trust.ring.committed_streams()) - set(streams)):
        check_committed_length(ManifestChain(trust.journal_id, stream, sink), trust.ring)
    log = HeadLog(trust.journal_id, sink)
    for name in heads:
        log.open(name, store.get(name), trust.ring)
    check_streams(log, {stream: walk.chain for stream, walk in streams.items()})
    return trust, streams, segments, sink, log


@dataclasses.dataclass
class SealedObjects:
    """The segment objects that manifests accepted by the trust core name, per stream, and what was left out."""

    journal_id: str
    objects: list[str]  # segment object names, stream by stream, in segment order
    left_out: list[str]  # objects under segments/ that no accepted manifest names
    findings: list[Finding]


def stream_sizes(store: ObjectReader) -> dict[str, int]:
    """Each stream's number of segments, from the manifests the trust core accepts (the store's own key
    history trusted): what a key rotation fixes as the streams' cutovers. Raises IntegrityError when
    anything in the notes is wrong (a checkpoint behind its manifests excepted: a seal in progress), so
    that no planted or missing object can move a cutover."""
    _, walks, _, sink, _ = _walk(store, None, checkpoints=True)
    wrong = [f for f in sink.findings if f.kind != "checkpoint_behind"]
    if wrong:
        raise IntegrityError(f"the journal's notes do not verify ({wrong[0].where()}: {wrong[0].message}, "
                             f"{wrong[0].kind}; {len(wrong)} finding(s))", finding=wrong[0],
                             hint="run `wormjournal verify`; a key is rotated only on a journal that verifies")
    return {stream: walk.chain.size for stream, walk in walks.items()}


def sealed_objects(store: ObjectReader, public_keys: Sequence[VerifyKey] | None = None) -> SealedObjects:
    """The segments a query may read: those named by a manifest that verified with no finding of its own
    (signature, identity, key validity, links; FORMAT.md 10 steps 1 to 3), stream by stream. The objects'
    bytes are not read here (``verify`` checks them); what is left out is listed, never read."""
    trust, streams, present, sink, _ = _walk(store, public_keys, checkpoints=False)
    accepted = [name for walk in streams.values() for name in walk.accepted]
    named = set(accepted)
    return SealedObjects(trust.journal_id, accepted, [n for n in present if n not in named], sink.findings)


def _cosigned(store: ObjectReader, heads: int) -> list[dict[str, Any]]:
    """Each witness that has a cosigned head in the store (by its key hash, named as its newest cosignature line
    says; not verified: ``verify --witness-key`` checks them), with the newest head log size it cosigned and its
    lag behind the store's heads."""
    newest: dict[bytes, tuple[int, str]] = {}
    for o in store.list(layout.WITNESS_PREFIX):
        parsed = layout.parse_cosigned(o.name)
        if parsed is not None and parsed[0] is None and parsed[1] > newest.get(parsed[2], (0, ""))[0]:
            newest[parsed[2]] = (parsed[1], o.name)
    out = []
    for key_hash, (size, name) in sorted(newest.items()):
        try:
            who = next((s.name for s in split_note(store.get(name))[1] if s.key_hash == key_hash), "?")
        except NoteError:
            who = "?"
        out.append({"witness": who, "key_hash": key_hash.hex(), "cosigned": size, "lag": max(0, heads - size)})
    return out


def journal_info(store: ObjectReader, public_keys: Sequence[VerifyKey] | None = None) -> dict[str, Any]:
    """The journal's streams (segments, events, last seq, chain head, latest checkpoint), each from
    notes the trust core accepted, with the findings it made on the way (``findings``: kind and
    message, empty when every note verified). ``public_keys`` None trusts entry 0 of the key history
    on its own signature. Raises NotFoundError when there is no journal."""
    trust, walks, _, sink, log = _walk(store, public_keys, checkpoints=True)
    streams = []
    for stream, walk in walks.items():
        manifests = walk.chain.manifests
        last = max(manifests.values(), key=lambda m: m.segment, default=None)
        streams.append({
            "stream": stream,
            "segments": len(manifests),
            "events": sum(m.events for m in manifests.values()),
            "last_seq": last.last_seq if last else None,
            "head_hash": last.last_hash.hex() if last else None,
            "checkpoint": ({"tree_size": walk.latest.tree_size, "root_hash": walk.latest.root_hash.hex()}
                           if walk.latest else None),
        })
    return {
        "journal_id": trust.journal_id,
        "created": trust.identity.created,
        "store": getattr(store, "url", str(store)),
        "bytes": sum(o.size for o in store.list("")),
        "keys_from_store": trust.keys_from_store,
        "streams": streams,
        "head": ({"heads": log.size, "number": log.newest.number, "time": log.newest.time} if log.newest else None),
        "witnesses": _cosigned(store, log.size),
        "findings": [{"kind": f.kind, "where": f.where(), "message": f.message} for f in sink.findings],
    }
