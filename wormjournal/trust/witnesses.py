"""Witnesses' cosignatures (FORMAT.md 8b and 10, step 13): what a stored cosigned checkpoint proves about the
store, and whether enough witnesses have seen its newest head. Does no IO.

A cosigned checkpoint in ``witness/`` is first a statement of the log itself (its note carries the journal's
signature): the store must extend it whoever cosigned it. Each cosignature by a witness the auditor trusts
adds that the witness saw it and will cosign nothing that does not extend it, which is what makes a rollback
or a fork visible without a file of the auditor's own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from ..errors import NoteError
from ..events import parse_ts
from ..segments.cosign import Cosigner, cosignatures
from ..segments.head import Head, StreamTip
from ..segments.manifest import Checkpoint, checkpoint_origin
from ..segments.notes import open_note
from ..storage import layout
from .chain import ManifestChain
from .findings import Sink
from .heads import HeadLog
from .keyring import KeyRing

FUTURE_SKEW_SECONDS = 300  # a head written later than this after the verification is not believed recent


@dataclasses.dataclass(frozen=True)
class Cosigned:
    """A checkpoint of the head log (``stream`` None, with its ``head``) or of a stream, as stored in ``witness/``,
    with the cosignatures on it that verify under the witnesses given: {witness name: timestamp}."""

    object: str
    stream: str | None
    size: int
    root: bytes
    head: Head | None
    witnesses: dict[str, int]

    def who(self) -> str:
        if not self.witnesses:
            return f"the journal's own signed checkpoint in {self.object}"
        return " and ".join(f"witness {name} (cosigned at {ts})" for name, ts in sorted(self.witnesses.items()))


def open_cosigned(name: str, data: bytes, *, journal_id: str, ring: KeyRing, witnesses: Sequence[Cosigner],
                  sink: Sink) -> Cosigned | None:
    """A ``witness/`` object: its name (``unexpected_object``), the journal's signature (``witness_signature``),
    its text, a head or the named stream's checkpoint of the size its name gives (``witness_format``), and the
    cosignatures on it by ``witnesses``. None when it cannot be used."""
    parsed = layout.parse_cosigned(name)
    if parsed is None:
        sink("unexpected_object", "not a name of a cosigned checkpoint", object=name)
        return None
    stream, size, _ = parsed
    try:
        text, _ = open_note(data, ring.keys())
    except NoteError as e:
        sink("witness_signature", f"the cosigned checkpoint is not signed by the journal: {e}", stream=stream,
             object=name)
        return None
    try:
        head = None
        if stream is None:
            head = Head.parse(text, journal_id)
            cp = head.checkpoint()
        else:
            cp = Checkpoint.parse(text)
            if cp.origin != checkpoint_origin(journal_id, stream):
                raise NoteError(f"its origin is {cp.origin[:80]!r}")
        if cp.tree_size != size or not size:
            raise NoteError(f"its tree size is {cp.tree_size}, its name says {size} (and a log of none has nothing "
                            "to cosign)")
        cosigned = cosignatures(data, witnesses)
    except NoteError as e:
        sink("witness_format", f"not a cosigned checkpoint of this journal: {e}", stream=stream, object=name)
        return None
    return Cosigned(name, stream, size, cp.root_hash, head, cosigned)


def check_extended(cosigned: Sequence[Cosigned], log: HeadLog, chains: Mapping[str, ManifestChain],
                   sink: Sink) -> None:
    """The store extends every cosigned checkpoint: the head log's or the stream's size and root
    (``witness_rollback``, ``witness_inconsistent``), and every stream a cosigned head names, as step 12 checks
    a head's streams."""
    for c in cosigned:
        if c.stream is None:
            _check_size_root(c, "the head log", f"{log.size} heads", log.size, log.roots.get(c.size), sink)
            assert c.head is not None
            for tip in c.head.streams:
                _check_tip(c, tip, chains.get(tip.stream), sink)
        else:
            chain = chains.get(c.stream)
            size = chain.size if chain is not None else 0
            root = chain.roots.get(c.size) if chain is not None else None
            if chain is not None and root is None and chain.horizon and c.size <= chain.horizon:
                continue  # before the retention horizon
            _check_size_root(c, f"stream {c.stream}", f"{size} segments", size, root, sink)


def _check_size_root(c: Cosigned, what: str, has: str, size: int, root: bytes | None, sink: Sink) -> None:
    if size < c.size:
        sink("witness_rollback", f"{c.who()}: {what} at size {c.size}; the store has {has} (rolled back, or the "
             "newest removed)", stream=c.stream, object=c.object)
    elif root is not None and root != c.root:
        sink("witness_inconsistent", f"{c.who()}: {what} at size {c.size} with root {c.root.hex()[:16]}; the store's "
             f"make root {root.hex()[:16]} (history rewritten, or a fork)", stream=c.stream, object=c.object)


def _check_tip(c: Cosigned, tip: StreamTip, chain: ManifestChain | None, sink: Sink) -> None:
    if chain is None or chain.size < tip.size:
        has = f"{chain.size} segments" if chain is not None and chain.size else "none of it (the stream deleted)"
        sink("witness_rollback", f"{c.who()}: a head naming stream {tip.stream} at {tip.size} segments; the store "
             f"has {has}", stream=tip.stream, object=c.object)
        return
    root = chain.roots.get(tip.size)
    if root is not None and root != tip.root:
        sink("witness_inconsistent", f"{c.who()}: a head naming stream {tip.stream} at {tip.size} segments with root "
             f"{tip.root.hex()[:16]}; the store's manifests make another (history rewritten, or a fork)",
             stream=tip.stream, object=c.object)


def check_lag(cosigned: Sequence[Cosigned], log: HeadLog, witnesses: Sequence[Cosigner], *, quorum: int,
              max_lag: float, now: float, sink: Sink) -> str | None:
    """The store's newest head is cosigned by ``quorum`` of ``witnesses`` (``witness_lag`` when it is not and it was
    written more than ``max_lag`` seconds before ``now``, or after it). Returns a notice when it is not yet, within
    the lag allowed."""
    newest = log.newest
    if newest is None:
        return None
    best: dict[str, int] = {}
    for c in cosigned:
        if c.stream is None:
            for name in c.witnesses:
                best[name] = max(best.get(name, 0), c.size)
    have = [w.name for w in witnesses if best.get(w.name, 0) >= log.size]
    if len(have) >= quorum:
        return None
    behind = ", ".join(f"{w.name} at {best.get(w.name, 0)}" for w in witnesses if w.name not in have)
    message = (f"head {newest.number} (the head log at {log.size}) is cosigned by {len(have)} of the {quorum} "
               f"witness(es) needed; the newest each other cosigned: {behind}")
    age = now - parse_ts(newest.time) / 1e6
    if age > max_lag or age < -FUTURE_SKEW_SECONDS:
        sink("witness_lag", f"{message}; written {age:.0f} s before this verification (at most {max_lag:.0f} "
             "allowed): the witnesses refused it, or cannot be reached")
        return None
    return f"{message}; written {age:.0f} s ago, within the {max_lag:.0f} s a witness may lag"


def high_water(cosigned: Sequence[Cosigned], quorum: int) -> int:
    """The largest head log size that ``quorum`` witnesses cosigned (0 for none)."""
    best: dict[str, int] = {}
    for c in cosigned:
        if c.stream is None:
            for name in c.witnesses:
                best[name] = max(best.get(name, 0), c.size)
    sizes = sorted(best.values(), reverse=True)
    return sizes[quorum - 1] if len(sizes) >= quorum else 0
