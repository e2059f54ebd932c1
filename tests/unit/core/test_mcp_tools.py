"""The MCP client against a real MCP server on loopback (the official SDK's MCPServer), over
Streamable HTTP and SSE; and what a model is shown of it."""

from __future__ import annotations

import pytest

from tether import outbound
from tether.conversation import as_model_steps
from tether.dev.fakes.mcp_server import McpSite
from tether.mcp_tools import McpServer, Toolbox, http_client, problems


@pytest.fixture(scope="module")
def site():
    with McpSite() as running:
        yield running


def anywhere(headers):
    return http_client(headers)


async def test_tools_are_listed_filtered_and_called_over_both_transports(site):
    servers = [
        McpServer("new", site.url, (("Authorization", "Bearer t"),)),
        McpServer("old", site.sse_url, allowed=frozenset({"price"})),
    ]
    async with Toolbox(servers, anywhere) as box:
        assert [d["name"] for d in box.declarations] == [
            "new__price",
            "new__broken",
            "new__slow",
            "old__price",
        ]
        assert box.declarations[0]["parameters"]["required"] == ["plan"]
        assert box.note() is None
        priced = await box.call(box.pending("c1", "old__price", {"plan": "pro"}))
        assert priced == {
            "type": "mcp_server_tool_result",
            "call_id": "c1",
            "server_name": "old",
            "name": "price",
            "result": "29.00",
            "is_error": False,
        }
        broken = await box.call(box.pending("c2", "new__broken", {}))
        assert broken["is_error"] and "the discount service is down" in broken["result"]
        wrong = await box.call(box.pending("c3", "new__price", {"plan": "gold"}))
        assert wrong["is_error"] and "no plan named 'gold'" in wrong["result"]
    assert "bearer t" in {h.get("authorization", "").lower() for h in site.headers}


async def test_a_slow_tool_times_out_as_a_result(site, monkeypatch):
    monkeypatch.setattr("tether.mcp_tools.CALL_SECONDS", 0.5)
    async with Toolbox([McpServer("p", site.url)], anywhere) as box:
        slow = await box.call(box.pending("c", "p__slow", {"seconds": 5}))
    assert slow["is_error"] and slow["result"] == "no answer within 0.5s"


async def test_a_server_that_cannot_be_reached_is_told_to_the_model():
    async with Toolbox([McpServer("gone", "http://127.0.0.1:9/mcp")], anywhere) as box:
        assert box.declarations == []
        assert box.note().startswith("The MCP server 'gone' could not be reached (")


async def test_the_platforms_calls_refuse_private_addresses_unless_allowed(site):
    def public_only(headers):
        return http_client(headers, transport=outbound.PublicTransport())

    async with Toolbox([McpServer("p", site.url)], public_only) as box:
        assert box.declarations == []
        assert "127.0.0.1 is at 127.0.0.1, a private address" in box.note()


def test_a_model_sees_mcp_steps_as_its_own_function_calls():
    steps = [
        {
            "type": "mcp_server_tool_call",
            "id": "c1",
            "server_name": "prices",
            "name": "price",
            "arguments": {"plan": "pro"},
        },
        {
            "type": "mcp_server_tool_result",
            "call_id": "c1",
            "server_name": "prices",
            "name": "price",
            "result": "down",
            "is_error": True,
        },
    ]
    assert as_model_steps(steps) == [
        {
            "type": "function_call",
            "id": "c1",
            "name": "prices__price",
            "arguments": {"plan": "pro"},
        },
        {
            "type": "function_result",
            "call_id": "c1",
            "name": "prices__price",
            "result": {"error": "down"},
        },
    ]


def test_bad_server_tools_are_named_by_field():
    assert problems([{"type": "mcp_server", "name": "ok-1", "url": "https://x.test/mcp"}]) == []
    assert problems(
        [
            {"type": "mcp_server", "name": "x" * 33, "url": "ftp://x"},
            {"type": "function", "name": "f"},
            {"type": "mcp_server", "name": "p", "url": "http://x", "headers": {}},
            {"type": "mcp_server", "name": "p", "url": "http://y"},
        ]
    ) == [
        "tools[0].name: an MCP server needs a name of letters, digits, _ and - (up to 32, "
        "without '__'): its tools are offered as <name>__<tool>",
        "tools[0].url: an MCP server's http:// or https:// endpoint is required",
        "tools[3].name: 'p' names two MCP servers",
    ]
