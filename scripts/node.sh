#!/usr/bin/env bash
# Builds a real worker node's parts from the Go module proxy into a version-keyed cache outside
# the repo, and installs the Debian ones: kubelet, kube-proxy and kube-scheduler; containerd 2
# with its runc shim and ctr; gVisor's runsc; kube-router (the NetworkPolicy enforcer, firewall
# only); CoreDNS; local-path-provisioner. From Debian: runc, the CNI plugins, iptables, ipset,
# nftables, iproute2, procps, buildah, debootstrap, busybox-static (test images) and gcc (the
# pause program). Idempotent: a second run finds everything and exits.
set -euo pipefail
source "$(dirname "$0")/go-build.sh"

NODE_TOOLS=(kubelet kube-proxy kube-scheduler)
K8S_NODE_BIN="$CACHE/kubernetes-node-v$K8S_VERSION/bin"
if have "${NODE_TOOLS[@]/#/$K8S_NODE_BIN/}"; then
  echo "kubelet, kube-proxy, kube-scheduler v$K8S_VERSION: cached"
else
  echo "kubelet, kube-proxy, kube-scheduler v$K8S_VERSION: building (a few minutes)"
  build_kubernetes "$K8S_NODE_BIN" "${NODE_TOOLS[@]}"
fi

# cached NAME DIR BINARY... -- MODULE@VERSION...: go install into DIR unless already there.
cached() {
  local name="$1" dir="$2"
  shift 2
  local binaries=()
  while [ "$1" != -- ]; do binaries+=("$dir/$1"); shift; done
  shift
  if have "${binaries[@]}"; then
    echo "$name: cached"
  else
    echo "$name: building"
    rm -rf "$dir.tmp"
    go_install "$dir.tmp" "$@"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
}

cached "containerd v$CONTAINERD_VERSION" "$CACHE/containerd-v$CONTAINERD_VERSION/bin" \
  containerd containerd-shim-runc-v2 ctr -- \
  "github.com/containerd/containerd/v2/cmd/containerd@v$CONTAINERD_VERSION" \
  "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@v$CONTAINERD_VERSION" \
  "github.com/containerd/containerd/v2/cmd/ctr@v$CONTAINERD_VERSION"
GVISOR_BIN="$CACHE/gvisor-$GVISOR_VERSION/bin"
if have "$GVISOR_BIN/runsc" "$GVISOR_BIN/containerd-shim-runsc-v1"; then
  echo "gVisor $GVISOR_VERSION: cached"
else
  echo "gVisor $GVISOR_VERSION: building runsc and its containerd shim"
  rm -rf "$GVISOR_BIN.tmp"
  go_install "$GVISOR_BIN.tmp" "gvisor.dev/gvisor/runsc@$GVISOR_VERSION"
  # The shim, with one change: these VMs refuse a negative OOM score adjustment (no
  # CAP_SYS_RESOURCE), and gVisor's shim fails every pod when its own is refused. containerd's
  # runc shim treats that refusal as a warning; this makes gVisor's do the same.
  source_dir="$(go mod download -json "gvisor.dev/gvisor@$GVISOR_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  work="$(mktemp -d)"
  cp -r "$source_dir" "$work/gvisor" && chmod -R u+w "$work/gvisor"
  python3 - "$work/gvisor/pkg/shim/v1/manager.go" <<'PATCH'
import pathlib, sys
manager = pathlib.Path(sys.argv[1])
refusal = 'return shim.BootstrapParams{}, fmt.Errorf("failed to set OOM Score on shim: %w", err)'
source = manager.read_text()
assert refusal in source, f"{manager}: the OOM score refusal moved; look at the patch again"
# (not even a log line: the shim's stdout at start is the address containerd reads)
manager.write_text(source.replace(refusal, "// refused here: keep the score inherited"))
PATCH
  (cd "$work/gvisor" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
    -o "$GVISOR_BIN.tmp/containerd-shim-runsc-v1" ./shim)
  rm -rf "$work" "$GVISOR_BIN" && mv "$GVISOR_BIN.tmp" "$GVISOR_BIN"
fi
cached "kube-router v$KUBE_ROUTER_VERSION" "$CACHE/kube-router-v$KUBE_ROUTER_VERSION/bin" \
  kube-router -- "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@v$KUBE_ROUTER_VERSION"
cached "CoreDNS v$COREDNS_VERSION" "$CACHE/coredns-v$COREDNS_VERSION/bin" coredns -- \
  "github.com/coredns/coredns@v$COREDNS_VERSION"
cached "local-path-provisioner v$LOCAL_PATH_VERSION" \
  "$CACHE/local-path-provisioner-v$LOCAL_PATH_VERSION/bin" local-path-provisioner -- \
  "github.com/rancher/local-path-provisioner@v$LOCAL_PATH_VERSION"

DEBIAN=(runc containernetworking-plugins iptables ipset nftables iproute2 procps buildah debootstrap busybox-static gcc libc6-dev)
missing=()
for p in "${DEBIAN[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "node parts: ready"
