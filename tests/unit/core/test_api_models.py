"""One pydantic model serves the HTTP wire (snake_case) and the custom resource (camelCase)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tether.api.interaction import CreateInteractionRequest, InteractionSpec, InteractionStatus
from tether.api.model import ModelSpec


def test_wire_fields_become_camel_case_in_the_custom_resource():
    request = CreateInteractionRequest.from_wire(
        {
            "model": "echo",
            "input": "hi",
            "previous_interaction_id": "ix-1",
            "system_instruction": "be brief",
            "generation_config": {"max_output_tokens": 5, "top_p": 0.5},
            "stream": True,
        }
    )
    assert request.spec().to_kube() == {
        "model": "echo",
        "input": "hi",
        "previousInteractionId": "ix-1",
        "systemInstruction": "be brief",
        "generationConfig": {"maxOutputTokens": 5, "topP": 0.5},
    }


def test_a_custom_resource_reads_back_as_the_wire_format():
    spec = InteractionSpec.from_kube(
        {
            "model": "echo",
            "input": [{"type": "function_result", "callId": "c1", "result": {"ok": True}}],
            "webhookConfig": {"uris": ["https://hooks.example/x"], "userMetadata": {"A_b": 1}},
        }
    )
    assert spec.to_wire() == {
        "model": "echo",
        "input": [{"type": "function_result", "call_id": "c1", "result": {"ok": True}}],
        # user data is never re-spelled
        "webhook_config": {"uris": ["https://hooks.example/x"], "user_metadata": {"A_b": 1}},
    }


def test_tool_schemas_and_arguments_are_kept_exactly_as_sent():
    parameters = {"type": "object", "properties": {"max_items": {"type": "integer"}}}
    spec = InteractionSpec.from_wire(
        {
            "model": "echo",
            "input": "x",
            "tools": [{"type": "function", "name": "f", "parameters": parameters}],
        }
    )
    assert spec.to_kube()["tools"][0]["parameters"] == parameters


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "echo", "agent": "eva", "input": "x"}, "model and agent are mutually exclusive"),
        ({"input": "hi"}, "one of model or agent is required"),
        ({"model": "echo"}, "input\n  Field required"),
        (
            {"agent": "eva", "input": "x", "generation_config": {}},
            "generation_config applies only to model",
        ),
        (
            {"model": "echo", "input": "x", "agent_config": {"type": "dynamic"}},
            "agent_config applies only to agent",
        ),
        ({"model": "echo", "input": [{"type": "banana"}]}, "banana"),
        ({"model": "echo", "surprise": 1}, "surprise"),
        (
            {"agent": "eva", "input": "x", "agent_config": {"type": "antigravity", "max_steps": 3}},
            'use type "dynamic"',
        ),
    ],
)
def test_bad_requests_are_rejected_naming_what_is_wrong(body, message):
    with pytest.raises(ValidationError) as caught:
        CreateInteractionRequest.from_wire(body)
    assert message in str(caught.value)


def test_the_wire_does_not_accept_camel_case_field_names():
    with pytest.raises(ValidationError, match="previousInteractionId"):
        CreateInteractionRequest.from_wire(
            {"model": "echo", "input": "x", "previousInteractionId": "x"}
        )


def test_status_phase_is_one_of_the_api_statuses():
    assert InteractionStatus.from_kube({"phase": "budget_exceeded"}).phase == "budget_exceeded"
    with pytest.raises(ValidationError, match="phase"):
        InteractionStatus.from_kube({"phase": "exploded"})


def test_model_routes_need_what_their_provider_needs():
    with pytest.raises(ValidationError, match="needs an endpoint"):
        ModelSpec.from_kube({"provider": "openai-compatible"})
    with pytest.raises(ValidationError, match="needs responses"):
        ModelSpec.from_kube({"provider": "scripted"})
    spec = ModelSpec.from_kube(
        {"provider": "scripted", "responses": [{"functionCalls": [{"name": "f", "arguments": {}}]}]}
    )
    assert spec.responses[0].function_calls == [{"name": "f", "arguments": {}}]
