//! `odoo-sync-worker import`: the real binary against real PostgreSQL and the Odoo simulator.
//! Orders confirmed in Odoo arrive in the tracked tables, the progress and the summary come
//! from `odoo_sync.batch_status`, a second run skips what is there; refusals (a role without
//! odoo_sync_admin, a bad filter, an Odoo user without access) end with a non-zero status and
//! a message that says what to do.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{setup, Env};

/// Creates and confirms an order in the simulator for the vendor with `vendor_ref`.
async fn odoo_order(env: &Env, vendor_ref: &str, product_code: &str, qty: f64) -> i64 {
    let call = |model: &'static str, method: &'static str, args: Value| {
        let ctl = &env.ctl;
        async move {
            let reply = ctl
                .execute_kw("odoo", 2, &env.api_key, model, method, args, json!({}))
                .await
                .expect("execute_kw");
            assert!(reply.get("error").is_none(), "{model}.{method}: {reply}");
            reply.get("result").cloned().unwrap_or(Value::Null)
        }
    };
    let partner = call("res.partner", "search", json!([[["ref", "=", vendor_ref]]])).await[0]
        .as_i64()
        .expect("vendor");
    let product = call(
        "product.product",
        "search",
        json!([[["default_code", "=", product_code]]]),
    )
    .await[0]
        .as_i64()
        .expect("product");
    let id = call(
        "purchase.order",
        "create",
        json!([{"partner_id": partner, "order_line": [[0, 0, {"product_id": product, "product_qty": qty, "price_unit": 12.5}]]}]),
    )
    .await
    .as_i64()
    .expect("order id");
    call("purchase.order", "button_confirm", json!([[id]])).await;
    id
}

fn import(env: &Env, url: &str, args: &[&str], extra: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    let mut vars = vec![("DATABASE_URL", url)];
    vars.extend_from_slice(extra);
    let mut w = env.spawn_worker(&all, &vars);
    let status = w
        .wait_for_exit(Duration::from_secs(120))
        .expect("import ends within 120 s");
    (status.code(), w.output())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_shows_progress_and_a_summary() {
    let mut env = setup("imp_ok", 19).await;
    let role = env
        .db
        .create_role("importer", &["odoo_sync_admin", "odoo_sync_worker"])
        .await;
    let url = format!("{} user={role}", env.db.conninfo());
    for (vendor, product) in [
        ("V-GEMINI", "FURN_7777"),
        ("V-WOOD", "FURN_0269"),
        ("V-AZURE", "FURN_8220"),
    ] {
        odoo_order(&env, vendor, product, 3.0).await;
    }

    let (code, out) = import(
        &env,
        &url,
        &["--since", "2000-01-01", "--state", "purchase"],
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("import batch "), "{out}");
    assert!(
        out.contains(r#"started: {"date_from":"2000-01-01","states":["purchase"]}"#),
        "{out}"
    );
    // Not a terminal: plain progress lines, then the summary.
    assert!(out.contains("imported 3/3, failed 0, skipped 0\n"), "{out}");
    assert!(
        out.contains(": found 3, imported 3, failed 0, skipped 0 in "),
        "{out}"
    );
    assert_eq!(env.count("SELECT count(*) FROM orders").await, 3, "{out}");

    // The same import again, of any date: everything is there already.
    let (code, out) = import(&env, &url, &["--all"], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("started: {}"), "{out}");
    assert!(
        out.contains(": found 3, imported 0, failed 0, skipped 3 in "),
        "{out}"
    );
    // No date range at all must be asked for.
    let (code, out) = import(&env, &url, &[], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--since <DATE>"), "{out}");
    let (code, out) = import(&env, &url, &["--all", "--since", "2000-01-01"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("cannot be used with"), "{out}");
    assert_eq!(env.count("SELECT count(*) FROM orders").await, 3);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_explains_refusals() {
    let mut env = setup("imp_no", 19).await;
    // The worker role may work the queue but not request imports.
    let (code, out) = import(
        &env,
        &env.worker_url.clone(),
        &["--since", "2026-01-01"],
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("may not request imports (odoo_sync.import_orders needs odoo_sync_admin): as a superuser, GRANT odoo_sync_admin TO"),
        "{out}"
    );

    let role = env
        .db
        .create_role("importer", &["odoo_sync_admin", "odoo_sync_worker"])
        .await;
    let url = format!("{} user={role}", env.db.conninfo());
    let (code, out) = import(
        &env,
        &url,
        &["--since", "2026-01-01", "--state", "ordered"],
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(r#"odoo_sync.import_orders refused the filter {"date_from":"2026-01-01","states":["ordered"]}: unknown Odoo purchase order state "ordered""#),
        "{out}"
    );
    assert!(
        out.contains("States: draft, sent, to approve, purchase, done, cancel."),
        "{out}"
    );
    let (code, out) = import(&env, &url, &["--since", "2026-02-30"], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(r#"import filter "date_from" is not a valid date"#),
        "{out}"
    );
    let (code, out) = import(&env, &url, &["--until", "2026-01-01"], &[]);
    assert_eq!(code, Some(2), "clap wants --since: {out}");
    assert!(out.contains("--since <DATE>"), "{out}");

    // An Odoo user who may not read purchase orders: the batch fails, and the summary says why.
    let (code, out) = import(
        &env,
        &url,
        &["--since", "2000-01-01"],
        &[("ODOO_USER", "viewer"), ("ODOO_API_KEY", "viewer-api-key")],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(", failed 1, "), "{out}");
    assert!(out.contains("AccessError"), "{out}");
    assert!(out.contains("order(s) of import batch"), "{out}");
    assert_eq!(env.count("SELECT count(*) FROM orders").await, 0);
    env.finish().await;
}
