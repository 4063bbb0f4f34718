"""Witnesses as real processes on 127.0.0.1, for the witness tests: ``wormjournal witness serve`` started as a command,
or the same service in a process forked from the test's (no interpreter to start and import: a kill and a restart
cost milliseconds, not a second)."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wormjournal.segments.cosign import Cosigner
from wormjournal.segments.head import head_origin
from wormjournal.storage import open_store
from wormjournal.trust import load_trust
from wormjournal.witness.service import Witness, parse_log, serve


def _serve(state: str, name: str, logs: Sequence[str], port: int, conn: Any) -> None:
    """The forked witness: what ``wormjournal witness serve`` runs."""
    keys: dict[str, list[Any]] = {}
    for spec in logs:
        origin, key = parse_log(spec)
        keys.setdefault(origin, []).append(key)
    witness = Witness(Path(state), keys, name=name)
    serve(witness, "127.0.0.1", port, ready=lambda p: conn.send((p, witness.cosigner.vkey())))


class WitnessProcess:
    """A witness in a process of its own, with its state in ``state``, restartable on the same port after a kill:
    ``wormjournal witness serve`` with ``cli``, else forked from this process."""

    def __init__(self, state: Path, name: str, logs: Sequence[str], port: int = 0, *, cli: bool = False) -> None:
        self.state, self.name, self.logs = state, name, list(logs)
        self.port = port
        self.cli = cli
        self.proc: subprocess.Popen[str] | None = None
        self.child: Any = None
        self.vkey = ""
        self.start()

    def start(self) -> None:
        if not self.cli:
            ours, theirs = multiprocessing.Pipe()
            self.child = multiprocessing.get_context("fork").Process(
                target=_serve, args=(str(self.state), self.name, self.logs, self.port, theirs), daemon=True)
            self.child.start()
            deadline = time.monotonic() + 10
            while not ours.poll(0.02):
                if not self.child.is_alive() or time.monotonic() > deadline:
                    self.child.kill()
                    self.child.join(10)
                    self.child = None
                    raise RuntimeError("the witness did not start (its port in use?)")
            self.port, self.vkey = ours.recv()
            return
        args = [sys.executable, "-m", "wormjournal", "witness", "serve", "--state", str(self.state), "--name",
                self.name, "--port", str(self.port)]
        for spec in self.logs:
            args += ["--log", spec]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        second = self.proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", first)
        if match is None or not second.startswith("verifier key: "):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise RuntimeError(f"the witness did not start: {first!r} {second!r} {err[-2000:]}")
        self.port = int(match[1])
        self.vkey = second.split(": ", 1)[1].strip()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def spec(self) -> str:
        """What a writer's --witness takes."""
        return f"{self.url}={self.vkey}"

    @property
    def cosigner(self) -> Cosigner:
        return Cosigner.from_vkey(self.vkey)

    def kill(self) -> None:
        if self.child is not None:
            if self.child.is_alive():
                os.kill(self.child.pid, signal.SIGKILL)
            self.child.join(10)
            self.child = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.proc is not None:
            for f in (self.proc.stdout, self.proc.stderr):
                if f is not None:
                    f.close()
        self.proc = None

    def restart(self) -> None:
        self.kill()
        deadline = time.monotonic() + 10
        while True:
            try:
                self.start()
                return
            except (RuntimeError, EOFError):  # the port is not free again yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def witness_logs(store: str, endpoint: str | None = None, *, cli: bool = False) -> list[str]:
    """The --log specs of ``wormjournal witness logs STORE`` (run as a process with ``cli``; else as it computes
    them, in this process: the head log's origin with each key of the journal)."""
    if cli:
        extra = ["--endpoint-url", endpoint] if endpoint else []
        out = subprocess.run([sys.executable, "-m", "wormjournal", "witness", "logs", store, *extra],
                             capture_output=True, text=True, check=True).stdout.split()
        return [out[i + 1] for i in range(0, len(out), 2) if out[i] == "--log"]
    trust = load_trust(open_store(store, endpoint_url=endpoint))
    return [f"{head_origin(trust.journal_id)}={key.vkey()}" for key in trust.keys()]
