"""The lock audit: is every object of the journal really locked, as long as the policy says?

On S3 every object is inspected: its version listing (one page at a time) and a
HEAD of its current version (many at once, through a bounded pool), so memory
stays flat however large the journal. On a local directory the files' permissions
are checked instead, and the report says plainly what a directory cannot promise.

Finding kinds (``LockFinding.kind``):

- ``bucket_unlocked``: the bucket has no Object Lock configuration;
- ``no_policy``: the journal was created without a retention policy;
- ``policy``: a retention policy object is damaged or weakens its predecessor;
- ``not_locked``: an object has no retention;
- ``weak_mode``: GOVERNANCE where the policy requires COMPLIANCE;
- ``short_retention``: retained for less than the policy requires;
- ``versions``: an object carries more than one version (it was overwritten);
- ``delete_marker``: an object's current version is a delete marker (readers see it gone);
- ``missing``: an object the journal needs is absent (a manifest, segment, checkpoint or key entry);
- ``writable`` / ``not_regular`` / ``writable_directory``: local files anyone could change.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import datetime as dt
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..errors import JournalError
from ..segments.keyhistory import HISTORY_PREFIX, parse_entry_name
from ..segments.manifest import Manifest
from ..segments.notes import split_note
from ..storage import layout
from ..storage.base import ObjectReader
from ..storage.objectfile import ObjectFile
from ..trust.load import read_identity
from .policy import ObjectLockState, PolicySet, RetentionPolicy, load_policy

# A retain-until date is computed by the writer just before its put, the object's
# last-modified time by the server just after: allow for the clock skew between them.
CLOCK_SKEW = dt.timedelta(hours=1)
DEFAULT_WORKERS = 16
LOCAL_WORDS = (
    "a local directory is tamper-evident, not tamper-proof: its files are read-only, but whoever can write "
    "the directory (its owner, root) can delete, rename or make them writable again. Verification detects "
    "any such change; nothing prevents it. For retention that cannot be undone, use S3 with Object Lock "
    "in COMPLIANCE mode."
)

Progress = Callable[[int, int | None], None]


@dataclasses.dataclass(frozen=True)
class LockFinding:
    kind: str
    object: str | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class LockAudit:
    """What the audit found. ``ok`` when there is no finding."""

    store: str
    backend: str  # "s3" or "local"
    policy: PolicySet | None
    objects: int = 0
    held: int = 0
    expired: int = 0
    findings: list[LockFinding] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def find(self, kind: str, obj: str | None, message: str) -> None:
        self.findings.append(LockFinding(kind, obj, message))

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store, "backend": self.backend, "ok": self.ok, "objects": self.objects,
            "held": self.held, "expired": self.expired,
            "policy": None if self.policy is None else {
                "number": self.policy.number, "journal": self.policy.journal.to_json(),
                "tenants": {t: p.to_json() for t, p in sorted(self.policy.tenants.items())},
            },
            "findings": [f.to_json() for f in self.findings],
            "notes": self.notes,
        }


def is_s3(store: Any) -> bool:
    return hasattr(store, "lock_state") and hasattr(store, "versions")


# -- what the journal must hold ------------------------------------------------------------------------


class Expected:
    """Tracks the names seen, then says which objects the journal needs and lacks.

    Keeps integers per stream, not names: a few bytes an object.
    """

    def __init__(self) -> None:
        self.manifests: dict[str, set[int]] = collections.defaultdict(set)
        self.segments: dict[str, set[int]] = collections.defaultdict(set)
        self.checkpoints: dict[str, int] = {}
        self.key_entries: set[int] = set()
        self.journal = False

    def see(self, name: str) -> None:
        if name == layout.JOURNAL_OBJECT:
            self.journal = True
        elif (seg := layout.parse_segment(name)) is not None:
            self.segments[seg[0]].add(seg[2])
        elif (num := layout.parse_numbered(name)) is not None:
            kind, stream, n = num
            if kind == "manifests":
                self.manifests[stream].add(n)
            else:
                self.checkpoints[stream] = max(n, self.checkpoints.get(stream, 0))
        elif (entry := parse_entry_name(name)) is not None:
            self.key_entries.add(entry)

    def missing(self, expiry_possible: bool) -> Iterator[tuple[str, str]]:
        """(name or description, why) of each object the journal lacks.

        A run of the oldest segments and manifests that is gone is left out when
        ``expiry_possible`` (their retention may have ended): ``expired_ranges`` names it.
        """
        if not self.journal:
            yield layout.JOURNAL_OBJECT, "the journal's identity is missing"
        if self.key_entries and max(self.key_entries) + 1 != len(self.key_entries):
            for n in sorted(set(range(max(self.key_entries) + 1)) - self.key_entries):
                yield f"{HISTORY_PREFIX}{n:012d}.note", "a key history entry is missing"
        elif not self.key_entries:
            yield f"{HISTORY_PREFIX}{0:012d}.note", "the key history is missing"
        for stream in sorted(set(self.manifests) | set(self.segments)):
            manifests, segments = self.manifests[stream], self.segments[stream]
            top = max(manifests | segments)
            start = self._horizon(stream) if expiry_possible else 0
            for n in range(start, top + 1):
                if n not in manifests:
                    yield layout.manifest(stream, n), f"segment {n}'s manifest is missing"
                if n not in segments:
                    yield f"segments/stream={stream}/date=*/seg-{n:012d}.parquet", f"segment {n} is missing"
            if manifests and self.checkpoints.get(stream, -1) < max(manifests) + 1:
                size = max(manifests) + 1
                yield layout.checkpoint(stream, size), f"no checkpoint covers the stream's {size} manifests"

    def _horizon(self, stream: str) -> int:
        present = self.manifests[stream] & self.segments[stream]
        return min(present) if present else 0

    def expired_ranges(self) -> dict[str, int]:
        """Per stream, how many of the oldest segments are gone (the retention horizon)."""
        return {s: h for s in sorted(self.manifests) if (h := self._horizon(s)) > 0}


# -- S3 ---------------------------------------------------------------------------------------------


def bounded_map(fn: Callable[[Any], Any], items: Iterable[Any], *, workers: int,
                window: int | None = None) -> Iterator[Any]:
    """``fn`` of each item on a pool of ``workers`` threads, at most ``window`` calls in flight.

    Results come in completion order: one slow request (a retry backing off) does not
    idle the other workers.
    """
    window = window or workers * 4
    with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wormjournal-lock") as pool:
        pending: set[cf.Future[Any]] = set()
        for item in items:
            pending.add(pool.submit(fn, item))
            if len(pending) >= window:
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        for future in cf.as_completed(pending):
            yield future.result()


@dataclasses.dataclass(frozen=True)
class Inspected:
    """One key: its current lock (None when its current version is a delete marker), its versions,
    and what the policy requires of it (when asked)."""

    name: str
    state: ObjectLockState | None
    versions: int
    delete_markers: int
    hidden: ObjectLockState | None = None  # the newest real version under a delete marker
    required: RetentionPolicy | None = None


class _Counter:
    """Counts the objects in a background listing, for the progress bar's total."""

    def __init__(self, store: Any) -> None:
        self.total: int | None = None
        self._thread = threading.Thread(target=self._count, args=(store,), daemon=True, name="wormjournal-count")
        self._thread.start()

    def _count(self, store: Any) -> None:
        try:
            self.total = sum(1 for _ in store.list(""))
        except JournalError:
            pass  # the bar then shows no total; the audit itself reports a failing store


