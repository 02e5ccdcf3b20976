"""Wire-level facts of the Amazon SQS AWS JSON 1.0 protocol, for WonderQ's SQS front end.

Pure standard library, no I/O. It holds:

* ``md5_of_body`` / ``md5_of_message_attributes`` / ``md5_of_message_system_attributes``: the digests SQS
  returns as ``MD5OfMessageBody``/``MD5OfBody``, ``MD5OfMessageAttributes`` and ``MD5OfMessageSystemAttributes``.
  The AWS Java SDK, aws-sdk-go and the JS v3 SDK recompute them and reject a response that differs.
* ``TypedAttribute`` and ``validate_message_attributes`` / ``validate_message_system_attributes``: SQS's rules
  for message attributes, raising ``SqsError`` with the message texts real SQS returns.
* ``ERRORS``: every error shape of botocore's SQS model plus the common non-modelled errors, each with its HTTP
  status, its JSON ``__type`` and the legacy Query code that goes into the ``x-amzn-query-error`` header.
  ``error_response`` renders one as (status, headers, body).
* ``QUEUE_ATTRIBUTES`` and ``validate_queue_attribute``/``validate_redrive_policy``/``validate_redrive_allow_policy``.
* Batch rules (``validate_batch_entries``).
* SigV4 as AWS checks it: ``parse_credential_scope``, ``parse_amz_date``, ``check_scope`` (the signed headers
  and the credential scope), ``payload_hash`` (the body's SHA-256, never the client's word for it) and
  ``verify_signature``.

Where a message text comes from, and how sure we are of it, is written next to it: "AWS-recorded" means a
response recorded from real SQS (LocalStack's snapshot tests, which are recorded against AWS); "emulator" means
an emulator that copies SQS texts (Inqnuam/local-aws-sqs, moto, LocalStack code) without a recording we saw.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import json
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final, Literal
from urllib.parse import quote

# --------------------------------------------------------------------------------------------------------------
# Limits (units in the names or comments)
# --------------------------------------------------------------------------------------------------------------

MAX_MESSAGE_ATTRIBUTES: Final = 10  # attributes per message (user attributes)
MAX_ATTRIBUTE_NAME_LENGTH: Final = 256  # characters
MAX_ATTRIBUTE_TYPE_LENGTH: Final = 256  # characters, including any ".custom" suffix
MAX_BATCH_ENTRIES: Final = 10  # entries per *Batch request
MAX_BATCH_ENTRY_ID_LENGTH: Final = 80  # characters
MAX_MESSAGE_SIZE_BYTES: Final = 1_048_576  # 1 MiB: SQS raised the maximum (and default) from 256 KiB in 2025
MIN_MESSAGE_SIZE_BYTES: Final = 1_024  # lowest MaximumMessageSize a queue may set
NUMBER_MAX_DIGITS: Final = 38  # significant digits of a Number attribute
NUMBER_MIN_EXPONENT: Final = -128  # |value| >= 10**-128 unless zero
NUMBER_MAX_EXPONENT: Final = 126  # |value| <= 10**126

JSON_CONTENT_TYPE: Final = "application/x-amz-json-1.0"
TARGET_PREFIX: Final = "AmazonSQS"  # X-Amz-Target: AmazonSQS.<Action>
MODEL_NAMESPACE: Final = "com.amazonaws.sqs"  # __type namespace of modelled errors
CORAL_NAMESPACE: Final = "com.amazon.coral.service"  # __type namespace of framework (non-modelled) errors


# --------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """How one SQS error looks on the wire."""

    name: str  # key in ERRORS; the modelled shape name for modelled errors
    http_status: int
    query_code: str  # legacy Query error code: x-amzn-query-error "<query_code>;<Sender|Receiver>"
    type_name: str  # the JSON body's "__type" value
    sender_fault: bool
    modelled: bool  # an error shape of botocore's SQS model
    source: str  # where the facts come from

    @property
    def fault(self) -> str:
        """The second half of x-amzn-query-error."""
        return "Sender" if self.sender_fault else "Receiver"

    @property
    def query_error_header(self) -> str:
        return f"{self.query_code};{self.fault}"


_SMITHY = "Smithy model awsQueryError trait (aws-sdk-js-v3 schema; aws-sdk-go v1 api-2.json for the older ones)"
_NO_TRAIT = "Smithy model: no awsQueryError trait, so the query code is the shape name and status the 400 default"


def _modelled(name: str, status: int, query_code: str, source: str = _SMITHY) -> ErrorSpec:
    return ErrorSpec(name, status, query_code, f"{MODEL_NAMESPACE}#{name}", True, True, source)


def _common(
    name: str, status: int, query_code: str, type_suffix: str, source: str, *, sender: bool = True
) -> ErrorSpec:
    return ErrorSpec(name, status, query_code, f"{CORAL_NAMESPACE}#{type_suffix}", sender, False, source)


# Every error shape of botocore's data/sqs/2012-11-05/service-2.json. botocore >= 1.3x no longer carries the
# "error": {"code": ...} trait for SQS (see NOTES.md), so the query codes come from the Smithy model.
MODELLED_ERRORS: Final[dict[str, ErrorSpec]] = {
    e.name: e
    for e in (
        _modelled("BatchEntryIdsNotDistinct", 400, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"),
        _modelled("BatchRequestTooLong", 400, "AWS.SimpleQueueService.BatchRequestTooLong"),
        _modelled("EmptyBatchRequest", 400, "AWS.SimpleQueueService.EmptyBatchRequest"),
        _modelled("InvalidAddress", 404, "InvalidAddress"),
        _modelled("InvalidAttributeName", 400, "InvalidAttributeName", _NO_TRAIT),
        _modelled("InvalidAttributeValue", 400, "InvalidAttributeValue", _NO_TRAIT),
        _modelled("InvalidBatchEntryId", 400, "AWS.SimpleQueueService.InvalidBatchEntryId"),
        _modelled("InvalidIdFormat", 400, "InvalidIdFormat", _NO_TRAIT),  # deprecated: now ReceiptHandleIsInvalid
        _modelled("InvalidMessageContents", 400, "InvalidMessageContents", _NO_TRAIT),
        _modelled("InvalidSecurity", 403, "InvalidSecurity"),
        _modelled("KmsAccessDenied", 400, "KMS.AccessDeniedException"),
        _modelled("KmsDisabled", 400, "KMS.DisabledException"),
        _modelled("KmsInvalidKeyUsage", 400, "KMS.InvalidKeyUsageException"),
        _modelled("KmsInvalidState", 400, "KMS.InvalidStateException"),
        _modelled("KmsNotFound", 400, "KMS.NotFoundException"),
        _modelled("KmsOptInRequired", 403, "KMS.OptInRequired"),
        _modelled("KmsThrottled", 400, "KMS.ThrottlingException"),
        _modelled("MessageNotInflight", 400, "AWS.SimpleQueueService.MessageNotInflight"),
        _modelled("OverLimit", 403, "OverLimit"),
        _modelled("PurgeQueueInProgress", 403, "AWS.SimpleQueueService.PurgeQueueInProgress"),
        _modelled("QueueDeletedRecently", 400, "AWS.SimpleQueueService.QueueDeletedRecently"),
        _modelled("QueueDoesNotExist", 400, "AWS.SimpleQueueService.NonExistentQueue"),
        _modelled("QueueNameExists", 400, "QueueAlreadyExists"),
        _modelled("ReceiptHandleIsInvalid", 404, "ReceiptHandleIsInvalid"),
        _modelled("RequestThrottled", 403, "RequestThrottled"),
        _modelled("ResourceNotFoundException", 404, "ResourceNotFoundException"),
        _modelled("TooManyEntriesInBatchRequest", 400, "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"),
        _modelled("UnsupportedOperation", 400, "AWS.SimpleQueueService.UnsupportedOperation"),
    )
}

_REC = "AWS-recorded (LocalStack snapshot: Error.Code and QueryErrorCode = __type suffix)"
_AUTH = "query-era AWS responses in public issues; JSON __type follows the coral convention (inferred)"
_GUESS = "AWS common-errors list; __type inferred from the coral convention (unverified)"

# Errors every AWS service can return, not in the SQS model. botocore maps them to plain ClientError.
COMMON_ERRORS: Final[dict[str, ErrorSpec]] = {
    e.name: e
    for e in (
        _common("InvalidParameterValue", 400, "InvalidParameterValue", "InvalidParameterValueException", _REC),
        _common("MissingParameter", 400, "MissingParameter", "MissingRequiredParameterException", _REC),
        _common(
            "InvalidParameterCombination", 400, "InvalidParameterCombination", "InvalidParameterCombination", _GUESS
        ),
        _common("InvalidAction", 400, "InvalidAction", "UnknownOperationException", _GUESS),
        _common(
            "MalformedInput",
            400,
            "MalformedInput",
            "SerializationException",
            "emulator (Inqnuam/local-aws-sqs): body JSON of the wrong type",
        ),
        _common("AccessDenied", 403, "AccessDenied", "AccessDeniedException", _AUTH),
        _common("InvalidClientTokenId", 403, "InvalidClientTokenId", "UnrecognizedClientException", _AUTH),
        _common("SignatureDoesNotMatch", 403, "SignatureDoesNotMatch", "InvalidSignatureException", _AUTH),
        _common(
            "MissingAuthenticationToken",
            403,
            "MissingAuthenticationToken",
            "MissingAuthenticationTokenException",
            _GUESS,
        ),
        _common("IncompleteSignature", 400, "IncompleteSignature", "IncompleteSignatureException", _GUESS),
        _common("RequestExpired", 400, "RequestExpired", "RequestExpired", _GUESS),
        _common("OptInRequired", 403, "OptInRequired", "OptInRequired", _GUESS),
        _common("ThrottlingException", 400, "ThrottlingException", "ThrottlingException", _GUESS),
        _common(
            "RequestEntityTooLarge",
            413,
            "RequestEntityTooLarge",
            "RequestEntityTooLargeException",
            "HTTP 413, which AWS front ends send for a body over their limit; the codes are WonderQ's (unverified)",
        ),
        _common(
            "RequestTimeout",
            408,
            "RequestTimeout",
            "RequestTimeoutException",
            "botocore's transient error codes (RequestTimeout, RequestTimeoutException: retried); status 408 is"
            " WonderQ's choice (unverified)",
        ),
        _common("InternalFailure", 500, "InternalFailure", "InternalFailure", _GUESS, sender=False),
        _common("ServiceUnavailable", 503, "ServiceUnavailable", "ServiceUnavailableException", _GUESS, sender=False),
    )
}

ERRORS: Final[dict[str, ErrorSpec]] = {**MODELLED_ERRORS, **COMMON_ERRORS}

# Default message texts where SQS has a fixed one.
QUEUE_DOES_NOT_EXIST_MESSAGE: Final = "The specified queue does not exist."  # AWS-recorded (JSON protocol)
QUEUE_DOES_NOT_EXIST_QUERY_MESSAGE: Final = "The specified queue does not exist for this wsdl version."  # Query
INVALID_CLIENT_TOKEN_MESSAGE: Final = "The security token included in the request is invalid."
SIGNATURE_MISMATCH_MESSAGE: Final = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)
INVALID_BATCH_ENTRY_ID_MESSAGE: Final = (  # AWS-recorded
    "A batch entry id can only contain alphanumeric characters, hyphens and underscores. "
    "It can be at most 80 letters long."
)
INVALID_CHARACTERS_MESSAGE: Final = (  # emulator (LocalStack); same wording as the SendMessage docs
    "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | "
    "#xE000 to #xFFFD | #x10000 to #x10FFFF"
)
SSE_CONFLICT_MESSAGE: Final = (  # AWS-recorded, error InvalidAttributeName
    "You can use one type of server-side encryption (SSE) at one time. You can either enable KMS SSE or SQS SSE."
)


def access_denied_message(user: str, action: str, resource: str) -> str:
    """AccessDenied text of a missing permission, in the form SQS's JSON protocol sends (quoted from AWS in
    aws/serverless-application-model#3633): the IAM action in lower case, a batch as its single action. (The
    Query protocol's older text was "Access to the resource https://sqs.<region>.amazonaws.com/ is denied.")"""
    iam = f"sqs:{action.removesuffix('Batch').lower()}"
    return (
        f"User: {user} is not authorized to perform: {iam} on resource: {resource} because no identity-based"
        f" policy allows the {iam} action"
    )


