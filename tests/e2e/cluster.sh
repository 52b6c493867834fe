#!/usr/bin/env bash
# A real, minimal Kubernetes control plane for sodguard's end-to-end tests:
# etcd + kube-apiserver built from source by tests/e2e/build.sh, listening on
# 127.0.0.1 only, on free ports. No kubelet, no controller-manager, no scheduler.
#
#   cluster.sh up DIR     start (or fail if already running in DIR); prints the
#                         admin kubeconfig path (DIR/kubeconfig) on stdout
#   cluster.sh down DIR   stop both processes; safe to call twice, or on a DIR
#                         whose `up` failed halfway. Keeps DIR/logs.
#   cluster.sh status DIR exit 0 if both processes run and /readyz answers ok
#   cluster.sh restart-apiserver DIR
#                         stop kube-apiserver and start it again (same flags,
#                         port, etcd data); waits for /readyz ok, exit 1 if it
#                         does not get there within SODGUARD_E2E_READY_TIMEOUT
#   cluster.sh cert DIR NAME SAN...
#                         issue a serving cert signed by the cluster CA
#                         (DIR/pki/NAME.crt, NAME.key), e.g. for the webhook:
#                         `cert DIR webhook IP:127.0.0.1 DNS:localhost`; the
#                         caBundle to put into a webhook configuration is
#                         DIR/pki/ca.crt. SODGUARD_E2E_CERT_EKU sets its
#                         extendedKeyUsage (default serverAuth; e.g.
#                         serverAuth,clientAuth for a replica's peer cert)
#
# Files in DIR after `up`:
#   kubeconfig        admin (CN=admin, O=system:masters), certs embedded
#   env               shell assignments: KUBECONFIG, APISERVER_URL, ETCD_URL,
#                     CA_CERT, E2E_DIR (source it)
#   pki/              ca, apiserver serving cert, admin client cert, sa key pair
#   logs/             etcd.log, kube-apiserver.log
#   etcd.pid, kube-apiserver.pid
#
#   admission/        with SODGUARD_E2E_WEBHOOK_CLIENT_CERT=1: the AdmissionConfiguration
#                     (--admission-control-config-file) whose kubeconfig makes the
#                     API server present a client certificate to every webhook;
#                     env then also has WEBHOOK_CLIENT_CA, WEBHOOK_CLIENT_CERT,
#                     WEBHOOK_CLIENT_KEY (that certificate's own CA: not the cluster CA)
#
#   authz/config.yaml with SODGUARD_E2E_AUTHZ_CONFIG=FILE (up): a copy of FILE, an
#                     AuthorizationConfiguration the API server runs with
#                     (--authorization-config instead of --authorization-mode=RBAC)
#
# Env: KUBE_APISERVER / ETCD  use these binaries instead of running build.sh
#      SODGUARD_E2E_READY_TIMEOUT  seconds to wait for /readyz (default 180)
#      SODGUARD_E2E_WEBHOOK_CLIENT_CERT=1  (up) the API server authenticates to
#                     webhooks with a client certificate (see admission/ above)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MARKER=".sodguard-e2e-cluster"
READY_TIMEOUT="${SODGUARD_E2E_READY_TIMEOUT:-180}"
SERVICE_CIDR="10.0.0.0/24"
SERVICE_IP="10.0.0.1" # first IP of SERVICE_CIDR: the `kubernetes` Service

log() { echo "[e2e/cluster] $*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0" >&2; exit 2; }

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

# ---------------------------------------------------------------- processes --

# pid_alive DIR NAME: the pid in DIR/NAME.pid runs and is really our process
# (its command line mentions DIR), so a recycled pid is never signalled.
pid_alive() {
  local f="$1/$2.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$1/" || return 1
}

stop_one() { # DIR NAME
  local dir="$1" name="$2" pid i
  if pid_alive "$dir" "$name"; then
    pid="$(cat "$dir/$name.pid")"
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop within 15s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$dir/$name.pid"
}

do_down() { # DIR
  stop_one "$1" kube-apiserver
  stop_one "$1" etcd
}

# port_free PORT: nothing accepts connections on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

PICKED_PORTS=" "
# Ports are picked below the kernel's ephemeral range: a port of that range
# that is free when checked can be taken by any outgoing connection before
# etcd or kube-apiserver binds it (seen: etcd's peer port "already in use").
EPHEMERAL_LO="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
[[ "$EPHEMERAL_LO" =~ ^[0-9]+$ ]] && ((EPHEMERAL_LO > 21000)) || EPHEMERAL_LO=60000
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % (EPHEMERAL_LO - 20000)))
    [[ "$PICKED_PORTS" == *" $p "* ]] && continue
    if port_free "$p"; then PICKED_PORTS+="$p "; echo "$p"; return 0; fi
  done
  die "no free port found on 127.0.0.1"
}

