"""Agent runs in sandbox pods, end to end: SDK → gateway → operator → pod on the dev node →
agent loop → model proxy and workspace tools → status, steps and files."""

from __future__ import annotations

import subprocess
import time

import httpx
import kubernetes
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import sdk_client
from tests.integration.test_sdk_interactions import wait_until_ended
from tether.dev.control_plane import KubectlError
from tether.dev.processes import wait_until
from tether.operator.sandbox_pod import INTERACTION_LABEL


def install_model(stack, name: str, responses: list[dict]) -> str:
    """A scripted Model in tenant-a; returns its name."""
    stack.cluster.apply(
        {
            "apiVersion": "tether.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": name, "namespace": "tenant-a"},
            "spec": {"provider": "scripted", "responses": responses},
        }
    )
    return name


def call(name: str, **arguments) -> dict:
    return {"functionCalls": [{"name": name, "arguments": arguments}]}


def agent_run(client, model: str, **extra):
    config = {"type": "dynamic", "model": model, **extra.pop("agent_config", {})}
    started = client.interactions.create(
        agent="eva", input="go", agent_config=config, background=True, **extra
    )
    return wait_until_ended(client, started.id, timeout=60)


def sandbox_pods(stack, interaction: str | None = None) -> list:
    """tenant-a's sandbox pods; with `interaction`, only that run's (a run that has ended may
    leave its pod winding down for a few seconds)."""
    core = kubernetes.client.CoreV1Api(stack.control_plane.api_client())
    selector = f"{INTERACTION_LABEL}={interaction}" if interaction else "tether.dev/sandbox"
    return core.list_namespaced_pod("tenant-a", label_selector=selector).items


def test_an_agent_writes_runs_and_answers_and_its_files_outlive_the_pod(
    stack, client, api_key, script
):
    model = script(
        "writer",
        [
            call("write_file", path="notes/hello.txt", content="hello sandbox"),
            call("run_code", language="bash", code="tr a-z A-Z < notes/hello.txt"),
            {"text": "wrote notes/hello.txt"},
        ],
    )
    done = agent_run(client, model)
    assert done.status == "completed", done.errors
    assert done.output_text == "wrote notes/hello.txt"
    types = [s.type for s in done.steps]
    assert types == [
        "user_input",
        "function_call",
        "function_result",
        "code_execution_call",
        "code_execution_result",
        "model_output",
    ]
    assert done.steps[4].result == "HELLO SANDBOX"
    assert done.usage.total_tokens > 0
    wait_for_no_sandbox(stack, done.id)  # and its pod is removed
    headers = {"x-goog-api-key": api_key}
    listed = httpx.get(f"{stack.url}/v1/interactions/{done.id}/files", headers=headers).json()
    assert listed == {"files": [{"path": "notes/hello.txt", "bytes": 13}]}
    content = httpx.get(
        f"{stack.url}/v1/interactions/{done.id}/files/notes/hello.txt", headers=headers
    )
    assert content.text == "hello sandbox"


def test_a_hosted_agent_id_resolves_to_eva(client):
    done = client.interactions.create(agent="antigravity-preview-05-2026", input="hello")
    assert done.status == "completed"
    assert done.output_text.startswith("This is the scripted model")


def test_a_client_function_requires_action_and_its_result_continues(client, script):
    model = script(
        "asker",
        [call("get_weather", city="Oslo"), {"text": "It is -3 C in Oslo."}],
    )
    weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    asked = agent_run(client, model, tools=[weather])
    assert asked.status == "requires_action"
    [function_call] = [s for s in asked.steps if s.type == "function_call"]
    assert (function_call.name, function_call.arguments) == ("get_weather", {"city": "Oslo"})
    continued = client.interactions.create(
        agent="eva",
        agent_config={"type": "dynamic", "model": model},
        tools=[weather],
        previous_interaction_id=asked.id,
        input=[{"type": "function_result", "call_id": function_call.id, "result": {"temp_c": -3}}],
        background=True,
    )
    finished = wait_until_ended(client, continued.id, timeout=60)
    assert (finished.status, finished.output_text) == ("completed", "It is -3 C in Oslo.")


def test_max_steps_stops_a_run_as_incomplete(client, script):
    model = script("looper", [call("list_files", path=f"p{i}") for i in range(10)])
    done = agent_run(client, model, agent_config={"max_steps": 3})
    assert done.status == "incomplete"
    assert done.errors[0].code == "max_steps"


