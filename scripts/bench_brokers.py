"""The servers and clients of scripts/bench (scripts/bench_suite.py): WonderQ over HTTP API v1, the bare
quart-trio route (scripts/bench_bare_app.py), beanstalkd with greenstalk and Redis with redis-py.

Every server is started on 127.0.0.1, with its output in a log file, and stopped by its pid. Every client here
opens its own connection, so each thread of a concurrent workload has its own. Payloads are 200 bytes and
unique (a counter, then padding), so that Redis's LREM removes exactly the message it was given.
"""

from __future__ import annotations

import functools
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx

if TYPE_CHECKING:  # imported where used, so that a missing peer client only skips that peer
    import redis

PAYLOAD_BYTES = 200
LONG_POLL = 5  # seconds a consumer waits for a message before trying again
STALL = 120.0  # seconds without progress after which a workload fails instead of hanging
SCRIPTS = Path(__file__).resolve().parent
LISTENING = re.compile(r"listening on (http://\S+)")

Ready = Callable[[], object]  # a thread calls it once connected; the clock starts when every thread has


def http_client(url: str, timeout: float = 60) -> httpx.Client:
    """A synchronous httpx client. Every server here is plain HTTP on 127.0.0.1; the one TLS context is shared
    because httpx loads the CA bundle for each new one (about 150 ms, which 16 clients a workload would pay)."""
    return httpx.Client(base_url=url, timeout=timeout, verify=_tls())


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def payload(number: int) -> str:
    return f"{number:012d}".ljust(PAYLOAD_BYTES, "x")


@dataclass
class Timing:
    """One sequential run of a request: wall seconds for all of them, and each one's latency in microseconds."""

    seconds: float
    latencies_us: list[int]


def timed(calls: int, call: Callable[[int], object]) -> Timing:
    latencies: list[int] = []
    started = time.perf_counter()
    for number in range(calls):
        before = time.perf_counter()
        call(number)
        latencies.append(int((time.perf_counter() - before) * 1e6))
    return Timing(time.perf_counter() - started, latencies)


class Broker(Protocol):
    """A system measured by the suite. `batch` is the messages per request (WonderQ), per pipeline (Redis), or
    ignored (beanstalkd has no batch commands)."""

    def prepare(self, queue: str) -> None: ...

    def producer(self, queue: str, first: int, count: int, batch: int, ready: Ready) -> None: ...

    def consumer(self, queue: str, count: int, batch: int, ready: Ready) -> None: ...

    def single(self, queue: str, requests: int) -> dict[str, Timing]: ...


