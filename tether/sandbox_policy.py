"""What a request (or an Agent) may change in a sandbox, and within what bounds. Pure.

The platform decides isolation: the image comes from its list, the runtime class is its own
when it has one, and resources may be lowered but never unbounded. Untrusted code never gets
a secret. The gateway checks a request with these functions before anything is created, and
the pod builder applies them again, so a sandbox outside the policy cannot be built at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from tether.api.common import ResourceRequirements, SandboxEnvironment

RESOURCES = ("cpu", "memory", "ephemeral-storage")
"""The resources an environment may set; anything else (GPUs, hugepages) is the platform's."""
DEFAULT_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "256Mi", "ephemeral-storage": "256Mi"},
    "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "2Gi"},
}
DEFAULT_MAX_LIMITS = {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "4Gi"}


class SandboxPolicyError(ValueError):
    """A sandbox setting the platform does not allow; the message names the field and bound."""


@dataclass(frozen=True)
class SandboxPolicy:
    """The platform's rules for the workspace container (settings, not per-run choices)."""

    image: str
    """The platform's sandbox image: always allowed, and the default."""
    allowed_images: tuple[str, ...] = ()
    """Further images an environment may pick."""
    runtime_class_name: str | None = None
    """The platform's RuntimeClass; when set, no environment may change or drop it."""
    max_limits: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MAX_LIMITS))

    @classmethod
    def from_settings(cls, settings: Any) -> SandboxPolicy:
        return cls(
            image=settings.sandbox_image,
            allowed_images=tuple(settings.sandbox_allowed_images),
            runtime_class_name=settings.sandbox_runtime_class_name or None,
            max_limits={
                "cpu": settings.sandbox_max_cpu,
                "memory": settings.sandbox_max_memory,
                "ephemeral-storage": settings.sandbox_max_ephemeral_storage,
            },
        )


def refuse_secrets(environment: SandboxEnvironment | None, where: str = "environment") -> None:
    """Untrusted code never gets a secret: an env value taken from a Secret is refused."""
    for name, value in sorted(((environment and environment.env) or {}).items()):
        if not isinstance(value, str):
            raise SandboxPolicyError(
                f"{where}.env.{name} takes its value from a Secret (secret_ref); the sandbox "
                "runs untrusted code, which never gets a secret: give a plain string value"
            )


def check_environment(
    environment: SandboxEnvironment | None, policy: SandboxPolicy, where: str = "environment"
) -> None:
    """Everything the policy says about an environment, before a run is created."""
    if environment is None:
        return
    refuse_secrets(environment, where)
    image(environment, policy, where)
    runtime_class(environment, policy, where)
    resources(environment.resources, policy, where)


def image(environment: SandboxEnvironment, policy: SandboxPolicy, where: str = "environment"):
    """The workspace image: the platform's, or one from its allowed list."""
    chosen = environment.image or policy.image
    allowed = (policy.image, *policy.allowed_images)
    if chosen not in allowed:
        raise SandboxPolicyError(
            f"{where}.image {chosen!r} is not allowed; the platform allows {list(allowed)} "
            "(TETHER_SANDBOX_ALLOWED_IMAGES)"
        )
    return chosen


def runtime_class(
    environment: SandboxEnvironment, policy: SandboxPolicy, where: str = "environment"
) -> str | None:
    """The platform's RuntimeClass if it has one; otherwise the environment may name one."""
    asked = environment.runtime_class_name
    if policy.runtime_class_name is None:
        return asked
    if asked not in (None, policy.runtime_class_name):
        raise SandboxPolicyError(
            f"{where}.runtime_class_name {asked!r} is not allowed: the platform runs every "
            f"sandbox under {policy.runtime_class_name!r}"
        )
    return policy.runtime_class_name


def resources(
    requested: ResourceRequirements | None, policy: SandboxPolicy, where: str = "environment"
) -> dict[str, dict[str, str]]:
    """The workspace container's resources: the defaults, lowered (or raised up to the
    platform's maximum) where asked. Limits are always there: a request cannot remove one."""
    maxima = {
        name: _quantity(value, f"the maximum {name}") for name, value in policy.max_limits.items()
    }
    limits = {
        name: value if _quantity(value, name) <= maxima[name] else policy.max_limits[name]
        for name, value in DEFAULT_RESOURCES["limits"].items()
    }
    requests = dict(DEFAULT_RESOURCES["requests"])
    asked = requested or ResourceRequirements()
    for kind, given in (("limits", asked.limits or {}), ("requests", asked.requests or {})):
        for name, value in given.items():
            path = f"{where}.resources.{kind}.{name}"
            if name not in RESOURCES:
                raise SandboxPolicyError(
                    f"{path}: only {', '.join(RESOURCES)} can be set; other resources are "
                    "the platform's"
                )
            amount = _quantity(value, path)
            if amount > maxima[name]:
                raise SandboxPolicyError(
                    f"{path} {value!r} is above the platform's maximum of "
                    f"{policy.max_limits[name]!r}"
                )
            (limits if kind == "limits" else requests)[name] = value
    for name, value in requests.items():
        limit = limits[name]
        if _quantity(value, name) > _quantity(limit, name):
            # Lower a default request to a lowered limit; refuse a request above its limit.
            if name in (asked.requests or {}):
                raise SandboxPolicyError(
                    f"{where}.resources.requests.{name} {value!r} is above its limit {limit!r}; "
                    f"raise resources.limits.{name} too (at most {policy.max_limits[name]!r})"
                )
            requests[name] = limit
    return {"requests": requests, "limits": limits}


def _quantity(value: str, path: str) -> Decimal:
    try:
        amount = parse_quantity(value)
    except (ValueError, TypeError) as error:
        raise SandboxPolicyError(f"{path} {value!r} is not a Kubernetes quantity") from error
    if amount <= 0:
        raise SandboxPolicyError(f"{path} {value!r} must be more than zero")
    return amount
