"""Cross-site protection, auth or not: the Host allow-list (DNS rebinding), Origin and Sec-Fetch-Site on every
state-changing route and the WebSocket upgrade, JSON-only bodies, and CORS for ALLOWED_ORIGINS only.

The pure rules of wonderq.crosssite first, then the app in process on trio's virtual clock (auth off, as on a
developer's laptop, which is where a browser page of another site can reach WonderQ).
"""

from __future__ import annotations

from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from trio.testing import MockClock

from tests.helpers import settings
from wonderq.config import Settings
from wonderq.crosssite import cross_site_reason, host_policy, is_loopback, same_origin, split_host

EVIL = "http://evil.example"


@pytest.fixture
def app_settings(request: pytest.FixtureRequest) -> Settings:
    """The test settings, with overrides from indirect parametrization."""
    return settings(**getattr(request, "param", {}))


# ---- the rules ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("app.localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        ("localhost:3000", ("localhost", 3000)),
        ("LOCALHOST.", ("localhost", None)),
        ("[::1]:3000", ("::1", 3000)),
        ("127.0.0.1", ("127.0.0.1", None)),
        ("", None),
        ("a b", None),
        ("evil.example@localhost", None),
        ("localhost:99999", None),
        ("[::1", None),
        ("host/path", None),
    ],
)
def test_host_headers_are_parsed_strictly(header: str, parsed: tuple[str, int | None] | None) -> None:
    assert split_host(header) == parsed


def test_the_default_hosts_of_a_loopback_bind_are_the_loopback_names() -> None:
    policy = host_policy((), "127.0.0.1", auth=False)
    for allowed in ("localhost:3000", "127.0.0.1:3000", "[::1]:3000", "dashboard.localhost:3000"):
        assert policy.allows(allowed), allowed
    for refused in ("evil.example:3000", "rebind.attacker.net", "192.168.1.5:3000", "", None):
        assert not policy.allows(refused), refused


def test_without_auth_elsewhere_only_ip_literals_and_own_names_are_served() -> None:
    policy = host_policy((), "0.0.0.0", auth=False)
    assert policy.allows("192.168.1.5:3000")
    assert policy.allows("[fe80::1]:3000")
    assert not policy.allows("rebind.attacker.net:3000")


def test_with_auth_elsewhere_any_host_is_served_and_configured_hosts_win() -> None:
    assert host_policy((), "0.0.0.0", auth=True).allows("anything.example")
    policy = host_policy(("queue.example.com", ".internal"), "0.0.0.0", auth=True)
    assert policy.allows("queue.example.com")
    assert policy.allows("a.b.internal:3000")
    assert policy.allows("internal")
    assert not policy.allows("example.com")
    assert not policy.allows("127.0.0.1")
    assert host_policy(("*",), "127.0.0.1", auth=False).allows("whatever")


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://localhost:3000", "localhost:3000", True),
        ("http://LOCALHOST:3000", "localhost:3000", True),
        ("https://queue.example.com", "queue.example.com", True),
        ("https://queue.example.com", "queue.example.com:443", True),
        ("https://queue.example.com:8443", "queue.example.com", False),
        ("http://localhost:8080", "localhost:3000", False),
        ("http://evil.example", "localhost:3000", False),
        ("null", "localhost:3000", False),
        ("file://", "localhost:3000", False),
        ("http://[::1]:3000", "[::1]:3000", True),
    ],
)
def test_same_origin(origin: str, host: str, same: bool) -> None:
    assert same_origin(origin, host) is same


@pytest.mark.parametrize(
    ("origin", "fetch_site", "refused"),
    [
        (None, None, False),  # a program: curl, an SDK, WonderQ's client
        (None, "none", False),  # typed into the address bar
        (None, "same-origin", False),
        (None, "cross-site", True),  # an <img> or a link from another site
        (None, "same-site", True),
        ("http://localhost:3000", "same-origin", False),
        ("http://localhost:3000", None, False),
        (EVIL, None, True),
        (EVIL, "cross-site", True),
        ("null", None, True),  # a sandboxed frame, a file:// page
        ("http://trusted.example", "cross-site", False),  # in ALLOWED_ORIGINS
    ],
)
def test_cross_site_reasons(origin: str | None, fetch_site: str | None, refused: bool) -> None:
    reason = cross_site_reason(
        origin=origin, fetch_site=fetch_site, host_header="localhost:3000", allowed_origins=("http://trusted.example",)
    )
    assert (reason is not None) is refused


