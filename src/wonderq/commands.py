"""The closed set of commands the actor accepts, each naming its reply type, and their pure dispatch onto the core.

A command is a frozen value: it can be logged, queued or journaled. `execute` is the only place that maps a
command to a core call; `match` plus `assert_never` lets mypy prove that every command is handled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar, assert_never

from wonderq.core import Core
from wonderq.errors import InvalidParameter
from wonderq.model import AckReport, Lease, Outgoing, Payload, PeekPage, QueueStats, RedriveReport, State

R_co = TypeVar("R_co", covariant=True)  # a command's reply type: a Command[None] is a Command[object]

MAX_WAIT = 20.0  # seconds a receive may long-poll, as in SQS


class Command(Generic[R_co]):
    """Base of every command; `R_co` is the type of its reply."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class PutQueue(Command[tuple[QueueStats, bool]]):
    """Create a queue or update the attributes given; None leaves an attribute as it is (and
    `dead_letter_queue=""` removes it)."""

    queue: str
    visibility_timeout: float | None = None
    max_in_flight: int | None = None
    delay: float | None = None
    max_message_bytes: int | None = None
    retention: float | None = None
    max_receives: int | None = None
    dead_letter_queue: str | None = None
    metadata: Mapping[str, str | None] | None = None  # names to set, or with None to remove


@dataclass(frozen=True, slots=True)
class DeleteQueue(Command[None]):
    queue: str


@dataclass(frozen=True, slots=True)
class GetQueue(Command[QueueStats]):
    queue: str


@dataclass(frozen=True, slots=True)
class ListQueues(Command[list[QueueStats]]):
    pass


@dataclass(frozen=True, slots=True)
class Purge(Command[int]):
    queue: str


@dataclass(frozen=True, slots=True)
class Send(Command[list[str]]):
    """Send one or more messages, all or none. The reply lists their ids in order."""

    queue: str
    payloads: Sequence[Payload | Outgoing]


@dataclass(frozen=True, slots=True)
class Receive(Command[list[Lease]]):
    """Lease up to `max_messages`. With `wait` > 0 the actor parks the request until a message is ready or
    `wait` seconds pass; the reply is then an empty list. If its limit of parked receives is reached, a receive
    that would park fails with TooManyLongPolls instead."""

    queue: str
    max_messages: int = 1
    visibility_timeout: float | None = None
    wait: float = 0.0
    consumer: str | None = None


@dataclass(frozen=True, slots=True)
class Ack(Command[None]):
    """Acknowledge one delivery. `receipt=None` accepts any live lease (the classic API only)."""

    queue: str
    message_id: str
    receipt: str | None


@dataclass(frozen=True, slots=True)
class Delete(Command[bool]):
    """Delete a message whatever its state (SQS's DeleteMessage); the reply says whether it was there."""

    queue: str
    message_id: str


@dataclass(frozen=True, slots=True)
class AckBatch(Command[AckReport]):
    queue: str
    receipts: Sequence[str]


@dataclass(frozen=True, slots=True)
class ChangeVisibility(Command[float | None]):
    queue: str
    message_id: str
    receipt: str
    visibility_timeout: float


@dataclass(frozen=True, slots=True)
class Peek(Command[PeekPage]):
    queue: str
    state: State | None = None
    limit: int = 100
    after: str | None = None


@dataclass(frozen=True, slots=True)
class Redrive(Command[RedriveReport]):
    """Move up to `limit` (at most MAX_REDRIVE) ready messages to `destination`, or back to their source queues."""

    queue: str
    destination: str | None = None
    limit: int = 1


@dataclass(frozen=True, slots=True)
class ReturnUndelivered(Command[None]):
    """Put back leases whose requester went away before it could take them."""

    queue: str
    leases: Sequence[Lease]


@dataclass(frozen=True, slots=True)
class Swept:
    """What one sweep did: leases it ended, and whether due transitions are left for another round."""

    ended: int
    behind: bool


@dataclass(frozen=True, slots=True)
class Expire(Command[Swept]):
    """Sweep a slice of every queue's due transitions (leases that ended, delays that passed, messages past
    retention); sent by the ticker, which sends it again at once while the reply says it is behind."""


