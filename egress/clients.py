"""Who is calling: the sandbox pods by address, from a watch on the cluster's pods.

A connection's source address names its run. Untrusted code cannot forge that: its pod has no
capabilities (no raw sockets to spoof a source address with), a TCP handshake from a spoofed
address never completes, and the address comes from the pod's status, which only the kubelet
writes. The run's allowlist comes from the pod's annotation, which only the operator writes
(a sandbox holds no service-account token).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import watch as kube_watch

from tether.api.common import EgressAllowlist
from tether.api.internal import EGRESS_ANNOTATION, INTERACTION_LABEL, SANDBOX_LABEL
from tether.kube import Kube

log = logging.getLogger("tether.egress")

LIVE_PHASES = frozenset({"Pending", "Running"})


@dataclass(frozen=True)
class Client:
    """A sandbox pod: the run it belongs to, and where that run may go."""

    namespace: str
    interaction: str
    uid: str
    """The Interaction's uid."""
    pod_uid: str
    allowlist: EgressAllowlist
    """An empty allowlist (network "disabled") lets nothing through."""

    @property
    def run(self) -> str:
        return f"{self.namespace}/{self.interaction}"


def client_of(pod: dict[str, Any]) -> tuple[str, Client] | None:
    """A live sandbox pod's address and what it may reach; None for any other pod. Pure."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    labels, owners = meta.get("labels") or {}, meta.get("ownerReferences") or []
    address = status.get("podIP")
    interaction = labels.get(INTERACTION_LABEL)
    owner = next((o for o in owners if o.get("kind") == "Interaction"), None)
    if not address or status.get("phase") not in LIVE_PHASES or not interaction or not owner:
        return None
    rules = json.loads((meta.get("annotations") or {}).get(EGRESS_ANNOTATION) or '"disabled"')
    allowlist = EgressAllowlist(allowlist="disabled" if rules == "disabled" else rules["allowlist"])
    client = Client(meta["namespace"], interaction, owner["uid"], meta["uid"], allowlist)
    return address, client


class Clients:
    """The live sandbox pods by address, kept by a watch; a miss asks the API server once, for
    a pod that started since the last event."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._by_address: dict[str, Client] = {}
        self.synced = asyncio.Event()

    async def find(self, address: str) -> Client | None:
        address = address.removeprefix("::ffff:")
        if client := self._by_address.get(address):
            return client
        listed = await self.kube.core.list_pod_for_all_namespaces(
            label_selector=SANDBOX_LABEL, field_selector=f"status.podIP={address}"
        )
        for pod in listed.items:
            self._see("MODIFIED", self.kube.api.sanitize_for_serialization(pod))
        return self._by_address.get(address)

    def _see(self, kind: str, pod: dict[str, Any]) -> None:
        found = client_of(pod)
        pod_uid = (pod.get("metadata") or {}).get("uid")
        if kind != "DELETED" and found is not None:
            self._by_address[found[0]] = found[1]
            return
        # Gone or finished: forget its address, unless a newer pod holds it already.
        for address, client in list(self._by_address.items()):
            if client.pod_uid == pod_uid:
                del self._by_address[address]

    async def watch(self) -> None:
        """Keep the index current until cancelled; a broken watch lists again."""
        version: str | None = None
        while True:
            try:
                if version is None:
                    listed = await self.kube.core.list_pod_for_all_namespaces(
                        label_selector=SANDBOX_LABEL
                    )
                    pods = self.kube.api.sanitize_for_serialization(listed)["items"]
                    self._by_address.clear()
                    for pod in pods:
                        self._see("ADDED", pod)
                    version = listed.metadata.resource_version
                    self.synced.set()
                async with kube_watch.Watch() as stream:
                    async for event in stream.stream(
                        self.kube.core.list_pod_for_all_namespaces,
                        label_selector=SANDBOX_LABEL,
                        resource_version=version,
                        timeout_seconds=300,
                    ):
                        pod = self.kube.api.sanitize_for_serialization(event["object"])
                        version = pod["metadata"]["resourceVersion"]
                        self._see(event["type"], pod)
            except asyncio.CancelledError:
                raise
            except Exception:  # the watch broke (410 Gone, network): list again shortly
                log.warning("sandbox pod watch interrupted; listing again", exc_info=True)
                version = None
                await asyncio.sleep(1)
