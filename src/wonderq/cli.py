"""The `wonderq` command line: `serve` runs the broker; the other commands are a client for humans.

The client commands only translate between the command line and `wonderq.client`; a broker error becomes one
line on stderr (`wonderq: <code>: <message>`) and exit status 1, never a traceback.
"""

from __future__ import annotations

import base64
import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from wonderq.config import ConfigError, load_settings

if TYPE_CHECKING:
    from wonderq.client import Client, ReceivedMessage

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_URL = "http://127.0.0.1:3000"  # the client's default too; kept here so `wonderq --help` needs no httpx


def _check_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from wonderq.client import check_base_url

    try:
        return check_base_url(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@dataclass(frozen=True)
class Target:
    """The broker the client commands talk to."""

    url: str
    token: str | None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wonderq")
@click.option(
    "--url",
    envvar="WONDERQ_URL",
    default=DEFAULT_URL,
    show_default=True,
    callback=_check_url,
    help="Broker URL for the client commands [env WONDERQ_URL]. `serve` ignores it.",
)
@click.option(
    "--token",
    envvar="WONDERQ_TOKEN",
    help="Bearer token for a server with auth on [env WONDERQ_TOKEN] (`wonderq token` makes one).",
)
@click.pass_context
def main(ctx: click.Context, url: str, token: str | None) -> None:
    """WonderQ: a small, reliable message broker for work queues."""
    ctx.obj = Target(url, token)


def _target() -> Target:
    target = click.get_current_context().find_root().obj
    assert isinstance(target, Target)
    return target


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
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Directory of the journal [env DATA_DIR; default ./wonderq-data; ':memory:' is --memory].",
)
@click.option(
    "--memory", is_flag=True, default=None, help="Keep everything in memory only: lost on restart [env MEMORY]."
)
@click.option(
    "--sync",
    type=click.Choice(["full", "normal"]),
    help="full: fsync every commit; normal: a power loss may undo the last commits [env SYNC; default full].",
)
@click.option(
    "--max-store-bytes", type=int, help="Refuse writes past this journal size, 0 for none [env MAX_STORE_BYTES]."
)
@click.option("--compact-interval", type=float, help="Seconds between journal compactions [env COMPACT_INTERVAL; 60].")
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="[env LOG_LEVEL; default info]"
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), help="One line per record, or JSON [env LOG_FORMAT; text]."
)
@click.option(
    "--auth-file",
    type=click.Path(dir_okay=False),
    help="Principals and their permissions (TOML): auth on [env AUTH_FILE; docs/security.md].",
)
@click.option(
    "--insecure",
    is_flag=True,
    default=None,
    help="Serve without auth on a non-loopback address (refused otherwise) [env INSECURE].",
)
@click.option("--allowed-hosts", help="Host names served, comma-separated [env ALLOWED_HOSTS].")
@click.option("--allowed-origins", help="Other origins browsers may call from (CORS) [env ALLOWED_ORIGINS].")
@click.option("--certfile", type=click.Path(dir_okay=False), help="TLS certificate chain (PEM) [env CERTFILE].")
@click.option("--keyfile", type=click.Path(dir_okay=False), help="TLS private key (PEM) [env KEYFILE].")
@click.option("--ca-certs", type=click.Path(dir_okay=False), help="CA bundle for client certificates [env CA_CERTS].")
@click.option("--verify-client", is_flag=True, default=None, help="Require a client certificate [env VERIFY_CLIENT].")
@click.option("--rate-limit", type=float, help="Requests/s per principal or client address [env RATE_LIMIT; 2000].")
@click.option("--global-rate-limit", type=float, help="Requests/s for the whole server [env GLOBAL_RATE_LIMIT].")
@click.option("--max-connections", type=int, help="Open connections at once [env MAX_CONNECTIONS; 10000].")
@click.option("--max-queues", type=int, help="Queues on this server [env MAX_QUEUES; 10000].")
@click.option("--max-queue-messages", type=int, help="Messages in one queue [env MAX_QUEUE_MESSAGES; 1000000].")
@click.option("--max-long-polls", type=int, help="Receives waiting at once [env MAX_LONG_POLLS; 10000].")
@click.option("--max-streams", type=int, help="Streaming connections at once [env MAX_STREAMS; 1000].")
@click.option("--body-timeout", type=float, help="Seconds to receive a request body [env BODY_TIMEOUT; 30].")
@click.option("--backlog", type=int, help="Listen backlog [env BACKLOG; 4096].")
def serve(**flags: object) -> None:
    """Run the broker until SIGINT or SIGTERM."""
    try:
        settings = load_settings(**flags)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    from wonderq.logs import configure

    configure(settings.log_level, settings.log_format)
    import trio

    from wonderq.access import AccessConfigError
    from wonderq.server import BindError
    from wonderq.server import serve as serve_forever
    from wonderq.store import StoreError

    try:
        trio.run(serve_forever, settings)
    except* (StoreError, BindError, AccessConfigError) as unusable:  # raised at start-up, before anything is served
        for reason in unusable.exceptions:
            click.echo(f"wonderq: {reason}", err=True)
        sys.exit(1)


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, exists=True),
    default="wonderq-data",
    show_default=True,
    help="The data directory of the server to back up.",
)
@click.argument("destination", type=click.Path(dir_okay=False))
def backup(data_dir: str, destination: str) -> None:
    """Copy the journal to DESTINATION, consistently, even while the server runs.

    Restore by stopping the server and putting the copy in place as DATA_DIR/wonderq.db."""
    from pathlib import Path

    from wonderq.store import StoreError
    from wonderq.store import backup as copy_store

    try:
        messages = copy_store(Path(data_dir), Path(destination))
    except StoreError as error:
        click.echo(f"wonderq: {error}", err=True)
        sys.exit(1)
    click.echo(f"backed up {messages} messages to {destination}")


