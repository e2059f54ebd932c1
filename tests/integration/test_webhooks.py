"""Webhooks through the google-genai SDK: endpoints registered per tenant get a signed message
when an interaction ends, verified here by `standardwebhooks`, an independent implementation of
the spec. Retries, 410 Gone, rotation and an operator killed with a retry pending."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from dataclasses import dataclass, field

import httpx
import kubernetes
import pytest
import standardwebhooks
from google.genai._interactions_errors import APIStatusError

from tests.conftest import sdk_client
from tests.integration.test_agent_runs import agent_run
from tests.integration.test_sdk_interactions import wait_until_ended


@dataclass
class Receiver:
    """An endpoint on this machine's loopback: answers each POST with the next of `answers`
    (then 200) and keeps what arrived."""

    answers: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver.arrived:
                    receiver.received.append((dict(self.headers), body, status))
                    receiver.arrived.notify_all()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def wait(self, count: int, timeout: float = 30) -> list[tuple[dict[str, str], bytes, int]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= count, timeout), (
                f"{len(self.received)} of {count} deliveries arrived"
            )
            return list(self.received)


def message_about(
    receiver: Receiver, secret: str, key: str, value: str, timeout: float = 60
) -> dict:
    """The first verified message whose `data[key]` is `value`: runs other tests left behind
    may end meanwhile, and their messages arrive too."""
    deadline = time.monotonic() + timeout
    while True:
        for headers, body, _ in receiver.wait(1, timeout=max(deadline - time.monotonic(), 0)):
            message = verified(secret, headers, body)
            if message["data"].get(key) == value:
                return message
        assert time.monotonic() < deadline, f"no message with {key} {value}"
        time.sleep(0.2)


def verified(secret: str, headers: dict[str, str], body: bytes) -> dict:
    """The message, if `secret` verifies it (standardwebhooks raises otherwise)."""
    wanted = {k: v for k, v in headers.items() if k.lower().startswith("webhook-")}
    return standardwebhooks.Webhook(secret).verify(body, {k.lower(): v for k, v in wanted.items()})


TENANT = "tenant-hooks"
"""A tenant of these tests alone: no run another test left behind ends into its webhooks."""


@pytest.fixture(scope="module")
def api_key(stack) -> str:
    return stack.add_tenant(TENANT)


@pytest.fixture(scope="module")
def client(stack, api_key):
    return sdk_client(stack.url, api_key)


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def registered(client, receiver):
    """A webhook of the tenant for completed interactions, deleted afterwards."""
    created = client.webhooks.create(
        uri=receiver.url, subscribed_events=["interaction.completed"], name="test receiver"
    )
    yield created
    with contextlib.suppress(APIStatusError):  # unless the test deleted it
        client.webhooks.delete(created.id)


def test_a_webhook_is_created_listed_updated_and_deleted_and_its_secret_shown_once(
    stack, client, registered
):
    assert registered.new_signing_secret.startswith("whsec_")
    assert registered.state == "enabled"
    assert registered.subscribed_events == ["interaction.completed"]
    [shown] = registered.signing_secrets
    assert registered.new_signing_secret not in shown.truncated_secret
    got = client.webhooks.get(registered.id)
    assert got.new_signing_secret is None and got.uri == registered.uri
    assert registered.id in {w.id for w in client.webhooks.list().webhooks}
    custom = kubernetes.client.CustomObjectsApi(stack.control_plane.api_client())
    listed = custom.list_namespaced_custom_object("tether.dev", "v1alpha1", TENANT, "webhooks")
    assert registered.id in {w["metadata"]["name"] for w in listed["items"]}
    updated = client.webhooks.update(
        registered.id, subscribed_events=["interaction.failed"], state="disabled"
    )
    assert (updated.subscribed_events, updated.state) == (["interaction.failed"], "disabled")
    assert updated.name == "test receiver"  # what the update did not name stays
    client.webhooks.delete(registered.id)
    with pytest.raises(APIStatusError) as gone:
        client.webhooks.get(registered.id)
    assert gone.value.status_code == 404
    core = kubernetes.client.CoreV1Api(stack.control_plane.api_client())
    assert wait_gone(core, f"tether-webhook-{registered.id}")


def wait_gone(core, secret: str, timeout: float = 30) -> bool:
    """The Secret goes with its Webhook (the garbage collector follows its owner)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = {s.metadata.name for s in core.list_namespaced_secret(TENANT).items}
        if secret not in names:
            return True
        time.sleep(0.2)
    return False


