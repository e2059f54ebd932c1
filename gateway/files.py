"""GET /v1/interactions/{id}/files[/{path}]: what an agent run wrote, after its pod is gone."""

from __future__ import annotations

import io
import mimetypes
import tarfile

from aiohttp import web

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
