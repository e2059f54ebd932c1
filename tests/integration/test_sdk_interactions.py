"""Model interactions driven by the official google-genai SDK, pointed at the real gateway."""

from __future__ import annotations

import time

import pytest
from google.genai._interactions_errors import APIStatusError

from tests.conftest import sdk_client

# requires_action ends a turn too: the client answers with a new interaction.
ENDED = {"completed", "failed", "cancelled", "incomplete", "budget_exceeded", "requires_action"}


def wait_until_ended(client, interaction_id: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        interaction = client.interactions.get(interaction_id)
        if interaction.status in ENDED:
            return interaction
        time.sleep(0.05)
    raise AssertionError(f"{interaction_id} still {interaction.status} after {timeout}s")


def api_error(call) -> APIStatusError:
    with pytest.raises(APIStatusError) as caught:
        call()
    return caught.value


def test_a_synchronous_create_answers_with_the_output(client):
    interaction = client.interactions.create(model="echo", input="hello tether")
    assert interaction.status == "completed"
    assert interaction.output_text == "hello tether"
    assert [step.type for step in interaction.steps] == ["model_output"]
    assert interaction.usage.total_output_tokens == 2
    assert interaction.usage.total_tokens == interaction.usage.total_input_tokens + 2


def test_a_get_shows_the_whole_timeline_input_first(client):
    created = client.interactions.create(model="echo", input="show me the timeline")
    fetched = client.interactions.get(created.id)
    assert [step.type for step in fetched.steps] == ["user_input", "model_output"]
    assert fetched.steps[0].content[0].text == "show me the timeline"
    assert fetched.output_text == "show me the timeline"


def test_three_turns_chain_the_conversation_on_the_server(client):
    first = client.interactions.create(model="echo", input="my name is Ada")
    second = client.interactions.create(
        model="echo", input="I like engines", previous_interaction_id=first.id
    )
    third = client.interactions.create(
        model="echo", input="/history", previous_interaction_id=second.id
    )
    assert third.output_text == "my name is Ada | I like engines"
    assert client.interactions.get(third.id).previous_interaction_id == second.id


def test_an_unknown_previous_interaction_is_a_404_naming_it(client):
    error = api_error(
        lambda: client.interactions.create(
            model="echo", input="hi", previous_interaction_id="ix-does-not-exist"
        )
    )
    assert error.status_code == 404
    assert "ix-does-not-exist" in error.body["error"]["message"]


def test_background_answers_at_once_and_the_client_polls(client):
    started = client.interactions.create(model="echo", input="/sleep 1", background=True)
    assert started.status in ("queued", "in_progress")
    finished = wait_until_ended(client, started.id)
    assert finished.status == "completed"
    assert finished.output_text == "slept 1"


def test_a_stream_cut_midway_resumes_exactly_after_the_last_event(client):
    words = " ".join(f"w{i}" for i in range(40))
    stream = client.interactions.create(model="echo", input=words, stream=True)
    seen = []
    for event in stream:
        seen.append(event)
        if len(seen) == 5:
            break
    stream.close()
    interaction_id = seen[0].interaction.id
    resumed = list(
        client.interactions.get(interaction_id, stream=True, last_event_id=seen[-1].event_id)
    )
    events = seen + resumed
    ids = [e.event_id for e in events]
    assert ids == sorted(set(ids), key=ids.index)  # no duplicates, nothing repeated
    assert [tuple(map(int, i.split("-"))) for i in ids] == sorted(
        tuple(map(int, i.split("-"))) for i in ids
    )
    assert events[0].event_type == "interaction.created"
    assert events[-1].event_type == "interaction.completed"
    text = "".join(e.delta.text for e in events if e.event_type == "step.delta")
    assert text == words
    assert events[-1].interaction.status == "completed"


def test_a_stream_resumes_from_another_gateway_process(stack, client):
    stream = client.interactions.create(model="echo", input="one two three four", stream=True)
    first = [next(iter(stream)) for _ in range(3)]
    stream.close()
    stack.stop_service("gateway")
    stack.start_gateway()
    resumed = list(
        client.interactions.get(
            first[0].interaction.id, stream=True, last_event_id=first[-1].event_id
        )
    )
    assert resumed[0].event_id > first[-1].event_id
    text = "".join(e.delta.text for e in first + resumed if e.event_type == "step.delta")
    assert text == "one two three four"


def test_cancel_ends_a_running_interaction_and_is_idempotent(client):
    started = client.interactions.create(model="echo", input="/sleep 30", background=True)
    deadline = time.monotonic() + 10
    while client.interactions.get(started.id).status == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
    cancelled = client.interactions.cancel(started.id)
    assert cancelled.status == "cancelled"
    assert client.interactions.cancel(started.id).status == "cancelled"
    assert client.interactions.get(started.id).status == "cancelled"


def test_cancelling_a_finished_interaction_is_a_clear_error(client):
    done = client.interactions.create(model="echo", input="done")
    error = api_error(lambda: client.interactions.cancel(done.id))
    assert error.status_code == 400
    assert "already ended (completed)" in error.body["error"]["message"]


def test_delete_removes_the_interaction(client):
    done = client.interactions.create(model="echo", input="forget me")
    client.interactions.delete(done.id)
    error = api_error(lambda: client.interactions.get(done.id))
    assert error.status_code == 404
    assert done.id in error.body["error"]["message"]


def test_store_false_is_not_kept_and_cannot_be_continued(client):
    ephemeral = client.interactions.create(model="echo", input="off the record", store=False)
    assert ephemeral.output_text == "off the record"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.interactions.get(ephemeral.id)
        except APIStatusError as error:
            assert error.status_code == 404
            break
        time.sleep(0.05)
    else:
        raise AssertionError("a store=false interaction was still there after 10s")
    error = api_error(
        lambda: client.interactions.create(
            model="echo", input="and then?", previous_interaction_id=ephemeral.id
        )
    )
    assert error.status_code == 400
    assert "store=false" in error.body["error"]["message"]


def test_an_unknown_model_is_a_404_naming_it(client):
    error = api_error(lambda: client.interactions.create(model="gpt-17", input="hi"))
    assert error.status_code == 404
    assert error.body == {"error": {"code": "not_found", "message": "model 'gpt-17' not found"}}


def test_a_provider_failure_fails_the_run_with_the_providers_message(stack, client, api_key):
    stack.cluster.apply(
        {
            "apiVersion": "tether.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": "one-liner", "namespace": "tenant-a"},
            "spec": {"provider": "scripted", "responses": [{"text": "only once"}]},
        }
    )
    first = client.interactions.create(model="one-liner", input="hi")
    assert first.output_text == "only once"
    failed = client.interactions.create(
        model="one-liner", input="again", previous_interaction_id=first.id
    )
    assert failed.status == "failed"
    assert failed.errors[0].code == "script_exhausted"
    assert "has 1 responses" in failed.errors[0].message
    assert client.interactions.get(failed.id).status == "failed"


