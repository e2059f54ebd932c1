"""One kind of Tether resource across the cluster, listed once and then watched, kept in memory.

Models and Agents are read on every call and change rarely: an informer answers from memory, and
the watch keeps it current (a change is seen as soon as the API server delivers it, never later).
While the watch is broken it says it is not `synced`, and its readers ask the API server instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from kubernetes_asyncio import watch as kube_watch

from tether.api import GROUP, VERSION
from tether.kube import Kube

log = logging.getLogger("tether")
WATCH_SECONDS = 300
"""A watch is renewed this often (the API server closes it then), from where it left off."""


class Informer:
    def __init__(self, kube: Kube, plural: str) -> None:
        self.kube = kube
        self.plural = plural
        self.synced = False
        """Whether the objects are the API server's as of the last event delivered."""
        self._objects: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        """namespace -> name -> object"""

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get(namespace, {}).get(name)

    def items(self, namespace: str) -> list[dict[str, Any]]:
        return list(self._objects.get(namespace, {}).values())

    async def keep_current(self) -> None:
        """List, then watch from there, until cancelled; list again after any interruption."""
        version = None
        while True:
            try:
                version = version or await self._load()
                self.synced = True
                async with kube_watch.Watch() as stream:
                    async for event in stream.stream(
                        self.kube.custom.list_cluster_custom_object,
                        GROUP,
                        VERSION,
                        self.plural,
                        resource_version=version,
                        allow_watch_bookmarks=True,
                        timeout_seconds=WATCH_SECONDS,
                    ):
                        version = self._apply(event) or version
            except asyncio.CancelledError:
                raise
            except Exception:  # 410 Gone, the API server away: readers ask it until relisted
                log.warning("watch of %s interrupted; listing again", self.plural, exc_info=True)
                self.synced = False
                version = None
                await asyncio.sleep(1)

    async def _load(self) -> str:
        """List everything; returns the resourceVersion to watch from."""
        listed = await self.kube.custom.list_cluster_custom_object(GROUP, VERSION, self.plural)
        objects: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for item in listed["items"]:
            objects[item["metadata"]["namespace"]][item["metadata"]["name"]] = item
        self._objects = objects
        return listed["metadata"]["resourceVersion"]

    def _apply(self, event: dict[str, Any]) -> str | None:
        """One watch event into memory; the resourceVersion it brings the informer to."""
        obj = event["object"]
        if event["type"] == "ERROR":  # 410 Gone, delivered in the stream: relist
            raise RuntimeError(f"watch of {self.plural} ended: {obj.get('message', obj)}")
        meta = obj["metadata"]
        if event["type"] != "BOOKMARK":
            namespace = self._objects[meta["namespace"]]
            if event["type"] == "DELETED":
                namespace.pop(meta["name"], None)
            else:
                namespace[meta["name"]] = obj
        return meta.get("resourceVersion")
