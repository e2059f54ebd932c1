#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kubectl, helm and kwok from the Go module proxy
# into a version-keyed cache outside the repo. Idempotent: a second run finds the binaries and exits.
set -euo pipefail

source "$(dirname "$0")/go-build.sh"
K8S_BIN="$CACHE/kubernetes-v$K8S_VERSION/bin"
HELM_BIN="$CACHE/helm-v$HELM_VERSION/bin"
KWOK_BIN="$CACHE/kwok-v$KWOK_VERSION/bin"

K8S_TOOLS=(kube-apiserver kube-controller-manager kubectl)
if have "$K8S_BIN/etcd" "${K8S_TOOLS[@]/#/$K8S_BIN/}"; then
  echo "control plane v$K8S_VERSION: cached in $K8S_BIN"
else
  echo "control plane v$K8S_VERSION: building into $K8S_BIN (several minutes on a cold cache)"
  build_kubernetes "$K8S_BIN" "${K8S_TOOLS[@]}" etcd
  echo "control plane v$K8S_VERSION: built"
fi

if have "$HELM_BIN/helm"; then
  echo "helm v$HELM_VERSION: cached in $HELM_BIN"
else
  echo "helm v$HELM_VERSION: building into $HELM_BIN"
  go_install "$HELM_BIN" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  echo "helm v$HELM_VERSION: built"
fi

if have "$KWOK_BIN/kwok"; then
  echo "kwok v$KWOK_VERSION: cached in $KWOK_BIN"
else
  echo "kwok v$KWOK_VERSION: building into $KWOK_BIN"
  go_install "$KWOK_BIN" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
  echo "kwok v$KWOK_VERSION: built"
fi
