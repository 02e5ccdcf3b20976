"""Production factories for message ids and receipt tokens, injected into the core.

Kept out of the core because tokens read the OS's randomness; the core itself only calls what it is given.
"""

from __future__ import annotations

import secrets

ID_HEX_DIGITS = 16  # 2**64 microseconds: fixed width, so ids sort as strings in numeric order


class TimeOrderedIds:
    """Message ids from the send time in microseconds, strictly increasing even within one microsecond.

    Ids are unique across restarts as long as the wall clock does not go back past the last id issued; the
    journal (when there is one) passes that last id as `floor` so that even a clock step back is safe.
    """

    def __init__(self, floor: str | None = None) -> None:
        self._last = int(floor, 16) if floor else -1

    def __call__(self, now: float) -> str:
        self._last = max(self._last + 1, int(now * 1_000_000))
        return f"{self._last:0{ID_HEX_DIGITS}x}"


def new_token() -> str:
    """An unguessable receipt token: 64 random bits, URL-safe, never containing a dot."""
    return secrets.token_urlsafe(8)
