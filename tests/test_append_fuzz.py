"""Fuzzing what a caller can hand the write path: ``Journal.append_batch`` and ``wormjournal append``.

Random JSON-ish payloads (nested containers, huge integers, NaN and infinities, lone surrogates,
keys that are not strings, self-references, deep nesting), random times (texts, naive and aware
datetimes, years 1 and 9999 under any offset) and random ids go into ``append_batch``: every call
returns its seqs or raises ValidationError, and a refused call writes nothing (``next_seq`` and
the WAL unchanged). Random file contents (bytes and lines) go into the CLI: it exits 0 or 2,
never with a traceback, and on 2 writes nothing. Afterwards the journal seals, reopens and
verifies. Every call runs under a watchdog (``signal.setitimer``), so a hang fails instead of
stalling the suite.

The same generators run for minutes outside CI: ``scripts/fuzz_append.py --seconds 600``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wormjournal import Journal, JournalConfig
from wormjournal.cli import EXIT_OK, EXIT_USAGE, main
from wormjournal.errors import ValidationError
from wormjournal.events import KNOWN_EVENT_TYPES, MAX_INT_DIGITS, MAX_PAYLOAD_DEPTH, RESERVED_EVENT_TYPES

FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WATCHDOG_SECONDS = 20.0  # one call; the slowest legitimate one (open, validate, append, close) takes well under 1 s
CONFIG = JournalConfig(seal_max_age_seconds=None)


class Hang(BaseException):
    """Raised by the watchdog: not an Exception, so that no handler of the code under test swallows it."""


@contextlib.contextmanager
def watchdog(seconds: float = WATCHDOG_SECONDS) -> Iterator[None]:
    """Fail (raise Hang) if the block runs longer than ``seconds``."""
    def fire(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- generators ---------------------------------------------------------------------------------

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
ANY_CHAR = st.one_of(st.characters(), SURROGATES, st.sampled_from("\x00\x07\x1f\x7f\x85\u2028/\\\"'{}[]:,"))
TEXT = st.text(ANY_CHAR, max_size=20)
ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_.:@"
GOOD_ID = st.text(st.sampled_from(ID_CHARS), min_size=3, max_size=24).filter(lambda s: s not in (".", ".."))
BIG_INTS = st.one_of(
    st.integers(),
    st.integers(min_value=MAX_INT_DIGITS - 3, max_value=MAX_INT_DIGITS + 3).flatmap(
        lambda digits: st.sampled_from([10 ** (digits - 1), -(10**digits) + 1, 10**digits - 1, 10**digits])),
)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
SCALARS = st.one_of(st.none(), st.booleans(), BIG_INTS, FLOATS, TEXT)
KEYS = st.one_of(TEXT, TEXT, st.integers(), st.floats(), st.booleans(), st.none(), st.tuples(st.integers()))


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(children, max_size=4), st.tuples(children, children),
                     st.dictionaries(KEYS, children, max_size=4))


JSONISH = st.recursive(SCALARS, _containers, max_leaves=20)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    """A value nested around MAX_PAYLOAD_DEPTH levels (both sides of the limit), in lists or objects."""
    depth = draw(st.integers(MAX_PAYLOAD_DEPTH - 2, MAX_PAYLOAD_DEPTH + 2) | st.integers(1, 3 * MAX_PAYLOAD_DEPTH))
    value: Any = draw(SCALARS)
    as_dict = draw(st.booleans())
    for _ in range(depth):
        value = {"k": value} if as_dict else [value]
    return value


@st.composite
def cyclic(draw: st.DrawFn) -> Any:
    """A container that holds itself, directly or a few levels down."""
    root: Any = [] if draw(st.booleans()) else {}
    node = root
    for _ in range(draw(st.integers(0, 3))):
        child: Any = [] if draw(st.booleans()) else {}
        node.append(child) if isinstance(node, list) else node.__setitem__("k", child)
        node = child
    node.append(root) if isinstance(node, list) else node.__setitem__("self", root)
    return root


PAYLOADS = st.one_of(JSONISH, JSONISH, st.dictionaries(TEXT, JSONISH, max_size=5), deep(), cyclic(),
                     st.just({"x": "y" * (1 << 20)}))
TZ = st.builds(dt.timezone, st.timedeltas(min_value=-dt.timedelta(hours=23, minutes=59),
                                          max_value=dt.timedelta(hours=23, minutes=59)))
EDGE_DATETIMES = st.builds(lambda base, tz: base.replace(tzinfo=tz),
                           st.sampled_from([dt.datetime.min, dt.datetime.max, dt.datetime(1970, 1, 1)]), TZ)
DATETIMES = st.one_of(st.datetimes(timezones=st.none() | TZ), EDGE_DATETIMES)
TS_TEXT = st.one_of(
    DATETIMES.map(lambda d: d.isoformat()),
    DATETIMES.map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999-00:01",
                     "9999-12-31T23:59:59Z", "2025-03-14T09:00:00+24:00", "2025-02-30T00:00:00Z",
                     "2025-03-14T09:00:60Z", "2025-03-14", "", "now"]),
    TEXT,
)
TS = st.one_of(st.none(), DATETIMES, TS_TEXT, BIG_INTS, FLOATS)
IDS = st.one_of(GOOD_ID, GOOD_ID, GOOD_ID, TEXT, st.text(st.sampled_from(ID_CHARS), min_size=250, max_size=300),
                st.sampled_from([".", "..", "a/b", "a\\b", "", " "]), BIG_INTS, st.lists(GOOD_ID, max_size=2))
# An unhashable event_type (a list or an object) is left out here: append_batch raises TypeError for it (not a
# ValidationError; the writer looks it up in a frozenset) -- pinned by test_unhashable_event_type_is_refused.
EVENT_TYPES = st.one_of(st.sampled_from(sorted(KNOWN_EVENT_TYPES - RESERVED_EVENT_TYPES)),
                        st.sampled_from(sorted(RESERVED_EVENT_TYPES)),
                        st.sampled_from(["custom:acme.thing", "custom:x", "custom:A.b", "tool_exploded"]),
                        TEXT, st.none(), st.integers())
OPTIONAL_FIELDS = ("tenant_id", "thread_id", "node", "step_id", "parent_event_id", "correlation_id", "subject_id",
                   "event_id")


CLEAN_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
CLEAN_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), CLEAN_TEXT),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(CLEAN_TEXT, children, max_size=4),
    max_leaves=12,
)
CLEAN_TS = st.one_of(st.none(), st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1),
                                             timezones=TZ))
POISONS: dict[str, st.SearchStrategy[Any]] = {
    "event_type": EVENT_TYPES, "execution_id": IDS, "ts": TS, "payload": PAYLOADS,
    **{name: IDS for name in OPTIONAL_FIELDS},
}


@st.composite
def events(draw: st.DrawFn) -> dict[Any, Any]:
    """One event as a caller would give it: a clean one, with none, one or a few fields poisoned or missing."""
    event: dict[Any, Any] = {"event_type": draw(st.sampled_from(sorted(KNOWN_EVENT_TYPES - RESERVED_EVENT_TYPES))),
                             "execution_id": draw(GOOD_ID)}
    for name in draw(st.lists(st.sampled_from(OPTIONAL_FIELDS), max_size=3, unique=True)):
        event[name] = draw(GOOD_ID)
    if draw(st.booleans()):
        event["ts"] = draw(CLEAN_TS)
    if draw(st.sampled_from(range(4))):
        event["payload"] = draw(CLEAN_JSON)
    for name in draw(st.lists(st.sampled_from([*sorted(POISONS), *["payload", "ts"] * 4]), max_size=2, unique=True)):
        if draw(st.sampled_from(range(5))) == 3:
            event.pop(name, None)
        else:
            event[name] = draw(POISONS[name])
    if draw(st.sampled_from(range(15))) == 7:
        event[draw(st.sampled_from(["seq", "hash", "colour", "key_scope", "", "payload ", 1]))] = draw(SCALARS)
    return event


BATCHES = st.lists(events(), min_size=1, max_size=3)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _dump(value: Any, *, ensure_ascii: bool = True) -> bytes:
    """``value`` as a JSON line; what json cannot write (a cycle, a tuple key, a 5,000-digit int) as ``{``."""
    try:
        text = json.dumps(_jsonable(value), ensure_ascii=ensure_ascii)
    except (TypeError, ValueError, RecursionError):
        text = "{"
    return text.encode("utf-8", "surrogatepass")


@st.composite
def event_lines(draw: st.DrawFn) -> bytes:
    """One line of JSON Lines input: an event's JSON (sometimes cut or edited), or something that is not one."""
    kind = draw(st.sampled_from(range(10)))
    if kind <= 4:
        line = _dump(draw(events()), ensure_ascii=draw(st.booleans()))
        if kind == 4:
            cut = draw(st.integers(0, len(line)))
            line = line[:cut] + draw(TEXT).encode("utf-8", "surrogatepass") + line[cut:]
        return line
    if kind == 5:
        return draw(st.binary(max_size=60))
    if kind == 6:
        n = draw(st.integers(1, 5000))
        return draw(st.sampled_from([b"[" * n + b"]" * n, b'{"a":' * n + b"1" + b"}" * n, b"[" * n,
                                     b'{"event_type":"tool_called","execution_id":"r","payload":' + b"[" * n
                                     + b"]" * n + b"}"]))
    if kind == 7:
        digits = draw(st.integers(MAX_INT_DIGITS - 2, MAX_INT_DIGITS + 700))
        return b'{"event_type":"tool_called","execution_id":"r","payload":' + b"7" * digits + b"}"
    if kind == 8:
        return draw(st.sampled_from([b"NaN", b'{"event_type":"tool_called","execution_id":"r","payload":NaN}',
                                     b'{"event_type":"tool_called","execution_id":"r","payload":-Infinity}',
                                     b'{"event_type":"tool_called","execution_id":"r","payload":1e999}',
                                     b"[]", b"null", b'"text"', b"1", b"\xef\xbb\xbf{}", b"\xff\xfe", b"\x00",
                                     b'{"a":1,"a":2}', b"", b"   ", b"\t\r", b"\x0c", b"\xc3\x28"]))
    return _dump({"event_type": "tool_called", "execution_id": draw(GOOD_ID), "payload": draw(CLEAN_JSON)})


@st.composite
def inputs(draw: st.DrawFn) -> bytes:
    """A whole input: raw bytes, or lines joined by \\n, \\r\\n or \\r, with or without a last newline."""
    if draw(st.sampled_from(range(8))) == 5:
        return draw(st.binary(max_size=300))
    lines = draw(st.lists(event_lines(), min_size=0, max_size=6))
    sep = draw(st.sampled_from([b"\n", b"\n", b"\r\n", b"\r"]))
    return sep.join(lines) + (sep if draw(st.booleans()) else b"")


# -- the properties -------------------------------------------------------------------------------


def wal_bytes(wal_dir: Path) -> int:
    return sum(p.stat().st_size for p in wal_dir.rglob("*.wal"))


def check_append_batch(j: Journal, wal_dir: Path, batch: list[dict[Any, Any]]) -> str:
    """One call: seqs, or ValidationError and nothing written. Returns "appended" or "refused"."""
    before, size = j.next_seq, wal_bytes(wal_dir)
    try:
        with watchdog():
            seqs = j.append_batch(batch)
    except Hang as e:  # an AssertionError, so that Hypothesis shrinks it and reports the example
        raise AssertionError(f"append_batch hangs: {e}") from None
    except ValidationError as e:
        assert (j.next_seq, wal_bytes(wal_dir)) == (before, size), f"refused ({e}) but written"
        return "refused"
    assert seqs == list(range(before, before + len(batch))) and j.next_seq == before + len(batch)
    return "appended"


def check_sound(store: Path, keys: Path, events: int) -> None:
    """The journal seals, reopens with every event, and verifies (one more event appended, so that there is
    something to verify even when every input was refused)."""
    with Journal.open(store, key_dir=keys, config=CONFIG) as j:
        assert j.next_seq == events
        j.append("tool_called", "run-last", {"last": True})
        events += 1
        j.seal()
    with Journal.open(store, key_dir=keys, config=CONFIG) as j:
        assert j.next_seq == j.sealed_seq == events
        report = j.verify(workers=1)
    assert report.ok, report.to_text()
    assert report.events == events


@dataclasses.dataclass
class Cli:
    """An initialized journal for the CLI, and what has been appended to it."""

    store: Path
    keys: Path
    work: Path
    events: int = 0

    @classmethod
    def create(cls, root: Path) -> Cli:
        cli = cls(root / "journal", root / "keys", root / "work")
        cli.work.mkdir(parents=True)
        code, _, err = run_cli("init", cli.store, "--key-dir", cli.keys)
        assert code == EXIT_OK, err
        return cli


def run_cli(*args: object, stdin: bytes | None = None) -> tuple[int, str, str]:
    """``wormjournal ARGS`` in-process under the watchdog; returns the exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), watchdog():
            code = main([str(a) for a in args])
    except Hang as e:  # an AssertionError, so that Hypothesis shrinks it and reports the example
        raise AssertionError(f"wormjournal {' '.join(map(str, args))} hangs: {e}") from None
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


APPENDED = re.compile(r"appended (\d+) events to stream main: seq (\d+)\.\.(\d+)")


def check_cli_append(cli: Cli, data: bytes, *, via_stdin: bool = False) -> str:
    """One ``wormjournal append``: exit 0 (with the seqs that follow on) or 2 (with nothing written), no traceback.
    Returns "appended", "empty" or "refused"."""
    wal_dir = cli.store / ".wal"
    size = wal_bytes(wal_dir)
    if via_stdin:
        code, out, err = run_cli("append", cli.store, "-", "--key-dir", cli.keys, stdin=data)
    else:
        src = cli.work / "input.jsonl"
        src.write_bytes(data)
        code, out, err = run_cli("append", cli.store, src, "--key-dir", cli.keys)
    assert "Traceback" not in err and "internal error" not in err, err
    assert code in (EXIT_OK, EXIT_USAGE), (code, err)
    if code == EXIT_USAGE:
        assert wal_bytes(wal_dir) == size, f"exit 2 ({err.strip()}) but the WAL grew"
        assert re.search(r"line \d+", err), err  # the bad line is named
        return "refused"
    m = APPENDED.search(out)
    if m is None:
        assert "nothing written" in err and wal_bytes(wal_dir) == size, (out, err)
        return "empty"
    n, first, last = map(int, m.groups())
    assert (first, last) == (cli.events, cli.events + n - 1), (out, cli.events)
    cli.events += n
    return "appended"


# -- the tests ------------------------------------------------------------------------------------


def test_append_batch_fuzz(tmp_path: Path) -> None:
    store, keys = tmp_path / "journal", tmp_path / "keys"
    outcomes: dict[str, int] = {}
    with Journal.create(store, key_dir=keys, config=CONFIG) as j:

        @FUZZ
        @given(batch=BATCHES)
        def check(batch: list[dict[Any, Any]]) -> None:
            outcome = check_append_batch(j, store / ".wal", batch)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

        check()
        appended = j.next_seq
    assert outcomes.get("refused") and outcomes.get("appended"), outcomes  # both paths were taken
    check_sound(store, keys, appended)


@pytest.mark.parametrize("via_stdin", [False, True], ids=["file", "stdin"])
def test_cli_append_fuzz(tmp_path: Path, via_stdin: bool) -> None:
    cli = Cli.create(tmp_path)
    outcomes: dict[str, int] = {}

    @settings(FUZZ, max_examples=50)
    @given(data=inputs())
    @example(data=b'{"event_type": "tool_called", "execution_id": "run-1"}\n')  # both paths, whatever is drawn
    def check(data: bytes) -> None:
        outcome = check_cli_append(cli, data, via_stdin=via_stdin)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    check()
    assert outcomes.get("refused") and outcomes.get("appended"), outcomes
    check_sound(cli.store, cli.keys, cli.events)


# -- what the fuzzers found outside the CLI -------------------------------------------------------------


def test_unhashable_event_type_is_refused(tmp_path: Path) -> None:
    with Journal.create(tmp_path / "journal", key_dir=tmp_path / "keys", config=CONFIG) as j:
        with pytest.raises(ValidationError, match="event_type"):
            j.append_batch([{"event_type": ["tool_called"], "execution_id": "r"}])
        assert j.next_seq == 0


def test_shared_subtrees_are_refused_quickly(tmp_path: Path) -> None:
    payload: Any = []
    for _ in range(40):
        payload = [payload, payload]
    with Journal.create(tmp_path / "journal", key_dir=tmp_path / "keys", config=CONFIG) as j:
        with watchdog(2.0), pytest.raises(ValidationError, match="payload"):
            j.append_batch([{"event_type": "tool_called", "execution_id": "r", "payload": payload}])
        assert j.next_seq == 0
