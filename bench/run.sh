#!/usr/bin/env bash
# greenrich benchmarks: starts the sandbox, runs the job in release mode, prints one table.
# Usage: bench/run.sh [scenario...]   (default: all). Figures are ratios or throughputs measured
# inside one run, so a busy machine skews them less. Not a test: CI does not run it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=target/release/greenrich
OUT=bench/out
mkdir -p "$OUT"
PORT=${BENCH_PORT:-18181}
SANDBOX_PID=

stop_sandbox() { if [ -n "$SANDBOX_PID" ]; then kill "$SANDBOX_PID" 2>/dev/null || true; wait "$SANDBOX_PID" 2>/dev/null || true; fi; SANDBOX_PID=; }
trap stop_sandbox EXIT

# start_sandbox INSTANCES SANDBOX-FLAGS...
start_sandbox() {
  local n=$1; shift
  stop_sandbox
  "$BIN" sandbox --port "$PORT" --instance-count "$n" "$@" 2>"$OUT/sandbox.log" &
  SANDBOX_PID=$!
  for _ in $(seq 50); do grep -q listening "$OUT/sandbox.log" 2>/dev/null && break; sleep 0.1; done
  export GREEN_API_URL="http://127.0.0.1:$PORT"
  GREEN_API_INSTANCES=$(seq 1 "$n" | awk '{id=1101000000+$1; printf "%s%s:sandbox-token-%s", (NR>1?",":""), id, id}')
  export GREEN_API_INSTANCES
}

# phones N FILE: N distinct valid Russian mobile numbers in a CSV.
phones() {
  awk -v n="$1" 'BEGIN { print "phone,name"; for (i = 0; i < n; i++) printf "+7 9%02d %03d %04d,Person %d\n", 1 + int(i / 9999000), int(i / 9999) % 1000, 1 + i % 9999, i }' > "$2"
}

json() { python3 -c "import json,sys; d=json.load(open('$1')); print($2)"; }

ROWS=()
row() { ROWS+=("$(printf '| %-44s | %-28s | %-12s | %s |' "$1" "$2" "$3" "$4")"); }

# Pacing: N instances at 10 rps, 100-200 ms latency with ±10% jitter, strict sandbox limit.
pacing() {
  local n=$1 contacts=$2
  start_sandbox "$n" --rps 10 --latency-ms 100-200 --jitter 0.1
  phones "$contacts" "$OUT/pacing.csv"
  rm -f "$OUT/pacing.db"*
  "$BIN" enrich --input "$OUT/pacing.csv" --output "$OUT/pacing.db" --rps-per-instance 10 \
    --quiet --summary-json "$OUT/pacing.json" || true
  local wall util r429
  wall=$(json "$OUT/pacing.json" "round(d['elapsed_seconds'],2)")
  util=$(json "$OUT/pacing.json" "round(d['counts']['enriched']/($n*10)/d['elapsed_seconds'],3)")
  r429=$(json "$OUT/pacing.json" "round(100*d['counts']['http_429']/max(1,d['counts']['requests']),2)")
  row "pacing: $contacts contacts, $n inst x 10 rps" "utilisation $util" "${wall}s" "429s ${r429}% (goal: util >= 0.95, 429s <= 0.5%)"
}

scenario_pool() { pacing 4 400; }
scenario_pacing() { pacing 1 100; pacing 4 400; pacing 50 5000; }

SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(pacing)
for s in "${SCENARIOS[@]}"; do "scenario_$s"; done
stop_sandbox

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
printf '| %-44s | %-28s | %-12s | %s |\n' scenario figure wall notes
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..30})" "$(printf -- '-%.0s' {1..14})" "------"
printf '%s\n' "${ROWS[@]}"
