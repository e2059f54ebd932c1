"""The seed article's worked example, offline: an agent run in the background fetches two
competitors' pricing pages, parses them with Python, writes prices.csv and sums up.

`make demo` (after `make up`) runs it against the local stack. `make demo-browser` is the harder
variant: the pages render their prices with JavaScript, so a plain fetch shows no price, and
the agent reads them with its headless browser. The model is the offline `scripted` provider
playing a fixed plan, so the run is the same every time; point the agent at a real model to
have it plan for itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import kubernetes
from aiohttp import web
from google import genai

from tether.dev.stack import Cluster

PAGES = {
    "acme": """<html><body><h1>Acme pricing</h1><table>
<tr><td class="plan">Starter</td><td class="price">$9.00</td></tr>
<tr><td class="plan">Pro</td><td class="price">$29.00</td></tr>
</table></body></html>""",
    "globex": """<html><body><h1>Globex plans</h1><table>
<tr><td class="plan">Basic</td><td class="price">$12.50</td></tr>
<tr><td class="plan">Team</td><td class="price">$49.00</td></tr>
<tr><td class="plan">Enterprise</td><td class="price">$199.00</td></tr>
</table></body></html>""",
}

RENDERED = """<html><body><h1>{title}</h1><table id="plans"><tr><td>Loading…</td></tr></table>
<script>
  fetch("/{name}/plans.json").then(r => r.json()).then(plans => {{
    document.getElementById("plans").innerHTML = plans
      .map(([plan, price]) => `<tr><td>${{plan}}</td><td>$${{price}}</td></tr>`).join("");
  }});
</script></body></html>"""
"""The browser variant's pages: an empty table that the page's script fills from an API."""

PLANS = {
    "acme": ("Acme pricing", [["Starter", "9.00"], ["Pro", "29.00"]]),
    "globex": ("Globex plans", [["Basic", "12.50"], ["Team", "49.00"], ["Enterprise", "199.00"]]),
}

PARSER = """
import csv, pathlib, re
rows = []
for page in sorted(pathlib.Path("pages").glob("*.SUFFIX")):
    for plan, price in re.findall(ROW, page.read_text(), re.M):
        rows.append({"competitor": page.stem, "plan": plan, "price_usd": price})
with open("prices.csv", "w", newline="") as out:
    writer = csv.DictWriter(out, fieldnames=["competitor", "plan", "price_usd"])
    writer.writeheader()
    writer.writerows(rows)
