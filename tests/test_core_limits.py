"""The pure core, part 5: the caps of Limits. At most `max_queues` queues and at most `max_queue_messages`
messages per queue after a send; a refused call changes nothing (rule 9), and moves between queues (dead
letters, redrives) are never refused."""

from __future__ import annotations

import pytest

from tests.helpers import limits, make_core, settings, text
from tests.test_core import T0
from wonderq.config import Settings
from wonderq.core import Core
from wonderq.errors import QueueFull, TooManyQueues
from wonderq.ids import TimeOrderedIds
from wonderq.model import Outgoing, RedriveReport, Snapshot


def test_the_caps_default_to_no_limit() -> None:
    core = make_core()
    assert (core.limits.max_queues, core.limits.max_queue_messages) == (0, 0)
    for n in range(50):
        core.send_batch(f"q{n}", [text("x")] * 10, now=T0)
    assert core.size() == (50, 500)


def test_put_queue_past_max_queues_fails_and_creates_nothing() -> None:
    core = make_core(max_queues=2)
    core.put_queue("a", visibility_timeout=None, now=T0)
    core.put_queue("b", visibility_timeout=None, now=T0)
    with pytest.raises(TooManyQueues, match=r"'c'.*holds 2 queues.*MAX_QUEUES\) is 2") as refused:
        core.put_queue("c", visibility_timeout=None, now=T0)
    assert (refused.value.status, refused.value.code) == (409, "too_many_queues")
    assert [stats.name for stats in core.list_queues(now=T0)] == ["a", "b"]
    stats, created = core.put_queue("b", visibility_timeout=7, now=T0)  # an update is no new queue
    assert (stats.attributes.visibility_timeout, created) == (7, False)
    core.delete_queue("a", now=T0)
    assert core.put_queue("c", visibility_timeout=None, now=T0)[1]


def test_a_send_that_would_create_a_queue_past_max_queues_fails_and_stores_nothing() -> None:
    core = make_core(max_queues=1)
    core.send("a", text("x"), now=T0)
    with pytest.raises(TooManyQueues):
        core.send("b", text("x"), now=T0)
    with pytest.raises(TooManyQueues):
        core.send_batch("b", [text("x"), text("y")], now=T0)
    assert core.size() == (1, 1)
    core.send("a", text("y"), now=T0)  # sends to a queue that exists go on
    assert core.size() == (1, 2)


def test_a_core_restored_with_more_queues_than_the_cap_keeps_them_all_and_creates_none() -> None:
    source = Core(limits=limits(), new_id=TimeOrderedIds(), new_token=lambda: "t", track_changes=True)
    for name in ("a", "b", "c"):
        source.send(name, text("x"), now=T0)
    changes = source.drain_changes()
    core = make_core(max_queues=2)  # the cap was lowered since
    core.restore(Snapshot(queues=changes.queues, messages=changes.inserted_messages, last_id=changes.last_id))
    assert core.size() == (3, 3)
    with pytest.raises(TooManyQueues):
        core.send("d", text("x"), now=T0)
    core.send("a", text("y"), now=T0)
    core.delete_queue("a", now=T0)
    with pytest.raises(TooManyQueues):  # still at the cap of 2
        core.put_queue("a", visibility_timeout=None, now=T0)


@pytest.mark.parametrize("cap", [1, 3])
def test_a_send_past_max_queue_messages_fails_whole_and_stores_nothing(cap: int) -> None:
    core = make_core(max_queue_messages=cap)
    core.send_batch("q", [text(f"m{n}") for n in range(cap)], now=T0)
    with pytest.raises(QueueFull, match=rf"holds {cap} messages: 1 more would pass its limit \(MAX_QUEUE_MESSAGES\)"):
        core.send("q", text("one too many"), now=T0)
    with pytest.raises(QueueFull) as refused:
        core.send_batch("q", [text("a"), text("b")], now=T0)
    assert (refused.value.status, refused.value.code, refused.value.retry_after) == (429, "queue_full", 1.0)
    stats = core.queue_stats("q", now=T0)
    assert (stats.ready, stats.sent) == (cap, cap)


def test_a_batch_that_would_overfill_is_refused_whole_even_if_part_of_it_fits() -> None:
    core = make_core(max_queue_messages=5)
    core.send_batch("q", [text("a"), text("b"), text("c")], now=T0)
    with pytest.raises(QueueFull, match="3 more"):
        core.send_batch("q", [text("d"), text("e"), text("f")], now=T0)
    assert core.send_batch("q", [text("d"), text("e")], now=T0)  # exactly up to the cap
    assert core.size() == (1, 5)


def test_a_batch_bigger_than_the_cap_does_not_create_its_queue() -> None:
    core = make_core(max_queue_messages=2)
    with pytest.raises(QueueFull, match="holds 0 messages: 3 more"):
        core.send_batch("new", [text("a"), text("b"), text("c")], now=T0)
    assert core.size() == (0, 0)


