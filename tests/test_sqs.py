"""The Amazon SQS front end (AWS JSON 1.0), end to end: boto3 against a real server subprocess.

Written from SQS's documented behaviour (the API Reference in botocore's model, and recorded AWS responses
collected in the SQS groundwork notes), not from WonderQ's implementation. Standard queues only.

Errors are checked three ways, as SDK users see them: the botocore exception class (chosen from the
`__type` shape name), `Error.Code` (the legacy query code from the `x-amzn-query-error` header) and the
HTTP status.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import boto3
import botocore.config
import httpx
import pytest
from botocore.exceptions import ClientError
from mypy_boto3_sqs import SQSClient
from mypy_boto3_sqs.type_defs import MessageTypeDef

from tests.servers import ServerProcess, server_process

ACCOUNT = "123456789012"
REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
MIB = 1024 * 1024

# The settable attributes of a standard queue, with their documented ranges.
NUMERIC_ATTRIBUTES = {
    "DelaySeconds": (0, 900),
    "MaximumMessageSize": (1024, MIB),
    "MessageRetentionPeriod": (60, 1_209_600),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "VisibilityTimeout": (0, 43_200),
}


# ---- fixtures and helpers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with server_process() as process:
        yield process


def make_client(url: str, region: str) -> SQSClient:
    return boto3.client(
        "sqs",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def sqs(server: ServerProcess) -> SQSClient:
    return make_client(server.url, REGION)


@pytest.fixture(scope="module")
def sqs_eu(server: ServerProcess) -> SQSClient:
    return make_client(server.url, OTHER_REGION)


def unique(prefix: str = "q") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def name() -> str:
    return unique()


def new_queue(sqs: SQSClient, **attributes: str) -> str:
    """A new queue with a unique name; returns its URL."""
    given: Any = attributes
    return sqs.create_queue(QueueName=unique(), Attributes=given)["QueueUrl"]


@pytest.fixture
def url(sqs: SQSClient) -> str:
    return new_queue(sqs)


def name_of(queue_url: str) -> str:
    return queue_url.rsplit("/", 1)[1]


def arn_of(sqs: SQSClient, queue_url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def attribute(sqs: SQSClient, queue_url: str, attribute_name: Any) -> str:
    return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[attribute_name])["Attributes"][attribute_name]


def counts(sqs: SQSClient, queue_url: str) -> tuple[str, str, str]:
    """(ApproximateNumberOfMessages, ...NotVisible, ...Delayed) as SQS returns them: strings."""
    found = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return (
        found["ApproximateNumberOfMessages"],
        found["ApproximateNumberOfMessagesNotVisible"],
        found["ApproximateNumberOfMessagesDelayed"],
    )


def receive(sqs: SQSClient, queue_url: str, **options: Any) -> list[MessageTypeDef]:
    return sqs.receive_message(QueueUrl=queue_url, **options).get("Messages", [])


def receive_one(sqs: SQSClient, queue_url: str, **options: Any) -> MessageTypeDef:
    messages = receive(sqs, queue_url, **options)
    assert len(messages) == 1, messages
    return messages[0]


def md5_hex(data: str | bytes) -> str:
    return hashlib.md5(data.encode() if isinstance(data, str) else data).hexdigest()


def md5_of_attributes(attributes: Mapping[str, Any]) -> str:
    """SQS's documented digest of message attributes: names sorted; for each, the 4-byte big-endian length and
    bytes of the name and of the data type, then 1 + length + UTF-8 string value, or 2 + length + binary value."""

    def field(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    digest = hashlib.md5()
    for attribute_name in sorted(attributes):
        value = attributes[attribute_name]
        digest.update(field(attribute_name.encode()) + field(value["DataType"].encode()))
        if "BinaryValue" in value:
            digest.update(b"\x02" + field(value["BinaryValue"]))
        else:
            digest.update(b"\x01" + field(value["StringValue"].encode()))
    return digest.hexdigest()


def plain(attributes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Received message attributes without the (reserved, always empty) list members."""
    return {key: {k: v for k, v in value.items() if v not in ([], None)} for key, value in attributes.items()}


def assert_error(error: ClientError, code: str, status: int) -> None:
    assert error.response["Error"]["Code"] == code, error.response
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status, error.response


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def raw(server: ServerProcess, action: str, body: Any, headers: Mapping[str, str] | None = None) -> httpx.Response:
    """An unsigned AWS JSON 1.0 request, as a non-SDK client would send it."""
    return httpx.post(
        server.url + "/",
        content=body if isinstance(body, bytes) else json.dumps(body).encode(),
        headers={"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": f"AmazonSQS.{action}", **(headers or {})},
    )


# ---- 1. queues: CreateQueue, GetQueueUrl, URLs -----------------------------------------------------------


def test_create_queue_returns_a_url_of_this_server_account_and_name(
    sqs: SQSClient, server: ServerProcess, name: str
) -> None:
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    assert queue_url == f"{server.url}/{ACCOUNT}/{name}"
    assert re.fullmatch(rf"http://127\.0\.0\.1:\d+/{ACCOUNT}/{name}", queue_url)
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == queue_url


def test_create_queue_with_attributes(sqs: SQSClient, name: str) -> None:
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "7",
            "DelaySeconds": "3",
            "MaximumMessageSize": "2048",
            "MessageRetentionPeriod": "120",
            "ReceiveMessageWaitTimeSeconds": "2",
        },
    )["QueueUrl"]
    found = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert found["VisibilityTimeout"] == "7"
    assert found["DelaySeconds"] == "3"
    assert found["MaximumMessageSize"] == "2048"
    assert found["MessageRetentionPeriod"] == "120"
    assert found["ReceiveMessageWaitTimeSeconds"] == "2"


def test_create_queue_is_idempotent_with_the_same_attributes(sqs: SQSClient, name: str) -> None:
    first = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "9"})["QueueUrl"]
    sqs.send_message(QueueUrl=first, MessageBody="kept")
    second = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "9"})["QueueUrl"]
    assert second == first
    assert receive_one(sqs, first)["Body"] == "kept"  # the queue was not replaced


def test_create_queue_with_different_attributes_is_queue_name_exists(sqs: SQSClient, name: str) -> None:
    sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "9"})
    with pytest.raises(sqs.exceptions.QueueNameExists) as info:
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "10"})
    assert_error(info.value, "QueueAlreadyExists", 400)
    assert info.value.response["Error"]["Message"] == (
        "A queue already exists with the same name and a different value for attribute VisibilityTimeout"
    )
    assert attribute(sqs, sqs.get_queue_url(QueueName=name)["QueueUrl"], "VisibilityTimeout") == "9"


def test_create_queue_without_attributes_or_with_matching_ones_returns_the_existing_queue(
    sqs: SQSClient, name: str
) -> None:
    """AWS-validated (LocalStack's snapshot tests): attributes not given are not compared."""
    queue_url = sqs.create_queue(QueueName=name, Attributes={"DelaySeconds": "1", "VisibilityTimeout": "69"})[
        "QueueUrl"
    ]
    assert sqs.create_queue(QueueName=name)["QueueUrl"] == queue_url
    assert sqs.create_queue(QueueName=name, Attributes={"DelaySeconds": "1"})["QueueUrl"] == queue_url
    assert attribute(sqs, queue_url, "VisibilityTimeout") == "69"


