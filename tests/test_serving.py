"""Serving as an operator exposes it: auth on or refused beyond loopback, the connection cap, body timeouts, the
listen backlog, TLS (with HTTP/2 and client certificates, on a CA made at test time), `wonderq token`, and the
client and CLI with a bearer token. Real servers on 127.0.0.1 port 0; a few real seconds at most."""

from __future__ import annotations

import json
import logging
import ssl
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing
import trustme
from click.testing import CliRunner

from tests.helpers import settings, write_auth_file
from tests.servers import serving
from wonderq.access import Access, AccessConfigError
from wonderq.cli import main
from wonderq.client import AsyncClient, WonderQClientError
from wonderq.errors import TooManyConnections
from wonderq.listener import ConnectionCap, refusal
from wonderq.server import check_exposure, hypercorn_config, serve

# ---- who may serve where --------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5"])
def test_without_auth_only_loopback_may_be_served(host: str) -> None:
    chosen = settings(host=host)
    with pytest.raises(AccessConfigError, match=f"refusing to serve on {host} without authentication"):
        check_exposure(chosen, Access(None, None))


def test_insecure_serves_beyond_loopback_with_a_loud_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        check_exposure(settings(host="0.0.0.0", insecure=True), Access(None, None))
    assert "SERVING WITHOUT AUTHENTICATION on 0.0.0.0" in caplog.text
    caplog.clear()
    for host in ("127.0.0.1", "::1", "localhost"):
        check_exposure(settings(host=host), Access(None, None))
    assert not caplog.text


def test_with_auth_any_address_may_be_served(tmp_path: Path) -> None:
    write_auth_file(tmp_path / "auth.toml", {"a": {"*": ["send"]}})

    async def check() -> None:
        chosen = settings(host="0.0.0.0", auth_file=tmp_path / "auth.toml")
        check_exposure(chosen, Access.from_settings(chosen))

    trio.run(check)


def test_the_cli_refuses_before_binding_anything() -> None:
    """Nothing is bound: the refusal comes before the socket (tests bind to 127.0.0.1 only)."""
    command = [sys.executable, "-m", "wonderq", "serve", "--host", "0.0.0.0", "--port", "0", "--memory"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "wonderq: refusing to serve on 0.0.0.0 without authentication" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_auth_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    text = '[[principals]]\nname = "a"\ntoken_hashes = ["plain"]\n[principals.permissions]\n"*" = ["send"]\n'
    (tmp_path / "auth.toml").write_text(text)
    command = [sys.executable, "-m", "wonderq", "serve", "--port", "0", "--memory", "--auth-file", "auth.toml"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("wonderq: auth.toml: principal 'a': token hash 'plain'"), result.stderr


# ---- the connection cap, body timeouts, the backlog -----------------------------------------------------------


async def request_over(stream: trio.SocketStream, raw: bytes) -> bytes:
    """Send `raw` and read until the peer closes or a whole reply (by Content-Length) has come."""
    await stream.send_all(raw)
    data = b""
    with trio.fail_after(10):
        while True:
            chunk = await stream.receive_some(65536)
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if not chunk or (lengths and len(body) >= int(lengths[0].split(b":")[1])):
                return data


def health(port: int) -> bytes:
    return f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


async def test_connections_beyond_the_cap_get_a_503_and_are_closed() -> None:
    async with serving(max_connections=3) as url:
        port = int(url.rsplit(":", 1)[1])
        held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
        for stream in held:  # each one served: counted as open
            assert b" 200 " in await request_over(stream, health(port))
        extra = await trio.open_tcp_stream("127.0.0.1", port)
        refused = await request_over(extra, health(port))
        head, _, body = refused.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert b"retry-after: 1" in head.lower()
        assert json.loads(body)["error"]["code"] == "too_many_connections"
        assert await extra.receive_some(100) == b""  # the server ended its side
        await extra.aclose()
        await held.pop().aclose()
        with trio.fail_after(10):  # the server sees the close, and has room again
            while True:
                again = await trio.open_tcp_stream("127.0.0.1", port)
                reply = await request_over(again, health(port))
                await again.aclose()
                if b" 200 " in reply:
                    break
                await trio.sleep(0.05)
        for stream in held:
            await stream.aclose()


async def test_the_cap_counts_and_refuses_in_process() -> None:
    cap = ConnectionCap(1)
    served: list[str] = []
    release = trio.Event()

    async def handle(stream: trio.abc.Stream) -> None:
        served.append("in")
        await release.wait()

    left, right = trio.testing.memory_stream_pair()
    refused_left, refused_right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cap.serve, handle, left)
        await trio.testing.wait_all_tasks_blocked()
        assert cap.open == 1
        await cap.serve(handle, refused_left)
        assert cap.refused == 1
        expected = refusal(TooManyConnections("the server has 1 connections open, its limit (MAX_CONNECTIONS)"))
        assert await refused_right.receive_some(65536) == expected
        release.set()
    assert cap.open == 0
    assert served == ["in"]
    del right


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/v1/queues/jobs/messages", "text/plain"), ("/v1/queues/jobs/messages/batch", "application/json")],
)
async def test_a_body_that_never_comes_times_out(path: str, content_type: str) -> None:
    async with serving(body_timeout=0.5) as url, httpx.AsyncClient(base_url=url) as http:
        port = int(url.rsplit(":", 1)[1])
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        started = trio.current_time()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            "Content-Length: 1000\r\n\r\n{"
        )
        reply = await request_over(stream, head.encode())
        assert reply.startswith(b"HTTP/1.1 408 ")
        assert b'"request_timeout"' in reply
        assert trio.current_time() - started < 5
        await stream.aclose()
        assert (await http.get("/v1/queues/jobs")).status_code == 404  # nothing was sent


