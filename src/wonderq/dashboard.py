"""The operator dashboard: the pages at `/` and `/dashboard/queues/<name>`, their assets under `/static/`, and the
live statistics stream `GET /v1/events` (server-sent events) the pages update from.

This module owns the dashboard's routes and the one background producer per app that feeds every open event
stream: once per tick it asks the actor for every queue's statistics (one `ListQueues`, which carries each
queue's oldest message's send time too), and publishes a snapshot when something changed or when the keep-alive
interval has passed. Subscribers share that snapshot; none of them asks the actor itself.
The pages use API v1 for everything else (peek, purge, redrive); the only route of their own is deleting one
message by id, which v1 has no route for. Every asset is served from the package: the pages work offline.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Protocol, TypeVar

import orjson
import trio
from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import NotFound
from werkzeug.routing import PathConverter

from wonderq import openapi, signin
from wonderq.access import Access, needs, public
from wonderq.actor import ActorHandle, ActorStatistics
from wonderq.commands import Command, Delete, ListQueues
from wonderq.config import Settings
from wonderq.core import check_queue_name
from wonderq.errors import MessageNotFound, ShuttingDown, WonderQError
from wonderq.gate import current_principal
from wonderq.model import QueueStats
from wonderq.principals import Permission, Principal

log = logging.getLogger("wonderq.dashboard")

R = TypeVar("R")

TICK = 1.0  # seconds between two looks at the statistics
KEEPALIVE = 15.0  # seconds after which an unchanged snapshot is sent again, so that proxies keep the stream open
STOP_CHECK = 0.2  # seconds between two checks, while waiting for the next tick, for a server shutdown
MONITOR = Permission.MONITOR
RETRY_MS = 2000  # milliseconds a browser waits before it reconnects a dropped event stream (the SSE `retry`)
STATIC_PACKAGE = "static"  # the assets' directory inside the wonderq package

CONTENT_TYPES = {  # by file suffix; anything else is not served
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
# The pages load nothing but their own assets and talk only to this server: no inline script can run, so even a
# rendering bug could not execute a message body.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class Broker(Protocol):
    """What the event hub needs of the actor: `ActorHandle`, or a test's stand-in."""

    async def ask(self, command: Command[R]) -> R: ...

    def statistics(self) -> ActorStatistics: ...


def stats_json(stats: QueueStats) -> dict[str, Any]:
    """A queue's statistics as `GET /v1/queues` shows them: every field but the attributes' `metadata`, which
    belongs to the SQS front end (tests/test_dashboard.py checks that the two agree)."""
    shown = dataclasses.asdict(stats)
    del shown["attributes"]["metadata"]
    return shown


# ---- the live statistics: one producer, any number of subscribers -------------------------------------------


