"""The Amazon SQS front end: SQS's AWS JSON 1.0 protocol on `POST /`, each action turned into actor commands,
as API v1 turns its routes into them. SQS queues are WonderQ queues; see docs/sqs.md.

This module owns the translation, and who may ask: names and URLs to queues, SQS parameters and attributes to
WonderQ's, replies and errors to what SQS sends; a request's SigV4 signature checked against the server's
`Access` (its SQS keys belong to principals), the principal's request rate, and the permission each action needs
on the queue it names (`PERMISSIONS`). The wire facts (MD5s, error shapes, attribute rules, SigV4's checks) are
in `sqs_wire`; every queue rule stays in the core. Where SQS and API v1 differ (a delete with an old receipt
handle, deleting a dead-letter queue), the SQS endpoint follows SQS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.exceptions import RequestTimeout as BodyTimeout
from werkzeug.routing import BaseConverter

from wonderq import openapi
from wonderq import sqs_wire as wire
from wonderq.access import Access, sqs_route
from wonderq.actor import ActorHandle
from wonderq.commands import (
    MAX_WAIT,
    ChangeVisibility,
    Command,
    Delete,
    DeleteQueue,
    GetQueue,
    ListQueues,
    Purge,
    PutQueue,
    Receive,
    Redrive,
    Send,
)
from wonderq.config import Settings
from wonderq.core import MAX_REDRIVE, is_fifo, split_receipt
from wonderq.errors import (
    CrossSiteRefused,
    Forbidden,
    InvalidReceipt,
    LeaseLost,
    MessageNotFound,
    QueueFull,
    QueueNotFound,
    RateLimited,
    TooManyQueues,
    Unauthorized,
    WonderQError,
)
from wonderq.model import AttributeValue, Lease, Outgoing, Payload, QueueStats, TypedValue
from wonderq.principals import Permission, Principal
from wonderq.ratelimit import retry_after_header

log = logging.getLogger("wonderq.sqs")

T = TypeVar("T")
Json = dict[str, Any]

TEXT = "text/plain; charset=utf-8"  # the content type of a message sent over SQS, as API v1 shows it
MIN_LEASE = 0.001  # seconds: SQS's VisibilityTimeout 0 (visible again at once) as a WonderQ lease
SQS_VISIBILITY_TIMEOUT = 30.0  # seconds: SQS's default, for queues created over SQS
MAX_RECEIVE = 10  # MaxNumberOfMessages
MAX_LIST = 1000  # queue URLs per ListQueues / ListDeadLetterSourceQueues page
PURGE_INTERVAL = 60.0  # seconds between two purges of one queue, as in SQS
MAX_TAGS = 50  # per queue, as in SQS
MAX_MOVE_RATE = 500  # MaxNumberOfMessagesPerSecond
MAX_MOVE_TASKS = 10  # remembered per source queue (ListMessageMoveTasks shows at most 10)
ATTEMPT_WINDOW = 300.0  # seconds a FIFO receive may be retried with its ReceiveRequestAttemptId, as in SQS
MAX_ATTEMPTS = 10_000  # receive attempts remembered at once (the oldest are forgotten first)
TAG = "tag:"  # metadata name prefix of a queue tag
SETTING = "sqs:"  # metadata name prefix of an SQS-only queue attribute, kept as given
FIFO_SETTINGS = {  # what a FIFO queue's own attributes are until set; the adapter acts on them
    "ContentBasedDeduplication": "false",
    "DeduplicationScope": "queue",
    "FifoThroughputLimit": "perQueue",
}
KEPT_AS_GIVEN = (  # SQS queue attributes WonderQ stores and returns without acting on them
    *FIFO_SETTINGS,
    "Policy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "ReceiveMessageWaitTimeSeconds",
)
# The permission each action needs on the queue it names (docs/sqs.md). ListQueues lists only the queues the
# principal may monitor; a move task needs admin on its DestinationArn too, a RedrivePolicy on its dead-letter
# queue. AddPermission and RemovePermission need none: they are not supported.
PERMISSIONS: dict[str, Permission] = {
    **dict.fromkeys(("SendMessage", "SendMessageBatch"), Permission.SEND),
    **dict.fromkeys(
        (
            "ReceiveMessage",
            "DeleteMessage",
            "DeleteMessageBatch",
            "ChangeMessageVisibility",
            "ChangeMessageVisibilityBatch",
        ),
        Permission.RECEIVE,
    ),
    **dict.fromkeys(
        (
            "CreateQueue",
            "DeleteQueue",
            "SetQueueAttributes",
            "PurgeQueue",
            "TagQueue",
            "UntagQueue",
            "StartMessageMoveTask",
            "CancelMessageMoveTask",
        ),
        Permission.ADMIN,
    ),
    **dict.fromkeys(
        (
            "GetQueueAttributes",
            "GetQueueUrl",
            "ListQueues",
            "ListQueueTags",
            "ListDeadLetterSourceQueues",
            "ListMessageMoveTasks",
        ),
        Permission.MONITOR,
    ),
}
SYSTEM_ATTRIBUTES = (
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageDeduplicationId",
    "MessageGroupId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)


def _error(code: str, message: str) -> wire.SqsError:
    return wire.SqsError(code, message)


def _invalid(parameter: str, value: object, reason: str) -> wire.SqsError:
    return _error("InvalidParameterValue", f"Value {value} for parameter {parameter} is invalid. Reason: {reason}")


NO_QUEUE = wire.QUEUE_DOES_NOT_EXIST_MESSAGE


# ---- who is asking: region, account, how they reach us, and what they may do ---------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    region: str
    account: str
    home_region: str  # SQS_REGION: its queue names are WonderQ's own
    base_url: str  # scheme://host of the request, for queue URLs
    principal: Principal  # who signed the request (EVERYONE when SQS requests need no signature)
    action: str

    def may(self, internal: str) -> bool:
        """Whether the principal has the permission of this action on the WonderQ queue `internal`."""
        permission = PERMISSIONS.get(self.action)
        return permission is not None and self.principal.allows(permission, internal)

    def require(self, internal: str) -> None:
        """AccessDenied unless the principal has the permission of this action on the WonderQ queue `internal`.
        Checked before the queue is looked up, so that a principal cannot learn which queues exist."""
        if not self.may(internal):
            raise self.denied(self.arn_of(internal), internal)

    def denied(self, resource: str, internal: str) -> wire.SqsError:
        user = f"arn:aws:iam::{self.account}:user/{self.principal.name}"
        permission = PERMISSIONS.get(self.action)
        needs = f"the {permission} permission" if permission is not None else "a permission"
        return _error(
            "AccessDenied",
            f"{wire.access_denied_message(user, self.action, resource)} (WonderQ: principal"
            f" {self.principal.name!r} needs {needs} on {internal!r})",
        )

    @property
    def home(self) -> bool:
        return self.region == self.home_region

    def queue(self, name: str) -> str:
        """The WonderQ queue behind the SQS queue `name` in this region."""
        return name if self.home else f"{self.region}:{name}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{self.account}/{name}"

    def arn(self, name: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account}:{name}"

    def owns(self, internal: str) -> str | None:
        """The SQS name of a WonderQ queue if it is in this region, else None."""
        region, colon, name = internal.rpartition(":")
        if self.home:
            return None if colon else internal
        return name if region == self.region else None

    def arn_of(self, internal: str) -> str:
        """The ARN of a WonderQ queue, in whatever region it is."""
        region, colon, name = internal.rpartition(":")
        return f"arn:aws:sqs:{region if colon else self.home_region}:{self.account}:{name if colon else internal}"


@dataclass(slots=True)
class Attempt:
    """A FIFO receive made with a ReceiveRequestAttemptId: what it returned, to return again on a retry."""

    messages: list[Json]
    receipts: list[tuple[str, str]]  # (message id, WonderQ receipt) of each
    expires: float  # trio time


@dataclass(slots=True)
class MoveTask:
    handle: str
    source_arn: str
    destination_arn: str | None
    rate: int | None
    moved: int
    started_ms: int
    status: str = "COMPLETED"


# ---- the adapter ----------------------------------------------------------------------------------------------


class SqsAdapter:
    """Serves SQS requests through the actor, as API v1 does. Its own state (when each queue was last purged,
    the move tasks) lives only while the server runs."""

    def __init__(self, handle: ActorHandle, settings: Settings, access: Access) -> None:
        self._handle = handle
        self._clock = handle.clock  # the broker's: epoch seconds on trio's clock
        self._settings = settings
        self._access = access
        self._purged_at: dict[str, float] = {}  # queue -> trio time of its last purge
        self._tasks: dict[str, list[MoveTask]] = {}  # source queue -> its move tasks, newest first
        self._attempts: OrderedDict[tuple[str, str], Attempt] = OrderedDict()  # (queue, attempt id), oldest first
        self._actions: dict[str, Callable[[Caller, Json], Awaitable[Json]]] = {
            "CreateQueue": self.create_queue,
            "GetQueueUrl": self.get_queue_url,
            "ListQueues": self.list_queues,
            "DeleteQueue": self.delete_queue,
            "GetQueueAttributes": self.get_queue_attributes,
            "SetQueueAttributes": self.set_queue_attributes,
            "PurgeQueue": self.purge_queue,
            "SendMessage": self.send_message,
            "SendMessageBatch": self.send_message_batch,
            "ReceiveMessage": self.receive_message,
            "DeleteMessage": self.delete_message,
            "DeleteMessageBatch": self.delete_message_batch,
            "ChangeMessageVisibility": self.change_message_visibility,
            "ChangeMessageVisibilityBatch": self.change_message_visibility_batch,
            "ListDeadLetterSourceQueues": self.list_dead_letter_source_queues,
            "TagQueue": self.tag_queue,
            "UntagQueue": self.untag_queue,
            "ListQueueTags": self.list_queue_tags,
            "StartMessageMoveTask": self.start_message_move_task,
            "CancelMessageMoveTask": self.cancel_message_move_task,
            "ListMessageMoveTasks": self.list_message_move_tasks,
            "AddPermission": self.unsupported,
            "RemovePermission": self.unsupported,
        }

    async def serve(self) -> Response:
        request_id = str(uuid.uuid4())
        try:
            data = await self._body()
            scope, signer = self._signed(data)
            self._access.admit(signer, request.remote_addr)
            action, params = self._parse(data)
            caller = self._caller(scope, signer or self._access.anonymous(), action)
            handler = self._actions.get(action)
            if handler is None:
                raise _error("InvalidAction", f"The action {action[:100]} is not valid for this endpoint.")
            reply = await handler(caller, params)
        except WonderQError as error:
            return _error_response(_as_sqs(error), request_id)
        except wire.SqsError as error:
            return _error_response(error, request_id)
        except Exception:
            log.exception("unexpected error in SQS %s", request.headers.get("X-Amz-Target"))
            return _error_response(_error("InternalFailure", "internal error"), request_id)
        headers = {"Content-Type": wire.JSON_CONTENT_TYPE, "x-amzn-RequestId": request_id}
        return Response(orjson.dumps(reply), status=200, headers=headers)

    async def _body(self) -> bytes:
        """The whole request body: within MAX_REQUEST_BYTES, and within BODY_TIMEOUT seconds (or the app's own
        body timeout, if shorter)."""
        timeout = _error("RequestTimeout", "The request body did not arrive in time: send it whole, then wait.")
        try:
            with trio.move_on_after(self._settings.body_timeout):
                return await request.get_data(cache=False, as_text=False, parse_form_data=False)
        except RequestEntityTooLarge:
            limit = self._settings.max_request_bytes
            raise _error("RequestEntityTooLarge", f"The request body is larger than {limit} bytes.") from None
        except BodyTimeout:
            raise timeout from None
        raise timeout

    def _signed(self, data: bytes) -> tuple[wire.CredentialScope | None, Principal | None]:
        """`_authenticate`, with a failed signature counted against the client address's rate (as a failed
        sign-in is on the other front ends), so that guessing keys is throttled too."""
        try:
            return self._authenticate(data)
        except wire.SqsError:
            self._access.admit(None, request.remote_addr)
            raise

    def _authenticate(self, data: bytes) -> tuple[wire.CredentialScope | None, Principal | None]:
        """The request's SigV4 credential scope, and the principal who signed it. When the server has SQS keys
        (`Access.sqs_keys`), the signature must be one of theirs, over this very body, made within 15 minutes
        of the broker's clock; without keys, any request passes and its principal is None."""
        header = request.headers.get("Authorization", "")
        keys = self._access.sqs_keys
        if keys is None:
            return wire.parse_credential_scope(header), None
        if not header:
            raise _error("MissingAuthenticationToken", "Request is missing Authentication Token")
        scope = wire.parse_credential_scope(header)
        if scope is None:
            raise _error(
                "IncompleteSignature",
                "The Authorization header is not an AWS4-HMAC-SHA256 signature"
                " (Credential=key/yyyymmdd/region/sqs/aws4_request, SignedHeaders=..., Signature=...).",
            )
        amz_date = request.headers.get("X-Amz-Date")
        if amz_date is None:
            raise _error("IncompleteSignature", "Authorization header requires existence of a 'X-Amz-Date' header.")
        signed_at = wire.parse_amz_date(amz_date)
        if signed_at is None:
            raise _error("IncompleteSignature", wire.amz_date_format_message(amz_date))
        _check_clock_skew(amz_date, signed_at, self._clock.now())
        wire.check_scope(scope, amz_date)
        key = keys.by_sqs_key(scope.access_key_id)
        if key is None:
            raise _error("InvalidClientTokenId", wire.INVALID_CLIENT_TOKEN_MESSAGE)
        wire.verify_signature(
            scope,
            secret_key=key.secret,
            method=request.method,
            path=request.path,
            query=list(request.args.items(multi=True)),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=data,
            allow_unsigned_payload=self._settings.sqs_allow_unsigned_payload,
        )
        return scope, key.principal

    def _parse(self, data: bytes) -> tuple[str, Json]:
        target = request.headers.get("X-Amz-Target", "")
        prefix = f"{wire.TARGET_PREFIX}."
        if not target.startswith(prefix):
            raise _error(
                "InvalidAction",
                "WonderQ speaks SQS's AWS JSON 1.0 protocol: send X-Amz-Target: AmazonSQS.<Action> with a JSON body"
                " (the Query protocol is not supported)",
            )
        try:
            params = orjson.loads(data) if data.strip() else {}
        except orjson.JSONDecodeError:
            raise _error("MalformedInput", "The request body is not valid JSON.") from None
        if not isinstance(params, dict):
            raise _error("MalformedInput", "The request body must be a JSON object.")
        return target.removeprefix(prefix), params

    def _caller(self, scope: wire.CredentialScope | None, principal: Principal, action: str) -> Caller:
        settings = self._settings
        region = settings.sqs_region
        if scope is not None:
            region = scope.region
            if not (1 <= len(region) <= 40 and all(c.isdigit() or c == "-" or "a" <= c <= "z" for c in region)):
                raise _error("SignatureDoesNotMatch", wire.invalid_region_message(region))
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        scheme = forwarded if forwarded in ("http", "https") else request.scheme
        host = request.headers.get("Host") or f"{settings.host}:{settings.port}"
        base_url = f"{scheme}://{host}"
        return Caller(region, settings.sqs_account_id, settings.sqs_region, base_url, principal, action)

    async def _ask(self, command: Command[T]) -> T:
        """The actor's reply, with WonderQ's errors as the SQS errors that mean the same."""
        try:
            return await self._handle.ask(command)
        except WonderQError as error:
            raise _as_sqs(error) from None

    # ---- parameters ----

    @staticmethod
    def _get(params: Json, name: str, kind: type[T], *, required: bool = False) -> T | None:
        value = params.get(name)
        if value is None:
            if required:
                raise _error("MissingParameter", f"The request must contain the parameter {name}.")
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _error("MalformedInput", f"{name} must be of type {kind.__name__}.")
        return value

    def _text(self, params: Json, name: str, *, required: bool = False) -> str | None:
        return self._get(params, name, str, required=required)

    def _queue_of(self, caller: Caller, params: Json) -> tuple[str, str]:
        """(WonderQ queue, SQS name) of the QueueUrl parameter, by its path only: /<account>/<name>; the
        caller must have the action's permission on that queue."""
        url = self._text(params, "QueueUrl", required=True)
        assert url is not None
        try:
            path = urlsplit(url).path
        except ValueError:  # not a URL at all ("http://[::1")
            raise _error("InvalidAddress", wire.invalid_address_message(url)) from None
        parts = [part for part in path.split("/") if part]
        if len(parts) != 2 or parts[0] != caller.account or not _valid_name(parts[1]):
            raise _error("QueueDoesNotExist", NO_QUEUE)
        queue = caller.queue(parts[1])
        caller.require(queue)
        return queue, parts[1]

    def _queue_of_arn(self, caller: Caller, arn: str) -> str | None:
        """The WonderQ queue an SQS ARN of this account and region names, or None."""
        parts = arn.split(":")
        if len(parts) != 6 or parts[:3] != ["arn", "aws", "sqs"] or parts[4] != caller.account:
            return None
        if parts[3] != caller.region or not _valid_name(parts[5]):
            return None
        return caller.queue(parts[5])

    async def _stats(self, queue: str) -> QueueStats:
        return await self._ask(GetQueue(queue))

    # ---- queues ----

    async def create_queue(self, caller: Caller, params: Json) -> Json:
        name = self._text(params, "QueueName", required=True)
        assert name is not None
        attributes = self._string_map(params, "Attributes")
        tags = self._string_map(params, "tags")
        fifo = "FifoQueue" in attributes
        if fifo:
            wire.validate_queue_attribute("FifoQueue", attributes["FifoQueue"], fifo=True, creating=True)
        if not wire.is_valid_queue_name(name, fifo=fifo):  # a .fifo name without FifoQueue too, as in SQS
            raise _error("InvalidParameterValue", wire.FIFO_QUEUE_NAME_MESSAGE if fifo else wire.QUEUE_NAME_MESSAGE)
        queue = caller.queue(name)
        caller.require(queue)
        changes = await self._translate(caller, queue, attributes, creating=True)
        try:
            existing: QueueStats | None = await self._handle.ask(GetQueue(queue))
        except QueueNotFound:
            existing = None
        if existing is not None:
            current = self._attributes_of(caller, existing)
            for key, value in attributes.items():
                if current.get(key, wire.QUEUE_ATTRIBUTES[key].default) != self._normal(key, value):
                    raise _error(
                        "QueueNameExists",
                        f"A queue already exists with the same name and a different value for attribute {key}",
                    )
            return {"QueueUrl": caller.url(name)}
        self._check_tags(tags)
        changes.metadata.update({TAG + key: value for key, value in tags.items()})
        if changes.visibility_timeout is None:
            changes.visibility_timeout = SQS_VISIBILITY_TIMEOUT
        await self._ask(changes.command(queue))
        return {"QueueUrl": caller.url(name)}

    async def get_queue_url(self, caller: Caller, params: Json) -> Json:
        name = self._text(params, "QueueName", required=True)
        owner = self._text(params, "QueueOwnerAWSAccountId")
        assert name is not None
        if (owner is not None and owner != caller.account) or not _valid_name(name):
            raise _error("QueueDoesNotExist", NO_QUEUE)
        caller.require(caller.queue(name))
        await self._stats(caller.queue(name))
        return {"QueueUrl": caller.url(name)}

    async def list_queues(self, caller: Caller, params: Json) -> Json:
        """The queues of the caller's region that it may monitor (AccessDenied if it may monitor none)."""
        prefix = self._text(params, "QueueNamePrefix") or ""
        if not caller.principal.allows_somewhere(Permission.MONITOR):
            raise caller.denied(caller.arn("*"), "*")
        names = sorted(
            name
            for stats in await self._ask(ListQueues())
            if (name := caller.owns(stats.name)) is not None and name.startswith(prefix) and caller.may(stats.name)
        )
        return self._page(params, [caller.url(name) for name in names], "QueueUrls", key=names)

    def _page(self, params: Json, urls: Sequence[str], member: str, *, key: Sequence[str]) -> Json:
        """One page of `urls` (sorted by `key`), after the NextToken given, up to MaxResults."""
        limit = self._get(params, "MaxResults", int)
        token = self._text(params, "NextToken")
        if limit is not None and not 1 <= limit <= MAX_LIST:
            raise _invalid("MaxResults", limit, f"MaxResults must be an integer between 1 and {MAX_LIST}.")
        if token is not None and limit is None:
            raise _invalid("NextToken", token, "NextToken is only valid with MaxResults.")
        start = 0
        if token is not None:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise _invalid("NextToken", token, "Invalid NextToken value.") from None
            start = next((index for index, name in enumerate(key) if name > after), len(key))
        end = start + (limit or MAX_LIST)
        reply: Json = {member: list(urls[start:end])} if urls[start:end] or member == "queueUrls" else {}
        if limit is not None and end < len(urls):
            reply["NextToken"] = base64.urlsafe_b64encode(key[end - 1].encode()).decode()
        return reply

    async def delete_queue(self, caller: Caller, params: Json) -> Json:
        queue, _ = self._queue_of(caller, params)
        await self._stats(queue)
        # SQS lets a dead-letter queue be deleted; WonderQ never lets a dead letter go nowhere, so the queues
        # that name it stop dead-lettering first.
        for stats in await self._ask(ListQueues()):
            if stats.attributes.dead_letter_queue == queue:
                await self._ask(PutQueue(stats.name, max_receives=0, dead_letter_queue=""))
        await self._ask(DeleteQueue(queue))
        self._purged_at.pop(queue, None)
        self._tasks.pop(queue, None)
        return {}

    async def get_queue_attributes(self, caller: Caller, params: Json) -> Json:
        queue, _ = self._queue_of(caller, params)
        names = self._get(params, "AttributeNames", list) or []
        stats = await self._stats(queue)
        everything = self._attributes_of(caller, stats)
        if not names:
            return {"Attributes": {}}
        wanted: set[str] = set()
        for name in names:
            if name == "All":
                wanted.update(everything)
            elif not isinstance(name, str) or name not in wire.QUEUE_ATTRIBUTES:
                raise wire.unknown_attribute(str(name))
            else:
                wanted.add(name)
        return {"Attributes": {key: value for key, value in everything.items() if key in wanted}}

    def _attributes_of(self, caller: Caller, stats: QueueStats) -> dict[str, str]:
        attributes = stats.attributes
        metadata = dict(attributes.metadata)
        created = str(int(stats.created_at))
        values = {
            "ApproximateNumberOfMessages": str(stats.ready),
            "ApproximateNumberOfMessagesNotVisible": str(stats.leased),
            "ApproximateNumberOfMessagesDelayed": str(stats.delayed),
            "CreatedTimestamp": created,
            "LastModifiedTimestamp": metadata.get(SETTING + "LastModifiedTimestamp", created),
            "DelaySeconds": str(int(attributes.delay)),
            "MaximumMessageSize": str(attributes.max_message_bytes or self._settings.max_message_bytes),
            "MessageRetentionPeriod": str(int(attributes.retention)),
            "QueueArn": caller.arn_of(stats.name),
            "ReceiveMessageWaitTimeSeconds": "0",
            "SqsManagedSseEnabled": "false",
            "VisibilityTimeout": str(int(attributes.visibility_timeout)),
        }
        if is_fifo(stats.name):
            values.update(FifoQueue="true", **FIFO_SETTINGS)
        for key in KEPT_AS_GIVEN:
            if SETTING + key in metadata:
                values[key] = metadata[SETTING + key]
        if attributes.max_receives and attributes.dead_letter_queue is not None:
            policy = {
                "deadLetterTargetArn": caller.arn_of(attributes.dead_letter_queue),
                "maxReceiveCount": attributes.max_receives,
            }
            values["RedrivePolicy"] = json.dumps(policy, separators=(",", ":"))
        return dict(sorted(values.items()))

    @staticmethod
    def _normal(key: str, value: str) -> str:
        """An attribute value as GetQueueAttributes would show it, for comparing with what is set."""
        spec = wire.QUEUE_ATTRIBUTES.get(key)
        if spec is not None and spec.kind == "integer":
            try:
                return str(int(value))
            except ValueError:
                return value
        if key == "RedrivePolicy" and value:
            try:
                document = json.loads(value)
                document["maxReceiveCount"] = int(document["maxReceiveCount"])
                return json.dumps(
                    {
                        "deadLetterTargetArn": document["deadLetterTargetArn"],
                        "maxReceiveCount": document["maxReceiveCount"],
                    },
                    separators=(",", ":"),
                )
            except (ValueError, KeyError, TypeError):
                return value
        return value

    async def set_queue_attributes(self, caller: Caller, params: Json) -> Json:
        queue, _ = self._queue_of(caller, params)
        attributes = self._string_map(params, "Attributes", required=True)
        stats = await self._stats(queue)
        changes = await self._translate(caller, queue, attributes, creating=False, current=stats)
        await self._ask(changes.command(queue))
        return {}

    async def _translate(
        self, caller: Caller, queue: str, given: Mapping[str, str], *, creating: bool, current: QueueStats | None = None
    ) -> _Changes:
        """SQS queue attributes as WonderQ's, each checked as SQS checks it (with the `current` queue's
        settings where a rule spans attributes)."""
        changes = _Changes(metadata={SETTING + "LastModifiedTimestamp": str(int(self._clock.now()))})
        fifo = is_fifo(queue)
        for key, raw in given.items():
            value = wire.validate_queue_attribute(key, raw, fifo=fifo, creating=creating)
            if key == "FifoQueue":
                continue  # the name says it already
            if key == "DelaySeconds":
                changes.delay = float(value)
            elif key == "MaximumMessageSize":
                if int(value) > self._settings.max_message_bytes:
                    raise wire.invalid_attribute_value(key)  # beyond this server's MAX_MESSAGE_BYTES
                changes.max_message_bytes = int(value)
            elif key == "MessageRetentionPeriod":
                changes.retention = float(value)
            elif key == "VisibilityTimeout":
                changes.visibility_timeout = max(float(value), MIN_LEASE)
            elif key == "RedrivePolicy":
                await self._redrive_policy(caller, queue, value, changes)
            elif key == "RedriveAllowPolicy" and value:
                wire.validate_redrive_allow_policy(value)
                changes.metadata[SETTING + key] = value
            else:
                changes.metadata[SETTING + key] = value or None  # "" removes a policy
        settings = dict(current.attributes.metadata) if current is not None else {}
        scope = given.get("DeduplicationScope", settings.get(SETTING + "DeduplicationScope", "queue"))
        if given.get("FifoThroughputLimit") == "perMessageGroupId" and scope != "messageGroup":
            raise wire.invalid_attribute_value("FifoThroughputLimit")  # needs DeduplicationScope messageGroup
        if given.get("KmsMasterKeyId") and given.get("SqsManagedSseEnabled", "").lower() == "true":
            raise _error("InvalidAttributeName", wire.SSE_CONFLICT_MESSAGE)
        if given.get("KmsMasterKeyId"):
            changes.metadata[SETTING + "SqsManagedSseEnabled"] = "false"
        return changes

    async def _redrive_policy(self, caller: Caller, queue: str, value: str, changes: _Changes) -> None:
        if not value:
            changes.max_receives, changes.dead_letter_queue = 0, ""
            return
        arn, count = wire.validate_redrive_policy(value)
        target = self._queue_of_arn(caller, arn)
        missing = _invalid("RedrivePolicy", value, "Dead letter target does not exist.")
        if target is None or target == queue:
            raise missing
        caller.require(target)  # admin on the dead-letter queue too, as API v1's dead_letter_queue needs
        if is_fifo(target) != is_fifo(queue):
            raise _invalid("RedrivePolicy", value, "Dead-letter queue must be same type of queue as the source..")
        try:
            stats = await self._handle.ask(GetQueue(target))
        except QueueNotFound:
            raise missing from None
        allow = dict(stats.attributes.metadata).get(SETTING + "RedriveAllowPolicy")
        if allow:
            permission, sources = wire.validate_redrive_allow_policy(allow)
            name = caller.owns(queue) or queue
            if permission == "denyAll" or (permission == "byQueue" and caller.arn(name) not in sources):
                raise _invalid(
                    "RedrivePolicy",
                    value,
                    "Queue is not allowed to use the dead-letter queue by its RedriveAllowPolicy.",
                )
        changes.max_receives, changes.dead_letter_queue = count, target

    async def purge_queue(self, caller: Caller, params: Json) -> Json:
        queue, name = self._queue_of(caller, params)
        await self._stats(queue)
        last = self._purged_at.get(queue)
        if last is not None and trio.current_time() - last < PURGE_INTERVAL:
            raise _error(
                "PurgeQueueInProgress", f"Only one PurgeQueue operation on {name} is allowed every 60 seconds."
            )
        await self._ask(Purge(queue))
        self._purged_at[queue] = trio.current_time()
        return {}

    # ---- tags ----

    async def tag_queue(self, caller: Caller, params: Json) -> Json:
        queue, _ = self._queue_of(caller, params)
        tags = self._string_map(params, "Tags", required=True)
        stats = await self._stats(queue)
        have = {key for key, _ in stats.attributes.metadata if key.startswith(TAG)}
        self._check_tags(tags, already=len(have | {TAG + key for key in tags}) - len(tags))
        await self._ask(PutQueue(queue, metadata={TAG + key: value for key, value in tags.items()}))
        return {}

    async def untag_queue(self, caller: Caller, params: Json) -> Json:
        queue, _ = self._queue_of(caller, params)
        keys = self._get(params, "TagKeys", list, required=True) or []
        if not all(isinstance(key, str) for key in keys):
            raise _error("MalformedInput", "TagKeys must be a list of strings.")
        await self._stats(queue)
        if keys:
            await self._ask(PutQueue(queue, metadata=dict.fromkeys((TAG + key for key in keys), None)))
        return {}

    async def list_queue_tags(self, caller: Caller, params: Json) -> Json:
        queue, _ = self._queue_of(caller, params)
        stats = await self._stats(queue)
        tags = {key.removeprefix(TAG): value for key, value in stats.attributes.metadata if key.startswith(TAG)}
        return {"Tags": tags} if tags else {}

    @staticmethod
    def _check_tags(tags: Mapping[str, str], already: int = 0) -> None:
        if already + len(tags) > MAX_TAGS:
            raise _error("InvalidParameterValue", f"Too many tags: a queue has at most {MAX_TAGS}.")
        for key, value in tags.items():
            if not 1 <= len(key) <= 128 or len(value) > 256:
                raise _error(
                    "InvalidParameterValue", f"Tag {key[:128]!r}: keys are 1 to 128 characters, values at most 256."
                )

    # ---- sending ----

    async def send_message(self, caller: Caller, params: Json) -> Json:
        queue, _ = self._queue_of(caller, params)
        stats = await self._stats(queue)
        outgoing, reply = self._outgoing(params, stats)
        (message_id,) = await self._ask(Send(queue, (outgoing,)))
        return {**reply, **_sequenced(queue, message_id), "MessageId": message_id}

    async def send_message_batch(self, caller: Caller, params: Json) -> Json:
        queue, _ = self._queue_of(caller, params)
        entries = self._entries(params, "SendMessageBatchRequestEntry")
        stats = await self._stats(queue)
        total = sum(
            len(str(entry.get("MessageBody", "")).encode()) + len(json.dumps(entry.get("MessageAttributes", {})))
            for entry in entries
        )
        if total > wire.MAX_MESSAGE_SIZE_BYTES:
            raise _error("BatchRequestTooLong", wire.batch_too_long_message(total))
        accepted: list[tuple[str, Outgoing, Json]] = []
        failed: list[Json] = []
        for entry in entries:
            try:
                outgoing, reply = self._outgoing(entry, stats)
            except wire.SqsError as error:
                failed.append(_failure(entry["Id"], error))
            else:
                accepted.append((entry["Id"], outgoing, reply))
        successful = []
        if accepted:
            ids = await self._ask(Send(queue, [outgoing for _, outgoing, _ in accepted]))
            successful = [
                {"Id": entry_id, "MessageId": message_id, **reply, **_sequenced(queue, message_id)}
                for (entry_id, _, reply), message_id in zip(accepted, ids, strict=True)
            ]
        return {"Successful": successful, "Failed": failed}

    def _outgoing(self, params: Json, stats: QueueStats) -> tuple[Outgoing, Json]:
        """One SendMessage (or batch entry) as the message to send, and the digests to reply with."""
        body = self._text(params, "MessageBody", required=True)
        assert body is not None
        if not body:
            raise _error("MissingParameter", "The request must contain the parameter MessageBody.")
        if not wire.is_valid_text(body):
            raise _error("InvalidMessageContents", wire.INVALID_CHARACTERS_MESSAGE)
        delay = self._get(params, "DelaySeconds", int)
        if delay is not None and not 0 <= delay <= 900:
            raise _invalid("DelaySeconds", delay, "DelaySeconds must be >= 0 and <= 900.")
        fifo = is_fifo(stats.name)
        group = self._text(params, "MessageGroupId")
        if group is not None and not wire.is_valid_fifo_token(group):
            raise _error("InvalidParameterValue", wire.fifo_token_invalid_message(group, "MessageGroupId"))
        dedup_id = self._text(params, "MessageDeduplicationId")
        if dedup_id is not None and not fifo:
            raise _invalid(
                "MessageDeduplicationId",
                dedup_id,
                "The request includes a parameter that is not valid for this queue type.",
            )
        if dedup_id is not None and not wire.is_valid_fifo_token(dedup_id):
            raise _error("InvalidParameterValue", wire.fifo_token_invalid_message(dedup_id, "MessageDeduplicationId"))
        if fifo:
            if group is None:
                raise _error("MissingParameter", "The request must contain the parameter MessageGroupId.")
            if delay:  # the queue's delay applies to every message of a FIFO queue
                raise _invalid(
                    "DelaySeconds", delay, "The request include parameter that is not valid for this queue type."
                )
            delay = None
            dedup_id = self._dedup_id(stats, body, dedup_id)
        typed = self._typed_attributes(params, "MessageAttributes")
        wire.validate_message_attributes(typed)
        system = self._typed_attributes(params, "MessageSystemAttributes")
        wire.validate_message_system_attributes(system)
        limit = stats.attributes.max_message_bytes or self._settings.max_message_bytes
        if wire.message_size(body, typed) > limit:
            raise _error("InvalidParameterValue", wire.message_too_long_message(limit))
        attributes = tuple(sorted((name, _stored(value)) for name, value in typed.items()))
        reply: Json = {"MD5OfMessageBody": wire.md5_of_body(body)}
        if typed:
            reply["MD5OfMessageAttributes"] = wire.md5_of_message_attributes(typed)
        if system:
            reply["MD5OfMessageSystemAttributes"] = wire.md5_of_message_system_attributes(system)
        payload = Payload(body.encode("utf-8"), TEXT, attributes)
        per_group = dict(stats.attributes.metadata).get(SETTING + "DeduplicationScope") == "messageGroup"
        return Outgoing(payload, None if delay is None else float(delay), 0, dedup_id, group, per_group), reply

    @staticmethod
    def _dedup_id(stats: QueueStats, body: str, dedup_id: str | None) -> str:
        """A FIFO send's deduplication id: the MessageDeduplicationId, or with ContentBasedDeduplication the
        SHA-256 of the body (in hex, as SQS makes it)."""
        settings = dict(stats.attributes.metadata)
        if dedup_id is None:
            if settings.get(SETTING + "ContentBasedDeduplication") != "true":
                raise _error(
                    "InvalidParameterValue",
                    "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId"
                    " provided explicitly",
                )
            dedup_id = hashlib.sha256(body.encode("utf-8")).hexdigest()
        return dedup_id

    def _typed_attributes(self, params: Json, name: str) -> dict[str, wire.TypedAttribute]:
        given = self._get(params, name, dict) or {}
        typed = {}
        for key, value in given.items():
            if not isinstance(value, dict):
                raise _error("MalformedInput", f"{name}.{key} must be an object.")
            if value.get("StringListValues") or value.get("BinaryListValues"):
                raise _error(
                    "UnsupportedOperation", "Message attribute list values in SendMessage operation are not supported."
                )
            binary = value.get("BinaryValue")
            if binary is not None:
                try:
                    binary = base64.b64decode(binary, validate=True)
                except (binascii.Error, TypeError, ValueError):
                    raise _error("MalformedInput", f"{name}.{key}.BinaryValue is not base64.") from None
            data_type = value.get("DataType")
            string = value.get("StringValue")
            if not isinstance(data_type, str) or (string is not None and not isinstance(string, str)):
                raise _error("MalformedInput", f"{name}.{key} needs a DataType and a string StringValue.")
            typed[key] = wire.TypedAttribute(data_type, string, binary)
        return typed

    # ---- receiving ----

    async def receive_message(self, caller: Caller, params: Json) -> Json:
        queue, _ = self._queue_of(caller, params)
        count = self._get(params, "MaxNumberOfMessages", int)
        if count is not None and not 1 <= count <= MAX_RECEIVE:
            raise _invalid("MaxNumberOfMessages", count, f"Must be between 1 and {MAX_RECEIVE}, if provided.")
        visibility = self._get(params, "VisibilityTimeout", int)
        if visibility is not None and not 0 <= visibility <= 43_200:
            raise _invalid("VisibilityTimeout", visibility, "Must be >= 0 and <= 43200, if provided.")
        wait = self._get(params, "WaitTimeSeconds", int)
        if wait is not None and not 0 <= wait <= MAX_WAIT:
            raise _invalid("WaitTimeSeconds", wait, "Must be >= 0 and <= 20, if provided.")
        system = self._names(params, "AttributeNames") + self._names(params, "MessageSystemAttributeNames")
        for name in system:
            if name != "All" and name not in SYSTEM_ATTRIBUTES:
                raise wire.unknown_attribute(name)
        wanted = self._names(params, "MessageAttributeNames")
        attempt = self._text(params, "ReceiveRequestAttemptId")
        if attempt is not None and not wire.is_valid_fifo_token(attempt):
            raise _error("InvalidParameterValue", wire.fifo_token_invalid_message(attempt, "ReceiveRequestAttemptId"))
        stats = await self._stats(queue)
        seconds = None if visibility is None else max(float(visibility), MIN_LEASE)
        retrying = attempt is not None and is_fifo(queue)
        if retrying:
            again = await self._retry(queue, attempt or "", seconds or stats.attributes.visibility_timeout)
            if again is not None:
                return {"Messages": again}
        if wait is None:
            wait = int(dict(stats.attributes.metadata).get(SETTING + "ReceiveMessageWaitTimeSeconds", "0"))
        leases = await self._ask(
            Receive(
                queue,
                max_messages=count or 1,
                visibility_timeout=seconds,
                wait=float(wait),
            )
        )
        messages = [self._message(caller, queue, lease, system, wanted) for lease in leases]
        if retrying and messages:
            receipts = [(lease.id, lease.receipt) for lease in leases]
            self._attempts[queue, attempt or ""] = Attempt(messages, receipts, trio.current_time() + ATTEMPT_WINDOW)
        return {"Messages": messages} if messages else {}

    async def _retry(self, queue: str, attempt: str, seconds: float) -> list[Json] | None:
        """The messages an earlier receive with this ReceiveRequestAttemptId returned, with their leases renewed
        for `seconds`, if that receive is less than 5 minutes old and all of its leases are still live (as in
        SQS: none was deleted or let go since); otherwise None, and the caller receives anew."""
        now = trio.current_time()
        while self._attempts and (
            next(iter(self._attempts.values())).expires <= now or len(self._attempts) > MAX_ATTEMPTS
        ):
            self._attempts.popitem(last=False)
        earlier = self._attempts.pop((queue, attempt), None)
        if earlier is None:
            return None
        for message_id, receipt in earlier.receipts:
            try:
                await self._handle.ask(ChangeVisibility(queue, message_id, receipt, seconds))
            except (LeaseLost, MessageNotFound):
                return None
        self._attempts[queue, attempt] = earlier  # still retryable until its window ends
        return earlier.messages

    def _names(self, params: Json, name: str) -> list[str]:
        names = self._get(params, name, list) or []
        if not all(isinstance(item, str) for item in names):
            raise _error("MalformedInput", f"{name} must be a list of strings.")
        return names

    def _message(self, caller: Caller, queue: str, lease: Lease, system: Sequence[str], wanted: Sequence[str]) -> Json:
        body = _body_text(lease.payload)
        # A receipt handle names its queue too, so that one used on another queue is refused, as in SQS.
        handle = base64.urlsafe_b64encode(f"{queue}\n{lease.receipt}".encode()).decode("ascii").rstrip("=")
        message: Json = {
            "MessageId": lease.id,
            "ReceiptHandle": handle,
            "MD5OfBody": wire.md5_of_body(body),
            "Body": body,
        }
        everything = "All" in system
        attributes = {
            "SenderId": caller.account,
            "SentTimestamp": str(int(lease.sent_at * 1000)),
            "ApproximateReceiveCount": str(lease.receive_count),
            "ApproximateFirstReceiveTimestamp": str(int(lease.first_received_at * 1000)),
        }
        if lease.source_queue is not None:
            attributes["DeadLetterQueueSourceArn"] = caller.arn_of(lease.source_queue)
        if lease.group is not None:
            attributes["MessageGroupId"] = lease.group
        if is_fifo(queue):
            attributes["SequenceNumber"] = _sequence_number(lease.id)
            if lease.dedup_id is not None:
                attributes["MessageDeduplicationId"] = lease.dedup_id
        chosen = {key: value for key, value in attributes.items() if everything or key in system}
        if chosen:
            message["Attributes"] = chosen
        typed = {
            name: _typed(value)
            for name, value in lease.payload.attributes
            if any(_matches(name, pattern) for pattern in wanted)
        }
        if typed:
            message["MD5OfMessageAttributes"] = wire.md5_of_message_attributes(typed)
            message["MessageAttributes"] = {name: _attribute_json(value) for name, value in typed.items()}
        return message

    # ---- settling ----

    def _receipt(self, queue: str, handle: str | None) -> tuple[str, str]:
        """(message id, WonderQ receipt) of a receipt handle of `queue`; ReceiptHandleIsInvalid for anything
        else, a handle of another queue included."""
        invalid = _error(
            "ReceiptHandleIsInvalid", f'The input receipt handle "{handle}" is not a valid receipt handle.'
        )
        try:
            text = base64.urlsafe_b64decode((handle or "") + "=" * (-len(handle or "") % 4)).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise invalid from None
        owner, separator, receipt = text.partition("\n")
        if not separator or owner != queue:
            raise invalid
        try:
            return split_receipt(receipt), receipt
        except InvalidReceipt:
            raise invalid from None

    async def delete_message(self, caller: Caller, params: Json) -> Json:
        queue, _ = self._queue_of(caller, params)
        handle = self._text(params, "ReceiptHandle", required=True)
        # Any receipt the message had deletes it, as in SQS (API v1 wants the live lease's).
        await self._ask(Delete(queue, self._receipt(queue, handle)[0]))
        return {}

    async def delete_message_batch(self, caller: Caller, params: Json) -> Json:
        queue, _ = self._queue_of(caller, params)
        entries = self._entries(params, "DeleteMessageBatchRequestEntry")
        await self._stats(queue)

        async def delete(entry: Json) -> None:
            message_id, _ = self._receipt(queue, self._text(entry, "ReceiptHandle", required=True))
            await self._ask(Delete(queue, message_id))

        return await _each_entry(entries, delete)

    async def change_message_visibility(self, caller: Caller, params: Json) -> Json:
        queue, _ = self._queue_of(caller, params)
        await self._change_visibility(queue, params)
        return {}

    async def change_message_visibility_batch(self, caller: Caller, params: Json) -> Json:
        queue, _ = self._queue_of(caller, params)
        entries = self._entries(params, "ChangeMessageVisibilityBatchRequestEntry")
        await self._stats(queue)
        return await _each_entry(entries, lambda entry: self._change_visibility(queue, entry))

    async def _change_visibility(self, queue: str, params: Json) -> None:
        handle = self._text(params, "ReceiptHandle", required=True)
        seconds = self._get(params, "VisibilityTimeout", int, required=True)
        assert handle is not None
        assert seconds is not None
        if not 0 <= seconds <= 43_200:
            raise _invalid("VisibilityTimeout", seconds, "Must be >= 0 and <= 43200.")
        message_id, receipt = self._receipt(queue, handle)
        try:
            await self._handle.ask(ChangeVisibility(queue, message_id, receipt, float(seconds)))
        except (LeaseLost, MessageNotFound):
            raise _error(
                "MessageNotInflight", "Message does not exist or is not available for visibility timeout change."
            ) from None
        except QueueNotFound:
            raise _error("QueueDoesNotExist", NO_QUEUE) from None

    def _entries(self, params: Json, entry_name: wire.BatchEntryName) -> list[Json]:
        entries = self._get(params, "Entries", list, required=True) or []
        if not all(isinstance(entry, dict) and isinstance(entry.get("Id"), str) for entry in entries):
            raise _error("MalformedInput", "Entries must be objects, each with a string Id.")
        wire.validate_batch_entries([entry["Id"] for entry in entries], entry_name)
        return entries

    # ---- dead letters and moving them back ----

    async def list_dead_letter_source_queues(self, caller: Caller, params: Json) -> Json:
        queue, _ = self._queue_of(caller, params)
        await self._stats(queue)
        names = sorted(  # the sources the caller may monitor too
            name
            for stats in await self._ask(ListQueues())
            if stats.attributes.dead_letter_queue == queue
            and (name := caller.owns(stats.name)) is not None
            and caller.may(stats.name)
        )
        return self._page(params, [caller.url(name) for name in names], "queueUrls", key=names)

    async def start_message_move_task(self, caller: Caller, params: Json) -> Json:
        source_arn = self._text(params, "SourceArn", required=True)
        destination_arn = self._text(params, "DestinationArn")
        rate = self._get(params, "MaxNumberOfMessagesPerSecond", int)
        assert source_arn is not None
        if rate is not None and not 1 <= rate <= MAX_MOVE_RATE:
            raise _invalid("MaxNumberOfMessagesPerSecond", rate, f"Must be between 1 and {MAX_MOVE_RATE}.")
        source = await self._existing_arn(caller, source_arn, "SourceArn")
        destination = (
            None if destination_arn is None else await self._existing_arn(caller, destination_arn, "DestinationArn")
        )
        if not any(stats.attributes.dead_letter_queue == source for stats in await self._ask(ListQueues())):
            raise _error("InvalidParameterValue", "Source queue must be configured as a Dead Letter Queue.")
        moved = 0
        while True:  # in steps, as API v1's redrive, so that other requests go between them
            report = await self._ask(Redrive(source, destination, MAX_REDRIVE))
            moved += report.moved
            if report.moved < MAX_REDRIVE:
                break
        handle = base64.b64encode(
            json.dumps({"taskId": str(uuid.uuid4()), "sourceArn": source_arn}, separators=(",", ":")).encode()
        ).decode()
        task = MoveTask(handle, source_arn, destination_arn, rate, moved, int(self._clock.now() * 1000))
        tasks = self._tasks.setdefault(source, [])
        tasks.insert(0, task)
        del tasks[MAX_MOVE_TASKS:]
        return {"TaskHandle": handle}

    async def _existing_arn(self, caller: Caller, arn: str, parameter: str) -> str:
        if not arn.startswith("arn:") or len(arn.split(":")) != 6:
            raise _error(
                "InvalidParameterValue",
                f"You must use this format to specify the {parameter}: "
                "arn:<partition>:<service>:<region>:<account-id>:<resource-id>",
            )
        missing = _error(
            "ResourceNotFoundException", f"The resource that you specified for the {parameter} parameter doesn't exist."
        )
        queue = self._queue_of_arn(caller, arn)
        if queue is None:
            raise missing
        caller.require(queue)
        try:
            await self._handle.ask(GetQueue(queue))
        except QueueNotFound:
            raise missing from None
        return queue

    async def list_message_move_tasks(self, caller: Caller, params: Json) -> Json:
        source_arn = self._text(params, "SourceArn", required=True)
        limit = self._get(params, "MaxResults", int)
        assert source_arn is not None
        if limit is not None and not 1 <= limit <= MAX_MOVE_TASKS:
            raise _invalid("MaxResults", limit, f"Must be between 1 and {MAX_MOVE_TASKS}.")
        source = await self._existing_arn(caller, source_arn, "SourceArn")
        results = []
        for task in self._tasks.get(source, [])[: limit or 1]:
            result: Json = {
                "Status": task.status,
                "SourceArn": task.source_arn,
                "ApproximateNumberOfMessagesMoved": task.moved,
                "ApproximateNumberOfMessagesToMove": task.moved,
                "StartedTimestamp": task.started_ms,
            }
            if task.destination_arn is not None:
                result["DestinationArn"] = task.destination_arn
            if task.rate is not None:
                result["MaxNumberOfMessagesPerSecond"] = task.rate
            results.append(result)
        return {"Results": results}

    async def cancel_message_move_task(self, caller: Caller, params: Json) -> Json:
        handle = self._text(params, "TaskHandle", required=True)
        for source, tasks in self._tasks.items():
            for task in tasks:
                if task.handle == handle:
                    caller.require(source)
                    # Tasks run to the end before StartMessageMoveTask replies: none is left to cancel.
                    raise _error(
                        "InvalidParameterValue", "Only active tasks can be cancelled; this task has completed."
                    )
        raise _error("ResourceNotFoundException", "Task does not exist.")

    async def unsupported(self, caller: Caller, params: Json) -> Json:
        raise _error(
            "UnsupportedOperation", "WonderQ does not support queue permissions (AddPermission, RemovePermission)."
        )

    # ---- shared parsing ----

    def _string_map(self, params: Json, name: str, *, required: bool = False) -> dict[str, str]:
        given = self._get(params, name, dict, required=required) or {}
        if not all(isinstance(key, str) and isinstance(value, str) for key, value in given.items()):
            raise _error("MalformedInput", f"{name} must map strings to strings.")
        return given


