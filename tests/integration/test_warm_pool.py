"""Warm pools on the dev node: an Agent's idle sandbox pods, claimed by its runs, refilled."""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor

import kubernetes
import pytest

from tests.integration.test_agent_runs import call, wait_for_no_sandbox
from tests.integration.test_credentials import (  # noqa: F401 (fixtures)
    TOKEN,
    A,
    api,
    code_that_looks_for,
    credentials,
    output,
)
from tests.integration.test_sdk_interactions import wait_until_ended
from tests.unit.operator.test_sandbox_pod import run
from tether.dev.worker.configs import HOST_ALIAS
from tether.operator.sandbox_pod import POOL_LABEL, SANDBOX_LABEL, WARM_LABEL, claim_patch
from tether.operator.warm_pool import MERGE_PATCH

AGENT = "warm"


def core(stack) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(stack.control_plane.api_client())


def keep_pool(
    stack, model: str, size: int, env: dict | None = None, network: dict | None = None
) -> None:
    environment = {"env": env or {"STAGE": "test"}} | ({"network": network} if network else {})
    stack.cluster.apply(
        {
            "apiVersion": "tether.dev/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": AGENT, "namespace": "tenant-a"},
            "spec": {
                "agentConfig": {"model": model},
                "baseEnvironment": environment,
                "warmPool": {"size": size},
            },
        }
    )


def custom(stack) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(stack.control_plane.api_client())


def idle_pods(stack) -> list:
    listed = core(stack).list_namespaced_pod(
        "tenant-a", label_selector=f"{POOL_LABEL}={AGENT},{WARM_LABEL}"
    )
    return [p for p in listed.items if not p.metadata.deletion_timestamp]


def ready(pod) -> bool:
    conditions = {c.type: c.status for c in pod.status.conditions or []}
    return pod.status.phase == "Running" and conditions.get("Ready") == "True"


def wait_for_idle(stack, count: int, but: set[str] = frozenset(), timeout: float = 90) -> list:
    """Until the pool holds `count` ready idle pods, none of them named in `but`."""
    deadline = time.monotonic() + timeout
    while True:
        pods = [p for p in idle_pods(stack) if ready(p) and p.metadata.name not in but]
        if len(pods) == count and len(idle_pods(stack)) == count:
            return pods
        assert time.monotonic() < deadline, f"{len(pods)} ready idle pods, not {count}"
        time.sleep(0.2)


def sandbox_of(stack, interaction: str) -> str:
    found = custom(stack).get_namespaced_custom_object(
        "tether.dev", "v1alpha1", "tenant-a", "interactions", interaction
    )
    return found["status"]["sandboxPod"]


@pytest.fixture
def pool(stack, script):
    yield
    with contextlib.suppress(kubernetes.client.ApiException):  # a test may have deleted it
        custom(stack).delete_namespaced_custom_object(
            "tether.dev", "v1alpha1", "tenant-a", "agents", AGENT
        )
    deadline = time.monotonic() + 60
    while core(stack).list_namespaced_pod("tenant-a", label_selector=POOL_LABEL).items:
        assert time.monotonic() < deadline, "the pool outlived its Agent"
        time.sleep(0.2)


def test_a_run_takes_an_idle_pod_that_held_nothing_secret_and_the_pool_refills(
    stack, client, script, pool
):
    model = script("warm-writer", [call("write_file", path="a.txt", content="hi"), {"text": "ok"}])
    keep_pool(stack, model, 2)
    idle = wait_for_idle(stack, 2)
    for pod in idle:  # nothing of a run, nothing secret
        spec = pod.spec
        assert not [v for v in spec.volumes if v.secret or v.projected]
        assert spec.automount_service_account_token is False
        for container in [*spec.init_containers, *spec.containers]:
            assert not container.env_from
            names = {e.name for e in container.env if e.value_from is None}
            assert len(names) == len(container.env), container.env
            assert not names & {"TETHER_RUN", "TETHER_RUN_TOKEN_FILE", "TETHER_RUN_FILE"}
        assert SANDBOX_LABEL not in pod.metadata.labels
        assert spec.active_deadline_seconds is None

    done = wait_until_ended(
        client, client.interactions.create(agent=AGENT, input="go", background=True).id, 60
    )
    assert (done.status, done.output_text) == ("completed", "ok"), done.errors
    assert [s.type for s in done.steps][1:3] == ["function_call", "function_result"]
    claimed = sandbox_of(stack, done.id)
    assert claimed in {p.metadata.name for p in idle}
    wait_for_no_sandbox(stack, done.id)  # the claimed pod went with its run
    refilled = wait_for_idle(stack, 2, but={claimed})
    assert claimed not in {p.metadata.name for p in refilled}