def invalid_address_message(url: str) -> str:
    """InvalidAddress text for a QueueUrl that is not a URL (emulators: Eucalyptus, LocalStack)."""
    return f"The address {url[:256]} is not valid for this endpoint."


def invalid_region_message(region: str) -> str:
    """SignatureDoesNotMatch text for a credential scope's region that is no region (AWS-recorded form)."""
    return f"Credential should be scoped to a valid region, not '{region[:64]}'."


class SqsError(Exception):
    """An SQS error: ``code`` is a key of ``ERRORS``; ``retry_after`` (seconds), when set, goes out as the
    ``Retry-After`` header."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        if code not in ERRORS:
            raise KeyError(f"unknown SQS error {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def spec(self) -> ErrorSpec:
        return ERRORS[self.code]

    def __repr__(self) -> str:
        return f"SqsError({self.code!r}, {self.message!r})"


def error_response(code: str, message: str, request_id: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """Render an error as SQS does over JSON 1.0: (HTTP status, headers, body).

    The body carries ``__type`` (botocore picks the modelled exception class from it) and ``message``; the
    ``x-amzn-query-error`` header carries the legacy Query code, which botocore reports as ``Error.Code``.
    """
    spec = ERRORS[code]
    headers = {
        "Content-Type": JSON_CONTENT_TYPE,
        "x-amzn-query-error": spec.query_error_header,
    }
    if request_id is not None:
        headers["x-amzn-RequestId"] = request_id
    body = json.dumps({"__type": spec.type_name, "message": message}, separators=(",", ":")).encode()
    return spec.http_status, headers, body


# --------------------------------------------------------------------------------------------------------------
# MD5 digests
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TypedAttribute:
    """One message (or message system) attribute: DataType plus exactly one of StringValue/BinaryValue."""

    data_type: str
    string_value: str | None = None
    binary_value: bytes | None = None


STRING_TRANSPORT: Final = 1  # transport byte for String and Number (StringValue)
BINARY_TRANSPORT: Final = 2  # transport byte for Binary (BinaryValue)


def md5_of_body(body: str) -> str:
    """Hex MD5 of the UTF-8 body (MD5OfMessageBody on send, MD5OfBody on receive)."""
    return hashlib.md5(body.encode("utf-8"), usedforsecurity=False).hexdigest()


def _length_prefixed(data: bytes) -> bytes:
    # 4-byte big-endian unsigned length, then the bytes.
    return struct.pack(">I", len(data)) + data


def md5_of_message_attributes(attributes: Mapping[str, TypedAttribute]) -> str:
    """MD5OfMessageAttributes exactly as SQS and the AWS SDKs compute it.

    For each attribute, names sorted (ordinal order; names are ASCII so code point and UTF-16 order agree):
    length-prefixed UTF-8 name, length-prefixed UTF-8 DataType, one transport byte (1 = StringValue,
    2 = BinaryValue), length-prefixed value bytes. Like the Java and Go SDKs, the transport is chosen by which
    value is set, StringValue first; an attribute with neither contributes name and type only.
    SQS omits the field when the message has no attributes; this function returns the digest of no bytes then.
    """
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        attribute = attributes[name]
        digest.update(_length_prefixed(name.encode("utf-8")))
        digest.update(_length_prefixed(attribute.data_type.encode("utf-8")))
        if attribute.string_value is not None:
            digest.update(bytes([STRING_TRANSPORT]))
            digest.update(_length_prefixed(attribute.string_value.encode("utf-8")))
        elif attribute.binary_value is not None:
            digest.update(bytes([BINARY_TRANSPORT]))
            digest.update(_length_prefixed(attribute.binary_value))
    return digest.hexdigest()


def md5_of_message_system_attributes(attributes: Mapping[str, TypedAttribute]) -> str:
    """MD5OfMessageSystemAttributes (today only AWSTraceHeader): the same algorithm as user attributes."""
    return md5_of_message_attributes(attributes)


# --------------------------------------------------------------------------------------------------------------
# Message attribute validation
# --------------------------------------------------------------------------------------------------------------

_ATTRIBUTE_NAME_CHARS = re.compile(r"[A-Za-z0-9_.\-]+")
_BASE_TYPES: Final = ("String", "Number", "Binary")
# SQS's allowed characters for bodies and string values (the XML 1.0 Char production).
_VALID_TEXT = re.compile("[\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
SYSTEM_ATTRIBUTE_NAMES: Final = frozenset({"AWSTraceHeader"})

AttributeKind = Literal["(user)", "system"]


def base_data_type(data_type: str) -> str | None:
    """``"Number.float"`` -> ``"Number"``; None when the type has no valid prefix."""
    base, _, _custom = data_type.partition(".")
    return base if base in _BASE_TYPES else None


def is_valid_text(text: str) -> bool:
    """True when every character is one SQS accepts in a body or string attribute."""
    return _VALID_TEXT.fullmatch(text) is not None


def is_valid_number(text: str) -> bool:
    """SQS Number: up to 38 significant digits, 10**-128 <= |x| <= 10**126 or zero (SQS developer guide)."""
    if _NUMBER.fullmatch(text) is None:
        return False
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex admits only parseable text
        return False
    if value.is_zero():
        return True
    # Significant digits with leading/trailing zeros trimmed, as SQS does. (Decimal.normalize() would round
    # to the context's 28 digits, so strip by hand.)
    digits = "".join(map(str, value.as_tuple().digits)).strip("0")
    if len(digits) > NUMBER_MAX_DIGITS:
        return False
    magnitude = abs(value)
    return Decimal(10) ** NUMBER_MIN_EXPONENT <= magnitude <= Decimal(10) ** NUMBER_MAX_EXPONENT


def _invalid(message: str) -> SqsError:
    return SqsError("InvalidParameterValue", message)


def validate_attribute_name(name: str, kind: AttributeKind = "(user)") -> None:
    """SQS's rules for a message attribute name; raises InvalidParameterValue."""
    if not name:
        raise _invalid(f"The request must contain non-empty message {kind} attribute names.")  # emulator
    if len(name) > MAX_ATTRIBUTE_NAME_LENGTH:
        raise _invalid(f"Message {kind} attribute name must be shorter than 256 bytes.")  # emulator
    lowered = name.lower()
    if lowered.startswith(("aws.", "amazon.")):
        raise _invalid(  # emulator (Inqnuam); LocalStack has a longer variant, see NOTES.md
            "You can't use message attribute names beginning with 'AWS.' or 'Amazon'. "
            "These strings are reserved for internal use."
        )
    if name.startswith("."):
        raise _invalid(f"Message {kind} attribute name must not begin with character '.'.")  # emulator
    if name.endswith("."):
        raise _invalid(f"Message {kind} attribute name must not end with character '.'.")  # emulator
    if ".." in name:
        raise _invalid(f"Message {kind} attribute name must not have successive '.' characters.")  # emulator
    if _ATTRIBUTE_NAME_CHARS.fullmatch(name) is None:
        raise _invalid(  # emulator (LocalStack wording, sic); no AWS recording found
            f"Message {kind} attributes name can only contain upper and lower score characters, digits, "
            "periods, hyphens and underscores. "
        )


