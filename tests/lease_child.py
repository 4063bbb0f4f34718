"""A writer process for the lease tests: one writer of stream ``main``, driven line by line on stdin.

Run as ``python tests/lease_child.py STORE_URL ENDPOINT_URL KEY_DIR WAL_DIR`` with the repository
root on PYTHONPATH and the S3 credentials in the environment. It imports everything, prints
``READY`` and then answers each command with one line:

    open [take_over] [check=SECONDS]  ->  OPEN <next_seq> <sealed_seq>    | ERR <class> <message>
    append <n> <id prefix>            ->  ACK <seq>,<seq>,...             | ERR <class> <message>
    seal                              ->  SEALED <sealed_seq>             | ERR <class> <message>
    lost <timeout seconds>            ->  LOST <message>                  | NOTLOST
    close [seal]                      ->  CLOSED                          | ERR <class> <message>

Each answer is one write, so the parent reads whole lines even when it kills the process.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time

from wormjournal.errors import JournalError
from wormjournal.journal import Journal, JournalConfig
from wormjournal.storage import open_store

BASE_TS = dt.datetime(2025, 3, 14, 9, 0, 0, tzinfo=dt.UTC)


def say(line: str) -> None:
    os.write(1, (line.replace("\n", " ") + "\n").encode())


def error(e: BaseException) -> str:
    return f"ERR {type(e).__name__} {e}"


def main() -> None:
    url, endpoint, keys, wal = sys.argv[1:5]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("wormjournal").setLevel(logging.INFO)  # what the writer says, on stderr
    store = open_store(url, endpoint_url=endpoint)
    journal: Journal | None = None
    say("READY")
    for line in sys.stdin:
        cmd, *args = line.split()
        try:
            if cmd == "open":
                check = next((float(a[6:]) for a in args if a.startswith("check=")), None)
                config = JournalConfig(seal_max_age_seconds=None, lease_check_seconds=check)
                journal = Journal.open(store, key_dir=keys, wal_dir=wal, config=config, take_over="take_over" in args)
                say(f"OPEN {journal.next_seq} {journal.sealed_seq}")
            elif cmd == "append":
                assert journal is not None
                n, prefix = int(args[0]), args[1]
                events = [{"event_type": "tool_called", "execution_id": f"{prefix}-run", "event_id": f"{prefix}-{i}",
                           "ts": BASE_TS, "payload": {"i": i}} for i in range(n)]
                seqs = journal.append_batch(events)
                say("ACK " + ",".join(map(str, seqs)))
            elif cmd == "seal":
                assert journal is not None
                journal.seal()
                say(f"SEALED {journal.sealed_seq}")
            elif cmd == "lost":
                assert journal is not None
                deadline = time.monotonic() + float(args[0])
                lease = journal._lease  # the background check's verdict, read without a request
                while lease is not None and lease.lost is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                say(f"LOST {lease.lost}" if lease is not None and lease.lost is not None else "NOTLOST")
            elif cmd == "close":
                assert journal is not None
                journal.close(seal="seal" in args)
                say("CLOSED")
            else:
                say(f"ERR ValueError unknown command {cmd!r}")
        except JournalError as e:
            say(error(e))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # no native teardown that could abort (see wormjournal.cli.run)
