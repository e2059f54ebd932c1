"""Which operator replica runs each interaction: one lease per run, in Redis.

Every replica watches every Interaction. The one that claims a run's lease runs it and renews the
lease while the interaction is open; the others leave it alone. A replica that dies stops
renewing: its leases lapse after `LEASE_SECONDS`, and the others, looking every `SCAN_SECONDS`
for open interactions that nobody holds, claim them and resume them.

The lease is also the run's fence. The run's events and its ending are written only while the
lease names this replica, checked in the same Lua call as the write (`EventLog`), so a replica
that was paused past its lease and then goes on writes nothing more: it learns it lost the run,
and drops it.

A replica's name is stable across its restarts (the pod's name), so a restarted replica takes its
own runs back at once instead of waiting for their leases to lapse. (`leases.renewed` keeps one
lease for the length of a block, one task each; a replica holding hundreds of runs renews them
all in one call.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio import Redis

from tether.store.events import TAKE_LEASE, Fence, ended_key, ending_of, stream_key

LEASE_SECONDS = 10.0
RENEW_SECONDS = LEASE_SECONDS / 4
SCAN_SECONDS = 2.0
"""Replica failover: a run is resumed elsewhere at most LEASE_SECONDS + SCAN_SECONDS after its
replica's last renewal."""

# KEYS: the lease, the ended marker, the event log. ARGV: holder, lease ms.
# Returns {} when another holds it; else {the ended marker's value or '', whether the log exists}.
_CLAIM = (
    TAKE_LEASE
    + """
if not take(KEYS[1], ARGV[1], ARGV[2]) then return {} end
return {redis.call('GET', KEYS[2]) or '', redis.call('EXISTS', KEYS[3])}
"""
)
# KEYS: leases. ARGV: holder, lease ms. Renews those held, takes back those that lapsed with
# nobody taking them (a Redis restart). Returns the (1-based) indexes of those another holds.
_RENEW = (
    TAKE_LEASE
    + """
local lost = {}
for i = 1, #KEYS do
  if not take(KEYS[i], ARGV[1], ARGV[2]) then lost[#lost + 1] = i end
end
return lost
"""
)

Run = tuple[str, str]
"""An interaction, as (namespace, name)."""


def lease_key(namespace: str, name: str) -> str:
    return f"tether:lease:{namespace}/{name}"


@dataclass(frozen=True)
class Claim:
    """A run this replica has just claimed, and what an earlier holder may have left of it."""

    ended: dict | None
    """The ending announced, if one was (its status may still be unwritten)."""
    begun: bool
    """Its event log exists: an earlier try began it."""


class RunLeases:
    """This replica's leases: claimed, renewed, and given up."""

    def __init__(self, redis: Redis, holder: str, lease_seconds: float = LEASE_SECONDS) -> None:
        self.redis = redis
        self.holder = holder
        self.lease_ms = int(lease_seconds * 1000)
        self._held: dict[Run, str] = {}
        """The runs held here, with their interactions' uids."""
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)

    def holds(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._held

    def fence(self, namespace: str, name: str) -> Fence | None:
        """The fence for this replica's writes to a run it holds; None for one it does not
        (an ending written from outside the run, such as a deadline's, is not fenced)."""
        if (namespace, name) not in self._held:
            return None
        return Fence(lease_key(namespace, name), self.holder, self.lease_ms)

    async def claim(self, uid: str, namespace: str, name: str) -> Claim | None:
        """Take the run's lease unless another replica holds it (None then)."""
        keys = [lease_key(namespace, name), ended_key(namespace, name), stream_key(namespace, name)]
        found = await self._claim(keys=keys, args=[self.holder, self.lease_ms])
        if not found:
            return None
        self._held[namespace, name] = uid
        return Claim(ended=ending_of(found[0]), begun=bool(found[1]))

    async def vacant(self, runs: Iterable[Run]) -> list[Run]:
        """Of `runs`, those whose lease nobody holds."""
        runs = list(runs)
        if not runs:
            return []
        holders = await self.redis.mget([lease_key(ns, name) for ns, name in runs])
        return [run for run, holder in zip(runs, holders, strict=True) if holder is None]

    async def renew(self) -> list[tuple[Run, str]]:
        """Renew every lease held here; returns those another replica holds now (with their
        uids), no longer held here."""
        held = list(self._held.items())
        if not held:
            return []
        keys = [lease_key(ns, name) for (ns, name), _ in held]
        indexes = await self._renew(keys=keys, args=[self.holder, self.lease_ms])
        lost = [held[i - 1] for i in indexes]
        for run, _uid in lost:
            self._held.pop(run, None)
        return lost

    def drop(self, namespace: str, name: str) -> None:
        """The run has ended or is gone: stop renewing its lease (it lapses on its own, so that
        a stale event for it claims nothing for a while)."""
        self._held.pop((namespace, name), None)
