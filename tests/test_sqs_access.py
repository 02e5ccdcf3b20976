"""Who may do what over SQS, and how much: SigV4 keys belong to the principals of the auth file, every action
needs a permission on the queue it names, each principal has its request rate, and WonderQ's limits and overload
errors are the SQS errors SDKs know (and retry). In process, on trio's virtual clock.

The table runs every action twice on a fresh server: signed by a principal with every permission but the one the
action needs (AccessDenied, and nothing changes), then by one with only that permission (it works).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from quart.typing import TestClientProtocol as Client

from tests.helpers import settings, write_auth_file
from tests.test_sqs_signing import ACCOUNT, Json, assert_error, call, query_error
from wonderq import errors, sqs
from wonderq import sqs_wire as wire
from wonderq.config import Settings
from wonderq.sqs import PERMISSIONS

PERMISSION_NAMES = ("send", "receive", "admin", "monitor")
TICK = 10.0  # seconds between sweeps: these tests need none


def principals_of_the_table() -> dict[str, dict[str, list[str]]]:
    """root may do everything; only-<p> may do p alone, all-but-<p> everything else; all on every queue."""
    table = {"root": {"*": list(PERMISSION_NAMES)}}
    for permission in PERMISSION_NAMES:
        table[f"only-{permission}"] = {"*": [permission]}
        table[f"all-but-{permission}"] = {"*": [p for p in PERMISSION_NAMES if p != permission]}
    table["orders"] = {"orders-*": ["send", "monitor"], "orders-dlq": ["admin"]}
    table["mover"] = {"t-dlq": ["admin", "monitor"]}
    table["src-admin"] = {"t-src": ["admin"]}
    table["eu-jobs"] = {"eu-west-1:jobs": ["send"]}
    return table


def key_of(name: str) -> tuple[str, str]:
    """The SQS access key id and secret the test's auth file gives principal `name`."""
    return "AKID" + re.sub("[^A-Za-z0-9]", "", name).upper(), f"secret/{name}+1"


def auth_file(path: Path) -> Path:
    """The auth file of the table's principals, each with its SQS key (`key_of`)."""
    table = principals_of_the_table()
    write_auth_file(path, table, {name: key_of(name) for name in table})
    return path


@pytest.fixture
def app_settings(tmp_path: Path) -> Settings:
    return settings(auth_file=auth_file(tmp_path / "auth.toml"), tick_interval=TICK)


async def as_(client: Client, name: str, action: str, params: Json | None = None, **kw: Any) -> tuple[int, Json, Any]:
    """`action` signed by principal `name`'s SQS key (or another secret, given as `secret`)."""
    key, secret = key_of(name)
    return await call(client, action, params, **{"key": key, "secret": secret, **kw})


async def ok(client: Client, action: str, params: Json | None = None, name: str = "root", **kw: Any) -> Json:
    status, reply, _ = await as_(client, name, action, params, **kw)
    assert status == 200, reply
    return reply


def url(name: str) -> str:
    return f"http://localhost/{ACCOUNT}/{name}"


def arn(name: str) -> str:
    return f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"


@dataclass(frozen=True)
class World:
    """What root made before a table row runs: t-src dead-letters to t-dlq, t-dst is empty, one message of t-src
    is in flight (`receipt`), one dead letter was moved back (`task`)."""

    receipt: str
    task: str


async def make_world(client: Client) -> World:
    for name in ("t-dlq", "t-dst", "t-src"):
        await ok(client, "CreateQueue", {"QueueName": name})
    policy = orjson.dumps({"deadLetterTargetArn": arn("t-dlq"), "maxReceiveCount": 1}).decode()
    await ok(client, "SetQueueAttributes", {"QueueUrl": url("t-src"), "Attributes": {"RedrivePolicy": policy}})
    await ok(client, "SendMessage", {"QueueUrl": url("t-src"), "MessageBody": "one"})
    await ok(client, "ReceiveMessage", {"QueueUrl": url("t-src"), "VisibilityTimeout": 0})
    await trio.sleep(1)  # its lease ends: with maxReceiveCount 1 it is a dead letter now
    task = (await ok(client, "StartMessageMoveTask", {"SourceArn": arn("t-dlq")}))["TaskHandle"]
    await ok(client, "SendMessage", {"QueueUrl": url("t-src"), "MessageBody": "two"})
    received = await ok(client, "ReceiveMessage", {"QueueUrl": url("t-src"), "MaxNumberOfMessages": 10})
    return World(receipt=received["Messages"][0]["ReceiptHandle"], task=task)


