"""The stack for the tests: a real control plane and node (LocalCluster), with Redis, the operator,
the gateway and the egress proxy as local processes (fast to start, each one killable).
Sandboxes are pods on the node, from the sandbox image built here; they reach the gateway's
internal port and the egress proxy on the host's loopback through HOST_ALIAS. `make up` runs
the chart instead: tether.dev.up."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
import redis
import yaml
from kubernetes.dynamic import DynamicClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from tether.crds import CRD_DIR, ROOT
from tether.dev import pki
from tether.dev.control_plane import FIELD_MANAGER, ControlPlane, free_port, port_in_use
from tether.dev.processes import (
    Component,
    Service,
    StartupError,
    Supervisor,
    http_ok,
    wait_until,
)
from tether.dev.vendors import agent_model, vendor_models, vendor_secrets
from tether.dev.worker import images
from tether.dev.worker.cluster import LocalCluster
from tether.dev.worker.configs import HOST_ALIAS, HOST_NAMES, NAMED_HOSTS

SYSTEM_NAMESPACE = "tether-system"
DEFAULT_TENANT = "tenant-default"
STATE_DIR = Path(os.environ.get("TETHER_STATE_DIR", ".tether"))
SEED_DIR = ROOT / "charts" / "tether" / "seed"
EGRESS_PYTHON = ROOT / ".venv-egress" / "bin" / "python"
"""The egress proxy's own environment (`make venv`): mitmproxy's pins are not the platform's."""
"""The seed Models and Agent, shared with the chart (the dev wing runs from a checkout)."""


def new_api_key() -> str:
    return f"tth-{secrets.token_urlsafe(24)}"


def load_crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted(CRD_DIR.glob("*.yaml"))]


def seed(name: str) -> list[dict[str, Any]]:
    """The objects of the chart's seed/<name>.yaml, in the stack's namespace."""
    objects = [o for o in yaml.safe_load_all((SEED_DIR / f"{name}.yaml").read_text()) if o]
    for obj in objects:
        obj["metadata"]["namespace"] = SYSTEM_NAMESPACE
    return objects


def default_models(environ: dict[str, str]) -> list[dict[str, Any]]:
    """The built-in offline models, plus one per vendor whose key is in the environment."""
    return [*seed("models"), *vendor_models(environ, SYSTEM_NAMESPACE)]


def default_agent(environ: dict[str, str]) -> dict[str, Any]:
    """`eva`, the general-purpose agent; hosted agent ids resolve to it."""
    [eva] = seed("eva")
    eva["spec"]["agentConfig"]["model"] = agent_model(environ)
    return eva


