from __future__ import annotations

import os

import pytest
from google import genai
from google.genai import types

from tether.dev.control_plane import ControlPlane
from tether.dev.stack import DevStack, load_crds


@pytest.fixture(scope="session")
def control_plane():
    """A real etcd + kube-apiserver + kube-controller-manager, with the committed CRDs installed."""
    with ControlPlane(crds=load_crds()) as cp:
        yield cp


@pytest.fixture(scope="session")
def stack(control_plane, tmp_path_factory):
    """Redis, the operator and the gateway as real processes against the real control plane."""
    stack = DevStack(
        tmp_path_factory.mktemp("stack"),
        control_plane=control_plane,
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
