"""Settings an openai-compatible model can act on reach the upstream Chat Completions server;
the ones it cannot are refused by name before anything is created."""

from __future__ import annotations

import httpx
import pytest

from tether.dev.fakes.chat_completions import ChatCompletionsServer, Reply

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4"
    + "DwABBAEAcCBlCwAAAABJRU5ErkJggg=="
)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def upstream(stack):
    with ChatCompletionsServer(replies=[Reply('{"ok": true}')]) as server:
        stack.cluster.apply(
            {
                "apiVersion": "tether.dev/v1alpha1",
                "kind": "Model",
                "metadata": {"name": "vision-llm", "namespace": "tenant-a"},
                "spec": {"provider": "openai-compatible", "endpoint": server.url},
            }
        )
        yield server


@pytest.fixture(scope="module")
def http(stack, api_key):
    with httpx.Client(base_url=stack.url, headers={"x-goog-api-key": api_key}, timeout=30) as c:
        yield c


def create(http, **fields) -> httpx.Response:
    return http.post("/v1/interactions", json={"model": "vision-llm", "input": "hi", **fields})


def test_tool_choice_reaches_the_upstream_as_chat_completions_tool_choice(http, upstream):
    response = create(http, tools=[WEATHER], generation_config={"tool_choice": "any"})
    assert response.status_code == 200, response.text
    assert upstream.requests[-1]["tool_choice"] == "required"
    one = {"allowed_tools": {"mode": "any", "tools": ["get_weather"]}}
    assert create(http, tools=[WEATHER], generation_config={"tool_choice": one}).status_code == 200
    assert upstream.requests[-1]["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_weather"},
    }


def test_json_mime_type_alone_asks_the_upstream_for_a_json_object(http, upstream):
    response = create(http, response_mime_type="application/json")
    assert response.status_code == 200, response.text
    assert upstream.requests[-1]["response_format"] == {"type": "json_object"}


def test_image_parts_reach_the_upstream_as_image_urls(http, upstream):
    image = {"type": "image", "mime_type": "image/png", "data": PNG}
    linked = {"type": "image", "uri": "https://example.com/cat.jpg"}
    response = create(http, input=[{"type": "text", "text": "what are these?"}, image, linked])
    assert response.status_code == 200, response.text
    assert upstream.requests[-1]["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what are these?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        }
    ]


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"generation_config": {"thinking_budget": 1024}}, "generation_config.thinking_budget"),
        (
            {"tools": [WEATHER, {"type": "url_context"}]},
            "tools[1]: the built-in tool 'url_context'",
        ),
        ({"input": [{"type": "audio", "mime_type": "audio/ogg", "data": "AAAA"}]}, "input: audio"),
        ({"input": [{"type": "video", "mime_type": "video/mp4", "data": "AAAA"}]}, "input: video"),
        ({"input": [{"type": "document", "uri": "https://example.com/a.pdf"}]}, "input: document"),
        ({"generation_config": {"tool_choice": "validated"}}, "generation_config.tool_choice"),
    ],
)
def test_what_the_upstream_cannot_take_is_a_400_naming_it_and_the_provider(
    http, upstream, fields, named
):
    sent = len(upstream.requests)
    response = create(http, **fields)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert message.startswith(named)
    assert "model 'vision-llm' (provider openai-compatible)" in message
    assert len(upstream.requests) == sent