def validate_attribute(name: str, attribute: TypedAttribute, kind: AttributeKind = "(user)") -> None:
    """Validate one attribute's name, DataType and value; raises InvalidParameterValue."""
    validate_attribute_name(name, kind)
    data_type = attribute.data_type
    if not data_type:
        raise _invalid(f"The message {kind} attribute '{name}' must contain a non-empty message attribute type.")
    base = base_data_type(data_type)
    if base is None:
        raise _invalid(
            f"The type of message {kind} attribute '{name}' is invalid. "
            "You must use only the following supported type prefixes: Binary, Number, String."
        )
    if len(data_type) > MAX_ATTRIBUTE_TYPE_LENGTH:
        raise _invalid(f"Message {kind} attribute type must be shorter than 256 bytes.")
    string_value, binary_value = attribute.string_value, attribute.binary_value
    if string_value is not None and binary_value is not None:
        raise _invalid(f"Message {kind} attribute '{name}' must have a single value.")
    if not string_value and not binary_value:
        # AWS-recorded for an empty String value.
        raise _invalid(f"Message {kind} attribute '{name}' must contain a non-empty value of type '{data_type}'.")
    if base in ("String", "Number") and string_value is None:
        raise _invalid(f"Message {kind} attribute '{name}' with type '{base}' must use field 'String'.")
    if base == "Binary" and binary_value is None:
        raise _invalid(f"Message {kind} attribute '{name}' with type 'Binary' must use field 'Binary'.")
    if string_value is not None:
        if base == "Number" and not is_valid_number(string_value):
            raise _invalid(f"Can't cast the value of message {kind} attribute '{name}' to a number.")
        if not is_valid_text(string_value):
            raise _invalid(INVALID_CHARACTERS_MESSAGE)


