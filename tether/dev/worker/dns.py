"""Cluster DNS: CoreDNS as pods behind the `kube-dns` Service, as on any cluster. Pure builders."""

from __future__ import annotations

from typing import Any

from tether.dev.versions import COREDNS_VERSION

from .configs import DNS_SERVICE_IP, HOST_ALIAS, service_account_with_role

COREDNS_IMAGE = f"tether.local/coredns:{COREDNS_VERSION}"
LABELS = {"k8s-app": "kube-dns"}


def corefile(host_alias_ip: str) -> str:
    """Cluster names and HOST_ALIAS only: there is no `forward`, so a name outside the cluster is
    refused, and nothing in a pod learns an outside address from here."""
    return f""".:53 {{
    errors
    health :8080
    ready :8181
    hosts {{
        {host_alias_ip} {HOST_ALIAS}
        fallthrough
    }}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
}}
"""


def manifests(host_alias_ip: str) -> list[dict[str, Any]]:
    meta = {"name": "coredns", "namespace": "kube-system"}
    return [
        *service_account_with_role(
            meta,
            "system:coredns",
            [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        ),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "data": {"Corefile": corefile(host_alias_ip)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**meta, "labels": LABELS},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65534,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "coredns",
                                "image": COREDNS_IMAGE,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                ],
                                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}},
                                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True,
                                },
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": LABELS},
            "spec": {
                "clusterIP": DNS_SERVICE_IP,
                "selector": LABELS,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            },
        },
    ]
