"""What `/metrics` shows, in Prometheus's text format (prometheus-client): the histograms the actor and the web
layer feed as they work, and the queues' gauges and counters, read from one stats snapshot at each scrape.

One `Metrics` per actor, with a registry of its own (never the process-wide default), so that servers and
tests in one process do not mix their figures.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wonderq.model import QueueStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus's text exposition format
SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0)  # buckets
BATCH_COMMANDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)  # buckets: commands per journal commit
COUNTERS = ("sent", "received", "acked", "expired", "released", "dropped", "dead_lettered", "redriven")
# Label values come from closed sets, so that no client can grow the exposition: a method outside this set is
# "other", and routes are the app's own patterns ("unmatched" for a path no route matches).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _Snapshot(Collector):
    """The queue figures of one scrape: set just before the registry is rendered, in the same trio step."""

    def __init__(self) -> None:
        self.queues: Sequence[QueueStats] = ()
        self.backlog = 0
        self.parked = 0

    def collect(self) -> Iterator[Metric]:
        messages = GaugeMetricFamily(
            "wonderq_queue_messages", "Messages in a queue, by state.", labels=["queue", "state"]
        )
        dead = GaugeMetricFamily(
            "wonderq_queue_dead_letters", "Messages in a queue that were dead-lettered into it.", labels=["queue"]
        )
        totals = {
            name: CounterMetricFamily(
                f"wonderq_queue_{name}", f"Messages {name} since the queue was created.", labels=["queue"]
            )
            for name in COUNTERS
        }
        for stats in self.queues:
            for state, count in (("ready", stats.ready), ("leased", stats.leased), ("delayed", stats.delayed)):
                messages.add_metric([stats.name, state], count)
            dead.add_metric([stats.name], stats.dead_letters)
            for name, family in totals.items():
                family.add_metric([stats.name], getattr(stats, name))
        yield messages
        yield dead
        yield from totals.values()
        yield GaugeMetricFamily("wonderq_actor_backlog", "Commands waiting for the actor.", value=self.backlog)
        yield GaugeMetricFamily("wonderq_actor_parked_receives", "Long polls waiting for a message.", value=self.parked)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Histogram(
            "wonderq_http_request_duration_seconds",
            "HTTP requests by method, route (its pattern) and status, and how long they took.",
            ["method", "route", "status"],
            buckets=SECONDS,
            registry=self.registry,
        )
        self.commands = Histogram(
            "wonderq_actor_command_duration_seconds",
            "Actor commands by kind, from being sent to the reply (waiting, work, and the commit).",
            ["command"],
            buckets=SECONDS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "wonderq_journal_commit_duration_seconds",
            "Journal commits (one per actor batch that changed something), and how long they took.",
            buckets=SECONDS,
            registry=self.registry,
        )
        self.commit_batch = Histogram(
            "wonderq_journal_commit_batch_commands",
            "Commands in the actor batch each journal commit made durable.",
            buckets=BATCH_COMMANDS,
            registry=self.registry,
        )
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)
        # Label children by their label values, looked up once: `labels()` checks and converts its arguments and
        # takes a lock on every call, which every request and every command would otherwise pay.
        self._request_children: dict[tuple[str, str, int], Histogram] = {}
        self._command_children: dict[str, Histogram] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request in `requests` (a method outside METHODS is counted as "other")."""
        if method not in METHODS:
            method = "other"
        key = (method, route, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(method, route, str(status))
        child.observe(seconds)

    def observe_command(self, command: str, seconds: float) -> None:
        """One actor command (by its kind) in `commands`."""
        child = self._command_children.get(command)
        if child is None:
            child = self._command_children[command] = self.commands.labels(command)
        child.observe(seconds)

    def render(self, queues: Sequence[QueueStats], *, backlog: int, parked: int) -> bytes:
        """The whole exposition, with `queues` as the queue figures."""
        snapshot = self._snapshot
        snapshot.queues, snapshot.backlog, snapshot.parked = queues, backlog, parked
        try:
            return generate_latest(self.registry)
        finally:
            snapshot.queues = ()
