"""Faults around the append path: a failure after an event is durable is never the append's error, the age
sealer survives any error, and files are created with modes the umask allows (never wider)."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wormjournal import Journal, JournalConfig, ValidationError, verify_store
from wormjournal.journal import sealer as sealer_mod

from conftest import BASE_TS


def _failing_seal(monkeypatch: pytest.MonkeyPatch, error: BaseException, times: int) -> list[int]:
    """Make the next ``times`` seals raise ``error`` (as a bug or a poison event would); returns a call counter."""
    calls = [0]
    original = sealer_mod.Sealer.seal

    def seal(self: Any, events: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] <= times:
            raise error
        return original(self, events, **kwargs)

    monkeypatch.setattr(sealer_mod.Sealer, "seal", seal)
    return calls


@pytest.mark.parametrize("error", [OverflowError("date value out of range"), OSError(28, "No space left on device"),
                                   RuntimeError("a bug")])
def test_an_automatic_seal_that_fails_is_not_the_appends_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               error: BaseException) -> None:
    store, keys = tmp_path / "store", tmp_path / "keys"
    # seal_worker=False: the seals in the appending thread, where the failing Sealer is (test_seal_worker.py has
    # the worker's errors)
    cfg = JournalConfig(seal_max_events=3, seal_max_age_seconds=None, seal_worker=False)
    with Journal.create(store, key_dir=keys, config=cfg) as j:
        calls = _failing_seal(monkeypatch, error, times=1)
        seqs = [j.append("node_started", "run-a", {"i": i}, ts=BASE_TS) for i in range(3)]  # the third seals
        assert seqs == [0, 1, 2]  # acknowledged: a caller never retries (and writes them twice)
        assert calls[0] == 1 and j.last_seal_error is error and j.sealed_seq == 0
        j.append("node_started", "run-a", {"i": 3}, ts=BASE_TS)  # too soon: the retry waits (a backoff)
        assert j.sealed_seq == 0
        time.sleep(j.SEAL_RETRY_SECONDS + 0.1)
        j.append("node_started", "run-a", {"i": 4}, ts=BASE_TS)  # the next append retries the seal, which works
        assert j.last_seal_error is None and j.sealed_seq == 5
    report = verify_store(store)
    assert report.ok and report.streams[0].events == 5


def test_the_age_sealer_survives_an_error_and_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=JournalConfig(seal_max_age_seconds=0.2, seal_worker=False)) as j:
        calls = _failing_seal(monkeypatch, RuntimeError("a bug"), times=2)
        j.append("node_started", "run-a", {"i": 0}, ts=BASE_TS)
        deadline = time.monotonic() + 20
        while j.sealed_seq < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert j.sealed_seq == 1 and calls[0] >= 3  # failed twice, then sealed: the thread did not die
        assert j._age_thread is not None and j._age_thread.is_alive()
    assert verify_store(store).ok


def test_a_time_outside_years_1_to_9999_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """An event the seal could not date would block the stream for good: it is refused at the door."""
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=JournalConfig(seal_max_age_seconds=None)) as j:
        j.append("node_started", "run-a", {"i": 0}, ts=BASE_TS)
        for ts in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
            with pytest.raises(ValidationError, match="ts.*outside UTC years 1 to 9999"):
                j.append_batch([{"event_type": "node_started", "execution_id": "run-a", "ts": BASE_TS},
                                {"event_type": "node_started", "execution_id": "run-a", "ts": ts}])
        assert j.next_seq == 1  # the whole batch refused
        j.append("node_started", "run-a", {"i": 1}, ts="0001-01-01T00:00:00Z")  # the edges themselves are fine
        j.append("node_started", "run-a", {"i": 2}, ts="9999-12-31T23:59:59.999999Z")
        j.seal()
    with Journal.open(store, key_dir=keys) as j:
        assert j.sealed_seq == 3
    assert verify_store(store).ok


@pytest.mark.parametrize("payload, says", [
    ("deep", "nested deeper than 128"),
    ("cycle", "refers to itself"),
    ("bigint", "more than 4300 digits"),
    ("key", "not a string"),
])
def test_payloads_that_would_fail_later_are_refused(tmp_path: Path, payload: str, says: str) -> None:
    value: Any
    if payload == "deep":
        value = []
        for _ in range(200):
            value = [value]
    elif payload == "cycle":
        value = {"a": 1}
        value["self"] = value
    elif payload == "bigint":
        value = {"n": 10**5000}
    else:
        value = {"ok": {3: "x"}}
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=JournalConfig(seal_max_age_seconds=None)) as j:
        with pytest.raises(ValidationError, match=says) as err:
            j.append("node_started", "run-a", value, ts=BASE_TS)
        assert err.value.field == "payload"
        assert j.next_seq == 0
        nested: Any = []
        for _ in range(126):
            nested = [nested]  # 127 lists in a dict: 128 levels
        j.append("node_started", "run-a", {"deep": nested, "n": -(10**4299)}, ts=BASE_TS)  # at the limits: kept
        j.seal()
    assert verify_store(store).ok


@pytest.fixture
def umask() -> Iterator[Any]:
    old = os.umask(0o022)

    def set_umask(mask: int) -> None:
        os.umask(mask)

    try:
        yield set_umask
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("mask", [0o077, 0o000, 0o022])
def test_modes_follow_the_umask_and_are_never_writable_by_others(tmp_path: Path, umask: Any, mask: int) -> None:
    umask(mask)
    store, keys, wal = tmp_path / "store", tmp_path / "deep" / "keys", tmp_path / "wal"
    with Journal.create(store, key_dir=keys, wal_dir=wal, config=JournalConfig(seal_max_age_seconds=None)) as j:
        j.append("node_started", "run-a", {"secret": "personal"}, ts=BASE_TS)
        j.seal()
        j.append("node_started", "run-a", {"secret": "unsealed"}, ts=BASE_TS)
    objects = {k: m for k, m in _modes(store).items() if (store / k).is_file() and not k.startswith(".")}
    assert objects and all(m == 0o444 & ~mask for m in objects.values()), objects  # read-only, umask respected
    for name, mode in _modes(store).items():
        if (store / name).is_dir():
            assert not mode & 0o022, (name, oct(mode))  # no store directory writable by group or others
    for root in (keys, wal):
        for name, mode in _modes(root).items():
            if name.endswith(".pub.pem"):
                assert not mode & 0o022, (root / name, oct(mode))  # a public key: anyone may read it
            else:
                assert not mode & 0o077, (root / name, oct(mode))  # secrets and the WAL: the owner's only
    assert not stat.S_IMODE((tmp_path / "deep").stat().st_mode) & 0o077  # a key directory's parent made here too
    assert verify_store(store).ok
