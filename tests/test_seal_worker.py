"""The seal worker (wormjournal.journal.sealworker): automatic seals in a process of their own.

Appends never wait for it; it is started on the first seal and again when it is found dead; a kill -9 of it at
any step of its seal loses nothing and seals nothing twice; its errors reach the writer as ``last_seal_error``
without failing an append; an explicit seal and the worker's never seal the same WAL at once. The random
kills of writer, worker and both are in tests/test_crash.py (test_random_kills).
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from wormjournal.errors import IntegrityError, StorageError
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal import wal as walmod
from wormjournal.journal.sealworker import CRASH_ENV
from wormjournal.storage import layout, store_spec
from wormjournal.storage.local import LocalStore
from wormjournal.storage.s3 import S3Store

from conftest import BASE_TS, StorePaths

CONFIG = JournalConfig(seal_max_age_seconds=None, seal_max_events=20, segment_max_events=8, row_group_rows=4)


def events(n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"event_type": "tool_called", "execution_id": f"exec-{i % 3}", "event_id": f"ev-{i:05d}",
             "ts": BASE_TS + dt.timedelta(milliseconds=i), "payload": {"i": i}} for i in range(start, start + n)]


def sealed_rows(store: Path) -> list[tuple[int, str]]:
    rows = []
    for f in sorted((store / "segments").rglob("*.parquet")):
        t = pq.read_table(f, columns=["seq", "event_id"])
        rows += zip(t.column("seq").to_pylist(), t.column("event_id").to_pylist(), strict=True)
    return sorted(rows)


def assert_sealed_once(store: Path, n: int) -> None:
    rows = sealed_rows(store)
    assert [s for s, _ in rows] == list(range(n)), "every event sealed once, in seq order"
    assert [e for _, e in rows] == [f"ev-{i:05d}" for i in range(n)]
    names = collections.Counter(layout.parse_segment(i.name)[2] for i in LocalStore(store).list("segments/"))
    assert all(c == 1 for c in names.values()), f"a segment stored twice: {names}"


def wait_until(predicate: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_the_worker_seals_in_a_process_of_its_own(tmp_store: StorePaths) -> None:
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CONFIG) as j:
        for k in range(5):
            j.append_batch(events(20, 20 * k))
        assert j.wait_for_seals(60)
        assert j.last_seal_error is None
        worker = j._worker  # noqa: SLF001
        assert worker is not None and worker.pid not in (None, os.getpid()) and worker.starts == 1
        assert j.sealed_seq == 100
        assert j._sealer.state.next_seq == 0  # noqa: SLF001 - the writer itself sealed nothing
        assert len(walmod.list_wal_files(tmp_store.store / ".wal" / "stream=main")) == 1  # frozen files cut
        assert j.verify().ok
    assert_sealed_once(tmp_store.store, 100)


def test_a_killed_worker_is_started_again(tmp_store: StorePaths) -> None:
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CONFIG) as j:
        j.append_batch(events(20))
        assert j.wait_for_seals(60)
        worker = j._worker  # noqa: SLF001
        assert worker is not None
        first = worker.pid
        assert first is not None
        os.kill(first, 9)
        assert wait_until(lambda: worker.pid is None)
        j.append_batch(events(20, 20))  # the next seal starts a new worker
        assert j.wait_for_seals(60)
        assert worker.starts == 2 and worker.pid not in (None, first)
        assert j.last_seal_error is None and j.sealed_seq == 40
    assert_sealed_once(tmp_store.store, 40)


@pytest.mark.parametrize("step", ["seal.start", "seal.segment_stored", "seal.index_stored", "seal.manifest_stored",
                                  "seal.checkpoint_stored"])
def test_a_worker_killed_at_a_step_loses_nothing(tmp_store: StorePaths, monkeypatch: pytest.MonkeyPatch,
                                                  step: str) -> None:
    """kill -9 of the worker at each step of its seal (3 segments a seal): the writer goes on appending, learns
    of the failure, and the next worker finishes the seal exactly once."""
    monkeypatch.setenv(CRASH_ENV, f"{step}:2" if step not in ("seal.start", "seal.checkpoint_stored") else step)
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CONFIG) as j:
        j.append_batch(events(20))
        assert j.wait_for_seals(60)
        assert isinstance(j.last_seal_error, StorageError), "the worker died before it answered"
        assert "exited" in str(j.last_seal_error)
        assert j.sealed_seq == 0 or step in ("seal.manifest_stored", "seal.checkpoint_stored")
        monkeypatch.delenv(CRASH_ENV)  # the next worker lives
        j.append_batch(events(20, 20))  # acknowledged while the seal is unfinished; a seal is due again
        assert j.wait_for_seals(60)
        j.append_batch(events(20, 40))
        assert j.wait_for_seals(60)
        assert j.last_seal_error is None
        assert j.sealed_seq == 60
        assert j.verify().ok
    assert_sealed_once(tmp_store.store, 60)


def test_a_worker_error_is_kept_and_appends_go_on(tmp_store: StorePaths) -> None:
    """An object planted at the name of the next segment: the worker refuses to sign it (IntegrityError),
    the writer keeps the error and goes on appending; nothing is lost."""
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CONFIG) as j:
        planted = tmp_store.store / layout.segment("main", BASE_TS.date().isoformat(), 0)
        planted.parent.mkdir(parents=True)
        planted.write_bytes(b"not a segment")
        j.append_batch(events(20))
        assert j.wait_for_seals(60)
        assert isinstance(j.last_seal_error, IntegrityError)
        assert j.append_batch(events(5, 20)) == list(range(20, 25))
        assert j.sealed_seq == 0 and j.next_seq == 25
        assert j._worker is not None and j._worker.pid is not None  # noqa: SLF001 - it goes on


def test_an_explicit_seal_and_the_worker_never_seal_the_same_wal(tmp_store: StorePaths) -> None:
    """Seals asked of the worker and seals in the writer, at once from two threads: the seal lock orders them,
    and each continues from where the other got."""
    stop = threading.Event()
    errors: list[BaseException] = []
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CONFIG) as j:
        def sealing() -> None:
            while not stop.is_set():
                try:
                    j.seal()
                except BaseException as e:  # noqa: BLE001
                    errors.append(e)
                    return
                time.sleep(0.01)

        t = threading.Thread(target=sealing)
        t.start()
        try:
            for k in range(15):
                j.append_batch(events(20, 20 * k))
        finally:
            stop.set()
            t.join()
        assert not errors
        assert j.wait_for_seals(60)
        j.seal()
        assert j.last_seal_error is None and j.sealed_seq == 300
        assert j.verify().ok
    assert_sealed_once(tmp_store.store, 300)


def test_close_waits_for_the_worker(tmp_store: StorePaths) -> None:
    j = Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CONFIG)
    j.append_batch(events(40))
    worker = j._worker  # noqa: SLF001
    j.close()
    assert worker is not None and worker.pid is None
    assert len(sealed_rows(tmp_store.store)) == 40  # both seals asked for were done before close returned


def test_no_worker_where_another_process_cannot_open_the_store(tmp_store: StorePaths, moto_server: str) -> None:
    import boto3

    assert store_spec(LocalStore(tmp_store.store)) == {"kind": "local", "root": str(tmp_store.store.absolute())}
    assert store_spec(S3Store("bucket", endpoint_url=moto_server))["endpoint_url"] == moto_server
    own = boto3.client("s3", endpoint_url=moto_server)
    assert store_spec(S3Store("bucket", client=own)) is None  # its credentials may be its own
    no_worker = JournalConfig(seal_max_age_seconds=None, seal_max_events=10, seal_worker=False)
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=no_worker) as j:
        j.append_batch(events(10))
        assert j._worker is None and j.sealed_seq == 10  # noqa: SLF001 - sealed in the appending thread
