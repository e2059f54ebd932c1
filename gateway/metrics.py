"""The gateway's Prometheus metrics, and the middleware that records every request."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

REQUESTS = Counter(
    "tether_gateway_requests_total",
    "HTTP requests by route and status code.",
    ["method", "route", "code"],
)
DURATION = Histogram(
    "tether_gateway_request_duration_seconds",
    "HTTP request duration (streams: until the stream ends).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
IN_FLIGHT = Gauge("tether_gateway_requests_in_flight", "HTTP requests being served now.")
OPEN_STREAMS = Gauge("tether_gateway_open_streams", "SSE streams open now.")
SANDBOX_FIRST_CALL = Histogram(
    "tether_sandbox_first_model_call_seconds",
    "From the gateway accepting an agent run to its sandbox's first model call.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)


@web.middleware
async def metrics_middleware(request: web.Request, handler) -> web.StreamResponse:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    started = time.perf_counter()
    code = 500
    with IN_FLIGHT.track_inprogress():
        try:
            response = await handler(request)
            code = response.status
            return response
        except web.HTTPException as error:
            code = error.status
            raise
        finally:
            REQUESTS.labels(request.method, route, str(code)).inc()
            DURATION.labels(request.method, route).observe(time.perf_counter() - started)


async def metrics_endpoint(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
