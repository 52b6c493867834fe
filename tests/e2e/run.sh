#!/usr/bin/env bash
# sodguard end to end, on a real kube-apiserver (built from source by build.sh),
# driven by the real kubectl — issue 4 §2, scenarios 1–9; issue 8: 10 (R7.8);
# issue 12: 18 (just-in-time grants through kubectl sod, TokenRequests);
# 19: impersonating a ServiceAccount that does not exist (R9.1).
#
#   tests/e2e/run.sh
#
# Builds (build.sh, then `cargo build --release --locked`), brings a cluster up
# in a temp dir (cluster.sh), installs the CRDs, starts `sodguard serve` on free
# loopback ports watching that API server, registers
# tests/e2e/webhook-configuration.yaml pointing at it, and runs the scenarios.
# One line per check on stdout (`ok  name` / `FAIL name: why`), progress on
# stderr, and last the line `e2e: N passed, N failed`; exit 0 only if all pass.
# Everything started here is stopped at the end, also on failure or Ctrl-C; on
# failure the tails of the sodguard and kube-apiserver logs are printed and the
# temp dir (logs) is kept.
#
# Needs: bash, curl, openssl, python3 with PyYAML, kubectl (any recent one; the
# machine's 1.32 warns about the version skew, which is filtered), cargo, go
# (only when build.sh has nothing cached).
#
# Env: SODGUARD_E2E_SCENARIOS  folder of SoDTestCase files (default ../shared/scenarios,
#                              by tests/lib/shared-scenarios.sh: skipped if missing outside CI)
#      SODGUARD_E2E_KEEP=1     keep the temp dir after a clean run too
#      SODGUARD_E2E_ONLY       run only these scenarios, e.g. "1 2 7" (16: the audit, last:
#                              it unregisters the webhook and stops the shared sodguard)
#      SODGUARD_E2E_TMP        parent of the temp dir (default ${TMPDIR:-/tmp})
#      SODGUARD_E2E_S13_ROUNDS  conflict rounds of scenario 13 (default 50)
#      (17: use time, on a second API server started with --authorization-config)
#
# The API server presents a client certificate to every webhook (cluster.sh
# SODGUARD_E2E_WEBHOOK_CLIENT_CERT=1); sodguard requires it only in scenario
# 12 (--client-ca). $CLIENT_CA, $CLIENT_CERT, $CLIENT_KEY name those files, for
# a scenario that posts forged reviews to a sodguard started with --client-ca.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=../lib/shared-scenarios.sh
source "$ROOT/tests/lib/shared-scenarios.sh"
SCENARIOS="${SODGUARD_E2E_SCENARIOS:-}"
ONLY=" ${SODGUARD_E2E_ONLY:-1 2 3 4 5 6 7 8 9 10 11 12 13 15 17 18 19 16} "
START=$SECONDS

WORK="$(mktemp -d "${SODGUARD_E2E_TMP:-${TMPDIR:-/tmp}}/sodguard-e2e.XXXXXX")"
CL="$WORK/cluster"          # cluster.sh's DIR
LOGS="$WORK/logs"           # ours: build, sodguard, gate, cluster.sh
mkdir -p "$LOGS" "$WORK/bin" "$WORK/m"
export KUBECACHEDIR="$WORK/kube-cache"
export PYTHONDONTWRITEBYTECODE=1

PASSED=0 FAILED=0 ABORTED=0
SG_PID="" GATE_PID="" EXTRA_PIDS=""
SG_EXTRA_ARGS=() # more `sodguard serve` flags for start_sodguard
WEBHOOK_DENIAL='admission webhook "validate.sodguard.io" denied the request'
WEBHOOK_CALL_FAILED='failed calling webhook "validate.sodguard.io"'
LABEL='e2e.sodguard.io/suite'

progress() { echo "[e2e +$((SECONDS - START))s] $*" >&2; }
ok() { echo "ok  $1"; PASSED=$((PASSED + 1)); }
fail() { # NAME WHY
  local why; why="$(printf '%s' "$2" | tr '\n' ' ' | tr -s ' ' | cut -c1-700)"
  echo "FAIL $1: $why"; FAILED=$((FAILED + 1))
}
# abort NAME WHY: a failed step nothing after it can do without.
abort() { fail "$1" "$2"; ABORTED=1; exit 1; }
want() { [[ "$ONLY" == *" $1 "* ]]; }

# ------------------------------------------------------------- teardown --

print_tails() {
  local f
  for f in "$LOGS/sodguard.log" "$CL/logs/kube-apiserver.log"; do
    [[ -s "$f" ]] || continue
    echo "----- last lines of $f" >&2
    tail -n 40 "$f" | cut -c1-400 >&2
  done
}

stop_pid() { # PID NAME GRACE-SECONDS
  local pid="$1" i
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < $3 * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    progress "$2 (pid $pid) did not stop in $3s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  return 0
}

teardown() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$SG_PID" sodguard 10; SG_PID=""
  stop_pid "$GATE_PID" gate 5; GATE_PID=""
  local p; for p in $EXTRA_PIDS; do stop_pid "$p" "sodguard replica" 5; done
  ((FAILED > 0 || rc != 0)) && print_tails
  "$HERE/cluster.sh" down "$CL" >>"$LOGS/cluster.log" 2>&1
  [[ -d "$WORK/cluster-authz" ]] && "$HERE/cluster.sh" down "$WORK/cluster-authz" >>"$LOGS/cluster.log" 2>&1
  local clean=0
  ((FAILED == 0 && rc == 0 && ABORTED == 0 && PASSED > 0)) && clean=1
  if ((clean == 1)) && [[ "${SODGUARD_E2E_KEEP:-0}" != 1 ]]; then
    rm -rf "$WORK"
  else
    progress "logs kept in $WORK (sodguard: $LOGS/sodguard.log, kube-apiserver: $CL/logs/kube-apiserver.log)"
  fi
  progress "wall time $((SECONDS - START))s"
  echo "e2e: $PASSED passed, $FAILED failed"
  ((clean == 1)) && exit 0
  exit 1
}
trap teardown EXIT
trap 'fail "run" "interrupted by a signal"; exit 130' INT TERM

# ----------------------------------------------------------------- tools --

