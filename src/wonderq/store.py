"""The journal: WonderQ's durable state in SQLite (WAL mode) inside the data directory.

The actor drives it and nothing else: `load` once at start-up, `commit` once per actor batch (the changes the
core drained, in one transaction, from a worker thread), `compact` now and then. It knows tables and rows,
never queue rules. The data directory holds `wonderq.db` (plus SQLite's `-wal` and `-shm` files) and
`wonderq.lock`, which an exclusive lock keeps to one server at a time.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Literal

from wonderq.errors import StorageFull, StorageUnavailable, WonderQError
from wonderq.ids import ID_HEX_DIGITS
from wonderq.model import (
    DEFAULT_RETENTION,
    NO_ATTRIBUTES,
    Attributes,
    AttributeValue,
    Changes,
    DedupRecord,
    MessageRecord,
    Payload,
    QueueRecord,
    Snapshot,
    TypedValue,
)

SCHEMA_VERSION = "2"
ID_FORMAT = f"0{ID_HEX_DIGITS}x"  # a stored id (an integer) back to its 16 hex digits
DB_NAME = "wonderq.db"
LOCK_NAME = "wonderq.lock"
SQLITE_FULL = 13  # sqlite3 result code: database or disk is full
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes of WAL file kept after a checkpoint; the rest is truncated
WAL_CHECKPOINT_PAGES = 8192  # 32 MiB of 4 KiB pages
ROW_OVERHEAD = 200  # bytes a stored message costs beyond its body (row, id index, queue index), a safe guess
HEADROOM = 0.25  # share of max_bytes (plus HEADROOM_BYTES) kept for leases and acks once sends are refused
HEADROOM_BYTES = 4 * 1024 * 1024

Sync = Literal["full", "normal"]

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    visibility_timeout REAL NOT NULL,
    max_in_flight INTEGER NOT NULL,
    delay REAL NOT NULL,
    max_message_bytes INTEGER NOT NULL,
    created_at REAL NOT NULL,
    sent INTEGER NOT NULL,
    received INTEGER NOT NULL,
    acked INTEGER NOT NULL,
    expired INTEGER NOT NULL,
    released INTEGER NOT NULL,
    retention REAL NOT NULL DEFAULT {DEFAULT_RETENTION},
    max_receives INTEGER NOT NULL DEFAULT 0,
    dead_letter_queue TEXT,
    dropped INTEGER NOT NULL DEFAULT 0,
    dead_lettered INTEGER NOT NULL DEFAULT 0,
    redriven INTEGER NOT NULL DEFAULT 0,
    metadata TEXT  -- a JSON object of strings; NULL when empty
);
CREATE TABLE IF NOT EXISTS dedup (
    queue TEXT NOT NULL,
    dedup_id TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (queue, dedup_id)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,  -- the message id (16 hex digits) as a number: the rowid, so no extra index
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    content_type TEXT NOT NULL,
    priority INTEGER NOT NULL,
    sent_at REAL NOT NULL,
    visible_at REAL,
    receive_count INTEGER NOT NULL,
    first_received_at REAL,
    receipt TEXT,
    deadline_at REAL,
    consumer TEXT,
    attributes TEXT,  -- JSON: name to text, or to an object of type and text (or base64); NULL when none
    source_queue TEXT,  -- the queue it was dead-lettered from
    message_group TEXT,  -- its message group (what orders a FIFO queue)
    dedup_id TEXT  -- the dedup id it was sent with
);
"""

# How each older schema version becomes the next one: the statements run in one transaction at start-up. The
# columns they add are the ones SCHEMA ends its tables with, in the same order.
MIGRATIONS: dict[str, tuple[str, list[str]]] = {
    "1": (
        "2",
        [
            f"ALTER TABLE queues ADD COLUMN retention REAL NOT NULL DEFAULT {DEFAULT_RETENTION}",
            "ALTER TABLE queues ADD COLUMN max_receives INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE queues ADD COLUMN dead_letter_queue TEXT",
            "ALTER TABLE queues ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE queues ADD COLUMN dead_lettered INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE queues ADD COLUMN redriven INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE queues ADD COLUMN metadata TEXT",
            "ALTER TABLE messages ADD COLUMN attributes TEXT",
            "ALTER TABLE messages ADD COLUMN source_queue TEXT",
            "ALTER TABLE messages ADD COLUMN message_group TEXT",
            "ALTER TABLE messages ADD COLUMN dedup_id TEXT",
        ],
    ),
}
QUEUE_COLUMNS = (
    "name, visibility_timeout, max_in_flight, delay, max_message_bytes, created_at, sent, received, acked, expired,"
    " released, retention, max_receives, dead_letter_queue, dropped, dead_lettered, redriven, metadata"
)  # in QueueRecord's field order
MESSAGE_COLUMNS = (
    "id, queue, body, content_type, priority, sent_at, visible_at, receive_count, first_received_at, receipt,"
    " deadline_at, consumer, attributes, source_queue, message_group, dedup_id"
)

