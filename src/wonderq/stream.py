"""The streaming path: one WebSocket per client at `/v1/queues/<name>/stream`, over which a consumer gets messages
pushed up to a prefetch window (credit) and settles them, and a producer sends and gets ids back in order.

Each frame is one JSON object with an `op`; docs/api.md lists them. This module owns the frames, the socket's
bookkeeping (its credit, and the leases it delivered and not yet settled), its send buffer and the cap on open
streams; every queue rule is the core's, reached through the same actor commands as API v1. A lease delivered
here obeys API v1's rules, plus these:

- When the socket closes (or the client unsubscribes), every lease it holds is released at once (the messages
  go back to the queue) instead of waiting for its deadline.
- Frames wait in a send buffer bounded in bytes (STREAM_BUFFER_BYTES): while it is full the socket receives no
  more messages and reads no more frames. A frame of messages still in the buffer halfway through its leases
  (or after MAX_UNSENT seconds) is dropped and its leases given back as never delivered (their receive counts
  undone), and the socket then receives nothing more until its writer has written a frame again: a consumer
  that does not read neither hoards messages nor pushes them to their dead-letter queue.
- A bad frame of any kind is answered with an `error` frame and never closes the socket; so is one whose
  handling fails unexpectedly (`internal_error`, logged with its traceback).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import pydantic_core
import trio
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from quart import websocket
from quart_trio import QuartTrio

from wonderq import openapi
from wonderq.access import needs
from wonderq.actor import ActorHandle
from wonderq.commands import MAX_WAIT, AckBatch, ChangeVisibility, GetQueue, Receive, ReturnUndelivered, Send
from wonderq.config import Settings
from wonderq.core import MAX_CONSUMER_CHARS, check_queue_name, check_visibility_timeout, split_receipt
from wonderq.errors import (
    Forbidden,
    InvalidBody,
    InvalidParameter,
    RequestTooLarge,
    TooManyStreams,
    WonderQError,
)
from wonderq.gate import current_principal
from wonderq.model import Lease, Outgoing
from wonderq.principals import Permission

Entries = Callable[[Sequence[Any]], list[Outgoing]]  # batch entries (JSON) to messages, with API v1's rules
Render = Callable[[Lease], dict[str, Any]]  # a lease as API v1 shows it
Incoming = str | bytes | None  # a frame as the socket gives it (None: an empty binary frame)

log = logging.getLogger("wonderq.stream")

MAX_CREDIT = 1000  # the largest prefetch window a consumer may ask for
RELEASE_TIMEOUT = 5.0  # seconds a closing socket gets to hand its leases back
STOP_CHECK = 0.2  # seconds between looks for a server shutdown while there is nothing to receive
MAX_UNSENT = 30.0  # seconds a frame of messages may wait unsent (or half its leases' time, if that is shorter)
DROP_SLACK = 0.1  # seconds: the shortest long poll, when one is cut short for a frame due to be dropped
MAX_REF = 2**63  # a `ref` integer is a signed 64-bit one, -MAX_REF to MAX_REF - 1: orjson writes it exactly


def _echoable(ref: object) -> bool:
    return isinstance(ref, str) or (type(ref) is int and -MAX_REF <= ref < MAX_REF)


def _check_ref(ref: str | int) -> str | int:
    if not _echoable(ref):
        raise ValueError("an integer ref must fit in 64 bits (signed)")
    return ref


Ref = Annotated[str | int, AfterValidator(_check_ref)]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ref: Ref | None = None  # any frame's: echoed in its answer (and in an error frame), to match them


class Subscribe(_Frame):
    op: str = "subscribe"
    credit: Annotated[int, Field(ge=0, le=MAX_CREDIT)]
    visibility_timeout: float | None = None
    consumer: Annotated[str, Field(max_length=MAX_CONSUMER_CHARS)] | None = None


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


FRAMES: dict[str, type[_Frame]] = {
    "subscribe": Subscribe,
    "credit": Credit,
    "ack": AckFrame,
    "nack": NackFrame,
    "extend": ExtendFrame,
    "send": SendFrame,
    "unsubscribe": Unsubscribe,
}


def decode_frame(raw: Incoming, max_bytes: int) -> dict[str, Any]:
    """A frame from the client as a JSON object (a text frame, or a binary one holding UTF-8 JSON text)."""
    data = b"" if raw is None else raw
    if _too_large(data, max_bytes):
        raise RequestTooLarge(f"a frame is at most {max_bytes} bytes (MAX_REQUEST_BYTES)")
    try:
        # pydantic-core's parser, as for API v1's JSON bodies: no NaN or lone surrogates, integers of any size,
        # and a nesting limit (about 200 levels); a ValueError for anything else.
        parsed = pydantic_core.from_json(data, allow_inf_nan=False, cache_strings=False)
    except ValueError as error:
        raise InvalidBody(f"a frame is one JSON object in UTF-8 text: {error}") from None
    if not isinstance(parsed, dict):
        raise InvalidParameter("a frame is one JSON object, with an op")
    return parsed


def _too_large(data: str | bytes, max_bytes: int) -> bool:
    """A text frame comes decoded: its UTF-8 length is between its length and four times that, so only a long
    one is encoded to count its bytes."""
    if isinstance(data, bytes) or len(data) > max_bytes or 4 * len(data) <= max_bytes:
        return len(data) > max_bytes
    return len(data.encode("utf-8", "surrogatepass")) > max_bytes


def ref_of(data: dict[str, Any]) -> Ref | None:
    """The frame's `ref`, if it has one that can be echoed (taken before the frame is checked, so that an error
    can be matched to its frame)."""
    ref = data.get("ref")
    return ref if _echoable(ref) else None


def validate_frame(data: dict[str, Any]) -> _Frame:
    op = data.get("op")
    model = FRAMES.get(op) if isinstance(op, str) else None
    if model is None:
        raise InvalidParameter(f"op must be one of {', '.join(FRAMES)}")
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as error:
        raise InvalidParameter(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)


@dataclass(eq=False, slots=True)
class _Unsent:
    data: bytes
    leases: Sequence[Lease]  # the leases a `messages` frame delivers (none for a reply)
    drop_at: float  # trio seconds: a frame of messages still unsent then is dropped (inf for a reply)
    dropped: bool = False


class SendBuffer:
    """A socket's frames not yet written, in order, bounded in bytes. Pure bookkeeping: the socket's tasks wait.

    Frames of messages still unsent at their `drop_at` are dropped (their leases go back, as never delivered),
    after which the buffer is `stalled` until the writer finishes writing a frame."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # bytes: no more receiving, and no more reading of frames, while this much is unsent
        self.bytes = 0  # of the frames not written yet, the one being written included
        self.stalled = False  # frames were dropped since the writer last wrote one
        self._frames: deque[_Unsent] = deque()  # to be written, in order (dropped ones are skipped)
        self._messages: deque[_Unsent] = deque()  # the frames of messages among them: those that may be dropped

    @property
    def full(self) -> bool:
        return self.bytes >= self.limit

    def put(self, data: bytes, leases: Sequence[Lease] = (), drop_at: float = math.inf) -> None:
        frame = _Unsent(data, leases, drop_at)
        self._frames.append(frame)
        if leases:
            self._messages.append(frame)
        self.bytes += len(data)

    def next_frame(self) -> bytes | None:
        """The next frame to write, now handed to the socket (no longer droppable); None when there is none."""
        while self._frames:
            frame = self._frames.popleft()
            if frame.dropped:
                continue
            if frame.leases:
                self._messages.remove(frame)
            return frame.data
        return None

    def written(self, size: int) -> None:
        """The writer has written a frame of `size` bytes: it makes progress, so receiving may go on."""
        self.bytes -= size
        self.stalled = False

    def next_drop(self) -> float:
        return min((frame.drop_at for frame in self._messages), default=math.inf)

    def drop_stale(self, now: float) -> list[Lease]:
        """Drop the frames of messages due to be dropped at trio time `now`; returns their leases."""
        stale = [frame for frame in self._messages if frame.drop_at <= now]
        if stale:
            self.stalled = True
        return self._drop(stale)

    def drop_all(self) -> list[Lease]:
        """Drop every frame of messages still unsent (the client unsubscribes or goes); returns their leases."""
        return self._drop(list(self._messages))

    def _drop(self, frames: list[_Unsent]) -> list[Lease]:
        leases: list[Lease] = []
        for frame in frames:
            frame.dropped = True  # left in `_frames` (skipped by the writer), without its data
            self.bytes -= len(frame.data)
            frame.data = b""
            leases += frame.leases
        if frames:
            self._messages = deque(frame for frame in self._messages if not frame.dropped)
        return leases