def validate_message_attributes(attributes: Mapping[str, TypedAttribute]) -> None:
    """Validate a SendMessage MessageAttributes map (at most 10 attributes)."""
    if len(attributes) > MAX_MESSAGE_ATTRIBUTES:
        raise _invalid(  # emulator (Inqnuam)
            f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum [{MAX_MESSAGE_ATTRIBUTES}]."
        )
    for name, attribute in attributes.items():
        validate_attribute(name, attribute)


def validate_message_system_attributes(attributes: Mapping[str, TypedAttribute]) -> None:
    """Validate MessageSystemAttributes: only AWSTraceHeader, of type String."""
    for name, attribute in attributes.items():
        if name not in SYSTEM_ATTRIBUTE_NAMES:
            raise _invalid(f"Message system attribute name '{name}' is invalid.")  # emulator (Inqnuam)
        validate_attribute(name, attribute, "system")
        if attribute.data_type != "String":  # docs: "Its type must be String"; message text unverified
            raise _invalid(f"The type of message system attribute '{name}' is invalid. Only String is supported.")


def message_size(body: str, attributes: Mapping[str, TypedAttribute]) -> int:
    """Bytes counted against MaximumMessageSize: body plus every attribute's name, type and value.

    System attributes do not count (SendMessage docs).
    """
    size = len(body.encode("utf-8"))
    for name, attribute in attributes.items():
        size += len(name.encode("utf-8")) + len(attribute.data_type.encode("utf-8"))
        if attribute.string_value is not None:
            size += len(attribute.string_value.encode("utf-8"))
        if attribute.binary_value is not None:
            size += len(attribute.binary_value)
    return size


