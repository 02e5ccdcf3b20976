"""HTTP API tests, part 5: settling leases: ack one (DELETE), ack a batch, and change visibility (PATCH: heartbeat
or release). Every failure must leave the message exactly where it was."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from quart.typing import TestClientProtocol as Client
from trio.testing import MockClock

from tests.test_http import (
    ack,
    change_visibility,
    check,
    check_error,
    counts,
    peek,
    queue_path,
    receive,
    receive_one,
    send,
    send_texts,
    sleep_until_wall,
    snapshot,
    wall_now,
)

MAX_BATCH = 10  # max_batch in the test settings


LIVE = "<the live receipt>"  # placeholder in parametrized requests, filled in by `fill`


def fill(template: Any, receipt: str) -> Any:
    """`template` with every string holding LIVE made with the test's live receipt instead."""
    if isinstance(template, str):
        return template.replace(LIVE, receipt)
    if isinstance(template, list):
        return [fill(item, receipt) for item in template]
    if isinstance(template, dict):
        return {key: fill(value, receipt) for key, value in template.items()}
    return template


async def ack_batch(client: Client, receipts: Any, queue: str = "q") -> Any:
    return await client.post(queue_path(queue, "/ack"), json={"receipts": receipts})


async def state_of(client: Client, message_id: str) -> str | None:
    """The message's state as peek shows it, or None once it is gone."""
    for message in (await peek(client, limit=1000))["messages"]:
        if message["id"] == message_id:
            return str(message["state"])
    return None


# ---- DELETE /v1/queues/{name}/messages/{id}?receipt=R ----------------------------------------------------------


async def test_ack_deletes_the_message_for_good(client: Client, autojump_clock: MockClock) -> None:
    acked, kept = await send_texts(client, 2)
    lease = await receive_one(client, visibility_timeout=5)
    assert await check(await ack(client, acked, lease["receipt"]), 204) is None
    assert await state_of(client, acked) is None
    await trio.sleep(10)  # well past the lease's deadline: it never comes back
    assert [message["id"] for message in await receive(client, max=MAX_BATCH, visibility_timeout=1000)] == [kept]
    await trio.sleep(100)
    assert await receive(client, max=MAX_BATCH) == []
    assert (await counts(client))["acked"] == 1


Setup = Callable[[Client], Awaitable[tuple[str, str | None]]]


async def _missing_receipt(client: Client) -> tuple[str, str | None]:
    return (await receive_one(client))["id"], None


async def _empty_receipt(client: Client) -> tuple[str, str | None]:
    return (await receive_one(client))["id"], ""


async def _unknown_id(client: Client) -> tuple[str, str | None]:
    await receive_one(client)
    return "0000000000000000", "0000000000000000.t1"


async def _already_acked(client: Client) -> tuple[str, str | None]:
    lease = await receive_one(client)
    await check(await ack(client, lease["id"], lease["receipt"]), 204)
    return lease["id"], lease["receipt"]


async def _never_delivered(client: Client) -> tuple[str, str | None]:
    await receive_one(client)
    ready = (await peek(client, state="ready"))["messages"][0]["id"]
    return ready, f"{ready}.t1"


async def _forged_receipt(client: Client) -> tuple[str, str | None]:
    lease = await receive_one(client)
    return lease["id"], lease["receipt"] + "x"


async def _receipt_of_another_message(client: Client) -> tuple[str, str | None]:
    one, other = await receive(client, max=2)
    return one["id"], other["receipt"]


async def _released(client: Client) -> tuple[str, str | None]:
    lease = await receive_one(client)
    patch = {"receipt": lease["receipt"], "visibility_timeout": 0}
    await check(await change_visibility(client, lease["id"], patch), 200)
    return lease["id"], lease["receipt"]