async def closed_after(stream: trio.SocketStream, trickle: bytes, every: float, limit: float) -> float:
    """Send `trickle` a byte at a time, one every `every` seconds, until the server closes the connection;
    the seconds that took (at most `limit`). Anything the server sends first fails the test: it has no whole
    request to answer."""
    started = trio.current_time()
    with trio.fail_after(limit):
        try:
            for byte in trickle:
                await stream.send_all(bytes([byte]))
                with trio.move_on_after(every):
                    assert await stream.receive_some(100) == b""
                    break
            else:
                assert await stream.receive_some(100) == b""
        except trio.BrokenResourceError:  # a byte sent after the close: the peer's reset
            pass
    return trio.current_time() - started


async def test_headers_that_never_end_are_closed_by_the_idle_timeout() -> None:
    """A slowloris: headers that trickle in a byte at a time do not restart the clock, so the connection is
    closed IDLE_TIMEOUT after it opened however long the headers go on."""
    async with serving(idle_timeout=0.5) as url:
        port = int(url.rsplit(":", 1)[1])
        endless = (f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + "X-Pad: " + "a" * 400).encode()
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        assert 0.4 < await closed_after(stream, endless, every=0.05, limit=5) < 2.0  # 20 s of trickle it would take
        await stream.aclose()
        # an idle keep-alive connection goes the same way, after a reply that was whole
        idle = await trio.open_tcp_stream("127.0.0.1", port)
        assert b" 200 " in await request_over(idle, health(port))
        with trio.fail_after(5):
            assert await idle.receive_some(100) == b""
        await idle.aclose()


def test_the_idle_timeout_is_hypercorns_keep_alive_timeout() -> None:
    assert hypercorn_config(settings()).keep_alive_timeout == 5.0
    assert hypercorn_config(settings(idle_timeout=30)).keep_alive_timeout == 30


def test_the_listen_backlog_is_configurable() -> None:
    assert hypercorn_config(settings()).backlog == 4096
    assert hypercorn_config(settings(backlog=128)).backlog == 128


# ---- TLS ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> dict[str, Path]:
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = {"cert": tmp_path / "server.pem", "key": tmp_path / "server.key", "ca": tmp_path / "ca.pem"}
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    for blob in server.cert_chain_pems[1:]:
        blob.write_to_path(str(files["cert"]), append=True)
    server.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    return files


