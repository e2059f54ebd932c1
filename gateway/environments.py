"""The Environments API: a tenant's persistent workspaces are Environment resources in its
namespace (what `kubectl get environments -n <tenant>` shows). Every one runs on the cluster
(mode on_demand); one run at a time uses it (environment_claims)."""

from __future__ import annotations

import secrets
import urllib.parse
from typing import Any

from aiohttp import web
from kubernetes.utils.quantity import parse_quantity

from tether import agents, environment_claims, sandbox_policy
from tether.api import resource
from tether.api.common import SandboxEnvironment
from tether.api.environment import (
    CreateEnvironmentRequest,
    EnvironmentObject,
    EnvironmentSpec,
    EnvironmentStatus,
)

from . import credentials
from .auth import TENANT
from .errors import ApiError, not_found
from .parsing import page_size, read_json
from .state import STATE, State

MODES = ("on_demand", "self_hosted")
SOURCE_TYPES = ("inline", "skill", "repository")
"""The sources a run can write into a workspace; a source without a type is inline."""


def environment_view(obj: dict[str, Any]) -> dict[str, Any]:
    """An Environment resource as the wire object the SDK reads; one no run has touched yet is
    active, last updated when it was created."""
    meta = obj["metadata"]
    spec = EnvironmentSpec.from_kube(obj.get("spec") or {})
    status = EnvironmentStatus.from_kube(obj.get("status") or {})
    created = meta.get("creationTimestamp")
    return EnvironmentObject(
        id=meta["name"],
        status=status.phase or "active",
        created=created,
        updated=status.last_accessed or created,
        last_accessed=status.last_accessed,
        size_bytes=status.size_bytes,
        file_count=status.file_count,
        active_interaction=status.active_interaction,
        **spec.model_dump(exclude_none=True),
    ).to_wire()


def create_problems(
    body: CreateEnvironmentRequest, policy: sandbox_policy.SandboxPolicy, max_storage: str
) -> list[str]:
    """Everything wrong with a new environment, each problem named by its field."""
    problems = []
    if body.storage and parse_quantity(body.storage) > parse_quantity(max_storage):
        problems.append(
            f"storage: {body.storage} is more than the platform's maximum of {max_storage}"
        )
    if body.mode == "self_hosted":
        problems.append(
            "mode: self_hosted environments are not supported: Tether runs every environment "
            "on the cluster (mode on_demand)"
        )
    elif body.custom_config is not None:
        problems.append("custom_config: only self_hosted environments take a custom_config")
    if body.from_environment is not None:
        problems.append(
            "from_environment: copying an environment is not supported yet; "
            "create one and upload its files"
        )
    problems.extend(source_problems(body))
    sandbox = SandboxEnvironment(env=body.env, network=body.network)
    try:
        sandbox_policy.refuse_secrets(sandbox)
        sandbox_policy.check_environment(sandbox, policy)
    except sandbox_policy.SandboxPolicyError as error:
        problems.append(str(error))
    return problems


def source_problems(body: CreateEnvironmentRequest):
    """What is wrong with the sources a run would write into the workspace."""
    network = body.network if body.network not in (None, "disabled") else None
    for i, source in enumerate(body.sources or []):
        where, kind = f"sources[{i}]", source.type or "inline"
        if kind not in SOURCE_TYPES:
            yield (
                f"{where}.type: source type {kind!r} is not supported "
                f"(Tether takes {', '.join(SOURCE_TYPES)})"
            )
        elif kind == "repository":
            if not source.source:
                yield f"{where}.source: a repository source needs its URL"
                continue
            try:
                url = agents.repository_url(source.source)
            except agents.AgentConfigError as error:
                yield f"{where}.source: {error.message}"
                continue
            if (
                network is None
                or network.entry_for(urllib.parse.urlsplit(url).hostname or "") is None
            ):
                yield (
                    f"{where}.source: {urllib.parse.urlsplit(url).hostname!r} is not on the "
                    "environment's network allowlist; runs clone it through that network"
                )
        else:
            if source.content is None:
                yield f"{where}.content: a source of type {kind} needs its content"
            if kind == "inline" and not source.target:
                yield f"{where}.target: an inline source needs a target path"


async def list_(request: web.Request) -> web.Response:
    state, namespace = request.config_dict[STATE], request[TENANT]
    mode = request.query.get("mode", "on_demand")
    if mode not in MODES:
        raise ApiError(400, f"mode {mode!r} is not one of {', '.join(MODES)}")
    if mode == "self_hosted":  # Tether runs every environment on the cluster
        return web.json_response({"environments": []})
    token = request.query.get("page_token", "")
    found = await state.page("environments", namespace, page_size(request), token)
    body: dict[str, Any] = {"environments": [environment_view(item) for item in found["items"]]}
    if following := found["metadata"].get("continue"):
        body["next_page_token"] = following
    return web.json_response(body)


async def create(request: web.Request) -> web.Response:
    """A tenant's environment, checked whole before anything is created."""
    state, namespace = request.config_dict[STATE], request[TENANT]
    body = CreateEnvironmentRequest.from_wire(await read_json(request))
    policy = sandbox_policy.SandboxPolicy.from_settings(state.settings)
    problems = create_problems(body, policy, state.settings.environment_max_storage)
    sandbox = SandboxEnvironment(network=body.network)
    problems += await credentials.reference_problems(state, namespace, sandbox, "")
    if problems:
        raise ApiError(400, "; ".join(problems))
    id_ = f"env-{secrets.token_hex(6)}"
    made = resource("Environment", namespace, id_, body.spec().to_kube())
    created = await state.kube.create("environments", namespace, made)
    return web.json_response(environment_view(created))


async def get(request: web.Request) -> web.Response:
    state, namespace, id_ = _addressed(request)
    return web.json_response(environment_view(await _found(state, namespace, id_)))


async def delete(request: web.Request) -> web.Response:
    """Delete an environment and its workspace, unless a run is using it now."""
    state, namespace, id_ = _addressed(request)
    found = await _found(state, namespace, id_)
    if (busy := await environment_claims.holder(state.kube, found)) is not None:
        raise ApiError(
            409,
            f"environment {id_!r} is in use by interaction {busy!r}; "
            "cancel it or wait for it to end",
            "failed_precondition",
        )
    if not await state.kube.delete("environments", namespace, id_):
        raise not_found("environment", id_)
    return web.json_response({})


def _addressed(request: web.Request) -> tuple[State, str, str]:
    # An id reaches the Kubernetes API only if it is an environment id (environment_claims.find
    # checks it): `.`, `..` or an encoded slash would address the collection instead.
    return request.config_dict[STATE], request[TENANT], request.match_info["environment"][:253]


async def _found(state: State, namespace: str, id_: str) -> dict[str, Any]:
    try:
        return await environment_claims.find(state.kube, namespace, id_)
    except environment_claims.EnvironmentUnavailable as error:
        raise not_found("environment", id_) from error


def add_routes(api: web.Application) -> None:
    api.router.add_get("/environments", list_)
    api.router.add_post("/environments", create)
    api.router.add_get("/environments/{environment}", get)
    api.router.add_delete("/environments/{environment}", delete)
