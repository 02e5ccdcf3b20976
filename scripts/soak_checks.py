"""The bookkeeping and the verdicts of scripts/soak, without any I/O: what the soak's clients saw (a `History`)
in, a list of `Check`s out. tests/test_soak_checks.py feeds it hand-made histories, including ones that must fail.

Times are epoch seconds (`time.time()`): the server's `lease_expires_at` is on the same clock, since the soak only
runs against a server on this machine. A lease starts at `lease_expires_at - visibility_timeout` (the server sets
the deadline to its own "now" plus the visibility timeout that was asked for), and ends at the first of: its
deadline, as moved by a successful lease change (a nack with backoff); the moment a successful ack or release of
it was *sent* (the earliest it can have taken effect); the moment a stream holding it began to close.

What must hold (`judge` runs every check):
* no_loss: every message confirmed with 201 was acked, or is still stored at the end;
* acked_once: no message was acked successfully twice, and none acked is still stored;
* exclusive_leases: no delivery began while an earlier lease of the same message was live, no message came back
  after a successful ack, and each message's receive_count grows from one delivery to the next;
* late_acks_refused: no ack was accepted after its lease had ended, and every deliberately late ack was refused
  (409 lease_lost, or 404 once someone else had acked the redelivery) and its message delivered again;
* intact_bodies: every delivered or stored body is one a producer sent, under the id its send was confirmed
  with, and no half-sent request was stored;
* garbage_refused: every misbehaving request that was well-formed HTTP got a 4xx, and malformed ones a 4xx or
  a closed connection; never a 2xx or 3xx;
* no_5xx: no client saw a 5xx, the server counted none (its /metrics) and logged no error;
* well_behaved_served: every request of a well-behaved client was answered as the API says (429 with
  Retry-After aside: it is counted and retried), never with a dropped connection or a timeout;
* memory_flat: the server's resident memory in the last tenth of the load (median) exceeds that of the second
  tenth by at most max(MEMORY_TOLERANCE of it, MEMORY_SLACK_MIB);
* server_alive: the server process still ran, and answered /health, at the end; stopped by SIGTERM, it exited 0.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

EPSILON = 0.001  # seconds: rounding of epoch times in JSON (the server and the clients share one clock)
MEMORY_TOLERANCE = 0.10  # fraction of the second tenth's median resident memory the last tenth may add
MEMORY_SLACK_MIB = 16.0  # MiB the last tenth may add in any case (allocator noise on a small server)
PARTIAL = "partial-"  # the uid prefix of bodies only ever sent half-way (then the connection dropped)
LATE_REFUSALS = frozenset({"lease_lost", "message_not_found"})  # what a late ack may get
EXAMPLES = 10  # examples kept per failed check


@dataclass(frozen=True, slots=True)
class Confirmed:
    """A send answered 201: the id the server gave the body that carries `uid`."""

    id: str
    uid: str
    queue: str
    at: float


@dataclass(frozen=True, slots=True)
class Delivery:
    """A lease a client saw (a receive's reply, or a stream's `messages` frame)."""

    id: str
    receipt: str
    receive_count: int
    lease_expires_at: float
    visibility_timeout: float  # seconds that were asked for
    at: float  # when the client had it
    uid: str  # from the body ("" when it carried none)
    client: str
    queue: str

    @property
    def lease_start(self) -> float:
        return self.lease_expires_at - self.visibility_timeout


@dataclass(frozen=True, slots=True)
class Settle:
    """An attempt to end or change one delivery's lease: kind "ack", "nack" (a release, or with `deadline` a
    backoff) or "close" (the stream holding it closed). `outcome` is "ok", the error code it got, or "unknown"
    (no reply: it may or may not have been applied)."""

    receipt: str
    id: str
    kind: str
    sent_at: float
    done_at: float
    outcome: str
    deadline: float | None = None  # a successful backoff nack's new lease deadline; None: a release
    late: bool = False  # a deliberately late ack (after the lease's deadline)


@dataclass(frozen=True, slots=True)
class Probe:
    """`count` misbehaving requests of one `case` that got the same `status` (None: no reply; the connection was
    closed or nothing came back in time). `well_formed`: valid HTTP, which must be answered."""

    case: str
    well_formed: bool
    status: int | None
    count: int = 1
    example: str = ""  # what went wrong with the first of them, when something did


@dataclass(frozen=True, slots=True)
class Failure:
    """`count` requests of well-behaved clients that were not answered as the API says: `what` is the
    operation, `status` the reply's status (None: no reply), `code` the error code or the transport error."""

    client: str
    what: str
    status: int | None
    code: str
    count: int = 1
    example: str = ""


