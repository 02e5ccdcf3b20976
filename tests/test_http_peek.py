"""HTTP API tests, part 6: looking at messages without leasing them (GET .../messages: filter and paging)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from quart.typing import TestClientProtocol as Client
from trio.testing import MockClock

from tests.test_http import (
    TEXT,
    check_error,
    counts,
    peek,
    queue_path,
    receive,
    receive_one,
    send,
    send_texts,
    snapshot,
    wall_now,
)


async def test_peek_shows_messages_without_leasing_or_receipts(client: Client, autojump_clock: MockClock) -> None:
    first, second, third = await send_texts(client, 3)
    sent_at = wall_now()
    await trio.sleep(1)
    await receive_one(client, visibility_timeout=5, consumer="c1")
    before = await counts(client)
    page = await peek(client)
    assert page == {
        "messages": [
            {
                "id": first,
                "state": "leased",
                "body": "m0",
                "encoding": "text",
                "content_type": TEXT,
                "attributes": {},
                "priority": 0,
                "visible_at": None,
                "receive_count": 1,
                "sent_at": sent_at,
                "first_received_at": wall_now(),
                "lease_expires_at": wall_now() + 5,
                "consumer": "c1",
                "source_queue": None,
                "group": None,
                "dedup_id": None,
            },
            *(
                {
                    "id": message_id,
                    "state": "ready",
                    "body": body,
                    "encoding": "text",
                    "content_type": TEXT,
                    "attributes": {},
                    "priority": 0,
                    "visible_at": None,
                    "receive_count": 0,
                    "sent_at": sent_at,
                    "first_received_at": None,
                    "lease_expires_at": None,
                    "consumer": None,
                    "source_queue": None,
                    "group": None,
                    "dedup_id": None,
                }
                for message_id, body in ((second, "m1"), (third, "m2"))
            ),
        ],
        "next_after": None,
    }
    assert await peek(client) == page  # looking twice changes nothing
    assert await counts(client) == before
    assert [lease["id"] for lease in await receive(client, max=5)] == [second, third]


async def test_peek_shows_expired_leases_as_ready(client: Client, autojump_clock: MockClock) -> None:
    message_id = await send(client)
    await receive_one(client, visibility_timeout=5)
    await trio.sleep(5)
    (viewed,) = (await peek(client))["messages"]
    assert (viewed["id"], viewed["state"], viewed["receive_count"], viewed["lease_expires_at"]) == (
        message_id,
        "ready",
        1,
        None,
    )


async def test_peek_filters_by_state(client: Client, autojump_clock: MockClock) -> None:
    ids = await send_texts(client, 5)
    await receive(client, max=2)
    assert [message["id"] for message in (await peek(client, state="leased"))["messages"]] == ids[:2]
    assert [message["id"] for message in (await peek(client, state="ready"))["messages"]] == ids[2:]
    assert [message["id"] for message in (await peek(client))["messages"]] == ids


async def pages(client: Client, **params: Any) -> list[list[str]]:
    """Follow next_after from the first page to the last; returns the ids of each page."""
    result: list[list[str]] = []
    after: str | None = None
    while True:
        page = await peek(client, **params, **({"after": after} if after else {}))
        result.append([message["id"] for message in page["messages"]])
        after = page["next_after"]
        if after is None:
            return result
        assert after == result[-1][-1]


@pytest.mark.parametrize(("count", "limit", "sizes"), [(5, 2, [2, 2, 1]), (4, 2, [2, 2]), (3, 5, [3]), (1, 1, [1])])
async def test_paging_with_next_after(
    client: Client, autojump_clock: MockClock, count: int, limit: int, sizes: list[int]
) -> None:
    ids = await send_texts(client, count)
    got = await pages(client, limit=limit)
    assert [len(page) for page in got] == sizes
    assert [message_id for page in got for message_id in page] == ids


async def test_paging_within_one_state(client: Client, autojump_clock: MockClock) -> None:
    ids = await send_texts(client, 7)
    await receive(client, max=3)
    assert await pages(client, state="ready", limit=3) == [ids[3:6], ids[6:]]
    assert await pages(client, state="leased", limit=2) == [ids[:2], ids[2:3]]


async def test_after_any_id_starts_after_it(client: Client, autojump_clock: MockClock) -> None:
    ids = await send_texts(client, 3)
    assert [message["id"] for message in (await peek(client, after=ids[0]))["messages"]] == ids[1:]
    assert (await peek(client, after="0"))["messages"][0]["id"] == ids[0]
    assert (await peek(client, after="g"))["messages"] == []


async def test_peek_limit_defaults_to_100_and_goes_to_1000(client: Client, autojump_clock: MockClock) -> None:
    for start in range(0, 110, 10):
        batch = [{"body": index} for index in range(start, start + 10)]
        await client.post(queue_path("q", "/messages/batch"), json={"messages": batch})
    page = await peek(client)
    assert len(page["messages"]) == 100
    assert page["next_after"] == page["messages"][-1]["id"]
    page = await peek(client, limit=1000)
    assert len(page["messages"]) == 110
    assert page["next_after"] is None


@pytest.mark.parametrize(
    "query",
    [
        {"state": "gone"},
        {"state": "READY"},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"limit": "1.5"},
        {"cursor": "x"},
    ],
)
async def test_bad_peek_parameters_are_400(client: Client, autojump_clock: MockClock, query: dict[str, str]) -> None:
    await send(client)
    before = await snapshot(client)
    await check_error(await client.get(queue_path("q", "/messages"), query_string=query), 400, "invalid_parameter")
    assert await snapshot(client) == before


async def test_peek_unknown_queue_is_404(client: Client, autojump_clock: MockClock) -> None:
    await check_error(await client.get(queue_path("nope", "/messages")), 404, "queue_not_found")
