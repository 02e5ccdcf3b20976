"""HTTP API tests, part 1: the helpers every tests/test_http_*.py module shares, then the service route, routing
errors, request limits and queue names.

Tests run the app in-process (the `client` fixture) on trio's virtual clock (`autojump_clock`): sleeps
are instant and elapsed times are exact. The fixture starts the clock at trio time 0, which the actor's wall
clock maps to `EPOCH`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import pytest
import trio
from quart import Response
from quart.typing import TestClientProtocol as Client
from trio.testing import MockClock

from tests.helpers import EPOCH, make_core, settings
from wonderq import __version__
from wonderq.actor import Actor
from wonderq.clock import WallClock
from wonderq.commands import StopParking
from wonderq.config import Settings
from wonderq.web import create_app

Json = Any
COUNTERS = (
    "ready",
    "leased",
    "delayed",
    "sent",
    "received",
    "acked",
    "expired",
    "released",
    "dropped",
    "dead_lettered",
    "redriven",
    "dead_letters",
)
TEXT = "text/plain"
DEFAULT_VISIBILITY_TIMEOUT = 10.0  # seconds: Settings.default_processing_time, which the test settings keep
DEFAULT_ATTRIBUTES = {  # a new queue's attributes in the test settings
    "visibility_timeout": DEFAULT_VISIBILITY_TIMEOUT,
    "max_in_flight": 0,
    "delay": 0.0,
    "max_message_bytes": 0,
    "retention": 345_600.0,
    "max_receives": 0,
    "dead_letter_queue": None,
}

# ---- shared helpers -------------------------------------------------------------------------------------------


@pytest.fixture
def app_settings(request: pytest.FixtureRequest) -> Settings:
    """The test settings, with overrides from indirect parametrization: `parametrize("app_settings", [{...}])`."""
    return settings(**getattr(request, "param", {}))


async def check(response: Response, status: int) -> Json:
    """The decoded JSON reply (None when the body is empty), after checking the status."""
    data = await response.get_data()
    assert response.status_code == status, data
    if not data:
        return None
    assert response.mimetype == "application/json"
    return json.loads(data)  # the standard library: replies may hold integers beyond 64 bits


async def check_error(response: Response, status: int, code: str) -> str:
    """Check that the reply is the one error shape, `{"error": {"code", "message"}}`; returns the message."""
    reply = await check(response, status)
    assert isinstance(reply, dict), reply
    assert set(reply) == {"error"}, reply
    assert set(reply["error"]) == {"code", "message"}, reply
    assert reply["error"]["code"] == code, reply
    message = reply["error"]["message"]
    assert isinstance(message, str)
    assert message
    return message


async def call(client: Client, method: str, path: str, **kwargs: Any) -> Response:
    """A request by method name (the typed `open` insists on a `json` argument)."""
    request: Callable[..., Awaitable[Response]] = getattr(client, method.lower())
    return await request(path, **kwargs)


def queue_path(queue: str, suffix: str = "") -> str:
    return f"/v1/queues/{queue}{suffix}"


async def put_queue(client: Client, queue: str = "q", status: int = 201, **attributes: Any) -> Json:
    return await check(await client.put(queue_path(queue), json=attributes), status)


async def send(client: Client, queue: str = "q", body: bytes | str = "m", content_type: str | None = TEXT) -> str:
    """Send one message; returns its id."""
    headers = {"Content-Type": content_type} if content_type else {}
    reply = await check(await client.post(queue_path(queue, "/messages"), data=body, headers=headers), 201)
    assert set(reply) == {"id"}
    assert isinstance(reply["id"], str)
    return str(reply["id"])


async def send_texts(client: Client, count: int, queue: str = "q", prefix: str = "m") -> list[str]:
    """Send the text messages m0, m1, ... one by one; returns their ids."""
    return [await send(client, queue, f"{prefix}{index}") for index in range(count)]


async def receive(client: Client, queue: str = "q", **params: Any) -> list[Json]:
    """One receive with its parameters in a JSON body; returns the leases."""
    reply = await check(await client.post(queue_path(queue, "/receive"), json=params), 200)
    assert set(reply) == {"messages"}
    messages: list[Json] = reply["messages"]
    return messages


async def receive_one(client: Client, queue: str = "q", **params: Any) -> Json:
    messages = await receive(client, queue, **params)
    assert len(messages) == 1, messages
    return messages[0]


async def stats(client: Client, queue: str = "q") -> Json:
    return await check(await client.get(queue_path(queue)), 200)


async def counts(client: Client, queue: str = "q") -> dict[str, int]:
    reply = await stats(client, queue)
    return {key: reply[key] for key in COUNTERS}


async def peek(client: Client, queue: str = "q", **params: Any) -> Json:
    return await check(await client.get(queue_path(queue, "/messages"), query_string=params), 200)


async def snapshot(client: Client, queue: str = "q") -> tuple[dict[str, int], list[Json]]:
    """All that can be seen of a queue without changing it: its counters and every message as peek shows it."""
    return await counts(client, queue), (await peek(client, queue, limit=1000))["messages"]


async def ack(client: Client, message_id: str, receipt: str | None, queue: str = "q") -> Response:
    query = {} if receipt is None else {"receipt": receipt}
    return await client.delete(queue_path(queue, f"/messages/{message_id}"), query_string=query)


async def change_visibility(client: Client, message_id: str, body: Mapping[str, Any], queue: str = "q") -> Response:
    return await client.patch(queue_path(queue, f"/messages/{message_id}"), json=dict(body))


def wall_now() -> float:
    """The broker's clock (epoch seconds) at the current trio time."""
    return EPOCH + trio.current_time()


