"""Every run ends exactly once: slow models, crowds of clients, cancels racing completion, an
operator dying between the steps of an ending, and clients retrying creates. Against the real
gateway, operator, Redis and API server, with httpx and the google-genai SDK as clients."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import kubernetes
import pytest
import redis
from google import genai
from google.genai import types
from redis.asyncio import Redis as AsyncRedis

from tests.integration.test_sdk_interactions import ENDED
from tether.dev.fakes.chat_completions import Reply
from tether.store.events import EventLog

NAMESPACE = "tenant-a"


@pytest.fixture(scope="module")
def http(stack, api_key):
    with httpx.Client(base_url=stack.url, headers={"x-goog-api-key": api_key}, timeout=90) as c:
        yield c


@pytest.fixture(scope="module")
def events(stack):
    client = redis.Redis.from_url(stack.redis_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def custom(stack):
    return kubernetes.client.CustomObjectsApi(stack.control_plane.api_client())


def logged(events: redis.Redis, name: str) -> list[dict]:
    """The interaction's event log, as stored."""
    return [json.loads(f[b"e"]) for _, f in events.xrange(f"tether:events:{NAMESPACE}/{name}")]


def completions(events: redis.Redis, name: str) -> int:
    return [e["event_type"] for e in logged(events, name)].count("interaction.completed")


def sse_events(response: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]


def stored(custom, name: str, timeout: float = 10) -> dict:
    """The resource as the cluster holds it, once its status says it ended (written just after
    the ending is announced, which is when a client has its answer)."""
    deadline = time.monotonic() + timeout
    while True:
        obj = custom.get_namespaced_custom_object(
            "tether.dev", "v1alpha1", NAMESPACE, "interactions", name
        )
        if obj.get("status", {}).get("phase") in ENDED or time.monotonic() > deadline:
            return obj
        time.sleep(0.05)


