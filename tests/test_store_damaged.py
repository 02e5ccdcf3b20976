"""Damaged stores: a file that is not WonderQ's, an empty one where a store was expected, rows `load` cannot
turn into records, and damaged pages. Each is refused with a StoreError saying what to do; `check` reports
every bad row and `repair` moves them to quarantine, as they were."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import limits
from wonderq.core import Core
from wonderq.errors import WonderQError
from wonderq.ids import TimeOrderedIds
from wonderq.model import (
    Changes,
    DedupRecord,
    MessageRecord,
    Payload,
    QueueRecord,
    TypedValue,
)
from wonderq.store import APPLICATION_ID, DB_NAME, SqliteStore, StoreError
from wonderq.store_check import check, repair

T0 = 1_000.0
REPAIRED_AT = 2_000.0
IDS = [f"{n:016x}" for n in (1000, 1001, 1002, 1003)]


def base_changes() -> Changes:
    """Three queues (one empty) and four messages: ready with typed attributes, leased, delayed in a group with
    a dedup id, and a dead letter; a dedup record and the last id."""
    queues = (
        QueueRecord("jobs", 30.0, 0, 0.0, 0, T0, 3, 1, 0, 0, 0, dead_letter_queue="dlq", max_receives=5),
        QueueRecord("dlq", 30.0, 0, 0.0, 0, T0, 0, 0, 0, 0, 0),
        QueueRecord("idle", 30.0, 0, 0.0, 0, T0, 0, 0, 0, 0, 0, metadata=(("tag:team", "core"),)),
    )
    typed = (("bin", TypedValue("Binary", b"\x00\x01")), ("n", TypedValue("Number", "1")), ("s", "plain"))
    plain = Payload(b"body", "text/plain")
    messages = (
        MessageRecord(IDS[0], "jobs", Payload(b"ready", "text/plain", typed), 0, T0, None, 0, None, None, None, None),
        MessageRecord(IDS[1], "jobs", plain, 0, T0, None, 1, T0, f"{IDS[1]}.t1", T0 + 30, "worker"),
        MessageRecord(IDS[2], "jobs", plain, 2, T0, T0 + 60, 0, None, None, None, None, None, "g", "k"),
        MessageRecord(IDS[3], "dlq", plain, 0, T0, None, 5, T0, None, None, None, "jobs"),
    )
    dedup = (DedupRecord("jobs", "k", IDS[2], T0 + 300),)
    return Changes(queues=queues, inserted_messages=messages, dedup=dedup, last_id=IDS[3])


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sound store's wonderq.db, made once; each test copies it."""
    data = tmp_path_factory.mktemp("template")
    store = SqliteStore(data, sync="normal")
    store.commit(base_changes())
    store.close()
    return data / DB_NAME


@pytest.fixture
def data(tmp_path: Path, template: Path) -> Path:
    shutil.copy(template, tmp_path / DB_NAME)
    return tmp_path


def corrupt(data: Path, *statements: str) -> None:
    with sqlite3.connect(data / DB_NAME) as db:
        db.execute("PRAGMA synchronous = OFF")  # a test's file: no fsync needed
        for statement in statements:
            db.execute(statement)
    db.close()


def load_all(data: Path) -> tuple[Core, int]:
    """Open, load and restore the store as a server's start does; the core and its message count."""
    store = SqliteStore(data, sync="normal")
    try:
        snapshot = store.load()
        tokens = itertools.count(1)
        core = Core(limits=limits(), new_id=TimeOrderedIds(snapshot.last_id), new_token=lambda: f"r{next(tokens)}")
        core.restore(snapshot)
        return core, core.size()[1]
    finally:
        store.close()


# ---- files that are not a store -------------------------------------------------------------------------


def test_a_new_store_is_stamped_as_wonderqs_and_made_aside(tmp_path: Path) -> None:
    (tmp_path / f"{DB_NAME}.new").write_bytes(b"left by a crash during an earlier creation")
    SqliteStore(tmp_path).close()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    db.close()
    assert not (tmp_path / f"{DB_NAME}.new").exists()