def test_create_queue_accepts_the_longest_and_mixed_names(sqs: SQSClient) -> None:
    longest = (uuid.uuid4().hex * 3)[:80]
    mixed = f"Ab-_9{uuid.uuid4().hex[:8]}"
    for queue_name in (longest, mixed):
        assert sqs.create_queue(QueueName=queue_name)["QueueUrl"].endswith(f"/{ACCOUNT}/{queue_name}")


@pytest.mark.parametrize(
    "bad_name",
    ["", "has space", "dot.name", "slash/name", "colon:name", "ümlaut", "a" * 81, "standard.fifo"],
    ids=["empty", "space", "dot", "slash", "colon", "non-ascii", "81-chars", "fifo-suffix-without-fifo"],
)
def test_create_queue_with_an_invalid_name_is_invalid_parameter_value(sqs: SQSClient, bad_name: str) -> None:
    with pytest.raises(ClientError) as info:
        sqs.create_queue(QueueName=bad_name)
    assert_error(info.value, "InvalidParameterValue", 400)


def test_create_queue_with_an_out_of_range_attribute_creates_nothing(sqs: SQSClient, name: str) -> None:
    with pytest.raises(sqs.exceptions.InvalidAttributeValue) as info:
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "43201"})
    assert_error(info.value, "InvalidAttributeValue", 400)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=name)


def test_create_queue_with_an_unknown_attribute_is_invalid_attribute_name(sqs: SQSClient, name: str) -> None:
    with pytest.raises(sqs.exceptions.InvalidAttributeName) as info:
        sqs.create_queue(QueueName=name, Attributes={"Colour": "blue"})  # type: ignore[dict-item]
    assert_error(info.value, "InvalidAttributeName", 400)


def test_get_queue_url_of_a_missing_queue_is_queue_does_not_exist(sqs: SQSClient) -> None:
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as info:
        sqs.get_queue_url(QueueName=unique("missing"))
    assert_error(info.value, "AWS.SimpleQueueService.NonExistentQueue", 400)
    assert info.value.response["Error"]["Message"] == "The specified queue does not exist."


def test_queue_names_are_case_sensitive(sqs: SQSClient) -> None:
    upper = f"Case-{uuid.uuid4().hex[:8]}"
    sqs.create_queue(QueueName=upper)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=upper.lower())


def test_get_queue_url_with_the_owner_account(sqs: SQSClient, url: str) -> None:
    assert sqs.get_queue_url(QueueName=name_of(url), QueueOwnerAWSAccountId=ACCOUNT)["QueueUrl"] == url
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as info:
        sqs.get_queue_url(QueueName=name_of(url), QueueOwnerAWSAccountId="210987654321")
    assert_error(info.value, "AWS.SimpleQueueService.NonExistentQueue", 400)


def test_a_queue_url_is_resolved_by_its_path_whatever_the_host(sqs: SQSClient, url: str) -> None:
    elsewhere = f"http://sqs.example.internal:9999/{ACCOUNT}/{name_of(url)}"
    sqs.send_message(QueueUrl=elsewhere, MessageBody="via another host")
    assert receive_one(sqs, url)["Body"] == "via another host"
    secure = f"https://localhost/{ACCOUNT}/{name_of(url)}"
    assert attribute(sqs, secure, "QueueArn").endswith(f":{name_of(url)}")


def test_a_queue_url_of_another_account_finds_no_queue(sqs: SQSClient, url: str) -> None:
    other = url.replace(f"/{ACCOUNT}/", "/210987654321/")
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as info:
        sqs.send_message(QueueUrl=other, MessageBody="nowhere")
    assert_error(info.value, "AWS.SimpleQueueService.NonExistentQueue", 400)


# ---- ListQueues -------------------------------------------------------------------------------------------


def test_list_queues_by_prefix(sqs: SQSClient) -> None:
    prefix = unique("lq")
    urls = sorted(sqs.create_queue(QueueName=f"{prefix}-{suffix}")["QueueUrl"] for suffix in "abc")
    sqs.create_queue(QueueName=unique("other"))
    listed = sqs.list_queues(QueueNamePrefix=prefix)
    assert sorted(listed["QueueUrls"]) == urls
    assert "NextToken" not in listed
    assert sqs.list_queues(QueueNamePrefix=unique("none")).get("QueueUrls", []) == []
    assert set(urls) <= set(sqs.list_queues()["QueueUrls"])


def test_list_queues_pages_with_max_results_and_next_token(sqs: SQSClient) -> None:
    prefix = unique("page")
    urls = sorted(sqs.create_queue(QueueName=f"{prefix}-{suffix}")["QueueUrl"] for suffix in "abc")
    first = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2)
    assert len(first["QueueUrls"]) == 2
    assert first["NextToken"]
    second = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2, NextToken=first["NextToken"])
    assert len(second["QueueUrls"]) == 1
    assert "NextToken" not in second
    assert sorted(first["QueueUrls"] + second["QueueUrls"]) == urls


def test_list_queues_paginator(sqs: SQSClient) -> None:
    prefix = unique("pager")
    urls = sorted(sqs.create_queue(QueueName=f"{prefix}-{suffix}")["QueueUrl"] for suffix in "abcde")
    pages = list(sqs.get_paginator("list_queues").paginate(QueueNamePrefix=prefix, PaginationConfig={"PageSize": 2}))
    assert [len(page.get("QueueUrls", [])) for page in pages] == [2, 2, 1]
    assert sorted(url for page in pages for url in page.get("QueueUrls", [])) == urls


# ---- DeleteQueue, PurgeQueue ------------------------------------------------------------------------------


def test_delete_queue_removes_it_and_its_messages(sqs: SQSClient, url: str) -> None:
    sqs.send_message(QueueUrl=url, MessageBody="doomed")
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=name_of(url))
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as info:
        sqs.receive_message(QueueUrl=url)
    assert_error(info.value, "AWS.SimpleQueueService.NonExistentQueue", 400)
    assert url not in sqs.list_queues(QueueNamePrefix=name_of(url)).get("QueueUrls", [])


def test_delete_a_missing_queue_is_queue_does_not_exist(sqs: SQSClient, server: ServerProcess) -> None:
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as info:
        sqs.delete_queue(QueueUrl=f"{server.url}/{ACCOUNT}/{unique('missing')}")
    assert_error(info.value, "AWS.SimpleQueueService.NonExistentQueue", 400)


def test_purge_queue_deletes_ready_and_in_flight_messages(sqs: SQSClient, url: str) -> None:
    for index in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{index}")
    receive_one(sqs, url)
    sqs.purge_queue(QueueUrl=url)
    assert counts(sqs, url) == ("0", "0", "0")
    assert receive(sqs, url) == []


def test_a_second_purge_within_60_seconds_is_purge_queue_in_progress(sqs: SQSClient, url: str) -> None:
    sqs.purge_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.PurgeQueueInProgress) as info:
        sqs.purge_queue(QueueUrl=url)
    assert_error(info.value, "AWS.SimpleQueueService.PurgeQueueInProgress", 403)
    assert info.value.response["Error"]["Message"] == (
        f"Only one PurgeQueue operation on {name_of(url)} is allowed every 60 seconds."
    )


