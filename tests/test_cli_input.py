"""Faults and poison input at the command line: one exit-code table for every command, and an
``append`` that is all or nothing.

The exit codes (README.md, "Exit codes"): 0 done, 1 findings, 2 usage or input error, 3 internal
error (one line, no traceback unless WORMJOURNAL_DEBUG=1), 4 storage or I/O error, 130 interrupted.
``append`` validates every line before it writes anything: a bad line after 1,500 good ones exits 2
with nothing written; a write that fails midway says which lines are in the journal and how to
append the rest without duplicates (``--skip-lines``, ``--expect-next-seq``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_cli import CliPaths, event, public_key_path, wal_bytes, write_jsonl

from wormjournal import Journal, JournalConfig
from wormjournal import cli as cli_module
from wormjournal.cli import (
    EXIT_FINDINGS,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STORAGE,
    EXIT_USAGE,
    main,
)
from wormjournal.errors import (
    ConfigError,
    IntegrityError,
    LockedError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from wormjournal.events import MAX_INT_DIGITS, MAX_PAYLOAD_DEPTH

CONFIG = JournalConfig(seal_max_age_seconds=None)


@pytest.fixture
def journal(wj, cli_paths: CliPaths) -> Path:  # noqa: ANN001
    """A journal with 5 events appended and sealed (so that verify has something to prove); its public key."""
    r = wj("init", cli_paths.store, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_OK, r.err
    src = write_jsonl(cli_paths.work / "first.jsonl", [event(i) for i in range(5)])
    assert wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys).code == EXIT_OK
    assert wj("seal", cli_paths.store, "--key-dir", cli_paths.keys).code == EXIT_OK
    return public_key_path(r.out)


def next_seq(paths: CliPaths) -> int:
    with Journal.open(paths.store, key_dir=paths.keys, config=CONFIG) as j:
        return j.next_seq


def lines(events: list[dict[str, object]]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def assert_one_error(err: str) -> None:
    assert "Traceback" not in err, err
    assert len([line for line in err.splitlines() if line.strip()]) <= 3, err  # the error, its hint, what was done


# -- the exit-code table ------------------------------------------------------------------------------


def test_ok_findings_and_usage_of_real_commands(wj, cli_paths: CliPaths, journal: Path) -> None:  # noqa: ANN001
    assert wj("verify", cli_paths.store, "--public-key", journal).code == EXIT_OK
    assert wj("info", cli_paths.store).code == EXIT_OK
    r = wj("query", cli_paths.store, "SELECT 1", "--format", "csv", "--out", cli_paths.work / "no" / "x.csv")
    assert r.code == EXIT_USAGE and "cannot write --out" in r.err, r.err
    with Journal.open(cli_paths.store, key_dir=cli_paths.keys, config=CONFIG):  # a lock held
        r = wj("seal", cli_paths.store, "--key-dir", cli_paths.keys)
        assert r.code == EXIT_USAGE and "writer" in r.err, r.err
    # findings: a segment cut short
    [segment] = sorted((cli_paths.store / "segments").rglob("*.parquet"))
    segment.chmod(0o644)
    segment.write_bytes(segment.read_bytes()[: segment.stat().st_size // 2])
    assert wj("verify", cli_paths.store, "--public-key", journal).code == EXIT_FINDINGS
    # the SQL view reads the files unverified: a segment that does not read is a storage error, pointing to verify
    r = wj("query", cli_paths.store, "SELECT count(*) FROM events")
    assert r.code == EXIT_STORAGE and "wormjournal verify" in r.err, r.err
    # an IntegrityError while reading counts as a finding too: the manifest under the checkpoint is gone
    (cli_paths.store / "manifests" / "stream=main" / "000000000000.note").unlink()
    r = wj("replay", cli_paths.store, "--execution", "run-1", "--key-dir", cli_paths.keys)
    assert r.code == EXIT_FINDINGS and r.err.startswith("integrity error: "), r.err
    # usage: argparse's own, and the commands' own checks
    for argv in (["verify"], ["append", cli_paths.store, "--skip-lines", "-1"], ["append", cli_paths.store,
                 "--expect-next-seq", "x"], ["verify", cli_paths.store, "--frobnicate"]):
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in argv])
        assert exc.value.code == EXIT_USAGE
    r = wj("verify", cli_paths.store, "--workers", "0")
    assert r.code == EXIT_USAGE and "--workers" in r.err
    r = wj("verify", cli_paths.work / "nowhere")  # a journal that does not exist
    assert r.code == EXIT_USAGE and "no journal" in r.err
    r = wj("seal", cli_paths.store, "--key-dir", segment)  # a file where a directory belongs
    assert r.code == EXIT_USAGE and "is not a directory" in r.err


@pytest.mark.parametrize(("error", "code", "prefix"), [
    (IntegrityError("seq 7 does not chain"), EXIT_FINDINGS, "integrity error: seq 7"),
    (ValidationError("payload", "is bad"), EXIT_USAGE, "error: field 'payload'"),
    (ConfigError("no signing key"), EXIT_USAGE, "error: no signing key"),
    (LockedError("held by pid 1"), EXIT_USAGE, "error: held by pid 1"),
    (NotFoundError("no journal in x"), EXIT_USAGE, "error: no journal"),
    (StorageError("cannot write x: [Errno 28] No space left on device"), EXIT_STORAGE, "storage error: cannot write"),
    (OSError(28, "No space left on device"), EXIT_STORAGE, "I/O error: [Errno 28]"),
    (RuntimeError("boom\nsecond line"), EXIT_INTERNAL, "internal error: RuntimeError: boom second line"),
    (RecursionError("maximum recursion depth exceeded"), EXIT_INTERNAL, "internal error: RecursionError"),
    (KeyError("x"), EXIT_INTERNAL, "internal error: KeyError: 'x'"),
    (KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted"),
])
def test_each_exception_class_has_its_code(wj, cli_paths: CliPaths, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
                                           error: BaseException, code: int, prefix: str) -> None:
    def fail(args: Any) -> int:
        raise error

    monkeypatch.delenv("WORMJOURNAL_DEBUG", raising=False)
    monkeypatch.setattr(cli_module, "cmd_info", fail)
    r = wj("info", cli_paths.store)
    assert r.code == code
    assert r.err.startswith(prefix), r.err
    assert_one_error(r.err)
    assert r.out == ""


def test_internal_error_is_one_line_and_a_hint(wj, cli_paths: CliPaths,  # noqa: ANN001
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(args: Any) -> int:
        raise RuntimeError("something broke")

    monkeypatch.delenv("WORMJOURNAL_DEBUG", raising=False)
    monkeypatch.setattr(cli_module, "cmd_seal", boom)
    r = wj("seal", cli_paths.store)
    assert r.code == EXIT_INTERNAL
    assert r.err.splitlines() == [
        "internal error: RuntimeError: something broke",
        "hint: this is a bug in wormjournal; rerun with WORMJOURNAL_DEBUG=1 for the traceback",
    ]
    monkeypatch.setenv("WORMJOURNAL_DEBUG", "1")
    r = wj("seal", cli_paths.store)
    assert r.code == EXIT_INTERNAL
    assert r.err.startswith("internal error: RuntimeError: something broke")
    assert "Traceback (most recent call last)" in r.err and "in boom" in r.err


def test_logged_exceptions_stay_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        raise OSError(5, "Input/output error")
    except OSError:
        record = logging.LogRecord("wormjournal.x", logging.WARNING, __file__, 1, "seal failed", None, sys.exc_info())
    formatter = cli_module._LogFormatter("%(levelname)s %(name)s: %(message)s")
    monkeypatch.delenv("WORMJOURNAL_DEBUG", raising=False)
    text = formatter.format(record)
    assert "Traceback" not in text and text.splitlines() == [
        "WARNING wormjournal.x: seal failed",
        "  (OSError: [Errno 5] Input/output error; WORMJOURNAL_DEBUG=1 shows the traceback)"]
    monkeypatch.setenv("WORMJOURNAL_DEBUG", "1")
    record.exc_text = None  # formatted again
    assert "Traceback (most recent call last)" in formatter.format(record)


def _process(*args: object, code: str | None = None, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    """``wormjournal ARGS`` as a process (through ``run``, the console entry point), after ``code`` if given."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORMJOURNAL_KEY_DIR", "WORMJOURNAL_DEBUG")}
    prelude = f"import wormjournal.cli as c; {code or ''}; c.run()"
    return subprocess.run([sys.executable, "-c", prelude, *map(str, args)], env=env, timeout=120, check=False,
                          **{"capture_output": True, **kwargs})


