"""The workspace container's tool server: the agent's hands. It runs untrusted code and holds no
credential of any kind; it listens on the pod's loopback only.

`python -m tether.sandbox.workspace` serves POST /tools/{run_code,read_file,write_file,
list_files,fetch_url,clone_repository} with JSON bodies, answering {"ok": true, ...} or
{"ok": false, "error"}.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import json
import os
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

WORKSPACE = Path(os.environ.get("TETHER_WORKSPACE", "/workspace"))
OUTPUT_LIMIT = 16 * 1024
FILE_LIMIT = 1024 * 1024
FETCH_LIMIT = 256 * 1024
CODE_TIMEOUT = 60
CLONE_TIMEOUT = 300
LANGUAGES = {"python": ["python3", "-c"], "bash": ["bash", "-c"]}
SESSION = web.AppKey("session", aiohttp.ClientSession)


class ToolError(Exception):
    """A tool call the model can learn from: bad path, missing file, refused URL."""


def resolve(root: Path, path: str) -> Path:
    """A path inside the workspace (relative, or under /workspace); escapes are refused."""
    inside = path == "/workspace" or path.startswith("/workspace/")
    relative = path.removeprefix("/workspace").lstrip("/") if inside else path
    target = (root / relative).resolve()
    if target != root.resolve() and root.resolve() not in target.parents:
        raise ToolError(f"{path!r} is outside the workspace")
    return target


def network_policy() -> str | list[str]:
    """ "disabled", or the allowlist of hosts and CIDRs (TETHER_NETWORK, JSON)."""
    raw = os.environ.get("TETHER_NETWORK", '"disabled"')
    value = json.loads(raw)
    return value if value == "disabled" else list(value.get("allowlist", []))


def allowed(url: str, policy: str | list[str]) -> bool:
    host = urlsplit(url).hostname or ""
    if policy == "disabled":
        return False
    for entry in policy:
        if entry == "*":
            return True
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            if entry.startswith("*.") and host.endswith(entry[1:]):
                return True
            if host == entry:
                return True
    return False


def _clip(data: bytes, limit: int = OUTPUT_LIMIT) -> str:
    text = data.decode(errors="replace")
    return text if len(data) <= limit else text[:limit] + f"\n… [{len(data) - limit} bytes cut]"


async def run_code(root: Path, language: str, code: str, timeout: float = CODE_TIMEOUT) -> dict:
    if language not in LANGUAGES:
        raise ToolError(f"language must be one of {sorted(LANGUAGES)}, not {language!r}")
    process = await asyncio.create_subprocess_exec(
        *LANGUAGES[language],
        code,
        cwd=root,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # so a timeout kills everything the code started
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = await process.communicate()
        return {
            "exit_code": None,
            "timed_out": True,
            "stdout": _clip(stdout),
            "stderr": _clip(stderr) + f"\n[killed after {timeout:g}s]",
        }
    return {
        "exit_code": process.returncode,
        "timed_out": False,
        "stdout": _clip(stdout),
        "stderr": _clip(stderr),
    }


def read_file(root: Path, path: str) -> dict:
    target = resolve(root, path)
    if not target.is_file():
        raise ToolError(f"no file {path!r}")
    if target.stat().st_size > FILE_LIMIT:
        raise ToolError(f"{path!r} is larger than {FILE_LIMIT} bytes")
    return {"content": target.read_text(errors="replace")}


def write_file(
    root: Path, path: str, content: str, encoding: str = "utf-8", if_absent: bool = False
) -> dict:
    target = resolve(root, path)
    if if_absent and (target.exists() or target.is_symlink()):
        return {"path": str(target.relative_to(root.resolve())), "kept": True}
    try:
        data = (
            base64.b64decode(content, validate=True) if encoding == "base64" else content.encode()
        )
    except binascii.Error as error:
        raise ToolError(f"content of {path!r} is not valid base64") from error
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return {"path": str(target.relative_to(root.resolve())), "bytes": len(data)}


def list_files(root: Path, path: str = ".") -> dict:
    target = resolve(root, path)
    if not target.is_dir():
        raise ToolError(f"no directory {path!r}")
    entries = [
        {"name": p.name, "type": "dir" if p.is_dir() else "file", "bytes": p.stat().st_size}
        for p in sorted(target.iterdir())
    ]
    return {"entries": entries}


async def clone_repository(
    root: Path, url: str, path: str, policy, if_absent: bool = False, timeout: float = CLONE_TIMEOUT
) -> dict:
    """A shallow git clone over https only (no other transport, not even for submodules),
    from a host the allowlist names, into an empty place in the workspace."""
    if urlsplit(url).scheme != "https":
        raise ToolError(f"repositories are cloned over https only, not {url!r}")
    if not allowed(url, policy):
        raise ToolError(f"{url!r} is not on this run's network allowlist")
    target = resolve(root, path)
    where = str(target.relative_to(root.resolve()))
    if target.exists() or target.is_symlink():
        if if_absent:
            return {"path": where, "kept": True}
        if not target.is_dir() or any(target.iterdir()):
            raise ToolError(f"{path!r} is already there; a repository is cloned into a new place")
    process = await asyncio.create_subprocess_exec(
        *("git", "-c", "protocol.allow=never", "-c", "protocol.https.allow=always"),
        *("clone", "--quiet", "--depth", "1", "--", url, str(target)),
        cwd=root,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.communicate()
        raise ToolError(f"cloning {url!r} took longer than {timeout:g}s") from None
    if process.returncode != 0:
        raise ToolError(f"cloning {url!r} failed: {_clip(stderr, 2000).strip()}")
    return {"path": where}


async def fetch_url(
    session: aiohttp.ClientSession, url: str, policy, root: Path, save_as: str | None = None
) -> dict:
    if urlsplit(url).scheme not in ("http", "https"):
        raise ToolError(f"only http and https URLs can be fetched, not {url!r}")
    if not allowed(url, policy):
        raise ToolError(f"{url!r} is not on this agent's network allowlist")
    async with session.get(url, allow_redirects=False) as response:
        body = await response.content.read(FETCH_LIMIT + 1)
        result = {
            "status": response.status,
            "content_type": response.headers.get("Content-Type", ""),
            "text": _clip(body, FETCH_LIMIT),
        }
    if save_as:
        target = resolve(root, save_as)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body[:FETCH_LIMIT])
        result["saved_as"] = str(target.relative_to(root.resolve()))
    return result


RUN_HEADER = "X-Tether-Run"


def create_app(
    root: Path = WORKSPACE, policy: str | list[str] | None = None, run: str | None = None
) -> web.Application:
    """`run` is the uid of the run this workspace serves: a caller naming another run (another
    run's agent that reached this port) is refused, so no run ever uses another's sandbox."""
    policy = network_policy() if policy is None else policy
    run = os.environ.get("TETHER_RUN", "") if run is None else run

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "run": run})

    async def tool(request: web.Request) -> web.Response:
        if request.headers.get(RUN_HEADER, "") != run:
            return web.json_response(
                {"ok": False, "error": "this workspace belongs to another run"}, status=403
            )
        name = request.match_info["name"]
        args: dict[str, Any] = await request.json()
        try:
            match name:
                case "run_code":
                    result = await run_code(
                        root,
                        args.get("language", ""),
                        args.get("code", ""),
                        float(args.get("timeout_seconds", CODE_TIMEOUT)),
                    )
                case "read_file":
                    result = read_file(root, args.get("path", ""))
                case "write_file":
                    result = write_file(
                        root,
                        args.get("path", ""),
                        args.get("content", ""),
                        args.get("encoding", "utf-8"),
                        bool(args.get("if_absent", False)),
                    )
                case "list_files":
                    result = list_files(root, args.get("path", "."))
                case "clone_repository":
                    result = await clone_repository(
                        root,
                        args.get("url", ""),
                        args.get("path", ""),
                        policy,
                        bool(args.get("if_absent", False)),
                    )
                case "fetch_url":
                    result = await fetch_url(
                        request.app[SESSION], args.get("url", ""), policy, root, args.get("save_as")
                    )
                case _:
                    raise ToolError(f"no tool {name!r}")
        except (ToolError, OSError, aiohttp.ClientError, TimeoutError) as error:
            return web.json_response({"ok": False, "error": str(error) or type(error).__name__})
        return web.json_response({"ok": True, **result})

    async def session(app: web.Application):
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as client:
            app[SESSION] = client
            yield

    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_post("/tools/{name}", tool)
    app.router.add_get("/healthz", healthz)
    return app


if __name__ == "__main__":
    port = int(os.environ.get("TETHER_WORKSPACE_PORT", "7070"))
    web.run_app(create_app(), host="127.0.0.1", port=port, access_log=None, print=None)