# kc ARGS...: the real kubectl, with a timeout; sets RC, OUT, ERR (stderr
# without the client/server version skew warning). Returns RC.
kc() {
  timeout 90 kubectl --request-timeout=30s "$@" >"$WORK/kc.out" 2>"$WORK/kc.err"
  RC=$?
  OUT="$(cat "$WORK/kc.out")"
  ERR="$(grep -v 'exceeds the supported minor version skew' "$WORK/kc.err")"
  return $RC
}
# first line(s) of the last kubectl's stderr, for FAIL lines
kerr() { printf 'rc=%s %s' "$RC" "$(printf '%s' "${ERR:-$OUT}" | head -c 500)"; }
has() { [[ "$1" == *"$2"* ]]; }
# NAME TEXT STRING...: ok when TEXT holds every STRING, else fail naming those missing.
expect_all() {
  local name=$1 text=$2 missing="" s
  shift 2
  for s in "$@"; do
    has "$text" "$s" || missing+=" '$s'"
  done
  [[ -z "$missing" ]] && ok "$name" || fail "$name" "missing$missing in: $text"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" 2>/dev/null || true; }

# --------------------------------------------------------------- manifests --
# Small YAML builders; every object carries the suite label so it can be removed.

y_ns() { printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {%s: "true"}}\n' "$1" "$LABEL"; }
y_sa() { printf 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: %s, namespace: %s, labels: {%s: "true"}}\n' "$2" "$1" "$LABEL"; }
y_role() { # NS NAME RESOURCES VERBS [RESOURCES VERBS]...  (core group)
  local ns="$1" name="$2"; shift 2
  printf 'apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: %s, namespace: %s, labels: {%s: "true"}}\nrules:\n' "$name" "$ns" "$LABEL"
  while (($# >= 2)); do printf "%s\n" "- {apiGroups: [''], resources: [$1], verbs: [$2]}"; shift 2; done
}
y_crole() { # NAME LABELS-FLOW RESOURCES VERBS
  printf 'apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: %s, labels: {%s: "true"%s}}\nrules:\n' "$1" "$LABEL" "$2"
  printf "%s\n" "- {apiGroups: [''], resources: [$3], verbs: [$4]}"
}
y_rb() { # NS NAME ROLEKIND ROLE SA
  printf 'apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: %s, namespace: %s, labels: {%s: "true"}}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: %s, name: %s}\nsubjects:\n- {kind: ServiceAccount, name: %s, namespace: %s}\n' \
    "$2" "$1" "$LABEL" "$3" "$4" "$5" "$1"
}
y_policy() { # NAME RESOURCE ACTIONS DUTY-PREFIX
  cat <<EOF
apiVersion: sodguard.io/v1alpha1
kind: SoDPolicy
metadata: {name: $1, labels: {$LABEL: "true"}}
spec:
  validationActions: [$3]
  duties:
  - name: $4-admin
    permissions: [{apiGroups: [''], resources: [$2], verbs: [create, update, patch, delete, deletecollection]}]
  - name: $4-use
    permissions: [{apiGroups: [''], resources: [$2], verbs: [get, list, watch]}]
EOF
}
SECRET_POLICY=e2e-secret-admin-vs-use
y_secret_policy() { y_policy "$SECRET_POLICY" secrets Deny secret; }

# kf MANIFEST ARGS...: kubectl ARGS -f FILE-WITH-MANIFEST (in this shell, so RC/OUT/ERR stay set)
kf() {
  local m="$1"; shift
  printf '%s\n' "$m" >"$WORK/kf.yaml"
  kc "$@" -f "$WORK/kf.yaml"
}
# apply_as USER MANIFEST: kubectl apply as USER (admin: the kubeconfig's own user, no --as).
apply_as() {
  if [[ "$1" == admin ]]; then kf "$2" apply; else kf "$2" --as "$1" apply; fi
}

# A request sodguard refuses on its own rules, whatever the cluster's state:
# a policy with two duties of the same name (valid for the CRD schema).
PROBE_POLICY='apiVersion: sodguard.io/v1alpha1
kind: SoDPolicy
metadata: {name: e2e-webhook-probe}
spec:
  duties:
  - {name: a, permissions: [{apiGroups: [""], resources: [secrets], verbs: [get]}]}
  - {name: a, permissions: [{apiGroups: [""], resources: [secrets], verbs: [create]}]}'

# wait_webhook active|inactive [TIMEOUT]: until the API server (does not) call(s) sodguard.
wait_webhook() {
  local want="$1" timeout="${2:-30}" t0=$SECONDS
  while ((SECONDS - t0 < timeout)); do
    kf "$PROBE_POLICY" --as alice create --dry-run=server
    if [[ "$want" == active ]] && ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL"; then return 0; fi
    if [[ "$want" == inactive ]] && ((RC == 0)); then return 0; fi
    sleep 0.2
  done
  return 1
}

# ----------------------------------------------------------- sodguard ----

SG_KUBECONFIG=""
start_sodguard() { # [KUBECONFIG]
  local kcfg="${1:-$CL/kubeconfig}"
  echo "=== start $(date -u +%FT%TZ) kubeconfig=$kcfg" >>"$LOGS/sodguard.log"
  NO_COLOR=1 SODGUARD_LOG="${SODGUARD_LOG:-info}" setsid "$WORK/bin/sodguard" serve \
    --kubeconfig "$kcfg" \
    --tls-cert "$CL/pki/webhook.crt" --tls-key "$CL/pki/webhook.key" \
    --listen "127.0.0.1:$WEBHOOK_PORT" --probe-listen "127.0.0.1:$PROBE_PORT" \
    --audit-debounce 500ms --shutdown-grace 2s ${SG_EXTRA_ARGS[@]+"${SG_EXTRA_ARGS[@]}"} \
    </dev/null >>"$LOGS/sodguard.log" 2>&1 &
  SG_PID=$!
}
stop_sodguard() { stop_pid "$SG_PID" sodguard 10; SG_PID=""; }
sg_alive() { [[ -n "$SG_PID" ]] && kill -0 "$SG_PID" 2>/dev/null; }
# wait_probe PATH TIMEOUT: until PROBE/PATH answers 200 (sodguard must stay up).
wait_probe() {
  local t0=$SECONDS
  while ((SECONDS - t0 < $2)); do
    sg_alive || return 1
    [[ "$(http_code "http://127.0.0.1:$PROBE_PORT$1")" == 200 ]] && return 0
    sleep 0.1
  done
  return 1
}

render_webhook_configuration() {
  sed -e "s#__WEBHOOK_URL__#https://127.0.0.1:$WEBHOOK_PORT/validate#" \
      -e "s#__CA_BUNDLE__#$(base64 -w0 <"$CL/pki/ca.crt")#" \
      "$HERE/webhook-configuration.yaml"
}

# ================================================================ setup ===

progress "work dir $WORK"
progress "building kube-apiserver and etcd (build.sh; cached after the first run)"
if ! assignments="$("$HERE/build.sh" 2>>"$LOGS/build.log")"; then
  tail -n 30 "$LOGS/build.log" >&2
  abort "setup: build.sh" "building kube-apiserver/etcd failed (see above)"
fi
eval "$assignments"
export KUBE_APISERVER ETCD
progress "cargo build --release --locked"
if ! (cd "$ROOT" && cargo build --release --locked) >>"$LOGS/build.log" 2>&1; then
  tail -n 30 "$LOGS/build.log" >&2
  abort "setup: cargo build --release --locked" "failed (see above)"
fi
# A copy, so that a concurrent build cannot swap the binary between restarts.
cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/sodguard" "$WORK/bin/sodguard" ||
  abort "setup: sodguard binary" "not found under ${CARGO_TARGET_DIR:-$ROOT/target}/release"
ok "setup: kube-apiserver $("$KUBE_APISERVER" --version 2>/dev/null | awk '{print $2}'), etcd, sodguard built"

command -v kubectl >/dev/null || abort "setup: kubectl" "kubectl not found"
python3 -c 'import yaml' 2>/dev/null || abort "setup: python3" "python3 with PyYAML is needed"

progress "cluster up"
SODGUARD_E2E_WEBHOOK_CLIENT_CERT=1 "$HERE/cluster.sh" up "$CL" >/dev/null 2>>"$LOGS/cluster.log" ||
  abort "setup: cluster up" "$(tail -n 20 "$LOGS/cluster.log")"
# shellcheck disable=SC1091
. "$CL/env"
export KUBECONFIG="$CL/kubeconfig"
CLIENT_CA="${WEBHOOK_CLIENT_CA:-}" CLIENT_CERT="${WEBHOOK_CLIENT_CERT:-}" CLIENT_KEY="${WEBHOOK_CLIENT_KEY:-}"
"$HERE/cluster.sh" cert "$CL" webhook IP:127.0.0.1 DNS:localhost >/dev/null 2>>"$LOGS/cluster.log" ||
  abort "setup: webhook certificate" "$(tail -n 5 "$LOGS/cluster.log")"
ok "setup: kube-apiserver up at $APISERVER_URL"

kc apply -f "$ROOT/manifests/crds/" || abort "setup: CRDs" "$(kerr)"
# kubectl wait fails outright ("status.conditions accessor error") on a CRD
# whose status the API server has not written yet: try again then.
for attempt in 1 2 3 4 5; do
  kc wait --for condition=established --timeout=60s crd/sodpolicies.sodguard.io crd/sodexceptions.sodguard.io \
    crd/accessgrantpolicies.sodguard.io crd/accessgrants.sodguard.io crd/clusteraccessgrants.sodguard.io && break
  has "$ERR" "accessor error" && ((attempt < 5)) || abort "setup: CRDs established" "$(kerr)"
  sleep 1
done
ok "setup: CRDs installed and established"

# alice and bob: real (impersonated) users, so their requests reach the webhook.
kc apply -f - <<EOF || abort "setup: users alice and bob" "$(kerr)"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-alice-cluster-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-bob-cluster-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]
EOF

# Free ports are picked, then bound by sodguard: should another process take
# one in between, sodguard exits (address in use) and we try other ports.
for attempt in 1 2 3; do
  WEBHOOK_PORT="$(free_port)"; PROBE_PORT="$(free_port)"
  while [[ "$PROBE_PORT" == "$WEBHOOK_PORT" ]]; do PROBE_PORT="$(free_port)"; done
  progress "starting sodguard (webhook 127.0.0.1:$WEBHOOK_PORT, probes 127.0.0.1:$PROBE_PORT)"
  start_sodguard
  wait_probe /readyz 60 && break
  sg_alive && abort "setup: sodguard ready" "no /readyz 200 within 60s"
  stop_sodguard
  ((attempt == 3)) && abort "setup: sodguard ready" "sodguard exited: $(tail -n 5 "$LOGS/sodguard.log")"
done
WEBHOOK_URL="https://127.0.0.1:$WEBHOOK_PORT/validate"
PROBE="http://127.0.0.1:$PROBE_PORT"
ok "setup: sodguard serve ready (watching the cluster)"

render_webhook_configuration >"$WORK/webhook-configuration.yaml"
kc apply -f "$WORK/webhook-configuration.yaml" || abort "setup: webhook registered" "$(kerr)"
wait_webhook active 30 || abort "setup: webhook active" "the API server does not call sodguard: $(kerr)"
ok "setup: ValidatingWebhookConfiguration registered, the API server calls sodguard"

# A namespace with a ServiceAccount holding secret-admin and the
# objects for the conflicting and harmless bindings (through the webhook, as
# alice: admitted changes are in sodguard's index at once).
# seed NS: SAs api + web, Roles secret-writer/secret-reader, RB api-writes.
seed() {
  local ns="$1"
  apply_as admin "$(y_ns "$ns")" || return 1
  apply_as alice "$(y_sa "$ns" api; echo ---; y_sa "$ns" web; echo ---
    y_role "$ns" secret-writer secrets create,update; echo ---
    y_role "$ns" secret-reader secrets get,list)" || return 1
  apply_as alice "$(y_rb "$ns" api-writes Role secret-writer api)"
}

# ============================================================ scenarios ===

# ---- 1. a RoleBinding completing a conflict, with kubectl apply ----------
DENIAL1=""
if want 1 || want 2; then
  progress "scenario 1: kubectl apply of a conflicting RoleBinding"
  if ! { apply_as alice "$(y_secret_policy)" && seed e2e-s1; }; then
    fail "1 setup" "$(kerr)"
  else
    y_rb e2e-s1 api-reads Role secret-reader api >"$WORK/m/s1-conflict.yaml"
    y_rb e2e-s1 web-reads Role secret-reader web >"$WORK/m/s1-harmless.yaml"
  fi
fi
if want 1 && [[ -f "$WORK/m/s1-conflict.yaml" ]]; then
  kc --as alice apply -f "$WORK/m/s1-conflict.yaml"
  if ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL"; then
    ok "1 kubectl apply of a RoleBinding completing a conflict is rejected by the webhook"
    DENIAL1="${ERR#*"$WEBHOOK_DENIAL"}"
    progress "kubectl said: $ERR"
    expect_all "1 stderr names the policy, the subject, the duties and their bindings" "$ERR" \
      "SoDPolicy $SECRET_POLICY" "ServiceAccount:e2e-s1:api" "secret-admin" "secret-use" \
      "RoleBinding e2e-s1/api-writes" "RoleBinding e2e-s1/api-reads"
  else
    fail "1 kubectl apply of a RoleBinding completing a conflict is rejected by the webhook" "$(kerr)"
  fi
  kc get rolebinding api-reads -n e2e-s1
  ((RC != 0)) && has "$ERR" NotFound && ok "1 the rejected RoleBinding does not exist" ||
    fail "1 the rejected RoleBinding does not exist" "kubectl get: $(kerr) $OUT"
fi

# ---- 2. the same with --dry-run=server -----------------------------------
if want 2 && [[ -f "$WORK/m/s1-conflict.yaml" ]]; then
  progress "scenario 2: --dry-run=server"
  kc --as alice apply --dry-run=server -f "$WORK/m/s1-conflict.yaml"
  if ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL"; then
    if [[ -z "$DENIAL1" || "${ERR#*"$WEBHOOK_DENIAL"}" == "$DENIAL1" ]]; then
      ok "2 --dry-run=server of the conflicting RoleBinding is rejected the same way"
    else
      fail "2 --dry-run=server of the conflicting RoleBinding is rejected the same way" \
        "the message differs from the real request's: $ERR"
    fi
  else
    fail "2 --dry-run=server of the conflicting RoleBinding is rejected the same way" "$(kerr)"
  fi
  kc get rolebinding api-reads -n e2e-s1
  ((RC != 0)) && has "$ERR" NotFound && ok "2 the dry-run creates nothing" ||
    fail "2 the dry-run creates nothing" "kubectl get: $(kerr) $OUT"
  kc --as alice apply --dry-run=server -f "$WORK/m/s1-harmless.yaml"
  ((RC == 0)) && has "$OUT" "server dry run" && ok "2 a harmless RoleBinding passes --dry-run=server" ||
    fail "2 a harmless RoleBinding passes --dry-run=server" "$(kerr) $OUT"
  kc get rolebinding web-reads -n e2e-s1
  ((RC != 0)) && has "$ERR" NotFound && ok "2 the harmless dry-run binding is not created" ||
    fail "2 the harmless dry-run binding is not created" "kubectl get: $(kerr) $OUT"
fi

# ---- 3. a Warn policy --------------------------------------------------------
if want 3; then
  progress "scenario 3: a Warn policy"
  if ! { apply_as alice "$(y_policy e2e-config-admin-vs-use configmaps Warn config)" &&
         apply_as admin "$(y_ns e2e-s3)" &&
         apply_as alice "$(y_sa e2e-s3 app; echo ---; y_role e2e-s3 cm-writer configmaps create,update
                           echo ---; y_role e2e-s3 cm-reader configmaps get,list)" &&
         apply_as alice "$(y_rb e2e-s3 app-writes Role cm-writer app)"; }; then
    fail "3 setup" "$(kerr)"
  else
    apply_as alice "$(y_rb e2e-s3 app-reads Role cm-reader app)"
    want_warning="Warning: SoDPolicy e2e-config-admin-vs-use: ServiceAccount:e2e-s3:app would hold config-admin + config-use in namespace e2e-s3"
    ((RC == 0)) && has "$ERR" "$want_warning" && ok "3 kubectl prints Warning: with the violation of the Warn policy" ||
      fail "3 kubectl prints Warning: with the violation of the Warn policy" "$(kerr) $OUT"
    kc get rolebinding app-reads -n e2e-s3
    ((RC == 0)) && ok "3 the RoleBinding is created" || fail "3 the RoleBinding is created" "$(kerr)"
  fi
fi

# ---- 4. Role update, aggregation by labels, ServiceAccount creation ----------
if want 4; then
  progress "scenario 4: role update, aggregated ClusterRole, ServiceAccount creation"
  AGG="e2e.sodguard.io/aggregate-to-team-edit"
  if ! { apply_as alice "$(y_secret_policy)" &&
         apply_as admin "$(y_ns e2e-s4)" &&
         apply_as alice "$(y_sa e2e-s4 app; echo ---; y_sa e2e-s4 agg; echo ---
           y_role e2e-s4 secret-writer secrets create,update; echo ---
           y_role e2e-s4 secret-reader secrets get,list; echo ---
           y_role e2e-s4 config-reader configmaps get)" &&
         apply_as alice "$(y_rb e2e-s4 app-writes Role secret-writer app; echo ---
           y_rb e2e-s4 app-config Role config-reader app)"; }; then
    fail "4 setup (role update)" "$(kerr)"
  else
    # (a) the Role bound to app for configmaps also grants reading Secrets
    apply_as alice "$(y_role e2e-s4 config-reader configmaps get secrets get)"
    if ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL" && has "$ERR" "ServiceAccount:e2e-s4:app" &&
       has "$ERR" "Role e2e-s4/config-reader"; then
      ok "4 a Role update that completes a conflict is rejected"
    else
      fail "4 a Role update that completes a conflict is rejected" "$(kerr)"
    fi
    kc get role config-reader -n e2e-s4 -o 'jsonpath={.rules[*].resources}'
    ((RC == 0)) && ! has "$OUT" secrets && ok "4 the Role is unchanged" ||
      fail "4 the Role is unchanged" "$(kerr) rules: $OUT"
  fi

  # (b) a ClusterRole joins an aggregated ClusterRole through its labels
  AGGREGATOR="apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-team-edit, labels: {$LABEL: \"true\"}}
aggregationRule:
  clusterRoleSelectors:
  - matchLabels: {$AGG: \"true\"}
rules: []"
  if ! { apply_as alice "$AGGREGATOR" &&
         apply_as alice "$(y_crole e2e-team-secret-write ", $AGG: \"true\"" secrets create)" &&
         apply_as alice "$(y_crole e2e-plain-secret-read "" secrets get)" &&
         apply_as alice "$(y_rb e2e-s4 agg-team-edit ClusterRole e2e-team-edit agg)"; }; then
    fail "4 setup (aggregation)" "$(kerr)"
  else
    apply_as alice "$(y_crole e2e-team-secret-read ", $AGG: \"true\"" secrets get)"
    if ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL" && has "$ERR" "ServiceAccount:e2e-s4:agg"; then
      ok "4 a new ClusterRole joining an aggregated ClusterRole by its labels is rejected"
    else
      fail "4 a new ClusterRole joining an aggregated ClusterRole by its labels is rejected" "$(kerr)"
    fi
    kc get clusterrole e2e-team-secret-read
    ((RC != 0)) && has "$ERR" NotFound && ok "4 the rejected ClusterRole does not exist" ||
      fail "4 the rejected ClusterRole does not exist" "$(kerr) $OUT"
    kc --as alice label clusterrole e2e-plain-secret-read "$AGG=true"
    if ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL" && has "$ERR" "ServiceAccount:e2e-s4:agg"; then
      ok "4 labelling an existing ClusterRole into an aggregated ClusterRole is rejected"
    else
      fail "4 labelling an existing ClusterRole into an aggregated ClusterRole is rejected" "$(kerr) $OUT"
    fi
    kc get clusterrole e2e-plain-secret-read -o "jsonpath={.metadata.labels}"
    ((RC == 0)) && ! has "$OUT" aggregate-to-team-edit && ok "4 the ClusterRole keeps its labels" ||
      fail "4 the ClusterRole keeps its labels" "$(kerr) labels: $OUT"
  fi

  # (c) bindings that already name a missing ServiceAccount: creating it activates them
  if ! apply_as alice "$(y_rb e2e-s4 late-writes Role secret-writer late; echo ---
                          y_rb e2e-s4 late-reads Role secret-reader late)"; then
    fail "4 setup (latent bindings are admitted while the ServiceAccount is missing)" "$(kerr)"
  else
    kc --as alice create serviceaccount late -n e2e-s4
    if ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL" && has "$ERR" "ServiceAccount:e2e-s4:late"; then
      ok "4 creating a ServiceAccount that existing bindings make a violator is rejected"
    else
      fail "4 creating a ServiceAccount that existing bindings make a violator is rejected" "$(kerr) $OUT"
    fi
    kc get serviceaccount late -n e2e-s4
    ((RC != 0)) && has "$ERR" NotFound && ok "4 the ServiceAccount does not exist" ||
      fail "4 the ServiceAccount does not exist" "$(kerr) $OUT"
  fi
