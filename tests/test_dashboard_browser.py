"""The dashboard in a real browser: headless Chromium (Debian's `chromium`, which scripts/_bootstrap installs),
driven by Playwright for Python against a real server. Playwright never downloads a browser here.

The tests wait for conditions (Playwright's `expect` polls until its timeout), never for fixed times. Each page
must load nothing but the server's own assets and log no error (a Content-Security-Policy violation included).

`python -m tests.test_dashboard_browser docs/dashboard.png` takes the dashboard screenshot kept in docs/.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.servers import ServerProcess, server_process

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")  # the system Chromium only, never a download

TIMEOUT_MS = 5000  # how long a condition may take to hold; the stream updates once a second
XSS = '<script>window.pwned=1</script><img src=x onerror="window.pwned=1">'


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("no `chromium` on PATH: install Debian's chromium package (scripts/_bootstrap does)")
    return found


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with server_process() as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


@pytest.fixture
def page(browser: Browser, server: ServerProcess) -> Iterator[Page]:
    """A fresh page; on teardown, checks it logged no error and fetched nothing from anywhere but the server."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    expect.set_options(timeout=TIMEOUT_MS)
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    foreign: list[str] = []
    opened.on("request", lambda request: None if request.url.startswith(server.url) else foreign.append(request.url))
    yield opened
    context.close()
    assert not problems
    assert not foreign


def send(http: httpx.Client, queue: str, *bodies: str) -> list[str]:
    messages = [{"body": body, "content_type": "text/plain"} for body in bodies]
    reply = http.post(f"/v1/queues/{queue}/messages/batch", json={"messages": messages})
    assert reply.status_code == 201
    ids: list[str] = reply.json()["ids"]
    return ids


def test_the_overview_follows_sends_and_receives_live(page: Page, http: httpx.Client, server: ServerProcess) -> None:
    assert http.put("/v1/queues/live-counts").status_code == 201
    page.goto(server.url + "/")
    expect(page.locator("#status")).to_have_text("live")
    row = page.locator('tr[data-queue="live-counts"]')
    ready, leased = row.locator('[data-field="ready"]'), row.locator('[data-field="leased"]')
    expect(ready).to_have_text("0")
    expect(row.locator('[data-field="oldest"]')).to_have_text("-")

    send(http, "live-counts", "one", "two", "three")
    expect(ready).to_have_text("3")
    expect(row.locator('[data-field="oldest"]')).to_have_text(re.compile(r"^\d+s$"))
    expect(row.locator('[data-field="send-rate"]')).not_to_have_text("-")  # a rate, from two snapshots

    assert len(http.post("/v1/queues/live-counts/receive", json={"max": 2}).json()["messages"]) == 2
    expect(ready).to_have_text("1")
    expect(leased).to_have_text("2")
    expect(row.locator("svg.rate-chart polyline")).to_have_count(3)  # sent, acked, redelivered
    expect(row.locator("a")).to_have_attribute("href", "/dashboard/queues/live-counts")


def test_purge_from_the_queue_page_after_confirming(page: Page, http: httpx.Client, server: ServerProcess) -> None:
    send(http, "to-purge", *(f"message {n}" for n in range(5)))
    http.post("/v1/queues/to-purge/receive", json={"max": 1})  # a leased one goes too
    page.goto(server.url + "/dashboard/queues/to-purge")
    expect(page.locator("#queue-name")).to_have_text("to-purge")
    expect(page.locator("#message-rows tr.message")).to_have_count(5)
    expect(page.locator('#cards [data-field="ready"]')).to_have_text("4")

    questions: list[str] = []

    def dismiss_then_accept(dialog: Any) -> None:
        questions.append(dialog.message)
        if len(questions) == 1:
            dialog.dismiss()
        else:
            dialog.accept()

    page.on("dialog", dismiss_then_accept)
    page.locator("#purge").click()  # dismissed: nothing happens
    expect(page.locator("#message-rows tr.message")).to_have_count(5)
    assert http.get("/v1/queues/to-purge").json()["ready"] == 4

    page.locator("#purge").click()
    expect(page.locator("#action-result")).to_have_text("Purged 5 messages.")
    expect(page.locator("#message-rows tr.message")).to_have_count(0)
    expect(page.locator('#cards [data-field="ready"]')).to_have_text("0")
    expect(page.locator('#cards [data-field="leased"]')).to_have_text("0")
    assert "to-purge" in questions[0]
    stats = http.get("/v1/queues/to-purge").json()
    assert (stats["ready"], stats["leased"]) == (0, 0)


