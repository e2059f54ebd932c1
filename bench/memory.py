"""What the local stack holds in memory: idle, and after each quarter of 10,000 interactions, so
that growth which levels off can be told from growth without bound.

    make bench-memory     # or: .venv/bin/python bench/memory.py --interactions 10000

The interactions are the overhead benchmark's (the openai-compatible path, 20 tokens,
non-streaming), 16 at a time. Interactions are kept, as a stored interaction is, until the
retention period: their resources and event logs are part of what is measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import redis
from calls import interactions_call  # bench/
from litellm_peer import model_name
from overhead import LOAD_PATH, TENANT, tether_objects
from report import write_section
from throughput import load
from upstreams import LocalUpstreams

from tether.dev.accounting import rss_mib
from tether.dev.stack import DevStack

ROUNDS = 4


def run(
    interactions: int, concurrency: int, given: DevStack | None = None
) -> tuple[list[tuple[str, dict, int, float]], float]:
    """Per moment: what it is, MiB per component, interactions made, Redis's MiB in use; and
    the seconds the interactions took. On `given` (a test's stack) or a stack of its own."""
    work = Path(tempfile.mkdtemp(prefix="tether-bench-memory-"))
    upstreams = LocalUpstreams(work / "upstreams")
    stack = None
    try:
        upstreams.start()
        stack = given or DevStack(work / "stack").start()
        key = stack.add_tenant(TENANT)
        for obj in tether_objects(upstreams.endpoints):
            stack.cluster.apply(obj)
        call = interactions_call(
            f"{stack.url}/v1/interactions", model_name(LOAD_PATH), {"x-goog-api-key": key}
        )
        pids = {name: proc.pid for name, proc in stack.procs.items()}
        store = redis.Redis.from_url(stack.redis_url)

        def moment(what: str, made: int) -> tuple[str, dict, int, float]:
            return what, rss_mib(pids), made, store.info("memory")["used_memory"] / 2**20

        load(call, pids, concurrency, 600, limit=100)  # every code path imported and warm
        time.sleep(5)
        moments = [moment("idle, after 100 to warm up", 0)]
        made, spent = 0, 0.0
        for _ in range(ROUNDS):
            batch = load(call, pids, concurrency, 3600, limit=interactions // ROUNDS)
            made += batch.completed
            spent += batch.seconds
            moments.append(moment(f"after {made:,}", made))
        store.close()
        return moments, spent
    finally:
        if stack is not None and stack is not given:
            stack.stop()
        upstreams.stop()


def report(moments: list[tuple[str, dict, int, float]], spent: float, command: str) -> str:
    components = list(moments[0][1])
    rows = [
        f"| {what} | "
        + " | ".join(f"{mib[c]:.0f}" for c in components)
        + f" | {sum(mib.values()):.0f} | {redis_mib:.1f} |"
        for what, mib, _, redis_mib in moments
    ]
    made = moments[-1][2]
    return "\n".join(
        [
            "## Memory (`bench/memory.py`)",
            "",
            f"Measured {dt.date.today().isoformat()} on {platform.machine()}, {os.cpu_count()}"
            f" cores, Python {platform.python_version()}; {made:,} interactions in"
            f" {spent:.0f} s, 16 at a time, in {ROUNDS} rounds. Command: `{command}`",
            "",
            "Resident memory (MiB) of each component with every process under it, and Redis's"
            " own count of the memory its data holds. The interactions stay stored (their"
            " resources in etcd, their event logs in Redis) until the retention period ends.",
            "",
            "| moment | " + " | ".join(components) + " | all | Redis data (MiB) |",
            "|---|" + "---|" * (len(components) + 2),
            *rows,
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interactions", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    command = (
        "make bench-memory"
        if args.interactions == 10_000
        else f"bench/memory.py --interactions {args.interactions}"
    )
    text = report(*run(args.interactions, args.concurrency), command)
    print(text)
    write_section(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
