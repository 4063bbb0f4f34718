"""``wormjournal witness``: run a C2SP witness (FORMAT.md 8b), print its key, and print the logs of a journal a
witness is configured with."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cli_common import EXIT_FINDINGS, EXIT_OK, EXIT_STORAGE, _public_keys, _store, out
from .errors import ConfigError, WitnessError
from .segments.cosign import Cosigner
from .segments.head import head_origin
from .segments.manifest import checkpoint_origin
from .segments.notes import VerifyKey
from .storage import layout
from .trust import load_trust
from .witness.client import WitnessConfig, ask
from .witness.service import Witness, load_or_create_key, parse_log, serve


def cmd_witness_serve(args: argparse.Namespace) -> int:
    logs: dict[str, list[VerifyKey]] = {}
    for spec in args.log or []:
        origin, key = parse_log(spec)
        logs.setdefault(origin, []).append(key)
    if not logs:
        raise ConfigError("a witness needs at least one --log ORIGIN=VERIFIER_KEY",
                          hint="`wormjournal witness logs STORE` prints them for a journal")
    witness = Witness(Path(args.state), logs, name=args.name)

    def ready(port: int) -> None:
        out.print(f"witness {witness.name} listening on http://{args.host}:{port}/ for {len(logs)} log(s)",
                  markup=False, highlight=False)
        out.print(f"verifier key: {witness.cosigner.vkey()}", markup=False, highlight=False)
        sys.stdout.flush()

    try:
        serve(witness, args.host, args.port, ready=ready)
    finally:
        witness.close()
    return EXIT_OK


def cmd_witness_key(args: argparse.Namespace) -> int:
    name, key = load_or_create_key(Path(args.state), args.name)
    out.print(Cosigner(name, key.public_key()).vkey(), markup=False, highlight=False)
    return EXIT_OK


def cmd_witness_logs(args: argparse.Namespace) -> int:
    """The --log arguments a witness of this journal is started with: its head log, and each stream, with every key
    of the key history from the first trusted one (a rotation adds one)."""
    store = _store(args)
    trust = load_trust(store, _public_keys(args.public_key))
    origins = [head_origin(trust.journal_id)]
    if args.streams:
        streams = layout.streams_from_names([o.name for o in store.list(layout.CHECKPOINTS_PREFIX)])
        origins += [checkpoint_origin(trust.journal_id, s) for s in streams]
    for origin in origins:
        for key in trust.keys():
            out.print(f"--log {origin}={key.vkey()}", markup=False, highlight=False)
    return EXIT_OK


def cmd_witness_check(args: argparse.Namespace) -> int:
    """Ask each witness, live, whether the store's newest head extends every head it cosigned."""
    store = _store(args)
    trust = load_trust(store, _public_keys(args.public_key))
    found = unreachable = False
    for spec in args.witness:
        witness = WitnessConfig.parse(spec)
        try:
            size, when = ask(store, trust.journal_id, witness)
        except WitnessError as e:
            out.print(f"{witness.cosigner.name}: {e}", markup=False, highlight=False)
            found, unreachable = found or bool(e.status), unreachable or not e.status
            continue
        out.print(f"{witness.cosigner.name}: cosigned the store's newest head (the head log at {size}) at {when}: it "
                  "extends every head this witness cosigned", markup=False, highlight=False)
    return EXIT_FINDINGS if found else EXIT_STORAGE if unreachable else EXIT_OK


def add_parser(sub: Any, store: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("witness", help="a witness that cosigns a journal's heads and checkpoints (C2SP tlog-witness)")
    wsub = p.add_subparsers(dest="witness_command", required=True)

    def state(q: argparse.ArgumentParser) -> None:
        q.add_argument("--state", required=True, metavar="DIR",
                       help="the witness's directory: its key and the latest checkpoint it cosigned of each log")
        q.add_argument("--name", default=None,
                       help="the witness's name in its cosignatures (needed the first time, to make its key)")

    q = wsub.add_parser("serve", help="serve POST /add-checkpoint; it never cosigns a checkpoint that is smaller "
                        "than, or inconsistent with, one it cosigned")
    state(q)
    q.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    q.add_argument("--port", type=int, default=7380, help="port (0: any free one; default: %(default)s)")
    q.add_argument("--log", action="append", metavar="ORIGIN=VERIFIER_KEY",
                   help="a log to witness and one of its keys; repeatable (`wormjournal witness logs STORE`)")
    q.set_defaults(func=cmd_witness_serve)
    q = wsub.add_parser("key", help="print the witness's verifier key (for writers' --witness and verify's "
                        "--witness-key), making it on first use")
    state(q)
    q.set_defaults(func=cmd_witness_key)
    q = wsub.add_parser("logs", help="print the --log arguments that make a witness of a journal")
    store(q)
    q.add_argument("--public-key", action="append", metavar="FILE",
                   help="trusted public key (PEM); repeatable (default: the keys stored in the journal)")
    q.add_argument("--streams", action="store_true",
                   help="each stream's checkpoints too (the head log alone already names every stream)")
    q.set_defaults(func=cmd_witness_logs)
    q = wsub.add_parser("check", help="ask witnesses, live, whether the store's newest head extends what they "
                        "cosigned (exit 1: rolled back or forked); read-only access to the store is enough")
    store(q)
    q.add_argument("--public-key", action="append", metavar="FILE",
                   help="trusted public key (PEM); repeatable (default: the keys stored in the journal)")
    q.add_argument("--witness", action="append", required=True, metavar="URL=VERIFIER_KEY",
                   help="a witness to ask; repeatable")
    q.set_defaults(func=cmd_witness_check)
