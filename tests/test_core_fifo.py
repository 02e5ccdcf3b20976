"""The pure core, part 3: FIFO queues (a name ending in ".fifo"): each message group in send order, and a group
with a message leased delivers nothing more until that lease ends."""

from __future__ import annotations

import pytest

from tests.helpers import make_core, text
from tests.test_core import T0
from wonderq.core import Core, is_fifo
from wonderq.errors import InvalidParameter, InvalidQueueName
from wonderq.model import Outgoing, RedriveReport, State


def send(core: Core, queue: str, *groups: str | None, now: float = T0) -> list[str]:
    """One message per group given (None: no group), in that order; returns their ids."""
    return core.send_batch(queue, [Outgoing(text(f"m{i}"), group=g) for i, g in enumerate(groups)], now=now)


def take(
    core: Core, queue: str = "q.fifo", max_messages: int = 10, now: float = T0, visibility: float = 10
) -> list[str]:
    leases = core.receive(queue, max_messages=max_messages, visibility_timeout=visibility, consumer=None, now=now)
    return [lease.id for lease in leases]


@pytest.mark.parametrize("name", ["q.fifo", "a" * 75 + ".fifo", "eu-west-1:jobs.fifo"])
def test_a_name_ending_in_fifo_makes_a_fifo_queue(name: str) -> None:
    core = make_core()
    send(core, name, "g")
    assert is_fifo(name)
    assert core.queue_stats(name, now=T0).ready == 1


@pytest.mark.parametrize("name", [".fifo", "a" * 76 + ".fifo", "q.fifo.fifo", "q.FIFO", "q.other"])
def test_bad_fifo_names_are_invalid(name: str) -> None:
    with pytest.raises(InvalidQueueName):
        make_core().send(name, text("m"), now=T0)


def test_a_receive_takes_whole_groups_oldest_first_then_each_group_waits() -> None:
    core = make_core()
    a1, b1, a2, c1 = send(core, "q.fifo", "a", "b", "a", "c")
    assert take(core, max_messages=3) == [a1, a2, b1]  # all of a (oldest head), then b
    assert take(core) == [c1]  # a and b have messages leased: only c may deliver
    assert take(core) == []
    (_a3,) = send(core, "q.fifo", "a")
    assert take(core) == []  # a is still blocked by a1 and a2


def test_a_group_opens_again_when_its_last_lease_ends() -> None:
    core = make_core()
    a1, a2, a3 = send(core, "q.fifo", "a", "a", "a")
    first = core.receive("q.fifo", max_messages=2, visibility_timeout=10, consumer=None, now=T0)
    assert [lease.id for lease in first] == [a1, a2]
    core.ack("q.fifo", a1, first[0].receipt, now=T0 + 1)
    assert take(core, now=T0 + 1) == []  # a2 is still leased
    core.ack("q.fifo", a2, first[1].receipt, now=T0 + 2)
    assert take(core, now=T0 + 2) == [a3]


def test_an_ended_lease_goes_out_again_before_the_rest_of_its_group() -> None:
    core = make_core()
    a1, a2 = send(core, "q.fifo", "a", "a")
    assert take(core, max_messages=1) == [a1]
    assert take(core, now=T0 + 9.999) == []  # both sides of the deadline
    leases = core.receive("q.fifo", max_messages=10, visibility_timeout=10, consumer=None, now=T0 + 10)
    assert [(lease.id, lease.receive_count) for lease in leases] == [(a1, 2), (a2, 1)]


def test_release_delete_and_drop_open_the_group_too() -> None:
    core = make_core()
    core.put_queue("q.fifo", visibility_timeout=None, retention=60, now=T0)
    a1, a2, _a3, _a4 = send(core, "q.fifo", "a", "a", "a", "a")
    (lease,) = core.receive("q.fifo", max_messages=1, visibility_timeout=30, consumer=None, now=T0)
    core.change_visibility("q.fifo", a1, lease.receipt, 0, now=T0)  # released
    (lease,) = core.receive("q.fifo", max_messages=1, visibility_timeout=30, consumer=None, now=T0)
    assert lease.id == a1
    assert core.delete("q.fifo", a1, now=T0)
    assert take(core, max_messages=1) == [a2]
    (a5,) = send(core, "q.fifo", "a", now=T0 + 30)
    stats = core.queue_stats("q.fifo", now=T0 + 60)  # a2 to a4 outlived the retention, leased a2 too
    assert (stats.dropped, stats.leased, stats.ready) == (3, 0, 1)
    assert take(core, now=T0 + 60) == [a5]


def test_purge_forgets_every_lease() -> None:
    core = make_core()
    send(core, "q.fifo", "a", "a")
    take(core, max_messages=1)
    core.purge("q.fifo", now=T0)
    (a3,) = send(core, "q.fifo", "a")
    assert take(core) == [a3]


def test_messages_without_a_group_are_one_group() -> None:
    core = make_core()
    first, second = send(core, "q.fifo", None, None)
    assert take(core, max_messages=1) == [first]
    assert take(core) == []
    view = core.peek("q.fifo", state=State.READY, limit=10, after=None, now=T0).messages[0]
    assert (view.id, view.group) == (second, "")


