"""The Helm chart: lint, render (default and hardened), every rendered object accepted by the
real API server (server-side dry run: schema and admission), and a real `helm install`."""

from __future__ import annotations

import base64
import subprocess

import kubernetes
import pytest
import yaml
from kubernetes.dynamic import DynamicClient

from tether.dev.control_plane import helm_binary

CHART = "charts/tether"
HARDENED = "charts/tether/ci/hardened-values.yaml"


def helm(control_plane, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(helm_binary()), f"--kubeconfig={control_plane.kubeconfig}", *args],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("values", [[], ["-f", HARDENED]], ids=["default", "hardened"])
def test_the_chart_lints(control_plane, values):
    result = helm(control_plane, "lint", CHART, *values)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", [[], ["-f", HARDENED]], ids=["default", "hardened"])
def test_every_rendered_object_passes_the_api_servers_validation(control_plane, values):
    rendered = helm(control_plane, "template", "ci", CHART, "-n", "tether-dry", *values)
    assert rendered.returncode == 0, rendered.stderr
    objects = [o for o in yaml.safe_load_all(rendered.stdout) if o]
    dynamic = DynamicClient(control_plane.api_client())
    namespaces = dynamic.resources.get(api_version="v1", kind="Namespace")
    for name in {
        "tether-dry",
        *(o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"),
    }:
        namespaces.server_side_apply(
            body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            field_manager="test",
        )
    kinds = set()
    for obj in objects:
        api = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        api.server_side_apply(
            body=obj,
            namespace=obj["metadata"].get("namespace"),
            field_manager="helm-dry-run",
            dry_run="All",
        )
        kinds.add(obj["kind"])
    assert {"Deployment", "Service", "ClusterRole", "Secret", "Namespace", "NetworkPolicy"} <= kinds
    if not values:
        assert {"Agent", "Model"} <= kinds


def test_helm_install_creates_tether_and_keeps_its_keys_across_upgrades(control_plane):
    args = ["-n", "tether-chart", "--create-namespace", "--set", "tenants[0]=chart-tenant"]
    installed = helm(control_plane, "install", "ci", CHART, *args)
    assert installed.returncode == 0, installed.stderr
    core = kubernetes.client.CoreV1Api(control_plane.api_client())
    key = core.read_namespaced_secret("api-key-chart-tenant", "tether-chart").data["key"]
    assert base64.b64decode(key).decode().startswith("tth-")
    assert base64.b64decode(key).decode() not in installed.stdout  # never printed
    assert "port-forward svc/ci-gateway" in installed.stdout  # NOTES say how to call it
    apps = kubernetes.client.AppsV1Api(control_plane.api_client())
    deployments = {d.metadata.name for d in apps.list_namespaced_deployment("tether-chart").items}
    assert deployments == {"ci-gateway", "ci-operator", "ci-redis", "ci-egress"}
    custom = kubernetes.client.CustomObjectsApi(control_plane.api_client())
    eva = custom.get_namespaced_custom_object(
        "tether.dev", "v1alpha1", "tether-chart", "agents", "eva"
    )
    assert "antigravity-preview-05-2026" in eva["spec"]["aliases"]
    tenant = core.read_namespace("chart-tenant")
    assert tenant.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"

    upgraded = helm(
        control_plane, "upgrade", "ci", CHART, *args[:2], "--set", "tenants[0]=chart-tenant"
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert core.read_namespaced_secret("api-key-chart-tenant", "tether-chart").data["key"] == key
    egress_key = core.read_namespaced_secret("ci-egress-key", "tether-chart").data["key"]
    assert len(base64.b64decode(egress_key)) == 64
    uninstalled = helm(control_plane, "uninstall", "ci", "-n", "tether-chart")
    assert uninstalled.returncode == 0, uninstalled.stderr
