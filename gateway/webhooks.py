"""The Webhooks API: a tenant's endpoints are Webhook resources in its namespace (what
`kubectl get webhooks -n <tenant>` shows), each with a Secret of signing secrets that it owns.
A secret is shown whole once, when it is made (create, rotate); listings show it truncated.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Any

from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException

from tether import outbound, webhook_sender
from tether.api import API_VERSION, UPDATED_ANNOTATION, resource
from tether.api.interaction import WebhookConfig
from tether.api.webhook import (
    PING,
    WEBHOOK_ID,
    CreateWebhookRequest,
    RotateSigningSecretRequest,
    SigningSecret,
    UpdateWebhookRequest,
    WebhookSpec,
    enabled,
    event_body,
    new_secret,
    secret_name,
    signing,
    stored_secrets,
    unexpired,
    webhook_view,
)
from tether.environment_claims import now
from tether.store.webhook_queue import WebhookQueue

from .auth import TENANT
from .errors import ApiError, not_found
from .parsing import page_size, read_json
from .state import STATE, State

ROTATION_GRACE = dt.timedelta(hours=24)


async def config_problems(state: State, namespace: str, config: WebhookConfig) -> list[str]:
    """What is wrong with an interaction's own `webhook_config`. Its deliveries are signed with
    the secrets of the tenant's enabled webhooks, so there must be one."""
    problems = [
        problem
        for i, uri in enumerate(config.uris or [])
        for problem in outbound.url_problems(uri, state.settings, f"webhook_config.uris[{i}]")
    ]
    if config.uris and not any(
        enabled(w) for w in (await state.kube.list("webhooks", namespace)).get("items", [])
    ):
        problems.append(
            "webhook_config.uris: deliveries are signed with the secrets of the tenant's "
            "webhooks, and it has none enabled; register one first (POST /v1/webhooks)"
        )
    return problems


async def _secrets(state: State, namespace: str, webhook: str) -> list[SigningSecret]:
    return stored_secrets(await state.kube.secret_value(namespace, secret_name(webhook), "secrets"))


async def _store_secrets(
    state: State, namespace: str, webhook: dict[str, Any], stored: list[SigningSecret]
) -> None:
    """Write the webhook's Secret (made on first write, owned by the Webhook so it goes with
    it)."""
    name = webhook["metadata"]["name"]
    data = {"secrets": json.dumps([s.model_dump(exclude_none=True) for s in stored])}
    body = {
        "metadata": {
            "name": secret_name(name),
            "namespace": namespace,
            "labels": {"tether.dev/webhook": name},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "Webhook",
                    "name": name,
                    "uid": webhook["metadata"]["uid"],
                }
            ],
        },
        "stringData": data,
    }
    try:
        await state.kube.core.create_namespaced_secret(namespace, body)
    except ApiException as error:
        if error.status != 409:
            raise
        await state.kube.core.patch_namespaced_secret(
            secret_name(name), namespace, {"stringData": data}
        )


async def _found(state: State, namespace: str, webhook: str) -> dict[str, Any]:
    # only a webhook id reaches the API server: `.` or an encoded slash would name another path
    found = WEBHOOK_ID.match(webhook)
    obj = await state.kube.get("webhooks", namespace, webhook) if found else None
    if obj is None:
        raise not_found("webhook", webhook)
    return obj


def _addressed(request: web.Request) -> tuple[State, str, str]:
    return request.config_dict[STATE], request[TENANT], request.match_info["webhook"]


async def list_(request: web.Request) -> web.Response:
    state, namespace = request.config_dict[STATE], request[TENANT]
    found = await state.page(
        "webhooks", namespace, page_size(request), request.query.get("page_token", "")
    )
    views = [
        webhook_view(w, await _secrets(state, namespace, w["metadata"]["name"]))
        for w in found["items"]
    ]
    body: dict[str, Any] = {"webhooks": views}
    if following := found["metadata"].get("continue"):
        body["next_page_token"] = following
    return web.json_response(body)


async def create(request: web.Request) -> web.Response:
    state, namespace = request.config_dict[STATE], request[TENANT]
    body = CreateWebhookRequest.from_wire(await read_json(request))
    if problems := outbound.url_problems(body.uri, state.settings, "uri"):
        raise ApiError(400, "; ".join(problems))
    spec = WebhookSpec.model_validate(body.model_dump(exclude_none=True))
    made = resource("Webhook", namespace, f"wh-{secrets.token_hex(6)}", spec.to_kube())
    created = await state.kube.create("webhooks", namespace, made)
    secret = new_secret()
    stored = [SigningSecret(secret=secret)]
    try:
        await _store_secrets(state, namespace, created, stored)
    except BaseException:  # no webhook without its secret
        await state.kube.delete("webhooks", namespace, created["metadata"]["name"])
        raise
    return web.json_response(webhook_view(created, stored, new_signing_secret=secret))


