"""What every handler of the operator shares, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.events import EventLog
from tether.kube import Kube
from tether.providers import Provider
from tether.settings import Settings

from .runs import Runs


@dataclass
class Context:
    settings: Settings
    kube: Kube
    events: EventLog
    runs: Runs = field(default_factory=Runs)
    providers: dict[tuple, Provider] = field(default_factory=dict)
    """Provider clients by (Model uid, resourceVersion, key), so connections are reused."""
