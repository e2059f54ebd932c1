"""Async access to Tether's custom resources and Secrets (kubernetes_asyncio, never blocking)."""

from __future__ import annotations

import base64
import json
import urllib.parse
import urllib.request
from typing import Any, Self

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from tether.api import GROUP, VERSION
from tether.settings import Settings

MERGE_PATCH = "application/merge-patch+json"


def refusal(error: ApiException) -> str:
    """What the API server said when it refused a request (its Status message), without the
    headers and body an ApiException prints."""
    try:
        return json.loads(error.body)["message"]
    except (TypeError, ValueError, KeyError):
        return error.reason or "the Kubernetes API refused the request"


def _environment_read_once(api: client.ApiClient) -> None:
    """kubernetes_asyncio's session has aiohttp read the proxy variables and ~/.netrc on every
    request, each in a worker thread (`trust_env`). The API server's address is known now: unless
    a proxy variable covers it, nothing in the environment changes where requests go, so the
    session stops looking."""
    host = urllib.parse.urlsplit(api.configuration.host).hostname or ""
    if urllib.request.getproxies() and not urllib.request.proxy_bypass(host):
        return
    rest = api.rest_client
    connector = rest.pool_manager.connector
    rest.pool_manager.detach()
    # as kubernetes_asyncio makes it, environment aside (large watch events need the buffer)
    rest.pool_manager = aiohttp.ClientSession(
        connector=connector, trust_env=False, read_bufsize=2**21
    )


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    @classmethod
    async def connect(cls, settings: Settings, component: str) -> Self:
        """`component` names the writer in managedFields (tether-gateway, tether-operator)."""
        configuration = client.Configuration()
        if settings.kubeconfig:
            await config.load_kube_config(
                config_file=settings.kubeconfig, client_configuration=configuration
            )
        else:
            config.load_incluster_config(client_configuration=configuration)
        api = client.ApiClient(configuration)
        api.user_agent = component
        _environment_read_once(api)
        return cls(api)

    async def close(self) -> None:
        await self.api.close()

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, body
        )

    async def list(self, plural: str, namespace: str, **options: Any) -> dict[str, Any]:
        return await self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, **options
        )

    async def patch(self, plural: str, namespace: str, name: str, body: dict) -> dict[str, Any]:
        return await self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, body, _content_type=MERGE_PATCH
        )

    async def patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge `status` in; with `resource_version`, only if the object is still at that
        version (a 409 otherwise): a compare-and-swap."""
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, body, _content_type=MERGE_PATCH
        )

    async def delete(self, plural: str, namespace: str, name: str) -> bool:
        try:
            await self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name
            )
            return True
        except ApiException as error:
            if error.status == 404:
                return False
            raise

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        try:
            secret = await self.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        value = (secret.data or {}).get(key)
        return base64.b64decode(value).decode() if value is not None else None
