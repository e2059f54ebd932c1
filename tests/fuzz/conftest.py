"""Fuzzing against the real stack: each suite gets its own tenant, and the number of requests
sent is printed at the end of the run (the README quotes it)."""

from __future__ import annotations

from collections import Counter

import pytest

SENT = pytest.StashKey[Counter]()


@pytest.fixture(scope="session")
def fuzz_counts(request) -> Counter:
    """Requests sent per suite, and how many of them were answered with a 5xx."""
    return request.config.stash.setdefault(SENT, Counter())


def pytest_terminal_summary(terminalreporter, config) -> None:
    counts = config.stash.get(SENT, None)
    if counts:
        terminalreporter.write_line(
            f"fuzz: {counts['schemathesis']} schemathesis cases and {counts['hostile']} "
            f"hostile inputs sent; {counts['5xx']} answered 5xx"
        )