fi

# ---- 5. repairing drift is always allowed ------------------------------------
if want 5; then
  progress "scenario 5: deleting a violating binding"
  # The violation is made behind the webhook's back (as admin: system:masters).
  if ! { apply_as alice "$(y_secret_policy)" && seed e2e-s5 &&
         apply_as admin "$(y_rb e2e-s5 api-reads Role secret-reader api)"; }; then
    fail "5 setup" "$(kerr)"
  else
    # The same binary as a kubectl plugin reads the current context's cluster.
    ln -sf "$WORK/bin/sodguard" "$WORK/bin/kubectl-sod"
    plugin() { # ARGS...: `kubectl sod ARGS` (plugins take no kubectl flags before their name)
      PATH="$WORK/bin:$PATH" timeout 90 kubectl sod "$@" >"$WORK/kc.out" 2>"$WORK/kc.err"
      RC=$?
      OUT="$(cat "$WORK/kc.out")"
      ERR="$(cat "$WORK/kc.err")"
    }
    plugin check -o json
    ((RC == 1)) && has "$OUT" '"subject": "ServiceAccount:e2e-s5:api"' &&
      ok "5 kubectl sod check reports the violation from the live cluster (exit 1)" ||
      fail "5 kubectl sod check reports the violation from the live cluster (exit 1)" "$(kerr) $OUT"
    plugin explain ServiceAccount:e2e-s5:api
    ((RC == 0)) && has "$OUT" "RoleBinding e2e-s5/api-reads" && has "$OUT" "VIOLATES" &&
      ok "5 kubectl sod explain shows the subject's paths from the live cluster" ||
      fail "5 kubectl sod explain shows the subject's paths from the live cluster" "$(kerr) $OUT"
    apply_as alice "$(y_role e2e-s5 secret-reader secrets get)"
    ((RC == 0)) && ok "5 an update that only removes rights from a violator's Role is allowed" ||
      fail "5 an update that only removes rights from a violator's Role is allowed" "$(kerr)"
    kc --as alice delete rolebinding api-reads -n e2e-s5
    ((RC == 0)) && ok "5 deleting the violating RoleBinding is allowed" ||
      fail "5 deleting the violating RoleBinding is allowed" "$(kerr)"
    kc get rolebinding api-reads -n e2e-s5
    ((RC != 0)) && has "$ERR" NotFound && ok "5 the violating RoleBinding is gone" ||
      fail "5 the violating RoleBinding is gone" "$(kerr) $OUT"
  fi
fi

# ---- 6. the SoDException flow with real users ----------------------------------
if want 6; then
  progress "scenario 6: SoDException requested by alice, approved by bob, expiring"
  X=e2e-s6-api-rotation
  EXPIRY_S=30
  y_exception() { # REQUESTED-BY EXPIRES-AT
    cat <<EOF
apiVersion: sodguard.io/v1alpha1
kind: SoDException
metadata: {name: $X, labels: {$LABEL: "true"}}
spec:
  policy: $SECRET_POLICY
  subject: {kind: ServiceAccount, namespace: e2e-s6, name: api}
  expiresAt: "$2"
  justification: e2e rotation of the signing key
  ticket: E2E-6
  requestedBy: $1
EOF
  }
  approve_as() { # USER RECORDED-USER
    kc --as "$1" patch sodexception "$X" --type=json \
      -p "[{\"op\":\"add\",\"path\":\"/spec/approvals/-\",\"value\":{\"user\":\"$2\",\"at\":\"$(date -u +%FT%TZ)\"}}]"
  }
  if ! { apply_as alice "$(y_secret_policy)" && seed e2e-s6; }; then
    fail "6 setup" "$(kerr)"
  else
    y_rb e2e-s6 api-reads Role secret-reader api >"$WORK/m/s6-conflict.yaml"
    kc --as alice create -f "$WORK/m/s6-conflict.yaml"
    ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL" && ok "6 without an exception the binding is rejected" ||
      fail "6 without an exception the binding is rejected" "$(kerr)"

    kf "$(y_exception bob "$(date -u -d "+${EXPIRY_S} seconds" +%FT%TZ)")" --as alice create
    ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL" && has "$ERR" requestedBy &&
      ok "6 alice cannot file an exception in bob's name (requestedBy)" ||
      fail "6 alice cannot file an exception in bob's name (requestedBy)" "$(kerr)"

    EXPIRES_EPOCH=$(($(date +%s) + EXPIRY_S))
    kf "$(y_exception alice "$(date -u -d "@$EXPIRES_EPOCH" +%FT%TZ)")" --as alice create
    if ((RC == 0)); then
      ok "6 alice requests an exception (expires in ${EXPIRY_S}s)"
      kc --as alice create -f "$WORK/m/s6-conflict.yaml"
      ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL" && ok "6 an unapproved exception excuses nothing" ||
        fail "6 an unapproved exception excuses nothing" "$(kerr)"
      approve_as alice alice
      ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL" && has "$ERR" "cannot approve" &&
        ok "6 alice approving her own request is refused" ||
        fail "6 alice approving her own request is refused" "$(kerr)"
      approve_as bob alice
      ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL" && has "$ERR" "approving user" &&
        ok "6 bob cannot record an approval in alice's name" ||
        fail "6 bob cannot record an approval in alice's name" "$(kerr)"
      approve_as bob bob
      ((RC == 0)) && ok "6 bob approves" || fail "6 bob approves" "$(kerr)"
      kc --as alice create -f "$WORK/m/s6-conflict.yaml"
      if ((RC == 0)) && has "$ERR" "excused by SoDException $X"; then
        ok "6 with bob's approval the binding is admitted, with a warning naming the exception"
      elif (($(date +%s) >= EXPIRES_EPOCH)); then
        fail "6 with bob's approval the binding is admitted, with a warning naming the exception" \
          "the steps took longer than the exception's ${EXPIRY_S}s: $(kerr)"
      else
        fail "6 with bob's approval the binding is admitted, with a warning naming the exception" "$(kerr) $OUT"
      fi
      kc --as alice delete rolebinding api-reads -n e2e-s6
      wait_s=$((EXPIRES_EPOCH - $(date +%s) + 1))
      ((wait_s > 0)) && { progress "waiting ${wait_s}s for the exception to expire"; sleep "$wait_s"; }
      kc --as alice create -f "$WORK/m/s6-conflict.yaml"
      ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL" && ok "6 after expiry the same binding is rejected again" ||
        fail "6 after expiry the same binding is rejected again" "$(kerr)"
    else
      fail "6 alice requests an exception (expires in ${EXPIRY_S}s)" "$(kerr)"
    fi
  fi
fi

# ---- cleanup of 1–6: the replay needs a cluster without our policies and bindings
cleanup_suite() {
  local ns
  for ns in e2e-s1 e2e-s3 e2e-s4 e2e-s5 e2e-s6 e2e-s8; do
    kc delete rolebindings,roles,serviceaccounts --all -n "$ns" --ignore-not-found --wait=true
  done
  kc delete clusterroles,clusterrolebindings,sodexceptions,sodpolicies -l "$LABEL" --ignore-not-found --wait=true
  kc get sodpolicies,sodexceptions -o name
  [[ -z "$OUT" ]]
}

# ---- 7. every shared scenario, replayed ---------------------------------------
if want 7 && [[ -z "$SCENARIOS" ]]; then
  SCENARIOS="$(shared_scenarios_dir "$ROOT")"
  case $? in
    1) ONLY="${ONLY/ 7 / }" ;; # outside CI: scenario 7 skipped (said on stderr)
    2) fail "7 replay" "the shared scenarios are missing (see stderr)"; ONLY="${ONLY/ 7 / }" ;;
  esac
fi
if want 7; then
  progress "scenario 7: replaying $SCENARIOS"
  cleanup_suite || fail "7 setup: objects of scenarios 1-6 removed" "$(kerr) left: $OUT"
  timeout 900 python3 "$HERE/replay.py" --cluster-dir "$CL" --probe-url "$PROBE" --webhook-url "$WEBHOOK_URL" \
    --scenarios "$SCENARIOS" --pending "$ROOT/tests/pending-scenarios.txt" >"$WORK/replay.out" 2>"$LOGS/replay.err"
  py_rc=$?
  cat "$WORK/replay.out"
  n_ok=$(grep -c '^ok  ' "$WORK/replay.out"); n_fail=$(grep -c '^FAIL ' "$WORK/replay.out")
  PASSED=$((PASSED + n_ok)); FAILED=$((FAILED + n_fail))
  if ((py_rc != 0 && n_fail == 0)); then
    fail "7 replay" "replay.py exited with $py_rc ($( ((py_rc == 124)) && echo "timed out after 900s")): $(tail -n 20 "$LOGS/replay.err")"
  fi
  [[ -s "$LOGS/replay.err" ]] && { echo "----- replay.py stderr" >&2; tail -n 20 "$LOGS/replay.err" >&2; }
fi

