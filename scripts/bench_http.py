#!/usr/bin/env python3
"""HTTP throughput of an in-memory WonderQ, measured from one synchronous httpx client.

Each storage mode (`--memory`, `--sync normal`, `--sync full`) gets its own server, measured in the same run.

1. Requests per second of single requests: `GET /health` (the framework plus a statistics read), a 200-byte
   send, and a receive on an empty queue (parsing, validation and an actor round trip).
2. The full cycle: send N messages of 200 bytes, receive them, acknowledge them, at each batch size, from one
   client and from several at once (`--pairs`); messages per second, each message counted once.

Starts its own server (`python -m wonderq serve --port 0`) on 127.0.0.1 and stops it by its pid. Every figure
is the median (and range) of several runs; workloads are interleaved within a run so that drift in machine
load hits all of them alike, and ratios are taken within the same run. Usage:

    .venv/bin/python scripts/bench_http.py [--messages 2000] [--requests 500] [--runs 5] [--batches 1,10,100]
                                           [--modes memory,normal,full] [--pairs 1,4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

PAYLOAD = "x" * 200  # bytes of body per message, as in docs/performance.md
LISTENING = re.compile(r"WonderQ listening on (http://\S+)")


MODES = {  # storage mode -> `wonderq serve` flags
    "memory": ["--memory"],
    "normal": ["--sync", "normal"],
    "full": ["--sync", "full"],  # the default: fsync before every reply
}


def start_server(max_batch: int, mode: str, data_dir: str) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "wonderq", "serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--max-batch", str(max_batch), "--log-level", "info", *MODES[mode]]
    if mode != "memory":
        command += ["--data-dir", f"{data_dir}/{mode}"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        match = LISTENING.search(line)
        if match:
            return process, match.group(1)
    raise RuntimeError("the server did not start")


def full_cycle(http: httpx.Client, queue: str, messages: int, batch: int) -> float:
    """Seconds to send, receive and ack `messages` messages, `batch` per request."""
    started = time.perf_counter()
    for start in range(0, messages, batch):
        count = min(batch, messages - start)
        if batch == 1:
            reply = http.post(f"/v1/queues/{queue}/messages", content=PAYLOAD, headers={"content-type": "text/plain"})
        else:
            entries = [{"body": PAYLOAD, "content_type": "text/plain"} for _ in range(count)]
            reply = http.post(f"/v1/queues/{queue}/messages/batch", json={"messages": entries})
        reply.raise_for_status()
    done = 0
    while done < messages:
        reply = http.post(f"/v1/queues/{queue}/receive", json={"max": batch, "visibility_timeout": 300})
        reply.raise_for_status()
        leases = reply.json()["messages"]
        if not leases:
            raise RuntimeError(f"queue ran dry after {done} of {messages} messages")
        if batch == 1:
            lease = leases[0]
            http.delete(f"/v1/queues/{queue}/messages/{lease['id']}", params={"receipt": lease["receipt"]})
        else:
            acked = http.post(f"/v1/queues/{queue}/ack", json={"receipts": [m["receipt"] for m in leases]})
            assert not acked.json()["failed"]
        done += len(leases)
    return time.perf_counter() - started


def concurrent_cycle(url: str, queue: str, messages: int, batch: int, pairs: int) -> float:
    """Seconds for `pairs` clients (threads, each with its own connection and queue) to run the full cycle on
    `messages` messages in all. With more than one, commands from several clients share actor batches and
    journal commits (group commit)."""
    if pairs == 1:
        with httpx.Client(base_url=url, timeout=60) as http:
            return full_cycle(http, queue, messages, batch)

    def one(number: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            full_cycle(http, f"{queue}-{number}", messages // pairs, batch)

    started = time.perf_counter()
    with ThreadPoolExecutor(pairs) as pool:
        list(pool.map(one, range(pairs)))
    return time.perf_counter() - started


def requests_per_second(http: httpx.Client, name: str, requests: int) -> float:
    calls: dict[str, Callable[[], httpx.Response]] = {
        "GET /health": lambda: http.get("/health"),
        "POST send (200 B)": lambda: http.post(
            "/v1/queues/rps/messages", content=PAYLOAD, headers={"content-type": "text/plain"}
        ),
        "POST receive (empty)": lambda: http.post("/v1/queues/rps-empty/receive"),
    }
    call = calls[name]
    started = time.perf_counter()
    for _ in range(requests):
        call().raise_for_status()
    return requests / (time.perf_counter() - started)


REQUESTS = ("GET /health", "POST send (200 B)", "POST receive (empty)")


def median_row(label: str, values: list[float], base: float) -> str:
    median = statistics.median(values)
    return f"{label:<28} {median:>10,.0f} {min(values):>9,.0f} {max(values):>9,.0f} {median / base:>9.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000, help="messages per run (default 2000)")
    parser.add_argument("--requests", type=int, default=500, help="requests per single-request run (default 500)")
    parser.add_argument("--runs", type=int, default=5, help="runs of every workload (default 5)")
    parser.add_argument("--batches", default="1,10,100", help="batch sizes (default 1,10,100)")
    parser.add_argument("--modes", default="memory,normal,full", help="storage modes (default memory,normal,full)")
    parser.add_argument("--pairs", default="1,4", help="concurrent producer/consumer clients (default 1,4)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    modes = args.modes.split(",")
    pair_counts = [int(p) for p in args.pairs.split(",")]
    cycle: dict[tuple[str, int, int], list[float]] = {
        (mode, batch, pairs): [] for mode in modes for batch in batches for pairs in pair_counts
    }
    rates: dict[tuple[str, str], list[float]] = {(mode, name): [] for mode in modes for name in REQUESTS}
    with tempfile.TemporaryDirectory(prefix="wonderq-bench-") as data_dir:
        servers = {mode: start_server(max(batches), mode, data_dir) for mode in modes}
        clients = {mode: httpx.Client(base_url=url, timeout=60) for mode, (_, url) in servers.items()}
        try:
            for http in clients.values():
                full_cycle(http, "warmup", 200, 10)
                http.put("/v1/queues/rps-empty").raise_for_status()
            for run in range(args.runs):
                # Interleaved: drift in the machine's load hits every mode and workload alike.
                for mode, http in clients.items():
                    for name in REQUESTS:
                        rates[mode, name].append(requests_per_second(http, name, args.requests))
                        print(f"run {run + 1} {mode} {name}: {rates[mode, name][-1]:,.0f} req/s", file=sys.stderr)
                    http.post("/v1/queues/rps/purge").raise_for_status()
                for batch in batches:
                    for pairs in pair_counts:
                        for mode, (_, url) in servers.items():
                            seconds = concurrent_cycle(url, f"bench-{batch}", args.messages, batch, pairs)
                            rate = cycle[mode, batch, pairs]
                            rate.append(args.messages / seconds)
                            print(
                                f"run {run + 1} {mode} batch {batch} x{pairs}: {rate[-1]:,.0f} msg/s", file=sys.stderr
                            )
        finally:
            for http in clients.values():
                http.close()
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=15)
    header = f"{'':<28} {'median':>10} {'min':>9} {'max':>9} {'ratio':>10}"
    print(f"\nsingle requests per second, {args.requests} per run, {args.runs} runs; ratio: to GET /health, same mode")
    print(header)
    for mode in modes:
        health = statistics.median(rates[mode, REQUESTS[0]])
        for name in REQUESTS:
            print(median_row(f"{mode:<7} {name}", rates[mode, name], health))
    print(
        f"\nfull cycle (send + receive + ack) messages per second, {args.messages} messages of {len(PAYLOAD)} bytes,"
        f" {args.runs} runs; ratio: to {modes[0]} at the same batch size"
    )
    print(header)
    for batch in batches:
        for pairs in pair_counts:
            base = statistics.median(cycle[modes[0], batch, pairs])
            for mode in modes:
                print(median_row(f"batch {batch:<4} x{pairs} {mode}", cycle[mode, batch, pairs], base))
    if args.json:
        document = {
            "messages": args.messages,
            "payload_bytes": len(PAYLOAD),
            "cycle": [{"mode": m, "batch": b, "pairs": p, "runs": v} for (m, b, p), v in cycle.items()],
            "requests": [{"mode": m, "request": n, "runs": v} for (m, n), v in rates.items()],
        }
        with open(args.json, "w") as out:
            json.dump(document, out, indent=2)


if __name__ == "__main__":
    main()
