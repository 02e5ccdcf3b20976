"""The streaming path under a consumer that does not read: the send buffer (pure, with explicit times), then
sockets in process on trio's virtual clock. The test client buffers 10 frames a socket (quart-trio's channel,
like a kernel's socket buffer): a client that never reads stalls the server's writer behind them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import trio
from quart.typing import TestClientProtocol as Client
from quart.typing import TestWebsocketConnectionProtocol as Socket
from trio.testing import MockClock

from tests.helpers import EPOCH
from tests.test_http import app_settings, check, peek, put_queue, queue_path, stats
from tests.test_stream import PATH, ask, frame
from wonderq import stream
from wonderq.model import Lease, Payload
from wonderq.stream import SendBuffer

__all__ = ["app_settings"]  # the fixture, with overrides by indirect parametrization

LIMIT = 16 * 1024  # bytes: the send buffer of the in-process tests
HANDED = 11  # frames a socket that never reads takes: 10 in the test client's channel, 1 being written
BATCH = 10  # messages per frame: the test settings' max_batch
LEASE = 30.0  # seconds: the queue's visibility timeout
BODY = "x" * 200  # a message of about 600 bytes in a frame
FRAME = BATCH * 1024  # bytes: more than a frame of BATCH such messages


def lease(receipt: str) -> Lease:
    return Lease(receipt.split(".")[0], receipt, Payload(b"m", "text/plain"), 0, 1, EPOCH, EPOCH, EPOCH + 30, None)


# ---- the send buffer, pure --------------------------------------------------------------------------------------


def test_the_buffer_is_full_at_its_limit_and_a_write_makes_room() -> None:
    buffer = SendBuffer(100)
    buffer.put(b"r" * 99)
    assert (buffer.bytes, buffer.full) == (99, False)
    buffer.put(b"r")
    assert (buffer.bytes, buffer.full) == (100, True)
    data = buffer.next_frame()
    assert (data, buffer.bytes) == (b"r" * 99, 100)  # being written: still held until it is written
    buffer.written(99)
    assert (buffer.bytes, buffer.full) == (1, False)


def test_frames_are_written_in_order_and_replies_are_never_dropped() -> None:
    buffer = SendBuffer(1000)
    buffer.put(b"reply")
    buffer.put(b"messages", [lease("a.1")], drop_at=10.0)
    assert buffer.drop_stale(math.inf) == [lease("a.1")]
    assert (buffer.next_frame(), buffer.next_frame(), buffer.bytes) == (b"reply", None, 5)


def test_a_frame_of_messages_is_dropped_at_its_time_not_before() -> None:
    buffer = SendBuffer(1000)
    buffer.put(b"first", [lease("a.1"), lease("b.1")], drop_at=10.0)
    buffer.put(b"second", [lease("c.1")], drop_at=12.0)
    assert buffer.next_drop() == 10.0
    assert buffer.drop_stale(9.99) == []
    assert not buffer.stalled
    assert buffer.drop_stale(10.0) == [lease("a.1"), lease("b.1")]
    assert (buffer.bytes, buffer.stalled, buffer.next_drop()) == (6, True, 12.0)
    assert buffer.next_frame() == b"second"  # the dropped one is skipped
    assert (buffer.drop_stale(math.inf), buffer.next_drop()) == ([], math.inf)  # written: no longer droppable
    buffer.written(6)
    assert (buffer.bytes, buffer.stalled) == (0, False)  # the writer made progress


def test_drop_all_gives_every_unsent_lease_back() -> None:
    buffer = SendBuffer(1000)
    buffer.put(b"m1", [lease("a.1")], drop_at=10.0)
    buffer.put(b"m2", [lease("b.1")], drop_at=11.0)
    buffer.put(b"reply")
    assert buffer.next_frame() == b"m1"
    assert buffer.drop_all() == [lease("b.1")]
    assert not buffer.stalled  # not a stuck writer: the client unsubscribed or went
    assert (buffer.bytes, buffer.next_frame()) == (2 + 5, b"reply")


# ---- a socket that never reads, in process ----------------------------------------------------------------------


class PeakBuffer(SendBuffer):
    """A send buffer that remembers the most bytes it held."""

    made: list[PeakBuffer]

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.peak = 0
        self.made.append(self)

    def put(self, data: bytes, leases: Sequence[Lease] = (), drop_at: float = math.inf) -> None:
        super().put(data, leases, drop_at)
        self.peak = max(self.peak, self.bytes)


@pytest.fixture
def buffers(monkeypatch: pytest.MonkeyPatch) -> list[PeakBuffer]:
    """Every send buffer the server makes from now on."""
    made: list[PeakBuffer] = []
    monkeypatch.setattr(PeakBuffer, "made", made, raising=False)
    monkeypatch.setattr(stream, "SendBuffer", PeakBuffer)
    return made


async def queue_with_dead_letters(client: Client, count: int) -> None:
    """Queue q (max_receives 3, LEASE-second leases) with `count` messages, and its dead-letter queue dlq."""
    await put_queue(client, "dlq")
    await put_queue(client, "q", max_receives=3, dead_letter_queue="dlq", visibility_timeout=LEASE)
    for start in range(0, count, BATCH):
        entries = [{"body": BODY, "content_type": "text/plain"} for _ in range(min(BATCH, count - start))]
        await check(await client.post(queue_path("q", "/messages/batch"), json={"messages": entries}), 201)


async def drain(client: Client) -> list[Any]:
    """Receive and ack everything ready in q (API v1); returns the leases."""
    got: list[Any] = []
    while True:
        reply = await check(await client.post(queue_path("q", "/receive"), json={"max": BATCH}), 200)
        if not reply["messages"]:
            return got
        got += reply["messages"]
        receipts = [m["receipt"] for m in reply["messages"]]
        acked = await check(await client.post(queue_path("q", "/ack"), json={"receipts": receipts}), 200)
        assert acked["failed"] == []


async def frames_until_quiet(socket: Socket) -> list[dict[str, Any]]:
    """Read frames until none comes for 1 virtual second."""
    got: list[dict[str, Any]] = []
    while True:
        with trio.move_on_after(1) as quiet:
            got.append(await frame(socket))
        if quiet.cancelled_caught:
            return got


@pytest.mark.parametrize("app_settings", [{"stream_buffer_bytes": LIMIT}], indirect=True)
async def test_a_consumer_that_never_reads_holds_a_bounded_buffer_and_dead_letters_nothing(
    client: Client, autojump_clock: MockClock, buffers: list[PeakBuffer]
) -> None:
    await queue_with_dead_letters(client, 300)
    async with client.websocket(PATH) as socket:
        await ask(socket, op="subscribe", credit=1000)  # and never reads
        await trio.sleep(1)
        (buffer,) = buffers
        assert buffer.full
        unsent = (await stats(client))["leased"] - HANDED * BATCH
        assert 0 < unsent < 300 - HANDED * BATCH  # receiving stopped at the bound: the rest stays ready
        assert LIMIT <= buffer.peak < LIMIT + FRAME  # at most one frame over the bound

        await trio.sleep(LEASE / 2)  # halfway through their leases, the unsent frames are dropped
        queue = await stats(client)
        assert (queue["leased"], queue["received"]) == (HANDED * BATCH, HANDED * BATCH)  # their receives undone
        assert buffer.bytes < LIMIT

        await trio.sleep(10 * LEASE)  # the stuck socket receives no more: no churn
        queue = await stats(client)
        assert (queue["ready"], queue["received"], queue["dead_lettered"]) == (300, HANDED * BATCH, 0)

        got = await drain(client)  # another consumer gets every message, once
        assert len({m["id"] for m in got}) == len(got) == 300
        counts = sorted(m["receive_count"] for m in got)
        assert counts == [1] * (300 - HANDED * BATCH) + [2] * (HANDED * BATCH)
        assert (await stats(client, "dlq"))["ready"] == 0

        await ask(socket, op="send", ref="still", messages=[{"body": 1}])  # the socket still works
        replies = await frames_until_quiet(socket)
        assert [f["op"] for f in replies[:HANDED]] == ["messages"] * HANDED  # the stale ones it never read
        (sent,) = [f for f in replies[HANDED:] if f["op"] == "sent"]
        assert sent["ref"] == "still"
        (pushed,) = [m for f in replies[HANDED:] if f["op"] == "messages" for m in f["messages"]]
        assert pushed["id"] == sent["ids"][0]  # its writer wrote again: it receives again


@pytest.mark.parametrize("app_settings", [{"stream_buffer_bytes": LIMIT}], indirect=True)
async def test_a_stuck_socket_receives_again_once_its_writer_writes(client: Client, autojump_clock: MockClock) -> None:
    await queue_with_dead_letters(client, 300)
    async with client.websocket(PATH) as socket:
        await ask(socket, op="subscribe", credit=1000, visibility_timeout=3600)
        await trio.sleep(stream.MAX_UNSENT + 1)  # the unsent frames are dropped (after MAX_UNSENT: long leases)
        before = await stats(client)
        assert before["leased"] == before["received"] == HANDED * BATCH
        got = await frames_until_quiet(socket)  # reading lets the writer write: receiving goes on
        delivered = [m for f in got for m in f["messages"]]
        assert len({m["id"] for m in delivered}) == len(delivered) == 300
        assert {m["receive_count"] for m in delivered} == {1}  # those dropped unsent count as never delivered
        assert (await stats(client))["leased"] == 300


@pytest.mark.parametrize("app_settings", [{"stream_buffer_bytes": LIMIT}], indirect=True)
async def test_a_full_buffer_stops_reading_frames_until_it_has_room(client: Client, autojump_clock: MockClock) -> None:
    await queue_with_dead_letters(client, 300)
    async with client.websocket(PATH) as socket:
        await ask(socket, op="subscribe", credit=1000)
        await trio.sleep(1)
        await ask(socket, op="send", ref=1, messages=[{"body": "late"}])
        await trio.sleep(LEASE / 2 - 2)
        assert (await stats(client))["sent"] == 300  # not read yet: the buffer is full
        await trio.sleep(2)  # the unsent frames are dropped: there is room, the frame is read and served
        assert (await stats(client))["sent"] == 301


async def test_unsubscribe_gives_unsent_frames_back_as_never_delivered(
    client: Client, autojump_clock: MockClock
) -> None:
    await queue_with_dead_letters(client, 300)
    async with client.websocket(PATH) as socket:
        await ask(socket, op="subscribe", credit=1000)
        await trio.sleep(1)
        assert (await stats(client))["leased"] == 300  # 1 MiB by default: all of them, most unsent
        await ask(socket, op="unsubscribe")
        replies = await frames_until_quiet(socket)
    *pushed, unsubscribed = replies
    assert unsubscribed == {"op": "unsubscribed", "released": 300}
    delivered = sum(len(f["messages"]) for f in pushed)  # the frames written before the unsubscribe was served
    assert HANDED * BATCH <= delivered < 300
    queue = await stats(client)
    assert (queue["ready"], queue["released"], queue["received"]) == (300, delivered, delivered)
    views = (await peek(client, limit=1000))["messages"]
    assert sorted(v["receive_count"] for v in views) == [0] * (300 - delivered) + [1] * delivered


async def test_closing_gives_unsent_frames_back_as_never_delivered(client: Client, autojump_clock: MockClock) -> None:
    await queue_with_dead_letters(client, 300)
    async with client.websocket(PATH) as socket:
        await ask(socket, op="subscribe", credit=1000)
        await trio.sleep(1)
    await trio.sleep(0.1)
    views = (await peek(client, limit=1000))["messages"]
    assert [v["state"] for v in views] == ["ready"] * 300
    assert sorted(v["receive_count"] for v in views) == [0] * (300 - HANDED * BATCH) + [1] * (HANDED * BATCH)
