"""The ``wormjournal`` command.

Every command exits with one of the codes of ``cli_common`` (README.md, "Exit codes"): 0 done, 1
findings, 2 usage or input error, 3 internal error, 4 storage or I/O error, 130 interrupted.
:func:`main` is the one place that turns an exception into an exit code and one line on stderr
(no traceback unless ``WORMJOURNAL_DEBUG=1``). Only this module (and ``cli_retention`` and
``cli_query``, its ``retention``, ``query`` and ``stats`` commands) reads flags and the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
import os
import select
import stat
import sys
import traceback
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import IO, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from . import cli_query, cli_retention, cli_tail, cli_witness
from .cli_common import (
    DEBUG_ENV,
    EXIT_FINDINGS,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STORAGE,
    EXIT_USAGE,
    TIMELINE_COLUMNS,
    Timeline,
    _ms,
    _print_columns,
    _public_keys,
    _reader,
    _short,
    _store,
    _wal_dir,
    _writer,
    debug_enabled,
    default_key_dir,
    err,
    out,
    read_witness_keys,
)
from .errors import (
    ConfigError,
    IntegrityError,
    JournalError,
    NotFoundError,
    ProofError,
    StorageError,
    ValidationError,
)
from .events import MAX_INT_DIGITS, MAX_PAYLOAD_DEPTH, RESERVED_EVENT_TYPES, validate_event
from .index.lgvalues import jsonable
from .index.reindex import reindex_store
from .journal import DEFAULT_STREAM, Journal, JournalConfig
from .journal.keys import finish_rotation, load_keys, rotate_signing_key
from .retention import RetentionPolicy, parse_period
from .retention.kek import AwsKmsKek
from .trust.load import read_identity
from .verify import WitnessPolicy, verify_store
from .verify.info import journal_info
from .verify.proof import check_proof, make_proof

log = logging.getLogger(__name__)

# EXIT_ERROR, the former name of EXIT_USAGE, stays importable from here (tests and scripts use it).
EXIT_ERROR = EXIT_USAGE
__all__ = ["EXIT_ERROR", "EXIT_FINDINGS", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_STORAGE",
           "EXIT_USAGE", "build_parser", "default_key_dir", "main", "run"]

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


# -- append ------------------------------------------------------------------------

# An input of up to this many bytes and events is written by one append_batch, that is one WAL frame: all or
# nothing. A larger one is written in batches of this size, after every line of it has been validated. The bound
# is memory: a batch of 16 MiB of JSON takes some 300 MB while it is parsed, prepared and framed (the frame format
# would take up to 2 GiB).
APPEND_BATCH_BYTES = 16 << 20
APPEND_BATCH_EVENTS = 50_000
# The longest input line: JSON Lines hold JSON payloads, which are held in memory several times while parsed (a
# larger payload, or bytes, is appended through the library: FORMAT.md 3.5).
LINE_LIMIT = 16 << 20
_BLANK = b" \t\r\n"  # JSON's whitespace: a line of these only is skipped (and still counted)
_BOM = b"\xef\xbb\xbf"


@dataclasses.dataclass(frozen=True)
class InputBatch:
    """Lines ``first_line..last_line`` of the input, written by one ``append_batch``."""

    first_line: int
    last_line: int
    events: int
    digest: bytes  # SHA-256 of its event lines: a file that changed between the two reads is noticed


class AppendInput:
    """The lines of ``append``'s input, read twice: once to validate them all, once to write them.

    A regular file is opened again for the second read; stdin, a pipe or a FIFO is held in memory (never
    spooled to disk: payloads may be personal data). Lines are ``(number, bytes)``, numbered from 1 in
    the whole input, the first ``skip`` left out; a line longer than ``max_line`` bytes comes as None.
    """

    def __init__(self, source: str, *, skip: int = 0, max_line: int) -> None:
        self.source = source
        self.skip = skip
        self.max_line = max_line
        self._held: list[tuple[int, bytes | None]] | None = None
        self.count = 0  # lines in the whole input, once it was read
        self._reopen = False
        if source != "-":
            try:
                self._reopen = stat.S_ISREG(os.stat(source).st_mode)
            except OSError as e:
                raise ConfigError(f"cannot read {source}: {e.strerror or e}") from e

    @property
    def name(self) -> str:
        return "stdin" if self.source == "-" else self.source

    def lines(self) -> Generator[tuple[int, bytes | None], None, None]:
        if self._held is not None:
            yield from self._held
            return
        held: list[tuple[int, bytes | None]] | None = None if self._reopen else []
        try:
            with self._open() as f:
                for number, raw in _raw_lines(f, self.max_line):
                    self.count = number
                    if number <= self.skip:
                        continue
                    if held is not None:
                        held.append((number, raw))
                    yield number, raw
        except OSError as e:
            raise ConfigError(f"cannot read {self.name}: {e.strerror or e}") from e
        if held is not None:
            self._held = held

    def _open(self) -> contextlib.AbstractContextManager[IO[bytes]]:
        if self.source != "-":
            return open(self.source, "rb")  # noqa: SIM115 - the caller's with closes it
        if sys.stdin is None:
            raise ConfigError("there is no stdin to read events from; give a file")
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is None:  # a text stream put in place of stdin (tests, embedding)
            return io.BytesIO(sys.stdin.read().encode("utf-8", "surrogatepass"))
        return contextlib.nullcontext(buffer)  # read, not closed


def _raw_lines(f: IO[bytes], limit: int) -> Iterator[tuple[int, bytes | None]]:
    """The lines of ``f`` with their numbers; one longer than ``limit`` bytes comes as None as soon as it is over
    (a line that never ends is not read on), and is read to its end only if the caller asks for the next."""
    number = 0
    while True:
        raw = f.readline(limit + 1)
        if not raw:
            return
        number += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            yield number, None
            while raw and not raw.endswith(b"\n"):
                raw = f.readline(1 << 20)
        else:
            yield number, raw


def _refuse_constant(where: str) -> Callable[[str], Any]:
    def refuse(name: str) -> Any:
        raise ValidationError("(line)", f"holds {name}, which is not JSON", where=where)
    return refuse


def _unique_keys(where: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise ValidationError("(line)", f"has the key {key!r} twice in one object (which one counts "
                                          "is up to the parser)", where=where)
                seen.add(key)
        return obj
    return build


def parse_line(number: int, raw: bytes | None, *, max_event_bytes: int, max_line: int) -> dict[str, Any] | None:
    """One input line as a validated event, or None for a blank line; ValidationError names the line and field."""
    where = f"line {number}"
    if raw is None:
        raise ValidationError("(line)", f"is longer than {max_line:,} bytes, which no event of at most "
                              f"{max_event_bytes:,} bytes needs", where=where)
    if number == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    if not raw.strip(_BLANK):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValidationError("(line)", f"cannot read it as UTF-8: {e.reason} (byte 0x{raw[e.start]:02x} at "
                              f"offset {e.start + 1})", where=where) from e
    try:
        event = json.loads(text, parse_constant=_refuse_constant(where), object_pairs_hook=_unique_keys(where))
    except ValidationError:
        raise
    except json.JSONDecodeError as e:
        raise ValidationError("(line)", f"is not JSON: {e.msg} at column {e.colno}", where=where) from e
    except RecursionError as e:
        raise ValidationError("(line)", f"is nested too deeply (a payload may have {MAX_PAYLOAD_DEPTH} levels)",
                              where=where) from e
    except ValueError as e:  # int() refuses to convert an integer of more than 4300 digits
        if "integer string conversion" in str(e):
            raise ValidationError("(line)", f"holds an integer of more than {MAX_INT_DIGITS} digits",
                                  where=where) from e
        raise ValidationError("(line)", f"is not JSON: {e}", where=where) from e
    if not isinstance(event, dict):
        raise ValidationError("(line)", "must be a JSON object with the event's fields", where=where)
    event_type = event.get("event_type")
    if isinstance(event_type, str) and event_type in RESERVED_EVENT_TYPES:  # what append_batch refuses too
        raise ValidationError("event_type", f"{event_type!r} is appended by the library only (shred, the "
                              "retention commands, a subscription)", where=where)
    validate_event(event, max_event_bytes=max_event_bytes, where=where)
    return event


def validate_input(source: AppendInput, max_event_bytes: int) -> tuple[list[InputBatch], list[dict[str, Any]]]:
    """Validate every line, writing nothing; returns the batches to write and the events of the first."""
    batches: list[InputBatch] = []
    first_events: list[dict[str, Any]] = []
    start = last = count = size = 0
    digest = hashlib.sha256()
    for number, raw in source.lines():
        event = parse_line(number, raw, max_event_bytes=max_event_bytes, max_line=source.max_line)
        if event is None or raw is None:
            continue
        if count and (count >= APPEND_BATCH_EVENTS or size + len(raw) > APPEND_BATCH_BYTES):
            batches.append(InputBatch(start, last, count, digest.digest()))
            count = size = 0
            digest = hashlib.sha256()
        if not count:
            start = number
        if not batches:
            first_events.append(event)
        digest.update(raw)
        count += 1
        size += len(raw)
        last = number
    if count:
        batches.append(InputBatch(start, last, count, digest.digest()))
    return batches, first_events


def _batch_events(source: AppendInput, batches: list[InputBatch], first_events: list[dict[str, Any]],
                  max_event_bytes: int) -> Iterator[tuple[InputBatch, list[dict[str, Any]]]]:
    """The events of each batch: the first as validated, the others read and parsed again, their bytes checked."""
    yield batches[0], first_events
    if len(batches) == 1:
        return
    with contextlib.closing(source.lines()) as lines:
        for batch in batches[1:]:
            digest = hashlib.sha256()
            events = []
            for number, raw in lines:
                if number < batch.first_line:
                    continue
                event = parse_line(number, raw, max_event_bytes=max_event_bytes, max_line=source.max_line)
                if event is not None and raw is not None:
                    digest.update(raw)
                    events.append(event)
                if number >= batch.last_line:
                    break
            if len(events) != batch.events or digest.digest() != batch.digest:
                raise ConfigError(f"{source.name} changed while it was appended: lines {batch.first_line}.."
                                  f"{batch.last_line} are not what was validated",
                                  hint="append a file nobody writes to while it is appended")
            yield batch, events


def _report_stop(args: argparse.Namespace, source: AppendInput, last_line: int,
                 written: list[tuple[InputBatch, int, int]], unsure: tuple[InputBatch, int] | None) -> None:
    """After a failure midway: which lines are in the journal, and how to append the rest without duplicates."""
    parts = []
    done_line, next_seq = source.skip, None
    if written:
        done_line, first_seq, next_seq = written[-1][0].last_line, written[0][1], written[-1][2] + 1
        parts.append(f"lines {source.skip + 1}..{done_line} of {source.name} are appended "
                     f"(seq {first_seq}..{next_seq - 1}, durable)")
    if unsure is not None:
        batch, seq = unsure
        next_seq = seq if next_seq is None else next_seq
        parts.append(f"lines {batch.first_line}..{batch.last_line} (seq {seq}..{seq + batch.events - 1}) were "
                     "written but not confirmed durable: either all of them are in the journal or none is")
    rest = (unsure[0].last_line if unsure else done_line) + 1
    if rest <= last_line:
        parts.append(f"lines {rest}..{last_line} are not appended" if parts else
                     f"nothing of {source.name} is appended")
    err.print("append stopped: " + "; ".join(parts), markup=False, highlight=False)
    if not written and unsure is None:
        return
    again = "the same command again" + (" on the same input" if source.source == "-" else "")
    hint = f"to append the rest without duplicates, run {again} with --skip-lines {done_line} " \
           f"--expect-next-seq {next_seq}"
    if unsure is not None:
        batch, seq = unsure
        hint += (f"; if that refuses because the next seq is {seq + batch.events}, with --skip-lines "
                 f"{batch.last_line} --expect-next-seq {seq + batch.events}")
    err.print(hint, markup=False, highlight=False)


def cmd_append(args: argparse.Namespace) -> int:
    """Validate the whole input (nothing written on a bad line), then append it: one batch, or several in order."""
    config = JournalConfig()
    source = AppendInput(args.input, skip=args.skip_lines, max_line=LINE_LIMIT)
    batches, first_events = validate_input(source, config.max_event_bytes)
    if source.count < args.skip_lines:  # a resume against another input than the one that failed
        raise ValidationError("--skip-lines", f"is {args.skip_lines}, but {source.name} has {source.count} lines; "
                              "nothing written")
    if not batches:
        err.print("no events in the input; nothing written")
        return EXIT_OK
    with _writer(args, config) as j:
        if args.expect_next_seq is not None and j.next_seq != args.expect_next_seq:
            raise ValidationError("--expect-next-seq", f"the next seq of stream {args.stream} is {j.next_seq}, not "
                                  f"{args.expect_next_seq}; nothing written")
        written: list[tuple[InputBatch, int, int]] = []
        trying: InputBatch | None = None
        before = j.next_seq
        try:
            for batch, events in _batch_events(source, batches, first_events, config.max_event_bytes):
                trying, before = batch, j.next_seq
                seqs = j.append_batch(events)
                written.append((batch, seqs[0], seqs[-1]))
                trying = None
        except BaseException:
            # A frame written whose fsync failed: the journal took its seqs, and a reopen decides.
            unsure = (trying, before) if trying is not None and j.next_seq != before else None
            _report_stop(args, source, batches[-1].last_line, written, unsure)
            raise
    first, last = written[0][1], written[-1][2]
    total = sum(b.events for b, _, _ in written)
    more = f" in {len(written)} batches" if len(written) > 1 else ""
    out.print(f"appended {total} events to stream {args.stream}: seq {first}..{last} (durable){more}")
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
    witnesses = None
    if args.witness_key:
        witnesses = WitnessPolicy(read_witness_keys(args.witness_key), args.witness_quorum, args.witness_max_lag)
    if sys.stderr.isatty() and not args.json:
        with Progress(TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                      transient=True) as bar:
            task = bar.add_task("verify", total=None)
            report = verify_store(store, public_keys=keys, workers=args.workers, since=since, witnesses=witnesses,
                                  progress=lambda done, total: bar.update(task, completed=done, total=total))
    else:
        report = verify_store(store, public_keys=keys, workers=args.workers, since=since, witnesses=witnesses)
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
    head = info["head"]
    if head is not None:
        out.print(f"journal head: {head['heads']} head(s), the newest written {head['time']}", markup=False)
    for w in info["witnesses"]:
        out.print(f"witness {w['witness']} ({w['key_hash']}): cosigned the head log at {w['cosigned']}, "
                  f"{w['lag']} head(s) behind (signatures checked by `verify --witness-key`)", markup=False,
                  highlight=False)
    out.print(f"sealed bytes on disk: {info['bytes']:,}")
    if info["findings"]:  # the counts above are of the notes that verified only
        err.print(f"{len(info['findings'])} finding(s) in the manifests, checkpoints or keys; "
                  "run `wormjournal verify`:")
        for f in info["findings"][:20]:
            err.print(f"  [{f['kind']}] {f['where']}: {f['message']}", markup=False, highlight=False)
        return EXIT_FINDINGS
    return EXIT_OK


# -- reading ------------------------------------------------------------------------


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


def cmd_replay(args: argparse.Namespace) -> int:
    reader = _reader(args)
    events = list(reader.replay(args.execution, upto=args.upto))  # every event verified before it is shown
    if args.json:
        for e in events:
            out.print(e.to_json(), markup=False, highlight=False, soft_wrap=True)
        return EXIT_OK
    timeline = Timeline()
    rows = [timeline.row(e) for e in events]
    _print_columns(TIMELINE_COLUMNS, rows)
    total = events[-1].ts - events[0].ts if events else dt.timedelta(0)
    out.print(f"{len(events)} events of execution {args.execution}, {_ms(total)}; each verified "
              f"({'against the given keys' if args.public_key else 'with the keys stored in the journal'})")
    return EXIT_OK


def cmd_state(args: argparse.Namespace) -> int:
    target = args.target if args.target is not None else args.execution
    if target is None or (args.execution is not None and args.execution != target):
        raise ValidationError("EXECUTION_OR_THREAD", "give one execution or thread (as the argument or --execution)")
    reader = _reader(args)
    if args.resume:
        out.print_json(json.dumps(reader.resume_point(target).to_dict(), ensure_ascii=False))
        return EXIT_OK
    found = reader.state(target, upto=args.upto, checkpoint_ns=args.namespace)
    if args.json:  # one object: the values and where they come from (source, description, checkpoint, writes)
        out.print(json.dumps(found.to_dict(), ensure_ascii=False), markup=False, highlight=False, soft_wrap=True)
        return EXIT_OK
    out.print(found.describe(), markup=False, highlight=False)
    out.print_json(json.dumps(jsonable(found.values), ensure_ascii=False))
    for w in found.pending_writes:
        where = f"{w.task_path or w.task_id}: {w.channel}" if w.channel is not None else "an unreadable write"
        out.print(f"pending (seq {w.seq}) {where} = {_short(jsonable(w.value), 200)}", markup=False, highlight=False)
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


def _count(text: str) -> int:
    """A whole number >= 0 (argparse turns the error into a usage error)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, not {text[:40]!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, not {n}")
    return n


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(
        prog="wormjournal", description="A WORM journal for AI-agent run history.",
        epilog=f"exit codes: {EXIT_OK} done, {EXIT_FINDINGS} findings, {EXIT_USAGE} usage or input error, "
        f"{EXIT_INTERNAL} internal error, {EXIT_STORAGE} storage or I/O error, {EXIT_INTERRUPTED} interrupted; "
        f"{DEBUG_ENV}=1 prints an error's traceback")
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
        p.add_argument("--witness", action="append", metavar="URL=VERIFIER_KEY",
                       help="a witness to submit the journal's heads to after each seal (`wormjournal witness key`); "
                       "repeatable")

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
    def take_over(p: argparse.ArgumentParser) -> None:
        p.add_argument("--take-over", action="store_true",
                       help="on S3, take the stream from a writer that is gone for good (its lease; the events it "
                       "acknowledged and did not seal are given up)")

    p = sub.add_parser("append", help="append events from JSON Lines, one event a line; every line is validated "
                       "before anything is written")
    writer(p)
    take_over(p)
    p.add_argument("input", nargs="?", default="-", help="a JSON Lines file, or - for stdin (default)")
    p.add_argument("--skip-lines", type=_count, default=0, metavar="N",
                   help="leave out the first N lines (appended already, as a failed append says)")
    p.add_argument("--expect-next-seq", type=_count, default=None, metavar="SEQ",
                   help="write nothing unless the stream's next seq is SEQ (a retry that cannot duplicate)")
    p.set_defaults(func=cmd_append)
    p = sub.add_parser("seal", help="seal unsealed events into signed segments")
    writer(p)
    take_over(p)
    p.set_defaults(func=cmd_seal)
    p = sub.add_parser("verify", help="verify every stream; exit 0 intact, 1 findings")
    store(p)
    p.add_argument("--public-key", action="append", metavar="FILE", help="trusted public key (PEM); repeatable")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes that check segments in parallel "
                   "(default: one per core, fewer for a small journal; 1: no pool)")
    p.add_argument("--since", metavar="CHECKPOINT_FILE", default=None,
                   help="a checkpoint (or manifest) saved earlier, e.g. by `wormjournal checkpoint`: prove the journal "
                   "extends it; segments before it may have expired")
    p.add_argument("--witness-key", action="append", metavar="FILE",
                   help="a file of witnesses' verifier keys, one a line: the store must extend what they cosigned, "
                   "and they must have cosigned its newest head; repeatable")
    p.add_argument("--witness-quorum", type=int, default=1, metavar="K",
                   help="how many of those witnesses must have cosigned the newest head (default: %(default)s)")
    p.add_argument("--witness-max-lag", type=float, default=3600.0, metavar="SECONDS",
                   help="how long after a head was written the witnesses may not have cosigned it yet "
                   "(default: %(default)s)")
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
    cli_tail.add_parser(sub, reader)
    p = sub.add_parser("state", help="the state of an execution or a LangGraph thread after a seq, and where it comes "
                       "from: LangGraph's checkpoint (reducers applied) or the fold of state_updated events")
    reader(p)
    p.add_argument("target", nargs="?", default=None, metavar="EXECUTION_OR_THREAD",
                   help="an execution, or a LangGraph thread (its id as LangGraph or as the journal has it)")
    p.add_argument("--execution", default=None, metavar="EXECUTION_OR_THREAD", help="the same, as an option")
    p.add_argument("--upto", type=int, default=None, metavar="SEQ", help="the state after this seq")
    p.add_argument("--namespace", default="", metavar="NS",
                   help="the checkpoint namespace of a LangGraph subgraph (default: the root graph's)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object: values, source, description, checkpoint_id, seq, pending_writes ...")
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
    cli_witness.add_parser(sub, store)
    return parser