class EventHub:
    """Publishes statistics snapshots to every open event stream of one app.

    The producer task runs only while someone subscribes: the first subscriber starts it (through `spawn`, which
    runs it in the app's nursery) and it ends a tick after the last one leaves. `stopping` says whether the server
    is shutting down; the hub then closes, which ends every stream, since hypercorn waits for open responses
    before it stops."""

    def __init__(
        self,
        broker: Broker,
        spawn: Callable[[Callable[[], Awaitable[None]]], None],
        stopping: Callable[[], bool],
        *,
        tick: float = TICK,
        keepalive: float = KEEPALIVE,
    ) -> None:
        self._broker = broker
        self._spawn = spawn
        self._stopping = stopping
        self._tick = tick  # seconds
        self._keepalive = keepalive  # seconds
        self._subscribers = 0
        self._running = False
        self._closed = False
        self._payload: bytes | None = None  # the latest snapshot, as JSON
        self._generation = 0  # how many snapshots were published
        self._published = trio.Event()  # set (and replaced) at every publish, and at close

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def subscribers(self) -> int:
        return self._subscribers

    def close(self) -> None:
        """End every stream now and refuse new ones."""
        self._closed = True
        self._published.set()

    async def subscribe(self) -> AsyncGenerator[bytes, None]:
        """Every snapshot from now on, as JSON: the latest one at once (if any), then each new one."""
        if self._closed:
            raise ShuttingDown("the server is shutting down")
        self._subscribers += 1
        try:
            if not self._running:
                self._running = True
                self._spawn(self._produce)
            seen = 0
            while not self._closed:
                if self._generation != seen and self._payload is not None:
                    seen = self._generation
                    yield self._payload
                    continue
                await self._published.wait()
        finally:
            self._subscribers -= 1

    async def _produce(self) -> None:
        try:
            last_body = b""
            last_sent = -math.inf  # trio seconds
            while self._subscribers and not self._closed:
                started = trio.current_time()
                if self._stopping():
                    self.close()
                    return
                try:
                    body = await self._snapshot()
                except ShuttingDown:
                    self.close()
                    return
                except WonderQError as error:  # e.g. the journal failed; try again at the next tick
                    log.warning("dashboard statistics unavailable: %s", error.message)
                except Exception:  # a bug here must not take the broker down: log it, try again at the next tick
                    log.exception("dashboard statistics failed")
                else:
                    if body != last_body or started - last_sent >= self._keepalive:
                        self._publish(b'{"time":%s,%s' % (orjson.dumps(time.time()), body[1:]))
                        last_body, last_sent = body, started
                await self._sleep_until(started + self._tick)
        finally:
            self._running = False
            self._payload = None  # stale once nobody watches: the next first subscriber waits for a fresh one

    async def _sleep_until(self, deadline: float) -> None:
        """Sleep until `deadline` (trio seconds), but end at once when the server starts shutting down."""
        while (left := deadline - trio.current_time()) > 0:
            await trio.sleep(min(left, STOP_CHECK))
            if self._stopping():
                self.close()
                return

    def _publish(self, payload: bytes) -> None:
        self._payload = payload
        self._generation += 1
        published, self._published = self._published, trio.Event()
        published.set()

    async def _snapshot(self) -> bytes:
        """The statistics as JSON, without the time: `backlog` and `parked` (the actor's), `queues` (as
        `GET /v1/queues` shows them) and `oldest` (each queue's oldest message's `sent_at`, or null)."""
        queues = [stats_json(stats) for stats in await self._broker.ask(ListQueues())]
        actor = self._broker.statistics()
        return orjson.dumps(
            {
                "backlog": actor.backlog,
                "parked": actor.parked,
                "queues": queues,
                "oldest": {queue["name"]: queue["oldest_sent_at"] for queue in sorted(queues, key=lambda q: q["name"])},
            }
        )


def event_stream(hub: EventHub, principal: Principal | None = None) -> AsyncIterator[bytes]:
    """The body of a `GET /v1/events` response: an SSE `stats` event per snapshot, showing only the queues
    `principal` may monitor (all of them without one)."""

    async def stream() -> AsyncIterator[bytes]:
        yield b"retry: %d\n\n" % RETRY_MS
        async with aclosing(hub.subscribe()) as snapshots:  # closed with the response: the subscriber leaves
            async for payload in snapshots:
                shown = payload if principal is None else only_monitored(payload, principal)
                yield b"event: stats\ndata: " + shown + b"\n\n"

    return stream()


def only_monitored(payload: bytes, principal: Principal) -> bytes:
    """A snapshot with only the queues `principal` may monitor (each subscriber of a restricted principal pays for
    one decode and encode per snapshot; the rest share the published bytes)."""
    snapshot = orjson.loads(payload)
    snapshot["queues"] = [queue for queue in snapshot["queues"] if principal.allows(MONITOR, queue["name"])]
    snapshot["oldest"] = {name: at for name, at in snapshot["oldest"].items() if principal.allows(MONITOR, name)}
    return orjson.dumps(snapshot)


def _server_stopping(handle: ActorHandle) -> bool:
    """Whether the server has started shutting down. The actor stops parking receives the moment a shutdown
    starts (server.py sends it StopParking); hypercorn tells an app nothing until every open response has ended."""
    return handle.statistics().stopping


# ---- the assets -----------------------------------------------------------------------------------------------


def load_assets(root: Traversable | None = None) -> dict[str, tuple[bytes, str]]:
    """Every servable file under the package's static directory: relative path -> (content, content type).

    Read once: only these paths are ever served, so no request path can reach another file."""
    root = root if root is not None else resources.files("wonderq") / STATIC_PACKAGE
    assets: dict[str, tuple[bytes, str]] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
                continue
            suffix = "." + entry.name.rpartition(".")[2] if "." in entry.name else ""
            if suffix in CONTENT_TYPES and not entry.name.startswith("."):
                assets[prefix + entry.name] = (entry.read_bytes(), CONTENT_TYPES[suffix])

    if root.is_dir():
        walk(root, "")
    return assets


