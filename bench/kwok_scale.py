"""Agent runs at scale on fake nodes: 1,000 concurrent runs, each with its sandbox pod, Secret and
NetworkPolicy, scheduled onto kwok's nodes.

    make bench-kwok        # or: .venv/bin/python bench/kwok_scale.py --runs 1000 --nodes 10

The local stack (its real node cordoned, so that every sandbox goes to a fake node) and kwok,
which plays the kubelet of `--nodes` fake nodes: it marks each pod bound there Running (no
container runs, so no run ever ends by itself). The runs are created through the gateway, as
clients do, 16 at a time; a watch timestamps each pod's binding and its Running. Then every run
is cancelled, and the clean-up timed until no sandbox object is left.

Reported: accepted (the gateway's own timestamp on each run) → pod bound and → Running, p50 and
p99; the memory of each component before and with every run in flight; the API objects a run
holds and their bytes as the API server serves them; Redis's memory per run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import redis
from report import write_section  # bench/, the script's folder

from tether.api.interaction import ACCEPTED_ANNOTATION
from tether.dev.accounting import cpu_of, rss_mib
from tether.dev.control_plane import kwok_binary
from tether.dev.processes import Service, wait_until
from tether.dev.stack import DevStack
from tether.operator.sandbox_pod import SANDBOX_LABEL

TENANT = "scale"
FAKE = "kwok.x-k8s.io/node"
SETTLE_SECONDS = 600


def fake_node(name: str, pods: int) -> dict[str, Any]:
    """A Node for kwok to play: room for `pods` sandboxes, whatever they ask for."""
    room = {"cpu": "10000", "memory": "64Ti", "ephemeral-storage": "64Ti", "pods": str(pods)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE: "fake"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"},
        },
        "status": {"allocatable": room, "capacity": room},
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class PodTimes:
    """When each sandbox pod was first seen bound to a node and Running, by a watch."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self.core = kubernetes.client.CoreV1Api(api)
        self.accepted: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def start(self) -> PodTimes:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(10)

    def _follow(self) -> None:
        version = None
        while not self._stopped.is_set():
            try:  # short watches, each going on from the last, so that a stop is seen at once
                for event in kubernetes.watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    TENANT,
                    label_selector=SANDBOX_LABEL,
                    resource_version=version,
                    timeout_seconds=1,
                ):
                    self._seen(event["object"])
                    version = event["object"].metadata.resource_version
            except Exception:  # the API server away, or the version too old: watch anew
                version = None
                time.sleep(0.1)

    def _seen(self, pod: Any) -> None:
        now, name = time.time(), pod.metadata.name
        accepted = (pod.metadata.annotations or {}).get(ACCEPTED_ANNOTATION)
        if accepted:
            self.accepted.setdefault(name, float(accepted))
        if pod.spec.node_name:
            self.bound.setdefault(name, now)
        if pod.status.phase == "Running":
            self.running.setdefault(name, now)


def api_objects(api: kubernetes.client.ApiClient) -> dict[str, tuple[int, int]]:
    """(count, bytes as served) of each kind of object in the tenant's namespace."""
    core = kubernetes.client.CoreV1Api(api)
    net = kubernetes.client.NetworkingV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    found = {
        "Interaction": custom.list_namespaced_custom_object(
            "tether.dev", "v1alpha1", TENANT, "interactions"
        )["items"],
        "Pod": core.list_namespaced_pod(TENANT, label_selector=SANDBOX_LABEL).items,
        "Secret": core.list_namespaced_secret(TENANT, label_selector=SANDBOX_LABEL).items,
        "NetworkPolicy": net.list_namespaced_network_policy(
            TENANT, label_selector=SANDBOX_LABEL
        ).items,
    }
    return {
        kind: (len(items), sum(len(json.dumps(api.sanitize_for_serialization(i))) for i in items))
        for kind, items in found.items()
    }


