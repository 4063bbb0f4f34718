"""Retention: the policy, legal holds, extension only, the lock audit and expiry (issue: retention).

Every S3 test runs over HTTP against moto's server. moto does not enforce every
Object Lock rule (it lets a COMPLIANCE retention be shortened, a mode be
downgraded, a locked key be overwritten): the tests use that, through boto3
behind the library's back, to create each condition the lock audit must catch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from s3_fixtures import S3Bucket, make_client

from wormjournal.errors import NotFoundError, RetentionError, ValidationError
from wormjournal.index import Reader
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal.keys import load_keys
from wormjournal.retention import RetentionPolicy
from wormjournal.retention.audit import audit_store, expired_objects
from wormjournal.retention.holds import Selector, extend_retention, objects_for, set_holds
from wormjournal.retention.policy import RETENTION_EXECUTION, RETENTION_STREAM, PolicySet, load_policy, set_policy
from wormjournal.segments.notes import SigningKey
from wormjournal.storage import layout
from wormjournal.storage.local import LocalStore
from wormjournal.trust.load import read_identity
from wormjournal.verify import verify_store

from conftest import heads_naming, make_writable

PREFIX = "archive/prod"
DAYS = 30
NO_AGE = JournalConfig(seal_max_age_seconds=None)
# Three seals: segment 0 holds run-a (acme); 1 holds run-b (globex) and run-a; 2 holds run-c (acme).
SEALS = [[("run-a", "acme")] * 3, [("run-b", "globex"), ("run-a", "acme")], [("run-c", "acme")] * 2]


@dataclasses.dataclass
class Locked:
    bucket: S3Bucket
    keys: Path
    wal: Path

    @property
    def url(self) -> str:
        return self.bucket.url(PREFIX)

    def store(self, **kwargs: Any) -> Any:
        return self.bucket.store(PREFIX, **kwargs)

    def key(self, name: str) -> str:
        return f"{PREFIX}/{name}"

    def names(self) -> list[str]:
        return [i.name for i in self.store().list("")]

    def lock(self, name: str) -> dict[str, Any]:
        head = self.bucket.client.head_object(Bucket=self.bucket.name, Key=self.key(name))
        return {"mode": head.get("ObjectLockMode"), "until": head.get("ObjectLockRetainUntilDate"),
                "hold": head.get("ObjectLockLegalHoldStatus")}

    def cli(self, *args: object) -> list[object]:
        """Arguments of a retention command on this journal (S3 endpoint, key and WAL directories)."""
        return [*args, self.url, "--endpoint-url", self.bucket.endpoint_url]

    def action(self, *args: object) -> list[object]:
        return [*self.cli(*args), "--key-dir", self.keys, "--wal-dir", self.wal / "trail", "--by", "officer-7",
                "--reason", "case 2026-114"]


def write_seals(store: Any, keys: Path, wal: Path, seals: list[list[tuple[str, str]]]) -> None:
    with Journal.open(store, key_dir=keys, wal_dir=wal, config=NO_AGE) as j:
        for seal in seals:
            for i, (execution, tenant) in enumerate(seal):
                j.append("tool_called", execution, {"i": i}, tenant_id=tenant)
            j.seal()


@pytest.fixture
def locked(s3_bucket: S3Bucket, tmp_path: Path) -> Locked:
    """A journal of three sealed segments on an Object Lock bucket, COMPLIANCE for DAYS days."""
    loc = Locked(s3_bucket, tmp_path / "keys", tmp_path / "wal")
    Journal.create(loc.store(), key_dir=loc.keys, wal_dir=loc.wal, retention=RetentionPolicy("COMPLIANCE", DAYS),
                   config=NO_AGE).close()
    write_seals(loc.store(), loc.keys, loc.wal, SEALS)
    return loc


def kinds(audit: Any) -> dict[str, set[str | None]]:
    out: dict[str, set[str | None]] = {}
    for f in audit.findings:
        out.setdefault(f.kind, set()).add(f.object)
    return out


def segment_name(loc: Locked, n: int) -> str:
    return next(name for name in loc.names() if (p := layout.parse_segment(name)) and p[2] == n)


def shorten(loc: Locked, name: str, until: dt.datetime, mode: str = "COMPLIANCE") -> None:
    """What S3 would refuse and moto allows: a retention cut short."""
    loc.bucket.client.put_object_retention(Bucket=loc.bucket.name, Key=loc.key(name),
                                           Retention={"Mode": mode, "RetainUntilDate": until})


def remove(loc: Locked, name: str) -> None:
    """Delete every version of ``name`` (its retention first cut into the past, as moto lets us)."""
    shorten(loc, name, dt.datetime.now(dt.UTC) - dt.timedelta(days=1), "GOVERNANCE")
    for v in loc.bucket.versions(loc.key(name)):
        loc.bucket.client.delete_object(Bucket=loc.bucket.name, Key=loc.key(name), VersionId=v["VersionId"])


def count_requests(client: Any, operation: str) -> list[str]:
    """Record every ``operation`` request the client is about to send."""
    sent: list[str] = []
    client.meta.events.register(f"before-call.s3.{operation}", lambda **kw: sent.append(operation))
    return sent


def signing_key(locked: Locked) -> SigningKey:
    """The journal's current signing key (what `wormjournal retention set` signs a policy object with)."""
    return load_keys(locked.keys, read_identity(locked.store()).journal_id)[0]


