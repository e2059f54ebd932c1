"""LocalCluster: a control plane and one real node on its own bridge, on this host, which it puts
back as it found it when it stops."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tether.dev.control_plane import ControlPlane
from tether.dev.processes import Component, StartupError, Supervisor

from .configs import NodeNetwork
from .host import HostState, kill_cgroup_members, write_sysctl
from .node import WorkerNode


class LocalCluster(Component):
    def __init__(
        self,
        workdir: Path | None = None,
        crds: Iterable[dict[str, Any]] = (),
        supervisor: Supervisor | None = None,
        network: NodeNetwork | None = None,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="tether-cluster-"))
        self.crds = list(crds)
        self.supervisor = supervisor
        self.network = network or NodeNetwork()
        self.host: HostState | None = None
        self.control_plane: ControlPlane | None = None
        self.node: WorkerNode | None = None

    @property
    def host_file(self) -> Path:
        """The host as it was before this cluster touched it, while the cluster runs."""
        return self.workdir / "host-state.json"

    def _start(self) -> None:
        recover(self.workdir)
        if Path(f"/sys/class/net/{self.network.bridge}").exists():
            raise StartupError(
                f"another local cluster holds this host's node (its bridge {self.network.bridge} "
                "exists): one runs at a time; stop the other first (`make down` for make up's)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = HostState.observe()
        self.host.save(self.host_file)
        bridge_up(self.network)
        self.control_plane = ControlPlane(
            workdir=self.workdir / "control-plane",
            crds=self.crds,
            supervisor=self.supervisor,
            address=self.network.node_ip,
        ).start()
        self.node = WorkerNode(self.control_plane, self.workdir / "node", self.network)
        self.node.start()

    def stop(self) -> None:
        """Containers first, then the control plane, then everything the host had changed."""
        if self.node is not None:
            self.node.stop()
            self.node = None
        if self.control_plane is not None:
            self.control_plane.stop()
            self.control_plane = None
        if self.host is not None:
            self.host.restore()
            self.host = None
            self.host_file.unlink(missing_ok=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def recover(workdir: Path) -> bool:
    """Put the host back after a cluster in `workdir` that died without stopping (its
    supervisor killed, the machine's power...): end what is left of its pods and shims, then
    restore the host it recorded. Whether there was anything to put back."""
    saved = workdir / "host-state.json"
    if not saved.exists():
        return False
    kill_cgroup_members("kubepods")
    # the node's own processes and its shims all name a path under its folder
    subprocess.run(["pkill", "-KILL", "-f", f"{workdir.resolve()}/"], check=False)
    HostState.load(saved).restore()
    saved.unlink()
    return True


def bridge_up(network: NodeNetwork) -> None:
    """The node's bridge, holding the node's IP; forwarding on, bridged traffic filtered (where
    NetworkPolicies and Services apply)."""
    bridge, cidr = network.bridge, f"{network.node_ip}/{network.prefix_length}"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True, capture_output=True)
    subprocess.run(["ip", "addr", "add", cidr, "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    write_sysctl("net.ipv4.ip_forward", "1")
    write_sysctl("net.bridge.bridge-nf-call-iptables", "1")
    host_alias_up(network)


def host_alias_up(network: NodeNetwork) -> None:
    """HOST_ALIAS: a pod's TCP connection to its address goes to the same port on the host's
    loopback, where a developer's servers listen (a model server, the demo's pages). Sandboxes
    get there only when their allowlist names HOST_ALIAS: their NetworkPolicy is built for it."""
    write_sysctl(f"net.ipv4.conf.{network.bridge}.route_localnet", "1")
    rule = ["-i", network.bridge, "-d", network.host_alias_ip, "-p", "tcp"]
    rule += ["-j", "DNAT", "--to-destination", "127.0.0.1"]
    iptables = ["iptables", "-t", "nat", "-A", "PREROUTING", *rule]
    subprocess.run(iptables, check=True, capture_output=True)
