"""Configuration shared by the operator and the gateway, from TETHER_* environment variables."""

from __future__ import annotations

import socket

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TETHER_", extra="ignore", validate_by_name=True)

    kubeconfig: str | None = Field(
        default=None, validation_alias=AliasChoices("TETHER_KUBECONFIG", "KUBECONFIG")
    )
    """Unset inside a cluster: the pod's service account is used."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = 2000
    """Per process. Every open stream and waiting synchronous create holds one while it waits;
    past this many, requests wait for a free connection instead of failing."""
    system_namespace: str = "tether-system"
    """Where API keys and the platform-wide Models and Agents live."""

    event_ttl_seconds: int = 24 * 3600
    """How long an interaction's event log is kept after it finishes (for stream resume)."""
    retention_seconds: int = 7 * 24 * 3600
    """How long a stored interaction is kept after it finishes."""
    sweep_interval_seconds: float = 300
    """How often interactions past their retention are deleted."""
    sandbox_check_seconds: float = 30
    """How often the operator looks over running sandboxes and objects a crash left behind."""
    operator_id: str = Field(default_factory=socket.gethostname)
    """This operator replica's name, unique among the replicas and the same across its
    restarts (the pod's name): the holder of its run leases and of the leader's Lease."""

    host: str = "127.0.0.1"
    port: int = 8080
    """The gateway's public API."""
    internal_port: int = 8081
    """The gateway's internal API (/internal/v1), the only port of it a sandbox may reach."""
    reuse_port: bool = False
    """Several gateway processes on one host share its ports (SO_REUSEPORT): the kernel spreads
    the connections over them. In a cluster, a Service does that for the gateway's replicas."""
    metrics_port: int = 0
    """The operator's /metrics port (0: a free one). The gateway serves /metrics itself."""
    max_body_bytes: int = 1024 * 1024
    """Larger request bodies get 413: an Interaction must fit in one etcd object."""
    keepalive_seconds: float = 15
    """A comment line on quiet SSE streams this often, so proxies keep them open."""
    run_token_key: str = ""
    """Signs the sandboxes' run tokens; shared by the operator and the gateway. Agent runs
    need it; model interactions do not."""
    sandbox_image: str = "ghcr.io/tether-dev/sandbox:0.1.0"
    gateway_url: str = "http://tether-gateway-internal.tether-system:8081"
    """How sandboxes reach the gateway's internal API (its in-cluster Service); its port is the
    one their NetworkPolicies open."""
    sandbox_runtime_class_name: str | None = None
    """The RuntimeClass (gvisor, kata, ...) of every sandbox. When set, no request or Agent may
    change it; when unset, an environment may name one."""
    sandbox_allowed_images: list[str] = []
    """Images an environment may pick besides sandbox_image (JSON list); nothing else runs."""
    sandbox_max_cpu: str = "2"
    """The most CPU an environment may give its workspace container (its limit always holds)."""
    sandbox_max_memory: str = "4Gi"
    sandbox_max_ephemeral_storage: str = "4Gi"
    sandbox_named_hosts: dict[str, list[str]] = {}
    """Where the platform's own services run outside the cluster (JSON: host name -> CIDRs, as
    the NetworkPolicy enforcer sees them): when the gateway's or the egress proxy's URL names
    one, a sandbox's NetworkPolicy opens these addresses for it (the local test stack)."""
    egress_proxy_url: str = "http://tether-egress.tether-system:3128"
    """How sandboxes reach the egress proxy (its Service): their only way out besides DNS and
    the gateway, given to them as HTTP_PROXY and HTTPS_PROXY."""
    egress_host: str = "0.0.0.0"
    egress_port: int = 3128
    """Where the egress proxy listens."""
    egress_metrics_port: int = 9091
    """The egress proxy's /metrics and /healthz."""
    egress_key: str = ""
    """What the egress proxy shows the gateway's internal API when it reports a refused
    connection into a run's timeline; shared by the two."""
    egress_admin_url: str = "http://tether-egress.tether-system:9091"
    """Where the gateway asks the egress proxy to seal a credential (its metrics port, which no
    sandbox reaches)."""
    egress_private_key: str = ""
    """The egress proxy's own key (base64, 32 bytes or more), which nothing else holds: it seals
    credentials and makes each run's certificate authority."""
    egress_trusted_ca: str = ""
    """A file of CA certificates the egress proxy trusts for the servers it intercepts (by
    default, the public ones it ships with)."""
    egress_hosts: dict[str, str] = {}
    """The platform's named destinations (JSON: host name -> address, or "" to resolve it):
    reachable when an allowlist names them even at a private address, which the proxy refuses
    for every other name."""
    environment_storage: str = "1Gi"
    """The size of an Environment's workspace volume when it does not say."""
    environment_max_storage: str = "10Gi"
    """The largest workspace volume an Environment may ask for."""
    environment_idle_seconds: int = 7 * 24 * 3600
    """How long an Environment may go unused before its volume is deleted, when it does not
    say (idle_timeout_seconds)."""
    environment_check_seconds: float = 30
    """How often idle Environments are looked for."""
    sync_wait_seconds: float = 600
    """A create without background answers when the run ends, or after this long."""
    webhook_retry_delays: list[float] = [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800]
    """Seconds before each retry of a failed webhook delivery (JSON list): the default backs off
    exponentially for about 24 h. When none of the attempts succeeds, the endpoint is
    disabled."""
    webhook_timeout_seconds: float = 10
    """How long an endpoint has to answer one delivery."""
    webhook_allow_private: bool = False
    """Whether webhooks may call private, loopback and link-local addresses (`make up` allows
    them, so a receiver on the developer's machine is called)."""
    webhook_require_https: bool = False
    """Whether a webhook's URI must be https."""
    webhook_loopback_host: str = ""
    """Where pods reach the host's loopback (`make up`: host.tether.internal): a webhook at
    127.0.0.1 or localhost is called there, so a developer's receiver gets deliveries."""
    webhook_hosts: list[str] = []
    """When set (JSON list), the only hosts a webhook's URI may name."""
    webhook_concurrency: int = 32
    """Deliveries in flight at once, per operator."""
    trigger_check_seconds: float = 5
    """How often the operator looks for triggers that are due (a schedule's resolution)."""
    trigger_catch_up_seconds: float = 3600
    """Scheduled times missed by less than this (the operator was away) are each fired when it
    is back; of older ones, only the latest."""
