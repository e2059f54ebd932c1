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
    "field, value", [("thinking_level", "high"), ("thinking_summaries", "auto")]
)
def test_thinking_settings_are_refused_by_every_provider(field, value):
    for provider in ("echo", "openai-compatible"):
        [message] = refusals(provider, "m", spec(generation_config={field: value}))
        assert (
            message
            == f"generation_config.{field} is not supported by model 'm' (provider {provider})"
        )


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
    assert refusals("openai-compatible", "m", audio) == [
        "input: audio content is not supported by model 'm' (provider openai-compatible)"
    ]
    document = spec(input={"type": "document", "uri": "https://example.com/a.pdf"})
    assert len(refusals("openai-compatible", "m", document)) == 1


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
