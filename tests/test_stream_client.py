"""The streaming path through the Python client (`wonderq.stream_client`) against real servers: the blocking
`Stream` over a subprocess, the async one in this trio run."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

from tests.servers import ServerProcess, server_process, serving
from wonderq import stream_client
from wonderq.client import AsyncClient, Client, WonderQClientError
from wonderq.stream import MAX_CREDIT
from wonderq.stream_client import astream, stream


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with server_process() as process:
        yield process


def test_a_blocking_stream_consumes_settles_and_sends(server: ServerProcess) -> None:
    with Client(server.url) as client:
        with stream(client, "jobs") as jobs:
            sent = jobs.send_batch(["a", {"n": 2}, b"\x00"])
            jobs.subscribe(2, visibility_timeout=30, consumer="s1")
            first = jobs.messages(wait=5)
            while len(first) < 2:
                first += jobs.messages(wait=5)
            assert [m.id for m in first] == sent[:2]
            assert [m.body for m in first] == ["a", {"n": 2}]
            assert jobs.messages(wait=0.5) == []  # the window of 2 is full
            result = jobs.ack(first[0].receipt)
            assert (result.acked, result.ok) == ((first[0].receipt,), True)
            (third,) = jobs.messages(wait=5)
            assert (third.id, third.body) == (sent[2], b"\x00")
            assert jobs.extend(third.receipt, 100) > first[1].lease_expires_at
            jobs.nack(first[1].receipt)
            (again,) = jobs.messages(wait=5)
            assert (again.id, again.receive_count) == (sent[1], 2)
            with pytest.raises(WonderQClientError) as raised:
                jobs.send_batch([])
            assert raised.value.code == "invalid_parameter"
        assert client.get_queue("jobs")["leased"] == 0  # closing gave the held leases back


async def test_an_async_stream_under_trio() -> None:
    async with serving() as url, AsyncClient(url) as client:
        async with astream(client, "work") as work:
            ids = await work.send_batch([f"m{i}" for i in range(5)])
            await work.subscribe(10)
            got: list[str] = []
            with trio.fail_after(10):
                while len(got) < 5:
                    got += [m.id for m in await work.messages(wait=5)]
            assert got == ids
        stats = await client.get_queue("work")
        assert (stats["ready"], stats["leased"]) == (5, 0)


def test_sigterm_with_an_open_stream_exits_promptly() -> None:
    with server_process() as process, Client(process.url) as client, stream(client, "held") as held:
        held.send_batch(["x"])
        held.subscribe(1)
        assert len(held.messages(wait=5)) == 1
        started = time.monotonic()
        assert process.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 3


def test_the_socket_buffers_two_full_windows_of_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx-ws's default buffer (512 frames) is below one window of one-message frames: a consumer slow to read
    would block its reader thread until the socket died of a ping timeout."""
    seen: dict[str, object] = {}

    @contextmanager
    def fake_connect_ws(url: str, http: object, **options: object) -> Iterator[object]:
        seen.update(options)
        yield object()

    monkeypatch.setattr(stream_client, "connect_ws", fake_connect_ws)
    with Client("http://127.0.0.1:9") as client, stream(client, "q"):
        pass
    assert seen["queue_size"] == stream_client.QUEUE_FRAMES >= 2 * MAX_CREDIT
