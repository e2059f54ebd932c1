"""MCP servers as tools, through the SDK: a real MCP server (the official SDK's MCPServer) beside
the stack. Model interactions: Tether runs the tool loop itself, the upstream model (a local
Chat Completions server) seeing each result. Agent runs: the sandbox calls the server through
the egress proxy, under the run's allowlist."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.test_agent_runs import agent_run, call
from tests.integration.test_browser_runs import result_of
from tests.integration.test_egress import allow, blocked
from tether.dev.fakes.chat_completions import Reply
from tether.dev.fakes.mcp_server import McpSite
from tether.dev.worker.configs import HOST_ALIAS


@pytest.fixture(scope="module")
def site():
    with McpSite() as running:
        yield running


def prices(site: McpSite, **extra) -> dict:
    return {"type": "mcp_server", "name": "prices", "url": site.url, **extra}


def sent_tools(request: dict) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools") or []]


def test_a_model_interaction_calls_an_mcp_tool_and_the_model_reads_its_result(
    client, upstream, site
):
    upstream.replies = [
        Reply(tool_calls=[{"name": "prices__price", "arguments": {"plan": "pro"}}]),
        Reply("Pro costs $29.00 a month"),
    ]
    before = len(site.headers)
    tool = prices(site, headers={"Authorization": "Bearer mcp-secret"})
    done = client.interactions.create(model="local-llm", input="what does pro cost?", tools=[tool])
    assert done.status == "completed", done.errors
    assert done.output_text == "Pro costs $29.00 a month"
    called, answered = (s for s in done.steps if s.type.startswith("mcp_server_tool"))
    assert (called.server_name, called.name, called.arguments) == (
        "prices",
        "price",
        {"plan": "pro"},
    )
    assert (answered.call_id, answered.server_name, answered.name) == (called.id, "prices", "price")
    assert answered.result == "29.00"

    first, second = upstream.requests[-2:]
    assert sent_tools(first) == ["prices__price", "prices__broken", "prices__slow"]
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "prices__price"
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": called.id,
        "content": json.dumps({"result": "29.00"}),
    }
    assert {h.get("authorization") for h in site.headers[before:]} == {"Bearer mcp-secret"}
    # Reads show which headers were sent, never their values.
    [shown] = client.interactions.get(done.id).tools
    assert shown.headers == {"Authorization": "[redacted]"}


def test_the_steps_stream_as_they_happen(client, upstream, site):
    upstream.replies = [
        Reply(tool_calls=[{"name": "prices__price", "arguments": {"plan": "starter"}}]),
        Reply("9 dollars"),
    ]
    events = list(
        client.interactions.create(
            model="local-llm", input="starter?", tools=[prices(site)], stream=True
        )
    )
    started = [e.step.type for e in events if e.event_type == "step.start"]
    assert started == ["mcp_server_tool_call", "mcp_server_tool_result", "model_output"]
    assert events[-1].event_type == "interaction.completed"


def test_allowed_tools_limit_what_the_model_is_offered(client, upstream, site):
    upstream.replies = [Reply("ok")]
    only = prices(site, allowed_tools=[{"mode": "auto", "tools": ["price"]}])
    client.interactions.create(model="local-llm", input="hi", tools=[only])
    assert sent_tools(upstream.requests[-1]) == ["prices__price"]


def test_a_failing_tool_a_slow_one_and_a_server_that_is_gone_are_results_the_model_reads(
    client, upstream, site
):
    upstream.replies = [
        Reply(tool_calls=[{"name": "prices__broken", "arguments": {}}]),
        Reply("no discount today"),
    ]
    gone = {"type": "mcp_server", "name": "gone", "url": "http://127.0.0.1:9/mcp"}
    done = client.interactions.create(
        model="local-llm", input="discount?", tools=[prices(site), gone]
    )
    assert done.status == "completed"
    [failed] = [s for s in done.steps if s.type == "mcp_server_tool_result"]
    assert failed.is_error is True
    assert "the discount service is down" in failed.result
    first, second = upstream.requests[-2:]
    assert "prices__broken" in sent_tools(first) and not any(
        name.startswith("gone__") for name in sent_tools(first)
    )
    assert "The MCP server 'gone' could not be reached" in first["messages"][0]["content"]
    assert json.loads(second["messages"][-1]["content"])["error"].endswith(
        "the discount service is down"
    )


def test_the_exchange_reaches_the_model_again_in_the_next_turn(client, upstream, site):
    upstream.replies = [
        Reply(tool_calls=[{"name": "prices__price", "arguments": {"plan": "pro"}}]),
        Reply("29"),
        Reply("and starter is cheaper"),
    ]
    first = client.interactions.create(model="local-llm", input="pro?", tools=[prices(site)])
    client.interactions.create(
        model="local-llm", input="cheaper?", previous_interaction_id=first.id
    )
    messages = upstream.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "user"]
    assert messages[1]["tool_calls"][0]["function"]["name"] == "prices__price"
    assert json.loads(messages[2]["content"]) == {"result": "29.00"}


@pytest.mark.parametrize(
    "tool, problem",
    [
        ({"name": "prices"}, "tools[0].url: an MCP server's http:// or https:// endpoint"),
        ({"name": "a__b", "url": "http://127.0.0.1:1/mcp"}, "tools[0].name: an MCP server"),
        ({"url": "http://127.0.0.1:1/mcp"}, "tools[0].name: an MCP server"),
        (
            {"name": "p", "url": "http://127.0.0.1:1/mcp", "allowed_tools": [{"mode": "any"}]},
            'tools[0].allowed_tools[0].mode: only "auto" is honoured',
        ),
        (
            {"name": "p", "url": "http://127.0.0.1:1/mcp", "defer_loading": True},
            "tools[0].defer_loading",
        ),
        (
            {"name": "p", "url": "http://10.1.2.3/mcp"},
            "tools[0].url: this platform calls MCP servers on 127.0.0.1, localhost only",
        ),
    ],
)
def test_bad_mcp_server_tools_are_400s_naming_the_field(stack, api_key, upstream, tool, problem):
    answer = httpx.post(
        f"{stack.url}/v1beta/interactions",
        headers={"x-goog-api-key": api_key},
        json={"model": "local-llm", "input": "hi", "tools": [{"type": "mcp_server", **tool}]},
    )
    assert answer.status_code == 400, answer.text
    assert problem in answer.json()["error"]["message"]


def test_two_servers_under_one_name_are_a_400(stack, api_key, upstream, site):
    answer = httpx.post(
        f"{stack.url}/v1beta/interactions",
        headers={"x-goog-api-key": api_key},
        json={"model": "local-llm", "input": "hi", "tools": [prices(site), prices(site)]},
    )
    assert answer.status_code == 400
    assert "tools[1].name: 'prices' names two MCP servers" in answer.json()["error"]["message"]


def test_an_agent_run_calls_mcp_tools_from_its_sandbox_through_the_allowlist(client, script):
    with McpSite(host=HOST_ALIAS) as reachable:
        tools = [
            {
                "type": "mcp_server",
                "name": "prices",
                "url": reachable.url,
                "headers": {"X-Api-Key": "k-123"},
                "allowed_tools": [{"tools": ["price", "broken"]}],
            },
            {"type": "mcp_server", "name": "other", "url": f"http://b.{HOST_ALIAS}:9/mcp"},
            # eva's browser, less a tool the request leaves out
            {"type": "computer_use", "excluded_predefined_functions": ["browser_screenshot"]},
        ]
        model = script(
            "mcp-agent",
            [
                {
                    "functionCalls": [
                        {"name": "prices__price", "arguments": {"plan": "enterprise"}},
                        {"name": "prices__broken", "arguments": {}},
                    ]
                },
                call("prices__slow", seconds=0),
                call("browser_screenshot", save_as="x.png"),
                {"text": "enterprise is 199"},
            ],
        )
        done = agent_run(client, model, tools=tools, environment=allow(HOST_ALIAS))
        seen = list(reachable.headers)
    assert done.status == "completed", done.errors
    mcp = [s for s in done.steps if s.type.startswith("mcp_server_tool")]
    assert [(s.type, s.name) for s in mcp] == [
        ("mcp_server_tool_call", "price"),
        ("mcp_server_tool_result", "price"),
        ("mcp_server_tool_call", "broken"),
        ("mcp_server_tool_result", "broken"),
    ]
    assert (mcp[1].result, mcp[1].is_error) == ("199.00", False)
    assert mcp[3].is_error is True and "the discount service is down" in mcp[3].result
    # slow was left out by allowed_tools, the screenshot by the request: neither was offered.
    missing = [result_of(s) for s in done.steps if s.type == "function_result"]
    assert missing == [
        {"ok": False, "error": "there is no tool named 'prices__slow'"},
        {"ok": False, "error": "there is no tool named 'browser_screenshot'"},
    ]
    assert {h.get("x-api-key") for h in seen} == {"k-123"}
    # The server off the allowlist was never reached: the proxy refused it.
    assert (f"b.{HOST_ALIAS}", "POST") in {(b["host"], b["method"]) for b in blocked(done)}
