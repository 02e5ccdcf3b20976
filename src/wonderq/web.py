"""The HTTP API (v1 and the classic routes): parse and validate a request, send one command, render the reply.

No queue rule lives here; the core decides. Errors of every kind leave through one handler as
`{"error": {"code", "message"}}` with the status the error carries.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import orjson
import pydantic_core
import trio
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator
from quart import Response, g, has_request_context, request, websocket
from quart.typing import ResponseTypes
from quart_trio import QuartTrio
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import HTTPException

from wonderq import __version__, dashboard, gate, openapi, sqs, stream
from wonderq.access import Access, need_of, needs, public
from wonderq.actor import ActorHandle
from wonderq.commands import (
    MAX_WAIT,
    Ack,
    AckBatch,
    ChangeVisibility,
    DeleteQueue,
    GetQueue,
    ListQueues,
    Peek,
    Purge,
    PutQueue,
    Receive,
    Redrive,
    Send,
)
from wonderq.config import Settings
from wonderq.core import MAX_PEEK, MAX_REDRIVE, check_queue_name, make_attributes
from wonderq.errors import (
    InvalidBody,
    InvalidParameter,
    MessageTooLarge,
    MethodNotAllowed,
    RequestTimeout,
    RequestTooLarge,
    RouteNotFound,
    TooManyQueues,
    Unauthorized,
    WonderQError,
)
from wonderq.gate import current_principal, require
from wonderq.jsonbody import describe, from_values, read_json
from wonderq.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from wonderq.model import NO_ATTRIBUTES, Attributes, Lease, MessageView, Outgoing, Payload, QueueStats, State
from wonderq.principals import Permission
from wonderq.ratelimit import retry_after_header

log = logging.getLogger("wonderq.web")
access_log = logging.getLogger("wonderq.access")

SEND, RECEIVE, ADMIN, MONITOR = Permission.SEND, Permission.RECEIVE, Permission.ADMIN, Permission.MONITOR

CLASSIC_QUEUE = "default"  # the queue the classic routes (/addMessage, ...) work on
API_DOCS_ASSETS = {  # the Swagger UI files the page loads, all from the swagger-ui-bundle package
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
API_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WonderQ API</title>
<link rel="stylesheet" href="/api-docs/assets/swagger-ui.css">
<link rel="icon" href="/api-docs/assets/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="/api-docs/assets/swagger-ui-bundle.js"></script>
<script src="/api-docs/assets/swagger-ui-standalone-preset.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout"});</script>
</body></html>
"""
IDEMPOTENCY_HEADER = "Idempotency-Key"  # on a single send: its dedup id
REQUEST_ID_HEADER = "X-Request-Id"  # taken from the request when it is a sane token, else made; on every reply
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ATTRIBUTE_PARAMETER = "attribute."  # on a single send, `?attribute.<name>=<value>` gives the message an attribute
MAX_REDRIVE_MESSAGES = 2**31 - 1  # the largest `max` a redrive takes
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# ---- links: what a client calls next with what a reply gave it (the document's `links`) -----------------

SAME_QUEUE = ("name", "$request.path.name")
FIRST_LEASE = "$response.body#/messages/0"
NEXT_SEND = openapi.Link("send", "send_post", "Send to this queue", (SAME_QUEUE,))
NEXT_RECEIVE = openapi.Link("receive", "receive_post", "Receive from this queue", (SAME_QUEUE,))
RECEIVED = (
    openapi.Link(
        "ack",
        "ack_delete",
        "Acknowledge the first message received",
        (SAME_QUEUE, ("message_id", f"{FIRST_LEASE}/id"), ("receipt", f"{FIRST_LEASE}/receipt")),
    ),
    openapi.Link(
        "release",
        "change_visibility_patch",
        "Release the first message received",
        (SAME_QUEUE, ("message_id", f"{FIRST_LEASE}/id")),
        {"receipt": f"{FIRST_LEASE}/receipt", "visibility_timeout": 0},
    ),
    openapi.Link(
        "ack_batch",
        "ack_batch_post",
        "Acknowledge the first message received, in a batch",
        (SAME_QUEUE,),
        {"receipts": [f"{FIRST_LEASE}/receipt"]},
    ),
)


# ---- bodies: how a content type is stored and shown ---------------------------------------------------


