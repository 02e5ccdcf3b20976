"""The pure core, part 4: sweeps in slices (rule 3). Many transitions due at one moment are made a slice per
call, and whatever is due but not swept yet still acts as ended wherever an answer depends on it: acks and
visibility changes refuse an ended lease, receives never hand out a message past its retention."""

from __future__ import annotations

import itertools

import pytest

from tests.helpers import limits, text
from tests.test_core import T0
from wonderq.core import SWEEP_SLICE, Core
from wonderq.errors import LeaseLost, MessageNotFound
from wonderq.ids import TimeOrderedIds
from wonderq.model import Lease

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
