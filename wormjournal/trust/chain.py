"""A stream's manifests and checkpoints, checked (FORMAT.md section 10, steps 1 to 3 and 9 to 11).

IO-free: fed the notes' bytes in order, it says which manifests are genuine, where the chain
breaks and what the checkpoints commit to. The verifier runs it collecting every finding; each
reader and the writer's recovery run it raising at the first. Each check carries its step number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from ..errors import NoteError
from ..events import StoredEvent, canonical_time, genesis_hash
from ..segments import merkle
from ..segments.manifest import ZERO_HASH, Checkpoint, Manifest, checkpoint_origin
from ..segments.notes import open_note, split_note
from ..storage import layout
from .findings import Sink
from .keyring import KeyRing


def claimed_object(data: bytes) -> str | None:
    """The object an unverifiable manifest names (so that it is not reported twice), or None."""
    try:
        return Manifest.parse(split_note(data)[0]).object
    except NoteError:
        return None


def open_manifest(data: bytes, name: str, n: int, *, journal_id: str, stream: str, ring: KeyRing,
                  sink: Sink) -> Manifest | None:
    """Step 2: manifest ``n`` opened with the trusted keys, parsed strictly, naming itself, signed by
    the key that signs segment ``n`` of the stream (6.1). None when it cannot be used at all."""
    try:
        text, key = open_note(data, ring.keys())
    except NoteError as e:
        sink("manifest_signature", f"manifest does not verify: {e}", stream=stream, segment=n, object=name)
        return None
    try:
        m = Manifest.parse(text)
    except NoteError as e:
        sink("manifest_signature", f"manifest does not parse: {e}", stream=stream, segment=n, object=name)
        return None
    if (m.journal, m.stream, m.segment) != (journal_id, stream, n):
        sink("manifest_identity", "manifest names another journal, stream or segment number", stream=stream, segment=n)
    if m.key_id != key.key_id:
        sink("manifest_key", f"manifest names key {m.key_id} but is signed by {key.key_id}", stream=stream, segment=n)
    if not canonical_time(m.time):
        sink("manifest_time", f"manifest time {m.time[:40]!r} is not an RFC 3339 UTC time as FORMAT.md writes it",
             stream=stream, segment=n)
    problem = ring.signer_problem(key.key_id, stream, n, m.time)
    if problem is not None:
        sink("key_validity", f"manifest signed out of its key's validity: {problem}", stream=stream, segment=n)
    return m


@dataclasses.dataclass
class ManifestChain:
    """Steps 1 and 3 over one stream's manifests, fed in name order (:meth:`add`).

    ``anchor_size``: a trusted point of the stream (``verify --since``) of that many segments;
    manifests before it may have expired, and the chain then starts at the first one present
    (its frontier is its claim, proved only when the saved root is reached).
    """

    journal_id: str
    stream: str
    sink: Sink
    anchor_size: int | None = None
    # M[i] of the manifests present (b"" for an unusable one, and before a horizon); a gap adds nothing,
    # so a checkpoint over more segments than are present is "ahead" (segments removed).
    hashes: list[bytes] = dataclasses.field(default_factory=list)
    roots: dict[int, bytes] = dataclasses.field(default_factory=dict)  # tree size -> root from the manifests
    leaves: list[bytes] | None = dataclasses.field(default_factory=list)  # while every manifest from 0 is known
    manifests: dict[int, Manifest] = dataclasses.field(default_factory=dict)
    horizon: int = 0
    _expected: int = 0
    _frontier: list[bytes] | None = dataclasses.field(default_factory=list)
    _prev_manifest: bytes | None = ZERO_HASH
    _prev_last_seq: int = -1
    _prev_last_hash: bytes = b""

    def __post_init__(self) -> None:
        self._prev_last_hash = genesis_hash(self.journal_id, self.stream)

    @property
    def size(self) -> int:
        """Manifests seen (the tree size the latest checkpoint must have; with no gap, the next segment)."""
        return len(self.hashes)

    @property
    def next_seq(self) -> int:
        return self._prev_last_seq + 1

    @property
    def last_hash(self) -> bytes:
        return self._prev_last_hash

    @property
    def frontier(self) -> list[bytes]:
        """The checkpoint tree over every manifest so far (FORMAT.md section 4)."""
        return list(self._frontier) if self._frontier is not None else []

    def root(self) -> bytes | None:
        return self.roots.get(self.size) if self.size else merkle.frontier_root([])

    def root_at(self, size: int) -> bytes | None:
        """The checkpoint root over the first ``size`` manifests: as walked, or from their hashes when the chain was
        resumed from them; None when they are not all known (a gap, a retention horizon)."""
        root = self.roots.get(size)
        if root is None and 0 < size <= len(self.hashes) and all(self.hashes[:size]):
            root = self.roots[size] = merkle.merkle_root(self.hashes[:size])
        return root

    @classmethod
    def resumed(cls, journal_id: str, stream: str, sink: Sink, hashes: Sequence[bytes],
                last: Manifest) -> ManifestChain:
        """The chain over manifests ``0 .. len(hashes) - 1`` known by their hashes alone (a writer's own record of
        what it sealed), ``last`` the newest of them, opened (step 2): what comes after it is added (steps 1 and
        3) as to a walked chain. ``manifests`` holds ``last`` only. Raises ValueError when ``last`` is not the
        manifest of the last hash, or its frontier not the tree of the hashes before it."""
        n = len(hashes)
        if not n or last.segment != n - 1 or last.manifest_hash() != hashes[-1]:
            raise ValueError(f"manifest {last.segment} is not the last of the {n} manifests recorded")
        frontier: list[bytes] = []
        for i, h in enumerate(hashes):
            if i == n - 1 and list(last.frontier) != frontier:
                raise ValueError(f"manifest {last.segment}'s frontier is not the tree of the manifests recorded")
            frontier = merkle.frontier_push(frontier, i, merkle.leaf_hash(h))
        chain = cls(journal_id, stream, sink)
        chain.hashes, chain.leaves, chain._expected, chain._frontier = list(hashes), None, n, frontier
        chain.roots[n] = merkle.frontier_root(frontier)
        chain.manifests[n - 1] = last
        chain._prev_manifest, chain._prev_last_seq, chain._prev_last_hash = hashes[-1], last.last_seq, last.last_hash
        return chain

    def check_hash(self, m: Manifest, name: str) -> None:
        """A manifest read after the chain was built from its hashes (chain_from_checkpoint): it must be the
        one whose hash the checkpoint commits to."""
        n = m.segment
        if not 0 <= n < len(self.hashes) or m.manifest_hash() != self.hashes[n]:
            self.sink("checkpoint_root", f"manifest {n} is not the one the checkpoint commits to (history "
                      "rewritten?)", stream=self.stream, segment=n, object=name)

    def open(self, name: str, data: bytes, ring: KeyRing) -> Manifest | None:
        """Manifest object ``name`` (its bytes ``data``): step 2 (:func:`open_manifest`), then steps 1 and 3
        (:meth:`add`). Returns the manifest, or None when it cannot be used (reported)."""
        parsed = layout.parse_numbered(name)
        if parsed is None or parsed[0] != "manifests" or parsed[1] != self.stream:
            self.sink("unexpected_object", "not a manifest name of this stream", stream=self.stream, object=name)
            return None
        m = open_manifest(data, name, parsed[2], journal_id=self.journal_id, stream=self.stream, ring=ring,
                          sink=self.sink)
        self.add(parsed[2], m)
        return m

    def add(self, n: int, m: Manifest | None) -> bool:
        """Manifest ``n`` (None: present but unusable, already reported). Returns True when the chain
        starts here, after manifests that expired before the trusted point."""
        find = self.sink
        s = self.stream
        horizon = (n != self._expected and self._expected == 0 and m is not None and self.anchor_size is not None
                   and n <= self.anchor_size)
        if horizon:
            assert m is not None
            self.horizon = n
            self.hashes.extend([b""] * n)  # placeholders: the tree still has n leaves before this one
            self._prev_manifest, self._prev_last_seq, self._prev_last_hash = (m.prev_manifest, m.first_seq - 1,
                                                                               m.prev_hash)
            self._frontier = list(m.frontier)
            self.roots[n] = merkle.frontier_root(self._frontier)  # a claim, proved only by the saved root
            self.leaves = None
        elif n != self._expected:  # step 1: numbers contiguous from 0
            find("manifest_missing", f"segments {self._expected}..{n - 1} have no manifest (removed?)", stream=s,
                 segment=self._expected)
            self.leaves = None
            self._frontier = list(m.frontier) if m is not None else None  # go on from the manifest's own claim
        self._expected = n + 1  # each gap is reported once
        if m is not None and m.segment != n:
            m = None  # it names another segment (manifest_identity, reported): nothing of it can be chained here
        if m is None:
            self._prev_manifest, self._frontier, self.leaves = None, None, None
            self.hashes.append(b"")
            return horizon
        # Step 3: the links to the manifest before, and this manifest's own counts.
        if self._frontier is not None and list(m.frontier) != self._frontier:
            find("manifest_frontier", "manifest's frontier is not the checkpoint tree of the manifests before it",
                 stream=s, segment=n)
        if self._prev_manifest is not None and m.prev_manifest != self._prev_manifest:
            find("manifest_link", "manifest does not link to the previous manifest", stream=s, segment=n)
        if m.first_seq != self._prev_last_seq + 1:
            find("seq_gap", f"segment starts at seq {m.first_seq}, expected {self._prev_last_seq + 1}", stream=s,
                 segment=n, seq=m.first_seq)
        if m.prev_hash != self._prev_last_hash:
            find("chain_link", "segment's prev_hash is not the previous segment's last hash", stream=s, segment=n,
                 seq=m.first_seq)
        if m.last_seq < m.first_seq or m.events != m.last_seq - m.first_seq + 1:
            find("manifest_count", f"manifest counts {m.events} events for seq {m.first_seq}..{m.last_seq}", stream=s,
                 segment=n, object=m.object)
        leaf = merkle.leaf_hash(m.manifest_hash())
        frontier = self._frontier if self._frontier is not None else list(m.frontier)
        self._frontier = merkle.frontier_push(frontier, n, leaf)
        self.roots[n + 1] = merkle.frontier_root(self._frontier)
        if self.leaves is not None:
            self.leaves.append(leaf)
        self.manifests[n] = m
        self.hashes.append(m.manifest_hash())
        self._prev_manifest = self.hashes[-1]
        self._prev_last_seq, self._prev_last_hash = m.last_seq, m.last_hash
        return horizon


def open_checkpoint(data: bytes, name: str, *, journal_id: str, stream: str, ring: KeyRing,
                    sink: Sink) -> Checkpoint | None:
    """Step 9 for one checkpoint: its name, signature (by a key not retired before its last
    segment), exact text (no extension line) and origin. None when it cannot be used."""
    parsed = layout.parse_numbered(name)
    if parsed is None or parsed[0] != "checkpoints" or parsed[1] != stream:
        sink("unexpected_object", "not a checkpoint name", stream=stream, object=name)
        return None
    try:
        text, key = open_note(data, ring.keys())
    except NoteError as e:
        sink("checkpoint_signature", f"checkpoint does not verify: {e}", stream=stream, object=name)
        return None
    try:
        cp = Checkpoint.parse(text)
    except NoteError as e:
        sink("checkpoint_format", f"checkpoint does not parse: {e}", stream=stream, object=name)
        return None
    if cp.origin != checkpoint_origin(journal_id, stream) or cp.tree_size != parsed[2]:
        sink("checkpoint_identity", f"checkpoint origin {cp.origin!r} / size {cp.tree_size} does not match its name",
             stream=stream, object=name)
        return None
    problem = ring.checkpoint_signer_problem(key.key_id, stream, cp.tree_size)
    if problem is not None:
        sink("key_validity", f"checkpoint signed out of its key's validity: {problem}", stream=stream, object=name)
    return cp


def check_checkpoint_root(cp: Checkpoint, name: str, chain: ManifestChain) -> None:
    """Step 9: the checkpoint commits to the manifests the chain holds."""
    sink, s = chain.sink, chain.stream
    if cp.tree_size > chain.size:
        sink("checkpoint_ahead", f"checkpoint commits to {cp.tree_size} segments but only {chain.size} are in the "
             "store (segments removed)", stream=s, object=name)
        return
    root = chain.roots.get(cp.tree_size)
    if root is None and chain.horizon and cp.tree_size <= chain.horizon:
        return  # it commits to manifests before the horizon, which expired: the saved point vouches for them
    if root is None or root != cp.root_hash:
        sink("checkpoint_root", f"checkpoint root over {cp.tree_size} manifests does not match (history rewritten?)",
             stream=s, object=name)


def chain_from_checkpoint(cp: Checkpoint, hashes: Sequence[bytes], last: Manifest, *, journal_id: str,
                          stream: str, sink: Sink) -> ManifestChain | None:
    """Step 9 the other way round, for a reader that reads only the manifests it needs (FORMAT.md 11a,
    "Manifest hashes"): ``hashes``, claimed by unsigned index footers, are the manifest hashes of segments
    0 .. ``cp.tree_size - 1`` exactly when their checkpoint tree (section 4) has the checkpoint's signed root;
    ``last`` is the newest manifest, opened (step 2). Returns the chain over them (each manifest is then checked
    against its hash when it is read: :meth:`ManifestChain.check_hash`), or None when they do not make the root
    (the reader then walks every manifest, which names what is wrong)."""
    if len(hashes) != cp.tree_size or not cp.tree_size:
        return None
    try:
        chain = ManifestChain.resumed(journal_id, stream, sink, hashes, last)
    except ValueError:
        return None
    return chain if chain.roots[cp.tree_size] == cp.root_hash else None


def check_committed_length(chain: ManifestChain, ring: KeyRing) -> None:
    """Steps 1 and 10: a stream is at least as long as the key history says it was when a rotation
    fixed its cutover (6.1); fewer segments are segments removed, with their manifests and checkpoints."""
    need = ring.committed_streams().get(chain.stream, 0)
    if chain.size < need:
        chain.sink("stream_truncated", f"the key history says stream {chain.stream} had {need} segments at a "
                   f"rotation; the store has {chain.size} (segments removed, or the stream deleted)",
                   stream=chain.stream)


def check_complete(latest: Checkpoint | None, chain: ManifestChain) -> None:
    """Step 10: a checkpoint covers every manifest."""
    if latest is None:
        if chain.size:
            chain.sink("checkpoint_missing", "the stream has segments but no checkpoint that verifies",
                       stream=chain.stream)
        return
    if latest.tree_size < chain.size:
        chain.sink("checkpoint_behind", f"the latest checkpoint covers {latest.tree_size} of {chain.size} segments",
                   stream=chain.stream)


def check_names(names: Iterable[str], sink: Sink) -> None:
    """Step 11, names: every object under manifests/, checkpoints/, segments/ and payloads/ has a name FORMAT.md
    allows (section 9), with a stream name it allows."""
    for name in names:
        parsed = layout.parse_numbered(name)
        if parsed is not None and layout.is_valid_stream(parsed[1]):
            continue
        seg = layout.parse_segment(name)
        if seg is not None and layout.is_valid_stream(seg[0]):
            continue
        apart = layout.parse_payload(name)
        if apart is not None and layout.is_valid_stream(apart[0]):
            continue
        parts = name.split("/")
        stream = parts[1][len("stream="):] if len(parts) > 1 and parts[1].startswith("stream=") else None
        sink("unexpected_object", "not an object name FORMAT.md allows (section 9)", stream=stream, object=name)


def continue_chain(events: Iterable[StoredEvent], next_seq: int, last_hash: bytes, *,
                   where: str = "the write-ahead log", sink: Sink | None = None,
                   continuing: bool = False) -> list[StoredEvent]:
    """The unsealed events (read in order, each already checked against its own record's hash) that come
    after the sealed chain's head: those from seq ``next_seq`` on, each continuing the one before from
    ``last_hash``. Older ones (sealed meanwhile) are passed over, unless ``continuing`` (``next_seq`` and
    ``last_hash`` are then an unsealed event's, checked before: every event must follow it). Raises
    IntegrityError (``chain_link``)."""
    sink = sink if sink is not None else Sink(collect=False)
    out: list[StoredEvent] = []
    seq, prev = next_seq, last_hash
    for e in events:
        if e.seq < seq and not out and not continuing:
            if e.seq == seq - 1 and e.hash != prev:  # the sealed head itself, as another writer had it: a fork
                sink("chain_link", f"{where}: seq {e.seq} is not the sealed event of that seq", seq=e.seq)
                break
            continue  # sealed already
        if e.seq != seq or e.prev_hash != prev:
            sink("chain_link", f"{where}: seq {e.seq} does not continue the chain at seq {seq}", seq=e.seq)
            break
        out.append(e)
        seq, prev = e.seq + 1, e.hash
    return out
