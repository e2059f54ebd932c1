"""`make up` / `make down`: Tether as its users run it. The chart, installed by helm onto a local
control plane and a real node (containerd, runc, gVisor, kube-proxy, kube-router, CoreDNS,
local-path-provisioner), from the images `make images` builds here. Needs root: the node makes
a bridge, netfilter rules, sysctls and cgroups, and puts them all back when it stops.

State lives in .tether (the cluster's etcd, the node's containerd and volumes), so a `make down`
then `make up` keeps interactions, files and event logs."""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import kubernetes

from tether.crds import ROOT
from tether.dev.control_plane import Binaries, helm_binary, port_in_use
from tether.dev.processes import Component, StartupError, wait_until
from tether.dev.stack import (
    DEFAULT_TENANT,
    SYSTEM_NAMESPACE,
    Cluster,
    accepts,
    load_crds,
)
from tether.dev.vendors import agent_model, summary, vendor_models
from tether.dev.worker import images
from tether.dev.worker.cluster import LocalCluster, recover
from tether.dev.worker.configs import HOST_ALIAS
from tether.dev.worker.parts import NodeParts

STATE_DIR = Path(os.environ.get("TETHER_STATE_DIR", ".tether"))
RELEASE = "tether"
CHART = ROOT / "charts" / "tether"
log = logging.getLogger("tether.dev.up")


def release_values(port: int, agent_model: str) -> dict[str, Any]:
    """The chart's values for this machine: images from the node's containerd, the gateway on
    a NodePort at `port` (kube-proxy serves NodePorts on 127.0.0.1 too), sandboxes under gVisor,
    and HOST_ALIAS a destination the egress proxy lets an allowlist name, though its address
    is private (the host's own services: a developer's local model, the demo's pages)."""
    return {
        "image": {"registry": "tether.local", "tag": "dev", "pullPolicy": "Never"},
        "gateway": {"replicas": 1, "service": {"type": "NodePort", "nodePort": port}},
        "sandbox": {"runtimeClassName": "gvisor"},
        "egress": {"namedHosts": {HOST_ALIAS: ""}},
        # a receiver on this machine's loopback gets deliveries
        "webhooks": {"allowPrivate": True, "loopbackHost": HOST_ALIAS},
        "redis": {"image": images.REDIS_IMAGE},
        "defaults": {"agentModel": agent_model},
        "tenants": [DEFAULT_TENANT],
    }


