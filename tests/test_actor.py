"""The actor and the ticker on trio's virtual clock: long polls, expiry without traffic, vanished requesters,
shutdown, and a crash that must stop everything instead of leaving requesters hanging."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import outcome
import pytest
import trio
import trio.testing
from trio.testing import MockClock

from tests.helpers import make_core, running_actor, text
from wonderq.actor import Actor, ActorHandle, ReplySlot
from wonderq.clock import WallClock
from wonderq.commands import (
    Ack,
    DeleteQueue,
    Expire,
    GetQueue,
    Peek,
    PutQueue,
    Receive,
    Send,
    StopParking,
)
from wonderq.core import Core
from wonderq.errors import InvalidParameter, QueueNotFound, ShuttingDown
from wonderq.ids import TimeOrderedIds
from wonderq.model import Lease, Outgoing, Payload, State
from wonderq.ticker import run_ticker


async def counts(handle: ActorHandle, queue: str = "q") -> tuple[int, int]:
    stats = await handle.ask(GetQueue(queue))
    return stats.ready, stats.leased


async def test_commands_round_trip(handle: ActorHandle, autojump_clock: MockClock) -> None:
    stats, created = await handle.ask(PutQueue("q", visibility_timeout=5))
    assert created
    assert stats.attributes.visibility_timeout == 5
    (message_id,) = await handle.ask(Send("q", (text("x"),)))
    (lease,) = await handle.ask(Receive("q"))
    assert lease.id == message_id
    await handle.ask(Ack("q", lease.id, lease.receipt))
    assert await counts(handle) == (0, 0)


async def test_domain_errors_reach_the_requester_and_the_actor_lives_on(
    handle: ActorHandle, autojump_clock: MockClock
) -> None:
    with pytest.raises(QueueNotFound):
        await handle.ask(Receive("missing"))
    with pytest.raises(InvalidParameter, match="wait"):
        await handle.ask(Receive("missing", wait=21))
    await handle.ask(Send("q", (text("x"),)))
    assert await counts(handle) == (1, 0)


async def test_long_poll_is_answered_the_moment_a_message_is_sent(
    handle: ActorHandle, autojump_clock: MockClock
) -> None:
    await handle.ask(PutQueue("q"))
    start = trio.current_time()
    got: list[Lease] = []

    async def poll() -> None:
        leases = await handle.ask(Receive("q", wait=20))
        got.extend(leases)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.sleep(3)
        assert not got
        assert handle.statistics().parked == 1
        await handle.ask(Send("q", (text("hello"),)))
    assert [lease.payload.data for lease in got] == [b"hello"]
    assert trio.current_time() - start == pytest.approx(3)
    assert handle.statistics().parked == 0


async def test_long_poll_ends_empty_exactly_at_its_deadline(handle: ActorHandle, autojump_clock: MockClock) -> None:
    await handle.ask(PutQueue("q"))
    start = trio.current_time()
    assert await handle.ask(Receive("q", wait=7.5)) == []
    assert trio.current_time() - start == pytest.approx(7.5)
    assert handle.statistics().parked == 0


async def test_parked_receives_are_served_oldest_first_with_up_to_max(
    handle: ActorHandle, autojump_clock: MockClock
) -> None:
    await handle.ask(PutQueue("q"))
    results: dict[str, list[bytes]] = {}

    async def poll(name: str, max_messages: int) -> None:
        leases = await handle.ask(Receive("q", max_messages=max_messages, wait=20))
        results[name] = [lease.payload.data for lease in leases]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll, "first", 2)
        await trio.sleep(1)
        nursery.start_soon(poll, "second", 5)
        await trio.sleep(1)
        await handle.ask(Send("q", (text("a"), text("b"), text("c"))))
    assert results == {"first": [b"a", b"b"], "second": [b"c"]}


async def test_the_ticker_expires_leases_without_any_traffic(autojump_clock: MockClock) -> None:
    """A long poll waiting on a leased message wakes when the ticker releases it, not at its own deadline."""
    async with running_actor() as (handle, _), trio.open_nursery() as nursery:
        nursery.start_soon(partial(run_ticker, handle, interval=0.1))
        await handle.ask(Send("q", (text("x"),)))
        (first,) = await handle.ask(Receive("q", visibility_timeout=5))
        start = trio.current_time()
        (again,) = await handle.ask(Receive("q", wait=20))
        assert trio.current_time() - start == pytest.approx(5, abs=0.11)
        assert (again.id, again.receive_count) == (first.id, 2)
        assert (await handle.ask(GetQueue("q"))).expired == 1
        nursery.cancel_scope.cancel()


class LoggingCore(Core):
    """A core that records the order of its sweeps and sends, with a small sweep slice."""

    def __init__(self) -> None:
        super().__init__(limits=make_core().limits, new_id=TimeOrderedIds(), new_token=lambda: "t", sweep_slice=2)
        self.log: list[str] = []

    def expire(self, *, now: float) -> int:
        self.log.append("sweep")
        return super().expire(now=now)

    def send_batch(self, name: str, messages: Sequence[Payload | Outgoing], *, now: float) -> list[str]:
        self.log.append("send")
        return super().send_batch(name, messages, now=now)


async def test_the_ticker_sweeps_a_slice_per_command_and_sends_run_between_slices(autojump_clock: MockClock) -> None:
    """Many leases ending at one moment are swept in one tick round, but as many commands, so that a send
    does not wait for all of them."""
    core = LoggingCore()
    async with running_actor(core) as (handle, _), trio.open_nursery() as nursery:
        for _ in range(5):
            await handle.ask(Send("q", tuple(text(f"m{n}") for n in range(10))))
        for _ in range(5):
            assert len(await handle.ask(Receive("q", max_messages=10, visibility_timeout=5))) == 10
        await trio.sleep_until(trio.current_time() + 4.95)
        first_tick = trio.current_time() + 0.1  # after the deadline: one round, 25 slices of 2
        nursery.start_soon(partial(run_ticker, handle, interval=0.1))
        core.log.clear()

        async def send_at_the_tick() -> None:
            await trio.sleep_until(first_tick)
            for _ in range(20):
                await handle.ask(Send("other", (text("x"),)))

        nursery.start_soon(send_at_the_tick)
        await trio.sleep_until(first_tick + 0.05)
        stats = await handle.ask(GetQueue("q"))
        assert (stats.ready, stats.leased, stats.expired) == (50, 0, 50)
        sweeps = [n for n, entry in enumerate(core.log) if entry == "sweep"]
        assert len(sweeps) >= 25
        assert "send" in core.log[sweeps[0] : sweeps[-1]]  # sends were answered while the sweep went on
        nursery.cancel_scope.cancel()


async def test_without_the_ticker_expiry_still_holds_on_the_next_call(
    handle: ActorHandle, autojump_clock: MockClock
) -> None:
    await handle.ask(Send("q", (text("x"),)))
    (first,) = await handle.ask(Receive("q", visibility_timeout=5))
    await trio.sleep(5)
    assert (await handle.ask(Expire())).ended == 1
    (again,) = await handle.ask(Receive("q"))
    assert again.id == first.id


async def test_a_long_poll_whose_requester_went_away_takes_nothing(
    handle: ActorHandle, autojump_clock: MockClock
) -> None:
    await handle.ask(PutQueue("q"))
    with trio.move_on_after(2):
        await handle.ask(Receive("q", wait=20))
    await handle.ask(Send("q", (text("x"),)))
    assert await counts(handle) == (1, 0)
    (lease,) = await handle.ask(Receive("q"))
    assert lease.receive_count == 1
    assert (await handle.ask(GetQueue("q"))).received == 1


async def test_a_reply_filled_but_never_taken_puts_its_leases_back(
    handle: ActorHandle, autojump_clock: MockClock
) -> None:
    """The requester is cancelled after the actor answered but before it took the answer."""
    await handle.ask(Send("q", (text("x"),)))
    leases = await handle.ask(Receive("q"))
    slot = ReplySlot[list[Lease]]()
    assert slot.deliver(outcome.Value(leases))
    with trio.CancelScope() as scope:
        scope.cancel()
        await slot.wait()
    assert slot.abandoned
    assert slot.undelivered() == outcome.Value(leases)
    assert not slot.deliver(outcome.Value([]))
    handle._return_late_leases(Receive("q"), slot)
    assert await counts(handle) == (1, 0)
    (again,) = await handle.ask(Receive("q"))
    assert again.receive_count == 1


async def test_deleting_a_queue_answers_its_parked_receives(handle: ActorHandle, autojump_clock: MockClock) -> None:
    await handle.ask(PutQueue("q"))
    async with trio.open_nursery() as nursery:

        async def poll() -> None:
            with pytest.raises(QueueNotFound):
                await handle.ask(Receive("q", wait=20))

        nursery.start_soon(poll)
        nursery.start_soon(poll)
        await trio.sleep(1)
        await handle.ask(DeleteQueue("q"))
    assert handle.statistics().parked == 0


async def test_stop_parking_answers_parked_receives_and_parks_no_more(
    handle: ActorHandle, autojump_clock: MockClock
) -> None:
    await handle.ask(PutQueue("q"))
    start = trio.current_time()
    async with trio.open_nursery() as nursery:

        async def poll() -> None:
            assert await handle.ask(Receive("q", wait=20)) == []

        nursery.start_soon(poll)
        await trio.sleep(1)
        await handle.ask(StopParking())
    assert trio.current_time() - start == pytest.approx(1)
    assert await handle.ask(Receive("q", wait=20)) == []
    assert trio.current_time() - start == pytest.approx(1)


async def test_concurrent_receivers_never_share_a_message(handle: ActorHandle, autojump_clock: MockClock) -> None:
    seen: list[str] = []

    async def consume() -> None:
        while True:
            leases = await handle.ask(Receive("q", max_messages=3, wait=2))
            if not leases:
                return
            for lease in leases:
                seen.append(lease.id)
                await handle.ask(Ack("q", lease.id, lease.receipt))

    await handle.ask(PutQueue("q"))
    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(consume)
        sent: list[str] = []
        for start in range(0, 500, 10):
            ids = await handle.ask(Send("q", [text(str(i)) for i in range(start, start + 10)]))
            sent += ids
    assert sorted(seen) == sorted(sent)
    assert len(set(seen)) == 500
    statistics = handle.statistics()
    assert statistics.commands > statistics.batches  # the actor drained several commands per wake-up


async def test_peek_does_not_lease(handle: ActorHandle, autojump_clock: MockClock) -> None:
    await handle.ask(Send("q", (text("a"), text("b"))))
    page = await handle.ask(Peek("q", state=State.READY))
    assert len(page.messages) == 2
    assert await counts(handle) == (2, 0)


class ExplodingCore(Core):
    """A core with a bug: any receive on the queue "boom" raises something that is not a domain error."""

    def receive(self, name: str, **kwargs: Any) -> list[Lease]:
        if name == "boom":
            raise RuntimeError("bug in the core")
        return super().receive(name, **kwargs)


async def test_an_actor_crash_propagates_and_no_requester_hangs(autojump_clock: MockClock) -> None:
    actor = Actor(ExplodingCore(limits=make_core().limits, new_id=TimeOrderedIds(), new_token=lambda: "t"), WallClock())
    refused: list[ShuttingDown] = []

    async def parked() -> None:
        try:
            await actor.handle.ask(Receive("other", wait=20))
        except ShuttingDown as error:
            refused.append(error)

    start = trio.current_time()
    async with trio.open_nursery() as requesters:  # outside the owner nursery: not cancelled by the crash
        with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="bug in the core")):
            async with trio.open_nursery() as owner:
                await owner.start(actor.run)
                await actor.handle.ask(PutQueue("other"))
                requesters.start_soon(parked)
                requesters.start_soon(parked)  # each gets its own refusal
                await trio.testing.wait_all_tasks_blocked()
                await actor.handle.ask(Receive("boom"))
    assert len(refused) == 2
    assert trio.current_time() == start  # nobody waited for the long poll's 20 seconds
    with pytest.raises(ShuttingDown):
        await actor.handle.ask(GetQueue("other"))


async def test_requests_waiting_when_the_actor_stops_are_refused_not_hung(autojump_clock: MockClock) -> None:
    actor = Actor(make_core(), WallClock())

    async def ask() -> None:
        with pytest.raises(ShuttingDown):
            await actor.handle.ask(GetQueue("q"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        assert actor.statistics().backlog == 1
        with trio.CancelScope() as scope:
            scope.cancel()
            await actor.run()
