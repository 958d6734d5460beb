//! Batched pushes end to end (real PostgreSQL + simulator): many orders per `load`, poison
//! orders isolated, a batch retried after "commit then drop the connection" duplicates nothing.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use odoo_sync_tests::pg_cluster::{common_schema, TestDb};
use odoo_sync_tests::sim::{self, SimConfig, SimHandle};
use odoo_sync_worker::odoo::money::{money, quantity};
use odoo_sync_worker::odoo::{Domain, OdooClient, OdooConfig, Secret, SecretKind};
use odoo_sync_worker::push::resolve::{Resolver, Wanted};
use odoo_sync_worker::run::{run_batch_with, JobReport, RunOptions};
use rust_decimal::Decimal;
use serde_json::{json, Value};
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
    let sim = sim::spawn(SimConfig::default()).await.expect("simulator");
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

type Line = (String, String, String);

impl Env {
    async fn finish(self) {
        drop(self.worker);
        let _ = self.sim.stop().await;
        self.db.finish().await;
    }

    async fn insert_order(&self, n: usize, vendor: usize, lines: &[Line]) -> i64 {
        let (vid, vname) = VENDORS[vendor % VENDORS.len()];
        let id: i64 = self
            .db
            .client
            .query_one(
                "INSERT INTO orders (order_number, supplier_id, supplier_name) VALUES ($1, $2, $3) RETURNING id",
                &[&format!("PO-{n}"), &vid, &vname],
            )
            .await
            .expect("insert order")
            .get(0);
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

    /// One batch with the defaults of `run`, with a resolver that lives as long as the caller's.
    async fn batch_with(&self, resolver: &mut Resolver) -> Vec<JobReport> {
        run_batch_with(
            &self.worker,
            &self.odoo,
            resolver,
            "batch-worker",
            &RunOptions::default(),
        )
        .await
        .expect("batch")
    }

    async fn batch(&self, max_jobs: i32, concurrency: usize) -> Vec<JobReport> {
        let mut resolver = Resolver::new();
        let options = RunOptions {
            max_jobs,
            concurrency,
            ..RunOptions::default()
        };
        run_batch_with(
            &self.worker,
            &self.odoo,
            &mut resolver,
            "batch-worker",
            &options,
        )
        .await
        .expect("batch")
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

    async fn faults(&self, spec: Value) {
        let c = sim::client::Client::new(&self.sim.url());
        let r = c.post("/__sim/faults", &spec).await.expect("faults");
        assert_eq!(r.status, 200, "{:?}", r.body());
    }

    async fn ids_by(&self, model: &str, field: &str) -> HashMap<String, i64> {
        self.odoo
            .search_read(model, &Domain::all(), &[field], 0, None, Some("id"))
            .await
            .expect("search_read")
            .into_iter()
            .filter_map(|r| Some((r.get(field)?.as_str()?.to_string(), r.get("id")?.as_i64()?)))
            .collect()
    }

    /// Odoo lines of some orders: order id → [(product, qty, price)].
    async fn lines_of(&self, ids: &[i64]) -> HashMap<i64, Vec<(i64, Decimal, Decimal)>> {
        let rows = self
            .odoo
            .search_read(
                "purchase.order.line",
                &Domain::is_in("order_id", ids.to_vec()),
                &["order_id", "product_id", "product_qty", "price_unit"],
                0,
                None,
                Some("id"),
            )
            .await
            .expect("lines");
        let mut out: HashMap<i64, Vec<_>> = HashMap::new();
        for r in rows {
            out.entry(m2o(&r["order_id"])).or_default().push((
                m2o(&r["product_id"]),
                quantity(&r["product_qty"], "qty").expect("qty"),
                money(&r["price_unit"], "price").expect("price"),
            ));
        }
        out
    }

    /// Odoo orders whose origin starts with `PO-`: origin → ids.
    async fn orders_by_origin(&self) -> HashMap<String, Vec<i64>> {
        let rows = self
            .odoo
            .search_read(
                "purchase.order",
                &Domain::all(),
                &["origin"],
                0,
                None,
                Some("id"),
            )
            .await
            .expect("orders");
        let mut out: HashMap<String, Vec<i64>> = HashMap::new();
        for r in rows {
            if let (Some(o), Some(id)) = (r["origin"].as_str(), r["id"].as_i64()) {
                if o.starts_with("PO-") {
                    out.entry(o.to_string()).or_default().push(id);
                }
            }
        }
        out
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

fn lines_for(n: usize, count: usize) -> Vec<Line> {
    (0..count)
        .map(|j| {
            (
                PRODUCTS[(n + j * 3) % PRODUCTS.len()].to_string(),
                format!("{}.{}", n % 17 + j + 1, (n * 7 + j) % 10),
                format!("{}.{:02}", 10 + n * 3 + j, (n * 13 + j) % 100),
            )
        })
        .collect()
}

fn rpc_total(env: &Env) -> u64 {
    env.sim.sim.stats_json()["total"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_orders_arrive_in_few_calls_and_are_synced() {
    let env = setup("batch_hundred").await;
    let mut expected = BTreeMap::new();
    for n in 0..100 {
        let lines = lines_for(n, 4);
        let id = env.insert_order(n, n, &lines).await;
        expected.insert(id, (n, lines));
    }
    env.odoo.connect().await.expect("connect");
    env.sim.sim.reset_stats();
    let reports = env.batch(100, 4).await;
    assert_eq!(reports.len(), 100);
    assert!(
        reports.iter().all(|r| r.state == "done"),
        "{:?}",
        reports.iter().find(|r| r.state != "done")
    );
    let calls = rpc_total(&env);
    // Resolution (2 models × 1 strategy) + per chunk one load and one read.
    assert!(
        calls <= 20,
        "{calls} calls for 100 orders: {}",
        env.sim.sim.stats_json()
    );

    let partners = env.ids_by("res.partner", "ref").await;
    let products = env.ids_by("product.product", "default_code").await;
    let mut odoo_ids = Vec::new();
    for (id, (_, _)) in &expected {
        let (status, odoo_id) = env.status(*id).await;
        assert_eq!(status.as_deref(), Some("SYNCED"), "order {id}");
        odoo_ids.push(i64::from(odoo_id.expect("odoo id written back")));
    }
    let orders = env
        .odoo
        .read("purchase.order", &odoo_ids, &["partner_id", "origin"])
        .await
        .expect("read");
    let by_id: HashMap<i64, _> = orders
        .into_iter()
        .map(|r| (r["id"].as_i64().expect("id"), r))
        .collect();
    let lines = env.lines_of(&odoo_ids).await;
    for ((_, (n, want_lines)), odoo_id) in expected.iter().zip(&odoo_ids) {
        let rec = &by_id[odoo_id];
        assert_eq!(rec["origin"], format!("PO-{n}"));
        assert_eq!(m2o(&rec["partner_id"]), partners[VENDORS[n % 5].0]);
        let want: Vec<(i64, Decimal, Decimal)> = want_lines
            .iter()
            .map(|(c, q, p)| (products[c.as_str()], d(q), d(p)))
            .collect();
        assert_eq!(lines[odoo_id], want, "lines of PO-{n}");
    }

    // Ten deletes at once: cancelled together.
    let doomed: Vec<i64> = expected.keys().take(10).copied().collect();
    env.db
        .client
        .execute("DELETE FROM orders WHERE id = ANY($1)", &[&doomed])
        .await
        .expect("delete");
    env.sim.sim.reset_stats();
    let reports = env.batch(100, 4).await;
    assert_eq!(reports.len(), 10);
    assert!(reports.iter().all(|r| r.state == "done"), "{reports:?}");
    let calls = rpc_total(&env);
    assert!(calls <= 3, "{calls} calls for 10 deletes");
    let states = env
        .odoo
        .read("purchase.order", &odoo_ids[..10], &["state"])
        .await
        .expect("states");
    assert!(states.iter().all(|r| r["state"] == "cancel"), "{states:?}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_orders_in_a_batch_fail_alone() {
    let env = setup("batch_poison").await;
    // A product that resolves, and that an Odoo user deletes just before the `load`: resolution
    // passes, `load` refuses that order's record (and the order is retried, to resolve the
    // product again).
    let ghost = env
        .odoo
        .create(
            "product.product",
            &[json!({"name": "Ghost", "default_code": "GHOST"})],
        )
        .await
        .expect("product")[0];
    env.sim
        .sim
        .before_next_call("purchase.order", "load", move |sim| {
            sim.call_as_admin("product.product", "unlink", &[ghost], vec![])
                .expect("an Odoo user deletes the product");
        });
    let mut good = Vec::new();
    for n in 0..9 {
        let lines = lines_for(n, 3);
        good.push(env.insert_order(n, n, &lines).await);
        if n == 2 {
            let mut l = lines_for(50, 2);
            l.push(("NOPE-404".into(), "1".into(), "1.00".into()));
            good.push(-env.insert_order(50, 1, &l).await);
        }
        if n == 6 {
            let mut l = lines_for(60, 2);
            l.push(("GHOST".into(), "1".into(), "1.00".into()));
            good.push(-env.insert_order(60, 2, &l).await);
        }
    }
    let reports = env.batch(20, 1).await;
    assert_eq!(reports.len(), 11);
    for id in good.iter().filter(|id| **id > 0) {
        let (status, odoo_id) = env.status(*id).await;
        assert_eq!(status.as_deref(), Some("SYNCED"), "order {id}");
        assert!(odoo_id.is_some());
    }
    let failures = env
        .db
        .client
        .query(
            "SELECT order_key, state, last_error->>'message', (last_error->>'permanent')::bool \
             FROM odoo_sync.jobs WHERE state = 'failed' \
             UNION ALL \
             SELECT order_key, state, last_error->>'message', (last_error->>'permanent')::bool \
             FROM odoo_sync.job_history WHERE state = 'dead'",
            &[],
        )
        .await
        .expect("failures");
    let shown: Vec<(String, String, bool)> = failures
        .iter()
        .map(|r| (r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    // The product no strategy resolves: dead at once.
    assert!(
        shown.iter().any(|(state, m, permanent)| state == "dead"
            && *permanent
            && m.contains("NOPE-404")
            && m.contains("default_code")),
        "{shown:?}"
    );
    // The order `load` refused, for a product Odoo no longer has: retried, Odoo's message kept.
    assert!(
        shown.iter().any(|(state, m, permanent)| state == "failed"
            && !*permanent
            && m.contains("purchase.order.load")
            && m.contains(&format!("'{ghost}'"))),
        "{shown:?}"
    );
    // Its retry resolves the product again, finds it nowhere, and says so.
    env.db
        .client
        .execute("UPDATE odoo_sync.jobs SET run_after = now()", &[])
        .await
        .expect("due now");
    let retried = env.batch(20, 1).await;
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert_eq!(retried[0].state, "dead", "{retried:?}");
    let error = retried[0].error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "product 'GHOST' not found in Odoo (tried product_map['GHOST'] = {ghost}, which Odoo no longer has"
        )),
        "{error}"
    );
    let origins = env.orders_by_origin().await;
    assert!(!origins.contains_key("PO-50") && !origins.contains_key("PO-60"));
    assert_eq!(origins.len(), 9);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_retried_after_commit_then_drop_duplicates_nothing() {
    let env = setup("batch_drop").await;
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(env.insert_order(n, n, &lines_for(n, 3)).await);
    }
    env.odoo.connect().await.expect("connect");
    // Resolve first so that the next write is the chunk's load.
    env.faults(json!({"drop_after_commit": 1})).await;
    let first = env.batch(20, 1).await;
    // The load was committed but its answer lost: the jobs are retried (or the client's
    // own retry already succeeded); either way nothing may be duplicated.
    assert_eq!(first.len(), 12);
    assert!(
        first
            .iter()
            .all(|r| r.state == "retry" || r.state == "done"),
        "{first:?}"
    );
    let left = sim::client::Client::new(&env.sim.url())
        .get("/__sim/faults")
        .await
        .expect("faults")
        .body();
    assert_eq!(
        left["drop_after_commit"], 0,
        "a committed write lost its answer"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut synced = 0;
        for id in &ids {
            if env.status(*id).await.0.as_deref() == Some("SYNCED") {
                synced += 1;
            }
        }
        if synced == ids.len() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not all synced");
        env.batch(20, 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let origins = env.orders_by_origin().await;
    assert_eq!(origins.len(), 12);
    assert!(
        origins.values().all(|v| v.len() == 1),
        "no duplicate Odoo order: {origins:?}"
    );
    let odoo_ids: Vec<i64> = origins.values().map(|v| v[0]).collect();
    let lines = env.lines_of(&odoo_ids).await;
    assert_eq!(
        lines.values().map(Vec::len).sum::<usize>(),
        36,
        "no duplicate line"
    );
    for id in &ids {
        let (_, odoo_id) = env.status(*id).await;
        assert!(odoo_ids.contains(&i64::from(odoo_id.expect("odoo id"))));
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_extended_while_a_slow_batch_is_in_flight() {
    let env = setup("batch_lease").await;
    for n in 0..4 {
        env.insert_order(n, n, &lines_for(n, 2)).await;
    }
    env.odoo.connect().await.expect("connect");
    // Each Odoo call takes 700 ms: the batch outlives its 1.5 s lease several times over.
    env.faults(json!({"latency_ms": 700})).await;
    let options = RunOptions {
        max_jobs: 10,
        concurrency: 2,
        lease: Duration::from_millis(1500),
        ..RunOptions::default()
    };
    let mut resolver = Resolver::new();
    let slow = run_batch_with(
        &env.worker,
        &env.odoo,
        &mut resolver,
        "slow-worker",
        &options,
    );
    let thief = async {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        odoo_sync_worker::queue::claim(&env.worker, "thief", 10, Duration::from_secs(5))
            .await
            .expect("claim")
    };
    let (reports, stolen) = tokio::join!(slow, thief);
    let reports = reports.expect("batch");
    assert!(stolen.is_empty(), "a lease expired in flight: {stolen:?}");
    assert_eq!(reports.len(), 4);
    assert!(reports.iter().all(|r| r.state == "done"), "{reports:?}");
    env.finish().await;
}

/// Odoo's contact merge deletes the merged contact. A worker that resolved a vendor to it
/// before the merge (and keeps the resolution for a while) sends an order Odoo refuses: that
/// order is retried, not dead-lettered, and the retry resolves the vendor again, to the
/// contact that now has its reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_for_a_vendor_merged_away_is_retried_and_resolved_again() {
    let env = setup("batch_merged").await;
    let merged = env
        .odoo
        .create(
            "res.partner",
            &[json!({"name": "Merged Away", "ref": "V-MERGE"})],
        )
        .await
        .expect("partner")[0];
    let mut resolver = Resolver::new();
    let vendor = Wanted {
        key: "V-MERGE".into(),
        code: "V-MERGE".into(),
        name: None,
    };
    let unresolved = resolver
        .partners_many(&env.worker, &env.odoo, &[vendor])
        .await
        .expect("resolve");
    assert!(unresolved.is_empty(), "{unresolved:?}");
    env.sim
        .sim
        .call_as_admin("res.partner", "unlink", &[merged], vec![])
        .expect("the merge deletes the merged contact");
    let survivor = env
        .odoo
        .create(
            "res.partner",
            &[json!({"name": "Survivor", "ref": "V-MERGE"})],
        )
        .await
        .expect("partner")[0];
    let order: i64 = env
        .db
        .client
        .query_one(
            "INSERT INTO orders (order_number, supplier_id) VALUES ('PO-MERGE', 'V-MERGE') RETURNING id",
            &[],
        )
        .await
        .expect("order")
        .get(0);
    env.db
        .client
        .execute(
            "INSERT INTO order_items (order_id, product_id, product_code, quantity, unit_price) \
             VALUES ($1, 'FURN_0001', 'FURN_0001', 2, 10)",
            &[&order],
        )
        .await
        .expect("item");
    let reports = env.batch_with(&mut resolver).await;
    assert_eq!(reports.len(), 1);
    let error = reports[0].error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "Odoo no longer has res.partner {merged} (supplier 'V-MERGE')"
        )),
        "{reports:?}"
    );
    let dead: i64 = env
        .db
        .client
        .query_one("SELECT count(*) FROM odoo_sync.dead_letters", &[])
        .await
        .expect("dead letters")
        .get(0);
    assert_eq!(dead, 0, "{reports:?}");

    env.db
        .client
        .execute("UPDATE odoo_sync.jobs SET run_after = now()", &[])
        .await
        .expect("due now");
    let reports = env.batch_with(&mut resolver).await;
    assert_eq!(
        reports.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(),
        ["done"],
        "{reports:?}"
    );
    let (status, odoo_id) = env.status(order).await;
    assert_eq!(status.as_deref(), Some("SYNCED"));
    let odoo_id = i64::from(odoo_id.expect("linked"));
    let read = env
        .odoo
        .read("purchase.order", &[odoo_id], &["partner_id"])
        .await
        .expect("order");
    assert_eq!(read[0]["partner_id"][0].as_i64(), Some(survivor));
    let mapped: i32 = env
        .db
        .client
        .query_one(
            "SELECT odoo_partner_id FROM odoo_sync.partner_map WHERE local_supplier_id = 'V-MERGE'",
            &[],
        )
        .await
        .expect("map")
        .get(0);
    assert_eq!(i64::from(mapped), survivor);
    env.finish().await;
}

/// An application transaction that changes two orders of a batch while the batch notes what it
/// will write: it holds the first order's state row (capture writes the version there) until it
/// commits, and the batch waits for it there. The batch notes each order in a statement of its
/// own, so it holds no other state row while it waits, and the application's change of the
/// second order goes through: no deadlock, nothing lost, both pushed again with the new notes.
/// Done both ways round, so that whichever order the batch notes first, one round has it
/// holding the other order's row if it noted the two in one statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_changing_two_orders_during_a_batch_does_not_deadlock_with_it() {
    let env = setup("batch_no_deadlock").await;
    let a = env.insert_order(1, 0, &lines_for(1, 2)).await;
    let b = env.insert_order(2, 1, &lines_for(2, 2)).await;
    env.odoo.connect().await.expect("connect");
    let reports = env.batch(10, 2).await;
    assert!(reports.iter().all(|r| r.state == "done"), "{reports:?}");
    let app = env.db.connect().await;
    for (round, (held, later)) in [(a, b), (b, a)].into_iter().enumerate() {
        for id in [a, b] {
            env.db
                .client
                .execute(
                    "UPDATE orders SET notes = $2 WHERE id = $1",
                    &[&id, &format!("round {round} edit of {id}")],
                )
                .await
                .expect("edit");
        }
        // The application's transaction holds `held`'s order row and state row from here on.
        app.batch_execute("BEGIN").await.expect("begin");
        app.execute(
            "UPDATE orders SET notes = $2 WHERE id = $1",
            &[&held, &format!("round {round} app {held}")],
        )
        .await
        .expect("app changes the first order");
        let app_side = async {
            // Meanwhile the batch has claimed both orders and waits to note `held`.
            tokio::time::sleep(Duration::from_millis(500)).await;
            app.execute(
                "UPDATE orders SET notes = $2 WHERE id = $1",
                &[&later, &format!("round {round} app {later}")],
            )
            .await?;
            app.batch_execute("COMMIT").await
        };
        let (reports, app_result) = tokio::join!(env.batch(10, 2), app_side);
        app_result.expect("the application's transaction commits, without a deadlock");
        assert_eq!(reports.len(), 2, "{reports:?}");

        // Changed during their push, both go again; then Odoo has what the application wrote.
        env.db
            .client
            .execute("UPDATE odoo_sync.jobs SET run_after = now()", &[])
            .await
            .expect("due now");
        for _ in 0..3 {
            if env.batch(10, 2).await.is_empty() {
                break;
            }
        }
        for id in [a, b] {
            let (status, odoo_id) = env.status(id).await;
            assert_eq!(status.as_deref(), Some("SYNCED"), "order {id}");
            // The field is `note` from Odoo 19 on, `notes` before.
            let odoo_id = i64::from(odoo_id.expect("linked"));
            let mut text = String::new();
            for field in ["note", "notes"] {
                if let Ok(rec) = env.odoo.read("purchase.order", &[odoo_id], &[field]).await {
                    text = rec[0][field].as_str().unwrap_or_default().to_string();
                    break;
                }
            }
            let want = format!("round {round} app {id}");
            assert!(text.contains(&want), "order {id}: Odoo notes {text:?}");
        }
    }
    env.finish().await;
}
