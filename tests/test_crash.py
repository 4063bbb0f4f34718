"""Crash safety (DESIGN.md invariants 1-3): kill -9 at random instants and at every step of a seal,
torn WAL tails at every byte offset, corrupt WAL frames, and a property test of the WAL reader.

A writer process (``crash_child.py``) prints ``ACK <seq> <event_id>`` after each append
has returned; whatever it acknowledged must be in the journal exactly once after any
kill, with gapless seqs, no segment stored twice, and a store that verifies.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import hmac
import logging
import os
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wormjournal import steps
from wormjournal.errors import IntegrityError
from wormjournal.events import encode_fields, event_hash
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal import wal as walmod
from wormjournal.journal.sealworker import CRASH_ENV
from wormjournal.segments.manifest import Manifest
from wormjournal.segments.notes import open_note
from wormjournal.storage import layout
from wormjournal.storage.local import LocalStore
from wormjournal.trust import load_trust
from wormjournal.trust.load import read_identity

from conftest import wal_mac

TEST_MAC = walmod.WalMac(bytes(32), "journal", "main")  # frames built by hand in these tests

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("crash_child.py")
STREAM = "main"
# The parent's writer: no age sealer, and a row-group size unlike the child's, so that a
# segment stored by a killed child is re-encoded differently and must be adopted, not re-put.
CHECK_CONFIG = JournalConfig(seal_max_age_seconds=None, row_group_rows=4)
QUIET = JournalConfig(seal_max_age_seconds=None)
T = TypeVar("T")

RANDOM_KILLS = max(30, int(os.environ.get("WORMJOURNAL_CRASH_KILLS", "30")))  # a new seed each run: they add up
CRASH_SEED = int(os.environ.get("WORMJOURNAL_CRASH_SEED", str(random.SystemRandom().randrange(1 << 32))))


# -- the child process -------------------------------------------------------------


class Child:
    """A running crash_child.py; its stdout is read as it comes, stderr goes to a file."""

    def __init__(self, store: Path, keys: Path, run_id: str, *args: str, log_dir: Path,
                 env: dict[str, str] | None = None) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **(env or {}))
        self.stderr_path = log_dir / f"{run_id}.stderr"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(CHILD), "--store", str(store), "--keys", str(keys), "--run-id", run_id, *args],
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                cwd=ROOT,
            )
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        self.started = time.monotonic()
        self.out = b""
        self.eof = False

    def pump(self, until: float, *, once: bool = False) -> None:
        """Read whatever the child writes until the monotonic time ``until`` or EOF
        (with ``once``: until the first chunk)."""
        while not self.eof:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if ready:
                chunk = os.read(self._fd, 1 << 16)
                if chunk:
                    self.out += chunk
                else:
                    self.eof = True
                if once:
                    return

    def wait_for(self, predicate: object, timeout: float) -> bool:
        """Pump until ``predicate(self)`` holds (True), EOF or timeout (False)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):  # type: ignore[operator]
            if self.eof or time.monotonic() >= deadline:
                return False
            self.pump(deadline, once=True)
        return True

    def lines(self) -> list[str]:
        # A line is acknowledged only when whole: a kill can cut the last write short.
        return self.out.decode().split("\n")[:-1]

    @property
    def ready(self) -> tuple[int, int] | None:
        for line in self.lines():
            if line.startswith("READY "):
                _, nxt, sealed = line.split()
                return int(nxt), int(sealed)
        return None

    def steps(self) -> list[str]:
        """The seal steps the child passed (``--trace``)."""
        return [line.split()[1] for line in self.lines() if line.startswith("STEP ")]

    def workers(self) -> list[int]:
        """The pids of the seal workers the child started (``--seal-worker``), in order."""
        return [int(line.split()[1]) for line in self.lines() if line.startswith("WORKER ")]

    def acks(self) -> list[tuple[int, str]]:
        out = []
        for line in self.lines():
            if line.startswith("ACK "):
                _, seq, event_id = line.split()
                out.append((int(seq), event_id))
        return out

    def kill(self) -> int:
        """SIGKILL (if still running), collect every remaining line; returns the exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.finish()
        return self.proc.returncode

    def finish(self, timeout: float = 30.0) -> int:
        """Wait for the child to end by itself and collect its output."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self.pump(deadline)
        try:
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"child did not finish in {timeout} s\n{self.stderr()}") from None
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.proc.returncode

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


# -- reading the store back ------------------------------------------------------------


def object_digests(store: Path) -> dict[str, str]:
    """Every object of the store (not the WAL) and the SHA-256 of its bytes."""
    st = LocalStore(store)
    return {info.name: hashlib.sha256(st.get(info.name)).hexdigest() for info in st.list("")}


