"""The journal on its own (a real SQLite file in a temporary directory), and the core's side of it: the changes
it drains and the state it restores."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import limits, text
from wonderq.core import MAX_RETENTION, Core
from wonderq.errors import QueueInUse, StorageFull
from wonderq.ids import TimeOrderedIds
from wonderq.model import DEFAULT_RETENTION, Outgoing, Payload, State, TypedValue
from wonderq.store import DB_NAME, SqliteStore, StoreError, Sync, backup, message_cost

T0 = 1_000.0


def journaled_core(tokens: itertools.count[int] | None = None, floor: str | None = None) -> Core:
    counter = tokens or itertools.count(1)
    return Core(
        limits=limits(), new_id=TimeOrderedIds(floor), new_token=lambda: f"t{next(counter)}", track_changes=True
    )


def reopen(store: SqliteStore, core: Core) -> Core:
    """Commit what `core` changed, load it back and return a fresh core restored from it."""
    store.commit(core.drain_changes())
    snapshot = store.load()
    restored = journaled_core(itertools.count(1000), snapshot.last_id)
    restored.restore(snapshot)
    return restored


def everything(core: Core, now: float) -> list[tuple[object, ...]]:
    """The observable state of every queue: stats and every message (id, state, body, count, lease)."""
    seen: list[tuple[object, ...]] = []
    for stats in core.list_queues(now=now):
        seen.append((stats,))
        page = core.peek(stats.name, state=None, limit=1000, after=None, now=now)
        seen.extend(
            (
                v.id,
                v.state,
                v.payload,
                v.priority,
                v.visible_at,
                v.receive_count,
                v.first_received_at,
                v.lease_expires_at,
                v.consumer,
                v.source_queue,
            )
            for v in page.messages
        )
    return seen


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "data", sync="normal")
    yield opened
    opened.close()


def test_a_new_store_is_empty(store: SqliteStore) -> None:
    snapshot = store.load()
    assert (snapshot.queues, list(snapshot.messages), snapshot.last_id) == ((), [], None)
    assert store.integrity_check() == "ok"


def test_round_trip_keeps_messages_leases_counters_and_attributes(store: SqliteStore) -> None:
    core = journaled_core()
    core.put_queue("jobs", visibility_timeout=7, max_in_flight=5, max_message_bytes=900, now=T0)
    ids = core.send_batch("jobs", [text("a"), Payload(b"\x00\x01", "application/octet-stream"), text("c")], now=T0)
    (leased,) = core.receive("jobs", max_messages=1, visibility_timeout=100, consumer="w1", now=T0)
    (acked,) = core.receive("jobs", max_messages=1, visibility_timeout=None, consumer=None, now=T0)
    core.ack("jobs", acked.id, acked.receipt, now=T0)
    core.send("other", text("x"), now=T0)
    core.put_queue("other", visibility_timeout=None, delay=30, now=T0)
    core.send_batch(
        "other", [Outgoing(text("late"), priority=-2), Outgoing(text("later"), delay=60, priority=4)], now=T0
    )
    before = everything(core, T0)
    restored = reopen(store, core)
    assert everything(restored, T0) == before
    # The lease survived: still invisible, and its receipt still acknowledges it.
    assert restored.peek("jobs", state=State.LEASED, limit=10, after=None, now=T0).messages[0].id == ids[0]
    assert [
        m.payload.data for m in restored.receive("jobs", max_messages=5, visibility_timeout=None, consumer=None, now=T0)
    ] == [b"c"]
    restored.ack("jobs", leased.id, leased.receipt, now=T0 + 99)
    other = [
        (m.payload.data, m.priority)
        for m in restored.receive("other", max_messages=5, visibility_timeout=None, consumer=None, now=T0 + 60)
    ]
    assert other == [(b"late", -2), (b"x", 0), (b"later", 4)]  # delays and priorities survived
    assert restored.queue_stats("other", now=T0 + 60).attributes.delay == 30
    stats = restored.queue_stats("jobs", now=T0 + 99)
    assert (stats.attributes.visibility_timeout, stats.attributes.max_in_flight) == (7, 5)
    assert stats.attributes.max_message_bytes == 900
    assert (stats.sent, stats.acked) == (3, 2)


def test_round_trip_keeps_dead_letters_retention_and_message_attributes(store: SqliteStore) -> None:
    core = journaled_core()
    core.put_queue("dlq", visibility_timeout=None, retention=MAX_RETENTION, now=T0)
    core.put_queue("q", visibility_timeout=5, max_receives=1, dead_letter_queue="dlq", retention=600, now=T0)
    dead, alive = core.send_batch(
        "q",
        [Payload(b"a", "text/plain", (("kind", "d\u00e9j\u00e0"), ("n", ""))), Payload(b"b", "text/plain")],
        now=T0,
    )
    typed = (("bin", TypedValue("Binary.x", b"\x00\xff")), ("n", TypedValue("Number", "1.5")), ("s", "plain"))
    core.send("typed", Payload(b"t", "text/plain", typed), now=T0)
    core.put_queue("typed", visibility_timeout=None, metadata={"tag:team": "core", "sqs:x": "\u00e9"}, now=T0)
    core.receive("q", max_messages=1, visibility_timeout=None, consumer=None, now=T0)
    core.expire(now=T0 + 5)  # `dead` moves to the dead-letter queue
    core.send("old", text("x"), now=T0)
    core.put_queue("old", visibility_timeout=None, retention=60, now=T0)
    core.expire(now=T0 + 60)  # dropped
    before = everything(core, T0 + 60)
    restored = reopen(store, core)
    assert everything(restored, T0 + 60) == before
    stats = restored.queue_stats("q", now=T0 + 60)
    assert (stats.attributes.max_receives, stats.attributes.dead_letter_queue, stats.attributes.retention) == (
        1,
        "dlq",
        600,
    )
    assert (stats.dead_lettered, restored.queue_stats("old", now=T0 + 60).dropped) == (1, 1)
    (view,) = restored.peek("dlq", state=None, limit=10, after=None, now=T0 + 60).messages
    assert (view.id, view.source_queue, view.payload.attributes) == (dead, "q", (("kind", "d\u00e9j\u00e0"), ("n", "")))
    (kept,) = restored.peek("typed", state=None, limit=10, after=None, now=T0 + 60).messages
    assert kept.payload.attributes == typed
    assert restored.queue_stats("typed", now=T0 + 60).attributes.metadata == (("sqs:x", "\u00e9"), ("tag:team", "core"))
    with pytest.raises(QueueInUse):  # the dead-letter queue is still known to be named after the restart
        restored.delete_queue("dlq", now=T0 + 60)
    assert restored.redrive("dlq", destination=None, limit=10, now=T0 + 60).moved == 1
    again = reopen(store, restored)
    assert [v.id for v in again.peek("q", state=None, limit=10, after=None, now=T0 + 60).messages] == [dead, alive]
    assert again.queue_stats("dlq", now=T0 + 60).redriven == 1
    assert again.queue_stats("q", now=T0 + 600).dropped == 2  # retention still counts from the first send


def test_a_lease_past_its_deadline_ends_after_the_restart(store: SqliteStore) -> None:
    core = journaled_core()
    core.send("q", text("x"), now=T0)
    (lease,) = core.receive("q", max_messages=1, visibility_timeout=10, consumer=None, now=T0)
    restored = reopen(store, core)
    assert restored.queue_stats("q", now=T0 + 9.999).leased == 1
    (again,) = restored.receive("q", max_messages=1, visibility_timeout=None, consumer=None, now=T0 + 10)
    assert (again.id, again.receive_count) == (lease.id, 2)
    assert reopen(store, restored).queue_stats("q", now=T0 + 10).expired == 1


def test_purge_delete_and_recreate_in_one_batch(store: SqliteStore) -> None:
    core = journaled_core()
    core.send_batch("a", [text("1"), text("2")], now=T0)
    core.send("b", text("keep"), now=T0)
    store.commit(core.drain_changes())
    core.send("a", text("3"), now=T0)  # inserted and purged in the same batch: never stored
    core.purge("a", now=T0)
    core.send("a", text("4"), now=T0)  # after the purge: stored
    core.delete_queue("b", now=T0)
    core.put_queue("b", visibility_timeout=3, now=T0)
    restored = reopen(store, core)
    assert everything(restored, T0) == everything(core, T0)
    assert [m.payload.data for m in restored.peek("a", state=None, limit=10, after=None, now=T0).messages] == [b"4"]
    assert restored.queue_stats("b", now=T0).ready == 0


def test_deleted_queue_is_gone_after_restart(store: SqliteStore) -> None:
    core = journaled_core()
    core.send("gone", text("x"), now=T0)
    store.commit(core.drain_changes())
    core.delete_queue("gone", now=T0)
    assert reopen(store, core).list_queues(now=T0) == []


def test_ids_stay_unique_across_a_restart_even_if_the_clock_goes_back(store: SqliteStore) -> None:
    core = journaled_core()
    first = core.send("q", text("x"), now=T0)
    restored = reopen(store, core)
    second = restored.send("q", text("y"), now=T0 - 500)
    assert second > first


def test_drain_is_empty_without_changes_and_clears_the_marks() -> None:
    core = journaled_core()
    assert not core.drain_changes()
    core.send("q", text("x"), now=T0)
    assert core.drain_changes()
    assert not core.drain_changes()
    core.queue_stats("q", now=T0)  # reading changes nothing
    assert not core.drain_changes()


def test_a_core_without_tracking_drains_nothing() -> None:
    core = Core(limits=limits(), new_id=TimeOrderedIds(), new_token=lambda: "t")
    core.send("q", text("x"), now=T0)
    assert not core.drain_changes()


def test_room_shrinks_with_what_is_stored_and_grows_back(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path, sync="normal", max_bytes=1024 * 1024)
    try:
        empty = store.room()
        assert empty is not None
        assert 0 < empty <= 1024 * 1024
        core = journaled_core()
        body = Payload(b"x" * 1000, "application/octet-stream")
        for _ in range(10):
            core.send_batch("q", [body] * 10, now=T0)
        store.commit(core.drain_changes())
        filled = store.room()
        assert filled is not None
        assert empty - filled >= 100 * message_cost(body) * 0.8  # about what `message_cost` counts
        core.purge("q", now=T0)
        store.commit(core.drain_changes())
        assert (store.room() or 0) > filled
    finally:
        store.close()
    assert SqliteStore(tmp_path / "unlimited").room() is None


def test_past_the_hard_limit_a_commit_is_refused_whole(tmp_path: Path) -> None:
    """`max_bytes` plus headroom is SQLite's own page limit: what stands for a full disk in tests."""
    store = SqliteStore(tmp_path, sync="normal", max_bytes=16 * 1024)
    try:
        core = journaled_core()
        core.send("q", text("small"), now=T0)
        store.commit(core.drain_changes())
        big = [Payload(b"x" * 1000, "application/octet-stream")] * 10
        for _ in range(500):  # 5 MB: past max_bytes * 1.25 + 4 MiB
            core.send_batch("q", big, now=T0)
        with pytest.raises(StorageFull):
            store.commit(core.drain_changes())
        snapshot = store.load()
        assert [m.payload.data for m in list(snapshot.messages)] == [b"small"]  # nothing of the failed commit
        assert store.integrity_check() == "ok"
    finally:
        store.close()


