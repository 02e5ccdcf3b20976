"""The periodic tasks: the ticker that asks the actor to sweep due leases (and delays and retention) every
`interval` seconds, and the compactor that asks it to give the journal's free space back.

They only make things prompt (expiry, and long polls waiting for an expired message) or small (the disk);
receives and acks check deadlines themselves, so correctness never depends on them. A storage error in one
round is logged and the next round tries again. Their commands are housekeeping (commands.HOUSEKEEPING): when
the actor's inbox is full they wait for room as long as it takes, where a client's request gives up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from wonderq.actor import ActorHandle
from wonderq.commands import Compact, Expire
from wonderq.errors import WonderQError

log = logging.getLogger("wonderq.ticker")


async def run_ticker(
    handle: ActorHandle, *, interval: float, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    async def sweep() -> None:
        # The core sweeps a slice per command, so that 100,000 leases ending at once do not hold up every
        # other command behind one long step: while it is behind, ask again at once. Each ask queues behind
        # whatever arrived meanwhile, so sends and receives run between the slices.
        while (await handle.ask(Expire())).behind:
            pass

    await _every(interval, "Expire", sweep, task_status)


async def run_compactor(
    handle: ActorHandle, *, interval: float, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    async def compact() -> None:
        await handle.ask(Compact())

    await _every(interval, "Compact", compact, task_status)


async def _every(
    interval: float, name: str, round_: Callable[[], Awaitable[None]], task_status: trio.TaskStatus[None]
) -> None:
    task_status.started()
    next_at = trio.current_time()
    while True:
        # Fixed-rate schedule: a slow actor makes rounds late, never drifts them or lets them pile up.
        next_at = max(next_at + interval, trio.current_time())
        await trio.sleep_until(next_at)
        try:
            await round_()
        except WonderQError as error:
            log.warning("%s failed: %s", name, error.message)
