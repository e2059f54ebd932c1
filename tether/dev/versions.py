"""The versions `make control-plane` and `make node-parts` build, from scripts/versions.env (the
scripts read the same file); an environment variable of the same name overrides one."""

from __future__ import annotations

import os
from pathlib import Path

from tether.crds import ROOT

CACHE = Path(os.environ.get("TETHER_CACHE", Path.home() / ".cache" / "tether"))
"""Where they are built to, one folder per version."""


def _read(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name: os.environ.get(name, value) for name, value in pairs if not name.startswith("#")}


_VERSIONS = _read(ROOT / "scripts" / "versions.env")
K8S_VERSION = _VERSIONS["K8S_VERSION"]
HELM_VERSION = _VERSIONS["HELM_VERSION"]
KWOK_VERSION = _VERSIONS["KWOK_VERSION"]
CONTAINERD_VERSION = _VERSIONS["CONTAINERD_VERSION"]
GVISOR_VERSION = _VERSIONS["GVISOR_VERSION"]
KUBE_ROUTER_VERSION = _VERSIONS["KUBE_ROUTER_VERSION"]
COREDNS_VERSION = _VERSIONS["COREDNS_VERSION"]
LOCAL_PATH_VERSION = _VERSIONS["LOCAL_PATH_VERSION"]
