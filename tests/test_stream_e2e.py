"""The streaming path end to end, against a real server on a real socket, with a raw WebSocket client (wsproto
over a trio socket) that does only what a test tells it: subscribe and never read, send an empty binary frame.
Real time: a lease of LEASE seconds runs out once."""

from __future__ import annotations

import json
import socket as stdlib_socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Event, Request, TextMessage

from tests.servers import serving
from tests.test_stream_buffer import PeakBuffer, buffers
from wonderq.client import AsyncClient

__all__ = ["buffers"]  # the fixture

LIMIT = 64 * 1024  # bytes: the server's send buffer per socket
LEASE = 1.5  # seconds: the queue's visibility timeout
MESSAGES = 300
BODY = "x" * 900  # about 1 KB a message in a frame: a frame of 10 is about 10 KB
FRAME = 10 * 2048  # bytes: more than one such frame
RECEIVE_BUFFER = 4096  # bytes: the raw client's SO_RCVBUF, so that the kernel holds little for it


class RawSocket:
    """A WebSocket client with no reader of its own: bytes are read only when `frames` is called."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.texts: list[str] = []  # whole text frames not yet taken
        self._partial = ""  # the start of a text frame that came in pieces

    async def open(self, host: str, target: str) -> None:
        await self.stream.send_all(self.ws.send(Request(host=host, target=target)))
        while not any(isinstance(event, AcceptConnection) for event in await self._events()):
            continue

    async def send(self, frame: dict[str, Any] | bytes) -> None:
        message = BytesMessage(frame) if isinstance(frame, bytes) else TextMessage(json.dumps(frame))
        await self.stream.send_all(self.ws.send(message))

    async def frames_until(self, op: str, ref: str) -> list[dict[str, Any]]:
        """Read frames until the one with this op and ref; returns them all (text frames only)."""
        got: list[dict[str, Any]] = []
        while not got or (got[-1].get("op"), got[-1].get("ref")) != (op, ref):
            if not self.texts:
                await self._events()
                continue
            got.append(json.loads(self.texts.pop(0)))
        return got

    async def _events(self) -> list[Event]:
        data = await self.stream.receive_some(65536)
        assert data, "the server closed the socket"
        self.ws.receive_data(data)
        events = list(self.ws.events())
        for event in events:
            if isinstance(event, TextMessage):
                self._partial += event.data
                if event.message_finished:
                    self.texts.append(self._partial)
                    self._partial = ""
        return events


@asynccontextmanager
async def raw_socket(url: str, path: str) -> AsyncIterator[RawSocket]:
    where = urlsplit(url)
    assert where.hostname is not None
    assert where.port is not None
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, RECEIVE_BUFFER)  # before connecting
    await sock.connect((where.hostname, where.port))
    stream = trio.SocketStream(sock)
    async with stream:
        raw = RawSocket(stream)
        await raw.open(where.netloc, path)
        yield raw


async def drain(client: AsyncClient, queue: str, count: int) -> list[Any]:
    """Receive and ack `count` messages of `queue`, then look once for one more."""
    got: list[Any] = []
    while len(got) < count:
        batch = await client.receive(queue, max=10, wait=5)
        assert (await client.ack_batch(queue, [m.receipt for m in batch])).ok
        got += batch
    return got + await client.receive(queue, max=10)


async def test_a_consumer_that_never_reads_holds_little_and_dead_letters_nothing(buffers: list[PeakBuffer]) -> None:
    async with serving(stream_buffer_bytes=LIMIT) as url, AsyncClient(url) as client:
        await client.create_queue("dlq")
        await client.create_queue("q", visibility_timeout=LEASE, max_receives=3, dead_letter_queue="dlq")
        for _ in range(MESSAGES // 10):
            await client.send_batch("q", [BODY] * 10)
        async with raw_socket(url, "/v1/queues/q/stream") as stuck:
            await stuck.send({"op": "subscribe", "credit": 1000})  # and then reads nothing
            await trio.sleep(LEASE / 5)  # ample time to fill the buffer, and well before a frame is dropped
            (buffer,) = buffers
            assert buffer.full
            held = (await client.get_queue("q"))["leased"]
            assert held < MESSAGES  # receiving stopped at the bound: the others wait in the queue

            with trio.fail_after(30):
                got = await drain(client, "q", MESSAGES)  # another consumer gets them all, as they come back
            assert len({m.id for m in got}) == len(got) == MESSAGES
            counted = [m for m in got if m.receive_count == 2]  # delivered to the stuck socket's kernel buffers
            assert 0 < len(counted) < held  # those it held unsent came back uncounted
            assert max(m.receive_count for m in got) == 2
            assert (await client.get_queue("dlq"))["ready"] == 0
            assert (await client.get_queue("q"))["dead_lettered"] == 0
            assert LIMIT <= buffer.peak < LIMIT + FRAME

            await stuck.send(b"")  # an empty binary frame: answered, and the socket stays
            await stuck.send({"op": "send", "ref": "after", "messages": [{"body": 1}]})
            with trio.fail_after(10):
                replies = await stuck.frames_until("sent", "after")
            errors = [f for f in replies if f["op"] == "error"]
            assert [e["code"] for e in errors] == ["invalid_body"], errors
