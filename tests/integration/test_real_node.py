"""A real worker node: containerd + runc + CNI + kubelet, registered to the control plane with TLS.

Its own control plane (the session's has the dev node, and no scheduler): pods here are
scheduled by kube-scheduler and run by runc in real containers on the node's bridge.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from tether.dev import pki
from tether.dev.control_plane import ControlPlane, KubectlError
from tether.dev.processes import StartupError
from tether.dev.worker import storage
from tether.dev.worker.cluster import LocalCluster

pytestmark = pytest.mark.integration
BUSYBOX = storage.HELPER_IMAGE
"""Every node holds it (local-path-provisioner's helper)."""


def busybox_pod(name: str, script: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": BUSYBOX,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/busybox", "sh", "-c", script],
                }
            ],
        },
    }


def deny_egress(pod: str, allow_dns: bool = False) -> dict:
    """A NetworkPolicy: the pod (labelled app=<its name>) may send nothing (but DNS, if asked)."""
    egress = []
    if allow_dns:
        egress = [
            {
                "to": [
                    {
                        "namespaceSelector": {},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }
                ],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            }
        ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{pod}-egress", "namespace": "default"},
        "spec": {
            "podSelector": {"matchLabels": {"app": pod}},
            "policyTypes": ["Egress"],
            "egress": egress,
        },
    }


def test_the_node_registers_with_tls_and_reports_its_runtime(cluster):
    control_plane, node = cluster.control_plane, cluster.node
    core = kubernetes.client.CoreV1Api(control_plane.api_client())
    status = core.read_node(node.name).status
    assert {c.type: c.status for c in status.conditions}["Ready"] == "True"
    assert {a.type: a.address for a in status.addresses}["InternalIP"] == node.network.node_ip
    assert status.node_info.kubelet_version == "v1.34.4"
    assert status.node_info.container_runtime_version.startswith("containerd://2.")
    # The API server reaches the kubelet over TLS with its client certificate (logs, exec)
    assert control_plane.kubectl("get", "--raw", f"/api/v1/nodes/{node.name}/proxy/healthz") == "ok"
    assert "KubeletReady" in control_plane.kubectl("describe", "node", node.name)


def test_the_kubelet_answers_no_one_without_a_certificate(cluster):
    control_plane, node = cluster.control_plane, cluster.node
    port = (
        kubernetes.client.CoreV1Api(control_plane.api_client())
        .read_node(node.name)
        .status.daemon_endpoints.kubelet_endpoint.port
    )
    context = ssl.create_default_context(cafile=str(node.paths.pki / "ca.crt"))
    context.check_hostname = False  # the certificate names the node by IP and by name
    url = f"https://{node.network.node_ip}:{port}/pods"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, context=context, timeout=10)
    assert refused.value.code == 401


def test_a_second_cluster_on_the_host_is_refused_and_leaves_the_first_running(cluster):
    with pytest.raises(StartupError, match="another local cluster holds this host's node"):
        LocalCluster().start()
    assert cluster.control_plane.kubectl("get", "--raw", "/readyz") == "ok"
    assert (
        cluster.control_plane.kubectl(
            "get", "--raw", f"/api/v1/nodes/{cluster.node.name}/proxy/healthz"
        )
        == "ok"
    )


@contextlib.contextmanager
def https_server(
    identity: pki.KeyPair, address: str, folder: Path
) -> Iterator[tuple[int, list[str]]]:
    """An HTTPS server at `address` with this certificate: its port, and the paths asked."""
    asked: list[str] = []

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"an impostor answered")

        def log_message(self, *_: object) -> None:
            pass

    (folder / "tls.crt").write_bytes(identity.cert)
    (folder / "tls.key").write_bytes(identity.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "tls.crt", folder / "tls.key")
    server = http.server.ThreadingHTTPServer((address, 0), Answer)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], asked
    finally:
        server.shutdown()
        server.server_close()