def test_max_in_flight_caps_a_fifo_queue_as_any_other() -> None:
    core = make_core()
    core.put_queue("q.fifo", visibility_timeout=None, max_in_flight=2, now=T0)
    a1, a2, _b1 = send(core, "q.fifo", "a", "a", "b")
    assert take(core) == [a1, a2]
    assert not core.has_ready("q.fifo", now=T0)


def test_has_ready_only_for_a_group_that_may_deliver() -> None:
    core = make_core()
    send(core, "q.fifo", "a", "a")
    assert core.has_ready("q.fifo", now=T0)
    take(core, max_messages=1)
    assert not core.has_ready("q.fifo", now=T0)
    send(core, "q.fifo", "b")
    assert core.has_ready("q.fifo", now=T0)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        (Outgoing(text("m"), delay=1), "neither a delay nor a priority"),
        (Outgoing(text("m"), priority=1), "neither a delay nor a priority"),
        (Outgoing(text("m"), group="has space"), "message group"),
        (Outgoing(text("m"), group="x" * 129), "message group"),
    ],
)
def test_fifo_sends_take_no_delay_or_priority_and_a_valid_group(entry: Outgoing, match: str) -> None:
    core = make_core()
    with pytest.raises(InvalidParameter, match=match):
        core.send_batch("q.fifo", [Outgoing(text("fine"), group="g"), entry], now=T0)
    assert core.size() == (0, 0)


def test_the_queue_delay_keeps_the_order() -> None:
    core = make_core()
    core.put_queue("q.fifo", visibility_timeout=None, delay=5, now=T0)
    (a1,) = send(core, "q.fifo", "a")
    (a2,) = send(core, "q.fifo", "a", now=T0 + 1)
    assert take(core, now=T0 + 4.999) == []
    assert take(core, now=T0 + 6) == [a1, a2]


def test_a_standard_queue_keeps_a_group_but_does_not_order_by_it() -> None:
    core = make_core()
    a1, a2 = send(core, "q", "a", "a")
    assert take(core, "q", max_messages=1) == [a1]
    assert take(core, "q") == [a2]  # no blocking outside FIFO queues
    assert core.peek("q", state=None, limit=10, after=None, now=T0).messages[0].group == "a"


def test_dead_letter_queues_are_of_the_same_kind() -> None:
    core = make_core()
    core.put_queue("std", visibility_timeout=None, now=T0)
    core.put_queue("dlq.fifo", visibility_timeout=None, now=T0)
    with pytest.raises(InvalidParameter, match="FIFO queue must be a FIFO queue"):
        core.put_queue("q.fifo", visibility_timeout=None, max_receives=1, dead_letter_queue="std", now=T0)
    with pytest.raises(InvalidParameter, match="standard queue must be a standard queue"):
        core.put_queue("q", visibility_timeout=None, max_receives=1, dead_letter_queue="dlq.fifo", now=T0)


def test_dead_letters_of_a_fifo_queue_keep_their_group_and_redrive_in_order() -> None:
    core = make_core()
    core.put_queue("dlq.fifo", visibility_timeout=None, now=T0)
    core.put_queue("q.fifo", visibility_timeout=1, max_receives=1, dead_letter_queue="dlq.fifo", now=T0)
    a1, b1, a2 = send(core, "q.fifo", "a", "b", "a")
    assert take(core, visibility=1) == [a1, a2, b1]
    core.expire(now=T0 + 1)
    views = core.peek("dlq.fifo", state=None, limit=10, after=None, now=T0 + 1).messages
    assert [(v.id, v.group, v.source_queue) for v in views] == [
        (a1, "a", "q.fifo"),
        (b1, "b", "q.fifo"),
        (a2, "a", "q.fifo"),
    ]
    assert take(core, "dlq.fifo", max_messages=1, now=T0 + 1, visibility=5) == [a1]  # a is blocked in the DLQ now
    assert core.redrive("dlq.fifo", destination=None, limit=10, now=T0 + 1) == RedriveReport(moved=2, skipped=0)
    assert take(core, now=T0 + 1) == [a2, b1]  # a1 is still leased in the dead-letter queue
    assert core.queue_stats("dlq.fifo", now=T0 + 1).leased == 1


def test_redrive_leaves_messages_bound_for_a_queue_of_the_other_kind() -> None:
    core = make_core()
    send(core, "dlq", None, None)
    core.put_queue("q.fifo", visibility_timeout=None, now=T0)
    assert core.redrive("dlq", destination="q.fifo", limit=10, now=T0) == RedriveReport(moved=0, skipped=2)
    assert core.queue_stats("dlq", now=T0).ready == 2


def test_a_dedup_id_per_group_counts_within_its_group_and_stays_with_the_message() -> None:
    core = make_core()
    entries = [Outgoing(text(f"m{i}"), group=g, dedup_id="d", dedup_per_group=True) for i, g in enumerate("aab")]
    first, repeat, other = core.send_batch("q.fifo", entries, now=T0)
    assert first == repeat != other
    plain = core.send_batch("q.fifo", [Outgoing(text("x"), group="c", dedup_id="d")], now=T0)
    assert plain[0] not in (first, other)  # the queue-wide key "d" is another key than a's or b's
    views = core.peek("q.fifo", state=None, limit=10, after=None, now=T0).messages
    assert [(v.group, v.dedup_id) for v in views] == [("a", "d"), ("b", "d"), ("c", "d")]
