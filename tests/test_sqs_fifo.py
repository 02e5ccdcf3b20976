"""SQS FIFO queues through boto3 against a real server: names, attributes, group order, deduplication by id or
content within 5 minutes (per queue or per group), sequence numbers, and dead-letter queues of the same kind."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError
from mypy_boto3_sqs import SQSClient

from tests.servers import server_process


@pytest.fixture(scope="module")
def sqs() -> Iterator[SQSClient]:
    with server_process() as server:
        yield boto3.client(
            "sqs",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=botocore.config.Config(retries={"max_attempts": 1}),
        )


def fifo_queue(sqs: SQSClient, **attributes: str) -> str:
    name = f"f-{uuid.uuid4().hex[:12]}.fifo"
    given: Any = {"FifoQueue": "true", **attributes}  # the stubs want attribute names as literals
    return sqs.create_queue(QueueName=name, Attributes=given)["QueueUrl"]


def error(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    response: Any = caught.value.response
    return response["Error"]["Code"], response["Error"]["Message"]


def bodies(sqs: SQSClient, url: str, count: int = 10, **options: Any) -> list[str]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=count, **options).get("Messages", [])
    return [message["Body"] for message in messages]


def test_fifo_attributes_and_names(sqs: SQSClient) -> None:
    url = fifo_queue(sqs, ContentBasedDeduplication="true")
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert {key: found[key] for key in ("FifoQueue", "ContentBasedDeduplication", "DeduplicationScope")} == {
        "FifoQueue": "true",
        "ContentBasedDeduplication": "true",
        "DeduplicationScope": "queue",
    }
    assert found["FifoThroughputLimit"] == "perQueue"
    assert error(lambda: sqs.create_queue(QueueName="plain", Attributes={"FifoQueue": "true"}))[0] == (
        "InvalidParameterValue"
    )
    assert error(lambda: sqs.create_queue(QueueName="named.fifo"))[0] == "InvalidParameterValue"
    assert error(lambda: sqs.set_queue_attributes(QueueUrl=url, Attributes={"FifoQueue": "true"}))[0] == (
        "InvalidAttributeValue"
    )
    standard = sqs.create_queue(QueueName=f"s-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    assert (
        error(lambda: sqs.set_queue_attributes(QueueUrl=standard, Attributes={"ContentBasedDeduplication": "true"}))[0]
        == "InvalidAttributeName"
    )


def test_each_group_in_order_and_one_batch_at_a_time(sqs: SQSClient) -> None:
    url = fifo_queue(sqs, ContentBasedDeduplication="true", VisibilityTimeout="30")
    for body, group in (("a1", "a"), ("b1", "b"), ("a2", "a"), ("b2", "b"), ("a3", "a")):
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group)
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, MessageSystemAttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in first] == ["a1", "a2"]
    assert [m["Attributes"]["MessageGroupId"] for m in first] == ["a", "a"]
    assert bodies(sqs, url) == ["b1", "b2"]  # group a has messages in flight
    assert bodies(sqs, url) == []
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"])
    assert bodies(sqs, url) == []  # a2 is still in flight
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first[1]["ReceiptHandle"], VisibilityTimeout=0)
    assert bodies(sqs, url) == ["a2", "a3"]  # a2 again first, then the rest of its group


def test_sequence_numbers_grow_and_match_on_receive(sqs: SQSClient) -> None:
    url = fifo_queue(sqs, ContentBasedDeduplication="true")
    sent = [sqs.send_message(QueueUrl=url, MessageBody=f"m{i}", MessageGroupId="g") for i in range(3)]
    numbers = [reply["SequenceNumber"] for reply in sent]
    assert all(len(number) == 20 and number.isdigit() for number in numbers)
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 3
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"])
    assert [m["Attributes"]["SequenceNumber"] for m in received["Messages"]] == numbers


def test_deduplication_by_id_and_by_content_within_the_window(sqs: SQSClient) -> None:
    url = fifo_queue(sqs)
    first = sqs.send_message(QueueUrl=url, MessageBody="one", MessageGroupId="g", MessageDeduplicationId="d1")
    again = sqs.send_message(QueueUrl=url, MessageBody="other body", MessageGroupId="g", MessageDeduplicationId="d1")
    assert again["MessageId"] == first["MessageId"]
    assert error(lambda: sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g")) == (
        "InvalidParameterValue",
        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
    )
    content = fifo_queue(sqs, ContentBasedDeduplication="true")
    ids = {sqs.send_message(QueueUrl=content, MessageBody="same", MessageGroupId=g)["MessageId"] for g in "ab"}
    assert len(ids) == 1  # the scope is the queue: the same body in another group is a duplicate too
    (by_content,) = sqs.receive_message(QueueUrl=content, MessageSystemAttributeNames=["All"])["Messages"]
    assert by_content["Body"] == "same"
    assert by_content["Attributes"]["MessageDeduplicationId"] == hashlib.sha256(b"same").hexdigest()
    (by_id,) = sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=["MessageDeduplicationId"])["Messages"]
    assert (by_id["Body"], by_id["Attributes"]) == ("one", {"MessageDeduplicationId": "d1"})


def test_deduplication_scope_message_group(sqs: SQSClient) -> None:
    url = fifo_queue(
        sqs,
        ContentBasedDeduplication="true",
        DeduplicationScope="messageGroup",
        FifoThroughputLimit="perMessageGroupId",
    )
    ids = [sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId=g)["MessageId"] for g in "aab"]
    assert ids[0] == ids[1] != ids[2]
    assert error(lambda: fifo_queue(sqs, FifoThroughputLimit="perMessageGroupId"))[0] == "InvalidAttributeValue"
    later = fifo_queue(sqs, DeduplicationScope="messageGroup")  # the scope set before, the limit now
    sqs.set_queue_attributes(QueueUrl=later, Attributes={"FifoThroughputLimit": "perMessageGroupId"})
    found = sqs.get_queue_attributes(QueueUrl=later, AttributeNames=["FifoThroughputLimit"])["Attributes"]
    assert found == {"FifoThroughputLimit": "perMessageGroupId"}


def test_fifo_send_rules(sqs: SQSClient) -> None:
    url = fifo_queue(sqs, ContentBasedDeduplication="true")
    assert error(lambda: sqs.send_message(QueueUrl=url, MessageBody="x")) == (
        "MissingParameter",
        "The request must contain the parameter MessageGroupId.",
    )
    code, message = error(lambda: sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", DelaySeconds=2))
    assert code == "InvalidParameterValue"
    assert message.startswith("Value 2 for parameter DelaySeconds is invalid.")
    reply = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": "ok", "MessageBody": "x", "MessageGroupId": "g"}, {"Id": "bad", "MessageBody": "y"}],
    )
    assert [entry["Id"] for entry in reply["Successful"]] == ["ok"]
    assert "SequenceNumber" in reply["Successful"][0]
    assert [(entry["Id"], entry["Code"]) for entry in reply["Failed"]] == [("bad", "MissingParameter")]
    standard = sqs.create_queue(QueueName=f"s-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    assert (
        error(lambda: sqs.send_message(QueueUrl=standard, MessageBody="x", MessageDeduplicationId="d"))[0]
        == "InvalidParameterValue"
    )


def test_a_fifo_queue_dead_letters_to_a_fifo_queue_only(sqs: SQSClient) -> None:
    dlq = fifo_queue(sqs)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    standard = sqs.create_queue(QueueName=f"s-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    standard_arn = sqs.get_queue_attributes(QueueUrl=standard, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = f'{{"deadLetterTargetArn": "{standard_arn}", "maxReceiveCount": 1}}'
    code, text = error(lambda: fifo_queue(sqs, ContentBasedDeduplication="true", RedrivePolicy=policy))
    assert (code, text.endswith("Dead-letter queue must be same type of queue as the source..")) == (
        "InvalidParameterValue",
        True,
    )
    policy = f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": 1}}'
    url = fifo_queue(sqs, ContentBasedDeduplication="true", RedrivePolicy=policy)
    sqs.send_message(QueueUrl=url, MessageBody="poison", MessageGroupId="g")
    (message,) = sqs.receive_message(QueueUrl=url)["Messages"]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    (dead,) = sqs.receive_message(QueueUrl=dlq, MessageSystemAttributeNames=["All"])["Messages"]
    assert (dead["MessageId"], dead["Attributes"]["MessageGroupId"]) == (message["MessageId"], "g")


def test_a_receive_retried_with_its_attempt_id_gets_the_same_messages(sqs: SQSClient) -> None:
    url = fifo_queue(sqs, ContentBasedDeduplication="true", VisibilityTimeout="30")
    for body in ("m1", "m2"):
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId="g")
    (first,) = sqs.receive_message(QueueUrl=url, ReceiveRequestAttemptId="try-1")["Messages"]
    (again,) = sqs.receive_message(QueueUrl=url, ReceiveRequestAttemptId="try-1", MaxNumberOfMessages=5)["Messages"]
    assert (again["MessageId"], again["ReceiptHandle"]) == (first["MessageId"], first["ReceiptHandle"])
    assert bodies(sqs, url) == []  # the group is still blocked by m1, which was not received twice
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    (fresh,) = sqs.receive_message(QueueUrl=url, ReceiveRequestAttemptId="try-1")["Messages"]
    assert fresh["Body"] == "m2"  # m1 is gone: the attempt id no longer replays it
    assert error(lambda: sqs.receive_message(QueueUrl=url, ReceiveRequestAttemptId="has space"))[0] == (
        "InvalidParameterValue"
    )