def message_too_long_message(maximum_message_size: int) -> str:
    """InvalidParameterValue text for a message over the queue's MaximumMessageSize (AWS-recorded)."""
    return f"One or more parameters are invalid. Reason: Message must be shorter than {maximum_message_size} bytes."


# --------------------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------------------

BatchEntryName = Literal[
    "SendMessageBatchRequestEntry", "DeleteMessageBatchRequestEntry", "ChangeMessageVisibilityBatchRequestEntry"
]
_BATCH_ENTRY_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")


def validate_batch_entries(ids: Sequence[str], entry_name: BatchEntryName) -> None:
    """The whole-request checks of every *Batch action, in SQS's order: empty, too many, bad id, repeated id."""
    if not ids:
        # emulator (moto/Inqnuam); the entry name is the request entry shape's name
        raise SqsError("EmptyBatchRequest", f"There should be at least one {entry_name} in the request.")
    if len(ids) > MAX_BATCH_ENTRIES:
        raise SqsError(  # AWS-recorded
            "TooManyEntriesInBatchRequest",
            f"Maximum number of entries per request are {MAX_BATCH_ENTRIES}. You have sent {len(ids)}.",
        )
    seen: set[str] = set()
    for entry_id in ids:
        if _BATCH_ENTRY_ID.fullmatch(entry_id) is None:
            raise SqsError("InvalidBatchEntryId", INVALID_BATCH_ENTRY_ID_MESSAGE)
        if entry_id in seen:
            raise SqsError("BatchEntryIdsNotDistinct", f"Id {entry_id} repeated.")  # emulator (moto, Inqnuam)
        seen.add(entry_id)


def batch_too_long_message(sent_bytes: int, limit: int = MAX_MESSAGE_SIZE_BYTES) -> str:
    """BatchRequestTooLong text (AWS-recorded, then with 262144 as the limit)."""
    return f"Batch requests cannot be longer than {limit} bytes. You have sent {sent_bytes} bytes."


# --------------------------------------------------------------------------------------------------------------
# Queue attributes
# --------------------------------------------------------------------------------------------------------------

AttributeValueKind = Literal["integer", "boolean", "enum", "json", "string", "arn", "timestamp"]


@dataclass(frozen=True, slots=True)
class QueueAttributeSpec:
    """One queue attribute: its value kind, range or allowed values, default and who may set it."""

    name: str
    kind: AttributeValueKind
    minimum: int | None = None
    maximum: int | None = None
    default: str | None = None  # as GetQueueAttributes returns it; None: absent unless set
    read_only: bool = False  # computed by SQS; CreateQueue/SetQueueAttributes reject it
    fifo_only: bool = False  # accepted only on FIFO queues
    create_only: bool = False  # may be given to CreateQueue but not changed by SetQueueAttributes
    allowed: tuple[str, ...] = ()
    unit: str = ""


QUEUE_ATTRIBUTES: Final[dict[str, QueueAttributeSpec]] = {
    a.name: a
    for a in (
        QueueAttributeSpec("DelaySeconds", "integer", 0, 900, "0", unit="seconds"),
        QueueAttributeSpec(
            "MaximumMessageSize",
            "integer",
            MIN_MESSAGE_SIZE_BYTES,
            MAX_MESSAGE_SIZE_BYTES,
            str(MAX_MESSAGE_SIZE_BYTES),
            unit="bytes",
        ),
        QueueAttributeSpec("MessageRetentionPeriod", "integer", 60, 1_209_600, "345600", unit="seconds"),
        QueueAttributeSpec("ReceiveMessageWaitTimeSeconds", "integer", 0, 20, "0", unit="seconds"),
        QueueAttributeSpec("VisibilityTimeout", "integer", 0, 43_200, "30", unit="seconds"),
        QueueAttributeSpec("RedrivePolicy", "json"),
        QueueAttributeSpec("RedriveAllowPolicy", "json"),
        QueueAttributeSpec("Policy", "json"),
        QueueAttributeSpec(
            "FifoQueue", "boolean", default="true", fifo_only=True, create_only=True, allowed=("true", "false")
        ),
        QueueAttributeSpec(
            "ContentBasedDeduplication", "boolean", default="false", fifo_only=True, allowed=("true", "false")
        ),
        QueueAttributeSpec(
            "DeduplicationScope", "enum", default="queue", fifo_only=True, allowed=("messageGroup", "queue")
        ),
        QueueAttributeSpec(
            "FifoThroughputLimit", "enum", default="perQueue", fifo_only=True, allowed=("perQueue", "perMessageGroupId")
        ),
        QueueAttributeSpec("KmsMasterKeyId", "string"),
        QueueAttributeSpec("KmsDataKeyReusePeriodSeconds", "integer", 60, 86_400, "300", unit="seconds"),
        QueueAttributeSpec("SqsManagedSseEnabled", "boolean", default="true", allowed=("true", "false")),
        QueueAttributeSpec("ApproximateNumberOfMessages", "integer", read_only=True, unit="messages"),
        QueueAttributeSpec("ApproximateNumberOfMessagesNotVisible", "integer", read_only=True, unit="messages"),
        QueueAttributeSpec("ApproximateNumberOfMessagesDelayed", "integer", read_only=True, unit="messages"),
        QueueAttributeSpec("CreatedTimestamp", "timestamp", read_only=True, unit="epoch seconds"),
        QueueAttributeSpec("LastModifiedTimestamp", "timestamp", read_only=True, unit="epoch seconds"),
        QueueAttributeSpec("QueueArn", "arn", read_only=True),
    )
}

