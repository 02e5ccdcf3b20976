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

from tests.test_http import app_settings, check, peek, put_queue, queue_path, receive, send_texts, stats, wall_now
from wonderq import stream

__all__ = ["app_settings"]  # the fixture, with overrides by indirect parametrization

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


async def refusal(client: Client, path: str = PATH) -> WebsocketResponseError:
    """The HTTP reply that refuses the upgrade to a WebSocket at `path`."""
    refusals: list[WebsocketResponseError] = []
    try:
        async with client.websocket(path) as socket:
            await socket.receive()
    except* WebsocketResponseError as group:
        refusals += [error for error in group.exceptions if isinstance(error, WebsocketResponseError)]
    (refused,) = refusals
    return refused


@pytest.mark.parametrize("app_settings", [{"max_streams": 2}], indirect=True)
async def test_a_stream_beyond_max_streams_is_refused_with_503_and_retry_after(
    client: Client, autojump_clock: MockClock
) -> None:
    await put_queue(client)
    async with client.websocket(PATH) as first, client.websocket(PATH) as second:
        for socket in (first, second):  # both accepted and served
            await ask(socket, op="send", messages=[{"body": 1}])
            assert (await frame(socket))["op"] == "sent"
        refused = await refusal(client)
        body = json.loads(await refused.response.get_data())
        assert (refused.response.status_code, body["error"]["code"]) == (503, "too_many_streams")
        assert refused.response.headers["Retry-After"] == "1"
        assert "MAX_STREAMS" in body["error"]["message"]
    await trio.sleep(0.1)
    async with client.websocket(PATH) as again:  # closed ones free their place
        await ask(again, op="send", messages=[{"body": 1}])
        assert (await frame(again))["op"] == "sent"


@pytest.mark.parametrize("app_settings", [{"max_streams": 0}], indirect=True)
async def test_max_streams_0_turns_the_streaming_path_off(client: Client, autojump_clock: MockClock) -> None:
    assert (await refusal(client)).response.status_code == 503
    await check(await client.get("/health"), 200)


@pytest.mark.parametrize(
    ("may_send", "may_receive", "allowed"),
    [(False, True, {"subscribe", "ack"}), (True, False, {"send"})],
)
async def test_a_frame_the_stream_may_not_make_is_forbidden(
    client: Client,
    autojump_clock: MockClock,
    monkeypatch: pytest.MonkeyPatch,
    may_send: bool,
    may_receive: bool,
    allowed: set[str],
) -> None:
    made = stream.Connection

    def limited(*args: Any, **kwargs: Any) -> stream.Connection:
        return made(*args, **{**kwargs, "may_send": may_send, "may_receive": may_receive})

    monkeypatch.setattr(stream, "Connection", limited)
    await put_queue(client)
    frames: dict[str, dict[str, Any]] = {
        "send": {"op": "send", "ref": "r", "messages": [{"body": 1}]},
        "subscribe": {"op": "subscribe", "credit": 1, "ref": "r"},
        "ack": {"op": "ack", "receipts": ["0000000000000001.t"], "ref": "r"},
    }
    async with client.websocket(PATH) as socket:
        for op, body in frames.items():
            await ask(socket, **body)
            if op in allowed and op != "subscribe":  # (a subscribe has no answer)
                answer = await frame(socket)
                assert (answer["op"], answer["ref"]) == ({"send": "sent", "ack": "acked"}[op], "r")
            elif op not in allowed:
                error = await frame(socket)
                assert (error["op"], error["code"], error["ref"]) == ("error", "forbidden", "r"), error
    assert (await stats(client))["sent"] == (1 if may_send else 0)


