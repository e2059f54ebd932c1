"""One way to ask a server for the benchmark's reply, streaming and not, and timing it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

PROMPT = "Summarise the quarterly pricing changes in one paragraph."
REPLY = " ".join(f"token{i}" for i in range(20))
FIRST_TOKEN = REPLY.split()[0]


class CallFailed(RuntimeError):
    """A server refused the call, or answered without the reply."""


@dataclass(frozen=True)
class Call:
    """The same prompt in one wire protocol: a non-streaming request, a streaming one, and the
    text that marks, in a streamed data line, the first token of the answer."""

    url: str
    body: dict[str, Any]
    stream_url: str
    stream_body: dict[str, Any]
    marker: str
    headers: dict[str, str]


def interactions_call(url: str, model: str, headers: dict[str, str]) -> Call:
    """The Interactions API, as Tether and LiteLLM both serve it: SSE data lines whose JSON has
    an `event_type`, the answer's text arriving in `step.delta` events."""
    body = {"model": model, "input": PROMPT}
    return Call(url, body, url, {**body, "stream": True}, '"step.delta"', headers)


def latency(client: httpx.Client, call: Call) -> tuple[float, str]:
    """Seconds to the whole non-streaming answer, and its body (which must hold the reply)."""
    started = time.perf_counter()
    response = client.post(call.url, json=call.body, headers=call.headers)
    seconds = time.perf_counter() - started
    if response.status_code != 200 or REPLY not in response.text:
        raise CallFailed(f"POST {call.url} answered {response.status_code}: {response.text}")
    return seconds, response.text


def first_token(client: httpx.Client, call: Call) -> tuple[float, str]:
    """Seconds to the first streamed data line carrying the call's marker, and that line."""
    started = time.perf_counter()
    with client.stream("POST", call.stream_url, json=call.stream_body, headers=call.headers) as r:
        if r.status_code != 200:
            text = r.read().decode()
            raise CallFailed(f"POST {call.stream_url} answered {r.status_code}: {text}")
        for line in r.iter_lines():
            if line.startswith("data:") and call.marker in line:
                return time.perf_counter() - started, line
    raise CallFailed(f"no {call.marker!r} in the stream from {call.stream_url}")