# Attributes a fresh standard queue returns for AttributeNames=["All"] (AWS-recorded set, 2023; MaximumMessageSize
# then 262144). KmsDataKeyReusePeriodSeconds appears only once KmsMasterKeyId is set; FIFO queues add the four
# FIFO attributes.
STANDARD_QUEUE_ALL: Final = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "CreatedTimestamp",
    "DelaySeconds",
    "LastModifiedTimestamp",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "QueueArn",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)


def unknown_attribute(name: str) -> SqsError:
    """InvalidAttributeName for an unknown, read-only or wrong-queue-type attribute (AWS-recorded)."""
    return SqsError("InvalidAttributeName", f"Unknown Attribute {name}.")


def invalid_attribute_value(name: str, reason: str | None = None) -> SqsError:
    """InvalidAttributeValue: "Invalid value for the parameter X." [+ " Reason: ..."] (AWS-recorded forms)."""
    text = f"Invalid value for the parameter {name}."
    if reason is not None:
        text += f" Reason: {reason}"
    return SqsError("InvalidAttributeValue", text)


_INTEGER = re.compile(r"-?\d+")


def validate_queue_attribute(name: str, value: str, *, fifo: bool, creating: bool) -> str:
    """Check one CreateQueue/SetQueueAttributes attribute; return the value as SQS stores it.

    JSON policies are only checked here for being JSON objects; use ``validate_redrive_policy`` and
    ``validate_redrive_allow_policy`` for their contents. Cross-attribute rules (SSE conflict, FIFO name suffix,
    FifoThroughputLimit needing DeduplicationScope) are the caller's, see NOTES.md.
    """
    spec = QUEUE_ATTRIBUTES.get(name)
    if spec is None or spec.read_only:
        raise unknown_attribute(name)
    if spec.fifo_only and not fifo:
        if name in ("DeduplicationScope", "FifoThroughputLimit"):
            # emulator (LocalStack), error InvalidAttributeName
            raise SqsError("InvalidAttributeName", f"You can specify the {name} only when FifoQueue is set to true.")
        raise unknown_attribute(name)
    if name == "FifoQueue" and not creating:
        raise invalid_attribute_value(name, "Modifying queue type is not supported.")  # AWS-recorded
    if spec.kind == "integer":
        # SQS rejects " 6", "6.0", "" and "true" alike (emulator tests mirroring AWS)
        if _INTEGER.fullmatch(value) is None:
            raise invalid_attribute_value(name)
        number = int(value)
        assert spec.minimum is not None
        assert spec.maximum is not None
        if not spec.minimum <= number <= spec.maximum:
            raise invalid_attribute_value(name)
        return str(number)
    if spec.kind == "boolean":
        lowered = value.lower()
        if lowered not in spec.allowed:
            raise invalid_attribute_value(name)
        if name == "FifoQueue" and lowered != "true":
            raise unknown_attribute(name)  # FifoQueue=false is rejected as unknown (emulator)
        return lowered
    if spec.kind == "enum":
        if value not in spec.allowed:
            raise invalid_attribute_value(name)
        return value
    if spec.kind == "json" and value != "":  # "" clears a policy
        try:
            document = json.loads(value)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            if name == "RedrivePolicy":
                raise invalid_attribute_value(name, "Redrive policy is not a valid JSON map.")
            if name == "RedriveAllowPolicy":
                raise invalid_attribute_value(name, REDRIVE_ALLOW_UNSUPPORTED)
            raise invalid_attribute_value(name)
    return value


REDRIVE_ALLOW_UNSUPPORTED: Final = (  # the apostrophe is SQS's own (U+2019)
    "Amazon SQS can't create the redrive allow policy, as it\u2019s in an unsupported format."
)
MAX_RECEIVE_COUNT_RANGE: Final = (1, 1000)  # RedrivePolicy.maxReceiveCount, inclusive
MAX_SOURCE_QUEUE_ARNS: Final = 10  # RedriveAllowPolicy.sourceQueueArns


def _redrive_invalid(attribute: str, raw: str, reason: str) -> SqsError:
    # "Value <raw request text> for parameter X is invalid. Reason: ..." (AWS-recorded form)
    return SqsError("InvalidParameterValue", f"Value {raw} for parameter {attribute} is invalid. Reason: {reason}")


_SQS_ARN = re.compile(r"arn:aws[a-z-]*:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,80}(?:\.fifo)?")


