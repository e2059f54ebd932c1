"""One model interaction, start to finish: resolve the model, rebuild the conversation, stream the
answer into the event log, and write the outcome to the Interaction's status."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from tether import catalog
from tether.api.interaction import ACCEPTED_ANNOTATION, InteractionSpec, Step
from tether.api.model import ModelSpec
from tether.api.views import interaction_view
from tether.chain import RunError, conversation
from tether.events import mark_unstored
from tether.model_turn import relay
from tether.providers import ProviderError
from tether.providers.base import ModelRequest

from . import metrics
from .context import Context

log = logging.getLogger("tether.operator")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Outcome:
    """How a run ended, and what it produced."""

    phase: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] | None = None
    errors: list[dict[str, str]] | None = None


async def run_model_interaction(ctx: Context, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    spec = InteractionSpec.from_kube(obj["spec"])
    previous = obj.get("status") or {}
    started = time.monotonic()
    accepted = (meta.get("annotations") or {}).get(ACCEPTED_ANNOTATION)
    if accepted and not previous.get("phase"):
        metrics.PICKUP.observe(max(0.0, time.time() - float(accepted)))
    metrics.IN_FLIGHT.labels("model").inc()
    emit = emitter(ctx, namespace, name)
    created = previous.get("created") or now()
    running = {"phase": "in_progress", "created": created, "updated": now()}
    # The in_progress write runs beside the model call: it is not on the critical path. Every
    # final write waits for it, so a late in_progress can never overwrite the outcome.
    marking = asyncio.create_task(ctx.kube.patch_status("interactions", namespace, name, running))
    try:
        if previous.get("phase") != "in_progress":
            await emit(
                "interaction.created",
                interaction=interaction_view({**obj, "status": running}, include_input=False),
            )
        await emit("interaction.status_update", interaction_id=name, status="in_progress")
        try:
            outcome = await _call_model(ctx, namespace, spec, emit, started)
        except ProviderError as error:
            outcome = Outcome("failed", errors=[{"code": error.code, "message": error.message}])
        except Exception as error:  # never leave a run silently in_progress
            log.exception("model run %s/%s failed unexpectedly", namespace, name)
            message = f"the run failed unexpectedly ({type(error).__name__}); see the operator log"
            outcome = Outcome("failed", errors=[{"code": "internal", "message": message}])
        await marking
        await finish(ctx, namespace, name, spec, outcome, emit)
    except asyncio.CancelledError:
        if ctx.runs.cancel_requested(uid):
            await asyncio.wait([marking])
            await finish(ctx, namespace, name, spec, Outcome("cancelled"), emit)
        else:
            marking.cancel()  # the operator is stopping; the next one resumes the run
        raise
    finally:
        ctx.runs.finished(uid)
        metrics.IN_FLIGHT.labels("model").dec()
        metrics.DURATION.labels("model").observe(time.monotonic() - started)


async def finish_now(
    ctx: Context, obj: dict[str, Any], outcome: Outcome, kind: str = "model"
) -> None:
    """End an interaction that is not running in this process (cancel a queued or orphaned one,
    refuse one that cannot run)."""
    meta = obj["metadata"]
    spec = InteractionSpec.from_kube(obj["spec"])
    emit = emitter(ctx, meta["namespace"], meta["name"])
    await finish(ctx, meta["namespace"], meta["name"], spec, outcome, emit, kind)
    ctx.runs.finished(meta["uid"])


def emitter(ctx: Context, namespace: str, name: str):
    async def emit(event_type: str, **fields: Any) -> None:
        await ctx.events.append(namespace, name, {"event_type": event_type, **fields})

    return emit


async def finish(
    ctx, namespace, name, spec: InteractionSpec, outcome: Outcome, emit, kind: str = "model"
) -> None:
    """Write the outcome to the status, announce it, and let the event log expire."""
    status: dict[str, Any] = {"phase": outcome.phase, "updated": now()}
    if outcome.steps:
        status["steps"] = outcome.steps
    if outcome.usage:
        status["usage"] = outcome.usage
    if outcome.errors:
        status["errors"] = outcome.errors
    final = await ctx.kube.patch_status("interactions", namespace, name, status)
    await emit("interaction.status_update", interaction_id=name, status=outcome.phase)
    for error in outcome.errors or []:
        await emit("error", error=error)
    await emit("interaction.completed", interaction=interaction_view(final, include_input=False))
    await ctx.events.finish(namespace, name)
    metrics.INTERACTIONS.labels(kind, outcome.phase).inc()
    if spec.store is False:
        await mark_unstored(ctx.events.redis, namespace, name, ctx.settings.retention_seconds)
        await ctx.kube.delete("interactions", namespace, name)


async def _call_model(
    ctx: Context, namespace: str, spec: InteractionSpec, emit, started
) -> Outcome:
    namespaces = [namespace, ctx.settings.system_namespace]
    model = await catalog.find(ctx.kube, "models", namespaces, spec.model)
    if model is None:
        raise RunError("model_not_found", f"model {spec.model!r} not found")
    provider = await ctx.providers.for_model(model)
    steps = await conversation(ctx.kube, namespace, spec)
    model_spec = ModelSpec.from_kube(model["spec"])
    request = ModelRequest(
        model=model_spec.upstream_model or model["metadata"]["name"],
        steps=steps,
        system_instruction=spec.system_instruction,
        tools=[tool.to_wire() for tool in spec.tools or []],
        generation_config=spec.generation_config.to_wire() if spec.generation_config else {},
        response_format=spec.response_format if isinstance(spec.response_format, dict) else None,
    )

    turn = await relay(
        provider,
        request,
        emit,
        index=0,
        on_first_output=lambda: metrics.FIRST_OUTPUT.observe(time.monotonic() - started),
    )
    steps_out: list[dict[str, Any]] = []
    if turn.text:
        steps_out.append({"type": "model_output", "content": [{"type": "text", "text": turn.text}]})
    calls = [
        {"type": "function_call", "id": c.id, "name": c.name, "arguments": c.arguments}
        for c in turn.calls
    ]
    for call in calls:
        index = len(steps_out)
        await emit("step.start", index=index, step=call)
        await emit("step.stop", index=index)
        steps_out.append(call)
    usage = turn.usage
    return Outcome(
        phase="requires_action" if calls else "completed",
        steps=[Step.from_wire(s).to_kube() for s in steps_out],
        usage={
            "totalInputTokens": usage.input_tokens,
            "totalOutputTokens": usage.output_tokens,
            "totalTokens": usage.input_tokens + usage.output_tokens,
        },
    )
