from __future__ import annotations

import functools
import itertools
import json

import kubernetes
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.integration.test_agent_runs import install_model
from tether.dev.fakes.chat_completions import ChatCompletionsServer, Reply
from tether.sandbox.workspace import RUN_HEADER, create_app

_namespaces = itertools.count()


@pytest.fixture(scope="session")
def api_client(control_plane):
    client = control_plane.api_client()
    yield client
    client.close()


@pytest.fixture
def namespace(api_client, request):
    """A fresh namespace per test, so tests never see each other's objects."""
    core = kubernetes.client.CoreV1Api(api_client)
    name = f"t{next(_namespaces)}-{request.node.name[:40].replace('_', '-').lower()}".rstrip("-")
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture
def kube_get(api_client):
    """GET a raw API path as JSON (for discovery and server-side table output)."""

    def get(path: str, accept: str = "application/json") -> dict:
        method, url, headers, body, _ = api_client.param_serialize(
            "GET", path, header_params={"Accept": accept}, auth_settings=["BearerToken"]
        )
        response = api_client.call_api(method, url, header_params=headers, body=body)
        response.read()
        return json.loads(response.data)

    return get


@pytest.fixture
def upstream(stack):
    """A local Chat Completions server behind the Model `local-llm` (tenant-a)."""
    with ChatCompletionsServer(replies=[Reply("the answer is forty two")]) as server:
        stack.cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "local-llm-key", "namespace": "tenant-a"},
                "stringData": {"token": "sk-local-123"},
            }
        )
        stack.cluster.apply(
            {
                "apiVersion": "tether.dev/v1alpha1",
                "kind": "Model",
                "metadata": {"name": "local-llm", "namespace": "tenant-a"},
                "spec": {
                    "provider": "openai-compatible",
                    "endpoint": server.url,
                    "upstreamModel": "qwen-7b",
                    "aliases": ["Qwen/Qwen-7B"],
                    "credentials": {"secretRef": {"name": "local-llm-key", "key": "token"}},
                },
            }
        )
        yield server


@pytest.fixture(scope="module")
def script(stack):
    """A scripted Model in tenant-a (`install_model`): script(name, responses) -> name."""
    return functools.partial(install_model, stack)


@pytest.fixture
async def tools(tmp_path):
    """The workspace tool server over real HTTP, on tmp_path: tools(name, **args) -> answer.
    Closing it closes the run's browser."""
    client = TestClient(TestServer(create_app(tmp_path, run="run-t"), host="127.0.0.1"))
    await client.start_server()

    async def call(name: str, **args):
        response = await client.post(f"/tools/{name}", json=args, headers={RUN_HEADER: "run-t"})
        assert response.status == 200
        return await response.json()

    yield call
    await client.close()
