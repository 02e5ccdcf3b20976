"""Access control over HTTP: every route (API v1, classic, dashboard, events, metrics, the streaming upgrade)
against principals holding each permission or not, and requests without credentials or with bad ones.

Runs the app in process on trio's virtual clock, with an auth file written by the test. The table `ROUTES` must
name every route of the app (a test checks it against the app's URL map), so a new route cannot be left out.
"""

from __future__ import annotations

import json
import logging
from contextlib import aclosing
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from quart.testing import WebsocketResponseError
from quart.typing import TestClientProtocol as Client
from trio.testing import MockClock
from werkzeug.datastructures import Headers

from tests.helpers import make_core, running_actor, settings, write_auth_file
from tests.servers import serving
from tests.test_dashboard import events
from wonderq.config import Settings
from wonderq.web import create_app

ALL = ["send", "receive", "admin", "monitor"]
GRANTS: dict[str, dict[str, list[str]]] = {
    "root": {"*": ALL},
    "producer": {"jobs*": ["send"], "default": ["send"]},
    "consumer": {"jobs*": ["receive"], "default": ["receive"]},
    "operator": {"jobs*": ["admin"], "default": ["admin"]},
    "watcher": {"jobs*": ["monitor"], "default": ["monitor"]},
    "stranger": {"other": ALL},
}
RECEIPT = "0000000000000001.t1"


@dataclass(frozen=True)
class Route:
    rule: str  # the route's pattern in the app's URL map
    method: str
    path: str  # a request to it
    permission: str | None  # None: public
    queue: str | None = "jobs"  # the queue the permission applies to; None: any queue will do
    kwargs: dict[str, Any] = field(default_factory=dict)
    page: bool = False  # a dashboard page: without credentials, a redirect to the sign-in page
    signs_in: bool = False  # the body carries the principal's own token (the dashboard's sign-in)


ROUTES = [
    Route("/health", "GET", "/health", None),
    Route("/openapi.json", "GET", "/openapi.json", None),
    Route("/api-docs", "GET", "/api-docs", None),
    Route("/api-docs/assets/<asset>", "GET", "/api-docs/assets/swagger-ui.css", None),
    Route("/static/<asset:filename>", "GET", "/static/common.js", None),
    Route("/dashboard/login", "GET", "/dashboard/login", None),
    Route("/dashboard/login", "POST", "/dashboard/login", None, signs_in=True),
    Route("/dashboard/logout", "POST", "/dashboard/logout", None),
    Route("/metrics", "GET", "/metrics", "monitor", queue=None),
    Route("/v1/queues", "GET", "/v1/queues", "monitor", queue=None),
    Route("/v1/queues/<name>", "PUT", "/v1/queues/jobs", "admin", kwargs={"json": {}}),
    Route("/v1/queues/<name>", "GET", "/v1/queues/jobs", "monitor"),
    Route("/v1/queues/<name>", "DELETE", "/v1/queues/jobs-gone", "admin", queue="jobs-gone"),
    Route("/v1/queues/<name>/purge", "POST", "/v1/queues/jobs/purge", "admin"),
    Route("/v1/queues/<name>/redrive", "POST", "/v1/queues/jobs/redrive", "admin"),
    Route(
        "/v1/queues/<name>/messages",
        "POST",
        "/v1/queues/jobs/messages",
        "send",
        kwargs={"data": b"hello", "headers": {"Content-Type": "text/plain"}},
    ),
    Route(
        "/v1/queues/<name>/messages/batch",
        "POST",
        "/v1/queues/jobs/messages/batch",
        "send",
        kwargs={"json": {"messages": [{"body": 1}]}},
    ),
    Route("/v1/queues/<name>/receive", "POST", "/v1/queues/jobs/receive", "receive"),
    Route(
        "/v1/queues/<name>/messages/<message_id>",
        "DELETE",
        f"/v1/queues/jobs/messages/0000000000000001?receipt={RECEIPT}",
        "receive",
    ),
    Route("/v1/queues/<name>/ack", "POST", "/v1/queues/jobs/ack", "receive", kwargs={"json": {"receipts": [RECEIPT]}}),
    Route(
        "/v1/queues/<name>/messages/<message_id>",
        "PATCH",
        "/v1/queues/jobs/messages/0000000000000001",
        "receive",
        kwargs={"json": {"receipt": RECEIPT, "visibility_timeout": 5}},
    ),
    Route("/v1/queues/<name>/messages", "GET", "/v1/queues/jobs/messages", "receive"),
    Route("/addMessage", "POST", "/addMessage", "send", queue="default", kwargs={"data": b"classic"}),
    Route("/readMessage", "GET", "/readMessage", "receive", queue="default"),
    Route("/processMessage/<message_id>", "PATCH", "/processMessage/0000000000000001", "receive", queue="default"),
    Route("/", "GET", "/", "monitor", queue=None, page=True),
    Route("/dashboard/queues/<name>", "GET", "/dashboard/queues/jobs", "monitor", page=True),
    Route("/dashboard/session", "GET", "/dashboard/session", "any", queue=None),
    Route(
        "/dashboard/api/queues/<name>/messages/<message_id>/delete",
        "POST",
        "/dashboard/api/queues/jobs/messages/0000000000000001/delete",
        "admin",
    ),
]
# Tested on their own below (a stream never ends; SQS is tests/test_sqs_auth.py's).
ELSEWHERE = {
    ("/v1/events", "GET"),
    ("/v1/queues/<name>/stream", "GET"),
    ("/", "POST"),
    ("/<account:account>/<queue>", "POST"),
}