def from_pods(url: str) -> str:
    """A URL on the host's loopback, as pods reach it (through HOST_ALIAS)."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost"):
        return url
    netloc = HOST_ALIAS + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class LocalTether(Component):
    """The cluster, the images in its node, and the helm release on it."""

    def __init__(self, state: Path, port: int, environ: dict[str, str] | None = None) -> None:
        self.state = state
        self.port = port
        self.environ = dict(os.environ if environ is None else environ)
        self.cluster: LocalCluster | None = None
        self.api_key = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self) -> None:
        parts = NodeParts.from_cache()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            built = pool.submit(images.build_all, parts, redis=True)  # as the cluster starts
            self.cluster = LocalCluster(self.state / "cluster", crds=load_crds()).start()
            log.warning("cluster up")
            image_ids = built.result()
            log.warning("images built")
        for name in self.cluster.node.provide_built(image_ids):
            log.warning("imported %s", name)
        log.warning("images in the node")
        control_plane = self.cluster.control_plane
        cluster = Cluster(control_plane.api_client())
        cluster.namespace(SYSTEM_NAMESPACE)
        cluster.vendor_credentials(self.environ)
        for model in vendor_models(self.environ, SYSTEM_NAMESPACE):
            if endpoint := model["spec"].get("endpoint"):
                model["spec"]["endpoint"] = from_pods(endpoint)
            cluster.apply(model)
        values = self.state / "values.json"
        values.write_text(
            json.dumps(release_values(self.port, agent_model(self.environ)), indent=2)
        )
        self.clear_interrupted()
        self.helm(
            "upgrade", "--install", RELEASE, str(CHART), "--namespace", SYSTEM_NAMESPACE,
            "--skip-crds", "--values", str(values), "--wait", "--timeout", "5m",
        )  # fmt: skip
        log.warning("helm release ready")
        secret = kubernetes.client.CoreV1Api(control_plane.api_client()).read_namespaced_secret(
            f"api-key-{DEFAULT_TENANT}", SYSTEM_NAMESPACE
        )
        self.api_key = base64.b64decode(secret.data["key"]).decode()
        wait_until("the gateway on the host", lambda: accepts(self.url, self.api_key), 60)

    def clear_interrupted(self) -> None:
        """A `make up` stopped while helm worked leaves the release pending, and helm refuses
        to touch it again: an install that never finished is removed, an upgrade rolled back."""
        listed = json.loads(
            self.helm("list", "--namespace", SYSTEM_NAMESPACE, "--all", "--output", "json")
        )
        status = next((r["status"] for r in listed if r["name"] == RELEASE), "")
        if status == "pending-install":
            log.warning("removing the release an interrupted install left pending")
            self.helm("uninstall", RELEASE, "--namespace", SYSTEM_NAMESPACE, "--wait")
        elif status.startswith("pending-"):
            log.warning("rolling back the release an interrupted %s left", status)
            self.helm("rollback", RELEASE, "--namespace", SYSTEM_NAMESPACE, "--wait")

    def helm(self, *args: str) -> str:
        kubeconfig = self.cluster.control_plane.kubeconfig
        argv = [str(helm_binary()), f"--kubeconfig={kubeconfig}", *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise StartupError(f"helm {' '.join(args[:2])}: {done.stderr.strip()}")
        return done.stdout

    def env(self) -> str:
        kubectl = Binaries.from_cache().kubectl.parent
        return (
            f"TETHER_URL={self.url}\nTETHER_API_KEY={self.api_key}\n"
            f"TETHER_NAMESPACE={DEFAULT_TENANT}\n"
            f"KUBECONFIG={self.cluster.control_plane.kubeconfig.resolve()}\n"
            f"TETHER_HOST_ALIAS={HOST_ALIAS}\n"
            f"PATH={kubectl}:$PATH\n"
        )

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None


# -- the CLI ------------------------------------------------------------------------------------


def _pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def serve(state: Path, port: int) -> None:
    """What `make up` leaves running: starts everything, stops it all on SIGTERM."""
    logging.basicConfig(format="%(asctime)s %(message)s", stream=sys.stdout)

    def on_signal(*_: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    tether = LocalTether(state, port)
    try:
        started = time.monotonic()
        tether.start()
        log.warning("up in %.1f s", time.monotonic() - started)
        (state / "env").write_text(tether.env())
        (state / "env").chmod(0o600)
        while True:
            time.sleep(60)
    finally:
        (state / "env").unlink(missing_ok=True)
        tether.stop()


def _port() -> int | None:
    """TETHER_PORT (8080 by default), if it is a port number."""
    value = os.environ.get("TETHER_PORT", "8080")
    return int(value) if value.isdigit() and 0 < int(value) < 65536 else None


NEEDS_ROOT = """make up runs a real Kubernetes node on this machine: it needs root (sudo make up).
While it runs it adds a bridge (tether0), netfilter rules and ipsets, sysctls (forwarding,
bridged traffic through netfilter, route_localnet) and cgroups; make down puts them all back."""


def up(state: Path) -> int:
    pidfile = state / "supervisor.pid"
    if pid := _pid_alive(pidfile):
        print(f"Tether is already running (supervisor pid {pid}).")
        _print_how_to_call(state)
        return 0
    port = _port()
    if port is None:
        print(f"TETHER_PORT={os.environ['TETHER_PORT']} is not a port number.", file=sys.stderr)
        return 2
    if port_in_use(port):
        print(
            f"Port {port} is taken by another program; choose another: "
            f"TETHER_PORT={port + 1 if port < 65535 else 8081} make up",
            file=sys.stderr,
        )
        return 1
    if os.geteuid() != 0:
        print(NEEDS_ROOT, file=sys.stderr)
        return 1
    state.mkdir(parents=True, exist_ok=True)
    (state / "env").unlink(missing_ok=True)
    log_file = state / "logs" / "supervisor.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "tether.dev.up", "serve", "--state", str(state)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pidfile.write_text(str(supervisor.pid))
    print(
        "Starting Tether: building its images, a control plane and a node, then helm install "
        f"(the first time takes minutes; see {log_file}) ...",
        flush=True,
    )
    try:
        wait_until("Tether", (state / "env").exists, 1800, [("supervisor", supervisor, log_file)])
    except StartupError as error:
        print(error, file=sys.stderr)
        pidfile.unlink(missing_ok=True)
        return 1
    print(summary(dict(os.environ)))
    _print_how_to_call(state)
    return 0


def down(state: Path) -> int:
    pidfile = state / "supervisor.pid"
    pid = _pid_alive(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        if recover(state / "cluster"):
            print("Tether was not running; put back what its last run left on this host.")
        else:
            print("Tether is not running.")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 120
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

  kubectl get interactions,pods -n $TETHER_NAMESPACE

Pods reach servers on this machine's loopback as {host_alias} (a sandbox only when its
allowlist names it). Stop it with: make down
"""


def _print_how_to_call(state: Path) -> None:
    print((state / "env").read_text(), end="")
    print(HOW_TO_CALL.format(env_file=state / "env", logs=state / "logs", host_alias=HOST_ALIAS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tether.dev.up", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "serve"])
    parser.add_argument("--state", type=Path, default=STATE_DIR)
    args = parser.parse_args(argv)
    state = args.state.resolve()
    if args.command == "serve":
        serve(state, _port() or 8080)
        return 0
    return up(state) if args.command == "up" else down(state)


if __name__ == "__main__":
    sys.exit(main())
