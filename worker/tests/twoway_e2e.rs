//! Two-way sync end to end: real PostgreSQL with the extension, the Odoo simulator, the
//! worker's library. Odoo-side edits are made through the same external API a person's Odoo
//! client would use; every scenario ends by checking both sides are equal.

use std::str::FromStr;
use std::time::Duration;

use odoo_sync_tests::pg_cluster::{common_schema, db_error, TestDb};
use odoo_sync_tests::sim::seed::Seed;
use odoo_sync_tests::sim::{self, SimConfig, SimHandle};
use odoo_sync_worker::odoo::money::quantity;
use odoo_sync_worker::odoo::{Domain, OdooClient, OdooConfig, Secret, SecretKind};
use odoo_sync_worker::pull::poll::{poll_once, PollSettings};
use odoo_sync_worker::run::run_once;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio_postgres::Client;

struct Env {
    db: TestDb,
    worker: Client,
    sim: SimHandle,
    odoo: OdooClient,
}

async fn setup(label: &str) -> Env {
    setup_version(label, SimConfig::default().version).await
}

/// The same against a simulator imitating Odoo `version`.
async fn setup_version(label: &str, version: u8) -> Env {
    setup_schema(label, version, &common_schema("bigint")).await
}

/// The same with the application tables of `schema`.
async fn setup_schema(label: &str, version: u8, schema: &str) -> Env {
    setup_sim(
        label,
        SimConfig {
            version,
            ..SimConfig::default()
        },
        schema,
    )
    .await
}

/// The default setup against an Odoo whose prices have three decimals (its `Product Price`
/// precision), one more than the local `unit_price` column keeps.
async fn setup_three_digit_prices(label: &str) -> Env {
    let mut seed = Seed::default_data();
    seed.company.precision.product_price = 3;
    setup_sim(
        label,
        SimConfig {
            seed,
            ..SimConfig::default()
        },
        &common_schema("bigint"),
    )
    .await
}

/// The same against a simulator started with `config`.
async fn setup_sim(label: &str, config: SimConfig, schema: &str) -> Env {
    let mut db = TestDb::new(label).await;
    db.client.batch_execute(schema).await.expect("schema");
    db.client
        .execute(
            "SELECT odoo_sync.track_orders('orders', 'order_items')",
            &[],
        )
        .await
        .expect("track_orders");
    let role = db.create_role("worker", &["odoo_sync_worker"]).await;
    let worker = db.connect_as(&role).await;
    let sim = sim::spawn(config).await.expect("simulator");
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

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal")
}

fn settings() -> PollSettings {
    PollSettings {
        enabled: true,
        interval: Duration::from_secs(1),
        overlap: Duration::from_secs(120),
        reconcile_every: Duration::from_secs(300),
        max_pages: odoo_sync_worker::pull::poll::MAX_PAGES,
    }
}

impl Env {
    async fn finish(self) {
        drop(self.worker);
        let _ = self.sim.stop().await;
        self.db.finish().await;
    }

    /// A local order with `lines` (product code, quantity, price); returns its key.
    async fn insert_order(&self, number: &str, lines: &[(&str, &str, &str)]) -> i64 {
        let id: i64 = self
            .db
            .client
            .query_one(
                "INSERT INTO orders (order_number, supplier_id, supplier_name) \
                 VALUES ($1, 'V-WOOD', 'Wood Corner') RETURNING id",
                &[&number],
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

    /// Runs batches until no job is ready.
    async fn drain(&self) {
        for _ in 0..100 {
            if run_once(&self.worker, &self.odoo, "test-worker", 50)
                .await
                .expect("run_once")
                == 0
            {
                return;
            }
        }
        panic!("queue did not drain");
    }

    /// Sets the simulator's faults (see tests/SIMULATOR.md).
    fn faults(&self, spec: Value) {
        self.sim
            .sim
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply(&serde_json::from_value(spec).expect("fault spec"))
            .expect("faults");
    }

    async fn sql(&self, sql: &str) {
        self.db.client.batch_execute(sql).await.expect(sql);
    }

    async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> T {
        self.db.client.query_one(sql, &[]).await.expect(sql).get(0)
    }

    /// The ids of order `id`'s items, in id order.
    async fn item_ids(&self, id: i64) -> Vec<i64> {
        self.db
            .client
            .query(
                "SELECT id FROM order_items WHERE order_id = $1 ORDER BY id",
                &[&id],
            )
            .await
            .expect("items")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn poll(&self) -> odoo_sync_worker::pull::poll::PollReport {
        poll_once(&self.worker, &self.odoo, &settings())
            .await
            .expect("poll")
    }

    async fn odoo_id(&self, order: i64) -> i64 {
        let id: Option<i32> = self
            .one(&format!(
                "SELECT odoo_order_id FROM orders WHERE id = {order}"
            ))
            .await;
        i64::from(id.expect("synced to Odoo"))
    }

    /// Odoo lines of an order, by id: (line id, product code, qty, price).
    async fn odoo_lines(&self, odoo_id: i64) -> Vec<(i64, Decimal, Decimal)> {
        self.odoo
            .search_read(
                "purchase.order.line",
                &Domain::eq("order_id", odoo_id),
                &["product_qty", "price_unit"],
                0,
                None,
                Some("id"),
            )
            .await
            .expect("lines")
            .iter()
            .map(|r| {
                (
                    r["id"].as_i64().expect("id"),
                    quantity(&r["product_qty"], "qty").expect("qty"),
                    quantity(&r["price_unit"], "price").expect("price"),
                )
            })
            .collect()
    }

    /// Local lines: (qty, price), by item id.
    async fn local_lines(&self, order: i64) -> Vec<(Decimal, Decimal)> {
        self.db
            .client
            .query(
                "SELECT quantity::text, unit_price::text FROM order_items WHERE order_id = $1 ORDER BY id",
                &[&order],
            )
            .await
            .expect("local lines")
            .iter()
            .map(|r| {
                (
                    d(r.get::<_, String>(0).as_str()).normalize(),
                    d(r.get::<_, String>(1).as_str()).normalize(),
                )
            })
            .collect()
    }

    /// Asserts both sides hold the same lines (quantities and prices) for `order`.
    async fn assert_equal(&self, order: i64) {
        let odoo_id = self.odoo_id(order).await;
        let remote: Vec<(Decimal, Decimal)> = self
            .odoo_lines(odoo_id)
            .await
            .into_iter()
            .map(|(_, q, p)| (q.normalize(), p.normalize()))
            .collect();
        let mut local = self.local_lines(order).await;
        let mut remote_sorted = remote.clone();
        local.sort();
        remote_sorted.sort();
        assert_eq!(local, remote_sorted, "order {order}: local vs Odoo lines");
    }

    /// What an Odoo user does to delete an order: cancel it, then delete it.
    async fn delete_in_odoo(&self, odoo_id: i64) {
        self.odoo
            .call_button("purchase.order", "button_cancel", &[odoo_id])
            .await
            .expect("cancel");
        self.odoo
            .unlink("purchase.order", &[odoo_id])
            .await
            .expect("unlink");
    }

    /// The Odoo orders whose origin is `number`.
    async fn odoo_orders_of(&self, number: &str) -> Vec<i64> {
        self.odoo
            .search("purchase.order", &Domain::eq("origin", number), None, None)
            .await
            .expect("search")
    }

    async fn write_line(&self, line: i64, vals: Value) {
        self.odoo
            .write("purchase.order.line", &[line], &vals)
            .await
            .expect("Odoo write");
    }

    async fn calls(&self, method_suffix: &str) -> u64 {
        let stats = self.sim.sim.stats_json();
        stats["calls"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.ends_with(method_suffix))
                    .map(|(_, v)| v.as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    }

    async fn open_conflicts(&self) -> Vec<(String, String, Value)> {
        self.db
            .client
            .query(
                "SELECT conflict_id::text, conflict_type, field_diff FROM odoo_sync.pending_conflicts ORDER BY detected_at",
                &[],
            )
            .await
            .expect("conflicts")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }
}

/// A pushed order with two lines, both sides equal; returns (local id, odoo id, Odoo line ids).
async fn synced_order(env: &Env, number: &str) -> (i64, i64, Vec<i64>) {
    let id = env
        .insert_order(
            number,
            &[("FURN_0001", "2", "10.00"), ("FURN_0269", "3", "20.00")],
        )
        .await;
    env.drain().await;
    let odoo_id = env.odoo_id(id).await;
    let lines = env.odoo_lines(odoo_id).await.iter().map(|l| l.0).collect();
    // The first poll sets the watermark and sees our own push: nothing to apply.
    env.poll().await;
    (id, odoo_id, lines)
}

/// `v` with every number as a float, so 6, 6.0 and "6.000"-born numbers compare equal.
fn norm(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), norm(v))).collect()),
        other => other.clone(),
    }
}

fn item_key_of(diff: &Value) -> String {
    diff[0]["line"].as_str().expect("line key").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_change_is_applied_locally_and_does_not_bounce_back() {
    let env = setup("tw_apply").await;
    let (id, odoo_id, lines) = synced_order(&env, "PO-A").await;
    env.write_line(lines[0], json!({"product_qty": 5, "price_unit": 10.0}))
        .await;
    env.odoo
        .call_button("purchase.order", "button_confirm", &[odoo_id])
        .await
        .expect("confirm");
    env.sim.sim.reset_stats();
    let report = env.poll().await;
    assert_eq!(report.outcomes.get("applied"), Some(&1), "{report:?}");
    let (status, sync): (String, String) = {
        let r = env
            .db
            .client
            .query_one(
                "SELECT status, sync_status FROM orders WHERE id = $1",
                &[&id],
            )
            .await
            .expect("order");
        (r.get(0), r.get(1))
    };
    assert_eq!(status, "CONFIRMED");
    assert_eq!(sync, "SYNCED");
    env.assert_equal(id).await;
    // Odoo's totals were taken: 5*10 + 3*20 = 110 untaxed.
    let subtotal: String = env
        .one(&format!(
            "SELECT subtotal::text FROM orders WHERE id = {id}"
        ))
        .await;
    assert_eq!(subtotal, "110.00");
    // No echo: nothing queued, and draining writes nothing to Odoo.
    let queued: i64 = env.one("SELECT count(*) FROM odoo_sync.jobs").await;
    assert_eq!(queued, 0);
    env.drain().await;
    assert_eq!(env.calls(".load").await + env.calls(".write").await, 0);
    // Polling again applies nothing (rows of the newest second are looked at again, since
    // Odoo's write_date cannot tell two writes of one second apart).
    let again = env.poll().await;
    assert_eq!(again.outcomes.get("applied"), None, "{again:?}");
    let events: i64 = env
        .one(
            "SELECT count(*) FROM odoo_sync.event_log WHERE event_type = 'ORDER_UPDATED_FROM_ODOO'",
        )
        .await;
    assert_eq!(events, 1);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_of_different_fields_on_both_sides_merge_without_a_conflict() {
    let env = setup("tw_merge").await;
    let (id, odoo_id, lines) = synced_order(&env, "PO-M").await;
    // Local: quantity of the first line. Odoo: price of the second line, and a new line.
    env.sql(&format!(
        "UPDATE order_items SET quantity = 7 WHERE id = (SELECT min(id) FROM order_items WHERE order_id = {id})"
    ))
    .await;
    env.write_line(lines[1], json!({"product_qty": 3, "price_unit": 25.0}))
        .await;
    let product = odoo_record(&env, "product.product", "default_code", "FURN_8220").await;
    env.odoo
        .write(
            "purchase.order",
            &[odoo_id],
            &json!({"order_line": [[0, 0, {"product_id": product, "product_qty": 4, "price_unit": 30.0}]]}),
        )
        .await
        .expect("add line in Odoo");
    let report = env.poll().await;
    assert_eq!(report.outcomes.get("applied"), Some(&1), "{report:?}");
    assert!(env.open_conflicts().await.is_empty());
    let local = env.local_lines(id).await;
    assert_eq!(
        local,
        vec![(d("7"), d("10")), (d("3"), d("25")), (d("4"), d("30"))]
    );
    // The local quantity change is still to be pushed; after the push both sides are equal
    // and the line Odoo created is kept (updated by id, not recreated).
    env.drain().await;
    env.assert_equal(id).await;
    let after: Vec<i64> = env.odoo_lines(odoo_id).await.iter().map(|l| l.0).collect();
    assert_eq!(after.len(), 3);
    assert!(after.contains(&lines[0]) && after.contains(&lines[1]));
    let sync: String = env
        .one(&format!("SELECT sync_status FROM orders WHERE id = {id}"))
        .await;
    assert_eq!(sync, "SYNCED");
    env.finish().await;
}

/// Both sides change the quantity of the same line; returns (order, odoo id, conflict id, item key).
async fn concurrent_quantity_edit(env: &Env, number: &str) -> (i64, i64, String, String) {
    let (id, odoo_id, lines) = synced_order(env, number).await;
    env.sql(&format!(
        "UPDATE order_items SET quantity = 6 WHERE id = (SELECT min(id) FROM order_items WHERE order_id = {id})"
    ))
    .await;
    env.write_line(lines[0], json!({"product_qty": 9, "price_unit": 10.0}))
        .await;
    let report = env.poll().await;
    assert_eq!(report.outcomes.get("conflict"), Some(&1), "{report:?}");
    let conflicts = env.open_conflicts().await;
    assert_eq!(conflicts.len(), 1);
    let (cid, ctype, diff) = conflicts[0].clone();
    assert_eq!(ctype, "CONCURRENT_MODIFICATION");
    let key = item_key_of(&diff);
    assert_eq!(
        norm(&diff),
        norm(
            &json!([{"field": format!("lines.{key}.quantity"), "line": key, "attr": "quantity",
                "base": 2, "local": 6, "remote": 9}])
        )
    );
    // The order shows CONFLICT and is not pushed while the conflict is open.
    let sync: String = env
        .one(&format!("SELECT sync_status FROM orders WHERE id = {id}"))
        .await;
    assert_eq!(sync, "CONFLICT");
    env.drain().await;
    assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("9"));
    (id, odoo_id, cid, key)
}

async fn resolve(env: &Env, cid: &str, resolution: &str, values: Option<Value>) -> Value {
    env.db
        .client
        .query_one(
            "SELECT odoo_sync.resolve_conflict($1::text::uuid, $2, $3)",
            &[&cid, &resolution, &values],
        )
        .await
        .expect("resolve_conflict")
        .get(0)
}

/// An order renumbered here while a conflict is open: once the conflict is resolved and the
/// lines agree, the new number still goes to Odoo (as `origin`, which the merge does not
/// compare). Before, the resolution finished the waiting push job and the number never went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renumber_made_while_a_conflict_is_open_is_pushed_after_it() {
    let env = setup("tw_renumber").await;
    let (id, odoo_id, cid, _) = concurrent_quantity_edit(&env, "PO-R1").await;
    env.sql(&format!(
        "UPDATE orders SET order_number = 'PO-R1-B' WHERE id = {id}"
    ))
    .await;
    let r = resolve(&env, &cid, "KEEP_REMOTE", None).await;
    assert_eq!(r["sync_status"], "PENDING_SYNC", "{r}");
    env.drain().await;
    let origin = env
        .odoo
        .read("purchase.order", &[odoo_id], &["origin"])
        .await
        .expect("read origin");
    assert_eq!(origin[0].get("origin"), Some(&json!("PO-R1-B")));
    assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("9"));
    env.assert_equal(id).await;
    let status: String = env
        .one(&format!("SELECT sync_status FROM orders WHERE id = {id}"))
        .await;
    assert_eq!(status, "SYNCED");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_modification_is_recorded_and_each_resolution_ends_equal() {
    let env = setup("tw_conflict").await;
    // KEEP_LOCAL: the local 6 goes to Odoo.
    let (id, odoo_id, cid, _) = concurrent_quantity_edit(&env, "PO-C1").await;
    let r = resolve(&env, &cid, "KEEP_LOCAL", None).await;
    assert_eq!(r["sync_status"], "PENDING_SYNC");
    env.drain().await;
    env.assert_equal(id).await;
    assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("6"));

    // KEEP_REMOTE: Odoo's 9 comes here; nothing to push.
    let (id, odoo_id, cid, _) = concurrent_quantity_edit(&env, "PO-C2").await;
    let r = resolve(&env, &cid, "KEEP_REMOTE", None).await;
    assert_eq!(r["sync_status"], "SYNCED", "{r}");
    env.drain().await;
    env.assert_equal(id).await;
    assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("9"));

    // MERGE: a third value for both.
    let (id, odoo_id, cid, key) = concurrent_quantity_edit(&env, "PO-C3").await;
    let field = format!("lines.{key}.quantity");
    let bad = env
        .db
        .client
        .query_one(
            "SELECT odoo_sync.resolve_conflict($1::text::uuid, 'MERGE', '{\"lines.nope.quantity\": 1}')",
            &[&cid],
        )
        .await
        .expect_err("unknown field");
    let (code, message) = db_error(&bad);
    assert_eq!(code, "22023");
    assert!(message.contains("is not part of conflict"), "{message}");
    resolve(&env, &cid, "MERGE", Some(json!({ field: 7 }))).await;
    env.drain().await;
    env.assert_equal(id).await;
    assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("7"));
    let resolved: i64 = env
        .one("SELECT count(*) FROM odoo_sync.event_log WHERE event_type = 'CONFLICT_RESOLVED'")
        .await;
    assert_eq!(resolved, 3);
    let history: i64 = env
        .one(&format!(
            "SELECT count(*) FROM odoo_sync.conflict_history('{id}') WHERE resolution = 'MERGE'"
        ))
        .await;
    assert_eq!(history, 1);
    // Resolving twice is refused.
    let again = env
        .db
        .client
        .query_one(
            "SELECT odoo_sync.resolve_conflict($1::text::uuid, 'KEEP_LOCAL')",
            &[&cid],
        )
        .await
        .expect_err("resolved twice");
    let (code, message) = db_error(&again);
    assert_eq!(code, "55000");
    assert!(message.contains("already resolved"), "{message}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_resolves_line_conflicts_automatically() {
    let env = setup("tw_policy").await;
    env.sql(r#"SELECT odoo_sync.update_settings('{"conflict_policy_lines": "remote_wins"}')"#)
        .await;
    let (id, _odoo_id, lines) = synced_order(&env, "PO-P").await;
    env.sql(&format!(
        "UPDATE order_items SET quantity = 6 WHERE id = (SELECT min(id) FROM order_items WHERE order_id = {id})"
    ))
    .await;
    env.write_line(lines[0], json!({"product_qty": 9, "price_unit": 10.0}))
        .await;
    env.poll().await;
    assert!(env.open_conflicts().await.is_empty());
    env.drain().await;
    env.assert_equal(id).await;
    assert_eq!(env.local_lines(id).await[0].0, d("9"));
    env.finish().await;
}

/// Notes what a push of the order's local lines is about to write, as the worker does before
/// each push (`note_attempts`, in the canonical form of `canonical_snapshot`).
async fn note_local_attempt(env: &Env, order: i64) {
    env.sql(&format!(
        "SELECT odoo_sync.note_attempts(jsonb_build_array(jsonb_build_object(
             'tracking_id', s.tracking_id, 'order_key', s.order_key, 'status', o.status,
             'snapshot', jsonb_build_object(
                 'partner_id', s.base_snapshot -> 'partner_id',
                 'lines', (SELECT jsonb_object_agg(i.id::text, jsonb_build_object(
                               'product_id', s.base_snapshot -> 'lines' -> i.id::text -> 'product_id',
                               'quantity', i.quantity, 'unit_price', i.unit_price))
                           FROM order_items i WHERE i.order_id = o.id)))))
         FROM odoo_sync.order_state s JOIN orders o ON o.id::text = s.order_key
         WHERE o.id = {order}"
    ))
    .await;
}

