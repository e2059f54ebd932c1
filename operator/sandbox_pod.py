"""The objects of one agent run: its sandbox pod, its run-token Secret, its NetworkPolicy.

Pure builders (dicts in, dicts out, no I/O), so every security property is unit-testable and
provable against a real API server's admission without running anything.
"""

from __future__ import annotations

import copy
import hashlib
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from tether import sandbox_policy
from tether.agents import AgentRun
from tether.api import API_VERSION
from tether.api.common import SandboxEnvironment
from tether.api.interaction import ACCEPTED_ANNOTATION
from tether.api.internal import EGRESS_ANNOTATION, INTERACTION_LABEL, SANDBOX_LABEL
from tether.sandbox_policy import DEFAULT_MAX_LIMITS, SandboxPolicy

ENVIRONMENT_LABEL = "tether.dev/environment"
FILES_LABEL = "tether.dev/files"
POOL_LABEL = "tether.dev/pool"
"""On a warm pool's pods, idle or claimed: the Agent whose pool it is."""
WARM_LABEL = "tether.dev/warm"
"""On an idle warm pod only: the hash of the template it was built from."""
CLAIM_PORT = 8071
FILES_PORT = 8090
FILES_IDLE_SECONDS = 300
TOKEN_DIR = "/var/run/tether"
WORKSPACE = "/workspace"
WORKSPACE_PORTS = range(10000, 32000)
"""Below the kernel's ephemeral range (32768 and up), where outgoing connections take theirs."""
SANDBOX_UID = 1000
AGENT_RESOURCES = {
    "requests": {"cpu": "50m", "memory": "128Mi"},
    "limits": {"cpu": "500m", "memory": "512Mi"},
}


@dataclass(frozen=True)
class Placement:
    """Where sandboxes run and how they reach home: cluster facts, not per-run choices."""

    image: str
    gateway_url: str
    system_namespace: str = "tether-system"
    gateway_labels: tuple[tuple[str, str], ...] = (("app.kubernetes.io/name", "tether-gateway"),)
    gateway_port: int = 8081
    """The gateway's internal port: the only one of it a sandbox reaches."""
    egress_proxy_url: str = "http://tether-egress.tether-system:3128"
    """The egress proxy: a sandbox's only way out besides DNS and the gateway."""
    egress_labels: tuple[tuple[str, str], ...] = (("app.kubernetes.io/name", "tether-egress"),)
    operator_labels: tuple[tuple[str, str], ...] = (("app.kubernetes.io/name", "tether-operator"),)
    runtime_class_name: str | None = None
    """The platform's RuntimeClass: when set, every sandbox runs under it."""
    allowed_images: tuple[str, ...] = ()
    """Images an environment may pick besides `image`."""
    max_limits: tuple[tuple[str, str], ...] = tuple(DEFAULT_MAX_LIMITS.items())
    """The most an environment may give the workspace container, per resource."""
    named_hosts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Where the gateway or the egress proxy run outside the cluster (name, CIDRs), as the
    local test stack runs them."""

    @classmethod
    def from_settings(cls, settings: Any) -> Placement:
        policy = SandboxPolicy.from_settings(settings)
        return cls(
            image=policy.image,
            gateway_url=settings.gateway_url,
            system_namespace=settings.system_namespace,
            gateway_port=urllib.parse.urlsplit(settings.gateway_url).port or 80,
            egress_proxy_url=settings.egress_proxy_url,
            runtime_class_name=policy.runtime_class_name,
            allowed_images=policy.allowed_images,
            max_limits=tuple(policy.max_limits.items()),
            named_hosts=tuple(
                (name, tuple(cidrs)) for name, cidrs in sorted(settings.sandbox_named_hosts.items())
            ),
        )

    @property
    def policy(self) -> SandboxPolicy:
        return SandboxPolicy(
            image=self.image,
            allowed_images=self.allowed_images,
            runtime_class_name=self.runtime_class_name,
            max_limits=dict(self.max_limits),
        )


def workspace_port(uid: str) -> int:
    """The workspace's port, spread by run: pods on a node that shares one network (the dev
    node) rarely meet, and the workspace refuses any caller naming another run anyway."""
    digest = int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16)
    return WORKSPACE_PORTS[digest % len(WORKSPACE_PORTS)]


def child_name(uid: str) -> str:
    """Names of a run's objects derive from the Interaction's uid: a restarted operator finds
    them again instead of creating twins."""
    return f"sbx-{uid}"


def owner_reference(interaction: dict[str, Any]) -> dict[str, Any]:
    meta = interaction["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": "Interaction",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(interaction: dict[str, Any]) -> dict[str, Any]:
    meta = interaction["metadata"]
    return {
        "name": child_name(meta["uid"]),
        "namespace": meta["namespace"],
        "labels": {SANDBOX_LABEL: child_name(meta["uid"]), INTERACTION_LABEL: meta["name"]},
        "ownerReferences": [owner_reference(interaction)],
    }


def run_token_secret(
    interaction: dict[str, Any], token: str, run: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The run token, and what the agent loop needs to know (instructions, tools, history)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(interaction),
        "type": "Opaque",
        "stringData": {"token": token, "run.json": json.dumps(run or {})},
    }


def volume_name(environment: str) -> str:
    """The PersistentVolumeClaim that holds a persistent Environment's workspace."""
    return f"workspace-{environment}"


