"""The owner nursery: the actor, the ticker, the compactor and hypercorn run as siblings, so a crash in any one
stops them all. Before they start, the journal is opened and the state recovered from it.

SIGINT/SIGTERM start a graceful shutdown: hypercorn stops accepting, finishes the requests in flight (parked
long polls are answered empty), and then the actor and the ticker are cancelled.
"""

from __future__ import annotations

import gc
import logging
import signal
import ssl
import time
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig

from wonderq import listener
from wonderq.access import Access, AccessConfigError
from wonderq.actor import Actor, ActorHandle
from wonderq.clock import WallClock
from wonderq.commands import StopParking
from wonderq.config import Settings
from wonderq.core import Core
from wonderq.crosssite import is_loopback
from wonderq.ids import TimeOrderedIds, new_token
from wonderq.store import SqliteStore
from wonderq.ticker import run_compactor, run_ticker
from wonderq.web import create_app

log = logging.getLogger("wonderq.server")


class BindError(Exception):
    """The server could not listen where it was told to. Raised before it serves anything."""


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [bind_address(settings.host, settings.port)]
    config.graceful_timeout = settings.graceful_timeout
    config.keep_alive_timeout = settings.idle_timeout  # also bounds slow headers: a slowloris is closed by it
    config.accesslog = None
    config.errorlog = log
    config.backlog = settings.backlog
    config.websocket_max_message_size = settings.max_request_bytes  # a frame is a request, as far as size goes
    if settings.certfile is not None and settings.keyfile is not None:
        # hypercorn offers HTTP/2 and HTTP/1.1 by ALPN over TLS (h2 is one of its dependencies)
        config.certfile, config.keyfile = str(settings.certfile), str(settings.keyfile)
        if settings.ca_certs is not None:
            config.ca_certs = str(settings.ca_certs)
            config.verify_mode = ssl.CERT_REQUIRED if settings.verify_client else ssl.CERT_OPTIONAL
    return config


def check_exposure(settings: Settings, access: Access) -> None:
    """Refuse to serve without auth beyond this machine, unless the operator said --insecure (then warn loudly)."""
    if access.enabled or is_loopback(settings.host):
        return
    if not settings.insecure:
        raise AccessConfigError(
            f"refusing to serve on {settings.host} without authentication: anyone who can reach it could read, send"
            " and delete every message. Give an auth file (--auth-file, AUTH_FILE; docs/security.md), bind to"
            " 127.0.0.1, or pass --insecure if this network is trusted"
        )
    log.warning(
        "SERVING WITHOUT AUTHENTICATION on %s (--insecure): anyone who can reach this address may do anything."
        " Give an auth file (docs/security.md) unless this network is trusted.",
        settings.host,
    )


