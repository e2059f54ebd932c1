"""Warm pools: sandbox pods an Agent keeps started and idle, claimed by its runs.

An idle pod is a run's sandbox less everything of the run: no token, no input, no run id. A
run of the Agent, in the Agent's namespace, whose sandbox would be built from the same template
claims one: a patch carrying the pod's resourceVersion makes it the run's (of two runs that
claim one pod, the API server lets one through), then the operator hands the pod its run over
HTTP. The leader refills the pools behind the claims.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import defaultdict
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tether.agents import AgentRun, pool_environment
from tether.api import GROUP, VERSION
from tether.api.agent import AgentSpec
from tether.api.common import SandboxEnvironment
from tether.api.internal import RunClaim, RunInput
from tether.errors import RunError
from tether.outages import create_once

from .context import Context
from .credential_variables import credential_variables
from .ending import parse_timestamp
from .sandbox_pod import (
    CLAIM_PORT,
    INTERACTION_LABEL,
    POOL_LABEL,
    SANDBOX_LABEL,
    WARM_LABEL,
    Placement,
    child_name,
    claim_patch,
    pool_name,
    pool_network_policy,
    sandbox_network_policy,
    warm_pod,
    warm_template,
)

log = logging.getLogger("tether.operator")
FILL_SECONDS = 1.0
CLAIM_TIMEOUT = aiohttp.ClientTimeout(total=10)
MERGE_PATCH = "application/merge-patch+json"


async def claim(
    ctx: Context,
    interaction: dict[str, Any],
    run: AgentRun,
    variables: dict[str, str],
    token: str,
    loop_input: RunInput,
) -> str | None:
    """Give the run an idle pod of its agent's pool and hand the pod the run; the pod's name,
    or None when there is none to claim (the run starts a pod of its own). A pod this run
    claimed before a crash is found again and handed the run again (it takes it once)."""
    meta = interaction["metadata"]
    namespace = meta["namespace"]
    place = Placement.from_settings(ctx.settings)
    template = warm_template(run.environment, place, variables)
    mine = child_name(meta["uid"])
    # The pool's pods, and any sandbox of this run's (started before a crash, warm or not);
    # and the run's own NetworkPolicy, which selects its pod once claimed
    pool, own, _ = await asyncio.gather(
        ctx.kube.core.list_namespaced_pod(namespace, label_selector=f"{POOL_LABEL}={run.agent}"),
        ctx.kube.core.list_namespaced_pod(namespace, label_selector=f"{SANDBOX_LABEL}={mine}"),
        _create_policy(ctx, namespace, sandbox_network_policy(interaction, run, place)),
    )
    pods, started = (ctx.kube.api.sanitize_for_serialization(x)["items"] for x in (pool, own))
    handed = RunClaim(interaction=meta["name"], run=meta["uid"], token=token, input=loop_input)
    if started:
        if POOL_LABEL not in (started[0]["metadata"].get("labels") or {}):
            return None  # a pod of its own: the cold start finds it and goes on
        idle = [started[0]]
    else:
        idle = sorted(
            (p for p in pods if p["metadata"]["labels"].get(WARM_LABEL) == template and _ready(p)),
            key=lambda p: p["metadata"]["creationTimestamp"],
        )
    for pod in idle:
        name = pod["metadata"]["name"]
        if not started:
            try:
                await ctx.kube.core.patch_namespaced_pod(
                    name,
                    namespace,
                    claim_patch(interaction, run, pod, time.time() - _started(pod)),
                    _content_type=MERGE_PATCH,
                )
            except ApiException as error:
                if error.status in (404, 409):  # gone, or claimed by another run a moment ago
                    continue
                raise
        if await _hand_over(pod, handed):
            log.info("%s/%s runs in warm pod %s", namespace, meta["name"], name)
            return name
        await _discard(ctx, namespace, name)
        return None
    return None


async def _hand_over(pod: dict[str, Any], handed: RunClaim) -> bool:
    """POST the run to the pod's claim port; whether it took it."""
    url = f"http://{pod['status']['podIP']}:{CLAIM_PORT}/claim"
    try:
        async with (
            aiohttp.ClientSession(timeout=CLAIM_TIMEOUT) as http,
            http.post(url, json=handed.model_dump(mode="json")) as response,
        ):
            if response.status == 200:
                return True
            log.warning("warm pod %s refused its run: %s", url, await response.text())
    except (aiohttp.ClientError, TimeoutError) as error:
        log.warning("warm pod %s did not take its run: %s", url, error)
    return False


