"""Every vendor behind the one endpoint: the google-genai SDK talks to the gateway, and the
gateway to local servers speaking OpenAI's Chat Completions, the Gemini API and Anthropic's
Messages API, each through the vendor's own client. The local servers refuse what their vendor
refuses (unknown fields, unanswered tool calls, dropped thought signatures), so a wrong wire
fails here."""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.test_agent_runs import agent_run
from tests.integration.test_sdk_interactions import api_error, wait_until_ended
from tether.dev.control_plane import free_port
from tether.dev.fakes.anthropic import AnthropicServer
from tether.dev.fakes.chat_completions import ChatCompletionsServer
from tether.dev.fakes.gemini import GeminiServer
from tether.dev.fakes.serving import LocalServer, Reply

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
PDF = base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()
SIGNATURE = base64.b64encode(b"signed by the vendor").decode()
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
SERVERS = {"openai": ChatCompletionsServer, "gemini": GeminiServer, "anthropic": AnthropicServer}
PROVIDERS = {"openai": "openai-compatible", "gemini": "gemini", "anthropic": "anthropic"}


@dataclass
class Vendor:
    name: str
    model: str
    """The Model id clients send."""
    server: LocalServer

    def request(self, index: int = -1) -> dict[str, Any]:
        """A request as the vendor received it (Gemini's keys all in camelCase)."""
        body = self.server.requests[index]
        return camel(body) if self.name == "gemini" else body

    def roles(self, index: int = -1) -> list[str]:
        body = self.request(index)
        turns = body["contents"] if self.name == "gemini" else body["messages"]
        return [turn["role"] for turn in turns]

    def api_key(self, index: int = -1) -> str | None:
        headers = {k.lower(): v for k, v in self.server.headers[index].items()}
        given = headers.get("x-goog-api-key") or headers.get("x-api-key")
        return given or headers.get("authorization", "").removeprefix("Bearer ")


def camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {re.sub(r"_(\w)", lambda m: m[1].upper(), k): camel(v) for k, v in value.items()}
    return [camel(v) for v in value] if isinstance(value, list) else value


def install(stack, name: str, provider: str, endpoint: str, **spec: Any) -> None:
    stack.cluster.apply(
        {
            "apiVersion": "tether.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": name, "namespace": "tenant-a"},
            "spec": {
                "provider": provider,
                "endpoint": endpoint,
                "upstreamModel": "flagship-1",
                "credentials": {"secretRef": {"name": "vendor-key", "key": "token"}},
                "retries": {"attempts": 3, "maxSeconds": 20},
                **spec,
            },
        }
    )


@pytest.fixture(params=list(SERVERS))
def vendor(request, stack):
    """A local vendor server behind the Model `<vendor>-model` of tenant-a."""
    stack.cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "vendor-key", "namespace": "tenant-a"},
            "stringData": {"token": "vendor-secret-123"},
        }
    )
    with SERVERS[request.param](replies=[Reply("the answer is forty two")]) as server:
        name = f"{request.param}-model"
        install(stack, name, PROVIDERS[request.param], server.url)
        yield Vendor(request.param, name, server)


def test_text_system_instruction_and_usage_come_back_from_the_vendor(client, vendor):
    done = client.interactions.create(
        model=vendor.model, input="what is the answer?", system_instruction="be exact"
    )
    assert done.status == "completed", done.errors
    assert done.output_text == "the answer is forty two"
    assert done.usage.total_output_tokens == 5
    assert done.usage.total_input_tokens == 2 + 4  # the system and user words
    assert done.answered_by == vendor.model
    sent = vendor.request()
    assert sent.get("model", "flagship-1") == "flagship-1"
    system = {
        "openai": lambda: sent["messages"][0],
        "gemini": lambda: sent["systemInstruction"]["parts"][0]["text"],
        "anthropic": lambda: sent["system"],
    }[vendor.name]()
    assert "be exact" in str(system)
    assert vendor.api_key() == "vendor-secret-123"


def test_text_streams_from_the_vendor_as_deltas(client, vendor):
    events = list(client.interactions.create(model=vendor.model, input="go", stream=True))
    deltas = [e.delta.text for e in events if e.event_type == "step.delta"]
    # chunks that come while the last write is in flight go out joined: the text is whole
    assert deltas and all(deltas) and "".join(deltas) == "the answer is forty two"
    assert events[-1].event_type == "interaction.completed"


def test_the_vendor_sees_the_whole_conversation(client, vendor):
    first = client.interactions.create(model=vendor.model, input="first question")
    client.interactions.create(
        model=vendor.model, input="second question", previous_interaction_id=first.id
    )
    assistant = "model" if vendor.name == "gemini" else "assistant"
    assert vendor.roles() == ["user", assistant, "user"]
    assert "first question" in str(vendor.request()) and "forty two" in str(vendor.request())


