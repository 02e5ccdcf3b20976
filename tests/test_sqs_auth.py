"""SQS request signatures, end to end: with SQS_ACCESS_KEYS set, only requests signed (SigV4) with a configured key
pass, over the body they carry; boto3 and the AWS CLI sign as the server checks. tests/test_sqs_signing.py has
every refusal in process."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import httpx
import pytest
import trio
from botocore.exceptions import ClientError
from mypy_boto3_sqs import SQSClient

from tests.servers import ServerProcess, server_process, serving
from tests.test_sqs_cli import aws, ok

KEYS = "AKIDWONDERQ1:secret/one+1,AKIDWONDERQ2:second-secret"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with server_process(env={"SQS_ACCESS_KEYS": KEYS}) as process:
        yield process


def client(server: ServerProcess, key: str, secret: str, region: str = "us-east-1") -> SQSClient:
    return boto3.client(
        "sqs",
        endpoint_url=server.url,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def error_of(call: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call()
    response: Any = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


@pytest.mark.parametrize(("key", "secret"), [("AKIDWONDERQ1", "secret/one+1"), ("AKIDWONDERQ2", "second-secret")])
def test_a_configured_key_signs_every_action(server: ServerProcess, key: str, secret: str) -> None:
    sqs = client(server, key, secret, region="eu-central-1")
    url = sqs.create_queue(QueueName=f"signed-{key}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="signed body with spaces  and ünïcode")
    (message,) = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert url in sqs.list_queues(QueueNamePrefix="signed-")["QueueUrls"]


def test_a_wrong_secret_is_signature_does_not_match(server: ServerProcess) -> None:
    sqs = client(server, "AKIDWONDERQ1", "not-the-secret")
    code, status, message = error_of(lambda: sqs.list_queues())
    assert (code, status) == ("SignatureDoesNotMatch", 403)
    assert message.startswith("The request signature we calculated does not match")


def test_an_unknown_key_is_invalid_client_token_id(server: ServerProcess) -> None:
    sqs = client(server, "AKIDUNKNOWN", "secret/one+1")
    assert error_of(lambda: sqs.list_queues())[:2] == ("InvalidClientTokenId", 403)


def test_an_unsigned_request_is_refused(server: ServerProcess) -> None:
    response = httpx.post(
        server.url,
        content=b"{}",
        headers={"X-Amz-Target": "AmazonSQS.ListQueues", "Content-Type": "application/x-amz-json-1.0"},
    )
    assert response.status_code == 403
    assert response.headers["x-amzn-query-error"] == "MissingAuthenticationToken;Sender"


def test_a_tampered_body_is_refused(server: ServerProcess) -> None:
    """A signature covers the body: the same headers with another body do not pass."""
    sqs = client(server, "AKIDWONDERQ1", "secret/one+1")
    url = sqs.create_queue(QueueName="tampered")["QueueUrl"]
    sent: dict[str, Any] = {}

    def capture(request: Any, **_: Any) -> None:
        sent["headers"] = dict(request.headers.items())
        sent["body"] = request.body

    sqs.meta.events.register("before-send.sqs.SendMessage", capture)
    sqs.send_message(QueueUrl=url, MessageBody="original")
    headers = {name: value.decode() if isinstance(value, bytes) else value for name, value in sent["headers"].items()}
    headers.pop("Content-Length", None)
    body = f'{{"QueueUrl": "{url}", "MessageBody": "changed"}}'.encode()
    response = httpx.post(server.url, content=body, headers=headers)
    assert response.status_code == 403
    assert response.headers["x-amzn-query-error"] == "SignatureDoesNotMatch;Sender"
    # Issue 12's replay: an unsigned X-Amz-Content-Sha256 header vouching for the signed body.
    vouching = {**headers, "X-Amz-Content-Sha256": hashlib.sha256(sent["body"]).hexdigest()}
    response = httpx.post(
        server.url, content=b'{"QueueUrl": "%s", "MessageBody": "TAMPERED"}' % url.encode(), headers=vouching
    )
    assert response.status_code == 403
    assert response.headers["x-amzn-query-error"] == "SignatureDoesNotMatch;Sender"
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"] == {
        "ApproximateNumberOfMessages": "1"
    }


def test_the_aws_cli_signs_with_a_configured_key(server: ServerProcess) -> None:
    created = ok(aws(server, "create-queue", "--queue-name", "cli-signed", key="AKIDWONDERQ2", secret="second-secret"))
    sent = aws(
        server,
        "send-message",
        "--queue-url",
        created["QueueUrl"],
        "--message-body",
        "signed by the CLI",
        key="AKIDWONDERQ1",
        secret="secret/one+1",
    )
    assert ok(sent)["MD5OfMessageBody"] == hashlib.md5(b"signed by the CLI").hexdigest()


async def test_botocore_retries_a_request_over_its_rate() -> None:
    """RATE_LIMIT 2 a second with a burst of 1: a second request at once is RequestThrottled, which botocore's
    default (legacy) retry rules retry for SQS (RequestThrottled with 403; its standard mode retries the code
    whatever the status, tests/test_sqs_wire.py)."""
    async with serving(rate_limit=2.0, rate_burst=1) as url:
        sqs = boto3.client(
            "sqs",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=botocore.config.Config(retries={"max_attempts": 8, "mode": "legacy"}),
        )

        def twice() -> int:
            sqs.list_queues()
            attempts: int = sqs.list_queues()["ResponseMetadata"]["RetryAttempts"]
            return attempts

        assert await trio.to_thread.run_sync(twice) >= 1