@pytest.mark.parametrize(
    ("data", "code", "ref"),
    [
        ('{"op": "send", "ref": "s1", "messages": []}', "invalid_parameter", "s1"),
        ('{"op": "send", "ref": 7, "messages": [{"body_base64": "\u00e9"}]}', "invalid_body", 7),
        ('{"op": "fly", "ref": -9223372036854775808}', "invalid_parameter", -(2**63)),
        ('{"op": "send", "ref": 9223372036854775808, "messages": [{"body": 1}]}', "invalid_parameter", None),
        ('{"op": "send", "ref": true, "messages": [{"body": 1}]}', "invalid_parameter", None),
        ('{"op": "ack", "ref": "a", "receipts": "r"}', "invalid_parameter", "a"),
        ('{"op": "subscribe", "credit": 1, "visibility_timeout": 0}', "invalid_parameter", None),
        ('{"op": "subscribe", "credit": 1, "consumer": "' + "c" * 201 + '"}', "invalid_parameter", None),
        ('{"op": "nack", "receipt": "0000000000000001.t", "delay": NaN}', "invalid_body", None),
        ('{"op": "extend", "receipt": "0000000000000001.t", "visibility_timeout": 1e400}', "invalid_parameter", None),
        ("[" * 300 + "]" * 300, "invalid_body", None),
        ('"\\ud800"', "invalid_body", None),
    ],
)
async def test_an_error_frame_echoes_the_ref_of_the_frame_when_it_has_a_good_one(
    client: Client, autojump_clock: MockClock, data: str, code: str, ref: object
) -> None:
    await put_queue(client)
    async with client.websocket(PATH) as socket:
        await socket.send(data)
        error = await frame(socket)
        assert (error["op"], error["code"], error.get("ref")) == ("error", code, ref), error
        await ask(socket, op="send", ref=2**63 - 1, messages=[{"body": 1}])  # the largest ref is echoed exactly
        assert (await frame(socket))["ref"] == 2**63 - 1
    assert (await stats(client))["sent"] == 1


async def test_a_binary_frame_is_read_as_json_text(client: Client, autojump_clock: MockClock) -> None:
    await put_queue(client)
    async with client.websocket(PATH) as socket:
        await socket.send(b'{"op": "send", "messages": [{"body": 1}]}')
        assert (await frame(socket))["op"] == "sent"
        await socket.send(b"\xff\xfe")
        assert (await frame(socket))["code"] == "invalid_body"


@pytest.mark.parametrize("app_settings", [{"max_request_bytes": 2048}], indirect=True)
async def test_a_frame_over_max_request_bytes_is_refused_and_the_socket_stays(
    client: Client, autojump_clock: MockClock
) -> None:
    await put_queue(client)
    entry = '{"body": "' + "\u00e9" * 511 + '", "content_type": "text/plain"}'  # 1,022 bytes of UTF-8 text
    fits = '{"op": "send", "messages": [' + entry + "]}"
    over = '{"op": "send", "messages": [' + entry + ", " + entry + "]}"  # 1,100 characters, 2,144 bytes
    async with client.websocket(PATH) as socket:
        await socket.send(over)
        error = await frame(socket)
        assert (error["op"], error["code"]) == ("error", "request_too_large"), error
        await socket.send(over.encode())
        assert (await frame(socket))["code"] == "request_too_large"
        await socket.send(fits)
        assert (await frame(socket))["op"] == "sent"


async def test_an_unexpected_error_is_logged_and_answered_and_the_socket_stays(
    client: Client, autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await put_queue(client)
    served = stream.Connection.handle_frame

    async def flaky(self: stream.Connection, frame: stream._Frame) -> None:
        if isinstance(frame, stream.SendFrame) and frame.ref == "boom":
            raise RuntimeError("a bug")
        await served(self, frame)

    monkeypatch.setattr(stream.Connection, "handle_frame", flaky)
    async with client.websocket(PATH) as socket:
        await ask(socket, op="send", ref="boom", messages=[{"body": 1}])
        error = await frame(socket)
        assert error == {"op": "error", "code": "internal_error", "message": "internal error", "ref": "boom"}
        await ask(socket, op="send", ref="fine", messages=[{"body": 1}])
        assert (await frame(socket))["ref"] == "fine"
    (record,) = [r for r in caplog.records if r.name == "wonderq.stream"]
    assert record.exc_info is not None
    assert "a bug" in str(record.exc_info[1])


async def test_a_bug_before_the_upgrade_is_a_logged_500_not_a_second_error(
    client: Client, autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> stream.Connection:
        raise RuntimeError("a bug")

    monkeypatch.setattr(stream, "Connection", broken)
    refused = await refusal(client)
    assert refused.response.status_code == 500
    assert any(
        record.getMessage().startswith(f"unexpected error on GET {PATH}") and record.exc_info
        for record in caplog.records
    )
