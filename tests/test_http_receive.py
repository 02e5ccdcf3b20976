"""HTTP API tests, part 4: receiving: the lease reply, parameters (JSON or query), order and redelivery, long
polling on the virtual clock, and concurrent receivers."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import trio
import trio.lowlevel
from quart.typing import TestClientProtocol as Client
from trio.testing import MockClock

from tests.test_http import (
    DEFAULT_VISIBILITY_TIMEOUT,
    TEXT,
    check,
    check_error,
    counts,
    put_queue,
    queue_path,
    receive,
    receive_one,
    send,
    send_texts,
    snapshot,
    wall_now,
)

MAX_BATCH = 10  # max_batch in the test settings
TICK = 0.1  # seconds: the default tick interval, the longest an expiry waits for the ticker


async def test_lease_reply_has_every_field(client: Client, autojump_clock: MockClock) -> None:
    message_id = await send(client, body="hello")
    sent_at = wall_now()
    await trio.sleep(2)
    lease = await receive_one(client, visibility_timeout=7, consumer="worker-1")
    receipt = lease.pop("receipt")
    assert receipt.startswith(message_id + ".")
    assert len(receipt) > len(message_id) + 1
    assert lease == {
        "id": message_id,
        "body": "hello",
        "encoding": "text",
        "content_type": TEXT,
        "attributes": {},
        "priority": 0,
        "receive_count": 1,
        "sent_at": sent_at,
        "first_received_at": wall_now(),
        "lease_expires_at": wall_now() + 7,
        "consumer": "worker-1",
        "source_queue": None,
        "group": None,
        "dedup_id": None,
    }


async def test_defaults_one_message_queue_timeout_no_consumer(client: Client, autojump_clock: MockClock) -> None:
    await send_texts(client, 3)
    response = await client.post(queue_path("q", "/receive"))  # no body at all
    (lease,) = (await check(response, 200))["messages"]
    assert lease["lease_expires_at"] == wall_now() + DEFAULT_VISIBILITY_TIMEOUT
    assert lease["consumer"] is None
    await put_queue(client, "q", 200, visibility_timeout=42)
    assert (await receive_one(client))["lease_expires_at"] == wall_now() + 42


async def test_parameters_in_the_query_string(client: Client, autojump_clock: MockClock) -> None:
    await send_texts(client, 3)
    query = {"max": "2", "visibility_timeout": "3.5", "consumer": "c", "wait": "0"}
    reply = await check(await client.post(queue_path("q", "/receive"), query_string=query), 200)
    assert [(lease["body"], lease["lease_expires_at"], lease["consumer"]) for lease in reply["messages"]] == [
        ("m0", wall_now() + 3.5, "c"),
        ("m1", wall_now() + 3.5, "c"),
    ]


async def test_json_body_wins_over_the_query_string(client: Client, autojump_clock: MockClock) -> None:
    await send_texts(client, 5)
    response = await client.post(
        queue_path("q", "/receive"), query_string={"max": "1", "consumer": "a"}, json={"max": 3}
    )
    leases = (await check(response, 200))["messages"]
    assert [(lease["body"], lease["consumer"]) for lease in leases] == [("m0", "a"), ("m1", "a"), ("m2", "a")]


@pytest.mark.parametrize("query", [{"wait": "null"}, {"max": "many"}, {"wait": "-1"}, {"visibility_timeout": "x"}])
async def test_a_bad_query_parameter_is_400_even_when_the_body_gives_it(
    client: Client, autojump_clock: MockClock, query: dict[str, str]
) -> None:
    await send_texts(client, 1)
    body = {"wait": 0, "max": 1, "visibility_timeout": 5}
    response = await client.post(queue_path("q", "/receive"), query_string=query, json=body)
    await check_error(response, 400, "invalid_parameter")
    assert (await counts(client))["ready"] == 1  # nothing leased


async def test_nothing_ready_is_an_empty_list(client: Client, autojump_clock: MockClock) -> None:
    await put_queue(client)
    assert await receive(client) == []
    await send(client)
    await receive_one(client)
    assert await receive(client, max=MAX_BATCH) == []


async def test_unknown_queue_is_404_even_with_wait(client: Client, autojump_clock: MockClock) -> None:
    start = trio.current_time()
    await check_error(await client.post(queue_path("nope", "/receive")), 404, "queue_not_found")
    await check_error(await client.post(queue_path("nope", "/receive"), json={"wait": 5}), 404, "queue_not_found")
    assert trio.current_time() == start


async def test_max_takes_at_most_max_batch_in_send_order(client: Client, autojump_clock: MockClock) -> None:
    ids = await send_texts(client, MAX_BATCH + 2)
    first = await receive(client, max=MAX_BATCH)
    second = await receive(client, max=MAX_BATCH)
    assert [lease["id"] for lease in first] == ids[:MAX_BATCH]
    assert [lease["id"] for lease in second] == ids[MAX_BATCH:]


BAD_JSON_PARAMETERS: list[dict[str, Any]] = [
    {"max": 0},
    {"max": -1},
    {"max": MAX_BATCH + 1},
    {"max": 1.5},
    {"max": "2"},
    {"max": True},
    {"visibility_timeout": 0},
    {"visibility_timeout": -5},
    {"visibility_timeout": 43_200.001},
    {"visibility_timeout": "10"},
    {"wait": -1},
    {"wait": 20.001},
    {"wait": False},
    {"consumer": "c" * 201},
    {"consumer": 7},
    {"limit": 1},
]
BAD_QUERY_PARAMETERS: list[dict[str, str]] = [
    {"max": "0"},
    {"max": "11"},
    {"max": "1.5"},
    {"max": "all"},
    {"visibility_timeout": "0"},
    {"visibility_timeout": "43201"},
    {"visibility_timeout": "nan"},
    {"visibility_timeout": "inf"},
    {"wait": "-0.5"},
    {"wait": "21"},
    {"wait": "nan"},
    {"wait": "soon"},
    {"consumer": "c" * 201},
    {"timeout": "5"},
]


@pytest.mark.parametrize(
    "kwargs",
    [{"json": params} for params in BAD_JSON_PARAMETERS]
    + [{"query_string": params} for params in BAD_QUERY_PARAMETERS],
    ids=str,
)
async def test_bad_parameters_are_400_and_lease_nothing(
    client: Client, autojump_clock: MockClock, kwargs: dict[str, Any]
) -> None:
    await send(client)
    before = await snapshot(client)
    await check_error(await client.post(queue_path("q", "/receive"), **kwargs), 400, "invalid_parameter")
    assert await snapshot(client) == before


@pytest.mark.parametrize("data", [b"{", b"max=2", b'{"max": 1,}'])
async def test_invalid_json_body_is_400_invalid_body(client: Client, autojump_clock: MockClock, data: bytes) -> None:
    await send(client)
    headers = {"Content-Type": "application/json"}
    await check_error(await client.post(queue_path("q", "/receive"), data=data, headers=headers), 400, "invalid_body")
    assert (await counts(client))["leased"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"visibility_timeout": 43_200},
        {"visibility_timeout": 0.001},
        {"wait": 0},
        {"wait": 20},
        {"consumer": "c" * 200},
        {"consumer": ""},
        {"max": 1},
    ],
)
async def test_parameters_at_their_limits_are_accepted(
    client: Client, autojump_clock: MockClock, params: dict[str, Any]
) -> None:
    await send(client)
    lease = await receive_one(client, **params)
    if "visibility_timeout" in params:
        assert lease["lease_expires_at"] == pytest.approx(wall_now() + params["visibility_timeout"])
    if "consumer" in params:
        assert lease["consumer"] == params["consumer"]


async def test_expired_leases_come_back_first_in_original_order(client: Client, autojump_clock: MockClock) -> None:
    ids = await send_texts(client, 4)
    first = await receive_one(client, visibility_timeout=10)
    second = await receive_one(client, visibility_timeout=5)  # expires first, but goes out again second
    assert [first["id"], second["id"]] == ids[:2]
    await trio.sleep(5)
    assert (await counts(client))["expired"] == 1
    await trio.sleep(5)
    newer = await send(client)
    leases = await receive(client, max=MAX_BATCH)
    assert [(lease["id"], lease["receive_count"]) for lease in leases] == [
        (ids[0], 2),
        (ids[1], 2),
        (ids[2], 1),
        (ids[3], 1),
        (newer, 1),
    ]
    assert leases[0]["receipt"] != first["receipt"]
    assert leases[1]["receipt"] != second["receipt"]


async def test_long_poll_is_answered_by_a_send_during_the_wait(client: Client, autojump_clock: MockClock) -> None:
    await put_queue(client)
    got: list[Any] = []

    async def poll() -> None:
        got.append(await receive(client, wait=10))
        got.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.sleep(2.5)
        assert got == []  # still waiting
        message_id = await send(client, body="late")
    (lease,), answered_at = got
    assert (lease["id"], lease["body"]) == (message_id, "late")
    assert answered_at - start == 2.5


@pytest.mark.parametrize("wait", [0.5, 5, 20])
async def test_long_poll_ends_empty_exactly_at_its_deadline(
    client: Client, autojump_clock: MockClock, wait: float
) -> None:
    await put_queue(client)
    start = trio.current_time()
    assert await receive(client, wait=wait) == []
    assert trio.current_time() - start == pytest.approx(wait, abs=1e-6)
    await send(client)  # a message after the deadline waits for the next receive
    assert len(await receive(client)) == 1


async def test_long_poll_is_answered_by_an_expiring_lease(client: Client, autojump_clock: MockClock) -> None:
    message_id = await send(client)
    await receive_one(client, visibility_timeout=3)
    start = trio.current_time()
    lease = await receive_one(client, wait=10)
    assert (lease["id"], lease["receive_count"]) == (message_id, 2)
    assert 3 <= trio.current_time() - start <= 3 + TICK + 1e-6


async def test_long_poll_on_a_deleted_queue_is_404(client: Client, autojump_clock: MockClock) -> None:
    await put_queue(client)
    replies: list[Any] = []

    async def poll() -> None:
        response = await client.post(queue_path("q", "/receive"), json={"wait": 10})
        replies.append(await check_error(response, 404, "queue_not_found"))
        replies.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.sleep(1)
        await check(await client.delete(queue_path("q")), 204)
    assert replies[1] == 1


async def test_long_polls_are_answered_first_come_first_served(client: Client, autojump_clock: MockClock) -> None:
    await put_queue(client)
    answered: list[tuple[str, str]] = []

    async def poll(name: str) -> None:
        (lease,) = await receive(client, wait=20)
        answered.append((name, lease["body"]))

    async with trio.open_nursery() as nursery:
        for name in ("first", "second", "third"):
            nursery.start_soon(poll, name)
            await trio.sleep(1)
        for body in ("a", "b", "c"):
            await send(client, body=body)
            await trio.sleep(1)
    assert answered == [("first", "a"), ("second", "b"), ("third", "c")]


async def test_a_long_poll_whose_client_went_away_takes_nothing(client: Client, autojump_clock: MockClock) -> None:
    await put_queue(client)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(receive, client, wait=20))
        await trio.sleep(1)
        nursery.cancel_scope.cancel()  # the client disconnects while parked
    await trio.sleep(1)
    assert (await check(await client.get("/health"), 200))["parked_receives"] == 0
    message_id = await send(client)
    lease = await receive_one(client)
    assert (lease["id"], lease["receive_count"]) == (message_id, 1)
    assert (await counts(client))["received"] == 1


@pytest.mark.parametrize("prefill", [True, False])
async def test_concurrent_receivers_never_share_a_message(
    client: Client, autojump_clock: MockClock, prefill: bool
) -> None:
    """20 receivers over 50 messages: sent before they start, or while they long-poll."""
    await put_queue(client, visibility_timeout=1000)
    ids: list[str] = []
    taken: dict[int, list[str]] = {}

    async def produce() -> None:
        for start in range(0, 50, 5):
            batch = [{"body": index} for index in range(start, start + 5)]
            reply = await check(await client.post(queue_path("q", "/messages/batch"), json={"messages": batch}), 201)
            ids.extend(reply["ids"])
            if not prefill:
                await trio.sleep(0.01)

    async def consume(worker: int) -> None:
        taken[worker] = []
        while True:
            leases = await receive(client, max=3, wait=0 if prefill else 1, consumer=f"w{worker}")
            if not leases:
                return
            assert all(lease["consumer"] == f"w{worker}" for lease in leases)
            taken[worker] += [lease["id"] for lease in leases]
            await trio.lowlevel.checkpoint()

    if prefill:
        await produce()
    async with trio.open_nursery() as nursery:
        if not prefill:
            nursery.start_soon(produce)
        for worker in range(20):
            nursery.start_soon(partial(consume, worker))
    everything = [message_id for worker in taken.values() for message_id in worker]
    assert len(everything) == len(ids) == 50
    assert sorted(everything) == sorted(ids)
    assert sum(1 for worker in taken.values() if worker) > 1  # the work was actually spread out
    assert await counts(client) == {
        "ready": 0,
        "leased": 50,
        "delayed": 0,
        "sent": 50,
        "received": 50,
        "acked": 0,
        "expired": 0,
        "released": 0,
        "dropped": 0,
        "dead_lettered": 0,
        "redriven": 0,
        "dead_letters": 0,
    }
