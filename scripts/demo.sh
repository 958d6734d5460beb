#!/usr/bin/env bash
# make demo: the main job on embedded defaults — a private PostgreSQL cluster and the bundled
# Odoo simulator, both started here and stopped at the end.
#
# The whole loop: an application's orders tracked by the extension, the worker pushing every
# committed change to the simulator, Odoo-side changes pulled back in realtime mode, a
# conflict resolved in SQL, an import from Odoo, and the result shown from both sides.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/pg.sh start
SIM_PID=""
WORKER_PID=""
cleanup() {
  [ -n "$WORKER_PID" ] && kill "$WORKER_PID" 2>/dev/null && wait "$WORKER_PID" 2>/dev/null || true
  [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null || true
  bash scripts/pg.sh stop
}
trap cleanup EXIT

CONN=$(bash scripts/pg.sh url)
DB=odoo_sync_demo
psql "$CONN" -q -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" 2>/dev/null
run() { psql "$CONN dbname=$DB" -v ON_ERROR_STOP=1 -q -P pager=off "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "An application's own tables (the common orders / order_items schema)"
run <<'SQL'
CREATE TABLE orders (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), order_number text UNIQUE, supplier_id text NOT NULL,
  supplier_name text, status text NOT NULL DEFAULT 'DRAFT', subtotal numeric(12,2), sales_tax numeric(12,2),
  grand_total numeric(12,2), notes text, requested_delivery_date date, created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now(), sync_status text, odoo_order_id integer, last_synced_at timestamptz);
CREATE TABLE order_items (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), order_id uuid NOT NULL REFERENCES orders ON DELETE CASCADE,
  product_id text NOT NULL, product_name text, product_code text, quantity numeric(12,3) NOT NULL,
  unit_price numeric(12,2) NOT NULL, total_price numeric(12,2));
CREATE INDEX order_items_order_id ON order_items (order_id);
INSERT INTO orders (order_number, supplier_id, supplier_name) VALUES ('PO-0001', 'V-WOOD', 'Wood Corner');
SQL
echo "created; one order existed before odoo_sync was attached"

say "CREATE EXTENSION odoo_sync; SELECT odoo_sync.track_orders('orders', 'order_items')"
run -c "CREATE EXTENSION odoo_sync" -c "SELECT jsonb_pretty(odoo_sync.track_orders('orders', 'order_items') - 'orders' - 'items') AS tracking"

start_sim() {
  cargo build -q -p odoo_sync_tests --bin odoo-sim
  cargo build -q -p odoo-sync-worker
  SIM_OUT=$(mktemp)
  ./target/debug/odoo-sim --listen 127.0.0.1:0 >"$SIM_OUT" 2>/dev/null &
  SIM_PID=$!
  for _ in $(seq 1 50); do grep -q listening "$SIM_OUT" && break; sleep 0.1; done
  SIM_URL=$(head -1 "$SIM_OUT" | awk '{print $NF}')
  rm -f "$SIM_OUT"
}
odoo() {  # odoo MODEL METHOD ARGS_JSON KWARGS_JSON: one JSON-RPC call to the simulator
  curl -s -X POST "$SIM_URL/jsonrpc" -H 'Content-Type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"method\":\"call\",\"id\":1,\"params\":{\"service\":\"object\",\"method\":\"execute_kw\",\"args\":[\"odoo\",2,\"admin\",\"$1\",\"$2\",$3,$4]}}"
}
show_odoo() {
  odoo purchase.order search_read '[[]]' '{"fields":["name","origin","partner_id","state","amount_untaxed","amount_total","date_planned"],"order":"id asc"}' \
    | python3 -c 'import json,sys
for o in json.load(sys.stdin)["result"]:
    print("  %-7s origin %-8s %-18s %-9s untaxed %8.2f  total %8.2f  arrival %s" % (o["name"], o["origin"] or "", o["partner_id"][1], o["state"], o["amount_untaxed"], o["amount_total"], o["date_planned"] or "-"))'
}
wait_synced() {
  for _ in $(seq 1 300); do
    left=$(run -At -c "SELECT count(*) FROM odoo_sync.queue")
    [ "$left" = 0 ] && return 0
    sleep 0.1
  done
  echo "the queue did not drain within 30 s"; run -c "SELECT * FROM odoo_sync.queue"; return 1
}
status_table() {
  run -c "SELECT order_number, sync_status, odoo_order_id, odoo_name, deleted, version, synced_version
          FROM odoo_sync.order_status ORDER BY order_number"
}