async def get(request: web.Request) -> web.Response:
    state, namespace, webhook = _addressed(request)
    obj = await _found(state, namespace, webhook)
    return web.json_response(webhook_view(obj, await _secrets(state, namespace, webhook)))


async def update(request: web.Request) -> web.Response:
    """Change the fields the body gives (or those `update_mask` lists). Enabling a webhook the
    platform disabled for failed deliveries clears that."""
    state, namespace, webhook = _addressed(request)
    obj = await _found(state, namespace, webhook)
    body = UpdateWebhookRequest.from_wire(await read_json(request))
    given = {name for name in type(body).model_fields if getattr(body, name) is not None}
    if mask := request.query.get("update_mask"):
        named = {field.strip() for field in mask.split(",")}
        if unknown := sorted(named - set(type(body).model_fields)):
            raise ApiError(400, f"update_mask: {', '.join(unknown)} cannot be updated")
        if missing := sorted(given - named):
            raise ApiError(400, f"update_mask: {', '.join(missing)} given but not in the mask")
        given = named
    if body.uri and (problems := outbound.url_problems(body.uri, state.settings, "uri")):
        raise ApiError(400, "; ".join(problems))
    changes = body.model_dump(include=given)
    if "subscribed_events" in changes and not changes["subscribed_events"]:
        raise ApiError(400, "subscribed_events: a webhook needs at least one event")
    spec = WebhookSpec.from_kube(obj["spec"]).model_copy(update=changes)
    patch = {
        "metadata": {"annotations": {UPDATED_ANNOTATION: now()}},
        "spec": WebhookSpec.model_validate(spec.model_dump()).to_kube(),
    }
    updated = await state.kube.patch("webhooks", namespace, webhook, patch)
    if body.state == "enabled" and (obj.get("status") or {}).get("state"):
        updated = await state.kube.patch_status(
            "webhooks", namespace, webhook, {"state": None, "reason": None, "disabled": None}
        )
    return web.json_response(webhook_view(updated, await _secrets(state, namespace, webhook)))


async def delete(request: web.Request) -> web.Response:
    state, namespace, webhook = _addressed(request)
    await _found(state, namespace, webhook)
    await state.kube.delete("webhooks", namespace, webhook)  # its Secret goes with it
    await WebhookQueue(state.events.redis).forget(namespace, webhook)
    return web.json_response({})


async def rotate(request: web.Request) -> web.Response:
    """A new signing secret; the previous ones keep signing beside it for 24 h, or stop now."""
    state, namespace, webhook = _addressed(request)
    obj = await _found(state, namespace, webhook)
    body = RotateSigningSecretRequest.from_wire(await read_json(request, optional=True))
    secret = new_secret()
    kept: list[SigningSecret] = []
    if body.revocation_behavior != "revoke_previous_secrets_immediately":
        until = now(ROTATION_GRACE)
        kept = [
            s.model_copy(update={"expire_time": min(s.expire_time or until, until)})
            for s in unexpired(await _secrets(state, namespace, webhook), now())
        ]
    await _store_secrets(state, namespace, obj, [SigningSecret(secret=secret), *kept])
    return web.json_response({"secret": secret})


async def ping(request: web.Request) -> web.Response:
    """Send the endpoint a signed `webhook.ping` now, and say what it answered."""
    state, namespace, webhook = _addressed(request)
    obj = await _found(state, namespace, webhook)
    await read_json(request, optional=True)
    message = f"msg_ping_{secrets.token_hex(12)}"
    body = event_body(PING, now(), {"webhook": webhook})
    signing_now = signing(await _secrets(state, namespace, webhook), now())
    async with webhook_sender.Sender(state.settings) as sender:
        attempt = await sender.send(obj["spec"]["uri"], message, body, signing_now)
    await WebhookQueue(state.events.redis).record(
        namespace, webhook, attempt.logged(now(), message, PING, 1)
    )
    if not attempt.delivered:
        raise ApiError(502, f"the ping was not delivered: {obj['spec']['uri']} {attempt.outcome()}")
    return web.json_response({})


async def deliveries(request: web.Request) -> web.Response:
    """The endpoint's delivery log: its recent attempts, newest first."""
    state, namespace, webhook = _addressed(request)
    await _found(state, namespace, webhook)
    recent = await WebhookQueue(state.events.redis).recent(namespace, webhook)
    return web.json_response({"deliveries": recent})


def add_routes(api: web.Application) -> None:
    api.router.add_get("/webhooks", list_)
    api.router.add_post("/webhooks", create)
    one = "/webhooks/{webhook:[^{}/:]+}"
    api.router.add_get(one, get)
    api.router.add_patch(one, update)
    api.router.add_delete(one, delete)
    api.router.add_post(one + ":rotateSigningSecret", rotate)
    api.router.add_post(one + ":ping", ping)
    api.router.add_get(one + "/deliveries", deliveries)
