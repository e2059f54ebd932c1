"""Triggers through the google-genai SDK: an agent run on a cron schedule (with a seconds field,
so a test waits seconds, not minutes), run now, executions listed, pausing, pausing itself after
failures, a timeout, and an operator killed across scheduled times, which neither skips nor
doubles a run."""

from __future__ import annotations

import contextlib
import itertools
import time

import httpx
import kubernetes
import pytest
from google.genai._interactions_errors import APIStatusError

from tests.integration.test_agent_runs import call
from tests.integration.test_sdk_interactions import wait_until_ended
from tests.integration.test_webhooks import Receiver, message_about

EVERY_2_SECONDS = "* * * * * */2"


def agent(model: str, **config) -> dict:
    return {
        "agent": "eva",
        "input": "the report",
        "agent_config": {"type": "dynamic", "model": model, **config},
    }


@pytest.fixture
def triggers(client):
    """Creates triggers, and deletes them (and stops them firing) afterwards."""
    made = []

    def create(**fields):
        trigger = client.triggers.create(**fields)
        made.append(trigger.id)
        return trigger

    yield create
    for trigger in made:  # stopped, and every run it started ended: nothing spills over
        with contextlib.suppress(APIStatusError):
            client.triggers.update(trigger, status="paused")
            time.sleep(1)  # a round of the scheduler begun before the pause has ended
            ended(client, client.triggers.list_executions(trigger).trigger_executions or [])
            client.triggers.delete(trigger)


