"""A conversation, read from the cluster: the chain of Interactions behind a new one."""

from __future__ import annotations

from typing import Any

from tether.api.interaction import InteractionSpec, InteractionStatus
from tether.conversation import history
from tether.errors import RunError
from tether.kube import Kube
from tether.store.events import EventLog
from tether.store.outputs import Outputs

MAX_CHAIN = 1000


async def load_chain(
    kube: Kube, events: EventLog, namespace: str, previous_id: str | None
) -> list[dict[str, Any]]:
    """The earlier interactions of this conversation, oldest first, each as it ended."""
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()
    while previous_id:
        if previous_id in seen or len(chain) >= MAX_CHAIN:
            raise RunError(
                "invalid_chain", f"the conversation chain at {previous_id!r} loops or is too long"
            )
        seen.add(previous_id)
        obj = await kube.get("interactions", namespace, previous_id)
        if obj is None:
            raise RunError(
                "previous_interaction_not_found", f"previous interaction {previous_id!r} not found"
            )
        chain.append(await events.as_announced(obj))
        previous_id = obj["spec"].get("previousInteractionId")
    chain.reverse()
    return chain


async def output_steps(outputs: Outputs, obj: dict[str, Any]) -> list[dict[str, Any]]:
    """An interaction's output steps (wire spelling), wherever its status keeps them."""
    status = InteractionStatus.from_kube(obj.get("status") or {})
    if status.steps_ref:
        meta = obj["metadata"]
        kept = await outputs.load(meta["namespace"], meta["name"], status.steps_ref)
        if kept is None:
            raise RunError(
                "output_expired", f"the output of interaction {meta['name']!r} is no longer kept"
            )
        return kept
    return status.to_wire().get("steps", [])


async def conversation(
    kube: Kube, events: EventLog, outputs: Outputs, namespace: str, spec: InteractionSpec
) -> list[dict[str, Any]]:
    """The whole timeline a model sees for this interaction: the chain's turns, then this input."""
    chain = await load_chain(kube, events, namespace, spec.previous_interaction_id)
    turns = [
        (
            InteractionSpec.from_kube(c["spec"]).to_wire().get("input"),
            await output_steps(outputs, c),
        )
        for c in chain
    ]
    return history([*turns, (spec.to_wire().get("input"), [])])
