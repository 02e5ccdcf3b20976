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


class StorageFull(WonderQError):
    """The journal could not commit because the disk (or the store's size limit) is full. Nothing changed."""

    status = 507
    code = "insufficient_storage"


class StorageUnavailable(WonderQError):
    """The journal could not commit (an I/O error, a locked or damaged file). Nothing changed."""

    status = 503
    code = "storage_unavailable"