print(f"{len(rows)} plans from {len({r['competitor'] for r in rows})} competitors")
"""
"""The code the agent runs: each (plan, price) the expression ROW finds in pages/*.SUFFIX."""


def parser(suffix: str, row: str) -> str:
    return PARSER.replace("SUFFIX", suffix).replace("ROW", repr(row))


def plan(base_url: str, browser: bool = False) -> list[dict]:
    """The scripted model's turns: fetch both pages (or, with `browser`, open them in the
    browser and keep their rendered text), parse them, answer."""
    if browser:  # the rendered text: a table row per line, its cells between tabs
        tool, saved, parse = "browser_navigate", "txt", parser("txt", r"^(\w+)\t\$([0-9.]+)$")
    else:  # the HTML as served
        row = r'class="plan">([^<]+)</td><td class="price">\$([0-9.]+)'
        tool, saved, parse = "fetch_url", "html", parser("html", row)
    return [
        {
            "text": f"I'll {'open' if browser else 'fetch'} both pricing pages.",
            "functionCalls": [
                {
                    "name": tool,
                    "arguments": {"url": f"{base_url}/{name}", "save_as": f"pages/{name}.{saved}"},
                }
                for name in PAGES
            ],
        },
        {
            "text": "Now I'll parse them with Python and write prices.csv.",
            "functionCalls": [
                {"name": "run_code", "arguments": {"language": "python", "code": parse}}
            ],
        },
        {
            "text": "Done: prices.csv lists 5 plans from acme and globex. The cheapest is Acme "
            "Starter at $9.00; the dearest is Globex Enterprise at $199.00."
        },
    ]


@contextmanager
def pricing_pages(host: str = "127.0.0.1", rendered: bool = False) -> Iterator[str]:
    """The two competitors' pages, on loopback, for as long as the block runs; their base URL
    under the name sandboxes reach the host's loopback by (`host`). `rendered`: the pages fill
    their prices in with JavaScript, from /<name>/plans.json."""
    app = web.Application()
    for name, static in PAGES.items():
        title, plans = PLANS[name]
        body = RENDERED.format(title=title, name=name) if rendered else static

        async def page(_: web.Request, html: str = body) -> web.Response:
            return web.Response(text=html, content_type="text/html")

        async def listed(_: web.Request, plans: list = plans) -> web.Response:
            return web.json_response(plans)

        app.router.add_get(f"/{name}", page)
        app.router.add_get(f"/{name}/plans.json", listed)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def scripted_model(
    namespace: str, base_url: str, name: str = "pricing-demo", browser: bool = False
) -> dict:
    return {
        "apiVersion": "tether.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": "scripted", "responses": plan(base_url, browser)},
    }


@dataclass
class DemoRun:
    interaction_id: str
    status: str
    summary: str
    events_before_cut: int
    events_after_resume: int
    csv: str
    tools: list[str]
    """The tools the agent called, in order, as the timeline shows them."""


def run(
    client: genai.Client, gateway: str, api_key: str, host: str, model: str = "pricing-demo"
) -> DemoRun:
    """Start the run in the background, stream it, cut the stream, resume it, get the CSV. The
    pages' `host` is the one name on the run's network allowlist."""
    started = client.interactions.create(
        agent="eva",
        input="Compare our competitors' pricing: fetch their pricing pages, extract every plan "
        "and price with Python, and write them to prices.csv.",
        agent_config={"type": "dynamic", "model": model, "max_steps": 10},
        environment={"type": "remote", "network": {"allowlist": [{"domain": host}]}},
        background=True,
    )
    stream = client.interactions.get(started.id, stream=True)
    before = []
    for event in stream:
        before.append(event)
        if event.event_type == "step.start" or len(before) >= 4:
            break
    stream.close()  # the client goes away mid-run ...
    after = list(  # ... and picks up exactly where it left off
        client.interactions.get(started.id, stream=True, last_event_id=before[-1].event_id)
    )
    final = client.interactions.get(started.id)
    named = {"code_execution_call": "run_code", "url_context_call": "fetch_url"}
    tools = [
        s.name if s.type == "function_call" else named[s.type]
        for s in final.steps
        if s.type == "function_call" or s.type in named
    ]
    csv_response = httpx.get(
        f"{gateway}/v1/interactions/{started.id}/files/prices.csv",
        headers={"x-goog-api-key": api_key},
    )
    return DemoRun(
        interaction_id=started.id,
        status=final.status,
        summary=final.output_text or "",
        events_before_cut=len(before),
        events_after_resume=len(after),
        csv=csv_response.text if csv_response.status_code == 200 else "",
        tools=tools,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", type=Path, default=Path(".tether/env"))
    parser.add_argument(
        "--browser", action="store_true", help="pages rendered by JavaScript, read by the browser"
    )
    args = parser.parse_args()
    if not args.env.exists():
        print("Tether is not running: start it with `make up` first.", file=sys.stderr)
        return 1
    env = dict(line.split("=", 1) for line in args.env.read_text().splitlines() if "=" in line)
    cluster = Cluster(kubernetes.config.new_client_from_config(config_file=env["KUBECONFIG"]))
    client = genai.Client(
        api_key=env["TETHER_API_KEY"], http_options={"base_url": env["TETHER_URL"]}
    )
    host = env.get("TETHER_HOST_ALIAS", "127.0.0.1")
    with pricing_pages(host, rendered=args.browser) as base_url:
        cluster.apply(scripted_model(env["TETHER_NAMESPACE"], base_url, browser=args.browser))
        print(f"pricing pages served at {base_url}; starting the agent run in the background ...")
        result = run(client, env["TETHER_URL"], env["TETHER_API_KEY"], host)
    print(f"interaction {result.interaction_id}: {result.status}")
    print(
        f"streamed {result.events_before_cut} events, cut the stream, resumed and got "
        f"{result.events_after_resume} more"
    )
    print(f"tools called: {', '.join(result.tools)}")
    print(f"summary: {result.summary}\n")
    print("prices.csv:")
    print(result.csv, end="")
    return 0 if result.status == "completed" and result.csv else 1


if __name__ == "__main__":
    sys.exit(main())
