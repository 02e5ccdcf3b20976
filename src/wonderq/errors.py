"""Domain errors: each carries a stable error code and the HTTP status it maps to.

Raised by the core and the command layer; the web layer renders them with one handler. Codes are part of the
public API (docs/api.md): never rename one.
"""

from __future__ import annotations

from typing import ClassVar


class WonderQError(Exception):
    """Base of every error a client can cause. Raising one never changes queue state."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    retry_after: float | None = None  # seconds: sent as `Retry-After` (whole seconds, rounded up) when set

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameter(WonderQError):
    code = "invalid_parameter"


class InvalidQueueName(WonderQError):
    code = "invalid_queue_name"


class InvalidBody(WonderQError):
    code = "invalid_body"


class EmptyMessage(WonderQError):
    code = "empty_message"


class BatchTooLarge(WonderQError):
    code = "batch_too_large"


class InvalidReceipt(WonderQError):
    code = "invalid_receipt"


class QueueNotFound(WonderQError):
    status = 404
    code = "queue_not_found"


class MessageNotFound(WonderQError):
    status = 404
    code = "message_not_found"


class RequestTimeout(WonderQError):
    """The request body did not arrive within BODY_TIMEOUT seconds."""

    status = 408
    code = "request_timeout"


class Unauthorized(WonderQError):
    """No credentials, or credentials that name no principal (a bad token, an ended session)."""

    status = 401
    code = "unauthorized"


class Forbidden(WonderQError):
    """The principal is known but lacks the permission this request needs on this queue."""

    status = 403
    code = "forbidden"


class CrossSiteRefused(WonderQError):
    """A browser request from another site (by `Origin` or `Sec-Fetch-Site`) to a route that changes state."""

    status = 403
    code = "cross_site_refused"


class UnsupportedMediaType(WonderQError):
    """A body that must be JSON came with another content type (a form post, `text/plain`)."""

    status = 415
    code = "unsupported_media_type"


class HostNotAllowed(WonderQError):
    """The `Host` header names no host this server answers for (ALLOWED_HOSTS): DNS rebinding is refused."""

    status = 421
    code = "host_not_allowed"


class RateLimited(WonderQError):
    """The principal (or client address), or the server as a whole, is over its request rate."""

    status = 429
    code = "rate_limited"
    retry_after = 1.0

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # this refusal's own wait, in seconds


class QueueFull(WonderQError):
    """The queue holds MAX_QUEUE_MESSAGES messages: a send waits until consumers make room."""

    status = 429
    code = "queue_full"
    retry_after = 1.0


class TooManyQueues(WonderQError):
    """The server holds MAX_QUEUES queues: a new one needs another deleted first."""

    status = 409
    code = "too_many_queues"


class RouteNotFound(WonderQError):
    status = 404
    code = "not_found"


class MethodNotAllowed(WonderQError):
    status = 405
    code = "method_not_allowed"


class LeaseLost(WonderQError):
    """The receipt is not the live lease of the message: expired, released, or from an earlier delivery."""

    status = 409
    code = "lease_lost"


class QueueInUse(WonderQError):
    """The queue is another queue's dead-letter queue: deleting it would leave nowhere to put dead letters."""

    status = 409
    code = "queue_in_use"


class MessageTooLarge(WonderQError):
    status = 413
    code = "message_too_large"


class RequestTooLarge(WonderQError):
    status = 413
    code = "request_too_large"


class ShuttingDown(WonderQError):
    status = 503
    code = "shutting_down"


class Overloaded(WonderQError):
    """The actor's inbox stayed full for INBOX_TIMEOUT seconds: the broker is behind; try again shortly."""

    status = 503
    code = "overloaded"
    retry_after = 1.0


class TooManyLongPolls(WonderQError):
    """MAX_LONG_POLLS receives are already waiting for messages."""

    status = 503
    code = "too_many_long_polls"
    retry_after = 1.0


class TooManyStreams(WonderQError):
    """MAX_STREAMS streaming connections are already open."""

    status = 503
    code = "too_many_streams"
    retry_after = 1.0


class TooManyConnections(WonderQError):
    """MAX_CONNECTIONS connections are already open (answered by the listener itself, then closed)."""

    status = 503
    code = "too_many_connections"
    retry_after = 1.0


class StorageFull(WonderQError):
    """The journal could not commit because the disk (or the store's size limit) is full. Nothing changed."""

    status = 507
    code = "insufficient_storage"


class StorageUnavailable(WonderQError):
    """The journal could not commit (an I/O error, a locked or damaged file). Nothing changed."""

    status = 503
    code = "storage_unavailable"
