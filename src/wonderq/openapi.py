"""The OpenAPI 3.0 document of the HTTP API, made from the app itself: `document` walks the app's URL map, and
each view function carries an `Operation` (set by the `operation` decorator) naming the very pydantic models the
view validates its request with, and the models of its reply. Nothing here is a hand-kept copy of the routes:
a route without an `Operation` is missing from the document, which tests/test_openapi.py catches, and the reply
models are checked against real replies there too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, JsonValue
from pydantic.json_schema import models_json_schema

from wonderq import __version__
from wonderq.access import need_of
from wonderq.core import QUEUE_NAME
from wonderq.jsonbody import is_json

F = TypeVar("F", bound=Callable[..., Any])

REF = "#/components/schemas/{model}"
IGNORED_METHODS = {"HEAD", "OPTIONS"}
ERROR_STATUSES = {
    400: "Bad request: `invalid_parameter`, `invalid_queue_name`, `invalid_body`, `empty_message`, `batch_too_large`",
    401: "`unauthorized`: no credentials, a bad token or an ended session (auth on: docs/security.md)",
    403: "`forbidden` (the principal lacks the permission) or `cross_site_refused` (a browser on another site)",
    404: "`queue_not_found`, `message_not_found` or `not_found`",
    408: "`request_timeout`: the body did not arrive within BODY_TIMEOUT",
    409: "`lease_lost`, `queue_in_use` or `too_many_queues`",
    413: "`message_too_large` or `request_too_large`",
    415: "`unsupported_media_type`: a body that must be JSON is not labelled JSON",
    421: "`host_not_allowed`: the Host header names no host this server answers for",
    429: "`rate_limited`, or `queue_full` on a send (with Retry-After)",
    503: "`overloaded`, `too_many_long_polls`, `too_many_streams`, `shutting_down`, `storage_unavailable`, or"
    " `too_many_connections` (on any route: the listener's connection cap)",
    507: "`insufficient_storage`: the disk is full, or the store is at MAX_STORE_BYTES",
}
SIGN_IN_REDIRECT = "Auth on and no credentials: a browser is sent to the sign-in page (Location)"
# Headers some replies always carry, documented so that clients (and the schema checks) can rely on them.
RESPONSE_HEADERS = {
    303: {"Location": "Where to go instead"},
    401: {"WWW-Authenticate": '`Bearer realm="wonderq"`'},
    429: {"Retry-After": "Whole seconds to wait before trying again"},
}
# A path argument that names a queue: documented with the queue-name rule itself (core.QUEUE_NAME), so that
# generated requests (tests/test_schemathesis.py) reach past the name check, and readers see the rule.
QUEUE_NAME_SCHEMA = {"type": "string", "pattern": f"^{QUEUE_NAME.pattern}$", "minLength": 1, "maxLength": 121}


@dataclass(frozen=True, slots=True)
class Link:
    """An OpenAPI link from a success reply to the next call it makes possible (what a client does next: ack
    what it received). `parameters` and `body` hold runtime expressions (`$request.path.name`,
    `$response.body#/id`); tests/test_openapi.py checks that each names a real operation and its parameters."""

    name: str
    operation_id: str  # the `operationId` called: `<endpoint>_<method>`
    description: str
    parameters: tuple[tuple[str, str], ...] = ()
    body: Any = None  # the request body, with expressions in it; None: none given


@dataclass(frozen=True, slots=True)
class Operation:
    """What the document says of one route."""

    summary: str
    tag: str
    status: int = 200  # of a success
    reply: type[BaseModel] | None = None  # JSON reply model; None: no JSON body (or `reply_type`)
    reply_type: str | None = None  # a reply that is not JSON: its media type
    reply_types: tuple[str, ...] = ()  # or the media types it may have (the files of a directory)
    body: type[BaseModel] | None = None  # JSON request body model
    raw_body: str | None = None  # a request body that is the message itself: what it is
    query: type[BaseModel] | None = None  # query parameters model
    errors: tuple[int, ...] = (400,)
    error_type: str | None = None  # errors in another shape and media type than ErrorReply (the SQS endpoint's)
    also: tuple[tuple[int, str], ...] = ()  # other replies that are no error: (status, what it means)
    path_values: tuple[tuple[str, tuple[str, ...]], ...] = ()  # path arguments with a closed set of values
    links: tuple[Link, ...] = ()  # from the success reply


def operation(**given: Any) -> Callable[[F], F]:
    """Attach an `Operation` to a view function."""

    def attach(view: F) -> F:
        view.openapi = Operation(**given)  # type: ignore[attr-defined]
        return view

    return attach


def operation_of(view: Callable[..., Any]) -> Operation | None:
    found = getattr(view, "openapi", None)
    return found if isinstance(found, Operation) else None


def openapi_path(rule: str) -> str:
    """A werkzeug rule (`/v1/queues/<name>`, `/static/<path:file>`) as an OpenAPI path (`/v1/queues/{name}`)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def document(app: Any) -> dict[str, Any]:
    """The OpenAPI document of every documented route of `app` (a Quart app)."""
    models: dict[str, type[BaseModel]] = {"ErrorReply": ErrorReply}
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        found = operation_of(view) if view is not None else None
        if found is None:
            continue
        for model in (found.reply, found.body, found.query):
            if model is not None:
                models[model.__name__] = model
        item = paths.setdefault(openapi_path(rule.rule), {})
        for method in sorted(set(rule.methods or ()) - IGNORED_METHODS):
            item[method.lower()] = _operation(rule, view, method, found, _gate_errors(view, method, found))
    _, definitions = models_json_schema([(model, "validation") for model in models.values()], ref_template=REF)
    converted: dict[str, Any] = _as_openapi_30(
        {
            "openapi": "3.0.3",
            "info": {
                "title": "WonderQ",
                "version": __version__,
                "description": "A small, reliable message broker: queues, leases, acknowledgements, long polling. "
                "The full reference is docs/api.md; the Amazon SQS protocol on POST / is docs/sqs.md.",
            },
            "paths": dict(sorted(paths.items())),
            "components": {"schemas": definitions.get("$defs", {})},
        }
    )
    return converted