def test_parallel_calls_require_action_and_their_results_reach_the_vendor(client, vendor):
    vendor.server.replies = [
        Reply(
            tool_calls=[
                {"name": "get_weather", "arguments": {"city": "Oslo"}},
                {"name": "get_weather", "arguments": {"city": "Rome"}},
            ]
        ),
        Reply("cold in Oslo, warm in Rome"),
    ]
    asked = client.interactions.create(model=vendor.model, input="weather?", tools=[WEATHER])
    assert asked.status == "requires_action"
    calls = [s for s in asked.steps if s.type == "function_call"]
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Rome"}),
    ]
    answered = client.interactions.create(
        model=vendor.model,
        previous_interaction_id=asked.id,
        tools=[WEATHER],
        input=[
            {"type": "function_result", "call_id": calls[0].id, "result": {"temp_c": -3}},
            {"type": "function_result", "call_id": calls[1].id, "result": {"temp_c": 24}},
        ],
    )
    assert answered.status == "completed", answered.errors
    assert answered.output_text == "cold in Oslo, warm in Rome"
    sent = vendor.request()
    results = {
        "openai": lambda: [m for m in sent["messages"] if m["role"] == "tool"],
        "gemini": lambda: [p["functionResponse"] for p in sent["contents"][-1]["parts"]],
        "anthropic": lambda: sent["messages"][-1]["content"],
    }[vendor.name]()
    assert len(results) == 2
    assert "-3" in str(results[0]) and "24" in str(results[1])


def test_images_and_documents_reach_the_vendor_in_its_own_form(client, vendor):
    done = client.interactions.create(
        model=vendor.model,
        input=[
            {"type": "text", "text": "what are these?"},
            {"type": "image", "mime_type": "image/png", "data": PNG},
            {"type": "document", "mime_type": "application/pdf", "data": PDF},
        ],
    )
    assert done.status == "completed", done.errors
    sent = vendor.request()
    if vendor.name == "openai":
        parts = sent["messages"][-1]["content"]
        assert parts[1] == {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{PNG}"},
        }
        assert parts[2]["file"]["file_data"] == f"data:application/pdf;base64,{PDF}"
    elif vendor.name == "gemini":
        parts = sent["contents"][-1]["parts"]
        assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PNG}}
        assert parts[2] == {"inlineData": {"mimeType": "application/pdf", "data": PDF}}
    else:
        blocks = sent["messages"][-1]["content"]
        assert blocks[1]["source"] == {"type": "base64", "media_type": "image/png", "data": PNG}
        assert blocks[2]["type"] == "document"
        assert blocks[2]["source"]["data"] == PDF


SAMPLING = {"temperature": 0.3, "top_p": 0.9}  # Claude samples as it sees fit: refused there


def test_generation_settings_reach_the_vendor_under_its_own_names(client, vendor):
    config = {"max_output_tokens": 100, "stop_sequences": ["END"]}
    if vendor.name != "anthropic":
        config.update(SAMPLING)
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    done = client.interactions.create(
        model=vendor.model,
        input="answer in JSON",
        generation_config=config,
        response_format=schema,
    )
    assert done.status == "completed", done.errors
    sent = vendor.request()
    if vendor.name == "openai":
        assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.3, 0.9, 100)
        assert sent["stop"] == ["END"]
        assert sent["response_format"]["json_schema"]["schema"] == schema
    elif vendor.name == "gemini":
        given = sent["generationConfig"]
        assert (given["temperature"], given["topP"], given["maxOutputTokens"]) == (0.3, 0.9, 100)
        assert given["stopSequences"] == ["END"]
        assert given["responseJsonSchema"] == schema
        assert given["responseMimeType"] == "application/json"
    else:
        assert (sent["max_tokens"], sent["stop_sequences"]) == (100, ["END"])
        assert sent["output_config"]["format"] == {"type": "json_schema", "schema": schema}
        error = api_error(
            lambda: client.interactions.create(
                model=vendor.model, input="hi", generation_config=SAMPLING
            )
        )
        assert error.status_code == 400
        assert (
            "generation_config.temperature is not supported by model 'anthropic-model'"
            in (error.body["error"]["message"])
        )


THINKING = {
    "openai": {"thinking_level": "low"},
    "gemini": {"thinking_level": "low", "thinking_summaries": "auto"},
    "anthropic": {"thinking_budget": 2048, "thinking_summaries": "auto"},
}


