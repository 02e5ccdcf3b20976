"""The pure queue state machine: every queue, every message, and every change to either.

No I/O, no clock reads, no async library: each state-changing call takes `now` (epoch seconds), message ids and
receipt tokens come from injected factories, and every rule below is enforced here and nowhere else.

Rules
1. Every state change of a message or a queue happens in this module.
2. A message is in exactly one state: DELAYED (in its queue's delay heap until `visible_at`), READY (in its
   queue's ready heap, keyed by priority then id) or LEASED (with one live receipt and a deadline in its
   queue's deadline heap). Acked and purged messages no longer exist.
3. A lease is live while `now < deadline_at`. At `now >= deadline_at` it has expired, whether or not it has
   been swept yet: ack and visibility changes refuse it, and every call on a queue first sweeps that queue's
   due transitions (leases that ended, delays that passed, messages past retention; also those of the queues
   that name it as their dead-letter queue), so no answer depends on a tick. A sweep does at most
   `sweep_slice` transitions of each kind per call, so that 100,000 leases ending at one moment do not stall
   everything behind one call: the rest wait for the next calls (and the ticker's rounds, each its own
   command), and until then still count as LEASED in the stats and wait to go out again. The sweep (`expire`)
   finds the queues with due work on an agenda, so its cost follows those queues, not the number of queues:
   every change that can make a queue's earliest due time earlier files that time there (see `_schedule`).
4. Every delivery makes a fresh receipt `<message id>.<token>`. Ack and visibility changes need the receipt of
   the live lease; anything else fails with LeaseLost (or MessageNotFound) and changes nothing.
5. READY messages are delivered lowest priority first, then lowest id, never more at once than a queue's
   `max_in_flight` allows. Ids increase in send order, so a message whose lease ended goes out again before
   newer ones of its priority, in its original order. A DELAYED message becomes READY at `now >= visible_at`.
6. A send whose dedup id was used on the same queue within DEDUP_WINDOW seconds stores nothing and answers
   with the first send's id (even if that message is gone since).
7. A message is dropped (in any state) at `now >= sent_at + retention` of the queue it is in; `sent_at` never
   changes, not when the message moves to another queue.
8. With `max_receives` N, a message whose Nth lease ends (expired or released) moves to the queue's
   `dead_letter_queue` instead of becoming READY again, as does a READY message a receive finds already
   received N times (N was lowered since). A moved message keeps its id, payload, priority, sent_at and
   receive count and records its source queue. A queue named as a dead-letter queue cannot be deleted, so a
   dead letter always has somewhere to go. Redrive moves READY messages back to their source queue (or to a
   named one) with a fresh receive count.
9. A call that raises a WonderQError has changed nothing (batches are validated whole before any change).
10. With `track_changes`, every change marks what it touched; `drain_changes` turns the marks into the records
   the journal writes (one transaction per actor batch), and `restore` rebuilds the state from them.

Transitions
    send ──▶ (DELAYED ──visible_at──▶) READY ──receive──▶ LEASED ──ack──▶ gone
                                         ▲                   │
                                         └─ expire / release ┘     purge / delete queue / retention:
                                                             │         any state ──▶ gone
                          dead-letter queue: READY ◀─────────┘ (the max_receives-th lease ended)

Heaps (and the arrivals deque) hold stale entries (a lease extended, released or acked leaves its old deadline
entry behind); an entry is acted on only if it still matches the message, and is dropped when it reaches the top.
So does the agenda: an entry is live only while its queue exists and its time is that queue's `due`.

Caps (Limits): at most `max_queues` queues (creating another fails with TooManyQueues) and at most
`max_queue_messages` messages per queue (a send past it fails with QueueFull and stores nothing). Only sends
are capped: moving a message (a dead letter, a redrive) is never refused, since it adds nothing to the server's
total and a dead letter must never be lost, so a queue can hold more than the cap through moves.
"""

from __future__ import annotations

import heapq
import math
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar, overload

from wonderq.errors import (
    BatchTooLarge,
    EmptyMessage,
    InvalidParameter,
    InvalidQueueName,
    InvalidReceipt,
    LeaseLost,
    MessageNotFound,
    MessageTooLarge,
    QueueFull,
    QueueInUse,
    QueueNotFound,
    TooManyQueues,
    WonderQError,
)
from wonderq.model import (
    NO_ATTRIBUTES,
    AckFailure,
    AckReport,
    Attributes,
    AttributeValue,
    Changes,
    DedupRecord,
    Lease,
    MessageRecord,
    MessageView,
    Outgoing,
    Payload,
    PeekPage,
    QueueAttributes,
    QueueRecord,
    QueueStats,
    RedriveReport,
    Snapshot,
    State,
    TypedValue,
)
from wonderq.ready import GroupReady, PriorityReady

# 1 to 80 of A-Z a-z 0-9 _ -, optionally after a namespace "<ns>:" (the SQS adapter keeps the queues of each
# region but its home region in the namespace of that region's name, "eu-west-1:jobs").
# A name ending in ".fifo" (which counts toward the 80) is a FIFO queue's.
QUEUE_NAME = re.compile(r"(?:[a-z0-9-]{1,40}:)?(?:[A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\.fifo)")
FIFO_SUFFIX = ".fifo"
GROUP = re.compile(r"[!-~]{0,128}")  # a message group: printable ASCII, no spaces ("" is the default group)
ATTRIBUTE_TYPE = re.compile(r"(String|Number|Binary)(\.[!-~]{1,249})?")  # SQS's data types, custom suffix too
MAX_VISIBILITY_TIMEOUT = 43_200.0  # seconds (12 hours), as in SQS
MAX_CONSUMER_CHARS = 200
MAX_PEEK = 1_000  # messages per peek page
MAX_IN_FLIGHT = 1_000_000  # the largest max_in_flight a queue may have
MAX_DELAY = 900.0  # seconds (15 minutes), as in SQS
PRIORITIES = range(-(2**31), 2**31)  # 32-bit signed: lower goes first
DEDUP_WINDOW = 300.0  # seconds a dedup id is remembered (5 minutes, as in SQS)
DEDUP_ID = re.compile(r"[!-~]{1,128}")  # printable ASCII, no spaces
MIN_RETENTION = 60.0  # seconds (1 minute), as in SQS
MAX_RETENTION = 1_209_600.0  # seconds (14 days), as in SQS
MAX_RECEIVES = 1_000  # the largest max_receives, as SQS's maxReceiveCount
MAX_ATTRIBUTES = 10  # attributes per message, as in SQS
ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,256}")
MAX_REDRIVE = 1_000  # messages one redrive call moves; the web layer calls again for more
SWEEP_SLICE = 250  # time-driven transitions of each kind one call makes (about 2 ms of work; rule 3)

IdFactory = Callable[[float], str]
"""Returns a new message id for a message sent at `now`; ids must increase (as strings) with every call."""

