//! Push benchmark: the batched worker against a naive baseline, in one run, on a real
//! PostgreSQL and the in-process Odoo simulator.
//!
//! ```sh
//! bash scripts/pg.sh start
//! export ODOO_SYNC_TEST_PG="$(bash scripts/pg.sh url)"
//! cargo run --release -p odoo-sync-worker --example push_bench            # 500 orders
//! cargo run --release -p odoo-sync-worker --example push_bench -- 1000 60 # orders, samples
//! ```
//!
//! For 0 ms and 20 ms of injected latency (`POST /__sim/faults {"latency_ms": ..}`):
//! - **batched**: N orders of 5 lines are committed (one job each), then drained by
//!   `run_batch_with` (200 jobs per claim, 4 chunks in flight): orders/s from the first claim to
//!   the last completed job, RPCs per order from the simulator's `/__sim/stats` total;
//! - **naive**: one order at a time — read it from PostgreSQL, create it in Odoo with one
//!   `create` call (partner/product ids known in advance, to the baseline's advantage), write
//!   the id back with an UPDATE;
//! - **updates**: then one line of each of those orders is edited (one statement) and drained
//!   the same way, against a naive update of the baseline's orders: read the order's lines in
//!   Odoo and write them all by id (two calls per order). An update push reads the order's
//!   `write_date` in Odoo first and merges Odoo's side when it may have moved;
//! - **commit-to-Odoo latency**: with the worker loop running (woken by LISTEN/NOTIFY), one
//!   order is committed at a time and timed until its row reads `SYNCED` (the job is done and
//!   the Odoo id written back); p50 and p99.

use std::sync::Arc;
use std::time::{Duration, Instant};

use odoo_sync_tests::pg_cluster::{common_schema, TestDb};
use odoo_sync_tests::sim::{self, SimConfig};
use odoo_sync_worker::odoo::{Domain, OdooClient, OdooConfig, Secret, SecretKind};
use odoo_sync_worker::push::resolve::Resolver;
use odoo_sync_worker::run::{run, run_batch_with, spawn_listener, FinishPool, RunOptions};

