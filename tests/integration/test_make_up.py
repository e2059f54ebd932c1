"""`make up` / `make down`: the whole stack in the background, and nothing left after."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading

import pytest

from tests.conftest import sdk_client
from tests.integration.test_control_plane import _alive
from tether.dev.control_plane import free_port


def devstack(state, *args: str, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tether.dev.stack", *args, "--state", str(state)],
        env={**os.environ, "TETHER_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_up_prints_how_to_call_it_and_down_leaves_nothing(tmp_path):
    port = free_port()
    up = devstack(tmp_path, "up", port=port)
    assert up.returncode == 0, up.stdout + up.stderr
    env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines())
    assert set(env) == {"TETHER_URL", "TETHER_API_KEY", "TETHER_NAMESPACE", "KUBECONFIG"}
    assert env["TETHER_URL"] == f"http://127.0.0.1:{port}"
    assert f"TETHER_API_KEY={env['TETHER_API_KEY']}" in up.stdout
    assert "genai.Client" in up.stdout

    client = sdk_client(env["TETHER_URL"], env["TETHER_API_KEY"])
    assert client.interactions.create(model="echo", input="hi from make up").output_text == (
        "hi from make up"
    )

    again = devstack(tmp_path, "up", port=port)
    assert "already running" in again.stdout
    supervisor = int((tmp_path / "supervisor.pid").read_text())
    children = subprocess.run(
        ["pgrep", "-P", str(supervisor)], capture_output=True, text=True
    ).stdout.split()
    # etcd, apiserver, controller manager, redis, dev node, operator, gateway
    assert len(children) == 7

    down = devstack(tmp_path, "down", port=port)
    assert "Tether stopped." in down.stdout
    assert not _alive(supervisor)
    assert [pid for pid in map(int, children) if _alive(pid)] == []


class AnotherGateway(http.server.BaseHTTPRequestHandler):
    """Something else on the port that answers /healthz, as another Tether would."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("other", ["listener", "gateway"])
def test_up_on_a_taken_port_says_so_in_one_line_and_starts_nothing(tmp_path, other):
    if other == "gateway":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AnotherGateway)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        close = lambda: (server.shutdown(), server.server_close())  # noqa: E731
    else:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port, close = taken.getsockname()[1], taken.close
    try:
        up = devstack(tmp_path, "up", port=port)
    finally:
        close()
    assert up.returncode == 1
    assert up.stdout == ""
    assert up.stderr.splitlines() == [
        f"Port {port} is taken by another program; choose another: TETHER_PORT={port + 1} make up"
    ]
    assert not (tmp_path / "supervisor.pid").exists()
    assert not (tmp_path / "env").exists()