@dataclass(frozen=True, slots=True)
class MemorySample:
    at: float  # seconds since the load began
    rss_kib: int
    queued: int | None = None  # messages in the soak's queues then (ready, leased, delayed): what memory may follow


@dataclass
class History:
    """Everything the soak knows at the end."""

    duration: float = 0.0  # seconds of load (the memory check's tenths are of this)
    attempted: dict[str, str] = field(default_factory=dict)  # uid -> queue, for every send tried
    confirmed: list[Confirmed] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    settles: list[Settle] = field(default_factory=list)
    stored: dict[str, str] = field(default_factory=dict)  # id -> uid of what the queues hold at the end
    probes: list[Probe] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    rate_limited: int = 0  # 429s the well-behaved clients got (and waited out)
    server_5xx: int | None = None  # 5xx replies the server counted (/metrics) during the soak; None: not read
    server_errors: list[str] = field(default_factory=list)  # error-level records of the server's log
    log_read: bool = True  # False when the soak did not start the server, so has no log of it
    memory: list[MemorySample] = field(default_factory=list)
    memory_measured: bool = True  # False when the server is not a process of this machine the soak can see
    alive: bool = True  # the process ran and /health answered 200 at the end
    exit_code: int | None = None  # after SIGTERM, when the soak started the server


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    passed: bool
    summary: str
    examples: tuple[str, ...] = ()
    figures: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "summary": self.summary,
            "examples": list(self.examples),
            **self.figures,
        }


def _check(name: str, problems: Sequence[str], ok: str, figures: dict[str, Any] | None = None) -> Check:
    if problems:
        summary = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        return Check(name, False, summary, tuple(problems[:EXAMPLES]), figures or {})
    return Check(name, True, ok, (), figures or {})


# ---- the bookkeeping ----


def add_rows(history: History, rows: Iterable[Sequence[Any]], counters: Counter[str]) -> None:
    """Add what one worker recorded (the rows of its events file, scripts/soak_clients.py) to `history`, and its
    counters to `counters`. Rows: A (a send tried: uid, queue), C (confirmed: id, uid, queue, at), D (a delivery:
    id, receipt, receive_count, lease_expires_at, visibility_timeout, at, uid, client, queue), S (a settle:
    receipt, id, kind, sent_at, done_at, outcome, deadline, late), P (probes: case, well_formed, status, count,
    example), F (failures: client, what, status, code, count, example), R (429s waited out), K (counters)."""
    for row in rows:
        kind, fields = row[0], row[1:]
        if kind == "A":
            history.attempted[fields[0]] = fields[1]
        elif kind == "C":
            history.confirmed.append(Confirmed(*fields))
        elif kind == "D":
            history.deliveries.append(Delivery(*fields))
        elif kind == "S":
            history.settles.append(Settle(*fields))
        elif kind == "P":
            history.probes.append(Probe(*fields))
        elif kind == "F":
            history.failures.append(Failure(*fields))
        elif kind == "R":
            history.rate_limited += int(fields[0])
        elif kind == "K":
            counters.update(fields[0])
        else:
            raise ValueError(f"unknown row {row!r}")


def successful_acks(history: History) -> dict[str, list[Settle]]:
    """id -> its acks that succeeded."""
    found: dict[str, list[Settle]] = defaultdict(list)
    for settle in history.settles:
        if settle.kind == "ack" and settle.outcome == "ok":
            found[settle.id].append(settle)
    return found


def lease_end(delivery: Delivery, settles: Iterable[Settle]) -> float:
    """When `delivery`'s lease ended at the latest, by what its settles tell (see the module's docstring)."""
    end = delivery.lease_expires_at
    for settle in sorted(settles, key=lambda s: s.sent_at):
        if settle.kind == "close" or (settle.kind == "nack" and settle.outcome == "unknown"):
            end = min(end, settle.sent_at)  # a nack with no reply may have released it: the earliest end
        elif settle.outcome != "ok":
            continue  # a failed ack or nack changes nothing; an unanswered ack either deleted it or did nothing
        elif settle.kind == "nack" and settle.deadline is not None:
            if settle.sent_at < end:
                end = settle.deadline  # a backoff moves the deadline, later or earlier
        else:
            end = min(end, settle.sent_at)
    return end


def settles_by_receipt(history: History) -> dict[str, list[Settle]]:
    found: dict[str, list[Settle]] = defaultdict(list)
    for settle in history.settles:
        found[settle.receipt].append(settle)
    return found


# ---- the checks ----


