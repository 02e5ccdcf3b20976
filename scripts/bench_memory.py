#!/usr/bin/env python3
"""Memory per queued message, in process: fill a Core with N messages of 200 bytes (batches of 100 sends, each
batch at its own `now`, as the actor does), or recover one from a data directory as the server does at start-up,
then print the resident memory and where the bytes of each message go. Usage:

    .venv/bin/python scripts/bench_memory.py [--messages 1000000] [--leased 0.1] [--trace]
    .venv/bin/python scripts/bench_memory.py --restore DIR   # e.g. a directory bench_recovery.py --keep filled

The breakdown walks every message's own objects (shared ones, such as one content-type string or one float
for a whole batch, count once) at CPython's allocation sizes (pymalloc rounds to 16 bytes), and adds each
queue's containers (its message dict, ready order, retention deque, heaps) divided among the messages.
`--trace` also reports tracemalloc's count of the bytes allocated by the fill (slower, and it inflates RSS).
"""

from __future__ import annotations

import argparse
import collections
import gc
import re
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wonderq.config import Settings
from wonderq.core import Core, Limits
from wonderq.ids import TimeOrderedIds, new_token
from wonderq.model import Outgoing, Payload

BATCH = 100
QUEUES = 4


def rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def allocated(obj: object) -> int:
    """Bytes CPython's allocator hands out for `obj` (sys.getsizeof counts the GC header already)."""
    size = sys.getsizeof(obj)
    if size <= 512:  # pymalloc: 16-byte size classes
        return -(-size // 16) * 16
    return -(-(size + 8) // 16) * 16  # malloc: a header word, 16-byte alignment


def fill(messages: int, leased: float) -> Core:
    limits = Limits(max_message_bytes=256 * 1024, max_batch=BATCH, default_visibility_timeout=30.0)
    core = Core(limits=limits, new_id=TimeOrderedIds(), new_token=new_token, track_changes=True)
    now = time.time()
    sent = 0
    while sent < messages:
        count = min(BATCH, messages - sent)
        batch = [Outgoing(Payload(bytes([n % 256]) * 200, "text/plain")) for n in range(count)]  # one body each
        now += 0.001
        core.send_batch(f"q{(sent // BATCH) % QUEUES}", batch, now=now)
        core.drain_changes()  # what the actor does after every batch
        sent += count
    if leased:
        per_queue = int(messages * leased / QUEUES)
        for q in range(QUEUES):
            taken = 0
            while taken < per_queue:
                got = core.receive(
                    f"q{q}", max_messages=min(BATCH, per_queue - taken), visibility_timeout=3600, consumer=None, now=now
                )
                taken += len(got)
                core.drain_changes()
    return core


def restore(data_dir: Path) -> Core:
    from wonderq.server import recover
    from wonderq.store import SqliteStore

    store = SqliteStore(data_dir, sync="normal")
    settings = Settings(_env_file=None, data_dir=data_dir)
    core = recover(settings, store)
    store.close()
    return core


def own_objects(value: Any, path: str, seen: set[int]) -> Iterator[tuple[str, int]]:
    """(category, bytes) of `value` and what it holds, each object once (by identity)."""
    if value is None or isinstance(value, bool) or id(value) in seen:
        return
    if isinstance(value, int) and -5 <= value <= 256:
        return  # cached small ints
    if type(value).__module__ == "wonderq.model" and type(value).__name__ == "State":
        return  # enum members
    seen.add(id(value))
    if isinstance(value, tuple) and not value:
        return
    yield f"{path} ({type(value).__name__})", allocated(value)
    if isinstance(value, tuple):
        for index, item in enumerate(value):
            yield from own_objects(item, f"{path}[{index}]", seen)
    elif hasattr(type(value), "__slots__"):
        for cls in type(value).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(value, name):
                    yield from own_objects(getattr(value, name), f"{path}.{name}", seen)


def breakdown(core: Core) -> tuple[int, dict[str, int]]:
    totals: collections.Counter[str] = collections.Counter()
    seen: set[int] = set()
    count = 0
    for queue in core._queues.values():
        for message in queue.messages.values():
            count += 1
            for category, size in own_objects(message, "message", seen):
                totals[category] += size
        totals["queue: messages dict"] += allocated(queue.messages)
        ready = queue.ready
        for ids in ready._by_priority.values():
            totals["queue: ready order (id lists)"] += allocated(ids)
        totals["queue: retention deque"] += allocated(queue.arrivals)
        totals["queue: deadline heap (list)"] += allocated(queue.deadlines)
        for entry in queue.deadlines:
            for category, size in own_objects(entry, "deadline entry", seen):
                totals[category] += size
        totals["queue: delay heap (list)"] += allocated(queue.delayed)
    return count, dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--leased", type=float, default=0.0, help="share of the messages to lease (for an hour)")
    parser.add_argument("--restore", type=Path, help="recover the core from this data directory instead")
    parser.add_argument("--trace", action="store_true", help="also count the fill's allocations with tracemalloc")
    parser.add_argument("--no-breakdown", action="store_true")
    args = parser.parse_args()
    gc.collect()
    before = rss_mib()
    if args.trace:
        tracemalloc.start()
    started = time.perf_counter()
    core = restore(args.restore) if args.restore else fill(args.messages, args.leased)
    seconds = time.perf_counter() - started
    traced = tracemalloc.get_traced_memory()[0] if args.trace else 0
    tracemalloc.stop()
    gc.collect()
    after = rss_mib()
    queues, count = core.size()
    how = f"recovered from {args.restore}" if args.restore else f"sent in process, {args.leased:.0%} leased"
    print(f"{count:,} messages in {queues} queues, {how}, in {seconds:.1f} s")
    print(f"resident: {before:.0f} MiB before, {after:.0f} MiB after: {(after - before) * 2**20 / count:.0f} B/message")
    if args.trace:
        print(f"tracemalloc: {traced / count:.0f} B/message allocated and alive")
    if args.no_breakdown:
        return
    counted, totals = breakdown(core)
    print(f"\nper message, by object ({counted:,} messages; shared objects once):")
    for category, size in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {size / counted:7.1f}  {category}")
    print(f"  {sum(totals.values()) / counted:7.1f}  total")


if __name__ == "__main__":
    main()
