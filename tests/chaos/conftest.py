from __future__ import annotations

from tests.chaos.report import REPORT_KEY, SCALE_OUT_KEY


def pytest_terminal_summary(terminalreporter, config) -> None:
    """Print the chaos run's figures and checks after the results, pass or fail."""
    if table := config.stash.get(REPORT_KEY, None):
        terminalreporter.section("chaos report")
        terminalreporter.write_line(table)
    if table := config.stash.get(SCALE_OUT_KEY, None):
        terminalreporter.section("scale-out report")
        terminalreporter.write_line(table)
