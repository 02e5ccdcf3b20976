#!/usr/bin/env python3
"""Full-cycle throughput over HTTP: send N messages, receive them, acknowledge them; messages per second.

Starts its own server (`python -m wonderq serve --port 0`) on 127.0.0.1, runs each batch size several times
and prints the median and range of each, plus the ratio of each batch size to batch 1 measured in the same
run. Usage:

    .venv/bin/python scripts/bench_cycle.py [--messages 2000] [--runs 5] [--batches 1,10,100] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000, help="messages per run (default 2000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per batch size (default 5)")
    parser.add_argument("--batches", default="1,10,100", help="batch sizes (default 1,10,100)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    process, url = start_server(max(batches))
    results: dict[int, list[float]] = {batch: [] for batch in batches}
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            full_cycle(http, "warmup", 200, 10)
            for run in range(args.runs):
                for batch in batches:  # interleaved, so drift in machine load hits every size alike
                    seconds = full_cycle(http, f"bench-{batch}", args.messages, batch)
                    results[batch].append(args.messages / seconds)
                    print(f"run {run + 1}/{args.runs} batch {batch}: {results[batch][-1]:,.0f} msg/s", file=sys.stderr)
    finally:
        process.terminate()
        process.wait(timeout=15)
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
            json.dump({"messages": args.messages, "payload_bytes": len(PAYLOAD), "results": summary}, out, indent=2)


if __name__ == "__main__":
    main()
