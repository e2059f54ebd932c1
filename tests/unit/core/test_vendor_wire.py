"""How a conversation is written for each vendor, and how a turn's thoughts, text and calls come
back as steps: pure, no servers (the integration tests send the same through the real SDKs)."""

from __future__ import annotations

import asyncio
import base64

from tether.model_turn import relay
from tether.providers.anthropic import anthropic_messages, anthropic_options
from tether.providers.base import (
    FunctionCall,
    ModelRequest,
    TextDelta,
    ThoughtDelta,
    ThoughtSignature,
    Usage,
)
from tether.providers.gemini import gemini_config, gemini_contents

SIG = base64.b64encode(b"sealed").decode()
ASK = {"type": "user_input", "content": [{"type": "text", "text": "weather?"}]}
THOUGHT = {"type": "thought", "summary": [{"type": "text", "text": "check both"}], "signature": SIG}
CALLS = [
    {"type": "function_call", "id": "c1", "name": "weather", "arguments": {"city": "Oslo"}},
    {"type": "function_call", "id": "c2", "name": "weather", "arguments": {"city": "Rome"}},
]
RESULTS = [
    {"type": "function_result", "call_id": "c1", "result": {"temp": -3}},
    {"type": "function_result", "call_id": "c2", "result": "warm", "is_error": True},
]


class Playback:
    def __init__(self, outputs):
        self.outputs = outputs

    async def generate(self, request):
        for output in self.outputs:
            yield output


def relayed(outputs):
    events = []

    async def emit(event_type, **fields):
        events.append((event_type, fields))

    turn = asyncio.run(relay(Playback(outputs), ModelRequest("m", []), emit, index=3))
    return turn, events


def test_a_turn_streams_its_thought_then_its_text_and_keeps_the_calls_for_last():
    turn, events = relayed(
        [
            ThoughtDelta("check "),
            ThoughtDelta("both"),
            TextDelta("Looking"),
            TextDelta(" up."),
            FunctionCall("c1", "weather", {"city": "Oslo"}),
            ThoughtSignature(SIG),
            Usage(10, 4, thought_tokens=2),
        ]
    )
    assert turn.steps == [
        {"type": "thought", "summary": [{"type": "text", "text": "check both"}]},
        {"type": "model_output", "content": [{"type": "text", "text": "Looking up."}]},
        {"type": "thought", "signature": SIG},
    ]
    assert turn.text == "Looking up."
    assert [c.name for c in turn.calls] == ["weather"]
    assert turn.usage == Usage(10, 4, thought_tokens=2)
    assert [(kind, f["index"]) for kind, f in events if kind != "step.delta"] == [
        ("step.start", 3),
        ("step.stop", 3),
        ("step.start", 4),
        ("step.stop", 4),
        ("step.start", 5),
        ("step.stop", 5),
    ]
    deltas = [f["delta"] for kind, f in events if kind == "step.delta"]
    assert deltas[0] == {"type": "thought_summary", "content": {"type": "text", "text": "check "}}
    assert deltas[-1] == {"type": "thought_signature", "signature": SIG}


def test_a_signature_seals_the_thought_it_follows():
    turn, _ = relayed([ThoughtDelta("a"), ThoughtSignature(SIG), ThoughtDelta("b")])
    assert [s.get("signature") for s in turn.steps] == [SIG, None]


def test_gemini_gets_the_signature_back_on_the_first_call_after_the_thought():
    contents = gemini_contents([ASK, THOUGHT, *CALLS, *RESULTS])
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    thought, first, second = contents[1]["parts"]
    assert thought == {"text": "check both", "thought": True}
    assert first["function_call"] == {"id": "c1", "name": "weather", "args": {"city": "Oslo"}}
    assert first["thought_signature"] == b"sealed"
    assert "thought_signature" not in second
    assert contents[2]["parts"] == [
        {"function_response": {"id": "c1", "name": "weather", "response": {"temp": -3}}},
        {"function_response": {"id": "c2", "name": "weather", "response": {"error": "warm"}}},
    ]


