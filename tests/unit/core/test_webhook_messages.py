"""What a webhook delivery carries, checked with `standardwebhooks`, an independent
implementation of the Standard Webhooks spec; and what a request may name."""

from __future__ import annotations

import json
import time

import pytest
import standardwebhooks
from pydantic import ValidationError

from tether.api.webhook import (
    CreateWebhookRequest,
    SigningSecret,
    UpdateWebhookRequest,
    message_id,
    new_secret,
    signature,
    signing,
    webhook_view,
)
from tether.outbound import url_problems
from tether.settings import Settings


def headers(secrets: list[str], body: bytes, msg: str = "msg_1") -> dict[str, str]:
    stamp = int(time.time())
    return {
        "webhook-id": msg,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature(secrets, msg, stamp, body),
    }


def test_a_signature_verifies_with_its_secret_and_no_other():
    secret, other = new_secret(), new_secret()
    body = json.dumps({"type": "interaction.completed", "data": {"id": "x"}}).encode()
    sent = headers([secret], body)
    assert standardwebhooks.Webhook(secret).verify(body, sent)["data"] == {"id": "x"}
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(other).verify(body, sent)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body + b" ", sent)


def test_during_a_rotation_either_secret_verifies():
    old, new = new_secret(), new_secret()
    body = b'{"type":"interaction.failed"}'
    sent = headers([new, old], body)
    assert len(sent["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert standardwebhooks.Webhook(secret).verify(body, sent)["type"] == "interaction.failed"


def test_a_message_keeps_its_id_and_each_event_has_its_own():
    assert message_id("ns", "ix", "uid", "interaction.completed") == message_id(
        "ns", "ix", "uid", "interaction.completed"
    )
    assert message_id("ns", "ix", "uid", "interaction.completed") != message_id(
        "ns", "ix", "uid2", "interaction.completed"
    )


def test_an_expired_secret_stops_signing():
    kept = SigningSecret(secret="whsec_a", expire_time="2026-01-01T00:00:00.000000Z")
    newest = SigningSecret(secret="whsec_b")
    assert signing([newest, kept], "2025-12-31T23:59:59.000000Z") == ["whsec_b", "whsec_a"]
    assert signing([newest, kept], "2026-01-01T00:00:01.000000Z") == ["whsec_b"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            {"uri": "https://e.com/h", "subscribed_events": ["interaction.nope"]},
            "subscribed_events",
        ),
        ({"uri": "https://e.com/h", "subscribed_events": []}, "subscribed_events"),
        ({"uri": "mailto:a@e.com", "subscribed_events": ["interaction.completed"]}, "uri"),
        ({"uri": "https://e.com/h"}, "subscribed_events"),
        ({"uri": "https://e.com/h", "subscribed_events": ["interaction.completed"], "x": 1}, "x"),
    ],
)
def test_a_bad_create_names_its_field(body, named):
    with pytest.raises(ValidationError) as error:
        CreateWebhookRequest.from_wire(body)
    assert named in str(error.value)


def test_an_update_takes_the_states_a_user_may_set():
    assert UpdateWebhookRequest.from_wire({"state": "enabled"}).state == "enabled"
    with pytest.raises(ValidationError):
        UpdateWebhookRequest.from_wire({"state": "disabled_due_to_failed_deliveries"})


def test_https_is_required_where_the_platform_asks_and_private_addresses_are_refused():
    strict = Settings(webhook_require_https=True)
    assert url_problems("https://hooks.example.com/x", strict, "uri") == []
    assert url_problems("http://hooks.example.com/x", strict, "uri") == [
        "uri: this platform calls webhooks over https only"
    ]
    assert "private address" in url_problems("https://169.254.169.254/", strict, "uri")[0]
    assert (
        url_problems("http://127.0.0.1:9000/hook", Settings(webhook_allow_private=True), "uri")
        == []
    )


def test_a_platform_that_names_its_webhook_hosts_calls_no_other():
    settings = Settings(webhook_hosts=["hooks.example.com"])
    assert url_problems("https://hooks.example.com/a", settings, "uri") == []
    assert url_problems("https://evil.example.com/a", settings, "uri") == [
        "uri: this platform calls webhooks on hooks.example.com only"
    ]


def test_the_view_shows_a_secret_whole_only_when_it_is_new():
    obj = {
        "metadata": {"name": "wh-0123456789ab", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"uri": "https://e.com/h", "subscribedEvents": ["interaction.completed"]},
        "status": {"state": "disabled_due_to_failed_deliveries"},
    }
    secret = new_secret()
    view = webhook_view(obj, [SigningSecret(secret=secret)])
    assert secret not in json.dumps(view)
    assert view["state"] == "disabled_due_to_failed_deliveries"
    assert webhook_view(obj, [SigningSecret(secret=secret)], secret)["new_signing_secret"] == secret