# -- the policy ------------------------------------------------------------------------------------


def test_show_prints_the_policy_in_plain_words(locked: Locked, wj) -> None:  # noqa: ANN001
    r = wj("retention", *locked.cli("show"))
    assert r.code == 0, r.err
    assert f"COMPLIANCE for {DAYS} days" in r.out
    assert "nobody, not even the account root, can delete or overwrite" in r.out


def test_a_stronger_tenant_policy_locks_that_tenants_segments_longer(locked: Locked) -> None:
    store = locked.store()
    base = RetentionPolicy("COMPLIANCE", DAYS)
    policy = set_policy(store, base, signing_key(locked), tenant=("globex", RetentionPolicy("COMPLIANCE", 90)),
                        by="o", reason="r")
    assert policy.number == 1 and load_policy(store, base) == (policy, [])
    write_seals(store, locked.keys, locked.wal, [[("run-d", "acme")], [("run-e", "globex")]])
    now = dt.datetime.now(dt.UTC)
    days = {n: (locked.lock(segment_name(locked, n))["until"] - now).days for n in (3, 4)}
    assert days[3] in (DAYS - 1, DAYS) and days[4] in (89, 90)
    assert (locked.lock(layout.manifest("main", 4))["until"] - now).days in (89, 90)
    # The audit now requires 90 days of globex's older segment 1 (and its manifest), which has 30.
    audit = audit_store(store)
    assert kinds(audit) == {"short_retention": {segment_name(locked, 1), layout.manifest("main", 1)}}, audit.findings
    assert (locked.lock(layout.retention_policy(1))["until"] - now).days in (89, 90)  # locked as the strongest
    # ... until the objects are brought up to the policy.
    result = extend_retention(store)
    assert result.extended == 2
    assert audit_store(store).ok


