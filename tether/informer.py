"""One kind of Tether resource across the cluster, listed once and then watched, kept in memory.

Models and Agents are read on every call and change rarely: an informer answers from memory, and
the watch keeps it current (a change is seen as soon as the API server delivers it, never later).
While the watch is broken it says it is not `synced`, and `lookup` asks the API server instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes_asyncio import watch as kube_watch

from tether.api import GROUP, VERSION
from tether.kube import Kube

log = logging.getLogger("tether")
WATCH_SECONDS = 300
"""A watch is renewed this often (the API server closes it then), from where it left off."""
T = TypeVar("T")


@dataclass(frozen=True)
class Reads:
    """The two reads a lookup is made of, from memory or from the API server alike."""

    get: Callable[[str, str], Awaitable[dict[str, Any] | None]]
    """namespace, name -> the object, or None"""
    items: Callable[[str], Awaitable[list[dict[str, Any]]]]
    """namespace -> its objects"""


class Informer:
    def __init__(self, kube: Kube, plural: str) -> None:
        self.kube = kube
        self.plural = plural
        self.synced = False
        """Whether the objects are the API server's as of the last event delivered."""
        self._objects: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        """namespace -> name -> object"""
        self._memory = Reads(_answered(self._get), _answered(self._items))
        self._server = Reads(self._get_from_server, self._items_from_server)

    async def lookup(self, find: Callable[[Reads], Awaitable[T | None]]) -> T | None:
        """`find` answered from memory while the watch is synced; from the API server while it
        is broken, or when memory has nothing (the watch may be a moment behind the API server:
        an object created just now, or shown to another process's watch first)."""
        if self.synced and (found := await find(self._memory)) is not None:
            return found
        return await find(self._server)

    def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get(namespace, {}).get(name)

    def _items(self, namespace: str) -> list[dict[str, Any]]:
        return list(self._objects.get(namespace, {}).values())

    async def _get_from_server(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.kube.get(self.plural, namespace, name)

    async def _items_from_server(self, namespace: str) -> list[dict[str, Any]]:
        return (await self.kube.list(self.plural, namespace)).get("items", [])

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


def _answered(read: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """A read from memory, in the shape of a read from the API server."""

    async def answered(*args: Any) -> T:
        return read(*args)

    return answered
