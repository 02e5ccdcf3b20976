"""A full disk: the reserve the store keeps, given up so that a full disk can still be drained, and made again
once there is room. On a REAL full file system (a small tmpfs mounted for the test) where the machine allows
it, skipped loudly otherwise; the reserve's bookkeeping on an ordinary disk."""

from __future__ import annotations

import base64
import itertools
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import limits
from tests.servers import server_process
from wonderq.core import Core
from wonderq.errors import StorageFull
from wonderq.ids import TimeOrderedIds
from wonderq.model import Lease, Payload
from wonderq.store import RESERVE_NAME, WAL_CHECKPOINT_PAGES, SqliteStore

MIB = 1024 * 1024
T0 = 1_000.0
DISK_BYTES = 24 * MIB  # the tmpfs
RESERVE = 2 * MIB
BODY = Payload(os.urandom(1000), "application/octet-stream")  # random: nothing on the way compresses it


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A DISK_BYTES tmpfs mounted in the test's directory, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("NOT TESTED: a real full disk needs root and mount(8) to mount a small tmpfs")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"NOT TESTED: a real full disk: cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def free_bytes(path: Path) -> int:
    found = os.statvfs(path)
    return found.f_bavail * found.f_frsize


def fill(disk: Path, *, leave: int) -> Path:
    """A filler file that leaves `leave` bytes of `disk` free."""
    filler = disk / "filler"
    with filler.open("wb") as file:
        file.write(b"\xff" * max(0, free_bytes(disk) - leave))
    return filler


def journaled_core() -> Core:
    tokens = itertools.count(1)
    return Core(
        limits=limits(max_message_bytes=2000),
        new_id=TimeOrderedIds(),
        new_token=lambda: f"t{next(tokens)}",
        track_changes=True,
    )


def send_until_full(store: SqliteStore, core: Core) -> int:
    """Send batches of ten as the actor would (refused once `room()` is 0); the messages stored."""
    sent = 0
    while store.room() != 0:
        core.send_batch("q", [BODY] * 10, now=T0)
        store.commit(core.drain_changes())
        sent += 10
    return sent


def drain(store: SqliteStore, core: Core, *, lease_first: int = 0, most: int | None = None) -> int:
    """Lease `lease_first` messages, then lease ten at a time, release one of them (visibility 0: it is leased
    again next round) and ack the others and the first ones, until `most` are acked or none is left: every
    commit must go through. The messages acked."""
    held: list[Lease] = []
    while len(held) < lease_first:
        held += core.receive("q", max_messages=10, visibility_timeout=None, consumer="w", now=T0)
        store.commit(core.drain_changes())
    acked = 0
    while (most is None or acked < most) and (
        leases := core.receive("q", max_messages=10, visibility_timeout=None, consumer="w", now=T0)
    ):
        store.commit(core.drain_changes())
        if len(leases) > 1:  # release one (visibility 0): leased again next round
            core.change_visibility("q", leases[0].id, leases[0].receipt, 0, now=T0)
            store.commit(core.drain_changes())
            leases = leases[1:]
        for lease in leases + held:
            core.ack("q", lease.id, lease.receipt, now=T0)
        store.commit(core.drain_changes())
        acked += len(leases) + len(held)
        held = []
    return acked


