"""The ``wormjournal`` command.

Exit codes: 0 success (verify: intact), 1 verification (or a read's
verification, or the lock audit) found a problem, 2 usage, input or I/O error. Only this module (and
``cli_retention`` and ``cli_query``, its ``retention``, ``query`` and ``stats`` commands) reads flags and the
environment.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from . import cli_query, cli_retention
from .cli_common import (
    EXIT_ERROR,
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
from .errors import ConfigError, IntegrityError, JournalError, NotFoundError, ProofError, ValidationError
from .events import validate_event
from .index import Reader
from .index.reindex import reindex_store
from .journal import DEFAULT_STREAM, Journal, JournalConfig
from .journal.keys import finish_rotation, load_keys, load_wal_key, rotate_signing_key
from .retention import RetentionPolicy, parse_period
from .retention.keystore import AwsKmsKek
from .trust.load import read_identity
from .verify import verify_store
from .verify.info import journal_info
from .verify.proof import check_proof, make_proof

log = logging.getLogger(__name__)

APPEND_BATCH = 1000

# -- commands ------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    retention = RetentionPolicy(args.retention_mode, parse_period(args.retention))
    if args.allow_unlocked:
        err.print("[bold red]--allow-unlocked: if the bucket has no Object Lock, the archive can be deleted "
                  "or overwritten. For development only.[/]")
    kek = AwsKmsKek(key_arn=args.kms_key_arn) if args.kms or args.kms_key_arn else None
    with Journal.create(
        _store(args), key_dir=args.key_dir, stream=args.stream, wal_dir=_wal_dir(args),
        retention=retention, allow_unlocked=args.allow_unlocked, kek=kek,
    ) as j:
        key_id = j.verify_key.key_id
        pub = Path(args.key_dir) / j.journal_id / f"{key_id}.pub.pem"
        out.print(f"created journal {j.journal_id} in {j.store.url}")
        out.print(f"signing key     {Path(args.key_dir) / j.journal_id / 'signing.pem'} "
                  "(keep it secret, outside the store)")
        out.print(f"public key      {pub} (give this to auditors: wormjournal verify STORE --public-key {pub})")
        out.print(f"key store       {j.keystore.directory} (data keys of encrypted payloads, wrapped by "
                  f"{'AWS KMS' if kek else 'the master key ' + str(j.keystore.directory.parent / 'master.key')})")
        policy = j.identity.retention_policy()
        described = policy.describe() if policy else "none: objects are not locked (tamper-evident, not tamper-proof)"
        out.print(f"retention       {described}")
    return EXIT_OK


def _read_lines(source: str) -> Iterator[tuple[int, str]]:
    stream: TextIO = sys.stdin if source == "-" else open(source, encoding="utf-8")  # noqa: SIM115
    try:
        for number, line in enumerate(stream, 1):
            if line.strip():
                yield number, line
    finally:
        if stream is not sys.stdin:
            stream.close()


def load_events(source: str, max_event_bytes: int) -> list[dict[str, Any]]:
    """Parse and validate every line before anything is written; errors name the line."""
    events = []
    try:
        for number, line in _read_lines(source):
            where = f"line {number}"
            try:
                event = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValidationError("(line)", f"is not JSON: {e.msg} at column {e.colno}", where=where) from e
            if not isinstance(event, dict):
                raise ValidationError("(line)", "must be a JSON object with the event's fields", where=where)
            validate_event(event, max_event_bytes=max_event_bytes, where=where)
            events.append(event)
    except (OSError, UnicodeDecodeError) as e:  # not UTF-8 is bad input (exit 2), not a crash
        raise ConfigError(f"cannot read {source}: {e}") from e
    return events


def cmd_append(args: argparse.Namespace) -> int:
    config = JournalConfig()
    events = load_events(args.input, config.max_event_bytes)
    if not events:
        err.print("no events in the input; nothing written")
        return EXIT_OK
    with _writer(args, config) as j:
        first = last = None
        for i in range(0, len(events), APPEND_BATCH):
            seqs = j.append_batch(events[i : i + APPEND_BATCH])
            first = seqs[0] if first is None else first
            last = seqs[-1]
    out.print(f"appended {len(events)} events to stream {args.stream}: seq {first}..{last} (durable)")
    return EXIT_OK


def cmd_seal(args: argparse.Namespace) -> int:
    with _writer(args) as j:
        manifests = j.seal()
    if not manifests:
        out.print("nothing to seal")
    for m in manifests:
        out.print(f"sealed segment {m.segment}: seq {m.first_seq}..{m.last_seq} ({m.events} events) -> {m.object}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {args.workers}")
    store = _store(args)
    keys = _public_keys(args.public_key)
    since = None
    if args.since is not None:
        try:
            since = Path(args.since).read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read --since {args.since}: {e}") from e
    if sys.stderr.isatty() and not args.json:
        with Progress(TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                      transient=True) as bar:
            task = bar.add_task("verify", total=None)
            report = verify_store(store, public_keys=keys, workers=args.workers, since=since,
                                  progress=lambda done, total: bar.update(task, completed=done, total=total))
    else:
        report = verify_store(store, public_keys=keys, workers=args.workers, since=since)
    if args.json:
        out.print_json(json.dumps(report.to_json()))
    else:
        out.print(report.to_text(), markup=False)
    return EXIT_OK if report.ok else EXIT_FINDINGS


def cmd_info(args: argparse.Namespace) -> int:
    info = journal_info(_store(args), _public_keys(args.public_key))
    if args.json:
        out.print_json(json.dumps(info))
        return EXIT_FINDINGS if info["findings"] else EXIT_OK
    out.print(f"journal {info['journal_id']} (created {info['created']}) in {info['store']}")
    table = Table("stream", "segments", "events", "last seq", "chain head", "checkpoint")
    for s in info["streams"]:
        cp = s["checkpoint"]
        table.add_row(
            s["stream"], str(s["segments"]), str(s["events"]), str(s["last_seq"]),
            (s["head_hash"] or "-")[:16], f"size {cp['tree_size']}, root {cp['root_hash'][:16]}" if cp else "none",
        )
    out.print(table)
    out.print(f"sealed bytes on disk: {info['bytes']:,}")
    if info["findings"]:  # the counts above are of the notes that verified only
        err.print(f"{len(info['findings'])} finding(s) in the manifests, checkpoints or keys; "
                  "run `wormjournal verify`:")
        for f in info["findings"][:20]:
            err.print(f"  [{f['kind']}] {f['where']}: {f['message']}", markup=False, highlight=False)
        return EXIT_FINDINGS
    return EXIT_OK


# -- reading ------------------------------------------------------------------------


def _reader(args: argparse.Namespace) -> Reader:
    wal = _wal_dir(args)
    if wal is None and not args.store.startswith("s3://"):
        wal = Path(args.store) / ".wal"
    store = _store(args)
    journal_id = read_identity(store).journal_id
    # Payloads decrypt where the key store is at hand (the writer's machine); elsewhere they read as markers.
    keystore = _keystore(args.key_dir, journal_id, required=False)
    # Unsealed events are read only with the writer's WAL key, which authenticates them; without it, sealed ones.
    wal_key = None
    if wal is not None:
        try:
            wal_key = load_wal_key(args.key_dir, journal_id)
        except ConfigError as e:
            if Path(wal).is_dir():
                log.warning("unsealed events are not shown: %s", e)
            wal = None
    return Reader(store, stream=args.stream, public_keys=_public_keys(args.public_key), wal_dir=wal, wal_key=wal_key,
                  keystore=keystore)


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True) if value is not None else ""
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_executions(args: argparse.Namespace) -> int:
    found = _reader(args).executions(args.tenant, limit=args.limit, offset=args.offset)
    if args.json:
        for x in found:
            out.print(json.dumps(x.to_dict(), ensure_ascii=False), markup=False, highlight=False)
        return EXIT_OK
    rows = [(x.execution_id, x.tenant_id or "-", x.thread_id or "-", x.status, str(x.events),
             x.started.isoformat(timespec="seconds"), x.last_event_type) for x in found]
    _print_columns(("execution", "tenant", "thread", "status", "events", "started", "last event"), rows)
    if not found:
        out.print("no executions" + (f" for tenant {args.tenant}" if args.tenant else ""))
    return EXIT_OK


def _ms(delta: dt.timedelta) -> str:
    ms = delta / dt.timedelta(milliseconds=1)
    return f"{ms:,.0f} ms" if ms < 10_000 else f"{ms / 1000:,.1f} s"


def cmd_replay(args: argparse.Namespace) -> int:
    reader = _reader(args)
    events = list(reader.replay(args.execution, upto=args.upto))  # every event verified before it is shown
    if args.json:
        for e in events:
            out.print(e.to_json(), markup=False, highlight=False, soft_wrap=True)
        return EXIT_OK
    rows = []
    started: dict[str, dt.datetime] = {}
    prev: dt.datetime | None = None
    for e in events:
        took = ""
        key = e.step_id or e.node or ""
        if e.event_type in ("node_started", "step_started"):
            started[key] = e.ts
        elif e.event_type in ("node_completed", "node_failed", "step_completed", "step_failed") and key in started:
            took = _ms(e.ts - started.pop(key))
        rows.append((str(e.seq), e.ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                     "+" + _ms(e.ts - prev) if prev else "", e.event_type,
                     "/".join(v for v in (e.node, e.step_id) if v) or "-", took, "" if e.sealed else "unsealed",
                     _short(e.payload)))
        prev = e.ts
    _print_columns(("seq", "time", "since prev", "event", "node/step", "took", "", "payload"), rows)
    total = events[-1].ts - events[0].ts if events else dt.timedelta(0)
    out.print(f"{len(events)} events of execution {args.execution}, {_ms(total)}; each verified "
              f"({'against the given keys' if args.public_key else 'with the keys stored in the journal'})")
    return EXIT_OK


def cmd_state(args: argparse.Namespace) -> int:
    reader = _reader(args)
    state = reader.state_at(args.execution, upto=args.upto)
    if args.resume:
        out.print_json(json.dumps(reader.resume_point(args.execution).to_dict(), ensure_ascii=False))
    else:
        out.print_json(json.dumps(state, ensure_ascii=False))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    event = _reader(args).get_event(args.event)
    if event is None:
        raise NotFoundError(f"no event {args.event!r} in stream {args.stream}", hint="event ids are case-sensitive")
    if args.json:
        out.print(event.to_json(), markup=False, highlight=False)
    else:
        table = Table("field", "value", show_header=False)
        for k, v in event.to_dict().items():
            table.add_row(k, json.dumps(v, ensure_ascii=False, indent=1) if isinstance(v, (dict, list)) else str(v))
        out.print(table)
    return EXIT_OK


def cmd_prove(args: argparse.Namespace) -> int:
    proof = make_proof(_reader(args), event_id=args.event, seq=args.seq)
    sys.stdout.buffer.write(proof.to_json())
    sys.stdout.flush()
    return EXIT_OK


def cmd_check_proof(args: argparse.Namespace) -> int:
    keys = _public_keys(args.public_key) or []
    try:
        data = sys.stdin.buffer.read() if args.proof == "-" else Path(args.proof).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {args.proof}: {e}") from e
    try:
        result = check_proof(data, keys)
    except ProofError as e:
        if args.json:
            out.print_json(json.dumps({"ok": False, "error": str(e)}))
        else:
            out.print(f"PROOF FAILS: {e}", markup=False)
        return EXIT_FINDINGS
    if args.json:
        out.print_json(json.dumps({"ok": True, **result.as_dict()}))
    else:
        r = result
        out.print(f"proof OK: event {r.event_id} (seq {r.seq}, {r.event_type}, execution {r.execution_id}, {r.ts}) "
                  f"is event hash {r.event_hash} in segment {r.segment} of stream {r.stream} "
                  f"of journal {r.journal_id}, under the checkpoint of {r.checkpoint_size} segments "
                  f"with root {r.checkpoint_root} (manifest signed by key {r.manifest_key_id}, "
                  f"checkpoint by {r.checkpoint_key_id}; {r.proof_bytes} bytes)",
                  markup=False)
    return EXIT_OK


def cmd_checkpoint(args: argparse.Namespace) -> int:
    reader = _reader(args)
    _, note = reader.latest_checkpoint()
    sys.stdout.buffer.write(note)
    sys.stdout.flush()
    return EXIT_OK


def cmd_rotate_key(args: argparse.Namespace) -> int:
    """Needs no stream lock: running writers pick the new key up before their next signature."""
    store = _store(args)
    identity = read_identity(store)
    key_dir = Path(args.key_dir)
    finish_rotation(key_dir, store, identity.journal_id)
    old, _ = load_keys(key_dir, identity.journal_id)
    new = rotate_signing_key(key_dir, store, identity.journal_id, old)
    pub = key_dir / identity.journal_id / f"{new.verify_key.key_id}.pub.pem"
    out.print(f"rotated the signing key of journal {identity.journal_id}: "
              f"{old.verify_key.key_id} -> {new.verify_key.key_id}")
    out.print(f"new public key  {pub} (auditors who trust the old key accept it through the signed key history)")
    out.print("the old private key is deleted; segments it signed keep verifying with its public key")
    return EXIT_OK


def cmd_reindex(args: argparse.Namespace) -> int:
    store = _store(args)
    keys = _public_keys(args.public_key)
    if sys.stderr.isatty():
        with Progress(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                      transient=True) as bar:
            task = bar.add_task("reindex", total=None)
            results = reindex_store(store, public_keys=keys,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total))
    else:
        results = reindex_store(store, public_keys=keys)
    code = EXIT_OK
    for r in results:
        out.print(f"stream {r.stream}: {r.segments} segments, {len(r.written)} index objects written")
        for name in r.damaged:
            err.print(f"[yellow]damaged:[/] {name} does not match the root its manifest signs; reads go around it "
                      "(the store is write-once, so it stays)")
        for name in r.unrebuildable:
            err.print(f"[red]cannot rebuild:[/] {name}: the rows rebuilt from the segments do not give the signed root")
        if r.damaged or r.unrebuildable:
            code = EXIT_FINDINGS
    if not results:
        out.print("no sealed segment: nothing to index")
    return code


# -- parser ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(prog="wormjournal", description="A WORM journal for AI-agent run history.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    def store(p: argparse.ArgumentParser) -> None:
        p.add_argument("store", help="the journal: a local directory or s3://bucket/prefix")
        p.add_argument("--endpoint-url", default=None,
                       help="S3-compatible endpoint (MinIO, Ceph RGW); boto3 also reads AWS_ENDPOINT_URL")

    def writer(p: argparse.ArgumentParser) -> None:
        store(p)
        p.add_argument("--stream", default=DEFAULT_STREAM, help="stream to write (default: %(default)s)")
        p.add_argument("--key-dir", type=Path, default=default_key_dir(),
                       help="directory of signing keys, outside the store "
                       "(default: $WORMJOURNAL_KEY_DIR or ~/.config/wormjournal/keys)")
        p.add_argument("--wal-dir", type=Path, default=None,
                       help="write-ahead log directory on local disk (default: STORE/.wal for a directory, "
                       "$XDG_STATE_HOME/wormjournal/wal/BUCKET/PREFIX (~/.local/state/...) for S3)")

    p = sub.add_parser("init", help="create a journal and its signing key")
    writer(p)
    p.add_argument("--retention-mode", choices=["COMPLIANCE", "GOVERNANCE"], default="COMPLIANCE",
                   help="S3 Object Lock mode of every object (default: %(default)s)")
    p.add_argument("--retention", default="7y",
                   help="how long each object is locked, like 30d or 7y (default: %(default)s)")
    p.add_argument("--allow-unlocked", action="store_true",
                   help="accept a bucket without Object Lock (development only: the archive can then be deleted)")
    p.add_argument("--kms", action="store_true",
                   help="wrap data keys with AWS KMS, one KMS key per scope, deleted when it is shredded "
                   "(boto3's configuration and AWS_ENDPOINT_URL apply)")
    p.add_argument("--kms-key-arn", default=None, metavar="ARN",
                   help="wrap every data key with this one KMS key instead (shredding removes the wrapped copies)")
    p.set_defaults(func=cmd_init)
    p = sub.add_parser("append", help="append events from JSON Lines, one event a line")
    writer(p)
    p.add_argument("input", nargs="?", default="-", help="a JSON Lines file, or - for stdin (default)")
    p.set_defaults(func=cmd_append)
    p = sub.add_parser("seal", help="seal unsealed events into signed segments")
    writer(p)
    p.set_defaults(func=cmd_seal)
    p = sub.add_parser("verify", help="verify every stream; exit 0 intact, 1 findings, 2 error")
    store(p)
    p.add_argument("--public-key", action="append", metavar="FILE", help="trusted public key (PEM); repeatable")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes that check segments in parallel "
                   "(default: one per core, fewer for a small journal; 1: no pool)")
    p.add_argument("--since", metavar="CHECKPOINT_FILE", default=None,
                   help="a checkpoint (or manifest) saved earlier, e.g. by `wormjournal checkpoint`: prove the journal "
                   "extends it; segments before it may have expired")
    p.set_defaults(func=cmd_verify)
    def reader(p: argparse.ArgumentParser) -> None:
        store(p)
        p.add_argument("--stream", default=DEFAULT_STREAM, help="stream to read (default: %(default)s)")
        p.add_argument("--public-key", action="append", metavar="FILE",
                       help="trusted public key (PEM); repeatable (default: the keys stored in the journal)")
        p.add_argument("--wal-dir", type=Path, default=None,
                       help="the writer's write-ahead log, to see unsealed events too")
        p.add_argument("--key-dir", type=Path, default=default_key_dir(),
                       help="where the journal's key store is, to decrypt payloads (without it they show as encrypted)")

    p = sub.add_parser("executions", help="list executions, newest first")
    reader(p)
    p.add_argument("--tenant", default=None)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true", help="JSON Lines, one execution a line")
    p.set_defaults(func=cmd_executions)
    p = sub.add_parser("replay", help="an execution's verified timeline")
    reader(p)
    p.add_argument("--execution", required=True)
    p.add_argument("--upto", type=int, default=None, metavar="SEQ", help="stop after this seq")
    p.add_argument("--json", action="store_true", help="JSON Lines, one event a line")
    p.set_defaults(func=cmd_replay)
    p = sub.add_parser("state", help="an execution's state folded from its verified events")
    reader(p)
    p.add_argument("--execution", required=True)
    p.add_argument("--upto", type=int, default=None, metavar="SEQ", help="the state after this seq")
    p.add_argument("--resume", action="store_true", help="print the resume point (status, last node, pending)")
    p.set_defaults(func=cmd_state)
    p = sub.add_parser("show", help="one event by id, verified")
    reader(p)
    p.add_argument("--event", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("reindex", help="rebuild missing index objects from the segments")
    store(p)
    p.add_argument("--public-key", action="append", metavar="FILE", help="trusted public key (PEM); repeatable")
    p.set_defaults(func=cmd_reindex)
    cli_retention.add_erasure_parsers(sub, store, writer)  # shred, keys
    p = sub.add_parser("prove", help="write an inclusion proof of one sealed event (JSON) to stdout")
    reader(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--event", help="the event's id")
    which.add_argument("--seq", type=int, help="the event's seq in the stream")
    p.set_defaults(func=cmd_prove)
    p = sub.add_parser("check-proof", help="check an inclusion proof offline; exit 0 proved, 1 not")
    p.add_argument("proof", help="the proof file, or - for stdin")
    p.add_argument("--public-key", action="append", metavar="FILE", required=True,
                   help="trusted public key (PEM), such as the journal's first; repeatable")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check_proof)
    p = sub.add_parser("checkpoint", help="print the stream's latest signed checkpoint, to keep for `verify --since`")
    reader(p)
    p.set_defaults(func=cmd_checkpoint)
    p = sub.add_parser("rotate-key",
                       help="replace the signing key; the key history records the change, signed by both keys")
    store(p)
    p.add_argument("--key-dir", type=Path, default=default_key_dir(), help="directory of the journal's keys")
    p.set_defaults(func=cmd_rotate_key)
    p = sub.add_parser("info", help="show the journal's streams, segments and chain heads (from the notes that verify)")
    store(p)
    p.add_argument("--public-key", action="append", help="a trusted public key (PEM); default: the store's own")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    cli_retention.add_parser(sub, store)
    cli_query.add_parser(sub, store)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except IntegrityError as e:  # a broken promise found while reading: like a verify finding
        err.print(f"integrity error: {e.diagnostics()}", markup=False, highlight=False)
        return EXIT_FINDINGS
    except JournalError as e:
        err.print(f"error: {e.diagnostics()}", markup=False, highlight=False)
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.print("interrupted; acknowledged events are safe in the write-ahead log")
        return EXIT_ERROR


def run() -> None:
    """The console entry point: ``main``, then an exit that skips native teardown.

    pyarrow's C++ thread pools can abort the process (SIGABRT, "terminate called
    without an active exception") when they are torn down at interpreter exit after
    the work is done (apache/arrow#34314); flushing and leaving with os._exit keeps
    the exit code the one main() returned.
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
