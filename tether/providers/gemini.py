"""The Gemini API (generateContent, streamed), through the official `google-genai` client.

Thought signatures go back where Gemini put them: a thought step's signature rides on the next
part of the model's turn that is not a thought (its first function call, or its text), or on an
empty text part when nothing follows, as Gemini sends it when streaming.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import google.auth.exceptions
from google import genai
from google.genai import errors, types
from google.oauth2 import service_account

from tether.api.model import VertexAI
from tether.conversation import call_names
from tether.providers.base import (
    FunctionCall,
    ModelRequest,
    Output,
    ProviderError,
    TextDelta,
    ThoughtDelta,
    ThoughtSignature,
    Usage,
    failure,
)

DEFAULT_ENDPOINT = "https://generativelanguage.googleapis.com"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
_MODES = {"auto": "AUTO", "any": "ANY", "none": "NONE"}
_SAMPLING = ("temperature", "top_p", "top_k", "seed", "max_output_tokens", "stop_sequences")


def gemini_contents(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as Gemini contents: one per run of user or model steps."""
    names = call_names(steps)
    contents: list[dict[str, Any]] = []
    signature: bytes | None = None  # a thought's signature, waiting for the part it rides on

    def add(role: str, part: dict[str, Any]) -> None:
        nonlocal signature
        if role == "model" and signature is not None and not part.get("thought"):
            part, signature = {**part, "thought_signature": signature}, None
        if not contents or contents[-1]["role"] != role:
            if signature is not None:  # a model turn ended on its signature
                contents[-1]["parts"].append({"text": "", "thought_signature": signature})
                signature = None
            contents.append({"role": role, "parts": []})
        contents[-1]["parts"].append(part)

    for step in steps:
        match step.get("type"):
            case "user_input":
                for part in step.get("content") or []:
                    add("user", gemini_part(part))
            case "model_output":
                for part in step.get("content") or []:
                    add("model", gemini_part(part))
            case "thought":
                for part in step.get("summary") or []:
                    add("model", {"text": part.get("text") or "", "thought": True})
                if step.get("signature"):
                    signature = _bytes(step["signature"])
                    if not contents or contents[-1]["role"] != "model":
                        contents.append({"role": "model", "parts": []})
            case "function_call":
                call = {"id": step.get("id"), "name": step["name"], "args": step.get("arguments")}
                add("model", {"function_call": call})
            case "function_result":
                call_id = step.get("call_id")
                result = step.get("result")
                key = "error" if step.get("is_error") else "result"
                response = result if isinstance(result, dict) else {key: result}
                name = step.get("name") or names.get(call_id, "")
                add(
                    "user",
                    {"function_response": {"id": call_id, "name": name, "response": response}},
                )
    if signature is not None and contents:
        contents[-1]["parts"].append({"text": "", "thought_signature": signature})
    return [c for c in contents if c["parts"]]


def gemini_part(part: dict[str, Any]) -> dict[str, Any]:
    """A content part (text, or media inline or by URI) as a Gemini part."""
    if part.get("type") == "text":
        return {"text": part.get("text") or ""}
    if part.get("uri"):
        return {"file_data": {"file_uri": part["uri"], "mime_type": part.get("mime_type")}}
    return {"inline_data": {"mime_type": part["mime_type"], "data": base64.b64decode(part["data"])}}


def gemini_config(request: ModelRequest) -> dict[str, Any]:
    """The request's settings as a GenerateContentConfig."""
    given = request.generation_config
    config: dict[str, Any] = {name: given[name] for name in _SAMPLING if name in given}
    if request.system_instruction:
        config["system_instruction"] = request.system_instruction
    if functions := [tool for tool in request.tools if tool.get("type") == "function"]:
        declarations = [
            {
                "name": tool["name"],
                "description": tool.get("description") or "",
                "parameters_json_schema": tool.get("parameters")
                or {"type": "object", "properties": {}},
            }
            for tool in functions
        ]
        config["tools"] = [{"function_declarations": declarations}]
    if (choice := given.get("tool_choice")) is not None:
        config["tool_config"] = {"function_calling_config": gemini_tool_choice(choice)}
    thinking: dict[str, Any] = {}
    if level := given.get("thinking_level"):
        thinking["thinking_level"] = level.upper()
    if (budget := given.get("thinking_budget")) is not None:
        thinking["thinking_budget"] = budget
    if summaries := given.get("thinking_summaries"):
        thinking["include_thoughts"] = summaries == "auto"
    if thinking:
        config["thinking_config"] = thinking
    if request.response_format:
        config["response_mime_type"] = "application/json"
        config["response_json_schema"] = request.response_format
    elif request.response_mime_type:
        config["response_mime_type"] = request.response_mime_type
    return config


