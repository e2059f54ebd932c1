"""GET /v1/interactions/{id}/files[/{path}]: what an agent run wrote, after its pod is gone;
GET /v1/interactions/{id}/logs: its sandbox's log while it runs."""

from __future__ import annotations

import asyncio
import mimetypes

from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException

from tether import workspace_archive

from .errors import ApiError
from .state import addressed


async def _archive(request: web.Request) -> bytes | None:
    state, namespace, name = addressed(request)
    await state.interaction(namespace, name)
    return await state.run_store.files(namespace, name)


async def _unpack(request: web.Request, read, *args):
    """Run a workspace_archive reader off the event loop; an unreadable archive is a 404 that
    says so (uploads are checked, so only a damaged store gets here), never a 500."""
    try:
        return await asyncio.to_thread(read, *args)
    except workspace_archive.InvalidArchive as error:
        raise ApiError(
            404, f"the files of interaction {request.match_info['id']!r} cannot be read: {error}"
        ) from error


async def list_files(request: web.Request) -> web.Response:
    data = await _archive(request)
    files = await _unpack(request, workspace_archive.files, data) if data else []
    return web.json_response({"files": files})


async def get_file(request: web.Request) -> web.Response:
    path = request.match_info["path"]
    data = await _archive(request)
    content = await _unpack(request, workspace_archive.read, data, path) if data else None
    if content is None:
        raise ApiError(404, f"file {path!r} not found in interaction {request.match_info['id']!r}")
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return web.Response(body=content, content_type=content_type)


def add_routes(api: web.Application) -> None:
    api.router.add_get("/interactions/{id}/files", list_files)
    api.router.add_get("/interactions/{id}/files/{path:.+}", get_file)
    api.router.add_get("/interactions/{id}/logs", get_logs)


async def get_logs(request: web.Request) -> web.Response:
    """A running sandbox's container log, through the Kubernetes API (kubectl logs' path)."""
    state, namespace, name = addressed(request)
    obj = await state.interaction(namespace, name)
    pod = (obj.get("status") or {}).get("sandboxPod")
    container = request.query.get("container", "agent")
    if container not in ("agent", "workspace"):
        raise ApiError(400, "container must be agent or workspace")
    tail = request.query.get("tail_lines", "200")
    if not (tail.isascii() and tail.isdigit() and len(tail) <= 6 and 1 <= int(tail) <= 100_000):
        raise ApiError(400, f"tail_lines must be a whole number from 1 to 100000, not {tail!r}")
    if not pod:
        raise ApiError(404, f"interaction {name!r} has no sandbox (only agent runs have one)")
    try:
        text = await state.kube.core.read_namespaced_pod_log(
            pod,
            namespace,
            container=container,
            tail_lines=int(tail),
        )
    except ApiException as error:
        if error.status in (400, 404):
            raise ApiError(
                404, f"the sandbox of {name!r} is gone; errors[] keeps a crash's last lines"
            ) from error
        raise
    return web.Response(text=text, content_type="text/plain")
