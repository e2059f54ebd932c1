"""`python -m tether.egress`: the egress proxy, mitmproxy with Tether's gate as its policy.

mitmproxy is the well-kept proxy made for this (HTTP/1, HTTP/2, CONNECT, TLS interception
with certificates made on the fly, all scriptable from Python). It keeps its own pins
(cryptography, h11, ...), which clash with the platform's, so the proxy runs from an
environment of its own (`make venv` makes .venv-egress; the image's `egress` target).

Sandboxes' HTTPS goes through as a tunnel: the CONNECT target is checked and pinned, the TLS
inside is theirs, unless the proxy puts a credential into it (gate.py).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import socket
import ssl
import tempfile

import aiohttp
import aiohttp.abc
from aiohttp import web
from mitmproxy import options
from mitmproxy.tools.dump import DumpMaster
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tether.egress import keys
from tether.egress.clients import Clients
from tether.egress.credentials import Vault
from tether.egress.decisions import address_refusal
from tether.egress.gate import Gate, Reporter
from tether.kube import Kube
from tether.settings import Settings

log = logging.getLogger("tether.egress")


def admin_app(clients: Clients, root: bytes, key: str) -> web.Application:
    """The proxy's own port (no sandbox reaches it): /healthz (ready once the sandbox pods are
    listed), /metrics, and /seal, where the gateway has credentials sealed."""

    async def healthz(_: web.Request) -> web.Response:
        if not clients.synced.is_set():
            return web.json_response({"ok": False, "waiting_for": "the pod list"}, status=503)
        return web.json_response({"ok": True})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def seal(request: web.Request) -> web.Response:
        """Seal `values` for one tenant's credential, merged into the ones of `sealed`."""
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not key or not hmac.compare_digest(given, key.encode()):
            return web.json_response({"error": "the egress key is required"}, status=401)
        body = await request.json()
        namespace, credential = body["namespace"], body["credential"]
        values: dict[str, str] = {}
        if body.get("sealed"):
            try:
                values = keys.unseal(root, namespace, credential, body["sealed"])
            except keys.Unsealable as error:
                return web.json_response({"error": str(error)}, status=400)
        values.update(body["values"])
        return web.json_response({"sealed": keys.seal(root, namespace, credential, values)})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/seal", seal)
    return app


class NamedResolver(aiohttp.abc.AbstractResolver):
    """Where the proxy itself goes (an OAuth2 token URL): the platform's named destinations,
    and public addresses; never another private one."""

    def __init__(self, named: dict[str, str]) -> None:
        self.named, self.system = named, aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        if address := self.named.get(host):
            return [
                {"hostname": host, "host": address, "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}
            ]  # fmt: skip
        found = await self.system.resolve(host, port, family)
        for entry in found:
            if why := address_refusal(host, entry["host"], self.named):
                raise OSError(why)
        return found

    async def close(self) -> None:
        await self.system.close()


async def serve(settings: Settings, confdir: str) -> None:
    root = keys.root_key(settings.egress_private_key)
    kube = await Kube.connect(settings, "tether-egress")
    clients = Clients(kube)
    watching = asyncio.create_task(clients.watch())
    runner = web.AppRunner(admin_app(clients, root, settings.egress_key), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.egress_host, settings.egress_metrics_port).start()
    trusted = ssl.create_default_context(cafile=settings.egress_trusted_ca or None)
    connector = aiohttp.TCPConnector(resolver=NamedResolver(settings.egress_hosts), ssl=trusted)
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10), connector=connector
    ) as session:
        master = DumpMaster(
            options.Options(listen_host=settings.egress_host, listen_port=settings.egress_port),
            with_termlog=False,
            with_dumper=False,
        )
        master.options.update(
            confdir=confdir,
            stream_large_bodies="1m",  # plain HTTP bodies flow through, not held whole
            ssl_verify_upstream_trusted_ca=settings.egress_trusted_ca or None,
        )
        reporter = Reporter(session, settings.gateway_url, settings.egress_key)
        vault = Vault(kube, root, session)
        master.addons.add(Gate(clients, reporter, settings.egress_hosts, vault, root))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, master.shutdown)
        try:
            await master.run()
        finally:
            watching.cancel()
            await runner.cleanup()
            await kube.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="tether-egress-") as confdir:
        asyncio.run(serve(Settings(), confdir))


if __name__ == "__main__":
    main()
