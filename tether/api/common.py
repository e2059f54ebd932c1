"""Building blocks shared by several resources: conditions, sandbox environments, agent limits."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from tether.api.base import FREE_FORM, ApiModel, OpenModel

Name = Annotated[str, Field(min_length=1, max_length=253)]


class Condition(ApiModel):
    """A Kubernetes-style condition: the latest observation of one aspect of a resource."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}
    )


class EnvVar(ApiModel):
    """An environment variable whose value would come from a Secret key. Refused for now, in
    requests and Agents alike: the sandbox runs untrusted code, which never gets a secret
    (tether/sandbox_policy.py). Credentials for sandboxes will be their own feature."""

    secret_ref: SecretKeyRef


class SecretKeyRef(ApiModel):
    """A key of a Secret in the resource's own namespace."""

    name: Name
    key: Name


class Source(OpenModel):
    """A file or bundle placed into the sandbox workspace before the run starts."""

    type: Literal["inline", "skill", "repository", "gcs", "skill_registry"] | None = None
    source: str | None = None
    target: str | None = None
    """Where the source appears, relative to /workspace."""
    content: str | None = None
    encoding: Literal["base64", "utf-8"] | None = None


HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class AllowlistEntry(ApiModel):
    """One destination a sandbox may reach through the egress proxy: a host name, a wildcard
    over its subdomains (*.example.com), * for everything, an IP address or a CIDR."""

    domain: str = Field(min_length=1, max_length=253)
    credential: str | None = Field(default=None, min_length=1)
    """A Credential's id: the egress proxy puts it into requests to this domain."""

    @field_validator("domain")
    @classmethod
    def _a_pattern(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        if value == "*" or _network(value) is not None:
            return value
        name = value.removeprefix("*.")
        labels = name.split(".")
        if "*" in name or not all(HOST_LABEL.match(label) for label in labels):
            raise ValueError(
                f"{value!r} is not a domain pattern: give a host name (api.example.com), a "
                "wildcard over its subdomains (*.example.com), *, an IP address or a CIDR"
            )
        return value

    def matches(self, host: str) -> bool:
        """Whether this entry lets a connection to `host` (a name or an address) through."""
        host = host.lower().rstrip(".")
        if self.domain == "*":
            return True
        if (network := _network(self.domain)) is not None:
            address = _network(host)
            return address is not None and address.num_addresses == 1 and address[0] in network
        if self.domain.startswith("*."):
            return host.endswith(self.domain[1:])
        return host == self.domain


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        return None


class EgressAllowlist(ApiModel):
    """Where the sandbox may go, through the egress proxy, besides DNS and the gateway."""

    allowlist: list[AllowlistEntry] | Literal["disabled"] = Field(default_factory=list)

    @field_validator("allowlist", mode="before")
    @classmethod
    def _plain_strings_too(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"domain": item} if isinstance(item, str) else item for item in value]
        return value

    def domains(self) -> list[str]:
        return [] if self.allowlist == "disabled" else [entry.domain for entry in self.allowlist]

    def entry_for(self, host: str) -> AllowlistEntry | None:
        """The first entry that lets `host` through, or None: the host is refused."""
        if self.allowlist == "disabled":
            return None
        return next((entry for entry in self.allowlist if entry.matches(host)), None)


class ResourceRequirements(ApiModel):
    """Container resources, as in a pod spec (e.g. {"cpu": "500m", "memory": "512Mi"})."""

    requests: dict[str, str] | None = None
    limits: dict[str, str] | None = None


ENVIRONMENT_ID = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
"""A persistent Environment's id: a Kubernetes object name that starts with a letter."""


class SandboxEnvironment(ApiModel):
    """What an agent's sandbox pod starts from: the hosted API's environment object, plus the
    Kubernetes knobs (image, resources, runtime class) a platform team needs."""

    type: Literal["remote"] | None = None
    environment_id: str | None = None
    """Reuse (or name) a persistent Environment instead of a fresh workspace."""
    env: dict[str, str | EnvVar] | None = None
    network: Literal["disabled"] | EgressAllowlist | None = None
    """"disabled" leaves only the gateway reachable; an allowlist adds those hosts."""
    sources: list[Source] | None = None
    image: str | None = None
    resources: ResourceRequirements | None = None
    runtime_class_name: str | None = None
    """e.g. gvisor or kata, for real isolation of untrusted code."""


class AgentConfig(ApiModel):
    """Per-run choices for an agent: which model drives it and the limits it runs under."""

    type: Literal["dynamic", "antigravity"] = "dynamic"
    model: str | None = None
    max_total_tokens: int | None = Field(default=None, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    timeout_seconds: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _antigravity_fields(self) -> AgentConfig:
        if self.type == "antigravity" and (self.max_steps or self.timeout_seconds):
            raise ValueError(
                'agent_config of type "antigravity" takes only model and max_total_tokens; '
                'use type "dynamic" to set max_steps or timeout_seconds'
            )
        return self


REDACTED = "[redacted]"


class AllowedTools(ApiModel):
    """Which of an MCP server's tools the model is offered."""

    mode: str | None = None
    """Only "auto" (the model picks among them) is honoured."""
    tools: list[str] | None = None


class Tool(OpenModel):
    """A tool declaration: a client-side function (name, description, parameters) or a built-in
    tool by type (code_execution, url_context, computer_use, ...)."""

    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict | None = Field(default=None, json_schema_extra=FREE_FORM)
    """The function's JSON schema, kept exactly as sent."""
    environment: str | None = None
    """computer_use: what is operated; Tether's agents operate a browser."""
    excluded_predefined_functions: list[str] | None = None
    """computer_use: browser tools the model is not offered."""
    url: str | None = None
    """mcp_server: its endpoint (Streamable HTTP; SSE when the path ends in /sse)."""
    headers: dict[str, str] | None = None
    """mcp_server: sent with every request to it (its credentials): shown redacted."""
    allowed_tools: list[AllowedTools] | None = None
    """mcp_server: only the tools these name are offered."""

    def redacted(self) -> Tool:
        """As reads show it: header values hidden."""
        if not self.headers:
            return self
        return self.model_copy(update={"headers": dict.fromkeys(self.headers, REDACTED)})


EnvVar.model_rebuild()
