"""SQS request signatures (SigV4) as AWS checks them, in process on trio's virtual clock: the body is hashed and
must match what was signed, the signed headers include `host` and `x-amz-date`, the credential scope is for
SQS on X-Amz-Date's day, and the signature is within 15 minutes of the broker's clock, either way.

Requests are signed by botocore itself (at the broker's virtual time); the helpers here are shared by the other
in-process SQS tests (tests/test_sqs_access.py, tests/test_sqs_fuzz.py).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from http.client import HTTPMessage
from typing import Any
from unittest import mock

import orjson
import pytest
import trio
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from quart import Response
from quart.typing import TestClientProtocol as Client

from tests.helpers import EPOCH, settings
from wonderq import sqs_wire as wire
from wonderq.config import Settings

KEY, SECRET = "AKIDSIGNING1", "signing/secret+1"
ACCOUNT = "123456789012"
JSON_TYPE = "application/x-amz-json-1.0"
Json = dict[str, Any]


# ---- helpers shared by the in-process SQS tests --------------------------------------------------------------


def sign(
    body: bytes,
    action: str,
    *,
    at: float,
    key: str = KEY,
    secret: str = SECRET,
    region: str = "us-east-1",
    service: str = "sqs",
    headers: Mapping[str, str] | None = None,
    signer: type[SigV4Auth] = SigV4Auth,
) -> dict[str, str]:
    """The headers botocore sends for this SQS request, signed at `at` (epoch seconds) by `key`/`secret`."""
    given = {**unsigned(action), **(headers or {})}
    return sign_headers(body, given, at=at, key=key, secret=secret, region=region, service=service, signer=signer)


def sign_headers(
    body: bytes,
    headers: Mapping[str, str],
    *,
    at: float,
    key: str = KEY,
    secret: str = SECRET,
    region: str = "us-east-1",
    service: str = "sqs",
    signer: type[SigV4Auth] = SigV4Auth,
) -> dict[str, str]:
    """`headers` with botocore's signature of a POST / with `body` (and these headers) added."""
    request = AWSRequest(method="POST", url="http://localhost/", data=body, headers=dict(headers))  # the test Host
    signed_at = datetime.fromtimestamp(at, UTC).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=signed_at):
        signer(Credentials(key, secret), service, region).add_auth(request)
    return {name: value.decode() if isinstance(value, bytes) else value for name, value in request.headers.items()}


def unsigned(action: str) -> dict[str, str]:
    return {"X-Amz-Target": f"AmazonSQS.{action}", "Content-Type": JSON_TYPE}


def now() -> float:
    """The broker's clock in a test using the `client` fixture: trio time 0 is EPOCH."""
    return EPOCH + trio.current_time()


async def post(client: Client, body: bytes, headers: Mapping[str, str]) -> tuple[int, Json, Response]:
    response = await client.post("/", data=body, headers=dict(headers))
    return response.status_code, orjson.loads(await response.get_data()), response


async def call(
    client: Client, action: str, params: Json | None = None, *, key: str | None = KEY, secret: str = SECRET, **kw: Any
) -> tuple[int, Json, Response]:
    """One SQS action, signed by `key` (unsigned when None), at the broker's present time."""
    body = orjson.dumps(params or {})
    headers = unsigned(action) if key is None else sign(body, action, at=now(), key=key, secret=secret, **kw)
    return await post(client, body, headers)


def query_error(response: Response) -> str:
    """The legacy code of an SQS error reply (botocore's Error.Code), checking the reply is well formed."""
    assert response.headers["Content-Type"] == JSON_TYPE
    header = response.headers["x-amzn-query-error"]
    code, fault = header.split(";")
    assert fault in ("Sender", "Receiver")
    return code


def assert_error(status: int, reply: Json, response: Response, code: str, http_status: int) -> None:
    spec = wire.ERRORS[code]
    assert (status, query_error(response), reply["__type"]) == (http_status, spec.query_code, spec.type_name)
    assert spec.http_status == http_status
    assert isinstance(reply["message"], str)
    assert reply["message"]


def amz_date(epoch_seconds: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch_seconds))


class WithoutHost(SigV4Auth):
    """botocore's signer, signing every header but `host`."""

    def headers_to_sign(self, request: AWSRequest) -> HTTPMessage:
        headers = super().headers_to_sign(request)
        del headers["host"]
        return headers


