"""WorkerNode: containerd + runc + CNI + kubelet, registered to a ControlPlane with TLS; with the
kube-scheduler, kube-proxy, kube-router (NetworkPolicies) and cluster DNS a real node needs."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import kubernetes
import yaml

from tether.dev import pki
from tether.dev.control_plane import ControlPlane, certificate_user, free_port, kubeconfig
from tether.dev.processes import Component, Service, StartupError, http_ok, wait_until

from . import dns, images, storage
from .configs import (
    PAUSE_IMAGE,
    RUNTIME_CLASS,
    NodeNetwork,
    NodePaths,
    cni_network,
    containerd_config,
    kube_proxy_config,
    kube_router_args,
    kubelet_config,
    runsc_config,
)
from .host import kill_cgroup_members
from .parts import CNI_BIN_DIR, NodeParts

NODE_NAME = "tether-node"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def kubelet_port(address: str) -> int:
    """A port free on the node's address, from the kubelet's own (10250) up: below the range the
    kernel draws outgoing connections' ports from, where a connection from this address (to a
    pod) could take a port found free a moment before."""
    for port in range(10250, 10350):
        with socket.socket() as probe:
            try:
                probe.bind((address, port))
            except OSError:
                continue
            return port
    raise StartupError(f"no free port for the kubelet on {address} in 10250-10349")


class WorkerNode(Component):
    """Runs on the network it is given (its bridge must exist); stopping ends every container.
    Putting the host back is the owner's part (LocalCluster)."""

    def __init__(
        self,
        control_plane: ControlPlane,
        workdir: Path,
        network: NodeNetwork,
        name: str = NODE_NAME,
    ) -> None:
        self.control_plane = control_plane
        self.parts = NodeParts.from_cache()
        self.paths = NodePaths(workdir)
        self.name = name
        self.network = network
        self.services: dict[str, Service] = {}
        self._core: kubernetes.client.CoreV1Api | None = None

    def _start(self) -> None:
        healthz, proxy_healthz = free_port(), free_port()
        port = kubelet_port(self.network.node_ip)
        self._files(kubelet_port=port, healthz_port=healthz, proxy_healthz=proxy_healthz)
        containerd_socket = self.paths.containerd_socket
        self._run(
            "containerd",
            [str(self.parts.containerd), "--config", str(self.paths.root / "containerd.toml")],
            lambda: containerd_socket.exists() and self.ctr("version").returncode == 0,
            # the shims: containerd finds each runtime's by name on its PATH
            env={
                "PATH": f"{self.parts.containerd_shim_dir}:{self.parts.runsc.parent}:{SYSTEM_PATH}"
            },
        )
        self.provide_scratch(PAUSE_IMAGE, {"/pause": images.pause_binary()}, ["/pause"])
        admin = self.control_plane.kubeconfig
        self._run(
            "kube-scheduler",
            [
                str(self.parts.kube_scheduler),
                f"--kubeconfig={admin}",
                f"--authentication-kubeconfig={admin}",
                f"--authorization-kubeconfig={admin}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
            ],
            lambda: True,
        )
        self._run(
            "kubelet",
            [
                str(self.parts.kubelet),
                f"--config={self.paths.root / 'kubelet.yaml'}",
                f"--kubeconfig={self.paths.root / 'kubelet.kubeconfig'}",
                f"--root-dir={self.paths.kubelet_root}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.network.node_ip}",
            ],
            lambda: http_ok(f"http://127.0.0.1:{healthz}/healthz"),
        )
        self._run(
            "kube-proxy",
            [str(self.parts.kube_proxy), f"--config={self.paths.root / 'kube-proxy.yaml'}"],
            lambda: http_ok(f"http://127.0.0.1:{proxy_healthz}/healthz"),
        )
        router_health = free_port()
        self._run(
            "kube-router",
            [str(self.parts.kube_router), *kube_router_args(admin, self.name, router_health)],
            lambda: http_ok(f"http://127.0.0.1:{router_health}/healthz"),
        )
        wait_until(f"node {self.name} Ready", self.ready, 60, self.services.values())
        self.provide_scratch(dns.COREDNS_IMAGE, {"/coredns": self.parts.coredns}, ["/coredns"])
        self.provide_scratch(
            storage.PROVISIONER_IMAGE,
            {"/local-path-provisioner": self.parts.local_path_provisioner},
            ["/local-path-provisioner"],
        )
        self.provide_scratch(
            storage.HELPER_IMAGE,
            {f"/bin/{command}": self.parts.busybox for command in storage.HELPER_COMMANDS},
            ["/bin/sh"],
        )
        addons = [
            RUNTIME_CLASS,
            *dns.manifests(self.network.host_alias_ip),
            *storage.manifests(self.paths.volumes),
        ]
        self.control_plane.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": addons}),
        )
        for namespace, deployment in (
            ("kube-system", "coredns"),
            (storage.NAMESPACE, "local-path-provisioner"),
        ):
            self.control_plane.kubectl(
                "-n", namespace, "rollout", "status", f"deployment/{deployment}", "--timeout=90s"
            )

    def _files(self, kubelet_port: int, healthz_port: int, proxy_healthz: int) -> None:
        paths, cp = self.paths, self.control_plane
        for folder in (paths.cni_conf_dir, paths.pki, paths.pod_logs):
            folder.mkdir(parents=True, exist_ok=True)
        ca = pki.KeyPair(
            (cp.workdir / "pki" / "ca.crt").read_bytes(),
            (cp.workdir / "pki" / "ca.key").read_bytes(),
        )
        certs = pki.node(ca, self.name, self.network.node_ip)
        for name, data in {
            "ca.crt": ca.cert,
            "kubelet.crt": certs.serving.cert,
            "kubelet.key": certs.serving.key,
        }.items():
            (paths.pki / name).write_bytes(data)
            (paths.pki / name).chmod(0o600)
        client = certificate_user(
            certs.client.cert, certs.client.key
        )  # Node authorization: by certificate
        (paths.root / "kubelet.kubeconfig").write_text(
            yaml.safe_dump(kubeconfig(cp.server, ca.cert, client))
        )
        (paths.root / "containerd.toml").write_text(
            containerd_config(paths, self.parts.runc, CNI_BIN_DIR)
        )
        (paths.root / "runsc.toml").write_text(runsc_config(paths, self.parts.runsc))
        (paths.cni_conf_dir / "10-tether.conflist").write_text(
            json.dumps(cni_network(self.network, paths), indent=2)
        )
        (paths.root / "resolv.conf").write_text("options ndots:1\n")
        config = kubelet_config(
            paths, self.network, kubelet_port, healthz_port, paths.pki / "ca.crt"
        )
        (paths.root / "kubelet.yaml").write_text(yaml.safe_dump(config))
        proxy = kube_proxy_config(
            cp.kubeconfig, self.name, self.network, proxy_healthz, free_port()
        )
        (paths.root / "kube-proxy.yaml").write_text(yaml.safe_dump(proxy))

    def _run(self, name: str, argv: list[str], ready, env=None, timeout: float = 60) -> None:
        service = Service(name, argv, self.paths.root / "logs" / f"{name}.log", ready, env=env)
        self.services[name] = service
        service.start()
        wait_until(name, service.healthy, timeout, self.services.values())

    # -- while it runs ---------------------------------------------------------------------------

    def ctr(self, *args: str) -> subprocess.CompletedProcess:
        argv = [str(self.parts.ctr), "--address", str(self.paths.containerd_socket), *args]
        return subprocess.run(argv, capture_output=True, text=True, check=False)

    def provide(self, name: str, version: str, archive: Callable[[], Path]) -> bool:
        """Import image `name` from `archive()` unless containerd holds this `version` of it (an
        image id, or a digest of its files) already; whether it imported."""
        record = json.loads(self.paths.imported.read_text()) if self.paths.imported.exists() else {}
        if record.get(name) == version and self._holds(name):
            return False
        self.load_image(archive())
        record[name] = version
        self.paths.imported.write_text(json.dumps(record, indent=2, sort_keys=True))
        return True

    def provide_built(self, built: Mapping[str, str]) -> list[str]:
        """Import each image buildah built (name -> image id) that containerd lacks in that
        version; the names imported."""
        return [
            name
            for name, image_id in built.items()
            if self.provide(name, image_id, lambda name=name: images.archive(self.parts, name))
        ]

    def _holds(self, name: str) -> bool:
        return bool(
            self.ctr("-n", "k8s.io", "images", "ls", "--quiet", f"name=={name}").stdout.strip()
        )

    def provide_scratch(self, name: str, files: dict[str, Path], entrypoint: list[str]) -> bool:
        """An image FROM scratch of `files` (path in the image -> host file), imported once."""
        return self.provide(
            name,
            images.files_digest(files, entrypoint),
            lambda: images.scratch_image(self.parts, name, files, entrypoint),
        )

    def load_image(self, archive: Path) -> None:
        """Import an image archive into containerd's Kubernetes namespace, unpacked, where the
        kubelet finds it; then delete the archive."""
        try:
            imported = self.ctr("-n", "k8s.io", "images", "import", str(archive))
        finally:
            shutil.rmtree(archive.parent, ignore_errors=True)
        if imported.returncode != 0:
            raise StartupError(f"could not import {archive.name}: {imported.stderr.strip()}")

    def ready(self) -> bool:
        if self._core is None:
            self._core = kubernetes.client.CoreV1Api(self.control_plane.api_client())
        try:
            node = self._core.read_node(self.name)
        except kubernetes.client.ApiException:
            return False
        conditions = {c.type: c.status for c in node.status.conditions or []}
        return conditions.get("Ready") == "True"

    # -- stop ------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the node's agents, end every container, then stop containerd."""
        for name in ("kube-router", "kube-proxy", "kubelet", "kube-scheduler"):
            if service := self.services.pop(name, None):
                service.stop()
        if (containerd := self.services.get("containerd")) and containerd.running:
            for task in self.ctr("-n", "k8s.io", "tasks", "ls", "-q").stdout.split():
                self.ctr("-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", "--all", task)
                self.ctr("-n", "k8s.io", "tasks", "delete", "-f", task)
        if containerd := self.services.pop("containerd", None):
            containerd.stop()
        kill_cgroup_members("kubepods")
        subprocess.run(["pkill", "-KILL", "-f", str(self.parts.containerd_shim_dir)], check=False)
        if self._core is not None:
            self._core.api_client.close()
            self._core = None
