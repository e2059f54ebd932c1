"""Stored interactions expire after the retention period; running ones never do."""

from __future__ import annotations

import datetime as dt

from google.genai._interactions_errors import NotFoundError
from redis.asyncio import Redis

from tether.kube import Kube
from tether.operator.context import Context
from tether.operator.sweeps import sweep_once
from tether.settings import Settings
from tether.store.events import EventLog


async def test_finished_interactions_past_retention_are_deleted_with_their_logs(stack, client):
    finished = client.interactions.create(model="echo", input="keep me an hour")
    running = client.interactions.create(model="echo", input="/sleep 30", background=True)
    settings = Settings(
        kubeconfig=str(stack.control_plane.kubeconfig),
        redis_url=stack.redis_url,
        retention_seconds=3600,
    )
    ctx = Context(
        settings=settings,
        kube=await Kube.connect(settings, component="test"),
        events=EventLog(Redis.from_url(stack.redis_url), settings.event_ttl_seconds),
    )
    try:
        now = dt.datetime.now(dt.UTC)
        assert f"tenant-a/{finished.id}" not in await sweep_once(ctx, now)
        assert client.interactions.get(finished.id).status == "completed"

        deleted = await sweep_once(ctx, now + dt.timedelta(hours=2))
        assert f"tenant-a/{finished.id}" in deleted
        assert f"tenant-a/{running.id}" not in deleted
        try:
            client.interactions.get(finished.id)
            raise AssertionError("an expired interaction is still served")
        except NotFoundError:
            pass
        assert not await ctx.events.exists("tenant-a", finished.id)
        assert client.interactions.get(running.id).status in ("queued", "in_progress")
    finally:
        client.interactions.cancel(running.id)
        await ctx.events.redis.aclose()
        await ctx.kube.close()
