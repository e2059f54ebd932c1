"""What a model call costs the cluster and Redis: Models read from a watch, one status write for a
quick run, events written in batches with nothing lost."""

from __future__ import annotations

import asyncio
import time

import kubernetes
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import ConnectionError

from tether.dev.processes import wait_until
from tether.store.events import EventLog, stream_key


def apiserver_requests(control_plane, resource: str, verb: str, subresource: str = "") -> int:
    """How many requests the API server has served for `verb` on `resource`, by anyone."""
    text = control_plane.kubectl("get", "--raw", "/metrics")
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "apiserver_request"
            for sample in family.samples
            if sample.name == "apiserver_request_total"
            and sample.labels.get("resource") == resource
            and sample.labels.get("verb") == verb
            and sample.labels.get("subresource", "") == subresource
        )
    )


def model(name: str, **spec) -> dict:
    return {
        "apiVersion": "tether.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name, "namespace": "tenant-a"},
        "spec": {"provider": "echo", **spec},
    }


def test_a_call_reads_its_model_from_memory(stack, client, control_plane):
    client.interactions.create(model="echo", input="warm")
    before = apiserver_requests(control_plane, "models", "GET")
    for i in range(5):
        assert client.interactions.create(model="echo", input=f"n{i}").status == "completed"
    assert apiserver_requests(control_plane, "models", "GET") == before


def test_an_ending_finds_the_tenants_webhooks_in_memory(stack, client, control_plane):
    """Every ending asks who is subscribed to it (tether's webhooks): from the operator's watch
    of Webhooks, not from a LIST per interaction."""
    client.interactions.create(model="echo", input="warm")
    before = apiserver_requests(control_plane, "webhooks", "LIST")
    for i in range(5):
        assert client.interactions.create(model="echo", input=f"w{i}").status == "completed"
    time.sleep(1)  # the webhook outbox is read every half second
    assert apiserver_requests(control_plane, "webhooks", "LIST") == before


def test_a_new_model_works_at_once_and_a_change_is_seen_from_the_watch(stack, client):
    stack.cluster.apply(model("fresh-echo"))
    done = client.interactions.create(model="fresh-echo", input="hello")  # not watched yet
    assert done.status == "completed"

    stack.cluster.apply(model("fresh-echo", aliases=["fresh-alias"]))
    wait_until(
        "the alias, seen from the watch",
        lambda: _completes(client, "fresh-alias"),
        10,
    )


def _completes(client, model_id: str) -> bool:
    try:
        return client.interactions.create(model=model_id, input="hi").status == "completed"
    except Exception:
        return False


def test_a_quick_run_is_written_once_and_a_slow_one_is_marked_in_progress(
    stack, client, control_plane
):
    client.interactions.create(model="echo", input="warm")
    before = apiserver_requests(control_plane, "interactions", "PATCH", "status")
    for i in range(4):
        assert client.interactions.create(model="echo", input=f"q{i}").status == "completed"
    assert apiserver_requests(control_plane, "interactions", "PATCH", "status") - before == 4

    slow = client.interactions.create(model="echo", input="/sleep 3", background=True)
    wait_until(
        "the slow run marked in_progress",
        lambda: client.interactions.get(slow.id).status == "in_progress",
        10,
    )
    final = None
    for _ in range(100):
        final = client.interactions.get(slow.id)
        if final.status == "completed":
            break
        time.sleep(0.1)
    assert final.status == "completed"


