"""The browser tools in agent runs on the real node, through the SDK: a sandbox pod's Chromium
reads a page its JavaScript renders, fills and submits a form, keeps a screenshot among the run's
files, and reaches nothing its allowlist does not name."""

from __future__ import annotations

import http.server
import threading
import urllib.parse

import httpx
import pytest

from tests.integration.test_agent_runs import agent_run, call
from tests.integration.test_browser_tools import FORM, decode_png
from tests.integration.test_egress import allow, blocked
from tether.dev import demo
from tether.dev.worker.configs import HOST_ALIAS


@pytest.fixture
def form_site():
    """The newsletter form on the host's loopback; the POSTs it received."""
    posted: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def reply(self, html: str) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self.reply(FORM)

        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length", 0))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(size).decode()))
            posted.append(form)
            self.reply(f"<p>Subscribed {form['email']} to {form['plan']}</p>")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{HOST_ALIAS}:{server.server_address[1]}", posted
    server.shutdown()
    thread.join(10)


def test_an_agent_reads_a_rendered_page_submits_a_form_and_keeps_a_screenshot(
    client, api_key, stack, script, form_site
):
    form, posted = form_site
    with demo.pricing_pages(HOST_ALIAS, rendered=True) as pages:
        outside = f"http://b.{HOST_ALIAS}:{urllib.parse.urlsplit(pages).port}/acme"
        model = script(
            "browsing",
            [
                call("browser_navigate", url=f"{pages}/acme"),
                call("browser_navigate", url=f"{form}/form"),
                call("browser_type", ref=1, text="ada@example.com"),
                call("browser_click", selector="button[type=submit]"),
                call("browser_screenshot", save_as="shots/subscribed.png"),
                call("browser_navigate", url=outside),
                {"text": "subscribed"},
            ],
        )
        # eva has the browser by default: the request names no tool.
        done = agent_run(client, model, environment=allow(HOST_ALIAS))
        raw = httpx.get(f"{pages}/acme".replace(HOST_ALIAS, "127.0.0.1")).text
    assert done.status == "completed", done.errors
    results: dict[str, list[dict]] = {}
    for step in done.steps:
        if step.type == "function_result":
            results.setdefault(step.name, []).append(result_of(step))
    calls = [(s.name, s.arguments) for s in done.steps if s.type == "function_call"]
    assert [name for name, _ in calls] == [
        "browser_navigate",
        "browser_navigate",
        "browser_type",
        "browser_click",
        "browser_screenshot",
        "browser_navigate",
    ]
    assert calls[2][1] == {"ref": 1, "text": "ada@example.com"}

    rendered, opened_form, outside_result = results["browser_navigate"]
    assert "Loading" in raw and "9.00" not in raw  # the page as served has no price ...
    assert "Starter\t$9.00" in rendered.get("text", ""), rendered  # ... its script puts them
    assert rendered["status"] == 200
    assert opened_form["targets"][0] == '[1] input type=email name=email "Your email"'
    [typed], [clicked] = results["browser_type"], results["browser_click"]
    assert "value='ada@example.com'" in typed["targets"][0]
    assert clicked["text"] == "Subscribed ada@example.com to Starter"
    assert posted == [{"email": "ada@example.com", "plan": "Starter"}]

    assert outside_result["ok"] is False
    assert "refused by this run's network policy" in outside_result["error"]
    assert [(b["host"], b["method"]) for b in blocked(done)] == [(f"b.{HOST_ALIAS}", "GET")]

    [shot] = results["browser_screenshot"]
    assert shot["saved_as"] == "shots/subscribed.png"
    headers = {"x-goog-api-key": api_key}
    png = httpx.get(
        f"{stack.url}/v1/interactions/{done.id}/files/shots/subscribed.png", headers=headers
    )
    assert png.status_code == 200 and len(png.content) == shot["bytes"]
    assert decode_png(png.content)[:2] == (1280, 800)
    listed = httpx.get(f"{stack.url}/v1/interactions/{done.id}/files", headers=headers).json()
    assert {"path": "shots/subscribed.png", "bytes": len(png.content)} in listed["files"]
    # The browser's profile and caches stayed out of the workspace.
    assert [f["path"] for f in listed["files"]] == ["shots/subscribed.png"]


def result_of(step) -> dict:
    """A function_result's result as the tool gave it (the SDK reads a dict as a model)."""
    return step.result.model_dump()


@pytest.mark.parametrize(
    "tool, problem",
    [
        ({"type": "computer_use", "environment": "desktop"}, "agents operate a browser"),
        ({"type": "google_search"}, "'google_search' is not available to agents"),
    ],
)
def test_an_agent_tool_that_would_be_ignored_is_a_400(stack, api_key, tool, problem):
    answer = httpx.post(
        f"{stack.url}/v1beta/interactions",
        headers={"x-goog-api-key": api_key},
        json={"agent": "eva", "input": "go", "tools": [tool], "background": True},
    )
    assert answer.status_code == 400
    assert problem in answer.json()["error"]["message"]
