#!/usr/bin/env bash
# Lays out the extension's files under $1 as they are installed (`cargo pgrx package`), plus
# what pgrx does not know about: the install scripts of earlier versions and the upgrade
# scripts from sql/versions/, so `ALTER EXTENSION odoo_sync UPDATE` works from any release.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
OUT=$1
cargo pgrx package -p odoo_sync --pg-config "$PG_CONFIG" --out-dir "$OUT"
EXT_DIR="$OUT$("$PG_CONFIG" --sharedir)/extension"
for f in sql/versions/odoo_sync--*.sql; do
  install -m 0644 "$f" "$EXT_DIR/$(basename "$f")"
done