async def test_events_go_in_batches_with_nothing_lost(stack):
    redis = Redis.from_url(stack.redis_url)
    log = EventLog(redis, 600)
    try:
        emit = log.emitter("tenant-a", "batched")
        await emit("interaction.created", interaction={"id": "batched"})
        await emit("step.start", index=0, step={"type": "model_output"})
        words = [f"w{i} " for i in range(300)]
        for word in words:  # queued without waiting for Redis
            await emit("step.delta", index=0, delta={"type": "text", "text": word})
        await emit("step.stop", index=0)
        await emit("step.start", index=1, step={"type": "thought"})
        for word in words[:3]:
            summary = {"type": "text", "text": word}
            await emit("step.delta", index=1, delta={"type": "thought_summary", "content": summary})
        await emit("step.delta", index=1, delta={"type": "thought_signature", "signature": "s"})
        assert await emit.flush()

        entries = await redis.xrange(stream_key("tenant-a", "batched"))
        assert len(entries) < 20  # rather than 308: deltas joined, a few round trips
        events = [e async for e in _replayed(log)]
        types = [e["event_type"] for e in events]
        assert types[:2] == ["interaction.created", "step.start"] and "step.stop" in types
        text = "".join(
            e["delta"]["text"]
            for e in events
            if e["event_type"] == "step.delta" and e["index"] == 0
        )
        assert text == "".join(words)
        thought = [e["delta"] for e in events if e.get("index") == 1 and "delta" in e]
        assert thought[0]["content"]["text"] == "".join(words[:3])
        assert thought[-1] == {"type": "thought_signature", "signature": "s"}

        ending = [{"event_type": "interaction.completed", "interaction": {"id": "batched"}}]
        assert await log.end("tenant-a", "batched", ending)
        await emit("step.delta", index=0, delta={"type": "text", "text": "late"})
        assert not await emit.flush()  # the ended log takes nothing more
        last = (await redis.xrevrange(stream_key("tenant-a", "batched"), count=1))[0]
        assert b"interaction.completed" in last[1][b"e"]
    finally:
        await redis.delete(stream_key("tenant-a", "batched"), "tether:ended:tenant-a/batched")
        await redis.aclose()


async def _replayed(log: EventLog):
    async for event in log.follow("tenant-a", "batched", "0", block_ms=50):
        yield event
        if event["event_type"] == "step.delta" and event["delta"]["type"] == "thought_signature":
            return


async def test_a_failed_write_fails_the_next_emit():
    unreachable = Redis(port=1, socket_connect_timeout=0.5)  # nothing listens there
    emit = EventLog(unreachable, 600).emitter("tenant-a", "unwritable")
    try:
        await emit("step.start", index=0, step={"type": "model_output"})
        with pytest.raises(ConnectionError):
            await emit.flush()
        with pytest.raises(ConnectionError):
            await emit("step.stop", index=0)
    finally:
        await unreachable.aclose()


async def test_the_ending_announced_first_is_what_readers_see_and_what_is_written(
    stack, client, control_plane
):
    slow = client.interactions.create(model="echo", input="/sleep 2", background=True)
    redis = Redis.from_url(stack.redis_url)
    try:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        status = {"phase": "cancelled", "updated": now}
        view = {"id": slow.id, "status": "cancelled"}
        completed = [{"event_type": "interaction.completed", "interaction": view}]
        # what an operator does first; the status write follows it
        assert await EventLog(redis, 600).end("tenant-a", slow.id, completed, status=status)
        assert client.interactions.get(slow.id).status == "cancelled"
        entries = await redis.xrange(stream_key("tenant-a", slow.id))
        custom = kubernetes.client.CustomObjectsApi(control_plane.api_client())

        def written() -> str | None:
            obj = custom.get_namespaced_custom_object(
                "tether.dev", "v1alpha1", "tenant-a", "interactions", slow.id
            )
            return (obj.get("status") or {}).get("phase")

        # the run, done two seconds later, writes the ending announced first, not its own
        wait_until("the announced ending written", lambda: written() == "cancelled", 15)
        await asyncio.sleep(0.5)
        assert written() == "cancelled"
        after = await redis.xrange(stream_key("tenant-a", slow.id))
        assert [e for e in after if b"interaction.completed" in e[1][b"e"]] == [
            e for e in entries if b"interaction.completed" in e[1][b"e"]
        ]
    finally:
        await redis.aclose()
