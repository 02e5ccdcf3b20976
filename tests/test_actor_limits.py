"""The actor's limits on trio's virtual clock: at most `max_long_polls` receives parked at once, and a bounded wait
for room in its inbox (`inbox_timeout`), after which a request fails with Overloaded and nothing was applied,
while the server's own housekeeping keeps waiting and leases handed back are never dropped."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TypeVar

import outcome
import pytest
import trio
import trio.testing
from trio.testing import MockClock

from tests.helpers import EPOCH, limits, make_core, text
from wonderq.actor import INBOX_SIZE, Actor, ActorHandle, ReplySlot
from wonderq.clock import WallClock
from wonderq.commands import Expire, GetQueue, PutQueue, Receive, Send
from wonderq.core import Core
from wonderq.errors import Overloaded, TooManyLongPolls
from wonderq.ids import TimeOrderedIds
from wonderq.model import Changes, Lease, Snapshot
from wonderq.ticker import run_ticker

T = TypeVar("T")


@asynccontextmanager
async def actor_with(core: Core | None = None, **options: object) -> AsyncIterator[tuple[ActorHandle, Actor]]:
    actor = Actor(core or make_core(), WallClock(offset=EPOCH - trio.current_time()), **options)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        yield actor.handle, actor
        nursery.cancel_scope.cancel()


# ---- parked long polls ------------------------------------------------------------------------------------


async def park(handle: ActorHandle, nursery: trio.Nursery, queue: str, count: int) -> list[list[Lease]]:
    """Start `count` long polls on `queue` and wait until they are parked; their answers land in the list."""
    answers: list[list[Lease]] = []

    async def poll() -> None:
        answers.append(await handle.ask(Receive(queue, wait=20)))

    before = handle.statistics().parked
    for _ in range(count):
        nursery.start_soon(poll)
    await trio.testing.wait_all_tasks_blocked()
    assert handle.statistics().parked == before + count
    return answers


async def test_a_long_poll_past_the_limit_is_refused_at_once_and_leases_nothing(autojump_clock: MockClock) -> None:
    async with actor_with(max_long_polls=2) as (handle, _), trio.open_nursery() as nursery:
        await handle.ask(PutQueue("q"))
        answers = await park(handle, nursery, "q", 2)
        start = trio.current_time()
        with pytest.raises(TooManyLongPolls, match=r"2 receives are waiting.*MAX_LONG_POLLS") as refused:
            await handle.ask(Receive("q", wait=20))
        assert (refused.value.status, refused.value.code, refused.value.retry_after) == (503, "too_many_long_polls", 1)
        assert trio.current_time() == start
        assert await handle.ask(Receive("q")) == []  # a receive without wait is no long poll: never refused
        await handle.ask(Send("q", (text("a"), text("b"))))
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(len(leases) for leases in answers) == [1, 1]
        assert handle.statistics().parked == 0
        assert (await handle.ask(GetQueue("q"))).received == 2  # the refused one took nothing
        await park(handle, nursery, "q", 2)  # room again
        nursery.cancel_scope.cancel()


async def test_a_receive_that_finds_a_message_is_never_refused_at_the_limit(autojump_clock: MockClock) -> None:
    async with actor_with(max_long_polls=1) as (handle, _), trio.open_nursery() as nursery:
        await handle.ask(PutQueue("empty"))
        await park(handle, nursery, "empty", 1)
        (message_id,) = await handle.ask(Send("full", (text("x"),)))
        (lease,) = await handle.ask(Receive("full", wait=20))
        assert lease.id == message_id
        nursery.cancel_scope.cancel()


async def test_a_parked_receive_whose_requester_went_away_frees_its_place(autojump_clock: MockClock) -> None:
    async with actor_with(max_long_polls=1) as (handle, _), trio.open_nursery() as nursery:
        await handle.ask(PutQueue("q"))
        with trio.move_on_after(2):
            await handle.ask(Receive("q", wait=20))  # parked, then its client leaves
        assert handle.statistics().parked == 1  # it counts until the limit needs its place
        answers: list[list[Lease]] = []

        async def poll() -> None:
            answers.append(await handle.ask(Receive("q", wait=20)))

        nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()
        assert handle.statistics().parked == 1  # this one, parked in the place of the one that left
        await handle.ask(Send("q", (text("x"),)))
        await trio.testing.wait_all_tasks_blocked()
        assert [len(leases) for leases in answers] == [1]
        nursery.cancel_scope.cancel()


async def test_a_limit_of_zero_parks_nothing(autojump_clock: MockClock) -> None:
    async with actor_with(max_long_polls=0) as (handle, _):
        await handle.ask(PutQueue("q"))
        with pytest.raises(TooManyLongPolls):
            await handle.ask(Receive("q", wait=1))
        assert await handle.ask(Receive("q")) == []


# ---- a full inbox -------------------------------------------------------------------------------------------


class StalledJournal:
    """A journal whose commits wait until `gate` is set, as a disk that has stopped answering would; it stores
    nothing, which these tests do not need."""

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.commits = 0

    def load(self) -> Snapshot:
        raise AssertionError("never reloaded: no commit fails here")

    def commit(self, changes: Changes, *, fsync: bool = True) -> None:
        self.commits += 1

    def compact(self) -> object:
        return None

    def room(self) -> int | None:
        return None

    async def run(self, call: Callable[[], T]) -> T:
        """The actor's BlockingRunner: every journal call waits for the gate."""
        await self.gate.wait()
        return call()


