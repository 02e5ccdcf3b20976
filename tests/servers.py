"""Real servers for end-to-end tests: in-process on a real socket, or as a subprocess. Always 127.0.0.1, port 0."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

from tests.helpers import TEST_RESERVE_BYTES, settings
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
    """`python -m wonderq serve --port 0 ARGS` as a child process; stopped (by its pid) on exit.
    In memory unless ARGS name a `--data-dir`."""
    command = [sys.executable, "-m", "wonderq", "serve", "--host", "127.0.0.1", "--port", "0", *args]
    if "--data-dir" not in args:
        command.append("--memory")
    child_env = {**os.environ, "RESERVE_BYTES": str(TEST_RESERVE_BYTES), **(env or {})}
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=child_env, cwd=cwd
    )
    try:
        yield ServerProcess(process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)


class ServerProcess:
    """A running child server. A thread copies its stderr into `log`, so reading never blocks the test."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.log: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self.url = self._wait_for_url()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            match = LISTENING.search(line)
            if match:
                return match.group(1)
        self.process.kill()
        self._reader.join(timeout=5)
        raise RuntimeError("server did not start:\n" + "".join(self.log))

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `signum` and wait for the exit code; all of stderr is then in `self.log`."""
        self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code
