#!/usr/bin/env bash
# make install: builds the extension (release) and installs it into the local PostgreSQL 15.
# Files are put in place by rename, never overwritten in place: a running server keeps using
# the library it has mapped until its backends reconnect, instead of crashing on a file that
# changes under it.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
STAGE=target/odoo_sync-package

rm -rf "$STAGE"
PG_CONFIG="$PG_CONFIG" bash scripts/extension-package.sh "$STAGE"
(cd "$STAGE" && find . -type f) | while read -r f; do
  dest="/${f#./}"
  mkdir -p "$(dirname "$dest")"
  cp "$STAGE/$f" "$dest.new"
  mv -f "$dest.new" "$dest"
  echo "installed $dest"
done
