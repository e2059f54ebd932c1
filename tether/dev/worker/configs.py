"""The worker node's configuration files, built from plain values. Pure: no I/O."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAUSE_IMAGE = "tether.local/pause:1"
DNS_SERVICE_IP = "10.0.0.10"
"""The `kube-dns` Service's address, in the control plane's service range (10.0.0.0/24)."""
SERVICE_CIDR = "10.0.0.0/24"
HOST_ALIAS = "host.tether.internal"
"""The host's loopback, as pods see it (as `host.docker.internal` is for Docker users)."""
HOST_NAMES = (HOST_ALIAS, f"a.{HOST_ALIAS}", f"b.{HOST_ALIAS}")
"""Names the test stack's egress proxy (on the host) takes to the host's loopback: the host,
and two more that an allowlist can tell apart."""
NAMED_HOSTS = {HOST_ALIAS: ["127.0.0.1/32"]}
"""The sandboxes' named hosts (TETHER_SANDBOX_NAMED_HOSTS): HOST_ALIAS, as kube-router sees a
connection to it (after the node's DNAT to the host's loopback)."""


@dataclass(frozen=True)
class NodeNetwork:
    """The node's own bridge: the node's IP is its gateway, every pod gets an address on it."""

    bridge: str = "tether0"
    pod_cidr: str = "10.244.0.0/24"
    host_alias_ip: str = "10.244.255.254"
    """HOST_ALIAS's address: on no device; the host turns packets to it into packets to its own
    loopback (same port). Outside the pods' subnet, so it reaches the host by their route."""

    @property
    def node_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))

    @property
    def prefix_length(self) -> int:
        return ipaddress.ip_network(self.pod_cidr).prefixlen


@dataclass(frozen=True)
class NodePaths:
    """Everything the node writes lives under one folder, so stopping it can find it all."""

    root: Path

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "networks"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pods"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def volumes(self) -> Path:
        """Where PersistentVolumes live (local-path-provisioner), kept across restarts."""
        return self.root / "volumes"

    @property
    def imported(self) -> Path:
        """Which image each name stands for in containerd: only a changed image is imported."""
        return self.root / "containerd" / "imported.json"


def containerd_config(paths: NodePaths, runc: Path, cni_bin_dir: Path) -> str:
    """containerd 2's config (version 3): the CRI with runc and gVisor (handler `runsc`), the
    node's CNI network, no pulls."""
    return f"""version = 3
root = "{paths.containerd_root}"
state = "{paths.containerd_state}"
imports = []

[grpc]
  address = "{paths.containerd_socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{paths.containerd_root / "opt"}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"

[plugins."io.containerd.cri.v1.runtime"]
  # These VMs refuse a negative OOM score adjustment (no CAP_SYS_RESOURCE): without this every
  # pod sandbox fails in runc with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  # Network namespaces under the state folder, not the host's /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{paths.containerd_state / "runc"}"
        SystemdCgroup = false
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc]
      runtime_type = "io.containerd.runsc.v1"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc.options]
        TypeUrl = "io.containerd.runsc.v1.options"
        ConfigPath = "{paths.root / "runsc.toml"}"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni_bin_dir}"]
    conf_dir = "{paths.cni_conf_dir}"
"""


def runsc_config(paths: NodePaths, runsc: Path) -> str:
    """gVisor's shim: which runsc, where its state lives; systrap, the platform these VMs run."""
    return f"""binary_name = "{runsc}"
root = "{paths.containerd_state / "runsc"}"

[runsc_config]
  platform = "systrap"
"""


def service_account_with_role(
    account: dict[str, str], role: str, rules: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A ServiceAccount (`account`: name and namespace), a ClusterRole of `rules`, and the
    binding between them: what an add-on's pods run as."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": account},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"kind": "ServiceAccount", **account}],
        },
    ]


RUNTIME_CLASS = {
    "apiVersion": "node.k8s.io/v1",
    "kind": "RuntimeClass",
    "metadata": {"name": "gvisor"},
    "handler": "runsc",
}
"""Pods that name it run under gVisor: their own kernel, not the host's."""


def cni_network(network: NodeNetwork, paths: NodePaths) -> dict[str, Any]:
    """The pods' network: a veth per pod on the node's bridge, addresses from its subnet."""
    return {
        "cniVersion": "1.0.0",
        "name": "tether",
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(paths.cni_ipam_dir),
                    "ranges": [[{"subnet": network.pod_cidr, "gateway": network.node_ip}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(
    paths: NodePaths, network: NodeNetwork, port: int, healthz_port: int, ca_file: Path
) -> dict[str, Any]:
    """The kubelet as a real node runs it: TLS serving, x509 + webhook auth, cgroupfs, no pulls."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": network.node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(paths.pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(paths.pki / "kubelet.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "podLogsDir": str(paths.pod_logs),
        "resolvConf": str(paths.root / "resolv.conf"),
        "clusterDomain": "cluster.local",
        "clusterDNS": [DNS_SERVICE_IP],
        # The node has no registry to fetch an image again: never collect one.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
    }


def kube_proxy_config(
    kubeconfig: Path, name: str, network: NodeNetwork, healthz_port: int, metrics_port: int
) -> dict[str, Any]:
    """Services by iptables, leaving the host's conntrack limits as they are."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": name,
        "mode": "iptables",
        "clusterCIDR": network.pod_cidr,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def kube_router_args(kubeconfig: Path, name: str, health_port: int) -> list[str]:
    """kube-router as a NetworkPolicy enforcer only: no routing, no service proxy, no CNI."""
    return [
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        "--enable-cni=false",
        "--enable-pod-egress=false",
        "--enable-ipv6=false",
        f"--kubeconfig={kubeconfig}",
        f"--hostname-override={name}",
        f"--health-port={health_port}",
        "--metrics-port=0",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
    ]
