"""The gateway's internal API, as a sandbox's agent container uses it with its run token."""

from __future__ import annotations

import io
import tarfile
import time

import httpx
import pytest

from tether import run_tokens


@pytest.fixture(scope="module")
def scripted(stack):
    stack.cluster.apply(
        {
            "apiVersion": "tether.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": "planner", "namespace": "tenant-a"},
            "spec": {
                "provider": "scripted",
                "responses": [
                    {
                        "text": "let me look",
                        "functionCalls": [{"name": "run_code", "arguments": {"code": "1"}}],
                    },
                    {"text": "all done now"},
                ],
            },
        }
    )


@pytest.fixture
def run(stack, client, scripted):
    """A live interaction and a token for it, as the operator would mint for its sandbox."""
    live = client.interactions.create(model="echo", input="/sleep 60", background=True)
    deadline = time.monotonic() + 10
    while client.interactions.get(live.id).status == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
    obj = stack.cluster.dynamic.resources.get(
        api_version="tether.dev/v1alpha1", kind="Interaction"
    ).get(name=live.id, namespace="tenant-a")

    def token(budget=None, key=stack.run_token_key, uid=obj.metadata.uid):
        return run_tokens.issue(
            key.encode(), "tenant-a", live.id, uid, 300, model="planner", budget=budget
        )

    with httpx.Client(base_url=f"{stack.internal_url}/internal/v1", timeout=30) as http:
        yield live.id, token, http
    client.interactions.cancel(live.id)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_the_model_proxy_answers_and_streams_to_the_interactions_clients(client, run):
    interaction_id, token, http = run
    answer = http.post(
        "/generate",
        json={"steps": [{"type": "user_input", "content": [{"type": "text", "text": "go"}]}]},
        headers=bearer(token()),
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["steps"] == [  # the model's turn: its text, then its calls
        {"type": "model_output", "content": [{"type": "text", "text": "let me look"}]},
        {"type": "function_call", "id": "call-0-0", "name": "run_code", "arguments": {"code": "1"}},
    ]
    assert body["budget_exceeded"] is False
    stream = client.interactions.get(interaction_id, stream=True)
    deltas = []
    for event in stream:
        if event.event_type == "step.delta":
            deltas.append(event.delta.text)
        if event.event_type == "step.stop" and deltas:
            break
    stream.close()
    assert "".join(deltas) == "let me look"


def test_the_budget_is_counted_on_the_server(run):
    _, token, http = run
    steps = {
        "steps": [{"type": "user_input", "content": [{"type": "text", "text": "a b c d e f"}]}]
    }
    first = http.post("/generate", json=steps, headers=bearer(token(budget=5))).json()
    assert first["budget_exceeded"] is True  # 6 words in, 4 out: over 5
    refused = http.post("/generate", json=steps, headers=bearer(token(budget=5)))
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "budget_exceeded"


def test_tokens_that_are_missing_forged_or_for_another_run_are_refused(run):
    _, token, http = run
    assert http.post("/generate", json={}).status_code == 401
    forged = token(key="not-the-key-" * 4)
    assert http.post("/generate", json={}, headers=bearer(forged)).status_code == 401
    stale = http.post("/generate", json={}, headers=bearer(token(uid="another-uid")))
    assert stale.status_code == 404


def test_steps_outcome_and_files_are_kept_for_the_operator_and_clients(stack, run, api_key):
    interaction_id, token, http = run
    step = {"type": "code_execution_call", "id": "c1", "arguments": {"code": "print(1)"}}
    assert http.post("/steps", json={"step": step}, headers=bearer(token())).json() == {"index": 0}
    bad = http.post("/finish", json={"phase": "exploded"}, headers=bearer(token()))
    assert bad.status_code == 400
    done = http.post("/finish", json={"phase": "completed"}, headers=bearer(token()))
    assert done.status_code == 200

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        data = b"name,price\nwidget,9.99\n"
        info = tarfile.TarInfo("prices.csv")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    put = http.put("/files", content=archive.getvalue(), headers=bearer(token()))
    assert put.status_code == 200
    public = {"x-goog-api-key": api_key}
    listed = httpx.get(f"{stack.url}/v1/interactions/{interaction_id}/files", headers=public).json()
    assert listed == {"files": [{"path": "prices.csv", "bytes": 23}]}
    got = httpx.get(
        f"{stack.url}/v1/interactions/{interaction_id}/files/prices.csv", headers=public
    )
    assert (got.status_code, got.text) == (200, "name,price\nwidget,9.99\n")
    assert got.headers["content-type"].startswith("text/csv")
    missing = httpx.get(
        f"{stack.url}/v1/interactions/{interaction_id}/files/nope.txt", headers=public
    )
    assert missing.status_code == 404


def test_a_run_that_has_ended_takes_no_more_calls(client, run):
    interaction_id, token, http = run
    client.interactions.cancel(interaction_id)
    ended = http.post("/generate", json={}, headers=bearer(token()))
    assert ended.status_code == 409
    assert "already ended (cancelled)" in ended.json()["error"]["message"]
