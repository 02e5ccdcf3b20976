"""The journal: WonderQ's durable state in SQLite (WAL mode) inside the data directory.

The actor drives it and nothing else: `load` once at start-up, `commit` once per actor batch (the changes the
core drained, in one transaction, from a worker thread), `compact` now and then. It knows tables and rows,
never queue rules. The data directory holds `wonderq.db` (plus SQLite's `-wal` and `-shm` files),
`wonderq.lock` (the pid of the server using it) and `wonderq.reserve` (disk space set aside so that a full disk
can still be drained). A server holds an exclusive `flock` on `wonderq.lock` and on `wonderq.db` itself, so a
second server cannot use the directory even if the lock file is deleted.

It also owns what a sound store is: a SQLite file stamped with WonderQ's application id whose rows break none of
ROW_RULES, so that `load` can make a record of each; it refuses anything else with a StoreError saying what to
do. `wonderq.store_check` reports and quarantines the rows that break the rules.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
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

log = logging.getLogger("wonderq.store")

SCHEMA_VERSION = "2"
APPLICATION_ID = 0x574F4E51  # "WONQ": PRAGMA application_id of a WonderQ store (bytes 68-71 of the file header)
ID_FORMAT = f"0{ID_HEX_DIGITS}x"  # a stored id (an integer) back to its 16 hex digits
DB_NAME = "wonderq.db"
LOCK_NAME = "wonderq.lock"
RESERVE_NAME = "wonderq.reserve"
SQLITE_FULL = 13  # sqlite3 result code: database or disk is full
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes of WAL file kept after a checkpoint; the rest is truncated
WAL_CHECKPOINT_PAGES = 8192  # 32 MiB of 4 KiB pages
ROW_OVERHEAD = 200  # bytes a stored message costs beyond its body (row, id index, queue index), a safe guess
HEADROOM = 0.25  # share of max_bytes (plus HEADROOM_BYTES) kept for leases and acks once sends are refused
HEADROOM_BYTES = 4 * 1024 * 1024
RESERVE_BLOCK = 1024 * 1024  # bytes written per call while making the reserve
# The reserve is made again once the file system has this many times its size free: a quarter more, so that a
# disk at the edge does not flap between full and not (each refill writes the whole reserve), yet little enough
# that a small volume, which had just room for the reserve at start, gets there again once drained.
REFILL_FACTOR = 1.25
MAX_NUMBER = 1e300  # a stored time or duration beyond this is no finite number (SQLite keeps 1e999 as infinity)

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
    """The data directory cannot be used: the server must not start. The message says why, where and what to do."""


# ---- what a sound store holds ---------------------------------------------------------------------------

Kind = Literal["integer", "number", "text", "blob"]
SQL_TYPES: dict[Kind, tuple[str, ...]] = {
    "integer": ("integer",),
    "number": ("integer", "real"),
    "text": ("text",),
    "blob": ("blob",),
}
TYPE_NAMES: dict[Kind, str] = {"integer": "INTEGER", "number": "a number", "text": "TEXT", "blob": "BLOB"}


@dataclass(frozen=True, slots=True)
class Rule:
    """What one column must hold for `load` to make a record of its row."""

    column: str
    kind: Kind
    nullable: bool = False
    non_negative: bool = False

    def whens(self) -> Iterator[tuple[str, str]]:
        """(SQL condition that breaks the rule, SQL text saying how)."""
        c = self.column
        allowed = ", ".join(f"'{name}'" for name in SQL_TYPES[self.kind] + (("null",) if self.nullable else ()))
        yield f"typeof({c}) NOT IN ({allowed})", f"'{c} is ' || upper(typeof({c})) || ', not {TYPE_NAMES[self.kind]}'"
        if self.kind == "number":
            yield f"abs({c}) > {MAX_NUMBER}", f"'{c} is not a finite number'"
        if self.non_negative:
            yield f"{c} < 0", f"'{c} is negative (' || {c} || ')'"


class Malformed(ValueError):
    """A JSON column that is not of the stored shape; the message says how."""


@dataclass(frozen=True, slots=True)
class TableRules:
    """The rules of one table's rows. `always` and `when_set` are (SQL condition, SQL reason) pairs across
    columns: `always` is checked on every row, `when_set` only on rows with a nullable column set (a fast path:
    most rows have none). `parse` checks `json_column` in Python, raising Malformed."""

    table: str
    key: str  # SQL naming a row in reports
    rules: tuple[Rule, ...]
    always: tuple[tuple[str, str], ...] = ()
    when_set: tuple[tuple[str, str], ...] = ()
    json_column: str | None = None
    parse: Callable[[str], object] | None = None

    def problem(self, present: Collection[str] | None = None) -> str:
        """A SQL expression: NULL for a sound row, else a text saying what is wrong with it. Rules on columns
        not `present` (an older schema's table, as `wonderq check` may see it) are left out."""
        rules = [rule for rule in self.rules if present is None or rule.column in present]
        whens = [when for rule in rules if not rule.nullable for when in rule.whens()]
        whens += self.always
        nullable = [rule.column for rule in rules if rule.nullable]
        if nullable:
            whens.append((f"coalesce({', '.join(nullable)}, NULL) IS NULL", "NULL"))
        whens += self.when_set
        whens += [when for rule in rules if rule.nullable for when in rule.whens()]
        return "CASE " + " ".join(f"WHEN {condition} THEN {reason}" for condition, reason in whens) + " END"


def _load_attributes(text: str) -> Attributes:
    """A message's attributes from their JSON (stored sorted by name, as the message held them)."""
    try:
        stored = json.loads(text)
    except ValueError:
        raise Malformed("attributes are not valid JSON") from None
    if not isinstance(stored, dict):
        raise Malformed("attributes are not a JSON object")
    return tuple((name, _from_json(value)) for name, value in stored.items())


def _from_json(value: object) -> AttributeValue:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        if value.keys() == {"type", "text"} and isinstance(value["text"], str):
            return TypedValue(value["type"], value["text"])
        if value.keys() == {"type", "base64"} and isinstance(value["base64"], str):
            try:
                return TypedValue(value["type"], base64.b64decode(value["base64"], validate=True))
            except binascii.Error:
                raise Malformed("an attribute's base64 is not valid base64") from None
    raise Malformed(f"attribute value {json.dumps(value)[:80]} is not text, {{type, text}} or {{type, base64}}")


def _load_metadata(text: str) -> tuple[tuple[str, str], ...]:
    """A queue's metadata from its JSON: an object of strings."""
    try:
        stored = json.loads(text)
    except ValueError:
        raise Malformed("metadata is not valid JSON") from None
    if not isinstance(stored, dict) or not all(isinstance(value, str) for value in stored.values()):
        raise Malformed("metadata is not a JSON object of strings")
    return tuple(stored.items())


MESSAGES = TableRules(
    "messages",
    key="CASE WHEN id >= 0 THEN printf('%016x', id) ELSE id END",
    rules=(
        Rule("queue", "text"),
        Rule("body", "blob"),
        Rule("content_type", "text"),
        Rule("priority", "integer"),
        Rule("sent_at", "number"),
        Rule("receive_count", "integer", non_negative=True),
        Rule("visible_at", "number", nullable=True),
        Rule("first_received_at", "number", nullable=True),
        Rule("receipt", "text", nullable=True),
        Rule("deadline_at", "number", nullable=True),
        Rule("consumer", "text", nullable=True),
        Rule("attributes", "text", nullable=True),
        Rule("source_queue", "text", nullable=True),
        Rule("message_group", "text", nullable=True),
        Rule("dedup_id", "text", nullable=True),
    ),
    always=(
        ("id < 0", "'id is negative (' || id || ')'"),  # the rowid: always an INTEGER, so only its sign is checked
        ("queue NOT IN (SELECT name FROM queues)", "'its queue ' || quote(queue) || ' does not exist'"),
    ),
    when_set=(("(receipt IS NULL) != (deadline_at IS NULL)", "'a lease needs both receipt and deadline_at'"),),
    json_column="attributes",
    parse=_load_attributes,
)
QUEUES = TableRules(
    "queues",
    key="quote(name)",
    rules=(
        Rule("name", "text"),
        Rule("visibility_timeout", "number", non_negative=True),
        Rule("max_in_flight", "integer", non_negative=True),
        Rule("delay", "number", non_negative=True),
        Rule("max_message_bytes", "integer", non_negative=True),
        Rule("created_at", "number"),
        *(Rule(total, "integer", non_negative=True) for total in ("sent", "received", "acked", "expired", "released")),
        Rule("retention", "number", non_negative=True),
        Rule("max_receives", "integer", non_negative=True),
        *(Rule(total, "integer", non_negative=True) for total in ("dropped", "dead_lettered", "redriven")),
        Rule("dead_letter_queue", "text", nullable=True),
        Rule("metadata", "text", nullable=True),
    ),
    json_column="metadata",
    parse=_load_metadata,
)
DEDUP = TableRules(
    "dedup",
    key="quote(queue) || ' ' || quote(dedup_id)",
    rules=(
        Rule("queue", "text"),
        Rule("dedup_id", "text"),
        Rule("message_id", "integer", non_negative=True),
        Rule("expires_at", "number"),
    ),
)
META = TableRules(
    "meta",
    key="quote(key)",
    rules=(),
    always=(
        (
            "key = 'last_id' AND (typeof(value) != 'text' OR length(value) != 16 OR value GLOB '*[^0-9a-f]*')",
            "'last_id is not 16 hex digits'",
        ),
    ),
)
ROW_RULES = (QUEUES, MESSAGES, DEDUP, META)  # in the order a repair takes them: a queue's messages follow it

LOAD_QUEUES = f"SELECT {QUEUES.problem()}, {QUEUE_COLUMNS} FROM queues"
LOAD_MESSAGES = f"SELECT {MESSAGES.problem()}, {MESSAGE_COLUMNS} FROM messages ORDER BY id"
LOAD_DEDUP = f"SELECT {DEDUP.problem()}, queue, dedup_id, message_id, expires_at FROM dedup"
LOAD_LAST_ID = f"SELECT {META.problem()}, value FROM meta WHERE key = 'last_id'"


@dataclass(frozen=True, slots=True)
class CompactReport:
    freed_pages: int
    file_bytes: int  # size of wonderq.db after compaction


class SqliteStore:
    """One data directory, opened exclusively. Not thread-safe: the actor calls one method at a time.

    With `reserve_bytes`, that much disk is kept in `wonderq.reserve`. When a commit fails because the disk is
    full, the reserve is deleted and the commit retried in its space; from then on the store is full: `room()`
    is 0, so the actor refuses sends, while leases, acks, releases and purges (which reuse the WAL and the pages
    acked messages leave) go on. Once the file system has REFILL_FACTOR times the reserve free again (after a
    compaction gave space back, or the operator freed some), the reserve is made again and sends are accepted."""

    def __init__(
        self, data_dir: Path, *, sync: Sync = "full", max_bytes: int = 0, reserve_bytes: int | None = None
    ) -> None:
        self.data_dir = data_dir
        self.path = data_dir / DB_NAME
        self.max_bytes = max_bytes  # what sends may fill; 0 for no limit
        self.reserve_bytes = reserve_bytes or 0  # None: keep none, and leave a reserve file as it is
        self._sync_full = sync == "full"
        self._disk_full = False  # the reserve was used (or could not be made): sends are refused
        self._used_bytes = 0
        self._db_lock: _DatabaseLock | None = None
        self._lock = _lock_directory(data_dir)
        try:
            if not _store_exists(self.path):
                _create(self.path)
            self._db_lock = _lock_database(self.path)
            _record_pid(self._lock)
            self._db = sqlite3.connect(
                f"{self.path.absolute().as_uri()}?mode=rw", uri=True, isolation_level=None, check_same_thread=False
            )
            stamped = identify(self._db, self.path)  # before anything writes: another program's file stays as it is
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.path}: cannot use SQLite's WAL mode here (got {mode!r})")
            # FULL: the WAL is fsynced at every commit. NORMAL: only at checkpoints, so a power loss may undo
            # the last commits, though a crash of the process never does.
            self._db.execute(f"PRAGMA synchronous = {'FULL' if sync == 'full' else 'NORMAL'}")
            self._db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            # Deleted rows are zeroed within the pages a delete writes anyway, but freed pages are not written
            # over (some builds' default, secure_delete=ON, does): an ack or purge then needs no room in the WAL
            # for the pages it frees, which is what lets a full disk be drained. Compaction overwrites or
            # truncates the freed pages within COMPACT_INTERVAL.
            self._db.execute("PRAGMA secure_delete = FAST")
            page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
            # Checkpoint (copy the WAL into the main file, with an fsync) every WAL_CHECKPOINT_PAGES pages rather
            # than SQLite's 1,000: fewer stalls inside commits; compaction checkpoints on its own schedule too.
            # With a reserve, at most every half of it: a checkpoint may grow the main file by what the WAL
            # holds, and on a full disk the reserve's space must cover that.
            self._checkpoint_pages = WAL_CHECKPOINT_PAGES
            if reserve_bytes:
                self._checkpoint_pages = max(1, min(WAL_CHECKPOINT_PAGES, reserve_bytes // (2 * page_size)))
            self._db.execute(f"PRAGMA wal_autocheckpoint = {self._checkpoint_pages}")
            if max_bytes:
                # The hard limit leaves headroom above what sends may fill, so that a full store can still
                # lease and acknowledge its messages, which is how it empties.
                hard_limit = int(max_bytes * (1 + HEADROOM)) + HEADROOM_BYTES
                self._db.execute(f"PRAGMA max_page_count = {max(1, hard_limit // page_size)}")
            self._open_schema(stamped=stamped)
            self._measure()
            if reserve_bytes is not None:
                self._keep_reserve()
        except (sqlite3.Error, StoreError, OSError) as error:
            if hasattr(self, "_db"):
                self._db.close()
            self._unlock()
            if isinstance(error, StoreError):
                raise
            if isinstance(error, OSError):
                raise StoreError(f"cannot use the data directory {data_dir}: {error.strerror or error}") from None
            raise StoreError(f"{self.path}: cannot open the store: {error}") from None

    def _open_schema(self, *, stamped: bool) -> None:
        """Stamp the store if an older WonderQ made it (not `stamped`), and bring its tables up to SCHEMA_VERSION."""
        db = self._db
        version = schema_version(db)
        if version != SCHEMA_VERSION and version not in MIGRATIONS:
            raise StoreError(
                f"{self.path}: schema version {version}, this WonderQ reads {SCHEMA_VERSION}: run the WonderQ"
                " that wrote it, or restore a backup made by this one"
            )
        if version == SCHEMA_VERSION and stamped:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            while version != SCHEMA_VERSION:
                version, statements = MIGRATIONS[version]
                for statement in statements:
                    db.execute(statement)
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def load(self) -> Snapshot:
        """Everything stored. The messages are streamed from the file in id order as they are consumed, so the
        whole store never sits in memory twice; consume them before the next call on this store.

        Raises StoreError (and nothing else), also while the messages stream, for a row that breaks ROW_RULES
        or a file SQLite cannot read."""
        try:
            queues = tuple(self._queue(*row) for row in self._db.execute(LOAD_QUEUES))
            dedup = tuple(self._dedup(*row) for row in self._db.execute(LOAD_DEDUP))
            last_id = self._last_id()
        except sqlite3.Error as error:
            raise self._unreadable(error) from None
        return Snapshot(queues=queues, messages=self._messages(), last_id=last_id, dedup=dedup)

    def _queue(self, problem: str | None, *values: object) -> QueueRecord:
        metadata: tuple[tuple[str, str], ...] = ()
        if problem is None and values[-1] is not None:
            try:
                metadata = _load_metadata(str(values[-1]))
            except Malformed as error:
                problem = str(error)
        if problem is not None:
            raise self._bad_row("queues", repr(values[0])[:100], problem)
        return QueueRecord(*values[:-1], metadata)  # type: ignore[arg-type, call-arg]

    def _dedup(self, problem: str | None, queue: str, dedup_id: str, message_id: int, expires: float) -> DedupRecord:
        if problem is not None:
            raise self._bad_row("dedup", f"{queue!r:.100} {dedup_id!r:.100}", problem)
        return DedupRecord(queue, dedup_id, format(message_id, ID_FORMAT), expires)

    def _last_id(self) -> str | None:
        """The newest id issued: the stored one, or the newest message's if that is newer (a store put together
        by hand), so that a new id never replaces a stored message."""
        found = self._db.execute(LOAD_LAST_ID).fetchone()
        if found is not None and found[0] is not None:
            raise self._bad_row("meta", "'last_id'", found[0])
        newest = self._db.execute("SELECT max(id) FROM messages").fetchone()[0]
        candidates = [found[1]] if found else []
        if isinstance(newest, int) and newest >= 0:
            candidates.append(format(newest, ID_FORMAT))
        return max(candidates, default=None)

    def _messages(self) -> Iterator[MessageRecord]:
        media_types: dict[str, str] = {}  # one string per content type, not one per message
        groups: dict[str, str] = {}  # one string per message group, likewise
        sent: float = 0.0  # the previous row's send time: one float for a batch's messages, as before the restart
        try:
            for (
                problem,
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
            ) in self._db.execute(LOAD_MESSAGES):
                if problem is not None:
                    raise self._bad_row("messages", format(number, ID_FORMAT), problem)
                yield MessageRecord(
                    format(number, ID_FORMAT),
                    queue,
                    Payload(
                        body,
                        media_types.setdefault(media_type, media_type),
                        NO_ATTRIBUTES if attributes is None else self._attributes(number, attributes),
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
        except sqlite3.Error as error:
            raise self._unreadable(error) from None

    def _attributes(self, number: int, text: str) -> Attributes:
        try:
            return _load_attributes(text)
        except Malformed as error:
            raise self._bad_row("messages", format(number, ID_FORMAT), str(error)) from None

    def _bad_row(self, table: str, key: str, reason: str) -> StoreError:
        where = f"--data-dir {self.data_dir}"
        return StoreError(
            f"{self.path}: a bad row in table {table} ({key}: {reason}); list every bad row with `wonderq check"
            f" {where}`, then move them to quarantine with `wonderq repair {where}` while the server is stopped"
        )

    def _unreadable(self, error: sqlite3.Error) -> StoreError:
        return StoreError(
            f"{self.path}: cannot read the store: {error}; see what is wrong with `wonderq check --data-dir"
            f" {self.data_dir}`, or restore a backup (docs/operations.md, Restoring)"
        )

    def commit(self, changes: Changes, *, fsync: bool = True) -> None:
        """Apply `changes` in one transaction, durably (per the sync level) before returning. With
        `fsync=False` the transaction is written to the WAL but not fsynced even at the `full` level: a crash of
        the process cannot lose it, a power loss can, until the next fsynced commit syncs the WAL file with it
        (the WAL is one file, replayed in order: a later commit never survives without an earlier one).

        If the disk is full, the reserve (if any) is given up and the commit retried once in its space.
        Raises StorageFull or StorageUnavailable, and then nothing of `changes` is stored."""
        db = self._db
        relax = self._sync_full and not fsync
        try:
            if relax:
                db.execute("PRAGMA synchronous = NORMAL")
            try:
                self._write(changes)
            except sqlite3.Error as error:
                if not self._release_reserve(error):
                    raise
                self._write(changes)
            self._measure()
        except sqlite3.Error as error:
            raise storage_error(error) from error
        finally:
            if relax:  # back to FULL for the next commit; a store that cannot say FULL again must not go on
                try:
                    db.execute("PRAGMA synchronous = FULL")
                except sqlite3.Error as error:
                    raise storage_error(error) from error
        self._refill_reserve()

    def _write(self, changes: Changes) -> None:
        """`changes` as one transaction; on an error it is rolled back and the error raised."""
        db = self._db
        try:
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
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def room(self) -> int | None:
        """Bytes that sends may still add (by `message_cost`) before the store refuses them; None: no limit.
        0 while the disk is full (the reserve is in use). As of the last commit or compaction: a plain read,
        cheap enough for the actor to call every batch."""
        if self._disk_full:
            return 0
        return max(0, self.max_bytes - self._used_bytes) if self.max_bytes else None

    @property
    def disk_full(self) -> bool:
        """The disk filled up and the reserve is in use (or could not be made): sends are refused."""
        return self._disk_full

    def _measure(self) -> None:
        if self.max_bytes:
            pages, free, size = (
                self._db.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("page_count", "freelist_count", "page_size")
            )
            self._used_bytes = (pages - free) * size

    def compact(self) -> CompactReport:
        """Give the disk back: checkpoint the WAL into the main file and truncate it, then return free pages
        (left by acknowledged messages) to the file system, a slice at a time with a checkpoint after each, so
        that the WAL never needs room for more than one slice of moved pages. While the disk is full the WAL
        keeps its file (RESTART rather than TRUNCATE): the acks to come reuse it instead of needing new space."""
        db = self._db
        checkpoint = f"PRAGMA wal_checkpoint({'RESTART' if self._disk_full else 'TRUNCATE'})"
        slice_pages = max(1, self._checkpoint_pages // 2)
        freed = 0
        try:
            busy = db.execute(checkpoint).fetchone()[0]
            free = self._free_pages()
            while free and not busy:  # a reader (a backup, a check) keeps the WAL: try again next time
                # executescript steps the pragma to the end; execute() would free one page per call.
                db.executescript(f"PRAGMA incremental_vacuum({slice_pages});")
                busy = db.execute(checkpoint).fetchone()[0]
                left = self._free_pages()
                if left >= free:
                    break
                freed, free = freed + free - left, left
        except sqlite3.Error as error:
            raise storage_error(error) from error
        self._refill_reserve()
        return CompactReport(freed_pages=freed, file_bytes=self.path.stat().st_size)

    def _free_pages(self) -> int:
        return int(self._db.execute("PRAGMA freelist_count").fetchone()[0])

    def _keep_reserve(self) -> None:
        """At open: the reserve exists and is allocated, or (with none wanted) none is left behind."""
        reserve = self.data_dir / RESERVE_NAME
        if not self.reserve_bytes:
            reserve.unlink(missing_ok=True)
            return
        if _allocated(reserve, self.reserve_bytes):
            return
        try:
            _make_reserve(reserve, self.reserve_bytes)
        except OSError as error:
            self._disk_full = True
            log.warning(
                "no room for the %s reserve in %s (%s): sends are refused (507) until the file system has %s free;"
                " leases, acks, releases and purges go on",
                _mib(self.reserve_bytes),
                self.data_dir,
                error.strerror or error,
                _mib(int(REFILL_FACTOR * self.reserve_bytes)),
            )

    def _release_reserve(self, error: sqlite3.Error) -> bool:
        """After a commit failed: if the disk is full and the reserve is there, delete it so that the commit
        can be retried in its space, and refuse sends from now on. Whether it did."""
        if getattr(error, "sqlite_errorcode", None) != SQLITE_FULL or self._disk_full or not self.reserve_bytes:
            return False
        if _free_bytes(self.data_dir) >= self.reserve_bytes:
            return False  # the disk has room: the store's own limit (MAX_STORE_BYTES) refused the commit
        try:
            (self.data_dir / RESERVE_NAME).unlink(missing_ok=True)
        except OSError as failed:
            log.error("the disk is full but the reserve cannot be deleted: %s", failed.strerror or failed)
            return False
        self._disk_full = True
        log.warning(
            "the disk of %s is full: released the %s reserve so that leases, acks, releases and purges go on;"
            " sends are refused (507) until the file system has %s free",
            self.data_dir,
            _mib(self.reserve_bytes),
            _mib(int(REFILL_FACTOR * self.reserve_bytes)),
        )
        return True

    def _refill_reserve(self) -> None:
        """While the disk is full: make the reserve again, and accept sends again, once there is room for it."""
        if not self._disk_full or _free_bytes(self.data_dir) < REFILL_FACTOR * self.reserve_bytes:
            return
        try:
            _make_reserve(self.data_dir / RESERVE_NAME, self.reserve_bytes)
        except OSError as error:
            log.debug("cannot make the reserve again yet: %s", error.strerror or error)
            return
        self._disk_full = False
        log.info("the disk of %s has room again: the reserve is back and sends are accepted", self.data_dir)

    def integrity_check(self) -> str:
        """SQLite's own check of the file: 'ok' when it is sound."""
        return integrity_check(self._db)

    def quarantine(self, rows: Iterable[tuple[str, int, str]], *, now: float) -> int:
        """Move `rows` (table, rowid, reason) out of the live tables into `quarantined_<table>`, each as it was
        (the quarantine's columns have no type, so every value keeps its own) with its reason and `now` (epoch
        seconds), all in one transaction. Returns how many rows moved."""
        db = self._db
        moved = 0
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for table, rowid, reason in rows:
                    names = ", ".join(f'"{column}"' for column in self._quarantine_table(table))
                    moved += db.execute(
                        f"INSERT INTO quarantined_{table} (quarantined_at, reason, {names})"
                        f" SELECT ?, ?, {names} FROM {table} WHERE rowid = ?",
                        (now, reason, rowid),
                    ).rowcount
                    db.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise StoreError(f"{self.path}: the repair failed and changed nothing: {error}") from None
        return moved

    def _quarantine_table(self, table: str) -> list[str]:
        """The columns of `table`, after making sure quarantined_<table> has each of them."""
        if table not in {rules.table for rules in ROW_RULES}:
            raise ValueError(f"no quarantine for table {table!r}")
        columns = table_columns(self._db, table)
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS quarantined_{table} (quarantined_at REAL NOT NULL, reason TEXT NOT NULL)"
        )
        for column in columns - table_columns(self._db, f"quarantined_{table}"):  # older quarantines lack new columns
            self._db.execute(f'ALTER TABLE quarantined_{table} ADD COLUMN "{column}"')
        return sorted(columns)

    def close(self) -> None:
        """Checkpoint and close the file, then release the directory. The reserve stays for the next start."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._db_lock is not None:
            self._db_lock.release()  # only now that SQLite has closed the file
            self._db_lock = None
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


def _dump_attributes(attributes: Attributes) -> str:
    return json.dumps({name: _to_json(value) for name, value in attributes}, ensure_ascii=False, separators=(",", ":"))


def storage_error(error: sqlite3.Error) -> WonderQError:
    if getattr(error, "sqlite_errorcode", None) == SQLITE_FULL:
        return StorageFull(f"the store is full: {error}")
    return StorageUnavailable(f"the store failed: {error}")


# ---- is it a WonderQ store? -----------------------------------------------------------------------------


def _store_exists(path: Path) -> bool:
    """Whether `path` (a wonderq.db) exists. Raises StoreError where a store was expected but is not there."""
    wal = path.with_name(f"{path.name}-wal")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        if wal.exists():
            raise StoreError(
                f"{wal} exists but {path} does not: the database was removed or not restored with its log;"
                f" restore {path.name} from a backup, or move the data directory aside to start afresh"
            ) from None
        return False
    if size == 0:
        raise StoreError(
            f"{path} is empty (0 bytes) where a store was expected: if the data directory is new, delete the file"
            " and start again; if it held messages, restore it from a backup (docs/operations.md, Restoring)"
        )
    return True


def identify(db: sqlite3.Connection, path: Path) -> bool:
    """Whether the file is stamped as WonderQ's (True) or is a store of an older WonderQ, not stamped yet (False).
    Raises StoreError for any other file: another program's database, or an empty one."""
    application_id = db.execute("PRAGMA application_id").fetchone()[0]
    if application_id == APPLICATION_ID:
        return True
    leave_alone = "WonderQ leaves it alone: give --data-dir a directory of WonderQ's own"
    if application_id != 0:
        raise StoreError(
            f"{path} is not a WonderQ store (its SQLite application id is {application_id:#x}, another program's);"
            f" {leave_alone}"
        )
    tables = sorted(name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    if not tables:
        raise StoreError(
            f"{path} is an empty SQLite database, not a WonderQ store: if the data directory is new, delete the"
            " file and start again; if it held messages, restore it from a backup (docs/operations.md, Restoring)"
        )
    if {"meta", "queues", "messages"} <= set(tables) and _has_schema_row(db):
        return False
    shown = ", ".join(repr(name)[:40] for name in tables[:5]) + (", ..." if len(tables) > 5 else "")
    raise StoreError(f"{path} is not a WonderQ store (it holds the tables {shown} of another program); {leave_alone}")


def _has_schema_row(db: sqlite3.Connection) -> bool:
    try:
        return db.execute("SELECT 1 FROM meta WHERE key = 'schema'").fetchone() is not None
    except sqlite3.Error:  # a `meta` table of another program's making
        return False


def schema_version(db: sqlite3.Connection) -> str:
    return str(db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0])


def integrity_check(db: sqlite3.Connection) -> str:
    """SQLite's own check of the file: 'ok' when it is sound, else what it found."""
    try:
        return "; ".join(str(row[0]) for row in db.execute("PRAGMA integrity_check"))
    except sqlite3.DatabaseError as error:  # damaged beyond what the check itself can read
        return str(error)


def table_columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(row[1]) for row in db.execute(f"PRAGMA table_info({table})")}


def open_read_only(data_dir: Path) -> sqlite3.Connection:
    """A read-only connection to the store in `data_dir`, once it is known to be a WonderQ store; safe while a
    server writes to it. The caller closes it."""
    path = data_dir / DB_NAME
    if not _store_exists(path):
        raise StoreError(f"no WonderQ store in {data_dir}")
    try:
        db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise StoreError(f"{path}: cannot open the store: {error}") from None
    try:
        identify(db, path)
    except sqlite3.Error as error:
        db.close()
        raise StoreError(f"{path}: cannot open the store: {error}") from None
    except BaseException:
        db.close()
        raise
    return db


def _create(path: Path) -> None:
    """A new, empty store, made aside and renamed into place: a crash never leaves a half-made wonderq.db."""
    draft = path.with_name(f"{path.name}.new")
    draft.unlink(missing_ok=True)  # left by a crash during an earlier creation
    draft.with_name(f"{draft.name}-journal").unlink(missing_ok=True)
    db = sqlite3.connect(draft, isolation_level=None)
    try:
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table: later it would need a VACUUM
        # One transaction, committed with an fsync (the rollback journal's synchronous=FULL default).
        db.executescript(
            f"BEGIN; PRAGMA application_id = {APPLICATION_ID}; {SCHEMA}"
            f" INSERT INTO meta VALUES ('schema', '{SCHEMA_VERSION}'); COMMIT;"
        )
    except sqlite3.Error as error:
        raise StoreError(f"{path}: cannot create the store: {error}") from None
    finally:
        db.close()
    draft.rename(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself is durable
    finally:
        os.close(directory)


# ---- one server per data directory ----------------------------------------------------------------------

_held: set[tuple[int, int]] = set()  # (device, inode) of each wonderq.db this process holds locked
_held_guard = threading.Lock()


@dataclass(slots=True)
class _DatabaseLock:
    """The exclusive flock on wonderq.db, held through a descriptor of our own. flock locks are independent of
    the POSIX locks SQLite takes on the same file (on Linux), but closing ANY descriptor of the file drops the
    process's POSIX locks: so the descriptor is closed only after SQLite closed the file, and a second store
    in this process never opens the file at all (`_held`)."""

    fd: int
    identity: tuple[int, int]

    def release(self) -> None:
        with _held_guard:
            _held.discard(self.identity)
        os.close(self.fd)


def _lock_database(path: Path) -> _DatabaseLock:
    found = path.stat()
    identity = (found.st_dev, found.st_ino)
    with _held_guard:
        if identity in _held:
            raise _in_use(path.parent, str(os.getpid()))
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # safe: this process holds no lock on the file (else it would be in `_held`)
            raise _in_use(path.parent, _flock_owner(found) or _recorded_pid(path.parent)) from None
        _held.add(identity)
    return _DatabaseLock(fd, identity)


def _flock_owner(found: os.stat_result) -> str | None:
    """The pid holding a flock on the file, from /proc/locks (Linux), which names it even after wonderq.lock
    was deleted."""
    inode = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in table.splitlines():
        fields = line.split()  # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:1234 0 EOF"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode and fields[4].isdigit():
            return fields[4]
    return None


def _recorded_pid(data_dir: Path) -> str | None:
    try:
        return (data_dir / LOCK_NAME).read_text().strip() or None
    except OSError:
        return None


def _in_use(data_dir: Path, owner: str | None) -> StoreError:
    return StoreError(
        f"the data directory {data_dir} is in use by another WonderQ server (pid {owner or 'unknown'}); "
        "stop it first, or give each server its own --data-dir"
    )


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
        owner = lock.read().strip()
        lock.close()
        raise _in_use(data_dir, owner) from None
    return lock


def _record_pid(lock: IO[str]) -> None:
    """Write this process's pid into the lock file, once both locks are held."""
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()


# ---- the reserve ----------------------------------------------------------------------------------------


def _make_reserve(path: Path, size: int) -> None:
    """`size` bytes really allocated at `path`: written and fsynced. Random bytes, not zeros: a compressing
    file system would keep zeros in no space at all. Raises OSError (and leaves no file) if they do not fit."""
    block = os.urandom(min(size, RESERVE_BLOCK))
    try:
        with path.open("wb") as file:
            left = size
            while left:
                left -= file.write(block[:left])
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _allocated(path: Path, size: int) -> bool:
    try:
        found = path.stat()
    except FileNotFoundError:
        return False
    return found.st_size == size and found.st_blocks * 512 >= size  # not sparse


def _free_bytes(data_dir: Path) -> int:
    """Bytes the file system has free for us; 0 if it cannot say."""
    try:
        found = os.statvfs(data_dir)
    except OSError:
        return 0
    return found.f_bavail * found.f_frsize


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:g} MiB"


# ---- backup ---------------------------------------------------------------------------------------------


def backup(data_dir: Path, destination: Path) -> int:
    """Copy the store to `destination` (a new SQLite file) consistently, even while a server writes to it.
    Returns the number of messages in the copy."""
    if destination.exists():
        raise StoreError(f"{destination} exists; the backup will not overwrite it")
    source = open_read_only(data_dir)
    try:
        target = sqlite3.connect(destination)
        try:
            source.backup(target)  # one consistent snapshot, whatever the server commits meanwhile
            return int(target.execute("SELECT count(*) FROM messages").fetchone()[0])
        finally:
            target.close()
    except sqlite3.Error as error:
        raise StoreError(f"cannot back up {data_dir / DB_NAME} to {destination}: {error}") from None
    finally:
        source.close()
