"""Signing in to the dashboard: the sign-in page, a token exchanged for a session cookie (HttpOnly,
SameSite=Strict), signing out, and who the browser is signed in as. The sessions are `sessions.py`'s, held by the
server's `Access`; the gate authenticates requests by their cookie."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import trio
from pydantic import BaseModel, ConfigDict, Field
from quart import Response, request
from quart_trio import QuartTrio

from wonderq import openapi
from wonderq.access import Access, needs, public
from wonderq.errors import InvalidParameter, Unauthorized
from wonderq.gate import current_principal, see_other
from wonderq.jsonbody import read_json
from wonderq.principals import ALL
from wonderq.sessions import COOKIE


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    token: str = Field(max_length=200)


def install(app: QuartTrio, access: Access, asset: Callable[[str], Response]) -> None:
    """Serve `GET /dashboard/login` (the page, `asset("login.html")`), `POST /dashboard/login`,
    `POST /dashboard/logout` and `GET /dashboard/session` on `app`."""

    @public()
    @openapi.operation(
        summary="The dashboard's sign-in page (HTML)",
        tag="dashboard",
        reply_type="text/html",
        also=((303, "Auth is off: nothing to sign in to, so to the dashboard (Location)"),),
        errors=(),
    )
    async def sign_in_page() -> Response:
        if not access.enabled:
            return see_other("/")  # auth is off: nothing to sign in to
        return asset("login.html")

    @public()
    @openapi.operation(
        summary="Sign in to the dashboard with a token: a session cookie (HttpOnly, SameSite=Strict)",
        tag="dashboard",
        status=204,
        body=SignIn,
        errors=(400, 401),
    )
    async def sign_in() -> Response:
        given = await read_json(SignIn, required=True)
        if access.principals is None:
            raise InvalidParameter("authentication is off on this server: there is nothing to sign in to")
        principal = access.principals.by_token(given.token)
        if principal is None:
            raise Unauthorized("the token is not valid")
        session_id = access.sessions.start(principal.name, trio.current_time())
        response = Response(b"", status=204)
        response.set_cookie(
            COOKIE,
            session_id,
            max_age=int(access.sessions.ttl),
            path="/",
            secure=request.scheme == "https",
            httponly=True,
            samesite="Strict",
        )
        return response

    @public()
    @openapi.operation(summary="Sign out of the dashboard", tag="dashboard", status=204, errors=())
    async def sign_out() -> Response:
        session_id = request.cookies.get(COOKIE)
        if session_id:
            access.sessions.end(session_id)
        response = Response(b"", status=204)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Strict")
        return response

    @needs(*ALL, queue_arg=None)
    @openapi.operation(
        summary="Who the dashboard is signed in as", tag="dashboard", reply=openapi.SessionReply, errors=(401,)
    )
    async def session() -> Response:
        principal = current_principal()
        shown = {"auth": access.enabled, "principal": principal.name if access.enabled else None}
        return Response(orjson.dumps(shown), status=200, content_type="application/json")

    app.add_url_rule("/dashboard/login", "dashboard_sign_in_page", sign_in_page, methods=["GET"])
    app.add_url_rule("/dashboard/login", "dashboard_sign_in", sign_in, methods=["POST"])
    app.add_url_rule("/dashboard/logout", "dashboard_sign_out", sign_out, methods=["POST"])
    app.add_url_rule("/dashboard/session", "dashboard_session", session, methods=["GET"])
