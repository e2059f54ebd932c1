"""The whole stack on one machine, without Docker: a real control plane, Redis, the operator and
the gateway as local processes. Tests drive `DevStack`; `make up`/`make down` drive the CLI."""

from __future__ import annotations

import argparse
import os
import re
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

from tether.api import API_VERSION
from tether.controlplane import FIELD_MANAGER, ControlPlane, free_port
from tether.crds import CRD_DIR
from tether.processes import StartupError, http_ok, spawn, stop, wait_until

SYSTEM_NAMESPACE = "tether-system"
DEV_NODE = "tether-dev-node"
DEFAULT_TENANT = "tenant-default"
STATE_DIR = Path(os.environ.get("TETHER_STATE_DIR", ".tether"))


def new_api_key() -> str:
    return f"tth-{secrets.token_urlsafe(24)}"


def load_crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted(CRD_DIR.glob("*.yaml"))]


def resource_name(id_: str) -> str:
    """A valid resource name for any model id (the id itself becomes an alias if it differs)."""
    name = re.sub(r"[^a-z0-9.-]+", "-", id_.lower()).strip("-.")
    return name[:253] or "model"


def default_models(environ: dict[str, str]) -> list[dict[str, Any]]:
    """The built-in offline models, plus an openai-compatible one when OPENAI_BASE_URL is set."""
    models = [
        _model("echo", {"provider": "echo"}),
        _model(
            "scripted",
            {
                "provider": "scripted",
                "responses": [
                    {"text": "This is the scripted model: give a Model your own spec.responses."}
                ],
            },
        ),
    ]
    if base_url := environ.get("OPENAI_BASE_URL"):
        model_id = resolve_model_id(environ)
        spec: dict[str, Any] = {
            "provider": "openai-compatible",
            "endpoint": base_url,
            "upstreamModel": environ.get("OPENAI_MODEL", "gpt-4o-mini"),
        }
        if resource_name(model_id) != model_id:
            spec["aliases"] = [model_id]
        if environ.get("OPENAI_API_KEY"):
            spec["credentials"] = {"secretRef": {"name": "openai-credentials", "key": "api-key"}}
        models.append(_model(resource_name(model_id), spec))
    return models


EVA_INSTRUCTION = (
    "You are Eva, a careful general-purpose agent working in a Linux sandbox. Your files live "
    "under /workspace. Use run_code to run Python or bash, read_file, write_file and list_files "
    "for files, and fetch_url for web pages you are allowed to reach. Check your work by running "
    "it. When the task is done, answer with a short summary of what you did and where the "
    "results are."
)
HOSTED_AGENT_IDS = ["antigravity-preview-05-2026", "antigravity-preview-09-2026"]


def default_agent(environ: dict[str, str]) -> dict[str, Any]:
    """`eva`, the general-purpose agent; hosted agent ids resolve to it."""
    model = resolve_model_id(environ) if environ.get("OPENAI_BASE_URL") else "scripted"
    return {
        "apiVersion": API_VERSION,
        "kind": "Agent",
        "metadata": {"name": "eva", "namespace": SYSTEM_NAMESPACE},
        "spec": {
            "description": "General-purpose agent: Python and bash, files under /workspace, "
            "web fetch, and client-side function calling.",
            "systemInstruction": EVA_INSTRUCTION,
            "aliases": HOSTED_AGENT_IDS,
            "agentConfig": {"model": model, "maxSteps": 30, "timeoutSeconds": 900},
            "baseEnvironment": {"network": {"allowlist": []}},
        },
    }


def resolve_model_id(environ: dict[str, str]) -> str:
    return environ.get("OPENAI_MODEL", "openai")


def _model(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Model",
        "metadata": {"name": name, "namespace": SYSTEM_NAMESPACE},
        "spec": spec,
    }


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


