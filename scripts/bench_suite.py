#!/usr/bin/env python3
"""WonderQ's benchmark suite (issue 7), run by `scripts/bench`: WonderQ against beanstalkd and Redis on this
machine, and against its own framework's ceiling, measured side by side in the same runs.

Workloads:

* single: one client, one request at a time: the bare quart-trio route (`GET /ping` on the same hypercorn
  configuration, scripts/bench_bare_app.py), WonderQ's send, receive and ack (each mode), beanstalkd's put,
  reserve and delete, Redis's LPUSH, LMOVE and LREM. Requests per second, and p50/p99 latency from an
  HdrHistogram; WonderQ's rates also as a ratio to the bare route in the same run.
* cycle: the full cycle: N messages of 200 bytes sent, received and acknowledged, each counted once, by 1 and
  by 8 concurrent producer/consumer pairs (threads, each pair on its own queue, producer and consumer running
  at once, the consumer long-polling). WonderQ at batch 1 (one request per operation), 10 and 100, in memory
  (`--memory`) and with the durable default (fsync before every reply); beanstalkd (put/reserve/delete, in
  memory and with `-b DIR -f 0`); Redis one command at a time (batch 1) and pipelined by the batch size.
* cycle-stream: the same full cycle over WonderQ's streaming path (a WebSocket per producer and per consumer,
  scripts/bench_stream.py): batch B is B messages per `send` frame and up to B receipts per `ack` frame, sends
  pipelined (up to 1,000 unconfirmed), credit 100; in memory and durable; beanstalkd is the peer.
* scale (in memory): resident memory and fill time with `--scale-messages` queued (measured directly, also at
  1,000,000; filled in batches of 1,000 by 4 clients); receive p50/p99 on an empty queue, a queue of one message
  and the big queue; send latency while `--expiries` leases expire at once.
* longpoll (in memory): `--polls` (5,000) concurrent long polls parked from one trio process
  (scripts/bench_longpoll.py): server memory before and with them parked, send-to-wake-up p50/p99, and that all
  are answered at the end.
* recovery: scripts/bench_recovery.py's start-up measurement on `--recovery-messages` (200,000) stored messages:
  launch to listening, the server's own recovery time, resident memory once listening.

Every figure is the median (and range) of `--runs` runs; the workloads are interleaved within each run (and
their order rotates from one run to the next), and every ratio is taken between figures of the same run, then
its median reported. Servers are started on 127.0.0.1 and stopped by their pid, also on errors and Ctrl-C.
Peers that are not installed are skipped, with the command that installs them. Usage:

    scripts/bench [--runs 3] [--messages 20000] [--cap 500] [--requests 500] [--scale-messages 200000]
                  [--expiries 100000] [--polls 5000] [--recovery-messages 200000] [--json out.json]
    scripts/bench --only cycle-stream,longpoll,recovery     # some workloads (also --workloads)
    scripts/bench --quick          # a smoke run of every workload with tiny counts, under a minute
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from bench_brokers import (
    PAYLOAD_BYTES,
    BareRoute,
    Beanstalkd,
    Broker,
    Redis,
    Server,
    Timing,
    WonderQ,
    beanstalkd_missing,
    http_client,
    launch_bare,
    launch_wonderq,
    listening_url,
    redis_missing,
    start_beanstalkd,
    start_redis,
)
from bench_longpoll import measure_longpoll
from bench_recovery import fill as fill_store
from bench_recovery import start_once
from bench_stream import CREDIT as STREAM_CREDIT
from bench_stream import WINDOW as STREAM_WINDOW
from bench_stream import WonderQStream

try:
    from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover
    sys.exit("scripts/bench needs hdrhistogram: .venv/bin/pip install hdrhistogram")

STARTED = time.monotonic()


def progress(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f} s] {text}", file=sys.stderr, flush=True)


# ---- statistics ----


@dataclass
class Latency:
    p50: float  # milliseconds
    p99: float
    max: float
    count: int


def histogram(latencies_us: Sequence[int]) -> Latency:
    """Percentiles from an HdrHistogram (1 µs to 10 minutes, 3 significant digits)."""
    recorder = HdrHistogram(1, 600_000_000, 3)
    for value in latencies_us:
        recorder.record_value(max(1, value))
    return Latency(
        recorder.get_value_at_percentile(50) / 1000,
        recorder.get_value_at_percentile(99) / 1000,
        recorder.get_max_value() / 1000,
        recorder.get_total_count(),
    )


@dataclass
class Series:
    """One figure's value in each run."""

    runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def cell(self, digits: int = 0) -> str:
        if not self.runs:
            return "n/a"
        if len(self.runs) == 1:
            return f"{self.median:,.{digits}f}"
        return f"{self.median:,.{digits}f} ({min(self.runs):,.{digits}f} to {max(self.runs):,.{digits}f})"

    def ratio_cell(self) -> str:
        if not self.runs:
            return "n/a"
        if len(self.runs) == 1:
            return f"{self.median:.2f}x"
        return f"{self.median:.2f}x ({min(self.runs):.2f} to {max(self.runs):.2f})"