def test_a_weaker_policy_is_refused_before_anything_is_written(locked: Locked) -> None:
    store = locked.store()
    base = RetentionPolicy("COMPLIANCE", DAYS)
    before = locked.names()
    with pytest.raises(RetentionError, match="weaker"):
        set_policy(store, base, signing_key(locked), journal=RetentionPolicy("COMPLIANCE", DAYS - 1),
                   by="o", reason="r")
    with pytest.raises(RetentionError, match="weaker"):
        set_policy(store, base, signing_key(locked), journal=RetentionPolicy("GOVERNANCE", DAYS * 2),
                   by="o", reason="r")
    set_policy(store, base, signing_key(locked), tenant=("acme", RetentionPolicy("COMPLIANCE", 60)), by="o", reason="r")
    with pytest.raises(RetentionError, match="tenant 'acme'"):
        set_policy(store, base, signing_key(locked), tenant=("acme", RetentionPolicy("COMPLIANCE", 45)),
                   by="o", reason="r")
    assert sorted(set(locked.names()) - set(before)) == [layout.retention_policy(1)]


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned-by-an-intruder", "signed-by-the-key-holder"])
def test_a_policy_object_that_weakens_is_not_in_force_and_the_audit_reports_it(locked: Locked, signed: bool) -> None:
    """Anyone with PutObject can upload a policy object: unsigned, it is not in force (FORMAT.md 9); signed by
    the journal's key, it still only strengthens. Either way writers keep the policy before it."""
    store = locked.store()
    base = RetentionPolicy("COMPLIANCE", DAYS)
    weak = PolicySet(journal=RetentionPolicy("GOVERNANCE", 1), number=1, set_at="2026-01-01T00:00:00Z",
                     set_by="intruder", reason="")
    locked.bucket.client.put_object(Bucket=locked.bucket.name, Key=locked.key(layout.retention_policy(1)),
                                    Body=weak.sign(signing_key(locked)) if signed else weak.encode())
    policy, problems = load_policy(store, base)
    assert policy.journal == base and len(problems) == 1
    assert ("weakens" if signed else "not signed by a key of the journal") in problems[0]
    audit = audit_store(store)
    assert "policy" in kinds(audit)
    assert kinds(audit)["not_locked"] == {layout.retention_policy(1)}  # and it was put without a lock
    assert [f.kind for f in verify_store(store).findings] == ["retention_policy"]


def test_an_unsigned_format_1_policy_object_is_not_in_force(locked: Locked) -> None:
    store = locked.store()
    base = RetentionPolicy("COMPLIANCE", DAYS)
    strong = PolicySet(journal=RetentionPolicy("COMPLIANCE", DAYS * 3), number=1, set_at="2026-01-01T00:00:00Z",
                       set_by="before the upgrade", reason="")
    locked.bucket.client.put_object(Bucket=locked.bucket.name, Key=locked.key("retention/policy/000000000001.json"),
                                    Body=strong.encode())
    policy, problems = load_policy(store, base)
    assert policy.number == 0 and len(problems) == 1 and "unsigned policy object (format 1)" in problems[0]


def test_the_retention_commands_are_recorded_and_reserved(locked: Locked, wj) -> None:  # noqa: ANN001
    r = wj("retention", *locked.action("set"), "--tenant", "globex", "--retention", "1y")
    assert r.code == 0, r.err
    with Journal.open(locked.store(), key_dir=locked.keys, wal_dir=locked.wal, config=NO_AGE) as j:
        with pytest.raises(ValidationError, match="appended by the library only"):
            j.append("legal_hold_placed", RETENTION_EXECUTION, {})
    events = Reader(locked.store(), stream=RETENTION_STREAM).events(RETENTION_EXECUTION)
    assert [e.event_type for e in events] == ["retention_policy_set"]
    assert events[0].payload["tenant"] == "globex" and events[0].payload["days"] == 366
    assert events[0].payload["by"] == "officer-7" and events[0].payload["reason"] == "case 2026-114"


# -- legal holds -----------------------------------------------------------------------------------


def held(loc: Locked) -> set[str]:
    return {name for name in loc.names() if loc.lock(name)["hold"] == "ON"}


def test_hold_and_release_an_execution_from_the_command_line(locked: Locked, wj) -> None:  # noqa: ANN001
    r = wj("retention", *locked.action("hold"), "--execution", "run-a")
    assert r.code == 0, r.err
    expected = {segment_name(locked, 0), segment_name(locked, 1), layout.manifest("main", 0),
                layout.manifest("main", 1)}
    index = {n for n in locked.names() if (p := layout.parse_index(n)) and p[0] == "main" and p[2] <= 1}
    assert index and held(locked) == expected | index
    assert locked.lock(segment_name(locked, 2))["hold"] in (None, "OFF")
    r = wj("retention", *locked.action("release"), "--execution", "run-a")
    assert r.code == 0, r.err
    assert held(locked) == set()
    events = Reader(locked.store(), stream=RETENTION_STREAM).events(RETENTION_EXECUTION)
    assert [e.event_type for e in events] == ["legal_hold_placed", "legal_hold_released"]
    placed = events[0].payload
    assert placed["selector"] == {"execution": "run-a"} and placed["by"] == "officer-7"
    assert placed["objects"]["names"] == sorted(expected | index)
    assert placed["objects"]["count"] == len(expected | index)
    assert verify_store(locked.store()).ok


