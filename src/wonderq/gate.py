"""The HTTP gate: every request and every WebSocket upgrade passes here before its view runs.

In order: the `Host` must be one this server answers for; the server's and then the client's request rate; a
request that changes state must not come from another site; the request's principal is found (a bearer token, a
dashboard session, or nobody: then only a public route, or auth being off, lets it on); the principal must hold the
permission the route declares (`access.Need`) on the queue it names. The SQS endpoint does its own authentication
(SigV4) and authorization after the first checks. CORS replies are added here too, for ALLOWED_ORIGINS only.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import orjson
import trio
from quart import Response, g, request, websocket
from quart_trio import QuartTrio

from wonderq.access import Access, Need, need_of
from wonderq.crosssite import SAFE_METHODS, cross_site_reason
from wonderq.errors import CrossSiteRefused, Forbidden, HostNotAllowed, Unauthorized
from wonderq.principals import EVERYONE, Permission, Principal
from wonderq.sessions import COOKIE

log = logging.getLogger("wonderq.gate")

SIGN_IN_PAGE = "/dashboard/login"
CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-Id"
CORS_EXPOSED = "X-Request-Id, Retry-After, Location"
CORS_MAX_AGE = "600"  # seconds a browser may remember a preflight


def current_principal() -> Principal:
    """The principal of the request (or WebSocket) being served: EVERYONE when auth is off."""
    principal = getattr(g, "principal", None)
    return principal if isinstance(principal, Principal) else EVERYONE


def require(permission: Permission, queue: str) -> None:
    """Refuse the request unless its principal holds `permission` on `queue` (for a second queue a request names:
    a redrive's destination, a dead-letter queue)."""
    principal = current_principal()
    if not principal.allows(permission, queue):
        raise Forbidden(f"{principal.name!r} may not {permission.value} on queue {queue[:100]!r}")


def see_other(location: str) -> Response:
    """A 303 to a path of this server."""
    return Response(b"", status=303, headers={"Location": location})


def install(app: QuartTrio, access: Access) -> None:
    """Put the gate in front of every route of `app` (register it after the hooks that must run first)."""
    app.asgi_app = _refusing_unusable_hosts(app.asgi_app)  # type: ignore[method-assign]

    @app.before_request
    async def _gate_request() -> Response | None:
        return _admit(access, app, request, websocket=False)

    @app.before_websocket
    async def _gate_websocket() -> Response | None:
        return _admit(access, app, websocket, websocket=True)

    @app.after_request
    async def _cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() in access.origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
        if access.origins:
            response.vary.add("Origin")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


def usable_host(header: bytes) -> bool:
    """Whether the framework can route a request with this `Host` (werkzeug IDNA-encodes it, and a label over 63
    characters, say, makes it raise before any hook of ours runs)."""
    try:
        header.decode("latin-1").encode("idna")
    except UnicodeError:
        return False
    return True


def _refusing_unusable_hosts(asgi_app: Any) -> Any:
    """Answer a request whose `Host` the framework cannot even route (it would be a 500) with 421
    `host_not_allowed` before it reaches the app."""
    refusal = orjson.dumps({"error": {"code": HostNotAllowed.code, "message": "the Host header is not a host name"}})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            host = next((value for name, value in scope.get("headers", ()) if name == b"host"), b"")
            if not usable_host(host):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})  # before the handshake: a 403
                    return
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(refusal)).encode())]
                await send({"type": "http.response.start", "status": HostNotAllowed.status, "headers": headers})
                await send({"type": "http.response.body", "body": refusal})
                return
        await asgi_app(scope, receive, send)

    return app


def _admit(access: Access, app: QuartTrio, connection: Any, *, websocket: bool) -> Response | None:
    """Let the request on to its view (None), answer it here (a CORS preflight, a redirect to sign in), or raise
    the WonderQError that refuses it."""
    if not access.hosts.allows(connection.headers.get("Host")):
        raise HostNotAllowed(f"this server does not answer for the host {connection.headers.get('Host', '')[:100]!r}")
    rule = connection.url_rule
    view = app.view_functions.get(rule.endpoint) if rule is not None else None
    need = need_of(view) if view is not None else None
    address = connection.remote_addr
    method = "GET" if websocket else connection.method
    if method == "OPTIONS":
        return _preflight(access, connection)
    if need is None:
        if view is not None:  # a route without a declaration is a bug: refuse rather than serve it open
            log.error("route %s declares no access need: refused", rule.rule if rule else "?")
            raise Forbidden("this route is not open to anyone")
        access.admit_globally()  # no such route: the error handler answers 404 or 405
        access.admit(None, address)
        return None
    if need.rated:
        access.admit_globally()
    if websocket or need.leases or method not in SAFE_METHODS:
        reason = cross_site_reason(
            origin=connection.headers.get("Origin"),
            fetch_site=connection.headers.get("Sec-Fetch-Site"),
            host_header=connection.headers.get("Host"),
            allowed_origins=access.origins,
        )
        if reason is not None:
            raise CrossSiteRefused(reason)
    if need.sqs:
        return None
    if need.public:
        if need.rated:
            access.admit(None, address)
        return None
    try:
        principal = _authenticate(access, connection)
    except Unauthorized:
        if need.rated:
            access.admit(None, address)  # failed sign-ins count against the address
        if need.page:
            return see_other(f"{SIGN_IN_PAGE}?next={quote(connection.path, safe='/')}")
        raise
    g.principal = principal
    if need.rated:
        access.admit(principal, address)
    _authorize(principal, need, connection.view_args or {})
    return None


def _authenticate(access: Access, connection: Any) -> Principal:
    """The request's principal: by its bearer token, else by its dashboard session; EVERYONE when auth is off."""
    principals = access.principals
    if principals is None:
        return EVERYONE
    header = connection.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("give credentials as Authorization: Bearer <token>")
        principal = principals.by_token(token.strip())
        if principal is None:
            raise Unauthorized("the bearer token is not valid")
        return principal
    session_id = connection.cookies.get(COOKIE)
    if session_id:
        name = access.sessions.find(session_id, trio.current_time())
        found = principals.named(name) if name is not None else None
        if found is None:
            raise Unauthorized("the dashboard session has ended: sign in again")
        return found
    raise Unauthorized("this server needs credentials: Authorization: Bearer <token> (docs/security.md)")


def _authorize(principal: Principal, need: Need, view_args: dict[str, Any]) -> None:
    queue = need.queue if need.queue is not None else view_args.get(need.queue_arg) if need.queue_arg else None
    if queue is not None:
        if any(principal.allows(permission, str(queue)) for permission in need.permissions):
            return
        wanted = " or ".join(permission.value for permission in need.permissions)
        raise Forbidden(f"{principal.name!r} may not {wanted} on queue {str(queue)[:100]!r}")
    if not any(principal.allows_somewhere(permission) for permission in need.permissions):
        wanted = " or ".join(permission.value for permission in need.permissions)
        raise Forbidden(f"{principal.name!r} may not {wanted} on any queue")


def _preflight(access: Access, connection: Any) -> Response | None:
    """A CORS preflight from an allowed origin, answered here; any other OPTIONS request goes on to Quart's own
    answer (the Allow header). Neither needs credentials: a preflight never carries them."""
    origin = connection.headers.get("Origin")
    if origin is None or origin.lower() not in access.origins:
        return None
    if connection.headers.get("Access-Control-Request-Method") is None:
        return None
    response = Response(b"", status=204)
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE"
    response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
    response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
    return response