def _asset_response(asset: tuple[bytes, str]) -> Response:
    content, content_type = asset
    response = Response(content, status=200, content_type=content_type)
    response.headers["Cache-Control"] = "no-cache"  # revalidate: a new version shows after an upgrade
    response.headers["X-Content-Type-Options"] = "nosniff"
    if content_type.startswith("text/html"):
        response.headers["Content-Security-Policy"] = PAGE_POLICY
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


# ---- the routes -----------------------------------------------------------------------------------------------


class AssetPath(PathConverter):
    """A path below /static/: like werkzeug's `path`, but any character matches (its `.` stops at a newline)."""

    regex = "[^/](?s:.*?)"


def install(app: QuartTrio, handle: ActorHandle, settings: Settings, access: Access) -> None:
    """Serve the dashboard on `app`: `GET /`, `GET /dashboard/queues/<name>`, `GET /static/<path>`,
    `GET /v1/events`, `POST /dashboard/api/queues/<name>/messages/<id>/delete`, and (`signin.py`) signing in and
    out."""
    assets = load_assets()

    def spawn(producer: Callable[[], Awaitable[None]]) -> None:
        app.nursery.start_soon(producer)  # the app's own nursery: it lives as long as the app serves

    hub = EventHub(handle, spawn, lambda: _server_stopping(handle))

    @app.after_serving
    async def _end_streams() -> None:
        hub.close()

    def asset(path: str) -> Response:
        found = assets.get(path)
        if found is None:
            raise NotFound()
        return _asset_response(found)

    @needs(MONITOR, queue_arg=None, page=True)
    @openapi.operation(summary="The live dashboard (HTML)", tag="dashboard", reply_type="text/html", errors=())
    async def overview() -> Response:
        return asset("index.html")

    @needs(MONITOR, page=True)
    @openapi.operation(summary="A queue's dashboard page (HTML)", tag="dashboard", reply_type="text/html")
    async def queue_page(name: str) -> Response:
        check_queue_name(name)
        return asset("queue.html")

    @public()
    @openapi.operation(
        summary="The dashboard's files (JS, CSS, icons), all from the package",
        tag="dashboard",
        reply_types=tuple(content_type for _, content_type in assets.values()),
        path_values=(("filename", tuple(assets)),),
        errors=(404,),
    )
    async def static_file(filename: str) -> Response:
        return asset(filename)

    @needs(MONITOR, queue_arg=None)
    @openapi.operation(
        summary="Server-sent events: `stats` with every queue's stats, when they change (15 s keep-alive)",
        tag="dashboard",
        reply_type="text/event-stream",
        errors=(503,),
    )
    async def events() -> Response:
        if hub.closed:
            raise ShuttingDown("the server is shutting down")
        principal = current_principal()
        restricted = None if principal.allows_everywhere(MONITOR) else principal
        response = Response(event_stream(hub, restricted), status=200, content_type="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"  # a reverse proxy must pass events on at once
        response.timeout = None  # the stream lasts as long as the page is open
        return response

    @needs(Permission.ADMIN)
    @openapi.operation(
        summary="Delete one message, whatever its state (the dashboard's delete action)",
        tag="dashboard",
        status=204,
        errors=(400, 404),
    )
    async def delete_message(name: str, message_id: str) -> Response:
        check_queue_name(name)
        if not await handle.ask(Delete(name, message_id)):
            raise MessageNotFound(f"no message {message_id!r} in queue {name!r}")
        return Response(b"", status=204)

    app.add_url_rule("/", "dashboard", overview, methods=["GET"])
    app.add_url_rule("/dashboard/queues/<name>", "dashboard_queue", queue_page, methods=["GET"])
    app.add_url_rule("/v1/events", "events", events, methods=["GET"])
    signin.install(app, access, asset)
    app.add_url_rule(
        "/dashboard/api/queues/<name>/messages/<message_id>/delete",
        "dashboard_delete_message",
        delete_message,
        methods=["POST"],
    )
    # Any file name, a newline in it included: werkzeug's own `path` converter stops at a newline, and such a
    # path then fell to the SQS queue route (`/<account>/<queue>`, POST only) and got a 405 instead of a 404.
    # (The app is made without Quart's own static route, which would serve the file system.)
    app.url_map.converters["asset"] = AssetPath
    app.add_url_rule("/static/<asset:filename>", "static", static_file, methods=["GET"])