def test_more_runs_than_idle_pods_each_get_a_pod_of_their_own_and_never_one_twice(
    stack, client, script, pool
):
    model = script("warm-answer", [{"text": "done", "delaySeconds": 1}])
    keep_pool(stack, model, 2)
    idle = {p.metadata.name for p in wait_for_idle(stack, 2)}

    def one_run(_: int):
        started = client.interactions.create(agent=AGENT, input="go", background=True)
        return wait_until_ended(client, started.id, 90)

    with ThreadPoolExecutor(5) as pool_of_clients:
        runs = list(pool_of_clients.map(one_run, range(5)))
    assert [r.status for r in runs] == ["completed"] * 5, [r.errors for r in runs]
    pods = [sandbox_of(stack, r.id) for r in runs]
    assert len(set(pods)) == 5, pods  # no pod served two runs
    cold = {f"sbx-{uid(stack, r.id)}" for r in runs}
    warm = set(pods) - cold
    assert idle <= warm, pods  # both idle pods were taken (refills perhaps too)
    assert all(p.startswith(f"pool-{AGENT}-") for p in warm), pods


def uid(stack, interaction: str) -> str:
    found = custom(stack).get_namespaced_custom_object(
        "tether.dev", "v1alpha1", "tenant-a", "interactions", interaction
    )
    return found["metadata"]["uid"]


def test_a_pod_claimed_by_two_runs_at_once_goes_to_one(stack, api_key, script, pool):
    keep_pool(stack, script("warm-race", [{"text": "x"}]), 1)
    [pod] = wait_for_idle(stack, 1)
    listed = stack.control_plane.api_client().sanitize_for_serialization(pod)
    patches = [
        claim_patch(
            {"metadata": {"name": name, "namespace": "tenant-a", "uid": run_uid}},
            run(),  # the builders' test run: what it is does not matter to the claim
            listed,
            age_seconds=5,
        )
        for name, run_uid in (("run-a", "uid-a"), ("run-b", "uid-b"))
    ]
    results = []
    for patch in patches:
        try:
            core(stack).patch_namespaced_pod(
                pod.metadata.name, "tenant-a", patch, _content_type=MERGE_PATCH
            )
            results.append("claimed")
        except kubernetes.client.ApiException as error:
            results.append((error.status, error.body))
    assert results[0] == "claimed", results
    assert results[1][0] == 409, results
    after = core(stack).read_namespaced_pod(pod.metadata.name, "tenant-a")
    assert after.metadata.labels[SANDBOX_LABEL] == "sbx-uid-a"
    assert WARM_LABEL not in after.metadata.labels


def test_a_changed_agent_replaces_its_idle_pods_and_a_run_with_its_own_environment_starts_cold(
    stack, client, script, pool
):
    model = script("warm-env", [{"text": "ok"}] * 2)
    keep_pool(stack, model, 1)
    [before] = wait_for_idle(stack, 1)
    keep_pool(stack, model, 1, env={"STAGE": "changed"})
    [after] = wait_for_idle(stack, 1, but={before.metadata.name})
    env = {e.name: e.value for e in after.spec.init_containers[0].env}
    assert env["STAGE"] == "changed"

    own = client.interactions.create(
        agent=AGENT,
        input="go",
        environment={"type": "remote", "env": {"STAGE": "mine"}},
        background=True,
    )
    done = wait_until_ended(client, own.id, 60)
    assert done.status == "completed", done.errors
    assert sandbox_of(stack, done.id) == f"sbx-{uid(stack, done.id)}"  # a pod of its own
    assert [p.metadata.name for p in idle_pods(stack)] == [after.metadata.name]

    keep_pool(stack, model, 0, env={"STAGE": "changed"})
    deadline = time.monotonic() + 30
    while idle_pods(stack):
        assert time.monotonic() < deadline, "size 0 left idle pods"
        time.sleep(0.2)


