"""HTTP API tests, part 3: sending, one message (the raw request body) or a batch (JSON), and how bodies are
stored and shown: JSON as JSON values, text as strings, anything else as base64."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import trio
from quart.typing import TestClientProtocol as Client
from trio.testing import MockClock

from tests.test_http import (
    DEFAULT_ATTRIBUTES,
    TEXT,
    check,
    check_error,
    counts,
    peek,
    put_queue,
    queue_path,
    receive,
    receive_one,
    send,
    snapshot,
    stats,
    wall_now,
)

BIG = 123_456_789_012_345_678_901_234_567_890  # beyond 64 bits
LIMIT = 1024  # max_message_bytes in the test settings
MAX_BATCH = 10  # max_batch in the test settings


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def shown_body(lease: dict[str, Any]) -> tuple[str, Any]:
    """(encoding, body) of a lease or peeked message; base64 bodies decoded to bytes."""
    if lease["encoding"] == "base64":
        assert "body" not in lease
        return "base64", base64.b64decode(lease["body_base64"])
    assert "body_base64" not in lease
    return lease["encoding"], lease["body"]


async def send_and_read_back(client: Client, data: bytes, content_type: str | None) -> dict[str, Any]:
    """Send one message, check that peek and receive show it alike, and return the lease."""
    message_id = await send(client, "q", data, content_type)
    (viewed,) = (await peek(client))["messages"]
    lease = await receive_one(client)
    assert lease["id"] == viewed["id"] == message_id
    assert shown_body(lease) == shown_body(viewed)
    assert lease["content_type"] == viewed["content_type"]
    await client.post(queue_path("q", "/purge"))
    return dict(lease)


# ---- one message ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type", "value"),
    [
        (
            b'{"a": {"b": [1, 2.5, {"c": null}]}, "d": "\xc3\xa9"}',
            "application/json",
            {"a": {"b": [1, 2.5, {"c": None}]}, "d": "é"},
        ),
        (str(BIG).encode(), "application/json", BIG),
        (f"[{-BIG}, {BIG}]".encode(), "application/json", [-BIG, BIG]),
        (b'"text"', "application/json; charset=utf-8", "text"),
        (b"  [true, false]\n", "application/json", [True, False]),
        (b"0", "APPLICATION/JSON", 0),
        (b'{"data": {"type": "x"}}', "application/vnd.api+json", {"data": {"type": "x"}}),
        (b'{"op": "replace"}', "application/merge-patch+json", {"op": "replace"}),
    ],
)
async def test_json_bodies_come_back_as_json_values(
    client: Client, autojump_clock: MockClock, data: bytes, content_type: str, value: Any
) -> None:
    lease = await send_and_read_back(client, data, content_type)
    assert shown_body(lease) == ("json", value)
    assert lease["content_type"] == content_type


@pytest.mark.parametrize(
    ("data", "content_type", "value"),
    [
        ("héllo wörld ✓".encode(), "text/plain", "héllo wörld ✓"),
        ("café".encode("latin-1"), "text/plain; charset=latin-1", "café"),
        ("café".encode("latin-1"), 'text/plain; charset="ISO-8859-1"', "café"),
        ("日本語".encode("utf-16"), "text/plain; charset=utf-16", "日本語"),
        (b"<b>hi</b>", "text/html", "<b>hi</b>"),
        (b"a,b\n1,2\n", "text/csv", "a,b\n1,2\n"),
        (b"  ", "text/plain", "  "),
        (b"{not json}", "text/plain", "{not json}"),
    ],
)
async def test_text_bodies_come_back_as_strings(
    client: Client, autojump_clock: MockClock, data: bytes, content_type: str, value: str
) -> None:
    lease = await send_and_read_back(client, data, content_type)
    assert shown_body(lease) == ("text", value)
    assert lease["content_type"] == content_type


@pytest.mark.parametrize(
    ("content_type", "shown_type"),
    [
        (None, "application/octet-stream"),
        ("application/octet-stream", "application/octet-stream"),
        ("image/png", "image/png"),
        ("application/xml", "application/xml"),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
        ("application/jsonx", "application/jsonx"),
    ],
)
async def test_other_bodies_come_back_as_base64(
    client: Client, autojump_clock: MockClock, content_type: str | None, shown_type: str
) -> None:
    data = bytes(range(256)) + b"\x00\xff"
    lease = await send_and_read_back(client, data, content_type)
    assert shown_body(lease) == ("base64", data)
    assert lease["content_type"] == shown_type


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"{", "application/json"),
        (b'{"a": 1} trailing', "application/json"),
        (b"NaN", "application/json"),
        (b"[Infinity]", "application/json"),
        (b"   ", "application/json"),
        (b"\xef\xbb\xbf{}", "application/json"),  # a byte-order mark
        (b"{'single': 'quotes'}", "application/problem+json"),
        (b"\xff\xfe\xfa", "text/plain"),
        (b"caf\xe9", "text/plain; charset=utf-8"),
        (b"abc", "text/plain; charset=no-such-charset"),
        (b'"\\ud800"', "application/json"),  # an escaped lone surrogate: no string at all
        (b'[123456789012345678901234567890, "\\udfff"]', "application/json"),  # ...past the big-int fallback too
    ],
)
async def test_body_that_does_not_match_its_type_is_400_invalid_body(
    client: Client, autojump_clock: MockClock, data: bytes, content_type: str
) -> None:
    await put_queue(client)
    await check_error(
        await client.post(queue_path("q", "/messages"), data=data, headers={"Content-Type": content_type}),
        400,
        "invalid_body",
    )
    assert (await counts(client))["sent"] == 0


@pytest.mark.parametrize("content_type", [None, TEXT, "application/json"])
async def test_empty_body_is_400_empty_message(
    client: Client, autojump_clock: MockClock, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    await put_queue(client)
    for queue in ("q", "new"):
        response = await client.post(queue_path(queue, "/messages"), data=b"", headers=headers)
        await check_error(response, 400, "empty_message")
    assert (await counts(client))["sent"] == 0
    await check_error(await client.get(queue_path("new")), 404, "queue_not_found")


@pytest.mark.parametrize("content_type", [None, TEXT, "application/json"])
@pytest.mark.parametrize(("size", "accepted"), [(LIMIT - 1, True), (LIMIT, True), (LIMIT + 1, False)])
async def test_message_size_limit(
    client: Client, autojump_clock: MockClock, content_type: str | None, size: int, accepted: bool
) -> None:
    data = json.dumps("x" * (size - 2)).encode() if content_type == "application/json" else b"x" * size
    assert len(data) == size
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post(queue_path("q", "/messages"), data=data, headers=headers)
    if not accepted:
        assert str(LIMIT) in await check_error(response, 413, "message_too_large")
        await check_error(await client.get(queue_path("q")), 404, "queue_not_found")
        return
    await check(response, 201)
    _, body = shown_body(await receive_one(client))
    assert body == {None: data, TEXT: data.decode(), "application/json": "x" * (size - 2)}[content_type]


async def test_text_limit_counts_the_stored_utf8_bytes(client: Client, autojump_clock: MockClock) -> None:
    """Text is stored as UTF-8, and the limit applies to the stored body: 1024 latin-1 bytes of 'é' are 2048."""
    headers = {"Content-Type": "text/plain; charset=latin-1"}
    path = queue_path("q", "/messages")
    await check(await client.post(path, data=b"\xe9" * (LIMIT // 2), headers=headers), 201)
    await check_error(
        await client.post(path, data=b"\xe9" * (LIMIT // 2 + 1), headers=headers), 413, "message_too_large"
    )


async def test_send_creates_the_queue_with_default_attributes(client: Client, autojump_clock: MockClock) -> None:
    await check_error(await client.get(queue_path("new")), 404, "queue_not_found")
    await send(client, "new")
    reply = await stats(client, "new")
    assert reply["attributes"] == {**DEFAULT_ATTRIBUTES}
    assert (reply["ready"], reply["sent"]) == (1, 1)


async def test_ids_are_unique_and_increase_as_strings_in_send_order(client: Client, autojump_clock: MockClock) -> None:
    ids = [await send(client) for _ in range(5)]  # same instant
    await trio.sleep(0.5)
    ids += [await send(client) for _ in range(5)]
    await trio.sleep(1000)
    ids += [await send(client) for _ in range(3)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    received = await receive(client, max=MAX_BATCH) + await receive(client, max=MAX_BATCH)
    assert [lease["id"] for lease in received] == ids


# ---- a batch ----------------------------------------------------------------------------------------------------


async def send_batch(client: Client, entries: Any, queue: str = "q") -> Any:
    return await client.post(queue_path(queue, "/messages/batch"), json={"messages": entries})


async def test_batch_stores_every_kind_of_entry_in_order(client: Client, autojump_clock: MockClock) -> None:
    entries = [
        {"body": {"k": [1, 2.5, None, True]}},
        {"body": BIG},
        {"body": "a JSON string"},
        {"body": None},
        {"body": "plain text", "content_type": TEXT},
        {"body": "<p/>", "content_type": "text/html; charset=latin-1"},
        {"body_base64": b64(b"\x00\x01\xff")},
        {"body_base64": b64("café".encode("latin-1")), "content_type": "text/plain; charset=latin-1"},
        {"body_base64": b64(b'{"x": 1}'), "content_type": "application/json"},
        {"body": [1, {"y": 2}], "content_type": "application/vnd.x+json"},
    ]
    expected = [
        ("json", {"k": [1, 2.5, None, True]}, "application/json"),
        ("json", BIG, "application/json"),
        ("json", "a JSON string", "application/json"),
        ("json", None, "application/json"),
        ("text", "plain text", TEXT),
        ("text", "<p/>", "text/html; charset=latin-1"),
        ("base64", b"\x00\x01\xff", "application/octet-stream"),
        ("text", "café", "text/plain; charset=latin-1"),
        ("json", {"x": 1}, "application/json"),
        ("json", [1, {"y": 2}], "application/vnd.x+json"),
    ]
    reply = await check(await send_batch(client, entries), 201)
    assert set(reply) == {"ids"}
    assert len(reply["ids"]) == MAX_BATCH
    assert reply["ids"] == sorted(reply["ids"])
    assert len(set(reply["ids"])) == MAX_BATCH
    leases = await receive(client, max=MAX_BATCH)
    assert [lease["id"] for lease in leases] == reply["ids"]
    assert [(*shown_body(lease), lease["content_type"]) for lease in leases] == expected


async def test_batch_creates_the_queue(client: Client, autojump_clock: MockClock) -> None:
    await check(await send_batch(client, [{"body": 1}], "new"), 201)
    assert (await stats(client, "new"))["sent"] == 1


def entries_with(index: int, bad: Any, total: int = 4) -> list[Any]:
    """`total` good entries with `bad` at `index`."""
    return [bad if position == index else {"body": position} for position in range(total)]


@pytest.mark.parametrize(
    ("entries", "status", "code", "names"),
    [
        (entries_with(2, {"body_base64": "not base64!"}), 400, "invalid_body", "message 2"),
        (entries_with(2, {"body_base64": "QUJ"}), 400, "invalid_body", "message 2"),
        (entries_with(2, {"body_base64": "é"}), 400, "invalid_body", "message 2"),  # not ASCII: was a 500
        (entries_with(1, {"body": 1, "body_base64": "QUJD"}), 400, "invalid_parameter", "messages.1"),
        (entries_with(3, {"content_type": TEXT}), 400, "invalid_parameter", "messages.3"),
        (entries_with(1, {"body": 1, "priority": 2**31}), 400, "invalid_parameter", "message 1"),
        (entries_with(1, {"body": 1, "priority": 1.5}), 400, "invalid_parameter", "messages.1"),
        (entries_with(1, {"body": 1, "delay": 901}), 400, "invalid_parameter", "message 1"),
        (entries_with(1, {"body": 1, "colour": "red"}), 400, "invalid_parameter", "messages.1"),
        (entries_with(1, {"body": 1, "content_type": 5}), 400, "invalid_parameter", "messages.1"),
        (entries_with(0, "just a string"), 400, "invalid_parameter", "messages.0"),
        (entries_with(2, {"body_base64": b64(b"x" * (LIMIT + 1))}), 413, "message_too_large", "message 2"),
        (entries_with(2, {"body": "x" * (LIMIT + 1), "content_type": TEXT}), 413, "message_too_large", "message 2"),
        (entries_with(2, {"body": "x" * (LIMIT - 1)}), 413, "message_too_large", "message 2"),  # 1025 with quotes
        (entries_with(1, {"body_base64": ""}), 400, "empty_message", "message 1"),
        (entries_with(1, {"body": "", "content_type": TEXT}), 400, "empty_message", "message 1"),
        (entries_with(1, {"body": 5, "content_type": TEXT}), 400, "invalid_body", "message 1"),
        (entries_with(1, {"body": "x", "content_type": "image/png"}), 400, "invalid_body", "message 1"),
        (entries_with(1, {"body_base64": b64(b"\xff"), "content_type": TEXT}), 400, "invalid_body", "message 1"),
        (
            entries_with(1, {"body_base64": b64(b"{"), "content_type": "application/json"}),
            400,
            "invalid_body",
            "message 1",
        ),
        (entries_with(-1, {}, MAX_BATCH + 1), 400, "batch_too_large", "got 11"),
        ([], 400, "invalid_parameter", None),
        ("not a list", 400, "invalid_parameter", "messages"),
    ],
)
async def test_invalid_batch_fails_whole_and_stores_nothing(
    client: Client, autojump_clock: MockClock, entries: Any, status: int, code: str, names: str | None
) -> None:
    await send(client)
    before = await snapshot(client)
    for queue in ("q", "new"):
        message = await check_error(await send_batch(client, entries, queue), status, code)
        if names:
            assert names in message
    assert await snapshot(client) == before
    await check_error(await client.get(queue_path("new")), 404, "queue_not_found")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "invalid_body"),
        (b"{", "invalid_body"),
        (b'{"messages": [{"body": 1}, {"body": NaN}]}', "invalid_body"),
        (b'{"messages": [{"body": [Infinity]}]}', "invalid_body"),
        (b"{}", "invalid_parameter"),
        (b'{"messages": [{"body": 1}], "extra": 1}', "invalid_parameter"),
        (b"[]", "invalid_parameter"),
    ],
)
async def test_invalid_batch_request_body(client: Client, autojump_clock: MockClock, data: bytes, code: str) -> None:
    await send(client)
    before = await snapshot(client)
    headers = {"Content-Type": "application/json"}
    await check_error(await client.post(queue_path("q", "/messages/batch"), data=data, headers=headers), 400, code)
    assert await snapshot(client) == before


async def test_batch_entries_at_the_size_limit_are_accepted(client: Client, autojump_clock: MockClock) -> None:
    entries = [
        {"body_base64": b64(b"x" * LIMIT)},
        {"body": "x" * LIMIT, "content_type": TEXT},
        {"body": "x" * (LIMIT - 2)},  # 1024 bytes with its quotes
    ]
    reply = await check(await send_batch(client, entries), 201)
    assert len(reply["ids"]) == 3
    assert (await counts(client))["ready"] == 3


async def test_batch_entry_with_a_lone_surrogate_is_refused(client: Client, autojump_clock: MockClock) -> None:
    data = b'{"messages": [{"body": "fine"}, {"body": ["\\ud800"]}]}'
    reply = await client.post(
        queue_path("q", "/messages/batch"), data=data, headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 400
    body = await reply.get_json()
    assert body["error"]["code"] == "invalid_body"
    await put_queue(client)
    assert (await counts(client))["sent"] == 0


@pytest.mark.parametrize(("depth", "status"), [(150, 201), (300, 400), (510, 400)])
async def test_json_nesting_limit_is_the_same_for_single_and_batch_sends(
    client: Client, autojump_clock: MockClock, depth: int, status: int
) -> None:
    nested = "[" * depth + "]" * depth
    single = await client.post(
        queue_path("q", "/messages"), data=nested.encode(), headers={"Content-Type": "application/json"}
    )
    batch_data = ('{"messages": [{"body": ' + nested + "}]}").encode()
    batch = await client.post(
        queue_path("q", "/messages/batch"), data=batch_data, headers={"Content-Type": "application/json"}
    )
    assert (single.status_code, batch.status_code) == (status, status)
    if status == 400:
        await check_error(single, 400, "invalid_body")
        await check_error(batch, 400, "invalid_body")
    else:
        leases = await receive(client, max=2)
        assert [json.dumps(lease["body"], separators=(",", ":")) for lease in leases] == [nested, nested]


async def test_single_send_takes_delay_and_priority_as_query_parameters(
    client: Client, autojump_clock: MockClock
) -> None:
    reply = await client.post(
        queue_path("q", "/messages?delay=5&priority=-3"), data=b"x", headers={"Content-Type": TEXT}
    )
    message_id = (await check(reply, 201))["id"]
    await send(client, body="plain")
    (delayed,) = (await peek(client, state="delayed"))["messages"]
    assert (delayed["id"], delayed["priority"], delayed["visible_at"]) == (message_id, -3, wall_now() + 5)
    assert [lease["body"] for lease in await receive(client, max=5)] == ["plain"]
    await trio.sleep(5)
    (lease,) = await receive(client, max=5)
    assert (lease["id"], lease["priority"]) == (message_id, -3)


@pytest.mark.parametrize(
    "query", ["delay=901", "delay=-1", "delay=soon", "priority=1.5", "priority=2147483648", "nope=1"]
)
async def test_bad_send_options_are_400(client: Client, autojump_clock: MockClock, query: str) -> None:
    await put_queue(client)
    reply = await client.post(queue_path("q", f"/messages?{query}"), data=b"x", headers={"Content-Type": TEXT})
    await check_error(reply, 400, "invalid_parameter")
    assert (await counts(client))["sent"] == 0


async def test_batch_entries_have_their_own_delay_and_priority(client: Client, autojump_clock: MockClock) -> None:
    await put_queue(client, delay=2)
    entries = [
        {"body": "queue-delay"},
        {"body": "now-low", "delay": 0, "priority": 9},
        {"body": "now-high", "delay": 0, "priority": -9},
        {"body": "later", "delay": 10},
    ]
    await check(await client.post(queue_path("q", "/messages/batch"), json={"messages": entries}), 201)
    assert (await counts(client))["delayed"] == 2
    held = 100  # seconds: no lease ends during the test
    assert [m["body"] for m in await receive(client, max=10, visibility_timeout=held)] == ["now-high", "now-low"]
    await trio.sleep(2)
    assert [m["body"] for m in await receive(client, max=10, visibility_timeout=held)] == ["queue-delay"]
    await trio.sleep(8)
    assert [m["body"] for m in await receive(client, max=10, visibility_timeout=held)] == ["later"]


async def test_a_long_poll_gets_a_delayed_message_when_its_delay_ends(
    client: Client, autojump_clock: MockClock
) -> None:
    await client.post(queue_path("q", "/messages?delay=3"), data=b"x", headers={"Content-Type": TEXT})
    started = trio.current_time()
    (lease,) = await receive(client, wait=20)
    assert 3 <= trio.current_time() - started <= 3 + 0.11  # within a tick of the delay's end
    assert lease["body"] == "x"


async def test_an_idempotency_key_makes_a_retried_send_return_the_first_id(
    client: Client, autojump_clock: MockClock
) -> None:
    headers = {"Content-Type": TEXT, "Idempotency-Key": "charge-42"}
    first = (await check(await client.post(queue_path("q", "/messages"), data=b"x", headers=headers), 201))["id"]
    await trio.sleep(299)
    retry = await client.post(queue_path("q", "/messages"), data=b"x", headers=headers)
    assert (await check(retry, 201))["id"] == first
    assert (await counts(client))["sent"] == 1
    await trio.sleep(1)  # 300 s after the first: a new message
    later = await client.post(queue_path("q", "/messages"), data=b"x", headers=headers)
    assert (await check(later, 201))["id"] != first
    bad = await client.post(queue_path("q", "/messages"), data=b"x", headers={**headers, "Idempotency-Key": "a b"})
    await check_error(bad, 400, "invalid_parameter")


async def test_batch_entries_deduplicate_by_dedup_id(client: Client, autojump_clock: MockClock) -> None:
    entries = [{"body": 1, "dedup_id": "a"}, {"body": 2, "dedup_id": "b"}, {"body": 3, "dedup_id": "a"}]
    ids = (await check(await client.post(queue_path("q", "/messages/batch"), json={"messages": entries}), 201))["ids"]
    assert ids[0] == ids[2] != ids[1]
    again = [{"body": 4, "dedup_id": "b"}, {"body": 5}]
    more = (await check(await client.post(queue_path("q", "/messages/batch"), json={"messages": again}), 201))["ids"]
    assert more[0] == ids[1]
    assert [m["body"] for m in await receive(client, max=10)] == [1, 2, 5]
