"""The Python client of the WonderQ HTTP API: `Client` (blocking) and `AsyncClient` (trio or asyncio, via httpx).

Every operation is described once, by a pure function returning a `Call`: the request to make and the function
that parses its reply. The two classes only do the I/O, so they cannot drift apart. Imports nothing of the server.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Self, TypedDict, TypeVar, Unpack
from urllib.parse import quote

import httpx

from wonderq import __version__

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "AckFailure",
    "AckResult",
    "AsyncClient",
    "Client",
    "OutgoingMessage",
    "PeekPage",
    "PeekedMessage",
    "QueueSettings",
    "ReceivedMessage",
    "RedriveResult",
    "WonderQClientError",
    "WonderQConnectionError",
]

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:3000"
DEFAULT_TIMEOUT = 10.0  # seconds for connect, write and read; a long poll's read also gets its `wait` on top
OCTET_STREAM = "application/octet-stream"
TEXT_UTF8 = "text/plain; charset=utf-8"
JSON_TYPE = "application/json"
USER_AGENT = f"wonderq-client/{__version__}"


# ---- errors -------------------------------------------------------------------------------------------


class WonderQClientError(Exception):
    """The server refused a request (`status` and `code` as in its `{"error": {...}}` reply) or could not be asked.

    `status` is None when no HTTP reply arrived (see WonderQConnectionError)."""

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class WonderQConnectionError(WonderQClientError):
    """No reply: the server could not be reached (code "connection_failed") or did not answer in time ("timeout").

    The request may or may not have been applied; retrying a send can duplicate a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(None, code, message)


# ---- reply types --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One delivery. `body` is decoded by the reply's encoding: a JSON value, a `str` (text/*) or `bytes`."""

    id: str
    receipt: str  # acknowledges exactly this delivery
    body: Any
    content_type: str
    priority: int  # lower goes first
    receive_count: int  # 1 on the first delivery; more means the message was redelivered
    sent_at: float  # epoch seconds
    first_received_at: float  # epoch seconds of the first delivery
    lease_expires_at: float  # epoch seconds
    consumer: str | None
    attributes: Mapping[str, str] = field(default_factory=dict)
    source_queue: str | None = None  # the queue it was dead-lettered from, when received from a dead-letter queue
    group: str | None = None  # its message group (what orders a FIFO queue)
    dedup_id: str | None = None  # the idempotency key (dedup id) it was sent with


@dataclass(frozen=True, slots=True)
class PeekedMessage:
    """A message as `peek` shows it (never with a receipt). `state` is "delayed", "ready" or "leased"."""

    id: str
    state: str
    body: Any
    content_type: str
    priority: int
    visible_at: float | None  # epoch seconds; None unless delayed
    receive_count: int
    sent_at: float  # epoch seconds
    first_received_at: float | None  # epoch seconds; None until first delivered
    lease_expires_at: float | None  # epoch seconds; None unless leased
    consumer: str | None
    attributes: Mapping[str, str] = field(default_factory=dict)
    source_queue: str | None = None  # the queue it was dead-lettered from
    group: str | None = None  # its message group
    dedup_id: str | None = None  # the idempotency key (dedup id) it was sent with


@dataclass(frozen=True, slots=True)
class PeekPage:
    messages: tuple[PeekedMessage, ...]
    next_after: str | None  # pass as `after` for the next page; None on the last page


@dataclass(frozen=True, slots=True)
class RedriveResult:
    moved: int
    skipped: int  # ready messages left: no destination was given and they have no source queue to go back to


class QueueSettings(TypedDict, total=False):
    """Queue attributes for `create_queue`; those not given keep their value (or the default)."""

    visibility_timeout: float  # seconds a receive leases a message for
    max_in_flight: int  # most messages leased at once; 0: no limit
    delay: float  # seconds before a new message can be received (0 to 900)
    max_message_bytes: int  # 0: the server's limit
    retention: float  # seconds a message may live (60 to 1,209,600)
    max_receives: int  # deliveries before a message moves to dead_letter_queue; 0: no limit
    dead_letter_queue: str  # "" removes it


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A batch entry with options of its own; a plain body in a batch is sent with the batch's options."""

    body: object
    content_type: str | None = None  # as for `send`
    attributes: Mapping[str, str] | None = None
    delay: float | None = None
    priority: int | None = None
    dedup_id: str | None = None
    group: str | None = None  # its message group; in a FIFO queue each group goes out in order