# ---- GetQueueAttributes -----------------------------------------------------------------------------------


def test_get_queue_attributes_all_of_a_new_queue(sqs: SQSClient, url: str) -> None:
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    expected: dict[Any, str] = {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
        "ApproximateNumberOfMessagesDelayed": "0",
        "DelaySeconds": "0",
        "MaximumMessageSize": str(MIB),
        "MessageRetentionPeriod": "345600",
        "ReceiveMessageWaitTimeSeconds": "0",
        "VisibilityTimeout": "30",
        "QueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name_of(url)}",
    }
    assert {key: found.get(key) for key in expected} == expected
    assert "RedrivePolicy" not in found
    for stamp in ("CreatedTimestamp", "LastModifiedTimestamp"):
        assert re.fullmatch(r"\d{10}", found[stamp]), found[stamp]  # epoch seconds, as a string
        assert abs(int(found[stamp]) - time.time()) < 60


def test_get_queue_attributes_returns_only_the_names_asked_for(sqs: SQSClient, url: str) -> None:
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout", "QueueArn"])["Attributes"]
    assert set(found) == {"VisibilityTimeout", "QueueArn"}
    assert sqs.get_queue_attributes(QueueUrl=url).get("Attributes", {}) == {}


def test_get_queue_attributes_counts_ready_in_flight_and_delayed_messages(sqs: SQSClient, url: str) -> None:
    for index in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{index}")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    receive_one(sqs, url)
    assert counts(sqs, url) == ("2", "1", "1")


def test_get_queue_attributes_with_an_unknown_name_is_invalid_attribute_name(sqs: SQSClient, url: str) -> None:
    with pytest.raises(sqs.exceptions.InvalidAttributeName) as info:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Colour"])  # type: ignore[list-item]
    assert_error(info.value, "InvalidAttributeName", 400)


# ---- SetQueueAttributes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("attribute_name", list(NUMERIC_ATTRIBUTES))
def test_set_queue_attributes_accepts_the_documented_range(sqs: SQSClient, url: str, attribute_name: Any) -> None:
    low, high = NUMERIC_ATTRIBUTES[attribute_name]
    for value in (low, high):
        sqs.set_queue_attributes(QueueUrl=url, Attributes={attribute_name: str(value)})
        assert attribute(sqs, url, attribute_name) == str(value)


@pytest.mark.parametrize("attribute_name", list(NUMERIC_ATTRIBUTES))
def test_set_queue_attributes_out_of_range_is_invalid_attribute_value(
    sqs: SQSClient, url: str, attribute_name: Any
) -> None:
    low, high = NUMERIC_ATTRIBUTES[attribute_name]
    before = attribute(sqs, url, attribute_name)
    for bad in (str(low - 1), str(high + 1), "ten", "", "1.5"):
        with pytest.raises(sqs.exceptions.InvalidAttributeValue) as info:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={attribute_name: bad})
        assert_error(info.value, "InvalidAttributeValue", 400)
        assert info.value.response["Error"]["Message"].startswith(f"Invalid value for the parameter {attribute_name}")
    assert attribute(sqs, url, attribute_name) == before


@pytest.mark.parametrize(
    "attribute_name",
    ["Colour", "QueueArn", "ApproximateNumberOfMessages", "CreatedTimestamp", "LastModifiedTimestamp"],
)
def test_set_an_unknown_or_read_only_attribute_is_invalid_attribute_name(
    sqs: SQSClient, url: str, attribute_name: Any
) -> None:
    with pytest.raises(sqs.exceptions.InvalidAttributeName) as info:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={attribute_name: "1"})
    assert_error(info.value, "InvalidAttributeName", 400)
    assert info.value.response["Error"]["Message"] == f"Unknown Attribute {attribute_name}."


def test_set_queue_attributes_of_a_missing_queue_is_queue_does_not_exist(sqs: SQSClient, server: ServerProcess) -> None:
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as info:
        sqs.set_queue_attributes(
            QueueUrl=f"{server.url}/{ACCOUNT}/{unique('missing')}", Attributes={"VisibilityTimeout": "5"}
        )
    assert_error(info.value, "AWS.SimpleQueueService.NonExistentQueue", 400)


def test_a_queue_visibility_timeout_applies_to_receives_without_one(sqs: SQSClient) -> None:
    queue_url = new_queue(sqs, VisibilityTimeout="1")
    sqs.send_message(QueueUrl=queue_url, MessageBody="short lease")
    first = receive_one(sqs, queue_url)
    assert receive(sqs, queue_url) == []
    again = receive_one(sqs, queue_url, WaitTimeSeconds=5)
    assert again["MessageId"] == first["MessageId"]


# ---- 2. messages: SendMessage -----------------------------------------------------------------------------


def test_send_message_returns_the_body_md5_and_an_id(sqs: SQSClient, url: str) -> None:
    body = "héllo, wörld ✓ 😀"
    sent = sqs.send_message(QueueUrl=url, MessageBody=body)
    assert sent["MD5OfMessageBody"] == md5_hex(body)
    assert sent["MessageId"]
    assert "MD5OfMessageAttributes" not in sent
    message = receive_one(sqs, url)
    assert (message["MessageId"], message["Body"], message["MD5OfBody"]) == (sent["MessageId"], body, md5_hex(body))
    assert message["ReceiptHandle"]
    assert "MessageAttributes" not in message


def test_each_message_gets_its_own_id(sqs: SQSClient, url: str) -> None:
    ids = {sqs.send_message(QueueUrl=url, MessageBody="same")["MessageId"] for _ in range(5)}
    assert len(ids) == 5


TYPED_ATTRIBUTES: dict[str, Any] = {
    "text": {"DataType": "String", "StringValue": "héllo ✓"},
    "count": {"DataType": "Number", "StringValue": "-12.5e3"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe\xff"},
    "int": {"DataType": "Number.int", "StringValue": "42"},
    "label": {"DataType": "String.custom-label", "StringValue": "x"},
    "image": {"DataType": "Binary.png", "BinaryValue": b"\x89PNG"},
}


def test_message_attributes_round_trip_with_their_md5(sqs: SQSClient, url: str) -> None:
    sent = sqs.send_message(QueueUrl=url, MessageBody="typed", MessageAttributes=TYPED_ATTRIBUTES)
    assert sent["MD5OfMessageAttributes"] == md5_of_attributes(TYPED_ATTRIBUTES)
    message = receive_one(sqs, url, MessageAttributeNames=["All"])
    assert plain(message["MessageAttributes"]) == TYPED_ATTRIBUTES
    assert message["MD5OfMessageAttributes"] == md5_of_attributes(TYPED_ATTRIBUTES)


def string(value: str, data_type: str = "String") -> dict[str, str]:
    return {"DataType": data_type, "StringValue": value}


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [  # digests recorded from real SQS (LocalStack's AWS snapshots) and checked by @aws-sdk/client-sqs
        ({"General": string("Kenobi"), "Hello": string("There")}, "fca026605781cb4126a1e9044df24232"),
        ({"Hello": string("There"), "Help.Me": string("Me")}, "83fee93c1bcd8b9a5a923ffacdc636c7"),
        ({"Foo": string("Bar")}, "ae7155c6026991b6d54b11589678bf9c"),
        (
            {
                "attr1": {
                    "DataType": "Binary",
                    "BinaryValue": b"traceparent\x1e00-774062d6c37081a5a0b9b5b88e30627c-2d2482211f6489da-01",
                }
            },
            "8cbe4db156db8a94db8b801b7addb984",
        ),
        ({"UserId": string("1234567890123456789012", "Number.bigint")}, "797ab158d73dcb5242dedc4412c8e855"),
    ],
)
def test_the_tests_md5_of_attributes_matches_recorded_aws_digests(attributes: dict[str, Any], expected: str) -> None:
    """The digest this file checks the server against is itself right: no server involved."""
    assert md5_of_attributes(attributes) == expected


