"""The streaming path: one WebSocket per client at `/v1/queues/<name>/stream`, over which a consumer gets messages
pushed up to a prefetch window (credit) and settles them, and a producer sends and gets ids back in order.

Each frame is one JSON object with an `op`; docs/api.md lists them. This module owns the frames and the
socket's bookkeeping (its credit, and the leases it delivered and not yet settled); every queue rule is the
core's, reached through the same actor commands as API v1. A lease delivered here obeys API v1's rules, plus
one: when the socket closes (or the client unsubscribes), every lease it holds is released at once (the
messages go back to the queue) instead of waiting for its deadline.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import orjson
import pydantic_core
import trio
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import websocket
from quart_trio import QuartTrio

from wonderq import openapi
from wonderq.access import needs
from wonderq.actor import ActorHandle
from wonderq.commands import MAX_WAIT, AckBatch, ChangeVisibility, GetQueue, Receive, Send
from wonderq.config import Settings
from wonderq.core import check_queue_name, split_receipt
from wonderq.errors import WonderQError
from wonderq.model import Lease, Outgoing
from wonderq.principals import Permission

Entries = Callable[[Sequence[Any]], list[Outgoing]]  # batch entries (JSON) to messages, with API v1's rules
Render = Callable[[Lease], dict[str, Any]]  # a lease as API v1 shows it

log = logging.getLogger("wonderq.stream")

MAX_CREDIT = 1000  # the largest prefetch window a consumer may ask for
RELEASE_TIMEOUT = 5.0  # seconds a closing socket gets to hand its leases back
STOP_CHECK = 0.2  # seconds between looks for a server shutdown while the window is full


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Subscribe(_Frame):
    op: str = "subscribe"
    credit: Annotated[int, Field(ge=0, le=MAX_CREDIT)]
    visibility_timeout: float | None = None
    consumer: str | None = None


class Credit(_Frame):
    op: str = "credit"
    credit: Annotated[int, Field(ge=0, le=MAX_CREDIT)]


class AckFrame(_Frame):
    op: str = "ack"
    receipts: list[str]


class NackFrame(_Frame):
    op: str = "nack"
    receipt: str
    delay: float = 0.0  # seconds before the message is delivered again (0: at once)


class ExtendFrame(_Frame):
    op: str = "extend"
    receipt: str
    visibility_timeout: float


class Unsubscribe(_Frame):
    op: str = "unsubscribe"


class SendFrame(_Frame):
    op: str = "send"
    messages: list[dict[str, Any]]  # batch entries, as POST /v1/queues/{name}/messages/batch takes them
    ref: str | int | None = None  # echoed in the reply, to match it


FRAMES: dict[str, type[_Frame]] = {
    "subscribe": Subscribe,
    "credit": Credit,
    "ack": AckFrame,
    "nack": NackFrame,
    "extend": ExtendFrame,
    "send": SendFrame,
    "unsubscribe": Unsubscribe,
}


class StreamError(Exception):
    """A frame that cannot be served: answered with an `error` frame; the socket stays open."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Connection:
    """One socket's state: what it may still be given (credit), and what it holds (its unsettled leases)."""

    def __init__(self, handle: ActorHandle, queue: str, entries: Entries, render: Render, max_batch: int) -> None:
        self.handle = handle
        self.queue = queue
        self.entries = entries
        self.render = render
        self.max_batch = max_batch  # messages per Receive
        self.credit = 0
        self.visibility_timeout: float | None = None
        self.consumer: str | None = None
        # receipt -> (message id, lease deadline in epoch seconds) of the leases delivered here and not settled
        self.held: dict[str, tuple[str, float]] = {}
        self.changed = trio.Event()  # set when credit grows or a lease is settled
        self.receiving: trio.CancelScope | None = None  # around the long poll in flight, if any
        self.outbox_send, self.outbox = trio.open_memory_channel[bytes](100)

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.outbox_send.send(orjson.dumps(frame))

    async def handle_frame(self, raw: str | bytes) -> None:
        try:
            data = pydantic_core.from_json(raw)
        except ValueError:
            raise StreamError("invalid_body", "a frame is one JSON object") from None
        model = FRAMES.get(str(data.get("op"))) if isinstance(data, dict) else None
        if model is None:
            raise StreamError("invalid_parameter", f"op must be one of {', '.join(FRAMES)}")
        try:
            frame = model.model_validate(data, strict=True)
        except ValidationError as error:
            raise StreamError("invalid_parameter", str(error.errors(include_url=False)[0]["msg"])) from None
        if isinstance(frame, Subscribe):
            self.visibility_timeout, self.consumer = frame.visibility_timeout, frame.consumer
            self.credit = frame.credit
            self.wake()
        elif isinstance(frame, Credit):
            self.credit = frame.credit
            self.wake()
        elif isinstance(frame, AckFrame):
            report = await self.handle.ask(AckBatch(self.queue, frame.receipts))
            for receipt in frame.receipts:  # acked, or no live lease any more: either way not held here
                self.held.pop(receipt, None)
            failed = [{"receipt": f.receipt, "code": f.code, "message": f.message} for f in report.failed]
            await self.send({"op": "acked", "acked": list(report.acked), "failed": failed})
            self.wake()
        elif isinstance(frame, NackFrame | ExtendFrame):
            seconds = frame.delay if isinstance(frame, NackFrame) else frame.visibility_timeout
            message_id = split_receipt(frame.receipt)
            deadline = await self.handle.ask(ChangeVisibility(self.queue, message_id, frame.receipt, seconds))
            if isinstance(frame, NackFrame):
                self.held.pop(frame.receipt, None)  # no longer this socket's: it comes back after the delay
                self.wake()
            await self.send({"op": frame.op + "ed", "receipt": frame.receipt, "lease_expires_at": deadline})
        elif isinstance(frame, SendFrame):
            ids = await self.handle.ask(Send(self.queue, self.entries(frame.messages)))
            await self.send({"op": "sent", "ids": ids, "ref": frame.ref})
        elif isinstance(frame, Unsubscribe):
            await self.send({"op": "unsubscribed", "released": await self.unsubscribe()})

    async def unsubscribe(self) -> int:
        """Stop delivering and give back every lease this socket holds; returns how many. When it returns, the
        queue has them back: a client that closes after the reply leaves nothing leased behind."""
        self.credit = 0
        if self.receiving is not None:
            self.receiving.cancel()  # the actor puts back whatever the cancelled long poll was about to take
            with contextlib.suppress(WonderQError):
                # A round trip queued behind that put-back, so that the reply comes after it.
                await self.handle.ask(GetQueue(self.queue))
        released = len(self.held)
        await self.release_all()
        return released

    def _forget_ended_leases(self) -> float:
        """Stop counting leases whose deadline has passed (their messages are back in the queue); returns the
        earliest deadline still held, in trio seconds (inf when none)."""
        clock = self.handle.clock
        now = clock.now()
        for receipt, (_, deadline) in list(self.held.items()):
            if deadline <= now:
                del self.held[receipt]
        return min((clock.to_trio(deadline) for _, deadline in self.held.values()), default=float("inf"))

    async def consume(self) -> None:
        """Deliver messages while the window has room: long polls of at most MAX_WAIT seconds, over and over.
        A lease counts against the window until it is settled here or its deadline passes. Returns when the
        server starts shutting down (long polls then answer at once: polling on would only spin)."""
        while not self.handle.statistics().stopping:
            next_end = self._forget_ended_leases()
            room = self.credit - len(self.held)
            if room <= 0:  # wait for room: a settle, a lease's end, more credit; or look again for a shutdown
                with trio.move_on_at(min(next_end, trio.current_time() + STOP_CHECK)):
                    await self.changed.wait()
                continue
            leases: list[Lease] = []
            try:
                with trio.CancelScope() as self.receiving:  # cancelled by an unsubscribe
                    leases = await self.handle.ask(
                        Receive(
                            self.queue,
                            max_messages=min(room, self.max_batch),
                            visibility_timeout=self.visibility_timeout,
                            wait=MAX_WAIT,
                            consumer=self.consumer,
                        )
                    )
            except WonderQError as error:  # no such queue (yet), a bad visibility timeout, ...: say so, stop
                self.credit = 0
                await self.send({"op": "error", "code": error.code, "message": error.message})
                continue
            finally:
                self.receiving = None
            if leases:
                for lease in leases:
                    self.held[lease.receipt] = (lease.id, lease.lease_expires_at)
                await self.send({"op": "messages", "messages": [self.render(lease) for lease in leases]})

    async def release_all(self) -> None:
        """Hand every lease this socket holds back to the queue at once (the socket is closing)."""
        for receipt, (message_id, _) in list(self.held.items()):
            with contextlib.suppress(WonderQError):  # acked, expired or purged meanwhile: nothing to give back
                await self.handle.ask(ChangeVisibility(self.queue, message_id, receipt, 0))
        self.held.clear()