def check_no_loss(history: History) -> Check:
    acked = successful_acks(history)
    maybe = {s.id for s in history.settles if s.kind == "ack" and s.outcome == "unknown"}
    problems = []
    uncertain = 0
    for sent in history.confirmed:
        if sent.id in acked or sent.id in history.stored:
            continue
        if sent.id in maybe:
            uncertain += 1  # its ack got no reply: it may well be gone by that ack (a failure counted elsewhere)
            continue
        problems.append(f"lost: {sent.id} ({sent.uid}, {sent.queue}) was confirmed with 201, never acked, not stored")
    still = sum(1 for sent in history.confirmed if sent.id in history.stored)
    figures = {"confirmed": len(history.confirmed), "acked": len(acked), "still_stored": still}
    figures["ack_unanswered"] = uncertain
    return _check(
        "no_loss",
        problems,
        f"{len(history.confirmed):,} confirmed: {len(acked):,} acked, {still:,} still stored",
        figures,
    )


def check_acked_once(history: History) -> Check:
    problems = []
    for message_id, acks in sorted(successful_acks(history).items()):
        if len(acks) > 1:
            problems.append(f"acked {len(acks)} times: {message_id} (receipts {', '.join(a.receipt for a in acks)})")
        if message_id in history.stored:
            problems.append(f"acked, yet still stored: {message_id}")
    return _check("acked_once", problems, "no message acked twice, none acked still stored")


def check_exclusive_leases(history: History) -> Check:
    by_receipt = settles_by_receipt(history)
    acked = successful_acks(history)
    by_id: dict[str, list[Delivery]] = defaultdict(list)
    problems = []
    receipts = Counter(d.receipt for d in history.deliveries)
    for receipt, count in receipts.items():
        if count > 1:
            problems.append(f"one receipt delivered {count} times: {receipt}")
    for delivery in history.deliveries:
        by_id[delivery.id].append(delivery)
    redelivered = 0
    for message_id, deliveries in by_id.items():
        deliveries.sort(key=lambda d: (d.lease_start, d.receive_count))
        redelivered += len(deliveries) - 1
        ends = [lease_end(d, by_receipt.get(d.receipt, ())) for d in deliveries]
        for later in range(1, len(deliveries)):
            current = deliveries[later]
            for earlier in range(later):
                before = deliveries[earlier]
                if before.receipt == current.receipt:
                    continue
                if current.lease_start < ends[earlier] - EPSILON:
                    problems.append(
                        f"overlapping leases of {message_id}: {current.client} got delivery {current.receive_count}"
                        f" at {current.lease_start:.3f} while {before.client}'s delivery {before.receive_count}"
                        f" was live until {ends[earlier]:.3f}"
                    )
            previous = deliveries[later - 1]
            if current.receipt != previous.receipt and current.receive_count <= previous.receive_count:
                problems.append(
                    f"receive_count of {message_id} did not grow: {previous.receive_count} ({previous.client})"
                    f" then {current.receive_count} ({current.client})"
                )
        for ack in acked.get(message_id, ()):
            for delivery in deliveries:
                if delivery.lease_start > ack.done_at + EPSILON:
                    problems.append(
                        f"delivered after a successful ack: {message_id} acked at {ack.done_at:.3f},"
                        f" delivered again ({delivery.receive_count}) at {delivery.lease_start:.3f}"
                    )
    figures = {"deliveries": len(history.deliveries), "messages": len(by_id), "redeliveries": redelivered}
    return _check(
        "exclusive_leases",
        problems,
        f"{len(history.deliveries):,} deliveries of {len(by_id):,} messages ({redelivered:,} redeliveries),"
        " no two leases of a message at once",
        figures,
    )


