"""Anthropic's Messages API, streamed, through the official `anthropic` client.

A thinking block becomes a thought step with its summary and signature; a redacted one, a
thought step with only its signature. Both go back unchanged, as Claude requires while it uses
tools.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic

from tether.providers.base import (
    FunctionCall,
    ModelRequest,
    Output,
    TextDelta,
    ThoughtDelta,
    ThoughtSignature,
    Usage,
    failure,
)

DEFAULT_ENDPOINT = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 8192
"""Anthropic needs a max_tokens; this one when the request sets none (plus any thinking)."""
EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh"}
_CHOICES = {"auto": {"type": "auto"}, "any": {"type": "any"}, "none": {"type": "none"}}


def anthropic_messages(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as Messages: one per run of user or assistant blocks."""
    messages: list[dict[str, Any]] = []

    def add(role: str, block: dict[str, Any]) -> None:
        if not messages or messages[-1]["role"] != role:
            messages.append({"role": role, "content": []})
        messages[-1]["content"].append(block)

    for step in steps:
        match step.get("type"):
            case "user_input":
                for part in step.get("content") or []:
                    add("user", anthropic_block(part))
            case "model_output":
                for part in step.get("content") or []:
                    add("assistant", anthropic_block(part))
            case "thought" if step.get("signature"):  # unsigned thoughts are not Claude's
                if (summary := step.get("summary")) is not None:
                    text = "".join(part.get("text") or "" for part in summary)
                    add(
                        "assistant",
                        {"type": "thinking", "thinking": text, "signature": step["signature"]},
                    )
                else:
                    add("assistant", {"type": "redacted_thinking", "data": step["signature"]})
            case "function_call":
                block = {"type": "tool_use", "id": step["id"], "name": step["name"]}
                add("assistant", {**block, "input": step.get("arguments") or {}})
            case "function_result":
                result = step.get("result")
                block = {
                    "type": "tool_result",
                    "tool_use_id": step["call_id"],
                    "content": result if isinstance(result, str) else json.dumps(result),
                }
                add("user", {**block, "is_error": True} if step.get("is_error") else block)
    return messages


def anthropic_block(part: dict[str, Any]) -> dict[str, Any]:
    """A content part (text, an image or a document, inline or by URI) as a content block."""
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": part.get("text") or ""}
    if part.get("uri"):
        return {"type": kind, "source": {"type": "url", "url": part["uri"]}}
    if part.get("mime_type") == "text/plain":
        text = base64.b64decode(part["data"]).decode()
        return {"type": kind, "source": {"type": "text", "media_type": "text/plain", "data": text}}
    source = {"type": "base64", "media_type": part["mime_type"], "data": part["data"]}
    return {"type": kind, "source": source}


def anthropic_options(request: ModelRequest) -> dict[str, Any]:
    """The request's settings as Messages parameters."""
    given = request.generation_config
    options: dict[str, Any] = {}
    if "stop_sequences" in given:
        options["stop_sequences"] = given["stop_sequences"]
    if request.system_instruction:
        options["system"] = request.system_instruction
    if functions := [tool for tool in request.tools if tool.get("type") == "function"]:
        options["tools"] = [
            {
                "name": tool["name"],
                "description": tool.get("description") or "",
                "input_schema": tool.get("parameters") or {"type": "object", "properties": {}},
            }
            for tool in functions
        ]
    if (choice := given.get("tool_choice")) is not None:
        options["tool_choice"] = anthropic_tool_choice(choice)
    output_config: dict[str, Any] = {}
    budget = given.get("thinking_budget")
    display = {"auto": "summarized", "none": "omitted"}.get(given.get("thinking_summaries") or "")
    if budget == 0:
        options["thinking"] = {"type": "disabled"}
    elif budget is not None:
        options["thinking"] = {"type": "enabled", "budget_tokens": budget}
    elif level := given.get("thinking_level"):
        options["thinking"] = {"type": "adaptive"}
        output_config["effort"] = EFFORT[level]
    if display and "thinking" in options and options["thinking"]["type"] != "disabled":
        options["thinking"]["display"] = display
    options["max_tokens"] = given.get("max_output_tokens") or DEFAULT_MAX_TOKENS + (budget or 0)
    if request.response_format:
        output_config["format"] = {"type": "json_schema", "schema": request.response_format}
    if output_config:
        options["output_config"] = output_config
    return options


