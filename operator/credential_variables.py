"""The variables a sandbox sees for its environment-variable credentials: placeholders."""

from __future__ import annotations

from kubernetes_asyncio.client.exceptions import ApiException

from tether.api.common import SandboxEnvironment
from tether.api.credential import StoredCredential, placeholder, secret_name
from tether.errors import RunError
from tether.outages import through_outages

from .context import Context


async def credential_variables(
    ctx: Context, namespace: str, environment: SandboxEnvironment
) -> dict[str, str]:
    """For each environment-variable credential the allowlist names, the variable the run sees:
    a placeholder, which the egress proxy replaces with the value on its way out."""
    network = environment.network
    if network in (None, "disabled") or network.allowlist == "disabled":
        return {}
    variables = {}
    for entry in network.allowlist:
        if entry.credential is None:
            continue
        try:
            secret = await through_outages(
                lambda e=entry: ctx.kube.core.read_namespaced_secret(
                    secret_name(e.credential), namespace
                ),
                f"credential {entry.credential} of {namespace}",
            )
        except ApiException as error:
            if error.status != 404:
                raise
            raise RunError(
                "credential_not_found", f"credential {entry.credential!r} not found"
            ) from error
        found = StoredCredential.from_secret(ctx.kube.api.sanitize_for_serialization(secret))
        if found.type == "environment_variable":
            variables[found.id] = placeholder(found.id)
    return variables
