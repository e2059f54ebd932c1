"""What the operator checks on a clock: agent runs whose sandbox went quiet end anyway."""

from __future__ import annotations

import datetime as dt
import time

import kubernetes
import pytest
from redis.asyncio import Redis

from tests.integration.test_agent_runs import sandbox_pods, wait_for_running_sandbox
from tests.integration.test_sdk_interactions import wait_until_ended
from tether.kube import Kube
from tether.operator.context import Context
from tether.operator.sweeps import check_sandboxes
from tether.settings import Settings
from tether.store.events import EventLog


@pytest.fixture
async def ctx(stack):
    settings = Settings(kubeconfig=str(stack.control_plane.kubeconfig), redis_url=stack.redis_url)
    ctx = Context(
        settings=settings,
        kube=await Kube.connect(settings, component="test"),
        events=EventLog(Redis.from_url(stack.redis_url), settings.event_ttl_seconds),
    )
    yield ctx
    await ctx.events.redis.aclose()
    await ctx.kube.close()


def quiet_run(client, stack, name: str) -> str:
    stack.cluster.apply(
        {
            "apiVersion": "tether.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": name, "namespace": "tenant-a"},
            "spec": {"provider": "scripted", "responses": [{"text": "zz", "delaySeconds": 300}]},
        }
    )
    started = client.interactions.create(
        agent="eva", input="go", agent_config={"type": "dynamic", "model": name}, background=True
    )
    wait_for_running_sandbox(stack, started.id)
    return started.id


async def test_a_sandbox_past_its_deadline_ends_its_run_incomplete(stack, client, ctx):
    run = quiet_run(client, stack, "quiet-past-deadline")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)  # past eva's 900 s and the grace
    assert run in await check_sandboxes(ctx, later)
    done = wait_until_ended(client, run)
    assert (done.status, done.errors[0].code) == ("incomplete", "deadline_exceeded")
    deadline = time.monotonic() + 20
    while sandbox_pods(stack, run) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox_pods(stack, run) == []


async def test_a_sandbox_gone_unheard_ends_its_run_failed(stack, client, ctx):
    run = quiet_run(client, stack, "quiet-gone")
    stack.stop_service("operator")  # it does not hear of the deletion
    try:
        core = kubernetes.client.CoreV1Api(stack.control_plane.api_client())
        [pod] = sandbox_pods(stack, run)
        core.delete_namespaced_pod(pod.metadata.name, "tenant-a", grace_period_seconds=0)
        deadline = time.monotonic() + 20
        while sandbox_pods(stack, run) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run in await check_sandboxes(ctx, dt.datetime.now(dt.UTC))
    finally:
        stack.start_operator()
    done = wait_until_ended(client, run)
    assert (done.status, done.errors[0].code) == ("failed", "sandbox_lost")
