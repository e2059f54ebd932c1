"""What a request may look like before any handler acts on it: a JSON object body (in its
charset, bounded in depth), boolean query flags, and interaction ids in paths."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tether.api.interaction import InvalidInteractionId, check_interaction_id

from .errors import ApiError

MAX_JSON_DEPTH = 64
"""How deeply a request body may nest objects and arrays: far beyond any real tool schema, and
far below where parsing, validation or the Kubernetes API would run out of stack."""


async def read_json(request: web.Request, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object; every way it can be malformed is a 400 saying how. An
    `optional` body may be left out (read as `{}`)."""
    raw = await request.read()
    if optional and not raw.strip():
        return {}
    charset = request.charset or "utf-8"
    try:
        text = raw.decode(charset)
    except LookupError as error:
        raise ApiError(400, f"unknown charset {charset!r} in content-type") from error
    except UnicodeDecodeError as error:
        raise ApiError(
            400, f"request body is not valid {charset}: {error.reason} at byte {error.start}"
        ) from error
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise ApiError(
            400, f"request body is not valid JSON: {error.msg} at position {error.pos}"
        ) from error
    except RecursionError as error:
        raise _too_deep() from error
    except ValueError as error:  # e.g. an integer literal over Python's 4,300 digits
        raise ApiError(400, f"request body is not valid JSON: {error}") from error
    if json_depth(body) > MAX_JSON_DEPTH:
        raise _too_deep()
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _too_deep() -> ApiError:
    return ApiError(
        400, f"request body nests objects and arrays more than {MAX_JSON_DEPTH} levels deep"
    )


def json_depth(value: Any) -> int:
    """How many objects and arrays deep a parsed JSON value nests (a scalar is 0), without
    recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in item)
    return deepest


@web.middleware
async def interaction_id_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Every route's `{id}` is an interaction id, checked against the one pattern before any
    handler sees it: `.`, `..` and encoded slashes never reach the Kubernetes API."""
    if (name := request.match_info.get("id")) is not None:
        try:
            check_interaction_id(name)
        except InvalidInteractionId as error:
            raise ApiError(400, str(error)) from error
    return await handler(request)


def query_flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ApiError(400, f"query parameter {name} must be true or false, not {value!r}")


def page_size(request: web.Request, default: int = 50) -> int:
    """The `page_size` query parameter of a list, 1 to 1000."""
    try:
        size = int(request.query.get("page_size", str(default)))
    except ValueError as error:
        raise ApiError(400, "page_size must be an integer") from error
    if not 1 <= size <= 1000:
        raise ApiError(400, "page_size must be between 1 and 1000")
    return size