def test_the_same_tool_call_repeated_is_stopped(client, script):
    model = script("stuck", [call("list_files", path=".")] * 5)
    done = agent_run(client, model)
    assert done.status == "failed"
    assert done.errors[0].code == "repeated_tool_call"
    assert "same arguments 3 times" in done.errors[0].message


def test_the_token_budget_ends_the_run_as_budget_exceeded(client, script):
    model = script("spender", [call("list_files", path=f"p{i}") for i in range(10)])
    done = agent_run(client, model, agent_config={"max_total_tokens": 3})
    assert done.status == "budget_exceeded"
    assert done.usage.total_tokens >= 3


def test_the_deadline_ends_the_run_as_incomplete(client, script):
    model = script("slow", [{"text": "too late", "delaySeconds": 30}])
    started = time.monotonic()
    done = agent_run(client, model, agent_config={"timeout_seconds": 2})
    assert done.status == "incomplete"
    assert done.errors[0].code == "deadline_exceeded"
    assert time.monotonic() - started < 30


def test_a_run_ends_when_its_agent_reports_not_when_its_pod_has_wound_down(stack, client, script):
    """A real pod takes seconds to stop after its agent exits (the kubelet notices, then stops
    the workspace sidecar): the run's end does not wait for that."""
    model = script("prompt", [{"text": "done at once"}])
    started = client.interactions.create(
        agent="eva", input="go", agent_config={"type": "dynamic", "model": model}, background=True
    )
    events = [e.event_type for e in client.interactions.get(started.id, stream=True)]
    assert events[-1] == "interaction.completed"
    [pod] = sandbox_pods(stack, started.id)
    # still there and not ended when the client heard the end (the kubelet's status lags: it
    # may not even say Running yet)
    assert pod.status.phase not in ("Succeeded", "Failed")
    assert client.interactions.get(started.id).status == "completed"


def test_cancel_deletes_the_sandbox(stack, client, script):
    model = script("sleeper", [{"text": "never", "delaySeconds": 60}])
    started = client.interactions.create(
        agent="eva", input="go", agent_config={"type": "dynamic", "model": model}, background=True
    )
    wait_for_running_sandbox(stack, started.id)
    assert client.interactions.cancel(started.id).status == "cancelled"
    wait_for_no_sandbox(stack, started.id)


