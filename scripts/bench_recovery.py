#!/usr/bin/env python3
"""Start-up recovery time: fill a store with N messages (default 1,000,000 of 200 bytes, sent in batches of 100
a millisecond apart, a tenth of them leased), then time `wonderq serve --data-dir` from launch to listening,
several times, and report the server's own "recovered ... in X s" figure and its resident memory once recovered.
Usage:

    .venv/bin/python scripts/bench_recovery.py [--messages 1000000] [--runs 3] [--keep DIR]

scripts/bench's `recovery` workload (`scripts/bench --only recovery --recovery-messages N`) runs the same
measurement through this module's `fill` and `start_once`.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wonderq.model import Changes, MessageRecord, Payload, QueueRecord
from wonderq.store import SqliteStore

LISTENING = re.compile(r"WonderQ listening on (http://\S+)")
RECOVERED = re.compile(r"recovered (\d+) messages in (\d+) queues .* in ([0-9.]+) s")
CHUNK = 20_000  # messages per transaction while filling
BATCH = 100  # messages sent at one time: the sends of one actor batch share its `now`


def fill(data_dir: Path, messages: int) -> float:
    """Write `messages` messages straight into a new store; returns seconds taken."""
    started = time.perf_counter()
    store = SqliteStore(data_dir, sync="normal")
    body = Payload(b"x" * 200, "text/plain")
    now = time.time()
    try:
        for start in range(0, messages, CHUNK):
            records = tuple(
                MessageRecord(
                    id=f"{int(now * 1e6) + n:016x}",
                    queue=f"q{n % 4}",
                    payload=body,
                    priority=0,
                    sent_at=now + n // BATCH * 0.001,
                    visible_at=None,
                    receive_count=1 if n % 10 == 0 else 0,
                    first_received_at=now if n % 10 == 0 else None,
                    receipt=f"{int(now * 1e6) + n:016x}.bench" if n % 10 == 0 else None,
                    deadline_at=now + 3600 if n % 10 == 0 else None,  # leased for an hour: survives the restart
                    consumer=None,
                )
                for n in range(start, min(messages, start + CHUNK))
            )
            store.commit(Changes(inserted_messages=records))
        queues = tuple(QueueRecord(f"q{i}", 30.0, 0, 0.0, 0, now, messages // 4, 0, 0, 0, 0) for i in range(4))
        store.commit(Changes(queues=queues, last_id=f"{int(now * 1e6) + messages:016x}"))
    finally:
        store.close()
    return time.perf_counter() - started


def start_once(data_dir: Path) -> tuple[float, float, int]:
    """(seconds from launch to listening, the server's own recovery seconds, resident KiB once listening)."""
    command = [sys.executable, "-m", "wonderq", "serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--data-dir", str(data_dir)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    recovered = -1.0
    try:
        for line in process.stderr:
            found = RECOVERED.search(line)
            if found:
                recovered = float(found.group(3))
            if LISTENING.search(line):
                listening = time.perf_counter() - started
                status = Path(f"/proc/{process.pid}/status").read_text()
                rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
                return listening, recovered, rss
        raise RuntimeError("the server did not start")
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", help="fill this directory (if empty) and keep it, instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wonderq-recovery-") as temporary:
        data_dir = Path(args.keep or temporary)
        if not (data_dir / "wonderq.db").exists():
            print(f"filling {data_dir} with {args.messages:,} messages ...", file=sys.stderr)
            print(f"filled in {fill(data_dir, args.messages):.1f} s", file=sys.stderr)
        size = sum(path.stat().st_size for path in data_dir.iterdir())
        results = []
        for run in range(args.runs):
            results.append(start_once(data_dir))
            listening, recovered, rss = results[-1]
            print(
                f"run {run + 1}: listening after {listening:.2f} s,"
                f" recovery {recovered:.2f} s, RSS {rss / 1024:.0f} MiB"
            )
    print(f"\n{args.messages:,} stored messages ({size / 2**20:.0f} MiB on disk), {args.runs} starts")
    for label, index, unit in (("launch to listening", 0, "s"), ("recovery (server log)", 1, "s")):
        values = [r[index] for r in results]
        print(
            f"{label:<24} median {statistics.median(values):6.2f} {unit}"
            f"  (min {min(values):.2f}, max {max(values):.2f})"
        )
    rss_values = [r[2] / 1024 for r in results]
    print(f"{'resident memory':<24} median {statistics.median(rss_values):6.0f} MiB")


if __name__ == "__main__":
    main()