class DevStack:
    """Control plane + Redis + operator + gateway, each a child process that dies with us."""

    def __init__(
        self,
        workdir: Path,
        control_plane: ControlPlane | None = None,
        port: int | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.control_plane = control_plane
        self._own_control_plane = control_plane is None
        self.port = port or free_port()
        self.environ = dict(os.environ if environ is None else environ)
        self.redis_port = free_port()
        self.metrics_port = free_port()
        self.kubelet_port = free_port()
        self.run_token_key = self.environ.get("TETHER_RUN_TOKEN_KEY") or secrets.token_hex(32)
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def operator_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> DevStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.control_plane is None:
            self.control_plane = ControlPlane(
                workdir=self.workdir / "control-plane", crds=load_crds()
            ).start()
        self.cluster = Cluster(self.control_plane.api_client())
        self._start_redis()
        self.cluster.namespace(SYSTEM_NAMESPACE)
        if key := self.environ.get("OPENAI_API_KEY"):
            self.cluster.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "openai-credentials", "namespace": SYSTEM_NAMESPACE},
                    "stringData": {"api-key": key},
                }
            )
        for model in default_models(self.environ):
            self.cluster.apply(model)
        self.cluster.apply(default_agent(self.environ))
        self.start_devnode()
        self.start_operator()
        self.start_gateway()

    def _env(self) -> dict[str, str]:
        return {
            **self.environ,
            "PYTHONSAFEPATH": "1",
            "KUBECONFIG": str(self.control_plane.kubeconfig),
            "TETHER_REDIS_URL": self.redis_url,
            "TETHER_SYSTEM_NAMESPACE": SYSTEM_NAMESPACE,
            "TETHER_HOST": "127.0.0.1",
            "TETHER_PORT": str(self.port),
            "TETHER_METRICS_PORT": str(self.metrics_port),
            "TETHER_RUN_TOKEN_KEY": self.run_token_key,
            "TETHER_GATEWAY_URL": self.url,
            "TETHER_SANDBOX_NODE_NAME": DEV_NODE,
        }

    def _start_redis(self) -> None:
        data = self.workdir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        log = self.logs / "redis.log"
        self.procs["redis"] = spawn(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.redis_port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data),
            ],
            log,
        )
        client = redis.Redis(port=self.redis_port)
        wait_until("redis", lambda: _pings(client), 20, [("redis", self.procs["redis"], log)])
        client.close()

    def start_devnode(self) -> None:
        """The process-based stand-in for a kubelet (dev only, no isolation)."""
        core = kubernetes.client.CoreV1Api(self.control_plane.api_client())
        self._service(
            "devnode",
            [
                "tether.devnode",
                "--name",
                DEV_NODE,
                "--workdir",
                str(self.workdir / "devnode"),
                "--logs-port",
                str(self.kubelet_port),
            ],
            lambda: _node_ready(core, DEV_NODE),
        )

    def start_operator(self) -> None:
        self._service("operator", ["tether.operator"], lambda: http_ok(self.operator_metrics_url))

    def start_gateway(self) -> None:
        self._service("gateway", ["tether.gateway"], lambda: http_ok(f"{self.url}/healthz"))

    def _service(self, name: str, module: list[str], ready, timeout: float = 60) -> None:
        """Run `python -m <module>` with the stack's environment until `ready` holds."""
        log = self.logs / f"{name}.log"
        self.procs[name] = spawn(
            [sys.executable, "-m", *module], log, self._env(), cwd=self.workdir
        )
        wait_until(name, ready, timeout, [(name, self.procs[name], log)])

    def stop_service(self, name: str) -> None:
        if proc := self.procs.pop(name, None):
            stop(proc)

    def add_tenant(self, namespace: str, key: str | None = None) -> str:
        """An API key (fresh unless given) for a tenant namespace, once the gateway accepts it."""
        key = key or new_api_key()
        self.cluster.api_key(namespace, key)
        wait_until("the new API key", lambda: self._accepts(key), 15)
        return key

    def _accepts(self, key: str) -> bool:
        request = urllib.request.Request(
            f"{self.url}/v1/interactions?page_size=1", headers={"x-goog-api-key": key}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        for name in ("gateway", "operator", "devnode", "redis"):
            self.stop_service(name)
        if self._own_control_plane and self.control_plane is not None:
            self.control_plane.stop()


def _node_ready(core: kubernetes.client.CoreV1Api, name: str) -> bool:
    try:
        node = core.read_node(name)
    except kubernetes.client.ApiException:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


# -- make up / make down ------------------------------------------------------------------------


def _pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def serve(state: Path) -> None:
    """The supervisor `make up` leaves running: starts the stack, restarts a crashed operator or
    gateway, and stops everything on SIGTERM."""
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    port = int(os.environ.get("TETHER_PORT", "8080"))
    stack = DevStack(state, port=port).start()
    try:
        key_file = state / "api-key"
        key = key_file.read_text().strip() if key_file.exists() else new_api_key()
        key_file.write_text(key)
        key_file.chmod(0o600)
        stack.cluster.api_key(DEFAULT_TENANT, key)
        env = (
            f"TETHER_URL={stack.url}\nTETHER_API_KEY={key}\nTETHER_NAMESPACE={DEFAULT_TENANT}\n"
            f"KUBECONFIG={stack.control_plane.kubeconfig.resolve()}\n"
        )
        (state / "env").write_text(env)
        while not stopping:
            for name, start in (
                ("operator", stack.start_operator),
                ("gateway", stack.start_gateway),
            ):
                proc = stack.procs.get(name)
                if proc is not None and proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; restarting", flush=True)
                    start()
            time.sleep(1)
    finally:
        (state / "env").unlink(missing_ok=True)
        stack.stop()


def up(state: Path) -> int:
    pidfile = state / "supervisor.pid"
    if pid := _pid_alive(pidfile):
        print(f"Tether is already running (supervisor pid {pid}).")
        _print_how_to_call(state)
        return 0
    state.mkdir(parents=True, exist_ok=True)
    (state / "env").unlink(missing_ok=True)
    log = state / "logs" / "supervisor.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "tether.devstack", "serve", "--state", str(state)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONSAFEPATH": "1"},
        )
    pidfile.write_text(str(supervisor.pid))
    print("Starting Tether: control plane, Redis, dev node, operator, gateway ...", flush=True)
    try:
        wait_until("Tether", (state / "env").exists, 180, [("supervisor", supervisor, log)])
    except StartupError as error:
        print(error, file=sys.stderr)
        pidfile.unlink(missing_ok=True)
        return 1
    _print_how_to_call(state)
    return 0


