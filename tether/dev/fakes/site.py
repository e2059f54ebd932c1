"""A web site on this machine's loopback, over HTTP or HTTPS (a certificate naming the hosts it
is reached by): it answers every GET with what it was asked (an API that wants a bearer token
answers 401 without it), and records each request, so a test sees what arrived, under which
name, with which credential."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from dataclasses import dataclass, field

from tether.dev import pki


@dataclass
class Site:
    hosts: tuple[str, ...] = ("localhost",)
    tls: bool = False
    ca: pki.KeyPair | None = None
    """Who signs its certificate (with tls): an authority of its own when not given."""
    token: str | None = None
    """When set, a request without `Authorization: Bearer <token>` gets 401."""
    oauth: dict[str, str] | None = None
    """When set (client_id, client_secret, refresh_token), POST /token is an OAuth2 token
    endpoint: that refresh-token grant gets `token` as its access token."""
    port: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)
    """Each request as received: Host header, path, Authorization header, all headers."""

    def url(self, host: str, path: str = "/") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def __enter__(self) -> Site:
        requests, token, oauth = self.requests, self.token, self.oauth

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen = {
                    "host": self.headers.get("Host", ""),
                    "path": self.path,
                    "authorization": self.headers.get("Authorization", ""),
                }
                requests.append({**seen, "headers": dict(self.headers)})
                body = json.dumps(seen).encode()
                allowed = token is None or seen["authorization"] == f"Bearer {token}"
                self.send_response(200 if allowed else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                form = dict(
                    urllib.parse.parse_qsl(
                        self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                    )
                )
                requests.append({"host": self.headers.get("Host", ""), "path": self.path, **form})
                expected = {"grant_type": "refresh_token", **(oauth or {})}
                granted = (
                    oauth is not None
                    and self.path == "/token"
                    and all(form.get(k) == v for k, v in expected.items())
                )
                answer = (
                    {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
                    if granted
                    else {"error": "invalid_grant"}
                )
                body = json.dumps(answer).encode()
                self.send_response(200 if granted else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls:
            ca = self.ca or pki.authority("tether-test-site-ca")
            context = pki.server_context(ca, *self.hosts)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.ca_pem = ca.cert.decode()
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