def test_a_warm_run_gets_its_egress_authority_and_credentials_only_once_claimed(
    stack,
    client,
    script,
    api,  # noqa: F811 (the fixture)
    credentials,  # noqa: F811 (the fixture)
    pool,
):
    """The idle pod holds a placeholder, not the key, and trusts no run's authority; once
    claimed, its code calls an HTTPS API through the proxy, which puts the key in."""
    credentials(
        id="API_KEY",
        type="environment_variable",
        value=TOKEN,
        injection_location=["header"],
        trusted_domains=[f"*.{HOST_ALIAS}"],
    )
    header = '-H "Authorization: Bearer $API_KEY"'
    commands = f'echo "sees=$API_KEY"; curl -sS -o /dev/null {header} {api.url(A, "/header")}'
    code = code_that_looks_for(TOKEN, commands)
    model = script("warm-cred", [call("run_code", language="bash", code=code), {"text": "ok"}])
    keep_pool(stack, model, 1, network={"allowlist": [{"domain": A, "credential": "API_KEY"}]})
    [idle] = wait_for_idle(stack, 1)
    workspace_env = {e.name: e.value for e in idle.spec.init_containers[0].env}
    assert workspace_env["API_KEY"] == "tether-credential-API_KEY"

    before = len(api.requests)
    done = wait_until_ended(
        client, client.interactions.create(agent=AGENT, input="go", background=True).id, 60
    )
    assert done.status == "completed", done.errors
    assert sandbox_of(stack, done.id) == idle.metadata.name
    seen = output(done)
    assert "sees=tether-credential-API_KEY" in seen and "leaks=none" in seen, seen
    assert api.requests[before]["authorization"] == f"Bearer {TOKEN}"


def test_a_claimed_pod_keeps_a_policy_of_its_runs_own_when_its_agent_goes(
    stack, client, script, pool
):
    model = script("warm-slow", [{"text": "late", "delaySeconds": 4}])
    keep_pool(stack, model, 1)
    [idle] = wait_for_idle(stack, 1)
    started = client.interactions.create(agent=AGENT, input="go", background=True)
    deadline = time.monotonic() + 30
    while (
        SANDBOX_LABEL
        not in (
            pod := core(stack).read_namespaced_pod(idle.metadata.name, "tenant-a")
        ).metadata.labels
    ):
        assert time.monotonic() < deadline, "the idle pod was never claimed"
        time.sleep(0.1)
    networking = kubernetes.client.NetworkingV1Api(stack.control_plane.api_client())
    own = networking.read_namespaced_network_policy(f"sbx-{uid(stack, started.id)}", "tenant-a")
    assert own.spec.pod_selector.match_labels == {SANDBOX_LABEL: pod.metadata.labels[SANDBOX_LABEL]}
    assert own.spec.ingress is None or own.spec.ingress == []

    custom(stack).delete_namespaced_custom_object(  # the pool's policy goes with the Agent
        "tether.dev", "v1alpha1", "tenant-a", "agents", AGENT
    )
    deadline = time.monotonic() + 30
    while networking.list_namespaced_network_policy(
        "tenant-a", label_selector=f"{POOL_LABEL}={AGENT}"
    ).items:
        assert time.monotonic() < deadline, "the pool's policy outlived its Agent"
        time.sleep(0.2)
    assert networking.read_namespaced_network_policy(f"sbx-{uid(stack, started.id)}", "tenant-a")
    done = wait_until_ended(client, started.id, 60)
    assert (done.status, done.output_text) == ("completed", "late"), done.errors