def executions(client, trigger: str, count: int, timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while True:
        found = client.triggers.list_executions(trigger).trigger_executions or []
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {count} executions"
        time.sleep(0.5)


def ended(client, execution_list) -> list:
    return [wait_until_ended(client, e.interaction_id, timeout=90) for e in execution_list]


def test_a_trigger_runs_its_agent_on_schedule_and_lists_its_executions(
    stack, client, script, triggers
):
    model = script("trigger-report", [{"text": "report done"}])
    trigger = triggers(
        interaction=agent(model),
        schedule=EVERY_2_SECONDS,
        time_zone="Europe/Paris",
        display_name="report",
    )
    assert (trigger.status, trigger.schedule, trigger.time_zone) == (
        "active",
        EVERY_2_SECONDS,
        "Europe/Paris",
    )
    assert trigger.next_run_time is not None
    found = executions(client, trigger.id, 2)
    client.triggers.update(trigger.id, status="paused")
    runs = ended(client, found[:2])
    assert {r.status for r in runs} == {"completed"}
    assert all(r.output_text == "report done" for r in runs)
    listed = client.triggers.list_executions(trigger.id).trigger_executions
    newest, older = listed[0], listed[1]
    assert newest.scheduled_time > older.scheduled_time  # newest first
    assert (newest.scheduled_time - older.scheduled_time).total_seconds() % 2 == 0
    assert {e.status for e in listed[:2]} <= {"completed", "in_progress"}
    got = client.triggers.get(trigger.id)
    assert got.status == "paused" and got.last_pause_time is not None
    assert got.previous_interaction_id in {e.interaction_id for e in listed}
    custom = kubernetes.client.CustomObjectsApi(stack.control_plane.api_client())
    names = custom.list_namespaced_custom_object("tether.dev", "v1alpha1", "tenant-a", "triggers")
    assert trigger.id in {t["metadata"]["name"] for t in names["items"]}


def test_run_starts_an_execution_now_and_its_end_is_announced(client, script, triggers):
    model = script("trigger-now", [{"text": "now"}])
    trigger = triggers(interaction=agent(model), schedule="0 0 1 1 *", time_zone="UTC")
    with Receiver() as receiver:
        webhook = client.webhooks.create(
            uri=receiver.url, subscribed_events=["trigger.execution_finished"]
        )
        try:
            execution = client.triggers.run(trigger.id)
            assert execution.trigger_id == trigger.id and execution.status == "in_progress"
            done = wait_until_ended(client, execution.interaction_id, timeout=90)
            message = message_about(receiver, webhook.new_signing_secret, "trigger_id", trigger.id)
        finally:
            client.webhooks.delete(webhook.id)
    assert done.output_text == "now"
    [listed] = client.triggers.list_executions(trigger.id).trigger_executions
    assert (listed.id, listed.status) == (execution.id, "completed")
    assert listed.end_time is not None
    assert message["type"] == "trigger.execution_finished"
    assert message["data"] == {
        "trigger_id": trigger.id,
        "execution_id": execution.id,
        "interaction_id": execution.interaction_id,
        "status": "completed",
    }


def test_a_trigger_whose_runs_keep_failing_pauses_itself_until_resumed(client, script, triggers):
    model = script("trigger-stuck", [call("list_files", path=".")] * 3)
    trigger = triggers(
        interaction=agent(model, max_steps=1),  # each run ends incomplete
        schedule=EVERY_2_SECONDS,
        time_zone="UTC",
        max_consecutive_failures=2,
    )
    deadline = time.monotonic() + 90
    while (found := client.triggers.get(trigger.id)).status != "error":
        assert time.monotonic() < deadline, f"still {found.status}"
        time.sleep(0.5)
    assert found.consecutive_failure_count >= 2
    runs = client.triggers.list_executions(trigger.id).trigger_executions
    assert {e.status for e in runs} <= {"failed", "in_progress"}
    count = len(runs)
    time.sleep(3)
    assert len(client.triggers.list_executions(trigger.id).trigger_executions) == count
    resumed = client.triggers.update(trigger.id, status="active")
    assert resumed.status == "active" and resumed.consecutive_failure_count == 0


def test_executions_past_their_timeout_are_cancelled_and_show_timed_out(client, script, triggers):
    model = script("trigger-slow", [{"text": "never", "delaySeconds": 60}])
    trigger = triggers(
        interaction=agent(model),
        schedule="0 0 1 1 *",
        time_zone="UTC",
        execution_timeout_seconds=3,
    )
    first = client.triggers.run(trigger.id)
    time.sleep(1.1)  # another second: another execution
    second = client.triggers.run(trigger.id)  # the latest, but not the only one running
    done = [wait_until_ended(client, e.interaction_id, timeout=60) for e in (first, second)]
    assert [d.status for d in done] == ["cancelled", "cancelled"]
    listed = client.triggers.list_executions(trigger.id).trigger_executions
    assert [e.status for e in listed] == ["timed_out", "timed_out"]


def test_an_operator_killed_across_scheduled_times_neither_skips_nor_doubles_them(
    stack, client, script, triggers
):
    model = script("trigger-restart", [{"text": "ok"}])
    trigger = triggers(interaction=agent(model), schedule=EVERY_2_SECONDS, time_zone="UTC")
    executions(client, trigger.id, 1)
    stack.procs["operator"].kill()  # SIGKILL: two or three scheduled times pass unseen
    stack.procs["operator"].wait()
    time.sleep(5)
    stack.start_operator()
    executions(client, trigger.id, 5)
    client.triggers.update(trigger.id, status="paused")
    times = sorted(
        e.scheduled_time for e in client.triggers.list_executions(trigger.id).trigger_executions
    )
    assert len(times) == len(set(times))  # none twice
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(times)}
    assert gaps == {2.0}, times  # none skipped
    ended(client, client.triggers.list_executions(trigger.id).trigger_executions)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"schedule": "61 * * * *"}, "schedule"),
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"interaction": {"model": "echo", "input": "x"}}, "interaction.agent"),
        (
            {
                "interaction": {
                    "agent": "eva",
                    "input": "x",
                    "agent_config": {"type": "dynamic", "model": "nope"},
                }
            },
            "interaction",
        ),
        ({"max_consecutive_failures": 0}, "max_consecutive_failures"),
    ],
)
def test_a_bad_trigger_is_a_400_naming_the_field_and_creates_nothing(
    stack, client, api_key, fields, named
):
    before = {t.id for t in client.triggers.list().triggers or []}
    body = {
        "interaction": {"agent": "eva", "input": "x"},
        "schedule": "0 9 * * *",
        "time_zone": "UTC",
    }
    response = httpx.post(  # raw: the SDK refuses some of these itself
        f"{stack.url}/v1beta/triggers", json=body | fields, headers={"x-goog-api-key": api_key}
    )
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]["message"]
    assert {t.id for t in client.triggers.list().triggers or []} == before
