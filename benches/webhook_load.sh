#!/usr/bin/env bash
# Load test of `sodguard serve --state` over TLS with keep-alive, on the
# synthetic cluster, with wrk (Debian package `wrk`) on the same machine.
#   benches/webhook_load.sh [STATE_DIR] [CONNECTIONS] [SECONDS]
# Prints wrk's latency distribution (with p99.99 and max) and the server's
# resident memory, its CPU time per answer, and the share of the machine's
# time the hypervisor stole during the run (latency figures taken on a
# shared machine mean little when that is high). Environment:
#   AUDIT_INTERVAL       the server's --audit-interval (default 0s: off); e.g.
#                        5s to measure decisions beside the audit's whole-state
#                        evaluation (with --state it gives the metrics alone;
#                        it was VIOLATIONS_INTERVAL, the gauge the audit replaced)
#   SODGUARD_BIN         a sodguard binary to run instead of building this tree
#                        (to compare with an older build)
#   MODE                 `validate` (default): AdmissionReviews to /validate;
#                        `noop`: AdmissionReviews of ConfigMaps to /validate,
#                        answered without a decision (no lock, no engine): the
#                        floor that TLS, HTTP and the machine's scheduling
#                        set for any answer under the same load;
#                        `authorize`: SubjectAccessReviews to /authorize (R13),
#                        with one more policy on the state, the Secrets duties
#                        under `useTime: {action: Deny}`
#   RATE                 open loop instead of wrk's closed loop: send RATE
#                        requests/s whatever the answers' latency, with vegeta
#                        (`go install github.com/tsenart/vegeta/v12@v12.13.0`,
#                        on PATH or in VEGETA), so the latency is measured at
#                        that rate, not at saturation
#   CONNECTIONS 0        with RATE: no bound on vegeta's requests in flight
#                        (its default: a new connection whenever every one is
#                        busy), as a client that falls behind would do; the
#                        server's --max-connections is what bounds it then
#   SERVER_CPUS, CLIENT_CPUS
#                        pin the server and the load generator to these CPUs
#                        (taskset lists, e.g. 0 and 1), so that neither
#                        preempts the other: the server's own tail, without
#                        the two competing for the same cores
#   MIMALLOC_PURGE_DELAY the allocator's delay before it returns freed memory,
#                        in ms: 0 by default, as the container image sets it
#   SODGUARD_ARGS        more arguments of the server (e.g. --violations-interval
#                        0s for a build older than issue 11, whose gauge ran by
#                        default)
set -euo pipefail
cd "$(dirname "$0")/.."
state=${1:-/tmp/synth-full}
conns=${2:-4}
secs=${3:-30}
rate=${RATE:-}
vegeta=${VEGETA:-vegeta}
if [ -n "$rate" ]; then
  command -v "$vegeta" >/dev/null || { echo "vegeta is missing: go install github.com/tsenart/vegeta/v12@v12.13.0" >&2; exit 2; }
else
  command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