# ---- 8. faults -------------------------------------------------------------------
if want 8; then
  progress "scenario 8: faults"
  # State for "all is normal" checks: a Deny policy and api holding secret-admin (as admin).
  if ! { apply_as admin "$(y_secret_policy)" && apply_as admin "$(y_ns e2e-s8)" &&
         apply_as admin "$(y_sa e2e-s8 api; echo ---; y_sa e2e-s8 web; echo ---
           y_role e2e-s8 secret-writer secrets create,update; echo ---
           y_role e2e-s8 secret-reader secrets get,list; echo ---
           y_rb e2e-s8 api-writes Role secret-writer api)"; }; then
    fail "8 setup" "$(kerr)"
  fi
  y_rb e2e-s8 api-reads Role secret-reader api >"$WORK/m/s8-conflict.yaml"
  harmless_n=0
  # next_harmless: HARMLESS = a new RoleBinding that completes no conflict (web-reads-N)
  next_harmless() {
    harmless_n=$((harmless_n + 1))
    HARMLESS="$(y_rb e2e-s8 "web-reads-$harmless_n" Role secret-reader web)"
  }
  all_normal() { # NAME
    next_harmless
    kf "$HARMLESS" --as alice create
    if ((RC != 0)); then fail "$1" "a harmless RoleBinding was not admitted: $(kerr)"; return; fi
    kc --as alice create -f "$WORK/m/s8-conflict.yaml"
    if ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL"; then ok "$1"
    else fail "$1" "the conflicting RoleBinding was not denied by the webhook: $(kerr)"; fi
  }

  # (a) sodguard down, failurePolicy Fail
  stop_sodguard
  next_harmless; kf "$HARMLESS" --as alice create
  ((RC != 0)) && has "$ERR" "$WEBHOOK_CALL_FAILED" &&
    ok "8 sodguard stopped: an RBAC write is rejected with the webhook error (failurePolicy Fail)" ||
    fail "8 sodguard stopped: an RBAC write is rejected with the webhook error (failurePolicy Fail)" "$(kerr)"
  progress "kubectl said: $ERR"
  kc get rolebinding "web-reads-$harmless_n" -n e2e-s8
  ((RC != 0)) && has "$ERR" NotFound && ok "8 sodguard stopped: nothing is created" ||
    fail "8 sodguard stopped: nothing is created" "$(kerr) $OUT"

  # (b) restart while the API server is unreachable (a gate in front of it): not ready
  GATE_CLOSED="$WORK/gate.closed"; GATE_PORT_FILE="$WORK/gate.port"
  touch "$GATE_CLOSED"
  setsid python3 "$HERE/gate.py" "127.0.0.1:${APISERVER_URL##*:}" "$GATE_CLOSED" "$GATE_PORT_FILE" \
    </dev/null >>"$LOGS/gate.log" 2>&1 &
  GATE_PID=$!
  for ((i = 0; i < 100; i++)); do [[ -s "$GATE_PORT_FILE" ]] && break; sleep 0.1; done
  if [[ ! -s "$GATE_PORT_FILE" ]]; then
    fail "8 setup: gate in front of the API server" "gate.py did not start: $(tail -n 5 "$LOGS/gate.log")"
  else
    sed "s#server: $APISERVER_URL#server: https://127.0.0.1:$(cat "$GATE_PORT_FILE")#" \
      "$CL/kubeconfig" >"$WORK/kubeconfig-gated"
    start_sodguard "$WORK/kubeconfig-gated"
    if wait_probe /healthz 30; then
      sleep 1 # its watchers have tried and failed at least once
      code="$(http_code "$PROBE/readyz")"
      [[ "$code" == 503 ]] && ok "8 restarted sodguard that cannot list yet: /readyz 503" ||
        fail "8 restarted sodguard that cannot list yet: /readyz 503" "/readyz answered $code"
      review='{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"e2e-8","kind":{"group":"rbac.authorization.k8s.io","version":"v1","kind":"RoleBinding"},"operation":"CREATE","userInfo":{"username":"alice"},"object":'"$(printf '%s' "$HARMLESS" | python3 -c 'import json,sys,yaml; print(json.dumps(yaml.safe_load(sys.stdin)))')"'}}'
      code="$(http_code --cacert "$CL/pki/ca.crt" -H 'Content-Type: application/json' -d "$review" "$WEBHOOK_URL")"
      [[ "$code" == 503 ]] && ok "8 before /readyz the webhook answers 503" ||
        fail "8 before /readyz the webhook answers 503" "POST /validate answered $code"
      next_harmless; kf "$HARMLESS" --as alice create
      ((RC != 0)) && has "$ERR" "$WEBHOOK_CALL_FAILED" &&
        ok "8 before /readyz nothing is admitted through the API server" ||
        fail "8 before /readyz nothing is admitted through the API server" "$(kerr)"
      progress "kubectl said: $ERR"
      rm -f "$GATE_CLOSED"
      t0=$SECONDS
      if wait_probe /readyz 90; then
        ok "8 API server reachable again: sodguard ready after $((SECONDS - t0))s"
        all_normal "8 after /readyz all is normal (harmless admitted, conflict denied)"
      else
        fail "8 API server reachable again: sodguard ready" "no /readyz 200 within 90s"
      fi
    else
      fail "8 restarted sodguard that cannot list yet: /readyz 503" "sodguard did not start (/healthz)"
    fi
  fi
  stop_sodguard
  stop_pid "$GATE_PID" gate 5; GATE_PID=""

  # (c) kube-apiserver restart with the webhook registered and sodguard down
  BOOTSTRAP_ROLE=system:heapster # any bootstrap ClusterRole nothing here uses
  kc delete clusterrole "$BOOTSTRAP_ROLE"
  ((RC == 0)) || fail "8 setup: delete a bootstrap ClusterRole" "$(kerr)"
  t0=$SECONDS
  if SODGUARD_E2E_READY_TIMEOUT=120 "$HERE/cluster.sh" restart-apiserver "$CL" >>"$LOGS/cluster.log" 2>&1; then
    ok "8 kube-apiserver restarted with the webhook registered and sodguard down: /readyz ok ($((SECONDS - t0))s)"
  else
    fail "8 kube-apiserver restarted with the webhook registered and sodguard down: /readyz ok" \
      "$(tail -n 15 "$LOGS/cluster.log")"
  fi
  kc get clusterrole "$BOOTSTRAP_ROLE" -o name
  ((RC == 0)) && ok "8 its RBAC bootstrap recreated the deleted ClusterRole $BOOTSTRAP_ROLE" ||
    fail "8 its RBAC bootstrap recreated the deleted ClusterRole $BOOTSTRAP_ROLE" "$(kerr)"
  next_harmless; kf "$HARMLESS" --as alice create
  ((RC != 0)) && has "$ERR" "$WEBHOOK_CALL_FAILED" &&
    ok "8 the webhook stays in force: alice's write is rejected while sodguard is down" ||
    fail "8 the webhook stays in force: alice's write is rejected while sodguard is down" "$(kerr)"
  start_sodguard
  if wait_probe /readyz 60 && wait_webhook active 30; then
    all_normal "8 sodguard started again: all is normal"
  else
    fail "8 sodguard started again: all is normal" "not ready / not called: $(kerr)"
  fi
fi

# ---- 9. load -------------------------------------------------------------------
if want 9; then
  progress "scenario 9: load"
  timeout 300 python3 "$HERE/load.py" --cluster-dir "$CL" --probe-url "$PROBE" --count 200 --clients 4 \
    >"$WORK/load.out" 2>"$LOGS/load.err"
  py_rc=$?
  cat "$WORK/load.out"
  n_ok=$(grep -c '^ok  ' "$WORK/load.out"); n_fail=$(grep -c '^FAIL ' "$WORK/load.out")
  PASSED=$((PASSED + n_ok)); FAILED=$((FAILED + n_fail))
  if ((py_rc != 0 && n_fail == 0)); then
    fail "9 load" "load.py exited with $py_rc ($( ((py_rc == 124)) && echo "timed out after 300s")): $(tail -n 20 "$LOGS/load.err")"
  fi
fi

# ---- 10. failed and forged requests never make sodguard more permissive (R7.8)
# The API server calls the webhook before it stores anything: a CREATE of a
# name that exists is admitted, then fails with AlreadyExists. And /validate
# answers whoever reaches it: here requests are forged with curl. Neither may
# make a later decision more permissive; the conflicting binding stays denied.
if want 10; then
  progress "scenario 10: CREATE of existing names and forged reviews do not weaken decisions"
  # sg_count KIND OPERATION DECISION: admission requests sodguard counted so far
  sg_count() {
    curl -s --max-time 5 "$PROBE/metrics" | python3 -c '
import sys
k, o, d = sys.argv[1:4]
n = 0.0
for line in sys.stdin:
    if line.startswith("sodguard_admission_requests_total{") and all(
            f"{a}=\"{b}\"" in line for a, b in (("kind", k), ("operation", o), ("decision", d))):
        n += float(line.split()[-1])
print(int(n))' "$1" "$2" "$3"
  }
  # forge OPERATION USER OBJECT-JSON OLD-JSON: an AdmissionReview posted straight
  # to sodguard, as anyone who can reach it could; OUT is its response.
  forge() {
    python3 - "$@" >"$WORK/forged.json" <<'PY'
import json, sys
op, user, obj, old = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
of = obj or old
group, _, version = of["apiVersion"].rpartition("/")
print(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
    "uid": "e2e-forged", "kind": {"group": group, "version": version, "kind": of["kind"]},
    "operation": op, "userInfo": {"username": user, "groups": ["system:authenticated"]},
    "object": obj, "oldObject": old}}))
PY
    OUT="$(curl -s --max-time 10 --cacert "$CL/pki/ca.crt" -H 'content-type: application/json' \
      --data-binary @"$WORK/forged.json" "$WEBHOOK_URL")"
    has "$OUT" '"allowed":true'
  }
  to_json() { python3 -c 'import sys, yaml, json; print(json.dumps(yaml.safe_load(sys.stdin)))'; }
  still_denied() { # WHAT
    kc --as alice create -f "$WORK/m/s10-conflict.yaml"
    ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL" && has "$ERR" "ServiceAccount:e2e-s10:api" &&
      ok "10 after $1 the conflicting RoleBinding is still rejected" ||
      fail "10 after $1 the conflicting RoleBinding is still rejected" "$(kerr)"
  }
  if ! { apply_as alice "$(y_secret_policy)" && seed e2e-s10; }; then
    fail "10 setup" "$(kerr)"
  else
    y_rb e2e-s10 api-reads Role secret-reader api >"$WORK/m/s10-conflict.yaml"
    kc --as alice create -f "$WORK/m/s10-conflict.yaml"
    ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL" && ok "10 the conflicting RoleBinding is rejected" ||
      fail "10 the conflicting RoleBinding is rejected" "$(kerr)"

    # (a) kubectl create of the existing RoleBinding name, without subjects
    n0="$(sg_count RoleBinding CREATE allowed)"
    kf "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: api-writes, namespace: e2e-s10, labels: {$LABEL: \"true\"}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: secret-writer}
subjects: []" --as alice create
    n1="$(sg_count RoleBinding CREATE allowed)"
    ((RC != 0)) && has "$ERR" AlreadyExists && ((n1 > n0)) &&
      ok "10 kubectl create of an existing RoleBinding name without subjects: admitted by sodguard, then AlreadyExists" ||
      fail "10 kubectl create of an existing RoleBinding name without subjects: admitted by sodguard, then AlreadyExists" "sodguard admitted $((n1 - n0)); $(kerr)"
    still_denied "a CREATE of an existing RoleBinding name with subjects: []"

    # (b) kubectl create of the existing Role name, without rules
    n0="$(sg_count Role CREATE allowed)"
    kf "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: secret-writer, namespace: e2e-s10, labels: {$LABEL: \"true\"}}
