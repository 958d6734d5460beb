//! SQL requests (sync_order, batches, imports, await_job), settings, health and metrics.

use std::time::Duration;

use odoo_sync_tests::pg_cluster::{common_schema, db_error, TestDb};
use serde_json::json;
use tokio_postgres::Client;

async fn tracked(label: &str, key_type: &str) -> TestDb {
    let db = TestDb::new(label).await;
    db.client
        .batch_execute(&common_schema(key_type))
        .await
        .unwrap();
    db.client
        .execute(
            "SELECT odoo_sync.track_orders('orders', 'order_items')",
            &[],
        )
        .await
        .unwrap();
    db
}

async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(client: &Client, sql: &str) -> T {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Plays the worker for every ready job: succeed, or fail permanently when `fail` says so.
async fn work_all(client: &Client, fail: impl Fn(&str) -> bool) {
    let jobs = client
        .query("SELECT job_id, attempt_token, order_key, version FROM odoo_sync.claim_jobs('tw', 1000, '1 minute')", &[])
        .await
        .unwrap();
    for r in jobs {
        let (job, token, key): (i64, i64, Option<String>) = (r.get(0), r.get(1), r.get(2));
        let key = key.unwrap_or_default();
        if fail(&key) {
            client
                .execute(
                    "SELECT odoo_sync.fail_job($1, $2, '{\"message\": \"no such product\"}', true)",
                    &[&job, &token],
                )
                .await
                .unwrap();
        } else {
            let result = json!({"odoo_order_id": 10, "version": r.get::<_, Option<i64>>(3), "duration_ms": 12.5,
                                "warnings": ["price changed"]});
            client
                .execute(
                    "SELECT odoo_sync.complete_job($1, $2, $3)",
                    &[&job, &token, &result],
                )
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn sync_order_overloads_find_the_order_and_reuse_its_job() {
    let db = tracked("syncorder", "uuid").await;
    let id: uuid::Uuid = scalar(
        &db.client,
        "INSERT INTO orders (supplier_id) VALUES ('S') RETURNING id",
    )
    .await;
    work_all(&db.client, |_| false).await;
    let job: i64 = db
        .client
        .query_one("SELECT odoo_sync.sync_order($1::uuid)", &[&id])
        .await
        .unwrap()
        .get(0);
    let again: i64 = db
        .client
        .query_one("SELECT odoo_sync.sync_order($1::text)", &[&id.to_string()])
        .await
        .unwrap()
        .get(0);
    assert_eq!(job, again, "a second request joins the queued job");
    let status: String = scalar(&db.client, "SELECT sync_status FROM orders").await;
    assert_eq!(status, "PENDING_SYNC");

    for (sql, code, needle) in [
        (
            "SELECT odoo_sync.sync_order('00000000-0000-0000-0000-000000000000'::uuid)",
            "P0002",
            "not found",
        ),
        (
            "SELECT odoo_sync.sync_order('not-a-uuid')",
            "P0002",
            "not found",
        ),
        (
            "SELECT odoo_sync.sync_order(42::bigint)",
            "P0002",
            "not found",
        ),
        ("SELECT odoo_sync.sync_order(NULL::text)", "22004", "NULL"),
    ] {
        let err = db.client.query(sql, &[]).await.unwrap_err();
        let (c, m) = db_error(&err);
        assert_eq!(c, code, "{sql}");
        assert!(m.contains(needle), "{sql}: {m}");
    }
    assert_eq!(
        scalar::<i64>(&db.client, "SELECT count(*) FROM odoo_sync.jobs").await,
        1
    );
    db.finish().await;
}

/// A key in another spelling of its type (an uppercase uuid, a bigint with a sign, spaces or
/// leading zeros) is the same order: the request joins its job, and no second order (which
/// would become a second Odoo order) appears.
#[tokio::test]
async fn sync_order_takes_any_spelling_of_the_key_as_the_same_order() {
    for (key_type, spellings) in [
        ("uuid", vec!["upper"]),
        ("bigint", vec![" {k}", "0{k}", "+{k}", "{k} "]),
    ] {
        let db = tracked(&format!("syncspell_{key_type}"), key_type).await;
        let key: String = scalar(
            &db.client,
            "INSERT INTO orders (supplier_id) VALUES ('S') RETURNING id::text",
        )
        .await;
        work_all(&db.client, |_| false).await;
        let job: i64 = db
            .client
            .query_one("SELECT odoo_sync.sync_order($1::text)", &[&key])
            .await
            .unwrap()
            .get(0);
        for spelling in spellings {
            let other = if spelling == "upper" {
                key.to_uppercase()
            } else {
                spelling.replace("{k}", &key)
            };
            assert_ne!(other, key);
            let again: i64 = db
                .client
                .query_one("SELECT odoo_sync.sync_order($1::text)", &[&other])
                .await
                .unwrap()
                .get(0);
            assert_eq!(again, job, "{key_type} {other:?}");
        }
        assert_eq!(
            scalar::<i64>(&db.client, "SELECT count(*) FROM odoo_sync.order_state").await,
            1
        );
        assert_eq!(
            scalar::<i64>(&db.client, "SELECT count(*) FROM odoo_sync.jobs").await,
            1
        );
        db.finish().await;
    }
}

#[tokio::test]
async fn batch_sync_pending_and_batch_status() {
    let db = TestDb::new("batch").await;
    db.client
        .batch_execute(&common_schema("bigint"))
        .await
        .unwrap();
    // Orders that exist before tracking are NOT_SYNCED and have no job.
    db.client
        .batch_execute(
            "INSERT INTO orders (order_number, supplier_id) SELECT 'PO-' || g, 'S' FROM generate_series(1, 25) g;
             SELECT odoo_sync.track_orders('orders', 'order_items');",
        )
        .await
        .unwrap();
    let batch: i64 = scalar(&db.client, "SELECT odoo_sync.batch_sync_pending(10)").await;
    let row = db
        .client
        .query_one("SELECT * FROM odoo_sync.batch_status($1)", &[&batch])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>("total"), 10);
    assert_eq!(row.get::<_, i32>("pending"), 10);
    assert_eq!(row.get::<_, i32>("total_processed"), 0);
    assert_eq!(
        row.get::<_, Option<String>>("next_batch_token").as_deref(),
        Some("15 more waiting")
    );
    // The worker processes them; one order fails for good.
    let bad: String = scalar(&db.client, "SELECT min(order_key) FROM odoo_sync.jobs").await;
    work_all(&db.client, |k| k == bad).await;
    let row = db
        .client
        .query_one("SELECT * FROM odoo_sync.batch_status($1)", &[&batch])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>("total_processed"), 10);
    assert_eq!(row.get::<_, i32>("successful"), 9);
    assert_eq!(row.get::<_, i32>("failed"), 1);
    assert_eq!(row.get::<_, i32>("pending"), 0);
    // The next batches take the rest; the permanent failure is skipped, not retried.
    let b2: i64 = scalar(&db.client, "SELECT odoo_sync.batch_sync_pending(100)").await;
    let row = db
        .client
        .query_one("SELECT * FROM odoo_sync.batch_status($1)", &[&b2])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>("total"), 15);
    assert_eq!(row.get::<_, i32>("skipped"), 1);
    assert_eq!(row.get::<_, Option<String>>("next_batch_token"), None);
    for sql in [
        "SELECT odoo_sync.batch_sync_pending(0)",
        "SELECT odoo_sync.batch_sync_pending(-1)",
        "SELECT odoo_sync.batch_sync_pending(1000000)",
        "SELECT odoo_sync.batch_sync_pending(NULL)",
    ] {
        let err = db.client.query(sql, &[]).await.unwrap_err();
        assert_eq!(db_error(&err).0, "22023", "{sql}");
    }
    let err = db
        .client
        .query("SELECT * FROM odoo_sync.batch_status(999999)", &[])
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "P0002");
    assert_eq!(
        scalar::<i64>(&db.client, "SELECT count(*) FROM odoo_sync.batches").await,
        2,
        "refused calls made no batch"
    );
    db.finish().await;
}

