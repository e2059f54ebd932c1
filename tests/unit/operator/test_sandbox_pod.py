"""The sandbox pod's security properties, from the pure builders."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest

from tether.agents import AgentRun
from tether.api.common import SandboxEnvironment, Source
from tether.operator.sandbox_pod import (
    CLAIM_PORT,
    EGRESS_ANNOTATION,
    WARM_LABEL,
    Placement,
    child_name,
    claim_patch,
    files_network_policy,
    files_pod,
    pool_network_policy,
    run_token_secret,
    sandbox_network_policy,
    sandbox_pod,
    warm_pod,
    warm_template,
    workspace_volume_claim,
)
from tether.sandbox_policy import SandboxPolicyError

IX = {"metadata": {"name": "ix-1", "namespace": "tenant-a", "uid": "0f1e2d3c-aaaa"}}
PLACE = Placement(
    image="tether/sandbox:test", gateway_url="http://tether-gateway-internal.tether-system:8081"
)


def run(**environment) -> AgentRun:
    return AgentRun(
        agent="eva",
        model="scripted",
        system_instruction=None,
        tools=[],
        max_total_tokens=None,
        max_steps=10,
        timeout_seconds=120,
        environment=SandboxEnvironment.from_wire(environment),
    )


def containers(pod) -> dict:
    return {c["name"]: c for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]}


def test_only_the_agent_container_holds_the_run_token():
    pod = sandbox_pod(IX, run(), PLACE)
    agent, workspace = containers(pod)["agent"], containers(pod)["workspace"]
    assert {"name": "run-token", "mountPath": "/var/run/tether", "readOnly": True} in agent[
        "volumeMounts"
    ]
    assert all(m["name"] != "run-token" for m in workspace["volumeMounts"])
    assert "TOKEN" not in str(workspace["env"]).upper()
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_both_containers_run_locked_down_and_bounded():
    pod = sandbox_pod(IX, run(), PLACE)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in containers(pod).values():
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["readOnlyRootFilesystem"] is True
        assert container["resources"]["limits"]["memory"]
    assert pod["spec"]["activeDeadlineSeconds"] == 120
    assert pod["spec"]["restartPolicy"] == "Never"


def test_a_crashed_agent_leaves_its_last_log_lines_in_its_status():
    agent = containers(sandbox_pod(IX, run(), PLACE))["agent"]
    assert agent["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_the_workspace_is_a_sidecar_so_the_pod_ends_with_the_agent():
    pod = sandbox_pod(IX, run(), PLACE)
    [sidecar] = pod["spec"]["initContainers"]
    assert (sidecar["name"], sidecar["restartPolicy"]) == ("workspace", "Always")
    assert [c["name"] for c in pod["spec"]["containers"]] == ["agent"]


def test_the_workspace_is_shared_and_only_the_workspace_writes_it():
    pod = sandbox_pod(IX, run(), PLACE)
    mounts = {
        name: next(m for m in c["volumeMounts"] if m["name"] == "workspace")
        for name, c in containers(pod).items()
    }
    assert mounts["agent"] == {"name": "workspace", "mountPath": "/workspace", "readOnly": True}
    assert mounts["workspace"] == {"name": "workspace", "mountPath": "/workspace"}


def test_user_env_reaches_the_workspace_as_plain_values_only():
    pod = sandbox_pod(IX, run(env={"MODE": "fast"}), PLACE)
    env = containers(pod)["workspace"]["env"]
    assert {"name": "MODE", "value": "fast"} in env
    assert "MODE" not in str(containers(pod)["agent"]["env"])
    for container in containers(pod).values():
        assert "envFrom" not in container
        assert all(set(var) == {"name", "value"} for var in container["env"])


def test_the_builder_cannot_put_a_secret_into_the_workspace():
    secret = {"secret_ref": {"name": "openai-key", "key": "api-key"}}
    with pytest.raises(SandboxPolicyError, match=r"env\.DB takes its value from a Secret"):
        sandbox_pod(IX, run(env={"MODE": "fast", "DB": secret}), PLACE)


def test_the_image_is_the_platforms_or_one_it_allows():
    assert {c["image"] for c in containers(sandbox_pod(IX, run(), PLACE)).values()} == {
        "tether/sandbox:test"
    }
    with pytest.raises(SandboxPolicyError, match="image 'mine:1' is not allowed"):
        sandbox_pod(IX, run(image="mine:1"), PLACE)
    allowing = replace(PLACE, allowed_images=("mine:1",))
    pod = sandbox_pod(IX, run(image="mine:1"), allowing)
    assert {c["image"] for c in containers(pod).values()} == {"mine:1"}


def test_an_environment_names_a_runtime_class_only_when_the_platform_has_none():
    pod = sandbox_pod(IX, run(runtime_class_name="gvisor"), PLACE)
    assert pod["spec"]["runtimeClassName"] == "gvisor"
    assert "runtimeClassName" not in sandbox_pod(IX, run(), PLACE)["spec"]


def test_the_workspace_always_has_limits_within_the_platforms_maximum():
    requests_only = run(resources={"requests": {"cpu": "200m", "memory": "300Mi"}})
    resources = containers(sandbox_pod(IX, requests_only, PLACE))["workspace"]["resources"]
    assert resources["requests"]["cpu"] == "200m"
    assert resources["limits"] == {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "2Gi"}
    lowered = run(resources={"limits": {"cpu": "250m", "memory": "128Mi"}})
    resources = containers(sandbox_pod(IX, lowered, PLACE))["workspace"]["resources"]
    assert (resources["limits"]["cpu"], resources["limits"]["memory"]) == ("250m", "128Mi")
    assert (resources["requests"]["cpu"], resources["requests"]["memory"]) == ("100m", "128Mi")
    with pytest.raises(SandboxPolicyError, match=r"limits\.cpu '64' is above the platform's"):
        sandbox_pod(IX, run(resources={"limits": {"cpu": "64"}}), PLACE)
    small = replace(
        PLACE, max_limits=(("cpu", "500m"), ("memory", "512Mi"), ("ephemeral-storage", "1Gi"))
    )
    limits = containers(sandbox_pod(IX, run(), small))["workspace"]["resources"]["limits"]
    assert limits == {"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "1Gi"}


def test_every_child_is_named_from_the_uid_and_owned_by_the_interaction():
    for obj in (
        sandbox_pod(IX, run(), PLACE),
        run_token_secret(IX, "t"),
        sandbox_network_policy(IX, run(), PLACE),
    ):
        assert obj["metadata"]["name"] == child_name("0f1e2d3c-aaaa") == "sbx-0f1e2d3c-aaaa"
        [owner] = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == (
            "Interaction",
            "0f1e2d3c-aaaa",
            True,
        )


@pytest.mark.parametrize(
    "network",
    ["disabled", None, {"allowlist": ["203.0.113.7", "198.51.100.0/24", "example.com", "*"]}],
)
def test_whatever_the_allowlist_a_sandbox_reaches_only_dns_the_gateway_and_the_proxy(network):
    policy = sandbox_network_policy(IX, run(network=network), PLACE)["spec"]
    assert policy["ingress"] == []
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    dns, gateway, proxy = policy["egress"]  # no ipBlock: names are the proxy's to enforce
    assert {p["port"] for p in dns["ports"]} == {53}
    assert gateway["ports"] == [{"protocol": "TCP", "port": 8081}]  # the internal port only
    assert proxy["ports"] == [{"protocol": "TCP", "port": 3128}]
    assert proxy["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "tether-system"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "tether-egress"}},
        }
    ]


def test_the_pod_carries_its_allowlist_for_the_proxy_and_the_workspace_its_proxy_variables():
    pod = sandbox_pod(IX, run(network={"allowlist": ["*.example.com", "api.test"]}), PLACE)
    rules = json.loads(pod["metadata"]["annotations"][EGRESS_ANNOTATION])
    assert [e["domain"] for e in rules["allowlist"]] == ["*.example.com", "api.test"]
    closed = sandbox_pod(IX, run(network="disabled"), PLACE)
    assert json.loads(closed["metadata"]["annotations"][EGRESS_ANNOTATION]) == "disabled"
    assert (
        json.loads(sandbox_pod(IX, run(), PLACE)["metadata"]["annotations"][EGRESS_ANNOTATION])
        == "disabled"
    )
    env = {e["name"]: e["value"] for e in containers(pod)["workspace"]["env"]}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[name] == "http://tether-egress.tether-system:3128"
    assert env["NO_PROXY"] == env["no_proxy"] == "localhost,127.0.0.1"
    agent = {e["name"] for e in containers(pod)["agent"]["env"]}
    assert "HTTPS_PROXY" not in agent  # the agent calls the gateway, directly


def test_services_at_a_named_host_are_reached_at_their_addresses_on_their_ports_only():
    place = replace(
        PLACE,
        gateway_url="http://host.tether.internal:41234",
        gateway_port=41234,
        egress_proxy_url="http://host.tether.internal:41235",
        named_hosts=(("host.tether.internal", ("127.0.0.1/32",)),),
    )
    policy = sandbox_network_policy(IX, run(network={"allowlist": ["*"]}), place)["spec"]
    assert policy["egress"][1:] == [
        {
            "to": [{"ipBlock": {"cidr": "127.0.0.1/32"}}],
            "ports": [{"protocol": "TCP", "port": 41234}],
        },
        {
            "to": [{"ipBlock": {"cidr": "127.0.0.1/32"}}],
            "ports": [{"protocol": "TCP", "port": 41235}],
        },
    ]


def test_builders_do_not_share_state_between_calls():
    first = sandbox_pod(IX, run(), PLACE)
    snapshot = copy.deepcopy(first)
    first["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    assert sandbox_pod(IX, run(), PLACE) == snapshot


def test_inline_and_skill_sources_become_workspace_files():
    import pytest

    from tether.agents import AgentConfigError, workspace_files

    files = workspace_files(
        run(
            sources=[
                {"type": "inline", "target": "data/a.csv", "content": "x,1"},
                {"type": "skill", "source": "pricing", "content": "# How to price"},
                {"target": "logo.png", "content": "iVBORw0K", "encoding": "base64"},
            ]
        )
    )
    assert files == [
        {"path": "data/a.csv", "content": "x,1", "encoding": "utf-8"},
        {"path": "skills/pricing/SKILL.md", "content": "# How to price", "encoding": "utf-8"},
        {"path": "logo.png", "content": "iVBORw0K", "encoding": "base64"},
    ]
    with pytest.raises(AgentConfigError, match="'gcs' is not supported yet"):
        workspace_files(run(sources=[{"type": "gcs", "source": "gs://b/x"}]))


def test_the_platforms_runtime_class_cannot_be_changed_by_an_environment():
    place = replace(PLACE, runtime_class_name="gvisor")
    assert sandbox_pod(IX, run(), place)["spec"]["runtimeClassName"] == "gvisor"
    assert sandbox_pod(IX, run(runtime_class_name="gvisor"), place)["spec"]["runtimeClassName"] == (
        "gvisor"
    )
    with pytest.raises(SandboxPolicyError, match="runtime_class_name 'kata' is not allowed"):
        sandbox_pod(IX, run(runtime_class_name="kata"), place)


def test_placement_from_settings_carries_the_platforms_policy():
    from tether.settings import Settings

    settings = Settings(
        sandbox_image="img:1",
        sandbox_allowed_images=["img:2"],
        sandbox_runtime_class_name="gvisor",
        sandbox_max_cpu="3",
        gateway_url="http://gw:9091",
    )
    place = Placement.from_settings(settings)
    assert (place.image, place.allowed_images, place.runtime_class_name) == (
        "img:1",
        ("img:2",),
        "gvisor",
    )
    assert dict(place.max_limits)["cpu"] == "3"
    assert place.gateway_port == 9091  # the port sandboxes are told, and the one opened
    pod = sandbox_pod(IX, run(image="img:2"), place)
    assert (pod["spec"]["runtimeClassName"], containers(pod)["workspace"]["image"]) == (
        "gvisor",
        "img:2",
    )


def test_the_agent_and_its_workspace_are_bound_to_the_run_and_meet_on_its_own_port():
    env = {
        n: {e["name"]: e.get("value") for e in c["env"]}
        for n, c in containers(sandbox_pod(IX, run(), PLACE)).items()
    }
    assert env["agent"]["TETHER_RUN"] == env["workspace"]["TETHER_RUN"] == "0f1e2d3c-aaaa"
    port = env["workspace"]["TETHER_WORKSPACE_PORT"]
    assert env["agent"]["TETHER_WORKSPACE_URL"] == f"http://127.0.0.1:{port}"
    other = {**IX, "metadata": {**IX["metadata"], "uid": "99887766-bbbb"}}
    other_env = {
        e["name"]: e.get("value")
        for e in containers(sandbox_pod(other, run(), PLACE))["workspace"]["env"]
    }
    assert other_env["TETHER_WORKSPACE_PORT"] != port


def test_a_run_in_an_environment_mounts_its_volume_and_others_get_a_fresh_one():
    fresh = sandbox_pod(IX, run(), PLACE)["spec"]["volumes"][0]
    assert fresh == {"name": "workspace", "emptyDir": {"sizeLimit": "2Gi"}}
    kept = sandbox_pod(IX, replace(run(), environment_id="env-1"), PLACE)
    assert kept["spec"]["volumes"][0] == {
        "name": "workspace",
        "persistentVolumeClaim": {"claimName": "workspace-env-1"},
    }
    mounts = {c["name"]: c["volumeMounts"][0] for c in containers(kept).values()}
    assert mounts["workspace"] == {"name": "workspace", "mountPath": "/workspace"}
    assert mounts["agent"] == {"name": "workspace", "mountPath": "/workspace", "readOnly": True}


def test_an_environments_volume_is_owned_by_it_and_sized_by_it_or_the_default():
    env = {"metadata": {"name": "env-1", "namespace": "tenant-a", "uid": "u-1"}, "spec": {}}
    claim = workspace_volume_claim(env, "1Gi")
    assert claim["metadata"]["name"] == "workspace-env-1"
    assert claim["metadata"]["ownerReferences"][0]["kind"] == "Environment"
    assert claim["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in claim["spec"]  # the cluster's default
    sized = workspace_volume_claim({**env, "spec": {"storage": "5Gi"}}, "1Gi")
    assert sized["spec"]["resources"]["requests"]["storage"] == "5Gi"


def test_an_environments_sources_are_seeds_and_repositories_are_cloned():
    from tether.agents import AgentConfigError, workspace_files

    seeded = replace(
        run(sources=[{"type": "repository", "source": "github.com/acme/tools.git"}]),
        seeds=[Source(type="inline", target="README.md", content="hi")],
    )
    assert workspace_files(seeded) == [
        {"path": "tools", "repository": "https://github.com/acme/tools.git"},
        {"path": "README.md", "content": "hi", "encoding": "utf-8", "if_absent": True},
    ]
    for bad in ("http://github.com/a/b", "https://user:pw@github.com/a/b", "ssh://git@x/y"):
        with pytest.raises(AgentConfigError, match="must be an https:// URL"):
            workspace_files(run(sources=[{"type": "repository", "source": bad}]))


def test_an_environments_files_pod_serves_its_volume_to_the_gateway_alone():
    env = {"metadata": {"name": "env-1", "namespace": "tenant-a", "uid": "u-1"}}
    place = replace(PLACE, runtime_class_name="gvisor")
    pod = files_pod(env, place, "secret-token")
    spec = pod["spec"]
    [container] = spec["containers"]
    assert pod["metadata"]["name"] == "files-env-1"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["automountServiceAccountToken"] is False
    assert spec["volumes"][0]["persistentVolumeClaim"] == {"claimName": "workspace-env-1"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "TETHER_FILES_TOKEN", "value": "secret-token"} in container["env"]
    assert "limits" in container["resources"]
    policy = files_network_policy(env, place)["spec"]
    assert policy["podSelector"] == {"matchLabels": {"tether.dev/files": "env-1"}}
    assert policy["egress"] == []
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8090}]
    assert rule["from"][0]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "tether-gateway"}
    }


AGENT = {"metadata": {"name": "support", "namespace": "tenant-a", "uid": "agent-uid"}}


def test_a_warm_pod_is_a_run_pod_less_the_run():
    env = SandboxEnvironment.from_wire({"env": {"STAGE": "prod"}})
    pod = warm_pod(AGENT, env, PLACE, {}, "pool-support-1a2b")
    cold = sandbox_pod(IX, run(env={"STAGE": "prod"}), PLACE)
    assert not [v for v in pod["spec"]["volumes"] if "secret" in v]
    assert "activeDeadlineSeconds" not in pod["spec"]
    for name, container in containers(pod).items():
        names = {e["name"] for e in container["env"]}
        assert not names & {"TETHER_RUN", "TETHER_RUN_TOKEN_FILE", "TETHER_RUN_FILE"}
        assert container["image"] == containers(cold)[name]["image"]
        assert container["securityContext"] == containers(cold)[name]["securityContext"]
    assert pod["metadata"]["labels"]["tether.dev/pool"] == "support"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Agent"


def test_a_warm_template_ignores_the_pods_name_and_follows_what_the_run_would_get():
    env = SandboxEnvironment.from_wire({"env": {"STAGE": "prod"}})
    one, two = (warm_pod(AGENT, env, PLACE, {}, n) for n in ("pool-support-a", "pool-support-b"))
    template = warm_template(env, PLACE, {})
    assert one["metadata"]["labels"][WARM_LABEL] == template
    assert two["metadata"]["labels"][WARM_LABEL] == template
    other = SandboxEnvironment.from_wire({"env": {"STAGE": "dev"}})
    assert warm_template(other, PLACE, {}) != template
    assert warm_template(env, replace(PLACE, runtime_class_name="gvisor"), {}) != template
    assert warm_template(env, PLACE, {"API_KEY": "placeholder"}) != template


def test_a_claim_makes_the_pod_the_runs_only_if_nobody_changed_it_since():
    pod = warm_pod(AGENT, SandboxEnvironment(), PLACE, {}, "pool-support-a")
    pod["metadata"]["resourceVersion"] = "42"
    patch = claim_patch(IX, run(), pod, age_seconds=30.5)
    assert patch["metadata"]["resourceVersion"] == "42"
    assert patch["metadata"]["labels"] == {
        WARM_LABEL: None,
        "tether.dev/sandbox": child_name(IX["metadata"]["uid"]),
        "tether.dev/interaction": "ix-1",
    }
    assert patch["metadata"]["ownerReferences"][0]["uid"] == IX["metadata"]["uid"]
    assert patch["spec"]["activeDeadlineSeconds"] == 31 + 120
    assert EGRESS_ANNOTATION in patch["metadata"]["annotations"]


def test_a_pools_policy_lets_in_only_the_operator_on_the_claim_port():
    policy = pool_network_policy(AGENT, PLACE)
    [ingress] = policy["spec"]["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": CLAIM_PORT}]
    assert ingress["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "tether-operator"
    }
    assert policy["spec"]["egress"] == sandbox_network_policy(IX, run(), PLACE)["spec"]["egress"]