def test_a_message_body_shows_as_text_and_never_runs(page: Page, http: httpx.Client, server: ServerProcess) -> None:
    send(http, "xss", XSS)
    http.post("/v1/queues/xss/messages", json={"html": XSS})  # as JSON too
    page.goto(server.url + "/dashboard/queues/xss")
    previews = page.locator("#message-rows td.preview")
    expect(previews).to_have_count(2)
    expect(previews.nth(0)).to_have_text(XSS)
    assert XSS.replace('"', '\\"') in previews.nth(1).inner_text()
    previews.nth(0).click()  # the expanded view shows the whole body, as text too
    expect(page.locator("pre.body")).to_have_text(XSS)
    assert page.locator("#messages img").count() == 0
    assert page.locator("#messages script").count() == 0
    assert page.evaluate("window.pwned") is None

    page.goto(server.url + "/")  # the overview lists the queue
    expect(page.locator('tr[data-queue="xss"] [data-field="ready"]')).to_have_text("2")
    assert page.evaluate("window.pwned") is None


def test_the_message_browser_pages_and_deletes_one_message(
    page: Page, http: httpx.Client, server: ServerProcess
) -> None:
    ids = send(http, "browse", *(f"message {n}" for n in range(25)))
    leased = http.post("/v1/queues/browse/receive", json={"consumer": "worker-7"}).json()["messages"][0]
    page.goto(server.url + "/dashboard/queues/browse")
    page.locator("#limit").select_option("20")
    rows = page.locator("#message-rows tr.message")
    expect(rows).to_have_count(20)
    first = rows.nth(0)
    expect(first).to_have_attribute("data-id", leased["id"])
    expect(first).to_have_attribute("data-state", "leased")
    expect(first.locator("td").nth(5)).to_have_text("worker-7")
    expect(first.locator("[data-lease]")).to_have_text(re.compile(r"^in \d+s$"))
    expect(page.locator("#previous")).to_be_disabled()

    page.locator("#next").click()
    expect(rows).to_have_count(5)
    expect(rows.nth(0)).to_have_attribute("data-id", ids[20])
    expect(page.locator("#next")).to_be_disabled()
    page.locator("#previous").click()
    expect(rows).to_have_count(20)

    page.locator("#state").select_option("leased")
    expect(rows).to_have_count(1)
    page.locator("#state").select_option("")
    expect(rows).to_have_count(20)

    page.once("dialog", lambda dialog: dialog.accept())
    rows.nth(1).locator("button").click()
    expect(page.locator("#action-result")).to_have_text(f"Deleted message {ids[1]}.")
    expect(page.locator(f'#message-rows tr[data-id="{ids[1]}"]')).to_have_count(0)
    assert http.get("/v1/queues/browse").json()["ready"] == 23


# ---- the screenshot in docs/ ----------------------------------------------------------------------------------


def take_screenshot(path: Path) -> None:
    """A dashboard with a few queues under steady load, its charts filled for a few seconds."""
    with server_process() as running, httpx.Client(base_url=running.url, timeout=10) as client:
        client.put("/v1/queues/emails-dead")
        client.put("/v1/queues/emails", json={"max_receives": 3, "dead_letter_queue": "emails-dead"})
        client.put("/v1/queues/thumbnails", json={"visibility_timeout": 30})
        send(client, "emails-dead", *(f'{{"to": "user{n}@example.com"}}' for n in range(4)))
        stop = threading.Event()

        def load() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                send(client, "emails", *(f"welcome mail {n}.{k}" for k in range(3)))
                send(client, "thumbnails", *(f"photo-{n}-{k}.jpg" for k in range(5)))
                for queue, count in (("emails", 2), ("thumbnails", 4)):
                    got = client.post(f"/v1/queues/{queue}/receive", json={"max": count, "visibility_timeout": 1})
                    for message in got.json()["messages"][: count - 1]:
                        client.delete(
                            f"/v1/queues/{queue}/messages/{message['id']}", params={"receipt": message["receipt"]}
                        )
                time.sleep(0.3)

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
            shown = browser.new_page(viewport={"width": 1280, "height": 520})
            shown.goto(running.url + "/")
            expect(shown.locator('tr[data-queue="thumbnails"]')).to_have_count(1)
            time.sleep(40)  # seconds of chart history (the charts show the last 60)
            shown.screenshot(path=str(path))
            browser.close()
        stop.set()
        worker.join()


if __name__ == "__main__":
    take_screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png"))


def test_the_api_docs_render_offline(page: Page, server: ServerProcess) -> None:
    """Swagger UI from WonderQ's own files lists the operations of /openapi.json (the page fixture fails the
    test on any request to another host)."""
    page.goto(f"{server.url}/api-docs")
    expect(page.locator(".opblock-summary-path", has_text="/v1/queues/{name}/messages/batch")).to_be_visible()
    expect(page.locator(".opblock-tag", has_text="messages")).to_be_visible()