def test_a_store_of_an_older_wonderq_is_stamped_and_keeps_everything(data: Path) -> None:
    corrupt(data, "PRAGMA application_id = 0")  # as WonderQ made them before stamping
    assert load_all(data)[1] == 4
    with sqlite3.connect(data / DB_NAME) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


def test_an_empty_file_where_a_store_was_expected_is_refused(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).touch()
    with pytest.raises(StoreError, match=r"is empty \(0 bytes\) where a store was expected: if the data directory"):
        SqliteStore(tmp_path)
    assert (tmp_path / DB_NAME).stat().st_size == 0  # left as it was
    with pytest.raises(StoreError, match="is empty"):
        check(tmp_path)


def test_a_log_without_its_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / f"{DB_NAME}-wal").write_bytes(b"frames of a database that is gone")
    with pytest.raises(StoreError, match=r"wonderq.db-wal exists but .* does not: .*restore wonderq.db from a backup"):
        SqliteStore(tmp_path)
    assert not (tmp_path / DB_NAME).exists()  # no new, empty store made beside the log


def test_another_programs_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("CREATE TABLE meta (k, v)")  # a `meta` table, but not WonderQ's
    db.close()
    before = (tmp_path / DB_NAME).read_bytes()
    with pytest.raises(StoreError, match=r"not a WonderQ store \(it holds the tables 'customers', 'meta' of another"):
        SqliteStore(tmp_path)
    assert (tmp_path / DB_NAME).read_bytes() == before  # not even switched to WAL mode
    assert sorted(path.name for path in tmp_path.iterdir()) == [DB_NAME, "wonderq.lock"]


def test_a_database_stamped_by_another_program_is_refused(tmp_path: Path, template: Path) -> None:
    shutil.copy(template, tmp_path / DB_NAME)
    corrupt(tmp_path, "PRAGMA application_id = 1234", "PRAGMA journal_mode = DELETE")  # even with WonderQ's tables
    before = (tmp_path / DB_NAME).read_bytes()
    with pytest.raises(StoreError, match="its SQLite application id is 0x4d2, another program's"):
        SqliteStore(tmp_path)
    assert (tmp_path / DB_NAME).read_bytes() == before
    with pytest.raises(StoreError, match="another program's"):
        check(tmp_path)


def test_an_empty_sqlite_database_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("PRAGMA user_version = 1")  # a valid file with no table
    db.close()
    with pytest.raises(StoreError, match="is an empty SQLite database, not a WonderQ store: if the data directory"):
        SqliteStore(tmp_path)


# ---- bad rows: each rule -------------------------------------------------------------------------------