@pytest.mark.parametrize(
    ("setup", "status", "code"),
    [
        (_missing_receipt, 400, "invalid_parameter"),
        (_empty_receipt, 400, "invalid_parameter"),
        (_unknown_id, 404, "message_not_found"),
        (_already_acked, 404, "message_not_found"),
        (_never_delivered, 409, "lease_lost"),
        (_forged_receipt, 409, "lease_lost"),
        (_receipt_of_another_message, 409, "lease_lost"),
        (_released, 409, "lease_lost"),
    ],
)
async def test_failed_ack_changes_nothing(
    client: Client, autojump_clock: MockClock, setup: Setup, status: int, code: str
) -> None:
    await send_texts(client, 3)
    message_id, receipt = await setup(client)
    before = await snapshot(client)
    await check_error(await ack(client, message_id, receipt), status, code)
    assert await snapshot(client) == before


async def test_ack_on_unknown_queue_is_404(client: Client, autojump_clock: MockClock) -> None:
    await check_error(await ack(client, "some-id", "some-id.t1", queue="nope"), 404, "queue_not_found")


@pytest.mark.parametrize(("offset", "works"), [(-0.001, True), (0, False), (0.001, False), (60, False)])
async def test_ack_works_until_the_deadline_and_never_at_it(
    client: Client, autojump_clock: MockClock, offset: float, works: bool
) -> None:
    message_id = await send(client)
    lease = await receive_one(client, visibility_timeout=5)
    await sleep_until_wall(lease["lease_expires_at"] + offset)
    before = await snapshot(client)
    response = await ack(client, message_id, lease["receipt"])
    if works:
        await check(response, 204)
        assert await state_of(client, message_id) is None
        return
    await check_error(response, 409, "lease_lost")
    assert await snapshot(client) == before
    assert before[0]["expired"] == 1
    assert before[1][0]["state"] == "ready"
    again = await receive_one(client)  # the message is delivered again, to whoever asks next
    assert (again["id"], again["receive_count"]) == (message_id, 2)


async def test_receipt_of_an_earlier_delivery_is_dead(client: Client, autojump_clock: MockClock) -> None:
    message_id = await send(client)
    old = await receive_one(client, visibility_timeout=5)
    await trio.sleep(5)
    new = await receive_one(client, visibility_timeout=5)
    assert new["id"] == message_id
    assert new["receipt"] != old["receipt"]
    before = await snapshot(client)
    await check_error(await ack(client, message_id, old["receipt"]), 409, "lease_lost")
    patch = {"receipt": old["receipt"], "visibility_timeout": 100}
    await check_error(await change_visibility(client, message_id, patch), 409, "lease_lost")
    failed = (await check(await ack_batch(client, [old["receipt"]]), 200))["failed"]
    assert [failure["code"] for failure in failed] == ["lease_lost"]
    assert await snapshot(client) == before
    await check(await ack(client, message_id, new["receipt"]), 204)


# ---- POST /v1/queues/{name}/ack -------------------------------------------------------------------------------


async def test_ack_batch_reports_each_receipt(client: Client, autojump_clock: MockClock) -> None:
    first, second, third, ready = await send_texts(client, 4)
    leases = await receive(client, max=3)
    receipts = [lease["receipt"] for lease in leases]
    reply = await check(await ack_batch(client, receipts[:2]), 200)
    assert reply == {"acked": receipts[:2], "failed": []}
    mixed = [receipts[2], "garbage", receipts[2], receipts[0], f"{ready}.t99", "0000000000000000.t1", "."]
    reply = await check(await ack_batch(client, mixed), 200)
    assert reply["acked"] == [receipts[2]]
    assert [(failure["receipt"], failure["code"]) for failure in reply["failed"]] == [
        ("garbage", "invalid_receipt"),
        (receipts[2], "message_not_found"),  # a duplicate: acked a moment ago
        (receipts[0], "message_not_found"),
        (f"{ready}.t99", "lease_lost"),
        ("0000000000000000.t1", "message_not_found"),
        (".", "invalid_receipt"),
    ]
    assert all(set(failure) == {"receipt", "code", "message"} and failure["message"] for failure in reply["failed"])
    assert await counts(client) == {
        "ready": 1,
        "leased": 0,
        "delayed": 0,
        "sent": 4,
        "received": 3,
        "acked": 3,
        "expired": 0,
        "released": 0,
        "dropped": 0,
        "dead_lettered": 0,
        "redriven": 0,
        "dead_letters": 0,
    }
    assert [lease["id"] for lease in leases] == [first, second, third]


