"""The seed article's worked example, offline, through the official SDK: a background agent run
fetches two pricing pages, parses them with Python, writes prices.csv and sums up; the client
cuts its stream midway, resumes it, and downloads the CSV after the sandbox is gone."""

from __future__ import annotations

import csv
import io

from tether.dev import demo
from tether.dev.worker.configs import HOST_ALIAS

PLANS = [
    ("acme", "Starter", "9.00"),
    ("acme", "Pro", "29.00"),
    ("globex", "Basic", "12.50"),
    ("globex", "Team", "49.00"),
    ("globex", "Enterprise", "199.00"),
]


def test_the_pricing_comparison_runs_in_the_background_and_leaves_a_csv(stack, client, api_key):
    with demo.pricing_pages(HOST_ALIAS) as base_url:
        stack.cluster.apply(demo.scripted_model("tenant-a", base_url))
        result = demo.run(client, stack.url, api_key, HOST_ALIAS)
    assert result.status == "completed"
    assert result.events_before_cut >= 1 and result.events_after_resume >= 5
    rows = list(csv.DictReader(io.StringIO(result.csv)))
    assert [(r["competitor"], r["plan"], r["price_usd"]) for r in rows] == PLANS
    assert "prices.csv lists 5 plans" in result.summary
    assert result.tools == ["fetch_url", "fetch_url", "run_code"]


def test_the_browser_variant_reads_prices_that_only_javascript_renders(stack, client, api_key):
    with demo.pricing_pages(HOST_ALIAS, rendered=True) as base_url:
        stack.cluster.apply(demo.scripted_model("tenant-a", base_url, "pricing-js", browser=True))
        result = demo.run(client, stack.url, api_key, HOST_ALIAS, model="pricing-js")
    assert result.status == "completed"
    rows = list(csv.DictReader(io.StringIO(result.csv)))
    assert [(r["competitor"], r["plan"], r["price_usd"]) for r in rows] == PLANS
    assert result.tools == ["browser_navigate", "browser_navigate", "run_code"]