/// Two pushes noted, the first written to Odoo with its reply lost, the second not yet: a pull
/// that reads Odoo then (before the second write lands) recognises the first as our own write,
/// and must keep the second noted, so that when it shows in Odoo it is recognised too. (Found by
/// the eager chaos run: recognising the first forgot every noted attempt, and the second write
/// met a local edit as a false VERSION_CONFLICT.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_noted_push_stays_ours_after_an_earlier_one_is_recognised() {
    let env = setup("tw_later_attempt").await;
    let (id, _, lines) = synced_order(&env, "PO-LATER").await;
    let item: i64 = env
        .one(&format!(
            "SELECT min(id) FROM order_items WHERE order_id = {id}"
        ))
        .await;
    for qty in [7, 8] {
        env.sql(&format!(
            "UPDATE order_items SET quantity = {qty} WHERE id = {item}"
        ))
        .await;
        note_local_attempt(&env, id).await;
    }
    env.write_line(lines[0], json!({"product_qty": 7})).await;
    let report = env.poll().await;
    assert_eq!(report.outcomes.get("conflict"), None, "{report:?}");
    let noted: i32 = env
        .one(&format!(
            "SELECT COALESCE(jsonb_array_length(attempt_snapshot), 0) FROM odoo_sync.order_state WHERE order_key = '{id}'"
        ))
        .await;
    assert_eq!(noted, 1, "the second push is still noted");

    // The second push's write lands; meanwhile the line is edited here again.
    env.write_line(lines[0], json!({"product_qty": 8})).await;
    env.sql(&format!(
        "UPDATE order_items SET quantity = 9 WHERE id = {item}"
    ))
    .await;
    let report = env.poll().await;
    assert_eq!(report.outcomes.get("conflict"), None, "{report:?}");
    assert!(env.open_conflicts().await.is_empty());
    env.drain().await;
    assert_eq!(env.local_lines(id).await[0].0.normalize(), d("9"));
    env.assert_equal(id).await;
    env.finish().await;
}

/// A push whose reply was lost landed in Odoo in the same second as the order's last sync, so
/// Odoo's `write_date` is the one already known. A pull that reads the order then recognises
/// the push as our own write and settles its note: the base must become that write too.
/// (Settling the note but returning "seen already" before storing the base forgot the push
/// altogether; the next local edit met it as a false VERSION_CONFLICT in the eager chaos run.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recognised_push_of_the_same_second_becomes_the_base() {
    let env = setup("tw_same_second_push").await;
    let (id, odoo_id, lines) = synced_order(&env, "PO-SAME").await;
    let item: i64 = env
        .one(&format!(
            "SELECT min(id) FROM order_items WHERE order_id = {id}"
        ))
        .await;
    env.sql(&format!(
        "UPDATE order_items SET quantity = 7 WHERE id = {item}"
    ))
    .await;
    note_local_attempt(&env, id).await;
    env.write_line(lines[0], json!({"product_qty": 7})).await;
    let read = read_in_the_same_second(&env, id, odoo_id).await;
    let applied = odoo_sync_worker::pull::remote::apply(&env.db.client, &read, false, None)
        .await
        .expect("apply_remote");
    assert_ne!(applied.outcome, "conflict", "{:?}", applied.answer);
    let (noted, base): (i32, Value) = {
        let r = env
            .db
            .client
            .query_one(
                "SELECT COALESCE(jsonb_array_length(attempt_snapshot), 0),
                        base_snapshot -> 'lines' -> $2 -> 'quantity'
                 FROM odoo_sync.order_state WHERE order_key = $1",
                &[&id.to_string(), &item.to_string()],
            )
            .await
            .expect("state");
        (r.get(0), r.get(1))
    };
    assert_eq!(noted, 0, "the push is settled");
    assert_eq!(base.as_f64(), Some(7.0), "and it is the base");

    // A local edit, then the same read again (the poll's overlap window): no conflict.
    env.sql(&format!(
        "UPDATE order_items SET quantity = 9 WHERE id = {item}"
    ))
    .await;
    let again = odoo_sync_worker::pull::remote::apply(&env.db.client, &read, false, None)
        .await
        .expect("apply_remote");
    assert_ne!(again.outcome, "conflict", "{:?}", again.answer);
    assert!(env.open_conflicts().await.is_empty());
    env.drain().await;
    assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("9"));
    env.assert_equal(id).await;
    env.finish().await;
}

/// The base of order `id`, and the quantity of its item `item` in the database.
async fn base_and_quantity(env: &Env, id: i64, item: i64) -> (Value, String) {
    let r = env
        .db
        .client
        .query_one(
            "SELECT s.base_snapshot, (SELECT i.quantity::text FROM order_items i WHERE i.id = $2)
             FROM odoo_sync.order_state s WHERE s.order_key = $1",
            &[&id.to_string(), &item],
        )
        .await
        .expect("base");
    (r.get(0), r.get(1))
}

/// Reads order `odoo_id` from Odoo as the worker does, and makes its write_date the one stored
/// for order `id`: as if the read were of the same second as the last sync, where write_date
/// alone cannot tell whether Odoo changed the order.
async fn read_in_the_same_second(env: &Env, id: i64, odoo_id: i64) -> Value {
    let read = odoo_sync_worker::pull::remote::fetch(&env.db.client, &env.odoo, &[odoo_id])
        .await
        .expect("read")
        .remove(0);
    env.db
        .client
        .execute(
            "UPDATE odoo_sync.order_state SET odoo_write_date = $1 WHERE order_key = $2",
            &[&read["write_date"].as_str(), &id.to_string()],
        )
        .await
        .expect("same second");
    read
}

/// Claims the one queued job as worker `worker`: its id and attempt token.
async fn claim_as(env: &Env, worker: &str) -> (i64, i64) {
    let claimed = env
        .db
        .client
        .query_one(
            "SELECT job_id, attempt_token FROM odoo_sync.claim_jobs($1, 10, '5 minutes')",
            &[&worker],
        )
        .await
        .expect("claim");
    (claimed.get(0), claimed.get(1))
}

/// Hands order `odoo_id`, read in the same second as its last sync, to apply_remote for the
/// running push job `job` (what a push does before it writes).
async fn merge_for_push(env: &Env, id: i64, odoo_id: i64, job: (i64, i64)) -> Value {
    let read = read_in_the_same_second(env, id, odoo_id).await;
    odoo_sync_worker::pull::remote::apply(&env.db.client, &read, false, Some(job))
        .await
        .expect("apply_remote")
        .answer
}

/// An update push asks Odoo first; when Odoo holds exactly the base, apply_remote decides so
/// without merging (the local document stays current: `local_written` false) and writes
/// nothing. Any Odoo change of the same second, a discount alone included, still goes through
/// the merge. Also: a batched create stores Odoo's origin in the base.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_push_skips_the_merge_only_while_odoo_holds_the_base() {
    let env = setup("tw_push_skip").await;
    let (id, odoo_id, lines) = synced_order(&env, "PO-SKIP").await;
    let items = env.item_ids(id).await;
    let (base, _) = base_and_quantity(&env, id, items[0]).await;
    assert_eq!(base["origin"], "PO-SKIP", "{base}");

    env.sql(&format!(
        "UPDATE order_items SET quantity = 5 WHERE id = {}",
        items[0]
    ))
    .await;
    let job = claim_as(&env, "skip-test").await;

    let answer = merge_for_push(&env, id, odoo_id, job).await;
    assert_eq!(answer["outcome"], "unchanged", "{answer}");
    assert_eq!(answer["local_written"], false, "{answer}");
    assert_eq!(
        base_and_quantity(&env, id, items[0]).await,
        (base, "5.000".to_string())
    );

    // A quantity changed in Odoo in the same second: applied to the local line.
    env.write_line(lines[1], json!({"product_qty": 4})).await;
    let answer = merge_for_push(&env, id, odoo_id, job).await;
    assert_eq!(answer["outcome"], "applied", "{answer}");
    assert_eq!(base_and_quantity(&env, id, items[1]).await.1, "4.000");

    // A discount typed (after the quantity: Odoo 17+ computes it again on a quantity write)
    // in Odoo in the same second: merged (the base learns it).
    env.write_line(lines[1], json!({"discount": 10})).await;
    let answer = merge_for_push(&env, id, odoo_id, job).await;
    assert_ne!(answer["local_written"], false, "{answer}");
    let (base, _) = base_and_quantity(&env, id, items[1]).await;
    let key = items[1].to_string();
    assert_eq!(
        base["lines"][key.as_str()]["discount"].as_f64(),
        Some(10.0),
        "{base}"
    );

    env.sql("SELECT odoo_sync.release_jobs('skip-test')").await;
    env.drain().await;
    let odoo = env.odoo_lines(odoo_id).await;
    assert_eq!((odoo[0].1, odoo[1].1), (d("5"), d("4")));
    assert_eq!(odoo_discounts(&env, &lines).await, vec![d("0"), d("10")]);
    assert!(env.open_conflicts().await.is_empty());
    env.assert_equal(id).await;
    env.finish().await;
}

/// The same decision on Odoo 16 (no line discounts, where the pushes' bases say 0) and for a
/// tracking that maps no notes column (Odoo's notes then do not count): an order Odoo holds as
/// the base is pushed without a merge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_push_skips_the_merge_on_16_and_without_notes() {
    let without_notes = common_schema("bigint").replace("            notes text,\n", "");
    for (label, version, schema) in [
        ("tw_push_skip_16", 16, common_schema("bigint")),
        ("tw_push_skip_no_notes", 19, without_notes),
    ] {
        let env = setup_schema(label, version, &schema).await;
        let (id, odoo_id, _) = synced_order(&env, "PO-SKIP").await;
        env.sql(&format!(
            "UPDATE order_items SET quantity = 5 WHERE id = (SELECT min(id) FROM order_items WHERE order_id = {id})"
        ))
        .await;
        let job = claim_as(&env, "skip-test").await;
        let answer = merge_for_push(&env, id, odoo_id, job).await;
        assert_eq!(answer["local_written"], false, "{label}: {answer}");
        env.sql("SELECT odoo_sync.release_jobs('skip-test')").await;
        env.drain().await;
        assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("5"), "{label}");
        env.assert_equal(id).await;
        env.finish().await;
    }
}

/// The discounts (%) of Odoo lines `ids`, in that order.
async fn odoo_discounts(env: &Env, ids: &[i64]) -> Vec<Decimal> {
    let read = env
        .odoo
        .read("purchase.order.line", ids, &["discount"])
        .await
        .expect("read discounts");
    ids.iter()
        .map(|id| {
            let line = read
                .iter()
                .find(|l| l.get("id").and_then(Value::as_i64) == Some(*id))
                .expect("line read");
            quantity(line.get("discount").expect("discount"), "discount")
                .expect("a number")
                .normalize()
        })
        .collect()
}

/// A discount typed in Odoo on an order created here is Odoo's to set: the local side only
/// has unit prices. From 17, Odoo computes a line's discount again whenever its quantity is
/// written, and pushes write every line's quantity, so a push must write back the discount
/// Odoo had; it reset it to 0 before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discount_typed_in_odoo_survives_pushes_of_local_edits() {
    let env = setup("tw_discount").await;
    let (id, odoo_id, lines) = synced_order(&env, "PO-DISC").await;
    let items = env.item_ids(id).await;
    // Pulled first, then a local edit of the line's quantity.
    env.write_line(lines[0], json!({"discount": 10})).await;
    let report = env.poll().await;
    assert_eq!(report.outcomes.get("conflict"), None, "{report:?}");
    env.sql(&format!(
        "UPDATE order_items SET quantity = 5 WHERE id = {}",
        items[0]
    ))
    .await;
    env.drain().await;
    assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("5"));
    assert_eq!(odoo_discounts(&env, &lines).await, vec![d("10"), d("0")]);

    // Typed in Odoo and, before any poll, a local edit of the same line: the push merges
    // Odoo's version first.
    env.write_line(lines[1], json!({"discount": 2.5})).await;
    env.sql(&format!(
        "UPDATE order_items SET quantity = 4 WHERE id = {}",
        items[1]
    ))
    .await;
    env.drain().await;
    assert_eq!(env.odoo_lines(odoo_id).await[1].1, d("4"));
    assert_eq!(odoo_discounts(&env, &lines).await, vec![d("10"), d("2.5")]);

    // A line added here has none: its local price is the price paid.
    env.sql(&format!(
        "INSERT INTO order_items (order_id, product_id, product_code, quantity, unit_price)
         VALUES ({id}, 'FURN_0001', 'FURN_0001', 1, 7)"
    ))
    .await;
    env.drain().await;
    let now: Vec<i64> = env.odoo_lines(odoo_id).await.iter().map(|l| l.0).collect();
    assert_eq!(now.len(), 3);
    assert_eq!(
        odoo_discounts(&env, &now).await,
        vec![d("10"), d("2.5"), d("0")]
    );
    assert!(env.open_conflicts().await.is_empty());
    env.assert_equal(id).await;
    env.finish().await;
}

/// A base stored before the discounts were kept (an upgraded database) does not hold Odoo's.
/// A push reads the order first (a `write_date` equal to the stored one is ambiguous), and the
/// merge stores Odoo's discounts in the base even when nothing else differs (a push asked for
/// with `sync_order`), so the push writes them back rather than 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_without_discounts_learns_them_before_the_next_push() {
    let env = setup("tw_discount_upgrade").await;
    let (id, odoo_id, lines) = synced_order(&env, "PO-OLDBASE").await;
    env.write_line(lines[0], json!({"discount": 15})).await;
    env.poll().await;
    // As an older version stored it: no discount in the base's lines.
    env.sql(&format!(
        "UPDATE odoo_sync.order_state SET base_snapshot = jsonb_set(base_snapshot, '{{lines}}',
             (SELECT jsonb_object_agg(k, v - 'discount') FROM jsonb_each(base_snapshot -> 'lines') x(k, v)))
         WHERE order_key = '{id}';
         SELECT odoo_sync.sync_order({id}::bigint);"
    ))
    .await;
    env.drain().await;
    assert_eq!(odoo_discounts(&env, &lines).await, vec![d("15"), d("0")]);
    env.sql(&format!(
        "UPDATE order_items SET quantity = 8 WHERE id = (SELECT min(id) FROM order_items WHERE order_id = {id})"
    ))
    .await;
    env.drain().await;
    assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("8"));
    assert_eq!(odoo_discounts(&env, &lines).await, vec![d("15"), d("0")]);
    assert!(env.open_conflicts().await.is_empty());
    env.assert_equal(id).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_over_an_unseen_odoo_change_becomes_a_version_conflict() {
    let env = setup("tw_version").await;
    let (id, odoo_id, lines) = synced_order(&env, "PO-V").await;
    // The Odoo change arrives after the last poll (in the same second as the last sync: its
    // write_date alone cannot tell); the local change is pushed before any poll.
    env.write_line(lines[0], json!({"product_qty": 9, "price_unit": 10.0}))
        .await;
    env.sql(&format!(
        "UPDATE order_items SET quantity = 6 WHERE id = (SELECT min(id) FROM order_items WHERE order_id = {id})"
    ))
    .await;
    env.drain().await;
    // Odoo's 9 was not overwritten.
    assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("9"));
    let conflicts = env.open_conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].1, "VERSION_CONFLICT");
    assert_eq!(conflicts[0].2[0]["local"].as_f64(), Some(6.0));
    assert_eq!(conflicts[0].2[0]["remote"].as_f64(), Some(9.0));
    resolve(&env, &conflicts[0].0, "KEEP_LOCAL", None).await;
    env.drain().await;
    env.assert_equal(id).await;
    assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("6"));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_computed_locally_that_disagree_with_odoo_are_a_data_mismatch() {
    let env = setup("tw_mismatch").await;
    // The application computes totals without tax; Odoo adds 15 %.
    let id = env
        .insert_order("PO-D", &[("FURN_0001", "2", "10.00")])
        .await;
    env.sql(&format!(
        "UPDATE orders SET subtotal = 20, sales_tax = 0, grand_total = 20 WHERE id = {id}"
    ))
    .await;
    env.drain().await;
    let conflicts = env.open_conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].1, "DATA_MISMATCH");
    assert_eq!(
        norm(&conflicts[0].2),
        norm(
            &json!([{"field": "amounts.sales_tax", "base": null, "local": 0, "remote": 3},
                     {"field": "amounts.grand_total", "base": null, "local": 20, "remote": 23}])
        )
    );
    // The local totals were not overwritten while the conflict is open.
    let total: String = env
        .one(&format!(
            "SELECT grand_total::text FROM orders WHERE id = {id}"
        ))
        .await;
    assert_eq!(total, "20.00");
    let r = resolve(&env, &conflicts[0].0, "KEEP_REMOTE", None).await;
    assert_eq!(r["sync_status"], "SYNCED");
    let (tax, total): (String, String) = {
        let r = env
            .db
            .client
            .query_one(
                "SELECT sales_tax::text, grand_total::text FROM orders WHERE id = $1",
                &[&id],
            )
            .await
            .expect("totals");
        (r.get(0), r.get(1))
    };
    assert_eq!((tax.as_str(), total.as_str()), ("3.00", "23.00"));
    // A later line change: the totals written back are Odoo's, so no new mismatch.
    env.sql(&format!(
        "UPDATE order_items SET quantity = 3 WHERE order_id = {id}"
    ))
    .await;
    env.drain().await;
    assert!(env.open_conflicts().await.is_empty());
    let total: String = env
        .one(&format!(
            "SELECT grand_total::text FROM orders WHERE id = {id}"
        ))
        .await;
    assert_eq!(total, "34.50");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_line_of_a_confirmed_order_is_a_business_rule_violation() {
    let env = setup("tw_rule").await;
    let (id, odoo_id, lines) = synced_order(&env, "PO-R").await;
    env.odoo
        .call_button("purchase.order", "button_confirm", &[odoo_id])
        .await
        .expect("confirm");
    env.write_line(lines[1], json!({"qty_received": 2})).await;
    env.poll().await;
    let status: String = env
        .one(&format!("SELECT status FROM orders WHERE id = {id}"))
        .await;
    assert_eq!(status, "PARTIALLY_RECEIVED");

    // The delete commits, and the conflict says why it will not sync.
    env.sql(&format!(
        "DELETE FROM order_items WHERE id = (SELECT min(id) FROM order_items WHERE order_id = {id})"
    ))
    .await;
    let conflicts = env.open_conflicts().await;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].1, "BUSINESS_RULE_VIOLATION");
    let diff = &conflicts[0].2[0];
    assert_eq!(diff["local"], Value::Null);
    assert_eq!(diff["remote"]["quantity"].as_f64(), Some(2.0));
    assert!(
        diff["rule"].as_str().unwrap_or("").contains("confirmed"),
        "{diff}"
    );
    let remaining: i64 = env
        .one(&format!(
            "SELECT count(*) FROM order_items WHERE order_id = {id}"
        ))
        .await;
    assert_eq!(remaining, 1);
    env.drain().await;
    assert_eq!(
        env.odoo_lines(odoo_id).await.len(),
        2,
        "not pushed while in conflict"
    );
    // KEEP_REMOTE brings the line back.
    resolve(&env, &conflicts[0].0, "KEEP_REMOTE", None).await;
    env.drain().await;
    env.assert_equal(id).await;

    // Lowering a quantity below what Odoo received: recorded at once; MERGE picks a valid one.
    env.sql(&format!(
        "UPDATE order_items SET quantity = 1 WHERE order_id = {id} AND product_id = 'FURN_0269'"
    ))
    .await;
    let conflicts = env.open_conflicts().await;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].1, "BUSINESS_RULE_VIOLATION");
    let field = conflicts[0].2[0]["field"]
        .as_str()
        .expect("field")
        .to_string();
    assert!(conflicts[0].2[0]["rule"]
        .as_str()
        .unwrap_or("")
        .contains("received"));
    resolve(&env, &conflicts[0].0, "MERGE", Some(json!({ field: 2 }))).await;
    env.drain().await;
    env.assert_equal(id).await;
    let sync: String = env
        .one(&format!("SELECT sync_status FROM orders WHERE id = {id}"))
        .await;
    assert_eq!(sync, "SYNCED");
    env.finish().await;
}

