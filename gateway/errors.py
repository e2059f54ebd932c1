"""Every failure leaves the gateway as {"error": {"code", "message"}}: never a traceback."""

from __future__ import annotations

import logging

from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from tether.kube import refusal
from tether.outages import unavailable

log = logging.getLogger("tether.gateway")
MAX_BODY_BYTES = web.AppKey("max_body_bytes", int)

_HTTP_CODES = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "already_exists",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_argument",
    429: "resource_exhausted",
    502: "bad_gateway",
    503: "unavailable",
}


class ApiError(Exception):
    """An error the client should see, with the HTTP status and the API's error code."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _HTTP_CODES.get(status, "internal")
        self.message = message


def not_found(what: str, id_: str) -> ApiError:
    return ApiError(404, f"{what} {id_!r} not found")


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def describe_validation(error: ValidationError) -> str:
    """Pydantic's errors as one line per field, e.g. `input[0].type: unknown step type`. Of a
    union's alternatives, only those that got furthest speak: a malformed allowlist entry is
    named, not every other shape `network` could have had."""
    items = error.errors()
    furthest: dict[tuple, int] = {}
    for item in items:
        if (branch := _branch(item["loc"])) is not None:
            furthest[branch] = max(furthest.get(branch, 0), len(item["loc"]))
    parts = []
    for item in items:
        branch = _branch(item["loc"])
        if branch is not None and len(item["loc"]) < furthest[branch]:
            continue
        path = ""
        for loc in item["loc"]:
            if isinstance(loc, int):
                path += f"[{loc}]"
            elif not _is_tag(loc):
                path += f".{loc}" if path else str(loc)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{path}: {message}" if path else message)
    return "; ".join(dict.fromkeys(parts))


_UNION_TAGS = {"text", "content", "list", "step", "str", "int", "float", "bool", "dict"}


def _is_tag(loc: str | int) -> bool:
    """Whether a location is the name of a union's alternative, not a field."""
    return isinstance(loc, str) and (
        loc in _UNION_TAGS or "[" in loc or "'" in loc or loc[:1].isupper()
    )


def _branch(loc: tuple) -> tuple | None:
    """Where the first union in `loc` is (the path up to it), or None when there is none."""
    for i, part in enumerate(loc):
        if _is_tag(part):
            return tuple(loc[:i])
    return None


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error.status, error.code, error.message)
    except ValidationError as error:
        return error_response(400, "invalid_argument", describe_validation(error))
    except web.RequestPayloadError as error:  # a body its content-encoding cannot decode
        message = str(error).replace("\n", " ").replace("400, message:", "").strip()
        response = error_response(400, "invalid_argument", f"request body: {message}")
        response.force_close()  # the rest of the body is unreadable: this connection is done
        return response
    except web.HTTPRequestEntityTooLarge:
        return error_response(
            413,
            "payload_too_large",
            f"request body is larger than the limit of {request.config_dict[MAX_BODY_BYTES]} bytes",
        )
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return error_response(
            error.status, _HTTP_CODES.get(error.status, "invalid_argument"), error.reason
        )
    except ApiException as error:
        return _from_kubernetes(error)
    except Exception as error:
        if unavailable(error):
            log.warning("%s %s: a backend is away: %r", request.method, request.path, error)
            return error_response(503, "unavailable", "the service is not answering; try again")
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; the gateway log has the details")


def _from_kubernetes(error: ApiException) -> web.Response:
    message = refusal(error)
    if error.status in (400, 404, 409, 413, 422):
        status = 400 if error.status == 422 else error.status
        return error_response(status, _HTTP_CODES[status], message)
    log.error("Kubernetes API error %s: %s", error.status, message)
    return error_response(503, "unavailable", "the cluster is not answering; try again")
