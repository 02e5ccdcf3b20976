"""Access control as the front ends apply it: who a request is (a bearer token, a dashboard session, an SQS
key), whether it may do what it asks on the queue it names, and whether it is within its request rate.

The principals and their permissions are `principals.py`'s; the buckets are `ratelimit.py`'s. This module holds
the server's one `Access` (made once from the settings) that the HTTP gate, the SQS endpoint, the streaming
path and the dashboard all consult, so that every front end applies the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from wonderq.config import Settings
from wonderq.errors import RateLimited
from wonderq.principals import EVERYONE, Principal, Principals, load_principals
from wonderq.ratelimit import RateLimiter


class AccessConfigError(Exception):
    """The settings of access control contradict each other or the auth file cannot be used: no start."""


@dataclass
class Access:
    """The server's access rules. `principals` is None when auth is off: then every request is EVERYONE."""

    principals: Principals | None
    sqs_keys: Principals | None  # who may sign SQS requests; None: SQS requests need no signature
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0.0, 1))

    @property
    def enabled(self) -> bool:
        return self.principals is not None

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        """The rules `settings` give: the auth file's principals (read now), or SQS_ACCESS_KEYS for the SQS
        endpoint alone, or nobody (auth off). Raises AccessConfigError."""
        from wonderq.principals import PrincipalsError

        limiter = RateLimiter(
            settings.rate_limit,
            settings.rate_burst,
            settings.global_rate_limit,
            settings.global_rate_burst,
            now=trio.current_time(),
        )
        if settings.auth_file is not None:
            if settings.sqs_access_keys:
                raise AccessConfigError(
                    "SQS_ACCESS_KEYS and AUTH_FILE are both set: give each SQS key to a principal of the auth file"
                    " (sqs_access_key_id, sqs_secret_access_key) instead"
                )
            try:
                principals = load_principals(settings.auth_file)
            except PrincipalsError as error:
                raise AccessConfigError(str(error)) from None
            return cls(principals, principals, limiter)
        keys = settings.access_keys()
        return cls(None, Principals.from_access_keys(keys) if keys else None, limiter)

    def admit(self, principal: Principal | None, address: str | None) -> None:
        """One request against its rate: the principal's when auth is on and it is known, else its client
        address's. Raises RateLimited."""
        key = principal.name if principal is not None and self.enabled else f"address:{address or '?'}"
        wait = self.limiter.take(key, trio.current_time())
        if wait:
            raise RateLimited(f"too many requests from {key}: slow down (RATE_LIMIT)", wait)

    def admit_globally(self) -> None:
        """One request against the whole server's rate. Raises RateLimited."""
        wait = self.limiter.take_global(trio.current_time())
        if wait:
            raise RateLimited("the server is over its request rate (GLOBAL_RATE_LIMIT): slow down", wait)

    def anonymous(self) -> Principal:
        """Who a request without credentials is: EVERYONE when auth is off (the caller refuses it otherwise)."""
        return EVERYONE