/// Odoo orders created directly in Odoo, for two partners (0, 0, 1, 1, 0, 0, ...); returns the
/// order ids and the partner ids.
async fn odoo_orders(env: &Env, count: usize) -> (Vec<i64>, Vec<i64>) {
    let partners = env
        .odoo
        .search(
            "res.partner",
            &Domain::is_in("ref", ["V-WOOD", "V-AZURE"]),
            None,
            Some("id"),
        )
        .await
        .expect("partners");
    let product = odoo_record(env, "product.product", "default_code", "FURN_0001").await;
    let vals: Vec<Value> = (0..count)
        .map(|n| {
            json!({"partner_id": partners[(n / 2) % 2],
                   "order_line": [[0, 0, {"product_id": product, "product_qty": n + 1, "price_unit": 5.0}]]})
        })
        .collect();
    let ids = env
        .odoo
        .create("purchase.order", &vals)
        .await
        .expect("create in Odoo");
    (ids, partners)
}

/// The Odoo id of the record of `model` whose `field` is `value` (seeded partners, products).
async fn odoo_record(env: &Env, model: &str, field: &str, value: &str) -> i64 {
    env.odoo
        .search(model, &Domain::eq(field, value), None, None)
        .await
        .expect(model)[0]
}

/// `count` Odoo orders imported and polled once, then one Odoo write changing every line's
/// price to 6.5 a second later: all of them then share one `write_date`, newer than the
/// watermark. Returns the Odoo order ids.
async fn imported_orders_then_one_odoo_write(env: &Env, count: usize) -> Vec<i64> {
    let (ids, _) = odoo_orders(env, count).await;
    env.sql(r#"SELECT odoo_sync.import_orders('{"date_from": "2000-01-01"}')"#)
        .await;
    env.drain().await;
    let imported: i64 = env.one("SELECT count(*) FROM orders").await;
    assert_eq!(imported, count as i64);
    env.poll().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let lines = env
        .odoo
        .search(
            "purchase.order.line",
            &Domain::is_in("order_id", ids.clone()),
            None,
            None,
        )
        .await
        .expect("lines");
    env.odoo
        .write("purchase.order.line", &lines, &json!({"price_unit": 6.5}))
        .await
        .expect("one write");
    ids
}

/// An order edited in Odoo while a poll pages through many orders moves to the end of the
/// order. Pages that follow the last key read (not an offset) still read every other order in
/// that same poll, and the edited one again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_odoo_edit_during_a_paged_poll_skips_no_order() {
    let env = setup("tw_paging").await;
    let ids = imported_orders_then_one_odoo_write(&env, 450).await;
    let first_line = env
        .odoo
        .search(
            "purchase.order.line",
            &Domain::eq("order_id", ids[0]),
            None,
            None,
        )
        .await
        .expect("line")[0];
    // Every Odoo request takes a second: the edit lands after the poll's first page and
    // before its second, in a later second than the write above.
    let faults = |spec: Value| {
        env.sim
            .sim
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply(&serde_json::from_value(spec).expect("spec"))
            .expect("faults");
    };
    faults(json!({"latency_ms": 1000}));
    let pages_before = env.calls("purchase.order.search_read").await;
    let edit = async {
        while env.calls("purchase.order.search_read").await == pages_before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        env.odoo
            .write(
                "purchase.order.line",
                &[first_line],
                &json!({"price_unit": 7.5}),
            )
            .await
            .expect("edit");
    };
    let poll_settings = settings();
    let (report, ()) = tokio::join!(poll_once(&env.worker, &env.odoo, &poll_settings), edit);
    faults(json!({"latency_ms": 0}));
    let report = report.expect("poll");
    assert_eq!(report.orders, 450, "{report:?}");
    assert!(!report.resumes);
    let missed: i64 = env
        .one("SELECT count(*) FROM order_items WHERE unit_price NOT IN (6.5, 7.5)")
        .await;
    assert_eq!(missed, 0, "orders the poll skipped: {report:?}");
    let edited: String = env
        .one(&format!(
            "SELECT i.unit_price::text FROM order_items i JOIN orders o ON o.id = i.order_id \
             WHERE o.odoo_order_id = {}",
            ids[0]
        ))
        .await;
    assert_eq!(edited, "7.50", "the edit is read in the same poll");
    env.finish().await;
}

/// More changed orders than one poll reads (here one page of 200 per poll, 25 by default):
/// each poll goes on where the last one stopped, instead of reading the same first pages of
/// the overlap window again and never getting past them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_goes_on_where_the_last_one_stopped() {
    let env = setup("tw_resume").await;
    imported_orders_then_one_odoo_write(&env, 450).await;
    let one_page = PollSettings {
        max_pages: 1,
        ..settings()
    };
    let mut reports = Vec::new();
    for _ in 0..3 {
        let r = poll_once(&env.worker, &env.odoo, &one_page)
            .await
            .expect("poll");
        reports.push((r.orders, r.handed, r.resumes));
    }
    assert_eq!(
        reports,
        [(200, 200, true), (200, 200, true), (50, 50, false)]
    );
    let stale: i64 = env
        .one("SELECT count(*) FROM order_items WHERE unit_price <> 6.5")
        .await;
    assert_eq!(stale, 0);
    // The pass is over: the next one reads the window again from its start (the newest
    // second is never taken as seen), and finds nothing to change.
    let again = poll_once(&env.worker, &env.odoo, &one_page)
        .await
        .expect("poll");
    assert_eq!(again.orders, 200, "{again:?}");
    assert_eq!(again.outcomes.get("unchanged"), Some(&200), "{again:?}");
    env.finish().await;
}

/// Two imports of one Odoo order at once (two workers' import batches, or an import and a
/// `sync_order_from_odoo`): the second waits for the first and finds its order, instead of
/// creating a second local order linked to the same Odoo order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_imports_of_one_odoo_order_at_once_make_one_local_order() {
    let env = setup("tw_import_race").await;
    let (ids, _) = odoo_orders(&env, 1).await;
    let doc = odoo_sync_worker::pull::remote::fetch(&env.db.client, &env.odoo, &ids)
        .await
        .expect("document")
        .remove(0);
    let first = env.db.connect().await;
    let second = env.db.connect().await;
    first.batch_execute("BEGIN").await.expect("begin");
    let outcome = |v: Value| v["outcome"].as_str().unwrap_or_default().to_string();
    let a: Value = first
        .query_one("SELECT odoo_sync.apply_remote($1, true)", &[&doc])
        .await
        .expect("first import")
        .get(0);
    assert_eq!(outcome(a), "imported");
    let doc2 = doc.clone();
    let racing = tokio::spawn(async move {
        second
            .query_one("SELECT odoo_sync.apply_remote($1, true)", &[&doc2])
            .await
            .map(|r| r.get::<_, Value>(0))
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !racing.is_finished(),
        "the second import waits for the first"
    );
    first.batch_execute("COMMIT").await.expect("commit");
    let b = racing.await.expect("task").expect("second import");
    assert_ne!(outcome(b.clone()), "imported", "{b}");
    let linked: i64 = env
        .one(&format!(
            "SELECT count(*) FROM orders WHERE odoo_order_id = {}",
            ids[0]
        ))
        .await;
    assert_eq!(linked, 1);
    env.finish().await;
}

/// An Odoo price with more digits than the local column keeps (12.345 in a numeric(12,2)
/// column, where Odoo's price precision is 3) is stored rounded; the merge does not take that rounding for a local edit, so
/// nothing is pushed back and Odoo keeps its price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounding_by_a_local_column_is_not_pushed_back_to_odoo() {
    let env = setup_three_digit_prices("tw_rounding").await;
    let partner = odoo_record(&env, "res.partner", "ref", "V-WOOD").await;
    let product = odoo_record(&env, "product.product", "default_code", "FURN_0001").await;
    let odoo_id = imported_order(
        &env,
        json!({"partner_id": partner, "order_line": [[0, 0,
                {"product_id": product, "product_qty": 2, "price_unit": 12.345}]]}),
    )
    .await;
    let local: String = env.one("SELECT unit_price::text FROM order_items").await;
    assert_eq!(local, "12.35");
    // The pull reads the order again, and again after an Odoo edit elsewhere on it.
    env.poll().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.odoo
        .write(
            "purchase.order",
            &[odoo_id],
            &json!({"origin": "edited in Odoo"}),
        )
        .await
        .expect("edit");
    env.poll().await;
    let pushes: i64 = env
        .one("SELECT count(*) FROM odoo_sync.jobs WHERE kind = 'push'")
        .await;
    assert_eq!(pushes, 0, "nothing to push");
    env.drain().await;
    assert_eq!(env.odoo_lines(odoo_id).await[0].2, d("12.345"));
    assert!(env.open_conflicts().await.is_empty());
    env.finish().await;
}

/// The other way round: a local price with more digits than Odoo's price precision (12.3456
/// in a numeric(12,4) column, Odoo keeping two) is rounded by Odoo when pushed. The next read
/// of the order brings Odoo's 12.35 here, as an edit made in Odoo, and both sides agree from
/// then on: nothing is pushed again and no conflict is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_price_finer_than_odoos_precision_settles_on_odoos_rounding() {
    let schema =
        common_schema("bigint").replace("unit_price numeric(12,2)", "unit_price numeric(12,4)");
    let env = setup_schema("tw_finer_price", SimConfig::default().version, &schema).await;
    let id = env
        .insert_order("PO-FINE", &[("FURN_0001", "2", "12.3456")])
        .await;
    env.drain().await;
    let odoo_id = env.odoo_id(id).await;
    assert_eq!(env.odoo_lines(odoo_id).await[0].2, d("12.35"));
    env.poll().await;
    let local: String = env.one("SELECT unit_price::text FROM order_items").await;
    assert_eq!(local, "12.3500");
    let pushes: i64 = env
        .one("SELECT count(*) FROM odoo_sync.jobs WHERE kind = 'push'")
        .await;
    assert_eq!(pushes, 0, "nothing to push back");
    assert!(env.open_conflicts().await.is_empty());
    // A later local edit is pushed as usual, with the price Odoo keeps.
    env.sql(&format!(
        "UPDATE order_items SET quantity = 3 WHERE order_id = {id}"
    ))
    .await;
    env.drain().await;
    assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("3"));
    assert!(env.open_conflicts().await.is_empty());
    env.assert_equal(id).await;
    env.finish().await;
}

/// A pull reads an order, a push of a local edit lands in Odoo in the same second, and only
/// then does the pull hand over what it read. Odoo's `write_date` (one-second resolution)
/// cannot tell the two versions apart, so the read looked current: it undid the local edit and
/// became the base, and the next local edit met our own push as a VERSION_CONFLICT (found by
/// the eager chaos run in CI). A read that began before the order's last sync is stale now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_of_odoo_older_than_a_push_of_the_same_second_undoes_nothing() {
    let env = setup("tw_stale_read").await;
    let (id, odoo_id, _) = synced_order(&env, "PO-STALE").await;
    let item: i64 = env
        .one(&format!(
            "SELECT min(id) FROM order_items WHERE order_id = {id}"
        ))
        .await;
    let write_date = |docs: Vec<Value>| docs[0]["write_date"].as_str().map(str::to_string);
    // Until the read and the push fall in one second (a try takes a fraction of one).
    let mut tries = 0;
    let (stale, qty) = loop {
        tries += 1;
        let qty = 10 + tries;
        let stale = odoo_sync_worker::pull::remote::fetch(&env.db.client, &env.odoo, &[odoo_id])
            .await
            .expect("read")
            .remove(0);
        env.sql(&format!(
            "UPDATE order_items SET quantity = {qty} WHERE id = {item}"
        ))
        .await;
        env.drain().await;
        let now = odoo_sync_worker::pull::remote::fetch(&env.db.client, &env.odoo, &[odoo_id])
            .await
            .expect("read");
        assert_eq!(env.odoo_lines(odoo_id).await[0].1, d(&qty.to_string()));
        if write_date(now) == stale["write_date"].as_str().map(str::to_string) {
            break (stale, qty);
        }
        assert!(tries < 10, "no read and push within one second in 10 tries");
    };
    let applied = odoo_sync_worker::pull::remote::apply(&env.db.client, &stale, false, None)
        .await
        .expect("apply_remote");
    assert_eq!(applied.outcome, "stale", "{:?}", applied.answer);
    // A read_at that is no time is refused, and changes nothing either.
    let mut bad = stale.clone();
    bad["read_at"] = json!("yesterday at noon");
    let err = env
        .db
        .client
        .query_one("SELECT odoo_sync.apply_remote($1)", &[&bad])
        .await
        .expect_err("a read_at that is no time");
    assert_eq!(err.code().map(|c| c.code()), Some("22007"), "{err:?}");
    assert_eq!(env.local_lines(id).await[0].0, d(&qty.to_string()));
    let base: Value = env
        .one(&format!(
            "SELECT base_snapshot -> 'lines' -> '{item}' -> 'quantity' FROM odoo_sync.order_state WHERE order_key = '{id}'"
        ))
        .await;
    assert_eq!(
        base.as_f64(),
        Some(f64::from(qty)),
        "the base is still the push"
    );
    // The next local edit is pushed, not met as a conflict.
    env.sql(&format!(
        "UPDATE order_items SET quantity = 4 WHERE id = {item}"
    ))
    .await;
    env.drain().await;
    assert!(env.open_conflicts().await.is_empty());
    assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("4"));
    env.assert_equal(id).await;
    // A read that began after the sync is current, even within the same second.
    let fresh = odoo_sync_worker::pull::remote::fetch(&env.db.client, &env.odoo, &[odoo_id])
        .await
        .expect("read")
        .remove(0);
    let again = odoo_sync_worker::pull::remote::apply(&env.db.client, &fresh, false, None)
        .await
        .expect("apply_remote");
    assert_eq!(again.outcome, "unchanged", "{:?}", again.answer);
    env.finish().await;
}

/// The worker's read clock is the database's, written in JSON's ISO 8601 form: it means the
/// same instant to a session with any DateStyle and time zone. The text form of a timestamp
/// follows DateStyle ("27/11/2026 09:51:44.1 EST" under SQL, DMY), which another DateStyle
/// reads as another day, or not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_clock_is_the_same_instant_under_any_datestyle() {
    let env = setup("tw_read_clock").await;
    env.sql("SET datestyle = 'SQL, DMY'; SET timezone = 'America/New_York'")
        .await;
    let read_at = odoo_sync_worker::pull::remote::database_clock(&env.db.client)
        .await
        .expect("clock");
    for (datestyle, zone) in [("ISO, MDY", "Asia/Kolkata"), ("German", "UTC")] {
        env.sql(&format!(
            "SET datestyle = '{datestyle}'; SET timezone = '{zone}'"
        ))
        .await;
        let age: f64 = env
            .db
            .client
            .query_one(
                "SELECT extract(epoch FROM clock_timestamp() - $1::text::timestamptz)::float8",
                &[&read_at],
            )
            .await
            .expect("read_at is a timestamp")
            .get(0);
        assert!((0.0..30.0).contains(&age), "{read_at} read as {age} s ago");
    }
    env.finish().await;
}

/// A poll that finds an order busy (its push is running) queues a pull job and does not mark
/// the row seen: the next poll applies it, whatever became of the pull job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_order_is_not_marked_seen_by_the_poll() {
    let env = setup("tw_busy_seen").await;
    let (id, odoo_id, _) = synced_order(&env, "PO-BUSY").await;
    env.poll().await;
    env.sql(&format!("SELECT odoo_sync.sync_order({id}::bigint)"))
        .await;
    let claimed = env
        .worker
        .query_one(
            "SELECT job_id, attempt_token FROM odoo_sync.claim_jobs('someone-else', 10, '5 minutes')",
            &[],
        )
        .await
        .expect("claim the push");
    let (job, token): (i64, i64) = (claimed.get(0), claimed.get(1));
    // A purchaser's price in Odoo, a second later than everything before.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let line = env.odoo_lines(odoo_id).await[0].0;
    env.odoo
        .write("purchase.order.line", &[line], &json!({"price_unit": 77.5}))
        .await
        .expect("Odoo edit");
    // Another Odoo order a second later: the poll keeps no row of the newest second as seen,
    // so only with a newer one is there a mark to test.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let wood = odoo_record(&env, "res.partner", "ref", "V-WOOD").await;
    env.odoo
        .create("purchase.order", &[json!({"partner_id": wood})])
        .await
        .expect("another Odoo order");
    let report = env.poll().await;
    assert_eq!(report.outcomes.get("busy"), Some(&1), "{report:?}");
    let seen: Option<String> = env
        .one(&format!(
            "SELECT seen ->> '{odoo_id}' FROM odoo_sync.pull_position()"
        ))
        .await;
    let write_date = env
        .odoo
        .read("purchase.order", &[odoo_id], &["write_date"])
        .await
        .expect("read")[0]["write_date"]
        .as_str()
        .expect("write_date")
        .to_string();
    assert!(
        seen.as_deref().is_none_or(|s| !s.starts_with(&write_date)),
        "the busy row was marked seen: {seen:?}"
    );
    let pulls: i64 = env
        .one("SELECT count(*) FROM odoo_sync.jobs WHERE kind = 'pull'")
        .await;
    assert_eq!(pulls, 1, "a pull job reads it after the push");
    // The push gives its job back; the next poll applies the Odoo edit itself.
    env.worker
        .execute("SELECT odoo_sync.requeue_job($1, $2)", &[&job, &token])
        .await
        .expect("requeue");
    let report = env.poll().await;
    assert_eq!(report.outcomes.get("applied"), Some(&1), "{report:?}");
    assert_eq!(env.local_lines(id).await[0].1, d("77.5"));
    env.drain().await;
    env.finish().await;
}