async def _discard(ctx: Context, namespace: str, name: str) -> None:
    """A claimed pod that would not take its run: unlabel it first, so that its deletion is
    not read as the run's sandbox ending, then delete it."""
    patch = {"metadata": {"labels": {SANDBOX_LABEL: None, INTERACTION_LABEL: None}}}
    for step in (
        lambda: ctx.kube.core.patch_namespaced_pod(
            name, namespace, patch, _content_type=MERGE_PATCH
        ),
        lambda: ctx.kube.core.delete_namespaced_pod(name, namespace),
    ):
        try:
            await step()
        except ApiException as error:
            if error.status != 404:
                raise


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return (
        status.get("phase") == "Running"
        and conditions.get("Ready") == "True"
        and not pod["metadata"].get("deletionTimestamp")
    )


def _started(pod: dict[str, Any]) -> float:
    started = pod["status"].get("startTime") or pod["metadata"]["creationTimestamp"]
    return parse_timestamp(started).timestamp()


async def keep_filling(ctx: Context) -> None:
    """The leader's duty: every FILL_SECONDS, bring every pool to its size."""
    while True:
        try:
            await fill_once(ctx)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("warm pools: could not fill them; trying again", exc_info=True)
        await asyncio.sleep(FILL_SECONDS)


async def fill_once(ctx: Context) -> dict[str, int]:
    """Start the idle pods each pool lacks; delete the idle ones no pool wants (a changed
    template, a smaller size, an ended pod). Returns the changes by verb."""
    agents = (await ctx.kube.custom.list_cluster_custom_object(GROUP, VERSION, "agents"))["items"]
    listed = await ctx.kube.core.list_pod_for_all_namespaces(label_selector=WARM_LABEL)
    idle: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for pod in ctx.kube.api.sanitize_for_serialization(listed)["items"]:
        meta = pod["metadata"]
        idle[(meta["namespace"], meta["labels"].get(POOL_LABEL, ""))].append(pod)
    changes = {"created": 0, "deleted": 0}
    place = Placement.from_settings(ctx.settings)
    for agent in agents:
        meta = agent["metadata"]
        pool = AgentSpec.from_kube(agent.get("spec") or {}).warm_pool
        size = pool.size if pool else 0
        pods = idle.pop((meta["namespace"], meta["name"]), [])
        if not size and not pods:
            continue
        try:
            environment, variables = await _template(ctx, agent)
            template = warm_template(environment, place, variables)
        except RunError as error:  # a missing credential, a bad base agent: no pool for now
            log.warning("warm pool of agent %s/%s: %s", meta["namespace"], meta["name"], error)
            template = None
        keep = [
            p
            for p in pods
            if p["metadata"]["labels"][WARM_LABEL] == template
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")
        ][:size]
        for pod in pods:
            if pod not in keep and not pod["metadata"].get("deletionTimestamp"):
                await _delete_idle(ctx, pod)
                changes["deleted"] += 1
        if template is None or len(keep) >= size:
            continue
        await _create_policy(ctx, meta["namespace"], pool_network_policy(agent, place))
        for _ in range(size - len(keep)):
            name = f"{pool_name(meta['name'])}-{secrets.token_hex(4)}"
            pod = warm_pod(agent, environment, place, variables, name)
            await ctx.kube.core.create_namespaced_pod(meta["namespace"], pod)
            changes["created"] += 1
    for pods in idle.values():  # pools whose Agent is gone (its garbage is being collected)
        for pod in pods:
            if not pod["metadata"].get("deletionTimestamp"):
                await _delete_idle(ctx, pod)
                changes["deleted"] += 1
    return changes


async def _template(
    ctx: Context, agent: dict[str, Any]
) -> tuple[SandboxEnvironment, dict[str, str]]:
    """What the pool's pods are built from: the sandbox environment the Agent's runs get when
    the request changes nothing, and its credentials' variables."""
    meta = agent["metadata"]
    _, specs = await ctx.catalog.agent_chain(meta["namespace"], meta["name"])
    environment = pool_environment(meta["name"], specs)
    return environment, await credential_variables(ctx, meta["namespace"], environment)


async def _delete_idle(ctx: Context, pod: dict[str, Any]) -> None:
    """Delete an idle pod, unless a run claimed it since it was listed (its resourceVersion
    changed): the precondition makes the claim and the deletion exclusive."""
    meta = pod["metadata"]
    options = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(
            uid=meta["uid"], resource_version=meta["resourceVersion"]
        )
    )
    try:
        await ctx.kube.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=options)
    except ApiException as error:
        if error.status not in (404, 409):
            raise


async def _create_policy(ctx: Context, namespace: str, policy: dict[str, Any]) -> None:
    networking = client.NetworkingV1Api(ctx.kube.api)
    await create_once(
        lambda: networking.create_namespaced_network_policy(namespace, policy), "policy"
    )
