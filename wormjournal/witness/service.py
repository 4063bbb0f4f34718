"""A C2SP tlog-witness (https://c2sp.org/tlog-witness): ``wormjournal witness serve``.

The witness keeps, for each log it is configured for (an origin and the log's public keys), the latest
checkpoint it cosigned, and cosigns a new one only if it is a consistent extension of that record. Its
promise is that it never cosigns two inconsistent checkpoints of one log and never forgets one it cosigned,
whatever kills it:

- the record of a log is one file (origin, size, root), replaced atomically: written to a new name, fsync'd,
  renamed over the old one, the directory fsync'd;
- a request is checked against the record and the new record persisted under one lock, and answered only
  after that (the race the spec describes cannot happen), so a cosignature is never out before its record;
- one process serves a state directory (an exclusive lock on it), so two witnesses never share records.

A refused request that contradicts the record with a checkpoint the log's key signed is kept under
``evidence/``: two inconsistent checkpoints signed by a log are proof that it forked. Other refused requests are
not kept (anyone can send them, or replay a signed checkpoint with a bad old size).

The state directory::

    witness.key        the witness's Ed25519 private key (PEM, mode 0600) and, in witness.name, its name
    logs/<h>.json      a log's record: {"origin", "size", "root"}, h = SHA-256 of the origin (hex, 32 digits)
    evidence/          refused requests signed by a log's key that contradict its record
    lock               held by the serving process
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import http.server
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import ConfigError, LockedError, NoteError
from ..segments import merkle
from ..segments.cosign import Cosigner, cosign, parse_add_checkpoint
from ..segments.manifest import Checkpoint
from ..segments.notes import VerifyKey, open_note, split_note
from ..storage.local import fsync_dir

log = logging.getLogger(__name__)

KEY_FILE = "witness.key"
NAME_FILE = "witness.name"
LOGS_DIR = "logs"
EVIDENCE_DIR = "evidence"
LOCK_FILE = "lock"
MAX_BODY = 1 << 20  # a head names every stream: 1 MiB is some 10,000 streams
MAX_EVIDENCE = 10_000  # refused signed requests kept (each a fork's proof; more only repeat the point)
MAX_CONNECTIONS = 64  # connections served at once; more are closed at once
REQUEST_SECONDS = 30.0  # a connection's whole life: a client that drips bytes cannot hold a thread longer
SIZE_TYPE = "text/x.tlog.size"
EMPTY_ROOT = merkle.frontier_root([])


@dataclasses.dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, content type and body."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


@dataclasses.dataclass(frozen=True)
class Record:
    origin: str
    size: int
    root: bytes

    def encode(self) -> bytes:
        return (json.dumps({"origin": self.origin, "size": self.size, "root": base64.b64encode(self.root).decode()},
                           sort_keys=True) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes) -> Record:
        raw = json.loads(data)
        root = base64.b64decode(raw["root"], validate=True)
        if not isinstance(raw["size"], int) or raw["size"] < 0 or len(root) != 32:
            raise ValueError("not a witness record")
        return cls(raw["origin"], raw["size"], root)


def parse_log(spec: str) -> tuple[str, VerifyKey]:
    """``ORIGIN=VKEY`` of ``--log``: a log's origin and one of its Ed25519 verifier keys. Raises ConfigError."""
    origin, sep, vkey = spec.rpartition("=")
    if not sep or not origin or "\n" in origin:
        raise ConfigError(f"--log takes ORIGIN=VERIFIER_KEY, not {spec[:80]!r}")
    try:
        return origin, VerifyKey.from_vkey(vkey)
    except NoteError as e:
        raise ConfigError(f"--log {origin}: {e}") from e


