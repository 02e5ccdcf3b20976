"""Where a request comes from: the host it names (`Host`, against DNS rebinding) and the site a browser says it
was made from (`Origin`, `Sec-Fetch-Site`, against cross-site requests). Pure functions of header values and
settings; the HTTP gate applies them to every request and WebSocket upgrade.

A browser on a page of another site can make requests to WonderQ (a form post, an `<img>`, `fetch` in no-cors
mode, a WebSocket) even though it cannot read the replies: so a request that changes state is refused when a
browser marks it as made from another origin. Programs (curl, the SDKs, WonderQ's client) send neither header and
are not affected. A page served on a name that resolves to WonderQ's address (DNS rebinding) makes requests that
are same-origin by the browser's rules, so the `Host` they carry must be one WonderQ answers for.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # methods that change nothing (but GET /readMessage)


def is_loopback(host: str) -> bool:
    """Whether a bind address (or host name) is this machine's loopback only."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, int | None] | None:
    """A `Host` header (or an origin's netloc) as (lower-case name without brackets or trailing dot, port or None);
    None when it is not a host at all."""
    value = value.strip()
    if not value or any(c in value for c in "/\\@?# \t"):
        return None
    try:
        parts = urlsplit(f"//{value}")
        name, port = parts.hostname, parts.port
    except ValueError:  # a bad port, an unclosed bracket
        return None
    if not name:
        return None
    return name.rstrip("."), port


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """The host names this server answers for: any (`any_host`), these names, names under these suffixes
    (".example.com" covers example.com and its subdomains), and optionally every IP literal."""

    any_host: bool = False
    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    ip_literals: bool = False

    def allows(self, host_header: str | None) -> bool:
        return self.any_host or _host_allowed(self, host_header or "")


@functools.lru_cache(maxsize=1024)  # per request, and a server sees few distinct Host values: parsing one is ~5 µs
def _host_allowed(policy: HostPolicy, host_header: str) -> bool:
    found = split_host(host_header)
    if found is None:
        return False
    name = found[0]
    if name in policy.names or (policy.ip_literals and is_ip_literal(name)):
        return True
    return any(name == suffix[1:] or name.endswith(suffix) for suffix in policy.suffixes)


def host_policy(configured: tuple[str, ...], bind_host: str, *, auth: bool) -> HostPolicy:
    """ALLOWED_HOSTS, or the defaults of docs/security.md: on a loopback bind, the loopback names (and
    *.localhost); elsewhere with auth on, any host (a rebinding page has neither token nor session); elsewhere
    without auth (--insecure), IP literals, the loopback names, the bind address and this machine's names."""
    if configured:
        names = {name.strip("[]").rstrip(".") for name in configured if not name.startswith(".") and name != "*"}
        suffixes = tuple(name.rstrip(".") for name in configured if name.startswith("."))
        return HostPolicy(any_host="*" in configured, names=frozenset(names), suffixes=suffixes)
    loopback = frozenset(LOOPBACK_NAMES)
    if is_loopback(bind_host):
        return HostPolicy(names=loopback | {bind_host.strip("[]").lower()}, suffixes=(".localhost",))
    if auth:
        return HostPolicy(any_host=True)
    own = {bind_host.strip("[]").lower(), socket.gethostname().lower(), socket.getfqdn().lower()}
    return HostPolicy(names=loopback | own, suffixes=(".localhost",), ip_literals=True)


def same_origin(origin: str, host_header: str | None) -> bool:
    """Whether `origin` (scheme://host[:port]) names the host the request was sent to. Ports are compared when
    both sides give one; a side without one stands for the origin scheme's default port (a proxy in front may
    drop the port from `Host`)."""
    try:
        parts = urlsplit(origin)
        origin_name, origin_port = parts.hostname, parts.port
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not origin_name:
        return False
    target = split_host(host_header or "")
    if target is None:
        return False
    name, port = target
    if origin_name.rstrip(".") != name:
        return False
    default = DEFAULT_PORTS[scheme]
    return (origin_port or default) == (port or default)


def cross_site_reason(
    *,
    origin: str | None,
    fetch_site: str | None,
    host_header: str | None,
    allowed_origins: tuple[str, ...],
) -> str | None:
    """Why a state-changing request is refused as cross-site, or None when it may go on.

    A request that carries `Origin` may go on when that origin is the server's own or an allowed one. One without
    `Origin` may go on unless the browser says, in `Sec-Fetch-Site`, that another site made it (an `<img>` or a
    link sends no `Origin`); programs send neither header."""
    if origin is not None:
        origin = origin.strip().lower()
        if origin in allowed_origins or (origin != "null" and same_origin(origin, host_header)):
            return None
        return (
            f"a request from {origin[:100]!r} may not change state here (it is neither this server's origin nor in"
            " ALLOWED_ORIGINS)"
        )
    if fetch_site is not None and fetch_site.strip().lower() in ("cross-site", "same-site"):
        return "a request another site made (Sec-Fetch-Site) may not change state here"
    return None
