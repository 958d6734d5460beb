//! `odoo-sync-worker verify` end to end: real PostgreSQL with the extension, the Odoo simulator,
//! orders pushed by the worker binary; then the comparison, as a library call (what the chaos
//! tests use) and as the command (text and `--json`, exit status).

mod support;

use std::time::Duration;

use odoo_sync_worker::verify::{self, Kind};
use serde_json::{json, Value};
use support::{setup, Env};

const WAIT: Duration = Duration::from_secs(60);

/// Runs `odoo-sync-worker verify <args>` to its end: (exit code, stdout and stderr).
fn run_verify(env: &Env, args: &[&str]) -> (i32, String) {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    let mut p = env.spawn_worker(&all, &[]);
    let status = p
        .wait_for_exit(Duration::from_secs(60))
        .expect("verify ends within 60 s");
    (status.code().unwrap_or(-1), p.output())
}

/// The JSON document in the output of `verify --json` (the log lines go to stderr, which the
/// harness writes to the same file: take from the first line that opens an object).
fn json_of(output: &str) -> Value {
    let start = output
        .find("{\n")
        .unwrap_or_else(|| panic!("no JSON in: {output}"));
    let end = output.rfind("\n}").expect("end of the JSON") + 2;
    serde_json::from_str(&output[start..end]).unwrap_or_else(|e| panic!("{e}: {output}"))
}

/// Odoo record id behind one of our external ids.
async fn xmlid_res_id(env: &Env, model: &str, name: &str) -> i64 {
    let rows = env
        .odoo_call(
            "ir.model.data",
            "search_read",
            json!([[
                ["module", "=", "odoo_sync"],
                ["model", "=", model],
                ["name", "=", name]
            ]]),
            json!({"fields": ["res_id"]}),
        )
        .await;
    rows[0]["res_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no {model} with external id {name}: {rows}"))
}

async fn tracking_id(env: &Env) -> i32 {
    env.db
        .client
        .query_one("SELECT min(id) FROM odoo_sync.tracked_tables", &[])
        .await
        .expect("tracking")
        .get(0)
}

/// (item id, quantity, unit price) of the first line of a local order.
async fn first_item(env: &Env, order: i64) -> (i64, String, String) {
    let r = env
        .db
        .client
        .query_one(
            "SELECT id, quantity::text, unit_price::text FROM order_items WHERE order_id = $1 ORDER BY id LIMIT 1",
            &[&order],
        )
        .await
        .expect("item");
    (r.get(0), r.get(1), r.get(2))
}

fn norm(s: &str) -> String {
    s.parse::<rust_decimal::Decimal>()
        .expect("decimal")
        .normalize()
        .to_string()
}

/// Pushed by the worker, one order deleted locally (so cancelled in Odoo): the library, the
/// text and the JSON all say "equal", and the command exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_pushed_by_the_worker_verify_equal() {
    let mut env = setup("v_equal", 19).await;
    env.insert_orders(0, 12, 3).await;
    env.db
        .client
        .batch_execute("UPDATE orders SET status = 'CONFIRMED' WHERE id IN (2, 5)")
        .await
        .expect("confirm");
    let mut w = env.spawn_worker(&["run"], &[]);
    env.wait_all_synced(WAIT, &mut [&mut w]).await;
    env.db
        .client
        .batch_execute("DELETE FROM orders WHERE id = 12")
        .await
        .expect("delete");
    env.expected.remove(&12);
    env.wait_all_synced(WAIT, &mut [&mut w]).await;
    w.kill();

    let pg = env.worker_client().await;
    let report = verify::verify(&pg, &env.odoo_client())
        .await
        .expect("verify");
    println!("{}", report.render_text());
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.summary.compared, 12);
    assert_eq!(report.summary.equal, 12);

    let (code, out) = run_verify(&env, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("verify: 12 orders compared: 12 equal, 0 differing"),
        "{out}"
    );
    let (code, out) = run_verify(&env, &["--json"]);
    assert_eq!(code, 0, "{out}");
    let doc = json_of(&out);
    assert_eq!(doc["summary"]["equal"], 12, "{doc}");
    assert_eq!(doc["orders"], json!([]));
    env.finish().await;
}