@dataclass(frozen=True, slots=True)
class AckFailure:
    receipt: str
    code: str  # e.g. "lease_lost", "message_not_found", "invalid_receipt"
    message: str


@dataclass(frozen=True, slots=True)
class AckResult:
    acked: tuple[str, ...]  # receipts
    failed: tuple[AckFailure, ...]

    @property
    def ok(self) -> bool:
        return not self.failed


# ---- calls: one pure description per operation ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One HTTP request and how to read its successful reply. Error replies are handled by `finish`."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    wait: float = 0.0  # seconds the server may hold the request (long poll): added to the read timeout

    def timeout(self, seconds: float) -> httpx.Timeout:
        return httpx.Timeout(seconds, read=seconds + self.wait)


def check_base_url(url: str) -> str:
    """The base URL without a trailing slash; ValueError unless it is an absolute http(s) URL."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ValueError(f"invalid URL {url!r}: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"invalid URL {url!r}: expected http://HOST[:PORT] or https://HOST[:PORT]")
    return url.rstrip("/")


def dump_json(value: object) -> bytes:
    """Strict JSON (NaN and infinities are rejected, as the server would). TypeError/ValueError if not JSON."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def encode_body(body: object, content_type: str | None = None) -> tuple[bytes, str]:
    """The bytes and media type that carry `body`: bytes as they are (default application/octet-stream), a str
    as UTF-8 (default text/plain; charset=utf-8), anything else as JSON (default application/json)."""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body), content_type or OCTET_STREAM
    if isinstance(body, str):
        return body.encode("utf-8"), content_type or TEXT_UTF8
    return dump_json(body), content_type or JSON_TYPE


def batch_entry(body: object) -> dict[str, Any]:
    """One entry of a batch send: bytes as base64, a str as text/plain, anything else as a JSON value; an
    OutgoingMessage with its options."""
    if isinstance(body, OutgoingMessage):
        entry = batch_entry(body.body)
        if body.content_type is not None:  # the body encoded as for `send`, carried as bytes
            data = base64.b64encode(encode_body(body.body, body.content_type)[0]).decode("ascii")
            entry = {"body_base64": data, "content_type": body.content_type}
        given = {
            "attributes": dict(body.attributes) if body.attributes else None,
            "delay": body.delay,
            "priority": body.priority,
            "dedup_id": body.dedup_id,
            "group": body.group,
        }
        return {**entry, **{key: value for key, value in given.items() if value is not None}}
    if isinstance(body, bytes | bytearray | memoryview):
        return {"body_base64": base64.b64encode(body).decode("ascii")}
    if isinstance(body, str):
        return {"body": body, "content_type": TEXT_UTF8}
    return {"body": body}


def _segment(value: str) -> str:
    # Dots are escaped too, so that a name like ".." reaches the server as a name instead of being resolved
    # as a relative path segment on the way.
    return quote(value, safe="").replace(".", "%2E")


def queue_path(queue: str, *rest: str) -> str:
    """The path of a queue's route: `/v1/queues/<queue>/<rest...>`, the name escaped."""
    return "/".join(["/v1/queues", _segment(queue), *rest])


_queue_path = queue_path


def _json_call(method: str, path: str, parse: Callable[[httpx.Response], T], body: object, **kw: Any) -> Call[T]:
    return Call(method, path, parse, content=dump_json(body), headers={"Content-Type": JSON_TYPE}, **kw)