/// An imported order keeps Odoo's `origin` (its Source Document: the sales order or
/// replenishment that made it) when a local edit is pushed. Its local order number is Odoo's
/// `name`, so writing it into `origin`, as for orders created here, erased that link in Odoo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushing_an_imported_order_keeps_its_odoo_origin() {
    let env = setup("tw_origin").await;
    let partner = odoo_record(&env, "res.partner", "ref", "V-WOOD").await;
    let product = odoo_record(&env, "product.product", "default_code", "FURN_0001").await;
    let odoo_id = env
        .odoo
        .create(
            "purchase.order",
            &[
                json!({"partner_id": partner, "origin": "S00042", "order_line": [[0, 0,
                {"product_id": product, "product_qty": 2, "price_unit": 10}]]}),
            ],
        )
        .await
        .expect("create")[0];
    env.sql(r#"SELECT odoo_sync.import_orders('{"date_from": "2000-01-01"}')"#)
        .await;
    env.drain().await;
    env.sql("UPDATE order_items SET quantity = 5").await;
    env.drain().await;
    assert_eq!(
        env.odoo_lines(odoo_id).await[0].1,
        d("5"),
        "the edit is in Odoo"
    );
    let origin = env
        .odoo
        .read("purchase.order", &[odoo_id], &["origin"])
        .await
        .expect("read")[0]["origin"]
        .clone();
    assert_eq!(origin, json!("S00042"));
    assert!(env.open_conflicts().await.is_empty());
    env.finish().await;
}

/// A local edit of one line of an imported order changes that line in Odoo, and nothing else:
/// Odoo's sections and notes stay (the pull never brings them here; the push removed them, and
/// on a confirmed order Odoo refused the whole write), and a price that only a local column
/// rounded (12.345 kept as 12.35) is not replaced by the rounded one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_edit_of_an_imported_order_leaves_the_rest_as_odoo_has_it() {
    let env = setup_three_digit_prices("tw_linked_diff").await;
    let partner = odoo_record(&env, "res.partner", "ref", "V-WOOD").await;
    let desk = odoo_record(&env, "product.product", "default_code", "FURN_0001").await;
    let chair = odoo_record(&env, "product.product", "default_code", "FURN_0269").await;
    let odoo_id = imported_order(
        &env,
        json!({"partner_id": partner, "order_line": [
                [0, 0, {"display_type": "line_section", "name": "Furniture"}],
                [0, 0, {"product_id": desk, "product_qty": 2, "price_unit": 12.345}],
                [0, 0, {"display_type": "line_note", "name": "Deliver to gate 4"}],
                [0, 0, {"product_id": chair, "product_qty": 1, "price_unit": 10}]]}),
    )
    .await;
    let items: i64 = env.one("SELECT count(*) FROM order_items").await;
    assert_eq!(items, 2, "sections and notes are not goods");
    env.sql("UPDATE order_items SET quantity = 3 WHERE unit_price = 10")
        .await;
    env.drain().await;
    let lines = env
        .odoo
        .search_read(
            "purchase.order.line",
            &Domain::eq("order_id", odoo_id),
            &["display_type", "name", "product_qty", "price_unit"],
            0,
            None,
            Some("id"),
        )
        .await
        .expect("lines");
    // Sections and notes by their text, goods by quantity and price.
    let shape: Vec<String> = lines
        .iter()
        .map(|l| match l["display_type"].as_str() {
            Some(kind) => format!("{kind}: {}", l["name"].as_str().unwrap_or_default()),
            None => format!("{} x {}", l["product_qty"], l["price_unit"]),
        })
        .collect();
    assert_eq!(
        shape,
        [
            "line_section: Furniture",
            "2.0 x 12.345",
            "line_note: Deliver to gate 4",
            "3.0 x 10.0"
        ],
        "{lines:?}"
    );
    assert!(env.open_conflicts().await.is_empty());
    // The product's own comparison (goods only, through the local rounding) finds them equal.
    let report = odoo_sync_worker::verify::verify(&env.db.client, &env.odoo)
        .await
        .expect("verify");
    assert_eq!(
        (report.summary.compared, report.summary.equal),
        (1, 1),
        "{}",
        report.render_text()
    );
    env.finish().await;
}

/// A section an Odoo user added to an order created here survives a push that removes a
/// line: sections and notes are layout the pull never brings here, so they are not lines
/// removed locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_removes_a_line_keeps_odoos_sections() {
    let env = setup("tw_sections").await;
    let order = env
        .insert_order(
            "PO-SECT",
            &[("FURN_0001", "2", "10.00"), ("FURN_0269", "3", "20.00")],
        )
        .await;
    env.drain().await;
    let odoo_id = env.odoo_id(order).await;
    env.odoo
        .write(
            "purchase.order",
            &[odoo_id],
            &json!({"order_line": [[0, 0, {"display_type": "line_section", "name": "Chairs"}]]}),
        )
        .await
        .expect("add a section");
    env.poll().await;
    env.sql(&format!(
        "DELETE FROM order_items WHERE order_id = {order} AND product_id = 'FURN_0001'"
    ))
    .await;
    env.drain().await;
    let lines = env
        .odoo
        .search_read(
            "purchase.order.line",
            &Domain::eq("order_id", odoo_id),
            &["display_type", "name", "product_qty"],
            0,
            None,
            Some("id"),
        )
        .await
        .expect("lines");
    let shape: Vec<String> = lines
        .iter()
        .map(|l| match l["display_type"].as_str() {
            Some(kind) => format!("{kind}: {}", l["name"].as_str().unwrap_or_default()),
            None => format!("{}", l["product_qty"]),
        })
        .collect();
    assert_eq!(shape, ["3.0", "line_section: Chairs"], "{lines:?}");
    assert!(env.open_conflicts().await.is_empty());
    env.finish().await;
}

/// An Odoo user deletes a line between the push's read of the order and its write, and the
/// push deletes the same line: Odoo answers `MissingError` for it. That is the order changing
/// under the push, not a request that can never succeed: the job is retried (not dead-lettered),
/// and the retry, reading the order again, finds nothing left to delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_deleted_in_odoo_while_its_delete_is_pushed_is_retried() {
    let env = setup("tw_gone").await;
    let (order, odoo_id, lines) = synced_order(&env, "PO-GONE").await;
    env.sql(&format!(
        "DELETE FROM order_items WHERE order_id = {order} AND product_id = 'FURN_0001'"
    ))
    .await;
    let gone = lines[0];
    env.sim
        .sim
        .before_next_call("purchase.order", "write", move |sim| {
            sim.call_as_admin("purchase.order.line", "unlink", &[gone], vec![])
                .expect("an Odoo user deletes the line");
        });
    env.drain().await;
    let dead: i64 = env.one("SELECT count(*) FROM odoo_sync.dead_letters").await;
    assert_eq!(
        dead, 0,
        "a line deleted meanwhile is not a permanent failure"
    );
    let (state, attempts, error): (String, i32, Value) = {
        let row = env
            .db
            .client
            .query_one(
                "SELECT state, attempts, last_error FROM odoo_sync.jobs WHERE kind = 'push'",
                &[],
            )
            .await
            .expect("the push job waits for its retry");
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!((state.as_str(), attempts), ("failed", 1), "{error}");
    assert!(error.to_string().contains("MissingError"), "{error}");

    env.sql("UPDATE odoo_sync.jobs SET run_after = now()").await;
    env.drain().await;
    let remaining: Vec<i64> = env.odoo_lines(odoo_id).await.iter().map(|l| l.0).collect();
    assert_eq!(remaining, [lines[1]]);
    env.assert_equal(order).await;
    assert!(env.open_conflicts().await.is_empty());
    let sync: String = env
        .one(&format!(
            "SELECT sync_status FROM orders WHERE id = {order}"
        ))
        .await;
    assert_eq!(sync, "SYNCED");
    env.finish().await;
}

/// A learned mapping to a vendor or product Odoo no longer has (merged into another contact,
/// deleted) is resolved again, instead of failing every push that names it; a DBA's own
/// mapping to such a record is not replaced, and the push says which row to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_to_a_record_odoo_no_longer_has_is_resolved_again_unless_manual() {
    let env = setup("tw_stale_map").await;
    env.sql(
        "INSERT INTO odoo_sync.partner_map VALUES ('V-WOOD', 999999, 'ref'); \
         INSERT INTO odoo_sync.product_map VALUES ('FURN_0001', 999998, 'default_code')",
    )
    .await;
    let order = env
        .insert_order("PO-MAP", &[("FURN_0001", "2", "10.00")])
        .await;
    env.drain().await;
    let odoo_id = env.odoo_id(order).await;
    let wood = odoo_record(&env, "res.partner", "ref", "V-WOOD").await;
    let desk = odoo_record(&env, "product.product", "default_code", "FURN_0001").await;
    assert_eq!(vendor_and_first_line(&env, odoo_id).await.0, wood);
    let line = env
        .odoo
        .search_read(
            "purchase.order.line",
            &Domain::eq("order_id", odoo_id),
            &["product_id"],
            0,
            None,
            None,
        )
        .await
        .expect("line");
    assert_eq!(line[0]["product_id"][0].as_i64(), Some(desk));
    let maps: String = env
        .one(
            "SELECT (SELECT odoo_partner_id || ' ' || source FROM odoo_sync.partner_map) || ', ' || \
                    (SELECT odoo_product_id || ' ' || source FROM odoo_sync.product_map)",
        )
        .await;
    assert_eq!(maps, format!("{wood} ref, {desk} default_code"));

    env.sql("UPDATE odoo_sync.partner_map SET odoo_partner_id = 999999, source = 'manual'")
        .await;
    env.insert_order("PO-MAP-2", &[("FURN_0001", "1", "10.00")])
        .await;
    env.drain().await;
    let error: String = env
        .one("SELECT error_message FROM odoo_sync.dead_letters")
        .await;
    assert!(
        error.contains(
            "partner_map['V-WOOD'] maps supplier 'V-WOOD' to res.partner 999999, which Odoo no longer has"
        ),
        "{error}"
    );
    let kept: i32 = env
        .one("SELECT odoo_partner_id FROM odoo_sync.partner_map")
        .await;
    assert_eq!(kept, 999999, "a DBA's mapping is theirs to change");
    env.finish().await;
}

/// Creates the Odoo order `vals`, imports it and drains the queue; returns its Odoo id.
async fn imported_order(env: &Env, vals: Value) -> i64 {
    let odoo_id = env
        .odoo
        .create("purchase.order", &[vals])
        .await
        .expect("create")[0];
    env.sql(r#"SELECT odoo_sync.import_orders('{"date_from": "2000-01-01"}')"#)
        .await;
    env.drain().await;
    odoo_id
}

/// The vendor of an Odoo order, and the quantity and price of its first line.
async fn vendor_and_first_line(env: &Env, odoo_id: i64) -> (i64, Decimal, Decimal) {
    let order = env
        .odoo
        .read("purchase.order", &[odoo_id], &["partner_id"])
        .await
        .expect("read order");
    let vendor = order[0]["partner_id"][0].as_i64().expect("vendor");
    let line = env.odoo_lines(odoo_id).await[0];
    (vendor, line.1, line.2)
}

/// Gives Wood Corner's price-list entries a 10 % discount, which Odoo 17+ puts on the lines
/// it prices from them (at create, on a quantity written without a discount, from 18 on a
/// vendor written).
async fn wood_corner_discounts_10_percent(env: &Env) {
    let wood = odoo_record(env, "res.partner", "ref", "V-WOOD").await;
    let entries = env
        .odoo
        .search(
            "product.supplierinfo",
            &Domain::eq("partner_id", wood),
            None,
            None,
        )
        .await
        .expect("entries");
    env.odoo
        .write("product.supplierinfo", &entries, &json!({"discount": 10}))
        .await
        .expect("discount");
}

/// The discount of an Odoo order's first line.
async fn first_line_discount(env: &Env, odoo_id: i64) -> Decimal {
    let line = env.odoo_lines(odoo_id).await[0].0;
    let read = env
        .odoo
        .read("purchase.order.line", &[line], &["discount"])
        .await
        .expect("read line");
    quantity(&read[0]["discount"], "discount").expect("discount")
}

/// Edits the first item of `order` locally, then changes the vendor to Gemini and back to
/// Wood Corner, pushing after each step: Odoo keeps the local price 400 throughout, although
/// Wood Corner's price list sells the Large Desk (FURN_8220) at 480 less 10 %, and the first
/// line keeps its `discount`, which odoo_sync does not sync.
async fn local_prices_survive_vendor_writes(
    env: &Env,
    order: i64,
    odoo_id: i64,
    discount: Decimal,
) {
    let wood = odoo_record(env, "res.partner", "ref", "V-WOOD").await;
    let gemini = odoo_record(env, "res.partner", "ref", "V-GEMINI").await;
    env.sql(&format!(
        "UPDATE order_items SET quantity = 3 WHERE order_id = {order}"
    ))
    .await;
    env.drain().await;
    assert_eq!(
        vendor_and_first_line(env, odoo_id).await,
        (wood, d("3"), d("400")),
        "a quantity edit"
    );
    assert_eq!(first_line_discount(env, odoo_id).await, discount);
    for (supplier, name, vendor) in [
        ("V-GEMINI", "Gemini Furniture", gemini),
        ("V-WOOD", "Wood Corner", wood),
    ] {
        env.sql(&format!(
            "UPDATE orders SET supplier_id = '{supplier}', supplier_name = '{name}' WHERE id = {order}"
        ))
        .await;
        env.drain().await;
        assert_eq!(
            vendor_and_first_line(env, odoo_id).await,
            (vendor, d("3"), d("400")),
            "vendor {supplier}"
        );
        assert_eq!(
            first_line_discount(env, odoo_id).await,
            discount,
            "vendor {supplier}"
        );
    }
    // The pull finds nothing to bring back, and both sides agree.
    env.poll().await;
    env.drain().await;
    assert_eq!(env.local_lines(order).await[0], (d("3"), d("400")));
    assert!(env.open_conflicts().await.is_empty());
    let report = odoo_sync_worker::verify::verify(&env.db.client, &env.odoo)
        .await
        .expect("verify");
    assert_eq!(report.summary.equal, 1, "{}", report.render_text());
}

/// From Odoo 18 writing an order's vendor, even the same one, prices its lines again from the
/// vendor's price list at the end of the call, over the prices written with it. A push wrote
/// the vendor every time, so any local edit turned the application's negotiated prices into
/// the price list's. It now writes the vendor only when it changed, then the prices again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_keeps_local_prices_against_the_vendors_price_list() {
    for version in [18, 19] {
        let env = setup_version(&format!("tw_price_list_{version}"), version).await;
        wood_corner_discounts_10_percent(&env).await;
        let order = env
            .insert_order("PO-PRICES", &[("FURN_8220", "2", "400.00")])
            .await;
        env.drain().await;
        let odoo_id = env.odoo_id(order).await;
        assert_eq!(env.odoo_lines(odoo_id).await[0].2, d("400"), "created");
        // The local price is the price paid: no price-list discount over it.
        assert_eq!(first_line_discount(&env, odoo_id).await, d("0"), "created");
        local_prices_survive_vendor_writes(&env, order, odoo_id, d("0")).await;
        env.finish().await;
    }
}

/// A push that changes the vendor writes it (Odoo 18+ then prices the lines from the new
/// vendor's price list), then the prices again in a second call. A pull between the two calls
/// (the second one failed, or has not run yet) sees our vendor with the price list's prices:
/// that is our own write's doing, not an Odoo edit, and the local price stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_odoo_set_for_our_vendor_change_are_not_taken_for_odoo_edits() {
    let env = setup_version("tw_vendor_between", 19).await;
    let wood = odoo_record(&env, "res.partner", "ref", "V-WOOD").await;
    let order = env
        .insert_order(
            "PO-BETWEEN",
            &[("FURN_8220", "2", "400.00"), ("FURN_8220", "1", "390.00")],
        )
        .await;
    env.sql(&format!(
        "UPDATE orders SET supplier_id = 'V-GEMINI', supplier_name = 'Gemini Furniture' WHERE id = {order}"
    ))
    .await;
    env.drain().await;
    let odoo_id = env.odoo_id(order).await;
    env.poll().await;
    // Back to Wood Corner here, and the second line deleted; the push's first call lands in
    // Odoo (noted first, as the worker does), its second does not, nor the line's removal.
    let gone: i64 = env
        .one(&format!(
            "SELECT max(id) FROM order_items WHERE order_id = {order}"
        ))
        .await;
    env.sql(&format!(
        "UPDATE orders SET supplier_id = 'V-WOOD', supplier_name = 'Wood Corner' WHERE id = {order};
         DELETE FROM order_items WHERE id = {gone}"
    ))
    .await;
    // Two attempts: one with the first line's quantity at 5 and the second's at 4 (its first
    // call landed), one without the second line (nothing of it landed). The first line's
    // quantity is 3 here since.
    let first: i64 = env
        .one(&format!(
            "SELECT min(id) FROM order_items WHERE order_id = {order}"
        ))
        .await;
    env.sql(&format!(
        "UPDATE order_items SET quantity = 3 WHERE id = {first};
         SELECT odoo_sync.note_attempts(jsonb_build_array(
             jsonb_build_object('tracking_id', s.tracking_id, 'order_key', s.order_key, 'status', 'DRAFT',
                 'snapshot', jsonb_build_object('partner_id', '{wood}',
                     'lines', jsonb_set(jsonb_set(s.base_snapshot -> 'lines', '{{{gone},quantity}}', '4'),
                                        '{{{first},quantity}}', '5')))))
         FROM odoo_sync.order_state s WHERE s.order_key = '{order}';
         SELECT odoo_sync.note_attempts(jsonb_build_array(
             jsonb_build_object('tracking_id', s.tracking_id, 'order_key', s.order_key, 'status', 'DRAFT',
                 'snapshot', jsonb_build_object('partner_id', '{wood}',
                     'lines', (s.base_snapshot -> 'lines') - '{gone}'))))
         FROM odoo_sync.order_state s WHERE s.order_key = '{order}'"
    ))
    .await;
    let odoo_lines = env.odoo_lines(odoo_id).await;
    env.odoo
        .write(
            "purchase.order",
            &[odoo_id],
            &json!({"partner_id": wood, "order_line": [
                [1, odoo_lines[0].0, {"product_qty": 5}], [1, odoo_lines[1].0, {"product_qty": 4}]]}),
        )
        .await
        .expect("the first call");
    assert_eq!(
        vendor_and_first_line(&env, odoo_id).await,
        (wood, d("5"), d("480")),
        "Odoo priced the line from Wood Corner's price list"
    );
    let report = env.poll().await;
    assert_eq!(report.outcomes.get("conflict"), None, "{report:?}");
    assert_eq!(env.local_lines(order).await, [(d("3"), d("400"))]);
    env.drain().await;
    assert_eq!(
        vendor_and_first_line(&env, odoo_id).await,
        (wood, d("3"), d("400"))
    );
    assert_eq!(
        env.odoo_lines(odoo_id).await.len(),
        1,
        "the deletion went through"
    );
    assert!(env.open_conflicts().await.is_empty());
    env.finish().await;
}

