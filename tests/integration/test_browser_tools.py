"""The browser tools of the workspace server, driving the machine's real Chromium through
Playwright against pages served here (the allowlist through the egress proxy, on the real node:
tests/integration/test_agent_runs.py)."""

from __future__ import annotations

import asyncio
import socket
import struct
import zlib

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tether.sandbox.workspace import create_app

RENDERED = """<html><head><title>Acme pricing</title></head><body>
<h1>Acme pricing</h1><table id="plans"></table>
<script>
  setTimeout(async () => {
    const plans = await (await fetch('/api/plans')).json();
    document.getElementById('plans').innerHTML = plans
      .map(p => `<tr><td>${p.plan}</td><td>$${p.price}</td></tr>`).join('');
  }, 300);
</script></body></html>"""

FORM = """<html><body><h1>Newsletter</h1>
<form method="post" action="/subscribe">
  <label for="email">Your email</label><input id="email" name="email" type="email">
  <select name="plan"><option>Starter</option><option>Pro</option></select>
  <button type="submit">Subscribe</button>
</form><a href="/rendered">See pricing</a></body></html>"""


@pytest.fixture
async def site():
    app = web.Application()

    def html(body: str) -> web.Response:
        return web.Response(text=body, content_type="text/html")

    def page(body: str):
        async def handler(_: web.Request) -> web.Response:
            return html(body)

        return handler

    async def plans(_: web.Request) -> web.Response:
        return web.json_response([{"plan": "Starter", "price": 9}, {"plan": "Pro", "price": 29}])

    async def subscribe(request: web.Request) -> web.Response:
        form = await request.post()
        return html(f"<html><body><p>Subscribed {form['email']} to {form['plan']}</p>")

    app.router.add_get("/rendered", page(RENDERED))
    app.router.add_get("/form", page(FORM))
    app.router.add_get("/api/plans", plans)
    app.router.add_post("/subscribe", subscribe)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


async def test_navigate_reads_what_the_pages_javascript_rendered(tools, site):
    page = await tools("browser_navigate", url=f"{site}/rendered")
    assert page["ok"], page
    assert (page["status"], page["title"]) == (200, "Acme pricing")
    assert "Starter\t$9" in page["text"] and "Pro\t$29" in page["text"]
    assert page["url"] == f"{site}/rendered"


async def test_a_form_is_filled_and_submitted_by_reference_and_by_selector(tools, site):
    page = await tools("browser_navigate", url=f"{site}/form")
    assert page["targets"] == [
        '[1] input type=email name=email "Your email"',
        "[2] select name=plan \"Starter Pro\" value='Starter'",
        '[3] button type=submit "Subscribe"',
        '[4] link "See pricing" -> /rendered',
    ]
    typed = await tools("browser_type", ref=1, text="ada@example.com")
    assert typed["ok"] and "value='ada@example.com'" in typed["targets"][0]
    await tools("run_code", language="bash", code="true")  # other tools between: same page
    done = await tools("browser_click", selector="button[type=submit]")
    assert done["ok"], done
    assert done["text"] == "Subscribed ada@example.com to Starter"
    assert done["url"] == f"{site}/subscribe"

    await tools("browser_navigate", url=f"{site}/form")
    followed = await tools("browser_click", ref="[4]")
    assert "Starter\t$9" in followed["text"]


async def test_typing_with_submit_presses_enter(tools, site):
    await tools("browser_navigate", url=f"{site}/form")
    done = await tools("browser_type", selector="#email", text="bob@example.com", submit=True)
    assert done["text"] == "Subscribed bob@example.com to Starter"


async def test_a_screenshot_is_a_png_of_the_page_in_the_workspace(tools, site, tmp_path):
    await tools("browser_navigate", url=f"{site}/rendered")
    shot = await tools("browser_screenshot", save_as="/workspace/shots/pricing.png")
    assert shot["ok"], shot
    assert shot["saved_as"] == "shots/pricing.png"
    data = (tmp_path / "shots" / "pricing.png").read_bytes()
    assert len(data) == shot["bytes"]
    width, height, pixels = decode_png(data)
    assert (width, height) == (1280, 800)
    assert len(set(pixels)) > 2  # not a blank page: text on a background
    listed = await tools("list_files", path="shots")
    assert listed["entries"] == [{"name": "pricing.png", "type": "file", "bytes": len(data)}]


BAD_CALLS = [
    ("browser_navigate", {"url": "file:///etc/passwd"}, "only http and https"),
    ("browser_navigate", {"url": "http://127.0.0.1:{closed}/"}, "ERR_CONNECTION_REFUSED"),
    ("browser_click", {"ref": 99}, "ref 99 is not on the page"),
    ("browser_click", {"ref": "first"}, "ref must be a number"),
    ("browser_click", {}, "name what to act on"),
    ("browser_type", {"selector": "#nothing", "text": "x"}, "typing into #nothing"),
    ("browser_screenshot", {"save_as": "shot.jpg"}, "must be a .png path"),
    ("browser_screenshot", {"save_as": "../../escape.png"}, "outside the workspace"),
]


async def test_bad_calls_are_tool_errors_the_model_reads(tools, site):
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        closed = str(unused.getsockname()[1])
    for name, args, error in BAD_CALLS:
        await tools("browser_navigate", url=f"{site}/form")
        url = {"url": args["url"].replace("{closed}", closed)} if "url" in args else {}
        result = await tools(name, **{**args, **url})
        assert result["ok"] is False, (name, args)
        assert error in result["error"], (name, args)
    assert (await tools("browser_navigate", url=f"{site}/form"))["ok"]  # still usable


async def test_long_pages_are_clipped(tools, tmp_path):
    (tmp_path / "long.html").write_text("<p>" + "word " * 20000 + "</p>")
    app = web.Application()
    app.router.add_static("/", tmp_path)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        page = await tools("browser_navigate", url=f"http://127.0.0.1:{server.port}/long.html")
    finally:
        await server.close()
    assert len(page["text"]) < 17 * 1024
    assert "characters cut" in page["text"]


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and the raw scanlines of a PNG, every chunk's CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, header = 8, b"", b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    channels = {2: 3, 6: 4}[colour]
    pixels = zlib.decompress(idat)
    assert depth == 8 and len(pixels) == height * (1 + width * channels)
    return width, height, pixels


async def test_pages_go_through_the_proxy_and_the_browser_calls_nowhere_else(tmp_path, monkeypatch):
    """Chromium calls home on its own (updates, sign-in, network time) unless told not to: in a
    sandbox those calls would be refused and fill the run's timeline with blocked hosts."""
    asked: list[str] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked.append((await reader.readline()).decode().strip())
        body = b"<html><body><p>via the proxy</p></body></html>"
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    client = TestClient(TestServer(create_app(tmp_path, run="run-t"), host="127.0.0.1"))
    await client.start_server()
    try:
        answer = await client.post(
            "/tools/browser_navigate",
            json={"url": "http://pages.test/"},
            headers={"X-Tether-Run": "run-t"},
        )
        assert (await answer.json())["text"] == "via the proxy"
        await asyncio.sleep(5)  # what Chromium calls on its own, it calls in its first seconds
    finally:
        await client.close()
        server.close()
    assert asked[0] == "GET http://pages.test/ HTTP/1.1"
    assert {line.split()[1].split("/")[2] for line in asked} == {"pages.test"}  # and its favicon
