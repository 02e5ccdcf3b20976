"""The actor with a journal, on trio's virtual clock: group commit, no reply before the commit, and a failed
commit that changes nothing."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from quart.typing import TestClientProtocol as Client
from trio.testing import MockClock

from tests.helpers import EPOCH, inline, limits, settings, text
from wonderq.actor import Actor, ActorHandle
from wonderq.clock import WallClock
from wonderq.commands import Ack, ChangeVisibility, Compact, GetQueue, PutQueue, Receive, Send
from wonderq.core import Core
from wonderq.errors import StorageFull, StorageUnavailable
from wonderq.ids import TimeOrderedIds
from wonderq.model import Changes, MessageRecord, Snapshot
from wonderq.store import SqliteStore
from wonderq.web import create_app


class RecordingJournal:
    """A real store that also records each commit, and fails the next commits on request."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.commits: list[Changes] = []
        self.fsyncs: list[bool] = []  # the fsync flag of each commit
        self.fail_next = 0

    def load(self) -> Snapshot:
        return self.store.load()

    def commit(self, changes: Changes, *, fsync: bool = True) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise StorageUnavailable("simulated I/O error")
        self.store.commit(changes, fsync=fsync)
        self.commits.append(changes)
        self.fsyncs.append(fsync)

    def compact(self) -> object:
        return self.store.compact()

    def room(self) -> int | None:
        return self.store.room()


def stored(journal: RecordingJournal) -> list[MessageRecord]:
    return list(journal.store.load().messages)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[RecordingJournal]:
    store = SqliteStore(tmp_path, sync="normal")
    yield RecordingJournal(store)
    store.close()


def journaled_core(**overrides: Any) -> Core:
    tokens = itertools.count(1)
    return Core(
        limits=limits(**overrides), new_id=TimeOrderedIds(), new_token=lambda: f"t{next(tokens)}", track_changes=True
    )


@asynccontextmanager
async def journaled_actor(journal: RecordingJournal) -> AsyncIterator[ActorHandle]:
    actor = Actor(journaled_core(), WallClock(offset=EPOCH - trio.current_time()), journal=journal, run_blocking=inline)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        yield actor.handle
        nursery.cancel_scope.cancel()


async def test_every_change_is_committed_before_its_reply(journal: RecordingJournal, autojump_clock: MockClock) -> None:
    async with journaled_actor(journal) as handle:
        (message_id,) = await handle.ask(Send("q", (text("x"),)))
        assert [m.id for m in stored(journal)] == [message_id]  # durable when the reply came
        (lease,) = await handle.ask(Receive("q", visibility_timeout=60))
        assert stored(journal)[0].receipt == lease.receipt
        await handle.ask(Ack("q", lease.id, lease.receipt))
        assert stored(journal) == []
        assert journal.store.load().queues[0].acked == 1


async def test_only_a_batch_of_lease_changes_goes_without_an_fsync(
    journal: RecordingJournal, autojump_clock: MockClock
) -> None:
    async with journaled_actor(journal) as handle:
        (first, second) = await handle.ask(Send("q", (text("a"), text("b"))))
        (lease,) = await handle.ask(Receive("q", visibility_timeout=60))
        await handle.ask(ChangeVisibility("q", lease.id, lease.receipt, 120))
        await handle.ask(Ack("q", lease.id, lease.receipt))
        assert journal.fsyncs == [True, False, False, True]  # send, receive, extend, ack
        async with trio.open_nursery() as nursery:  # a receive and a send in one batch: fsynced
            nursery.start_soon(handle.ask, Receive("q", visibility_timeout=60))
            nursery.start_soon(handle.ask, Send("q", (text("c"),)))
        assert journal.fsyncs[4:] == [True]
        assert [m.id for m in stored(journal) if m.receipt] == [second]
        await handle.ask(PutQueue("other"))
        assert journal.fsyncs[-1] is True
    assert first < second


async def test_reads_commit_nothing(journal: RecordingJournal, autojump_clock: MockClock) -> None:
    async with journaled_actor(journal) as handle:
        await handle.ask(Send("q", (text("x"),)))
        before = len(journal.commits)
        await handle.ask(GetQueue("q"))
        assert await handle.ask(Receive("q", visibility_timeout=5)) != []
        assert len(journal.commits) == before + 1
        await handle.ask(GetQueue("q"))
        assert len(journal.commits) == before + 1


async def test_concurrent_commands_share_commits(journal: RecordingJournal, autojump_clock: MockClock) -> None:
    async with journaled_actor(journal) as handle, trio.open_nursery() as nursery:
        for index in range(100):
            nursery.start_soon(handle.ask, Send("q", (text(str(index)),)))
    assert len(stored(journal)) == 100
    assert len(journal.commits) < 100  # group commit: one transaction carried several sends
    statistics = handle.statistics()
    assert statistics.commits == len(journal.commits)


