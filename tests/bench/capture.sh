#!/usr/bin/env bash
# Capture cost benchmark: single-row UPDATE throughput (pgbench, same cluster, same run) on
#   1. an untracked orders table (baseline),
#   2. the same table with a naive PL/pgSQL trigger that inserts one queue row per change,
#   3. the same naive trigger plus a NOTIFY per transaction (what the issue also asks of capture),
#      to show what PostgreSQL's NOTIFY alone costs,
#   4. the same table tracked by odoo_sync (event + state lookup + coalesced job; a NOTIFY when a
#      change queues its order, so here, with no worker draining, only on its first update).
# Rounds alternate between the four so drift on the machine hits all of them alike, in orders
# that put each variant right after each other one equally often (a Williams design: every 4
# rounds, each ordered pair once): background work a run leaves behind (autovacuum of the
# tables it wrote, a checkpoint its WAL triggered) lands on whichever variant runs next.
# The median of the rounds is reported. A second figure times the same update, committed one by
# one, inside a single backend (a procedure loop): no client round trip, so it shows what each
# variant adds per update. A third figure is the WAL each update writes: what a durable server
# must flush at commit and what replicas must receive.
# Needs a running cluster (scripts/pg.sh start) and the extension installed (make install).
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_PER_RUN=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CLIENTS=${BENCH_CLIENTS:-2}
ORDERS=${BENCH_ORDERS:-1000}
CONN=$(bash scripts/pg.sh url)
export PGOPTIONS="-c client_min_messages=warning"
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
DBS="bench_untracked bench_naive bench_naive_notify bench_tracked"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

psql_db() { psql "$CONN dbname=$1" -v ON_ERROR_STOP=1 -q "${@:2}"; }

. tests/bench/capture_tables.sh
for db in $DBS; do
  psql "$CONN" -q -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  psql_db "$db" -c "$bench_schema"
done
psql_db bench_naive -c "$(naive_trigger "")"
psql_db bench_naive_notify -c "$(naive_trigger " PERFORM pg_notify('odoo_sync_events', 'queue');")"
psql_db bench_tracked -c "$tracked_sql" >/dev/null
# BENCH_AUTOVACUUM=off leaves only the trigger's own cost to compare. With autovacuum on, how
# fast an update runs depends on how its table's pages are laid out, and that is decided at
# random: the orders table of whichever variant had its queue (or log) analyzed mid-run bloats,
# because ANALYZE holds back pruning, and a bloated page is pruned less often than a full one.
AUTOVACUUM=${BENCH_AUTOVACUUM:-on}
if [ "$AUTOVACUUM" = off ]; then
  for db in $DBS; do
    psql_db "$db" -At -c "SELECT format('ALTER TABLE %s SET (autovacuum_enabled = false);', c.oid::regclass)
                          FROM pg_class c WHERE c.relkind = 'r'
                           AND c.relnamespace <> ALL (ARRAY['pg_catalog', 'information_schema']::regnamespace[])" \
      | psql_db "$db"
  done
fi

cat > "$work/update.sql" <<SQL
\set id random(1, $ORDERS)
\set n random(1, 1000000000)
UPDATE orders SET notes = 'note ' || :n WHERE id = :id;
SQL

run() {
  "$PGBENCH" -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_PER_RUN" -f "$work/update.sql" "$CONN dbname=$1" 2>/dev/null \
    | awk '/^tps = / {printf "%.0f\n", $3}'
}

