"""`wonderq simulate`: producers and slow consumers against a live broker, so that redelivery can be watched, and
a final check that no message was lost (every id sent was acked or is still queued).

Owns the simulation's accounting and its display; talks to the broker only through `AsyncClient`.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import trio
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from wonderq.client import AsyncClient, ReceivedMessage, WonderQClientError

REFRESH_INTERVAL = 0.1  # seconds between looks at the queues (live display, drain check)
POLL_WAIT = 0.25  # seconds a consumer long-polls one queue before it moves on to the next
PEEK_PAGE = 1000  # the most the server returns per peek
# Ack failures that only mean "this delivery's lease ended": the message went (or will go) to someone else.
LATE_ACK_CODES = frozenset({"lease_lost", "message_not_found"})


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    queues: int = 3
    producers: int = 2
    consumers: int = 4
    messages: int | None = 100  # total to send; None to send until `duration` ends
    duration: float | None = None  # seconds the producers run; None to run until `messages` are sent
    interval: float = 0.05  # seconds each producer pauses between sends
    visibility_timeout: float = 2.0  # seconds, set on the simulation's queues
    max_processing_time: float = 3.0  # seconds; each delivery takes uniform(0, this)
    seed: int | None = None
    prefix: str = "sim-"
    drain_timeout: float = 60.0  # seconds the consumers get to empty the queues once the producers are done

    def __post_init__(self) -> None:
        problems = []
        for name in ("queues", "producers", "consumers"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.messages is None and self.duration is None:
            problems.append("give messages, duration or both")
        if self.messages is not None and self.messages < 1:
            problems.append("messages must be at least 1")
        if self.duration is not None and not self.duration > 0:
            problems.append("duration must be greater than 0")
        if not self.interval >= 0:
            problems.append("interval must be 0 or more")
        if not self.visibility_timeout > 0:
            problems.append("visibility_timeout must be greater than 0")
        if not self.max_processing_time >= 0:
            problems.append("max_processing_time must be 0 or more")
        if not self.drain_timeout > 0:
            problems.append("drain_timeout must be greater than 0")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def queue_names(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix}{index + 1}" for index in range(self.queues))


@dataclass(slots=True)
class Ledger:
    """What the simulation did, as its clients saw it. Mutated only by the simulation's own tasks."""

    sent: dict[str, str] = field(default_factory=dict)  # message id -> queue
    acked: set[str] = field(default_factory=set)  # message ids whose ack succeeded
    acked_twice: set[str] = field(default_factory=set)  # ids acked successfully more than once: must stay empty
    deliveries: int = 0
    redelivered: int = 0  # deliveries with receive_count > 1
    lease_lost: int = 0  # acks refused because the delivery's lease had ended

    def record_ack(self, message_id: str) -> None:
        if message_id in self.acked:
            self.acked_twice.add(message_id)
        self.acked.add(message_id)


@dataclass(frozen=True, slots=True)
class QueueCounts:
    name: str
    ready: int
    leased: int


@dataclass(frozen=True, slots=True)
class Progress:
    phase: str  # "starting", "producing", "draining", "checking" or "done"
    elapsed: float  # seconds
    sent: int
    deliveries: int
    acked: int
    redelivered: int
    lease_lost: int
    queues: tuple[QueueCounts, ...]


@dataclass(frozen=True, slots=True)
class SimulationReport:
    sent: int
    deliveries: int
    acked: int
    redelivered: int
    lease_lost: int
    still_queued: int  # of the ids sent, how many the queues still hold
    lost: tuple[str, ...]  # sent, never acked, and no longer queued
    acked_but_queued: tuple[str, ...]  # acked successfully, yet still queued
    acked_twice: tuple[str, ...]  # two deliveries of one message both acked successfully
    drained: bool  # the queues emptied within the drain timeout
    elapsed: float  # seconds

    @property
    def ok(self) -> bool:
        return not (self.lost or self.acked_but_queued or self.acked_twice)


def build_report(ledger: Ledger, queued: Iterable[str], *, drained: bool, elapsed: float) -> SimulationReport:
    """Compare what was sent and acked with the ids the queues still hold (`queued`)."""
    queued_ids = set(queued)
    sent = set(ledger.sent)
    return SimulationReport(
        sent=len(sent),
        deliveries=ledger.deliveries,
        acked=len(ledger.acked),
        redelivered=ledger.redelivered,
        lease_lost=ledger.lease_lost,
        still_queued=len(sent & queued_ids),
        lost=tuple(sorted(sent - ledger.acked - queued_ids)),
        acked_but_queued=tuple(sorted(ledger.acked & queued_ids)),
        acked_twice=tuple(sorted(ledger.acked_twice)),
        drained=drained,
        elapsed=elapsed,
    )


