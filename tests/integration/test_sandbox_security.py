"""Untrusted code never gets a secret, a tenant cannot weaken a sandbox's isolation, and a run
token can spend no more than its budget or outlive its run: through the real gateway."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from google.genai._interactions_errors import APIStatusError
from redis.asyncio import Redis

from tests.integration.test_agent_runs import install_model
from tests.integration.test_sdk_interactions import wait_until_ended
from tether import run_tokens
from tether.store.run_store import RunStore

SECRET = {"secret_ref": {"name": "openai-key", "key": "api-key"}}
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


def refused(call) -> APIStatusError:
    with pytest.raises(APIStatusError) as caught:
        call()
    return caught.value


def labelled(stack, api_key: str, label: str) -> list:
    found = httpx.get(
        f"{stack.url}/v1/interactions",
        params={"label": f"probe:{label}"},
        headers={"x-goog-api-key": api_key},
    )
    assert found.status_code == 200, found.text
    return found.json()["interactions"]


def token_for(stack, interaction_id: str, model: str, budget: int | None = None) -> str:
    """A run token for an existing interaction, as the operator mints one for its sandbox."""
    obj = stack.cluster.dynamic.resources.get(
        api_version="tether.dev/v1alpha1", kind="Interaction"
    ).get(name=interaction_id, namespace="tenant-a")
    return run_tokens.issue(
        stack.run_token_key.encode(),
        "tenant-a",
        interaction_id,
        obj.metadata.uid,
        300,
        model=model,
        budget=budget,
    )


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def tar_gz(*members: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def live(stack, client):
    """A running interaction to mint run tokens for."""
    started = client.interactions.create(model="echo", input="/sleep 60", background=True)
    deadline = time.monotonic() + 10
    while client.interactions.get(started.id).status == "queued":
        assert time.monotonic() < deadline, "the interaction never started"
        time.sleep(0.05)
    yield started.id
    client.interactions.cancel(started.id)


# H1: untrusted code never gets a secret.


def test_an_env_value_from_a_secret_is_refused_at_create_and_nothing_is_created(
    stack, client, api_key
):
    error = refused(
        lambda: client.interactions.create(
            agent="eva",
            input="go",
            environment={"type": "remote", "env": {"MODE": "fast", "OPENAI": SECRET}},
            labels={"probe": "secret"},
            background=True,
        )
    )
    assert error.status_code == 400
    assert "environment.env.OPENAI takes its value from a Secret" in str(error)
    assert labelled(stack, api_key, "secret") == []


def test_an_agent_whose_environment_carries_a_secret_fails_before_any_sandbox(stack, client):
    stack.cluster.apply(
        {
            "apiVersion": "tether.dev/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": "leaky", "namespace": "tenant-a"},
            "spec": {
                "baseAgent": "eva",
                "baseEnvironment": {
                    "env": {"OPENAI": {"secretRef": {"name": "openai-key", "key": "api-key"}}}
                },
            },
        }
    )
    started = client.interactions.create(agent="leaky", input="go", background=True)
    done = wait_until_ended(client, started.id, timeout=30)
    assert done.status == "failed"
    assert done.errors[0].code == "invalid_agent"
    assert "environment.env.OPENAI takes its value from a Secret" in done.errors[0].message


# M2: the platform decides what a request may change in the sandbox.


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"image": "evil/miner:latest"}, "environment.image 'evil/miner:latest' is not allowed"),
        (
            {"resources": {"limits": {"cpu": "64"}}},
            "environment.resources.limits.cpu '64' is above the platform's maximum of '2'",
        ),
        (
            {"resources": {"requests": {"memory": "2Gi"}}},
            "environment.resources.requests.memory '2Gi' is above its limit '1Gi'",
        ),
        (
            {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
            "environment.resources.limits.nvidia.com/gpu: only cpu, memory",
        ),
    ],
    ids=["image", "limit over the maximum", "requests-only over the limit", "other resources"],
)
def test_a_sandbox_outside_the_platforms_policy_is_refused_at_create(
    stack, client, api_key, environment, message
):
    error = refused(
        lambda: client.interactions.create(
            agent="eva",
            input="go",
            environment={"type": "remote", **environment},
            labels={"probe": "policy"},
            background=True,
        )
    )
    assert error.status_code == 400
    assert message in str(error)
    assert labelled(stack, api_key, "policy") == []


# Low: agent_config.


def test_an_unknown_agent_config_model_is_404_and_nothing_is_created(stack, client, api_key):
    error = refused(
        lambda: client.interactions.create(
            agent="eva",
            input="go",
            agent_config={"type": "dynamic", "model": "no-such-model"},
            labels={"probe": "model"},
            background=True,
        )
    )
    assert error.status_code == 404
    assert "model 'no-such-model' not found" in str(error)
    assert labelled(stack, api_key, "model") == []


def test_an_antigravity_agent_config_runs_with_eva(stack, client):
    model = install_model(stack, "antigravity-script", [{"text": "done, antigravity"}])
    started = client.interactions.create(
        agent="eva",
        input="go",
        agent_config={"type": "antigravity", "model": model, "max_total_tokens": 1000},
        background=True,
    )
    done = wait_until_ended(client, started.id, timeout=60)
    assert done.status == "completed", done.errors
    assert done.output_text == "done, antigravity"


# M1: the run-token budget holds under parallel calls.


def test_parallel_model_calls_cannot_spend_past_the_budget(stack, live):
    per_call = 3 + 50  # 3 words in, 50 out
    model = install_model(stack, "costly", [{"text": "word " * 50, "delaySeconds": 0.3}])
    budget = 150
    token = token_for(stack, live, model, budget=budget)
    steps = {"steps": [{"type": "user_input", "content": [{"type": "text", "text": "a b c"}]}]}

    def call(_):
        return httpx.post(
            f"{stack.internal_url}/internal/v1/generate",
            json=steps,
            headers=bearer(token),
            timeout=30,
        )

    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(call, range(30)))
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {200, 402, 409}, [a.text for a in answers]
    assert 409 in codes
    in_flight = next(a for a in answers if a.status_code == 409)
    assert in_flight.json()["error"]["code"] == "call_in_flight"
    spent = sum(
        a.json()["usage"]["input_tokens"] + a.json()["usage"]["output_tokens"]
        for a in answers
        if a.status_code == 200
    )
    assert spent <= budget + per_call  # at most the one call that crossed it

    async def overspent():
        redis = Redis.from_url(stack.redis_url)
        try:
            return await RunStore(redis, 60).overspent("tenant-a", live)
        finally:
            await redis.aclose()

    # What the operator reads at the end: a run above its budget ended budget_exceeded.
    assert asyncio.run(overspent()) == ((spent, budget) if spent > budget else None)


# M3: a run token is worth nothing after its run ended, requires_action included.


def test_a_run_token_takes_no_calls_after_the_run_required_action(stack, client):
    model = install_model(
        stack, "weather-asker", [{"functionCalls": [{"name": "get_weather", "arguments": {}}]}]
    )
    asked = client.interactions.create(model=model, input="weather?", tools=[WEATHER])
    assert asked.status == "requires_action"
    token = token_for(stack, asked.id, model)
    with httpx.Client(base_url=f"{stack.internal_url}/internal/v1", headers=bearer(token)) as http:
        answers = {
            "generate": http.post("/generate", json={"steps": []}),
            "steps": http.post("/steps", json={"step": {"type": "model_output", "content": []}}),
            "finish": http.post("/finish", json={"phase": "completed"}),
            "files": http.put("/files", content=tar_gz(("late.txt", b"late"))),
        }
    for route, answer in answers.items():
        assert answer.status_code == 409, (route, answer.text)
        assert "already ended (requires_action)" in answer.json()["error"]["message"]
    events = [e.event_type for e in client.interactions.get(asked.id, stream=True)]
    assert events.count("interaction.completed") == 1
    assert events[-1] == "interaction.completed"


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (b"definitely not a tar.gz", "not a readable tar.gz"),
        (tar_gz(("ok.txt", b"1"), ("/etc/cron.d/x", b"2")), "'/etc/cron.d/x'"),
        (tar_gz(("../../escape.txt", b"1")), "'../../escape.txt'"),
    ],
    ids=["not a tar", "absolute path", "dot-dot"],
)
def test_an_upload_that_is_not_a_clean_tar_gz_is_refused(stack, api_key, live, upload, message):
    token = token_for(stack, live, "echo")
    put = httpx.put(
        f"{stack.internal_url}/internal/v1/files", content=upload, headers=bearer(token)
    )
    assert put.status_code == 400, put.text
    assert message in put.json()["error"]["message"]
    listed = httpx.get(
        f"{stack.url}/v1/interactions/{live}/files", headers={"x-goog-api-key": api_key}
    )
    assert listed.json() == {"files": []}


def test_a_damaged_stored_archive_answers_404_not_500(stack, api_key, live):
    async def damage():
        redis = Redis.from_url(stack.redis_url)
        try:
            await RunStore(redis, 60).put_files("tenant-a", live, b"\x1f\x8b damaged")
        finally:
            await redis.aclose()

    asyncio.run(damage())
    headers = {"x-goog-api-key": api_key}
    for path in ("files", "files/any.txt"):
        got = httpx.get(f"{stack.url}/v1/interactions/{live}/{path}", headers=headers)
        assert got.status_code == 404, got.text
        assert "cannot be read" in got.json()["error"]["message"]