def validate_redrive_policy(raw: str) -> tuple[str, int]:
    """Parse a RedrivePolicy; return (deadLetterTargetArn, maxReceiveCount).

    Texts from an emulator test suite mirroring AWS (Inqnuam/local-aws-sqs) and one AWS recording
    ("Invalid value for deadLetterTargetArn."). Whether the target exists and has the same queue type is the
    caller's check: "Dead letter target does not exist." / "Dead-letter queue must be same type of queue as the
    source.." (sic, two periods) with the same "Value ... for parameter RedrivePolicy is invalid." prefix.
    """
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise invalid_attribute_value("RedrivePolicy", "Redrive policy is not a valid JSON map.")
    unknown = set(document) - {"deadLetterTargetArn", "maxReceiveCount"}
    if unknown:
        raise _redrive_invalid(
            "RedrivePolicy", raw, "Only following attributes are supported: [maxReceiveCount, deadLetterTargetArn]."
        )
    for key in ("maxReceiveCount", "deadLetterTargetArn"):
        if key not in document:
            raise _redrive_invalid("RedrivePolicy", raw, f"Redrive policy does not contain mandatory attribute: {key}.")
    count_raw = document["maxReceiveCount"]
    try:
        # SQS accepts the count as a JSON number or a numeric string (both seen in the wild)
        count = int(count_raw) if not isinstance(count_raw, bool) else -1
    except (TypeError, ValueError):
        count = -1
    low, high = MAX_RECEIVE_COUNT_RANGE
    if not low <= count <= high:
        raise _redrive_invalid(
            "RedrivePolicy",
            raw,
            f"Invalid value for maxReceiveCount: {count_raw}, valid values are from {low} to {high} both inclusive.",
        )
    arn = document["deadLetterTargetArn"]
    if not isinstance(arn, str) or not arn.startswith("arn:"):
        raise _redrive_invalid("RedrivePolicy", raw, "Invalid value for deadLetterTargetArn.")  # AWS-recorded
    if _SQS_ARN.fullmatch(arn) is None:
        raise _redrive_invalid("RedrivePolicy", raw, "Only SQS queues are valid resources for deadLetterTargetArn.")
    return arn, count


def validate_redrive_allow_policy(raw: str) -> tuple[str, tuple[str, ...]]:
    """Parse a RedriveAllowPolicy; return (redrivePermission, sourceQueueArns). Texts: emulator mirroring AWS."""
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    if not isinstance(document, dict) or set(document) - {"redrivePermission", "sourceQueueArns"}:
        raise invalid_attribute_value("RedriveAllowPolicy", REDRIVE_ALLOW_UNSUPPORTED)
    permission = document.get("redrivePermission")
    if permission not in ("allowAll", "denyAll", "byQueue"):
        raise invalid_attribute_value("RedriveAllowPolicy", REDRIVE_ALLOW_UNSUPPORTED)
    arns = document.get("sourceQueueArns")
    if arns is not None and (not isinstance(arns, list) or not all(isinstance(a, str) for a in arns)):
        raise invalid_attribute_value("RedriveAllowPolicy", REDRIVE_ALLOW_UNSUPPORTED)
    prefix = "Amazon SQS can't create the redrive allow policy."
    if permission == "byQueue":
        if not arns:
            raise _redrive_invalid(
                "RedriveAllowPolicy",
                raw,
                f"{prefix} When you specify the byQueue permission type, you must also specify one or more "
                "sourceQueueArns values.",
            )
        if len(arns) > MAX_SOURCE_QUEUE_ARNS:
            raise _redrive_invalid(
                "RedriveAllowPolicy",
                raw,
                f"{prefix} The maximum number of source queue ARNs you can specify is {MAX_SOURCE_QUEUE_ARNS}.",
            )
    elif arns is not None:
        raise _redrive_invalid(
            "RedriveAllowPolicy",
            raw,
            f"{prefix} To specify one or more source queue ARNs, you must set redrivePermission to byQueue.",
        )
    return permission, tuple(arns or ())


# --------------------------------------------------------------------------------------------------------------
# Names and identifiers
# --------------------------------------------------------------------------------------------------------------

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_FIFO_ID = re.compile(r"[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}")
QUEUE_NAME_MESSAGE: Final = "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
FIFO_QUEUE_NAME_MESSAGE: Final = (
    "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, "
    "must end with .fifo suffix and be 1 to 80 in length"
)


def is_valid_queue_name(name: str, *, fifo: bool) -> bool:
    """1-80 of [A-Za-z0-9_-]; a FIFO name ends in ".fifo", which counts toward the 80."""
    if fifo:
        return name.endswith(".fifo") and _QUEUE_NAME.fullmatch(name[: -len(".fifo")] + "_fifo") is not None
    return _QUEUE_NAME.fullmatch(name) is not None


def is_valid_fifo_token(token: str) -> bool:
    """MessageGroupId, MessageDeduplicationId, ReceiveRequestAttemptId: 1-128 alphanumerics and punctuation."""
    return _FIFO_ID.fullmatch(token) is not None


def fifo_token_invalid_message(value: str, parameter: str) -> str:
    """InvalidParameterValue text for a bad FIFO token (emulator, LocalStack)."""
    return (
        f"Value {value} for parameter {parameter} is invalid. "
        f"Reason: {parameter} can only include alphanumeric and punctuation characters. 1 to 128 in length."
    )


# --------------------------------------------------------------------------------------------------------------
# SigV4
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CredentialScope:
    """The Credential= part of a SigV4 Authorization header: AKID/yyyymmdd/region/service/aws4_request."""

    access_key_id: str
    date: str  # yyyymmdd, UTC
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_credential_scope(authorization: str) -> CredentialScope | None:
    """Parse ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``; None when not SigV4."""
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        return None
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields[key] = value
    scope = fields.get("Credential", "").split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or "SignedHeaders" not in fields or "Signature" not in fields:
        return None
    return CredentialScope(
        access_key_id=scope[0],
        date=scope[1],
        region=scope[2],
        service=scope[3],
        signed_headers=tuple(fields["SignedHeaders"].split(";")),
        signature=fields["Signature"],
    )


