"""What every local vendor server shares: the replies it plays back, what it saw, and running it
on a thread of its own beside synchronous code (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    """What a server answers next, in its vendor's own wire form: text (streamed word by word),
    thinking (with a signature), tool calls, or an error status."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    """[{"name": ..., "arguments": {...}}], several for parallel calls."""
    thinking: str = ""
    """Reasoning the model shows (Gemini thought parts, Anthropic thinking blocks)."""
    signature: str = ""
    """The opaque signature the vendor returns with its reasoning and expects back."""
    status: int = 200
    error: str = ""
    retry_after: float | None = None
    """Sent as a Retry-After header with an error status."""
    cached_tokens: int = 0
    delay: float = 0.0
    """Seconds the server takes before it answers: a slow model."""


@dataclass
class LocalServer:
    """Answers with `replies` in order (the last one repeats); records every request body and
    its headers unless `record` is off (for long benchmarks). Subclasses add their routes."""

    replies: list[Reply] = field(default_factory=lambda: [Reply("hello from upstream")])
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    port: int = 0
    record: bool = True
    served: int = 0

    def app(self) -> web.Application:
        raise NotImplementedError

    async def next_reply(self, request: web.Request, body: dict[str, Any]) -> Reply:
        if self.record:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
        reply = self.replies[min(self.served, len(self.replies) - 1)]
        self.served += 1
        await asyncio.sleep(reply.delay)
        return reply

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            self._runner = web.AppRunner(self.app(), access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            await site.start()
            self.port = self._runner.addresses[0][1]
            started.set()

        self._thread = threading.Thread(
            target=lambda: (self._loop.run_until_complete(serve()), self._loop.run_forever()),
            daemon=True,
        )
        self._thread.start()
        started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def serve(server: type[LocalServer]) -> None:
    """`python -m tether.dev.fakes.<vendor> --port N --text "..."`: answer every request with
    that text until killed, recording nothing (for benchmarks)."""
    import argparse

    parser = argparse.ArgumentParser(description=serve.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--text", default="hello from upstream")
    args = parser.parse_args()
    app = server(replies=[Reply(args.text)], record=False).app()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
