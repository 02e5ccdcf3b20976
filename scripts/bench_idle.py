"""Idle cost of many queues (issue 12): what a WonderQ server holding N queues costs while nobody talks to it, and
what creating one more queue costs there.

This script owns the measurement. First, in this process, one sweep of the ticker (`Core.expire` then
`Core.behind`, as one `Expire` command runs them) on a core holding N idle queues of one message each: the
fastest of 20, so that the machine's load shows least. Then, per run, two real servers on the durable default
(`--data-dir`, fsync at every commit), each stopped by its pid: one on an empty data directory, and one on a data
directory prepared with N queues of one message each (written through the store directly, which is much faster
than N sends over HTTP and leaves the same rows). On the second it measures the CPU the process uses while idle
(user + system time from /proc over `--idle` seconds, as a percentage of one core) and the median time of 20
`GET /health`; on both, the median time of `--sample` queue creations, each a `POST /v1/queues/<new>/messages`
from one client, one at a time. The servers run with MAX_QUEUES raised above N (its default cap is 10,000).
Run it with PYTHONPATH naming another checkout's `src` to measure that version:

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

from wonderq.core import Core, Limits
from wonderq.ids import TimeOrderedIds, new_token
from wonderq.model import Payload
from wonderq.store import SqliteStore

LISTENING = re.compile(r"WonderQ listening on (http://\S+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")  # the unit of /proc/<pid>/stat's utime and stime, per second
START_TIMEOUT = 300.0  # seconds a server gets to recover its queues and listen
LIMITS = Limits(max_message_bytes=1024, max_batch=10, default_visibility_timeout=30.0)
MESSAGE = Payload(b"x", "text/plain")


@dataclass
class Run:
    empty_ms: float  # median queue creation on the empty server, milliseconds
    full_ms: float  # the same on the server holding N queues
    idle_cpu: float  # percent of one core, while idle with N queues
    health_ms: float  # median GET /health on the idle server, milliseconds
    load: tuple[float, float, float]  # the machine's load averages when the idle window ended


def idle_core(queues: int, now: float) -> Core:
    core = Core(limits=LIMITS, new_id=TimeOrderedIds(), new_token=new_token, track_changes=True)
    for number in range(queues):
        core.send(f"q{number}", MESSAGE, now=now)
    return core


def sweep_ms(queues: int) -> float:
    """The fastest of 20 sweeps (expire, then behind) of a core holding `queues` idle queues, milliseconds."""
    now = time.time()
    core = idle_core(queues, now)
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        core.expire(now=now + 1)
        core.behind(now=now + 1)
        timings.append(time.perf_counter() - started)
    return min(timings) * 1e3


def prepare(data_dir: Path, queues: int) -> None:
    """A data directory holding `queues` queues of one message each, sent now."""
    data_dir.mkdir()
    store = SqliteStore(data_dir)
    try:
        store.commit(idle_core(queues, time.time()).drain_changes())
    finally:
        store.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def start_server(data_dir: Path, max_queues: int) -> tuple[subprocess.Popen[bytes], str]:
    """The server on a free port, logging to a file beside its data directory; returns it and its URL."""
    command = [sys.executable, "-m", "wonderq", "serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--data-dir", str(data_dir)]
    env = {**os.environ, "MAX_QUEUES": str(max_queues), "RATE_LIMIT": "0", "GLOBAL_RATE_LIMIT": "0"}
    log = data_dir.with_suffix(".log")
    with log.open("wb") as out:
        process = subprocess.Popen(command, stderr=out, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if found := LISTENING.search(log.read_text(errors="replace")):
            return process, found.group(1)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not start:\n" + log.read_text(errors="replace"))


def median_ms(http: httpx.Client, requests: list[tuple[str, str]]) -> float:
    """The median time of these requests, sent one at a time, milliseconds; each must succeed."""
    timings = []
    for method, path in requests:
        started = time.perf_counter()
        http.request(method, path, content=b"x" if method == "POST" else None).raise_for_status()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1e3


def creations(sample: int) -> list[tuple[str, str]]:
    return [("POST", f"/v1/queues/new{number}/messages") for number in range(sample)]


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=60)


def one_run(workdir: Path, queues: int, idle: float, sample: int) -> Run:
    max_queues = queues + sample + 10
    process, url = start_server(workdir / "empty", max_queues)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            empty_ms = median_ms(http, creations(sample))
    finally:
        stop(process)
    prepare(workdir / "full", queues)
    process, url = start_server(workdir / "full", max_queues)
    try:
        time.sleep(2)  # let start-up settle
        before = cpu_seconds(process.pid)
        time.sleep(idle)
        idle_cpu = 100 * (cpu_seconds(process.pid) - before) / idle
        load = os.getloadavg()
        with httpx.Client(base_url=url, timeout=60) as http:
            health_ms = median_ms(http, [("GET", "/health")] * 20)
            full_ms = median_ms(http, creations(sample))
    finally:
        stop(process)
    return Run(empty_ms, full_ms, idle_cpu, health_ms, (round(load[0], 2), round(load[1], 2), round(load[2], 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=90_000)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measured")
    parser.add_argument("--sample", type=int, default=200, help="queue creations timed on each server")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"in process: one sweep of {args.queues} idle queues takes {sweep_ms(args.queues):.4f} ms", flush=True)
    runs = []
    for number in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="wonderq-idle-") as workdir:
            run = one_run(Path(workdir), args.queues, args.idle, args.sample)
        runs.append(run)
        print(
            f"run {number + 1}: creation {run.empty_ms:.2f} ms empty, {run.full_ms:.2f} ms with {args.queues} queues;"
            f" idle CPU {run.idle_cpu:.1f}% of a core; /health {run.health_ms:.2f} ms; load {run.load}",
            flush=True,
        )
    empty, full = (statistics.median(getattr(run, name) for run in runs) for name in ("empty_ms", "full_ms"))
    cpu = statistics.median(run.idle_cpu for run in runs)
    health = statistics.median(run.health_ms for run in runs)
    print(
        f"median of {len(runs)}: creation {empty:.2f} ms empty, {full:.2f} ms full ({full / empty:.1f}x);"
        f" idle CPU {cpu:.1f}%; /health {health:.2f} ms"
    )


if __name__ == "__main__":
    main()
