"""The official SDK against a whole deployment, touching nothing but its HTTP endpoint: runs on
the local stack in `make test`, and on a kind cluster in `make kind-e2e`."""

from __future__ import annotations

from tests.integration.test_sdk_interactions import wait_until_ended


def test_a_model_call(sdk):
    assert sdk.interactions.create(model="echo", input="hello e2e").output_text == "hello e2e"


def test_a_conversation_kept_on_the_server(sdk):
    first = sdk.interactions.create(model="echo", input="one")
    second = sdk.interactions.create(model="echo", input="two", previous_interaction_id=first.id)
    third = sdk.interactions.create(
        model="echo", input="/history", previous_interaction_id=second.id
    )
    assert third.output_text == "one | two"


def test_background_and_a_resumed_stream(sdk):
    started = sdk.interactions.create(model="echo", input="a b c d e f g h", background=True)
    stream = sdk.interactions.get(started.id, stream=True)
    first = [next(iter(stream)) for _ in range(2)]
    stream.close()
    rest = list(sdk.interactions.get(started.id, stream=True, last_event_id=first[-1].event_id))
    text = "".join(e.delta.text for e in first + rest if e.event_type == "step.delta")
    assert text == "a b c d e f g h"
    assert wait_until_ended(sdk, started.id).status == "completed"


def test_an_agent_run_in_a_sandbox(sdk):
    done = sdk.interactions.create(agent="antigravity-preview-05-2026", input="say hello")
    assert done.status == "completed"
    assert done.output_text


def test_cancel(sdk):
    started = sdk.interactions.create(model="echo", input="/sleep 30", background=True)
    assert sdk.interactions.cancel(started.id).status == "cancelled"