def load_or_create_key(state: Path, name: str | None) -> tuple[str, Ed25519PrivateKey]:
    """The witness's name and key from its state directory, made there on first use (``name`` needed then), under
    the directory's lock: of two processes starting on a new directory, one makes the key and the other reads it.
    Raises ConfigError."""
    key_path = state / KEY_FILE
    if not key_path.exists():
        if name is None:
            raise ConfigError(f"{state} holds no witness key yet: give the witness a --name to make one")
        state.mkdir(parents=True, exist_ok=True)
        fd = os.open(state / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a witness serves it: it made its key before it served
                pass
            else:
                if not key_path.exists():
                    _create_key(state, name)
        finally:
            os.close(fd)  # closing the descriptor drops the lock
    return _read_key(state, name)


def _create_key(state: Path, name: str) -> None:
    key = Ed25519PrivateKey.generate()
    Cosigner(name, key.public_key())  # the name's form is checked before anything is written
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    _write_atomic(state / NAME_FILE, (name + "\n").encode())
    _write_atomic(state / KEY_FILE, pem, mode=0o600)  # last: a key file is there only with its name


def _read_key(state: Path, name: str | None) -> tuple[str, Ed25519PrivateKey]:
    key_path = state / KEY_FILE
    try:
        stored = (state / NAME_FILE).read_text().strip()
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the witness key in {state}: {e}") from e
    if name is not None and name != stored:
        raise ConfigError(f"the witness in {state} is named {stored!r}, not {name!r}")
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{key_path} is not an Ed25519 key")
    return stored, key


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """``path`` holds ``data`` or what it held before, whenever the process dies (and after a crash of the machine
    once this returns)."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


class Witness:
    """The witness's logic and durable state (no HTTP): :meth:`add_checkpoint` answers one request."""

    def __init__(self, state: Path, logs: Mapping[str, Sequence[VerifyKey]], name: str | None = None,
                 clock: Any = time.time) -> None:
        self.state = Path(state)
        if name is None and not (self.state / KEY_FILE).exists():
            raise ConfigError(f"{self.state} holds no witness key yet: give the witness a --name to make one")
        self.state.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.state / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # before the key: one process makes it
        except BlockingIOError as e:
            os.close(self._lock_fd)
            raise LockedError(f"another witness process serves {self.state}") from e
        try:
            if not (self.state / KEY_FILE).exists():
                _create_key(self.state, name)  # type: ignore[arg-type]  # not None: checked above
            self.name, self._key = _read_key(self.state, name)
            (self.state / LOGS_DIR).mkdir(exist_ok=True)
            (self.state / EVIDENCE_DIR).mkdir(exist_ok=True)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.cosigner = Cosigner(self.name, self._key.public_key())
        self.logs = {origin: list(keys) for origin, keys in logs.items()}
        self._clock = clock
        self._lock = threading.Lock()
        self._evidence = len(os.listdir(self.state / EVIDENCE_DIR))

    def close(self) -> None:
        os.close(self._lock_fd)

    def _record_path(self, origin: str) -> Path:
        return self.state / LOGS_DIR / f"{hashlib.sha256(origin.encode()).hexdigest()[:32]}.json"

    def record(self, origin: str) -> Record:
        """The latest checkpoint cosigned for ``origin`` (size 0 when none)."""
        try:
            rec = Record.decode(self._record_path(origin).read_bytes())
        except FileNotFoundError:
            return Record(origin, 0, EMPTY_ROOT)
        if rec.origin != origin:
            raise ConfigError(f"{self._record_path(origin)} is the record of {rec.origin!r}, not {origin!r}")
        return rec

    def add_checkpoint(self, body: bytes) -> Answer:
        """One ``add-checkpoint`` request (its body), checked in the order of the spec."""
        try:
            old, proof, note = parse_add_checkpoint(body)
            text, _ = split_note(note)
            lines = text.split("\n")
            cp = Checkpoint.parse("\n".join(lines[:3]) + "\n")  # a checkpoint's lines; extension lines follow
        except NoteError as e:
            return Answer(400, f"{e}\n".encode())
        keys = self.logs.get(cp.origin)
        if keys is None:
            return Answer(404, f"unknown log {cp.origin}\n".encode())
        try:
            open_note(note, keys)
        except NoteError as e:
            return Answer(403, f"not signed by a key of {cp.origin}: {e}\n".encode())
        if old > cp.tree_size:
            return self._refuse(400, f"old size {old} is larger than the checkpoint's {cp.tree_size}", body, cp)
        if old == 0 and proof:
            return self._refuse(400, "a consistency proof from size 0 must be empty", body, cp)
        with self._lock:  # check and persist at once
            rec = self.record(cp.origin)
            if old != rec.size:
                return Answer(409, f"{rec.size}\n".encode(), SIZE_TYPE)
            if old == cp.tree_size:
                if cp.root_hash != rec.root:
                    return self._refuse(409, f"size {old} has another root than the one cosigned", body, cp)
            elif old and not merkle.consistent(old, rec.root, cp.tree_size, cp.root_hash, proof):
                return self._refuse(422, f"no consistency from size {old} to {cp.tree_size}", body, cp)
            if (cp.tree_size, cp.root_hash) != (rec.size, rec.root):
                _write_atomic(self._record_path(cp.origin), Record(cp.origin, cp.tree_size, cp.root_hash).encode())
            line = cosign(self._key, self.name, text, int(self._clock()))
        return Answer(200, line.encode())

    def _refuse(self, status: int, reason: str, body: bytes, cp: Checkpoint) -> Answer:
        """Refuse, and keep a request that the log's key signed and that contradicts the record (409 at the same
        size, 422): it proves the log forked. Kept once per body (named by its hash), at most MAX_EVIDENCE."""
        log.warning("witness: refused %s at %d: %s", cp.origin, cp.tree_size, reason)
        if status in (409, 422) and self._evidence < MAX_EVIDENCE:
            path = self.state / EVIDENCE_DIR / f"{hashlib.sha256(body).hexdigest()[:32]}-{status}.txt"
            head = f"origin {cp.origin}\nsize {cp.tree_size}\nstatus {status}\nreason {reason}\n\n".encode()
            if not path.exists():
                try:
                    _write_atomic(path, head + body)
                    self._evidence += 1
                except OSError as e:
                    log.error("witness: could not keep the refused request as evidence: %s", e)
        return Answer(status, f"{reason}\n".encode())


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as the spec asks
    timeout = REQUEST_SECONDS  # seconds a connection may stay silent

    def setup(self) -> None:
        super().setup()
        # The connection's whole life is bounded, however slowly the client drips its bytes.
        self._deadline = threading.Timer(REQUEST_SECONDS, self._cut)
        self._deadline.daemon = True
        self._deadline.start()

    def _cut(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        self._deadline.cancel()
        with contextlib.suppress(OSError):
            super().finish()

    def do_POST(self) -> None:  # noqa: N802 - the http.server name
        if self.path.rstrip("/").rsplit("/", 1)[-1] != "add-checkpoint":
            self._send(Answer(404, b"not found\n"))
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(Answer(411, b"a Content-Length is required\n"))
            return
        if not 0 <= length <= MAX_BODY:
            if 0 < length <= 16 * MAX_BODY:  # read and dropped, so that the client reads the answer
                while length > 0 and (chunk := self.rfile.read(min(length, 1 << 16))):
                    length -= len(chunk)
            self._send(Answer(413, b"the request is too large\n"))
            self.close_connection = True
            return
        body = self.rfile.read(length)
        try:
            answer = self.server.witness.add_checkpoint(body)
        except Exception:  # noqa: BLE001 - an answer for the client; the witness goes on
            log.exception("witness: request failed")
            answer = Answer(500, b"internal error\n")
        self._send(answer)

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        self._send(Answer(405, b"use POST <prefix>/add-checkpoint\n"))

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server signature
        log.info("witness: %s " + format, self.address_string(), *args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], witness: Witness) -> None:
        self.witness = witness
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # as many connections as it serves: this one is closed
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


@contextlib.contextmanager
def running(witness: Witness, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """The witness served from a background thread for the ``with`` block; yields its URL."""
    server = _Server((host, port), witness)
    thread = threading.Thread(target=server.serve_forever, name="witness", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def serve(witness: Witness, host: str, port: int, *, ready: Any = None) -> None:
    """Serve ``witness`` on ``host:port`` until interrupted. ``ready(port)`` is called once it listens."""
    server = _Server((host, port), witness)
    try:
        if ready is not None:
            ready(server.server_address[1])
        server.serve_forever()
    finally:
        server.server_close()
