#!/usr/bin/env bash
# make package: an installable tarball with the extension files (as `cargo pgrx package` lays
# them out under /usr) and the worker binary, its systemd unit and environment example.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
VERSION=$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)
OUT=target/package/odoo_sync-$VERSION
rm -rf "$OUT" && mkdir -p "$OUT"
PG_CONFIG="$PG_CONFIG" bash scripts/extension-package.sh "$OUT"
cargo build --release -p odoo-sync-worker
install -D -m 0755 target/release/odoo-sync-worker "$OUT/usr/local/bin/odoo-sync-worker"
install -D -m 0644 packaging/odoo-sync-worker.service "$OUT/lib/systemd/system/odoo-sync-worker.service"
install -D -m 0640 packaging/worker.env.example "$OUT/etc/odoo-sync/worker.env.example"
install -D -m 0640 packaging/worker.toml.example "$OUT/etc/odoo-sync/worker.toml.example"
tar -C "$OUT" -czf "target/package/odoo_sync-$VERSION.tar.gz" .
echo "package: target/package/odoo_sync-$VERSION.tar.gz"
tar -tzf "target/package/odoo_sync-$VERSION.tar.gz" | grep -v '/$'
