"""The pure core, part 4: sweeps in slices (rule 3). Many transitions due at one moment are made a slice per
call, and whatever is due but not swept yet still acts as ended wherever an answer depends on it: acks and
visibility changes refuse an ended lease, receives never hand out a message past its retention. The sweep finds
due queues on its agenda: it advances those and no others, and every change that brings a queue's due time
forward files it there."""

from __future__ import annotations

import itertools

import pytest

from tests.helpers import limits, text
from tests.test_core import T0
from wonderq.core import DEDUP_WINDOW, SWEEP_SLICE, Core, _Queue
from wonderq.errors import LeaseLost, MessageNotFound
from wonderq.ids import TimeOrderedIds
from wonderq.model import Lease, Outgoing, Snapshot

SLICE = 3


def sliced_core(sweep_slice: int = SLICE) -> Core:
    tokens = itertools.count(1)
    return Core(
        limits=limits(max_batch=100),
        new_id=TimeOrderedIds(),
        new_token=lambda: f"t{next(tokens)}",
        sweep_slice=sweep_slice,
    )


def leased(core: Core, count: int, *, timeout: float = 10, queue: str = "q") -> list[Lease]:
    core.send_batch(queue, [text(f"m{n}") for n in range(count)], now=T0)
    leases = core.receive(queue, max_messages=count, visibility_timeout=timeout, consumer=None, now=T0)
    assert len(leases) == count
    return leases


def test_the_default_slice_and_a_bad_one() -> None:
    assert SWEEP_SLICE == 250
    with pytest.raises(ValueError, match="sweep_slice"):
        sliced_core(0)


def test_expiry_goes_a_slice_per_call_until_nothing_is_behind() -> None:
    core = sliced_core()
    leased(core, 10)
    assert not core.behind(now=T0 + 9.999)
    assert core.expire(now=T0 + 9.999) == 0
    assert core.behind(now=T0 + 10)
    swept = []
    while core.behind(now=T0 + 10):
        swept.append(core.expire(now=T0 + 10))
    assert swept == [SLICE, SLICE, SLICE, 1]
    stats = core.queue_stats("q", now=T0 + 10)
    assert (stats.ready, stats.leased, stats.expired) == (10, 0, 10)


def test_a_due_lease_not_swept_yet_still_counts_as_leased_in_the_stats() -> None:
    core = sliced_core()
    leased(core, 10)
    stats = core.queue_stats("q", now=T0 + 10)  # this call swept one slice
    assert (stats.ready, stats.leased, stats.expired) == (SLICE, 10 - SLICE, SLICE)


def test_an_ack_refuses_a_due_lease_the_sweep_has_not_reached() -> None:
    core = sliced_core()
    leases = leased(core, 10)
    last = leases[-1]  # the sweep takes deadlines in id order here, so the last is reached last
    core.ack("q", leases[0].id, leases[0].receipt, now=T0 + 9.999)  # just before its deadline: fine
    with pytest.raises(LeaseLost):
        core.ack("q", last.id, last.receipt, now=T0 + 10)
    stats = core.queue_stats("q", now=T0 + 10)
    # The refused ack ended that lease itself, on top of the slice its own call swept (and the stats call's).
    assert (stats.acked, stats.expired) == (1, 2 * SLICE + 1)
    while core.behind(now=T0 + 10):
        core.expire(now=T0 + 10)
    stats = core.queue_stats("q", now=T0 + 10)
    assert (stats.ready, stats.leased, stats.expired) == (9, 0, 9)  # that lease was not ended twice


def test_a_visibility_change_refuses_a_due_lease_the_sweep_has_not_reached() -> None:
    core = sliced_core()
    leases = leased(core, 10)
    last = leases[-1]
    assert core.change_visibility("q", last.id, last.receipt, 5, now=T0 + 9.999) == T0 + 14.999
    other = leases[-2]
    with pytest.raises(LeaseLost):
        core.change_visibility("q", other.id, other.receipt, 5, now=T0 + 10)
    with pytest.raises(LeaseLost):
        core.change_visibility("q", other.id, other.receipt, 0, now=T0 + 10)  # a release too


