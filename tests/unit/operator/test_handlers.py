"""What the operator asks of kopf: event handlers only, so it may skip kopf's diff base."""

from __future__ import annotations

import kopf

from tether.operator import handlers


def test_only_event_handlers_are_registered_so_no_diff_base_is_ever_read():
    registry = kopf.get_default_registry()
    assert list(registry._changing.get_all_handlers()) == []  # on.create/update/delete/resume
    assert list(registry._spawning.get_all_handlers()) == []  # daemons and timers
    assert handlers.interaction_event in [h.fn for h in registry._watching.get_all_handlers()]


def test_the_diff_base_built_for_an_event_copies_nothing():
    body = kopf.Body({"metadata": {"name": "ix-1"}, "spec": {"input": "x" * 1000}})
    assert handlers.NoDiffBase().build(body=body) == {}
