"""The seal worker: a process of its own that a Journal starts to seal its WAL files, so that appends never
wait for a seal and, on two cores, the sustained rate is the larger of the append and the seal costs, not
their sum.

The writer freezes its WAL file (it goes on in a new one) and asks the worker to seal every frozen file; the
worker seals them one by one exactly as the writer would (:func:`wormjournal.journal.sealer.seal_wal_files`):
each file is cut only once its segments, index, manifests and checkpoint are stored. Both hold the stream's
seal lock while they seal, and a writer that opens the stream takes it first, so two never seal the same WAL.
A kill -9 of the worker, of the writer or of both leaves at worst a seal half done, which the next seal
finishes (write-once puts: the same bytes again are no-ops, a stored segment is adopted); a worker whose
writer is gone stops before its next seal. The writer starts the worker again when it finds it dead.

The protocol is JSON lines: the writer's first line describes the journal (its store, stream, WAL and key
directories, the sealing settings); each later line asks for a seal (``{"id": n, "upto": seq}``: every WAL
file that starts below ``seq``), and the worker answers each with ``{"id": n, "ok": true, "sealed": seq}`` (the
stream's next unsealed seq) or ``{"id": n, "ok": false, "error": "...", "kind": "StorageError"}``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .. import errors, steps
from ..errors import JournalError, StorageError
from ..storage import open_store_spec
from ..storage.base import LockingStore
from ..storage.wal import WalMac, list_wal_files
from ..trust.load import read_identity
from .keys import SigningKeys, load_keys, load_wal_key
from .lock import seal_lock
from .sealer import Sealer, load_sealed_state, refresh_sealed_state, seal_wal_files

log = logging.getLogger(__name__)

_MAIN = "import sys; from wormjournal.journal.sealworker import main; sys.exit(main())"
# Crash tests: "step[:n]" makes a worker kill itself (SIGKILL) the n-th time it reaches that step (steps.py).
CRASH_ENV = "WORMJOURNAL_SEAL_WORKER_CRASH_AT"


class SealWorker:
    """The writer's handle on its seal worker process: started on the first request, started again when it
    is found dead. ``on_reply`` is called (from a thread of this handle) with each answer, and with an error
    answer for the requests a dead worker left unanswered."""

    def __init__(self, init: dict[str, Any], on_reply: Callable[[dict[str, Any]], None]) -> None:
        self._init = init
        self._on_reply = on_reply
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._next_id = 0
        self._open: set[int] = set()  # requests sent, not answered
        self._answered = threading.Condition(self._lock)
        self.starts = 0  # processes started (the first, then restarts)
        self.peak_rss_kb = 0  # the largest peak resident memory a worker reported (its seals' memory)

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def request(self, upto: int) -> int:
        """Ask for every WAL file that starts below ``upto`` to be sealed; returns the request's id. Raises
        StorageError when the worker cannot be started."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None or proc.stdin is None:
                proc = self._start()
            self._next_id += 1
            rid = self._next_id
            self._open.add(rid)
            try:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({"id": rid, "upto": upto}).encode() + b"\n")
                proc.stdin.flush()
            except OSError as e:  # it died meanwhile: the reader thread answers for it
                log.warning("the seal worker (pid %s) did not take a request: %s", proc.pid, e)
            return rid

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is not None:
            log.warning("the seal worker (pid %s) exited with %s; starting it again", self._proc.pid,
                        self._proc.returncode)
        try:
            # close_fds (the default): the worker must not hold the writer's stream locks
            proc = subprocess.Popen([sys.executable, "-c", _MAIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    env=dict(os.environ))
        except OSError as e:
            raise StorageError(f"cannot start the seal worker: {e}") from e
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(self._init).encode() + b"\n")
            proc.stdin.flush()
        except OSError:
            pass  # it died at once: the reader sees it
        self._proc = proc
        self.starts += 1
        self._reader = threading.Thread(target=self._read, args=(proc,), name="wormjournal-seal-worker", daemon=True)
        self._reader.start()
        return proc

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            self.peak_rss_kb = max(self.peak_rss_kb, int(reply.get("peak_rss_kb") or 0))
            self._on_reply(reply)
            with self._lock:
                self._open.discard(reply.get("id"))
                self._answered.notify_all()
        code = proc.wait()
        with self._lock:
            if self._proc is not proc:
                return
            lost = sorted(self._open)
            self._open.clear()
        for rid in lost:
            self._on_reply({"id": rid, "ok": False, "kind": "StorageError",
                            "error": f"the seal worker (pid {proc.pid}) exited with {code} before it finished"})
        with self._lock:
            self._answered.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every request sent so far is answered (or its worker died); False on timeout."""
        with self._lock:
            return self._answered.wait_for(lambda: not self._open, timeout)

    def wait_answer(self, timeout: float) -> None:
        """Wait for the next answer (or the worker's death), at most ``timeout`` seconds."""
        with self._lock:
            if self._open:
                self._answered.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Let the worker finish what it was asked and exit; wait for it."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join()

    def kill(self) -> None:
        """Kill the worker at once (tests, and a writer that lost its stream)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()


# -- the worker process ------------------------------------------------------------------------------------


def _crash_hook(spec: str) -> Callable[[str], None]:
    step, _, nth = spec.partition(":")
    remaining = int(nth or 1)

    def hook(name: str) -> None:
        nonlocal remaining
        if name == step:
            remaining -= 1
            if remaining == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


class _Worker:
    def __init__(self, init: dict[str, Any]) -> None:
        self.wal_dir = Path(init["wal_dir"])
        key_dir = Path(init["key_dir"])
        store = open_store_spec(init["store"])
        identity = read_identity(store)
        if identity.journal_id != init["journal_id"]:
            raise JournalError(f"the store holds journal {identity.journal_id}, not {init['journal_id']}")
        if isinstance(store, LockingStore):
            store = store.with_retention(identity.retention_policy())
        stream = init["stream"]
        self.keys = SigningKeys(store, identity.journal_id, stream, key_dir, load_keys(key_dir, identity.journal_id)[0])
        self.mac = WalMac(load_wal_key(key_dir, identity.journal_id), identity.journal_id, stream)
        state = load_sealed_state(store, identity.journal_id, stream, self.keys.ring(), self.wal_dir, self.mac)
        self.sealer = Sealer(store, state, self.keys.key_for, self.keys.ring, row_group_rows=init["row_group_rows"],
                             segment_max_events=init["segment_max_events"], page_rows=init["page_rows"],
                             min_page_rows=init["min_page_rows"])
        self.store = store

    def seal(self, upto: int, parent: int) -> int:
        """Seal every WAL file that starts below ``upto``; returns the stream's next unsealed seq."""
        with seal_lock(self.wal_dir):
            if os.getppid() != parent:  # the writer died while this waited: the next writer seals
                raise JournalError("the writer is gone")
            refresh_sealed_state(self.store, self.sealer.state, self.keys.ring())
            frozen = [p for p in list_wal_files(self.wal_dir) if int(p.stem) < upto]
            seal_wal_files(self.sealer, self.keys, self.wal_dir, self.mac, frozen)
        return self.sealer.state.next_seq


def _peak_rss_kb() -> int | None:
    """This process's peak resident memory (VmHWM), where /proc tells it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _answer(out: IO[bytes], reply: dict[str, Any]) -> None:
    out.write(json.dumps(reply).encode() + b"\n")
    out.flush()


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="wormjournal seal worker: %(levelname)s %(message)s")
    crash = os.environ.get(CRASH_ENV)
    if crash:
        steps.hook = _crash_hook(crash)
    parent = os.getppid()
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but answers on the protocol's pipe
    first = sys.stdin.buffer.readline()
    if not first:
        return 0
    worker: _Worker | None = None
    init_error: Exception | None = None
    try:
        worker = _Worker(json.loads(first))
    except Exception as e:  # noqa: BLE001 - every request is answered with it
        init_error = e
    for line in sys.stdin.buffer:
        if os.getppid() != parent:
            break  # the writer is gone: a writer that opens the stream next seals what is left
        req = json.loads(line)
        try:
            if worker is None:
                assert init_error is not None
                raise init_error
            sealed = worker.seal(int(req["upto"]), parent)
            _answer(out, {"id": req["id"], "ok": True, "sealed": sealed, "peak_rss_kb": _peak_rss_kb()})
        except Exception as e:  # noqa: BLE001 - the writer decides; the worker goes on
            kind = type(e).__name__ if isinstance(e, JournalError) else "JournalError"
            _answer(out, {"id": req["id"], "ok": False, "kind": kind, "error": f"{e}"})
    return 0


def error_of(reply: dict[str, Any]) -> JournalError:
    """The exception an error answer stands for (its class, when it is one of wormjournal.errors)."""
    cls = getattr(errors, str(reply.get("kind")), JournalError)
    if not (isinstance(cls, type) and issubclass(cls, JournalError)):
        cls = JournalError
    try:
        return cls(str(reply.get("error")))
    except TypeError:  # a class that takes other arguments
        return JournalError(str(reply.get("error")))


if __name__ == "__main__":
    sys.exit(main())
