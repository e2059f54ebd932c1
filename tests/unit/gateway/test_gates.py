"""Each API has its own gate and its own port: API keys open the public API only, run tokens the
internal one only, and neither port serves the other's API.

The gateway is served with the connections it is given (`create_app(state=...)`); these requests
are all answered at the gates, before anything would reach the cluster or Redis.
"""

from __future__ import annotations

import base64

import pytest
from aiohttp.test_utils import TestClient, TestServer
from kubernetes_asyncio.client import V1ObjectMeta, V1Secret

from tether import run_tokens
from tether.gateway.app import create_app, create_internal_app
from tether.gateway.auth import ApiKeys, _entry
from tether.gateway.state import State
from tether.settings import Settings

API_KEY = "tenant-a-key"
RUN_KEY = "r" * 32


def _keys() -> ApiKeys:
    keys = ApiKeys(kube=None, namespace="tether-system")
    secret = V1Secret(
        metadata=V1ObjectMeta(name="key-a"),
        data={
            "key": base64.b64encode(API_KEY.encode()).decode(),
            "namespace": base64.b64encode(b"tenant-a").decode(),
        },
    )
    keys._keys = dict([_entry(secret)])
    return keys


@pytest.fixture
async def gateway():
    async def serve(run_token_key: str = RUN_KEY, internal: bool = False) -> TestClient:
        """A client of the public port, or of the internal one."""
        settings = Settings(run_token_key=run_token_key)
        none = dict.fromkeys(
            ("kube", "events", "run_store", "outputs", "catalog", "providers", "slots")
        )
        state = State(settings=settings, keys=_keys(), **none)  # no connections at all
        app = create_app(state=state)
        client = TestClient(
            TestServer(create_internal_app(app) if internal else app, host="127.0.0.1")
        )
        await client.start_server()
        clients.append(client)
        return client

    clients: list[TestClient] = []
    yield serve
    for client in clients:
        await client.close()


def _run_token() -> str:
    return run_tokens.issue(RUN_KEY.encode(), "tenant-a", "ix-1", "uid-1", ttl_seconds=60)


async def _error(response) -> tuple[int, str]:
    return response.status, (await response.json())["error"]["message"]


async def test_the_public_api_refuses_a_run_token(gateway):
    client = await gateway()
    for prefix in ("/v1", "/v1beta"):
        response = await client.get(
            f"{prefix}/interactions", headers={"Authorization": f"Bearer {_run_token()}"}
        )
        assert await _error(response) == (401, "API key not valid")


async def test_each_port_serves_its_own_api_only(gateway):
    public, internal = await gateway(), await gateway(internal=True)
    token = {"Authorization": f"Bearer {_run_token()}"}
    assert (await public.post("/internal/v1/finish", headers=token, json={})).status == 404
    api_key = {"x-goog-api-key": API_KEY}
    assert (await internal.get("/v1/interactions", headers=api_key)).status == 404
    assert (await internal.get("/openapi.json")).status == 404
    assert (await internal.get("/healthz")).status == 200


async def test_the_internal_api_refuses_an_api_key(gateway):
    client = await gateway(internal=True)
    as_bearer = await client.post(
        "/internal/v1/finish", headers={"Authorization": f"Bearer {API_KEY}"}, json={}
    )
    status, message = await _error(as_bearer)
    assert status == 401 and message.startswith("run token not valid")
    as_google_header = await client.post(
        "/internal/v1/finish", headers={"x-goog-api-key": API_KEY}, json={}
    )
    assert await _error(as_google_header) == (
        401,
        "a run token is required (Authorization: Bearer …)",
    )


async def test_without_a_signing_key_the_internal_api_is_unavailable(gateway):
    client = await gateway(run_token_key="", internal=True)
    response = await client.put(
        "/internal/v1/files", headers={"Authorization": f"Bearer {_run_token()}"}, data=b""
    )
    assert await _error(response) == (
        503,
        "agent runs are not configured: TETHER_RUN_TOKEN_KEY is unset",
    )


async def test_a_missing_or_unknown_key_is_refused_by_name(gateway):
    client = await gateway()
    missing = await client.get("/v1/interactions")
    assert await _error(missing) == (
        401,
        "missing API key: send it in the x-goog-api-key header",
    )
    unknown = await client.get("/v1/interactions", headers={"x-goog-api-key": "guess"})
    assert await _error(unknown) == (401, "API key not valid")


async def test_an_id_is_checked_at_the_gate_before_any_handler(gateway):
    client = await gateway()
    response = await client.get("/v1/interactions/Not_An_Id", headers={"x-goog-api-key": API_KEY})
    status, message = await _error(response)
    assert status == 400 and "Not_An_Id" in message


async def test_health_metrics_and_the_document_need_no_credentials(gateway):
    client = await gateway()
    for path in ("/healthz", "/metrics", "/openapi.json"):
        assert (await client.get(path)).status == 200, path
