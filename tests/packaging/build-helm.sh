#!/usr/bin/env bash
# Builds helm from source through the Go module proxy (no prebuilt binaries)
# and caches it, like tests/e2e/build.sh does for kube-apiserver and etcd:
#
#   ${SODGUARD_E2E_CACHE:-$HOME/.cache/sodguard-e2e}/helm-<version>/helm
#
# A warm run only checks that the cached binary answers `helm version` with
# the expected version.
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

HELM_VERSION="${SODGUARD_HELM_VERSION:-v3.22.0}"
CACHE_ROOT="${SODGUARD_E2E_CACHE:-${HOME}/.cache/sodguard-e2e}"
NICE="${SODGUARD_E2E_NICE:-15}"
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "build-helm.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { echo "[packaging/build-helm] $*" >&2; }

OUT="$CACHE_ROOT/helm-$HELM_VERSION/helm"

helm_ok() {
  [[ -x "$OUT" ]] || return 1
  local v
  v="$("$OUT" version --template '{{.Version}}' 2>/dev/null)" || return 1
  [[ "$v" == "$HELM_VERSION" ]]
}

if [[ $FORCE == 0 ]] && helm_ok; then
  log "helm $HELM_VERSION: cached ($OUT)"
else
  command -v go >/dev/null 2>&1 || { log "error: 'go' not found on PATH"; exit 1; }
  log "building helm $HELM_VERSION (helm.sh/helm/v3/cmd/helm) -> $OUT"
  t=$SECONDS
  mkdir -p "$(dirname "$OUT")"
  gobin="$(mktemp -d "$(dirname "$OUT")/gobin.XXXXXX")"
  trap 'rm -rf "$gobin"' EXIT
  # Version stamping as helm's own Makefile does: its version, and the
  # Kubernetes version `helm template`/`helm lint` assume (from the client-go
  # it requires: v0.37.x -> 1.37), else they assume v1.20.
  gomod="$(CGO_ENABLED=0 GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  cgo="$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")"
  [[ "$cgo" =~ ^v0\.([0-9]+)\. ]] || { log "error: no k8s.io/client-go version in $gomod"; exit 1; }
  kmin="${BASH_REMATCH[1]}"
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=archive"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ld+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$kmin"
  done
  if ! CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" GOBIN="$gobin" \
      nice -n "$NICE" go install -trimpath -ldflags="$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"; then
    log "error: go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed"
    exit 1
  fi
  mv -f "$gobin/helm" "$OUT"
  log "helm built in $((SECONDS - t))s"
  helm_ok || { log "error: $OUT does not report $HELM_VERSION"; "$OUT" version >&2 || true; exit 1; }
fi

printf 'HELM=%q\n' "$OUT"
