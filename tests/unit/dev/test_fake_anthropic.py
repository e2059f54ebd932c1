"""The local Anthropic server against the official client: it answers in the Messages API's wire
format, streamed or not, and refuses what Anthropic refuses, in Anthropic's words."""

from __future__ import annotations

import base64

import anthropic
import httpx
import pytest

from tether.dev.fakes.anthropic import AnthropicServer, Reply

MODEL = "claude-sonnet-5"
ASK = {"role": "user", "content": "what is the weather in Oslo and Rome?"}
WEATHER = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
THINKING = {"type": "enabled", "budget_tokens": 1024}
OSLO = {"name": "get_weather", "arguments": {"city": "Oslo"}}
ROME = {"name": "get_weather", "arguments": {"city": "Rome"}}


def client(server: AnthropicServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0)


def results(asked: anthropic.types.Message) -> dict:
    calls = [block for block in asked.content if block.type == "tool_use"]
    answers = [{"type": "tool_result", "tool_use_id": c.id, "content": "cold"} for c in calls]
    return {"role": "user", "content": answers}


def test_a_message_comes_back_as_text_with_its_usage():
    with AnthropicServer(replies=[Reply("the answer is forty two")]) as server:
        message = client(server).messages.create(model=MODEL, max_tokens=64, messages=[ASK])
    assert [block.text for block in message.content] == ["the answer is forty two"]
    assert (message.model, message.stop_reason) == (MODEL, "end_turn")
    assert (message.usage.input_tokens, message.usage.output_tokens) == (8, 5)
    assert server.api_keys == ["k"]


def test_streamed_text_deltas_join_to_the_text():
    reply = Reply("the answer is\nforty two", cached_tokens=3)
    with (
        AnthropicServer(replies=[reply]) as server,
        client(server).messages.stream(model=MODEL, max_tokens=64, messages=[ASK]) as stream,
    ):
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert deltas == ["the", " answer", " is", "\nforty", " two"]
    assert final.content[0].text == "the answer is\nforty two"
    assert (final.usage.output_tokens, final.usage.cache_read_input_tokens) == (5, 3)
    assert server.requests[0]["stream"] is True


def test_the_system_prompt_and_earlier_turns_reach_the_server():
    turns = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": [{"type": "text", "text": "first answer"}]},
        {"role": "user", "content": "second question"},
    ]
    with AnthropicServer() as server:
        message = client(server).messages.create(
            model=MODEL, max_tokens=64, system="be exact", messages=turns
        )
    assert server.requests[0]["system"] == "be exact"
    assert server.requests[0]["messages"] == turns
    assert message.usage.input_tokens == 2 + 2 + 2 + 2


def test_parallel_tool_calls_come_back_as_tool_use_blocks_with_parsed_inputs():
    with (
        AnthropicServer(replies=[Reply(tool_calls=[OSLO, ROME])]) as server,
        client(server).messages.stream(
            model=MODEL, max_tokens=64, tools=[WEATHER], messages=[ASK]
        ) as stream,
    ):
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [(b.type, b.name, b.input) for b in final.content] == [
        ("tool_use", "get_weather", {"city": "Oslo"}),
        ("tool_use", "get_weather", {"city": "Rome"}),
    ]
    assert len({block.id for block in final.content}) == 2


def test_tool_results_are_accepted_and_a_missing_one_is_refused():
    with AnthropicServer(replies=[Reply(tool_calls=[OSLO, ROME]), Reply("cold")]) as server:
        api = client(server)
        asked = api.messages.create(model=MODEL, max_tokens=64, tools=[WEATHER], messages=[ASK])
        turns = [ASK, {"role": "assistant", "content": asked.content}]
        answer = api.messages.create(
            model=MODEL, max_tokens=64, tools=[WEATHER], messages=[*turns, results(asked)]
        )
        one_answered = {"role": "user", "content": results(asked)["content"][:1]}
        unanswered = "messages.1: `tool_use` ids were found without `tool_result` blocks"
        with pytest.raises(anthropic.BadRequestError, match=unanswered) as refused:
            api.messages.create(
                model=MODEL, max_tokens=64, tools=[WEATHER], messages=[*turns, one_answered]
            )
    assert answer.content[0].text == "cold"
    assert asked.content[1].id in refused.value.message


def test_thinking_comes_back_signed_and_must_be_carried_back_before_tool_use():
    thought = Reply(thinking="Oslo is cold in winter", signature="sig-1", tool_calls=[OSLO])
    with AnthropicServer(replies=[thought, Reply("cold")]) as server:
        api = client(server)
        with api.messages.stream(
            model=MODEL, max_tokens=2048, thinking=THINKING, tools=[WEATHER], messages=[ASK]
        ) as stream:
            asked = stream.get_final_message()

        def follow_up(content: list) -> anthropic.types.Message:
            turns = [ASK, {"role": "assistant", "content": content}, results(asked)]
            return api.messages.create(
                model=MODEL, max_tokens=2048, thinking=THINKING, tools=[WEATHER], messages=turns
            )

        thinking, call = asked.content
        assert follow_up(asked.content).content[0].text == "cold"
        dropped = "Expected `thinking` or `redacted_thinking`, but found `tool_use`"
        with pytest.raises(anthropic.BadRequestError, match=dropped):
            follow_up([call])
        forged = {"type": "thinking", "thinking": thinking.thinking, "signature": "forged"}
        with pytest.raises(anthropic.BadRequestError, match="Invalid `signature` in `thinking`"):
            follow_up([forged, call])
    assert (thinking.type, thinking.thinking, thinking.signature) == (
        "thinking",
        "Oslo is cold in winter",
        "sig-1",
    )


def test_image_and_pdf_blocks_arrive_as_sent():
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(16)).decode()
    pdf = base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
        },
        {"type": "text", "text": "what are these?"},
    ]
    with AnthropicServer() as server:
        client(server).messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": content}]
        )
    assert server.requests[0]["messages"][0]["content"] == content


def image(data: str) -> dict:
    source = {"type": "base64", "media_type": "image/png", "data": data}
    return {"role": "user", "content": [{"type": "image", "source": source}]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"foo": 1}, "foo: Extra inputs are not permitted"),
        ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        (
            {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
            "messages.0.content.0.type: Field required",
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 512}},
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
        ),
        (
            {"messages": [image("not base64!")]},
            "messages.0.content.0.image.source.base64: invalid base64 data",
        ),
    ],
)
def test_a_request_outside_the_schema_is_refused_naming_the_field(change, message):
    body = {"model": MODEL, "max_tokens": 64, "messages": [ASK], **change}
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    with AnthropicServer() as server:
        response = httpx.post(f"{server.url}/v1/messages", json=body, headers=headers)
    assert response.status_code == 400
    error = {"type": "invalid_request_error", "message": message}
    assert response.json() == {"type": "error", "error": error}


def test_a_rate_limit_reaches_the_client_with_its_retry_after():
    limited = Reply(status=429, error="slow down", retry_after=3)
    with (
        AnthropicServer(replies=[limited]) as server,
        pytest.raises(anthropic.RateLimitError, match="slow down") as refused,
    ):
        client(server).messages.create(model=MODEL, max_tokens=64, messages=[ASK])
    assert refused.value.response.headers["Retry-After"] == "3"
    assert refused.value.body["error"]["type"] == "rate_limit_error"


def test_the_api_key_is_required():
    body = {"model": MODEL, "max_tokens": 64, "messages": [ASK]}
    with AnthropicServer() as server:
        response = httpx.post(
            f"{server.url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}
        )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert server.api_keys == [None]