def test_recorded_digests_come_back_from_the_server(sqs: SQSClient, url: str) -> None:
    attributes: dict[str, Any] = {"General": string("Kenobi"), "Hello": string("There"), "Help.Me": string("Me")}
    sent = sqs.send_message(QueueUrl=url, MessageBody="recorded", MessageAttributes=attributes)
    assert sent["MD5OfMessageAttributes"] == "4c360f3fdafd970e05fae2f149d997f5"
    assert sent["MD5OfMessageBody"] == md5_hex("recorded")


ATTRIBUTE_SET: dict[str, Any] = {
    "a.one": {"DataType": "String", "StringValue": "1"},
    "a.two": {"DataType": "Number", "StringValue": "2"},
    "b.one": {"DataType": "String", "StringValue": "3"},
}


@pytest.mark.parametrize(
    ("requested", "returned"),
    [
        (["All"], ["a.one", "a.two", "b.one"]),
        ([".*"], ["a.one", "a.two", "b.one"]),
        (["a.*"], ["a.one", "a.two"]),
        (["b.one"], ["b.one"]),
        (["a.two", "b.one", "missing"], ["a.two", "b.one"]),
    ],
)
def test_receive_filters_message_attributes_by_name_and_prefix(
    sqs: SQSClient, url: str, requested: list[str], returned: list[str]
) -> None:
    sqs.send_message(QueueUrl=url, MessageBody="filtered", MessageAttributes=ATTRIBUTE_SET)
    message = receive_one(sqs, url, MessageAttributeNames=requested)
    subset = {key: ATTRIBUTE_SET[key] for key in returned}
    assert plain(message["MessageAttributes"]) == subset
    assert message["MD5OfMessageAttributes"] == md5_of_attributes(subset)  # over the returned subset only


def test_receive_without_attribute_names_returns_no_message_attributes(sqs: SQSClient, url: str) -> None:
    sqs.send_message(QueueUrl=url, MessageBody="plain", MessageAttributes=ATTRIBUTE_SET)
    message = receive_one(sqs, url)
    assert "MessageAttributes" not in message
    assert "MD5OfMessageAttributes" not in message


def test_a_delayed_message_is_not_received_until_due(sqs: SQSClient, url: str) -> None:
    started = time.monotonic()
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)
    assert receive(sqs, url) == []
    assert counts(sqs, url) == ("0", "0", "1")
    message = receive_one(sqs, url, WaitTimeSeconds=5)
    assert message["Body"] == "later"
    assert 0.9 <= time.monotonic() - started < 4


def test_the_queue_delay_applies_unless_the_message_sets_its_own(sqs: SQSClient) -> None:
    queue_url = new_queue(sqs, DelaySeconds="1")
    sqs.send_message(QueueUrl=queue_url, MessageBody="queue delay")
    sqs.send_message(QueueUrl=queue_url, MessageBody="no delay", DelaySeconds=0)
    assert [m["Body"] for m in receive(sqs, queue_url, MaxNumberOfMessages=10)] == ["no delay"]
    assert receive_one(sqs, queue_url, WaitTimeSeconds=5)["Body"] == "queue delay"


def test_send_with_delay_over_900_seconds_is_invalid_parameter_value(sqs: SQSClient, url: str) -> None:
    with pytest.raises(ClientError) as info:
        sqs.send_message(QueueUrl=url, MessageBody="too late", DelaySeconds=901)
    assert_error(info.value, "InvalidParameterValue", 400)


def test_a_message_over_the_queue_maximum_size_is_invalid_parameter_value(sqs: SQSClient) -> None:
    queue_url = new_queue(sqs, MaximumMessageSize="1024")
    sqs.send_message(QueueUrl=queue_url, MessageBody="x" * 1024)
    with pytest.raises(ClientError) as info:
        sqs.send_message(QueueUrl=queue_url, MessageBody="x" * 1025)
    assert_error(info.value, "InvalidParameterValue", 400)
    assert info.value.response["Error"]["Message"] == (
        "One or more parameters are invalid. Reason: Message must be shorter than 1024 bytes."
    )


def test_message_attributes_count_toward_the_maximum_size(sqs: SQSClient) -> None:
    queue_url = new_queue(sqs, MaximumMessageSize="1024")
    with pytest.raises(ClientError) as info:
        sqs.send_message(
            QueueUrl=queue_url,
            MessageBody="x" * 1000,
            MessageAttributes={"extra": {"DataType": "String", "StringValue": "y" * 100}},
        )
    assert_error(info.value, "InvalidParameterValue", 400)


def test_the_default_maximum_message_size_is_one_mebibyte(sqs: SQSClient, url: str) -> None:
    sqs.send_message(QueueUrl=url, MessageBody="x" * MIB)
    with pytest.raises(ClientError) as info:
        sqs.send_message(QueueUrl=url, MessageBody="x" * (MIB + 1))
    assert_error(info.value, "InvalidParameterValue", 400)


def test_an_empty_body_is_missing_parameter(sqs: SQSClient, url: str) -> None:
    with pytest.raises(ClientError) as info:
        sqs.send_message(QueueUrl=url, MessageBody="")
    assert_error(info.value, "MissingParameter", 400)


def test_a_body_with_characters_outside_xml_is_invalid_message_contents(sqs: SQSClient, url: str) -> None:
    with pytest.raises(sqs.exceptions.InvalidMessageContents) as info:
        sqs.send_message(QueueUrl=url, MessageBody="nul \x00 inside")
    assert_error(info.value, "InvalidMessageContents", 400)


def test_send_to_a_missing_queue_is_queue_does_not_exist(sqs: SQSClient, server: ServerProcess) -> None:
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as info:
        sqs.send_message(QueueUrl=f"{server.url}/{ACCOUNT}/{unique('missing')}", MessageBody="x")
    assert_error(info.value, "AWS.SimpleQueueService.NonExistentQueue", 400)


# ---- SendMessageBatch and the batch rules of all three batch actions --------------------------------------


def test_send_message_batch(sqs: SQSClient, url: str) -> None:
    result = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "first", "MessageBody": "one"},
            {"Id": "second", "MessageBody": "two", "MessageAttributes": TYPED_ATTRIBUTES},
        ],
    )
    assert result.get("Failed", []) == []
    by_id = {entry["Id"]: entry for entry in result["Successful"]}
    assert set(by_id) == {"first", "second"}
    assert by_id["first"]["MD5OfMessageBody"] == md5_hex("one")
    assert by_id["second"]["MD5OfMessageAttributes"] == md5_of_attributes(TYPED_ATTRIBUTES)
    assert by_id["first"]["MessageId"] != by_id["second"]["MessageId"]
    received = receive(sqs, url, MaxNumberOfMessages=10)
    assert {m["MessageId"]: m["Body"] for m in received} == {
        by_id["first"]["MessageId"]: "one",
        by_id["second"]["MessageId"]: "two",
    }


