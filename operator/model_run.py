"""One model interaction, start to finish: resolve the model, rebuild the conversation, stream the
answer into the event log, and end the interaction with the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tether import mcp_tools, outbound
from tether.api.interaction import ACCEPTED_ANNOTATION, InteractionSpec
from tether.api.views import interaction_view
from tether.catalog import ResolvedModel
from tether.chain import conversation
from tether.conversation import as_model_steps
from tether.errors import RunError
from tether.model_turn import Emit
from tether.outages import through_outages
from tether.providers.base import ModelRequest, Usage
from tether.providers.capabilities import media_refusals, refusals
from tether.routing import answer
from tether.store.events import LeaseLost

from . import failover, metrics
from .context import Context
from .ending import Outcome, conclude, now, transition
from .runs import RunCancelled, cancelling

log = logging.getLogger("tether.operator")
MCP_ROUNDS = 20
"""Model turns in a row that call only MCP tools, before the run ends incomplete."""
MARK_AFTER_SECONDS = 1.0
"""A run still going this long after its start is marked in_progress in its resource. A shorter
one goes from accepted to its ending in one write: its stream says in_progress all the same."""


async def run_model_interaction(ctx: Context, obj: dict[str, Any], begun: bool = False) -> None:
    """Run it; `begun`: an earlier try (cut short by a crash or a lost replica) announced it."""
    meta = obj["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    spec = InteractionSpec.from_kube(obj["spec"])
    previous = obj.get("status") or {}
    started = time.monotonic()
    accepted = (meta.get("annotations") or {}).get(ACCEPTED_ANNOTATION)
    if accepted and not previous.get("phase"):
        metrics.PICKUP.observe(max(0.0, time.time() - float(accepted)))
    metrics.IN_FLIGHT.labels("model").inc()
    emit = ctx.events.emitter(namespace, name, ctx.leases.fence(namespace, name))
    running = {
        "phase": "in_progress",
        "created": previous.get("created") or now(),
        "updated": now(),
    }
    marking: asyncio.Task | None = None

    async def announce(status: dict[str, Any]) -> None:
        if begun or previous.get("phase") == "in_progress":
            return  # the run's first try announced it
        view = interaction_view({**obj, "status": status}, include_input=False)
        await emit("interaction.created", interaction=view)

    async def mark_when_slow() -> tuple[dict[str, Any] | None, bool]:
        await asyncio.sleep(MARK_AFTER_SECONDS)
        return await transition(ctx, obj, running)

    async def start() -> None:
        """The run leaves the line and is under way."""
        nonlocal marking
        # The in_progress write, if any, runs beside the model call, off the critical path.
        # The ending waits for it, and both are compare-and-swaps, so neither undoes the other.
        marking = asyncio.create_task(mark_when_slow())
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
        except (asyncio.CancelledError, LeaseLost):
            raise
        except Exception as error:  # never leave a run silently in_progress
            log.exception("model run %s/%s failed unexpectedly", namespace, name)
            message = f"the run failed unexpectedly ({type(error).__name__}); see the operator log"
            outcome = Outcome("failed", errors=[{"code": "internal", "message": message}])
        marked = None
        if marking is None:  # it ended before it left the line: announced all the same
            await announce(previous)
        else:
            marked = await _marked(marking, namespace, name)
        try:
            await emit.flush()  # what the run streamed goes in before its end
        except LeaseLost:
            raise
        except Exception:  # the ending below is what counts
            log.exception("could not write the last events of %s/%s", namespace, name)
        await conclude(ctx, marked or obj, outcome)
        ctx.runs.finished(uid)
    except LeaseLost:  # it ends where it runs now
        failover.given_up(ctx, namespace, name)
        if marking is not None:
            marking.cancel()
    except asyncio.CancelledError:
        if marking is not None:
            marking.cancel()  # the operator is stopping, or the run moved; it resumes there
        raise
    finally:
        metrics.IN_FLIGHT.labels("model").dec()
        metrics.DURATION.labels("model").observe(time.monotonic() - started)


async def _marked(marking: asyncio.Task, namespace: str, name: str) -> dict[str, Any] | None:
    """The object as the in_progress mark left it; None if the run ended before the mark was
    due (a write cut short may still land: the ending's compare-and-swap reads it again)."""
    if not marking.done():
        marking.cancel()
    try:
        marked, _ = await marking
        return marked
    except asyncio.CancelledError:
        if cancelling():
            raise
        return None
    except Exception:  # only a marker: the ending is what counts
        log.exception("could not mark %s/%s in_progress", namespace, name)
        return None


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
        lambda: conversation(ctx.kube, ctx.events, ctx.outputs, namespace, spec),
        "conversation history",
    )
    if refused := media_refusals(model.spec.provider, spec.model, steps):
        # the request's own input was checked at create: these come from earlier turns
        raise RunError("invalid_request", "the conversation holds " + "; ".join(refused))
    tools = [tool.to_wire() for tool in spec.tools or []]
    servers = mcp_tools.servers_of(tools)
    transport = None if ctx.settings.webhook_allow_private else outbound.PublicTransport()
    async with mcp_tools.Toolbox(
        servers, lambda headers: mcp_tools.http_client(headers, transport=transport)
    ) as toolbox:
        instruction = "\n\n".join(t for t in (spec.system_instruction, toolbox.note()) if t)
        request = ModelRequest(
            model=model.upstream,
            steps=steps,
            system_instruction=instruction or None,
            tools=[t for t in tools if t["type"] != "mcp_server"] + toolbox.declarations,
            generation_config=spec.generation_config.to_wire() if spec.generation_config else {},
            response_format=(
                spec.response_format if isinstance(spec.response_format, dict) else None
            ),
            response_mime_type=spec.response_mime_type,
        )
        return await _turns(ctx, namespace, spec, emit, started, model, request, toolbox)


