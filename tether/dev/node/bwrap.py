"""The bubblewrap command line of one container: pure, so every mount can be checked."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Host paths every container sees read-only: the system, minus secrets such as /etc/shadow.
SYSTEM_DIRS = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
)


@dataclass(frozen=True)
class Mount:
    host: Path
    path: str
    read_only: bool = False


def bwrap_argv(
    command: list[str],
    mounts: Iterable[Mount],
    env: Mapping[str, str],
    working_dir: str | None,
    uid: int | None,
    host_dirs: Iterable[str],
) -> list[str]:
    argv = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--new-session"]
    argv += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for directory in SYSTEM_DIRS:
        if os.path.exists(directory):
            argv += ["--ro-bind", directory, directory]
    for mount in mounts:
        argv += ["--ro-bind" if mount.read_only else "--bind", str(mount.host), mount.path]
    # The image stand-in last: a checkout or venv under /tmp stays visible even when the pod
    # mounts its own /tmp.
    for directory in host_dirs:
        if os.path.exists(directory):
            argv += ["--ro-bind", directory, directory]
    if uid is not None:
        argv += ["--unshare-user", "--uid", str(uid), "--gid", str(uid)]
    argv += ["--clearenv"]
    for name, value in env.items():
        argv += ["--setenv", name, value]
    if working_dir:
        argv += ["--chdir", working_dir]
    return [*argv, "--", *command]