TokenFactory = Callable[[], str]
"""Returns a new unguessable receipt token (no dots)."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int
    max_batch: int
    default_visibility_timeout: float  # seconds
    max_queues: int = 0  # queues on this server; 0: no limit
    max_queue_messages: int = 0  # messages one queue may hold after a send; 0: no limit


class _RareField(Generic[T]):
    """A field of `_Message` that most messages leave at its default: it lives in the message's `_Rare` object,
    made when the first such field is set to something else, so that a plain READY message stays small."""

    __slots__ = ("default", "name")

    def __init__(self, default: T) -> None:
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, message: None, owner: type) -> _RareField[T]: ...

    @overload
    def __get__(self, message: _Message, owner: type | None = None) -> T: ...

    def __get__(self, message: _Message | None, owner: type | None = None) -> T | _RareField[T]:
        if message is None:
            return self
        value: T = getattr(message._rare, self.name)
        return value

    def __set__(self, message: _Message, value: T) -> None:
        rare = message._rare
        if rare is _DEFAULTS:
            if value == self.default:
                return
            rare = message._rare = _Rare()
        setattr(rare, self.name, value)


class _Rare:
    """The fields of a message that are set on few messages: a priority, a delay, deliveries and the lease,
    a dead-letter source, a group, a dedup id, attributes."""

    __slots__ = (
        "attributes",
        "consumer",
        "deadline_at",
        "dedup_id",
        "first_received_at",
        "group",
        "priority",
        "receipt",
        "receive_count",
        "source_queue",
        "visible_at",
    )

    def __init__(self) -> None:
        self.priority = 0
        self.visible_at: float | None = None
        self.receive_count = 0
        self.first_received_at: float | None = None
        self.receipt: str | None = None
        self.deadline_at: float | None = None
        self.consumer: str | None = None
        self.source_queue: str | None = None
        self.group: str | None = None
        self.dedup_id: str | None = None
        self.attributes: Attributes = NO_ATTRIBUTES


_DEFAULTS = _Rare()  # shared by every message with no rare field set; never written to


class _Message:
    """A message. Every message has the fields in `__slots__`; the others are `_RareField`s, read and written
    like plain attributes but kept in a `_Rare` object that only messages setting one of them have (memory per
    message: docs/performance.md). The payload is kept as its parts, and `payload` puts them together."""

    __slots__ = ("_rare", "content_type", "data", "id", "sent_at", "state")

    priority = _RareField(0)
    visible_at: _RareField[float | None] = _RareField(None)
    receive_count = _RareField(0)
    first_received_at: _RareField[float | None] = _RareField(None)
    receipt: _RareField[str | None] = _RareField(None)
    deadline_at: _RareField[float | None] = _RareField(None)
    consumer: _RareField[str | None] = _RareField(None)
    source_queue: _RareField[str | None] = _RareField(None)  # set while it is in a dead-letter queue
    group: _RareField[str | None] = _RareField(None)  # its message group ("" at least, in a FIFO queue)
    dedup_id: _RareField[str | None] = _RareField(None)  # the dedup id it was sent with
    attributes: _RareField[Attributes] = _RareField(NO_ATTRIBUTES)

    def __init__(
        self,
        *,
        id: str,
        payload: Payload,
        sent_at: float,
        priority: int = 0,
        receive_count: int = 0,
        first_received_at: float | None = None,
        source_queue: str | None = None,
        group: str | None = None,
        dedup_id: str | None = None,
    ) -> None:
        self.id = id
        self.data = payload.data
        self.content_type = sys.intern(str(payload.content_type))  # one string per content type (str: exactly)
        self.sent_at = sent_at
        self.state = State.READY
        self._rare = _DEFAULTS
        if (
            priority
            or receive_count
            or payload.attributes
            or first_received_at is not None
            or source_queue is not None
            or group is not None
            or dedup_id is not None
        ):
            rare = self._rare = _Rare()
            rare.priority = priority
            rare.receive_count = receive_count
            rare.first_received_at = first_received_at
            rare.source_queue = source_queue
            rare.group = None if group is None else sys.intern(str(group))
            rare.dedup_id = dedup_id
            rare.attributes = payload.attributes

    @property
    def payload(self) -> Payload:
        return Payload(self.data, self.content_type, self.attributes)


@dataclass(slots=True)
class _Queue:
    name: str
    attributes: QueueAttributes
    created_at: float
    messages: dict[str, _Message] = field(default_factory=dict)  # insertion order is send order
    ready: PriorityReady = field(default_factory=PriorityReady)  # unused in a FIFO queue
    groups: GroupReady | None = None  # the READY order of a FIFO queue
    delayed: list[tuple[float, str]] = field(default_factory=list)  # heap of (visible_at, message id)
    delayed_count: int = 0
    deadlines: list[tuple[float, str, str]] = field(default_factory=list)  # heap of (deadline_at, id, receipt)
    # Retention: ids in send order (so sent_at order, unless the wall clock stepped back), plus a heap of
    # (sent_at, id) for messages that arrived from another queue, out of that order.
    arrivals: deque[str] = field(default_factory=deque)
    moved_in: list[tuple[float, str]] = field(default_factory=list)
    newest_id: str = ""  # the largest id ever put in `messages`
    in_id_order: bool = True  # whether `messages` iterates in id order (moved-in messages break it)
    dedup: dict[str, tuple[str, float]] = field(default_factory=dict)  # dedup id -> (message id, expires_at)
    dedup_order: deque[tuple[float, str]] = field(default_factory=deque)  # (expires_at, dedup id), oldest first
    leased: int = 0
    sent: int = 0
    received: int = 0
    acked: int = 0
    expired: int = 0
    released: int = 0
    dropped: int = 0
    dead_lettered: int = 0
    redriven: int = 0
    dead_letters: int = 0  # messages here now with a source_queue (derived: rebuilt on restore, not journaled)
    # Epoch seconds of this queue's live agenda entry: at or before its earliest due transition; inf: none due.
    due: float = math.inf

    def push_ready(self, message: _Message) -> None:
        """File a READY message in the order it goes out by."""
        if self.groups is None:
            self.ready.push(message.priority, message.id)
        else:
            self.groups.push(message.id, message.group or "")

    def unlease(self, message: _Message) -> None:
        """Count a message as no longer leased (its lease ended, or it was acked or dropped while leased)."""
        self.leased -= 1
        if self.groups is not None:
            self.groups.unlease(message.group or "")

    def add(self, message: _Message) -> None:
        """Put a message in `messages`; the caller files it in the heap of its state."""
        self.messages[message.id] = message
        if message.id > self.newest_id:
            self.newest_id = message.id
        elif message.id < self.newest_id:
            self.in_id_order = False


def is_fifo(name: str) -> bool:
    """Whether the queue of this name is a FIFO queue: its name ends in ".fifo"."""
    return name.endswith(FIFO_SUFFIX)


def _new_queue(name: str, attributes: QueueAttributes, created_at: float) -> _Queue:
    queue = _Queue(name=name, attributes=attributes, created_at=created_at)
    if is_fifo(name):
        queue.groups = GroupReady()
    return queue


def check_queue_name(name: str) -> str:
    if not QUEUE_NAME.fullmatch(name):
        raise InvalidQueueName(
            f"queue name {name[:100]!r} is invalid: use 1 to 80 characters of A-Z a-z 0-9 _ -"
            " (ending in .fifo for a FIFO queue, within the 80; optionally after a namespace: 1 to 40 of a-z 0-9 -"
            " and a colon)"
        )
    return name


def check_visibility_timeout(seconds: float, *, allow_zero: bool = False) -> float:
    low_ok = seconds >= 0 if allow_zero else seconds > 0
    if not (low_ok and seconds <= MAX_VISIBILITY_TIMEOUT):  # also rejects NaN
        low = "0" if allow_zero else "greater than 0"
        raise InvalidParameter(
            f"visibility_timeout must be {low} and at most {MAX_VISIBILITY_TIMEOUT:g} seconds, got {seconds}"
        )
    return float(seconds)


def check_delay(seconds: float) -> float:
    if not 0 <= seconds <= MAX_DELAY:  # also rejects NaN
        raise InvalidParameter(f"delay must be between 0 and {MAX_DELAY:g} seconds, got {seconds}")
    return float(seconds)


def check_retention(seconds: float) -> float:
    if not MIN_RETENTION <= seconds <= MAX_RETENTION:  # also rejects NaN
        raise InvalidParameter(
            f"retention must be between {MIN_RETENTION:g} and {MAX_RETENTION:g} seconds, got {seconds}"
        )
    return float(seconds)


def check_attributes(attributes: Attributes) -> int:
    """Check a message's attributes; returns the bytes they count for (UTF-8 names and values)."""
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidParameter(f"a message has at most {MAX_ATTRIBUTES} attributes, got {len(attributes)}")
    size = 0
    previous = None
    for name, value in attributes:
        if not ATTRIBUTE_NAME.fullmatch(name):
            raise InvalidParameter(
                f"attribute name {name[:100]!r} is invalid: use 1 to 256 characters of A-Z a-z 0-9 _ - ."
            )
        if previous is not None and name <= previous:
            raise InvalidParameter("attributes must be sorted by name, each name once")
        previous = name
        if isinstance(value, TypedValue):
            match = ATTRIBUTE_TYPE.fullmatch(value.data_type)
            if match is None:
                raise InvalidParameter(f"attribute {name!r}: data type {value.data_type[:100]!r} is invalid")
            binary = match.group(1) == "Binary"
            if isinstance(value.value, bytes) != binary:
                raise InvalidParameter(
                    f"attribute {name!r}: a {match.group(1)} value must be {'bytes' if binary else 'text'}"
                )
            size += len(value.data_type)
            if isinstance(value.value, bytes):
                size += len(name) + len(value.value)
                continue
            text = value.value
        else:
            text = value
        try:
            size += len(name) + len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidParameter(f"attribute {name!r}: the value is not valid Unicode text") from None
    return size