def test_the_api_server_talks_only_to_kubelets_the_cluster_ca_signed(cluster, tmp_path):
    """A Node whose address leads to a server holding another CA's certificate gets nothing
    through the API server: logs, exec and port-forward all take the node proxy's path."""
    control_plane = cluster.control_plane
    core = kubernetes.client.CoreV1Api(control_plane.api_client())
    address = cluster.network.node_ip  # the API server proxies to no loopback address
    identity = pki.node(pki.generate().ca, "impostor", address).serving
    with https_server(identity, address, tmp_path) as (port, asked):
        core.create_node(
            {
                "metadata": {"name": "impostor"},
                "spec": {  # never a place for the other tests' pods
                    "unschedulable": True,
                    "taints": [{"key": "tether.dev/impostor", "effect": "NoSchedule"}],
                },
            }
        )
        try:
            status = {
                "addresses": [{"type": "InternalIP", "address": address}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            }
            core.patch_node_status("impostor", {"status": status})
            with pytest.raises(KubectlError) as refused:
                control_plane.kubectl("get", "--raw", "/api/v1/nodes/impostor/proxy/pods")
        finally:
            core.delete_node("impostor")
    assert "certificate signed by unknown authority" in str(refused.value)
    assert asked == []


def test_a_pod_runs_in_a_container_on_the_node_with_logs_and_exec(cluster):
    control_plane, node = cluster.control_plane, cluster.node
    pod = busybox_pod(
        "hello", "echo hello from $(/bin/busybox hostname); exec /bin/busybox sleep 3600"
    )
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    try:
        control_plane.kubectl("wait", "--for=condition=Ready", "pod/hello", "--timeout=60s")
        assert control_plane.kubectl("logs", "hello") == "hello from hello\n"
        cgroups = control_plane.kubectl(
            "exec", "hello", "--", "/bin/busybox", "cat", "/proc/1/cgroup"
        )
        assert "/kubepods/" in cgroups  # its own cgroup under the kubelet's, as runc put it
        placed = json.loads(control_plane.kubectl("get", "pod", "hello", "-o", "json"))
        assert placed["spec"]["nodeName"] == node.name  # kube-scheduler bound it
        pod_ip = ipaddress.ip_address(placed["status"]["podIP"])
        assert pod_ip in ipaddress.ip_network(node.network.pod_cidr)
    finally:
        control_plane.kubectl("delete", "pod", "hello", "--wait=true", "--timeout=60s")


def test_services_resolve_by_name_and_network_policies_are_enforced(cluster):
    control_plane = cluster.control_plane
    server = busybox_pod(
        "web",
        "/bin/busybox mkdir -p /www && echo served-by-web > /www/index.html"
        " && exec /bin/busybox httpd -f -p 8080 -h /www",
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    client = busybox_pod("client", "exec /bin/busybox sleep 3600")
    for obj in (server, service, client):
        control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(obj))
    lookup = ["exec", "client", "--", "/bin/busybox", "nslookup", "web.default.svc.cluster.local"]
    try:
        for pod in ("web", "client"):
            control_plane.kubectl("wait", "--for=condition=Ready", f"pod/{pod}", "--timeout=60s")
        # cluster DNS (CoreDNS pods behind kube-dns) names the Service; kube-proxy routes it.
        # (busybox's nslookup and nc: its wget needs the NSS of its static glibc, which cannot
        # load in a bare image)
        cluster_ip = _get(control_plane, "service", "web")["spec"]["clusterIP"]
        assert f"Address: {cluster_ip}" in control_plane.kubectl(*lookup)
        deadline = time.monotonic() + 30
        while not _succeeds(control_plane, *fetch(cluster_ip, 80)):  # kube-proxy's next sync
            assert time.monotonic() < deadline, "kube-proxy never routed the Service"
            time.sleep(0.5)
        assert "served-by-web" in control_plane.kubectl(*fetch(cluster_ip, 80))
        policy = deny_egress("client", allow_dns=True)
        control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(policy))
        deadline = time.monotonic() + 30
        while _succeeds(control_plane, *fetch(cluster_ip, 80)):
            assert time.monotonic() < deadline, "the NetworkPolicy was never enforced"
            time.sleep(0.5)  # kube-router applies it within seconds
        # refused at the network, to the pod's own address too, while DNS is still allowed
        pod_ip = _get(control_plane, "pod", "web")["status"]["podIP"]
        assert not _succeeds(control_plane, *fetch(pod_ip, 8080))
        assert f"Address: {cluster_ip}" in control_plane.kubectl(*lookup)
    finally:
        for name in ("pod/web", "pod/client", "service/web", "networkpolicy/client-egress"):
            ignore_failure(control_plane, "delete", name, "--ignore-not-found", "--wait=false")


def fetch(ip: str, port: int) -> list[str]:
    """kubectl arguments: from the client pod, GET / at ip:port (3 s to connect and answer)."""
    request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'"
    script = f"{request} | /bin/busybox nc -w 3 {ip} {port}"
    return ["exec", "client", "--", "/bin/busybox", "sh", "-c", script]


def _get(control_plane: ControlPlane, kind: str, name: str) -> dict:
    return json.loads(control_plane.kubectl("get", kind, name, "-o", "json"))


def ignore_failure(control_plane: ControlPlane, *args: str) -> None:
    """Clean-up that may find nothing left to clean."""
    _succeeds(control_plane, *args)


def _succeeds(control_plane: ControlPlane, *args: str) -> bool:
    try:
        control_plane.kubectl(*args)
    except KubectlError:
        return False
    return True


def test_a_pod_of_runtime_class_gvisor_runs_on_its_own_kernel(cluster):
    control_plane = cluster.control_plane
    pod = busybox_pod("sandboxed", "exec /bin/busybox sleep 3600")
    pod["spec"]["runtimeClassName"] = "gvisor"
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    try:
        control_plane.kubectl("wait", "--for=condition=Ready", "pod/sandboxed", "--timeout=60s")
        kernel_log = control_plane.kubectl("exec", "sandboxed", "--", "/bin/busybox", "dmesg")
        assert "Starting gVisor" in kernel_log
        release = control_plane.kubectl("exec", "sandboxed", "--", "/bin/busybox", "uname", "-r")
        assert release.strip() != os.uname().release  # not the host's kernel
    finally:
        ignore_failure(control_plane, "delete", "pod", "sandboxed", "--wait=true", "--timeout=60s")
