#!/usr/bin/env bash
# Runs the whole test suite: starts the private PostgreSQL cluster, runs every test crate,
# stops the cluster (by its pid file) whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/pg.sh start
trap 'bash scripts/pg.sh stop' EXIT
export ODOO_SYNC_TEST_PG="$(bash scripts/pg.sh url)"

cargo build -p odoo_sync_tests --bins
cargo test -p odoo-sync-worker
cargo test -p odoo_sync_tests