def make_attributes(given: Mapping[str, AttributeValue] | None) -> Attributes:
    """Attributes as a message holds them (sorted by name), from a mapping."""
    return tuple(sorted(given.items())) if given else NO_ATTRIBUTES


def check_priority(priority: int) -> int:
    if priority not in PRIORITIES:
        raise InvalidParameter(f"priority must be a 32-bit signed integer, got {priority}")
    return priority


def split_receipt(receipt: str) -> str:
    """The message id a receipt belongs to."""
    message_id, dot, token = receipt.partition(".")
    if not (message_id and dot and token):
        raise InvalidReceipt(f"receipt {receipt[:100]!r} is not a WonderQ receipt")
    return message_id


class Core:
    """All queues of one broker. Not thread-safe and not async: exactly one owner calls it."""

    def __init__(
        self,
        *,
        limits: Limits,
        new_id: IdFactory,
        new_token: TokenFactory,
        track_changes: bool = False,
        sweep_slice: int = SWEEP_SLICE,
    ) -> None:
        if sweep_slice < 1:
            raise ValueError(f"sweep_slice must be at least 1, got {sweep_slice}")
        self.limits = limits
        self._slice = sweep_slice
        self._new_id = new_id
        self._new_token = new_token
        self._queues: dict[str, _Queue] = {}
        self._feeders: dict[str, set[str]] = {}  # dead-letter queue -> the queues that name it
        # Heap of (epoch seconds, queue name): when each queue next has a transition due (see `_schedule`).
        self._agenda: list[tuple[float, str]] = []
        self._track = track_changes
        self._dirty_messages: dict[str, tuple[str, bool]] = {}  # id -> (queue, inserted since the last drain)
        self._dirty_queues: set[str] = set()
        self._dirty_dedup: dict[tuple[str, str], DedupRecord | None] = {}  # None: forget it
        self._last_id: str | None = None

    # ---- queues -------------------------------------------------------------------------------------

    def put_queue(
        self,
        name: str,
        *,
        visibility_timeout: float | None,
        max_in_flight: int | None = None,
        delay: float | None = None,
        max_message_bytes: int | None = None,
        retention: float | None = None,
        max_receives: int | None = None,
        dead_letter_queue: str | None = None,
        metadata: Mapping[str, str | None] | None = None,
        now: float,
    ) -> tuple[QueueStats, bool]:
        """Create the queue, or update the attributes given (None: keep, or the default for a new queue;
        `dead_letter_queue=""` removes it; `metadata` sets the names given, and removes those given as None).
        Returns its stats and whether it was created."""
        check_queue_name(name)
        if visibility_timeout is not None:
            check_visibility_timeout(visibility_timeout)
        if max_in_flight is not None and not 0 <= max_in_flight <= MAX_IN_FLIGHT:
            raise InvalidParameter(
                f"max_in_flight must be between 0 (no limit) and {MAX_IN_FLIGHT}, got {max_in_flight}"
            )
        if delay is not None:
            check_delay(delay)
        if max_message_bytes is not None and not 0 <= max_message_bytes <= self.limits.max_message_bytes:
            raise InvalidParameter(
                f"max_message_bytes must be between 0 (the server's limit) and {self.limits.max_message_bytes},"
                f" got {max_message_bytes}"
            )
        if retention is not None:
            check_retention(retention)
        if max_receives is not None and not 0 <= max_receives <= MAX_RECEIVES:
            raise InvalidParameter(f"max_receives must be between 0 (no limit) and {MAX_RECEIVES}, got {max_receives}")
        if dead_letter_queue:
            if dead_letter_queue == name:
                raise InvalidParameter("a queue cannot be its own dead_letter_queue")
            if dead_letter_queue not in self._queues:
                check_queue_name(dead_letter_queue)
                raise InvalidParameter(f"dead_letter_queue {dead_letter_queue!r} does not exist; create it first")
            if is_fifo(dead_letter_queue) != is_fifo(name):
                kind = "a FIFO queue" if is_fifo(name) else "a standard queue"
                raise InvalidParameter(f"the dead_letter_queue of {kind} must be {kind} too")
        queue = self._queues.get(name)
        old = queue.attributes if queue else QueueAttributes(visibility_timeout=self.limits.default_visibility_timeout)
        attributes = QueueAttributes(
            visibility_timeout=old.visibility_timeout if visibility_timeout is None else visibility_timeout,
            max_in_flight=old.max_in_flight if max_in_flight is None else max_in_flight,
            delay=old.delay if delay is None else float(delay),
            max_message_bytes=old.max_message_bytes if max_message_bytes is None else max_message_bytes,
            retention=old.retention if retention is None else float(retention),
            max_receives=old.max_receives if max_receives is None else max_receives,
            dead_letter_queue=old.dead_letter_queue if dead_letter_queue is None else (dead_letter_queue or None),
            metadata=old.metadata if not metadata else _merge(old.metadata, metadata),
        )
        if attributes.max_receives and attributes.dead_letter_queue is None:
            raise InvalidParameter("max_receives needs a dead_letter_queue to move messages to")
        created = queue is None
        if queue is None:
            self._check_room_for_a_queue(name)
            queue = self._queues[name] = _new_queue(name, attributes, now)
        else:
            self._advance(queue, now)  # what was due happens under the old attributes
        if created or queue.attributes != attributes:
            self._set_dead_letter_queue(name, None if created else old.dead_letter_queue, attributes.dead_letter_queue)
            queue.attributes = attributes
            self._touch_queue(queue)
            self._schedule(queue, self._next_due(queue))  # a shorter retention brings the front's drop forward
        return self._stats(queue), created

    def _check_room_for_a_queue(self, name: str) -> None:
        cap = self.limits.max_queues
        if cap and len(self._queues) >= cap:
            raise TooManyQueues(
                f"cannot create queue {name!r}: this server holds {len(self._queues)} queues, its limit"
                f" (MAX_QUEUES) is {cap}; delete a queue first"
            )

    def delete_queue(self, name: str, *, now: float) -> None:
        queue = self._queue(name, now)
        if self._feeders.get(name):
            named_by = ", ".join(repr(feeder) for feeder in sorted(self._feeders[name]))
            raise QueueInUse(
                f"queue {name!r} is the dead_letter_queue of {named_by}; change their dead_letter_queue first"
            )
        self._touch_all(queue)
        if self._track:
            for dedup_id in queue.dedup:
                self._dirty_dedup[name, dedup_id] = None
        self._set_dead_letter_queue(name, queue.attributes.dead_letter_queue, None)
        self._feeders.pop(name, None)
        del self._queues[name]
        if self._track:
            self._dirty_queues.add(name)

    def queue_stats(self, name: str, *, now: float) -> QueueStats:
        return self._stats(self._queue(name, now))

    def list_queues(self, *, now: float) -> list[QueueStats]:
        return [self._stats(self._queue(name, now)) for name in sorted(self._queues)]

    def purge(self, name: str, *, now: float) -> int:
        """Remove every message, leased or not. Returns how many were removed."""
        queue = self._queue(name, now)
        removed = len(queue.messages)
        self._touch_all(queue)
        queue.messages.clear()
        queue.ready.clear()
        if queue.groups is not None:
            queue.groups.clear()
        queue.delayed.clear()
        queue.delayed_count = 0
        queue.deadlines.clear()
        queue.arrivals.clear()
        queue.moved_in.clear()
        queue.in_id_order = True
        queue.leased = 0
        queue.dead_letters = 0
        return removed

    # ---- sending ------------------------------------------------------------------------------------

    def send(self, name: str, message: Payload | Outgoing, *, now: float) -> str:
        """Append one message, creating the queue with default attributes if needed. Returns its id."""
        return self.send_batch(name, (message,), now=now)[0]

    def send_batch(self, name: str, messages: Sequence[Payload | Outgoing], *, now: float) -> list[str]:
        """Append all messages or none: every entry is checked before the first is stored."""
        check_queue_name(name)
        if not messages:
            raise InvalidParameter("a batch needs at least one message")
        if len(messages) > self.limits.max_batch:
            raise BatchTooLarge(f"a batch holds at most {self.limits.max_batch} messages, got {len(messages)}")
        outgoing = [m if isinstance(m, Outgoing) else Outgoing(m) for m in messages]
        existing = self._queues.get(name)
        limit = (existing.attributes.max_message_bytes if existing else 0) or self.limits.max_message_bytes
        for index, entry in enumerate(outgoing):
            where = f"message {index}" if len(outgoing) > 1 else "message"
            data = entry.payload.data
            if not data:
                raise EmptyMessage(f"{where}: the body is empty")
            try:
                size = len(data) + check_attributes(entry.payload.attributes)
            except InvalidParameter as error:
                raise InvalidParameter(f"{where}: {error.message}") from None
            if size > limit:
                with_attributes = " with its attributes" if entry.payload.attributes else ""
                raise MessageTooLarge(f"{where}: the body{with_attributes} is {size} bytes; the limit is {limit}")
            try:
                if entry.delay is not None:
                    check_delay(entry.delay)
                check_priority(entry.priority)
                if entry.group is not None and not GROUP.fullmatch(entry.group):
                    raise InvalidParameter("a message group is up to 128 printable ASCII characters without spaces")
                if is_fifo(name) and (entry.delay is not None or entry.priority):
                    raise InvalidParameter("a FIFO queue takes neither a delay nor a priority per message")
                if entry.dedup_id is not None and not DEDUP_ID.fullmatch(entry.dedup_id):
                    raise InvalidParameter("a dedup id is 1 to 128 printable ASCII characters without spaces")
            except InvalidParameter as error:
                raise InvalidParameter(f"{where}: {error.message}") from None
        if existing is None:
            self._check_room_for_a_queue(name)
        self._check_room_for_messages(name, outgoing, now)
        if existing is None:
            self.put_queue(name, visibility_timeout=None, now=now)
        queue = self._queue(name, now)
        fifo = queue.groups is not None
        ids = []
        new = 0
        for entry in outgoing:
            group = _group(entry, fifo)
            key = _dedup_key(entry, group)
            if key is not None and key in queue.dedup:
                ids.append(queue.dedup[key][0])  # a repeat: the first send's id, nothing stored
                continue
            message_id = self._new_id(now)
            new += 1
            if key is not None:
                expires_at = now + DEDUP_WINDOW
                queue.dedup[key] = (message_id, expires_at)
                queue.dedup_order.append((expires_at, key))
                self._schedule(queue, expires_at)
                if self._track:
                    self._dirty_dedup[name, key] = DedupRecord(name, key, message_id, expires_at)
            delay = queue.attributes.delay if entry.delay is None else entry.delay
            message = _Message(
                id=message_id,
                payload=entry.payload,
                sent_at=now,
                priority=entry.priority,
                group=group,
                dedup_id=entry.dedup_id,
            )
            queue.add(message)
            queue.arrivals.append(message_id)
            if delay > 0:
                message.state = State.DELAYED
                message.visible_at = now + delay
                heapq.heappush(queue.delayed, (message.visible_at, message_id))
                queue.delayed_count += 1
                self._schedule(queue, message.visible_at)
            else:
                queue.push_ready(message)
            ids.append(message_id)
            self._last_id = message_id
            if self._track:
                self._dirty_messages[message_id] = (name, True)
        if new:
            queue.sent += new
            self._touch_queue(queue)
            self._schedule(queue, now + queue.attributes.retention)  # its drop, should it be the oldest
        return ids

    def _check_room_for_messages(self, name: str, outgoing: Sequence[Outgoing], now: float) -> None:
        """Refuse a send that would leave queue `name` holding more than `max_queue_messages` messages; repeats of
        a dedup id in its window add nothing, so they do not count."""
        cap = self.limits.max_queue_messages
        queue = self._queue(name, now) if name in self._queues else None
        held = len(queue.messages) if queue is not None else 0
        if not cap or held + len(outgoing) <= cap:
            return
        remembered = queue.dedup if queue is not None else {}
        keys: set[str] = set()
        new = 0
        for entry in outgoing:
            key = _dedup_key(entry, _group(entry, is_fifo(name)))
            if key is None or not (key in remembered or key in keys):
                new += 1
                if key is not None:
                    keys.add(key)
        if held + new > cap:
            raise QueueFull(
                f"queue {name!r} holds {held} messages: {new} more would pass its limit (MAX_QUEUE_MESSAGES) of"
                f" {cap}; receive and acknowledge some first"
            )

    # ---- receiving ----------------------------------------------------------------------------------

    def receive(
        self,
        name: str,
        *,
        max_messages: int,
        visibility_timeout: float | None,
        consumer: str | None,
        now: float,
    ) -> list[Lease]:
        """Lease up to `max_messages` ready messages, oldest first. An empty list when none is ready."""
        if not 1 <= max_messages <= self.limits.max_batch:
            raise InvalidParameter(f"max must be between 1 and {self.limits.max_batch}, got {max_messages}")
        if visibility_timeout is not None:
            check_visibility_timeout(visibility_timeout)
        if consumer is not None and len(consumer) > MAX_CONSUMER_CHARS:
            raise InvalidParameter(f"consumer must be at most {MAX_CONSUMER_CHARS} characters")
        queue = self._queue(name, now)
        if visibility_timeout is None:
            visibility_timeout = queue.attributes.visibility_timeout
        deadline_at = now + visibility_timeout
        max_messages = min(max_messages, self._room_in_flight(queue))
        leases: list[Lease] = []
        groups = queue.groups
        if groups is None:
            while len(leases) < max_messages and (message_id := queue.ready.pop()) is not None:
                self._lease_if_ready(queue, message_id, deadline_at, consumer, now, leases)
        else:
            # Group by group, oldest first; as many of one group as fit before the next (as SQS does).
            while len(leases) < max_messages and (group := groups.open_group()) is not None:
                taken = len(leases)
                while len(leases) < max_messages and (message_id := groups.pop(group)) is not None:
                    self._lease_if_ready(queue, message_id, deadline_at, consumer, now, leases)
                for _ in range(len(leases) - taken):
                    groups.lease(group)
        queue.leased += len(leases)
        queue.received += len(leases)
        if leases:
            self._touch_queue(queue)
            self._schedule(queue, deadline_at)
        return leases

    def _lease_if_ready(
        self, queue: _Queue, message_id: str, deadline_at: float, consumer: str | None, now: float, leases: list[Lease]
    ) -> None:
        """Lease the message a ready-order entry names, unless the entry is stale or the message is a dead
        letter by now (max_receives was lowered since); append the lease to `leases`."""
        message = queue.messages.get(message_id)
        if message is None or message.state is not State.READY:
            return  # stale entry: the message was purged, moved or dropped
        if self._too_old(queue, message, now):
            return
        if queue.attributes.max_receives and message.receive_count >= queue.attributes.max_receives:
            self._dead_letter(queue, message)
            return
        message.state = State.LEASED
        message.receive_count += 1
        if message.first_received_at is None:
            message.first_received_at = now
        message.receipt = f"{message.id}.{self._new_token()}"
        message.deadline_at = deadline_at
        message.consumer = consumer
        heapq.heappush(queue.deadlines, (deadline_at, message.id, message.receipt))
        leases.append(_lease(message))
        self._touch(queue, message)

    def has_ready(self, name: str, *, now: float) -> bool:
        """Whether a receive on this queue now would return a message (one is ready and in-flight room left)."""
        queue = self._queue(name, now)
        if not self._room_in_flight(queue):
            return False
        max_receives = queue.attributes.max_receives
        groups = queue.groups
        while True:
            group = None
            if groups is None:
                message_id = queue.ready.peek()
            else:
                group = groups.open_group()
                message_id = None if group is None else groups.peek(group)
            if message_id is None:
                return False
            message = queue.messages.get(message_id)
            if message is not None and message.state is State.READY and not self._too_old(queue, message, now):
                if not (max_receives and message.receive_count >= max_receives):
                    return True
                self._dead_letter(queue, message)  # its entry goes stale, and is dropped just below
            if groups is None:
                queue.ready.pop()
            else:
                groups.pop(group or "")

    # ---- settling leases ----------------------------------------------------------------------------

    def ack(self, name: str, message_id: str, receipt: str | None, *, now: float) -> None:
        """Delete a leased message. With `receipt=None` (the classic API) any live lease of it is accepted."""
        queue = self._queue(name, now)
        message = self._live_lease(queue, message_id, receipt, now)
        del queue.messages[message.id]
        queue.unlease(message)
        queue.acked += 1
        if message.source_queue is not None:
            queue.dead_letters -= 1
        self._touch(queue, message)
        self._touch_queue(queue)

    def ack_batch(self, name: str, receipts: Sequence[str], *, now: float) -> AckReport:
        """Ack each receipt on its own; failures are reported per receipt and change nothing."""
        if not receipts:
            raise InvalidParameter("receipts must hold at least one receipt")
        if len(receipts) > self.limits.max_batch:
            raise BatchTooLarge(f"a batch holds at most {self.limits.max_batch} receipts, got {len(receipts)}")
        self._queue(name, now)
        acked = []
        failed = []
        for receipt in receipts:
            try:
                self.ack(name, split_receipt(receipt), receipt, now=now)
            except WonderQError as error:
                failed.append(AckFailure(receipt=receipt, code=error.code, message=error.message))
            else:
                acked.append(receipt)
        return AckReport(acked=tuple(acked), failed=tuple(failed))

    def change_visibility(
        self, name: str, message_id: str, receipt: str, visibility_timeout: float, *, now: float
    ) -> float | None:
        """Move the lease deadline to `now + visibility_timeout` (heartbeat), or with 0 release the message
        at once (nack). Returns the new deadline, or None when released."""
        check_visibility_timeout(visibility_timeout, allow_zero=True)
        queue = self._queue(name, now)
        message = self._live_lease(queue, message_id, receipt, now)
        if visibility_timeout == 0:
            queue.released += 1
            self._end_lease(queue, message)
            return None
        message.deadline_at = now + visibility_timeout
        heapq.heappush(queue.deadlines, (message.deadline_at, message.id, receipt))
        self._touch(queue, message)
        self._schedule(queue, message.deadline_at)  # a shorter lease ends before what the agenda has
        return message.deadline_at

    def delete(self, name: str, message_id: str, *, now: float) -> bool:
        """Delete a message in whatever state it is (SQS's DeleteMessage accepts any receipt the message had).
        Returns whether it was there; deleting a message that is gone changes nothing."""
        queue = self._queue(name, now)
        message = queue.messages.get(message_id)
        if message is None or self._too_old(queue, message, now):
            return False
        del queue.messages[message_id]
        if message.state is State.LEASED:
            queue.unlease(message)
        elif message.state is State.DELAYED:
            queue.delayed_count -= 1
        queue.acked += 1
        if message.source_queue is not None:
            queue.dead_letters -= 1
        self._touch(queue, message)
        self._touch_queue(queue)
        return True

    def return_undelivered(self, name: str, leases: Iterable[Lease], *, now: float) -> None:
        """Put back leases whose reply never reached the consumer, as if they had never been handed out."""
        queue = self._queues.get(name)
        if queue is None:
            return
        for lease in leases:
            message = queue.messages.get(lease.id)
            if message is None or message.receipt != lease.receipt or message.state is not State.LEASED:
                continue
            self._make_ready(queue, message)
            message.receive_count -= 1
            if message.receive_count == 0:
                message.first_received_at = None
            queue.received -= 1

    def redrive(self, name: str, *, destination: str | None, limit: int, now: float) -> RedriveReport:
        """Move up to `limit` READY messages of queue `name` (in delivery order) to `destination`, or without one
        to the queue each was dead-lettered from. Moved messages start over: receive count 0, no source queue.
        Messages with nowhere to go (no source queue, or it no longer exists) stay and are counted as skipped."""
        if not 1 <= limit <= MAX_REDRIVE:
            raise InvalidParameter(f"limit must be between 1 and {MAX_REDRIVE}, got {limit}")
        queue = self._queue(name, now)
        target = None
        if destination is not None:
            if destination == name:
                raise InvalidParameter("the destination of a redrive must be another queue")
            target = self._queue(destination, now)
        moved = 0
        skipped: list[_Message] = []
        for message_id in self._ready_in_order(queue):
            message = queue.messages.get(message_id)
            if message is None or message.state is not State.READY:
                continue  # stale entry
            to = target or self._queues.get(message.source_queue or "")
            if to is None or to is queue or (to.groups is None) != (queue.groups is None):
                skipped.append(message)
                continue
            if target is None:
                self._advance(to, now)  # its due changes first, as on every other call on a queue
            self._move(queue, message, to)
            message.source_queue = None
            message.receive_count = 0
            message.first_received_at = None
            moved += 1
            if moved == limit:
                break
        if queue.groups is None:  # taken off the priority order: put back (a FIFO queue's order kept them)
            for message in skipped:
                queue.ready.push(message.priority, message.id)
        queue.redriven += moved
        return RedriveReport(moved=moved, skipped=len(skipped))

    @staticmethod
    def _ready_in_order(queue: _Queue) -> Iterator[str]:
        """READY ids (and stale entries) in delivery order. A standard queue's are taken off its priority order
        as they are consumed; a FIFO queue's come in id order across groups and its group order is left as it
        is (the ones moved away go stale there)."""
        if queue.groups is None:
            while (message_id := queue.ready.pop()) is not None:
                yield message_id
        else:
            yield from sorted(m.id for m in queue.messages.values() if m.state is State.READY)

    def expire(self, *, now: float) -> int:
        """Sweep the due transitions of the queues the agenda says are due, at most `sweep_slice` queues per call
        and a slice of each kind per queue (rule 3): leases that ended, delays that passed, messages past
        retention, dedup ids past their window. Returns how many leases ended; `behind` tells whether anything
        due is left for another call. Queues with nothing due cost nothing."""
        agenda = self._agenda
        due: list[_Queue] = []
        while agenda and agenda[0][0] <= now and len(due) < self._slice:
            at, name = heapq.heappop(agenda)
            queue = self._queues.get(name)
            if queue is not None and queue.due == at:  # else stale: the queue is gone, or filed earlier since
                queue.due = math.inf
                due.append(queue)
        ended = 0
        for queue in due:  # filed again only after the loop above: one slice per queue and call
            ended += self._advance(queue, now)
            self._schedule(queue, self._next_due(queue))
        return ended

    def behind(self, *, now: float) -> bool:
        """Whether some queue may still have a due transition that no sweep has made yet (its agenda entry is due;
        the work it stands for may turn out done already, so this can say True once with nothing left to do)."""
        agenda = self._agenda
        while agenda:
            at, name = agenda[0]
            queue = self._queues.get(name)
            if queue is not None and queue.due == at:
                return at <= now
            heapq.heappop(agenda)  # stale
        return False

    def _schedule(self, queue: _Queue, at: float) -> None:
        """File on the agenda that `queue` has a transition due at `at` (epoch seconds), unless it is filed for
        that time or earlier already. Every change that can make a queue's earliest due time earlier calls this
        (a lease, a visibility change, a delayed or moved-in message, a first message, a dedup id, a shorter
        retention), so each queue's `due` stays at or before its earliest due transition: the one entry per
        queue that is live. The entries it replaces go stale; when they are most of the agenda, it is rebuilt
        from the queues' `due`, so its memory follows the number of queues."""
        if at >= queue.due:
            return
        queue.due = at
        agenda = self._agenda
        heapq.heappush(agenda, (at, queue.name))
        if len(agenda) > 2 * len(self._queues) + 1024:
            self._agenda = [(q.due, q.name) for q in self._queues.values() if q.due < math.inf]
            heapq.heapify(self._agenda)

    def _next_due(self, queue: _Queue) -> float:
        """The earliest time at which a transition of `queue` may be due, from the heads of its orders (a head
        may be stale: then it is early, never late); inf when nothing is waiting."""
        heads = []
        if queue.deadlines:
            heads.append(queue.deadlines[0][0])
        if queue.delayed:
            heads.append(queue.delayed[0][0])
        if queue.dedup_order:
            heads.append(queue.dedup_order[0][0])
        oldest = self._oldest_sent_at(queue)
        if oldest is not None:
            heads.append(oldest + queue.attributes.retention)
        return min(heads, default=math.inf)

    # ---- looking without touching -------------------------------------------------------------------

    def peek(self, name: str, *, state: State | None, limit: int, after: str | None, now: float) -> PeekPage:
        """A page of messages in send order, optionally of one state, after the id `after`; nothing changes."""
        if not 1 <= limit <= MAX_PEEK:
            raise InvalidParameter(f"limit must be between 1 and {MAX_PEEK}, got {limit}")
        queue = self._queue(name, now)
        if not queue.in_id_order:  # messages moved in since: restore id order once, for this and later pages
            queue.messages = {message_id: queue.messages[message_id] for message_id in sorted(queue.messages)}
            queue.in_id_order = True
        views: list[MessageView] = []
        for message in queue.messages.values():
            if (after is not None and message.id <= after) or (state is not None and message.state is not state):
                continue
            if len(views) == limit:  # one more match exists: there is a next page
                return PeekPage(tuple(views), next_after=views[-1].id)
            views.append(
                MessageView(
                    id=message.id,
                    state=message.state,
                    payload=message.payload,
                    priority=message.priority,
                    visible_at=message.visible_at,
                    receive_count=message.receive_count,
                    sent_at=message.sent_at,
                    first_received_at=message.first_received_at,
                    lease_expires_at=message.deadline_at,
                    consumer=message.consumer,
                    source_queue=message.source_queue,
                    group=message.group,
                    dedup_id=message.dedup_id,
                )
            )
        return PeekPage(tuple(views), next_after=None)

    @property
    def tracks_changes(self) -> bool:
        return self._track

    def size(self) -> tuple[int, int]:
        """(queues, messages): a plain count that changes nothing (due leases stay as they are)."""
        return len(self._queues), sum(len(queue.messages) for queue in self._queues.values())

    # ---- the journal's view ---------------------------------------------------------------------------

    def drain_changes(self) -> Changes:
        """What changed since the last drain, as records to write; the marks are cleared."""
        inserted: list[MessageRecord] = []
        updated: list[MessageRecord] = []
        deleted: list[str] = []
        for message_id, (name, is_new) in self._dirty_messages.items():
            queue = self._queues.get(name)
            message = queue.messages.get(message_id) if queue is not None else None
            if message is None:
                if not is_new:  # stored before this batch, gone now
                    deleted.append(message_id)
            else:
                (inserted if is_new else updated).append(_record(name, message))
        queues = [_queue_record(self._queues[name]) for name in self._dirty_queues if name in self._queues]
        gone = [name for name in self._dirty_queues if name not in self._queues]
        changes = Changes(
            deleted_messages=tuple(deleted),
            inserted_messages=tuple(inserted),
            updated_messages=tuple(updated),
            deleted_queues=tuple(gone),
            queues=tuple(queues),
            dedup=tuple(record for record in self._dirty_dedup.values() if record is not None),
            dedup_expired=tuple(key for key, record in self._dirty_dedup.items() if record is None),
            last_id=self._last_id,
        )
        self._dirty_messages = {}
        self._dirty_queues = set()
        self._dirty_dedup = {}
        return changes

    def restore(self, snapshot: Snapshot) -> None:
        """Replace all state with `snapshot` (as the journal loaded it, messages in id order). Expired leases
        end on first use."""
        self._queues = {}
        for record in snapshot.queues:
            queue = self._queues[record.name] = _new_queue(
                record.name,
                QueueAttributes(
                    visibility_timeout=record.visibility_timeout,
                    max_in_flight=record.max_in_flight,
                    delay=record.delay,
                    max_message_bytes=record.max_message_bytes,
                    retention=record.retention,
                    max_receives=record.max_receives,
                    dead_letter_queue=record.dead_letter_queue,
                    metadata=record.metadata,
                ),
                record.created_at,
            )
            queue.sent = record.sent
            queue.received = record.received
            queue.acked = record.acked
            queue.expired = record.expired
            queue.released = record.released
            queue.dropped = record.dropped
            queue.dead_lettered = record.dead_lettered
            queue.redriven = record.redriven
        previous = ""
        for item in snapshot.messages:
            if item.id <= previous:
                raise ValueError(f"snapshot messages out of id order at {item.id}")
            previous = item.id
            queue = self._queues[item.queue]
            message = _Message(
                id=item.id,
                payload=item.payload,
                sent_at=item.sent_at,
                priority=item.priority,
                receive_count=item.receive_count,
                first_received_at=item.first_received_at,
                source_queue=item.source_queue,
                group=item.group,
                dedup_id=item.dedup_id,
            )
            groups = queue.groups
            if item.receipt is not None and item.deadline_at is not None:
                message.state = State.LEASED
                message.receipt = item.receipt
                message.deadline_at = item.deadline_at
                message.consumer = item.consumer
                queue.deadlines.append((item.deadline_at, item.id, item.receipt))
                queue.leased += 1
                if groups is not None:
                    groups.lease(item.group or "")
            elif item.visible_at is not None:
                message.state = State.DELAYED
                message.visible_at = item.visible_at
                queue.delayed.append((item.visible_at, item.id))
                queue.delayed_count += 1
            elif groups is None:
                queue.ready.append_in_order(item.priority, item.id)
            else:
                groups.append_in_order(item.id, item.group or "")
            queue.messages[item.id] = message
            if item.source_queue is not None:
                queue.dead_letters += 1
            queue.arrivals.append(item.id)  # id order is send order, wherever the message was sent
            queue.newest_id = item.id
        self._feeders = {}
        for queue in self._queues.values():
            self._set_dead_letter_queue(queue.name, None, queue.attributes.dead_letter_queue)
            heapq.heapify(queue.deadlines)
            heapq.heapify(queue.delayed)
            queue.ready.reorder()
            if queue.groups is not None:
                queue.groups.reorder()
        for remembered in sorted(snapshot.dedup, key=lambda d: d.expires_at):
            owner = self._queues.get(remembered.queue)
            if owner is not None:
                owner.dedup[remembered.dedup_id] = (remembered.message_id, remembered.expires_at)
                owner.dedup_order.append((remembered.expires_at, remembered.dedup_id))
        self._agenda = []
        for queue in self._queues.values():
            self._schedule(queue, self._next_due(queue))
        self._last_id = snapshot.last_id
        self._dirty_messages = {}
        self._dirty_queues = set()
        self._dirty_dedup = {}

    # ---- internals ----------------------------------------------------------------------------------

    def _queue(self, name: str, now: float) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            check_queue_name(name)
            raise QueueNotFound(f"queue {name!r} does not exist")
        feeders = self._feeders.get(name)
        if feeders:  # their due leases may end in dead letters that belong here
            for feeder in feeders:
                source = self._queues[feeder]
                if source.due <= now:  # else nothing of it is due (its agenda entry is later)
                    self._advance(source, now)
        self._advance(queue, now)
        return queue

    def _set_dead_letter_queue(self, name: str, old: str | None, new: str | None) -> None:
        """Keep `_feeders` in step with the dead_letter_queue of queue `name` changing from `old` to `new`."""
        if old == new:
            return
        if old is not None:
            self._feeders[old].discard(name)
        if new is not None:
            self._feeders.setdefault(new, set()).add(name)

    def _live_lease(self, queue: _Queue, message_id: str, receipt: str | None, now: float) -> _Message:
        message = queue.messages.get(message_id)
        if message is None or self._too_old(queue, message, now):
            raise MessageNotFound(f"message {message_id[:100]!r} is not in queue {queue.name!r}")
        if message.state is State.LEASED and message.deadline_at is not None and message.deadline_at <= now:
            # Due but not swept yet (rule 3): it ends here, as the sweep would have ended it.
            queue.expired += 1
            self._end_lease(queue, message)
        if message.state is not State.LEASED:
            raise LeaseLost(f"message {message.id!r} is not leased (its lease expired or was released)")
        if receipt is not None and message.receipt != receipt:
            raise LeaseLost(f"the receipt is not the live lease of message {message.id!r}")
        return message

    def _too_old(self, queue: _Queue, message: _Message, now: float) -> bool:
        """Drop the message if it is past its queue's retention but not swept yet (rule 7); return whether."""
        if message.sent_at + queue.attributes.retention > now:
            return False
        self._drop(queue, message)
        return True

    def _room_in_flight(self, queue: _Queue) -> int:
        """How many more messages this queue may lease now (without a limit: max_batch, as many as any receive
        may ask for)."""
        limit = queue.attributes.max_in_flight
        return max(0, limit - queue.leased) if limit else self.limits.max_batch

    def _make_ready(self, queue: _Queue, message: _Message) -> None:
        message.state = State.READY
        message.receipt = None
        message.deadline_at = None
        message.consumer = None
        queue.unlease(message)
        queue.push_ready(message)
        self._touch(queue, message)
        self._touch_queue(queue)  # its counters change with every caller of this

    def _touch(self, queue: _Queue, message: _Message) -> None:
        if self._track:
            self._dirty_messages.setdefault(message.id, (queue.name, False))

    def _touch_all(self, queue: _Queue) -> None:
        """Mark every message of `queue` (about to be removed wholesale); nothing to do when not tracking."""
        if self._track:
            for message in queue.messages.values():
                self._dirty_messages.setdefault(message.id, (queue.name, False))

    def _touch_queue(self, queue: _Queue) -> None:
        if self._track:
            self._dirty_queues.add(queue.name)

    def _advance(self, queue: _Queue, now: float) -> int:
        """Apply the time-driven transitions that are due, at most a slice of each kind (rule 3): messages past
        retention, dedup ids past their window, delays that passed, then leases that ended. Stale entries do
        not count toward a slice. Returns how many leases ended."""
        self._drop_old(queue, now)
        window = queue.dedup_order
        while window and window[0][0] <= now:
            expires_at, dedup_id = window.popleft()
            if queue.dedup.get(dedup_id, (None, None))[1] == expires_at:
                del queue.dedup[dedup_id]
                if self._track:
                    self._dirty_dedup[queue.name, dedup_id] = None
        delayed = queue.delayed
        woken = 0
        while delayed and delayed[0][0] <= now and woken < self._slice:
            visible_at, message_id = heapq.heappop(delayed)
            message = queue.messages.get(message_id)
            if message is None or message.state is not State.DELAYED or message.visible_at != visible_at:
                continue  # stale: purged since
            woken += 1
            message.state = State.READY
            message.visible_at = None
            queue.delayed_count -= 1
            queue.push_ready(message)
            self._touch(queue, message)
        expired = 0
        deadlines = queue.deadlines
        while deadlines and deadlines[0][0] <= now and expired < self._slice:
            deadline_at, message_id, receipt = heapq.heappop(deadlines)
            message = queue.messages.get(message_id)
            if message is None or message.receipt != receipt or message.deadline_at != deadline_at:
                continue  # stale: acked, released, extended or re-leased since
            expired += 1
            queue.expired += 1
            self._end_lease(queue, message)
        return expired

    def _end_lease(self, queue: _Queue, message: _Message) -> None:
        """A lease ended without an ack: the message is ready again, or a dead letter after max_receives."""
        self._make_ready(queue, message)
        max_receives = queue.attributes.max_receives
        if max_receives and message.receive_count >= max_receives:
            self._dead_letter(queue, message)  # its ready-heap entry is left behind, stale

    def _dead_letter(self, queue: _Queue, message: _Message) -> None:
        """Move a READY message to its queue's dead-letter queue."""
        target = self._queues.get(queue.attributes.dead_letter_queue or "")
        if target is None:  # cannot happen: a dead-letter queue cannot be deleted while named
            return
        self._move(queue, message, target)
        message.source_queue = queue.name
        target.dead_letters += 1
        queue.dead_lettered += 1

    def _move(self, source: _Queue, message: _Message, target: _Queue) -> None:
        """Move a READY message to another queue, where it is READY too (its entry in the source's ready heap
        is left behind, stale)."""
        del source.messages[message.id]
        if message.source_queue is not None:
            source.dead_letters -= 1
        target.add(message)
        target.push_ready(message)
        heapq.heappush(target.moved_in, (message.sent_at, message.id))
        self._schedule(target, message.sent_at + target.attributes.retention)  # it may be older than the rest
        if self._track:
            _, is_new = self._dirty_messages.get(message.id, (source.name, False))
            self._dirty_messages[message.id] = (target.name, is_new)
        self._touch_queue(source)
        self._touch_queue(target)

    def _drop_old(self, queue: _Queue, now: float) -> None:
        """Drop every message older than the queue's retention (rule 7)."""
        retention = queue.attributes.retention
        messages = queue.messages
        arrivals = queue.arrivals
        dropped = 0
        while arrivals and dropped < self._slice:
            message = messages.get(arrivals[0])
            if message is not None and message.sent_at + retention > now:
                break  # the oldest message sent here is young enough: so are the rest
            arrivals.popleft()  # a stale entry (acked, moved away) or a message to drop
            if message is not None:
                self._drop(queue, message)
                dropped += 1
        moved_in = queue.moved_in
        dropped = 0
        while moved_in and moved_in[0][0] + retention <= now and dropped < self._slice:
            message = messages.get(heapq.heappop(moved_in)[1])
            if message is not None:
                self._drop(queue, message)
                dropped += 1
        if len(arrivals) + len(moved_in) > 2 * len(messages) + 1024:
            # Mostly stale entries (acks out of send order): rebuild, so memory follows the queue's size.
            queue.arrivals = deque(sorted(messages))  # ids sort in send order
            queue.moved_in = []

    def _drop(self, queue: _Queue, message: _Message) -> None:
        del queue.messages[message.id]
        if message.state is State.LEASED:
            queue.unlease(message)
        elif message.state is State.DELAYED:
            queue.delayed_count -= 1
        if message.source_queue is not None:
            queue.dead_letters -= 1
        queue.dropped += 1
        self._touch(queue, message)
        self._touch_queue(queue)

    def _stats(self, queue: _Queue) -> QueueStats:
        return QueueStats(
            name=queue.name,
            attributes=queue.attributes,
            created_at=queue.created_at,
            ready=len(queue.messages) - queue.leased - queue.delayed_count,
            leased=queue.leased,
            delayed=queue.delayed_count,
            sent=queue.sent,
            received=queue.received,
            acked=queue.acked,
            expired=queue.expired,
            released=queue.released,
            dropped=queue.dropped,
            dead_lettered=queue.dead_lettered,
            redriven=queue.redriven,
            dead_letters=queue.dead_letters,
            oldest_sent_at=self._oldest_sent_at(queue),
        )

    @staticmethod
    def _oldest_sent_at(queue: _Queue) -> float | None:
        """The send time of the queue's oldest message, from the fronts of its retention order (dropping the
        stale entries found there): O(1) but for those drops."""
        messages = queue.messages
        arrivals = queue.arrivals
        while arrivals and arrivals[0] not in messages:
            arrivals.popleft()
        moved_in = queue.moved_in
        while moved_in and moved_in[0][1] not in messages:
            heapq.heappop(moved_in)
        fronts = [messages[arrivals[0]].sent_at] if arrivals else []
        if moved_in:
            fronts.append(moved_in[0][0])
        return min(fronts) if fronts else None