/// Makes the next `count` calls of `call` (`model.method`) fail with a 503, nothing written.
fn fail_next(env: &Env, call: &str, count: u64) {
    env.faults(json!({"fail_calls": {call: count}}));
}

/// The sequence a chaos run once found (a VERSION_CONFLICT on the delivery date nobody edited
/// in Odoo), each failure at its chosen step. A push changes the vendor: its `load` lands, and
/// Odoo 18+ prices and dates the desk from the new vendor's price list (the other product has
/// no entry there and keeps its date), and its second call, which writes our prices and dates
/// again, fails. A pull then sees that half-done state: our own write, not an Odoo edit, and it
/// must not become the base either, or the next push, seeing no vendor change left to write,
/// does not write every line's price and date again. That next push moves the date and
/// removes the desk, and is cut after its `load`, before the removal: the desk keeps the date
/// the price list gave it, now the order's earliest. Nothing of this may end as a conflict:
/// once Odoo answers again, both sides are equal with the local prices and date. (With the
/// half-done state taken as the base, the pull after the cut push records the conflict.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_change_cut_twice_midway_ends_equal_without_a_conflict() {
    let env = setup_version("tw_vendor_cut_twice", 19).await;
    let order = env
        .insert_order(
            "PO-CUT",
            &[("FURN_0001", "2", "80.00"), ("FURN_8220", "1", "400.00")],
        )
        .await;
    env.sql(&format!(
        "UPDATE orders SET supplier_id = 'V-GEMINI', supplier_name = 'Gemini Furniture', \
         requested_delivery_date = current_date WHERE id = {order}"
    ))
    .await;
    env.drain().await;
    let odoo_id = env.odoo_id(order).await;
    env.poll().await;

    // 1. Back to Wood Corner; the push's reprice call fails.
    env.sql(&format!(
        "UPDATE orders SET supplier_id = 'V-WOOD', supplier_name = 'Wood Corner' WHERE id = {order}"
    ))
    .await;
    fail_next(&env, "purchase.order.line.load", 1);
    env.drain().await;
    let failed: i64 = env
        .one("SELECT count(*) FROM odoo_sync.jobs WHERE attempts > 0")
        .await;
    assert_eq!(failed, 1, "the push failed at its second call");
    assert_eq!(
        env.odoo_lines(odoo_id).await[1].2,
        d("480"),
        "Odoo priced the desk from Wood Corner's list"
    );
    let (_, dates) = odoo_dates(&env, odoo_id).await;
    assert_ne!(dates[1], dates[0], "and dated it from the list's lead time");

    // 2. A pull sees the half-done push.
    let report = env.poll().await;
    assert_eq!(report.outcomes.get("conflict"), None, "{report:?}");

    // 3. A new date and the second line deleted; the push is cut before it removes the line.
    let gone: i64 = env
        .one(&format!(
            "SELECT max(id) FROM order_items WHERE order_id = {order}"
        ))
        .await;
    env.sql(&format!(
        "UPDATE orders SET requested_delivery_date = '2026-12-24' WHERE id = {order};
         DELETE FROM order_items WHERE id = {gone}"
    ))
    .await;
    fail_next(&env, "purchase.order.write", 1);
    env.drain().await;
    assert_eq!(
        env.odoo_lines(odoo_id).await.len(),
        2,
        "the line is still there"
    );
    let report = env.poll().await;
    assert_eq!(report.outcomes.get("conflict"), None, "{report:?}");

    // 4. Odoo answers again.
    env.sql("UPDATE odoo_sync.jobs SET run_after = now()").await;
    env.drain().await;
    env.poll().await;
    env.drain().await;
    assert!(
        env.open_conflicts().await.is_empty(),
        "{:?}",
        env.open_conflicts().await
    );
    assert_eq!(env.local_lines(order).await, [(d("2"), d("80"))]);
    assert_eq!(local_date(&env, order).await.as_deref(), Some("2026-12-24"));
    let (order_date, line_dates) = odoo_dates(&env, odoo_id).await;
    assert_eq!(order_date, json!("2026-12-24 12:00:00"));
    assert_eq!(line_dates, vec![json!("2026-12-24 12:00:00")]);
    env.assert_equal(order).await;
    let report = odoo_sync_worker::verify::verify(&env.db.client, &env.odoo)
        .await
        .expect("verify");
    assert_eq!(report.summary.equal, 1, "{}", report.render_text());
    env.finish().await;
}

/// A create whose reply was lost, pushed again: Odoo has the order, so the second `load` is a
/// write, and writing the vendor there priced its lines from the price list. The retry knows an
/// earlier attempt may have landed and writes the prices again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_create_keeps_local_prices_against_the_vendors_price_list() {
    let env = setup_version("tw_vendor_retry", 19).await;
    let wood = odoo_record(&env, "res.partner", "ref", "V-WOOD").await;
    env.faults(json!({"drop_after_commit": 1}));
    let order = env
        .insert_order("PO-RETRY", &[("FURN_8220", "2", "400.00")])
        .await;
    // Until the retry (after its backoff) has pushed it.
    for _ in 0..100 {
        env.drain().await;
        let synced: i64 = env
            .one(&format!(
                "SELECT count(*) FROM orders WHERE id = {order} AND sync_status = 'SYNCED'"
            ))
            .await;
        if synced == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let odoo_id = env.odoo_id(order).await;
    let orders = env.odoo_orders_of("PO-RETRY").await;
    assert_eq!(orders, vec![odoo_id], "one Odoo order");
    assert!(env.calls(".load").await >= 2, "the create was pushed again");
    assert_eq!(
        vendor_and_first_line(&env, odoo_id).await,
        (wood, d("2"), d("400"))
    );
    env.finish().await;
}

/// A quantity edit of one line of an imported order sends the line's date with it: Odoo moves
/// a line's date to the vendor's lead time when its quantity changes without one, and the
/// order's date (the earliest of its lines) would not show that line moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quantity_pushed_by_id_keeps_the_lines_date() {
    let env = setup_version("tw_dbid_dates", 19).await;
    let wood = odoo_record(&env, "res.partner", "ref", "V-WOOD").await;
    let chair = odoo_record(&env, "product.product", "default_code", "FURN_0269").await;
    let desk = odoo_record(&env, "product.product", "default_code", "FURN_8220").await;
    let date = "2026-03-01 12:00:00";
    let odoo_id = imported_order(
        &env,
        json!({"partner_id": wood, "order_line": [
            [0, 0, {"product_id": chair, "product_qty": 1, "price_unit": 20, "date_planned": date}],
            [0, 0, {"product_id": desk, "product_qty": 5, "price_unit": 400, "date_planned": date}]]}),
    )
    .await;
    let local: String = env
        .one("SELECT requested_delivery_date::text FROM orders")
        .await;
    assert_eq!(local, "2026-03-01");
    env.sql("UPDATE order_items SET quantity = 10 WHERE unit_price = 400")
        .await;
    env.drain().await;
    assert_eq!(env.odoo_lines(odoo_id).await[1].1, d("10"));
    assert_eq!(
        odoo_dates(&env, odoo_id).await.1,
        vec![json!(date), json!(date)],
        "both lines keep their date"
    );
    env.finish().await;
}

/// Orders with and without a delivery date change vendor in one batch: the prices go again
/// per kind (a line without a date in a call that carries dates would have its date emptied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_change_of_orders_with_and_without_dates_in_one_batch() {
    let env = setup_version("tw_vendor_dates", 19).await;
    let mut orders = Vec::new();
    for n in 0..6 {
        let order = env
            .insert_order(&format!("PO-VD{n}"), &[("FURN_8220", "2", "400.00")])
            .await;
        let date = if n % 2 == 0 { "'2026-12-15'" } else { "NULL" };
        env.sql(&format!(
            "UPDATE orders SET supplier_id = 'V-GEMINI', supplier_name = 'Gemini Furniture', \
             requested_delivery_date = {date} WHERE id = {order}"
        ))
        .await;
        orders.push(order);
    }
    env.drain().await;
    env.sql("UPDATE orders SET supplier_id = 'V-WOOD', supplier_name = 'Wood Corner'")
        .await;
    env.drain().await;
    for (n, order) in orders.iter().enumerate() {
        let odoo_id = env.odoo_id(*order).await;
        assert_eq!(env.odoo_lines(odoo_id).await[0].2, d("400"), "order {n}");
        let (_, dates) = odoo_dates(&env, odoo_id).await;
        if n % 2 == 0 {
            assert_eq!(dates, vec![json!("2026-12-15 12:00:00")], "order {n}");
        } else {
            assert!(dates[0].is_string(), "order {n} keeps a date: {dates:?}");
        }
    }
    assert!(env.open_conflicts().await.is_empty());
    env.finish().await;
}

/// The same for an order imported from Odoo, which is pushed by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_by_id_keeps_local_prices_against_the_vendors_price_list() {
    let env = setup_version("tw_price_list_dbid", 19).await;
    wood_corner_discounts_10_percent(&env).await;
    let wood = odoo_record(&env, "res.partner", "ref", "V-WOOD").await;
    let desk = odoo_record(&env, "product.product", "default_code", "FURN_8220").await;
    // The purchaser's own discount, which Odoo would replace with the price list's (or none)
    // on every quantity or vendor written without it.
    let odoo_id = imported_order(
        &env,
        json!({"partner_id": wood, "order_line": [[0, 0,
                {"product_id": desk, "product_qty": 2, "price_unit": 400, "discount": 3}]]}),
    )
    .await;
    let order: i64 = env.one("SELECT id FROM orders").await;
    local_prices_survive_vendor_writes(&env, order, odoo_id, d("3")).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_brings_exactly_the_matching_orders_once() {
    let env = setup("tw_import").await;
    let (ids, partners) = odoo_orders(&env, 10).await;
    // Confirm the even ones: the filter below takes confirmed orders of the first partner.
    let even: Vec<i64> = ids.iter().step_by(2).copied().collect();
    env.odoo
        .call_button("purchase.order", "button_confirm", &even)
        .await
        .expect("confirm");
    let filter =
        json!({"states": ["purchase"], "partner_ids": [partners[0]], "date_from": "2000-01-01"});
    for run in 0..2 {
        let batch: i64 = env
            .db
            .client
            .query_one("SELECT odoo_sync.import_orders($1)", &[&filter])
            .await
            .expect("import_orders")
            .get(0);
        env.drain().await;
        let r = env
            .db
            .client
            .query_one(
                "SELECT total, successful, skipped, failed FROM odoo_sync.batch_status($1)",
                &[&batch],
            )
            .await
            .expect("batch_status");
        let (total, imported, skipped, failed): (i32, i32, i32, i32) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        // Orders 0, 2, 4, 6, 8 are confirmed; of those, 0, 4, 8 belong to the first partner.
        assert_eq!(total, 3, "run {run}");
        assert_eq!(failed, 0);
        if run == 0 {
            assert_eq!((imported, skipped), (3, 0));
        } else {
            assert_eq!((imported, skipped), (0, 3));
        }
    }
    let local: Vec<(String, String, Option<i32>, String)> = env
        .db
        .client
        .query(
            "SELECT order_number, status, odoo_order_id, sync_status FROM orders ORDER BY odoo_order_id",
            &[],
        )
        .await
        .expect("orders")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(local.len(), 3);
    let want: Vec<Option<i32>> = [ids[0], ids[4], ids[8]]
        .iter()
        .map(|i| Some(*i as i32))
        .collect();
    assert_eq!(local.iter().map(|l| l.2).collect::<Vec<_>>(), want);
    assert!(
        local.iter().all(|l| l.1 == "CONFIRMED" && l.3 == "SYNCED"),
        "{local:?}"
    );
    let events: i64 = env
        .one("SELECT count(*) FROM odoo_sync.event_log WHERE event_type = 'ORDER_IMPORTED_FROM_ODOO'")
        .await;
    assert_eq!(events, 3);
    // Linked both ways: a local change of an imported order reaches the same Odoo order.
    let first: i64 = env
        .one(&format!(
            "SELECT id FROM orders WHERE odoo_order_id = {}",
            ids[0]
        ))
        .await;
    env.sql(&format!(
        "UPDATE order_items SET quantity = 11 WHERE order_id = {first}"
    ))
    .await;
    env.sql(&format!(
        "INSERT INTO order_items (order_id, product_id, product_code, quantity, unit_price) \
         VALUES ({first}, 'FURN_0269', 'FURN_0269', 2, 4)"
    ))
    .await;
    env.drain().await;
    env.assert_equal(first).await;
    let count: i64 = env
        .odoo
        .search("purchase.order", &Domain::all(), None, None)
        .await
        .expect("orders")
        .len() as i64;
    assert_eq!(
        count, 10,
        "no Odoo order created by the push of an imported order"
    );
    // sync_order_from_odoo pulls one order (imports it when it is not linked yet).
    let job: i64 = env
        .db
        .client
        .query_one(
            "SELECT odoo_sync.sync_order_from_odoo($1)",
            &[&(ids[1] as i32)],
        )
        .await
        .expect("sync_order_from_odoo")
        .get(0);
    env.drain().await;
    let result: (bool, String) = {
        let r = env
            .db
            .client
            .query_one(
                "SELECT success, operation FROM odoo_sync.await_job($1)",
                &[&job],
            )
            .await
            .expect("await_job");
        (r.get(0), r.get(1))
    };
    assert_eq!(result, (true, "PULL".to_string()));
    let linked: i64 = env
        .one(&format!(
            "SELECT count(*) FROM orders WHERE odoo_order_id = {}",
            ids[1]
        ))
        .await;
    assert_eq!(linked, 1);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_interrupted_midway_loses_no_odoo_change() {
    let env = setup("tw_watermark").await;
    // 450 imported orders (three pages of the poll) sharing one write_date.
    imported_orders_then_one_odoo_write(&env, 450).await;
    // Polls fail part way (some of Odoo's answers are errors) until one completes.
    env.sim
        .sim
        .faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .apply(
            &serde_json::from_value(json!({"error_rate": 0.08, "error_kind": "503", "seed": 7}))
                .expect("spec"),
        )
        .expect("faults");
    let mut failures = 0;
    loop {
        match poll_once(&env.worker, &env.odoo, &settings()).await {
            Ok(_) => break,
            Err(_) => failures += 1,
        }
        assert!(failures < 300, "no poll completed");
    }
    env.sim
        .sim
        .faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .apply(&serde_json::from_value(json!({"error_rate": 0.0})).expect("spec"))
        .expect("faults");
    assert!(failures > 0, "the faults never interrupted a poll");
    let stale: i64 = env
        .one("SELECT count(*) FROM order_items WHERE unit_price <> 6.5")
        .await;
    assert_eq!(stale, 0, "after {failures} interrupted polls");
    let pending: i64 = env
        .one("SELECT count(*) FROM odoo_sync.jobs WHERE kind = 'push'")
        .await;
    assert_eq!(pending, 0, "applying Odoo's change queued pushes");
    env.finish().await;
}

/// Also every local order linked to it: two orders linked by hand to one Odoo order (an
/// `odoo_order_id` column filled by the application before `track_orders`) are both cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_deleted_in_odoo_is_cancelled_here_by_the_reconciliation() {
    let env = setup("tw_reconcile").await;
    let (id, odoo_id, _) = synced_order(&env, "PO-X").await;
    let (twin, _, _) = synced_order(&env, "PO-X2").await;
    env.sql(&format!(
        "UPDATE orders SET odoo_order_id = {odoo_id} WHERE id = {twin};
         SELECT odoo_sync.untrack_orders('orders');
         SELECT odoo_sync.track_orders('orders', 'order_items');"
    ))
    .await;
    env.delete_in_odoo(odoo_id).await;
    env.sql("UPDATE odoo_sync.pull_cursor SET reconciled_at = now() - interval '1 hour'")
        .await;
    let report = env.poll().await;
    assert_eq!(report.deleted, 1, "{report:?}");
    for order in [id, twin] {
        let r = env
            .db
            .client
            .query_one(
                "SELECT status, odoo_order_id FROM orders WHERE id = $1",
                &[&order],
            )
            .await
            .expect("order");
        assert_eq!(r.get::<_, String>(0), "CANCELLED", "order {order}");
        assert_eq!(r.get::<_, Option<i32>>(1), None, "order {order}");
    }
    let marked: i64 = env
        .one(&format!(
            "SELECT count(*) FROM odoo_sync.order_state WHERE odoo_deleted_id = {odoo_id} AND odoo_id IS NULL"
        ))
        .await;
    assert_eq!(marked, 2);
    env.finish().await;
}

