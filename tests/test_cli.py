"""The ``wormjournal`` command, driven in-process through ``cli.main`` and once as a real subprocess."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from wormjournal import Journal
from wormjournal.cli import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, build_parser, default_key_dir, main
from wormjournal.segments.notes import SigningKey

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class CliPaths:
    """A store directory and a key directory outside it, plus a scratch directory for inputs."""

    store: Path
    keys: Path
    work: Path


@dataclasses.dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli_paths(tmp_path: Path) -> CliPaths:
    work = tmp_path / "work"
    work.mkdir()
    return CliPaths(store=tmp_path / "journal", keys=tmp_path / "keys", work=work)


@pytest.fixture
def wj(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run ``wormjournal ARGS`` in-process; returns its exit code and captured output."""
    monkeypatch.setenv("COLUMNS", "200")  # rich tables must not wrap the cells we look for

    def run(*args: object, stdin: str | None = None) -> Result:
        capsys.readouterr()  # drop whatever came before
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def event(i: int, *, execution_id: str = "run-1", **fields: object) -> dict[str, object]:
    return {
        "event_type": "tool_called",
        "execution_id": execution_id,
        "thread_id": "thread-1",
        "tenant_id": "acme",
        "node": "retrieve",
        "ts": f"2025-03-14T09:00:{i % 60:02d}.000000Z",
        "payload": {"i": i, "tool": "search"},
        **fields,
    }


def write_jsonl(path: Path, events: list[dict[str, object]], extra_lines: list[str] = ()) -> Path:
    lines = [json.dumps(e) for e in events] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def public_key_path(init_output: str) -> Path:
    m = re.search(r"^public key\s+(\S+\.pub\.pem) ", init_output, re.M)
    assert m, init_output
    return Path(m.group(1))


def wal_bytes(store: Path, stream: str = "main") -> int:
    return sum(p.stat().st_size for p in (store / ".wal" / f"stream={stream}").glob("*.wal"))


def segment_files(store: Path) -> list[Path]:
    return sorted((store / "segments").rglob("*.parquet"))


@pytest.fixture
def initialized(wj, cli_paths: CliPaths) -> Path:
    """An initialized journal; returns the exported public key path."""
    r = wj("init", cli_paths.store, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_OK, r.err
    return public_key_path(r.out)


@pytest.fixture
def sealed(wj, cli_paths: CliPaths, initialized: Path) -> Path:
    """A journal with 5 events appended and sealed; returns the exported public key path."""
    src = write_jsonl(cli_paths.work / "events.jsonl", [event(i) for i in range(5)])
    assert wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys).code == EXIT_OK
    assert wj("seal", cli_paths.store, "--key-dir", cli_paths.keys).code == EXIT_OK
    return initialized


# -- init ---------------------------------------------------------------------------


