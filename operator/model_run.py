"""One model interaction, start to finish: resolve the model, rebuild the conversation, stream the
answer into the event log, and end the interaction with the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tether.api.interaction import ACCEPTED_ANNOTATION, InteractionSpec
from tether.api.views import interaction_view
from tether.catalog import ResolvedModel
from tether.chain import conversation
from tether.errors import RunError
from tether.model_turn import Emit
from tether.outages import through_outages
from tether.providers.base import ModelRequest
from tether.providers.capabilities import media_refusals, refusals
from tether.routing import answer

from . import metrics
from .context import Context
from .ending import Outcome, conclude, now, transition
from .runs import RunCancelled

log = logging.getLogger("tether.operator")


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
    emit = ctx.events.emitter(namespace, name)
    running = {
        "phase": "in_progress",
        "created": previous.get("created") or now(),
        "updated": now(),
    }
    marking: asyncio.Task | None = None

    async def announce(status: dict[str, Any]) -> None:
        if previous.get("phase") != "in_progress":  # else the run's first try announced it
            view = interaction_view({**obj, "status": status}, include_input=False)
            await emit("interaction.created", interaction=view)

    async def start() -> None:
        """The run leaves the line and is under way."""
        nonlocal marking
        # The in_progress write runs beside the model call: it is not on the critical path.
        # The ending waits for it, and both are compare-and-swaps, so neither undoes the other.
        marking = asyncio.create_task(transition(ctx, obj, running))
        await announce(running)
        await emit("interaction.status_update", interaction_id=name, status="in_progress")

    try:
        try:
            call = _call_model(ctx, namespace, spec, emit, started, start)
            outcome = await ctx.runs.interruptible(uid, call)
        except RunCancelled:
            outcome = Outcome("cancelled")
        except RunError as error:
            outcome = Outcome("failed", errors=[error.as_error()])
        except asyncio.CancelledError:
            raise
        except Exception as error:  # never leave a run silently in_progress
            log.exception("model run %s/%s failed unexpectedly", namespace, name)
            message = f"the run failed unexpectedly ({type(error).__name__}); see the operator log"
            outcome = Outcome("failed", errors=[{"code": "internal", "message": message}])
        marked = None
        if marking is None:  # it ended before it left the line: announced all the same
            await announce(previous)
        else:
            try:
                marked, _ = await marking
            except Exception:  # only a marker: the ending below is what counts
                log.exception("could not mark %s/%s in_progress", namespace, name)
        await conclude(ctx, marked or obj, outcome)
    except asyncio.CancelledError:
        if marking is not None:
            marking.cancel()  # the operator is stopping; the next one resumes the run
        raise
    finally:
        ctx.runs.finished(uid)
        metrics.IN_FLIGHT.labels("model").dec()
        metrics.DURATION.labels("model").observe(time.monotonic() - started)


async def _call_model(
    ctx: Context,
    namespace: str,
    spec: InteractionSpec,
    emit: Emit,
    started: float,
    start: Callable[[], Awaitable[None]],
) -> Outcome:
    # The API server or Redis being away delays a run; it never fails it.
    model = await through_outages(lambda: ctx.catalog.model(namespace, spec.model), "the model")
    if model is None:
        raise RunError("model_not_found", f"model {spec.model!r} not found")
    async with ctx.slots.for_model(model):  # queued while the Model is at its cap
        await start()
        return await _answer(ctx, namespace, spec, emit, started, model)


async def _answer(
    ctx: Context,
    namespace: str,
    spec: InteractionSpec,
    emit: Emit,
    started: float,
    model: ResolvedModel,
) -> Outcome:
    steps = await through_outages(
        lambda: conversation(ctx.kube, ctx.outputs, namespace, spec), "conversation history"
    )
    if refused := media_refusals(model.spec.provider, spec.model, steps):
        # the request's own input was checked at create: these come from earlier turns
        raise RunError("invalid_request", "the conversation holds " + "; ".join(refused))
    request = ModelRequest(
        model=model.upstream,
        steps=steps,
        system_instruction=spec.system_instruction,
        tools=[tool.to_wire() for tool in spec.tools or []],
        generation_config=spec.generation_config.to_wire() if spec.generation_config else {},
        response_format=spec.response_format if isinstance(spec.response_format, dict) else None,
        response_mime_type=spec.response_mime_type,
    )

    turn, answered = await answer(
        model,
        request,
        emit,
        index=0,
        lookup=lambda id_: through_outages(lambda: ctx.catalog.model(namespace, id_), "the model"),
        provider_of=lambda m: through_outages(lambda: ctx.providers.for_model(m), "credentials"),
        accepts=lambda m: (
            not refusals(m.spec.provider, m.name, spec)
            and not media_refusals(m.spec.provider, m.name, steps)
        ),
        hold=lambda m: contextlib.nullcontext() if m is model else ctx.slots.for_model(m),
        on_first_output=lambda: metrics.FIRST_OUTPUT.observe(time.monotonic() - started),
    )
    calls = turn.call_steps()
    for offset, call in enumerate(calls, start=len(turn.steps)):
        await emit("step.start", index=offset, step=call)
        await emit("step.stop", index=offset)
    return Outcome(
        phase="requires_action" if calls else "completed",
        steps=turn.steps + calls,
        usage=turn.usage.as_status(),
        answered_by=answered.name,
    )
