#!/usr/bin/env bash
# Builds the binaries of the end-to-end test bed from source, through the Go
# module proxy only (no prebuilt downloads):
#
#   kube-apiserver  from k8s.io/kubernetes      (module: tests/e2e/apiserver)
#   etcd            from go.etcd.io/etcd/server (module: tests/e2e/etcd)
#
# The versions are the ones required in those two go.mod files (the single
# source of truth). Binaries are cached under
#   ${SODGUARD_E2E_CACHE:-$HOME/.cache/sodguard-e2e}/kube-apiserver-<version>/kube-apiserver
#   ${SODGUARD_E2E_CACHE:-$HOME/.cache/sodguard-e2e}/etcd-<version>/etcd
# and a warm run only checks that each cached binary exists and that its
# `--version` answers with the expected version (tests/lib/go-build.sh).
#
# stdout: two shell assignments, for `eval "$(tests/e2e/build.sh)"`:
#   KUBE_APISERVER=/abs/path/kube-apiserver
#   ETCD=/abs/path/etcd
# Everything else goes to stderr.
#
# Options/env:
#   --force                  rebuild even if a cached binary is good
#   SODGUARD_E2E_CACHE       cache root (default $HOME/.cache/sodguard-e2e)
#   SODGUARD_E2E_NICE        niceness of `go build` (default 10)
#
# Cold build on the 2-core dev machine: see tests/e2e/README.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/go-build.sh
source "$HERE/../lib/go-build.sh"
gobuild_init e2e/build 10 "$@"

# Version of a module required in a go.mod ("require <mod> <version>" form).
required_version() { # go.mod module
  awk -v m="$2" '($1 == "require" && $2 == m) { print $3; exit } ($1 == m && $2 ~ /^v/) { print $2; exit }' "$1"
}

KUBE_VERSION="$(required_version "$HERE/apiserver/go.mod" k8s.io/kubernetes)"
ETCD_VERSION="$(required_version "$HERE/etcd/go.mod" go.etcd.io/etcd/server/v3)"
[[ -n "$KUBE_VERSION" && -n "$ETCD_VERSION" ]] || { log "error: cannot read versions from go.mod files"; exit 1; }

KUBE_OUT="$CACHE_ROOT/kube-apiserver-$KUBE_VERSION/kube-apiserver"
ETCD_OUT="$CACHE_ROOT/etcd-$ETCD_VERSION/etcd"

# version_has BINARY EXPECTED-SUBSTRING: `BINARY --version` mentions it.
version_has() {
  [[ -x "$1" ]] || return 1
  GOBUILD_SAID="$("$1" --version 2>&1)" || return 1
  [[ "$GOBUILD_SAID" == *"$2"* ]]
}
etcd_ok() { version_has "$1" "etcd Version: ${ETCD_VERSION#v}"; }
kube_apiserver_ok() { version_has "$1" "Kubernetes $KUBE_VERSION"; }

build_kube_apiserver() {
  local v="$KUBE_VERSION" major minor
  if [[ "$v" =~ ^v([0-9]+)\.([0-9]+) ]]; then major="${BASH_REMATCH[1]}"; minor="${BASH_REMATCH[2]}"; fi
  # Same version stamping as k8s's hack/lib/version.sh, so `--version` and
  # /version report the real release instead of v0.0.0-master. Built from a
  # module zip, not a git checkout: no commit id, tree state "archive" (what
  # version.sh says for a source archive).
  local ld="-s -w" key val
  for kv in "gitVersion=$v" "gitMajor=$major" "gitMinor=$minor" "gitTreeState=archive" \
            "buildDate=1970-01-01T00:00:00Z"; do
    key="${kv%%=*}"; val="${kv#*=}"
    ld+=" -X k8s.io/component-base/version.$key=$val -X k8s.io/client-go/pkg/version.$key=$val"
  done
  log "building kube-apiserver $v (k8s.io/kubernetes/cmd/kube-apiserver) -> $KUBE_OUT"
  gobuild "$KUBE_OUT" "$ld" k8s.io/kubernetes/cmd/kube-apiserver "$HERE/apiserver"
}

build_etcd() {
  log "building etcd $ETCD_VERSION (go.etcd.io/etcd/server/v3/etcdmain) -> $ETCD_OUT"
  gobuild "$ETCD_OUT" "-s -w" . "$HERE/etcd"
}

start=$SECONDS
gobuild_cached "etcd $ETCD_VERSION" "$ETCD_OUT" etcd_ok build_etcd
gobuild_cached "kube-apiserver $KUBE_VERSION" "$KUBE_OUT" kube_apiserver_ok build_kube_apiserver
log "done in $((SECONDS - start))s"

printf 'KUBE_APISERVER=%q\n' "$KUBE_OUT"
printf 'ETCD=%q\n' "$ETCD_OUT"
