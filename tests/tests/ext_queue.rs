//! The job queue: claims, leases, fencing tokens, retries with backoff, dead letters.

use std::collections::HashSet;
use std::time::Duration;

use odoo_sync_tests::pg_cluster::{common_schema, db_error, TestDb};
use serde_json::json;
use tokio_postgres::Client;

async fn db_with_orders(label: &str, n: i64) -> TestDb {
    let db = TestDb::new(label).await;
    db.client
        .batch_execute(&common_schema("bigint"))
        .await
        .unwrap();
    db.client
        .batch_execute(&format!(
            "SELECT odoo_sync.track_orders('orders', 'order_items');
             INSERT INTO orders (order_number, supplier_id) SELECT 'PO-' || g, 'S1' FROM generate_series(1, {n}) g;"
        ))
        .await
        .unwrap();
    db
}

async fn claim(client: &Client, worker: &str, max: i32, lease: &str) -> Vec<(i64, i64, String)> {
    client
        .query(
            "SELECT job_id, attempt_token, order_key FROM odoo_sync.claim_jobs($1, $2, $3::text::interval)",
            &[&worker, &max, &lease],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

async fn scalar_i64(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn concurrent_claimers_get_disjoint_jobs() {
    let db = db_with_orders("claimers", 60).await;
    let (a, b) = (db.connect().await, db.connect().await);
    let mut seen = HashSet::new();
    let mut total = 0;
    // Several rounds of two workers claiming at the same moment.
    for _ in 0..4 {
        let (ja, jb) = tokio::join!(
            claim(&a, "wa", 10, "1 minute"),
            claim(&b, "wb", 10, "1 minute")
        );
        for (job, _, _) in ja.iter().chain(jb.iter()) {
            assert!(seen.insert(*job), "job {job} handed out twice");
        }
        total += ja.len() + jb.len();
    }
    assert_eq!(total, 60, "every job claimed exactly once");
    assert!(claim(&a, "wa", 10, "1 minute").await.is_empty());
    let owners = scalar_i64(
        &db.client,
        "SELECT count(DISTINCT lease_owner) FROM odoo_sync.jobs",
    )
    .await;
    assert_eq!(owners, 2);
    db.finish().await;
}

#[tokio::test]
async fn expired_lease_is_handed_out_again_and_the_old_token_is_refused() {
    let db = db_with_orders("lease", 1).await;
    let first = claim(&db.client, "w1", 1, "1 second").await;
    assert_eq!(first.len(), 1);
    assert!(
        claim(&db.client, "w2", 1, "1 second").await.is_empty(),
        "leased job is not re-handed early"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = claim(&db.client, "w2", 1, "1 minute").await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].0, first[0].0, "same job");
    assert_ne!(second[0].1, first[0].1, "new attempt token");

    let stale = db
        .client
        .query_one(
            "SELECT odoo_sync.complete_job($1, $2, '{\"odoo_order_id\": 1}')",
            &[&first[0].0, &first[0].1],
        )
        .await
        .unwrap_err();
    let (code, message) = db_error(&stale);
    assert_eq!(code, "55000");
    assert!(message.contains("stale attempt token"), "{message}");
    let stale_fail = db
        .client
        .query_one(
            "SELECT odoo_sync.fail_job($1, $2, '{\"message\": \"x\"}')",
            &[&first[0].0, &first[0].1],
        )
        .await
        .unwrap_err();
    assert_eq!(db_error(&stale_fail).0, "55000");
    // The job is still running for w2, untouched by the refused calls.
    let row = db
        .client
        .query_one(
            "SELECT state, lease_owner, attempts FROM odoo_sync.jobs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "running");
    assert_eq!(row.get::<_, String>(1), "w2");
    assert_eq!(row.get::<_, i32>(2), 2);
    // The current holder finishes it.
    let done: String = db
        .client
        .query_one(
            "SELECT odoo_sync.complete_job($1, $2, '{\"odoo_order_id\": 1}')",
            &[&second[0].0, &second[0].1],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(done, "done");
    db.finish().await;
}

#[tokio::test]
async fn transient_failures_back_off_then_dead_letter_after_max_attempts() {
    let db = db_with_orders("backoff", 1).await;
    db.client
        .execute("SELECT odoo_sync.update_settings('{\"max_attempts\": 3, \"backoff_base_seconds\": 0.2, \"backoff_max_seconds\": 1}')", &[])
        .await
        .unwrap();
    let error = json!({"type": "Transport", "message": "connection reset by Odoo"});
    let mut delays = Vec::new();
    for attempt in 1..=3 {
        let mut jobs = claim(&db.client, "w", 1, "1 minute").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while jobs.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "job never became ready again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            jobs = claim(&db.client, "w", 1, "1 minute").await;
        }
        let (job, token, _) = jobs[0];
        let outcome: String = db
            .client
            .query_one(
                "SELECT odoo_sync.fail_job($1, $2, $3)",
                &[&job, &token, &error],
            )
            .await
            .unwrap()
            .get(0);
        if attempt < 3 {
            assert_eq!(outcome, "retry");
            let delay: f64 = db
                .client
                .query_one(
                    "SELECT extract(epoch FROM run_after - now())::float8 FROM odoo_sync.jobs",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            delays.push(delay);
            let status: String = db
                .client
                .query_one("SELECT sync_status FROM orders", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(status, "SYNC_FAILED");
            assert!(
                claim(&db.client, "w", 1, "1 minute").await.is_empty(),
                "not ready during backoff"
            );
        } else {
            assert_eq!(outcome, "dead");
        }
    }
    // Attempt 1 waits 0.1..0.2 s, attempt 2 0.2..0.4 s (base 0.2 s doubled, equal jitter).
    assert!(delays[0] > 0.05 && delays[0] <= 0.2 + 0.05, "{delays:?}");
    assert!(delays[1] > 0.15 && delays[1] <= 0.4 + 0.05, "{delays:?}");

    assert_eq!(
        scalar_i64(&db.client, "SELECT count(*) FROM odoo_sync.jobs").await,
        0
    );
    let dead = db
        .client
        .query_one(
            "SELECT job_id, attempts, error_message FROM odoo_sync.dead_letters",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(dead.get::<_, i32>(1), 3);
    assert_eq!(dead.get::<_, String>(2), "connection reset by Odoo");
    let row = db
        .client
        .query_one("SELECT s.sync_status, o.sync_status, s.job_id IS NULL FROM odoo_sync.order_state s, orders o", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "SYNC_FAILED");
    assert_eq!(row.get::<_, String>(1), "SYNC_FAILED");
    assert!(row.get::<_, bool>(2));
    let shown = db
        .client
        .query_one(
            "SELECT attempts, job_id IS NULL, last_error ->> 'message' FROM odoo_sync.order_status",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        shown.get::<_, i32>(0),
        3,
        "order_status keeps the attempts of the dead job"
    );
    assert!(shown.get::<_, bool>(1));
    assert_eq!(shown.get::<_, String>(2), "connection reset by Odoo");
    let failures = scalar_i64(
        &db.client,
        "SELECT count(*) FROM odoo_sync.events WHERE event_type = 'ORDER_SYNC_FAILED'",
    )
    .await;
    assert_eq!(failures, 3);

    // retry_job brings it back with a fresh attempt count, under the same id.
    let job: i64 = dead.get(0);
    let revived: i64 = db
        .client
        .query_one("SELECT odoo_sync.retry_job($1)", &[&job])
        .await
        .unwrap()
        .get(0);
    assert_eq!(revived, job);
    let row = db
        .client
        .query_one("SELECT state, attempts FROM odoo_sync.jobs", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "queued");
    assert_eq!(row.get::<_, i32>(1), 0);
    assert_eq!(
        scalar_i64(&db.client, "SELECT count(*) FROM odoo_sync.dead_letters").await,
        0
    );
    let err = db
        .client
        .query_one("SELECT odoo_sync.retry_job($1)", &[&job])
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "55000", "a live job is not a dead letter");
    db.finish().await;
}

#[tokio::test]
async fn permanent_error_goes_straight_to_dead_letters() {
    let db = db_with_orders("permanent", 2).await;
    let jobs = claim(&db.client, "w", 2, "1 minute").await;
    let error = json!({"type": "OdooError", "odoo_error": "odoo.exceptions.ValidationError",
                       "message": "Missing required value for the field 'Vendor' (partner_id)"});
    let outcome: String = db
        .client
        .query_one(
            "SELECT odoo_sync.fail_job($1, $2, $3, true)",
            &[&jobs[0].0, &jobs[0].1, &error],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(outcome, "dead");
    let row = db
        .client
        .query_one("SELECT odoo_error, attempts, (last_error->>'permanent')::bool FROM odoo_sync.dead_letters", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "odoo.exceptions.ValidationError");
    assert_eq!(row.get::<_, i32>(1), 1);
    assert!(row.get::<_, bool>(2));
    // The neighbour is unaffected.
    let state: String = db
        .client
        .query_one(
            "SELECT state FROM odoo_sync.jobs WHERE id = $1",
            &[&jobs[1].0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "running");
    // batch_sync_pending does not retry a permanent failure on its own: it counts it as skipped.
    let batch: i64 = db
        .client
        .query_one("SELECT odoo_sync.batch_sync_pending(10)", &[])
        .await
        .unwrap()
        .get(0);
    let skipped: i32 = db
        .client
        .query_one("SELECT skipped FROM odoo_sync.batch_status($1)", &[&batch])
        .await
        .unwrap()
        .get(0);
    assert_eq!(skipped, 1);
    db.finish().await;
}

#[tokio::test]
async fn failure_after_a_new_change_requeues_with_fresh_attempts() {
    let db = db_with_orders("refail", 1).await;
    let jobs = claim(&db.client, "w", 1, "1 minute").await;
    db.client
        .execute("UPDATE orders SET supplier_id = 'S2'", &[])
        .await
        .unwrap();
    let outcome: String = db
        .client
        .query_one(
            "SELECT odoo_sync.fail_job($1, $2, '{\"message\": \"unknown vendor S1\"}', true)",
            &[&jobs[0].0, &jobs[0].1],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        outcome, "requeued",
        "the new data deserves a try even after a permanent error"
    );
    assert_eq!(claim(&db.client, "w", 1, "1 minute").await.len(), 1);
    db.finish().await;
}

#[tokio::test]
async fn release_and_extend_leases() {
    let db = db_with_orders("release", 3).await;
    let jobs = claim(&db.client, "w", 3, "2 seconds").await;
    let ids: Vec<i64> = jobs.iter().map(|j| j.0).collect();
    let extended: Vec<i64> = db
        .client
        .query(
            "SELECT * FROM odoo_sync.extend_leases('w', $1, '1 minute')",
            &[&ids],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(extended.len(), 3);
    let none: Vec<i64> = db
        .client
        .query(
            "SELECT * FROM odoo_sync.extend_leases('other', $1, '1 minute')",
            &[&ids],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(none.is_empty(), "a worker cannot extend another's lease");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(
        claim(&db.client, "x", 3, "1 minute").await.is_empty(),
        "extended leases hold"
    );
    let released: i32 = db
        .client
        .query_one("SELECT odoo_sync.release_jobs('w')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(released, 3);
    let again = claim(&db.client, "x", 3, "1 minute").await;
    assert_eq!(again.len(), 3);
    let attempts = scalar_i64(
        &db.client,
        "SELECT max(attempts)::bigint FROM odoo_sync.jobs",
    )
    .await;
    assert_eq!(attempts, 1, "a released attempt does not count");
    db.finish().await;
}

#[tokio::test]
async fn poison_job_whose_worker_keeps_dying_is_dead_lettered() {
    let db = db_with_orders("poison", 1).await;
    db.client
        .execute(
            "SELECT odoo_sync.update_settings('{\"max_attempts\": 2}')",
            &[],
        )
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(claim(&db.client, "dies", 1, "1 second").await.len(), 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(claim(&db.client, "next", 1, "1 minute").await.is_empty());
    let msg: String = db
        .client
        .query_one("SELECT error_message FROM odoo_sync.dead_letters", &[])
        .await
        .unwrap()
        .get(0);
    assert!(msg.contains("did not finish attempt 2"), "{msg}");
    db.finish().await;
}

/// The last allowed attempt's worker dies, but the order changed during that attempt: the
/// change gets a fresh try (as fail_job gives one) instead of a dead letter that would leave it
/// without a push.
#[tokio::test]
async fn poison_job_whose_order_changed_during_the_last_attempt_gets_a_fresh_try() {
    let db = db_with_orders("poisonchg", 1).await;
    db.client
        .execute(
            "SELECT odoo_sync.update_settings('{\"max_attempts\": 1}')",
            &[],
        )
        .await
        .unwrap();
    let first = claim(&db.client, "dies", 1, "1 second").await;
    assert_eq!(first.len(), 1);
    db.client
        .execute("UPDATE orders SET supplier_id = 'S2'", &[])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let again = claim(&db.client, "next", 1, "1 minute").await;
    assert_eq!(again.len(), 1, "the changed order is handed out again");
    assert_eq!(again[0].0, first[0].0, "the same job, not a second one");
    let (attempt, error): (i32, String) = {
        let row = db
            .client
            .query_one(
                "SELECT attempts, last_error ->> 'message' FROM odoo_sync.jobs",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(attempt, 1, "a fresh count of attempts");
    assert!(error.contains("did not finish attempt 1"), "{error}");
    assert_eq!(
        scalar_i64(&db.client, "SELECT count(*) FROM odoo_sync.dead_letters").await,
        0
    );
    db.finish().await;
}

#[tokio::test]
async fn finished_jobs_leave_the_queue_and_retention_removes_them() {
    let db = db_with_orders("retention", 20).await;
    for (job, token, _) in claim(&db.client, "w", 20, "1 minute").await {
        db.client
            .execute(
                "SELECT odoo_sync.complete_job($1, $2, '{\"odoo_order_id\": 1}')",
                &[&job, &token],
            )
            .await
            .unwrap();
    }
    assert_eq!(
        scalar_i64(&db.client, "SELECT count(*) FROM odoo_sync.jobs").await,
        0
    );
    assert_eq!(
        scalar_i64(&db.client, "SELECT count(*) FROM odoo_sync.job_history").await,
        20
    );
    db.client
        .batch_execute(
            "UPDATE odoo_sync.job_history SET finished_at = now() - interval '30 days';
             UPDATE odoo_sync.sync_log SET finished_at = now() - interval '30 days';",
        )
        .await
        .unwrap();
    let removed: serde_json::Value = db
        .client
        .query_one("SELECT odoo_sync.maintenance()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(removed["job_history"], 20);
    assert_eq!(removed["sync_log"], 20);
    assert_eq!(
        removed["events"], 0,
        "events are kept for event_retention_days"
    );
    db.finish().await;
}

#[tokio::test]
async fn bad_worker_calls_are_refused_and_change_nothing() {
    let db = db_with_orders("badcalls", 1).await;
    for (sql, code) in [
        (
            "SELECT * FROM odoo_sync.claim_jobs('', 1, '1 minute')",
            "22023",
        ),
        (
            "SELECT * FROM odoo_sync.claim_jobs(NULL, 1, '1 minute')",
            "22023",
        ),
        (
            "SELECT * FROM odoo_sync.claim_jobs('w', 0, '1 minute')",
            "22023",
        ),
        (
            "SELECT * FROM odoo_sync.claim_jobs('w', -5, '1 minute')",
            "22023",
        ),
        (
            "SELECT * FROM odoo_sync.claim_jobs('w', NULL, '1 minute')",
            "22023",
        ),
        (
            "SELECT * FROM odoo_sync.claim_jobs('w', 1, '-1 minute')",
            "22023",
        ),
        (
            "SELECT * FROM odoo_sync.claim_jobs('w', 1, '100 years')",
            "22023",
        ),
        ("SELECT odoo_sync.complete_job(NULL, NULL)", "22004"),
        ("SELECT odoo_sync.complete_job(12345, 1)", "55000"),
        ("SELECT odoo_sync.retry_job(12345)", "55000"),
        (
            "SELECT odoo_sync.heartbeat('w', '{\"odoo_status\": \"MAYBE\"}')",
            "22023",
        ),
        ("SELECT odoo_sync.heartbeat('w', '[]')", "22023"),
    ] {
        let err = db.client.query(sql, &[]).await.unwrap_err();
        assert_eq!(db_error(&err).0, code, "{sql}: {}", db_error(&err).1);
    }
    let row = db
        .client
        .query_one("SELECT state, attempts FROM odoo_sync.jobs", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "queued");
    assert_eq!(row.get::<_, i32>(1), 0);
    // A claimed job with a malformed result or error is left as it was. (The order is marked
    // as one whose Odoo order an Odoo user deleted: a push of it may write nothing to Odoo
    // only while it is cancelled.)
    db.client
        .batch_execute("UPDATE odoo_sync.order_state SET odoo_deleted_id = 7")
        .await
        .unwrap();
    let jobs = claim(&db.client, "w", 1, "1 minute").await;
    for sql in [
        "SELECT odoo_sync.complete_job($1, $2, '[]')",
        "SELECT odoo_sync.complete_job($1, $2, '{\"odoo_order_id\": \"abc\"}')",
        "SELECT odoo_sync.complete_job($1, $2, '{}')",
        "SELECT odoo_sync.complete_job($1, $2, '{\"operation\": \"DELETE\"}')",
        "SELECT odoo_sync.fail_job($1, $2, '{}')",
        "SELECT odoo_sync.fail_job($1, $2, '\"boom\"')",
        "SELECT odoo_sync.fail_job($1, $2, '{\"message\": \"x\"}', false, '-1 hour')",
        "SELECT odoo_sync.requeue_job($1, $2, '-1 second')",
        "SELECT odoo_sync.requeue_job($1, $2, '2 hours')",
    ] {
        let err = db
            .client
            .query(sql, &[&jobs[0].0, &jobs[0].1])
            .await
            .unwrap_err();
        assert_eq!(db_error(&err).0, "22023", "{sql}: {}", db_error(&err).1);
    }
    let row = db
        .client
        .query_one("SELECT state, attempts FROM odoo_sync.jobs", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "running");
    assert_eq!(
        scalar_i64(&db.client, "SELECT count(*) FROM odoo_sync.sync_log").await,
        0
    );
    db.finish().await;
}

/// A pull asked for again while its job runs must not hand the job to a second worker (the
/// running one keeps its lease); a pull that finds its order busy goes back to the queue for a
/// while without using up an attempt.
#[tokio::test]
async fn a_pull_requested_while_its_job_runs_keeps_its_lease() {
    let db = db_with_orders("pull_running", 0).await;
    db.client
        .execute("SELECT odoo_sync.queue_pull(42)", &[])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let claim_pull = |worker: &'static str| {
        let client = &db.client;
        async move {
            client
                .query(
                    "SELECT job_id, attempt_token FROM odoo_sync.claim_jobs($1, 10, '1 minute')",
                    &[&worker],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
                .collect::<Vec<_>>()
        }
    };
    let jobs = claim_pull("w1").await;
    assert_eq!(jobs.len(), 1);
    db.client
        .execute("SELECT odoo_sync.queue_pull(42)", &[])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(claim_pull("w2").await.is_empty());
    assert_eq!(
        scalar_i64(
            &db.client,
            "SELECT count(*) FROM odoo_sync.jobs WHERE state = 'running' AND lease_owner = 'w1' \
             AND run_after > now() + interval '50 seconds'"
        )
        .await,
        1
    );
    // Busy: back to the queue for 5 s, the attempt not counted.
    let state: String = db
        .client
        .query_one(
            "SELECT odoo_sync.requeue_job($1, $2, '5 seconds')",
            &[&jobs[0].0, &jobs[0].1],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "queued");
    let row = db
        .client
        .query_one(
            "SELECT state, attempts, run_after > now() + interval '4 seconds' FROM odoo_sync.jobs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, i32>(1),
            row.get::<_, bool>(2)
        ),
        ("queued".to_string(), 0, true)
    );
    db.finish().await;
}
