"""LiteLLM's proxy as the benchmark's peer: its own Interactions endpoint in front of the same
local upstreams, one deployment per provider path.

LiteLLM lives in a virtual environment of its own, used by the benchmark only, so its hundreds of
dependencies never meet Tether's. By hand, to see each path answer through it:

    .venv/bin/python bench/litellm_peer.py
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from calls import REPLY, Call, CallFailed, first_token, interactions_call, latency  # bench/
from upstreams import KEY, UPSTREAM_MODEL, UPSTREAMS, LocalUpstreams

from tether.dev.control_plane import free_port
from tether.dev.processes import Component, http_ok, spawn, stop, wait_until

# The newest release whose `proxy` extra installs from the package index: 1.108.8 and later pin
# litellm-enterprise, litellm-proxy-extras (and from 1.110 a `litellm-proxy`) at versions it
# does not serve.
PIN = "litellm[proxy]==1.108.7"
VENV = Path.home() / ".cache" / "tether" / "bench" / "litellm-venv"

# Where LiteLLM serves the Interactions API (it also answers on /interactions).
INTERACTIONS_PATH = "/v1beta/interactions"

# LiteLLM fetches its price map and its table of Anthropic beta headers from GitHub when it starts
# unless told to use the copies it ships; the benchmark sends nothing past loopback.
OFFLINE = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "HF_HUB_OFFLINE": "1",
}


def ensure_venv(venv: Path = VENV) -> Path:
    """The `litellm` command of the benchmark's venv, after installing PIN there if the venv is
    missing or was made for another pin."""
    command, stamp = venv / "bin" / "litellm", venv / "tether-pin"
    if command.exists() and stamp.exists() and stamp.read_text() == PIN:
        return command
    print(f"installing {PIN} in {venv} (a minute or two)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, PIN], check=True)
    stamp.write_text(PIN)  # last, so that an interrupted install is redone
    return command


def model_name(provider: str) -> str:
    return f"bench-{provider}"


def proxy_config(endpoints: Mapping[str, str], master_key: str) -> dict[str, Any]:
    """LiteLLM's config: a deployment per path with a local endpoint, and the key it accepts."""
    return {
        "model_list": [
            {
                "model_name": model_name(upstream.provider),
                "litellm_params": {
                    "model": f"{upstream.litellm_prefix}/{UPSTREAM_MODEL}",
                    "api_base": endpoints[upstream.provider],
                    "api_key": KEY,
                    **upstream.litellm_params,
                },
            }
            for upstream in UPSTREAMS
            if upstream.provider in endpoints
        ],
        # It refuses to start without a master key; no database, so no virtual keys or spend logs.
        "general_settings": {"master_key": master_key},
    }


class LiteLLMProxy(Component):
    """`litellm --config ...` on a free loopback port, one worker, until stopped."""

    def __init__(self, work: Path, endpoints: Mapping[str, str]) -> None:
        self.work, self.endpoints = work, endpoints
        self.master_key = f"sk-{secrets.token_hex(32)}"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self) -> None:
        command = ensure_venv()
        config = self.work / "litellm.yaml"
        self.work.mkdir(parents=True, exist_ok=True)
        # JSON is YAML, and keeps this side free of a YAML writer.
        config.write_text(json.dumps(proxy_config(self.endpoints, self.master_key), indent=2))
        log = self.work / "litellm.log"
        # Only the venv's own packages: nothing of Tether's environment leaks into the proxy.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        argv = [str(command), "--config", str(config), "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--num_workers", "1"]
        self.proc = spawn(argv, log, env={**env, **OFFLINE})
        wait_until(
            "LiteLLM proxy",
            lambda: http_ok(f"{self.url}/health/liveliness"),
            120,
            [("LiteLLM proxy", self.proc, log)],
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def call(self, provider: str) -> Call:
        """The path's deployment, through LiteLLM's Interactions endpoint."""
        return interactions_call(
            f"{self.url}{INTERACTIONS_PATH}",
            model_name(provider),
            {"Authorization": f"Bearer {self.master_key}"},
        )


def main() -> int:
    """Each path once, straight and through LiteLLM, streaming and not; 1 if any failed."""
    work = Path(tempfile.mkdtemp(prefix="tether-litellm-"))
    failed = 0
    with (
        LocalUpstreams(work) as upstreams,
        LiteLLMProxy(work, upstreams.endpoints) as proxy,
        httpx.Client(timeout=60) as client,
    ):
        print(f"{PIN} at {proxy.url}{INTERACTIONS_PATH}; logs in {work}")
        for upstream in UPSTREAMS:
            endpoint = upstreams.endpoints[upstream.provider]
            for side, call in (
                ("direct", upstream.direct(endpoint)),
                ("LiteLLM", proxy.call(upstream.provider)),
            ):
                where = f"{upstream.provider:<17} {side:<8}"
                try:
                    whole, _ = latency(client, call)
                    token, line = first_token(client, call)
                except CallFailed as error:
                    failed += 1
                    print(f"{where} FAILED: {error}")
                    continue
                print(
                    f"{where} 200 with {REPLY[:13]!r}… in {whole * 1e3:.1f} ms; "
                    f"first token in {token * 1e3:.1f} ms: {line[:110]}"
                )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