def assert_unchanged(before: dict[str, str], after: dict[str, str]) -> None:
    """Invariant 3: nothing stored is ever modified or deleted."""
    changed = sorted(name for name, digest in before.items() if after.get(name) != digest)
    assert not changed, f"stored objects modified or deleted: {changed}"


# Stored objects never change (invariant 3, asserted by the random test), so what was read
# from one is kept by the SHA-256 of its bytes: the checks read each new object once.
_parsed: dict[bytes, object] = {}


def _cached(data: bytes, parse: Callable[[bytes], T]) -> T:
    key = hashlib.sha256(data).digest()
    if key not in _parsed:
        _parsed[key] = parse(data)
    return _parsed[key]  # type: ignore[return-value]


def manifests(store: Path, stream: str = STREAM) -> list[Manifest]:
    st = LocalStore(store)
    keys = load_trust(st).keys()
    return [
        _cached(st.get(info.name), lambda data: Manifest.parse(open_note(data, keys)[0]))
        for info in st.list(layout.manifests_prefix(stream))
    ]


def segment_rows(data: bytes) -> list[tuple[int, str]]:
    """(seq, event_id) of every row of a segment object."""

    def parse(data: bytes) -> list[tuple[int, str]]:
        table = pq.read_table(pa.BufferReader(data), columns=["seq", "event_id"])
        return list(zip(table.column("seq").to_pylist(), table.column("event_id").to_pylist(), strict=True))

    return _cached(data, parse)


@dataclasses.dataclass
class Sealed:
    """What the segments of a stream hold: (seq, event_id) rows in seq order, and segment objects by number."""

    rows: list[tuple[int, str]]
    objects: dict[int, list[str]]


def read_sealed(store: Path, stream: str = STREAM) -> Sealed:
    st = LocalStore(store)
    rows: list[tuple[int, str]] = []
    objects: dict[int, list[str]] = collections.defaultdict(list)
    for info in st.list(layout.stream_segments_prefix(stream)):
        parsed = layout.parse_segment(info.name)
        assert parsed is not None, f"unexpected object {info.name}"
        objects[parsed[2]].append(info.name)
        rows.extend(segment_rows(st.get(info.name)))
    rows.sort()
    return Sealed(rows, dict(objects))


def check_journal(store: Path, keys: Path, acked: dict[str, int], *, context: str = "") -> int:
    """Reopen (recovering), seal everything and check invariants 1-3; returns next_seq.

    Every acknowledged event is sealed exactly once at its acknowledged seq; seqs are
    gapless from 0; each segment number has exactly one object and one manifest; the
    store verifies.
    """
    with Journal.open(store, key_dir=keys, config=CHECK_CONFIG) as j:
        next_seq = j.next_seq
        top = max(acked.values(), default=-1)
        assert next_seq > top, f"{context}: reopened at next_seq {next_seq}, but seq {top} was acknowledged"
        j.seal()
        assert j.sealed_seq == next_seq
        sealed = read_sealed(store)
        seqs = [s for s, _ in sealed.rows]
        assert seqs == list(range(next_seq)), f"{context}: seqs are not gapless 0..{next_seq - 1}"
        ids = collections.Counter(e for _, e in sealed.rows)
        dups = sorted(e for e, n in ids.items() if n > 1)
        assert not dups, f"{context}: events stored more than once: {dups[:10]}"
        at = {e: s for s, e in sealed.rows}
        missing = sorted(e for e in acked if e not in at)
        assert not missing, f"{context}: acknowledged events lost: {missing[:10]}"
        moved = sorted(e for e, s in acked.items() if at[e] != s)
        assert not moved, f"{context}: acknowledged events at another seq: {moved[:10]}"
        numbers = sorted(sealed.objects)
        assert numbers == list(range(len(numbers))), f"{context}: segment numbers not contiguous: {numbers}"
        doubled = {n: names for n, names in sealed.objects.items() if len(names) != 1}
        assert not doubled, f"{context}: segment stored twice: {doubled}"
        ms = manifests(store)
        assert [m.segment for m in ms] == numbers
        assert [m.object for m in ms] == [sealed.objects[n][0] for n in numbers]
        if next_seq:
            report = j.verify()
            assert report.ok, f"{context}: verify failed: {[(f.kind, f.message) for f in report.findings]}"
    return next_seq


def new_journal(tmp_path: Path, name: str = "store") -> tuple[Path, Path]:
    store, keys = tmp_path / name, tmp_path / f"{name}-keys"
    Journal.create(store, key_dir=keys, config=QUIET).close()
    return store, keys


def record_acks(acked: dict[str, int], child: Child, context: str) -> None:
    acks = child.acks()
    seqs = [s for s, _ in acks]
    assert seqs == sorted(set(seqs)), f"{context}: acknowledged seqs not increasing: {seqs}"
    for seq, event_id in acks:
        assert event_id not in acked, f"{context}: {event_id} acknowledged twice"
        acked[event_id] = seq


