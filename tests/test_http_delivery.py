"""HTTP API tests, part 7: message attributes, retention, dead-letter queues and redrive."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from quart.typing import TestClientProtocol as Client
from trio.testing import MockClock

from tests.test_http import (
    TEXT,
    check,
    check_error,
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
from wonderq.model import TypedValue
from wonderq.web import render_attributes

LIMIT_BYTES = 1024  # max_message_bytes in the test settings


# ---- message attributes -------------------------------------------------------------------------------------


async def test_batch_attributes_come_back_on_receive_and_peek(client: Client, autojump_clock: MockClock) -> None:
    entries = [
        {"body": {"n": 1}, "attributes": {"type": "order", "region": "eu", "empty": ""}},
        {"body": "plain", "content_type": TEXT},
        {"body_base64": "AAE=", "attributes": {"x.y-z_1": "d\u00e9j\u00e0"}},
    ]
    reply = await check(await client.post(queue_path("q", "/messages/batch"), json={"messages": entries}), 201)
    viewed = [m["attributes"] for m in (await peek(client))["messages"]]
    received = [m["attributes"] for m in await receive(client, max=3)]
    expected = [{"empty": "", "region": "eu", "type": "order"}, {}, {"x.y-z_1": "d\u00e9j\u00e0"}]
    assert viewed == received == expected
    assert len(reply["ids"]) == 3


async def test_single_send_takes_attributes_as_query_parameters(client: Client, autojump_clock: MockClock) -> None:
    response = await client.post(
        queue_path("q", "/messages"),
        data="hello",
        headers={"Content-Type": TEXT},
        query_string={"attribute.type": "greeting", "attribute.lang": "en gb", "priority": "2"},
    )
    await check(response, 201)
    lease = await receive_one(client)
    assert (lease["body"], lease["priority"], lease["attributes"]) == (
        "hello",
        2,
        {"lang": "en gb", "type": "greeting"},
    )


@pytest.mark.parametrize(
    ("attributes", "status", "code"),
    [
        ({f"k{i}": "v" for i in range(11)}, 400, "invalid_parameter"),
        ({"": "v"}, 400, "invalid_parameter"),
        ({"has space": "v"}, 400, "invalid_parameter"),
        ({"x" * 257: "v"}, 400, "invalid_parameter"),
        ({"n": 1}, 400, "invalid_parameter"),  # values are strings
        ({"n": None}, 400, "invalid_parameter"),
        (["n", "v"], 400, "invalid_parameter"),
        ({"big": "x" * LIMIT_BYTES}, 413, "message_too_large"),  # attributes count toward the size
    ],
    ids=str,
)
async def test_bad_batch_attributes_fail_the_batch(
    client: Client, autojump_clock: MockClock, attributes: Any, status: int, code: str
) -> None:
    entries = [{"body": "fine", "content_type": TEXT}, {"body": "m", "content_type": TEXT, "attributes": attributes}]
    response = await client.post(queue_path("q", "/messages/batch"), json={"messages": entries})
    await check_error(response, status, code)
    await check_error(await client.get(queue_path("q")), 404, "queue_not_found")


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("attribute.a=1&attribute.a=2", 400, "invalid_parameter"),
        ("attribute.=1", 400, "invalid_parameter"),
        ("attribute.a%20b=1", 400, "invalid_parameter"),
        ("&".join(f"attribute.k{i}=v" for i in range(11)), 400, "invalid_parameter"),
        (f"attribute.big={'x' * LIMIT_BYTES}", 413, "message_too_large"),
        ("attributes.a=1", 400, "invalid_parameter"),  # an unknown parameter, not an attribute
    ],
)
async def test_bad_query_attributes_send_nothing(
    client: Client, autojump_clock: MockClock, query: str, status: int, code: str
) -> None:
    await put_queue(client)
    response = await client.post(f"{queue_path('q', '/messages')}?{query}", data="m", headers={"Content-Type": TEXT})
    await check_error(response, status, code)
    assert (await stats(client))["sent"] == 0


# ---- retention ------------------------------------------------------------------------------------------------


async def test_retention_drops_old_messages_and_counts_them(client: Client, autojump_clock: MockClock) -> None:
    created = await put_queue(client, retention=60)
    assert created["attributes"]["retention"] == 60
    await send(client, body="old")
    await trio.sleep(30)
    young = await send(client, body="young")
    await trio.sleep(29.999)
    assert [m["body"] for m in (await peek(client))["messages"]] == ["old", "young"]
    await trio.sleep(0.001)
    assert [m["id"] for m in (await peek(client))["messages"]] == [young]
    assert ((await stats(client))["ready"], (await stats(client))["dropped"]) == (1, 1)
    await trio.sleep(30)
    reply = await stats(client)
    assert (reply["ready"], reply["dropped"]) == (0, 2)


@pytest.mark.parametrize("value", [59.999, 1_209_600.001, -1, "60", True, None])
async def test_retention_out_of_range_is_400(client: Client, autojump_clock: MockClock, value: Any) -> None:
    await put_queue(client)
    response = await client.put(queue_path("q"), json={"retention": value})
    if value is None:  # null: leave it as it is
        assert (await check(response, 200))["attributes"]["retention"] == 345_600
        return
    await check_error(response, 400, "invalid_parameter")
    assert (await stats(client))["attributes"]["retention"] == 345_600


# ---- dead-letter queues ---------------------------------------------------------------------------------------


async def dead_letter_setup(client: Client, max_receives: int = 2) -> None:
    await put_queue(client, "dlq")
    reply = await put_queue(client, "q", visibility_timeout=5, max_receives=max_receives, dead_letter_queue="dlq")
    assert (reply["attributes"]["max_receives"], reply["attributes"]["dead_letter_queue"]) == (max_receives, "dlq")


async def test_a_message_received_max_receives_times_moves_to_the_dead_letter_queue(
    client: Client, autojump_clock: MockClock
) -> None:
    await dead_letter_setup(client, max_receives=2)
    response = await client.post(
        queue_path("q", "/messages"), data="poison", headers={"Content-Type": TEXT}, query_string={"attribute.k": "v"}
    )
    message_id = (await check(response, 201))["id"]
    sent_at = wall_now()
    first = await receive_one(client)
    await trio.sleep(5)
    second = await receive_one(client)
    assert (first["receive_count"], second["receive_count"]) == (1, 2)
    await trio.sleep(4.999)
    assert (await peek(client, "dlq"))["messages"] == []
    await trio.sleep(0.001)
    assert await receive(client) == []  # not delivered a third time
    (view,) = (await peek(client, "dlq"))["messages"]
    assert (view["id"], view["state"], view["body"], view["attributes"]) == (message_id, "ready", "poison", {"k": "v"})
    assert (view["receive_count"], view["source_queue"], view["sent_at"]) == (2, "q", sent_at)
    source = await stats(client, "q")
    assert (source["ready"], source["leased"], source["expired"], source["dead_lettered"]) == (0, 0, 2, 1)
    lease = await receive_one(client, "dlq")
    assert (lease["id"], lease["receive_count"], lease["source_queue"]) == (message_id, 3, "q")


async def test_a_nack_of_the_last_delivery_dead_letters_at_once(client: Client, autojump_clock: MockClock) -> None:
    await dead_letter_setup(client, max_receives=1)
    message_id = await send(client)
    lease = await receive_one(client)
    response = await client.patch(
        queue_path("q", f"/messages/{message_id}"), json={"receipt": lease["receipt"], "visibility_timeout": 0}
    )
    assert (await check(response, 200))["released"] is True
    assert [m["id"] for m in (await peek(client, "dlq"))["messages"]] == [message_id]


async def test_a_long_poll_on_the_dead_letter_queue_wakes_for_a_dead_letter(
    client: Client, autojump_clock: MockClock
) -> None:
    await dead_letter_setup(client, max_receives=1)
    message_id = await send(client)
    await receive_one(client, visibility_timeout=3)
    started = trio.current_time()
    lease = await receive_one(client, "dlq", wait=20)  # the ticker ends the lease at 3 s and moves it
    assert lease["id"] == message_id
    assert trio.current_time() - started == pytest.approx(3, abs=0.2)


@pytest.mark.parametrize(
    ("attributes", "status", "code"),
    [
        ({"max_receives": 2}, 400, "invalid_parameter"),  # without a dead-letter queue
        ({"max_receives": 2, "dead_letter_queue": "missing"}, 400, "invalid_parameter"),
        ({"max_receives": 2, "dead_letter_queue": "q"}, 400, "invalid_parameter"),
        ({"max_receives": 1001, "dead_letter_queue": "dlq"}, 400, "invalid_parameter"),
        ({"max_receives": -1, "dead_letter_queue": "dlq"}, 400, "invalid_parameter"),
        ({"max_receives": 2.5, "dead_letter_queue": "dlq"}, 400, "invalid_parameter"),
        ({"max_receives": "2", "dead_letter_queue": "dlq"}, 400, "invalid_parameter"),
        ({"max_receives": 2, "dead_letter_queue": "bad name"}, 400, "invalid_queue_name"),
        ({"max_receives": 2, "dead_letter_queue": 5}, 400, "invalid_parameter"),
    ],
    ids=str,
)
async def test_bad_dead_letter_settings_are_400_and_change_nothing(
    client: Client, autojump_clock: MockClock, attributes: dict[str, Any], status: int, code: str
) -> None:
    await put_queue(client, "dlq")
    await put_queue(client, "q")
    await check_error(await client.put(queue_path("q"), json=attributes), status, code)
    reply = await stats(client, "q")
    assert (reply["attributes"]["max_receives"], reply["attributes"]["dead_letter_queue"]) == (0, None)


async def test_null_removes_the_dead_letter_queue(client: Client, autojump_clock: MockClock) -> None:
    await dead_letter_setup(client)
    await check_error(await client.put(queue_path("q"), json={"dead_letter_queue": None}), 400, "invalid_parameter")
    reply = await put_queue(client, "q", 200, max_receives=0, dead_letter_queue=None)
    assert (reply["attributes"]["max_receives"], reply["attributes"]["dead_letter_queue"]) == (0, None)
    await check(await client.delete(queue_path("dlq")), 204)


async def test_a_named_dead_letter_queue_cannot_be_deleted(client: Client, autojump_clock: MockClock) -> None:
    await dead_letter_setup(client)
    await send(client, "dlq")
    message = await check_error(await client.delete(queue_path("dlq")), 409, "queue_in_use")
    assert "'q'" in message
    assert (await stats(client, "dlq"))["ready"] == 1
    await check(await client.delete(queue_path("q")), 204)
    await check(await client.delete(queue_path("dlq")), 204)


# ---- redrive --------------------------------------------------------------------------------------------------


async def make_dead_letters(client: Client, count: int) -> list[str]:
    """`count` messages sent to "q" and dead-lettered to "dlq" (max_receives 1)."""
    await dead_letter_setup(client, max_receives=1)
    ids = await send_texts(client, count)
    for _ in range(count):
        await receive_one(client, visibility_timeout=1)
    await trio.sleep(1)
    assert (await stats(client, "dlq"))["ready"] == count
    return ids


async def redrive(client: Client, queue: str = "dlq", status: int = 200, **body: Any) -> Any:
    return await check(await client.post(queue_path(queue, "/redrive"), json=body), status)


async def test_redrive_sends_dead_letters_back_to_their_source(client: Client, autojump_clock: MockClock) -> None:
    ids = await make_dead_letters(client, 3)
    direct = await send(client, "dlq", body="sent to the dead-letter queue")
    assert await redrive(client) == {"moved": 3, "skipped": 1}
    views = (await peek(client, "q"))["messages"]
    assert [(v["id"], v["receive_count"], v["source_queue"]) for v in views] == [(i, 0, None) for i in ids]
    assert [m["id"] for m in (await peek(client, "dlq"))["messages"]] == [direct]
    assert (await stats(client, "dlq"))["redriven"] == 3
    assert [lease["receive_count"] for lease in await receive(client, max=3)] == [1, 1, 1]


async def test_redrive_without_a_body_moves_everything(client: Client, autojump_clock: MockClock) -> None:
    await make_dead_letters(client, 2)
    assert await check(await client.post(queue_path("dlq", "/redrive")), 200) == {"moved": 2, "skipped": 0}


async def test_redrive_to_a_destination_at_most_max(client: Client, autojump_clock: MockClock) -> None:
    ids = await make_dead_letters(client, 4)
    await put_queue(client, "elsewhere")
    assert await redrive(client, destination="elsewhere", max=3) == {"moved": 3, "skipped": 0}
    assert [m["id"] for m in (await peek(client, "elsewhere"))["messages"]] == ids[:3]
    assert [m["id"] for m in (await peek(client, "dlq"))["messages"]] == ids[3:]


@pytest.mark.parametrize("wanted", [None, 7, 9, 10])
async def test_redrive_moves_in_steps_of_max_redrive(
    client: Client, autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch, wanted: int | None
) -> None:
    monkeypatch.setattr("wonderq.web.MAX_REDRIVE", 3)  # steps of 3 instead of 1,000
    await put_queue(client, "dlq")
    await put_queue(client, "to")
    for _ in range(9):
        await send(client, "dlq")
    body = {"destination": "to"} if wanted is None else {"destination": "to", "max": wanted}
    assert await redrive(client, **body) == {"moved": min(wanted or 9, 9), "skipped": 0}
    assert (await stats(client, "to"))["ready"] == min(wanted or 9, 9)


@pytest.mark.parametrize(
    ("queue", "body", "status", "code"),
    [
        ("missing", {}, 404, "queue_not_found"),
        ("bad name", {}, 400, "invalid_queue_name"),
        ("dlq", {"destination": "missing"}, 404, "queue_not_found"),
        ("dlq", {"destination": "dlq"}, 400, "invalid_parameter"),
        ("dlq", {"destination": "bad name"}, 400, "invalid_queue_name"),
        ("dlq", {"max": 0}, 400, "invalid_parameter"),
        ("dlq", {"max": "1"}, 400, "invalid_parameter"),
        ("dlq", {"limit": 1}, 400, "invalid_parameter"),
        ("dlq", [], 400, "invalid_parameter"),
    ],
    ids=str,
)
async def test_bad_redrives_are_errors_and_move_nothing(
    client: Client, autojump_clock: MockClock, queue: str, body: Any, status: int, code: str
) -> None:
    ids = await make_dead_letters(client, 1)
    await check_error(await client.post(queue_path(queue, "/redrive"), json=body), status, code)
    assert [m["id"] for m in (await peek(client, "dlq"))["messages"]] == ids


def test_typed_attributes_show_as_text_in_api_v1() -> None:
    attributes = (("bin", TypedValue("Binary", b"\x00\xff")), ("n", TypedValue("Number.int", "7")), ("s", "plain"))
    assert render_attributes(attributes) == {"bin": "AP8=", "n": "7", "s": "plain"}


async def test_namespaced_queue_names_work_in_api_v1(client: Client, autojump_clock: MockClock) -> None:
    message_id = await send(client, "eu-west-1:jobs")
    assert (await receive_one(client, "eu-west-1:jobs"))["id"] == message_id
    names = [queue["name"] for queue in (await check(await client.get("/v1/queues"), 200))["queues"]]
    assert "eu-west-1:jobs" in names
    await check_error(await client.get(queue_path("EU:jobs")), 400, "invalid_queue_name")


# ---- FIFO queues ----------------------------------------------------------------------------------------------


async def test_a_fifo_queue_delivers_each_group_in_order_one_batch_at_a_time(
    client: Client, autojump_clock: MockClock
) -> None:
    await put_queue(client, "jobs.fifo", visibility_timeout=5)
    entries = [
        {"body": "a1", "content_type": TEXT, "group": "a"},
        {"body": "b1", "content_type": TEXT, "group": "b"},
        {"body": "a2", "content_type": TEXT, "group": "a"},
    ]
    await check(await client.post(queue_path("jobs.fifo", "/messages/batch"), json={"messages": entries}), 201)
    response = await client.post(
        queue_path("jobs.fifo", "/messages"), data="a3", headers={"Content-Type": TEXT}, query_string={"group": "a"}
    )
    await check(response, 201)
    first = await receive(client, "jobs.fifo", max=2)
    assert [(m["body"], m["group"]) for m in first] == [("a1", "a"), ("a2", "a")]
    assert [m["body"] for m in await receive(client, "jobs.fifo", max=10)] == ["b1"]
    assert await receive(client, "jobs.fifo", max=10) == []  # a and b both have leases out
    for message in first:
        await check(
            await client.delete(
                queue_path("jobs.fifo", f"/messages/{message['id']}"), query_string={"receipt": message["receipt"]}
            ),
            204,
        )
    assert [m["body"] for m in await receive(client, "jobs.fifo", max=10)] == ["a3"]
    assert [m["group"] for m in (await peek(client, "jobs.fifo"))["messages"]] == ["b", "a"]


async def test_a_message_shows_the_dedup_id_it_was_sent_with(client: Client, autojump_clock: MockClock) -> None:
    entries = [{"body": "x", "content_type": TEXT, "dedup_id": "order-7"}, {"body": "y", "content_type": TEXT}]
    await check(await client.post(queue_path("q", "/messages/batch"), json={"messages": entries}), 201)
    response = await client.post(
        queue_path("q", "/messages"), data="z", headers={"Content-Type": TEXT, "Idempotency-Key": "key-1"}
    )
    await check(response, 201)
    assert [m["dedup_id"] for m in await receive(client, max=3)] == ["order-7", None, "key-1"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"delay": "1", "group": "a"}, "invalid_parameter"),
        ({"priority": "1"}, "invalid_parameter"),
        ({"group": "a b"}, "invalid_parameter"),
    ],
)
async def test_fifo_sends_take_no_delay_or_priority(
    client: Client, autojump_clock: MockClock, query: dict[str, str], code: str
) -> None:
    await put_queue(client, "jobs.fifo")
    response = await client.post(
        queue_path("jobs.fifo", "/messages"), data="m", headers={"Content-Type": TEXT}, query_string=query
    )
    await check_error(response, 400, code)


async def test_dead_letters_is_a_gauge_of_the_dead_letters_in_a_queue(
    client: Client, autojump_clock: MockClock
) -> None:
    ids = await make_dead_letters(client, 3)
    assert (await stats(client, "dlq"))["dead_letters"] == 3
    lease = await receive_one(client, "dlq")
    await check(
        await client.delete(queue_path("dlq", f"/messages/{lease['id']}"), query_string={"receipt": lease["receipt"]}),
        204,
    )
    assert (await stats(client, "dlq"))["dead_letters"] == 2
    assert await redrive(client, max=1) == {"moved": 1, "skipped": 0}
    assert ((await stats(client, "dlq"))["dead_letters"], (await stats(client, "q"))["dead_letters"]) == (1, 0)
    await check(await client.post(queue_path("dlq", "/purge")), 200)
    assert (await stats(client, "dlq"))["dead_letters"] == 0
    assert len(ids) == 3
