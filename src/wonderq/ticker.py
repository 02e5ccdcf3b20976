"""The periodic tasks: the ticker that asks the actor to expire due leases every `interval` seconds, and the
compactor that asks it to give the journal's free space back.

They only make things prompt (expiry, and long polls waiting for an expired message) or small (the disk);
receives and acks check deadlines themselves, so correctness never depends on them. A storage error in one
round is logged and the next round tries again.
"""

from __future__ import annotations

import logging

import trio

from wonderq.actor import ActorHandle
from wonderq.commands import Command, Compact, Expire
from wonderq.errors import WonderQError

log = logging.getLogger("wonderq.ticker")


async def run_ticker(
    handle: ActorHandle, *, interval: float, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    await _every(interval, handle, Expire(), task_status)


async def run_compactor(
    handle: ActorHandle, *, interval: float, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    await _every(interval, handle, Compact(), task_status)


async def _every(
    interval: float, handle: ActorHandle, command: Command[object], task_status: trio.TaskStatus[None]
) -> None:
    task_status.started()
    next_at = trio.current_time()
    while True:
        # Fixed-rate schedule: a slow actor makes rounds late, never drifts them or lets them pile up.
        next_at = max(next_at + interval, trio.current_time())
        await trio.sleep_until(next_at)
        try:
            await handle.ask(command)
        except WonderQError as error:
            log.warning("%s failed: %s", type(command).__name__, error.message)
