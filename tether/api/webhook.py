"""Webhooks: endpoints a tenant registers to be called when its interactions end, instead of
polling. A Webhook resource holds the endpoint (what `kubectl get webhooks` shows); its signing
secrets are a Secret beside it, returned once, at creation or rotation.

Deliveries follow the Standard Webhooks specification: a thin JSON body (`type`, `timestamp`,
`data`) signed with HMAC-SHA256 over `webhook-id.webhook-timestamp.body`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from typing import Any, Literal

from pydantic import Field, field_validator

from tether.api import UPDATED_ANNOTATION
from tether.api.base import ApiModel
from tether.api.interaction import TERMINAL_PHASES, Timestamp, WebhookUri

INTERACTION_EVENTS: dict[str, str] = {
    phase: f"interaction.{phase}" for phase in sorted(TERMINAL_PHASES)
}
"""The event each way an interaction ends announces."""
TRIGGER_EVENT = "trigger.execution_finished"
EVENTS: tuple[str, ...] = (*sorted(INTERACTION_EVENTS.values()), TRIGGER_EVENT)
PING = "webhook.ping"
WEBHOOK_ID = re.compile(r"^wh-[0-9a-f]{12}$")
SECRET_PREFIX = "whsec_"


def secret_name(webhook: str) -> str:
    """The Secret holding a webhook's signing secrets."""
    return f"tether-webhook-{webhook}"


def new_secret() -> str:
    """A signing secret as Standard Webhooks spells it: `whsec_` and 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def truncated(secret: str) -> str:
    """What a listing shows of a secret: enough to tell two apart, too little to use."""
    return f"{secret[: len(SECRET_PREFIX) + 4]}…{secret[-4:]}"


def signature(secrets_: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: one `v1,<base64 HMAC-SHA256>` per secret, so that a
    receiver holding either one during a rotation verifies it."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1,"
        + base64.b64encode(
            hmac.new(
                base64.b64decode(secret.removeprefix(SECRET_PREFIX)), signed, hashlib.sha256
            ).digest()
        ).decode()
        for secret in secrets_
    )


def message_id(*parts: str) -> str:
    """The `webhook-id` of a message: the same on every retry of it, unique to its event."""
    return "msg_" + hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]


def _known_events(events: list[str] | None) -> list[str] | None:
    if events is None:
        return None
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise ValueError(f"{', '.join(map(repr, unknown))} not among {', '.join(EVENTS)}")
    return list(dict.fromkeys(events))


class WebhookSpec(ApiModel):
    """A registered endpoint, and the events it is called for."""

    uri: WebhookUri
    subscribed_events: list[str] = Field(min_length=1)
    name: str | None = Field(default=None, max_length=256)
    state: Literal["enabled", "disabled"] = "enabled"
    """Set by its owner; a failing endpoint is disabled by the platform in the status instead."""


class WebhookStatus(ApiModel):
    state: Literal["disabled_due_to_failed_deliveries"] | None = None
    """Set when deliveries kept failing (or the endpoint answered 410 Gone); an update that
    enables the webhook clears it."""
    reason: str | None = None
    """Why it was disabled."""
    disabled: Timestamp | None = None


class CreateWebhookRequest(ApiModel):
    """POST /webhooks: the SDK's WebhookInput."""

    uri: WebhookUri
    subscribed_events: list[str] = Field(min_length=1)
    name: str | None = Field(default=None, max_length=256)

    _events = field_validator("subscribed_events")(_known_events)


class UpdateWebhookRequest(ApiModel):
    """PATCH /webhooks/{id}: the SDK's WebhookUpdate; the fields given are changed."""

    uri: WebhookUri | None = None
    subscribed_events: list[str] | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, max_length=256)
    state: Literal["enabled", "disabled"] | None = None

    _events = field_validator("subscribed_events")(_known_events)


class RotateSigningSecretRequest(ApiModel):
    revocation_behavior: (
        Literal["revoke_previous_secrets_after_h24", "revoke_previous_secrets_immediately"] | None
    ) = None


class SigningSecret(ApiModel):
    """A secret as stored: the whole value (in the Secret only), and when it stops signing."""

    secret: str
    expire_time: Timestamp | None = None


class ShownSecret(ApiModel):
    truncated_secret: str
    expire_time: Timestamp | None = None


class WebhookObject(ApiModel):
    """A Webhook as the API shows it (the SDK's `Webhook`)."""

    id: str
    uri: str
    subscribed_events: list[str]
    name: str | None = None
    state: Literal["enabled", "disabled", "disabled_due_to_failed_deliveries"]
    create_time: Timestamp | None = None
    update_time: Timestamp | None = None
    signing_secrets: list[ShownSecret]
    new_signing_secret: str | None = None
    """The whole secret: only in the answer to create."""


class WebhookList(ApiModel):
    webhooks: list[WebhookObject]
    next_page_token: str | None = None


class Delivery(ApiModel):
    """One attempt to deliver a message, as an endpoint's delivery log shows it."""

    time: Timestamp
    webhook_id: str
    event: str
    attempt: int
    status_code: int | None = None
    error: str | None = None


class DeliveryList(ApiModel):
    deliveries: list[Delivery]


def stored_secrets(raw: str | None) -> list[SigningSecret]:
    """A webhook's secrets as its Secret holds them (JSON), newest first."""
    return [SigningSecret.model_validate(s) for s in json.loads(raw or "[]")]


def enabled(obj: dict[str, Any]) -> bool:
    """Whether a Webhook resource is on: enabled by its owner, not disabled by failures."""
    status = WebhookStatus.from_kube(obj.get("status") or {})
    return WebhookSpec.from_kube(obj["spec"]).state == "enabled" and status.state is None


def active(obj: dict[str, Any], event: str) -> bool:
    """Whether a Webhook resource is to be called for `event`."""
    return enabled(obj) and event in WebhookSpec.from_kube(obj["spec"]).subscribed_events


def unexpired(stored: list[SigningSecret], moment: str) -> list[SigningSecret]:
    """The secrets that sign at `moment`: the newest, and older ones inside their grace."""
    return [s for s in stored if s.expire_time is None or s.expire_time > moment]


def signing(stored: list[SigningSecret], moment: str) -> list[str]:
    return [s.secret for s in unexpired(stored, moment)]


def webhook_view(
    obj: dict[str, Any], secrets_: list[SigningSecret], new_signing_secret: str | None = None
) -> dict[str, Any]:
    """A Webhook resource as the SDK's `Webhook`: its secrets only truncated, except the one
    just made."""
    spec = WebhookSpec.from_kube(obj["spec"])
    status = WebhookStatus.from_kube(obj.get("status") or {})
    meta = obj["metadata"]
    created = meta.get("creationTimestamp")
    return WebhookObject(
        id=meta["name"],
        uri=spec.uri,
        subscribed_events=spec.subscribed_events,
        name=spec.name,
        state=status.state if spec.state == "enabled" and status.state else spec.state,
        create_time=created,
        update_time=(meta.get("annotations") or {}).get(UPDATED_ANNOTATION) or created,
        signing_secrets=[
            ShownSecret(truncated_secret=truncated(s.secret), expire_time=s.expire_time)
            for s in secrets_
        ],
        new_signing_secret=new_signing_secret,
    ).to_wire()


def event_body(event: str, timestamp: str, data: dict[str, Any]) -> dict[str, Any]:
    """A thin payload, as Standard Webhooks recommends: the receiver fetches the rest."""
    return {"type": event, "timestamp": timestamp, "data": data}