def _document(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except RecursionError:
        # WonderQ refuses bodies nested deeper than about 200 levels, so only a reply from something else (a
        # proxy, another server at this URL) can nest deeper than Python's recursion limit.
        raise ValueError("the reply is nested too deeply to parse") from None


def _dict(response: httpx.Response) -> dict[str, Any]:
    document = _document(response)
    if not isinstance(document, dict):
        raise TypeError(f"expected a JSON object, got {type(document).__name__}")
    return document


def _nothing(response: httpx.Response) -> None:
    return None


def decode_body(item: Mapping[str, Any]) -> Any:
    """A message body from a reply item, by its "encoding": a JSON value, a str, or bytes."""
    encoding = item["encoding"]
    if encoding == "json":
        return item["body"]
    if encoding == "text":
        return str(item["body"])
    if encoding == "base64":
        return base64.b64decode(item["body_base64"], validate=True)
    raise ValueError(f"unknown body encoding {encoding!r}")


def received_message(item: Mapping[str, Any]) -> ReceivedMessage:
    return ReceivedMessage(
        id=item["id"],
        receipt=item["receipt"],
        body=decode_body(item),
        content_type=item["content_type"],
        priority=item["priority"],
        receive_count=item["receive_count"],
        sent_at=item["sent_at"],
        first_received_at=item["first_received_at"],
        lease_expires_at=item["lease_expires_at"],
        consumer=item["consumer"],
        attributes=item.get("attributes") or {},
        source_queue=item.get("source_queue"),
        group=item.get("group"),
        dedup_id=item.get("dedup_id"),
    )


def peeked_message(item: Mapping[str, Any]) -> PeekedMessage:
    return PeekedMessage(
        id=item["id"],
        state=item["state"],
        body=decode_body(item),
        content_type=item["content_type"],
        priority=item["priority"],
        visible_at=item["visible_at"],
        receive_count=item["receive_count"],
        sent_at=item["sent_at"],
        first_received_at=item["first_received_at"],
        lease_expires_at=item["lease_expires_at"],
        consumer=item["consumer"],
        attributes=item.get("attributes") or {},
        source_queue=item.get("source_queue"),
        group=item.get("group"),
        dedup_id=item.get("dedup_id"),
    )


def health_call() -> Call[dict[str, Any]]:
    return Call("GET", "/health", _dict)


def list_queues_call() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/v1/queues", lambda response: list(_dict(response)["queues"]))


def create_queue_call(name: str, **settings: Unpack[QueueSettings]) -> Call[tuple[dict[str, Any], bool]]:
    attributes: dict[str, Any] = {**settings}
    if attributes.get("dead_letter_queue") == "":
        attributes["dead_letter_queue"] = None  # null removes it
    # 201 means the queue was created; 200 that it existed (and the attributes given were updated).
    return _json_call("PUT", _queue_path(name), lambda r: (_dict(r), r.status_code == 201), attributes)


def get_queue_call(name: str) -> Call[dict[str, Any]]:
    return Call("GET", _queue_path(name), _dict)


def delete_queue_call(name: str) -> Call[None]:
    return Call("DELETE", _queue_path(name), _nothing)


def purge_call(name: str) -> Call[int]:
    return Call("POST", _queue_path(name, "purge"), lambda response: int(_dict(response)["purged"]))


def redrive_call(queue: str, destination: str | None = None, max: int | None = None) -> Call[RedriveResult]:
    def parse(response: httpx.Response) -> RedriveResult:
        reply = _dict(response)
        return RedriveResult(moved=int(reply["moved"]), skipped=int(reply["skipped"]))

    given = {"destination": destination, "max": max}
    body = {key: value for key, value in given.items() if value is not None}
    return _json_call("POST", _queue_path(queue, "redrive"), parse, body)


def _options(delay: float | None, priority: int | None) -> dict[str, Any]:
    given = {"delay": delay, "priority": priority}
    return {key: value for key, value in given.items() if value is not None}


def send_call(
    queue: str,
    body: object,
    content_type: str | None = None,
    delay: float | None = None,
    priority: int | None = None,
    idempotency_key: str | None = None,
    attributes: Mapping[str, str] | None = None,
    group: str | None = None,
) -> Call[str]:
    data, media_type = encode_body(body, content_type)
    path = _queue_path(queue, "messages")
    params = {key: str(value) for key, value in _options(delay, priority).items()}
    if group is not None:
        params["group"] = group
    params.update({f"attribute.{name}": value for name, value in (attributes or {}).items()})
    headers = {"Content-Type": media_type}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return Call("POST", path, lambda r: str(_dict(r)["id"]), params=params, content=data, headers=headers)


def send_batch_call(
    queue: str, bodies: Sequence[object], delay: float | None = None, priority: int | None = None
) -> Call[list[str]]:
    def parse(response: httpx.Response) -> list[str]:
        return [str(message_id) for message_id in _dict(response)["ids"]]

    messages = [{**_options(delay, priority), **batch_entry(body)} for body in bodies]
    return _json_call("POST", _queue_path(queue, "messages", "batch"), parse, {"messages": messages})


def receive_call(
    queue: str,
    max: int = 1,
    wait: float = 0.0,
    visibility_timeout: float | None = None,
    consumer: str | None = None,
) -> Call[list[ReceivedMessage]]:
    request: dict[str, Any] = {"max": max, "wait": wait}
    if visibility_timeout is not None:
        request["visibility_timeout"] = visibility_timeout
    if consumer is not None:
        request["consumer"] = consumer

    def parse(response: httpx.Response) -> list[ReceivedMessage]:
        return [received_message(item) for item in _dict(response)["messages"]]

    return _json_call("POST", _queue_path(queue, "receive"), parse, request, wait=wait if wait > 0 else 0.0)


def ack_call(queue: str, message_id: str, receipt: str) -> Call[None]:
    return Call("DELETE", _queue_path(queue, "messages", _segment(message_id)), _nothing, params={"receipt": receipt})


def parse_ack_result(response: httpx.Response) -> AckResult:
    document = _dict(response)
    failed = tuple(AckFailure(str(f["receipt"]), str(f["code"]), str(f["message"])) for f in document["failed"])
    return AckResult(acked=tuple(str(receipt) for receipt in document["acked"]), failed=failed)


def ack_batch_call(queue: str, receipts: Sequence[str]) -> Call[AckResult]:
    return _json_call("POST", _queue_path(queue, "ack"), parse_ack_result, {"receipts": list(receipts)})


def change_visibility_call(queue: str, message_id: str, receipt: str, seconds: float) -> Call[float | None]:
    def parse(response: httpx.Response) -> float | None:
        deadline = _dict(response)["lease_expires_at"]
        return None if deadline is None else float(deadline)

    path = _queue_path(queue, "messages", _segment(message_id))
    return _json_call("PATCH", path, parse, {"receipt": receipt, "visibility_timeout": seconds})


def peek_call(queue: str, state: str | None = None, limit: int = 100, after: str | None = None) -> Call[PeekPage]:
    params = {"limit": str(limit)}
    if state is not None:
        params["state"] = state
    if after is not None:
        params["after"] = after

    def parse(response: httpx.Response) -> PeekPage:
        document = _dict(response)
        next_after = document["next_after"]
        messages = tuple(peeked_message(item) for item in document["messages"])
        return PeekPage(messages, None if next_after is None else str(next_after))

    return Call("GET", _queue_path(queue, "messages"), parse, params=params)


# ---- replies and failures ------------------------------------------------------------------------------


def error_from_response(response: httpx.Response) -> WonderQClientError:
    """The error an unsuccessful reply stands for: the server's own code and message when it sent them."""
    status = response.status_code
    try:
        error = _dict(response)["error"]
        code, message = error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        pass
    else:
        if isinstance(code, str) and isinstance(message, str):
            return WonderQClientError(status, code, message)
    # Not a WonderQ error document (a proxy in between, a wrong URL): keep what there is to see.
    text = " ".join(response.text.split())[:200] or response.reason_phrase
    return WonderQClientError(status, f"http_{status}", text)


def finish(call: Call[T], response: httpx.Response) -> T:
    """The result of `call` from its reply; WonderQClientError for an error reply or one that cannot be read."""
    if not response.is_success:
        raise error_from_response(response)
    try:
        return call.parse(response)
    except (ValueError, KeyError, TypeError) as error:
        message = f"unexpected reply to {call.method} {call.path}: {error!r}"
        raise WonderQClientError(response.status_code, "invalid_response", message) from error


def transport_error(base_url: str, call: Call[Any], error: httpx.TransportError) -> WonderQConnectionError:
    if isinstance(error, httpx.TimeoutException):
        return WonderQConnectionError("timeout", f"{call.method} {base_url}{call.path}: no reply in time ({error})")
    detail = str(error) or type(error).__name__
    return WonderQConnectionError("connection_failed", f"cannot reach WonderQ at {base_url}: {detail}")


# ---- the clients: I/O only -----------------------------------------------------------------------------


HEADERS = {"User-Agent": USER_AGENT}


def _limits(max_connections: int) -> httpx.Limits:
    # Keep every connection alive that may be open at once: a busy caller (many consumer tasks) would
    # otherwise open and close a TCP connection per request.
    return httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)


