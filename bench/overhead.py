"""Gateway overhead: the same prompt, on each provider path (openai-compatible, gemini,
anthropic), sent straight to a local server in the vendor's own protocol, through LiteLLM's
proxy (its Interactions endpoint) and through Tether (gateway → Interaction CR → operator →
provider → event log), all interleaved in one run.

    make bench            # or: .venv/bin/python bench/overhead.py --requests 200 [--no-peer]

Reports p50/p99 of non-streaming latency and of streaming time to first token, what LiteLLM and
Tether each add over the direct call, and the ratio of the two; then each side's throughput at a
fixed concurrency on the openai-compatible path, with the CPU each process spent per request and
the memory everything holds. Writes them to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from calls import Call, CallFailed, first_token, interactions_call, latency  # bench/
from litellm_peer import INTERACTIONS_PATH, PIN, LiteLLMProxy, model_name
from prometheus_client.parser import text_string_to_metric_families
from report import write_section
from throughput import Load, load
from upstreams import KEY, UPSTREAM_MODEL, UPSTREAMS, LocalUpstreams

from tether.dev.stack import DevStack

SIDES = {"direct": "direct", "litellm": "LiteLLM", "tether": "Tether"}
MEASURES = {"latency": "non-streaming latency", "first_token": "streaming: time to first token"}
TIMERS = {"latency": latency, "first_token": first_token}
TENANT = "bench"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


BREAKDOWN = {
    "tether_interaction_pickup_seconds": "accepted → run starts (CR write + watch)",
    "tether_model_first_output_seconds": "run start → first output from the upstream",
    "tether_interaction_duration_seconds": "run start → ending announced and its status written",
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


def tether_objects(endpoints: dict[str, str]) -> list[dict]:
    """The tenant's upstream key and a Model per path, named as LiteLLM's deployments are."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "bench-key", "namespace": TENANT},
        "stringData": {"token": KEY},
    }
    models = [
        {
            "apiVersion": "tether.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": model_name(upstream.provider), "namespace": TENANT},
            "spec": {
                "provider": upstream.provider,
                "endpoint": endpoints[upstream.provider],
                "upstreamModel": UPSTREAM_MODEL,
                "credentials": {"secretRef": {"name": "bench-key", "key": "token"}},
            },
        }
        for upstream in UPSTREAMS
    ]
    return [secret, *models]


Samples = dict[str, list[float]]
"""Seconds per measure (MEASURES' keys)."""


@dataclass
class Measured:
    samples: dict[tuple[str, str], Samples]
    """Per (provider, side)."""
    breakdown: dict[str, float]
    """Mean seconds per operator stage (BREAKDOWN's keys), over every Tether request."""
    peer: str | None
    """What stood for LiteLLM, or None when the run skipped it."""
    peer_failures: dict[str, str] = field(default_factory=dict)
    """Per provider, what LiteLLM answered on a path it could not serve."""
    loads: dict[str, Load] = field(default_factory=dict)
    """Per side, the load run on the openai-compatible path."""
    concurrency: int = 0


def no_samples() -> Samples:
    return {name: [] for name in MEASURES}


def measure(client: httpx.Client, call: Call, into: Samples) -> None:
    for name, timer in TIMERS.items():
        seconds, _ = timer(client, call)
        into[name].append(seconds)


def peer_calls(
    client: httpx.Client, proxy: LiteLLMProxy
) -> tuple[dict[tuple[str, str], Call], dict[str, str]]:
    """LiteLLM's call on each path it serves, tried once each way first; what it answered on the
    others, which are reported rather than timed."""
    calls, failures = {}, {}
    for upstream in UPSTREAMS:
        call = proxy.call(upstream.provider)
        try:
            measure(client, call, no_samples())
            calls[upstream.provider, "litellm"] = call
        except CallFailed as error:
            failures[upstream.provider] = str(error)
    return calls, failures


LOAD_PATH = "openai-compatible"


