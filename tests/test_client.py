"""The Python client: its pure request/reply functions, then every method end to end against real servers.

Each end-to-end scenario runs twice: the blocking `Client` (driven from worker threads) against a server
subprocess, and `AsyncClient` against the whole server in this trio run on a real socket.
"""

from __future__ import annotations

import base64
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from typing import Any, cast

import httpx
import pytest
import trio

from tests.servers import ServerProcess, server_process, serving
from tests.test_http import DEFAULT_ATTRIBUTES
from wonderq.client import (
    AckFailure,
    AsyncClient,
    Call,
    Client,
    OutgoingMessage,
    RedriveResult,
    WonderQClientError,
    WonderQConnectionError,
    batch_entry,
    check_base_url,
    encode_body,
    error_from_response,
    finish,
    get_queue_call,
    receive_call,
    send_call,
)

# ---- pure functions -------------------------------------------------------------------------------------


def test_bodies_are_carried_by_their_python_type() -> None:
    assert encode_body(b"\x00\xff") == (b"\x00\xff", "application/octet-stream")
    assert encode_body("héllo") == ("héllo".encode(), "text/plain; charset=utf-8")
    assert encode_body({"a": [1, None]}) == (b'{"a":[1,null]}', "application/json")
    assert encode_body(10**30) == (b"1" + b"0" * 30, "application/json")
    assert encode_body("[1]", "application/json") == (b"[1]", "application/json")  # JSON text, sent as given
    with pytest.raises(ValueError, match="JSON"):
        encode_body(float("nan"))  # the server would refuse it; fail before sending


def test_batch_entries() -> None:
    assert batch_entry(b"\x00") == {"body_base64": base64.b64encode(b"\x00").decode()}
    assert batch_entry("hi") == {"body": "hi", "content_type": "text/plain; charset=utf-8"}
    assert batch_entry(None) == {"body": None}
    assert batch_entry(OutgoingMessage({"a": 1}, attributes={"k": "v"}, priority=2, dedup_id="d")) == {
        "body": {"a": 1},
        "attributes": {"k": "v"},
        "priority": 2,
        "dedup_id": "d",
    }
    assert batch_entry(OutgoingMessage("<a/>", content_type="application/xml", delay=1)) == {
        "body_base64": base64.b64encode(b"<a/>").decode(),
        "content_type": "application/xml",
        "delay": 1,
    }


def test_paths_are_escaped_so_every_name_reaches_the_server() -> None:
    assert get_queue_call("jobs").path == "/v1/queues/jobs"
    assert get_queue_call("a/b").path == "/v1/queues/a%2Fb"
    assert get_queue_call("..").path == "/v1/queues/%2E%2E"


def test_a_long_poll_gets_its_wait_on_top_of_the_read_timeout() -> None:
    timeout = receive_call("q", wait=20).timeout(10)
    assert timeout.read == 30
    assert timeout.connect == 10
    assert receive_call("q").timeout(10).read == 10


def test_error_replies_become_client_errors() -> None:
    reply = httpx.Response(409, json={"error": {"code": "lease_lost", "message": "too late"}})
    error = error_from_response(reply)
    assert (error.status, error.code, error.message) == (409, "lease_lost", "too late")

    proxy = httpx.Response(502, text="<html>\n  Bad   gateway </html>")
    error = error_from_response(proxy)
    assert (error.status, error.code, error.message) == (502, "http_502", "<html> Bad gateway </html>")

    with pytest.raises(WonderQClientError) as raised:
        finish(send_call("q", "x"), reply)
    assert raised.value.code == "lease_lost"


def test_a_reply_that_cannot_be_read_is_a_client_error() -> None:
    with pytest.raises(WonderQClientError) as raised:
        finish(send_call("q", "x"), httpx.Response(201, json={"no_id": 1}))
    assert (raised.value.status, raised.value.code) == (201, "invalid_response")
    with pytest.raises(WonderQClientError, match="invalid_response"):
        finish(receive_call("q"), httpx.Response(200, content=b"not json"))
    deep = b'{"messages": [{"body": ' + b"[" * 5000 + b"]" * 5000 + b', "encoding": "json"}]}'
    with pytest.raises(WonderQClientError, match=r"invalid_response: .*nested too deeply"):
        finish(receive_call("q"), httpx.Response(200, content=deep))


