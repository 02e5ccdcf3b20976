"""The parked long polls workload of scripts/bench: thousands of concurrent `POST /v1/queues/<q>/receive` long
polls held open against one in-memory WonderQ, from ONE process (trio, one raw socket and task per poll, writing
minimal HTTP/1.1), while single messages are sent one at a time.

This module owns the polls, the sender and the measurement: the server's resident memory before the polls and
with all of them parked (from /proc, the delta and bytes per poll); the delay from the start of each send request
to the moment the parked poll it wakes has its whole response (polls are answered first come, first served, so
each send wakes the oldest one; that poll then parks again at the back); and the end: the remaining polls are
each given a message, and every poll must have been answered and the server must report 0 parked receives.
WonderQ has no limit on concurrent long polls (no setting; `parked_receives` in /health counts them), so none
is raised here; the limit is the process's open files (raised to its hard limit here).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import trio
from bench_brokers import PAYLOAD_BYTES, Server, launch_wonderq, listening_url

RAMP = 180.0  # seconds allowed for opening every poll's connection
CONNECTING = 64  # connections being opened at once (hypercorn's listen backlog is 100)
QUEUE = "parked"


@dataclass
class Polls:
    """What the poll tasks share: when each message arrived, and counts."""

    wanted: int  # polls to open
    arrived: dict[str, float] = field(default_factory=dict)  # message body's number -> perf_counter seconds
    answered_with_message: int = 0
    answered_empty: int = 0  # polls whose `wait` ran out (they park again)
    opened: int = 0  # connections opened, with their first poll sent
    finished: int = 0  # poll tasks ended (after `stopping`, once answered)
    errors: list[str] = field(default_factory=list)
    stopping: bool = False
    arrival: trio.Event = field(default_factory=trio.Event)
    all_open: trio.Event = field(default_factory=trio.Event)  # set once every poll task has opened (or ended)
    all_done: trio.Event = field(default_factory=trio.Event)  # set once every poll task has ended

    def count_open(self) -> None:
        self.opened += 1
        if self.opened + self.finished >= self.wanted:
            self.all_open.set()

    def count_finished(self) -> None:
        self.finished += 1
        if self.opened + self.finished >= self.wanted:
            self.all_open.set()
        if self.finished >= self.wanted:
            self.all_done.set()


def _request(host: str, wait: float) -> bytes:
    body = orjson.dumps({"max": 1, "wait": wait, "visibility_timeout": 300})
    head = (
        f"POST /v1/queues/{QUEUE}/receive HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _response(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a content-length: (status, body); leftover bytes stay in `buffer`."""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    length = next((int(line.split(":", 1)[1]) for line in head[1:] if line.lower().startswith("content-length")), -1)
    if length < 0:
        raise ConnectionError(f"a response without content-length: {head}")
    while len(buffer) < end + 4 + length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-response")
        buffer += chunk
    body = bytes(buffer[end + 4 : end + 4 + length])
    del buffer[: end + 4 + length]
    return status, body


async def _poll(host: str, port: int, request: bytes, polls: Polls, connecting: trio.CapacityLimiter) -> None:
    """One connection: long poll, record what it got, poll again, until told to stop (then end once answered)."""
    try:
        async with connecting:
            stream = await trio.open_tcp_stream(host, port)
            await stream.send_all(request)
            polls.count_open()
        async with stream:
            buffer = bytearray()
            while True:
                status, body = await _response(stream, buffer)
                now = time.perf_counter()
                if status != 200:
                    raise ConnectionError(f"receive answered {status}: {body[:200]!r}")
                messages = orjson.loads(body)["messages"]
                for message in messages:
                    polls.arrived[message["body"][:12]] = now
                    polls.arrival.set()
                    polls.arrival = trio.Event()
                if messages:
                    polls.answered_with_message += 1
                else:
                    polls.answered_empty += 1
                if polls.stopping:
                    return
                await stream.send_all(request)
    except Exception as error:
        polls.errors.append(repr(error))
    finally:
        polls.count_finished()


async def _parked(http: httpx.AsyncClient) -> int:
    """The server's count of parked receives (/health), or -1 when it does not answer within the client's
    timeout (a server swamped by polls)."""
    try:
        reply = await http.get("/health")
    except httpx.TimeoutException:
        return -1
    reply.raise_for_status()
    return int(reply.json()["parked_receives"])


async def _wait_parked(http: httpx.AsyncClient, polls: Polls, count: int, settle: float) -> int:
    """Wait until every connection is open and the server reports `count` parked receives, or `settle` seconds
    after the last one opened (when opening them all takes longer than a poll's `wait`, the first polls run out
    and park again meanwhile, so a few may be in flight at any moment); returns the most seen parked at once."""
    with trio.move_on_after(RAMP):
        await polls.all_open.wait()
    deadline = time.monotonic() + settle
    most = await _parked(http)
    while most < count and time.monotonic() < deadline:
        await trio.sleep(0.1)
        most = max(most, await _parked(http))
    return most


