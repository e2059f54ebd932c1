"""The Agents API: a tenant's own agents are Agent resources in its namespace (what `kubectl get
agents -n <tenant>` shows); the platform's agents (`eva` and its aliases, in the system
namespace) are listed and readable by every tenant, and changed by none."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from tether import agents, sandbox_policy
from tether.api import resource
from tether.api.agent import AgentObject, AgentSpec
from tether.api.common import AgentConfig
from tether.api.interaction import InteractionSpec
from tether.catalog import MAX_BASE_AGENTS, is_object_name
from tether.errors import RunError

from .auth import TENANT
from .errors import ApiError, describe_validation, not_found
from .parsing import page_size, read_json
from .state import STATE, State

_PHASES = ("tenant", "platform")
"""A list pages through the tenant's agents, then the platform's."""


def agent_view(obj: dict[str, Any]) -> dict[str, Any]:
    """An Agent resource as the wire object the SDK reads. Its agent_config goes without a
    `type`: the SDK reads an agent's config as the hosted API's only kind (antigravity), and
    Tether's limits (max_steps, timeout_seconds) beside it as fields of their own."""
    spec = AgentSpec.from_kube(obj.get("spec") or {})
    view = AgentObject(id=obj["metadata"]["name"], **spec.model_dump(exclude_none=True)).to_wire()
    if "agent_config" in view:
        view["agent_config"].pop("type", None)
    return view


async def list_(request: web.Request) -> web.Response:
    state, namespace = request.config_dict[STATE], request[TENANT]
    size = page_size(request)
    phase, _, cont = (request.query.get("page_token") or "tenant:").partition(":")
    if phase not in _PHASES:
        raise ApiError(400, "page_token is not one this API issued; list again without it")
    where = {"tenant": namespace, "platform": state.settings.system_namespace}
    for current in _PHASES[_PHASES.index(phase) :]:
        found = await state.page("agents", where[current], size, cont)
        following = found["metadata"].get("continue")
        later = _PHASES[_PHASES.index(current) + 1 :]
        if found["items"] or following:
            body: dict[str, Any] = {"agents": [agent_view(item) for item in found["items"]]}
            if following:
                body["next_page_token"] = f"{current}:{following}"
            elif later:
                body["next_page_token"] = f"{later[0]}:"
            return web.json_response(body)
        cont = ""
    return web.json_response({"agents": []})


async def create(request: web.Request) -> web.Response:
    """A tenant's agent, checked whole before anything is created. A retried create of the same
    agent answers with it; another agent under a taken id is a 409."""
    state, namespace = request.config_dict[STATE], request[TENANT]
    body = AgentObject.from_wire(await read_json(request))
    if body.aliases is not None:
        raise ApiError(400, "aliases: only platform agents have aliases")
    id_ = body.id or f"agent-{secrets.token_hex(6)}"
    spec = _as_limits(body.spec())
    await _check(state, namespace, id_, spec)
    try:
        created = await state.kube.create(
            "agents", namespace, resource("Agent", namespace, id_, spec.to_kube())
        )
    except ApiException as error:
        if error.status != 409:
            raise
        existing = await state.kube.get("agents", namespace, id_)
        if existing is not None and existing.get("spec") == spec.to_kube():
            return web.json_response(agent_view(existing))
        raise ApiError(409, f"agent {id_!r} already exists", "already_exists") from error
    return web.json_response(agent_view(created))


async def get(request: web.Request) -> web.Response:
    state, namespace, id_ = _addressed(request)
    found = await state.catalog.agent(namespace, id_)
    if found is None:
        raise not_found("agent", id_)
    return web.json_response(agent_view(found))


async def delete(request: web.Request) -> web.Response:
    state, namespace, id_ = _addressed(request)
    own = await state.kube.get("agents", namespace, id_) if is_object_name(id_) else None
    if own is None:
        if await state.catalog.agent(namespace, id_) is not None:
            raise ApiError(
                403,
                f"agent {id_!r} is a platform agent: tenants can use it, not delete it",
                "permission_denied",
            )
        raise not_found("agent", id_)
    mine = (await state.kube.list("agents", namespace))["items"]
    if dependents := sorted(
        a["metadata"]["name"] for a in mine if (a.get("spec") or {}).get("baseAgent") == id_
    ):
        raise ApiError(
            409,
            f"agent {id_!r} is the base_agent of {', '.join(map(repr, dependents))}: "
            "delete or change those first",
            "failed_precondition",
        )
    if not await state.kube.delete("agents", namespace, id_):
        raise not_found("agent", id_)
    return web.json_response({})


def _as_limits(spec: AgentSpec) -> AgentSpec:
    """An agent's agent_config is its model and limits, whatever `type` the SDK sent (always
    antigravity): a request's config of either type then overrides it field by field."""
    if spec.agent_config is None:
        return spec
    config = AgentConfig(**spec.agent_config.model_dump(exclude={"type"}, exclude_none=True))
    return spec.model_copy(update={"agent_config": config})


def _addressed(request: web.Request) -> tuple[State, str, str]:
    # An id reaches the Kubernetes API only as a checked object name (is_object_name), or as a
    # value compared with aliases: any other string is simply not found.
    return request.config_dict[STATE], request[TENANT], request.match_info["agent"][:253]


async def _check(state: State, namespace: str, id_: str, spec: AgentSpec) -> None:
    """Everything about a new agent that can be checked now, each problem named by its field."""
    problems = list(agents.tool_problems(spec.tools or []))
    found = await state.catalog.agent(namespace, id_)
    if found is not None and found["metadata"]["namespace"] != namespace:
        raise ApiError(409, f"agent id {id_!r} is a platform agent's", "already_exists")
    chain: list[AgentSpec] = []
    if spec.base_agent:
        try:
            _, chain = await state.catalog.agent_chain(namespace, spec.base_agent)
        except RunError as error:
            problems.append(f"base_agent: {error.message}")
        if len(chain) >= MAX_BASE_AGENTS:
            problems.append(f"base_agent: at most {MAX_BASE_AGENTS} agents may stand on each other")
    if spec.base_environment is not None:
        policy = sandbox_policy.SandboxPolicy.from_settings(state.settings)
        try:
            sandbox_policy.refuse_secrets(spec.base_environment)
            sandbox_policy.check_environment(spec.base_environment, policy)
        except sandbox_policy.SandboxPolicyError as error:
            problems.append(f"base_environment: {error}")
    # The model the agent would run on, with its environment left out (checked above).
    bare = spec.model_copy(update={"base_environment": None})
    try:
        run = agents.resolve(id_, [*chain, bare], InteractionSpec(agent=id_, input="check"))
    except RunError as error:
        problems.append(f"agent_config: {error.message}")
    except ValidationError as error:  # the chain's settings do not combine
        problems.append(describe_validation(error))
    else:
        if await state.catalog.model(namespace, run.model) is None:
            problems.append(f"agent_config.model: model {run.model!r} not found")
    if problems:
        raise ApiError(400, "; ".join(problems))


def add_routes(api: web.Application) -> None:
    api.router.add_get("/agents", list_)
    api.router.add_post("/agents", create)
    api.router.add_get("/agents/{agent}", get)
    api.router.add_delete("/agents/{agent}", delete)
