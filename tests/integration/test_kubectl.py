"""Interactions are plain Kubernetes objects: kubectl can create and read them."""

from __future__ import annotations

import json
import time

MANIFEST = """
apiVersion: tether.dev/v1alpha1
kind: Interaction
metadata:
  name: from-kubectl
  namespace: tenant-a
spec:
  model: echo
  input: hello from kubectl
"""


def test_an_applied_manifest_runs_to_completion_with_the_answer_in_status(stack, api_key):
    cp = stack.control_plane
    assert "created" in cp.kubectl("apply", "-f", "-", stdin=MANIFEST)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        obj = json.loads(cp.kubectl("get", "ix", "from-kubectl", "-n", "tenant-a", "-o", "json"))
        if obj.get("status", {}).get("phase") == "completed":
            break
        time.sleep(0.1)
    assert obj["status"]["phase"] == "completed"
    assert obj["status"]["steps"][0]["content"][0]["text"] == "hello from kubectl"
    table = cp.kubectl("get", "ix", "from-kubectl", "-n", "tenant-a")
    header, row = table.splitlines()
    assert header.split() == ["NAME", "MODEL", "AGENT", "PHASE", "TOKENS", "AGE"]
    # AGENT is blank for a model interaction; 3 words in, 3 words out.
    assert row.split()[:4] == ["from-kubectl", "echo", "completed", "6"]


def test_an_applied_agent_interaction_runs_in_a_sandbox(stack, api_key):
    cp = stack.control_plane
    cp.kubectl(
        "apply",
        "-f",
        "-",
        stdin=MANIFEST.replace("from-kubectl", "agent-run").replace("model: echo", "agent: eva"),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        obj = json.loads(cp.kubectl("get", "ix", "agent-run", "-n", "tenant-a", "-o", "json"))
        if obj.get("status", {}).get("phase") not in (None, "queued", "in_progress"):
            break
        time.sleep(0.1)
    assert obj["status"]["phase"] == "completed", obj["status"]
    assert obj["status"]["sandboxPod"] == f"sbx-{obj['metadata']['uid']}"
    assert obj["status"]["steps"][-1]["type"] == "model_output"
