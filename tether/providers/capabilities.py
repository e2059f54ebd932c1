"""What each provider can act on. A create that asks for more is refused with a 400 naming the
field, rather than accepted and silently ignored."""

from __future__ import annotations

from dataclasses import dataclass

from tether.api.interaction import InteractionSpec
from tether.conversation import input_steps
from tether.providers.openai_compatible import chat_tool_choice

MEDIA_TYPES = ("image", "audio", "document", "video")
PLAIN_TEXT = "text/plain"
JSON = "application/json"


@dataclass(frozen=True)
class Capabilities:
    response_format: bool = False
    """A JSON schema the answer must follow."""
    json_mode: bool = False
    """`response_mime_type: application/json` without a schema."""
    tool_choice: bool = False
    media: frozenset[str] = frozenset()
    """Content types besides text that reach the model."""


_OFFLINE = Capabilities()
_CHAT_COMPLETIONS = Capabilities(
    response_format=True, json_mode=True, tool_choice=True, media=frozenset({"image"})
)
CAPABILITIES: dict[str, Capabilities] = {
    "echo": _OFFLINE,
    "scripted": _OFFLINE,
    "openai-compatible": _CHAT_COMPLETIONS,
    "openai": _CHAT_COMPLETIONS,
}


def refusals(provider: str, model: str, spec: InteractionSpec) -> list[str]:
    """What in a model interaction's spec the model's provider would not act on, one message
    per field; empty when everything asked for is honoured."""
    can = CAPABILITIES.get(provider, _OFFLINE)
    by = f"model {model!r} (provider {provider})"
    out: list[str] = []
    for i, tool in enumerate(spec.tools or []):
        if tool.type != "function":
            out.append(
                f"tools[{i}]: the built-in tool {tool.type!r} is not available to {by}; "
                "only function tools are (built-in tools run in agent interactions)"
            )
    config = spec.generation_config
    for name in ("thinking_level", "thinking_summaries"):
        if config is not None and getattr(config, name) is not None:
            out.append(f"generation_config.{name} is not supported by {by}")
    if config is not None and config.tool_choice is not None:
        if not can.tool_choice:
            out.append(f"generation_config.tool_choice is not supported by {by}")
        elif chat_tool_choice(config.tool_choice) is None:
            out.append(
                f"generation_config.tool_choice {config.tool_choice!r} is not supported by {by}: "
                'use "auto", "any", "none", or allowed_tools naming one tool with mode "any"'
            )
    if spec.response_format is not None:
        if not can.response_format:
            out.append(f"response_format is not supported by {by}")
        elif not isinstance(spec.response_format, dict):
            out.append(f"response_format must be one JSON schema (an object) for {by}")
    mime = spec.response_mime_type
    if mime not in (None, PLAIN_TEXT, JSON):
        out.append(f"response_mime_type {mime!r} is not supported by {by}: use {JSON!r}")
    elif mime == JSON and spec.response_format is None and not can.json_mode:
        out.append(f"response_mime_type {JSON!r} is not supported by {by}")
    for step in input_steps(spec.to_wire()["input"]):
        for part in step.get("content") or [] if step.get("type") == "user_input" else []:
            kind = part.get("type")
            if kind not in MEDIA_TYPES:
                continue
            if kind not in can.media:
                out.append(f"input: {kind} content is not supported by {by}")
            elif not (part.get("uri") or (part.get("data") and part.get("mime_type"))):
                out.append(f"input: {kind} content needs a uri, or data with its mime_type")
    return list(dict.fromkeys(out))
