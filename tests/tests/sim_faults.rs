//! Fault injection: each fault does what it says, draws are reproducible, and clearing works.

mod sim_support;

use odoo_sync_tests::sim::client::Client;
use serde_json::{json, Value};
use sim_support::*;
use std::time::{Duration, Instant};

async fn set_faults(o: &Odoo, spec: Value) -> Value {
    let r = o.c.post("/__sim/faults", &spec).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    r.body()
}

async fn login(c: &Client) -> anyhow::Result<Value> {
    c.jsonrpc("common", "login", json!([DB, "admin", PASSWORD]))
        .await
}

#[tokio::test]
async fn latency_is_added_to_odoo_requests_only() {
    let o = start().await;
    let state = set_faults(&o, json!({"latency_ms": 250})).await;
    assert_eq!(state["latency_ms"], 250);
    let t = Instant::now();
    assert_eq!(login(&o.c).await.unwrap()["result"], 2);
    assert!(t.elapsed() >= Duration::from_millis(250));
    let t = Instant::now();
    o.c.get("/__sim/stats").await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "control API is not slowed"
    );
}

#[tokio::test]
async fn error_kinds_502_and_503() {
    let o = start().await;
    set_faults(&o, json!({"error_rate": 1.0, "error_kind": "502"})).await;
    let r =
        o.c.post(
            "/jsonrpc",
            &json!({"params": {"service": "common", "method": "version", "args": []}}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 502);
    set_faults(&o, json!({"error_kind": "503"})).await;
    let r = o.j2("res.partner", "search", json!({"domain": []})).await;
    assert_eq!(r.status, 503);
    // Failed before doing anything: nothing was counted.
    assert_eq!(
        o.c.get("/__sim/stats").await.unwrap().body(),
        json!({"total": 0, "calls": {}})
    );
}

#[tokio::test]
async fn error_kind_reset_resets_the_connection() {
    let o = start().await;
    set_faults(&o, json!({"error_rate": 1.0, "error_kind": "reset"})).await;
    let err = login(&Client::new(&o.handle.url()))
        .await
        .expect_err("no reply");
    let text = format!("{err:?}").to_lowercase();
    assert!(
        text.contains("reset") || text.contains("closed") || text.contains("incomplete"),
        "{text}"
    );
}

#[tokio::test]
async fn error_kind_timeout_never_answers() {
    let o = start().await;
    set_faults(
        &o,
        json!({"error_rate": 1.0, "error_kind": "timeout", "timeout_ms": 2000}),
    )
    .await;
    let waited = tokio::time::timeout(Duration::from_millis(300), login(&o.c)).await;
    assert!(waited.is_err(), "the client had to give up");
}

#[tokio::test]
async fn error_kind_serialization_is_an_odoo_error() {
    let o = start().await;
    set_faults(
        &o,
        json!({"error_rate": 1.0, "error_kind": "serialization"}),
    )
    .await;
    let env = o
        .call("res.partner", "search", json!([[]]), json!({}))
        .await;
    assert_rpc_error(
        &env,
        0,
        "psycopg2.errors.SerializationFailure",
        "could not serialize access due to concurrent update",
    );
    let r = o.j2("res.partner", "search", json!({"domain": []})).await;
    assert_json2_error(
        &r,
        500,
        "psycopg2.errors.SerializationFailure",
        "could not serialize access due to concurrent update",
    );
}

/// On `load` the same fault is what Odoo's `load` makes of a concurrency error: it flushes each
/// record in a savepoint, so the error becomes a message of a successful call that wrote
/// nothing.
#[tokio::test]
async fn error_kind_serialization_on_load_is_a_message_of_load() {
    let o = start_version(19).await;
    set_faults(
        &o,
        json!({"error_rate": 1.0, "error_kind": "serialization"}),
    )
    .await;
    let fields = json!(["id", "partner_id/.id"]);
    let data = json!([["__odoo_sync__.po_1_x", "1"]]);
    let env = o
        .call("purchase.order", "load", json!([fields, data]), json!({}))
        .await;
    let j2 = o
        .j2(
            "purchase.order",
            "load",
            json!({"fields": fields, "data": data}),
        )
        .await;
    assert_eq!(j2.status, 200, "{}", j2.text);
    let j2 = j2.json.expect("a JSON body");
    for result in [&env["result"], &j2] {
        assert_eq!(result["ids"], json!(false), "{env}");
        assert_eq!(result["messages"][0]["type"], "error");
        assert_eq!(result["messages"][0]["record"], 0);
        assert_eq!(
            result["messages"][0]["message"],
            "could not serialize access due to concurrent update"
        );
    }
    assert_eq!(o.c.delete("/__sim/faults").await.unwrap().status, 200);
    let count = o
        .call("purchase.order", "search_count", json!([[]]), json!({}))
        .await;
    assert_eq!(count["result"], 0, "nothing was written");
}

#[tokio::test]
async fn error_rate_draws_are_reproducible_with_a_seed() {
    let o = start().await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        set_faults(
            &o,
            json!({"error_rate": 0.5, "error_kind": "503", "seed": 7}),
        )
        .await;
        let mut outcomes = Vec::new();
        for _ in 0..40 {
            let r =
                o.c.post(
                    "/jsonrpc",
                    &json!({"params": {"service": "common", "method": "version", "args": []}}),
                )
                .await
                .unwrap();
            outcomes.push(r.status);
        }
        runs.push(outcomes);
    }
    assert_eq!(runs[0], runs[1]);
    let failed = runs[0].iter().filter(|s| **s == 503).count();
    assert!((8..=32).contains(&failed), "about half fail: {failed}");
}

