"""The clients of scripts/soak, run in worker processes: `python scripts/soak_clients.py SPEC.json`. One trio run
per process, one task per client; scripts/soak.py starts several such processes so that the clients are not
measured by one interpreter's GIL.

This module owns the behaviours and what each one records. Well-behaved clients use WonderQ's own client
(`wonderq.client.AsyncClient`, `wonderq.stream_client.astream`); misbehaving ones use httpx or raw trio sockets
(with wsproto for a WebSocket that stops reading). Every fact the verdicts need goes, as it happens, into the
worker's events file (JSON lines, read back by `soak_checks.history_from_rows`): each send tried (the uid its
body carries) and each confirmed with its id, each delivery seen, each ack, nack or close of a lease with when it
was sent and what came back; at the end, the misbehaving requests' outcomes, the well-behaved requests that were
not answered as documented, and counters.

Behaviours (`KINDS`):
* producer: single and batch sends of text, JSON and binary bodies, each carrying a unique uid; it pauses while
  the soak's queues hold more than `max_backlog` messages, so that memory measures the server, not a backlog;
* consumer: long-polling receives, a little processing, then acks (single or batch);
* late_acker: receives with a short lease, waits past its deadline, then acks: must get 409 lease_lost;
* nacker: receives, then releases (nack), backs off (a nack with a delay) or acks;
* stream_consumer: the streaming path: subscribe, ack what is pushed (some nacked), unsubscribe, again;
* dropper: closes its connection mid-request: during a long poll, after half the headers or half a body, right
  after a receive, a cancelled httpx long poll, a stream socket dropped while holding leases;
* garbage: invalid JSON, wrong content types, huge numbers, bad queue names, bad hosts and origins, random bytes
  and malformed HTTP on raw sockets;
* staller: requests that declare a body and never send all of it (and headers that never end);
* slow_reader: a WebSocket consumer that subscribes, then stops reading for a while, then goes away.

Well-behaved clients are never cancelled mid-request (an ack cut short would leave its outcome unknown): they
stop between requests. Misbehaving ones are cancelled when the load ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import struct
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson
import trio
from httpx_ws import WebSocketDisconnect, WebSocketNetworkError
from soak_checks import PARTIAL
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, RejectConnection, Request, TextMessage
from wsproto.utilities import LocalProtocolError

from wonderq.client import (
    AckResult,
    AsyncClient,
    OutgoingMessage,
    ReceivedMessage,
    WonderQClientError,
    received_message,
)
from wonderq.stream_client import AsyncStream, astream

T = TypeVar("T")

KINDS = (
    "producer",
    "consumer",
    "late_acker",
    "nacker",
    "stream_consumer",
    "dropper",
    "garbage",
    "staller",
    "slow_reader",
)
WELL_BEHAVED = frozenset({"producer", "consumer", "late_acker", "nacker", "stream_consumer"})
CLIENT_TIMEOUT = 30.0  # seconds for a well-behaved request (a long poll's wait comes on top)
POLL_WAIT = 2.0  # seconds a consumer long-polls; also how soon it notices the end of the load or of the drain
LATE_MARGIN = 0.25  # seconds past its lease's deadline a late acker acks
MONITOR_INTERVAL = 0.5  # seconds between looks at the queues (backlog, drain)
DRAIN_SETTLE = 2.0  # seconds after the load ends before empty queues mean drained (sends in flight land)
FLUSH_INTERVAL = 0.5  # seconds between writes of the events file
RAW_REPLY_WAIT = 10.0  # seconds a raw-socket probe waits for its reply's status line
STALL_MARGIN = 15.0  # seconds beyond BODY_TIMEOUT a stalled request waits for its 408
SETTLED = frozenset({"lease_lost", "message_not_found"})  # what an ack or nack of a lease that ended may get
CLOSED = (WebSocketDisconnect, WebSocketNetworkError, LocalProtocolError)  # a stream the server closed


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process runs: written as JSON by scripts/soak.py."""

    worker: int
    url: str
    token: str | None
    queues: list[str]
    clients: list[tuple[str, int]]  # (kind, number of the client in the whole soak)
    seed: int
    start_at: float  # epoch seconds: the load begins
    stop_at: float  # epoch seconds: the load ends, the drain begins
    drain_until: float  # epoch seconds: the drain ends, drained or not
    events: str  # path of the events file (JSON lines)
    visibility_timeout: float  # seconds: the leases of the well-behaved consumers
    late_visibility_timeout: float  # seconds: the leases of the late ackers
    max_backlog: int  # messages (ready or delayed) in all the soak's queues above which producers pause
    body_timeout: float  # seconds: the server's BODY_TIMEOUT

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> WorkerSpec:
        data = json.loads(path.read_text())
        data["clients"] = [tuple(client) for client in data["clients"]]
        return cls(**data)


# ---- bodies ----


def uid_of(body: object) -> str:
    """The uid a soak body carries: a JSON object's "uid", or the text (or bytes) before the first "|"."""
    if isinstance(body, dict):
        return str(body.get("uid", ""))
    if isinstance(body, bytes | bytearray):
        return bytes(body).split(b"|", 1)[0].decode("latin-1")
    if isinstance(body, str):
        return body.split("|", 1)[0]
    return ""


