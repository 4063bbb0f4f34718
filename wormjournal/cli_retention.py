"""``wormjournal retention ...`` (the policy, legal holds, extension, the lock audit, expiry), ``shred`` and ``keys``.

Actions that change a lock (hold, release, extend, set) are recorded as events of
the journal's ``retention`` stream (FORMAT.md, section 3.3), signed and sealed at
once, so the archive's own audit trail says who did what, when and why. Each runs
with that stream's writer open: opening it first finishes an action a crash cut
short (``wormjournal.retention.actions``), and the writer then applies and records
this one, crash-safe in turn.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import getpass
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .cli_common import (
    EXIT_FINDINGS,
    EXIT_OK,
    _keystore,
    _print_columns,
    _public_keys,
    _store,
    _wal_dir,
    _writer,
    default_key_dir,
    err,
    out,
)
from .errors import ValidationError
from .index import Reader
from .journal import Journal
from .journal.keys import load_keys, load_wal_key
from .retention import parse_period
from .retention.actions import extend_action, holds_action, policy_action
from .retention.audit import DEFAULT_WORKERS, LOCAL_WORDS, audit_store, expired_objects, is_s3
from .retention.holds import Selector, objects_for, plan_extension, require_s3
from .retention.policy import RETENTION_STREAM, RetentionPolicy, load_policy, prepare_policy
from .retention.shred import RECEIPT_EXECUTION, RECEIPT_TYPE, check_receipt, key_use_counts
from .storage import layout
from .storage.s3 import MAX_POOL_CONNECTIONS
from .trust.load import read_identity


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int | None], None] | None]:
    """A progress callback drawing a bar on a terminal's stderr (None elsewhere: no noise in logs)."""
    if not sys.stderr.isatty():
        yield None
        return
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                  transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _utc_date(text: str) -> dt.datetime:
    """A date (UTC midnight) or an ISO timestamp with a zone."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValidationError("until", f"{text!r} is not a date like 2033-12-31 or 2033-12-31T00:00:00Z") from e
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _trail(args: argparse.Namespace) -> Journal:
    """The writer of the trail stream, which applies and records an action (``Journal.record_retention``): it is
    sealed in the store when that returns. Opening it finishes an earlier action that a crash cut short."""
    return Journal.open(_store(args), key_dir=args.key_dir, stream=args.trail_stream, wal_dir=_wal_dir(args))


def cmd_show(args: argparse.Namespace) -> int:
    store = _store(args)
    identity = read_identity(store)
    base = identity.retention_policy()
    if base is None:
        out.print(f"journal {identity.journal_id} in {store.url}: no retention policy")
        out.print(LOCAL_WORDS if not is_s3(store) else
                  "it was created with --allow-unlocked: its objects are not locked and can be deleted or overwritten")
        return EXIT_OK
    policy, problems = load_policy(store, base)
    out.print(f"journal {identity.journal_id} in {store.url}: retention policy {policy.number}"
              + (f", set {policy.set_at} by {policy.set_by} ({policy.reason})" if policy.number else " (from init)"))
    for line in policy.describe_lines():
        out.print(f"  {line}")
    out.print("  indexes and keys are kept under the journal's policy, checkpoints under the strongest")
    for problem in problems:
        err.print(f"warning: {problem}", markup=False)
    return EXIT_OK


def cmd_set(args: argparse.Namespace) -> int:
    store = _store(args)
    identity = read_identity(store)
    base = identity.retention_policy()
    require_s3(store, "a retention policy")
    if base is None:
        raise ValidationError("store", "the journal was created with --allow-unlocked and has no retention policy")
    new = RetentionPolicy(args.retention_mode or base.mode, parse_period(args.retention))
    signing, _ = load_keys(args.key_dir, identity.journal_id)  # the policy object is signed (FORMAT.md 9)
    with _trail(args) as j:  # opened first: a policy a crash left unrecorded is finished, and numbered before this one
        policy, note = prepare_policy(store, base, signing, journal=None if args.tenant else new,
                                      tenant=(args.tenant, new) if args.tenant else None, by=args.by,
                                      reason=args.reason)
        seq = j.record_retention(policy_action(policy, note, tenant=args.tenant, new=new, by=args.by,
                                               reason=args.reason))
    out.print(f"retention policy {policy.number}: {'tenant ' + args.tenant if args.tenant else 'the journal'} "
              f"{new.mode} for {new.days} days; recorded at seq {seq} of stream {args.trail_stream}")
    out.print("new objects are written under it; bring existing ones up to it with `wormjournal retention extend "
              "--to-policy`")
    return EXIT_OK


def _selector(args: argparse.Namespace) -> Selector:
    return Selector(execution=args.execution, tenant=args.tenant, segment=args.segment, stream=args.stream)


def cmd_hold(args: argparse.Namespace) -> int:
    on = args.action == "hold"
    store = _store(args)
    require_s3(store, "a legal hold")
    selector = _selector(args)
    with _trail(args) as j:
        names = objects_for(store, selector, _public_keys(args.public_key) or _trusted(args))
        action = holds_action(names, on, selector, by=args.by, reason=args.reason)
        with progress_bar("legal holds" if on else "releasing") as progress:
            seq = j.record_retention(action, workers=args.workers, progress=progress)
    out.print(f"legal hold {'placed on' if on else 'lifted from'} {len(names)} object(s) holding "
              f"{selector.describe()}; recorded at seq {seq} of stream {args.trail_stream}")
    if not on:
        out.print("each object is still kept until its retain-until date")
    return EXIT_OK


def _trusted(args: argparse.Namespace) -> list[Any]:
    identity = read_identity(_store(args))
    signing, _ = load_keys(Path(args.key_dir), identity.journal_id)
    return [signing.verify_key]


def cmd_extend(args: argparse.Namespace) -> int:
    store = _store(args)
    require_s3(store, "extending a retention")
    until = _utc_date(args.until) if args.until else None
    with _trail(args) as j:
        # Checked, and counted, before anything changes: a request that would shorten a retention is refused whole.
        result = plan_extension(store, until=until, mode=args.retention_mode, workers=args.workers)
        action = extend_action(until, args.retention_mode, result, by=args.by, reason=args.reason)
        with progress_bar("extending") as progress:
            seq = j.record_retention(action, workers=args.workers, progress=progress)
    target = f"until {until:%Y-%m-%d %H:%M:%S} UTC" if until else "to what the policy requires"
    out.print(f"extended {result.extended} object(s) {target}; {result.unchanged} already retained long enough; "
              f"recorded at seq {seq} of stream {args.trail_stream}")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    store = _store(args)
    with progress_bar("auditing locks") as progress:
        audit = audit_store(store, workers=args.workers, progress=progress)
    if args.json:
        out.print(json.dumps(audit.to_json(), indent=1, ensure_ascii=False), markup=False, highlight=False)
        return EXIT_OK if audit.ok else EXIT_FINDINGS
    out.print(f"lock audit of {audit.store} ({audit.backend}): {audit.objects} object(s), "
              f"{audit.held} under legal hold, {audit.expired} past retention")
    if audit.policy is not None:
        for line in audit.policy.describe_lines():
            out.print(f"  policy: {line}")
    for note in audit.notes:
        out.print(f"note: {note}")
    for f in audit.findings:
        out.print(f"FINDING {f.kind}: {f.object or '-'}: {f.message}", markup=False)
    out.print("OK: every object is locked as the policy requires" if audit.ok and audit.backend == "s3" else
              "OK: every object is read-only" if audit.ok else f"{len(audit.findings)} finding(s)")
    return EXIT_OK if audit.ok else EXIT_FINDINGS


def cmd_expired(args: argparse.Namespace) -> int:
    store = _store(args)
    if not is_s3(store):
        out.print(f"{store.url} is a local directory: nothing has a retain-until date, nothing expires. "
                  + LOCAL_WORDS)
        return EXIT_OK
    count = 0
    with progress_bar("listing") as progress:
        for state in expired_objects(store, workers=args.workers, progress=progress):
            count += 1
            until = state.retain_until.strftime("%Y-%m-%dT%H:%M:%SZ") if state.retain_until else "-"
            if args.json:
                out.print(json.dumps({"object": state.name, "retain_until": until, "version_id": state.version_id,
                                      "size": state.size}), markup=False, highlight=False)
            else:
                out.print(f"{until}  {state.name}", markup=False, highlight=False)
    if not args.json:
        out.print(f"{count} object(s) past retention and not under a legal hold: an S3 lifecycle rule may delete them "
                  "(README: Retention); verify then with --since a saved checkpoint")
    return EXIT_OK


def cmd_shred(args: argparse.Namespace) -> int:
    scope = {"subject": args.subject, "thread": args.thread, "execution": args.execution, "tenant": args.tenant}
    with _writer(args) as j:
        if sys.stderr.isatty():
            with Progress(TextColumn("counting affected events"), BarColumn(), MofNCompleteColumn(), console=err,
                          transient=True) as bar:
                task = bar.add_task("count", total=None)
                result = j.shred(**scope, reason=args.reason,
                                 progress=lambda done, total: bar.update(task, completed=done, total=total))
        else:
            result = j.shred(**scope, reason=args.reason)
    r = result.receipt
    if result.repeated:
        out.print(f"{r['scope']} {r['scope_ref']} was already shredded: erasure receipt at seq {result.seq}, "
                  f"{r['destroyed_at']}")
        return EXIT_OK
    out.print(f"shredded {r['scope']} {r['scope_ref']}: {len(r['key_ids'])} data key(s) destroyed, "
              f"{r['events_affected']} event(s) can no longer be decrypted")
    for ref in r["deletion_references"]:
        out.print(f"  {ref}")
    out.print(f"erasure receipt appended at seq {result.seq} (stream {args.stream}); it is sealed with the next seal")
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    store = _store(args)
    identity = read_identity(store)
    keystore = _keystore(args.key_dir, identity.journal_id, required=True)
    assert keystore is not None
    if args.reapply_receipts:
        named = []
        for stream in layout.streams_from_names([i.name for i in store.list(layout.MANIFESTS_PREFIX)]):
            local = not args.store.startswith("s3://")
            reader = Reader(store, stream=stream, public_keys=_public_keys(args.public_key),
                            wal_dir=Path(args.store) / ".wal" if local else None,
                            wal_key=load_wal_key(args.key_dir, identity.journal_id) if local else None)
            for e in reader.events(RECEIPT_EXECUTION):
                if e.event_type == RECEIPT_TYPE:
                    named.extend(check_receipt(e.payload, reader.trusted_keys)["key_ids"])
        again = keystore.reapply(named, "reapplied from the journal's erasure receipts")
        out.print(f"{len(set(named))} key(s) named by erasure receipts; "
                  f"{len(again)} were live here and are destroyed now")
    infos = list(keystore.keys())
    uses = key_use_counts(store)
    if args.json:
        for k in infos:
            out.print(json.dumps(dict(dataclasses.asdict(k), status="shredded" if k.shredded else "live",
                                      events=uses.get(k.key_id, 0)), ensure_ascii=False), markup=False, highlight=False)
        return EXIT_OK
    out.print(f"key store {keystore.directory} (provider {keystore.provider.name}); key material is never shown")
    _print_columns(("key id", "scope", "of", "status", "sealed events", "created", "shredded"),
                   [(k.key_id, k.scope, k.scope_ref, "shredded" if k.shredded else "live", str(uses.get(k.key_id, 0)),
                     k.created, k.shredded or "-") for k in infos])
    by_scope: dict[tuple[str, str], int] = {}
    for k in infos:
        status = "shredded" if k.shredded else "live"
        by_scope[(k.scope, status)] = by_scope.get((k.scope, status), 0) + 1
    out.print("; ".join(f"{scope} {status}: {n}" for (scope, status), n in sorted(by_scope.items()))
              or "no data keys yet")
    return EXIT_OK


def add_erasure_parsers(sub: Any, store: Callable[[argparse.ArgumentParser], None],
                        writer: Callable[[argparse.ArgumentParser], None]) -> None:
    """``shred`` and ``keys``: crypto-shredding and the key store."""
    p = sub.add_parser("shred", help="forget a data subject (or thread, execution, tenant): destroy its keys, "
                       "append a signed erasure receipt")
    writer(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--subject", help="the data subject's identifier (only its pseudonym is recorded)")
    which.add_argument("--thread")
    which.add_argument("--execution")
    which.add_argument("--tenant")
    p.add_argument("--reason", default=None, help="why (recorded in the receipt; do not put personal data here)")
    p.set_defaults(func=cmd_shred)
    p = sub.add_parser("keys", help="the key store's data keys: scope, live or shredded, events (never key material)")
    store(p)
    p.add_argument("--key-dir", type=Path, default=default_key_dir(), help="directory of the journal's keys")
    p.add_argument("--json", action="store_true", help="JSON Lines, one key a line")
    p.add_argument("--reapply-receipts", action="store_true",
                   help="destroy again every key the journal's erasure receipts name (after restoring the key store "
                   "from a backup)")
    p.add_argument("--public-key", action="append", metavar="FILE", help="trusted public key (PEM) for the receipts")
    p.set_defaults(func=cmd_keys)


def add_parser(sub: Any, store: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``retention`` command group."""
    group = sub.add_parser("retention", help="retention policy, legal holds, extension, lock audit, expiry")
    rsub = group.add_subparsers(dest="retention_command", required=True)

    def workers(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workers", type=_workers, default=DEFAULT_WORKERS, metavar="N",
                       help=f"concurrent S3 requests, 1 to {MAX_POOL_CONNECTIONS} (default: %(default)s)")

    def action(p: argparse.ArgumentParser) -> None:
        store(p)
        workers(p)
        p.add_argument("--reason", required=True, help="why (recorded in the journal; no personal data)")
        p.add_argument("--by", default=_user(), help="who (recorded in the journal; default: the login name)")
        p.add_argument("--key-dir", type=Path, default=default_key_dir(),
                       help="directory of the journal's signing key: the action is recorded as a signed event")
        p.add_argument("--trail-stream", default=RETENTION_STREAM,
                       help="stream the action is recorded in (default: %(default)s)")
        p.add_argument("--wal-dir", type=Path, default=None, help="write-ahead log directory for that stream")

    p = rsub.add_parser("show", help="the retention policy, in plain words")
    store(p)
    p.set_defaults(func=cmd_show)

    p = rsub.add_parser("set", help="strengthen the policy of the journal or of one tenant (never weaken)")
    action(p)
    p.add_argument("--retention", required=True, help="period, like 10y or 3650d")
    p.add_argument("--retention-mode", choices=["COMPLIANCE", "GOVERNANCE"], default=None,
                   help="mode (default: the journal's)")
    p.add_argument("--tenant", default=None, help="set the policy of this tenant's events only")
    p.set_defaults(func=cmd_set)

    for name, verb in (("hold", "put a legal hold on"), ("release", "lift the legal hold of")):
        p = rsub.add_parser(name, help=f"{verb} every object holding the events of an execution, tenant or segment")
        action(p)
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--execution")
        which.add_argument("--tenant")
        which.add_argument("--segment", type=int, help="a segment number of --stream")
        p.add_argument("--stream", default=None,
                       help="look in this stream only (needed with --segment)")
        p.add_argument("--public-key", action="append", metavar="FILE",
                       help="trusted public key (PEM) for the index (default: the one in --key-dir)")
        p.set_defaults(func=cmd_hold, action=name)

    p = rsub.add_parser("extend", help="lengthen every object's retention (never shorten it)")
    action(p)
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--until", help="retain every object at least until this date (UTC), like 2035-12-31")
    when.add_argument("--to-policy", action="store_true",
                      help="bring each object up to what the policy in force requires (after `retention set`)")
    p.add_argument("--retention-mode", choices=["COMPLIANCE", "GOVERNANCE"], default=None,
                   help="also raise the mode (GOVERNANCE to COMPLIANCE; never the reverse)")
    p.set_defaults(func=cmd_extend)

    p = rsub.add_parser("audit", help="check that every object is locked as the policy requires; exit 1 on findings")
    store(p)
    workers(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit)

    p = rsub.add_parser("expired", help="objects past retention and not held (what a lifecycle rule may delete)")
    store(p)
    workers(p)
    p.add_argument("--json", action="store_true", help="JSON Lines, one object a line")
    p.set_defaults(func=cmd_expired)


def _workers(text: str) -> int:
    n = int(text) if text.isdigit() else 0
    if not 1 <= n <= MAX_POOL_CONNECTIONS:  # beyond the client's connection pool, requests would only queue
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_POOL_CONNECTIONS}, not {text!r}")
    return n


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"