say "Start the bundled Odoo simulator (odoo-sim) and the worker (odoo-sync-worker run)"
start_sim
echo "odoo-sim at $SIM_URL: $(curl -s "$SIM_URL/web/version")"
WORKER_LOG=$(mktemp)
DATABASE_URL="$CONN dbname=$DB" ODOO_URL="$SIM_URL" ODOO_DB=odoo ODOO_USER=admin ODOO_API_KEY=odoo-sim-admin-api-key \
  ODOO_SYNC_METRICS_ADDR=127.0.0.1:0 ./target/debug/odoo-sync-worker run >"$WORKER_LOG" 2>&1 &
WORKER_PID=$!

say "The application writes orders as usual (no sync code in the app)"
run <<'SQL'
INSERT INTO orders (order_number, supplier_id, supplier_name, requested_delivery_date) VALUES
  ('PO-0002', 'V-GEMINI', 'Gemini Furniture', DATE '2026-12-15'), ('PO-0003', 'V-DECO', 'Deco Addict', NULL);
UPDATE orders SET supplier_id = 'V-AZURE' WHERE order_number = 'PO-0001';
INSERT INTO order_items (order_id, product_id, product_name, product_code, quantity, unit_price)
SELECT o.id, p.code, p.name, p.code, p.qty, p.price FROM orders o
CROSS JOIN (VALUES ('FURN_7777', 'Office Chair', 3, 12.50), ('FURN_8220', 'Large Desk', 1, 480.00)) p(code, name, qty, price);
SQL
echo "2 new orders, 6 lines (PO-0002 asks for delivery on 2026-12-15); the order that existed before tracking got its lines too"
wait_synced
say "Local side: odoo_sync.order_status"
status_table
say "Odoo side: purchase.order in the simulator"
show_odoo

say "Changes: ten edits of one order (coalesced), a line added, a quantity changed, an order deleted, a rollback"
run <<'SQL'
DO $$ BEGIN FOR i IN 1..10 LOOP UPDATE orders SET notes = 'edit ' || i WHERE order_number = 'PO-0002'; END LOOP; END $$;
UPDATE order_items SET quantity = 9, unit_price = 11.00 WHERE product_code = 'FURN_7777'
  AND order_id = (SELECT id FROM orders WHERE order_number = 'PO-0002');
INSERT INTO order_items (order_id, product_id, product_name, product_code, quantity, unit_price)
SELECT id, 'E-COM08', 'Storage Box', 'E-COM08', 6, 13.00 FROM orders WHERE order_number = 'PO-0001';
BEGIN; UPDATE orders SET notes = 'never committed' WHERE order_number = 'PO-0003'; ROLLBACK;
DELETE FROM orders WHERE order_number = 'PO-0003';
SQL
wait_synced
say "Local side after the changes"
status_table
say "Odoo side after the changes (PO-0003 cancelled; PO-0002's chair line now 9 x 11.00)"
show_odoo

odoo_id() {  # odoo_id MODEL FIELD VALUE: the id of the first record with FIELD = VALUE
  odoo "$1" search "[[[\"$2\",\"=\",$3]]]" '{"limit":1}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"][0])'
}
odoo_order() { odoo_id purchase.order origin "\"$1\""; }
odoo_line() {  # odoo_line ORIGIN PRODUCT_CODE: the Odoo line of that product in that order
  odoo purchase.order.line search \
    "[[[\"order_id\",\"=\",$(odoo_order "$1")],[\"product_id\",\"=\",$(odoo_id product.product default_code "\"$2\"")]]]" '{}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"][0])'
}
lines_table() {
  run -c "SELECT o.order_number, o.status, o.sync_status, i.product_code, i.quantity, i.unit_price
          FROM orders o JOIN order_items i ON i.order_id = o.id ORDER BY 1, 4"
}

say "Two-way: SELECT odoo_sync.start_realtime(); a buyer confirms PO-0001 in Odoo and edits a line of PO-0002"
run -c "SELECT odoo_sync.update_settings('{\"poll_interval_seconds\": 1}') IS NOT NULL AS settings" -c "SELECT odoo_sync.start_realtime()" >/dev/null
odoo purchase.order button_confirm "[[$(odoo_order PO-0001)]]" '{}' >/dev/null
odoo purchase.order.line write "[[$(odoo_line PO-0002 FURN_8220)], {\"product_qty\": 2, \"price_unit\": 470.0}]" '{}' >/dev/null
for _ in $(seq 1 100); do
  [ "$(run -At -c "SELECT count(*) FROM orders WHERE status = 'CONFIRMED'")" = 1 ] \
    && [ "$(run -At -c "SELECT count(*) FROM order_items WHERE unit_price = 470")" = 1 ] && break
  sleep 0.1
