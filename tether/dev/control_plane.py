"""A real local Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager) run as
child processes, the way controller-runtime's envtest does. Used by the tests and by `make up`."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import random
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import urllib3
import yaml
from cryptography import x509
from kubernetes.dynamic import DynamicClient

from tether.dev import pki
from tether.dev.processes import (
    Component,
    Service,
    StartupError,
    Supervisor,
    http_ok,
    wait_until,
)
from tether.dev.versions import CACHE, HELM_VERSION, K8S_VERSION, KWOK_VERSION

FIELD_MANAGER = "tether"


def helm_binary() -> Path:
    """The helm `make control-plane` built."""
    return CACHE / f"helm-v{HELM_VERSION}" / "bin" / "helm"


def kwok_binary() -> Path:
    """kwok, which `make control-plane` builds: fake nodes for the scale benchmark."""
    return CACHE / f"kwok-v{KWOK_VERSION}" / "bin" / "kwok"


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message is what it said."""


class ControlPlaneError(StartupError):
    """The control plane did not come up; the message carries the failing process's last logs."""


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path

    @classmethod
    def from_cache(cls, version: str = K8S_VERSION) -> Binaries:
        """The binaries `make control-plane` built; a clear error if it has not run."""
        bin_dir = CACHE / f"kubernetes-v{version}" / "bin"
        found = cls(
            *(bin_dir / n for n in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl"))
        )
        missing = [str(p) for p in vars(found).values() if not os.access(p, os.X_OK)]
        if missing:
            raise ControlPlaneError(f"missing {', '.join(missing)}: run `make control-plane` first")
        return found


def ephemeral_ports() -> range:
    """The ports the kernel gives outgoing connections (Linux's ip_local_port_range)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nobody listens on, for a server started later. It is picked below the
    ephemeral range: a port the kernel chose (bind to 0) can be taken meanwhile as the source
    port of any outgoing connection (etcd's, the API server's clients'), and the server that
    binds it seconds later then fails with "address already in use". Never the same port twice
    in one process, so ports picked together before any is bound do not collide."""
    first = max(1024, min(ephemeral_ports().start, 65536) - 12000)
    candidates = [p for p in range(first, first + 12000) if p not in _handed_out]
    for port in random.sample(candidates, len(candidates)):
        if not port_in_use(port):
            _handed_out.add(port)
            return port
    raise StartupError("no free loopback port below the ephemeral range")


def port_in_use(port: int) -> bool:
    """Whether another program listens on this loopback port (a closing one does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def kubeconfig(server: str, ca: bytes, user: dict[str, str], name: str = "tether-local") -> dict:
    """A kubeconfig with the credentials embedded, so it works from any directory. `user`: a
    bearer token (`{"token": ...}`) or a client certificate (`certificate_user`)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}
        ],
        "users": [{"name": "admin", "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "admin"}}],
        "current-context": name,
    }


def certificate_user(cert: bytes, key: bytes) -> dict[str, str]:
    return {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class ControlPlane(Component):
    """etcd, kube-apiserver and kube-controller-manager on free loopback ports.

    CRDs given to the constructor are installed before the controller manager starts, so its
    garbage collector knows them from the first moment. Given a supervisor, each process is
    restarted with the same ports, data directory and certificates whenever it dies.
    """

    def __init__(
        self,
        binaries: Binaries | None = None,
        workdir: Path | None = None,
        crds: Iterable[dict[str, Any]] = (),
        supervisor: Supervisor | None = None,
        address: str = "127.0.0.1",
    ) -> None:
        self.binaries = binaries or Binaries.from_cache()
        self.address = address
        """Where the API server listens and what it advertises: loopback, or a real node's IP,
        so that pods reach it through the `kubernetes` Service."""
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="tether-cp-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.crds = list(crds)
        self.supervisor = supervisor
        self.services: dict[str, Service] = {}
        self.server = ""
        self.kubeconfig = self.workdir / "kubeconfig"

    # -- lifecycle ------------------------------------------------------------------------------

    def _start(self) -> None:
        d = self.workdir / "pki"
        loopback = ipaddress.ip_address(self.address).is_loopback
        certs = load_or_create_pki(d, self.address)
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        # etcd holds every Secret in the clear: TLS both ways, and only a client the cluster CA
        # signed (the API server) gets in, even from loopback.
        etcd_url = f"https://127.0.0.1:{etcd_port}"
        peer_url = f"https://127.0.0.1:{peer_port}"
        etcd_tls = [f"--trusted-ca-file={d / 'ca.crt'}", "--client-cert-auth"]
        etcd_tls += [f"--cert-file={d / 'apiserver.crt'}", f"--key-file={d / 'apiserver.key'}"]
        etcd_tls += [f"--peer-trusted-ca-file={d / 'ca.crt'}", "--peer-client-cert-auth"]
        etcd_tls += [f"--peer-cert-file={d / 'apiserver.crt'}"]
        etcd_tls += [f"--peer-key-file={d / 'apiserver.key'}"]
        etcd_client = ssl.create_default_context(cafile=str(d / "ca.crt"))
        etcd_client.load_cert_chain(str(d / "kubelet-client.crt"), str(d / "kubelet-client.key"))
        self._run(
            "etcd",
            [
                str(self.binaries.etcd),
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
                "--initial-cluster",
                f"default={peer_url}",
                *etcd_tls,
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
            lambda: http_ok(f"{etcd_url}/health", etcd_client),
            30,
        )

        self.server = f"https://{self.address}:{api_port}"
        ssl_ctx = ssl.create_default_context(cafile=str(d / "ca.crt"))
        ssl_ctx.load_cert_chain(str(d / "admin.crt"), str(d / "admin.key"))
        self._run(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                f"--etcd-cafile={d / 'ca.crt'}",
                f"--etcd-certfile={d / 'kubelet-client.crt'}",
                f"--etcd-keyfile={d / 'kubelet-client.key'}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--secure-port={api_port}",
                f"--tls-cert-file={d / 'apiserver.crt'}",
                f"--tls-private-key-file={d / 'apiserver.key'}",
                f"--client-ca-file={d / 'ca.crt'}",
                # The admin's kubeconfig (kubectl, helm, the controllers, the local operator and
                # gateway) presents a token: a client certificate is verified again on every
                # request, 7% of the API server's CPU under load.
                f"--token-auth-file={d / 'tokens.csv'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={d / 'sa.pub'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                # `make up` serves the gateway on a NodePort at TETHER_PORT, which may be any port.
                "--service-node-port-range=1024-65535",
                "--authorization-mode=Node,RBAC",
                # kubectl logs and exec: the API server calls kubelets as a client the CA signed,
                # and talks only to kubelets whose serving certificate the CA signed.
                f"--kubelet-certificate-authority={d / 'ca.crt'}",
                f"--kubelet-client-certificate={d / 'kubelet-client.crt'}",
                f"--kubelet-client-key={d / 'kubelet-client.key'}",
                "--kubelet-preferred-address-types=InternalIP",
                # On loopback no pod could use the `kubernetes` Service's endpoints: none then.
                f"--endpoint-reconciler-type={'none' if loopback else 'lease'}",
                "--profiling=false",
            ],
            lambda: http_ok(f"{self.server}/readyz", ssl_ctx),
            120,
        )

        self.kubeconfig.write_text(
            yaml.safe_dump(
                kubeconfig(self.server, certs["ca.crt"], {"token": certs["admin.token"].decode()})
            )
        )
        self.kubeconfig.chmod(0o600)
        if self.crds:
            self.install_crds(self.crds)

        # The service-account controller creating "default" proves the controllers are running.
        core = kubernetes.client.CoreV1Api(self.api_client())
        self._run(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--service-account-private-key-file={d / 'sa.key'}",
                f"--root-ca-file={d / 'ca.crt'}",
                "--use-service-account-credentials=false",
            ],
            lambda: _exists(core.read_namespaced_service_account, "default", "default"),
            60,
        )

    def stop(self) -> None:
        """Stop in reverse order; SIGKILL whatever ignores SIGTERM. Safe to call twice."""
        for service in reversed(self.services.values()):
            service.stop()
        self.services.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- clients --------------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        """kubectl against this control plane, as an admin; its output, or KubectlError."""
        argv = [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args]
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def api_client(self) -> kubernetes.client.ApiClient:
        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))

    def install_crds(self, crds: Iterable[dict[str, Any]], timeout: float = 30) -> None:
        """Server-side apply each CRD and wait until the API server serves it."""
        client = DynamicClient(self.api_client())
        api = client.resources.get(
            api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
        )
        names = []
        for crd in crds:
            api.server_side_apply(body=crd, field_manager=FIELD_MANAGER, force_conflicts=True)
            names.append(crd["metadata"]["name"])
        for name in names:
            self._wait(f"CRD {name}", lambda n=name: _established(api.get(name=n)), timeout)

    # -- processes ------------------------------------------------------------------------------

    @property
    def procs(self) -> dict[str, subprocess.Popen]:
        """The running process of each component, by name."""
        return {name: s.proc for name, s in self.services.items() if s.proc is not None}

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def _run(self, name: str, argv: list[str], ready: Callable[[], bool], timeout: float) -> None:
        """Start a component and wait until it answers. Its command line holds its ports and
        files, so a restart by the supervisor brings back the same component."""
        service = Service(name, argv, self.log_path(name), ready, cwd=self.workdir)
        self.services[name] = service
        service.start()
        if self.supervisor is not None:
            self.supervisor.watch(service)
        self._wait(name, service.healthy, timeout)

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        try:
            wait_until(what, ready, timeout, self.services.values())
        except StartupError as error:
            raise ControlPlaneError(str(error)) from None