async def snapshot(client: Client) -> Json:
    """Everything an action could change: the queues, their attributes and tags, the move tasks."""
    queues = (await ok(client, "ListQueues", {"QueueNamePrefix": "t-"})).get("QueueUrls", [])
    state: Json = {"queues": queues}
    for queue_url in queues:
        state[queue_url] = (
            await ok(client, "GetQueueAttributes", {"QueueUrl": queue_url, "AttributeNames": ["All"]}),
            await ok(client, "ListQueueTags", {"QueueUrl": queue_url}),
        )
    state["tasks"] = await ok(client, "ListMessageMoveTasks", {"SourceArn": arn("t-dlq")})
    return state


R = Callable[[World], Json]
TABLE: dict[str, tuple[R, int]] = {  # action: (its parameters, the status of a permitted call)
    "CreateQueue": (lambda w: {"QueueName": "t-new"}, 200),
    "GetQueueUrl": (lambda w: {"QueueName": "t-src"}, 200),
    "ListQueues": (lambda w: {}, 200),
    "DeleteQueue": (lambda w: {"QueueUrl": url("t-dst")}, 200),
    "GetQueueAttributes": (lambda w: {"QueueUrl": url("t-src"), "AttributeNames": ["All"]}, 200),
    "SetQueueAttributes": (lambda w: {"QueueUrl": url("t-src"), "Attributes": {"DelaySeconds": "1"}}, 200),
    "PurgeQueue": (lambda w: {"QueueUrl": url("t-src")}, 200),
    "SendMessage": (lambda w: {"QueueUrl": url("t-src"), "MessageBody": "x"}, 200),
    "SendMessageBatch": (lambda w: {"QueueUrl": url("t-src"), "Entries": [{"Id": "a", "MessageBody": "x"}]}, 200),
    "ReceiveMessage": (lambda w: {"QueueUrl": url("t-src")}, 200),
    "DeleteMessage": (lambda w: {"QueueUrl": url("t-src"), "ReceiptHandle": w.receipt}, 200),
    "DeleteMessageBatch": (
        lambda w: {"QueueUrl": url("t-src"), "Entries": [{"Id": "a", "ReceiptHandle": w.receipt}]},
        200,
    ),
    "ChangeMessageVisibility": (
        lambda w: {"QueueUrl": url("t-src"), "ReceiptHandle": w.receipt, "VisibilityTimeout": 5},
        200,
    ),
    "ChangeMessageVisibilityBatch": (
        lambda w: {
            "QueueUrl": url("t-src"),
            "Entries": [{"Id": "a", "ReceiptHandle": w.receipt, "VisibilityTimeout": 5}],
        },
        200,
    ),
    "ListDeadLetterSourceQueues": (lambda w: {"QueueUrl": url("t-dlq")}, 200),
    "TagQueue": (lambda w: {"QueueUrl": url("t-src"), "Tags": {"k": "v"}}, 200),
    "UntagQueue": (lambda w: {"QueueUrl": url("t-src"), "TagKeys": ["k"]}, 200),
    "ListQueueTags": (lambda w: {"QueueUrl": url("t-src")}, 200),
    "StartMessageMoveTask": (lambda w: {"SourceArn": arn("t-dlq")}, 200),
    "CancelMessageMoveTask": (lambda w: {"TaskHandle": w.task}, 400),  # permitted: the task has completed
    "ListMessageMoveTasks": (lambda w: {"SourceArn": arn("t-dlq")}, 200),
}


def test_the_table_has_every_action_and_its_permission() -> None:
    assert set(TABLE) == set(PERMISSIONS)
    assert {str(permission) for permission in PERMISSIONS.values()} == set(PERMISSION_NAMES)


@pytest.mark.parametrize("action", sorted(TABLE))
async def test_each_action_needs_its_permission(
    client: Client, autojump_clock: trio.testing.MockClock, action: str
) -> None:
    world = await make_world(client)
    params, permitted = TABLE[action]
    permission = PERMISSIONS[action]
    before = await snapshot(client)
    status, reply, response = await as_(client, f"all-but-{permission}", action, params(world))
    assert_error(status, reply, response, "AccessDenied", 403)
    iam = f"sqs:{action.removesuffix('Batch').lower()}"
    assert reply["message"].startswith(
        f"User: arn:aws:iam::{ACCOUNT}:user/all-but-{permission} is not authorized to perform: {iam} on resource:"
    )
    assert f"because no identity-based policy allows the {iam} action" in reply["message"]
    assert f"needs the {permission} permission" in reply["message"]
    assert await snapshot(client) == before
    status, reply, response = await as_(client, f"only-{permission}", action, params(world))
    assert status == permitted, reply
    if status != 200:
        assert query_error(response) != "AccessDenied"


