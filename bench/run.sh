#!/usr/bin/env bash
# greenrich benchmarks: starts the sandbox, runs the job's release build, prints one table.
#
#   bench/run.sh                 # every scenario but real (about 14 minutes)
#   bench/run.sh pacing plan     # some of them: pool pacing jitter real overhead rerun memory plan links writes tables workers pgwrites refresh unpaced deadline dryrun privacy build
#
# Each figure is a ratio or a throughput measured inside one run, so a busy machine skews it
# less. This is not a test: CI runs none of it. Needs python3 (for reading the JSON summaries),
# GNU time (/usr/bin/time, Debian package `time`) for peak memory, and for tables, workers and
# pgwrites the local PostgreSQL and MariaDB servers with their clients (psql, mariadb).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${BENCH_BIN:-}" ] || cargo build --release --quiet
BIN=${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release/greenrich}
OUT=bench/out
mkdir -p "$OUT"
PORT=${BENCH_PORT:-18181}
SANDBOX_PID=
ROWS=()

stop_sandbox() {
  if [ -n "$SANDBOX_PID" ]; then kill "$SANDBOX_PID" 2>/dev/null || true; wait "$SANDBOX_PID" 2>/dev/null || true; fi
  SANDBOX_PID=
}
trap stop_sandbox EXIT

# start_sandbox INSTANCES SANDBOX-FLAGS...: a sandbox with INSTANCES authorized instances, and the
# matching GREEN_API_* variables.
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

# phones N FILE: N distinct valid Russian mobile numbers in a CSV, in random order as CRM exports
# are (cached; the order is the same every time: a fixed seed).
phones() {
  [ -s "$2" ] && [ "$(wc -l <"$2")" -eq $(($1 + 1)) ] && return
  python3 - "$1" "$2" <<'PY'
import random, sys
n, path = int(sys.argv[1]), sys.argv[2]
rows = [f"+7 9{1 + i // 9999000:02d} {(i // 9999) % 1000:03d} {1 + i % 9999:04d},Person {i}" for i in range(n)]
random.Random(20261122).shuffle(rows)
with open(path, "w") as f:
    f.write("phone,name\n")
    f.write("\n".join(rows))
    f.write("\n")
PY
}

# json FILE EXPR: a Python expression over the JSON summary `d`.
json() { python3 -c "import json; d=json.load(open('$1')); print($2)"; }

# peak_rss FILE: GNU time's peak RSS in MB.
peak_rss() { awk '/Maximum resident/ {printf "%.1f", $6/1024}' "$1"; }

# row SCENARIO FIGURE WALL GOAL: a line of the final table (also kept in $OUT/rows.md as it comes,
# so a scenario that fails does not lose the others' figures).
row() {
  ROWS+=("$(printf '| %s | %s | %s | %s |' "$1" "$2" "$3" "$4")")
  printf '%s\n' "${ROWS[-1]}" >>"$OUT/rows.md"
}