@dataclass(frozen=True, slots=True)
class StopParking(Command[None]):
    """Answer every parked receive now (with no messages) and park no more: the server is shutting down.
    Handled by the actor itself, since parked receives are actor state, not queue state."""


@dataclass(frozen=True, slots=True)
class Compact(Command[None]):
    """Give disk space back: checkpoint and compact the journal. Handled by the actor, which owns the journal."""


Control: TypeAlias = StopParking | Compact
"""Commands for the actor itself rather than the core: `execute` never sees them."""

AnyCommand: TypeAlias = (
    PutQueue
    | DeleteQueue
    | GetQueue
    | ListQueues
    | Purge
    | Send
    | Receive
    | Ack
    | Delete
    | AckBatch
    | ChangeVisibility
    | Peek
    | Redrive
    | ReturnUndelivered
    | Expire
)

HOUSEKEEPING = (Expire, Compact, StopParking)
"""Commands the server sends itself (the ticker, the compactor, the shutdown): they wait for room in the actor's
inbox however long it takes, where a client's request gives up after INBOX_TIMEOUT, since failing one would skip
a sweep or a compaction, or leave long polls parked through a shutdown."""

LEASE_ONLY = (Receive, ChangeVisibility, ReturnUndelivered, Expire, GetQueue, ListQueues, Peek)
"""Commands that change only leases (handing them out, moving or ending them) and make the transitions that
time makes anyway. A batch of nothing else is journaled without an fsync (docs/design.md, Durability): a power
loss can undo it, which hands its messages out again sooner (at-least-once still holds) and has the next call
make the time-driven changes again; no send, ack, delete or queue change it confirmed can be undone."""


def check_wait(wait: float) -> float:
    if not (0 <= wait <= MAX_WAIT) or math.isnan(wait):
        raise InvalidParameter(f"wait must be between 0 and {MAX_WAIT:g} seconds, got {wait}")
    return wait


def execute(core: Core, command: AnyCommand, *, now: float) -> object:
    """Apply one command to the core and return its reply. Domain errors propagate as WonderQError."""
    match command:
        case PutQueue():
            return core.put_queue(
                command.queue,
                visibility_timeout=command.visibility_timeout,
                max_in_flight=command.max_in_flight,
                delay=command.delay,
                max_message_bytes=command.max_message_bytes,
                retention=command.retention,
                max_receives=command.max_receives,
                dead_letter_queue=command.dead_letter_queue,
                metadata=command.metadata,
                now=now,
            )
        case DeleteQueue(queue):
            core.delete_queue(queue, now=now)
            return None
        case GetQueue(queue):
            return core.queue_stats(queue, now=now)
        case ListQueues():
            return core.list_queues(now=now)
        case Purge(queue):
            return core.purge(queue, now=now)
        case Send(queue, payloads):
            return core.send_batch(queue, payloads, now=now)
        case Receive(queue, max_messages, visibility_timeout, wait, consumer):
            check_wait(wait)
            return core.receive(
                queue,
                max_messages=max_messages,
                visibility_timeout=visibility_timeout,
                consumer=consumer,
                now=now,
            )
        case Ack(queue, message_id, receipt):
            core.ack(queue, message_id, receipt, now=now)
            return None
        case Delete(queue, message_id):
            return core.delete(queue, message_id, now=now)
        case AckBatch(queue, receipts):
            return core.ack_batch(queue, receipts, now=now)
        case ChangeVisibility(queue, message_id, receipt, visibility_timeout):
            return core.change_visibility(queue, message_id, receipt, visibility_timeout, now=now)
        case Peek(queue, state, limit, after):
            return core.peek(queue, state=state, limit=limit, after=after, now=now)
        case Redrive(queue, destination, limit):
            return core.redrive(queue, destination=destination, limit=limit, now=now)
        case ReturnUndelivered(queue, leases):
            core.return_undelivered(queue, leases, now=now)
            return None
        case Expire():
            return Swept(ended=core.expire(now=now), behind=core.behind(now=now))
        case _:
            assert_never(command)
