"""The local Gemini server, heard through the official google-genai client (and raw HTTP where
the client would hide the wire)."""

import base64
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from google import genai
from google.genai import errors, types
from google.genai.models import Models

from tether.dev.fakes.gemini import GeminiServer, Reply

MODEL = "gemini-3-pro-preview"
SIGNATURE = base64.b64encode(b"thought state").decode()
WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="weather",
            description="Today's weather in a city.",
            parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}},
        )
    ]
)
PARALLEL_CALLS = Reply(
    tool_calls=[
        {"name": "weather", "arguments": {"city": "Paris"}},
        {"name": "weather", "arguments": {"city": "Rome"}},
    ],
    signature=SIGNATURE,
)


@contextmanager
def serving(*replies: Reply) -> Iterator[tuple[GeminiServer, Models]]:
    """A server playing `replies`, and the official client's models pointed at it."""
    with GeminiServer(replies=[*replies] or [Reply("hello")]) as server:
        gemini = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.url))
        yield server, gemini.models


def post(server: GeminiServer, body: dict, key: str | None = "k") -> httpx.Response:
    url = f"{server.url}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    return httpx.post(url, json=body, headers={"x-goog-api-key": key} if key else {})


def follow_up(models: Models, keep_signature: bool) -> types.GenerateContentResponse:
    """Asks for the weather, runs both calls and sends their results back."""
    config = types.GenerateContentConfig(tools=[WEATHER])
    question = types.Content(role="user", parts=[types.Part.from_text(text="Paris or Rome?")])
    calls = models.generate_content(model=MODEL, contents=[question], config=config)
    turn = calls.candidates[0].content
    if not keep_signature:  # as a provider that rebuilds the parts from the calls alone would
        turn = types.Content(
            role="model", parts=[types.Part(function_call=c) for c in calls.function_calls]
        )
    results = types.Content(
        role="user",
        parts=[
            types.Part.from_function_response(name="weather", response={"sky": sky})
            for sky in ("sunny", "rainy")
        ],
    )
    return models.generate_content(model=MODEL, contents=[question, turn, results], config=config)


def test_generate_content_answers_with_the_reply_text():
    with serving(Reply("hello there")) as (server, models):
        response = models.generate_content(model=MODEL, contents="hi")
    assert response.text == "hello there"
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata.prompt_token_count == 1
    assert response.usage_metadata.candidates_token_count == 2
    assert server.headers[-1]["x-goog-api-key"] == "k"


def test_streamed_chunks_join_to_the_text():
    with serving(Reply("one two three")) as (_, models):
        chunks = list(models.generate_content_stream(model=MODEL, contents="hi"))
    assert [chunk.text for chunk in chunks] == ["one", " two", " three"]
    assert chunks[0].usage_metadata is None
    assert chunks[-1].usage_metadata.total_token_count == 4


def test_system_instruction_and_history_reach_the_server():
    history = [
        types.Content(role="user", parts=[types.Part.from_text(text="I am Ada")]),
        types.Content(role="model", parts=[types.Part.from_text(text="Hello Ada")]),
        types.Content(role="user", parts=[types.Part.from_text(text="Who am I?")]),
    ]
    config = types.GenerateContentConfig(system_instruction="Answer briefly.")
    with serving() as (server, models):
        response = models.generate_content(model=MODEL, contents=history, config=config)
    sent = server.requests[-1]
    assert sent["systemInstruction"]["parts"] == [{"text": "Answer briefly."}]
    assert [c["role"] for c in sent["contents"]] == ["user", "model", "user"]
    assert sent["contents"][1]["parts"] == [{"text": "Hello Ada"}]
    assert response.usage_metadata.prompt_token_count == 2 + 3 + 2 + 3


def test_parallel_function_calls_come_back_as_function_calls():
    config = types.GenerateContentConfig(tools=[WEATHER])
    with serving(PARALLEL_CALLS) as (_, models):
        response = models.generate_content(model=MODEL, contents="Paris or Rome?", config=config)
    calls = response.function_calls
    assert [(c.name, c.args) for c in calls] == [
        ("weather", {"city": "Paris"}),
        ("weather", {"city": "Rome"}),
    ]
    assert all(c.id for c in calls)
    # Gemini signs only the first of parallel calls.
    signatures = [part.thought_signature for part in response.candidates[0].content.parts]
    assert signatures == [b"thought state", None]


def test_a_follow_up_with_the_signed_calls_and_their_results_is_accepted():
    with serving(PARALLEL_CALLS, Reply("Paris is sunny.")) as (server, models):
        assert follow_up(models, keep_signature=True).text == "Paris is sunny."
    results = server.requests[-1]["contents"][2]["parts"]
    assert [part["functionResponse"]["name"] for part in results] == ["weather", "weather"]


def test_a_follow_up_that_drops_the_thought_signature_is_refused():
    with serving(PARALLEL_CALLS) as (_, models), pytest.raises(errors.ClientError) as refused:
        follow_up(models, keep_signature=False)
    assert refused.value.code == 400
    assert "Function call is missing a thought_signature" in refused.value.message


def test_thoughts_show_only_when_asked_for_but_are_always_counted():
    show = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True))
    with serving(Reply("42", thinking="six times seven")) as (_, models):
        shown = models.generate_content(model=MODEL, contents="?", config=show)
        hidden = models.generate_content(model=MODEL, contents="?")
    thought, answer = shown.candidates[0].content.parts
    assert (thought.thought, thought.text, answer.text) == (True, "six times seven", "42")
    assert [part.text for part in hidden.candidates[0].content.parts] == ["42"]
    assert shown.usage_metadata.thoughts_token_count == 3
    assert hidden.usage_metadata.thoughts_token_count == 3


def test_inline_image_bytes_arrive_as_inline_data():
    png = b"\x89PNG\r\n\x1a\n"
    image = types.Part.from_bytes(data=png, mime_type="image/png")
    with serving() as (server, models):
        models.generate_content(model=MODEL, contents=["What is this?", image])
    inline = server.requests[-1]["contents"][0]["parts"][1]["inlineData"]
    assert base64.b64decode(inline["data"]) == png
    # The client writes this one key in snake_case; proto3 JSON accepts both spellings.
    assert inline["mime_type"] == "image/png"


def test_an_unknown_generation_config_field_is_refused_naming_it():
    body = {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"foo": 1}}
    with serving() as (server, _):
        response = post(server, body)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": 400,
        "message": "Invalid JSON payload received. Unknown name \"foo\" at 'generation_config': "
        "Cannot find field.",
        "status": "INVALID_ARGUMENT",
    }


def test_a_refused_request_is_recorded_but_leaves_the_next_reply_in_place():
    with serving(Reply("first"), Reply("second")) as (server, models):
        assert post(server, {"contents": []}).status_code == 400
        response = models.generate_content(model=MODEL, contents="hi")
    assert server.requests[0] == {"contents": []}
    assert response.text == "first"


def test_a_rate_limited_reply_carries_retry_after():
    limited = Reply(status=429, error="Quota exceeded.", retry_after=7)
    with serving(limited) as (server, _):
        response = post(server, {"contents": [{"parts": [{"text": "hi"}]}]})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    error = response.json()["error"]
    assert (error["status"], error["message"]) == ("RESOURCE_EXHAUSTED", "Quota exceeded.")


def test_the_api_key_is_required():
    with serving() as (server, _):
        response = post(server, {"contents": [{"parts": [{"text": "hi"}]}]}, key=None)
    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"