def _as_openapi_30(node: Any) -> Any:
    """pydantic writes JSON Schema 2020-12 (OpenAPI 3.1's); say the same in OpenAPI 3.0's words, which every
    tool reads (the bundled Swagger UI included): a `"type": "null"` choice becomes `nullable`, `const` an
    one-value `enum`."""
    if isinstance(node, list):
        return [_as_openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _as_openapi_30(value) for key, value in node.items()}
    if "const" in converted:
        converted["enum"] = [converted.pop("const")]
    choices = converted.get("anyOf")
    if isinstance(choices, list) and {"type": "null"} in choices:
        rest = [choice for choice in choices if choice != {"type": "null"}]
        del converted["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            converted.update(rest[0])
        else:
            converted["anyOf"] = rest
        converted["nullable"] = True
    return converted


def _gate_errors(view: Callable[..., Any], method: str, found: Operation) -> set[int]:
    """The statuses the HTTP gate, the body reader and the actor (overload, the journal) may answer on this route,
    beside its own."""
    need = need_of(view)
    statuses = {421, 503}  # 503: the listener refuses connections beyond MAX_CONNECTIONS, whatever the route
    if need is None:
        return statuses | {403, 429}
    if need.sqs:  # the gate's refusals are SQS errors there, of the statuses SQS gives them (its own `errors`)
        return statuses
    if need.rated:
        statuses.add(429)
    writes = need.leases or method not in ("GET", "HEAD")
    if writes:
        statuses.add(403)
    if not need.public:
        statuses |= {401, 403}
        if writes:
            statuses.add(507)  # every change commits to the journal, which may find the disk full
    if found.body is not None:
        statuses |= {408, 413, 415}  # 413: the request body is over MAX_REQUEST_BYTES
    elif found.raw_body is not None:
        statuses.add(408)
    return statuses


def _redirects(view: Callable[..., Any]) -> tuple[tuple[int, str], ...]:
    """The redirects the gate answers on this route: a dashboard page sends a browser without credentials to
    the sign-in page."""
    need = need_of(view)
    return ((303, SIGN_IN_REDIRECT),) if need is not None and need.page else ()


def _path_parameter(name: str, view: Callable[..., Any], found: Operation) -> dict[str, Any]:
    need = need_of(view)
    values = dict(found.path_values).get(name)
    if values is not None:
        schema: dict[str, Any] = {"type": "string", "enum": sorted(values)}
    elif need is not None and need.queue_arg == name:
        schema = dict(QUEUE_NAME_SCHEMA)
    else:
        schema = {"type": "string"}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _link(link: Link) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "operationId": link.operation_id,
        "description": link.description,
        "parameters": dict(link.parameters),
    }
    if link.body is not None:
        shown["requestBody"] = link.body
    return shown


def _headers(status: int) -> dict[str, Any]:
    """The `headers` of a reply with `status`: those it always carries (RESPONSE_HEADERS)."""
    given = RESPONSE_HEADERS.get(status, {})
    return {
        name: {"description": description, "required": True, "schema": {"type": "string"}}
        for name, description in given.items()
    }


