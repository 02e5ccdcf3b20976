"""The ticker: a nursery-scoped task that asks the actor to expire due leases every `interval` seconds.

It only makes expiry prompt (and wakes long polls waiting for an expired message); receives and acks check
deadlines themselves, so correctness never depends on it.
"""

from __future__ import annotations

import trio

from wonderq.actor import ActorHandle
from wonderq.commands import Expire


async def run_ticker(
    handle: ActorHandle, *, interval: float, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    task_status.started()
    next_at = trio.current_time()
    while True:
        # Fixed-rate schedule: a slow actor makes ticks late, never drifts them or lets them pile up.
        next_at = max(next_at + interval, trio.current_time())
        await trio.sleep_until(next_at)
        await handle.ask(Expire())
