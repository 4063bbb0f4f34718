"""The witness service (``wormjournal witness serve``, C2SP tlog-witness): every answer of ``add-checkpoint`` in the
spec's order, its record and its evidence; and a witness killed with SIGKILL at random points that never cosigns
two inconsistent checkpoints and never loses one it cosigned."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest
from witness_support import WitnessProcess

from wormjournal.errors import ConfigError, LockedError, WitnessError
from wormjournal.segments import merkle
from wormjournal.segments.cosign import Cosigner, add_checkpoint_body, cosignatures
from wormjournal.segments.manifest import Checkpoint
from wormjournal.segments.notes import SigningKey
from wormjournal.witness.client import WitnessConfig, add_checkpoint, post
from wormjournal.witness.service import EVIDENCE_DIR, SIZE_TYPE, Witness, parse_log

ORIGIN = "example.com/log"


class Log:
    """A log of random leaves and its signed checkpoints; ``fork(at)`` is another log sharing the first leaves."""

    def __init__(self, key: SigningKey, leaves: list[bytes]) -> None:
        self.key, self.leaves = key, leaves

    @classmethod
    def new(cls, key: SigningKey, size: int, seed: int) -> Log:
        rnd = random.Random(seed)
        return cls(key, [merkle.leaf_hash(rnd.randbytes(32)) for _ in range(size)])

    def fork(self, at: int, seed: int) -> Log:
        rnd = random.Random(seed)
        return Log(self.key, self.leaves[:at] + [merkle.leaf_hash(rnd.randbytes(32)) for _ in self.leaves[at:]])

    def root(self, size: int) -> bytes:
        return merkle.root_from_leaf_hashes(self.leaves[:size])

    def note(self, size: int, origin: str = ORIGIN) -> bytes:
        return self.key.sign_note(Checkpoint(origin, size, self.root(size)).text())

    def proof(self, old: int, size: int) -> list[bytes]:
        return merkle.consistency_path(self.leaves[:size], old) if 0 < old < size else []

    def body(self, old: int, size: int) -> bytes:
        return add_checkpoint_body(old, self.proof(old, size), self.note(size))


@pytest.fixture
def log_key() -> SigningKey:
    return SigningKey.generate(ORIGIN)


@pytest.fixture
def witness(tmp_path: Path, log_key: SigningKey) -> Witness:
    w = Witness(tmp_path / "state", {ORIGIN: [log_key.verify_key]}, name="w.example", clock=lambda: 1_700_000_000)
    yield w
    w.close()


def test_add_checkpoint_answers_in_the_specs_order(witness: Witness, log_key: SigningKey) -> None:
    log = Log.new(log_key, 20, 1)
    # First contact: old 0, no proof; the answer is a cosignature that verifies on the note.
    a = witness.add_checkpoint(log.body(0, 5))
    assert a.status == 200
    assert cosignatures(log.note(5) + a.body, [witness.cosigner]) == {"w.example": 1_700_000_000}
    assert witness.record(ORIGIN).size == 5 and witness.record(ORIGIN).root == log.root(5)
    # A wrong old size: 409 with the witness's size, as text/x.tlog.size.
    a = witness.add_checkpoint(log.body(3, 9))
    assert (a.status, a.body, a.content_type) == (409, b"5\n", SIZE_TYPE)
    a = witness.add_checkpoint(log.body(0, 9))
    assert (a.status, a.body) == (409, b"5\n")
    # The right one with its proof; the same checkpoint again is cosigned again (a fresh timestamp).
    assert witness.add_checkpoint(log.body(5, 9)).status == 200
    assert witness.add_checkpoint(log.body(9, 9)).status == 200
    assert witness.record(ORIGIN).size == 9
    # A fork: same size, another root (409), and a larger one that does not extend the record (422).
    fork = log.fork(7, 2)
    assert witness.add_checkpoint(fork.body(9, 9)).status == 409
    assert witness.add_checkpoint(fork.body(9, 12)).status == 422
    assert witness.add_checkpoint(add_checkpoint_body(9, log.proof(8, 12), log.note(12))).status == 422
    assert witness.record(ORIGIN).root == log.root(9)
    # Bad requests: old > size, a proof from 0, a body that does not parse.
    assert witness.add_checkpoint(log.body(9, 9).replace(b"old 9", b"old 10")).status == 400
    assert witness.add_checkpoint(add_checkpoint_body(0, [b"\x00" * 32], log.note(12))).status == 400
    assert witness.add_checkpoint(b"old 9\n\nnot a checkpoint").status == 400
    # An unknown log (404), and a known one not signed by its key (403).
    assert witness.add_checkpoint(log.body(0, 3).replace(ORIGIN.encode(), b"example.org/log", 1)).status in (403, 404)
    other = Log(SigningKey.generate("other.example/log"), log.leaves)
    assert witness.add_checkpoint(add_checkpoint_body(0, [], other.note(3, "other.example/log"))).status == 404
    stranger = Log(SigningKey.generate(ORIGIN), log.leaves)
    assert witness.add_checkpoint(stranger.body(9, 12)).status == 403
    assert witness.record(ORIGIN).size == 9
    # The refused requests the log's key signed are kept, each with its status; the others are not.
    kept = sorted(p.read_bytes() for p in (witness.state / EVIDENCE_DIR).iterdir())
    statuses = sorted(line.split(b" ")[1] for k in kept for line in k.splitlines() if line.startswith(b"status "))
    assert statuses == [b"400", b"400", b"409", b"422", b"422"]
    assert all(b"example.com/log" in k for k in kept)


def test_state_survives_a_restart_and_one_process_serves_it(tmp_path: Path, log_key: SigningKey) -> None:
    logs = {ORIGIN: [log_key.verify_key]}
    w = Witness(tmp_path / "state", logs, name="w.example")
    log = Log.new(log_key, 10, 3)
    assert w.add_checkpoint(log.body(0, 4)).status == 200
    with pytest.raises(LockedError):
        Witness(tmp_path / "state", logs)
    vkey = w.cosigner.vkey()
    w.close()
    again = Witness(tmp_path / "state", logs)  # its name and key from the state directory
    assert again.cosigner.vkey() == vkey and again.record(ORIGIN).size == 4
    assert again.add_checkpoint(log.body(0, 6)).body == b"4\n"
    again.close()
    with pytest.raises(ConfigError, match="named"):
        Witness(tmp_path / "state", logs, name="another.example")
    with pytest.raises(ConfigError, match="--name"):
        Witness(tmp_path / "fresh", logs)
    assert oct((tmp_path / "state" / "witness.key").stat().st_mode & 0o777) == "0o600"


def test_log_and_witness_specs_are_checked(log_key: SigningKey) -> None:
    assert parse_log(f"{ORIGIN}={log_key.verify_key.vkey()}") == (ORIGIN, log_key.verify_key)
    for bad in (ORIGIN, f"={log_key.verify_key.vkey()}", f"{ORIGIN}=nonsense"):
        with pytest.raises(ConfigError):
            parse_log(bad)
    cosigner = Cosigner("w.example", SigningKey.generate("x").private.public_key())
    assert WitnessConfig.parse(f"http://127.0.0.1:1/w/={cosigner.vkey()}").url == "http://127.0.0.1:1/w"
    for bad in (f"ftp://x={cosigner.vkey()}", f"http://x={log_key.verify_key.vkey()}", "http://x"):
        with pytest.raises(ConfigError):
            WitnessConfig.parse(bad)


def test_the_http_service_and_the_client(tmp_path: Path, log_key: SigningKey) -> None:
    """The service as a process: the client's add_checkpoint learns the size from a 409, sends the proof, checks the
    cosignature; a GET, another path and an oversized body are refused."""
    w = WitnessProcess(tmp_path / "w", "w.example", [f"{ORIGIN}={log_key.verify_key.vkey()}"], cli=True)
    try:
        cfg = WitnessConfig.parse(w.spec)
        log = Log.new(log_key, 40, 5)
        line, _ = add_checkpoint(cfg, log.note(10), 10, 0, lambda old: log.proof(old, 10))
        assert cosignatures(log.note(10) + line.encode(), [w.cosigner])
        line, _ = add_checkpoint(cfg, log.note(30), 30, 0, lambda old: log.proof(old, 30))  # learns 10 from a 409
        with pytest.raises(WitnessError, match="more than this store"):
            add_checkpoint(cfg, log.note(20), 20, 0, lambda old: log.proof(old, 20))
        fork = log.fork(25, 6)
        with pytest.raises(WitnessError, match="fork"):
            add_checkpoint(cfg, fork.note(35), 35, 30, lambda old: fork.proof(old, 35))
        assert post(f"{w.url}/other", b"")[0] == 404
        assert post(f"{w.url}/add-checkpoint", b"x" * (2 << 20))[0] == 413
        w.kill()
        with pytest.raises(WitnessError, match="cannot be reached"):
            add_checkpoint(cfg, log.note(30), 30, 30, lambda old: [])
    finally:
        w.kill()


def test_a_witness_killed_at_random_points_never_cosigns_a_fork_nor_forgets(tmp_path: Path,
                                                                          log_key: SigningKey) -> None:
    """A client submits checkpoints of a log and of a fork of it (sharing its first 60 leaves), growing, while the
    witness process is killed with SIGKILL at random moments and started again on its state (40 kills).
    Every cosignature it gave lies on one branch, in order of size, and after each restart it still holds the
    largest checkpoint it cosigned."""
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    log = Log.new(log_key, 400, seed)
    fork = log.fork(60, seed + 1)
    w = WitnessProcess(tmp_path / "w", "w.example", [f"{ORIGIN}={log_key.verify_key.vkey()}"])
    cfg = WitnessConfig.parse(w.spec)
    cosigned: list[tuple[int, bytes]] = []  # in the order the answers came
    lock = threading.Lock()
    stop = threading.Event()

    failures: list[BaseException] = []

    def client() -> None:
        try:
            submit()
        except BaseException as e:  # noqa: BLE001 - failed below, in the test's thread
            failures.append(e)

    def submit() -> None:
        believed, size = 0, 0
        while not stop.is_set():
            branch = log if rnd.random() < 0.7 else fork
            size = min(400, max(size, believed) + rnd.randint(0, 4))
            if size == 0:
                size = 1
            old = believed if believed <= size else 0
            try:
                status, ctype, body = post(f"{cfg.url}/add-checkpoint", branch.body(old, size), timeout=5)
            except WitnessError:
                time.sleep(0.02)  # killed: it comes back
                continue
            if status == 200:
                got = cosignatures(branch.note(size) + body, [w.cosigner])
                assert "w.example" in got, body  # a body cut short by a kill raises above instead
                with lock:
                    cosigned.append((size, branch.root(size)))
                believed = size
            elif status == 409 and ctype == SIZE_TYPE:
                believed = int(body)
            if size == 400:
                size = believed

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    kills = 0
    try:
        while kills < 40:
            time.sleep(rnd.uniform(0.05, 0.4))
            w.kill()
            kills += 1
            with lock:
                most = max((s for s, _ in cosigned), default=0)
            w.restart()
            # It still holds the largest checkpoint it cosigned: asked from 0, it answers with that size or more.
            status, _, body = post(f"{w.url}/add-checkpoint", log.body(0, 1), timeout=5)
            held = 0 if status == 200 else int(body)
            assert status == 200 and most == 0 or held >= most, (seed, kills, held, most)
    finally:
        stop.set()
        thread.join(timeout=10)
        w.kill()
    assert not failures, (seed, failures)
    assert len(cosigned) > 30, f"too few cosignatures to mean anything ({len(cosigned)}; seed {seed})"
    sizes = [s for s, _ in cosigned]
    assert sizes == sorted(sizes), f"a cosigned size went back (seed {seed})"
    on_log = {s for s, r in cosigned if s > 60 and r == log.root(s)}
    on_fork = {s for s, r in cosigned if s > 60 and r == fork.root(s)}
    assert not (on_log and on_fork), f"cosigned both branches (seed {seed}): {sorted(on_log)[:5]} {sorted(on_fork)[:5]}"
    assert all(r in (log.root(s), fork.root(s)) for s, r in cosigned)
    assert os.listdir(tmp_path / "w" / "logs")
