"""The Triggers API: a tenant's schedules are Trigger resources in its namespace (what
`kubectl get triggers -n <tenant>` shows); the operator fires them. Each execution is an
interaction of the tenant, labelled with its trigger."""

from __future__ import annotations

import re
import secrets
from typing import Any

from aiohttp import web

from tether import environment_claims, trigger_runs
from tether.api import UPDATED_ANNOTATION, resource
from tether.api.trigger import (
    TRIGGER_ID,
    CreateTriggerRequest,
    TriggerSpec,
    TriggerStatus,
    UpdateTriggerRequest,
    trigger_view,
)
from tether.environment_claims import now

from . import interactions
from .auth import TENANT
from .errors import ApiError, not_found
from .parsing import page_size, read_json
from .state import STATE, State


async def _found(state: State, namespace: str, trigger: str) -> dict[str, Any]:
    # only a trigger id reaches the API server: `.` or an encoded slash would name another path
    obj = (
        await state.kube.get("triggers", namespace, trigger)
        if re.match(TRIGGER_ID, trigger)
        else None
    )
    if obj is None:
        raise not_found("trigger", trigger)
    return obj


async def _view(state: State, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    runs = await trigger_runs.executions(state.kube, meta["namespace"], meta["name"])
    return trigger_view(obj, runs)


def _addressed(request: web.Request, key: str = "trigger") -> tuple[State, str, str]:
    return request.config_dict[STATE], request[TENANT], request.match_info[key]


async def list_(request: web.Request) -> web.Response:
    state, namespace = request.config_dict[STATE], request[TENANT]
    found = await state.page(
        "triggers", namespace, page_size(request), request.query.get("page_token", "")
    )
    body: dict[str, Any] = {"triggers": [await _view(state, t) for t in found["items"]]}
    if following := found["metadata"].get("continue"):
        body["next_page_token"] = following
    return web.json_response(body)


async def create(request: web.Request) -> web.Response:
    """A schedule for an agent run, checked as the run's own create would be, whole, before
    anything is made."""
    state, namespace = request.config_dict[STATE], request[TENANT]
    body = CreateTriggerRequest.from_wire(await read_json(request))
    interaction = body.interaction
    if not interaction.agent:
        raise ApiError(400, "interaction.agent: a trigger runs an agent; name one")
    if body.environment_id and interaction.environment is not None:
        raise ApiError(400, "environment_id: give it or interaction.environment, not both")
    if body.environment_id:
        try:
            await environment_claims.find(state.kube, namespace, body.environment_id)
        except environment_claims.EnvironmentUnavailable as error:
            raise ApiError(400, f"environment_id: {error.message}") from error
    try:
        await interactions.check_spec(state, namespace, interaction.spec())
    except ApiError as error:
        raise ApiError(400, f"interaction: {error.message}") from error
    spec = TriggerSpec(
        interaction=interaction.model_dump(
            mode="json", exclude={"background", "stream"}, exclude_none=True
        ),
        **body.model_dump(exclude={"interaction"}, exclude_none=True),
    )
    made = resource("Trigger", namespace, f"tr-{secrets.token_hex(6)}", spec.to_kube())
    created = await state.kube.create("triggers", namespace, made)
    return web.json_response(await _view(state, created))


async def get(request: web.Request) -> web.Response:
    state, namespace, trigger = _addressed(request)
    return web.json_response(await _view(state, await _found(state, namespace, trigger)))


async def update(request: web.Request) -> web.Response:
    """A new display name, or a pause or resume; resuming a trigger that paused itself after
    failures starts its count of failures again."""
    state, namespace, trigger = _addressed(request)
    obj = await _found(state, namespace, trigger)
    body = UpdateTriggerRequest.from_wire(await read_json(request))
    status = body.status
    if status == "error":
        raise ApiError(400, "status: error is set by the platform; set active or paused")
    spec: dict[str, Any] = {}
    if "display_name" in body.model_fields_set:
        spec["displayName"] = body.display_name
    if status is not None:
        spec["status"] = status
    patch = {"metadata": {"annotations": {UPDATED_ANNOTATION: now()}}, "spec": spec}
    updated = await state.kube.patch("triggers", namespace, trigger, patch)
    current = TriggerStatus.from_kube(obj.get("status") or {})
    if status == "active" and (current.errored or obj["spec"].get("status") == "paused"):
        updated = await state.kube.patch_status(
            "triggers", namespace, trigger, {"errored": None, "lastResumeTime": now()}
        )
    elif status == "paused" and obj["spec"].get("status") != "paused":
        updated = await state.kube.patch_status(
            "triggers", namespace, trigger, {"lastPauseTime": now()}
        )
    return web.json_response(await _view(state, updated))


async def delete(request: web.Request) -> web.Response:
    """The schedule goes; the interactions it ran stay, as the tenant's."""
    state, namespace, trigger = _addressed(request)
    await _found(state, namespace, trigger)
    await state.kube.delete("triggers", namespace, trigger)
    return web.json_response({})


async def run(request: web.Request) -> web.Response:
    """An execution now, whatever the schedule says."""
    state, namespace, trigger = _addressed(request, "trigger_id")
    obj = await _found(state, namespace, trigger)
    try:
        name = await trigger_runs.start(state.kube, obj, now())
    except trigger_runs.NotStarted as error:
        raise ApiError(409, str(error), "failed_precondition") from error
    await state.kube.patch_status(
        "triggers", namespace, trigger, {"lastRunTime": now(), "previousInteractionId": name}
    )
    runs = await trigger_runs.executions(state.kube, namespace, trigger)
    return web.json_response(next(r for r in runs if r["id"] == name))


async def list_executions(request: web.Request) -> web.Response:
    """The trigger's executions, newest first, a page at a time."""
    state, namespace, trigger = _addressed(request, "trigger_id")
    await _found(state, namespace, trigger)
    token = request.query.get("page_token", "0")
    if not token.isdigit():
        raise ApiError(400, f"page_token {token!r} is not valid; list again without it")
    start, size = int(token), page_size(request)
    runs = await trigger_runs.executions(state.kube, namespace, trigger)
    body: dict[str, Any] = {"trigger_executions": runs[start : start + size]}
    if start + size < len(runs):
        body["next_page_token"] = str(start + size)
    return web.json_response(body)


def add_routes(api: web.Application) -> None:
    api.router.add_get("/triggers", list_)
    api.router.add_post("/triggers", create)
    api.router.add_get("/triggers/{trigger}", get)
    api.router.add_patch("/triggers/{trigger}", update)
    api.router.add_delete("/triggers/{trigger}", delete)
    api.router.add_post("/triggers/{trigger_id}/executions", run)
    api.router.add_get("/triggers/{trigger_id}/executions", list_executions)
