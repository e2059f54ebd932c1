"""The offline providers and the conversation they see: pure, no cluster needed."""

from __future__ import annotations

import asyncio

import pytest

from tether.api.model import ScriptedResponse
from tether.conversation import history, input_steps, model_turns
from tether.providers import ProviderError
from tether.providers.base import FunctionCall, ModelRequest, TextDelta, Usage
from tether.providers.echo import EchoProvider
from tether.providers.scripted import ScriptedProvider


def run(provider, steps):
    async def collect():
        return [o async for o in provider.generate(ModelRequest(model="m", steps=steps))]

    return asyncio.run(collect())


def test_every_input_shape_becomes_steps():
    text = {"type": "text", "text": "hi"}
    assert input_steps("hi") == [{"type": "user_input", "content": [text]}]
    assert input_steps(text) == [{"type": "user_input", "content": [text]}]
    assert input_steps([text, text]) == [{"type": "user_input", "content": [text, text]}]
    result = {"type": "function_result", "call_id": "c", "result": 1}
    assert input_steps([result]) == [result]


def test_history_is_each_turns_input_then_output_oldest_first():
    out = {"type": "model_output", "content": [{"type": "text", "text": "a1"}]}
    steps = history([("q1", [out]), ("q2", [])])
    assert [s["type"] for s in steps] == ["user_input", "model_output", "user_input"]
    assert model_turns(steps) == 1


def test_echo_streams_one_word_per_delta_and_counts_words():
    outputs = run(EchoProvider(), input_steps("hello   tether  world"))
    assert outputs[:3] == [TextDelta("hello"), TextDelta(" tether"), TextDelta(" world")]
    assert outputs[3] == Usage(input_tokens=3, output_tokens=3)


def test_echo_history_joins_the_earlier_user_turns():
    out = {"type": "model_output", "content": [{"type": "text", "text": "x"}]}
    steps = history([("one", [out]), ("two", [out]), ("/history", [])])
    assert "".join(o.text for o in run(EchoProvider(), steps) if isinstance(o, TextDelta)) == (
        "one | two"
    )


def test_scripted_replays_the_nth_response_for_the_nth_answer():
    provider = ScriptedProvider(
        [
            ScriptedResponse(function_calls=[{"name": "f", "arguments": {"a": 1}}]),
            ScriptedResponse(text="done"),
        ]
    )
    first = run(provider, input_steps("go"))
    assert first[0] == FunctionCall(id="call-0-0", name="f", arguments={"a": 1})
    call = {"type": "function_call", "id": "call-0-0", "name": "f", "arguments": {"a": 1}}
    result = {"type": "function_result", "call_id": "call-0-0", "result": "ok"}
    second = run(provider, [*input_steps("go"), call, result])
    assert second[0] == TextDelta("done")
    with pytest.raises(ProviderError, match="has 2 responses and this is answer #3"):
        run(provider, [*input_steps("go"), call, result, {"type": "model_output", "content": []}])


def test_built_in_tool_steps_read_back_as_the_models_own_function_calls():
    from tether.conversation import as_model_steps

    timeline = [
        {
            "type": "code_execution_call",
            "id": "c1",
            "arguments": {"language": "python", "code": "1"},
        },
        {"type": "code_execution_result", "call_id": "c1", "result": "1\n"},
        {"type": "url_context_call", "id": "c2", "arguments": {"urls": ["http://x/a"]}},
        {"type": "url_context_result", "call_id": "c2", "result": [{"url": "http://x/a"}]},
    ]
    assert [(s["type"], s.get("name")) for s in as_model_steps(timeline)] == [
        ("function_call", "run_code"),
        ("function_result", None),
        ("function_call", "fetch_url"),
        ("function_result", None),
    ]
    assert model_turns(as_model_steps(timeline)) == 2