/// An Odoo user deletes an order, and the order is edited here, before or after the
/// reconciliation notices: the push takes the deletion as the reconciliation does (cancelled
/// here, unlinked), so both orders of events end alike, for orders created here and for orders
/// linked by hand (`track_orders` over an `odoo_order_id` column, no `write_date` stored yet).
/// The edit is kept here and nothing comes back in Odoo while the order stays cancelled;
/// `verify` finds them equal. Reopened (DRAFT), the order is created in Odoo again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_edit_of_an_order_deleted_in_odoo_ends_as_after_the_reconciliation() {
    let env = setup("tw_deleted_edit").await;
    let mut ends = Vec::new();
    for (number, case) in [
        ("PO-DEL-T", "linked by hand"),
        ("PO-DEL-R", "reconciled first"),
        ("PO-DEL-E", "edited first"),
    ] {
        let (id, odoo_id, _) = synced_order(&env, number).await;
        if case == "linked by hand" {
            env.sql(
                "SELECT odoo_sync.untrack_orders('orders');
                 SELECT odoo_sync.track_orders('orders', 'order_items');",
            )
            .await;
        }
        env.delete_in_odoo(odoo_id).await;
        if case == "reconciled first" {
            env.sql("UPDATE odoo_sync.pull_cursor SET reconciled_at = now() - interval '1 hour'")
                .await;
            assert_eq!(env.poll().await.deleted, 1);
        }
        env.sql(&format!(
            "UPDATE orders SET notes = 'edited after the deletion' WHERE id = {id}"
        ))
        .await;
        env.drain().await;
        let row = env
            .db
            .client
            .query_one(
                "SELECT status, sync_status, notes FROM orders WHERE id = $1",
                &[&id],
            )
            .await
            .expect("order");
        let odoo: Vec<String> = env
            .odoo
            .search_read(
                "purchase.order",
                &Domain::eq("origin", number),
                &["state"],
                0,
                None,
                None,
            )
            .await
            .expect("Odoo orders")
            .iter()
            .map(|o| o["state"].as_str().unwrap_or_default().to_string())
            .collect();
        ends.push((
            case,
            row.get::<_, Option<String>>(0),
            row.get::<_, Option<String>>(1),
            row.get::<_, Option<String>>(2),
            odoo,
        ));
    }
    let dead: i64 = env.one("SELECT count(*) FROM odoo_sync.dead_letters").await;
    assert_eq!(dead, 0, "{ends:?}");
    assert!(env.open_conflicts().await.is_empty());
    for end in &ends {
        assert_eq!(
            (
                end.1.as_deref(),
                end.2.as_deref(),
                end.3.as_deref(),
                end.4.clone()
            ),
            (
                Some("CANCELLED"),
                Some("SYNCED"),
                Some("edited after the deletion"),
                Vec::<String>::new()
            ),
            "{}: {end:?}",
            end.0
        );
    }
    let report = odoo_sync_worker::verify::verify(&env.worker, &env.odoo)
        .await
        .expect("verify");
    assert_eq!(report.summary.differing, 0, "{report:?}");
    let left: String = env
        .one(
            "SELECT warnings[1] FROM odoo_sync.sync_log \
             WHERE success AND operation = 'DELETE' ORDER BY id DESC LIMIT 1",
        )
        .await;
    assert!(
        left.contains("give it another status (DRAFT, say)"),
        "{left}"
    );

    // Reopened: created in Odoo again, as a draft, and linked.
    env.sql("UPDATE orders SET status = 'DRAFT' WHERE order_number LIKE 'PO-DEL-%'")
        .await;
    env.drain().await;
    for number in ["PO-DEL-T", "PO-DEL-R", "PO-DEL-E"] {
        let id: i64 = env
            .one(&format!(
                "SELECT id FROM orders WHERE order_number = '{number}'"
            ))
            .await;
        let odoo_id = env.odoo_id(id).await;
        let state = env
            .odoo
            .read("purchase.order", &[odoo_id], &["state", "origin"])
            .await
            .expect("read");
        assert_eq!(state[0]["state"], "draft", "{number}");
        assert_eq!(state[0]["origin"], number);
        env.assert_equal(id).await;
    }
    let deleted_marks: i64 = env
        .one("SELECT count(*) FROM odoo_sync.order_state WHERE odoo_deleted_id IS NOT NULL")
        .await;
    assert_eq!(deleted_marks, 0);
    env.finish().await;
}

/// A push noted and not acknowledged (its reply lost) of an order an Odoo user then deletes
/// does not make the order's next push write it again: the noted attempt went to the deleted
/// order, so the cancelled order stays deleted in Odoo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noted_push_of_an_order_deleted_in_odoo_does_not_bring_it_back() {
    let env = setup("tw_deleted_noted").await;
    let (id, odoo_id, _) = synced_order(&env, "PO-DEL-N").await;
    note_local_attempt(&env, id).await;
    env.delete_in_odoo(odoo_id).await;
    env.sql(&format!(
        "UPDATE orders SET status = 'CANCELLED', notes = 'cancelled here too' WHERE id = {id}"
    ))
    .await;
    env.drain().await;
    let in_odoo = env.odoo_orders_of("PO-DEL-N").await;
    assert!(in_odoo.is_empty(), "not created again: {in_odoo:?}");
    let row = env
        .db
        .client
        .query_one(
            "SELECT o.sync_status, s.attempt_snapshot IS NULL, s.odoo_deleted_id \
             FROM orders o JOIN odoo_sync.order_state s ON s.order_key = o.id::text WHERE o.id = $1",
            &[&id],
        )
        .await
        .expect("order");
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("SYNCED"));
    assert!(row.get::<_, bool>(1), "the noted attempt is forgotten");
    assert_eq!(row.get::<_, Option<i32>>(2), i32::try_from(odoo_id).ok());
    let shown: Option<i32> = env
        .one(&format!(
            "SELECT deleted_in_odoo FROM odoo_sync.order_status WHERE local_order_id = '{id}'"
        ))
        .await;
    assert_eq!(shown, i32::try_from(odoo_id).ok(), "order_status shows it");
    let dead: i64 = env.one("SELECT count(*) FROM odoo_sync.dead_letters").await;
    assert_eq!(dead, 0);
    env.finish().await;
}

/// In a table without a status column an order whose Odoo order an Odoo user deleted cannot be
/// cancelled here. Its later edits used to create it in Odoo again, bringing back what the Odoo
/// user deleted; they now stay here, saying so, until `sync_order` asks for the order by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_status_column_an_order_deleted_in_odoo_comes_back_only_when_asked() {
    let schema = common_schema("bigint").replace("status text NOT NULL DEFAULT 'DRAFT',", "");
    assert_ne!(
        schema,
        common_schema("bigint"),
        "the schema has a status column to drop"
    );
    let env = setup_schema("tw_deleted_nostatus", 17, &schema).await;
    let id = env
        .insert_order("PO-NS", &[("FURN_0001", "1", "10.00")])
        .await;
    env.drain().await;
    let odoo_id = env.odoo_id(id).await;
    env.delete_in_odoo(odoo_id).await;

    for edit in ["notes = 'edited after'", "notes = 'and again'"] {
        env.sql(&format!("UPDATE orders SET {edit} WHERE id = {id}"))
            .await;
        env.drain().await;
        let in_odoo = env.odoo_orders_of("PO-NS").await;
        assert!(in_odoo.is_empty(), "not created again: {in_odoo:?}");
    }
    let (sync, shown): (String, Option<i32>) = {
        let row = env
            .db
            .client
            .query_one(
                "SELECT o.sync_status, s.deleted_in_odoo FROM orders o \
                 JOIN odoo_sync.order_status s ON s.local_order_id = o.id::text WHERE o.id = $1",
                &[&id],
            )
            .await
            .expect("order");
        (row.get(0), row.get(1))
    };
    assert_eq!(sync, "SYNCED");
    assert_eq!(shown, i32::try_from(odoo_id).ok());
    let warning: String = env
        .one(&format!(
            "SELECT warnings[1] FROM odoo_sync.sync_log WHERE order_key = '{id}' ORDER BY id DESC LIMIT 1"
        ))
        .await;
    assert!(
        warning.contains(&format!("SELECT odoo_sync.sync_order('{id}')")),
        "{warning}"
    );
    let dead: i64 = env.one("SELECT count(*) FROM odoo_sync.dead_letters").await;
    assert_eq!(dead, 0);

    // Asked for by name: a new Odoo order, linked, with the local edits.
    env.sql(&format!("SELECT odoo_sync.sync_order({id}::bigint)"))
        .await;
    env.drain().await;
    let again = env.odoo_orders_of("PO-NS").await;
    assert_eq!(again.len(), 1);
    assert_ne!(again[0], odoo_id);
    assert_eq!(env.odoo_id(id).await, again[0]);
    let shown: Option<i32> = env
        .one(&format!(
            "SELECT deleted_in_odoo FROM odoo_sync.order_status WHERE local_order_id = '{id}'"
        ))
        .await;
    assert_eq!(shown, None);
    let report = odoo_sync_worker::verify::verify(&env.db.client, &env.odoo)
        .await
        .expect("verify");
    assert_eq!(report.summary.equal, 1, "{}", report.render_text());
    env.finish().await;
}

/// Up to 17, Odoo's `load` takes no archived record by database id: an order naming a vendor
/// archived in Odoo after the worker learned it goes to the dead letters saying which record is
/// archived and what to do, instead of Odoo's bare "No matching record found". From 18 `load`
/// takes it, and the order is pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_naming_a_vendor_archived_in_odoo_says_so_where_odoo_refuses_it() {
    for version in [16u8, 17, 18] {
        let env = setup_version(&format!("tw_archived_{version}"), version).await;
        synced_order(&env, "PO-AR1").await;
        let wood = env
            .odoo
            .search("res.partner", &Domain::eq("ref", "V-WOOD"), None, None)
            .await
            .expect("vendor")[0];
        env.odoo
            .write("res.partner", &[wood], &json!({"active": false}))
            .await
            .expect("archive");
        let id = env
            .insert_order("PO-AR2", &[("FURN_0001", "1", "10.00")])
            .await;
        env.drain().await;
        let dead: Vec<String> = env
            .db
            .client
            .query("SELECT error_message FROM odoo_sync.dead_letters", &[])
            .await
            .expect("dead letters")
            .iter()
            .map(|r| r.get(0))
            .collect();
        if version <= 17 {
            assert_eq!(dead.len(), 1, "{version}: {dead:?}");
            assert!(
                dead[0].contains(&format!(
                    "names the archived vendor res.partner {wood} (supplier 'V-WOOD'"
                )) && dead[0].contains("Restore (unarchive) it in Odoo")
                    && dead[0].contains("No matching record found for database id"),
                "{version}: {dead:?}"
            );
            assert!(env.odoo_orders_of("PO-AR2").await.is_empty());
        } else {
            assert!(dead.is_empty(), "{version}: {dead:?}");
            env.assert_equal(id).await;
        }
        env.finish().await;
    }
}

/// Makes record rules hide Odoo orders `hidden` (and only those) from the API user.
fn hide_orders(env: &Env, hidden: &[i64]) {
    hide_records(env, "purchase.order", hidden);
}

/// Makes record rules hide records `hidden` of `model` (and only those) from the API user.
fn hide_records(env: &Env, model: &str, hidden: &[i64]) {
    let mut world = env.sim.sim.world.lock().unwrap_or_else(|p| p.into_inner());
    for user in world.users.iter_mut().filter(|u| u.login == "admin") {
        user.hidden
            .insert(model.into(), hidden.iter().copied().collect());
    }
}

/// Two orders changed in Odoo are read in full before their pushes (to merge first). A record
/// of one that Odoo will not let us read (a product a record rule hides) fails that read for
/// both: the orders are then read one by one, so the other is still merged and pushed, and
/// only the one Odoo refuses goes to the dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_product_of_one_changed_order_does_not_hold_the_others() {
    let env = setup("tw_hidden_product").await;
    let (kept, kept_odoo, kept_lines) = synced_order(&env, "PO-HP1").await;
    let refused = env
        .insert_order("PO-HP2", &[("FURN_8900", "1", "20.00")])
        .await;
    env.drain().await;
    let refused_odoo = env.odoo_id(refused).await;
    let refused_line = env.odoo_lines(refused_odoo).await[0].0;
    env.poll().await;
    env.write_line(kept_lines[0], json!({"product_qty": 9, "price_unit": 10.0}))
        .await;
    env.write_line(refused_line, json!({"product_qty": 4, "price_unit": 20.0}))
        .await;
    let drawer = env
        .odoo
        .search(
            "product.product",
            &Domain::eq("default_code", "FURN_8900"),
            None,
            None,
        )
        .await
        .expect("product");
    hide_records(&env, "product.product", &drawer);
    for id in [kept, refused] {
        env.sql(&format!(
            "UPDATE order_items SET quantity = 6 WHERE id = (SELECT min(id) FROM order_items WHERE order_id = {id})"
        ))
        .await;
    }
    env.drain().await;
    // The one Odoo lets us read: merged first (Odoo's 9 kept, the conflict recorded).
    assert_eq!(env.odoo_lines(kept_odoo).await[0].1, d("9"));
    let conflicts = env.open_conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].1, "VERSION_CONFLICT");
    // The other: a dead letter with Odoo's refusal, its Odoo order untouched.
    let dead: Vec<(String, String)> = env
        .db
        .client
        .query(
            "SELECT local_order_id, error_message FROM odoo_sync.dead_letters",
            &[],
        )
        .await
        .expect("dead letters")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, refused.to_string());
    assert!(dead[0].1.contains("AccessError"), "{dead:?}");
    hide_records(&env, "product.product", &[]);
    assert_eq!(env.odoo_lines(refused_odoo).await[0].1, d("4"));
    env.finish().await;
}

/// An order that record rules hide from the API user (a company it lost access to) is missing
/// from `search` without a word, but it is not deleted: the reconciliation asks `read`, which
/// refuses it, and stops instead of cancelling the local order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_hidden_by_record_rules_is_not_taken_as_deleted() {
    let env = setup("tw_reconcile_hidden").await;
    let (id, odoo_id, _) = synced_order(&env, "PO-H").await;
    let hide = |hidden: &[i64]| hide_orders(&env, hidden);
    hide(&[odoo_id]);
    env.sql("UPDATE odoo_sync.pull_cursor SET reconciled_at = now() - interval '1 hour'")
        .await;
    let refused = poll_once(&env.worker, &env.odoo, &settings())
        .await
        .expect_err("the reconciliation stops at the refusal");
    assert!(
        refused.to_string().contains("Due to security restrictions"),
        "{refused}"
    );
    assert!(
        refused.to_string().contains(&format!(
            "nothing cancelled: Odoo no longer lists 1 linked order(s) (ids {odoo_id})"
        )),
        "{refused}"
    );
    let status: String = env
        .one(&format!("SELECT status FROM orders WHERE id = {id}"))
        .await;
    assert_eq!(status, "DRAFT", "not cancelled");
    assert_eq!(env.odoo_id(id).await, odoo_id, "still linked");

    // Access back: nothing is taken as deleted.
    hide(&[]);
    let report = env.poll().await;
    assert_eq!(report.deleted, 0, "{report:?}");
    env.finish().await;
}

/// One order hidden from the API user fails Odoo's `read` of the whole batch before a push. The
/// other orders are still checked for Odoo changes (a changed one is merged, not overwritten);
/// the hidden one goes to the dead letters with Odoo's refusal, and pushes once access is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_hidden_in_a_batch_does_not_skip_the_others_checks() {
    let env = setup("tw_push_hidden").await;
    let mut orders = Vec::new();
    for n in 0..4 {
        orders.push(synced_order(&env, &format!("PO-HB{n}")).await);
    }
    let hide = |hidden: &[i64]| hide_orders(&env, hidden);
    let (changed, changed_odoo, changed_lines) = &orders[0];
    let (hidden, hidden_odoo, _) = &orders[3];
    env.write_line(
        changed_lines[0],
        json!({"product_qty": 9, "price_unit": 10.0}),
    )
    .await;
    hide(&[*hidden_odoo]);
    for (id, _, _) in &orders {
        env.sql(&format!(
            "UPDATE order_items SET quantity = 6 WHERE id = (SELECT min(id) FROM order_items WHERE order_id = {id})"
        ))
        .await;
    }
    env.drain().await;

    // The order changed in Odoo: merged first, Odoo's 9 kept, the conflict recorded.
    assert_eq!(env.odoo_lines(*changed_odoo).await[0].1, d("9"));
    let conflicts = env.open_conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].1, "VERSION_CONFLICT");
    let order: i64 = env
        .one(&format!(
            "SELECT local_order_id::bigint FROM odoo_sync.pending_conflicts WHERE conflict_id::text = '{}'",
            conflicts[0].0
        ))
        .await;
    assert_eq!(order, *changed);
    // The others pushed.
    for (id, _, _) in &orders[1..3] {
        env.assert_equal(*id).await;
    }
    // The hidden one: a dead letter naming Odoo's refusal, nothing written to it.
    let (job, error): (i64, String) = {
        let row = env
            .db
            .client
            .query_one(
                "SELECT job_id, error_message FROM odoo_sync.dead_letters WHERE local_order_id = $1",
                &[&hidden.to_string()],
            )
            .await
            .expect("the hidden order's job is dead");
        (row.get(0), row.get(1))
    };
    assert!(error.contains("AccessError"), "{error}");
    assert!(error.contains("purchase.order.read"), "{error}");
    hide(&[]);
    assert_eq!(env.odoo_lines(*hidden_odoo).await[0].1, d("2"));
    env.sql(&format!("SELECT odoo_sync.retry_job({job})")).await;
    env.drain().await;
    env.assert_equal(*hidden).await;
    assert_eq!(env.odoo_lines(*hidden_odoo).await[0].1, d("6"));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_loop_pulls_in_realtime_mode_only() {
    let env = setup("tw_realtime").await;
    let (id, _odoo_id, lines) = synced_order(&env, "PO-RT").await;
    env.sql(r#"SELECT odoo_sync.update_settings('{"poll_interval_seconds": 1}')"#)
        .await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = env.db.connect_as(&format!("{}_worker", env.db.name)).await;
    let odoo = env.odoo.clone();
    let runner = tokio::spawn(async move {
        let options = odoo_sync_worker::run::RunOptions {
            poll_interval: Duration::from_millis(200),
            ..Default::default()
        };
        odoo_sync_worker::run::run(&worker, &odoo, "rt-worker", &options, async {
            let _ = stopped.await;
        })
        .await
    });
    let qty_sql =
        format!("SELECT quantity::text FROM order_items WHERE order_id = {id} ORDER BY id LIMIT 1");
    // Realtime off: an Odoo change stays in Odoo.
    env.write_line(lines[0], json!({"product_qty": 4, "price_unit": 10.0}))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.one::<String>(&qty_sql).await, "2.000");
    // Realtime on: it arrives within a few poll intervals.
    env.sql("SELECT odoo_sync.start_realtime()").await;
    let started = std::time::Instant::now();
    while env.one::<String>(&qty_sql).await != "4.000" {
        assert!(started.elapsed() < Duration::from_secs(20), "not pulled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "realtime pull applied an Odoo change {} ms after start_realtime()",
        started.elapsed().as_millis()
    );
    env.sql("SELECT odoo_sync.stop_realtime()").await;
    let _ = stop.send(());
    runner.await.expect("join").expect("run");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_the_same_tables_again_updates_the_same_odoo_order() {
    let env = setup("tw_retrack").await;
    let (id, odoo_id, lines) = synced_order(&env, "PO-T").await;
    env.sql(
        "SELECT odoo_sync.untrack_orders('orders');
         SELECT odoo_sync.track_orders('orders', 'order_items');",
    )
    .await;
    env.sql(&format!(
        "UPDATE order_items SET quantity = 8 WHERE id = (SELECT min(id) FROM order_items WHERE order_id = {id});
         SELECT odoo_sync.batch_sync_pending();"
    ))
    .await;
    env.drain().await;
    let orders = env
        .odoo
        .search("purchase.order", &Domain::all(), None, None)
        .await
        .expect("orders");
    assert_eq!(orders, vec![odoo_id], "no second Odoo order");
    let after: Vec<i64> = env.odoo_lines(odoo_id).await.iter().map(|l| l.0).collect();
    assert_eq!(after, lines, "the same Odoo lines, updated in place");
    env.assert_equal(id).await;
    env.finish().await;
}

/// A VERSION_CONFLICT on the first line's quantity (local 6, Odoo 9); returns (order, odoo id, conflict id, field).
async fn version_conflict(env: &Env, number: &str) -> (i64, i64, String, String) {
    let (id, odoo_id, lines) = synced_order(env, number).await;
    env.write_line(lines[0], json!({"product_qty": 9, "price_unit": 10.0}))
        .await;
    env.sql(&format!(
        "UPDATE order_items SET quantity = 6 WHERE id = (SELECT min(id) FROM order_items WHERE order_id = {id})"
    ))
    .await;
    env.drain().await;
    let conflicts = env.open_conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].1, "VERSION_CONFLICT");
    let key = item_key_of(&conflicts[0].2);
    assert_eq!(
        norm(&conflicts[0].2),
        norm(
            &json!([{"field": format!("lines.{key}.quantity"), "line": key, "attr": "quantity",
                      "base": 2, "local": 6, "remote": 9}])
        )
    );
    let field = format!("lines.{key}.quantity");
    (id, odoo_id, conflicts[0].0.clone(), field)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resolution_of_a_version_conflict_ends_with_both_sides_equal() {
    let env = setup("tw_version_all").await;
    let (id, odoo_id, cid, _) = version_conflict(&env, "PO-V1").await;
    resolve(&env, &cid, "KEEP_REMOTE", None).await;
    env.drain().await;
    env.assert_equal(id).await;
    assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("9"));
    let (id, odoo_id, cid, field) = version_conflict(&env, "PO-V2").await;
    resolve(&env, &cid, "MERGE", Some(json!({ field: 8 }))).await;
    env.drain().await;
    env.assert_equal(id).await;
    assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("8"));
    assert!(env.open_conflicts().await.is_empty());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_mismatch_can_keep_the_local_totals_or_take_given_ones() {
    let env = setup("tw_mismatch_all").await;
    for (number, resolution, values, want) in [
        ("PO-D1", "KEEP_LOCAL", None, "20.00"),
        (
            "PO-D2",
            "MERGE",
            Some(json!({"amounts.grand_total": 21.5, "amounts.sales_tax": 1.5})),
            "21.50",
        ),
    ] {
        let id = env
            .insert_order(number, &[("FURN_0001", "2", "10.00")])
            .await;
        env.sql(&format!(
            "UPDATE orders SET subtotal = 20, sales_tax = 0, grand_total = 20 WHERE id = {id}"
        ))
        .await;
        env.drain().await;
        let conflicts = env.open_conflicts().await;
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].1, "DATA_MISMATCH");
        let r = resolve(&env, &conflicts[0].0, resolution, values).await;
        assert_eq!(r["sync_status"], "SYNCED", "{r}");
        let total: String = env
            .one(&format!(
                "SELECT grand_total::text FROM orders WHERE id = {id}"
            ))
            .await;
        assert_eq!(total, want, "{resolution}");
        // The lines are equal on both sides; the totals are the user's decision.
        env.assert_equal(id).await;
        // No new mismatch for the totals the user chose.
        env.sql(&format!("SELECT odoo_sync.sync_order({id}::bigint)"))
            .await;
        env.drain().await;
        assert!(env.open_conflicts().await.is_empty(), "{resolution}");
    }
    env.finish().await;
}

