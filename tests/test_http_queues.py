"""HTTP API tests, part 2: queues: create and update (PUT), list, get with counters, delete and purge."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from quart.typing import TestClientProtocol as Client
from trio.testing import MockClock

from tests.test_http import (
    COUNTERS,
    DEFAULT_ATTRIBUTES,
    DEFAULT_VISIBILITY_TIMEOUT,
    ack,
    change_visibility,
    check,
    check_error,
    counts,
    peek,
    put_queue,
    queue_path,
    receive,
    receive_one,
    send,
    send_texts,
    stats,
    wall_now,
)


def fresh_stats(name: str, visibility_timeout: float, created_at: float) -> dict[str, Any]:
    return {
        "name": name,
        "attributes": {**DEFAULT_ATTRIBUTES, "visibility_timeout": visibility_timeout},
        "created_at": created_at,
        **dict.fromkeys(COUNTERS, 0),
        "oldest_sent_at": None,
    }


async def test_put_creates_with_201_then_updates_with_200(client: Client, autojump_clock: MockClock) -> None:
    created_at = wall_now()
    assert await put_queue(client, "q") == fresh_stats("q", DEFAULT_VISIBILITY_TIMEOUT, created_at)
    await trio.sleep(1)
    await send(client)
    updated = await put_queue(client, "q", 200, visibility_timeout=30)
    assert updated["attributes"] == {**DEFAULT_ATTRIBUTES, "visibility_timeout": 30.0}
    assert updated["created_at"] == created_at
    assert updated["sent"] == 1
    # Without attributes (no body, or an empty object) an existing queue stays as it is.
    assert await check(await client.put(queue_path("q")), 200) == await stats(client)
    assert (await put_queue(client, "q", 200))["attributes"] == {**DEFAULT_ATTRIBUTES, "visibility_timeout": 30.0}
    assert (await put_queue(client, "q", 200, visibility_timeout=None))["attributes"] == {
        **DEFAULT_ATTRIBUTES,
        "visibility_timeout": 30.0,
    }
    assert await put_queue(client, "other", visibility_timeout=5) == fresh_stats("other", 5.0, wall_now())


@pytest.mark.parametrize("seconds", [0.001, 1, 43_200])
async def test_queue_visibility_timeout_sets_the_default_lease(
    client: Client, autojump_clock: MockClock, seconds: float
) -> None:
    await put_queue(client, visibility_timeout=seconds)
    await send(client)
    lease = await receive_one(client)
    assert lease["lease_expires_at"] == pytest.approx(wall_now() + seconds)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"json": {"visibility_timeout": 0}}, "invalid_parameter"),
        ({"json": {"visibility_timeout": -1}}, "invalid_parameter"),
        ({"json": {"visibility_timeout": 43_200.5}}, "invalid_parameter"),
        ({"json": {"visibility_timeout": "30"}}, "invalid_parameter"),
        ({"json": {"visibility_timeout": True}}, "invalid_parameter"),
        ({"json": {"visibility_timeout": [30]}}, "invalid_parameter"),
        ({"json": {"delay": 901}}, "invalid_parameter"),
        ({"json": {"delay": -1}}, "invalid_parameter"),
        ({"json": {"visibility_timeout": 30, "max_receives": 3}}, "invalid_parameter"),
        ({"json": [30]}, "invalid_parameter"),
        ({"data": b"NaN", "headers": {"Content-Type": "application/json"}}, "invalid_parameter"),
        ({"data": b'{"visibility_timeout": ', "headers": {"Content-Type": "application/json"}}, "invalid_body"),
        ({"data": b"visibility_timeout=30"}, "invalid_body"),
    ],
    ids=str,
)
async def test_put_rejects_bad_attributes_and_changes_nothing(
    client: Client, autojump_clock: MockClock, kwargs: dict[str, Any], code: str
) -> None:
    await put_queue(client, "q", visibility_timeout=20)
    for name in ("q", "new"):
        await check_error(await client.put(queue_path(name), **kwargs), 400, code)
    assert (await stats(client, "q"))["attributes"] == {**DEFAULT_ATTRIBUTES, "visibility_timeout": 20.0}
    await check_error(await client.get(queue_path("new")), 404, "queue_not_found")


async def test_list_queues_sorted_by_name_with_counters(client: Client, autojump_clock: MockClock) -> None:
    listed = await check(await client.get("/v1/queues"), 200)
    assert listed == {"queues": [fresh_stats("default", DEFAULT_VISIBILITY_TIMEOUT, wall_now())]}
    await send_texts(client, 2, "b")
    await put_queue(client, "a", visibility_timeout=3)
    await receive(client, "b")
    listed = await check(await client.get("/v1/queues"), 200)
    assert [queue["name"] for queue in listed["queues"]] == ["a", "b", "default"]
    assert listed["queues"][0] == await stats(client, "a")
    assert listed["queues"][1] == await stats(client, "b")
    assert {key: listed["queues"][1][key] for key in ("ready", "leased", "sent", "received")} == {
        "ready": 1,
        "leased": 1,
        "sent": 2,
        "received": 1,
    }


async def test_get_queue_counts_every_transition(client: Client, autojump_clock: MockClock) -> None:
    first, second, third, fourth = await send_texts(client, 4)
    acked = await receive_one(client, visibility_timeout=5)
    await check(await ack(client, acked["id"], acked["receipt"]), 204)
    released = await receive_one(client, visibility_timeout=5)
    await check(await change_visibility(client, second, {"receipt": released["receipt"], "visibility_timeout": 0}), 200)
    expiring = await receive_one(client, visibility_timeout=5)  # the second, released above
    assert [acked["id"], released["id"], expiring["id"]] == [first, second, second]
    await trio.sleep(5)
    held = await receive_one(client, visibility_timeout=100)
    assert held["id"] == second
    assert held["receive_count"] == 3
    reply = await stats(client)
    assert {key: reply[key] for key in COUNTERS} == {
        "ready": 2,  # third, fourth
        "leased": 1,  # second
        "delayed": 0,
        "sent": 4,
        "received": 4,
        "acked": 1,
        "expired": 1,
        "released": 1,
        "dropped": 0,
        "dead_lettered": 0,
        "redriven": 0,
        "dead_letters": 0,
    }
    assert set(reply) == {"name", "attributes", "created_at", *COUNTERS, "oldest_sent_at"}
    assert [message["id"] for message in (await peek(client))["messages"]] == [second, third, fourth]


async def test_get_unknown_queue_is_404(client: Client, autojump_clock: MockClock) -> None:
    await check_error(await client.get(queue_path("nope")), 404, "queue_not_found")


async def test_delete_queue_is_204_then_404(client: Client, autojump_clock: MockClock) -> None:
    await send_texts(client, 2)
    lease = await receive_one(client)
    response = await client.delete(queue_path("q"))
    assert await check(response, 204) is None
    await check_error(await client.get(queue_path("q")), 404, "queue_not_found")
    await check_error(await client.delete(queue_path("q")), 404, "queue_not_found")
    await check_error(await ack(client, lease["id"], lease["receipt"]), 404, "queue_not_found")
    listed = await check(await client.get("/v1/queues"), 200)
    assert [queue["name"] for queue in listed["queues"]] == ["default"]
    await send(client)  # a send creates it again, from nothing
    assert (await counts(client))["sent"] == 1


async def test_purge_removes_ready_and_leased_messages(client: Client, autojump_clock: MockClock) -> None:
    await send_texts(client, 3)
    lease = await receive_one(client, visibility_timeout=100)
    assert await check(await client.post(queue_path("q", "/purge")), 200) == {"purged": 3}
    assert await counts(client) == {**dict.fromkeys(COUNTERS, 0), "sent": 3, "received": 1}
    await check_error(await ack(client, lease["id"], lease["receipt"]), 404, "message_not_found")
    patch = {"receipt": lease["receipt"], "visibility_timeout": 5}
    await check_error(await change_visibility(client, lease["id"], patch), 404, "message_not_found")
    batch = await check(await client.post(queue_path("q", "/ack"), json={"receipts": [lease["receipt"]]}), 200)
    assert batch["acked"] == []
    assert batch["failed"][0]["code"] == "message_not_found"
    assert await receive(client) == []
    await trio.sleep(100)  # the purged lease's deadline passes: nothing comes back
    assert await receive(client) == []
    assert await check(await client.post(queue_path("q", "/purge")), 200) == {"purged": 0}
    await send(client)
    assert (await receive_one(client))["body"] == "m"


async def test_purge_unknown_queue_is_404(client: Client, autojump_clock: MockClock) -> None:
    await check_error(await client.post(queue_path("nope", "/purge")), 404, "queue_not_found")


async def test_max_in_flight_limits_what_receives_hand_out(client: Client, autojump_clock: MockClock) -> None:
    created = await put_queue(client, "q", 201, max_in_flight=2)
    assert created["attributes"] == {**DEFAULT_ATTRIBUTES, "max_in_flight": 2}
    await send_texts(client, 5)
    leases = await receive(client, max=5)
    assert len(leases) == 2
    assert await receive(client, max=5) == []
    got: list[list[Any]] = []

    async def long_poll() -> None:
        got.append(await receive(client, max=5, wait=10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_poll)
        await trio.sleep(1)
        assert got == []  # messages are ready, but no room in flight
        assert (await ack(client, leases[0]["id"], leases[0]["receipt"])).status_code == 204
    assert len(got[0]) == 1  # woken by the ack, and given the one free slot
    updated = await put_queue(client, "q", 200, max_in_flight=0)  # 0 lifts the limit
    assert updated["attributes"]["max_in_flight"] == 0
    assert len(await receive(client, max=5)) == 2


@pytest.mark.parametrize("value", [-1, 1_000_001, 2.5, "3", True])
async def test_max_in_flight_must_be_a_count(client: Client, autojump_clock: MockClock, value: Any) -> None:
    await put_queue(client, "q", 201, max_in_flight=4)
    response = await client.put(queue_path("q"), json={"max_in_flight": value})
    await check_error(response, 400, "invalid_parameter")
    assert (await stats(client, "q"))["attributes"]["max_in_flight"] == 4


async def test_first_received_at_is_kept_across_redeliveries(client: Client, autojump_clock: MockClock) -> None:
    await send(client)
    first = await receive_one(client, visibility_timeout=5)
    await trio.sleep(6)
    again = await receive_one(client)
    assert again["receive_count"] == 2
    assert again["first_received_at"] == first["first_received_at"] < again["lease_expires_at"] - 10


async def test_a_queue_can_take_smaller_messages_than_the_server(client: Client, autojump_clock: MockClock) -> None:
    created = await put_queue(client, "q", 201, max_message_bytes=10)
    assert created["attributes"]["max_message_bytes"] == 10
    assert (
        await client.post(queue_path("q", "/messages"), data=b"x" * 10, headers={"Content-Type": "text/plain"})
    ).status_code == 201
    too_big = await client.post(queue_path("q", "/messages"), data=b"x" * 11, headers={"Content-Type": "text/plain"})
    assert "the limit is 10" in await check_error(too_big, 413, "message_too_large")
    batch = {
        "messages": [{"body": "ok", "content_type": "text/plain"}, {"body": "y" * 11, "content_type": "text/plain"}]
    }
    await check_error(await client.post(queue_path("q", "/messages/batch"), json=batch), 413, "message_too_large")
    assert (await counts(client))["sent"] == 1
    await put_queue(client, "q", 200, max_message_bytes=0)  # back to the server's limit (1024 in tests)
    assert (
        await client.post(queue_path("q", "/messages"), data=b"x" * 1024, headers={"Content-Type": "text/plain"})
    ).status_code == 201


@pytest.mark.parametrize("value", [-1, 1025, 1.5, "10"])
async def test_max_message_bytes_must_fit_the_server_limit(
    client: Client, autojump_clock: MockClock, value: Any
) -> None:
    await put_queue(client)
    await check_error(await client.put(queue_path("q"), json={"max_message_bytes": value}), 400, "invalid_parameter")
    assert (await stats(client))["attributes"]["max_message_bytes"] == 0