async def test_ack_batch_of_max_batch_receipts(client: Client, autojump_clock: MockClock) -> None:
    await send_texts(client, MAX_BATCH)
    receipts = [lease["receipt"] for lease in await receive(client, max=MAX_BATCH)]
    assert await check(await ack_batch(client, receipts), 200) == {"acked": receipts, "failed": []}


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"json": {"receipts": [LIVE] * (MAX_BATCH + 1)}}, "batch_too_large"),
        ({"json": {"receipts": []}}, "invalid_parameter"),
        ({"json": {"receipts": LIVE}}, "invalid_parameter"),
        ({"json": {"receipts": [LIVE, 1]}}, "invalid_parameter"),
        ({"json": {"receipts": [LIVE], "more": 1}}, "invalid_parameter"),
        ({"json": {}}, "invalid_parameter"),
        ({"json": [LIVE]}, "invalid_parameter"),
        ({}, "invalid_body"),
        ({"data": b"{", "headers": {"Content-Type": "application/json"}}, "invalid_body"),
    ],
    ids=str,
)
async def test_bad_ack_batch_is_400_and_acks_nothing(
    client: Client, autojump_clock: MockClock, kwargs: dict[str, Any], code: str
) -> None:
    await send(client)
    lease = await receive_one(client)
    before = await snapshot(client)
    await check_error(await client.post(queue_path("q", "/ack"), **fill(kwargs, lease["receipt"])), 400, code)
    assert await snapshot(client) == before


async def test_ack_batch_on_unknown_queue_is_404(client: Client, autojump_clock: MockClock) -> None:
    await check_error(await ack_batch(client, ["x.t1"], "nope"), 404, "queue_not_found")


# ---- PATCH /v1/queues/{name}/messages/{id} ---------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "works"), [(-0.001, True), (0, False)])
async def test_heartbeat_extends_the_lease_to_a_new_deadline(
    client: Client, autojump_clock: MockClock, offset: float, works: bool
) -> None:
    message_id = await send(client)
    lease = await receive_one(client, visibility_timeout=5)
    await trio.sleep(4)
    patch = {"receipt": lease["receipt"], "visibility_timeout": 10}
    deadline = wall_now() + 10
    reply = await check(await change_visibility(client, message_id, patch), 200)
    assert reply == {"id": message_id, "released": False, "lease_expires_at": deadline}
    await sleep_until_wall(lease["lease_expires_at"] + 1)  # past the original deadline: still leased
    assert await receive(client) == []
    (viewed,) = (await peek(client))["messages"]
    assert (viewed["state"], viewed["lease_expires_at"]) == ("leased", deadline)
    await sleep_until_wall(deadline + offset)
    response = await ack(client, message_id, lease["receipt"])
    if works:
        await check(response, 204)
    else:
        await check_error(response, 409, "lease_lost")
        assert (await counts(client))["expired"] == 1
        assert (await receive_one(client))["receive_count"] == 2


async def test_heartbeat_can_repeat_and_shorten(client: Client, autojump_clock: MockClock) -> None:
    message_id = await send(client)
    lease = await receive_one(client, visibility_timeout=100)
    for seconds in (50, 200, 1):
        patch = {"receipt": lease["receipt"], "visibility_timeout": seconds}
        reply = await check(await change_visibility(client, message_id, patch), 200)
        assert reply["lease_expires_at"] == wall_now() + seconds
    await trio.sleep(1)
    assert (await receive_one(client))["receive_count"] == 2  # the 1-second lease ended; the older, longer ones too


