"""The agent loop, in the sandbox's `agent` container: the brain. It holds the run token and
nothing else; it calls models only through the gateway's model proxy and does its work through
the workspace container's tools.

`python -m tether.sandbox.agent` reads the run (TETHER_RUN_FILE) and the token
(TETHER_RUN_TOKEN_FILE), or in a warm pool's pod waits for the operator to hand it both
(TETHER_CLAIM_PORT), loops model → tools until the model answers without a tool call, then
uploads /workspace and reports how the run ended.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
from aiohttp import web

from tether.api.internal import (
    FILES_LIMIT,
    GenerateReply,
    GenerateRequest,
    RunClaim,
    RunInput,
)
from tether.mcp_tools import Toolbox, http_client, model_result, servers_of

REPEAT_LIMIT = 3
RETRY_SECONDS = 120

BUILTIN_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "run_code",
        "description": "Run Python or bash in /workspace; returns exit code, stdout and stderr.",
        "parameters": {
            "type": "object",
            "properties": {
                "language": {"type": "string", "enum": ["python", "bash"]},
                "code": {"type": "string"},
            },
            "required": ["language", "code"],
        },
    },
    {
        "type": "function",
        "name": "read_file",
        "description": "Read a text file under /workspace.",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
    },
    {
        "type": "function",
        "name": "write_file",
        "description": "Write a text file under /workspace, creating folders as needed.",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
    {
        "type": "function",
        "name": "list_files",
        "description": "List a folder under /workspace.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
    },
    {
        "type": "function",
        "name": "fetch_url",
        "description": "Fetch a web page (http or https) allowed by this agent's network policy; "
        "save_as also writes it to that path under /workspace.",
        "parameters": {
            "type": "object",
            "properties": {"url": {"type": "string"}, "save_as": {"type": "string"}},
            "required": ["url"],
        },
    },
]
_TARGET = {
    "ref": {"type": "integer", "description": "A number from the page's list of targets."},
    "selector": {"type": "string", "description": "A CSS selector, when the list has no ref."},
}
BROWSER_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "browser_navigate",
        "description": "Open a web page (http or https) allowed by this agent's network policy in "
        "a headless browser, run its JavaScript, and return its visible text and a numbered "
        "list of the links, buttons and form fields on it; save_as also writes the page's "
        "whole visible text to that path under /workspace.",
        "parameters": {
            "type": "object",
            "properties": {"url": {"type": "string"}, "save_as": {"type": "string"}},
            "required": ["url"],
        },
    },
    {
        "type": "function",
        "name": "browser_click",
        "description": "Click a link, button or field of the open page (ref from its list, or a "
        "CSS selector); returns the page after the click.",
        "parameters": {"type": "object", "properties": _TARGET},
    },
    {
        "type": "function",
        "name": "browser_type",
        "description": "Type text into a form field of the open page (ref or selector), replacing "
        "what it held; submit presses Enter after. Returns the page after.",
        "parameters": {
            "type": "object",
            "properties": {**_TARGET, "text": {"type": "string"}, "submit": {"type": "boolean"}},
            "required": ["text"],
        },
    },
    {
        "type": "function",
        "name": "browser_screenshot",
        "description": "Save a PNG of the open page under /workspace (save_as, ending .png); "
        "full_page captures beyond the viewport.",
        "parameters": {
            "type": "object",
            "properties": {"save_as": {"type": "string"}, "full_page": {"type": "boolean"}},
            "required": ["save_as"],
        },
    },
]


def offered_tools(run_tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the model is offered besides MCP tools: the workspace's tools, the browser's when the
    run has a computer_use tool (the agent's or the request's; less those any of them
    excludes), then the client's function tools."""
    browsers = [tool for tool in run_tools if tool.get("type") == "computer_use"]
    excluded = {name for b in browsers for name in b.get("excluded_predefined_functions") or []}
    browser = [t for t in BROWSER_TOOLS if t["name"] not in excluded] if browsers else []
    client = [t for t in run_tools if t.get("type") == "function" and t.get("name")]
    return BUILTIN_TOOLS + browser + client


@dataclass
class Outcome:
    phase: str
    errors: list[dict[str, str]] = field(default_factory=list)


