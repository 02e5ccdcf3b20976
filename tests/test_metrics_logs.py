"""Operations: /metrics in Prometheus's text format (parsed by prometheus-client's own parser), the access log
and X-Request-Id, and the JSON log format."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from quart.typing import TestClientProtocol as Client
from trio.testing import MockClock

from tests.servers import server_process
from tests.test_http import TEXT, check, queue_path, receive, send_texts
from wonderq.logs import TEXT_FORMAT, JsonFormatter, TextFormatter, configure
from wonderq.metrics import Metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[name, frozenset(labels.items())]


async def test_metrics_show_queues_requests_and_actor_commands(client: Client, autojump_clock: MockClock) -> None:
    await send_texts(client, 3)
    await receive(client)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    found = samples(await response.get_data(as_text=True))
    assert value(found, "wonderq_queue_messages", queue="q", state="ready") == 2
    assert value(found, "wonderq_queue_messages", queue="q", state="leased") == 1
    assert value(found, "wonderq_queue_messages", queue="q", state="delayed") == 0
    assert value(found, "wonderq_queue_sent_total", queue="q") == 3
    assert value(found, "wonderq_queue_received_total", queue="q") == 1
    assert value(found, "wonderq_queue_dead_letters", queue="q") == 0
    route = "/v1/queues/<name>/messages"
    assert value(found, "wonderq_http_request_duration_seconds_count", method="POST", route=route, status="201") == 3
    assert value(found, "wonderq_actor_command_duration_seconds_count", command="Send") == 3
    assert value(found, "wonderq_actor_backlog") == 0
    assert value(found, "wonderq_actor_parked_receives") == 0
    await client.get("/nope")
    found = samples(await (await client.get("/metrics")).get_data(as_text=True))
    assert (
        value(found, "wonderq_http_request_duration_seconds_count", method="GET", route="unmatched", status="404") == 1
    )


async def test_every_reply_has_a_request_id(client: Client, autojump_clock: MockClock) -> None:
    first = await client.get("/health")
    second = await client.get("/health")
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]
    given = await client.get("/health", headers={"X-Request-Id": "trace-42.a:b"})
    assert given.headers["X-Request-Id"] == "trace-42.a:b"
    odd = await client.get("/health", headers={"X-Request-Id": "not ok\x7f"})
    assert odd.headers["X-Request-Id"] != "not ok\x7f"
    error = await client.post(queue_path("bad name", "/receive"))
    assert error.status_code == 400
    assert error.headers["X-Request-Id"]


async def test_one_access_log_record_per_request(
    client: Client, autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wonderq.access")
    response = await client.post(queue_path("q", "/messages"), data="m", headers={"Content-Type": TEXT})
    await check(response, 201)
    (record,) = [r for r in caplog.records if r.name == "wonderq.access"]
    fields = {name: getattr(record, name) for name in ("method", "route", "path", "status", "request_id")}
    assert fields == {
        "method": "POST",
        "route": "/v1/queues/<name>/messages",
        "path": "/v1/queues/q/messages",
        "status": 201,
        "request_id": response.headers["X-Request-Id"],
    }
    assert record.duration_ms >= 0  # type: ignore[attr-defined]
    assert record.levelno == logging.INFO


def test_the_json_format_writes_the_request_fields_and_the_error() -> None:
    record = logging.LogRecord("wonderq.access", logging.INFO, __file__, 1, "GET %s", ("/health",), None)
    record.request_id, record.status, record.duration_ms = "r1", 200, 1.5
    entry = json.loads(JsonFormatter().format(record))
    assert {key: entry[key] for key in ("level", "logger", "message", "request_id", "status", "duration_ms")} == {
        "level": "info",
        "logger": "wonderq.access",
        "message": "GET /health",
        "request_id": "r1",
        "status": 200,
        "duration_ms": 1.5,
    }
    assert entry["time"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("wonderq.web", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(failed))["error"]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_configure_sets_the_level_and_the_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure("warning", "json")
    logging.getLogger("wonderq.test").info("hidden")
    logging.getLogger("wonderq.test").warning("shown %d", 1)
    (line,) = capsys.readouterr().err.splitlines()
    assert json.loads(line)["message"] == "shown 1"
    configure("debug", "text")
    logging.getLogger("wonderq.test").debug("plain")
    assert capsys.readouterr().err.rstrip().endswith("DEBUG wonderq.test: plain")


def test_a_server_scraped_over_http_counts_its_journal_commits(tmp_path: Path) -> None:
    with server_process("--data-dir", str(tmp_path)) as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        batch = {"messages": [{"body": i} for i in range(5)]}
        assert http.post("/v1/queues/jobs/messages/batch", json=batch).status_code == 201
        found = samples(http.get("/metrics").text)
        http.close()
    assert value(found, "wonderq_journal_commit_duration_seconds_count") >= 2  # the queue "default", the batch
    assert value(found, "wonderq_journal_commit_batch_commands_count") >= 2
    assert value(found, "wonderq_queue_messages", queue="jobs", state="ready") == 5


def test_serve_logs_json_lines_when_told_to(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "wonderq", "serve", "--port", "0", "--memory", "--log-format", "json"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert process.stderr is not None
        entry = json.loads(process.stderr.readline())
        while "listening" not in entry["message"]:
            entry = json.loads(process.stderr.readline())
        assert (entry["level"], entry["logger"]) == ("info", "wonderq.server")
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.mark.parametrize("created", [1_700_000_000.0, 1_700_000_000.0005, 1_700_000_000.999, 1_700_000_001.25])
def test_the_formatters_cache_the_second_but_write_each_records_time(created: float) -> None:
    text, as_json = TextFormatter(), JsonFormatter()
    for offset in (0.0, 0.001, 1.0, 0.0):  # the same second again, the next one, and back to the first
        record = logging.LogRecord("wonderq.access", logging.INFO, __file__, 1, "GET %s", ("/health",), None)
        record.created = created + offset
        record.msecs = float(int((record.created - int(record.created)) * 1000))
        assert text.format(record) == logging.Formatter(TEXT_FORMAT).format(record)
        expected = datetime.fromtimestamp(int(record.created), UTC).replace(microsecond=int(record.msecs) * 1000)
        assert json.loads(as_json.format(record))["time"] == expected.isoformat(timespec="milliseconds")


def test_metrics_reuse_one_child_per_label_values() -> None:
    metrics = Metrics()
    for seconds in (0.001, 0.002):
        metrics.observe_request("GET", "/health", 200, seconds)
        metrics.observe_command("Send", seconds)
    metrics.observe_request("GET", "/health", 500, 0.003)
    found = samples(metrics.render([], backlog=0, parked=0).decode())
    name = "wonderq_http_request_duration_seconds_count"
    assert value(found, name, method="GET", route="/health", status="200") == 2
    assert value(found, name, method="GET", route="/health", status="500") == 1
    assert value(found, "wonderq_actor_command_duration_seconds_count", command="Send") == 2
    assert value(found, "wonderq_actor_command_duration_seconds_sum", command="Send") == pytest.approx(0.003)


async def test_made_up_methods_share_one_label(client: Client, autojump_clock: MockClock) -> None:
    """40,000 made-up methods once grew /metrics to 82 MB: a method outside the standard set is "other"."""
    for number in range(50):
        made_up: dict[str, Any] = {"method": f"FOO{number}"}
        response = await client.open("/health", **made_up)
        assert response.status_code == 405
    text = await (await client.get("/metrics")).get_data(as_text=True)
    assert "FOO" not in text
    found = samples(text)
    name = "wonderq_http_request_duration_seconds_count"
    assert value(found, name, method="other", route="unmatched", status="405") == 50


def test_the_text_log_escapes_what_a_client_sent() -> None:
    formatter = TextFormatter()
    forged = "GET /x\n2026-11-22 09:30:12,345 INFO wonderq.access: POST /v1/queues/jobs/messages 201 \x1b[2J\r\u2028"
    record = logging.LogRecord("wonderq.access", logging.INFO, __file__, 1, "%s 404", (forged,), None)
    line = formatter.format(record)
    assert "\n" not in line
    assert "\r" not in line
    assert "\x1b" not in line
    assert "\u2028" not in line
    assert line.endswith(
        "GET /x\\n2026-11-22 09:30:12,345 INFO wonderq.access: POST /v1/queues/jobs/messages 201 \\x1b[2J\\r\\u2028 404"
    )
    assert "café" in formatter.format(logging.LogRecord("x", logging.INFO, __file__, 1, "café", (), None))


def test_a_traceback_stays_under_its_record() -> None:
    formatter = TextFormatter()
    try:
        raise ValueError("bad\n2026-11-22 09:30:12,345 INFO wonderq.access: forged")
    except ValueError:
        record = logging.LogRecord("wonderq.web", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    first, *rest = formatter.format(record).split("\n")
    assert first.endswith("ERROR wonderq.web: failed")
    assert rest
    assert all(line.startswith("    ") for line in rest)  # no line of the traceback looks like a record
    assert f"{' ' * 4}2026-11-22 09:30:12,345 INFO wonderq.access: forged" in rest  # the message's own lines too


def test_a_path_with_a_newline_writes_one_log_line() -> None:
    """Over a real socket, as a hostile client sends it: %0a in the path decodes to a newline."""
    with server_process("--log-format", "text") as server:
        target = "/x%0a2026-11-22%2009:30:12,345%20INFO%20wonderq.access:%20forged%1b[31m"
        response = httpx.get(httpx.URL(server.url + "/").copy_with(raw_path=target.encode()))
        assert response.status_code == 404
        server.stop()
    access = [line for line in server.log if "wonderq.access:" in line]
    forged = [line for line in access if "forged" in line]
    assert len(forged) == 1
    assert forged[0].split("wonderq.access: ", 1)[1].startswith("GET /x\\n2026-11-22")
    assert "\\x1b[31m" in forged[0]