def make_body(uid: str, rng: random.Random) -> object:
    """A body carrying `uid`: text, a JSON object or bytes, 20 to 1,000 bytes."""
    padding = "x" * rng.randint(0, 960)
    shape = rng.random()
    if shape < 0.4:
        return f"{uid}|{padding}"
    if shape < 0.8:
        return {"uid": uid, "n": rng.randint(-(2**40), 2**40), "pad": padding}
    return f"{uid}|".encode() + os.urandom(len(padding) // 2)


# ---- the worker's shared state ----


class Soak:
    """The events file, the counters, and the phase (load, drain, done), shared by one worker's client tasks."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        address = urlsplit(spec.url)
        self.host = address.hostname or "127.0.0.1"
        self.port = address.port or 80
        self.auth = [(b"authorization", f"Bearer {spec.token}".encode())] if spec.token else []
        self._file = Path(spec.events).open("wb")  # noqa: SIM115  (closed by `close`, after the run)
        self._rows: list[bytes] = []
        self.counters: Counter[str] = Counter()
        self.probes: Counter[tuple[str, bool, int | None]] = Counter()
        self.probe_examples: dict[tuple[str, bool, int | None], str] = {}
        self.failures: Counter[tuple[str, str, int | None, str]] = Counter()
        self.failure_examples: dict[tuple[str, str, int | None, str], str] = {}
        self.rate_limited = 0
        self.backlog = 0  # ready and delayed messages in the soak's queues, at the monitor's last look
        self.ready: dict[str, int] = {}  # queue -> its ready messages, at the monitor's last look
        self.room = trio.Event()  # set while the backlog is under max_backlog
        self.room.set()
        self.drained = trio.Event()  # set once the queues were seen empty after the load
        self._uids = 0

    # -- phases --

    def loading(self) -> bool:
        return time.time() < self.spec.stop_at

    def consuming(self) -> bool:
        """While the load runs, and then until the queues are drained (or the drain's time is up)."""
        return self.loading() or (not self.drained.is_set() and time.time() < self.spec.drain_until)

    # -- records --

    def new_uid(self, client: str, partial: bool = False) -> str:
        self._uids += 1
        return f"{PARTIAL if partial else ''}w{self.spec.worker}-{client}-{self._uids}"

    def row(self, *fields: object) -> None:
        self._rows.append(orjson.dumps(fields))

    def attempted(self, uid: str, queue: str) -> None:
        self.row("A", uid, queue)

    def confirmed(self, message_id: str, uid: str, queue: str) -> None:
        self.row("C", message_id, uid, queue, time.time())

    def delivered(self, message: ReceivedMessage, visibility_timeout: float, client: str, queue: str) -> None:
        self.row(
            "D",
            message.id,
            message.receipt,
            message.receive_count,
            message.lease_expires_at,
            visibility_timeout,
            time.time(),
            uid_of(message.body),
            client,
            queue,
        )

    def settled(
        self,
        message: ReceivedMessage,
        kind: str,
        sent_at: float,
        outcome: str,
        deadline: float | None = None,
        late: bool = False,
    ) -> None:
        self.row("S", message.receipt, message.id, kind, sent_at, time.time(), outcome, deadline, late)

    def probe(self, case: str, well_formed: bool, status: int | None, example: str = "") -> None:
        self.probes[case, well_formed, status] += 1
        if example:
            self.probe_examples.setdefault((case, well_formed, status), example[:300])

    def failed(self, client: str, what: str, status: int | None, code: str, example: str = "") -> None:
        key = (client.rsplit("-", 1)[0], what, status, code)
        self.failures[key] += 1
        self.failure_examples.setdefault(key, example[:300])

    def count(self, name: str, by: int = 1) -> None:
        self.counters[name] += by

    def flush(self) -> None:
        if self._rows:
            self._file.write(b"\n".join(self._rows) + b"\n")
            self._rows.clear()
            self._file.flush()

    def close(self) -> None:
        for (case, well_formed, status), count in sorted(self.probes.items(), key=str):
            example = self.probe_examples.get((case, well_formed, status), "")
            self.row("P", case, well_formed, status, count, example)
        for (client, what, status, code), count in sorted(self.failures.items(), key=str):
            self.row("F", client, what, status, code, count, self.failure_examples[client, what, status, code])
        self.row("R", self.rate_limited)
        self.row("K", dict(self.counters))
        self.flush()
        self._file.close()

    # -- the background tasks --

    async def flusher(self) -> None:
        while True:
            await trio.sleep(FLUSH_INTERVAL)
            self.flush()

    async def monitor(self, client: AsyncClient) -> None:
        """Watch the soak's queues: open or close the producers' `room`; set `drained` once they are empty
        (twice in a row) after the load."""
        empty_looks = 0
        mine = set(self.spec.queues)
        while not self.drained.is_set():
            try:
                stats = [queue for queue in await client.list_queues() if queue["name"] in mine]
            except WonderQClientError:
                stats = None  # a 429 or a failure: look again at the next interval
            if stats is not None:
                self.backlog = sum(queue["ready"] + queue["delayed"] for queue in stats)
                self.ready = {queue["name"]: queue["ready"] for queue in stats}
                if self.backlog > self.spec.max_backlog:
                    if self.room.is_set():
                        self.room = trio.Event()
                else:
                    self.room.set()
                everything = sum(queue["ready"] + queue["delayed"] + queue["leased"] for queue in stats)
                after_load = time.time() >= self.spec.stop_at + DRAIN_SETTLE
                empty_looks = empty_looks + 1 if after_load and everything == 0 else 0
                if empty_looks >= 2:
                    self.drained.set()
            await trio.sleep(MONITOR_INTERVAL)

    def pick_queue(self, rng: random.Random) -> str:
        """A queue to receive from, by how many messages each had ready at the monitor's last look (and now and
        then an empty one). Picked evenly instead, the backlog gathers in one queue while the consumers' long polls
        wait out their 2 s on the empty ones, and a drain takes minutes."""
        queues = self.spec.queues
        return rng.choices(queues, weights=[self.ready.get(queue, 0) + 1 for queue in queues])[0]

    async def wait_for_room(self) -> None:
        with trio.move_on_at(trio.current_time() + max(0.0, self.spec.stop_at - time.time())):
            await self.room.wait()


def client_for(soak: Soak) -> AsyncClient:
    return AsyncClient(soak.spec.url, timeout=CLIENT_TIMEOUT, token=soak.spec.token)


async def well_behaved(soak: Soak, name: str, what: str, call: Callable[[], Awaitable[T]]) -> T | None:
    """`call`'s result; a 429 is waited out (one second) and the call made again; any other error is recorded as
    a failure of a well-behaved request, and gives None."""
    while True:
        try:
            return await call()
        except WonderQClientError as error:
            if error.status == 429:
                soak.rate_limited += 1
                await trio.sleep(1.0)
                continue
            soak.failed(name, what, error.status, error.code, str(error))
            return None


def outcome_of(error: WonderQClientError) -> str:
    return "unknown" if error.status is None else error.code


# ---- well-behaved clients ----


async def producer(soak: Soak, name: str, rng: random.Random) -> None:
    async with client_for(soak) as client:
        while soak.loading():
            await soak.wait_for_room()
            if not soak.loading():
                break
            queue = rng.choice(soak.spec.queues)
            size = 1 if rng.random() < 0.5 else rng.randint(2, 20)
            uids = [soak.new_uid(name) for _ in range(size)]
            for uid in uids:
                soak.attempted(uid, queue)
            bodies = [make_body(uid, rng) for uid in uids]
            if size == 1:
                delay = rng.uniform(0.1, 2.0) if rng.random() < 0.05 else None  # seconds; now and then
                single = await well_behaved(soak, name, "send", partial(client.send, queue, bodies[0], delay=delay))
                ids = None if single is None else [single]
                soak.count("producer.sends")
            else:
                entries = [
                    OutgoingMessage(body, priority=rng.randint(-3, 3)) if rng.random() < 0.2 else body
                    for body in bodies
                ]
                ids = await well_behaved(soak, name, "send_batch", partial(client.send_batch, queue, entries))
                soak.count("producer.batches")
            for message_id, uid in zip(ids or [], uids, strict=False):
                soak.confirmed(message_id, uid, queue)


async def ack_all(
    soak: Soak, client: AsyncClient, name: str, queue: str, messages: list[ReceivedMessage], rng: random.Random
) -> None:
    """Ack `messages` one by one or in one batch, recording each outcome."""
    if len(messages) > 1 and rng.random() < 0.5:
        sent_at = time.time()
        try:
            result: AckResult | None = await client.ack_batch(queue, [m.receipt for m in messages])
        except WonderQClientError as error:
            if error.status == 429:
                soak.rate_limited += 1
                await trio.sleep(1.0)
                await ack_all(soak, client, name, queue, messages, rng)  # a 429 changed nothing: again
                return
            soak.failed(name, "ack_batch", error.status, error.code, str(error))
            for message in messages:
                soak.settled(message, "ack", sent_at, outcome_of(error))
            return
        assert result is not None
        failed = {failure.receipt: failure.code for failure in result.failed}
        for message in messages:
            code = failed.get(message.receipt, "ok")
            soak.settled(message, "ack", sent_at, code)
            if code not in SETTLED and code != "ok":
                soak.failed(name, "ack_batch entry", 200, code)
        return
    for message in messages:
        await ack_one(soak, client, name, queue, message)


async def ack_one(
    soak: Soak, client: AsyncClient, name: str, queue: str, message: ReceivedMessage, late: bool = False
) -> None:
    while True:
        sent_at = time.time()
        try:
            await client.ack(queue, message.id, message.receipt)
        except WonderQClientError as error:
            if error.status == 429:
                soak.rate_limited += 1
                await trio.sleep(1.0)
                continue
            outcome = outcome_of(error)
            soak.settled(message, "ack", sent_at, outcome, late=late)
            if outcome not in SETTLED:
                soak.failed(name, "ack", error.status, error.code, str(error))
            return
        soak.settled(message, "ack", sent_at, "ok", late=late)
        return


async def receive(
    soak: Soak, client: AsyncClient, name: str, queue: str, most: int, visibility_timeout: float
) -> list[ReceivedMessage]:
    messages = await well_behaved(
        soak,
        name,
        "receive",
        lambda: client.receive(queue, max=most, wait=POLL_WAIT, visibility_timeout=visibility_timeout, consumer=name),
    )
    for message in messages or []:
        soak.delivered(message, visibility_timeout, name, queue)
    return messages or []


async def consumer(soak: Soak, name: str, rng: random.Random) -> None:
    vt = soak.spec.visibility_timeout
    async with client_for(soak) as client:
        while soak.consuming():
            queue = soak.pick_queue(rng)
            messages = await receive(soak, client, name, queue, rng.randint(1, 10), vt)
            if messages:
                await trio.sleep(rng.uniform(0, 0.05))  # processing
                await ack_all(soak, client, name, queue, messages, rng)
                soak.count("consumer.batches")


async def late_acker(soak: Soak, name: str, rng: random.Random) -> None:
    vt = soak.spec.late_visibility_timeout
    async with client_for(soak) as client:
        while soak.loading():
            queue = soak.pick_queue(rng)
            messages = await receive(soak, client, name, queue, rng.randint(1, 3), vt)
            if not messages:
                continue
            deadline = max(message.lease_expires_at for message in messages)
            await trio.sleep(max(0.0, deadline + LATE_MARGIN - time.time()))
            for message in messages:
                await ack_one(soak, client, name, queue, message, late=True)
            soak.count("late_acker.late_acks", len(messages))


async def nacker(soak: Soak, name: str, rng: random.Random) -> None:
    vt = soak.spec.visibility_timeout
    async with client_for(soak) as client:
        while soak.loading():
            queue = soak.pick_queue(rng)
            for message in await receive(soak, client, name, queue, rng.randint(1, 5), vt):
                choice = rng.random()
                if choice > 0.8:
                    await ack_one(soak, client, name, queue, message)
                    continue
                backoff = 0.0 if choice < 0.4 else rng.uniform(0.2, 2.0)  # seconds; 0: a release
                await nack(soak, client, name, queue, message, backoff)


async def nack(
    soak: Soak, client: AsyncClient, name: str, queue: str, message: ReceivedMessage, backoff: float
) -> None:
    while True:
        sent_at = time.time()
        try:
            deadline = await client.change_visibility(queue, message.id, message.receipt, backoff)
        except WonderQClientError as error:
            if error.status == 429:
                soak.rate_limited += 1
                await trio.sleep(1.0)
                continue
            outcome = outcome_of(error)
            soak.settled(message, "nack", sent_at, outcome)
            if outcome not in SETTLED:
                soak.failed(name, "nack", error.status, error.code, str(error))
            return
        soak.settled(message, "nack", sent_at, "ok", deadline=deadline)
        soak.count("nacker.releases" if backoff == 0 else "nacker.backoffs")
        return


async def stream_consumer(soak: Soak, name: str, rng: random.Random) -> None:
    vt = soak.spec.visibility_timeout
    async with client_for(soak) as client:
        while soak.consuming():
            queue = soak.pick_queue(rng)
            held: dict[str, ReceivedMessage] = {}
            try:
                async with astream(client, queue) as stream:
                    await stream.subscribe(rng.choice([5, 20, 50]), visibility_timeout=vt, consumer=name)
                    soak.count("stream_consumer.sessions")
                    until = time.time() + rng.uniform(5, 30)  # seconds of this session
                    while soak.consuming() and time.time() < until:
                        await stream_round(soak, stream, name, queue, rng, held)
                    # Leaving the block unsubscribes: what is still held goes back to the queue from now on.
                    closing = time.time()
                    for message in held.values():
                        soak.settled(message, "close", closing, "ok")
                    held.clear()
            except (*CLOSED, WonderQClientError) as error:
                closing = time.time()
                for message in held.values():
                    soak.settled(message, "close", closing, "ok")
                soak.failed(name, "stream", None, type(error).__name__, repr(error))
                await trio.sleep(1.0)


async def stream_round(
    soak: Soak, stream: AsyncStream, name: str, queue: str, rng: random.Random, held: dict[str, ReceivedMessage]
) -> None:
    """Take what was pushed, process it, nack a few (releases), ack the rest in one frame."""
    vt = soak.spec.visibility_timeout
    for message in await stream.messages(wait=1.0):
        soak.delivered(message, vt, name, queue)
        held[message.receipt] = message
    if not held:
        return
    await trio.sleep(rng.uniform(0, 0.02))  # processing
    to_ack = []
    for message in list(held.values()):
        if rng.random() < 0.1:
            sent_at = time.time()
            try:
                await stream.nack(message.receipt)  # a release
            except WonderQClientError as error:  # an error frame: the socket stays open
                if error.code not in SETTLED:
                    raise
                soak.settled(message, "nack", sent_at, error.code)
            else:
                soak.settled(message, "nack", sent_at, "ok")
            del held[message.receipt]
        else:
            to_ack.append(message)
    if to_ack:
        sent_at = time.time()
        result = await stream.ack(*(message.receipt for message in to_ack))
        failed = {failure.receipt: failure.code for failure in result.failed}
        for message in to_ack:
            code = failed.get(message.receipt, "ok")
            soak.settled(message, "ack", sent_at, code)
            if code not in SETTLED and code != "ok":
                soak.failed(name, "stream ack", None, code)
            del held[message.receipt]


# ---- raw sockets ----


async def open_raw(soak: Soak) -> trio.SocketStream:
    return await trio.open_tcp_stream(soak.host, soak.port)


def http_request(soak: Soak, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """A whole HTTP/1.1 request (closing the connection after its reply), with the soak's token if any."""
    lines = [f"{method} {path} HTTP/1.1", f"host: {soak.host}:{soak.port}", "connection: close"]
    if soak.spec.token:
        lines.append(f"authorization: Bearer {soak.spec.token}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def status_line(stream: trio.SocketStream, within: float) -> int | None:
    """The status of the reply on `stream`: None if the connection closes (or nothing comes within `within`
    seconds) first; 0 for a reply that is not HTTP."""
    buffer = b""
    with trio.move_on_after(within):
        while b"\r\n" not in buffer:
            try:
                chunk = await stream.receive_some(4096)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return None
            if not chunk:
                return None
            buffer += chunk
        parts = buffer.split(b"\r\n", 1)[0].split()
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
            return int(parts[1])
        return 0
    return None


async def raw_probe(soak: Soak, data: bytes, within: float = RAW_REPLY_WAIT) -> int | None:
    """Send `data` on a new connection and read the reply's status (see `status_line`)."""
    stream = await open_raw(soak)
    async with stream:
        with contextlib.suppress(trio.BrokenResourceError, OSError):  # the server may close before all is sent
            await stream.send_all(data)
        return await status_line(stream, within)


async def abort(stream: trio.SocketStream) -> None:
    """Close a raw connection at once (a reset, not a clean shutdown)."""
    with contextlib.suppress(OSError):
        stream.socket.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, struct.pack("ii", 1, 0))
    with trio.CancelScope(shield=True):
        await stream.aclose()


class RawWebSocket:
    """A WebSocket over a raw trio socket (wsproto): one that can stop reading at the TCP level, which httpx-ws
    (reading in the background) cannot."""

    def __init__(self, soak: Soak, stream: trio.SocketStream) -> None:
        self.soak = soak
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self._text: list[str] = []
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, soak: Soak, queue: str) -> RawWebSocket:
        opened = cls(soak, await open_raw(soak))
        request = Request(host=f"{soak.host}:{soak.port}", target=f"/v1/queues/{queue}/stream", extra_headers=soak.auth)
        await opened.stream.send_all(opened.ws.send(request))
        while True:
            chunk = await opened.stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("the server closed the WebSocket handshake")
            opened.ws.receive_data(chunk)
            for event in opened.ws.events():
                if isinstance(event, AcceptConnection):
                    return opened
                if isinstance(event, RejectConnection):
                    raise ConnectionError(f"the WebSocket upgrade was refused: {event.status_code}")

    async def send(self, frame: dict[str, Any]) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(orjson.dumps(frame).decode())))

    async def read(self) -> None:
        """Read once from the socket, and keep the whole frames it completes in `frames`."""
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("the server closed the WebSocket")
        self.ws.receive_data(chunk)
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self.frames.append(orjson.loads("".join(self._text)))
                    self._text.clear()
            elif isinstance(event, Ping):
                await self.stream.send_all(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                raise ConnectionError(f"the server closed the WebSocket: {event.code}")


# ---- misbehaving clients ----


async def dropper(soak: Soak, name: str, rng: random.Random) -> None:
    cases: list[tuple[str, Callable[[Soak, str, random.Random], Awaitable[None]]]] = [
        ("long poll dropped", drop_long_poll),
        ("half the headers", drop_half_headers),
        ("half the body", drop_half_body),
        ("receive dropped at once", drop_receive),
        ("httpx long poll cancelled", drop_httpx_poll),
        ("stream dropped holding leases", drop_stream),
    ]
    while True:
        case, run = rng.choice(cases)
        try:
            await run(soak, name, rng)
        except (OSError, trio.BrokenResourceError, ConnectionError, httpx.TransportError):
            soak.count("dropper.server_closed_first")  # the server closed first: fine for a dropped request
        soak.count(f"dropper.{case}")
        await trio.sleep(rng.uniform(0.05, 0.5))


def receive_request(soak: Soak, queue: str, wait: float, most: int = 5) -> bytes:
    body = orjson.dumps({"max": most, "wait": wait, "visibility_timeout": soak.spec.visibility_timeout})
    headers = {"content-type": "application/json", "content-length": str(len(body))}
    return http_request(soak, "POST", f"/v1/queues/{queue}/receive", headers, body)


async def drop_long_poll(soak: Soak, name: str, rng: random.Random) -> None:
    stream = await open_raw(soak)
    await stream.send_all(receive_request(soak, rng.choice(soak.spec.queues), 10.0))
    await trio.sleep(rng.uniform(0.05, 3.0))
    await abort(stream)


async def drop_receive(soak: Soak, name: str, rng: random.Random) -> None:
    stream = await open_raw(soak)
    await stream.send_all(receive_request(soak, rng.choice(soak.spec.queues), 0.0))
    await abort(stream)


async def drop_half_headers(soak: Soak, name: str, rng: random.Random) -> None:
    request = receive_request(soak, rng.choice(soak.spec.queues), 1.0)
    stream = await open_raw(soak)
    await stream.send_all(request[: rng.randint(1, request.index(b"\r\n\r\n"))])
    await trio.sleep(rng.uniform(0, 1.0))
    await abort(stream)


async def drop_half_body(soak: Soak, name: str, rng: random.Random) -> None:
    body = f"{soak.new_uid(name, partial=True)}|{'p' * rng.randint(20, 2000)}".encode()
    headers = {"content-type": "text/plain", "content-length": str(len(body))}
    request = http_request(soak, "POST", f"/v1/queues/{rng.choice(soak.spec.queues)}/messages", headers, body)
    stream = await open_raw(soak)
    await stream.send_all(request[: len(request) - rng.randint(1, len(body) - 1)])
    await trio.sleep(rng.uniform(0, 1.0))
    await abort(stream)


async def drop_httpx_poll(soak: Soak, name: str, rng: random.Random) -> None:
    async with client_for(soak) as client:
        with trio.move_on_after(rng.uniform(0.05, 3.0)):
            await client.receive(rng.choice(soak.spec.queues), max=5, wait=10.0)  # never seen: it is cut short
            # (had it come back in time, its leases run out on their own: nothing here relies on them)


async def drop_stream(soak: Soak, name: str, rng: random.Random) -> None:
    """Subscribe, take one `messages` frame (recorded), then reset the connection while holding the leases."""
    queue = rng.choice(soak.spec.queues)
    vt = soak.spec.visibility_timeout
    socket = await RawWebSocket.open(soak, queue)
    try:
        await socket.send({"op": "subscribe", "credit": rng.randint(1, 10), "visibility_timeout": vt})
        with trio.move_on_after(3.0):
            while not any(frame.get("op") == "messages" for frame in socket.frames):
                await socket.read()
        held = [received_message(item) for f in socket.frames if f.get("op") == "messages" for item in f["messages"]]
        closing = time.time()
        for message in held:  # recorded together with the close: no checkpoint in between
            soak.delivered(message, vt, name, queue)
            soak.settled(message, "close", closing, "ok")
    finally:
        await abort(socket.stream)


async def slow_reader(soak: Soak, name: str, rng: random.Random) -> None:
    """Subscribe, then read nothing for 10 to 40 s, then reset the connection (or, half the time, unsubscribe
    and read what is left); again."""
    while True:
        queue = rng.choice(soak.spec.queues)
        try:
            socket = await RawWebSocket.open(soak, queue)
        except (OSError, trio.BrokenResourceError, ConnectionError) as error:
            soak.probe("slow reader: WebSocket upgrade", True, None)
            soak.failed(name, "stream upgrade", None, type(error).__name__, repr(error))
            await trio.sleep(1.0)
            continue
        try:
            credit = rng.choice([10, 50, 100])
            await socket.send({"op": "subscribe", "credit": credit, "visibility_timeout": soak.spec.visibility_timeout})
            soak.count("slow_reader.stalls")
            await trio.sleep(rng.uniform(10, 40))  # not reading: the server's frames pile up
            if rng.random() < 0.5:
                await socket.send({"op": "unsubscribe"})
                with trio.move_on_after(10.0):
                    while not any(frame.get("op") == "unsubscribed" for frame in socket.frames):
                        await socket.read()
                soak.count("slow_reader.unsubscribed")
        except (OSError, trio.BrokenResourceError, ConnectionError):
            soak.count("slow_reader.closed_by_server")
        finally:
            await abort(socket.stream)
        await trio.sleep(rng.uniform(0.1, 1.0))


async def staller(soak: Soak, name: str, rng: random.Random) -> None:
    """Requests that declare a body and never send it all: a 408 (request_timeout) must come within
    BODY_TIMEOUT; and headers that never end (malformed: an answer or a close, at the server's choice)."""
    within = soak.spec.body_timeout + STALL_MARGIN
    while True:
        queue = rng.choice(soak.spec.queues)
        choice = rng.randrange(4)
        if choice == 0:
            case, well_formed = "stalled body: receive (JSON)", True
            headers = {"content-type": "application/json", "content-length": "100"}
            data = http_request(soak, "POST", f"/v1/queues/{queue}/receive", headers, b'{"max": 1, ')
        elif choice == 1:
            case, well_formed = "stalled body: send", True
            body = f"{soak.new_uid(name, partial=True)}|stalled".encode()
            headers = {"content-type": "text/plain", "content-length": str(len(body) + 500)}
            data = http_request(soak, "POST", f"/v1/queues/{queue}/messages", headers, body)
        elif choice == 2:
            case, well_formed = "stalled body: chunked batch", True
            headers = {"content-type": "application/json", "transfer-encoding": "chunked"}
            data = http_request(soak, "POST", f"/v1/queues/{queue}/messages/batch", headers, b'5\r\n{"mes\r\n')
        else:
            case, well_formed = "headers that never end", False
            data = http_request(soak, "GET", "/health", {})[:-2]  # without the blank line that ends them
        started = time.monotonic()
        status = await raw_probe(soak, data, within)
        soak.probe(case, well_formed, status)
        soak.count("staller.seconds_held", round(time.monotonic() - started))
        await trio.sleep(rng.uniform(0, 1.0))


# garbage: (case, method, path, headers, body). `{q}` is a soak queue; bodies that could be stored carry a
# "garbage-" uid, which no producer sent: stored, it is a phantom.
GarbageCase = tuple[str, str, str, dict[str, str], bytes]
JSON = {"content-type": "application/json"}
TEXT = {"content-type": "text/plain"}


def garbage_cases(token: str | None) -> list[GarbageCase]:
    deep = b"[" * 300 + b"]" * 300
    cases: list[GarbageCase] = [
        ("receive: invalid JSON", "POST", "/v1/queues/{q}/receive", JSON, b'{"max": 1,'),
        ("receive: JSON labelled text/plain", "POST", "/v1/queues/{q}/receive", TEXT, b'{"max": 1}'),
        (
            "batch: a form post",
            "POST",
            "/v1/queues/{q}/messages/batch",
            {"content-type": "application/x-www-form-urlencoded"},
            b"messages=garbage-1",
        ),
        ("receive: a 30-digit max", "POST", "/v1/queues/{q}/receive", JSON, b'{"max": 123456789012345678901234567890}'),
        ("receive: visibility_timeout 1e999", "POST", "/v1/queues/{q}/receive", JSON, b'{"visibility_timeout": 1e999}'),
        ("receive: NaN", "POST", "/v1/queues/{q}/receive", JSON, b'{"max": NaN}'),
        ("receive: wait 21 s", "POST", "/v1/queues/{q}/receive", JSON, b'{"wait": 21}'),
        ("receive: an unknown field", "POST", "/v1/queues/{q}/receive", JSON, b'{"maximum": 1}'),
        ("receive: max as a string", "POST", "/v1/queues/{q}/receive", JSON, b'{"max": "5"}'),
        ("send: priority beyond 32 bits", "POST", "/v1/queues/{q}/messages?priority=99999999999999999999", TEXT, b"g"),
        ("send: delay 1e308", "POST", "/v1/queues/{q}/messages?delay=1e308", TEXT, b"garbage-delay"),
        ("send: an unknown parameter", "POST", "/v1/queues/{q}/messages?colour=red", TEXT, b"garbage-colour"),
        ("send: a space in the queue name", "POST", "/v1/queues/bad%20name/messages", TEXT, b"garbage-space"),
        ("send: an 81-character queue name", "POST", f"/v1/queues/{'n' * 81}/messages", TEXT, b"garbage-long"),
        ("send: é in the queue name", "POST", "/v1/queues/%C3%A9/messages", TEXT, b"garbage-accent"),
        ("send: a dot in the queue name", "POST", "/v1/queues/a.b/messages", TEXT, b"garbage-dot"),
        ("send: an empty body", "POST", "/v1/queues/{q}/messages", TEXT, b""),
        (
            "send: invalid UTF-8",
            "POST",
            "/v1/queues/{q}/messages",
            {"content-type": "text/plain; charset=utf-8"},
            b"\xff",
        ),
        (
            "send: an unknown charset",
            "POST",
            "/v1/queues/{q}/messages",
            {"content-type": "text/plain; charset=x"},
            b"g",
        ),
        ("send: JSON 300 levels deep", "POST", "/v1/queues/{q}/messages", JSON, deep),
        ("send: JSON with a lone surrogate", "POST", "/v1/queues/{q}/messages", JSON, b'"\\ud800"'),
        (
            "batch: non-ASCII body_base64",
            "POST",
            "/v1/queues/{q}/messages/batch",
            JSON,
            '{"messages": [{"body_base64": "é"}]}'.encode(),
        ),
        (
            "batch: 101 entries",
            "POST",
            "/v1/queues/{q}/messages/batch",
            JSON,
            orjson.dumps({"messages": [{"body": f"garbage-{n}"} for n in range(101)]}),
        ),
        (
            "batch: body and body_base64",
            "POST",
            "/v1/queues/{q}/messages/batch",
            JSON,
            b'{"messages": [{"body": "garbage-both", "body_base64": "Zw=="}]}',
        ),
        ("batch: no entries", "POST", "/v1/queues/{q}/messages/batch", JSON, b'{"messages": []}'),
        ("batch: not an object", "POST", "/v1/queues/{q}/messages/batch", JSON, b"[1, 2, 3]"),
        (
            "ack: a made-up receipt",
            "DELETE",
            "/v1/queues/{q}/messages/0000000000000001?receipt=0000000000000001.x",
            {},
            b"",
        ),
        ("ack: no receipt", "DELETE", "/v1/queues/{q}/messages/0000000000000001", {}, b""),
        ("batch ack: 101 receipts", "POST", "/v1/queues/{q}/ack", JSON, orjson.dumps({"receipts": ["a.b"] * 101})),
        (
            "nack: a negative visibility timeout",
            "PATCH",
            "/v1/queues/{q}/messages/0000000000000001",
            JSON,
            b'{"receipt": "0000000000000001.x", "visibility_timeout": -1}',
        ),
        ("peek: limit 0", "GET", "/v1/queues/{q}/messages?limit=0", {}, b""),
        ("peek: state bogus", "GET", "/v1/queues/{q}/messages?state=bogus", {}, b""),
        ("queue: an unknown attribute", "PUT", "/v1/queues/{q}", JSON, b'{"colour": "red"}'),
        ("queue: visibility_timeout 0", "PUT", "/v1/queues/{q}", JSON, b'{"visibility_timeout": 0}'),
        ("an unknown route", "GET", "/v2/nothing/here", {}, b""),
        ("a wrong method", "PUT", "/v1/queues/{q}/receive", {}, b""),
        ("classic: readMessage time -1", "GET", "/readMessage?time=-1", {}, b""),
        ("classic: processMessage of nothing", "PATCH", "/processMessage/zzzz", {}, b""),
        (
            "a send from another origin",
            "POST",
            "/v1/queues/{q}/messages",
            {"content-type": "text/plain", "origin": "http://evil.example"},
            b"garbage-cross-site",
        ),
        ("readMessage from another site", "GET", "/readMessage?time=1", {"sec-fetch-site": "cross-site"}, b""),
        ("a Host this server is not", "GET", "/v1/queues", {"host": "evil.example"}, b""),
        (
            "SQS: an unknown action",
            "POST",
            "/",
            {"content-type": "application/x-amz-json-1.0", "x-amz-target": "AmazonSQS.Nope"},
            b"{}",
        ),
        (
            "SQS: not JSON",
            "POST",
            "/",
            {"content-type": "application/x-amz-json-1.0", "x-amz-target": "AmazonSQS.SendMessage"},
            b"{not json",
        ),
    ]
    if token:
        cases.append(("a wrong bearer token", "GET", "/v1/queues", {"authorization": "Bearer wrong"}, b""))
    return cases


RAW_GARBAGE: list[tuple[str, Callable[[Soak, random.Random], bytes]]] = [
    ("raw: random bytes", lambda soak, rng: os.urandom(rng.randint(1, 4096))),
    ("raw: a request line of garbage", lambda soak, rng: b"FOO\x00BAR /\x01 HTTP/9.9\r\n\r\n"),
    (
        "raw: a header without a colon",
        lambda soak, rng: http_request(soak, "GET", "/health", {})[:-2] + b"nocolon\r\n\r\n",
    ),
    (
        "raw: a negative Content-Length",
        lambda soak, rng: http_request(soak, "POST", "/v1/queues/x/receive", {"content-length": "-5"}),
    ),
    (
        "raw: Content-Length and chunked",
        lambda soak, rng: http_request(
            soak, "POST", "/v1/queues/x/receive", {"content-length": "4", "transfer-encoding": "chunked"}, b"0\r\n\r\n"
        ),
    ),
    (
        "raw: a bad chunk size",
        lambda soak, rng: http_request(
            soak, "POST", "/v1/queues/x/receive", {"transfer-encoding": "chunked"}, b"zz\r\n"
        ),
    ),
    ("raw: a 64 KiB header", lambda soak, rng: http_request(soak, "GET", "/health", {"x-big": "b" * 65536})),
]


TOO_LARGE: GarbageCase = (
    "send: one byte over MAX_MESSAGE_BYTES",
    "POST",
    "/v1/queues/{q}/messages",
    TEXT,
    b"g" * (1024 * 1024 + 1),
)


async def garbage(soak: Soak, name: str, rng: random.Random) -> None:
    cases = garbage_cases(soak.spec.token)
    headers = {"authorization": f"Bearer {soak.spec.token}"} if soak.spec.token else {}
    async with httpx.AsyncClient(base_url=soak.spec.url, timeout=CLIENT_TIMEOUT, headers=headers) as http:
        previous = "none"  # the case before on this client (its connection pool): a dropped reply may be its doing
        while True:
            roll = rng.random()
            if roll < 0.25:
                case, make = rng.choice(RAW_GARBAGE)
                try:
                    status = await raw_probe(soak, make(soak, rng))
                except OSError:
                    status = None  # could not even connect: counted as no reply
                soak.probe(case, False, status)
            else:
                case, method, path, head, body = TOO_LARGE if roll > 0.99 else rng.choice(cases)
                await garbage_probe(soak, http, (case, method, path, head, body), rng, previous)
            previous = case
            await trio.sleep(rng.uniform(0.02, 0.2))


async def garbage_probe(
    soak: Soak, http: httpx.AsyncClient, garbage: GarbageCase, rng: random.Random, previous: str
) -> None:
    case, method, path, headers, body = garbage
    path = path.replace("{q}", rng.choice(soak.spec.queues))
    started = time.time()
    try:
        reply = await http.request(method, path, headers=headers, content=body)
    except httpx.TransportError as error:  # a well-formed request dropped: the verdicts say so
        when = time.strftime("%H:%M:%S", time.localtime(started))
        example = f"{type(error).__name__}: {error} (sent at {when}; the request before on this client: {previous})"
        soak.probe(case, True, None, example)
        return
    soak.probe(case, True, reply.status_code)


BEHAVIOURS: dict[str, Callable[[Soak, str, random.Random], Awaitable[None]]] = {
    "producer": producer,
    "consumer": consumer,
    "late_acker": late_acker,
    "nacker": nacker,
    "stream_consumer": stream_consumer,
    "dropper": dropper,
    "garbage": garbage,
    "staller": staller,
    "slow_reader": slow_reader,
}


async def run_client(soak: Soak, kind: str, number: int) -> None:
    """One client until its end: the well-behaved ones stop by themselves, the others are cancelled when the
    load ends. A client that fails in a way it does not expect is recorded as a failure, and ends."""
    name = f"{kind}-{number}"
    rng = random.Random(soak.spec.seed * 1_000_003 + number)
    try:
        if kind in WELL_BEHAVED:
            await BEHAVIOURS[kind](soak, name, rng)
        else:
            with trio.move_on_at(trio.current_time() + max(0.0, soak.spec.stop_at - time.time())):
                await BEHAVIOURS[kind](soak, name, rng)
    except Exception as error:
        soak.failed(name, "crashed", None, type(error).__name__, repr(error))


async def run_worker(spec: WorkerSpec) -> None:
    soak = Soak(spec)
    try:
        await trio.sleep(max(0.0, spec.start_at - time.time()))
        async with client_for(soak) as watcher, trio.open_nursery() as background:
            background.start_soon(soak.flusher)
            background.start_soon(soak.monitor, watcher)
            async with trio.open_nursery() as clients:
                for kind, number in spec.clients:
                    clients.start_soon(run_client, soak, kind, number)
            background.cancel_scope.cancel()
    finally:
        soak.close()


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit("usage: soak_clients.py SPEC.json (scripts/soak starts these)")
    trio.run(run_worker, WorkerSpec.load(Path(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