# ---------------------------------------------------------------------- pki --

# sign_cert PKI NAME SUBJECT EXTENSIONS: NAME.key + NAME.crt signed by PKI/ca.
sign_cert() {
  local pki="$1" name="$2" subj="$3" ext="$4"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" \
    -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 30 -sha256 -extfile "$pki/$name.ext" \
    -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
  chmod 600 "$pki/$name.key"
}

gen_pki() { # PKI
  local pki="$1"
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -sha256 \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" -subj "/CN=sodguard-e2e-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  chmod 600 "$pki/ca.key"
  sign_cert "$pki" apiserver "/CN=kube-apiserver" \
"basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:$SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  sign_cert "$pki" admin "/O=system:masters/CN=admin" \
"basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  chmod 600 "$pki/sa.key"
}

# gen_webhook_client DIR: a CA of its own and a client certificate signed by
# it, and the AdmissionConfiguration that has the API server present that
# certificate to every webhook ("*": the webhooks' ports are picked later).
gen_webhook_client() {
  local dir="$1" adm="$1/admission" b64="base64 -w0"
  mkdir -p "$adm"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -sha256 \
    -keyout "$adm/client-ca.key" -out "$adm/client-ca.crt" -subj "/CN=sodguard-e2e-webhook-client-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -newkey rsa:2048 -nodes -keyout "$adm/client.key" \
    -subj "/CN=kube-apiserver-webhook-client" -out "$adm/client.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=clientAuth" >"$adm/client.ext"
  openssl x509 -req -in "$adm/client.csr" -CA "$adm/client-ca.crt" -CAkey "$adm/client-ca.key" \
    -CAcreateserial -days 30 -sha256 -extfile "$adm/client.ext" -out "$adm/client.crt" 2>/dev/null
  rm -f "$adm/client.csr" "$adm/client.ext"
  chmod 600 "$adm/client-ca.key" "$adm/client.key"
  cat >"$adm/webhook-kubeconfig.yaml" <<EOF
apiVersion: v1
kind: Config
users:
- name: "*"
  user:
    client-certificate-data: $($b64 <"$adm/client.crt")
    client-key-data: $($b64 <"$adm/client.key")
EOF
  cat >"$adm/config.yaml" <<EOF
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: ValidatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: $adm/webhook-kubeconfig.yaml
EOF
}

