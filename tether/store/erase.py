"""The end of an interaction's life: everything Tether keeps for it goes, in one place."""

from __future__ import annotations

from typing import Protocol

from tether.kube import Kube
from tether.store.events import EventLog


class Store(Protocol):
    async def delete(self, namespace: str, name: str) -> None: ...


async def erase(kube: Kube, events: EventLog, namespace: str, name: str, *stores: Store) -> bool:
    """Delete the Interaction (its sandbox objects follow by owner reference), its event log
    (a stream still following it ends with an error event), and what `stores` keep for it (an
    agent run's steps and files, large outputs). False if it did not exist."""
    existed = await kube.delete("interactions", namespace, name)
    await events.delete(namespace, name)
    for store in stores:
        await store.delete(namespace, name)
    return existed