def test_send_message_batch_fails_a_bad_entry_alone(sqs: SQSClient, url: str) -> None:
    """AWS-validated (LocalStack issue 4135 test): a body with a control character fails on its own."""
    result = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "ok-1", "MessageBody": "fine"},
            {"Id": "bad", "MessageBody": "\x01"},
            {"Id": "ok-2", "MessageBody": "also fine"},
        ],
    )
    assert sorted(entry["Id"] for entry in result["Successful"]) == ["ok-1", "ok-2"]
    [failed] = result["Failed"]
    assert failed["Id"] == "bad"
    assert failed["SenderFault"] is True
    assert failed["Code"] == "InvalidMessageContents"
    assert failed.get("Message")
    assert sorted(m["Body"] for m in receive(sqs, url, MaxNumberOfMessages=10)) == ["also fine", "fine"]


def test_a_batch_over_one_mebibyte_in_total_is_batch_request_too_long(sqs: SQSClient, url: str) -> None:
    entries: list[Any] = [{"Id": f"e{index}", "MessageBody": "x" * (600 * 1024)} for index in range(2)]
    with pytest.raises(sqs.exceptions.BatchRequestTooLong) as info:
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert_error(info.value, "AWS.SimpleQueueService.BatchRequestTooLong", 400)
    assert counts(sqs, url) == ("0", "0", "0")


BATCH_ACTIONS: dict[str, Callable[[str], dict[str, Any]]] = {
    "send_message_batch": lambda entry_id: {"Id": entry_id, "MessageBody": "m"},
    "delete_message_batch": lambda entry_id: {"Id": entry_id, "ReceiptHandle": "handle"},
    "change_message_visibility_batch": lambda entry_id: {"Id": entry_id, "ReceiptHandle": "h", "VisibilityTimeout": 0},
}

BATCH_ERRORS: dict[str, tuple[list[str], str]] = {
    "too-many": ([f"e{index}" for index in range(11)], "TooManyEntriesInBatchRequest"),
    "duplicate-ids": (["same", "other", "same"], "BatchEntryIdsNotDistinct"),
    "empty": ([], "EmptyBatchRequest"),
    "bad-id": (["bad id!"], "InvalidBatchEntryId"),
    "id-too-long": (["i" * 81], "InvalidBatchEntryId"),
}


@pytest.mark.parametrize("action", list(BATCH_ACTIONS))
@pytest.mark.parametrize("case", list(BATCH_ERRORS))
def test_batch_request_errors(sqs: SQSClient, url: str, action: str, case: str) -> None:
    ids, shape = BATCH_ERRORS[case]
    entries = [BATCH_ACTIONS[action](entry_id) for entry_id in ids]
    with pytest.raises(getattr(sqs.exceptions, shape)) as info:
        getattr(sqs, action)(QueueUrl=url, Entries=entries)
    assert_error(info.value, f"AWS.SimpleQueueService.{shape}", 400)
    if action == "send_message_batch":
        assert counts(sqs, url) == ("0", "0", "0")  # nothing of a refused batch is sent


def test_batch_entry_ids_may_use_80_letters_digits_hyphens_and_underscores(sqs: SQSClient, url: str) -> None:
    entry_id = ("Ab9-_" * 16)[:80]
    result = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": entry_id, "MessageBody": "m"}])
    assert [entry["Id"] for entry in result["Successful"]] == [entry_id]


# ---- ReceiveMessage --------------------------------------------------------------------------------------


def test_receive_returns_one_message_by_default_and_up_to_ten(sqs: SQSClient, url: str) -> None:
    bodies = {f"m{index}" for index in range(12)}
    for chunk in (sorted(bodies)[:6], sorted(bodies)[6:]):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": body, "MessageBody": body} for body in chunk])
    got = [receive_one(sqs, url)["Body"]]
    batch = receive(sqs, url, MaxNumberOfMessages=10)
    assert 1 <= len(batch) <= 10
    got += [m["Body"] for m in batch]
    for _ in range(12):
        if len(got) == 12:
            break
        got += [m["Body"] for m in receive(sqs, url, MaxNumberOfMessages=10)]
    assert sorted(got) == sorted(bodies)  # each exactly once while the leases last
    assert len(receive(sqs, url, MaxNumberOfMessages=1)) == 0


@pytest.mark.parametrize("count", [0, 11, -1])
def test_max_number_of_messages_outside_1_to_10_is_invalid_parameter_value(
    sqs: SQSClient, url: str, count: int
) -> None:
    with pytest.raises(ClientError) as info:
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=count)
    assert_error(info.value, "InvalidParameterValue", 400)
    assert info.value.response["Error"]["Message"] == (
        f"Value {count} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
    )


def test_wait_time_seconds_over_20_is_invalid_parameter_value(sqs: SQSClient, url: str) -> None:
    with pytest.raises(ClientError) as info:
        sqs.receive_message(QueueUrl=url, WaitTimeSeconds=21)
    assert_error(info.value, "InvalidParameterValue", 400)


