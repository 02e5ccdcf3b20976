"""One data directory, one server: the flock on wonderq.db itself holds even when wonderq.lock is deleted, and
the tools that read a live store (backup, check) keep working beside it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.helpers import text
from tests.servers import server_process
from tests.test_store import journaled_core
from wonderq.cli import main
from wonderq.store import DB_NAME, LOCK_NAME, SqliteStore, StoreError

T0 = 1_000.0


def test_a_second_server_is_refused_even_after_the_lock_file_is_deleted(tmp_path: Path) -> None:
    with server_process("--data-dir", str(tmp_path)) as first:
        http = httpx.Client(base_url=first.url, timeout=30)
        assert http.post("/v1/queues/q/messages", content=b"only once").status_code == 201
        (tmp_path / LOCK_NAME).unlink()
        second = subprocess.run(
            [sys.executable, "-m", "wonderq", "serve", "--port", "0", "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1
        assert "is in use by another WonderQ server" in second.stderr
        assert f"pid {first.process.pid}" in second.stderr  # from /proc/locks: the lock file that named it is gone
        assert "Traceback" not in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        (lease,) = http.post("/v1/queues/q/receive", json={"max": 10}).json()["messages"]  # the first is unharmed
        assert http.post("/v1/queues/q/ack", json={"receipts": [lease["receipt"]]}).json()["failed"] == []

        backed_up = CliRunner().invoke(main, ["backup", "--data-dir", str(tmp_path), str(tmp_path.parent / "b.db")])
        assert (backed_up.exit_code, backed_up.output) == (0, f"backed up 0 messages to {tmp_path.parent / 'b.db'}\n")
        checked = CliRunner().invoke(main, ["check", "--data-dir", str(tmp_path)])
        assert checked.exit_code == 0, checked.output
        assert checked.output.endswith("sound\n")
        repaired = CliRunner().invoke(main, ["repair", "--data-dir", str(tmp_path)])
        assert repaired.exit_code == 1  # a repair needs the server stopped
        assert "is in use by another WonderQ server" in repaired.output
        http.close()
        assert first.stop(signal.SIGTERM) == 0
    SqliteStore(tmp_path).close()  # the locks went with the first server


def test_in_one_process_a_second_store_never_opens_the_file(tmp_path: Path) -> None:
    """Closing any descriptor of wonderq.db drops the POSIX locks SQLite holds on it, so a second store in the
    same process must be refused before it opens the file, and the first must go on working."""
    first = SqliteStore(tmp_path, sync="normal")
    try:
        held = posix_locks(tmp_path / DB_NAME)
        assert held  # SQLite's own, in WAL mode
        (tmp_path / LOCK_NAME).unlink()
        with pytest.raises(StoreError, match="is in use by another WonderQ server"):
            SqliteStore(tmp_path)
        assert posix_locks(tmp_path / DB_NAME) == held  # not dropped by a close of the file
        core = journaled_core()
        core.send("q", text("x"), now=T0)
        first.commit(core.drain_changes())
        assert [m.payload for m in first.load().messages] == [text("x")]
    finally:
        first.close()
    SqliteStore(tmp_path).close()  # released on close


def posix_locks(path: Path) -> list[str]:
    """The POSIX (fcntl) locks this process holds on `path`, from /proc/locks."""
    found = path.stat()
    inode = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
    return [
        " ".join(fields[3:])
        for fields in (line.split() for line in Path("/proc/locks").read_text().splitlines())
        if fields[1] == "POSIX" and fields[5] == inode and fields[4] == str(os.getpid())
    ]


def test_the_lock_is_on_the_database_file(tmp_path: Path) -> None:
    """Another process's flock on wonderq.db (not on wonderq.lock) is enough to keep a store out."""
    SqliteStore(tmp_path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'rb'); fcntl.flock(f, fcntl.LOCK_EX);"
            " print('locked', flush=True); time.sleep(60)",
            str(tmp_path / DB_NAME),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(StoreError, match=rf"in use by another WonderQ server \(pid {holder.pid}\)"):
            SqliteStore(tmp_path)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    SqliteStore(tmp_path).close()
