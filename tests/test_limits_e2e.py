"""The caps of issue 12 end to end, on a real server (tests/servers.py `serving`): MAX_QUEUES, MAX_QUEUE_MESSAGES
and MAX_LONG_POLLS reach the core and the actor from the settings, and over HTTP a refusal is a clean 4xx/503
with its error code that changes nothing, on API v1, the classic routes and the SQS endpoint alike."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from tests.helpers import settings
from tests.servers import serving
from wonderq.core import Core
from wonderq.ids import TimeOrderedIds, new_token
from wonderq.server import serve

SQS_HEADERS = {"content-type": "application/x-amz-json-1.0"}


def code(reply: httpx.Response) -> str:
    error: dict[str, Any] = reply.json()["error"]
    return str(error["code"])


async def test_max_queues_counts_the_classic_queue_and_refuses_every_way_of_creating_one() -> None:
    async with serving(max_queues=3) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.put("/v1/queues/a")).status_code == 201
        assert (await http.post("/v1/queues/b/messages", content=b"x")).status_code == 201
        refused = await http.put("/v1/queues/c")  # "default", "a" and "b" make three
        assert (refused.status_code, code(refused)) == (409, "too_many_queues")
        refused = await http.post("/v1/queues/c/messages", content=b"x")
        assert (refused.status_code, code(refused)) == (409, "too_many_queues")
        create = {**SQS_HEADERS, "x-amz-target": "AmazonSQS.CreateQueue"}
        refused = await http.post("/", json={"QueueName": "c"}, headers=create)
        assert 400 <= refused.status_code < 500, refused.text
        assert (await http.put("/v1/queues/a", json={"visibility_timeout": 5})).status_code == 200  # an update
        names = [queue["name"] for queue in (await http.get("/v1/queues")).json()["queues"]]
        assert names == ["a", "b", "default"]
        assert (await http.delete("/v1/queues/a")).status_code == 204
        assert (await http.put("/v1/queues/c")).status_code == 201


async def test_max_queue_messages_refuses_a_send_whole_on_every_route() -> None:
    async with serving(max_queue_messages=2) as url, httpx.AsyncClient(base_url=url) as http:
        entries = {"messages": [{"body": "a"}, {"body": "b"}, {"body": "c"}]}
        refused = await http.post("/v1/queues/q/messages/batch", json=entries)
        assert (refused.status_code, code(refused)) == (429, "queue_full")
        assert (await http.get("/v1/queues/q")).status_code == 404  # not even created
        assert (await http.post("/v1/queues/q/messages/batch", json={"messages": entries["messages"][:2]})).is_success
        refused = await http.post("/v1/queues/q/messages", content=b"x")
        assert (refused.status_code, code(refused)) == (429, "queue_full")
        assert (await http.get("/v1/queues/q")).json()["ready"] == 2
        for body in (b"1", b"2"):
            assert (await http.post("/addMessage", content=body)).is_success
        refused = await http.post("/addMessage", content=b"3")
        assert (refused.status_code, code(refused)) == (429, "queue_full")


async def test_max_long_polls_refuses_a_receive_that_would_park() -> None:
    async with serving(max_long_polls=0) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.put("/v1/queues/q")).status_code == 201
        refused = await http.post("/v1/queues/q/receive", json={"wait": 1})
        assert (refused.status_code, code(refused)) == (503, "too_many_long_polls")
        sent = (await http.post("/v1/queues/q/messages", content=b"x")).json()["id"]
        (message,) = (await http.post("/v1/queues/q/receive", json={"wait": 1})).json()["messages"]
        assert message["id"] == sent  # a receive that finds a message at once is never refused


async def test_a_store_already_at_max_queues_without_the_classic_queue_still_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The cap was lowered after `default` was deleted: creating it at start-up raised, and the server died."""
    chosen = settings(max_queues=2)
    core = Core(limits=chosen.limits(), new_id=TimeOrderedIds(), new_token=new_token)
    for name in ("a", "b"):
        core.put_queue(name, visibility_timeout=None, now=0.0)
    shutdown = trio.Event()
    with caplog.at_level(logging.WARNING):
        async with trio.open_nursery() as nursery:
            url = (await nursery.start(partial(serve, chosen, shutdown=shutdown, core=core)))[0]
            async with httpx.AsyncClient(base_url=url) as http:
                assert (await http.get("/health")).status_code == 200
                classic = await http.get("/readMessage")
                assert (classic.status_code, code(classic)) == (404, "queue_not_found")
                assert (await http.post("/v1/queues/a/messages", content=b"x")).status_code == 201
            shutdown.set()
    assert "could not be created: the server holds MAX_QUEUES queues" in caplog.text