def test_receive_visibility_timeout_hides_the_message_for_that_long(sqs: SQSClient, url: str) -> None:
    sqs.send_message(QueueUrl=url, MessageBody="leased")
    started = time.monotonic()
    first = receive_one(sqs, url, VisibilityTimeout=1)
    assert receive(sqs, url) == []
    assert counts(sqs, url) == ("0", "1", "0")
    again = receive_one(sqs, url, WaitTimeSeconds=5, MessageSystemAttributeNames=["ApproximateReceiveCount"])
    assert time.monotonic() - started >= 0.9
    assert again["MessageId"] == first["MessageId"]
    assert again["ReceiptHandle"] != first["ReceiptHandle"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"


def test_long_poll_is_answered_when_a_message_arrives(sqs: SQSClient, url: str) -> None:
    sender = threading.Timer(0.5, lambda: sqs.send_message(QueueUrl=url, MessageBody="arrived"))
    started = time.monotonic()
    sender.start()
    try:
        message = receive_one(sqs, url, WaitTimeSeconds=10)
    finally:
        sender.join()
    assert message["Body"] == "arrived"
    assert 0.4 <= time.monotonic() - started < 5


def test_an_empty_long_poll_returns_nothing_after_the_wait(sqs: SQSClient, url: str) -> None:
    started = time.monotonic()
    assert receive(sqs, url, WaitTimeSeconds=1) == []
    assert 0.9 <= time.monotonic() - started < 4


def test_the_queue_receive_wait_time_applies_when_the_request_gives_none(sqs: SQSClient) -> None:
    queue_url = new_queue(sqs, ReceiveMessageWaitTimeSeconds="1")
    started = time.monotonic()
    assert receive(sqs, queue_url) == []
    assert 0.9 <= time.monotonic() - started < 4
    started = time.monotonic()
    assert receive(sqs, queue_url, WaitTimeSeconds=0) == []
    assert time.monotonic() - started < 0.9


def test_receive_returns_system_attributes_when_asked(sqs: SQSClient, url: str) -> None:
    before = int(time.time() * 1000)
    sqs.send_message(QueueUrl=url, MessageBody="stamped")
    message = receive_one(sqs, url, MessageSystemAttributeNames=["All"], VisibilityTimeout=0)
    after = int(time.time() * 1000)
    found = message["Attributes"]
    assert found["ApproximateReceiveCount"] == "1"
    sent, first = found["SentTimestamp"], found["ApproximateFirstReceiveTimestamp"]
    for stamp in (sent, first):
        assert re.fullmatch(r"\d{13}", stamp), stamp  # epoch milliseconds, as a string
        assert before - 2000 <= int(stamp) <= after + 2000
    assert int(sent) <= int(first)
    assert isinstance(found["SenderId"], str)
    assert found["SenderId"]
    again = receive_one(sqs, url, MessageSystemAttributeNames=["All"])
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    assert again["Attributes"]["ApproximateFirstReceiveTimestamp"] == first
    assert again["Attributes"]["SentTimestamp"] == sent


def test_receive_returns_only_the_system_attributes_named(sqs: SQSClient, url: str) -> None:
    sqs.send_message(QueueUrl=url, MessageBody="some")
    message = receive_one(sqs, url, MessageSystemAttributeNames=["SentTimestamp"], VisibilityTimeout=0)
    assert set(message["Attributes"]) == {"SentTimestamp"}
    message = receive_one(sqs, url, VisibilityTimeout=0)
    assert message.get("Attributes", {}) == {}


def test_receive_honours_the_legacy_attribute_names_too(sqs: SQSClient, url: str) -> None:
    sqs.send_message(QueueUrl=url, MessageBody="legacy")
    message = receive_one(sqs, url, AttributeNames=["All"], VisibilityTimeout=0)
    assert {"SentTimestamp", "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp", "SenderId"} <= set(
        message["Attributes"]
    )
    message = receive_one(
        sqs, url, AttributeNames=["SentTimestamp"], MessageSystemAttributeNames=["ApproximateReceiveCount"]
    )
    assert set(message["Attributes"]) == {"SentTimestamp", "ApproximateReceiveCount"}


def test_receive_from_a_missing_queue_is_queue_does_not_exist(sqs: SQSClient, server: ServerProcess) -> None:
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as info:
        sqs.receive_message(QueueUrl=f"{server.url}/{ACCOUNT}/{unique('missing')}")
    assert_error(info.value, "AWS.SimpleQueueService.NonExistentQueue", 400)


# ---- DeleteMessage, DeleteMessageBatch -------------------------------------------------------------------


def test_delete_message(sqs: SQSClient, url: str) -> None:
    sqs.send_message(QueueUrl=url, MessageBody="done")
    message = receive_one(sqs, url, VisibilityTimeout=1)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert counts(sqs, url) == ("0", "0", "0")
    assert receive(sqs, url, WaitTimeSeconds=2) == []  # not back after its lease would have ended


def test_an_older_receipt_handle_still_deletes_the_message(sqs: SQSClient, url: str) -> None:
    sqs.send_message(QueueUrl=url, MessageBody="twice received")
    first = receive_one(sqs, url, VisibilityTimeout=0)
    second = receive_one(sqs, url)
    assert second["MessageId"] == first["MessageId"]
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    assert counts(sqs, url) == ("0", "0", "0")


def test_delete_with_a_garbage_handle_is_receipt_handle_is_invalid(sqs: SQSClient, url: str) -> None:
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid) as info:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-receipt-handle")
    assert_error(info.value, "ReceiptHandleIsInvalid", 404)


def test_delete_with_a_handle_of_another_queue_is_receipt_handle_is_invalid(sqs: SQSClient, url: str) -> None:
    other = new_queue(sqs)
    sqs.send_message(QueueUrl=other, MessageBody="elsewhere")
    handle = receive_one(sqs, other)["ReceiptHandle"]
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid) as info:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
    assert_error(info.value, "ReceiptHandleIsInvalid", 404)
    assert counts(sqs, other) == ("0", "1", "0")


def test_delete_message_batch_deletes_good_handles_and_fails_bad_ones(sqs: SQSClient, url: str) -> None:
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "a"}, {"Id": "b", "MessageBody": "b"}])
    handles = {m["Body"]: m["ReceiptHandle"] for m in receive(sqs, url, MaxNumberOfMessages=10)}
    if len(handles) < 2:
        handles.update({m["Body"]: m["ReceiptHandle"] for m in receive(sqs, url, MaxNumberOfMessages=10)})
    result = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "a", "ReceiptHandle": handles["a"]},
            {"Id": "b", "ReceiptHandle": handles["b"]},
            {"Id": "bad", "ReceiptHandle": "garbage"},
        ],
    )
    assert sorted(entry["Id"] for entry in result["Successful"]) == ["a", "b"]
    [failed] = result["Failed"]
    assert (failed["Id"], failed["Code"], failed["SenderFault"]) == ("bad", "ReceiptHandleIsInvalid", True)
    assert counts(sqs, url) == ("0", "0", "0")


# ---- ChangeMessageVisibility, ChangeMessageVisibilityBatch -------------------------------------------------


def test_change_visibility_to_zero_makes_the_message_visible_at_once(sqs: SQSClient, url: str) -> None:
    sqs.send_message(QueueUrl=url, MessageBody="back")
    first = receive_one(sqs, url)
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)
    assert counts(sqs, url) == ("1", "0", "0")
    again = receive_one(sqs, url, MessageSystemAttributeNames=["ApproximateReceiveCount"])
    assert again["MessageId"] == first["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"


def test_change_visibility_extends_the_lease(sqs: SQSClient, url: str) -> None:
    sqs.send_message(QueueUrl=url, MessageBody="slow work")
    message = receive_one(sqs, url, VisibilityTimeout=1)
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=30)
    time.sleep(1.5)
    assert receive(sqs, url) == []
    assert counts(sqs, url) == ("0", "1", "0")
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])  # the handle is still good


def test_change_visibility_of_a_message_not_in_flight_is_message_not_inflight(sqs: SQSClient, url: str) -> None:
    sqs.send_message(QueueUrl=url, MessageBody="released")
    handle = receive_one(sqs, url)["ReceiptHandle"]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    with pytest.raises(sqs.exceptions.MessageNotInflight) as info:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=10)
    assert_error(info.value, "AWS.SimpleQueueService.MessageNotInflight", 400)


def test_change_visibility_with_a_garbage_handle_is_receipt_handle_is_invalid(sqs: SQSClient, url: str) -> None:
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid) as info:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle="garbage", VisibilityTimeout=5)
    assert_error(info.value, "ReceiptHandleIsInvalid", 404)


def test_change_message_visibility_batch(sqs: SQSClient, url: str) -> None:
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "a"}, {"Id": "b", "MessageBody": "b"}])
    handles = {m["Body"]: m["ReceiptHandle"] for m in receive(sqs, url, MaxNumberOfMessages=10)}
    if len(handles) < 2:
        handles.update({m["Body"]: m["ReceiptHandle"] for m in receive(sqs, url, MaxNumberOfMessages=10)})
    result = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "a", "ReceiptHandle": handles["a"], "VisibilityTimeout": 0},
            {"Id": "b", "ReceiptHandle": handles["b"], "VisibilityTimeout": 0},
            {"Id": "bad", "ReceiptHandle": "garbage", "VisibilityTimeout": 0},
        ],
    )
    assert sorted(entry["Id"] for entry in result["Successful"]) == ["a", "b"]
    [failed] = result["Failed"]
    assert (failed["Id"], failed["Code"], failed["SenderFault"]) == ("bad", "ReceiptHandleIsInvalid", True)
    assert counts(sqs, url) == ("2", "0", "0")


