"""The auditor: recompute everything from the store, read-only, with public keys only.

The numbered steps follow FORMAT.md, "Verification procedure". Each segment
is checked on its own against its manifest (steps 4 to 8, :mod:`.segment`, in
worker processes when there are several segments and cores); then the links
between manifests and the checkpoints are checked. Nothing here imports the writer.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ..events import genesis_hash
from ..segments import merkle
from ..segments.identity import JournalIdentity, read_identity
from ..segments.manifest import ZERO_HASH, Checkpoint, Manifest, checkpoint_origin
from ..segments.notes import NoteError, VerifyKey, open_note, split_note
from ..storage import layout
from ..storage.base import ObjectReader
from ..storage.local import LocalStore
from ..errors import JournalError
from ..events import format_ts, parse_ts
from ..segments.keyhistory import KeyHistory, load_history
from .anchors import Anchor, check_extension, parse_anchor
from .report import Finding, StreamSummary, VerifyReport
from .segment import (
    RawFinding,
    SegmentResult,
    check_local_segment,
    check_segment,
    fetch_segment,
    link_findings,
    public_key_bytes,
    warm_up,
)

Progress = Callable[[int, int], None]

WORKER_MIN_BYTES = 32 << 20


# Workers come from a fork server: it has none of the caller's threads (numpy's, Arrow's, a progress
# bar's, an S3 client's, pytest-xdist's), so no lock held at fork time can deadlock a worker, as with
# "fork"; like "spawn" (but once per process, not per worker) it imports the segment checks up front.
# As with "spawn", each worker imports the main module: a script must guard its entry point.
_START_METHOD = "forkserver"


def _context() -> multiprocessing.context.BaseContext:
    """The context of the start method; the fork server (started once per process) is asked to
    import the segment checks first, so that each worker then starts as a fork with them loaded."""
    ctx = multiprocessing.get_context(_START_METHOD)
    if _START_METHOD == "forkserver":
        from multiprocessing import forkserver

        preload = list(getattr(forkserver._forkserver, "_preload_modules", None) or ["__main__"])
        if check_segment.__module__ not in preload:
            ctx.set_forkserver_preload([*preload, check_segment.__module__])  # type: ignore[attr-defined]
    return ctx


def _claimed_object(data: bytes) -> str | None:
    """The object an unverifiable manifest names, so that it is not reported twice."""
    try:
        return Manifest.parse(split_note(data)[0]).object
    except NoteError:
        return None


class _SegmentRunner:
    """Runs :func:`check_segment` in this process (one worker) or in a pool of worker processes.

    The object's bytes are fetched by the caller and sent to the worker, so any store
    works (an S3 client need not be picklable); only a plain local directory's workers
    read the object themselves. ``window`` is how many segments may be submitted and
    not yet applied: it bounds the bytes held, whatever the journal's size.
    """

    def __init__(self, identity: JournalIdentity, keys: Sequence[VerifyKey], workers: int, store: ObjectReader | None = None) -> None:
        self.common = {"journal_id": identity.journal_id, "key_name": identity.key_name, "public_keys": public_key_bytes(keys)}
        # A local directory's workers read the object again themselves (from the page cache): the
        # bytes the caller fetched then need not be pickled and piped, which costs more.
        self.local_root = store.url if type(store) is LocalStore else None
        self.pool: ProcessPoolExecutor | None = None
        self.window = 0
        if workers > 1:
            self.pool = ProcessPoolExecutor(workers, mp_context=_context())
            self.window = 2 * workers
            for _ in range(workers):
                self.pool.submit(warm_up)  # start the workers (and the fork server, ~0.4 s the first time) now

    def submit(self, m: Manifest, data: bytes, stream: str) -> SegmentResult | Future[SegmentResult]:
        if self.pool is None:
            return check_segment(m, data, stream=stream, **self.common)  # type: ignore[arg-type]
        if self.local_root is not None:
            return self.pool.submit(check_local_segment, self.local_root, m, stream=stream, **self.common)
        return self.pool.submit(check_segment, m, data, stream=stream, **self.common)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def worker_count(workers: int | None, segments: int, segment_bytes: int = 0) -> int:
    """How many processes verify ``segments`` segments: ``workers``, never more than there are
    segments; with None, one per usable core, and one per WORKER_MIN_BYTES of segment objects (a
    worker's start costs about what checking that many bytes does). 1 means in this process, no pool."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer or None, not {workers!r}")
    if workers is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = min(cores, segment_bytes // WORKER_MIN_BYTES)
    return max(1, min(workers, segments))


def load_store_keys(store: ObjectReader, identity: JournalIdentity) -> list[VerifyKey]:
    """The public keys the store carries under keys/ (trust them only for self-checks)."""
    keys = []
    for info in store.list(layout.KEYS_PREFIX):
        if info.name.endswith(".pem"):
            keys.append(VerifyKey.from_pem(identity.key_name, store.get(info.name)))
    return keys


class _StreamVerifier:
    def __init__(self, store: ObjectReader, identity: JournalIdentity, stream: str, keys: list[VerifyKey], report: VerifyReport,
                 history: KeyHistory | None = None, anchor: Anchor | None = None) -> None:
        self.store = store
        self.identity = identity
        self.stream = stream
        self.keys = keys
        self.report = report
        self.history = history
        self.anchor = anchor  # a trusted point of this stream (--since): segments before it may have expired
        self.summary = StreamSummary(stream)
        report.streams.append(self.summary)
        self.roots: dict[int, bytes] = {}  # checkpoint tree size -> root, recomputed from the manifests
        self.leaves: list[bytes] | None = []  # the checkpoint tree's leaf hashes while every manifest from 0 is known
        self._expired: list[tuple[int, int]] = []  # seq ranges of segments before the horizon that are gone

    def check_key_validity(self, m: Manifest, key: VerifyKey) -> None:
        """FORMAT.md 6.1: a key of the history signs manifests sealed in its validity range only."""
        self.report.keys_used[key.key_id] = self.report.keys_used.get(key.key_id, 0) + 1
        if self.history is None or not self.history.entries:
            return
        validity = self.history.validity(key.key_id)
        if validity is None:
            self.find("key_validity", f"manifest is signed by key {key.key_id}, which is not in the journal's key history",
                      segment=m.segment)
            return
        try:
            sealed = parse_ts(m.time)
        except (ValueError, JournalError):  # parse_ts raises ValidationError
            self.find("key_validity", f"manifest time {m.time!r} is not an RFC 3339 time", segment=m.segment)
            return
        start, until = validity
        if sealed < start or (until is not None and sealed >= until):
            self.find("key_validity", f"manifest sealed {m.time} is signed by key {key.key_id}, valid only from "
                      f"{format_ts(start)}" + (f" until {format_ts(until)}" if until is not None else ""), segment=m.segment)

    def find(self, kind: str, message: str, **where: object) -> None:
        self.report.findings.append(Finding(kind, message, stream=self.stream, **where))  # type: ignore[arg-type]

    def read_manifests(self) -> list[tuple[int, Manifest | None]]:
        """Steps 1 and 2: every manifest, signature-checked and parsed (None when unusable)."""
        out: list[tuple[int, Manifest | None]] = []
        for info in self.store.list(layout.manifests_prefix(self.stream)):
            parsed = layout.parse_numbered(info.name)
            if parsed is None:
                self.find("unexpected_object", "not a manifest name", object=info.name)
                continue
            n = parsed[2]
            data = self.store.get(info.name)
            try:
                text, key = open_note(data, self.keys)
                m = Manifest.parse(text)
            except NoteError as e:
                self.find("manifest_signature", f"manifest does not verify: {e}", segment=n, object=info.name)
                out.append((n, None))
                self._unverified_objects.add(_claimed_object(data))
                continue
            if m.key_id != key.key_id:
                self.find("manifest_key", f"manifest names key {m.key_id} but is signed by {key.key_id}", segment=n)
            self.check_key_validity(m, key)
            if (m.journal, m.stream, m.segment) != (self.identity.journal_id, self.stream, n):
                self.find("manifest_identity", "manifest names another journal, stream or segment number", segment=n)
            out.append((n, m))
        return out

    def run(self, progress: Callable[[int], None], runner: _SegmentRunner) -> None:
        self._unverified_objects: set[str | None] = set()
        heads: dict[str, int] = {}  # step 8: execution id -> its last seq so far
        manifests = self.read_manifests()
        hashes: list[bytes] = []
        prev_manifest = ZERO_HASH
        prev_last_seq, prev_last_hash = -1, genesis_hash(self.identity.journal_id, self.stream)
        expected = 0
        # Segments submitted and not yet applied, oldest first: (findings before the segment's
        # own, manifest, result or future). Applied strictly in order, so the report's findings
        # are in the same order however many workers ran; at most runner.window are held.
        pending: deque[tuple[list[Finding], Manifest | None, SegmentResult | Future[SegmentResult] | None]] = deque()

        def apply() -> None:
            early, m, job = pending.popleft()
            self.report.findings.extend(early)
            if m is None:
                return
            if job is not None:
                try:
                    result = job.result() if isinstance(job, Future) else job
                except BrokenProcessPool as e:  # killed (out of memory?): the segment was not checked
                    raise JournalError(f"a verification worker process died while checking segment {m.segment}: {e}",
                                       hint="run again, or with fewer --workers (each holds a few row groups)") from e
                self.add_findings(result.findings)
                for key_id, count in result.key_uses.items():
                    self.report.key_uses[key_id] = self.report.key_uses.get(key_id, 0) + count
                self.report.receipts.extend(dict(receipt, stream=self.stream, seq=seq) for seq, receipt in result.receipts)
                if result.executions is not None:
                    if self._expired:  # a link into a segment that expired before the horizon cannot be checked
                        for _, execution, _, linked, _ in result.executions:
                            if execution not in heads and linked is not None and self.expired_seq(linked):
                                heads[execution] = linked
                    self.add_findings(link_findings(result, heads))
            s = self.summary
            s.segments += 1
            s.events += m.events
            s.first_seq = m.first_seq if s.first_seq is None else s.first_seq
            s.last_seq, s.head_hash = m.last_seq, m.last_hash.hex()
            progress(1)

        for n, m in manifests:
            early: list[Finding] = []

            def find(kind: str, message: str, **where: object) -> None:
                early.append(Finding(kind, message, stream=self.stream, **where))  # type: ignore[arg-type]

            # Steps 1 and 3: numbers contiguous from 0; each manifest links to the one before.
            horizon = n != expected and expected == 0 and m is not None and self.anchor is not None and n <= self.anchor.size
            if horizon:
                # The manifests before the trusted point expired: start from this one, whose frontier
                # must reach the saved root (checked with the anchor, FORMAT.md 10, "Since").
                assert m is not None
                self.summary.horizon = n
                self.summary.expired_segments += n
                self.expire(0, m.first_seq - 1)
                hashes.extend([b""] * n)  # placeholders: the tree still has n leaves before this one
                prev_manifest, prev_last_seq, prev_last_hash = m.prev_manifest, m.first_seq - 1, m.prev_hash
                frontier: list[bytes] | None = list(m.frontier)
                self.roots[n] = merkle.frontier_root(frontier)  # its claim, proved only by reaching the saved root
                self.leaves = None
            elif n != expected:
                find("manifest_missing", f"segments {expected}..{n - 1} have no manifest (removed?)", segment=expected)
                self.leaves = None
                frontier = list(m.frontier) if m is not None else None  # go on from the manifest's own claim
            elif n == 0:
                frontier = []
            expected = n + 1  # report each gap once, not again at every later manifest
            if m is None:
                prev_manifest = None  # the link after an unusable manifest cannot be checked
                hashes.append(b"")
                pending.append((early, None, None))
                frontier, self.leaves = None, None
                continue
            # The frontier line is the checkpoint tree of the manifests before this one (FORMAT.md 7.1).
            if frontier is not None and list(m.frontier) != frontier:
                find("manifest_frontier", "manifest's frontier is not the checkpoint tree of the manifests before it", segment=n)
            leaf = merkle.leaf_hash(m.manifest_hash())
            frontier = merkle.frontier_push(frontier if frontier is not None else list(m.frontier), n, leaf)
            self.roots[n + 1] = merkle.frontier_root(frontier)
            if self.leaves is not None:
                self.leaves.append(leaf)
            if prev_manifest is not None and m.prev_manifest != prev_manifest:
                find("manifest_link", "manifest does not link to the previous manifest", segment=n)
            if m.first_seq != prev_last_seq + 1:
                find("seq_gap", f"segment starts at seq {m.first_seq}, expected {prev_last_seq + 1}", segment=n, seq=m.first_seq)
            if m.prev_hash != prev_last_hash:
                find("chain_link", "segment's prev_hash is not the previous segment's last hash", segment=n, seq=m.first_seq)
            # Steps 4 to 8: the object is fetched here; everything else runs in the runner.
            fetched, data = fetch_segment(self.store, m, self.stream)
            if self.anchor is not None and n < self.anchor.size and data is None and [f[0] for f in fetched] == ["object_missing"]:
                # Before the trusted point, an object that is gone expired (its manifest is still signed).
                self.summary.expired_segments += 1
                self.expire(m.first_seq, m.last_seq)
                fetched = []
            early += [self.finding(f) for f in fetched]
            job = None
            if data is not None:
                self.report.bytes_checked += len(data)
                job = runner.submit(m, data, self.stream)
                del data
            pending.append((early, m, job))
            hashes.append(m.manifest_hash())
            prev_manifest = hashes[-1]
            prev_last_seq, prev_last_hash = m.last_seq, m.last_hash
            while len(pending) > runner.window:
                apply()
        while pending:
            apply()
        self.check_strays({m.object for _, m in manifests if m is not None})
        self.check_checkpoints(hashes)

    def finding(self, raw: RawFinding) -> Finding:
        kind, message, segment, seq, obj = raw
        return Finding(kind, message, stream=self.stream, segment=segment, seq=seq, object=obj)

    def add_findings(self, raws: list[RawFinding]) -> None:
        self.report.findings.extend(self.finding(f) for f in raws)

    def check_strays(self, covered: set[str]) -> None:
        """Step 11: every object under segments/ must be covered by a manifest."""
        for info in self.store.list(layout.stream_segments_prefix(self.stream)):
            if info.name not in covered and info.name not in self._unverified_objects:
                self.find("orphan_object", "segment object not covered by any manifest (an interrupted seal, or inserted)", object=info.name)

    def expire(self, lo: int, hi: int) -> None:
        """Events ``lo..hi`` expired: gone before the horizon, vouched for by the saved point."""
        self._expired.append((lo, hi))
        merged = self.summary.expired_seqs
        if merged and merged[-1][1] + 1 == lo:
            merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))

    def expired_seq(self, seq: int) -> bool:
        return any(lo <= seq <= hi for lo, hi in self._expired)

    def check_checkpoints(self, hashes: Sequence[bytes]) -> None:
        """Steps 9 and 10: every checkpoint verifies and commits to the manifests; the latest covers them all."""
        origin = checkpoint_origin(self.identity.journal_id, self.stream)
        latest: Checkpoint | None = None
        for info in self.store.list(layout.checkpoints_prefix(self.stream)):
            parsed = layout.parse_numbered(info.name)
            if parsed is None:
                self.find("unexpected_object", "not a checkpoint name", object=info.name)
                continue
            try:
                text, _ = open_note(self.store.get(info.name), self.keys)
                cp = Checkpoint.parse(text)
            except NoteError as e:
                self.find("checkpoint_signature", f"checkpoint does not verify: {e}", object=info.name)
                continue
            if cp.origin != origin or cp.tree_size != parsed[2]:
                self.find("checkpoint_identity", f"checkpoint origin {cp.origin!r} / size {cp.tree_size} does not match its name", object=info.name)
                continue
            if latest is None or cp.tree_size > latest.tree_size:
                latest = cp
            if cp.tree_size > len(hashes):
                self.find(
                    "checkpoint_ahead",
                    f"checkpoint commits to {cp.tree_size} segments but only {len(hashes)} are in the store (segments removed)",
                    object=info.name,
                )
                continue
            root = self.roots.get(cp.tree_size)
            if root is None and self.summary.horizon and cp.tree_size <= self.summary.horizon:
                continue  # it commits to manifests before the horizon, which expired: the saved point vouches for them
            if root is None or root != cp.root_hash:
                self.find("checkpoint_root", f"checkpoint root over {cp.tree_size} manifests does not match (history rewritten?)", object=info.name)
        if latest is None:
            if hashes:
                self.find("checkpoint_missing", "the stream has segments but no checkpoint that verifies")
            return
        self.summary.checkpoint_size = latest.tree_size
        self.summary.checkpoint_root = latest.root_hash.hex()
        if latest.tree_size < len(hashes):
            self.find("checkpoint_behind", f"the latest checkpoint covers {latest.tree_size} of {len(hashes)} segments")


