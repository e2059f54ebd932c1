from __future__ import annotations

import os

import pytest
from google import genai
from google.genai import types

from tether.dev.stack import DevStack, load_crds
from tether.dev.worker.cluster import LocalCluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start a cluster of their own run first, before the session's cluster holds
    the host's one node (its bridge, cgroups and chains)."""
    items.sort(key=lambda item: item.get_closest_marker("own_cluster") is None)


@pytest.fixture(scope="session")
def cluster():
    """A real etcd + kube-apiserver + kube-controller-manager with the committed CRDs, and a real
    node (containerd, kubelet, NetworkPolicies, gVisor) on its own bridge. Needs root."""
    with LocalCluster(crds=load_crds()) as local:
        yield local


@pytest.fixture(scope="session")
def control_plane(cluster):
    return cluster.control_plane


@pytest.fixture(scope="session")
def stack(cluster, tmp_path_factory):
    """Redis, the operator and the gateway as real processes against the real cluster;
    sandboxes are pods on its node."""
    stack = DevStack(
        tmp_path_factory.mktemp("stack"),
        local=cluster,
        environ={**os.environ, "TETHER_KEEPALIVE_SECONDS": "0.5"},
    ).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def api_key(stack) -> str:
    return stack.add_tenant("tenant-a")


def sdk_client(base_url: str, api_key: str) -> genai.Client:
    """The official SDK, pointed at the gateway and changed in nothing else (retries off, so a
    test sees the first answer)."""
    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=base_url, retry_options=types.HttpRetryOptions(attempts=1)
        ),
    )


@pytest.fixture(scope="session")
def client(stack, api_key) -> genai.Client:
    return sdk_client(stack.url, api_key)
