"""A trigger's executions: Interactions labelled with it. Starting one is creating its
Interaction under a name derived from the time it was scheduled for, so that an operator that
fires the same time twice (after a crash, or two at once) makes one run; the second create is a
409 and changes nothing.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from tether import environment_claims
from tether.api import API_VERSION
from tether.api.interaction import ACCEPTED_ANNOTATION, KIND_LABEL, CreateInteractionRequest
from tether.api.trigger import (
    SCHEDULED_ANNOTATION,
    TRIGGER_LABEL,
    TriggerSpec,
    execution_name,
    execution_view,
)
from tether.kube import Kube


class NotStarted(Exception):
    """The execution could not start (its environment is in use or gone)."""


async def executions(kube: Kube, namespace: str, trigger: str) -> list[dict[str, Any]]:
    """The trigger's executions, newest first, as the SDK's TriggerExecution."""
    listed = await kube.list("interactions", namespace, label_selector=f"{TRIGGER_LABEL}={trigger}")
    found = sorted(
        listed.get("items", []),
        key=lambda i: (i["metadata"].get("annotations") or {}).get(SCHEDULED_ANNOTATION, ""),
        reverse=True,
    )
    return [execution_view(i) for i in found]


def manifest(trigger: dict[str, Any], name: str, scheduled: str) -> dict[str, Any]:
    """The Interaction of one execution: the trigger's create body, in the background."""
    spec = TriggerSpec.from_kube(trigger["spec"])
    request = CreateInteractionRequest.from_wire({**spec.interaction, "background": True})
    if spec.environment_id:
        request = request.model_copy(update={"environment": spec.environment_id})
    interaction = request.spec()
    labels = {
        **(interaction.labels or {}),
        KIND_LABEL: "agent",
        TRIGGER_LABEL: trigger["metadata"]["name"],
    }
    annotations = {ACCEPTED_ANNOTATION: f"{time.time():.6f}", SCHEDULED_ANNOTATION: scheduled}
    return {
        "apiVersion": API_VERSION,
        "kind": "Interaction",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": interaction.to_kube(),
    }


async def start(kube: Kube, trigger: dict[str, Any], scheduled: str) -> str:
    """Start the execution for `scheduled` (once: a second start of it changes nothing);
    its interaction's id."""
    namespace = trigger["metadata"]["namespace"]
    name = execution_name(trigger["metadata"]["name"], scheduled)
    body = manifest(trigger, name, scheduled)
    if await kube.get("interactions", namespace, name) is not None:
        return name
    env_id = TriggerSpec.from_kube(trigger["spec"]).environment_id
    if env_id:
        try:
            await environment_claims.claim(kube, namespace, env_id, name)
        except environment_claims.EnvironmentUnavailable as error:
            raise NotStarted(f"environment {env_id!r}: {error}") from error
    try:
        await kube.create("interactions", namespace, body)
    except ApiException as error:
        if error.status != 409:
            if env_id:
                await environment_claims.release(kube, namespace, env_id, name)
            raise
    return name