def sigv4_signature(
    *,
    secret_key: str,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    payload_sha256: str,
    amz_date: str,
    scope: CredentialScope,
) -> str:
    """The SigV4 signature a client holding `secret_key` computes for this request (hex). `headers` maps
    lower-case names to values; `path` is the decoded request path."""
    canonical_headers = "".join(
        f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed_headers
    )  # values trimmed, inner runs of spaces collapsed
    canonical_query = "&".join(f"{quote(key, safe='-_.~')}={quote(value, safe='-_.~')}" for key, value in sorted(query))
    canonical_request = "\n".join(
        (
            method,
            quote(path or "/", safe="/~"),
            canonical_query,
            canonical_headers,
            ";".join(signed_headers),
            payload_sha256,
        )
    )
    credential_scope = f"{scope.date}/{scope.region}/{scope.service}/aws4_request"
    string_to_sign = "\n".join(
        ("AWS4-HMAC-SHA256", amz_date, credential_scope, hashlib.sha256(canonical_request.encode()).hexdigest())
    )
    key = f"AWS4{secret_key}".encode()
    for part in (scope.date, scope.region, scope.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


# What AWS checks of a signed request, in its order, and the texts it answers with. "AWS-recorded" texts are from
# the JSON-protocol responses dynalite's sources record (same coral front end as SQS's JSON protocol); the query
# codes are SQS's (Signature expired: SignatureDoesNotMatch, 403, in SQS responses quoted in aws-sdk-php#642,
# aws-sdk-go#487 and celery/kombu#1937).
MAX_CLOCK_SKEW: Final = 900  # seconds a signed request's X-Amz-Date may be off the server's clock, either way
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"  # X-Amz-Content-Sha256 of a request whose body is not signed
AMZ_DATE_FORMAT: Final = "%Y%m%dT%H%M%SZ"  # X-Amz-Date: ISO 8601 basic format, UTC
_AMZ_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z")  # ASCII digits only
HOST_NOT_SIGNED_MESSAGE: Final = "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
DATE_NOT_SIGNED_MESSAGE: Final = (  # WonderQ's, in the form of the Host text: AWS's own text is unknown
    "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization."
)
CONTENT_SHA256_MISMATCH_MESSAGE: Final = (  # S3's text for the same check (XAmzContentSHA256Mismatch)
    "The provided 'x-amz-content-sha256' header does not match what was computed."
)
UNSIGNED_PAYLOAD_MESSAGE: Final = (  # WonderQ's: SQS always hashes the body, so AWS has no text for this
    "UNSIGNED-PAYLOAD is not accepted here: sign the request body (X-Amz-Content-Sha256 its SHA-256, or no such"
    " header)."
)


def amz_date_format_message(given: str) -> str:
    """IncompleteSignature text for an X-Amz-Date that is not ISO 8601 basic format (AWS-recorded)."""
    return f"Date must be in ISO-8601 'basic format'. Got '{given[:64]}'. See http://en.wikipedia.org/wiki/ISO_8601"


def parse_amz_date(text: str) -> int | None:
    """An X-Amz-Date (yyyymmddThhmmssZ, UTC) as epoch seconds; None when it is not a real time in that form."""
    match = _AMZ_DATE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    if not (year >= 1 and 1 <= month <= 12 and hour < 24 and minute < 60 and second < 60):
        return None
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    return calendar.timegm((year, month, day, hour, minute, second))


def check_scope(scope: CredentialScope, amz_date: str) -> None:
    """The signed headers include `host` and `x-amz-date`, and the credential scope is for SQS on the day of
    X-Amz-Date. Raises SignatureDoesNotMatch (all scope problems in one text, as AWS lists them)."""
    signed = {name.lower() for name in scope.signed_headers}
    if "host" not in signed:
        raise SqsError("SignatureDoesNotMatch", HOST_NOT_SIGNED_MESSAGE)
    if "x-amz-date" not in signed:
        raise SqsError("SignatureDoesNotMatch", DATE_NOT_SIGNED_MESSAGE)
    problems = []
    if scope.service != "sqs":
        problems.append("Credential should be scoped to correct service: 'sqs'.")  # AWS-recorded form
    if scope.date != amz_date[:8]:
        problems.append(  # AWS-recorded form
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{scope.date[:64]}' != '{amz_date[:8]}', from '{amz_date}'."
        )
    if problems:
        raise SqsError("SignatureDoesNotMatch", " ".join(problems))


def payload_hash(declared: str | None, body: bytes, *, allow_unsigned: bool) -> str:
    """The payload hash of the canonical request: the SHA-256 of the body received. An X-Amz-Content-Sha256
    header must agree with it (or be UNSIGNED-PAYLOAD, when `allow_unsigned`); else SignatureDoesNotMatch."""
    actual = hashlib.sha256(body).hexdigest()
    if declared is None or declared == actual:
        return actual
    if declared == UNSIGNED_PAYLOAD:
        if allow_unsigned:
            return UNSIGNED_PAYLOAD
        raise SqsError("SignatureDoesNotMatch", UNSIGNED_PAYLOAD_MESSAGE)
    raise SqsError("SignatureDoesNotMatch", CONTENT_SHA256_MISMATCH_MESSAGE)


def verify_signature(
    scope: CredentialScope,
    *,
    secret_key: str,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    allow_unsigned_payload: bool,
) -> None:
    """Raise SignatureDoesNotMatch unless `scope.signature` is what `secret_key` makes of this request, its body
    included. `headers` maps lower-case names to values. The signatures are compared in constant time."""
    expected = sigv4_signature(
        secret_key=secret_key,
        method=method,
        path=path,
        query=query,
        headers=headers,
        signed_headers=scope.signed_headers,
        payload_sha256=payload_hash(headers.get("x-amz-content-sha256"), body, allow_unsigned=allow_unsigned_payload),
        amz_date=headers.get("x-amz-date", ""),
        scope=scope,
    )
    if not hmac.compare_digest(expected.encode(), scope.signature.encode()):
        raise SqsError("SignatureDoesNotMatch", SIGNATURE_MISMATCH_MESSAGE)