def test_an_agent_run_that_ends_is_announced_signed_to_its_tenants_webhook(
    stack, client, receiver, registered
):
    model = "webhook-agent"
    stack.cluster.apply(
        {
            "apiVersion": "tether.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": model, "namespace": TENANT},
            "spec": {"provider": "scripted", "responses": [{"text": "done"}]},
        }
    )
    done = agent_run(client, model)
    assert done.status == "completed"
    [(headers, body, _)] = receiver.wait(1)
    message = verified(registered.new_signing_secret, headers, body)
    assert message["type"] == "interaction.completed"
    assert message["data"] == {"id": done.id, "status": "completed", "agent": "eva"}
    assert headers["webhook-id"].startswith("msg_")
    time.sleep(1)
    assert len(receiver.received) == 1  # once


def test_a_failed_delivery_is_retried_with_the_same_id_and_logged(
    stack, client, api_key, receiver, registered
):
    receiver.answers = [500, 503]
    started = client.interactions.create(model="echo", input="hello", background=True)
    wait_until_ended(client, started.id)
    received = receiver.wait(3)
    assert [status for *_, status in received] == [500, 503, 200]
    assert len({headers["webhook-id"] for headers, *_ in received}) == 1
    for headers, body, _ in received:  # each attempt signed at its own timestamp
        assert verified(registered.new_signing_secret, headers, body)["data"]["id"] == started.id
    log = httpx.get(
        f"{stack.url}/v1beta/webhooks/{registered.id}/deliveries",
        headers={"x-goog-api-key": api_key},
    ).json()["deliveries"]
    assert [(d["attempt"], d["status_code"]) for d in log[:3]] == [(3, 200), (2, 503), (1, 500)]


def test_an_endpoint_that_answers_410_is_disabled_and_enabled_again_by_update(
    client, receiver, registered
):
    receiver.answers = [410]
    first = client.interactions.create(model="echo", input="one", background=True)
    wait_until_ended(client, first.id)
    receiver.wait(1)
    wait_for_state(client, registered.id, "disabled_due_to_failed_deliveries")
    second = client.interactions.create(model="echo", input="two", background=True)
    wait_until_ended(client, second.id)
    time.sleep(2)
    assert len(receiver.received) == 1  # a disabled endpoint gets nothing
    assert client.webhooks.update(registered.id, state="enabled").state == "enabled"
    third = client.interactions.create(model="echo", input="three", background=True)
    wait_until_ended(client, third.id)
    [*_, (headers, body, _)] = receiver.wait(2)
    assert verified(registered.new_signing_secret, headers, body)["data"]["id"] == third.id


def test_an_endpoint_that_keeps_failing_is_disabled(client, receiver, registered):
    receiver.answers = [500] * 10
    started = client.interactions.create(model="echo", input="hello", background=True)
    wait_until_ended(client, started.id)
    receiver.wait(4)  # the first attempt and the 3 retries of the test stack
    disabled = wait_for_state(client, registered.id, "disabled_due_to_failed_deliveries")
    assert disabled.state == "disabled_due_to_failed_deliveries"
    time.sleep(1)
    assert len(receiver.received) == 4


