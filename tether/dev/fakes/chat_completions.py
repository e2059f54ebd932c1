"""A local server speaking OpenAI's Chat Completions protocol (streaming and not, with usage and
tool calls), so the openai-compatible provider is tested against the real wire format."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    """What the server answers next: text (streamed word by word), tool calls, or an error."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    error: str = ""


@dataclass
class ChatCompletionsServer:
    """Answers with `replies` in order (the last one repeats); records every request body and
    Authorization header unless `record` is off (for long benchmarks)."""

    replies: list[Reply] = field(default_factory=lambda: [Reply("hello from upstream")])
    requests: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    port: int = 0
    record: bool = True
    served: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        return app

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if self.record:
            self.requests.append(body)
            self.authorizations.append(request.headers.get("Authorization"))
        reply = self.replies[min(self.served, len(self.replies) - 1)]
        self.served += 1
        if reply.status != 200:
            return web.json_response(
                {"error": {"message": reply.error, "type": "invalid_request_error"}},
                status=reply.status,
            )
        prompt = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
        completion = len(reply.text.split()) + len(reply.tool_calls)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        base = {"id": "chatcmpl-local", "created": int(time.time()), "model": body["model"]}
        calls = [
            {
                "index": i,
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))},
            }
            for i, c in enumerate(reply.tool_calls)
        ]
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
            if calls:
                message["tool_calls"] = [
                    {k: v for k, v in c.items() if k != "index"} for c in calls
                ]
            return web.json_response(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(choices: list[dict], extra: dict | None = None) -> None:
            chunk = {**base, "object": "chat.completion.chunk", "choices": choices, **(extra or {})}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send([{"index": 0, "delta": {"role": "assistant", "content": ""}}])
        for i, word in enumerate(reply.text.split()):
            await send([{"index": 0, "delta": {"content": word if i == 0 else f" {word}"}}])
        if calls:
            await send([{"index": 0, "delta": {"tool_calls": calls}}])
        finish = "tool_calls" if calls else "stop"
        await send([{"index": 0, "delta": {}, "finish_reason": finish}])
        if (body.get("stream_options") or {}).get("include_usage"):
            await send([], {"usage": usage})
        await response.write(b"data: [DONE]\n\n")
        return response

    # -- run it beside synchronous code (tests, benchmarks) ---------------------------------------

    def __enter__(self) -> ChatCompletionsServer:
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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def main() -> None:
    """`python -m tether.dev.fakes.chat_completions --port N --text "..."`: serve until killed."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--text", default="hello from upstream")
    args = parser.parse_args()
    server = ChatCompletionsServer(replies=[Reply(args.text)], record=False)
    web.run_app(server.app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
