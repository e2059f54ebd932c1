"""A local server speaking the Gemini API (generativelanguage `generateContent` and
`streamGenerateContent` over SSE), so the Gemini provider is tested through the official
google-genai client against the real wire format: Google's request schema and error bodies,
thought parts, and the thought signatures Gemini 3 demands back on function calls."""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web

from tether.dev.fakes.serving import LocalServer, Reply, serve

__all__ = ["GeminiServer", "Reply"]

TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
"""What a service account's assertion is addressed to, wherever its key file sends it."""


class Struct:
    """A google.protobuf.Struct field: any JSON object (function args, schemas)."""


class Value:
    """A google.protobuf.Value field, or one this server accepts without looking inside."""


# The request schema, after Gemini's v1beta reference. A message is a dict of its camelCase
# fields, a repeated field a one-item list, an enum a frozenset of its names; the scalars are
# str, bool, int, float and bytes (base64 text).
BLOB = {"mimeType": str, "data": bytes}
FILE_DATA = {"mimeType": str, "fileUri": str}
FUNCTION_CALL = {"id": str, "name": str, "args": Struct}
FUNCTION_RESPONSE = {
    "id": str,
    "name": str,
    "response": Struct,
    "parts": [Value],
    "willContinue": bool,
    "scheduling": frozenset({"SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT"}),
}
DATA_FIELDS = {
    "text": str,
    "inlineData": BLOB,
    "fileData": FILE_DATA,
    "functionCall": FUNCTION_CALL,
    "functionResponse": FUNCTION_RESPONSE,
    "executableCode": Value,
    "codeExecutionResult": Value,
    "toolCall": Value,
    "toolResponse": Value,
}
PART = {
    **DATA_FIELDS,
    "thought": bool,
    "thoughtSignature": bytes,
    "videoMetadata": Value,
    "partMetadata": Value,
    "mediaResolution": Value,
}
CONTENT = {"role": str, "parts": [PART]}
FUNCTION_DECLARATION = {
    "name": str,
    "description": str,
    "behavior": frozenset({"UNSPECIFIED", "BLOCKING", "NON_BLOCKING"}),
    "parameters": Struct,
    "parametersJsonSchema": Value,
    "response": Struct,
    "responseJsonSchema": Value,
}
BUILT_IN_TOOLS = (
    "googleSearch",
    "googleSearchRetrieval",
    "codeExecution",
    "urlContext",
    "computerUse",
    "fileSearch",
    "googleMaps",
    "mcpServers",
)
TOOL = {"functionDeclarations": [FUNCTION_DECLARATION], **dict.fromkeys(BUILT_IN_TOOLS, Value)}
TOOL_CONFIG = {
    "functionCallingConfig": {
        "mode": frozenset({"MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"}),
        "allowedFunctionNames": [str],
        "streamFunctionCallArguments": bool,
    },
    "retrievalConfig": Value,
    "includeServerSideToolInvocations": bool,
}
THINKING_LEVELS = {"THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH", "XHIGH"}
GENERATION_CONFIG = {
    "temperature": float,
    "topP": float,
    "topK": int,
    "candidateCount": int,
    "maxOutputTokens": int,
    "stopSequences": [str],
    "seed": int,
    "presencePenalty": float,
    "frequencyPenalty": float,
    "responseMimeType": str,
    "responseSchema": Struct,
    "responseJsonSchema": Value,
    "responseModalities": [str],
    "responseLogprobs": bool,
    "logprobs": int,
    "enableEnhancedCivicAnswers": bool,
    "mediaResolution": frozenset(
        {
            "MEDIA_RESOLUTION_UNSPECIFIED",
            "MEDIA_RESOLUTION_LOW",
            "MEDIA_RESOLUTION_MEDIUM",
            "MEDIA_RESOLUTION_HIGH",
        }
    ),
    "speechConfig": Value,
    "imageConfig": Value,
    "audioTranscriptionConfig": Value,
    "thinkingConfig": {
        "includeThoughts": bool,
        "thinkingBudget": int,
        "thinkingLevel": frozenset(THINKING_LEVELS),
    },
}
REQUEST = {
    "model": str,
    "contents": [CONTENT],
    "systemInstruction": CONTENT,
    "tools": [TOOL],
    "toolConfig": TOOL_CONFIG,
    "generationConfig": GENERATION_CONFIG,
    "safetySettings": [{"category": str, "threshold": str}],
    "cachedContent": str,
    "serviceTier": str,
    "store": bool,
    # The google-genai client sends these two from its config on the Gemini API too.
    "labels": Value,
    "continuationToken": str,
}
REQUIRED = {
    "inlineData": ("mimeType", "data"),
    "fileData": ("fileUri",),
    "functionCall": ("name",),
    "functionResponse": ("name", "response"),
}
FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
# Gemini's documented stand-ins for a signature it never issued (history built elsewhere).
SKIP_SIGNATURES = {b"skip_thought_signature_validator", b"context_engineering_is_the_way_to_go"}
STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
SCALAR_TYPES = {str: "TYPE_STRING", bool: "TYPE_BOOL", int: "TYPE_INT32", float: "TYPE_FLOAT"}


