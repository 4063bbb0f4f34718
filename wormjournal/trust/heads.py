"""The journal's heads (FORMAT.md 8a and 10, step 12): a chain of signed notes, each naming every stream's
latest checkpoint, so that a stream that existed cannot disappear and none can shrink.

Fed the heads' bytes in number order (:meth:`HeadLog.open`), it checks each head's signature, text and place
in the head log, and that no head takes back what the one before it said; :func:`check_streams` then holds
the streams in the store to what the heads say. Does no IO.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ..errors import NoteError
from ..segments import merkle
from ..segments.head import Head, StreamTip
from ..segments.notes import open_note
from ..storage import layout
from .chain import ManifestChain
from .findings import Sink
from .keyring import KeyRing


@dataclasses.dataclass
class HeadLog:
    """The head log as read so far: heads 0 .. size - 1, fed in order."""

    journal_id: str
    sink: Sink
    heads: dict[int, Head] = dataclasses.field(default_factory=dict)
    roots: dict[int, bytes] = dataclasses.field(default_factory=dict)  # tree size -> root, from the heads read
    notices: list[str] = dataclasses.field(default_factory=list)
    _frontier: list[bytes] | None = dataclasses.field(default_factory=list)
    _expected: int = 0

    @property
    def size(self) -> int:
        return self._expected

    @property
    def newest(self) -> Head | None:
        return self.heads.get(self._expected - 1)

    def open(self, name: str, data: bytes, ring: KeyRing) -> Head | None:
        """Head object ``name``: its signature, text, number and signer, then its place in the log (:meth:`add`)."""
        n = layout.parse_head(name)
        if n is None:
            self.sink("unexpected_object", "not a head name", object=name)
            return None
        head = open_head(data, name, n, journal_id=self.journal_id, ring=ring, sink=self.sink)
        self.add(n, head, name)
        return head

    def add(self, n: int, head: Head | None, name: str) -> None:
        """Head ``n``: numbered after the last (a gap is heads removed), extending the head log the head before it
        made, and taking back nothing that head said of a stream."""
        if n != self._expected and not self._expected:
            # Heads are kept as long as checkpoints and expire with them. A head names every stream any head before
            # it named, so the first heads gone take nothing away: the log is checked from the first one present.
            self.notices.append(f"heads 0 to {n - 1} are gone (expired, or removed): the head log is checked from "
                                f"head {n}, whose frontier stands for them")
            self._frontier = None
        elif n != self._expected:
            self.sink("head_missing", f"heads {self._expected} to {n - 1} are missing", object=name)
            self._frontier = None  # the log's leaves before n are unknown: n's frontier is taken as it says
        self._expected = n + 1
        if head is None:
            self._frontier = None
            return
        if self._frontier is not None and list(head.frontier) != self._frontier:
            self.sink("head_chain", f"head {n} does not extend the head log of the heads before it (its frontier "
                      "is another tree): heads replaced or forked", object=name)
        prev = self.heads.get(n - 1)
        if prev is not None:
            _check_no_regress(prev, head, name, self.sink)
        self._frontier = head.tree_after()
        self.roots[n + 1] = merkle.frontier_root(self._frontier)
        self.heads[n] = head


def open_head(data: bytes, name: str, n: int, *, journal_id: str, ring: KeyRing, sink: Sink) -> Head | None:
    """Head ``n``'s note: signed by a trusted key (``head_signature``), strictly a head of this journal
    (``head_format``) numbered as its name says (``head_identity``), its signer not retired before the last
    segment of any stream it names (``key_validity``). None when it cannot be used."""
    try:
        text, key = open_note(data, ring.keys())
    except NoteError as e:
        sink("head_signature", f"head does not verify: {e}", object=name)
        return None
    try:
        head = Head.parse(text, journal_id)
    except NoteError as e:
        sink("head_format", f"head does not parse: {e}", object=name)
        return None
    if head.number != n:
        sink("head_identity", f"head number {head.number} does not match its name", object=name)
        return None
    for tip in head.streams:
        problem = ring.checkpoint_signer_problem(key.key_id, tip.stream, tip.size)
        if problem is not None:
            sink("key_validity", f"head signed out of its key's validity: {problem}", stream=tip.stream, object=name)
    return head


def _check_no_regress(prev: Head, head: Head, name: str, sink: Sink) -> None:
    tips = head.tips()
    for old in prev.streams:
        new = tips.get(old.stream)
        if new is None:
            sink("head_regress", f"head {head.number} drops stream {old.stream}, which head {prev.number} names at "
                 f"{old.size} segments", stream=old.stream, object=name)
        elif new.size < old.size or (new.size == old.size and new.root != old.root):
            sink("head_regress", f"head {head.number} names stream {old.stream} at {new.size} segments, root "
                 f"{new.root.hex()[:16]}; head {prev.number} named it at {old.size}, root {old.root.hex()[:16]}",
                 stream=old.stream, object=name)


def check_streams(log: HeadLog, chains: Mapping[str, ManifestChain]) -> None:
    """Every stream a head names is in the store (``head_stream_missing``), with at least the segments the head
    says (``head_rollback``) and the same first ones (``head_inconsistent``: the root over that many manifests)."""
    seen: set[StreamTip] = set()
    missing: dict[str, StreamTip] = {}
    for head in log.heads.values():
        for tip in head.streams:
            if tip in seen:
                continue
            seen.add(tip)
            chain = chains.get(tip.stream)
            if chain is None or not chain.size:
                if tip.stream not in missing or tip.size > missing[tip.stream].size:
                    missing[tip.stream] = tip
                continue
            check_tip(tip, chain, f"head {head.number}", log.sink)
    for stream, tip in sorted(missing.items()):
        log.sink("head_stream_missing", f"the heads name stream {stream} (at {tip.size} segments); the store has "
                 "none of it (the stream deleted)", stream=stream)


def check_tip(tip: StreamTip, chain: ManifestChain, who: str, sink: Sink) -> None:
    """The stream extends what ``who`` says of it: ``tip.size`` segments whose checkpoint root is ``tip.root``."""
    if tip.size > chain.size:
        sink("head_rollback", f"{who} says stream {tip.stream} has {tip.size} segments; the store has {chain.size} "
             "(segments removed with their manifests and checkpoints, or rolled back)", stream=tip.stream)
        return
    root = chain.root_at(tip.size)
    if root is None and chain.horizon and tip.size <= chain.horizon:
        return  # before the retention horizon: those manifests expired
    if root != tip.root:
        sink("head_inconsistent", f"{who} says the first {tip.size} segments of stream {tip.stream} have checkpoint "
             f"root {tip.root.hex()[:16]}; the store's manifests make another (history rewritten, or a fork)",
             stream=tip.stream)


def behind(log: HeadLog, sizes: Mapping[str, int]) -> list[str]:
    """Notices: streams whose latest checkpoint the newest head does not name yet (a writer that stopped between
    its checkpoint and its head, or a seal under way). Not findings: what a head cannot name, no head protects."""
    newest = log.newest
    tips = newest.tips() if newest is not None else {}
    out = []
    for stream, size in sorted(sizes.items()):
        tip = tips.get(stream)
        if size and (tip is None or tip.size < size):
            out.append(f"stream {stream}: the newest head names {tip.size if tip else 0} of its {size} checkpointed "
                       "segments; what lies beyond is protected by the next head")
    return out
