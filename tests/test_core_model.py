"""Hypothesis drives the core and a naive model side by side with random sends, receives, acks, visibility
changes, purges, redrives, expiries, jumps in time, and restarts through the real journal; they must agree on
every answer.

Queue "a" dead-letters to "dlq" after MAX_RECEIVES deliveries; "b" and "dlq" have short retentions, so that
messages are dropped within a run; "f.fifo" is a FIFO queue, whose sends pick one of a few message groups.

The invariants: no message is in two places; no message is leased twice at once; an acked, purged or dropped
message never comes back; messages are delivered by priority, then in send order (in a FIFO queue: group by
group, and never from a group with a message leased); counts match; dead letters keep their message; a restart
changes nothing; the sweep's agenda holds, for every queue, a live entry at or before its earliest due
transition, and after a jump in time the sweep alone (before any other call) makes every transition due.
"""

from __future__ import annotations

import itertools
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.helpers import limits
from wonderq.core import DEDUP_WINDOW, Core, _Queue
from wonderq.errors import LeaseLost, MessageNotFound
from wonderq.ids import TimeOrderedIds
from wonderq.model import DEFAULT_RETENTION, Attributes, Outgoing, Payload, RedriveReport, State
from wonderq.store import SqliteStore

QUEUES = ("a", "b", "dlq", "f.fifo")
FIFO = "f.fifo"
IN_FLIGHT = {"a": 0, "b": 3, "dlq": 0, FIFO: 0}  # max_in_flight of each queue (0: no limit)
QUEUE_DELAY = {"a": 0.0, "b": 1.0, "dlq": 0.0, FIFO: 0.0}  # each queue's default delay, seconds
RETENTION = {"a": DEFAULT_RETENTION, "b": 60.0, "dlq": 900.0, FIFO: DEFAULT_RETENTION}  # seconds
GROUPS = ("g1", "g2", "g3")
MAX_RECEIVES = 1  # of queue "a", whose dead-letter queue is "dlq": low, so that runs dead-letter often
ATTRIBUTES = ((), (("k", "v"),), (("a", ""), ("z", "é")))


@dataclass
class ModelMessage:
    body: bytes
    attributes: Attributes
    sent_at: float
    priority: int = 0
    visible_at: float = 0.0  # epoch seconds before which it is delayed
    source_queue: str | None = None
    group: str | None = None
    dedup_id: str | None = None
    receive_count: int = 0
    first_received_at: float | None = None
    receipt: str | None = None
    deadline_at: float = 0.0

    def leased(self, now: float) -> bool:
        return self.receipt is not None and now < self.deadline_at

    def delayed(self, now: float) -> bool:
        return now < self.visible_at


class CoreVersusModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tokens = itertools.count(1)  # shared across restarts, as randomness would be
        self.directory = Path(tempfile.mkdtemp(prefix="wonderq-model-"))
        self.store = SqliteStore(self.directory, sync="normal")
        self.core: Core = self.new_core(floor=None)
        self.now = 1_000.0
        self.model: dict[str, dict[str, ModelMessage]] = {}  # queue → id → message
        self.gone: set[str] = set()  # acked or purged ids
        self.receipts: list[tuple[str, str, str]] = []  # (queue, id, receipt) of every delivery ever
        self.counter = 0
        self.expired = dict.fromkeys(QUEUES, 0)
        self.dropped = dict.fromkeys(QUEUES, 0)
        self.dedup: dict[str, dict[str, tuple[str, float]]] = {name: {} for name in QUEUES}  # key -> (id, until)

    def new_core(self, floor: str | None) -> Core:
        return Core(
            limits=limits(max_batch=5),
            new_id=TimeOrderedIds(floor),
            new_token=lambda: f"t{next(self.tokens)}",
            track_changes=True,
        )

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    @initialize()
    def make_queues(self) -> None:
        for name in reversed(QUEUES):  # the dead-letter queue first
            self.core.put_queue(
                name,
                visibility_timeout=10,
                max_in_flight=IN_FLIGHT[name],
                delay=QUEUE_DELAY[name],
                retention=RETENTION[name],
                max_receives=MAX_RECEIVES if name == "a" else None,
                dead_letter_queue="dlq" if name == "a" else None,
                now=self.now,
            )
            self.model[name] = {}
        for name in QUEUES:  # a few messages from the start, so that every run has something to deliver
            self.send(name, [(None, 0, None, (), group) for group in ("g1", "g2", "g1")])

    @rule(
        queue=st.sampled_from(QUEUES),
        options=st.lists(
            st.tuples(
                st.sampled_from([None, 0.0, 0.5, 2.0]),
                st.sampled_from([0, 0, -1, 3]),
                st.sampled_from([None, None, "d1", "d2"]),
                st.sampled_from(ATTRIBUTES),
                st.sampled_from(GROUPS),
            ),
            min_size=1,
            max_size=5,
        ),
    )
    def send(
        self, queue: str, options: list[tuple[float | None, int, str | None, tuple[tuple[str, str], ...], str]]
    ) -> None:
        outgoing = []
        for delay, priority, dedup_id, attributes, group in options:
            self.counter += 1
            payload = Payload(f"m{self.counter}".encode(), "text/plain", attributes)
            if queue == FIFO:  # a FIFO queue takes no delay or priority per message
                outgoing.append(Outgoing(payload, None, 0, dedup_id, group))
            else:
                outgoing.append(Outgoing(payload, delay, priority, dedup_id))
        ids = self.core.send_batch(queue, outgoing, now=self.now)
        remembered = self.dedup[queue]
        for message_id, entry in zip(ids, outgoing, strict=True):
            key = entry.dedup_id
            if key is not None and key in remembered and self.now < remembered[key][1]:
                assert message_id == remembered[key][0]  # a repeat: nothing new stored
                continue
            assert message_id not in self.gone
            assert all(message_id not in messages for messages in self.model.values())
            delay = QUEUE_DELAY[queue] if entry.delay is None else entry.delay
            self.model[queue][message_id] = ModelMessage(
                entry.payload.data,
                entry.payload.attributes,
                self.now,
                entry.priority,
                self.now + delay,
                group=entry.group,
                dedup_id=key,
            )
            if key is not None:
                remembered[key] = (message_id, self.now + DEDUP_WINDOW)

    @rule(
        queue=st.sampled_from(QUEUES),
        max_messages=st.integers(1, 5),
        visibility_timeout=st.none() | st.sampled_from([0.5, 1.0, 3.0, 10.0]),
    )
    def receive(self, queue: str, max_messages: int, visibility_timeout: float | None) -> None:
        leases = self.core.receive(
            queue, max_messages=max_messages, visibility_timeout=visibility_timeout, consumer=None, now=self.now
        )
        messages = self.model[queue]
        room = max_messages
        if IN_FLIGHT[queue]:
            room = min(room, IN_FLIGHT[queue] - sum(m.leased(self.now) for m in messages.values()))
        visible = [(m.priority, i) for i, m in messages.items() if not m.leased(self.now) and not m.delayed(self.now)]
        expected = [i for _, i in sorted(visible)][:room]
        if queue == FIFO:  # whole groups, oldest head first, skipping the groups with a message leased
            blocked = {m.group for m in messages.values() if m.leased(self.now)}
            by_group: dict[str | None, list[str]] = {}
            for _, message_id in sorted(visible):
                by_group.setdefault(messages[message_id].group, []).append(message_id)
            open_groups = sorted((ids[0], group) for group, ids in by_group.items() if group not in blocked)
            expected = [i for _, group in open_groups for i in by_group[group]][:room]
        assert [lease.id for lease in leases] == expected
        seconds = 10.0 if visibility_timeout is None else visibility_timeout
        for lease in leases:
            message = messages[lease.id]
            message.receive_count += 1
            if message.first_received_at is None:
                message.first_received_at = self.now
            assert lease.first_received_at == message.first_received_at
            message.receipt = lease.receipt
            message.deadline_at = self.now + seconds
            assert lease.payload.data == message.body
            assert lease.payload.attributes == message.attributes
            assert lease.source_queue == message.source_queue
            assert lease.receive_count == message.receive_count
            assert lease.lease_expires_at == message.deadline_at
            assert all(lease.receipt != known for _, _, known in self.receipts)
            self.receipts.append((queue, lease.id, lease.receipt))

    @precondition(lambda self: self.receipts)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        queue, message_id, receipt = data.draw(st.sampled_from(self.receipts))
        message = self.model[queue].get(message_id)
        try:
            self.core.ack(queue, message_id, receipt, now=self.now)
        except MessageNotFound:
            assert message is None
        except LeaseLost:
            assert message is not None
            assert not (message.receipt == receipt and message.leased(self.now))
        else:
            assert message is not None
            assert message.receipt == receipt
            assert message.leased(self.now)
            del self.model[queue][message_id]
            self.gone.add(message_id)

    @precondition(lambda self: self.receipts)
    @rule(data=st.data(), seconds=st.sampled_from([0.0, 0.5, 2.0, 20.0]))
    def change_visibility(self, data: st.DataObject, seconds: float) -> None:
        queue, message_id, receipt = data.draw(st.sampled_from(self.receipts))
        message = self.model[queue].get(message_id)
        try:
            deadline = self.core.change_visibility(queue, message_id, receipt, seconds, now=self.now)
        except MessageNotFound:
            assert message is None
        except LeaseLost:
            assert message is not None
            assert not (message.receipt == receipt and message.leased(self.now))
        else:
            assert message is not None
            assert message.leased(self.now)
            if seconds == 0:
                assert deadline is None
                message.receipt = None
                self.lease_ended(queue, message_id)
            else:
                assert deadline == self.now + seconds
                message.deadline_at = self.now + seconds

    @rule(queue=st.sampled_from(QUEUES))
    def purge(self, queue: str) -> None:
        assert self.core.purge(queue, now=self.now) == len(self.model[queue])
        self.gone.update(self.model[queue])
        self.model[queue] = {}

    @rule(destination=st.sampled_from([None, None, "b"]), limit=st.integers(1, 5))
    def redrive(self, destination: str | None, limit: int) -> None:
        report = self.core.redrive("dlq", destination=destination, limit=limit, now=self.now)
        messages = self.model["dlq"]
        ready = sorted(
            (m.priority, i) for i, m in messages.items() if not m.leased(self.now) and not m.delayed(self.now)
        )
        moved = skipped = 0
        for _, message_id in ready:
            if moved == limit:
                break
            message = messages[message_id]
            target = destination or message.source_queue
            if target is None:
                skipped += 1
                continue
            del messages[message_id]
            message.receive_count = 0
            message.first_received_at = None
            message.source_queue = None
            message.receipt = None
            self.model[target][message_id] = message
            moved += 1
        assert report == RedriveReport(moved=moved, skipped=skipped)
        self.drop_old()

    def lease_ended(self, queue: str, message_id: str) -> None:
        """A lease of a message in `queue` ended without an ack: after MAX_RECEIVES in "a" it is a dead letter."""
        message = self.model[queue][message_id]
        if queue == "a" and message.receive_count >= MAX_RECEIVES:
            del self.model[queue][message_id]
            message.source_queue = queue
            self.model["dlq"][message_id] = message
            self.drop_old()  # it may be older than the dead-letter queue's retention

    def drop_old(self) -> None:
        for queue, messages in self.model.items():
            for message_id in [i for i, m in messages.items() if m.sent_at + RETENTION[queue] <= self.now]:
                del messages[message_id]
                self.gone.add(message_id)
                self.dropped[queue] += 1

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 2.5, 10.0, 50.0, 300.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.drop_old()
        before = sum(self.expired.values())
        for queue, messages in self.model.items():
            for message_id, message in list(messages.items()):
                if message.receipt is not None and not message.leased(self.now):
                    message.receipt = None  # the lease ended: every later call sees it ready
                    self.expired[queue] += 1
                    self.lease_ended(queue, message_id)
        self.drop_old()  # dead letters older than the dead-letter queue's retention
        # The ticker's part: its sweeps alone (no other call has touched a queue since the jump) end exactly the
        # leases that ended, and leave nothing due anywhere.
        ended = 0
        while self.core.behind(now=self.now):
            ended += self.core.expire(now=self.now)
        assert ended == sum(self.expired.values()) - before
        for queue in QUEUES:
            assert earliest_due(self.core._queues[queue]) > self.now

    @rule()
    def commit(self) -> None:
        self.store.commit(self.core.drain_changes())

    @rule()
    def restart(self) -> None:
        """Commit, then carry on with a new core rebuilt from the journal alone."""
        self.store.commit(self.core.drain_changes())
        snapshot = self.store.load()
        self.core = self.new_core(floor=snapshot.last_id)
        self.core.restore(snapshot)

    @rule()
    def expire(self) -> None:
        # Every call on a queue (the invariant's included) already expires its due leases, so the sweep
        # finds nothing new here; its counting is covered by the unit tests.
        assert self.core.expire(now=self.now) == 0

    @invariant()
    def the_agenda_covers_every_queue(self) -> None:
        for queue in QUEUES:
            state = self.core._queues[queue]
            assert state.due <= earliest_due(state)
            if state.due < math.inf:
                assert (state.due, queue) in self.core._agenda

    @invariant()
    def agree_on_every_message(self) -> None:
        for queue in QUEUES:
            stats = self.core.queue_stats(queue, now=self.now)
            messages = self.model[queue]
            leased = {i for i, m in messages.items() if m.leased(self.now)}
            delayed = {i for i, m in messages.items() if m.delayed(self.now)}
            assert (stats.ready, stats.leased, stats.delayed) == (
                len(messages) - len(leased) - len(delayed),
                len(leased),
                len(delayed),
            )
            assert stats.expired == self.expired[queue]
            assert stats.dropped == self.dropped[queue]
            assert stats.dead_letters == sum(m.source_queue is not None for m in messages.values())
            assert stats.oldest_sent_at == min((m.sent_at for m in messages.values()), default=None)
            page = self.core.peek(queue, state=None, limit=1000, after=None, now=self.now)
            assert [v.id for v in page.messages] == sorted(messages)  # each message once, none gone
            for view in page.messages:
                assert (view.state is State.LEASED) == (view.id in leased)
                assert (view.state is State.DELAYED) == (view.id in delayed)
                assert view.priority == messages[view.id].priority
                assert view.receive_count == messages[view.id].receive_count
                assert view.first_received_at == messages[view.id].first_received_at
                assert view.source_queue == messages[view.id].source_queue
                assert view.payload.attributes == messages[view.id].attributes
                assert view.sent_at == messages[view.id].sent_at
                assert view.group == messages[view.id].group
                assert view.dedup_id == messages[view.id].dedup_id
            assert not self.gone & {v.id for v in page.messages}


def earliest_due(queue: _Queue) -> float:
    """When the queue's first time-driven transition is due, from its messages and dedup ids themselves (not from
    the heaps the core keeps): a lease's end, a delay's end, a drop at retention, a dedup id's expiry."""
    times = [expires_at for _, expires_at in queue.dedup.values()]
    for message in queue.messages.values():
        times.append(message.sent_at + queue.attributes.retention)
        if message.state is State.LEASED and message.deadline_at is not None:
            times.append(message.deadline_at)
        if message.state is State.DELAYED and message.visible_at is not None:
            times.append(message.visible_at)
    return min(times, default=math.inf)


CoreVersusModel.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestCoreVersusModel = CoreVersusModel.TestCase