def wait_for_no_sandbox(stack, interaction: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while sandbox_pods(stack, interaction):
        assert time.monotonic() < deadline, f"the sandbox pod outlived its run by {timeout}s"
        time.sleep(0.1)


def wait_for_running_sandbox(stack, interaction: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        running = [
            p
            for p in sandbox_pods(stack, interaction)
            if p.status.phase == "Running" and not p.metadata.deletion_timestamp
        ]
        if running:
            return running[0]
        assert time.monotonic() < deadline, "the sandbox never ran"
        time.sleep(0.1)


def test_a_crashed_sandbox_fails_the_run_with_its_exit_code_and_last_log_lines(
    stack, client, script
):
    model = script("crasher", [{"text": "never", "delaySeconds": 60}])
    started = client.interactions.create(
        agent="eva", input="go", agent_config={"type": "dynamic", "model": model}, background=True
    )
    pod = wait_for_running_sandbox(stack, started.id).metadata

    def agent_log() -> str:
        try:
            return stack.control_plane.kubectl("logs", "-n", pod.namespace, pod.name, "-c", "agent")
        except KubectlError:  # not started yet
            return ""

    wait_until("the agent loop's first log line", lambda: "agent loop started" in agent_log(), 30)
    subprocess.run(["pkill", "-KILL", "-f", "tether.sandbox.agent"], check=True)
    done = wait_until_ended(client, started.id, timeout=30)
    assert done.status == "failed"
    assert done.errors[0].code == "sandbox_crashed"
    assert "exited with code 137" in done.errors[0].message
    assert "agent loop started" in done.errors[0].message


def test_an_operator_killed_midrun_finishes_the_run_once_with_one_pod(stack, client, script):
    model = script("patient", [{"text": "finished after all", "delaySeconds": 3}])
    started = client.interactions.create(
        agent="eva", input="go", agent_config={"type": "dynamic", "model": model}, background=True
    )
    pod = wait_for_running_sandbox(stack, started.id)
    stack.procs["operator"].kill()
    stack.procs["operator"].wait()
    stack.start_operator()
    done = wait_until_ended(client, started.id, timeout=60)
    assert (done.status, done.output_text) == ("completed", "finished after all")
    events = list(client.interactions.get(done.id, stream=True))
    assert [e.event_type for e in events].count("interaction.completed") == 1
    assert [e.event_type for e in events].count("interaction.created") == 1
    core = kubernetes.client.CoreV1Api(stack.control_plane.api_client())
    names = [
        p.metadata.name
        for p in core.list_namespaced_pod("tenant-a", label_selector="tether.dev/sandbox").items
    ]
    assert names in ([], [pod.metadata.name])  # never a second pod


def test_an_agents_sources_are_in_the_workspace_before_it_starts(stack, client, script):
    stack.cluster.apply(
        {
            "apiVersion": "tether.dev/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": "pricer", "namespace": "tenant-a"},
            "spec": {
                "baseAgent": "eva",
                "baseEnvironment": {
                    "sources": [
                        {"type": "skill", "source": "pricing", "content": "Round prices to cents."}
                    ]
                },
            },
        }
    )
    model = script(
        "skill-reader", [call("read_file", path="skills/pricing/SKILL.md"), {"text": "ok"}]
    )
    started = client.interactions.create(
        agent="pricer",
        input="go",
        agent_config={"type": "dynamic", "model": model},
        background=True,
    )
    done = wait_until_ended(client, started.id, timeout=60)
    assert done.status == "completed", done.errors
    [result] = [s for s in done.steps if s.type == "function_result"]
    assert result.result.model_dump()["content"] == "Round prices to cents."


def test_a_running_sandboxs_log_is_readable_through_the_gateway(stack, client, api_key, script):
    model = script("quiet", [{"text": "later", "delaySeconds": 20}])
    started = client.interactions.create(
        agent="eva", input="go", agent_config={"type": "dynamic", "model": model}, background=True
    )
    wait_for_running_sandbox(stack, started.id)
    headers = {"x-goog-api-key": api_key}
    deadline = time.monotonic() + 10
    while True:
        logs = httpx.get(f"{stack.url}/v1/interactions/{started.id}/logs", headers=headers)
        if "agent loop started" in logs.text or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert logs.status_code == 200
    assert "agent loop started" in logs.text
    client.interactions.cancel(started.id)
    wait_for_no_sandbox(stack, started.id)  # readable while it stops (its grace period)
    gone = httpx.get(f"{stack.url}/v1/interactions/{started.id}/logs", headers=headers)
    assert gone.status_code == 404


def sample(text: str, name: str) -> float:
    [value] = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]
    return value


def test_sandbox_metrics_are_exported_and_observed(stack, client):
    client.interactions.create(agent="eva", input="hi")  # one run, at least, has started
    operator = httpx.get(stack.operator_metrics_url).text
    assert 'tether_interactions_total{kind="agent",status="completed"}' in operator
    # observed once per sandbox, when first seen running (a pod is Pending first)
    assert sample(operator, "tether_sandbox_start_seconds_count") >= 1
    assert "tether_sandboxes_active" in operator
    gateway = httpx.get(f"{stack.url}/metrics").text
    assert sample(gateway, "tether_sandbox_first_model_call_seconds_count") >= 1


def test_a_sandbox_the_cluster_refuses_fails_the_run_with_the_reason(stack):
    key = stack.add_tenant("tenant-quota")
    kubernetes.client.CoreV1Api(stack.control_plane.api_client()).create_namespaced_resource_quota(
        "tenant-quota", {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    )
    quota_client = sdk_client(stack.url, key)
    started = quota_client.interactions.create(agent="eva", input="go", background=True)
    done = wait_until_ended(quota_client, started.id, timeout=30)
    assert done.status == "failed"
    assert done.errors[0].code == "sandbox_start_failed"
    assert "exceeded quota" in done.errors[0].message


def test_a_sandbox_deleted_under_a_running_run_ends_it_failed_once(stack, client, script):
    model = script("deleted-under", [{"text": "never", "delaySeconds": 60}])
    started = client.interactions.create(
        agent="eva", input="go", agent_config={"type": "dynamic", "model": model}, background=True
    )
    pod = wait_for_running_sandbox(stack, started.id)
    core = kubernetes.client.CoreV1Api(stack.control_plane.api_client())
    core.delete_namespaced_pod(pod.metadata.name, "tenant-a")
    done = wait_until_ended(client, started.id, timeout=30)
    assert done.status == "failed"
    assert done.errors[0].code in ("sandbox_lost", "sandbox_crashed")
    events = list(client.interactions.get(started.id, stream=True))
    assert [e.event_type for e in events].count("interaction.completed") == 1