rules: []" --as alice create
    n1="$(sg_count Role CREATE allowed)"
    ((RC != 0)) && has "$ERR" AlreadyExists && ((n1 > n0)) &&
      ok "10 kubectl create of an existing Role name without rules: admitted by sodguard, then AlreadyExists" ||
      fail "10 kubectl create of an existing Role name without rules: admitted by sodguard, then AlreadyExists" "sodguard admitted $((n1 - n0)); $(kerr)"
    still_denied "a CREATE of an existing Role name with rules: []"

    # (c) forged reviews straight to /validate
    writes="$(y_rb e2e-s10 api-writes Role secret-writer api | to_json)"
    forge DELETE mallory null "$writes" && ok "10 a forged DELETE of RoleBinding api-writes is answered allowed" ||
      fail "10 a forged DELETE of RoleBinding api-writes is answered allowed" "$OUT"
    still_denied "a forged DELETE of the RoleBinding"
    narrowed="$(y_role e2e-s10 secret-writer secrets get | to_json)"
    real="$(y_role e2e-s10 secret-writer secrets create,update | to_json)"
    forge UPDATE mallory "$narrowed" "$real" && ok "10 a forged UPDATE narrowing Role secret-writer is answered allowed" ||
      fail "10 a forged UPDATE narrowing Role secret-writer is answered allowed" "$OUT"
    still_denied "a forged UPDATE narrowing the Role"
    deny="$(y_secret_policy | to_json)"
    forge DELETE mallory null "$deny" && ok "10 a forged DELETE of the SoDPolicy is answered allowed" ||
      fail "10 a forged DELETE of the SoDPolicy is answered allowed" "$OUT"
    still_denied "a forged DELETE of the SoDPolicy"
    audit="$(y_policy "$SECRET_POLICY" secrets Audit secret | to_json)"
    forge UPDATE mallory "$audit" "$deny" && ok "10 a forged UPDATE of the SoDPolicy to Audit is answered allowed" ||
      fail "10 a forged UPDATE of the SoDPolicy to Audit is answered allowed" "$OUT"
    still_denied "a forged UPDATE of the SoDPolicy to Audit"
    # One expiry for the old and the new object: two calls of date can fall
    # on two sides of a second, and then the update changes the spec too.
    s10_expires="$(date -u -d '+1 hour' +%FT%TZ)"
    exception() { # APPROVALS-FLOW
      printf '%s\n' "apiVersion: sodguard.io/v1alpha1
kind: SoDException
metadata: {name: e2e-s10-forged}
spec:
  policy: $SECRET_POLICY
  subject: {kind: ServiceAccount, namespace: e2e-s10, name: api}
  expiresAt: \"$s10_expires\"
  justification: forged
  requestedBy: alice
  approvals: $1" | to_json
    }
    forge UPDATE bob "$(exception "[{user: bob, at: \"$(date -u +%FT%TZ)\"}]")" "$(exception "[]")" &&
      ok "10 a forged approval of a SoDException that does not exist is answered allowed" ||
      fail "10 a forged approval of a SoDException that does not exist is answered allowed" "$OUT"
    still_denied "a forged approval of a SoDException"

    kc get rolebinding api-reads -n e2e-s10
    ((RC != 0)) && has "$ERR" NotFound && ok "10 the conflicting RoleBinding does not exist" ||
      fail "10 the conflicting RoleBinding does not exist" "$(kerr) $OUT"
    kc get rolebinding api-writes -n e2e-s10 -o 'jsonpath={.subjects[*].name}'
    ((RC == 0)) && [[ "$OUT" == api ]] && ok "10 RoleBinding api-writes is unchanged" ||
      fail "10 RoleBinding api-writes is unchanged" "$(kerr) subjects: $OUT"
  fi
fi

# ---- 11. only ServiceAccount token Secrets reach sodguard (issue 8, finding 9) --
if want 11; then
  progress "scenario 11: Secrets other than ServiceAccount tokens never reach sodguard"
  # secret_requests: Secret admission requests sodguard has answered since it started.
  secret_requests() {
    curl -s --max-time 5 "$PROBE/metrics" |
      awk '/^sodguard_admission_requests_total\{/ && /kind="Secret"/ { n += $NF } END { print n + 0 }'
  }
  y_secret() { # NAME TYPE VALUE
    printf 'apiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: e2e-s11, labels: {%s: "true"}' "$1" "$LABEL"
    if [[ "$2" == kubernetes.io/service-account-token ]]; then
      printf ', annotations: {kubernetes.io/service-account.name: tok}'
    fi
    printf '}\ntype: %s\nstringData: {value: "%s"}\n' "$2" "$3"
  }
  if ! { apply_as admin "$(y_ns e2e-s11)" && apply_as admin "$(y_sa e2e-s11 tok)"; }; then
    fail "11 setup" "$(kerr)"
  elif ! sg_alive; then
    fail "11 setup" "sodguard is not running"
  else
    n0="$(secret_requests)"
    apply_as alice "$(y_secret plain Opaque one)" && apply_as alice "$(y_secret plain Opaque two)"
    rc_plain=$RC
    n1="$(secret_requests)"
    ((rc_plain == 0)) && [[ "$n1" == "$n0" ]] &&
      ok "11 an Opaque Secret's create and update never reach sodguard (Secret requests stay at $n1)" ||
      fail "11 an Opaque Secret's create and update never reach sodguard" "$(kerr); Secret requests $n0 -> $n1"
    # The counter does count what reaches sodguard: a token Secret does.
    apply_as alice "$(y_secret tok-token kubernetes.io/service-account-token x)"
    rc_token=$RC
    n2="$(secret_requests)"
    ((n2 > n1)) && { ((rc_token == 0)) || has "$ERR" "$WEBHOOK_DENIAL"; } &&
      ok "11 a ServiceAccount token Secret is sent to sodguard (Secret requests $n1 -> $n2)" ||
      fail "11 a ServiceAccount token Secret is sent to sodguard" "$(kerr); Secret requests $n1 -> $n2"

    # sodguard down, failurePolicy Fail in force.
    stop_sodguard
    apply_as alice "$(y_secret plain-while-down Opaque three)"
    ((RC == 0)) && ok "11 sodguard stopped (failurePolicy Fail): an Opaque Secret is still created" ||
      fail "11 sodguard stopped (failurePolicy Fail): an Opaque Secret is still created" "$(kerr)"
    apply_as alice "$(y_secret plain Opaque four)"
    ((RC == 0)) && ok "11 sodguard stopped: an Opaque Secret is still updated" ||
      fail "11 sodguard stopped: an Opaque Secret is still updated" "$(kerr)"
    apply_as alice "$(y_secret tok-token-while-down kubernetes.io/service-account-token y)"
    ((RC != 0)) && has "$ERR" "$WEBHOOK_CALL_FAILED" &&
      ok "11 sodguard stopped: a ServiceAccount token Secret is refused (the webhook call fails)" ||
      fail "11 sodguard stopped: a ServiceAccount token Secret is refused (the webhook call fails)" "$(kerr)"
    start_sodguard
    if wait_probe /readyz 60 && wait_webhook active 30; then
      ok "11 sodguard started again and called by the API server"
    else
      fail "11 sodguard started again and called by the API server" "not ready / not called: $(kerr)"
    fi
  fi
  kc delete namespace e2e-s11 --wait=false
fi

# ---- 15. ServiceAccounts of a namespace the webhook excludes (issue 8, finding 6, R7.10) --
if want 15; then
  progress "scenario 15: a binding naming a missing ServiceAccount of an excluded namespace"
  OPS=e2e-s15-ops
  y_rb_to() { # NS NAME ROLE SA-NS SA: a RoleBinding to a Role, for a ServiceAccount of another namespace
    printf 'apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: %s, namespace: %s, labels: {%s: "true"}}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: %s}\nsubjects:\n- {kind: ServiceAccount, name: %s, namespace: %s}\n' \
      "$2" "$1" "$LABEL" "$3" "$5" "$4"
  }
  # The webhook configuration excludes $OPS, and sodguard is told so (the
  # chart feeds both from webhook.excludeNamespaces).
  kc patch validatingwebhookconfiguration sodguard --type=json -p "[{\"op\":\"add\",\"path\":\"/webhooks/0/namespaceSelector\",\"value\":{\"matchExpressions\":[{\"key\":\"kubernetes.io/metadata.name\",\"operator\":\"NotIn\",\"values\":[\"$OPS\"]}]}}]" ||
    fail "15 setup: the webhook excludes $OPS" "$(kerr)"
  stop_sodguard
  export SODGUARD_EXCLUDED_NAMESPACES="$OPS"
  start_sodguard
  unset SODGUARD_EXCLUDED_NAMESPACES
  if ! { wait_probe /readyz 60 && wait_webhook active 30; }; then
    fail "15 setup: sodguard restarted with --excluded-namespaces" "not ready / not called: $(kerr)"
  elif ! { apply_as alice "$(y_secret_policy)" && apply_as admin "$(y_ns e2e-s15)" && apply_as admin "$(y_ns "$OPS")" &&
           apply_as alice "$(y_role e2e-s15 secret-writer secrets create,update; echo ---
                             y_role e2e-s15 secret-reader secrets get,list)"; }; then
    fail "15 setup" "$(kerr)"
  else
    kf "$(y_rb_to e2e-s15 bot-writes secret-writer "$OPS" bot)" --as alice create
    ((RC == 0)) && ok "15 a binding giving one duty to the missing ServiceAccount $OPS:bot is admitted" ||
      fail "15 a binding giving one duty to the missing ServiceAccount $OPS:bot is admitted" "$(kerr)"
    kf "$(y_rb_to e2e-s15 bot-reads secret-reader "$OPS" bot)" --as alice create
    ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL" && has "$ERR" "ServiceAccount:$OPS:bot" &&
      ok "15 the binding completing its conflict is denied although $OPS:bot does not exist (its creation is never checked)" ||
      fail "15 the binding completing its conflict is denied although $OPS:bot does not exist (its creation is never checked)" "$(kerr)"
    # Why: the webhook never sees a ServiceAccount created there.
    kf "$(y_sa "$OPS" bot)" --as alice create
    ((RC == 0)) && ok "15 the ServiceAccount's creation in $OPS is not checked (the webhook excludes it)" ||
      fail "15 the ServiceAccount's creation in $OPS is not checked (the webhook excludes it)" "$(kerr)"
  fi
  # Back to the suite's configuration.
  kc patch validatingwebhookconfiguration sodguard --type=json -p '[{"op":"remove","path":"/webhooks/0/namespaceSelector"}]'
  stop_sodguard
  start_sodguard
  wait_probe /readyz 60 && wait_webhook active 30 || fail "15 teardown: sodguard restarted" "not ready / not called: $(kerr)"
  kc delete namespace e2e-s15 "$OPS" --wait=false
  kc delete sodpolicy "$SECRET_POLICY" --ignore-not-found
fi

# ---- 12. --client-ca: only the API server's client certificate gets through -----
if want 12; then
  progress "scenario 12: sodguard with --client-ca"
  if [[ -z "$CLIENT_CERT" ]]; then
    fail "12 setup" "the cluster has no webhook client certificate (cluster.sh SODGUARD_E2E_WEBHOOK_CLIENT_CERT=1)"
  elif ! { apply_as alice "$(y_secret_policy)" && seed e2e-s12; }; then
    fail "12 setup" "$(kerr)"
  else
    stop_sodguard
    SG_EXTRA_ARGS=(--client-ca "$CLIENT_CA")
    start_sodguard
    if wait_probe /readyz 60 && wait_webhook active 30; then
      ok "12 sodguard with --client-ca is called by the API server (its AdmissionConfiguration presents a client certificate)"
      kf "$(y_rb e2e-s12 api-reads Role secret-reader api)" --as alice create
      ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL" &&
        ok "12 kubectl: the conflicting RoleBinding is denied by the webhook" ||
        fail "12 kubectl: the conflicting RoleBinding is denied by the webhook" "$(kerr)"
      kf "$(y_rb e2e-s12 web-reads Role secret-reader web)" --as alice create
      ((RC == 0)) && ok "12 kubectl: a harmless RoleBinding is admitted" ||
        fail "12 kubectl: a harmless RoleBinding is admitted" "$(kerr)"
      # A forged review: a DELETE of the binding that holds half of the conflict.
      forged='{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"e2e-12","kind":{"group":"rbac.authorization.k8s.io","version":"v1","kind":"RoleBinding"},"name":"api-writes","namespace":"e2e-s12","operation":"DELETE","userInfo":{"username":"mallory"},"oldObject":'"$(y_rb e2e-s12 api-writes Role secret-writer api | python3 -c 'import json,sys,yaml; print(json.dumps(yaml.safe_load(sys.stdin)))')"'}}'
      post() { curl -s -o "$WORK/s12.out" -w '%{http_code}' --max-time 5 --cacert "$CL/pki/ca.crt" \
                 -H 'Content-Type: application/json' -d "$forged" "$@" "$WEBHOOK_URL" 2>"$WORK/s12.err"; }
      code="$(post)"; rc=$?
      [[ "$code" == 000 ]] && ((rc != 0)) &&
        ok "12 curl POST /validate without a client certificate: the TLS handshake is refused" ||
        fail "12 curl POST /validate without a client certificate: the TLS handshake is refused" "HTTP $code curl rc $rc $(cat "$WORK/s12.out")"
      code="$(post --cert "$CL/pki/admin.crt" --key "$CL/pki/admin.key")"; rc=$?
      [[ "$code" == 000 ]] && ((rc != 0)) &&
        ok "12 curl with a certificate of another CA (the cluster admin's): refused" ||
        fail "12 curl with a certificate of another CA (the cluster admin's): refused" "HTTP $code curl rc $rc"
      code="$(post --cert "$CLIENT_CERT" --key "$CLIENT_KEY")"
      [[ "$code" == 200 ]] && ok "12 curl with the API server's client certificate: answered" ||
        fail "12 curl with the API server's client certificate: answered" "HTTP $code $(cat "$WORK/s12.out")"
    else
      fail "12 sodguard with --client-ca is called by the API server (its AdmissionConfiguration presents a client certificate)" \
        "not ready or not called: $(kerr) $(tail -n 5 "$LOGS/sodguard.log")"
    fi
    stop_sodguard
    SG_EXTRA_ARGS=()
    start_sodguard
    { wait_probe /readyz 60 && wait_webhook active 30; } || fail "12 sodguard restarted without --client-ca" "$(kerr)"
  fi
fi

# ---- 13. two replicas with leader election: one decision order ---------------------
if want 13; then
  progress "scenario 13: two replicas, leader election on a Lease, forwarding to the leader"
  S13_ROUNDS="${SODGUARD_E2E_S13_ROUNDS:-50}"
  # One certificate for both replicas, as the chart's Secret is: serving and
  # client usage, signed by the cluster CA (their peer CA).
  SODGUARD_E2E_CERT_EKU=serverAuth,clientAuth "$HERE/cluster.sh" cert "$CL" peer IP:127.0.0.1 DNS:localhost \
    >/dev/null 2>>"$LOGS/cluster.log" || fail "13 setup: peer certificate" "$(tail -n 5 "$LOGS/cluster.log")"
  sas=""
  for ((i = 1; i <= S13_ROUNDS + 5; i++)); do sas+="$(y_sa e2e-s13 "s13-$i")"$'\n---\n'; done
  if ! { apply_as alice "$(y_secret_policy)" && seed e2e-s13 && apply_as admin "$sas"; }; then
    fail "13 setup" "$(kerr)"
  else
    # start_replica N ELECTION(0|1): webhook, probe and peer ports in S13_W/S13_PR/S13_P.
    declare -a S13_W S13_PR S13_P S13_PID
    start_replica() {
      local n="$1" extra=()
      if [[ "$2" == 1 ]]; then
        extra=(--leader-election --lease-namespace default --lease-name e2e-s13 --identity "replica-$n"
               --peer-listen "127.0.0.1:${S13_P[n]}" --peer-address "127.0.0.1:${S13_P[n]}"
               --peer-server-name localhost --peer-ca "$CL/pki/ca.crt" --lease-duration 8s --lease-grace 4s)
      fi
      echo "=== start $(date -u +%FT%TZ) election=$2" >>"$LOGS/sodguard-s13-$n.log"
      NO_COLOR=1 SODGUARD_LOG=info setsid "$WORK/bin/sodguard" serve --kubeconfig "$CL/kubeconfig" \
        --tls-cert "$CL/pki/peer.crt" --tls-key "$CL/pki/peer.key" \
        --listen "127.0.0.1:${S13_W[n]}" --probe-listen "127.0.0.1:${S13_PR[n]}" \
        --shutdown-grace 2s "${extra[@]}" \
        </dev/null >>"$LOGS/sodguard-s13-$n.log" 2>&1 &
      S13_PID[n]=$!
      EXTRA_PIDS+=" ${S13_PID[n]}"
    }
    s13_ready() { # N...: until each /readyz answers 200
      local t0=$SECONDS n
      for n in "$@"; do
        until [[ "$(http_code "http://127.0.0.1:${S13_PR[n]}/readyz")" == 200 ]]; do
          ((SECONDS - t0 < 60)) && kill -0 "${S13_PID[n]}" 2>/dev/null || return 1
          sleep 0.2
        done
      done
    }
    s13_stop() { local n; for n in 1 2; do stop_pid "${S13_PID[n]:-}" "replica $n" 5; done; }
    replica_args() { local n; for n in 1 2; do printf -- '--replica replica-%s,%s,%s,%s ' "$n" "${S13_W[n]}" "${S13_PR[n]}" "${S13_PID[n]}"; done; }
    for n in 1 2; do S13_W[n]="$(free_port)"; S13_PR[n]="$(free_port)"; S13_P[n]="$(free_port)"; done

    # Control: without leader election the race is real (the test can fail).
    start_replica 1 0; start_replica 2 0
    if s13_ready 1 2; then
      # shellcheck disable=SC2046
      timeout 300 python3 "$HERE/replicas.py" --ca "$CL/pki/ca.crt" --ns e2e-s13 --sa-prefix s13- \
        --rounds 5 --expect-bypass $(replica_args) >"$WORK/s13-control.out" 2>>"$LOGS/replicas.err"
      cat "$WORK/s13-control.out"
    else
      fail "13 control replicas ready" "$(tail -n 5 "$LOGS/sodguard-s13-1.log")"
    fi
    s13_stop
    n_ok=$(grep -c '^ok  ' "$WORK/s13-control.out" 2>/dev/null); n_fail=$(grep -c '^FAIL ' "$WORK/s13-control.out" 2>/dev/null)
    PASSED=$((PASSED + n_ok)); FAILED=$((FAILED + n_fail))

    # With leader election (new processes: the control run's admitted halves are gone).
    for n in 1 2; do S13_W[n]="$(free_port)"; S13_PR[n]="$(free_port)"; S13_P[n]="$(free_port)"; done
    start_replica 1 1; start_replica 2 1
    if s13_ready 1 2; then
      ok "13 two replicas with --leader-election ready (one leads, one follows)"
      # shellcheck disable=SC2046
      timeout 600 python3 "$HERE/replicas.py" --ca "$CL/pki/ca.crt" --ns e2e-s13 --sa-prefix s13- \
        --rounds "$S13_ROUNDS" --kill $(replica_args) >"$WORK/s13.out" 2>>"$LOGS/replicas.err"
      py_rc=$?
      cat "$WORK/s13.out"
      grep '^# ' "$WORK/s13.out" | sed 's/^# /[s13] /' >&2
      n_ok=$(grep -c '^ok  ' "$WORK/s13.out"); n_fail=$(grep -c '^FAIL ' "$WORK/s13.out")
      PASSED=$((PASSED + n_ok)); FAILED=$((FAILED + n_fail))
      ((py_rc != 0 && n_fail == 0)) && fail "13 replicas.py" "exited with $py_rc: $(tail -n 20 "$LOGS/replicas.err")"
      kc get lease e2e-s13 -n default -o jsonpath='{.spec.holderIdentity}'
      ((RC == 0)) && has "$OUT" "replica-" && has "$OUT" "@127.0.0.1:" &&
        ok "13 the Lease names the leader and its peer address ($OUT)" ||
        fail "13 the Lease names the leader and its peer address" "$(kerr) $OUT"
    else
      fail "13 two replicas with --leader-election ready (one leads, one follows)" \
        "$(tail -n 5 "$LOGS/sodguard-s13-1.log") / $(tail -n 5 "$LOGS/sodguard-s13-2.log")"
    fi
    s13_stop
  fi
fi

# ---- 17. use time (issue 14, R13): the authorization webhook before RBAC --------
# A second API server (its own etcd), started with the AuthorizationConfiguration
# `sodguard authz-config` prints, so the other scenarios keep their plain RBAC.
if want 17; then
  progress "scenario 17: use-time authorization webhook on a second API server"
  CL2="$WORK/cluster-authz"; UT="$WORK/usetime"; mkdir -p "$UT"
  UT_NS=e2e-ut UT_TTL=3
  UT_PORT="$(free_port)"; UT_PROBE="$(free_port)"
  while [[ "$UT_PROBE" == "$UT_PORT" ]]; do UT_PROBE="$(free_port)"; done
  # sodguard's serving pair for this API server, from a CA of its own.
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=sodguard-authz-ca \
    -keyout "$UT/ca.key" -out "$UT/ca.crt" 2>/dev/null
  openssl req -new -newkey rsa:2048 -nodes -subj /CN=sodguard -keyout "$UT/tls.key" -out "$UT/tls.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$UT/tls.ext"
  openssl x509 -req -in "$UT/tls.csr" -CA "$UT/ca.crt" -CAkey "$UT/ca.key" -CAcreateserial \
    -days 1 -extfile "$UT/tls.ext" -out "$UT/tls.crt" 2>/dev/null
  cat >"$UT/policy.yaml" <<EOF
apiVersion: sodguard.io/v1alpha1
kind: SoDPolicy
metadata: {name: e2e-use-time}
spec:
  validationActions: [Audit]
  useTime: {action: Deny}
  duties:
  - name: secret-read
    permissions: [{apiGroups: [''], resources: [secrets], verbs: [get, list]}]
  - name: secret-write
    permissions: [{apiGroups: [''], resources: [secrets], verbs: [update]}]
EOF
  ut_get() { # SA: kubectl --as the ServiceAccount get the Secret (sets RC/OUT/ERR)
    kc --kubeconfig "$CL2/kubeconfig" --as "system:serviceaccount:$UT_NS:$1" -n "$UT_NS" get secret s1 -o name
  }
  # ut_until ok|denied SA TIMEOUT: until the SA's get is allowed, or refused by sodguard.
  ut_until() {
    local t0=$SECONDS
    while ((SECONDS - t0 < $3)); do
      ut_get "$2"
      if [[ "$1" == ok ]] && ((RC == 0)); then return 0; fi
      if [[ "$1" == denied ]] && ((RC != 0)) && has "$ERR" "sodguard"; then return 0; fi
      sleep 0.3
    done
    return 1
  }
  if ! "$WORK/bin/sodguard" authz-config -f "$UT/policy.yaml" --full \
      --url "https://127.0.0.1:$UT_PORT/authorize" --ca-file "$UT/ca.crt" \
      --webhook-kubeconfig "$UT/webhook.kubeconfig" --write-kubeconfig "$UT/webhook.kubeconfig" \
      --unauthorized-ttl "${UT_TTL}s" --timeout 2s >"$UT/authz.yaml" 2>"$UT/authz.err"; then
    fail "17 authz-config" "$(cat "$UT/authz.err")"
  elif ! SODGUARD_E2E_AUTHZ_CONFIG="$UT/authz.yaml" "$HERE/cluster.sh" up "$CL2" >/dev/null 2>>"$LOGS/cluster-authz.log"; then
    fail "17 API server with --authorization-config" "$(tail -n 20 "$LOGS/cluster-authz.log"; tail -n 20 "$CL2/logs/kube-apiserver.log" 2>/dev/null)"
  else
    # sodguard is not running: the webhook fails, NoOpinion, RBAC decides.
    ok "17 bootstrap: the API server with sodguard chained before RBAC (sodguard down) comes up ready"
    APISERVER2_URL="$(. "$CL2/env"; echo "$APISERVER_URL")"
    K2=(--kubeconfig "$CL2/kubeconfig")
    cat >"$UT/objects.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $UT_NS}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: violator, namespace: $UT_NS}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: innocent, namespace: $UT_NS}
---
apiVersion: v1
kind: Secret
metadata: {name: s1, namespace: $UT_NS}
stringData: {k: v}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: secret-reader, namespace: $UT_NS}
rules: [{apiGroups: [''], resources: [secrets], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: secret-writer, namespace: $UT_NS}
rules: [{apiGroups: [''], resources: [secrets], verbs: [update]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: readers, namespace: $UT_NS}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: secret-reader}
subjects:
- {kind: ServiceAccount, name: violator, namespace: $UT_NS}
- {kind: ServiceAccount, name: innocent, namespace: $UT_NS}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: violator-writes, namespace: $UT_NS}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: secret-writer}
subjects: [{kind: ServiceAccount, name: violator, namespace: $UT_NS}]
EOF
    if ! kc "${K2[@]}" apply -f "$ROOT/manifests/crds/" ||
       ! kc "${K2[@]}" wait --for condition=established --timeout=60s crd/sodpolicies.sodguard.io crd/sodexceptions.sodguard.io ||
       ! kc "${K2[@]}" apply -f "$UT/policy.yaml" ||
       ! kc "${K2[@]}" apply -f "$UT/objects.yaml"; then
      fail "17 setup: CRDs, an Audit policy with useTime Deny, the violation" "$(kerr)"
    else
      ut_get violator
      if ((RC == 0)); then ok "17 sodguard down: the violator's get secrets falls through to RBAC (NoOpinion)"
      else fail "17 sodguard down: RBAC decides" "$(kerr)"; fi
      echo "=== start $(date -u +%FT%TZ) (scenario 17)" >>"$LOGS/sodguard-authz.log"
      NO_COLOR=1 SODGUARD_LOG=info setsid "$WORK/bin/sodguard" serve --kubeconfig "$CL2/kubeconfig" \
        --tls-cert "$UT/tls.crt" --tls-key "$UT/tls.key" \
        --listen "127.0.0.1:$UT_PORT" --probe-listen "127.0.0.1:$UT_PROBE" --shutdown-grace 1s \
        </dev/null >>"$LOGS/sodguard-authz.log" 2>&1 &
      UT_PID=$!; EXTRA_PIDS+=" $UT_PID"
      t0=$SECONDS
      until [[ "$(http_code "http://127.0.0.1:$UT_PROBE/readyz")" == 200 ]] || ((SECONDS - t0 > 60)); do sleep 0.2; done
      if ut_until denied violator $((UT_TTL + 15)); then
        ok "17 kubectl --as the violator: get secrets refused ($(printf '%s' "$ERR" | grep -o 'sodguard: [^;]*' | head -1))"
      else fail "17 kubectl --as the violator: get secrets refused by sodguard" "$(kerr)"; fi
      ut_get innocent
      if ((RC == 0)); then ok "17 the innocent ServiceAccount with the same binding still gets the Secret"
      else fail "17 innocent ServiceAccount untouched" "$(kerr)"; fi
      # A real request with the ServiceAccount's own token (TokenRequest).
      if kc "${K2[@]}" -n "$UT_NS" create token violator --duration 10m; then
        code="$(curl -s -o "$UT/token-get.json" -w '%{http_code}' --max-time 10 --cacert "$CL2/pki/ca.crt" \
          -H "Authorization: Bearer $OUT" "$APISERVER2_URL/api/v1/namespaces/$UT_NS/secrets/s1" 2>/dev/null)"
        if [[ "$code" == 403 ]] && grep -q 'sodguard' "$UT/token-get.json"; then
          ok "17 the violator's own token: GET secrets answers 403 with sodguard's reason"
        else fail "17 the violator's own token refused" "HTTP $code $(head -c 400 "$UT/token-get.json")"; fi
      else fail "17 create token" "$(kerr)"; fi
      # Repair: the conflicting binding goes; access is back within the TTL.
      kc "${K2[@]}" -n "$UT_NS" delete rolebinding violator-writes
      t0=$SECONDS
      if ut_until ok violator $((UT_TTL + 10)); then
        ok "17 repair: after deleting the conflicting binding the violator reads again after $((SECONDS - t0))s (unauthorizedTTL ${UT_TTL}s)"
      else fail "17 repair restores access within the TTL" "$(kerr)"; fi
      # The violation again, then sodguard stopped: RBAC alone decides.
      kc "${K2[@]}" -n "$UT_NS" create rolebinding violator-writes --role secret-writer \
        --serviceaccount "$UT_NS:violator"
      if ut_until denied violator $((UT_TTL + 15)); then
        stop_pid "$UT_PID" "sodguard (scenario 17)" 5
        t0=$SECONDS
        if ut_until ok violator $((UT_TTL + 15)); then
          ok "17 sodguard stopped: the violator's request falls through to RBAC after $((SECONDS - t0))s (failurePolicy NoOpinion)"
        else fail "17 sodguard stopped: NoOpinion" "$(kerr)"; fi
      else fail "17 the violation again is refused again" "$(kerr)"; fi
      if "$HERE/cluster.sh" restart-apiserver "$CL2" >/dev/null 2>>"$LOGS/cluster-authz.log"; then
        ok "17 bootstrap: the API server restarts ready while sodguard is down"
      else fail "17 restart with sodguard down" "$(tail -n 10 "$LOGS/cluster-authz.log")"; fi
    fi
  fi
  "$HERE/cluster.sh" down "$CL2" >>"$LOGS/cluster-authz.log" 2>&1
fi

# ---- 18. just-in-time grants and short-lived tokens (issue 12, R10, R8.4) ---------
# sodguard runs as the chart runs it with grants.enabled: as its own
# ServiceAccount (not system:masters, so its own binding writes pass the
# webhook too) with the chart's RBAC, `--grants` and `--grant-controller-user`.
# Users act through the kubectl plugin with kubectl's --as/--as-group.
if want 18; then
  progress "scenario 18: just-in-time grants through kubectl sod, TokenRequests"
  NS17=e2e-s17 SGNS17=e2e-sodguard SGUSER17=system:serviceaccount:e2e-sodguard:sodguard
  LEADS=(--as-group e2e-leads)
  cp "$WORK/bin/sodguard" "$WORK/bin/kubectl-sod"
  # sod ARGS...: `kubectl sod ARGS` (kubectl runs kubectl-sod from PATH); sets RC/OUT/ERR.
  sod() {
    PATH="$WORK/bin:$PATH" timeout 90 kubectl sod "$@" >"$WORK/kc.out" 2>"$WORK/kc.err"
    RC=$?
    OUT="$(cat "$WORK/kc.out")"
    ERR="$(grep -v 'exceeds the supported minor version skew' "$WORK/kc.err")"
    return $RC
  }
  poll() { # SECONDS CMD...: until CMD succeeds
    local t0=$SECONDS limit="$1"; shift
    until "$@"; do ((SECONDS - t0 >= limit)) && return 1; sleep 0.5; done
  }
  binding_of() { kc get rolebinding "sodguard-grant-$1" -n "$NS17" -o name; }
  no_binding_of() { kc get rolebinding "sodguard-grant-$1" -n "$NS17" --ignore-not-found -o name && [[ -z "$OUT" ]]; }
  phase_is() { kc get accessgrant "$1" -n "$NS17" -o jsonpath='{.status.phase}' && [[ "$OUT" == "$2" ]]; }
  web_reads_secrets() { kc auth can-i get secrets -n "$NS17" --as "system:serviceaccount:$NS17:web"; [[ "$OUT" == yes ]]; }
  request() { # NAME SA DURATION [MORE]...: as alice
    local name="$1" sa="$2" d="$3"; shift 3
    sod grant request "$name" -n "$NS17" --subject "ServiceAccount:$NS17:$sa" --role Role/secret-reader \
      --duration "$d" --reason "e2e scenario 18" --ticket CHG-18 --as alice "$@"
  }
  approve() { sod grant approve "$1" -n "$NS17" --as "$2" "${LEADS[@]}"; } # NAME USER
  denied() { ((RC != 0)) && has "$ERR$OUT" "$WEBHOOK_DENIAL"; }
  check() { # NAME CONDITION...: ok/fail on the exit of CONDITION
    local name="$1"; shift
    if "$@"; then ok "$name"; else fail "$name" "$(kerr)"; fi
  }
  start_s17_sodguard() { # as the ServiceAccount, with the grant controller
    SG_EXTRA_ARGS=(--grants --grant-controller-user "$SGUSER17" --audit-interval 0s)
    start_sodguard "$WORK/sodguard-sa.kubeconfig"
    SG_EXTRA_ARGS=()
    wait_probe /readyz 60 && wait_webhook active 30
  }

  s17_setup() {
    apply_as admin "$(y_ns "$NS17"; echo ---; y_ns "$SGNS17"; echo ---; y_sa "$SGNS17" sodguard)" || return 1
    # The chart's ClusterRoles (templates/rbac.yaml with watchSecrets, rbac-grants.yaml).
    apply_as admin "$(cat <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-sodguard, labels: {$LABEL: "true"}}
rules:
- {apiGroups: [rbac.authorization.k8s.io], resources: [roles, clusterroles, rolebindings, clusterrolebindings], verbs: [get, list, watch]}
- {apiGroups: [''], resources: [serviceaccounts, namespaces, secrets], verbs: [get, list, watch]}
- {apiGroups: [sodguard.io], resources: [sodpolicies, sodexceptions, accessgrantpolicies, accessgrants, clusteraccessgrants], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-sodguard-grants, labels: {$LABEL: "true"}}
rules:
- {apiGroups: [sodguard.io], resources: [accessgrants/status, clusteraccessgrants/status], verbs: [patch]}
- {apiGroups: [rbac.authorization.k8s.io], resources: [rolebindings, clusterrolebindings], verbs: [create, delete]}
- {apiGroups: [rbac.authorization.k8s.io], resources: [roles, clusterroles], verbs: [bind]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-sodguard, labels: {$LABEL: "true"}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-sodguard}
subjects: [{kind: ServiceAccount, name: sodguard, namespace: $SGNS17}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-sodguard-grants, labels: {$LABEL: "true"}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-sodguard-grants}
subjects: [{kind: ServiceAccount, name: sodguard, namespace: $SGNS17}]
---
# Approvers: what the plugin needs (read a grant, replace it), given to the group.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-grant-approver, labels: {$LABEL: "true"}}
rules:
- {apiGroups: [sodguard.io], resources: [accessgrants, clusteraccessgrants, sodexceptions], verbs: [get, list, update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-grant-approver, labels: {$LABEL: "true"}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-grant-approver}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: e2e-leads}]
---
# Kubelets may ask for tokens (what the Node authorizer allows them; this
# API server runs RBAC only), so that sodguard, not RBAC, is what is tested.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-node-tokens, labels: {$LABEL: "true"}}
rules:
- {apiGroups: [''], resources: [serviceaccounts/token], verbs: [create]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-node-tokens, labels: {$LABEL: "true"}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-node-tokens}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: 'system:nodes'}]
---
apiVersion: sodguard.io/v1alpha1
kind: SoDPolicy
metadata: {name: e2e-s17-secrets, labels: {$LABEL: "true"}}
spec:
  duties:
  - name: secret-admin
    permissions: [{apiGroups: [''], resources: [secrets], verbs: [create, update, patch, delete, deletecollection]}]
  - name: secret-use
    permissions: [{apiGroups: [''], resources: [secrets], verbs: [get, list, watch]}]
  credentials:
    tokenRequests: {action: Deny, maxExpiration: 1h}
---
apiVersion: sodguard.io/v1alpha1
kind: AccessGrantPolicy
metadata: {name: e2e-s17-oncall, labels: {$LABEL: "true"}}
spec:
  roles: [secret-reader]
  namespaces: [$NS17]
  maxDuration: 1h
  approvalsRequired: 2
  approverGroups: [e2e-leads]
  breakGlass: {allowed: true, maxDuration: 1h}
---
apiVersion: v1
kind: Pod
metadata: {name: job-1, namespace: $NS17}
spec:
  serviceAccountName: api
  automountServiceAccountToken: false
  containers: [{name: c, image: none}]
EOF
)" || return 1
    apply_as admin "$(y_sa "$NS17" api; echo ---; y_sa "$NS17" web; echo ---
      y_role "$NS17" secret-writer secrets create,update; echo ---
      y_role "$NS17" secret-reader secrets get,list; echo ---
      y_rb "$NS17" api-writes Role secret-writer api)" || return 1
    kc create token sodguard -n "$SGNS17" --duration 2h || return 1
    local k=(--kubeconfig "$WORK/sodguard-sa.kubeconfig")
    kubectl config "${k[@]}" set-cluster e2e --server "$APISERVER_URL" --certificate-authority "$CL/pki/ca.crt" --embed-certs >/dev/null &&
      kubectl config "${k[@]}" set-credentials sodguard --token "$OUT" >/dev/null &&
      kubectl config "${k[@]}" set-context e2e --cluster e2e --user sodguard >/dev/null &&
      kubectl config "${k[@]}" use-context e2e >/dev/null || return 1
    stop_sodguard
    start_s17_sodguard
  }

  if ! s17_setup; then
    fail "18 setup: sodguard as its ServiceAccount with --grants, policies, approvers" "$(kerr) $(tail -n 5 "$LOGS/sodguard.log")"
  else
    ok "18 setup: sodguard runs as $SGUSER17 with --grants (the chart's RBAC)"

    # -- alice requests, bob and carol approve; the binding works, then expires.
    request web-reads web 20s
    check "18 alice requests a grant with kubectl sod grant request --as alice" eval '((RC == 0)) && has "$OUT" "as alice"'
    kc get accessgrant web-reads -n "$NS17" -o jsonpath='{.spec.requestedBy}'
    check "18 the grant's requestedBy is the impersonated user (alice)" eval '[[ "$OUT" == alice ]]'
    approve web-reads alice
    check "18 alice (in the approver group) cannot approve her own grant" eval 'denied && has "$ERR" "requested this grant"'
    approve web-reads bob
    check "18 bob approves with kubectl sod grant approve --as bob --as-group e2e-leads" eval '((RC == 0)) && has "$OUT" "as bob"'
    kc --as bob "${LEADS[@]}" patch accessgrant web-reads -n "$NS17" --type merge -p '{"spec":{"duration":"1h"}}'
    check "18 bob cannot change the grant he approved (frozen)" eval 'denied && has "$ERR" "frozen"'
    sleep 2
    check "18 one approval of two: pending, no binding" eval 'phase_is web-reads Pending && no_binding_of web-reads && ! web_reads_secrets'
    approve web-reads carol
    check "18 carol, only in the approver group, approves" eval '((RC == 0)) && has "$OUT" "as carol"'
    if poll 15 binding_of web-reads; then
      ok "18 with two approvals the RoleBinding sodguard-grant-web-reads appears"
      kc get rolebinding sodguard-grant-web-reads -n "$NS17" \
        -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].controller} {.metadata.labels.sodguard\.io/grant} {.roleRef.name} {.subjects[0].name}'
      check "18 the binding has the grant as owner, the sodguard.io/grant label, the role and subject" \
        eval '[[ "$OUT" == "AccessGrant/web-reads/true web-reads secret-reader web" ]]'
      check "18 the binding works: kubectl auth can-i get secrets --as the ServiceAccount says yes" web_reads_secrets
      poll 10 phase_is web-reads Active
      check "18 status: phase Active with activatedAt and expiresAt" \
        eval 'kc get accessgrant web-reads -n "$NS17" -o jsonpath="{.status.activatedAt} {.status.expiresAt}" && [[ "$OUT" == ????-*" "????-* ]]'
      kc --as alice delete rolebinding sodguard-grant-web-reads -n "$NS17"
      check "18 alice cannot delete the grant's binding" eval 'denied && has "$ERR" "only sodguard"'
      kc --as alice label rolebinding sodguard-grant-web-reads -n "$NS17" sodguard.io/grant-
      check "18 alice cannot take the label off the grant's binding" eval 'denied && has "$ERR" "only sodguard"'
      kc --as alice patch rolebinding sodguard-grant-web-reads -n "$NS17" --type json \
        -p '[{"op":"replace","path":"/subjects/0/name","value":"api"}]'
      check "18 alice cannot change the grant's binding (its subject)" eval 'denied && has "$ERR" "only sodguard"'
      kf "$(y_rb "$NS17" sodguard-grant-forged Role secret-reader web | sed "s#labels: {#labels: {sodguard.io/grant: web-reads, #")" --as alice create
      check "18 alice cannot create a binding labelled sodguard.io/grant" eval 'denied && has "$ERR" "only sodguard"'
      check "18 after its 20s the binding is deleted, the grant Expired, the ServiceAccount can no longer read" \
        eval 'poll 40 no_binding_of web-reads && poll 10 phase_is web-reads Expired && ! web_reads_secrets'
    else
      fail "18 with two approvals the RoleBinding sodguard-grant-web-reads appears" "$(kerr) $(kc get accessgrant web-reads -n "$NS17" -o yaml; echo "$OUT")"
    fi

    # -- a grant that would complete a conflict
    request api-reads api 20s
    check "18 a grant completing a conflict (api writes secrets, would read them) is refused, naming the policy and subject" \
      eval 'denied && has "$ERR" "SoDPolicy e2e-s17-secrets" && has "$ERR" "ServiceAccount:$NS17:api"'

    # -- an approver who is the grant's subject
    sod grant request bobs -n "$NS17" --subject User:bob --role Role/secret-reader --duration 10m \
      --reason "e2e scenario 18" --as alice
    approve bobs bob
    check "18 bob cannot approve a grant whose subject he is" eval 'denied && has "$ERR" "is its subject"'

    # -- revocation by deleting the grant
    request revoked web 10m && approve revoked bob && approve revoked carol
    if poll 15 binding_of revoked; then
      sod grant revoke revoked -n "$NS17" --as alice
      check "18 kubectl sod grant revoke deletes the grant" eval '((RC == 0))'
      check "18 revocation: the binding is deleted with its grant" poll 15 no_binding_of revoked
    else
      fail "18 revocation: the binding of an approved grant appears" "$(kerr)"
    fi

    # -- break-glass: active at once, reviewed by someone else
    request glass web 30s --break-glass
    check "18 a break-glass grant is bound at once, without approvals" eval '((RC == 0)) && poll 15 binding_of glass && poll 10 phase_is glass Active'
    sod grant review glass -n "$NS17" --as alice "${LEADS[@]}" --outcome Accepted --notes "mine"
    check "18 the requester cannot review her break-glass grant" eval 'denied && has "$ERR" "requested this grant"'
    sod grant review glass -n "$NS17" --as bob "${LEADS[@]}" --outcome Accepted --notes "key rotated"
    check "18 bob reviews it with kubectl sod grant review" eval '((RC == 0)) && kc get accessgrant glass -n "$NS17" -o jsonpath="{.spec.review.user} {.spec.review.outcome}" && [[ "$OUT" == "bob Accepted" ]]'

    # -- sodguard down across an expiry: the binding goes when it is back
    request down web 20s && approve down bob && approve down carol
    if poll 15 binding_of down && poll 10 phase_is down Active; then
      kc get accessgrant down -n "$NS17" -o jsonpath='{.status.expiresAt}'
      exp="$(date -u -d "$OUT" +%s 2>/dev/null || echo 0)"
      stop_sodguard
      while (($(date -u +%s) < exp + 3)); do sleep 1; done
      check "18 sodguard stopped across the expiry: the binding is still there" binding_of down
      if start_s17_sodguard; then
        check "18 sodguard started again deletes the expired binding, the grant is Expired" \
          eval 'poll 20 no_binding_of down && poll 10 phase_is down Expired'
      else
        fail "18 sodguard started again" "$(tail -n 5 "$LOGS/sodguard.log")"
      fi
    else
      fail "18 downtime: the binding of an approved grant appears" "$(kerr)"
    fi

    # -- TokenRequests (R8.4): api holds secret-admin under e2e-s17-secrets
    kc --as alice create token api -n "$NS17" --duration 24h
    check "18 a 24h token for the governed ServiceAccount api is refused, naming maxExpiration 1h" \
      eval 'denied && has "$ERR" "maxExpiration of 1h"'
    kc --as alice create token api -n "$NS17" --duration 30m
    check "18 a 30m token for it is issued" eval '((RC == 0)) && [[ -n "$OUT" ]]'
    kc get pod job-1 -n "$NS17" -o jsonpath='{.metadata.uid}'; uid="$OUT"
    kc --as alice create token api -n "$NS17" --duration 24h --bound-object-kind Pod --bound-object-name job-1 --bound-object-uid "$uid"
    check "18 a 24h Pod-bound token asked by a user is refused too" eval 'denied && has "$ERR" "maxExpiration"'
    kc --as system:node:n1 --as-group system:nodes create token api -n "$NS17" --duration 24h \
      --bound-object-kind Pod --bound-object-name job-1 --bound-object-uid "$uid"
    check "18 the same Pod-bound 24h token asked by a kubelet (system:node:n1, system:nodes) is issued" eval '((RC == 0)) && [[ -n "$OUT" ]]'
    kc --as system:node:n1 --as-group system:nodes create token api -n "$NS17" --duration 24h
    check "18 a kubelet's unbound 24h token is refused like any other" eval 'denied && has "$ERR" "maxExpiration"'
  fi

  # Back to the suite's sodguard; nothing of ours stays behind.
  stop_sodguard
  start_sodguard
  wait_probe /readyz 60 && wait_webhook active 30 || fail "18 teardown: sodguard restarted" "not ready / not called: $(kerr)"
  kc delete accessgrants --all -n "$NS17" --ignore-not-found
  kc delete rolebindings,roles,serviceaccounts,pods --all -n "$NS17" --ignore-not-found --wait=false
  kc delete clusterroles,clusterrolebindings,sodpolicies,accessgrantpolicies -l "$LABEL" --ignore-not-found
  kc delete namespace "$NS17" "$SGNS17" --wait=false