M0, M1, M2, M3 = (f"WHERE id = {n}" for n in (1000, 1001, 1002, 1003))
BAD_ROWS = [
    # (statement, table, reason)
    (f"UPDATE messages SET body = 'hello' {M0}", "messages", "body is TEXT, not BLOB"),
    (f"UPDATE messages SET id = -7 {M0}", "messages", "id is negative (-7)"),
    (f"UPDATE messages SET queue = X'6a6f6273' {M0}", "messages", "queue is BLOB, not TEXT"),
    (f"UPDATE messages SET queue = 'gone' {M0}", "messages", "its queue 'gone' does not exist"),
    (f"UPDATE messages SET content_type = X'00' {M0}", "messages", "content_type is BLOB, not TEXT"),
    (f"UPDATE messages SET priority = 'high' {M0}", "messages", "priority is TEXT, not INTEGER"),
    (f"UPDATE messages SET priority = 1.5 {M0}", "messages", "priority is REAL, not INTEGER"),
    (f"UPDATE messages SET sent_at = 'yesterday' {M0}", "messages", "sent_at is TEXT, not a number"),
    (f"UPDATE messages SET sent_at = 1e999 {M0}", "messages", "sent_at is not a finite number"),
    (f"UPDATE messages SET visible_at = 'soon' {M2}", "messages", "visible_at is TEXT, not a number"),
    (f"UPDATE messages SET receive_count = -1 {M0}", "messages", "receive_count is negative (-1)"),
    (f"UPDATE messages SET receive_count = 'twice' {M0}", "messages", "receive_count is TEXT, not INTEGER"),
    (f"UPDATE messages SET first_received_at = X'00' {M1}", "messages", "first_received_at is BLOB, not a number"),
    (f"UPDATE messages SET deadline_at = NULL {M1}", "messages", "a lease needs both receipt and deadline_at"),
    (f"UPDATE messages SET deadline_at = 5000 {M0}", "messages", "a lease needs both receipt and deadline_at"),
    (f"UPDATE messages SET receipt = X'00' {M1}", "messages", "receipt is BLOB, not TEXT"),
    (f"UPDATE messages SET deadline_at = 'later' {M1}", "messages", "deadline_at is TEXT, not a number"),
    (f"UPDATE messages SET consumer = X'00' {M1}", "messages", "consumer is BLOB, not TEXT"),
    (f"UPDATE messages SET attributes = X'7b7d' {M0}", "messages", "attributes is BLOB, not TEXT"),
    (f"UPDATE messages SET attributes = '{{oops' {M0}", "messages", "attributes are not valid JSON"),
    (f"UPDATE messages SET attributes = '[1, 2]' {M0}", "messages", "attributes are not a JSON object"),
    (f"""UPDATE messages SET attributes = '{{"n": 5}}' {M0}""", "messages", "attribute value 5 is not text"),
    (
        f"""UPDATE messages SET attributes = '{{"n": {{"type": "Number", "text": "1", "x": 1}}}}' {M0}""",
        "messages",
        "is not text, {type, text} or {type, base64}",
    ),
    (
        f"""UPDATE messages SET attributes = '{{"b": {{"type": "Binary", "base64": "%%%"}}}}' {M0}""",
        "messages",
        "an attribute's base64 is not valid base64",
    ),
    (f"UPDATE messages SET source_queue = X'00' {M3}", "messages", "source_queue is BLOB, not TEXT"),
    (f"UPDATE messages SET message_group = X'00' {M2}", "messages", "message_group is BLOB, not TEXT"),
    (f"UPDATE messages SET dedup_id = X'00' {M2}", "messages", "dedup_id is BLOB, not TEXT"),
    ("UPDATE queues SET name = X'00' WHERE name = 'idle'", "queues", "name is BLOB, not TEXT"),
    ("UPDATE queues SET visibility_timeout = 'long' WHERE name = 'idle'", "queues", "visibility_timeout is TEXT"),
    ("UPDATE queues SET max_in_flight = -1 WHERE name = 'idle'", "queues", "max_in_flight is negative (-1)"),
    ("UPDATE queues SET delay = 1e999 WHERE name = 'idle'", "queues", "delay is not a finite number"),
    ("UPDATE queues SET created_at = 'then' WHERE name = 'idle'", "queues", "created_at is TEXT, not a number"),
    ("UPDATE queues SET sent = -3 WHERE name = 'idle'", "queues", "sent is negative (-3)"),
    ("UPDATE queues SET retention = 'forever' WHERE name = 'idle'", "queues", "retention is TEXT, not a number"),
    ("UPDATE queues SET max_receives = 1.5 WHERE name = 'idle'", "queues", "max_receives is REAL, not INTEGER"),
    ("UPDATE queues SET dead_letter_queue = X'00' WHERE name = 'idle'", "queues", "dead_letter_queue is BLOB"),
    ("UPDATE queues SET metadata = '{bad' WHERE name = 'idle'", "queues", "metadata is not valid JSON"),
    ("""UPDATE queues SET metadata = '{"a": 1}' WHERE name = 'idle'""", "queues", "not a JSON object of strings"),
    ("UPDATE dedup SET message_id = 'abc'", "dedup", "message_id is TEXT, not INTEGER"),
    ("UPDATE dedup SET message_id = -1", "dedup", "message_id is negative (-1)"),
    ("UPDATE dedup SET expires_at = 'soon'", "dedup", "expires_at is TEXT, not a number"),
    ("UPDATE meta SET value = 'zz' WHERE key = 'last_id'", "meta", "last_id is not 16 hex digits"),
]