async def sleep_until_wall(at: float) -> None:
    """Let virtual time run until the broker's clock reads `at` (epoch seconds)."""
    await trio.sleep_until(at - EPOCH)


# ---- /health ----------------------------------------------------------------------------------------------------


async def test_health_reports_version_and_parked_receives(client: Client, autojump_clock: MockClock) -> None:
    idle = {"status": "ok", "version": __version__, "backlog": 0, "parked_receives": 0}
    assert await check(await client.get("/health"), 200) == idle
    await put_queue(client)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(receive, client, "q", wait=5))  # parks for 5 s
        await trio.sleep(1)
        assert (await check(await client.get("/health"), 200))["parked_receives"] == 1
    assert await check(await client.get("/health"), 200) == idle


# ---- routing errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/v1"),
        ("GET", "/v1/queues/q/nope"),
        ("POST", "/v1/queues/q/messages/batch/more"),
        ("PUT", "/v1/queues/"),
        ("GET", "/processMessage"),
    ],
)
async def test_unknown_route_is_404_not_found(
    client: Client, autojump_clock: MockClock, method: str, path: str
) -> None:
    await check_error(await call(client, method, path), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/health", {"GET"}),
        ("DELETE", "/v1/queues", {"GET"}),
        ("POST", "/v1/queues/q", {"GET", "PUT", "DELETE"}),
        ("GET", "/v1/queues/q/purge", {"POST"}),
        ("PUT", "/v1/queues/q/messages", {"GET", "POST"}),
        ("GET", "/v1/queues/q/messages/batch", {"POST"}),
        ("GET", "/v1/queues/q/receive", {"POST"}),
        ("GET", "/v1/queues/q/messages/some-id", {"DELETE", "PATCH"}),
        ("GET", "/v1/queues/q/ack", {"POST"}),
        ("GET", "/addMessage", {"POST"}),
        ("POST", "/readMessage", {"GET"}),
        ("GET", "/processMessage/some-id", {"PATCH"}),
        ("PUT", "/", {"GET", "POST"}),  # the dashboard, and the SQS endpoint
    ],
)
async def test_wrong_method_is_405_with_allow_header(
    client: Client, autojump_clock: MockClock, method: str, path: str, allowed: set[str]
) -> None:
    response = await call(client, method, path)
    await check_error(response, 405, "method_not_allowed")
    assert allowed <= {part.strip() for part in response.headers["Allow"].split(",")}


def batch_json(size: int, message_bytes: int = 1000) -> bytes:
    """A valid two-message batch request of exactly `size` bytes (each message at most `message_bytes`)."""

    def encode(first: int, second: int) -> bytes:
        entries = [{"body": "a" * first, "content_type": TEXT}, {"body": "b" * second, "content_type": TEXT}]
        return json.dumps({"messages": entries}, separators=(",", ":")).encode()

    second = size - len(encode(message_bytes, 0))
    assert 0 < second <= message_bytes
    data = encode(message_bytes, second)
    assert len(data) == size
    return data


@pytest.mark.parametrize("app_settings", [{"max_request_bytes": 2048}], indirect=True)
@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("PUT", ""),
        ("POST", "/messages/batch"),
        ("POST", "/receive"),
        ("POST", "/ack"),
        ("PATCH", "/messages/some-id"),
    ],
)
async def test_body_over_max_request_bytes_is_413_request_too_large(
    client: Client, autojump_clock: MockClock, method: str, suffix: str
) -> None:
    await put_queue(client)
    before = await snapshot(client)
    response = await call(client, method, queue_path("q", suffix), data=b" " * 2049)
    await check_error(response, 413, "request_too_large")
    assert await snapshot(client) == before


