"""Cross-site attacks from a real browser: headless Chromium (as in tests/test_dashboard_browser.py) opens an
attacker's page served from a second origin on 127.0.0.1, and that page tries, against a WonderQ server run as on
a developer's laptop (auth off, loopback), every request issue 12 found a page of another site could make: form
posts (a purge, the dashboard's delete, a receive, `/addMessage`, `text/plain` forms shaped as JSON), `fetch` in
no-cors mode, an `<img>` on `GET /readMessage`, a WebSocket that subscribes and acks, and a `DELETE` that needs a
CORS preflight.

The proof is what the server holds afterwards (through the API: every message still there and never received,
nothing added, no queue gone) and what it answered (its access log; for the WebSocket upgrade, which the access
log does not show, the handshake error the browser reports). The same page from an origin in ALLOWED_ORIGINS gets
through where the gate alone stood in its way: so the browser really delivered each request, and the refusals are
the server's doing.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.servers import ServerProcess, server_process
from tests.test_dashboard_browser import chromium_path

LOG_TIMEOUT = 5.0  # seconds for the server's access log lines to reach the test
ATTACK_TIMEOUT_MS = 5000  # how long the page may follow one attack (a few milliseconds when all goes well)
ACCESS_LINE = re.compile(r"wonderq\.access: (\S+) (\S+) (\d{3}) ")
SECRETS = 3  # messages in the queue the WebSocket goes after

Answer = tuple[str, str, int]  # a request as the server's access log shows it: method, path, status

# The attacker's page. It takes the target server (and the id of a message to delete) from its query string and
# offers each attack as a function of `window.attacks`, which the test calls one at a time.
ATTACK_PAGE = r"""<!doctype html>
<html><head><meta charset="utf-8"><title>cute cats</title></head><body>
<script>
const params = new URLSearchParams(location.search);
const target = params.get("target");

function submitForm(name, action, fields, enctype) {
  const frame = document.createElement("iframe");
  frame.name = name;
  document.body.append(frame);
  const form = document.createElement("form");
  form.method = "POST";
  form.action = target + action;
  form.target = name;
  if (enctype) form.enctype = enctype;
  for (const [key, value] of Object.entries(fields)) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = key;
    input.value = value;
    form.append(input);
  }
  document.body.append(form);
  form.submit();
  return "submitted";
}

function post(path, body) {
  return fetch(target + path, { method: "POST", mode: "no-cors", body }).then((r) => r.type, (e) => String(e));
}

function image(path) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve("loaded");
    img.onerror = () => resolve("error");
    img.src = target + path;
  });
}

function stream(queue, expected) {
  return new Promise((resolve) => {
    const seen = { events: [], read: 0, acked: 0 };
    const socket = new WebSocket(target.replace(/^http/, "ws") + `/v1/queues/${queue}/stream`);
    socket.onopen = () => {
      seen.events.push("open");
      socket.send(JSON.stringify({ op: "subscribe", credit: 100 }));
    };
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      seen.events.push(frame.op);
      if (frame.op === "messages") {
        seen.read += frame.messages.length;
        socket.send(JSON.stringify({ op: "ack", receipts: frame.messages.map((m) => m.receipt) }));
      } else if (frame.op === "acked") {
        seen.acked += frame.acked.length;
        if (seen.acked >= expected) socket.close();
      }
    };
    socket.onerror = () => seen.events.push("error");
    socket.onclose = (event) => resolve({ ...seen, code: event.code });
  });
}