# -- random kills ------------------------------------------------------------------------


def check_crashed(store: Path, keys: Path, acked: dict[str, int], *, context: str = "") -> int:
    """Read-only, before any recovery: the sealed segments (those with a manifest) and the
    WAL records after them hold every acknowledged event once, at its seq, with gapless seqs.
    Returns the number of WAL files (more than one: the kill interrupted a seal)."""
    st = LocalStore(store)
    rows: list[tuple[int, str]] = []
    ms = manifests(store)
    for m in ms:
        rows.extend(segment_rows(st.get(m.object)))
    sealed_next = ms[-1].last_seq + 1 if ms else 0
    wal_files = walmod.list_wal_files(store / ".wal" / f"stream={STREAM}")
    mac = wal_mac(store, keys) if wal_files else None
    for path in wal_files:
        rows.extend((e.seq, e.event_id) for e in walmod.read_wal(path, mac).events if e.seq >= sealed_next)
    rows.sort()
    assert [s for s, _ in rows] == list(range(len(rows))), f"{context}: seqs in store + WAL are not gapless and unique"
    at = dict((e, s) for s, e in rows)
    assert len(at) == len(rows), f"{context}: an event id is stored twice"
    lost = sorted(e for e, s in acked.items() if at.get(e) != s)
    assert not lost, f"{context}: acknowledged events missing or moved: {lost[:10]}"
    return len(wal_files)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def kill_pid(pid: int) -> bool:
    """SIGKILL ``pid`` if it runs; returns whether it did."""
    if not alive(pid):
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


SEAL_STEPS = ["seal.start", "seal.segment_stored", "seal.index_stored", "seal.manifest_stored",
              "seal.checkpoint_stored"]