def ratios(numerator: Series, denominator: Series) -> Series:
    """Run by run: each run's figure over the same run's other figure."""
    return Series([a / b for a, b in zip(numerator.runs, denominator.runs, strict=False) if b > 0])


# ---- workloads ----


def run_pairs(broker: Broker, prefix: str, messages: int, batch: int, pairs: int) -> float:
    """Messages per second of the full cycle: `pairs` producer threads and as many consumer threads, each pair on
    its own queue, all connected before the clock starts; it stops when every consumer has acknowledged its
    share."""
    shares = [messages // pairs + (1 if n < messages % pairs else 0) for n in range(pairs)]
    queues = [f"{prefix}-{n}" for n in range(pairs)]
    for queue in queues:
        broker.prepare(queue)
    start = threading.Barrier(2 * pairs + 1, timeout=60)
    errors: list[BaseException] = []

    def guarded(work: Callable[..., None], *args: object) -> threading.Thread:
        def target() -> None:
            try:
                work(*args, start.wait)
            except BaseException as error:
                errors.append(error)
                start.abort()

        return threading.Thread(target=target, daemon=True)

    threads = []
    first = 0
    for queue, share in zip(queues, shares, strict=True):
        threads.append(guarded(broker.producer, queue, first, share, batch))
        threads.append(guarded(broker.consumer, queue, share, batch))
        first += share
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()
    began = time.perf_counter()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)
    elapsed = time.perf_counter() - began
    real = [error for error in errors if not isinstance(error, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]
    return messages / elapsed


@dataclass
class Results:
    single: dict[tuple[str, str], Series] = field(default_factory=dict)  # (system, operation) -> req/s
    latency: dict[tuple[str, str], list[Latency]] = field(default_factory=dict)
    bare_ratio: dict[tuple[str, str], Series] = field(default_factory=dict)  # WonderQ rate / bare route rate
    cycle: dict[tuple[str, int, int], Series] = field(default_factory=dict)  # (system, batch, pairs) -> msg/s
    scale: dict[str, Any] = field(default_factory=dict)
    longpoll: list[dict[str, Any]] = field(default_factory=list)  # one per run
    recovery: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def rotate(items: list[Any], by: int) -> list[Any]:
    if not items:
        return items
    by %= len(items)
    return items[by:] + items[:by]


def measure_single(results: Results, systems: dict[str, Any], run: int, requests: int, runs: int) -> None:
    bare_rate = 0.0
    for name in rotate(list(systems), run):
        system = systems[name]
        timings: dict[str, Timing]
        if isinstance(system, BareRoute):
            timings = {"GET /ping": system.single(requests)}
        else:
            timings = system.single(f"single-{run}", requests)
        for operation, timing in timings.items():
            rate = requests / timing.seconds
            results.single.setdefault((name, operation), Series()).runs.append(rate)
            latency = histogram(timing.latencies_us)
            results.latency.setdefault((name, operation), []).append(latency)
            progress(
                f"run {run + 1}/{runs} single {name} {operation}: {rate:,.0f} req/s,"
                f" p50 {latency.p50:.2f} ms, p99 {latency.p99:.2f} ms"
            )
            if name == "bare":
                bare_rate = rate
    if bare_rate:
        for (name, operation), series in results.single.items():
            if name.startswith("wonderq") and len(series.runs) == run + 1:
                results.bare_ratio.setdefault((name, operation), Series()).runs.append(series.runs[-1] / bare_rate)


def cycle_systems(brokers: dict[str, Broker], batch: int, first: int) -> list[str]:
    """Which systems run at this batch size: beanstalkd has no batches, so it runs once, with the first batch
    size of --batches, recorded as batch 1, and is the peer of every batch size."""
    return [name for name in brokers if batch == first or not name.startswith("beanstalkd")]


def cycle_messages(args: argparse.Namespace, name: str, batch: int) -> int:
    """Messages in one full cycle: N for the peers and WonderQ's large batches; at most `--cap` requests' worth
    for WonderQ's small batches, so that batch 1 (three requests a message) does not take minutes."""
    return int(min(args.messages, batch * args.cap) if name.startswith("wonderq") else args.messages)


def measure_cycle(results: Results, brokers: dict[str, Broker], run: int, args: argparse.Namespace) -> None:
    for pairs in args.pair_counts:
        for batch in args.batch_sizes:
            for name in rotate(cycle_systems(brokers, batch, args.batch_sizes[0]), run):
                messages = cycle_messages(args, name, batch)
                prefix = f"cycle-{run}-{batch}-{pairs}-{name}".replace(" ", "")
                rate = run_pairs(brokers[name], prefix, messages, batch, pairs)
                recorded = 1 if name.startswith("beanstalkd") else batch
                results.cycle.setdefault((name, recorded, pairs), Series()).runs.append(rate)
                progress(
                    f"run {run + 1}/{args.runs} cycle {name} batch {batch} x{pairs}"
                    f" ({messages:,} messages): {rate:,.0f} msg/s"
                )


# ---- scale ----


def fill(url: str, queue: str, messages: int, threads: int = 2, batch: int = 100) -> float:
    """Seconds to send `messages` messages to `queue` in batches of `batch` (at most the server's --max-batch)
    from `threads` clients at once."""
    client = WonderQ(url)
    shares = [messages // threads + (1 if n < messages % threads else 0) for n in range(threads)]

    def one(first: int, count: int) -> None:
        with http_client(url, 120) as http:
            for start in range(0, count, batch):
                client.send_batch(http, queue, first + start, min(batch, count - start))

    started = time.perf_counter()
    workers = [
        threading.Thread(target=one, args=(sum(shares[:n]), share), daemon=True) for n, share in enumerate(shares)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    with http_client(url) as http:
        ready = http.get(f"/v1/queues/{queue}").json()["ready"]
    if ready < messages:
        raise RuntimeError(f"filling {queue}: {ready} of {messages} messages ready")
    return seconds


def receive_latencies(http: httpx.Client, queues: dict[str, str], samples: int) -> dict[str, list[int]]:
    """Receive latency (one message each) per queue, interleaved: each sample sends one message (untimed) to
    every queue but the empty one, times one receive from each, and acks what it got (untimed), so every queue
    keeps its size."""
    found: dict[str, list[int]] = {label: [] for label in queues}
    for number in range(samples):
        for label, queue in queues.items():
            if label != "empty":
                http.post(
                    f"/v1/queues/{queue}/messages", content=f"{number:012d}".ljust(PAYLOAD_BYTES, "s")
                ).raise_for_status()
            before = time.perf_counter()
            reply = http.post(f"/v1/queues/{queue}/receive", json={"max": 1, "visibility_timeout": 300})
            found[label].append(int((time.perf_counter() - before) * 1e6))
            reply.raise_for_status()
            for lease in reply.json()["messages"]:
                http.delete(
                    f"/v1/queues/{queue}/messages/{lease['id']}", params={"receipt": lease["receipt"]}
                ).raise_for_status()
    return found


def lease_all(http: httpx.Client, queue: str, expiries: int, margin: float) -> float | None:
    """Lease the `expiries` messages of `queue` so that every lease ends at one deadline, `margin` seconds from
    now (each receive asks for the time left until it). The deadline, or None when leasing took so long that
    fewer than 4 s were left (the leases taken then end at the deadline anyway)."""
    deadline = time.time() + margin
    leased = 0
    while leased < expiries:
        timeout = deadline - time.time()
        if timeout < 4:
            progress(f"scale: leased only {leased:,} of {expiries:,} within {margin:.0f} s; waiting, then retrying")
            time.sleep(timeout + 1)
            return None
        reply = http.post(f"/v1/queues/{queue}/receive", json={"max": 100, "visibility_timeout": timeout})
        reply.raise_for_status()
        got = len(reply.json()["messages"])
        if not got:
            raise RuntimeError(f"{queue} ran dry after {leased} of {expiries} leases")
        leased += got
    return deadline


def expiry_round(url: str, queue: str, expiries: int, margin: float) -> dict[str, Any]:
    """Lease every message of `queue` (which holds `expiries`) with one common deadline, then send single
    messages to another queue back to back from 3 s before that deadline to 3 s after it. Returns the send
    latencies before (the 3 s to 0.3 s before) and around the expiry (0.2 s before to 2 s after)."""
    with http_client(url, 120) as http:
        before = http.get(f"/v1/queues/{queue}").json()
        for _ in range(3):
            found = lease_all(http, queue, expiries, margin)
            if found is not None:
                deadline = found
                break
            margin *= 2
            while http.get(f"/v1/queues/{queue}").json()["ready"] < expiries:
                time.sleep(0.5)
            before = http.get(f"/v1/queues/{queue}").json()
        else:
            raise RuntimeError(f"could not lease {expiries:,} messages in time: give --lease-margin")
        sends: list[tuple[float, int]] = []
        number = 0
        while time.time() < deadline + 3:
            at = time.time()
            started = time.perf_counter()
            http.post(
                "/v1/queues/scale-probe/messages", content=f"{number:012d}".ljust(PAYLOAD_BYTES, "p")
            ).raise_for_status()
            sends.append((at - deadline, int((time.perf_counter() - started) * 1e6)))
            number += 1
        http.post("/v1/queues/scale-probe/purge").raise_for_status()
        after = http.get(f"/v1/queues/{queue}").json()
    baseline = [us for offset, us in sends if -3 <= offset < -0.3]
    during = [us for offset, us in sends if -0.2 <= offset < 2]
    return {
        "expired": after["expired"] - before["expired"],
        "baseline": histogram(baseline),
        "during": histogram(during),
    }


SCALE_BATCH = 1000  # messages per request while filling the big queue (the scale server's --max-batch)
SCALE_CLIENTS = 4  # clients filling it at once


def measure_scale(results: Results, workdir: Path, args: argparse.Namespace) -> None:
    """Resident memory with --scale-messages queued (measured, also at 1,000,000), receive latencies by queue
    size, and sends while --expiries leases expire at once."""
    server = launch_wonderq("memory", workdir, SCALE_BATCH)
    try:
        address = listening_url(server)
        with http_client(address, 120) as http:
            http.get("/health").raise_for_status()
            empty_kib = server.resident_kib()
            progress(f"scale: filling a queue with {args.scale_messages:,} messages ...")
            seconds = fill(address, "scale-big", args.scale_messages, SCALE_CLIENTS, SCALE_BATCH)
            full_kib = server.resident_kib()
            progress(
                f"scale: {args.scale_messages:,} messages queued in {seconds:.1f} s;"
                f" resident {empty_kib / 1024:.0f} MiB empty, {full_kib / 1024:.0f} MiB full"
            )
            results.scale["fill"] = {
                "messages": args.scale_messages,
                "seconds": seconds,
                "resident_empty_mib": empty_kib / 1024,
                "resident_full_mib": full_kib / 1024,
                "per_million_mib": (full_kib - empty_kib) / 1024 / args.scale_messages * 1_000_000,
            }
            for queue in ("scale-empty", "scale-one"):
                http.put(f"/v1/queues/{queue}").raise_for_status()
            progress(f"scale: filling a queue with {args.expiries:,} messages to expire ...")
            fill_expiring = fill(address, "scale-expiring", args.expiries)
            margin = args.lease_margin or 5 + 1.5 * fill_expiring
            big = f"{args.scale_messages:,} ready"
            queues = {"empty": "scale-empty", "1 ready": "scale-one", big: "scale-big"}
            receive: dict[str, list[Latency]] = {label: [] for label in queues}
            expiry: list[dict[str, Any]] = []
            for run in range(args.runs):
                for label, latencies in receive_latencies(http, queues, args.scale_samples).items():
                    receive[label].append(histogram(latencies))
                    progress(
                        f"run {run + 1}/{args.runs} scale receive ({label}):"
                        f" p50 {receive[label][-1].p50:.2f} ms, p99 {receive[label][-1].p99:.2f} ms"
                    )
                if run >= args.expiry_rounds:
                    continue
                round_ = expiry_round(address, "scale-expiring", args.expiries, margin)
                expiry.append(round_)
                progress(
                    f"run {run + 1}/{args.runs} scale expiry of {round_['expired']:,} leases: send p99"
                    f" {round_['baseline'].p99:.2f} ms before, max {round_['during'].max:.2f} ms around it"
                )
            results.scale["receive"] = receive
            results.scale["expiry"] = expiry
            results.scale["expiries"] = args.expiries
    finally:
        server.stop()


# ---- parked long polls, recovery ----


def longpoll_summary(figures: dict[str, Any]) -> str:
    wake = histogram(figures["wake_delays_us"]) if figures["wake_delays_us"] else None
    return (
        f"{figures['opened']:,} connections, at most {figures['parked']:,} parked;"
        f" resident {figures['resident_before_kib'] / 1024:.0f} -> {figures['resident_parked_kib'] / 1024:.0f} MiB"
        f" ({figures['bytes_per_poll'] / 1024:.1f} KiB a poll); wake-up"
        + (f" p50 {wake.p50:.2f} ms, p99 {wake.p99:.2f} ms" if wake else " not measured")
        + f"; {figures['parked_at_end']} parked at the end, {figures['error_count']} errors"
    )


def measure_recovery(results: Results, workdir: Path, args: argparse.Namespace) -> None:
    """scripts/bench_recovery.py's measurement: a store of --recovery-messages messages (a tenth leased), then
    `wonderq serve --data-dir` started once per run: launch to listening, the server's own recovery figure
    (its log line), resident memory once listening."""
    data_dir = workdir / "recovery-data"
    data_dir.mkdir()
    progress(f"recovery: filling a store with {args.recovery_messages:,} messages ...")
    filled = fill_store(data_dir, args.recovery_messages)
    size = sum(path.stat().st_size for path in data_dir.iterdir())
    progress(f"recovery: filled in {filled:.1f} s, {size / 2**20:.0f} MiB on disk")
    starts = []
    for run in range(args.runs):
        listening, recovered, rss_kib = start_once(data_dir)
        starts.append({"listening_s": listening, "recovered_s": recovered, "resident_mib": rss_kib / 1024})
        progress(
            f"run {run + 1}/{args.runs} recovery: listening after {listening:.2f} s, the server's recovery"
            f" {recovered:.2f} s, resident {rss_kib / 1024:.0f} MiB"
        )
    results.recovery = {"messages": args.recovery_messages, "fill_s": filled, "disk_mib": size / 2**20}
    results.recovery["starts"] = starts


# ---- report ----

# (WonderQ variant, its peer): one cycle table each
CYCLE_TABLES = (
    ("wonderq-memory", "beanstalkd"),
    ("wonderq-durable", "beanstalkd -f 0"),
    ("wonderq-stream-memory", "beanstalkd"),
    ("wonderq-stream-durable", "beanstalkd -f 0"),
)


def describe(name: str, batch: int) -> str:
    if name == "redis":
        return "Redis, one command at a time" if batch == 1 else f"Redis, pipelined by {batch}"
    return name


def report(results: Results, args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    out = lines.append
    if results.single:
        out(
            f"Single requests, one client, {args.requests:,} of each per run, {args.runs} runs:"
            " median (min to max); ratio to the bare quart-trio route in the same run; latency from an HdrHistogram"
            " (median of the runs' percentiles)."
        )
        out("")
        out("| request | req/s | vs bare route | p50 ms | p99 ms |")
        out("|---|---:|---:|---:|---:|")
        for (name, operation), series in results.single.items():
            latencies = results.latency[name, operation]
            ratio = results.bare_ratio.get((name, operation))
            out(
                f"| {name} {operation} | {series.cell()} | {ratio.ratio_cell() if ratio else ''}"
                f" | {statistics.median(x.p50 for x in latencies):.2f}"
                f" | {statistics.median(x.p99 for x in latencies):.2f} |"
            )
        out("")
    for mode, peer in CYCLE_TABLES:
        if not any(key[0] == mode for key in results.cycle):
            continue
        durable = mode.endswith("-durable")
        in_memory = mode.replace("-durable", "-memory")
        capped = (
            ", ".join(
                f"{cycle_messages(args, mode, batch):,} at batch {batch}"
                for batch in args.batch_sizes
                if cycle_messages(args, mode, batch) < args.messages
            )
            or "the same"
        )
        path = (
            f"over the streaming path (WebSocket; batch B: B messages per send frame, up to B receipts per ack"
            f" frame; credit max({args.stream_credit}, B); up to max({args.stream_window}, B) sends unconfirmed)"
            if "stream" in mode
            else "over HTTP requests (batch B: B messages per request)"
        )
        out(
            f"Full cycle {path},"
            f" {'durable default (fsync before reply)' if durable else 'in memory'}: messages per second"
            f" (send + receive + ack, {PAYLOAD_BYTES} B, counted once), {args.messages:,} messages per run"
            f" ({capped} for WonderQ), {args.runs} runs, median (min to max); ratios taken within each"
            " run. beanstalkd has no batch commands: its column is the same put/reserve/delete run at every batch"
            " size."
        )
        out("")
        redis_column = not durable and any(key[0] == "redis" for key in results.cycle)
        head = f"| batch, pairs | {mode} | {peer} | vs {peer}"
        rule = "|---|---:|---:|---:"
        if redis_column:
            head += " | Redis (batch 1: single; else pipelined) | vs Redis"
            rule += "|---:|---:"
        if durable:
            head += f" | vs {in_memory}"
            rule += "|---:"
        out(head + " |")
        out(rule + "|")
        for pairs in args.pair_counts:
            for batch in args.batch_sizes:
                ours = results.cycle.get((mode, batch, pairs))
                if ours is None:
                    continue
                theirs = results.cycle.get((peer, 1, pairs), Series())
                row = f"| {batch}, x{pairs} | {ours.cell()} | {theirs.cell()} | {ratios(ours, theirs).ratio_cell()}"
                if redis_column:
                    redis = results.cycle.get(("redis", batch, pairs), Series())
                    row += f" | {redis.cell()} | {ratios(ours, redis).ratio_cell()}"
                if durable:
                    memory = results.cycle.get((in_memory, batch, pairs), Series())
                    row += f" | {ratios(ours, memory).ratio_cell()}"
                out(row + " |")
        out("")
    if results.scale:
        fill_ = results.scale["fill"]
        out(
            f"Scale, in memory, one client ({args.runs} rounds of {args.scale_samples:,} receives per queue,"
            f" {args.expiry_rounds} of {args.expiries:,} expiries):"
        )
        out("")
        out("| | figure |")
        out("|---|---:|")
        out(
            f"| fill {fill_['messages']:,} messages (batches of {SCALE_BATCH:,}, {SCALE_CLIENTS} clients)"
            f" | {fill_['seconds']:.1f} s |"
        )
        out(
            f"| resident memory: empty / with {fill_['messages']:,} queued | {fill_['resident_empty_mib']:.0f} MiB /"
            f" {fill_['resident_full_mib']:.0f} MiB |"
        )
        if fill_["messages"] < 1_000_000:
            out(
                f"| resident memory per 1,000,000 messages (extrapolated) + empty server"
                f" | {fill_['per_million_mib'] + fill_['resident_empty_mib']:,.0f} MiB |"
            )
        for label, latencies in results.scale["receive"].items():
            p50 = Series([x.p50 for x in latencies])
            p99 = Series([x.p99 for x in latencies])
            out(f"| receive p50 / p99, queue {label} | {p50.cell(2)} / {p99.cell(2)} ms |")
        expiry = results.scale["expiry"]
        before = Series([x["baseline"].p99 for x in expiry])
        worst = Series([x["during"].max for x in expiry])
        added = Series([x["during"].max - x["baseline"].p50 for x in expiry])
        count = Series([float(x["expired"]) for x in expiry])
        out(f"| leases expired at one deadline | {count.cell()} |")
        out(f"| send p99 in the 3 s before the expiry | {before.cell(2)} ms |")
        out(f"| slowest send from 0.2 s before to 2 s after | {worst.cell(2)} ms |")
        out(f"| added to a send (slowest around it minus p50 before) | {added.cell(2)} ms |")
        out("")
    if results.longpoll:
        first = results.longpoll[0]
        out(
            f"Parked long polls, in memory: {first['polls']:,} concurrent `POST .../receive`"
            f" (wait {first['wait_s']:g} s, max 1) from one trio process, one connection each; a poll that runs out"
            " parks again. Then"
            f" {len(first['wake_delays_us']):,} single sends, one at a time: delay from the start of the send request"
            f" to the whole response of the poll it woke (HdrHistogram). {args.runs} runs, median (min to max)."
            " WonderQ has no setting that limits concurrent long polls."
        )
        out("")
        out("| | figure |")
        out("|---|---:|")
        rows = results.longpoll

        def column(key: str, scale: float = 1.0) -> Series:
            return Series([float(x[key]) * scale for x in rows])

        wakes = [histogram(x["wake_delays_us"]) for x in rows if x["wake_delays_us"]]
        sends = [histogram(x["send_us"]) for x in rows if x["send_us"]]
        opened, seconds = column("opened"), column("seconds_to_park")
        out(f"| connections opened / seconds to open them | {opened.cell()} / {seconds.cell(1)} |")
        out(f"| most polls parked at once (server's /health) | {column('parked').cell()} |")
        out(f"| polls that ran out (wait over) and parked again | {column('answered_empty').cell()} |")
        out(
            f"| resident memory before / with them parked | {column('resident_before_kib', 1 / 1024).cell()} MiB /"
            f" {column('resident_parked_kib', 1 / 1024).cell()} MiB |"
        )
        per_poll = column("bytes_per_poll", 1 / 1024)
        out(f"| resident memory per parked poll (and its connection) | {per_poll.cell(1)} KiB |")
        if wakes:
            out(
                f"| send to wake-up, p50 / p99 | {Series([x.p50 for x in wakes]).cell(2)} /"
                f" {Series([x.p99 for x in wakes]).cell(2)} ms |"
            )
            out(
                f"| the send request alone, p50 / p99 | {Series([x.p50 for x in sends]).cell(2)} /"
                f" {Series([x.p99 for x in sends]).cell(2)} ms |"
            )
        out(f"| sends that woke no poll within 10 s | {column('lost').cell()} |")
        out(
            f"| at the end: polls left parked (server) / poll errors | {column('parked_at_end').cell()} /"
            f" {column('error_count').cell()} |"
        )
        out(f"| resident memory after every poll was answered | {column('resident_after_kib', 1 / 1024).cell()} MiB |")
        out("")
    if results.recovery:
        recovery = results.recovery
        starts = recovery["starts"]
        out(
            f"Start-up recovery: {recovery['messages']:,} stored messages of {PAYLOAD_BYTES} B (a tenth leased),"
            f" {recovery['disk_mib']:.0f} MiB on disk, `wonderq serve --data-dir` started {len(starts)} times"
            " (scripts/bench_recovery.py's measurement), median (min to max):"
        )
        out("")
        out("| | figure |")
        out("|---|---:|")
        out(f"| launch to listening | {Series([x['listening_s'] for x in starts]).cell(2)} s |")
        out(f"| recovery (the server's log line) | {Series([x['recovered_s'] for x in starts]).cell(2)} s |")
        out(f"| resident memory once listening | {Series([x['resident_mib'] for x in starts]).cell()} MiB |")
        out("")
    for peer, why in results.skipped.items():
        out(f"Skipped {peer}: {why}")
    return lines


def document(results: Results, args: argparse.Namespace, versions: dict[str, str]) -> dict[str, Any]:
    def latency(value: Latency) -> dict[str, float]:
        return {"p50_ms": value.p50, "p99_ms": value.p99, "max_ms": value.max, "count": value.count}

    scale: dict[str, Any] = {}
    if results.scale:
        scale = {
            "fill": results.scale["fill"],
            "receive": {label: [latency(x) for x in xs] for label, xs in results.scale["receive"].items()},
            "expiry": [
                {"expired": x["expired"], "baseline": latency(x["baseline"]), "during": latency(x["during"])}
                for x in results.scale["expiry"]
            ],
        }
    return {
        "command": sys.argv[1:],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), **versions},
        "settings": {
            key: getattr(args, key)
            for key in (
                "runs",
                "messages",
                "cap",
                "requests",
                "scale_messages",
                "expiries",
                "expiry_rounds",
                "polls",
                "poll_sends",
                "poll_wait",
                "recovery_messages",
                "stream_credit",
                "stream_window",
            )
        }
        | {"payload_bytes": PAYLOAD_BYTES, "batches": args.batch_sizes, "pairs": args.pair_counts},
        "single": [
            {
                "system": name,
                "operation": operation,
                "requests_per_second": series.runs,
                "vs_bare_route": results.bare_ratio[name, operation].runs
                if (name, operation) in results.bare_ratio
                else None,
                "latency": [latency(x) for x in results.latency[name, operation]],
            }
            for (name, operation), series in results.single.items()
        ],
        "cycle": [
            {
                "system": name,
                "batch": batch,
                "pairs": pairs,
                "messages": cycle_messages(args, name, batch),
                "messages_per_second": series.runs,
            }
            for (name, batch, pairs), series in results.cycle.items()
        ],
        "scale": scale,
        "longpoll": [
            {key: value for key, value in x.items() if key not in ("wake_delays_us", "send_us")}
            | {
                "wake_delay": latency(histogram(x["wake_delays_us"])) if x["wake_delays_us"] else None,
                "send": latency(histogram(x["send_us"])) if x["send_us"] else None,
            }
            for x in results.longpoll
        ],
        "recovery": results.recovery,
        "skipped": results.skipped,
    }


def tool_version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "missing"


# ---- main ----

WORKLOADS = ("single", "cycle", "cycle-stream", "scale", "longpoll", "recovery")


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs of every workload (default 3)")
    parser.add_argument("--messages", type=int, default=20_000, help="messages per full cycle (default 20,000)")
    parser.add_argument(
        "--cap",
        type=int,
        default=500,
        help="WonderQ's full cycle at batch B moves min(--messages, B x CAP) messages (default 500: 500 at batch 1,"
        " 5,000 at batch 10)",
    )
    parser.add_argument("--requests", type=int, default=500, help="requests of each kind in 'single' (default 500)")
    parser.add_argument("--batches", default="1,10,100", help="WonderQ batch sizes (default 1,10,100)")
    parser.add_argument("--pairs", default="1,8", help="concurrent producer/consumer pairs (default 1,8)")
    parser.add_argument("--modes", default="memory,durable", help="WonderQ storage modes (default memory,durable)")
    parser.add_argument("--peers", default="beanstalkd,redis", help="peers to run if installed (default both)")
    parser.add_argument(
        "--workloads",
        "--only",
        default=",".join(WORKLOADS),
        help=f"the workloads to run, comma-separated (default all: {','.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--stream-credit",
        type=int,
        default=STREAM_CREDIT,
        help=f"cycle-stream: the consumer's credit, at least the batch (default {STREAM_CREDIT}; at most 1,000)",
    )
    parser.add_argument(
        "--stream-window",
        type=int,
        default=STREAM_WINDOW,
        help=f"cycle-stream: messages a producer may have sent unconfirmed (default {STREAM_WINDOW})",
    )
    parser.add_argument("--polls", type=int, default=5_000, help="concurrent long polls in 'longpoll' (default 5,000)")
    parser.add_argument("--poll-sends", type=int, default=200, help="sends timed in 'longpoll' (default 200)")
    parser.add_argument("--poll-wait", type=float, default=20.0, help="each long poll's wait, 0 to 20 s (default 20)")
    parser.add_argument(
        "--recovery-messages",
        type=int,
        default=200_000,
        help="messages stored for 'recovery' (default 200,000; 1,000,000 for the issue's figure)",
    )
    parser.add_argument(
        "--scale-messages", type=int, default=200_000, help="messages queued for 'scale' (default 200,000)"
    )
    parser.add_argument("--expiries", type=int, default=100_000, help="leases expiring at once (default 100,000)")
    parser.add_argument("--scale-samples", type=int, default=200, help="receives per queue per run (default 200)")
    parser.add_argument("--expiry-rounds", type=int, default=1, help="rounds of the expiry workload (default 1)")
    parser.add_argument("--lease-margin", type=float, default=0.0, help="seconds to lease --expiries (default: auto)")
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny counts, one run")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.messages, args.cap, args.requests = 1, 400, 40, 50
        args.scale_messages, args.expiries, args.scale_samples = 2_000, 1_000, 20
        args.polls, args.poll_sends, args.recovery_messages = 200, 20, 2_000
    args.batch_sizes = [int(b) for b in args.batches.split(",")]
    args.pair_counts = [int(p) for p in args.pairs.split(",")]
    args.mode_list = [m for m in args.modes.split(",") if m]
    args.peer_list = [p for p in args.peers.split(",") if p]
    args.workload_list = [w for w in args.workloads.split(",") if w]
    for workload in args.workload_list:
        if workload not in WORKLOADS:
            parser.error(f"unknown workload {workload!r}: {', '.join(WORKLOADS)}")
    for mode in args.mode_list:
        if mode not in ("memory", "durable"):
            parser.error(f"unknown mode {mode!r}: memory or durable")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    results = Results()
    servers: list[Server] = []
    versions = {
        "beanstalkd": tool_version(["beanstalkd", "-v"]),
        "redis": tool_version(["redis-server", "--version"]),
    }
    with tempfile.TemporaryDirectory(prefix="wonderq-bench-") as temporary:
        workdir = Path(temporary)
        try:
            brokers: dict[str, Broker] = {}
            singles: dict[str, Any] = {}
            bench = {"single", "cycle", "cycle-stream"} & set(args.workload_list)
            if bench:
                launched: dict[str, Server] = {}  # in parallel: each takes a second or two to start
                if "single" in bench:
                    launched["bare"] = launch_bare(workdir)
                    servers.append(launched["bare"])
                for mode in args.mode_list:
                    launched[mode] = launch_wonderq(mode, workdir, max(100, *args.batch_sizes))
                    servers.append(launched[mode])
                if "bare" in launched:
                    singles["bare"] = BareRoute(listening_url(launched["bare"]))
                for mode in args.mode_list:
                    address = listening_url(launched[mode])
                    singles[f"wonderq-{mode}"] = WonderQ(address)
                    if "cycle" in bench:
                        brokers[f"wonderq-{mode}"] = singles[f"wonderq-{mode}"]
                    if "cycle-stream" in bench:
                        brokers[f"wonderq-stream-{mode}"] = WonderQStream(
                            address, args.stream_credit, args.stream_window
                        )
                    progress(f"started wonderq --{mode} (pid {launched[mode].pid}) on {address}")
                if "beanstalkd" in args.peer_list:
                    why = beanstalkd_missing()
                    if why:
                        results.skipped["beanstalkd"] = why
                        progress(f"skipping beanstalkd: {why}")
                    else:
                        for durable in (False, True):
                            if durable and "durable" not in args.mode_list:
                                continue
                            server, port = start_beanstalkd(workdir, durable)
                            servers.append(server)
                            name = "beanstalkd -f 0" if durable else "beanstalkd"
                            brokers[name] = Beanstalkd(port)
                            if not durable:
                                singles[name] = brokers[name]
                            progress(f"started {name} (pid {server.pid}) on 127.0.0.1:{port}")
                if "redis" in args.peer_list:
                    why = redis_missing()
                    if why:
                        results.skipped["redis"] = why
                        progress(f"skipping redis: {why}")
                    else:
                        server, port = start_redis(workdir)
                        servers.append(server)
                        brokers["redis"] = singles["redis"] = Redis(port)
                        progress(f"started redis (pid {server.pid}) on 127.0.0.1:{port}")
                for broker in brokers.values():  # warm up
                    if isinstance(broker, WonderQ | WonderQStream):
                        run_pairs(broker, "warmup", 200, 10, 1)
                for run in range(args.runs):
                    if "single" in args.workload_list:
                        measure_single(results, singles, run, args.requests, args.runs)
                    if {"cycle", "cycle-stream"} & bench:
                        measure_cycle(results, brokers, run, args)
                for server in servers:
                    server.stop()
                servers.clear()
            if "scale" in args.workload_list:
                measure_scale(results, workdir, args)
            if "longpoll" in args.workload_list:
                for run in range(args.runs):
                    try:
                        figures = measure_longpoll(workdir, args.polls, args.poll_sends, args.poll_wait, progress)
                    except Exception as error:  # recorded and reported: the other workloads' figures stand
                        results.skipped[f"longpoll run {run + 1}"] = f"failed: {error!r}"
                        progress(f"run {run + 1}/{args.runs} longpoll failed: {error!r}")
                        continue
                    results.longpoll.append(figures)
                    progress(f"run {run + 1}/{args.runs} longpoll: {longpoll_summary(figures)}")
            if "recovery" in args.workload_list:
                measure_recovery(results, workdir, args)
        finally:
            for server in servers:
                server.stop()
    lines = report(results, args)
    print("\n" + "\n".join(lines))
    print(f"\ncommand: scripts/bench {' '.join(sys.argv[1:])}; total {time.monotonic() - STARTED:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(document(results, args, versions), indent=2) + "\n")
        progress(f"wrote {args.json}")


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through every `finally`, which stops the servers


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted; every server started was stopped")