/// Extra connections that finish jobs, as `odoo-sync-worker run` opens them
/// (`PUSH_BENCH_FINISHERS` overrides, e.g. 0 to compare with one connection).
fn finisher_count() -> usize {
    std::env::var("PUSH_BENCH_FINISHERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_postgres::Client;

const VENDORS: &str = "ARRAY['V-GEMINI','V-WOOD','V-AZURE','V-DECO','V-READY']";
const PRODUCTS: [&str; 8] = [
    "FURN_7777",
    "FURN_0269",
    "FURN_8220",
    "FURN_0001",
    "FURN_8900",
    "E-COM11",
    "E-COM08",
    "FURN_0002",
];

fn products_array() -> String {
    let quoted: Vec<String> = PRODUCTS.iter().map(|p| format!("'{p}'")).collect();
    format!("ARRAY[{}]", quoted.join(","))
}

/// Inserts `n` orders of 5 lines into `orders`/`order_items` (`prefix` keeps numbers apart).
async fn insert_orders(pg: &Client, table: &str, items: &str, prefix: &str, n: i64) {
    let sql = format!(
        "WITH o AS (
            INSERT INTO {table} (order_number, supplier_id, supplier_name)
            SELECT '{prefix}-' || g, ({VENDORS})[1 + g % 5], NULL FROM generate_series(1, $1::bigint) g
            RETURNING id)
         INSERT INTO {items} (order_id, product_id, product_code, quantity, unit_price)
         SELECT o.id, p.code, p.code, 1 + j, 10 + j * 3.25
         FROM o CROSS JOIN generate_series(0, 4) j
         CROSS JOIN LATERAL (SELECT ({products})[1 + ((o.id + j * 3) % 8)::int] AS code) p",
        products = products_array()
    );
    pg.execute(&sql, &[&n]).await.expect("insert orders");
}

/// Raises the quantity of the first line of every order numbered `prefix-*` (one statement).
async fn edit_orders(pg: &Client, table: &str, items: &str, prefix: &str) -> u64 {
    let sql = format!(
        "UPDATE {items} i SET quantity = i.quantity + 1
         FROM (SELECT DISTINCT ON (it.order_id) it.id FROM {items} it JOIN {table} o ON o.id = it.order_id
               WHERE o.order_number LIKE $1 ORDER BY it.order_id, it.id) f
         WHERE i.id = f.id"
    );
    pg.execute(&sql, &[&format!("{prefix}-%")])
        .await
        .expect("edit orders")
}

async fn set_latency(url: &str, ms: u64) {
    let c = sim::client::Client::new(url);
    c.post("/__sim/faults", &json!({"latency_ms": ms}))
        .await
        .expect("faults");
}

struct Row {
    latency: u64,
    /// "create" or "update".
    kind: &'static str,
    mode: &'static str,
    orders: usize,
    secs: f64,
    rpcs: u64,
}

async fn bulk(pg: &Client, odoo: &OdooClient, n: usize, finishers: FinishPool) -> f64 {
    let mut resolver = Resolver::new();
    let options = RunOptions {
        max_jobs: 200,
        concurrency: 4,
        finishers,
        ..RunOptions::default()
    };
    let started = Instant::now();
    let mut done = 0;
    loop {
        let reports = run_batch_with(pg, odoo, &mut resolver, "bench-worker", &options)
            .await
            .expect("batch");
        if reports.is_empty() {
            break;
        }
        done += reports.iter().filter(|r| r.state == "done").count();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(done, n, "every order synced");
    secs
}

async fn naive(pg: &Client, odoo: &OdooClient, partners: &Value, products: &Value) -> usize {
    let ids: Vec<i64> = pg
        .query(
            "SELECT id FROM naive_orders WHERE odoo_order_id IS NULL ORDER BY id",
            &[],
        )
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for id in &ids {
        let order = pg
            .query_one(
                "SELECT order_number, supplier_id FROM naive_orders WHERE id = $1",
                &[id],
            )
            .await
            .expect("order");
        let items = pg
            .query(
                "SELECT product_code, quantity::text, unit_price::text FROM naive_items WHERE order_id = $1 ORDER BY id",
                &[id],
            )
            .await
            .expect("items");
        let supplier: String = order.get(1);
        let lines: Vec<Value> = items
            .iter()
            .map(|r| {
                let code: String = r.get(0);
                let qty: String = r.get(1);
                let price: String = r.get(2);
                json!([0, 0, {"product_id": products[code.as_str()], "product_qty": qty.parse::<f64>().unwrap_or(0.0),
                              "price_unit": price.parse::<f64>().unwrap_or(0.0)}])
            })
            .collect();
        let vals = json!({"partner_id": partners[supplier.as_str()], "origin": order.get::<_, String>(0),
                          "order_line": lines});
        let created = odoo
            .create("purchase.order", &[vals])
            .await
            .expect("create");
        pg.execute(
            "UPDATE naive_orders SET odoo_order_id = $2 WHERE id = $1",
            &[id, &(created[0] as i32)],
        )
        .await
        .expect("write back");
    }
    ids.len()
}

/// The naive baseline's update: per order, its lines' ids from Odoo, then one `write` of every
/// line's quantity and price by id.
async fn naive_update(pg: &Client, odoo: &OdooClient) -> usize {
    let orders = pg
        .query(
            "SELECT id, odoo_order_id FROM naive_orders WHERE odoo_order_id IS NOT NULL ORDER BY id",
            &[],
        )
        .await
        .expect("linked orders");
    for order in &orders {
        let id: i64 = order.get(0);
        let odoo_id = i64::from(order.get::<_, i32>(1));
        let items = pg
            .query(
                "SELECT quantity::text, unit_price::text FROM naive_items WHERE order_id = $1 ORDER BY id",
                &[&id],
            )
            .await
            .expect("items");
        let read = odoo
            .read("purchase.order", &[odoo_id], &["order_line"])
            .await
            .expect("read lines");
        let mut line_ids: Vec<i64> = read
            .first()
            .and_then(|r| r["order_line"].as_array())
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        // Created in item order: ascending ids match the items by position.
        line_ids.sort_unstable();
        let lines: Vec<Value> = items
            .iter()
            .zip(&line_ids)
            .map(|(r, line)| {
                let qty: String = r.get(0);
                let price: String = r.get(1);
                json!([1, line, {"product_qty": qty.parse::<f64>().unwrap_or(0.0),
                                 "price_unit": price.parse::<f64>().unwrap_or(0.0)}])
            })
            .collect();
        odoo.write("purchase.order", &[odoo_id], &json!({"order_line": lines}))
            .await
            .expect("write");
    }
    orders.len()
}

async fn id_map(odoo: &OdooClient, model: &str, field: &str) -> Value {
    let rows = odoo
        .search_read(model, &Domain::all(), &[field], 0, None, Some("id"))
        .await
        .expect("ids");
    let mut m = serde_json::Map::new();
    for r in rows {
        if let (Some(k), Some(id)) = (r[field].as_str(), r["id"].as_i64()) {
            m.entry(k.to_string()).or_insert(json!(id));
        }
    }
    Value::Object(m)
}

async fn fresh_sim() -> (sim::SimHandle, OdooClient) {
    let simh = sim::spawn(SimConfig::default()).await.expect("simulator");
    let mut config = OdooConfig::new(
        &simh.url(),
        "odoo",
        "admin",
        Secret::new(sim::DEFAULT_API_KEY),
        SecretKind::ApiKey,
    )
    .expect("config");
    config.request_timeout = Duration::from_secs(120);
    let odoo = OdooClient::new(config).expect("client");
    odoo.connect().await.expect("connect");
    (simh, odoo)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let samples: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);

    let mut db = TestDb::new("push_bench").await;
    db.client
        .batch_execute(&common_schema("bigint"))
        .await
        .expect("schema");
    db.client
        .batch_execute(
            "CREATE TABLE naive_orders (LIKE orders INCLUDING ALL);
             CREATE TABLE naive_items (LIKE order_items INCLUDING ALL);",
        )
        .await
        .expect("naive tables");
    db.client
        .execute(
            "SELECT odoo_sync.track_orders('orders', 'order_items', '{}'::jsonb)",
            &[],
        )
        .await
        .expect("track_orders");
    let role = db.create_role("worker", &["odoo_sync_worker"]).await;
    let worker = db.connect_as(&role).await;
    let (simh, odoo) = fresh_sim().await;
    let partners = id_map(&odoo, "res.partner", "ref").await;
    let products = id_map(&odoo, "product.product", "default_code").await;
    drop(simh);

    let mut rows = Vec::new();
    for latency in [0u64, 20] {
        // Each measurement starts from a fresh simulator (its costs grow with its data).
        let (simh, odoo) = fresh_sim().await;
        set_latency(&simh.url(), latency).await;
        // Batched worker.
        insert_orders(
            &db.client,
            "orders",
            "order_items",
            &format!("B{latency}"),
            n as i64,
        )
        .await;
        simh.sim.reset_stats();
        let mut finishers = Vec::new();
        for _ in 0..finisher_count() {
            finishers.push(Arc::new(db.connect_as(&role).await));
        }
        let finishers = FinishPool(finishers);
        let secs = bulk(&worker, &odoo, n, finishers.clone()).await;
        rows.push(Row {
            latency,
            kind: "create",
            mode: "batched",
            orders: n,
            secs,
            rpcs: simh.sim.stats_json()["total"].as_u64().unwrap_or(0),
        });
        // The same orders, one line each edited.
        let edited = edit_orders(&db.client, "orders", "order_items", &format!("B{latency}")).await;
        assert_eq!(edited, n as u64, "one line of every order edited");
        simh.sim.reset_stats();
        let secs = bulk(&worker, &odoo, n, finishers).await;
        rows.push(Row {
            latency,
            kind: "update",
            mode: "batched",
            orders: n,
            secs,
            rpcs: simh.sim.stats_json()["total"].as_u64().unwrap_or(0),
        });
        let _ = simh.stop().await;
        let (simh, odoo) = fresh_sim().await;
        set_latency(&simh.url(), latency).await;
        // Naive baseline (fewer orders at 20 ms: it is slow).
        let naive_n = if latency == 0 { n } else { (n / 5).max(20) };
        insert_orders(
            &db.client,
            "naive_orders",
            "naive_items",
            &format!("N{latency}"),
            naive_n as i64,
        )
        .await;
        simh.sim.reset_stats();
        let started = Instant::now();
        let done = naive(&db.client, &odoo, &partners, &products).await;
        rows.push(Row {
            latency,
            kind: "create",
            mode: "naive",
            orders: done,
            secs: started.elapsed().as_secs_f64(),
            rpcs: simh.sim.stats_json()["total"].as_u64().unwrap_or(0),
        });
        edit_orders(
            &db.client,
            "naive_orders",
            "naive_items",
            &format!("N{latency}"),
        )
        .await;
        simh.sim.reset_stats();
        let started = Instant::now();
        let done = naive_update(&db.client, &odoo).await;
        rows.push(Row {
            latency,
            kind: "update",
            mode: "naive",
            orders: done,
            secs: started.elapsed().as_secs_f64(),
            rpcs: simh.sim.stats_json()["total"].as_u64().unwrap_or(0),
        });
        // The next round's baseline starts with none of these orders.
        db.client
            .execute("DELETE FROM naive_items", &[])
            .await
            .expect("clear naive items");
        db.client
            .execute("DELETE FROM naive_orders", &[])
            .await
            .expect("clear naive orders");
        let _ = simh.stop().await;
    }

    // Commit-to-Odoo latency, worker loop running and woken by NOTIFY.
    let (simh, odoo) = fresh_sim().await;
    let wake = Arc::new(Notify::new());
    let listener = spawn_listener(db.conninfo(), wake.clone());
    let loop_pg = db.connect_as(&role).await;
    let loop_odoo = odoo.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = RunOptions {
        wake: Some(wake),
        poll_interval: Duration::from_secs(5),
        ..RunOptions::default()
    };
    let worker_loop = tokio::spawn(async move {
        run(&loop_pg, &loop_odoo, "bench-loop", &options, async {
            let _ = stopped.await;
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        let id: i64 = db
            .client
            .query(
                &format!(
                    "WITH o AS (INSERT INTO orders (order_number, supplier_id) VALUES ($1, 'V-WOOD') RETURNING id)
                     INSERT INTO order_items (order_id, product_id, product_code, quantity, unit_price)
                     SELECT o.id, c, c, 2, 12.5 FROM o, unnest({}) c LIMIT 5 RETURNING order_id",
                    products_array()
                ),
                &[&format!("L-{i}")],
            )
            .await
            .expect("commit")
            .first()
            .map(|r| r.get(0))
            .expect("order id");
        loop {
            let s: Option<String> = db
                .client
                .query_one("SELECT sync_status FROM orders WHERE id = $1", &[&id])
                .await
                .expect("status")
                .get(0);
            if s.as_deref() == Some("SYNCED") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "order {id} not synced"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lat.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = stop.send(());
    let _ = worker_loop.await;
    listener.abort();
    lat.sort_by(|a, b| a.total_cmp(b));

    println!();
    println!("push benchmark: {n} orders x 5 lines, in-process simulator, PostgreSQL at ODOO_SYNC_TEST_PG");
    println!(
        "{:>8} | {:<6} | {:<8} | {:>6} | {:>8} | {:>9} | {:>9} | {:>8}",
        "latency", "kind", "mode", "orders", "seconds", "orders/s", "RPC/order", "speed-up"
    );
    println!("{}", "-".repeat(83));
    for latency in [0u64, 20] {
        for kind in ["create", "update"] {
            let naive_rate = rows
                .iter()
                .find(|r| r.latency == latency && r.kind == kind && r.mode == "naive")
                .map(|r| r.orders as f64 / r.secs)
                .unwrap_or(f64::NAN);
            for r in rows
                .iter()
                .filter(|r| r.latency == latency && r.kind == kind)
            {
                let rate = r.orders as f64 / r.secs;
                println!(
                    "{:>6}ms | {:<6} | {:<8} | {:>6} | {:>8.3} | {:>9.1} | {:>9.3} | {:>7.1}x",
                    r.latency,
                    r.kind,
                    r.mode,
                    r.orders,
                    r.secs,
                    rate,
                    r.rpcs as f64 / r.orders.max(1) as f64,
                    rate / naive_rate
                );
            }
        }
    }
    println!();
    println!(
        "commit-to-Odoo latency at 0 ms ({} single orders, loop woken by NOTIFY): p50 {:.1} ms, p99 {:.1} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    let _ = simh.stop().await;
    db.finish().await;
}
