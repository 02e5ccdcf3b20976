"""No SQS request gets a 5xx: the three 500s of issue 12 (a body over MAX_REQUEST_BYTES, a QueueUrl that is no
URL, a body that never arrives) each answer a clean SQS error, and hypothesis-generated requests (every action and
unknown ones, parameters of right and wrong types, odd QueueUrls, huge and non-ASCII strings, bodies that are not
JSON objects, missing and odd headers, signed and unsigned when keys are set) answer 2xx or 4xx with a well-formed
SQS reply. In process, on trio's virtual clock; the examples are bounded so that this runs in seconds.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart import Response
from quart.typing import TestClientProtocol as Client

from tests.helpers import make_core, running_actor
from tests.helpers import settings as app_settings_of
from tests.test_sqs_signing import (
    ACCOUNT,
    JSON_TYPE,
    KEY,
    SECRET,
    assert_error,
    call,
    post,
    sign_headers,
    unsigned,
)
from wonderq import sqs_wire as wire
from wonderq.actor import ActorHandle
from wonderq.config import Settings
from wonderq.sqs import PERMISSIONS, SYSTEM_ATTRIBUTES
from wonderq.web import create_app

QUEUES = ("q", "dlq", "f.fifo")  # made before each example's requests
EXAMPLES = int(os.environ.get("SQS_FUZZ_EXAMPLES", "25"))  # per mode; a few seconds in all. More for a long run
TYPES = {spec.type_name: spec for spec in wire.ERRORS.values()}


# ---- the three 500s of issue 12 ------------------------------------------------------------------------------


async def test_a_body_over_the_request_limit_is_413(client: Client, app_settings: Settings) -> None:
    body = orjson.dumps({"QueueName": "x" * app_settings.max_request_bytes})
    status, reply, response = await post(client, body, unsigned("CreateQueue"))
    assert_error(status, reply, response, "RequestEntityTooLarge", 413)
    assert reply["message"] == f"The request body is larger than {app_settings.max_request_bytes} bytes."


async def test_a_streamed_body_over_the_request_limit_is_413(client: Client, app_settings: Settings) -> None:
    """No Content-Length to refuse it by: the body grows past the limit as it arrives."""
    async with client.request("/", method="POST", headers=unsigned("CreateQueue")) as connection:
        chunk = b" " * 16_384
        for _ in range(app_settings.max_request_bytes // len(chunk) + 1):
            await connection.send(chunk)
        await connection.send_complete()
        response = await connection.as_response()
    assert_error(response.status_code, orjson.loads(await response.get_data()), response, "RequestEntityTooLarge", 413)


@pytest.mark.parametrize("app_settings", [app_settings_of(body_timeout=5.0)])
async def test_a_body_that_never_arrives_is_408_after_body_timeout(
    client: Client, app_settings: Settings, autojump_clock: trio.testing.MockClock
) -> None:
    started = trio.current_time()
    async with client.request("/", method="POST", headers=unsigned("ListQueues")) as connection:
        await connection.send(b'{"QueueNamePrefix": ')  # and nothing more
        response = await connection.as_response()
    assert_error(response.status_code, orjson.loads(await response.get_data()), response, "RequestTimeout", 408)
    assert trio.current_time() - started == pytest.approx(app_settings.body_timeout)


async def test_the_apps_own_body_timeout_is_an_sqs_error_too(
    client: Client, app_settings: Settings, autojump_clock: trio.testing.MockClock
) -> None:
    """Quart's BODY_TIMEOUT, should the app set one shorter than BODY_TIMEOUT: werkzeug's RequestTimeout."""
    client.app.config["BODY_TIMEOUT"] = app_settings.body_timeout / 2
    started = trio.current_time()
    async with client.request("/", method="POST", headers=unsigned("ListQueues")) as connection:
        await connection.send(b"{")
        response = await connection.as_response()
    assert_error(response.status_code, orjson.loads(await response.get_data()), response, "RequestTimeout", 408)
    assert trio.current_time() - started == pytest.approx(app_settings.body_timeout / 2)


@pytest.mark.parametrize(
    "url",
    ["http://[::1", "https://a]b/123456789012/q", "http://[x]/123456789012/q", "http://\u2100/123456789012/q"],
)
async def test_a_queue_url_that_is_no_url_is_invalid_address(client: Client, url: str) -> None:
    status, reply, response = await call(client, "SendMessage", {"QueueUrl": url, "MessageBody": "x"}, key=None)
    assert_error(status, reply, response, "InvalidAddress", 404)
    assert reply["message"] == f"The address {url} is not valid for this endpoint."


# ---- generated requests --------------------------------------------------------------------------------------


def repeated(text: str, *counts: int) -> st.SearchStrategy[str]:
    return st.sampled_from(counts).map(lambda count: text * count)


printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
header_values = st.one_of(
    st.text(printable, max_size=40),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=20),
    st.sampled_from(["", " ", "UNSIGNED-PAYLOAD", "20270115T080000Z", "AWS4-HMAC-SHA256", "https"]),
    repeated("a", 4000),
)


def often(likely: st.SearchStrategy[Any], rarely: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`likely` about four times in five (a plain one_of draws its branches about equally). Hypothesis favours
    the ends of a range, so the rare values are in its middle."""
    return st.integers(0, 9).flatmap(lambda n: rarely if n in (3, 6) else likely)