@dataclass(slots=True)
class _Changes:
    """Queue attributes to set, as a PutQueue takes them."""

    metadata: dict[str, str | None]
    visibility_timeout: float | None = None
    delay: float | None = None
    max_message_bytes: int | None = None
    retention: float | None = None
    max_receives: int | None = None
    dead_letter_queue: str | None = None

    def command(self, queue: str) -> PutQueue:
        return PutQueue(
            queue,
            visibility_timeout=self.visibility_timeout,
            delay=self.delay,
            max_message_bytes=self.max_message_bytes,
            retention=self.retention,
            max_receives=self.max_receives,
            dead_letter_queue=self.dead_letter_queue,
            metadata=self.metadata,
        )


def _as_sqs(error: WonderQError) -> wire.SqsError:
    """The SQS error that means what a WonderQ error means, with its Retry-After. Over its rate a client gets
    RequestThrottled (403, as SQS's model has it), which botocore retries; a full queue or too many queues is
    OverLimit (403, SQS's error for a limit reached); any other WonderQ error of status 5xx (shutting down,
    storage, an overloaded actor, too many long polls) is ServiceUnavailable (503), which SDKs retry too."""
    code = "InvalidParameterValue"
    message = error.message
    if isinstance(error, QueueNotFound):
        code, message = "QueueDoesNotExist", NO_QUEUE
    elif isinstance(error, RateLimited):
        code = "RequestThrottled"
    elif isinstance(error, QueueFull | TooManyQueues):
        code = "OverLimit"
    elif isinstance(error, Forbidden | CrossSiteRefused):
        code = "AccessDenied"
    elif isinstance(error, Unauthorized):
        code = "MissingAuthenticationToken"
    elif error.status >= 500:
        code = "ServiceUnavailable"
    return wire.SqsError(code, message, error.retry_after)