fi

# ---- 19. impersonating a ServiceAccount that does not exist (R9.1) --------
# The API server impersonates a ServiceAccount without looking it up: the
# bindings that name a missing one apply to its impersonator. Shown on the
# real authorizer with a real token, then judged by sodguard.
if want 19; then
  progress "scenario 19: impersonating a missing ServiceAccount"
  NS19=e2e-s19
  y_imp() { # NAME: a ClusterRole impersonating ServiceAccounts named ghost
    printf 'apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: %s, labels: {%s: "true"}}\nrules:\n' "$1" "$LABEL"
    printf "%s\n" "- {apiGroups: [''], resources: [serviceaccounts], verbs: [impersonate], resourceNames: [ghost]}"
  }
  y_crb_sa() { # NAME CLUSTERROLE NS SA
    printf 'apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: %s, labels: {%s: "true"}}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: %s}\nsubjects:\n- {kind: ServiceAccount, name: %s, namespace: %s}\n' \
      "$1" "$LABEL" "$2" "$4" "$3"
  }
  if ! { apply_as alice "$(y_secret_policy)" && seed "$NS19" &&
         apply_as alice "$(y_imp e2e-s19-impersonate-ghost; echo ---; y_rb "$NS19" ghost-reads Role secret-reader ghost)"; }; then
    fail "19 setup: a RoleBinding names the missing ServiceAccount ghost" "$(kerr)"
  else
    ok "19 setup: a RoleBinding gives secret-reader to ServiceAccount $NS19/ghost, which does not exist"
    # web holds nothing of the policy: impersonating ghost completes nothing.
    apply_as alice "$(y_crb_sa e2e-s19-web-impersonates-ghost e2e-s19-impersonate-ghost "$NS19" web)"
    if ((RC != 0)); then
      fail "19 web may impersonate ghost (no conflict for it)" "$(kerr)"
    else
      kc create token web -n "$NS19" --duration 10m
      tok="$OUT"
      k19=(--kubeconfig /dev/null --server "$APISERVER_URL" --certificate-authority "$CL/pki/ca.crt" --token "$tok")
      kc "${k19[@]}" get secrets -n "$NS19"
      ((RC != 0)) && has "$ERR" Forbidden && ok "19 web itself may not read the namespace's Secrets" ||
        fail "19 web itself may not read the namespace's Secrets" "rc $RC: $(kerr)"
      kc "${k19[@]}" get secrets -n "$NS19" --as "system:serviceaccount:$NS19:ghost"
      ((RC == 0)) && ok "19 the real authorizer: web reads them impersonating the missing ServiceAccount ghost" ||
        fail "19 the real authorizer: web reads them impersonating the missing ServiceAccount ghost" "$(kerr)"
    fi
    # api holds secret-admin: impersonating ghost would add secret-use.
    y_crb_sa e2e-s19-api-impersonates-ghost e2e-s19-impersonate-ghost "$NS19" api >"$WORK/m/s19-api.yaml"
    kc --as alice apply -f "$WORK/m/s19-api.yaml"
    if ((RC != 0)) && has "$ERR" "$WEBHOOK_DENIAL"; then
      ok "19 letting api (secret-admin) impersonate ghost is rejected"
      expect_all "19 the denial shows the path through the missing ServiceAccount" "$ERR" \
        "ServiceAccount:$NS19:api" "impersonates ServiceAccount $NS19/ghost" "RoleBinding $NS19/ghost-reads"
    else
      fail "19 letting api (secret-admin) impersonate ghost is rejected" "rc $RC: $(kerr)"
    fi
  fi
  kc delete clusterroles,clusterrolebindings -l "$LABEL" --ignore-not-found
  kc delete namespace "$NS19" --wait=false