class WithoutDate(SigV4Auth):
    """botocore's signer, signing every header but `x-amz-date` (which it still sends)."""

    def headers_to_sign(self, request: AWSRequest) -> HTTPMessage:
        headers = super().headers_to_sign(request)
        del headers["x-amz-date"]
        return headers


# ---- the tests -----------------------------------------------------------------------------------------------


TICK = 10.0  # seconds between the ticker's sweeps: these tests move the clock by hours and need no sweeps


@pytest.fixture
def app_settings() -> Settings:
    return settings(sqs_access_keys=f"{KEY}:{SECRET},AKIDSIGNING2:other", tick_interval=TICK)


async def make_queue(client: Client, name: str) -> str:
    status, reply, _ = await call(client, "CreateQueue", {"QueueName": name})
    assert status == 200
    url: str = reply["QueueUrl"]
    return url


async def messages_in(client: Client, url: str) -> str:
    params = {"QueueUrl": url, "AttributeNames": ["ApproximateNumberOfMessages"]}
    status, reply, _ = await call(client, "GetQueueAttributes", params)
    assert status == 200
    count: str = reply["Attributes"]["ApproximateNumberOfMessages"]
    return count


async def test_a_request_botocore_signs_passes(client: Client, autojump_clock: trio.testing.MockClock) -> None:
    url = await make_queue(client, "signed")
    status, reply, _ = await call(client, "SendMessage", {"QueueUrl": url, "MessageBody": "hello ünïcode  spaces"})
    assert status == 200
    assert reply["MD5OfMessageBody"] == hashlib.md5("hello ünïcode  spaces".encode()).hexdigest()
    assert await messages_in(client, url) == "1"
    status, reply, _ = await call(client, "ListQueues", {"QueueNamePrefix": "sig"}, key="AKIDSIGNING2", secret="other")
    assert (status, reply) == (200, {"QueueUrls": [url]})


async def test_a_captured_signature_does_not_carry_another_body(
    client: Client, autojump_clock: trio.testing.MockClock
) -> None:
    """The replay of issue 12: a signed SendMessage captured and sent again with another body, within the 15
    minutes, with or without an X-Amz-Content-Sha256 header vouching for the signed body."""
    url = await make_queue(client, "replayed")
    original = orjson.dumps({"QueueUrl": url, "MessageBody": "original"})
    headers = sign(original, "SendMessage", at=now())
    tampered = orjson.dumps({"QueueUrl": url, "MessageBody": "TAMPERED by attacker"})
    status, reply, response = await post(client, tampered, headers)
    assert_error(status, reply, response, "SignatureDoesNotMatch", 403)
    assert reply["message"] == wire.SIGNATURE_MISMATCH_MESSAGE
    vouching = {**headers, "X-Amz-Content-Sha256": hashlib.sha256(original).hexdigest()}
    status, reply, response = await post(client, tampered, vouching)
    assert_error(status, reply, response, "SignatureDoesNotMatch", 403)
    assert reply["message"] == wire.CONTENT_SHA256_MISMATCH_MESSAGE
    assert await messages_in(client, url) == "0"
    status, _, _ = await post(client, original, headers)  # the captured request itself still passes once
    assert status == 200
    assert await messages_in(client, url) == "1"


async def test_a_signed_content_sha256_header_that_matches_the_body_passes(
    client: Client, autojump_clock: trio.testing.MockClock
) -> None:
    body = b"{}"
    headers = sign(body, "ListQueues", at=now(), headers={"X-Amz-Content-Sha256": hashlib.sha256(body).hexdigest()})
    assert "x-amz-content-sha256" in headers["Authorization"]
    assert (await post(client, body, headers))[0] == 200


async def test_unsigned_payload_is_refused(client: Client, autojump_clock: trio.testing.MockClock) -> None:
    headers = sign(b"{}", "ListQueues", at=now(), headers={"X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"})
    status, reply, response = await post(client, b"{}", headers)
    assert_error(status, reply, response, "SignatureDoesNotMatch", 403)
    assert reply["message"] == wire.UNSIGNED_PAYLOAD_MESSAGE


