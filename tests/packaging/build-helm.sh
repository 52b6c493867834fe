#!/usr/bin/env bash
# Builds helm from source through the Go module proxy (no prebuilt binaries)
# and caches it, like tests/e2e/build.sh does for kube-apiserver and etcd:
#
#   ${SODGUARD_E2E_CACHE:-$HOME/.cache/sodguard-e2e}/helm-<version>/helm
#
# A warm run only checks that the cached binary answers `helm version` with
# the expected version (tests/lib/go-build.sh).
#
# stdout: one shell assignment, for `eval "$(tests/packaging/build-helm.sh)"`:
#   HELM=/abs/path/helm
# Everything else goes to stderr.
#
# Options/env:
#   --force                  rebuild even if the cached binary is good
#   SODGUARD_HELM_VERSION    helm version (default below)
#   SODGUARD_E2E_CACHE       cache root (default $HOME/.cache/sodguard-e2e)
#   SODGUARD_E2E_NICE        niceness of `go install` (default 15)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/go-build.sh
source "$HERE/../lib/go-build.sh"
gobuild_init packaging/build-helm 15 "$@"

HELM_VERSION="${SODGUARD_HELM_VERSION:-v3.22.0}"
OUT="$CACHE_ROOT/helm-$HELM_VERSION/helm"

helm_ok() {
  [[ -x "$1" ]] || return 1
  GOBUILD_SAID="$("$1" version --template '{{.Version}}' 2>/dev/null)" || return 1
  [[ "$GOBUILD_SAID" == "$HELM_VERSION" ]]
}

build_helm() {
  log "building helm $HELM_VERSION (helm.sh/helm/v3/cmd/helm) -> $OUT"
  # Version stamping as helm's own Makefile does: its version, and the
  # Kubernetes version `helm template`/`helm lint` assume (from the client-go
  # it requires: v0.37.x -> 1.37), else they assume v1.20.
  local gomod cgo kmin ld p
  gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  cgo="$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")"
  [[ "$cgo" =~ ^v0\.([0-9]+)\. ]] || { log "error: no k8s.io/client-go version in $gomod"; return 1; }
  kmin="${BASH_REMATCH[1]}"
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=archive"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ld+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$kmin"
  done
  gobuild "$OUT" "$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

gobuild_cached "helm $HELM_VERSION" "$OUT" helm_ok build_helm

printf 'HELM=%q\n' "$OUT"
