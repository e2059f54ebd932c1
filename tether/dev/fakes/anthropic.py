"""A local server speaking Anthropic's Messages API (streaming and not, with tool use, signed
thinking blocks, usage and Anthropic's error bodies), so the Anthropic provider is tested against
the real wire format. It refuses what Anthropic refuses, in Anthropic's words: a body outside the
published schema, a `tool_use` left without its `tool_result`, and, with thinking on, a final
assistant turn that dropped its thinking block or carries a signature this server never issued."""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from tether.dev.fakes.serving import LocalServer, Reply, serve

__all__ = ["AnthropicServer", "Reply"]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
IMAGE_MAGIC = {
    "image/jpeg": b"\xff\xd8\xff",
    "image/png": b"\x89PNG",
    "image/gif": b"GIF8",
    "image/webp": b"RIFF",
}
THINKING = ("thinking", "redacted_thinking")
THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


# The request schema, as the API reference publishes it. Anthropic's schema errors read as
# pydantic's ("messages.1.content.0.thinking.signature: Field required", the block's type in the
# path), so pydantic words them here too.


def _as_blocks(content: Any) -> Any:
    """A string where blocks may go is one text block (none when empty)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CacheControl(Strict):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class Cacheable(Strict):
    cache_control: CacheControl | None = None


class TextBlock(Cacheable):
    type: Literal["text"]
    text: str
    citations: list[dict[str, Any]] | None = None


class Base64Source(Strict):
    type: Literal["base64"]
    data: str

    @model_validator(mode="after")
    def _decodes(self) -> Base64Source:
        try:
            data = base64.b64decode(self.data, validate=True)
        except binascii.Error:
            raise PydanticCustomError("base64", "invalid base64 data") from None
        if not data.startswith(IMAGE_MAGIC.get(self.media_type, b"")):
            raise PydanticCustomError(
                "media_type",
                "Image does not match the provided media type {media_type}",
                {"media_type": self.media_type},
            )
        return self


class Base64Image(Base64Source):
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]


class Base64Pdf(Base64Source):
    media_type: Literal["application/pdf"]


class PlainText(Strict):
    type: Literal["text"]
    media_type: Literal["text/plain"]
    data: str


class UrlSource(Strict):
    type: Literal["url"]
    url: str


class ImageBlock(Cacheable):
    type: Literal["image"]
    source: Annotated[Base64Image | UrlSource, Field(discriminator="type")]


class DocumentBlock(Cacheable):
    type: Literal["document"]
    source: Annotated[Base64Pdf | PlainText | UrlSource, Field(discriminator="type")]
    citations: dict[str, Any] | None = None
    context: str | None = None
    title: str | None = None


class ToolUseBlock(Cacheable):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


ResultBlock = Annotated[TextBlock | ImageBlock | DocumentBlock, Field(discriminator="type")]


class ToolResultBlock(Cacheable):
    type: Literal["tool_result"]
    tool_use_id: str
    content: Annotated[list[ResultBlock], BeforeValidator(_as_blocks)] = []
    is_error: bool | None = None


class ThinkingBlock(Strict):
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(Strict):
    type: Literal["redacted_thinking"]
    data: str


Block = Annotated[
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock,
    Field(discriminator="type"),
]
ROLE_OF = {
    "tool_use": "assistant",
    "thinking": "assistant",
    "redacted_thinking": "assistant",
    "tool_result": "user",
}


class Message(Strict):
    role: Literal["user", "assistant"]
    content: Annotated[list[Block], BeforeValidator(_as_blocks)]


class InputSchema(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["object"]


class Tool(Cacheable):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,128}$")
    description: str | None = None
    input_schema: InputSchema
    type: Literal["custom"] | None = None
    strict: bool | None = None


class ToolChoiceAuto(Strict):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(ToolChoiceAuto):
    type: Literal["any"]


class ToolChoiceTool(ToolChoiceAuto):
    type: Literal["tool"]
    name: str


class ToolChoiceNone(Strict):
    type: Literal["none"]


class ThinkingEnabled(Strict):
    type: Literal["enabled"]
    budget_tokens: int = Field(ge=1024)
    display: Literal["summarized", "omitted"] | None = None


class ThinkingAdaptive(Strict):
    type: Literal["adaptive"]
    display: Literal["summarized", "omitted"] | None = None


class ThinkingDisabled(Strict):
    type: Literal["disabled"]


class Metadata(Strict):
    user_id: str | None = None


class MessagesRequest(Strict):
    model: str
    max_tokens: int = Field(ge=1)
    messages: list[Message]
    system: Annotated[list[TextBlock], BeforeValidator(_as_blocks)] = []
    tools: list[Tool] = []
    tool_choice: (
        Annotated[
            ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone,
            Field(discriminator="type"),
        ]
        | None
    ) = None
    stop_sequences: list[str] = []
    stream: bool = False
    metadata: Metadata | None = None
    thinking: (
        Annotated[
            ThinkingEnabled | ThinkingAdaptive | ThinkingDisabled, Field(discriminator="type")
        ]
        | None
    ) = None
    service_tier: Literal["auto", "standard_only"] | None = None
    # Accepted, as the API and the client know them, and otherwise ignored.
    output_format: Any = None
    output_config: Any = None
    container: Any = None
    mcp_servers: Any = None
    context_management: Any = None
    cache_control: Any = None
    diagnostics: Any = None
    inference_geo: Any = None
    speed: Any = None

    @property
    def thinks(self) -> bool:
        return self.thinking is not None and self.thinking.type != "disabled"


def describe(error: ValidationError) -> str:
    """The first schema error as Anthropic words it: `path.to.field: message`."""
    first = error.errors(include_url=False)[0]
    path = ".".join(str(part) for part in first["loc"])
    if first["type"] == "union_tag_not_found":
        return f"{path}.type: Field required"
    return f"{path}: {first['msg']}" if path else first["msg"]


def refusal(request: MessagesRequest, signatures: dict[str, str]) -> str | None:
    """What Anthropic refuses beyond the schema, in its words; `signatures` maps each signature
    this server issued to the thinking it signed."""
    messages = request.messages
    if not messages:
        return "messages: at least one message is required"
    if messages[0].role != "user":
        return 'messages: first message must use the "user" role'
    if len({tool.name for tool in request.tools}) < len(request.tools):
        return "tools: Tool names must be unique."
    for i, message in enumerate(messages):
        if not message.content and not (i == len(messages) - 1 and message.role == "assistant"):
            return (
                f"messages.{i}: all messages must have non-empty content except for the optional"
                " final assistant message"
            )
        for j, block in enumerate(message.content):
            if block.type == "text" and not block.text.strip():
                return "messages: text content blocks must contain non-whitespace text"
            role = ROLE_OF.get(block.type, message.role)
            if role != message.role:
                where = f"messages.{i}.content.{j}"
                return f"{where}: `{block.type}` blocks may only be in `{role}` messages"
            if block.type == "thinking" and signatures.get(block.signature) != block.thinking:
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
    return _unpaired_tools(messages) or (_thinking_refusal(request) if request.thinks else None)


def _unpaired_tools(messages: list[Message]) -> str | None:
    # Consecutive messages of one role are one turn to Anthropic, so pairing is between turns.
    turns: list[tuple[str, list[tuple[int, int, Any]]]] = []
    for i, message in enumerate(messages):
        located = [(i, j, block) for j, block in enumerate(message.content)]
        if turns and turns[-1][0] == message.role:
            turns[-1][1].extend(located)
        else:
            turns.append((message.role, located))
    for t, (role, blocks) in enumerate(turns):
        if role == "assistant":
            answers = turns[t + 1][1] if t + 1 < len(turns) else []
            answered = {b.tool_use_id for _, _, b in answers if b.type == "tool_result"}
            missing = [
                (i, b.id) for i, _, b in blocks if b.type == "tool_use" and b.id not in answered
            ]
            if missing:
                ids = ", ".join(tool_id for _, tool_id in missing)
                return (
                    f"messages.{missing[0][0]}: `tool_use` ids were found without `tool_result`"
                    f" blocks immediately after: {ids}. Each"
                    " `tool_use` block must have a corresponding `tool_result` block in the next"
                    " message."
                )
            continue
        asked = {b.id for _, _, b in turns[t - 1][1] if b.type == "tool_use"} if t else set()
        for i, j, b in blocks:
            if b.type == "tool_result" and b.tool_use_id not in asked:
                return (
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result`"
                    f" blocks: {b.tool_use_id}. Each `tool_result` block must have a"
                    " corresponding `tool_use` block in the previous message."
                )
    return None


def _thinking_refusal(request: MessagesRequest) -> str | None:
    if request.thinking.type == "enabled" and request.thinking.budget_tokens >= request.max_tokens:
        return (
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our"
            f" documentation at {THINKING_DOCS}#max-tokens-and-context-window-size"
        )
    if request.tool_choice is not None and request.tool_choice.type in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    assistant = [i for i, m in enumerate(request.messages) if m.role == "assistant"]
    if not assistant:
        return None
    last = request.messages[assistant[-1]].content
    if any(b.type == "tool_use" for b in last) and last[0].type not in THINKING:
        return (
            f"messages.{assistant[-1]}.content.0.type: Expected `thinking` or"
            f" `redacted_thinking`, but found `{last[0].type}`. When `thinking` is enabled, a"
            " final `assistant` message must start with a thinking block (preceeding the"
            " lastmost set of `tool_use` and `tool_result` blocks). We recommend you include"
            " thinking blocks from previous turns. To avoid this requirement, disable"
            f" `thinking`. Please consult our documentation at {THINKING_DOCS}"
        )
    return None


def input_words(request: MessagesRequest) -> int:
    """The fake's token count: words of every text in the request, the system's included."""
    texts = [block.text for block in request.system]
    for message in request.messages:
        for block in message.content:
            inner = block.content if block.type == "tool_result" else [block]
            texts += [b.text for b in inner if b.type == "text"]
    return sum(len(text.split()) for text in texts)


def pieces(text: str) -> list[str]:
    """`text` cut word by word, each word after the first carrying the whitespace before it."""
    cut = re.findall(r"\s*\S+", text) or [text]
    cut[-1] += text[len("".join(cut)) :]
    return cut


def stream_block(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A content block as Anthropic streams it: what `content_block_start` carries, then the
    deltas that complete it."""
    if block["type"] == "thinking":
        words = [{"type": "thinking_delta", "thinking": p} for p in pieces(block["thinking"])]
        signed = {"type": "signature_delta", "signature": block["signature"]}
        return {"type": "thinking", "thinking": "", "signature": ""}, [*words, signed]
    if block["type"] == "text":
        return {"type": "text", "text": ""}, [
            {"type": "text_delta", "text": p} for p in pieces(block["text"])
        ]
    arguments = json.dumps(block["input"])
    half = len(arguments) // 2
    return {**block, "input": {}}, [
        {"type": "input_json_delta", "partial_json": p}
        for p in (arguments[:half], arguments[half:])
    ]