# ---- servers ----


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def resident_kib(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(found.group(1)) if found else 0


def _launch(name: str, command: list[str], workdir: Path) -> Server:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Server(name, process, log)


def _wait_for_url(server: Server, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = LISTENING.search(server.log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if server.process.poll() is not None:
            break
        time.sleep(0.05)
    server.stop()
    tail = server.log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{server.name} did not start; its log ends with:\n{tail}")


def _wait_for_port(server: Server, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    server.stop()
    tail = server.log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{server.name} did not start listening on port {port}; its log ends with:\n{tail}")


def free_port() -> int:
    """A port free on 127.0.0.1 now, for servers that cannot report the one they picked (beanstalkd, Redis)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def launch_wonderq(mode: str, workdir: Path, max_batch: int) -> Server:
    """`wonderq serve` on a free port, `--memory` or with the durable default (fsync before every reply) in a
    fresh data directory, logging as it does by default (info: one access line per request, to a file).
    `url()` waits for it to listen."""
    command = [sys.executable, "-m", "wonderq", "serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--max-batch", str(max_batch)]
    command += ["--memory"] if mode == "memory" else ["--data-dir", str(workdir / f"data-{mode}")]
    return _launch(f"wonderq-{mode}", command, workdir)


def launch_bare(workdir: Path) -> Server:
    command = [sys.executable, str(SCRIPTS / "bench_bare_app.py"), "--port", "0"]
    return _launch("bare-quart-trio", command, workdir)


def listening_url(server: Server) -> str:
    """The URL a launched WonderQ or bare app serves on, once it listens."""
    return _wait_for_url(server)


BEANSTALKD_MISSING = "beanstalkd is not installed: apt-get install beanstalkd; pip install greenstalk"
REDIS_MISSING = "redis-server is not installed: apt-get install redis-server; pip install redis"


def beanstalkd_missing() -> str | None:
    try:
        import greenstalk  # noqa: F401
    except ImportError:
        return "greenstalk is not installed: .venv/bin/pip install greenstalk"
    return None if shutil.which("beanstalkd") else BEANSTALKD_MISSING


def redis_missing() -> str | None:
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed: .venv/bin/pip install redis"
    return None if shutil.which("redis-server") else REDIS_MISSING


def start_beanstalkd(workdir: Path, durable: bool) -> tuple[Server, int]:
    """beanstalkd in memory, or with a binlog fsynced on every write (`-b DIR -f 0`)."""
    port = free_port()
    command = ["beanstalkd", "-l", "127.0.0.1", "-p", str(port)]
    name = "beanstalkd"
    if durable:
        binlog = workdir / "beanstalkd-binlog"
        binlog.mkdir(exist_ok=True)
        command += ["-b", str(binlog), "-f", "0"]
        name = "beanstalkd-f0"
    server = _launch(name, command, workdir)
    _wait_for_port(server, port)
    return server, port


def start_redis(workdir: Path) -> tuple[Server, int]:
    port = free_port()
    command = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    command += ["--dir", str(workdir)]
    server = _launch("redis", command, workdir)
    _wait_for_port(server, port)
    return server, port


# ---- clients ----


class WonderQ:
    """WonderQ's HTTP API v1 from synchronous httpx clients over keep-alive connections. Batch 1 is one request
    per operation (send, receive, `DELETE .../messages/{id}`); larger batches use `.../messages/batch`,
    `receive` with `max`, and `.../ack`."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _client(self) -> httpx.Client:
        return http_client(self.url, 60)

    def prepare(self, queue: str) -> None:
        with self._client() as http:
            http.put(f"/v1/queues/{queue}").raise_for_status()
            http.post(f"/v1/queues/{queue}/purge").raise_for_status()

    def send_batch(self, http: httpx.Client, queue: str, first: int, count: int) -> None:
        entries = [{"body": payload(first + n), "content_type": "text/plain"} for n in range(count)]
        http.post(f"/v1/queues/{queue}/messages/batch", json={"messages": entries}).raise_for_status()

    def producer(self, queue: str, first: int, count: int, batch: int, ready: Ready) -> None:
        with self._client() as http:
            http.get("/health").raise_for_status()  # connected before the clock starts
            ready()
            for start in range(0, count, batch):
                if batch == 1:
                    reply = http.post(
                        f"/v1/queues/{queue}/messages",
                        content=payload(first + start),
                        headers={"content-type": "text/plain"},
                    )
                    reply.raise_for_status()
                else:
                    self.send_batch(http, queue, first + start, min(batch, count - start))

    def consumer(self, queue: str, count: int, batch: int, ready: Ready) -> None:
        with self._client() as http:
            http.get("/health").raise_for_status()
            ready()
            done = 0
            progress = time.monotonic()
            while done < count:
                reply = http.post(
                    f"/v1/queues/{queue}/receive",
                    json={"max": min(batch, count - done), "visibility_timeout": 300, "wait": LONG_POLL},
                )
                reply.raise_for_status()
                leases = reply.json()["messages"]
                if not leases:
                    if time.monotonic() - progress > STALL:
                        raise RuntimeError(f"WonderQ queue {queue}: nothing to receive after {done} of {count}")
                    continue
                if batch == 1:
                    for lease in leases:
                        http.delete(
                            f"/v1/queues/{queue}/messages/{lease['id']}", params={"receipt": lease["receipt"]}
                        ).raise_for_status()
                else:
                    acked = http.post(f"/v1/queues/{queue}/ack", json={"receipts": [m["receipt"] for m in leases]})
                    acked.raise_for_status()
                    if acked.json()["failed"]:
                        raise RuntimeError(f"WonderQ acks failed: {acked.json()['failed'][:3]}")
                done += len(leases)
                progress = time.monotonic()

    def single(self, queue: str, requests: int) -> dict[str, Timing]:
        """One client, one request at a time: `requests` sends, then as many receives (one message each, from a
        queue that holds them), then as many acks."""
        self.prepare(queue)
        receipts: list[tuple[str, str]] = []
        with self._client() as http:
            http.get("/health").raise_for_status()

            def send(number: int) -> None:
                http.post(
                    f"/v1/queues/{queue}/messages", content=payload(number), headers={"content-type": "text/plain"}
                ).raise_for_status()

            def receive(_: int) -> None:
                reply = http.post(f"/v1/queues/{queue}/receive", json={"max": 1, "visibility_timeout": 300})
                reply.raise_for_status()
                (lease,) = reply.json()["messages"]
                receipts.append((lease["id"], lease["receipt"]))

            def ack(number: int) -> None:
                message_id, receipt = receipts[number]
                http.delete(f"/v1/queues/{queue}/messages/{message_id}", params={"receipt": receipt}).raise_for_status()

            return {"send": timed(requests, send), "receive": timed(requests, receive), "ack": timed(requests, ack)}


class BareRoute:
    """The framework's ceiling: `GET /ping` on scripts/bench_bare_app.py, from the same client."""

    def __init__(self, url: str) -> None:
        self.url = url

    def single(self, requests: int) -> Timing:
        with http_client(self.url, 60) as http:
            http.get("/ping").raise_for_status()
            return timed(requests, lambda _: http.get("/ping").raise_for_status())


class Beanstalkd:
    """greenstalk: put, reserve, delete, one command at a time (beanstalkd has no batch commands). A queue is a
    tube."""

    def __init__(self, port: int) -> None:
        self.address = ("127.0.0.1", port)

    def prepare(self, queue: str) -> None:
        pass  # tubes exist while used; every measurement uses a new one

    def producer(self, queue: str, first: int, count: int, batch: int, ready: Ready) -> None:
        import greenstalk

        with greenstalk.Client(self.address, use=queue) as client:
            ready()
            for number in range(first, first + count):
                client.put(payload(number))

    def consumer(self, queue: str, count: int, batch: int, ready: Ready) -> None:
        import greenstalk

        with greenstalk.Client(self.address, watch=queue) as client:
            ready()
            done = 0
            progress = time.monotonic()
            while done < count:
                try:
                    job = client.reserve(timeout=LONG_POLL)
                except greenstalk.TimedOutError:
                    if time.monotonic() - progress > STALL:
                        raise RuntimeError(f"beanstalkd tube {queue}: nothing after {done} of {count}") from None
                    continue
                client.delete(job)
                done += 1
                progress = time.monotonic()

    def single(self, queue: str, requests: int) -> dict[str, Timing]:
        import greenstalk

        jobs: list[greenstalk.Job[str]] = []
        with greenstalk.Client(self.address, use=queue, watch=queue) as client:
            put = timed(requests, lambda number: client.put(payload(number)))
            reserve = timed(requests, lambda _: jobs.append(client.reserve(timeout=LONG_POLL)))
            delete = timed(requests, lambda number: client.delete(jobs[number]))
        return {"put": put, "reserve": reserve, "delete": delete}


class Redis:
    """redis-py with the reliable-queue pattern: LPUSH to the queue, LMOVE (BLMOVE when waiting) from its tail to
    a processing list, LREM from that list to acknowledge. Batch 1 sends one command at a time; a larger batch
    pipelines that many LPUSHes, LMOVEs and LREMs (no MULTI)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def _client(self) -> redis.Redis:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port)

    def prepare(self, queue: str) -> None:
        with self._client() as client:
            client.delete(queue, f"{queue}:processing")

    def producer(self, queue: str, first: int, count: int, batch: int, ready: Ready) -> None:
        with self._client() as client:
            client.ping()
            ready()
            if batch == 1:
                for number in range(first, first + count):
                    client.lpush(queue, payload(number))
                return
            for start in range(first, first + count, batch):
                pipe = client.pipeline(transaction=False)
                for number in range(start, min(start + batch, first + count)):
                    pipe.lpush(queue, payload(number))
                pipe.execute()

    def consumer(self, queue: str, count: int, batch: int, ready: Ready) -> None:
        processing = f"{queue}:processing"
        with self._client() as client:
            client.ping()
            ready()
            done = 0
            progress = time.monotonic()
            while done < count:
                values: list[bytes] = []
                if batch > 1:
                    pipe = client.pipeline(transaction=False)
                    for _ in range(min(batch, count - done)):
                        pipe.lmove(queue, processing, "RIGHT", "LEFT")
                    values = [value for value in pipe.execute() if value is not None]
                if not values:
                    value = client.blmove(queue, processing, LONG_POLL, "RIGHT", "LEFT")
                    if value is None:
                        if time.monotonic() - progress > STALL:
                            raise RuntimeError(f"Redis list {queue}: nothing after {done} of {count}")
                        continue
                    values = [value]
                if len(values) == 1:
                    client.lrem(processing, 1, values[0])
                else:
                    pipe = client.pipeline(transaction=False)
                    for value in values:
                        pipe.lrem(processing, 1, value)
                    pipe.execute()
                done += len(values)
                progress = time.monotonic()

    def single(self, queue: str, requests: int) -> dict[str, Timing]:
        processing = f"{queue}:processing"
        self.prepare(queue)
        values: list[bytes] = []
        with self._client() as client:
            client.ping()
            push = timed(requests, lambda number: client.lpush(queue, payload(number)))
            move = timed(requests, lambda _: values.append(client.lmove(queue, processing, "RIGHT", "LEFT")))
            remove = timed(requests, lambda number: client.lrem(processing, 1, values[number]))
        return {"LPUSH": push, "LMOVE": move, "LREM": remove}


if __name__ == "__main__":
    sys.exit("a module of scripts/bench_suite.py; run scripts/bench")
