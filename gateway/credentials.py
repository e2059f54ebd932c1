"""The Credentials API: a tenant's credentials are Secrets in its namespace, whose secret values
the egress proxy has sealed (the gateway asks it to, and cannot open them). A credential is
shown by id, type, status and times; a secret value never comes back.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException

from tether.api.common import SandboxEnvironment
from tether.api.credential import (
    CREDENTIAL_ID,
    CREDENTIAL_LABEL,
    CreateCredentialRequest,
    StoredCredential,
    UpdateCredentialRequest,
    secret_name,
)
from tether.environment_claims import now

from .auth import TENANT
from .errors import ApiError, not_found
from .parsing import page_size, read_json
from .state import STATE, State


async def stored(state: State, namespace: str, credential: str) -> StoredCredential | None:
    """The tenant's credential, or None (an id that is not one never reaches the API server)."""
    if not CREDENTIAL_ID.match(credential):
        return None
    try:
        secret = await state.kube.core.read_namespaced_secret(secret_name(credential), namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    found = state.kube.api.sanitize_for_serialization(secret)
    if (found["metadata"].get("labels") or {}).get(CREDENTIAL_LABEL) != credential:
        return None
    return StoredCredential.from_secret(found)


async def _seal(
    state: State, namespace: str, credential: str, values: dict[str, str], sealed: str = ""
) -> str:
    """The egress proxy seals the values (merged into `sealed`'s, when given)."""
    url = f"{state.settings.egress_admin_url}/seal"
    body = {"namespace": namespace, "credential": credential, "values": values, "sealed": sealed}
    headers = {"Authorization": f"Bearer {state.settings.egress_key}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.post(url, json=body, headers=headers) as response,
        ):
            if response.status != 200:
                raise ApiError(
                    503, f"the egress proxy did not seal the credential: {response.status}"
                )
            return (await response.json())["sealed"]
    except (aiohttp.ClientError, TimeoutError) as error:
        message = f"the egress proxy is not reachable to seal the credential: {error}"
        raise ApiError(503, message) from error


async def list_(request: web.Request) -> web.Response:
    state, namespace = request.config_dict[STATE], request[TENANT]
    options: dict[str, Any] = {"label_selector": CREDENTIAL_LABEL, "limit": page_size(request)}
    if token := request.query.get("page_token"):
        options["_continue"] = token
    try:
        found = await state.kube.core.list_namespaced_secret(namespace, **options)
    except ApiException as error:
        if token and error.status in (400, 410):
            raise ApiError(400, f"page_token {token!r} is not valid or has expired") from error
        raise
    listed = state.kube.api.sanitize_for_serialization(found)
    body: dict[str, Any] = {
        "credentials": [StoredCredential.from_secret(s).view() for s in listed["items"]]
    }
    if following := listed["metadata"].get("continue"):
        body["next_page_token"] = following
    return web.json_response(body)


async def create(request: web.Request) -> web.Response:
    state, namespace = request.config_dict[STATE], request[TENANT]
    body = CreateCredentialRequest.from_wire(await read_json(request))
    if await stored(state, namespace, body.id) is not None:
        raise ApiError(409, f"credential {body.id!r} already exists", "already_exists")
    stamp = now()
    credential = StoredCredential(
        id=body.id,
        type=body.type,
        config=body.config(),
        create_time=stamp,
        update_time=stamp,
        sealed=await _seal(state, namespace, body.id, body.secrets()),
    )
    try:
        await state.kube.core.create_namespaced_secret(namespace, credential.secret(namespace))
    except ApiException as error:
        if error.status == 409:  # a concurrent create of the same id won
            message = f"credential {body.id!r} already exists"
            raise ApiError(409, message, "already_exists") from error
        raise
    return web.json_response(credential.view())


async def get(request: web.Request) -> web.Response:
    state, namespace = request.config_dict[STATE], request[TENANT]
    credential = request.match_info["credential"]
    found = await stored(state, namespace, credential)
    if found is None:
        raise not_found("credential", credential)
    return web.json_response(found.view())


async def update(request: web.Request) -> web.Response:
    """Changes the fields the body names (or those `update_mask` lists); secret values are
    resealed by the proxy, merged with the ones kept."""
    state, namespace = request.config_dict[STATE], request[TENANT]
    credential = request.match_info["credential"]
    found = await stored(state, namespace, credential)
    if found is None:
        raise not_found("credential", credential)
    body = UpdateCredentialRequest.from_wire(await read_json(request))
    if body.type != found.type:
        raise ApiError(400, f"type: credential {credential!r} is a {found.type}, not {body.type}")
    if mask := request.query.get("update_mask"):
        named = {field.strip() for field in mask.split(",")}
        given = {name for name in type(body).model_fields if getattr(body, name) is not None}
        if unknown := sorted(given - named - {"type"}):
            raise ApiError(400, f"update_mask: {', '.join(unknown)} given but not in the mask")
    config = {**found.config, **body.config()}
    sealed = found.sealed
    if values := body.secrets():
        sealed = await _seal(state, namespace, credential, values, found.sealed)
    updated = found.model_copy(update={"config": config, "sealed": sealed, "update_time": now()})
    secret = updated.secret(namespace)
    patch = {"metadata": {"annotations": secret["metadata"]["annotations"]}, "data": secret["data"]}
    await state.kube.core.patch_namespaced_secret(secret_name(credential), namespace, patch)
    return web.json_response(updated.view())


async def delete(request: web.Request) -> web.Response:
    state, namespace = request.config_dict[STATE], request[TENANT]
    credential = request.match_info["credential"]
    if await stored(state, namespace, credential) is None:
        raise not_found("credential", credential)
    try:
        await state.kube.core.delete_namespaced_secret(secret_name(credential), namespace)
    except ApiException as error:
        if error.status != 404:
            raise
    return web.json_response({})


async def reference_problems(
    state: State, namespace: str, environment: SandboxEnvironment | None, where: str
) -> list[str]:
    """What is wrong with the credentials an allowlist names: each one must be the tenant's,
    and its domain one the credential trusts."""
    network = environment and environment.network
    if network in (None, "disabled") or network.allowlist == "disabled":
        return []
    problems = []
    for i, entry in enumerate(network.allowlist):
        if entry.credential is None:
            continue
        field = f"{where}.network" if where else "network"
        field += f".allowlist[{i}].credential"
        found = await stored(state, namespace, entry.credential)
        if found is None:
            problems.append(f"{field}: no credential {entry.credential!r}")
            continue
        trusted = found.config.get("trusted_domains")
        if trusted and not any(_within(entry.domain, t) for t in trusted):
            problems.append(
                f"{field}: credential {entry.credential!r} is trusted for {trusted}, not for "
                f"{entry.domain!r}"
            )
    return problems


def _within(domain: str, trusted: str) -> bool:
    """Whether every host `domain` matches is one `trusted` matches."""
    if trusted == "*" or domain == trusted:
        return True
    if trusted.startswith("*."):
        return domain.removeprefix("*.").endswith(trusted[1:])
    return False


def add_routes(api: web.Application) -> None:
    api.router.add_get("/credentials", list_)
    api.router.add_post("/credentials", create)
    api.router.add_get("/credentials/{credential}", get)
    api.router.add_patch("/credentials/{credential}", update)
    api.router.add_delete("/credentials/{credential}", delete)
