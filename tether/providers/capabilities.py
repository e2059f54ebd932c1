"""What each provider can act on. A create that asks for more is refused with a 400 naming the
field or the part, rather than accepted and silently ignored. This table is the README's."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tether.api.interaction import InteractionSpec
from tether.conversation import input_steps
from tether.providers.anthropic import anthropic_tool_choice
from tether.providers.gemini import gemini_tool_choice
from tether.providers.openai_compatible import AUDIO_FORMATS, chat_tool_choice

MEDIA_TYPES = ("image", "audio", "document", "video")
PLAIN_TEXT = "text/plain"
JSON = "application/json"
SAMPLING = frozenset({"temperature", "top_p", "max_output_tokens", "stop_sequences", "seed"})


@dataclass(frozen=True)
class Media:
    """How a provider takes one kind of content part."""

    inline: frozenset[str] | None = None
    """The MIME types it takes as inline data; None: every one of the kind."""
    uri: bool = True
    uri_needs_mime_type: bool = False


@dataclass(frozen=True)
class Capabilities:
    generation: frozenset[str] = SAMPLING
    """The generation_config fields it acts on (tool_choice apart)."""
    thinking_levels: frozenset[str] = frozenset()
    response_format: bool = False
    """A JSON schema the answer must follow."""
    json_mode: bool = False
    """`response_mime_type: application/json` without a schema."""
    tool_choice: Callable[[Any], Any] | None = None
    """Maps the API's tool_choice to the vendor's; None where it has no equivalent."""
    media: dict[str, Media] = field(default_factory=dict)
    min_thinking_budget: int = 0
    """The least thinking budget it takes, 0 (thinking off) apart."""
    not_while_thinking: frozenset[str] = frozenset()
    """Settings it refuses while it thinks (a forced tool_choice among them)."""


_OFFLINE = Capabilities()
_CHAT_COMPLETIONS = Capabilities(
    generation=SAMPLING | {"thinking_level"},
    thinking_levels=frozenset({"minimal", "low", "medium", "high", "xhigh"}),
    response_format=True,
    json_mode=True,
    tool_choice=chat_tool_choice,
    media={
        "image": Media(),
        "audio": Media(inline=frozenset(AUDIO_FORMATS), uri=False),
        "document": Media(inline=frozenset({"application/pdf"}), uri=False),
    },
)
_ANY_INLINE_OR_URI = Media(uri_needs_mime_type=True)
CAPABILITIES: dict[str, Capabilities] = {
    "echo": _OFFLINE,
    "scripted": _OFFLINE,
    "openai-compatible": _CHAT_COMPLETIONS,
    "openai": _CHAT_COMPLETIONS,
    "gemini": Capabilities(
        generation=SAMPLING | {"top_k", "thinking_level", "thinking_budget", "thinking_summaries"},
        thinking_levels=frozenset({"minimal", "low", "medium", "high"}),
        response_format=True,
        json_mode=True,
        tool_choice=gemini_tool_choice,
        media={kind: _ANY_INLINE_OR_URI for kind in MEDIA_TYPES},
    ),
    "anthropic": Capabilities(
        # Claude samples as it sees fit: the Messages API has no temperature, top_p or top_k
        generation=frozenset(
            {"max_output_tokens", "stop_sequences", "thinking_level", "thinking_budget"}
            | {"thinking_summaries"}
        ),
        thinking_levels=frozenset({"minimal", "low", "medium", "high", "xhigh"}),
        response_format=True,
        tool_choice=anthropic_tool_choice,
        media={
            "image": Media(
                inline=frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
            ),
            "document": Media(inline=frozenset({"application/pdf", PLAIN_TEXT})),
        },
        min_thinking_budget=1024,
        not_while_thinking=frozenset({"tool_choice"}),
    ),
}


def refusals(provider: str, model: str, spec: InteractionSpec) -> list[str]:
    """What in a model interaction's spec the model's provider would not act on, one message
    per field or part; empty when everything asked for is honoured."""
    can = CAPABILITIES.get(provider, _OFFLINE)
    by = f"model {model!r} (provider {provider})"
    out: list[str] = []
    for i, tool in enumerate(spec.tools or []):
        if tool.type not in ("function", "mcp_server"):
            out.append(
                f"tools[{i}]: the built-in tool {tool.type!r} is not available to {by}; "
                "only function and mcp_server tools are (built-in tools run in agent "
                "interactions)"
            )
    config = spec.generation_config.to_wire() if spec.generation_config else {}
    out.extend(_generation_refusals(can, by, config))
    if spec.response_format is not None:
        if not can.response_format:
            out.append(f"response_format is not supported by {by}")
        elif not isinstance(spec.response_format, dict):
            out.append(f"response_format must be one JSON schema (an object) for {by}")
    mime = spec.response_mime_type
    if mime not in (None, PLAIN_TEXT, JSON):
        out.append(f"response_mime_type {mime!r} is not supported by {by}: use {JSON!r}")
    elif mime == JSON and spec.response_format is None and not can.json_mode:
        out.append(
            f"response_mime_type {JSON!r} is not supported by {by}"
            + (" without a response_format schema" if can.response_format else "")
        )
    out.extend(media_refusals(provider, model, input_steps(spec.to_wire()["input"])))
    return list(dict.fromkeys(out))


def _generation_refusals(can: Capabilities, by: str, config: dict[str, Any]) -> Iterable[str]:
    for name in config:
        if name != "tool_choice" and name not in can.generation:
            yield f"generation_config.{name} is not supported by {by}"
    level = config.get("thinking_level")
    if "thinking_level" in can.generation and level and level not in can.thinking_levels:
        yield (
            f"generation_config.thinking_level {level!r} is not supported by {by}: "
            f"use one of {', '.join(sorted(can.thinking_levels))}"
        )
    budget = config.get("thinking_budget")
    if "thinking_budget" in can.generation and budget and budget < can.min_thinking_budget:
        yield (
            f"generation_config.thinking_budget must be at least {can.min_thinking_budget} "
            f"(or 0, no thinking) for {by}"
        )
    ceiling = config.get("max_output_tokens")
    if budget and ceiling and can.min_thinking_budget and ceiling <= budget:
        yield (
            f"generation_config.max_output_tokens ({ceiling}) must exceed thinking_budget "
            f"({budget}) for {by}: thinking counts toward it"
        )
    thinking = config.get("thinking_level") or config.get("thinking_budget")
    for name in sorted(can.not_while_thinking if thinking else ()):
        value = config.get(name)
        if value is not None and not (name == "tool_choice" and value in ("auto", "none")):
            yield f"generation_config.{name} {value!r} cannot be used while {by} thinks"
    if (choice := config.get("tool_choice")) is not None:
        if can.tool_choice is None:
            yield f"generation_config.tool_choice is not supported by {by}"
        elif can.tool_choice(choice) is None:
            yield (
                f"generation_config.tool_choice {choice!r} is not supported by {by}: use "
                '"auto", "any", "none", or allowed_tools naming one tool with mode "any"'
            )


def media_refusals(provider: str, model: str, steps: Iterable[dict[str, Any]]) -> list[str]:
    """The image, audio, document and video parts of user turns that the provider cannot take,
    each named by its place: nothing is dropped on the way to the model."""
    can = CAPABILITIES.get(provider, _OFFLINE)
    by = f"model {model!r} (provider {provider})"
    out: list[str] = []
    for step in steps:
        if step.get("type") != "user_input":
            continue
        for part in step.get("content") or []:
            kind, mime = part.get("type"), part.get("mime_type")
            if kind not in MEDIA_TYPES:
                continue
            where = f"input: {kind} content"
            rule = can.media.get(kind)
            if not (part.get("uri") or (part.get("data") and mime)):
                out.append(f"{where} needs a uri, or data with its mime_type")
            elif rule is None:
                out.append(f"{where} is not supported by {by}")
            elif part.get("uri") and not rule.uri:
                out.append(f"{where} by uri is not supported by {by}; send it as data")
            elif part.get("uri") and rule.uri_needs_mime_type and not mime:
                out.append(f"{where} by uri needs its mime_type for {by}")
            elif not part.get("uri") and rule.inline is not None and mime not in rule.inline:
                out.append(
                    f"{where} of type {mime!r} is not supported by {by}; "
                    f"it takes {', '.join(sorted(rule.inline))}"
                )
    return out