def gemini_tool_choice(value: Any) -> dict[str, Any] | None:
    """The Interactions API's tool_choice as Gemini's function calling config; None when it has
    no equivalent there."""
    if isinstance(value, str):
        return {"mode": _MODES[value]} if value in _MODES else None
    allowed = value.get("allowed_tools") if isinstance(value, dict) else None
    if not isinstance(allowed, dict) or set(value) != {"allowed_tools"}:
        return None
    mode, names = allowed.get("mode", "any"), allowed.get("tools") or []
    if mode not in _MODES or not all(isinstance(n, str) for n in names):
        return None
    return {"mode": _MODES[mode], **({"allowed_function_names": names} if names else {})}


def _bytes(signature: str) -> bytes | None:
    try:
        return base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return None  # not Gemini's (another vendor's, after a fallback): not sent


class GeminiProvider:
    def __init__(
        self, endpoint: str | None, api_key: str | None, vertex: VertexAI | None = None
    ) -> None:
        if vertex is None:
            self.endpoint = endpoint or DEFAULT_ENDPOINT
            self.client = genai.Client(
                api_key=api_key or "unused", http_options=types.HttpOptions(base_url=self.endpoint)
            )
            return
        self.endpoint = endpoint or f"https://{vertex.location}-aiplatform.googleapis.com"
        self.client = genai.Client(
            vertexai=True,
            project=vertex.project,
            location=vertex.location,
            credentials=service_account_credentials(api_key or ""),
            http_options=types.HttpOptions(base_url=endpoint) if endpoint else None,
        )

    async def generate(self, request: ModelRequest) -> AsyncIterator[Output]:
        try:
            stream = await self.client.aio.models.generate_content_stream(
                model=request.model,
                contents=gemini_contents(request.steps),
                config=gemini_config(request),
            )
            async for chunk in stream:
                for output in _outputs(chunk):
                    yield output
        except errors.APIError as error:
            headers = getattr(error.response, "headers", None) or {}
            raise failure(
                error.code,
                f"{self.endpoint} answered {error.code}: {error.message}",
                headers.get("Retry-After"),
            ) from error
        # the client's async transport is aiohttp, which Tether depends on anyway
        except google.auth.exceptions.GoogleAuthError as error:  # Vertex AI's sign-in
            raise ProviderError(
                "auth_failed", f"signing in to Vertex AI failed: {error}"
            ) from error
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            raise failure(None, f"cannot reach {self.endpoint}: {error!r}") from error


def service_account_credentials(key_file: str) -> service_account.Credentials:
    """Credentials from a service account's JSON key file, for Vertex AI."""
    try:
        return service_account.Credentials.from_service_account_info(
            json.loads(key_file), scopes=[CLOUD_PLATFORM]
        )
    except (ValueError, KeyError, TypeError) as error:
        raise ProviderError(
            "auth_failed", f"the Model's credentials are not a service-account key file: {error}"
        ) from error


def _outputs(chunk: types.GenerateContentResponse) -> list[Output]:
    out: list[Output] = []
    for candidate in (chunk.candidates or [])[:1]:
        for part in (candidate.content.parts if candidate.content else None) or []:
            if part.thought and part.text:
                out.append(ThoughtDelta(part.text))
            elif part.text:
                out.append(TextDelta(part.text))
            elif call := part.function_call:
                call_id = call.id or f"call-{uuid.uuid4().hex[:16]}"
                out.append(FunctionCall(call_id, call.name or "", dict(call.args or {})))
            if part.thought_signature:
                out.append(ThoughtSignature(base64.b64encode(part.thought_signature).decode()))
    if usage := chunk.usage_metadata:
        out.append(
            Usage(
                input_tokens=(usage.prompt_token_count or 0)
                + (usage.tool_use_prompt_token_count or 0),
                output_tokens=usage.candidates_token_count or 0,
                thought_tokens=usage.thoughts_token_count or 0,
                cached_tokens=usage.cached_content_token_count or 0,
            )
        )
    return out
