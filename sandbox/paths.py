"""Paths inside the workspace, shared by the tool server and the files server (which the
gateway imports for its limits: this module needs nothing the sandbox image alone has)."""

from __future__ import annotations

from pathlib import Path


class ToolError(Exception):
    """A tool call the model can learn from: bad path, missing file, refused URL."""


def resolve(root: Path, path: str) -> Path:
    """A path inside the workspace (relative, or under /workspace); escapes are refused."""
    inside = path == "/workspace" or path.startswith("/workspace/")
    relative = path.removeprefix("/workspace").lstrip("/") if inside else path
    target = (root / relative).resolve()
    if target != root.resolve() and root.resolve() not in target.parents:
        raise ToolError(f"{path!r} is outside the workspace")
    return target
