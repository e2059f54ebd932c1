"""The mitmproxy addon that is the egress proxy's policy: every CONNECT and every HTTP request
(plain, or inside a tunnel the proxy opens) is checked against its run's allowlist, pinned to
the address that was checked (no second lookup for a rebinding DNS answer to change), given
the entry's credential, audited, counted, and when refused, answered 403 and reported into
the run's timeline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import OrderedDict
from typing import Any

import aiohttp
from mitmproxy import connection, http, tcp, tls
from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import layer, layers, server_hooks
from mitmproxy.proxy.layers.tls import parse_client_hello
from OpenSSL import crypto
from prometheus_client import Counter

from tether.api.common import AllowlistEntry
from tether.api.internal import EGRESS_BLOCKED_HEADER, EGRESS_CA_URL, EgressRefusal
from tether.egress import keys
from tether.egress.clients import Client, Clients
from tether.egress.credentials import CredentialError, Vault
from tether.egress.decisions import address_refusal, refusal

log = logging.getLogger("tether.egress")
audit = logging.getLogger("tether.egress.audit")

REQUESTS = Counter(
    "tether_egress_requests",
    "Connections (CONNECT) and plain HTTP requests from sandboxes, by tenant and decision.",
    ["namespace", "kind", "decision"],
)
RESPONSE_BYTES = Counter(
    "tether_egress_response_bytes",
    "Bytes relayed to sandboxes (HTTP responses, and what came back through tunnels), by tenant.",
    ["namespace"],
)
CA_HOST = EGRESS_CA_URL.split("/")[2]
REDACTED = "[credential]"
REPORTS_PER_RUN = 20
"""A run that keeps knocking gets this many timeline entries, one per host, port and method."""


class Reporter:
    """Sends refusals to the gateway, which writes them into the run's timeline; at most one
    per (run, host, port, method), and REPORTS_PER_RUN per run."""

    def __init__(self, session: aiohttp.ClientSession, gateway_url: str, key: str) -> None:
        self.session, self.url, self.key = session, f"{gateway_url}/internal/egress/refusals", key
        self._sent: OrderedDict[str, set[tuple]] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()

    def report(self, refusal: EgressRefusal) -> None:
        sent = self._sent.setdefault(refusal.uid, set())
        self._sent.move_to_end(refusal.uid)
        while len(self._sent) > 10_000:
            self._sent.popitem(last=False)
        what = (refusal.host, refusal.port, refusal.method)
        if what in sent or len(sent) >= REPORTS_PER_RUN:
            return
        sent.add(what)
        task = asyncio.create_task(self._send(refusal))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, refusal: EgressRefusal) -> None:
        try:
            async with self.session.post(
                self.url,
                json=refusal.model_dump(),
                headers={"Authorization": f"Bearer {self.key}"},
            ) as response:
                if response.status >= 400 and response.status != 409:  # 409: the run has ended
                    log.warning("the gateway refused a report: %s", await response.text())
        except aiohttp.ClientError as error:
            log.warning("could not report a refusal to the gateway: %s", error)


class Gate:
    """The policy. A tunnel (CONNECT) is passed through as the sandbox's own TLS, its bytes
    counted, unless its allowlist entry carries a credential or its TLS names another host:
    then the proxy ends the TLS itself, with a certificate from the run's authority (the only
    one the run's sandbox trusts), checks each request inside and puts the credential in."""

    def __init__(
        self,
        clients: Clients,
        reporter: Reporter,
        named: dict[str, str],
        vault: Vault,
        root: bytes,
    ) -> None:
        self.clients, self.reporter, self.named = clients, reporter, named
        self.vault, self.root = vault, root
        self._pinned: dict[str, dict[tuple[str, int], str]] = {}
        """Per client connection: (host, port) -> the address that was checked."""
        self._tunnels: dict[str, tuple[Client, str]] = {}
        """Client connections that are tunnels: their run, and the CONNECT host."""
        self._intercepted: dict[str, tuple[Client, str]] = {}
        """The tunnels the proxy opens."""

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        host = flow.request.host.lower()
        allowed = await self._decide(flow, "CONNECT", host, [host])
        if allowed is None:
            return
        self._tunnels[flow.client_conn.id] = (allowed[0], host)
        if allowed[1] is not None and allowed[1].credential:
            self._intercepted[flow.client_conn.id] = (allowed[0], host)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """What a tunnel carries. TLS whose SNI names another host than the CONNECT target is
        opened (its requests are then checked by that name too); TLS to the target itself
        stays the sandbox's own, end to end, relayed as TCP so that its bytes are counted."""
        conn = nextlayer.context.client
        tunnel = self._tunnels.get(conn.id)
        if tunnel is None or conn.id in self._intercepted or conn.tls_established:
            return
        data = nextlayer.data_client()
        if not starts_like_tls_record(data):
            return  # plain HTTP is checked per request; anything else is counted as TCP
        try:
            hello = parse_client_hello(data)
        except ValueError:
            return  # not TLS after all: mitmproxy's own TLS layer refuses it
        if hello is None:
            nextlayer.layer = None  # the rest of the ClientHello is still on its way
        elif hello.sni and hello.sni.lower() != tunnel[1]:
            self._intercepted[conn.id] = tunnel
        else:
            nextlayer.layer = layers.TCPLayer(nextlayer.context)

    def tls_start_client(self, data: tls.TlsData) -> None:
        """After mitmproxy's own TLS set-up: the run's certificate for the host instead."""
        intercepted = self._intercepted.get(data.context.client.id)
        if intercepted is None or data.ssl_conn is None:
            return
        client, host = intercepted
        cert, key = keys.leaf(self.root, client.uid, data.context.client.sni or host)
        data.ssl_conn.use_certificate(crypto.X509.from_cryptography(cert))
        data.ssl_conn.use_privatekey(crypto.PKey.from_cryptography_key(key))

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.request.method == "CONNECT":
            return
        tunnel = self._intercepted.get(flow.client_conn.id)
        if flow.request.host == CA_HOST and tunnel is None:
            await self._authority(flow)
            return
        # In an opened tunnel, the host is the CONNECT target (mitmproxy reads the address
        # it was pinned to). The Host header and the TLS SNI must pass too, or a request could
        # name one host and be for another.
        host = tunnel[1] if tunnel else flow.request.host.lower()
        hosts = [host, flow.request.host_header, flow.client_conn.sni]
        allowed = await self._decide(flow, flow.request.method, host, [h for h in hosts if h])
        if allowed is None:
            return
        client, entry = allowed
        if entry is None or not entry.credential or not (tunnel or host in self.named):
            return  # plain HTTP carries a credential only to the platform's named destinations
        if {_bare(h) for h in hosts if h} != {host}:
            return  # a credential goes only where the target, Host and SNI all agree
        try:
            flow.metadata["tether_secrets"] = await self.vault.inject(
                flow, client.namespace, entry, host
            )
        except CredentialError as error:
            flow.response = _refused(host, str(error), status=502)
        flow.metadata["tether_credential"] = entry.credential

    async def _authority(self, flow: http.HTTPFlow) -> None:
        """The run's certificate authority, for its sandbox to trust (asked at its start)."""
        client = await self.clients.find(flow.client_conn.peername[0])
        if client is None:
            flow.response = _refused(CA_HOST, "this address is not a sandbox of this platform")
            return
        pem = keys.authority_pem(self.root, client.uid)
        flow.response = http.Response.make(200, pem, {"Content-Type": "application/x-pem-file"})

    async def _decide(
        self, flow: http.HTTPFlow, method: str, host: str, hosts: list[str]
    ) -> tuple[Client, AllowlistEntry | None] | None:
        """The run and its allowlist entry when the request may go; else None, answered 403."""
        port = flow.request.port
        flow.metadata["tether_host"] = host
        client = await self.clients.find(flow.client_conn.peername[0])
        names = [_bare(h) for h in hosts]
        # the name that was refused is the one to report (in an opened tunnel: maybe the SNI)
        why, named = next(((r, h) for h in names if (r := refusal(client, h))), (None, host))
        # a host this connection reached already keeps its checked address: no second lookup
        address = self._pinned.get(flow.client_conn.id, {}).get((host, port))
        if why is None and address is None:
            address, why = await self._resolve(host, port)
        kind = "connect" if method == "CONNECT" else "http"
        namespace = client.namespace if client else ""
        if why is not None or client is None:
            why = why or "this address is not a sandbox of this platform"
            flow.response = _refused(named, why)
            REQUESTS.labels(namespace, kind, "refused").inc()
            _audit(client, named, port, method, 403, reason=why)
            if client is not None:
                self.reporter.report(
                    EgressRefusal(
                        namespace=client.namespace,
                        interaction=client.interaction,
                        uid=client.uid,
                        host=named,
                        port=port,
                        method=method,
                        reason=why,
                    )
                )
            return None
        REQUESTS.labels(namespace, kind, "allowed").inc()
        self._pinned.setdefault(flow.client_conn.id, {})[(host, port)] = address
        flow.metadata["tether_client"] = client
        return client, client.allowlist.entry_for(host)

    async def _resolve(self, host: str, port: int) -> tuple[str | None, str | None]:
        """The address to connect to, or why there is none."""
        address = self.named.get(host)
        if not address:
            try:
                found = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
            except OSError as error:
                return None, f"{host} does not resolve ({error.strerror or error})"
            address = found[0][4][0]
        return address, address_refusal(host, address, self.named)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Connect to the address that was checked, and only to one that was."""
        host, port, *_ = data.server.address
        address = self._pinned.get(data.client.id, {}).get((host.lower(), port))
        if address is None:
            data.server.error = f"egress: {host}:{port} was not checked for this connection"
            return
        data.server.address = (address, port)

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        client: Client | None = flow.metadata.get("tether_client")
        if client is not None and flow.response is not None:
            _audit(
                client, flow.request.host, flow.request.port, "CONNECT", flow.response.status_code
            )

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        flow.metadata["tether_tunnel"] = self._tunnels.get(flow.client_conn.id)
        flow.metadata["tether_bytes"] = [0, 0]

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        """Counted, then dropped: a tunnel holds no history of what went through it."""
        message = flow.messages.pop()
        flow.metadata["tether_bytes"][0 if message.from_client else 1] += len(message.content)

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self._tunnel_ended(flow, 200)

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self._tunnel_ended(flow, 502, error=str(flow.error))

    def _tunnel_ended(self, flow: tcp.TCPFlow, status: int, **more: Any) -> None:
        """One line for a tunnel the proxy did not open, with what went each way."""
        tunnel: tuple[Client, str] | None = flow.metadata.get("tether_tunnel")
        if tunnel is None:
            return
        client, host = tunnel
        sent, received = flow.metadata["tether_bytes"]
        RESPONSE_BYTES.labels(client.namespace).inc(received)
        port = flow.server_conn.address[1] if flow.server_conn.address else 0
        _audit(client, host, port, "CONNECT", status, bytes_out=sent, bytes_in=received, **more)

    def client_disconnected(self, client: connection.Client) -> None:
        self._pinned.pop(client.id, None)
        self._tunnels.pop(client.id, None)
        self._intercepted.pop(client.id, None)

    def response(self, flow: http.HTTPFlow) -> None:
        client: Client | None = flow.metadata.get("tether_client")
        if client is None or flow.response is None:
            return
        for secret in flow.metadata.get("tether_secrets") or []:
            _scrub(flow.response, secret)
        size = len(flow.response.raw_content or b"") or int(
            flow.response.headers.get("content-length", "0") or 0
        )
        RESPONSE_BYTES.labels(client.namespace).inc(size)
        _audit(
            client,
            flow.metadata.get("tether_host", flow.request.host),
            flow.request.port,
            flow.request.method,
            flow.response.status_code,
            bytes_out=len(flow.request.raw_content or b""),
            bytes_in=size,
            credential=flow.metadata.get("tether_credential"),
        )


def _bare(host: str) -> str:
    """A host name without its port (an IPv6 address keeps its colons)."""
    return host.lower().rsplit(":", 1)[0] if host.count(":") == 1 else host.lower()


def _scrub(response: http.Response, secret: str) -> None:
    """A server that echoes a credential back echoes it to no run: it never reaches the
    sandbox, in a header or in a body the proxy holds whole."""
    for name, value in list(response.headers.items(multi=True)):
        if secret in value:
            response.headers[name] = value.replace(secret, REDACTED)
    if response.content is not None and secret.encode() in response.content:
        response.content = response.content.replace(secret.encode(), REDACTED.encode())


def _refused(host: str, why: str, status: int = 403) -> http.Response:
    body = {"error": {"code": status, "status": "network_blocked", "message": why}}
    response = http.Response.make(
        status,
        json.dumps(body).encode(),
        {"Content-Type": "application/json", EGRESS_BLOCKED_HEADER: host},
    )
    response.reason = f"Blocked by the egress proxy: {why}"
    return response


def _audit(client: Client | None, host: str, port: int, method: str, status: int, **more: Any):
    """One line per egress request: what a platform team reads to see what agents reached."""
    record = {
        "time": round(time.time(), 3),
        "run": client.run if client else None,
        "host": host,
        "port": port,
        "method": method,
        "status": status,
        "credential": None,
        **more,
    }
    audit.info(json.dumps(record))