write_kubeconfig() { # DIR URL
  local dir="$1" url="$2" b64="base64 -w0"
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sodguard-e2e
  cluster:
    server: $url
    certificate-authority-data: $($b64 <"$dir/pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $($b64 <"$dir/pki/admin.crt")
    client-key-data: $($b64 <"$dir/pki/admin.key")
contexts:
- name: sodguard-e2e
  context:
    cluster: sodguard-e2e
    user: admin
current-context: sodguard-e2e
EOF
  chmod 600 "$dir/kubeconfig"
}

# ----------------------------------------------------------------------- up --

wait_until() { # DESCRIPTION TIMEOUT PIDNAME DIR LOG -- command...
  local what="$1" timeout="$2" pidname="$3" dir="$4" logf="$5" start=$SECONDS
  shift 6
  until "$@" >/dev/null 2>&1; do
    if ! pid_alive "$dir" "$pidname"; then
      log "$pidname exited while waiting for $what; last lines of $logf:"
      tail -n 40 "$logf" >&2 || true
      return 1
    fi
    if ((SECONDS - start >= timeout)); then
      log "timed out after ${timeout}s waiting for $what; last lines of $logf:"
      tail -n 40 "$logf" >&2 || true
      return 1
    fi
    sleep 0.5
  done
  log "$what after $((SECONDS - start))s"
}

etcd_healthy() { curl -sf --max-time 2 "$1/health" | grep -q '"health":"true"'; }

apiserver_ready() { # DIR URL
  curl -sf --max-time 5 --cacert "$1/pki/ca.crt" --cert "$1/pki/admin.crt" \
    --key "$1/pki/admin.key" "$2/readyz" | grep -qx ok
}

# start_apiserver DIR ETCD_URL API_PORT TIMEOUT: start kube-apiserver (log appended
# to DIR/logs/kube-apiserver.log) and wait for /readyz ok. Used by up and
# restart-apiserver, so a restart runs with exactly the flags of the first start.
start_apiserver() {
  local dir="$1" etcd_url="$2" api_port="$3" timeout="$4"
  local api_url="https://127.0.0.1:$api_port" extra=()
  # Kept in DIR by `up`, so that a restart runs with it too.
  [[ -f "$dir/admission/config.yaml" ]] && extra+=(--admission-control-config-file="$dir/admission/config.yaml")
  # The two flags exclude each other.
  if [[ -f "$dir/authz/config.yaml" ]]; then
    extra+=(--authorization-config="$dir/authz/config.yaml")
  else
    extra+=(--authorization-mode=RBAC)
  fi
  log "starting kube-apiserver on $api_url"
  # Flags: the set controller-runtime's envtest uses (RBAC, SA issuer/keys,
  # ServiceAccount admission off since no controller-manager creates SAs),
  # plus client-cert auth and loopback-only serving. The endpoint reconciler
  # refuses a loopback advertise address ("may not be in the loopback range"),
  # and nothing here routes to the `kubernetes` Service anyway: type none.
  setsid "$KUBE_APISERVER" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --secure-port="$api_port" \
    --etcd-servers="$etcd_url" \
    --etcd-prefix=/registry \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --client-ca-file="$dir/pki/ca.crt" \
    --tls-cert-file="$dir/pki/apiserver.crt" \
    --tls-private-key-file="$dir/pki/apiserver.key" \
    --cert-dir="$dir/pki" \
    --service-account-issuer="https://kubernetes.default.svc.cluster.local" \
    --api-audiences="https://kubernetes.default.svc.cluster.local" \
    --service-account-key-file="$dir/pki/sa.pub" \
    --service-account-signing-key-file="$dir/pki/sa.key" \
    --disable-admission-plugins=ServiceAccount \
    --allow-privileged=true \
    --enable-priority-and-fairness=false \
    --profiling=false \
    --v=1 \
    ${extra[@]+"${extra[@]}"} \
    </dev/null >>"$dir/logs/kube-apiserver.log" 2>&1 &
  echo $! >"$dir/kube-apiserver.pid"
  wait_until "kube-apiserver /readyz ok" "$timeout" kube-apiserver "$dir" \
    "$dir/logs/kube-apiserver.log" -- apiserver_ready "$dir" "$api_url"
}

do_up() { # DIR
  local dir="$1"
  if pid_alive "$dir" etcd || pid_alive "$dir" kube-apiserver; then
    die "a cluster is already running in $dir (run: $0 down $dir)"
  fi
  # Only ever wipe a directory that is empty or that this script made.
  if [[ -n "$(ls -A "$dir")" && ! -f "$dir/$MARKER" ]]; then
    die "$dir is not empty and was not made by cluster.sh; refusing to reuse it"
  fi
  rm -rf "$dir/pki" "$dir/etcd-data" "$dir/logs" "$dir/kubeconfig" "$dir/env" "$dir/admission" "$dir/authz" \
    "$dir/etcd.pid" "$dir/kube-apiserver.pid"
  touch "$dir/$MARKER"
  mkdir -p "$dir/logs"

  for tool in openssl curl base64; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required"
  done
  if [[ -z "${KUBE_APISERVER:-}" || -z "${ETCD:-}" ]]; then
    local assignments
    assignments="$("$HERE/build.sh")" || die "build.sh failed"
    eval "$assignments"
  fi
  [[ -x "$KUBE_APISERVER" && -x "$ETCD" ]] || die "binaries not executable: $KUBE_APISERVER $ETCD"

  # From here on, any failure (or Ctrl-C) tears down what was started.
  UP_OK=0
  trap 'rc=$?; if [[ $UP_OK != 1 ]]; then log "up failed (rc=$rc): cleaning up"; do_down "'"$dir"'"; fi' EXIT
  trap 'exit 130' INT TERM

  gen_pki "$dir/pki"
  if [[ "${SODGUARD_E2E_WEBHOOK_CLIENT_CERT:-0}" == 1 ]]; then gen_webhook_client "$dir"; fi
  if [[ -n "${SODGUARD_E2E_AUTHZ_CONFIG:-}" ]]; then
    mkdir -p "$dir/authz" && cp "$SODGUARD_E2E_AUTHZ_CONFIG" "$dir/authz/config.yaml"
  fi

  local etcd_port peer_port api_port
  etcd_port="$(free_port)"; peer_port="$(free_port)"; api_port="$(free_port)"
  local etcd_url="http://127.0.0.1:$etcd_port" api_url="https://127.0.0.1:$api_port"

  log "starting etcd on $etcd_url"
  setsid "$ETCD" \
    --name e2e \
    --data-dir "$dir/etcd-data" \
    --listen-client-urls "$etcd_url" \
    --advertise-client-urls "$etcd_url" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "e2e=http://127.0.0.1:$peer_port" \
    --initial-cluster-state new \
    --unsafe-no-fsync \
    --log-level warn \
    </dev/null >"$dir/logs/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  wait_until "etcd healthy" 60 etcd "$dir" "$dir/logs/etcd.log" -- etcd_healthy "$etcd_url"

  start_apiserver "$dir" "$etcd_url" "$api_port" "$READY_TIMEOUT"

  write_kubeconfig "$dir" "$api_url"
  cat >"$dir/env" <<EOF
E2E_DIR=$dir
KUBECONFIG=$dir/kubeconfig
APISERVER_URL=$api_url
ETCD_URL=$etcd_url
CA_CERT=$dir/pki/ca.crt
EOF
  if [[ -f "$dir/admission/config.yaml" ]]; then
    cat >>"$dir/env" <<EOF
WEBHOOK_CLIENT_CA=$dir/admission/client-ca.crt
WEBHOOK_CLIENT_CERT=$dir/admission/client.crt
WEBHOOK_CLIENT_KEY=$dir/admission/client.key
EOF
  fi
  UP_OK=1
  log "up: kube-apiserver $api_url, etcd $etcd_url (logs in $dir/logs)"
  echo "$dir/kubeconfig"
}

do_status() { # DIR
  local dir="$1" url
  pid_alive "$dir" etcd || { log "etcd not running"; return 1; }
  pid_alive "$dir" kube-apiserver || { log "kube-apiserver not running"; return 1; }
  url="$(sed -n 's/^APISERVER_URL=//p' "$dir/env" 2>/dev/null)"
  [[ -n "$url" ]] && apiserver_ready "$dir" "$url" || { log "kube-apiserver not ready"; return 1; }
  log "running: $url"
}

# restart-apiserver: stop kube-apiserver and start it again with the same
# flags, port and etcd (its RBAC bootstrap runs again); wait for /readyz ok.
do_restart_apiserver() { # DIR
  local dir="$1" url etcd_url port
  [[ -f "$dir/env" ]] || die "no $dir/env (run: $0 up $dir)"
  pid_alive "$dir" etcd || die "etcd is not running in $dir"
  url="$(sed -n 's/^APISERVER_URL=//p' "$dir/env")"
  etcd_url="$(sed -n 's/^ETCD_URL=//p' "$dir/env")"
  port="${url##*:}"
  [[ "$port" =~ ^[0-9]+$ && -n "$etcd_url" ]] || die "cannot read the ports from $dir/env"
  if [[ -z "${KUBE_APISERVER:-}" || -z "${ETCD:-}" ]]; then
    local assignments
    assignments="$("$HERE/build.sh")" || die "build.sh failed"
    eval "$assignments"
  fi
  stop_one "$dir" kube-apiserver
  # The port is free again once the old process is gone (up to ~5s for its sockets).
  local i
  for ((i = 0; i < 50; i++)); do port_free "$port" && break; sleep 0.1; done
  start_apiserver "$dir" "$etcd_url" "$port" "$READY_TIMEOUT"
  log "restarted: kube-apiserver $url"
}

do_cert() { # DIR NAME SAN...
  local dir="$1" name="$2"; shift 2
  [[ -f "$dir/pki/ca.key" ]] || die "no CA in $dir/pki (run: $0 up $dir)"
  [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "bad cert name: $name"
  (($# > 0)) || die "give at least one SAN, e.g. IP:127.0.0.1 DNS:localhost"
  local sans; sans="$(IFS=,; echo "$*")"
  sign_cert "$dir/pki" "$name" "/CN=$name" \
"basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=${SODGUARD_E2E_CERT_EKU:-serverAuth}
subjectAltName=$sans"
  echo "$dir/pki/$name.crt"
  echo "$dir/pki/$name.key"
}

(($# >= 2)) || usage
cmd="$1"
case "$cmd" in
  up) DIR="$(abs_dir "$2")"; do_up "$DIR" ;;
  down)
    [[ -d "$2" ]] || { log "$2: no such directory; nothing to stop"; exit 0; }
    DIR="$(cd "$2" && pwd)"; do_down "$DIR"; log "down: $DIR" ;;
  status) [[ -d "$2" ]] || die "$2: no such directory"; do_status "$(cd "$2" && pwd)" ;;
  restart-apiserver) [[ -d "$2" ]] || die "$2: no such directory"; do_restart_apiserver "$(cd "$2" && pwd)" ;;
  cert) (($# >= 4)) || usage; [[ -d "$2" ]] || die "$2: no such directory"
        do_cert "$(cd "$2" && pwd)" "$3" "${@:4}" ;;
  *) usage ;;
esac
