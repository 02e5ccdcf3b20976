#!/usr/bin/env python3
"""Kill WonderQ with SIGKILL under load, many times, and check after each restart that nothing acknowledged
was lost, nothing acked came back, nothing is duplicated, leases survived and the store is sound.

Each round: producers and consumers run against `wonderq serve --data-dir D` for a random 0.3-2 s, SIGKILL,
SQLite integrity check, restart on D, compare what is stored with what the clients were told (tests/crash.py
says exactly what is checked). Usage:

    .venv/bin/python scripts/crash_test.py [--rounds 50] [--seed 1] [--sync full|normal]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.crash

from tests.crash import crash_round


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1, help="seed of the seeds of the rounds")
    parser.add_argument("--sync", choices=["full", "normal"], default="full")
    args = parser.parse_args()
    seeds = random.Random(args.seed).sample(range(1_000_000), args.rounds)
    failed = 0
    totals = {"confirmed": 0, "acked": 0, "held": 0, "recovered": 0}
    with tempfile.TemporaryDirectory(prefix="wonderq-crash-") as directory:
        for number, seed in enumerate(seeds, 1):
            result = crash_round(Path(directory), seed, sync=args.sync)
            for key in totals:
                totals[key] += getattr(result, key)
            status = "ok" if not result.problems else f"FAILED ({len(result.problems)} problems)"
            print(
                f"round {number:>3}/{args.rounds} seed {seed:>6}: killed after {result.killed_after:.2f} s;"
                f" confirmed {result.confirmed:>5}, acked {result.acked:>5}, leases held {result.held:>3},"
                f" recovered {result.recovered:>5}: {status}",
                flush=True,
            )
            for problem in result.problems[:20]:
                print(f"    {problem}")
            failed += bool(result.problems)
    print(
        f"\n{args.rounds} rounds (sync={args.sync}): {args.rounds - failed} passed, {failed} failed;"
        f" {totals['confirmed']} sends confirmed, {totals['acked']} acks confirmed,"
        f" {totals['held']} leases held across a kill, {totals['recovered']} messages recovered"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
