#!/usr/bin/env bash
# The long reliability proof (`make chaos`): the tests of worker/tests/chaos_e2e.rs with their
# long sizes, printing their figures:
#   - chaos: 1,000 orders (ODOO_SYNC_CHAOS_ORDERS) created and edited by 4 clients while worker
#     processes are SIGKILLed at least 20 times, Odoo fails 10 % of requests and drops 5 % of
#     write replies after committing, and PostgreSQL restarts once; then every local order must
#     equal its Odoo order (odoo-sync-worker verify), nothing duplicated, nothing lost;
#   - the same with clients that edit orders while their pushes are in flight;
#   - a 60 s Odoo outage; a dropped LISTEN connection and PostgreSQL restarts; 4 workers and
#     8 writers for 90 s.
# Starts the private PostgreSQL cluster of the harness (scripts/pg.sh, port ODOO_SYNC_PG_PORT)
# and stops it at the end; the tests that restart PostgreSQL start clusters of their own.
# Environment: ODOO_SYNC_CHAOS_ORDERS (default 1000), ODOO_SYNC_CHAOS_SEED (default 20260501).
set -euo pipefail
cd "$(dirname "$0")/.."

export ODOO_SYNC_CHAOS_ORDERS="${ODOO_SYNC_CHAOS_ORDERS:-1000}"
bash scripts/pg.sh start
trap 'bash scripts/pg.sh stop' EXIT
export ODOO_SYNC_TEST_PG="$(bash scripts/pg.sh url)"

cargo build -p odoo-sync-worker --bins
# One test at a time: their figures (latency, requests per second) are measured on a machine
# they do not share with each other.
cargo test -p odoo-sync-worker --test chaos_e2e -- --test-threads=1 --nocapture
