"""GET /v1/interactions/{id}/files[/{path}]: what an agent run wrote, after its pod is gone;
GET /v1/interactions/{id}/logs: its sandbox's log while it runs."""

from __future__ import annotations

import io
import mimetypes
import tarfile

from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException

from .errors import ApiError
from .state import STATE


async def _archive(request: web.Request) -> tarfile.TarFile | None:
    state, namespace, name = request.app[STATE], request["namespace"], request.match_info["id"]
    if await state.kube.get("interactions", namespace, name) is None:
        raise ApiError(404, f"interaction {name!r} not found")
    data = await state.runs.files(namespace, name)
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") if data else None


async def list_files(request: web.Request) -> web.Response:
    archive = await _archive(request)
    files = [
        {"path": member.name, "bytes": member.size}
        for member in (archive.getmembers() if archive else [])
        if member.isfile()
    ]
    return web.json_response({"files": files})


async def get_file(request: web.Request) -> web.Response:
    path = request.match_info["path"]
    archive = await _archive(request)
    try:
        member = archive.getmember(path) if archive else None
    except KeyError:
        member = None
    if member is None or not member.isfile():
        raise ApiError(404, f"file {path!r} not found in interaction {request.match_info['id']!r}")
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return web.Response(body=archive.extractfile(member).read(), content_type=content_type)


def add_routes(app: web.Application) -> None:
    for version in ("v1", "v1beta"):
        app.router.add_get(f"/{version}/interactions/{{id}}/files", list_files)
        app.router.add_get(f"/{version}/interactions/{{id}}/files/{{path:.+}}", get_file)
        app.router.add_get(f"/{version}/interactions/{{id}}/logs", get_logs)


async def get_logs(request: web.Request) -> web.Response:
    """A running sandbox's container log, through the Kubernetes API (kubectl logs' path)."""
    state, namespace, name = request.app[STATE], request["namespace"], request.match_info["id"]
    obj = await state.kube.get("interactions", namespace, name)
    if obj is None:
        raise ApiError(404, f"interaction {name!r} not found")
    pod = (obj.get("status") or {}).get("sandboxPod")
    container = request.query.get("container", "agent")
    if container not in ("agent", "workspace"):
        raise ApiError(400, "container must be agent or workspace")
    if not pod:
        raise ApiError(404, f"interaction {name!r} has no sandbox (only agent runs have one)")
    try:
        text = await state.kube.core.read_namespaced_pod_log(
            pod,
            namespace,
            container=container,
            tail_lines=int(request.query.get("tail_lines", 200)),
        )
    except ApiException as error:
        if error.status in (400, 404):
            raise ApiError(
                404, f"the sandbox of {name!r} is gone; errors[] keeps a crash's last lines"
            ) from error
        raise
    return web.Response(text=text, content_type="text/plain")