def wait_for_status(http: httpx.Client, name: str, statuses: set[str], timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = http.get(f"/v1/interactions/{name}").json()
        if body["status"] in statuses:
            return body
        time.sleep(0.05)
    raise AssertionError(f"{name} is {body['status']}, not one of {statuses}")


def test_a_synchronous_create_longer_than_five_seconds_answers_its_result(http):
    answer = http.post("/v1/interactions", json={"model": "echo", "input": "/sleep 6"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "completed"
    assert answer.json()["steps"][0]["content"][0]["text"] == "slept 6"


def test_a_stream_quiet_for_six_seconds_is_not_cut(http):
    body = {"model": "echo", "input": "/sleep 6", "stream": True}
    with http.stream("POST", "/v1/interactions", json=body) as response:
        seen = sse_events(response)
    assert seen[-1]["event_type"] == "interaction.completed"
    assert seen[-1]["interaction"]["status"] == "completed"


def test_cancel_of_a_long_run_answers_the_cancelled_interaction(http):
    started = http.post(
        "/v1/interactions", json={"model": "echo", "input": "/sleep 30", "background": True}
    ).json()
    wait_for_status(http, started["id"], {"in_progress"})
    answer = http.post(f"/v1/interactions/{started['id']}/cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"


def test_a_failing_model_through_the_retrying_sdk_makes_one_interaction_and_one_call(
    stack, api_key, upstream
):
    upstream.replies = [Reply(status=400, error="the upstream refuses this")]
    batch = f"b{uuid.uuid4().hex[:10]}"
    # The SDK as users have it: it retries 5xx, 408, 409 and 429 by itself.
    retrying = genai.Client(api_key=api_key, http_options=types.HttpOptions(base_url=stack.url))
    failed = retrying.interactions.create(model="local-llm", input="hi", labels={"batch": batch})
    assert failed.status == "failed"
    assert "the upstream refuses this" in failed.errors[0].message
    listed = httpx.get(
        f"{stack.url}/v1/interactions",
        params={"label": f"batch:{batch}"},
        headers={"x-goog-api-key": api_key},
    ).json()["interactions"]
    assert [i["id"] for i in listed] == [failed.id]
    assert upstream.served == 1


def test_hundreds_of_concurrent_creates_and_streams_all_answer(stack, api_key):
    async def main() -> tuple[list[int], list[str], list[str]]:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        async with httpx.AsyncClient(
            base_url=stack.url, headers={"x-goog-api-key": api_key}, timeout=120, limits=limits
        ) as http:

            async def sync_create(i: int) -> tuple[int, str]:
                answer = await http.post(
                    "/v1/interactions", json={"model": "echo", "input": "/sleep 1"}
                )
                return answer.status_code, answer.json().get("status", answer.text)

            async def stream_create(i: int) -> str:
                body = {"model": "echo", "input": f"streamed {i}", "stream": True}
                async with http.stream("POST", "/v1/interactions", json=body) as answer:
                    last = ""
                    async for line in answer.aiter_lines():
                        if line.startswith("data: "):
                            last = json.loads(line[6:])["event_type"]
                    return last

            results = await asyncio.gather(
                *(sync_create(i) for i in range(150)), *(stream_create(i) for i in range(120))
            )
        syncs, streams = results[:150], results[150:]
        return [c for c, _ in syncs], [s for _, s in syncs], streams

    codes, statuses, last_events = asyncio.run(main())
    assert set(codes) == {200}
    assert set(statuses) == {"completed"}
    assert set(last_events) == {"interaction.completed"}


def test_cancels_racing_completion_end_each_run_once(http, events):
    random.seed(7)
    delays = [random.uniform(0, 0.06) for _ in range(40)]

    def pair(delay: float) -> tuple[str, int, str]:
        created = http.post(
            "/v1/interactions", json={"model": "echo", "input": "race", "background": True}
        ).json()
        time.sleep(delay)
        answer = http.post(f"/v1/interactions/{created['id']}/cancel")
        return created["id"], answer.status_code, answer.json().get("status", "")

    with ThreadPoolExecutor(8) as pool:
        pairs = list(pool.map(pair, delays))
    assert {code for _, code, _ in pairs} <= {200, 400}, pairs
    for name, code, answered in pairs:
        final = wait_for_status(http, name, ENDED)
        assert final["status"] in ("completed", "cancelled")
        if code == 200:
            assert answered == final["status"]
        assert completions(events, name) == 1, name


def test_an_ending_cut_short_by_a_crash_is_finished_once_after_a_restart(
    stack, http, events, custom
):
    """An operator that dies right after announcing an ending (before writing its status), in
    the middle of a run, or with a status written by an older release and never announced,
    leaves work that the next operator finishes, once."""
    stack.stop_service("operator")
    try:

        def interaction(text: str) -> dict:
            return custom.create_namespaced_custom_object(
                "tether.dev",
                "v1alpha1",
                NAMESPACE,
                "interactions",
                {
                    "apiVersion": "tether.dev/v1alpha1",
                    "kind": "Interaction",
                    "metadata": {"generateName": "ix-crash-"},
                    "spec": {"model": "echo", "input": text},
                },
            )

        ended, midway = interaction("ended"), interaction("midway")
        announced = interaction("announced")
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        output = [{"type": "model_output", "content": [{"type": "text", "text": "y"}]}]
        ending = {"phase": "completed", "updated": now, "steps": output}
        asyncio.run(_announce(stack.redis_url, announced["metadata"]["name"], ending))
        for obj, status in (
            (
                ended,
                {
                    "phase": "completed",
                    "updated": now,
                    "steps": [{"type": "model_output", "content": [{"type": "text", "text": "x"}]}],
                },
            ),
            (midway, {"phase": "in_progress", "created": now, "updated": now}),
            (announced, {"phase": "in_progress", "created": now, "updated": now}),
        ):
            custom.patch_namespaced_custom_object_status(
                "tether.dev",
                "v1alpha1",
                NAMESPACE,
                "interactions",
                obj["metadata"]["name"],
                {"status": status},
            )
    finally:
        stack.start_operator()
    ended_name, midway_name = ended["metadata"]["name"], midway["metadata"]["name"]
    announced_name = announced["metadata"]["name"]
    assert http.get(f"/v1/interactions/{announced_name}").json()["status"] == "completed"

    written = stored(custom, announced_name, timeout=15)["status"]
    assert written["phase"] == "completed"
    assert written["steps"][0]["content"][0]["text"] == "y"  # never run
    assert completions(events, announced_name) == 1
    wait_for_status(http, midway_name, {"completed"})
    # the older release's status was written, then never announced: wait for both announcements
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and 0 in (
        completions(events, ended_name),
        completions(events, midway_name),
    ):
        time.sleep(0.05)
    assert completions(events, ended_name) == 1
    assert completions(events, midway_name) == 1
    assert (
        http.get(f"/v1/interactions/{ended_name}").json()["steps"][-1]["content"][0]["text"] == "x"
    )  # not run again
    with http.stream("GET", f"/v1/interactions/{ended_name}", params={"stream": "true"}) as r:
        assert sse_events(r)[-1]["event_type"] == "interaction.completed"


def test_requires_action_ends_the_run_and_a_restart_never_calls_the_model_again(
    stack, client, upstream, events
):
    upstream.replies = [Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}])]
    weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    asked = client.interactions.create(model="local-llm", input="weather?", tools=[weather])
    assert asked.status == "requires_action"
    assert upstream.served == 1
    stack.procs["operator"].kill()
    stack.procs["operator"].wait()
    stack.start_operator()
    after = client.interactions.create(model="echo", input="the operator is back")
    assert after.status == "completed"
    time.sleep(1)  # the restarted operator has seen every interaction by now, and must do nothing
    assert upstream.served == 1
    assert completions(events, asked.id) == 1
    assert client.interactions.get(asked.id).status == "requires_action"


def test_an_input_near_a_megabyte_completes_and_reads_back_whole(http, custom):
    text = " ".join(["w" * 999] * 900)  # 900,000 bytes, echoed back as the output
    answer = http.post("/v1/interactions", json={"model": "echo", "input": text})
    assert answer.status_code == 200, answer.text[:300]
    done = answer.json()
    assert done["status"] == "completed"
    assert done["steps"][0]["content"][0]["text"] == text
    status = stored(custom, done["id"])["status"]
    assert "steps" not in status and status["stepsRef"]
    timeline = http.get(f"/v1/interactions/{done['id']}").json()["steps"]
    assert [s["content"][0]["text"] for s in timeline] == [text, text]
    continued = http.post(
        "/v1/interactions",
        json={"model": "echo", "input": "/history", "previous_interaction_id": done["id"]},
    ).json()
    assert continued["steps"][0]["content"][0]["text"] == text


def test_a_request_too_large_to_store_is_a_413_and_creates_nothing(http):
    before = len(http.get("/v1/interactions", params={"page_size": 1000}).json()["interactions"])
    answer = http.post("/v1/interactions", json={"model": "echo", "input": "x" * 1_040_000})
    assert answer.status_code == 413
    assert "1000000" in answer.json()["error"]["message"]
    after = len(http.get("/v1/interactions", params={"page_size": 1000}).json()["interactions"])
    assert after == before


def test_an_idempotency_key_returns_the_same_interaction_and_calls_the_model_once(http, upstream):
    upstream.replies = [Reply("exactly once")]
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"model": "local-llm", "input": "charge the card"}
    first = http.post("/v1/interactions", json=body, headers=key).json()
    again = http.post("/v1/interactions", json=body, headers=key).json()
    assert first["id"] == again["id"]
    assert again["steps"][0]["content"][0]["text"] == "exactly once"
    assert upstream.served == 1
    other = http.post("/v1/interactions", json={**body, "input": "refund"}, headers=key)
    assert other.status_code == 422
    assert "different request" in other.json()["error"]["message"]

    racing = {"Idempotency-Key": uuid.uuid4().hex}
    with ThreadPoolExecutor(10) as pool:
        answers = list(
            pool.map(lambda _: http.post("/v1/interactions", json=body, headers=racing), range(10))
        )
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["id"] for a in answers}) == 1
    assert upstream.served == 2


