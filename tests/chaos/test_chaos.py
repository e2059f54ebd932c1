"""The fault and load suite (`make chaos`): a stack of its own, supervised, whose operator,
gateway, Redis and API server are killed at seeded random moments while background model and
agent runs (with cancels, `requires_action` and resumed streams), synchronous creates and
streams are in flight. Then every run must have ended exactly once, and nothing leaked.

The load is set by CHAOS_* variables (see `Load`); the defaults are the issue's minimums. The
counts are printed at the end of the session and written to chaos-report.json."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import kubernetes
import pytest
import redis

from tests.chaos.load import (
    AGENT_SCRIPTS,
    Client,
    GaveUp,
    Load,
    Outage,
    StreamCut,
    Timeline,
    launch,
    plan,
    terminal,
)
from tests.chaos.report import REPORT_KEY, After, Report, build
from tether.api import API_VERSION
from tether.dev.processes import StartupError
from tether.dev.stack import DevStack
from tether.operator.sandbox_pod import INTERACTION_LABEL, SANDBOX_LABEL
from tether.store.events import TERMINAL_EVENT, stream_key

pytestmark = pytest.mark.chaos

TENANT = "chaos"
REPLAY_SECONDS = 15
LEFTOVER_GRACE_SECONDS = 30


@pytest.fixture(scope="module")
def chaos(stack, tmp_path_factory, pytestconfig) -> Report:
    """Run the whole fault and load scenario once; the tests below each read one of its checks."""
    load = Load.from_env(os.environ)
    api_key = stack.add_tenant(TENANT)
    for model, (responses, _, _) in AGENT_SCRIPTS.items():
        stack.cluster.apply(
            {
                "apiVersion": API_VERSION,
                "kind": "Model",
                "metadata": {"name": model, "namespace": TENANT},
                "spec": {"provider": "scripted", "responses": responses},
            }
        )
    report = asyncio.run(run_under_faults(stack, api_key, load))
    path = tmp_path_factory.mktemp("chaos") / "chaos-report.json"
    path.write_text(json.dumps(report.to_json(), indent=2, default=str))
    pytestconfig.stash[REPORT_KEY] = (
        f"{report.table()}\n\nwritten to {path}; the stack's logs are in {stack.logs}"
    )
    return report


IN_FLIGHT_AT_A_KILL = 50
"""The issue's bar: kills land while at least this many runs are in flight (fewer only when
CHAOS_BACKGROUND_RUNS asks for a lighter load)."""


async def run_under_faults(stack: DevStack, api_key: str, load: Load) -> Report:
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(32))
    schedule = load.kill_schedule()
    runs = plan(load, kills=[at for at, _ in schedule])
    timeline = Timeline(grace=load.outage_grace)
    client = Client(stack.url, api_key, timeline, load.retry_seconds)
    gates = {
        "sync": asyncio.Semaphore(load.concurrency),
        "stream": asyncio.Semaphore(load.concurrency),
    }
    unbounded = asyncio.Semaphore(len(runs))
    try:
        tasks = [asyncio.create_task(launch(client, r, gates.get(r.kind, unbounded))) for r in runs]
        await inject_faults(stack, schedule, timeline)
        settled_by = time.monotonic() + load.settle_seconds
        await asyncio.wait(tasks, timeout=load.settle_seconds)
        for run, task in zip(runs, tasks, strict=True):
            if not task.done():
                task.cancel()
                run.refused = run.refused or "the client saw no end before the settle time"
            elif error := (None if task.cancelled() else task.exception()):
                run.refused = run.refused or f"client error {error!r}"
        await asyncio.gather(*tasks, return_exceptions=True)
        after = await inspect(stack, client, settled_by)
    finally:
        await client.aclose()
    return build(load, runs, timeline, after)


async def inject_faults(stack: DevStack, schedule: list[tuple[float, str]], timeline: Timeline):
    """SIGKILL each component at its moment; an outage lasts until the stack is healthy again."""

    async def recovered(outage: Outage) -> None:
        with contextlib.suppress(StartupError):  # never healthy: the outage stays open
            await asyncio.to_thread(stack.wait_healthy, 60)
            outage.end = round(timeline.now(), 3)

    recoveries = []
    for at, component in schedule:
        await asyncio.sleep(max(0.0, at - timeline.now()))
        outage = Outage(component, round(timeline.now(), 3))
        timeline.outages.append(outage)
        timeline.in_flight_at_kills.append(timeline.in_flight)
        await asyncio.to_thread(stack.kill, component)
        recoveries.append(asyncio.create_task(recovered(outage)))
    await asyncio.gather(*recoveries)


async def inspect(stack: DevStack, client: Client, settled_by: float) -> After:
    """The state once the faults are over: stragglers get until `settled_by` to end."""
    listed = await list_interactions(client)
    while any(not terminal(i["status"]) for i in listed.values()) and (
        time.monotonic() < settled_by
    ):
        await asyncio.sleep(2)
        listed = await list_interactions(client)
    ended = [id_ for id_, i in listed.items() if terminal(i["status"])]
    gate = asyncio.Semaphore(20)
    replayed = await asyncio.gather(*(replay(client, i, gate) for i in ended))
    replays = dict(zip(ended, replayed, strict=True))
    return After(
        listed=listed,
        replays=replays,
        logged_completions=await asyncio.to_thread(logged_completions, stack, list(listed)),
        leftovers=await asyncio.to_thread(sandbox_leftovers, stack, listed),
        restarts=stack.restarts,
        resources=await asyncio.to_thread(unusual_resources, stack, listed),
    )


async def list_interactions(client: Client) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    params = {"page_size": "1000"}
    while True:
        response = await client.call("list", "GET", "/v1/interactions", params=params)
        response.raise_for_status()
        page = response.json()
        found.update((i["id"], i) for i in page["interactions"])
        if not page.get("next_page_token"):
            return found
        params = {"page_size": "1000", "page_token": page["next_page_token"]}


async def replay(client: Client, id_: str, gate: asyncio.Semaphore) -> list[dict[str, Any]] | str:
    """Every event of an ended interaction, from the start, as a client resuming at 0 gets them."""
    events: list[dict[str, Any]] = []
    params = {"stream": "true", "last_event_id": "0"}
    async with gate:
        try:
            async with asyncio.timeout(REPLAY_SECONDS):
                stream = client.events("replay", "GET", f"/v1/interactions/{id_}", params=params)
                async with contextlib.aclosing(stream):
                    async for event in stream:
                        events.append(event)
                        if event.get("event_type") == TERMINAL_EVENT:
                            return events
        except TimeoutError:
            return f"did not end within {REPLAY_SECONDS}s ({len(events)} events)"
        except (StreamCut, GaveUp, httpx.HTTPStatusError) as error:
            return f"failed: {error}"
    return f"ended with {events[-1].get('event_type') if events else 'no event'}"


def logged_completions(stack: DevStack, ids: list[str]) -> dict[str, int]:
    """How many interaction.completed events each interaction's event log holds."""
    client = redis.Redis.from_url(stack.redis_url, socket_timeout=10)
    try:
        with client.pipeline(transaction=False) as pipe:
            for id_ in ids:
                pipe.xrange(stream_key(TENANT, id_))
            logs = pipe.execute()
    finally:
        client.close()
    return {
        id_: sum(1 for _, fields in log if json.loads(fields[b"e"])["event_type"] == TERMINAL_EVENT)
        for id_, log in zip(ids, logs, strict=True)
    }


