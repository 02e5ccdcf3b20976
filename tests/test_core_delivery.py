"""The pure core, part 2: retention, dead-letter queues, redrive and message attributes, each rule at both sides
of its deadline and every illegal call."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import make_core, text
from tests.test_core import T0, receive_one
from wonderq.core import (
    MAX_ATTRIBUTES,
    MAX_RECEIVES,
    MAX_REDRIVE,
    MAX_RETENTION,
    MIN_RETENTION,
    Core,
    make_attributes,
)
from wonderq.errors import (
    InvalidParameter,
    InvalidQueueName,
    LeaseLost,
    MessageNotFound,
    MessageTooLarge,
    QueueInUse,
    QueueNotFound,
)
from wonderq.model import DEFAULT_RETENTION, Outgoing, Payload, RedriveReport, State, TypedValue


def ids_in(core: Core, queue: str, now: float, state: State | None = None) -> list[str]:
    return [view.id for view in core.peek(queue, state=state, limit=1000, after=None, now=now).messages]


def with_dlq(max_receives: int = 2, **limits: Any) -> Core:
    core = make_core(**limits)
    core.put_queue("dlq", visibility_timeout=None, now=T0)
    core.put_queue("q", visibility_timeout=10, max_receives=max_receives, dead_letter_queue="dlq", now=T0)
    return core


# ---- retention ------------------------------------------------------------------------------------------


def test_retention_defaults_to_four_days_and_drops_at_both_sides() -> None:
    core = make_core()
    first = core.send("q", text("old"), now=T0)
    second = core.send("q", text("new"), now=T0 + 1)
    assert core.queue_stats("q", now=T0).attributes.retention == DEFAULT_RETENTION == 4 * 86_400
    assert ids_in(core, "q", T0 + DEFAULT_RETENTION - 0.001) == [first, second]
    assert ids_in(core, "q", T0 + DEFAULT_RETENTION) == [second]  # at exactly sent_at + retention: gone
    stats = core.queue_stats("q", now=T0 + DEFAULT_RETENTION)
    assert (stats.ready, stats.dropped, stats.acked) == (1, 1, 0)
    assert ids_in(core, "q", T0 + DEFAULT_RETENTION + 1) == []
    assert core.queue_stats("q", now=T0 + DEFAULT_RETENTION + 1).dropped == 2


def test_retention_drops_leased_and_delayed_messages_too() -> None:
    core = make_core()
    core.put_queue("q", visibility_timeout=None, retention=60, now=T0)
    leased_id = core.send("q", text("leased"), now=T0)
    core.send("q", Outgoing(text("delayed"), delay=900), now=T0)
    lease = receive_one(core, now=T0, visibility_timeout=1000)
    assert lease.id == leased_id
    stats = core.queue_stats("q", now=T0 + 59.999)
    assert (stats.leased, stats.delayed, stats.dropped) == (1, 1, 0)
    stats = core.queue_stats("q", now=T0 + 60)
    assert (stats.ready, stats.leased, stats.delayed, stats.dropped) == (0, 0, 0, 2)
    with pytest.raises(MessageNotFound):
        core.ack("q", lease.id, lease.receipt, now=T0 + 60)


def test_expire_drops_old_messages_in_every_queue() -> None:
    core = make_core()
    for name in ("a", "b"):
        core.put_queue(name, visibility_timeout=None, retention=60, now=T0)
        core.send(name, text("m"), now=T0)
    core.expire(now=T0 + 60)
    assert core.size() == (2, 0)  # without any call on the queues themselves


def test_shortening_retention_drops_from_the_next_call() -> None:
    core = make_core()
    core.send("q", text("m"), now=T0)
    core.put_queue("q", visibility_timeout=None, retention=100, now=T0 + 99)
    assert core.queue_stats("q", now=T0 + 99.5).ready == 1
    assert core.queue_stats("q", now=T0 + 100).dropped == 1


@pytest.mark.parametrize("seconds", [MIN_RETENTION - 0.001, MAX_RETENTION + 0.001, float("nan"), -1.0])
def test_retention_out_of_range_changes_nothing(seconds: float) -> None:
    core = make_core()
    with pytest.raises(InvalidParameter, match="retention"):
        core.put_queue("q", visibility_timeout=None, retention=seconds, now=T0)
    assert core.size() == (0, 0)


def test_retention_limits_are_inclusive() -> None:
    core = make_core()
    assert core.put_queue("a", visibility_timeout=None, retention=MIN_RETENTION, now=T0)[0].attributes.retention == 60
    stats, _ = core.put_queue("b", visibility_timeout=None, retention=MAX_RETENTION, now=T0)
    assert stats.attributes.retention == 14 * 86_400


def test_acks_out_of_order_do_not_keep_old_entries_forever() -> None:
    """Retention keeps ids in send order; acking around one old message must not grow that without bound."""
    core = make_core(max_batch=100)
    core.send("q", Outgoing(text("stuck"), priority=1), now=T0)  # never received: priority 1 waits
    for round_ in range(100):
        core.send_batch("q", [text("m")] * 100, now=T0)
        report = core.ack_batch(
            "q",
            [
                lease.receipt
                for lease in core.receive("q", max_messages=100, visibility_timeout=5, consumer=None, now=T0)
            ],
            now=T0,
        )
        assert len(report.acked) == 100, round_
    assert len(core._queues["q"].arrivals) <= 2 * 1 + 1024 + 100  # the structure under test
    assert core.queue_stats("q", now=T0 + DEFAULT_RETENTION).dropped == 1


# ---- dead-letter queues ----------------------------------------------------------------------------------


def test_a_message_moves_to_the_dead_letter_queue_when_its_last_lease_expires() -> None:
    core = with_dlq(max_receives=2)
    message_id = core.send("q", Payload(b"m", "text/plain", (("k", "v"),)), now=T0)
    first = receive_one(core, now=T0)
    second = receive_one(core, now=T0 + 10)  # the first lease ended at T0 + 10
    assert (first.receive_count, second.receive_count) == (1, 2)
    assert ids_in(core, "q", T0 + 19.999, State.LEASED) == [message_id]
    assert ids_in(core, "dlq", T0 + 19.999) == []
    assert core.receive("q", max_messages=1, visibility_timeout=None, consumer=None, now=T0 + 20) == []
    (view,) = core.peek("dlq", state=None, limit=10, after=None, now=T0 + 20).messages
    assert (view.id, view.state, view.receive_count, view.source_queue) == (message_id, State.READY, 2, "q")
    assert (view.payload, view.sent_at, view.first_received_at) == (first.payload, T0, T0)
    source, target = core.queue_stats("q", now=T0 + 20), core.queue_stats("dlq", now=T0 + 20)
    assert (source.ready, source.leased, source.expired, source.dead_lettered) == (0, 0, 2, 1)
    assert (target.ready, target.sent) == (1, 0)
    lease = receive_one(core, "dlq", now=T0 + 20)
    assert (lease.id, lease.receive_count, lease.source_queue) == (message_id, 3, "q")
    with pytest.raises(MessageNotFound):
        core.ack("q", second.id, second.receipt, now=T0 + 20)


def test_a_nack_of_the_last_allowed_delivery_dead_letters_at_once() -> None:
    core = with_dlq(max_receives=1)
    core.send("q", text("m"), now=T0)
    lease = receive_one(core, now=T0)
    core.change_visibility("q", lease.id, lease.receipt, 0, now=T0 + 1)
    stats = core.queue_stats("q", now=T0 + 1)
    assert (stats.ready, stats.released, stats.dead_lettered) == (0, 1, 1)
    assert core.queue_stats("dlq", now=T0 + 1).ready == 1


def test_an_acked_last_delivery_is_not_dead_lettered() -> None:
    core = with_dlq(max_receives=1)
    core.send("q", text("m"), now=T0)
    lease = receive_one(core, now=T0)
    core.ack("q", lease.id, lease.receipt, now=T0 + 9.999)
    assert core.size() == (2, 0)


def test_a_backoff_keeps_the_lease_until_its_new_deadline() -> None:
    core = with_dlq(max_receives=1)
    core.send("q", text("m"), now=T0)
    lease = receive_one(core, now=T0)
    core.change_visibility("q", lease.id, lease.receipt, 100, now=T0 + 1)
    assert core.queue_stats("dlq", now=T0 + 100.999).ready == 0
    assert core.queue_stats("dlq", now=T0 + 101).ready == 1


def test_lowering_max_receives_dead_letters_on_the_next_receive() -> None:
    core = with_dlq(max_receives=5)
    first = core.send("q", text("a"), now=T0)
    second = core.send("q", text("b"), now=T0)
    for offset in (0, 10):
        assert [
            lease.id
            for lease in core.receive("q", max_messages=1, visibility_timeout=None, consumer=None, now=T0 + offset)
        ] == [first]
    core.put_queue("q", visibility_timeout=None, max_receives=2, now=T0 + 20)  # first was received twice
    assert receive_one(core, now=T0 + 20).id == second
    assert ids_in(core, "dlq", T0 + 20) == [first]


def test_has_ready_is_false_when_only_dead_letters_are_left() -> None:
    core = with_dlq(max_receives=3)
    core.send("q", text("a"), now=T0)
    for offset in (0, 10):
        receive_one(core, now=T0 + offset)
    core.put_queue("q", visibility_timeout=None, max_receives=1, now=T0 + 20)
    assert not core.has_ready("q", now=T0 + 20)
    assert core.queue_stats("dlq", now=T0 + 20).ready == 1


def test_without_max_receives_messages_are_redelivered_forever() -> None:
    core = make_core()
    core.send("q", text("m"), now=T0)
    for round_ in range(MAX_RECEIVES + 1):
        assert receive_one(core, now=T0 + 30 * round_).receive_count == round_ + 1


def test_a_dead_lettered_message_keeps_its_priority_and_goes_before_newer_ones() -> None:
    core = with_dlq(max_receives=1)
    old = core.send("q", Outgoing(text("old"), priority=3), now=T0)
    newer = core.send("dlq", Outgoing(text("newer"), priority=3), now=T0 + 5)
    receive_one(core, now=T0)
    assert [
        lease.id for lease in core.receive("dlq", max_messages=5, visibility_timeout=None, consumer=None, now=T0 + 10)
    ] == [old, newer]
    assert ids_in(core, "dlq", T0 + 10) == [old, newer]  # peek shows id (send) order too


@pytest.mark.parametrize(
    ("attributes", "match"),
    [
        ({"max_receives": 2}, "needs a dead_letter_queue"),
        ({"max_receives": MAX_RECEIVES + 1, "dead_letter_queue": "dlq"}, "max_receives"),
        ({"max_receives": -1, "dead_letter_queue": "dlq"}, "max_receives"),
        ({"max_receives": 2, "dead_letter_queue": "missing"}, "does not exist"),
        ({"max_receives": 2, "dead_letter_queue": "itself"}, "its own"),
        ({"dead_letter_queue": "bad name"}, "invalid"),
    ],
)
def test_bad_dead_letter_settings_change_nothing(attributes: dict[str, object], match: str) -> None:
    core = make_core()
    core.put_queue("dlq", visibility_timeout=None, now=T0)
    for name in ("q", "new"):
        if name == "q":
            core.put_queue("q", visibility_timeout=5, now=T0)
        given = {key: name if value == "itself" else value for key, value in attributes.items()}
        with pytest.raises((InvalidParameter, InvalidQueueName), match=match):
            core.put_queue(name, visibility_timeout=None, now=T0, **given)  # type: ignore[arg-type]
    assert core.queue_stats("q", now=T0).attributes.max_receives == 0
    with pytest.raises(QueueNotFound):
        core.queue_stats("new", now=T0)


def test_max_receives_limits_are_inclusive_and_dead_letter_queue_can_be_removed() -> None:
    core = with_dlq(max_receives=MAX_RECEIVES)
    assert core.queue_stats("q", now=T0).attributes.max_receives == MAX_RECEIVES
    with pytest.raises(InvalidParameter, match="needs a dead_letter_queue"):
        core.put_queue("q", visibility_timeout=None, dead_letter_queue="", now=T0)
    stats, _ = core.put_queue("q", visibility_timeout=None, max_receives=0, dead_letter_queue="", now=T0)
    assert (stats.attributes.max_receives, stats.attributes.dead_letter_queue) == (0, None)
    core.delete_queue("dlq", now=T0)  # no longer named: it can go


def test_a_dead_letter_queue_cannot_be_deleted_while_named() -> None:
    core = with_dlq()
    core.send("dlq", text("kept"), now=T0)
    with pytest.raises(QueueInUse, match="'q'"):
        core.delete_queue("dlq", now=T0)
    assert core.queue_stats("dlq", now=T0).ready == 1
    core.delete_queue("q", now=T0)
    core.delete_queue("dlq", now=T0)


def test_dead_lettered_messages_in_the_dead_letter_queue_age_from_their_send() -> None:
    core = make_core()
    core.put_queue("dlq", visibility_timeout=None, retention=100, now=T0)
    core.put_queue("q", visibility_timeout=60, max_receives=1, dead_letter_queue="dlq", now=T0)
    core.send("q", text("m"), now=T0)
    receive_one(core, now=T0)
    assert core.queue_stats("dlq", now=T0 + 60).ready == 1
    assert core.queue_stats("dlq", now=T0 + 99.999).ready == 1
    stats = core.queue_stats("dlq", now=T0 + 100)
    assert (stats.ready, stats.dropped) == (0, 1)


# ---- redrive ---------------------------------------------------------------------------------------------


def dead_letters(core: Core, count: int, source: str = "q") -> list[str]:
    ids = core.send_batch(source, [text(f"m{i}") for i in range(count)], now=T0)
    core.receive(source, max_messages=count, visibility_timeout=1, consumer=None, now=T0)
    core.expire(now=T0 + 1)  # max_receives is 1 in these tests: all move
    return ids


def test_redrive_returns_messages_to_their_source_with_a_fresh_receive_count() -> None:
    core = with_dlq(max_receives=1, max_batch=10)
    ids = dead_letters(core, 3)
    assert core.redrive("dlq", destination=None, limit=10, now=T0 + 2) == RedriveReport(moved=3, skipped=0)
    views = core.peek("q", state=None, limit=10, after=None, now=T0 + 2).messages
    assert [(v.id, v.state, v.receive_count, v.first_received_at, v.source_queue) for v in views] == [
        (message_id, State.READY, 0, None, None) for message_id in ids
    ]
    assert core.queue_stats("dlq", now=T0 + 2).redriven == 3
    assert [
        lease.receive_count
        for lease in core.receive("q", max_messages=3, visibility_timeout=1, consumer=None, now=T0 + 2)
    ] == [1, 1, 1]


def test_redrive_to_a_named_destination_and_at_most_limit() -> None:
    core = with_dlq(max_receives=1)
    core.put_queue("elsewhere", visibility_timeout=None, now=T0)
    ids = dead_letters(core, 5)
    assert core.redrive("dlq", destination="elsewhere", limit=2, now=T0 + 2) == RedriveReport(moved=2, skipped=0)
    assert ids_in(core, "elsewhere", T0 + 2) == ids[:2]
    assert ids_in(core, "dlq", T0 + 2) == ids[2:]


def test_redrive_skips_messages_with_nowhere_to_go_and_leaves_leased_ones() -> None:
    core = with_dlq(max_receives=1)
    dead = dead_letters(core, 2)
    direct = core.send("dlq", text("sent here"), now=T0 + 2)
    inspected = receive_one(core, "dlq", now=T0 + 2)  # the first dead letter, leased by someone looking at it
    assert inspected.id == dead[0]
    assert core.redrive("dlq", destination=None, limit=10, now=T0 + 3) == RedriveReport(moved=1, skipped=1)
    assert ids_in(core, "dlq", T0 + 3) == [dead[0], direct]
    assert ids_in(core, "q", T0 + 3) == [dead[1]]
    assert receive_one(core, "dlq", now=T0 + 3).id == direct  # skipped messages are still deliverable


def test_redrive_skips_messages_whose_source_queue_is_gone() -> None:
    core = with_dlq(max_receives=1)
    dead_letters(core, 1)
    core.delete_queue("q", now=T0 + 2)
    assert core.redrive("dlq", destination=None, limit=10, now=T0 + 2) == RedriveReport(moved=0, skipped=1)


@pytest.mark.parametrize(
    ("destination", "limit", "error", "match"),
    [
        ("dlq", 1, InvalidParameter, "another queue"),
        ("missing", 1, QueueNotFound, "missing"),
        (None, 0, InvalidParameter, "limit"),
        (None, MAX_REDRIVE + 1, InvalidParameter, "limit"),
    ],
)
def test_bad_redrives_change_nothing(destination: str | None, limit: int, error: type[Exception], match: str) -> None:
    core = with_dlq(max_receives=1)
    ids = dead_letters(core, 1)
    with pytest.raises(error, match=match):
        core.redrive("dlq", destination=destination, limit=limit, now=T0 + 2)
    assert ids_in(core, "dlq", T0 + 2) == ids
    with pytest.raises(QueueNotFound):
        core.redrive("missing", destination=None, limit=1, now=T0 + 2)


def test_a_redriven_message_older_than_the_destination_retention_is_dropped() -> None:
    core = with_dlq(max_receives=1)
    core.put_queue("dlq", visibility_timeout=None, retention=MAX_RETENTION, now=T0)
    core.put_queue("q", visibility_timeout=None, retention=MIN_RETENTION, now=T0)
    dead_letters(core, 1)
    assert core.redrive("dlq", destination=None, limit=1, now=T0 + MIN_RETENTION).moved == 1
    assert core.queue_stats("q", now=T0 + MIN_RETENTION).dropped == 1


# ---- message attributes ----------------------------------------------------------------------------------


def test_attributes_travel_with_the_message() -> None:
    core = make_core()
    attributes = make_attributes({"b": "2", "a": "1", "empty": ""})
    assert attributes == (("a", "1"), ("b", "2"), ("empty", ""))
    core.send("q", Payload(b"m", "text/plain", attributes), now=T0)
    assert receive_one(core, now=T0).payload.attributes == attributes


def test_attributes_count_toward_the_message_size() -> None:
    core = make_core(max_message_bytes=10)
    core.send("q", Payload(b"12345", "text/plain", (("ab", "cde"),)), now=T0)  # 5 + 2 + 3 = 10 bytes
    with pytest.raises(MessageTooLarge, match="with its attributes is 11 bytes"):
        core.send("q", Payload(b"12345", "text/plain", (("ab", "cdé"),)), now=T0)  # é is 2 bytes in UTF-8
    assert core.queue_stats("q", now=T0).sent == 1


@pytest.mark.parametrize(
    ("attributes", "match"),
    [
        (tuple((f"k{i:02}", "v") for i in range(MAX_ATTRIBUTES + 1)), "at most 10"),
        ((("", "v"),), "attribute name"),
        ((("a b", "v"),), "attribute name"),
        ((("x" * 257, "v"),), "attribute name"),
        ((("b", "v"), ("a", "v")), "sorted"),
        ((("a", "v"), ("a", "w")), "sorted"),
        ((("a", "\ud800"),), "Unicode"),
    ],
)
def test_bad_attributes_fail_the_whole_batch(attributes: tuple[tuple[str, str], ...], match: str) -> None:
    core = make_core()
    with pytest.raises(InvalidParameter, match=f"message 1: .*{match}"):
        core.send_batch("q", [text("fine"), Payload(b"m", "text/plain", attributes)], now=T0)
    assert core.size() == (0, 0)


def test_attribute_limits_are_inclusive() -> None:
    core = make_core(max_message_bytes=4096)
    most = tuple((f"k{i:02}", "v") for i in range(MAX_ATTRIBUTES))
    core.send("q", Payload(b"m", "text/plain", most), now=T0)
    core.send("q", Payload(b"m", "text/plain", (("x" * 256, "v"),)), now=T0)
    assert core.queue_stats("q", now=T0).sent == 2


def test_lease_lost_after_dead_lettering_is_not_an_ack() -> None:
    core = with_dlq(max_receives=1)
    core.send("q", text("m"), now=T0)
    lease = receive_one(core, now=T0)
    core.expire(now=T0 + 10)
    dead = receive_one(core, "dlq", now=T0 + 10)
    with pytest.raises(LeaseLost):
        core.ack("dlq", dead.id, lease.receipt, now=T0 + 10)


# ---- what the SQS front end needs: typed attributes, queue metadata, delete in any state, namespaces ------


def test_typed_attribute_values_count_their_type_and_check_their_kind() -> None:
    core = make_core(max_message_bytes=40)
    attributes = (("n", TypedValue("Number", "12")), ("raw", TypedValue("Binary.png", b"\x00\x01")), ("s", "x"))
    core.send("q", Payload(b"body", "text/plain", attributes), now=T0)
    assert receive_one(core, now=T0).payload.attributes == attributes
    # 4 body + (1 + 6 + 2) + (3 + 10 + 2) + (1 + 1) = 30 bytes; one more attribute of 11 makes 41
    with pytest.raises(MessageTooLarge, match="41 bytes"):
        core.send("q", Payload(b"body", "text/plain", (*attributes, ("t", TypedValue("String", "abcd")))), now=T0)
    for bad, match in [
        (TypedValue("Text", "x"), "data type"),
        (TypedValue("Number.", "1"), "data type"),
        (TypedValue("Binary", "not bytes"), "must be bytes"),
        (TypedValue("String", b"bytes"), "must be text"),
    ]:
        with pytest.raises(InvalidParameter, match=match):
            core.send("q", Payload(b"m", "text/plain", (("a", bad),)), now=T0)
    assert core.queue_stats("q", now=T0).sent == 1


def test_queue_metadata_is_set_merged_and_removed() -> None:
    core = make_core()
    stats, _ = core.put_queue("q", visibility_timeout=None, metadata={"tag:b": "2", "tag:a": "1"}, now=T0)
    assert stats.attributes.metadata == (("tag:a", "1"), ("tag:b", "2"))
    stats, _ = core.put_queue("q", visibility_timeout=None, metadata={"tag:a": None, "tag:c": "3"}, now=T0)
    assert stats.attributes.metadata == (("tag:b", "2"), ("tag:c", "3"))
    stats, _ = core.put_queue("q", visibility_timeout=7, now=T0)
    assert stats.attributes.metadata == (("tag:b", "2"), ("tag:c", "3"))  # kept when not given


def test_delete_removes_a_message_in_any_state_once() -> None:
    core = make_core()
    ready, leased, delayed = core.send_batch("q", [text("r"), text("l"), Outgoing(text("d"), delay=60)], now=T0)
    assert receive_one(core, now=T0).id == ready
    assert receive_one(core, now=T0).id == leased
    core.ack("q", ready, None, now=T0)
    assert core.delete("q", leased, now=T0)
    assert core.delete("q", delayed, now=T0)
    assert not core.delete("q", delayed, now=T0)  # gone already: nothing to do
    stats = core.queue_stats("q", now=T0)
    assert (stats.ready, stats.leased, stats.delayed, stats.acked) == (0, 0, 0, 3)
    with pytest.raises(QueueNotFound):
        core.delete("missing", ready, now=T0)


@pytest.mark.parametrize("name", ["eu-west-1:jobs", "a:b", f"{'n' * 40}:{'q' * 80}"])
def test_queue_names_may_have_a_namespace(name: str) -> None:
    core = make_core()
    core.send(name, text("m"), now=T0)
    assert core.queue_stats(name, now=T0).ready == 1


@pytest.mark.parametrize("name", ["EU:jobs", ":jobs", "a:", f"{'n' * 41}:q", "a:b:c", "a b:c"])
def test_bad_namespaces_are_invalid_queue_names(name: str) -> None:
    with pytest.raises(InvalidQueueName):
        make_core().send(name, text("m"), now=T0)


def test_oldest_sent_at_follows_the_oldest_message_wherever_it_came_from() -> None:
    core = with_dlq(max_receives=1)
    assert core.queue_stats("q", now=T0).oldest_sent_at is None
    first, second = core.send("q", text("a"), now=T0), core.send("q", text("b"), now=T0 + 1)
    assert core.queue_stats("q", now=T0 + 1).oldest_sent_at == T0
    lease = receive_one(core, now=T0 + 1)
    core.ack("q", first, lease.receipt, now=T0 + 2)
    assert core.queue_stats("q", now=T0 + 2).oldest_sent_at == T0 + 1
    core.send("dlq", text("direct"), now=T0 + 3)
    receive_one(core, now=T0 + 3)  # second, whose lease ends at T0 + 13: a dead letter sent at T0 + 1
    assert core.queue_stats("dlq", now=T0 + 12.999).oldest_sent_at == T0 + 3
    assert core.queue_stats("dlq", now=T0 + 13).oldest_sent_at == T0 + 1  # moved in, older than what was there
    assert core.queue_stats("q", now=T0 + 13).oldest_sent_at is None
    core.purge("dlq", now=T0 + 14)
    assert core.queue_stats("dlq", now=T0 + 14).oldest_sent_at is None
    assert second