class Cluster:
    """Server-side apply of the stack's own objects (namespaces, keys, models)."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self.dynamic = DynamicClient(api_client)

    def apply(self, obj: dict[str, Any]) -> None:
        api = self.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        api.server_side_apply(
            body=obj,
            namespace=obj["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )

    def namespace(self, name: str) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def vendor_credentials(self, environ: dict[str, str]) -> None:
        """The Secrets of the vendor keys in `environ`, for the Models of vendor_models()."""
        for secret in vendor_secrets(environ, SYSTEM_NAMESPACE):
            self.apply(secret)

    def api_key(self, namespace: str, key: str) -> None:
        """An API key whose requests are confined to `namespace`."""
        self.namespace(namespace)
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": f"api-key-{namespace}",
                    "namespace": SYSTEM_NAMESPACE,
                    "labels": {"tether.dev/api-key": "true"},
                },
                "stringData": {"key": key, "namespace": namespace},
            }
        )


COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "redis",
    "operator",
    "gateway",
    "egress",
)


class DevStack(Component):
    """LocalCluster + Redis + operator + gateway, each process a child that dies with us. With
    `supervise=True`, a background supervisor restarts any of them that dies (the node's own
    parts aside), at any moment (start-up included), on the same ports and data directories."""

    def __init__(
        self,
        workdir: Path,
        local: LocalCluster | None = None,
        port: int | None = None,
        environ: dict[str, str] | None = None,
        supervise: bool = False,
        operators: int = 1,
        gateways: int = 1,
    ) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.local = local
        self._own_local = local is None
        self.port = port or free_port()
        self.internal_port = free_port()
        self.environ = dict(os.environ if environ is None else environ)
        self.redis_port = free_port()
        self.operators = [replica_name("operator", i) for i in range(operators)]
        """The operator replicas' names (each its TETHER_OPERATOR_ID); the first is "operator"."""
        self.metrics_ports = [free_port() for _ in range(operators)]
        self.metrics_port = self.metrics_ports[0]
        self.gateways = [replica_name("gateway", i) for i in range(gateways)]
        """The gateway replicas' names: all of them share the stack's ports (SO_REUSEPORT)."""
        self.egress_port = free_port()
        self.egress_metrics_port = free_port()
        self.egress_key = secrets.token_hex(32)
        self.egress_private_key = base64.b64encode(secrets.token_bytes(32)).decode()
        self.outside_ca = pki.authority("tether-test-public-ca")
        """What the test stack's egress proxy trusts for the servers it opens TLS to, as a real
        one trusts the public authorities: test sites get their certificates from it."""
        self.run_token_key = self.environ.get("TETHER_RUN_TOKEN_KEY") or secrets.token_hex(32)
        self.supervise = supervise
        self.supervisor: Supervisor | None = None
        self.services: dict[str, Service] = {}
        self._redis = redis.Redis(
            port=self.redis_port, socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def internal_url(self) -> str:
        """The gateway's internal API, where sandboxes call home."""
        return f"http://127.0.0.1:{self.internal_port}"

    @property
    def control_plane(self) -> ControlPlane:
        assert self.local is not None and self.local.control_plane is not None, "not started"
        return self.local.control_plane

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def operator_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def procs(self) -> dict[str, subprocess.Popen]:
        """The current process of each component, by name (see COMPONENTS)."""
        return {name: s.proc for name, s in self._components().items() if s.proc is not None}

    @property
    def restarts(self) -> dict[str, int]:
        """How many times the supervisor restarted each component."""
        counted = self.supervisor.restarts if self.supervisor else {}
        return {name: counted.get(name, 0) for name in self._components()}

    def _start(self) -> None:
        if port_in_use(self.port):
            raise StartupError(f"port {self.port} is in use by another program")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.supervise:  # one per start: a stopped stack can be started again
            self.supervisor = Supervisor().start()
        if self.local is None:
            # a cluster of its own lives as long as the stack (a temporary folder)
            self.local = LocalCluster(crds=load_crds(), supervisor=self.supervisor).start()
        elif self.supervisor is not None:
            for service in self.control_plane.services.values():
                self.supervisor.watch(service)
        node = self.local.node
        node.provide_built(images.build_all(node.parts, targets=["sandbox"]))
        self.cluster = Cluster(self.control_plane.api_client())
        self._start_redis()
        self.cluster.namespace(SYSTEM_NAMESPACE)
        self.cluster.vendor_credentials(self.environ)
        for model in default_models(self.environ):
            self.cluster.apply(model)
        self.cluster.apply(default_agent(self.environ))
        self.start_egress()
        for replica in range(len(self.operators)):
            self.start_operator(replica)
        for replica in range(len(self.gateways)):
            self.start_gateway(replica)

    def _env(self) -> dict[str, str]:
        return {
            "TETHER_ENVIRONMENT_CHECK_SECONDS": "1",  # idle expiry within a test's patience
            **self.environ,
            "KUBECONFIG": str(self.control_plane.kubeconfig),
            "TETHER_REDIS_URL": self.redis_url,
            "TETHER_SYSTEM_NAMESPACE": SYSTEM_NAMESPACE,
            "TETHER_HOST": "127.0.0.1",
            "TETHER_PORT": str(self.port),
            "TETHER_INTERNAL_PORT": str(self.internal_port),
            "TETHER_METRICS_PORT": str(self.metrics_port),
            "TETHER_RUN_TOKEN_KEY": self.run_token_key,
            "TETHER_GATEWAY_URL": f"http://{HOST_ALIAS}:{self.internal_port}",
            "TETHER_SANDBOX_NAMED_HOSTS": json.dumps(NAMED_HOSTS),
            "TETHER_EGRESS_PROXY_URL": f"http://{HOST_ALIAS}:{self.egress_port}",
            "TETHER_EGRESS_HOST": "127.0.0.1",
            "TETHER_EGRESS_PORT": str(self.egress_port),
            "TETHER_EGRESS_METRICS_PORT": str(self.egress_metrics_port),
            "TETHER_EGRESS_KEY": self.egress_key,
            "TETHER_EGRESS_ADMIN_URL": f"http://127.0.0.1:{self.egress_metrics_port}",
            # the proxy runs on the host, where HOST_ALIAS is its loopback
            "TETHER_EGRESS_HOSTS": json.dumps(dict.fromkeys(HOST_NAMES, "127.0.0.1")),
            "TETHER_SANDBOX_IMAGE": images.image_name("sandbox"),
            # receivers on this machine, retried within a test's patience
            "TETHER_WEBHOOK_ALLOW_PRIVATE": "true",
            "TETHER_WEBHOOK_RETRY_DELAYS": "[0.5, 1, 2]",
            "TETHER_WEBHOOK_TIMEOUT_SECONDS": "3",
            "TETHER_WEBHOOK_HOSTS": json.dumps(["127.0.0.1", "localhost"]),  # this machine only
            "TETHER_TRIGGER_CHECK_SECONDS": "0.5",  # schedules with seconds fire on time
        }

    def _start_redis(self) -> None:
        """Redis with an append-only file in the stack's directory: event logs and agent files
        survive a Redis restart and `make down`/`make up` (at most the last second is lost)."""
        data = self.workdir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port)]
        argv += ["--dir", str(data), "--save", ""]
        argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
        self._run(Service("redis", argv, self.logs / "redis.log", self._redis_pings), 20)

    def _redis_pings(self) -> bool:
        try:
            return bool(self._redis.ping())
        except (redis.ConnectionError, redis.TimeoutError):  # down, or still loading its file
            return False

    def start_operator(self, replica: int = 0) -> None:
        name, port = self.operators[replica], self.metrics_ports[replica]
        env = {"TETHER_OPERATOR_ID": name, "TETHER_METRICS_PORT": str(port)}
        metrics = f"http://127.0.0.1:{port}/metrics"
        self._python(name, ["tether.operator"], lambda: http_ok(metrics), env=env)

    def start_gateway(self, replica: int = 0) -> None:
        env = {"TETHER_REUSE_PORT": "true"} if len(self.gateways) > 1 else {}
        healthz = f"{self.url}/healthz"  # any replica's answer: they share the port
        self._python(self.gateways[replica], ["tether.gateway"], lambda: http_ok(healthz), env=env)

    @property
    def egress_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.egress_metrics_port}/metrics"

    def start_egress(self) -> None:
        if not EGRESS_PYTHON.exists():
            raise StartupError(f"no {EGRESS_PYTHON}: run `make venv` to make the proxy's")
        healthz = f"http://127.0.0.1:{self.egress_metrics_port}/healthz"
        trusted = self.workdir / "egress-trusted-ca.pem"
        trusted.write_bytes(self.outside_ca.cert)
        here = {
            # on the host, it reports refusals to the gateway on the host's loopback
            "TETHER_GATEWAY_URL": self.internal_url,
            "TETHER_EGRESS_PRIVATE_KEY": self.egress_private_key,  # the proxy's alone
            "TETHER_EGRESS_TRUSTED_CA": str(trusted),
        }
        self._python("egress", ["tether.egress"], lambda: http_ok(healthz), EGRESS_PYTHON, here)

    def _python(
        self,
        name: str,
        module: list[str],
        ready,
        python: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """Run `python -m <module>` with the stack's environment until `ready` holds."""
        argv = [str(python or sys.executable), "-m", *module]
        log = self.logs / f"{name}.log"
        environ = {**self._env(), **(env or {})}
        self._run(Service(name, argv, log, ready, environ, self.workdir), 60)

    def _run(self, service: Service, timeout: float) -> None:
        """Start (or start again) a component, hand it to the supervisor, wait until it answers."""
        if old := self.services.get(service.name):
            old.stop()
        self.services[service.name] = service
        service.start()
        if self.supervisor is not None:
            self.supervisor.watch(service)
        service.wait_ready(timeout)

    def stop_service(self, name: str) -> None:
        if service := self.services.get(name):
            service.stop()

    def _components(self) -> dict[str, Service]:
        plane = self.local.control_plane if self.local is not None else None
        ours = plane.services if plane is not None else {}
        return {**ours, **self.services}

    def kill(self, name: str, sig: int = signal.SIGKILL, restart: bool = True) -> None:
        """Send `sig` to a component; for a signal that ends it, wait until it has exited. The
        supervisor, if on, starts it again, unless `restart` is off (a replica gone for good)."""
        service = self._components().get(name)
        if service is None or service.proc is None:
            raise KeyError(f"no running component {name!r}; components: {', '.join(COMPONENTS)}")
        if not restart and self.supervisor is not None:
            self.supervisor.forget(service)
        proc = service.proc
        proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            proc.wait(timeout=30)

    def wait_healthy(self, timeout: float = 60) -> None:
        """Return once every component runs and answers (API server /readyz, Redis PING, operator
        metrics, gateway /healthz)."""
        deadline = time.monotonic() + timeout
        while True:
            sick = [name for name, s in self._components().items() if not s.healthy()]
            if not sick:
                return
            if time.monotonic() > deadline:
                raise StartupError(f"not healthy after {timeout}s: {', '.join(sick)}")
            time.sleep(0.1)

    def add_tenant(self, namespace: str, key: str | None = None) -> str:
        """An API key (fresh unless given) for a tenant namespace, once the gateway accepts it."""
        key = key or new_api_key()
        self.cluster.api_key(namespace, key)
        wait_until("the new API key", lambda: accepts(self.url, key), 15)
        return key

    def stop(self) -> None:
        """Stop the supervisor first, so that nothing is started again, then every component."""
        if self.supervisor is not None:
            self.supervisor.stop()
        for name in (*self.gateways, *self.operators, "egress", "redis"):
            self.stop_service(name)
        self._redis.close()
        if self._own_local and self.local is not None:
            self.local.stop()
            self.local = None


def replica_name(component: str, index: int) -> str:
    """ "operator", "operator-2", "operator-3", ...: the first keeps the component's name."""
    return component if index == 0 else f"{component}-{index + 1}"


def accepts(url: str, key: str) -> bool:
    """Whether the gateway at `url` answers and takes `key`."""
    request = urllib.request.Request(
        f"{url}/v1/interactions?page_size=1", headers={"x-goog-api-key": key}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
