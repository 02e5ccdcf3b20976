"""Generated frames over one socket (hypothesis): valid and invalid JSON, every op with right and wrong field
types, huge numbers, deep nesting, non-ASCII, binary frames. Every frame gets its answer (an `error` frame for a
bad one, never `internal_error`) or, for a good `subscribe` or `credit`, none, as documented; the socket stays
open and works at the end. In process, on the real clock (a fresh app per example; no sleeps)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import hypothesis
import pydantic_core
import trio
from hypothesis import strategies as st
from quart.typing import TestClientProtocol as Client
from quart.typing import TestWebsocketConnectionProtocol as Socket

from tests.helpers import make_core, running_actor, settings
from tests.test_http import check, put_queue
from wonderq.stream import MAX_REF
from wonderq.ticker import run_ticker
from wonderq.web import create_app

PATH = "/v1/queues/q/stream"
ANSWERS = {"ack": "acked", "nack": "nacked", "extend": "extended", "send": "sent", "unsubscribe": "unsubscribed"}
SILENT = {"subscribe", "credit"}  # ops with no answer (unless they are refused)
REPLY_TIMEOUT = 10.0  # real seconds an answer may take before the test fails

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and the infinities too: json.dumps writes them as tokens JSON does not have
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def mostly(right: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Values of the right type, or now and then of any JSON type."""
    return st.one_of(right, right, right, json_values)


receipts = st.sampled_from(["0000000000000001.t", "0000000000000001.", "junk", "", "é.ü"]) | st.text(max_size=30)
seconds = st.floats(0, 100) | st.floats(-1, 50_000) | st.integers(-(2**64), 2**64)
content_types = st.sampled_from(["text/plain", "application/json", "application/octet-stream", "text/x; charset=nope"])
good_entries = st.fixed_dictionaries(
    {"body": st.text(max_size=20) | st.integers() | st.lists(st.booleans(), max_size=3)},
    optional={"delay": st.floats(0, 5), "priority": st.integers(-5, 5), "group": st.text(min_size=1, max_size=5)},
)
any_entries = st.fixed_dictionaries(
    {},
    optional={
        "body": json_values,
        "body_base64": st.sampled_from(["AAH/", "é", "====", ""]) | st.text(max_size=8),
        "content_type": mostly(content_types),
        "delay": mostly(seconds),
        "priority": mostly(st.integers(-10, 10) | st.integers(-(2**40), 2**40)),
        "dedup_id": mostly(st.text(max_size=10)),
        "group": mostly(st.text(max_size=10)),
        "attributes": mostly(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2)),
    },
)
entries = st.one_of(good_entries, good_entries, good_entries, any_entries)
FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {  # each op's fields, with values of the right type
    "subscribe": {
        "credit": st.integers(-2, 1002),
        "visibility_timeout": seconds,
        "consumer": st.text(max_size=210),
    },
    "credit": {"credit": st.integers(-2, 1002)},
    "ack": {"receipts": st.lists(receipts, max_size=12)},
    "nack": {"receipt": receipts, "delay": seconds},
    "extend": {"receipt": receipts, "visibility_timeout": seconds},
    "send": {"messages": st.lists(entries, max_size=11)},
    "unsubscribe": {},
}
refs = mostly(st.text(max_size=10) | st.integers(-(2**64), 2**64))


@st.composite
def op_frames(draw: st.DrawFn) -> dict[str, Any]:
    """A frame of a known op, each field of the right type or of any JSON type, some left out, some added."""
    op = draw(st.sampled_from(sorted(FIELDS)))
    frame: dict[str, Any] = {"op": op}
    for name, right in FIELDS[op].items():
        if draw(st.integers(0, 9)) != 7:  # mostly given (not "> 0": hypothesis draws 0 often)
            frame[name] = draw(mostly(right))
    if draw(st.booleans()):
        frame["ref"] = draw(refs)
    if draw(st.integers(0, 9)) == 7:  # now and then, a field no op has
        frame[draw(st.text(max_size=8))] = draw(json_values)
    return frame


