#!/usr/bin/env bash
# make bench: benchmarks that print figures, each against a baseline measured in the same run.
#   1. capture cost of the odoo_sync triggers (untracked vs naive trigger vs tracked: pgbench,
#      each update timed inside one backend, WAL per update), on the test cluster (fsync off: the
#      CPU cost), there again with autovacuum off (see capture.sh), and on a second cluster with
#      PostgreSQL's durable defaults; then counted in instructions and cache misses (valgrind),
#      figures that this VM's noise does not move
#   2. the Odoo simulator's throughput (it must never be the bottleneck of our benchmarks)
#   3. the worker's push: batched vs a naive one-order-at-a-time baseline, RPCs per order,
#      commit-to-Odoo latency
#   4. the two-way sync: in-database conflict check per order, pull throughput
set -euo pipefail
cd "$(dirname "$0")/.."

durable_port=$(( ${ODOO_SYNC_PG_PORT:-55432} + 1 ))
bash scripts/pg.sh start
trap 'bash scripts/pg.sh stop; ODOO_SYNC_PG_PORT=$durable_port bash scripts/pg.sh stop' EXIT

bash tests/bench/capture.sh
echo
echo "== the same with autovacuum off on the benchmark's tables: the triggers' own cost =="
BENCH_AUTOVACUUM=off bash tests/bench/capture.sh
echo
echo "== the same on a cluster with PostgreSQL's durable defaults (commits wait for fsync) =="
ODOO_SYNC_PG_PORT=$durable_port ODOO_SYNC_PG_DURABLE=1 bash scripts/pg.sh start
ODOO_SYNC_PG_PORT=$durable_port BENCH_LOOP_UPDATES=${BENCH_DURABLE_LOOP_UPDATES:-5000} bash tests/bench/capture.sh
ODOO_SYNC_PG_PORT=$durable_port bash scripts/pg.sh stop
bash tests/bench/capture_instructions.sh
echo
cargo build -q --release -p odoo_sync_tests --bin sim-bench
./target/release/sim-bench --clients 8 --seconds "${BENCH_SECONDS:-5}"
echo
export ODOO_SYNC_TEST_PG="$(bash scripts/pg.sh url)"
cargo run -q --release -p odoo-sync-worker --example push_bench
echo
cargo run -q --release -p odoo-sync-worker --example pull_bench