def down(state: Path) -> int:
    pidfile = state / "supervisor.pid"
    pid = _pid_alive(pidfile)
    if pid is None:
        print("Tether is not running.")
        pidfile.unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _pid_alive(pidfile):
        time.sleep(0.2)
    if _pid_alive(pidfile):
        os.kill(pid, signal.SIGKILL)  # its children die with it (PR_SET_PDEATHSIG)
    pidfile.unlink(missing_ok=True)
    print("Tether stopped.")
    return 0


HOW_TO_CALL = """
(written to {env_file}; logs in {logs})

Call it with the google-genai SDK:

  set -a; . {env_file}; set +a
  .venv/bin/python -c 'import os; from google import genai
  c = genai.Client(api_key=os.environ["TETHER_API_KEY"],
                   http_options={{"base_url": os.environ["TETHER_URL"]}})
  print(c.interactions.create(model="echo", input="hello tether").output_text)'

or with curl:

  curl -s $TETHER_URL/v1/interactions -H "x-goog-api-key: $TETHER_API_KEY" \\
       -H 'content-type: application/json' -d '{{"model": "echo", "input": "hello"}}'

and watch it with kubectl:

  kubectl get interactions -n $TETHER_NAMESPACE

Stop it with: make down
"""


def _print_how_to_call(state: Path) -> None:
    print((state / "env").read_text(), end="")
    print(HOW_TO_CALL.format(env_file=state / "env", logs=state / "logs"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tether.devstack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "serve"])
    parser.add_argument("--state", type=Path, default=STATE_DIR)
    args = parser.parse_args(argv)
    state = args.state.resolve()
    if args.command == "serve":
        serve(state)
        return 0
    return up(state) if args.command == "up" else down(state)


if __name__ == "__main__":
    sys.exit(main())