def test_thoughts_become_steps_and_go_back_to_the_vendor_with_their_signature(client, vendor):
    vendor.server.replies = [
        Reply(
            thinking="Oslo is north",
            signature=SIGNATURE,
            tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}],
        ),
        Reply("it is cold"),
    ]
    config = THINKING[vendor.name]
    asked = client.interactions.create(
        model=vendor.model, input="weather?", tools=[WEATHER], generation_config=config
    )
    assert asked.status == "requires_action", asked.errors
    thought, call = asked.steps
    assert thought.type == "thought"
    assert thought.summary[0].text == "Oslo is north"
    # Chat Completions has no signatures: vLLM-style reasoning arrives unsigned
    assert thought.signature == (None if vendor.name == "openai" else SIGNATURE)
    answered = client.interactions.create(
        model=vendor.model,
        previous_interaction_id=asked.id,
        tools=[WEATHER],
        generation_config=config,
        input=[{"type": "function_result", "call_id": call.id, "result": "cold"}],
    )
    # Gemini and Claude refuse a tool-use turn that comes back without its signed thought
    assert answered.status == "completed", answered.errors
    if vendor.name == "gemini":
        assert vendor.request()["generationConfig"]["thinkingConfig"] == {
            "thinkingLevel": "LOW",
            "includeThoughts": True,
        }
        assert asked.usage.total_thought_tokens == 3
    if vendor.name == "anthropic":
        assert vendor.request()["thinking"]["budget_tokens"] == 2048
        assert vendor.request()["messages"][1]["content"][0]["signature"] == SIGNATURE
    if vendor.name == "openai":
        assert vendor.request()["reasoning_effort"] == "low"


def test_thought_deltas_stream_with_their_signature(client, vendor):
    vendor.server.replies = [Reply("done", thinking="thinking hard", signature=SIGNATURE)]
    events = list(
        client.interactions.create(
            model=vendor.model,
            input="think",
            generation_config=THINKING[vendor.name],
            stream=True,
        )
    )
    deltas = [e.delta for e in events if e.event_type == "step.delta"]
    summary = "".join(d.content.text for d in deltas if d.type == "thought_summary")
    assert summary == "thinking hard"
    signatures = [d.signature for d in deltas if d.type == "thought_signature"]
    assert signatures == ([] if vendor.name == "openai" else [SIGNATURE])
    assert "".join(d.text for d in deltas if d.type == "text") == "done"


def test_cached_tokens_are_counted(client, vendor):
    vendor.server.replies = [Reply("cached answer", cached_tokens=3)]
    done = client.interactions.create(model=vendor.model, input="again")
    assert done.usage.total_cached_tokens == 3


def test_a_rate_limit_is_waited_out_for_as_long_as_the_vendor_asks(client, vendor):
    vendor.server.replies = [
        Reply(status=429, error="slow down", retry_after=0.2),
        Reply("made it"),
    ]
    done = client.interactions.create(model=vendor.model, input="hi")
    assert done.status == "completed", done.errors
    assert done.output_text == "made it"
    assert vendor.server.served == 2


@pytest.mark.parametrize(
    "status, code",
    [(401, "auth_failed"), (400, "invalid_request"), (503, "provider_unavailable")],
)
def test_a_vendor_failure_is_named_with_the_vendors_own_message(client, vendor, status, code):
    vendor.server.replies = [Reply(status=status, error="the vendor says no")]
    failed = client.interactions.create(model=vendor.model, input="hi")
    assert failed.status == "failed"
    [error] = failed.errors
    assert error.code == code
    assert "the vendor says no" in error.message
    tries = 3 if status == 503 else 1  # only failures that may pass are tried again
    assert vendor.server.served == tries
    if tries > 1:
        assert "tried 3 times" in error.message


def test_an_unreachable_vendor_is_unavailable_after_its_retries(client, vendor, stack):
    closed = f"http://127.0.0.1:{free_port()}"
    install(stack, vendor.model, PROVIDERS[vendor.name], closed, retries={"attempts": 2})
    failed = client.interactions.create(model=vendor.model, input="hello?")
    assert failed.status == "failed"
    [error] = failed.errors
    assert error.code == "provider_unavailable"
    assert "cannot reach" in error.message and "tried 2 times" in error.message


def test_runs_over_the_models_cap_wait_queued_and_start_in_order(client, vendor, stack):
    install(stack, vendor.model, PROVIDERS[vendor.name], vendor.server.url, maxConcurrency=1)
    vendor.server.replies = [Reply("done", delay=1.0)]
    seen = len(vendor.server.requests)
    runs = [
        client.interactions.create(model=vendor.model, input=f"run number {i}", background=True)
        for i in range(4)
    ]
    time.sleep(0.5)
    statuses = [client.interactions.get(r.id).status for r in runs]
    assert statuses == ["in_progress", "queued", "queued", "queued"]
    client.interactions.cancel(runs[-1].id)  # one that waits in line can be cancelled
    assert wait_until_ended(client, runs[-1].id).status == "cancelled"
    ended = [wait_until_ended(client, r.id, timeout=20) for r in runs[:-1]]
    assert [e.status for e in ended] == ["completed"] * 3
    # Each waiting run reached the vendor, and the one cancelled in line never did (a call
    # retried after a dropped connection reaches it twice: count runs, not requests). Runs
    # created a few milliseconds apart join the line in the order the operator takes them up.
    asked = {
        re.search(r"run number \d", json.dumps(r)).group() for r in vendor.server.requests[seen:]
    }
    assert asked == {"run number 0", "run number 1", "run number 2"}


