"""`make up` / `make down`: the whole stack in the background, and nothing left after."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import sdk_client
from tests.integration.test_control_plane import _alive
from tether.controlplane import free_port


def devstack(state, *args: str, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tether.devstack", *args, "--state", str(state)],
        env={**os.environ, "TETHER_PORT": str(port), "PYTHONSAFEPATH": "1"},
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