class _Base:
    def __init__(self, base_url: str, timeout: float, token: str | None, verify: ssl.SSLContext | str | bool) -> None:
        self.base_url = check_base_url(base_url)
        self.timeout = timeout  # seconds; see DEFAULT_TIMEOUT
        # Every request goes to base_url and redirects are not followed, so a plain-http client never uses TLS:
        # skipping certificate loading then saves 50-300 ms per client (each CLI command makes one).
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
        self._verify_tls = verify if httpx.URL(self.base_url).scheme == "https" else False
        self._headers = {**HEADERS, **({"Authorization": f"Bearer {token}"} if token else {})}

    def _request_args(self, call: Call[Any]) -> dict[str, Any]:
        return {
            "params": call.params,
            "content": call.content,
            "headers": call.headers,
            "timeout": call.timeout(self.timeout),
        }


class Client(_Base):
    """A blocking client. Use as a context manager, or call `close()`.

    `timeout` bounds connecting, sending and waiting for a reply (a long poll's `wait` is added to the latter);
    `max_connections` bounds the connections open at once (requests beyond it wait for one). `token` is sent as
    `Authorization: Bearer <token>` (a server with auth on needs one: docs/security.md). `verify` checks an https
    server's certificate: True (the system's CAs, or SSL_CERT_FILE), a CA bundle's path, or an SSLContext."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = 100,
        token: str | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        super().__init__(base_url, timeout, token, verify)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self._headers, limits=_limits(max_connections), verify=self._verify_tls
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def http(self) -> httpx.Client:
        """The httpx client underneath (the streaming path opens its WebSocket with it)."""
        return self._http

    def _run(self, call: Call[T]) -> T:
        try:
            response = self._http.request(call.method, call.path, **self._request_args(call))
        except httpx.TransportError as error:
            raise transport_error(self.base_url, call, error) from error
        return finish(call, response)

    def health(self) -> dict[str, Any]:
        return self._run(health_call())

    def list_queues(self) -> list[dict[str, Any]]:
        return self._run(list_queues_call())

    def create_queue(self, name: str, **settings: Unpack[QueueSettings]) -> tuple[dict[str, Any], bool]:
        """Create the queue or update the attributes given (see QueueSettings; `max_in_flight=0` lifts that
        limit, `dead_letter_queue=""` removes it). Returns its stats and whether it was created."""
        return self._run(create_queue_call(name, **settings))

    def get_queue(self, name: str) -> dict[str, Any]:
        return self._run(get_queue_call(name))

    def delete_queue(self, name: str) -> None:
        self._run(delete_queue_call(name))

    def redrive(self, queue: str, destination: str | None = None, max: int | None = None) -> RedriveResult:
        """Move up to `max` (default: all) ready messages of a dead-letter queue back to the queues they came
        from, or to `destination`; they start over with a receive count of 0."""
        return self._run(redrive_call(queue, destination, max))

    def purge(self, name: str) -> int:
        """Remove every message of the queue. Returns how many were removed."""
        return self._run(purge_call(name))

    def send(
        self,
        queue: str,
        body: object,
        content_type: str | None = None,
        *,
        delay: float | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
        attributes: Mapping[str, str] | None = None,
        group: str | None = None,
    ) -> str:
        """Send one message (see `encode_body` for how `body` is carried), visible after `delay` seconds
        (default: the queue's), delivered by `priority` (lower first), with `attributes` (string to string), in
        message `group` (what orders a FIFO queue).
        With `idempotency_key`, a retry within 5 minutes stores nothing new and returns the first id.
        Returns its id."""
        return self._run(send_call(queue, body, content_type, delay, priority, idempotency_key, attributes, group))

    def send_batch(
        self, queue: str, bodies: Sequence[object], *, delay: float | None = None, priority: int | None = None
    ) -> list[str]:
        """Send all of `bodies` or none (see `batch_entry`; an OutgoingMessage carries options of its own),
        each with `delay` and `priority` unless it says otherwise. Returns their ids in order."""
        return self._run(send_batch_call(queue, bodies, delay, priority))

    def receive(
        self,
        queue: str,
        max: int = 1,
        wait: float = 0.0,
        visibility_timeout: float | None = None,
        consumer: str | None = None,
    ) -> list[ReceivedMessage]:
        """Lease up to `max` messages, long-polling up to `wait` seconds for the first one."""
        return self._run(receive_call(queue, max, wait, visibility_timeout, consumer))

    def ack(self, queue: str, id: str, receipt: str) -> None:
        self._run(ack_call(queue, id, receipt))

    def ack_batch(self, queue: str, receipts: Sequence[str]) -> AckResult:
        return self._run(ack_batch_call(queue, receipts))

    def change_visibility(self, queue: str, id: str, receipt: str, seconds: float) -> float | None:
        """Extend the lease to `seconds` from now, or with 0 release it. Returns the new deadline or None."""
        return self._run(change_visibility_call(queue, id, receipt, seconds))

    def peek(self, queue: str, state: str | None = None, limit: int = 100, after: str | None = None) -> PeekPage:
        return self._run(peek_call(queue, state, limit, after))


class AsyncClient(_Base):
    """The same client for async code (trio or asyncio). Use as an async context manager, or await `aclose()`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = 100,
        token: str | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        super().__init__(base_url, timeout, token, verify)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, limits=_limits(max_connections), verify=self._verify_tls
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        """The httpx client underneath (the streaming path opens its WebSocket with it)."""
        return self._http

    async def _run(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(call.method, call.path, **self._request_args(call))
        except httpx.TransportError as error:
            raise transport_error(self.base_url, call, error) from error
        return finish(call, response)

    async def health(self) -> dict[str, Any]:
        return await self._run(health_call())

    async def list_queues(self) -> list[dict[str, Any]]:
        return await self._run(list_queues_call())

    async def create_queue(self, name: str, **settings: Unpack[QueueSettings]) -> tuple[dict[str, Any], bool]:
        return await self._run(create_queue_call(name, **settings))

    async def get_queue(self, name: str) -> dict[str, Any]:
        return await self._run(get_queue_call(name))

    async def delete_queue(self, name: str) -> None:
        await self._run(delete_queue_call(name))

    async def redrive(self, queue: str, destination: str | None = None, max: int | None = None) -> RedriveResult:
        return await self._run(redrive_call(queue, destination, max))

    async def purge(self, name: str) -> int:
        return await self._run(purge_call(name))

    async def send(
        self,
        queue: str,
        body: object,
        content_type: str | None = None,
        *,
        delay: float | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
        attributes: Mapping[str, str] | None = None,
        group: str | None = None,
    ) -> str:
        return await self._run(
            send_call(queue, body, content_type, delay, priority, idempotency_key, attributes, group)
        )

    async def send_batch(
        self, queue: str, bodies: Sequence[object], *, delay: float | None = None, priority: int | None = None
    ) -> list[str]:
        return await self._run(send_batch_call(queue, bodies, delay, priority))

    async def receive(
        self,
        queue: str,
        max: int = 1,
        wait: float = 0.0,
        visibility_timeout: float | None = None,
        consumer: str | None = None,
    ) -> list[ReceivedMessage]:
        return await self._run(receive_call(queue, max, wait, visibility_timeout, consumer))

    async def ack(self, queue: str, id: str, receipt: str) -> None:
        await self._run(ack_call(queue, id, receipt))

    async def ack_batch(self, queue: str, receipts: Sequence[str]) -> AckResult:
        return await self._run(ack_batch_call(queue, receipts))

    async def change_visibility(self, queue: str, id: str, receipt: str, seconds: float) -> float | None:
        return await self._run(change_visibility_call(queue, id, receipt, seconds))

    async def peek(self, queue: str, state: str | None = None, limit: int = 100, after: str | None = None) -> PeekPage:
        return await self._run(peek_call(queue, state, limit, after))
