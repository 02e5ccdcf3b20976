"""WonderQ's streaming path as a broker of scripts/bench's full cycle: one WebSocket per producer and per consumer
at `/v1/queues/<name>/stream` (docs/api.md, "The streaming path"), from httpx-ws's synchronous client, one
thread each, like the suite's other brokers.

This module owns the two loops and their frames. A producer streams `send` frames of `batch` messages (a send
frame carries a list of batch entries, up to the server's MAX_BATCH) without waiting for each `sent`: it keeps
up to `window` messages unconfirmed, and checks every `sent` against the `ref` it expects, in order. A consumer
subscribes with a credit (its prefetch window), acknowledges what is pushed with `ack` frames of up to `batch`
receipts (an ack frame carries a list), also without waiting for each `acked`, and is done when `acked` frames
have confirmed every message of its share (each message counted once; a failed ack is an error).
"""

from __future__ import annotations

import queue as stdlib_queue
from collections import deque
from contextlib import AbstractContextManager
from typing import Any

import httpx
import orjson
from bench_brokers import LONG_POLL, STALL, Ready, Timing, WonderQ, payload
from httpx_ws import WebSocketSession, connect_ws

MAX_FRAME_BYTES = 64 * 1024 * 1024  # the largest frame taken from the server (a full window of messages)
QUEUE_FRAMES = 100_000  # frames httpx-ws may hold unread (its default, 512, stalls its reader thread)
CREDIT = 100  # the consumer's prefetch window, in messages (raised to the batch size when that is larger)
WINDOW = 1000  # the most messages a producer has sent and not yet seen confirmed by `sent`


class WonderQStream(WonderQ):
    """WonderQ's full cycle over the streaming path (queues prepared over HTTP, as `WonderQ` does). `batch` is
    the messages per send frame and the receipts per ack frame; the consumer's credit is max(credit, batch) and
    the producer's window max(window, batch)."""

    def __init__(self, url: str, credit: int = CREDIT, window: int = WINDOW) -> None:
        super().__init__(url)
        self.credit = credit  # messages
        self.window = window  # messages

    def producer(self, queue: str, first: int, count: int, batch: int, ready: Ready) -> None:
        window = max(self.window, batch)
        with (
            self._client() as http,
            _connect(http, queue) as socket,
        ):
            ready()
            pending: deque[tuple[int, int]] = deque()  # (ref, messages) of the send frames not yet confirmed
            unconfirmed = 0  # messages
            sent = 0
            ref = 0
            while sent < count or pending:
                if sent < count and unconfirmed + min(batch, count - sent) <= window:
                    size = min(batch, count - sent)
                    entries = [{"body": payload(first + sent + n), "content_type": "text/plain"} for n in range(size)]
                    ref += 1
                    socket.send_text(orjson.dumps({"op": "send", "ref": ref, "messages": entries}).decode())
                    pending.append((ref, size))
                    unconfirmed += size
                    sent += size
                    continue
                frame = _frame(socket.receive_text(timeout=STALL), queue)
                if frame.get("op") != "sent":
                    continue
                expected, size = pending.popleft()
                if frame.get("ref") != expected or len(frame["ids"]) != size:
                    raise RuntimeError(f"stream {queue}: sent {frame.get('ref')!r}, expected ref {expected}")
                unconfirmed -= size

    def consumer(self, queue: str, count: int, batch: int, ready: Ready) -> None:
        credit = max(self.credit, batch)
        with (
            self._client() as http,
            _connect(http, queue) as socket,
        ):
            ready()
            socket.send_text(orjson.dumps({"op": "subscribe", "credit": credit, "visibility_timeout": 300}).decode())
            delivered = acked = 0
            waited = 0.0  # seconds without a frame
            while acked < count:
                try:
                    text = socket.receive_text(timeout=LONG_POLL)
                except (stdlib_queue.Empty, TimeoutError):
                    waited += LONG_POLL
                    if waited > STALL:
                        raise RuntimeError(f"stream {queue}: nothing after {acked} of {count} acked") from None
                    continue
                waited = 0.0
                frame = _frame(text, queue)
                if frame.get("op") == "messages":
                    receipts = [message["receipt"] for message in frame["messages"]]
                    delivered += len(receipts)
                    for start in range(0, len(receipts), batch):
                        chunk = receipts[start : start + batch]
                        socket.send_text(orjson.dumps({"op": "ack", "receipts": chunk}).decode())
                elif frame.get("op") == "acked":
                    if frame["failed"]:
                        raise RuntimeError(f"stream {queue}: acks failed: {frame['failed'][:3]}")
                    acked += len(frame["acked"])
            if delivered != count:
                raise RuntimeError(f"stream {queue}: {delivered} delivered for {count} messages")

    def single(self, queue: str, requests: int) -> dict[str, Timing]:
        raise NotImplementedError("the streaming path runs in the full cycle only")


def _connect(http: httpx.Client, queue: str) -> AbstractContextManager[WebSocketSession]:
    """A socket on `queue`'s stream. No keep-alive pings: httpx-ws's reader thread answers them only when its
    frame queue has room, and a busy benchmark would time them out (and lose the socket) after 20 s."""
    return connect_ws(
        f"/v1/queues/{queue}/stream",
        http,
        max_message_size_bytes=MAX_FRAME_BYTES,
        queue_size=QUEUE_FRAMES,
        keepalive_ping_interval_seconds=None,
    )


def _frame(text: str, queue: str) -> dict[str, Any]:
    frame: dict[str, Any] = orjson.loads(text)
    if frame.get("op") == "error":
        raise RuntimeError(f"stream {queue}: error frame {frame.get('code')}: {frame.get('message')}")
    return frame