def test_a_hold_covers_the_payloads_its_events_store_apart(locked: Locked) -> None:
    """A large payload is an object of its own (FORMAT.md 3.5): held with its event's segment, or the event could
    outlive it unreadable."""
    with Journal.open(locked.store(), key_dir=locked.keys, wal_dir=locked.wal, config=NO_AGE) as j:
        j.append("state_updated", "run-big", os.urandom(300 << 10), tenant_id="acme", key_scope="none")
        j.append("state_updated", "run-small", {"small": True}, tenant_id="acme", key_scope="none")
        j.seal()
    store = locked.store()
    [apart] = [n for n in locked.names() if n.startswith("payloads/")]
    names = objects_for(store, Selector(execution="run-big"), Reader(store).trusted_keys)
    assert apart in names
    assert set_holds(store, names, True) == len(names)
    assert locked.lock(apart)["hold"] == "ON"
    assert apart not in objects_for(store, Selector(segment=0, stream="main"), Reader(store).trusted_keys)


def test_hold_a_tenant_and_a_segment(locked: Locked) -> None:
    store = locked.store()
    keys = Reader(store).trusted_keys
    globex = objects_for(store, Selector(tenant="globex"), keys)
    assert {n for n in globex if layout.parse_segment(n)} == {segment_name(locked, 1)}
    acme = objects_for(store, Selector(tenant="acme"), keys)
    assert {n for n in acme if layout.parse_segment(n)} == {segment_name(locked, n) for n in (0, 1, 2)}
    seg = objects_for(store, Selector(segment=2, stream="main"), keys)
    assert set(seg) >= {segment_name(locked, 2), layout.manifest("main", 2)}
    assert set_holds(store, seg, True) == len(seg)
    assert held(locked) == set(seg)
    audit = audit_store(store)
    assert audit.ok and audit.held == len(seg)
    with pytest.raises(NotFoundError, match="no sealed event of execution never-ran"):
        objects_for(store, Selector(execution="never-ran"), keys)


def test_a_local_directory_cannot_hold_and_says_why(tmp_path: Path, wj) -> None:  # noqa: ANN001
    store, keys = tmp_path / "journal", tmp_path / "keys"
    write_local(store, keys)
    r = wj("retention", "hold", store, "--execution", "run-a", "--reason", "r", "--key-dir", keys)
    assert r.code == 2
    assert "needs S3 Object Lock" in r.err and "tamper-evident, not tamper-proof" in r.err


# -- extension only --------------------------------------------------------------------------------


def test_extend_until_a_date_lengthens_every_object(locked: Locked, wj) -> None:  # noqa: ANN001
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=400)).date()
    r = wj("retention", *locked.action("extend"), "--until", until.isoformat())
    assert r.code == 0, r.err
    # Every object is retained at least until then, but the trail written after, under the policy.
    store = locked.store()
    size = len([n for n in locked.names() if n.startswith(f"manifests/stream={RETENTION_STREAM}/")])
    journal_id = json.loads(store.get(layout.JOURNAL_OBJECT))["journal_id"]
    trail = {n for n in locked.names() if f"stream={RETENTION_STREAM}/" in n}
    trail |= set(heads_naming(store, journal_id, RETENTION_STREAM, size))  # the head written after the trail's seal
    assert trail and {locked.lock(n)["until"].date() >= until for n in set(locked.names()) - trail} == {True}
    assert sum(locked.lock(n)["until"].date() == until for n in locked.names()) > 10
    events = Reader(locked.store(), stream=RETENTION_STREAM).events(RETENTION_EXECUTION)
    assert events[-1].event_type == "retention_extended" and events[-1].payload["until"].startswith(until.isoformat())
    assert audit_store(locked.store()).ok


