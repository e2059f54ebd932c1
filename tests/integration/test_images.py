"""Tether's own images, built from its Dockerfile here (buildah, no registry), run on the real
node as the chart runs them: non-root, no capabilities, the sandbox under gVisor."""

from __future__ import annotations

import json
import os

import pytest

from tether.dev.worker import images

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node(cluster):
    cluster.node.provide_built(images.build_all(cluster.node.parts))
    return cluster.node


def run_once(node, name: str, image: str, script: str, **spec) -> str:
    """Run `python -c script` in a pod of `image` to its end; its log."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "main",
                    "image": images.image_name(image),
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", script],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
            **spec,
        },
    }
    cp = node.control_plane
    cp.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    try:
        cp.kubectl(
            "wait", "--for=jsonpath={.status.phase}=Succeeded", f"pod/{name}", "--timeout=90s"
        )
        return cp.kubectl("logs", name)
    finally:
        cp.kubectl("delete", "pod", name, "--wait=false")


WHO_AND_WHAT = (
    "import importlib.util, os; "
    "print(os.getuid(), importlib.util.find_spec('tether.dev') is None, "
    "open('/proc/self/status').read().split('CapEff:')[1].split()[0])"
)


MODULES = {"operator": "handlers", "gateway": "app", "egress": "gate"}


@pytest.mark.parametrize("target", sorted(MODULES))
def test_a_service_image_runs_its_service_as_non_root_without_the_dev_wing(node, target):
    module = f"tether.{target}.{MODULES[target]}"
    log = run_once(node, f"{target}-image", target, f"import {module}; {WHO_AND_WHAT}")
    assert log.split() == ["10001", "True", "0000000000000000"]


def test_the_sandbox_image_runs_its_tools_under_gvisor(node):
    script = (
        "import tether.sandbox.agent, tether.sandbox.workspace, pandas, bs4, subprocess; "
        f"{WHO_AND_WHAT}; "
        "print(subprocess.run(['chromium', '--version'], capture_output=True, text=True).stdout); "
        "print(os.uname().release)"
    )
    log = run_once(node, "sandbox-image", "sandbox", script, runtimeClassName="gvisor")
    who, chromium, kernel = log.split("\n")[:3]
    assert who.split() == ["1000", "True", "0000000000000000"]
    assert chromium.startswith("Chromium ")
    assert kernel != os.uname().release  # gVisor's kernel, not the host's
