"""What each provider honours; everything else in a model interaction is refused by name."""

from __future__ import annotations

import pytest

from tether.api.interaction import InteractionSpec
from tether.providers.base import ModelRequest
from tether.providers.capabilities import refusals
from tether.providers.openai_compatible import chat_messages, chat_tool_choice

IMAGE = {"type": "image", "mime_type": "image/png", "data": "iVBORw0KGgo="}


def spec(**fields) -> InteractionSpec:
    return InteractionSpec.from_wire({"model": "m", "input": "hi", **fields})


def test_a_plain_model_interaction_is_honoured_everywhere():
    for provider in ("echo", "scripted", "openai-compatible"):
        assert refusals(provider, "m", spec(generation_config={"temperature": 0.5})) == []


@pytest.mark.parametrize(
    "tool", ["google_search", "file_search", "url_context", "code_execution", "computer_use"]
)
def test_a_built_in_tool_on_a_model_interaction_is_refused_naming_it(tool):
    [message] = refusals("openai-compatible", "gpt", spec(tools=[{"type": tool}]))
    assert message.startswith(f"tools[0]: the built-in tool {tool!r} is not available to model")
    assert "(provider openai-compatible)" in message


def test_function_tools_are_honoured():
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}}]
    assert refusals("openai-compatible", "gpt", spec(tools=tools)) == []


@pytest.mark.parametrize(
    "provider, field, value",
    [
        ("echo", "thinking_level", "high"),
        ("scripted", "thinking_budget", 2048),
        ("openai-compatible", "thinking_summaries", "auto"),
        ("openai-compatible", "top_k", 40),
        ("anthropic", "seed", 7),
        ("anthropic", "temperature", 0.2),
    ],
)
def test_generation_settings_a_provider_cannot_act_on_are_refused_naming_them(
    provider, field, value
):
    [message] = refusals(provider, "m", spec(generation_config={field: value}))
    assert (
        message == f"generation_config.{field} is not supported by model 'm' (provider {provider})"
    )


def test_every_setting_the_vendors_take_is_honoured():
    config = {
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "max_output_tokens": 4096,
        "stop_sequences": ["END"],
        "thinking_budget": 2048,
        "thinking_summaries": "auto",
    }
    assert refusals("gemini", "m", spec(generation_config={**config, "seed": 7})) == []
    for sampling in ("temperature", "top_p", "top_k"):  # Claude samples as it sees fit
        assert refusals("anthropic", "m", spec(generation_config=config)) != []
        del config[sampling]
    assert refusals("anthropic", "m", spec(generation_config=config)) == []


def test_the_vendors_limits_on_thinking_are_named():
    [level] = refusals("gemini", "g", spec(generation_config={"thinking_level": "xhigh"}))
    assert level.startswith("generation_config.thinking_level 'xhigh' is not supported")
    assert level.endswith("use one of high, low, medium, minimal")
    anthropic = refusals(
        "anthropic",
        "c",
        spec(generation_config={"thinking_budget": 512, "max_output_tokens": 500}),
    )
    assert anthropic == [
        "generation_config.thinking_budget must be at least 1024 (or 0, no thinking) for model "
        "'c' (provider anthropic)",
        "generation_config.max_output_tokens (500) must exceed thinking_budget (512) for model "
        "'c' (provider anthropic): thinking counts toward it",
    ]


def test_tool_choice_is_refused_by_echo_and_honoured_by_chat_completions():
    assert refusals("echo", "echo", spec(generation_config={"tool_choice": "any"})) == [
        "generation_config.tool_choice is not supported by model 'echo' (provider echo)"
    ]
    assert refusals("openai-compatible", "m", spec(generation_config={"tool_choice": "any"})) == []
    [message] = refusals(
        "openai-compatible", "m", spec(generation_config={"tool_choice": "validated"})
    )
    assert message.startswith("generation_config.tool_choice 'validated' is not supported")