def wait_for_state(client, webhook: str, state: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while (found := client.webhooks.get(webhook)).state != state:
        assert time.monotonic() < deadline, f"still {found.state}"
        time.sleep(0.2)
    return found


def test_during_a_rotation_both_secrets_sign_and_revoking_leaves_the_new_one(
    client, receiver, registered
):
    old = registered.new_signing_secret
    new = client.webhooks.rotate_signing_secret(registered.id).secret
    assert new.startswith("whsec_") and new != old
    assert len(client.webhooks.get(registered.id).signing_secrets) == 2
    first = client.interactions.create(model="echo", input="one", background=True)
    wait_until_ended(client, first.id)
    [(headers, body, _)] = receiver.wait(1)
    assert len(headers["webhook-signature"].split()) == 2
    assert verified(old, headers, body) == verified(new, headers, body)
    newest = client.webhooks.rotate_signing_secret(
        registered.id, revocation_behavior="revoke_previous_secrets_immediately"
    ).secret
    second = client.interactions.create(model="echo", input="two", background=True)
    wait_until_ended(client, second.id)
    [_, (headers, body, _)] = receiver.wait(2)
    assert verified(newest, headers, body)["data"]["id"] == second.id
    for revoked in (old, new):
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            verified(revoked, headers, body)


def test_a_pending_retry_survives_the_operator_being_killed(stack, client, receiver, registered):
    receiver.answers = [500]
    started = client.interactions.create(model="echo", input="hello", background=True)
    wait_until_ended(client, started.id)
    receiver.wait(1)
    stack.procs["operator"].kill()  # SIGKILL, with the retry waiting in the outbox
    stack.procs["operator"].wait()
    time.sleep(1)
    assert len(receiver.received) == 1
    stack.start_operator()
    [(first, *_), (second, body, status)] = receiver.wait(2)
    assert status == 200 and first["webhook-id"] == second["webhook-id"]
    assert verified(registered.new_signing_secret, second, body)["data"]["id"] == started.id


def test_ping_sends_a_signed_test_event_and_says_when_it_failed(client, receiver, registered):
    assert client.webhooks.ping(registered.id) is not None
    [(headers, body, _)] = receiver.wait(1)
    assert verified(registered.new_signing_secret, headers, body)["type"] == "webhook.ping"
    receiver.answers = [500]
    with pytest.raises(APIStatusError) as failed:
        client.webhooks.ping(registered.id)
    assert failed.value.status_code == 502
    assert "answered 500" in json.dumps(failed.value.body)


def test_an_interactions_own_uris_get_its_end_instead_with_its_metadata(
    client, receiver, registered
):
    with Receiver() as own:
        started = client.interactions.create(
            model="echo",
            input="hello",
            background=True,
            webhook_config={"uris": [own.url], "user_metadata": {"job": "42"}},
        )
        wait_until_ended(client, started.id)
        [(headers, body, _)] = own.wait(1)
    # signed with the tenant's webhook secrets: its receivers know them
    message = verified(registered.new_signing_secret, headers, body)
    assert message["data"] == {
        "id": started.id,
        "status": "completed",
        "model": "echo",
        "user_metadata": {"job": "42"},
    }
    time.sleep(1)
    assert receiver.received == []  # the registered endpoint is overridden for this one


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"uris": ["ftp://127.0.0.1/x"]}, "webhook_config.uris[0]"),
        ({"uris": ["https://hooks.example.com/x"]}, "webhook_config.uris[0]: this platform"),
        ({"uris": ["http://127.0.0.1:9/x"]}, "register one first"),
    ],
)
def test_an_interactions_own_webhook_config_is_checked_before_it_is_created(
    stack, client, config, named
):
    custom = kubernetes.client.CustomObjectsApi(stack.control_plane.api_client())

    def interactions() -> set[str]:
        listed = custom.list_namespaced_custom_object(
            "tether.dev", "v1alpha1", TENANT, "interactions"
        )
        return {i["metadata"]["name"] for i in listed["items"]}

    before = interactions()
    with pytest.raises(APIStatusError) as refused:
        client.interactions.create(model="echo", input="x", webhook_config=config)
    assert refused.value.status_code == 400
    assert named in json.dumps(refused.value.body)
    assert interactions() <= before


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            {"uri": "http://127.0.0.1:9/h", "subscribed_events": ["interaction.done"]},
            "subscribed_events",
        ),
        ({"uri": "http://127.0.0.1:9/h", "subscribed_events": []}, "subscribed_events"),
        ({"uri": "ftp://example.com/h", "subscribed_events": ["interaction.completed"]}, "uri"),
        ({"subscribed_events": ["interaction.completed"]}, "uri"),
    ],
)
def test_a_bad_webhook_is_a_400_naming_the_field_and_creates_nothing(
    stack, client, api_key, body, named
):
    before = {w.id for w in client.webhooks.list().webhooks or []}
    response = httpx.post(
        f"{stack.url}/v1beta/webhooks", json=body, headers={"x-goog-api-key": api_key}
    )
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]["message"]
    assert {w.id for w in client.webhooks.list().webhooks or []} == before


def test_an_unknown_webhook_is_a_404_and_a_path_trick_reaches_nothing(stack, api_key):
    for path in ("wh-000000000000", "..", "%2e%2e", "wh-000000000000%2F..%2F.."):
        response = httpx.get(
            f"{stack.url}/v1beta/webhooks/{path}", headers={"x-goog-api-key": api_key}
        )
        assert response.status_code == 404, (path, response.text)