def anthropic_tool_choice(value: Any) -> dict[str, Any] | None:
    """The Interactions API's tool_choice as Anthropic's; None when it has no equivalent."""
    if isinstance(value, str):
        return _CHOICES.get(value)
    allowed = value.get("allowed_tools") if isinstance(value, dict) else None
    if not isinstance(allowed, dict) or set(value) != {"allowed_tools"}:
        return None
    mode, names = allowed.get("mode", "any"), allowed.get("tools")
    if mode == "none" and not names:
        return {"type": "none"}
    if mode == "any" and isinstance(names, list) and len(names) == 1 and isinstance(names[0], str):
        return {"type": "tool", "name": names[0]}
    return None


class AnthropicProvider:
    def __init__(self, endpoint: str | None, api_key: str | None) -> None:
        self.endpoint = endpoint or DEFAULT_ENDPOINT
        # Retries are Tether's own (tether.providers.resilience), one policy for every vendor.
        self.client = anthropic.AsyncAnthropic(
            base_url=self.endpoint, api_key=api_key or "unused", max_retries=0
        )

    async def generate(self, request: ModelRequest) -> AsyncIterator[Output]:
        calls: dict[int, dict[str, Any]] = {}
        usage: dict[str, int] = {}
        try:
            stream = await self.client.messages.create(
                model=request.model,
                messages=anthropic_messages(request.steps),
                stream=True,
                **anthropic_options(request),
            )
            async for event in stream:
                match event.type:
                    case "message_start":
                        usage.update(_counts(event.message.usage))
                    case "content_block_start":
                        block = event.content_block
                        if block.type == "tool_use":
                            calls[event.index] = {"id": block.id, "name": block.name, "json": ""}
                        elif block.type == "thinking":
                            yield ThoughtDelta(block.thinking or "")
                        elif block.type == "redacted_thinking":
                            yield ThoughtSignature(block.data)
                        elif block.type == "text" and block.text:
                            yield TextDelta(block.text)
                    case "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta":
                            yield TextDelta(delta.text)
                        elif delta.type == "thinking_delta":
                            yield ThoughtDelta(delta.thinking)
                        elif delta.type == "signature_delta":
                            yield ThoughtSignature(delta.signature)
                        elif delta.type == "input_json_delta":
                            calls[event.index]["json"] += delta.partial_json
                    case "message_delta":
                        usage.update(_counts(event.usage))
        except anthropic.APIStatusError as error:
            raise failure(
                error.status_code,
                f"{self.endpoint} answered {error.status_code}: {_message(error)}",
                error.response.headers.get("retry-after"),
            ) from error
        except anthropic.APIConnectionError as error:
            raise failure(None, f"cannot reach {self.endpoint}: {error.message}") from error
        for index in sorted(calls):
            call = calls[index]
            arguments = json.loads(call["json"]) if call["json"] else {}
            yield FunctionCall(call["id"], call["name"], arguments)
        cached = usage.get("cache_read_input_tokens", 0)
        yield Usage(
            input_tokens=usage.get("input_tokens", 0)
            + cached
            + usage.get("cache_creation_input_tokens", 0),
            output_tokens=usage.get("output_tokens", 0),
            cached_tokens=cached,
        )


def _counts(usage: Any) -> dict[str, int]:
    fields = (
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    )
    return {name: value for name in fields if (value := getattr(usage, name, None)) is not None}


def _message(error: anthropic.APIStatusError) -> str:
    body = error.body if isinstance(error.body, dict) else {}
    detail = body.get("error") if isinstance(body.get("error"), dict) else {}
    return str(detail.get("message") or error.message)
