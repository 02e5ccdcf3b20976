"""Schemathesis over /openapi.json against a real server (tests/fuzzing.py says how and what is checked): zero 5xx,
only documented statuses, content types and headers, replies that fit their schemas, and requests the document
rules out refused. With auth off (every route reachable), with auth on and a valid token, and with auth on and no
credentials (every 401 and sign-in redirect documented).

A bounded run with a fixed seed, so that CI repeats the same cases; `scripts/fuzz_api` runs many more, with a new
seed each time.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzzing import AuthServer, FuzzResult, auth_server, open_server, run_schemathesis, statuses

SEED = 20261204  # any fixed seed: the same cases every run
# With auth off, every phase: schemathesis's edge cases of every parameter (coverage, about 700 cases whatever
# the number), EXAMPLES random cases per operation (fuzzing), and sequences of calls (stateful). About 15 s.
EXAMPLES = 5
# With auth on, random cases only (a few seconds each): with a token, the same routes as above behind the gate;
# without one, every route but the public ones answers 401 or 303, whatever the rest of the request.
AUTH_EXAMPLES = 3


def assert_clean(result: FuzzResult) -> None:
    assert result.ok, result.explain()
    assert result.report["operations"]["tested"] >= 20, result.explain()


def test_auth_off_every_route_answers_only_what_the_document_says() -> None:
    with open_server() as server:
        result = run_schemathesis(server, examples=EXAMPLES, seed=SEED)
        seen = statuses(server)
    assert_clean(result)
    assert result.cases > 300, result.explain()
    assert {200, 201, 204, 400, 404} <= set(seen), seen  # the requests got past validation to the broker too
    assert not any(status >= 500 for status in seen), seen


@pytest.fixture(scope="module")
def with_auth() -> Iterator[AuthServer]:
    with auth_server() as running:
        yield running


def test_auth_on_with_a_valid_token(with_auth: AuthServer) -> None:
    before = statuses(with_auth.server)
    result = run_schemathesis(
        with_auth.server, examples=AUTH_EXAMPLES, seed=SEED, token=with_auth.token, phases="fuzzing"
    )
    seen = statuses(with_auth.server) - before
    assert_clean(result)
    assert {200, 201, 400} <= set(seen), seen
    assert not any(status >= 500 for status in seen), seen


def test_auth_on_without_credentials_every_refusal_is_documented(with_auth: AuthServer) -> None:
    before = statuses(with_auth.server)
    result = run_schemathesis(with_auth.server, examples=AUTH_EXAMPLES, seed=SEED, phases="fuzzing")
    seen = statuses(with_auth.server) - before
    assert_clean(result)
    assert {401, 303} <= set(seen), seen  # API routes refuse; dashboard pages send the browser to sign in
    assert 200 in seen, seen  # and the public routes answer
    assert not any(status >= 500 for status in seen), seen


def test_a_status_the_document_does_not_list_fails_the_run(with_auth: AuthServer, tmp_path: Path) -> None:
    """The checks bite: the server's own document without the 401 of GET /v1/queues, and no token."""
    document = json.loads(urllib.request.urlopen(f"{with_auth.server.url}/openapi.json", timeout=10).read())
    del document["paths"]["/v1/queues"]["get"]["responses"]["401"]
    (tmp_path / "openapi.json").write_text(json.dumps(document))
    result = run_schemathesis(
        with_auth.server,
        examples=1,
        seed=SEED,
        phases="fuzzing",
        only="list_queues_get",
        document=tmp_path / "openapi.json",
    )
    assert not result.ok
    assert result.failures >= 1, result.explain()
    assert "Undocumented status code" in result.output, result.explain()
    assert "curl -X GET" in result.output  # with the request to repeat it


def test_an_error_the_server_logged_fails_a_run() -> None:
    clean = FuzzResult(exit_code=0, output="", report={"test_cases": {"generated": 10}}, server_errors=[])
    assert clean.ok
    assert not dataclasses.replace(clean, server_errors=["... ERROR wonderq.web: unexpected error on GET /\n"]).ok
    assert not dataclasses.replace(clean, report={"test_cases": {"generated": 0}}).ok  # nothing was tested
    assert not dataclasses.replace(clean, exit_code=1).ok
