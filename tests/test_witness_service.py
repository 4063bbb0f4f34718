"""The witness service (``wormjournal witness serve``, C2SP tlog-witness): every answer of ``add-checkpoint`` in the
spec's order, its record and its evidence; and a witness killed with SIGKILL at random points that never cosigns
two inconsistent checkpoints and never loses one it cosigned."""

from __future__ import annotations

import contextlib
import http.server
import os
import random
import socket
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
from wormjournal.verify import WitnessPolicy
from wormjournal.witness import service
from wormjournal.witness.client import WitnessConfig, add_checkpoint, post
from wormjournal.witness.service import EVIDENCE_DIR, SIZE_TYPE, Witness, parse_log, running

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
    # The refused requests that contradict the record (a fork, signed by the log's key) are kept, once each; the
    # others are not (anyone can replay a signed checkpoint with a bad old size).
    assert witness.add_checkpoint(fork.body(9, 12)).status == 422  # the same request again
    kept = sorted(p.read_bytes() for p in (witness.state / EVIDENCE_DIR).iterdir())
    statuses = sorted(line.split(b" ")[1] for k in kept for line in k.splitlines() if line.startswith(b"status "))
    assert statuses == [b"409", b"422", b"422"]
    assert all(b"example.com/log" in k for k in kept)
    # A size of more digits than a 64-bit number has: a bad request, not a failure of the witness.
    assert witness.add_checkpoint(b"old " + b"9" * 5000 + b"\n\n" + log.note(12)).status == 400


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
    witness process is killed with SIGKILL at random moments and started again on its state (24 kills a run, a new
    seed each run).
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
        while kills < 24:
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


# -- what a misbehaving witness or client can and cannot do -------------------------------------------------------


class _Fake(http.server.BaseHTTPRequestHandler):
    """A witness that answers out of the protocol, as ``mode`` says."""

    mode = "garbage200"

    def do_POST(self) -> None:  # noqa: N802 - the http.server name
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.mode == "huge":  # 200 and no length: a body that never ends (until the deadline)
            self.send_response(200)
            self.end_headers()
            with contextlib.suppress(OSError):
                while True:
                    self.wfile.write(b"x" * 65536)
            return
        status, headers, body = {
            "garbage200": (200, [("Content-Length", "9")], b"not a sig"),
            "badlength": (200, [("Content-Length", "abc")], b""),
            "neg409": (409, [("Content-Type", SIZE_TYPE), ("Content-Length", "3")], b"-5\n"),
            "hang": (0, [], b""),
        }[self.mode]
        if not status:
            time.sleep(30)
            return
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the http.server signature
        pass


@pytest.mark.parametrize("mode", ["garbage200", "badlength", "neg409", "huge", "hang"])
def test_a_misbehaving_witness_holds_up_neither_the_writer_nor_the_other_witnesses(
        tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from wormjournal.journal import Journal, JournalConfig
    from wormjournal.segments.head import head_origin
    from wormjournal.witness import client

    monkeypatch.setattr(client, "TIMEOUT_SECONDS", 1.0)
    handler = type("Fake", (_Fake,), {"mode": mode})
    bad = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    bad.daemon_threads = True
    threading.Thread(target=bad.serve_forever, daemon=True).start()
    with Journal.create(tmp_path / "s", key_dir=tmp_path / "k", config=JournalConfig(seal_max_age_seconds=None)) as j:
        logs = {head_origin(j.journal_id): [j.verify_key]}
    good = Witness(tmp_path / "w", logs, name="good.example")
    liar = Cosigner("bad.example", SigningKey.generate("x").private.public_key())
    try:
        with running(good) as url:
            specs = (f"http://127.0.0.1:{bad.server_address[1]}={liar.vkey()}", f"{url}={good.cosigner.vkey()}")
            cfg = JournalConfig(seal_max_age_seconds=None, witnesses=specs, witness_interval_seconds=0.2)
            started = time.monotonic()
            j = Journal.open(tmp_path / "s", key_dir=tmp_path / "k", config=cfg)
            for i in range(3):
                j.append("node_started", "run-1", {"i": i})
                j.seal()
            sealing = time.monotonic() - started
            deadline = time.monotonic() + 10
            while j.witness_status()[1].cosigned != 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            status = j.witness_status()
            closing = time.monotonic()
            j.close()  # never raises, and does not wait long for a witness that hangs
            closed = time.monotonic() - closing
    finally:
        bad.shutdown()
        good.close()
    assert sealing < 5 and closed < 4, (sealing, closed)
    assert status[1].cosigned == 3 and status[1].error is None, status
    assert status[0].error is not None and status[0].cosigned == 0, status
    names = [p.name for p in (tmp_path / "s" / "witness" / "heads").iterdir()]
    assert names and all(good.cosigner.key_hash.hex() in n for n in names)  # nothing of the liar's


def test_a_dripping_client_is_cut_at_the_deadline_and_its_slot_freed(tmp_path: Path, log_key: SigningKey,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "REQUEST_SECONDS", 0.5)
    monkeypatch.setattr(service, "MAX_CONNECTIONS", 2)
    w = Witness(tmp_path / "w", {ORIGIN: [log_key.verify_key]}, name="w.example")
    log = Log.new(log_key, 4, 9)
    try:
        with running(w) as url:
            host, port = url.rsplit(":", 1)
            drips = [socket.create_connection(("127.0.0.1", int(port))) for _ in range(2)]
            for s in drips:
                s.sendall(b"POST /add-checkpoint HTTP/1.1\r\n")  # and never the rest
            time.sleep(1.5)  # past the deadline: both are cut, their slots free again
            assert post(f"{url}/add-checkpoint", log.body(0, 3), timeout=5)[0] == 200
            for s in drips:
                assert s.recv(100) == b""  # closed by the witness
                s.close()
    finally:
        w.close()


def test_two_witnesses_starting_on_a_new_directory_agree_on_its_key(tmp_path: Path, log_key: SigningKey) -> None:
    for round_ in range(20):
        state = tmp_path / f"s{round_}"
        results: list[Witness | BaseException] = []

        def start(state: Path, results: list[Witness | BaseException]) -> None:
            try:
                results.append(Witness(state, {ORIGIN: [log_key.verify_key]}, name="w.example"))
            except BaseException as e:  # noqa: BLE001 - counted below
                results.append(e)

        threads = [threading.Thread(target=start, args=(state, results)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [r for r in results if isinstance(r, Witness)]
        assert len(winners) == 1 and isinstance(next(r for r in results if r is not winners[0]), LockedError)
        winner = winners[0]
        winner.close()
        assert Witness(state, {ORIGIN: [log_key.verify_key]}).cosigner.vkey() == winner.cosigner.vkey()


def test_a_quorum_counts_distinct_witnesses() -> None:
    a = Cosigner("witness", SigningKey.generate("a").private.public_key())
    b = Cosigner("witness", SigningKey.generate("b").private.public_key())
    for same in ((a, a), (a, b)):
        with pytest.raises(ConfigError, match="once"):
            WitnessPolicy(same, 2, 0)
    with pytest.raises(ConfigError, match="quorum"):
        WitnessPolicy((a,), 2, 0)
