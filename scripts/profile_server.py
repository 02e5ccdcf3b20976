#!/usr/bin/env python3
"""Profile a WonderQ server (or the bare quart-trio route) under one workload with py-spy, and print a short
text summary: the top functions by own time and by cumulative time, as shares of the samples.

Starts the server the way scripts/bench does (`wonderq serve`, logging at info to a file; `--memory` or the
durable default in a fresh data directory), drives it from one client thread in this process (or from one
producer and one consumer thread for `cycle`), and runs `py-spy record --format raw` against the server's pid
for the length of the workload. Usage:

    .venv/bin/python scripts/profile_server.py WORKLOAD [--mode memory|durable] [--seconds 15] [--idle]
        [--batch 100] [--raw out.txt] [--top 10] [--no-profile]
    .venv/bin/python scripts/profile_server.py bare --summarize out.txt   # the summary of an earlier --raw

WORKLOAD is one of: bare (GET /ping on scripts/bench_bare_app.py), send, receive, ack (single requests, one at
a time), cycle (send batch / receive max / ack batch by one producer/consumer pair).
Needs py-spy (in the dev extras) and the right to trace the server (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench_brokers import WonderQ, http_client, launch_bare, launch_wonderq, listening_url, payload

IDLE = "EpollIOManager.get_events"
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """`function (path:line)` as `module-ish path:function`, the line dropped so a function counts once."""
    found = FRAME.match(frame)
    if not found:
        return frame
    path = found.group("file")
    for marker in ("site-packages/", "/lib/python3", "/src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{found.group('function')}"


# WonderQ's own code (but the entry points every stack starts in), and the logging and metrics it adds per request
FOCUS = re.compile(r"^(wonderq/(?!__main__|cli\.py|server\.py)|logging/|prometheus_client/)")


def summarize(raw: str, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    cumulative: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(frame) for frame in stack.split(";") if not frame.startswith(("thread (", "process "))]
        if not frames:
            continue
        if frames[-1].endswith(IDLE):  # the event loop waiting in epoll: not work
            idle += count
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            cumulative[name] += count
    lines = [f"{total} samples at work ({idle} more in {IDLE}, left out)"]
    focus = collections.Counter({name: n for name, n in cumulative.items() if FOCUS.match(name)})
    for title, counter, count in (
        ("own time", own, top),
        ("cumulative time", cumulative, top),
        ("cumulative time, WonderQ's code, logging and metrics only", focus, top),
    ):
        lines.append(f"-- top {count} by {title} (% of the samples at work)")
        lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(count)]
    return "\n".join(lines)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(
    url: str, workload: str, seconds: float, batch: int, measuring: Callable[[], object]
) -> tuple[int, float, str]:
    """Run `workload` for about `seconds` (calling `measuring` once the measured part starts); returns what it
    achieved: a count, the seconds it took and what was counted."""
    wonderq = WonderQ(url)
    queue = "profiled"
    deadline = time.monotonic() + seconds
    done = 0
    if workload == "bare":
        with http_client(url) as http:
            http.get("/ping").raise_for_status()
            measuring()
            started = time.monotonic()
            deadline = started + seconds
            while time.monotonic() < deadline:
                http.get("/ping").raise_for_status()
                done += 1
        return done, time.monotonic() - started, "requests"
    wonderq.prepare(queue)
    if workload in ("send", "receive", "ack"):
        with http_client(url) as http:
            receipts: list[tuple[str, str]] = []
            if workload != "send":  # fill the queue (and lease it, for acks) before the clock matters
                for start in range(0, 20_000, 100):
                    wonderq.send_batch(http, queue, start, 100)
            if workload == "ack":
                while len(receipts) < 20_000:
                    reply = http.post(f"/v1/queues/{queue}/receive", json={"max": 100, "visibility_timeout": 300})
                    receipts += [(m["id"], m["receipt"]) for m in reply.json()["messages"]]
            calls: dict[str, Callable[[int], object]] = {
                "send": lambda n: http.post(
                    f"/v1/queues/{queue}/messages", content=payload(n), headers={"content-type": "text/plain"}
                ).raise_for_status(),
                "receive": lambda _: http.post(
                    f"/v1/queues/{queue}/receive", json={"max": 1, "visibility_timeout": 300}
                ).raise_for_status(),
                "ack": lambda n: http.delete(
                    f"/v1/queues/{queue}/messages/{receipts[n][0]}", params={"receipt": receipts[n][1]}
                ).raise_for_status(),
            }
            call = calls[workload]
            measuring()
            started = time.monotonic()
            deadline = started + seconds
            while time.monotonic() < deadline and done < 20_000:
                call(done)
                done += 1
            return done, time.monotonic() - started, "requests"
    if workload == "cycle":
        stop = threading.Event()
        received = [0, 0]  # messages, receives that returned some

        def produce() -> None:
            with http_client(url) as http:
                sent = 0
                while not stop.is_set():
                    wonderq.send_batch(http, queue, sent, batch)
                    sent += batch

        def consume() -> None:
            with http_client(url) as http:
                while not stop.is_set():
                    reply = http.post(
                        f"/v1/queues/{queue}/receive", json={"max": batch, "visibility_timeout": 300, "wait": 1}
                    )
                    leases = reply.json()["messages"]
                    if leases:
                        http.post(f"/v1/queues/{queue}/ack", json={"receipts": [m["receipt"] for m in leases]})
                        received[0] += len(leases)
                        received[1] += 1

        threads = [threading.Thread(target=produce, daemon=True), threading.Thread(target=consume, daemon=True)]
        measuring()
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        mean = received[0] / max(received[1], 1)
        return received[0], time.monotonic() - started, f"messages (full cycle, {mean:.0f} per receive)"
    raise SystemExit(f"unknown workload {workload}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=["bare", "send", "receive", "ack", "cycle"])
    parser.add_argument("--mode", choices=["memory", "durable"], default="memory")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--batch", type=int, default=100, help="cycle: messages per request (default 100)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second (default 250)")
    parser.add_argument("--idle", action="store_true", help="also count threads waiting (wall time, not CPU)")
    parser.add_argument("--raw", help="keep py-spy's collapsed stacks in this file")
    parser.add_argument("--top", type=int, default=10, help="functions in each list (default 10)")
    parser.add_argument("--no-profile", action="store_true", help="only measure: rate and server CPU per unit")
    parser.add_argument("--summarize", metavar="RAW", help="only print the summary of an earlier --raw file")
    args = parser.parse_args()
    if args.summarize:
        print(summarize(Path(args.summarize).read_text(), args.top))
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory(prefix="wonderq-profile-") as work:
        workdir = Path(work)
        server = launch_bare(workdir) if args.workload == "bare" else launch_wonderq(args.mode, workdir, 100)
        try:
            url = listening_url(server)
            raw = Path(args.raw) if args.raw else workdir / "raw.txt"
            command = [py_spy, "record", "-p", str(server.pid), "-r", str(args.rate), "-f", "raw", "-o", str(raw)]
            command += ["-d", str(int(args.seconds) + 30)]
            command += ["--idle", "--threads"] if args.idle else []
            # The clients fill the queue first; py-spy starts when the measured part does.
            recorders: list[subprocess.Popen[bytes]] = []
            cpu_at_start: list[float] = []

            def measuring() -> None:
                cpu_at_start.append(cpu_seconds(server.pid))
                if not args.no_profile:
                    recorders.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))

            count, seconds, unit = drive(url, args.workload, args.seconds, args.batch, measuring)
            cpu = cpu_seconds(server.pid) - cpu_at_start[0]
            for recorder in recorders:
                recorder.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
                recorder.wait(timeout=30)
        finally:
            server.stop()
        print(f"# {' '.join(sys.argv)}")
        if not args.no_profile:
            print(f"# py-spy: {' '.join(command)}")
        print(f"# {count / seconds:.0f} {unit}/s; server CPU {1e6 * cpu / max(count, 1):.0f} us per one of {unit}")
        if not args.no_profile:
            print(summarize(raw.read_text(), args.top))


if __name__ == "__main__":
    main()
