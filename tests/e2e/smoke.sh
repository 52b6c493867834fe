#!/usr/bin/env bash
# Smoke test of the e2e test bed itself (not of sodguard): brings a cluster up
# in DIR (default: a fresh temp dir), checks the API server, our CRDs, RBAC
# and service-account tokens, and always tears the cluster down.
#
#   tests/e2e/smoke.sh [DIR]   (a temp DIR of its own is removed after a clean run)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OWN_DIR=0
if [[ -n "${1:-}" ]]; then DIR="$1"; else DIR="$(mktemp -d "${TMPDIR:-/tmp}/sodguard-e2e.XXXXXX")"; OWN_DIR=1; fi
command -v kubectl >/dev/null 2>&1 || { echo "smoke.sh: kubectl not found" >&2; exit 1; }

trap '"$HERE/cluster.sh" down "$DIR"' EXIT
KUBECONFIG="$("$HERE/cluster.sh" up "$DIR")"
export KUBECONFIG

passed=0 failed=0
check() { # NAME command...
  local name="$1"; shift
  if "$@"; then echo "ok   - $name"; passed=$((passed + 1))
  else echo "FAIL - $name"; failed=$((failed + 1)); fi
}
as_x() { kubectl auth can-i --as system:serviceaccount:default:x "$@"; }
expect_no() { ! "$@" >/dev/null 2>&1; }

check "server version" kubectl version -o json
check "namespaces listed" kubectl get ns default kube-system
check "CRDs accepted" kubectl apply -f "$ROOT/manifests/crds/"
check "CRDs established" kubectl wait --for condition=established --timeout=60s \
  crd/sodpolicies.sodguard.io crd/sodexceptions.sodguard.io
check "SA x cannot get secrets before binding" expect_no as_x get secrets -n default
check "role created" kubectl -n default create role secret-reader --verb=get,list --resource=secrets
check "rolebinding created" kubectl -n default create rolebinding x-reads-secrets \
  --role=secret-reader --serviceaccount=default:x
check "SA x can get secrets in default" as_x get secrets -n default
check "SA x still cannot get secrets in kube-system" expect_no as_x get secrets -n kube-system
check "serviceaccount created" kubectl -n default create serviceaccount x
token="$(kubectl -n default create token x --duration=10m)"
check "SA token authenticates" bash -c \
  'kubectl --kubeconfig=/dev/null --server "$1" --certificate-authority "$2" --token "$3" -n default get secrets' _ \
  "$(sed -n 's/^APISERVER_URL=//p' "$DIR/env")" "$DIR/pki/ca.crt" "$token"

echo "e2e-smoke: $passed passed, $failed failed"
if ((failed == 0)); then
  # A temp dir of our own is removed after a clean run; logs kept otherwise.
  "$HERE/cluster.sh" down "$DIR"
  ((OWN_DIR == 1)) && rm -rf "$DIR"
  exit 0
fi
echo "logs: $DIR/logs" >&2
exit 1