@pytest.mark.parametrize(("statement", "table", "reason"), BAD_ROWS, ids=[case[2] for case in BAD_ROWS])
def test_a_bad_row_is_refused_reported_and_quarantined(data: Path, statement: str, table: str, reason: str) -> None:
    corrupt(data, statement)
    with sqlite3.connect(data / DB_NAME) as db:
        before = db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
    db.close()
    with pytest.raises(StoreError) as refused:
        load_all(data)
    message = str(refused.value)
    assert f"a bad row in table {table}" in message
    assert reason in message
    assert f"`wonderq check --data-dir {data}`" in message
    assert f"`wonderq repair --data-dir {data}`" in message
    assert "\n" not in message  # the CLI prints it as one line

    report = check(data)
    assert [(row.table, reason in row.reason) for row in report.bad_rows or ()] == [(table, True)]
    assert not report.sound
    assert report.integrity == "ok"

    (moved,) = repair(data, now=REPAIRED_AT)
    assert (moved.table, reason in moved.reason) == (table, True)
    assert check(data).sound
    _, messages = load_all(data)  # the server starts again
    assert messages == (3 if table == "messages" else 4)
    with sqlite3.connect(data / DB_NAME) as db:
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        kept = db.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid").fetchall()
        names = ", ".join(columns)
        (quarantined,) = db.execute(f"SELECT quarantined_at, reason, {names} FROM quarantined_{table}").fetchall()
    db.close()
    assert quarantined[:2] == (REPAIRED_AT, moved.reason)
    assert sorted([*kept, quarantined[2:]], key=repr) == sorted(before, key=repr)  # the row as it was, types too


def test_the_messages_of_a_quarantined_queue_follow_it(data: Path) -> None:
    corrupt(data, "UPDATE queues SET sent = -1 WHERE name = 'jobs'")
    assert [str(row) for row in check(data).bad_rows or ()] == ["queues 'jobs': sent is negative (-1)"]
    moved = repair(data, now=REPAIRED_AT)
    assert [str(row) for row in moved] == [
        "queues 'jobs': sent is negative (-1)",
        *(f"messages {message_id}: its queue 'jobs' does not exist" for message_id in IDS[:3]),
    ]
    core, messages = load_all(data)
    assert messages == 1  # the dead letter, in dlq
    assert [stats.name for stats in core.list_queues(now=T0)] == ["dlq", "idle"]


def test_a_second_repair_adds_to_the_quarantine(data: Path) -> None:
    corrupt(data, f"UPDATE messages SET body = 'a' {M0}")
    repair(data, now=REPAIRED_AT)
    corrupt(data, f"UPDATE messages SET body = 'b' {M1}")
    repair(data, now=REPAIRED_AT + 1)
    with sqlite3.connect(data / DB_NAME) as db:
        assert db.execute("SELECT quarantined_at, body FROM quarantined_messages").fetchall() == [
            (REPAIRED_AT, "a"),
            (REPAIRED_AT + 1, "b"),
        ]
    db.close()
    assert check(data).quarantined == 2


def test_repair_of_a_sound_store_changes_nothing(data: Path) -> None:
    assert repair(data, now=REPAIRED_AT) == []
    assert load_all(data)[1] == 4
    assert check(data).quarantined == 0


# ---- whatever a column holds, load either makes sound records or refuses with a StoreError ----------------

ODD_VALUES = ["NULL", "'text'", "X'00'", "-1", "1e999"]


def columns_of(table: str) -> list[str]:
    """The columns of a freshly made store's table."""
    with sqlite3.connect(":memory:") as db:
        from wonderq.store import SCHEMA

        db.executescript(SCHEMA)
        return [str(row[1]) for row in db.execute(f"PRAGMA table_info({table})")]


