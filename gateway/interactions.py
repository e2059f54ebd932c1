"""POST/GET/DELETE /v1/interactions…: the one endpoint, turned into Interaction resources."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from typing import Any, get_args

from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException

from tether import agents, environment_claims, mcp_tools, outbound, sandbox_policy
from tether.api import API_VERSION
from tether.api.common import SandboxEnvironment
from tether.api.interaction import (
    ACCEPTED_ANNOTATION,
    CANCEL_ANNOTATION,
    KIND_LABEL,
    MAX_SPEC_BYTES,
    TERMINAL_PHASES,
    CreateInteractionRequest,
    InteractionSpec,
    Phase,
)
from tether.api.views import interaction_view
from tether.chain import output_steps
from tether.conversation import awaited_calls, function_results_problem, input_steps
from tether.errors import RunError
from tether.providers.capabilities import MEDIA_TYPES, media_refusals, refusals
from tether.store.erase import erase
from tether.store.events import InvalidEventId, check_event_id, was_unstored

from . import credentials, idempotency, webhooks
from .auth import TENANT
from .errors import ApiError, not_found
from .parsing import page_size, query_flag, read_json
from .state import STATE, State, addressed
from .streaming import stream_events, wait_for_end

log = logging.getLogger("tether.gateway")


def new_id() -> str:
    return f"ix-{secrets.token_hex(10)}"


async def create(request: web.Request) -> web.StreamResponse:
    state, namespace = request.config_dict[STATE], request[TENANT]
    create_request = CreateInteractionRequest.from_wire(await read_json(request))
    spec = create_request.spec()
    body = spec.to_kube()
    fingerprint = idempotency.fingerprint(body)
    if (size := len(fingerprint.canonical)) > MAX_SPEC_BYTES:
        raise ApiError(
            413,
            f"the request is {size} bytes as stored; an interaction is at most {MAX_SPEC_BYTES}",
        )
    key = idempotency.key_of(request.headers)
    if key is not None:
        name = idempotency.interaction_id(namespace, key)
        if existing := await _replay(state, namespace, name, fingerprint.digest):
            return await _answer(request, state, create_request, existing)
    else:
        name = new_id()
    await check_spec(state, namespace, spec)

    labels = {**(spec.labels or {}), KIND_LABEL: "model" if spec.model else "agent"}
    annotations = {ACCEPTED_ANNOTATION: f"{time.time():.6f}"}
    if key is not None:
        annotations[idempotency.REQUEST_ANNOTATION] = fingerprint.digest
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "Interaction",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": body,
    }
    env_id = spec.environment_id()
    if env_id is not None:
        await _claim(state, namespace, env_id, name)
    try:
        created = await state.kube.create("interactions", namespace, manifest)
    except ApiException as error:
        # The same key at the same moment from another request: answer as that one does.
        existing = None
        if error.status == 409 and key is not None:
            existing = await _replay(state, namespace, name, fingerprint.digest)
        if existing is None:
            if env_id is not None:
                await environment_claims.release(state.kube, namespace, env_id, name)
            raise
        created = existing
    return await _answer(request, state, create_request, created)


async def _claim(state: State, namespace: str, env_id: str, name: str) -> None:
    """Take the environment for the new run: one run at a time, so a second is a 409."""
    try:
        await environment_claims.claim(state.kube, namespace, env_id, name)
    except environment_claims.EnvironmentUnavailable as error:
        if error.code == "not_found":
            raise not_found("environment", env_id) from error
        code = "environment_busy" if error.code == "busy" else "failed_precondition"
        raise ApiError(409, error.message, code) from error


async def _replay(state: State, namespace: str, name: str, digest: str) -> dict[str, Any] | None:
    """The interaction an Idempotency-Key already created, if it is still there."""
    obj = await state.kube.get("interactions", namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        if await was_unstored(state.events.redis, namespace, name):
            raise ApiError(
                400,
                f"this Idempotency-Key created interaction {name!r} with store=false; it has "
                "ended and was not kept",
                "failed_precondition",
            )
        return None
    if (obj["metadata"].get("annotations") or {}).get(idempotency.REQUEST_ANNOTATION) != digest:
        raise ApiError(
            422,
            f"this Idempotency-Key was used for a different request (interaction {name!r}); "
            "use a new key for a new request",
        )
    return obj


async def _answer(
    request: web.Request, state: State, create_request, obj: dict[str, Any]
) -> web.StreamResponse:
    """Answer a create once its interaction exists: never with a code the SDK retries (a 5xx,
    408, 409, 429), or a retry would run the model again. A run that failed is answered with
    the failed interaction itself."""
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    if create_request.stream:
        return await stream_events(request, state, namespace, name, after="0")
    ended = (obj.get("status") or {}).get("phase") in TERMINAL_PHASES
    if create_request.background or ended:
        return web.json_response(await view_of(state, obj, include_input=False))
    try:
        final = await wait_for_end(state, namespace, name, state.settings.sync_wait_seconds)
        if final is None:  # still running after the wait: answer with what there is
            final = await view_of(state, await state.interaction(namespace, name), False)
    except ApiError:
        raise
    except Exception:
        log.warning("could not wait for %s/%s; answering with what is known", namespace, name)
        final = await _known(state, obj)
    return web.json_response(final)


async def _known(state: State, obj: dict[str, Any]) -> dict[str, Any]:
    """The interaction as it stands, or as it was created if the cluster cannot say."""
    meta = obj["metadata"]
    try:
        return await view_of(state, await state.interaction(meta["namespace"], meta["name"]), False)
    except ApiError:
        raise
    except Exception:
        return interaction_view(obj, include_input=False)


async def view_of(state: State, obj: dict[str, Any], include_input: bool) -> dict[str, Any]:
    """The wire object, with output steps kept outside the record brought back in."""
    outputs = None
    if (obj.get("status") or {}).get("stepsRef"):
        try:
            outputs = await output_steps(state.outputs, obj)
        except RunError as error:
            raise ApiError(410, error.message, error.code) from error
    return interaction_view(obj, include_input=include_input, outputs=outputs)


async def get(request: web.Request) -> web.StreamResponse:
    state, namespace, name = addressed(request)
    obj = await state.interaction(namespace, name)
    if query_flag(request, "stream", False):
        after = request.query.get("last_event_id") or request.headers.get("Last-Event-ID") or "0"
        if after != "0":
            try:
                check_event_id(after)
            except InvalidEventId as error:
                raise ApiError(400, str(error)) from error
        return await stream_events(request, state, namespace, name, after=after, current=obj)
    include_input = query_flag(request, "include_input", True)
    return web.json_response(await view_of(state, obj, include_input))


async def cancel(request: web.Request) -> web.Response:
    state, namespace, name = addressed(request)
    obj = await state.interaction(namespace, name)
    phase = (obj.get("status") or {}).get("phase")
    if phase == "cancelled":
        return web.json_response(await view_of(state, obj, include_input=False))
    if phase in TERMINAL_PHASES:
        raise ApiError(
            400,
            f"interaction {name!r} has already ended ({phase}); only a running interaction "
            "can be cancelled",
            "failed_precondition",
        )
    stamp = dt.datetime.now(dt.UTC).isoformat()
    try:
        await state.kube.patch(
            "interactions",
            namespace,
            name,
            {"metadata": {"annotations": {CANCEL_ANNOTATION: stamp}}},
        )
    except ApiException as error:
        if error.status == 404:
            raise not_found("interaction", name) from error
        raise
    # The run may end otherwise first (it completed meanwhile): the answer says how it ended.
    try:
        final = await wait_for_end(state, namespace, name, timeout=30)
    except Exception:
        log.warning("could not wait for the cancel of %s/%s", namespace, name)
        final = None
    return web.json_response(final or await _known(state, obj))


async def delete(request: web.Request) -> web.Response:
    state, namespace, name = addressed(request)
    if not await erase(state.kube, state.events, namespace, name, state.run_store, state.outputs):
        raise not_found("interaction", name)
    return web.json_response({})


async def list_(request: web.Request) -> web.Response:
    """Tether's addition: page through a tenant's interactions, by status and label."""
    state, namespace = request.config_dict[STATE], request[TENANT]
    options: dict[str, Any] = {}
    if status := request.query.get("status"):
        if status not in get_args(Phase):
            raise ApiError(400, f"status {status!r} is not one of {', '.join(get_args(Phase))}")
        options["field_selector"] = f"status.phase={status}"
    selectors = []
    for label in request.query.getall("label", []):
        key, sep, value = label.partition(":")
        if not sep or not key:
            raise ApiError(400, f"label filter {label!r} must look like key:value")
        selectors.append(f"{key}={value}")
    if selectors:
        options["label_selector"] = ",".join(selectors)
    token = request.query.get("page_token", "")
    found = await state.page("interactions", namespace, page_size(request), token, **options)
    body: dict[str, Any] = {
        "interactions": [
            await view_of(state, await state.events.as_announced(item), False)
            for item in found["items"]
        ]
    }
    if next_token := found["metadata"].get("continue"):
        body["next_page_token"] = next_token
    return web.json_response(body)


async def check_spec(state: State, namespace: str, spec: InteractionSpec) -> None:
    """Everything a new interaction must be, beyond its shape: what it names exists, is the
    tenant's to use, and can act on all it asks. Otherwise nothing is created."""
    _refuse_what_would_be_ignored(spec)
    await _check_target(state, namespace, spec)
    await _check_previous(state, namespace, spec)
    if spec.webhook_config and (
        problems := await webhooks.config_problems(state, namespace, spec.webhook_config)
    ):
        raise ApiError(400, "; ".join(problems))


