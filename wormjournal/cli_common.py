"""What every command module of the CLI shares: exit codes, consoles, options that open the
journal (store, WAL directory, keys), and plain columns. The command modules import this, never
each other."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import errno
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from .errors import ConfigError
from .index import Event, Reader
from .journal import Journal, JournalConfig
from .journal.keys import load_keys, load_wal_key
from .journal.writer import DATAKEYS_DIR
from .retention.keystore import KeyStore
from .segments.cosign import Cosigner
from .segments.notes import VerifyKey
from .storage import open_store
from .storage.s3 import parse_s3_url
from .trust.load import read_identity

log = logging.getLogger("wormjournal.cli")  # the commands' logger, whichever module of them logs

# The exit codes of every command (README.md, "Exit codes"); cli.main maps exceptions to them.
EXIT_OK = 0  # done; verify, audit, info, reindex, check-proof: nothing wrong found
EXIT_FINDINGS = 1  # verify, audit, info, reindex or check-proof found a problem, or a read's verification failed
EXIT_USAGE = 2  # bad flags or input, a missing journal, event or file, a config or key problem, a held lock
EXIT_INTERNAL = 3  # an unexpected exception: a bug (WORMJOURNAL_DEBUG=1 prints its traceback)
EXIT_STORAGE = 4  # the store, the write-ahead log or a file could not be read or written (I/O, network, disk full)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)
EXIT_ERROR = EXIT_USAGE  # the former name of EXIT_USAGE
DEBUG_ENV = "WORMJOURNAL_DEBUG"  # set (not 0): print the traceback of an error


class _Console(Console):
    """rich's Console, but a closed stdout (``| head``) is a BrokenPipeError for cli.main to map, not exit 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader of the output has gone")


err = _Console(stderr=True, soft_wrap=True)
out = _Console(highlight=False, soft_wrap=True)


def default_key_dir() -> Path:
    env = os.environ.get("WORMJOURNAL_KEY_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "wormjournal" / "keys"


def debug_enabled() -> bool:
    """Whether $WORMJOURNAL_DEBUG asks for tracebacks."""
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def _store(args: argparse.Namespace) -> Any:
    return open_store(args.store, endpoint_url=args.endpoint_url)


def _wal_dir(args: argparse.Namespace) -> Path | None:
    """--wal-dir, or for S3 a directory under the user's state directory (a local store keeps STORE/.wal)."""
    if args.wal_dir is not None or not args.store.startswith("s3://"):
        wal_dir: Path | None = args.wal_dir  # argparse.Namespace is untyped
        return wal_dir
    bucket, prefix = parse_s3_url(args.store)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "wormjournal" / "wal" / bucket / (prefix or "_")


def _writer(args: argparse.Namespace, config: JournalConfig | None = None) -> Journal:
    if getattr(args, "witness", None):
        config = dataclasses.replace(config or JournalConfig(), witnesses=tuple(args.witness))
    return Journal.open(_store(args), key_dir=args.key_dir, stream=args.stream, wal_dir=_wal_dir(args), config=config,
                        take_over=getattr(args, "take_over", False))


def _public_keys(paths: list[str] | None) -> list[VerifyKey] | None:
    if not paths:
        return None
    keys = []
    for p in paths:
        try:
            keys.append(VerifyKey.from_pem("", Path(p).read_bytes()))
        except OSError as e:
            raise ConfigError(f"cannot read public key {p}: {e}") from e
    return keys


def _keystore(key_dir: Path, journal_id: str, *, required: bool) -> KeyStore | None:
    """The journal's key store under ``key_dir``; None when it is not there and not ``required``."""
    if not required and not (key_dir / journal_id / DATAKEYS_DIR).is_dir():
        return None
    _, pseudonym = load_keys(key_dir, journal_id)
    return KeyStore.open(key_dir / journal_id / DATAKEYS_DIR, journal_id, pseudonym)


def _print_columns(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """Plain aligned columns (greppable, and not squeezed to the terminal's width); the last one unpadded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for r in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(r, widths, strict=False)] + [r[-1]]
        out.print("  ".join(cells).rstrip(), markup=False, highlight=False)


def read_witness_keys(paths: list[str] | None) -> tuple[Cosigner, ...]:
    """Cosigner verifier keys from files, one per line (blank lines and # comments passed over). Raises
    ConfigError."""
    keys: list[Cosigner] = []
    for path in paths or []:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as e:
            raise ConfigError(f"cannot read --witness-key {path}: {e}") from e
        for line in lines:
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    keys.append(Cosigner.from_vkey(line))
                except Exception as e:  # noqa: BLE001 - NoteError, or a key that does not decode
                    raise ConfigError(f"--witness-key {path}: {e}") from e
    if paths and not keys:
        raise ConfigError("--witness-key: no verifier key in " + ", ".join(paths))
    return tuple(keys)


# -- reading ------------------------------------------------------------------------


def _reader(args: argparse.Namespace) -> Reader:
    wal = _wal_dir(args)
    if wal is None and not args.store.startswith("s3://"):
        wal = Path(args.store) / ".wal"
    store = _store(args)
    journal_id = read_identity(store).journal_id
    # Payloads decrypt where the key store is at hand (the writer's machine); elsewhere they read as markers.
    keystore = _keystore(args.key_dir, journal_id, required=False)
    # Unsealed events are read only with the writer's WAL key, which authenticates them; without it, sealed ones.
    wal_key = None
    if wal is not None:
        try:
            wal_key = load_wal_key(args.key_dir, journal_id)
        except ConfigError as e:
            if Path(wal).is_dir():
                log.warning("unsealed events are not shown: %s", e)
            wal = None
    return Reader(store, stream=args.stream, public_keys=_public_keys(args.public_key), wal_dir=wal, wal_key=wal_key,
                  keystore=keystore)


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True) if value is not None else ""
    return text if len(text) <= width else text[: width - 1] + "…"


def _ms(delta: dt.timedelta) -> str:
    ms = delta / dt.timedelta(milliseconds=1)
    return f"{ms:,.0f} ms" if ms < 10_000 else f"{ms / 1000:,.1f} s"


_ENDS = ("node_completed", "node_failed", "step_completed", "step_failed")
TIMELINE_COLUMNS = ("seq", "time", "since prev", "event", "node/step", "took", "", "payload")


class Timeline:
    """The rows of ``replay`` and ``tail``, one an event: the time since the event before, and how long a node or step
    took at its end."""

    def __init__(self) -> None:
        self._started: dict[str, dt.datetime] = {}
        self._prev: dt.datetime | None = None

    def row(self, e: Event) -> tuple[str, ...]:
        took = ""
        key = e.step_id or e.node or ""
        if e.event_type in ("node_started", "step_started"):
            self._started[key] = e.ts
        elif e.event_type in _ENDS and key in self._started:
            took = _ms(e.ts - self._started.pop(key))
        since = "+" + _ms(e.ts - self._prev) if self._prev else ""
        self._prev = e.ts
        return (str(e.seq), e.ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"), since, e.event_type,
                "/".join(v for v in (e.node, e.step_id) if v) or "-", took, "" if e.sealed else "unsealed",
                _short(e.payload))
