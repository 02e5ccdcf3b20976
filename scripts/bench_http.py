#!/usr/bin/env python3
"""HTTP throughput of an in-memory WonderQ, measured from one synchronous httpx client.

1. Requests per second of single requests: `GET /health` (the framework plus a statistics read), a 200-byte
   send, and a receive on an empty queue (parsing, validation and an actor round trip).
2. The full cycle: send N messages of 200 bytes, receive them, acknowledge them, at each batch size; messages
   per second, each message counted once.

Starts its own server (`python -m wonderq serve --port 0`) on 127.0.0.1 and stops it by its pid. Every figure
is the median (and range) of several runs; workloads are interleaved within a run so that drift in machine
load hits all of them alike, and ratios are taken within the same run. Usage:

    .venv/bin/python scripts/bench_http.py [--messages 2000] [--requests 500] [--runs 5] [--batches 1,10,100]
                                           [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

PAYLOAD = "x" * 200  # bytes of body per message, as in docs/performance.md
LISTENING = re.compile(r"WonderQ listening on (http://\S+)")


def start_server(max_batch: int) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "wonderq", "serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--max-batch", str(max_batch), "--log-level", "info"]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000, help="messages per run (default 2000)")
    parser.add_argument("--requests", type=int, default=500, help="requests per single-request run (default 500)")
    parser.add_argument("--runs", type=int, default=5, help="runs of every workload (default 5)")
    parser.add_argument("--batches", default="1,10,100", help="batch sizes (default 1,10,100)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    process, url = start_server(max(batches))
    results: dict[int, list[float]] = {batch: [] for batch in batches}
    rates: dict[str, list[float]] = {name: [] for name in REQUESTS}
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            full_cycle(http, "warmup", 200, 10)
            http.put("/v1/queues/rps-empty").raise_for_status()
            for run in range(args.runs):
                for name in REQUESTS:
                    rates[name].append(requests_per_second(http, name, args.requests))
                    print(f"run {run + 1}/{args.runs} {name}: {rates[name][-1]:,.0f} req/s", file=sys.stderr)
                http.post("/v1/queues/rps/purge").raise_for_status()
                for batch in batches:  # interleaved, so drift in machine load hits every size alike
                    seconds = full_cycle(http, f"bench-{batch}", args.messages, batch)
                    results[batch].append(args.messages / seconds)
                    print(f"run {run + 1}/{args.runs} batch {batch}: {results[batch][-1]:,.0f} msg/s", file=sys.stderr)
    finally:
        process.terminate()
        process.wait(timeout=15)
    health = statistics.median(rates[REQUESTS[0]])
    print(f"\nsingle requests, {args.requests} per run, {args.runs} runs")
    print(f"{'request':<22} {'median req/s':>13} {'min':>7} {'max':>7} {'vs /health':>11}")
    for name in REQUESTS:
        median = statistics.median(rates[name])
        print(
            f"{name:<22} {median:>13,.0f} {min(rates[name]):>7,.0f} {max(rates[name]):>7,.0f} {median / health:>10.2f}x"
        )
    base = statistics.median(results[batches[0]])
    summary: list[dict[str, Any]] = []
    print(f"\nfull cycle (send + receive + ack), {args.messages} messages of {len(PAYLOAD)} bytes, {args.runs} runs")
    print(f"{'batch':>6} {'median msg/s':>13} {'min':>9} {'max':>9} {'vs batch ' + str(batches[0]):>12}")
    for batch in batches:
        median = statistics.median(results[batch])
        print(
            f"{batch:>6} {median:>13,.0f} {min(results[batch]):>9,.0f} {max(results[batch]):>9,.0f}"
            f" {median / base:>11.1f}x"
        )
        summary.append({"batch": batch, "median": median, "runs": results[batch]})
    if args.json:
        with open(args.json, "w") as out:
            document = {"messages": args.messages, "payload_bytes": len(PAYLOAD), "cycle": summary, "requests": rates}
            json.dump(document, out, indent=2)


if __name__ == "__main__":
    main()