def _environment_child(environment: dict[str, Any], name: str, **labels: str) -> dict[str, Any]:
    """The metadata of an object an Environment owns: deleting it deletes them."""
    own = {ENVIRONMENT_LABEL: environment["metadata"]["name"], **labels}
    return _owned_by(environment, "Environment", name, own)


def _owned_by(
    owner: dict[str, Any], kind: str, name: str, labels: dict[str, str]
) -> dict[str, Any]:
    """The metadata of an object named `name` that `owner` (a `kind`) owns, beside it."""
    meta = owner["metadata"]
    return {
        "name": name,
        "namespace": meta["namespace"],
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": kind,
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def workspace_volume_claim(environment: dict[str, Any], default_size: str) -> dict[str, Any]:
    """An Environment's workspace volume, on the cluster's default StorageClass, owned by the
    Environment: deleting it deletes the files."""
    meta = environment["metadata"]
    size = (environment.get("spec") or {}).get("storage") or default_size
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _environment_child(environment, volume_name(meta["name"])),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
        },
    }


def files_pod_name(environment: str) -> str:
    return f"files-{environment}"


def files_pod(environment: dict[str, Any], place: Placement, token: str) -> dict[str, Any]:
    """The server of an Environment's files to the gateway (the Environments files API): the
    sandbox image on the workspace volume, under the platform's runtime class, as locked down
    as a sandbox; it holds only the token the gateway calls it with, and exits when idle."""
    env_id = environment["metadata"]["name"]
    name = files_pod_name(env_id)
    spec: dict[str, Any] = {
        **_locked_down_pod(),
        "volumes": [
            {"name": "workspace", "persistentVolumeClaim": {"claimName": volume_name(env_id)}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        ],
        "containers": [
            {
                "name": "files",
                "image": place.image,
                "command": ["python", "-m", "tether.sandbox.files_server"],
                "env": [
                    {"name": "TETHER_FILES_TOKEN", "value": token},
                    {"name": "TETHER_FILES_PORT", "value": str(FILES_PORT)},
                    {"name": "TETHER_FILES_IDLE_SECONDS", "value": str(FILES_IDLE_SECONDS)},
                ],
                "ports": [{"name": "files", "containerPort": FILES_PORT}],
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": FILES_PORT},
                    "periodSeconds": 1,
                },
                "volumeMounts": [
                    {"name": "workspace", "mountPath": WORKSPACE},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
                "resources": {
                    "requests": {"cpu": "10m", "memory": "64Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                },
                "securityContext": _locked_down(),
            }
        ],
    }
    if place.runtime_class_name:
        spec["runtimeClassName"] = place.runtime_class_name
    metadata = _environment_child(environment, name, **{FILES_LABEL: env_id})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def files_network_policy(environment: dict[str, Any], place: Placement) -> dict[str, Any]:
    """In, only the gateway, on the files port; out, nothing."""
    env_id = environment["metadata"]["name"]
    name = files_pod_name(env_id)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _environment_child(environment, name, **{FILES_LABEL: env_id}),
        "spec": {
            "podSelector": {"matchLabels": {FILES_LABEL: env_id}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": _gateway(place), "ports": [{"protocol": "TCP", "port": FILES_PORT}]}
            ],
            "egress": [],
        },
    }


def _locked_down_pod() -> dict[str, Any]:
    """What every pod running untrusted code or files has: no service-account token, no
    Service links, uid 1000 (the workspace's owner), the RuntimeDefault seccomp profile."""
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 5,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SANDBOX_UID,
            "runAsGroup": SANDBOX_UID,
            "fsGroup": SANDBOX_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def _locked_down() -> dict[str, Any]:
    """The container half of Pod Security "restricted", plus a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }


def sandbox_pod(
    interaction: dict[str, Any],
    run: AgentRun,
    place: Placement,
    credential_variables: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Two containers sharing /workspace: `agent` (the loop, holds the run token) and the
    `workspace` sidecar (runs untrusted code; no token, no service-account token, no provider
    key, no secret: an environment-variable credential is a placeholder there, which the
    egress proxy replaces on the way out). The pod ends when the agent does.

    Raises SandboxPolicyError for an environment outside the platform's policy: such a pod is
    never built."""
    meta = interaction["metadata"]
    name = child_name(meta["uid"])
    port = workspace_port(meta["uid"])
    spec = _sandbox_spec(
        run.environment,
        place,
        credential_variables or {},
        port,
        workspace_env=[{"name": "TETHER_RUN", "value": meta["uid"]}],
        agent_env=[
            {"name": "TETHER_INTERACTION", "value": meta["name"]},
            {"name": "TETHER_RUN_TOKEN_FILE", "value": f"{TOKEN_DIR}/token"},
            {"name": "TETHER_RUN_FILE", "value": f"{TOKEN_DIR}/run.json"},
            {"name": "TETHER_RUN", "value": meta["uid"]},
        ],
        workspace=_workspace_volume(run),
    )
    spec["activeDeadlineSeconds"] = run.timeout_seconds
    spec["volumes"].append(
        {"name": "run-token", "secret": {"secretName": name, "defaultMode": 0o400}}
    )
    spec["containers"][0]["volumeMounts"].append(
        {"name": "run-token", "mountPath": TOKEN_DIR, "readOnly": True}
    )
    metadata = _metadata(interaction)
    metadata["annotations"] = _run_annotations(interaction, run)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def warm_pod(
    agent: dict[str, Any],
    environment: SandboxEnvironment,
    place: Placement,
    credential_variables: dict[str, str],
    name: str,
) -> dict[str, Any]:
    """An idle sandbox of an Agent's warm pool, named `name`: a run's pod, less everything of
    the run. No token, no run input, no run id; the agent container waits on CLAIM_PORT for
    the operator to hand it a run (`claim_patch` makes the pod that run's). Labelled with the
    pool's agent and the template it was built from, and owned by the Agent."""
    spec = _warm_spec(environment, place, credential_variables, workspace_port(name))
    labels = {POOL_LABEL: agent["metadata"]["name"], WARM_LABEL: template_hash(spec)}
    metadata = _owned_by(agent, "Agent", name, labels)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def warm_template(
    environment: SandboxEnvironment, place: Placement, credential_variables: dict[str, str]
) -> str:
    """The template hash of the warm pods a run with this sandbox environment may claim."""
    return template_hash(_warm_spec(environment, place, credential_variables, 0))


def _warm_spec(
    environment: SandboxEnvironment,
    place: Placement,
    credential_variables: dict[str, str],
    port: int,
) -> dict[str, Any]:
    spec = _sandbox_spec(
        environment,
        place,
        credential_variables,
        port,
        workspace_env=[],
        agent_env=[{"name": "TETHER_CLAIM_PORT", "value": str(CLAIM_PORT)}],
        workspace={"name": "workspace", "emptyDir": {"sizeLimit": "2Gi"}},
    )
    agent_container = spec["containers"][0]
    agent_container["ports"] = [{"name": "claim", "containerPort": CLAIM_PORT}]
    agent_container["readinessProbe"] = {
        "httpGet": {"path": "/healthz", "port": CLAIM_PORT},
        "periodSeconds": 1,
    }
    return spec


def template_hash(spec: dict[str, Any]) -> str:
    """What a warm pod was built from, less its own name: a run claims only a pod whose
    template equals the one it would have been given (same image, resources, runtime class,
    variables)."""
    per_pod = ("TETHER_WORKSPACE_PORT", "TETHER_WORKSPACE_URL")
    containers = [
        {key: value for key, value in c.items() if key != "env"}
        | {"env": [e for e in c["env"] if e["name"] not in per_pod]}
        for c in [*spec["initContainers"], *spec["containers"]]
    ]
    canonical = json.dumps({**spec, "initContainers": [], "containers": containers}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def claim_patch(
    interaction: dict[str, Any], run: AgentRun, pod: dict[str, Any], age_seconds: float
) -> dict[str, Any]:
    """The JSON merge patch that makes an idle warm pod `interaction`'s sandbox: its labels
    (the pool no longer counts it; sweeps, the egress proxy and the NetworkPolicy find it as
    the run's), its owner (it goes with the Interaction), the run's egress rules and its
    deadline (counted, as a pod's is, from the pod's start, `age_seconds` ago). It carries the pod's
    resourceVersion: of two runs claiming one pod, the API server lets one through."""
    meta = interaction["metadata"]
    labels = {
        WARM_LABEL: None,
        SANDBOX_LABEL: child_name(meta["uid"]),
        INTERACTION_LABEL: meta["name"],
    }
    return {
        "metadata": {
            "resourceVersion": pod["metadata"]["resourceVersion"],
            "labels": labels,
            "annotations": _run_annotations(interaction, run),
            "ownerReferences": [owner_reference(interaction)],
        },
        "spec": {"activeDeadlineSeconds": int(age_seconds) + 1 + run.timeout_seconds},
    }


def _run_annotations(interaction: dict[str, Any], run: AgentRun) -> dict[str, str]:
    annotations = {EGRESS_ANNOTATION: egress_rules(run.environment)}
    meta = interaction["metadata"]
    if accepted := (meta.get("annotations") or {}).get(ACCEPTED_ANNOTATION):
        annotations[ACCEPTED_ANNOTATION] = accepted  # for start-latency metrics
    return annotations


def _sandbox_spec(
    env: SandboxEnvironment,
    place: Placement,
    credential_variables: dict[str, str],
    port: int,
    workspace_env: list[dict[str, str]],
    agent_env: list[dict[str, str]],
    workspace: dict[str, Any],
) -> dict[str, Any]:
    """The pod spec a run's sandbox and a warm one share; `agent` is the first container."""
    policy = place.policy
    image = sandbox_policy.image(env, policy)
    runtime_class = sandbox_policy.runtime_class(env, policy)
    workspace_resources = sandbox_policy.resources(env.resources, policy)
    spec: dict[str, Any] = {
        **_locked_down_pod(),
        "volumes": [workspace, {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
        "initContainers": [
            {
                "name": "workspace",
                "image": image,
                # A native sidecar: up before the agent starts, stopped when the agent ends.
                "restartPolicy": "Always",
                "command": ["python", "-m", "tether.sandbox.workspace"],
                "env": [
                    {"name": "TETHER_WORKSPACE_PORT", "value": str(port)},
                    *workspace_env,
                    {"name": "HOME", "value": WORKSPACE},
                    *_proxy_env(place),
                    *_plain_env(env, credential_variables),
                ],
                "workingDir": WORKSPACE,
                "volumeMounts": [
                    {"name": "workspace", "mountPath": WORKSPACE},
                    {"name": "tmp", "mountPath": "/tmp", "subPath": "workspace"},
                ],
                "resources": workspace_resources,
                "securityContext": _locked_down(),
            },
        ],
        "containers": [
            {
                "name": "agent",
                "image": image,
                "command": ["python", "-m", "tether.sandbox.agent"],
                "env": [
                    {"name": "TETHER_GATEWAY_URL", "value": place.gateway_url},
                    *agent_env,
                    {"name": "TETHER_WORKSPACE_URL", "value": f"http://127.0.0.1:{port}"},
                    # The run's MCP servers are called through the proxy, under its allowlist.
                    {"name": "TETHER_EGRESS_PROXY", "value": place.egress_proxy_url},
                ],
                "volumeMounts": [
                    {"name": "workspace", "mountPath": WORKSPACE, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp", "subPath": "agent"},
                ],
                "resources": copy.deepcopy(AGENT_RESOURCES),
                "securityContext": _locked_down(),
                # a crash's last log lines become its status message, and the run's error
                "terminationMessagePolicy": "FallbackToLogsOnError",
            },
        ],
    }
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return spec


def _workspace_volume(run: AgentRun) -> dict[str, Any]:
    """A persistent Environment's volume, or a fresh one that goes with the pod."""
    if run.environment_id:
        claim = {"claimName": volume_name(run.environment_id)}
        return {"name": "workspace", "persistentVolumeClaim": claim}
    return {"name": "workspace", "emptyDir": {"sizeLimit": "2Gi"}}


def _plain_env(env: SandboxEnvironment, credentials: dict[str, str]) -> list[dict[str, str]]:
    """The environment's variables as literal values, the only kind the workspace gets: the
    builder has no way to write a secretKeyRef or envFrom, and refuses a Secret reference. A
    credential's placeholder takes the place of a variable of the same name."""
    sandbox_policy.refuse_secrets(env)
    values = {**(env.env or {}), **credentials}
    return [{"name": key, "value": value} for key, value in sorted(values.items())]


def egress_rules(env: SandboxEnvironment) -> str:
    """The allowlist the egress proxy enforces for this pod, as JSON ("disabled" for none)."""
    network = env.network
    if network is None or network == "disabled" or network.allowlist == "disabled":
        return json.dumps("disabled")
    return network.model_dump_json(include={"allowlist"})


def _proxy_env(place: Placement) -> list[dict[str, str]]:
    """The standard proxy variables, in both spellings tools read; the pod's loopback (the
    agent's calls to the workspace) stays direct. A tool that ignores them gets nowhere else:
    the NetworkPolicy lets the pod reach only the proxy."""
    url = place.egress_proxy_url
    names = {"HTTP_PROXY": url, "HTTPS_PROXY": url, "NO_PROXY": "localhost,127.0.0.1"}
    pairs = [(key, value) for name, value in names.items() for key in (name, name.lower())]
    return [{"name": key, "value": value} for key, value in pairs]


def sandbox_network_policy(
    interaction: dict[str, Any], run: AgentRun, place: Placement
) -> dict[str, Any]:
    """Deny everything in; out, only DNS, the gateway and the egress proxy.

    A NetworkPolicy matches addresses, not names: the proxy is where host names are enforced
    (the pod's allowlist, by HTTP Host, CONNECT target and TLS SNI), so every other address is
    closed here, whatever the allowlist says."""
    name = child_name(interaction["metadata"]["uid"])
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(interaction),
        "spec": {
            "podSelector": {"matchLabels": {SANDBOX_LABEL: name}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": _sandbox_egress(place),
        },
    }


def pool_network_policy(agent: dict[str, Any], place: Placement) -> dict[str, Any]:
    """A warm pool's pods, idle or claimed: out, what a run's sandbox may reach (so a claimed
    pod's first call goes out with no policy to apply in between); in, only the operator, on
    the claim port. Owned by the Agent; a claimed pod has its run's own policy too, which
    outlives the Agent."""
    agent_name = agent["metadata"]["name"]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _owned_by(agent, "Agent", pool_name(agent_name), {POOL_LABEL: agent_name}),
        "spec": {
            "podSelector": {"matchLabels": {POOL_LABEL: agent_name}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": _operator(place), "ports": [{"protocol": "TCP", "port": CLAIM_PORT}]}
            ],
            "egress": _sandbox_egress(place),
        },
    }


def pool_name(agent: str) -> str:
    """The name of a pool's NetworkPolicy, and the prefix of its pods' names: one per Agent."""
    return f"pool-{agent}"


def _sandbox_egress(place: Placement) -> list[dict[str, Any]]:
    proxy = urllib.parse.urlsplit(place.egress_proxy_url)
    return [
        {
            "to": [
                {"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
            ],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        },
        {"to": _gateway(place), "ports": [{"protocol": "TCP", "port": place.gateway_port}]},
        {
            "to": _service(place, place.egress_proxy_url, place.egress_labels),
            "ports": [{"protocol": "TCP", "port": proxy.port or 80}],
        },
    ]


def _operator(place: Placement) -> list[dict[str, Any]]:
    """The operator's pods; or, when the gateway runs outside the cluster (one of the named
    hosts, as the test stack runs the platform), that host's addresses, where the operator
    runs too."""
    return _service(place, place.gateway_url, place.operator_labels)


def _gateway(place: Placement) -> list[dict[str, Any]]:
    return _service(place, place.gateway_url, place.gateway_labels)


def _service(
    place: Placement, url: str, labels: tuple[tuple[str, str], ...]
) -> list[dict[str, Any]]:
    """The pods of one of the platform's services in its namespace; or, when its URL names one
    of the platform's named hosts (a service outside the cluster, as the test stack runs it),
    that host's addresses."""
    host = urllib.parse.urlsplit(url).hostname
    if cidrs := dict(place.named_hosts).get(host or ""):
        return [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]
    return [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": place.system_namespace}
            },
            "podSelector": {"matchLabels": dict(labels)},
        }
    ]