def load_or_create_pki(d: Path, address: str = "127.0.0.1") -> dict[str, bytes]:
    """The cluster's certificates and service-account keys, kept in `d` across restarts: a
    restarted API server must accept the kubeconfig and the tokens issued before."""
    names = ["ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "admin.crt", "admin.key"]
    names += ["kubelet-client.crt", "kubelet-client.key", "sa.key", "sa.pub"]
    if all((d / n).exists() for n in names) and _valid_for_a_day(d / "apiserver.crt", address):
        return {n: (d / n).read_bytes() for n in names} | {"admin.token": _admin_token(d)}
    certs = pki.generate(address=address)
    files = {
        "ca.crt": certs.ca.cert,
        "ca.key": certs.ca.key,
        "apiserver.crt": certs.serving.cert,
        "apiserver.key": certs.serving.key,
        "admin.crt": certs.admin.cert,
        "admin.key": certs.admin.key,
        "kubelet-client.crt": certs.kubelet_client.cert,
        "kubelet-client.key": certs.kubelet_client.key,
        "sa.key": certs.service_account_key,
        "sa.pub": certs.service_account_pub,
    }
    d.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
        (d / name).chmod(0o600)
    return files | {"admin.token": _admin_token(d)}


def _admin_token(d: Path) -> bytes:
    """The admin's bearer token, made once per directory, and the API server's token file
    naming it (in system:masters, as the admin certificate's subject is)."""
    token = d / "admin.token"
    if not token.exists():
        token.write_text(secrets.token_urlsafe(32))
        token.chmod(0o600)
    users = d / "tokens.csv"
    users.write_text(f'{token.read_text()},tether-admin,tether-admin,"system:masters"\n')
    users.chmod(0o600)
    return token.read_bytes()


def _valid_for_a_day(cert: Path, address: str) -> bool:
    """Good for at least a day more, and names `address`."""
    try:
        loaded = x509.load_pem_x509_certificate(cert.read_bytes())
        names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    addresses = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    fresh = loaded.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    return fresh and address in addresses


def _exists(read: Callable[..., Any], *args: str) -> bool:
    try:
        read(*args)
        return True
    except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError):
        return False


def _established(crd: Any) -> bool:
    conditions = (crd.status or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