# ---- over HTTP ------------------------------------------------------------------------------------------------

STATE_CHANGING: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/queues/jobs/purge", {}),
    ("POST", "/v1/queues/jobs/messages", {"data": b"injected", "headers": {"Content-Type": "text/plain"}}),
    ("POST", "/v1/queues/jobs/messages/batch", {"json": {"messages": [{"body": 1}]}}),
    ("POST", "/v1/queues/jobs/receive", {}),
    ("PUT", "/v1/queues/jobs", {"json": {}}),
    ("DELETE", "/v1/queues/jobs", {}),
    ("POST", "/addMessage", {"data": b"injected", "headers": {"Content-Type": "text/plain"}}),
    ("GET", "/readMessage?time=43200", {}),  # a GET that leases: what an <img> could do
    ("PATCH", "/processMessage/0000000000000001", {}),
    ("POST", "/dashboard/api/queues/jobs/messages/0000000000000001/delete", {}),
    ("POST", "/", {"data": b"{}", "headers": {"X-Amz-Target": "AmazonSQS.ListQueues"}}),
]


async def counts(client: Client) -> tuple[int, int]:
    """(messages sent, messages received) over every queue."""
    queues = (await (await client.get("/v1/queues")).get_json())["queues"]
    return sum(queue["sent"] for queue in queues), sum(queue["received"] for queue in queues)


@pytest.mark.parametrize(("method", "path", "kwargs"), STATE_CHANGING, ids=lambda value: str(value)[:60])
@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
        {"Origin": "http://localhost:8080"},  # another port of the same machine is another origin
    ],
    ids=["origin", "origin and fetch site", "fetch site", "null origin", "other port"],
)
async def test_cross_site_requests_that_change_state_are_refused(
    client: Client, autojump_clock: MockClock, method: str, path: str, kwargs: dict[str, Any], headers: dict[str, str]
) -> None:
    await client.post("/v1/queues/jobs/messages", data=b"present", headers={"Content-Type": "text/plain"})
    before = await counts(client)
    given = {**kwargs, "headers": {**kwargs.get("headers", {}), **headers}}
    response = await client.open(path, method=method, **given)
    assert response.status_code == 403
    if path == "/":  # the SQS endpoint answers as SQS does, so that an SDK reads the refusal
        assert (await response.get_json(force=True))["__type"] == "com.amazon.coral.service#AccessDeniedException"
    else:
        assert (await response.get_json())["error"]["code"] == "cross_site_refused"
    assert await counts(client) == before
    assert (await client.get("/v1/queues/jobs")).status_code == 200  # not purged, not deleted


