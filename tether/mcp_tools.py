"""Tools from remote MCP servers: a request's `{"type": "mcp_server", "name", "url", "headers",
"allowed_tools"}` tools. Each server is reached with the official MCP SDK, over Streamable HTTP
(or SSE, for a URL whose path ends in /sse), with the request's headers; its tools are offered
to the model as `<server name>__<tool name>` function tools, less those `allowed_tools` leaves
out. Whatever goes wrong with a server (unreachable, a tool error, a timeout) becomes a result
the model reads: it never ends the run.

Where the connections leave from is the caller's: the operator gives model interactions a
client under the platform's outbound rules (tether.outbound); a sandbox's agent loop, one that
goes through the egress proxy, under the run's allowlist. Both sides import this module, so it
imports nothing of the platform's but the sandbox contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from tether.api.internal import MCP_SEPARATOR

SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
CONNECT_SECONDS = 15.0
CALL_SECONDS = 60.0
RESULT_LIMIT = 32 * 1024
TIMEOUT = httpx2.Timeout(30, read=300)
"""30 s to connect and send; a server may hold a response stream open longer."""
ClientFactory = Callable[[dict[str, str]], httpx2.AsyncClient]
"""An HTTP client carrying a server's headers, made where the caller's connections leave from."""


@dataclass(frozen=True)
class McpServer:
    name: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    allowed: frozenset[str] | None = None
    """The tools offered, when allowed_tools names them; None: all the server has."""

    @classmethod
    def from_tool(cls, tool: dict[str, Any]) -> McpServer:
        names = [n for rule in tool.get("allowed_tools") or [] for n in rule.get("tools") or []]
        return cls(
            name=tool["name"],
            url=tool["url"],
            headers=tuple((tool.get("headers") or {}).items()),
            allowed=frozenset(names) if tool.get("allowed_tools") else None,
        )


def problems(tools: list[dict[str, Any]]) -> list[str]:
    """What is wrong with a request's mcp_server tools (wire spelling), each named by field."""
    out: list[str] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if tool.get("type") != "mcp_server":
            continue
        where = f"tools[{i}]"
        name = tool.get("name") or ""
        if not SERVER_NAME.match(name) or MCP_SEPARATOR in name:
            out.append(
                f"{where}.name: an MCP server needs a name of letters, digits, _ and - "
                f"(up to 32, without {MCP_SEPARATOR!r}): its tools are offered as "
                f"<name>{MCP_SEPARATOR}<tool>"
            )
        elif name in seen:
            out.append(f"{where}.name: {name!r} names two MCP servers")
        seen.add(name)
        url = urlsplit(tool.get("url") or "")
        if url.scheme not in ("http", "https") or not url.hostname:
            out.append(f"{where}.url: an MCP server's http:// or https:// endpoint is required")
        for j, rule in enumerate(tool.get("allowed_tools") or []):
            if rule.get("mode") not in (None, "auto"):
                out.append(
                    f'{where}.allowed_tools[{j}].mode: only "auto" is honoured, '
                    f"not {rule['mode']!r}"
                )
        if tool.get("defer_loading"):
            out.append(f"{where}.defer_loading: Tether lists a server's tools when the run starts")
    return out


