"""The dev node runs pods bound to it as processes and reports them through the real API."""

from __future__ import annotations

import subprocess
import time

import kubernetes
import pytest

from tether.dev.stack import DEV_NODE


@pytest.fixture
def core(stack):
    return kubernetes.client.CoreV1Api(stack.control_plane.api_client())


def pod(name: str, containers: list[dict], **spec) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "nodeName": DEV_NODE,
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsUser": 1000},
            "containers": [{"image": "dev", **c} for c in containers],
            **spec,
        },
    }


def until(predicate, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s")


def finished(core, namespace, name):
    def check():
        current = core.read_namespaced_pod(name, namespace)
        return current if current.status.phase in ("Succeeded", "Failed") else None

    return until(check)


def test_the_node_registers_ready(core):
    node = core.read_node(DEV_NODE)
    assert [c.status for c in node.status.conditions if c.type == "Ready"] == ["True"]
    assert node.metadata.labels["tether.dev/dev-node"] == "true"


def test_a_sidecar_and_a_main_container_share_volumes_and_finish(core, namespace):
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "s"}, "stringData": {"t": "sekrit"}}
    )
    body = pod(
        "shared",
        [
            {
                "name": "main",
                "command": ["sh", "-c", "sleep 0.3; cat /w/ready; cat /run/s/t; id -u"],
                "volumeMounts": [
                    {"name": "w", "mountPath": "/w"},
                    {"name": "s", "mountPath": "/run/s", "readOnly": True},
                ],
            }
        ],
        volumes=[{"name": "w", "emptyDir": {}}, {"name": "s", "secret": {"secretName": "s"}}],
        initContainers=[
            {
                "name": "side",
                "image": "dev",
                "restartPolicy": "Always",
                "command": ["sh", "-c", "echo up > /w/ready; sleep 60"],
                "volumeMounts": [{"name": "w", "mountPath": "/w"}],
            }
        ],
    )
    core.create_namespaced_pod(namespace, body)
    done = finished(core, namespace, "shared")
    assert done.status.phase == "Succeeded"
    assert done.status.container_statuses[0].state.terminated.exit_code == 0
    assert done.status.init_container_statuses[0].state.terminated is not None  # stopped
    assert core.read_namespaced_pod_log("shared", namespace, container="main") == "up\nsekrit1000\n"


def test_a_crash_reports_its_exit_code_and_last_log_lines(core, namespace):
    core.create_namespaced_pod(
        namespace,
        pod("crash", [{"name": "main", "command": ["sh", "-c", "echo boom >&2; exit 3"]}]),
    )
    done = finished(core, namespace, "crash")
    terminated = done.status.container_statuses[0].state.terminated
    assert done.status.phase == "Failed"
    assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert "boom" in terminated.message


def test_the_active_deadline_kills_the_pod(core, namespace):
    core.create_namespaced_pod(
        namespace,
        pod("slow", [{"name": "main", "command": ["sleep", "4321.5"]}], activeDeadlineSeconds=1),
    )
    done = finished(core, namespace, "slow")
    assert (done.status.phase, done.status.reason) == ("Failed", "DeadlineExceeded")
    assert not subprocess.run(["pgrep", "-f", "sleep 4321.5"], capture_output=True).stdout


def test_deleting_a_pod_stops_its_processes_and_removes_it(core, namespace):
    core.create_namespaced_pod(
        namespace, pod("doomed", [{"name": "main", "command": ["sleep", "4322.5"]}])
    )
    until(lambda: subprocess.run(["pgrep", "-f", "sleep 4322.5"], capture_output=True).stdout)
    core.delete_namespaced_pod("doomed", namespace, grace_period_seconds=1)

    def gone():
        try:
            core.read_namespaced_pod("doomed", namespace)
        except kubernetes.client.ApiException as error:
            return error.status == 404
        return False

    until(gone)
    assert not subprocess.run(["pgrep", "-f", "sleep 4322.5"], capture_output=True).stdout
