"""Storage: local-path-provisioner, the default StorageClass, so a PersistentVolumeClaim gets a
folder under the node's own (persistent) folder, as on any single-node cluster. Pure builders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tether.dev.versions import LOCAL_PATH_VERSION

from .configs import service_account_with_role

NAMESPACE = "local-path-storage"
PROVISIONER_IMAGE = f"tether.local/local-path-provisioner:{LOCAL_PATH_VERSION}"
HELPER_IMAGE = "tether.local/busybox:1"
"""The helper pod's image: Debian's static busybox, under the names its scripts call (tests
use it too)."""
HELPER_COMMANDS = ("busybox", "sh", "mkdir", "chmod", "rm")
STORAGE_CLASS = "local-path"

SETUP = """#!/bin/sh
set -eu
mkdir -m 0777 -p "$VOL_DIR"
"""
TEARDOWN = """#!/bin/sh
set -eu
rm -rf "$VOL_DIR"
"""
HELPER_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "helper-pod"},
    "spec": {
        "containers": [{"name": "helper-pod", "image": HELPER_IMAGE, "imagePullPolicy": "Never"}]
    },
}


def manifests(volumes: Path) -> list[dict[str, Any]]:
    meta = {"name": "local-path-provisioner", "namespace": NAMESPACE}
    # The name the provisioner gives its helper pods too.
    account = {"name": "local-path-provisioner-service-account", "namespace": NAMESPACE}
    config = {
        "nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(volumes)]}]
    }
    labels = {"app": "local-path-provisioner"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        *service_account_with_role(
            account,
            "local-path-provisioner",
            [
                {
                    "apiGroups": [""],
                    "resources": ["nodes", "persistentvolumeclaims", "configmaps", "pods/log"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "persistentvolumes", "pods"],
                    "verbs": ["*"],
                },
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
                {
                    "apiGroups": ["storage.k8s.io"],
                    "resources": ["storageclasses"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        ),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "local-path-config", "namespace": NAMESPACE},
            "data": {
                "config.json": json.dumps(config),
                "setup": SETUP,
                "teardown": TEARDOWN,
                "helperPod.yaml": json.dumps(HELPER_POD),
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": account["name"],
                        "containers": [
                            {
                                "name": "local-path-provisioner",
                                "image": PROVISIONER_IMAGE,
                                "imagePullPolicy": "Never",
                                "command": [
                                    "/local-path-provisioner",
                                    "start",
                                    "--config=/etc/config/config.json",
                                    f"--helper-image={HELPER_IMAGE}",
                                ],
                                "env": [
                                    {
                                        "name": "POD_NAMESPACE",
                                        "valueFrom": {
                                            "fieldRef": {"fieldPath": "metadata.namespace"}
                                        },
                                    },
                                    {"name": "CONFIG_MOUNT_PATH", "value": "/etc/config/"},
                                ],
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/config/"}],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "local-path-config"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer",
            # Deleting a claim deletes its folder; `make down` deletes no claim.
            "reclaimPolicy": "Delete",
        },
    ]