def test_init_creates_journal_and_prints_public_key(wj, cli_paths: CliPaths) -> None:
    r = wj("init", cli_paths.store, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_OK, r.err
    assert (cli_paths.store / "journal.json").is_file()
    journal_id = json.loads((cli_paths.store / "journal.json").read_text())["journal_id"]
    assert f"created journal {journal_id}" in r.out
    pub = public_key_path(r.out)
    assert pub.is_file()
    assert pub.parent == cli_paths.keys / journal_id
    data = pub.read_bytes()
    assert data.startswith(b"-----BEGIN PUBLIC KEY-----")
    key = serialization.load_pem_public_key(data)
    assert isinstance(key, Ed25519PublicKey)
    # The same key is stored in the journal, under its key id.
    assert (cli_paths.store / "keys" / pub.name.replace(".pub.pem", ".pem")).read_bytes() == data
    # The signing key stays outside the store, readable by its owner only.
    signing = cli_paths.keys / journal_id / "signing.pem"
    assert stat.S_IMODE(signing.stat().st_mode) == 0o600
    assert not list(cli_paths.store.rglob("signing.pem"))


def test_init_with_key_dir_inside_store_fails(wj, cli_paths: CliPaths) -> None:
    r = wj("init", cli_paths.store, "--key-dir", cli_paths.store / "keys")
    assert r.code == EXIT_ERROR
    assert "inside the store" in r.err
    assert "outside the store" in r.err  # the hint
    assert not (cli_paths.store / "journal.json").exists()
    assert not (cli_paths.store / "keys").exists()


def test_init_twice_fails(wj, cli_paths: CliPaths, initialized: Path) -> None:
    identity = (cli_paths.store / "journal.json").read_bytes()
    r = wj("init", cli_paths.store, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_ERROR
    assert "already holds a journal" in r.err
    assert (cli_paths.store / "journal.json").read_bytes() == identity
    assert len(list(cli_paths.keys.iterdir())) == 1  # no second key pair


def test_key_dir_env_is_honoured(wj, cli_paths: CliPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORMJOURNAL_KEY_DIR", str(cli_paths.keys))
    # Read when the parser is built, not when the module was imported.
    assert default_key_dir() == cli_paths.keys
    assert build_parser().parse_args(["seal", str(cli_paths.store)]).key_dir == cli_paths.keys
    r = wj("init", cli_paths.store)
    assert r.code == EXIT_OK, r.err
    pub = public_key_path(r.out)
    assert pub.is_file()
    assert cli_paths.keys in pub.parents
    # append and seal find the signing key through the environment too.
    src = write_jsonl(cli_paths.work / "events.jsonl", [event(0)])
    assert wj("append", cli_paths.store, src).code == EXIT_OK
    assert wj("seal", cli_paths.store).code == EXIT_OK
    assert wj("verify", cli_paths.store, "--public-key", pub).code == EXIT_OK
    # An explicit --key-dir wins over the environment.
    other = cli_paths.work / "elsewhere"
    assert build_parser().parse_args(["seal", str(cli_paths.store), "--key-dir", str(other)]).key_dir == other


def test_key_dir_default_without_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WORMJOURNAL_KEY_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert default_key_dir() == tmp_path / "config" / "wormjournal" / "keys"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_key_dir() == tmp_path / "home" / ".config" / "wormjournal" / "keys"
    assert build_parser().parse_args(["init", "x"]).key_dir == default_key_dir()


def test_append_to_missing_journal_fails(wj, cli_paths: CliPaths) -> None:
    src = write_jsonl(cli_paths.work / "events.jsonl", [event(0)])
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_ERROR
    assert "no journal" in r.err


def test_append_with_wrong_key_dir_fails(wj, cli_paths: CliPaths, initialized: Path) -> None:
    src = write_jsonl(cli_paths.work / "events.jsonl", [event(0)])
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.work / "nokeys")
    assert r.code == EXIT_ERROR
    assert "no signing key" in r.err


# -- append ----------------------------------------------------------------------------


def test_append_from_file(wj, cli_paths: CliPaths, initialized: Path) -> None:
    src = write_jsonl(cli_paths.work / "events.jsonl", [event(i) for i in range(3)], extra_lines=["", "   "])
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_OK, r.err
    assert "appended 3 events to stream main: seq 0..2" in r.out
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
    assert "seq 3..5" in r.out


def test_append_from_stdin(wj, cli_paths: CliPaths, initialized: Path) -> None:
    text = "".join(json.dumps(event(i)) + "\n" for i in range(4))
    r = wj("append", cli_paths.store, "-", "--key-dir", cli_paths.keys, stdin=text)
    assert r.code == EXIT_OK, r.err
    assert "appended 4 events to stream main: seq 0..3" in r.out
    # The input argument defaults to stdin.
    r = wj("append", cli_paths.store, "--key-dir", cli_paths.keys, stdin=json.dumps(event(9)) + "\n")
    assert r.code == EXIT_OK, r.err
    assert "seq 4..4" in r.out


def test_append_empty_input_writes_nothing(wj, cli_paths: CliPaths, initialized: Path) -> None:
    before = wal_bytes(cli_paths.store)
    r = wj("append", cli_paths.store, "-", "--key-dir", cli_paths.keys, stdin="\n\n")
    assert r.code == EXIT_OK
    assert "nothing written" in r.err
    assert wal_bytes(cli_paths.store) == before


BAD_LINES = {
    "not_json": ("{not json", "'(line)'", "not JSON"),
    "not_object": ("[1, 2]", "'(line)'", "JSON object"),
    "unknown_field": (json.dumps(dict(event(1), colour="red")), "'colour'", "unknown field"),
    "bad_id_separator": (json.dumps(event(1, execution_id="run/1")), "'execution_id'", "separator"),
    "bad_id_empty": (json.dumps(event(1, execution_id="")), "'execution_id'", ""),
    "bad_id_control": (json.dumps(event(1, thread_id="a\u0007b")), "'thread_id'", ""),
    "unknown_event_type": (json.dumps(dict(event(1), event_type="tool_exploded")), "'event_type'", "unknown type"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
@pytest.mark.parametrize("via_stdin", [False, True], ids=["file", "stdin"])
def test_append_bad_line_writes_nothing(wj, cli_paths: CliPaths, initialized: Path, case: str, via_stdin: bool) -> None:
    bad, field, words = BAD_LINES[case]
    # Two good lines, a blank one (still counted), then the bad line: line 4.
    text = json.dumps(event(0)) + "\n" + json.dumps(event(1)) + "\n\n" + bad + "\n" + json.dumps(event(2)) + "\n"
    before = wal_bytes(cli_paths.store)
    assert before > 0  # the WAL file with its header exists since init
    if via_stdin:
        r = wj("append", cli_paths.store, "-", "--key-dir", cli_paths.keys, stdin=text)
    else:
        src = cli_paths.work / "bad.jsonl"
        src.write_text(text, encoding="utf-8")
        r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_ERROR
    assert "line 4" in r.err, r.err
    assert f"field {field}" in r.err, r.err
    assert words in r.err
    assert "Traceback" not in r.err
    assert r.out == ""
    # Nothing was written: the WAL is unchanged and the next append starts at seq 0.
    assert wal_bytes(cli_paths.store) == before
    r = wj("append", cli_paths.store, "-", "--key-dir", cli_paths.keys, stdin=json.dumps(event(5)) + "\n")
    assert r.code == EXIT_OK, r.err
    assert "seq 0..0" in r.out


def test_append_non_utf8_input_is_an_input_error(wj, cli_paths: CliPaths, initialized: Path) -> None:
    src = cli_paths.work / "binary.jsonl"
    src.write_bytes(json.dumps(event(0)).encode() + b"\n\xff\xfe{}\n")
    before = wal_bytes(cli_paths.store)
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_ERROR
    assert "cannot read" in r.err
    assert wal_bytes(cli_paths.store) == before


def test_append_missing_input_file(wj, cli_paths: CliPaths, initialized: Path) -> None:
    r = wj("append", cli_paths.store, cli_paths.work / "missing.jsonl", "--key-dir", cli_paths.keys)
    assert r.code == EXIT_ERROR
    assert "cannot read" in r.err and "missing.jsonl" in r.err


def test_append_while_another_writer_holds_the_stream(wj, cli_paths: CliPaths, initialized: Path) -> None:
    src = write_jsonl(cli_paths.work / "events.jsonl", [event(0)])
    with Journal.open(cli_paths.store, key_dir=cli_paths.keys) as j:
        j.append("tool_called", "run-held", {"x": 1})
        before = wal_bytes(cli_paths.store)
        r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
        assert r.code == EXIT_ERROR
        assert "already has a writer" in r.err
        assert f"pid {os.getpid()}" in r.err
        assert "one writer per stream" in r.err  # the hint
        assert wal_bytes(cli_paths.store) == before
        # seal is a writer too
        assert wj("seal", cli_paths.store, "--key-dir", cli_paths.keys).code == EXIT_ERROR
        # Another stream is free.
        r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys, "--stream", "other")
        assert r.code == EXIT_OK, r.err
    # Once the writer is gone, the CLI continues its chain.
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_OK, r.err
    assert "seq 1..1" in r.out


# -- seal ----------------------------------------------------------------------------------


def test_seal_prints_segments(wj, cli_paths: CliPaths, initialized: Path) -> None:
    r = wj("seal", cli_paths.store, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_OK
    assert "nothing to seal" in r.out
    # Two UTC dates: one segment each.
    events = [event(i) for i in range(3)] + [dict(event(i), ts=f"2025-03-15T10:00:0{i}.000000Z") for i in range(2)]
    src = write_jsonl(cli_paths.work / "events.jsonl", events)
    assert wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys).code == EXIT_OK
    r = wj("seal", cli_paths.store, "--key-dir", cli_paths.keys)
    assert r.code == EXIT_OK, r.err
    lines = [line for line in r.out.splitlines() if line.startswith("sealed segment")]
    assert len(lines) == 2, r.out
    assert lines[0].startswith("sealed segment 0: seq 0..2 (3 events) -> segments/stream=main/date=2025-03-14/")
    assert lines[1].startswith("sealed segment 1: seq 3..4 (2 events) -> segments/stream=main/date=2025-03-15/")
    for line in lines:
        assert (cli_paths.store / line.split(" -> ")[1]).is_file()
    assert len(segment_files(cli_paths.store)) == 2
    r = wj("seal", cli_paths.store, "--key-dir", cli_paths.keys)
    assert "nothing to seal" in r.out


# -- verify -----------------------------------------------------------------------------------


def test_verify_intact_with_public_key(wj, cli_paths: CliPaths, sealed: Path) -> None:
    r = wj("verify", cli_paths.store, "--public-key", sealed)
    assert r.code == EXIT_OK, r.out
    assert "result       OK" in r.out
    assert "taken from the store" not in r.out
    assert "5 events, 1 segments" in r.out


def test_verify_intact_without_public_key_says_keys_from_store(wj, cli_paths: CliPaths, sealed: Path) -> None:
    r = wj("verify", cli_paths.store)
    assert r.code == EXIT_OK, r.out
    assert "taken from the store itself" in r.out
    assert "--public-key" in r.out
    assert "result       OK" in r.out


def test_verify_json(wj, cli_paths: CliPaths, sealed: Path) -> None:
    r = wj("verify", cli_paths.store, "--public-key", sealed, "--json")
    assert r.code == EXIT_OK
    report = json.loads(r.out)
    assert report["ok"] is True
    assert report["events"] == 5
    assert report["segments"] == 1
    assert report["keys_from_store"] is False
    assert report["keys"] == [sealed.name.removesuffix(".pub.pem")]
    assert report["findings"] == []
    assert [s["stream"] for s in report["streams"]] == ["main"]
    assert report["streams"][0]["last_seq"] == 4
    r = wj("verify", cli_paths.store, "--json")
    assert r.code == EXIT_OK
    assert json.loads(r.out)["keys_from_store"] is True


def test_verify_detects_tampered_segment(wj, cli_paths: CliPaths, sealed: Path) -> None:
    [segment] = segment_files(cli_paths.store)
    segment.chmod(segment.stat().st_mode | stat.S_IWUSR)
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x01
    segment.write_bytes(bytes(data))
    r = wj("verify", cli_paths.store, "--public-key", sealed)
    assert r.code == EXIT_FINDINGS, r.out
    assert "FAILED" in r.out
    assert "[object_sha256] stream main, segment 0" in r.out
    r = wj("verify", cli_paths.store, "--public-key", sealed, "--json")
    assert r.code == EXIT_FINDINGS
    report = json.loads(r.out)
    assert report["ok"] is False
    assert any(
        f["kind"] == "object_sha256" and f["segment"] == 0 and f["stream"] == "main"
        and f["object"] == segment.relative_to(cli_paths.store).as_posix()
        for f in report["findings"]
    ), report["findings"]


def test_verify_with_another_public_key_fails(wj, cli_paths: CliPaths, sealed: Path) -> None:
    stranger = cli_paths.work / "stranger.pub.pem"
    stranger.write_bytes(SigningKey.generate("x").verify_key.pem())
    r = wj("verify", cli_paths.store, "--public-key", stranger)
    assert r.code == EXIT_FINDINGS
    assert "manifest_signature" in r.out
    assert "checkpoint_signature" in r.out
    # The right key among several trusted ones verifies.
    r = wj("verify", cli_paths.store, "--public-key", stranger, "--public-key", sealed)
    assert r.code == EXIT_OK, r.out


def test_verify_with_unreadable_public_key_is_an_error(wj, cli_paths: CliPaths, sealed: Path) -> None:
    r = wj("verify", cli_paths.store, "--public-key", cli_paths.work / "missing.pem")
    assert r.code == EXIT_ERROR
    assert "cannot read public key" in r.err
    garbage = cli_paths.work / "garbage.pem"
    garbage.write_text("not a key\n")
    r = wj("verify", cli_paths.store, "--public-key", garbage)
    assert r.code == EXIT_ERROR
    assert "not a PEM public key" in r.err


def test_verify_missing_directory(wj, cli_paths: CliPaths) -> None:
    r = wj("verify", cli_paths.work / "nowhere")
    assert r.code == EXIT_ERROR
    assert "no journal" in r.err
    r = wj("info", cli_paths.work / "nowhere")
    assert r.code == EXIT_ERROR


def test_verify_nothing_sealed_fails_closed(wj, cli_paths: CliPaths, initialized: Path) -> None:
    r = wj("verify", cli_paths.store, "--public-key", initialized)
    assert r.code == EXIT_FINDINGS
    assert "nothing_to_verify" in r.out
    # Appended but unsealed events are not in the archive yet: still nothing to prove.
    src = write_jsonl(cli_paths.work / "events.jsonl", [event(0)])
    assert wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys).code == EXIT_OK
    r = wj("verify", cli_paths.store, "--json")
    assert r.code == EXIT_FINDINGS
    report = json.loads(r.out)
    assert report["ok"] is False and report["events"] == 0


# -- info -----------------------------------------------------------------------------------------


def test_info_text_and_json(wj, cli_paths: CliPaths, sealed: Path) -> None:
    r = wj("info", cli_paths.store, "--json")
    assert r.code == EXIT_OK
    info = json.loads(r.out)
    journal_id = json.loads((cli_paths.store / "journal.json").read_text())["journal_id"]
    assert info["journal_id"] == journal_id
    [main_stream] = info["streams"]
    assert main_stream["stream"] == "main"
    assert (main_stream["events"], main_stream["segments"], main_stream["last_seq"]) == (5, 1, 4)
    assert re.fullmatch(r"[0-9a-f]{64}", main_stream["head_hash"])
    assert main_stream["checkpoint"]["tree_size"] == 1
    assert info["bytes"] > 0
    # The head is the one the verifier computes.
    report = json.loads(wj("verify", cli_paths.store, "--json").out)
    assert report["streams"][0]["head_hash"] == main_stream["head_hash"]

    r = wj("info", cli_paths.store)
    assert r.code == EXIT_OK
    assert f"journal {journal_id}" in r.out
    row = next(line for line in r.out.splitlines() if " main " in line)
    cells = [c.strip() for c in re.split(r"[│|]", row) if c.strip()]
    assert cells[:5] == ["main", "1", "5", "4", main_stream["head_hash"][:16]]
    assert "size 1" in cells[5]


def test_second_stream(wj, cli_paths: CliPaths, sealed: Path) -> None:
    src = write_jsonl(cli_paths.work / "other.jsonl", [event(i, execution_id="run-2") for i in range(3)])
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys, "--stream", "other")
    assert r.code == EXIT_OK, r.err
    assert "to stream other: seq 0..2" in r.out
    r = wj("seal", cli_paths.store, "--key-dir", cli_paths.keys, "--stream", "other")
    assert r.code == EXIT_OK
    assert "segments/stream=other/" in r.out

    r = wj("verify", cli_paths.store, "--public-key", sealed, "--json")
    assert r.code == EXIT_OK, r.out
    report = json.loads(r.out)
    assert report["events"] == 8 and report["segments"] == 2
    assert {s["stream"]: s["events"] for s in report["streams"]} == {"main": 5, "other": 3}
    r = wj("verify", cli_paths.store, "--public-key", sealed)
    assert "stream main" in r.out and "stream other" in r.out

    info = json.loads(wj("info", cli_paths.store, "--json").out)
    assert {s["stream"]: (s["events"], s["segments"], s["last_seq"]) for s in info["streams"]} == {
        "main": (5, 1, 4),
        "other": (3, 1, 2),
    }
    text = wj("info", cli_paths.store).out
    for s in info["streams"]:
        assert s["head_hash"][:16] in text
        assert any(line.split("│")[1:2] and line.split("│")[1].strip() == s["stream"] for line in text.splitlines())


def test_invalid_stream_name(wj, cli_paths: CliPaths, initialized: Path) -> None:
    src = write_jsonl(cli_paths.work / "events.jsonl", [event(0)])
    r = wj("append", cli_paths.store, src, "--key-dir", cli_paths.keys, "--stream", "../escape")
    assert r.code == EXIT_ERROR
    assert "stream" in r.err


def test_usage_errors_exit_2(wj) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


# -- as a real process ---------------------------------------------------------------------------


def run_process(*args: object, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("WORMJOURNAL_KEY_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "wormjournal", *map(str, args)],
        input=stdin, capture_output=True, text=True, cwd=cwd, env=env, timeout=120,
    )


def test_end_to_end_subprocess(cli_paths: CliPaths) -> None:
    r = run_process("init", cli_paths.store, "--key-dir", cli_paths.keys)
    assert r.returncode == 0, r.stderr
    pub = public_key_path(r.stdout)
    assert pub.is_file()

    good = "".join(json.dumps(event(i)) + "\n" for i in range(6))
    r = run_process("append", cli_paths.store, "-", "--key-dir", cli_paths.keys, stdin=good)
    assert r.returncode == 0, r.stderr
    assert "seq 0..5" in r.stdout

    before = wal_bytes(cli_paths.store)
    r = run_process("append", cli_paths.store, "-", "--key-dir", cli_paths.keys,
                    stdin=good + '{"event_type": "nope", "execution_id": "x"}\n')
    assert r.returncode == 2
    assert "line 7" in r.stderr and "'event_type'" in r.stderr
    assert "Traceback" not in r.stderr
    assert wal_bytes(cli_paths.store) == before

    r = run_process("seal", cli_paths.store, "--key-dir", cli_paths.keys)
    assert r.returncode == 0, r.stderr
    assert "sealed segment 0: seq 0..5 (6 events)" in r.stdout

    r = run_process("verify", cli_paths.store, "--public-key", pub)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_process("verify", cli_paths.store, "--json")
    assert r.returncode == 0
    report = json.loads(r.stdout)
    assert report["ok"] is True and report["events"] == 6 and report["keys_from_store"] is True

    r = run_process("info", cli_paths.store, "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["streams"][0]["events"] == 6

    [segment] = segment_files(cli_paths.store)
    segment.chmod(segment.stat().st_mode | stat.S_IWUSR)
    data = bytearray(segment.read_bytes())
    data[100] ^= 0xFF
    segment.write_bytes(bytes(data))
    r = run_process("verify", cli_paths.store, "--public-key", pub)
    assert r.returncode == 1
    assert "segment 0" in r.stdout

    r = run_process("verify", cli_paths.work / "nowhere")
    assert r.returncode == 2
    assert "no journal" in r.stderr


def test_console_script_installed() -> None:
    script = Path(sys.executable).parent / "wormjournal"
    if not script.exists():
        pytest.skip("the wormjournal console script is not installed next to this interpreter")
    r = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0
    for command in ("init", "append", "seal", "verify", "info"):
        assert command in r.stdout
