"""The SQS wire facts (`wonderq.sqs_wire`): digests against values recorded from real SQS and checked by an AWS
SDK, the error catalogue against botocore's own model, attribute and batch rules, SigV4 scope parsing."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import boto3
import botocore
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.retries.standard import RetryContext, ThrottledRetryableChecker, TransientRetryableChecker

from wonderq import sqs_wire as w

T = w.TypedAttribute


# ---------------------------------------------------------------------------------------------------------------
# MD5
# ---------------------------------------------------------------------------------------------------------------

# Recorded from real SQS by LocalStack's snapshot tests (tests/aws/services/sqs/test_sqs.snapshot.json).
AWS_RECORDED_ATTRIBUTE_MD5 = [
    (
        {"General": T("String", "Kenobi"), "Hello": T("String", "There"), "Help.Me": T("String", "Me")},
        "4c360f3fdafd970e05fae2f149d997f5",
    ),
    ({"General": T("String", "Kenobi"), "Hello": T("String", "There")}, "fca026605781cb4126a1e9044df24232"),
    ({"Hello": T("String", "There")}, "a311262e065454b75da111d535b8dacd"),
    ({"Hello": T("String", "There"), "Help.Me": T("String", "Me")}, "83fee93c1bcd8b9a5a923ffacdc636c7"),
    ({"Foo": T("String", "Bar")}, "ae7155c6026991b6d54b11589678bf9c"),
    (
        {"attr1": T("Binary", binary_value=b"traceparent\x1e00-774062d6c37081a5a0b9b5b88e30627c-2d2482211f6489da-01")},
        "8cbe4db156db8a94db8b801b7addb984",
    ),
]

# From an emulator test suite run through @aws-sdk/client-sqs, which verifies these digests itself.
SDK_CHECKED_ATTRIBUTE_MD5 = [
    ({"Hello": T("String", "World")}, "7db7fb1ba7f41366a8ea5eb18220b26d"),
    ({"UserId": T("Number.bigint", "1234567890123456789012")}, "797ab158d73dcb5242dedc4412c8e855"),
    ({"attrib1": T("String", "2345"), "attrib2": T("String", "true")}, "c92eae09ef2c14cd949cc265ebc9cb50"),
]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("msg", "6e2baaf3b97dbeef01c0043275f9a0e7"),
        ("test", "098f6bcd4621d373cade4e832627b4f6"),
        ("a", "0cc175b9c0f1b6a831c399e269772661"),
        ("message-body-1", "19c9e282d65f9733bc6b35d50062c7ee"),
    ],
)
def test_md5_of_body_matches_aws(body: str, expected: str) -> None:
    assert w.md5_of_body(body) == expected


def test_md5_of_body_is_utf8() -> None:
    assert w.md5_of_body("é\U0001f600") == hashlib.md5("é\U0001f600".encode()).hexdigest()


@pytest.mark.parametrize(("attributes", "expected"), AWS_RECORDED_ATTRIBUTE_MD5 + SDK_CHECKED_ATTRIBUTE_MD5)
def test_md5_of_message_attributes_matches_recorded(attributes: dict[str, w.TypedAttribute], expected: str) -> None:
    assert w.md5_of_message_attributes(attributes) == expected


def test_md5_of_message_system_attributes_trace_header() -> None:
    attributes = {"AWSTraceHeader": T("String", "some-trace-id")}
    assert w.md5_of_message_system_attributes(attributes) == "fdce4f2818803f2f73becc09a54792c0"


def test_md5_is_independent_of_mapping_order() -> None:
    a = {"b": T("String", "1"), "a": T("Number", "2")}
    assert w.md5_of_message_attributes(a) == w.md5_of_message_attributes(dict(reversed(list(a.items()))))


# ---------------------------------------------------------------------------------------------------------------
# Error catalogue vs botocore's model
# ---------------------------------------------------------------------------------------------------------------


def _service_model() -> dict[str, Any]:
    data = Path(botocore.__file__).parent / "data" / "sqs"
    (version,) = [p for p in data.iterdir() if p.is_dir()]
    plain = version / "service-2.json"
    if plain.exists():
        loaded: dict[str, Any] = json.loads(plain.read_text())
    else:
        loaded = json.loads(gzip.decompress((version / "service-2.json.gz").read_bytes()))
    return loaded


def test_catalogue_has_exactly_the_model_error_shapes() -> None:
    shapes = _service_model()["shapes"]
    model_errors = {name for name, shape in shapes.items() if shape.get("exception")}
    assert model_errors == set(w.MODELLED_ERRORS)


def test_catalogue_agrees_with_model_error_traits_where_present() -> None:
    for name, shape in _service_model()["shapes"].items():
        trait = shape.get("error")
        if shape.get("exception") and trait:  # older botocore versions carry the Query code here
            spec = w.MODELLED_ERRORS[name]
            assert trait.get("code", name) == spec.query_code
            assert trait.get("httpStatusCode", 400) == spec.http_status
            assert trait.get("senderFault", False) == spec.sender_fault


def test_every_operation_error_is_catalogued() -> None:
    for operation in _service_model()["operations"].values():
        for error in operation.get("errors", []):
            assert error["shape"] in w.MODELLED_ERRORS


def test_model_is_json_query_compatible() -> None:
    metadata = _service_model()["metadata"]
    assert metadata["protocol"] == "json"
    assert metadata["jsonVersion"] == "1.0"
    assert metadata["targetPrefix"] == w.TARGET_PREFIX
    assert "awsQueryCompatible" in metadata


def test_error_specs_are_consistent() -> None:
    for name, spec in w.ERRORS.items():
        assert spec.name == name
        assert spec.type_name.rsplit("#", 1)[1]
        assert spec.query_error_header == f"{spec.query_code};{'Sender' if spec.sender_fault else 'Receiver'}"
        if spec.modelled:
            assert spec.type_name == f"com.amazonaws.sqs#{name}"
    assert not set(w.MODELLED_ERRORS) & set(w.COMMON_ERRORS)


def test_error_response_shape() -> None:
    status, headers, body = w.error_response("QueueNameExists", "A queue already exists", "rid-1")
    assert status == 400
    assert headers["x-amzn-query-error"] == "QueueAlreadyExists;Sender"
    assert headers["Content-Type"] == "application/x-amz-json-1.0"
    assert headers["x-amzn-RequestId"] == "rid-1"
    assert json.loads(body) == {"__type": "com.amazonaws.sqs#QueueNameExists", "message": "A queue already exists"}


def test_sqs_error_rejects_unknown_codes() -> None:
    with pytest.raises(KeyError):
        w.SqsError("NoSuchThing", "x")
    error = w.SqsError("OverLimit", "too many")
    assert error.spec.http_status == 403
    assert "OverLimit" in repr(error)


def _client_answering(status: int, headers: dict[str, str], body: bytes) -> Any:
    """A real boto3 SQS client whose HTTP layer returns the given response (no network, no server)."""
    client = boto3.client(
        "sqs",
        region_name="eu-west-3",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )

    def answer(request: AWSRequest, **_: Any) -> AWSResponse:
        headers_sent: Any = request.headers  # bytes values at run time, whatever the stubs say
        assert headers_sent["X-Amz-Target"].startswith(b"AmazonSQS.")
        assert headers_sent["Content-Type"] == b"application/x-amz-json-1.0"
        assert headers_sent["x-amzn-query-mode"] == b"true"
        return AWSResponse(request.url, status, headers, _Raw(body))  # type: ignore[arg-type]

    client.meta.events.register("before-send.sqs", answer)  # type: ignore[arg-type]
    return client


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


@pytest.mark.parametrize("name", sorted(w.ERRORS))
def test_botocore_parses_every_error_as_intended(name: str) -> None:
    spec = w.ERRORS[name]
    client = _client_answering(*w.error_response(name, f"text of {name}", "rid"))
    with pytest.raises(ClientError) as caught:
        client.get_queue_url(QueueName="q")
    error = caught.value
    if spec.modelled:
        assert isinstance(error, getattr(client.exceptions, name))
    else:
        assert type(error) is ClientError or not any(
            isinstance(error, getattr(client.exceptions, m)) for m in w.MODELLED_ERRORS
        )
    parsed: Any = error.response  # botocore also fills in Type and QueryErrorCode, which its stubs leave out
    assert parsed["Error"]["Code"] == spec.query_code
    assert parsed["Error"]["Message"] == f"text of {name}"
    assert parsed["Error"]["Type"] == spec.fault
    assert parsed["Error"]["QueryErrorCode"] == spec.type_name.rsplit("#", 1)[1]
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == spec.http_status
    assert parsed["ResponseMetadata"]["RequestId"] == "rid"


def test_botocore_without_query_header_uses_type() -> None:
    status, headers, body = w.error_response("QueueDoesNotExist", "gone")
    del headers["x-amzn-query-error"]
    client = _client_answering(status, headers, body)
    with pytest.raises(client.exceptions.QueueDoesNotExist) as caught:
        client.get_queue_url(QueueName="q")
    assert caught.value.response["Error"]["Code"] == "QueueDoesNotExist"


# ---------------------------------------------------------------------------------------------------------------
# Message attribute validation
# ---------------------------------------------------------------------------------------------------------------


def _message(attributes: dict[str, w.TypedAttribute]) -> str:
    with pytest.raises(w.SqsError) as caught:
        w.validate_message_attributes(attributes)
    assert caught.value.code == "InvalidParameterValue"
    return caught.value.message


def test_valid_attributes_pass() -> None:
    w.validate_message_attributes(
        {
            "a": T("String", "x"),
            "b.c-d_e": T("Number", "-1.5e10"),
            "B": T("Binary", binary_value=b"\0"),
            "custom": T("String.json", "{}"),
            "n": T("Number.int", "0"),
            "x" * 256: T("String", "y"),
        }
    )
    w.validate_message_attributes({})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", "The request must contain non-empty message (user) attribute names."),
        ("x" * 257, "Message (user) attribute name must be shorter than 256 bytes."),
        (
            "AWS.x",
            (
                "You can't use message attribute names beginning with 'AWS.' or 'Amazon'. "
                "These strings are reserved for internal use."
            ),
        ),
        (
            "amazon.x",
            (
                "You can't use message attribute names beginning with 'AWS.' or 'Amazon'. "
                "These strings are reserved for internal use."
            ),
        ),
        (".x", "Message (user) attribute name must not begin with character '.'."),
        ("x.", "Message (user) attribute name must not end with character '.'."),
        ("a..b", "Message (user) attribute name must not have successive '.' characters."),
        (
            "a b",
            (
                "Message (user) attributes name can only contain upper and lower score characters, digits, "
                "periods, hyphens and underscores. "
            ),
        ),
    ],
)
def test_attribute_name_rules(name: str, expected: str) -> None:
    assert _message({name: T("String", "v")}) == expected


def test_names_are_case_sensitive_and_aws_prefix_needs_the_dot() -> None:
    w.validate_message_attributes({"AWSx": T("String", "v"), "awsx": T("String", "v"), "Amazonia": T("String", "v")})


def test_too_many_attributes() -> None:
    attributes = {f"a{i}": T("String", "v") for i in range(11)}
    assert _message(attributes) == "Number of message attributes [11] exceeds the allowed maximum [10]."
    del attributes["a10"]
    w.validate_message_attributes(attributes)


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        (T(""), "The message (user) attribute 'n' must contain a non-empty message attribute type."),
        (
            T("Str", "v"),
            (
                "The type of message (user) attribute 'n' is invalid. You must use only the following "
                "supported type prefixes: Binary, Number, String."
            ),
        ),
        (
            T("StringList", "v"),
            (
                "The type of message (user) attribute 'n' is invalid. You must use only the "
                "following supported type prefixes: Binary, Number, String."
            ),
        ),
        (T("String." + "x" * 250, "v"), "Message (user) attribute type must be shorter than 256 bytes."),
        (T("String", "v", b"b"), "Message (user) attribute 'n' must have a single value."),
        (T("String", ""), "Message (user) attribute 'n' must contain a non-empty value of type 'String'."),
        (T("Binary"), "Message (user) attribute 'n' must contain a non-empty value of type 'Binary'."),
        (T("String", binary_value=b"x"), "Message (user) attribute 'n' with type 'String' must use field 'String'."),
        (T("Binary", "x"), "Message (user) attribute 'n' with type 'Binary' must use field 'Binary'."),
        (T("Number", "abc"), "Can't cast the value of message (user) attribute 'n' to a number."),
        (T("String", "bad\u0000char"), w.INVALID_CHARACTERS_MESSAGE),
    ],
)
def test_attribute_type_and_value_rules(attribute: w.TypedAttribute, expected: str) -> None:
    assert _message({"n": attribute}) == expected


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("0", True),
        ("-0.000", True),
        ("12.5", True),
        ("+3", True),
        (".5", True),
        ("5.", True),
        ("1e126", True),
        ("1e127", False),
        ("1e-128", True),
        ("1e-129", False),
        ("9" * 38, True),
        ("9" * 39, False),
        ("1" + "0" * 50, True),
        ("1.2.3", False),
        ("", False),
        (" 1", False),
        ("NaN", False),
        ("Infinity", False),
        ("0x10", False),
        ("1_000", False),
    ],
)
def test_number_rules(text: str, valid: bool) -> None:
    assert w.is_valid_number(text) is valid


def test_system_attributes() -> None:
    w.validate_message_system_attributes({"AWSTraceHeader": T("String", "Root=1-5759e988-bd862e3fe1be46a994272793")})
    with pytest.raises(w.SqsError, match=re.escape("Message system attribute name 'Other' is invalid.")):
        w.validate_message_system_attributes({"Other": T("String", "x")})
    with pytest.raises(w.SqsError, match="Only String is supported"):
        w.validate_message_system_attributes({"AWSTraceHeader": T("Number", "1")})


def test_message_size_and_text() -> None:
    attributes = {"ab": T("String", "cd"), "b": T("Binary", binary_value=b"123")}
    assert w.message_size("é", attributes) == 2 + (2 + 6 + 2) + (1 + 6 + 3)
    assert w.message_too_long_message(1024) == (
        "One or more parameters are invalid. Reason: Message must be shorter than 1024 bytes."
    )
    assert w.is_valid_text("tab\tnew\nline\r ok \U0001f600")
    assert not w.is_valid_text("\x08")
    assert not w.is_valid_text("\ufffe")


# ---------------------------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------------------------


def _batch_error(ids: list[str]) -> w.SqsError:
    with pytest.raises(w.SqsError) as caught:
        w.validate_batch_entries(ids, "SendMessageBatchRequestEntry")
    return caught.value


def test_batch_rules() -> None:
    w.validate_batch_entries([str(i) for i in range(10)], "DeleteMessageBatchRequestEntry")
    empty = _batch_error([])
    assert (empty.code, empty.message) == (
        "EmptyBatchRequest",
        "There should be at least one SendMessageBatchRequestEntry in the request.",
    )
    many = _batch_error([str(i) for i in range(20)])
    assert (many.code, many.message) == (
        "TooManyEntriesInBatchRequest",
        "Maximum number of entries per request are 10. You have sent 20.",
    )
    for bad in ("", "invalid:id", "x" * 81, "é"):
        invalid = _batch_error(["ok", bad])
        assert (invalid.code, invalid.message) == ("InvalidBatchEntryId", w.INVALID_BATCH_ENTRY_ID_MESSAGE)
    repeated = _batch_error(["a", "b", "a"])
    assert (repeated.code, repeated.message) == ("BatchEntryIdsNotDistinct", "Id a repeated.")
    assert w.batch_too_long_message(1_048_577) == (
        "Batch requests cannot be longer than 1048576 bytes. You have sent 1048577 bytes."
    )


# ---------------------------------------------------------------------------------------------------------------
# Queue attributes
# ---------------------------------------------------------------------------------------------------------------


def test_queue_attribute_catalogue_covers_the_model_enum() -> None:
    enum = set(_service_model()["shapes"]["QueueAttributeName"]["enum"])
    assert enum - {"All"} == set(w.QUEUE_ATTRIBUTES)
    for spec in w.QUEUE_ATTRIBUTES.values():
        if spec.kind == "integer" and not spec.read_only:
            assert spec.minimum is not None
            assert spec.maximum is not None
            assert spec.default is not None
            assert spec.minimum <= int(spec.default) <= spec.maximum
    assert set(w.STANDARD_QUEUE_ALL) <= set(w.QUEUE_ATTRIBUTES)


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("DelaySeconds", 0, 900),
        ("MaximumMessageSize", 1024, 1_048_576),
        ("MessageRetentionPeriod", 60, 1_209_600),
        ("ReceiveMessageWaitTimeSeconds", 0, 20),
        ("VisibilityTimeout", 0, 43_200),
        ("KmsDataKeyReusePeriodSeconds", 60, 86_400),
    ],
)
def test_integer_attribute_ranges(name: str, low: int, high: int) -> None:
    assert w.validate_queue_attribute(name, str(low), fifo=False, creating=True) == str(low)
    assert w.validate_queue_attribute(name, str(high), fifo=False, creating=False) == str(high)
    for bad in (str(low - 1), str(high + 1), "", " 6", "6.0", "true"):
        with pytest.raises(w.SqsError) as caught:
            w.validate_queue_attribute(name, bad, fifo=False, creating=True)
        assert (caught.value.code, caught.value.message) == (
            "InvalidAttributeValue",
            f"Invalid value for the parameter {name}.",
        )


def test_unknown_read_only_and_fifo_only_attributes() -> None:
    for name, fifo in (
        ("Bogus", False),
        ("QueueArn", False),
        ("ApproximateNumberOfMessages", True),
        ("FifoQueue", False),
        ("ContentBasedDeduplication", False),
    ):
        with pytest.raises(w.SqsError) as caught:
            w.validate_queue_attribute(name, "true", fifo=fifo, creating=True)
        assert (caught.value.code, caught.value.message) == ("InvalidAttributeName", f"Unknown Attribute {name}.")
    with pytest.raises(
        w.SqsError, match=re.escape("You can specify the DeduplicationScope only when FifoQueue is set to true.")
    ):
        w.validate_queue_attribute("DeduplicationScope", "queue", fifo=False, creating=True)


def test_fifo_attributes() -> None:
    assert w.validate_queue_attribute("FifoQueue", "TRUE", fifo=True, creating=True) == "true"
    with pytest.raises(w.SqsError, match=re.escape("Unknown Attribute FifoQueue.")):
        w.validate_queue_attribute("FifoQueue", "false", fifo=True, creating=True)
    with pytest.raises(w.SqsError) as caught:
        w.validate_queue_attribute("FifoQueue", "true", fifo=True, creating=False)
    assert (
        caught.value.message == "Invalid value for the parameter FifoQueue. Reason: Modifying queue type is not "
        "supported."
    )
    assert w.validate_queue_attribute("ContentBasedDeduplication", "false", fifo=True, creating=False) == "false"
    assert w.validate_queue_attribute("DeduplicationScope", "messageGroup", fifo=True, creating=True) == "messageGroup"
    with pytest.raises(w.SqsError, match=re.escape("Invalid value for the parameter FifoThroughputLimit.")):
        w.validate_queue_attribute("FifoThroughputLimit", "perGroup", fifo=True, creating=True)
    with pytest.raises(w.SqsError, match=re.escape("Invalid value for the parameter SqsManagedSseEnabled.")):
        w.validate_queue_attribute("SqsManagedSseEnabled", "yes", fifo=False, creating=True)


def test_json_attributes() -> None:
    assert w.validate_queue_attribute("Policy", "", fifo=False, creating=False) == ""
    assert w.validate_queue_attribute("Policy", '{"Version":"2012-10-17"}', fifo=False, creating=True)
    with pytest.raises(w.SqsError, match=r"^Invalid value for the parameter Policy\.$"):
        w.validate_queue_attribute("Policy", "badjson", fifo=False, creating=True)
    with pytest.raises(w.SqsError, match=re.escape("Redrive policy is not a valid JSON map.")):
        w.validate_queue_attribute("RedrivePolicy", "[]", fifo=False, creating=True)
    with pytest.raises(w.SqsError, match="unsupported format"):
        w.validate_queue_attribute("RedriveAllowPolicy", "4", fifo=False, creating=True)
    assert w.validate_queue_attribute("KmsMasterKeyId", "alias/aws/sqs", fifo=False, creating=True)


ARN = "arn:aws:sqs:us-east-1:123456789012:MyDLQ"


def _redrive_error(raw: str) -> w.SqsError:
    with pytest.raises(w.SqsError) as caught:
        w.validate_redrive_policy(raw)
    return caught.value


def test_redrive_policy() -> None:
    assert w.validate_redrive_policy(json.dumps({"deadLetterTargetArn": ARN, "maxReceiveCount": 5})) == (ARN, 5)
    assert w.validate_redrive_policy(json.dumps({"deadLetterTargetArn": ARN, "maxReceiveCount": "1000"})) == (ARN, 1000)
    assert _redrive_error(" ").message == (
        "Invalid value for the parameter RedrivePolicy. Reason: Redrive policy is not a valid JSON map."
    )
    assert _redrive_error("{}").message == (
        "Value {} for parameter RedrivePolicy is invalid. Reason: Redrive policy does not contain mandatory "
        "attribute: maxReceiveCount."
    )
    raw = '{"maxReceiveCount":5}'
    assert _redrive_error(raw).message == (
        f"Value {raw} for parameter RedrivePolicy is invalid. Reason: Redrive policy does not contain mandatory "
        "attribute: deadLetterTargetArn."
    )
    raw = json.dumps({"deadLetterTargetArn": ARN, "maxReceiveCount": 4023}, separators=(",", ":"))
    error = _redrive_error(raw)
    assert (error.code, error.message) == (
        "InvalidParameterValue",
        (
            f"Value {raw} for parameter RedrivePolicy is invalid. Reason: Invalid value for maxReceiveCount: 4023, "
            "valid values are from 1 to 1000 both inclusive."
        ),
    )
    raw = '{"deadLetterTargetArn": "dummy", "maxReceiveCount": 42}'
    assert _redrive_error(raw).message == (  # AWS-recorded
        'Value {"deadLetterTargetArn": "dummy", "maxReceiveCount": 42} for parameter RedrivePolicy is invalid. '
        "Reason: Invalid value for deadLetterTargetArn."
    )
    raw = json.dumps({"deadLetterTargetArn": "arn:aws:sns:us-east-1:123456789012:T", "maxReceiveCount": 5})
    assert _redrive_error(raw).message.endswith("Reason: Only SQS queues are valid resources for deadLetterTargetArn.")
    raw = json.dumps({"deadLetterTargetArn": ARN, "maxReceiveCount": 5, "x": 1})
    assert _redrive_error(raw).message.endswith(
        "Reason: Only following attributes are supported: [maxReceiveCount, deadLetterTargetArn]."
    )


def test_redrive_allow_policy() -> None:
    assert w.validate_redrive_allow_policy('{"redrivePermission":"allowAll"}') == ("allowAll", ())
    assert w.validate_redrive_allow_policy(json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [ARN]})) == (
        "byQueue",
        (ARN,),
    )
    for raw in (
        "badjson",
        "[]",
        "{}",
        '{"redrivePermission":"dummy"}',
        '{"redrivePermission":"allowAll","x":1}',
        '{"redrivePermission":"byQueue","sourceQueueArns":"arn"}',
    ):
        with pytest.raises(w.SqsError) as caught:
            w.validate_redrive_allow_policy(raw)
        assert (
            caught.value.message == f"Invalid value for the parameter RedriveAllowPolicy. Reason: "
            f"{w.REDRIVE_ALLOW_UNSUPPORTED}"
        )
    raw = '{"redrivePermission":"byQueue"}'
    with pytest.raises(w.SqsError, match="you must also specify one or more sourceQueueArns values"):
        w.validate_redrive_allow_policy(raw)
    raw = json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [ARN] * 11})
    with pytest.raises(w.SqsError, match=re.escape("The maximum number of source queue ARNs you can specify is 10.")):
        w.validate_redrive_allow_policy(raw)
    raw = json.dumps({"redrivePermission": "denyAll", "sourceQueueArns": [ARN]})
    with pytest.raises(w.SqsError, match="you must set redrivePermission to byQueue"):
        w.validate_redrive_allow_policy(raw)


# ---------------------------------------------------------------------------------------------------------------
# Names, tokens, SigV4
# ---------------------------------------------------------------------------------------------------------------


def test_queue_names() -> None:
    assert w.is_valid_queue_name("a" * 80, fifo=False)
    assert not w.is_valid_queue_name("a" * 81, fifo=False)
    assert not w.is_valid_queue_name("in.fo", fifo=False)
    assert not w.is_valid_queue_name("example.fifo", fifo=False)
    assert w.is_valid_queue_name("a" * 75 + ".fifo", fifo=True)
    assert not w.is_valid_queue_name("a" * 76 + ".fifo", fifo=True)
    assert not w.is_valid_queue_name("example", fifo=True)
    assert not w.is_valid_queue_name("", fifo=False)


def test_fifo_tokens() -> None:
    assert w.is_valid_fifo_token("group-1!\"#$%&'()*+,./:;<=>?@[\\]^_`{|}~")
    assert w.is_valid_fifo_token("x" * 128)
    assert not w.is_valid_fifo_token("x" * 129)
    assert not w.is_valid_fifo_token("")
    assert not w.is_valid_fifo_token("with space")
    assert w.fifo_token_invalid_message("a b", "MessageGroupId") == (
        "Value a b for parameter MessageGroupId is invalid. Reason: MessageGroupId can only include alphanumeric "
        "and punctuation characters. 1 to 128 in length."
    )


def test_parse_credential_scope_of_a_botocore_signature() -> None:
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:9324/",
        data=b"{}",
        headers={"X-Amz-Target": "AmazonSQS.ListQueues", "Content-Type": "application/x-amz-json-1.0"},
    )
    SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "sqs", "ap-southeast-2").add_auth(request)
    scope = w.parse_credential_scope(request.headers["Authorization"])
    assert scope is not None
    assert (scope.access_key_id, scope.region, scope.service) == ("AKIDEXAMPLE", "ap-southeast-2", "sqs")
    assert len(scope.date) == 8
    assert scope.date.isdigit()
    assert "host" in scope.signed_headers
    assert "x-amz-date" in scope.signed_headers
    assert len(scope.signature) == 64


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Basic abc",
        "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/sqs, SignedHeaders=host, Signature=ab",
        "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/sqs/aws4_request, Signature=ab",
    ],
)
def test_parse_credential_scope_rejects(header: str) -> None:
    assert w.parse_credential_scope(header) is None


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("20270115T080000Z", 1_800_000_000),
        ("20240229T235959Z", 1_709_251_199),  # a leap day
        ("00010101T000000Z", -62_135_596_800),
    ],
)
def test_parse_amz_date(text: str, epoch: int) -> None:
    assert w.parse_amz_date(text) == epoch


@pytest.mark.parametrize(
    "text",
    [
        *("", "2027-01-15T08:00:00Z", "20270115T080000", "20270115t080000Z", "20230229T000000Z"),
        *("00000101T000000Z", "20271301T000000Z", "20270100T000000Z", "20270115T240000Z", "20270115T086000Z"),
        *("20270115T080060Z", "\uff12\uff10\uff12\uff170115T080000Z", "20270115T080000Z\n"),  # fullwidth digits
    ],
)
def test_parse_amz_date_refuses_what_is_no_time(text: str) -> None:
    assert w.parse_amz_date(text) is None


def test_payload_hash_is_the_bodys_own() -> None:
    body = b'{"QueueUrl": "x"}'
    digest = hashlib.sha256(body).hexdigest()
    assert w.payload_hash(None, body, allow_unsigned=False) == digest
    assert w.payload_hash(digest, body, allow_unsigned=False) == digest
    with pytest.raises(w.SqsError, match="does not match what was computed"):
        w.payload_hash(hashlib.sha256(b"another body").hexdigest(), body, allow_unsigned=True)
    with pytest.raises(w.SqsError, match="UNSIGNED-PAYLOAD is not accepted"):
        w.payload_hash("UNSIGNED-PAYLOAD", body, allow_unsigned=False)
    assert w.payload_hash("UNSIGNED-PAYLOAD", body, allow_unsigned=True) == "UNSIGNED-PAYLOAD"


def test_check_scope_lists_every_scope_problem_as_aws_does() -> None:
    scope = w.CredentialScope("AK", "20270114", "us-east-1", "s3", ("host", "x-amz-date"), "00")
    with pytest.raises(w.SqsError) as caught:
        w.check_scope(scope, "20270115T080000Z")
    assert caught.value.code == "SignatureDoesNotMatch"
    assert caught.value.message == (
        "Credential should be scoped to correct service: 'sqs'. Date in Credential scope does not match YYYYMMDD"
        " from ISO-8601 version of date from HTTP: '20270114' != '20270115', from '20270115T080000Z'."
    )


def test_access_denied_names_the_iam_action_in_lower_case() -> None:
    assert w.access_denied_message("arn:aws:iam::123456789012:user/u", "SendMessageBatch", "arn:q") == (
        "User: arn:aws:iam::123456789012:user/u is not authorized to perform: sqs:sendmessage on resource: arn:q"
        " because no identity-based policy allows the sqs:sendmessage action"
    )


def test_the_errors_of_bodies_too_large_or_too_slow_and_of_throttling() -> None:
    assert (w.ERRORS["RequestEntityTooLarge"].http_status, w.ERRORS["RequestTimeout"].http_status) == (413, 408)
    # botocore's standard retry mode retries these codes (its legacy mode: RequestThrottled with 403, for SQS)
    for code, checker in (
        ("RequestTimeout", TransientRetryableChecker()),
        ("RequestThrottled", ThrottledRetryableChecker()),
    ):
        parsed = {"Error": {"Code": w.ERRORS[code].query_code}}
        assert checker.is_retryable(RetryContext(attempt_number=1, parsed_response=parsed))
    assert w.SqsError("RequestThrottled", "slow down", 2.5).retry_after == 2.5
