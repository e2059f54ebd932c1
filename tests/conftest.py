from __future__ import annotations

import pytest
import yaml

from tether.controlplane import ControlPlane
from tether.crds import CRD_DIR


@pytest.fixture(scope="session")
def control_plane():
    """A real etcd + kube-apiserver + kube-controller-manager, with the committed CRDs installed."""
    crds = [yaml.safe_load(path.read_text()) for path in sorted(CRD_DIR.glob("*.yaml"))]
    with ControlPlane(crds=crds) as cp:
        yield cp
