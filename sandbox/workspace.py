"""The workspace container's tool server: the agent's hands. It runs untrusted code and holds no
credential of any kind; it listens on the pod's loopback only. Everything it fetches goes out
through the egress proxy (HTTP_PROXY, HTTPS_PROXY), which enforces the run's allowlist.

`python -m tether.sandbox.workspace` serves POST /tools/{run_code,read_file,write_file,
list_files,fetch_url,clone_repository,browser_navigate,browser_click,browser_type,
browser_screenshot} with JSON bodies, answering {"ok": true, ...} or {"ok": false, "error"}.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from tether.api.internal import EGRESS_BLOCKED_HEADER, EGRESS_CA_URL

from .browser import BrowserError, Tab
from .paths import ToolError, resolve

WORKSPACE = Path(os.environ.get("TETHER_WORKSPACE", "/workspace"))
OUTPUT_LIMIT = 16 * 1024
FILE_LIMIT = 1024 * 1024
FETCH_LIMIT = 256 * 1024
CODE_TIMEOUT = 60
CLONE_TIMEOUT = 300
LANGUAGES = {"python": ["python3", "-c"], "bash": ["bash", "-c"]}
SESSION = web.AppKey("session", aiohttp.ClientSession)
TAB = web.AppKey("tab", Tab)


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
    root: Path, url: str, path: str, if_absent: bool = False, timeout: float = CLONE_TIMEOUT
) -> dict:
    """A shallow git clone over https only (no other transport, not even for submodules),
    through the egress proxy, into an empty place in the workspace."""
    if urlsplit(url).scheme != "https":
        raise ToolError(f"repositories are cloned over https only, not {url!r}")
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
    session: aiohttp.ClientSession, url: str, root: Path, save_as: str | None = None
) -> dict:
    if urlsplit(url).scheme not in ("http", "https"):
        raise ToolError(f"only http and https URLs can be fetched, not {url!r}")
    try:
        async with session.get(url, allow_redirects=False) as response:
            body = await response.content.read(FETCH_LIMIT + 1)
            result = {
                "status": response.status,
                "content_type": response.headers.get("Content-Type", ""),
                "text": _clip(body, FETCH_LIMIT),
            }
    except aiohttp.ClientHttpProxyError as error:  # an https URL the proxy refused
        raise ToolError(f"{url!r}: {error.status} {error.message}") from None
    if result["status"] == 403 and response.headers.get(EGRESS_BLOCKED_HEADER):
        raise ToolError(f"{url!r}: 403 {response.reason}")  # an http URL the proxy refused
    if save_as:
        target = resolve(root, save_as)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body[:FETCH_LIMIT])
        result["saved_as"] = str(target.relative_to(root.resolve()))
    return result


async def screenshot(tab: Tab, root: Path, args: dict[str, Any]) -> dict:
    """The page as a PNG at `save_as` in the workspace (so it is among the run's files)."""
    save_as = str(args.get("save_as") or "")
    if not save_as.lower().endswith(".png"):
        raise ToolError(f"save_as must be a .png path in the workspace, not {save_as!r}")
    target = resolve(root, save_as)
    taken = await tab.screenshot(target, bool(args.get("full_page", False)))
    return {**taken, "saved_as": str(target.relative_to(root.resolve()))}


RUN_HEADER = "X-Tether-Run"


def create_app(root: Path = WORKSPACE, run: str | None = None) -> web.Application:
    """`run` is the uid of the run this workspace serves: a caller naming another run (another
    run's agent that reached this port) is refused, so no run ever uses another's sandbox. A
    warm pool's workspace starts with none, and serves no tool until its agent binds it to the
    run that claimed the pod (POST /bind, once)."""
    bound = {"run": os.environ.get("TETHER_RUN", "") if run is None else run}
    trusted: list[asyncio.Task] = []

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "run": bound["run"]})

    async def bind(request: web.Request) -> web.Response:
        wanted = str((await request.json()).get("run") or "")
        if not wanted or bound["run"] not in ("", wanted):
            return web.json_response(
                {"ok": False, "error": "this workspace belongs to another run"}, status=409
            )
        if not bound["run"]:
            bound["run"] = wanted
            # The run's authority comes from the egress proxy once it sees the claimed pod;
            # the agent's first model call need not wait for it, the first tool does.
            trusting = asyncio.to_thread(trust_the_run_authority, CA_FOLDER)
            trusted.append(asyncio.create_task(trusting))
        return web.json_response({"ok": True, "run": wanted})

    async def tool(request: web.Request) -> web.Response:
        if not bound["run"] or request.headers.get(RUN_HEADER, "") != bound["run"]:
            return web.json_response(
                {"ok": False, "error": "this workspace belongs to another run"}, status=403
            )
        for trusting in trusted:
            await trusting
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
                        bool(args.get("if_absent", False)),
                    )
                case "fetch_url":
                    result = await fetch_url(
                        request.app[SESSION], args.get("url", ""), root, args.get("save_as")
                    )
                case "browser_navigate":
                    save_as = args.get("save_as")
                    result = await request.app[TAB].navigate(
                        str(args.get("url", "")), resolve(root, save_as) if save_as else None
                    )
                case "browser_click":
                    result = await request.app[TAB].click(args.get("ref"), args.get("selector"))
                case "browser_type":
                    result = await request.app[TAB].type(
                        args.get("text", ""),
                        args.get("ref"),
                        args.get("selector"),
                        bool(args.get("submit", False)),
                    )
                case "browser_screenshot":
                    result = await screenshot(request.app[TAB], root, args)
                case _:
                    raise ToolError(f"no tool {name!r}")
        except (ToolError, BrowserError, OSError, aiohttp.ClientError, TimeoutError) as error:
            return web.json_response({"ok": False, "error": str(error) or type(error).__name__})
        except Exception as error:  # a tool's own failure is the model's to read, not a crash
            print(f"tool {name} failed: {error!r}", file=sys.stderr, flush=True)
            return web.json_response({"ok": False, "error": f"{name} failed: {error!r}"})
        return web.json_response({"ok": True, **result})

    async def session(app: web.Application):
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as client:
            app[SESSION] = client
            app[TAB] = Tab()
            yield
            await app[TAB].close()

    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_post("/tools/{name}", tool)
    app.router.add_post("/bind", bind)
    app.router.add_get("/healthz", healthz)
    return app


