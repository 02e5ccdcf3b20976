"""The pure core with explicit `now`: every rule at both sides of its deadline, and every illegal call."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.helpers import make_core, text
from wonderq.core import MAX_VISIBILITY_TIMEOUT, Core, split_receipt
from wonderq.errors import (
    BatchTooLarge,
    EmptyMessage,
    InvalidParameter,
    InvalidQueueName,
    InvalidReceipt,
    LeaseLost,
    MessageNotFound,
    MessageTooLarge,
    QueueNotFound,
    WonderQError,
)
from wonderq.model import Lease, Outgoing, Payload, QueueStats, State

T0 = 1_000.0  # epoch seconds; any value works since the core never reads a clock


def counts(core: Core, queue: str = "q", now: float = T0) -> tuple[int, int]:
    stats = core.queue_stats(queue, now=now)
    return stats.ready, stats.leased


def bodies(core: Core, queue: str = "q", *, now: float, max_messages: int = 10) -> list[bytes]:
    leases = core.receive(queue, max_messages=max_messages, visibility_timeout=None, consumer=None, now=now)
    return [lease.payload.data for lease in leases]


def receive_one(core: Core, queue: str = "q", *, now: float, visibility_timeout: float | None = None) -> Lease:
    (lease,) = core.receive(queue, max_messages=1, visibility_timeout=visibility_timeout, consumer=None, now=now)
    return lease


# ---- queues ---------------------------------------------------------------------------------------------


def test_put_queue_creates_then_updates() -> None:
    core = make_core()
    stats, created = core.put_queue("q", visibility_timeout=None, now=T0)
    assert created
    assert stats.attributes.visibility_timeout == 30.0  # the limits' default
    assert stats.created_at == T0
    stats, created = core.put_queue("q", visibility_timeout=5, now=T0 + 1)
    assert not created
    assert stats.attributes.visibility_timeout == 5
    assert stats.created_at == T0
    stats, created = core.put_queue("q", visibility_timeout=None, now=T0 + 2)
    assert stats.attributes.visibility_timeout == 5  # an update without the attribute keeps it


@pytest.mark.parametrize("name", ["a", "A-z_09", "x" * 80])
def test_valid_queue_names(name: str) -> None:
    make_core().put_queue(name, visibility_timeout=None, now=T0)


@pytest.mark.parametrize("name", ["", "x" * 81, "a b", "a/b", "a.b", "ü", "a\n"])
def test_invalid_queue_names_are_rejected_everywhere(name: str) -> None:
    core = make_core()
    with pytest.raises(InvalidQueueName):
        core.put_queue(name, visibility_timeout=None, now=T0)
    with pytest.raises(InvalidQueueName):
        core.send(name, text("x"), now=T0)
    with pytest.raises(InvalidQueueName):
        core.receive(name, max_messages=1, visibility_timeout=None, consumer=None, now=T0)
    assert core.list_queues(now=T0) == []


@pytest.mark.parametrize("seconds", [0, -1, MAX_VISIBILITY_TIMEOUT + 0.001, float("nan"), float("inf")])
def test_put_queue_rejects_bad_visibility_timeouts(seconds: float) -> None:
    core = make_core()
    with pytest.raises(InvalidParameter):
        core.put_queue("q", visibility_timeout=seconds, now=T0)
    assert core.list_queues(now=T0) == []


def test_unknown_queue_is_not_found() -> None:
    core = make_core()
    for call in (
        lambda: core.queue_stats("nope", now=T0),
        lambda: core.delete_queue("nope", now=T0),
        lambda: core.purge("nope", now=T0),
        lambda: core.receive("nope", max_messages=1, visibility_timeout=None, consumer=None, now=T0),
        lambda: core.ack("nope", "id", "id.t", now=T0),
        lambda: core.ack_batch("nope", ["id.t"], now=T0),
        lambda: core.change_visibility("nope", "id", "id.t", 1, now=T0),
        lambda: core.peek("nope", state=None, limit=1, after=None, now=T0),
        lambda: core.has_ready("nope", now=T0),
    ):
        with pytest.raises(QueueNotFound):
            call()


def test_list_queues_is_sorted_with_counts() -> None:
    core = make_core()
    core.send("b", text("1"), now=T0)
    core.send("a", text("1"), now=T0)
    core.send("a", text("2"), now=T0)
    receive_one(core, "a", now=T0)
    listed = core.list_queues(now=T0)
    assert [(s.name, s.ready, s.leased, s.sent) for s in listed] == [("a", 1, 1, 2), ("b", 1, 0, 1)]


def test_delete_queue_drops_messages_and_leases() -> None:
    core = make_core()
    core.send("q", text("1"), now=T0)
    lease = receive_one(core, now=T0)
    core.delete_queue("q", now=T0)
    with pytest.raises(QueueNotFound):
        core.ack("q", lease.id, lease.receipt, now=T0)
    core.put_queue("q", visibility_timeout=None, now=T0)
    assert counts(core) == (0, 0)


def test_purge_removes_ready_and_leased_and_kills_receipts() -> None:
    core = make_core()
    core.send_batch("q", [text("1"), text("2"), text("3")], now=T0)
    lease = receive_one(core, now=T0)
    assert core.purge("q", now=T0) == 3
    assert counts(core) == (0, 0)
    with pytest.raises(MessageNotFound):
        core.ack("q", lease.id, lease.receipt, now=T0)
    assert core.expire(now=T0 + 10_000) == 0  # the purged lease's deadline entry is stale
    assert bodies(core, now=T0 + 10_000) == []
    assert core.purge("q", now=T0) == 0


# ---- sending --------------------------------------------------------------------------------------------


def test_send_creates_the_queue_with_defaults() -> None:
    core = make_core(default_visibility_timeout=7)
    message_id = core.send("new", text("hello"), now=T0)
    stats = core.queue_stats("new", now=T0)
    assert (stats.ready, stats.sent, stats.attributes.visibility_timeout) == (1, 1, 7)
    lease = receive_one(core, "new", now=T0)
    assert lease.id == message_id
    assert lease.payload == text("hello")
    assert lease.sent_at == T0


def test_ids_increase_as_strings_in_send_order_even_within_one_instant() -> None:
    core = make_core()
    ids = core.send_batch("q", [text(str(i)) for i in range(5)], now=T0)
    ids += [core.send("q", text("x"), now=T0) for _ in range(5)]
    ids += [core.send("other", text("x"), now=T0 - 50)]  # a clock step back still yields a larger id
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_empty_body_is_rejected_before_anything_is_stored() -> None:
    core = make_core()
    with pytest.raises(EmptyMessage):
        core.send("q", Payload(b"", "text/plain"), now=T0)
    assert core.list_queues(now=T0) == []


def test_message_size_limit_at_both_sides() -> None:
    core = make_core(max_message_bytes=10)
    core.send("q", Payload(b"x" * 10, "application/octet-stream"), now=T0)
    with pytest.raises(MessageTooLarge):
        core.send("q", Payload(b"x" * 11, "application/octet-stream"), now=T0)
    assert counts(core) == (1, 0)


def test_batch_is_all_or_nothing() -> None:
    core = make_core(max_batch=3)
    core.send("q", text("keep"), now=T0)
    for bad, error in (
        ([text("a"), Payload(b"", "text/plain"), text("c")], EmptyMessage),
        ([text("a"), Payload(b"x" * 2000, "text/plain")], MessageTooLarge),
        ([text("a")] * 4, BatchTooLarge),
        ([], InvalidParameter),
    ):
        with pytest.raises(error):
            core.send_batch("q", bad, now=T0)
    assert counts(core) == (1, 0)
    assert core.queue_stats("q", now=T0).sent == 1
    with pytest.raises(EmptyMessage, match="message 1"):
        core.send_batch("q", [text("a"), Payload(b"", "text/plain")], now=T0)
    assert len(core.send_batch("q", [text("a")] * 3, now=T0)) == 3


# ---- receiving ------------------------------------------------------------------------------------------


def test_receive_leases_in_send_order_and_hides_leased_messages() -> None:
    core = make_core()
    core.send_batch("q", [text(str(i)) for i in range(5)], now=T0)
    assert bodies(core, now=T0, max_messages=2) == [b"0", b"1"]
    assert bodies(core, now=T0, max_messages=10) == [b"2", b"3", b"4"]
    assert bodies(core, now=T0) == []
    assert counts(core) == (0, 5)


def test_receive_records_lease_details() -> None:
    core = make_core()
    core.send("q", text("x"), now=T0)
    (lease,) = core.receive("q", max_messages=1, visibility_timeout=12.5, consumer="worker-1", now=T0 + 1)
    assert lease.lease_expires_at == T0 + 1 + 12.5
    assert lease.consumer == "worker-1"
    assert lease.receive_count == 1
    assert split_receipt(lease.receipt) == lease.id
    (view,) = core.peek("q", state=State.LEASED, limit=10, after=None, now=T0 + 1).messages
    assert (view.consumer, view.lease_expires_at) == ("worker-1", T0 + 13.5)


def test_receive_uses_the_queue_visibility_timeout_by_default() -> None:
    core = make_core()
    core.put_queue("q", visibility_timeout=4, now=T0)
    core.send("q", text("x"), now=T0)
    assert receive_one(core, now=T0).lease_expires_at == T0 + 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_messages": 0}, "max"),
        ({"max_messages": 11}, "max"),
        ({"visibility_timeout": 0}, "visibility_timeout"),
        ({"visibility_timeout": MAX_VISIBILITY_TIMEOUT + 1}, "visibility_timeout"),
        ({"consumer": "c" * 201}, "consumer"),
    ],
)
def test_receive_rejects_bad_parameters_and_leases_nothing(kwargs: dict[str, object], message: str) -> None:
    core = make_core()
    core.send("q", text("x"), now=T0)
    arguments: dict[str, object] = {"max_messages": 1, "visibility_timeout": None, "consumer": None, **kwargs}
    with pytest.raises(InvalidParameter, match=message):
        core.receive("q", now=T0, **arguments)  # type: ignore[arg-type]
    assert counts(core) == (1, 0)


def test_receive_limits_are_inclusive() -> None:
    core = make_core()
    core.send_batch("q", [text("x")] * 10, now=T0)
    leases = core.receive("q", max_messages=10, visibility_timeout=MAX_VISIBILITY_TIMEOUT, consumer="c" * 200, now=T0)
    assert len(leases) == 10


# ---- the lease deadline ---------------------------------------------------------------------------------


def test_lease_is_live_until_just_before_its_deadline() -> None:
    core = make_core()
    core.send("q", text("x"), now=T0)
    lease = receive_one(core, now=T0, visibility_timeout=10)
    assert bodies(core, now=T0 + 9.999) == []  # still invisible
    core.ack("q", lease.id, lease.receipt, now=T0 + 9.999)
    assert counts(core, now=T0 + 100) == (0, 0)
    assert core.queue_stats("q", now=T0 + 100).acked == 1


def test_at_the_deadline_the_lease_is_gone_even_without_a_tick() -> None:
    core = make_core()
    core.send("q", text("x"), now=T0)
    lease = receive_one(core, now=T0, visibility_timeout=10)
    with pytest.raises(LeaseLost):
        core.ack("q", lease.id, lease.receipt, now=T0 + 10)
    assert counts(core, now=T0 + 10) == (1, 0)  # the failed ack left it ready, not deleted
    again = receive_one(core, now=T0 + 10)
    assert (again.id, again.payload, again.receive_count) == (lease.id, lease.payload, 2)
    assert again.receipt != lease.receipt


def test_expire_releases_exactly_the_due_leases() -> None:
    core = make_core()
    core.send_batch("q", [text("a"), text("b")], now=T0)
    receive_one(core, now=T0, visibility_timeout=5)
    receive_one(core, now=T0, visibility_timeout=8)
    assert core.expire(now=T0 + 4.999) == 0
    assert core.expire(now=T0 + 5) == 1
    assert core.expire(now=T0 + 7.999) == 0
    assert core.expire(now=T0 + 8) == 1
    assert core.queue_stats("q", now=T0 + 8).expired == 2
    assert counts(core, now=T0 + 8) == (2, 0)


def test_expired_messages_are_delivered_again_before_newer_ones_in_their_order() -> None:
    core = make_core()
    core.send_batch("q", [text("1"), text("2"), text("3")], now=T0)
    assert bodies(core, now=T0, max_messages=2) == [b"1", b"2"]
    core.send("q", text("4"), now=T0 + 1)
    assert bodies(core, now=T0 + 100) == [b"1", b"2", b"3", b"4"]


def test_a_late_ack_cannot_delete_a_message_redelivered_to_someone_else() -> None:
    core = make_core()
    core.send("q", text("x"), now=T0)
    first = receive_one(core, now=T0, visibility_timeout=5)
    second = receive_one(core, now=T0 + 6)
    with pytest.raises(LeaseLost):
        core.ack("q", first.id, first.receipt, now=T0 + 6)
    with pytest.raises(LeaseLost):
        core.change_visibility("q", first.id, first.receipt, 100, now=T0 + 6)
    assert counts(core, now=T0 + 6) == (0, 1)
    core.ack("q", second.id, second.receipt, now=T0 + 7)
    assert counts(core, now=T0 + 7) == (0, 0)


def test_expiring_one_lease_leaves_other_leases_alone() -> None:
    core = make_core()
    core.send_batch("q", [text("a"), text("b")], now=T0)
    short = receive_one(core, now=T0, visibility_timeout=1)
    long = receive_one(core, now=T0, visibility_timeout=100)
    core.expire(now=T0 + 2)
    assert bodies(core, now=T0 + 2) == [b"a"]
    core.ack("q", long.id, long.receipt, now=T0 + 3)
    assert short.id != long.id


# ---- acks -----------------------------------------------------------------------------------------------


def test_acked_message_never_comes_back() -> None:
    core = make_core()
    message_id = core.send("q", text("x"), now=T0)
    lease = receive_one(core, now=T0)
    core.ack("q", message_id, lease.receipt, now=T0)
    with pytest.raises(MessageNotFound):
        core.ack("q", message_id, lease.receipt, now=T0)
    assert core.expire(now=T0 + 10_000) == 0
    assert bodies(core, now=T0 + 10_000) == []


def test_ack_of_a_never_delivered_message_changes_nothing() -> None:
    core = make_core()
    message_id = core.send("q", text("x"), now=T0)
    with pytest.raises(LeaseLost):
        core.ack("q", message_id, f"{message_id}.forged", now=T0)
    with pytest.raises(LeaseLost):
        core.ack("q", message_id, None, now=T0)
    assert counts(core) == (1, 0)
    assert receive_one(core, now=T0).receive_count == 1


def test_ack_with_a_wrong_receipt_or_unknown_id_changes_nothing() -> None:
    core = make_core()
    core.send_batch("q", [text("a"), text("b")], now=T0)
    a = receive_one(core, now=T0)
    b = receive_one(core, now=T0)
    with pytest.raises(LeaseLost):
        core.ack("q", a.id, b.receipt, now=T0)
    with pytest.raises(MessageNotFound):
        core.ack("q", "0000000000000000", a.receipt, now=T0)
    assert counts(core) == (0, 2)
    core.ack("q", a.id, a.receipt, now=T0)
    core.ack("q", b.id, b.receipt, now=T0)


def test_classic_ack_accepts_any_live_lease_of_the_id() -> None:
    core = make_core()
    message_id = core.send("q", text("x"), now=T0)
    receive_one(core, now=T0, visibility_timeout=5)
    with pytest.raises(LeaseLost):
        core.ack("q", message_id, None, now=T0 + 5)  # expired: no live lease
    receive_one(core, now=T0 + 5)
    core.ack("q", message_id, None, now=T0 + 6)
    assert counts(core, now=T0 + 6) == (0, 0)


def test_ack_batch_reports_each_receipt() -> None:
    core = make_core()
    core.send_batch("q", [text("a"), text("b"), text("c")], now=T0)
    a, b, c = core.receive("q", max_messages=3, visibility_timeout=None, consumer=None, now=T0)
    report = core.ack_batch("q", [a.receipt, "garbage", b.receipt, a.receipt, "ffff.t"], now=T0)
    assert report.acked == (a.receipt, b.receipt)
    assert [(f.receipt, f.code) for f in report.failed] == [
        ("garbage", InvalidReceipt.code),
        (a.receipt, MessageNotFound.code),
        ("ffff.t", MessageNotFound.code),
    ]
    assert counts(core) == (0, 1)
    with pytest.raises(BatchTooLarge):
        core.ack_batch("q", [c.receipt] * 11, now=T0)
    with pytest.raises(InvalidParameter):
        core.ack_batch("q", [], now=T0)
    assert counts(core) == (0, 1)


# ---- visibility changes ---------------------------------------------------------------------------------


def test_heartbeat_moves_the_deadline_from_now() -> None:
    core = make_core()
    core.send("q", text("x"), now=T0)
    lease = receive_one(core, now=T0, visibility_timeout=10)
    assert core.change_visibility("q", lease.id, lease.receipt, 30, now=T0 + 9) == T0 + 39
    assert core.expire(now=T0 + 38.999) == 0  # the original deadline's heap entry is stale
    assert bodies(core, now=T0 + 38.999) == []
    core.ack("q", lease.id, lease.receipt, now=T0 + 38.999)
    assert counts(core, now=T0 + 40) == (0, 0)


def test_heartbeat_can_shorten_a_lease() -> None:
    core = make_core()
    core.send("q", text("x"), now=T0)
    lease = receive_one(core, now=T0, visibility_timeout=100)
    core.change_visibility("q", lease.id, lease.receipt, 1, now=T0)
    assert bodies(core, now=T0 + 0.999) == []
    assert bodies(core, now=T0 + 1) == [b"x"]


def test_extended_lease_expires_at_its_new_deadline() -> None:
    core = make_core()
    core.send("q", text("x"), now=T0)
    lease = receive_one(core, now=T0, visibility_timeout=10)
    core.change_visibility("q", lease.id, lease.receipt, 20, now=T0 + 5)
    with pytest.raises(LeaseLost):
        core.change_visibility("q", lease.id, lease.receipt, 20, now=T0 + 25)
    assert counts(core, now=T0 + 25) == (1, 0)


def test_zero_visibility_releases_at_once_and_kills_the_receipt() -> None:
    core = make_core()
    core.send_batch("q", [text("a"), text("b")], now=T0)
    a = receive_one(core, now=T0)
    assert core.change_visibility("q", a.id, a.receipt, 0, now=T0) is None
    stats = core.queue_stats("q", now=T0)
    assert (stats.ready, stats.leased, stats.released) == (2, 0, 1)
    with pytest.raises(LeaseLost):
        core.ack("q", a.id, a.receipt, now=T0)
    again = receive_one(core, now=T0)
    assert (again.id, again.receive_count) == (a.id, 2)  # first in line again


@pytest.mark.parametrize("seconds", [-1, MAX_VISIBILITY_TIMEOUT + 1, float("nan")])
def test_change_visibility_rejects_bad_timeouts(seconds: float) -> None:
    core = make_core()
    core.send("q", text("x"), now=T0)
    lease = receive_one(core, now=T0, visibility_timeout=10)
    with pytest.raises(InvalidParameter):
        core.change_visibility("q", lease.id, lease.receipt, seconds, now=T0)
    assert receive_one(core, now=T0 + 10).receive_count == 2  # the original deadline still held


# ---- undelivered leases ---------------------------------------------------------------------------------


def test_return_undelivered_puts_leases_back_as_if_never_handed_out() -> None:
    core = make_core()
    core.send_batch("q", [text("a"), text("b")], now=T0)
    leases = core.receive("q", max_messages=2, visibility_timeout=None, consumer=None, now=T0)
    core.return_undelivered("q", leases, now=T0)
    stats = core.queue_stats("q", now=T0)
    assert (stats.ready, stats.leased, stats.received) == (2, 0, 0)
    again = core.receive("q", max_messages=2, visibility_timeout=None, consumer=None, now=T0)
    assert [(lease.id, lease.receive_count) for lease in again] == [(lease.id, 1) for lease in leases]


def test_return_undelivered_ignores_leases_that_moved_on() -> None:
    core = make_core()
    core.send("q", text("a"), now=T0)
    old = receive_one(core, now=T0, visibility_timeout=1)
    new = receive_one(core, now=T0 + 2)
    core.return_undelivered("q", [old], now=T0 + 2)
    core.return_undelivered("gone", [old], now=T0 + 2)
    assert counts(core, now=T0 + 2) == (0, 1)
    core.ack("q", new.id, new.receipt, now=T0 + 2)


# ---- peek -----------------------------------------------------------------------------------------------


def test_peek_pages_by_state_without_touching_leases() -> None:
    core = make_core()
    ids = core.send_batch("q", [text(str(i)) for i in range(5)], now=T0)
    receive_one(core, now=T0)  # ids[0] leased
    page = core.peek("q", state=None, limit=2, after=None, now=T0)
    assert [v.id for v in page.messages] == ids[:2]
    assert page.next_after == ids[1]
    page = core.peek("q", state=None, limit=3, after=page.next_after, now=T0)
    assert [v.id for v in page.messages] == ids[2:]
    assert page.next_after is None
    ready = core.peek("q", state=State.READY, limit=10, after=None, now=T0)
    assert [v.id for v in ready.messages] == ids[1:]
    leased = core.peek("q", state=State.LEASED, limit=10, after=None, now=T0).messages
    assert [(v.id, v.state, v.receive_count) for v in leased] == [(ids[0], State.LEASED, 1)]
    assert counts(core) == (4, 1)
    with pytest.raises(InvalidParameter):
        core.peek("q", state=None, limit=0, after=None, now=T0)


def test_peek_shows_an_expired_lease_as_ready() -> None:
    core = make_core()
    core.send("q", text("x"), now=T0)
    receive_one(core, now=T0, visibility_timeout=1)
    (view,) = core.peek("q", state=None, limit=10, after=None, now=T0 + 1).messages
    assert (view.state, view.lease_expires_at, view.consumer) == (State.READY, None, None)


def test_split_receipt() -> None:
    assert split_receipt("abc.t1") == "abc"
    for bad in ("", "abc", "abc.", ".t1"):
        with pytest.raises(InvalidReceipt):
            split_receipt(bad)


def test_every_error_leaves_stats_unchanged() -> None:
    """A sweep over illegal calls: none of them may change any count."""
    core = make_core()
    core.send_batch("q", [text("a"), text("b")], now=T0)
    lease = receive_one(core, now=T0)
    before: QueueStats = core.queue_stats("q", now=T0)
    illegal: list[Callable[[], object]] = [
        lambda: core.ack("q", lease.id, "x.y", now=T0),
        lambda: core.ack("q", "nope", lease.receipt, now=T0),
        lambda: core.change_visibility("q", lease.id, "x.y", 5, now=T0),
        lambda: core.send("q", Payload(b"", "text/plain"), now=T0),
        lambda: core.receive("q", max_messages=0, visibility_timeout=None, consumer=None, now=T0),
        lambda: core.put_queue("q", visibility_timeout=-1, now=T0),
    ]
    for call in illegal:
        with pytest.raises(WonderQError):
            call()
    assert core.queue_stats("q", now=T0) == before


# ---- first delivery time and the in-flight limit ----------------------------------------------------------


def test_first_received_at_is_the_first_delivery_and_survives_redelivery() -> None:
    core = make_core()
    core.send("q", text("x"), now=T0)
    assert core.peek("q", state=None, limit=1, after=None, now=T0).messages[0].first_received_at is None
    first = receive_one(core, now=T0 + 2, visibility_timeout=5)
    again = receive_one(core, now=T0 + 7)
    assert first.first_received_at == again.first_received_at == T0 + 2


def test_an_undelivered_first_lease_forgets_its_first_delivery() -> None:
    core = make_core()
    core.send("q", text("x"), now=T0)
    lease = receive_one(core, now=T0 + 1)
    core.return_undelivered("q", [lease], now=T0 + 1)
    assert core.peek("q", state=None, limit=1, after=None, now=T0).messages[0].first_received_at is None
    assert receive_one(core, now=T0 + 3).first_received_at == T0 + 3


def test_max_in_flight_caps_leases_at_both_sides() -> None:
    core = make_core()
    core.put_queue("q", visibility_timeout=10, max_in_flight=3, now=T0)
    core.send_batch("q", [text(str(i)) for i in range(6)], now=T0)
    assert len(core.receive("q", max_messages=2, visibility_timeout=None, consumer=None, now=T0)) == 2
    (third,) = core.receive("q", max_messages=5, visibility_timeout=None, consumer=None, now=T0)  # 1 left
    assert core.receive("q", max_messages=5, visibility_timeout=None, consumer=None, now=T0) == []
    assert not core.has_ready("q", now=T0)
    core.ack("q", third.id, third.receipt, now=T0)  # one slot frees up
    assert core.has_ready("q", now=T0)
    assert len(core.receive("q", max_messages=5, visibility_timeout=None, consumer=None, now=T0)) == 1
    assert len(core.receive("q", max_messages=5, visibility_timeout=None, consumer=None, now=T0 + 10)) == 3  # expired


def test_max_in_flight_zero_means_no_limit_and_none_keeps_it() -> None:
    core = make_core()
    stats, _ = core.put_queue("q", visibility_timeout=None, max_in_flight=1, now=T0)
    assert stats.attributes.max_in_flight == 1
    stats, _ = core.put_queue("q", visibility_timeout=7, now=T0)
    assert (stats.attributes.visibility_timeout, stats.attributes.max_in_flight) == (7, 1)
    stats, _ = core.put_queue("q", visibility_timeout=None, max_in_flight=0, now=T0)
    assert stats.attributes.max_in_flight == 0
    core.send_batch("q", [text("x")] * 10, now=T0)
    assert len(core.receive("q", max_messages=10, visibility_timeout=None, consumer=None, now=T0)) == 10


@pytest.mark.parametrize("value", [-1, 1_000_001])
def test_max_in_flight_out_of_range_changes_nothing(value: int) -> None:
    core = make_core()
    core.put_queue("q", visibility_timeout=None, max_in_flight=2, now=T0)
    with pytest.raises(InvalidParameter, match="max_in_flight"):
        core.put_queue("q", visibility_timeout=5, max_in_flight=value, now=T0)
    attributes = core.queue_stats("q", now=T0).attributes
    assert (attributes.visibility_timeout, attributes.max_in_flight) == (30.0, 2)


# ---- delays and priorities ---------------------------------------------------------------------------------


def test_a_delayed_message_is_invisible_until_its_delay_has_passed() -> None:
    core = make_core()
    message_id = core.send("q", Outgoing(text("x"), delay=5), now=T0)
    assert bodies(core, now=T0 + 4.999) == []
    assert not core.has_ready("q", now=T0 + 4.999)
    (view,) = core.peek("q", state=State.DELAYED, limit=5, after=None, now=T0 + 4.999).messages
    assert (view.id, view.visible_at) == (message_id, T0 + 5)
    stats = core.queue_stats("q", now=T0 + 4.999)
    assert (stats.ready, stats.delayed) == (0, 1)
    assert bodies(core, now=T0 + 5) == [b"x"]
    assert core.queue_stats("q", now=T0 + 5).delayed == 0


def test_the_queue_delay_applies_unless_the_send_says_otherwise() -> None:
    core = make_core()
    stats, _ = core.put_queue("q", visibility_timeout=None, delay=10, now=T0)
    assert stats.attributes.delay == 10
    core.send_batch("q", [text("default"), Outgoing(text("now"), delay=0), Outgoing(text("later"), delay=20)], now=T0)
    assert bodies(core, now=T0 + 9.999) == [b"now"]
    assert bodies(core, now=T0 + 10) == [b"default"]
    assert bodies(core, now=T0 + 19.999) == []
    assert bodies(core, now=T0 + 20) == [b"later"]


def test_expire_makes_delayed_messages_ready_for_waiting_receivers() -> None:
    core = make_core()
    core.send("q", Outgoing(text("x"), delay=3), now=T0)
    assert core.expire(now=T0 + 3) == 0  # no lease ended, but the delay did
    assert core.peek("q", state=State.READY, limit=5, after=None, now=T0 + 3).messages[0].visible_at is None


def test_lower_priority_goes_first_then_send_order() -> None:
    core = make_core()
    core.send_batch(
        "q",
        [
            Outgoing(text("b0"), priority=5),
            Outgoing(text("a0"), priority=-1),
            text("c0"),
            Outgoing(text("a1"), priority=-1),
        ],
        now=T0,
    )
    assert bodies(core, now=T0, max_messages=10) == [b"a0", b"a1", b"c0", b"b0"]


def test_a_redelivered_message_keeps_its_priority() -> None:
    core = make_core()
    core.send_batch("q", [Outgoing(text("low"), priority=5), text("normal")], now=T0)
    normal, low = core.receive("q", max_messages=2, visibility_timeout=5, consumer=None, now=T0)
    assert (low.payload.data, low.priority, normal.priority) == (b"low", 5, 0)
    core.ack("q", normal.id, normal.receipt, now=T0)
    core.send("q", text("newer"), now=T0 + 1)
    assert bodies(core, now=T0 + 5, max_messages=10) == [b"newer", b"low"]  # its priority, not its age, counts


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        (Outgoing(text("x"), delay=-0.1), "delay"),
        (Outgoing(text("x"), delay=900.001), "delay"),
        (Outgoing(text("x"), delay=float("nan")), "delay"),
        (Outgoing(text("x"), priority=2**31), "priority"),
        (Outgoing(text("x"), priority=-(2**31) - 1), "priority"),
    ],
)
def test_bad_delays_and_priorities_fail_the_whole_batch(entry: Outgoing, match: str) -> None:
    core = make_core()
    core.send("q", text("keep"), now=T0)
    with pytest.raises(InvalidParameter, match=f"message 1: {match}"):
        core.send_batch("q", [text("ok"), entry], now=T0)
    assert core.queue_stats("q", now=T0).sent == 1


def test_delay_and_priority_limits_are_inclusive() -> None:
    core = make_core()
    core.send_batch(
        "q", [Outgoing(text("x"), delay=900, priority=2**31 - 1), Outgoing(text("y"), priority=-(2**31))], now=T0
    )
    assert bodies(core, now=T0 + 900, max_messages=5) == [b"y", b"x"]
    with pytest.raises(InvalidParameter, match="delay"):
        core.put_queue("q", visibility_timeout=None, delay=901, now=T0)


def test_purge_removes_delayed_messages_too() -> None:
    core = make_core()
    core.send("q", Outgoing(text("x"), delay=60), now=T0)
    assert core.purge("q", now=T0) == 1
    assert core.queue_stats("q", now=T0 + 60).delayed == 0
    assert bodies(core, now=T0 + 60) == []


# ---- deduplication -----------------------------------------------------------------------------------------


def test_a_repeated_dedup_id_returns_the_first_id_within_the_window() -> None:
    core = make_core()
    first = core.send("q", Outgoing(text("x"), dedup_id="order-7"), now=T0)
    assert core.send("q", Outgoing(text("retry"), dedup_id="order-7"), now=T0 + 299.999) == first
    stats = core.queue_stats("q", now=T0 + 299.999)
    assert (stats.sent, stats.ready) == (1, 1)
    second = core.send("q", Outgoing(text("again"), dedup_id="order-7"), now=T0 + 300)  # the window has passed
    assert second != first
    assert core.queue_stats("q", now=T0 + 300).sent == 2


def test_dedup_ids_are_per_queue_and_hold_even_after_the_message_is_gone() -> None:
    core = make_core()
    first = core.send("q", Outgoing(text("x"), dedup_id="k"), now=T0)
    other = core.send("other", Outgoing(text("x"), dedup_id="k"), now=T0)
    assert other != first
    lease = receive_one(core, now=T0)
    core.ack("q", lease.id, lease.receipt, now=T0)
    assert core.send("q", Outgoing(text("x"), dedup_id="k"), now=T0 + 1) == first
    assert core.queue_stats("q", now=T0 + 1).ready == 0


def test_repeats_within_one_batch_are_stored_once() -> None:
    core = make_core()
    ids = core.send_batch(
        "q", [Outgoing(text("a"), dedup_id="1"), Outgoing(text("a again"), dedup_id="1"), text("b")], now=T0
    )
    assert ids[0] == ids[1] != ids[2]
    assert bodies(core, now=T0, max_messages=5) == [b"a", b"b"]


@pytest.mark.parametrize("dedup_id", ["", "x" * 129, "has space", "tab\t", "é"])
def test_bad_dedup_ids_fail_the_whole_batch(dedup_id: str) -> None:
    core = make_core()
    with pytest.raises(InvalidParameter, match="message 1: a dedup id"):
        core.send_batch("q", [text("ok"), Outgoing(text("x"), dedup_id=dedup_id)], now=T0)
    assert core.list_queues(now=T0) == []
    core.send("q", Outgoing(text("x"), dedup_id="~" * 128), now=T0)  # the longest allowed


def test_deleting_a_queue_forgets_its_dedup_ids() -> None:
    core = make_core()
    first = core.send("q", Outgoing(text("x"), dedup_id="k"), now=T0)
    core.delete_queue("q", now=T0)
    assert core.send("q", Outgoing(text("x"), dedup_id="k"), now=T0) != first


def test_a_queue_message_size_limit_at_both_sides() -> None:
    core = make_core(max_message_bytes=100)
    core.put_queue("q", visibility_timeout=None, max_message_bytes=10, now=T0)
    core.send("q", Payload(b"x" * 10, "application/octet-stream"), now=T0)
    with pytest.raises(MessageTooLarge, match="the limit is 10"):
        core.send("q", Payload(b"x" * 11, "application/octet-stream"), now=T0)
    core.send("other", Payload(b"x" * 100, "application/octet-stream"), now=T0)  # a new queue: the server's limit
    with pytest.raises(InvalidParameter, match="max_message_bytes"):
        core.put_queue("q", visibility_timeout=None, max_message_bytes=101, now=T0)
    assert core.queue_stats("q", now=T0).attributes.max_message_bytes == 10


def test_a_plain_ready_message_keeps_no_rare_fields_and_the_shared_defaults_stay_unwritten() -> None:
    from wonderq.core import _DEFAULTS, _Rare

    core = make_core()
    plain, fancy = core.send_batch("q", [text("a"), Outgoing(text("b"), priority=3, dedup_id="d")], now=T0)
    messages = core._queues["q"].messages
    assert messages[plain]._rare is _DEFAULTS  # nothing of its own beyond the slots of every message
    assert messages[fancy]._rare is not _DEFAULTS
    messages[plain].receipt = None  # a default written: still nothing of its own
    assert messages[plain]._rare is _DEFAULTS
    core.receive("q", max_messages=2, visibility_timeout=5.0, consumer="c", now=T0)
    core.expire(now=T0 + 5)
    (view, *_) = core.peek("q", state=None, limit=10, after=None, now=T0 + 5).messages
    assert (view.id, view.receive_count, view.consumer, view.payload) == (plain, 1, None, text("a"))
    pristine = _Rare()
    assert all(getattr(_DEFAULTS, name) == getattr(pristine, name) for name in _Rare.__slots__)