/// Edits made directly in Odoo (quantity, price, vendor, cancel, an extra line, a second order
/// with the same origin, a deleted order) and an order never pushed: each is reported on its
/// order with the exact field and both values; the command exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_side_edits_are_reported_with_the_exact_field() {
    let mut env = setup("v_edits", 19).await;
    env.insert_orders(0, 8, 3).await;
    // Orders 2 and 8 ask for a delivery day: 8 stays equal, 2's moves in Odoo below.
    env.db
        .client
        .batch_execute(
            "UPDATE orders SET requested_delivery_date = '2026-12-15' WHERE id IN (2, 8)",
        )
        .await
        .expect("dates");
    let mut w = env.spawn_worker(&["run"], &[]);
    env.wait_all_synced(WAIT, &mut [&mut w]).await;
    w.kill();
    // Order 9 is written while no worker runs: never pushed.
    env.insert_orders(8, 1, 2).await;
    let t = tracking_id(&env).await;
    let odoo_order = |n: i64| format!("po_{t}_{n}");

    // 1: a quantity; 2: a price (both on the first line).
    let (item1, qty1, price1) = first_item(&env, 1).await;
    let line1 = xmlid_res_id(&env, "purchase.order.line", &format!("pol_{t}_{item1}")).await;
    let new_qty = format!("{}", norm(&qty1).parse::<f64>().unwrap() + 5.0);
    env.odoo_call(
        "purchase.order.line",
        "write",
        // With the price: Odoo would otherwise reprice the line from the vendor's price list.
        json!([[line1], {"product_qty": new_qty.parse::<f64>().unwrap(),
                         "price_unit": price1.parse::<f64>().unwrap()}]),
        json!({}),
    )
    .await;
    let (item2, _, price2) = first_item(&env, 2).await;
    let line2 = xmlid_res_id(&env, "purchase.order.line", &format!("pol_{t}_{item2}")).await;
    env.odoo_call(
        "purchase.order.line",
        "write",
        json!([[line2], {"price_unit": 999.25, "date_planned": "2026-12-14 20:00:00"}]),
        json!({}),
    )
    .await;
    // 3: another vendor.
    let po3 = xmlid_res_id(&env, "purchase.order", &odoo_order(3)).await;
    let ready = env
        .odoo_call(
            "res.partner",
            "search",
            json!([[["ref", "=", "V-READY"]]]),
            json!({}),
        )
        .await[0]
        .as_i64()
        .expect("partner");
    env.odoo_call(
        "purchase.order",
        "write",
        json!([[po3], {"partner_id": ready}]),
        json!({}),
    )
    .await;
    // 4: cancelled in Odoo.
    let po4 = xmlid_res_id(&env, "purchase.order", &odoo_order(4)).await;
    env.odoo_call("purchase.order", "button_cancel", json!([[po4]]), json!({}))
        .await;
    // 5: a second Odoo order with its origin.
    let po5 = xmlid_res_id(&env, "purchase.order", &odoo_order(5)).await;
    let dup = env
        .odoo_call(
            "purchase.order",
            "create",
            json!([{"partner_id": ready, "origin": "PO-4"}]),
            json!({}),
        )
        .await
        .as_i64()
        .expect("duplicate id");
    // 6: deleted in Odoo.
    let po6 = xmlid_res_id(&env, "purchase.order", &odoo_order(6)).await;
    env.odoo_call("purchase.order", "button_cancel", json!([[po6]]), json!({}))
        .await;
    env.odoo_call("purchase.order", "unlink", json!([[po6]]), json!({}))
        .await;
    // 7: a line added in Odoo.
    let po7 = xmlid_res_id(&env, "purchase.order", &odoo_order(7)).await;
    let product = env
        .odoo_call(
            "product.product",
            "search",
            json!([[["default_code", "=", "E-COM11"]]]),
            json!({}),
        )
        .await[0]
        .as_i64()
        .expect("product");
    env.odoo_call(
        "purchase.order",
        "write",
        json!([[po7], {"order_line": [[0, 0, {"product_id": product, "product_qty": 4, "price_unit": 3.5}]]}]),
        json!({}),
    )
    .await;

    let pg = env.worker_client().await;
    let report = verify::verify(&pg, &env.odoo_client())
        .await
        .expect("verify");
    println!("{}", report.render_text());
    let s = &report.summary;
    assert_eq!(
        (s.compared, s.equal, s.differing),
        (9, 1, 8),
        "{}",
        report.render_text()
    );
    assert_eq!((s.missing, s.duplicates), (2, 1), "{s:?}");
    assert!(!report.is_clean());
    assert!(report.order("8").is_none(), "order 8 is equal");

    let o1 = report.order("1").expect("order 1 differs");
    assert_eq!(o1.findings.len(), 1, "{o1:#?}");
    let f = o1
        .finding(&format!("lines.{item1}.quantity"))
        .expect("quantity");
    assert_eq!(
        (f.local.clone(), f.odoo.clone()),
        (Some(norm(&qty1)), Some(norm(&new_qty)))
    );
    let o2 = report.order("2").expect("order 2 differs");
    let f = o2
        .finding(&format!("lines.{item2}.unit_price"))
        .expect("price");
    assert_eq!(
        (f.local.clone(), f.odoo.clone()),
        (Some(norm(&price2)), Some("999.25".into()))
    );
    let f = o2.finding("delivery_date").expect("delivery date");
    assert_eq!(
        (f.local.as_deref(), f.odoo.as_deref()),
        (Some("2026-12-15"), Some("2026-12-14"))
    );
    assert_eq!(o2.findings.len(), 2, "{o2:#?}");
    assert_eq!(s.date_differences, 1, "{s:?}");
    let o3 = report.order("3").expect("order 3 differs");
    let f = o3.finding("partner_id").expect("partner");
    assert_eq!(f.odoo.as_deref(), Some(ready.to_string().as_str()));
    assert_eq!(o3.findings.len(), 1, "{o3:#?}");
    let o4 = report.order("4").expect("order 4 differs");
    let f = o4.finding("state").expect("state");
    assert_eq!(
        (f.local.as_deref(), f.odoo.as_deref()),
        (Some("draft"), Some("cancel"))
    );
    let o5 = report.order("5").expect("order 5 differs");
    let f = o5
        .findings
        .iter()
        .find(|f| f.kind == Kind::Duplicate)
        .expect("duplicate");
    assert_eq!(f.odoo_ids, vec![po5, dup]);
    let o6 = report.order("6").expect("order 6 differs");
    assert!(o6.has(Kind::Missing), "{o6:#?}");
    assert!(o6.findings[0].message.contains(&po6.to_string()));
    let o7 = report.order("7").expect("order 7 differs");
    assert_eq!(o7.findings.len(), 1, "{o7:#?}");
    let f = &o7.findings[0];
    assert!(
        f.field
            .as_deref()
            .is_some_and(|x| x.starts_with("lines.odoo:"))
            && f.local.is_none(),
        "{f:#?}"
    );
    let o9 = report.order("9").expect("order 9 differs");
    assert!(o9.has(Kind::Missing) && o9.pending, "{o9:#?}");

    let (code, out) = run_verify(&env, &[]);
    assert_eq!(code, 1, "{out}");
    let qty_line = format!(
        "lines.{item1}.quantity: local {}, Odoo {}",
        norm(&qty1),
        norm(&new_qty)
    );
    assert!(out.contains(&qty_line), "{qty_line:?} in:\n{out}");
    assert!(
        out.contains("verify: 9 orders compared: 1 equal, 8 differing"),
        "{out}"
    );
    let (code, out) = run_verify(&env, &["--json"]);
    assert_eq!(code, 1, "{out}");
    let doc = json_of(&out);
    assert_eq!(doc["summary"]["differing"], 8, "{doc}");
    let order1 = doc["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .find(|o| o["order_key"] == "1")
        .expect("order 1 in the JSON");
    assert_eq!(
        order1["findings"][0]["field"],
        json!(format!("lines.{item1}.quantity"))
    );
    assert_eq!(order1["findings"][0]["kind"], "line");
    env.finish().await;
}