def test_shortening_or_downgrading_is_refused_before_it_reaches_s3(locked: Locked) -> None:
    store = locked.store(client=make_client(locked.bucket.endpoint_url))
    sent = count_requests(store.client, "PutObjectRetention")
    name = segment_name(locked, 0)
    before = locked.lock(name)
    with pytest.raises(RetentionError, match="would shorten"):
        store.extend_retention(name, before["until"] - dt.timedelta(days=1))
    with pytest.raises(RetentionError, match="never becomes GOVERNANCE"):
        store.extend_retention(name, before["until"] + dt.timedelta(days=1), "GOVERNANCE")
    # A date earlier than one object's retention refuses the whole request, before any change.
    shorten(locked, name, before["until"] + dt.timedelta(days=100))  # moto lets us lengthen behind its back
    with pytest.raises(RetentionError, match="would shorten"):
        extend_retention(store, until=before["until"] + dt.timedelta(days=50))
    with pytest.raises(RetentionError, match="never becomes GOVERNANCE"):
        extend_retention(store, until=before["until"] + dt.timedelta(days=200), mode="GOVERNANCE")
    with pytest.raises(RetentionError, match="not in the future"):
        extend_retention(store, until=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    assert sent == []
    assert locked.lock(name) == dict(before, until=before["until"] + dt.timedelta(days=100))
    extend_retention(store, until=before["until"] + dt.timedelta(days=200))
    assert len(sent) == len(locked.names())  # the control: the counter sees the requests that are sent


def test_extend_can_raise_governance_to_compliance(locked: Locked) -> None:
    store = locked.store()
    name = layout.manifest("main", 1)
    shorten(locked, name, locked.lock(name)["until"], "GOVERNANCE")
    assert kinds(audit_store(store)) == {"weak_mode": {name}}
    extend_retention(store, mode="COMPLIANCE")
    assert locked.lock(name)["mode"] == "COMPLIANCE" and audit_store(store).ok


# -- the lock audit --------------------------------------------------------------------------------


def test_an_untouched_journal_passes_the_audit(locked: Locked, wj) -> None:  # noqa: ANN001
    r = wj("retention", *locked.cli("audit"), "--json")
    assert r.code == 0, r.out
    report = json.loads(r.out)
    assert report["ok"] and report["findings"] == [] and report["objects"] == len(locked.names())
    assert report["policy"]["journal"] == {"mode": "COMPLIANCE", "days": DAYS}


def _unlock(loc: Locked) -> str:
    name = layout.manifest("main", 2)
    data = loc.store().get(name)
    remove(loc, name)
    loc.bucket.client.put_object(Bucket=loc.bucket.name, Key=loc.key(name), Body=data)  # same bytes, no lock
    return name


def _governance(loc: Locked) -> str:
    name = segment_name(loc, 1)
    shorten(loc, name, loc.lock(name)["until"], "GOVERNANCE")
    return name


def _short(loc: Locked) -> str:
    name = layout.checkpoint("main", 3)
    shorten(loc, name, dt.datetime.now(dt.UTC) + dt.timedelta(days=2))
    return name


def _second_version(loc: Locked) -> str:
    name = segment_name(loc, 0)
    lock = loc.lock(name)
    loc.bucket.client.put_object(Bucket=loc.bucket.name, Key=loc.key(name), Body=loc.store().get(name),
                                 ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=lock["until"])
    return name


def _missing(loc: Locked) -> str:
    name = segment_name(loc, 1)
    remove(loc, name)
    return "segments/stream=main/date=*/seg-000000000001.parquet"


def _delete_marker(loc: Locked) -> str:
    name = layout.manifest("main", 0)
    loc.bucket.client.delete_object(Bucket=loc.bucket.name, Key=loc.key(name))
    return name


CONDITIONS: dict[str, Callable[[Locked], str]] = {
    "not_locked": _unlock,
    "weak_mode": _governance,
    "short_retention": _short,
    "versions": _second_version,
    "missing": _missing,
    "delete_marker": _delete_marker,
}


@pytest.mark.parametrize("kind", sorted(CONDITIONS))
def test_the_audit_catches_each_condition(locked: Locked, kind: str, wj) -> None:  # noqa: ANN001
    name = CONDITIONS[kind](locked)
    audit = audit_store(locked.store())
    found = kinds(audit)
    assert name in found.get(kind, set()), audit.findings
    extra = set(found) - {kind}
    assert extra <= {"missing"} and (not extra or kind == "delete_marker"), audit.findings  # a hidden object is missing
    r = wj("retention", *locked.cli("audit"))
    assert r.code == 1 and f"FINDING {kind}" in r.out


def test_a_bucket_without_object_lock_and_a_journal_without_policy(s3_bucket_unlocked: S3Bucket,
                                                                   tmp_path: Path) -> None:
    store = s3_bucket_unlocked.store(PREFIX)
    Journal.create(store, key_dir=tmp_path / "k", wal_dir=tmp_path / "w", allow_unlocked=True, config=NO_AGE).close()
    write_seals(store, tmp_path / "k", tmp_path / "w", SEALS[:1])
    found = kinds(audit_store(store))
    assert set(found) == {"bucket_unlocked", "no_policy", "not_locked"}
    assert len(found["not_locked"]) == len(list(store.list("")))


def test_the_audit_runs_requests_through_a_bounded_pool(locked: Locked) -> None:
    store = locked.store()
    calls: list[int] = []
    audit = audit_store(store, workers=3, progress=lambda done, total: calls.append(done))
    assert audit.ok and calls == list(range(1, audit.objects + 1))
    one = audit_store(store, workers=1)
    assert one.to_json() == audit.to_json()


# -- the local directory ---------------------------------------------------------------------------


def write_local(store: Path, keys: Path) -> LocalStore:
    local = LocalStore(store)
    Journal.create(local, key_dir=keys, config=NO_AGE).close()
    write_seals(local, keys, store / ".wal", SEALS)
    return local


def test_local_audit_checks_permissions_and_says_what_a_directory_cannot_promise(tmp_path: Path, wj) -> None:  # noqa: ANN001
    store = write_local(tmp_path / "journal", tmp_path / "keys")
    r = wj("retention", "audit", tmp_path / "journal")
    assert r.code == 0, r.out
    assert "tamper-evident, not tamper-proof" in r.out and "OK: every object is read-only" in r.out
    manifest = tmp_path / "journal" / "manifests" / "stream=main" / "000000000001.note"
    make_writable(manifest)
    link = tmp_path / "journal" / "checkpoints" / "stream=main" / "000000000099.note"
    os.symlink(manifest, link)
    (tmp_path / "journal" / "segments").chmod(0o777)
    found = kinds(audit_store(store))
    assert found == {"writable": {layout.manifest("main", 1)}, "not_regular": {layout.checkpoint("main", 99)},
                     "writable_directory": {"segments"}}, found
    r = wj("retention", "audit", tmp_path / "journal", "--json")
    assert r.code == 1 and not json.loads(r.out)["ok"]
    r = wj("retention", "expired", tmp_path / "journal")
    assert r.code == 0 and "nothing expires" in r.out
    assert stat.S_IMODE(manifest.stat().st_mode) & stat.S_IWUSR


def test_local_audit_reports_a_removed_manifest(tmp_path: Path) -> None:
    store = write_local(tmp_path / "journal", tmp_path / "keys")
    (tmp_path / "journal" / "manifests" / "stream=main" / "000000000001.note").unlink()
    assert kinds(audit_store(store)) == {"missing": {layout.manifest("main", 1)}}


# -- expiry ----------------------------------------------------------------------------------------


def test_expired_lists_objects_past_retention_and_not_held(locked: Locked, wj) -> None:  # noqa: ANN001
    store = locked.store()
    assert list(expired_objects(store)) == []
    hold = objects_for(store, Selector(segment=0, stream="main"), Reader(store).trusted_keys)
    set_holds(store, hold, True)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=DAYS + 1)
    expired = {s.name for s in expired_objects(store, now=later)}
    assert expired == set(locked.names()) - set(hold)
    name = segment_name(locked, 2)
    shorten(locked, name, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    r = wj("retention", *locked.cli("expired"), "--json")
    assert r.code == 0
    assert [json.loads(line)["object"] for line in r.out.splitlines()] == [name]


def test_after_expiry_verification_starts_at_the_horizon_and_the_audit_names_the_range(locked: Locked) -> None:
    store = locked.store()
    reader = Reader(store)
    saved = reader.latest_checkpoint()[1]
    write_seals(store, locked.keys, locked.wal, [[("run-f", "acme")]])
    # A lifecycle rule deleted segment 0, its manifest and its index objects, all past retention.
    gone = [segment_name(locked, 0), layout.manifest("main", 0), layout.checkpoint("main", 1)]
    gone += [n for n in locked.names() if (p := layout.parse_index(n)) and p[0] == "main" and p[3] == 0]
    for name in gone:
        remove(locked, name)
    report = verify_store(store, since=saved)
    summary = next(s for s in report.streams if s.stream == "main")
    assert report.ok, report.findings
    assert summary.horizon == 1 and summary.expired_segments == 1 and summary.expired_seqs == [(0, 2)]
    assert "expired    events seq 0..2: gone past their retention" in report.to_text()
    # The audit calls the gone prefix expired once the journal is a retention period old, missing before.
    found = kinds(audit_store(store))
    assert layout.manifest("main", 0) in found["missing"]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=DAYS + 1)
    audit = audit_store(store, now=later)
    assert "missing" not in kinds(audit)
    assert any("segments 0..0 are gone" in note for note in audit.notes)


