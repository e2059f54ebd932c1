"""What the gateway's handlers share: built in the app's cleanup context, typed by AppKey."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from tether.catalog import Providers
from tether.events import EventLog
from tether.kube import Kube
from tether.outputs import Outputs
from tether.run_store import RunStore
from tether.settings import Settings

from .auth import ApiKeys


@dataclass
class State:
    settings: Settings
    kube: Kube
    events: EventLog
    keys: ApiKeys
    run_store: RunStore
    outputs: Outputs
    providers: Providers


SETTINGS = web.AppKey("settings", Settings)
STATE = web.AppKey("state", State)