/// Notes are compared as the merge compares them: Odoo's HTML by its text, so formatting added
/// in Odoo is no difference and different words are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_are_compared_by_their_text() {
    let mut env = setup("v_notes", 17).await;
    env.insert_orders(0, 2, 1).await;
    env.db
        .client
        .batch_execute("UPDATE orders SET notes = 'Dock 2 & ramp' WHERE id = 1")
        .await
        .expect("notes");
    let mut w = env.spawn_worker(&["run"], &[]);
    env.wait_all_synced(WAIT, &mut [&mut w]).await;
    w.kill();
    let t = tracking_id(&env).await;
    for (order, html) in [(1, "<p>Dock <b>2</b> &amp; ramp</p>"), (2, "<p>Gate 7</p>")] {
        let po = xmlid_res_id(&env, "purchase.order", &format!("po_{t}_{order}")).await;
        env.odoo_call(
            "purchase.order",
            "write",
            json!([[po], {"notes": html}]),
            json!({}),
        )
        .await;
    }
    let pg = env.worker_client().await;
    let report = verify::verify(&pg, &env.odoo_client())
        .await
        .expect("verify");
    println!("{}", report.render_text());
    let s = &report.summary;
    assert_eq!(
        (s.compared, s.equal, s.notes_differences),
        (2, 1, 1),
        "{s:?}"
    );
    let o2 = report.order("2").expect("order 2 differs");
    assert!(o2.has(Kind::Notes), "{o2:#?}");
    let f = o2.finding("notes").expect("notes");
    assert_eq!(
        (f.local.clone(), f.odoo.clone()),
        (None, Some("Gate 7".into()))
    );
    assert!(
        report
            .render_text()
            .contains("NOTES     order 2 (PO-1, Odoo"),
        "{}",
        report.render_text()
    );
    env.finish().await;
}