#[tokio::test]
async fn import_orders_validates_its_filter() {
    let db = tracked("import", "uuid").await;
    let batch: i64 = db
        .client
        .query_one(
            "SELECT odoo_sync.import_orders($1)",
            &[&json!({"date_from": "2026-01-01", "date_to": "2026-03-31T23:59:59Z",
                      "states": ["purchase", "done", "purchase"], "partner_ids": [7, 3], "limit": 50})],
        )
        .await
        .unwrap()
        .get(0);
    let payload: serde_json::Value = db
        .client
        .query_one(
            "SELECT payload FROM odoo_sync.jobs WHERE batch_id = $1 AND kind = 'import'",
            &[&batch],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        payload["filter"],
        json!({"date_from": "2026-01-01 00:00:00", "date_to": "2026-03-31 23:59:59",
               "states": ["done", "purchase"], "partner_ids": [3, 7], "limit": 50})
    );
    let cases = [
        (
            json!({"dates_from": "2026-01-01"}),
            "22023",
            "unknown import filter key",
        ),
        (json!({"date_from": "yesterday"}), "22007", "ISO date"),
        (
            json!({"date_from": "2026-02-30"}),
            "22008",
            "not a valid date",
        ),
        (
            json!({"date_from": "2026-05-01", "date_to": "2026-01-01"}),
            "22023",
            "after date_to",
        ),
        (
            json!({"states": ["purchase", "shipped"]}),
            "22023",
            "unknown Odoo purchase order state",
        ),
        (json!({"states": "purchase"}), "22023", "non-empty array"),
        (
            json!({"partner_ids": [1, -2]}),
            "22023",
            "not a positive integer",
        ),
        (
            json!({"partner_ids": ["1) OR 1=1 --"]}),
            "22023",
            "not a positive integer",
        ),
        (
            json!({"states": ["purchase'); DROP TABLE orders; --"]}),
            "22023",
            "unknown Odoo purchase order state",
        ),
        (json!({"limit": 0}), "22023", "limit"),
        (json!({"limit": 1.5}), "22023", "limit"),
        (json!([1, 2]), "22023", "JSON object"),
    ];
    for (filter, code, needle) in cases {
        let err = db
            .client
            .query("SELECT odoo_sync.import_orders($1)", &[&filter])
            .await
            .unwrap_err();
        let (c, m) = db_error(&err);
        assert_eq!(c, code, "{filter}: {m}");
        assert!(m.contains(needle), "{filter}: {m}");
    }
    let err = db
        .client
        .query("SELECT odoo_sync.import_orders(NULL)", &[])
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "22023");
    assert_eq!(
        scalar::<i64>(&db.client, "SELECT count(*) FROM odoo_sync.batches").await,
        1
    );
    assert_eq!(
        scalar::<i64>(&db.client, "SELECT count(*) FROM odoo_sync.jobs").await,
        1
    );
    db.finish().await;
}

