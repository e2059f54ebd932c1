"""Where `make node-parts` (scripts/node.sh) put a worker node's binaries."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tether.dev.processes import StartupError
from tether.dev.versions import (
    CACHE,
    CONTAINERD_VERSION,
    COREDNS_VERSION,
    GVISOR_VERSION,
    K8S_VERSION,
    KUBE_ROUTER_VERSION,
    LOCAL_PATH_VERSION,
)

CNI_BIN_DIR = Path("/usr/lib/cni")


@dataclass(frozen=True)
class NodeParts:
    kubelet: Path
    kube_proxy: Path
    kube_scheduler: Path
    kube_router: Path
    coredns: Path
    local_path_provisioner: Path
    busybox: Path
    containerd: Path
    containerd_shim_dir: Path
    ctr: Path
    runc: Path
    runsc: Path
    """gVisor, with its containerd shim beside it."""
    buildah: Path

    @classmethod
    def from_cache(cls) -> NodeParts:
        """The parts `make node-parts` built and installed; a clear error if it has not run."""
        kubernetes = CACHE / f"kubernetes-node-v{K8S_VERSION}" / "bin"
        containerd = CACHE / f"containerd-v{CONTAINERD_VERSION}" / "bin"
        found = cls(
            kubelet=kubernetes / "kubelet",
            kube_proxy=kubernetes / "kube-proxy",
            kube_scheduler=kubernetes / "kube-scheduler",
            kube_router=CACHE / f"kube-router-v{KUBE_ROUTER_VERSION}" / "bin" / "kube-router",
            coredns=CACHE / f"coredns-v{COREDNS_VERSION}" / "bin" / "coredns",
            local_path_provisioner=CACHE
            / f"local-path-provisioner-v{LOCAL_PATH_VERSION}"
            / "bin"
            / "local-path-provisioner",
            busybox=Path("/bin/busybox"),
            containerd=containerd / "containerd",
            containerd_shim_dir=containerd,
            ctr=containerd / "ctr",
            runc=Path(shutil.which("runc") or "/usr/sbin/runc"),
            runsc=CACHE / f"gvisor-{GVISOR_VERSION}" / "bin" / "runsc",
            buildah=Path(shutil.which("buildah") or "/usr/bin/buildah"),
        )
        binaries = [p for name, p in vars(found).items() if name != "containerd_shim_dir"]
        missing = [str(p) for p in binaries if not os.access(p, os.X_OK)]
        if not (CNI_BIN_DIR / "bridge").exists():
            missing.append(str(CNI_BIN_DIR / "bridge"))
        if missing:
            raise StartupError(f"missing {', '.join(missing)}: run `make node-parts` first")
        return found