@functools.lru_cache(maxsize=256)  # per message sent and shown, and content types repeat: about 0.5 µs a call saved
def encoding_of(content_type: str) -> str:
    """'json' for JSON media types, 'text' for text/*, 'base64' for everything else."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return "json"
    if media.startswith("text/"):
        return "text"
    return "base64"


def _charset(content_type: str) -> str:
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


def make_payload(data: bytes, content_type: str, where: str = "message") -> Payload:
    """Check that a body is what its content type says and return it as stored (text as UTF-8)."""
    encoding = encoding_of(content_type)
    if encoding == "text":
        try:
            text = data.decode(_charset(content_type))
        except (UnicodeDecodeError, LookupError) as error:
            raise InvalidBody(f"{where}: the body is not valid {content_type} text: {error}") from None
        return Payload(text.encode("utf-8"), content_type)
    if encoding == "json" and data:
        try:
            # pydantic-core's parser, as for JSON request bodies: strict RFC 8259 (no NaN, no lone surrogates,
            # no byte-order mark), integers of any size, and the same nesting limit (about 200 levels) as a
            # batch entry, deep enough for real data yet safe for every JSON reader a consumer may use.
            pydantic_core.from_json(data, allow_inf_nan=False, cache_strings=False)
        except ValueError as error:
            raise InvalidBody(f"{where}: the body is not valid JSON: {error}") from None
    return Payload(data, content_type)


def render_body(payload: Payload) -> dict[str, Any]:
    encoding = encoding_of(payload.content_type)
    if encoding == "json":
        return {"body": orjson.Fragment(payload.data), "encoding": "json"}
    if encoding == "text":
        return {"body": payload.data.decode("utf-8"), "encoding": "text"}
    return {"body_base64": base64.b64encode(payload.data).decode("ascii"), "encoding": "base64"}


# ---- request shapes -----------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueueAttributesIn(_Strict):
    visibility_timeout: float | None = None
    max_in_flight: int | None = None
    delay: float | None = None
    max_message_bytes: int | None = None
    retention: float | None = None
    max_receives: int | None = None
    dead_letter_queue: str | None = None  # null removes it


class RedriveIn(_Strict):
    destination: str | None = None  # None: each message's source queue
    max: Annotated[int, Field(ge=1, le=MAX_REDRIVE_MESSAGES)] | None = None  # None: every ready message


class SendParamsIn(_Strict):
    """Options of a single send, as query parameters."""

    delay: float | None = None
    priority: int = 0
    group: str | None = None


class ReceiveIn(_Strict):
    max: int = 1
    visibility_timeout: float | None = None
    wait: Annotated[float, Field(ge=0, le=MAX_WAIT, allow_inf_nan=False)] = 0.0
    consumer: str | None = None


class BatchEntryIn(_Strict):
    body: JsonValue = None
    body_base64: str | None = None
    content_type: str | None = None
    delay: float | None = None
    priority: int = 0
    dedup_id: str | None = None
    attributes: dict[str, str] | None = None
    group: str | None = None

    @model_validator(mode="after")
    def _one_body(self) -> BatchEntryIn:
        if ("body" in self.model_fields_set) == (self.body_base64 is not None):
            raise ValueError("give exactly one of body and body_base64")
        return self


class BatchIn(_Strict):
    messages: list[BatchEntryIn]


class AckIn(_Strict):
    receipts: list[str]


class ChangeVisibilityIn(_Strict):
    receipt: str
    visibility_timeout: float


class AckParamsIn(BaseModel):
    """The query of a single ack. Other parameters are ignored (as they always were on this route)."""

    model_config = ConfigDict(frozen=True)
    receipt: Annotated[str, Field(min_length=1)]


class ClassicReadIn(BaseModel):
    """The query of the classic `GET /readMessage`: other parameters are ignored (cache busters, say)."""

    model_config = ConfigDict(frozen=True)
    time: float | None = None  # the visibility timeout, in seconds; None: the queue's


class ClassicProcessIn(BaseModel):
    """The query of the classic `PATCH /processMessage/<id>`: other parameters are ignored."""

    model_config = ConfigDict(frozen=True)
    receipt: str | None = None  # without one, the message is acknowledged whoever leased it


class PeekIn(_Strict):
    state: State | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_PEEK)] = 100
    after: str | None = None


def _json_text(value: JsonValue, where: str) -> bytes:
    """A parsed JSON body as JSON text again. Not orjson: it stops at 64-bit integers and writes NaN as null.
    NaN, the infinities and lone surrogates get through the request parser but are not valid JSON text, so
    they are refused here (encoding a lone surrogate as UTF-8 raises a ValueError too)."""
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except ValueError as error:
        raise InvalidBody(f"{where}: the body is not valid JSON: {error}") from None


def _entry_payload(index: int, entry: BatchEntryIn) -> Payload:
    # Per entry of every batch and streamed send: the common case (a text or JSON body, no attributes) makes no
    # string or call it does not need (the `where` of an error only on an error).
    attributes = make_attributes(entry.attributes) if entry.attributes else NO_ATTRIBUTES
    if entry.body_base64 is not None:
        where = f"message {index}"
        try:
            data = base64.b64decode(entry.body_base64, validate=True)
        except ValueError:  # binascii.Error (not base64), or a character beyond ASCII
            raise InvalidBody(f"{where}: body_base64 is not valid base64") from None
        return make_payload(data, entry.content_type or DEFAULT_CONTENT_TYPE, where)._replace(attributes=attributes)
    content_type = entry.content_type or "application/json"
    encoding = encoding_of(content_type)
    if encoding == "text" and isinstance(entry.body, str):
        return Payload(entry.body.encode("utf-8"), content_type, attributes)
    if encoding == "json":
        return Payload(_json_text(entry.body, f"message {index}"), content_type, attributes)  # valid by construction
    raise InvalidBody(
        f"message {index}: a body of type {content_type} must be given as a string (text/*) or as body_base64"
    )


def batch_messages(batch: BatchIn) -> list[Outgoing]:
    return [
        Outgoing(_entry_payload(index, entry), entry.delay, entry.priority, entry.dedup_id, entry.group)
        for index, entry in enumerate(batch.messages)
    ]


def entries_messages(entries: Sequence[Any]) -> list[Outgoing]:
    """Batch entries given as parsed JSON (the streaming path's send frames), checked as a batch request is."""
    try:
        batch = BatchIn.model_validate({"messages": list(entries)}, strict=True)
    except ValidationError as error:
        raise InvalidParameter(describe(error)) from None
    return batch_messages(batch)


# ---- replies ------------------------------------------------------------------------------------------


def json_response(value: object, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status=status, content_type="application/json")


def no_content() -> Response:
    return Response(b"", status=204)


def render_stats(stats: QueueStats) -> dict[str, Any]:
    return {
        "name": stats.name,
        "attributes": {
            "visibility_timeout": stats.attributes.visibility_timeout,
            "max_in_flight": stats.attributes.max_in_flight,
            "delay": stats.attributes.delay,
            "max_message_bytes": stats.attributes.max_message_bytes,
            "retention": stats.attributes.retention,
            "max_receives": stats.attributes.max_receives,
            "dead_letter_queue": stats.attributes.dead_letter_queue,
        },
        "created_at": stats.created_at,
        "ready": stats.ready,
        "leased": stats.leased,
        "delayed": stats.delayed,
        "sent": stats.sent,
        "received": stats.received,
        "acked": stats.acked,
        "expired": stats.expired,
        "released": stats.released,
        "dropped": stats.dropped,
        "dead_lettered": stats.dead_lettered,
        "redriven": stats.redriven,
        "dead_letters": stats.dead_letters,
        "oldest_sent_at": stats.oldest_sent_at,
    }


def render_attributes(attributes: Attributes) -> dict[str, str]:
    """Attributes as API v1 shows them: every value as text (a typed value sent over SQS shows its text, a
    Binary one its bytes in base64)."""
    shown = {}
    for name, value in attributes:
        if isinstance(value, str):
            shown[name] = value
        elif isinstance(value.value, bytes):
            shown[name] = base64.b64encode(value.value).decode("ascii")
        else:
            shown[name] = value.value
    return shown


def _message_fields(message: Lease | MessageView) -> dict[str, Any]:
    """What a delivery and a peeked message both show."""
    return {
        **render_body(message.payload),
        "content_type": message.payload.content_type,
        "attributes": render_attributes(message.payload.attributes),
        "priority": message.priority,
        "receive_count": message.receive_count,
        "sent_at": message.sent_at,
        "first_received_at": message.first_received_at,
        "lease_expires_at": message.lease_expires_at,
        "consumer": message.consumer,
        "source_queue": message.source_queue,
        "group": message.group,
        "dedup_id": message.dedup_id,
    }


def render_lease(lease: Lease) -> dict[str, Any]:
    return {"id": lease.id, "receipt": lease.receipt, **_message_fields(lease)}


def render_view(view: MessageView) -> dict[str, Any]:
    return {"id": view.id, "state": view.state.value, "visible_at": view.visible_at, **_message_fields(view)}


def error_response(error: WonderQError) -> Response:
    response = json_response({"error": {"code": error.code, "message": error.message}}, error.status)
    if error.retry_after is not None:
        response.headers["Retry-After"] = retry_after_header(error.retry_after)
    if isinstance(error, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="wonderq"'
    return response


def new_request_id() -> str:
    """A fresh request id: 32 random hex digits (as many random bits as a UUID, for a third of its cost)."""
    return os.urandom(16).hex()


ACCESS_FORMAT = "%s %s %d %.1f ms %s"  # method, path, status, milliseconds, request id


def log_access(level: int, args: tuple[object, ...], fields: dict[str, object]) -> None:
    """One access log record, as `access_log.log(level, ACCESS_FORMAT, *args, extra=fields)` makes it, minus
    the walk up the stack for the caller's file and line (no format of ours shows them): the record is made
    and handled directly."""
    record = access_log.makeRecord(
        access_log.name, level, __file__, 0, ACCESS_FORMAT, args, None, "_finish_request", fields
    )
    access_log.handle(record)


def _body_received(current: Any) -> bool:
    """Whether the whole body of the request being answered has arrived: it declared none, or quart's Body marks
    it complete."""
    declared = bool(current.content_length) or "chunked" in current.headers.get("Transfer-Encoding", "").lower()
    complete = getattr(current.body, "_complete", None)
    return not declared or complete is None or complete.is_set()


# ---- the app ------------------------------------------------------------------------------------------


def create_app(handle: ActorHandle, settings: Settings, access: Access | None = None) -> QuartTrio:
    """The app serving every front end through `handle`, with the access rules `access` (by default, those
    `settings` give: the auth file is read here)."""
    if access is None:
        access = Access.from_settings(settings)
    app = QuartTrio("wonderq", static_folder=None)  # the dashboard serves /static/ from its own assets
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["BODY_TIMEOUT"] = settings.body_timeout
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True

    @app.before_request
    async def _start_request() -> None:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = given if given and REQUEST_ID.fullmatch(given) else new_request_id()
        g.started = time.perf_counter()

    @app.before_websocket
    async def _start_websocket() -> None:
        given = websocket.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = given if given and REQUEST_ID.fullmatch(given) else new_request_id()
        g.started = time.perf_counter()

    gate.install(app, access)  # after the request id is set, so that every refusal carries it

    defaults: dict[type[BaseModel], Any] = {}  # each model with no parameters given, made once (they are frozen)

    def from_query(model: type[BaseModel], extra: Mapping[str, Any] | None = None, *, skip: str = "\0") -> Any:
        """The query parameters (but those starting with `skip`) as `model`, with `extra` on top."""
        args = request.args
        if not args and not extra:  # nothing to check: the defaults, valid by construction
            found = defaults.get(model)
            if found is None:
                found = defaults[model] = from_values(model, {})
            return found
        given = {key: value for key, value in args.items() if not key.startswith(skip)}
        return from_values(model, {**given, **(extra or {})})

    def attributes_from_query() -> Attributes:
        if not request.args:
            return NO_ATTRIBUTES
        given: dict[str, str] = {}
        for key, values in request.args.lists():
            if key.startswith(ATTRIBUTE_PARAMETER):
                name = key.removeprefix(ATTRIBUTE_PARAMETER)
                if len(values) > 1:
                    raise InvalidParameter(f"attribute {name[:100]!r} is given {len(values)} times")
                given[name] = values[0]
        return make_attributes(given)

    async def monitored_queues() -> list[QueueStats]:
        """Every queue's stats, but only the queues the request's principal may monitor."""
        principal = current_principal()
        queues = await handle.ask(ListQueues())
        if principal.allows_everywhere(MONITOR):
            return queues
        return [stats for stats in queues if principal.allows(MONITOR, stats.name)]

    async def read_message_body() -> Payload:
        """The raw request body as one message: capped at max_message_bytes while it streams in."""
        limit = settings.max_message_bytes
        too_large = MessageTooLarge(f"the message is larger than the limit of {limit} bytes")
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        data = bytearray()
        with trio.move_on_after(settings.body_timeout) as waited:
            async for chunk in request.body:
                data += chunk
                if len(data) > limit:
                    raise too_large
        if waited.cancelled_caught:
            raise RequestTimeout(f"the message did not arrive within {settings.body_timeout:g} s (BODY_TIMEOUT)")
        return make_payload(bytes(data), request.content_type or DEFAULT_CONTENT_TYPE)

    sqs.install(app, handle, settings, access)
    stream.install(app, handle, settings, entries_messages, render_lease)
    dashboard.install(app, handle, settings, access)

    @app.before_serving
    async def _create_classic_queue() -> None:
        try:
            await handle.ask(PutQueue(CLASSIC_QUEUE))
        except TooManyQueues:  # the store already holds MAX_QUEUES others: serve them, without the classic queue
            log.warning(
                "the queue %r could not be created: the server holds MAX_QUEUES queues; the classic routes answer"
                " queue_not_found until one is deleted and the server restarted",
                CLASSIC_QUEUE,
            )

    @app.errorhandler(WonderQError)
    async def _domain_error(error: WonderQError) -> Response:
        if has_request_context() and request.url_rule is not None:
            need = need_of(app.view_functions[request.url_rule.endpoint])
            if need is not None and need.sqs:  # the gate refused an SQS request: say so as SQS would
                return sqs.error_reply(error)
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 404:
            return error_response(RouteNotFound(f"no route {request.method} {request.path}"))
        if status == 405:
            response = error_response(MethodNotAllowed(f"{request.method} is not allowed on {request.path}"))
            if error.valid_methods:  # type: ignore[attr-defined]
                response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
            return response
        if status == 413:
            limit = settings.max_request_bytes
            return error_response(RequestTooLarge(f"the request body is larger than {limit} bytes"))
        code = (error.name or "http_error").lower().replace(" ", "_")
        return json_response({"error": {"code": code, "message": error.description or ""}}, status)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        request_id = getattr(g, "request_id", None)
        method, path = (request.method, request.path) if has_request_context() else ("GET", websocket.path)
        log.exception(
            "unexpected error on %s %s (request %s)",
            method,
            path,
            request_id,
            extra={"request_id": request_id, "method": method, "path": path},
        )
        return json_response({"error": {"code": "internal_error", "message": "internal error"}}, 500)

    @app.after_request
    async def _finish_request(response: Response) -> Response:
        """The request id on the reply, one access log line, and the request in the metrics."""
        request_id = getattr(g, "request_id", None) or new_request_id()
        response.headers[REQUEST_ID_HEADER] = request_id
        current = request._get_current_object()  # type: ignore[attr-defined]  # once, not through the proxy
        if not _body_received(current):
            # Answered before its body arrived (a message over the limit, a refusal): hypercorn will close the
            # connection rather than read the rest, so say so, or a client would send its next request into it.
            response.headers["Connection"] = "close"
        record_request(current, current.method, response.status_code, request_id)
        return response

    @app.after_websocket
    async def _finish_websocket(response: ResponseTypes | None) -> ResponseTypes | None:
        """An access log line for a refused WebSocket upgrade, with the status it was refused with (an accepted
        socket's end is not a request's: it is not logged)."""
        if response is not None:
            current = websocket._get_current_object()  # type: ignore[attr-defined]
            record_request(current, "GET", response.status_code, getattr(g, "request_id", None) or new_request_id())
        return response

    def record_request(current: Any, method: str, status: int, request_id: str) -> None:
        seconds = time.perf_counter() - getattr(g, "started", time.perf_counter())  # real seconds
        rule = current.url_rule
        route = rule.rule if rule is not None else "unmatched"
        handle.metrics.observe_request(method, route, status, seconds)
        level = logging.ERROR if status >= 500 else logging.INFO
        if access_log.isEnabledFor(level):
            path = current.path
            log_access(
                level,
                (method, path, status, seconds * 1000, request_id),
                {
                    "request_id": request_id,
                    "method": method,
                    "route": route,
                    "path": path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )

    # ---- service ----

    @app.get("/openapi.json")
    @public()
    @openapi.operation(summary="This document (OpenAPI 3.0)", tag="service", reply_type="application/json", errors=())
    async def openapi_document() -> Response:
        return json_response(openapi.document(app))

    @app.get("/api-docs")
    @public()
    @openapi.operation(
        summary="Interactive API docs (Swagger UI, served locally)", tag="service", reply_type="text/html", errors=()
    )
    async def api_docs() -> Response:
        return Response(API_DOCS_PAGE, status=200, content_type="text/html; charset=utf-8")

    @app.get("/api-docs/assets/<asset>")
    @public()
    @openapi.operation(
        summary="The Swagger UI files /api-docs uses",
        tag="service",
        reply_types=tuple(API_DOCS_ASSETS.values()),
        path_values=(("asset", tuple(API_DOCS_ASSETS)),),
        errors=(404,),
    )
    async def api_docs_asset(asset: str) -> Response:
        if asset not in API_DOCS_ASSETS:
            raise RouteNotFound(f"no route {request.method} {request.path}")
        data = (swagger_ui_path / asset).read_bytes()
        return Response(data, status=200, content_type=API_DOCS_ASSETS[asset])

    @app.get("/metrics")
    @needs(MONITOR, queue_arg=None)
    @openapi.operation(
        summary="Prometheus metrics (text format 0.0.4)", tag="service", reply_type="text/plain", errors=()
    )
    async def metrics() -> Response:
        queues = await monitored_queues()
        statistics = handle.statistics()
        body = handle.metrics.render(queues, backlog=statistics.backlog, parked=statistics.parked)
        return Response(body, status=200, content_type=METRICS_CONTENT_TYPE)

    @app.get("/health")
    @public(rated=False)
    @openapi.operation(summary="Liveness and load", tag="service", reply=openapi.HealthReply, errors=())
    async def health() -> Response:
        statistics = handle.statistics()
        return json_response(
            {
                "status": "ok",
                "version": __version__,
                "backlog": statistics.backlog,
                "parked_receives": statistics.parked,
            }
        )

    # ---- queues ----

    @app.get("/v1/queues")
    @needs(MONITOR, queue_arg=None)
    @openapi.operation(summary="List every queue with its counters", tag="queues", reply=openapi.QueuesReply, errors=())
    async def list_queues() -> Response:
        return json_response({"queues": [render_stats(s) for s in await monitored_queues()]})

    @app.put("/v1/queues/<name>")
    @needs(ADMIN)
    @openapi.operation(
        summary="Create a queue, or update its attributes (201 created, 200 updated)",
        tag="queues",
        status=201,
        also=((200, "Updated: the queue already existed"),),
        body=QueueAttributesIn,
        reply=openapi.QueueReply,
        links=(NEXT_SEND,),
        errors=(400, 409),
    )
    async def put_queue(name: str) -> Response:
        check_queue_name(name)
        attributes = await read_json(QueueAttributesIn, required=False)
        dead_letter_queue = attributes.dead_letter_queue
        if dead_letter_queue is None and "dead_letter_queue" in attributes.model_fields_set:
            dead_letter_queue = ""  # null: remove it
        if dead_letter_queue:
            require(ADMIN, dead_letter_queue)  # its dead letters go there, and it can no longer be deleted
        stats, created = await handle.ask(
            PutQueue(
                name,
                attributes.visibility_timeout,
                attributes.max_in_flight,
                attributes.delay,
                attributes.max_message_bytes,
                attributes.retention,
                attributes.max_receives,
                dead_letter_queue,
            )
        )
        return json_response(render_stats(stats), 201 if created else 200)

    @app.get("/v1/queues/<name>")
    @needs(MONITOR)
    @openapi.operation(
        summary="One queue's attributes and counters", tag="queues", reply=openapi.QueueReply, errors=(400, 404)
    )
    async def get_queue(name: str) -> Response:
        return json_response(render_stats(await handle.ask(GetQueue(name))))

    @app.delete("/v1/queues/<name>")
    @needs(ADMIN)
    @openapi.operation(
        summary="Delete a queue and every message in it", tag="queues", status=204, errors=(400, 404, 409)
    )
    async def delete_queue(name: str) -> Response:
        await handle.ask(DeleteQueue(name))
        return no_content()

    @app.post("/v1/queues/<name>/purge")
    @needs(ADMIN)
    @openapi.operation(
        summary="Delete every message, leased or not", tag="queues", reply=openapi.PurgeReply, errors=(400, 404)
    )
    async def purge(name: str) -> Response:
        return json_response({"purged": await handle.ask(Purge(name))})

    @app.post("/v1/queues/<name>/redrive")
    @needs(ADMIN)
    @openapi.operation(
        summary="Move a dead-letter queue's ready messages back to their queues",
        tag="queues",
        body=RedriveIn,
        reply=openapi.RedriveReply,
        errors=(400, 404),
    )
    async def redrive(name: str) -> Response:
        check_queue_name(name)
        body = await read_json(RedriveIn, required=False)
        if body.destination is not None:
            check_queue_name(body.destination)
            require(ADMIN, body.destination)
        wanted = body.max if body.max is not None else MAX_REDRIVE_MESSAGES
        moved = 0
        while True:
            # In steps of at most MAX_REDRIVE messages, so that other commands go between them and no single
            # commit grows without bound.
            step = min(MAX_REDRIVE, wanted - moved)
            report = await handle.ask(Redrive(name, body.destination, step))
            moved += report.moved
            if report.moved < step or moved == wanted:
                return json_response({"moved": moved, "skipped": report.skipped})

    # ---- messages ----

    @app.post("/v1/queues/<name>/messages")
    @needs(SEND)
    @openapi.operation(
        summary="Send one message: the request body, with its Content-Type",
        tag="messages",
        status=201,
        query=SendParamsIn,
        raw_body="The message, stored as sent, with its Content-Type",
        reply=openapi.SentReply,
        errors=(400, 409, 413, 503, 507),
        links=(
            NEXT_RECEIVE,
            openapi.Link(
                "delete",
                "dashboard_delete_message_post",
                "Delete the message sent",
                (SAME_QUEUE, ("message_id", "$response.body#/id")),
            ),
        ),
    )
    async def send(name: str) -> Response:
        check_queue_name(name)
        options = from_query(SendParamsIn, skip=ATTRIBUTE_PARAMETER)
        attributes = attributes_from_query()
        payload = (await read_message_body())._replace(attributes=attributes)
        key = request.headers.get(IDEMPOTENCY_HEADER)
        ids = await handle.ask(Send(name, (Outgoing(payload, options.delay, options.priority, key, options.group),)))
        return json_response({"id": ids[0]}, 201)

    @app.post("/v1/queues/<name>/messages/batch")
    @needs(SEND)
    @openapi.operation(
        summary="Send up to MAX_BATCH messages, all or none",
        tag="messages",
        status=201,
        body=BatchIn,
        reply=openapi.SentBatchReply,
        errors=(400, 409, 413, 503, 507),
        links=(NEXT_RECEIVE,),
    )
    async def send_batch(name: str) -> Response:
        check_queue_name(name)
        batch = await read_json(BatchIn, required=True)
        return json_response({"ids": await handle.ask(Send(name, batch_messages(batch)))}, 201)

    @app.post("/v1/queues/<name>/receive")
    @needs(RECEIVE)
    @openapi.operation(
        summary="Lease messages, optionally long-polling",
        tag="messages",
        body=ReceiveIn,
        query=ReceiveIn,
        reply=openapi.ReceiveReply,
        errors=(400, 404),
        links=RECEIVED,
    )
    async def receive(name: str) -> Response:
        check_queue_name(name)
        body = await read_json(ReceiveIn, required=False)
        # The body's fields over the query's. Each is checked on its own first: a bad query parameter is refused
        # even when the body gives the same field (a body alone is already checked, strictly, as JSON).
        if request.args:
            query = from_query(ReceiveIn)
            params = from_values(
                ReceiveIn, {**query.model_dump(exclude_unset=True), **body.model_dump(exclude_unset=True)}
            )
        else:
            params = body
        leases = await handle.ask(
            Receive(
                name,
                max_messages=params.max,
                visibility_timeout=params.visibility_timeout,
                wait=params.wait,
                consumer=params.consumer,
            )
        )
        return json_response({"messages": [render_lease(lease) for lease in leases]})

    @app.delete("/v1/queues/<name>/messages/<message_id>")
    @needs(RECEIVE)
    @openapi.operation(
        summary="Acknowledge one delivery (?receipt=R): delete the message",
        tag="messages",
        status=204,
        query=AckParamsIn,
        errors=(400, 404, 409),
    )
    async def ack(name: str, message_id: str) -> Response:
        params = from_query(AckParamsIn)
        await handle.ask(Ack(name, message_id, params.receipt))
        return no_content()

    @app.post("/v1/queues/<name>/ack")
    @needs(RECEIVE)
    @openapi.operation(
        summary="Acknowledge up to MAX_BATCH deliveries, each on its own",
        tag="messages",
        body=AckIn,
        reply=openapi.AckReply,
        errors=(400, 404),
    )
    async def ack_batch(name: str) -> Response:
        body = await read_json(AckIn, required=True)
        report = await handle.ask(AckBatch(name, body.receipts))
        failed = [{"receipt": f.receipt, "code": f.code, "message": f.message} for f in report.failed]
        return json_response({"acked": list(report.acked), "failed": failed})

    @app.patch("/v1/queues/<name>/messages/<message_id>")
    @needs(RECEIVE)
    @openapi.operation(
        summary="Extend a lease (heartbeat) or release it (visibility_timeout 0)",
        tag="messages",
        body=ChangeVisibilityIn,
        reply=openapi.VisibilityReply,
        errors=(400, 404, 409),
    )
    async def change_visibility(name: str, message_id: str) -> Response:
        body = await read_json(ChangeVisibilityIn, required=True)
        deadline = await handle.ask(ChangeVisibility(name, message_id, body.receipt, body.visibility_timeout))
        return json_response({"id": message_id, "released": deadline is None, "lease_expires_at": deadline})

    @app.get("/v1/queues/<name>/messages")
    @needs(RECEIVE)
    @openapi.operation(
        summary="Look at messages without leasing them (paged)",
        tag="messages",
        query=PeekIn,
        reply=openapi.PeekReply,
        errors=(400, 404),
    )
    async def peek(name: str) -> Response:
        params = from_query(PeekIn)
        page = await handle.ask(Peek(name, params.state, params.limit, params.after))
        return json_response({"messages": [render_view(view) for view in page.messages], "next_after": page.next_after})

    # ---- classic routes, on the queue "default" ----

    @app.post("/addMessage")
    @needs(SEND, queue=CLASSIC_QUEUE)
    @openapi.operation(
        summary="Classic: send to the queue default",
        tag="classic",
        status=201,
        raw_body="The message",
        reply=openapi.SentReply,
        errors=(400, 409, 413),  # 409: `too_many_queues`, when default was deleted and this send makes it again
    )
    async def classic_add() -> Response:
        payload = await read_message_body()
        ids = await handle.ask(Send(CLASSIC_QUEUE, (payload,)))
        return json_response({"id": ids[0]}, 201)

    @app.get("/readMessage")
    @needs(RECEIVE, queue=CLASSIC_QUEUE, leases=True)
    @openapi.operation(
        summary="Classic: lease one message of default (204 when none); ?time=S",
        tag="classic",
        also=((204, "No message is ready"),),
        query=ClassicReadIn,
        reply=openapi.LeaseReply,
        errors=(400, 404),  # 404: default was deleted (a send, /addMessage too, makes it again)
        links=(
            openapi.Link(
                "process",
                "classic_process_patch",
                "Acknowledge the message read",
                (("message_id", "$response.body#/id"), ("receipt", "$response.body#/receipt")),
            ),
        ),
    )
    async def classic_read() -> Response:
        params = from_query(ClassicReadIn)
        leases = await handle.ask(Receive(CLASSIC_QUEUE, visibility_timeout=params.time))
        return json_response(render_lease(leases[0])) if leases else no_content()

    @app.patch("/processMessage/<message_id>")
    @needs(RECEIVE, queue=CLASSIC_QUEUE)
    @openapi.operation(
        summary="Classic: acknowledge a message of default",
        tag="classic",
        status=204,
        query=ClassicProcessIn,
        errors=(404, 409),
    )
    async def classic_process(message_id: str) -> Response:
        params = from_query(ClassicProcessIn)
        await handle.ask(Ack(CLASSIC_QUEUE, message_id, params.receipt or None))
        return no_content()

    return app