def test_a_delete_during_a_stream_ends_it_with_an_error_event(http):
    seen: list[dict] = []
    created = threading.Event()
    name: list[str] = []

    def stream() -> None:
        body = {"model": "echo", "input": "/sleep 20", "stream": True}
        with http.stream("POST", "/v1/interactions", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if seen[-1]["event_type"] == "interaction.created":
                        name.append(seen[-1]["interaction"]["id"])
                        created.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert created.wait(15)
    assert http.delete(f"/v1/interactions/{name[0]}").status_code == 200
    reader.join(15)
    assert not reader.is_alive()
    assert seen[-1]["event_type"] == "error"
    assert seen[-1]["error"]["code"] == "interaction_deleted"


def test_sandbox_objects_of_ended_or_deleted_runs_are_removed_by_the_next_operator(stack, http):
    """An operator that died between an ending and its clean-up leaves a run's objects behind;
    the next one removes them, and leaves a running run's alone."""
    ended = http.post("/v1/interactions", json={"model": "echo", "input": "done"}).json()["id"]
    running = http.post(
        "/v1/interactions", json={"model": "echo", "input": "/sleep 20", "background": True}
    ).json()["id"]
    wait_for_status(http, running, {"in_progress"})
    networking = kubernetes.client.NetworkingV1Api(stack.control_plane.api_client())

    def policy(child: str, interaction: str) -> None:
        networking.create_namespaced_network_policy(
            NAMESPACE,
            {
                "metadata": {
                    "name": child,
                    "labels": {"tether.dev/sandbox": child, "tether.dev/interaction": interaction},
                },
                "spec": {"podSelector": {"matchLabels": {"tether.dev/sandbox": child}}},
            },
        )

    stack.stop_service("operator")
    policy("sbx-left-by-ended", ended)
    policy("sbx-left-by-deleted", "ix-00000000000000000000")
    policy("sbx-of-running", running)
    stack.start_operator()

    def names() -> set[str]:
        found = networking.list_namespaced_network_policy(
            NAMESPACE, label_selector="tether.dev/sandbox"
        )
        return {p.metadata.name for p in found.items}

    deadline = time.monotonic() + 20
    while names() != {"sbx-of-running"} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert names() == {"sbx-of-running"}
    networking.delete_namespaced_network_policy("sbx-of-running", NAMESPACE)
    http.post(f"/v1/interactions/{running}/cancel")


def test_a_client_dropping_its_stream_is_not_an_error_in_the_gateway_log(stack, http):
    log = stack.logs / "gateway.log"
    before = log.read_text(errors="replace")
    body = {"model": "echo", "input": "/sleep 2", "stream": True}
    with http.stream("POST", "/v1/interactions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                break  # the client goes away after the first event
    time.sleep(3)  # the run ends meanwhile: the gateway has written to the closed stream
    added = log.read_text(errors="replace")[len(before) :]
    assert "Traceback" not in added
    assert "unhandled error" not in added


async def _announce(redis_url: str, name: str, status: dict) -> None:
    """What an operator stopped right after an announcement leaves: the end in the log."""
    client = AsyncRedis.from_url(redis_url)
    try:
        view = {"id": name, "status": status["phase"]}
        completed = [{"event_type": "interaction.completed", "interaction": view}]
        assert await EventLog(client, 3600).end(NAMESPACE, name, completed, status=status)
    finally:
        await client.aclose()


def test_every_status_change_records_the_succeeded_condition_and_the_observed_generation(
    http, custom
):
    done = http.post("/v1/interactions", json={"model": "echo", "input": "hi"}).json()
    failed = http.post(
        "/v1/interactions",
        json={"model": "scripted", "input": "a", "previous_interaction_id": done["id"]},
    ).json()

    def status(name: str) -> dict:
        return stored(custom, name)["status"]

    [succeeded] = status(done["id"])["conditions"]
    assert (succeeded["type"], succeeded["status"], succeeded["reason"]) == (
        "Succeeded",
        "True",
        "Completed",
    )
    assert status(done["id"])["observedGeneration"] == 1
    assert failed["status"] == "failed", failed
    [condition] = status(failed["id"])["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "Failed")
    assert condition["message"] == failed["errors"][0]["message"]