def http_client(
    headers: dict[str, str],
    proxy: str | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> httpx2.AsyncClient:
    """The client a server's calls go out by: through `proxy` (a sandbox's egress proxy), or
    by `transport` (the platform's, which refuses private addresses)."""
    return httpx2.AsyncClient(
        headers=headers, proxy=proxy, transport=transport, trust_env=False, timeout=TIMEOUT
    )


def servers_of(tools: list[dict[str, Any]]) -> list[McpServer]:
    return [McpServer.from_tool(t) for t in tools if t.get("type") == "mcp_server"]


@dataclass(frozen=True)
class ToolCall:
    """One call of the model's to an MCP tool, as the timeline shows it."""

    id: str
    server: str
    tool: str
    arguments: dict[str, Any]

    def call_step(self) -> dict[str, Any]:
        return {
            "type": "mcp_server_tool_call",
            "id": self.id,
            "server_name": self.server,
            "name": self.tool,
            "arguments": self.arguments,
        }

    def result_step(self, result: str, is_error: bool) -> dict[str, Any]:
        return {
            "type": "mcp_server_tool_result",
            "call_id": self.id,
            "server_name": self.server,
            "name": self.tool,
            "result": result,
            "is_error": is_error,
        }


def model_result(result_step: dict[str, Any]) -> dict[str, str]:
    """An mcp_server_tool_result as the model reads it, in a function result."""
    return {"error" if result_step.get("is_error") else "result": result_step.get("result", "")}


def result_text(content: list[Any], structured: Any = None) -> str:
    """A tool's result as the model reads it: its text parts (structured content when it has
    no text), other parts named by kind; clipped."""
    parts = []
    for block in content:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource":
            parts.append(getattr(block.resource, "text", "") or f"[resource {block.resource.uri}]")
        else:
            parts.append(f"[{kind} content]")
    text = "\n".join(parts) or (json.dumps(structured) if structured is not None else "")
    cut = len(text) - RESULT_LIMIT
    return text if cut <= 0 else text[:RESULT_LIMIT] + f"\n… [{cut} characters cut]"


class Toolbox:
    """The MCP servers of one run, connected for as long as it lasts (`async with`)."""

    def __init__(self, servers: list[McpServer], client_for: ClientFactory) -> None:
        self.servers = servers
        self.client_for = client_for
        self.declarations: list[dict[str, Any]] = []
        """The servers' tools as function tools, named <server>__<tool>."""
        self.unreachable: dict[str, str] = {}
        """Servers that could not be listed, and why: the model is told."""
        self._sessions: dict[str, Client] = {}
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Toolbox:
        for server in self.servers:
            try:  # in this task: the SDK's task groups must close in the task that opened them
                async with asyncio.timeout(CONNECT_SECONDS):
                    await self._connect(server)
            except Exception as error:  # any failure: the model is told why
                self.unreachable[server.name] = _reason(error, f"{CONNECT_SECONDS:g}s")
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):  # a server gone by now has nothing to close
            await self._stack.aclose()

    async def _connect(self, server: McpServer) -> None:
        async with contextlib.AsyncExitStack() as stack:
            headers = dict(server.headers)
            if urlsplit(server.url).path.rstrip("/").endswith("/sse"):
                transport = sse_client(
                    server.url,
                    headers=headers,
                    httpx_client_factory=lambda headers=None, timeout=None, auth=None: (
                        self.client_for(headers or {})
                    ),
                )
            else:
                http = await stack.enter_async_context(self.client_for(headers))
                transport = streamable_http_client(server.url, http_client=http)
            session = await stack.enter_async_context(Client(transport))
            listed = await session.list_tools()
            self._stack.push_async_exit(stack.pop_all())
        self._sessions[server.name] = session
        for tool in listed.tools:
            if server.allowed is None or tool.name in server.allowed:
                self.declarations.append(
                    {
                        "type": "function",
                        "name": f"{server.name}{MCP_SEPARATOR}{tool.name}",
                        "description": tool.description or "",
                        "parameters": tool.input_schema or {"type": "object"},
                    }
                )

    def note(self) -> str | None:
        """What to tell the model of servers it cannot use."""
        if not self.unreachable:
            return None
        return "\n".join(
            f"The MCP server {name!r} could not be reached ({why}); its tools are unavailable."
            for name, why in self.unreachable.items()
        )

    def owns(self, name: str) -> bool:
        return any(d["name"] == name for d in self.declarations)

    def pending(self, call_id: str, name: str, arguments: dict[str, Any]) -> ToolCall:
        server, _, tool = name.partition(MCP_SEPARATOR)
        return ToolCall(call_id, server, tool, arguments)

    async def call(self, call: ToolCall) -> dict[str, Any]:
        """The call's result step: the tool's answer, or what went wrong."""
        try:
            async with asyncio.timeout(CALL_SECONDS):
                answered = await self._sessions[call.server].call_tool(call.tool, call.arguments)
            text = result_text(answered.content, answered.structured_content)
            failed = bool(answered.is_error)
        except Exception as error:  # the model reads what went wrong
            text, failed = _reason(error, f"{CALL_SECONDS:g}s"), True
        return call.result_step(text, failed)


def _reason(error: BaseException, limit: str) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {limit}"
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return str(error) or type(error).__name__
