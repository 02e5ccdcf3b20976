"""The streaming path: one WebSocket per client, pushed deliveries up to a prefetch window, acks, nacks,
extensions and streamed sends; leases go back at once when the socket closes. In-process, on trio's virtual
clock."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from quart.testing.connections import WebsocketResponseError
from quart.typing import TestClientProtocol as Client
from quart.typing import TestWebsocketConnectionProtocol as Socket
from trio.testing import MockClock

from tests.test_http import check, peek, put_queue, queue_path, receive, send_texts, stats, wall_now

PATH = "/v1/queues/q/stream"


async def frame(socket: Socket) -> dict[str, Any]:
    """The next frame from the server (failing after 30 virtual seconds of silence)."""
    with trio.fail_after(30):
        data = await socket.receive()
    decoded: dict[str, Any] = json.loads(data)
    return decoded


async def ask(socket: Socket, **body: Any) -> None:
    await socket.send(json.dumps(body))


async def messages(socket: Socket, count: int) -> list[dict[str, Any]]:
    """The next `count` deliveries (from one or more `messages` frames)."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        reply = await frame(socket)
        assert reply["op"] == "messages", reply
        got += reply["messages"]
    return got


async def test_deliveries_stay_within_the_window_and_an_ack_makes_room(
    client: Client, autojump_clock: MockClock
) -> None:
    ids = await send_texts(client, 3)
    async with client.websocket(PATH) as socket:
        await ask(socket, op="subscribe", credit=2, visibility_timeout=30, consumer="streamer")
        first = await messages(socket, 2)
        assert [m["id"] for m in first] == ids[:2]
        assert first[0]["consumer"] == "streamer"
        assert first[0]["lease_expires_at"] == pytest.approx(wall_now() + 30)
        with trio.move_on_after(5):  # the window is full: nothing more comes
            await frame(socket)
            pytest.fail("a third message came beyond the window")
        await ask(socket, op="ack", receipts=[first[0]["receipt"]])
        assert await frame(socket) == {"op": "acked", "acked": [first[0]["receipt"]], "failed": []}
        assert [m["id"] for m in await messages(socket, 1)] == ids[2:]


async def test_a_message_sent_later_is_pushed_at_once(client: Client, autojump_clock: MockClock) -> None:
    await put_queue(client)
    async with client.websocket(PATH) as socket:
        await ask(socket, op="subscribe", credit=10)
        await trio.sleep(50)  # longer than one long poll: the socket keeps polling
        started = trio.current_time()
        (message_id,) = await send_texts(client, 1)
        (pushed,) = await messages(socket, 1)
        assert pushed["id"] == message_id
        assert trio.current_time() - started < 1


async def test_nack_with_a_delay_and_extend(client: Client, autojump_clock: MockClock) -> None:
    (message_id,) = await send_texts(client, 1)
    async with client.websocket(PATH) as socket:
        await ask(socket, op="subscribe", credit=1, visibility_timeout=10)
        (delivered,) = await messages(socket, 1)
        await ask(socket, op="extend", receipt=delivered["receipt"], visibility_timeout=100)
        extended = await frame(socket)
        assert (extended["op"], extended["lease_expires_at"]) == ("extended", pytest.approx(wall_now() + 100))
        await ask(socket, op="nack", receipt=delivered["receipt"], delay=5)
        nacked = await frame(socket)
        assert (nacked["op"], nacked["receipt"]) == ("nacked", delivered["receipt"])
        started = trio.current_time()
        (again,) = await messages(socket, 1)  # the window has room again: it comes back after the delay
        assert (again["id"], again["receive_count"]) == (message_id, 2)
        assert trio.current_time() - started == pytest.approx(5, abs=0.2)


async def test_an_expired_lease_frees_the_window(client: Client, autojump_clock: MockClock) -> None:
    (message_id,) = await send_texts(client, 1)
    async with client.websocket(PATH) as socket:
        await ask(socket, op="subscribe", credit=1, visibility_timeout=10)
        await messages(socket, 1)
        (again,) = await messages(socket, 1)  # never acked: redelivered once its lease ends
        assert (again["id"], again["receive_count"]) == (message_id, 2)


async def test_closing_the_socket_gives_its_leases_back_at_once(client: Client, autojump_clock: MockClock) -> None:
    await send_texts(client, 2)
    async with client.websocket(PATH) as socket:
        await ask(socket, op="subscribe", credit=2, visibility_timeout=3600)
        held = await messages(socket, 2)
    await trio.sleep(0.1)
    again = await receive(client, max=10)
    assert [(m["id"], m["receive_count"]) for m in again] == [(m["id"], 2) for m in held]


