"""The verdicts of scripts/soak (scripts/soak_checks.py) on hand-made histories: a clean one passes every check,
and each way of being wrong (a message lost, one acked twice, an overlapping lease, an accepted late ack, a 5xx,
a garbage request let through, growing memory, a dead server) fails the check that is meant to catch it, so a
broken check cannot pass silently. The soak itself runs for minutes and is not part of the suite."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from soak_checks import (  # scripts/ is not a package: its modules import one another by name
    Check,
    Confirmed,
    Delivery,
    Failure,
    History,
    MemorySample,
    Probe,
    Settle,
    add_rows,
    judge,
    lease_end,
    memory_verdict,
)

T0 = 1_800_000_000.0  # epoch seconds
VT = 5.0  # seconds of visibility timeout


def delivery(message_id: str, count: int, at: float, client: str = "consumer-1", vt: float = VT) -> Delivery:
    """A delivery whose lease began at `at` (epoch seconds)."""
    return Delivery(
        message_id, f"{message_id}.r{count}{client}", count, at + vt, vt, at + 0.01, uid(message_id), client, "q"
    )


def uid(message_id: str) -> str:
    return f"u-{message_id}"


def ack(d: Delivery, at: float, outcome: str = "ok", *, late: bool = False) -> Settle:
    return Settle(d.receipt, d.id, "ack", at, at + 0.002, outcome, late=late)


def clean() -> History:
    """Three messages: one acked at once, one whose lease ran out (redelivered, then acked; its late ack was
    refused), one released by a nack and left in the queue; garbage refused; memory flat; the server alive."""
    history = History(duration=100.0)
    for number, message_id in enumerate(("a", "b", "c")):
        history.attempted[uid(message_id)] = "q"
        history.confirmed.append(Confirmed(message_id, uid(message_id), "q", T0 + number))
    a1 = delivery("a", 1, T0 + 1)
    b1 = delivery("b", 1, T0 + 2, "late-acker-1", vt=1.0)
    b2 = delivery("b", 2, T0 + 3.0, "consumer-2")  # b1's lease ended at T0 + 3.0
    c1 = delivery("c", 1, T0 + 4)
    history.deliveries += [a1, b1, b2, c1]
    history.settles += [
        ack(a1, T0 + 1.5),
        ack(b1, T0 + 3.2, "lease_lost", late=True),
        ack(b2, T0 + 3.5),
        Settle(c1.receipt, "c", "nack", T0 + 4.5, T0 + 4.51, "ok"),
    ]
    history.stored["c"] = uid("c")
    history.probes += [Probe("invalid JSON", True, 400, 7), Probe("random bytes", False, None, 3)]
    history.probes.append(Probe("random bytes", False, 400, 2))
    history.memory = [MemorySample(float(at), 80_000 + (at % 3) * 100) for at in range(0, 101, 2)]
    history.server_5xx = 0
    history.exit_code = 0
    return history


def verdicts(history: History) -> dict[str, Check]:
    return {check.name: check for check in judge(history)}


def failed(history: History) -> set[str]:
    return {name for name, check in verdicts(history).items() if not check.passed}


def test_a_clean_history_passes_every_check() -> None:
    checks = verdicts(clean())
    assert [name for name, check in checks.items() if not check.passed] == []
    assert checks["no_loss"].figures == {"confirmed": 3, "acked": 2, "still_stored": 1, "ack_unanswered": 0}
    assert checks["late_acks_refused"].figures["late_acks"] == 1
    assert checks["exclusive_leases"].figures["redeliveries"] == 1


def test_a_lost_message_fails_no_loss() -> None:
    history = clean()
    del history.stored["c"]
    assert failed(history) == {"no_loss"}
    assert "lost: c" in verdicts(history)["no_loss"].examples[0]


def test_a_message_whose_ack_got_no_reply_is_not_called_lost() -> None:
    history = clean()
    c1 = history.deliveries[3]
    del history.stored["c"]
    history.settles.append(ack(c1, T0 + 4.6, "unknown"))
    history.failures.append(Failure("consumer", "ack", None, "timeout"))
    assert failed(history) == {"well_behaved_served"}  # the unanswered ack fails there, not as a loss
    assert verdicts(history)["no_loss"].figures["ack_unanswered"] == 1


def test_a_message_acked_twice_fails() -> None:
    history = clean()
    b1 = history.deliveries[1]
    history.settles[1] = ack(b1, T0 + 2.5)  # acked in time by the first consumer, and by the second too
    assert "acked_once" in failed(history)


def test_a_message_acked_and_still_stored_fails() -> None:
    history = clean()
    history.stored["a"] = uid("a")
    assert failed(history) == {"acked_once"}


def test_overlapping_leases_fail() -> None:
    history = clean()
    # b's second delivery began 0.5 s before the first one's lease (until T0 + 3.0) ended.
    history.deliveries[2] = delivery("b", 2, T0 + 2.5, "consumer-2")
    history.settles[2] = ack(history.deliveries[2], T0 + 3.5)
    assert "exclusive_leases" in failed(history)
    assert "overlapping leases of b" in verdicts(history)["exclusive_leases"].examples[0]


def test_a_delivery_right_after_a_release_is_no_overlap() -> None:
    history = clean()
    c1 = history.deliveries[3]
    c2 = delivery("c", 2, T0 + 4.5 + 0.0005, "consumer-3")  # the nack was sent at T0 + 4.5
    history.deliveries.append(c2)
    history.settles.append(ack(c2, T0 + 5))
    del history.stored["c"]
    assert failed(history) == set()
    assert lease_end(c1, [history.settles[3]]) == T0 + 4.5


def test_a_delivery_after_a_nack_that_got_no_reply_is_no_overlap() -> None:
    history = clean()
    c1 = history.deliveries[3]
    history.settles[3] = Settle(c1.receipt, "c", "nack", T0 + 4.5, T0 + 34.5, "unknown")  # it may have released it
    history.deliveries.append(delivery("c", 2, T0 + 5.0, "consumer-3"))
    assert "exclusive_leases" not in failed(history)


def test_a_delivery_before_a_backoff_ends_is_an_overlap() -> None:
    history = clean()
    c1 = history.deliveries[3]
    history.settles[3] = Settle(c1.receipt, "c", "nack", T0 + 4.5, T0 + 4.51, "ok", deadline=T0 + 6.5)
    c2 = delivery("c", 2, T0 + 5.0, "consumer-3")  # while the backoff held it until T0 + 6.5
    history.deliveries.append(c2)
    assert "exclusive_leases" in failed(history)


def test_the_same_delivery_seen_twice_fails() -> None:
    history = clean()
    a1 = history.deliveries[0]
    history.deliveries.append(replace(a1, client="consumer-9"))
    assert "exclusive_leases" in failed(history)


def test_a_message_delivered_after_its_ack_fails() -> None:
    history = clean()
    history.deliveries.append(delivery("a", 2, T0 + 20, "consumer-3"))
    assert "exclusive_leases" in failed(history)
    assert "delivered after a successful ack" in " ".join(verdicts(history)["exclusive_leases"].examples)


def test_a_receive_count_that_does_not_grow_fails() -> None:
    history = clean()
    history.deliveries[2] = replace(history.deliveries[2], receive_count=1, receipt="b.other")
    history.settles[2] = replace(history.settles[2], receipt="b.other")
    assert failed(history) == {"exclusive_leases"}


def test_an_accepted_late_ack_fails() -> None:
    history = clean()
    history.settles[1] = replace(history.settles[1], outcome="ok")
    assert "late_acks_refused" in failed(history)


def test_any_ack_accepted_after_the_deadline_fails() -> None:
    history = clean()
    a1 = history.deliveries[0]
    history.settles[0] = ack(a1, a1.lease_expires_at + 0.5)  # not meant to be late, and accepted anyway
    assert "late_acks_refused" in failed(history)


def test_an_ack_within_an_extended_lease_is_fine() -> None:
    history = clean()
    a1 = history.deliveries[0]
    backoff = Settle(a1.receipt, "a", "nack", T0 + 1.2, T0 + 1.21, "ok", deadline=a1.lease_expires_at + 10)
    history.settles[0] = ack(a1, a1.lease_expires_at + 5)
    history.settles.append(backoff)
    assert failed(history) == set()


def test_a_late_ack_refused_whose_message_never_came_back_fails() -> None:
    history = clean()
    del history.deliveries[2]  # b's redelivery
    history.settles = [s for s in history.settles if s.receipt != "b.r2consumer-2"]
    assert {"late_acks_refused", "no_loss"} <= failed(history)


def test_a_late_ack_with_an_unexpected_code_fails() -> None:
    history = clean()
    history.settles[1] = replace(history.settles[1], outcome="invalid_receipt")
    assert failed(history) == {"late_acks_refused"}


def test_a_phantom_a_corrupt_body_and_a_stored_half_request_fail() -> None:
    for change in ("phantom", "corrupt", "partial"):
        history = clean()
        if change == "phantom":
            history.stored["z"] = "u-never-sent"
        elif change == "corrupt":
            history.stored["c"] = uid("a")
        else:
            history.stored["p"] = "partial-w0-c1-5"
        assert "intact_bodies" in failed(history), change


def test_an_unconfirmed_send_that_arrived_is_counted_not_failed() -> None:
    history = clean()
    history.attempted["u-x"] = "q"
    history.stored["x"] = "u-x"
    checks = verdicts(history)
    assert checks["intact_bodies"].passed
    assert checks["intact_bodies"].figures["arrived_unconfirmed"] == 1


@pytest.mark.parametrize(
    ("probe", "checks"),
    [
        (Probe("invalid JSON", True, 200), {"garbage_refused"}),  # accepted
        (Probe("invalid JSON", True, None), {"garbage_refused"}),  # a well-formed request dropped
        (Probe("stalled body", True, 500), {"garbage_refused", "no_5xx"}),
        (Probe("random bytes", False, 502), {"garbage_refused", "no_5xx"}),
    ],
)
def test_garbage_not_refused_fails(probe: Probe, checks: set[str]) -> None:
    history = clean()
    history.probes.append(probe)
    assert failed(history) == checks


def test_a_5xx_anywhere_fails() -> None:
    for where in ("client", "metrics", "log"):
        history = clean()
        if where == "client":
            history.failures.append(Failure("producer", "send", 503, "overloaded"))
        elif where == "metrics":
            history.server_5xx = 1
        else:
            history.server_errors.append("unexpected error on POST /v1/queues/q/receive")
        assert "no_5xx" in failed(history), where


def test_a_log_not_read_is_said() -> None:
    history = clean()
    history.log_read = False
    assert "log not read" in verdicts(history)["no_5xx"].summary


def test_a_well_behaved_request_dropped_fails() -> None:
    history = clean()
    history.failures.append(Failure("consumer", "receive", None, "connection_failed"))
    assert failed(history) == {"well_behaved_served"}


def test_growing_memory_fails() -> None:
    history = clean()
    # 80 MiB in the second tenth, growing steadily to about 140 MiB
    history.memory = [MemorySample(float(at), 80 * 1024 + at * 600) for at in range(0, 101, 2)]
    assert failed(history) == {"memory_flat"}


def test_memory_within_the_tolerance_passes() -> None:
    history = clean()
    history.memory = [MemorySample(float(at), 80 * 1024 + (10 * 1024 if at >= 50 else 0)) for at in range(0, 101, 2)]
    assert "memory_flat" not in failed(history)  # +10 MiB: within the 16 MiB slack


def test_memory_without_samples_in_a_tenth_fails() -> None:
    history = clean()
    history.memory = [MemorySample(95.0, 80_000)]
    assert failed(history) == {"memory_flat"}


def test_memory_not_measurable_is_said_and_passes() -> None:
    history = clean()
    history.memory, history.memory_measured = [], False
    check = verdicts(history)["memory_flat"]
    assert check.passed
    assert "not measured" in check.summary


def test_memory_verdict_takes_the_medians_of_the_second_and_last_tenth() -> None:
    samples = [MemorySample(12.0, 100, 5), MemorySample(14.0, 300, 7), MemorySample(16.0, 200, 9)]
    samples.append(MemorySample(95.0, 900, 2000))
    verdict = memory_verdict(samples, 100.0, tolerance=0.5, slack_mib=0)
    assert (verdict.second_tenth_kib, verdict.last_tenth_kib, verdict.allowed_growth_kib) == (200, 900, 100)
    assert verdict.growth_kib == 700
    assert (verdict.second_tenth_queued, verdict.last_tenth_queued) == (7, 2000)  # shown beside the verdict


def test_a_dead_server_or_a_bad_exit_fails() -> None:
    history = clean()
    history.alive = False
    assert failed(history) == {"server_alive"}
    history = clean()
    history.exit_code = 1
    assert failed(history) == {"server_alive"}


def test_rows_of_the_events_files_make_a_history() -> None:
    rows: list[list[object]] = [
        ["A", "u-a", "q"],
        ["C", "a", "u-a", "q", T0],
        ["D", "a", "a.r1", 1, T0 + 6, 5.0, T0 + 1.01, "u-a", "consumer-1", "q"],
        ["S", "a.r1", "a", "ack", T0 + 1.5, T0 + 1.51, "ok", None, False],
        ["P", "invalid JSON", True, 400, 3],
        ["F", "consumer", "receive", None, "timeout", 2, "no reply in time"],
        ["R", 4],
        ["K", {"producer.sends": 1}],
    ]
    history, counters = History(duration=1.0), Counter[str]()
    add_rows(history, rows, counters)
    add_rows(history, [["K", {"producer.sends": 2}], ["R", 1]], counters)
    assert history.confirmed == [Confirmed("a", "u-a", "q", T0)]
    assert history.deliveries[0].lease_start == T0 + 1
    assert history.settles[0].outcome == "ok"
    assert history.probes == [Probe("invalid JSON", True, 400, 3)]
    assert history.failures[0].count == 2
    assert (history.rate_limited, counters["producer.sends"]) == (5, 3)
    with pytest.raises(ValueError, match="unknown row"):
        add_rows(history, [["Z"]], counters)


def test_a_reply_that_is_not_http_fails() -> None:
    history = clean()
    history.probes.append(Probe("raw: random bytes", False, 0))
    assert failed(history) == {"garbage_refused"}
