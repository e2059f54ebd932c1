"""Resources rendered as the wire objects clients read: pure functions."""

from __future__ import annotations

from typing import Any

from tether.api.interaction import InteractionObject, InteractionSpec, InteractionStatus, Step
from tether.conversation import input_steps

_ECHOED = (
    "model",
    "agent",
    "previous_interaction_id",
    "system_instruction",
    "tools",
    "generation_config",
    "agent_config",
    "response_format",
    "response_mime_type",
    "webhook_config",
    "labels",
)


def interaction_view(
    obj: dict[str, Any], *, include_input: bool, outputs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """An Interaction resource as the wire object the SDK reads (snake_case).

    A create answers with the output steps only; a get shows the whole timeline, input first.
    `outputs` are the output steps (wire spelling) when the status keeps them elsewhere.
    """
    meta = obj["metadata"]
    spec = InteractionSpec.from_kube(obj["spec"])
    status = InteractionStatus.from_kube(obj.get("status") or {})
    steps = (
        [Step.from_wire(s) for s in outputs] if outputs is not None else list(status.steps or [])
    )
    if include_input:
        steps = [Step.from_wire(s) for s in input_steps(spec.to_wire().get("input"))] + steps
    return InteractionObject(
        id=meta["name"],
        status=status.phase or "queued",
        created=status.created or meta.get("creationTimestamp"),
        updated=status.updated or status.created or meta.get("creationTimestamp"),
        steps=steps,
        usage=status.usage,
        errors=status.errors,
        environment_id=status.environment_id or spec.environment_id(),
        answered_by=status.answered_by,
        **{field: getattr(spec, field) for field in _ECHOED if field != "tools"},
        tools=[tool.redacted() for tool in spec.tools] if spec.tools else spec.tools,
    ).to_wire()
