"""/internal/v1/…: what a sandbox's agent container may do with its run token, and nothing more.

The agent calls models only through here, so the provider keys stay in the gateway and every
token is counted server-side against the run's budget. It reports its steps, its outcome and
its workspace files here; the operator reads them back when the pod ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException

from tether import run_tokens, workspace_archive
from tether.api.interaction import (
    ACCEPTED_ANNOTATION,
    REPORTED_ANNOTATION,
    TERMINAL_PHASES,
    Error,
    Step,
)
from tether.api.internal import (
    FILES_LIMIT,
    GenerateReply,
    GenerateRequest,
    TokenUsage,
)
from tether.providers import ProviderError
from tether.providers.base import ModelRequest
from tether.providers.capabilities import media_refusals
from tether.routing import answer
from tether.store.run_store import CallInFlight

from .auth import bearer_token
from .errors import ApiError, not_found
from .metrics import SANDBOX_FIRST_CALL
from .parsing import read_json
from .state import SETTINGS, STATE, State

log = logging.getLogger("tether.gateway")

RUN = web.RequestKey("run", run_tokens.RunClaims)
"""The claims of the run token the request presented."""
OUTCOME_PHASES = frozenset(
    {"completed", "requires_action", "failed", "incomplete", "budget_exceeded"}
)


@web.middleware
async def run_token_middleware(request: web.Request, handler) -> web.StreamResponse:
    """The internal API's gate: a valid run token, whose claims go in request[RUN]."""
    key = request.config_dict[SETTINGS].run_token_key
    if not key:
        raise ApiError(503, "agent runs are not configured: TETHER_RUN_TOKEN_KEY is unset")
    token = bearer_token(request)
    if token is None:
        raise ApiError(401, "a run token is required (Authorization: Bearer …)")
    try:
        request[RUN] = run_tokens.verify(key.encode(), token)
    except run_tokens.InvalidRunToken as error:
        raise ApiError(401, f"run token not valid: {error}") from error
    return await handler(request)


async def _run(request: web.Request) -> tuple[State, run_tokens.RunClaims, dict[str, Any]]:
    """The run the token belongs to (and its Interaction), if it is still going."""
    state, claims = request.config_dict[STATE], request[RUN]
    obj = await state.kube.get("interactions", claims.namespace, claims.name)
    if obj is None or obj["metadata"]["uid"] != claims.uid:
        raise not_found("interaction", claims.name)
    obj = await state.events.as_announced(obj)
    phase = (obj.get("status") or {}).get("phase")
    if phase in TERMINAL_PHASES:
        raise ApiError(409, f"interaction {claims.name!r} has already ended ({phase})", "ended")
    return state, claims, obj


def ended(name: str) -> ApiError:
    """The run ended while this call was under way: its log takes nothing more."""
    return ApiError(409, f"interaction {name!r} has already ended", "ended")


async def record_step(state: State, namespace: str, name: str, step: dict[str, Any]) -> int:
    """A step into the run's timeline, announced to its streams as it happens."""
    index = await state.run_store.append_step(namespace, name, step)
    events = [
        {"event_type": "step.start", "index": index, "step": step},
        {"event_type": "step.stop", "index": index},
    ]
    if await state.events.append(namespace, name, events) is None:
        raise ended(name)
    return index


async def generate(request: web.Request) -> web.Response:
    """One model call for the run: streamed into the interaction's events, answered whole.

    One call at a time per run: the budget check, the call and its count happen under the
    run's lease, so parallel calls cannot all pass the check; a second call gets 409."""
    state, claims, obj = await _run(request)
    body = GenerateRequest.model_validate(await read_json(request))
    try:
        async with state.run_store.model_call(claims.namespace, claims.name):
            return await _generate(state, claims, obj, body)
    except CallInFlight as error:
        raise ApiError(
            409, f"{error}: a run makes one model call at a time", "call_in_flight"
        ) from error