def _refuse_what_would_be_ignored(spec: InteractionSpec) -> None:
    """Say no now rather than accept a setting that nothing would act on."""
    if spec.environment is not None and spec.model:
        raise ApiError(400, "environment applies only to agent interactions")
    if spec.agent and (problems := list(agents.tool_problems(spec.tools or []))):
        raise ApiError(400, "; ".join(problems))
    if isinstance(spec.environment, SandboxEnvironment):
        try:
            sandbox_policy.refuse_secrets(spec.environment)
        except sandbox_policy.SandboxPolicyError as error:
            raise ApiError(400, str(error)) from error


async def _check_target(state: State, namespace: str, spec: InteractionSpec) -> None:
    """The model and agent named exist, and the sandbox asked for is within the platform's
    policy, and the Model routed to honours all the spec asks: otherwise nothing is created."""
    if spec.model:
        model = await state.catalog.model(namespace, spec.model)
        if model is None:
            raise not_found("model", spec.model)
        if refused := refusals(model.spec.provider, spec.model, spec) + _mcp_problems(state, spec):
            raise ApiError(400, "; ".join(refused))
    agent_model = spec.agent_config.model if spec.agent_config else None
    if agent_model and await state.catalog.model(namespace, agent_model) is None:
        raise not_found("model", agent_model)
    if spec.agent and await state.catalog.agent(namespace, spec.agent) is None:
        raise not_found("agent", spec.agent)
    if spec.agent and (refused := await _agent_media_refusals(state, namespace, spec)):
        raise ApiError(400, "; ".join(refused))
    if isinstance(spec.environment, SandboxEnvironment):
        policy = sandbox_policy.SandboxPolicy.from_settings(state.settings)
        try:
            sandbox_policy.check_environment(spec.environment, policy)
        except sandbox_policy.SandboxPolicyError as error:
            raise ApiError(400, str(error)) from error
        named = await credentials.reference_problems(
            state, namespace, spec.environment, "environment"
        )
        if named:
            raise ApiError(400, "; ".join(named))