def route_id(route: Route) -> str:
    return f"{route.method} {route.path}"


def allowed(principal: str, permission: str, queue: str | None) -> bool:
    """What the auth file grants, worked out here independently of wonderq.principals."""
    for pattern, given in GRANTS[principal].items():
        if (permission == "any" or permission in given) and (queue is None or fnmatchcase(queue, pattern)):
            return True
    return False


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    return write_auth_file(tmp_path / "auth.toml", GRANTS)


@pytest.fixture
def app_settings(tmp_path: Path, tokens: dict[str, str]) -> Settings:
    return settings(auth_file=tmp_path / "auth.toml")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    client: Client, route: Route, headers: dict[str, str], token: str = "wq_none"
) -> tuple[int, bytes, Headers]:
    kwargs = dict(route.kwargs)
    kwargs["headers"] = {**kwargs.get("headers", {}), **headers}
    if route.signs_in:
        kwargs["json"] = {"token": token}
    response = await client.open(route.path, method=route.method, **kwargs)
    return response.status_code, await response.get_data(as_text=False), response.headers


async def test_the_table_names_every_route(client: Client) -> None:
    app = client.app
    in_app = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    in_table = {(route.rule, route.method) for route in ROUTES} | ELSEWHERE
    assert in_app == in_table


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_every_route_against_every_principal(
    client: Client, autojump_clock: MockClock, tokens: dict[str, str], route: Route
) -> None:
    await client.put("/v1/queues/jobs-gone", headers=bearer(tokens["root"]))
    for principal, token in tokens.items():
        status, data, _ = await call(client, route, bearer(token), token)
        if route.permission is None or allowed(principal, route.permission, route.queue):
            assert status not in (401, 403), (principal, data)
        else:
            assert status == 403, (principal, status, data)
            assert b'"forbidden"' in data
        if route.method == "DELETE" and status == 204:  # deleted: make it again for the next principal
            await client.put(route.path, headers=bearer(tokens["root"]))


@pytest.mark.parametrize("route", [route for route in ROUTES if route.permission is not None], ids=route_id)
@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wq_00000000_" + "A" * 43), {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}],
    ids=["none", "unknown token", "basic", "empty bearer"],
)
async def test_no_valid_credentials_is_401(
    client: Client, autojump_clock: MockClock, route: Route, headers: dict[str, str]
) -> None:
    status, data, answered = await call(client, route, headers)
    if route.page:  # a browser is sent to sign in, whatever it sent
        assert status == 303
        assert answered["Location"] == f"/dashboard/login?next={route.path}"
        return
    assert status == 401, data
    assert b'"unauthorized"' in data
    assert answered["WWW-Authenticate"] == 'Bearer realm="wonderq"'


