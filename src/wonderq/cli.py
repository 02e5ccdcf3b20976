"""The `wonderq` command line: `serve` runs the broker; the other commands are a client for humans."""

from __future__ import annotations

import logging
import sys

import click

from wonderq.config import ConfigError, load_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wonderq")
def main() -> None:
    """WonderQ: a small, reliable message broker for work queues."""


@main.command()
@click.option("--host", help="Address to bind [env HOST; default 127.0.0.1].")
@click.option("--port", type=int, help="Port to bind, 0 for any free port [env PORT; default 3000].")
@click.option(
    "--default-processing-time",
    type=float,
    help="Default visibility timeout of new queues, seconds [env DEFAULT_PROCESSING_TIME; default 10].",
)
@click.option("--max-message-bytes", type=int, help="Largest message body [env MAX_MESSAGE_BYTES; default 1 MiB].")
@click.option("--max-batch", type=int, help="Most messages per batch request [env MAX_BATCH; default 100].")
@click.option("--max-request-bytes", type=int, help="Largest request body [env MAX_REQUEST_BYTES; default 10 MiB].")
@click.option(
    "--tick-interval",
    type=float,
    help="Seconds between lease-expiry sweeps [env TICK_INTERVAL; default 0.1].",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve(log_level: str, **flags: object) -> None:
    """Run the broker until SIGINT or SIGTERM."""
    try:
        settings = load_settings(**flags)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import trio

    from wonderq.server import serve as serve_forever

    try:
        trio.run(serve_forever, settings)
    except OSError as error:  # the port is taken, the address does not exist, ...
        click.echo(f"wonderq: cannot serve on {settings.host}:{settings.port}: {error}", err=True)
        sys.exit(1)
