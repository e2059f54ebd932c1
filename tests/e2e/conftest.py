from __future__ import annotations

import os

import pytest

from tests.conftest import sdk_client


@pytest.fixture(scope="session")
def deployment(request) -> tuple[str, str]:
    """Where the e2e suite points: a real deployment (TETHER_E2E_URL and TETHER_E2E_API_KEY, as
    `make kind-e2e` sets them), or else the local stack `make test` starts."""
    if url := os.environ.get("TETHER_E2E_URL"):
        return url, os.environ["TETHER_E2E_API_KEY"]
    stack = request.getfixturevalue("stack")
    return stack.url, stack.add_tenant("tenant-e2e")


@pytest.fixture(scope="session")
def sdk(deployment):
    return sdk_client(*deployment)
