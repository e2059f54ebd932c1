from __future__ import annotations

import os

import pytest

from tests.chaos.report import REPORT_KEY, SCALE_OUT_KEY
from tether.dev.stack import DevStack

REPLICAS = 3


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The suite's stack, supervised as `make up` is, with three replicas of the operator and of
    the gateway (the gateways share one address): the fault scenario runs on it, then the
    scale-out scenario, which kills one operator replica for good."""
    environ = {**os.environ, "TETHER_KEEPALIVE_SECONDS": "2"}
    workdir = tmp_path_factory.mktemp("chaos-stack")
    stack = DevStack(
        workdir, environ=environ, supervise=True, operators=REPLICAS, gateways=REPLICAS
    )
    try:
        yield stack.start()
    finally:
        stack.stop()


def pytest_terminal_summary(terminalreporter, config) -> None:
    """Print the chaos run's figures and checks after the results, pass or fail."""
    if table := config.stash.get(REPORT_KEY, None):
        terminalreporter.section("chaos report")
        terminalreporter.write_line(table)
    if table := config.stash.get(SCALE_OUT_KEY, None):
        terminalreporter.section("scale-out report")
        terminalreporter.write_line(table)
