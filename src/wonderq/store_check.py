"""`wonderq check` and `wonderq repair`: what is wrong with a store, and moving its bad rows into quarantine.

A bad row is one that breaks `store.ROW_RULES`, so that `SqliteStore.load` refuses to start on it. `check` reads
through a read-only connection, so it runs while a server writes and never changes anything. `repair` opens the
store as a server does (its locks included, so only while the server is stopped) and moves every bad row into
`quarantined_<table>`, the row as it was with its reason and time, so that the server starts again.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from wonderq.store import (
    DB_NAME,
    MIGRATIONS,
    ROW_RULES,
    SCHEMA_VERSION,
    Malformed,
    SqliteStore,
    StoreError,
    integrity_check,
    open_read_only,
    schema_version,
    table_columns,
)

COUNTED = ("queues", "messages", "dedup")  # the tables whose rows `check` counts


@dataclass(frozen=True, slots=True)
class BadRow:
    table: str
    rowid: int
    key: str  # how a report names the row: a message id, a queue name, ...
    reason: str

    def __str__(self) -> str:
        return f"{self.table} {self.key}: {self.reason}"


@dataclass(frozen=True, slots=True)
class CheckReport:
    path: Path
    schema_version: str
    counts: dict[str, int]  # rows per table of COUNTED (none counted in a damaged file)
    quarantined: int  # rows already moved to quarantine by earlier repairs
    integrity: str  # SQLite's integrity check: "ok" when the file is sound
    bad_rows: tuple[BadRow, ...] | None  # None: not looked for, SQLite finding the file itself damaged

    @property
    def sound(self) -> bool:
        return self.integrity == "ok" and not self.bad_rows


def bad_rows(db: sqlite3.Connection) -> list[BadRow]:
    """Every row of the live tables that breaks ROW_RULES, table by table in ROW_RULES order."""
    found: list[BadRow] = []
    for rules in ROW_RULES:
        present = table_columns(db, rules.table)
        json_column = rules.json_column if rules.json_column in present else "NULL"
        query = f"SELECT rowid, {rules.key}, {rules.problem(present)}, {json_column} FROM {rules.table}"
        for rowid, key, problem, text in db.execute(query):
            if problem is None and isinstance(text, str) and rules.parse is not None:
                try:
                    rules.parse(text)
                except Malformed as error:
                    problem = str(error)
            if problem is not None:
                found.append(BadRow(rules.table, int(rowid), str(key), str(problem)))
    return found


def check(data_dir: Path) -> CheckReport:
    """Report on the store in `data_dir` without changing it. Raises StoreError for a file that is no WonderQ
    store (or none at all), as the server would refuse it."""
    db = open_read_only(data_dir)
    try:
        version = schema_version(db)
        _refuse_newer(data_dir / DB_NAME, version)
        integrity = integrity_check(db)
        if integrity != "ok":  # what the rows hold cannot be trusted, or even read
            return CheckReport(data_dir / DB_NAME, version, {}, 0, integrity, None)
        tables = {str(name) for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        counts = {table: _count(db, table) for table in COUNTED}
        quarantined = sum(_count(db, table) for table in tables if table.startswith("quarantined_"))
        rows = tuple(bad_rows(db))
    except sqlite3.Error as error:
        raise StoreError(
            f"{data_dir / DB_NAME}: cannot read the store: {error}; restore a backup (docs/operations.md, Restoring)"
        ) from None
    finally:
        db.close()
    return CheckReport(data_dir / DB_NAME, version, counts, quarantined, integrity, rows)


def repair(data_dir: Path, *, now: float) -> list[BadRow]:
    """Move every bad row of the store in `data_dir` into quarantine, and return them. Rows that only become
    bad once others are gone (the messages of a quarantined queue) go too. Takes the data directory's locks:
    raises StoreError while a server uses it, and for a file whose pages SQLite finds damaged (a repair moves
    rows; it cannot mend pages)."""
    store = SqliteStore(data_dir)
    try:
        integrity = store.integrity_check()
        if integrity != "ok":
            raise StoreError(
                f"{store.path}: SQLite's integrity check failed ({integrity[:200]}); repair moves bad rows but"
                " cannot mend damaged pages: restore a backup (docs/operations.md, Restoring)"
            )
        moved: list[BadRow] = []
        while found := _scan(data_dir):
            if not store.quarantine(((row.table, row.rowid, row.reason) for row in found), now=now):
                break
            moved += found
        return moved
    finally:
        store.close()


def _scan(data_dir: Path) -> list[BadRow]:
    db = open_read_only(data_dir)
    try:
        return bad_rows(db)
    finally:
        db.close()


def _refuse_newer(path: Path, version: str) -> None:
    if version != SCHEMA_VERSION and version not in MIGRATIONS:
        raise StoreError(
            f"{path}: schema version {version}, this WonderQ reads {SCHEMA_VERSION}: check it with the"
            " WonderQ that wrote it"
        )


def _count(db: sqlite3.Connection, table: str) -> int:
    return int(db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