def test_a_fallback_answers_when_the_model_is_unavailable_and_says_so(client, vendor, stack):
    install(
        stack,
        vendor.model,
        PROVIDERS[vendor.name],
        vendor.server.url,
        retries={"attempts": 1},
        fallbacks=["missing-model", "echo"],
    )
    vendor.server.replies = [Reply(status=503, error="overloaded")]
    done = client.interactions.create(model=vendor.model, input="anyone there?")
    assert done.status == "completed", done.errors
    assert done.output_text == "anyone there?"
    assert done.answered_by == "echo"
    assert client.interactions.get(done.id).answered_by == "echo"

    # echo cannot take an image: it is passed over, and the vendor's failure stands
    failed = client.interactions.create(
        model=vendor.model, input=[{"type": "image", "mime_type": "image/png", "data": PNG}]
    )
    assert failed.status == "failed"
    assert failed.errors[0].code == "provider_unavailable"
    assert "overloaded" in failed.errors[0].message


UNTAKEABLE = {
    "openai": ({"type": "audio", "mime_type": "audio/ogg", "data": "T2dnUw=="}, "audio content"),
    "gemini": ({"type": "video", "uri": "gs://bucket/clip.mp4"}, "video content by uri"),
    "anthropic": ({"type": "audio", "mime_type": "audio/wav", "data": "UklGRg=="}, "audio"),
}


def interaction_count(stack, api_key) -> int:
    headers = {"x-goog-api-key": api_key}
    listed = httpx.get(f"{stack.url}/v1/interactions?page_size=1000", headers=headers).json()
    return len(listed["interactions"])


def test_a_part_the_vendor_cannot_take_is_refused_at_create_naming_it(
    stack, api_key, client, vendor
):
    part, named = UNTAKEABLE[vendor.name]
    before = interaction_count(stack, api_key)
    error = api_error(lambda: client.interactions.create(model=vendor.model, input=[part]))
    assert error.status_code == 400
    message = error.body["error"]["message"]
    assert f"input: {named}" in message
    assert f"model {vendor.model!r} (provider {PROVIDERS[vendor.name]})" in message
    assert vendor.server.requests == []
    assert interaction_count(stack, api_key) == before


def test_eva_runs_on_the_vendor_and_hands_back_its_signed_turns(client, vendor):
    vendor.server.replies = [
        Reply(
            signature=SIGNATURE,
            tool_calls=[
                {"name": "run_code", "arguments": {"language": "python", "code": "print(6*7)"}}
            ],
        ),
        Reply("it printed 42"),
    ]
    done = agent_run(client, vendor.model)
    assert done.status == "completed", done.errors
    assert done.output_text == "it printed 42"
    assert vendor.server.served == 2
    assert "42" in str(vendor.request())  # the tool's output reached the vendor


def install_vertex(stack, endpoint: str, location: str) -> None:
    install(
        stack,
        "vertex-gemini",
        "gemini",
        endpoint,
        upstreamModel="gemini-pro-latest",
        vertex={"project": "my-project", "location": location},
        credentials={"secretRef": {"name": "vertex-sa", "key": "key.json"}},
    )


def test_gemini_on_vertex_ai_signs_in_with_a_service_account_from_a_secret(client, stack):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    email = "tether@my-project.iam.gserviceaccount.com"
    with GeminiServer(replies=[Reply("answered on vertex")]) as server:
        server.service_accounts[email] = public
        service_account = {
            "type": "service_account",
            "project_id": "my-project",
            "private_key_id": "key-1",
            "private_key": private,
            "client_email": email,
            "client_id": "1",
            "token_uri": server.token_uri,
        }
        stack.cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "vertex-sa", "namespace": "tenant-a"},
                "stringData": {"key.json": json.dumps(service_account)},
            }
        )
        install_vertex(stack, server.url, "europe-west4")
        done = client.interactions.create(model="vertex-gemini", input="hi")
        assert done.status == "completed", done.errors
        assert done.output_text == "answered on vertex"
        assert server.vertex_calls == [("my-project", "europe-west4", "gemini-pro-latest")]

        # a key the service account does not have: the token endpoint refuses it
        server.service_accounts[email] = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        install_vertex(stack, server.url, "europe-west1")  # a new Model version: a new sign-in
        refused = client.interactions.create(model="vertex-gemini", input="hi")
        assert refused.status == "failed"
        assert refused.errors[0].code == "auth_failed"
        assert "invalid_grant" in refused.errors[0].message