# ---- 3. dead letters ---------------------------------------------------------------------------------------


def redrive_policy(dlq_arn: str, max_receive_count: int = 1) -> str:
    return json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})


def dead_letter_one(sqs: SQSClient, body: str) -> tuple[str, str, str]:
    """A source queue (maxReceiveCount 1) and its DLQ, one message received once, released, and so moved.
    Returns (source URL, DLQ URL, message id)."""
    dlq_url = new_queue(sqs)
    source_url = new_queue(sqs, RedrivePolicy=redrive_policy(arn_of(sqs, dlq_url)))
    message_id = sqs.send_message(QueueUrl=source_url, MessageBody=body)["MessageId"]
    handle = receive_one(sqs, source_url)["ReceiptHandle"]
    sqs.change_message_visibility(QueueUrl=source_url, ReceiptHandle=handle, VisibilityTimeout=0)  # the lease ends
    assert receive(sqs, source_url) == []  # a second receive would exceed maxReceiveCount: moved instead
    wait_until(lambda: counts(sqs, dlq_url)[0] == "1")
    return source_url, dlq_url, message_id


def test_redrive_policy_is_stored_and_returned(sqs: SQSClient) -> None:
    dlq_arn = arn_of(sqs, new_queue(sqs))
    source_url = new_queue(sqs, RedrivePolicy=redrive_policy(dlq_arn, 5))
    policy = json.loads(attribute(sqs, source_url, "RedrivePolicy"))
    assert policy["deadLetterTargetArn"] == dlq_arn
    assert int(policy["maxReceiveCount"]) == 5
    sqs.set_queue_attributes(QueueUrl=source_url, Attributes={"RedrivePolicy": ""})  # "" removes it
    found = sqs.get_queue_attributes(QueueUrl=source_url, AttributeNames=["All"])["Attributes"]
    assert "RedrivePolicy" not in found


def test_a_message_received_too_often_moves_to_the_dead_letter_queue(sqs: SQSClient) -> None:
    source_url, dlq_url, message_id = dead_letter_one(sqs, "poison")
    source_arn = arn_of(sqs, source_url)
    moved = receive_one(sqs, dlq_url, MessageSystemAttributeNames=["DeadLetterQueueSourceArn"])
    assert (moved["MessageId"], moved["Body"], moved["MD5OfBody"]) == (message_id, "poison", md5_hex("poison"))
    assert moved["Attributes"]["DeadLetterQueueSourceArn"] == source_arn
    assert counts(sqs, source_url) == ("0", "0", "0")


def test_list_dead_letter_source_queues(sqs: SQSClient) -> None:
    dlq_url = new_queue(sqs)
    dlq_arn = arn_of(sqs, dlq_url)
    sources = sorted(new_queue(sqs, RedrivePolicy=redrive_policy(dlq_arn)) for _ in range(2))
    new_queue(sqs)  # not a source
    assert sorted(sqs.list_dead_letter_source_queues(QueueUrl=dlq_url)["queueUrls"]) == sources
    assert sqs.list_dead_letter_source_queues(QueueUrl=sources[0])["queueUrls"] == []


def test_list_dead_letter_source_queues_uses_a_lower_case_key_on_the_wire(
    sqs: SQSClient, server: ServerProcess
) -> None:
    dlq_url = new_queue(sqs)
    source_url = new_queue(sqs, RedrivePolicy=redrive_policy(arn_of(sqs, dlq_url)))
    response = raw(server, "ListDeadLetterSourceQueues", {"QueueUrl": dlq_url})
    assert response.status_code == 200
    assert response.json()["queueUrls"] == [source_url]


def test_a_redrive_policy_naming_a_missing_queue_is_invalid_parameter_value(sqs: SQSClient, name: str) -> None:
    missing_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{unique('missing')}"
    with pytest.raises(ClientError) as info:
        sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": redrive_policy(missing_arn)})
    assert_error(info.value, "InvalidParameterValue", 400)
    queue_url = new_queue(sqs)
    with pytest.raises(ClientError) as info:
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"RedrivePolicy": redrive_policy(missing_arn)})
    assert_error(info.value, "InvalidParameterValue", 400)


def wait_for_task(sqs: SQSClient, dlq_arn: str) -> dict[str, Any]:
    """The newest move task of `dlq_arn` once it is COMPLETED."""
    found: dict[str, Any] = {}

    def completed() -> bool:
        nonlocal found
        results = sqs.list_message_move_tasks(SourceArn=dlq_arn).get("Results", [])
        found = dict(results[0]) if results else {}
        return found.get("Status") == "COMPLETED"

    wait_until(completed)
    return found


def test_start_message_move_task_moves_messages_back_to_their_source(sqs: SQSClient) -> None:
    source_url, dlq_url, message_id = dead_letter_one(sqs, "retry me")
    dlq_arn = arn_of(sqs, dlq_url)
    handle = sqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    assert handle
    back = receive_one(sqs, source_url, WaitTimeSeconds=5)
    assert (back["MessageId"], back["Body"]) == (message_id, "retry me")
    task = wait_for_task(sqs, dlq_arn)
    assert task["SourceArn"] == dlq_arn
    assert task["ApproximateNumberOfMessagesMoved"] == 1
    assert counts(sqs, dlq_url) == ("0", "0", "0")


def test_start_message_move_task_to_a_destination(sqs: SQSClient) -> None:
    source_url, dlq_url, message_id = dead_letter_one(sqs, "elsewhere")
    dlq_arn = arn_of(sqs, dlq_url)
    destination_url = new_queue(sqs)
    destination_arn = arn_of(sqs, destination_url)
    sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=destination_arn)
    moved = receive_one(sqs, destination_url, WaitTimeSeconds=5)
    assert (moved["MessageId"], moved["Body"]) == (message_id, "elsewhere")
    task = wait_for_task(sqs, dlq_arn)
    assert task["DestinationArn"] == destination_arn
    assert task["ApproximateNumberOfMessagesMoved"] == 1
    assert counts(sqs, source_url) == ("0", "0", "0")


