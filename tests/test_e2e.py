"""End to end: the real server (actor, ticker, hypercorn) on 127.0.0.1 port 0, driven with httpx over sockets.

No virtual clock here: real I/O is in flight. Waits are short and bounded with `fail_after`.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.helpers import make_core, settings
from tests.servers import server_process, serving
from wonderq.core import Core
from wonderq.ids import TimeOrderedIds
from wonderq.model import Lease
from wonderq.server import serve


async def test_fifty_concurrent_receivers_drain_a_thousand_messages_exactly_once() -> None:
    delivered: list[str] = []
    async with serving(max_batch=100) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        sent: list[str] = []
        for start in range(0, 1000, 100):
            batch = {"messages": [{"body": {"n": n}} for n in range(start, start + 100)]}
            reply = await http.post("/v1/queues/work/messages/batch", json=batch)
            assert reply.status_code == 201
            sent += reply.json()["ids"]

        async def receiver(number: int) -> None:
            while True:
                reply = await http.post(
                    "/v1/queues/work/receive",
                    json={"max": 5, "visibility_timeout": 120, "consumer": f"r{number}"},
                )
                assert reply.status_code == 200
                messages = reply.json()["messages"]
                if not messages:
                    return
                for message in messages:
                    assert message["receive_count"] == 1
                    delivered.append(message["id"])
                    acked = await http.delete(
                        f"/v1/queues/work/messages/{message['id']}", params={"receipt": message["receipt"]}
                    )
                    assert acked.status_code == 204

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for number in range(50):
                    nursery.start_soon(receiver, number)
        stats = (await http.get("/v1/queues/work")).json()
    assert len(delivered) == 1000
    assert sorted(delivered) == sorted(sent)
    assert (stats["ready"], stats["leased"], stats["acked"], stats["expired"]) == (0, 0, 1000, 0)


async def test_an_unacked_message_comes_back_after_its_lease_over_real_time() -> None:
    async with serving(tick_interval=0.02) as url, httpx.AsyncClient(base_url=url) as http:
        await http.post("/v1/queues/q/messages", content=b"x", headers={"content-type": "text/plain"})
        first = (await http.post("/v1/queues/q/receive", json={"visibility_timeout": 0.3})).json()["messages"][0]
        with trio.fail_after(5):
            again = (await http.post("/v1/queues/q/receive", json={"wait": 3})).json()["messages"][0]
        assert (again["id"], again["receive_count"]) == (first["id"], 2)
        late = await http.delete(f"/v1/queues/q/messages/{first['id']}", params={"receipt": first["receipt"]})
        assert late.status_code == 409
        assert late.json()["error"]["code"] == "lease_lost"


class ExplodingCore(Core):
    def receive(self, name: str, **kwargs: Any) -> list[Lease]:
        if name == "boom":
            raise RuntimeError("bug in the core")
        return super().receive(name, **kwargs)


async def test_an_actor_crash_stops_the_whole_server() -> None:
    base = make_core()
    core = ExplodingCore(limits=base.limits, new_id=TimeOrderedIds(), new_token=lambda: "t")

    async def doomed_request(http: httpx.AsyncClient) -> None:
        with contextlib.suppress(httpx.HTTPError):  # the connection dies with the server
            await http.post("/v1/queues/boom/receive")

    bound: list[str] = []

    async def serve_until_it_crashes() -> None:
        async with trio.open_nursery() as nursery:
            bound.extend(await nursery.start(partial(serve, settings(), core=core)))
            async with httpx.AsyncClient(base_url=bound[0]) as http:
                assert (await http.get("/health")).status_code == 200
                nursery.start_soon(doomed_request, http)
                await trio.sleep_forever()

    with trio.fail_after(20), pytest.raises(BaseExceptionGroup) as raised:
        await serve_until_it_crashes()
    assert raised.value.subgroup(lambda error: "bug in the core" in str(error)) is not None
    host, port = bound[0].removeprefix("http://").rsplit(":", 1)
    with pytest.raises(OSError, match="all attempts to connect"):  # the listener is gone: nothing is left hanging
        await trio.open_tcp_stream(host, int(port))


def test_sigterm_stops_cleanly_and_answers_parked_long_polls() -> None:
    with server_process() as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        assert http.put("/v1/queues/q").status_code == 201
        replies: list[tuple[float, httpx.Response]] = []

        def long_poll() -> None:
            reply = httpx.post(server.url + "/v1/queues/q/receive", json={"wait": 20}, timeout=30)
            replies.append((time.monotonic(), reply))

        poller = threading.Thread(target=long_poll)
        poller.start()
        deadline = time.monotonic() + 10
        while http.get("/health").json()["parked_receives"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        http.close()
        signalled_at = time.monotonic()
        assert server.stop(signal.SIGTERM) == 0, "".join(server.log)
        poller.join(timeout=10)
        answered_at, reply = replies[0]
        assert answered_at - signalled_at < 2  # at once, not after the long poll's 20 seconds
        assert reply.status_code == 200
        assert reply.json() == {"messages": []}
        assert "finishing requests in flight" in "".join(server.log)


def test_an_idle_keep_alive_connection_does_not_hold_up_shutdown() -> None:
    with server_process() as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/health").status_code == 200  # the connection stays open, idle
        assert http.post("/v1/queues/q/messages", content=b"x").status_code == 201
        started = time.monotonic()
        assert server.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 2  # not hypercorn's 5-second graceful timeout


def test_sigint_stops_cleanly() -> None:
    with server_process() as server:
        assert httpx.get(server.url + "/health").status_code == 200
        assert server.stop(signal.SIGINT) == 0, "".join(server.log)


def test_invalid_configuration_stops_start_up_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DEFAULT_PROCESSING_TIME=-3\n")
    result = subprocess.run(
        [sys.executable, "-m", "wonderq", "serve", "--port", "0", "--max-batch", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "MAX_BATCH" in result.stderr
    assert "DEFAULT_PROCESSING_TIME" in result.stderr  # read from .env in the working directory
    assert "Traceback" not in result.stderr


def test_a_port_in_use_fails_start_up_clearly() -> None:
    with server_process() as first:
        port = first.url.rsplit(":", 1)[1]
        result = subprocess.run(
            [sys.executable, "-m", "wonderq", "serve", "--memory", "--port", port],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1
        assert f"cannot serve on 127.0.0.1:{port}" in result.stderr