def error_reply(error: WonderQError) -> Response:
    """A WonderQ error raised before the endpoint ran (the HTTP gate's: a Host not served, a cross-site request,
    the server's rate) as the SQS error an SDK can read."""
    return _error_response(_as_sqs(error), str(uuid.uuid4()))


def _error_response(error: wire.SqsError, request_id: str) -> Response:
    status, headers, body = wire.error_response(error.code, error.message, request_id)
    if error.retry_after is not None:
        headers["Retry-After"] = retry_after_header(error.retry_after)
    return Response(body, status=status, headers=headers)


def _check_clock_skew(amz_date: str, signed_at: int, now: float) -> None:
    """SignatureDoesNotMatch, with AWS's texts, for a signature made more than MAX_CLOCK_SKEW seconds before or
    after `now` (epoch seconds)."""
    skew = wire.MAX_CLOCK_SKEW
    if now - signed_at > skew:
        raise _error(
            "SignatureDoesNotMatch",
            f"Signature expired: {amz_date} is now earlier than {_amz_date(now - skew)} ({_amz_date(now)} - 15 min.)",
        )
    if signed_at - now > skew:
        raise _error(
            "SignatureDoesNotMatch",
            f"Signature not yet current: {amz_date} is still later than {_amz_date(now + skew)}"
            f" ({_amz_date(now)} + 15 min.)",
        )


