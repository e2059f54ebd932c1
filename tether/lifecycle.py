"""The end of an interaction's life: everything Tether keeps for it goes, in one place."""

from __future__ import annotations

from tether.events import EventLog
from tether.kube import Kube
from tether.run_store import RunStore


async def erase(kube: Kube, events: EventLog, runs: RunStore, namespace: str, name: str) -> bool:
    """Delete the Interaction (its sandbox objects follow by owner reference), its event log
    and what its agent run left (steps, outcome, files). False if it did not exist."""
    existed = await kube.delete("interactions", namespace, name)
    await events.delete(namespace, name)
    await runs.delete(namespace, name)
    return existed