# -- bad input -------------------------------------------------------------------------------------


def test_bad_requests_are_refused_with_a_clear_error_and_change_nothing(locked: Locked, wj) -> None:  # noqa: ANN001
    before = {n: locked.lock(n) for n in locked.names()}
    r = wj("retention", *locked.action("extend"), "--until", "next tuesday")
    assert r.code == 2 and "is not a date like 2033-12-31" in r.err
    r = wj("retention", *locked.action("extend"), "--until", "2020-01-01")
    assert r.code == 2 and "not in the future" in r.err
    r = wj("retention", *locked.action("hold"), "--segment", "1")
    assert r.code == 2 and "a segment is a number >= 0 of one --stream" in r.err
    r = wj("retention", *locked.action("hold"), "--segment", "9", "--stream", "main")
    assert r.code == 2 and "no sealed event of segment 9 of stream main" in r.err
    r = wj("retention", *locked.action("set"), "--retention", "10d")
    assert r.code == 2 and "refused" in r.err and "weaker" in r.err
    with pytest.raises(SystemExit):
        wj("retention", *locked.cli("audit"), "--workers", "100")  # past the connection pool: argparse refuses
    r = wj("retention", *locked.action("set"), "--retention", "ten years")
    assert r.code == 2 and "not like 30d or 7y" in r.err
    assert {n: locked.lock(n) for n in locked.names()} == before


def test_a_damaged_policy_object_is_reported_and_passed_over(locked: Locked) -> None:
    store = locked.store()
    locked.bucket.client.put_object(Bucket=locked.bucket.name, Key=locked.key(layout.retention_policy(1)),
                                    Body=b"{not json", ObjectLockMode="COMPLIANCE",
                                    ObjectLockRetainUntilDate=dt.datetime.now(dt.UTC) + dt.timedelta(days=DAYS + 1))
    policy, problems = load_policy(store, RetentionPolicy("COMPLIANCE", DAYS))
    assert policy.number == 0 and len(problems) == 1 and "not signed by a key of the journal" in problems[0]
    assert kinds(audit_store(store)) == {"policy": {None}}
    # A writer still seals, under the policy before it; verify reports the object.
    write_seals(store, locked.keys, locked.wal, [[("run-g", "acme")]])
    assert [f.kind for f in verify_store(store).findings] == ["retention_policy"]


def test_expired_prints_what_a_lifecycle_rule_may_delete(locked: Locked, wj) -> None:  # noqa: ANN001
    r = wj("retention", *locked.cli("expired"))
    assert r.code == 0 and "0 object(s) past retention and not under a legal hold" in r.out
