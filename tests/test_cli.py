"""The `wonderq` client commands, through click's runner, against a real server subprocess."""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.servers import ServerProcess, server_process
from wonderq import cli
from wonderq import client as client_module
from wonderq.cli import main
from wonderq.client import Client

TABLE_HEADER = ["queue", "ready", "leased", "sent", "received", "acked", "expired", "released", "timeout"]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with server_process() as process:
        yield process


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.url) as the_client:
        yield the_client


@pytest.fixture
def queue() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


def wonderq(server: ServerProcess, *args: str, input: bytes | str | None = None) -> Result:
    return CliRunner().invoke(main, ["--url", server.url, *args], input=input)


def lines_of(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_fails(result: Result, code: str) -> None:
    """A clean failure: exit status 1 and one `wonderq: <code>: ...` line, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"wonderq: {code}: "), result.stderr
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_send_an_argument_as_text_and_print_the_id(server: ServerProcess, client: Client, queue: str) -> None:
    result = wonderq(server, "send", queue, "hello world")
    assert result.exit_code == 0, result.output
    message_id = result.stdout.strip()
    (message,) = client.receive(queue)
    assert (message.id, message.body, message.content_type) == (message_id, "hello world", "text/plain; charset=utf-8")


def test_send_reads_stdin_as_bytes(server: ServerProcess, client: Client, queue: str) -> None:
    assert wonderq(server, "send", queue, input=b"\x00\xffraw").exit_code == 0
    assert wonderq(server, "send", queue, "-", input=b"dash").exit_code == 0
    assert wonderq(server, "send", queue, "--content-type", "text/csv", input=b"a,b\n").exit_code == 0
    bodies = [(m.body, m.content_type) for m in client.receive(queue, max=3)]
    assert bodies == [
        (b"\x00\xffraw", "application/octet-stream"),
        (b"dash", "application/octet-stream"),
        ("a,b\n", "text/csv"),
    ]


def test_send_json(server: ServerProcess, client: Client, queue: str) -> None:
    assert wonderq(server, "send", queue, "--json", '{"n": [1, 2]}').exit_code == 0
    assert wonderq(server, "send", queue, "--json", input='"from stdin"').exit_code == 0
    assert [(m.body, m.content_type) for m in client.receive(queue, max=2)] == [
        ({"n": [1, 2]}, "application/json"),
        ("from stdin", "application/json"),
    ]
    assert_fails(wonderq(server, "send", queue, "--json", "{not json"), "invalid_body")
    both = wonderq(server, "send", queue, "--json", "--content-type", "text/plain", "x")
    assert both.exit_code == 2
    assert "not both" in both.stderr


def test_send_with_delay_and_priority(server: ServerProcess, client: Client, queue: str) -> None:
    assert wonderq(server, "send", queue, "later", "--delay", "600").exit_code == 0
    assert wonderq(server, "send", queue, "low", "--priority", "5").exit_code == 0
    assert wonderq(server, "send", queue, "high", "--priority", "-5").exit_code == 0
    assert [(m.body, m.priority) for m in client.receive(queue, max=5)] == [("high", -5), ("low", 5)]
    (delayed,) = client.peek(queue, state="delayed").messages
    assert delayed.body == "later"
    assert delayed.visible_at is not None
    assert_fails(wonderq(server, "send", queue, "x", "--delay", "901"), "invalid_parameter")
    first = wonderq(server, "send", queue, "once", "--idempotency-key", "k1").stdout
    assert wonderq(server, "send", queue, "once", "--idempotency-key", "k1").stdout == first


def test_send_errors(server: ServerProcess, queue: str) -> None:
    assert_fails(wonderq(server, "send", queue, input=b""), "empty_message")
    assert_fails(wonderq(server, "send", "no spaces allowed", "x"), "invalid_queue_name")


def test_receive_prints_one_json_line_per_message(server: ServerProcess, client: Client, queue: str) -> None:
    ids = client.send_batch(queue, ["a", b"\x01", {"k": 1}])
    result = wonderq(server, "receive", queue, "--max", "5", "--consumer", "me", "--visibility-timeout", "300")
    assert result.exit_code == 0, result.output
    lines = lines_of(result)
    assert [line["id"] for line in lines] == ids
    assert [line.get("body") for line in lines] == ["a", None, {"k": 1}]
    assert lines[1]["body_base64"] == base64.b64encode(b"\x01").decode()
    assert all(line["consumer"] == "me" and line["receive_count"] == 1 for line in lines)
    assert lines[0]["lease_expires_at"] > lines[0]["sent_at"] + 250
    stats = client.get_queue(queue)
    assert (stats["ready"], stats["leased"], stats["acked"]) == (0, 3, 0)  # leased, not acked
    client.ack(queue, lines[0]["id"], lines[0]["receipt"])  # the receipt printed is the live one


def test_receive_with_ack_settles_what_it_printed(server: ServerProcess, client: Client, queue: str) -> None:
    client.send_batch(queue, ["a", "b", "c"])
    result = wonderq(server, "receive", queue, "--max", "2", "--ack")
    assert result.exit_code == 0, result.output
    assert [line["body"] for line in lines_of(result)] == ["a", "b"]
    stats = client.get_queue(queue)
    assert (stats["ready"], stats["leased"], stats["acked"]) == (1, 0, 2)


def test_receive_nothing_ready(server: ServerProcess, client: Client, queue: str) -> None:
    client.create_queue(queue)
    result = wonderq(server, "receive", queue, "--wait", "0")
    assert (result.exit_code, result.stdout) == (0, "")
    assert_fails(wonderq(server, "receive", "missing-" + queue), "queue_not_found")
    assert_fails(wonderq(server, "receive", queue, "--max", "0"), "invalid_parameter")


def test_ack_receipts(server: ServerProcess, client: Client, queue: str) -> None:
    client.send_batch(queue, ["a", "b", "c"])
    a, b, c = client.receive(queue, max=3)
    ok = wonderq(server, "ack", queue, a.receipt, b.receipt)
    assert (ok.exit_code, ok.stderr) == (0, "")
    assert client.get_queue(queue)["acked"] == 2

    partly = wonderq(server, "ack", queue, c.receipt, a.receipt, "junk")
    assert partly.exit_code == 1
    assert partly.stderr.splitlines() == [
        f"wonderq: message_not_found: {a.receipt}: message {a.id!r} is not in queue {queue!r}",
        "wonderq: invalid_receipt: junk: receipt 'junk' is not a WonderQ receipt",
    ]
    assert client.get_queue(queue)["acked"] == 3  # c was acked all the same
    assert wonderq(server, "ack", queue).exit_code == 2  # at least one receipt


def test_send_with_attributes(server: ServerProcess, client: Client, queue: str) -> None:
    result = wonderq(server, "send", queue, "hi", "--attribute", "kind=greeting", "--attribute", "note=a=b")
    assert result.exit_code == 0, result.output
    (message,) = client.receive(queue)
    assert dict(message.attributes) == {"kind": "greeting", "note": "a=b"}
    for bad in ("no-equals", "bad name=x"):
        failed = wonderq(server, "send", queue, "hi", "--attribute", bad)
        assert failed.exit_code != 0
    assert client.get_queue(queue)["sent"] == 1
    assert wonderq(server, "send", queue, "x", "--attribute", "a=1", "--attribute", "a=2").exit_code == 2


def test_send_to_a_group_of_a_fifo_queue(server: ServerProcess, client: Client, queue: str) -> None:
    fifo = f"{queue}.fifo"
    assert wonderq(server, "send", fifo, "one", "--group", "g").exit_code == 0
    received = wonderq(server, "receive", fifo)
    assert [(line["body"], line["group"]) for line in lines_of(received)] == [("one", "g")]
    assert_fails(wonderq(server, "send", fifo, "two", "--group", "g", "--priority", "1"), "invalid_parameter")


def test_create_dead_letter_and_redrive(server: ServerProcess, client: Client, queue: str) -> None:
    dlq = f"{queue}-dlq"
    assert wonderq(server, "create", dlq).exit_code == 0
    result = wonderq(
        server, "create", queue, "--max-receives", "1", "--dead-letter-queue", dlq, "--retention", "3600",
        "--visibility-timeout", "30",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    attributes = json.loads(result.stdout)["attributes"]
    assert (attributes["max_receives"], attributes["dead_letter_queue"], attributes["retention"]) == (1, dlq, 3600)
    client.send_batch(queue, ["a", "b"])
    for message in client.receive(queue, max=2):
        client.change_visibility(queue, message.id, message.receipt, 0)
    received = wonderq(server, "receive", dlq, "--max", "1", "--visibility-timeout", "0.001")
    assert [(line["body"], line["source_queue"]) for line in lines_of(received)] == [("a", queue)]
    moved = wonderq(server, "redrive", dlq, "--max", "1")
    assert (moved.exit_code, json.loads(moved.stdout)) == (0, {"moved": 1, "skipped": 0})
    assert_fails(wonderq(server, "redrive", dlq, "--to", "missing-" + queue), "queue_not_found")
    assert_fails(wonderq(server, "create", queue, "--retention", "5"), "invalid_parameter")
    assert_fails(
        wonderq(server, "create", queue, "--max-receives", "2", "--dead-letter-queue", ""), "invalid_parameter"
    )
    assert wonderq(server, "redrive", dlq, "--max", "0").exit_code == 2
    cleared = wonderq(server, "create", queue, "--max-receives", "0", "--dead-letter-queue", "")
    assert json.loads(cleared.stdout)["attributes"]["dead_letter_queue"] is None
    assert client.get_queue(queue)["ready"] == 1


def test_queues_table(server: ServerProcess, client: Client, queue: str) -> None:
    client.create_queue(queue, visibility_timeout=12.5)
    client.send_batch(queue, ["a", "b", "c"])
    client.receive(queue)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["--url", server.url, "queues"])  # no name folds
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == TABLE_HEADER
    (row,) = [line.split() for line in result.stdout.splitlines() if line.startswith(queue)]
    assert row == [queue, "2", "1", "3", "1", "0", "0", "0", "12.5s"]


def test_queues_table_keeps_numbers_whole_in_80_columns(server: ServerProcess, client: Client) -> None:
    long_name = "q" * 80
    client.send(long_name, "x")
    result = CliRunner(env={"COLUMNS": "80"}).invoke(main, ["--url", server.url, "queues"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "queue",
        "ready",
        "leased",
        "sent",
        "received",
        "acked",
        "expired",
        "released",
        "timeout",
    ]
    assert max(len(line) for line in lines) <= 80
    folded = [line.split()[0] for line in lines if line.startswith("q" * 5)]
    assert "".join(folded) == long_name  # folded onto several lines, never cut
    client.delete_queue(long_name)


def test_stats_prints_json(server: ServerProcess, client: Client, queue: str) -> None:
    client.send(queue, "a")
    result = wonderq(server, "stats", queue)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert (stats["name"], stats["ready"], stats["sent"]) == (queue, 1, 1)
    assert_fails(wonderq(server, "stats", "missing-" + queue), "queue_not_found")


def test_the_cli_default_url_is_the_clients() -> None:
    assert cli.DEFAULT_URL == client_module.DEFAULT_URL  # kept twice so that `wonderq --help` needs no httpx


def test_url_from_environment(server: ServerProcess, queue: str) -> None:
    result = CliRunner(env={"WONDERQ_URL": server.url}).invoke(main, ["send", queue, "x"])
    assert result.exit_code == 0, result.output


def test_bad_or_unreachable_url(server: ServerProcess) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = CliRunner().invoke(main, ["--url", f"http://127.0.0.1:{port}", "queues"])
    assert_fails(unreachable, "connection_failed")
    invalid = CliRunner().invoke(main, ["--url", "localhost:3000", "queues"])
    assert invalid.exit_code == 2
    assert "invalid URL" in invalid.stderr


def test_serve_is_untouched_by_the_client_options() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--tick-interval" in result.stdout
    bad = CliRunner().invoke(main, ["serve", "--port", "70000"])  # refused before anything binds
    assert bad.exit_code == 2
    assert "PORT" in bad.stderr


def test_simulate(server: ServerProcess) -> None:
    prefix = f"clisim-{uuid.uuid4().hex[:6]}-"
    args = ["--messages", "12", "--queues", "2", "--consumers", "4", "--interval", "0", "--prefix", prefix]
    result = wonderq(server, "simulate", *args, "--max-processing-time", "0.05", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "OK: no message lost" in result.stdout
    summary = dict(line.rsplit(None, 1) for line in result.stdout.splitlines() if line[:1].isalpha() and "  " in line)
    assert (summary["sent"], summary["acked"], summary["still queued"], summary["drained"]) == ("12", "12", "0", "yes")

    again = wonderq(server, "simulate", *args, "--max-processing-time", "0")  # queues are reset: a clean rerun
    assert again.exit_code == 0, again.output
    with Client(server.url) as client:
        assert sum(client.get_queue(f"{prefix}{n}")["sent"] for n in (1, 2)) == 12

    assert wonderq(server, "simulate", "--consumers", "0").exit_code == 2


def test_serve_on_a_taken_port_fails_cleanly(server: ServerProcess) -> None:
    port = server.url.rsplit(":", 1)[1]
    result = CliRunner().invoke(main, ["serve", "--memory", "--port", port])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"wonderq: cannot serve on 127.0.0.1:{port}: ")
    assert "Traceback" not in result.output


def test_consume_streams_prints_and_acks(server: ServerProcess, client: Client, queue: str) -> None:
    client.send_batch(queue, ["a", "b", "c"])
    result = wonderq(server, "consume", queue, "--credit", "2", "--count", "2", "--idle", "2")
    assert result.exit_code == 0, result.output
    assert [line["body"] for line in lines_of(result)] == ["a", "b"]
    stats = client.get_queue(queue)
    assert (stats["ready"], stats["leased"], stats["acked"]) == (1, 0, 2)
    rest = wonderq(server, "consume", queue, "--idle", "0.5")
    assert [line["body"] for line in lines_of(rest)] == ["c"]
