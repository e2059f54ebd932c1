"""The message an ended interaction puts in the webhook outbox: one per way it ended, with the
same id whenever it is built again (after a crash), going to the interaction's own URIs when it
names them."""

from __future__ import annotations

from tether.operator.webhooks import ending_jobs


def ending_job(obj: dict) -> dict:
    [job] = ending_jobs(obj)
    return job


def ended(phase: str, uid: str = "u1", **spec) -> dict:
    return {
        "metadata": {"name": "ix-1", "namespace": "tenant-a", "uid": uid},
        "spec": {"agent": "eva", **spec},
        "status": {"phase": phase, "updated": "2026-11-26T00:00:00.000000Z"},
    }


def test_each_ending_is_its_event_with_a_thin_body():
    job = ending_job(ended("requires_action"))
    assert job["event"] == "interaction.requires_action"
    assert job["body"] == {
        "type": "interaction.requires_action",
        "timestamp": "2026-11-26T00:00:00.000000Z",
        "data": {"id": "ix-1", "status": "requires_action", "agent": "eva"},
    }
    assert job["uris"] is None and job["target"] is None


def test_the_same_ending_is_the_same_message_and_another_run_another():
    assert ending_job(ended("completed"))["id"] == ending_job(ended("completed"))["id"]
    assert ending_job(ended("completed"))["id"] != ending_job(ended("completed", uid="u2"))["id"]


def test_an_interactions_own_webhook_config_names_where_it_goes_and_what_it_carries():
    config = {"uris": ["https://hooks.example.com/a"], "userMetadata": {"job": 7}}
    job = ending_job(ended("failed", webhookConfig=config))
    assert job["uris"] == ["https://hooks.example.com/a"]
    assert job["body"]["data"]["user_metadata"] == {"job": 7}


def test_a_triggers_execution_also_announces_that_it_finished():
    obj = ended("incomplete")
    obj["metadata"]["labels"] = {"tether.dev/trigger": "tr-0123456789ab"}
    _, finished = ending_jobs(obj)
    assert finished["event"] == "trigger.execution_finished"
    assert finished["body"]["data"] == {
        "trigger_id": "tr-0123456789ab",
        "execution_id": "ix-1",
        "interaction_id": "ix-1",
        "status": "failed",
    }
    assert finished["id"] != ending_jobs(obj)[0]["id"]