class _LogFormatter(logging.Formatter):
    """Log records on one line each: an exception's traceback only with WORMJOURNAL_DEBUG=1."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        if debug_enabled():
            return super().formatException(ei)
        return f"  ({ei[0].__name__}: {_one_line(str(ei[1]))}; {DEBUG_ENV}=1 shows the traceback)"

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return super().formatStack(stack_info) if debug_enabled() else ""


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _stdout_closed() -> bool:
    """Whether whoever read stdout has gone (``| head``): the write end of the pipe polls as an error."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # not a real file (tests), or no poll
        return False


def _mute_stdout() -> None:
    """Send what is still buffered for stdout nowhere, so that the exit does not fail on it again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


def exit_code(e: BaseException) -> int:
    """Say what went wrong in one line (and a hint) on stderr; returns the command's exit code.

    The single place where an exception becomes an exit code (README.md, "Exit codes").
    """
    if isinstance(e, KeyboardInterrupt):
        err.print("interrupted; acknowledged events are safe in the write-ahead log")
        return EXIT_INTERRUPTED
    if isinstance(e, BrokenPipeError) and _stdout_closed():  # the reader of our output stopped: nothing to say
        _mute_stdout()
        return EXIT_STORAGE
    if isinstance(e, IntegrityError):  # a broken promise found while reading: like a verify finding
        code, text = EXIT_FINDINGS, f"integrity error: {e.diagnostics()}"
    elif isinstance(e, StorageError) and not isinstance(e, NotFoundError):
        code, text = EXIT_STORAGE, f"storage error: {e.diagnostics()}"
    elif isinstance(e, JournalError):
        code, text = EXIT_USAGE, f"error: {e.diagnostics()}"
    elif isinstance(e, OSError):
        code, text = EXIT_STORAGE, (f"I/O error: {_one_line(str(e))}\n"
                                    "hint: check the path, its permissions and free space")
    elif isinstance(e, ValueError) and "embedded null" in str(e):  # a path given with a NUL byte in it
        code, text = EXIT_USAGE, f"error: a path holds a NUL byte: {_one_line(str(e))}"
    else:
        code = EXIT_INTERNAL
        text = (f"internal error: {type(e).__name__}: {_one_line(str(e))}\n"
                f"hint: this is a bug in wormjournal; rerun with {DEBUG_ENV}=1 for the traceback")
    err.print(text, markup=False, highlight=False)
    if debug_enabled():
        err.print("".join(traceback.format_exception(e)), markup=False, highlight=False)
    return code


def _check_directories(args: argparse.Namespace) -> None:
    """--key-dir and --wal-dir name directories (or nothing yet): a file there is a usage error."""
    for flag in ("key_dir", "wal_dir"):
        path = getattr(args, flag, None)
        if path is not None and Path(path).exists() and not Path(path).is_dir():
            raise ConfigError(f"--{flag.replace('_', '-')} {path} is not a directory")


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (argparse exits 2 by itself on bad flags)."""
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_LogFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    try:
        _check_directories(args)
        return int(args.func(args))
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every failure gets its exit code, no traceback
        return exit_code(e)


def run() -> None:
    """The console entry point: ``main``, then an exit that skips native teardown.

    pyarrow's C++ thread pools can abort the process (SIGABRT, "terminate called
    without an active exception") when they are torn down at interpreter exit after
    the work is done (apache/arrow#34314); flushing and leaving with os._exit keeps
    the exit code the one main() returned. Output that cannot be flushed (a full disk
    behind ``> FILE``) is an I/O error, not a success.
    """
    code = main()
    logging.shutdown()
    try:
        sys.stdout.flush()
    except Exception as e:  # noqa: BLE001 - mapped like any other failure
        code = exit_code(e) if code == EXIT_OK else code
        _mute_stdout()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