def _mcp_problems(state: State, spec: InteractionSpec) -> list[str]:
    """A model interaction's MCP servers are called from the platform: under its outbound rules
    (an agent run's, from its sandbox, under the run's allowlist)."""
    tools = [tool.to_wire() for tool in spec.tools or []]
    return mcp_tools.problems(tools) + [
        problem
        for i, tool in enumerate(tools)
        if tool["type"] == "mcp_server" and tool.get("url")
        for problem in outbound.url_problems(
            tool["url"], state.settings, f"tools[{i}].url", "MCP servers"
        )
    ]


async def _agent_media_refusals(state: State, namespace: str, spec: InteractionSpec) -> list[str]:
    """The media parts of an agent's input that the model driving it cannot take. A run whose
    model cannot be told yet is left to fail at its start, with the reason."""
    steps = input_steps(spec.to_wire()["input"])
    if not any(p.get("type") in MEDIA_TYPES for s in steps for p in s.get("content") or []):
        return []
    try:
        run = agents.resolve(*await state.catalog.agent_chain(namespace, spec.agent), spec)
    except RunError:
        return []
    model = await state.catalog.model(namespace, run.model)
    return media_refusals(model.spec.provider, run.model, steps) if model else []


async def _check_previous(state: State, namespace: str, spec: InteractionSpec) -> None:
    """The interaction continues one that has ended, and answers the function calls it awaits."""
    steps = input_steps(spec.to_wire()["input"])
    if not (previous := spec.previous_interaction_id):
        if problem := function_results_problem([], steps):
            raise ApiError(400, problem)
        return
    obj = await state.kube.get("interactions", namespace, previous)
    if obj is not None:
        obj = await state.events.as_announced(obj)
    else:
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
    if phase not in TERMINAL_PHASES:
        raise ApiError(
            400,
            f"previous interaction {previous!r} is still {phase}; continue it once it has ended",
            "failed_precondition",
        )
    awaited = []
    if phase == "requires_action":
        try:
            awaited = awaited_calls(await output_steps(state.outputs, obj))
        except RunError as error:
            raise ApiError(400, error.message, "failed_precondition") from error
    if problem := function_results_problem(awaited, steps):
        raise ApiError(400, f"previous interaction {previous!r}: {problem}")


def add_routes(api: web.Application) -> None:
    api.router.add_post("/interactions", create)
    api.router.add_get("/interactions", list_)
    api.router.add_get("/interactions/{id}", get)
    api.router.add_delete("/interactions/{id}", delete)
    api.router.add_post("/interactions/{id}/cancel", cancel)