def run(
    requests: int,
    warmup: int,
    peer: bool,
    concurrency: int,
    load_seconds: float,
    given: DevStack | None = None,
) -> Measured:
    """On `given` (a test's stack) or on a stack of its own."""
    work = Path(tempfile.mkdtemp(prefix="tether-bench-"))
    upstreams = LocalUpstreams(work / "upstreams")
    proxy = stack = None
    try:
        upstreams.start()
        endpoints = upstreams.endpoints
        calls = {(u.provider, "direct"): u.direct(endpoints[u.provider]) for u in UPSTREAMS}
        failures = {}
        with httpx.Client(timeout=60) as client:
            if peer:
                proxy = LiteLLMProxy(work / "litellm", endpoints).start()
                served, failures = peer_calls(client, proxy)
                calls.update(served)
            stack = given or DevStack(work / "stack").start()
            key = stack.add_tenant(TENANT)
            for obj in tether_objects(endpoints):
                stack.cluster.apply(obj)
            for upstream in UPSTREAMS:
                calls[upstream.provider, "tether"] = interactions_call(
                    f"{stack.url}/v1/interactions",
                    model_name(upstream.provider),
                    {"x-goog-api-key": key},
                )

            for _ in range(warmup):
                for call in calls.values():
                    measure(client, call, no_samples())
            samples = {target: no_samples() for target in calls}
            before = operator_sums(stack.operator_metrics_url)
            rng = random.Random(7)
            for _ in range(requests):
                order = list(calls)
                rng.shuffle(order)  # interleaved, in random order, so drift hits all alike
                for target in order:
                    measure(client, calls[target], samples[target])
            after = operator_sums(stack.operator_metrics_url)
        breakdown = {
            name: (after[name][0] - before[name][0]) / (after[name][1] - before[name][1])
            for name in BREAKDOWN
        }
        pids = {
            "direct": {"upstream": upstreams.pids[LOAD_PATH]},
            "litellm": {"LiteLLM proxy": proxy.proc.pid} if proxy and proxy.proc else {},
            "tether": {name: proc.pid for name, proc in stack.procs.items()},
        }
        loads = {
            side: load(calls[LOAD_PATH, side], pids[side], concurrency, load_seconds)
            for side in SIDES
            if (LOAD_PATH, side) in calls and load_seconds > 0
        }
        return Measured(samples, breakdown, PIN if peer else None, failures, loads, concurrency)
    finally:
        if stack is not None and stack is not given:
            stack.stop()
        if proxy is not None:
            proxy.stop()
        upstreams.stop()


def _p50_p99(values: list[float] | None) -> tuple[float, float] | None:
    """Milliseconds, or None for a side that was not measured."""
    return (percentile(values, 0.5) * 1e3, percentile(values, 0.99) * 1e3) if values else None


def _row(measured: Measured, provider: str, name: str, title: str) -> str:
    stats = {side: _p50_p99(measured.samples.get((provider, side), {}).get(name)) for side in SIDES}
    cells = [
        f"{ms:.1f}" if ms is not None else "n/a"
        for side in SIDES
        for ms in stats[side] or (None, None)
    ]
    added = {
        side: stats[side][0] - stats["direct"][0] if stats[side] and stats["direct"] else None
        for side in ("litellm", "tether")
    }
    cells += [f"{ms:+.1f}" if ms is not None else "n/a" for ms in added.values()]
    tether, litellm = added["tether"], added["litellm"]
    ratio = f"{tether / litellm:.1f}x" if tether is not None and litellm and litellm > 0 else "n/a"
    return f"| {provider} | {title} | {' | '.join(cells)} | {ratio} |"


def report(measured: Measured, requests: int, command: str) -> str:
    rows = [
        _row(measured, upstream.provider, name, title)
        for upstream in UPSTREAMS
        for name, title in MEASURES.items()
    ]
    tether = [
        v for (_, side), s in measured.samples.items() if side == "tether" for v in s["latency"]
    ]
    breakdown = [
        f"| {text} | {measured.breakdown[name] * 1e3:.1f} |" for name, text in BREAKDOWN.items()
    ]
    return "\n".join(
        [
            "## Gateway overhead (`bench/overhead.py`)",
            "",
            f"Measured {dt.date.today().isoformat()} on {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}; "
            f"{requests} interleaved rounds after warm-up, each round every path on every side"
            f" in random order. Command: `{command}`",
            "",
            *_setup(measured),
            "",
            "| path | measure | direct p50 (ms) | direct p99 (ms) | LiteLLM p50 (ms) |"
            " LiteLLM p99 (ms) | Tether p50 (ms) | Tether p99 (ms) | LiteLLM added p50 (ms) |"
            " Tether added p50 (ms) | Tether added / LiteLLM added |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            *_peer_notes(measured),
            f"Mean Tether non-streaming latency, all paths: {statistics.mean(tether) * 1e3:.1f} ms."
            " Where it goes, from the operator's own histograms over the same requests (means,"
            " streaming and not):",
            "",
            "| stage | mean (ms) |",
            "|---|---|",
            *breakdown,
            "",
            *_loads(measured),
        ]
    )


