//! The push worker end to end: real PostgreSQL with the extension, real Odoo simulator.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use odoo_sync_tests::pg_cluster::{common_schema, TestDb};
use odoo_sync_tests::sim::{self, SimConfig, SimHandle};
use odoo_sync_worker::odoo::money::{money, quantity};
use odoo_sync_worker::odoo::{Domain, OdooClient, OdooConfig, Secret, SecretKind};
use odoo_sync_worker::push::order_push::push_order;
use odoo_sync_worker::push::resolve::{CacheStatus, ProductRef, Resolver};
use odoo_sync_worker::queue;
use odoo_sync_worker::run::{run, run_once, spawn_listener, RunOptions};
use rust_decimal::Decimal;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_postgres::Client;

const VENDORS: [(&str, &str); 5] = [
    ("V-GEMINI", "Gemini Furniture"),
    ("V-WOOD", "Wood Corner"),
    ("V-AZURE", "Azure Interior"),
    ("V-DECO", "Deco Addict"),
    ("V-READY", "Ready Mat"),
];
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

struct Env {
    db: TestDb,
    worker: Client,
    sim: SimHandle,
    odoo: OdooClient,
}

async fn setup(label: &str) -> Env {
    setup_version(label, 19).await
}

async fn setup_version(label: &str, version: u8) -> Env {
    let mut db = TestDb::new(label).await;
    db.client
        .batch_execute(&common_schema("bigint"))
        .await
        .expect("schema");
    db.client
        .execute(
            "SELECT odoo_sync.track_orders('orders', 'order_items', '{}'::jsonb)",
            &[],
        )
        .await
        .expect("track_orders");
    let role = db.create_role("worker", &["odoo_sync_worker"]).await;
    let worker = db.connect_as(&role).await;
    let sim = sim::spawn(SimConfig {
        version,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let mut config = OdooConfig::new(
        &sim.url(),
        "odoo",
        "admin",
        Secret::new(sim::DEFAULT_API_KEY),
        SecretKind::ApiKey,
    )
    .expect("config");
    config.request_timeout = Duration::from_secs(20);
    let odoo = OdooClient::new(config).expect("client");
    Env {
        db,
        worker,
        sim,
        odoo,
    }
}

impl Env {
    async fn finish(self) {
        drop(self.worker);
        let _ = self.sim.stop().await;
        self.db.finish().await;
    }

    /// Inserts order `n` with `lines` (product code, quantity, price); returns its key.
    async fn insert_order(&self, n: usize, vendor: usize, lines: &[(&str, &str, &str)]) -> i64 {
        let (vid, vname) = VENDORS[vendor % VENDORS.len()];
        let row = self
            .db
            .client
            .query_one(
                "INSERT INTO orders (order_number, supplier_id, supplier_name) VALUES ($1, $2, $3) RETURNING id",
                &[&format!("PO-{n}"), &vid, &vname],
            )
            .await
            .expect("insert order");
        let id: i64 = row.get(0);
        for (code, qty, price) in lines {
            self.db
                .client
                .execute(
                    "INSERT INTO order_items (order_id, product_id, product_code, quantity, unit_price) \
                     VALUES ($1, $2, $2, $3::text::numeric, $4::text::numeric)",
                    &[&id, code, qty, price],
                )
                .await
                .expect("insert item");
        }
        id
    }

    /// Runs batches until no job is ready.
    async fn drain(&self) {
        for _ in 0..200 {
            let n = run_once(&self.worker, &self.odoo, "test-worker", 25)
                .await
                .expect("run_once");
            if n == 0 {
                return;
            }
        }
        panic!("queue did not drain");
    }

    async fn status(&self, id: i64) -> (Option<String>, Option<i32>) {
        let r = self
            .db
            .client
            .query_one(
                "SELECT sync_status, odoo_order_id FROM orders WHERE id = $1",
                &[&id],
            )
            .await
            .expect("status");
        (r.get(0), r.get(1))
    }

    async fn id_by(&self, model: &str, field: &str, value: &str) -> i64 {
        let ids = self
            .odoo
            .search(model, &Domain::eq(field, value), None, None)
            .await
            .expect("search");
        assert_eq!(ids.len(), 1, "{model} {field}={value}");
        ids[0]
    }

    /// Odoo lines of an order: product id → (qty, price).
    async fn odoo_lines(&self, odoo_id: i64) -> Vec<(i64, Decimal, Decimal)> {
        let rows = self
            .odoo
            .search_read(
                "purchase.order.line",
                &Domain::eq("order_id", odoo_id),
                &["product_id", "product_qty", "price_unit"],
                0,
                None,
                Some("id"),
            )
            .await
            .expect("lines");
        rows.iter()
            .map(|r| {
                (
                    m2o(&r["product_id"]),
                    quantity(&r["product_qty"], "qty").expect("qty"),
                    money(&r["price_unit"], "price").expect("price"),
                )
            })
            .collect()
    }

    async fn odoo_order(&self, odoo_id: i64) -> serde_json::Map<String, Value> {
        self.odoo
            .read(
                "purchase.order",
                &[odoo_id],
                &["partner_id", "origin", "state", "name"],
            )
            .await
            .expect("read order")
            .remove(0)
    }
}

fn m2o(v: &Value) -> i64 {
    v.as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_i64)
        .or_else(|| v.as_i64())
        .expect("many2one")
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal")
}

fn lines_for(n: usize) -> Vec<(&'static str, String, String)> {
    (0..3)
        .map(|j| {
            (
                PRODUCTS[(n + j * 3) % PRODUCTS.len()],
                // Two decimals, as Odoo keeps quantities by default.
                format!("{}.{:02}", n + j + 1, (n * 7 + j) % 100),
                format!("{}.{:02}", 10 + n * 3 + j, (n * 13 + j) % 100),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_orders_arrive_in_odoo_and_are_synced() {
    let env = setup("push_many").await;
    let mut expected = BTreeMap::new();
    for n in 0..20 {
        let lines = lines_for(n);
        let refs: Vec<(&str, &str, &str)> = lines
            .iter()
            .map(|(p, q, u)| (*p, q.as_str(), u.as_str()))
            .collect();
        let id = env.insert_order(n, n, &refs).await;
        expected.insert(id, (n, lines));
    }
    env.drain().await;
    let mut odoo_ids = Vec::new();
    for (id, (n, lines)) in &expected {
        let (status, odoo_id) = env.status(*id).await;
        assert_eq!(status.as_deref(), Some("SYNCED"), "order {id}");
        let odoo_id = i64::from(odoo_id.expect("odoo id written back"));
        odoo_ids.push(odoo_id);
        let order = env.odoo_order(odoo_id).await;
        assert_eq!(order["origin"], format!("PO-{n}"));
        let partner = env.id_by("res.partner", "ref", VENDORS[n % 5].0).await;
        assert_eq!(m2o(&order["partner_id"]), partner);
        let got = env.odoo_lines(odoo_id).await;
        let mut want = Vec::new();
        for (code, qty, price) in lines {
            let product = env.id_by("product.product", "default_code", code).await;
            want.push((product, d(qty), d(price)));
        }
        let norm = |mut v: Vec<(i64, Decimal, Decimal)>| {
            v.iter_mut().for_each(|x| {
                x.1 = x.1.normalize();
                x.2 = x.2.normalize();
            });
            v.sort();
            v
        };
        assert_eq!(norm(got), norm(want), "lines of order {n}");
    }
    odoo_ids.sort();
    odoo_ids.dedup();
    assert_eq!(odoo_ids.len(), 20, "one Odoo order per local order");
    let all = env
        .odoo
        .search(
            "purchase.order",
            &Domain::is_in(
                "origin",
                (0..20).map(|n| format!("PO-{n}")).collect::<Vec<_>>(),
            ),
            None,
            None,
        )
        .await
        .expect("search");
    assert_eq!(all.len(), 20);
    // Amounts as Odoo computed them were written back.
    let row = env
        .db
        .client
        .query_one(
            "SELECT count(*) FROM orders WHERE grand_total IS NOT NULL AND subtotal IS NOT NULL",
            &[],
        )
        .await
        .expect("amounts");
    assert_eq!(row.get::<_, i64>(0), 20);
    // What strategies found was learned into the map tables.
    let row = env
        .worker
        .query_one(
            "SELECT count(*) FROM odoo_sync.partner_map WHERE source = 'ref'",
            &[],
        )
        .await
        .expect("partner_map");
    assert_eq!(row.get::<_, i64>(0), 5);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_repeated_after_an_unknown_outcome_creates_no_duplicates() {
    let env = setup("push_twice").await;
    let id = env
        .insert_order(
            1,
            0,
            &[
                ("FURN_7777", "2", "50.00"),
                ("E-COM08", "3.5", "13.00"),
                ("FURN_8220", "1", "480.00"),
            ],
        )
        .await;
    // First attempt: pushed, but the worker "dies" before complete_job.
    let jobs = queue::claim(&env.worker, "doomed-worker", 10, Duration::from_secs(1))
        .await
        .expect("claim");
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    let doc = queue::order_document(
        &env.worker,
        job.tracking_id.expect("tracking"),
        job.order_key.as_deref().expect("key"),
    )
    .await
    .expect("document");
    let mut resolver = Resolver::new();
    let first = push_order(&env.worker, &env.odoo, &mut resolver, &doc)
        .await
        .expect("first push");
    // The lease runs out; another worker takes the job and pushes again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    env.drain().await;
    let (status, odoo_id) = env.status(id).await;
    assert_eq!(status.as_deref(), Some("SYNCED"));
    assert_eq!(odoo_id.map(i64::from), first.odoo_order_id);
    // The doomed worker's token is stale now.
    let stale = queue::complete(&env.worker, job, &first.to_result_json()).await;
    assert!(stale.is_err(), "a stale attempt token is refused");
    let orders = env
        .odoo
        .search("purchase.order", &Domain::eq("origin", "PO-1"), None, None)
        .await
        .expect("search");
    assert_eq!(orders.len(), 1, "no second Odoo order");
    let lines = env.odoo_lines(orders[0]).await;
    assert_eq!(lines.len(), 3, "no duplicate lines: {lines:?}");
    let attempts: i32 = env
        .db
        .client
        .query_one(
            "SELECT attempts FROM odoo_sync.job_history WHERE id = $1",
            &[&job.job_id],
        )
        .await
        .expect("history")
        .get(0);
    assert_eq!(attempts, 2);
    env.finish().await;
}

/// The map tables are the cache workers share. A resolution the worker cannot store there is
/// kept in memory and resolves all the same (cache DEGRADED); a map table it cannot read fails
/// the resolution with PostgreSQL's error (UNAVAILABLE); both show in `health()` through the
/// heartbeat, and clear once the tables answer again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_tables_the_worker_cannot_use_show_as_the_cache_status() {
    let env = setup("push_cache_status").await;
    let health = |resolver: &Resolver| {
        let status = resolver.cache_status().as_str();
        let pg = &env.worker;
        async move {
            queue::heartbeat(
                pg,
                "cache-test",
                &serde_json::json!({"cache_status": status}),
            )
            .await
            .expect("heartbeat");
            let row = pg
                .query_one("SELECT cache_status FROM odoo_sync.health()", &[])
                .await
                .expect("health");
            row.get::<_, String>(0)
        }
    };
    let desk = ProductRef {
        product_id: "FURN_8220",
        product_code: None,
        product_name: None,
    };
    let mut resolver = Resolver::new();
    assert_eq!(resolver.cache_status(), CacheStatus::Healthy);

    env.db
        .client
        .batch_execute("REVOKE INSERT ON odoo_sync.partner_map FROM odoo_sync_worker")
        .await
        .expect("revoke");
    let wood = resolver
        .partner(&env.worker, &env.odoo, "V-WOOD", None)
        .await
        .expect("resolved from Odoo");
    assert_eq!(resolver.cache_status(), CacheStatus::Degraded);
    assert_eq!(health(&resolver).await, "DEGRADED");
    assert_eq!(
        resolver.cached_partner("V-WOOD"),
        Some(wood),
        "kept in memory"
    );
    let stored: i64 = env
        .db
        .client
        .query_one("SELECT count(*) FROM odoo_sync.partner_map", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(stored, 0);

    env.db
        .client
        .batch_execute("REVOKE SELECT ON odoo_sync.product_map FROM odoo_sync_worker")
        .await
        .expect("revoke");
    let err = resolver
        .product(&env.worker, &env.odoo, &desk)
        .await
        .expect_err("a map table it cannot read");
    assert!(err.to_string().contains("permission denied"), "{err}");
    assert_eq!(health(&resolver).await, "UNAVAILABLE");

    env.db
        .client
        .batch_execute(
            "GRANT SELECT ON odoo_sync.product_map TO odoo_sync_worker; \
             GRANT INSERT ON odoo_sync.partner_map TO odoo_sync_worker",
        )
        .await
        .expect("grant");
    resolver
        .product(&env.worker, &env.odoo, &desk)
        .await
        .expect("resolved");
    assert_eq!(health(&resolver).await, "HEALTHY");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_product_fails_only_its_order() {
    let env = setup("push_unknown").await;
    let mut good = Vec::new();
    for n in 0..4 {
        good.push(
            env.insert_order(
                n,
                n,
                &[("FURN_0001", "1", "78.00"), ("E-COM11", "2", "115.00")],
            )
            .await,
        );
    }
    let bad = env
        .insert_order(
            99,
            1,
            &[("FURN_0001", "1", "78.00"), ("NOPE-404", "1", "1.00")],
        )
        .await;
    env.drain().await;
    for id in &good {
        let (status, odoo_id) = env.status(*id).await;
        assert_eq!(status.as_deref(), Some("SYNCED"));
        assert!(odoo_id.is_some());
    }
    let (status, odoo_id) = env.status(bad).await;
    assert_eq!(status.as_deref(), Some("SYNC_FAILED"));
    assert_eq!(odoo_id, None);
    let row = env
        .db
        .client
        .query_one(
            "SELECT state, last_error->>'message', (last_error->>'permanent')::bool FROM odoo_sync.job_history \
             WHERE order_key = $1 ORDER BY id DESC LIMIT 1",
            &[&bad.to_string()],
        )
        .await
        .expect("dead letter");
    let (state, message, permanent): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(state, "dead");
    assert!(permanent);
    assert!(message.contains("NOPE-404"), "{message}");
    assert!(message.contains("default_code"), "{message}");
    let none = env
        .odoo
        .search("purchase.order", &Domain::eq("origin", "PO-99"), None, None)
        .await
        .expect("search");
    assert!(none.is_empty(), "nothing of the failed order reached Odoo");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_line_removals_and_deletes_reach_odoo() {
    update_scenario("push_update", 19).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_line_removals_and_deletes_reach_odoo_17() {
    update_scenario("push_update17", 17).await;
}

async fn update_scenario(label: &str, version: u8) {
    let env = setup_version(label, version).await;
    let a = env
        .insert_order(
            1,
            2,
            &[
                ("FURN_7777", "2", "50.00"),
                ("E-COM08", "3", "13.00"),
                ("FURN_8220", "1", "480.00"),
            ],
        )
        .await;
    let b = env.insert_order(2, 3, &[("FURN_8900", "5", "18.50")]).await;
    env.drain().await;
    let a_odoo = i64::from(env.status(a).await.1.expect("a synced"));
    let b_odoo = i64::from(env.status(b).await.1.expect("b synced"));

    // Change a quantity and a price, remove a line, add a line.
    env.db
        .client
        .batch_execute(&format!(
            "UPDATE order_items SET quantity = 4.25 WHERE order_id = {a} AND product_id = 'FURN_7777';
             UPDATE order_items SET unit_price = 12.40 WHERE order_id = {a} AND product_id = 'E-COM08';
             DELETE FROM order_items WHERE order_id = {a} AND product_id = 'FURN_8220';
             INSERT INTO order_items (order_id, product_id, product_code, quantity, unit_price)
                 VALUES ({a}, 'FURN_0002', 'FURN_0002', 10, 2.50);
             UPDATE orders SET order_number = 'PO-1-rev' WHERE id = {a};
             DELETE FROM orders WHERE id = {b};"
        ))
        .await
        .expect("changes");
    env.drain().await;
    assert_eq!(env.status(a).await.0.as_deref(), Some("SYNCED"));
    assert_eq!(
        env.status(a).await.1.map(i64::from),
        Some(a_odoo),
        "same Odoo order"
    );
    let order = env.odoo_order(a_odoo).await;
    assert_eq!(order["origin"], "PO-1-rev");
    let mut got: Vec<(i64, Decimal, Decimal)> = env
        .odoo_lines(a_odoo)
        .await
        .into_iter()
        .map(|(p, q, u)| (p, q.normalize(), u.normalize()))
        .collect();
    got.sort();
    let mut want = vec![
        (
            env.id_by("product.product", "default_code", "FURN_7777")
                .await,
            d("4.25"),
            d("50"),
        ),
        (
            env.id_by("product.product", "default_code", "E-COM08")
                .await,
            d("3"),
            d("12.4"),
        ),
        (
            env.id_by("product.product", "default_code", "FURN_0002")
                .await,
            d("10"),
            d("2.5"),
        ),
    ];
    want.sort();
    assert_eq!(got, want);
    let order_b = env.odoo_order(b_odoo).await;
    assert_eq!(
        order_b["state"], "cancel",
        "a deleted local order cancels its Odoo order"
    );
    let row = env
        .db
        .client
        .query_one(
            "SELECT count(*) FROM odoo_sync.job_history WHERE state = 'done' AND order_key = $1",
            &[&b.to_string()],
        )
        .await
        .expect("history");
    assert_eq!(
        row.get::<_, i64>(0),
        2,
        "create and delete pushes of b are done"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_command_pushes_one_order_and_prints_the_result() {
    let env = setup("push_cli").await;
    let id = env.insert_order(7, 4, &[("E-COM08", "6", "13.00")]).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_odoo-sync-worker"))
        .args(["sync", &id.to_string()])
        .env("DATABASE_URL", env.db.conninfo())
        .env("ODOO_URL", env.sim.url())
        .env("ODOO_DB", "odoo")
        .env("ODOO_USER", "admin")
        .env("ODOO_API_KEY", sim::DEFAULT_API_KEY)
        .env_remove("ODOO_PASSWORD")
        .output()
        .await
        .expect("run the worker binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_str(&stdout).expect("JSON result");
    assert_eq!(printed["state"], "done");
    let (status, odoo_id) = env.status(id).await;
    assert_eq!(status.as_deref(), Some("SYNCED"));
    assert_eq!(
        printed["result"]["odoo_order_id"].as_i64(),
        odoo_id.map(i64::from)
    );
    assert!(
        !stdout.contains(sim::DEFAULT_API_KEY)
            && !String::from_utf8_lossy(&out.stderr).contains(sim::DEFAULT_API_KEY),
        "the API key never appears in the output"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_loop_wakes_on_notifications_and_stops_on_shutdown() {
    let env = setup("push_loop").await;
    let wake = Arc::new(Notify::new());
    let listener = spawn_listener(env.db.conninfo(), wake.clone());
    let options = RunOptions {
        max_jobs: 10,
        // Long enough that only a notification can explain a prompt push.
        poll_interval: Duration::from_secs(60),
        heartbeat_interval: Duration::from_secs(60),
        wake: Some(wake),
        ..RunOptions::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = env.db.connect().await;
    let odoo = env.odoo.clone();
    let loop_task = tokio::spawn(async move {
        run(&worker, &odoo, "loop-worker", &options, async {
            let _ = stopped.await;
        })
        .await
    });
    // Let the loop go idle first (queue empty, waiting for the poll or a notification).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let id = env
        .insert_order(3, 1, &[("FURN_8220", "2", "450.00")])
        .await;
    let mut synced = false;
    for _ in 0..100 {
        if env.status(id).await.0.as_deref() == Some("SYNCED") {
            synced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(synced, "the order was pushed well before the 60 s poll");
    let beats: i64 = env
        .db
        .client
        .query_one(
            "SELECT count(*) FROM odoo_sync.worker_heartbeats \
             WHERE worker_id = 'loop-worker' AND odoo_status = 'CONNECTED'",
            &[],
        )
        .await
        .expect("heartbeats")
        .get(0);
    assert_eq!(beats, 1, "the loop reports its heartbeat");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), loop_task)
        .await
        .expect("the loop stops on shutdown")
        .expect("loop task")
        .expect("loop result");
    listener.abort();
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_status_transitions_are_sent_as_buttons() {
    let env = setup("push_status").await;
    let id = env.insert_order(5, 0, &[("FURN_0001", "2", "78.00")]).await;
    env.drain().await;
    let odoo_id = i64::from(env.status(id).await.1.expect("synced"));
    assert_eq!(env.odoo_order(odoo_id).await["state"], "draft");
    for (status, state) in [
        ("CONFIRMED", "purchase"),
        ("CANCELLED", "cancel"),
        ("DRAFT", "draft"),
        ("SENT_TO_SUPPLIER", "sent"),
        ("CONFIRMED", "purchase"),
    ] {
        env.db
            .client
            .execute(
                "UPDATE orders SET status = $1 WHERE id = $2",
                &[&status, &id],
            )
            .await
            .expect("status change");
        env.drain().await;
        assert_eq!(
            env.status(id).await.0.as_deref(),
            Some("SYNCED"),
            "{status}"
        );
        assert_eq!(env.odoo_order(odoo_id).await["state"], state, "{status}");
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_pause_the_worker_instead_of_dead_lettering_orders() {
    let env = setup("push_badkey").await;
    for n in 0..3 {
        env.insert_order(n, n, &[("FURN_0001", "1", "5.00")]).await;
    }
    let mut config = OdooConfig::new(
        &env.sim.url(),
        "odoo",
        "admin",
        Secret::new("expired-api-key"),
        SecretKind::ApiKey,
    )
    .expect("config");
    config.request_timeout = Duration::from_secs(20);
    let odoo = OdooClient::new(config).expect("client");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = env.db.connect_as(&format!("{}_worker", env.db.name)).await;
    let loop_odoo = odoo.clone();
    let runner = tokio::spawn(async move {
        let options = RunOptions {
            heartbeat_interval: Duration::from_millis(200),
            ..RunOptions::default()
        };
        run(&worker, &loop_odoo, "badkey-worker", &options, async {
            let _ = stopped.await;
        })
        .await
    });
    // The first batch fails on the credentials; after that the loop pauses and claims nothing.
    let started = std::time::Instant::now();
    loop {
        let failed: i64 = env
            .db
            .client
            .query_one(
                "SELECT count(*) FROM odoo_sync.jobs WHERE state = 'failed'",
                &[],
            )
            .await
            .expect("jobs")
            .get(0);
        if failed == 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "jobs were not failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = env
        .db
        .client
        .query_one(
            "SELECT (SELECT count(*) FROM odoo_sync.dead_letters),
                    (SELECT max(attempts) FROM odoo_sync.jobs),
                    (SELECT min(run_after) > now() + interval '30 seconds' FROM odoo_sync.jobs),
                    (SELECT odoo_status FROM odoo_sync.worker_heartbeats WHERE worker_id = 'badkey-worker')",
            &[],
        )
        .await
        .expect("state");
    let (dead, attempts, waiting, status): (i64, i32, bool, String) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(
        (dead, attempts, waiting),
        (0, 1, true),
        "no order is dead-lettered for a key"
    );
    assert_eq!(status, "ERROR");
    let _ = stop.send(());
    runner.await.expect("join").expect("run");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_strategies_settings_choose_how_products_are_found() {
    let env = setup("push_strategies").await;
    // Name only: a product code that exists in Odoo is not looked at.
    env.db
        .client
        .execute(
            "SELECT odoo_sync.update_settings('{\"product_strategies\": [\"name\"]}')",
            &[],
        )
        .await
        .expect("settings");
    let named = env
        .id_by("product.product", "default_code", "FURN_8220")
        .await;
    let name: String = env
        .odoo
        .read("product.product", &[named], &["name"])
        .await
        .expect("product")[0]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let id: i64 = env
        .db
        .client
        .query_one(
            "INSERT INTO orders (order_number, supplier_id) VALUES ('PO-S', 'V-WOOD') RETURNING id",
            &[],
        )
        .await
        .expect("order")
        .get(0);
    env.db
        .client
        .execute(
            "INSERT INTO order_items (order_id, product_id, product_code, product_name, quantity, unit_price) \
             VALUES ($1, 'LOCAL-1', 'FURN_0001', $2, 1, 5)",
            &[&id, &name],
        )
        .await
        .expect("item");
    env.drain().await;
    let odoo_id = i64::from(env.status(id).await.1.expect("synced"));
    assert_eq!(
        env.odoo_lines(odoo_id).await[0].0,
        named,
        "found by name, not by code"
    );
    let source: String = env
        .db
        .client
        .query_one(
            "SELECT source FROM odoo_sync.product_map WHERE local_product_id = 'LOCAL-1'",
            &[],
        )
        .await
        .expect("learned")
        .get(0);
    assert_eq!(source, "name");
    env.finish().await;
}