@pytest.mark.parametrize(("method", "path", "kwargs"), STATE_CHANGING, ids=lambda value: str(value)[:60])
async def test_the_same_origin_and_programs_may_change_state(
    client: Client, autojump_clock: MockClock, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    await client.put("/v1/queues/jobs")
    for headers in ({}, {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}):
        given = {**kwargs, "headers": {**kwargs.get("headers", {}), **headers}}
        response = await client.open(path, method=method, **given)
        assert response.status_code not in (403, 421), await response.get_data()
        await client.put("/v1/queues/jobs")  # again, after the DELETE


async def test_cross_site_reads_are_served(client: Client, autojump_clock: MockClock) -> None:
    """A page of another site can make a browser GET, but cannot read the reply (no CORS): reads change nothing."""
    for path in ("/v1/queues", "/health", "/metrics", "/v1/queues/default"):
        response = await client.get(path, headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
        assert response.status_code == 200, path
        assert "Access-Control-Allow-Origin" not in response.headers
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_websocket_upgrade_is_checked_too(client: Client, autojump_clock: MockClock) -> None:
    from quart.testing import WebsocketResponseError

    refusals: list[int] = []
    try:
        async with client.websocket("/v1/queues/secret/stream", headers={"Origin": EVIL}) as socket:
            await socket.receive()
    except* WebsocketResponseError as group:
        refusals = [
            error.response.status_code for error in group.exceptions if isinstance(error, WebsocketResponseError)
        ]
    assert refusals == [403]


@pytest.mark.parametrize("host", ["evil.example:3000", "rebind.attacker.net", "192.168.1.5:3000"])
async def test_a_foreign_host_header_is_refused(client: Client, autojump_clock: MockClock, host: str) -> None:
    for method, path in (("GET", "/v1/queues"), ("POST", "/v1/queues/jobs/purge"), ("GET", "/health")):
        given: dict[str, Any] = {"headers": {"Host": host}}
        response = await client.open(path, method=method, **given)
        assert response.status_code == 421
        assert (await response.get_json())["error"]["code"] == "host_not_allowed"


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v1/queues/jobs/messages/batch", "POST"),
        ("/v1/queues/jobs/receive", "POST"),
        ("/v1/queues/jobs", "PUT"),
        ("/v1/queues/jobs/ack", "POST"),
        ("/v1/queues/jobs/redrive", "POST"),
    ],
)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
async def test_json_bodies_must_be_labelled_json(
    client: Client, autojump_clock: MockClock, path: str, method: str, content_type: str
) -> None:
    body = b'{"messages": [{"body": 1}], "receipts": ["a.b"]}'
    given: dict[str, Any] = {"data": body, "headers": {"Content-Type": content_type}}
    response = await client.open(path, method=method, **given)
    assert response.status_code == 415
    assert (await response.get_json())["error"]["code"] == "unsupported_media_type"
    assert (await client.get("/v1/queues/jobs")).status_code == 404  # nothing was created or sent


async def test_json_bodies_labelled_json_and_vendor_json_are_read(client: Client, autojump_clock: MockClock) -> None:
    for content_type in ("application/json", "application/json; charset=utf-8", "application/vnd.api+json"):
        response = await client.post(
            "/v1/queues/jobs/messages/batch",
            data=b'{"messages": [{"body": 1}]}',
            headers={"Content-Type": content_type},
        )
        assert response.status_code == 201, content_type


# ---- CORS -----------------------------------------------------------------------------------------------------

TRUSTED = "http://app.example:8080"


@pytest.mark.parametrize("app_settings", [{"allowed_origins": TRUSTED}], indirect=True)
async def test_an_allowed_origin_gets_cors_and_may_change_state(client: Client, autojump_clock: MockClock) -> None:
    preflight = await client.options(
        "/v1/queues/jobs/messages/batch",
        headers={"Origin": TRUSTED, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == TRUSTED
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    sent = await client.post(
        "/v1/queues/jobs/messages/batch", json={"messages": [{"body": 1}]}, headers={"Origin": TRUSTED}
    )
    assert sent.status_code == 201
    assert sent.headers["Access-Control-Allow-Origin"] == TRUSTED
    assert "Origin" in sent.headers["Vary"]
    refused = await client.post("/v1/queues/jobs/purge", headers={"Origin": EVIL})
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers


async def test_cors_is_off_unless_configured(client: Client, autojump_clock: MockClock) -> None:
    preflight = await client.options(
        "/v1/queues/jobs/messages/batch", headers={"Origin": TRUSTED, "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_allowed_origins_and_hosts_are_validated() -> None:
    from wonderq.config import ConfigError, load_settings

    for bad in ({"allowed_origins": "app.example"}, {"allowed_origins": "ftp://x"}, {"allowed_hosts": "a b"}):
        with pytest.raises(ConfigError):
            load_settings(**bad)
    good: Settings = settings(allowed_origins=f"{TRUSTED},https://b.example", allowed_hosts="q.example,.internal")
    assert good.origins() == (TRUSTED, "https://b.example")
    assert good.host_names() == ("q.example", ".internal")


@pytest.mark.parametrize("host", ["a" * 64 + ".example", "a" * 4000, "x." + "b" * 70])
async def test_a_host_the_framework_cannot_route_is_refused_not_a_500(
    client: Client, autojump_clock: MockClock, host: str
) -> None:
    """werkzeug IDNA-encodes the Host before any hook runs: a label over 63 characters made every route a 500."""
    for path in ("/health", "/v1/queues"):
        headers: dict[str, Any] = {"headers": {"Host": host}}
        response = await client.open(path, method="GET", **headers)
        assert response.status_code == 421
        assert (await response.get_json())["error"]["code"] == "host_not_allowed"