def test_a_receive_gets_what_its_own_call_swept_in_send_order() -> None:
    core = sliced_core()
    leases = leased(core, 10)
    again = core.receive("q", max_messages=10, visibility_timeout=None, consumer=None, now=T0 + 10)
    assert [lease.id for lease in again] == [lease.id for lease in leases[:SLICE]]
    assert all(lease.receive_count == 2 for lease in again)


def test_delays_are_swept_in_slices_too() -> None:
    core = sliced_core()
    core.send_batch("q", [text(f"m{n}") for n in range(10)], now=T0)
    core.put_queue("d", visibility_timeout=None, delay=5, now=T0)
    core.send_batch("d", [text(f"m{n}") for n in range(10)], now=T0)
    assert core.receive("d", max_messages=10, visibility_timeout=None, consumer=None, now=T0 + 4.999) == []
    assert len(core.receive("d", max_messages=10, visibility_timeout=None, consumer=None, now=T0 + 5)) == SLICE
    while core.behind(now=T0 + 5):
        core.expire(now=T0 + 5)
    stats = core.queue_stats("d", now=T0 + 5)
    assert (stats.ready, stats.delayed, stats.leased) == (10 - SLICE, 0, SLICE)


def test_a_receive_never_hands_out_a_message_past_retention_that_no_sweep_dropped_yet() -> None:
    core = sliced_core()
    core.put_queue("q", visibility_timeout=None, retention=60, now=T0)
    old = core.send_batch("q", [text(f"old{n}") for n in range(10)], now=T0)
    young = core.send("q", text("young"), now=T0 + 30)
    at_edge = core.receive("q", max_messages=1, visibility_timeout=None, consumer=None, now=T0 + 59.999)
    assert [lease.id for lease in at_edge] == [old[0]]  # just before its retention: still delivered
    got = core.receive("q", max_messages=100, visibility_timeout=None, consumer=None, now=T0 + 60)
    assert [lease.id for lease in got] == [young]
    stats = core.queue_stats("q", now=T0 + 60)
    assert (stats.dropped, stats.ready, stats.leased) == (10, 0, 1)


def test_an_ack_of_a_message_past_retention_that_no_sweep_dropped_yet_finds_nothing() -> None:
    core = sliced_core()
    core.put_queue("q", visibility_timeout=None, retention=60, now=T0)
    core.send_batch("q", [text(f"m{n}") for n in range(10)], now=T0)
    leases = core.receive("q", max_messages=10, visibility_timeout=600, consumer=None, now=T0 + 1)
    core.ack("q", leases[0].id, leases[0].receipt, now=T0 + 59.999)
    last = leases[-1]
    with pytest.raises(MessageNotFound):
        core.ack("q", last.id, last.receipt, now=T0 + 60)
    assert not core.delete("q", leases[-2].id, now=T0 + 60)  # deleting it finds nothing either
    while core.behind(now=T0 + 60):
        core.expire(now=T0 + 60)
    stats = core.queue_stats("q", now=T0 + 60)
    assert (stats.dropped, stats.acked, stats.leased) == (9, 1, 0)


def test_behind_says_true_for_a_stale_head_once_then_false() -> None:
    core = sliced_core()
    (lease,) = leased(core, 1)
    core.change_visibility("q", lease.id, lease.receipt, 20, now=T0 + 1)  # the deadline entry at T0+10 is stale
    assert core.behind(now=T0 + 10)
    assert core.expire(now=T0 + 10) == 0
    assert not core.behind(now=T0 + 10)


# ---- the agenda: a sweep touches only the queues with something due ---------------------------------------


