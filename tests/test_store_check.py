"""`wonderq check`, `wonderq repair` and `wonderq serve` on damaged stores, as an operator sees them: one line on
stderr and exit status 1 for a store that cannot be used, a report of every bad row, and a repair that lets the
server start again."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
from click.testing import CliRunner

from tests.servers import server_process
from tests.test_store_damaged import base_changes, make_damaged
from wonderq.cli import main
from wonderq.store import DB_NAME, SqliteStore


def make_store(data: Path, *statements: str) -> None:
    store = SqliteStore(data, sync="normal")
    store.commit(base_changes())
    store.close()
    with sqlite3.connect(data / DB_NAME) as db:
        for statement in statements:
            db.execute(statement)
    db.close()


def serve(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wonderq", "serve", "--port", "0", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_bad_row_stops_start_up_with_one_line_until_repaired(tmp_path: Path) -> None:
    """A body stored as TEXT made every receive of its queue answer 500; now the server does not start on it,
    says what to do, and starts once the row is in quarantine."""
    make_store(tmp_path, "UPDATE messages SET body = 'as text' WHERE id = 1000")
    refused = serve(tmp_path)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert line == (
        f"wonderq: {tmp_path / DB_NAME}: a bad row in table messages (00000000000003e8: body is TEXT, not BLOB);"
        f" list every bad row with `wonderq check --data-dir {tmp_path}`, then move them to quarantine with"
        f" `wonderq repair --data-dir {tmp_path}` while the server is stopped"
    )

    checked = CliRunner().invoke(main, ["check", "--data-dir", str(tmp_path)])
    assert checked.exit_code == 1
    assert checked.output == (
        f"{tmp_path / DB_NAME}: WonderQ store, schema version 2\n"
        "  rows: 3 queues, 4 messages, 1 dedup; 0 in quarantine\n"
        "  integrity check: ok\n"
        "  bad rows: 1\n"
        "    messages 00000000000003e8: body is TEXT, not BLOB\n"
        f"not sound: stop the server, then `wonderq repair --data-dir {tmp_path}` quarantines the bad rows\n"
    )
    repaired = CliRunner().invoke(main, ["repair", "--data-dir", str(tmp_path)])
    assert repaired.exit_code == 0
    assert repaired.output == (
        "moved 1 bad rows to quarantine (tables quarantined_<table> of the store):\n"
        "  messages 00000000000003e8: body is TEXT, not BLOB\n"
    )
    again = CliRunner().invoke(main, ["check", "--data-dir", str(tmp_path)])
    assert again.exit_code == 0
    assert "  rows: 3 queues, 3 messages, 1 dedup; 1 in quarantine\n" in again.output
    assert again.output.endswith("  bad rows: none\nsound\n")
    assert (
        CliRunner().invoke(main, ["repair", "--data-dir", str(tmp_path)]).output == "no bad rows: nothing to repair\n"
    )
    with server_process("--data-dir", str(tmp_path)) as server:
        assert "recovered 3 messages in 3 queues" in "".join(server.log)
        assert httpx.get(server.url + "/v1/queues/jobs").json()["ready"] == 0  # one leased, one delayed


def test_a_store_that_cannot_be_used_is_one_line_and_status_1_for_every_command(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).touch()
    expected = "is empty (0 bytes) where a store was expected"
    refused = serve(tmp_path)
    assert (refused.returncode, len(refused.stderr.strip().splitlines())) == (1, 1)
    assert expected in refused.stderr
    for command in ("check", "repair"):
        result = CliRunner().invoke(main, [command, "--data-dir", str(tmp_path)])
        assert result.exit_code == 1
        assert result.output.startswith("wonderq: ")
        assert expected in result.output
    backed_up = CliRunner().invoke(main, ["backup", "--data-dir", str(tmp_path), str(tmp_path / "copy.db")])
    assert (backed_up.exit_code, expected in backed_up.output) == (1, True)


def test_check_reports_a_damaged_file(tmp_path: Path) -> None:
    make_damaged(tmp_path)
    result = CliRunner().invoke(main, ["check", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "  bad rows: not looked for in a damaged file\n" in result.output
    assert result.output.endswith(
        "not sound: SQLite finds the file damaged; restore a backup (docs/operations.md, Restoring)\n"
    )


def test_backup_works_with_a_relative_data_directory(tmp_path: Path) -> None:
    """The default --data-dir (wonderq-data) is relative; the backup used to fail on it with a traceback."""
    make_store(tmp_path / "wonderq-data")
    result = subprocess.run(
        [sys.executable, "-m", "wonderq", "backup", "copy.db"], capture_output=True, text=True, cwd=tmp_path, timeout=30
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "backed up 4 messages to copy.db\n", "")