class Gateway:
    """The three doors the run token opens: the model proxy, the timeline, the outcome."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http = http
        self.base = base.rstrip("/") + "/internal/v1"
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        """One call, answered. The gateway restarting, or the cluster behind it away for a
        moment (503), or this run's previous model call still being counted (409
        call_in_flight), is waited out for up to RETRY_SECONDS."""
        deadline = time.monotonic() + RETRY_SECONDS
        delay = 0.2
        while True:
            try:
                async with self.http.request(
                    method, self.base + path, headers=self.headers, **kwargs
                ) as response:
                    body = await response.json(content_type=None)
                    code = (body.get("error") or {}).get("code") if isinstance(body, dict) else None
                    if response.status not in (503, 504) and code != "call_in_flight":
                        return response.status, body
                    reason = f"answered {response.status} {code}"
            except (aiohttp.ClientConnectionError, aiohttp.ContentTypeError, TimeoutError) as error:
                reason = repr(error)
            if time.monotonic() + delay > deadline:
                raise RuntimeError(
                    f"the gateway did not answer {path} for {RETRY_SECONDS}s: {reason}"
                )
            print(f"{method} {path}: {reason}; trying again in {delay:.1f}s", flush=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)

    async def step(self, step: dict[str, Any]) -> None:
        status, body = await self.call("POST", "/steps", json={"step": step})
        if status != 200:
            raise RuntimeError(f"the gateway refused a step: {body}")


async def use_tool(http: aiohttp.ClientSession, workspace: str, name: str, args: dict) -> dict:
    headers = {"X-Tether-Run": os.environ.get("TETHER_RUN", "")}
    async with http.post(f"{workspace}/tools/{name}", json=args, headers=headers) as response:
        return await response.json()


def public_steps(call_id: str, name: str, args: dict, result: dict) -> list[dict[str, Any]]:
    """How a built-in tool call shows in the interaction's timeline."""
    if name == "run_code":
        output = (
            result.get("stdout", "") + result.get("stderr", "")
            if result.get("ok")
            else result["error"]
        )
        failed = not result.get("ok") or result.get("exit_code") != 0
        return [
            {
                "type": "code_execution_call",
                "id": call_id,
                "arguments": {"language": args.get("language"), "code": args.get("code")},
            },
            {
                "type": "code_execution_result",
                "call_id": call_id,
                "result": output,
                "is_error": failed,
            },
        ]
    if name == "fetch_url":
        status = "success" if result.get("ok") and result.get("status", 500) < 400 else "error"
        return [
            {"type": "url_context_call", "id": call_id, "arguments": {"urls": [args.get("url")]}},
            {
                "type": "url_context_result",
                "call_id": call_id,
                "result": [{"url": args.get("url"), "status": status}],
                "is_error": status != "success",
            },
        ]
    return [
        {"type": "function_call", "id": call_id, "name": name, "arguments": args},
        {
            "type": "function_result",
            "call_id": call_id,
            "name": name,
            "result": result,
            "is_error": not result.get("ok"),
        },
    ]


def through_the_proxy(headers: dict[str, str]) -> httpx2.AsyncClient:
    """The agent's MCP calls leave through the egress proxy, under the run's allowlist."""
    return http_client(headers, proxy=os.environ.get("TETHER_EGRESS_PROXY") or None)


async def run_loop(run: RunInput, gateway: Gateway, http, workspace: str) -> Outcome:
    servers = servers_of(run.tools)
    async with Toolbox(servers, through_the_proxy) as toolbox:
        return await _loop(run, gateway, http, workspace, toolbox)


async def _loop(run: RunInput, gateway: Gateway, http, workspace: str, toolbox: Toolbox) -> Outcome:
    for source in run.files:  # the environment's sources, before anything else
        if source.repository:
            args = {"url": source.repository, "path": source.path, "if_absent": source.if_absent}
            written = await use_tool(http, workspace, "clone_repository", args)
        else:
            written = await use_tool(http, workspace, "write_file", source.model_dump())
        if not written.get("ok"):
            return Outcome("failed", [{"code": "invalid_source", "message": written["error"]}])
    conversation: list[dict[str, Any]] = list(run.steps)
    client_tools = {t["name"] for t in run.tools if t.get("type") == "function" and t.get("name")}
    tools = offered_tools(run.tools)
    workspace_tools = {t["name"] for t in tools} - client_tools
    tools += toolbox.declarations
    instruction = "\n\n".join(t for t in (run.system_instruction, toolbox.note()) if t) or None
    recent: list[str] = []
    for _ in range(run.max_steps):
        request = GenerateRequest(steps=conversation, tools=tools, system_instruction=instruction)
        status, body = await gateway.call("POST", "/generate", json=request.model_dump(mode="json"))
        if status == 402:
            return Outcome("budget_exceeded", [body["error"]])
        if status != 200:
            return Outcome(
                "failed", [body.get("error") or {"code": "model_error", "message": str(body)}]
            )
        answer = GenerateReply.model_validate(body)
        # The model's turn holds its thoughts, text and calls; the calls' results follow it.
        conversation.extend(answer.steps)
        if not answer.calls():
            return Outcome("completed")
        waiting_on_client = False
        calls = [(c["name"], c.get("arguments") or {}, c["id"]) for c in answer.calls()]
        for name, args, call_id in calls:
            signature = json.dumps([name, args], sort_keys=True)
            recent = [*recent, signature][-REPEAT_LIMIT:]
            if len(recent) == REPEAT_LIMIT and len(set(recent)) == 1:
                return Outcome(
                    "failed",
                    [
                        {
                            "code": "repeated_tool_call",
                            "message": f"the agent called {name} with the same arguments "
                            f"{REPEAT_LIMIT} times in a row; stopped it",
                        }
                    ],
                )
            if name in client_tools:
                await gateway.step(
                    {"type": "function_call", "id": call_id, "name": name, "arguments": args}
                )
                waiting_on_client = True
                continue
            if toolbox.owns(name):
                call = toolbox.pending(call_id, name, args)
                await gateway.step(call.call_step())
                answered = await toolbox.call(call)
                await gateway.step(answered)
                result = model_result(answered)
                conversation.append(
                    {"type": "function_result", "call_id": call_id, "name": name, "result": result}
                )
                continue
            if name in workspace_tools:
                result = await use_tool(http, workspace, name, args)
            else:
                result = {"ok": False, "error": f"there is no tool named {name!r}"}
            for step in public_steps(call_id, name, args, result):
                await gateway.step(step)
            conversation.append(
                {"type": "function_result", "call_id": call_id, "name": name, "result": result}
            )
        if waiting_on_client:
            return Outcome("requires_action")
        if answer.budget_exceeded:
            return Outcome(
                "budget_exceeded",
                [{"code": "budget_exceeded", "message": "the run spent its token budget"}],
            )
    return Outcome(
        "incomplete",
        [
            {
                "code": "max_steps",
                "message": f"the run took {run.max_steps} model turns without "
                "finishing (max_steps)",
            }
        ],
    )


