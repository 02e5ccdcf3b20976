"""Dashboard sign-ins: a session is a random id, handed to the browser in an HttpOnly, SameSite=Strict cookie, that
stands for one principal until it ends. Pure: every call takes `now` (seconds on any monotonic clock).

Sessions live in memory only (a restart signs everyone out) and are kept by the SHA-256 of their id, so the table
never holds a usable id. At most `max_sessions` are kept; a new one beyond that ends the oldest.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass

COOKIE = "wonderq_session"


@dataclass(frozen=True, slots=True)
class Session:
    principal: str  # the principal's name
    expires_at: float  # seconds


class Sessions:
    def __init__(self, *, ttl: float, max_sessions: int) -> None:
        self.ttl = ttl  # seconds a session lasts from its sign-in
        self._max = max_sessions
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._sessions)

    def start(self, principal: str, now: float) -> str:
        """A new session for `principal`; returns its id (the cookie's value)."""
        session_id = secrets.token_urlsafe(32)
        while len(self._sessions) >= self._max:
            self._sessions.popitem(last=False)
        self._sessions[_key(session_id)] = Session(principal, now + self.ttl)
        return session_id

    def find(self, session_id: str, now: float) -> str | None:
        """The principal of a live session, or None (unknown or ended: an ended one is forgotten)."""
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires_at <= now:
            del self._sessions[key]
            return None
        return session.principal

    def end(self, session_id: str) -> None:
        self._sessions.pop(_key(session_id), None)


def _key(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).digest()