/// Odoo refuses external ids with spaces (ir.model.data's `name_nospaces`): text keys with
/// spaces get an encoded name, which every way back (line keys of a pull, the push's own
/// snapshot, an order found by its external id) reads as the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_spaces_make_valid_external_ids_and_map_back() {
    let schema = common_schema("text").replace(
        "id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        "id text PRIMARY KEY",
    );
    let env = setup_schema("tw_spaces", SimConfig::default().version, &schema).await;
    let key = "PO 7%20 x";
    env.db
        .client
        .execute(
            "INSERT INTO orders (id, order_number, supplier_id, supplier_name) \
             VALUES ($1, 'PO-7', 'V-WOOD', 'Wood Corner')",
            &[&key],
        )
        .await
        .expect("order");
    env.sql(&format!(
        "INSERT INTO order_items (id, order_id, product_id, product_code, quantity, unit_price) VALUES
           ('line 1', '{key}', 'FURN_0001', 'FURN_0001', 2, 10),
           ('line%202', '{key}', 'FURN_0269', 'FURN_0269', 3, 20)"
    ))
    .await;
    env.drain().await;
    let odoo_id: i32 = env
        .one(&format!(
            "SELECT odoo_order_id FROM orders WHERE id = '{key}'"
        ))
        .await;
    let odoo_id = i64::from(odoo_id);
    let names: Vec<String> = env
        .odoo
        .search_read(
            "ir.model.data",
            &Domain::eq("module", "odoo_sync"),
            &["name"],
            0,
            None,
            Some("name"),
        )
        .await
        .expect("external ids")
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        names,
        ["pol_1_line%202", "polx_1_line%201", "pox_1_PO%207%2520%20x"],
        "one name per record, none with a space; a key without one keeps the plain form"
    );

    // Odoo changes the line "line 1": the pull finds its local item by the decoded key.
    env.poll().await;
    let lines = env.odoo_lines(odoo_id).await;
    env.write_line(lines[0].0, json!({"product_qty": 9})).await;
    env.poll().await;
    let quantity: String = env
        .one("SELECT quantity::text FROM order_items WHERE id = 'line 1'")
        .await;
    assert_eq!(quantity, "9.000");
    assert!(env.open_conflicts().await.is_empty());

    // A local change is written to the same two lines, not to new ones.
    env.sql("UPDATE order_items SET quantity = 4 WHERE id = 'line%202'")
        .await;
    env.drain().await;
    let lines = env.odoo_lines(odoo_id).await;
    assert_eq!(
        lines.iter().map(|l| l.1).collect::<Vec<_>>(),
        [d("9"), d("4")]
    );
    let status: String = env
        .one(&format!(
            "SELECT sync_status FROM orders WHERE id = '{key}'"
        ))
        .await;
    assert_eq!(status, "SYNCED");
    assert!(env.open_conflicts().await.is_empty());
    env.finish().await;
}

