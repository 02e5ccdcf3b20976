"""Idle cost of many queues (issue 12): one WonderQ server is given N queues, each made by a send to a new name
(as a client that sends to many queues does), and then left alone.

This script owns the measurement: how long a queue creation takes at the start and at the end of the ramp (the
median of the first and of the last `--sample` creations, each a `POST /v1/queues/<new>/messages`), then the
server's CPU use while nobody talks to it (user + system time from /proc over `--idle` seconds, as a percentage
of one core), then the time of `GET /health` on the idle server (the median of 20). The server runs with
MAX_QUEUES raised to N (its default cap is 10,000 queues), `--memory` or on a fresh data directory (the durable
default), and is stopped by its pid at the end.

    .venv/bin/python scripts/bench_idle.py --queues 90000 --idle 20 --runs 3
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

LISTENING = re.compile(r"WonderQ listening on (http://\S+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")  # the unit of /proc/<pid>/stat's utime and stime, per second
CONCURRENCY = 16  # sends in flight during the ramp
START_TIMEOUT = 30.0  # seconds the server gets to listen


@dataclass
class Run:
    first_ms: float  # median creation time of the first `sample` queues, milliseconds
    last_ms: float  # the same for the last `sample`
    idle_cpu: float  # percent of one core, while idle
    health_ms: float  # median GET /health on the idle server, milliseconds
    load: tuple[float, float, float]  # the machine's load averages when the idle window ended


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def start_server(workdir: Path, queues: int, memory: bool) -> tuple[subprocess.Popen[bytes], str]:
    """The server on a free port, logging to a file (one access line per request); returns it and its URL."""
    command = [sys.executable, "-m", "wonderq", "serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--memory"] if memory else ["--data-dir", str(workdir / "data")]
    env = {**os.environ, "MAX_QUEUES": str(queues + 10), "RATE_LIMIT": "0", "GLOBAL_RATE_LIMIT": "0"}
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stderr=out, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if found := LISTENING.search(log.read_text(errors="replace")):
            return process, found.group(1)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not start:\n" + log.read_text(errors="replace"))


async def ramp(url: str, queues: int, sample: int) -> tuple[list[float], list[float]]:
    """Create `queues` queues by sends; the creation times (seconds) of the first and last `sample`."""
    first: list[float] = []
    last: list[float] = []
    numbers = iter(range(queues))

    async def worker(http: httpx.AsyncClient) -> None:
        for number in numbers:
            started = time.perf_counter()
            reply = await http.post(f"/v1/queues/q{number}/messages", content=b"x")
            elapsed = time.perf_counter() - started
            if reply.status_code != 201:
                raise RuntimeError(f"send {number} answered {reply.status_code}: {reply.text[:200]}")
            if number < sample:
                first.append(elapsed)
            elif number >= queues - sample:
                last.append(elapsed)

    async with httpx.AsyncClient(base_url=url, timeout=60) as http, trio.open_nursery() as nursery:
        for _ in range(CONCURRENCY):
            nursery.start_soon(worker, http)
    return first, last


def one_run(queues: int, idle: float, sample: int, memory: bool) -> Run:
    with tempfile.TemporaryDirectory(prefix="wonderq-idle-") as workdir:
        process, url = start_server(Path(workdir), queues, memory)
        try:
            first, last = trio.run(ramp, url, queues, sample)
            time.sleep(2)  # let the last replies' work settle
            before = cpu_seconds(process.pid)
            time.sleep(idle)
            used = cpu_seconds(process.pid) - before
            load = os.getloadavg()
            with httpx.Client(base_url=url, timeout=60) as http:
                health = []
                for _ in range(20):
                    started = time.perf_counter()
                    http.get("/health").raise_for_status()
                    health.append(time.perf_counter() - started)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return Run(
        first_ms=statistics.median(first) * 1e3,
        last_ms=statistics.median(last) * 1e3,
        idle_cpu=100 * used / idle,
        health_ms=statistics.median(health) * 1e3,
        load=(round(load[0], 2), round(load[1], 2), round(load[2], 2)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=90_000)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measured")
    parser.add_argument("--sample", type=int, default=1_000, help="creations timed at each end of the ramp")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="serve --memory instead of on a data directory")
    args = parser.parse_args()
    runs = []
    for number in range(args.runs):
        run = one_run(args.queues, args.idle, args.sample, args.memory)
        runs.append(run)
        print(
            f"run {number + 1}: creation {run.first_ms:.2f} ms (first {args.sample}) -> {run.last_ms:.2f} ms"
            f" (last {args.sample}); idle CPU {run.idle_cpu:.1f}% of a core; /health {run.health_ms:.2f} ms;"
            f" load {run.load}",
            flush=True,
        )
    medians = [statistics.median(getattr(run, name) for run in runs) for name in ("first_ms", "last_ms")]
    cpu = statistics.median(run.idle_cpu for run in runs)
    health = statistics.median(run.health_ms for run in runs)
    print(
        f"median of {len(runs)}: creation {medians[0]:.2f} -> {medians[1]:.2f} ms, idle CPU {cpu:.1f}%,"
        f" /health {health:.2f} ms"
    )


if __name__ == "__main__":
    main()