class Connection:
    """One socket's state: what it may still be given (credit), what it holds (its unsettled leases), what it
    has not written yet (its send buffer), and what its client may do (`may_send`, `may_receive`)."""

    def __init__(
        self,
        handle: ActorHandle,
        queue: str,
        entries: Entries,
        render: Render,
        settings: Settings,
        *,
        may_send: bool = True,
        may_receive: bool = True,
    ) -> None:
        self.handle = handle
        self.queue = queue
        self.entries = entries
        self.render = render
        self.max_batch = settings.max_batch  # messages per Receive
        self.max_frame_bytes = settings.max_request_bytes
        self.may_send = may_send  # `send` frames are served
        self.may_receive = may_receive  # every other frame is served
        self.credit = 0
        self.visibility_timeout: float | None = None
        self.consumer: str | None = None
        # receipt -> (message id, lease deadline in epoch seconds) of the leases delivered here and not settled,
        # those in frames not written yet included
        self.held: dict[str, tuple[str, float]] = {}
        self.buffer = SendBuffer(settings.stream_buffer_bytes)
        self.changed = trio.Event()  # set when credit grows, a lease is settled, or the send buffer changes
        self.receiving: trio.CancelScope | None = None  # around the long poll in flight, if any

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def send(self, frame: dict[str, Any], leases: Sequence[Lease] = (), drop_at: float = math.inf) -> None:
        """Queue a frame for the writer (never blocks: the send buffer's bound is kept by who may add to it)."""
        self.buffer.put(orjson.dumps(frame), leases, drop_at)
        self.wake()

    def send_error(self, code: str, message: str, ref: Ref | None = None) -> None:
        self.send({"op": "error", "code": code, "message": message} | _echo(ref))

    async def run(self, receive: Callable[[], Awaitable[Incoming]], write: Callable[[bytes], Awaitable[None]]) -> None:
        """Serve the socket until it closes (or the server shuts down), then give back every lease it holds."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.write_all, write)
                nursery.start_soon(self._consume_until_shutdown, nursery.cancel_scope)
                while True:
                    raw = await receive()
                    while self.buffer.full:  # the client is not reading: serve (and read) no more of its frames
                        await self.changed.wait()
                    await self.serve(raw)
        finally:
            with trio.move_on_after(RELEASE_TIMEOUT) as scope:
                scope.shield = True
                await self.release_all()

    async def write_all(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        """The one task that writes to the socket, so frames never interleave."""
        while True:
            data = self.buffer.next_frame()
            if data is None:
                await self.changed.wait()
                continue
            await write(data)
            self.buffer.written(len(data))
            self.wake()

    async def serve(self, raw: Incoming) -> None:
        """Handle one frame from the client. Every failure is answered with an `error` frame (with the frame's
        ref, when it has one); the socket stays open."""
        ref: Ref | None = None
        try:
            data = decode_frame(raw, self.max_frame_bytes)
            ref = ref_of(data)
            await self.handle_frame(validate_frame(data))
        except WonderQError as error:
            self.send_error(error.code, error.message, ref)
        except Exception:
            log.exception("unexpected error serving a frame on the stream of queue %s", self.queue)
            self.send_error("internal_error", "internal error", ref)

    async def handle_frame(self, frame: _Frame) -> None:
        if isinstance(frame, SendFrame):
            if not self.may_send:
                raise Forbidden(f"this stream may not send to queue {self.queue}")
        elif not self.may_receive:
            raise Forbidden(f"this stream may not receive from queue {self.queue}")
        if isinstance(frame, Subscribe):
            if frame.visibility_timeout is not None:  # refused here, with the frame, not later by a receive
                check_visibility_timeout(frame.visibility_timeout)
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
            self.send({"op": "acked", "acked": list(report.acked), "failed": failed} | _echo(frame.ref))
        elif isinstance(frame, NackFrame | ExtendFrame):
            seconds = frame.delay if isinstance(frame, NackFrame) else frame.visibility_timeout
            message_id = split_receipt(frame.receipt)
            deadline = await self.handle.ask(ChangeVisibility(self.queue, message_id, frame.receipt, seconds))
            if isinstance(frame, NackFrame):
                self.held.pop(frame.receipt, None)  # no longer this socket's: it comes back after the delay
            answer = {"op": frame.op + "ed", "receipt": frame.receipt, "lease_expires_at": deadline}
            self.send(answer | _echo(frame.ref))
        elif isinstance(frame, SendFrame):
            ids = await self.handle.ask(Send(self.queue, self.entries(frame.messages)))
            self.send({"op": "sent", "ids": ids, "ref": frame.ref})  # with its ref always, null if none
        elif isinstance(frame, Unsubscribe):
            self.send({"op": "unsubscribed", "released": await self.unsubscribe()} | _echo(frame.ref))

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
        to_trio, now = self.handle.clock.to_trio, trio.current_time()
        for receipt, (_, deadline) in list(self.held.items()):
            # In trio time, as the deadline returned: waking at that deadline always finds the lease ended.
            if to_trio(deadline) <= now:
                del self.held[receipt]
        return min((to_trio(deadline) for _, deadline in self.held.values()), default=math.inf)

    async def _return_unsent(self, leases: list[Lease]) -> None:
        """Give back leases whose frame was never written, as if never delivered (their receive counts undone)."""
        if not leases:
            return
        for lease in leases:
            self.held.pop(lease.receipt, None)
        with contextlib.suppress(WonderQError):  # the queue is gone meanwhile: nothing to give back
            await self.handle.ask(ReturnUndelivered(self.queue, leases))
        self.wake()

    async def consume(self) -> None:
        """Deliver messages while the window and the send buffer have room: long polls of at most MAX_WAIT
        seconds, over and over. A lease counts against the window until it is settled here, its deadline passes,
        or its frame is dropped unsent. Returns when the server starts shutting down (long polls then answer at
        once: polling on would only spin)."""
        while not self.handle.statistics().stopping:
            now = trio.current_time()
            await self._return_unsent(self.buffer.drop_stale(now))
            next_end = self._forget_ended_leases()
            next_drop = self.buffer.next_drop()
            room = self.credit - len(self.held)
            if room <= 0 or self.buffer.full or self.buffer.stalled:
                # Wait for room (a settle, a lease's end, more credit, a frame written), for a frame to drop,
                # or look again for a shutdown.
                with trio.move_on_at(min(next_end, next_drop, now + STOP_CHECK)):
                    await self.changed.wait()
                continue
            try:
                await self._receive(room, wait=min(MAX_WAIT, max(DROP_SLACK, next_drop - now)))
            except WonderQError as error:  # no such queue (yet), a bad visibility timeout, ...: say so, stop
                self.credit = 0
                self.send_error(error.code, error.message)
            except Exception:  # a bug: say so, stop delivering, keep the socket (its other frames still work)
                log.exception("unexpected error delivering on the stream of queue %s", self.queue)
                self.credit = 0
                self.send_error("internal_error", "internal error")

    async def _receive(self, room: int, wait: float) -> None:
        """One long poll of up to `wait` seconds (cut short when a frame is due to be dropped); its leases go
        into the send buffer as one frame."""
        leases: list[Lease] = []
        try:
            with trio.CancelScope() as self.receiving:  # cancelled by an unsubscribe
                leases = await self.handle.ask(
                    Receive(
                        self.queue,
                        max_messages=min(room, self.max_batch),
                        visibility_timeout=self.visibility_timeout,
                        wait=wait,
                        consumer=self.consumer,
                    )
                )
        finally:
            self.receiving = None
        if not leases:
            return
        for lease in leases:
            self.held[lease.receipt] = (lease.id, lease.lease_expires_at)
        now = trio.current_time()
        first_end = self.handle.clock.to_trio(min(lease.lease_expires_at for lease in leases))
        drop_at = now + min(MAX_UNSENT, (first_end - now) / 2)
        self.send({"op": "messages", "messages": [self.render(lease) for lease in leases]}, leases, drop_at)

    async def release_all(self) -> None:
        """Hand every lease this socket holds back to the queue at once: those in frames never written as never
        delivered, the others released (the socket is closing, or its client unsubscribes)."""
        await self._return_unsent(self.buffer.drop_all())
        for receipt, (message_id, _) in list(self.held.items()):
            with contextlib.suppress(WonderQError):  # acked, expired or purged meanwhile: nothing to give back
                await self.handle.ask(ChangeVisibility(self.queue, message_id, receipt, 0))
        self.held.clear()

    async def _consume_until_shutdown(self, socket_scope: trio.CancelScope) -> None:
        """Consume; once the server shuts down, end the whole socket (its leases are then handed back)."""
        await self.consume()
        socket_scope.cancel()


def _echo(ref: Ref | None) -> dict[str, Ref]:
    """The `ref` field of an answer: only when the frame had one."""
    return {} if ref is None else {"ref": ref}


def install(app: QuartTrio, handle: ActorHandle, settings: Settings, entries: Entries, render: Render) -> None:
    """Serve the streaming path on `app`. `entries` turns batch entries into messages, `render` shows a lease,
    both as API v1 does."""
    open_streams = 0  # sockets accepted and not yet done, against settings.max_streams

    @needs(Permission.RECEIVE, Permission.SEND)
    @openapi.operation(
        summary="The streaming path (WebSocket): push delivery with a prefetch window, acks, streamed sends",
        tag="stream",
        errors=(400, 503),
    )
    async def stream(name: str) -> None:
        nonlocal open_streams
        check_queue_name(name)
        if open_streams >= settings.max_streams:  # refused before the upgrade: a plain HTTP 503
            raise TooManyStreams(f"{settings.max_streams} streams are open, the most this server takes (MAX_STREAMS)")
        open_streams += 1
        try:
            principal = current_principal()  # the gate let it upgrade: it may receive or send here, or both
            connection = Connection(
                handle,
                name,
                entries,
                render,
                settings,
                may_send=principal.allows(Permission.SEND, name),
                may_receive=principal.allows(Permission.RECEIVE, name),
            )
            await websocket.accept()
            await connection.run(websocket.receive, _write_text)
        finally:
            open_streams -= 1

    app.add_websocket("/v1/queues/<name>/stream", "stream", stream)


async def _write_text(data: bytes) -> None:
    await websocket.send(data.decode())
