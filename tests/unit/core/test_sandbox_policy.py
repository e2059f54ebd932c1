"""What a request may change in a sandbox, and within what bounds: the platform's policy."""

from __future__ import annotations

import pytest

from tether.api.common import SandboxEnvironment
from tether.sandbox_policy import SandboxPolicy, SandboxPolicyError, check_environment, resources

POLICY = SandboxPolicy(image="tether/sandbox:1", allowed_images=("tether/sandbox-gpu:1",))


def env(**fields) -> SandboxEnvironment:
    return SandboxEnvironment.from_wire(fields)


def refused(environment: SandboxEnvironment, policy: SandboxPolicy = POLICY) -> str:
    with pytest.raises(SandboxPolicyError) as caught:
        check_environment(environment, policy)
    return str(caught.value)


def test_a_secret_reference_is_refused_naming_the_variable():
    message = refused(env(env={"OK": "1", "KEY": {"secret_ref": {"name": "m", "key": "k"}}}))
    assert message.startswith("environment.env.KEY takes its value from a Secret")


def test_plain_values_the_platform_image_and_lower_limits_pass():
    check_environment(env(env={"MODE": "fast"}), POLICY)
    check_environment(env(image="tether/sandbox-gpu:1"), POLICY)
    check_environment(env(resources={"limits": {"cpu": "500m", "memory": "2Gi"}}), POLICY)
    check_environment(None, POLICY)


def test_an_image_outside_the_allowed_list_is_refused():
    message = refused(env(image="evil/miner:latest"))
    assert "environment.image 'evil/miner:latest' is not allowed" in message
    assert "tether/sandbox:1" in message


def test_limits_above_the_maximum_or_unknown_resources_are_refused():
    assert (
        "environment.resources.limits.memory '64Gi' is above the platform's maximum of '4Gi'"
        in (refused(env(resources={"limits": {"memory": "64Gi"}})))
    )
    assert "resources.requests.cpu '3' is above" in refused(
        env(resources={"requests": {"cpu": "3"}})
    )
    assert "nvidia.com/gpu: only cpu, memory" in refused(
        env(resources={"limits": {"nvidia.com/gpu": "1"}})
    )
    assert "is not a Kubernetes quantity" in refused(env(resources={"limits": {"cpu": "lots"}}))
    assert "must be more than zero" in refused(env(resources={"limits": {"memory": "0"}}))


def test_a_request_above_its_limit_is_refused_with_what_to_do():
    message = refused(env(resources={"requests": {"cpu": "1500m"}}))
    assert "requests.cpu '1500m' is above its limit '1'; raise resources.limits.cpu" in message
    check_environment(env(resources={"requests": {"cpu": "1500m"}, "limits": {"cpu": "2"}}), POLICY)


def test_requests_only_never_removes_the_limits():
    got = resources(env(resources={"requests": {"memory": "512Mi"}}).resources, POLICY)
    assert got["limits"] == {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "2Gi"}
    assert got["requests"]["memory"] == "512Mi"


def test_the_platforms_runtime_class_cannot_be_changed_but_may_be_chosen_without_one():
    strict = SandboxPolicy(image="tether/sandbox:1", runtime_class_name="gvisor")
    assert "runtime_class_name 'runc' is not allowed" in refused(
        env(runtime_class_name="runc"), strict
    )
    check_environment(env(runtime_class_name="gvisor"), strict)
    check_environment(env(runtime_class_name="kata"), POLICY)
