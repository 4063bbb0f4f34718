"""One writer per stream (DESIGN.md invariant 2): a second writer is refused, in this process or
in another, with LockedError and without writing a byte; the stream is free again once the
writer closes or dies (kill -9); different streams have writers of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wormjournal.errors import ConfigError, LockedError
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal import wal as walmod

ROOT = Path(__file__).resolve().parents[1]
QUIET = JournalConfig(seal_max_age_seconds=None)

# Exit codes of OPENER: what a writer in another process got.
OPENED, LOCKED, OTHER = 0, 3, 4

OPENER = textwrap.dedent(
    """
    import os, sys
    from wormjournal.errors import LockedError

    def leave(code):  # os._exit: no native teardown that could abort (see wormjournal.cli.run)
        sys.stdout.flush()
        os._exit(code)

    from wormjournal.journal import Journal, JournalConfig
    store, keys, stream = sys.argv[1:4]
    try:
        j = Journal.open(store, key_dir=keys, stream=stream, config=JournalConfig(seal_max_age_seconds=None))
    except LockedError as e:
        print(e)
        leave(3)
    except BaseException as e:
        print(repr(e))
        leave(4)
    print(j.next_seq)
    j.close()
    leave(0)
    """
)

HOLDER = textwrap.dedent(
    """
    import sys, time
    from wormjournal.journal import Journal, JournalConfig
    store, keys, stream, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    j = Journal.open(store, key_dir=keys, stream=stream, config=JournalConfig(seal_max_age_seconds=None))
    for i in range(n):
        j.append("tool_called", "exec-held", {"i": i})
    print("HOLDING", j.next_seq, flush=True)
    time.sleep(600)
    """
)


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def open_elsewhere(store: Path, keys: Path, stream: str = "main") -> tuple[int, str]:
    """Try Journal.open in another process; returns (exit code, what it printed)."""
    proc = subprocess.run(
        [sys.executable, "-c", OPENER, str(store), str(keys), stream],
        capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=60,
    )
    return proc.returncode, proc.stdout.strip() + proc.stderr.strip()


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (WAL, lock file and objects), byte for byte."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def wal_dir(store: Path, stream: str = "main") -> Path:
    return store / ".wal" / f"stream={stream}"


@pytest.fixture
def journal_paths(tmp_path: Path) -> tuple[Path, Path]:
    store, keys = tmp_path / "store", tmp_path / "keys"
    Journal.create(store, key_dir=keys, config=QUIET).close()
    return store, keys


def test_second_writer_in_same_process_is_refused_and_writes_nothing(journal_paths: tuple[Path, Path]) -> None:
    store, keys = journal_paths
    with Journal.open(store, key_dir=keys, config=QUIET) as first:
        for i in range(3):
            first.append("tool_called", "exec-1", {"i": i})
        before = files(store)
        assert any(name.endswith(".wal") for name in before)
        for _ in range(2):  # a refused open must not release the first writer's lock either
            with pytest.raises(LockedError) as info:
                Journal.open(store, key_dir=keys, config=QUIET)
            message = str(info.value)
            assert "'main'" in message and f"pid {os.getpid()}" in message
            assert info.value.hint
        assert files(store) == before, "the refused writer changed the store or the WAL"
        # The first writer is unaffected and still holds the stream.
        assert first.append("tool_called", "exec-1", {"i": 3}) == 3
        assert open_elsewhere(store, keys)[0] == LOCKED
    with Journal.open(store, key_dir=keys, config=QUIET) as second:
        assert second.next_seq == 4
        assert second.append("tool_called", "exec-1", {"i": 4}) == 4
        second.seal()
        assert second.verify().ok


def test_explicit_wal_dir_is_locked_too(tmp_path: Path) -> None:
    """Two writers given the same wal_dir are refused like the default one."""
    store, keys, wd = tmp_path / "store", tmp_path / "keys", tmp_path / "wal"
    with Journal.create(store, key_dir=keys, wal_dir=wd, config=QUIET) as first:
        first.append("tool_called", "exec-1", None)
        before = files(wd)
        with pytest.raises(LockedError):
            Journal.open(store, key_dir=keys, wal_dir=wd, config=QUIET)
        assert files(wd) == before


def test_writer_with_another_wal_dir_is_refused(journal_paths: tuple[Path, Path], tmp_path: Path) -> None:
    store, keys = journal_paths
    with Journal.open(store, key_dir=keys, config=QUIET) as first:
        first.append("tool_called", "exec-1", None)
        try:
            other = Journal.open(store, key_dir=keys, wal_dir=tmp_path / "elsewhere", config=QUIET)
        except LockedError:
            return
        other.close()
        raise AssertionError("a second writer of stream 'main' was let in through another wal_dir")


def test_writer_in_another_process_is_refused_and_writes_nothing(journal_paths: tuple[Path, Path]) -> None:
    store, keys = journal_paths
    with Journal.open(store, key_dir=keys, config=QUIET) as j:
        j.append_batch([{"event_type": "tool_called", "execution_id": "exec-1"} for _ in range(3)])
        before = files(store)
        code, said = open_elsewhere(store, keys)
        assert code == LOCKED, said
        assert f"pid {os.getpid()}" in said
        assert files(store) == before
    code, said = open_elsewhere(store, keys)
    assert (code, said) == (OPENED, "3")


def test_stream_is_free_after_its_writer_is_killed(journal_paths: tuple[Path, Path]) -> None:
    store, keys = journal_paths
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store), str(keys), "main", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
    )
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        assert line.split() == ["HOLDING", "5"], holder.stderr.read() if holder.stderr else line
        before = files(store)
        with pytest.raises(LockedError) as info:
            Journal.open(store, key_dir=keys, config=QUIET)
        assert f"pid {holder.pid}" in str(info.value)
        assert open_elsewhere(store, keys)[0] == LOCKED
        assert files(store) == before
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        for stream in (holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()
    assert holder.returncode == -signal.SIGKILL
    # The kernel dropped the dead writer's lock: the stream has a writer again, with every event.
    with Journal.open(store, key_dir=keys, config=QUIET) as j:
        assert j.next_seq == 5
        assert j.append("tool_called", "exec-after", None) == 5
        j.seal()
        assert j.verify().ok


def test_different_streams_have_their_own_writers(journal_paths: tuple[Path, Path]) -> None:
    store, keys = journal_paths
    with (
        Journal.open(store, key_dir=keys, stream="main", config=QUIET) as main,
        Journal.open(store, key_dir=keys, stream="other", config=QUIET) as other,
    ):
        for i in range(3):
            assert main.append("tool_called", "exec-m", {"i": i}) == i
            assert other.append("tool_called", "exec-o", {"i": i}) == i
        # Another process can take a third stream while both are held, but neither of these.
        assert open_elsewhere(store, keys, "third")[0] == OPENED
        assert open_elsewhere(store, keys, "other")[0] == LOCKED
        with pytest.raises(LockedError):
            Journal.open(store, key_dir=keys, stream="other", config=QUIET)
        main.seal()
        other.seal()
        report = main.verify()
        assert report.ok, report.findings
        assert sorted(s.stream for s in report.streams) == ["main", "other"]
    assert len(walmod.list_wal_files(wal_dir(store, "main"))) == 1
    assert len(walmod.list_wal_files(wal_dir(store, "other"))) == 1


def test_held_stream_in_another_process_leaves_other_streams_free(journal_paths: tuple[Path, Path]) -> None:
    store, keys = journal_paths
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store), str(keys), "main", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(), cwd=ROOT,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().split() == ["HOLDING", "2"]
        with Journal.open(store, key_dir=keys, stream="side", config=QUIET) as side:
            assert side.append("tool_called", "exec-side", None) == 0
        with pytest.raises(LockedError):
            Journal.open(store, key_dir=keys, stream="main", config=QUIET)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_wal_dir_of_another_journal_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "wal"
    Journal.create(tmp_path / "a", key_dir=tmp_path / "keys", wal_dir=shared, config=QUIET).close()
    with pytest.raises(ConfigError, match="belongs to journal"):
        Journal.create(tmp_path / "b", key_dir=tmp_path / "keys", wal_dir=shared, config=QUIET)
