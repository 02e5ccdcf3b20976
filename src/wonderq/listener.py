"""Serving the app on its sockets with hypercorn's trio machinery, with a cap on open connections.

hypercorn's own trio worker (`hypercorn.trio.serve`) accepts every connection it is offered: about 20,000 idle
ones used up the process's file descriptors, and then nothing, not even /health, could be served. This module
runs the same pieces (lifespan, one `TCPServer` per connection, the graceful shutdown) but counts the connections
it serves: beyond MAX_CONNECTIONS, a new connection is answered at once with a 503 `too_many_connections` (and
Retry-After) and closed, so the server stays within its descriptors and tells clients why.
"""

from __future__ import annotations

import contextlib
import logging
import math
import resource
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr, wrap_app

from wonderq.errors import TooManyConnections

log = logging.getLogger("wonderq.listener")

REFUSE_TIMEOUT = 2.0  # seconds a refused connection gets to take its 503 (TLS: the handshake too)
REFUSAL_LOG_EVERY = 10.0  # seconds between two warnings about refused connections
STRAGGLER_MARGIN = 0.5  # seconds after the graceful timeout before a connection still open has its socket closed
RESERVED_FDS = 64  # descriptors kept beyond the connections: the journal, the log, sockets being accepted


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType:
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    assert isinstance(inner, trio.SocketStream)
    return inner.socket


def refusal(error: TooManyConnections) -> bytes:
    """The whole HTTP/1.1 reply a refused connection gets."""
    body = orjson.dumps({"error": {"code": error.code, "message": error.message}})
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def connection_budget(wanted: int) -> int:
    """How many connections this process can hold open: `wanted`, or fewer when the descriptor limit is lower
    even after raising the soft limit to the hard one (logged)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + RESERVED_FDS
    if soft != resource.RLIM_INFINITY and soft < need:
        raised = hard if hard == resource.RLIM_INFINITY else min(hard, need)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open-file limit from %d: %s", soft, error)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    fitted = max(1, int(soft) - RESERVED_FDS)
    log.warning(
        "MAX_CONNECTIONS is %d, but the open-file limit (ulimit -n) is %d: serving at most %d connections",
        wanted,
        soft,
        fitted,
    )
    return fitted


class ConnectionCap:
    """Counts the connections being served, refuses those beyond `limit`, and at a shutdown closes those that
    outlive the grace period."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.refused = 0  # since start
        self._streams: set[trio.abc.Stream] = set()  # the connections being served
        self._none_open = trio.Event()  # set whenever the last one ends
        self._logged_at = -math.inf
        self._refused_since_log = 0

    @property
    def open(self) -> int:
        return len(self._streams)

    async def serve(self, handle: Callable[[trio.abc.Stream], Awaitable[None]], stream: trio.abc.Stream) -> None:
        if self.open >= self.limit:
            await self._refuse(stream)
            return
        self._streams.add(stream)
        self._none_open = trio.Event()
        try:
            await handle(stream)
        finally:
            self._streams.discard(stream)
            if not self._streams:
                self._none_open.set()

    async def close_stragglers(self, grace: float) -> None:
        """Wait up to `grace` seconds for every connection to end, then close the sockets of those still open.
        hypercorn writes to a socket shielded from cancellation, so a client that stops reading would otherwise
        hold a shutdown for as long as it keeps its socket open; closing the socket wakes the stuck write."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(grace):
                while self._streams:
                    await self._none_open.wait()
            if self._streams:
                log.warning("closing %d connections still open %.1f s into the shutdown", len(self._streams), grace)
            for stream in list(self._streams):
                _socket_of(stream).close()

    async def _refuse(self, stream: trio.abc.Stream) -> None:
        self.refused += 1
        self._refused_since_log += 1
        now = trio.current_time()
        if now - self._logged_at >= REFUSAL_LOG_EVERY:
            log.warning(
                "%d connections refused: %d open, the limit (MAX_CONNECTIONS)", self._refused_since_log, self.open
            )
            self._logged_at, self._refused_since_log = now, 0
        error = TooManyConnections(f"the server has {self.open} connections open, its limit (MAX_CONNECTIONS)")
        with trio.move_on_after(REFUSE_TIMEOUT), contextlib.suppress(trio.BrokenResourceError, OSError):
            await stream.send_all(refusal(error))  # the client may be gone already: nothing to tell it then
            # A lingering close: closing with the client's request still unread would reset the connection, and
            # a reset can destroy the reply before the client reads it. So end our side, then read what the
            # client sends until it closes too (or the time is up).
            if isinstance(stream, trio.SocketStream):
                await stream.send_eof()
                while await stream.receive_some(65536):
                    pass
        with trio.CancelScope(shield=True), trio.move_on_after(REFUSE_TIMEOUT):
            await stream.aclose()


async def serve(
    app: Any,
    config: HypercornConfig,
    cap: ConnectionCap,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI `app` on `config`'s binds until `shutdown_trigger` returns; report the bound URLs when
    listening. Then stop accepting, and give the requests in flight `config.graceful_timeout` seconds to finish."""
    app = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(app, config, lifespan_state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as server_nursery:
            sockets = config.create_sockets()
            listeners: list[trio.abc.Listener[Any]] = []
            binds: list[str] = []
            ssl_context = config.create_ssl_context()
            for secure, sock in [(True, s) for s in sockets.secure_sockets] + [
                (False, s) for s in sockets.insecure_sockets
            ]:
                sock.listen(config.backlog)
                listener: trio.abc.Listener[Any] = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
                if secure:
                    assert ssl_context is not None
                    listener = trio.SSLListener(listener, ssl_context, https_compatible=True)
                listeners.append(listener)
                binds.append(f"{'https' if secure else 'http'}://{repr_socket_addr(sock.family, sock.getsockname())}")
            connection = partial(TCPServer, app, config, context, ConnectionState(lifespan_state.copy()))
            task_status.started(binds)
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(
                        partial(
                            trio.serve_listeners,
                            partial(cap.serve, connection),
                            listeners,
                            handler_nursery=server_nursery,
                        )
                    )
                    await trio.sleep_forever()
            except BaseExceptionGroup as error:
                _, others = error.split((ShutdownError, KeyboardInterrupt))
                if others is not None:
                    raise others from None
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
                server_nursery.start_soon(cap.close_stragglers, config.graceful_timeout + STRAGGLER_MARGIN)
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