#[tokio::test]
async fn drop_after_commit_applies_the_write_then_drops() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    set_faults(&o, json!({"drop_after_commit": 1})).await;
    // Reads do not use the token.
    assert_eq!(
        o.ok("purchase.order", "search_count", json!([[]]), json!({}))
            .await,
        0
    );
    let lost =
        o.c.execute_kw(
            DB,
            UID,
            PASSWORD,
            "purchase.order",
            "create",
            json!([{"partner_id": gemini, "origin": "X-1"}]),
            json!({}),
        )
        .await;
    assert!(lost.is_err(), "no reply: {lost:?}");
    // ... but the order was committed.
    assert_eq!(
        o.ok(
            "purchase.order",
            "search_count",
            json!([[["origin", "=", "X-1"]]]),
            json!({})
        )
        .await,
        1
    );
    // The next write answers normally.
    let id = o
        .ok(
            "purchase.order",
            "create",
            json!([{"partner_id": gemini}]),
            json!({}),
        )
        .await;
    assert!(id.is_i64());
    assert_eq!(
        o.c.get("/__sim/faults").await.unwrap().body()["drop_after_commit"],
        0
    );
}

/// `fail_calls`: the next calls of one model/method fail, over JSON-RPC and JSON-2 alike,
/// with nothing written, while other calls go through; a bad name is refused.
#[tokio::test]
async fn fail_calls_fails_the_chosen_calls_only() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let state = set_faults(&o, json!({"fail_calls": {"purchase.order.create": 2}})).await;
    assert_eq!(state["fail_calls"], json!({"purchase.order.create": 2}));
    let create = json!([{"partner_id": gemini, "origin": "F-1"}]);
    let rpc =
        o.c.execute_kw(
            DB,
            UID,
            PASSWORD,
            "purchase.order",
            "create",
            create.clone(),
            json!({}),
        )
        .await;
    assert!(rpc.is_err(), "JSON-RPC create fails: {rpc:?}");
    let j2 = o
        .j2("purchase.order", "create", json!({"vals_list": create}))
        .await;
    assert_eq!(j2.status, 503, "JSON-2 create fails: {}", j2.text);
    // Another method of the same model is not touched.
    assert_eq!(
        o.ok("purchase.order", "search_count", json!([[]]), json!({}))
            .await,
        0,
        "nothing was written"
    );
    let id = o.ok("purchase.order", "create", create, json!({})).await;
    assert!(id.is_i64(), "the third create goes through: {id}");
    let state = o.c.get("/__sim/faults").await.unwrap().body();
    assert_eq!(state["fail_calls"], json!({}));
    assert_eq!(state["failed_calls"], 2);

    let r =
        o.c.post("/__sim/faults", &json!({"fail_calls": {"create": 1}}))
            .await
            .unwrap();
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("model.method"), "{}", r.text);
    assert_eq!(
        o.c.get("/__sim/faults").await.unwrap().body()["fail_calls"],
        json!({})
    );
}

/// `drop_rate`: about that share of writes is committed without a reply, reads are never
/// dropped, and every drop is counted.
#[tokio::test]
async fn drop_rate_drops_a_share_of_committed_writes_and_counts_them() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    set_faults(&o, json!({"drop_rate": 0.5, "seed": 7})).await;
    for _ in 0..10 {
        o.ok("purchase.order", "search_count", json!([[]]), json!({}))
            .await;
    }
    let mut lost = 0;
    for n in 0..40 {
        let r =
            o.c.execute_kw(
                DB,
                UID,
                PASSWORD,
                "purchase.order",
                "create",
                json!([{"partner_id": gemini, "origin": format!("D-{n}")}]),
                json!({}),
            )
            .await;
        if r.is_err() {
            lost += 1;
        }
    }
    assert!((8..=32).contains(&lost), "about half dropped: {lost}");
    // Every write happened, answered or not.
    assert_eq!(
        o.ok("purchase.order", "search_count", json!([[]]), json!({}))
            .await,
        40
    );
    let state = o.c.get("/__sim/faults").await.unwrap().body();
    assert_eq!(state["dropped"], lost);
    assert_eq!(state["drop_rate"], 0.5);
    let r =
        o.c.post("/__sim/faults", &json!({"drop_rate": 1.5}))
            .await
            .unwrap();
    assert_eq!(r.status, 400, "{}", r.text);
}

#[tokio::test]
async fn outage_answers_503_for_its_duration() {
    let o = start().await;
    set_faults(&o, json!({"outage_seconds": 0.4})).await;
    let r =
        o.c.post(
            "/jsonrpc",
            &json!({"params": {"service": "common", "method": "version", "args": []}}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(
        o.j2("res.partner", "search", json!({"domain": []}))
            .await
            .status,
        503
    );
    // Requests refused by the outage are counted (they never reach the call counters).
    assert_eq!(o.c.get("/__sim/faults").await.unwrap().body()["refused"], 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(login(&o.c).await.unwrap()["result"], 2);
}

#[tokio::test]
async fn delete_clears_faults_and_bad_specs_are_rejected() {
    let o = start().await;
    set_faults(&o, json!({"error_rate": 1.0, "error_kind": "503", "latency_ms": 10, "drop_after_commit": 3, "outage_seconds": 60})).await;
    let cleared = o.c.delete("/__sim/faults").await.unwrap();
    assert_eq!(cleared.status, 200);
    assert_eq!(cleared.body()["error_rate"], 0.0);
    assert_eq!(cleared.body()["drop_after_commit"], 0);
    assert_eq!(cleared.body()["outage_seconds"], 0.0);
    assert_eq!(login(&o.c).await.unwrap()["result"], 2);
    for bad in [
        json!({"error_kind": "404"}),
        json!({"error_rate": 2}),
        json!({"latency": 5}),
    ] {
        let r = o.c.post("/__sim/faults", &bad).await.unwrap();
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.body()["error"].is_string());
    }
}
