#!/usr/bin/env python3
"""Schemathesis over WonderQ's /openapi.json with many cases: the same checks as tests/test_schemathesis.py
(tests/fuzzing.py says which, and which operations are left out), against real servers on 127.0.0.1, in three
runs: auth off (every route reachable), auth on with a valid bearer token, auth on without credentials.

Each run uses every phase (schemathesis's edge cases, random cases, sequences of calls) and a new seed unless
--seed is given; the seed is printed, so a run can be repeated. Exits 1 if any run found a failure, or if the
server logged an error; the failures are printed with a curl command each. Usage:

    scripts/fuzz_api [--examples 500] [--auth-examples 100] [--workers 2] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.fuzzing

from tests.fuzzing import FuzzResult, auth_server, open_server, run_schemathesis, statuses
from tests.servers import ServerProcess


def report(name: str, result: FuzzResult, seen: Counter[int], wall: float) -> None:
    shown = ", ".join(f"{status}: {count}" for status, count in sorted(seen.items()))
    verdict = "ok" if result.ok else "FAILED"
    print(
        f"{name}: {verdict}: {result.cases} cases, {result.failures} unique failures, "
        f"{len(result.server_errors)} server error lines, {result.seconds:.0f} s of schemathesis ({wall:.0f} s in all)"
    )
    print(f"  statuses answered: {shown}")
    if not result.ok:
        print(result.explain())
    sys.stdout.flush()


def run(name: str, server: ServerProcess, args: argparse.Namespace, examples: int, token: str | None = None) -> bool:
    before = statuses(server)
    started = time.monotonic()
    result = run_schemathesis(
        server, examples=examples, seed=args.seed, workers=args.workers, token=token, timeout=24 * 3600.0
    )
    report(name, result, statuses(server) - before, time.monotonic() - started)
    return result.ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=500, help="cases per operation and phase, auth off")
    parser.add_argument("--auth-examples", type=int, default=100, help="the same, for each run with auth on")
    parser.add_argument("--workers", type=int, default=2, help="schemathesis's concurrent workers")
    parser.add_argument("--seed", type=int, default=None, help="the seed of every run (default: a new one)")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.randrange(2**32)
    print(f"seed {args.seed}", flush=True)
    ok = True
    with open_server() as server:
        ok &= run("auth off", server, args, args.examples)
    with auth_server() as running:
        ok &= run("auth on, token", running.server, args, args.auth_examples, running.token)
        ok &= run("auth on, no credentials", running.server, args, args.auth_examples)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
