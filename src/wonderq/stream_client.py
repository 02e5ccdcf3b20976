"""The Python client's side of the streaming path (`/v1/queues/<name>/stream`, a WebSocket): `Stream` (blocking)
and `AsyncStream` (trio or asyncio), both over httpx-ws, and `Frames`, the pure part they share: the frames to
send, and the reading of what comes back (deliveries are kept until asked for; an `error` frame becomes a
WonderQClientError). Open one with `stream(client, queue)` or `astream(async_client, queue)`:

    with Client(url) as client, stream(client, "jobs") as jobs:
        jobs.subscribe(credit=50)
        for message in jobs.messages(wait=5):
            handle(message.body)
            jobs.ack(message.receipt)
"""

from __future__ import annotations

import contextlib
import queue
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, contextmanager
from typing import Any

import orjson
from httpx_ws import (
    AsyncWebSocketSession,
    WebSocketDisconnect,
    WebSocketNetworkError,
    WebSocketSession,
    aconnect_ws,
    connect_ws,
)
from wsproto.utilities import LocalProtocolError

from wonderq.client import (
    AckFailure,
    AckResult,
    AsyncClient,
    Client,
    ReceivedMessage,
    WonderQClientError,
    batch_entry,
    queue_path,
    received_message,
)

MAX_FRAME_BYTES = 64 * 1024 * 1024  # the largest frame the client takes (a full window of large messages)
CLOSED = (WebSocketDisconnect, WebSocketNetworkError, LocalProtocolError)  # a socket the server has closed
# Frames the socket buffers unread. httpx-ws's default (512) is below the largest window (1,000 messages, which
# may come one per frame): a consumer slow to read would fill it, httpx-ws's reader thread would block, stop
# seeing the server's pongs, and the socket would die of a ping timeout. Frames are small; room for two windows.
QUEUE_FRAMES = 2_048


class Frames:
    """Frames out, frames in: no I/O."""

    def __init__(self) -> None:
        self.delivered: deque[ReceivedMessage] = deque()  # pushed messages not yet handed to the caller
        self.subscribed = False
        self._refs = 0

    def unsubscribed(self, frame: dict[str, Any]) -> int:
        """The server gave back every lease of this socket: what was pushed and not handed out is gone."""
        self.subscribed = False
        self.delivered.clear()
        return int(frame["released"])

    @staticmethod
    def subscribe(credit: int, visibility_timeout: float | None, consumer: str | None) -> str:
        frame: dict[str, Any] = {"op": "subscribe", "credit": credit}
        if visibility_timeout is not None:
            frame["visibility_timeout"] = visibility_timeout
        if consumer is not None:
            frame["consumer"] = consumer
        return orjson.dumps(frame).decode()

    @staticmethod
    def unsubscribe() -> str:
        return orjson.dumps({"op": "unsubscribe"}).decode()

    @staticmethod
    def credit(credit: int) -> str:
        return orjson.dumps({"op": "credit", "credit": credit}).decode()

    @staticmethod
    def ack(receipts: Sequence[str]) -> str:
        return orjson.dumps({"op": "ack", "receipts": list(receipts)}).decode()

    @staticmethod
    def nack(receipt: str, delay: float) -> str:
        return orjson.dumps({"op": "nack", "receipt": receipt, "delay": delay}).decode()

    @staticmethod
    def extend(receipt: str, seconds: float) -> str:
        return orjson.dumps({"op": "extend", "receipt": receipt, "visibility_timeout": seconds}).decode()

    def send(self, bodies: Sequence[object]) -> tuple[str, int]:
        """A send frame and the `ref` its reply will carry."""
        self._refs += 1
        frame = {"op": "send", "ref": self._refs, "messages": [batch_entry(body) for body in bodies]}
        return orjson.dumps(frame).decode(), self._refs

    def take(self, text: str) -> dict[str, Any] | None:
        """Read one frame from the server: deliveries are kept in `delivered` (None is returned), an error
        raises, anything else is returned."""
        frame: dict[str, Any] = orjson.loads(text)
        if frame.get("op") == "messages":
            self.delivered.extend(received_message(item) for item in frame["messages"])
            return None
        if frame.get("op") == "error":
            raise WonderQClientError(None, str(frame.get("code")), str(frame.get("message")))
        return frame

    @staticmethod
    def ack_result(frame: dict[str, Any]) -> AckResult:
        failed = tuple(AckFailure(f["receipt"], f["code"], f["message"]) for f in frame["failed"])
        return AckResult(acked=tuple(frame["acked"]), failed=failed)

    def handed_out(self, limit: int | None = None) -> list[ReceivedMessage]:
        count = len(self.delivered) if limit is None else min(limit, len(self.delivered))
        return [self.delivered.popleft() for _ in range(count)]