class Simulation:
    """One run: reset the queues, produce while consuming, drain, then check. Use `run` once."""

    def __init__(
        self,
        client: AsyncClient,
        config: SimulationConfig,
        *,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.ledger = Ledger()
        self.phase = "starting"
        self._on_progress = on_progress
        self._rng = random.Random(config.seed)
        self._claimed = 0  # messages the producers have taken on, out of config.messages
        self._counts: tuple[QueueCounts, ...] = ()
        self._started_at = trio.current_time()

    async def run(self) -> SimulationReport:
        try:
            return await self._run()
        except BaseExceptionGroup as group:
            # Tasks fail in nurseries, which wrap errors in groups; a broker error is what the caller can act on.
            raise client_error_in(group) or group from None

    def progress(self) -> Progress:
        ledger = self.ledger
        return Progress(
            phase=self.phase,
            elapsed=trio.current_time() - self._started_at,
            sent=len(ledger.sent),
            deliveries=ledger.deliveries,
            acked=len(ledger.acked),
            redelivered=ledger.redelivered,
            lease_lost=ledger.lease_lost,
            queues=self._counts,
        )

    async def _run(self) -> SimulationReport:
        self._started_at = trio.current_time()
        await self._reset_queues()
        async with trio.open_nursery() as watchers:
            watchers.start_soon(self._watch)
            async with trio.open_nursery() as consumers:
                for index in range(self.config.consumers):
                    consumers.start_soon(self._consume, index)
                self.phase = "producing"
                async with trio.open_nursery() as producers:
                    for index in range(self.config.producers):
                        producers.start_soon(self._produce, index)
                self.phase = "draining"
                drained = await self._wait_until_drained()
                # In-flight acks are shielded (see _deliver), so none is lost to this cancellation; leases still
                # held end by themselves and their messages stay queued, where the check below finds them.
                consumers.cancel_scope.cancel()
            self.phase = "checking"
            queued = await self._queued_ids()
            watchers.cancel_scope.cancel()
        self.phase = "done"
        report = build_report(self.ledger, queued, drained=drained, elapsed=trio.current_time() - self._started_at)
        self._report_progress()
        return report

    async def _reset_queues(self) -> None:
        for name in self.config.queue_names:
            try:
                await self.client.delete_queue(name)
            except WonderQClientError as error:
                if error.code != "queue_not_found":
                    raise
            await self.client.create_queue(name, visibility_timeout=self.config.visibility_timeout)

    async def _produce(self, index: int) -> None:
        config = self.config
        deadline = trio.current_time() + config.duration if config.duration is not None else None
        sequence = 0
        while deadline is None or trio.current_time() < deadline:
            if config.messages is not None:
                if self._claimed >= config.messages:
                    return
                self._claimed += 1
            queue = self._rng.choice(config.queue_names)
            # Checked before each send and never cancelled mid-send, so every stored message gets recorded.
            message_id = await self.client.send(queue, {"producer": index, "sequence": sequence})
            self.ledger.sent[message_id] = queue
            sequence += 1
            pause = config.interval if deadline is None else min(config.interval, deadline - trio.current_time())
            await trio.sleep(max(pause, 0.0))

    async def _consume(self, index: int) -> None:
        names = self.config.queue_names
        start = index % len(names)  # consumers start spread over the queues, and stay spread as they rotate
        consumer = f"sim-consumer-{index + 1}"
        # Long polls only: a ready message is answered at once, and an idle consumer costs one request per
        # POLL_WAIT instead of a busy loop that would starve the others (and make acks late) on this one thread.
        for queue in itertools.cycle(names[start:] + names[:start]):
            messages = await self.client.receive(queue, wait=POLL_WAIT, consumer=consumer)
            if messages:
                await self._deliver(queue, messages[0])

    async def _deliver(self, queue: str, message: ReceivedMessage) -> None:
        self.ledger.deliveries += 1
        if message.receive_count > 1:
            self.ledger.redelivered += 1
        await trio.sleep(self._rng.uniform(0, self.config.max_processing_time))
        # Shielded: an ack the server applied must be recorded, or the check would count its message as lost.
        with trio.CancelScope(shield=True):
            try:
                await self.client.ack(queue, message.id, message.receipt)
            except WonderQClientError as error:
                if error.code not in LATE_ACK_CODES:
                    raise
                self.ledger.lease_lost += 1
            else:
                self.ledger.record_ack(message.id)

    async def _watch(self) -> None:
        while True:
            await self._refresh_counts()
            self._report_progress()
            await trio.sleep(REFRESH_INTERVAL)

    async def _refresh_counts(self) -> tuple[QueueCounts, ...]:
        ours = set(self.config.queue_names)
        self._counts = tuple(
            QueueCounts(stats["name"], stats["ready"], stats["leased"])
            for stats in await self.client.list_queues()
            if stats["name"] in ours
        )
        return self._counts

    async def _wait_until_drained(self) -> bool:
        with trio.move_on_after(self.config.drain_timeout):
            while True:
                counts = await self._refresh_counts()
                if all(queue.ready == 0 and queue.leased == 0 for queue in counts):
                    return True
                await trio.sleep(REFRESH_INTERVAL)
        return False

    async def _queued_ids(self) -> list[str]:
        ids: list[str] = []
        for queue in self.config.queue_names:
            after: str | None = None
            while True:
                page = await self.client.peek(queue, limit=PEEK_PAGE, after=after)
                ids.extend(message.id for message in page.messages)
                if page.next_after is None:
                    break
                after = page.next_after
        return ids

    def _report_progress(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.progress())


def client_error_in(group: BaseExceptionGroup) -> WonderQClientError | None:
    """The first broker error in `group`, if broker errors are all it holds."""
    matched, rest = group.split(WonderQClientError)
    if matched is None or rest is not None:
        return None
    leaves: list[BaseException] = [matched]
    while isinstance(leaves[0], BaseExceptionGroup):
        leaves = list(leaves[0].exceptions)
    error = leaves[0]
    return error if isinstance(error, WonderQClientError) else None


async def run_simulation(
    url: str,
    config: SimulationConfig,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    token: str | None = None,
) -> SimulationReport:
    # One connection per task that may be mid-request at once: consumers, producers, the watcher and the drain check.
    async with AsyncClient(url, max_connections=config.consumers + config.producers + 2, token=token) as client:
        return await Simulation(client, config, on_progress=on_progress).run()


# ---- display ------------------------------------------------------------------------------------------


def render_progress(progress: Progress) -> Group:
    totals = Table.grid(padding=(0, 2))
    for _ in range(7):
        totals.add_column(justify="right")
    totals.add_row("phase", "elapsed", "sent", "delivered", "acked", "redelivered", "lease lost", style="bold")
    totals.add_row(
        progress.phase,
        f"{progress.elapsed:.1f}s",
        *(str(n) for n in (progress.sent, progress.deliveries, progress.acked, progress.redelivered)),
        str(progress.lease_lost),
    )
    queues = Table("queue", "ready", "leased", box=None, padding=(0, 2), pad_edge=False)
    for counts in progress.queues:
        queues.add_row(counts.name, str(counts.ready), str(counts.leased))
    return Group(totals, queues)


def render_report(report: SimulationReport) -> Group:
    table = Table.grid(padding=(0, 2))
    table.add_column()
    table.add_column(justify="right")
    rows: Sequence[tuple[str, object]] = (
        ("sent", report.sent),
        ("deliveries", report.deliveries),
        ("acked", report.acked),
        ("redelivered", report.redelivered),
        ("lease_lost acks", report.lease_lost),
        ("still queued", report.still_queued),
        ("drained", "yes" if report.drained else "no (drain timeout)"),
        ("elapsed", f"{report.elapsed:.1f}s"),
    )
    for name, value in rows:
        table.add_row(name, str(value))
    verdict = [Text("OK: no message lost", style="bold green")] if report.ok else _problems(report)
    return Group(table, *verdict)


def _problems(report: SimulationReport) -> list[Text]:
    problems: Mapping[str, tuple[str, ...]] = {
        "LOST (sent, never acked, no longer queued)": report.lost,
        "acked but still queued": report.acked_but_queued,
        "acked twice": report.acked_twice,
    }
    return [
        Text(f"{what}: {len(ids)}: {' '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}", style="bold red")
        for what, ids in problems.items()
        if ids
    ]


async def run_live(url: str, config: SimulationConfig, console: Console, token: str | None = None) -> SimulationReport:
    """Run the simulation with a live summary on `console`, then print the report."""
    if not console.is_terminal:
        # A live display only makes sense where it can redraw; elsewhere (a log, a pipe) say what phase it is in.
        phases: list[str] = []

        def log_phase(progress: Progress) -> None:
            if not phases or phases[-1] != progress.phase:
                phases.append(progress.phase)
                console.print(f"simulate: {progress.phase} ({progress.elapsed:.1f}s)", highlight=False)

        report = await run_simulation(url, config, on_progress=log_phase, token=token)
    else:
        start = Progress("starting", 0.0, 0, 0, 0, 0, 0, ())
        with Live(render_progress(start), console=console, auto_refresh=False) as live:

            def show(progress: Progress) -> None:
                live.update(render_progress(progress), refresh=True)

            report = await run_simulation(url, config, on_progress=show, token=token)
    console.print(render_report(report))
    return report
