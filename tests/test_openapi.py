"""The OpenAPI document: made from the app's routes (every route is in it), every reference resolves, real
replies fit the reply models it names, and /api-docs works offline (its assets are served by WonderQ)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from trio.testing import MockClock

from tests.test_http import TEXT, check, queue_path, receive_one, send, send_texts
from wonderq.openapi import IGNORED_METHODS, openapi_path, operation_of
from wonderq.web import API_DOCS_ASSETS


async def openapi_document(client: Client) -> dict[str, Any]:
    document: dict[str, Any] = await check(await client.get("/openapi.json"), 200)
    return document


async def test_every_route_of_the_app_is_in_the_document(client: Client, autojump_clock: MockClock) -> None:
    document = await openapi_document(client)
    app = client.app
    routes = {
        (openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in set(rule.methods or ()) - IGNORED_METHODS
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert routes == documented
    assert ("/v1/queues/{name}/messages", "post") in documented
    assert ("/", "post") in documented  # the SQS endpoint
    for item in document["paths"].values():
        for entry in item.values():
            assert entry["summary"]
            assert entry["responses"]


async def test_every_reference_resolves(client: Client, autojump_clock: MockClock) -> None:
    document = await openapi_document(client)
    assert document["openapi"] == "3.0.3"
    text = json.dumps(document)
    assert '"type": "null"' not in text
    assert '"const"' not in text
    schemas = document["components"]["schemas"]
    references = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document)))
    assert references
    assert references <= set(schemas)
    batch = document["paths"]["/v1/queues/{name}/messages/batch"]["post"]
    assert batch["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/BatchIn"}
    parameters = {p["name"]: p["in"] for p in document["paths"]["/v1/queues/{name}/messages"]["post"]["parameters"]}
    assert parameters == {"name": "path", "delay": "query", "priority": "query", "group": "query"}


async def test_real_replies_fit_the_models_the_document_names(client: Client, autojump_clock: MockClock) -> None:
    app = client.app
    adapter = app.url_map.bind("localhost")
    await send_texts(client, 2)
    lease = await receive_one(client)
    message_id = await send(client, "q", "third")
    batch = {"messages": [{"body": {"n": 1}, "attributes": {"k": "v"}}, {"body_base64": "AAE="}]}
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/health", {}),
        ("GET", "/v1/queues", {}),
        ("GET", queue_path("q"), {}),
        ("PUT", queue_path("other"), {"json": {"visibility_timeout": 5}}),
        ("POST", queue_path("q", "/messages"), {"data": "m", "headers": {"Content-Type": TEXT}}),
        ("POST", queue_path("q", "/messages/batch"), {"json": batch}),
        ("POST", queue_path("q", "/receive"), {"json": {"max": 10}}),
        ("GET", queue_path("q", "/messages"), {"query_string": {"limit": 2}}),
        ("POST", queue_path("q", "/ack"), {"json": {"receipts": [lease["receipt"], "junk"]}}),
        ("POST", queue_path("q", "/redrive"), {"json": {"destination": "other"}}),
        ("POST", queue_path("q", "/purge"), {}),
        ("GET", queue_path("missing"), {}),
    ]
    for method, path, options in requests:
        response = await client.open(path, method=method, **options)
        body = json.loads(await response.get_data())
        endpoint, _ = adapter.match(path.split("?")[0], method=method)
        found = operation_of(app.view_functions[endpoint])
        assert found is not None
        if response.status_code >= 400:
            from wonderq.openapi import ErrorReply

            ErrorReply.model_validate(body)
            assert response.status_code in found.errors, (method, path, response.status_code)
        else:
            assert found.reply is not None, (method, path)
            found.reply.model_validate(body)
    assert message_id


async def test_api_docs_work_offline(client: Client, autojump_clock: MockClock) -> None:
    response = await client.get("/api-docs")
    assert response.status_code == 200
    page = await response.get_data(as_text=True)
    assert "/openapi.json" in page
    assert not re.search(r"(src|href)=\"https?://", page)  # nothing from the internet
    for asset, media_type in API_DOCS_ASSETS.items():
        served = await client.get(f"/api-docs/assets/{asset}")
        assert served.status_code == 200, asset
        assert served.headers["Content-Type"] == media_type
        assert len(await served.get_data()) > 100
        assert f"/api-docs/assets/{asset}" in page


@pytest.mark.parametrize("asset", ["../../../../etc/passwd", "index.html", "swagger-ui.js.map"])
async def test_only_the_listed_assets_are_served(client: Client, autojump_clock: MockClock, asset: str) -> None:
    assert (await client.get(f"/api-docs/assets/{asset}")).status_code == 404