def test_as_a_process_internal_errors_and_unwritable_output(cli_paths: CliPaths) -> None:
    r = _process("info", cli_paths.store, code="c.cmd_info = lambda args: {}['missing']")
    assert r.returncode == EXIT_INTERNAL
    assert r.stderr.decode().splitlines()[0] == "internal error: KeyError: 'missing'"
    assert b"Traceback" not in r.stderr
    if Path("/dev/full").exists():  # output that cannot be written (a full disk behind > FILE) is not a success
        with open("/dev/full", "wb") as full:
            r = _process("info", cli_paths.store, code="c.cmd_info = lambda args: (c.out.print('x' * 100), 0)[1]",
                         stdout=full, capture_output=False, stderr=subprocess.PIPE)
        assert r.returncode == EXIT_STORAGE, r.stderr
        assert b"No space left" in r.stderr and b"Traceback" not in r.stderr
    # A reader that goes away (`| head`): quiet, and not a success.
    p = subprocess.Popen([sys.executable, "-c", "import wormjournal.cli as c; c.cmd_info = lambda args: "
                          "(c.out.print('x' * 100), 0)[1]; c.run()", "info", str(cli_paths.store)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=120) == EXIT_STORAGE
    assert b"Traceback" not in err and b"Exception ignored" not in err, err


# -- append: all or nothing -----------------------------------------------------------------------------


def test_a_bad_line_after_1500_good_ones_writes_nothing(wj, cli_paths: CliPaths, journal: Path) -> None:  # noqa: ANN001
    good = [event(i, execution_id=f"run-{i % 7}") for i in range(1500)]
    src = cli_paths.work / "big.jsonl"
    src.write_text(lines(good) + '{"event_type": "tool_called", "execution_id": "run-x", "colour": 1}\n')
    before = wal_bytes(cli_paths.store)
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_USAGE
    assert "line 1501" in r.err and "field 'colour'" in r.err and "unknown field" in r.err, r.err
    assert_one_error(r.err)
    assert wal_bytes(cli_paths.store) == before and next_seq(cli_paths) == 5
    assert wj("verify", cli_paths.store, "--public-key", journal).code == EXIT_OK
    # Fixed and retried: every event once.
    src.write_text(lines(good) + '{"event_type": "tool_called", "execution_id": "run-x"}\n')
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_OK, r.err
    assert "appended 1501 events to stream main: seq 5..1505 (durable)" in r.out


def test_batches_after_full_validation(wj, cli_paths: CliPaths, journal: Path,  # noqa: ANN001
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "APPEND_BATCH_EVENTS", 100)
    good = [event(i) for i in range(450)]
    text = lines(good)
    # A reserved type is refused before anything is written (append_batch would refuse it only in its batch).
    r = wj("append", cli_paths.store, "-", "--key-dir", cli_paths.keys,
           stdin=text + '{"event_type": "erasure_receipt", "execution_id": "x"}\n')
    assert r.code == EXIT_USAGE and "line 451" in r.err and "appended by the library only" in r.err, r.err
    assert next_seq(cli_paths) == 5
    r = wj("append", cli_paths.store, "-", "--key-dir", cli_paths.keys, stdin=text)
    assert r.code == EXIT_OK, r.err
    assert "appended 450 events to stream main: seq 5..454 (durable) in 5 batches" in r.out


def _fail_on_call(monkeypatch: pytest.MonkeyPatch, n: int, *, after_write: bool) -> None:
    """Journal.append_batch raises StorageError on its n-th call, before its frame is written or after."""
    real = Journal.append_batch
    calls = {"n": 0}

    def append_batch(self: Journal, events: Any) -> list[int]:
        calls["n"] += 1
        if calls["n"] == n:
            if after_write:
                real(self, events)  # written; then the fsync "fails"
            raise StorageError("cannot write the write-ahead log: [Errno 5] Input/output error")
        return real(self, events)

    monkeypatch.setattr(Journal, "append_batch", append_batch)


def test_a_write_failing_midway_says_what_is_in_and_how_to_resume(wj, cli_paths: CliPaths, journal: Path,  # noqa: ANN001
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "APPEND_BATCH_EVENTS", 100)
    src = write_jsonl(cli_paths.work / "events.jsonl", [event(i, step_id=f"s-{i}") for i in range(350)])
    with monkeypatch.context() as m:
        _fail_on_call(m, 3, after_write=False)
        r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_STORAGE
    assert f"append stopped: lines 1..200 of {src} are appended (seq 5..204, durable); lines 201..350 are not " \
           "appended" in r.err, r.err
    assert "run the same command again with --skip-lines 200 --expect-next-seq 205" in r.err
    assert "storage error: cannot write the write-ahead log" in r.err and "Traceback" not in r.err
    assert next_seq(cli_paths) == 205
    # A retry without the flags would duplicate: --expect-next-seq refuses a wrong guess, writing nothing.
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys, "--skip-lines", "200",
           "--expect-next-seq", "5")
    assert r.code == EXIT_USAGE and "next seq of stream main is 205, not 5" in r.err
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys, "--skip-lines", "200",
           "--expect-next-seq", "205")
    assert r.code == EXIT_OK, r.err
    assert "appended 150 events to stream main: seq 205..354" in r.out
    assert wj("seal", cli_paths.store, "--key-dir", cli_paths.keys).code == EXIT_OK
    report = json.loads(wj("verify", cli_paths.store, "--public-key", journal, "--json").out)
    assert report["ok"] and report["events"] == 355
    with Journal.open(cli_paths.store, key_dir=cli_paths.keys, config=CONFIG) as j:
        steps = [e.step_id for e in j.reader().events("run-1")[5:]]
    assert steps == [f"s-{i}" for i in range(350)]  # each line once, in order


