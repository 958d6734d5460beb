//! Pull benchmark: the two-way sync's costs, on a real PostgreSQL and the in-process Odoo
//! simulator, each against a baseline measured in the same run.
//!
//! ```sh
//! bash scripts/pg.sh start
//! export ODOO_SYNC_TEST_PG="$(bash scripts/pg.sh url)"
//! cargo run --release -p odoo-sync-worker --example pull_bench          # 500 orders
//! cargo run --release -p odoo-sync-worker --example pull_bench -- 1000  # orders
//! ```
//!
//! - **conflict check**: `apply_remote` of an Odoo order (5 lines) that changed one price,
//!   i.e. lock, three-way comparison and the write of one local line, per order; baseline:
//!   `order_document` of the same order (what every push reads anyway);
//! - **pull throughput**: N orders of 5 lines imported, one Odoo `write` changes a price on
//!   every line, then one realtime poll (`poll_once`) reads and applies them all: Odoo orders
//!   applied per second at 0 ms and 20 ms of simulator latency; baseline: the same poll when
//!   nothing changed in the database (the Odoo reads alone).

use std::time::{Duration, Instant};

use odoo_sync_tests::pg_cluster::{common_schema, TestDb};
use odoo_sync_tests::sim::{self, SimConfig};
use odoo_sync_worker::odoo::{Domain, OdooClient, OdooConfig, Secret, SecretKind};
use odoo_sync_worker::pull::poll::{poll_once, PollSettings};
use odoo_sync_worker::pull::remote::fetch;
use odoo_sync_worker::run::run_once;
use serde_json::{json, Value};

fn settings() -> PollSettings {
    PollSettings {
        enabled: true,
        interval: Duration::from_secs(1),
        overlap: Duration::from_secs(120),
        reconcile_every: Duration::from_secs(3600),
        max_pages: odoo_sync_worker::pull::poll::MAX_PAGES,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500);
    let mut db = TestDb::new("pull_bench").await;
    db.client
        .batch_execute(&common_schema("bigint"))
        .await
        .expect("schema");
    db.client
        .execute(
            "SELECT odoo_sync.track_orders('orders', 'order_items')",
            &[],
        )
        .await
        .expect("track");
    let role = db.create_role("worker", &["odoo_sync_worker"]).await;
    let worker = db.connect_as(&role).await;
    let sim = sim::spawn(SimConfig::default()).await.expect("simulator");
    let mut config = OdooConfig::new(
        &sim.url(),
        "odoo",
        "admin",
        Secret::new(sim::DEFAULT_API_KEY),
        SecretKind::ApiKey,
    )
    .expect("config");
    config.request_timeout = Duration::from_secs(60);
    let odoo = OdooClient::new(config).expect("client");

    // N Odoo orders of 5 lines, imported (linked) here.
    let partner = odoo
        .search("res.partner", &Domain::eq("ref", "V-WOOD"), None, None)
        .await
        .expect("partner")[0];
    let products = odoo
        .search("product.product", &Domain::all(), Some(5), Some("id"))
        .await
        .expect("products");
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let vals: Vec<Value> = chunk
            .iter()
            .map(|k| {
                let lines: Vec<Value> = products
                    .iter()
                    .enumerate()
                    .map(|(j, p)| json!([0, 0, {"product_id": p, "product_qty": 1 + j + k % 7, "price_unit": 10.0 + j as f64}]))
                    .collect();
                json!({"partner_id": partner, "order_line": lines})
            })
            .collect();
        odoo.create("purchase.order", &vals).await.expect("create");
    }
    db.client
        .execute(
            "SELECT odoo_sync.import_orders('{\"date_from\": \"2000-01-01\"}')",
            &[],
        )
        .await
        .expect("import");
    let started = Instant::now();
    while run_once(&worker, &odoo, "bench", 50).await.expect("run") > 0 {}
    let imported: i64 = db
        .client
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .expect("count")
        .get(0);
    println!(
        "import: {imported} orders of 5 lines in {:.2} s ({:.0} orders/s)",
        started.elapsed().as_secs_f64(),
        imported as f64 / started.elapsed().as_secs_f64()
    );

    // Conflict check per order, against reading the order document.
    let ids: Vec<i64> = odoo
        .search("purchase.order", &Domain::all(), None, Some("id"))
        .await
        .expect("ids");
    let mut docs = fetch(&worker, &odoo, &ids).await.expect("fetch");
    for d in &mut docs {
        // One price changed in Odoo: a real merge writes one local line.
        d["lines"][0]["unit_price"] = json!("99.5");
    }
    let keys: Vec<(i32, String)> = db
        .client
        .query(
            "SELECT tracking_id, order_key FROM odoo_sync.order_state ORDER BY odoo_id",
            &[],
        )
        .await
        .expect("keys")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let t = Instant::now();
    for (tracking, key) in &keys {
        worker
            .query_one("SELECT odoo_sync.order_document($1, $2)", &[tracking, key])
            .await
            .expect("order_document");
    }
    let baseline = t.elapsed().as_secs_f64() / keys.len() as f64;
    let t = Instant::now();
    for d in &docs {
        worker
            .query_one("SELECT odoo_sync.apply_remote($1)", &[d])
            .await
            .expect("apply_remote");
    }
    let check = t.elapsed().as_secs_f64() / docs.len() as f64;
    println!(
        "conflict check (apply_remote, 5 lines, one line merged): {:.2} ms/order; baseline order_document {:.2} ms/order; ratio {:.1}x",
        check * 1000.0,
        baseline * 1000.0,
        check / baseline
    );

    // Pull throughput: one Odoo write changes every line, one poll applies every order.
    let c = sim::client::Client::new(&sim.url());
    poll_once(&worker, &odoo, &settings())
        .await
        .expect("first poll");
    for latency in [0u64, 20] {
        c.post("/__sim/faults", &json!({"latency_ms": latency}))
            .await
            .expect("faults");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let lines = odoo
            .search("purchase.order.line", &Domain::all(), None, None)
            .await
            .expect("lines");
        odoo.write(
            "purchase.order.line",
            &lines,
            &json!({"price_unit": 20.0 + latency as f64}),
        )
        .await
        .expect("write");
        let t = Instant::now();
        let report = poll_once(&worker, &odoo, &settings()).await.expect("poll");
        let changed = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let again = poll_once(&worker, &odoo, &settings()).await.expect("poll");
        let unchanged = t.elapsed().as_secs_f64();
        println!(
            "pull at {latency} ms latency: {} orders applied in {:.2} s = {:.0} orders/s; same poll with nothing to change ({} orders read): {:.2} s = {:.0} orders/s; ratio {:.2}x",
            report.outcomes.get("applied").copied().unwrap_or(0),
            changed,
            report.handed as f64 / changed,
            again.handed,
            unchanged,
            again.handed as f64 / unchanged.max(1e-9),
            changed / unchanged.max(1e-9)
        );
    }
    drop(worker);
    let _ = sim.stop().await;
    db.finish().await;
}
