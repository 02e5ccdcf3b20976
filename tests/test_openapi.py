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
        ("GET", "/dashboard/session", {}),
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


async def test_a_queue_name_parameter_carries_the_queue_name_rule(client: Client, autojump_clock: MockClock) -> None:
    document = await openapi_document(client)
    parameters = document["paths"]["/v1/queues/{name}/messages/{message_id}"]["delete"]["parameters"]
    by_name = {parameter["name"]: parameter for parameter in parameters}
    assert [parameter["name"] for parameter in parameters] == ["name", "message_id", "receipt"]  # path order
    assert by_name["message_id"]["schema"] == {"type": "string"}
    assert by_name["receipt"] == {
        "name": "receipt",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "title": "Receipt"},
    }
    pattern = re.compile(by_name["name"]["schema"]["pattern"])
    for name in ["q", "orders-1", "a" * 80, "jobs.fifo", "team-a:jobs", "team-a:" + "b" * 80]:
        assert pattern.search(name), name
    for name in ["", "bad.name", "a" * 81, "with space", "é", "Team:jobs", "jobs.fifo.fifo"]:
        assert not pattern.search(name), name
    for path, item in document["paths"].items():
        for method, entry in item.items():
            names = {p["name"]: p["schema"] for p in entry["parameters"] if p["in"] == "path"}
            if "name" in names and not path.startswith("/{account}"):
                assert "pattern" in names["name"], (method, path)


async def test_every_reply_that_is_no_error_is_documented(client: Client, autojump_clock: MockClock) -> None:
    paths = (await openapi_document(client))["paths"]
    put = paths["/v1/queues/{name}"]["put"]["responses"]
    assert put["200"]["content"] == put["201"]["content"]  # updated or created: the same reply
    read = paths["/readMessage"]["get"]
    assert "content" not in read["responses"]["204"]  # nothing ready
    assert [p["name"] for p in read["parameters"]] == ["time"]
    for page in ["/", "/dashboard/queues/{name}"]:
        redirect = paths[page]["get"]["responses"]["303"]
        assert "content" not in redirect
        assert redirect["headers"]["Location"]["required"] is True
    assert "303" in paths["/dashboard/login"]["get"]["responses"]  # auth off: to the dashboard
    session = paths["/dashboard/session"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert session == {"$ref": "#/components/schemas/SessionReply"}
    own = paths["/openapi.json"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert own == {"type": "object"}


async def test_the_gate_and_the_journal_statuses_are_on_every_route_they_apply_to(
    client: Client, autojump_clock: MockClock
) -> None:
    paths = (await openapi_document(client))["paths"]
    for path, item in paths.items():
        for method, entry in item.items():
            responses = entry["responses"]
            assert {"421", "503"} <= set(responses), (method, path)  # any Host; the connection cap
            if "401" in responses:
                assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
            if "429" in responses:
                assert responses["429"]["headers"]["Retry-After"]["required"] is True
            if "application/json" in entry.get("requestBody", {}).get("content", {}):
                assert {"408", "413", "415"} <= set(responses), (method, path)  # the body reader's refusals
    for path, method in [
        ("/v1/queues/{name}", "put"),
        ("/v1/queues/{name}", "delete"),
        ("/v1/queues/{name}/ack", "post"),
        ("/v1/queues/{name}/receive", "post"),
        ("/readMessage", "get"),  # a GET that leases
        ("/dashboard/api/queues/{name}/messages/{message_id}/delete", "post"),
    ]:
        assert "507" in paths[path][method]["responses"], (method, path)  # a change on a full disk
    for path, method in [("/v1/queues", "get"), ("/dashboard/login", "post"), ("/health", "get")]:
        assert "507" not in paths[path][method]["responses"], (method, path)  # reads and sign-ins write nothing


async def test_the_served_files_are_listed_with_their_media_types(client: Client, autojump_clock: MockClock) -> None:
    paths = (await openapi_document(client))["paths"]
    for path, argument in [("/static/{filename}", "filename"), ("/api-docs/assets/{asset}", "asset")]:
        entry = paths[path]["get"]
        (parameter,) = entry["parameters"]
        assert parameter["name"] == argument
        names = parameter["schema"]["enum"]
        assert names
        documented = set(entry["responses"]["200"]["content"])
        for name in names:  # each listed file is served, with one of the listed media types
            response = await client.get(path.replace("{" + argument + "}", name))
            assert response.status_code == 200, name
            assert response.headers["Content-Type"].split(";")[0] in documented, name


async def test_every_link_names_a_real_operation_and_its_parameters(client: Client, autojump_clock: MockClock) -> None:
    document = await openapi_document(client)
    operations = {entry["operationId"]: entry for item in document["paths"].values() for entry in item.values()}
    schemas = document["components"]["schemas"]
    links = [
        (entry["operationId"], name, link)
        for entry in operations.values()
        for reply in entry["responses"].values()
        for name, link in reply.get("links", {}).items()
    ]
    assert {(source, name) for source, name, _ in links} >= {
        ("receive_post", "ack"),
        ("receive_post", "release"),
        ("classic_read_get", "process"),
        ("send_post", "receive"),
        ("put_queue_put", "send"),
    }
    for source, name, link in links:
        target = operations[link["operationId"]]
        assert set(link["parameters"]) <= {p["name"] for p in target["parameters"]}, (source, name)
        required = {p["name"] for p in target["parameters"] if p["required"]}
        if "requestBody" in link:
            reference = target["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            fields = schemas[reference.rsplit("/", 1)[1]]["properties"]
            assert set(link["requestBody"]) <= set(fields), (source, name)
        assert required <= set(link["parameters"]), (source, name)  # the link gives all the target needs
        for expression in link["parameters"].values():
            assert re.fullmatch(r"\$request\.path\.name|\$response\.body#(/[a-z_0-9]+)+", expression), expression


async def test_the_classic_routes_document_a_deleted_default_queue(client: Client, autojump_clock: MockClock) -> None:
    """Found by scripts/fuzz_api's stateful phase: DELETE /v1/queues/default, then GET /readMessage."""
    await check(await client.delete(queue_path("default")), 204)
    paths = (await openapi_document(client))["paths"]
    for method, path in [("GET", "/readMessage"), ("PATCH", "/processMessage/0000000000000000")]:
        response = await (client.get(path) if method == "GET" else client.patch(path))
        body = await check(response, 404)
        assert body["error"]["code"] == "queue_not_found"
        documented = paths[openapi_path(path.replace("0000000000000000", "<message_id>"))][method.lower()]
        assert "404" in documented["responses"], path
    assert (await client.post("/addMessage", data="m", headers={"Content-Type": TEXT})).status_code == 201
