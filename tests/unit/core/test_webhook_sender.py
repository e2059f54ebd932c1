"""The platform calls the addresses tenants name only when they are public, unless it allows
private ones: checked on the address a name resolves to, against a real local server."""

from __future__ import annotations

import pytest
from aiohttp import web

from tether import webhook_sender
from tether.settings import Settings


@pytest.fixture
async def endpoint():
    seen = []

    async def hook(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield port, seen
    await runner.cleanup()


async def send(uri: str, allow_private: bool, **more) -> webhook_sender.Attempt:
    settings = Settings(webhook_allow_private=allow_private, webhook_timeout_seconds=5, **more)
    async with webhook_sender.Sender(settings) as sender:
        return await sender.send(uri, "msg_1", {"type": "webhook.ping"}, ["whsec_" + "A" * 44])


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_a_private_address_is_refused_by_name_or_number(endpoint, host):
    port, seen = endpoint
    attempt = await send(f"http://{host}:{port}/hook", allow_private=False)
    assert attempt.status is None and "private address" in attempt.error
    assert seen == []


async def test_a_platform_that_allows_private_addresses_calls_them(endpoint):
    port, seen = endpoint
    attempt = await send(f"http://localhost:{port}/hook", allow_private=True)
    assert attempt.delivered and attempt.status == 204
    assert seen[0]["webhook-id"] == "msg_1" and seen[0]["webhook-signature"].startswith("v1,")


async def test_an_endpoint_that_is_not_there_is_an_attempt_that_failed():
    attempt = await send("http://127.0.0.1:9/hook", allow_private=True)
    assert attempt.status is None and attempt.error
    assert not attempt.delivered


async def test_the_hosts_loopback_is_called_by_its_alias_from_inside_pods(endpoint):
    port, seen = endpoint
    # the alias here is this machine's loopback by another spelling
    attempt = await send(f"http://127.0.0.1:{port}/hook", True, webhook_loopback_host="localhost")
    assert attempt.delivered and seen[0]["Host"] == f"localhost:{port}"