async def test_visibility_timeout_zero_releases_at_once(client: Client, autojump_clock: MockClock) -> None:
    first, second = await send_texts(client, 2)
    lease = await receive_one(client, visibility_timeout=100)
    reply = await check(
        await change_visibility(client, first, {"receipt": lease["receipt"], "visibility_timeout": 0}), 200
    )
    assert reply == {"id": first, "released": True, "lease_expires_at": None}
    assert await counts(client) == {
        "ready": 2,
        "leased": 0,
        "delayed": 0,
        "sent": 2,
        "received": 1,
        "acked": 0,
        "expired": 0,
        "released": 1,
        "dropped": 0,
        "dead_lettered": 0,
        "redriven": 0,
        "dead_letters": 0,
    }
    await check_error(await ack(client, first, lease["receipt"]), 409, "lease_lost")
    patch = {"receipt": lease["receipt"], "visibility_timeout": 5}
    await check_error(await change_visibility(client, first, patch), 409, "lease_lost")
    again = await receive(client, max=2)
    assert [(message["id"], message["receive_count"]) for message in again] == [(first, 2), (second, 1)]


async def _ready_message(client: Client) -> tuple[str, str]:
    (ready,) = (await peek(client, state="ready"))["messages"]
    return ready["id"], f"{ready['id']}.t1"


@pytest.mark.parametrize(
    ("target", "body", "status", "code"),
    [
        ("leased", {"receipt": LIVE + "x", "visibility_timeout": 5}, 409, "lease_lost"),
        ("leased", {"receipt": "garbage", "visibility_timeout": 5}, 409, "lease_lost"),
        ("ready", {"receipt": LIVE, "visibility_timeout": 5}, 409, "lease_lost"),
        ("unknown", {"receipt": LIVE, "visibility_timeout": 5}, 404, "message_not_found"),
        ("leased", {"receipt": LIVE, "visibility_timeout": -1}, 400, "invalid_parameter"),
        ("leased", {"receipt": LIVE, "visibility_timeout": 43_200.5}, 400, "invalid_parameter"),
        ("leased", {"receipt": LIVE, "visibility_timeout": "10"}, 400, "invalid_parameter"),
        ("leased", {"receipt": LIVE, "visibility_timeout": None}, 400, "invalid_parameter"),
        ("leased", {"receipt": LIVE, "visibility_timeout": True}, 400, "invalid_parameter"),
        ("leased", {"receipt": LIVE}, 400, "invalid_parameter"),
        ("leased", {"visibility_timeout": 5}, 400, "invalid_parameter"),
        ("leased", {"receipt": LIVE, "visibility_timeout": 5, "x": 1}, 400, "invalid_parameter"),
    ],
    ids=str,
)
async def test_failed_change_visibility_changes_nothing(
    client: Client, autojump_clock: MockClock, target: str, body: dict[str, Any], status: int, code: str
) -> None:
    """`target` is the message the PATCH names: the leased one, a ready one, or an id that does not exist."""
    await send_texts(client, 2)
    lease = await receive_one(client, visibility_timeout=30)
    message_id, receipt = lease["id"], lease["receipt"]
    if target == "ready":
        message_id, receipt = await _ready_message(client)
    elif target == "unknown":
        message_id = "0000000000000000"
    before = await snapshot(client)
    await check_error(await change_visibility(client, message_id, fill(body, receipt)), status, code)
    assert await snapshot(client) == before


@pytest.mark.parametrize(
    ("data", "code"), [(b"", "invalid_body"), (b"{", "invalid_body"), (b"[]", "invalid_parameter")]
)
async def test_change_visibility_needs_a_json_object(
    client: Client, autojump_clock: MockClock, data: bytes, code: str
) -> None:
    message_id = await send(client)
    await receive_one(client)
    before = await snapshot(client)
    path = queue_path("q", f"/messages/{message_id}")
    await check_error(await client.patch(path, data=data, headers={"Content-Type": "application/json"}), 400, code)
    assert await snapshot(client) == before


async def test_change_visibility_accepts_the_maximum(client: Client, autojump_clock: MockClock) -> None:
    message_id = await send(client)
    lease = await receive_one(client)
    patch = {"receipt": lease["receipt"], "visibility_timeout": 43_200}
    assert (await check(await change_visibility(client, message_id, patch), 200))[
        "lease_expires_at"
    ] == wall_now() + 43_200


async def test_change_visibility_on_unknown_queue_is_404(client: Client, autojump_clock: MockClock) -> None:
    patch = {"receipt": "x.t1", "visibility_timeout": 5}
    await check_error(await change_visibility(client, "x", patch, queue="nope"), 404, "queue_not_found")
