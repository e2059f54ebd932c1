"""How every interaction ends, in one place.

An ending is three steps, each idempotent, so that after a crash at any point doing it again
finishes what was left and repeats nothing:

1. one announcement in the event log (`interaction.completed` and its companions, written
   atomically with an "ended" marker that keeps the ending's status, so never twice), and with it
   the webhook messages: the first ending announced wins, a later one changes nothing;
2. the status write: a compare-and-swap to the announced ending (on the resource version),
   retried through API server outages. A client waiting for the end has its answer before this
   write; until it lands, readers take the ending from the marker (`EventLog.as_announced`), and
   an operator that restarts finishes it (`finish_announced`);
3. the clean-up: the sandbox's pod, Secret and NetworkPolicy, and a `store: false` record.

A run's own ending is fenced by its lease: announced only while no other replica holds the run
(`LeaseLost` otherwise, and the run stops here unended: it ends where it runs now).

An interaction whose status says it ended but whose log never announced it (a crash of an earlier
release between its write and its announcement) is announced at restart (`resume_ended`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tether import environment_claims
from tether.api.interaction import TERMINAL_PHASES, InteractionSpec, Step
from tether.api.views import interaction_view
from tether.chain import output_steps
from tether.environment_claims import now
from tether.outages import through_outages
from tether.store.events import mark_unstored
from tether.store.outputs import fits_status

from . import metrics
from .context import Context
from .sandbox_pod import child_name
from .webhooks import ending_jobs

log = logging.getLogger("tether.operator")
RECENT_SECONDS = 600
"""An ending this recent may still have a sandbox to clean up after an operator restart."""


@dataclass
class Outcome:
    """How a run ended, and what it produced (steps in the wire spelling)."""

    phase: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] | None = None
    errors: list[dict[str, str]] | None = None
    answered_by: str | None = None
    """The Model that answered (a fallback, when the one asked for failed)."""


def kind_of(obj: dict[str, Any]) -> str:
    return "agent" if obj["spec"].get("agent") else "model"


def succeeded_condition(status: dict[str, Any]) -> dict[str, str]:
    """The `Succeeded` condition (Kubernetes API conventions) a status change carries, so that
    `kubectl describe` tells the story: Unknown while running, then True or False, with the
    phase as the reason and the first error as the message."""
    phase = status["phase"]
    errors = status.get("errors") or []
    condition = {
        "type": "Succeeded",
        "status": {"completed": "True", "in_progress": "Unknown"}.get(phase, "False"),
        "reason": "".join(part.capitalize() for part in phase.split("_")),
        "lastTransitionTime": status.get("updated") or now(),
    }
    if errors:
        condition["message"] = errors[0].get("message", "")[:1000]
    return condition


async def transition(
    ctx: Context, obj: dict[str, Any], status: dict[str, Any]
) -> tuple[dict[str, Any] | None, bool]:
    """Merge `status` into the interaction's status unless it has ended already.

    Returns the object as it stands afterwards (None if it is gone) and whether this write
    landed. A compare-and-swap: a write based on a stale version is refused and re-read. Every
    write also records the generation it observed and the `Succeeded` condition.
    """
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    current = obj
    while True:
        seen = current.get("status") or {}
        if seen.get("phase") in TERMINAL_PHASES:
            # Ours, if an earlier attempt landed and only its answer was lost.
            ours = (seen.get("phase"), seen.get("updated")) == (
                status.get("phase"),
                status.get("updated"),
            )
            return current, ours
        version = current["metadata"]["resourceVersion"]
        observed = {
            **status,
            "observedGeneration": current["metadata"].get("generation", 1),
            "conditions": [succeeded_condition(status)],
        }
        try:
            written = await through_outages(
                lambda v=version, o=observed: ctx.kube.patch_status(
                    "interactions", namespace, name, o, v
                ),
                f"status of {namespace}/{name}",
            )
            return written, True
        except ApiException as error:
            if error.status == 404:
                return None, False
            if error.status != 409:
                raise
        current = await through_outages(
            lambda: ctx.kube.get("interactions", namespace, name), f"re-read {namespace}/{name}"
        )
        if current is None or current["metadata"].get("deletionTimestamp"):
            return None, False


async def conclude(ctx: Context, obj: dict[str, Any], outcome: Outcome) -> dict[str, Any] | None:
    """End the interaction with `outcome`, unless it has ended already (then the ending that
    was announced first is the one written).

    Returns the ended object, whoever ended it; None if the interaction is gone.
    """
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status: dict[str, Any] = {"phase": outcome.phase, "updated": now()}
    if outcome.steps:
        if fits_status(outcome.steps):
            status["steps"] = [Step.from_wire(s).to_kube() for s in outcome.steps]
        else:
            status["stepsRef"] = await through_outages(
                lambda: ctx.outputs.keep(namespace, name, outcome.steps),
                f"outputs of {namespace}/{name}",
            )
    if outcome.usage:
        status["usage"] = outcome.usage
    if outcome.errors:
        status["errors"] = outcome.errors
    if outcome.answered_by:
        status["answeredBy"] = outcome.answered_by
    if (obj.get("status") or {}).get("phase") in TERMINAL_PHASES:
        return await settle(ctx, obj)  # written before it was announced (an older release)
    ended = {**obj, "status": {**(obj.get("status") or {}), **status}}
    if not await announce(ctx, ended, outcome.steps):
        status = await through_outages(
            lambda: ctx.events.ended_status(namespace, name), f"ending of {namespace}/{name}"
        )
        if status is None:  # deleted meanwhile, or announced by an older release
            return await through_outages(
                lambda: ctx.kube.get("interactions", namespace, name), f"read {namespace}/{name}"
            )
    return await finish_announced(ctx, obj, status)


async def finish_announced(
    ctx: Context, obj: dict[str, Any], status: dict[str, Any]
) -> dict[str, Any] | None:
    """Write the ending that was announced, then clean up: again after a crash changes
    nothing."""
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    try:
        final, _ = await transition(ctx, obj, status)
    except ApiException as error:  # refused as written: end it all the same, saying why
        log.error("the ending of %s/%s was refused: %s", namespace, name, error.body)
        message = "the run ended but its outcome could not be recorded; see the operator log"
        refused = {
            "phase": "failed",
            "updated": now(),
            "errors": [{"code": "internal", "message": message}],
        }
        final, _ = await transition(ctx, obj, refused)
    if final is not None:
        await clean_up(ctx, final)
    return final


async def settle(ctx: Context, final: dict[str, Any]) -> dict[str, Any]:
    """Announce an interaction whose status says it ended, and clean up after it."""
    await announce(ctx, final)
    await clean_up(ctx, final)
    return final


async def announce(
    ctx: Context, ended: dict[str, Any], steps: list[dict[str, Any]] | None = None
) -> bool:
    """The end of `ended` (its status the ending) into its event log, with its webhook
    messages: True if this call announced it, False if an ending was announced before."""
    meta = ended["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status = ended["status"]
    phase = status["phase"]
    if steps is None and status.get("stepsRef"):
        steps = await through_outages(
            lambda: output_steps(ctx.outputs, ended), f"outputs of {namespace}/{name}"
        )
    view = interaction_view(ended, include_input=False, outputs=steps if steps else None)
    events = [
        {"event_type": "interaction.status_update", "interaction_id": name, "status": phase},
        *({"event_type": "error", "error": error} for error in status.get("errors") or []),
        {"event_type": "interaction.completed", "interaction": view},
    ]
    kept = {k: v for k, v in status.items() if k not in ("conditions", "observedGeneration")}
    fence = ctx.leases.fence(namespace, name)  # None for an ending written from outside the run
    announced = await through_outages(
        lambda: ctx.events.end(namespace, name, events, ending_jobs(ended), kept, fence),
        f"announce {namespace}/{name}",
    )
    if announced:
        metrics.INTERACTIONS.labels(kind_of(ended), phase).inc()
    return announced


async def clean_up(ctx: Context, final: dict[str, Any]) -> None:
    """What an ended run leaves behind: its sandbox, its Environment's claim, and the resource
    itself when it was not to be stored."""
    meta = final["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec = InteractionSpec.from_kube(final["spec"])
    if kind_of(final) == "agent":
        await through_outages(lambda: ctx.run_store.keep(namespace, name), f"keep {name}'s files")
        pod = (final.get("status") or {}).get("sandboxPod")
        await delete_children(ctx, namespace, child_name(meta["uid"]), pod)
        if env_id := spec.environment_id():
            await give_back(ctx, namespace, name, env_id)
    if spec.store is False:
        await through_outages(
            lambda: mark_unstored(
                ctx.events.redis, namespace, name, ctx.settings.retention_seconds
            ),
            f"remember unstored {name}",
        )
        await through_outages(
            lambda: ctx.kube.delete("interactions", namespace, name), f"delete {name}"
        )


async def give_back(ctx: Context, namespace: str, name: str, env_id: str) -> None:
    """Release the run's Environment, with what its workspace holds as the run last saw it."""
    reported = await through_outages(
        lambda: ctx.run_store.outcome(namespace, name), f"outcome of {name}"
    )
    await through_outages(
        lambda: environment_claims.release(
            ctx.kube, namespace, env_id, name, (reported or {}).get("workspace")
        ),
        f"release environment {env_id}",
    )


