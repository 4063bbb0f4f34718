"""A child process for the step-crash tests: runs one ``wormjournal`` command and kills itself (SIGKILL) at the
N-th time the command reaches a named step (:mod:`wormjournal.steps`).

Two ways to run it, with the repository root on PYTHONPATH:

``python tests/step_child.py run [--crash-at STEP] [--occurrence N] [--trace FILE] -- ARGS...``
    one command, ``wormjournal ARGS...``, in this process; its exit status is the command's (or -9).

``python tests/step_child.py serve``
    a fork server: it imports wormjournal (and pyarrow, boto3) once, prints ``READY``, then reads one job a
    line on stdin, a JSON object ``{"argv": [...], "crash_at": STEP or null, "occurrence": N, "trace": FILE
    or null, "log": FILE, "env": {...}, "unset": [...]}``, runs it in a forked child (stdout and stderr to
    ``log``, its environment changed as ``env`` and ``unset`` say) and prints
    ``EXIT <status>`` (the exit code, or minus the signal number). Forking from an interpreter that has
    imported everything already costs milliseconds where a new interpreter costs most of a second, which
    is what lets the tests kill a command at each of a hundred steps within the suite's budget.

With ``--trace`` (``trace``) each step reached is appended to FILE as one line, ``<step>``, with one
unbuffered write: the steps passed before a kill are all there.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from wormjournal import cli, steps


def install(crash_at: str | None, occurrence: int, trace: str | None) -> None:
    """Hook every step: note it in ``trace`` and die by SIGKILL the ``occurrence``-th time ``crash_at`` is
    reached (steps may be reached from worker threads: the count is locked)."""
    seen = 0
    lock = threading.Lock()
    fd = os.open(trace, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if trace else -1

    def on_step(name: str) -> None:
        nonlocal seen
        with lock:
            if fd >= 0:
                os.write(fd, f"{name}\n".encode())
            if name == crash_at:
                seen += 1
                if seen == occurrence:
                    os.kill(os.getpid(), signal.SIGKILL)

    steps.hook = on_step


def run(argv: list[str], crash_at: str | None, occurrence: int, trace: str | None) -> int:
    install(crash_at, occurrence, trace)
    code = cli.main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def serve() -> int:
    """The fork server (see the module docstring)."""
    print("READY", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: never returns into the loop
            code = 70
            try:
                fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(fd)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                sys.stdin = open(0)  # noqa: SIM115 - the child's stdin, not the server's job pipe
                for name in job.get("unset", []):
                    os.environ.pop(name, None)
                os.environ.update(job.get("env", {}))
                code = run(job["argv"], job.get("crash_at"), job.get("occurrence", 1), job.get("trace"))
            except BaseException as e:  # noqa: BLE001 - reported in the log, the status says it failed
                os.write(2, f"step_child: {type(e).__name__}: {e}\n".encode())
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(f"EXIT {code}", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("run")
    r.add_argument("--crash-at", default=None)
    r.add_argument("--occurrence", type=int, default=1)
    r.add_argument("--trace", default=None)
    r.add_argument("argv", nargs=argparse.REMAINDER)
    sub.add_parser("serve")
    args = ap.parse_args()
    if args.mode == "serve":
        return serve()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    return run(argv, args.crash_at, args.occurrence, args.trace)


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    os._exit(status)  # no native teardown that could abort (see wormjournal.cli.run)
