"""A real MCP server on this machine's loopback, built with the official SDK (MCPServer, which
was FastMCP before mcp 2), for tests and the demo: `price(plan)` answers from a price list,
`broken()` always fails with a tool error, `slow(seconds)` takes its time. It serves Streamable
HTTP at /mcp and SSE at /sse, and records each HTTP request's headers."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings

from tether.dev.control_plane import free_port

PRICES = {"starter": "9.00", "pro": "29.00", "enterprise": "199.00"}


def price_server() -> MCPServer:
    server = MCPServer("prices")

    @server.tool()
    def price(plan: str) -> str:
        """The monthly price in USD of a plan: starter, pro or enterprise."""
        if plan.lower() not in PRICES:
            raise ToolError(f"no plan named {plan!r}; there are {', '.join(PRICES)}")
        return PRICES[plan.lower()]

    @server.tool()
    def broken() -> str:
        """Looks up the discount of the day."""
        raise ToolError("the discount service is down")

    @server.tool()
    async def slow(seconds: float) -> str:
        """Waits, then answers."""
        await asyncio.sleep(seconds)
        return "finally"

    return server


@dataclass
class McpSite:
    """The price server on 127.0.0.1 (reached by `host`), on a thread of its own."""

    host: str = "127.0.0.1"
    headers: list[dict[str, str]] = field(default_factory=list)
    """The headers of every HTTP request it received, in order."""

    def __post_init__(self) -> None:
        self.port = free_port()

    @property
    def url(self) -> str:
        """The Streamable HTTP endpoint; `sse_url`, the SSE one."""
        return f"http://{self.host}:{self.port}/mcp"

    @property
    def sse_url(self) -> str:
        return f"http://{self.host}:{self.port}/sse"

    def app(self):
        """One ASGI app: /mcp to the Streamable HTTP server (whose lifespan runs its sessions),
        the rest to the SSE one; every request's headers recorded on the way."""
        open_hosts = TransportSecuritySettings(enable_dns_rebinding_protection=False)
        streamable = price_server().streamable_http_app(transport_security=open_hosts)
        sse = price_server().sse_app(transport_security=open_hosts)
        seen = self.headers

        async def app(scope, receive, send):
            if scope["type"] == "http":
                seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
            to = (
                streamable
                if scope["type"] == "lifespan" or scope["path"].startswith("/mcp")
                else sse
            )
            await to(scope, receive, send)

        return app

    def __enter__(self) -> McpSite:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
