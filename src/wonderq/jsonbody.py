"""Reading a request's JSON body (API v1, the dashboard's sign-in): it must say it is JSON, arrive within
BODY_TIMEOUT, and fit its pydantic model strictly; each failure is a WonderQError with its own code.

Refusing bodies labelled as anything but JSON is part of the cross-site protection: a page of another site can make
a browser send `text/plain` or a form without asking first, but not `application/json`. A body with no Content-Type
at all is read as JSON (programs often send none; a browser sends none only with an `Origin`, which the gate
checks).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from quart import request
from werkzeug.exceptions import RequestTimeout as BodyTimeout

from wonderq.errors import InvalidBody, InvalidParameter, RequestTimeout, UnsupportedMediaType

M = TypeVar("M", bound=BaseModel)


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type names JSON: application/json or any application/...+json."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_body() -> bytes:
    """The whole request body (capped by MAX_CONTENT_LENGTH), within BODY_TIMEOUT seconds."""
    try:
        return await request.get_data(cache=True, as_text=False, parse_form_data=False)
    except BodyTimeout:
        raise RequestTimeout("the request body did not arrive in time (BODY_TIMEOUT)") from None


async def read_json(model: type[M], *, required: bool) -> M:
    """The body as `model`, validated strictly (a JSON body must use JSON types: no `true` or `"5"` where a number
    belongs). An empty body is `model()` unless `required`."""
    data = await read_body()
    if not data.strip():
        if required:
            raise InvalidBody("this request needs a JSON body")
        return model()
    if request.content_type is not None and not is_json(request.content_type):
        raise UnsupportedMediaType(
            f"the body must be JSON (Content-Type: application/json), got {str(request.content_type)[:100]!r}"
        )
    try:
        return model.model_validate_json(data, strict=True)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise InvalidBody(f"the body is not valid JSON: {describe(error)}") from None
        raise InvalidParameter(describe(error)) from None


def describe(error: ValidationError) -> str:
    """A validation error as one line: `where: what` for each problem."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)


def from_values(model: type[M], values: dict[str, Any]) -> M:
    """`values` (query parameters, say) as `model`, lax as query strings must be."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise InvalidParameter(describe(error)) from None
