"""An Environment's files over HTTP, as the SDK's `environments.files` calls them:

    GET  /v1beta/environments/{id}/files/{path}[?recursive=true]   list (or one file's entry)
    GET  /v1beta/environments/{id}/files/{path}?alt=media          download
    PUT  /upload/v1beta/environments/{id}/files/{path}             start a resumable upload
    POST /upload/v1beta/environments/{id}/files/{path}?upload_id=  its chunks, then finalize

The files live on the environment's volume, which only a pod can mount: the gateway starts the
environment's files pod (the sandbox image serving that volume to the gateway alone, with a
token of its own; it exits when idle) and relays each request to it. An upload's chunks are
kept in Redis until the last one, then written in one piece."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.parse
from typing import Any

import aiohttp
import yarl
from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tether import environment_claims
from tether.operator.sandbox_pod import (
    FILES_PORT,
    Placement,
    files_network_policy,
    files_pod,
    files_pod_name,
)
from tether.sandbox.files_server import UPLOAD_LIMIT

from .auth import TENANT
from .errors import ApiError, error_response, not_found
from .state import STATE, State

START_SECONDS = 90
"""How long a request waits for the environment's files pod to start."""
UPLOAD_TTL_SECONDS = 3600
FORWARDED = ("recursive", "page_size", "page_token")


async def _environment(state: State, namespace: str, id_: str) -> dict[str, Any]:
    try:
        found = await environment_claims.find(state.kube, namespace, id_)
    except environment_claims.EnvironmentUnavailable as error:
        raise not_found("environment", id_) from error
    if (found.get("status") or {}).get("phase") == "expired":
        raise ApiError(
            409,
            f"environment {id_!r} expired: its files were deleted after it went unused",
            "failed_precondition",
        )
    return found


async def _files_server(state: State, environment: dict[str, Any]) -> tuple[str, str]:
    """The environment's files pod, started if it is not running: its URL and token."""
    meta = environment["metadata"]
    namespace, name = meta["namespace"], files_pod_name(meta["name"])
    place = Placement.from_settings(state.settings)
    core = state.kube.core
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        try:
            pod = (await core.read_namespaced_pod(name, namespace)).to_dict()
        except ApiException as error:
            if error.status != 404:
                raise
            await _start(state, environment, place)
            continue
        status = pod.get("status") or {}
        if pod["metadata"].get("deletion_timestamp") or status.get("phase") in (
            "Succeeded",
            "Failed",
        ):
            await _delete_pod(core, name, namespace)  # it went idle: a new one takes over
        elif _ready(status) and status.get("pod_ip"):
            env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
            return f"http://{status['pod_ip']}:{FILES_PORT}", env["TETHER_FILES_TOKEN"]
        await asyncio.sleep(0.2)
    raise ApiError(
        503, f"the files of environment {meta['name']!r} are not reachable yet; try again"
    )


def _ready(status: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


async def _start(state: State, environment: dict[str, Any], place: Placement) -> None:
    namespace = environment["metadata"]["namespace"]
    networking = client.NetworkingV1Api(state.kube.api)
    for create in (
        lambda: networking.create_namespaced_network_policy(
            namespace, files_network_policy(environment, place)
        ),
        lambda: state.kube.core.create_namespaced_pod(
            namespace, files_pod(environment, place, secrets.token_urlsafe(32))
        ),
    ):
        try:
            await create()
        except ApiException as error:
            if error.status != 409:  # another request started it first
                raise


async def _delete_pod(core, name: str, namespace: str) -> None:
    try:
        await core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    except ApiException as error:
        if error.status != 404:
            raise


async def _call(
    state: State,
    namespace: str,
    id_: str,
    route: str,
    path: str,
    query: dict[str, str],
    data: bytes | None = None,
) -> tuple[bytes, str]:
    """One request to the environment's files pod (GET, or PUT with `data`): its body and
    content type. Its refusals (a bad path, a file already there, too large) are the API's."""
    environment = await _environment(state, namespace, id_)
    base, token = await _files_server(state, environment)
    timeout = aiohttp.ClientTimeout(total=300)
    # Every byte of the path reaches the files pod as sent: dots too, so that no client library
    # resolves a "..", and the files pod refuses it by name.
    quoted = urllib.parse.quote(path, safe="/").replace(".", "%2E")
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.request(
            "GET" if data is None else "PUT",
            yarl.URL(f"{base}/{route}/{quoted}", encoded=True),
            params=query,
            data=data,
            headers={"Authorization": f"Bearer {token}"},
        ) as answer,
    ):
        body = await answer.read()
        kind = answer.headers.get("Content-Type", "application/octet-stream")
        status = answer.status
    if status >= 400:
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = body.decode(errors="replace")[:500]
        raise ApiError(status if status < 500 else 502, message)
    await _touch(state, namespace, id_)
    return body, kind.split(";")[0]