# in_round N: the variants in the order round N runs them: 0, 1, n-1, 2, n-2, ... shifted by N.
in_round() {
  local -a all=($DBS) order=(0)
  local n=${#all[@]} lo=1 hi=$(( ${#all[@]} - 1 )) i
  while (( ${#order[@]} < n )); do
    order+=("$lo"); lo=$((lo + 1))
    if (( ${#order[@]} < n )); then order+=("$hi"); hi=$((hi - 1)); fi
  done
  for i in "${order[@]}"; do echo "${all[(i + $1) % n]}"; done
}

declare -A results
for round in $(seq 1 "$ROUNDS"); do
  for db in $(in_round "$round"); do
    results[$db]+="$(run "$db") "
  done
done

LOOP_UPDATES=${BENCH_LOOP_UPDATES:-20000}
declare -A loops
for db in $DBS; do psql_db "$db" -c "$loop_sql"; done
for round in $(seq 1 "$ROUNDS"); do
  for db in $(in_round "$round"); do
    ms=$(psql_db "$db" -At -c "SELECT extract(epoch FROM clock_timestamp())" \
           -c "CALL bench_loop($LOOP_UPDATES)" -c "SELECT extract(epoch FROM clock_timestamp())" \
         | grep -v '^CALL' | awk 'NR == 1 {t = $1} NR == 2 {printf "%.3f", ($1 - t) * 1000}')
    loops[$db]+="$(awk -v ms="$ms" -v n="$LOOP_UPDATES" 'BEGIN {printf "%.1f", ms * 1000 / n}') "
  done
done

# WAL written per update: the first 2,000 updates after a CHECKPOINT (a page's first change after
# a checkpoint is logged whole when full_page_writes is on), then 2,000 more (steady state).
WAL_UPDATES=2000
wal_per_update() { awk -v a="$1" -v b="$2" -v n="$WAL_UPDATES" 'BEGIN {printf "%.0f", (b - a) / n}'; }
declare -A wal_first wal_steady
for db in $DBS; do
  read -r l0 l1 l2 < <(psql_db "$db" -At -c "CHECKPOINT" \
      -c "SELECT pg_current_wal_insert_lsn() - '0/0'" -c "CALL bench_loop($WAL_UPDATES)" \
      -c "SELECT pg_current_wal_insert_lsn() - '0/0'" -c "CALL bench_loop($WAL_UPDATES)" \
      -c "SELECT pg_current_wal_insert_lsn() - '0/0'" | grep -v -e '^CALL' -e '^CHECKPOINT' | paste -sd' ')
  # A failed psql inside the process substitution would not stop the script: check its output.
  [ -n "${l2:-}" ] || { echo "capture.sh: could not measure the WAL of $db" >&2; exit 1; }
  wal_first[$db]=$(wal_per_update "$l0" "$l1")
  wal_steady[$db]=$(wal_per_update "$l1" "$l2")
done
settings=$(psql_db bench_tracked -At -c "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings
                                        WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes')")

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(echo "${results[bench_untracked]}" | median)
naive=$(echo "${results[bench_naive]}" | median)
notify=$(echo "${results[bench_naive_notify]}" | median)
tracked=$(echo "${results[bench_tracked]}" | median)

lbase=$(echo "${loops[bench_untracked]}" | median)
lnaive=$(echo "${loops[bench_naive]}" | median)
lnotify=$(echo "${loops[bench_naive_notify]}" | median)
ltracked=$(echo "${loops[bench_tracked]}" | median)

jobs=$(psql_db bench_tracked -At -c "SELECT count(*) FROM odoo_sync.jobs")
events=$(psql_db bench_tracked -At -c "SELECT count(*) FROM odoo_sync.event_log")
echo
echo "capture cost: single-row UPDATE, $CLIENTS clients, ${SECONDS_PER_RUN}s x $ROUNDS rounds, $ORDERS orders, autovacuum $AUTOVACUUM, median tps"
echo "  server: $settings"
printf "  %-34s %8s tps   runs: %s\n" "untracked (baseline)" "$base" "${results[bench_untracked]}"
printf "  %-34s %8s tps   runs: %s\n" "naive PL/pgSQL queue trigger" "$naive" "${results[bench_naive]}"
printf "  %-34s %8s tps   runs: %s\n" "naive trigger + NOTIFY" "$notify" "${results[bench_naive_notify]}"
printf "  %-34s %8s tps   runs: %s\n" "tracked by odoo_sync" "$tracked" "${results[bench_tracked]}"
awk -v b="$base" -v n="$naive" -v t="$tracked" 'BEGIN {
  printf "  cost of tracking: %.2fx untracked (target <= 2.00x); %.2fx the naive trigger'"'"'s throughput (target >= 1.00x)\n", b/t, t/n }'
awk -v n="$naive" -v m="$notify" -v t="$tracked" 'BEGIN {
  printf "  NOTIFY alone takes the naive trigger to %.2fx its throughput; odoo_sync reaches %.2fx the naive trigger + NOTIFY\n", m/n, t/m }'
echo "  per update + commit inside one backend ($LOOP_UPDATES updates x $ROUNDS rounds, median):"
printf "  %-34s %8s us   runs: %s\n" "untracked (baseline)" "$lbase" "${loops[bench_untracked]}"
printf "  %-34s %8s us   runs: %s\n" "naive PL/pgSQL queue trigger" "$lnaive" "${loops[bench_naive]}"
printf "  %-34s %8s us   runs: %s\n" "naive trigger + NOTIFY" "$lnotify" "${loops[bench_naive_notify]}"
printf "  %-34s %8s us   runs: %s\n" "tracked by odoo_sync" "$ltracked" "${loops[bench_tracked]}"
awk -v b="$lbase" -v n="$lnaive" -v m="$lnotify" -v t="$ltracked" 'BEGIN {
  printf "  added per update: naive trigger %.1f us, naive trigger + NOTIFY %.1f us, odoo_sync %.1f us\n", n-b, m-b, t-b }'
echo "  WAL per update, bytes (first $WAL_UPDATES updates after a checkpoint / the next $WAL_UPDATES):"
printf "  %-34s %8s / %s\n" "untracked (baseline)" "${wal_first[bench_untracked]}" "${wal_steady[bench_untracked]}"
printf "  %-34s %8s / %s\n" "naive PL/pgSQL queue trigger" "${wal_first[bench_naive]}" "${wal_steady[bench_naive]}"
printf "  %-34s %8s / %s\n" "naive trigger + NOTIFY" "${wal_first[bench_naive_notify]}" "${wal_steady[bench_naive_notify]}"
printf "  %-34s %8s / %s\n" "tracked by odoo_sync" "${wal_first[bench_tracked]}" "${wal_steady[bench_tracked]}"
echo "  after the run: $jobs queued jobs (coalesced), $events events"
for db in $DBS; do psql "$CONN" -q -c "DROP DATABASE $db"; done
