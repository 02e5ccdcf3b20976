"""Real servers for end-to-end tests: in-process on a real socket, or as a subprocess. Always 127.0.0.1, port 0."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

from tests.helpers import settings
from wonderq.server import serve

LISTENING = re.compile(r"WonderQ listening on (http://\S+)")
START_TIMEOUT = 30.0  # seconds a subprocess gets to bind its port (first start compiles bytecode)


@asynccontextmanager
async def serving(**overrides: Any) -> AsyncIterator[str]:
    """The whole server (actor, ticker, hypercorn) in this trio run, on a real socket. Yields its base URL.

    Real I/O is in flight, so use it without `autojump_clock`."""
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, settings(**overrides), shutdown=shutdown))
        yield binds[0]
        shutdown.set()


@contextmanager
def server_process(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[ServerProcess]:
    """`python -m wonderq serve --port 0 ARGS` as a child process; stopped (by its pid) on exit."""
    command = [sys.executable, "-m", "wonderq", "serve", "--port", "0", *args]
    child_env = {**os.environ, **(env or {})}
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=child_env, cwd=cwd
    )
    try:
        yield ServerProcess(process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


class ServerProcess:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.log: list[str] = []
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        stream = self.process.stderr
        assert stream is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stream], [], [], deadline - time.monotonic())
            line = stream.readline() if ready else ""
            if not line and self.process.poll() is not None:
                break
            self.log.append(line)
            match = LISTENING.search(line)
            if match:
                return match.group(1)
        self.process.kill()
        raise RuntimeError("server did not start:\n" + "".join(self.log) + (stream.read() or ""))

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `signum` and wait for the exit code; the rest of stderr goes to `self.log`."""
        self.process.send_signal(signum)
        _, rest = self.process.communicate(timeout=timeout)
        self.log.append(rest or "")
        return self.process.returncode