def test_tool_choice_maps_to_chat_completions():
    assert chat_tool_choice("auto") == "auto"
    assert chat_tool_choice("none") == "none"
    assert chat_tool_choice("any") == "required"
    assert chat_tool_choice({"allowed_tools": {"mode": "any", "tools": ["get_weather"]}}) == {
        "type": "function",
        "function": {"name": "get_weather"},
    }
    assert chat_tool_choice("validated") is None
    assert chat_tool_choice({"allowed_tools": {"mode": "auto", "tools": ["a", "b"]}}) is None


def test_json_mime_type_alone_needs_a_provider_with_a_json_mode():
    assert refusals("openai-compatible", "m", spec(response_mime_type="application/json")) == []
    assert refusals("echo", "echo", spec(response_mime_type="application/json")) == [
        "response_mime_type 'application/json' is not supported by model 'echo' (provider echo)"
    ]
    [message] = refusals("openai-compatible", "m", spec(response_mime_type="text/x-yaml"))
    assert message.startswith("response_mime_type 'text/x-yaml' is not supported")


def test_a_response_format_is_refused_by_the_offline_models():
    schema = {"type": "object"}
    assert refusals("openai-compatible", "m", spec(response_format=schema)) == []
    assert refusals("scripted", "s", spec(response_format=schema)) == [
        "response_format is not supported by model 's' (provider scripted)"
    ]


def test_media_parts_are_refused_unless_the_provider_takes_them():
    images = spec(input=[{"type": "text", "text": "what is this?"}, IMAGE])
    assert refusals("openai-compatible", "m", images) == []
    assert refusals("echo", "echo", images) == [
        "input: image content is not supported by model 'echo' (provider echo)"
    ]
    audio = spec(input=[{"type": "audio", "mime_type": "audio/wav", "data": "AAAA"}])
    assert refusals("openai-compatible", "m", audio) == []
    assert refusals("anthropic", "c", audio) == [
        "input: audio content is not supported by model 'c' (provider anthropic)"
    ]
    document = spec(input={"type": "document", "uri": "https://example.com/a.pdf"})
    assert refusals("openai-compatible", "m", document) == [
        "input: document content by uri is not supported by model 'm' (provider "
        "openai-compatible); send it as data"
    ]
    assert refusals("anthropic", "m", document) == []
    video = spec(input={"type": "video", "uri": "gs://bucket/clip.mp4"})
    assert refusals("gemini", "m", video) == [
        "input: video content by uri needs its mime_type for model 'm' (provider gemini)"
    ]
    bmp = spec(input={"type": "image", "mime_type": "image/bmp", "data": "Qk0="})
    assert refusals("anthropic", "c", bmp) == [
        "input: image content of type 'image/bmp' is not supported by model 'c' (provider "
        "anthropic); it takes image/gif, image/jpeg, image/png, image/webp"
    ]


def test_an_image_with_nothing_to_show_is_refused():
    assert refusals("openai-compatible", "m", spec(input=[{"type": "image"}])) == [
        "input: image content needs a uri, or data with its mime_type"
    ]


def test_images_reach_chat_completions_as_image_url_parts():
    request = ModelRequest(
        model="m",
        steps=[
            {
                "type": "user_input",
                "content": [
                    {"type": "text", "text": "compare"},
                    IMAGE,
                    {"type": "image", "uri": "https://example.com/cat.jpg"},
                ],
            }
        ],
    )
    assert chat_messages(request) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "compare"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        }
    ]


def test_claude_refuses_a_forced_tool_while_it_thinks():
    thinking = {"thinking_level": "low", "tool_choice": "any"}
    assert refusals("anthropic", "c", spec(generation_config=thinking)) == [
        "generation_config.tool_choice 'any' cannot be used while model 'c' (provider "
        "anthropic) thinks"
    ]
    relaxed = {"thinking_budget": 2048, "tool_choice": "auto"}
    assert refusals("anthropic", "c", spec(generation_config=relaxed)) == []