deep = st.integers(1, 2000).map(lambda depth: "[" * depth + "]" * depth) | st.integers(1, 2000).map(
    lambda depth: '{"a":' * depth + "1" + "}" * depth
)
raw_numbers = st.sampled_from(
    [
        '{"op": "subscribe", "credit": 1e400}',
        '{"op": "nack", "receipt": "0000000000000001.t", "delay": -1e400}',
        '{"op": "extend", "receipt": "0000000000000001.t", "visibility_timeout": 1e308}',
        '{"op": "credit", "credit": ' + "9" * 5000 + "}",
        '{"op": "send", "ref": ' + "9" * 30 + ', "messages": [{"body": ' + "9" * 400 + "}]}",
    ]
)
texts = st.one_of(
    op_frames().map(json.dumps),
    op_frames().map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=40),
    deep,
    raw_numbers,
)
# Not b"": quart-trio's test client cannot send an empty binary frame (tests/test_stream_e2e.py sends one).
frames = texts | texts.map(str.encode).filter(bool) | st.binary(min_size=1, max_size=40)


def parsed(raw: str | bytes) -> object:
    """A frame as the server reads it (docs/api.md: as API v1's JSON bodies: no NaN, a nesting limit)."""
    return pydantic_core.from_json(raw, allow_inf_nan=False)


def good_ref(raw: str | bytes) -> object:
    """The ref an answer to `raw` must carry: the frame's own, if it is a JSON object with a good one."""
    try:
        data = parsed(raw)
    except ValueError:
        return None
    ref = data.get("ref") if isinstance(data, dict) else None
    if isinstance(ref, str) or (type(ref) is int and -MAX_REF <= ref < MAX_REF):
        return ref
    return None


def op_of(raw: str | bytes) -> object:
    try:
        data = parsed(raw)
    except ValueError:
        return None
    return data.get("op") if isinstance(data, dict) else None


@asynccontextmanager
async def app_client() -> AsyncIterator[Client]:
    """The app in process with its actor and ticker, as the `client` fixture makes it, for one example."""
    app_settings = settings()
    async with running_actor(make_core(app_settings.limits())) as (handle, _), trio.open_nursery() as nursery:
        nursery.start_soon(partial(run_ticker, handle, interval=app_settings.tick_interval))
        async with create_app(handle, app_settings).test_app() as test_app:
            yield test_app.test_client()
        nursery.cancel_scope.cancel()


async def answers_until(socket: Socket, barrier: str) -> list[dict[str, Any]]:
    """Every frame up to the answer with ref `barrier` (excluded), pushed deliveries left out."""
    got: list[dict[str, Any]] = []
    while True:
        with trio.fail_after(REPLY_TIMEOUT):
            reply: dict[str, Any] = json.loads(await socket.receive())
        if reply.get("ref") == barrier:
            assert reply["op"] == "acked", reply
            return got
        if reply["op"] != "messages":
            got.append(reply)


@hypothesis.settings(max_examples=60, deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow])
@hypothesis.given(st.lists(frames, min_size=1, max_size=15))
@hypothesis.example(['{"op":"send","messages":[{"body_base64":"\u00e9"}]}'])  # closed the socket, issue 12
@hypothesis.example(['{"op":"send","ref":100000000000000000000000,"messages":[{"body":1}]}'])  # so did this
@hypothesis.example(['{"op":"subscribe","credit":5}', '{"op":"send","messages":[{"body":1}]}', '{"op":"credit"}'])
async def test_every_frame_gets_its_answer_and_the_socket_stays_open(sent: list[str | bytes]) -> None:
    async with app_client() as client:
        await put_queue(client)
        async with client.websocket(PATH) as socket:
            for index, raw in enumerate(sent):
                await socket.send(raw)
                barrier = f"barrier-{index}"  # an ack answered in order after the frame's own answer
                await socket.send(json.dumps({"op": "ack", "receipts": ["0000000000000000.b"], "ref": barrier}))
                got = await answers_until(socket, barrier)
                assert all(reply.get("code") != "internal_error" for reply in got), (raw, got)
                op = op_of(raw)
                if op in SILENT and not got:
                    continue  # a good subscribe or credit: no answer, as documented
                (answer,) = got
                assert answer["op"] in ("error", ANSWERS.get(str(op))), (raw, answer)
                assert answer.get("ref") == good_ref(raw), (raw, answer)
                if answer["op"] == "error":
                    assert isinstance(answer["code"], str)
                    assert answer["message"]
            await socket.send(json.dumps({"op": "send", "ref": "last", "messages": [{"body": "still open"}]}))
            with trio.fail_after(REPLY_TIMEOUT):
                while (last := json.loads(await socket.receive()))["op"] != "sent":
                    assert last["op"] in ("messages", "error"), last
                    assert last.get("code") != "internal_error", last
            assert (last["ref"], len(last["ids"])) == ("last", 1)
        await check(await client.get("/health"), 200)
