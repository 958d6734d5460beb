# The tables and triggers the capture benchmarks compare (sourced by capture.sh and
# capture_instructions.sh, so both measure the same thing). Needs ORDERS set.

# The application's tables, with ORDERS orders.
bench_schema="CREATE TABLE orders (id bigint PRIMARY KEY, order_number text, supplier_id text NOT NULL,
          status text, grand_total numeric(12,2), notes text, sync_status text, odoo_order_id integer,
          last_synced_at timestamptz, updated_at timestamptz DEFAULT now());
        CREATE TABLE order_items (id bigint PRIMARY KEY, order_id bigint REFERENCES orders, product_id text,
          quantity numeric, unit_price numeric);
        CREATE INDEX order_items_order_id ON order_items (order_id);
        INSERT INTO orders (id, order_number, supplier_id, status, grand_total)
          SELECT g, 'PO-' || g, 'S' || (g % 10), 'DRAFT', g FROM generate_series(1, $ORDERS) g;"

# naive_trigger SQL: the naive queue trigger, with $1 as an extra statement after its INSERT.
naive_trigger() {
  echo "CREATE TABLE naive_queue (id bigserial PRIMARY KEY, order_id bigint NOT NULL, op text NOT NULL,
                            created_at timestamptz NOT NULL DEFAULT now());
  CREATE FUNCTION naive_enqueue() RETURNS trigger LANGUAGE plpgsql AS \$\$
  BEGIN
    INSERT INTO naive_queue (order_id, op) VALUES (NEW.id, TG_OP);$1
    RETURN NEW;
  END \$\$;
  CREATE TRIGGER naive_enqueue AFTER UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION naive_enqueue();"
}

# The tracking that odoo_sync's variant adds.
tracked_sql="CREATE EXTENSION odoo_sync; SELECT odoo_sync.track_orders('orders', 'order_items');"

# bench_loop(n): n single-row updates, each committed, inside one backend (no client round trip).
loop_sql="CREATE PROCEDURE bench_loop(n int) LANGUAGE plpgsql AS \$\$
  BEGIN FOR i IN 1..n LOOP
    UPDATE orders SET notes = 'loop ' || i WHERE id = 1 + (i::bigint * 7919) % $ORDERS; COMMIT;
  END LOOP; END \$\$"
