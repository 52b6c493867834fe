#!/usr/bin/env bash
# Instructions the admission decisions of `synth --measure` execute, counted
# by callgrind (Debian package `valgrind`): a figure that does not move with
# a shared machine's noise, for telling a change to the engine from the
# weather. Wall-clock decision times stay `synth --measure`'s.
#   benches/decision_instructions.sh [STATE_DIR] [ITERATIONS]
# STATE_DIR defaults to a 10k-binding synthetic cluster in /tmp (generated
# when missing): under callgrind 100k takes minutes to load; decisions cost
# about the same at either size (BENCHMARKS.md, scale curve). Counted: every
# call of `measure_latency` (the timed mix, its warm-up pass, and the
# decisions `synth` makes while measuring the audit's memory), so compare
# counts of the same command only. Two runs of one build differ by ~1 %
# (hash seeds are random).
set -euo pipefail
cd "$(dirname "$0")/.."
state=${1:-/tmp/synth-10k}
iterations=${2:-1000}
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 2; }
cargo build --profile profiling --locked --quiet --example synth
bin=target/profiling/examples/synth
[ -d "$state" ] || "$bin" --rolebindings 10000 --out "$state" >/dev/null
out=$(mktemp)
trap 'rm -f "$out"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$out" \
  --toggle-collect='synth::latency::measure_latency' \
  "$bin" --measure "$state" --iterations "$iterations" --requests 100 2>&1 |
  awk '/^review:   [0-9]+ reviews/ && !done {print "wall clock under callgrind (not comparable):", $0; done = 1}
       /Collected :/ {printf "instructions in decisions: %s\n", $NF}'
