"""README.md is executed: its Python examples, its command-line section, and its first lines."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from wormjournal.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def readme() -> str:
    return README.read_text(encoding="utf-8")


def blocks(lang: str, text: str | None = None) -> list[str]:
    return [body for kind, body in FENCE.findall(readme() if text is None else text) if kind == lang]


def section(title: str) -> str:
    """The README's text from the heading ``## title`` to the next ``## `` heading."""
    text = readme()
    m = re.search(rf"^## {re.escape(title)}[ \t]*\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"README has no section {title!r}"
    return m.group(1)


def cli_lines() -> list[str]:
    """The ``wormjournal ...`` command lines of the command-line section, comments stripped."""
    [block] = blocks("sh", section("Using it from the command line"))
    lines = []
    for raw in block.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


PYTHON_BLOCKS = blocks("python")


def test_readme_has_python_examples() -> None:
    assert PYTHON_BLOCKS, "README.md has no ```python block"


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_block_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code = compile(PYTHON_BLOCKS[index], f"README.md[python block {index}]", "exec")
    namespace: dict[str, object] = {"__name__": "__readme__"}
    exec(code, namespace)  # noqa: S102 - executing our own documentation is the point
    out = capsys.readouterr().out
    if index == 0:
        # The first example creates a journal and prints an OK report.
        assert (tmp_path / "journal" / "journal.json").is_file()
        assert (tmp_path / "keys").is_dir()
        assert "result       OK" in out


def test_readme_starts_with_demo_and_test_commands() -> None:
    text = readme()
    lines = text.splitlines()
    assert lines[0].startswith("# wormjournal")
    first = FENCE.search(text)
    assert first is not None and first.group(1) == "sh"
    # Nothing but the title comes before the first block.
    assert text[: first.start()].strip() == lines[0].strip()
    commands = [line.split("#", 1)[0].strip() for line in first.group(2).splitlines() if line.strip()]
    assert commands == ["scripts/demo", "scripts/test"]
    for script in commands:
        path = ROOT / script
        assert path.is_file(), script
        assert os.access(path, os.X_OK), f"{script} is not executable"


def test_readme_cli_lines_parse() -> None:
    """Every command of the command-line section is accepted by the real parser."""
    lines = cli_lines()
    assert [shlex.split(line)[1] for line in lines] == [
        "init", "append", "seal", "verify", "info", "executions", "replay", "tail", "state", "state", "show", "reindex",
        "shred", "keys", "checkpoint", "verify", "prove", "check-proof", "rotate-key", "retention", "retention",
        "query", "stats",
    ]
    for line in lines:
        argv = shlex.split(line.replace("[--json]", "--json").replace("<journal id>/<key id>", "j/k"))
        argv = argv[: argv.index(">")] if ">" in argv else argv
        assert argv[0] == "wormjournal"
        build_parser().parse_args(argv[1:])


def test_readme_retention_lines_parse() -> None:
    """Every command of the retention section (S3 only, so not run here) is accepted by the real parser."""
    [block] = blocks("sh", section("Retention: policies, legal holds, the lock audit, expiry"))
    lines = [line.split("#", 1)[0].strip() for line in block.replace("\\\n", " ").splitlines()]
    verbs = []
    for line in filter(None, lines):
        argv = shlex.split(line.replace("[--json]", "--json"))
        assert argv[:2] == ["wormjournal", "retention"]
        verbs.append(argv[2])
        build_parser().parse_args(argv[1:])
    assert verbs == ["show", "set", "hold", "release", "extend", "extend", "audit", "expired"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("WORMJOURNAL_KEY_DIR", None)
    return env


def test_readme_cli_section_runs_on_demo_history(tmp_path: Path) -> None:
    """The command-line section, run as written on a generated history (like scripts/demo)."""
    events = tmp_path / "events.jsonl"
    with events.open("w", encoding="utf-8") as f:
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "demo_history.py"), "--executions", "12"],
            stdout=f, check=True, timeout=120,
        )
    lines = events.read_text(encoding="utf-8").splitlines()
    n_events = len(lines)
    assert n_events > 100
    executions = {json.loads(line)["execution_id"] for line in lines}
    assert len(executions) == 12

    keys = tmp_path / "keys"
    pub: str | None = None
    outputs: dict[str, list[subprocess.CompletedProcess[str]]] = {}
    for line in cli_lines():
        line = line.replace("~/keys", shlex.quote(str(keys)))
        variants = [line.replace(" [--json]", ""), line.replace("[--json]", "--json")] if "[--json]" in line else [line]
        for variant in variants:
            if "<journal id>/<key id>.pub.pem" in variant:
                assert pub is not None, "init did not print the public key"
                variant = variant.replace(f"{shlex.quote(str(keys))}/<journal id>/<key id>.pub.pem", shlex.quote(pub))
            argv = shlex.split(variant)
            assert argv[0] == "wormjournal"
            redirect = None
            if ">" in argv:  # `... > FILE`: the README keeps the output in a file
                argv, redirect = argv[: argv.index(">")], argv[argv.index(">") + 1]
            r = subprocess.run(
                [sys.executable, "-m", "wormjournal", *argv[1:]],
                cwd=tmp_path, capture_output=True, text=True, env=_env(), timeout=300,
            )
            assert r.returncode == 0, f"{variant}\n{r.stdout}\n{r.stderr}"
            if redirect is not None:
                (tmp_path / redirect).write_text(r.stdout)
            outputs.setdefault(argv[1], []).append(r)
            if argv[1] == "init":
                m = re.search(r"^public key\s+(\S+\.pub\.pem) ", r.stdout, re.M)
                assert m, r.stdout
                pub = m.group(1)

    assert f"appended {n_events} events to stream main: seq 0..{n_events - 1}" in outputs["append"][0].stdout
    sealed = [line for line in outputs["seal"][0].stdout.splitlines() if line.startswith("sealed segment")]
    assert len(sealed) >= 2  # the history spans several UTC days: one segment per date
    assert sum(int(re.search(r"\((\d+) events\)", s).group(1)) for s in sealed) == n_events

    verify_text, verify_json, verify_since = outputs["verify"]
    assert "extended to" in verify_since.stdout and "proof OK" in outputs["check-proof"][0].stdout
    assert "result       OK" in verify_text.stdout
    assert "taken from the store" not in verify_text.stdout  # an independent check with the exported key
    report = json.loads(verify_json.stdout)
    assert report["ok"] is True
    assert report["events"] == n_events
    assert report["segments"] == len(sealed)

    info_text, info_json = outputs["info"]
    info = json.loads(info_json.stdout)
    [stream] = info["streams"]
    assert stream["stream"] == "main"
    assert stream["events"] == n_events
    assert stream["segments"] == len(sealed)
    assert stream["last_seq"] == n_events - 1
    assert stream["checkpoint"]["tree_size"] == len(sealed)
    assert stream["head_hash"] == report["streams"][0]["head_hash"]
    assert info["journal_id"] in info_text.stdout

    # The read commands, on the same history.
    acme = [json.loads(x) for x in outputs["executions"][1].stdout.splitlines()]
    assert acme and {x["tenant_id"] for x in acme} == {"acme-bank"}
    assert [x["started"] for x in acme] == sorted((x["started"] for x in acme), reverse=True)
    run3 = [json.loads(line) for line in lines if json.loads(line)["execution_id"] == "run-0003"]
    replay_text, replay_json = outputs["replay"]
    assert [json.loads(x)["event_id"] for x in replay_json.stdout.splitlines()] == [e["event_id"] for e in run3]
    assert f"{len(run3)} events of execution run-0003" in replay_text.stdout
    state_upto, resume = outputs["state"]
    assert isinstance(json.loads(state_upto.stdout), dict)
    assert json.loads(resume.stdout)["status"] in ("completed", "failed")
    show_text, show_json = outputs["show"]
    assert json.loads(show_json.stdout)["event_id"] == "run-0003-e002"
    assert "run-0003-e002" in show_text.stdout
    assert "0 index objects written" in outputs["reindex"][0].stdout  # the seals indexed every segment
    shred = outputs["shred"][0].stdout
    assert re.search(r"shredded subject psn:[0-9a-f]{32}: 1 data key\(s\) destroyed, [1-9]\d* event\(s\)", shred), shred
    assert "customer-3@example.com" not in shred + outputs["keys"][0].stdout  # only the pseudonym is shown
    assert re.search(r"subject  psn:\S+\s+shredded", outputs["keys"][0].stdout), outputs["keys"][0].stdout

    # The same pipeline through stdin ('-'), as `demo_history.py | wormjournal append STORE -`.
    store2, keys2 = tmp_path / "journal2", tmp_path / "keys2"
    gen = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo_history.py"), "--executions", "12"], stdout=subprocess.PIPE,
    )
    try:
        assert subprocess.run([sys.executable, "-m", "wormjournal", "init", str(store2), "--key-dir", str(keys2)],
                              capture_output=True, env=_env(), timeout=120).returncode == 0
        r = subprocess.run([sys.executable, "-m", "wormjournal", "append", str(store2), "-", "--key-dir", str(keys2)],
                           stdin=gen.stdout, capture_output=True, text=True, env=_env(), timeout=300)
    finally:
        assert gen.stdout is not None
        gen.stdout.close()
        assert gen.wait(timeout=120) == 0
    assert r.returncode == 0, r.stderr
    assert f"appended {n_events} events" in r.stdout
    assert subprocess.run([sys.executable, "-m", "wormjournal", "seal", str(store2), "--key-dir", str(keys2)],
                          capture_output=True, env=_env(), timeout=300).returncode == 0
    r = subprocess.run([sys.executable, "-m", "wormjournal", "verify", str(store2), "--json"],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stdout
    assert json.loads(r.stdout)["events"] == n_events
