#!/usr/bin/env bash
# Capture cost in instructions: the single-row UPDATE of capture.sh on an untracked table, with
# the naive PL/pgSQL queue trigger, and tracked by odoo_sync, each counted by valgrind (callgrind,
# with its cache simulation) in a single-user backend. Timings on this shared VM differ by up to
# 40 % between rounds of the same variant; instruction and simulated cache-miss counts do not
# depend on what else the machine does, so they compare across runs and builds. The two also
# tell apart the two kinds of cost: instructions, and stalls on memory, which a timing shows and
# an instruction count does not. The cache simulated is one core's L2 (2 MB here, read from the
# machine): what misses it waits on the L3 this VM shares with its neighbours, or on memory.
#
# Per update = (count of N2 updates - count of N1 updates) / (N2 - N1), so the backend's start
# and the CALL cancel out. Each database first gets WARMUP updates of history (the event log,
# its index, the queue), as a table that has been tracked for a while has.
#
# BENCH_TRACKED_SQL runs in the tracked database after tracking, to count a variant (an index
# added to or dropped from odoo_sync's tables, say). Needs valgrind and the extension installed
# (make install). Runs its own throw-away cluster:
# single-user mode needs a data directory no server holds.
set -euo pipefail
cd "$(dirname "$0")/../.."

PGBIN=/usr/lib/postgresql/15/bin
ORDERS=${BENCH_ORDERS:-1000}
WARMUP=${BENCH_WARMUP_UPDATES:-100000}
N1=${BENCH_COUNT_UPDATES_1:-1000}
N2=${BENCH_COUNT_UPDATES_2:-3000}
PORT=$((${ODOO_SYNC_PG_PORT:-55432} + 2))
DBS="bench_untracked bench_naive bench_tracked"
L2=$(cat /sys/devices/system/cpu/cpu0/cache/index2/size 2>/dev/null || echo 2048K)
case "$L2" in *K) L2=$(( ${L2%K} * 1024 ));; *M) L2=$(( ${L2%M} * 1048576 ));; esac
command -v valgrind >/dev/null || { echo "capture_instructions.sh: valgrind is missing (make setup)" >&2; exit 1; }

as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
work=$(mktemp -d)
[ "$(id -u)" = 0 ] && chown postgres "$work"
DATA=$work/data
stop_server() { as_owner "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true; }
trap 'stop_server; rm -rf "$work"' EXIT

. tests/bench/capture_tables.sh
as_owner "$PGBIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
as_owner "$PGBIN/pg_ctl" -D "$DATA" -l "$work/server.log" -w start \
  -o "-p $PORT -k $work -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c autovacuum=off" >/dev/null
CONN="host=$work port=$PORT user=postgres"
export PGOPTIONS="-c client_min_messages=warning"
psql_db() { psql "$CONN dbname=$1" -v ON_ERROR_STOP=1 -q "${@:2}"; }
for db in $DBS; do
  psql "$CONN dbname=postgres" -q -c "CREATE DATABASE $db"
  psql_db "$db" -c "$bench_schema" -c "$loop_sql"
done
psql_db bench_naive -c "$(naive_trigger "")"
psql_db bench_tracked -c "$tracked_sql" >/dev/null
[ -z "${BENCH_TRACKED_SQL:-}" ] || psql_db bench_tracked -c "$BENCH_TRACKED_SQL"
for db in $DBS; do psql_db "$db" -c "CALL bench_loop($WARMUP)" -c "CHECKPOINT"; done
stop_server

# count DB N: "instructions LL-misses" of a backend that runs N updates.
count() {
  local out="$work/callgrind.$1.$2"
  printf 'CALL bench_loop(%s);\n' "$2" \
    | as_owner valgrind --tool=callgrind --cache-sim=yes --LL="$L2,16,64" --callgrind-out-file="$out" \
        "$PGBIN/postgres" --single -D "$DATA" "$1" >/dev/null 2>&1
  # events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
  awk '/^summary:/ {print $2, $8 + $9 + $10}' "$out"
}
declare -A instructions misses
for db in $DBS; do
  read -r i1 m1 < <(count "$db" "$N1")
  read -r i2 m2 < <(count "$db" "$N2")
  [ -n "${i2:-}" ] || { echo "capture_instructions.sh: valgrind run of $db failed" >&2; exit 1; }
  instructions[$db]=$(( (i2 - i1) / (N2 - N1) ))
  misses[$db]=$(awk -v a="$m1" -v b="$m2" -v n=$((N2 - N1)) 'BEGIN {printf "%.1f", (b - a) / n}')
done

base=${instructions[bench_untracked]}
echo
echo "capture cost in instructions: single-row UPDATE + commit in one backend (callgrind), $ORDERS orders,"
echo "  after $WARMUP updates of history; per update = (count of $N2 updates - count of $N1) / $((N2 - N1));"
echo "  L2 misses: of a simulated $((L2 / 1024)) kB cache, this machine's L2 per core"
printf "  %-34s %12s %12s %16s\n" "" "instructions" "added" "L2 misses"
printf "  %-34s %12s %12s %16s\n" "untracked (baseline)" "$base" "-" "${misses[bench_untracked]}"
for db in bench_naive bench_tracked; do
  label="naive PL/pgSQL queue trigger"
  [ "$db" = bench_tracked ] && label="tracked by odoo_sync"
  printf "  %-34s %12s %12s %16s\n" "$label" "${instructions[$db]}" "$((instructions[$db] - base))" "${misses[$db]}"
done
awk -v b="$base" -v n="${instructions[bench_naive]}" -v t="${instructions[bench_tracked]}" 'BEGIN {
  printf "  odoo_sync adds %.2fx the instructions the naive trigger adds; a tracked update runs %.2fx the naive one'"'"'s\n", (t - b) / (n - b), t / n }'