def test_every_state_counts_toward_the_cap_and_room_comes_back_as_messages_go() -> None:
    core = make_core(max_queue_messages=3)
    core.put_queue("q", visibility_timeout=None, now=T0)
    core.send_batch(
        "q", [Outgoing(text("delayed"), delay=60), Outgoing(text("leased")), Outgoing(text("ready"))], now=T0
    )
    (lease,) = core.receive("q", max_messages=1, visibility_timeout=None, consumer=None, now=T0)
    with pytest.raises(QueueFull):
        core.send("q", text("x"), now=T0)
    core.ack("q", lease.id, lease.receipt, now=T0)
    core.send("q", text("x"), now=T0)
    with pytest.raises(QueueFull):
        core.send("q", text("y"), now=T0)


def test_repeats_of_a_dedup_id_add_nothing_so_they_are_not_refused() -> None:
    core = make_core(max_queue_messages=2)
    first = core.send("q", Outgoing(text("a"), dedup_id="k"), now=T0)
    core.send("q", text("b"), now=T0)
    assert core.send("q", Outgoing(text("a again"), dedup_id="k"), now=T0 + 1) == first
    with pytest.raises(QueueFull, match="1 more"):  # the repeat adds nothing; the new one does
        core.send_batch("q", [Outgoing(text("a"), dedup_id="k"), Outgoing(text("c"), dedup_id="new")], now=T0 + 1)


def test_two_entries_of_one_batch_with_the_same_dedup_id_count_once() -> None:
    core = make_core(max_queue_messages=2)
    core.send("q", text("a"), now=T0)
    ids = core.send_batch("q", [Outgoing(text("b"), dedup_id="k"), Outgoing(text("b"), dedup_id="k")], now=T0)
    assert ids[0] == ids[1]
    assert core.size() == (1, 2)


def test_messages_past_retention_make_room_at_the_moment_they_are_due() -> None:
    core = make_core(max_queue_messages=1)
    core.put_queue("q", visibility_timeout=None, retention=60, now=T0)
    core.send("q", text("old"), now=T0)
    with pytest.raises(QueueFull):
        core.send("q", text("new"), now=T0 + 59.999)
    core.send("q", text("new"), now=T0 + 60)


def test_a_dead_letter_moves_into_a_full_dead_letter_queue() -> None:
    core = make_core(max_queue_messages=1)
    core.put_queue("dlq", visibility_timeout=None, now=T0)
    core.put_queue("q", visibility_timeout=None, max_receives=1, dead_letter_queue="dlq", now=T0)
    core.send("dlq", text("already here"), now=T0)
    core.send("q", text("x"), now=T0)
    core.receive("q", max_messages=1, visibility_timeout=10, consumer=None, now=T0)
    stats = core.queue_stats("dlq", now=T0 + 10)  # the lease ended: the message moved, past the cap
    assert (stats.ready, stats.dead_letters) == (2, 1)
    with pytest.raises(QueueFull):
        core.send("dlq", text("y"), now=T0 + 10)


def test_a_redrive_into_a_full_queue_moves_its_messages() -> None:
    core = make_core(max_queue_messages=1)
    core.put_queue("dlq", visibility_timeout=None, now=T0)
    core.put_queue("q", visibility_timeout=None, max_receives=1, dead_letter_queue="dlq", now=T0)
    core.send("q", text("dead"), now=T0)
    core.receive("q", max_messages=1, visibility_timeout=10, consumer=None, now=T0)
    core.send("q", text("alive"), now=T0 + 10)  # the lease ended: "dead" moved out, and room came back
    assert core.redrive("dlq", destination=None, limit=10, now=T0 + 10) == RedriveReport(moved=1, skipped=0)
    assert core.queue_stats("q", now=T0 + 10).ready == 2


def test_a_dedup_id_scoped_per_group_counts_once_per_group() -> None:
    core = make_core(max_queue_messages=2)
    entries = [Outgoing(text("a"), dedup_id="k", group=group, dedup_per_group=True) for group in ("g1", "g2", "g1")]
    with pytest.raises(QueueFull, match="holds 0 messages: 3 more"):
        core.send_batch("q.fifo", [*entries, Outgoing(text("b"), group="g3")], now=T0)
    ids = core.send_batch("q.fifo", entries, now=T0)  # g1's repeat adds nothing: two new messages fit
    assert ids[0] == ids[2] != ids[1]


def test_the_settings_give_the_core_their_caps() -> None:
    chosen = settings(max_queues=7, max_queue_messages=0).limits()
    assert (chosen.max_queues, chosen.max_queue_messages) == (7, 0)
    defaults = Settings(_env_file=None).limits()
    assert (defaults.max_queues, defaults.max_queue_messages) == (10_000, 1_000_000)
