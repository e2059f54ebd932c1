"""Agent runs on the real node: `make up`'s start, cold and warm, and each run's accepted →
sandbox running → first model call, under runc and under gVisor, in a pod of its own and from
a warm pool.

    sudo make bench-sandbox        # or: .venv/bin/python bench/sandbox_start.py --runs 30

It brings the chart up as `make up` does, in a folder of its own: once on a fresh folder (the
images are built or taken from buildah's cache, then imported) and once more on the same
folder (warm). Then it runs agent runs one at a time (the offline `scripted` model: one model
call each) and reads each run's latencies from the operator's and the gateway's own histograms:
over one run, the growth of a histogram's sum is that run's value.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import kubernetes
from google import genai
from prometheus_client.parser import text_string_to_metric_families
from report import write_section  # bench/, the script's folder

from tether.dev.control_plane import free_port
from tether.dev.processes import http_ok, wait_until
from tether.dev.stack import DEFAULT_TENANT, SYSTEM_NAMESPACE
from tether.dev.up import CHART, RELEASE, LocalTether
from tether.operator.sandbox_pod import POOL_LABEL, WARM_LABEL

AGENTS = ("tether.dev", "v1alpha1", DEFAULT_TENANT, "agents")
WARM_AGENT = "warm-bench"
WARM_POOL = 2
SANDBOX_START = "tether_sandbox_start_seconds"
FIRST_CALL = "tether_sandbox_first_model_call_seconds"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def histogram_sum(url: str, name: str) -> float:
    text = httpx.get(url, timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_sum":
                return sample.value
    return 0.0


def operator_metrics(tether: LocalTether) -> str:
    """The metrics URL of the operator pod now serving (after an upgrade has replaced it)."""
    core = kubernetes.client.CoreV1Api(tether.cluster.control_plane.api_client())

    def serving() -> str | None:
        pods = core.list_namespaced_pod(
            SYSTEM_NAMESPACE, label_selector="app.kubernetes.io/name=tether-operator"
        ).items
        for pod in pods:
            url = f"http://{pod.status.pod_ip}:9090/metrics"
            if not pod.metadata.deletion_timestamp and pod.status.pod_ip and http_ok(url):
                return url
        return None

    wait_until("the operator's metrics", lambda: serving() is not None, 120)
    return serving()


def keep_warm_pool(tether: LocalTether, size: int) -> None:
    """An Agent in the tenant's namespace keeping `size` idle sandbox pods."""
    custom = kubernetes.client.CustomObjectsApi(tether.cluster.control_plane.api_client())
    agent = {
        "apiVersion": "tether.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": WARM_AGENT, "namespace": DEFAULT_TENANT},
        "spec": {"agentConfig": {"model": "scripted"}, "warmPool": {"size": size}},
    }
    try:
        custom.create_namespaced_custom_object(*AGENTS, agent)
    except kubernetes.client.ApiException as error:
        if error.status != 409:
            raise
        custom.patch_namespaced_custom_object(*AGENTS, WARM_AGENT, agent)


def idle_ready(tether: LocalTether) -> int:
    core = kubernetes.client.CoreV1Api(tether.cluster.control_plane.api_client())
    pods = core.list_namespaced_pod(
        DEFAULT_TENANT, label_selector=f"{POOL_LABEL}={WARM_AGENT},{WARM_LABEL}"
    ).items
    return sum(
        1
        for pod in pods
        if pod.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    )