def test_a_batch_written_but_not_confirmed(wj, cli_paths: CliPaths, journal: Path,  # noqa: ANN001
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "APPEND_BATCH_EVENTS", 100)
    src = write_jsonl(cli_paths.work / "events.jsonl", [event(i) for i in range(250)])
    with monkeypatch.context() as m:
        _fail_on_call(m, 2, after_write=True)
        r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_STORAGE
    assert "lines 1..100 of" in r.err and "(seq 5..104, durable)" in r.err, r.err
    assert "lines 101..200 (seq 105..204) were written but not confirmed durable" in r.err
    assert "--skip-lines 100 --expect-next-seq 105; if that refuses because the next seq is 205, with " \
           "--skip-lines 200 --expect-next-seq 205" in r.err
    # Here the batch did reach the journal: the first suggestion refuses, the second appends the rest.
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys, "--skip-lines", "100",
           "--expect-next-seq", "105")
    assert r.code == EXIT_USAGE and "is 205, not 105" in r.err
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys, "--skip-lines", "200",
           "--expect-next-seq", "205")
    assert r.code == EXIT_OK and "seq 205..254" in r.out, r.err


def test_a_file_changed_between_validation_and_writing(wj, cli_paths: CliPaths, journal: Path,  # noqa: ANN001
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "APPEND_BATCH_EVENTS", 100)
    src = write_jsonl(cli_paths.work / "events.jsonl", [event(i) for i in range(300)])
    real = Journal.append_batch

    def append_batch(self: Journal, events: Any) -> list[int]:
        src.write_text(lines([event(i, node="changed") for i in range(300)]))
        return real(self, events)

    monkeypatch.setattr(Journal, "append_batch", append_batch)
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_USAGE
    assert "changed while it was appended: lines 101..200" in r.err
    assert "lines 1..100 of" in r.err and "--skip-lines 100 --expect-next-seq 105" in r.err
    assert next_seq(cli_paths) == 105


