"""Durability end to end: a real server on a data directory, stopped cleanly or killed, and started again."""

from __future__ import annotations

import base64
import random
import signal
from pathlib import Path

import httpx
import pytest

from tests.crash import crash_round
from tests.servers import server_process


def test_a_clean_restart_keeps_everything_that_was_not_acked(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path))
    with server_process(*data) as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        assert http.put("/v1/queues/jobs", json={"visibility_timeout": 7}).status_code == 201
        sent = [
            http.post("/v1/queues/jobs/messages", json={"n": 1}).json()["id"],
            http.post("/v1/queues/jobs/messages", content="two", headers={"content-type": "text/plain"}).json()["id"],
            http.post("/v1/queues/jobs/messages", content=b"\x00\xff").json()["id"],
            http.post("/v1/queues/jobs/messages", content="four", headers={"content-type": "text/plain"}).json()["id"],
        ]
        leased, acked = http.post("/v1/queues/jobs/receive", json={"max": 2, "visibility_timeout": 600}).json()[
            "messages"
        ]
        assert (
            http.delete(f"/v1/queues/jobs/messages/{acked['id']}", params={"receipt": acked["receipt"]}).status_code
            == 204
        )
        before = http.get("/v1/queues/jobs").json()
        http.close()
        assert server.stop(signal.SIGTERM) == 0
        assert "recovered 0 messages" in "".join(server.log)

    with server_process(*data) as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        log = "".join(server.log)
        assert "recovered 3 messages in 2 queues" in log  # "jobs" and the classic "default"
        after = http.get("/v1/queues/jobs").json()
        assert after == before  # attributes, counts and totals
        assert after["attributes"]["visibility_timeout"] == 7
        (still_leased,) = http.get("/v1/queues/jobs/messages", params={"state": "leased"}).json()["messages"]
        assert (still_leased["id"], still_leased["receive_count"]) == (leased["id"], 1)
        assert still_leased["lease_expires_at"] == leased["lease_expires_at"]
        ready = http.post("/v1/queues/jobs/receive", json={"max": 10}).json()["messages"]
        assert [m["id"] for m in ready] == sent[2:]  # the leased one stays invisible; the acked one is gone
        assert base64.b64decode(ready[0]["body_base64"]) == b"\x00\xff"
        assert (ready[0]["content_type"], ready[1]["body"]) == ("application/octet-stream", "four")
        receipt = leased["receipt"]
        assert http.delete(f"/v1/queues/jobs/messages/{leased['id']}", params={"receipt": receipt}).status_code == 204
        new_id = http.post("/v1/queues/jobs/messages", content=b"five").json()["id"]
        assert new_id > max(sent)  # ids keep increasing across the restart
        http.close()


def test_dead_letters_attributes_and_queue_settings_survive_a_restart(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path))
    with server_process(*data) as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        assert http.put("/v1/queues/dlq", json={"retention": 7200}).status_code == 201
        settings = {"max_receives": 1, "dead_letter_queue": "dlq", "retention": 3600, "visibility_timeout": 30}
        assert http.put("/v1/queues/work", json=settings).status_code == 201
        entries = [{"body": "dead", "attributes": {"k": "v"}}, {"body": "alive", "attributes": {"n": "2"}}]
        dead, alive = http.post("/v1/queues/work/messages/batch", json={"messages": entries}).json()["ids"]
        (lease,) = http.post("/v1/queues/work/receive", json={"max": 1}).json()["messages"]
        reply = http.patch(
            f"/v1/queues/work/messages/{dead}", json={"receipt": lease["receipt"], "visibility_timeout": 0}
        )
        assert reply.json()["released"] is True
        before = {name: http.get(f"/v1/queues/{name}").json() for name in ("work", "dlq")}
        assert before["work"]["dead_lettered"] == 1
        http.close()
        assert server.stop(signal.SIGTERM) == 0

    with server_process(*data) as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        assert {name: http.get(f"/v1/queues/{name}").json() for name in ("work", "dlq")} == before
        (letter,) = http.get("/v1/queues/dlq/messages").json()["messages"]
        assert (letter["id"], letter["source_queue"], letter["attributes"]) == (dead, "work", {"k": "v"})
        assert http.delete("/v1/queues/dlq").json()["error"]["code"] == "queue_in_use"
        assert http.post("/v1/queues/dlq/redrive").json() == {"moved": 1, "skipped": 0}
        ready = http.post("/v1/queues/work/receive", json={"max": 2}).json()["messages"]
        assert [(m["id"], m["attributes"], m["receive_count"]) for m in ready] == [
            (dead, {"k": "v"}, 1),
            (alive, {"n": "2"}, 1),
        ]
        http.close()


def test_a_second_server_on_the_same_data_directory_fails_at_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    with server_process("--data-dir", str(tmp_path)) as first:
        result = subprocess.run(
            [sys.executable, "-m", "wonderq", "serve", "--port", "0", "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1
        assert "is in use by another WonderQ server" in result.stderr
        assert f"pid {first.process.pid}" in result.stderr
        assert "Traceback" not in result.stderr
        assert httpx.get(first.url + "/health").status_code == 200  # the first one is unharmed


def test_an_unusable_data_directory_fails_at_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "file").write_text("x")
    result = subprocess.run(
        [sys.executable, "-m", "wonderq", "serve", "--port", "0", "--data-dir", str(tmp_path / "file" / "data")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "cannot use the data directory" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("seed", random.Random(20261122).sample(range(1_000_000), 3))
def test_nothing_acknowledged_is_lost_when_the_server_is_killed(tmp_path: Path, seed: int) -> None:
    result = crash_round(tmp_path, seed)
    assert result.problems == [], result
    assert result.confirmed > 0  # the load really ran before the kill


@pytest.mark.parametrize("seed", [15163, 427657])  # stopped after 1.4 s and 1.1 s of load: acks are in flight
def test_a_graceful_stop_with_work_in_flight_loses_nothing_and_brings_no_ack_back(tmp_path: Path, seed: int) -> None:
    """SIGTERM while producers send, consumers receive, ack and release: every send answered 201 is there after
    the restart unless an ack of it was tried, no message acked with 204 is, and every long lease survives."""
    result = crash_round(tmp_path, seed, signum=signal.SIGTERM)
    assert result.problems == [], result
    assert result.confirmed > 0
    assert result.acked > 0  # acks were in flight too


def test_backup_while_serving_and_restore_from_it(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from wonderq.cli import main

    live = tmp_path / "live"
    with server_process("--data-dir", str(live)) as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        ids = http.post("/v1/queues/q/messages/batch", json={"messages": [{"body": n} for n in range(3)]}).json()["ids"]
        result = CliRunner().invoke(main, ["backup", "--data-dir", str(live), str(tmp_path / "copy.db")])
        assert result.exit_code == 0, result.output
        assert "backed up 3 messages" in result.output
        again = CliRunner().invoke(main, ["backup", "--data-dir", str(live), str(tmp_path / "copy.db")])
        assert again.exit_code == 1
        assert "will not overwrite" in again.output
        http.close()
    restored = tmp_path / "restored"
    restored.mkdir()
    (tmp_path / "copy.db").rename(restored / "wonderq.db")
    with server_process("--data-dir", str(restored)) as server:
        page = httpx.get(server.url + "/v1/queues/q/messages").json()
        assert [(m["id"], m["body"]) for m in page["messages"]] == list(zip(ids, range(3), strict=True))
