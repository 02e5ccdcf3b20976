#!/usr/bin/env python3
"""The framework's ceiling for scripts/bench: a bare quart-trio app whose one route, `GET /ping`, returns a small
JSON object, served by hypercorn with WonderQ's own configuration (`wonderq.server.hypercorn_config`, and the
same ASGI wrapper). Whatever WonderQ's routes cost on top of this is WonderQ's own work. Usage:

    .venv/bin/python scripts/bench_bare_app.py [--port 0]

Binds 127.0.0.1 only, prints "bare app listening on http://..." on stderr once it serves, and runs until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
from functools import partial

import trio
from hypercorn.trio import serve
from quart_trio import QuartTrio

from wonderq.config import Settings
from wonderq.server import finish_responses_shielded, hypercorn_config


def create_app() -> QuartTrio:
    app = QuartTrio("bench_bare_app")

    @app.get("/ping")
    async def ping() -> dict[str, object]:
        return {"ok": True}

    return app


async def run(port: int) -> None:
    config = hypercorn_config(Settings(host="127.0.0.1", port=port))
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        app = finish_responses_shielded(create_app())
        binds: list[str] = await nursery.start(partial(serve, app, config, shutdown_trigger=stop.wait))
        print(f"bare app listening on {binds[0]}", file=sys.stderr, flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                stop.set()
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1, 0 for any free one (default)")
    trio.run(run, parser.parse_args().port)


if __name__ == "__main__":
    main()
