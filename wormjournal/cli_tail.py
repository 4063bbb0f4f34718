"""``wormjournal tail``: a stream's newest events, each verified, and with ``--follow`` each new one as it arrives."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cli_common import EXIT_OK, TIMELINE_COLUMNS, Timeline, _reader, _wal_dir, err, out
from .errors import ValidationError
from .index import Event, Reader
from .index.follow import EventFilter, Follower, Tail
from .subscriptions import CURSOR_DIR, cursor_status

_WIDTHS = (8, 24, 10, 22, 16, 9, 8)  # the columns of TIMELINE_COLUMNS but the payload, left-aligned


def _line(row: tuple[str, ...]) -> str:
    return "  ".join([c.ljust(w) for c, w in zip(row, _WIDTHS, strict=False)] + [row[-1]]).rstrip()


def _cursor_dir(args: argparse.Namespace) -> Path:
    if args.cursor_dir is not None:
        return Path(args.cursor_dir)
    wal = _wal_dir(args)
    if wal is None:
        if args.store.startswith("s3://"):
            raise ValidationError("--cursor-dir", "give the directory of the subscription's cursor")
        wal = Path(args.store) / ".wal"
    return Path(wal) / CURSOR_DIR


def _since_cursor(args: argparse.Namespace, reader: Reader) -> Tail:
    """The tail a named subscription stands at in this stream, its standing told on stderr."""
    status = cursor_status(_cursor_dir(args), args.since_cursor)
    if status["journal"] != reader.identity.journal_id:
        raise ValidationError("--since-cursor", f"{status['path']} is a cursor of journal {status['journal']}, "
                              f"not {reader.identity.journal_id}")
    saved = status["streams"].get(reader.stream)
    last = reader.count_events() - 1
    if saved is None:
        err.print(f"subscription {args.since_cursor} has handled nothing of stream {reader.stream} yet "
                  f"({last + 1} events; cursor saved {status['saved']})", markup=False, highlight=False)
        return Tail()
    err.print(f"subscription {args.since_cursor}: stream {reader.stream} handled up to seq {saved['seq']}, "
              f"{max(0, last - saved['seq'])} event(s) behind seq {last} (cursor saved {status['saved']})",
              markup=False, highlight=False)
    return Tail(saved["seq"], bytes.fromhex(saved["hash"]) if saved["hash"] else None)


def _newest(reader: Reader, wanted: EventFilter, lines: int,
            poll_seconds: float | None) -> tuple[list[Event], Follower]:
    """The last ``lines`` events that pass the filter, and a follower past them: windows of the newest events,
    growing until they hold enough (or the whole stream)."""
    end = reader.count_events()
    window = max(4 * lines, 256)
    while True:
        start = max(-1, end - 1 - window)
        follower = Follower([reader], {reader.stream: Tail(start)}, wanted, has_wal=reader.reads_wal,
                            poll_seconds=poll_seconds)
        found = list(follower.events(timeout=0))
        if len(found) >= lines or start == -1:
            return (found[-lines:] if lines else []), follower
        window *= 8


def cmd_tail(args: argparse.Namespace) -> int:
    reader = _reader(args)
    wanted = EventFilter.of(args.type, execution_id=args.execution, thread_id=args.thread, tenant_id=args.tenant)
    if args.since_cursor is not None and args.after_seq is not None:
        raise ValidationError("--after-seq", "give --after-seq or --since-cursor, not both")
    if args.after_seq is not None and args.after_seq < -1:
        raise ValidationError("--after-seq", "is a seq, or -1 for every event")
    if args.since_cursor is not None or args.after_seq is not None:
        tail = _since_cursor(args, reader) if args.since_cursor is not None else Tail(args.after_seq)
        first: list[Event] = []
        follower = Follower([reader], {reader.stream: tail}, wanted, has_wal=reader.reads_wal,
                            poll_seconds=args.poll_seconds)
    else:
        if args.lines < 0:
            raise ValidationError("--lines", "must be 0 or more")
        first, follower = _newest(reader, wanted, args.lines, args.poll_seconds)
    timeline = Timeline()
    show: Callable[[Event], Any]
    if args.json:
        def show(e: Event) -> None:
            out.print(e.to_json(), markup=False, highlight=False, soft_wrap=True)
    else:
        def show(e: Event) -> None:
            out.print(_line(timeline.row(e)), markup=False, highlight=False, soft_wrap=True)
        out.print(_line(TIMELINE_COLUMNS), markup=False, highlight=False)
    try:
        for e in first:
            show(e)
        # Without --follow: what came meanwhile, then stop; with it, every event as it comes, until Ctrl-C.
        for e in follower.events(timeout=args.timeout if args.follow else 0):
            show(e)
    except KeyboardInterrupt:  # the way a follow ends: what was shown stands, no traceback
        pass
    return EXIT_OK


def add_parser(sub: Any, reader_args: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("tail", help="a stream's newest events, verified; with --follow each new one as it arrives "
                       "(Ctrl-C ends it)")
    reader_args(p)
    p.add_argument("-f", "--follow", action="store_true",
                   help="go on printing events as they become durable: from the WAL on this machine as soon as "
                   "append returns, from the store alone once they are sealed")
    p.add_argument("-n", "--lines", type=int, default=10, metavar="N",
                   help="how many of the newest events (that pass the filters) to print first (default: %(default)s)")
    p.add_argument("--type", action="append", default=None, metavar="TYPE", help="only events of this type; repeatable")
    p.add_argument("--execution", default=None, help="only this execution's events")
    p.add_argument("--thread", default=None, help="only this thread's events")
    p.add_argument("--tenant", default=None, help="only this tenant's events")
    p.add_argument("--after-seq", type=int, default=None, metavar="SEQ",
                   help="print the events after this seq instead of the newest ones")
    p.add_argument("--since-cursor", default=None, metavar="NAME",
                   help="tell where subscription NAME stands (on stderr) and print the events it has not handled yet")
    p.add_argument("--cursor-dir", default=None, metavar="DIR",
                   help="where the subscriptions' cursors are (default: the WAL directory's subscriptions/)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="with --follow: stop after this long without a new event (default: never)")
    p.add_argument("--poll-seconds", type=float, default=None, metavar="SECONDS",
                   help="the longest wait between two looks once caught up (default: 0.05 with the WAL, 1 without)")
    p.add_argument("--json", action="store_true", help="JSON Lines, one event a line (as replay --json)")
    p.set_defaults(func=cmd_tail)