def test_a_wrong_key_is_401(stack):
    stranger = sdk_client(stack.url, "not-a-key")
    error = api_error(lambda: stranger.interactions.create(model="echo", input="x"))
    assert error.status_code == 401
    assert error.body == {"error": {"code": "unauthenticated", "message": "API key not valid"}}


def test_tenants_never_see_each_others_interactions(stack, client):
    mine = client.interactions.create(model="echo", input="private")
    other = sdk_client(stack.url, stack.add_tenant("tenant-b"))
    error = api_error(lambda: other.interactions.get(mine.id))
    assert error.status_code == 404
    error = api_error(lambda: other.interactions.delete(mine.id))
    assert error.status_code == 404
    assert client.interactions.get(mine.id).output_text == "private"


def test_a_run_survives_the_operator_being_killed_midway(stack, client):
    started = client.interactions.create(model="echo", input="/sleep 2", background=True)
    deadline = time.monotonic() + 10
    while client.interactions.get(started.id).status != "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stack.procs["operator"].kill()  # SIGKILL: no clean-up of any kind
    stack.procs["operator"].wait()
    stack.start_operator()
    finished = wait_until_ended(client, started.id)
    assert (finished.status, finished.output_text) == ("completed", "slept 2")
    events = list(client.interactions.get(started.id, stream=True))
    assert [e.event_type for e in events].count("interaction.completed") == 1
