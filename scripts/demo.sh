#!/usr/bin/env bash
# make demo: the main job on embedded defaults — a private PostgreSQL cluster and the bundled
# Odoo simulator, both started here and stopped at the end.
#
# What it shows today: the database noticing every committed change of an application's
# orders on its own (capture, coalescing, tombstones, events, write-back columns) and the queue
# a worker drains; and the Odoo simulator that the worker talks to. The worker that pushes the
# queue to Odoo is the next step (issue "Worker: push").
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/pg.sh start
SIM_PID=""
cleanup() {
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
INSERT INTO orders (order_number, supplier_id, supplier_name) VALUES ('PO-0001', 'SUP-AZURE', 'Azure Interior');
SQL
echo "created; one order existed before odoo_sync was attached"

say "CREATE EXTENSION odoo_sync; SELECT odoo_sync.track_orders('orders', 'order_items')"
run -c "CREATE EXTENSION odoo_sync" -c "SELECT jsonb_pretty(odoo_sync.track_orders('orders', 'order_items') - 'orders' - 'items') AS tracking"

say "The application writes orders as usual (no sync code in the app)"
run <<'SQL'
INSERT INTO orders (order_number, supplier_id, supplier_name) VALUES
  ('PO-0002', 'SUP-GEMINI', 'Gemini Furniture'), ('PO-0003', 'SUP-DECO', 'Deco Addict');
INSERT INTO order_items (order_id, product_id, product_name, product_code, quantity, unit_price)
SELECT o.id, p.code, p.name, p.code, p.qty, p.price FROM orders o
CROSS JOIN (VALUES ('FURN_7777', 'Office Chair', 3, 12.50), ('FURN_8888', 'Office Lamp', 2, 40.00)) p(code, name, qty, price)
WHERE o.order_number IN ('PO-0002', 'PO-0003');
-- Ten edits of one order before any worker runs: they coalesce into one job.
DO $$ BEGIN FOR i IN 1..10 LOOP UPDATE orders SET notes = 'edit ' || i WHERE order_number = 'PO-0002'; END LOOP; END $$;
-- A rolled-back change leaves no trace.
BEGIN; UPDATE orders SET notes = 'never committed' WHERE order_number = 'PO-0003'; ROLLBACK;
-- A deleted order keeps a tombstone so the worker can cancel it in Odoo.
DELETE FROM orders WHERE order_number = 'PO-0003';
SQL
echo "3 inserts, 4 item inserts, 10 updates, 1 rolled-back update, 1 delete"

say "SELECT order_number, sync_status FROM orders   -- write-back column kept by odoo_sync"
run -c "SELECT order_number, sync_status, odoo_order_id FROM orders ORDER BY order_number"

say "SELECT ... FROM odoo_sync.order_status"
run -c "SELECT order_number, sync_status, deleted, job_id, job_state, attempts, odoo_order_id FROM odoo_sync.order_status ORDER BY order_number"

say "SELECT ... FROM odoo_sync.queue   -- one push job per order, however many changes"
run -c "SELECT q.job_id, q.kind, q.state, o.order_number, q.attempts, date_trunc('second', q.age) AS age
        FROM odoo_sync.queue q JOIN odoo_sync.order_status o ON o.local_order_id = q.local_order_id ORDER BY q.job_id"

say "The event log (SELECT event_type, count(*) FROM odoo_sync.events GROUP BY 1)"
run -c "SELECT event_type, count(*) FROM odoo_sync.events GROUP BY 1 ORDER BY 1"

say "batch_sync_pending(): enqueue the order that existed before tracking"
run -c "SELECT * FROM odoo_sync.batch_status(odoo_sync.batch_sync_pending(100))"

say "SELECT * FROM odoo_sync.health()   -- no worker yet, so Odoo is DISCONNECTED and the queue FAILED"
run -c "SELECT * FROM odoo_sync.health()"

say "The bundled Odoo simulator (odoo-sim), as the worker will see it"
cargo build -q -p odoo_sync_tests --bin odoo-sim
SIM_OUT=$(mktemp)
./target/debug/odoo-sim --listen 127.0.0.1:0 >"$SIM_OUT" 2>/dev/null &
SIM_PID=$!
for _ in $(seq 1 50); do grep -q listening "$SIM_OUT" && break; sleep 0.1; done
SIM_URL=$(head -1 "$SIM_OUT" | awk '{print $NF}')
echo "odoo-sim $SIM_URL"
curl -s "$SIM_URL/web/version"; echo
curl -s -X POST "$SIM_URL/jsonrpc" -H 'Content-Type: application/json' -d '{"jsonrpc":"2.0","method":"call","id":1,"params":{"service":"object","method":"execute_kw","args":["odoo",2,"admin","res.partner","search_read",[[["supplier_rank",">",0]]],{"fields":["name","ref"],"limit":5}]}}'
echo
rm -f "$SIM_OUT"
say "Done. The worker (next issue) drains this queue into odoo-sim or a real Odoo."