// Each attack starts when the test calls it. One that the page can follow to its end returns a promise of what
// it saw; a form post returns once submitted (its reply may be a 204, which loads nothing to wait for).
const delete_id = params.get("delete");
window.attacks = {
  purge: () => submitForm("purge", "/v1/queues/purge-me/purge", {}),
  // A sandboxed frame has an opaque origin: its requests say `Origin: null`.
  sandboxedPurge: () => {
    const frame = document.createElement("iframe");
    frame.sandbox = "allow-scripts allow-forms";
    frame.srcdoc = `<form method="POST" action="${target}/v1/queues/purge-me/purge"></form>
      <script>document.forms[0].submit();<\/script>`;
    document.body.append(frame);
    return "submitted";
  },
  dashboardDelete: () => submitForm("delete", `/dashboard/api/queues/delete-from/messages/${delete_id}/delete`, {}),
  receiveForm: () => submitForm("receive", "/v1/queues/lease-me/receive", {}),
  readMessageImage: () => image("/readMessage?time=43200"),
  addMessageForm: () => submitForm("add", "/addMessage", { body: "sent by a form" }),
  fetchBatch: () => post("/v1/queues/injected/messages/batch",
    JSON.stringify({ messages: [{ body: "sent by fetch, text/plain" }] })),
  // A Blob's type is not a header no-cors mode lets through: the request goes without any Content-Type.
  fetchBatchBlob: () => post("/v1/queues/injected/messages/batch",
    new Blob([JSON.stringify({ messages: [{ body: "sent by fetch, a Blob" }] })], { type: "application/json" })),
  fetchSend: () => post("/v1/queues/injected/messages", "sent by fetch, raw"),
  // A text/plain form sends name=value: this name and value make the body a valid batch.
  textFormBatch: () => submitForm("text-batch", "/v1/queues/injected/messages/batch",
    { '{"messages":[{"body":"sent by a text/plain form': '"}]}' }, "text/plain"),
  textFormSend: () => submitForm("text-send", "/v1/queues/injected/messages",
    { "sent by a text/plain form": "raw" }, "text/plain"),
  corsDelete: () => fetch(target + "/v1/queues/doomed", { method: "DELETE" }).then((r) => r.status, (e) => String(e)),
  stream: () => stream("secret", Number(params.get("secrets"))),
};
</script></body></html>
"""

# Runs one attack; `evaluate` itself would wait for ever on a promise that never settles.
RUN_ATTACK = """([name, ms]) => Promise.race([
  window.attacks[name](),
  new Promise((resolve) => setTimeout(() => resolve(`no end within ${ms} ms`), ms)),
])"""


class AttackSite(BaseHTTPRequestHandler):
    """The attacker's web site: the one page, and nothing else."""

    def do_GET(self) -> None:
        found = self.path.startswith("/attack?")
        body = ATTACK_PAGE.encode() if found else b"not here"
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8" if found else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # the parameter's name is the base class's
        pass  # quiet: the test reads WonderQ's log, not this one