ODD_CASES = [
    (table, where, column)
    for table, where in (("messages", M1), ("queues", "WHERE name = 'jobs'"))
    for column in columns_of(table)
]


@pytest.mark.parametrize(("table", "where", "column"), ODD_CASES)
def test_load_and_check_agree_whatever_a_column_holds(data: Path, table: str, where: str, column: str) -> None:
    """For each odd value: either check finds a bad row and load refuses with a StoreError, or check finds
    none and the restored core works (lists, peeks, leases, acks, sweeps) without an error of any other kind."""
    template = data / "template.db"
    shutil.copy(data / DB_NAME, template)
    for value in ODD_VALUES:
        shutil.copy(template, data / DB_NAME)
        try:
            corrupt(data, f"UPDATE {table} SET {column} = {value} {where}")
        except sqlite3.Error:  # NOT NULL, a rowid that must be an integer, ...
            continue
        bad = check(data).bad_rows
        try:
            core, _ = load_all(data)
        except StoreError:
            assert bad, f"{column} = {value}: load refused what check calls sound"
            continue
        assert not bad, f"{column} = {value}: load took {bad}"
        exercise(core)


def exercise(core: Core) -> None:
    for now in (T0, T0 + 1e6):
        for stats in core.list_queues(now=now):
            try:
                core.peek(stats.name, state=None, limit=100, after=None, now=now)
                for lease in core.receive(stats.name, max_messages=10, visibility_timeout=5, consumer=None, now=now):
                    core.ack(stats.name, lease.id, lease.receipt, now=now)
            except WonderQError:
                pass
        core.expire(now=now)


# ---- damaged pages --------------------------------------------------------------------------------------


def make_damaged(data: Path) -> None:
    """A store of 2,000 messages with pages of its messages table overwritten."""
    store = SqliteStore(data, sync="normal")
    queue = QueueRecord("q", 30.0, 0, 0.0, 0, T0, 2000, 0, 0, 0, 0)
    body = Payload(b"x" * 300, "text/plain")
    records = tuple(MessageRecord(f"{n:016x}", "q", body, 0, T0, None, 0, None, None, None, None) for n in range(2000))
    store.commit(Changes(queues=(queue,), inserted_messages=records, last_id=f"{1999:016x}"))
    store.close()
    with (data / DB_NAME).open("r+b") as file:
        file.seek(40 * 4096)
        file.write(b"\xa5" * 4096 * 20)


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    make_damaged(tmp_path)
    return tmp_path


def test_damaged_pages_are_refused_with_a_store_error(damaged: Path) -> None:
    with pytest.raises(StoreError, match=r"cannot read the store: .*restore a backup"):
        load_all(damaged)


def test_repair_will_not_touch_damaged_pages(damaged: Path) -> None:
    with pytest.raises(StoreError, match=r"integrity check failed .* cannot mend damaged pages: restore a backup"):
        repair(damaged, now=REPAIRED_AT)
    report = check(damaged)
    assert (report.sound, report.integrity, report.bad_rows) == (False, "database disk image is malformed", None)


@pytest.mark.parametrize(
    "statement",
    ["UPDATE meta SET value = '0000000000000001' WHERE key = 'last_id'", "DELETE FROM meta WHERE key = 'last_id'"],
)
def test_new_ids_never_replace_stored_messages_whatever_last_id_says(data: Path, statement: str) -> None:
    """A store put together by hand may record an older last id than its newest message, or none: ids then
    continue after the newest message, so that a send never overwrites one (INSERT OR REPLACE)."""
    corrupt(data, statement)
    assert check(data).sound
    store = SqliteStore(data, sync="normal")
    try:
        assert store.load().last_id == IDS[3]
    finally:
        store.close()
    core, _ = load_all(data)
    assert core.send("jobs", Payload(b"new", "text/plain"), now=0.0) > IDS[3]
