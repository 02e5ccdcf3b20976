"""Access control as the front ends apply it: who a request is (a bearer token, a dashboard session, an SQS
key), whether it may do what it asks on the queue it names, and whether it is within its request rate.

The principals and their permissions are `principals.py`'s; the buckets are `ratelimit.py`'s. This module holds
the server's one `Access` (made once from the settings) that the HTTP gate, the SQS endpoint, the streaming
path and the dashboard all consult, so that every front end applies the same rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from wonderq.config import Settings
from wonderq.crosssite import HostPolicy, host_policy
from wonderq.errors import RateLimited
from wonderq.principals import EVERYONE, Permission, Principal, Principals, PrincipalsError, load_principals
from wonderq.ratelimit import RateLimiter
from wonderq.sessions import Sessions

F = TypeVar("F", bound=Callable[..., Any])


# ---- what each route needs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Need:
    """What a route needs of a request before its view runs. Every route declares one (`needs`, `public`,
    `sqs_route`); the gate refuses a route without one, so no route can be left open by accident."""

    permissions: tuple[Permission, ...]  # any one of them suffices; () for a public route
    queue_arg: str | None = "name"  # the view argument naming the queue the permission is checked on
    queue: str | None = None  # a fixed queue instead (the classic routes' "default")
    leases: bool = False  # a GET that changes state (the classic /readMessage): cross-site requests are refused
    sqs: bool = False  # the SQS endpoint authenticates (SigV4) and authorizes each action itself
    page: bool = False  # a dashboard page: without credentials, the browser is sent to the sign-in page
    rated: bool = True  # counted against the rate limits (/health is not: probes must get through)

    @property
    def public(self) -> bool:
        return not self.permissions and not self.sqs


def needs(
    *permissions: Permission, queue_arg: str | None = "name", queue: str | None = None, **flags: bool
) -> Callable[[F], F]:
    """Declare that a route needs one of `permissions` on its queue (the view argument `queue_arg`, or the fixed
    `queue`; with neither, on at least one queue)."""
    need = Need(tuple(permissions), queue_arg=queue_arg if queue is None else None, queue=queue, **flags)

    def attach(view: F) -> F:
        view.access_need = need  # type: ignore[attr-defined]
        return view

    return attach


def public(*, rated: bool = True) -> Callable[[F], F]:
    """Declare a route open to everyone (no credentials): a page's assets, the API docs, /health."""
    need = Need((), queue_arg=None, rated=rated)

    def attach(view: F) -> F:
        view.access_need = need  # type: ignore[attr-defined]
        return view

    return attach


def sqs_route(view: F) -> F:
    """Declare the SQS endpoint: it authenticates and authorizes every action itself."""
    view.access_need = Need((), queue_arg=None, sqs=True)  # type: ignore[attr-defined]
    return view


def need_of(view: Callable[..., Any]) -> Need | None:
    found = getattr(view, "access_need", None)
    return found if isinstance(found, Need) else None


class AccessConfigError(Exception):
    """The settings of access control contradict each other or the auth file cannot be used: no start."""


@dataclass
class Access:
    """The server's access rules. `principals` is None when auth is off: then every request is EVERYONE."""

    principals: Principals | None
    sqs_keys: Principals | None  # who may sign SQS requests; None: SQS requests need no signature
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0.0, 1))
    hosts: HostPolicy = field(default_factory=lambda: HostPolicy(any_host=True))  # Host names answered for
    origins: tuple[str, ...] = ()  # ALLOWED_ORIGINS: other origins browsers may call from (with CORS)
    sessions: Sessions = field(default_factory=lambda: Sessions(ttl=43_200.0, max_sessions=10_000))

    @property
    def enabled(self) -> bool:
        return self.principals is not None

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        """The rules `settings` give: the auth file's principals (read now), or SQS_ACCESS_KEYS for the SQS
        endpoint alone, or nobody (auth off). Raises AccessConfigError."""
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
                principals: Principals | None = load_principals(settings.auth_file)
            except PrincipalsError as error:
                raise AccessConfigError(str(error)) from None
            sqs_keys = principals
        else:
            keys = settings.access_keys()
            principals, sqs_keys = None, Principals.from_access_keys(keys) if keys else None
        return cls(
            principals,
            sqs_keys,
            limiter,
            hosts=host_policy(settings.host_names(), settings.host, auth=principals is not None),
            origins=settings.origins(),
            sessions=Sessions(ttl=settings.session_ttl, max_sessions=settings.max_sessions),
        )

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
