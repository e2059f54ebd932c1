"""BENCHMARKS.md holds one section per benchmark; each run rewrites its own section only."""

from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, text: str) -> None:
    """Put `text` (starting with its `## ` title) in place of the section of the same title, or
    after the others."""
    title = text.splitlines()[0]
    assert title.startswith("## "), title
    current = path.read_text() if path.exists() else "# Benchmarks\n\n"
    sections = re.split(r"(?m)^(?=## )", current)
    head, rest = sections[0], sections[1:]
    replaced = [text if s.splitlines()[0] == title else s for s in rest]
    if text not in replaced:
        replaced.append(text)
    path.write_text(
        head
        + "".join(s if s.endswith("\n\n") else s.rstrip("\n") + "\n\n" for s in replaced).rstrip(
            "\n"
        )
        + "\n"
    )