def _operation(
    rule: Any, view: Callable[..., Any], method: str, found: Operation, gate_errors: set[int]
) -> dict[str, Any]:
    in_order = re.findall(r"\{([^{}]+)\}", openapi_path(rule.rule))  # as the path names them (a set has no order)
    parameters: list[dict[str, Any]] = [_path_parameter(name, view, found) for name in in_order]
    if found.query is not None:
        schema = found.query.model_json_schema(ref_template=REF)
        required = set(schema.get("required", []))
        parameters += [
            {"name": name, "in": "query", "required": name in required, "schema": field}
            for name, field in schema.get("properties", {}).items()
        ]
    content: dict[str, Any] | None = None
    if found.reply is not None:
        content = {"application/json": {"schema": {"$ref": REF.format(model=found.reply.__name__)}}}
    elif found.reply_type is not None or found.reply_types:
        media_types = sorted(
            {media.split(";", 1)[0].strip() for media in (found.reply_type, *found.reply_types) if media}
        )
        content = {
            media: {"schema": {"type": "object"} if is_json(media) else {"type": "string"}} for media in media_types
        }
    replies: dict[int, dict[str, Any]] = {}
    for status, description in ((found.status, "Success"), *found.also, *_redirects(view)):
        reply: dict[str, Any] = {"description": description}
        if content is not None and 200 <= status < 300 and status != 204:  # a 204 or a redirect has no body
            reply["content"] = content
        replies[status] = reply
    error: dict[str, Any] = {"application/json": {"schema": {"$ref": REF.format(model="ErrorReply")}}}
    if found.error_type is not None:  # and a refused connection's 503 is still WonderQ's own shape
        error = {found.error_type: {"schema": {"type": "object"}}, **error}
    for status in set(found.errors) | gate_errors:
        replies[status] = {"description": ERROR_STATUSES[status], "content": error}
    for status, reply in replies.items():
        if headers := _headers(status):
            reply["headers"] = headers
    if found.links:
        replies[found.status]["links"] = {link.name: _link(link) for link in found.links}
    entry: dict[str, Any] = {
        "summary": found.summary,
        "tags": [found.tag],
        "operationId": f"{rule.endpoint}_{method.lower()}",
        "parameters": parameters,
        "responses": {str(status): replies[status] for status in sorted(replies)},
    }
    if found.body is not None:
        schema_ref = {"$ref": REF.format(model=found.body.__name__)}
        entry["requestBody"] = {"required": False, "content": {"application/json": {"schema": schema_ref}}}
    elif found.raw_body is not None:
        raw = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
        entry["requestBody"] = {"required": True, "description": found.raw_body, "content": raw}
    return entry


# ---- reply shapes: what the views return, as models for the document (tests check real replies fit) -----


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Reply):
    code: str
    message: str


class ErrorReply(_Reply):
    error: ErrorDetail


class SessionReply(_Reply):
    auth: bool
    principal: str | None  # null when auth is off


class HealthReply(_Reply):
    status: Literal["ok"]
    version: str
    backlog: int
    parked_receives: int


class QueueAttributesReply(_Reply):
    visibility_timeout: float
    max_in_flight: int
    delay: float
    max_message_bytes: int
    retention: float
    max_receives: int
    dead_letter_queue: str | None


class QueueReply(_Reply):
    name: str
    attributes: QueueAttributesReply
    created_at: float
    ready: int
    leased: int
    delayed: int
    sent: int
    received: int
    acked: int
    expired: int
    released: int
    dropped: int
    dead_lettered: int
    redriven: int
    dead_letters: int
    oldest_sent_at: float | None


class QueuesReply(_Reply):
    queues: list[QueueReply]


class SentReply(_Reply):
    id: str


class SentBatchReply(_Reply):
    ids: list[str]


class _MessageFields(_Reply):
    id: str
    body: JsonValue = None
    body_base64: str | None = None
    encoding: Literal["json", "text", "base64"]
    content_type: str
    attributes: dict[str, str]
    priority: int
    receive_count: int
    sent_at: float
    first_received_at: float | None
    lease_expires_at: float | None
    consumer: str | None
    source_queue: str | None
    group: str | None
    dedup_id: str | None


class LeaseReply(_MessageFields):
    receipt: str


class ReceiveReply(_Reply):
    messages: list[LeaseReply]


class PeekedMessage(_MessageFields):
    state: Literal["delayed", "ready", "leased"]
    visible_at: float | None


class PeekReply(_Reply):
    messages: list[PeekedMessage]
    next_after: str | None


class AckFailureReply(_Reply):
    receipt: str
    code: str
    message: str


class AckReply(_Reply):
    acked: list[str]
    failed: list[AckFailureReply]


class VisibilityReply(_Reply):
    id: str
    released: bool
    lease_expires_at: float | None


class PurgeReply(_Reply):
    purged: int


class RedriveReply(_Reply):
    moved: int
    skipped: int
