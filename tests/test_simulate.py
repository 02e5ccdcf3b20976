"""The simulation: its accounting as pure functions, then real runs against a server subprocess whose leases
expire promptly (`--tick-interval 0.05`), including one where messages really are lost and the check says so."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest
import trio

from tests.servers import ServerProcess, server_process
from wonderq.client import AsyncClient, WonderQClientError, WonderQConnectionError
from wonderq.simulate import Ledger, Progress, SimulationConfig, build_report, client_error_in, run_simulation

# ---- pure accounting --------------------------------------------------------------------------------------


def test_report_counts_every_sent_id_as_acked_queued_or_lost() -> None:
    ledger = Ledger(sent={"a": "q", "b": "q", "c": "q", "d": "q"})
    ledger.record_ack("a")
    ledger.record_ack("b")
    report = build_report(ledger, ["c", "b"], drained=False, elapsed=1.0)
    assert (report.sent, report.acked, report.still_queued) == (4, 2, 2)
    assert report.lost == ("d",)
    assert report.acked_but_queued == ("b",)
    assert not report.ok

    clean = build_report(ledger, ["c", "d"], drained=False, elapsed=1.0)
    assert (clean.lost, clean.acked_but_queued, clean.ok) == ((), (), True)


def test_two_successful_acks_of_one_message_fail_the_check() -> None:
    ledger = Ledger(sent={"a": "q"})
    ledger.record_ack("a")
    assert build_report(ledger, [], drained=True, elapsed=0).ok
    ledger.record_ack("a")
    report = build_report(ledger, [], drained=True, elapsed=0)
    assert (report.acked_twice, report.ok) == (("a",), False)


def test_config_is_checked() -> None:
    assert SimulationConfig(queues=2, prefix="x-").queue_names == ("x-1", "x-2")
    with pytest.raises(ValueError, match="consumers must be at least 1"):
        SimulationConfig(consumers=0)
    with pytest.raises(ValueError, match="give messages, duration or both"):
        SimulationConfig(messages=None, duration=None)
    with pytest.raises(ValueError, match="visibility_timeout"):
        SimulationConfig(visibility_timeout=0)


def test_a_broker_error_inside_task_groups_comes_out_alone() -> None:
    error = WonderQClientError(404, "queue_not_found", "gone")
    nested = ExceptionGroup("", [ExceptionGroup("", [error])])
    assert client_error_in(nested) is error
    assert client_error_in(ExceptionGroup("", [error, ValueError()])) is None  # a bug must not be hidden


# ---- real runs --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with server_process("--tick-interval", "0.05") as process:
        yield process


def prefix() -> str:
    return f"sim-{uuid.uuid4().hex[:6]}-"


async def test_slow_consumers_cause_redelivery_and_nothing_is_lost(server: ServerProcess) -> None:
    config = SimulationConfig(
        queues=3,
        producers=3,
        consumers=30,
        messages=60,
        interval=0.01,
        visibility_timeout=0.5,
        max_processing_time=0.75,  # a third of the deliveries outlive their lease
        seed=7,
        prefix=prefix(),
        drain_timeout=20,
    )
    phases: list[str] = []
    report = await run_simulation(server.url, config, on_progress=lambda p: phases.append(p.phase))

    assert report.ok, report
    assert (report.sent, report.acked, report.still_queued, report.lost) == (60, 60, 0, ())
    assert report.drained
    assert report.redelivered > 0
    assert report.lease_lost > 0
    assert report.deliveries >= report.acked + report.lease_lost
    assert phases[-1] == "done"
    assert {"producing", "draining"} <= set(phases)

    async with AsyncClient(server.url) as client:
        stats = [await client.get_queue(name) for name in config.queue_names]
    assert sum(s["sent"] for s in stats) == 60
    assert sum(s["acked"] for s in stats) == 60  # the broker agrees with what the consumers saw
    assert sum(s["expired"] for s in stats) >= report.lease_lost > 0


async def test_messages_purged_behind_the_consumers_back_are_reported_lost(server: ServerProcess) -> None:
    config = SimulationConfig(
        queues=1, producers=1, consumers=1, messages=20, interval=0, max_processing_time=0.3, seed=1, prefix=prefix()
    )
    (queue,) = config.queue_names
    purged: list[int] = []

    async with AsyncClient(server.url) as saboteur, trio.open_nursery() as nursery:

        async def purge() -> None:
            purged.append(await saboteur.purge(queue))

        def on_progress(progress: Progress) -> None:
            # Once everything is sent, one consumer has handled a few messages at most: the rest is purged.
            if progress.phase == "draining" and not purged:
                purged.append(-1)
                nursery.start_soon(purge)

        report = await run_simulation(server.url, config, on_progress=on_progress)

    removed = purged[-1]
    assert removed > 0
    assert not report.ok
    assert len(report.lost) == removed  # every purged message: the one being processed too, its ack fails
    assert (report.sent, report.still_queued) == (20, 0)
    assert report.acked + len(report.lost) == 20


async def test_duration_mode_stops_producing_on_time(server: ServerProcess) -> None:
    config = SimulationConfig(
        messages=None, duration=0.3, interval=0.01, max_processing_time=0.02, consumers=4, prefix=prefix()
    )
    report = await run_simulation(server.url, config)
    assert report.ok, report
    assert report.sent > 0
    assert report.acked == report.sent
    assert report.elapsed < 5


async def test_an_unreachable_broker_is_a_client_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WonderQConnectionError):
        await run_simulation(f"http://127.0.0.1:{port}", SimulationConfig(messages=1, prefix=prefix()))