class Stream:
    """A blocking stream on one queue. Subscribe to have messages pushed (up to `credit` unsettled at once),
    settle them with `ack`, `nack` or `extend`, and send with `send_batch`. `unsubscribe` stops the pushes and
    gives back every lease not settled; leaving the `with` does that first (unless an exception is leaving
    it: then closing the socket does it on the server's side, a moment later)."""

    def __init__(self, socket: WebSocketSession) -> None:
        self._socket = socket
        self._frames = Frames()

    def subscribe(self, credit: int, *, visibility_timeout: float | None = None, consumer: str | None = None) -> None:
        self._socket.send_text(Frames.subscribe(credit, visibility_timeout, consumer))
        self._frames.subscribed = True

    def unsubscribe(self) -> int:
        """Stop the pushes and give back every lease this stream holds; returns how many went back. Once it
        returns the queue has them: nothing is left leased behind."""
        self._socket.send_text(Frames.unsubscribe())
        return self._frames.unsubscribed(self._reply("unsubscribed"))

    @property
    def subscribed(self) -> bool:
        return self._frames.subscribed

    def set_credit(self, credit: int) -> None:
        self._socket.send_text(Frames.credit(credit))

    def messages(self, wait: float | None = None, limit: int | None = None) -> list[ReceivedMessage]:
        """The messages pushed so far (at most `limit`); if none, waits up to `wait` seconds (None: for ever)."""
        while not self._frames.delivered:
            try:
                text = self._socket.receive_text(timeout=wait)
            except (queue.Empty, TimeoutError):
                return []
            self._frames.take(text)
        return self._frames.handed_out(limit)

    def ack(self, *receipts: str) -> AckResult:
        self._socket.send_text(Frames.ack(receipts))
        return Frames.ack_result(self._reply("acked"))

    def nack(self, receipt: str, delay: float = 0.0) -> None:
        """Give the message back, to be delivered again after `delay` seconds."""
        self._socket.send_text(Frames.nack(receipt, delay))
        self._reply("nacked")

    def extend(self, receipt: str, seconds: float) -> float:
        """Move the lease's deadline to `seconds` from now; returns it (epoch seconds)."""
        self._socket.send_text(Frames.extend(receipt, seconds))
        return float(self._reply("extended")["lease_expires_at"])

    def send_batch(self, bodies: Sequence[object]) -> list[str]:
        text, ref = self._frames.send(bodies)
        self._socket.send_text(text)
        while (frame := self._reply("sent"))["ref"] != ref:
            continue
        return [str(message_id) for message_id in frame["ids"]]

    def _reply(self, op: str) -> dict[str, Any]:
        while True:
            frame = self._frames.take(self._socket.receive_text())
            if frame is not None and frame.get("op") == op:
                return frame


class AsyncStream:
    """`Stream` for async code (trio or asyncio)."""

    def __init__(self, socket: AsyncWebSocketSession) -> None:
        self._socket = socket
        self._frames = Frames()

    async def subscribe(
        self, credit: int, *, visibility_timeout: float | None = None, consumer: str | None = None
    ) -> None:
        await self._socket.send_text(Frames.subscribe(credit, visibility_timeout, consumer))
        self._frames.subscribed = True

    async def unsubscribe(self) -> int:
        await self._socket.send_text(Frames.unsubscribe())
        return self._frames.unsubscribed(await self._reply("unsubscribed"))

    @property
    def subscribed(self) -> bool:
        return self._frames.subscribed

    async def set_credit(self, credit: int) -> None:
        await self._socket.send_text(Frames.credit(credit))

    async def messages(self, wait: float | None = None, limit: int | None = None) -> list[ReceivedMessage]:
        while not self._frames.delivered:
            try:
                text = await self._socket.receive_text(timeout=wait)
            except (queue.Empty, TimeoutError):
                return []
            self._frames.take(text)
        return self._frames.handed_out(limit)

    async def ack(self, *receipts: str) -> AckResult:
        await self._socket.send_text(Frames.ack(receipts))
        return Frames.ack_result(await self._reply("acked"))

    async def nack(self, receipt: str, delay: float = 0.0) -> None:
        await self._socket.send_text(Frames.nack(receipt, delay))
        await self._reply("nacked")

    async def extend(self, receipt: str, seconds: float) -> float:
        await self._socket.send_text(Frames.extend(receipt, seconds))
        return float((await self._reply("extended"))["lease_expires_at"])

    async def send_batch(self, bodies: Sequence[object]) -> list[str]:
        text, ref = self._frames.send(bodies)
        await self._socket.send_text(text)
        while (frame := await self._reply("sent"))["ref"] != ref:
            continue
        return [str(message_id) for message_id in frame["ids"]]

    async def _reply(self, op: str) -> dict[str, Any]:
        while True:
            frame = self._frames.take(await self._socket.receive_text())
            if frame is not None and frame.get("op") == op:
                return frame


@contextmanager
def stream(client: Client, queue_name: str) -> Iterator[Stream]:
    """A blocking stream on `queue_name`, over `client`'s connection settings."""
    opened: AbstractContextManager[WebSocketSession] = connect_ws(
        queue_path(queue_name, "stream"), client.http, max_message_size_bytes=MAX_FRAME_BYTES, queue_size=QUEUE_FRAMES
    )
    with opened as socket:
        opened_stream = Stream(socket)
        yield opened_stream
        if opened_stream.subscribed:  # not on an exception: the socket may be what failed
            with contextlib.suppress(*CLOSED):  # the server closed it (shutting down): it gave them back itself
                opened_stream.unsubscribe()


@asynccontextmanager
async def astream(client: AsyncClient, queue_name: str) -> AsyncIterator[AsyncStream]:
    """An async stream on `queue_name`, over `client`'s connection settings."""
    opened: AbstractAsyncContextManager[AsyncWebSocketSession] = aconnect_ws(
        queue_path(queue_name, "stream"), client.http, max_message_size_bytes=MAX_FRAME_BYTES, queue_size=QUEUE_FRAMES
    )
    async with opened as socket:
        opened_stream = AsyncStream(socket)
        yield opened_stream
        if opened_stream.subscribed:  # not on an exception: the socket may be what failed
            with contextlib.suppress(*CLOSED):  # the server closed it (shutting down): it gave them back itself
                await opened_stream.unsubscribe()
