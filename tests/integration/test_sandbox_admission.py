"""The sandbox objects pass a real API server's validation and Pod Security "restricted"."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import kubernetes
import pytest
from kubernetes.client import ApiException

from tether.agents import AgentRun
from tether.api.common import SandboxEnvironment
from tether.operator.sandbox_pod import (
    Placement,
    run_token_secret,
    sandbox_network_policy,
    sandbox_pod,
)

PLACE = Placement(
    image="tether/sandbox:test", gateway_url="http://tether-gateway-internal.tether-system:8081"
)
RUN = AgentRun(
    agent="eva",
    model="scripted",
    system_instruction=None,
    tools=[],
    max_total_tokens=None,
    max_steps=10,
    timeout_seconds=300,
    environment=SandboxEnvironment.from_wire(
        {"network": {"allowlist": ["10.1.2.3"]}, "runtime_class_name": "gvisor"}
    ),
)


@pytest.fixture
def restricted(api_client, namespace):
    core = kubernetes.client.CoreV1Api(api_client)
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    interaction = {"metadata": {"name": "ix-a", "namespace": namespace, "uid": "1234-abcd"}}
    return core, interaction


def dry_run_pod(core, pod):
    return core.create_namespaced_pod(pod["metadata"]["namespace"], pod, dry_run="All")


def test_the_sandbox_pod_is_admitted_under_restricted(restricted):
    core, interaction = restricted
    pod = sandbox_pod(interaction, RUN, PLACE)
    pod["spec"].pop("runtimeClassName")  # no RuntimeClass object exists in this cluster
    admitted = dry_run_pod(core, pod)
    assert [c.name for c in admitted.spec.init_containers] == ["workspace"]
    assert [c.name for c in admitted.spec.containers] == ["agent"]
    assert admitted.spec.automount_service_account_token is False


def test_a_weakened_pod_is_refused_so_the_check_is_real(restricted):
    core, interaction = restricted
    pod = sandbox_pod(interaction, RUN, PLACE)
    pod["spec"].pop("runtimeClassName")
    pod["spec"]["initContainers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    with pytest.raises(ApiException) as caught:
        dry_run_pod(core, pod)
    assert caught.value.status == 403
    assert 'violates PodSecurity "restricted' in json.loads(caught.value.body)["message"]


def test_the_secret_and_network_policy_are_valid_objects(api_client, restricted):
    core, interaction = restricted
    namespace = interaction["metadata"]["namespace"]
    core.create_namespaced_secret(namespace, run_token_secret(interaction, "tok"), dry_run="All")
    networking = kubernetes.client.NetworkingV1Api(api_client)
    created = networking.create_namespaced_network_policy(
        namespace, sandbox_network_policy(interaction, RUN, PLACE), dry_run="All"
    )
    assert created.spec.policy_types == ["Ingress", "Egress"]


def test_a_requests_only_environment_still_passes_a_quota_that_demands_limits(restricted):
    core, interaction = restricted
    namespace = interaction["metadata"]["namespace"]
    core.create_namespaced_resource_quota(
        namespace,
        {
            "metadata": {"name": "limits-required"},
            "spec": {"hard": {"limits.cpu": "8", "limits.memory": "16Gi"}},
        },
    )
    requests_only = replace(
        RUN,
        environment=SandboxEnvironment.from_wire(
            {"resources": {"requests": {"cpu": "200m", "memory": "300Mi"}}}
        ),
    )
    pod = sandbox_pod(interaction, requests_only, PLACE)
    deadline = time.monotonic() + 20
    while True:  # the quota is enforced once its controller has counted the namespace
        try:
            admitted = dry_run_pod(core, pod)
            break
        except ApiException as error:
            assert "status unknown for quota" in error.body, error.body
            assert time.monotonic() < deadline, "the quota was never counted"
            time.sleep(0.1)
    [workspace] = admitted.spec.init_containers
    assert workspace.resources.limits == {"cpu": "1", "ephemeral-storage": "2Gi", "memory": "1Gi"}
