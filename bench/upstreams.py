"""The benchmark's provider paths: for each, the local server that plays the vendor (its own
process, answering REPLY), and how a client calls it straight in the vendor's own protocol."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calls import FIRST_TOKEN, PROMPT, REPLY, Call  # bench/, the script's folder

from tether.dev.control_plane import free_port, port_in_use
from tether.dev.processes import Component, spawn, stop, wait_until

KEY = "k"
"""The API key every client sends upstream; the local servers want one but check none."""
UPSTREAM_MODEL = "m"


def chat_completions(endpoint: str) -> Call:
    body = {"model": UPSTREAM_MODEL, "messages": [{"role": "user", "content": PROMPT}]}
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    url = f"{endpoint}/chat/completions"
    marker = f'"content": "{FIRST_TOKEN}"'
    return Call(url, body, url, streamed, marker, {"Authorization": f"Bearer {KEY}"})


def gemini(endpoint: str) -> Call:
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    models = f"{endpoint}/v1beta/models/{UPSTREAM_MODEL}"
    return Call(
        f"{models}:generateContent",
        body,
        f"{models}:streamGenerateContent?alt=sse",
        body,
        f'"text": "{FIRST_TOKEN}"',
        {"x-goog-api-key": KEY},
    )


def anthropic(endpoint: str) -> Call:
    body = {
        "model": UPSTREAM_MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    url = f"{endpoint}/v1/messages"
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    return Call(url, body, url, {**body, "stream": True}, '"text_delta"', headers)


@dataclass(frozen=True)
class Upstream:
    """One provider path. `provider` is Tether's name for it; every client is given the same
    endpoint (the server's URL plus `base_path`), as its SDK would be."""

    provider: str
    server: str
    base_path: str
    direct: Callable[[str], Call]
    litellm_prefix: str
    litellm_params: dict[str, Any] = field(default_factory=dict)

    def endpoint(self, port: int) -> str:
        return f"http://127.0.0.1:{port}{self.base_path}"


UPSTREAMS = (
    Upstream(
        "openai-compatible",
        "tether.dev.fakes.chat_completions",
        "/v1",
        chat_completions,
        "openai",
        # An `openai/` deployment answers the Interactions API through OpenAI's Responses API
        # (POST {api_base}/responses), which a Chat Completions server has not; this flag is
        # LiteLLM's documented switch to its Responses → Chat Completions bridge.
        {"use_chat_completions_api": True},
    ),
    Upstream("gemini", "tether.dev.fakes.gemini", "", gemini, "gemini"),
    Upstream("anthropic", "tether.dev.fakes.anthropic", "", anthropic, "anthropic"),
)


class LocalUpstreams(Component):
    """Every path's server, each its own process on a free loopback port."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[subprocess.Popen] = []
        self.endpoints: dict[str, str] = {}
        self.pids: dict[str, int] = {}

    def _start(self) -> None:
        ports = {}
        for upstream in UPSTREAMS:
            port = free_port()
            log = self.work / f"{upstream.provider}.log"
            argv = [sys.executable, "-m", upstream.server, "--port", str(port), "--text", REPLY]
            proc = spawn(argv, log)
            self.procs.append(proc)
            ports[upstream.provider] = (port, proc, log)
            self.endpoints[upstream.provider] = upstream.endpoint(port)
            self.pids[upstream.provider] = proc.pid
        for name, (port, proc, log) in ports.items():
            wait_until(name, lambda port=port: port_in_use(port), 20, [(name, proc, log)])

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)
