"""Wall-clock time for the core, derived from trio's clock.

The core works in epoch seconds so that times survive a restart and mean something to users. Reading them
through trio's clock (plus a fixed offset taken once) lets `MockClock`/`autojump_clock` drive every deadline in
tests, and keeps the one clock read of the whole broker in this module.
"""

from __future__ import annotations

import time

import trio


class WallClock:
    def __init__(self, offset: float | None = None) -> None:
        # offset: epoch seconds minus trio seconds; taken from the system clock unless given (tests pin it).
        self.offset = time.time() - trio.current_time() if offset is None else offset

    def now(self) -> float:
        """Epoch seconds."""
        return trio.current_time() + self.offset

    def to_trio(self, epoch_seconds: float) -> float:
        """The trio clock reading at which wall time reaches `epoch_seconds`."""
        return epoch_seconds - self.offset