class CountingCore(Core):
    """A core that counts the queues its sweeps (and every other call) advance."""

    def __init__(self, sweep_slice: int = SLICE) -> None:
        super().__init__(
            limits=limits(max_batch=100), new_id=TimeOrderedIds(), new_token=lambda: "t", sweep_slice=sweep_slice
        )
        self.advanced: list[str] = []

    def _advance(self, queue: _Queue, now: float) -> int:
        self.advanced.append(queue.name)
        return super()._advance(queue, now)


def swept(core: Core, now: float) -> int:
    """Sweep as the ticker does, until nothing is behind; returns the leases that ended."""
    ended = 0
    while core.behind(now=now):
        ended += core.expire(now=now)
    return ended


def test_a_sweep_advances_no_queue_while_nothing_is_due() -> None:
    core = CountingCore()
    for n in range(1_000):
        core.send(f"q{n}", text("x"), now=T0)
    core.advanced.clear()
    assert not core.behind(now=T0 + 3_600)
    assert core.expire(now=T0 + 3_600) == 0
    assert core.advanced == []


def test_a_sweep_advances_only_the_queues_whose_time_has_come() -> None:
    core = CountingCore()
    for n in range(100):
        core.send(f"q{n}", text("x"), now=T0)
    leased(core, 1, timeout=10, queue="q7")
    leased(core, 1, timeout=20, queue="q42")
    core.advanced.clear()
    assert swept(core, T0 + 9.999) == 0
    assert core.advanced == []
    assert swept(core, T0 + 10) == 1
    assert core.advanced == ["q7"]
    assert swept(core, T0 + 20) == 1
    assert core.advanced == ["q7", "q42"]


def test_a_sweep_takes_at_most_a_slice_of_queues_per_call() -> None:
    core = CountingCore()
    for n in range(10):
        leased(core, 1, queue=f"q{n}")
    core.advanced.clear()
    ended = []
    while core.behind(now=T0 + 10):
        ended.append(core.expire(now=T0 + 10))
    assert ended == [SLICE, SLICE, SLICE, 1]
    assert sorted(core.advanced) == sorted(f"q{n}" for n in range(10))  # each once


def test_a_queue_behind_by_more_than_a_slice_is_swept_again_in_the_next_call_not_the_same() -> None:
    core = CountingCore()
    leased(core, 10, queue="big")
    leased(core, 1, queue="small")
    core.advanced.clear()
    assert core.expire(now=T0 + 10) == SLICE + 1
    assert sorted(core.advanced) == ["big", "small"]
    assert core.behind(now=T0 + 10)
    assert swept(core, T0 + 10) == 10 - SLICE


@pytest.mark.parametrize("shorter", [True, False])
def test_a_visibility_change_files_its_new_deadline(shorter: bool) -> None:
    core = sliced_core()
    (lease,) = leased(core, 1, timeout=100)
    seconds = 5 if shorter else 200
    core.change_visibility("q", lease.id, lease.receipt, seconds, now=T0 + 1)
    assert swept(core, T0 + 1 + seconds - 0.001) == 0
    assert swept(core, T0 + 1 + seconds) == 1


def test_a_delay_ends_by_the_sweep_alone() -> None:
    core = Core(limits=limits(), new_id=TimeOrderedIds(), new_token=lambda: "t", track_changes=True)
    core.send("q", text("old"), now=T0)  # files its retention, long after the delay
    (later,) = core.send_batch("q", [Outgoing(text("later"), delay=30)], now=T0)
    core.drain_changes()
    swept(core, T0 + 29.999)
    assert core.drain_changes().updated_messages == ()
    swept(core, T0 + 30)
    (woken,) = core.drain_changes().updated_messages  # read without a call on the queue, which would sweep it
    assert (woken.id, woken.visible_at) == (later, None)


def test_retention_drops_by_the_sweep_alone_also_after_a_shorter_retention_is_set() -> None:
    core = CountingCore()
    core.put_queue("q", visibility_timeout=None, retention=3_600, now=T0)
    core.send("q", text("x"), now=T0)
    core.put_queue("q", visibility_timeout=None, retention=60, now=T0 + 1)
    core.advanced.clear()
    swept(core, T0 + 59.999)
    assert core.advanced == []
    swept(core, T0 + 60)
    assert core.advanced == ["q"]
    assert core.queue_stats("q", now=T0 + 60).dropped == 1


