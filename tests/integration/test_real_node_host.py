"""A real node leaves the host as it found it: mounts, network devices, the netfilter ruleset,
ipsets, sysctls, cgroups, CNI's cache, and no process of its own left running."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.integration.test_real_node import busybox_pod, deny_egress
from tether.dev.versions import CACHE
from tether.dev.worker.cluster import LocalCluster
from tether.dev.worker.host import HostState

pytestmark = [pytest.mark.integration, pytest.mark.own_cluster]


def processes_from(folder: Path) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if exe.startswith(str(folder)):
            found.append(f"{pid} {exe}")
    return found


def test_a_node_that_ran_pods_under_runc_and_gvisor_leaves_the_host_as_it_found_it():
    before, running = HostState.observe(), processes_from(CACHE)
    with LocalCluster() as local:
        pod, sandboxed = (
            busybox_pod(n, "exec /bin/busybox sleep 3600") for n in ("runs", "gvisor")
        )
        sandboxed["spec"]["runtimeClassName"] = "gvisor"
        for obj in (pod, sandboxed):
            local.control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(obj))
        for name in ("runs", "gvisor"):
            local.control_plane.kubectl(
                "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=60s"
            )
        local.control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(deny_egress("runs")))
        deadline = time.monotonic() + 30
        while "ipsets" not in (changed := before.differences(HostState.observe())):
            assert time.monotonic() < deadline, "kube-router never enforced the policy"
            time.sleep(0.5)
    # the check looked at what a node really changes: its bridge and the pods' veths, the pods'
    # network namespaces and volumes, the rules and ipsets of the kubelet, kube-proxy and
    # kube-router, sysctls, cgroups, and the shims' sockets
    assert {"links", "mounts", "ruleset", "ipsets", "sysctls", "cgroups", "files"} <= changed.keys()
    assert before.differences(HostState.observe()) == {}
    assert processes_from(CACHE) == running  # (the session's own control plane may run)