async def test_https_and_http2_with_a_certificate(ca: trustme.CA, tls_files: dict[str, Path]) -> None:
    async with serving(certfile=tls_files["cert"], keyfile=tls_files["key"]) as url:
        assert url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context()
        ca.configure_trust(context)
        async with httpx.AsyncClient(base_url=url, verify=context, http2=True) as http:
            response = await http.get("/health")
            assert response.status_code == 200
            assert response.http_version == "HTTP/2"
            sent = await http.post(
                "/v1/queues/jobs/messages", content=b"over h2", headers={"Content-Type": "text/plain"}
            )
            assert sent.status_code == 201
        async with AsyncClient(url, verify=str(tls_files["ca"])) as client:
            [message] = await client.receive("jobs")
            assert message.body == "over h2"
        async with httpx.AsyncClient(base_url=url) as untrusting:  # the system's CAs do not know this one
            with pytest.raises(httpx.ConnectError):
                await untrusting.get("/health")


async def test_client_certificates_can_be_required(ca: trustme.CA, tls_files: dict[str, Path]) -> None:
    async with serving(
        certfile=tls_files["cert"], keyfile=tls_files["key"], ca_certs=tls_files["ca"], verify_client=True
    ) as url:
        without = ssl.create_default_context()
        ca.configure_trust(without)
        async with httpx.AsyncClient(base_url=url, verify=without) as http:
            with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                await http.get("/health")
        with_cert = ssl.create_default_context()
        ca.configure_trust(with_cert)
        ca.issue_cert("client@example").configure_cert(with_cert)
        async with httpx.AsyncClient(base_url=url, verify=with_cert) as http:
            assert (await http.get("/health")).status_code == 200


def test_tls_settings_go_together(tmp_path: Path) -> None:
    from wonderq.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="CERTFILE and KEYFILE go together"):
        load_settings(certfile=tmp_path / "a.pem")
    with pytest.raises(ConfigError, match="VERIFY_CLIENT needs CA_CERTS"):
        load_settings(certfile=tmp_path / "a.pem", keyfile=tmp_path / "a.key", verify_client=True)


# ---- tokens: made by the CLI, sent by the client and the CLI ----------------------------------------------------


def test_wonderq_token_prints_a_token_and_the_lines_for_the_auth_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["token", "orders", "--permission", "orders*=send,receive"])
    assert result.exit_code == 0, result.output
    token, *lines = result.stdout.strip().splitlines()
    assert token.startswith("wq_")
    document = tomllib.loads("\n".join(line for line in lines if line))
    [principal] = document["principals"]
    assert principal["name"] == "orders"
    assert principal["permissions"] == {"orders*": ["send", "receive"]}
    assert token not in "\n".join(lines)
    (tmp_path / "auth.toml").write_text("\n".join(lines))

    from wonderq.principals import load_principals

    found = load_principals(tmp_path / "auth.toml").by_token(token)
    assert found is not None
    assert found.name == "orders"
    bad = CliRunner().invoke(main, ["token", "orders", "--permission", "x=read"])
    assert bad.exit_code == 2


async def test_the_client_and_the_cli_send_their_token(tmp_path: Path) -> None:
    tokens = write_auth_file(tmp_path / "auth.toml", {"app": {"jobs": ["send", "receive", "monitor"]}})
    async with serving(auth_file=tmp_path / "auth.toml") as url:
        async with AsyncClient(url, token=tokens["app"]) as client:
            await client.send("jobs", "hi")
            [message] = await client.receive("jobs")
            await client.ack("jobs", message.id, message.receipt)
        async with AsyncClient(url) as anonymous:
            with pytest.raises(WonderQClientError) as refused:
                await anonymous.send("jobs", "hi")
            assert (refused.value.status, refused.value.code) == (401, "unauthorized")
        async with AsyncClient(url, token=tokens["app"]) as client:
            with pytest.raises(WonderQClientError) as forbidden:
                await client.send("other", "hi")
            assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")

        def cli(*args: str, **env: str) -> tuple[int, str]:
            result = CliRunner().invoke(main, ["--url", url, *args], env=env)
            return result.exit_code, result.output

        code, output = await trio.to_thread.run_sync(
            lambda: cli("send", "jobs", "from the cli", WONDERQ_TOKEN=tokens["app"])
        )
        assert code == 0, output
        code, output = await trio.to_thread.run_sync(lambda: cli("--token", tokens["app"], "stats", "jobs"))
        assert code == 0, output
        assert json.loads(output)["ready"] == 1
        code, output = await trio.to_thread.run_sync(lambda: cli("stats", "jobs"))
        assert code == 1
        assert output.startswith("wonderq: unauthorized: ")