async def test_public_routes_need_no_credentials(client: Client, autojump_clock: MockClock) -> None:
    for route in ROUTES:
        if route.permission is None and not route.signs_in:
            status, data, _ = await call(client, route, {})
            assert status not in (401, 403), (route, data)


async def test_a_token_with_a_wrong_secret_is_refused(client: Client, tokens: dict[str, str]) -> None:
    token = tokens["root"]
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")  # same key id, another secret
    assert (await client.get("/v1/queues", headers=bearer(forged))).status_code == 401
    assert (await client.get("/v1/queues", headers=bearer(token))).status_code == 200


async def test_lists_and_metrics_show_only_monitored_queues(client: Client, tokens: dict[str, str]) -> None:
    root = bearer(tokens["root"])
    for name in ("jobs-a", "other", "secret"):
        assert (await client.put(f"/v1/queues/{name}", headers=root)).status_code == 201
    listed = (await (await client.get("/v1/queues", headers=bearer(tokens["watcher"]))).get_json())["queues"]
    assert sorted(queue["name"] for queue in listed) == ["default", "jobs-a"]
    metrics = await (await client.get("/metrics", headers=bearer(tokens["watcher"]))).get_data(as_text=True)
    assert 'queue="jobs-a"' in metrics
    assert 'queue="secret"' not in metrics
    assert 'queue="other"' not in metrics
    everything = (await (await client.get("/v1/queues", headers=root)).get_json())["queues"]
    assert {"jobs-a", "other", "secret", "default"} <= {queue["name"] for queue in everything}


async def test_a_dead_letter_queue_and_a_redrive_destination_need_admin_too(
    client: Client, tokens: dict[str, str]
) -> None:
    root, operator = bearer(tokens["root"]), bearer(tokens["operator"])
    assert (await client.put("/v1/queues/secret", headers=root)).status_code == 201
    assert (await client.put("/v1/queues/jobs-dead", headers=root)).status_code == 201
    refused = await client.put("/v1/queues/jobs", headers=operator, json={"dead_letter_queue": "secret"})
    assert refused.status_code == 403
    assert (
        await client.put("/v1/queues/jobs", headers=operator, json={"dead_letter_queue": "jobs-dead"})
    ).status_code in (
        200,
        201,
    )
    refused = await client.post("/v1/queues/jobs-dead/redrive", headers=operator, json={"destination": "secret"})
    assert refused.status_code == 403
    assert (
        await client.post("/v1/queues/jobs-dead/redrive", headers=operator, json={"destination": "jobs"})
    ).status_code == 200


# ---- the event stream and the streaming path -------------------------------------------------------------------


async def test_the_event_stream_shows_only_monitored_queues(tmp_path: Path, tokens: dict[str, str]) -> None:
    """Over a real socket: the stream never ends, which the in-process test client cannot leave."""
    async with serving(auth_file=tmp_path / "auth.toml") as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        for name in ("jobs-a", "secret"):
            assert (await http.put(f"/v1/queues/{name}", headers=bearer(tokens["root"]))).status_code == 201
        for principal, shown in (("watcher", {"default", "jobs-a"}), ("root", {"default", "jobs-a", "secret"})):
            with trio.fail_after(5):
                async with http.stream("GET", "/v1/events", headers=bearer(tokens[principal])) as response:
                    assert response.status_code == 200
                    async with aclosing(events(response)) as received:
                        name, snapshot = await anext(received)
            assert name == "stats"
            assert {queue["name"] for queue in snapshot["queues"]} == shown
            assert set(snapshot["oldest"]) == shown


