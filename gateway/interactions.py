"""POST/GET/DELETE /v1/interactions…: the one endpoint, turned into Interaction resources."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from typing import Any

from aiohttp import web

from tether import catalog
from tether.api import API_VERSION
from tether.api.interaction import (
    ACCEPTED_ANNOTATION,
    CANCEL_ANNOTATION,
    KIND_LABEL,
    TERMINAL_PHASES,
    CreateInteractionRequest,
    InteractionSpec,
)
from tether.api.views import interaction_view
from tether.events import InvalidEventId, check_event_id, was_unstored
from tether.lifecycle import erase

from .errors import ApiError, not_found
from .state import STATE, State
from .streaming import stream_events, wait_for_end


def new_id() -> str:
    return f"ix-{secrets.token_hex(10)}"


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError as error:
        raise ApiError(
            400, f"request body is not valid JSON: {error.msg} at position {error.pos}"
        ) from error
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def query_flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ApiError(400, f"query parameter {name} must be true or false, not {value!r}")


async def create(request: web.Request) -> web.StreamResponse:
    state, namespace = request.app[STATE], request["namespace"]
    create_request = CreateInteractionRequest.from_wire(await read_json(request))
    spec = create_request.spec()
    _refuse_what_would_be_ignored(spec)
    await _check_target(state, namespace, spec.model, spec.agent)
    if spec.previous_interaction_id:
        await _check_previous(state, namespace, spec.previous_interaction_id)

    name = new_id()
    labels = {**(spec.labels or {}), KIND_LABEL: "model" if spec.model else "agent"}
    created = await state.kube.create(
        "interactions",
        namespace,
        {
            "apiVersion": API_VERSION,
            "kind": "Interaction",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {ACCEPTED_ANNOTATION: f"{time.time():.6f}"},
            },
            "spec": spec.to_kube(),
        },
    )
    if create_request.stream:
        return await stream_events(request, state, namespace, name, after="0")
    if spec.background:
        return web.json_response(interaction_view(created, include_input=False))
    final = await wait_for_end(state, namespace, name, state.settings.sync_wait_seconds)
    if final is None:  # still running after the wait: answer with what there is
        final = interaction_view(await _get(state, namespace, name), include_input=False)
    if final["status"] == "failed":
        error = (final.get("errors") or [{"code": "failed", "message": "the run failed"}])[0]
        raise ApiError(502, f"interaction {name} failed: {error['message']}", error["code"])
    return web.json_response(final)


async def get(request: web.Request) -> web.StreamResponse:
    state, namespace, name = request.app[STATE], request["namespace"], request.match_info["id"]
    obj = await _get(state, namespace, name)
    if query_flag(request, "stream", False):
        after = request.query.get("last_event_id") or request.headers.get("Last-Event-ID") or "0"
        if after != "0":
            try:
                check_event_id(after)
            except InvalidEventId as error:
                raise ApiError(400, str(error)) from error
        return await stream_events(request, state, namespace, name, after=after, current=obj)
    return web.json_response(
        interaction_view(obj, include_input=query_flag(request, "include_input", True))
    )


async def cancel(request: web.Request) -> web.Response:
    state, namespace, name = request.app[STATE], request["namespace"], request.match_info["id"]
    obj = await _get(state, namespace, name)
    phase = (obj.get("status") or {}).get("phase")
    if phase == "cancelled":
        return web.json_response(interaction_view(obj, include_input=False))
    if phase in TERMINAL_PHASES:
        raise ApiError(
            400,
            f"interaction {name!r} has already ended ({phase}); only a running interaction "
            "can be cancelled",
            "failed_precondition",
        )
    stamp = dt.datetime.now(dt.UTC).isoformat()
    await state.kube.patch(
        "interactions", namespace, name, {"metadata": {"annotations": {CANCEL_ANNOTATION: stamp}}}
    )
    final = await wait_for_end(state, namespace, name, timeout=30)
    return web.json_response(
        final or interaction_view(await _get(state, namespace, name), include_input=False)
    )


async def delete(request: web.Request) -> web.Response:
    state, namespace, name = request.app[STATE], request["namespace"], request.match_info["id"]
    if not await erase(state.kube, state.events, state.runs, namespace, name):
        raise not_found("interaction", name)
    return web.json_response({})


async def list_(request: web.Request) -> web.Response:
    """Tether's addition: page through a tenant's interactions, by status and label."""
    state, namespace = request.app[STATE], request["namespace"]
    try:
        page_size = int(request.query.get("page_size", "50"))
    except ValueError as error:
        raise ApiError(400, "page_size must be an integer") from error
    if not 1 <= page_size <= 1000:
        raise ApiError(400, "page_size must be between 1 and 1000")
    options: dict[str, Any] = {"limit": page_size}
    if token := request.query.get("page_token"):
        options["_continue"] = token
    if status := request.query.get("status"):
        options["field_selector"] = f"status.phase={status}"
    selectors = []
    for label in request.query.getall("label", []):
        key, sep, value = label.partition(":")
        if not sep or not key:
            raise ApiError(400, f"label filter {label!r} must look like key:value")
        selectors.append(f"{key}={value}")
    if selectors:
        options["label_selector"] = ",".join(selectors)
    found = await state.kube.list("interactions", namespace, **options)
    body: dict[str, Any] = {
        "interactions": [interaction_view(item, include_input=False) for item in found["items"]]
    }
    if next_token := found["metadata"].get("continue"):
        body["next_page_token"] = next_token
    return web.json_response(body)


async def _get(state: State, namespace: str, name: str) -> dict[str, Any]:
    obj = await state.kube.get("interactions", namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        raise not_found("interaction", name)
    return obj


def _refuse_what_would_be_ignored(spec: InteractionSpec) -> None:
    """Say no now rather than accept a setting that nothing would act on."""
    if spec.webhook_config is not None:
        raise ApiError(
            400,
            "webhook_config is not supported yet: stream the interaction, or poll it",
            "unimplemented",
        )
    if isinstance(spec.environment, str) and spec.environment != "remote":
        raise ApiError(
            400,
            f"environment {spec.environment!r}: persistent Environments are not supported yet; "
            'use "remote" or an environment object',
            "unimplemented",
        )
    if spec.environment is not None and spec.model:
        raise ApiError(400, "environment applies only to agent interactions")


async def _check_target(state: State, namespace: str, model: str | None, agent: str | None) -> None:
    namespaces = [namespace, state.settings.system_namespace]
    if model and await catalog.find(state.kube, "models", namespaces, model) is None:
        raise not_found("model", model)
    if agent and await catalog.find(state.kube, "agents", namespaces, agent) is None:
        raise not_found("agent", agent)


async def _check_previous(state: State, namespace: str, previous: str) -> None:
    obj = await state.kube.get("interactions", namespace, previous)
    if obj is None:
        if await was_unstored(state.events.redis, namespace, previous):
            raise ApiError(
                400,
                f"previous interaction {previous!r} was created with store=false and was not "
                "kept, so it cannot be continued",
                "failed_precondition",
            )
        raise ApiError(404, f"previous interaction {previous!r} not found")
    if obj["spec"].get("store") is False:
        raise ApiError(
            400,
            f"previous interaction {previous!r} was created with store=false and cannot be "
            "continued",
            "failed_precondition",
        )
    phase = (obj.get("status") or {}).get("phase") or "queued"
    if phase not in TERMINAL_PHASES and phase != "requires_action":
        raise ApiError(
            400,
            f"previous interaction {previous!r} is still {phase}; continue it once it has ended",
            "failed_precondition",
        )


def add_routes(app: web.Application) -> None:
    for version in ("v1", "v1beta"):
        base = f"/{version}/interactions"
        app.router.add_post(base, create)
        app.router.add_get(base, list_)
        app.router.add_get(base + "/{id}", get)
        app.router.add_delete(base + "/{id}", delete)
        app.router.add_post(base + "/{id}/cancel", cancel)