async def resume_ended(ctx: Context, obj: dict[str, Any]) -> None:
    """An ended interaction seen at (re)start: finish an ending a crash interrupted."""
    status = obj.get("status") or {}
    updated = status.get("updated")
    age = (
        (dt.datetime.now(dt.UTC) - parse_timestamp(updated)).total_seconds()
        if updated
        else float("inf")
    )
    meta = obj["metadata"]
    if InteractionSpec.from_kube(obj["spec"]).store is False:
        await settle(ctx, obj)
    elif age < ctx.settings.event_ttl_seconds - 3600 and not await ctx.events.has_ended(
        meta["namespace"], meta["name"]
    ):
        log.info(
            "announcing the end of %s/%s, cut short by a crash", meta["namespace"], meta["name"]
        )
        await settle(ctx, obj)
    elif kind_of(obj) == "agent" and age < RECENT_SECONDS:
        pod = (obj.get("status") or {}).get("sandboxPod")
        await delete_children(ctx, meta["namespace"], child_name(meta["uid"]), pod)


async def delete_children(ctx: Context, namespace: str, name: str, pod: str | None = None) -> None:
    """Delete a run's Secret, pod and NetworkPolicy (named `name`; the pod `pod` when it is
    another, a warm pool's); gone already is fine. The NetworkPolicy goes last, so that
    whatever a crash leaves behind is found by listing them."""
    networking = client.NetworkingV1Api(ctx.kube.api)
    for delete, named in (
        (ctx.kube.core.delete_namespaced_secret, name),
        (ctx.kube.core.delete_namespaced_pod, pod or name),
        (networking.delete_namespaced_network_policy, name),
    ):
        with contextlib.suppress(ApiException):  # 404: already gone
            await through_outages(
                lambda d=delete, n=named: d(n, namespace), f"delete {namespace}/{named}"
            )


def parse_timestamp(timestamp: str) -> dt.datetime:
    """A status timestamp (as `now()` writes it, or the API server's) as a datetime."""
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