POISON = {
    "deep_list": ("[" * 100_000 + "]" * 100_000, "'(line)'", "nested too deeply"),
    "deep_payload": ('{"event_type": "tool_called", "execution_id": "r", "payload": ' + "[" * 5000 + "]" * 5000 + "}",
                     "'(line)'", "nested too deeply"),
    "deep_but_parsable": ('{"event_type": "tool_called", "execution_id": "r", "payload": '
                          + "[" * (MAX_PAYLOAD_DEPTH + 1) + "]" * (MAX_PAYLOAD_DEPTH + 1) + "}", "'payload'",
                          f"deeper than {MAX_PAYLOAD_DEPTH}"),
    "huge_int": ('{"event_type": "tool_called", "execution_id": "r", "payload": ' + "9" * 5000 + "}", "'(line)'",
                 f"more than {MAX_INT_DIGITS} digits"),
    "long_int": ('{"event_type": "tool_called", "execution_id": "r", "payload": ' + "9" * (MAX_INT_DIGITS + 1) + "}",
                 "'(line)'", f"more than {MAX_INT_DIGITS} digits"),
    "nan": ('{"event_type": "tool_called", "execution_id": "r", "payload": {"x": NaN}}', "'(line)'", "NaN"),
    "infinity": ('{"event_type": "tool_called", "execution_id": "r", "payload": -Infinity}', "'(line)'", "Infinity"),
    "overflowing_float": ('{"event_type": "tool_called", "execution_id": "r", "payload": 1e999}', "'payload'", ""),
    "top_level_list": ("[]", "'(line)'", "must be a JSON object"),
    "top_level_string": ('"tool_called"', "'(line)'", "must be a JSON object"),
    "top_level_null": ("null", "'(line)'", "must be a JSON object"),
    "duplicate_key": ('{"event_type": "tool_called", "execution_id": "a", "execution_id": "b"}', "'(line)'",
                      "'execution_id' twice"),
    "lone_surrogate": ('{"event_type": "tool_called", "execution_id": "r", "payload": "\\ud800"}', "'payload'",
                       "surrogate"),
    "year_0": ('{"event_type": "tool_called", "execution_id": "r", "ts": "0001-01-01T00:00:00+01:00"}', "'ts'",
               "outside UTC years 1 to 9999"),
    "year_10000": ('{"event_type": "tool_called", "execution_id": "r", "ts": "9999-12-31T23:59:59-01:00"}', "'ts'",
                   "outside UTC years 1 to 9999"),
    "form_feed": ("\x0c", "'(line)'", "not JSON"),
}