def _amz_date(epoch_seconds: float) -> str:
    return time.strftime(wire.AMZ_DATE_FORMAT, time.gmtime(epoch_seconds))


def _valid_name(name: str) -> bool:
    return wire.is_valid_queue_name(name, fifo=name.endswith(".fifo"))


def _sequence_number(message_id: str) -> str:
    """A FIFO message's SequenceNumber: its id (which grows with every send) as 20 decimal digits."""
    return f"{int(message_id, 16):020d}"


def _sequenced(queue: str, message_id: str) -> Json:
    return {"SequenceNumber": _sequence_number(message_id)} if is_fifo(queue) else {}


async def _each_entry(entries: Sequence[Json], settle: Callable[[Json], Awaitable[None]]) -> Json:
    """A settling batch's reply: each entry settled on its own, its failure reported with its Id (a queue that
    does not exist fails the whole request instead)."""
    successful, failed = [], []
    for entry in entries:
        try:
            await settle(entry)
        except wire.SqsError as error:
            if error.code == "QueueDoesNotExist":
                raise
            failed.append(_failure(entry["Id"], error))
        else:
            successful.append({"Id": entry["Id"]})
    return {"Successful": successful, "Failed": failed}


def _failure(entry_id: str, error: wire.SqsError) -> Json:
    spec = error.spec
    return {"Id": entry_id, "SenderFault": spec.sender_fault, "Code": spec.query_code, "Message": error.message}


