"""The benchmarks run, short, and report what they measure: nothing here is timed. The first
runs as its command does; the others measure the stack it leaves (one stack start, not three)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tether.dev.stack import DevStack

pytestmark = [pytest.mark.integration, pytest.mark.own_cluster]
BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))  # the scripts import their siblings as top-level modules

import kwok_scale  # noqa: E402
import memory  # noqa: E402


def bench(script: str, *args: str, out: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out.read_text()


@pytest.fixture(scope="module")
def bench_stack(tmp_path_factory):
    stack = DevStack(tmp_path_factory.mktemp("bench")).start()
    yield stack
    stack.stop()


def test_the_overhead_bench_measures_every_path_and_the_load(tmp_path):
    text = bench(
        "overhead.py",
        *("--requests", "3", "--warmup", "1", "--load-seconds", "2", "--no-peer"),
        out=tmp_path / "BENCHMARKS.md",
    )
    for path in ("openai-compatible", "gemini", "anthropic"):
        assert f"| {path} | non-streaming latency |" in text
    assert "### Throughput at concurrency 16" in text
    tether = next(line for line in text.splitlines() if line.startswith("| Tether |"))
    completed_per_second, failed = tether.split("|")[2:4]
    assert float(completed_per_second) > 0 and int(failed) == 0
    for component in ("operator", "gateway", "kube-apiserver", "etcd", "redis"):
        assert f"| {component} |" in text


def test_the_memory_bench_measures_idle_and_after_each_round(bench_stack):
    text = memory.report(*memory.run(40, 16, given=bench_stack), "short")
    rows = [line for line in text.splitlines() if line.startswith(("| idle", "| after"))]
    assert [row.split("|")[1].strip() for row in rows] == [
        "idle, after 100 to warm up",
        "after 10",
        "after 20",
        "after 30",
        "after 40",
    ]


def test_the_kwok_bench_runs_agent_runs_on_fake_nodes_and_cleans_up(bench_stack):
    """Last: it leaves the stack's node cordoned."""
    text = kwok_scale.report(kwok_scale.run(20, 2, given=bench_stack), "short")
    assert "20 agent runs in flight at once on 2 kwok nodes" in text
    assert "| → its sandbox pod bound to a node |" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    for kind in ("Interaction", "Pod", "Secret", "NetworkPolicy"):
        assert rows[kind].split("|")[2].strip() == "20", rows[kind]  # one of each per run