def verify_store(
    store: ObjectReader,
    *,
    public_keys: Sequence[VerifyKey] | None = None,
    progress: Progress | None = None,
    workers: int | None = 1,
    since: bytes | None = None,
) -> VerifyReport:
    """Verify every stream of the journal in ``store``; never writes.

    With ``public_keys`` None, the keys stored in the journal are used and the
    report says so. Returns a report whose ``ok`` is False on any finding, and
    also when there was nothing to verify. Raises NotFoundError / StorageError
    when the store cannot be read at all.

    Segments are checked by ``workers`` processes (default 1: in this process, so that a
    script calling this needs no main guard; the CLI passes None: one per usable core, at
    most one per segment and per WORKER_MIN_BYTES of segments, so a small journal
    is checked in this process). The report is the
    same for any number of workers; at most 2 x workers segments are in flight,
    so memory does not grow with the journal. Workers start from a fork server,
    which imports the main module: a script that verifies with several workers
    needs ``if __name__ == "__main__":``. ``progress(done, total)`` is called as
    segments complete, in order.

    ``since`` is a checkpoint or manifest the auditor saved earlier (its note's
    bytes): the report then says whether today's stream extends it (FORMAT.md 10,
    "Since"), and segments before it may have expired. Raises ConfigError when
    ``since`` is not a checkpoint or manifest of this journal.
    """
    started = time.perf_counter()
    identity = read_identity(store)
    keys_from_store = public_keys is None
    keys = list(public_keys) if public_keys is not None else load_store_keys(store, identity)
    # Our keys carry this journal's note name, whatever name they were loaded with.
    keys = [VerifyKey(identity.key_name, k.public) for k in keys]
    # FORMAT.md 6.1: the key history extends trust from a trusted key to the keys that followed it.
    history = load_history(store, identity.journal_id, identity.key_name, keys)
    known = {k.key_id for k in keys}
    keys += [k for k in history.keys(identity.key_name) if k.key_id not in known]
    report = VerifyReport(
        store=getattr(store, "url", repr(store)),
        journal_id=identity.journal_id,
        keys=[k.key_id for k in keys],
        keys_from_store=keys_from_store,
    )
    if not keys:
        report.findings.append(Finding("no_keys", "no public key to verify with"))
    report.findings.extend(Finding("key_history", problem) for problem in history.problems)
    report.key_history = [{"entry": e.entry, "key_id": e.key_id, "valid_from": e.valid_from} for e in history.entries]
    anchor = parse_anchor(since, identity.journal_id, keys) if since is not None else None
    if anchor is not None and anchor.finding is not None:
        report.findings.append(anchor.finding)
        anchor = None  # an unverified point vouches for nothing
    infos = [o for prefix in (layout.MANIFESTS_PREFIX, layout.SEGMENTS_PREFIX, layout.CHECKPOINTS_PREFIX) for o in store.list(prefix)]
    names = [o.name for o in infos]
    streams = layout.streams_from_names(names)
    segment_bytes = sum(o.size for o in infos if o.name.startswith(layout.SEGMENTS_PREFIX))
    total = sum(1 for n in names if n.startswith(layout.MANIFESTS_PREFIX))
    done = 0

    def step(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, total)

    report.workers = worker_count(workers, total, segment_bytes)
    runner = _SegmentRunner(identity, keys, report.workers, store)
    try:
        for stream in streams:
            sv = _StreamVerifier(store, identity, stream, keys, report, history,
                                 anchor if anchor is not None and anchor.stream == stream else None)
            sv.run(step, runner)
            if sv.anchor is not None:
                s = sv.summary
                found, report.since = check_extension(
                    sv.anchor, sv.roots, sv.leaves, s.checkpoint_size or 0,
                    bytes.fromhex(s.checkpoint_root) if s.checkpoint_root else None)
                report.findings.extend(found)
    finally:
        runner.close()
    if anchor is not None and anchor.stream not in streams:
        found, report.since = check_extension(anchor, {}, None, 0, None)
        report.findings.extend(found)
    if not any(s.events for s in report.streams):
        report.findings.append(Finding("nothing_to_verify", "the store holds no sealed event; there is nothing to prove"))
    report.seconds = time.perf_counter() - started
    return report