@asynccontextmanager
async def stalled_actor() -> AsyncIterator[tuple[ActorHandle, StalledJournal, trio.Nursery]]:
    """An actor on a StalledJournal whose requests wait at most 5 s for the inbox, and a nursery for requesters.
    Its gate opens on the way out whatever happened, since a commit cannot be cancelled."""
    journal = StalledJournal()
    tokens = itertools.count(1)
    core = Core(limits=limits(), new_id=TimeOrderedIds(), new_token=lambda: f"t{next(tokens)}", track_changes=True)
    async with (
        actor_with(core, journal=journal, run_blocking=journal.run, inbox_timeout=5.0) as (handle, _),
        trio.open_nursery() as nursery,
    ):
        try:
            yield handle, journal, nursery
        finally:
            journal.gate.set()
            nursery.cancel_scope.cancel()


async def fill_the_inbox(handle: ActorHandle, nursery: trio.Nursery, ids: list[str]) -> None:
    """With the actor stuck in a commit, queue sends until its inbox is full; their ids land in `ids`."""

    async def send(n: int) -> None:
        ids.extend(await handle.ask(Send("q", (text(f"m{n}"),))))

    nursery.start_soon(send, -1)  # taken at once: its commit is where the actor stalls
    await trio.testing.wait_all_tasks_blocked()
    for n in range(INBOX_SIZE):
        nursery.start_soon(send, n)
    await trio.testing.wait_all_tasks_blocked()
    assert handle.statistics().backlog == INBOX_SIZE


async def test_a_request_that_finds_the_inbox_full_fails_after_the_timeout_and_is_not_applied(
    autojump_clock: MockClock,
) -> None:
    async with stalled_actor() as (handle, journal, nursery):
        ids: list[str] = []
        await fill_the_inbox(handle, nursery, ids)
        start = trio.current_time()
        with (
            trio.fail_after(60),  # (a virtual minute: the test fails instead of hanging)
            pytest.raises(Overloaded, match=r"full for 5 s \(INBOX_TIMEOUT\); nothing was done") as refused,
        ):
            await handle.ask(Send("q", (text("refused"),)))
        assert trio.current_time() - start == pytest.approx(5)
        assert (refused.value.status, refused.value.code, refused.value.retry_after) == (503, "overloaded", 1)
        journal.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert len(ids) == INBOX_SIZE + 1  # every send that got in was answered
        stats = await handle.ask(GetQueue("q"))
        assert (stats.ready, stats.sent) == (INBOX_SIZE + 1, INBOX_SIZE + 1)  # and the refused one is nowhere


async def test_housekeeping_waits_for_room_however_long_it_takes(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with stalled_actor() as (handle, journal, nursery):
        await fill_the_inbox(handle, nursery, [])
        swept: list[int] = []

        async def sweep() -> None:
            swept.append((await handle.ask(Expire())).ended)

        nursery.start_soon(sweep)
        nursery.start_soon(partial(run_ticker, handle, interval=0.1))
        await trio.sleep(60)  # twelve times the timeout
        assert swept == []
        journal.gate.set()
        await trio.sleep(1)
        assert swept == [0]
        assert not [record for record in caplog.records if record.name == "wonderq.ticker"]


async def test_leases_handed_back_while_the_inbox_is_full_are_not_dropped(autojump_clock: MockClock) -> None:
    async with stalled_actor() as (handle, journal, nursery):
        journal.gate.set()
        await handle.ask(Send("held", (text("x"),)))
        leases = await handle.ask(Receive("held", visibility_timeout=600))
        journal.gate = trio.Event()
        await fill_the_inbox(handle, nursery, [])
        slot = ReplySlot[list[Lease]]()  # a reply filled, then its requester cancelled before it took it
        assert slot.deliver(outcome.Value(leases))
        slot.abandoned = True
        handle._return_late_leases(Receive("held"), slot)
        journal.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        stats = await handle.ask(GetQueue("held"))
        assert (stats.ready, stats.leased, stats.received) == (1, 0, 0)  # back at once, not in 600 s
