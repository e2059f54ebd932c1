"""Agent interactions: a sandbox pod per run, created idempotently, finished when the pod ends."""

from __future__ import annotations

import time
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tether import agents, environment_claims, run_tokens
from tether.api.agent import WarmPool
from tether.api.environment import EnvironmentSpec
from tether.api.interaction import ACCEPTED_ANNOTATION, InteractionSpec
from tether.api.internal import RunInput
from tether.api.views import interaction_view
from tether.chain import conversation
from tether.errors import RunError
from tether.outages import create_once, through_outages

from . import metrics, warm_pool
from .context import Context
from .credential_variables import credential_variables
from .ending import Outcome, conclude, now, transition
from .sandbox_pod import (
    Placement,
    run_token_secret,
    sandbox_network_policy,
    sandbox_pod,
    workspace_volume_claim,
)

TOKEN_GRACE_SECONDS = 300


async def start_agent_run(ctx: Context, obj: dict[str, Any]) -> None:
    """Give the run a sandbox: an idle pod of its agent's warm pool, or a pod (with its Secret
    and NetworkPolicy) of its own; a second call finds it and goes on. Raises RunError for a
    run that cannot start for a reason the user can fix."""
    meta = obj["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    spec = InteractionSpec.from_kube(obj["spec"])
    if not ctx.settings.run_token_key:
        raise RunError(
            "agents_unavailable",
            "agent runs are not configured: the operator has no TETHER_RUN_TOKEN_KEY",
        )
    # The API server or Redis being away delays a start; it never fails it.
    agent_name, specs = await through_outages(
        lambda: ctx.catalog.agent_chain(namespace, spec.agent), f"resolve agent of {name}"
    )
    workspace = await _claim_workspace(ctx, obj, spec)
    run = agents.resolve(agent_name, specs, spec, workspace)  # AgentConfigError: a RunError
    files = agents.workspace_files(run)
    found = await through_outages(
        lambda: ctx.catalog.model(namespace, run.model), f"model of {name}"
    )
    if found is None:
        raise RunError(
            "model_not_found", f"model {run.model!r} (of agent {agent_name!r}) not found"
        )
    steps = await through_outages(
        lambda: conversation(ctx.kube, ctx.events, ctx.outputs, namespace, spec),
        f"history of {name}",
    )

    token = run_tokens.issue(
        ctx.settings.run_token_key.encode(),
        namespace,
        name,
        uid,
        ttl_seconds=run.timeout_seconds + TOKEN_GRACE_SECONDS,
        model=run.model,
        budget=run.max_total_tokens,
    )
    place = Placement.from_settings(ctx.settings)
    loop_input = RunInput(
        system_instruction=run.system_instruction,
        tools=run.tools,
        max_steps=run.max_steps,
        files=files,
        steps=steps,
    )
    variables = await credential_variables(ctx, namespace, run.environment)
    pod_name = None
    if run.environment_id is None and (specs[-1].warm_pool or WarmPool()).size:
        pod_name = await through_outages(
            lambda: warm_pool.claim(ctx, obj, run, variables, token, loop_input),
            f"claim a warm pod for {name}",
        )
    if pod_name is None:
        pod_name = await _start_sandbox(ctx, obj, run, place, variables, token, loop_input)

    previous = obj.get("status") or {}
    running = {
        "phase": "in_progress",
        "created": previous.get("created") or now(),
        "updated": now(),
        "sandboxPod": pod_name,
    }
    if run.environment_id:
        running["environmentId"] = run.environment_id
    marked, wrote = await transition(ctx, obj, running)
    if wrote and previous.get("phase") != "in_progress":
        view = interaction_view(marked, include_input=False)
        started = [
            {"event_type": "interaction.created", "interaction": view},
            {
                "event_type": "interaction.status_update",
                "interaction_id": name,
                "status": "in_progress",
            },
        ]
        await ctx.events.append(namespace, name, started, ctx.leases.fence(namespace, name))


async def _start_sandbox(
    ctx: Context,
    obj: dict[str, Any],
    run: agents.AgentRun,
    place: Placement,
    variables: dict[str, str],
    token: str,
    loop_input: RunInput,
) -> str:
    """Create the run's Secret, NetworkPolicy and pod; returns the pod's name."""
    namespace = obj["metadata"]["namespace"]
    core = ctx.kube.core
    networking = client.NetworkingV1Api(ctx.kube.api)
    pod = sandbox_pod(obj, run, place, variables)
    secret = run_token_secret(obj, token, loop_input.model_dump(mode="json"))
    policy = sandbox_network_policy(obj, run, place)
    await create_once(lambda: core.create_namespaced_secret(namespace, secret), "run token")
    await create_once(
        lambda: networking.create_namespaced_network_policy(namespace, policy), "policy"
    )
    await create_once(lambda: core.create_namespaced_pod(namespace, pod), "sandbox pod")
    return pod["metadata"]["name"]


async def _claim_workspace(
    ctx: Context, obj: dict[str, Any], spec: InteractionSpec
) -> tuple[str, EnvironmentSpec] | None:
    """The persistent Environment the run uses, taken for it (the gateway took it already for
    a run created through the API; one created with kubectl is checked here), and its volume."""
    env_id = spec.environment_id()
    if env_id is None:
        return None
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    try:
        environment = await through_outages(
            lambda: environment_claims.claim(ctx.kube, namespace, env_id, name),
            f"environment of {name}",
        )
    except environment_claims.EnvironmentUnavailable as error:
        raise RunError(f"environment_{error.code}", error.message) from error
    claim = workspace_volume_claim(environment, ctx.settings.environment_storage)
    await create_once(
        lambda: ctx.kube.core.create_namespaced_persistent_volume_claim(namespace, claim),
        "workspace volume",
    )
    return env_id, EnvironmentSpec.from_kube(environment.get("spec") or {})


async def finish_if_sandbox_ended(ctx: Context, interaction: dict[str, Any]) -> Any | None:
    """Finish the agent run if its sandbox pod has ended or is gone; returns the pod while it
    still runs, None once the run is finished."""
    namespace = interaction["metadata"]["namespace"]
    try:
        pod = await ctx.kube.core.read_namespaced_pod(
            interaction["status"]["sandboxPod"], namespace
        )
    except ApiException as error:
        if error.status != 404:
            raise
        await finish_agent_run(ctx, interaction, None)
        return None
    if pod.status.phase in ("Succeeded", "Failed"):
        await finish_agent_run(ctx, interaction, ctx.kube.api.sanitize_for_serialization(pod))
        return None
    return pod


async def finish_agent_run(
    ctx: Context, interaction: dict[str, Any], pod: dict[str, Any] | None
) -> None:
    """The pod has ended (or vanished): end the run with what it produced and how it ended."""
    await conclude(ctx, interaction, await agent_outcome(ctx, interaction, pod))


async def agent_outcome(
    ctx: Context, interaction: dict[str, Any], pod: dict[str, Any] | None, phase: str = ""
) -> Outcome:
    """What the run reported (steps, usage, its own outcome), and how its pod ended; `phase`
    overrides how it ended (a cancel)."""
    meta = interaction["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    reported = await ctx.run_store.outcome(namespace, name)
    status = (pod or {}).get("status") or {}
    if phase:
        outcome = Outcome(phase)
    elif status.get("reason") == "DeadlineExceeded":
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
    over = await ctx.run_store.overspent(namespace, name)
    if over and outcome.phase not in ("cancelled", "budget_exceeded"):
        # The model proxy counts every token: a run past its budget ended there, whatever the
        # agent reported.
        message = f"the run spent {over[0]} of its {over[1]} tokens"
        outcome = Outcome(
            "budget_exceeded", errors=[{"code": "budget_exceeded", "message": message}]
        )
    outcome.steps = await ctx.run_store.steps(namespace, name)
    outcome.usage = (await ctx.run_store.usage(namespace, name)).as_status()
    return outcome


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


def observe_start(pod: dict[str, Any]) -> None:
    """Sandbox start latency: the gateway accepting the create → the pod running."""
    accepted = (pod["metadata"].get("annotations") or {}).get(ACCEPTED_ANNOTATION)
    if accepted:
        metrics.SANDBOX_START.observe(max(0.0, time.time() - float(accepted)))
