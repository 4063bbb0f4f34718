"""`wormjournal tail`: the newest events (filtered), the events after a seq or a subscription's cursor, and with
--follow each new one as it arrives, until Ctrl-C (exit 0, no traceback)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from wormjournal import Journal, JournalConfig, Subscription
from wormjournal.cli import EXIT_OK, main

from conftest import StorePaths

QUIET = JournalConfig(seal_max_age_seconds=None, seal_worker=False)


def filled(paths: StorePaths) -> Journal:
    j = Journal.create(paths.store, key_dir=paths.keys, config=QUIET)
    for i in range(30):
        j.append("tool_returned" if i % 5 == 4 else "tool_called", f"x{i % 3}", {"i": i}, node="act")
        if i == 24:
            j.seal()
    return j


def tail(capsys: pytest.CaptureFixture[str], paths: StorePaths, *args: object) -> tuple[int, list[str], str]:
    capsys.readouterr()
    code = main(["tail", str(paths.store), "--key-dir", str(paths.keys), *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def seqs_of(rows: list[str]) -> list[int]:
    return [int(r.split()[0]) for r in rows[1:]]


def test_tail_prints_the_newest_events_as_replay_does(tmp_store: StorePaths,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with filled(tmp_store):
        code, rows, _ = tail(capsys, tmp_store)
        assert code == EXIT_OK
        assert rows[0].split() == ["seq", "time", "since", "prev", "event", "node/step", "took", "payload"]
        assert seqs_of(rows) == list(range(20, 30))
        assert "unsealed" in rows[-1] and "unsealed" not in rows[1] and '{"i": 29}' in rows[-1]
        _, rows, _ = tail(capsys, tmp_store, "-n", 3, "--type", "tool_returned")
        assert seqs_of(rows) == [19, 24, 29]
        _, rows, _ = tail(capsys, tmp_store, "-n", 100, "--type", "tool_returned", "--execution", "x0")
        assert seqs_of(rows) == [9, 24]
        _, rows, _ = tail(capsys, tmp_store, "--after-seq", 26, "--json")
        assert [json.loads(r)["seq"] for r in rows] == [27, 28, 29]
        assert json.loads(rows[0])["payload"] == {"i": 27}


def test_tail_since_a_subscriptions_cursor(tmp_store: StorePaths, capsys: pytest.CaptureFixture[str]) -> None:
    with filled(tmp_store) as j:
        with Subscription("billing", j.reader(), lambda e: None, commit_every=1) as sub:
            sub.run(timeout=0)
        for i in range(30, 33):
            j.append("tool_called", "x1", {"i": i})
        code, rows, err = tail(capsys, tmp_store, "--since-cursor", "billing")
        assert code == EXIT_OK and seqs_of(rows) == [30, 31, 32]
        assert "billing: stream main handled up to seq 29, 3 event(s) behind seq 32" in err
        code, rows, err = tail(capsys, tmp_store, "--since-cursor", "nobody")
        assert code != EXIT_OK and "no cursor of subscription 'nobody'" in err


def test_tail_follow_prints_each_event_as_it_comes_and_ends_cleanly_on_ctrl_c(tmp_store: StorePaths) -> None:
    with filled(tmp_store) as j:
        proc = subprocess.Popen([sys.executable, "-m", "wormjournal", "tail", str(tmp_store.store), "--follow",
                                 "--key-dir", str(tmp_store.keys), "-n", "2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "COLUMNS": "200"})
        assert proc.stdout is not None and proc.stderr is not None
        lines: queue.Queue[str] = queue.Queue()  # a thread reads them: select() does not see what readline buffered
        threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in proc.stdout], daemon=True).start()

        def lines_until(seq: int) -> list[str]:
            got: list[str] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (got and got[-1].startswith(f"{seq} ")):
                with contextlib.suppress(queue.Empty):
                    got.append(lines.get(timeout=1))
            return got

        try:
            first = lines_until(29)
            if seqs_of(first) != [28, 29]:
                proc.kill()
                pytest.fail(f"{first!r} {proc.communicate()!r}")
            j.append("human_rejected", "x1", {"why": "no"})
            j.seal()
            j.append("tool_called", "x1", {"i": 31})
            later = lines_until(31)
            assert [int(r.split()[0]) for r in later] == [30, 31] and "human_rejected" in later[0]
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_OK, err
    assert "Traceback" not in err


def test_tail_refuses_a_negative_count(tmp_store: StorePaths, capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    with filled(tmp_store):
        code, _, err = tail(capsys, tmp_store, "-n", -1)
        assert code != EXIT_OK and "--lines" in err