def _group(entry: Outgoing, fifo: bool) -> str | None:
    """The message group a send files the message in: its own, or in a FIFO queue the default group ""."""
    return entry.group if not fifo or entry.group is not None else ""


def _dedup_key(entry: Outgoing, group: str | None) -> str | None:
    """The dedup window's key of a send: its dedup id, or with a per-group scope the group and the id (a newline
    is in neither, so keys of different groups never meet)."""
    return entry.dedup_id if not entry.dedup_per_group else f"{group or ''}\n{entry.dedup_id}"


def _merge(old: tuple[tuple[str, str], ...], changes: Mapping[str, str | None]) -> tuple[tuple[str, str], ...]:
    merged = dict(old)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return tuple(sorted(merged.items()))


def _record(queue: str, message: _Message) -> MessageRecord:
    rare = message._rare  # read directly: faster than through the _RareFields
    return MessageRecord(
        id=message.id,
        queue=queue,
        payload=Payload(message.data, message.content_type, rare.attributes),
        priority=rare.priority,
        sent_at=message.sent_at,
        visible_at=rare.visible_at,
        receive_count=rare.receive_count,
        first_received_at=rare.first_received_at,
        receipt=rare.receipt,
        deadline_at=rare.deadline_at,
        consumer=rare.consumer,
        source_queue=rare.source_queue,
        group=rare.group,
        dedup_id=rare.dedup_id,
    )