/// total, successful, failed, skipped and pending of `batch_status(batch)`.
async fn import_counts(client: &Client, batch: i64) -> Vec<i32> {
    let r = client
        .query_one(
            "SELECT total, successful, failed, skipped, pending FROM odoo_sync.batch_status($1)",
            &[&batch],
        )
        .await
        .unwrap();
    (0..5).map(|i| r.get::<_, i32>(i)).collect()
}

/// An import job that dies part way (an outage outlasting its attempts, a permanent error)
/// leaves the orders it did not get to: they count as failed, not as a success.
#[tokio::test]
async fn an_import_that_died_part_way_counts_what_it_left_as_failed() {
    let db = tracked("importdead", "bigint").await;
    let batch: i64 = scalar(
        &db.client,
        r#"SELECT odoo_sync.import_orders('{"date_from": "2026-01-01"}')"#,
    )
    .await;
    let claim = db
        .client
        .query_one(
            "SELECT job_id, attempt_token FROM odoo_sync.claim_jobs('w', 1, '1 minute')",
            &[],
        )
        .await
        .unwrap();
    let (job, token): (i64, i64) = (claim.get(0), claim.get(1));
    db.client
        .execute(
            r#"SELECT odoo_sync.report_progress($1, $2, '{"found": 500, "imported": 200, "failed": 1, "skipped": 4}')"#,
            &[&job, &token],
        )
        .await
        .unwrap();
    assert_eq!(
        import_counts(&db.client, batch).await,
        [500, 200, 1, 4, 1],
        "running"
    );
    let outcome: String = scalar(
        &db.client,
        &format!(
            r#"SELECT odoo_sync.fail_job({job}, {token}, '{{"message": "Odoo is down"}}', true)"#
        ),
    )
    .await;
    assert_eq!(outcome, "dead");
    assert_eq!(
        import_counts(&db.client, batch).await,
        [500, 200, 296, 4, 0],
        "the 295 orders it did not get to failed too"
    );
    db.finish().await;
}