@main.command()
@click.argument("name")
@click.option(
    "--permission",
    "grants",
    multiple=True,
    metavar="PATTERN=PERMS",
    help='Permissions to write into the printed lines, e.g. "jobs-*=send,receive"; repeat for more.',
)
def token(name: str, grants: tuple[str, ...]) -> None:
    """Make a new token for the principal NAME: print the token (give it to the client; it is shown only here) and
    the lines to paste into the auth file (they hold only its hash)."""
    from wonderq.principals import NAME, Permission, new_token

    if not NAME.fullmatch(name):
        raise click.BadParameter("1 to 64 of A-Z a-z 0-9 _ . @ : -", param_hint="NAME")
    permissions: dict[str, list[str]] = {}
    for grant in grants or ("*=monitor",):
        pattern, equals, given = grant.partition("=")
        chosen = [item.strip() for item in given.split(",") if item.strip()]
        if not equals or not pattern or not chosen or any(item not in set(Permission) for item in chosen):
            raise click.BadParameter(f"{grant!r} is not PATTERN=send,receive,admin,monitor", param_hint="--permission")
        permissions[pattern] = chosen
    secret, token_hash = new_token()
    click.echo(f"token for {name} (shown once; the server keeps only its hash):", err=True)
    click.echo(secret)
    click.echo("\nadd to the auth file:", err=True)
    lines = ["[[principals]]", f"name = {json.dumps(name)}", f"token_hashes = [{json.dumps(token_hash)}]"]
    lines += ["[principals.permissions]", *(f"{json.dumps(p)} = {json.dumps(g)}" for p, g in permissions.items())]
    click.echo("\n".join(lines))


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, exists=True),
    default="wonderq-data",
    show_default=True,
    help="The data directory to check.",
)
def check(data_dir: str) -> None:
    """Report every bad row of the store and SQLite's integrity check, changing nothing (safe while a server runs).

    Exit status 0 when the store is sound, 1 otherwise."""
    from pathlib import Path

    from wonderq.store import StoreError
    from wonderq.store_check import check as check_store

    try:
        report = check_store(Path(data_dir))
    except StoreError as error:
        click.echo(f"wonderq: {error}", err=True)
        sys.exit(1)
    counts = ", ".join(f"{count} {table}" for table, count in report.counts.items())
    click.echo(f"{report.path}: WonderQ store, schema version {report.schema_version}")
    if report.counts:
        click.echo(f"  rows: {counts}; {report.quarantined} in quarantine")
    click.echo(f"  integrity check: {report.integrity}")
    if report.bad_rows is None:
        click.echo("  bad rows: not looked for in a damaged file")
    else:
        click.echo(f"  bad rows: {len(report.bad_rows) or 'none'}")
        for row in report.bad_rows:
            click.echo(f"    {row}")
    if report.integrity != "ok":
        click.echo("not sound: SQLite finds the file damaged; restore a backup (docs/operations.md, Restoring)")
    elif report.bad_rows:
        click.echo(f"not sound: stop the server, then `wonderq repair --data-dir {data_dir}` quarantines the bad rows")
    else:
        click.echo("sound")
    sys.exit(0 if report.sound else 1)


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, exists=True),
    default="wonderq-data",
    show_default=True,
    help="The data directory to repair (its server stopped).",
)
def repair(data_dir: str) -> None:
    """Move every bad row of the store into quarantine (tables quarantined_<table>, each row as it was, with
    the reason and time), so that the server starts again. Stop the server first."""
    import time
    from pathlib import Path

    from wonderq.store import StoreError
    from wonderq.store_check import repair as repair_store

    try:
        moved = repair_store(Path(data_dir), now=time.time())
    except StoreError as error:
        click.echo(f"wonderq: {error}", err=True)
        sys.exit(1)
    if not moved:
        click.echo("no bad rows: nothing to repair")
        return
    click.echo(f"moved {len(moved)} bad rows to quarantine (tables quarantined_<table> of the store):")
    for row in moved:
        click.echo(f"  {row}")