@pytest.fixture(scope="module")
def attacker_port() -> Iterator[int]:
    """The port of the attacker's site, on 127.0.0.1 (its origin is http://127.0.0.1:PORT or http://localhost:PORT)."""
    site = ThreadingHTTPServer(("127.0.0.1", 0), AttackSite)
    serving = threading.Thread(target=site.serve_forever, daemon=True)
    serving.start()
    yield site.server_address[1]
    site.shutdown()
    site.server_close()
    serving.join(timeout=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    yield context.new_page()
    context.close()


def seed(http: httpx.Client) -> str:
    """The victims: a few messages in each queue an attack goes after, an empty queue to inject into and one to
    delete. Returns the id of the message the dashboard's delete action is aimed at."""
    ids: dict[str, list[str]] = {}
    for queue, count in (("purge-me", 3), ("delete-from", 2), ("lease-me", 2), ("default", 2), ("secret", SECRETS)):
        messages = [{"body": f"{queue} {n}", "content_type": "text/plain"} for n in range(count)]
        reply = http.post(f"/v1/queues/{queue}/messages/batch", json={"messages": messages})
        assert reply.status_code == 201
        ids[queue] = reply.json()["ids"]
    for queue in ("injected", "doomed"):
        assert http.put(f"/v1/queues/{queue}").status_code == 201
    return ids["delete-from"][0]


def snapshot(http: httpx.Client) -> dict[str, Any]:
    """Every queue with its counters, and every message in it as a peek shows it (state, receive count, lease)."""
    queues = http.get("/v1/queues").json()["queues"]
    messages = {queue["name"]: http.get(f"/v1/queues/{queue['name']}/messages").json() for queue in queues}
    return {"queues": queues, "messages": messages}


class AccessLog:
    """The server's access log from now on, read as it reaches the test (through a pipe, so a little late)."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.position = len(server.log)

    def _wait_for(self, done: Callable[[list[str]], int | None]) -> list[str]:
        """The new lines up to the count `done` gives for them (None: not yet), or all there are at the deadline."""
        deadline = time.monotonic() + LOG_TIMEOUT
        while True:
            lines = self.server.log[self.position :]
            count = done(lines)
            if count is not None or time.monotonic() > deadline:
                taken = lines[:count] if count is not None else lines
                self.position += len(taken)
                return taken
            time.sleep(0.01)

    def next(self, count: int) -> list[Answer]:
        """The next `count` requests the server answered."""

        def enough(lines: list[str]) -> int | None:
            found = [n for n, line in enumerate(lines) if ACCESS_LINE.search(line)]
            return found[count - 1] + 1 if len(found) >= count else None

        return answers(self._wait_for(enough)) if count else []

    def rest(self, http: httpx.Client) -> list[Answer]:
        """Every request answered from here until a marker request the test makes now (which is not included)."""
        marker = f"marker-{time.monotonic_ns()}"
        assert http.get("/health", headers={"X-Request-Id": marker}).status_code == 200
        found = self._wait_for(lambda lines: next((n + 1 for n, line in enumerate(lines) if marker in line), None))
        assert found, "the marker request never reached the log"
        assert marker in found[-1], "the marker request never reached the log"
        return answers(found[:-1])


def answers(lines: list[str]) -> list[Answer]:
    return [(m[1], m[2], int(m[3])) for line in lines if (m := ACCESS_LINE.search(line))]


def attack(
    page: Page, server: ServerProcess, http: httpx.Client, origin: str, target_message: str, expected: dict[str, int]
) -> tuple[dict[str, Any], dict[str, list[Answer]], list[str]]:
    """Open the attacker's page at `origin` against `server` and run its attacks in the order of `expected`, which
    gives the requests the server should see for each. Returns what the page saw of each attack, what the server
    answered to each (and under "afterwards", to anything that came after), and the errors the browser reported
    for WebSocket handshakes."""
    socket_errors: list[str] = []
    page.on("websocket", lambda socket: socket.on("socketerror", lambda error: socket_errors.append(error)))
    query = urlencode({"target": server.url, "delete": target_message, "secrets": SECRETS})
    page.goto(f"{origin}/attack?{query}")
    log = AccessLog(server)
    seen: dict[str, Any] = {}
    answered: dict[str, list[Answer]] = {}
    for name, count in expected.items():
        seen[name] = page.evaluate(RUN_ATTACK, [name, ATTACK_TIMEOUT_MS])
        answered[name] = log.next(count)  # a form's reply comes after `evaluate` returns: wait for it
    answered["afterwards"] = log.rest(http)
    return seen, answered, socket_errors


def counts(expected: dict[str, list[Answer]]) -> dict[str, int]:
    return {name: len(requests) for name, requests in expected.items()}


def refusals(target_message: str) -> dict[str, list[Answer]]:
    """What the server answers to each attack from an origin it does not know, in the order the page tries them."""
    return {
        "purge": [("POST", "/v1/queues/purge-me/purge", 403)],
        "sandboxedPurge": [("POST", "/v1/queues/purge-me/purge", 403)],
        "dashboardDelete": [("POST", f"/dashboard/api/queues/delete-from/messages/{target_message}/delete", 403)],
        "receiveForm": [("POST", "/v1/queues/lease-me/receive", 403)],
        "readMessageImage": [("GET", "/readMessage", 403)],
        "addMessageForm": [("POST", "/addMessage", 403)],
        "fetchBatch": [("POST", "/v1/queues/injected/messages/batch", 403)],
        "fetchBatchBlob": [("POST", "/v1/queues/injected/messages/batch", 403)],
        "fetchSend": [("POST", "/v1/queues/injected/messages", 403)],
        "textFormBatch": [("POST", "/v1/queues/injected/messages/batch", 403)],
        "textFormSend": [("POST", "/v1/queues/injected/messages", 403)],
        # The preflight is answered, without CORS headers for this origin: the browser never sends the DELETE.
        "corsDelete": [("OPTIONS", "/v1/queues/doomed", 200)],
        "stream": [("GET", "/v1/queues/secret/stream", 403)],  # the refused upgrade (the browser reports it too)
    }


def admissions(target_message: str) -> dict[str, list[Answer]]:
    """What the server answers to each attack from an origin in ALLOWED_ORIGINS."""
    return {
        "purge": [("POST", "/v1/queues/purge-me/purge", 200)],
        "sandboxedPurge": [("POST", "/v1/queues/purge-me/purge", 403)],  # Origin: null is never allowed
        "dashboardDelete": [("POST", f"/dashboard/api/queues/delete-from/messages/{target_message}/delete", 204)],
        "receiveForm": [("POST", "/v1/queues/lease-me/receive", 200)],  # an empty body: the defaults
        "readMessageImage": [("GET", "/readMessage", 403)],  # no Origin to allow; Sec-Fetch-Site: same-site
        "addMessageForm": [("POST", "/addMessage", 201)],
        "fetchBatch": [("POST", "/v1/queues/injected/messages/batch", 415)],  # text/plain
        "fetchBatchBlob": [("POST", "/v1/queues/injected/messages/batch", 201)],  # no Content-Type: read as JSON
        "fetchSend": [("POST", "/v1/queues/injected/messages", 201)],
        "textFormBatch": [("POST", "/v1/queues/injected/messages/batch", 415)],
        "textFormSend": [("POST", "/v1/queues/injected/messages", 201)],
        "corsDelete": [("OPTIONS", "/v1/queues/doomed", 204), ("DELETE", "/v1/queues/doomed", 204)],
        "stream": [],  # an accepted upgrade is not a request of the access log
    }


@pytest.mark.parametrize(
    "attacker_host",
    [
        pytest.param("127.0.0.1", id="same-site-other-port"),  # Sec-Fetch-Site: same-site (ports do not count)
        pytest.param("localhost", id="cross-site"),  # Sec-Fetch-Site: cross-site
    ],
)
def test_a_page_of_another_origin_changes_nothing(page: Page, attacker_port: int, attacker_host: str) -> None:
    """Every attack reaches the server and is refused (403 cross_site_refused; the preflight gets no CORS headers,
    so the DELETE is never sent), and the server holds exactly what it held before."""
    origin = f"http://{attacker_host}:{attacker_port}"
    with server_process() as server, httpx.Client(base_url=server.url, timeout=10) as http:
        target_message = seed(http)
        before = snapshot(http)
        assert all(m["receive_count"] == 0 for q in before["messages"].values() for m in q["messages"])
        expected = refusals(target_message)

        seen, answered, socket_errors = attack(page, server, http, origin, target_message, counts(expected))

        assert answered == {**expected, "afterwards": []}
        assert seen["stream"] == {"events": ["error"], "read": 0, "acked": 0, "code": 1006}
        assert len(socket_errors) == 1, socket_errors
        assert "403" in socket_errors[0]  # Chromium's words: "Unexpected response code: 403"
        assert seen["corsDelete"].startswith("TypeError"), seen  # the browser would not send it
        assert snapshot(http) == before  # every message there, none received, nothing added, every queue kept
        refused = http.post("/v1/queues/purge-me/purge", headers={"Origin": origin})
        assert refused.json()["error"]["code"] == "cross_site_refused"  # what the page was answered, seen from here


def test_the_same_page_from_an_allowed_origin_gets_through(page: Page, attacker_port: int) -> None:
    """The control: with the attacker's origin in ALLOWED_ORIGINS, the browser's requests pass the origin check,
    and every attack only that check stopped works. What the other checks stop stays stopped: bodies labelled as
    anything but JSON (415), a sandboxed frame (Origin: null), and the `<img>`, which sends no Origin to be
    allowed, only Sec-Fetch-Site."""
    origin = f"http://127.0.0.1:{attacker_port}"
    with server_process("--allowed-origins", origin) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        target_message = seed(http)
        expected = admissions(target_message)

        seen, answered, socket_errors = attack(page, server, http, origin, target_message, counts(expected))

        assert answered == {**expected, "afterwards": []}
        ws = seen["stream"]  # subscribed, read every message and acked it, then closed (1005: no code given)
        assert (ws["events"][0], ws["read"], ws["acked"], ws["code"]) == ("open", SECRETS, SECRETS, 1005)
        assert socket_errors == []
        assert seen["corsDelete"] == 204
        stats = {queue["name"]: queue for queue in http.get("/v1/queues").json()["queues"]}
        assert "doomed" not in stats
        assert (stats["purge-me"]["ready"], stats["delete-from"]["ready"]) == (0, 1)
        assert (stats["lease-me"]["ready"], stats["lease-me"]["leased"]) == (1, 1)
        assert (stats["secret"]["ready"], stats["secret"]["acked"]) == (0, SECRETS)
        classic = http.get("/v1/queues/default/messages").json()["messages"]
        added = classic[2:]  # after the two seeded ones
        assert [(m["content_type"], base64.b64decode(m["body_base64"])) for m in added] == [
            ("application/x-www-form-urlencoded", b"body=sent+by+a+form")
        ]
        assert all(m["receive_count"] == 0 for m in classic)  # the image leased none
        injected = http.get("/v1/queues/injected/messages").json()["messages"]
        assert sorted(m["body"] for m in injected) == [
            "sent by a text/plain form=raw\r\n",
            "sent by fetch, a Blob",
            "sent by fetch, raw",
        ]