@pytest.mark.parametrize("app_settings", [{"max_request_bytes": 2048}], indirect=True)
async def test_batch_request_size_limit_is_inclusive(client: Client, autojump_clock: MockClock) -> None:
    await put_queue(client)
    path = queue_path("q", "/messages/batch")
    headers = {"Content-Type": "application/json"}
    await check_error(await client.post(path, data=batch_json(2049), headers=headers), 413, "request_too_large")
    assert (await counts(client))["sent"] == 0
    reply = await check(await client.post(path, data=batch_json(2048), headers=headers), 201)
    assert len(reply["ids"]) == 2


async def test_single_message_over_both_limits_is_message_too_large(client: Client, autojump_clock: MockClock) -> None:
    """A message body is held to max_message_bytes, which is never above max_request_bytes."""
    too_big = b"x" * (64 * 1024 + 1)
    await check_error(await client.post(queue_path("q", "/messages"), data=too_big), 413, "message_too_large")
    await check_error(await client.post("/addMessage", data=too_big), 413, "message_too_large")


# ---- queue names ------------------------------------------------------------------------------------------------

BAD_NAMES = ["a" * 81, "a%20b", "a.b", "a+b", "%C3%A9", "a%2Bb"]
ROUTES_WITH_A_QUEUE = [
    ("PUT", "", {}),
    ("GET", "", {}),
    ("DELETE", "", {}),
    ("POST", "/purge", {}),
    ("POST", "/messages", {"data": b"m"}),
    ("POST", "/messages/batch", {"json": {"messages": [{"body": 1}]}}),
    ("POST", "/receive", {}),
    ("DELETE", "/messages/some-id", {"query_string": {"receipt": "some-id.t1"}}),
    ("POST", "/ack", {"json": {"receipts": ["some-id.t1"]}}),
    ("PATCH", "/messages/some-id", {"json": {"receipt": "some-id.t1", "visibility_timeout": 1}}),
    ("GET", "/messages", {}),
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=["81-chars", "space", "dot", "plus", "e-acute", "encoded-plus"])
@pytest.mark.parametrize(
    ("method", "suffix", "kwargs"),
    ROUTES_WITH_A_QUEUE,
    ids=[f"{method} {suffix}" for method, suffix, _ in ROUTES_WITH_A_QUEUE],
)
async def test_invalid_queue_name_is_400_on_every_route(
    client: Client, autojump_clock: MockClock, name: str, method: str, suffix: str, kwargs: dict[str, Any]
) -> None:
    response = await call(client, method, queue_path(name, suffix), **kwargs)
    await check_error(response, 400, "invalid_queue_name")
    queues = await check(await client.get("/v1/queues"), 200)
    assert [queue["name"] for queue in queues["queues"]] == ["default"]


@pytest.mark.parametrize("name", ["a" * 80, "x", "Az09_-", "-", "_"], ids=["80-chars", "x", "Az09_-", "-", "_"])
async def test_valid_queue_names(client: Client, autojump_clock: MockClock, name: str) -> None:
    assert (await put_queue(client, name))["name"] == name
    await send(client, name)
    assert (await stats(client, name))["ready"] == 1


# ---- shutting down ----------------------------------------------------------------------------------------------


async def test_shutdown_ends_long_polls_then_refuses_with_503(
    app_settings: Settings, autojump_clock: MockClock
) -> None:
    """What the server's shutdown does to HTTP: StopParking answers parked long polls with [] (and later ones
    at once); once the actor is gone every request is 503 shutting_down."""
    actor = Actor(make_core(app_settings.limits()), WallClock(offset=EPOCH - trio.current_time()))
    actor_scope = trio.CancelScope()

    async def run_actor(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with actor_scope:
            await actor.run(task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor)
        async with create_app(actor.handle, app_settings).test_app() as test_app:
            client = test_app.test_client()
            await put_queue(client)
            polled: list[Any] = []

            async def poll() -> None:
                polled.append(await receive(client, wait=20))

            nursery.start_soon(poll)
            await trio.sleep(1)
            await actor.handle.ask(StopParking())
            await trio.sleep(0.001)
            assert polled == [[]]
            start = trio.current_time()
            assert await receive(client, wait=20) == []
            assert trio.current_time() == start
            actor_scope.cancel()
            await trio.sleep(1)
            for method, path in [("GET", "/v1/queues"), ("POST", "/v1/queues/q/messages"), ("POST", "/addMessage")]:
                await check_error(await call(client, method, path, data=b"m"), 503, "shutting_down")
