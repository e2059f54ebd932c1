#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kubectl and helm from the Go module proxy
# into a version-keyed cache outside the repo. Idempotent: a second run finds the binaries and exits.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.34.4}"
HELM_VERSION="${HELM_VERSION:-3.21.4}"
CACHE="${TETHER_CACHE:-$HOME/.cache/tether}"
K8S_BIN="$CACHE/kubernetes-v$K8S_VERSION/bin"
HELM_BIN="$CACHE/helm-v$HELM_VERSION/bin"

have() { for f in "$@"; do [ -x "$f" ] || return 1; done; }

K8S_TOOLS=(kube-apiserver kube-controller-manager kubectl)
if have "$K8S_BIN/etcd" "${K8S_TOOLS[@]/#/$K8S_BIN/}"; then
  echo "control plane v$K8S_VERSION: cached in $K8S_BIN"
else
  echo "control plane v$K8S_VERSION: building into $K8S_BIN (several minutes on a cold cache)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  cd "$work"
  export GOTOOLCHAIN=local GOFLAGS=-mod=mod
  go mod init tether.dev/kbuild >/dev/null 2>&1
  go mod edit -require="k8s.io/kubernetes@v$K8S_VERSION"
  # k8s.io/kubernetes replaces its staging repos with local folders; point each at its published
  # v0.x twin so the module builds outside the kubernetes tree.
  gomod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  for m in $(sed -n 's/^\t\(k8s\.io\/[a-z0-9-]*\) v0\.0\.0$/\1/p' "$gomod"); do
    go mod edit -replace="$m=$m@v0.${K8S_VERSION#1.}"
  done
  # etcd at exactly the version kubernetes itself depends on, from the same module graph.
  etcd_version="$(sed -n 's/^\tgo\.etcd\.io\/etcd\/server\/v3 \(v[0-9.]*\).*/\1/p' "$gomod")"
  cmds=("${K8S_TOOLS[@]/#/k8s.io/kubernetes/cmd/}")
  go get "${cmds[@]/%/@v$K8S_VERSION}" "go.etcd.io/etcd/server/v3@$etcd_version"
  rm -rf "$K8S_BIN.tmp" && mkdir -p "$K8S_BIN.tmp"
  CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION" \
    -o "$K8S_BIN.tmp/" "${cmds[@]}"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$K8S_BIN.tmp/etcd" go.etcd.io/etcd/server/v3
  rm -rf "$K8S_BIN" && mv "$K8S_BIN.tmp" "$K8S_BIN"
  echo "control plane v$K8S_VERSION: built"
fi

if have "$HELM_BIN/helm"; then
  echo "helm v$HELM_VERSION: cached in $HELM_BIN"
else
  echo "helm v$HELM_VERSION: building into $HELM_BIN"
  GOTOOLCHAIN=local GOBIN="$HELM_BIN" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  echo "helm v$HELM_VERSION: built"
fi