def test_a_second_server_cannot_open_the_same_directory(store: SqliteStore) -> None:
    with pytest.raises(StoreError, match="in use by another WonderQ server"):
        SqliteStore(store.data_dir)


def test_the_lock_is_released_on_close(tmp_path: Path) -> None:
    SqliteStore(tmp_path).close()
    SqliteStore(tmp_path).close()


def test_an_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError, match="cannot use the data directory"):
        SqliteStore(tmp_path / "file" / "data")


def test_a_file_that_is_not_a_store_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StoreError, match="cannot open the store"):
        SqliteStore(tmp_path)
    SqliteStore(tmp_path / "elsewhere").close()  # and the lock of the failed attempt was released
    with pytest.raises(StoreError, match="cannot open the store"):
        SqliteStore(tmp_path)


def test_a_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    SqliteStore(tmp_path).close()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("UPDATE meta SET value = '999' WHERE key = 'schema'")
    with pytest.raises(StoreError, match="schema version 999"):
        SqliteStore(tmp_path)


SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE queues (
    name TEXT PRIMARY KEY, visibility_timeout REAL NOT NULL, max_in_flight INTEGER NOT NULL, delay REAL NOT NULL,
    max_message_bytes INTEGER NOT NULL, created_at REAL NOT NULL, sent INTEGER NOT NULL, received INTEGER NOT NULL,
    acked INTEGER NOT NULL, expired INTEGER NOT NULL, released INTEGER NOT NULL
);
CREATE TABLE dedup (
    queue TEXT NOT NULL, dedup_id TEXT NOT NULL, message_id INTEGER NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (queue, dedup_id)
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY, queue TEXT NOT NULL, body BLOB NOT NULL, content_type TEXT NOT NULL,
    priority INTEGER NOT NULL, sent_at REAL NOT NULL, visible_at REAL, receive_count INTEGER NOT NULL,
    first_received_at REAL, receipt TEXT, deadline_at REAL, consumer TEXT
);
INSERT INTO meta VALUES ('schema', '1'), ('last_id', '00000000000003e9');
INSERT INTO queues VALUES ('jobs', 7.0, 2, 0.0, 0, 1000.0, 2, 1, 0, 0, 0);
INSERT INTO messages VALUES (1000, 'jobs', X'6869', 'text/plain', 0, 1000.0, NULL, 1, 1000.0, '3e8.t1', 1030.0, 'w');
INSERT INTO messages VALUES (1001, 'jobs', X'7468657265', 'text/plain', 0, 1000.0, NULL, 0, NULL, NULL, NULL, NULL);
"""  # the layout of WonderQ's first store, with two messages (one leased)


def test_a_store_of_schema_1_is_migrated_and_keeps_everything(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.executescript(SCHEMA_1)
    store = SqliteStore(tmp_path)
    try:
        core = journaled_core(floor=store.load().last_id)
        core.restore(store.load())
        stats = core.queue_stats("jobs", now=T0)
        assert (stats.attributes.visibility_timeout, stats.attributes.max_in_flight) == (7, 2)
        assert (stats.attributes.retention, stats.attributes.max_receives, stats.attributes.dead_letter_queue) == (
            DEFAULT_RETENTION,
            0,
            None,
        )
        assert (stats.ready, stats.leased, stats.sent, stats.dropped) == (1, 1, 2, 0)
        views = core.peek("jobs", state=None, limit=10, after=None, now=T0).messages
        assert [(v.payload, v.receive_count, v.consumer, v.source_queue) for v in views] == [
            (Payload(b"hi", "text/plain"), 1, "w", None),
            (Payload(b"there", "text/plain"), 0, None, None),
        ]
        core.ack("jobs", views[0].id, "3e8.t1", now=T0)  # a receipt from before the migration still works
        core.send("jobs", Payload(b"new", "text/plain", (("k", "v"),)), now=T0)
        store.commit(core.drain_changes())
    finally:
        store.close()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("2",)
    reopened = SqliteStore(tmp_path)  # a migrated store opens as it is
    try:
        messages = list(reopened.load().messages)
        assert [(m.payload.data, m.payload.attributes) for m in messages] == [(b"there", ()), (b"new", (("k", "v"),))]
    finally:
        reopened.close()


def test_a_failed_migration_leaves_the_store_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.executescript(SCHEMA_1)
    broken = {"1": ("2", ["ALTER TABLE queues ADD COLUMN retention REAL", "ALTER TABLE nowhere ADD COLUMN x"])}
    monkeypatch.setattr("wonderq.store.MIGRATIONS", broken)
    with pytest.raises(StoreError, match="nowhere"):
        SqliteStore(tmp_path)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("1",)
        columns = [row[1] for row in db.execute("PRAGMA table_info(queues)")]
    assert "retention" not in columns  # the first statement was rolled back too


def test_compaction_gives_the_disk_back_after_a_drain(store: SqliteStore) -> None:
    core = journaled_core()
    body = Payload(b"x" * 900, "application/octet-stream")
    for _ in range(40):
        core.send_batch("q", [body] * 10, now=T0)
        store.commit(core.drain_changes())
    store.compact()
    full = store.path.stat().st_size
    while leases := core.receive("q", max_messages=10, visibility_timeout=None, consumer=None, now=T0):
        for lease in leases:
            core.ack("q", lease.id, lease.receipt, now=T0)
        store.commit(core.drain_changes())
    report = store.compact()
    assert report.freed_pages > 0
    assert report.file_bytes < full / 4
    assert (store.data_dir / f"{DB_NAME}-wal").stat().st_size == 0
    assert store.integrity_check() == "ok"


def test_backup_is_a_consistent_copy_while_the_store_is_open(store: SqliteStore, tmp_path: Path) -> None:
    core = journaled_core()
    core.send_batch("q", [text("a"), text("b")], now=T0)
    store.commit(core.drain_changes())
    assert backup(store.data_dir, tmp_path / "copy.db") == 2
    copy_dir = tmp_path / "restored"
    copy_dir.mkdir()
    (tmp_path / "copy.db").rename(copy_dir / DB_NAME)
    copied = SqliteStore(copy_dir)
    try:
        assert [m.payload for m in list(copied.load().messages)] == [text("a"), text("b")]
    finally:
        copied.close()
    with pytest.raises(StoreError, match="exists"):
        backup(store.data_dir, copy_dir / DB_NAME)
    with pytest.raises(StoreError, match="no WonderQ store"):
        backup(tmp_path / "nothing", tmp_path / "x.db")


def test_dedup_ids_survive_a_restart_and_expire_from_the_store(store: SqliteStore) -> None:
    core = journaled_core()
    first = core.send("q", Outgoing(text("x"), dedup_id="k"), now=T0)
    core.send("gone", Outgoing(text("x"), dedup_id="k"), now=T0)
    store.commit(core.drain_changes())
    core.delete_queue("gone", now=T0)
    restored = reopen(store, core)
    assert restored.send("q", Outgoing(text("retry"), dedup_id="k"), now=T0 + 10) == first
    assert restored.queue_stats("q", now=T0 + 10).sent == 1
    assert [d.queue for d in store.load().dedup] == ["q"]  # the deleted queue's ids went with it
    assert restored.expire(now=T0 + 300) == 0
    changes = restored.drain_changes()
    assert changes.dedup_expired == (("q", "k"),)
    store.commit(changes)
    assert store.load().dedup == ()


def test_loaded_messages_sent_at_one_time_share_one_float(store: SqliteStore) -> None:
    core = journaled_core()
    core.send_batch("q", [text("a"), text("b")], now=T0 + 0.5)
    core.send("q", text("c"), now=T0 + 1.5)
    store.commit(core.drain_changes())
    a, b, c = store.load().messages
    assert a.sent_at is b.sent_at  # as the two sends of one batch held it before the restart
    assert (b.sent_at, c.sent_at) == (T0 + 0.5, T0 + 1.5)


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_a_commit_without_fsync_relaxes_only_its_own_transaction(tmp_path: Path, sync: Sync) -> None:
    store = SqliteStore(tmp_path, sync=sync)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    core = journaled_core()
    core.send("q", text("x"), now=1_000)
    store.commit(core.drain_changes(), fsync=False)
    core.receive("q", max_messages=1, visibility_timeout=30, consumer=None, now=1_001)
    store.commit(core.drain_changes())
    relaxed = [s for s in statements if s.startswith("PRAGMA synchronous")]
    if sync == "full":  # only the first commit went without the fsync, and FULL is back for the next
        assert relaxed == ["PRAGMA synchronous = NORMAL", "PRAGMA synchronous = FULL"]
        assert statements.index("PRAGMA synchronous = FULL") < statements.index("BEGIN IMMEDIATE", 2)
    else:  # NORMAL never fsyncs a commit: nothing to relax
        assert relaxed == []
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == (2 if sync == "full" else 1)
    assert [m.receipt is not None for m in store.load().messages] == [True]
    store.close()