@pytest.mark.parametrize(
    "app_settings", [settings(sqs_access_keys=f"{KEY}:{SECRET}", sqs_allow_unsigned_payload=True, tick_interval=TICK)]
)
async def test_unsigned_payload_passes_when_allowed(client: Client, autojump_clock: trio.testing.MockClock) -> None:
    headers = sign(b"{}", "ListQueues", at=now(), headers={"X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"})
    assert (await post(client, b'{"QueueNamePrefix": "any body at all"}', headers))[0] == 200
    headers = sign(b"{}", "ListQueues", at=now())  # a hashed body is still checked
    status, reply, response = await post(client, b'{"QueueNamePrefix": "x"}', headers)
    assert_error(status, reply, response, "SignatureDoesNotMatch", 403)


@pytest.mark.parametrize(
    ("signer", "message"),
    [(WithoutHost, wire.HOST_NOT_SIGNED_MESSAGE), (WithoutDate, wire.DATE_NOT_SIGNED_MESSAGE)],
)
async def test_host_and_date_must_be_signed(
    client: Client, autojump_clock: trio.testing.MockClock, signer: type[SigV4Auth], message: str
) -> None:
    headers = sign(b"{}", "ListQueues", at=now(), signer=signer)
    status, reply, response = await post(client, b"{}", headers)
    assert_error(status, reply, response, "SignatureDoesNotMatch", 403)
    assert reply["message"] == message


async def test_the_credential_scope_must_be_sqs_on_the_day_of_x_amz_date(
    client: Client, autojump_clock: trio.testing.MockClock
) -> None:
    headers = sign(b"{}", "ListQueues", at=now())
    today = amz_date(now())[:8]
    yesterday = amz_date(now() - 86_400)[:8]
    assert f"/{today}/us-east-1/sqs/aws4_request" in headers["Authorization"]
    stale = {**headers, "Authorization": headers["Authorization"].replace(f"/{today}/", f"/{yesterday}/")}
    status, reply, response = await post(client, b"{}", stale)
    assert_error(status, reply, response, "SignatureDoesNotMatch", 403)
    assert reply["message"] == (
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
        f"'{yesterday}' != '{today}', from '{headers['X-Amz-Date']}'."
    )
    for_sns = sign(b"{}", "ListQueues", at=now(), service="sns")  # a valid signature, for another service
    status, reply, response = await post(client, b"{}", for_sns)
    assert_error(status, reply, response, "SignatureDoesNotMatch", 403)
    assert reply["message"] == "Credential should be scoped to correct service: 'sqs'."


async def test_a_region_that_is_no_region_is_refused(client: Client, autojump_clock: trio.testing.MockClock) -> None:
    status, reply, response = await call(client, "ListQueues", region="Not_A_Region")
    assert_error(status, reply, response, "SignatureDoesNotMatch", 403)
    assert reply["message"] == "Credential should be scoped to a valid region, not 'Not_A_Region'."


@pytest.mark.parametrize("offset", [-900, 0, 900])
async def test_a_signature_within_15_minutes_either_way_passes(
    client: Client, autojump_clock: trio.testing.MockClock, offset: int
) -> None:
    await trio.sleep(3600)  # the broker's clock has moved on: signatures follow it, not the real time
    headers = sign(b"{}", "ListQueues", at=now() + offset)
    assert (await post(client, b"{}", headers))[0] == 200


async def test_a_signature_older_than_15_minutes_is_expired(
    client: Client, autojump_clock: trio.testing.MockClock
) -> None:
    signed_at = now()
    headers = sign(b"{}", "ListQueues", at=signed_at)
    await trio.sleep(901)  # a replay 15 minutes and 1 second later
    status, reply, response = await post(client, b"{}", headers)
    assert_error(status, reply, response, "SignatureDoesNotMatch", 403)
    assert reply["message"] == (
        f"Signature expired: {amz_date(signed_at)} is now earlier than {amz_date(now() - 900)}"
        f" ({amz_date(now())} - 15 min.)"
    )


async def test_a_signature_more_than_15_minutes_ahead_is_not_yet_current(
    client: Client, autojump_clock: trio.testing.MockClock
) -> None:
    signed_at = now() + 901
    status, reply, response = await post(client, b"{}", sign(b"{}", "ListQueues", at=signed_at))
    assert_error(status, reply, response, "SignatureDoesNotMatch", 403)
    assert reply["message"] == (
        f"Signature not yet current: {amz_date(signed_at)} is still later than {amz_date(now() + 900)}"
        f" ({amz_date(now())} + 15 min.)"
    )