async def test_a_failed_commit_fails_every_change_in_its_batch_and_undoes_them(
    journal: RecordingJournal, autojump_clock: MockClock
) -> None:
    async with journaled_actor(journal) as handle:
        (kept,) = await handle.ask(Send("q", (text("kept"),)))
        journal.fail_next = 1
        with pytest.raises(StorageUnavailable):
            await handle.ask(Send("q", (text("lost"),)))
        journal.fail_next = 1
        with pytest.raises(StorageUnavailable):  # the lease it took is undone with the rest
            await handle.ask(Receive("q", visibility_timeout=60))
        stats = await handle.ask(GetQueue("q"))
        assert (stats.ready, stats.leased, stats.sent, stats.received) == (1, 0, 1, 0)  # memory = disk again
        (lease,) = await handle.ask(Receive("q", visibility_timeout=60))
        assert (lease.id, lease.receive_count) == (kept, 1)


async def test_a_long_poll_served_in_a_failed_batch_gets_the_error_and_no_lease(
    journal: RecordingJournal, autojump_clock: MockClock
) -> None:
    async with journaled_actor(journal) as handle:
        await handle.ask(Send("q", (text("first"),)))
        await handle.ask(Receive("q", visibility_timeout=60))
        results: list[BaseException] = []

        async def poll() -> None:
            try:
                await handle.ask(Receive("q", wait=20))
            except StorageUnavailable as error:
                results.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await trio.sleep(1)
            journal.fail_next = 1
            with pytest.raises(StorageUnavailable):
                await handle.ask(Send("q", (text("second"),)))
        assert len(results) == 1
        assert (await handle.ask(GetQueue("q"))).ready == 0  # "second" was never stored


async def test_compact_runs_in_the_actor(journal: RecordingJournal, autojump_clock: MockClock) -> None:
    async with journaled_actor(journal) as handle:
        await handle.ask(Send("q", (text("x"),)))
        await handle.ask(Compact())
        assert journal.store.integrity_check() == "ok"


async def test_a_full_store_is_507_over_http(tmp_path: Path, autojump_clock: MockClock) -> None:
    store = SqliteStore(tmp_path, sync="normal", max_bytes=48 * 1024)
    app_settings = settings(max_message_bytes=4096, max_batch=10)
    actor = Actor(
        journaled_core(max_message_bytes=4096),
        WallClock(offset=EPOCH - trio.current_time()),
        journal=store,
        run_blocking=inline,
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(actor.run)
            app = create_app(actor.handle, app_settings)
            async with app.test_app() as test_app:
                client: Client = test_app.test_client()
                statuses = []
                for _ in range(40):
                    reply = await client.post(
                        "/v1/queues/q/messages", data=b"x" * 4000, headers={"content-type": "text/plain"}
                    )
                    statuses.append(reply.status_code)
                    if reply.status_code == 507:
                        body = await reply.get_json()
                        assert body["error"]["code"] == "insufficient_storage"
                        break
                assert statuses[-1] == 507
                stats = await (await client.get("/v1/queues/q")).get_json()
                assert stats["ready"] == stats["sent"] == len(statuses) - 1  # the refused one is not there
                # Acks still work when full, and free room for new messages.
                reply = await client.post("/v1/queues/q/receive", json={"max": 10})
                receipts = [m["receipt"] for m in (await reply.get_json())["messages"]]
                assert (await client.post("/v1/queues/q/ack", json={"receipts": receipts})).status_code == 200
                reply = await client.post("/v1/queues/q/messages", data=b"y", headers={"content-type": "text/plain"})
                assert reply.status_code == 201
            nursery.cancel_scope.cancel()
    finally:
        store.close()


async def test_a_storage_error_in_the_ticker_does_not_stop_the_server(
    journal: RecordingJournal, autojump_clock: MockClock
) -> None:
    from functools import partial

    from wonderq.ticker import run_ticker

    async with journaled_actor(journal) as handle, trio.open_nursery() as nursery:
        await handle.ask(Send("q", (text("x"),)))
        await handle.ask(Receive("q", visibility_timeout=1))
        journal.fail_next = 3
        nursery.start_soon(partial(run_ticker, handle, interval=0.1))
        await trio.sleep(2)  # the first expiry commits fail, a later one succeeds
        assert journal.fail_next == 0
        assert stored(journal)[0].receipt is None
        nursery.cancel_scope.cancel()
    assert StorageFull.status == 507


def test_a_journal_needs_a_core_that_tracks_its_changes(journal: RecordingJournal) -> None:
    untracked = Core(limits=limits(), new_id=TimeOrderedIds(), new_token=lambda: "t")
    with pytest.raises(ValueError, match="track_changes"):
        Actor(untracked, WallClock(offset=0.0), journal=journal)