def check_late_acks_refused(history: History) -> Check:
    deliveries = {d.receipt: d for d in history.deliveries}
    by_receipt = settles_by_receipt(history)
    problems = []
    refused: Counter[str] = Counter()
    by_id: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in history.deliveries:
        by_id[delivery.id].append(delivery)
    for settle in history.settles:
        found = deliveries.get(settle.receipt) if settle.kind == "ack" else None
        if found is None:
            continue
        delivery = found
        # The deadline as the lease changes sent before this ack left it (unless one of them got no reply: then
        # the deadline is not known for sure, and an accepted ack proves nothing).
        changes = [s for s in by_receipt[settle.receipt] if s.kind == "nack" and s.sent_at < settle.sent_at]
        end = lease_end(delivery, changes)
        known = all(change.outcome != "unknown" for change in changes)
        if settle.outcome == "ok" and known and settle.sent_at > end + EPSILON:
            problems.append(
                f"ack accepted after its lease ended: {settle.id} ({delivery.client}) sent at {settle.sent_at:.3f},"
                f" lease ended at {end:.3f}"
            )
        if not settle.late:
            continue
        refused[settle.outcome] += 1
        if settle.outcome not in LATE_REFUSALS and settle.outcome != "ok":
            problems.append(f"late ack of {settle.id} got {settle.outcome}, not lease_lost")
        elif settle.outcome in LATE_REFUSALS:
            again = any(d.lease_start >= end - EPSILON and d.receipt != settle.receipt for d in by_id[settle.id])
            if not again and settle.id not in history.stored:
                problems.append(f"late ack of {settle.id} refused, but the message was never delivered again")
    late = sum(refused.values())
    figures = {"late_acks": late, "late_ack_outcomes": dict(refused)}
    return _check(
        "late_acks_refused",
        problems,
        f"{late:,} deliberately late acks, all refused ({refused['lease_lost']:,} lease_lost,"
        f" {refused['message_not_found']:,} message_not_found after someone acked the redelivery)",
        figures,
    )


def check_intact_bodies(history: History) -> Check:
    problems = []
    sent_as = {c.id: c.uid for c in history.confirmed}
    seen: list[tuple[str, str, str]] = [(d.id, d.uid, f"delivered to {d.client}") for d in history.deliveries]
    seen += [(message_id, uid, "stored at the end") for message_id, uid in history.stored.items()]
    unconfirmed = set()
    for message_id, uid, where in seen:
        if uid.startswith(PARTIAL):
            problems.append(f"a half-sent request was stored: {message_id} ({uid}), {where}")
        elif uid not in history.attempted:
            problems.append(f"phantom: {message_id} carries {uid!r}, which no producer sent ({where})")
        elif message_id in sent_as and sent_as[message_id] != uid:
            problems.append(f"corrupt: {message_id} carries {uid!r}, sent as {sent_as[message_id]!r} ({where})")
        elif message_id not in sent_as:
            unconfirmed.add(message_id)
    return _check(
        "intact_bodies",
        problems,
        "every body delivered or stored is one a producer sent, under its own id",
        {"arrived_unconfirmed": len(unconfirmed)},
    )


def probe_problem(probe: Probe) -> str | None:
    """Why this probe's outcome is wrong, or None."""
    if probe.status is None:
        return f"no reply to a well-formed request: {probe.case} ({probe.example})" if probe.well_formed else None
    if probe.status == 0:
        return f"a reply that is not HTTP to {probe.case}"
    if probe.status >= 500:
        return f"{probe.status} for {probe.case}"
    if probe.status < 400:
        return f"{probe.status} (accepted) for {probe.case}"
    return None


def check_garbage_refused(history: History) -> Check:
    problems = []
    total = 0
    statuses: Counter[str] = Counter()
    for probe in history.probes:
        total += probe.count
        statuses["none" if probe.status is None else str(probe.status)] += probe.count
        problem = probe_problem(probe)
        if problem is not None:
            problems.append(f"{probe.count} x {problem}")
    cases = len({probe.case for probe in history.probes})
    figures = {"probes": total, "cases": cases, "statuses": dict(sorted(statuses.items()))}
    return _check("garbage_refused", problems, f"{total:,} misbehaving requests of {cases} kinds, all refused", figures)


def check_no_5xx(history: History) -> Check:
    problems = []
    for failure in history.failures:
        if failure.status is not None and failure.status >= 500:
            problems.append(f"{failure.count} x {failure.status} {failure.code} to {failure.client} {failure.what}")
    for probe in history.probes:
        if probe.status is not None and probe.status >= 500:
            problems.append(f"{probe.count} x {probe.status} to a misbehaving request: {probe.case}")
    if history.server_5xx:
        problems.append(f"the server counted {history.server_5xx} 5xx replies (/metrics)")
    problems += [f"server log: {line}" for line in history.server_errors]
    counted = "not read" if history.server_5xx is None else str(history.server_5xx)
    logged = "logged no error" if history.log_read else "its log not read (not the soak's server)"
    return _check(
        "no_5xx",
        problems,
        f"no 5xx seen by any client; the server counted {counted}, {logged}",
        {"server_5xx": history.server_5xx, "server_errors": len(history.server_errors)},
    )