def test_random_kills(tmp_path: Path) -> None:
    """kill -9 at random instants of the writer, of its seal worker, or of both, over and over, on one store.

    Each round runs a writer (``crash_child.py --seal-worker``) and kills, at random: the writer while it
    starts up and recovers; the seal worker at a step of its seal (it kills itself there), then the writer;
    the worker at a random instant, then (after the writer started a new one) the writer and the new worker;
    or the writer alone, its orphaned worker finishing its seal and stopping by itself. Even rounds are checked
    by reopening in the parent (which recovers and seals, then verifies). Odd rounds are checked read-only, so
    that the next child has to recover the crashed store itself, and may be killed while recovering.
    """
    rng = random.Random(CRASH_SEED)
    ctx = f"seed {CRASH_SEED} (rerun with WORMJOURNAL_CRASH_SEED={CRASH_SEED})"
    store, keys = new_journal(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    acked: dict[str, int] = {}
    kills = collections.Counter[str]()
    mid_seal = orphaned = rnd = 0
    while sum(kills.values()) < RANDOM_KILLS:
        rnd += 1
        before = object_digests(store)
        run_id = f"r{rnd}"
        mode = rng.random()
        env = {}
        if 0.15 <= mode < 0.4:
            env[CRASH_ENV] = f"{rng.choice(SEAL_STEPS)}:{rng.randint(1, 3)}"
        child = Child(
            store, keys, run_id,
            "--seed", str(rng.randrange(1 << 30)),
            "--seal-max-events", str(rng.choice([20, 30, 50])),
            "--segment-max-events", str(rng.choice([16, 1000])),
            "--row-group-rows", str(rng.choice([4, 8, 1024])),
            "--seal-worker",
            log_dir=logs, env=env,
        )
        where = f"{ctx}, round {rnd}"
        if mode < 0.15:
            # Anywhere from interpreter start-up through recovery to appending.
            child.pump(child.started + rng.uniform(0.05, 0.5))
        else:
            assert child.wait_for(lambda c: c.ready is not None, 30), f"{where}: never got ready\n{child.stderr()}"
            assert child.wait_for(lambda c: bool(c.workers()), 30), f"{where}: no seal worker\n{child.stderr()}"
            first = child.workers()[0]
            if mode < 0.4:  # the worker kills itself at a step of one of its seals
                if wait_gone([first], rng.uniform(1.0, 3.0)):
                    kills["worker at a step"] += 1
                child.pump(time.monotonic() + rng.uniform(0.0, 0.3))
            elif mode < 0.65:  # the worker at a random instant, then the writer and its new worker
                child.pump(time.monotonic() + rng.uniform(0.0, 0.4))
                if kill_pid(first):
                    kills["worker"] += 1
                child.pump(time.monotonic() + rng.uniform(0.0, 1.5))
            else:  # the writer alone, at a random instant
                want = len(child.acks()) + rng.randint(1, 60)
                child.wait_for(lambda c, want=want: len(c.acks()) >= want, rng.uniform(0.0, 0.8))
        status = child.kill()
        assert status == -signal.SIGKILL, f"{where}: exited by itself with {status}\n{child.stderr()}"
        kills["writer"] += 1
        workers = child.workers()
        if mode >= 0.65:  # an orphaned worker finishes its seal and stops by itself
            assert wait_gone(workers, 30), f"{where}: the orphaned seal worker did not stop"
        else:
            kills["writer and worker at once"] += sum(kill_pid(p) for p in workers)
            assert wait_gone(workers, 10)
        ready = child.ready
        if ready is not None:
            assert ready[0] > max(acked.values(), default=-1), f"{where}: the child reopened below an acknowledged seq"
        record_acks(acked, child, where)
        if check_crashed(store, keys, acked, context=where) > 1:
            mid_seal += 1
            orphaned += bool(orphans(store))
        if rnd % 2 == 0:
            check_journal(store, keys, acked, context=where)
        assert_unchanged(before, object_digests(store))
    assert acked
    # One clean run at the end: the store is still a working journal.
    child = Child(store, keys, "final", "--max-events", "25", "--seal-worker", log_dir=logs)
    assert child.finish() == 0, child.stderr()
    record_acks(acked, child, ctx)
    check_journal(store, keys, acked, context=f"{ctx}, final")
    print(f"{sum(kills.values())} kills in {rnd} rounds ({dict(kills)}); {mid_seal} left a seal unfinished "
          f"({orphaned} a segment without manifest); {len(acked)} acknowledged events; {ctx}")


# -- deterministic crash points ---------------------------------------------------------------


def run_until_crash(store: Path, keys: Path, run_id: str, step: str, occurrence: int, log_dir: Path,
                    *extra: str) -> Child:
    child = Child(
        store, keys, run_id,
        "--crash-at", step, "--crash-occurrence", str(occurrence), "--max-events", "400",
        "--seal-max-events", "20", "--segment-max-events", "8", *extra,
        log_dir=log_dir,
    )
    status = child.finish()
    assert status == -signal.SIGKILL, f"child did not die at {step} #{occurrence} (status {status})\n{child.stderr()}"
    return child


def orphans(store: Path) -> dict[str, bytes]:
    """Segment objects that no manifest covers yet (left by an interrupted seal)."""
    st = LocalStore(store)
    covered = {m.object for m in manifests(store)}
    return {i.name: st.get(i.name) for i in st.list(layout.stream_segments_prefix(STREAM)) if i.name not in covered}


@pytest.mark.parametrize(
    ("step", "occurrence"),
    [
        ("seal_start", 1),
        ("segment_stored", 1),
        ("segment_stored", 2),
        ("index_stored", 1),
        ("index_stored", 2),
        ("manifest_stored", 1),
        ("manifest_stored", 3),
        ("checkpoint_stored", 1),
        ("checkpoint_stored", 2),
    ],
)
def test_crash_at_seal_step(tmp_path: Path, step: str, occurrence: int) -> None:
    """Killed at a precise step of a seal (3 segments a seal): reopening completes the seal exactly once."""
    store, keys = new_journal(tmp_path)
    acked: dict[str, int] = {}
    child = run_until_crash(store, keys, "a", step, occurrence, tmp_path)
    record_acks(acked, child, step)
    assert acked
    before = object_digests(store)
    left = orphans(store)
    if step in ("segment_stored", "index_stored"):
        assert len(left) == 1  # the segment is stored, its manifest is not
    else:
        assert not left
    check_journal(store, keys, acked, context=f"{step} #{occurrence}")
    assert_unchanged(before, object_digests(store))
    assert len(walmod.list_wal_files(store / ".wal" / f"stream={STREAM}")) == 1, "frozen WAL files are removed"
    by_object = {m.object: m for m in manifests(store)}
    for name, data in left.items():
        assert by_object[name].object_sha256 == hashlib.sha256(data).digest()
    indexed = {i.name for i in LocalStore(store).list(layout.INDEX_PREFIX)}
    for m in manifests(store):  # every sealed segment has its index, whatever step was cut short
        assert {layout.index_object(STREAM, kind, m.segment, m.segment) for kind in layout.INDEX_KINDS} <= indexed
    # The stream goes on after the recovery.
    child = Child(store, keys, "b", "--max-events", "30", log_dir=tmp_path)
    assert child.finish() == 0, child.stderr()
    record_acks(acked, child, "continue")
    check_journal(store, keys, acked, context="continued")


def test_killed_between_rotation_and_seal_adopts_stored_segment(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The first seal dies right after its first segment object is stored.

    The WAL was rotated (two files), the store holds a segment without a manifest. The
    reopening writer encodes the segment differently (other row-group size), so its put
    conflicts; the stored object must be adopted as it is, never stored a second time.
    """
    store, keys = new_journal(tmp_path)
    acked: dict[str, int] = {}
    child = run_until_crash(store, keys, "a", "segment_stored", 1, tmp_path, "--row-group-rows", "4")
    record_acks(acked, child, "first seal")
    wal_files = walmod.list_wal_files(store / ".wal" / f"stream={STREAM}")
    assert len(wal_files) == 2, "the seal rotated the WAL before storing"
    left = orphans(store)
    assert len(left) == 1 and not manifests(store)
    (name, data), = left.items()
    assert layout.parse_segment(name)[2] == 0
    before = object_digests(store)
    with caplog.at_level(logging.INFO, logger="wormjournal.journal.sealer"):
        check_journal(store, keys, acked, context="adoption")
    assert any("adopting" in r.getMessage() and name in r.getMessage() for r in caplog.records)
    assert_unchanged(before, object_digests(store))
    ms = manifests(store)
    assert ms[0].object == name and ms[0].object_sha256 == hashlib.sha256(data).digest()
    assert ms[0].events == len(pq.read_table(pa.BufferReader(data)))
    assert walmod.list_wal_files(store / ".wal" / f"stream={STREAM}") == [wal_files[1]]


def test_killed_during_recovery(tmp_path: Path) -> None:
    """A second writer is killed while its open() finishes the first one's seal; a third recovers both."""
    store, keys = new_journal(tmp_path)
    acked: dict[str, int] = {}
    child = run_until_crash(store, keys, "a", "segment_stored", 2, tmp_path)
    record_acks(acked, child, "first")
    child = Child(
        store, keys, "b", "--crash-at", "manifest_stored", "--crash-occurrence", "1", "--segment-max-events", "3",
        log_dir=tmp_path,
    )
    assert child.finish() == -signal.SIGKILL, child.stderr()
    assert child.ready is None, "the second writer should have died inside open()"
    before = object_digests(store)
    check_journal(store, keys, acked, context="recovery of recovery")
    assert_unchanged(before, object_digests(store))


# -- the WAL: torn tails and damaged frames --------------------------------------------------------


@pytest.fixture
def fast_tmp(tmp_path: Path) -> Iterator[Path]:
    """A scratch directory on tmpfs when there is one (else tmp_path): the sweeps below test
    recovery logic over hundreds of reopenings, not durability, and fsync is free there."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="wormjournal-test-", dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def frames(path: Path) -> list[tuple[int, int]]:
    """(start, end) of every whole frame of a WAL file (its MAC included), up to the zeros allocated ahead."""
    data = path.read_bytes()
    pos, out = walmod.HEADER_SIZE, []
    while pos + 8 <= len(data) and data[pos:].strip(b"\0"):
        (length,) = struct.unpack_from(">I", data, pos)
        out.append((pos, pos + 8 + length + walmod.MAC_SIZE))
        pos += 8 + length + walmod.MAC_SIZE
    assert pos == len(data) or not data[pos:].strip(b"\0")
    return out


def _event(n: int, tag: str) -> dict[str, object]:
    return {"event_type": "tool_called", "execution_id": f"exec-{n % 2}", "event_id": f"{tag}-{n}", "payload": {"n": n}}


def make_wal_journal(tmp_path: Path, singles: int, last_batch: int) -> tuple[Path, Path, Path]:
    """A journal with ``singles`` single appends and then one batch of ``last_batch`` (0: none), unsealed."""
    store, keys = new_journal(tmp_path, "template")
    with Journal.open(store, key_dir=keys, config=QUIET) as j:
        for n in range(singles):
            ev = _event(n, "e")
            j.append(ev.pop("event_type"), ev.pop("execution_id"), ev.pop("payload"), **ev)
        if last_batch:
            j.append_batch([_event(singles + n, "e") for n in range(last_batch)])
    (wal,) = walmod.list_wal_files(store / ".wal" / f"stream={STREAM}")
    return store, keys, wal


@pytest.mark.parametrize(("singles", "last_batch"), [(4, 0), (3, 5)], ids=["single", "batch-of-5"])
def test_torn_last_frame_at_every_offset(fast_tmp: Path, singles: int, last_batch: int) -> None:
    """The last frame cut at any byte disappears whole; everything before it stays, the chain goes on."""
    tmp_path = fast_tmp
    template, keys, wal = make_wal_journal(tmp_path, singles, last_batch)
    start, end = frames(wal)[-1]
    kept = singles if last_batch else singles - 1
    expected_ids = [f"e-{n}" for n in range(kept)]
    case = tmp_path / "case"
    offsets = list(range(start, end))
    # Every offset is reopened and checked; the slower append-seal-verify cycle runs on a spread of them.
    full = set(offsets[:: max(1, len(offsets) // 24)]) | {start, start + 1, start + 7, start + 8, end - 1}
    for cut in offsets:
        shutil.rmtree(case, ignore_errors=True)
        shutil.copytree(template, case, symlinks=True)
        case_wal = case / wal.relative_to(template)
        os.truncate(case_wal, cut)
        j = Journal.open(case, key_dir=keys, config=QUIET)
        try:
            assert j.next_seq == kept, f"cut at {cut}"
            contents = walmod.read_wal(case_wal, wal_mac(case, keys))
            assert [e.event_id for e in contents.events] == expected_ids, f"cut at {cut}"
            # the torn tail is cut off; a tail of zeros (the length's first byte) is left for the next frame
            assert not case_wal.read_bytes()[start:].strip(b"\0"), "the torn tail is cut off"
            if cut in full:
                assert j.append("tool_called", "exec-9", {"after": cut}, event_id="after") == kept
                j.seal()
                sealed = read_sealed(case)
                assert [e for _, e in sealed.rows] == [*expected_ids, "after"]
                report = j.verify()
                assert report.ok, [(f.kind, f.message) for f in report.findings]
        finally:
            j.close()


def test_whole_wal_reopens_intact(tmp_path: Path) -> None:
    """The control case: nothing torn, nothing dropped."""
    template, keys, wal = make_wal_journal(tmp_path, 3, 5)
    size = wal.stat().st_size
    with Journal.open(template, key_dir=keys, config=QUIET) as j:
        assert j.next_seq == 8
    assert wal.stat().st_size == size


@pytest.mark.parametrize("where", ["length", "crc", "body-start", "body-middle", "body-end", "mac"])
@pytest.mark.parametrize("frame", [0, 2])
def test_damaged_middle_frame_is_refused(tmp_path: Path, where: str, frame: int) -> None:
    """A flipped byte in a frame that is not the last one is damage, not a torn tail: open refuses,
    and the WAL (with the acknowledged events after the damage) is left as it was."""
    template, keys, wal = make_wal_journal(tmp_path, 5, 0)
    start, end = frames(wal)[frame]
    offset = {
        "length": start + 2,
        "crc": start + 5,
        "body-start": start + 8,
        "body-middle": (start + 8 + end - walmod.MAC_SIZE) // 2,
        "body-end": end - walmod.MAC_SIZE - 1,
        "mac": end - 1,
    }[where]
    data = bytearray(wal.read_bytes())
    data[offset] ^= 0x40
    wal.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        Journal.open(template, key_dir=keys, config=QUIET)
    assert wal.read_bytes() == bytes(data), "a refused open must not cut the WAL"


def test_a_whole_last_frame_with_a_wrong_mac_is_refused_not_cut(tmp_path: Path) -> None:
    """The last frame is whole and passes its CRC, but its MAC is not the writer's (forged, or another key
    directory's WAL): that is no torn tail to cut off silently. Open refuses and leaves the WAL as it was;
    a reader with the WAL key refuses too."""
    template, keys, wal = make_wal_journal(tmp_path, 4, 0)
    start, end = frames(wal)[-1]
    data = wal.read_bytes()
    body = data[start + 8 : end - walmod.MAC_SIZE]
    jid = read_identity(LocalStore(template)).journal_id
    forged = body + walmod.WalMac(os.urandom(32), jid, STREAM).tag(body)  # the same body under another key
    data = data[:start] + struct.pack(">II", len(body), zlib.crc32(forged)) + forged
    wal.write_bytes(data)
    with pytest.raises(IntegrityError, match="not authenticated"):
        Journal.open(template, key_dir=keys, config=QUIET)
    assert wal.read_bytes() == data
    with pytest.raises(IntegrityError, match="not authenticated"):
        walmod.read_wal(wal, wal_mac(template, keys))


def test_zero_filled_tail_is_torn(tmp_path: Path) -> None:
    """A file system may extend a file with zeros it never wrote (power loss): that tail is torn, not damage."""
    template, keys, wal = make_wal_journal(tmp_path, 3, 0)
    size = wal.stat().st_size
    with open(wal, "ab") as f:
        f.write(b"\x00" * 100)
    with Journal.open(template, key_dir=keys, config=QUIET) as j:
        assert j.next_seq == 3
        assert j.append("tool_called", "exec-1", None) == 3
    assert walmod.read_wal(wal, wal_mac(template, keys)).good_end == wal.stat().st_size > size


def test_space_allocated_ahead(tmp_path: Path) -> None:
    """The writer allocates the WAL file ahead of its frames (zeros), so that an fsync need not commit a new
    size. A reader stops at the zeros; a crash image of the open file reopens with every event and goes on where
    the frames end; damage before a valid frame is still refused with zeros after it; close gives the space back."""
    store, keys = new_journal(tmp_path)
    j = Journal.open(store, key_dir=keys, config=QUIET)
    try:
        for n in range(5):
            j.append("tool_called", "exec-1", {"n": n}, event_id=f"e-{n}")
        (wal,) = walmod.list_wal_files(store / ".wal" / f"stream={STREAM}")
        image = wal.read_bytes()  # what a kill -9 now leaves on disk
        contents = walmod.read_wal(wal, wal_mac(store, keys))
        assert len(image) == walmod.WalWriter.preallocate + walmod.HEADER_SIZE > contents.good_end
        assert not image[contents.good_end :].strip(b"\0")
        assert contents.size == contents.good_end and contents.torn_bytes == 0
        assert [e.event_id for e in contents.events] == [f"e-{n}" for n in range(5)]
    finally:
        j.close()
    assert wal.stat().st_size == contents.good_end, "close gives back the space allocated ahead"
    damaged = bytearray(image)
    damaged[frames(wal)[1][0] + 12] ^= 1
    for data, expect in [(image, "whole"), (bytes(damaged), "refused")]:
        wal.write_bytes(data)
        if expect == "refused":
            with pytest.raises(IntegrityError, match="valid frame follows"):
                Journal.open(store, key_dir=keys, config=QUIET)
            assert wal.read_bytes() == data
            continue
        with Journal.open(store, key_dir=keys, config=QUIET) as j:
            assert j.append("tool_called", "exec-1", {"n": 5}, event_id="e-5") == 5
            j.seal()
            assert j.verify().ok
        sealed = read_sealed(store)
        assert [e for _, e in sealed.rows] == [f"e-{n}" for n in range(6)]


@pytest.mark.parametrize("hole", ["a page of the frame", "from the frame's start", "bits flipped"])
def test_frames_after_space_never_written(tmp_path: Path, hole: str) -> None:
    """A frame over space allocated ahead that never reached the disk reads as zeros in whole pages, while a later
    frame may have (a file system that lost a crash's last writes out of order; a reader copying the file while
    frames are written): none of them was synced, so it is a torn tail. The cut is kept beside the file, and
    the events before it stay. Damage without such a run of zeros is refused, as ever."""
    store, keys = new_journal(tmp_path)
    with Journal.open(store, key_dir=keys, config=QUIET) as j:
        for n in range(6):
            j.append("tool_called", "exec-1", {"n": n, "pad": os.urandom(10_000).hex()}, event_id=f"e-{n}")
    (wal,) = walmod.list_wal_files(store / ".wal" / f"stream={STREAM}")
    start, end = frames(wal)[3]
    data = bytearray(wal.read_bytes())
    page = (start // 4096 + 1) * 4096
    assert page + 4096 < end, "the frame spans a whole page"
    if hole == "a page of the frame":
        data[page : page + 4096] = bytes(4096)
    elif hole == "from the frame's start":
        data[start:page] = bytes(page - start)
    else:
        data[page + 100] ^= 0x40
    wal.write_bytes(bytes(data))
    if hole == "bits flipped":
        with pytest.raises(IntegrityError, match="valid frame follows"):
            Journal.open(store, key_dir=keys, config=QUIET)
        return
    with Journal.open(store, key_dir=keys, config=QUIET) as j:
        assert j.next_seq == 3
        assert j.append("tool_called", "exec-1", {"after": True}, event_id="after") == 3
        j.seal()
        assert j.verify().ok
    assert [e for _, e in read_sealed(store).rows] == ["e-0", "e-1", "e-2", "after"]
    (kept,) = wal.parent.glob(f"{wal.name}.torn-{start}")
    assert kept.read_bytes().rstrip(b"\0") == bytes(data[start:]).rstrip(b"\0")


def test_a_wal_directory_another_writer_sealed_past_is_refused(tmp_path: Path) -> None:
    """A writer leaves acknowledged events unsealed in its WAL directory; another WAL directory's writer opens the
    stream (a take-over) and seals past them. The first directory reopened must not pass its events over as
    sealed (they are not the store's) nor append after them: open refuses, its WAL is left as it was."""
    store, keys = new_journal(tmp_path)
    with Journal.open(store, key_dir=keys, config=QUIET) as j:
        for n in range(3):
            j.append("tool_called", "exec-1", {"n": n})
        j.seal()
        for n in range(5):
            j.append("tool_called", "exec-1", {"a": n})
    (wal,) = walmod.list_wal_files(store / ".wal" / f"stream={STREAM}")
    before = wal.read_bytes()
    with Journal.open(store, key_dir=keys, wal_dir=tmp_path / "other-wal", config=QUIET) as b:
        assert b.next_seq == 3
        for n in range(10):
            b.append("tool_called", "exec-1", {"b": n})
        b.seal()
    with pytest.raises(IntegrityError, match="another writer sealed into this stream"):
        Journal.open(store, key_dir=keys, config=QUIET)
    assert walmod.list_wal_files(store / ".wal" / f"stream={STREAM}") == [wal] and wal.read_bytes() == before


class _Interrupt(BaseException):
    """Stands in for a crash inside a seal, in process."""


def test_damaged_frozen_wal_file_is_refused(tmp_path: Path) -> None:
    """A WAL file frozen by a seal that did not finish is damaged in a frame: open refuses."""
    store, keys = new_journal(tmp_path)
    j = Journal.open(store, key_dir=keys, config=QUIET)
    for n in range(4):
        j.append("tool_called", "exec-1", {"n": n})

    def interrupt(step: str) -> None:
        raise _Interrupt(step)

    steps.hook = interrupt
    try:
        with pytest.raises(_Interrupt):
            j.seal()
    finally:
        steps.hook = None
        j.close()
    frozen, active = walmod.list_wal_files(store / ".wal" / f"stream={STREAM}")
    start, end = frames(frozen)[1]
    data = bytearray(frozen.read_bytes())
    data[start + 12] ^= 1
    frozen.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        Journal.open(store, key_dir=keys, config=QUIET)
    assert frozen.read_bytes() == bytes(data)


# -- property: the WAL reader -------------------------------------------------------------------


def _records(first_seq: int, prev: bytes,
             payloads: list[list[bytes]]) -> tuple[list[bytes], list[list[tuple[int, str, bytes]]]]:
    """Frames of chained records, and per frame the (seq, event_id, hash) it holds."""
    frames_out, expected = [], []
    seq = first_seq
    for batch in payloads:
        records, exp = [], []
        for payload in batch:
            values = (
                seq, f"ev-{seq}", 1_700_000_000_000_000 + seq, "tool_called", None, "exec", None, None, None,
                None, None, None, None if seq == first_seq else seq - 1, "json", None, payload,
            )
            enc = encode_fields(values)
            prev = event_hash(prev, enc)
            records.append((enc, prev))
            exp.append((seq, f"ev-{seq}", prev))
            seq += 1
        frames_out.append(walmod.encode_frame(records, TEST_MAC))
        expected.append(exp)
    return frames_out, expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first_seq=st.integers(0, 1 << 40),
    prev=st.binary(min_size=32, max_size=32),
    payloads=st.lists(st.lists(st.binary(max_size=48), min_size=1, max_size=4), max_size=6),
    cut=st.floats(0.0, 1.0),
    garbage=st.binary(max_size=80),
    mode=st.sampled_from(["cut", "garbage", "cut+garbage", "whole", "zeros", "cut+zeros"]),
)
def test_read_wal_returns_whole_frames_before_the_cut(
    first_seq: int, prev: bytes, payloads: list[list[bytes]], cut: float, garbage: bytes, mode: str
) -> None:
    """read_wal returns exactly the whole frames before a cut or before trailing garbage or zeros (space allocated
    ahead); a torn tail never raises."""
    frame_bytes, expected = _records(first_seq, prev, payloads)
    data = walmod.WalHeader(first_seq, prev).encode() + b"".join(frame_bytes)
    cut_at = len(data)
    if mode in ("cut", "cut+garbage"):
        cut_at = walmod.HEADER_SIZE + int(cut * (len(data) - walmod.HEADER_SIZE))
    tail = {"garbage": garbage, "cut+garbage": garbage, "zeros": bytes(len(garbage)), "cut+zeros": bytes(8192)}
    data = data[:cut_at] + tail.get(mode, b"")
    want, end = [], walmod.HEADER_SIZE
    for fb, exp in zip(frame_bytes, expected, strict=True):
        if end + len(fb) > cut_at:
            break
        end += len(fb)
        want.extend(exp)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / walmod.wal_name(first_seq)
        path.write_bytes(data)
        got = walmod.read_wal(path, TEST_MAC)
    assert [(e.seq, e.event_id, e.hash) for e in got.events] == want
    assert got.good_end == end
    assert got.size == max(end, len(data.rstrip(b"\0"))), "zeros after the last whole frame are no torn tail"
    assert got.header == walmod.WalHeader(first_seq, prev)


def test_encode_frame_crc_covers_the_body_and_the_mac() -> None:
    """The frame layout read_wal relies on: u32 length of the body, u32 CRC-32 of the body and the MAC, the
    body, the MAC of the body (so a torn MAC is a torn frame, and a whole frame with a wrong MAC is forged)."""
    frame = walmod.encode_frame([(b"abc", b"\x01" * 32)], TEST_MAC)
    length, crc = struct.unpack_from(">II", frame)
    body = frame[8:-32]
    assert length == len(body) == len(frame) - 8 - 32 and crc == zlib.crc32(frame[8:])
    assert frame[-32:] == hmac.new(bytes(32), walmod.WAL_TAG + b"\x00\x00\x00\x07journal\x00\x00\x00\x04main" + body,
                                   hashlib.sha256).digest()
