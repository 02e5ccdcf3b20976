"""Frozen value types that cross the boundary of the core: what goes in (Payload) and what comes out.

Nothing here has behaviour beyond construction; the core owns every rule.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

DEFAULT_RETENTION = 345_600.0  # seconds a message may live unless its queue says otherwise (4 days, as in SQS)


class State(enum.Enum):
    DELAYED = "delayed"  # sent with a delay that has not passed yet
    READY = "ready"
    LEASED = "leased"


class TypedValue(NamedTuple):
    """An attribute value with a data type, as SQS has them ("Number", "Binary", "String.custom", ...). `value`
    is bytes when the type is Binary (or Binary.<custom>), text otherwise. A plain `str` value is of type
    "String"."""

    data_type: str
    value: str | bytes


AttributeValue = str | TypedValue
Attributes = tuple[tuple[str, AttributeValue], ...]
"""A message's attributes: (name, value) pairs sorted by name, each name once. A tuple so that it is frozen."""

NO_ATTRIBUTES: Attributes = ()


class Payload(NamedTuple):
    """A message as its sender gave it: the raw body bytes, the media type they were sent with, and its
    attributes. A named tuple rather than a frozen dataclass: recovery makes one per stored message, and a
    tuple is several times cheaper."""

    data: bytes
    content_type: str
    attributes: Attributes = NO_ATTRIBUTES


class Outgoing(NamedTuple):
    """A message to send, with its delivery options. A named tuple, as Payload: one is made per message sent,
    and a tuple is made in a third of a frozen dataclass's time."""

    payload: Payload
    delay: float | None = None  # seconds before it can be received; None: the queue's `delay`
    priority: int = 0  # lower goes first; equal priorities go in send order
    dedup_id: str | None = None  # a send with a dedup id already used in the window returns the first id
    group: str | None = None  # its message group; a FIFO queue delivers each group in order, one batch at a time
    dedup_per_group: bool = False  # the dedup id counts within the message group only (SQS's messageGroup scope)


class Lease(NamedTuple):
    """One delivery of a message to a consumer: the receipt acknowledges exactly this delivery. A named tuple,
    as Payload: one is made per message delivered."""

    id: str
    receipt: str
    payload: Payload
    priority: int
    receive_count: int
    sent_at: float  # epoch seconds
    first_received_at: float  # epoch seconds of the first delivery (this one, when receive_count is 1)
    lease_expires_at: float  # epoch seconds
    consumer: str | None
    source_queue: str | None = None  # the queue it was dead-lettered from, while it is in a dead-letter queue
    group: str | None = None  # its message group, if it was sent with one (always, in a FIFO queue)
    dedup_id: str | None = None  # the dedup id it was sent with


@dataclass(frozen=True, slots=True)
class MessageView:
    """A message as the peek view shows it: never with its receipt."""

    id: str
    state: State
    payload: Payload
    priority: int
    visible_at: float | None  # epoch seconds; None unless delayed
    receive_count: int
    sent_at: float  # epoch seconds
    first_received_at: float | None  # epoch seconds; None until first delivered
    lease_expires_at: float | None  # epoch seconds; None unless leased
    consumer: str | None
    source_queue: str | None = None  # the queue it was dead-lettered from, while it is in a dead-letter queue
    group: str | None = None  # its message group, if it was sent with one (always, in a FIFO queue)
    dedup_id: str | None = None  # the dedup id it was sent with


@dataclass(frozen=True, slots=True)
class PeekPage:
    messages: tuple[MessageView, ...]
    next_after: str | None  # pass as `after` for the next page; None on the last page


