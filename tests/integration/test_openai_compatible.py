"""A Model routes an id to any OpenAI-compatible server (OpenAI, vLLM, Ollama): tested against a
local server speaking Chat Completions, with the SDK as the client."""

from __future__ import annotations

from tether.dev.fakes.chat_completions import Reply


def test_text_comes_back_from_the_upstream_with_its_usage(client, upstream):
    interaction = client.interactions.create(
        model="local-llm", input="what is the answer?", system_instruction="be exact"
    )
    assert interaction.output_text == "the answer is forty two"
    assert interaction.usage.total_output_tokens == 5
    assert interaction.usage.total_input_tokens == 2 + 4  # the system and user messages' words
    [sent] = upstream.requests
    assert sent["model"] == "qwen-7b"
    assert sent["stream"] is True
    assert sent["messages"] == [
        {"role": "system", "content": "be exact"},
        {"role": "user", "content": "what is the answer?"},
    ]
    assert upstream.authorizations == ["Bearer sk-local-123"]


def test_an_alias_routes_ids_that_are_not_resource_names(client, upstream):
    assert client.interactions.create(model="Qwen/Qwen-7B", input="hi").output_text
    assert upstream.requests[-1]["model"] == "qwen-7b"


def test_deltas_stream_through_to_the_sdk(client, upstream):
    events = list(client.interactions.create(model="local-llm", input="go", stream=True))
    deltas = [e.delta.text for e in events if e.event_type == "step.delta"]
    # chunks that come while the last write is in flight go out joined: the text is whole
    assert deltas and all(deltas) and "".join(deltas) == "the answer is forty two"
    assert events[-1].event_type == "interaction.completed"


def test_the_upstream_sees_the_whole_conversation(client, upstream):
    first = client.interactions.create(model="local-llm", input="first question")
    client.interactions.create(
        model="local-llm", input="second question", previous_interaction_id=first.id
    )
    assert upstream.requests[-1]["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "the answer is forty two"},
        {"role": "user", "content": "second question"},
    ]


def test_a_tool_call_requires_action_and_its_result_continues_the_run(client, upstream):
    upstream.replies = [
        Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]),
        Reply("it is cold in Oslo"),
    ]
    weather = {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    asked = client.interactions.create(model="local-llm", input="weather?", tools=[weather])
    assert asked.status == "requires_action"
    [call] = asked.steps
    assert (call.type, call.name, call.arguments) == (
        "function_call",
        "get_weather",
        {"city": "Oslo"},
    )
    assert upstream.requests[0]["tools"][0]["function"]["name"] == "get_weather"

    answered = client.interactions.create(
        model="local-llm",
        previous_interaction_id=asked.id,
        tools=[weather],
        input=[
            {
                "type": "function_result",
                "call_id": call.id,
                "name": "get_weather",
                "result": {"temp_c": -3},
            }
        ],
    )
    assert answered.output_text == "it is cold in Oslo"
    messages = upstream.requests[1]["messages"]
    assert messages[1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Oslo"}',
    }
    assert messages[2] == {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": -3}'}


def test_an_upstream_error_fails_the_run_with_its_message(client, upstream):
    upstream.replies = [Reply(status=401, error="Incorrect API key provided")]
    failed = client.interactions.create(model="local-llm", input="hi")
    assert failed.status == "failed"
    [error] = failed.errors
    assert error.code == "auth_failed"
    assert "answered 401" in error.message
    assert "Incorrect API key provided" in error.message


def test_a_tool_exchange_earlier_in_the_chain_reaches_the_upstream_intact(client, upstream):
    upstream.replies = [
        Reply(tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}]),
        Reply("found it"),
        Reply("and more"),
    ]
    lookup = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    asked = client.interactions.create(model="local-llm", input="find x", tools=[lookup])
    answered = client.interactions.create(
        model="local-llm",
        previous_interaction_id=asked.id,
        input=[{"type": "function_result", "call_id": asked.steps[0].id, "result": "x=1"}],
    )
    client.interactions.create(
        model="local-llm", previous_interaction_id=answered.id, input="anything else?"
    )
    roles = [m["role"] for m in upstream.requests[-1]["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]
    assert upstream.requests[-1]["messages"][2]["tool_call_id"] == asked.steps[0].id


def test_a_response_format_reaches_the_upstream_as_a_json_schema(client, upstream):
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    client.interactions.create(model="local-llm", input="answer?", response_format=schema)
    assert upstream.requests[-1]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }
