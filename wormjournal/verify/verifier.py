"""The auditor: recompute everything from the store, read-only, with public keys only.

The numbered steps follow FORMAT.md, "Verification procedure". Each segment
is checked on its own against its manifest (steps 4 to 8, :mod:`.segment`, in
worker processes when there are several segments and cores); then the links
between manifests and the checkpoints are checked. Nothing here imports the writer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import ConfigError, JournalError, NotFoundError, StorageError, ValidationError
from ..segments.cosign import Cosigner
from ..segments.identity import JournalIdentity
from ..segments.manifest import Checkpoint, Manifest
from ..segments.notes import VerifyKey
from ..storage import layout, open_store
from ..storage.base import ObjectInfo, ObjectReader
from ..storage.local import LocalStore
from ..trust import (
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
from ..trust.chain import claimed_object
from ..trust.heads import HeadLog, behind, check_streams
from ..trust.policy import policy_in_force
from ..trust.witnesses import check_extended, check_lag, high_water, open_cosigned
from .anchors import Anchor, check_extension, parse_anchor
from .report import Finding, StreamSummary, VerifyReport
from .segment import (
    Checked,
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
# A segment submitted and not yet applied (see _StreamVerifier.run).
_Pending = tuple[list[Finding], Manifest | None, list[RawFinding] | None, int | None,
                 SegmentResult | Future[SegmentResult] | Future[Checked] | None]

# Measured (scripts/bench_verify.py): a fresh pool of 2 costs 0.48 s, what 2 workers save over 1 on 160 MiB of segments.
WORKER_MIN_BYTES = 160 << 20
# How long verify waits, listing again, for a seal it saw half written to finish: as long as new objects keep
# appearing, then this long after the last one. What is still half written then is reported.
SETTLE_SECONDS = 3.0
SETTLE_LIMIT_SECONDS = 30.0  # and never longer than this in all, whatever is planted


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
            ctx.set_forkserver_preload([*preload, check_segment.__module__])
    return ctx


class _SegmentRunner:
    """Runs :func:`check_segment` in this process (one worker) or in a pool of worker processes.

    The object's bytes are fetched by the caller and sent to the worker, so any store
    works (an S3 client need not be picklable); only a plain local directory's workers
    read the object themselves. ``window`` is how many segments may be submitted and
    not yet applied: it bounds the bytes held, whatever the journal's size.
    """

    def __init__(self, identity: JournalIdentity, keys: Sequence[VerifyKey], workers: int,
                 store: ObjectReader | None = None) -> None:
        self.common: dict[str, Any] = {"journal_id": identity.journal_id, "key_name": identity.key_name,
                                       "public_keys": public_key_bytes(keys)}
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

    @property
    def fetches(self) -> bool:
        """Whether the workers fetch the objects themselves (:meth:`submit_fetch`), not the caller."""
        return self.pool is not None and self.local_root is not None

    def submit(self, m: Manifest, data: bytes, stream: str) -> SegmentResult | Future[SegmentResult]:
        if self.pool is None:
            return check_segment(m, data, stream=stream, **self.common)
        return self.pool.submit(check_segment, m, data, stream=stream, **self.common)

    def submit_fetch(self, m: Manifest, stream: str) -> Future[Checked]:
        """Steps 4 to 8 in a worker that reads the object itself (a local directory's, page cache)."""
        assert self.pool is not None and self.local_root is not None
        return self.pool.submit(check_local_segment, self.local_root, m, stream, **self.common)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def worker_count(workers: int | None, segments: int, segment_bytes: int = 0) -> int:
    """How many processes verify ``segments`` segments: ``workers``, never more than there are
    segments; with None, one per usable core, but one process below WORKER_MIN_BYTES of segment
    objects (the pool's start-up would cost more than the second worker saves) and one more worker
    per WORKER_MIN_BYTES above it. 1 means in this process, no pool."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValidationError("workers", f"must be a positive integer or None, not {workers!r}")
    if workers is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = min(cores, 1 + segment_bytes // WORKER_MIN_BYTES)
    return max(1, min(workers, segments))


class _StreamVerifier:
    """One stream: the trust core walks its manifests and checkpoints (steps 1-3, 9-11); segments are
    checked here (steps 4-8, in the runner) in between, in order."""

    def __init__(self, store: ObjectReader, trust: Trust, stream: str, report: VerifyReport,
                 listing: dict[str, list[ObjectInfo]], anchor: Anchor | None = None) -> None:
        self.store = store
        self.trust = trust
        # The stream's objects as listed once, checkpoints, then segments, then manifests (see verify_store).
        self.listing = {prefix: [o for o in infos if o.name.startswith(f"{prefix}stream={stream}/")]
                        for prefix, infos in listing.items()}
        self.stream = stream
        self.report = report
        self.anchor = anchor  # a trusted point of this stream (--since): segments before it may have expired
        self.summary = StreamSummary(stream)
        report.streams.append(self.summary)
        self.sink = Sink(collect=True)
        self.chain = ManifestChain(trust.journal_id, stream, self.sink, anchor.size if anchor is not None else None)
        self._expired: list[tuple[int, int]] = []  # seq ranges of segments before the horizon that are gone
        self.settle_deadline: list[float | None] = [None]  # shared by the run's streams (verify_store sets it)
        self._unverified_objects: set[str | None] = set()
        self._payloads = {o.name: o for o in self.listing.get(layout.PAYLOADS_PREFIX, [])}
        self._payloads_named: set[str] = set()  # payload objects that a checked event names
        self._payloads_checked: set[str] = set()

    def run(self, progress: Callable[[int], None], runner: _SegmentRunner) -> None:
        heads: dict[str, int] = {}  # step 8: execution id -> its last seq so far
        names = [info.name for info in self.listing[layout.MANIFESTS_PREFIX]
                 if layout.parse_numbered(info.name) is not None]  # other names: the names check (step 11)
        opened: list[Manifest] = []
        # Segments submitted and not yet applied, oldest first: (findings before the segment's
        # own, manifest, step 4's findings and the object's size, None and None when a worker fetches
        # the object itself, result or future). Applied strictly in order, so the report's findings
        # are in the same order however many workers ran; at most runner.window are held.
        pending: deque[_Pending] = deque()

        def apply() -> None:
            early, m, fetched, size, job = pending.popleft()
            self.report.findings.extend(early)
            if m is None:
                return
            result: SegmentResult | None = None
            if job is not None:
                try:
                    got = job.result() if isinstance(job, Future) else job
                except BrokenProcessPool as e:  # killed (out of memory?): the segment was not checked
                    raise JournalError(f"a verification worker process died while checking segment {m.segment}: {e}",
                                       hint="run again, or with fewer --workers (each holds a few row groups)") from e
                if isinstance(got, tuple):  # the worker fetched the object
                    fetched, size, result = got
                else:
                    result = got
            self.fetched(m, fetched or [], size)
            if result is not None:
                self.add_findings(result.findings)
                for key_id, count in result.key_uses.items():
                    self.report.key_uses[key_id] = self.report.key_uses.get(key_id, 0) + count
                for seq, receipt, signer in result.receipts:
                    problem = self.trust.ring.receipt_signer_problem(signer, self.stream, m.segment, m.time)
                    if problem is not None:
                        self.report.findings.append(Finding("erasure_receipt", f"an erasure receipt is signed out of "
                                                            f"its key's validity: {problem}", stream=self.stream,
                                                            segment=m.segment, seq=seq))
                        continue
                    self.report.receipts.append(dict(receipt, stream=self.stream, seq=seq))
                self.check_payloads(m, result.payload_refs)
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

        for name in names:
            before, horizon = len(self.sink.findings), self.chain.horizon
            note = self.store.get(name)
            m = self.chain.open(name, note, self.trust.ring)  # steps 1 to 3
            early = self.sink.findings[before:]
            del self.sink.findings[before:]
            if m is None:
                self._unverified_objects.add(claimed_object(note))
                pending.append((early, None, None, None, None))
                continue
            opened.append(m)
            self.report.keys_used[m.key_id] = self.report.keys_used.get(m.key_id, 0) + 1
            n = m.segment
            if self.chain.horizon != horizon:  # the manifests before the trusted point expired: start here
                self.summary.horizon = n
                self.summary.expired_segments += n
                self.expire(0, m.first_seq - 1)
            # Steps 4 to 8: the object is fetched here (or by a worker of a local directory); everything else
            # runs in the runner.
            if runner.fetches:
                pending.append((early, m, None, None, runner.submit_fetch(m, self.stream)))
            else:
                fetched, data = fetch_segment(self.store, m, self.stream)
                job = None if data is None else runner.submit(m, data, self.stream)
                pending.append((early, m, fetched, None if data is None else len(data), job))
                del data
            while len(pending) > runner.window:
                apply()
        while pending:
            apply()
        self.report.findings.extend(self.sink.findings)  # the chain's findings after the last manifest (none today)
        self.sink.findings.clear()
        covered = {m.object for m in opened}
        self.settle(covered)
        self.check_strays(covered)
        self.check_payload_strays()
        self.check_checkpoints()
        self.report.findings.extend(self.sink.findings)

    def _half_written(self, covered: set[str]) -> int:
        """What a seal running while the stream was listed leaves half written: segments past the last manifest,
        manifests past the latest checkpoint. Returns the tree size a checkpoint must reach to finish it, 0 when
        the listing ends whole."""
        sizes = [p[2] for p in (layout.parse_numbered(o.name) for o in self.listing[layout.CHECKPOINTS_PREFIX]) if p]
        target = self.chain.size if self.chain.size > max(sizes, default=0) else 0
        for info in self.listing[layout.SEGMENTS_PREFIX]:
            seg = layout.parse_segment(info.name)
            if info.name not in covered and seg is not None and seg[2] >= self.chain.size:
                target = max(target, seg[2] + 1)
        return target

    def settle(self, covered: set[str]) -> None:
        """A seal that ran while the stream was listed is waited for, not reported: while the listing ends half
        written, list the checkpoints and manifests again until a checkpoint finishes it, or until nothing new
        has appeared for SETTLE_SECONDS (a seal that died: what is left is then reported). The manifests up to
        that checkpoint are opened (steps 1 to 3) to check its root; their segments were sealed after the
        listing, and a notice says they were not checked."""
        target = self._half_written(covered)
        if not target:
            return
        now = time.monotonic()
        deadline = self.settle_deadline[0]
        if deadline is None:  # one budget for the whole run, however many streams wait
            deadline = self.settle_deadline[0] = now + SETTLE_LIMIT_SECONDS
        quiet_since, pause, most = now, 0.02, self.chain.size
        known = {o.name for o in self.listing[layout.CHECKPOINTS_PREFIX]}
        seen = set(known)
        while now - quiet_since < SETTLE_SECONDS and now < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
            checkpoints = [o for o in self.store.list(layout.checkpoints_prefix(self.stream))  # before the manifests
                           if o.name not in known and layout.parse_numbered(o.name) is not None]
            manifests = [o.name for o in self.store.list(layout.manifests_prefix(self.stream))
                         if layout.parse_numbered(o.name) is not None]
            now = time.monotonic()
            done = [o for o in checkpoints if layout.parse_numbered(o.name)[2] >= target]  # type: ignore[index]
            if not done:
                # The seal goes on when there are more manifests than ever, or a checkpoint not seen before
                # (objects that come and go are not progress: they do not hold the wait open).
                fresh = {o.name for o in checkpoints} - seen
                if len(manifests) > most or fresh:
                    most, quiet_since = max(most, len(manifests)), now
                    seen |= fresh
                continue
            size = min(layout.parse_numbered(o.name)[2] for o in done)  # type: ignore[index]
            added = 0
            for name in manifests[self.chain.size : size]:
                m = self.chain.open(name, self.store.get(name), self.trust.ring)  # a finding here is reported
                if m is None:
                    break
                covered.add(m.object)
                added += 1
            self.listing[layout.CHECKPOINTS_PREFIX] += [
                o for o in checkpoints if layout.parse_numbered(o.name)[2] <= size]  # type: ignore[index]
            if added:
                self.report.notices.append(f"stream {self.stream}: {added} segment(s) sealed while verify ran "
                                           "were not checked (their manifests were, with the checkpoint over them)")
            return

    def fetched(self, m: Manifest, found: list[RawFinding], size: int | None) -> None:
        """Step 4's findings of segment ``m`` (``size``: the object's, None when it could not be checked further)."""
        gone = size is None and [f[0] for f in found] == ["object_missing"]
        if self.anchor is not None and m.segment < self.anchor.size and gone:
            # Before the trusted point, an object that is gone expired (its manifest is still signed).
            self.summary.expired_segments += 1
            self.expire(m.first_seq, m.last_seq)
            found = []
        self.add_findings(found)
        if size is not None:
            self.report.bytes_checked += size

    def finding(self, raw: RawFinding) -> Finding:
        kind, message, segment, seq, obj = raw
        return Finding(kind, message, stream=self.stream, segment=segment, seq=seq, object=obj)

    def add_findings(self, raws: list[RawFinding]) -> None:
        self.report.findings.extend(self.finding(f) for f in raws)

    def check_strays(self, covered: set[str]) -> None:
        """Step 11: every object under segments/ must be covered by a manifest."""
        for info in self.listing[layout.SEGMENTS_PREFIX]:
            if info.name not in covered and info.name not in self._unverified_objects:
                self.sink("orphan_object",
                          "segment object not covered by any manifest (an interrupted seal, or inserted)",
                          stream=self.stream, object=info.name)

    def check_payloads(self, m: Manifest, refs: list[tuple[int, str, int]]) -> None:
        """Step 8a: each payload a segment's events store apart is an object of the stream holding exactly the bytes
        they name (its SHA-256 and length, FORMAT.md 3.5)."""
        for seq, digest, length in refs:
            name = layout.payload(self.stream, digest)
            self._payloads_named.add(name)
            if name in self._payloads_checked:
                continue  # named by an earlier event too (the same bytes)
            if name not in self._payloads:
                self.sink("payload_missing", f"the payload of seq {seq} is stored apart as {name}, which is missing",
                          stream=self.stream, segment=m.segment, seq=seq, object=name)
                continue
            data = self.store.get(name)
            if len(data) != length or hashlib.sha256(data).hexdigest() != digest:
                self.sink("payload_object", f"{name} is not the payload seq {seq} names ({len(data)} bytes, "
                          f"{length} named, or another SHA-256)", stream=self.stream, segment=m.segment, seq=seq,
                          object=name)
                continue
            self._payloads_checked.add(name)
            self.report.bytes_checked += len(data)

    def check_payload_strays(self) -> None:
        """Payload objects no checked event names: a seal stores them before its segment, so one cut short leaves
        them until the next seal completes it: a notice, not a finding (nothing names them)."""
        strays = sum(1 for name in self._payloads if name not in self._payloads_named
                     and layout.parse_payload(name) is not None)  # other names: the names check (step 11)
        if strays:
            self.report.notices.append(f"stream {self.stream}: {strays} payload object(s) named by no sealed event "
                                       "(a seal cut short stores them before its segment; or they were inserted)")

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

    def check_checkpoints(self) -> None:
        """Steps 9 and 10: every checkpoint verifies and commits to the manifests; the latest covers them all."""
        latest: Checkpoint | None = None
        for info in self.listing[layout.CHECKPOINTS_PREFIX]:
            if layout.parse_numbered(info.name) is None:
                continue  # reported by the names check (step 11)
            cp = open_checkpoint(self.store.get(info.name), info.name, journal_id=self.trust.journal_id,
                                 stream=self.stream, ring=self.trust.ring, sink=self.sink)
            if cp is None:
                continue
            if latest is None or cp.tree_size > latest.tree_size:
                latest = cp
            check_checkpoint_root(cp, info.name, self.chain)
        check_complete(latest, self.chain)
        check_committed_length(self.chain, self.trust.ring)
        if latest is not None:
            self.summary.checkpoint_size = latest.tree_size
            self.summary.checkpoint_root = latest.root_hash.hex()


@dataclasses.dataclass(frozen=True)
class WitnessPolicy:
    """What ``verify --witness-key`` asks (FORMAT.md 10, step 13): the witnesses trusted, how many of them must have
    cosigned the newest head, and how long after it was written they may not have yet."""

    witnesses: tuple[Cosigner, ...]
    quorum: int = 1
    max_lag_seconds: float = 3600.0

    def __post_init__(self) -> None:
        names = [w.name for w in self.witnesses]
        if len(set(names)) != len(names) or len({w.key_hash for w in self.witnesses}) != len(names):
            raise ConfigError("each witness key is given once, and no two witnesses share a name: a quorum counts "
                              "witnesses, and a report names them")
        if not 1 <= self.quorum <= max(1, len(self.witnesses)):
            raise ConfigError(f"a witness quorum is 1 to the {len(self.witnesses)} witness key(s) given, "
                              f"not {self.quorum}")
        if not self.max_lag_seconds >= 0:
            raise ConfigError(f"the witness lag allowed is 0 seconds or more, not {self.max_lag_seconds}")


def _first_head_appears(store: ObjectReader) -> bool:
    """Whether a head appears within the settle time: the first seal stores its checkpoint, then its head."""
    deadline, pause = time.monotonic() + SETTLE_SECONDS, 0.02
    while True:
        if any(layout.parse_head(o.name) is not None for o in store.list(layout.HEADS_PREFIX)):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


MAX_NOTE_BYTES = 16 << 20  # a head names every stream: 16 MiB is some 150,000 streams


def _note_object(store: ObjectReader, info: ObjectInfo, named: bool, sink: Sink) -> bytes | None:
    """The bytes of a head or cosigned checkpoint, read only when its name is one of section 9 and its size that of a
    note (a planted object is reported, never read)."""
    if not named:
        sink("unexpected_object", "not a name FORMAT.md allows here", object=info.name)
        return None
    kind = "head_format" if info.name.startswith(layout.HEADS_PREFIX) else "witness_format"
    if info.size > MAX_NOTE_BYTES:
        sink(kind, f"{info.size} bytes: larger than any note this journal writes", object=info.name)
        return None
    try:
        return store.get(info.name)
    except StorageError as e:  # not a file (a planted FIFO), or gone since the listing
        sink(kind, f"cannot be read: {e}", object=info.name)
        return None


def _check_heads(store: ObjectReader, trust: Trust, listing: dict[str, list[ObjectInfo]],
                 chains: dict[str, ManifestChain], report: VerifyReport, witnesses: WitnessPolicy | None) -> None:
    """Step 12: the heads are a chain, and the store holds every stream they name, extending what they say. Step 13:
    it extends every cosigned checkpoint in witness/, and enough witnesses have cosigned its newest head."""
    sink = Sink(collect=True)
    log = HeadLog(trust.journal_id, sink)
    for info in sorted(listing[layout.HEADS_PREFIX], key=lambda o: o.name):
        if (data := _note_object(store, info, layout.parse_head(info.name) is not None, sink)) is not None:
            log.open(info.name, data, trust.ring)
    check_streams(log, chains)
    report.notices.extend(log.notices)
    checkpointed = {s.stream: s.checkpoint_size or 0 for s in report.streams}
    if not log.size and any(checkpointed.values()):
        if trust.identity.writes_heads and _first_head_appears(store):
            report.notices.append("the journal's first head was written while this verification ran (its first "
                                  "seal); heads are checked from the next one")
        elif trust.identity.writes_heads:
            sink("head_missing", "the journal writes heads from its first seal on, and the store holds none (heads "
                 "removed, or a writer stopped between its first checkpoint and its head: it writes it when it "
                 "opens the stream again)")
        else:
            report.notices.append("the store holds no journal head (a journal created before format 5, sealed by "
                                  "no writer of format 5 yet): nothing proves which streams it had")
    report.notices.extend(behind(log, checkpointed))
    keys = witnesses.witnesses if witnesses is not None else ()
    cosigned = [c for info in listing[layout.WITNESS_PREFIX]
                if (data := _note_object(store, info, layout.parse_cosigned(info.name) is not None, sink)) is not None
                and (c := open_cosigned(info.name, data, journal_id=trust.journal_id, ring=trust.ring,
                                        witnesses=keys, sink=sink)) is not None]
    check_extended(cosigned, log, chains, sink)
    if witnesses is not None:
        if not log.size:
            sink("witness_lag", "witness keys were given and the store holds no head for them to have cosigned")
        notice = check_lag(cosigned, log, keys, quorum=witnesses.quorum, max_lag=witnesses.max_lag_seconds,
                           now=time.time(), sink=sink)
        if notice is not None:
            report.notices.append(notice)
        report.witnesses = {"quorum": witnesses.quorum, "high_water": high_water(cosigned, witnesses.quorum),
                            "cosigned": {w.name: max((c.size for c in cosigned if c.stream is None
                                                      and w.name in c.witnesses), default=0) for w in keys}}
    report.findings.extend(sink.findings)
    newest = log.newest
    if newest is not None:
        report.head = {"heads": log.size, "number": newest.number, "time": newest.time,
                       "streams": [{"stream": t.stream, "size": t.size, "root": t.root.hex()} for t in newest.streams]}


def verify_store(
    store: ObjectReader | str | os.PathLike[str],
    *,
    public_keys: Sequence[VerifyKey] | None = None,
    progress: Progress | None = None,
    workers: int | None = 1,
    since: bytes | None = None,
    witnesses: WitnessPolicy | None = None,
) -> VerifyReport:
    """Verify every stream of the journal in ``store`` (a Store, a directory path or an
    ``s3://bucket/prefix`` URL); never writes.

    With ``public_keys`` None, entry 0 of the journal's key history is trusted on its
    own signature and the report says so. Returns a report whose ``ok`` is False on any finding, and
    also when there was nothing to verify. Raises NotFoundError / StorageError
    when the store cannot be read at all.

    Segments are checked by ``workers`` processes (default 1: in this process, so that a
    script calling this needs no main guard; the CLI passes None: one per usable core, at
    most one per segment, and one process below WORKER_MIN_BYTES of segments (see
    :func:`worker_count`), so a small journal is checked in this process). The report is the
    same for any number of workers; at most 2 x workers segments are in flight,
    so memory does not grow with the journal. Workers start from a fork server,
    which imports the main module: a script that verifies with several workers
    needs ``if __name__ == "__main__":``. ``progress(done, total)`` is called as
    segments complete, in order.

    ``since`` is a checkpoint or manifest the auditor saved earlier (its note's
    bytes): the report then says whether today's stream extends it (FORMAT.md 10,
    "Since"), and segments before it may have expired. Raises ConfigError when
    ``since`` is not a checkpoint or manifest of this journal.

    ``witnesses`` (FORMAT.md 10, step 13): the witnesses the auditor trusts; the store must extend every checkpoint
    they cosigned, and a quorum of them must have cosigned its newest head (``witness_lag`` otherwise, once the
    head is older than the lag allowed).
    """
    started = time.perf_counter()
    if isinstance(store, (str, os.PathLike)):
        store = open_store(store)  # a directory or an s3:// URL, read-only use
    # One listing, in the order a seal writes backwards: checkpoints, then segments, then manifests, then the
    # key history (inside load_trust). A seal stores segment, manifest, checkpoint in that order, and a rotation
    # its history entry before any note its key signs, so a verify running meanwhile never sees a checkpoint
    # ahead of its manifests or a manifest whose key it has not read: an intact journal never looks broken.
    try:
        # Payload objects last: a seal stores them before the segment that names them (FORMAT.md 3.5).
        # Cosignatures first, then heads: each is stored after the head, the checkpoint it names (FORMAT.md 8a, 8b).
        listing = {prefix: list(store.list(prefix))
                   for prefix in (layout.WITNESS_PREFIX, layout.HEADS_PREFIX, layout.CHECKPOINTS_PREFIX,
                                  layout.SEGMENTS_PREFIX, layout.MANIFESTS_PREFIX, layout.PAYLOADS_PREFIX)}
    except NotFoundError as e:
        raise NotFoundError(f"no journal in {getattr(store, 'url', store)}: {e}",
                            hint="create one with `wormjournal init STORE`") from e
    trust = load_trust(store, public_keys)
    identity, ring = trust.identity, trust.ring
    keys = trust.keys()
    report = VerifyReport(
        store=getattr(store, "url", repr(store)),
        journal_id=identity.journal_id,
        keys=[k.key_id for k in keys],
        keys_from_store=trust.keys_from_store,
    )
    report.findings.extend(Finding(kind, problem) for kind, problem in ring.all_problems())
    report.notices.extend(ring.notices)
    if not keys:
        report.findings.append(Finding("no_keys", "no trusted public key to verify with"))
    report.key_history = [{"entry": e.entry, "key_id": e.key_id, "valid_from": e.valid_from,
                           **({"cutovers": dict(e.cutovers)} if e.cutovers else {})} for e in ring.entries]
    # The retention policy a writer obeys (FORMAT.md 9): journal.json's (pinned above), then signed policy objects.
    policy_objects = list(store.list(layout.RETENTION_POLICY_PREFIX))
    if identity.retention_policy() is not None:
        objects = ((o.name, store.get(o.name)) for o in policy_objects)
        _, problems = policy_in_force(objects, identity.retention_policy(), keys)  # type: ignore[arg-type]
        report.findings.extend(Finding("retention_policy", problem) for problem in problems)
    elif policy_objects:
        report.findings.extend(Finding("retention_policy", "a policy object in a journal without a retention policy",
                                       object=o.name) for o in policy_objects)
    anchor = parse_anchor(since, identity.journal_id, keys) if since is not None else None
    if anchor is not None and anchor.finding is not None:
        report.findings.append(anchor.finding)
        anchor = None  # an unverified point vouches for nothing
    infos = [o for prefix in (layout.MANIFESTS_PREFIX, layout.SEGMENTS_PREFIX, layout.CHECKPOINTS_PREFIX)
             for o in listing[prefix]]
    names = [o.name for o in infos]
    names_sink = Sink(collect=True)
    check_names(names + [o.name for o in listing[layout.PAYLOADS_PREFIX]], names_sink)  # step 11: names not allowed
    report.findings.extend(names_sink.findings)
    streams = [s for s in layout.streams_from_names(names) if layout.is_valid_stream(s)]
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
    settle_deadline: list[float | None] = [None]
    chains: dict[str, ManifestChain] = {}
    try:
        for stream in streams:
            sv = _StreamVerifier(store, trust, stream, report, listing,
                                 anchor if anchor is not None and anchor.stream == stream else None)
            sv.settle_deadline = settle_deadline
            sv.run(step, runner)
            chains[stream] = sv.chain
            if sv.anchor is not None:
                s = sv.summary
                found, report.since = check_extension(
                    sv.anchor, sv.chain.roots, sv.chain.leaves, s.checkpoint_size or 0,
                    bytes.fromhex(s.checkpoint_root) if s.checkpoint_root else None)
                report.findings.extend(found)
    finally:
        runner.close()
    if anchor is not None and anchor.stream not in streams:
        found, report.since = check_extension(anchor, {}, None, 0, None)
        report.findings.extend(found)
    gone = Sink(collect=True)  # streams a rotation saw that the store no longer has (6.1, cutovers)
    for stream in sorted(set(ring.committed_streams()) - set(streams)):
        check_committed_length(ManifestChain(identity.journal_id, stream, gone), ring)
    report.findings.extend(gone.findings)
    _check_heads(store, trust, listing, chains, report, witnesses)
    if not any(s.events for s in report.streams):
        report.findings.append(Finding("nothing_to_verify",
                                       "the store holds no sealed event; there is nothing to prove"))
    report.seconds = time.perf_counter() - started
    return report