async def test_queue_name_patterns_decide_and_listings_show_only_what_may_be_monitored(
    client: Client, autojump_clock: trio.testing.MockClock
) -> None:
    for name in ("orders-1", "orders-2", "orders-dlq", "payments"):
        await ok(client, "CreateQueue", {"QueueName": name})
    policy = orjson.dumps({"deadLetterTargetArn": arn("orders-dlq"), "maxReceiveCount": 3}).decode()
    for name in ("orders-1", "payments"):
        await ok(client, "SetQueueAttributes", {"QueueUrl": url(name), "Attributes": {"RedrivePolicy": policy}})
    await ok(client, "SendMessage", {"QueueUrl": url("orders-1"), "MessageBody": "x"}, name="orders")
    status, reply, response = await as_(
        client, "orders", "SendMessage", {"QueueUrl": url("payments"), "MessageBody": "x"}
    )
    assert_error(status, reply, response, "AccessDenied", 403)
    listed = await ok(client, "ListQueues", name="orders")
    assert listed == {"QueueUrls": [url("orders-1"), url("orders-2"), url("orders-dlq")]}
    sources = await ok(client, "ListDeadLetterSourceQueues", {"QueueUrl": url("orders-dlq")}, name="orders")
    assert sources == {"queueUrls": [url("orders-1")]}  # payments dead-letters there too, unseen
    status, reply, response = await as_(client, "only-send", "ListQueues")  # may monitor no queue at all
    assert_error(status, reply, response, "AccessDenied", 403)


async def test_a_denied_principal_cannot_tell_whether_a_queue_exists(
    client: Client, autojump_clock: trio.testing.MockClock
) -> None:
    await ok(client, "CreateQueue", {"QueueName": "secret"})
    for queue in ("secret", "no-such-queue"):
        assert_error(*await as_(client, "orders", "GetQueueUrl", {"QueueName": queue}), "AccessDenied", 403)
        params = {"QueueUrl": url(queue), "AttributeNames": ["All"]}
        assert_error(*await as_(client, "orders", "GetQueueAttributes", params), "AccessDenied", 403)


async def test_a_move_task_needs_admin_on_its_destination_too(
    client: Client, autojump_clock: trio.testing.MockClock
) -> None:
    for name in ("t-dlq", "t-dst"):
        await ok(client, "CreateQueue", {"QueueName": name})
    await ok(client, "SetQueueAttributes", {"QueueUrl": url("t-dst"), "Attributes": {"RedrivePolicy": ""}})
    policy = orjson.dumps({"deadLetterTargetArn": arn("t-dlq"), "maxReceiveCount": 1}).decode()
    await ok(client, "SetQueueAttributes", {"QueueUrl": url("t-dst"), "Attributes": {"RedrivePolicy": policy}})
    params = {"SourceArn": arn("t-dlq"), "DestinationArn": arn("t-dst")}
    status, reply, response = await as_(client, "mover", "StartMessageMoveTask", params)
    assert_error(status, reply, response, "AccessDenied", 403)
    assert arn("t-dst") in reply["message"]
    assert (await as_(client, "mover", "StartMessageMoveTask", {"SourceArn": arn("t-dlq")}))[0] == 200


async def test_a_redrive_policy_needs_admin_on_its_dead_letter_queue_too(
    client: Client, autojump_clock: trio.testing.MockClock
) -> None:
    for name in ("t-src", "t-dlq"):
        await ok(client, "CreateQueue", {"QueueName": name})
    policy = orjson.dumps({"deadLetterTargetArn": arn("t-dlq"), "maxReceiveCount": 1}).decode()
    params = {"QueueUrl": url("t-src"), "Attributes": {"RedrivePolicy": policy}}
    status, reply, response = await as_(client, "src-admin", "SetQueueAttributes", params)
    assert_error(status, reply, response, "AccessDenied", 403)
    assert arn("t-dlq") in reply["message"]
    creating = {"QueueName": "t-new", "Attributes": {"RedrivePolicy": policy}}
    assert_error(*await as_(client, "src-admin", "CreateQueue", creating), "AccessDenied", 403)
    await ok(client, "SetQueueAttributes", params)  # root: admin on both


async def test_the_queue_of_another_region_is_named_region_colon_name(
    client: Client, autojump_clock: trio.testing.MockClock
) -> None:
    await ok(client, "CreateQueue", {"QueueName": "jobs"}, region="eu-west-1")
    await ok(client, "CreateQueue", {"QueueName": "jobs"})
    params = {"QueueUrl": url("jobs"), "MessageBody": "x"}
    assert (await as_(client, "eu-jobs", "SendMessage", params, region="eu-west-1"))[0] == 200
    assert_error(*await as_(client, "eu-jobs", "SendMessage", params), "AccessDenied", 403)  # us-east-1's jobs


