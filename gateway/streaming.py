"""Server-sent events from the event log, and waiting for an interaction to end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response

from tether.api.interaction import TERMINAL_PHASES
from tether.api.views import interaction_view
from tether.store.events import TERMINAL_EVENT, is_end

from .metrics import OPEN_STREAMS
from .state import State

log = logging.getLogger("tether.gateway")


async def stream_events(
    request: web.Request,
    state: State,
    namespace: str,
    name: str,
    after: str,
    current: dict[str, Any] | None = None,
) -> web.StreamResponse:
    """Replay the events after `after`, then follow live ones until the interaction ends.

    The library sends a keep-alive comment (every 15 s by default) on quiet streams. Once the
    stream has begun, a failure (Redis away) ends it with an `error` event, and the client
    resumes from the last event id it saw; a client that goes away is not an error.
    """
    phase = ((current or {}).get("status") or {}).get("phase")
    with OPEN_STREAMS.track_inprogress():
        async with sse_response(
            request,
            allow_all_methods=True,  # a streaming create is a POST
            ping_interval=state.settings.keepalive_seconds,
        ) as sse:
            try:
                if phase in TERMINAL_PHASES and not await state.events.exists(namespace, name):
                    # The log outlived its TTL; the final object still tells the whole story.
                    final = {
                        "event_type": TERMINAL_EVENT,
                        "interaction": interaction_view(current, include_input=False),
                    }
                    await sse.send(json.dumps(final), event=TERMINAL_EVENT)
                    return sse
                async for event in state.events.follow(namespace, name, after):
                    await sse.send(
                        json.dumps(event), id=event["event_id"], event=event["event_type"]
                    )
            except (ConnectionResetError, TimeoutError):
                return sse  # the client went away, or stopped reading
            except Exception as error:
                log.warning("stream of %s/%s broke: %r", namespace, name, error)
                body = {
                    "event_type": "error",
                    "error": {
                        "code": "unavailable",
                        "message": "the event stream was interrupted; resume it with the last "
                        "event_id you received",
                    },
                }
                with contextlib.suppress(ConnectionResetError, TimeoutError):
                    await sse.send(json.dumps(body), event="error")
        return sse


async def wait_for_end(state: State, namespace: str, name: str, timeout: float) -> dict | None:
    """The final interaction (output steps only), or None if it is still running after timeout
    or was deleted meanwhile."""
    try:
        async with asyncio.timeout(timeout):
            async for event in state.events.follow(namespace, name, "0"):
                if event["event_type"] == TERMINAL_EVENT:
                    return event["interaction"]
                if is_end(event):
                    return None
    except TimeoutError:
        return None
    return None