# ---- client commands ----------------------------------------------------------------------------------


def _fail(code: str, message: str) -> None:
    click.echo(f"wonderq: {code}: {message}", err=True)


def _reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a broker error into `wonderq: <code>: <message>` on stderr and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from wonderq.client import WonderQClientError

        try:
            return command(*args, **kwargs)
        except WonderQClientError as error:
            _fail(error.code, error.message)
            sys.exit(1)

    return wrapper


def _client() -> Client:
    from wonderq.client import Client

    target = _target()
    return Client(target.url, token=target.token)


def message_json(message: ReceivedMessage) -> dict[str, Any]:
    """A delivery as one JSON object: bytes bodies as `body_base64`, every other body as `body`."""
    body: dict[str, Any] = (
        {"body_base64": base64.b64encode(message.body).decode("ascii")}
        if isinstance(message.body, bytes)
        else {"body": message.body}
    )
    return {
        "id": message.id,
        "receipt": message.receipt,
        **body,
        "content_type": message.content_type,
        "priority": message.priority,
        "receive_count": message.receive_count,
        "sent_at": message.sent_at,
        "first_received_at": message.first_received_at,
        "lease_expires_at": message.lease_expires_at,
        "consumer": message.consumer,
        "attributes": dict(message.attributes),
        "source_queue": message.source_queue,
        "group": message.group,
        "dedup_id": message.dedup_id,
    }


