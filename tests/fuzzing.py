"""Schemathesis over WonderQ's own /openapi.json, against a real server: shared by tests/test_schemathesis.py (a
few cases per operation) and scripts/fuzz_api (many).

Why a real server and schemathesis's command line: WonderQ runs on trio with its actor beside the app, so the
ASGI test client schemathesis brings (on asyncio) cannot drive it, and its pytest integration does not run under
pytest 9. A `wonderq serve` child on 127.0.0.1, port 0, is exactly what clients meet (hypercorn, the gate, the
actor), and its log holds the traceback of anything that went wrong on the server's side.

What a run checks on every reply: no 5xx, a status the document lists for the operation, a content type it
lists, a body that fits the schema of that status, the headers it marks required; and that requests the document
rules out are refused (negative_data_rejection). The operations left out, and why, are in EXCLUDED.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import write_auth_file
from tests.servers import ServerProcess, server_process

ROOT = Path(__file__).resolve().parent.parent
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
)
EXCLUDED = {  # operation id: why schemathesis does not fuzz it here
    "sqs_post": "the SQS endpoint: its own hypothesis tests send it SQS requests (tests/test_sqs*.py)",
    "sqs_queue_post": "the SQS endpoint on a queue URL: as sqs_post",
    "stream_get": "the WebSocket upgrade: its frames are fuzzed by tests/test_stream.py",
    "events_get": "server-sent events: the reply never ends, so there is no whole reply to check",
}
# What the server logs for a bug: web.py's 500 handler ("unexpected error ...", then the traceback) and the access
# line of any 5xx are at ERROR; nothing a client sends may make the server log at ERROR.
SERVER_ERROR_MARKS = (" ERROR ", " CRITICAL ", "Traceback")
ACCESS_LINE = re.compile(r"wonderq\.access: [A-Z]+ .* (\d{3}) [0-9.]+ ms \S+$")  # web.ACCESS_FORMAT, text format
HOOKS = "tests.fuzzing_hooks"  # bounds long polls (see there)
# What counts as refusing a request the document rules out: schemathesis's own list, and a 303 to the sign-in
# page, which a dashboard page answers a browser without credentials before it looks at the rest of the request
# (as the API routes answer 401).
REFUSALS = (400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, 303)
CONFIG = f"""\
[checks.negative_data_rejection]
expected-statuses = [{", ".join(str(status) for status in REFUSALS)}]
"""


@dataclass(frozen=True)
class FuzzResult:
    """One schemathesis run: its exit code and output, its JSON report, and what the server logged of bugs."""

    exit_code: int
    output: str
    report: dict[str, Any]
    server_errors: list[str]

    @property
    def cases(self) -> int:
        generated: int = self.report.get("test_cases", {}).get("generated", 0)
        return generated

    @property
    def failures(self) -> int:
        found: int = self.report.get("test_cases", {}).get("unique_failures", 0)
        return found

    @property
    def seconds(self) -> float:
        running: float = self.report.get("running_time", 0.0)
        return running

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.server_errors and self.cases > 0

    def explain(self) -> str:
        """Everything needed to see what failed: schemathesis's report (with a curl line per failure) and the
        server's tracebacks."""
        logged = "".join(self.server_errors) or "(nothing)\n"
        return f"schemathesis exited {self.exit_code}:\n{self.output}\n---- server errors ----\n{logged}"


@dataclass(frozen=True)
class AuthServer:
    """A server with auth on, and the token of a principal that may do everything on every queue."""

    server: ServerProcess
    token: str


def statuses(server: ServerProcess) -> Counter[int]:
    """How often `server` answered each status so far, from its access log."""
    return Counter(int(match.group(1)) for line in server.log if (match := ACCESS_LINE.search(line.rstrip("\n"))))


@contextmanager
def open_server(*args: str) -> Iterator[ServerProcess]:
    """A server with auth off (every route open): in memory, on 127.0.0.1, port 0."""
    with server_process(*args) as server:
        yield server


@contextmanager
def auth_server(*args: str) -> Iterator[AuthServer]:
    """A server with auth on: one principal, `fuzzer`, with every permission on every queue."""
    with tempfile.TemporaryDirectory(prefix="wonderq-fuzz-") as directory:
        auth_file = Path(directory) / "auth.toml"
        tokens = write_auth_file(auth_file, {"fuzzer": {"*": ["send", "receive", "admin", "monitor"]}})
        with server_process("--auth-file", str(auth_file), *args) as server:
            yield AuthServer(server, tokens["fuzzer"])


def run_schemathesis(
    server: ServerProcess,
    *,
    examples: int,
    seed: int | None = None,
    workers: int = 1,
    token: str | None = None,
    phases: str | None = None,
    only: str | None = None,
    document: Path | None = None,
    timeout: float = 600.0,
) -> FuzzResult:
    """Run schemathesis against `server` with at most `examples` cases per operation and phase (and `seed`, for
    a run that can be repeated), sending `token` as a bearer token if given; on the operation id `only` alone if
    given, and after the OpenAPI document in the file `document` instead of the server's own if given."""
    logged_before = len(server.log)
    with tempfile.TemporaryDirectory(prefix="wonderq-fuzz-") as directory:
        report_path = Path(directory) / "report.json"
        config_path = Path(directory) / "schemathesis.toml"
        config_path.write_text(CONFIG)
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--no-color",
            "--config-file",
            str(config_path),
            "run",
            *([str(document), "--url", server.url] if document is not None else [f"{server.url}/openapi.json"]),
            "--checks",
            ",".join(CHECKS),
            *(argument for operation in EXCLUDED for argument in ("--exclude-operation-id", operation)),
            "--max-examples",
            str(examples),
            "--workers",
            str(workers),
            "--request-timeout",
            "30",
            "--generation-database",
            "none",  # nothing written to disk, nothing carried from one run to the next
            "--report",
            "json",
            "--report-json-path",
            str(report_path),
        ]
        if seed is not None:
            command += ["--seed", str(seed)]
        if token is not None:
            command += ["--header", f"Authorization: Bearer {token}"]
        if phases is not None:
            command += ["--phases", phases]
        if only is not None:
            command += ["--include-operation-id", only]
        environment = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": HOOKS,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        finished = subprocess.run(
            command,
            cwd=directory,  # whatever schemathesis writes on its own goes away with the directory
            env=environment,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
    logged = server.log[logged_before:]
    server_errors = [line for line in logged if any(mark in line for mark in SERVER_ERROR_MARKS)]
    if server_errors:  # the whole traceback, not only its first line
        first = logged.index(server_errors[0])
        server_errors = logged[first:]
    return FuzzResult(finished.returncode, finished.stdout + finished.stderr, report, server_errors)