class Refusal(Exception):
    """A request Gemini refuses, with its status and Google's wording."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class GeminiServer(LocalServer):
    """Serves `/v1beta/models/{model}:generateContent` and `:streamGenerateContent` (and the
    same under `/v1`, where google-genai 3.x sends by default), with an API key; and Vertex AI's
    `/{v1|v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{model}:...`, with an
    access token its own `/token` endpoint issued to a registered service account."""

    _signed_calls: dict[str, set[bytes]] = field(default_factory=dict, init=False, repr=False)
    """Per function call sent ({name, args}), the signatures it went out with."""
    _issued: set[bytes] = field(default_factory=set, init=False, repr=False)
    """Every signature sent, on calls and on text alike."""

    service_accounts: dict[str, str] = field(default_factory=dict)
    """Vertex AI: the public key (PEM) of each service account (by client_email) whose signed
    assertions the token endpoint takes."""
    vertex_calls: list[tuple[str, str, str]] = field(default_factory=list)
    """Vertex AI: (project, location, model) of each call, with a token the server issued."""
    _tokens: set[str] = field(default_factory=set, init=False, repr=False)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{version:v1|v1beta}/models/{target}", self._generate)
        vertex = "/{version:v1|v1beta1}/projects/{project}/locations/{location}"
        app.router.add_post(vertex + "/publishers/google/models/{target}", self._generate)
        app.router.add_post("/token", self._token)
        return app

    @property
    def token_uri(self) -> str:
        """Where a service account's key file sends its signed assertions (`token_uri`)."""
        return f"{self.base_url}/token"

    async def _token(self, request: web.Request) -> web.Response:
        """OAuth 2.0's JWT bearer grant (RFC 7523), as Google's token endpoint serves it to
        service accounts: a JWT signed with the account's key buys a short-lived access token."""
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            claims = jwt.decode(str(form.get("assertion")), options={"verify_signature": False})
            key = self.service_accounts[claims["iss"]]
            jwt.decode(str(form["assertion"]), key, algorithms=["RS256"], audience=TOKEN_AUDIENCE)
        except (jwt.PyJWTError, KeyError) as error:
            description = f"Invalid JWT Signature or account: {error!r}"
            return web.json_response(
                {"error": "invalid_grant", "error_description": description}, status=400
            )
        if "https://www.googleapis.com/auth/cloud-platform" not in claims.get("scope", ""):
            return web.json_response({"error": "invalid_scope"}, status=400)
        token = f"ya29.local-{secrets.token_urlsafe(16)}"
        self._tokens.add(token)
        return web.json_response(
            {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
        )

    @property
    def url(self) -> str:
        """The client's base_url: it adds `/{version}/models/...` itself."""
        return self.base_url

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].partition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return google_error(404, f"Method not found: {method or model}.")
        try:
            body = json.loads(await request.text())
        except ValueError:
            return google_error(400, "Invalid JSON payload received. Unexpected token.")
        if not isinstance(body, dict):
            return google_error(
                400,
                'Invalid JSON payload received. Unknown name "": Root element must be a message.',
            )
        # Every request that parses is recorded, refused or not; a refused one hands its reply
        # back, so a test's scripted replies stay in step with the calls that reached the model.
        reply = await self.next_reply(request, body)
        try:
            if project := request.match_info.get("project"):
                bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
                if bearer not in self._tokens:
                    raise Refusal(
                        "Request had invalid authentication credentials. Expected OAuth 2 "
                        "access token, login cookie or other valid authentication credential.",
                        401,
                    )
                self.vertex_calls.append((project, request.match_info["location"], model))
            elif not (request.headers.get("x-goog-api-key") or request.query.get("key")):
                raise Refusal(
                    "Method doesn't allow unregistered callers (callers without established "
                    "identity). Please use API Key or other form of API consumer identity to call "
                    "this API.",
                    403,
                )
            checked = conform(body, REQUEST, "")
            self._check(checked)
        except Refusal as refusal:
            self.served -= 1
            return google_error(refusal.status, str(refusal))
        if reply.status != 200:
            return google_error(reply.status, reply.error, reply.retry_after)

        thinking = checked.get("generationConfig", {}).get("thinkingConfig", {})
        parts = self._parts(reply, show_thoughts=thinking.get("includeThoughts", False))
        base = {"modelVersion": model, "responseId": uuid.uuid4().hex[:22]}
        finish = {"finishReason": "STOP", "index": 0}
        usage = {"usageMetadata": usage_metadata(checked, reply)}
        if method == "generateContent":
            content = {"content": {"role": "model", "parts": parts}, **finish}
            return web.json_response({"candidates": [content], **usage, **base})

        pieces = [piece for part in parts for piece in stream_pieces(part)]
        chunks = [
            {"candidates": [{"content": {"role": "model", "parts": [piece]}, "index": 0}], **base}
            for piece in pieces
        ]
        chunks[-1]["candidates"][0] |= finish
        chunks[-1] |= usage
        if request.query.get("alt") != "sse":
            # Without alt=sse Google streams one JSON array instead of events.
            return web.json_response(chunks)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in chunks:
            await response.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
        return response

    def _parts(self, reply: Reply, show_thoughts: bool) -> list[dict[str, Any]]:
        """The reply's parts, signing them as Gemini 3 does and remembering what it signed."""
        parts: list[dict[str, Any]] = []
        if reply.thinking and show_thoughts:
            parts.append({"text": reply.thinking, "thought": True})
        if reply.text or not reply.tool_calls:
            parts.append({"text": reply.text})
        calls = [
            {
                "functionCall": {
                    "name": call["name"],
                    "args": call.get("arguments", {}),
                    "id": f"call-{uuid.uuid4().hex[:8]}",
                }
            }
            for call in reply.tool_calls
        ]
        parts += calls
        if reply.signature:
            signature = decode_base64(reply.signature)
            if signature is None:
                raise ValueError(f"reply.signature is base64, as Gemini's are: {reply.signature!r}")
            self._issued.add(signature)
            # Of parallel calls only the first carries the signature, as Gemini sends them.
            signed = calls[0] if calls else parts[-1]
            signed["thoughtSignature"] = reply.signature
            if calls:
                key = call_key(calls[0]["functionCall"])
                self._signed_calls.setdefault(key, set()).add(signature)
        return parts

    def _check(self, request: dict[str, Any]) -> None:
        """The rules beyond field types that Gemini enforces, worded as it words them."""
        contents = request.get("contents", [])
        if not contents:
            raise Refusal("* GenerateContentRequest.contents: contents is not specified\n")
        for i, content in enumerate(contents):
            check_content(content, f"contents[{i}]")
            if content.get("role", "user") not in ("user", "model"):
                raise Refusal("Please use a valid role: user, model.")
        if "systemInstruction" in request:
            check_content(request["systemInstruction"], "system_instruction")
            for j, part in enumerate(request["systemInstruction"]["parts"]):
                if "text" not in part:
                    raise Refusal(
                        f"* GenerateContentRequest.system_instruction.parts[{j}]: "
                        "system_instruction supports text parts only\n"
                    )
        for t, tool in enumerate(request.get("tools", [])):
            for d, declaration in enumerate(tool.get("functionDeclarations", [])):
                where = f"* GenerateContentRequest.tools[{t}].function_declarations[{d}]"
                if not FUNCTION_NAME.fullmatch(declaration.get("name", "")):
                    raise Refusal(
                        f"{where}.name: Invalid function name. Must start with a letter or an "
                        "underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), "
                        "dots (.), colons (:), or dashes (-), with a maximum length of 64.\n"
                    )
                if "parameters" in declaration and "parametersJsonSchema" in declaration:
                    raise Refusal(f"{where}: parameters and parameters_json_schema are exclusive\n")
        thinking = request.get("generationConfig", {}).get("thinkingConfig", {})
        if "thinkingBudget" in thinking and "thinkingLevel" in thinking:
            raise Refusal(
                "* GenerateContentRequest.generation_config.thinking_config: thinking_budget and "
                "thinking_level cannot be set together\n"
            )
        check_turns(contents)
        self._check_signatures(contents)

    def _check_signatures(self, contents: list[dict[str, Any]]) -> None:
        """Gemini 3 refuses a signature it never issued, anywhere, and a function call of the
        current turn (since the last user message) without the signature it went out with."""
        for content in contents:
            for part in content["parts"]:
                signature = part.get("thoughtSignature")
                if signature is None or skipped(signature):
                    continue
                if decode_base64(signature) not in self._issued:
                    raise Refusal("Corrupted thought signature.")
        questions = [
            i
            for i, content in enumerate(contents)
            if content.get("role", "user") == "user"
            and not any("functionResponse" in part for part in content["parts"])
        ]
        start = questions[-1] + 1 if questions else 0
        for i, content in enumerate(contents[start:], start):
            for part in content["parts"]:
                sent_with = self._signed_calls.get(call_key(part.get("functionCall", {})))
                signature = part.get("thoughtSignature")
                if not sent_with or (signature is not None and skipped(signature)):
                    continue
                if signature is None:
                    # Gemini's own words; its `position` is taken here as the content's place.
                    raise Refusal(
                        "Function call is missing a thought_signature in functionCall parts. This "
                        "is required for tools to work correctly, and missing thought_signature "
                        "may lead to degraded model performance. Additional data, function call "
                        f"`default_api:{part['functionCall']['name']}` , position {i + 1}. Please "
                        "refer to https://ai.google.dev/gemini-api/docs/thought-signatures for "
                        "more details."
                    )
                if decode_base64(signature) not in sent_with:
                    raise Refusal("Corrupted thought signature.")


