"""The server-sent events a client really receives are the ones /openapi.json documents: each
`data` validates against its event model, `event` is its `event_type` and `id` its `event_id`."""

from __future__ import annotations

import json

import httpx
import pytest

from tether.dev.fakes.chat_completions import ChatCompletionsServer, Reply
from tether.gateway.openapi import InteractionEvent

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]


@pytest.fixture(scope="module")
def http(stack):
    key = stack.add_tenant("fuzz-events")
    with httpx.Client(base_url=stack.url, headers={"x-goog-api-key": key}, timeout=60) as client:
        yield client


def documented(lines) -> list[dict]:
    """Read an SSE stream to its end; every event must be a documented one."""
    events, fields = [], {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
            continue
        if "data" in fields:
            event = InteractionEvent.model_validate_json(fields["data"]).root
            assert fields.get("event") == event.event_type
            assert fields.get("id") == event.event_id
            events.append(json.loads(fields["data"]))
        fields = {}
    return events


def test_a_streamed_model_run_sends_only_documented_events(http):
    body = {"model": "echo", "input": "every event is documented", "stream": True}
    with http.stream("POST", "/v1/interactions", json=body) as response:
        assert response.status_code == 200
        events = documented(response.iter_lines())
    types = [event["event_type"] for event in events]
    assert types[0] == "interaction.created"
    assert types[-1] == "interaction.completed"
    assert {"interaction.status_update", "step.start", "step.delta", "step.stop"} <= set(types)


def test_a_streamed_thought_sends_only_documented_events(http, stack):
    with ChatCompletionsServer(replies=[Reply("answer", thinking="first this")]) as upstream:
        stack.cluster.apply(
            {
                "apiVersion": "tether.dev/v1alpha1",
                "kind": "Model",
                "metadata": {"name": "reasoner", "namespace": "fuzz-events"},
                "spec": {"provider": "openai-compatible", "endpoint": upstream.url},
            }
        )
        body = {"model": "reasoner", "input": "think", "stream": True}
        with http.stream("POST", "/v1/interactions", json=body) as response:
            assert response.status_code == 200
            events = documented(response.iter_lines())
    deltas = [event["delta"] for event in events if event["event_type"] == "step.delta"]
    assert deltas[0] == {
        "type": "thought_summary",
        "content": {"type": "text", "text": "first this"},
    }
    assert deltas[-1] == {"type": "text", "text": "answer"}


def test_a_deletion_while_streaming_ends_with_a_documented_error_event(http):
    created = http.post(
        "/v1/interactions", json={"model": "echo", "input": "/sleep 30", "background": True}
    )
    assert created.status_code == 200, created.text
    name = created.json()["id"]
    with http.stream("GET", f"/v1beta/interactions/{name}?stream=true") as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = []
        for line in lines:  # wait until the stream is live, then delete under it
            first.append(line)
            if not line and any(item.startswith("data:") for item in first):
                break
        assert http.delete(f"/v1/interactions/{name}").status_code == 200
        events = documented([*first, *lines])
    assert events[-1]["event_type"] == "error"
    assert events[-1]["error"]["code"] == "interaction_deleted"