def unusual_resources(stack: DevStack, listed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Interaction resources of runs still going or failed, for the report: their status
    and annotations tell where each one stopped."""
    api = stack.control_plane.api_client()
    custom = kubernetes.client.CustomObjectsApi(api)
    group, version = API_VERSION.split("/")
    found = {}
    try:
        for id_, interaction in listed.items():
            if interaction["status"] == "failed" or not terminal(interaction["status"]):
                obj = custom.get_namespaced_custom_object(
                    group, version, TENANT, "interactions", id_
                )
                obj["metadata"].pop("managedFields", None)
                found[id_] = {"metadata": obj["metadata"], "status": obj.get("status")}
    finally:
        api.close()
    return found


def sandbox_leftovers(stack: DevStack, listed: dict[str, dict[str, Any]]) -> list[str]:
    """Sandbox pods, Secrets and NetworkPolicies of ended (or deleted) runs still there after a
    short grace for the deletions to finish."""
    api = stack.control_plane.api_client()
    core, net = kubernetes.client.CoreV1Api(api), kubernetes.client.NetworkingV1Api(api)
    lists = {
        "pod": core.list_namespaced_pod,
        "secret": core.list_namespaced_secret,
        "networkpolicy": net.list_namespaced_network_policy,
    }
    deadline = time.monotonic() + LEFTOVER_GRACE_SECONDS
    try:
        while True:
            left = []
            for kind, list_ in lists.items():
                for item in list_(TENANT, label_selector=SANDBOX_LABEL).items:
                    owner = (item.metadata.labels or {}).get(INTERACTION_LABEL, "?")
                    if terminal((listed.get(owner) or {"status": "completed"})["status"]):
                        left.append(f"{kind}/{item.metadata.name} ({owner})")
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(1)
    finally:
        api.close()


def test_every_interaction_ends(chaos):
    assert chaos.checks["terminal"].ok, chaos.checks["terminal"]


def test_every_interaction_has_exactly_one_completion_event(chaos):
    assert chaos.checks["completions"].ok, chaos.checks["completions"]


def test_no_run_is_lost_duplicated_or_left_unanswered(chaos):
    checks = [chaos.checks[name] for name in ("lost", "duplicated", "unanswered")]
    assert all(c.ok for c in checks), "\n".join(str(c) for c in checks if not c.ok)


def test_no_sandbox_pod_secret_or_network_policy_outlives_its_run(chaos):
    assert chaos.checks["leftovers"].ok, chaos.checks["leftovers"]


def test_no_error_answer_but_503_during_an_outage(chaos):
    assert chaos.checks["answers"].ok, chaos.checks["answers"]


def test_every_stream_read_across_cuts_is_exactly_the_event_log(chaos):
    assert chaos.checks["streams"].ok, chaos.checks["streams"]


def test_every_run_ends_as_its_model_or_its_cancel_decided(chaos):
    assert chaos.checks["endings"].ok, chaos.checks["endings"]


def test_each_component_was_killed_under_load_and_came_back(chaos):
    assert chaos.checks["faults"].ok, chaos.checks["faults"]
    wanted = min(IN_FLIGHT_AT_A_KILL, Load.from_env(os.environ).background_runs)
    assert max(chaos.figures["runs in flight at each kill"]) >= wanted, chaos.figures
