"""The owner nursery: the actor, the ticker and hypercorn run as siblings, so a crash in any one stops them all.

SIGINT/SIGTERM start a graceful shutdown: hypercorn stops accepting, finishes the requests in flight (parked
long polls are answered empty), and then the actor and the ticker are cancelled.
"""

from __future__ import annotations

import logging
import signal
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from wonderq.actor import Actor, ActorHandle
from wonderq.clock import WallClock
from wonderq.commands import StopParking
from wonderq.config import Settings
from wonderq.core import Core
from wonderq.ids import TimeOrderedIds, new_token
from wonderq.ticker import run_ticker
from wonderq.web import create_app

log = logging.getLogger("wonderq.server")

GRACEFUL_TIMEOUT = 5.0  # seconds in-flight requests get to finish after a shutdown signal


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [bind_address(settings.host, settings.port)]
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.accesslog = None
    config.errorlog = log
    return config


async def serve(
    settings: Settings,
    *,
    shutdown: trio.Event | None = None,
    core: Core | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until `shutdown` is set (or a signal arrives when `shutdown` is None). Reports the bound URLs.

    `core` is the state to serve; by default a new, empty one built from `settings`."""
    if core is None:
        core = Core(limits=settings.limits(), new_id=TimeOrderedIds(), new_token=new_token)
    actor = Actor(core, WallClock())
    app = create_app(actor.handle, settings)
    stop = trio.Event() if shutdown is None else shutdown
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        if shutdown is None:
            nursery.start_soon(_stop_on_signal, stop)
        binds: list[str] = await nursery.start(_serve_http, app, hypercorn_config(settings), stop, nursery)
        nursery.start_soon(partial(run_ticker, actor.handle, interval=settings.tick_interval))
        nursery.start_soon(_stop_parking, actor.handle, stop)
        log.info("WonderQ listening on %s", ", ".join(binds))
        task_status.started(binds)


async def _stop_parking(handle: ActorHandle, stop: trio.Event) -> None:
    await stop.wait()
    await handle.ask(StopParking())


async def _serve_http(
    app: object,
    config: HypercornConfig,
    stop: trio.Event,
    owner: trio.Nursery,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait, task_status=task_status)  # type: ignore[arg-type]
    log.info("WonderQ stopped serving; shutting down")
    owner.cancel_scope.cancel()  # the actor and the ticker run until the HTTP side is done


async def _stop_on_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s: finishing requests in flight", signal.Signals(signum).name)
            stop.set()
            return