@pytest.mark.parametrize(
    ("principal", "status"), [(None, 401), ("producer", None), ("consumer", None), ("operator", 403)]
)
async def test_the_event_stream_needs_monitor_and_the_stream_receive_or_send(
    client: Client, autojump_clock: MockClock, tokens: dict[str, str], principal: str | None, status: int | None
) -> None:
    headers = bearer(tokens[principal]) if principal else {}
    if principal in ("producer", "consumer"):
        async with client.websocket("/v1/queues/jobs/stream", headers=headers) as socket:
            await socket.send('{"op": "credit", "credit": 0}')
        response = await client.get("/v1/events", headers=headers)  # neither may monitor
        assert response.status_code == 403
        return
    refusals: list[WebsocketResponseError] = []
    try:
        async with client.websocket("/v1/queues/jobs/stream", headers=headers) as socket:
            await socket.receive()  # the test client reports a refused upgrade at the first receive
    except* WebsocketResponseError as group:
        refusals = [error for error in group.exceptions if isinstance(error, WebsocketResponseError)]
    assert [refused.response.status_code for refused in refusals] == [status]


# ---- the dashboard's sign-in ----------------------------------------------------------------------------------


async def test_signing_in_gives_a_strict_http_only_cookie_that_authenticates(
    client: Client, autojump_clock: MockClock, tokens: dict[str, str]
) -> None:
    assert (await client.get("/v1/queues")).status_code == 401
    signed_in = await client.post("/dashboard/login", json={"token": tokens["watcher"]})
    assert signed_in.status_code == 204
    cookie = signed_in.headers["Set-Cookie"]
    assert cookie.startswith("wonderq_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS it is Secure too
    assert (await client.get("/v1/queues")).status_code == 200  # the cookie, no bearer token
    assert (await client.get("/")).status_code == 200
    session = await (await client.get("/dashboard/session")).get_json()
    assert session == {"auth": True, "principal": "watcher"}
    assert (await client.post("/v1/queues/jobs/purge")).status_code == 403  # a watcher may not purge
    assert (await client.post("/dashboard/logout")).status_code == 204
    assert (await client.get("/v1/queues")).status_code == 401


async def test_a_session_ends_after_its_ttl(tmp_path: Path, autojump_clock: MockClock, tokens: dict[str, str]) -> None:
    chosen = settings(auth_file=tmp_path / "auth.toml", session_ttl=60.0)
    async with running_actor(make_core(chosen.limits())) as (handle, _):
        app = create_app(handle, chosen)
        async with app.test_app() as test_app:
            client = test_app.test_client()
            assert (await client.post("/dashboard/login", json={"token": tokens["root"]})).status_code == 204
            await trio.sleep(59.9)
            assert (await client.get("/v1/queues")).status_code == 200
            await trio.sleep(0.2)
            ended = await client.get("/v1/queues")
            assert ended.status_code == 401
            assert "session has ended" in (await ended.get_json())["error"]["message"]


async def test_a_bad_token_or_a_cross_site_sign_in_is_refused(
    client: Client, autojump_clock: MockClock, tokens: dict[str, str]
) -> None:
    bad = await client.post("/dashboard/login", json={"token": tokens["root"][:-2] + "xx"})
    assert bad.status_code == 401
    assert "Set-Cookie" not in bad.headers
    forced = await client.post(
        "/dashboard/login", json={"token": tokens["root"]}, headers={"Origin": "http://evil.example"}
    )
    assert forced.status_code == 403
    assert "Set-Cookie" not in forced.headers
    as_form = await client.post("/dashboard/login", form={"token": tokens["root"]})
    assert as_form.status_code == 415


async def test_the_sign_in_page_is_served_and_pages_send_the_browser_there(client: Client) -> None:
    page = await client.get("/dashboard/login")
    assert page.status_code == 200
    assert b'id="sign-in"' in await page.get_data()
    redirected = await client.get("/dashboard/queues/jobs")
    assert redirected.status_code == 303
    assert redirected.headers["Location"] == "/dashboard/login?next=/dashboard/queues/jobs"


# ---- rates ----------------------------------------------------------------------------------------------------


async def test_each_principal_has_its_own_rate(
    tmp_path: Path, autojump_clock: MockClock, tokens: dict[str, str]
) -> None:
    chosen = settings(auth_file=tmp_path / "auth.toml", rate_limit=2.0, rate_burst=4)
    async with running_actor(make_core(chosen.limits())) as (handle, _):
        app = create_app(handle, chosen)
        async with app.test_app() as test_app:
            client = test_app.test_client()
            for _ in range(4):
                assert (await client.get("/v1/queues", headers=bearer(tokens["root"]))).status_code == 200
            limited = await client.get("/v1/queues", headers=bearer(tokens["root"]))
            assert limited.status_code == 429
            assert (await limited.get_json())["error"]["code"] == "rate_limited"
            assert limited.headers["Retry-After"] == "1"  # 0.5 s until a token, rounded up
            assert (await client.get("/v1/queues", headers=bearer(tokens["watcher"]))).status_code == 200
            assert (await client.get("/health")).status_code == 200  # probes are never limited
            await trio.sleep(0.5)
            assert (await client.get("/v1/queues", headers=bearer(tokens["root"]))).status_code == 200
            assert (await client.get("/v1/queues", headers=bearer(tokens["root"]))).status_code == 429


async def test_websocket_upgrades_are_logged_refused_or_not(
    client: Client, autojump_clock: MockClock, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="wonderq.access"):
        try:
            async with client.websocket("/v1/queues/jobs/stream") as socket:
                await socket.receive()
        except* WebsocketResponseError:
            pass
        async with client.websocket("/v1/queues/jobs/stream", headers=bearer(tokens["consumer"])) as socket:
            await socket.send('{"op": "credit", "credit": 0}')
    lines = [record.getMessage() for record in caplog.records if record.name == "wonderq.access"]
    assert any(line.startswith("GET /v1/queues/jobs/stream 401 ") for line in lines), lines


async def test_a_socket_may_only_do_what_its_principal_may(
    client: Client, autojump_clock: MockClock, tokens: dict[str, str]
) -> None:
    """The producer may send but not subscribe; the consumer may subscribe but not send: one socket each."""
    async with client.websocket("/v1/queues/jobs/stream", headers=bearer(tokens["producer"])) as socket:
        await socket.send('{"op": "send", "messages": [{"body": 1}], "ref": "s"}')
        assert json.loads(await socket.receive())["op"] == "sent"
        await socket.send('{"op": "subscribe", "credit": 1, "ref": "r"}')
        refused = json.loads(await socket.receive())
        assert (refused["op"], refused["code"], refused["ref"]) == ("error", "forbidden", "r")
    async with client.websocket("/v1/queues/jobs/stream", headers=bearer(tokens["consumer"])) as socket:
        await socket.send('{"op": "send", "messages": [{"body": 2}], "ref": "s"}')
        refused = json.loads(await socket.receive())
        assert (refused["op"], refused["code"], refused["ref"]) == ("error", "forbidden", "s")
        await socket.send('{"op": "subscribe", "credit": 1}')
        delivered = json.loads(await socket.receive())
        assert delivered["op"] == "messages"
        assert [message["body"] for message in delivered["messages"]] == [1]


async def test_only_a_12_digit_account_path_is_the_sqs_endpoint(client: Client, tokens: dict[str, str]) -> None:
    """`/<account>/<queue>` once took every two-segment POST: POST /v1/queues answered SQS's InvalidAction."""
    listing = await client.post("/v1/queues", headers=bearer(tokens["root"]))
    assert listing.status_code == 405
    assert (await listing.get_json())["error"]["code"] == "method_not_allowed"
    sqs = await client.post("/123456789012/jobs", data=b"{}", headers={"X-Amz-Target": "AmazonSQS.ListQueues"})
    assert "x-amzn-RequestId" in sqs.headers  # the SQS endpoint's answer (unsigned: refused as SQS refuses)