def test_base_urls_are_checked() -> None:
    assert check_base_url("http://127.0.0.1:3000/") == "http://127.0.0.1:3000"
    assert check_base_url("https://mq.example/prefix") == "https://mq.example/prefix"
    for bad in ("127.0.0.1:3000", "ftp://host", "http://", "nonsense"):
        with pytest.raises(ValueError, match="invalid URL"):
            Client(bad)


def test_call_is_a_plain_value() -> None:
    call = receive_call("q", max=3, wait=1.5, consumer="c")
    assert isinstance(call, Call)
    assert (call.method, call.path, call.wait) == ("POST", "/v1/queues/q/receive", 1.5)
    assert call.content == b'{"max":3,"wait":1.5,"consumer":"c"}'


# ---- end to end -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with server_process() as process:
        yield process


class InThreads:
    """A blocking Client driven from trio through worker threads, so one async scenario covers both clients."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await trio.to_thread.run_sync(partial(method, *args, **kwargs))

        return call


@pytest.fixture(params=["sync-subprocess", "async-in-process"])
async def api(request: pytest.FixtureRequest, server: ServerProcess) -> AsyncIterator[AsyncClient]:
    if request.param == "sync-subprocess":
        with Client(server.url) as client:
            yield cast(AsyncClient, InThreads(client))
    else:
        async with serving() as url, AsyncClient(url) as client:
            yield client


@pytest.fixture
def queue() -> str:
    return f"q-{uuid.uuid4().hex[:12]}"


async def test_health(api: AsyncClient) -> None:
    health = await api.health()
    assert health["status"] == "ok"


async def test_queue_lifecycle(api: AsyncClient, queue: str) -> None:
    stats, created = await api.create_queue(queue, visibility_timeout=7)
    assert created
    assert (stats["name"], stats["attributes"]["visibility_timeout"], stats["ready"]) == (queue, 7, 0)
    stats, created = await api.create_queue(queue)
    assert not created
    assert stats["attributes"]["visibility_timeout"] == 7  # unchanged when not given
    stats, _ = await api.create_queue(queue, max_in_flight=2)
    assert stats["attributes"] == {**DEFAULT_ATTRIBUTES, "visibility_timeout": 7, "max_in_flight": 2}
    stats, _ = await api.create_queue(queue, max_in_flight=0, delay=2.5)
    assert (stats["attributes"]["max_in_flight"], stats["attributes"]["delay"]) == (0, 2.5)
    stats, _ = await api.create_queue(queue, delay=0)

    await api.send_batch(queue, ["a", "b", "c"])
    assert (await api.get_queue(queue))["ready"] == 3
    assert queue in [stats["name"] for stats in await api.list_queues()]
    assert await api.purge(queue) == 3
    assert (await api.get_queue(queue))["ready"] == 0

    await api.delete_queue(queue)
    with pytest.raises(WonderQClientError) as raised:
        await api.get_queue(queue)
    assert (raised.value.status, raised.value.code) == (404, "queue_not_found")
    assert queue not in [stats["name"] for stats in await api.list_queues()]


async def test_dead_letters_attributes_retention_and_redrive(api: AsyncClient, queue: str) -> None:
    dlq = f"{queue}-dlq"
    await api.create_queue(dlq, retention=1_209_600)
    stats, _ = await api.create_queue(queue, max_receives=1, dead_letter_queue=dlq, retention=60, visibility_timeout=30)
    assert {key: stats["attributes"][key] for key in ("max_receives", "dead_letter_queue", "retention")} == {
        "max_receives": 1,
        "dead_letter_queue": dlq,
        "retention": 60,
    }
    single = await api.send(queue, "one", attributes={"kind": "single", "n": "1"})
    first, second = await api.send_batch(
        queue, [OutgoingMessage("two", attributes={"kind": "batch"}, priority=-1), "three"], priority=5
    )
    leases = await api.receive(queue, max=3)
    assert [(m.id, m.priority, dict(m.attributes)) for m in leases] == [
        (first, -1, {"kind": "batch"}),
        (single, 0, {"kind": "single", "n": "1"}),
        (second, 5, {}),
    ]
    for lease in leases:
        await api.change_visibility(queue, lease.id, lease.receipt, 0)  # the only delivery allowed: dead letters
    page = await api.peek(dlq)
    assert [(m.id, m.source_queue, m.receive_count) for m in page.messages] == [
        (single, queue, 1),
        (first, queue, 1),
        (second, queue, 1),
    ]
    assert dict(page.messages[0].attributes) == {"kind": "single", "n": "1"}
    with pytest.raises(WonderQClientError) as raised:
        await api.delete_queue(dlq)
    assert (raised.value.status, raised.value.code) == (409, "queue_in_use")
    assert await api.redrive(dlq, max=2) == RedriveResult(moved=2, skipped=0)
    with pytest.raises(WonderQClientError) as raised:
        await api.redrive(dlq, destination=dlq)
    assert (raised.value.status, raised.value.code) == (400, "invalid_parameter")
    stats, _ = await api.create_queue(queue, max_receives=0, dead_letter_queue="")
    assert stats["attributes"]["dead_letter_queue"] is None
    assert await api.redrive(dlq) == RedriveResult(moved=1, skipped=0)
    assert (await api.get_queue(queue))["ready"] == 3
    await api.delete_queue(dlq)


async def test_fifo_groups(api: AsyncClient, queue: str) -> None:
    fifo = f"{queue}.fifo"
    a1 = await api.send(fifo, "a1", group="a")
    b1, a2 = await api.send_batch(fifo, [OutgoingMessage("b1", group="b"), OutgoingMessage("a2", group="a")])
    first = await api.receive(fifo, max=1)
    assert [(m.id, m.group) for m in first] == [(a1, "a")]
    assert [m.id for m in await api.receive(fifo, max=10)] == [b1]  # a waits for a1
    await api.ack(fifo, first[0].id, first[0].receipt)
    assert [m.id for m in await api.receive(fifo, max=10)] == [a2]
    assert [m.group for m in (await api.peek(fifo)).messages] == ["b", "a"]  # b1, a2 (a1 is acked)
    keyed = await api.send(queue, "once", idempotency_key="key-1")
    (delivered,) = await api.receive(queue)
    assert (delivered.id, delivered.dedup_id) == (keyed, "key-1")


async def test_bodies_round_trip_by_type(api: AsyncClient, queue: str) -> None:
    ids = [
        await api.send(queue, b"\x00\x01\xff"),
        await api.send(queue, "héllo"),
        await api.send(queue, {"n": 10**30, "list": [1.5, None, True]}),
        await api.send(queue, '{"raw": 1}', content_type="application/json"),
        await api.send(queue, b"<a/>", content_type="application/xml"),
    ]
    batch_ids = await api.send_batch(queue, [b"\x02", "text", {"k": "v"}, None])
    messages = await api.receive(queue, max=10)
    assert [m.id for m in messages] == ids + batch_ids  # oldest first
    assert [m.body for m in messages] == [
        b"\x00\x01\xff",
        "héllo",
        {"n": 10**30, "list": [1.5, None, True]},
        {"raw": 1},
        b"<a/>",
        b"\x02",
        "text",
        {"k": "v"},
        None,
    ]
    assert [m.content_type for m in messages[:5]] == [
        "application/octet-stream",
        "text/plain; charset=utf-8",
        "application/json",
        "application/json",
        "application/xml",
    ]


async def test_receive_leases_for_the_time_asked(api: AsyncClient, queue: str) -> None:
    await api.create_queue(queue, visibility_timeout=30)
    await api.send_batch(queue, ["a", "b", "c"])
    before = time.time()
    first, second = await api.receive(queue, max=2, visibility_timeout=100, consumer="worker-1")
    assert (first.body, second.body) == ("a", "b")
    assert first.receipt != second.receipt
    assert first.receive_count == 1
    assert first.consumer == "worker-1"
    assert before + 99 < first.lease_expires_at < time.time() + 101
    assert before - 1 < first.sent_at < time.time() + 1
    assert first.sent_at <= first.first_received_at < time.time() + 1
    (third,) = await api.receive(queue, max=5)
    assert third.consumer is None
    assert third.lease_expires_at < time.time() + 31  # the queue's own visibility timeout
    assert await api.receive(queue) == []


async def test_send_options_reach_the_broker(api: AsyncClient, queue: str) -> None:
    await api.send(queue, "low", priority=9)
    await api.send_batch(queue, ["high-1", "high-2"], priority=-9)
    await api.send(queue, "later", delay=900)
    await api.send_batch(queue, [b"later too"], delay=900, priority=-100)
    received = await api.receive(queue, max=10)
    assert [(m.body, m.priority) for m in received] == [("high-1", -9), ("high-2", -9), ("low", 9)]
    page = await api.peek(queue, state="delayed")
    assert [(m.body, m.priority, m.visible_at is not None) for m in page.messages] == [
        ("later", 0, True),
        (b"later too", -100, True),
    ]


async def test_idempotency_key(api: AsyncClient, queue: str) -> None:
    first = await api.send(queue, "charge", idempotency_key="charge-1")
    assert await api.send(queue, "charge", idempotency_key="charge-1") == first
    assert await api.send(queue, "charge", idempotency_key="charge-2") != first
    assert (await api.get_queue(queue))["sent"] == 2


async def test_ack_settles_exactly_one_delivery(api: AsyncClient, queue: str) -> None:
    await api.send(queue, "job")
    (first,) = await api.receive(queue)
    assert await api.change_visibility(queue, first.id, first.receipt, 0) is None  # released at once
    (second,) = await api.receive(queue)
    assert second.id == first.id
    assert second.receive_count == 2
    assert second.first_received_at == first.first_received_at

    with pytest.raises(WonderQClientError) as raised:
        await api.ack(queue, first.id, first.receipt)  # the earlier delivery's receipt is dead
    assert (raised.value.status, raised.value.code) == (409, "lease_lost")

    await api.ack(queue, second.id, second.receipt)
    with pytest.raises(WonderQClientError) as raised:
        await api.ack(queue, second.id, second.receipt)
    assert (raised.value.status, raised.value.code) == (404, "message_not_found")
    assert (await api.get_queue(queue))["acked"] == 1


async def test_ack_batch_reports_each_receipt(api: AsyncClient, queue: str) -> None:
    await api.send_batch(queue, ["a", "b"])
    a, b = await api.receive(queue, max=2)
    await api.ack(queue, b.id, b.receipt)
    result = await api.ack_batch(queue, [a.receipt, b.receipt, "junk"])
    assert result.acked == (a.receipt,)
    assert [(f.receipt, f.code) for f in result.failed] == [
        (b.receipt, "message_not_found"),
        ("junk", "invalid_receipt"),
    ]
    assert all(isinstance(f, AckFailure) and f.message for f in result.failed)
    assert not result.ok


async def test_change_visibility_extends_the_lease(api: AsyncClient, queue: str) -> None:
    await api.send(queue, "job")
    (message,) = await api.receive(queue, visibility_timeout=5)
    deadline = await api.change_visibility(queue, message.id, message.receipt, 600)
    assert deadline is not None
    assert deadline > message.lease_expires_at + 500
    (view,) = (await api.peek(queue, state="leased")).messages
    assert view.lease_expires_at == deadline
    await api.ack(queue, message.id, message.receipt)  # the receipt survives the extension


async def test_peek_pages_and_filters_without_changing_anything(api: AsyncClient, queue: str) -> None:
    ids = await api.send_batch(queue, ["a", "b", "c", b"d"])
    (leased,) = await api.receive(queue, consumer="w")

    first = await api.peek(queue, limit=3)
    assert [m.id for m in first.messages] == ids[:3]
    assert first.next_after == ids[2]
    rest = await api.peek(queue, limit=3, after=first.next_after)
    assert [m.id for m in rest.messages] == ids[3:]
    assert rest.messages[0].body == b"d"
    assert rest.next_after is None

    (view,) = (await api.peek(queue, state="leased")).messages
    assert (view.id, view.state, view.consumer, view.body) == (leased.id, "leased", "w", "a")
    ready = (await api.peek(queue, state="ready")).messages
    assert [(m.state, m.lease_expires_at) for m in ready] == [("ready", None)] * 3
    stats = await api.get_queue(queue)
    assert (stats["ready"], stats["leased"]) == (3, 1)


async def test_server_errors_carry_status_code_and_message(api: AsyncClient, queue: str) -> None:
    missing = "never-created-" + queue
    cases: list[tuple[Callable[[], Awaitable[object]], int, str]] = [
        (lambda: api.get_queue("bad name!"), 400, "invalid_queue_name"),
        (lambda: api.send(queue, ""), 400, "empty_message"),
        (lambda: api.send(queue, "{", content_type="application/json"), 400, "invalid_body"),
        (lambda: api.receive(missing), 404, "queue_not_found"),
        (lambda: api.purge(missing), 404, "queue_not_found"),
        (lambda: api.delete_queue(missing), 404, "queue_not_found"),
        (lambda: api.create_queue(queue, visibility_timeout=-1), 400, "invalid_parameter"),
        (lambda: api.receive(queue, max=0), 400, "invalid_parameter"),
        (lambda: api.receive(queue, wait=60), 400, "invalid_parameter"),
        (lambda: api.peek(queue, state="gone"), 400, "invalid_parameter"),
        (lambda: api.ack_batch(queue, []), 400, "invalid_parameter"),
        (lambda: api.ack(queue, "x", "junk"), 404, "message_not_found"),
        (lambda: api.change_visibility(queue, "x", "x.y", 5), 404, "message_not_found"),
    ]
    await api.create_queue(queue)
    for call, status, code in cases:
        with pytest.raises(WonderQClientError) as raised:
            await call()
        assert (raised.value.status, raised.value.code) == (status, code)
        assert raised.value.message
        assert str(raised.value) == f"{code}: {raised.value.message}"


async def test_a_long_poll_outlasts_the_client_timeout(queue: str) -> None:
    async with serving() as url, AsyncClient(url, timeout=0.2) as client:
        await client.create_queue(queue)
        started = trio.current_time()
        assert await client.receive(queue, wait=0.6) == []  # the server held the request for its whole wait
        assert trio.current_time() - started >= 0.6
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send, queue, "late")  # answers a parked poll at once
            messages = await client.receive(queue, wait=10)
        assert [m.body for m in messages] == ["late"]


# ---- failures without a reply ---------------------------------------------------------------------------


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens here now


def test_connection_failure_is_a_clear_error(closed_port_url: str) -> None:
    with Client(closed_port_url) as client, pytest.raises(WonderQConnectionError) as raised:
        client.health()
    error = raised.value
    assert isinstance(error, WonderQClientError)
    assert (error.status, error.code) == (None, "connection_failed")
    assert closed_port_url in error.message


async def test_async_connection_failure_is_a_clear_error(closed_port_url: str) -> None:
    async with AsyncClient(closed_port_url) as client:
        with pytest.raises(WonderQConnectionError) as raised:
            await client.send("q", "x")
    assert raised.value.code == "connection_failed"


def test_no_reply_in_time_is_a_timeout_error() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with Client(f"http://127.0.0.1:{port}", timeout=0.2) as client, pytest.raises(WonderQConnectionError) as raised:
            client.health()
    assert (raised.value.status, raised.value.code) == (None, "timeout")