async def create_runs(url: str, key: str, runs: int) -> tuple[list[str], float]:
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=url, headers={"x-goog-api-key": key}, timeout=60) as http:

        async def create(i: int) -> str:
            body = {"agent": "eva", "input": f"task {i}", "background": True}
            async with gate:
                response = await http.post("/v1/interactions", json=body)
            response.raise_for_status()
            return response.json()["id"]

        started = time.monotonic()
        ids = await asyncio.gather(*(create(i) for i in range(runs)))
        return list(ids), time.monotonic() - started


async def cancel_runs(url: str, key: str, ids: list[str]) -> None:
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=url, headers={"x-goog-api-key": key}, timeout=60) as http:

        async def cancel(id_: str) -> None:
            async with gate:
                response = await http.post(f"/v1/interactions/{id_}/cancel")
            response.raise_for_status()

        await asyncio.gather(*(cancel(id_) for id_ in ids))


def run(runs: int, nodes: int, given: DevStack | None = None) -> dict[str, Any]:
    """On `given` (a test's stack, left with its node cordoned) or a stack of its own."""
    work = Path(tempfile.mkdtemp(prefix="tether-bench-kwok-"))
    stack = given or DevStack(work / "stack")
    kwok: Service | None = None
    times: PodTimes | None = None
    api: kubernetes.client.ApiClient | None = None
    try:
        if stack is not given:
            stack.start()
        key = stack.add_tenant(TENANT)
        api = stack.control_plane.api_client()
        core = kubernetes.client.CoreV1Api(api)
        real = stack.local.node.name
        core.patch_node(real, {"spec": {"unschedulable": True}})  # sandboxes go to fake nodes
        per_node = -(-runs // nodes) + 10
        for i in range(nodes):
            core.create_node(fake_node(f"kwok-{i}", per_node))
        kwok = Service(
            "kwok",
            [
                str(kwok_binary()),
                f"--kubeconfig={stack.control_plane.kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={FAKE}=fake",
                "--cidr=10.220.0.1/16",
                "--node-ip=10.220.0.1",
                "--server-address=127.0.0.1:0",
            ],
            stack.logs / "kwok.log",
            lambda: all(
                any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
                for n in core.list_node(label_selector="type=kwok").items
            ),
        )
        kwok.start()
        kwok.wait_ready(60)
        scheduler = stack.local.node.services["kube-scheduler"].proc.pid
        pids = {name: proc.pid for name, proc in stack.procs.items()}
        pids |= {"kube-scheduler": scheduler, "kwok": kwok.proc.pid}
        store = redis.Redis.from_url(stack.redis_url)
        redis_before = store.info("memory")["used_memory"]
        idle = rss_mib(pids)
        times = PodTimes(api).start()

        cpu_before = cpu_of(pids)
        ids, creating = asyncio.run(create_runs(stack.url, key, runs))
        wait_until(
            f"{runs} sandbox pods running",
            lambda: len(times.running) >= runs,
            SETTLE_SECONDS,
        )
        cpu_after = cpu_of(pids)
        peak = rss_mib(pids)
        objects = api_objects(api)
        redis_per_run = (store.info("memory")["used_memory"] - redis_before) / runs

        cancelled = time.monotonic()
        asyncio.run(cancel_runs(stack.url, key, ids))
        wait_until(
            "every sandbox object deleted",
            lambda: all(
                count == 0 for kind, (count, _) in api_objects(api).items() if kind != "Interaction"
            ),
            SETTLE_SECONDS,
        )
        cleanup = time.monotonic() - cancelled
        after = rss_mib(pids)
        store.close()
        pods = sorted(times.running)
        return {
            "runs": runs,
            "nodes": nodes,
            "creating": creating,
            "bound": [times.bound[p] - times.accepted[p] for p in pods],
            "running": [times.running[p] - times.accepted[p] for p in pods],
            "memory": (idle, peak, after),
            "cpu": {name: cpu_after[name] - cpu_before[name] for name in pids},
            "ramp": max(times.running.values()) - min(times.accepted.values()),
            "objects": objects,
            "redis_per_run": redis_per_run,
            "cleanup": cleanup,
        }
    finally:
        if times is not None:
            times.stop()
        if api is not None:
            api.close()
        if kwok is not None:
            kwok.stop()
        if stack is not given:
            stack.stop()
        shutil.rmtree(work, ignore_errors=True)


def report(result: dict[str, Any], command: str) -> str:
    runs = result["runs"]
    idle, peak, after = result["memory"]
    components = [c for c in peak if peak[c] > 0]
    bound, running = result["bound"], result["running"]
    object_rows = [
        f"| {kind} | {count:,} | {count / runs:.2f} | {size / max(1, count) / 1024:.1f} |"
        f" {size / runs / 1024:.1f} |"
        for kind, (count, size) in result["objects"].items()
    ]
    total = sum(size for _, size in result["objects"].values())
    return "\n".join(
        [
            "## Agent runs at scale on kwok (`bench/kwok_scale.py`)",
            "",
            f"Measured {dt.date.today().isoformat()} on {platform.machine()}, {os.cpu_count()}"
            f" cores; {runs:,} agent runs in flight at once on {result['nodes']} kwok nodes"
            f" (kwok {kwok_binary().parent.parent.name.removeprefix('kwok-')}), created through"
            f" the gateway 16 at a time in {result['creating']:.1f} s"
            f" ({runs / result['creating']:.1f}/s); every run then cancelled and cleaned up in"
            f" {result['cleanup']:.1f} s. Command: `{command}`",
            "",
            "| from the gateway accepting a run | p50 | p99 | max |",
            "|---|---|---|---|",
            f"| → its sandbox pod bound to a node | {percentile(bound, 0.5):.2f} s |"
            f" {percentile(bound, 0.99):.2f} s | {max(bound):.2f} s |",
            f"| → the pod Running (kwok's kubelet) | {percentile(running, 0.5):.2f} s |"
            f" {percentile(running, 0.99):.2f} s | {max(running):.2f} s |",
            "",
            f"From the first run accepted to the last pod Running took {result['ramp']:.1f} s"
            f" ({runs / result['ramp']:.1f} sandboxes started per second). CPU seconds each"
            " component spent meanwhile, and per run:",
            "",
            "| " + " | ".join(result["cpu"]) + " |",
            "|" + "---|" * len(result["cpu"]),
            "| " + " | ".join(f"{cpu:.1f} s" for cpu in result["cpu"].values()) + " |",
            "| "
            + " | ".join(f"{cpu * 1e3 / runs:.1f} ms" for cpu in result["cpu"].values())
            + " |",
            "",
            "Resident memory (MiB) of each component with every process under it:",
            "",
            "| moment | " + " | ".join(components) + " |",
            "|---|" + "---|" * len(components),
            "| before the runs | " + " | ".join(f"{idle[c]:.0f}" for c in components) + " |",
            f"| {runs:,} runs in flight | "
            + " | ".join(f"{peak[c]:.0f}" for c in components)
            + " |",
            "| after the clean-up | " + " | ".join(f"{after[c]:.0f}" for c in components) + " |",
            "",
            f"What each run holds in the API server while it runs ({total / runs / 1024:.1f} KiB"
            " in all, as served in JSON), and in Redis"
            f" ({result['redis_per_run'] / 1024:.1f} KiB):",
            "",
            "| object | count | per run | KiB each | KiB per run |",
            "|---|---|---|---|---|",
            *object_rows,
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    if not kwok_binary().exists():
        sys.exit(f"no {kwok_binary()}: run `make control-plane`")
    command = (
        "make bench-kwok"
        if (args.runs, args.nodes) == (1000, 10)
        else f"bench/kwok_scale.py --runs {args.runs} --nodes {args.nodes}"
    )
    text = report(run(args.runs, args.nodes), command)
    print(text)
    write_section(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
