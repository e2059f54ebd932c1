"""/internal/egress/…: where the egress proxy reports the connections it refused, so each one
shows in its run's timeline. The proxy holds a key of its own (TETHER_EGRESS_KEY), which no
sandbox has; a run token opens nothing here.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from tether.api.interaction import TERMINAL_PHASES
from tether.api.internal import EgressRefusal

from .auth import bearer_token
from .errors import ApiError, not_found
from .internal import record_step
from .parsing import read_json
from .state import SETTINGS, STATE


@web.middleware
async def egress_key_middleware(request: web.Request, handler) -> web.StreamResponse:
    key = request.config_dict[SETTINGS].egress_key
    if not key:
        raise ApiError(503, "the egress proxy is not configured: TETHER_EGRESS_KEY is unset")
    if not hmac.compare_digest((bearer_token(request) or "").encode(), key.encode()):
        raise ApiError(401, "the egress proxy's key is required (Authorization: Bearer …)")
    return await handler(request)


async def refused(request: web.Request) -> web.Response:
    """A connection the proxy refused, as a `network_blocked` step of the run it came from."""
    state = request.config_dict[STATE]
    body = EgressRefusal.model_validate(await read_json(request))
    obj = await state.kube.get("interactions", body.namespace, body.interaction)
    if obj is None or obj["metadata"]["uid"] != body.uid:
        raise not_found("interaction", body.interaction)
    if (obj.get("status") or {}).get("phase") in TERMINAL_PHASES:
        raise ApiError(409, f"interaction {body.interaction!r} has already ended", "ended")
    index = await record_step(state, body.namespace, body.interaction, body.step())
    return web.json_response({"index": index})


def egress_api() -> web.Application:
    """The sub-application mounted at /internal/egress: the egress proxy's key only."""
    api = web.Application(middlewares=[egress_key_middleware])
    api.router.add_post("/refusals", refused)
    return api