async def _touch(state: State, namespace: str, id_: str) -> None:
    """A file access counts as a use of the environment (its idle expiry starts again)."""
    stamp = {"lastAccessed": environment_claims.now()}
    try:
        await state.kube.patch_status("environments", namespace, id_, stamp)
    except ApiException as error:
        if error.status != 404:
            raise


async def get_files(request: web.Request) -> web.Response:
    state, namespace = request.config_dict[STATE], request[TENANT]
    id_, path = request.match_info["environment"][:253], request.match_info.get("path", "")
    query = {k: v for k, v in request.query.items() if k in FORWARDED}
    if request.query.get("alt") == "media":
        body, kind = await _call(state, namespace, id_, "content", path, {})
        return web.Response(body=body, content_type=kind)
    body, _ = await _call(state, namespace, id_, "list", path, query)
    listed = json.loads(body)
    listed.pop("totals", None)
    return web.json_response(listed)


async def start_upload(request: web.Request) -> web.Response:
    """The resumable protocol's `start`: the upload's size and type, and where to send it."""
    state, namespace = request.config_dict[STATE], request[TENANT]
    id_, path = request.match_info["environment"][:253], request.match_info["path"]
    if request.headers.get("X-Goog-Upload-Command", "").strip() != "start":
        raise ApiError(400, "X-Goog-Upload-Command must be start (resumable uploads only)")
    size = request.headers.get("X-Goog-Upload-Header-Content-Length", "")
    if not (size.isascii() and size.isdigit()):
        raise ApiError(400, "X-Goog-Upload-Header-Content-Length must be the file's size")
    if int(size) > UPLOAD_LIMIT:
        raise ApiError(413, f"an upload is at most {UPLOAD_LIMIT} bytes, not {size}")
    await _environment(state, namespace, id_)
    upload_id = secrets.token_urlsafe(24)
    session = {
        "tenant": namespace,
        "environment": id_,
        "path": path,
        "size": int(size),
        "query": {k: v for k, v in request.query.items() if k in ("overwrite", "extract")},
    }
    redis = state.events.redis
    await redis.set(_upload_key(upload_id), json.dumps(session), ex=UPLOAD_TTL_SECONDS)
    url = request.url.with_query({"upload_id": upload_id})
    headers = {"X-Goog-Upload-URL": str(url), "X-Goog-Upload-Status": "active"}
    return web.json_response({}, headers=headers)


async def upload_chunk(request: web.Request) -> web.Response:
    """A chunk of a started upload, at its offset; the last one (`finalize`) writes the file.
    A refusal says the upload is over (`X-Goog-Upload-Status: final`): the SDK sends a chunk
    again only when an answer lacks that header."""
    try:
        return await _chunk(request)
    except ApiError as error:
        answer = error_response(error.status, error.code, error.message)
        answer.headers["X-Goog-Upload-Status"] = "final"
        return answer


async def _chunk(request: web.Request) -> web.Response:
    state, namespace = request.config_dict[STATE], request[TENANT]
    upload_id = request.query.get("upload_id", "")
    redis = state.events.redis
    raw = await redis.get(_upload_key(upload_id)) if upload_id else None
    session = json.loads(raw) if raw else None
    if session is None or session["tenant"] != namespace:
        raise ApiError(404, "no such upload: start it again")
    command = {c.strip() for c in request.headers.get("X-Goog-Upload-Command", "").split(",")}
    offset = request.headers.get("X-Goog-Upload-Offset", "")
    data_key = _upload_key(upload_id) + ":data"
    received = await redis.strlen(data_key)
    if offset != str(received):
        raise ApiError(400, f"X-Goog-Upload-Offset must be {received}, the bytes received")
    chunk = bytearray()
    async for piece in request.content.iter_chunked(64 * 1024):
        chunk.extend(piece)
        if received + len(chunk) > session["size"]:
            raise ApiError(
                413, f"the upload is larger than the {session['size']} bytes it announced"
            )
    if chunk:
        await redis.append(data_key, bytes(chunk))
        await redis.expire(data_key, UPLOAD_TTL_SECONDS)
    if "finalize" not in command:
        return web.json_response({}, headers={"X-Goog-Upload-Status": "active"})
    data = await redis.get(data_key) or b""
    await redis.delete(data_key, _upload_key(upload_id))
    if len(data) != session["size"]:
        raise ApiError(
            400, f"the upload has {len(data)} bytes, not the {session['size']} announced"
        )
    body, _ = await _call(
        state, namespace, session["environment"], "content", session["path"], session["query"], data
    )
    return web.json_response(json.loads(body), headers={"X-Goog-Upload-Status": "final"})


def _upload_key(upload_id: str) -> str:
    return f"tether:upload:{upload_id}"


def add_routes(api: web.Application) -> None:
    api.router.add_get("/environments/{environment}/files", get_files)
    api.router.add_get("/environments/{environment}/files/{path:.*}", get_files)


def add_upload_routes(api: web.Application) -> None:
    api.router.add_put("/environments/{environment}/files/{path:.*}", start_upload)
    api.router.add_post("/environments/{environment}/files/{path:.*}", upload_chunk)
