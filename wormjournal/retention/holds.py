"""Legal holds and retention extension on S3: what a compliance officer changes, never shortening anything.

A legal hold keeps an object, whatever its retain-until date, until it is lifted.
It goes on every object that holds the events asked for: their segments, the
segments' manifests (which sign them), the index objects that cover those
segments and the payloads their events store apart (FORMAT.md 3.5). An extension
lengthens retain-until dates; a request that would shorten one, or turn COMPLIANCE
into GOVERNANCE, is refused here, before it reaches S3 (which refuses it too, but
not every S3-compatible store does).

Each action is recorded in the journal (``Journal.record_retention`` applies it through
:mod:`.actions` and records it, crash-safe), so the archive's own audit trail says who did
what, when and why. Every step here is idempotent, so an action a crash cut short is finished
by running it again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .. import steps
from ..errors import IntegrityError, NotFoundError, RetentionError, ValidationError
from ..index import Reader
from ..segments.manifest import Manifest
from ..segments.notes import VerifyKey
from ..segments.table import payload_refs
from ..storage import layout
from ..trust.load import read_identity
from .audit import CLOCK_SKEW, DEFAULT_WORKERS, Progress, _Requirement, bounded_map, inspect_all, is_s3
from .policy import ObjectLockState, check_extension, load_policy

# Names are listed in a hold's event up to this many; beyond, their count and digest.
MAX_LISTED_NAMES = 2000


def require_s3(store: Any, what: str) -> None:
    if not is_s3(store):
        raise RetentionError(
            f"{what} needs S3 Object Lock; {getattr(store, 'url', store)} is a local directory",
            hint="a local directory cannot lock or hold objects (its files are read-only, which is "
                 "tamper-evident, not tamper-proof); keep the archive in an S3 bucket with Object Lock",
        )


@dataclasses.dataclass(frozen=True)
class Selector:
    """What a hold is for: exactly one of an execution, a tenant or a segment (of ``stream``)."""

    execution: str | None = None
    tenant: str | None = None
    segment: int | None = None
    stream: str | None = None  # None: every stream (a segment needs one)

    def __post_init__(self) -> None:
        given = [v for v in (self.execution, self.tenant, self.segment) if v is not None]
        if len(given) != 1:
            raise ValidationError("selector", "give exactly one of an execution, a tenant or a segment")
        if self.segment is not None and (self.stream is None or self.segment < 0):
            raise ValidationError("segment", "a segment is a number >= 0 of one --stream")

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def describe(self) -> str:
        what = (f"execution {self.execution}" if self.execution is not None else
                f"tenant {self.tenant}" if self.tenant is not None else f"segment {self.segment}")
        return f"{what} of stream {self.stream}" if self.stream else what


def _payloads_of(store: Any, m: Manifest) -> list[tuple[str, int]]:
    """The payloads the events of a segment store apart (FORMAT.md 3.5), read from the object its manifest signs.
    Raises IntegrityError when the object is not that one."""
    data = store.get(m.object)
    if hashlib.sha256(data).digest() != m.object_sha256:
        raise IntegrityError(f"{m.object} is not the object its manifest signs: verify the store")
    return payload_refs(pq.read_table(pa.BufferReader(data), columns=["seq", "payload_codec", "payload"]))


def objects_for(store: Any, selector: Selector, public_keys: Sequence[VerifyKey]) -> list[str]:
    """The names of every object holding the selected events: segments, manifests, covering index objects, and
    the payloads their events store apart.

    Segments are found through the authenticated index (an execution's, or every
    execution of a tenant), so a tampered index cannot hide one. Raises NotFoundError
    when nothing matches.
    """
    names: set[str] = set()
    manifest_names = [i.name for i in store.list(layout.MANIFESTS_PREFIX)]
    streams = [selector.stream] if selector.stream else layout.streams_from_names(manifest_names)
    for stream in streams:
        reader = Reader(store, stream=stream, public_keys=public_keys)
        count = reader.refresh()
        if selector.segment is not None:
            segments = [selector.segment] if selector.segment < count else []
        else:
            segments = reader.segments_of(execution_id=selector.execution, tenant_id=selector.tenant)
        if not segments:
            continue
        wanted = set(segments)
        for n in segments:
            m = reader.manifest(n)
            names.add(m.object)
            names.add(layout.manifest(stream, n))
            names.update(layout.payload(stream, digest) for digest, _ in _payloads_of(store, m))
        for kind in layout.INDEX_KINDS:
            for info in store.list(layout.index_prefix(stream, kind)):
                parsed = layout.parse_index(info.name)
                if parsed is not None and any(parsed[2] <= n <= parsed[3] for n in wanted):
                    names.add(info.name)
    if not names:
        raise NotFoundError(f"no sealed event of {selector.describe()}",
                            hint="events are held once sealed: run `wormjournal seal` first, or check the id")
    return sorted(names)


def set_holds(store: Any, names: Sequence[str], on: bool, *, workers: int = DEFAULT_WORKERS,
              progress: Progress | None = None) -> int:
    """Put (``on``) or lift the legal hold of every object in ``names``; returns how many."""
    require_s3(store, "a legal hold")

    def hold(name: str) -> None:
        store.set_legal_hold(name, on)
        steps.reached("retention.hold_set")

    done = 0
    for _ in bounded_map(hold, names, workers=workers):
        done += 1
        if progress is not None:
            progress(done, len(names))
    return done


def names_record(names: Sequence[str]) -> dict[str, Any]:
    """How a hold event names its objects: all of them, or past MAX_LISTED_NAMES their count and digest."""
    digest = hashlib.sha256("".join(n + "\n" for n in sorted(names)).encode()).hexdigest()
    record: dict[str, Any] = {"count": len(names), "sha256": digest}
    if len(names) <= MAX_LISTED_NAMES:
        record["names"] = sorted(names)
    return record


@dataclasses.dataclass
class Extension:
    """What an extension changed: objects lengthened, objects already retained long enough."""

    extended: int = 0
    unchanged: int = 0
    until: dt.datetime | None = None  # the date asked for (None: each object's policy date)


def _target(state: ObjectLockState, until: dt.datetime | None, requirement: _Requirement | None) -> dt.datetime | None:
    """The retain-until date ``state`` should have, or None when it has it already."""
    if until is None:
        assert requirement is not None and state.last_modified is not None
        policy = requirement.for_object(state.name)
        wanted = (state.last_modified + dt.timedelta(days=policy.days)).replace(microsecond=0) + dt.timedelta(seconds=1)
        if state.retain_until is not None and state.retain_until >= wanted - CLOCK_SKEW:
            return None  # what the audit accepts: written under this policy, a second apart
    else:
        wanted = until
    if state.retain_until is not None and state.retain_until >= wanted:
        return None
    return wanted


def _change(state: ObjectLockState | None, until: dt.datetime | None, mode: str | None,
            requirement: _Requirement | None) -> tuple[dt.datetime | None, bool]:
    """(the retain-until date ``state`` should get, or None to keep it; whether the extension changes it)."""
    if state is None:
        return None, False
    target = _target(state, until, requirement)
    return target, target is not None or (mode is not None and state.mode != mode)


def _requirement(store: Any, until: dt.datetime | None) -> _Requirement | None:
    """What the policy in force requires of each object (for an extension to the policy, ``until`` None)."""
    if until is not None:
        return None
    base = read_identity(store).retention_policy()
    if base is None:
        raise RetentionError("the journal has no retention policy (it was created with --allow-unlocked)",
                             hint="an unlocked journal cannot be retained: "
                                  "create a new one in a bucket with Object Lock")
    return _Requirement(store, load_policy(store, base)[0])


def plan_extension(store: Any, *, until: dt.datetime | None = None, mode: str | None = None,
                   now: dt.datetime | None = None, workers: int = DEFAULT_WORKERS) -> Extension:
    """Check an extension without changing anything: raises RetentionError (or ValidationError) for a request
    ``extend_retention`` refuses; returns how many objects it would lengthen and how many it would leave."""
    require_s3(store, "extending a retention")
    now = now or dt.datetime.now(dt.UTC)
    if until is not None:
        if until.tzinfo is None:
            raise ValidationError("until", "needs a time zone (dates are taken as UTC midnight)")
        if until <= now:
            raise RetentionError(f"refused: {until:%Y-%m-%d} is not in the future")
    if read_identity(store).retention_policy() is None:
        raise RetentionError("the journal has no retention policy (it was created with --allow-unlocked)",
                             hint="an unlocked journal cannot be retained: "
                                  "create a new one in a bucket with Object Lock")
    requirement = _requirement(store, until)
    plan = Extension(until=until)
    for item in inspect_all(store, workers=workers):
        if item.state is None:
            continue
        if until is not None:
            check_extension(item.state, until, mode)
        elif mode is not None:
            check_extension(item.state, item.state.retain_until or now, mode)
        if _change(item.state, until, mode, requirement)[1]:
            plan.extended += 1
        else:
            plan.unchanged += 1
    return plan


def apply_extension(store: Any, *, until: dt.datetime | None = None, mode: str | None = None,
                    now: dt.datetime | None = None, workers: int = DEFAULT_WORKERS, objects: int = 0,
                    progress: Progress | None = None) -> Extension:
    """Lengthen what falls short (each object checked again against its state then: idempotent, so an
    extension a crash cut short is finished by running it again). ``objects``: how many there are, for
    ``progress``. Returns what it changed now."""
    now = now or dt.datetime.now(dt.UTC)
    requirement = _requirement(store, until)
    result = Extension(until=until)

    def apply(state: ObjectLockState | None) -> bool:
        target, changed = _change(state, until, mode, requirement)
        if not changed:
            return False
        assert state is not None
        store.extend_retention(state.name, target or state.retain_until or now, mode, current=state)
        steps.reached("retention.retention_extended")
        return True

    done = 0
    for changed in bounded_map(apply, (i.state for i in inspect_all(store, workers=workers)), workers=workers):
        done += 1
        if changed:
            result.extended += 1
        else:
            result.unchanged += 1
        if progress is not None:
            progress(done, max(objects, done))
    return result


def extend_retention(store: Any, *, until: dt.datetime | None = None, mode: str | None = None,
                     now: dt.datetime | None = None, workers: int = DEFAULT_WORKERS,
                     progress: Progress | None = None) -> Extension:
    """Lengthen the retention of every object of the journal.

    With ``until``, every object is retained at least until then: if any is already
    retained beyond it, the whole request is refused (RetentionError) before anything
    changes, since it would shorten that one. Without, each object is brought up to
    what the policy in force requires of it (after a policy was strengthened). ``mode``
    may raise GOVERNANCE to COMPLIANCE, never the other way.
    """
    now = now or dt.datetime.now(dt.UTC)
    plan = plan_extension(store, until=until, mode=mode, now=now, workers=workers)  # refuse before anything changes
    return apply_extension(store, until=until, mode=mode, now=now, workers=workers,
                           objects=plan.extended + plan.unchanged, progress=progress)