fi

# ---- 16. the review-time audit (issue 11): reports, status, events, leader --
if want 16; then
  progress "scenario 16: the review-time audit on two replicas, webhook unregistered"
  # The drift below is what the webhook never sees: no webhook, and the
  # shared sodguard stops (it audits too, without an election).
  kc delete validatingwebhookconfiguration sodguard --ignore-not-found
  stop_sodguard
  if ! kc apply -f "$ROOT/charts/sodguard/files/openreports-crds.yaml" ||
     ! kc wait --for condition=established --timeout=60s crd/reports.openreports.io crd/clusterreports.openreports.io; then
    fail "16 setup: OpenReports CRDs" "$(kerr)"
  else
    ok "16 setup: the chart's OpenReports CRDs are accepted and established"
    [[ -f "$CL/pki/peer.crt" ]] || SODGUARD_E2E_CERT_EKU=serverAuth,clientAuth "$HERE/cluster.sh" cert "$CL" peer IP:127.0.0.1 DNS:localhost \
      >/dev/null 2>>"$LOGS/cluster.log"
    S16_LEASE=8
    declare -a S16_PR S16_P S16_PID
    s16_args=()
    for n in 1 2; do
      S16_PR[n]="$(free_port)"; S16_P[n]="$(free_port)"
      echo "=== start $(date -u +%FT%TZ)" >>"$LOGS/sodguard-s16-$n.log"
      NO_COLOR=1 SODGUARD_LOG=info,sodguard::controllers::audit=debug setsid "$WORK/bin/sodguard" serve --kubeconfig "$CL/kubeconfig" \
        --tls-cert "$CL/pki/peer.crt" --tls-key "$CL/pki/peer.key" \
        --listen "127.0.0.1:$(free_port)" --probe-listen "127.0.0.1:${S16_PR[n]}" \
        --shutdown-grace 2s --audit-interval 30s --audit-debounce 1s \
        --leader-election --lease-namespace default --lease-name e2e-s16 --identity "s16-$n" \
        --peer-listen "127.0.0.1:${S16_P[n]}" --peer-address "127.0.0.1:${S16_P[n]}" \
        --peer-server-name localhost --peer-ca "$CL/pki/ca.crt" --lease-duration "${S16_LEASE}s" --lease-grace 4s \
        </dev/null >>"$LOGS/sodguard-s16-$n.log" 2>&1 &
      S16_PID[n]=$!
      EXTRA_PIDS+=" ${S16_PID[n]}"
      s16_args+=(--replica "s16-$n,http://127.0.0.1:${S16_PR[n]},${S16_PID[n]}")
    done
    s16_ok=1
    for n in 1 2; do
      t0=$SECONDS
      until [[ "$(http_code "http://127.0.0.1:${S16_PR[n]}/readyz")" == 200 ]]; do
        if ((SECONDS - t0 > 60)) || ! kill -0 "${S16_PID[n]}" 2>/dev/null; then s16_ok=0; break; fi
        sleep 0.2
      done
    done
    # One of them leads (sodguard_leader 1) before the checks start.
    t0=$SECONDS
    until curl -s "http://127.0.0.1:${S16_PR[1]}/metrics" "http://127.0.0.1:${S16_PR[2]}/metrics" | grep -q '^sodguard_leader 1'; do
      ((SECONDS - t0 > 30)) && { s16_ok=0; break; }
      sleep 0.2
    done
    if ((s16_ok == 1)); then
      timeout 300 python3 "$HERE/audit.py" --cluster-dir "$CL" --lease-seconds "$S16_LEASE" "${s16_args[@]}" \
        >"$WORK/s16.out" 2>>"$LOGS/audit.err"
      py_rc=$?
      cat "$WORK/s16.out"
      n_ok=$(grep -c '^ok  ' "$WORK/s16.out"); n_fail=$(grep -c '^FAIL ' "$WORK/s16.out")
      PASSED=$((PASSED + n_ok)); FAILED=$((FAILED + n_fail))
      ((py_rc != 0 && n_fail == 0)) && fail "16 audit.py" "exited with $py_rc: $(tail -n 20 "$LOGS/audit.err")"
    else
      fail "16 two replicas with the audit ready, one leading" \
        "$(tail -n 5 "$LOGS/sodguard-s16-1.log") / $(tail -n 5 "$LOGS/sodguard-s16-2.log")"
    fi
    for n in 1 2; do stop_pid "${S16_PID[n]:-}" "replica $n" 5; done
  fi
fi

progress "done in $((SECONDS - START))s; tearing down"
exit 0