@dataclass(frozen=True, slots=True)
class QueueAttributes:
    """A queue's settings, as PUT /v1/queues/{name} sets them."""

    visibility_timeout: float  # seconds a receive leases a message for, unless the receive says otherwise
    max_in_flight: int = 0  # most messages leased at once; receives beyond it get nothing; 0: no limit
    delay: float = 0.0  # seconds a new message waits before it can be received, unless its send says otherwise
    max_message_bytes: int = 0  # largest message this queue takes; 0: the server's MAX_MESSAGE_BYTES
    retention: float = DEFAULT_RETENTION  # seconds a message may live after its send; older ones are dropped
    max_receives: int = 0  # deliveries a message gets before it moves to dead_letter_queue; 0: no limit
    dead_letter_queue: str | None = None  # where messages go after max_receives deliveries
    # Name-value pairs the core keeps for front ends without acting on them (the SQS adapter's tags and
    # SQS-only settings), sorted by name.
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class QueueStats:
    name: str
    attributes: QueueAttributes
    created_at: float  # epoch seconds
    ready: int
    leased: int
    delayed: int
    sent: int  # totals since the queue was created
    received: int
    acked: int
    expired: int
    released: int
    dropped: int  # messages older than the retention, removed
    dead_lettered: int  # messages moved from this queue to its dead-letter queue
    redriven: int  # messages moved out of this queue by a redrive
    dead_letters: int = 0  # messages in this queue now that were dead-lettered into it (a gauge, not a total)
    oldest_sent_at: float | None = None  # epoch seconds: when its oldest message was sent; None when empty


@dataclass(frozen=True, slots=True)
class RedriveReport:
    moved: int
    skipped: int  # ready messages passed over: no destination was given and they have no source queue to go to


@dataclass(frozen=True, slots=True)
class AckFailure:
    receipt: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class AckReport:
    acked: tuple[str, ...]  # receipts
    failed: tuple[AckFailure, ...]


# ---- what the journal stores: the durable state of queues and messages ---------------------------------


@dataclass(frozen=True, slots=True)
class QueueRecord:
    name: str
    visibility_timeout: float  # seconds
    max_in_flight: int  # 0: no limit
    delay: float  # seconds
    max_message_bytes: int  # 0: the server's limit
    created_at: float  # epoch seconds
    sent: int
    received: int
    acked: int
    expired: int
    released: int
    retention: float = DEFAULT_RETENTION  # seconds
    max_receives: int = 0  # 0: no limit
    dead_letter_queue: str | None = None
    dropped: int = 0
    dead_lettered: int = 0
    redriven: int = 0
    metadata: tuple[tuple[str, str], ...] = ()


class MessageRecord(NamedTuple):
    """A message as stored. A lease (receipt, deadline, consumer) is stored too, so it survives a restart.
    A named tuple for the same reason as Payload: recovery makes millions of them."""

    id: str
    queue: str
    payload: Payload
    priority: int
    sent_at: float  # epoch seconds
    visible_at: float | None  # epoch seconds; None unless delayed
    receive_count: int
    first_received_at: float | None  # epoch seconds; None until first delivered
    receipt: str | None  # None unless leased
    deadline_at: float | None  # epoch seconds; None unless leased
    consumer: str | None
    source_queue: str | None = None  # the queue it was dead-lettered from
    group: str | None = None  # its message group, if it was sent with one (always, in a FIFO queue)
    dedup_id: str | None = None  # the dedup id it was sent with


class DedupRecord(NamedTuple):
    """A deduplication id seen on a queue: sends with it until `expires_at` return `message_id`."""

    queue: str
    dedup_id: str
    message_id: str
    expires_at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class Changes:
    """Everything a batch of commands changed, as the journal applies it in one transaction, in this order:
    delete `deleted_messages` (acked, purged, dropped, or in a deleted queue), insert `inserted_messages`, update
    the changing fields (queue, delivery and lease) of `updated_messages`, delete `deleted_queues`, write
    `queues`."""

    deleted_messages: tuple[str, ...] = ()  # ids
    inserted_messages: tuple[MessageRecord, ...] = ()
    updated_messages: tuple[MessageRecord, ...] = ()
    deleted_queues: tuple[str, ...] = ()
    queues: tuple[QueueRecord, ...] = ()
    dedup: tuple[DedupRecord, ...] = ()  # written after the queues
    dedup_expired: tuple[tuple[str, str], ...] = ()  # (queue, dedup id) pairs to forget
    last_id: str | None = None  # the newest id ever issued, so ids stay unique across restarts

    def __bool__(self) -> bool:
        return any(
            (
                self.deleted_messages,
                self.inserted_messages,
                self.updated_messages,
                self.deleted_queues,
                self.queues,
                self.dedup,
                self.dedup_expired,
            )
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole durable state, as loaded at start-up."""

    queues: tuple[QueueRecord, ...]
    messages: Iterable[MessageRecord]  # in id order; may be a one-shot stream read from the store as it goes
    last_id: str | None
    dedup: tuple[DedupRecord, ...] = ()