def install(app: QuartTrio, handle: ActorHandle, settings: Settings, entries: Entries, render: Render) -> None:
    """Serve the streaming path on `app`. `entries` turns batch entries into messages, `render` shows a lease,
    both as API v1 does."""

    @needs(Permission.RECEIVE, Permission.SEND)
    @openapi.operation(
        summary="The streaming path (WebSocket): push delivery with a prefetch window, acks, streamed sends",
        tag="stream",
        errors=(400,),
    )
    async def stream(name: str) -> None:
        check_queue_name(name)
        connection = Connection(handle, name, entries, render, settings.max_batch)
        await websocket.accept()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_writer, connection)
                nursery.start_soon(_consume_until_shutdown, connection, nursery.cancel_scope)
                while True:
                    raw = await websocket.receive()
                    try:
                        await connection.handle_frame(raw)
                    except StreamError as error:
                        await connection.send({"op": "error", "code": error.code, "message": error.message})
                    except WonderQError as error:
                        await connection.send({"op": "error", "code": error.code, "message": error.message})
        finally:
            with trio.move_on_after(RELEASE_TIMEOUT) as scope:
                scope.shield = True
                await connection.release_all()

    app.add_websocket("/v1/queues/<name>/stream", "stream", stream)


async def _consume_until_shutdown(connection: Connection, socket_scope: trio.CancelScope) -> None:
    """Consume; once the server shuts down, end the whole socket (its leases are then handed back)."""
    await connection.consume()
    socket_scope.cancel()


async def _writer(connection: Connection) -> None:
    """The one task that writes to the socket, so frames never interleave."""
    async for frame in connection.outbox:
        await websocket.send(frame.decode())