# Pacing utilisation: N instances at 10 rps, 100-200 ms latency with ±10% jitter, the sandbox
# refusing any call sooner than 100 ms after the last accepted one of the same instance.
# pacing_run N CONTACTS GOAL [RPS] [LATENCY] [ARRIVAL-JITTER-MS]: N instances at RPS (default 10)
# against a sandbox that refuses any call arriving sooner than 1/RPS after the last accepted one
# of the same instance; requests reach its limiter after a random 0..ARRIVAL-JITTER-MS delay
# (what a network path does to arrival times). Contacts are in random order.
pacing_run() {
  local n=$1 contacts=$2 goal=$3 rps=${4:-10} latency=${5:-100-200} arrival=${6:-0}
  start_sandbox "$n" --rps "$rps" --latency-ms "$latency" --jitter 0.1 --arrival-jitter-ms "$arrival"
  phones "$contacts" "$OUT/pacing-$contacts.csv"
  rm -f "$OUT"/pacing.db*
  "$BIN" enrich --input "$OUT/pacing-$contacts.csv" --output "$OUT/pacing.db" --rps-per-instance "$rps" ${PACING_FLAGS:-} \
    --quiet --summary-json "$OUT/pacing.json" || true
  local util r429 wall spacing
  wall=$(json "$OUT/pacing.json" "round(d['elapsed_seconds'], 2)")
  util=$(json "$OUT/pacing.json" "round(d['counts']['enriched'] / ($n * $rps) / d['elapsed_seconds'], 3)")
  r429=$(json "$OUT/pacing.json" "round(100 * d['counts']['http_429'] / max(1, d['counts']['requests']), 2)")
  spacing=$(json "$OUT/pacing.json" "round(sum(d['spacing_ms_per_instance'].values()) / max(1, len(d['spacing_ms_per_instance'])), 1)")
  # The spacing a pacer needs against a strict limiter: the interval T plus most of the arrival
  # jitter J (two uniform 0..J delays differ by more than 0.9·J one time in a hundred).
  bound=$(python3 -c "print(round(1000 / $rps + 0.9 * $arrival, 1))")
  row "pacing: $contacts contacts, $n × $rps rps, $latency ms, arrival jitter $arrival ms" "utilisation **$util**, 429s $r429%, spacing $spacing ms (T + 0.9·J = $bound ms)" "${wall} s" "$goal"
}
scenario_pacing() {
  pacing_run 1 300 "≥ 0.95 and ≤ 0.5%"
  pacing_run 4 1200 "≥ 0.95 and ≤ 0.5%"
  pacing_run 50 15000 "≥ 0.95 and ≤ 0.5%"
}
# The first issue's figure: 400 contacts over 4 instances at 10 rps in under 11 s, no 429s.
scenario_pool() { pacing_run 4 400 "under 11 s, no 429s"; }
# Networks that jitter: latency 120 ± 100 ms, arrival jitter 0, 2 and 10 ms (issue 10's goals).
scenario_jitter() {
  pacing_run 4 1200 "≥ 0.96 and ≤ 0.5%" 10 20-220 0
  pacing_run 4 1200 "≥ 0.96 and ≤ 0.5%" 10 20-220 2
  pacing_run 4 1200 "≥ 0.90 and ≤ 0.5%" 10 20-220 10
  pacing_run 50 10000 "≥ 0.93 and ≤ 0.5%" 10 20-220 5
}
# The real limit: one instance at one call per second, arrival jitter 30 ms (about 5 minutes).
scenario_real() { pacing_run 1 300 "≥ 0.96 and ≤ 0.5%" 1 20-220 30; }

# enrich_unlimited N: N contacts from CSV into SQLite, sandbox with no limit and no latency.
enrich_unlimited() {
  local contacts=$1
  start_sandbox 4 --rps 0
  phones "$contacts" "$OUT/in-$contacts.csv"
  rm -f "$OUT"/unlimited-$contacts.db*
  /usr/bin/time -v -o "$OUT/time-$contacts.txt" "$BIN" enrich --input "$OUT/in-$contacts.csv" \
    --output "$OUT/unlimited-$contacts.db" --rps-per-instance 0 --quiet --summary-json "$OUT/unlimited-$contacts.json"
}

scenario_overhead() {
  enrich_unlimited 100000
  local rate wall
  rate=$(json "$OUT/unlimited-100000.json" "round(d['counts']['enriched'] / d['elapsed_seconds'])")
  wall=$(json "$OUT/unlimited-100000.json" "round(d['elapsed_seconds'], 2)")
  local cpu
  cpu=$(awk '/User time|System time/ {s += $NF} END {printf "%.0f", s * 1e6 / 100000}' "$OUT/time-100000.txt")
  row "overhead: 100,000 contacts, CSV → SQLite, no limit" "**$rate contacts/s** end to end, $cpu µs CPU per contact (the job's process)" "${wall} s" "≥ 10,000/s"
}

# A nightly refresh of a store that holds every contact already: each answer is compared with
# what the store held (change tracking), so this is the write path's full cost.
scenario_rerun() {
  enrich_unlimited 100000
  "$BIN" enrich --input "$OUT/in-100000.csv" --output "$OUT/unlimited-100000.db" \
    --rps-per-instance 0 --quiet --summary-json "$OUT/rerun-100000.json" >/dev/null 2>&1 || true
  local rate wall
  rate=$(json "$OUT/rerun-100000.json" "round(d['counts']['enriched'] / d['elapsed_seconds'])")
  wall=$(json "$OUT/rerun-100000.json" "round(d['elapsed_seconds'], 2)")
  row "rerun: the same 100,000 contacts again, every answer compared with the stored one" "**$rate contacts/s** end to end" "${wall} s" "≥ 10,000/s"
}