def workspace_archive(root: Path) -> bytes:
    """/workspace as a tar.gz, up to the size limit (larger files are left out)."""
    buffer = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            size = path.stat().st_size
            if total + size > FILES_LIMIT:
                continue
            total += size
            tar.add(path, arcname=str(path.relative_to(root)))
    return buffer.getvalue()


def workspace_usage(root: Path) -> dict[str, int]:
    """How many regular files /workspace holds and their bytes (symlinks not followed)."""
    count = size = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            count += 1
            size += path.stat().st_size
    return {"file_count": count, "size_bytes": size}


async def wait_for(http: aiohttp.ClientSession, url: str, seconds: float = RETRY_SECONDS) -> None:
    """Until the workspace at `url` answers, and answers as this run's own."""
    run = os.environ.get("TETHER_RUN", "")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            async with http.get(url) as response:
                if response.status == 200 and (await response.json()).get("run", "") == run:
                    return
        except (aiohttp.ClientError, ValueError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up as this run's workspace in {seconds:.0f}s")


async def wait_for_claim(port: int) -> RunClaim:
    """A warm pool's pod: idle until the operator hands it a run on `port`. It takes the first
    run it is handed, and answers a second hand-over of the same run (an operator that restarted
    mid-claim) as taken, any other as refused. The server stays up, answering that way."""
    claimed: asyncio.Future[RunClaim] = asyncio.get_running_loop().create_future()

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "claimed": claimed.done()})

    async def claim(request: web.Request) -> web.Response:
        try:
            handed = RunClaim.model_validate_json(await request.read())
        except ValueError as error:  # pydantic's ValidationError among them
            return web.json_response({"error": str(error)}, status=400)
        if not claimed.done():
            claimed.set_result(handed)
        if claimed.result().run != handed.run:
            return web.json_response({"error": "this pod runs another run"}, status=409)
        return web.json_response({"run": handed.run})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/claim", claim)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    print(f"warm: waiting for a run on port {port}", flush=True)
    return await claimed


async def bind_workspace(http: aiohttp.ClientSession, workspace: str, run: str) -> None:
    """Tell a warm pod's workspace which run it now serves (it then trusts the run's egress
    authority), retrying while it starts."""
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        try:
            async with http.post(f"{workspace}/bind", json={"run": run}) as response:
                if response.status == 200:
                    return
                raise RuntimeError(f"the workspace refused the run: {await response.text()}")
        except aiohttp.ClientError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def main() -> int:
    workspace = os.environ["TETHER_WORKSPACE_URL"]
    if claim_port := os.environ.get("TETHER_CLAIM_PORT"):
        handed = await wait_for_claim(int(claim_port))
        os.environ["TETHER_RUN"] = handed.run
        print(f"warm: claimed by {handed.interaction}", flush=True)
        token, run = handed.token, handed.input
    else:
        token = Path(os.environ["TETHER_RUN_TOKEN_FILE"]).read_text().strip()
        run = RunInput.model_validate_json(Path(os.environ["TETHER_RUN_FILE"]).read_text())
    root = Path(os.environ.get("TETHER_WORKSPACE", "/workspace"))
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        gateway = Gateway(http, os.environ["TETHER_GATEWAY_URL"], token)
        if claim_port:
            await bind_workspace(http, workspace, handed.run)
        await wait_for(http, f"{workspace}/healthz")
        print(
            f"agent loop started: {len(run.steps)} steps of history, "
            f"{len(run.tools)} client tools, max_steps {run.max_steps}",
            flush=True,
        )
        outcome = await run_loop(run, gateway, http, workspace)
        print(f"run ended: {outcome.phase} {outcome.errors or ''}", flush=True)
        await gateway.call("PUT", "/files", data=workspace_archive(root))
        status, body = await gateway.call(
            "POST",
            "/finish",
            json={
                "phase": outcome.phase,
                "errors": outcome.errors,
                "workspace": workspace_usage(root),
            },
        )
        if status != 200:
            print(f"the gateway refused the outcome: {body}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