def _loads(measured: Measured) -> list[str]:
    """Throughput, CPU per request and memory, per side; Tether's per component."""
    if not measured.loads:
        return []
    rows = [
        f"| {SIDES[side]} | {run.per_second:.1f} | {run.failed} | "
        f"{run.cpu_ms_per_request():.1f} | {sum(run.memory[0].values()):.0f} | "
        f"{sum(run.memory[1].values()):.0f} | {run.generator_cpu * 1e3 / max(1, run.completed):.1f}"
        f" | {run.load_average[0]:.2f} → {run.load_average[1]:.2f} |"
        for side, run in measured.loads.items()
    ]
    lines = [
        f"### Throughput at concurrency {measured.concurrency} ({LOAD_PATH} path, non-streaming)",
        "",
        f"{measured.concurrency} clients send the request back to back for"
        f" {next(iter(measured.loads.values())).seconds:.0f} s per side, one side after the other,"
        " from one asyncio loop (aiohttp) in the benchmark's process. *CPU per request* is the user"
        " and system time of the side's processes (each with every process under it) over the"
        " completed requests; the upstream's is in the direct row only. *Memory* is their resident"
        " set before and after the load.",
        "",
        "| side | completed/s | failed | CPU per request (ms) | memory before (MiB) |"
        " memory after (MiB) | load generator CPU per request (ms) | load average (1 min) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    if tether := measured.loads.get("tether"):
        total = sum(tether.cpu.values()) or 1
        lines += [
            "Tether's CPU per request by component:",
            "",
            "| component | CPU per request (ms) | share | memory after (MiB) |",
            "|---|---|---|---|",
            *(
                f"| {name} | {tether.cpu_ms_per_request(name):.1f} | "
                f"{tether.cpu[name] / total:.0%} | {tether.memory[1][name]:.0f} |"
                for name in sorted(tether.cpu, key=tether.cpu.get, reverse=True)
            ),
            "",
        ]
    return lines


def _setup(measured: Measured) -> list[str]:
    lines = [
        "Each path's upstream is a local server speaking the vendor's own protocol"
        " (`tether.dev.fakes.chat_completions`, `.gemini`, `.anthropic`, each its own process)"
        " answering 20 tokens. *Direct* calls it in that protocol (Chat Completions,"
        " generateContent / streamGenerateContent, Messages). *Tether* sends the same prompt to"
        " `POST /v1/interactions`: the gateway writes an Interaction, whose run the operator picks"
        " up from its watch, calls the upstream (streaming), appends events to Redis and writes the"
        " final status. Everything runs on the same cores.",
    ]
    if measured.peer is None:
        return [*lines, "", "*LiteLLM* was skipped in this run (`--no-peer`)."]
    return [
        *lines,
        "",
        f"*LiteLLM* is LiteLLM's proxy (`{measured.peer}`, in a virtual environment of its own,"
        f" one worker, no database) answering the same prompt on `POST {INTERACTIONS_PATH}`, with"
        " one deployment per path: `openai/m` with `use_chat_completions_api` (Interactions →"
        " Responses → Chat Completions), `anthropic/m` (Interactions → Responses → Messages), and"
        " `gemini/m`, which LiteLLM forwards unchanged to Google's own Interactions API"
        " (`POST {api_base}/v1beta/interactions`) instead of calling generateContent.",
        "",
        "*Added* is a side's p50 minus the direct p50; the last column is Tether's added latency"
        " over LiteLLM's.",
    ]


def _peer_notes(measured: Measured) -> list[str]:
    notes = [
        f"- LiteLLM could not serve the {provider} path: `{' '.join(error.split())[:400]}`"
        for provider, error in measured.peer_failures.items()
    ]
    return [*notes, ""] if notes else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="skip LiteLLM's proxy")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--load-seconds", type=float, default=20, help="0 skips the load runs")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    flags = [f"--requests {args.requests}"] if args.requests != 200 else []
    flags += [f"--warmup {args.warmup}"] if args.warmup != 20 else []
    flags += [f"--concurrency {args.concurrency}"] if args.concurrency != 16 else []
    flags += [f"--load-seconds {args.load_seconds:g}"] if args.load_seconds != 20 else []
    flags += [] if args.peer else ["--no-peer"]
    command = f"bench/overhead.py {' '.join(flags)}" if flags else "make bench"
    measured = run(args.requests, args.warmup, args.peer, args.concurrency, args.load_seconds)
    text = report(measured, args.requests, command)
    print(text)
    write_section(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