scenario_memory() {
  [ -s "$OUT/time-100000.txt" ] || enrich_unlimited 100000
  enrich_unlimited 1000000
  local small big wall rate
  small=$(peak_rss "$OUT/time-100000.txt")
  big=$(peak_rss "$OUT/time-1000000.txt")
  wall=$(json "$OUT/unlimited-1000000.json" "round(d['elapsed_seconds'], 2)")
  rate=$(json "$OUT/unlimited-1000000.json" "round(d['counts']['enriched'] / d['elapsed_seconds'])")
  row "memory: peak RSS, 100,000 vs 1,000,000 rows" "**$small MB** vs **$big MB**" "${wall} s" "≤ 64 MB, flat ($rate contacts/s at 1M)"
}

# dry_run INPUT STORE [FLAGS]: seconds of one --dry-run (peak RSS in $OUT/time-plan.txt).
dry_run() {
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -v -o "$OUT/time-plan.txt" "$BIN" enrich --input "$1" --output "$2" --dry-run --quiet "${@:3}" 2>"$OUT/plan.txt"
  end=$(date +%s.%N)
  python3 -c "print(round($end - $start, 2))"
}

# Planning random-order inputs (CRM exports are not sorted): --dry-run over 100,000 and
# 1,000,000 rows against an empty store, then 1,000,000 rows against the memory scenario's store
# holding those 1,000,000 contacts, with --max-age 0s so every key is stale and queued.
scenario_plan() {
  [ -s "$OUT/unlimited-1000000.db" ] || enrich_unlimited 1000000
  stop_sandbox
  phones 100000 "$OUT/in-100000.csv"
  rm -f "$OUT"/plan-empty.db*
  local small big full rss
  small=$(dry_run "$OUT/in-100000.csv" "$OUT/plan-empty.db")
  rm -f "$OUT"/plan-empty.db*
  big=$(dry_run "$OUT/in-1000000.csv" "$OUT/plan-empty.db")
  rss=$(peak_rss "$OUT/time-plan.txt")
  row "planning: dry run, random order, empty store, 100,000 vs 1,000,000 rows" "**$small s** vs **$big s**, peak RSS $rss MB" "$big s" "≤ 3 s, linear, ≤ 64 MB"
  full=$(dry_run "$OUT/in-1000000.csv" "$OUT/unlimited-1000000.db" --max-age 0s)
  rss=$(peak_rss "$OUT/time-plan.txt")
  row "planning: dry run, random order, 1,000,000 rows vs 1,000,000 contacts" "**$full s**, peak RSS $rss MB" "$full s" "≤ 3 s ($(grep -o "[0-9]* due (" "$OUT/plan.txt" | head -1 | tr -d "(" | sed "s/ *$//"))"
}

# Row links and enriched.csv at 1,000,000 rows: staging with every row's link written to
# input_rows (--max-calls 0: no call), then `export` of enriched.csv from the memory scenario's
# store (1,000,000 contacts and links), each with its peak RSS.
scenario_links() {
  [ -s "$OUT/unlimited-1000000.db" ] || enrich_unlimited 1000000
  start_sandbox 4 --rps 0
  rm -f "$OUT"/links.db*
  /usr/bin/time -v -o "$OUT/time-links.txt" "$BIN" enrich --input "$OUT/in-1000000.csv" \
    --output "$OUT/links.db" --rps-per-instance 0 --max-calls 0 --quiet --summary-json "$OUT/links.json" || true
  local wall rss
  wall=$(json "$OUT/links.json" "round(d['elapsed_seconds'], 2)")
  rss=$(peak_rss "$OUT/time-links.txt")
  row "links: 1,000,000 rows read, staged and linked in input_rows (no call)" "**$(python3 -c "print(round(1000000 / $wall))") rows/s**, peak RSS $rss MB" "${wall} s" "≤ 64 MB"
  stop_sandbox
  rm -rf "$OUT/export"
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -v -o "$OUT/time-export.txt" "$BIN" export --db "$OUT/unlimited-1000000.db" \
    --input "$OUT/in-1000000.csv" --output "$OUT/export" 2>/dev/null
  end=$(date +%s.%N)
  wall=$(python3 -c "print(round($end - $start, 2))")
  rss=$(peak_rss "$OUT/time-export.txt")
  row "export: enriched.csv of 1,000,000 rows (and the table CSVs)" "**$(python3 -c "print(round(1000000 / $wall))") rows/s**, peak RSS $rss MB" "${wall} s" "≤ 64 MB"
}

scenario_writes() {
  local line
  line=$(cargo bench --quiet --bench store 2>/dev/null | grep '^writes:')
  local rate secs
  rate=$(echo "$line" | grep -o '= [0-9]* rows/s' | tr -dc 0-9)
  secs=$(echo "$line" | grep -o 'in [0-9.]* s' | tr -dc 0-9.)
  row "writes: 1,000,000 contacts + 2,000,000 products, store only" "**$rate rows/s**" "${secs} s" "> 50,000 rows/s"
}

# Refresh policies under a budget: 300 simulated nights through the real job and store for each
# mix, budget and policy (bench/refresh.rs prints its own table, about 15 minutes on 2 cores).
scenario_refresh() {
  cargo bench --quiet --bench refresh 2>/dev/null | tee "$OUT/refresh.txt"
  row "refresh: simulated nights, 2,000 contacts (table above, and in docs/performance.md)" "$(grep -c '^| mixed\|^| one' "$OUT/refresh.txt") rows" "-" "adaptive ≥ 0.80 / 0.905 / 0.948"
}

# Reading a CRM table of 1,000,000 rows in PostgreSQL and in MariaDB (the local servers; ids
# 1..1,000,000, phones in an order unrelated to the ids): a dry run reads, normalises and plans
# every row. Needs psql and the mariadb client.
PG_URL=${GREENRICH_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
MY_URL=${GREENRICH_BENCH_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
scenario_tables() {
  psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS greenrich_bench CASCADE; CREATE SCHEMA greenrich_bench;
    CREATE TABLE greenrich_bench.customers (id bigint PRIMARY KEY, name text, phone text);
    INSERT INTO greenrich_bench.customers
      SELECT i, 'Person ' || i, '+7 901 ' || lpad(((i * 7919) % 1000000)::text, 7, '0')
      FROM generate_series(1::bigint, 1000000) i;" >/dev/null
  mariadb -h 127.0.0.1 -u root test -e "DROP DATABASE IF EXISTS greenrich_bench; CREATE DATABASE greenrich_bench;
    CREATE TABLE greenrich_bench.customers (id INT PRIMARY KEY, name VARCHAR(40), phone VARCHAR(40));
    INSERT INTO greenrich_bench.customers
      SELECT seq, CONCAT('Person ', seq), CONCAT('+7 901 ', LPAD((seq * 7919) % 1000000, 7, '0'))
      FROM seq_1_to_1000000;"
  local url engine secs rss
  for engine in PostgreSQL MariaDB; do
    url=$PG_URL; [ "$engine" = MariaDB ] && url=$MY_URL
    rm -f "$OUT"/tables.db*
    secs=$(dry_run "$url" "$OUT/tables.db" --table greenrich_bench.customers)
    rss=$(peak_rss "$OUT/time-plan.txt")
    row "tables: dry run of a 1,000,000-row $engine table (read in pages of 2,000, normalised, planned)" "**$(python3 -c "print(round(1000000 / $secs))") rows/s**, peak RSS $rss MB" "$secs s" "≤ 64 MB"
  done
  psql -q "$PG_URL" -c "DROP SCHEMA greenrich_bench CASCADE" >/dev/null
  mariadb -h 127.0.0.1 -u root -e "DROP DATABASE greenrich_bench"
}

# Many workers, one PostgreSQL store: 1, 2 and 4 worker processes started together, each with 2
# instances of its own at 10 calls a second, share 600 random-order contacts; the sandbox adds
# 20-220 ms latency and 0-2 ms arrival jitter. Wall time is from the start of the workers to the
# end of the last one; the ideal is workers × 2 × 10 calls a second.
scenario_workers() {
  local workers
  phones 600 "$OUT/pacing-600.csv"
  start_sandbox 8 --rps 10 --latency-ms 20-220 --jitter 0.1 --arrival-jitter-ms 2
  for workers in ${BENCH_WORKERS:-1 2 4}; do
    psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS greenrich_bench_workers CASCADE" >/dev/null 2>&1
    workers_night "$workers" "first night (a new store)"
    # The next night: every contact stale again, the instances' spacing learnt the night before.
    workers_night "$workers" "next night (--max-age 0s)" --max-age 0s
  done
  psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS greenrich_bench_workers CASCADE" >/dev/null 2>&1
}

# workers_night WORKERS NIGHT [FLAGS...]: WORKERS workers started together on the 600 contacts.
workers_night() {
  local workers=$1 night=$2 start end wall rate ideal pids=() i creds
  shift 2
  start=$(date +%s.%N)
  for i in $(seq 0 $((workers - 1))); do
    creds=$(echo "$GREEN_API_INSTANCES" | tr ',' '\n' | sed -n "$((2 * i + 1)),$((2 * i + 2))p" | paste -sd,)
    GREEN_API_INSTANCES=$creds "$BIN" enrich --input "$OUT/pacing-600.csv" --output "$PG_URL" \
      --schema greenrich_bench_workers --rps-per-instance 10 --quiet "$@" 2>"$OUT/worker-$i.log" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || true; done
  end=$(date +%s.%N)
  wall=$(python3 -c "print(round($end - $start, 2))")
  rate=$(python3 -c "print(round(600 / ($end - $start), 1))")
  ideal=$((workers * 20))
  row "workers: $workers × 2 instances × 10 rps, one PostgreSQL store, 600 contacts, $night" "**$rate calls/s** of an ideal $ideal ($(python3 -c "print(round($rate / $ideal, 3))"))" "$wall s" "4 workers ≥ 0.92"
}

# Writes into a PostgreSQL store: 100,000 random-order contacts from CSV, sandbox with no limit.
scenario_pgwrites() {
  start_sandbox 4 --rps 0
  phones 100000 "$OUT/in-100000.csv"
  psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS greenrich_bench_writes CASCADE" >/dev/null 2>&1
  /usr/bin/time -v -o "$OUT/time-pg.txt" "$BIN" enrich --input "$OUT/in-100000.csv" --output "$PG_URL" \
    --schema greenrich_bench_writes --rps-per-instance 0 --quiet --summary-json "$OUT/pg.json"
  local rate wall
  rate=$(json "$OUT/pg.json" "round(d['counts']['enriched'] / d['elapsed_seconds'])")
  wall=$(json "$OUT/pg.json" "round(d['elapsed_seconds'], 2)")
  row "PostgreSQL store: 100,000 contacts, CSV → PostgreSQL, no limit" "**$rate contacts/s** end to end, peak RSS $(peak_rss "$OUT/time-pg.txt") MB" "${wall} s" "(measured)"
  psql -q "$PG_URL" -c "DROP SCHEMA greenrich_bench_writes CASCADE" >/dev/null 2>&1
}

# Paced at a rate far above the machine's: 50,000 random-order contacts, no limit in the sandbox,
# the job unpaced and then paced at 1,000,000 calls a second per instance (every slot is due at
# once: the pacer must not wait on the timer). Sandbox and job share the machine's cores.
scenario_unpaced() {
  start_sandbox 4 --rps 0
  phones 50000 "$OUT/in-50000.csv"
  local rps rate
  for rps in 0 1000000; do
    rm -f "$OUT"/unpaced.db*
    "$BIN" enrich --input "$OUT/in-50000.csv" --output "$OUT/unpaced.db" --rps-per-instance "$rps" \
      --quiet --summary-json "$OUT/unpaced.json" || true
    rate=$(json "$OUT/unpaced.json" "round(d['counts']['enriched'] / d['elapsed_seconds'])")
    row "unpaced: 50,000 contacts, CSV → SQLite, --rps-per-instance $rps" "**$rate contacts/s** end to end" "$(json "$OUT/unpaced.json" "round(d['elapsed_seconds'], 2)") s" "as fast as unlimited"
  done
}

# A deadline is a wall: --deadline 1s over a 1,000,000-row random-order CSV, which takes far
# longer than a second to read; the process must end within 0.5 s of the deadline, exit 3.
scenario_deadline() {
  start_sandbox 4 --rps 0
  phones 1000000 "$OUT/in-1000000.csv"
  rm -f "$OUT"/deadline.db*
  local start end code=0
  start=$(date +%s.%N)
  "$BIN" enrich --input "$OUT/in-1000000.csv" --output "$OUT/deadline.db" --deadline 1s --quiet 2>/dev/null || code=$?
  end=$(date +%s.%N)
  row "deadline: --deadline 1s over 1,000,000 rows" "process ended after **$(python3 -c "print(round($end - $start, 2))") s**, exit $code" "-" "≤ 2.5 s, exit 3"
}

# CPU per row of planning: a dry run of 1,000,000 random-order clean numbers into an empty store.
scenario_dryrun() {
  phones 1000000 "$OUT/in-1000000.csv"
  rm -f "$OUT"/dryrun.db*
  local secs cpu
  secs=$(dry_run "$OUT/in-1000000.csv" "$OUT/dryrun.db")
  cpu=$(awk '/User time|System time/ {s += $NF} END {printf "%.1f", s * 1e6 / 1000000}' "$OUT/time-plan.txt")
  row "dry run: 1,000,000 random-order numbers, empty SQLite store" "**$cpu µs CPU per row**, peak RSS $(peak_rss "$OUT/time-plan.txt") MB" "$secs s" "≤ 3 µs, ≤ 64 MB"
}

# Privacy: what a do-not-process list of 1,000 people costs a dry run of 1,000,000 random-order
# rows (each row's chat id hashed with HMAC-SHA-256), and how long `forget` takes on a store of
# 1,000,000 contacts (most of it rebuilding the SQLite file so that no copy of the person stays).
scenario_privacy() {
  phones 1000000 "$OUT/in-1000000.csv"
  rm -f "$OUT"/privacy.db*
  head -1001 "$OUT/in-1000000.csv" >"$OUT/objections.csv"
  "$BIN" forget --db "$OUT/privacy.db" --input "$OUT/objections.csv" --suppress >/dev/null
  local secs cpu
  secs=$(dry_run "$OUT/in-1000000.csv" "$OUT/privacy.db")
  cpu=$(awk '/User time|System time/ {s += $NF} END {printf "%.1f", s * 1e6 / 1000000}' "$OUT/time-plan.txt")
  row "dry run: 1,000,000 random-order numbers, 1,000 of them on the do-not-process list" "**$cpu µs CPU per row**, $(grep -o "[0-9]* suppressed" "$OUT/plan.txt" | head -1)" "$secs s" "as without a list (dryrun)"
  [ -s "$OUT/unlimited-1000000.db" ] || enrich_unlimited 1000000
  cp "$OUT/unlimited-1000000.db" "$OUT/forget.db"
  local size start end
  size=$(du -m "$OUT/forget.db" | cut -f1)
  start=$(date +%s.%N)
  "$BIN" forget --db "$OUT/forget.db" --phone "$(sed -n 2p "$OUT/in-1000000.csv" | cut -d, -f1)" >"$OUT/forget.txt"
  end=$(date +%s.%N)
  row "forget: one person of 1,000,000 contacts ($size MB SQLite store), file scrubbed" "**$(python3 -c "print(round($end - $start, 1))") s**" "-" "-"
  rm -f "$OUT"/forget.db*
}

# A first run that starts fast: a clean release build in a fresh copy of the repository (about
# 6 minutes on 2 cores; not in the default set).
scenario_build() {
  local copy
  copy=$(mktemp -d)
  git clone -q . "$copy"
  local start end
  start=$(date +%s.%N)
  (cd "$copy" && CARGO_TARGET_DIR="$copy/target" cargo build --release --quiet)
  end=$(date +%s.%N)
  rm -rf "$copy"
  row "build: clean cargo build --release, fresh clone" "**$(python3 -c "print(round($end - $start))") s**" "-" "≤ 6 min"
}

SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(pool pacing jitter overhead memory plan links writes tables workers pgwrites)
for s in "${SCENARIOS[@]}"; do "scenario_$s"; done
stop_sandbox

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(date -u +%Y-%m-%d)"
echo
echo "| scenario | figure | wall | goal |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
