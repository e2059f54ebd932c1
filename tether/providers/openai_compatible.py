"""Chat Completions over HTTP, streamed, with usage: OpenAI, vLLM, Ollama and the like.

Uses the official `openai` client, the reference implementation of this protocol.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai

from tether.conversation import text_of
from tether.providers.base import (
    FunctionCall,
    ModelRequest,
    Output,
    ProviderError,
    TextDelta,
    ThoughtDelta,
    Usage,
    failure,
)

AUDIO_FORMATS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3", "audio/mp3": "mp3"}
"""The audio Chat Completions takes inline, by MIME type."""
_GENERATION_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "max_output_tokens": "max_tokens",
    "stop_sequences": "stop",
}


def chat_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """The conversation's steps as Chat Completions messages. Thought steps stay out: the
    protocol has no way to send reasoning back, and its servers do not expect it."""
    messages: list[dict[str, Any]] = []
    if request.system_instruction:
        messages.append({"role": "system", "content": request.system_instruction})
    for step in request.steps:
        kind = step.get("type")
        if kind == "user_input":
            messages.append({"role": "user", "content": user_content(step)})
        elif kind == "model_output":
            messages.append({"role": "assistant", "content": text_of(step)})
        elif kind == "function_call":
            call = {
                "id": step["id"],
                "type": "function",
                "function": {
                    "name": step["name"],
                    "arguments": json.dumps(step.get("arguments") or {}),
                },
            }
            last = messages[-1] if messages else None
            if last and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_result":
            result = step.get("result")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": step["call_id"],
                    "content": result if isinstance(result, str) else json.dumps(result),
                }
            )
    return messages


def user_content(step: dict[str, Any]) -> str | list[dict[str, Any]]:
    """A user turn's content: plain text, or parts when it carries media."""
    parts = step.get("content") or []
    if all(part.get("type") == "text" for part in parts):
        return text_of(step)
    return [chat_part(part) for part in parts]


def chat_part(part: dict[str, Any]) -> dict[str, Any]:
    """A content part as a Chat Completions part: text, image_url, file, or input_audio."""
    kind, mime, data = part.get("type"), part.get("mime_type"), part.get("data")
    if kind == "text":
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "image":
        return {
            "type": "image_url",
            "image_url": {"url": part.get("uri") or f"data:{mime};base64,{data}"},
        }
    if kind == "audio":
        return {"type": "input_audio", "input_audio": {"data": data, "format": AUDIO_FORMATS[mime]}}
    return {
        "type": "file",
        "file": {"filename": "document.pdf", "file_data": f"data:{mime};base64,{data}"},
    }


def chat_tool_choice(value: Any) -> str | dict[str, Any] | None:
    """The Interactions API's tool_choice as Chat Completions' tool_choice; None when it has
    no equivalent there."""
    modes = {"auto": "auto", "none": "none", "any": "required"}
    if isinstance(value, str):
        return modes.get(value)
    allowed = value.get("allowed_tools") if isinstance(value, dict) else None
    if not isinstance(allowed, dict) or set(value) != {"allowed_tools"}:
        return None
    mode, names = allowed.get("mode", "any"), allowed.get("tools")
    if mode == "none" and not names:
        return "none"
    if mode == "any" and isinstance(names, list) and len(names) == 1 and isinstance(names[0], str):
        return {"type": "function", "function": {"name": names[0]}}
    return None


def chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool["name"],
                "description": tool.get("description", ""),
                "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
            },
        }
        for tool in tools
        if tool.get("type") == "function"
    ]


class OpenAICompatibleProvider:
    def __init__(self, endpoint: str, api_key: str | None) -> None:
        self.endpoint = endpoint
        # Retries are Tether's own (tether.providers.resilience), one policy for every vendor.
        self.client = openai.AsyncOpenAI(
            base_url=endpoint, api_key=api_key or "unused", max_retries=0
        )

    async def generate(self, request: ModelRequest) -> AsyncIterator[Output]:
        options = {
            wire: request.generation_config[ours]
            for ours, wire in _GENERATION_FIELDS.items()
            if ours in request.generation_config
        }
        if tools := chat_tools(request.tools):
            options["tools"] = tools
        if level := request.generation_config.get("thinking_level"):
            options["reasoning_effort"] = level
        if (choice := request.generation_config.get("tool_choice")) is not None:
            options["tool_choice"] = chat_tool_choice(choice)
        if request.response_format:
            options["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": request.response_format},
            }
        elif request.response_mime_type == "application/json":
            options["response_format"] = {"type": "json_object"}
        calls: dict[int, dict[str, str]] = {}
        body = {
            "model": request.model,
            "messages": chat_messages(request),
            "stream": True,
            "stream_options": {"include_usage": True},
            **options,
        }
        try:
            # The client's own request, SSE decoding and errors, with each chunk left as the
            # plain JSON it arrives as (`cast_to=object`): a typed object per chunk was half
            # of the operator's CPU on a streamed answer.
            stream = await self.client.post(
                "/chat/completions",
                body=body,
                cast_to=object,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            async for chunk in stream:
                if usage := chunk.get("usage"):
                    yield _usage(usage)
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    # vLLM, DeepSeek and others stream reasoning beside the content
                    if reasoning := delta.get("reasoning_content"):
                        yield ThoughtDelta(reasoning)
                    if content := delta.get("content"):
                        yield TextDelta(content)
                    for call in delta.get("tool_calls") or []:
                        acc = calls.setdefault(
                            call.get("index", 0), {"id": "", "name": "", "arguments": ""}
                        )
                        acc["id"] = call.get("id") or acc["id"]
                        function = call.get("function") or {}
                        acc["name"] += function.get("name") or ""
                        acc["arguments"] += function.get("arguments") or ""
        except openai.APIStatusError as error:
            raise failure(
                error.status_code,
                f"{self.endpoint} answered {error.status_code}: {error.message}",
                error.response.headers.get("retry-after"),
            ) from error
        except openai.APIConnectionError as error:
            raise failure(None, f"cannot reach {self.endpoint}: {error.message}") from error
        for index in sorted(calls):
            acc = calls[index]
            try:
                arguments = json.loads(acc["arguments"] or "{}")
            except json.JSONDecodeError as error:
                raise ProviderError(
                    "provider_unavailable",
                    f"the model sent invalid JSON arguments for {acc['name']}",
                ) from error
            yield FunctionCall(
                id=acc["id"] or f"call-{index}", name=acc["name"], arguments=arguments
            )


def _usage(usage: dict[str, Any]) -> Usage:
    """Chat Completions counts reasoning inside completion tokens, and cached inside prompt."""
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    reasoning = completion.get("reasoning_tokens") or 0
    return Usage(
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=(usage.get("completion_tokens") or 0) - reasoning,
        thought_tokens=reasoning,
        cached_tokens=prompt.get("cached_tokens") or 0,
    )
