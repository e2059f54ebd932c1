"""What a worker node changes on the host, observed before it starts and put back after it stops:
mounts, network devices, the netfilter ruleset, ipsets, sysctls, cgroups, and the files CNI and
containerd's shims keep outside the node's folder."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

# The kubelet tunes the first six; pod networking needs forwarding and bridged traffic to pass
# the netfilter hooks (where NetworkPolicies and Services are enforced); kube-proxy sets the rest.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.ipv4.conf.all.route_localnet",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Fixed paths of CNI's result cache and of the shims' sockets (containerd's default state folder).
OUTSIDE_FOLDERS = (Path("/var/lib/cni"), Path("/run/containerd"))
_MNT_DETACH = 2


@dataclass(frozen=True)
class HostState:
    """The parts of the host a node touches, as they stand."""

    mounts: frozenset[str]
    links: frozenset[str]
    ruleset: str
    ipsets: frozenset[str]
    sysctls: tuple[tuple[str, str], ...]
    cgroups: frozenset[str]
    files: frozenset[str]

    @classmethod
    def observe(cls) -> HostState:
        return cls(
            mounts=frozenset(mount_points()),
            links=frozenset(os.listdir("/sys/class/net")),
            ruleset=_ruleset(),
            ipsets=frozenset(_ipsets()),
            sysctls=tuple((name, value) for name in SYSCTLS if (value := read_sysctl(name))),
            cgroups=frozenset(_cgroups()),
            files=frozenset(_files()),
        )

    def save(self, path: Path) -> None:
        """Kept on disk while a node runs, so that a run that died without stopping can still
        be put back (LocalCluster does, at its next start, and `make down`)."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        plain = {k: sorted(v) if isinstance(v, frozenset) else v for k, v in fields.items()}
        path.write_text(json.dumps(plain))

    @classmethod
    def load(cls, path: Path) -> HostState:
        plain = json.loads(path.read_text())
        return cls(
            mounts=frozenset(plain["mounts"]),
            links=frozenset(plain["links"]),
            ruleset=plain["ruleset"],
            ipsets=frozenset(plain["ipsets"]),
            sysctls=tuple(tuple(pair) for pair in plain["sysctls"]),
            cgroups=frozenset(plain["cgroups"]),
            files=frozenset(plain["files"]),
        )

    def differences(self, other: HostState) -> dict[str, tuple]:
        """What differs between two observations, field by field (empty: the same host)."""
        found = {}
        for name in self.__dataclass_fields__:
            before, after = getattr(self, name), getattr(other, name)
            if before != after:
                if isinstance(before, frozenset):
                    found[name] = (sorted(before - after), sorted(after - before))
                else:
                    found[name] = (before, after)
        return found

    def restore(self) -> None:
        """Put back what changed since this observation. Run it once the node's processes are
        gone: a mount or cgroup still in use stays until its last process ends."""
        for point in sorted(set(mount_points()) - self.mounts, key=len, reverse=True):
            _unmount(point)
        for link in set(os.listdir("/sys/class/net")) - self.links:
            subprocess.run(["ip", "link", "delete", link], capture_output=True, check=False)
        if _ruleset() != self.ruleset:
            subprocess.run(["nft", "flush", "ruleset"], check=True)
            if self.ruleset.strip():
                subprocess.run(["nft", "-f", "-"], input=self.ruleset, text=True, check=True)
        for name in set(_ipsets()) - self.ipsets:
            subprocess.run(["ipset", "destroy", name], capture_output=True, check=False)
        for name, value in self.sysctls:
            if read_sysctl(name) != value:
                write_sysctl(name, value)
        for path in sorted(set(_cgroups()) - self.cgroups, key=len, reverse=True):
            _remove_cgroup(Path(path))
        for path in sorted(set(_files()) - self.files, key=len, reverse=True):
            with contextlib.suppress(OSError):
                Path(path).rmdir() if Path(path).is_dir() else Path(path).unlink()


def mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point))
    return points


def read_sysctl(name: str) -> str | None:
    try:
        return (Path("/proc/sys") / name.replace(".", "/")).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    (Path("/proc/sys") / name.replace(".", "/")).write_text(value)


def kill_cgroup_members(marker: str) -> None:
    """SIGKILL every process whose cgroup path contains `marker` (what is left of the pods)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, ProcessLookupError):
            if marker in Path(f"/proc/{pid}/cgroup").read_text():
                os.kill(int(pid), signal.SIGKILL)


def _ruleset() -> str:
    if not shutil.which("nft"):
        return ""
    listed = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=True)
    # Counters move with traffic; they are not a change the node made.
    return re.sub(r"counter packets \d+ bytes \d+", "counter", listed.stdout)


def _ipsets() -> list[str]:
    if not shutil.which("ipset"):
        return []
    listed = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True, check=False)
    return listed.stdout.split()


def _cgroups() -> list[str]:
    """Every cgroup folder below the first level of each hierarchy."""
    found = []
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else []:
        for dirpath, dirnames, _ in os.walk(hierarchy):
            found.extend(os.path.join(dirpath, d) for d in dirnames)
    return found


def _remove_cgroup(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()  # a cgroup folder's files are the kernel's: rmdir removes it whole


def _files() -> list[str]:
    found = []
    for root in filter(Path.exists, OUTSIDE_FOLDERS):
        found.append(str(root))
        for dirpath, dirnames, filenames in os.walk(root):
            found.extend(os.path.join(dirpath, n) for n in dirnames + filenames)
    return found


def _unmount(point: str) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.umount2(point.encode(), _MNT_DETACH)
