"""One run at a time in an Environment: a run claims the workspace in the Environment's status,
by a compare-and-swap on its resource version, and gives it back when it ends.

A claim is only as good as its holder: an interaction that has ended, or one that was never
created (a gateway that died between claiming and creating) after CLAIM_GRACE_SECONDS, holds
nothing, so a crash anywhere leaves no environment locked. The idle expiry takes the same
compare-and-swap, so a run and the expiry never both win.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from tether.api.common import ENVIRONMENT_ID
from tether.api.interaction import TERMINAL_PHASES
from tether.kube import Kube

CLAIM_GRACE_SECONDS = 60
"""How long a claim holds for an interaction that does not exist: the gateway claims first and
creates the interaction right after."""
ATTEMPTS = 5


class EnvironmentUnavailable(Exception):
    """The environment cannot take a run now: `code` is not_found, expired or busy."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def now(after: dt.timedelta = dt.timedelta()) -> str:
    """This moment (or the one `after` it) as every status timestamp spells it."""
    return (dt.datetime.now(dt.UTC) + after).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _age(timestamp: str | None) -> float:
    if not timestamp:
        return float("inf")
    then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return (dt.datetime.now(dt.UTC) - then).total_seconds()


async def holder(kube: Kube, environment: dict[str, Any]) -> str | None:
    """The interaction that holds the environment now, if its claim still holds."""
    status = environment.get("status") or {}
    name = status.get("activeInteraction")
    if not name:
        return None
    found = await kube.get("interactions", environment["metadata"]["namespace"], name)
    if found is None:
        return name if _age(status.get("claimed")) < CLAIM_GRACE_SECONDS else None
    return None if (found.get("status") or {}).get("phase") in TERMINAL_PHASES else name


async def find(kube: Kube, namespace: str, id_: str) -> dict[str, Any]:
    """The environment, or EnvironmentUnavailable("not_found")."""
    found = await kube.get("environments", namespace, id_) if ENVIRONMENT_ID.match(id_) else None
    if found is None or found["metadata"].get("deletionTimestamp"):
        raise EnvironmentUnavailable("not_found", f"environment {id_!r} not found")
    return found


async def claim(kube: Kube, namespace: str, id_: str, interaction: str) -> dict[str, Any]:
    """Take the environment for `interaction` (again, if it holds it already). Raises
    EnvironmentUnavailable when it is missing, expired, or held by a live run."""
    for _ in range(ATTEMPTS):
        found = await find(kube, namespace, id_)
        status = found.get("status") or {}
        if status.get("phase") == "expired":
            raise EnvironmentUnavailable(
                "expired",
                f"environment {id_!r} expired at {status.get('expired')}: its files were deleted "
                "after it went unused; create a new environment",
            )
        if status.get("activeInteraction") == interaction:
            return found
        if (busy := await holder(kube, found)) is not None:
            raise EnvironmentUnavailable(
                "busy",
                f"environment {id_!r} is in use by interaction {busy!r}: one run at a time "
                "uses an environment; try again when it has ended",
            )
        stamp = now()
        taken = {
            "phase": "active",
            "activeInteraction": interaction,
            "claimed": stamp,
            "lastAccessed": stamp,
        }
        try:
            return await kube.patch_status(
                "environments", namespace, id_, taken, found["metadata"]["resourceVersion"]
            )
        except ApiException as error:
            if error.status == 404:
                raise EnvironmentUnavailable("not_found", f"environment {id_!r} gone") from None
            if error.status != 409:
                raise
    raise EnvironmentUnavailable(
        "busy", f"environment {id_!r} is changing under many requests at once; try again"
    )


async def release(
    kube: Kube, namespace: str, id_: str, interaction: str, usage: dict[str, int] | None = None
) -> None:
    """Give the environment back if `interaction` holds it, recording when it was last used and
    what its workspace holds (`usage`: fileCount, sizeBytes) as the run saw it."""
    for _ in range(ATTEMPTS):
        try:
            found = await find(kube, namespace, id_)
        except EnvironmentUnavailable:
            return
        if (found.get("status") or {}).get("activeInteraction") != interaction:
            return
        released = {
            "activeInteraction": None,
            "claimed": None,
            "lastAccessed": now(),
            **(usage or {}),
        }
        try:
            await kube.patch_status(
                "environments", namespace, id_, released, found["metadata"]["resourceVersion"]
            )
            return
        except ApiException as error:
            if error.status == 404:
                return
            if error.status != 409:
                raise