async def _generate(
    state: State, claims: run_tokens.RunClaims, obj: dict[str, Any], body: GenerateRequest
) -> web.Response:
    ns, name = claims.namespace, claims.name
    used = (await state.run_store.usage(ns, name)).spent
    accepted = (obj["metadata"].get("annotations") or {}).get(ACCEPTED_ANNOTATION)
    if used == 0 and accepted and await state.run_store.next_index(ns, name) == 0:
        SANDBOX_FIRST_CALL.observe(max(0.0, time.time() - float(accepted)))
    if claims.budget is not None and used >= claims.budget:
        raise ApiError(
            402, f"the run has spent {used} of its {claims.budget} tokens", "budget_exceeded"
        )
    model = await state.catalog.model(ns, claims.model or "")
    if model is None:
        raise ApiError(404, f"model {claims.model!r} not found")
    steps = [Step.from_wire(s).to_wire() for s in body.steps]
    emit = state.events.emitter(ns, name)
    try:
        turn, _ = await answer(
            model,
            ModelRequest(
                model=model.upstream,
                steps=steps,
                system_instruction=body.system_instruction,
                tools=body.tools,
            ),
            emit,
            await state.run_store.next_index(ns, name),
            lookup=lambda id_: state.catalog.model(ns, id_),
            provider_of=state.providers.for_model,
            accepts=lambda m: not media_refusals(m.spec.provider, m.name, steps),
            hold=state.slots.for_model,
        )
    except ProviderError as error:
        raise ApiError(502, error.message, error.code) from error
    if not await emit.flush():
        raise ended(name)
    for step in turn.steps:  # thoughts and text were streamed from `index` on, in this order
        await state.run_store.append_step(ns, name, step)
    usage = turn.usage
    spent = await state.run_store.add_usage(ns, name, usage, budget=claims.budget)
    reply = GenerateReply(
        steps=turn.steps + turn.call_steps(),
        usage=TokenUsage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            thought_tokens=usage.thought_tokens,
        ),
        budget_exceeded=claims.budget is not None and spent > claims.budget,
    )
    return web.json_response(reply.model_dump(mode="json"))


async def add_step(request: web.Request) -> web.Response:
    """A step of the run's timeline (a tool call or its result), announced as it happens."""
    state, claims, _ = await _run(request)
    step = Step.from_wire((await read_json(request)).get("step")).to_wire()
    index = await record_step(state, claims.namespace, claims.name, step)
    return web.json_response({"index": index})


async def finish(request: web.Request) -> web.Response:
    """How the run ended, in the agent's words; the operator writes it when the pod is done."""
    state, claims, _ = await _run(request)
    body = await read_json(request)
    if body.get("phase") not in OUTCOME_PHASES:
        raise ApiError(400, f"phase must be one of {sorted(OUTCOME_PHASES)}")
    errors = [Error.from_wire(e).to_wire() for e in body.get("errors") or []]
    outcome = {"phase": body["phase"], "errors": errors}
    if usage := _workspace_usage(body.get("workspace")):
        outcome["workspace"] = usage
    await state.run_store.set_outcome(claims.namespace, claims.name, outcome)
    stamp = {"metadata": {"annotations": {REPORTED_ANNOTATION: str(time.time())}}}
    try:  # the operator ends the run now; else when the pod ends, as it would without this
        await state.kube.patch("interactions", claims.namespace, claims.name, stamp)
    except (ApiException, aiohttp.ClientError, TimeoutError) as error:
        log.warning("could not mark %s/%s reported: %r", claims.namespace, claims.name, error)
    return web.json_response({})


def _workspace_usage(reported: Any) -> dict[str, int] | None:
    """What the run says its workspace holds, as an Environment's status spells it."""
    if not isinstance(reported, dict):
        return None
    counts = {"fileCount": reported.get("file_count"), "sizeBytes": reported.get("size_bytes")}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()):
        raise ApiError(400, "workspace must hold file_count and size_bytes, whole numbers")
    return counts


async def put_files(request: web.Request) -> web.Response:
    """The workspace, as a tar.gz, kept after the pod is gone."""
    state, claims, _ = await _run(request)
    archive = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        archive.extend(chunk)
        if len(archive) > FILES_LIMIT:
            raise ApiError(413, f"workspace archives are limited to {FILES_LIMIT} bytes")
    try:
        await asyncio.to_thread(workspace_archive.check, bytes(archive))
    except workspace_archive.InvalidArchive as error:
        raise ApiError(400, str(error)) from error
    await state.run_store.put_files(claims.namespace, claims.name, bytes(archive))
    return web.json_response({"bytes": len(archive)})


def internal_api() -> web.Application:
    """The sub-application mounted at /internal/v1: run tokens only, never API keys."""
    api = web.Application(middlewares=[run_token_middleware])
    api.router.add_post("/generate", generate)
    api.router.add_post("/steps", add_step)
    api.router.add_post("/finish", finish)
    api.router.add_put("/files", put_files)
    return api