def conform(value: Any, schema: Any, path: str) -> Any:
    """`value` checked against `schema` as Google's proto3 JSON parser does, with snake_case keys
    renamed to camelCase (it accepts both) and nulls dropped; raises Refusal in its wording."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise Refusal(f"Invalid value at '{path}' (TYPE_MESSAGE), {json.dumps(value)}")
        message = {}
        for key, item in value.items():
            name = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), key)
            if name not in schema:
                at = f" at '{path}'" if path else ""
                raise Refusal(
                    f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.'
                )
            if item is not None:
                snake = re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), name)
                message[name] = conform(item, schema[name], f"{path}.{snake}" if path else snake)
        return message
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise Refusal(f"Invalid value at '{path}' (TYPE_MESSAGE), {json.dumps(value)}")
        return [conform(item, schema[0], f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(schema, frozenset):
        # proto3 JSON takes an enum's number as well as its name.
        if (isinstance(value, str) and value in schema) or type(value) is int:
            return value
        raise Refusal(f"Invalid value at '{path}' (TYPE_ENUM), {json.dumps(value)}")
    if schema is bytes:
        if isinstance(value, str) and decode_base64(value) is not None:
            return value
        failed = f"Base64 decoding failed for {json.dumps(value)}"
        raise Refusal(f"Invalid value at '{path}' (TYPE_BYTES), {failed}")
    number = type(value) in (int, float)
    valid = {
        Value: True,
        Struct: isinstance(value, dict),
        str: isinstance(value, str),
        bool: isinstance(value, bool),
        # proto3 JSON takes an integral number or its decimal string for an int32.
        int: (number and float(value).is_integer())
        or (isinstance(value, str) and value.lstrip("-").isdigit()),
        float: number,
    }[schema]
    if not valid:
        kind = SCALAR_TYPES.get(schema, "type.googleapis.com/google.protobuf.Struct")
        raise Refusal(f"Invalid value at '{path}' ({kind}), {json.dumps(value)}")
    return value


def check_content(content: dict[str, Any], path: str) -> None:
    """A content has parts, and each part exactly one kind of data with its required fields."""
    if not content.get("parts"):
        raise Refusal(f"* GenerateContentRequest.{path}.parts: contents.parts must not be empty.\n")
    for j, part in enumerate(content["parts"]):
        where = f"{path}.parts[{j}]"
        data = [name for name in DATA_FIELDS if name in part]
        if not data:
            raise Refusal(
                f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one "
                "initialized field\n"
            )
        if len(data) > 1:
            raise Refusal(
                f"Invalid value at '{where}': oneof field 'data' is already set. "
                f"Cannot set '{data[1]}'"
            )
        for required in REQUIRED.get(data[0], ()):
            if required not in part[data[0]]:
                snake = re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), f"{data[0]}.{required}")
                raise Refusal(f"* GenerateContentRequest.{where}.{snake}: required field not set\n")


def check_turns(contents: list[dict[str, Any]]) -> None:
    """A function call turn follows a user turn; a function response turn follows the call turn
    and answers each of its calls."""
    for i, content in enumerate(contents):
        calls = [part["functionCall"] for part in content["parts"] if "functionCall" in part]
        answers = [part for part in content["parts"] if "functionResponse" in part]
        before = contents[i - 1] if i else None
        if calls and (before is None or before.get("role", "user") != "user"):
            raise Refusal(
                "Please ensure that function call turn comes immediately after a user turn or "
                "after a function response turn."
            )
        if not answers:
            continue
        asked = [
            part["functionCall"]["name"]
            for part in (before["parts"] if before and before.get("role") == "model" else [])
            if "functionCall" in part
        ]
        if not asked:
            raise Refusal(
                "Please ensure that function response turn comes immediately after a function "
                "call turn."
            )
        if len(answers) != len(asked):
            raise Refusal(
                "Please ensure that the number of function response parts is equal to the number "
                "of function call parts of the function call turn."
            )
        for j, part in enumerate(content["parts"]):
            name = part.get("functionResponse", {}).get("name")
            if name is not None and name not in asked:
                raise Refusal(
                    f"* GenerateContentRequest.contents[{i}].parts[{j}].function_response.name: "
                    f"{name} answers no function call of the function call turn\n"
                )


def stream_pieces(part: dict[str, Any]) -> list[dict[str, Any]]:
    """How one part streams: answer text word by word (its other fields on the last word),
    anything else whole."""
    if "text" not in part or part.get("thought"):
        return [part]
    words = part["text"].split()
    pieces = [{"text": word if i == 0 else f" {word}"} for i, word in enumerate(words)]
    pieces = pieces or [{"text": ""}]
    pieces[-1] |= {key: value for key, value in part.items() if key != "text"}
    return pieces


def usage_metadata(request: dict[str, Any], reply: Reply) -> dict[str, int]:
    """Token counts, one token a word: Gemini counts thinking even when it does not show it."""
    system = request.get("systemInstruction", {"parts": []})
    prompt = sum(
        len(part.get("text", "").split())
        for content in [system, *request["contents"]]
        for part in content["parts"]
    )
    answer = len(reply.text.split()) + len(reply.tool_calls)
    thoughts = len(reply.thinking.split())
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": answer}
    if reply.thinking:
        usage["thoughtsTokenCount"] = thoughts
    if reply.cached_tokens:
        usage["cachedContentTokenCount"] = reply.cached_tokens
    return {**usage, "totalTokenCount": prompt + answer + thoughts}


def call_key(call: dict[str, Any]) -> str:
    """A function call by name and arguments: how the server knows its own call when it comes
    back, whether or not the client kept the call's id."""
    return json.dumps([call.get("name"), call.get("args", {})], sort_keys=True)


def skipped(signature: str) -> bool:
    """Whether a signature is one of the stand-ins Gemini accepts without validating."""
    return signature.encode() in SKIP_SIGNATURES or decode_base64(signature) in SKIP_SIGNATURES


def decode_base64(text: Any) -> bytes | None:
    """Bytes as proto3 JSON reads them: standard or URL-safe base64, padded or not."""
    if not isinstance(text, str):
        return None
    standard = text.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except binascii.Error:
        return None


def google_error(status: int, message: str, retry_after: float | None = None) -> web.Response:
    """Google's error body; a retry delay goes both in Google's RetryInfo and a Retry-After."""
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": STATUSES.get(status, "UNKNOWN"),
    }
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"}
        ]
    return web.json_response({"error": error}, status=status, headers=headers)


if __name__ == "__main__":
    serve(GeminiServer)