def measure(tether: LocalTether, runtime: str, runs: int, warm: bool) -> dict[str, list[float]]:
    """`runs` agent runs, one at a time, under `runtime` ("" for the node's default, runc);
    `warm`: each claims an idle pod of a warm pool (waited for before the run)."""
    tether.helm(
        "upgrade", RELEASE, str(CHART), "--namespace", SYSTEM_NAMESPACE, "--reuse-values",
        "--set", f"sandbox.runtimeClassName={runtime}", "--wait", "--timeout", "3m",
    )  # fmt: skip
    client = genai.Client(api_key=tether.api_key, http_options={"base_url": tether.url})
    operator, gateway = operator_metrics(tether), f"{tether.url}/metrics"
    found: dict[str, list[float]] = {"start": [], "first_call": [], "run": []}
    keep_warm_pool(tether, WARM_POOL if warm else 0)
    for index in range(runs + 1):  # the first warms the node's image cache for this runtime
        if warm:  # the pool was refilled (its pods follow the runtime class too)
            wait_until("an idle warm pod", lambda: idle_ready(tether) >= WARM_POOL, 120)
        before = histogram_sum(operator, SANDBOX_START), histogram_sum(gateway, FIRST_CALL)
        started = time.perf_counter()
        done = client.interactions.create(
            agent=WARM_AGENT if warm else "eva",
            input="hi",
            agent_config={"type": "dynamic", "model": "scripted"},
        )
        elapsed = time.perf_counter() - started
        if done.status != "completed":
            raise RuntimeError(f"run {done.id} ended {done.status}")
        after = histogram_sum(operator, SANDBOX_START), histogram_sum(gateway, FIRST_CALL)
        if index:
            found["start"].append(after[0] - before[0])
            found["first_call"].append(after[1] - before[1])
            found["run"].append(elapsed)
    return found


def report(starts: dict[str, float], results: dict[str, dict], runs: int, command: str) -> str:
    when = dt.date.today().isoformat()
    rows = []
    for runtime, found in results.items():
        row = [runtime]
        for key in ("start", "first_call", "run"):
            values = [v * 1000 for v in found[key]]
            row += [f"{percentile(values, 0.5):.0f}", f"{percentile(values, 0.9):.0f}"]
        row.append(f"{statistics.mean(found['run']) * 1000:.0f}")
        rows.append("| " + " | ".join(row) + " |")
    return "\n".join(
        [
            "## Agent runs on the real node (`bench/sandbox_start.py`)",
            "",
            f"Measured {when} on {platform.machine()}, {os.cpu_count()} cores; {runs} agent "
            f"runs per runtime, one at a time, after one warm-up run. Command: `{command}`",
            "",
            "`make up`'s start (the chart on a control plane and a real node), from the same "
            "code path as `make up`:",
            "",
            "| start | seconds |",
            "|---|---|",
            *(f"| {name} | {seconds:.1f} |" for name, seconds in starts.items()),
            "",
            "Each run: the `scripted` model, one model call, in a sandbox pod of two containers. "
            "*Accepted* is the gateway accepting the create; *sandbox running* is the operator "
            "seeing the pod run; *first model call* is the sandbox's first call reaching the "
            "gateway; *run* is the client's whole synchronous create.",
            "",
            "| runtime | accepted → sandbox running p50 (ms) | p90 | accepted → first model "
            "call p50 (ms) | p90 | run p50 (ms) | p90 | run mean (ms) |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"*Warm pool*: the runs' Agent keeps {WARM_POOL} idle sandbox pods (`warm_pool`); "
            "each run claims one (the bench waits for the pool to refill between runs, so every "
            "run measures a claim, not a start); *sandbox running* is then the claim.",
            "",
            "Anchors: the Kubernetes pod-startup SLO (p99 ≤ 5 s); kubernetes-sigs/agent-sandbox's "
            "warm-claim zone (≤ 500 ms); the aims here are a cold p50 ≤ 2 s and, from a warm "
            "pool, accepted → first model call p50 ≤ 300 ms.",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="tether-bench-sandbox-"))
    port = free_port()
    starts: dict[str, float] = {}
    results: dict[str, dict] = {}
    tether = LocalTether(state, port)
    try:
        for name in ("fresh folder (images imported)", "warm (same folder)"):
            tether = LocalTether(state, port)
            began = time.monotonic()
            tether.start()
            starts[name] = time.monotonic() - began
            if name.startswith("warm"):
                break
            tether.stop()
        for runtime, label in (("", "runc"), ("gvisor", "gVisor")):
            results[label] = measure(tether, runtime, args.runs, warm=False)
            results[f"{label}, warm pool"] = measure(tether, runtime, args.runs, warm=True)
    finally:
        tether.stop()  # safe to call twice
        shutil.rmtree(state, ignore_errors=True)
    command = "make bench-sandbox" + ("" if args.runs == 30 else f" (--runs {args.runs})")
    text = report(starts, results, args.runs, command)
    print(text)
    write_section(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