def api_key(headers: Mapping[str, str]) -> str | None:
    """The key of a request: `x-api-key` as the API reference documents it, or the
    `Authorization: Bearer` that the official Python client (2.14) sends its api_key in."""
    bearer = headers.get("authorization", "")
    return headers.get("x-api-key") or (bearer[7:] if bearer.startswith("Bearer ") else None)


def error_response(status: int, message: str, retry_after: float | None = None) -> web.Response:
    headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
    error = {"type": ERROR_TYPES.get(status, "api_error"), "message": message}
    return web.json_response({"type": "error", "error": error}, status=status, headers=headers)


@dataclass
class AnthropicServer(LocalServer):
    """Answers `POST /v1/messages`. A reply's thinking is sent only when the request enables
    thinking, signed with the reply's signature (or one made up), which is remembered: a later
    request may carry back only thinking blocks this server signed, unchanged."""

    signatures: dict[str, str] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self._create)
        return app

    @property
    def url(self) -> str:
        return self.base_url

    @property
    def api_keys(self) -> list[str | None]:
        """The key each recorded request carried, in either of the headers Anthropic reads."""
        return [api_key({k.lower(): v for k, v in headers.items()}) for headers in self.headers]

    async def _create(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError as error:
            return error_response(400, f"The request body is not valid JSON: {error}")
        # Every request with a JSON body is recorded and consumes a reply, refused or not: a test
        # sees what a refused request carried, and the replies after it move up by one.
        reply = await self.next_reply(request, body)
        if api_key(request.headers) is None:
            return error_response(401, "x-api-key header is required")
        if "anthropic-version" not in request.headers:
            return error_response(400, "anthropic-version: header is required")
        try:
            parsed = MessagesRequest.model_validate(body)
        except ValidationError as error:
            return error_response(400, describe(error))
        if refused := refusal(parsed, self.signatures):
            return error_response(400, refused)
        if reply.status != 200:
            return error_response(reply.status, reply.error, reply.retry_after)

        content = self._content(reply, parsed.thinks)
        thought = reply.thinking if parsed.thinks else ""
        output = len(reply.text.split()) + len(thought.split()) + len(reply.tool_calls)
        usage = {
            "input_tokens": input_words(parsed),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": reply.cached_tokens,
        }
        message = {
            "id": f"msg_01{secrets.token_hex(12)}",
            "type": "message",
            "role": "assistant",
            "model": parsed.model,
            "content": content,
            "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": output},
        }
        headers = {"request-id": f"req_01{secrets.token_hex(12)}"}
        if not parsed.stream:
            return web.json_response(message, headers=headers)

        response = web.StreamResponse(
            headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)

        async def send(kind: str, **data: Any) -> None:
            event = json.dumps({"type": kind, **data})
            await response.write(f"event: {kind}\ndata: {event}\n\n".encode())

        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**usage, "output_tokens": 1},
        }
        await send("message_start", message=start)
        await send("ping")
        for index, block in enumerate(content):
            opened, deltas = stream_block(block)
            await send("content_block_start", index=index, content_block=opened)
            for delta in deltas:
                await send("content_block_delta", index=index, delta=delta)
            await send("content_block_stop", index=index)
        ending = {"stop_reason": message["stop_reason"], "stop_sequence": None}
        await send("message_delta", delta=ending, usage={"output_tokens": output})
        await send("message_stop")
        return response

    def _content(self, reply: Reply, thinks: bool) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        if thinks and reply.thinking:
            signature = reply.signature or base64.b64encode(secrets.token_bytes(48)).decode()
            self.signatures[signature] = reply.thinking
            content.append({"type": "thinking", "thinking": reply.thinking, "signature": signature})
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        content += [
            {
                "type": "tool_use",
                "id": f"toolu_01{secrets.token_hex(11)}",
                "name": call["name"],
                "input": call.get("arguments", {}),
            }
            for call in reply.tool_calls
        ]
        return content


if __name__ == "__main__":
    serve(AnthropicServer)