def _stored(value: wire.TypedAttribute) -> AttributeValue:
    """An SQS attribute as a WonderQ attribute: a String is plain text, shared with API v1 as it is."""
    if value.binary_value is not None:
        return TypedValue(value.data_type, value.binary_value)
    text = value.string_value or ""
    return text if value.data_type == "String" else TypedValue(value.data_type, text)


def _typed(value: AttributeValue) -> wire.TypedAttribute:
    if isinstance(value, str):
        return wire.TypedAttribute("String", value)
    if isinstance(value.value, bytes):
        return wire.TypedAttribute(value.data_type, binary_value=value.value)
    return wire.TypedAttribute(value.data_type, value.value)


def _attribute_json(value: wire.TypedAttribute) -> Json:
    if value.binary_value is not None:
        return {"DataType": value.data_type, "BinaryValue": base64.b64encode(value.binary_value).decode("ascii")}
    return {"DataType": value.data_type, "StringValue": value.string_value}


def _matches(name: str, pattern: str) -> bool:
    """MessageAttributeNames: "All" or ".*" for every attribute, "prefix.*" for names starting "prefix."."""
    if pattern in ("All", ".*"):
        return True
    if pattern.endswith(".*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _body_text(payload: Payload) -> str:
    """A message body as SQS's Body: text as it is; a body sent over API v1 that is not text, in base64."""
    media = payload.content_type.split(";", 1)[0].strip().lower()
    if media.startswith("text/") or media == "application/json" or media.endswith("+json"):
        return payload.data.decode("utf-8", errors="replace")
    return base64.b64encode(payload.data).decode("ascii")


class AccountId(BaseConverter):
    """The account segment of a queue URL path: 12 digits, as in SQS."""

    regex = r"[0-9]{12}"


def install(app: QuartTrio, handle: ActorHandle, settings: Settings, access: Access) -> None:
    """Serve SQS on `POST /` of `app` (and on `POST /<account>/<queue>`, where some SDKs send queue actions),
    signed by the SQS keys of `access` and within its rates."""
    adapter = SqsAdapter(handle, settings, access)

    @sqs_route
    @openapi.operation(
        summary="Amazon SQS, AWS JSON 1.0: X-Amz-Target: AmazonSQS.<Action> (docs/sqs.md)",
        tag="sqs",
        reply_type=wire.JSON_CONTENT_TYPE,
        errors=(400, 403, 404, 408, 413),  # SQS's statuses (docs/sqs.md); 503 ServiceUnavailable comes with every route
        error_type=wire.JSON_CONTENT_TYPE,
    )
    async def sqs_endpoint(**_: str) -> Response:
        return await adapter.serve()

    app.add_url_rule("/", "sqs", sqs_endpoint, methods=["POST"])
    # Only a 12-digit account: any two-segment POST (POST /v1/queues, say) would otherwise reach this endpoint.
    app.url_map.converters["account"] = AccountId
    app.add_url_rule("/<account:account>/<queue>", "sqs_queue", sqs_endpoint, methods=["POST"])
