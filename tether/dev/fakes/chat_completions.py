"""A local server speaking OpenAI's Chat Completions protocol (streaming and not, with usage, tool
calls and `reasoning_content` as vLLM and DeepSeek send it), so the openai-compatible provider is
tested against the real wire format."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tether.dev.fakes.serving import LocalServer, Reply, serve

__all__ = ["ChatCompletionsServer", "Reply"]


@dataclass
class ChatCompletionsServer(LocalServer):
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        return app

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def authorizations(self) -> list[str | None]:
        return [headers.get("Authorization") for headers in self.headers]

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        reply = await self.next_reply(request, body)
        if reply.status != 200:
            headers = {} if reply.retry_after is None else {"Retry-After": str(reply.retry_after)}
            return web.json_response(
                {"error": {"message": reply.error, "type": "invalid_request_error"}},
                status=reply.status,
                headers=headers,
            )
        prompt = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
        reasoning = len(reply.thinking.split())
        completion = len(reply.text.split()) + len(reply.tool_calls) + reasoning
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
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
        if reply.thinking:
            await send([{"index": 0, "delta": {"reasoning_content": reply.thinking}}])
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


if __name__ == "__main__":
    serve(ChatCompletionsServer)