async def test_an_unsigned_request_is_missing_authentication(
    client: Client, autojump_clock: trio.testing.MockClock
) -> None:
    assert_error(*await call(client, "ListQueues", key=None), "MissingAuthenticationToken", 403)


async def test_unsupported_actions_need_no_permission(client: Client, autojump_clock: trio.testing.MockClock) -> None:
    params = {"QueueUrl": url("t-src"), "Label": "x", "AWSAccountIds": [ACCOUNT], "Actions": ["SendMessage"]}
    assert_error(*await as_(client, "only-monitor", "AddPermission", params), "UnsupportedOperation", 400)


# ---- rates ---------------------------------------------------------------------------------------------------


class TestRates:
    """RATE_LIMIT 1 request a second, RATE_BURST 2: per principal with an auth file, per client address without."""

    @pytest.fixture
    def app_settings(self, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
        auth = auth_file(tmp_path / "auth.toml")
        return settings(auth_file=auth if request.param else None, rate_limit=1.0, rate_burst=2, tick_interval=TICK)

    @pytest.mark.parametrize("app_settings", [True], indirect=True)
    async def test_each_principal_has_its_own_rate(
        self, client: Client, autojump_clock: trio.testing.MockClock
    ) -> None:
        for _ in range(2):
            await ok(client, "ListQueues", name="only-monitor")
        status, reply, response = await as_(client, "only-monitor", "ListQueues")
        assert_error(status, reply, response, "RequestThrottled", 403)
        assert response.headers["Retry-After"] == "1"
        assert "only-monitor" in reply["message"]
        await ok(client, "ListQueues", name="root")  # another principal, at the same address
        await trio.sleep(1)
        await ok(client, "ListQueues", name="only-monitor")

    @pytest.mark.parametrize("app_settings", [True], indirect=True)
    async def test_failed_signatures_count_against_the_client_address(
        self, client: Client, autojump_clock: trio.testing.MockClock
    ) -> None:
        for _ in range(2):
            status, reply, response = await as_(client, "root", "ListQueues", secret="guessed")
            assert_error(status, reply, response, "SignatureDoesNotMatch", 403)
        status, reply, response = await as_(client, "root", "ListQueues", secret="guessed")
        assert_error(status, reply, response, "RequestThrottled", 403)
        assert response.headers["Retry-After"] == "1"
        await ok(client, "ListQueues", name="root")  # root's own rate is untouched

    @pytest.mark.parametrize("app_settings", [False], indirect=True)
    async def test_without_keys_each_client_address_has_its_rate(
        self, client: Client, autojump_clock: trio.testing.MockClock
    ) -> None:
        for _ in range(2):
            assert (await call(client, "ListQueues", key=None))[0] == 200
        status, reply, response = await call(client, "ListQueues", key=None)
        assert_error(status, reply, response, "RequestThrottled", 403)
        assert response.headers["Retry-After"] == "1"
        await trio.sleep(1)
        assert (await call(client, "ListQueues", key=None))[0] == 200


# ---- limits and overload, as SQS errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code", "status", "retry_after"),
    [
        (errors.RateLimited("slow down", 2.5), "RequestThrottled", 403, "3"),
        (errors.QueueFull("the queue is full"), "OverLimit", 403, "1"),
        (errors.TooManyQueues("too many queues"), "OverLimit", 403, None),
        (errors.Overloaded("the broker is behind"), "ServiceUnavailable", 503, "1"),
        (errors.TooManyLongPolls("too many long polls"), "ServiceUnavailable", 503, "1"),
        (errors.ShuttingDown("shutting down"), "ServiceUnavailable", 503, None),
        (errors.StorageFull("disk full"), "ServiceUnavailable", 503, None),
        (errors.Forbidden("no"), "AccessDenied", 403, None),
        (errors.QueueNotFound("no queue"), "QueueDoesNotExist", 400, None),
        (errors.InvalidParameter("bad"), "InvalidParameterValue", 400, None),
    ],
)
def test_wonderq_errors_are_the_sqs_errors_that_mean_the_same(
    error: errors.WonderQError, code: str, status: int, retry_after: str | None
) -> None:
    response = sqs._error_response(sqs._as_sqs(error), "request-id")
    assert response.status_code == status
    assert response.headers["x-amzn-query-error"] == wire.ERRORS[code].query_error_header
    assert response.headers.get("Retry-After") == retry_after