DELETE_MESSAGE = "DELETE FROM messages WHERE id = ?"
INSERT_MESSAGE = f"INSERT OR REPLACE INTO messages ({MESSAGE_COLUMNS}) VALUES ({', '.join('?' * 16)})"
UPDATE_MESSAGE = (
    "UPDATE messages SET queue = ?, source_queue = ?, visible_at = ?, receive_count = ?,"
    " first_received_at = ?, receipt = ?, deadline_at = ?, consumer = ? WHERE id = ?"
)
INSERT_QUEUE = f"INSERT OR REPLACE INTO queues ({QUEUE_COLUMNS}) VALUES ({', '.join('?' * 18)})"


class StoreError(Exception):
    """The data directory cannot be used: the server must not start. The message says why and where."""


@dataclass(frozen=True, slots=True)
class CompactReport:
    freed_pages: int
    file_bytes: int  # size of wonderq.db after compaction


class SqliteStore:
    """One data directory, opened exclusively. Not thread-safe: the actor calls one method at a time."""

    def __init__(self, data_dir: Path, *, sync: Sync = "full", max_bytes: int = 0) -> None:
        self.data_dir = data_dir
        self.path = data_dir / DB_NAME
        self.max_bytes = max_bytes  # what sends may fill; 0 for no limit
        self._full = sync == "full"
        self._used_bytes = 0
        self._lock = _lock_directory(data_dir)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes effect on a new file
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.path}: cannot use SQLite's WAL mode here (got {mode!r})")
            # FULL: the WAL is fsynced at every commit. NORMAL: only at checkpoints, so a power loss may undo
            # the last commits, though a crash of the process never does.
            self._db.execute(f"PRAGMA synchronous = {'FULL' if sync == 'full' else 'NORMAL'}")
            self._db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            # Checkpoint (copy the WAL into the main file, with an fsync) every WAL_CHECKPOINT_PAGES pages rather
            # than SQLite's 1,000: fewer stalls inside commits; compaction checkpoints on its own schedule too.
            self._db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
            if max_bytes:
                # The hard limit leaves headroom above what sends may fill, so that a full store can still
                # lease and acknowledge its messages, which is how it empties.
                hard_limit = int(max_bytes * (1 + HEADROOM)) + HEADROOM_BYTES
                page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
                self._db.execute(f"PRAGMA max_page_count = {max(1, hard_limit // page_size)}")
            self._open_schema()
            self._measure()
        except (sqlite3.Error, StoreError) as error:
            if hasattr(self, "_db"):
                self._db.close()
            self._unlock()
            if isinstance(error, StoreError):
                raise
            raise StoreError(f"{self.path}: cannot open the store: {error}") from None

    def _open_schema(self) -> None:
        """Create the tables in a new file, or bring an older file's tables up to SCHEMA_VERSION."""
        db = self._db
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is not None
        found = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() if exists else None
        if found is None:
            if exists and db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages'").fetchone():
                raise StoreError(f"{self.path}: the store has no schema version")
            db.executescript(SCHEMA)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            return
        version = found[0]
        if version != SCHEMA_VERSION and version not in MIGRATIONS:
            raise StoreError(f"{self.path}: schema version {version}, this WonderQ reads {SCHEMA_VERSION}")
        if version == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            while version != SCHEMA_VERSION:
                version, statements = MIGRATIONS[version]
                for statement in statements:
                    db.execute(statement)
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def load(self) -> Snapshot:
        """Everything stored. The messages are streamed from the file in id order as they are consumed, so the
        whole store never sits in memory twice; consume them before the next call on this store."""
        queues = tuple(
            replace(QueueRecord(*row[:-1]), metadata=tuple(json.loads(row[-1]).items()) if row[-1] else ())
            for row in self._db.execute(f"SELECT {QUEUE_COLUMNS} FROM queues")
        )
        last = self._db.execute("SELECT value FROM meta WHERE key = 'last_id'").fetchone()
        dedup = tuple(
            DedupRecord(queue, dedup_id, format(message_id, ID_FORMAT), expires_at)
            for queue, dedup_id, message_id, expires_at in self._db.execute(
                "SELECT queue, dedup_id, message_id, expires_at FROM dedup"
            )
        )
        return Snapshot(queues=queues, messages=self._messages(), last_id=last[0] if last else None, dedup=dedup)

    def _messages(self) -> Iterator[MessageRecord]:
        media_types: dict[str, str] = {}  # one string per content type, not one per message
        groups: dict[str, str] = {}  # one string per message group, likewise
        sent: float = 0.0  # the previous row's send time: one float for a batch's messages, as before the restart
        rows = self._db.execute(f"SELECT {MESSAGE_COLUMNS} FROM messages ORDER BY id")
        for (
            number,
            queue,
            body,
            media_type,
            priority,
            sent_at,
            visible_at,
            receive_count,
            first_received_at,
            receipt,
            deadline_at,
            consumer,
            attributes,
            source_queue,
            group,
            dedup_id,
        ) in rows:
            yield MessageRecord(
                format(number, ID_FORMAT),
                queue,
                Payload(
                    body,
                    media_types.setdefault(media_type, media_type),
                    NO_ATTRIBUTES if attributes is None else _load_attributes(attributes),
                ),
                priority,
                sent if sent_at == sent else (sent := sent_at),
                visible_at,
                receive_count,
                first_received_at,
                receipt,
                deadline_at,
                consumer,
                source_queue,
                group if group is None else groups.setdefault(group, group),
                dedup_id,
            )

    def commit(self, changes: Changes, *, fsync: bool = True) -> None:
        """Apply `changes` in one transaction, durably (per the sync level) before returning. With
        `fsync=False` the transaction is written to the WAL but not fsynced even at the `full` level: a crash of
        the process cannot lose it, a power loss can, until the next fsynced commit syncs the WAL file with it
        (the WAL is one file, replayed in order: a later commit never survives without an earlier one).

        Raises StorageFull or StorageUnavailable, and then nothing of `changes` is stored."""
        db = self._db
        relax = self._full and not fsync
        try:
            if relax:
                db.execute("PRAGMA synchronous = NORMAL")
            db.execute("BEGIN IMMEDIATE")
            # Only the statements this batch needs (an empty executemany still looks its statement up and resets
            # it); the SQL texts are constants, so sqlite3's statement cache hands back the prepared statements.
            if changes.deleted_messages:
                db.executemany(DELETE_MESSAGE, ((int(i, 16),) for i in changes.deleted_messages))
            if changes.inserted_messages:
                db.executemany(
                    INSERT_MESSAGE,
                    (
                        (
                            int(m.id, 16),
                            m.queue,
                            m.payload.data,
                            m.payload.content_type,
                            m.priority,
                            m.sent_at,
                            m.visible_at,
                            m.receive_count,
                            m.first_received_at,
                            m.receipt,
                            m.deadline_at,
                            m.consumer,
                            _dump_attributes(m.payload.attributes) if m.payload.attributes else None,
                            m.source_queue,
                            m.group,
                            m.dedup_id,
                        )
                        for m in changes.inserted_messages
                    ),
                )
            if changes.updated_messages:
                db.executemany(
                    UPDATE_MESSAGE,
                    (
                        (
                            m.queue,
                            m.source_queue,
                            m.visible_at,
                            m.receive_count,
                            m.first_received_at,
                            m.receipt,
                            m.deadline_at,
                            m.consumer,
                            int(m.id, 16),
                        )
                        for m in changes.updated_messages
                    ),
                )
            if changes.deleted_queues:
                db.executemany("DELETE FROM queues WHERE name = ?", ((name,) for name in changes.deleted_queues))
                db.executemany("DELETE FROM dedup WHERE queue = ?", ((name,) for name in changes.deleted_queues))
            if changes.dedup_expired:
                db.executemany("DELETE FROM dedup WHERE queue = ? AND dedup_id = ?", changes.dedup_expired)
            if changes.queues:
                db.executemany(
                    INSERT_QUEUE,
                    (
                        (
                            q.name,
                            q.visibility_timeout,
                            q.max_in_flight,
                            q.delay,
                            q.max_message_bytes,
                            q.created_at,
                            q.sent,
                            q.received,
                            q.acked,
                            q.expired,
                            q.released,
                            q.retention,
                            q.max_receives,
                            q.dead_letter_queue,
                            q.dropped,
                            q.dead_lettered,
                            q.redriven,
                            json.dumps(dict(q.metadata), ensure_ascii=False) if q.metadata else None,
                        )
                        for q in changes.queues
                    ),
                )
            if changes.dedup:
                db.executemany(
                    "INSERT OR REPLACE INTO dedup VALUES (?, ?, ?, ?)",
                    ((d.queue, d.dedup_id, int(d.message_id, 16), d.expires_at) for d in changes.dedup),
                )
            if changes.last_id is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('last_id', ?)", (changes.last_id,))
            db.execute("COMMIT")
            self._measure()
        except sqlite3.Error as error:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise storage_error(error) from error
        finally:
            if relax:  # back to FULL for the next commit; a store that cannot say FULL again must not go on
                try:
                    db.execute("PRAGMA synchronous = FULL")
                except sqlite3.Error as error:
                    raise storage_error(error) from error

    def room(self) -> int | None:
        """Bytes that sends may still add (by `message_cost`) before the store refuses them; None: no limit.
        As of the last commit: a plain read, cheap enough for the actor to call every batch."""
        return max(0, self.max_bytes - self._used_bytes) if self.max_bytes else None

    def _measure(self) -> None:
        if self.max_bytes:
            pages, free, size = (
                self._db.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("page_count", "freelist_count", "page_size")
            )
            self._used_bytes = (pages - free) * size

    def compact(self) -> CompactReport:
        """Give the disk back: checkpoint the WAL into the main file and truncate it, then return free pages
        (left by acknowledged messages) to the file system."""
        db = self._db
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
            if free:
                # executescript steps the pragma to the end; execute() would free one page per call.
                db.executescript("PRAGMA incremental_vacuum;")
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as error:
            raise storage_error(error) from error
        return CompactReport(freed_pages=free, file_bytes=self.path.stat().st_size)

    def integrity_check(self) -> str:
        """SQLite's own check of the file: 'ok' when it is sound."""
        return "; ".join(str(row[0]) for row in self._db.execute("PRAGMA integrity_check"))

    def close(self) -> None:
        """Checkpoint and close the file, then release the directory."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        self._lock.close()  # closing the file releases the flock


def message_cost(payload: Payload) -> int:
    """Bytes one stored message is counted for against `max_bytes`."""
    attributes = sum(len(name) + len(str(_to_json(value))) for name, value in payload.attributes)  # close enough
    return len(payload.data) + len(payload.content_type) + attributes + ROW_OVERHEAD


def _to_json(value: AttributeValue) -> str | dict[str, str]:
    if isinstance(value, str):
        return value
    if isinstance(value.value, bytes):
        return {"type": value.data_type, "base64": base64.b64encode(value.value).decode("ascii")}
    return {"type": value.data_type, "text": value.value}


def _from_json(value: str | dict[str, str]) -> AttributeValue:
    if isinstance(value, str):
        return value
    if "base64" in value:
        return TypedValue(value["type"], base64.b64decode(value["base64"]))
    return TypedValue(value["type"], value["text"])


def _dump_attributes(attributes: Attributes) -> str:
    return json.dumps({name: _to_json(value) for name, value in attributes}, ensure_ascii=False, separators=(",", ":"))


def _load_attributes(text: str) -> Attributes:
    # stored sorted by name, as the message held them
    return tuple((name, _from_json(value)) for name, value in json.loads(text).items())


def storage_error(error: sqlite3.Error) -> WonderQError:
    if getattr(error, "sqlite_errorcode", None) == SQLITE_FULL:
        return StorageFull(f"the store is full: {error}")
    return StorageUnavailable(f"the store failed: {error}")


def _lock_directory(data_dir: Path) -> IO[str]:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = (data_dir / LOCK_NAME).open("a+")
    except OSError as error:
        raise StoreError(f"cannot use the data directory {data_dir}: {error.strerror or error}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        owner = lock.read().strip() or "unknown"
        lock.close()
        raise StoreError(
            f"the data directory {data_dir} is in use by another WonderQ server (pid {owner}); "
            "give each server its own --data-dir"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def backup(data_dir: Path, destination: Path) -> int:
    """Copy the store to `destination` (a new SQLite file) consistently, even while a server writes to it.
    Returns the number of messages in the copy."""
    source_path = data_dir / DB_NAME
    if not source_path.exists():
        raise StoreError(f"no WonderQ store in {data_dir}")
    if destination.exists():
        raise StoreError(f"{destination} exists; the backup will not overwrite it")
    source = sqlite3.connect(f"{source_path.as_uri()}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(destination)
        try:
            source.backup(target)  # one consistent snapshot, whatever the server commits meanwhile
            return int(target.execute("SELECT count(*) FROM messages").fetchone()[0])
        finally:
            target.close()
    finally:
        source.close()
