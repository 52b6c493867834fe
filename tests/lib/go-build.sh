# Cached builds of Go tools from source, through the Go module proxy only.
# Sourced (not run) by tests/e2e/build.sh and tests/packaging/build-helm.sh:
#
#   source "$HERE/../lib/go-build.sh"
#   gobuild_init "e2e/build" 10 "$@"      # log tag, default niceness, the script's args
#   gobuild_cached "etcd $V" "$OUT" etcd_ok build_etcd
#
# Every binary lives at $CACHE_ROOT/<name>-<version>/<name>, and a warm run
# only asks the cached binary its version: the first build takes minutes on
# the 2-core machine, a check of the cache must take none.
#
# Env: SODGUARD_E2E_CACHE  cache root (default $HOME/.cache/sodguard-e2e)
#      SODGUARD_E2E_NICE   niceness of the Go build (default: the script's)

CACHE_ROOT="${SODGUARD_E2E_CACHE:-${HOME}/.cache/sodguard-e2e}"

# -mod=mod: resolve from go.mod/go.sum + module proxy (no vendor dir).
# -buildvcs=false: the modules sit inside the sodguard git tree.
export CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false"

# gobuild_init TAG DEFAULT-NICE ARGS...: sets NICE, FORCE and log(); accepts
# --force (rebuild even if the cached binary is good) and -h/--help (the
# script's header comment).
gobuild_init() {
  GOBUILD_TAG="$1"
  NICE="${SODGUARD_E2E_NICE:-$2}"
  shift 2
  FORCE=0
  local arg
  for arg in "$@"; do
    case "$arg" in
      --force) FORCE=1 ;;
      -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
      *) echo "$(basename "$0"): unknown argument: $arg" >&2; exit 2 ;;
    esac
  done
}

log() { echo "[$GOBUILD_TAG] $*" >&2; }

gobuild_need_go() {
  command -v go >/dev/null 2>&1 || { log "error: 'go' not found on PATH (need Go >= 1.26)"; exit 1; }
}

# gobuild_cached WHAT OUT CHECK BUILD: keeps OUT if `CHECK OUT` accepts it
# (unless --force), else runs BUILD and then insists that CHECK accepts the
# new binary. CHECK prints nothing, fails on a missing or wrong binary and
# leaves what the binary said about its version in GOBUILD_SAID.
gobuild_cached() {
  local what="$1" out="$2" check="$3" build="$4" t
  if [[ $FORCE == 0 ]] && "$check" "$out"; then
    log "$what: cached ($out)"
    return 0
  fi
  gobuild_need_go
  t=$SECONDS
  "$build"
  log "$what built in $((SECONDS - t))s"
  "$check" "$out" || { log "error: $out, just built, is not $what: ${GOBUILD_SAID:-no answer}"; exit 1; }
}

# gobuild OUT LDFLAGS PKG [MODULE-DIR]: `go build PKG` inside MODULE-DIR, or,
# without one, `go install PKG` (PKG@version). The binary is written next to
# OUT and moved into place, so an interrupted build never leaves a broken
# binary that a later run would take for a cached one.
gobuild() {
  local out="$1" ldflags="$2" pkg="$3" dir="${4:-}" tmp
  mkdir -p "$(dirname "$out")"
  tmp="$(mktemp -d "$(dirname "$out")/gobuild.XXXXXX")"
  if [[ -n "$dir" ]]; then
    (cd "$dir" && nice -n "$NICE" go build -trimpath -ldflags="$ldflags" -o "$tmp/bin" "$pkg")
  else
    GOBIN="$tmp" nice -n "$NICE" go install -trimpath -ldflags="$ldflags" "$pkg" &&
      mv -f "$tmp/$(basename "${pkg%@*}")" "$tmp/bin"
  fi || { rm -rf "$tmp"; log "error: go build $pkg failed${dir:+ (module $dir)}"; return 1; }
  mv -f "$tmp/bin" "$out"
  rm -rf "$tmp"
}
