"""The Amazon SQS front end driven by the AWS CLI (v1, `python -m awscli`) against a real server subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers import ServerProcess, server_process

ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with server_process() as process:
        yield process


@pytest.fixture
def name() -> str:
    return f"cli-{uuid.uuid4().hex[:16]}"


def aws(
    server: ServerProcess, *args: str, region: str = "us-east-1", key: str = "x", secret: str = "x"
) -> subprocess.CompletedProcess[str]:
    """`aws --endpoint-url URL sqs ARGS` with these credentials (throwaway ones by default) and no user
    configuration."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=key,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_DEFAULT_REGION=region,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_MAX_ATTEMPTS="1",
    )
    command = [sys.executable, "-m", "awscli", "--endpoint-url", server.url, "--output", "json", "sqs", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    """The parsed JSON output of a successful command (None when it printed nothing)."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def test_create_send_receive_delete(server: ServerProcess, name: str) -> None:
    queue_url = ok(aws(server, "create-queue", "--queue-name", name))["QueueUrl"]
    assert queue_url == f"{server.url}/{ACCOUNT}/{name}"

    sent = ok(
        aws(
            server,
            "send-message",
            "--queue-url",
            queue_url,
            "--message-body",
            "hello from the cli",
            "--message-attributes",
            json.dumps({"colour": {"DataType": "String", "StringValue": "blue"}}),
        )
    )
    assert sent["MD5OfMessageBody"] == md5_hex("hello from the cli")
    assert sent["MessageId"]
    assert sent["MD5OfMessageAttributes"]

    received = ok(
        aws(
            server,
            "receive-message",
            "--queue-url",
            queue_url,
            "--attribute-names",
            "All",
            "--message-attribute-names",
            "All",
            "--wait-time-seconds",
            "2",
        )
    )
    [message] = received["Messages"]
    assert message["MessageId"] == sent["MessageId"]
    assert message["Body"] == "hello from the cli"
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert message["MessageAttributes"]["colour"]["StringValue"] == "blue"
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert message["Attributes"]["SentTimestamp"].isdigit()

    deleted = aws(server, "delete-message", "--queue-url", queue_url, "--receipt-handle", message["ReceiptHandle"])
    assert ok(deleted) is None

    after = ok(aws(server, "receive-message", "--queue-url", queue_url))
    assert (after or {}).get("Messages", []) == []
    attributes = ok(aws(server, "get-queue-attributes", "--queue-url", queue_url, "--attribute-names", "All"))
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_a_missing_queue_fails_with_the_legacy_error_code(server: ServerProcess, name: str) -> None:
    result = aws(server, "get-queue-url", "--queue-name", name)
    assert result.returncode != 0
    assert "AWS.SimpleQueueService.NonExistentQueue" in result.stderr
    assert "The specified queue does not exist." in result.stderr
    assert "Traceback" not in result.stderr
