"""Scale out (`make chaos`, on the suite's stack after the fault scenario): three operator
replicas share 200 runs in flight, behind three gateways on one address, and the leader
replica is SIGKILLed for good. Every run must end exactly
once, run by one replica at a time; the dead replica's runs and its Lease must move to the others
within 15 s; every gateway must have served."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx
import kubernetes
import pytest
import redis

from tests.chaos.report import SCALE_OUT_KEY
from tether.dev.accounting import cpu_of
from tether.dev.stack import SYSTEM_NAMESPACE, DevStack
from tether.operator.leadership import LEASE_NAME
from tether.store.events import TERMINAL_EVENT, stream_key
from tether.store.run_leases import lease_key

pytestmark = pytest.mark.chaos

TENANT = "scale"
RUNS = 200
SLEEP_SECONDS = 8
"""How long each run's model takes: all of them are in flight when the replica dies."""
FAILOVER_SECONDS = 15
SETTLE_SECONDS = 120


@dataclass
class ScaleOut:
    ids: list[str] = field(default_factory=list)
    held: dict[str, int] = field(default_factory=dict)
    """Runs held by each replica when the leader was killed."""
    victim: str = ""
    in_flight_at_kill: int = 0
    holders: dict[str, list[str]] = field(default_factory=dict)
    """Each run's lease holders, in the order seen."""
    failover: list[float] = field(default_factory=list)
    """Seconds from the kill to each of the victim's runs being held by another replica."""
    leader_after: str = ""
    leader_moved_after: float | None = None
    final: dict[str, dict] = field(default_factory=dict)
    logs: dict[str, list[dict]] = field(default_factory=dict)
    gateway_cpu: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        worst = max(self.failover, default=0.0)
        return "\n".join(
            [
                f"runs: {len(self.ids)}, in flight at the kill: {self.in_flight_at_kill}",
                f"held per replica at the kill: {self.held} (killed: {self.victim}, the leader)",
                f"its runs taken over after: max {worst:.1f} s, "
                f"median {sorted(self.failover)[len(self.failover) // 2]:.1f} s"
                if self.failover
                else "its runs taken over: none seen",
                f"Lease moved to {self.leader_after} after {self.leader_moved_after} s",
                "CPU seconds served by each gateway: "
                + ", ".join(f"{name} {cpu:.2f}" for name, cpu in self.gateway_cpu.items()),
            ]
        )


@pytest.fixture(scope="module")
def scaled(stack, pytestconfig) -> ScaleOut:
    result = asyncio.run(scenario(stack, stack.add_tenant(TENANT)))
    pytestconfig.stash[SCALE_OUT_KEY] = f"{result.table()}\n\nthe stack's logs are in {stack.logs}"
    return result


