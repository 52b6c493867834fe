#!/usr/bin/env bash
# Load test of `sodguard serve --state` over TLS with keep-alive, on the
# synthetic cluster, with wrk (Debian package `wrk`) on the same machine.
#   benches/webhook_load.sh [STATE_DIR] [CONNECTIONS] [SECONDS]
# Prints wrk's latency distribution and the server's resident memory.
set -euo pipefail
cd "$(dirname "$0")/.."
state=${1:-/tmp/synth-full}
conns=${2:-4}
secs=${3:-30}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
cargo build --release --locked --quiet
[ -d "$state" ] || cargo run --release --locked --quiet --example synth -- --out "$state"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
probe=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
NO_COLOR=1 ./target/release/sodguard serve --self-signed --state "$state" \
  --listen "127.0.0.1:$port" --probe-listen "127.0.0.1:$probe" --violations-interval 0s \
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
uptime
wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$work/review.lua" "https://127.0.0.1:$port/validate"
grep -E "VmRSS|VmHWM" /proc/$pid/status
curl -s "127.0.0.1:$probe/metrics" | grep '^sodguard_admission_requests_total'
