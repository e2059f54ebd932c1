"""Gateway overhead: the same requests sent straight to a local OpenAI-compatible server and
through Tether (gateway → Interaction CR → operator → provider → event log), interleaved.

    make bench            # or: .venv/bin/python bench/overhead.py --requests 200

Reports p50/p99 of non-streaming latency and of streaming time to first event and to first
token, with the ratio Tether/direct, and writes them to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from report import write_section  # bench/, the script's folder

from tether.dev.control_plane import free_port
from tether.dev.processes import spawn, stop, wait_until
from tether.dev.stack import DevStack

REPLY = " ".join(f"token{i}" for i in range(20))
PROMPT = "Summarise the quarterly pricing changes in one paragraph."


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stream_times(client: httpx.Client, url: str, body: dict, marker: str, headers=None):
    """Seconds to the first SSE data line, and to the first one containing `marker`."""
    started = time.perf_counter()
    first_event = None
    with client.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            if first_event is None:
                first_event = time.perf_counter() - started
            if marker in line:
                return first_event, time.perf_counter() - started
    raise RuntimeError(f"no {marker!r} in the stream from {url}")


BREAKDOWN = {
    "tether_interaction_pickup_seconds": "accepted → run starts (CR write + watch)",
    "tether_model_first_output_seconds": "run start → first output from the upstream",
    "tether_interaction_duration_seconds": "run start → final status written and announced",
}


def operator_sums(url: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of the operator's latency histograms."""
    found = {}
    for family in text_string_to_metric_families(httpx.get(url).text):
        if family.name in BREAKDOWN:
            values = {
                s.name.rsplit("_", 1)[-1]: s.value
                for s in family.samples
                if s.name.endswith(("_sum", "_count"))
            }
            found[family.name] = (values["sum"], values["count"])
    return found


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def run(requests: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    work = Path(tempfile.mkdtemp(prefix="tether-bench-"))
    port = free_port()
    log = work / "upstream.log"
    upstream = spawn(
        [
            sys.executable,
            "-m",
            "tether.dev.fakes.chat_completions",
            "--port",
            str(port),
            "--text",
            REPLY,
        ],
        log,
    )
    upstream_url = f"http://127.0.0.1:{port}/v1"
    stack = None
    try:
        wait_until("upstream", lambda: _port_open(port), 20, [("upstream", upstream, log)])
        stack = DevStack(work / "stack").start()
        key = stack.add_tenant("bench")
        stack.cluster.apply(
            {
                "apiVersion": "tether.dev/v1alpha1",
                "kind": "Model",
                "metadata": {"name": "bench-llm", "namespace": "bench"},
                "spec": {
                    "provider": "openai-compatible",
                    "endpoint": upstream_url,
                    "upstreamModel": "m",
                },
            }
        )
        direct_body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}]}
        tether_body = {"model": "bench-llm", "input": PROMPT}
        auth = {"x-goog-api-key": key}
        samples = {
            name: {"direct": [], "tether": []} for name in ("latency", "first_event", "first_token")
        }

        with httpx.Client(timeout=60) as client:

            def direct() -> None:
                started = time.perf_counter()
                client.post(f"{upstream_url}/chat/completions", json=direct_body).raise_for_status()
                samples["latency"]["direct"].append(time.perf_counter() - started)
                event, token = stream_times(
                    client,
                    f"{upstream_url}/chat/completions",
                    {**direct_body, "stream": True, "stream_options": {"include_usage": True}},
                    '"content": "token0"',
                )
                samples["first_event"]["direct"].append(event)
                samples["first_token"]["direct"].append(token)

            def through_tether() -> None:
                started = time.perf_counter()
                client.post(
                    f"{stack.url}/v1/interactions", json=tether_body, headers=auth
                ).raise_for_status()
                samples["latency"]["tether"].append(time.perf_counter() - started)
                event, token = stream_times(
                    client,
                    f"{stack.url}/v1/interactions",
                    {**tether_body, "stream": True},
                    '"step.delta"',
                    headers=auth,
                )
                samples["first_event"]["tether"].append(event)
                samples["first_token"]["tether"].append(token)

            for _ in range(warmup):
                direct()
                through_tether()
            for series in samples.values():
                for values in series.values():
                    values.clear()
            before = operator_sums(stack.operator_metrics_url)
            rng = random.Random(7)
            for _ in range(requests):
                pair = [direct, through_tether]
                rng.shuffle(pair)  # interleaved, in random order, so drift hits both alike
                for call in pair:
                    call()
            after = operator_sums(stack.operator_metrics_url)
        samples["breakdown"] = {
            name: (after[name][0] - before[name][0]) / (after[name][1] - before[name][1])
            for name in BREAKDOWN
        }
        return samples
    finally:
        if stack is not None:
            stack.stop()
        stop(upstream)


def report(samples, requests: int, command: str) -> str:
    rows = []
    for name, title in (
        ("latency", "non-streaming latency"),
        ("first_event", "streaming: time to first event"),
        ("first_token", "streaming: time to first token"),
    ):
        direct, tether = samples[name]["direct"], samples[name]["tether"]
        d50, d99 = percentile(direct, 0.5) * 1e3, percentile(direct, 0.99) * 1e3
        t50, t99 = percentile(tether, 0.5) * 1e3, percentile(tether, 0.99) * 1e3
        rows.append(
            f"| {title} | {d50:.1f} | {d99:.1f} | {t50:.1f} | {t99:.1f} | "
            f"{t50 / d50:.1f}x | +{t50 - d50:.1f} ms |"
        )
    mean = statistics.mean(samples["latency"]["tether"]) * 1e3
    breakdown = [
        f"| {text} | {samples['breakdown'][name] * 1e3:.1f} |" for name, text in BREAKDOWN.items()
    ]
    return "\n".join(
        [
            "## Gateway overhead (`bench/overhead.py`)",
            "",
            f"Measured {dt.date.today().isoformat()} on {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}; "
            f"{requests} interleaved request pairs after warm-up. Command: `{command}`",
            "",
            "The upstream is a local Chat Completions server (`tether.dev.fakes.chat_completions`,"
            " its own process) answering 20 tokens. *Direct* calls it; *Tether* sends the same"
            " prompt through the gateway, which writes an Interaction, whose run the operator"
            " picks up from its watch, calls the upstream (streaming), appends events to Redis"
            " and writes the final status. Everything runs on the same 2 cores.",
            "",
            "| measure | direct p50 (ms) | direct p99 (ms) | Tether p50 (ms) | Tether p99 (ms) |"
            " ratio p50 | added p50 |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Mean Tether non-streaming latency: {mean:.1f} ms. Where it goes, from the"
            " operator's own histograms over the same requests (means, streaming and not):",
            "",
            "| stage | mean (ms) |",
            "|---|---|",
            *breakdown,
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    command = (
        "make bench" if args.requests == 200 else f"bench/overhead.py --requests {args.requests}"
    )
    text = report(run(args.requests, args.warmup), args.requests, command)
    print(text)
    write_section(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