async def scenario(stack: DevStack, key: str) -> ScaleOut:
    result = ScaleOut()
    gateways = {name: stack.procs[name].pid for name in stack.gateways}
    cpu_before = cpu_of(gateways)
    store = redis.Redis.from_url(stack.redis_url)
    api = stack.control_plane.api_client()
    coordination = kubernetes.client.CoordinationV1Api(api)

    def leader() -> str:
        lease = coordination.read_namespaced_lease(LEASE_NAME, SYSTEM_NAMESPACE)
        return lease.spec.holder_identity

    def holders() -> dict[str, str | None]:
        found = store.mget([lease_key(TENANT, id_) for id_ in result.ids])
        return {id_: h.decode() if h else None for id_, h in zip(result.ids, found, strict=True)}

    async with httpx.AsyncClient(
        base_url=stack.url, headers={"x-goog-api-key": key}, timeout=60
    ) as http:
        gate = asyncio.Semaphore(32)

        async def create() -> str:
            body = {"model": "echo", "input": f"/sleep {SLEEP_SECONDS}", "background": True}
            async with gate:
                response = await http.post("/v1/interactions", json=body)
            response.raise_for_status()
            return response.json()["id"]

        result.ids = list(await asyncio.gather(*(create() for _ in range(RUNS))))
        claimed_by = time.monotonic() + 30
        while None in (seen := holders()).values() and time.monotonic() < claimed_by:
            await asyncio.sleep(0.1)  # until every run is claimed by a replica
        result.victim = leader()
        result.held = {name: list(seen.values()).count(name) for name in stack.operators}
        statuses = await asyncio.gather(*(status(http, id_) for id_ in result.ids))
        result.in_flight_at_kill = sum(1 for s in statuses if s == "in_progress")
        victims = {id_ for id_, holder in seen.items() if holder == result.victim}
        result.holders = {id_: [holder] for id_, holder in seen.items()}
        stack.kill(result.victim, restart=False)
        killed = time.monotonic()

        deadline = killed + SETTLE_SECONDS
        moved: dict[str, float] = {}
        while time.monotonic() < deadline:
            now = time.monotonic()
            for id_, holder in holders().items():
                if holder is not None and holder != result.holders[id_][-1]:
                    result.holders[id_].append(holder)
                if id_ in victims and id_ not in moved and holder not in (None, result.victim):
                    moved[id_] = now - killed
            if not result.leader_after and (now_leader := leader()) != result.victim:
                result.leader_after, result.leader_moved_after = now_leader, round(now - killed, 1)
            if len(moved) == len(victims) and result.leader_after:
                break
            await asyncio.sleep(0.2)
        result.failover = sorted(moved.values())

        while time.monotonic() < deadline:
            found = await asyncio.gather(*(get(http, id_) for id_ in result.ids))
            result.final = dict(zip(result.ids, found, strict=True))
            if all(i["status"] not in ("in_progress", "created") for i in found):
                break
            await asyncio.sleep(1)

    with store.pipeline(transaction=False) as pipe:
        for id_ in result.ids:
            pipe.xrange(stream_key(TENANT, id_))
        logs = pipe.execute()
    result.logs = {
        id_: [json.loads(fields[b"e"]) for _, fields in log]
        for id_, log in zip(result.ids, logs, strict=True)
    }
    cpu_after = cpu_of(gateways)
    result.gateway_cpu = {name: round(cpu_after[name] - cpu_before[name], 2) for name in gateways}
    store.close()
    api.close()
    return result


async def get(http: httpx.AsyncClient, id_: str) -> dict:
    response = await http.get(f"/v1/interactions/{id_}")
    response.raise_for_status()
    return response.json()


async def status(http: httpx.AsyncClient, id_: str) -> str:
    return (await get(http, id_))["status"]


def test_the_runs_were_shared_and_in_flight_when_the_leader_died(scaled):
    assert scaled.in_flight_at_kill == RUNS, scaled.table()
    assert all(count > 0 for count in scaled.held.values()), scaled.held


def test_every_run_ends_once_and_was_run_by_one_replica_at_a_time(scaled):
    assert {i["status"] for i in scaled.final.values()} == {"completed"}, scaled.table()
    for id_, log in scaled.logs.items():
        types = [e["event_type"] for e in log]
        assert types.count(TERMINAL_EVENT) == 1, (id_, types)
        assert types.count("interaction.created") == 1, (id_, types)
        text = "".join(e["delta"].get("text", "") for e in log if e["event_type"] == "step.delta")
        assert text.split() == ["slept", str(SLEEP_SECONDS)], (id_, text)
        holders = scaled.holders[id_]
        assert len(holders) <= 2 and (len(holders) == 1 or holders[0] == scaled.victim), holders


def test_the_dead_replicas_runs_and_lease_move_within_15_seconds(scaled):
    assert len(scaled.failover) == scaled.held[scaled.victim], scaled.table()
    assert max(scaled.failover) <= FAILOVER_SECONDS, scaled.table()
    assert scaled.leader_after not in ("", scaled.victim), scaled.table()
    assert scaled.leader_moved_after <= FAILOVER_SECONDS + 1, scaled.table()


def test_every_gateway_behind_the_one_address_served(scaled):
    assert all(cpu > 0.1 for cpu in scaled.gateway_cpu.values()), scaled.gateway_cpu