def test_gemini_gets_a_trailing_signature_on_an_empty_text_part():
    answer = {"type": "model_output", "content": [{"type": "text", "text": "sunny"}]}
    contents = gemini_contents([ASK, answer, {"type": "thought", "signature": SIG}, ASK])
    assert contents[1]["parts"] == [{"text": "sunny"}, {"text": "", "thought_signature": b"sealed"}]


def test_gemini_media_goes_inline_or_by_file_uri():
    image = {"type": "image", "mime_type": "image/png", "data": base64.b64encode(b"PNG").decode()}
    video = {"type": "video", "mime_type": "video/mp4", "uri": "gs://b/clip.mp4"}
    [content] = gemini_contents([{"type": "user_input", "content": [image, video]}])
    assert content["parts"] == [
        {"inline_data": {"mime_type": "image/png", "data": b"PNG"}},
        {"file_data": {"file_uri": "gs://b/clip.mp4", "mime_type": "video/mp4"}},
    ]


def test_gemini_config_maps_every_setting():
    request = ModelRequest(
        "m",
        [],
        system_instruction="be brief",
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        generation_config={
            "temperature": 0.2,
            "top_k": 5,
            "seed": 1,
            "thinking_level": "low",
            "thinking_summaries": "auto",
            "tool_choice": {"allowed_tools": {"mode": "any", "tools": ["f"]}},
        },
        response_format={"type": "object"},
    )
    assert gemini_config(request) == {
        "temperature": 0.2,
        "top_k": 5,
        "seed": 1,
        "system_instruction": "be brief",
        "tools": [
            {
                "function_declarations": [
                    {"name": "f", "description": "", "parameters_json_schema": {"type": "object"}}
                ]
            }
        ],
        "tool_config": {
            "function_calling_config": {"mode": "ANY", "allowed_function_names": ["f"]}
        },
        "thinking_config": {"thinking_level": "LOW", "include_thoughts": True},
        "response_mime_type": "application/json",
        "response_json_schema": {"type": "object"},
    }


def test_anthropic_gets_thinking_back_before_its_tool_use_and_results_in_one_message():
    redacted = {"type": "thought", "signature": "opaque"}
    messages = anthropic_messages([ASK, THOUGHT, redacted, *CALLS, *RESULTS])
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"][:3] == [
        {"type": "thinking", "thinking": "check both", "signature": SIG},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "tool_use", "id": "c1", "name": "weather", "input": {"city": "Oslo"}},
    ]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": '{"temp": -3}'},
        {"type": "tool_result", "tool_use_id": "c2", "content": "warm", "is_error": True},
    ]


def test_anthropic_takes_images_and_documents_in_its_own_blocks():
    text_doc = base64.b64encode(b"plain words").decode()
    parts = [
        {"type": "image", "uri": "https://example.com/cat.jpg"},
        {"type": "document", "mime_type": "application/pdf", "data": "JVBERi0="},
        {"type": "document", "mime_type": "text/plain", "data": text_doc},
    ]
    [message] = anthropic_messages([{"type": "user_input", "content": parts}])
    assert message["content"] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
        },
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "plain words"},
        },
    ]


def test_anthropic_options_size_max_tokens_around_the_thinking_budget():
    options = anthropic_options(
        ModelRequest(
            "m",
            [],
            generation_config={"thinking_budget": 2048, "thinking_summaries": "none"},
            response_format={"type": "object"},
        )
    )
    assert options == {
        "thinking": {"type": "enabled", "budget_tokens": 2048, "display": "omitted"},
        "max_tokens": 8192 + 2048,
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
    }
    level = anthropic_options(
        ModelRequest("m", [], generation_config={"thinking_level": "minimal"})
    )
    assert level["thinking"] == {"type": "adaptive"}
    assert level["output_config"] == {"effort": "low"}
