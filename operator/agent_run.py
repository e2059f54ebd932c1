"""Agent interactions: a sandbox pod per run, created idempotently, finished when the pod ends."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tether import agents, catalog, run_tokens
from tether.api.agent import AgentSpec
from tether.api.interaction import ACCEPTED_ANNOTATION, InteractionSpec, Step
from tether.api.views import interaction_view
from tether.chain import RunError, conversation
from tether.providers import ProviderError

from . import metrics
from .context import Context
from .model_run import Outcome, emitter, finish, finish_now, now
from .sandbox_pod import (
    Placement,
    child_name,
    run_token_secret,
    sandbox_network_policy,
    sandbox_pod,
)

TOKEN_GRACE_SECONDS = 300


async def resolve_agent(ctx: Context, namespace: str, agent_id: str) -> tuple[str, list[AgentSpec]]:
    """The Agent an id names, with its base agents, most basic first."""
    namespaces = [namespace, ctx.settings.system_namespace]
    found = await catalog.find(ctx.kube, "agents", namespaces, agent_id)
    if found is None:
        raise RunError("agent_not_found", f"agent {agent_id!r} not found")
    name = found["metadata"]["name"]
    specs = [AgentSpec.from_kube(found.get("spec") or {})]
    while base := specs[0].base_agent:
        if len(specs) >= agents.MAX_BASE_AGENTS:
            raise RunError("invalid_agent", f"agent {name!r} has too deep a chain of base agents")
        parent = await catalog.find(ctx.kube, "agents", namespaces, base)
        if parent is None:
            raise RunError("agent_not_found", f"base agent {base!r} of {name!r} not found")
        specs.insert(0, AgentSpec.from_kube(parent.get("spec") or {}))
    return name, specs


async def start_agent_run(ctx: Context, obj: dict[str, Any]) -> None:
    """Create the run's Secret, NetworkPolicy and pod; a second call finds them and goes on."""
    meta = obj["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    spec = InteractionSpec.from_kube(obj["spec"])
    try:
        if not ctx.settings.run_token_key:
            raise RunError(
                "agents_unavailable",
                "agent runs are not configured: the operator has no TETHER_RUN_TOKEN_KEY",
            )
        agent_name, specs = await resolve_agent(ctx, namespace, spec.agent)
        try:
            run = agents.resolve(agent_name, specs, spec)
            files = agents.workspace_files(run)
        except agents.AgentConfigError as error:
            raise RunError("invalid_agent", str(error)) from error
        namespaces = [namespace, ctx.settings.system_namespace]
        if await catalog.find(ctx.kube, "models", namespaces, run.model) is None:
            raise RunError(
                "model_not_found", f"model {run.model!r} (of agent {agent_name!r}) not found"
            )
        steps = await conversation(ctx.kube, namespace, spec)
    except ProviderError as error:
        failed = Outcome("failed", errors=[{"code": error.code, "message": error.message}])
        await finish_now(ctx, obj, failed, "agent")
        return

    token = run_tokens.issue(
        ctx.settings.run_token_key.encode(),
        namespace,
        name,
        uid,
        ttl_seconds=run.timeout_seconds + TOKEN_GRACE_SECONDS,
        model=run.model,
        budget=run.max_total_tokens,
    )
    place = Placement(
        image=ctx.settings.sandbox_image,
        gateway_url=ctx.settings.gateway_url,
        gateway_namespace=ctx.settings.system_namespace,
        node_name=ctx.settings.sandbox_node_name,
        runtime_class_name=ctx.settings.sandbox_runtime_class_name,
    )
    loop_input = {
        "system_instruction": run.system_instruction,
        "tools": run.tools,
        "max_steps": run.max_steps,
        "files": files,
        "steps": steps,
    }
    core = ctx.kube.core
    networking = client.NetworkingV1Api(ctx.kube.api)
    pod = sandbox_pod(obj, run, place)
    await _create(
        core.create_namespaced_secret(namespace, run_token_secret(obj, token, loop_input))
    )
    await _create(
        networking.create_namespaced_network_policy(
            namespace, sandbox_network_policy(obj, run, place)
        )
    )
    await _create(core.create_namespaced_pod(namespace, pod))

    previous = obj.get("status") or {}
    running = {
        "phase": "in_progress",
        "created": previous.get("created") or now(),
        "updated": now(),
        "sandboxPod": child_name(uid),
    }
    patched = await ctx.kube.patch_status("interactions", namespace, name, running)
    emit = emitter(ctx, namespace, name)
    if previous.get("phase") != "in_progress":
        await emit(
            "interaction.created", interaction=interaction_view(patched, include_input=False)
        )
        await emit("interaction.status_update", interaction_id=name, status="in_progress")


async def _create(call) -> None:
    try:
        await call
    except ApiException as error:
        if error.status != 409:  # already there: this run was started before
            raise


async def finish_agent_run(
    ctx: Context, interaction: dict[str, Any], pod: dict[str, Any] | None
) -> None:
    """The pod has ended (or vanished): write what the run produced and how it ended."""
    meta = interaction["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec = InteractionSpec.from_kube(interaction["spec"])
    reported = await ctx.run_store.outcome(namespace, name)
    status = (pod or {}).get("status") or {}
    if status.get("reason") == "DeadlineExceeded":
        outcome = Outcome(
            "incomplete",
            errors=[
                {
                    "code": "deadline_exceeded",
                    "message": f"the run hit its deadline: {status.get('message', '')}".strip(),
                }
            ],
        )
    elif reported:
        outcome = Outcome(reported["phase"], errors=reported.get("errors") or None)
    elif pod is None:
        outcome = Outcome(
            "failed",
            errors=[
                {
                    "code": "sandbox_lost",
                    "message": "the sandbox pod disappeared before the run reported an outcome",
                }
            ],
        )
    else:
        outcome = Outcome("failed", errors=[_crash(status)])
    input_tokens, output_tokens = await ctx.run_store.usage(namespace, name)
    outcome.steps = [
        Step.from_wire(s).to_kube() for s in await ctx.run_store.steps(namespace, name)
    ]
    outcome.usage = {
        "totalInputTokens": input_tokens,
        "totalOutputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens,
    }
    await finish(ctx, namespace, name, spec, outcome, emitter(ctx, namespace, name), "agent")
    await ctx.run_store.keep(namespace, name)
    await delete_children(ctx, namespace, meta["uid"])


def _crash(status: dict[str, Any]) -> dict[str, str]:
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        if container.get("name") == "agent" and terminated:
            lines = (terminated.get("message") or "").strip().splitlines()[-20:]
            return {
                "code": "sandbox_crashed",
                "message": f"the agent container exited with code {terminated.get('exitCode')}"
                + (":\n" + "\n".join(lines) if lines else ""),
            }
    return {"code": "sandbox_failed", "message": status.get("message") or "the sandbox pod failed"}


async def delete_children(ctx: Context, namespace: str, uid: str) -> None:
    name = child_name(uid)
    networking = client.NetworkingV1Api(ctx.kube.api)
    for delete in (
        ctx.kube.core.delete_namespaced_pod,
        ctx.kube.core.delete_namespaced_secret,
        networking.delete_namespaced_network_policy,
    ):
        with contextlib.suppress(ApiException):
            await delete(name, namespace)


def observe_start(pod: dict[str, Any]) -> None:
    """Sandbox start latency: the gateway accepting the create → the pod running."""
    accepted = (pod["metadata"].get("annotations") or {}).get(ACCEPTED_ANNOTATION)
    if accepted:
        metrics.SANDBOX_START.observe(max(0.0, time.time() - float(accepted)))