def check_well_behaved_served(history: History) -> Check:
    problems = []
    for failure in history.failures:
        if failure.status is None or failure.status < 500:
            answer = "no reply" if failure.status is None else str(failure.status)
            problems.append(f"{failure.count} x {failure.client} {failure.what}: {answer} {failure.code}")
    return _check(
        "well_behaved_served",
        problems,
        f"every well-behaved request answered as documented ({history.rate_limited:,} 429s waited out)",
        {"rate_limited": history.rate_limited},
    )


@dataclass(frozen=True, slots=True)
class MemoryVerdict:
    second_tenth_kib: float | None  # median
    last_tenth_kib: float | None  # median
    allowed_growth_kib: float | None
    samples: int
    second_tenth_queued: float | None = None  # median messages queued, when the samples say
    last_tenth_queued: float | None = None

    @property
    def growth_kib(self) -> float | None:
        if self.second_tenth_kib is None or self.last_tenth_kib is None:
            return None
        return self.last_tenth_kib - self.second_tenth_kib


def memory_verdict(
    samples: Sequence[MemorySample],
    duration: float,
    tolerance: float = MEMORY_TOLERANCE,
    slack_mib: float = MEMORY_SLACK_MIB,
) -> MemoryVerdict:
    """The medians of the second and the last tenth of the load's `duration` (seconds), and the growth allowed."""
    second = [s for s in samples if 0.1 * duration <= s.at < 0.2 * duration]
    last = [s for s in samples if 0.9 * duration <= s.at <= duration]
    if not second or not last:
        return MemoryVerdict(None, None, None, len(samples))
    base = statistics.median(s.rss_kib for s in second)
    queued = [[s.queued for s in tenth if s.queued is not None] for tenth in (second, last)]
    second_queued, last_queued = (statistics.median(q) if q else None for q in queued)
    allowed = max(tolerance * base, slack_mib * 1024)
    end = statistics.median(s.rss_kib for s in last)
    return MemoryVerdict(base, end, allowed, len(samples), second_queued, last_queued)


def check_memory_flat(
    history: History, tolerance: float = MEMORY_TOLERANCE, slack_mib: float = MEMORY_SLACK_MIB
) -> Check:
    if not history.memory_measured:
        return Check("memory_flat", True, "not measured (the server is not a process the soak can see)")
    verdict = memory_verdict(history.memory, history.duration, tolerance, slack_mib)
    figures = {
        "second_tenth_median_kib": verdict.second_tenth_kib,
        "last_tenth_median_kib": verdict.last_tenth_kib,
        "allowed_growth_kib": verdict.allowed_growth_kib,
        "samples": verdict.samples,
        "second_tenth_median_queued": verdict.second_tenth_queued,
        "last_tenth_median_queued": verdict.last_tenth_queued,
    }
    growth = verdict.growth_kib
    if growth is None or verdict.allowed_growth_kib is None or verdict.second_tenth_kib is None:
        return Check("memory_flat", False, "too few samples to tell (a sample in each tenth is needed)", (), figures)
    said = (
        f"resident {verdict.second_tenth_kib / 1024:.1f} MiB (median, second tenth) ->"
        f" {(verdict.last_tenth_kib or 0) / 1024:.1f} MiB (last tenth): {growth / 1024:+.1f} MiB,"
        f" allowed +{verdict.allowed_growth_kib / 1024:.1f} MiB"
    )
    if verdict.second_tenth_queued is not None and verdict.last_tenth_queued is not None:
        said += f" (messages queued meanwhile: {verdict.second_tenth_queued:,.0f} -> {verdict.last_tenth_queued:,.0f})"
    if growth > verdict.allowed_growth_kib:
        return Check("memory_flat", False, f"memory grew: {said}", (said,), figures)
    return Check("memory_flat", True, said, (), figures)


def check_server_alive(history: History) -> Check:
    problems = []
    if not history.alive:
        problems.append("the server was not running (or did not answer /health) at the end")
    if history.exit_code not in (None, 0):
        problems.append(f"the server exited {history.exit_code} on SIGTERM")
    stopped = "" if history.exit_code is None else ", exited 0 on SIGTERM"
    return _check("server_alive", problems, f"the server ran to the end and answered /health{stopped}")


def judge(history: History, tolerance: float = MEMORY_TOLERANCE, slack_mib: float = MEMORY_SLACK_MIB) -> list[Check]:
    """Every check, in the order of the module's docstring."""
    return [
        check_no_loss(history),
        check_acked_once(history),
        check_exclusive_leases(history),
        check_late_acks_refused(history),
        check_intact_bodies(history),
        check_garbage_refused(history),
        check_no_5xx(history),
        check_well_behaved_served(history),
        check_memory_flat(history, tolerance, slack_mib),
        check_server_alive(history),
    ]
