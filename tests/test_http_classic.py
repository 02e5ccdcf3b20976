"""HTTP API tests, part 7: the classic routes (/addMessage, /readMessage, /processMessage), on the queue "default"."""

from __future__ import annotations

import base64

import pytest
import trio
from quart import Response
from quart.typing import TestClientProtocol as Client
from trio.testing import MockClock

from tests.test_http import (
    DEFAULT_VISIBILITY_TIMEOUT,
    TEXT,
    check,
    check_error,
    counts,
    receive_one,
    send,
    snapshot,
    wall_now,
)

DEFAULT = "default"


async def add(client: Client, body: bytes = b"job", content_type: str | None = TEXT) -> str:
    headers = {"Content-Type": content_type} if content_type else {}
    reply = await check(await client.post("/addMessage", data=body, headers=headers), 201)
    assert set(reply) == {"id"}
    return str(reply["id"])


async def read(client: Client, time: str | None = None) -> Response:
    return await client.get("/readMessage", query_string={} if time is None else {"time": time})


async def process(client: Client, message_id: str, receipt: str | None = None) -> Response:
    return await client.patch(
        f"/processMessage/{message_id}", query_string={} if receipt is None else {"receipt": receipt}
    )


async def test_classic_round_trip(client: Client, autojump_clock: MockClock) -> None:
    assert await check(await read(client), 204) is None  # the queue "default" exists from the start, empty
    message_id = await add(client, b"job one")
    lease = await check(await read(client, "2"), 200)
    assert (lease["id"], lease["body"], lease["encoding"], lease["receive_count"]) == (message_id, "job one", "text", 1)
    assert lease["lease_expires_at"] == wall_now() + 2
    assert lease["receipt"].startswith(message_id + ".")
    assert await check(await read(client), 204) is None  # invisible while leased
    await trio.sleep(2)
    again = await check(await read(client, "30"), 200)  # its time ran out: delivered again
    assert (again["id"], again["receive_count"]) == (message_id, 2)
    assert await check(await process(client, message_id), 204) is None
    await trio.sleep(30)
    assert await check(await read(client), 204) is None
    assert (await counts(client, DEFAULT))["acked"] == 1


async def test_read_without_time_uses_the_queue_default(client: Client, autojump_clock: MockClock) -> None:
    await add(client)
    lease = await check(await read(client), 200)
    assert lease["lease_expires_at"] == wall_now() + DEFAULT_VISIBILITY_TIMEOUT


async def test_classic_bodies_follow_the_v1_rules(client: Client, autojump_clock: MockClock) -> None:
    await add(client, b'{"task": 1}', "application/json")
    await add(client, b"\x00\x01", None)
    json_lease = await check(await read(client), 200)
    binary_lease = await check(await read(client), 200)
    assert (json_lease["encoding"], json_lease["body"]) == ("json", {"task": 1})
    assert (binary_lease["encoding"], base64.b64decode(binary_lease["body_base64"])) == ("base64", b"\x00\x01")
    assert binary_lease["content_type"] == "application/octet-stream"


async def test_classic_and_v1_share_the_default_queue(client: Client, autojump_clock: MockClock) -> None:
    from_v1 = await send(client, DEFAULT, "via v1")
    assert (await check(await read(client), 200))["id"] == from_v1
    from_classic = await add(client)
    assert (await receive_one(client, DEFAULT))["id"] == from_classic


@pytest.mark.parametrize("time", ["abc", "", "0", "-1", "43200.5", "nan", "inf"])
async def test_read_with_a_bad_time_is_400(client: Client, autojump_clock: MockClock, time: str) -> None:
    await add(client)
    before = await snapshot(client, DEFAULT)
    await check_error(await read(client, time), 400, "invalid_parameter")
    assert await snapshot(client, DEFAULT) == before


@pytest.mark.parametrize(
    ("body", "status", "code"), [(b"", 400, "empty_message"), (b"x" * 1025, 413, "message_too_large")]
)
async def test_add_rejects_empty_and_oversize_bodies(
    client: Client, autojump_clock: MockClock, body: bytes, status: int, code: str
) -> None:
    await check_error(await client.post("/addMessage", data=body), status, code)
    assert (await counts(client, DEFAULT))["sent"] == 0


async def test_add_accepts_a_body_at_the_limit(client: Client, autojump_clock: MockClock) -> None:
    await add(client, b"x" * 1024)


@pytest.mark.parametrize(
    ("state", "status", "code"),
    [
        ("never read", 409, "lease_lost"),
        ("time ran out", 409, "lease_lost"),
        ("processed", 404, "message_not_found"),
        ("unknown", 404, "message_not_found"),
        ("wrong receipt", 409, "lease_lost"),
    ],
)
async def test_process_needs_a_live_lease(
    client: Client, autojump_clock: MockClock, state: str, status: int, code: str
) -> None:
    message_id = await add(client)
    receipt = None
    if state != "never read":
        lease = await check(await read(client, "5"), 200)
        receipt = lease["receipt"] + "x" if state == "wrong receipt" else None
    if state == "time ran out":
        await trio.sleep(5)
    elif state == "processed":
        await check(await process(client, message_id), 204)
    elif state == "unknown":
        message_id = "0000000000000000"
    before = await snapshot(client, DEFAULT)
    await check_error(await process(client, message_id, receipt), status, code)
    assert await snapshot(client, DEFAULT) == before


async def test_process_with_the_live_receipt(client: Client, autojump_clock: MockClock) -> None:
    message_id = await add(client)
    lease = await check(await read(client), 200)
    assert await check(await process(client, message_id, lease["receipt"]), 204) is None