def test_poison_lines_are_input_errors_naming_the_line(wj, cli_paths: CliPaths, journal: Path) -> None:  # noqa: ANN001
    before = wal_bytes(cli_paths.store)
    for case, (bad, field, words) in sorted(POISON.items()):
        text = json.dumps(event(0)) + "\n\n" + bad + "\n" + json.dumps(event(1)) + "\n"
        r = wj("append", cli_paths.store, "-", "--key-dir", cli_paths.keys, stdin=text)
        assert r.code == EXIT_USAGE, (case, r.err)
        assert r.err.startswith(f"error: line 3: field {field}"), (case, r.err)
        assert words in r.err, (case, r.err)
        assert_one_error(r.err)
        assert r.out == "" and wal_bytes(cli_paths.store) == before, case
    assert next_seq(cli_paths) == 5


def test_invalid_utf8_names_the_line(wj, cli_paths: CliPaths, journal: Path) -> None:  # noqa: ANN001
    for raw, words in [
        (b"\xff\xfe{}", "invalid start byte (byte 0xff at offset 1)"),
        (b'{"event_type": "tool_called", "execution_id": "r\xc3("}', "invalid continuation byte"),
        (b'{"event_type": "tool_called", "execution_id": "r", "payload": "\xed\xa0\x80"}', "cannot read it as UTF-8"),
    ]:
        src = cli_paths.work / "bad.jsonl"
        src.write_bytes(json.dumps(event(0)).encode() + b"\n" + raw + b"\n")
        r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
        assert r.code == EXIT_USAGE
        assert "line 2: field '(line)': cannot read it as UTF-8" in r.err and words in r.err, r.err
    assert next_seq(cli_paths) == 5