def test_a_dead_letter_older_than_its_new_queues_retention_is_dropped_by_the_sweep() -> None:
    core = sliced_core()
    core.put_queue("dlq", visibility_timeout=None, retention=60, now=T0)
    core.put_queue("q", visibility_timeout=None, max_receives=1, dead_letter_queue="dlq", now=T0)
    core.send("q", text("x"), now=T0)
    core.receive("q", max_messages=1, visibility_timeout=100, consumer=None, now=T0)
    assert swept(core, T0 + 100) == 1  # ends the lease, moves it; it was sent 100 s ago: dropped at once
    assert core.size() == (2, 0)
    assert core.queue_stats("dlq", now=T0 + 100).dropped == 1


def test_a_dedup_id_is_forgotten_by_the_sweep_alone() -> None:
    core = Core(limits=limits(), new_id=TimeOrderedIds(), new_token=lambda: "t", track_changes=True)
    core.send("q", Outgoing(text("x"), dedup_id="d"), now=T0)
    core.drain_changes()
    swept(core, T0 + DEDUP_WINDOW - 0.001)
    assert core.drain_changes().dedup_expired == ()
    swept(core, T0 + DEDUP_WINDOW)
    assert core.drain_changes().dedup_expired == (("q", "d"),)


def test_a_restored_core_sweeps_what_the_snapshot_had_due() -> None:
    core = Core(limits=limits(), new_id=TimeOrderedIds(), new_token=lambda: "t", track_changes=True)
    core.send("q", text("x"), now=T0)
    core.receive("q", max_messages=1, visibility_timeout=10, consumer=None, now=T0)
    changes = core.drain_changes()
    again = CountingCore()
    again.restore(Snapshot(queues=changes.queues, messages=changes.inserted_messages, last_id=changes.last_id))
    assert swept(again, T0 + 9.999) == 0
    assert swept(again, T0 + 10) == 1
    assert again.advanced == ["q"]


def test_a_deleted_queue_leaves_only_a_stale_entry_and_a_new_one_of_its_name_starts_afresh() -> None:
    core = CountingCore()
    leased(core, 1, timeout=10)
    core.delete_queue("q", now=T0 + 1)
    core.send("q", text("x"), now=T0 + 2)
    core.advanced.clear()
    assert not core.behind(now=T0 + 10)  # the stale entry is dropped, and nothing is due
    assert core.advanced == []


def test_the_agenda_is_rebuilt_when_stale_entries_outnumber_the_queues() -> None:
    core = sliced_core()
    (lease,) = leased(core, 1, timeout=10_000)
    for n in range(5_000):  # each shorter than the last: each files a new entry, leaving the last one stale
        core.change_visibility("q", lease.id, lease.receipt, 9_000 - n, now=T0)
    assert len(core._agenda) <= 2 * 1 + 1024 + 1
    assert swept(core, T0 + 4_000) == 0
    assert swept(core, T0 + 4_001) == 1


def test_a_call_on_a_dead_letter_queue_advances_only_its_feeders_with_something_due() -> None:
    core = CountingCore()
    core.put_queue("dlq", visibility_timeout=None, now=T0)
    for n in range(50):
        core.put_queue(f"q{n}", visibility_timeout=None, max_receives=1, dead_letter_queue="dlq", now=T0)
        core.send(f"q{n}", text("x"), now=T0)
    core.receive("q7", max_messages=1, visibility_timeout=10, consumer=None, now=T0)
    core.advanced.clear()
    assert core.queue_stats("dlq", now=T0 + 9.999).ready == 0
    assert core.advanced == ["dlq"]
    core.advanced.clear()
    assert core.queue_stats("dlq", now=T0 + 10).ready == 1  # q7's lease ended: its dead letter is here
    assert core.advanced == ["q7", "dlq"]