def now_and_then() -> st.SearchStrategy[bool]:
    """True about one time in ten."""
    return st.integers(0, 9).map(lambda n: n == 5)


texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "x", "\x00\x01\ufffe", " " * 90]),
    repeated("é", 81, 5000),
    repeated("\U0001f600", 300),
    repeated("a", 81, 129, 300),
)
big_texts = repeated("x", 70_000) | repeated("ü", 40_000)  # bodies over the tests' MAX_REQUEST_BYTES (64 KiB)
integers = often(
    st.integers(0, 10),
    st.integers(-(2**63), 2**64 - 1) | st.sampled_from([-1, 11, 20, 21, 900, 901, 1000, 43_200, 43_201]),
)
words = st.text(printable, min_size=1, max_size=12)  # texts SQS takes as names, bodies and tokens
scalars = st.one_of(st.none(), st.booleans(), integers, st.floats(), texts)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=8
)


def urls_of(names: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return names.map(lambda name: f"http://localhost/{ACCOUNT}/{name}")


queue_urls = often(
    urls_of(st.sampled_from(QUEUES)),
    urls_of(texts)
    | texts
    | st.sampled_from(
        [
            "http://[::1",
            "http://a]b/123456789012/q",
            "/123456789012/q",
            "http://localhost/123456789012/q/extra",
            "http://localhost/000000000000/q",
            "http://localhost/123456789012/" + "a" * 81,
            "http://\u2100/123456789012/q",  # NFKC makes it a slash: urlsplit refuses it
            "ftp://x/123456789012/q",
        ]
    ),
)
arns = often(
    st.sampled_from([f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}" for name in QUEUES]),
    st.sampled_from(["arn:aws:sqs:eu-west-1:123456789012:q", "arn::::", "arn:aws:sqs:us-east-1:1:q", "q"]) | texts,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def attribute_maps(names: list[str]) -> st.SearchStrategy[Any]:
    """Message attributes: mostly valid ones, else of odd names, types and values."""
    valid = st.one_of(
        st.fixed_dictionaries({"DataType": st.sampled_from(["String", "String.x"]), "StringValue": words}),
        st.fixed_dictionaries({"DataType": st.just("Number"), "StringValue": st.integers().map(str)}),
        st.fixed_dictionaries(
            {"DataType": st.just("Binary"), "BinaryValue": st.binary(min_size=1, max_size=8).map(b64)}
        ),
    )
    valid_map = st.dictionaries(st.sampled_from(names[:2]), valid, max_size=3)
    return often(valid_map, odd_attribute_maps(names))


def odd_attribute_maps(names: list[str]) -> st.SearchStrategy[Any]:
    value = st.fixed_dictionaries(
        {"DataType": st.sampled_from(["String", "Number", "Binary", "Number.int", "Binary.png", "Foo", ""])},
        optional={
            "StringValue": texts | st.sampled_from(["1e999", "-0.5", "12345678901234567890123456789012345678901"]),
            "BinaryValue": st.binary(max_size=12).map(b64) | texts,
            "StringListValues": st.lists(texts, max_size=2),
        },
    )
    return st.dictionaries(st.sampled_from(names) | texts, value | json_values, max_size=3)


def entries(receipt: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Batch entries: mostly a few good ones (each fit for any of the three batches), else odd ones."""
    good = st.fixed_dictionaries(
        {"Id": st.sampled_from(["a", "b", "c"]), "MessageBody": words, "ReceiptHandle": receipt},
        optional={"VisibilityTimeout": st.integers(0, 10), "DelaySeconds": st.integers(0, 10)},
    )
    return often(st.lists(good, min_size=1, max_size=3, unique_by=lambda entry: entry["Id"]), odd_entries())


def odd_entries() -> st.SearchStrategy[Any]:
    id_ = st.sampled_from(["a", "b"]) | texts
    entry = st.fixed_dictionaries(
        {"Id": id_},
        optional={
            "MessageBody": often(words, texts),
            "ReceiptHandle": texts,
            "VisibilityTimeout": integers,
            "DelaySeconds": integers,
            "MessageGroupId": texts,
            "MessageDeduplicationId": texts,
            "MessageAttributes": attribute_maps(["a", "b.c"]),
        },
    )
    return st.lists(entry | json_values, max_size=12)


queue_attributes = st.dictionaries(
    st.sampled_from([*wire.QUEUE_ATTRIBUTES, "Bogus"]),
    st.one_of(
        texts,
        st.sampled_from(["0", "1024", "true", "false", "messageGroup", "perMessageGroupId", "{}", "[]"]),
        st.sampled_from(
            [
                orjson.dumps(
                    {"deadLetterTargetArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}", "maxReceiveCount": n}
                ).decode()
                for name in QUEUES
                for n in (1, "2", 1001)
            ]
            + ['{"redrivePermission": "byQueue", "sourceQueueArns": []}', '{"redrivePermission": "denyAll"}']
        ),
    ),
    max_size=4,
)

PARAMETERS: dict[str, st.SearchStrategy[Any]] = {  # each of the right type, or any JSON value instead
    "QueueUrl": queue_urls,
    "QueueName": st.sampled_from(QUEUES) | texts,
    "QueueNamePrefix": texts,
    "QueueOwnerAWSAccountId": st.just(ACCOUNT) | texts,
    "Attributes": queue_attributes,
    "tags": st.dictionaries(texts, texts, max_size=3),
    "Tags": st.dictionaries(texts, texts, max_size=3),
    "TagKeys": st.lists(texts, max_size=3),
    "AttributeNames": st.lists(
        st.sampled_from(["All", *wire.QUEUE_ATTRIBUTES, *SYSTEM_ATTRIBUTES]) | texts, max_size=3
    ),
    "MessageSystemAttributeNames": st.lists(st.sampled_from(["All", *SYSTEM_ATTRIBUTES]) | texts, max_size=3),
    "MessageAttributeNames": st.lists(st.sampled_from(["All", ".*", "a.*"]) | texts, max_size=3),
    "MessageBody": often(words, texts | big_texts),
    "MessageAttributes": attribute_maps(["a", "b.c", "AWS.x", "a..b"]),
    "MessageSystemAttributes": attribute_maps(["AWSTraceHeader"]),
    "DelaySeconds": integers,
    "MessageGroupId": often(words, texts),
    "MessageDeduplicationId": often(words, texts),
    "MaxNumberOfMessages": integers,
    "VisibilityTimeout": integers,
    "WaitTimeSeconds": st.integers(-1, 21),
    "ReceiveRequestAttemptId": texts,
    "ReceiptHandle": texts,
    "Entries": entries(texts),
    "MaxResults": integers,
    "NextToken": texts,
    "SourceArn": arns,
    "DestinationArn": arns,
    "MaxNumberOfMessagesPerSecond": integers,
    "TaskHandle": texts,
    "Label": texts,
    "AWSAccountIds": st.lists(texts, max_size=2),
    "Actions": st.lists(texts, max_size=2),
}
ACTION_PARAMETERS: dict[str, tuple[str, ...]] = {  # the parameters of each action, from SQS's API reference
    "CreateQueue": ("QueueName", "Attributes", "tags"),
    "GetQueueUrl": ("QueueName", "QueueOwnerAWSAccountId"),
    "ListQueues": ("QueueNamePrefix", "MaxResults", "NextToken"),
    "DeleteQueue": ("QueueUrl",),
    "GetQueueAttributes": ("QueueUrl", "AttributeNames"),
    "SetQueueAttributes": ("QueueUrl", "Attributes"),
    "PurgeQueue": ("QueueUrl",),
    "SendMessage": (
        "QueueUrl",
        "MessageBody",
        "DelaySeconds",
        "MessageAttributes",
        "MessageSystemAttributes",
        "MessageGroupId",
        "MessageDeduplicationId",
    ),
    "SendMessageBatch": ("QueueUrl", "Entries"),
    "ReceiveMessage": (
        "QueueUrl",
        "MaxNumberOfMessages",
        "VisibilityTimeout",
        "WaitTimeSeconds",
        "AttributeNames",
        "MessageSystemAttributeNames",
        "MessageAttributeNames",
        "ReceiveRequestAttemptId",
    ),
    "DeleteMessage": ("QueueUrl", "ReceiptHandle"),
    "DeleteMessageBatch": ("QueueUrl", "Entries"),
    "ChangeMessageVisibility": ("QueueUrl", "ReceiptHandle", "VisibilityTimeout"),
    "ChangeMessageVisibilityBatch": ("QueueUrl", "Entries"),
    "ListDeadLetterSourceQueues": ("QueueUrl", "MaxResults", "NextToken"),
    "TagQueue": ("QueueUrl", "Tags"),
    "UntagQueue": ("QueueUrl", "TagKeys"),
    "ListQueueTags": ("QueueUrl",),
    "StartMessageMoveTask": ("SourceArn", "DestinationArn", "MaxNumberOfMessagesPerSecond"),
    "CancelMessageMoveTask": ("TaskHandle",),
    "ListMessageMoveTasks": ("SourceArn", "MaxResults"),
    "AddPermission": ("QueueUrl", "Label", "AWSAccountIds", "Actions"),
    "RemovePermission": ("QueueUrl", "Label"),
}
REQUIRED: dict[str, tuple[str, ...]] = {  # of each action, its parameters SQS requires
    "CreateQueue": ("QueueName",),
    "GetQueueUrl": ("QueueName",),
    "SetQueueAttributes": ("QueueUrl", "Attributes"),
    "SendMessage": ("QueueUrl", "MessageBody"),
    "DeleteMessage": ("QueueUrl", "ReceiptHandle"),
    "ChangeMessageVisibility": ("QueueUrl", "ReceiptHandle", "VisibilityTimeout"),
    "TagQueue": ("QueueUrl", "Tags"),
    "UntagQueue": ("QueueUrl", "TagKeys"),
    "StartMessageMoveTask": ("SourceArn",),
    "CancelMessageMoveTask": ("TaskHandle",),
    "ListMessageMoveTasks": ("SourceArn",),
    **dict.fromkeys(
        ("DeleteQueue", "GetQueueAttributes", "PurgeQueue", "ReceiveMessage", "ListDeadLetterSourceQueues"),
        ("QueueUrl",),
    ),
    **dict.fromkeys(("ListQueueTags", "AddPermission", "RemovePermission"), ("QueueUrl",)),
    **dict.fromkeys(
        ("SendMessageBatch", "DeleteMessageBatch", "ChangeMessageVisibilityBatch"), ("QueueUrl", "Entries")
    ),
}
odd_bodies = st.one_of(
    st.sampled_from(
        [
            b"",
            b"  \n",
            b"[]",
            b"null",
            b"1",
            b'"QueueUrl"',
            b"{",
            b"\xff\xfe{}",
            b'{"QueueUrl": 1e999}',
            b'{"MaxResults": 123456789012345678901234567890}',
            b"[" * 1100,
            b'{"QueueName": "\\ud800"}',
            b'{"QueueName": "q", "QueueName": "dlq"}',
        ]
    ),
    st.binary(max_size=40),
    st.dictionaries(texts, json_values, max_size=3).map(orjson.dumps),
)
odd_targets = st.one_of(
    st.sampled_from(["", "AmazonSQS", "AmazonSQS.", "AmazonSQS.sendMessage", "AmazonSQS.Foo", "DynamoDB_20120810.X"]),
    st.text(printable, max_size=30).map(f"{wire.TARGET_PREFIX}.".__add__),
)
HEADERS = ["Content-Type", "X-Amz-Date", "Authorization", "X-Amz-Content-Sha256", "X-Forwarded-Proto"]
# Host values werkzeug takes: one with a label over 63 characters fails in quart before any route runs (a 500 on
# every route, the SQS endpoint's included), which the SQS endpoint cannot answer.
hosts = st.sampled_from(["localhost", "127.0.0.1:3000", "[::1]:3000", "[::1", "example.com:99999", "é", "a b", ""])


@st.composite
def parameters(draw: st.DrawFn, action: str, receipt: str) -> dict[str, Any]:
    """The action's parameters, each of the right type (the required ones always, the others now and then), but
    one time in five one of them of any JSON type or missing; one time in ten another parameter too."""
    handles = often(st.just(receipt), texts)
    right = {**PARAMETERS, "ReceiptHandle": handles, "Entries": entries(handles)}
    names = ACTION_PARAMETERS[action]
    troubled = draw(often(st.none(), st.sampled_from(names))) if names else None
    params: dict[str, Any] = {}
    for name in names:
        if name == troubled:
            if draw(st.booleans()):
                params[name] = draw(json_values)
        elif name in REQUIRED.get(action, ()) or draw(st.booleans()):
            params[name] = draw(right[name])
    if draw(now_and_then()):
        name = draw(st.sampled_from(sorted(PARAMETERS)))
        params[name] = draw(PARAMETERS[name] | json_values)
    return params


# Hypothesis favours the first of a sampled_from: a send and a receive, then the others
ACTIONS = ["SendMessage", "ReceiveMessage", *sorted(set(ACTION_PARAMETERS) - {"SendMessage", "ReceiveMessage"})]
TROUBLES = ("body", "target", "signed odd headers", "odd headers", "host", "signature", "no header", "(un)signed")


@st.composite
def requests(draw: st.DrawFn, *, keys: bool, receipt: str, now: float) -> tuple[bytes, dict[str, str]]:
    """One request: a known action with its parameters, signed by botocore when keys are required; and about one
    time in two, troubles: an odd body or target, odd headers (signed or added after signing), an odd Host, a
    wrong key, secret, region or clock, a header missing, a request signed when it need not be or unsigned."""
    troubles = set(draw(often(st.just([]), st.lists(st.sampled_from(TROUBLES), min_size=1, max_size=2))))
    action = draw(st.sampled_from(ACTIONS))
    body = draw(odd_bodies if "body" in troubles else parameters(action, receipt).map(orjson.dumps))
    target = draw(odd_targets) if "target" in troubles else f"{wire.TARGET_PREFIX}.{action}"
    headers = {"Content-Type": JSON_TYPE, "X-Amz-Target": target}
    odd: dict[str, str] = {}
    if troubles & {"signed odd headers", "odd headers"}:
        odd = draw(st.dictionaries(st.sampled_from(HEADERS), header_values, min_size=1, max_size=2))
    if "host" in troubles:
        odd["Host"] = draw(hosts)
    if "signed odd headers" in troubles:
        headers.update({name: value for name, value in odd.items() if value.isascii()})
    if keys != ("(un)signed" in troubles):
        key, secret, region, skew = KEY, SECRET, "us-east-1", 0
        if "signature" in troubles:
            key, secret = draw(st.sampled_from([(KEY, SECRET), (KEY, "wrong"), ("AKIDNOBODY", SECRET)]))
            region = draw(st.sampled_from(["us-east-1", "eu-west-1", "Not_A_Region"]))
            skew = draw(st.sampled_from([0, -900, 900, -901, 901]))
        headers = sign_headers(body, headers, at=now + skew, key=key, secret=secret, region=region)
    headers.update(odd)
    if "no header" in troubles:
        headers.pop(draw(st.sampled_from([*HEADERS, "X-Amz-Target", "Host"])), None)
    return body, headers


@asynccontextmanager
async def app_with_queues(keys: bool) -> AsyncIterator[tuple[Client, ActorHandle, str]]:
    """A fresh app (signatures required if `keys`) with the queues of QUEUES (`q` dead-letters to `dlq`), a
    message of `q` in flight, and that message's receipt handle."""
    # Any Host: the gate answers a Host it does not serve (421) before the endpoint, in API v1's error shape
    settings = app_settings_of(sqs_access_keys=f"{KEY}:{SECRET}" if keys else "", allowed_hosts="*")
    async with running_actor(make_core(settings.limits())) as (handle, _):
        app = create_app(handle, settings)
        async with app.test_app():
            client = app.test_client(use_cookies=False)  # with cookies, the test client makes a URL of any Host
            key = KEY if keys else None

            async def ok(action: str, params: dict[str, Any]) -> dict[str, Any]:
                status, reply, _ = await call(client, action, params, key=key)
                assert status == 200, reply
                return reply

            for name in QUEUES:
                await ok(
                    "CreateQueue", {"QueueName": name, "Attributes": {"FifoQueue": "true"} if ".fifo" in name else {}}
                )
            url = f"http://localhost/{ACCOUNT}/q"
            policy = orjson.dumps({"deadLetterTargetArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:dlq", "maxReceiveCount": 2})
            await ok("SetQueueAttributes", {"QueueUrl": url, "Attributes": {"RedrivePolicy": policy.decode()}})
            await ok("SendMessage", {"QueueUrl": url, "MessageBody": "m"})
            received = await ok("ReceiveMessage", {"QueueUrl": url})
            yield client, handle, received["Messages"][0]["ReceiptHandle"]


def check_reply(status: int, data: bytes, response: Response) -> None:
    """2xx with a JSON object, or 4xx with an SQS error: its __type from the catalogue, a message, and the
    x-amzn-query-error header of that error."""
    assert status < 500, data[:300]
    assert response.headers["Content-Type"] == JSON_TYPE
    assert response.headers["x-amzn-RequestId"]
    reply = orjson.loads(data)
    assert isinstance(reply, dict)
    if status < 300:
        assert "__type" not in reply
        return
    spec = TYPES[reply["__type"]]
    assert (spec.http_status, response.headers["x-amzn-query-error"]) == (status, spec.query_error_header)
    assert isinstance(reply["message"], str)
    assert reply["message"]


@pytest.mark.parametrize("keys", [False, True], ids=["open", "signed"])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
async def test_no_generated_request_gets_a_5xx(
    autojump_clock: trio.testing.MockClock, keys: bool, data: st.DataObject
) -> None:
    async with app_with_queues(keys) as (client, handle, receipt):
        for _ in range(data.draw(st.integers(1, 4), label="requests")):
            body, headers = data.draw(requests(keys=keys, receipt=receipt, now=handle.clock.now()))
            response = await client.post("/", data=body, headers=headers)
            check_reply(response.status_code, await response.get_data(as_text=False), response)
        status, reply, _ = await call(client, "ListQueues", key=KEY if keys else None)  # still serving
        assert status == 200
        assert isinstance(reply, dict)


def test_every_action_is_generated() -> None:
    assert set(ACTION_PARAMETERS) == {*PERMISSIONS, "AddPermission", "RemovePermission"}
    assert {name for names in ACTION_PARAMETERS.values() for name in names} <= set(PARAMETERS)
