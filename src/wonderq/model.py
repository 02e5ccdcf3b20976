"""Frozen value types that cross the boundary of the core: what goes in (Payload) and what comes out.

Nothing here has behaviour beyond construction; the core owns every rule.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.Enum):
    READY = "ready"
    LEASED = "leased"


@dataclass(frozen=True, slots=True)
class Payload:
    """A message body as stored: the raw bytes and the media type they were sent with."""

    data: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Lease:
    """One delivery of a message to a consumer: the receipt acknowledges exactly this delivery."""

    id: str
    receipt: str
    payload: Payload
    receive_count: int
    sent_at: float  # epoch seconds
    lease_expires_at: float  # epoch seconds
    consumer: str | None


@dataclass(frozen=True, slots=True)
class MessageView:
    """A message as the peek view shows it: never with its receipt."""

    id: str
    state: State
    payload: Payload
    receive_count: int
    sent_at: float  # epoch seconds
    lease_expires_at: float | None  # epoch seconds; None unless leased
    consumer: str | None


@dataclass(frozen=True, slots=True)
class PeekPage:
    messages: tuple[MessageView, ...]
    next_after: str | None  # pass as `after` for the next page; None on the last page


@dataclass(frozen=True, slots=True)
class QueueAttributes:
    visibility_timeout: float  # seconds a receive leases a message for, unless the receive says otherwise


@dataclass(frozen=True, slots=True)
class QueueStats:
    name: str
    attributes: QueueAttributes
    created_at: float  # epoch seconds
    ready: int
    leased: int
    sent: int  # totals since the queue was created
    received: int
    acked: int
    expired: int
    released: int


@dataclass(frozen=True, slots=True)
class AckFailure:
    receipt: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class AckReport:
    acked: tuple[str, ...]  # receipts
    failed: tuple[AckFailure, ...]