async def test_unsubscribe_gives_every_lease_back_before_it_answers(client: Client, autojump_clock: MockClock) -> None:
    ids = await send_texts(client, 5)
    async with client.websocket(PATH) as socket:
        await ask(socket, op="subscribe", credit=3, visibility_timeout=3600)
        await messages(socket, 3)
        await ask(socket, op="unsubscribe")
        assert await frame(socket) == {"op": "unsubscribed", "released": 3}
        assert (await stats(client))["ready"] == 5  # at the reply, with no wait: the queue has them back
        await send_texts(client, 1)
        with trio.move_on_after(30):  # no more pushes after an unsubscribe
            await frame(socket)
            pytest.fail("a message was pushed after the unsubscribe")
        await ask(socket, op="subscribe", credit=10)  # subscribing again starts over
        assert [m["id"] for m in await messages(socket, 6)][:5] == ids


async def test_unsubscribe_while_a_long_poll_waits_leaves_the_next_message_in_the_queue(
    client: Client, autojump_clock: MockClock
) -> None:
    await put_queue(client)
    async with client.websocket(PATH) as socket:
        await ask(socket, op="subscribe", credit=10)
        await trio.sleep(1)  # the socket's long poll is parked in the actor
        await ask(socket, op="unsubscribe")
        assert await frame(socket) == {"op": "unsubscribed", "released": 0}
        await send_texts(client, 1)
        await trio.sleep(1)
        assert ((await stats(client))["ready"], (await stats(client))["leased"]) == (1, 0)


async def test_streamed_sends_get_their_ids_in_order(client: Client, autojump_clock: MockClock) -> None:
    async with client.websocket(PATH) as socket:
        await ask(
            socket, op="send", ref="a", messages=[{"body": "one", "content_type": "text/plain"}, {"body": {"n": 2}}]
        )
        await ask(socket, op="send", ref=7, messages=[{"body": "three", "content_type": "text/plain", "group": "g"}])
        first, second = await frame(socket), await frame(socket)
    assert (first["op"], first["ref"], len(first["ids"])) == ("sent", "a", 2)
    assert (second["op"], second["ref"], len(second["ids"])) == ("sent", 7, 1)
    views = (await peek(client))["messages"]
    assert [v["id"] for v in views] == first["ids"] + second["ids"]
    assert [v["body"] for v in views] == ["one", {"n": 2}, "three"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("not json", "invalid_body"),
        ("[1]", "invalid_parameter"),
        ('{"op": "fly"}', "invalid_parameter"),
        ('{"op": "subscribe", "credit": 1001}', "invalid_parameter"),
        ('{"op": "subscribe", "credit": "2"}', "invalid_parameter"),
        ('{"op": "ack", "receipts": "r"}', "invalid_parameter"),
        ('{"op": "send", "messages": [{"body": ""}, {"nope": 1}]}', "invalid_parameter"),
        ('{"op": "send", "messages": []}', "invalid_parameter"),
        ('{"op": "extend", "receipt": "junk", "visibility_timeout": 5}', "invalid_receipt"),
        ('{"op": "nack", "receipt": "0000000000000001.t", "delay": 1}', "message_not_found"),
    ],
)
async def test_a_bad_frame_gets_an_error_frame_and_the_socket_stays(
    client: Client, autojump_clock: MockClock, data: str, code: str
) -> None:
    await put_queue(client)
    async with client.websocket(PATH) as socket:
        await socket.send(data)
        error = await frame(socket)
        assert (error["op"], error["code"]) == ("error", code), error
        assert error["message"]
        await ask(socket, op="send", messages=[{"body": 1}])
        assert (await frame(socket))["op"] == "sent"


async def test_an_acked_receipt_from_elsewhere_is_reported_failed(client: Client, autojump_clock: MockClock) -> None:
    await send_texts(client, 1)
    async with client.websocket(PATH) as socket:
        await ask(socket, op="ack", receipts=["0000000000000001.t"])
        reply = await frame(socket)
    assert (reply["op"], reply["acked"], [f["code"] for f in reply["failed"]]) == ("acked", [], ["message_not_found"])


async def test_a_bad_queue_name_is_refused(client: Client, autojump_clock: MockClock) -> None:
    refusals: list[WebsocketResponseError] = []
    try:
        async with client.websocket(queue_path("bad name", "/stream")) as socket:
            await socket.receive()
    except* WebsocketResponseError as group:
        refusals += [error for error in group.exceptions if isinstance(error, WebsocketResponseError)]
    (refused,) = refusals  # the upgrade is refused with API v1's error reply
    body = json.loads(await refused.response.get_data())
    assert (refused.response.status_code, body["error"]["code"]) == (400, "invalid_queue_name")
    await check(await client.get("/health"), 200)


async def test_subscribing_to_a_missing_queue_is_an_error_and_a_new_subscribe_works(
    client: Client, autojump_clock: MockClock
) -> None:
    async with client.websocket(PATH) as socket:
        await ask(socket, op="subscribe", credit=5)
        error = await frame(socket)
        assert (error["op"], error["code"]) == ("error", "queue_not_found")
        (message_id,) = await send_texts(client, 1)
        await ask(socket, op="subscribe", credit=5)
        assert [m["id"] for m in await messages(socket, 1)] == [message_id]