@pytest.mark.parametrize(
    ("date", "message"),
    [
        (None, "Authorization header requires existence of a 'X-Amz-Date' header."),
        ("2027-01-15T08:00:00Z", wire.amz_date_format_message("2027-01-15T08:00:00Z")),
        ("20270231T080000Z", wire.amz_date_format_message("20270231T080000Z")),  # no 31 February
        ("20270115T250000Z", wire.amz_date_format_message("20270115T250000Z")),
    ],
)
async def test_an_x_amz_date_that_is_missing_or_no_date_is_an_incomplete_signature(
    client: Client, autojump_clock: trio.testing.MockClock, date: str | None, message: str
) -> None:
    headers = sign(b"{}", "ListQueues", at=now())
    del headers["X-Amz-Date"]
    if date is not None:
        headers["X-Amz-Date"] = date
    status, reply, response = await post(client, b"{}", headers)
    assert_error(status, reply, response, "IncompleteSignature", 400)
    assert reply["message"] == message


@pytest.mark.parametrize(
    ("authorization", "code", "status"),
    [
        (None, "MissingAuthenticationToken", 403),
        ("Bearer wq_01234567_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ", "IncompleteSignature", 400),
        ("AWS4-HMAC-SHA256 Credential=AKIDSIGNING1/20270115/us-east-1/sqs", "IncompleteSignature", 400),
    ],
)
async def test_an_unsigned_or_malformed_authorization_is_refused(
    client: Client, autojump_clock: trio.testing.MockClock, authorization: str | None, code: str, status: int
) -> None:
    headers = unsigned("ListQueues")
    if authorization is not None:
        headers["Authorization"] = authorization
    assert_error(*await post(client, b"{}", headers), code, status)


async def test_an_unknown_key_or_a_wrong_secret_is_refused(
    client: Client, autojump_clock: trio.testing.MockClock
) -> None:
    status, reply, response = await call(client, "ListQueues", key="AKIDUNKNOWN")
    assert_error(status, reply, response, "InvalidClientTokenId", 403)
    assert reply["message"] == wire.INVALID_CLIENT_TOKEN_MESSAGE
    status, reply, response = await call(client, "ListQueues", secret="not-the-secret")
    assert_error(status, reply, response, "SignatureDoesNotMatch", 403)
    status, reply, response = await call(client, "ListQueues", key="AKIDSIGNING2", secret=SECRET)  # another's
    assert_error(status, reply, response, "SignatureDoesNotMatch", 403)


async def test_times_in_replies_come_from_the_brokers_clock(
    client: Client, autojump_clock: trio.testing.MockClock
) -> None:
    await trio.sleep(42)
    url = await make_queue(client, "clocked")
    status, reply, _ = await call(client, "GetQueueAttributes", {"QueueUrl": url, "AttributeNames": ["All"]})
    assert status == 200
    assert reply["Attributes"]["CreatedTimestamp"] == str(int(EPOCH + 42))
    assert reply["Attributes"]["LastModifiedTimestamp"] == str(int(EPOCH + 42))
    await make_queue(client, "clocked-dead")
    arn = f"arn:aws:sqs:us-east-1:{ACCOUNT}:clocked-dead"
    policy = orjson.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 1}).decode()
    await trio.sleep(8)
    params = {"QueueUrl": url, "Attributes": {"RedrivePolicy": policy}}
    assert (await call(client, "SetQueueAttributes", params))[0] == 200
    status, reply, _ = await call(client, "GetQueueAttributes", {"QueueUrl": url, "AttributeNames": ["All"]})
    assert reply["Attributes"]["LastModifiedTimestamp"] == str(int(EPOCH + 50))
    assert (await call(client, "StartMessageMoveTask", {"SourceArn": arn}))[0] == 200
    status, reply, _ = await call(client, "ListMessageMoveTasks", {"SourceArn": arn})
    assert status == 200
    assert reply["Results"][0]["StartedTimestamp"] == int((EPOCH + 50) * 1000)
