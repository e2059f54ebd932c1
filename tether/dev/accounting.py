"""What processes spend, from /proc: CPU seconds and resident memory, each process counted with
every process under it (a component's children are its own)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            found.setdefault(ppid, []).append(int(entry.name))
    return found


def cpu_seconds(pid: int, children: dict[int, list[int]]) -> float:
    """User and system CPU of a process and every process under it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / TICKS
    return own + sum(cpu_seconds(child, children) for child in children.get(pid, []))


def cpu_of(pids: Mapping[str, int]) -> dict[str, float]:
    children = _children()
    return {name: cpu_seconds(pid, children) for name, pid in pids.items()}


def rss_mib(pids: Mapping[str, int]) -> dict[str, float]:
    """Resident memory of each component with every process under it."""
    children = _children()

    def rss(pid: int) -> int:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return 0
        kib = next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
        return kib + sum(rss(child) for child in children.get(pid, []))

    return {name: rss(pid) / 1024 for name, pid in pids.items()}
