"""What every handler of the operator shares, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.catalog import Catalog
from tether.informer import Informer
from tether.kube import Kube
from tether.providers.registry import Providers
from tether.settings import Settings
from tether.store.events import EventLog
from tether.store.model_slots import ModelSlots
from tether.store.outputs import Outputs
from tether.store.run_leases import Run, RunLeases
from tether.store.run_store import RunStore

from .runs import Runs


@dataclass
class Context:
    settings: Settings
    kube: Kube
    events: EventLog
    runs: Runs = field(default_factory=Runs)
    catalog: Catalog = field(init=False)
    webhooks: Informer = field(init=False)
    """The tenants' Webhooks, from a watch: every ending asks who is subscribed."""
    providers: Providers = field(init=False)
    run_store: RunStore = field(init=False)
    outputs: Outputs = field(init=False)
    slots: ModelSlots = field(init=False)
    leases: RunLeases = field(init=False)
    open: set[Run] = field(default_factory=set)
    """The interactions that have not ended, whichever replica runs them."""
    active_sandboxes: dict[str, bool] = field(default_factory=dict)
    """Sandbox pods that have not ended, by uid: whether each has been seen running."""

    def __post_init__(self) -> None:
        self.catalog = Catalog(self.kube, self.settings.system_namespace)
        self.webhooks = Informer(self.kube, "webhooks")
        self.providers = Providers(self.kube)
        self.run_store = RunStore(self.events.redis, self.settings.retention_seconds)
        self.outputs = Outputs(self.events.redis, self.settings.retention_seconds)
        self.slots = ModelSlots(self.events.redis)
        self.leases = RunLeases(self.events.redis, self.settings.operator_id)