def test_start_message_move_task_of_a_missing_queue_is_resource_not_found(sqs: SQSClient) -> None:
    with pytest.raises(sqs.exceptions.ResourceNotFoundException) as info:
        sqs.start_message_move_task(SourceArn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{unique('missing')}")
    assert_error(info.value, "ResourceNotFoundException", 404)


def test_cancel_an_unknown_message_move_task_is_resource_not_found(sqs: SQSClient) -> None:
    dlq_arn = arn_of(sqs, new_queue(sqs))
    # An opaque handle in the shape real ones (and LocalStack's) have: base64 of a JSON document.
    handle = base64.b64encode(json.dumps({"taskId": str(uuid.uuid4()), "sourceArn": dlq_arn}).encode()).decode()
    with pytest.raises(sqs.exceptions.ResourceNotFoundException) as info:
        sqs.cancel_message_move_task(TaskHandle=handle)
    assert_error(info.value, "ResourceNotFoundException", 404)


# ---- 4. tags -----------------------------------------------------------------------------------------------


def test_tag_list_and_untag_a_queue(sqs: SQSClient, name: str) -> None:
    queue_url = sqs.create_queue(QueueName=name, tags={"team": "core", "env": "test"})["QueueUrl"]
    assert sqs.list_queue_tags(QueueUrl=queue_url)["Tags"] == {"team": "core", "env": "test"}
    sqs.tag_queue(QueueUrl=queue_url, Tags={"env": "prod", "owner": "me"})
    assert sqs.list_queue_tags(QueueUrl=queue_url)["Tags"] == {"team": "core", "env": "prod", "owner": "me"}
    sqs.untag_queue(QueueUrl=queue_url, TagKeys=["team", "not-there"])
    assert sqs.list_queue_tags(QueueUrl=queue_url)["Tags"] == {"env": "prod", "owner": "me"}
    sqs.untag_queue(QueueUrl=queue_url, TagKeys=["env", "owner"])
    assert sqs.list_queue_tags(QueueUrl=queue_url).get("Tags", {}) == {}


def test_create_queue_tags_go_on_the_wire_as_lower_case_tags(server: ServerProcess, sqs: SQSClient, name: str) -> None:
    response = raw(server, "CreateQueue", {"QueueName": name, "tags": {"k": "v"}})
    assert response.status_code == 200, response.text
    assert sqs.list_queue_tags(QueueUrl=response.json()["QueueUrl"])["Tags"] == {"k": "v"}


def test_tag_a_missing_queue_is_queue_does_not_exist(sqs: SQSClient, server: ServerProcess) -> None:
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as info:
        sqs.tag_queue(QueueUrl=f"{server.url}/{ACCOUNT}/{unique('missing')}", Tags={"a": "b"})
    assert_error(info.value, "AWS.SimpleQueueService.NonExistentQueue", 400)


# ---- 5. regions and WonderQ's own API ----------------------------------------------------------------------


def test_regions_do_not_see_each_others_queues(sqs: SQSClient, sqs_eu: SQSClient) -> None:
    us_only, eu_only = unique("us"), unique("eu")
    sqs.create_queue(QueueName=us_only)
    sqs_eu.create_queue(QueueName=eu_only)
    with pytest.raises(sqs_eu.exceptions.QueueDoesNotExist):
        sqs_eu.get_queue_url(QueueName=us_only)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=eu_only)
    assert sqs_eu.list_queues(QueueNamePrefix=us_only).get("QueueUrls", []) == []
    assert sqs.list_queues(QueueNamePrefix=eu_only).get("QueueUrls", []) == []


def test_the_same_name_in_two_regions_is_two_queues(sqs: SQSClient, sqs_eu: SQSClient, name: str) -> None:
    us_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    eu_url = sqs_eu.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
    sqs.send_message(QueueUrl=us_url, MessageBody="in us-east-1")
    sqs_eu.send_message(QueueUrl=eu_url, MessageBody="in eu-west-1")
    assert receive_one(sqs, us_url)["Body"] == "in us-east-1"
    assert receive_one(sqs_eu, eu_url)["Body"] == "in eu-west-1"
    assert attribute(sqs, us_url, "VisibilityTimeout") == "30"
    assert attribute(sqs_eu, eu_url, "QueueArn") == f"arn:aws:sqs:{OTHER_REGION}:{ACCOUNT}:{name}"


def test_a_home_region_queue_is_a_wonderq_queue(sqs: SQSClient, server: ServerProcess, name: str) -> None:
    queue_url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "7"})["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="seen by API v1")
    response = httpx.get(f"{server.url}/v1/queues/{name}")
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["name"] == name
    assert stats["attributes"]["visibility_timeout"] == 7
    assert stats["ready"] == 1


def test_a_wonderq_queue_is_a_home_region_sqs_queue(sqs: SQSClient, server: ServerProcess, name: str) -> None:
    assert httpx.put(f"{server.url}/v1/queues/{name}").status_code == 201
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == f"{server.url}/{ACCOUNT}/{name}"


def test_another_region_queue_is_a_namespaced_wonderq_queue(
    sqs_eu: SQSClient, server: ServerProcess, name: str
) -> None:
    sqs_eu.create_queue(QueueName=name)
    assert httpx.get(f"{server.url}/v1/queues/{OTHER_REGION}:{name}").status_code == 200
    assert httpx.get(f"{server.url}/v1/queues/{name}").status_code == 404


def test_an_unsigned_request_is_in_the_home_region(server: ServerProcess, sqs: SQSClient, name: str) -> None:
    response = raw(server, "CreateQueue", {"QueueName": name})
    assert response.status_code == 200, response.text
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == response.json()["QueueUrl"]


# ---- 6. unsupported actions and the wire -------------------------------------------------------------------


def test_add_and_remove_permission_are_unsupported(sqs: SQSClient, url: str) -> None:
    with pytest.raises(sqs.exceptions.UnsupportedOperation) as info:
        sqs.add_permission(QueueUrl=url, Label="l", AWSAccountIds=[ACCOUNT], Actions=["SendMessage"])
    assert_error(info.value, "AWS.SimpleQueueService.UnsupportedOperation", 400)
    with pytest.raises(sqs.exceptions.UnsupportedOperation) as info:
        sqs.remove_permission(QueueUrl=url, Label="l")
    assert_error(info.value, "AWS.SimpleQueueService.UnsupportedOperation", 400)


def test_an_unknown_action_is_a_parsable_error(server: ServerProcess) -> None:
    response = raw(server, "Frobnicate", {})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(JSON_CONTENT_TYPE)
    body = response.json()
    assert isinstance(body["__type"], str)
    assert body["__type"]


def test_a_body_that_is_not_json_is_a_parsable_error(server: ServerProcess) -> None:
    response = raw(server, "ListQueues", b"{not json")
    assert response.status_code == 400
    assert isinstance(response.json()["__type"], str)


def test_a_successful_reply_on_the_wire(server: ServerProcess) -> None:
    response = raw(server, "ListQueues", {})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(JSON_CONTENT_TYPE)
    assert response.headers["x-amzn-RequestId"]
    assert isinstance(response.json(), dict)


def test_an_error_reply_on_the_wire(server: ServerProcess) -> None:
    response = raw(server, "GetQueueUrl", {"QueueName": unique("missing")})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(JSON_CONTENT_TYPE)
    assert response.headers["x-amzn-RequestId"]
    assert response.headers["x-amzn-query-error"] == "AWS.SimpleQueueService.NonExistentQueue;Sender"
    body = response.json()
    assert body["__type"] == "com.amazonaws.sqs#QueueDoesNotExist"
    assert body["message"] == "The specified queue does not exist."


def test_request_ids_reach_boto3(sqs: SQSClient) -> None:
    assert sqs.list_queues(QueueNamePrefix=unique("none"))["ResponseMetadata"]["RequestId"]


def test_a_query_protocol_request_is_refused_with_the_reason(server: ServerProcess) -> None:
    response = httpx.post(
        server.url,
        content=b"Action=ListQueues&Version=2012-11-05",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.headers["x-amzn-query-error"] == "InvalidAction;Sender"
    assert "Query protocol is not supported" in response.json()["message"]