async def _run(
    server: Server, url: str, polls_wanted: int, sends: int, wait: float, progress: Callable[[str], None]
) -> dict[str, Any]:
    address = urlsplit(url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    polls = Polls(polls_wanted)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        (await http.put(f"/v1/queues/{QUEUE}")).raise_for_status()
        for _ in range(20):  # warm the routes up before the baseline
            await _parked(http)
        before_kib = server.resident_kib()
        opened = time.perf_counter()
        async with trio.open_nursery() as nursery:
            connecting = trio.CapacityLimiter(CONNECTING)
            request = _request(host, wait)
            for _ in range(polls_wanted):
                nursery.start_soon(_poll, host, port, request, polls, connecting)
            parked = await _wait_parked(http, polls, polls_wanted, 10)
            parked_after = time.perf_counter() - opened
            opened_all = polls.opened
            progress(
                f"longpoll: {opened_all:,} of {polls_wanted:,} connections open after {parked_after:.1f} s,"
                f" at most {parked:,} polls parked at once ({polls.answered_empty:,} ran out and parked again)"
            )
            with_kib = server.resident_kib()
            delays_us: list[int] = []
            send_us: list[int] = []
            lost = 0
            for number in range(sends):
                key = f"{number:012d}"
                started = time.perf_counter()
                reply = await http.post(
                    f"/v1/queues/{QUEUE}/messages",
                    content=key.ljust(PAYLOAD_BYTES, "w"),
                    headers={"content-type": "text/plain"},
                )
                send_us.append(int((time.perf_counter() - started) * 1e6))
                reply.raise_for_status()
                with trio.move_on_after(10):
                    while key not in polls.arrived:
                        await polls.arrival.wait()
                if key in polls.arrived:
                    delays_us.append(int((polls.arrived[key] - started) * 1e6))
                else:
                    lost += 1
            progress(f"longpoll: {sends - lost} of {sends} sends woke a parked poll")
            during_kib = server.resident_kib()
            parked_during = await _parked(http)
            polls.stopping = True  # every poll ends once answered with a message: give each one
            for start in range(0, polls_wanted, 100):
                entries = [
                    {"body": f"end{n:09d}".ljust(PAYLOAD_BYTES, "e"), "content_type": "text/plain"}
                    for n in range(start, min(polls_wanted, start + 100))
                ]
                (await http.post(f"/v1/queues/{QUEUE}/messages/batch", json={"messages": entries})).raise_for_status()
            with trio.move_on_after(wait + 30) as scope:
                await polls.all_done.wait()
            if scope.cancelled_caught:
                polls.errors.append(f"{polls_wanted - polls.finished} polls still open at the end")
                nursery.cancel_scope.cancel()
        parked_end = await _parked(http)
        await trio.sleep(0.5)  # the server closes its side of the connections
        after_kib = server.resident_kib()
    return {
        "polls": polls_wanted,
        "wait_s": wait,
        "parked": parked,
        "parked_during_sends": parked_during,
        "seconds_to_park": parked_after,
        "opened": opened_all,
        "resident_before_kib": before_kib,
        "resident_parked_kib": with_kib,
        "resident_during_sends_kib": during_kib,
        "resident_after_kib": after_kib,
        "bytes_per_poll": (with_kib - before_kib) * 1024 / max(1, polls_wanted),
        "wake_delays_us": delays_us,
        "send_us": send_us,
        "lost": lost,
        "answered_with_message": polls.answered_with_message,
        "answered_empty": polls.answered_empty,
        "parked_at_end": parked_end,
        "errors": polls.errors[:5],
        "error_count": len(polls.errors),
    }


def raise_open_files(needed: int) -> None:
    """Raise this process's open-file limit to its hard limit if `needed` descriptors would not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise RuntimeError(f"{needed} open files needed, the limit is {soft}: raise `ulimit -n`")


def measure_longpoll(
    workdir: Path, polls: int, sends: int, wait: float, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Start an in-memory WonderQ, park `polls` long polls (each waiting up to `wait` seconds, 0 to 20) on one
    queue, send `sends` single messages one at a time, and stop the server. Returns the figures (see `_run`)."""
    raise_open_files(polls + 200)
    server = launch_wonderq("memory", workdir, 100)
    try:
        url = listening_url(server)
        return trio.run(_run, server, url, polls, sends, wait, progress)
    finally:
        server.stop()


if __name__ == "__main__":
    import sys

    sys.exit("a module of scripts/bench_suite.py; run scripts/bench --only longpoll")