#[tokio::test]
async fn sync_order_from_odoo_coalesces_per_odoo_order() {
    let db = tracked("pull", "uuid").await;
    let a: i64 = scalar(&db.client, "SELECT odoo_sync.sync_order_from_odoo(15)").await;
    let b: i64 = scalar(&db.client, "SELECT odoo_sync.sync_order_from_odoo(15)").await;
    assert_eq!(a, b);
    for sql in [
        "SELECT odoo_sync.sync_order_from_odoo(0)",
        "SELECT odoo_sync.sync_order_from_odoo(-3)",
        "SELECT odoo_sync.sync_order_from_odoo(NULL)",
    ] {
        let err = db.client.query(sql, &[]).await.unwrap_err();
        assert_eq!(db_error(&err).0, "22023", "{sql}");
    }
    let row = db
        .client
        .query_one("SELECT kind, odoo_id FROM odoo_sync.queue", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "pull");
    assert_eq!(row.get::<_, i32>(1), 15);
    db.finish().await;
}

#[tokio::test]
async fn await_job_returns_the_result_once_a_worker_finishes() {
    let db = tracked("await", "uuid").await;
    let id: uuid::Uuid = scalar(
        &db.client,
        "INSERT INTO orders (supplier_id) VALUES ('S') RETURNING id",
    )
    .await;
    let job: i64 = scalar(&db.client, "SELECT job_id FROM odoo_sync.order_status").await;
    let worker = db.connect().await;
    let waiter = tokio::spawn({
        let client = db.connect().await;
        async move {
            client
                .query_one(
                    "SELECT * FROM odoo_sync.await_job($1, '10 seconds')",
                    &[&job],
                )
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    work_all(&worker, |_| false).await;
    let row = waiter.await.unwrap();
    assert!(row.get::<_, bool>("success"));
    assert_eq!(row.get::<_, String>("local_order_id"), id.to_string());
    assert_eq!(row.get::<_, i32>("odoo_order_id"), 10);
    assert_eq!(row.get::<_, String>("operation"), "CREATE");
    assert_eq!(
        row.get::<_, Vec<String>>("warnings"),
        vec!["price changed".to_string()]
    );
    // A job nobody works on times out with a clear error.
    db.client
        .execute("UPDATE orders SET notes = 'again'", &[])
        .await
        .unwrap();
    let job2: i64 = scalar(&db.client, "SELECT job_id FROM odoo_sync.order_status").await;
    let err = db
        .client
        .query(
            "SELECT * FROM odoo_sync.await_job($1, '200 milliseconds')",
            &[&job2],
        )
        .await
        .unwrap_err();
    let (code, msg) = db_error(&err);
    assert_eq!(code, "57014");
    assert!(msg.contains("did not finish"), "{msg}");
    let err = db
        .client
        .query("SELECT * FROM odoo_sync.await_job(987654)", &[])
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "P0002");
    db.finish().await;
}

#[tokio::test]
async fn settings_are_validated_and_atomic() {
    let db = TestDb::new("settings").await;
    let before: serde_json::Value = scalar(&db.client, "SELECT odoo_sync.get_settings()").await;
    assert_eq!(before["max_attempts"], 8);
    assert_eq!(before["partner_strategies"], json!(["ref", "name"]));
    let cases = [
        (
            json!({"max_attempts": 5, "bogus": 1}),
            "unknown setting \"bogus\"",
        ),
        (json!({"max_attempts": 0}), "out of range"),
        (json!({"max_attempts": 1000}), "out of range"),
        (json!({"max_attempts": 2.5}), "whole number"),
        (json!({"max_attempts": "5"}), "must be a number"),
        (json!({"realtime_enabled": "yes"}), "true or false"),
        (
            json!({"partner_strategies": ["ref", "magic"]}),
            "unknown strategy",
        ),
        (json!({"partner_strategies": ["ref", "ref"]}), "twice"),
        (json!({"lease_seconds": -1}), "out of range"),
    ];
    for (change, needle) in cases {
        let err = db
            .client
            .query("SELECT odoo_sync.update_settings($1)", &[&change])
            .await
            .unwrap_err();
        let (code, msg) = db_error(&err);
        assert_eq!(code, "22023", "{change}");
        assert!(msg.contains(needle), "{change}: {msg}");
    }
    for bad in [
        "SELECT odoo_sync.update_settings(NULL)",
        "SELECT odoo_sync.update_settings('[1]')",
    ] {
        assert_eq!(
            db_error(&db.client.query(bad, &[]).await.unwrap_err()).0,
            "22023"
        );
    }
    let after: serde_json::Value = scalar(&db.client, "SELECT odoo_sync.get_settings()").await;
    assert_eq!(before, after, "refused changes changed nothing");
    let changed: serde_json::Value = db
        .client
        .query_one(
            "SELECT odoo_sync.update_settings($1)",
            &[&json!({"max_attempts": 3, "product_strategies": ["name"]})],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(changed["max_attempts"], 3);
    assert_eq!(changed["product_strategies"], json!(["name"]));
    let reset: serde_json::Value = db
        .client
        .query_one(
            "SELECT odoo_sync.update_settings('{\"max_attempts\": null}')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reset["max_attempts"], 8, "null resets to the default");
    db.client
        .execute("SELECT odoo_sync.start_realtime()", &[])
        .await
        .unwrap();
    assert_eq!(
        scalar::<serde_json::Value>(
            &db.client,
            "SELECT odoo_sync.get_settings()->'realtime_enabled'"
        )
        .await,
        json!(true)
    );
    db.client
        .execute("SELECT odoo_sync.stop_realtime()", &[])
        .await
        .unwrap();
    assert_eq!(
        scalar::<serde_json::Value>(
            &db.client,
            "SELECT odoo_sync.get_settings()->'realtime_enabled'"
        )
        .await,
        json!(false)
    );
    let described: i64 = scalar(
        &db.client,
        "SELECT count(*) FROM odoo_sync.describe_settings() WHERE description <> ''",
    )
    .await;
    assert_eq!(
        described,
        scalar::<i64>(&db.client, "SELECT count(*) FROM odoo_sync.setting_spec").await
    );
    db.finish().await;
}

#[tokio::test]
async fn health_follows_workers_and_the_queue() {
    let db = tracked("health", "uuid").await;
    let h = db
        .client
        .query_one("SELECT * FROM odoo_sync.health()", &[])
        .await
        .unwrap();
    assert!(!h.get::<_, bool>("is_healthy"), "no worker: not healthy");
    assert_eq!(h.get::<_, String>("odoo_connection_status"), "DISCONNECTED");
    assert_eq!(h.get::<_, String>("cache_status"), "UNAVAILABLE");
    assert_eq!(h.get::<_, String>("queue_status"), "HEALTHY");

    db.client
        .execute("INSERT INTO orders (supplier_id) VALUES ('S')", &[])
        .await
        .unwrap();
    let h = db
        .client
        .query_one("SELECT * FROM odoo_sync.health()", &[])
        .await
        .unwrap();
    assert_eq!(
        h.get::<_, String>("queue_status"),
        "FAILED",
        "work waiting and no worker alive"
    );

    let settings: serde_json::Value = db
        .client
        .query_one(
            "SELECT odoo_sync.heartbeat('w1', $1)",
            &[&json!({"odoo_status": "CONNECTED", "cache_status": "HEALTHY", "pid": 42})],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        settings["max_attempts"], 8,
        "heartbeat hands the settings to the worker"
    );
    let h = db
        .client
        .query_one("SELECT * FROM odoo_sync.health()", &[])
        .await
        .unwrap();
    assert_eq!(h.get::<_, String>("odoo_connection_status"), "CONNECTED");
    assert_eq!(h.get::<_, String>("queue_status"), "HEALTHY");
    assert!(h.get::<_, bool>("is_healthy"));

    db.client
        .execute(
            "SELECT odoo_sync.update_settings('{\"backlog_max_jobs\": 1}')",
            &[],
        )
        .await
        .unwrap();
    db.client
        .execute(
            "INSERT INTO orders (supplier_id) SELECT 'S' FROM generate_series(1, 3)",
            &[],
        )
        .await
        .unwrap();
    let h = db
        .client
        .query_one("SELECT * FROM odoo_sync.health()", &[])
        .await
        .unwrap();
    assert_eq!(h.get::<_, String>("queue_status"), "BACKLOGGED");

    // Two failures after a success: consecutive_failures 2, error rate 2 of 3 attempts.
    let jobs = db
        .client
        .query(
            "SELECT job_id, attempt_token FROM odoo_sync.claim_jobs('w1', 3, '1 minute')",
            &[],
        )
        .await
        .unwrap();
    db.client
        .execute(
            "SELECT odoo_sync.complete_job($1, $2, '{\"odoo_order_id\": 1}')",
            &[&jobs[0].get::<_, i64>(0), &jobs[0].get::<_, i64>(1)],
        )
        .await
        .unwrap();
    for r in &jobs[1..] {
        db.client
            .execute(
                "SELECT odoo_sync.fail_job($1, $2, '{\"message\": \"timeout\"}')",
                &[&r.get::<_, i64>(0), &r.get::<_, i64>(1)],
            )
            .await
            .unwrap();
    }
    let h = db
        .client
        .query_one("SELECT * FROM odoo_sync.health()", &[])
        .await
        .unwrap();
    assert_eq!(h.get::<_, i32>("consecutive_failures"), 2);
    assert_eq!(
        h.get::<_, rust_decimal::Decimal>("error_rate").to_string(),
        "66.67"
    );
    assert!(h
        .get::<_, Option<std::time::SystemTime>>("last_successful_sync")
        .is_some());
    // Jobs waiting for their next retry (as during an Odoo outage) are a backlog too.
    db.client
        .batch_execute(
            "SELECT odoo_sync.update_settings('{\"backlog_max_jobs\": 1000, \"backlog_max_age_seconds\": 60}');
             UPDATE odoo_sync.jobs SET created_at = now() - interval '2 minutes', run_after = now() + interval '1 minute';",
        )
        .await
        .unwrap();
    let (ready, status): (i64, String) = {
        let r = db
            .client
            .query_one(
                "SELECT (SELECT count(*) FROM odoo_sync.jobs WHERE run_after <= now()),
                        (SELECT queue_status FROM odoo_sync.health())",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((ready, status.as_str()), (0, "BACKLOGGED"));

    let m = db
        .client
        .query_one("SELECT * FROM odoo_sync.sync_metrics('1 hour')", &[])
        .await
        .unwrap();
    assert_eq!(m.get::<_, i64>("attempts"), 3);
    assert_eq!(m.get::<_, i64>("succeeded"), 1);
    assert_eq!(m.get::<_, i64>("failed"), 2);
    assert!(m
        .get::<_, Option<rust_decimal::Decimal>>("p50_duration_ms")
        .is_some());
    let last = db
        .client
        .query_one("SELECT * FROM odoo_sync.last_sync_status()", &[])
        .await
        .unwrap();
    assert!(!last.get::<_, bool>("success"));
    assert_eq!(
        last.get::<_, serde_json::Value>("error")["message"],
        "timeout"
    );
    let err = db
        .client
        .query("SELECT * FROM odoo_sync.sync_metrics('-1 hour')", &[])
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "22023");
    let alive: bool = scalar(
        &db.client,
        "SELECT alive FROM odoo_sync.workers WHERE worker_id = 'w1'",
    )
    .await;
    assert!(alive);
    db.finish().await;
}

#[tokio::test]
async fn event_history_lists_an_orders_events_in_order() {
    let db = tracked("history", "text").await;
    db.client
        .batch_execute(
            "INSERT INTO orders (id, supplier_id) VALUES ('h-1', 'S');
             INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES ('h-1', 'P', 1, 2);
             UPDATE orders SET notes = 'n' WHERE id = 'h-1';",
        )
        .await
        .unwrap();
    let rows = db
        .client
        .query(
            "SELECT event_type, id, payload->>'table' FROM odoo_sync.event_history('h-1')",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(2))).collect();
    let want = [
        ("ORDER_CREATED", "orders"),
        ("ORDER_UPDATED", "items"),
        ("ORDER_UPDATED", "orders"),
    ];
    assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
    let ids: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");
    db.finish().await;
}

#[tokio::test]
async fn histories_take_the_order_key_as_its_column_is_typed() {
    // A uuid or bigint key column passes straight in, as with sync_order(o.id).
    for (key_type, key) in [
        ("uuid", "'6f1e9d4a-1b2c-4d3e-8f90-123456789abc'::uuid"),
        ("bigint", "42::bigint"),
    ] {
        let db = tracked(&format!("history_{key_type}"), key_type).await;
        db.client
            .batch_execute(&format!(
                "INSERT INTO orders (id, supplier_id) VALUES ({key}, 'S');
                 INSERT INTO odoo_sync.conflicts (tracking_id, order_key, conflict_type, field_diff)
                 SELECT id, {key}::text, 'CONCURRENT_MODIFICATION', '[]' FROM odoo_sync.tracked_tables;"
            ))
            .await
            .unwrap();
        let events: i64 = scalar(
            &db.client,
            "SELECT count(*) FROM odoo_sync.event_history((SELECT id FROM orders))",
        )
        .await;
        assert_eq!(events, 1, "{key_type}");
        let conflicts: i64 = scalar(
            &db.client,
            "SELECT count(*) FROM odoo_sync.conflict_history((SELECT id FROM orders))",
        )
        .await;
        assert_eq!(conflicts, 1, "{key_type}");
        // The text form finds the same rows.
        let by_text: i64 = scalar(
            &db.client,
            &format!("SELECT count(*) FROM odoo_sync.event_history({key}::text)"),
        )
        .await;
        assert_eq!(by_text, 1, "{key_type}");
        db.finish().await;
    }
}

#[tokio::test]
async fn dropping_a_tracked_table_removes_its_tracking() {
    let db = tracked("req_drop", "bigint").await;
    db.client
        .batch_execute(
            "CREATE TABLE orders2 (LIKE orders INCLUDING ALL);
             CREATE TABLE items2 (LIKE order_items INCLUDING ALL);
             SELECT odoo_sync.track_orders('orders2', 'items2');
             INSERT INTO orders (id, supplier_id) VALUES (1, 'S');
             INSERT INTO orders2 (id, supplier_id) VALUES (2, 'S');
             DROP TABLE items2;",
        )
        .await
        .unwrap();
    // Dropping a column is not dropping the table: that tracking stays.
    db.client
        .batch_execute(
            "ALTER TABLE orders ADD COLUMN scratch int; ALTER TABLE orders DROP COLUMN scratch;",
        )
        .await
        .unwrap();
    // The pair's tracking is gone and the orders table of the pair no longer captures.
    let trackings: i64 = scalar(&db.client, "SELECT count(*) FROM odoo_sync.tracked_tables").await;
    assert_eq!(trackings, 1);
    let triggers: i64 = scalar(
        &db.client,
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders2'::regclass AND NOT tgisinternal",
    )
    .await;
    assert_eq!(triggers, 0);
    db.client
        .execute("UPDATE orders2 SET notes = 'x'", &[])
        .await
        .unwrap();
    // The other pair still works.
    let job: i64 = scalar(&db.client, "SELECT odoo_sync.sync_order(1::bigint)").await;
    assert!(job > 0);
    let err = db
        .client
        .query_one("SELECT odoo_sync.sync_order(2::bigint)", &[])
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "P0002");
    db.finish().await;
}