def _queue_record(queue: _Queue) -> QueueRecord:
    return QueueRecord(
        name=queue.name,
        visibility_timeout=queue.attributes.visibility_timeout,
        max_in_flight=queue.attributes.max_in_flight,
        delay=queue.attributes.delay,
        max_message_bytes=queue.attributes.max_message_bytes,
        created_at=queue.created_at,
        sent=queue.sent,
        received=queue.received,
        acked=queue.acked,
        expired=queue.expired,
        released=queue.released,
        retention=queue.attributes.retention,
        max_receives=queue.attributes.max_receives,
        dead_letter_queue=queue.attributes.dead_letter_queue,
        metadata=queue.attributes.metadata,
        dropped=queue.dropped,
        dead_lettered=queue.dead_lettered,
        redriven=queue.redriven,
    )


def _lease(message: _Message) -> Lease:
    rare = message._rare  # read directly: faster than through the _RareFields
    assert rare.receipt is not None
    assert rare.deadline_at is not None
    assert rare.first_received_at is not None
    return Lease(
        id=message.id,
        receipt=rare.receipt,
        payload=Payload(message.data, message.content_type, rare.attributes),
        priority=rare.priority,
        receive_count=rare.receive_count,
        sent_at=message.sent_at,
        first_received_at=rare.first_received_at,
        lease_expires_at=rare.deadline_at,
        consumer=rare.consumer,
        source_queue=rare.source_queue,
        group=rare.group,
        dedup_id=rare.dedup_id,
    )