def inspect_all(store: Any, *, workers: int = DEFAULT_WORKERS, progress: Progress | None = None,
                requirement: _Requirement | None = None) -> Iterator[Inspected]:
    """Every key of ``store`` (S3) with its lock and versions; HEADs run ``workers`` at a time.

    With a ``requirement``, the policy each object must meet is worked out in the pool too
    (it may read a segment's tenants).
    """
    counter = _Counter(store) if progress is not None else None

    def inspect(item: tuple[str, list[dict[str, Any]]]) -> Inspected:
        name, entries = item
        markers = sum(1 for v in entries if v["DeleteMarker"])
        real = [v for v in entries if not v["DeleteMarker"]]
        required = requirement.for_object(name) if requirement is not None else None
        if entries[0]["DeleteMarker"]:
            hidden = store.lock_state(name, real[0]["VersionId"]) if real else None
            return Inspected(name, None, len(real), markers, hidden, required)
        return Inspected(name, store.lock_state(name), len(real), markers, None, required)

    done = 0
    for result in bounded_map(inspect, store.versions(""), workers=workers):
        done += 1
        if progress is not None and counter is not None:
            total = counter.total
            progress(done, None if total is None else max(total, done))
        yield result


class _Requirement:
    """The policy an object must meet, with the tenants of segments read only when a tenant has one."""

    CACHE = 16384  # segments whose tenants are remembered: a manifest and its segment are listed far apart

    def __init__(self, store: Any, policy: PolicySet) -> None:
        self.store = store
        self.policy = policy
        self._tenants: collections.OrderedDict[str, frozenset[str]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def _segment_tenants(self, name: str) -> frozenset[str]:
        with self._lock:
            if name in self._tenants:
                self._tenants.move_to_end(name)
                return self._tenants[name]
        info = self.store.head(name)
        if info is None:
            return frozenset()
        column = pq.ParquetFile(ObjectFile(self.store, name, info.size)).read(columns=["tenant_id"]).column(0)
        tenants = frozenset(t for t in column.unique().to_pylist() if t is not None)
        with self._lock:
            self._tenants[name] = tenants
            while len(self._tenants) > self.CACHE:
                self._tenants.popitem(last=False)
        return tenants

    def for_object(self, name: str) -> RetentionPolicy:
        if not self.policy.tenants:
            return self.policy.journal
        if layout.parse_segment(name) is not None:
            return self.policy.for_tenants(self._segment_tenants(name))
        # A checkpoint is written under the strongest policy, so the newest one outlives every segment it
        # covers; an older one is required only for the journal's period.
        num = layout.parse_numbered(name)
        if num is not None and num[0] == "manifests":
            try:
                text, _ = split_note(self.store.get(name))
                return self.policy.for_tenants(self._segment_tenants(Manifest.parse(text).object))
            except (JournalError, ValueError):
                return self.policy.journal  # a damaged manifest: verify reports it
        return self.policy.journal


def check_lock(state: ObjectLockState, required: RetentionPolicy | None, now: dt.datetime) -> list[tuple[str, str]]:
    """(kind, message) of each way ``state`` falls short of ``required``."""
    if state.mode is None or state.retain_until is None:
        return [("not_locked", "has no Object Lock retention: it can be deleted or overwritten")]
    out: list[tuple[str, str]] = []
    if required is None:
        return out
    if required.mode == "COMPLIANCE" and state.mode != "COMPLIANCE":
        out.append(("weak_mode", f"locked in {state.mode} mode, the policy requires COMPLIANCE "
                                 "(a GOVERNANCE lock can be lifted by whoever holds s3:BypassGovernanceRetention)"))
    if state.last_modified is not None:
        needed = state.last_modified + dt.timedelta(days=required.days)
        if state.retain_until < needed - CLOCK_SKEW:
            out.append(("short_retention", f"retained until {state.retain_until:%Y-%m-%dT%H:%M:%SZ}, the policy "
                                           f"({required.days} days from {state.last_modified:%Y-%m-%dT%H:%M:%SZ}) "
                                           f"requires {needed:%Y-%m-%dT%H:%M:%SZ}"))
    return out


def _expiry_possible(store: Any, base: RetentionPolicy | None, now: dt.datetime) -> bool:
    """Whether any object can have passed its retention: not before the journal is one period old."""
    if base is None:
        return True
    state = store.lock_state(layout.JOURNAL_OBJECT) if is_s3(store) else None
    created = state.last_modified if state is not None else None
    return created is not None and created + dt.timedelta(days=base.days) <= now  # unknown: excuse nothing


def audit_s3(store: Any, *, now: dt.datetime | None = None, workers: int = DEFAULT_WORKERS,
             progress: Progress | None = None) -> LockAudit:
    now = now or dt.datetime.now(dt.UTC)
    identity = read_identity(store)
    base = identity.retention_policy()
    policy, problems = load_policy(store, base) if base is not None else (None, [])
    audit = LockAudit(store=store.url, backend="s3", policy=policy)
    if not store.object_lock_enabled():
        audit.find("bucket_unlocked", None, f"bucket {store.bucket!r} has no Object Lock: its objects can be "
                                            "deleted or overwritten by anyone with write access")
    if base is None:
        audit.find("no_policy", layout.JOURNAL_OBJECT, "the journal was created without a retention policy "
                                                       "(--allow-unlocked): nothing requires its objects to be kept")
    for problem in problems:
        audit.find("policy", None, problem)
    requirement = _Requirement(store, policy) if policy is not None else None
    expected = Expected()
    for item in inspect_all(store, workers=workers, progress=progress, requirement=requirement):
        audit.objects += 1
        state = item.state or item.hidden
        if item.state is None:
            if item.hidden is not None and item.hidden.retain_until is not None and item.hidden.retain_until < now:
                audit.expired += 1  # a lifecycle rule expired it: its locked version was past retention
                continue
            audit.find("delete_marker", item.name, f"the current version is a delete marker: readers see the object "
                                                   f"as deleted ({item.versions} version(s) beneath it)")
        else:
            expected.see(item.name)
        if item.versions > 1:
            audit.find("versions", item.name, f"{item.versions} versions: the object was written more than once")
        if state is None:
            continue
        if state.legal_hold:
            audit.held += 1
        if state.retain_until is not None and state.retain_until < now:
            audit.expired += 1
        for kind, message in check_lock(state, item.required, now):
            audit.find(kind, item.name, message)
    _check_expected(audit, expected, _expiry_possible(store, base, now))
    audit.findings.sort(key=lambda f: (f.kind, f.object or ""))  # the pool answers in any order
    return audit


def _check_expected(audit: LockAudit, expected: Expected, expiry_possible: bool) -> None:
    for name, why in expected.missing(expiry_possible):
        audit.find("missing", name, why)
    if expiry_possible:
        for stream, n in expected.expired_ranges().items():
            audit.notes.append(f"stream {stream}: segments 0..{n - 1} are gone, past their retention "
                               "(verify from a saved checkpoint: wormjournal verify --since)")


# -- local directory -------------------------------------------------------------------------------


def audit_local(store: Any, *, progress: Progress | None = None) -> LockAudit:
    root = Path(store.root)
    identity = read_identity(store)  # NotFoundError when there is no journal
    audit = LockAudit(store=store.url, backend="local", policy=None)
    audit.notes.append(LOCAL_WORDS)
    named = identity.retention_policy()
    if named is not None:
        audit.notes.append(f"journal.json names a retention policy ({named.describe()}), "
                           "which a local directory cannot enforce")
    expected = Expected()
    names = [info.name for info in store.list("")]
    for done, name in enumerate(names, 1):
        audit.objects += 1
        expected.see(name)
        path = root.joinpath(*name.split("/"))
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            audit.find("not_regular", name, "not a regular file (a link can point anywhere)")
        elif st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            audit.find("writable", name, f"is writable (mode {stat.filemode(st.st_mode)}): objects are made read-only")
        if progress is not None:
            progress(done, len(names))
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        mode = os.stat(dirpath).st_mode
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
            rel = os.path.relpath(dirpath, root)
            audit.find("writable_directory", None if rel == "." else rel.replace(os.sep, "/"),
                       f"directory {dirpath} is writable by others (mode {stat.filemode(mode)}): "
                       "they could delete or replace its files")
    _check_expected(audit, expected, expiry_possible=False)
    return audit


def audit_store(store: ObjectReader, *, now: dt.datetime | None = None, workers: int = DEFAULT_WORKERS,
                progress: Progress | None = None) -> LockAudit:
    """Audit every object of the journal in ``store`` (S3 or a local directory)."""
    if is_s3(store):
        return audit_s3(store, now=now, workers=workers, progress=progress)
    return audit_local(store, progress=progress)


def expired_objects(store: Any, *, now: dt.datetime | None = None, workers: int = DEFAULT_WORKERS,
                    progress: Progress | None = None) -> Iterator[ObjectLockState]:
    """Objects past their retain-until date and not under a legal hold: what a lifecycle rule may delete."""
    now = now or dt.datetime.now(dt.UTC)
    for item in inspect_all(store, workers=workers, progress=progress):
        if item.state is not None and item.state.retain_until is not None and item.state.retain_until < now \
                and not item.state.legal_hold:
            yield item.state