done
say "Local side: Odoo's changes arrived (no push went back: no echo)"
lines_table

say "A conflict: the app and the buyer change the same line to different quantities at the same time"
DESK=$(odoo_line PO-0002 FURN_8220)
BUYER_EDIT="curl -s -o /dev/null -X POST $SIM_URL/jsonrpc -H 'Content-Type: application/json' -d '{\"jsonrpc\":\"2.0\",\"method\":\"call\",\"id\":1,\"params\":{\"service\":\"object\",\"method\":\"execute_kw\",\"args\":[\"odoo\",2,\"admin\",\"purchase.order.line\",\"write\",[[$DESK],{\"product_qty\":7,\"price_unit\":470.0}],{}]}}'"
run <<SQL
BEGIN;
UPDATE order_items SET quantity = 5 WHERE product_code = 'FURN_8220' AND order_id = (SELECT id FROM orders WHERE order_number = 'PO-0002');
\\! $BUYER_EDIT
COMMIT;
SQL
for _ in $(seq 1 100); do
  [ "$(run -At -c "SELECT count(*) FROM odoo_sync.pending_conflicts")" != 0 ] && break
  sleep 0.1
done
run -c "SELECT conflict_type, local_order_id IS NOT NULL AS has_order, jsonb_pretty(field_diff) AS field_diff FROM odoo_sync.pending_conflicts"
say "SELECT odoo_sync.resolve_conflict(id, 'MERGE', '{\"lines.<item>.quantity\": 6}')"
run -c "SELECT odoo_sync.resolve_conflict(conflict_id, 'MERGE', jsonb_build_object(field_diff -> 0 ->> 'field', 6)) ->> 'sync_status' AS after
        FROM odoo_sync.pending_conflicts"
wait_synced
lines_table
say "Odoo side: PO-0002's desk line is 6 there too"
odoo purchase.order.line search_read "[[[\"order_id\",\"=\",$(odoo_order PO-0002)]]]" '{"fields":["name","product_qty","price_unit"],"order":"id"}' \
  | python3 -c 'import json,sys
for l in json.load(sys.stdin)["result"]:
    print("  %-20s %6.1f x %8.2f" % (l["name"], l["product_qty"], l["price_unit"]))'

say "Import: an order created in Odoo comes in with SELECT odoo_sync.import_orders('{\"states\": [\"draft\"]}')"
odoo purchase.order create "[{\"partner_id\": $(odoo_id res.partner ref '"V-READY"'), \"origin\": \"ODOO-ONLY\",
  \"order_line\": [[0, 0, {\"product_id\": $(odoo_id product.product default_code '"E-COM11"'), \"product_qty\": 4, \"price_unit\": 20.0}]]}]" '{}' >/dev/null
run -c "SELECT odoo_sync.stop_realtime()" >/dev/null
BATCH=$(run -At -c "SELECT odoo_sync.import_orders('{\"states\": [\"draft\"]}')")
for _ in $(seq 1 100); do
  [ "$(run -At -c "SELECT pending FROM odoo_sync.batch_status($BATCH)")" = 0 ] && break
  sleep 0.1
done
run -c "SELECT total, successful AS imported, skipped, failed FROM odoo_sync.batch_status($BATCH)"
status_table
say "odoo-sync-worker verify: every linked order compared with Odoo"
DATABASE_URL="$CONN dbname=$DB" ODOO_URL="$SIM_URL" ODOO_DB=odoo ODOO_USER=admin ODOO_API_KEY=odoo-sim-admin-api-key \
  ./target/debug/odoo-sync-worker verify || true

say "The event log (SELECT event_type, count(*) FROM odoo_sync.events GROUP BY 1)"
run -c "SELECT event_type, count(*) FROM odoo_sync.events GROUP BY 1 ORDER BY 1"
say "SELECT * FROM odoo_sync.health()"
run -c "SELECT * FROM odoo_sync.health()"
say "Odoo calls made by the worker (simulator counters)"
curl -s "$SIM_URL/__sim/stats"; echo
say "odoo-sync-worker status"
DATABASE_URL="$CONN dbname=$DB" ./target/debug/odoo-sync-worker status
kill -TERM "$WORKER_PID" 2>/dev/null; wait "$WORKER_PID" 2>/dev/null || true
rm -f "$WORKER_LOG"
say "Done."
