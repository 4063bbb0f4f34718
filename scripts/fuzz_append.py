#!/usr/bin/env python
"""Run the append fuzzers of tests/test_append_fuzz.py for a while, outside CI.

    .venv/bin/python scripts/fuzz_append.py --seconds 600

Rounds of ``--examples`` cases each take turns: ``Journal.append_batch`` with random events,
``wormjournal append FILE`` and ``wormjournal append -`` (stdin) with random inputs; every round
uses a fresh journal, which must seal, reopen and verify at its end. Prints the number of cases
and their outcomes, and for a failure the round's seed and Hypothesis's falsifying example (rerun
one with ``--target T --seed S --rounds 1``). Exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_append_fuzz as fz  # noqa: E402
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

from wormjournal import Journal  # noqa: E402

TARGETS = ("api", "cli-file", "cli-stdin")


def run_round(target: str, round_seed: int, examples: int, root: Path, outcomes: collections.Counter[str]) -> None:
    """One round of ``examples`` cases on a fresh journal, then the seal-reopen-verify check."""
    config = settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                      suppress_health_check=list(HealthCheck))
    count = collections.Counter[str]()

    def record(outcome: str) -> None:
        count[outcome] += 1
        outcomes[f"{target} {outcome}"] += 1

    check: Callable[..., None]
    if target == "api":
        store, keys = root / "journal", root / "keys"
        with Journal.create(store, key_dir=keys, config=fz.CONFIG) as j:

            @config
            @seed(round_seed)
            @given(batch=fz.BATCHES)
            def check(batch: list[dict[Any, Any]]) -> None:
                record(fz.check_append_batch(j, store / ".wal", batch))

            check()
            appended = j.next_seq
        fz.check_sound(store, keys, appended)
    else:
        cli = fz.Cli.create(root)

        @config
        @seed(round_seed)
        @given(data=fz.inputs())
        def check(data: bytes) -> None:
            record(fz.check_cli_append(cli, data, via_stdin=target == "cli-stdin"))

        check()
        fz.check_sound(cli.store, cli.keys, cli.events)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to run (default: %(default)s)")
    parser.add_argument("--examples", type=int, default=200, help="cases per round (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="the first round's seed (default: now)")
    parser.add_argument("--rounds", type=int, default=None, help="stop after this many rounds")
    parser.add_argument("--target", choices=TARGETS, action="append", help="run only these (repeatable)")
    args = parser.parse_args()
    targets = args.target or list(TARGETS)
    deadline = time.monotonic() + args.seconds
    started = time.monotonic()
    outcomes: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    rounds = 0
    print(f"fuzzing {', '.join(targets)} for {args.seconds:.0f} s, {args.examples} cases a round, "
          f"first seed {args.seed}", flush=True)
    while time.monotonic() < deadline and (args.rounds is None or rounds < args.rounds):
        target, round_seed = targets[rounds % len(targets)], args.seed + rounds
        rounds += 1
        with tempfile.TemporaryDirectory(prefix="wj-fuzz-") as tmp:
            try:
                run_round(target, round_seed, args.examples, Path(tmp), outcomes)
            except Exception as e:  # noqa: BLE001 - every failure is reported, and the run goes on
                notes = "\n".join(getattr(e, "__notes__", []))
                report = (f"FAILURE in round {rounds} ({target}, seed {round_seed}): {type(e).__name__}: {e}\n"
                          f"{notes}\nreproduce: {sys.executable} {__file__} --target {target} --seed {round_seed} "
                          f"--rounds 1 --examples {args.examples}\n"
                          + "".join(traceback.format_exception(e)[-6:]))
                failures.append(report)
                print(report, flush=True)
        if rounds % 10 == 0:
            print(f"{time.monotonic() - started:.0f} s: {rounds} rounds, {sum(outcomes.values())} cases, "
                  f"{len(failures)} failures", flush=True)
    elapsed = time.monotonic() - started
    print(f"\n{rounds} rounds, {sum(outcomes.values())} cases in {elapsed:.0f} s, {len(failures)} failure(s)")
    for name, n in sorted(outcomes.items()):
        print(f"  {name:24} {n}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
