"""The dashboard without a browser: its pages and assets (content types, no path escapes the static directory),
the live statistics stream `/v1/events` (one producer per app, shared by every stream, and ended by a shutdown),
and its one route of its own, deleting a message by id. The browser tests are in tests/test_dashboard_browser.py.
"""

from __future__ import annotations

import collections
import json
import signal
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, TypeVar

import httpx
import pytest
import trio
from quart.typing import TestClientProtocol as Client
from trio.testing import MockClock

from tests.helpers import running_actor
from tests.servers import server_process, serving
from wonderq.actor import ActorHandle, ActorStatistics
from wonderq.commands import Command, PutQueue, Send
from wonderq.dashboard import KEEPALIVE, EventHub, load_assets
from wonderq.model import Payload

R = TypeVar("R")


# ---- pages and assets -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/index.html", "text/html; charset=utf-8"),
        ("/static/queue.html", "text/html; charset=utf-8"),
        ("/static/common.js", "text/javascript; charset=utf-8"),
        ("/static/overview.js", "text/javascript; charset=utf-8"),
        ("/static/queue.js", "text/javascript; charset=utf-8"),
        ("/static/dashboard.css", "text/css; charset=utf-8"),
        ("/static/favicon.svg", "image/svg+xml"),
    ],
)
async def test_assets_are_served_with_their_content_type(client: Client, path: str, content_type: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert len(await response.get_data()) > 0


async def test_the_pages_are_html_that_loads_only_its_own_assets(client: Client) -> None:
    for path, script in [("/", "/static/overview.js"), ("/dashboard/queues/jobs", "/static/queue.js")]:
        response = await client.get(path)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "default-src 'none'" in policy
        page = await response.get_data(as_text=True)
        assert f'src="{script}"' in page
        assert "http://" not in page
        assert "https://" not in page  # no CDN, no web fonts: it works offline


async def test_every_asset_is_local() -> None:
    assets = load_assets()
    assert {"index.html", "queue.html", "common.js", "overview.js", "queue.js", "dashboard.css"} <= assets.keys()
    for name, (content, _) in assets.items():
        if name.endswith((".html", ".js", ".css")):
            text = content.decode()
            assert "https://" not in text, name
            assert "innerHTML" not in text, name  # data goes into the page as text only
            assert "insertAdjacentHTML" not in text, name
            assert "outerHTML" not in text, name


async def test_a_queue_page_needs_a_valid_queue_name(client: Client) -> None:
    response = await client.get("/dashboard/queues/bad.name")
    assert response.status_code == 400
    assert (await response.get_json())["error"]["code"] == "invalid_queue_name"


@pytest.mark.parametrize(
    "path",
    [
        "/static/../web.py",
        "/static/..%2fweb.py",
        "/static/%2e%2e/web.py",
        "/static/%2e%2e%2fdashboard.py",
        "/static/..%2f..%2fpyproject.toml",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/",
        "/static/missing.js",
        "/static/index.html%00.js",
        "/static/../__init__.py",
        "/static/index.html%0A",  # werkzeug's `path` stops at a newline: this was the SQS route's 405
        "/static/a%0Ab",
        "/static/%0A",
    ],
)
async def test_no_path_leaves_the_static_directory(client: Client, path: str) -> None:
    response = await client.get(path, follow_redirects=True)  # `//` redirects to `/` first
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "not_found"


async def test_a_traversal_over_a_real_socket_is_refused() -> None:
    """Raw request targets, as a hostile client sends them (no client-side normalization of `..`)."""
    async with serving() as url, httpx.AsyncClient(base_url=url) as http:
        for target in ["/static/../web.py", "/static/../../pyproject.toml", "/static/..%2Fdashboard.py"]:
            response = await http.get(httpx.URL(url + "/").copy_with(raw_path=target.encode()))
            assert response.status_code == 404, target
            assert b"import" not in response.content


# ---- the statistics stream ------------------------------------------------------------------------------------


async def events(response: httpx.Response) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
    """The (event name, JSON data) of each server-sent event of a streaming response."""
    name, data = "message", ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data += line.removeprefix("data:").strip()
        elif not line and data:
            yield name, json.loads(data)
            name, data = "message", ""


async def test_the_stream_sends_every_queue_at_once_and_again_after_a_change() -> None:
    async with serving() as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        await http.put("/v1/queues/jobs")
        queues = (await http.get("/v1/queues")).json()["queues"]
        with trio.fail_after(5):
            async with http.stream("GET", "/v1/events") as response:
                assert response.status_code == 200
                assert response.headers["Content-Type"] == "text/event-stream"
                assert response.headers["Cache-Control"] == "no-cache"
                stream = aclosing(events(response))
                async with stream as received:
                    name, first = await anext(received)
                    assert name == "stats"
                    assert first["queues"] == queues  # the very objects GET /v1/queues returns
                    assert first["oldest"] == {"default": None, "jobs": None}
                    assert first["backlog"] >= 0
                    assert first["parked"] == 0
                    assert abs(first["time"] - time.time()) < 5

                    sent = await http.post("/v1/queues/jobs/messages", content=b"x")
                    assert sent.status_code == 201
                    name, second = await anext(received)
                    jobs = next(queue for queue in second["queues"] if queue["name"] == "jobs")
                    assert (jobs["ready"], jobs["sent"]) == (1, 1)
                    assert second["oldest"]["jobs"] == pytest.approx(time.time(), abs=5)
                    assert second["time"] > first["time"]


class CountingBroker:
    """An actor handle that counts what it is asked."""

    def __init__(self, handle: ActorHandle) -> None:
        self.handle = handle
        self.asked: collections.Counter[str] = collections.Counter()

    async def ask(self, command: Command[R]) -> R:
        self.asked[type(command).__name__] += 1
        return await self.handle.ask(command)

    def statistics(self) -> ActorStatistics:
        return self.handle.statistics()


async def test_every_stream_shares_one_producer_that_asks_once_per_tick(autojump_clock: MockClock) -> None:
    async with running_actor() as (handle, _), trio.open_nursery() as nursery:
        broker = CountingBroker(handle)
        hub = EventHub(broker, nursery.start_soon, lambda: False)
        received: list[list[bytes]] = []

        async def subscriber(count: int) -> None:
            mine: list[bytes] = []
            received.append(mine)
            async with aclosing(hub.subscribe()) as snapshots:
                async for payload in snapshots:
                    mine.append(payload)
                    if len(mine) == count:
                        return

        async def sender() -> None:
            await trio.sleep(0.5)  # seconds: halfway between two ticks
            for n in range(3):
                await handle.ask(Send("jobs", (Payload(str(n).encode(), "text/plain"),)))
                await trio.sleep(1.0)  # seconds: one change per tick

        await handle.ask(PutQueue("jobs"))
        async with trio.open_nursery() as subscribers:
            for _ in range(20):
                subscribers.start_soon(subscriber, 4)
            subscribers.start_soon(sender)
        assert all(snapshots == received[0] for snapshots in received)  # the same snapshots, in the same order
        assert [json.loads(p)["queues"][0]["ready"] for p in received[0]] == [0, 1, 2, 3]
        assert broker.asked["ListQueues"] <= 5  # one per tick for all 20, not one per subscriber
        assert broker.asked["Peek"] == 0  # the oldest message's age comes with the statistics
        await trio.sleep(2)  # seconds
        assert hub.subscribers == 0
        asked = broker.asked["ListQueues"]
        await trio.sleep(10)  # seconds: nobody watches, nobody asks
        assert broker.asked["ListQueues"] == asked
        nursery.cancel_scope.cancel()


async def test_an_unchanged_snapshot_is_sent_again_only_as_a_keep_alive(autojump_clock: MockClock) -> None:
    async with running_actor() as (handle, _), trio.open_nursery() as nursery:
        hub = EventHub(handle, nursery.start_soon, lambda: False)
        times: list[float] = []
        with trio.move_on_after(KEEPALIVE * 2 + 1):  # seconds
            async with aclosing(hub.subscribe()) as snapshots:
                async for _ in snapshots:
                    times.append(trio.current_time())
        assert len(times) == 3
        assert times[1] - times[0] == pytest.approx(KEEPALIVE, abs=1)
        assert times[2] - times[1] == pytest.approx(KEEPALIVE, abs=1)
        nursery.cancel_scope.cancel()


async def test_a_shutdown_ends_every_stream_and_refuses_new_ones(autojump_clock: MockClock) -> None:
    stopping = False
    async with running_actor() as (handle, _), trio.open_nursery() as nursery:
        hub = EventHub(handle, nursery.start_soon, lambda: stopping)
        ended: list[float] = []

        async def subscriber() -> None:
            async with aclosing(hub.subscribe()) as snapshots:
                async for _ in snapshots:
                    pass
            ended.append(trio.current_time())

        async with trio.open_nursery() as subscribers:
            for _ in range(3):
                subscribers.start_soon(subscriber)
            await trio.sleep(30)  # seconds
            assert not ended
            stopping = True
            started = trio.current_time()
        assert len(ended) == 3
        assert max(ended) - started < 0.5  # seconds: at the next check, not at the next keep-alive
        assert hub.closed
        with pytest.raises(Exception, match="shutting down"):
            await anext(hub.subscribe())
        nursery.cancel_scope.cancel()


def test_sigterm_with_an_open_stream_exits_at_once() -> None:
    with server_process() as server, httpx.Client(base_url=server.url, timeout=10) as http:
        with http.stream("GET", "/v1/events") as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: stats"
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            assert list(lines)[-1:] in ([], [""])  # the server ends the stream
            assert time.monotonic() - started < 1.5  # seconds: the stream ends at once, not after 5 s
        assert server.process.wait(timeout=10) == 0, "".join(server.log)
        assert time.monotonic() - started < 3  # seconds, SIGTERM to exit


# ---- deleting one message -------------------------------------------------------------------------------------


async def test_one_message_is_deleted_by_id_whatever_its_state(client: Client, autojump_clock: MockClock) -> None:
    ids = []
    for body in (b"a", b"b"):
        response = await client.post("/v1/queues/jobs/messages", data=body)
        ids.append((await response.get_json())["id"])
    leased = await client.post("/v1/queues/jobs/receive")
    assert (await leased.get_json())["messages"][0]["id"] == ids[0]

    for message_id in ids:  # one leased, one ready
        response = await client.post(f"/dashboard/api/queues/jobs/messages/{message_id}/delete")
        assert response.status_code == 204
    stats = await (await client.get("/v1/queues/jobs")).get_json()
    assert (stats["ready"], stats["leased"], stats["acked"]) == (0, 0, 2)

    again = await client.post(f"/dashboard/api/queues/jobs/messages/{ids[0]}/delete")
    assert again.status_code == 404
    assert (await again.get_json())["error"]["code"] == "message_not_found"
    missing = await client.post(f"/dashboard/api/queues/nope/messages/{ids[0]}/delete")
    assert (await missing.get_json())["error"]["code"] == "queue_not_found"