/// A DATA_MISMATCH is about totals, but the order can change while it is open: resolving it
/// pushes those changes (a quantity, a deleted order) instead of finishing their waiting job as
/// if Odoo already had them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_a_data_mismatch_is_open_are_pushed_once_it_is_resolved() {
    let env = setup("tw_mismatch_edit").await;
    let edited = env
        .insert_order("PO-DE", &[("FURN_0001", "2", "10.00")])
        .await;
    let deleted = env
        .insert_order("PO-DX", &[("FURN_0001", "2", "10.00")])
        .await;
    env.sql(&format!(
        "UPDATE orders SET subtotal = 20, sales_tax = 0, grand_total = 20 WHERE id IN ({edited}, {deleted})"
    ))
    .await;
    env.drain().await;
    let conflicts = env.open_conflicts().await;
    assert_eq!(conflicts.len(), 2);
    let deleted_odoo = env.odoo_id(deleted).await;

    env.sql(&format!(
        "UPDATE order_items SET quantity = 5 WHERE order_id = {edited};
         DELETE FROM order_items WHERE order_id = {deleted}; DELETE FROM orders WHERE id = {deleted}"
    ))
    .await;
    env.drain().await;
    assert_eq!(
        env.odoo_lines(env.odoo_id(edited).await).await[0].1,
        Decimal::from(2),
        "nothing is pushed while the conflict is open"
    );
    for (cid, kind, _) in &conflicts {
        assert_eq!(kind, "DATA_MISMATCH");
        let r = resolve(&env, cid, "KEEP_LOCAL", None).await;
        assert_eq!(r["sync_status"], "PENDING_SYNC", "{r}");
        assert!(r["push_job"].is_i64(), "{r}");
    }
    env.drain().await;

    assert_eq!(
        env.odoo_lines(env.odoo_id(edited).await).await[0].1,
        Decimal::from(5)
    );
    let status: String = env
        .one(&format!(
            "SELECT sync_status FROM orders WHERE id = {edited}"
        ))
        .await;
    assert_eq!(status, "SYNCED");
    let state = env
        .odoo
        .search_read(
            "purchase.order",
            &Domain::eq("id", deleted_odoo),
            &["state"],
            0,
            None,
            None,
        )
        .await
        .expect("read");
    assert_eq!(
        state[0]["state"], "cancel",
        "the deleted order is cancelled"
    );
    assert!(env.open_conflicts().await.is_empty());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeping_a_local_write_odoo_forbids_fails_with_odoos_reason() {
    let env = setup("tw_rule_local").await;
    let (id, odoo_id, _lines) = synced_order(&env, "PO-RL").await;
    env.odoo
        .call_button("purchase.order", "button_confirm", &[odoo_id])
        .await
        .expect("confirm");
    env.poll().await;
    env.sql(&format!(
        "DELETE FROM order_items WHERE id = (SELECT min(id) FROM order_items WHERE order_id = {id})"
    ))
    .await;
    let conflicts = env.open_conflicts().await;
    assert_eq!(conflicts[0].1, "BUSINESS_RULE_VIOLATION");
    // KEEP_LOCAL insists: the push runs and Odoo refuses it, with its own message.
    resolve(&env, &conflicts[0].0, "KEEP_LOCAL", None).await;
    env.drain().await;
    let r = env
        .db
        .client
        .query_one(
            "SELECT sync_status, last_error ->> 'message' FROM odoo_sync.order_status WHERE local_order_id = $1",
            &[&id.to_string()],
        )
        .await
        .expect("status");
    let (status, message): (String, Option<String>) = (r.get(0), r.get(1));
    assert_eq!(status, "SYNC_FAILED");
    assert!(
        message
            .as_deref()
            .unwrap_or("")
            .contains("Cannot delete a purchase order line"),
        "{message:?}"
    );
    assert_eq!(env.odoo_lines(odoo_id).await.len(), 2, "Odoo kept its line");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_odoo_order_the_database_refuses_does_not_stop_the_pull() {
    let env = setup("tw_refused").await;
    let (a, odoo_a, _) = synced_order(&env, "PO-A1").await;
    let (b, _odoo_b, lines_b) = synced_order(&env, "PO-B1").await;
    // Deco Addict's ref already stands for another Odoo partner here: a vendor change to it
    // cannot be mapped to a local supplier.
    let deco = odoo_record(&env, "res.partner", "ref", "V-DECO").await;
    env.sql("INSERT INTO odoo_sync.partner_map (local_supplier_id, odoo_partner_id) \
             SELECT 'V-DECO', odoo_partner_id FROM odoo_sync.partner_map WHERE local_supplier_id = 'V-WOOD'")
        .await;
    env.odoo
        .write("purchase.order", &[odoo_a], &json!({"partner_id": deco}))
        .await
        .expect("vendor change");
    env.write_line(lines_b[0], json!({"product_qty": 4, "price_unit": 10.0}))
        .await;
    let report = env.poll().await;
    assert_eq!(report.outcomes.get("failed"), Some(&1), "{report:?}");
    assert_eq!(report.outcomes.get("applied"), Some(&1), "{report:?}");
    assert_eq!(
        env.local_lines(b).await[0].0,
        d("4"),
        "the other order was applied"
    );
    // The refused order is a pull job that carries the reason.
    let supplier: String = env
        .one(&format!("SELECT supplier_id FROM orders WHERE id = {a}"))
        .await;
    assert_eq!(supplier, "V-WOOD", "nothing half-applied");
    // Pull jobs queued by the poll wait a second (a push of the order may still be running).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    env.drain().await;
    let error: String = env
        .one(&format!(
            "SELECT last_error ->> 'message' FROM odoo_sync.job_history WHERE kind = 'pull' AND odoo_id = {odoo_a} \
             UNION ALL SELECT last_error ->> 'message' FROM odoo_sync.jobs WHERE kind = 'pull' AND odoo_id = {odoo_a}"
        ))
        .await;
    assert!(error.contains("already stands for Odoo partner"), "{error}");
    env.finish().await;
}

/// The local status and sync status of `order`, and its Odoo state and write_date.
async fn states(env: &Env, order: i64) -> (String, String, String, String) {
    let r = env
        .db
        .client
        .query_one(
            "SELECT status, sync_status FROM orders WHERE id = $1",
            &[&order],
        )
        .await
        .expect("order");
    let odoo = env
        .odoo
        .read(
            "purchase.order",
            &[env.odoo_id(order).await],
            &["state", "write_date"],
        )
        .await
        .expect("Odoo order");
    let field = |k: &str| odoo[0][k].as_str().unwrap_or_default().to_string();
    (r.get(0), r.get(1), field("state"), field("write_date"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_local_status_settles_and_polling_pushes_nothing_more() {
    let env = setup("tw_status").await;
    let order = |number: &'static str, status: &'static str| {
        let env = &env;
        async move {
            let id = env
                .insert_order(number, &[("FURN_0001", "2", "10.00")])
                .await;
            env.sql(&format!(
                "UPDATE orders SET status = '{status}' WHERE id = {id}"
            ))
            .await;
            id
        }
    };
    // Marked as sent in Odoo; Odoo decides approval on confirm (one-step approval here, so
    // the order is confirmed and the local status follows); a local step back Odoo has no
    // action for (a confirmed order back to draft) is a business rule violation.
    let sent = order("PO-SENT", "SENT_TO_SUPPLIER").await;
    let approval = order("PO-APPROVAL", "PENDING_APPROVAL").await;
    let back = order("PO-BACK", "CONFIRMED").await;
    env.drain().await;
    env.sql(&format!(
        "UPDATE orders SET status = 'DRAFT' WHERE id = {back}"
    ))
    .await;
    env.drain().await;

    let (status, sync, state, _) = states(&env, sent).await;
    assert_eq!(
        (status.as_str(), sync.as_str(), state.as_str()),
        ("SENT_TO_SUPPLIER", "SYNCED", "sent")
    );
    let (status, sync, state, _) = states(&env, approval).await;
    assert_eq!(
        (status.as_str(), sync.as_str(), state.as_str()),
        ("CONFIRMED", "SYNCED", "purchase")
    );
    let followed: i64 = env
        .one(&format!(
            "SELECT count(*) FROM odoo_sync.event_log WHERE event_type = 'ORDER_UPDATED_FROM_ODOO' \
             AND entity_id = '{approval}' AND payload ->> 'status' = 'CONFIRMED'"
        ))
        .await;
    assert_eq!(followed, 1, "the followed status is in the event log");
    let (status, sync, state, _) = states(&env, back).await;
    assert_eq!(
        (status.as_str(), sync.as_str(), state.as_str()),
        ("DRAFT", "CONFLICT", "purchase")
    );
    let conflicts = env.open_conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].1, "BUSINESS_RULE_VIOLATION");
    let rule = conflicts[0].2[0]["rule"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(rule.contains("from \"purchase\" to DRAFT"), "{rule}");

    // Realtime polls see every order again and push none of them: no write reaches Odoo.
    let mut before = Vec::new();
    for id in [sent, approval, back] {
        before.push(states(&env, id).await);
    }
    env.sim.sim.reset_stats();
    for _ in 0..2 {
        env.poll().await;
        let queued: i64 = env
            .one("SELECT count(*) FROM odoo_sync.jobs WHERE run_after < 'infinity'")
            .await;
        assert_eq!(queued, 0, "a poll queued a push");
        env.drain().await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_eq!(env.calls(".load").await + env.calls(".write").await, 0);
    for (&id, was) in [sent, approval, back].iter().zip(before) {
        assert_eq!(states(&env, id).await, was, "order {id} changed");
    }

    // Odoo's state wins the conflict: the local order is confirmed again, and in sync.
    let resolved: Value = env
        .one(&format!(
            "SELECT odoo_sync.resolve_conflict('{}', 'KEEP_REMOTE')",
            conflicts[0].0
        ))
        .await;
    assert_eq!(resolved["sync_status"], "SYNCED", "{resolved}");
    let (status, sync, _, _) = states(&env, back).await;
    assert_eq!((status.as_str(), sync.as_str()), ("CONFIRMED", "SYNCED"));
    env.finish().await;
}

/// Odoo's notes of an order (HTML; None when empty).
async fn odoo_notes(env: &Env, odoo_id: i64, field: &str) -> Option<String> {
    env.odoo
        .read("purchase.order", &[odoo_id], &[field])
        .await
        .expect("read notes")[0]
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
}

async fn local_notes(env: &Env, order: i64) -> Option<String> {
    env.one(&format!("SELECT notes FROM orders WHERE id = {order}"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_notes_sync_both_ways_as_text_against_odoos_html() {
    for version in [17, 19] {
        let env = setup_version(&format!("tw_notes{version}"), version).await;
        let field = if version >= 19 { "note" } else { "notes" };

        // Local plain text reaches Odoo as one paragraph of HTML: escaped, lines kept.
        let id = env
            .insert_order("PO-NOTES", &[("FURN_0001", "2", "10.00")])
            .await;
        env.sql(&format!(
            "UPDATE orders SET notes = E'Deliver to dock 2 & call <Ann>\\r\\nbefore 9 ' WHERE id = {id}"
        ))
        .await;
        env.drain().await;
        let odoo_id = env.odoo_id(id).await;
        assert_eq!(
            odoo_notes(&env, odoo_id, field).await.as_deref(),
            Some("<p>Deliver to dock 2 &amp; call &lt;Ann&gt;<br>before 9</p>"),
            "Odoo {version}"
        );
        // Our own write comes back as no change.
        let first = env.poll().await;
        assert_eq!(first.outcomes.get("applied"), None, "{first:?}");

        // Rich text edited in Odoo arrives as its text; a later local change of another field
        // leaves Odoo's HTML (formatting included) as it is.
        env.odoo
            .write(
                "purchase.order",
                &[odoo_id],
                &json!({field: "<p>Gate <b>B</b> &amp; ramp</p><p>Ring twice</p>"}),
            )
            .await
            .expect("edit notes in Odoo");
        let report = env.poll().await;
        assert_eq!(report.outcomes.get("applied"), Some(&1), "{report:?}");
        assert_eq!(
            local_notes(&env, id).await.as_deref(),
            Some("Gate B & ramp\nRing twice")
        );
        let queued: i64 = env.one("SELECT count(*) FROM odoo_sync.jobs").await;
        assert_eq!(queued, 0, "no echo");
        env.sql(&format!(
            "UPDATE order_items SET quantity = 3 WHERE order_id = {id}"
        ))
        .await;
        env.drain().await;
        assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("3"));
        assert_eq!(
            odoo_notes(&env, odoo_id, field).await.as_deref(),
            Some("<p>Gate <b>B</b> &amp; ramp</p><p>Ring twice</p>")
        );
        env.poll().await;

        // Edited on both sides: a conflict on the notes (policy `manual`); keeping the local
        // text writes it to Odoo.
        env.sql(&format!(
            "UPDATE orders SET notes = 'Local: dock 4' WHERE id = {id}"
        ))
        .await;
        env.odoo
            .write(
                "purchase.order",
                &[odoo_id],
                &json!({field: "<p>Odoo: dock 5</p>"}),
            )
            .await
            .expect("edit notes in Odoo");
        env.poll().await;
        let conflicts = env.open_conflicts().await;
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        let diff = &conflicts[0].2;
        assert_eq!(diff[0]["field"], "notes", "{diff}");
        assert_eq!(diff[0]["local"], "Local: dock 4", "{diff}");
        assert_eq!(diff[0]["remote"], "Odoo: dock 5", "{diff}");
        resolve(&env, &conflicts[0].0, "KEEP_LOCAL", None).await;
        env.drain().await;
        assert_eq!(
            odoo_notes(&env, odoo_id, field).await.as_deref(),
            Some("<p>Local: dock 4</p>")
        );
        let sync: String = env
            .one(&format!("SELECT sync_status FROM orders WHERE id = {id}"))
            .await;
        assert_eq!(sync, "SYNCED");

        // Emptied locally: emptied in Odoo.
        env.sql(&format!("UPDATE orders SET notes = NULL WHERE id = {id}"))
            .await;
        env.drain().await;
        assert_eq!(odoo_notes(&env, odoo_id, field).await, None);
        let again = env.poll().await;
        assert_eq!(again.outcomes.get("applied"), None, "{again:?}");

        // An application that keeps HTML notes: its HTML goes as it is, Odoo's comes back as is.
        env.sql(&format!(
            "UPDATE orders SET notes = '<p>Local <i>html</i></p>' WHERE id = {id}"
        ))
        .await;
        env.drain().await;
        assert_eq!(
            odoo_notes(&env, odoo_id, field).await.as_deref(),
            Some("<p>Local <i>html</i></p>")
        );
        env.poll().await;
        env.odoo
            .write(
                "purchase.order",
                &[odoo_id],
                &json!({field: "<p>Odoo <u>html</u></p>"}),
            )
            .await
            .expect("edit notes in Odoo");
        env.poll().await;
        assert_eq!(
            local_notes(&env, id).await.as_deref(),
            Some("<p>Odoo <u>html</u></p>")
        );

        // A base from before notes were synced knows none: notes that differ on both sides are a
        // conflict (the push merges Odoo's order first), not an overwrite.
        env.sql(&format!(
            "UPDATE odoo_sync.order_state SET base_snapshot = base_snapshot - 'notes' - 'notes_html'
             WHERE order_key = '{id}';
             UPDATE orders SET notes = 'App text' WHERE id = {id}"
        ))
        .await;
        env.drain().await;
        let conflicts = env.open_conflicts().await;
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(conflicts[0].1, "VERSION_CONFLICT");
        assert_eq!(conflicts[0].2[0]["field"], "notes");
        assert_eq!(
            odoo_notes(&env, odoo_id, field).await.as_deref(),
            Some("<p>Odoo <u>html</u></p>")
        );
        resolve(&env, &conflicts[0].0, "KEEP_REMOTE", None).await;
        env.drain().await;
        assert_eq!(
            local_notes(&env, id).await.as_deref(),
            Some("Odoo html"),
            "plain text locally: Odoo's text"
        );
        let sync: String = env
            .one(&format!("SELECT sync_status FROM orders WHERE id = {id}"))
            .await;
        assert_eq!(sync, "SYNCED");

        // An order imported from Odoo brings its notes as text.
        let partner = env
            .odoo
            .search("res.partner", &Domain::eq("ref", "V-WOOD"), None, None)
            .await
            .expect("partner");
        let imported = env
            .odoo
            .create(
                "purchase.order",
                &[json!({"partner_id": partner[0], field: "Call Eve first"})],
            )
            .await
            .expect("create in Odoo")[0];
        env.sql(&format!(
            "SELECT odoo_sync.sync_order_from_odoo({imported})"
        ))
        .await;
        env.drain().await;
        let notes: Option<String> = env
            .one(&format!(
                "SELECT notes FROM orders WHERE odoo_order_id = {imported}"
            ))
            .await;
        assert_eq!(notes.as_deref(), Some("Call Eve first"));
        env.finish().await;
    }
}

/// A push writes of each line only what changed since the last sync. Writing a line's quantity,
/// even the one it has, makes Odoo 17+ plan its expected arrival again from the vendor's lead
/// time (Wood Corner sells the Large Desk, FURN_8220, with a day's delay), so a push of a
/// notes edit used to move the dates a purchaser had set in Odoo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_leaves_the_lines_it_did_not_change_as_odoo_has_them() {
    for version in [17, 19] {
        let env = setup_version(&format!("tw_unchanged_lines{version}"), version).await;
        let id = env
            .insert_order(
                "PO-KEEP",
                &[("FURN_8220", "2", "400.00"), ("FURN_0001", "1", "10.00")],
            )
            .await;
        env.drain().await;
        let odoo_id = env.odoo_id(id).await;
        env.poll().await;

        // A purchaser moves every line in Odoo; the pull brings the day here.
        let lines = env.odoo_lines(odoo_id).await;
        let set = json!("2026-12-20 09:30:00");
        let moved: Vec<Value> = lines
            .iter()
            .map(|l| json!([1, l.0, {"date_planned": set}]))
            .collect();
        env.odoo
            .write("purchase.order", &[odoo_id], &json!({"order_line": moved}))
            .await
            .expect("move the dates in Odoo");
        let report = env.poll().await;
        assert_eq!(report.outcomes.get("applied"), Some(&1), "{report:?}");
        assert_eq!(local_date(&env, id).await.as_deref(), Some("2026-12-20"));

        // A notes edit, a price edit (the local day is Odoo's), then the local date emptied:
        // the lines keep the dates the purchaser set; the price reaches its line alone.
        for change in [
            "UPDATE orders SET notes = 'call first' WHERE id = {id}",
            "UPDATE order_items SET unit_price = 390 WHERE order_id = {id} AND product_id = 'FURN_8220'",
            "UPDATE orders SET requested_delivery_date = NULL, notes = 'no date' WHERE id = {id}",
        ] {
            env.sql(&change.replace("{id}", &id.to_string())).await;
            env.drain().await;
            assert_eq!(
                odoo_dates(&env, odoo_id).await,
                (set.clone(), vec![set.clone(), set.clone()]),
                "Odoo {version}, {change}"
            );
        }
        let after: Vec<(Decimal, Decimal)> = env
            .odoo_lines(odoo_id)
            .await
            .iter()
            .map(|l| (l.1, l.2))
            .collect();
        assert_eq!(after, vec![(d("2"), d("390")), (d("1"), d("10"))]);

        // A quantity edit writes that line in full, and Odoo plans that line again, as it would
        // for a purchaser changing the quantity: the other line keeps its date.
        env.sql(&format!(
            "UPDATE order_items SET quantity = 5 WHERE order_id = {id} AND product_id = 'FURN_8220'"
        ))
        .await;
        env.drain().await;
        let (_, dates) = odoo_dates(&env, odoo_id).await;
        assert_ne!(dates[0], set, "Odoo {version} plans the desk again");
        assert_eq!(dates[1], set, "Odoo {version}");
        assert_eq!(env.odoo_lines(odoo_id).await[0].1, d("5"));

        // Nothing odoo_sync sends changed (approved_by is not sent), then only the status: no
        // `load`, and Odoo's order is not written but for the confirmation.
        env.poll().await;
        let write_date = async || {
            env.odoo
                .read("purchase.order", &[odoo_id], &["write_date"])
                .await
                .expect("read")[0]["write_date"]
                .clone()
        };
        let before = write_date().await;
        env.sim.sim.reset_stats();
        env.sql(&format!(
            "UPDATE orders SET approved_by = 'eve' WHERE id = {id}"
        ))
        .await;
        env.drain().await;
        assert_eq!(env.calls("purchase.order.load").await, 0);
        assert_eq!(env.calls(".write").await, 0);
        assert_eq!(write_date().await, before, "Odoo {version}");
        env.sql(&format!(
            "UPDATE orders SET status = 'CONFIRMED' WHERE id = {id}"
        ))
        .await;
        env.drain().await;
        assert_eq!(env.calls("purchase.order.load").await, 0);
        assert_eq!(env.calls("button_confirm").await, 1);

        // Both sides agree, and the pull has nothing to bring back but the new date.
        env.poll().await;
        env.drain().await;
        assert!(env.open_conflicts().await.is_empty());
        let report = odoo_sync_worker::verify::verify(&env.db.client, &env.odoo)
            .await
            .expect("verify");
        assert_eq!(report.summary.equal, 1, "{}", report.render_text());
        env.finish().await;
    }
}

/// A push leaves a line out when the base (what Odoo held at the last sync) has it as the
/// document does. Every push reads an Odoo order that may have changed since (its write_date
/// moved) and merges it first, so the base is Odoo's; an Odoo user can still remove a line
/// between that read and the push's write. The push checks that every line it left out is
/// there and writes a missing one in full. Staged here: a base claiming a line Odoo does not
/// have, and a write_date that says Odoo has not changed since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_the_base_has_and_odoo_lacks_is_written_again() {
    let env = setup_version("tw_lost_line", 17).await;
    let id = env
        .insert_order("PO-LOST", &[("FURN_8220", "2", "400.00")])
        .await;
    env.drain().await;
    let odoo_id = env.odoo_id(id).await;

    // An item the base claims Odoo already has with these values.
    let claim = async |code: &str| {
        let item: i64 = env
            .one(&format!(
                "INSERT INTO order_items (order_id, product_id, product_code, quantity, unit_price) \
                 VALUES ({id}, '{code}', '{code}', 1, 10) RETURNING id"
            ))
            .await;
        let product = odoo_record(&env, "product.product", "default_code", code).await;
        env.sql(&format!(
            "UPDATE odoo_sync.order_state SET base_snapshot = jsonb_set(base_snapshot, '{{lines,{item}}}', \
               '{{\"product_id\": \"{product}\", \"quantity\": 1, \"unit_price\": 10, \"discount\": 0}}'), \
               odoo_write_date = '2999-01-01 00:00:00' \
             WHERE order_key = '{id}'"
        ))
        .await;
    };
    let odoo_lines = async || {
        env.odoo_lines(odoo_id)
            .await
            .iter()
            .map(|l| (l.1, l.2))
            .collect::<Vec<(Decimal, Decimal)>>()
    };

    // The batched push.
    claim("FURN_0001").await;
    env.drain().await;
    assert_eq!(
        odoo_lines().await,
        vec![(d("2"), d("400")), (d("1"), d("10"))]
    );

    // The push of one order.
    claim("FURN_0269").await;
    let doc = odoo_sync_worker::queue::order_document(&env.worker, 1, &id.to_string())
        .await
        .expect("document");
    odoo_sync_worker::push::order_push::push_order(
        &env.worker,
        &env.odoo,
        &mut odoo_sync_worker::push::resolve::Resolver::new(),
        &doc,
    )
    .await
    .expect("push");
    assert_eq!(
        odoo_lines().await,
        vec![(d("2"), d("400")), (d("1"), d("10")), (d("1"), d("10"))]
    );
    let registered = env
        .odoo
        .search(
            "ir.model.data",
            &Domain::eq("module", "odoo_sync").and(Domain::eq("model", "purchase.order.line")),
            None,
            None,
        )
        .await
        .expect("external ids");
    assert_eq!(registered.len(), 3);

    // The job of that change finds Odoo as the document wants it.
    env.drain().await;
    assert_eq!(odoo_lines().await.len(), 3);
    let sync: String = env
        .one(&format!("SELECT sync_status FROM orders WHERE id = {id}"))
        .await;
    assert_eq!(sync, "SYNCED");
    env.poll().await;
    assert!(env.open_conflicts().await.is_empty());
    env.finish().await;
}

/// A line whose price alone changed is written after the order's `load`, by its external id.
/// An Odoo user removing the line between the two calls makes Odoo refuse that write (`load`
/// would create the line again, without its order): that is a change in Odoo, tried again
/// after a read of the order, not a refusal that sends the order to the dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_write_that_finds_its_line_removed_in_odoo_is_tried_again() {
    use odoo_sync_worker::push::line_write::LineWrite;
    use odoo_sync_worker::push::order_push::{reprice_order_lines, PushLine};

    let env = setup_version("tw_price_race", 17).await;
    let id = env
        .insert_order(
            "PO-RACE",
            &[("FURN_8220", "2", "400.00"), ("FURN_0001", "1", "10.00")],
        )
        .await;
    env.drain().await;
    let odoo_id = env.odoo_id(id).await;
    let lines = env.odoo_lines(odoo_id).await;
    let items = env.item_ids(id).await;
    let line = |item: i64, price: &str| PushLine {
        xmlid: format!("pol_1_{item}"),
        product: 0,
        qty: Decimal::ONE,
        price: d(price),
        discount: Decimal::ZERO,
        write: LineWrite::Price,
    };

    // The line is there: its price is written, and nothing else.
    let kept = line(items[1], "12.5");
    reprice_order_lines(&env.odoo, &[(&kept, None)])
        .await
        .expect("price written");
    assert_eq!(env.odoo_lines(odoo_id).await[1].2, d("12.5"));

    // Removed in Odoo meanwhile: a transient error that names it.
    env.odoo
        .unlink("purchase.order.line", &[lines[0].0])
        .await
        .expect("remove the line in Odoo");
    let gone = line(items[0], "390");
    let err = reprice_order_lines(&env.odoo, &[(&gone, None)])
        .await
        .expect_err("the line is gone");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.type_name(), "changed_in_odoo");
    assert!(err.to_string().contains(&gone.xmlid), "{err}");
    assert_eq!(env.odoo_lines(odoo_id).await.len(), 1, "nothing created");
    env.finish().await;
}

/// Odoo's expected arrival of an order and of each of its lines (UTC datetimes).
async fn odoo_dates(env: &Env, odoo_id: i64) -> (Value, Vec<Value>) {
    let order = env
        .odoo
        .read(
            "purchase.order",
            &[odoo_id],
            &["date_planned", "order_line"],
        )
        .await
        .expect("read order")[0]
        .clone();
    let line_ids: Vec<i64> = order["order_line"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let lines = env
        .odoo
        .read("purchase.order.line", &line_ids, &["date_planned"])
        .await
        .expect("read lines")
        .into_iter()
        .map(|l| l.get("date_planned").cloned().unwrap_or(Value::Null))
        .collect();
    (order["date_planned"].clone(), lines)
}

async fn local_date(env: &Env, order: i64) -> Option<String> {
    env.one(&format!(
        "SELECT requested_delivery_date::text FROM orders WHERE id = {order}"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_dates_sync_both_ways_as_odoos_expected_arrival() {
    for version in [17, 19] {
        let env = setup_version(&format!("tw_dates{version}"), version).await;

        // A local date reaches every line as noon UTC. The simulator's admin lives at UTC+05:30,
        // where `load` would read the datetime unless the call says UTC: 06:30 would show it.
        let id = env
            .insert_order(
                "PO-DATES",
                &[("FURN_0001", "2", "10.00"), ("FURN_0269", "3", "20.00")],
            )
            .await;
        env.sql(&format!(
            "UPDATE orders SET requested_delivery_date = '2026-12-15' WHERE id = {id}"
        ))
        .await;
        env.drain().await;
        let odoo_id = env.odoo_id(id).await;
        let noon = json!("2026-12-15 12:00:00");
        assert_eq!(
            odoo_dates(&env, odoo_id).await,
            (noon.clone(), vec![noon.clone(), noon.clone()]),
            "Odoo {version}"
        );
        let first = env.poll().await;
        assert_eq!(first.outcomes.get("applied"), None, "{first:?}");

        // A quantity change sends the date with it: the lines keep it.
        env.sql(&format!(
            "UPDATE order_items SET quantity = quantity + 1 WHERE order_id = {id}"
        ))
        .await;
        env.drain().await;
        assert_eq!(
            odoo_dates(&env, odoo_id).await,
            (noon.clone(), vec![noon.clone(), noon.clone()])
        );
        env.poll().await;

        // Moved in Odoo (the form's onchange writes every line): the local day follows, and
        // nothing goes back.
        let lines = env.odoo_lines(odoo_id).await;
        let moved: Vec<Value> = lines
            .iter()
            .map(|l| json!([1, l.0, {"date_planned": "2026-12-20 09:30:00"}]))
            .collect();
        env.odoo
            .write("purchase.order", &[odoo_id], &json!({"order_line": moved}))
            .await
            .expect("move the date in Odoo");
        let report = env.poll().await;
        assert_eq!(report.outcomes.get("applied"), Some(&1), "{report:?}");
        assert_eq!(local_date(&env, id).await.as_deref(), Some("2026-12-20"));
        let queued: i64 = env.one("SELECT count(*) FROM odoo_sync.jobs").await;
        assert_eq!(queued, 0, "no echo");

        // Changed on both sides: a conflict on the date (policy `manual`); keeping Odoo's
        // takes its day.
        env.sql(&format!(
            "UPDATE orders SET requested_delivery_date = '2027-01-05' WHERE id = {id}"
        ))
        .await;
        let moved: Vec<Value> = lines
            .iter()
            .map(|l| json!([1, l.0, {"date_planned": "2027-01-07 08:00:00"}]))
            .collect();
        env.odoo
            .write("purchase.order", &[odoo_id], &json!({"order_line": moved}))
            .await
            .expect("move the date in Odoo");
        env.poll().await;
        let conflicts = env.open_conflicts().await;
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        let diff = &conflicts[0].2;
        assert_eq!(diff[0]["field"], "delivery_date", "{diff}");
        assert_eq!(diff[0]["local"], "2027-01-05", "{diff}");
        assert_eq!(diff[0]["remote"], "2027-01-07", "{diff}");
        resolve(&env, &conflicts[0].0, "KEEP_REMOTE", None).await;
        env.drain().await;
        assert_eq!(local_date(&env, id).await.as_deref(), Some("2027-01-07"));
        let sync: String = env
            .one(&format!("SELECT sync_status FROM orders WHERE id = {id}"))
            .await;
        assert_eq!(sync, "SYNCED");

        // Emptied locally: Odoo keeps its dates, and the next poll changes nothing.
        env.sql(&format!(
            "UPDATE orders SET requested_delivery_date = NULL, notes = 'no date' WHERE id = {id}"
        ))
        .await;
        env.drain().await;
        let kept = json!("2027-01-07 08:00:00");
        assert_eq!(
            odoo_dates(&env, odoo_id).await,
            (kept.clone(), vec![kept.clone(), kept.clone()])
        );
        let again = env.poll().await;
        assert_eq!(again.outcomes.get("applied"), None, "{again:?}");
        assert_eq!(env.open_conflicts().await.len(), 0);

        // An order made in Odoo arrives with its day; a local change of the day is written to
        // its lines by id (the path of orders linked by their Odoo id).
        let (made, _) = odoo_orders(&env, 1).await;
        let line = env.odoo_lines(made[0]).await[0].0;
        env.odoo
            .write(
                "purchase.order.line",
                &[line],
                &json!({"date_planned": "2026-11-30 21:00:00"}),
            )
            .await
            .expect("date the line in Odoo");
        env.sql(&format!(
            "SELECT odoo_sync.sync_order_from_odoo({})",
            made[0]
        ))
        .await;
        env.drain().await;
        let imported: i64 = env
            .one(&format!(
                "SELECT id FROM orders WHERE odoo_order_id = {}",
                made[0]
            ))
            .await;
        assert_eq!(
            local_date(&env, imported).await.as_deref(),
            Some("2026-11-30")
        );
        env.sql(&format!(
            "UPDATE orders SET requested_delivery_date = '2026-12-02' WHERE id = {imported}"
        ))
        .await;
        env.drain().await;
        let moved = json!("2026-12-02 12:00:00");
        assert_eq!(
            odoo_dates(&env, made[0]).await,
            (moved.clone(), vec![moved.clone()])
        );
        let last = env.poll().await;
        assert_eq!(last.outcomes.get("applied"), None, "{last:?}");
        assert_eq!(env.open_conflicts().await.len(), 0);
        env.finish().await;
    }
}