fi
interval=${AUDIT_INTERVAL:-0s}
bin=${SODGUARD_BIN:-./target/release/sodguard}
# As the container image sets it (Dockerfile); set it to 1000 for mimalloc's
# own default.
export MIMALLOC_PURGE_DELAY=${MIMALLOC_PURGE_DELAY:-0}
[ -n "${SODGUARD_BIN:-}" ] || cargo build --release --locked --quiet
[ -d "$state" ] || cargo run --release --locked --quiet --example synth -- --out "$state"
mode=${MODE:-validate}
path=$mode
[ "$mode" != noop ] || path=validate
work=$(mktemp -d)
if [ "$mode" = authorize ]; then
  # The synthetic state (linked, not copied) plus an opted-in policy.
  mkdir "$work/state"
  ln -s "$(cd "$state" && pwd)"/*.yaml "$work/state/"
  cat >"$work/state/sodpolicies-usetime.yaml" <<'YAML'
apiVersion: sodguard.io/v1alpha1
kind: SoDPolicy
metadata: {name: secrets-at-use-time}
spec:
  duties:
  - name: secret-admin
    permissions: [{apiGroups: [''], resources: [secrets], verbs: [create, update, patch, delete, deletecollection]}]
  - name: secret-use
    permissions: [{apiGroups: [''], resources: [secrets], verbs: [get, list, watch]}]
  validationActions: [Audit]
  useTime: {action: Deny}
YAML
  state="$work/state"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
probe=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
server_pin=(); client_pin=()
[ -z "${SERVER_CPUS:-}" ] || server_pin=(taskset -c "$SERVER_CPUS")
[ -z "${CLIENT_CPUS:-}" ] || client_pin=(taskset -c "$CLIENT_CPUS")
NO_COLOR=1 "${server_pin[@]}" "$bin" serve --self-signed --state "$state" \
  --listen "127.0.0.1:$port" --probe-listen "127.0.0.1:$probe" --audit-interval "$interval" ${SODGUARD_ARGS:-} \
  >"$work/ca.pem" 2>"$work/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 120); do curl -sf "127.0.0.1:$probe/readyz" >/dev/null && break; sleep 0.5; done
curl -sf "127.0.0.1:$probe/readyz" >/dev/null || { tail "$work/serve.log"; exit 1; }
echo "ready: VmRSS $(grep VmRSS /proc/$pid/status | awk '{print $2}') kB"
# RoleBinding creates for ServiceAccount `api` in 400 real namespaces, half to
# a ClusterRole that completes a conflict where `api` can write Secrets.
python3 - "$state" >"$work/review.lua" <<'PY'
import re, sys, glob
nss = []
for f in sorted(glob.glob(sys.argv[1] + "/namespaces-*.yaml")):
    nss += re.findall(r"^  name: (\S+)$", open(f).read(), re.M)
print("local nss = {" + ",".join('"%s"' % n for n in nss[:400]) + "}")
print('''local n = 0
request = function()
  n = n + 1
  local ns = nss[(n % #nss) + 1]
  local role = (n % 2 == 0) and '"kind":"ClusterRole","name":"secret-reader"' or '"kind":"Role","name":"pod-manager"'
  local body = '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u' .. n ..
    '","kind":{"group":"rbac.authorization.k8s.io","version":"v1","kind":"RoleBinding"},"operation":"CREATE",' ..
    '"userInfo":{"username":"alice"},"object":{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding",' ..
    '"metadata":{"name":"bench-' .. n .. '","namespace":"' .. ns .. '"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io",' .. role .. '},' ..
    '"subjects":[{"kind":"ServiceAccount","name":"api","namespace":"' .. ns .. '"}]}}}'
  return wrk.format("POST", "/validate", {["Content-Type"] = "application/json"}, body)
end''')
PY
if [ "$mode" = noop ]; then
  cat >"$work/review.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local body = '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u' .. n ..
    '","kind":{"group":"","version":"v1","kind":"ConfigMap"},"operation":"CREATE",' ..
    '"userInfo":{"username":"alice"},"object":{"apiVersion":"v1","kind":"ConfigMap",' ..
    '"metadata":{"name":"bench-' .. n .. '","namespace":"default"},"data":{"a":"b"}}}}'
  return wrk.format("POST", "/validate", {["Content-Type"] = "application/json"}, body)
end
LUA
fi
if [ "$mode" = authorize ]; then
  # SubjectAccessReviews in 400 real namespaces, in turn: `get secrets` by
  # `ci` (a planted violator where it also writes Secrets) and by `default`,
  # and `get configmaps` (within no duty) by `ci`.
  python3 - "$state" >"$work/review.lua" <<'PY'
import re, sys, glob
nss = []
for f in sorted(glob.glob(sys.argv[1] + "/namespaces-*.yaml")):
    nss += re.findall(r"^  name: (\S+)$", open(f).read(), re.M)
print("local nss = {" + ",".join('"%s"' % n for n in nss[:400]) + "}")
print(r"""local n = 0
local kinds = {{"ci", "secrets"}, {"default", "secrets"}, {"ci", "configmaps"}}
request = function()
  n = n + 1
  local ns = nss[(n % #nss) + 1]
  local k = kinds[(n % #kinds) + 1]
  local body = '{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{' ..
    '"user":"system:serviceaccount:' .. ns .. ':' .. k[1] .. '","groups":["system:serviceaccounts",' ..
    '"system:serviceaccounts:' .. ns .. '","system:authenticated"],"resourceAttributes":{"namespace":"' .. ns ..
    '","verb":"get","group":"","version":"v1","resource":"' .. k[2] .. '","name":"x"}}}'
  return wrk.format("POST", "/authorize", {["Content-Type"] = "application/json"}, body)
end""")
PY
fi
# wrk --latency stops at p99: the tail is where a stalled decision shows.
cat >>"$work/review.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("tail: p99.9 %.2f ms, p99.99 %.2f ms, max %.2f ms over %d requests, %d errors\n",
    latency:percentile(99.9) / 1000, latency:percentile(99.99) / 1000, latency.max / 1000,
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
LUA
echo "mode: $mode, audit interval: $interval"
uptime
# The server's CPU time (user + system ticks) and the machine's stolen time
# over the run: CPU per answer is steadier than latency on a shared machine,
# and the steal says how shared it was.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
steal_ticks() { awk '/^cpu / {print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
cpu0=$(cpu_ticks); steal0=$(steal_ticks)
if [ -n "$rate" ]; then
  # The same requests as the wrk script, as vegeta targets: run the script's
  # request() with a tiny stand-in for wrk.format.
  python3 - "$work/review.lua" "https://127.0.0.1:$port/$path" "$mode" >"$work/targets.json" <<'PY'
import base64, json, re, sys
lua = open(sys.argv[1]).read()
m = re.search(r"local nss = \{(.*?)\}", lua)
nss = re.findall(r'"([^"]+)"', m.group(1)) if m else []
out = []
if sys.argv[3] == "noop":
    for i in range(1200):
        out.append({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": f"u{i}", "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "operation": "CREATE", "userInfo": {"username": "alice"},
            "object": {"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": f"bench-{i}", "namespace": "default"}, "data": {"a": "b"}}}})
elif "/authorize" in sys.argv[2]:
    for i in range(1200):
        ns = nss[i % len(nss)]
        who, res = [("ci", "secrets"), ("default", "secrets"), ("ci", "configmaps")][i % 3]
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "user": f"system:serviceaccount:{ns}:{who}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
            "resourceAttributes": {"namespace": ns, "verb": "get", "group": "", "version": "v1", "resource": res, "name": "x"}}}
        out.append(body)
else:
    for i in range(1200):
        ns = nss[i % len(nss)]
        role = {"kind": "ClusterRole", "name": "secret-reader"} if i % 2 == 0 else {"kind": "Role", "name": "pod-manager"}
        out.append({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": f"u{i}", "kind": {"group": "rbac.authorization.k8s.io", "version": "v1", "kind": "RoleBinding"},
            "operation": "CREATE", "userInfo": {"username": "alice"},
            "object": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                       "metadata": {"name": f"bench-{i}", "namespace": ns},
                       "roleRef": dict(apiGroup="rbac.authorization.k8s.io", **role),
                       "subjects": [{"kind": "ServiceAccount", "name": "api", "namespace": ns}]}}})
for body in out:
    print(json.dumps({"method": "POST", "url": sys.argv[2], "header": {"Content-Type": ["application/json"]},
                      "body": base64.b64encode(json.dumps(body).encode()).decode()}))
PY
  bound=(-workers="$conns" -max-workers="$conns" -connections="$conns")
  [ "$conns" != 0 ] || bound=()
  # A sample of what the server holds each second, for the peak.
  ( while kill -0 $pid 2>/dev/null; do
      curl -s "127.0.0.1:$probe/metrics" | awk '/^sodguard_connections_open\{listener="webhook"\}/ { print $2 }'
      sleep 1
    done >"$work/open.txt" ) &
  "${client_pin[@]}" "$vegeta" attack -format=json -targets="$work/targets.json" -rate="$rate" -duration="${secs}s" \
    -insecure -keepalive -http2=false "${bound[@]}" >"$work/results.bin"
  echo "connections the server held: peak $(sort -n "$work/open.txt" | tail -1) (sampled each second)"
  "$vegeta" report -type=text <"$work/results.bin"
  "$vegeta" report -type='hist[0,250us,500us,1ms,2ms,5ms,10ms]' <"$work/results.bin"
else
  "${client_pin[@]}" wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$work/review.lua" "https://127.0.0.1:$port/$path"
fi
cpu1=$(cpu_ticks); steal1=$(steal_ticks)
answered=$(curl -s "127.0.0.1:$probe/metrics" | awk '/^sodguard_(admission|authorize)_requests_total/ {n += $2} END {print n + 0}')
python3 -c '
import sys, os
hz = os.sysconf("SC_CLK_TCK")
cpu = (int(sys.argv[2]) - int(sys.argv[1])) / hz
s0, t0, s1, t1 = map(int, sys.argv[3:7])
n = int(sys.argv[7])
per = f"{cpu / n * 1e6:.0f} us per answer" if n else "no answers"
print(f"server cpu: {cpu:.1f} s, {per}; machine steal {100 * (s1 - s0) / max(t1 - t0, 1):.1f} %")
' "$cpu0" "$cpu1" $steal0 $steal1 "$answered"
grep -E "VmRSS|VmHWM" /proc/$pid/status
curl -s "127.0.0.1:$probe/metrics" | grep -E '^sodguard_connections_(at_cap|dropped)_total' || true
# How long the audits beside the load took (the audit runs below admission's
# priority, --audit-nice).
curl -s "127.0.0.1:$probe/metrics" | awk '/^sodguard_audit_duration_seconds_(sum|count)/ {v[$1] = $2}
  END {n = v["sodguard_audit_duration_seconds_count"]; if (n > 0) printf "audits: %d, %.2f s each on average\n", n, v["sodguard_audit_duration_seconds_sum"] / n}'
curl -s "127.0.0.1:$probe/metrics" | grep -E '^sodguard_(admission|authorize)_requests_total'
# The server's own time per answer (from the body read to the answer), by
# the histogram's buckets: what the decision costs without wrk's queueing.
curl -s "127.0.0.1:$probe/metrics" | python3 -c '
import re, sys
name = "sodguard_" + sys.argv[1] + "_duration_seconds_bucket"
b = [(float(le), float(n)) for le, n in re.findall(name + r"\{le=\"([^\"]+)\"\} (\S+)", sys.stdin.read())]
b.sort()
total = b[-1][1] if b else 0
out = []
for q in (0.5, 0.9, 0.99, 0.999, 0.9999):
    le = next((le for le, n in b if n >= q * total), float("inf"))
    out.append("p%g <= %s" % (q * 100, "%.0f us" % (le * 1e6) if le != float("inf") else "inf"))
slowest = next((le for le, n in b if n >= total), float("inf"))
out.append("max <= %s" % ("%.1f ms" % (slowest * 1e3) if slowest != float("inf") else "inf"))
print("server-side (" + sys.argv[1] + "):", ", ".join(out), "over", int(total))
' "$([ "$mode" = authorize ] && echo authorize || echo admission)"
