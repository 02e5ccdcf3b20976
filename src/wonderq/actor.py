"""The actor: the one task that owns the core, and the async facade (`ActorHandle`) every other task reaches it by.

Nothing else touches the core. Commands arrive over a bounded trio memory channel, each with a one-shot reply
slot; a request waits at most `inbox_timeout` seconds for room there, then fails with Overloaded, not applied
(the server's own housekeeping waits as long as it takes). Per wake-up the actor drains every waiting command,
applies them in order, serves parked long polls, commits the batch's changes to the journal (if there is one) in
a worker thread, and only then answers all of them without ever blocking: a requester that has gone is skipped,
and leases meant for it go straight back to their queue. Receives with `wait` park here until a message is ready
or their time is up, at most `max_long_polls` at once (one more fails with TooManyLongPolls).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Protocol, TypeVar, cast

import outcome
import trio

from wonderq.clock import WallClock
from wonderq.commands import (
    HOUSEKEEPING,
    LEASE_ONLY,
    AnyCommand,
    Command,
    Compact,
    Control,
    Receive,
    ReturnUndelivered,
    Send,
    StopParking,
    execute,
)
from wonderq.core import Core
from wonderq.errors import Overloaded, ShuttingDown, StorageFull, TooManyLongPolls, WonderQError
from wonderq.metrics import Metrics
from wonderq.model import Changes, Lease, Outgoing, Snapshot
from wonderq.store import message_cost

log = logging.getLogger("wonderq.actor")

R = TypeVar("R")

INBOX_SIZE = 1024  # commands queued before requesters wait (backpressure)
MAX_DRAIN = 1024  # commands applied per wake-up before their replies go out


class ReplySlot(Generic[R]):
    """A one-shot reply channel: the actor fills it once and never blocks; the requester awaits it."""

    __slots__ = ("_event", "_result", "abandoned")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._result: outcome.Outcome[R] | None = None
        self.abandoned = False  # the requester stopped waiting (cancelled: its client went away)

    def deliver(self, result: outcome.Outcome[R]) -> bool:
        """Fill the slot. False if the requester has gone, so the caller can undo what the reply handed out."""
        if self.abandoned or self._result is not None:
            return False
        self._result = result
        self._event.set()
        return True

    async def wait(self) -> R:
        try:
            await self._event.wait()
        except BaseException:
            self.abandoned = True
            raise
        assert self._result is not None
        return self._result.unwrap()

    def undelivered(self) -> outcome.Outcome[R] | None:
        """A result that was filled in but never taken (the requester was cancelled at the last moment)."""
        return self._result if self.abandoned else None


Envelope = tuple[AnyCommand | Control, ReplySlot[Any]]


class Journal(Protocol):
    """Where the actor makes changes durable (wonderq.store.SqliteStore). Its calls block: the actor runs them
    in a worker thread, one at a time. Failing calls raise a WonderQError and store nothing."""

    def load(self) -> Snapshot: ...

    def commit(self, changes: Changes, *, fsync: bool = True) -> None: ...

    def compact(self) -> object: ...

    def room(self) -> int | None:
        """Bytes that sends may still add (see `message_cost`), None for no limit. A cheap, non-blocking read."""
        ...


T = TypeVar("T")


class BlockingRunner(Protocol):
    """Runs a blocking call without blocking the trio loop: `trio.to_thread.run_sync` in production. Tests on a
    virtual clock run journal calls inline instead, since time jumps while a real thread works."""

    async def __call__(self, call: Callable[[], T], /) -> T: ...


@dataclass(frozen=True, slots=True)
class ActorStatistics:
    backlog: int  # commands waiting in the inbox
    parked: int  # long polls waiting for a message
    commands: int  # applied since start
    batches: int  # wake-ups since start; commands / batches is the mean drain size
    commits: int  # journal transactions since start (0 without a journal)
    commit_seconds: float  # total time spent committing
    stopping: bool = False  # the server is shutting down (StopParking received): long-lived replies should end


class ActorHandle:
    """What handlers hold: send a command, await its reply. Safe to share between any number of tasks."""

    def __init__(self, inbox: trio.MemorySendChannel[Envelope], actor: Actor, inbox_timeout: float) -> None:
        self._inbox = inbox
        self._actor = actor
        self._inbox_timeout = inbox_timeout
        self.metrics = actor.metrics
        self.clock = actor.clock  # the broker's clock, to compare with the epoch times in replies

    async def ask(self, command: Command[R]) -> R:
        """The reply to `command`. Raises Overloaded if the inbox stayed full for `inbox_timeout` seconds (the
        command was not applied), unless it is housekeeping, which waits for room as long as it takes."""
        slot = ReplySlot[R]()
        started = trio.current_time()
        try:
            await self._post(command, slot)
            try:
                return await slot.wait()
            except BaseException:
                self._return_late_leases(command, slot)
                raise
        finally:  # errors and cancelled waits are answers too: every ask is timed
            self.metrics.observe_command(type(command).__name__, trio.current_time() - started)

    async def _post(self, command: Command[R], slot: ReplySlot[R]) -> None:
        patience = math.inf if isinstance(command, HOUSEKEEPING) else self._inbox_timeout
        try:
            with trio.move_on_after(patience):
                await self._inbox.send(cast(Envelope, (command, slot)))
                return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ShuttingDown("the broker is shutting down") from None
        # A cancelled send sends nothing: the actor never sees this command.
        raise Overloaded(
            f"the broker is overloaded: its inbox stayed full for {patience:g} s (INBOX_TIMEOUT); nothing was done,"
            " try again shortly"
        )

    def statistics(self) -> ActorStatistics:
        return self._actor.statistics()

    def _return_late_leases(self, command: Command[Any], slot: ReplySlot[Any]) -> None:
        late = slot.undelivered()
        if not isinstance(command, Receive) or not isinstance(late, outcome.Value) or not late.value:
            return
        returned = ReturnUndelivered(command.queue, late.value)
        try:
            self._inbox.send_nowait((returned, ReplySlot[None]()))
        except trio.WouldBlock:  # a full inbox: the actor is about to wake, and takes these first
            self._actor.take_back(returned)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # shutting down: the leases end at their deadline (they are journaled), delayed, never lost


@dataclass(eq=False, slots=True)
class _Parked:
    command: Receive
    slot: ReplySlot[list[Lease]]
    deadline: float  # trio seconds
    done: bool = False


class Actor:
    """Owns `core` (and `journal`, if any: then no reply leaves before its changes are committed)."""

    def __init__(
        self,
        core: Core,
        clock: WallClock,
        journal: Journal | None = None,
        *,
        run_blocking: BlockingRunner = trio.to_thread.run_sync,
        metrics: Metrics | None = None,
        max_long_polls: int | None = None,
        inbox_timeout: float = math.inf,
    ) -> None:
        """`max_long_polls`: receives parked at once (None: no limit); `inbox_timeout`: seconds a request waits
        for room in the inbox before it fails with Overloaded."""
        if journal is not None and not core.tracks_changes:
            raise ValueError("a journaled actor needs a core made with track_changes=True")
        self._core = core
        self._clock = self.clock = clock
        self._journal = journal
        self._run_blocking = run_blocking
        self._commits = 0
        self._commit_seconds = 0.0
        self._room: int | None = None  # bytes sends may still add in this batch; None: no limit
        self._send, self._inbox = trio.open_memory_channel[Envelope](INBOX_SIZE)
        self._parked: dict[str, deque[_Parked]] = {}
        self._parked_deadlines: list[tuple[float, int, _Parked]] = []
        self._parked_count = 0
        self._max_long_polls = max_long_polls
        self._abandoned_forgotten_at = -1  # the batch that last counted out parked receives whose requester left
        self._parking = True  # False once shutting down: receives with `wait` then answer at once
        self._taken_back: list[ReturnUndelivered] = []  # leases returned while the inbox was full
        self._order = itertools.count()
        self._replies: list[tuple[AnyCommand | Control, ReplySlot[Any], outcome.Outcome[Any]]] = []
        self._commands = 0
        self._batches = 0
        self.metrics = metrics or Metrics()
        self.handle = ActorHandle(self._send, self, inbox_timeout)

    def take_back(self, returned: ReturnUndelivered) -> None:
        """Accept leases whose requester went away, when the inbox is full: they go in at the next wake-up (which a
        full inbox makes certain), before the commands waiting there, so that they are never dropped."""
        self._taken_back.append(returned)

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            backlog=self._inbox.statistics().current_buffer_used,
            parked=self._parked_count,
            commands=self._commands,
            batches=self._batches,
            commits=self._commits,
            commit_seconds=self._commit_seconds,
            stopping=not self._parking,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the core until cancelled. An unexpected exception is a bug: it propagates and stops the server."""
        task_status.started()
        try:
            more = False
            while True:
                batch = await self._next_batch(wait=not more)
                now = self._clock.now()
                self._room = self._journal.room() if self._journal is not None else None
                for command, slot in batch:
                    await self._apply(command, slot, now)
                self._serve_parked(now)
                self._end_parked_at(trio.current_time())
                await self._commit(len(batch))
                more = self._send_replies(now)
                self._commands += len(batch)
                self._batches += 1
        finally:
            self._refuse_everything()

    async def _next_batch(self, *, wait: bool) -> list[Envelope]:
        """Every command waiting, after waiting (unless `wait` is False) for the first one or for the next
        parked receive's deadline."""
        batch: list[Envelope] = []
        wake_at = self._parked_deadlines[0][0] if self._parked_deadlines else math.inf
        if not wait:
            wake_at = -math.inf
        with trio.move_on_at(wake_at):
            batch.append(await self._inbox.receive())
        if self._taken_back:
            batch[:0] = [(returned, ReplySlot[None]()) for returned in self._taken_back]
            self._taken_back = []
        while len(batch) < MAX_DRAIN:
            try:
                batch.append(self._inbox.receive_nowait())
            except trio.WouldBlock:
                break
        return batch

    async def _apply(self, command: AnyCommand | Control, slot: ReplySlot[Any], now: float) -> None:
        if isinstance(command, StopParking):
            self._parking = False
            self._end_parked_at(math.inf)
            self._replies.append((command, slot, outcome.Value(None)))
            return
        if isinstance(command, Compact):
            self._replies.append((command, slot, await self._compact()))
            return
        if isinstance(command, Send) and self._room is not None:
            need = sum(message_cost(m.payload if isinstance(m, Outgoing) else m) for m in command.payloads)
            if need > self._room:  # refused before it touches the core; leases and acks still go through
                full = StorageFull(f"the store is full (the disk, or MAX_STORE_BYTES): {need} more bytes do not fit")
                self._replies.append((command, slot, outcome.Error(full)))
                return
            self._room -= need
        try:
            result = execute(self._core, command, now=now)
        except WonderQError as error:
            self._replies.append((command, slot, outcome.Error(error)))
            return
        if isinstance(command, Receive) and not result and command.wait > 0 and self._parking:
            if self._room_to_park():
                self._park(command, slot, now)
            else:  # it leased nothing: refusing it changes nothing
                busy = TooManyLongPolls(
                    f"{self._parked_count} receives are waiting for messages already, the limit (MAX_LONG_POLLS);"
                    " try again shortly"
                )
                self._replies.append((command, slot, outcome.Error(busy)))
            return
        self._replies.append((command, slot, outcome.Value(result)))

    def _room_to_park(self) -> bool:
        """Whether one more receive may park. At the limit, parked receives whose requester has gone stop
        counting first (a walk over them all, at most once per batch)."""
        limit = self._max_long_polls
        if limit is None or self._parked_count < limit:
            return True
        if self._abandoned_forgotten_at != self._batches:
            self._abandoned_forgotten_at = self._batches
            for waiting in self._parked.values():
                for parked in waiting:
                    if parked.slot.abandoned:
                        self._finish(parked)  # its entries go when they reach the front of their orders
        return self._parked_count < limit

    def _park(self, command: Receive, slot: ReplySlot[list[Lease]], now: float) -> None:
        parked = _Parked(command, slot, deadline=self._clock.to_trio(now + command.wait))
        self._parked.setdefault(command.queue, deque()).append(parked)
        heapq.heappush(self._parked_deadlines, (parked.deadline, next(self._order), parked))
        self._parked_count += 1

    def _serve_parked(self, now: float) -> None:
        """Answer parked receives, oldest first, on every queue that has a message ready for them."""
        for name, waiting in list(self._parked.items()):
            while waiting:
                parked = waiting[0]
                if not (parked.done or parked.slot.abandoned):
                    try:
                        if not self._core.has_ready(name, now=now):
                            break
                        result: outcome.Outcome[Any] = outcome.Value(execute(self._core, parked.command, now=now))
                    except WonderQError as error:  # the queue was deleted while they waited
                        result = outcome.Error(error)
                    self._replies.append((parked.command, parked.slot, result))
                self._finish(parked)
                waiting.popleft()
            if not waiting:
                del self._parked[name]

    def _end_parked_at(self, trio_now: float) -> None:
        """Answer with an empty list every parked receive whose wait is over."""
        while self._parked_deadlines and self._parked_deadlines[0][0] <= trio_now:
            _, _, parked = heapq.heappop(self._parked_deadlines)
            if not parked.done:
                self._finish(parked)
                self._replies.append((parked.command, parked.slot, outcome.Value([])))

    def _finish(self, parked: _Parked) -> None:
        if not parked.done:
            parked.done = True
            self._parked_count -= 1

    async def _commit(self, commands: int) -> None:
        """Make this batch's changes durable before any of its replies leave (group commit)."""
        if self._journal is None:
            return
        changes = self._core.drain_changes()
        if not changes:
            return
        # Shielded: once a commit starts, its outcome must be known, so that replies tell the truth.
        with trio.CancelScope(shield=True):
            started = time.perf_counter()
            try:
                fsync = not all(isinstance(command, LEASE_ONLY) for command, _, _ in self._replies)
                await self._run_blocking(partial(self._journal.commit, changes, fsync=fsync))
            except WonderQError as error:
                log.error("journal commit failed, undoing the batch: %s", error.message)
                await self._undo_batch(error)
            finally:
                elapsed = time.perf_counter() - started  # real seconds: the disk does not run on trio's clock
                self._commits += 1
                self._commit_seconds += elapsed
                self.metrics.commit_seconds.observe(elapsed)
                self.metrics.commit_batch.observe(commands)

    async def _undo_batch(self, error: WonderQError) -> None:
        """The batch is not durable: every success in it becomes `error`, and the core goes back to the state
        the journal holds, so that memory never runs ahead of the disk. A failure to reload is fatal."""
        assert self._journal is not None
        self._replies = [  # a fresh Error each: an outcome can be unwrapped only once
            (command, slot, outcome.Error(error) if isinstance(result, outcome.Value) else result)
            for command, slot, result in self._replies
        ]
        journal, core = self._journal, self._core
        # In the worker thread: the load streams from the file as the core consumes it. The core is still only
        # ever touched by this actor, which waits meanwhile.
        await self._run_blocking(lambda: core.restore(journal.load()))

    async def _compact(self) -> outcome.Outcome[None]:
        if self._journal is None:
            return outcome.Value(None)
        with trio.CancelScope(shield=True):
            try:
                report = await self._run_blocking(self._journal.compact)
            except WonderQError as error:
                log.warning("journal compaction failed: %s", error.message)
                return outcome.Error(error)
        log.debug("journal compacted: %s", report)
        return outcome.Value(None)

    def _send_replies(self, now: float) -> bool:
        """Deliver every reply of the batch. True if leases came back from requesters that had gone: they
        may be ready for someone parked, which the next round serves (and commits) without waiting."""
        replies, self._replies = self._replies, []
        returned = False
        for command, slot, result in replies:
            if slot.deliver(result) or not isinstance(command, Receive):
                continue
            if isinstance(result, outcome.Value) and result.value:
                self._core.return_undelivered(command.queue, result.value, now=now)
                returned = True
        return returned

    def _refuse_everything(self) -> None:
        """On the way out, answer everyone still waiting so that no requester hangs on a dead actor."""
        slots: list[ReplySlot[Any]] = [slot for _, slot, _ in self._replies]
        slots += [parked.slot for waiting in self._parked.values() for parked in waiting]
        while True:
            try:
                slots.append(self._inbox.receive_nowait()[1])
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        self._inbox.close()
        for slot in slots:  # a fresh Error each: an outcome can be unwrapped only once
            slot.deliver(outcome.Error(ShuttingDown("the broker is shutting down")))