async def _turns(
    ctx: Context,
    namespace: str,
    spec: InteractionSpec,
    emit: Emit,
    started: float,
    model: ResolvedModel,
    request: ModelRequest,
    toolbox: mcp_tools.Toolbox,
) -> Outcome:
    """The model's turns: while it calls only MCP tools, Tether calls them and the model goes
    on with their results; it ends on an answer, or on calls the client must answer."""
    out: list[dict[str, Any]] = []
    usage = Usage(0, 0)
    for round_ in range(MCP_ROUNDS):
        turn, answered = await answer(
            model,
            request,
            emit,
            index=len(out),
            lookup=lambda id_: through_outages(
                lambda: ctx.catalog.model(namespace, id_), "the model"
            ),
            provider_of=lambda m: through_outages(
                lambda: ctx.providers.for_model(m), "credentials"
            ),
            accepts=lambda m, steps=request.steps: (
                not refusals(m.spec.provider, m.name, spec)
                and not media_refusals(m.spec.provider, m.name, steps)
            ),
            hold=lambda m: contextlib.nullcontext() if m is model else ctx.slots.for_model(m),
            on_first_output=(
                (lambda: metrics.FIRST_OUTPUT.observe(time.monotonic() - started))
                if round_ == 0
                else None
            ),
        )
        out += turn.steps
        usage = usage + turn.usage
        calls = turn.call_steps()
        served = [c for c in calls if toolbox.owns(c["name"])]
        client_calls = [c for c in calls if not toolbox.owns(c["name"])]
        # All the calls, then the MCP ones' results: the order a model's turn has them in.
        pending = [toolbox.pending(c["id"], c["name"], c["arguments"]) for c in served]
        for step in [p.call_step() for p in pending] + client_calls:
            await _announce(emit, out, step)
        results = [await toolbox.call(p) for p in pending]
        for step in results:
            await _announce(emit, out, step)
        if not served or client_calls:  # an answer, or calls only the client can answer
            return Outcome(
                phase="requires_action" if client_calls else "completed",
                steps=out,
                usage=usage.as_status(),
                answered_by=answered.name,
            )
        made = turn.steps + [p.call_step() for p in pending] + results
        request = dataclasses.replace(request, steps=request.steps + as_model_steps(made))
    return Outcome(
        phase="incomplete",
        steps=out,
        usage=usage.as_status(),
        errors=[
            {
                "code": "max_steps",
                "message": f"the model called MCP tools {MCP_ROUNDS} turns in a row without "
                "answering",
            }
        ],
    )


async def _announce(emit: Emit, out: list[dict[str, Any]], step: dict[str, Any]) -> None:
    """A whole step, added to the timeline at once."""
    await emit("step.start", index=len(out), step=step)
    await emit("step.stop", index=len(out))
    out.append(step)