def _attributes(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    attributes: dict[str, str] = {}
    for value in values:
        name, equals, text = value.partition("=")
        if not equals:
            raise click.BadParameter(f"{value!r} is not NAME=VALUE")
        if name in attributes:
            raise click.BadParameter(f"attribute {name!r} is given twice")
        attributes[name] = text
    return attributes


@main.command()
@click.argument("queue")
@click.argument("body", required=False)
@click.option("--content-type", help="Media type of the body.")
@click.option("--json", "as_json", is_flag=True, help="The body is JSON (--content-type application/json).")
@click.option("--delay", type=float, help="Seconds before it can be received (0 to 900) [default: the queue's].")
@click.option("--priority", type=int, help="Lower goes first [default: 0].")
@click.option("--idempotency-key", help="A retry with the same key within 5 minutes returns the first id.")
@click.option(
    "--attribute",
    "attributes",
    multiple=True,
    metavar="NAME=VALUE",
    callback=_attributes,
    help="A message attribute; repeat for more (at most 10).",
)
@click.option("--group", help="The message group (a FIFO queue delivers each group in order).")
@_reports_errors
def send(
    queue: str,
    body: str | None,
    content_type: str | None,
    as_json: bool,
    delay: float | None,
    priority: int | None,
    idempotency_key: str | None,
    attributes: dict[str, str],
    group: str | None,
) -> None:
    """Send BODY to QUEUE and print the new message's id.

    Without BODY, or with BODY `-`, the body is read from stdin as raw bytes (application/octet-stream unless
    --content-type or --json says otherwise); BODY given as an argument is text/plain unless told otherwise."""
    if as_json and content_type:
        raise click.UsageError("give --json or --content-type, not both")
    if as_json:
        content_type = "application/json"
    data: str | bytes = sys.stdin.buffer.read() if body is None or body == "-" else body
    with _client() as client:
        click.echo(
            client.send(
                queue,
                data,
                content_type,
                delay=delay,
                priority=priority,
                idempotency_key=idempotency_key,
                attributes=attributes,
                group=group,
            )
        )


@main.command()
@click.argument("queue")
@click.option("--credit", type=click.IntRange(1, 1000), default=10, show_default=True, help="Prefetch window.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many messages [default: never].")
@click.option("--idle", type=float, default=5.0, show_default=True, help="Stop after this many seconds without one.")
@click.option("--visibility-timeout", type=float, help="Seconds to lease the messages for [default: the queue's].")
@click.option("--consumer", help="A name for this consumer, shown by peek.")
@_reports_errors
def consume(
    queue: str, credit: int, count: int | None, idle: float, visibility_timeout: float | None, consumer: str | None
) -> None:
    """Stream messages from QUEUE over one WebSocket (pushed up to --credit at a time), print each as one line of
    JSON and acknowledge it once printed."""
    from wonderq.stream_client import stream

    done = 0
    with _client() as client, stream(client, queue) as messages:
        messages.subscribe(credit, visibility_timeout=visibility_timeout, consumer=consumer)
        while count is None or done < count:
            batch = messages.messages(wait=idle, limit=None if count is None else count - done)
            if not batch:
                return
            for message in batch:
                click.echo(json.dumps(message_json(message), ensure_ascii=False))
            result = messages.ack(*(message.receipt for message in batch))
            for failure in result.failed:
                _fail(failure.code, f"{failure.receipt}: {failure.message}")
            done += len(batch)


@main.command()
@click.argument("queue")
@click.option("--max", "max_messages", type=int, default=1, show_default=True, help="Most messages to receive.")
@click.option("--wait", type=float, default=0.0, show_default=True, help="Seconds to long-poll for a message.")
@click.option("--visibility-timeout", type=float, help="Seconds to lease the messages for [default: the queue's].")
@click.option("--consumer", help="A name for this consumer, shown by peek.")
@click.option("--ack", is_flag=True, help="Acknowledge each message right after printing it.")
@_reports_errors
def receive(
    queue: str, max_messages: int, wait: float, visibility_timeout: float | None, consumer: str | None, ack: bool
) -> None:
    """Receive messages from QUEUE and print each as one line of JSON (nothing when none is ready).

    With --ack each message is acknowledged once its line is written, so a message is never acked unprinted;
    if an ack fails the reason goes to stderr and the exit status is 1."""
    from wonderq.client import WonderQClientError

    failed = False
    with _client() as client:
        for message in client.receive(queue, max_messages, wait, visibility_timeout, consumer):
            click.echo(json.dumps(message_json(message), ensure_ascii=False))  # click.echo flushes
            if ack:
                try:
                    client.ack(queue, message.id, message.receipt)
                except WonderQClientError as error:
                    _fail(error.code, f"{message.id}: {error.message}")
                    failed = True
    if failed:
        sys.exit(1)


@main.command()
@click.argument("queue")
@click.argument("receipts", nargs=-1, required=True)
@_reports_errors
def ack(queue: str, receipts: tuple[str, ...]) -> None:
    """Acknowledge the deliveries of QUEUE with these RECEIPTS. Exit status 1 if any could not be acked."""
    with _client() as client:
        result = client.ack_batch(queue, receipts)
    for failure in result.failed:
        _fail(failure.code, f"{failure.receipt}: {failure.message}")
    if not result.ok:
        sys.exit(1)


@main.command()
@_reports_errors
def queues() -> None:
    """A table of the queues and their message counts."""
    from rich.console import Console
    from rich.table import Column, Table

    with _client() as client:
        all_stats = client.list_queues()
    counts = ("ready", "leased", "sent", "received", "acked", "expired", "released", "timeout")
    table = Table(
        Column("queue", overflow="fold"),  # a long name folds onto more lines; it is never cut short
        *(Column(name, justify="right", no_wrap=True, min_width=len(name)) for name in counts),
        box=None,  # fits 80 columns (a pipe, CI) with every header whole
        pad_edge=False,
        header_style="bold",
    )
    for stats in all_stats:
        numbers = [str(stats[key]) for key in counts[:-1]]
        table.add_row(stats["name"], *numbers, f"{stats['attributes']['visibility_timeout']:g}s")
    Console().print(table)


@main.command()
@click.argument("queue")
@click.option("--visibility-timeout", type=float, help="Seconds a receive leases a message for.")
@click.option("--max-in-flight", type=int, help="Most messages leased at once; 0 for no limit.")
@click.option("--delay", type=float, help="Seconds before a new message can be received (0 to 900).")
@click.option("--max-message-bytes", type=int, help="Largest message; 0 for the server's limit.")
@click.option("--retention", type=float, help="Seconds a message may live (60 to 1209600).")
@click.option("--max-receives", type=int, help="Deliveries before a message is dead-lettered; 0 for no limit.")
@click.option("--dead-letter-queue", help='Where messages go after --max-receives deliveries; "" removes it.')
@_reports_errors
def create(queue: str, **attributes: Any) -> None:
    """Create QUEUE, or update the attributes given on an existing one; print its attributes and counts as JSON."""
    given = {key: value for key, value in attributes.items() if value is not None}
    with _client() as client:
        stats, _ = client.create_queue(queue, **given)
    click.echo(json.dumps(stats, indent=2))


@main.command()
@click.argument("queue")
@click.option("--to", "destination", help="Send every message here [default: back to the queue it came from].")
@click.option("--max", "max_messages", type=click.IntRange(min=1), help="Most messages to move [default: all].")
@_reports_errors
def redrive(queue: str, destination: str | None, max_messages: int | None) -> None:
    """Move the ready messages of the dead-letter queue QUEUE back to their source queues (or --to one queue),
    each with a fresh receive count; print how many moved and how many had nowhere to go, as JSON."""
    with _client() as client:
        result = client.redrive(queue, destination, max_messages)
    click.echo(json.dumps({"moved": result.moved, "skipped": result.skipped}))


@main.command()
@click.argument("queue")
@_reports_errors
def stats(queue: str) -> None:
    """QUEUE's attributes and counts, as JSON."""
    with _client() as client:
        click.echo(json.dumps(client.get_queue(queue), indent=2))


@main.command()
@click.option("--queues", "queue_count", type=int, default=3, show_default=True, help="Queues to spread messages over.")
@click.option("--producers", type=int, default=2, show_default=True)
@click.option("--consumers", type=int, default=4, show_default=True)
@click.option("--messages", type=int, help="Messages to send in all [default: 100 unless --duration is given].")
@click.option("--duration", type=float, help="Seconds to keep producing.")
@click.option("--interval", type=float, default=0.05, show_default=True, help="Seconds between one producer's sends.")
@click.option("--visibility-timeout", type=float, default=2.0, show_default=True, help="Lease length, seconds.")
@click.option(
    "--max-processing-time",
    type=float,
    default=3.0,
    show_default=True,
    help="Each delivery takes a random time up to this, seconds; beyond the lease it is redelivered.",
)
@click.option("--drain-timeout", type=float, default=60.0, show_default=True, help="Seconds to empty the queues.")
@click.option("--seed", type=int, help="Seed for the random choices.")
@click.option("--prefix", default="sim-", show_default=True, help="Queue name prefix; these queues are reset first.")
@_reports_errors
def simulate(
    queue_count: int,
    producers: int,
    consumers: int,
    messages: int | None,
    duration: float | None,
    interval: float,
    visibility_timeout: float,
    max_processing_time: float,
    drain_timeout: float,
    seed: int | None,
    prefix: str,
) -> None:
    """Run producers and slow consumers against the broker, then check that no message was lost.

    Exit status 1 if a message sent was neither acked nor still queued (or was acked twice)."""
    import trio
    from rich.console import Console

    from wonderq.simulate import SimulationConfig, run_live

    try:
        config = SimulationConfig(
            queues=queue_count,
            producers=producers,
            consumers=consumers,
            messages=100 if messages is None and duration is None else messages,
            duration=duration,
            interval=interval,
            visibility_timeout=visibility_timeout,
            max_processing_time=max_processing_time,
            seed=seed,
            prefix=prefix,
            drain_timeout=drain_timeout,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    target = _target()
    report = trio.run(run_live, target.url, config, Console(), target.token)
    if not report.ok:
        sys.exit(1)