async def test_a_client_that_never_reads_does_not_hold_up_a_shutdown() -> None:
    """hypercorn writes shielded from cancellation: without closing its socket, a stuck writer held the exit for
    as long as its client kept the socket open."""
    from tests.test_stream_e2e import raw_socket

    chosen = settings(graceful_timeout=1.0, max_message_bytes=65536, max_request_bytes=1024 * 1024)
    shutdown, stopped = trio.Event(), trio.Event()

    async def run(task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        await serve(chosen, shutdown=shutdown, task_status=task_status)
        stopped.set()

    async with trio.open_nursery() as nursery:
        url = (await nursery.start(run))[0]
        async with AsyncClient(url) as client:
            for _ in range(20):
                await client.send_batch("big", ["x" * 60_000] * 10)  # 12 MB: more than every buffer between us
        async with raw_socket(url, "/v1/queues/big/stream") as stuck:
            await stuck.send({"op": "subscribe", "credit": 1000})  # and then reads nothing
            await trio.sleep(1.0)  # the server's writer fills the socket's buffers and blocks
            started = trio.current_time()
            shutdown.set()
            with trio.fail_after(10):
                await stopped.wait()
            assert trio.current_time() - started < 1.0 + 0.5 + 2.0  # the grace, the margin, and some slack


async def test_a_reply_before_the_body_arrived_says_connection_close() -> None:
    """A 413 for a declared body over the limit is sent before the body is read, and hypercorn then closes the
    connection: without `Connection: close` a client sent its next request into the closing connection."""
    body = b"g" * (64 * 1024)  # over the test settings' MAX_MESSAGE_BYTES (1 KiB) and MAX_REQUEST_BYTES (64 KiB)
    text = {"content-type": "text/plain"}
    async with serving() as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        for _ in range(5):
            refused = await http.post("/v1/queues/q/messages", content=body * 4, headers=text)
            assert refused.status_code == 413
            assert refused.headers["connection"] == "close"
            assert (await http.post("/v1/queues/q/messages", content=b"ok", headers=text)).status_code == 201
        kept = await http.post("/v1/queues/q/messages", content=b"ok", headers=text)
        assert "connection" not in kept.headers  # a request answered after its whole body keeps its connection


async def test_a_client_hanging_up_on_an_early_reply_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """Closing as soon as the status line of a 408 arrives raced hypercorn's close with the reply's last write,
    which was logged as an error with its traceback: any client could fill the log."""

    async def one(port: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        head = (
            f"POST /v1/queues/default/receive HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nconnection: close\r\n"
            "content-type: application/json\r\ncontent-length: 100\r\n\r\n{"
        )
        await stream.send_all(head.encode())
        got = b""
        while b"\r\n" not in got and (chunk := await stream.receive_some(4096)):
            got += chunk
        await stream.aclose()
        assert got.startswith(b"HTTP/1.1 408")

    with caplog.at_level(logging.ERROR):
        async with serving(body_timeout=0.3) as url:
            port = int(url.rsplit(":", 1)[1])
            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    for _ in range(100):
                        nursery.start_soon(one, port)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_replies_keep_their_connection_alive() -> None:
    """A reply says Connection: close only when it left before its body arrived: every other keeps alive."""
    text = {"content-type": "text/plain"}
    async with serving() as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        replies = [
            await http.get("/health"),
            await http.post("/v1/queues/q/messages", content=b"ok", headers=text),
            await http.post("/v1/queues/q/receive", json={"max": 1}),
            await http.post("/v1/queues/q/purge"),
            await http.get("/v1/queues/nope"),
        ]
    assert [reply.headers.get("connection") for reply in replies] == [None] * len(replies)