def test_a_full_disk_is_drained_and_takes_sends_again_once_compaction_made_room(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore(small_disk / "data", sync="normal", reserve_bytes=RESERVE)
    try:
        assert (small_disk / "data" / RESERVE_NAME).stat().st_size == RESERVE
        fill(small_disk, leave=6 * MIB)
        core = journaled_core()
        with caplog.at_level(logging.INFO, logger="wonderq.store"):
            sent = send_until_full(store, core)  # the last commit hit the full disk and went through on the reserve
            assert sent > 3000
            assert store.disk_full
            assert not (small_disk / "data" / RESERVE_NAME).exists()
            assert store.room() == 0  # what makes the actor refuse sends
            assert core.queue_stats("q", now=T0).ready == sent  # nothing lost, nothing undone
            acked = drain(store, core, lease_first=50, most=50)
            store.compact()
            assert store.disk_full  # 100 messages gave back less than a quarter of the reserve
            acked += drain(store, core)
            assert acked == sent
            store.compact()  # gives the drained store's space back: room for the reserve again
        assert not store.disk_full
        assert store.room() is None
        assert (small_disk / "data" / RESERVE_NAME).stat().st_size == RESERVE
        core.send("q", BODY, now=T0)
        store.commit(core.drain_changes())
        transitions = [(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records]
        assert transitions == [
            ("WARNING", f"the disk of {small_disk / 'data'} is full"),
            ("INFO", f"the disk of {small_disk / 'data'} has room again"),
        ]  # each logged once
    finally:
        store.close()
    reopened = SqliteStore(small_disk / "data", sync="normal", reserve_bytes=RESERVE)
    try:
        assert [m.payload for m in reopened.load().messages] == [BODY]
    finally:
        reopened.close()


def test_a_purge_goes_through_on_a_full_disk(small_disk: Path) -> None:
    store = SqliteStore(small_disk / "data", sync="normal", reserve_bytes=RESERVE)
    try:
        fill(small_disk, leave=5 * MIB)
        core = journaled_core()
        sent = send_until_full(store, core)
        core.purge("q", now=T0)
        store.commit(core.drain_changes())
        assert core.queue_stats("q", now=T0).ready == 0
        assert sent > 0
        assert list(store.load().messages) == []
    finally:
        store.close()


def test_without_a_reserve_a_full_disk_refuses_leases_too(small_disk: Path) -> None:
    """RESERVE_BYTES=0 keeps nothing back: once the disk is full writes answer 507, as docs/operations.md
    says (and the same once even the reserve's space is used up)."""
    store = SqliteStore(small_disk / "data", sync="normal", reserve_bytes=0)
    try:
        fill(small_disk, leave=4 * MIB)
        core = journaled_core()
        with pytest.raises(StorageFull):  # noqa: PT012 (sends until the disk is full)
            for _ in range(10_000):
                core.send_batch("q", [BODY] * 10, now=T0)
                store.commit(core.drain_changes())
        core.restore(store.load())  # as the actor does after a failed commit
        assert store.room() is None  # nothing tells sends apart
        leases = core.receive("q", max_messages=10, visibility_timeout=None, consumer=None, now=T0)
        with pytest.raises(StorageFull):
            store.commit(core.drain_changes())
        assert leases
    finally:
        store.close()


def test_a_server_on_a_full_disk_refuses_sends_but_drains_and_recovers(small_disk: Path) -> None:
    """The whole server: sends answer 507 once the disk is full; receives, releases, acks and purges answer
    2xx; once space is freed, sends are accepted again."""
    data = small_disk / "data"
    env = {"RESERVE_BYTES": str(RESERVE), "COMPACT_INTERVAL": "0.2"}
    flags = ("--data-dir", str(data), "--max-message-bytes", "10000", "--max-batch", "100")
    with server_process(*flags, env=env) as server:
        filler = fill(small_disk, leave=5 * MIB)
        http = httpx.Client(base_url=server.url, timeout=30)
        body = {"messages": [{"body_base64": base64.b64encode(os.urandom(8000)).decode()} for _ in range(50)]}
        assert http.post("/v1/queues/other/messages", content=b"x").status_code == 201
        sent = 0
        while (reply := http.post("/v1/queues/q/messages/batch", json=body)).status_code == 201:
            sent += 50
        assert (reply.status_code, reply.json()["error"]["code"]) == (507, "insufficient_storage")
        assert sent > 300
        assert http.post("/v1/queues/q/messages", content=b"x").status_code == 507  # still full
        first = http.post("/v1/queues/q/receive", json={"max": 1}).json()["messages"][0]
        release = {"receipt": first["receipt"], "visibility_timeout": 0}
        assert http.patch(f"/v1/queues/q/messages/{first['id']}", json=release).json()["released"] is True
        acked = 0
        while leases := http.post("/v1/queues/q/receive", json={"max": 100}).json()["messages"]:
            reply = http.post("/v1/queues/q/ack", json={"receipts": [m["receipt"] for m in leases]})
            assert (reply.status_code, reply.json()["failed"]) == (200, [])
            acked += len(leases)
        assert acked == sent
        assert http.post("/v1/queues/other/purge").status_code == 200
        filler.unlink()
        deadline = time.monotonic() + 20
        while (status := http.post("/v1/queues/q/messages", content=b"x").status_code) == 507:
            assert time.monotonic() < deadline, "sends never came back"
            time.sleep(0.1)
        assert status == 201
        http.close()
        assert server.stop(signal.SIGTERM) == 0
    log = "".join(server.log)
    assert log.count("is full: released the 2 MiB reserve") == 1
    assert log.count("has room again") == 1


# ---- the reserve's bookkeeping, on an ordinary disk ------------------------------------------------------


def test_the_reserve_is_allocated_at_open_kept_across_restarts_and_removed_when_unwanted(tmp_path: Path) -> None:
    SqliteStore(tmp_path, reserve_bytes=RESERVE).close()
    reserve = tmp_path / RESERVE_NAME
    found = reserve.stat()
    assert (found.st_size, found.st_blocks * 512 >= RESERVE) == (RESERVE, True)  # written, not sparse
    assert reserve.read_bytes()[:4096] != bytes(4096)  # not zeros, which a compressing file system would not store
    SqliteStore(tmp_path, reserve_bytes=RESERVE).close()
    assert reserve.stat().st_ino == found.st_ino  # kept as it was
    SqliteStore(tmp_path).close()  # a tool (no reserve wanted, none refused): leaves it alone
    assert reserve.exists()
    SqliteStore(tmp_path, reserve_bytes=0).close()  # RESERVE_BYTES=0: none kept
    assert not reserve.exists()
    with reserve.open("wb") as sparse:
        sparse.truncate(RESERVE)
    SqliteStore(tmp_path, reserve_bytes=RESERVE).close()
    assert reserve.stat().st_blocks * 512 >= RESERVE  # a sparse file is made again


def test_the_store_limit_does_not_spend_the_reserve(tmp_path: Path) -> None:
    """SQLite answers SQLITE_FULL at MAX_STORE_BYTES' page limit too; with room on the disk, the reserve stays."""
    store = SqliteStore(tmp_path, sync="normal", max_bytes=16 * 1024, reserve_bytes=RESERVE)
    try:
        core = journaled_core()
        for _ in range(600):  # past max_bytes * 1.25 + 4 MiB
            core.send_batch("q", [BODY] * 10, now=T0)
        with pytest.raises(StorageFull):
            store.commit(core.drain_changes())
        assert not store.disk_full
        assert (tmp_path / RESERVE_NAME).exists()
    finally:
        store.close()


def test_a_reserve_checkpoints_the_wal_before_it_outgrows_half_the_reserve(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path, reserve_bytes=RESERVE)
    try:
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == RESERVE // 2 // 4096
    finally:
        store.close()
    default = SqliteStore(tmp_path / "default", reserve_bytes=64 * MIB)
    try:
        assert default._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_CHECKPOINT_PAGES
    finally:
        default.close()


def test_no_room_for_the_reserve_at_start_refuses_sends_until_there_is(small_disk: Path) -> None:
    fill(small_disk, leave=RESERVE // 2)
    store = SqliteStore(small_disk / "data", sync="normal", reserve_bytes=RESERVE)
    try:
        assert store.disk_full
        assert store.room() == 0
        assert not (small_disk / "data" / RESERVE_NAME).exists()  # no half-made reserve left behind
        (small_disk / "filler").unlink()
        store.compact()
        assert store.room() is None
    finally:
        store.close()
