# Sourced by control-plane.sh and node.sh: Go builds from the Go module proxy into a cache.
# shellcheck shell=bash

# The versions, from the one list; one already in the environment wins.
while IFS='=' read -r name value; do
  case "$name" in '' | '#'*) continue ;; esac
  [ -n "${!name:-}" ] || export "$name=$value"
done < "$(dirname "${BASH_SOURCE[0]}")/versions.env"
CACHE="${TETHER_CACHE:-$HOME/.cache/tether}"
export GOTOOLCHAIN=local

have() { for f in "$@"; do [ -x "$f" ] || return 1; done; }

# build_kubernetes OUT CMD...: k8s.io/kubernetes/cmd/CMD at K8S_VERSION (and etcd, if asked for
# as "etcd", at exactly the version kubernetes depends on) into OUT, replaced whole when done.
build_kubernetes() {
  local out="$1" work gomod etcd_version want_etcd=""
  shift
  local cmds=()
  for c in "$@"; do
    if [ "$c" = etcd ]; then want_etcd=1; else cmds+=("k8s.io/kubernetes/cmd/$c"); fi
  done
  work="$(mktemp -d)"
  (
    cd "$work"
    export GOFLAGS=-mod=mod
    go mod init tether.dev/kbuild >/dev/null 2>&1
    go mod edit -require="k8s.io/kubernetes@v$K8S_VERSION"
    # k8s.io/kubernetes replaces its staging repos with local folders; point each at its
    # published v0.x twin so the module builds outside the kubernetes tree.
    gomod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    for m in $(sed -n 's/^\t\(k8s\.io\/[a-z0-9-]*\) v0\.0\.0$/\1/p' "$gomod"); do
      go mod edit -replace="$m=$m@v0.${K8S_VERSION#1.}"
    done
    etcd_version="$(sed -n 's/^\tgo\.etcd\.io\/etcd\/server\/v3 \(v[0-9.]*\).*/\1/p' "$gomod")"
    go get "${cmds[@]/%/@v$K8S_VERSION}" ${want_etcd:+"go.etcd.io/etcd/server/v3@$etcd_version"}
    rm -rf "$out.tmp" && mkdir -p "$out.tmp"
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION" \
      -o "$out.tmp/" "${cmds[@]}"
    if [ -n "$want_etcd" ]; then
      CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3
    fi
  )
  rm -rf "$work" "$out" && mv "$out.tmp" "$out"
}

# go_install OUT MODULE/CMD@VERSION...: plain `go install`s into OUT (static binaries).
go_install() {
  local out="$1"
  shift
  mkdir -p "$out"
  GOBIN="$out" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$@"
}