def test_bom_crlf_and_long_lines(wj, cli_paths: CliPaths, journal: Path,  # noqa: ANN001
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    src = cli_paths.work / "windows.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(json.dumps(event(i)).encode() for i in range(3)) + b"\r\n")
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_OK and "appended 3 events" in r.out, r.err
    monkeypatch.setattr(cli_module, "LINE_LIMIT", 1 << 20)  # lines of at most 1 MiB, not 16
    src.write_text(json.dumps(event(0)) + "\n" + " " * (2 << 20) + json.dumps(event(1)) + "\n")
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_USAGE and "line 2: field '(line)': is longer than 1,048,576 bytes" in r.err, r.err
    assert next_seq(cli_paths) == 8


def test_year_one_in_another_zone_is_refused_and_the_journal_goes_on(wj, cli_paths: CliPaths,  # noqa: ANN001
                                                                    journal: Path) -> None:
    bad = dict(event(9), ts="0001-01-01T00:00:00+01:00")
    src = write_jsonl(cli_paths.work / "ts.jsonl", [event(5), bad])
    before = wal_bytes(cli_paths.store)
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_USAGE
    assert "line 2: field 'ts': is outside UTC years 1 to 9999" in r.err, r.err
    assert wal_bytes(cli_paths.store) == before
    with Journal.open(cli_paths.store, key_dir=cli_paths.keys, config=CONFIG) as j:
        with pytest.raises(ValidationError, match="'ts'"):
            j.append("tool_called", "run-1", ts=dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))))
        assert j.next_seq == 5
        j.append("tool_called", "run-1", {"after": True}, ts=dt.datetime(1, 1, 1, 1, tzinfo=dt.timezone(
            dt.timedelta(hours=1))))  # year 1, 00:00 UTC: the first instant there is
    assert wj("seal", cli_paths.store, "--key-dir", cli_paths.keys).code == EXIT_OK
    r = wj("verify", cli_paths.store, "--public-key", journal, "--json")
    assert r.code == EXIT_OK and json.loads(r.out)["events"] == 6, r.out
    with Journal.open(cli_paths.store, key_dir=cli_paths.keys, config=CONFIG) as j:
        assert j.next_seq == j.sealed_seq == 6
        assert j.reader().events("run-1")[-1].ts == dt.datetime(1, 1, 1, tzinfo=dt.UTC)


# -- the Python API ------------------------------------------------------------------------------------


def _nested(levels: int) -> Any:
    """A value in ``levels`` lists."""
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def _cycle_list() -> Any:
    a: list[Any] = [1]
    a.append({"back": a})
    return a


def _cycle_dict() -> Any:
    d: dict[str, Any] = {}
    d["self"] = d
    return d


POISON_PAYLOADS = {
    "deep": (_nested(MAX_PAYLOAD_DEPTH + 1), "nested deeper"),
    "deep_inside": ({"a": _nested(MAX_PAYLOAD_DEPTH)}, "nested deeper"),
    "long_int": (10**MAX_INT_DIGITS, f"more than {MAX_INT_DIGITS} digits"),
    "huge_int": ({"n": [-(10**5000)]}, f"more than {MAX_INT_DIGITS} digits"),
    "cycle_list": (_cycle_list(), "refers to itself"),
    "cycle_dict": (_cycle_dict(), "refers to itself"),
    "int_key": ({1: "x"}, "not a string"),
    "nan": ({"x": float("nan")}, "not JSON"),
}


def test_api_refuses_poison_payloads_and_writes_nothing(tmp_path: Path) -> None:
    with Journal.create(tmp_path / "journal", key_dir=tmp_path / "keys", config=CONFIG) as j:
        j.append("tool_called", "run-1", {"ok": True})
        for case, (payload, words) in POISON_PAYLOADS.items():
            with pytest.raises(ValidationError, match="'payload'") as exc:
                j.append_batch([{"event_type": "tool_called", "execution_id": "run-1"},
                                {"event_type": "tool_called", "execution_id": "run-1", "payload": payload}])
            assert words in str(exc.value), case
            assert j.next_seq == 1, case
        j.append("tool_called", "run-1", {"limits": [_nested(MAX_PAYLOAD_DEPTH - 2), 10**MAX_INT_DIGITS - 1]})
        j.seal()
        assert j.verify(workers=1).ok
    with Journal.open(tmp_path / "journal", key_dir=tmp_path / "keys", config=CONFIG) as j:
        assert j.next_seq == j.sealed_seq == 2