async def serve(
    settings: Settings,
    *,
    shutdown: trio.Event | None = None,
    core: Core | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until `shutdown` is set (or a signal arrives when `shutdown` is None). Reports the bound URLs.

    The state comes from the journal in `settings.data_dir` (recovered first), or starts empty in memory with
    `settings.in_memory`; a test may pass its own in-memory `core`. Raises StoreError if the data directory
    cannot be used, AccessConfigError if the access settings are unusable."""
    access = Access.from_settings(settings)
    check_exposure(settings, access)
    store: SqliteStore | None = None
    if core is None and not settings.in_memory:
        store, core = await open_journal(settings)
    elif core is None:
        core = Core(limits=settings.limits(), new_id=TimeOrderedIds(), new_token=new_token)
    try:
        actor = Actor(
            core,
            WallClock(),
            journal=store,
            max_long_polls=settings.max_long_polls,
            inbox_timeout=settings.inbox_timeout,
        )
        app = create_app(actor.handle, settings, access)
        cap = listener.ConnectionCap(listener.connection_budget(settings.max_connections))
        stop = trio.Event() if shutdown is None else shutdown
        async with trio.open_nursery() as nursery:
            await nursery.start(actor.run)
            if shutdown is None:
                nursery.start_soon(_stop_on_signal, stop)
            try:
                binds: list[str] = await nursery.start(_serve_http, app, hypercorn_config(settings), cap, stop, nursery)
            except* OSError as failed:  # the port is taken, the address does not exist, ...
                where = bind_address(settings.host, settings.port)
                reasons = "; ".join(str(error) for error in _leaves(failed))
                raise BindError(f"cannot serve on {where}: {reasons}") from None
            nursery.start_soon(partial(run_ticker, actor.handle, interval=settings.tick_interval))
            if store is not None:
                nursery.start_soon(partial(run_compactor, actor.handle, interval=settings.compact_interval))
            nursery.start_soon(_stop_parking, actor.handle, stop)
            log.info("WonderQ listening on %s", ", ".join(binds))
            task_status.started(binds)
    finally:
        if store is not None:
            store.close()


async def open_journal(settings: Settings) -> tuple[SqliteStore, Core]:
    """Open (and lock) the data directory and rebuild the core from what it holds, in a worker thread."""
    started = time.perf_counter()
    store = await trio.to_thread.run_sync(
        partial(
            SqliteStore,
            settings.data_dir,
            sync=settings.sync,
            max_bytes=settings.max_store_bytes,
            reserve_bytes=settings.reserve_bytes,
        )
    )
    try:
        core = await trio.to_thread.run_sync(recover, settings, store)
    except BaseException:
        store.close()
        raise
    queues, messages = core.size()
    log.info(
        "recovered %d messages in %d queues from %s in %.2f s (sync=%s)",
        messages,
        queues,
        store.path,
        time.perf_counter() - started,
        settings.sync,
    )
    return store, core


def recover(settings: Settings, store: SqliteStore) -> Core:
    """A core holding everything `store` holds, with ids continuing after the last one it issued."""
    # Recovery makes millions of long-lived objects: the cyclic collector would rescan them over and over as
    # they are made, and again at every full collection afterwards. Pause it, then freeze what was built.
    gc.disable()
    try:
        snapshot = store.load()
        core = Core(
            limits=settings.limits(),
            new_id=TimeOrderedIds(floor=snapshot.last_id),
            new_token=new_token,
            track_changes=True,
        )
        core.restore(snapshot)
    finally:
        gc.enable()
    gc.freeze()
    return core


async def _stop_parking(handle: ActorHandle, stop: trio.Event) -> None:
    await stop.wait()
    await handle.ask(StopParking())


def finish_responses_shielded(app: Any) -> Any:
    """Wrap the ASGI app so that the last send of a response is shielded from cancellation.

    quart-trio cancels a request's tasks as soon as hypercorn reports the stream closed, which hypercorn does
    from inside that very last send, before it marks the keep-alive connection idle. The cancellation then cuts
    that bookkeeping short, the connection never counts as idle, and a graceful shutdown waits the whole
    GRACEFUL_TIMEOUT for it. Shielding only the final body message lets it finish; hypercorn already shields
    the socket write itself.

    A client that hangs up the moment it has the status line of a reply sent before its request's body arrived
    (a 408, a 413) makes hypercorn close the connection while that last write is under way, and trio refuses the
    second writer with BusyResourceError: the reply has nowhere to go, so it is dropped instead of logged as an
    error with its traceback (any client could fill the log with them)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        async def send_finishing_shielded(message: Any) -> None:
            try:
                if message.get("type") == "http.response.body" and not message.get("more_body", False):
                    with trio.CancelScope(shield=True):
                        await send(message)
                else:
                    await send(message)
            except trio.BusyResourceError:
                pass  # the connection is being closed under the write: the client has gone

        await app(scope, receive, send_finishing_shielded if scope["type"] == "http" else send)

    return wrapped


async def _serve_http(
    app: object,
    config: HypercornConfig,
    cap: listener.ConnectionCap,
    stop: trio.Event,
    owner: trio.Nursery,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    await listener.serve(
        finish_responses_shielded(app), config, cap, shutdown_trigger=stop.wait, task_status=task_status
    )
    log.info("WonderQ stopped serving; shutting down")
    owner.cancel_scope.cancel()  # the actor and the ticker run until the HTTP side is done


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions inside `group`, however deeply nested."""
    found: list[BaseException] = []
    for error in group.exceptions:
        found.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    return found


async def _stop_on_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s: finishing requests in flight", signal.Signals(signum).name)
            stop.set()
            return