SYSTEM_CAS = Path("/etc/ssl/certs/ca-certificates.crt")
CA_FOLDER = Path("/tmp/tether-egress")
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO")


def trust_the_run_authority(folder: Path, attempts: int = 200) -> Path | None:
    """Ask the egress proxy for this run's certificate authority (it opens the TLS of the
    connections it puts a credential into), and make it trusted by everything started here:
    the system's authorities plus the run's, in one bundle, named by the variables Python,
    OpenSSL, requests, curl and git read (and Node's, for the run's alone). A variable the
    environment set already is kept. None when there is no proxy to ask."""
    if not os.environ.get("HTTP_PROXY"):
        return None
    for _ in range(attempts):  # the proxy learns of the pod from a watch: a moment after start
        try:
            with urllib.request.urlopen(EGRESS_CA_URL, timeout=5) as response:
                authority = response.read().decode()
            break
        except OSError:
            time.sleep(0.05)
    else:
        print("the egress proxy gave no certificate authority", file=sys.stderr)
        return None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run-ca.pem").write_text(authority)
    system = SYSTEM_CAS.read_text() if SYSTEM_CAS.exists() else ""
    bundle = folder / "ca-bundle.pem"
    bundle.write_text(system + "\n" + authority)
    for name in CA_VARIABLES:
        os.environ.setdefault(name, str(bundle))
    os.environ.setdefault("NODE_EXTRA_CA_CERTS", str(folder / "run-ca.pem"))
    return bundle


if __name__ == "__main__":
    if os.environ.get("TETHER_RUN"):  # else a warm pod's: trusted when bound to its run
        trust_the_run_authority(CA_FOLDER)
    port = int(os.environ.get("TETHER_WORKSPACE_PORT", "7070"))
    web.run_app(create_app(), host="127.0.0.1", port=port, access_log=None, print=None)
