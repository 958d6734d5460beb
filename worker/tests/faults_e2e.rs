//! The worker binary under faults, end to end: real PostgreSQL with the extension, the Odoo
//! simulator with fault injection, and `odoo-sync-worker run` as child processes.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{outage_spec, setup, setup_with_key};

const WAIT: Duration = Duration::from_secs(60);

/// A simulator outage (every Odoo request answered 503 for 3 s) makes jobs retry with a
/// bounded number of requests, then every order arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_retried_then_everything_arrives_once() {
    let mut env = setup("f_outage", 19).await;
    env.settings(json!({"backoff_base_seconds": 0.2, "backoff_max_seconds": 1}))
        .await;
    env.insert_orders(0, 20, 3).await;
    env.faults(outage_spec(true)).await;
    let before = env.get("/__sim/faults").await["injected"].as_i64().unwrap();
    let mut w = env.spawn_worker(&["run"], &[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.faults(outage_spec(false)).await;
    let during = env.get("/__sim/faults").await["injected"].as_i64().unwrap() - before;
    assert_eq!(
        env.synced_count().await,
        0,
        "nothing synced during the outage"
    );
    let failed = env
        .count("SELECT count(*) FROM odoo_sync.sync_log WHERE NOT success")
        .await;
    assert!(failed >= 20, "every job failed and was retried: {failed}");
    // 20 jobs retried with a 0.2 s..1 s backoff for 3 s: a handful of attempts each (fewer
    // requests when the worker batches), not a busy loop.
    assert!(
        (1..=400).contains(&during),
        "requests during the 3 s outage: {during}"
    );
    env.wait_all_synced(WAIT, &mut [&mut w]).await;
    env.assert_odoo_matches().await;
    let dead = env
        .count("SELECT count(*) FROM odoo_sync.job_history WHERE state = 'dead'")
        .await;
    assert_eq!(dead, 0, "no job gave up");
    let retried = env
        .count("SELECT count(*) FROM odoo_sync.job_history WHERE state = 'done' AND attempts > 1")
        .await;
    assert_eq!(retried, 20, "every job needed more than one attempt");
    eprintln!("outage: {during} requests during 3 s, {failed} failed attempts");
    drop(w);
    env.finish().await;
}

/// A concurrency error inside Odoo's `load` is not an exception: `load` reports it as a
/// message of a call that wrote nothing. Such a push is retried, never dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_error_inside_load_is_retried() {
    let mut env = setup("f_load_contended", 17).await;
    env.settings(json!({"backoff_base_seconds": 0.2, "backoff_max_seconds": 1}))
        .await;
    // Ten orders synced first: every vendor and product is then in the map tables, so under
    // the fault the worker's first call for the next orders is their load.
    env.insert_orders(0, 10, 3).await;
    let mut w = env.spawn_worker(&["run"], &[]);
    env.wait_all_synced(WAIT, &mut [&mut w]).await;

    env.faults(json!({"error_rate": 1.0, "error_kind": "serialization"}))
        .await;
    env.insert_orders(10, 10, 3).await;
    let contended = "SELECT count(*) FROM odoo_sync.sync_log \
                     WHERE NOT success AND error ->> 'type' = 'contended'";
    let deadline = Instant::now() + WAIT;
    while env.count(contended).await < 1 {
        assert!(
            Instant::now() < deadline,
            "no load refused for contention; failures by type: {}",
            env.db
                .client
                .query_one("SELECT string_agg(t || ' ' || n, ', ') FROM (SELECT error ->> 'type' AS t, count(*) AS n FROM odoo_sync.sync_log WHERE NOT success GROUP BY 1) x", &[])
                .await
                .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.faults(json!({"error_rate": 0.0})).await;
    env.wait_all_synced(WAIT, &mut [&mut w]).await;
    env.assert_odoo_matches().await;
    let dead = env
        .count("SELECT count(*) FROM odoo_sync.job_history WHERE state = 'dead'")
        .await;
    assert_eq!(dead, 0, "no push gave up");
    drop(w);
    env.finish().await;
}

/// Writes committed in Odoo whose reply never arrives: the retry finds what was written.
async fn drop_after_commit(label: &str, version: u8, orders: usize) {
    let mut env = setup(label, version).await;
    env.settings(json!({"backoff_base_seconds": 0.2, "backoff_max_seconds": 1}))
        .await;
    env.insert_orders(0, orders, 3).await;
    env.faults(json!({"drop_after_commit": 5})).await;
    let mut w = env.spawn_worker(&["run"], &[]);
    env.wait_all_synced(WAIT, &mut [&mut w]).await;
    let left = env.get("/__sim/faults").await["drop_after_commit"]
        .as_i64()
        .unwrap();
    assert_eq!(left, 0, "all five dropped replies happened");
    env.assert_odoo_matches().await;
    drop(w);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_dropped_after_commit_leave_no_duplicate_and_nothing_missing() {
    drop_after_commit("f_drop19", 19, 30).await;
}

/// The same against Odoo 17 (JSON-RPC only, `product_uom`/`taxes_id`, error code 200): the
/// worker finds out by itself, with no configuration per version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_dropped_after_commit_odoo_17() {
    drop_after_commit("f_drop17", 17, 10).await;
}

/// Two worker processes on one database: every order pushed once, and no two attempts of one
/// order overlap in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_never_push_one_order_concurrently() {
    let mut env = setup("f_two", 19).await;
    env.faults(json!({"latency_ms": 5})).await;
    let mut a = env.spawn_worker(&["run"], &[("HOSTNAME", "worker-a")]);
    let mut b = env.spawn_worker(&["run"], &[("HOSTNAME", "worker-b")]);
    // Both idle (heartbeat written) before the orders arrive, so both are woken by them.
    let deadline = Instant::now() + Duration::from_secs(20);
    while env
        .count("SELECT count(*) FROM odoo_sync.worker_heartbeats")
        .await
        < 2
    {
        assert!(Instant::now() < deadline, "both workers report a heartbeat");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.insert_orders(0, 60, 3).await;
    env.wait_all_synced(WAIT, &mut [&mut a, &mut b]).await;
    env.assert_odoo_matches().await;
    let overlaps = env
        .db
        .client
        .query(
            "SELECT x.order_key, x.worker_id, y.worker_id, x.started_at::text, x.finished_at::text, \
                    y.started_at::text, y.finished_at::text \
             FROM odoo_sync.sync_log x JOIN odoo_sync.sync_log y \
               ON x.order_key = y.order_key AND x.id < y.id \
             WHERE tstzrange(x.started_at, x.finished_at) && tstzrange(y.started_at, y.finished_at)",
            &[],
        )
        .await
        .expect("overlaps");
    let shown: Vec<String> = overlaps
        .iter()
        .map(|r| {
            format!(
                "{}: {} [{} {}] / {} [{} {}]",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(3),
                r.get::<_, String>(4),
                r.get::<_, String>(2),
                r.get::<_, String>(5),
                r.get::<_, String>(6)
            )
        })
        .collect();
    assert!(shown.is_empty(), "overlapping attempts: {shown:#?}");
    let missing_times = env
        .count(
            "SELECT count(*) FROM odoo_sync.sync_log WHERE started_at IS NULL OR worker_id IS NULL",
        )
        .await;
    assert_eq!(missing_times, 0, "every attempt has its worker and start");
    let workers = env
        .count("SELECT count(DISTINCT worker_id) FROM odoo_sync.sync_log")
        .await;
    assert_eq!(workers, 2, "both workers pushed orders");
    // One successful push per order. A failed attempt is allowed only if it was transient
    // (two workers creating the same vendor or product at once meet Odoo's serialization
    // failures, as with a real Odoo) and was retried; anything else is listed.
    let pushed = env
        .count("SELECT count(*) FROM odoo_sync.sync_log WHERE success")
        .await;
    let pushed_orders = env
        .count("SELECT count(DISTINCT order_key) FROM odoo_sync.sync_log WHERE success")
        .await;
    let permanent_failures = env
        .count(
            "SELECT count(*) FROM odoo_sync.sync_log
             WHERE NOT success AND COALESCE((error ->> 'permanent')::boolean, true)",
        )
        .await;
    let attempts = env.count("SELECT count(*) FROM odoo_sync.sync_log").await;
    if pushed != 60 || pushed_orders != 60 || permanent_failures != 0 {
        // Say what the extra attempts were: failures (and why) or pushes repeated after success.
        let repeated = env
            .db
            .client
            .query(
                "SELECT order_key, operation, success, attempt, worker_id, error::text
                 FROM odoo_sync.sync_log WHERE order_key IN
                     (SELECT order_key FROM odoo_sync.sync_log GROUP BY 1 HAVING count(*) > 1)
                 ORDER BY order_key, id",
                &[],
            )
            .await
            .expect("repeated attempts");
        let shown: Vec<String> = repeated
            .iter()
            .map(|r| {
                format!(
                    "{} {} success={} attempt={} {} {:?}",
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, bool>(2),
                    r.get::<_, i32>(3),
                    r.get::<_, String>(4),
                    r.get::<_, Option<String>>(5)
                )
            })
            .collect();
        panic!(
            "{attempts} attempts, {pushed} successful for {pushed_orders} of 60 orders, \
             {permanent_failures} permanent failures: {shown:#?}"
        );
    }
    drop((a, b));
    env.finish().await;
}

/// The API key appears in no log line of the most verbose run, in no failing-login output,
/// and in no table of the extension.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_appear_in_logs_or_tables() {
    const KEY: &str = "sekr1t-Zq7XwPv9-api-key-5b4a";
    const WRONG: &str = "wr0ng-Hj3KmNt8-api-key-7c6d";
    let mut env = setup_with_key("f_creds", 19, KEY).await;
    env.settings(json!({"backoff_base_seconds": 0.2, "backoff_max_seconds": 1}))
        .await;
    env.insert_orders(0, 3, 2).await;
    let verbose = [("RUST_LOG", "trace"), ("RUST_BACKTRACE", "1")];
    let mut good = env.spawn_worker(&["run"], &verbose);
    env.wait_all_synced(WAIT, &mut [&mut good]).await;
    good.kill();
    let good_log = good.output();
    assert!(
        good_log.contains("worker started"),
        "the log was captured: {good_log}"
    );

    // A wrong key: `sync` of a new order fails its login, and a `run` loop does too.
    env.insert_orders(3, 1, 2).await;
    env.api_key = WRONG.into();
    let mut sync = env.spawn_worker(&["sync", "4"], &verbose);
    let status = sync.wait_for_exit(Duration::from_secs(30));
    let sync_log = sync.output();
    assert!(
        status.is_some_and(|s| !s.success()),
        "sync with a wrong key fails: {status:?}\n{sync_log}"
    );
    let mut bad = env.spawn_worker(&["run"], &verbose);
    tokio::time::sleep(Duration::from_secs(2)).await;
    bad.kill();
    let bad_log = bad.output();
    let fails = env
        .count("SELECT count(*) FROM odoo_sync.sync_log WHERE NOT success")
        .await;
    assert!(fails >= 1, "the wrong key was refused and logged");

    for (name, text) in [
        ("run", &good_log),
        ("sync", &sync_log),
        ("bad run", &bad_log),
    ] {
        for key in [KEY, WRONG] {
            assert!(
                !text.contains(key),
                "the key {key} appears in the {name} output:\n{text}"
            );
        }
    }
    let mut dump = String::new();
    for table in [
        "sync_log",
        "job_history",
        "jobs",
        "event_log",
        "worker_heartbeats",
        "settings",
        "batches",
    ] {
        let row = env
            .db
            .client
            .query_one(
                &format!(
                    "SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM odoo_sync.{table} t"
                ),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("dump {table}: {e}"));
        dump.push_str(&row.get::<_, String>(0));
        dump.push('\n');
    }
    assert!(
        dump.contains("PO-3") || dump.contains('4'),
        "the dump is not empty"
    );
    for key in [KEY, WRONG] {
        assert!(
            !dump.contains(key),
            "the key {key} is stored in odoo_sync:\n{dump}"
        );
    }
    drop((sync, bad));
    env.finish().await;
}

/// A worker SIGKILLed in the middle of a batch, then restarted: once the leases run out the
/// jobs are handed out again and every order ends in Odoo exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_and_restarted_loses_and_duplicates_nothing() {
    let mut env = setup("f_sigkill", 19).await;
    env.settings(
        json!({"lease_seconds": 5, "backoff_base_seconds": 0.2, "backoff_max_seconds": 1}),
    )
    .await;
    env.insert_orders(0, 100, 3).await;
    // Slow enough that a batched push of 50 orders is still in flight when it is killed.
    env.faults(json!({"latency_ms": 150})).await;
    let mut first = env.spawn_worker(&["run"], &[]);
    // Kill as soon as Odoo has written orders of the first batch (purchase.order.load; their
    // ids not yet written back), or after 1.5 s at the latest.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500)
        && env.calls("purchase.order.load").await == 0
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill();
    let synced_at_kill = env.synced_count().await;
    let odoo_at_kill = env.get("/__sim/state").await["models"]["purchase.order"]
        .as_array()
        .map_or(0, Vec::len);
    let running = env
        .count("SELECT count(*) FROM odoo_sync.jobs WHERE state = 'running'")
        .await;
    assert!(
        synced_at_kill < 100 && running > 0,
        "the kill came mid-batch: {synced_at_kill} synced, {running} jobs running"
    );
    env.faults(json!({"latency_ms": 0})).await;
    let killed_at = Instant::now();
    let mut second = env.spawn_worker(&["run"], &[]);
    env.wait_all_synced(Duration::from_secs(40), &mut [&mut second])
        .await;
    eprintln!(
        "sigkill: {synced_at_kill} synced, {running} running, {odoo_at_kill} in Odoo at the kill; \
         all synced {:?} after it",
        killed_at.elapsed()
    );
    env.assert_odoo_matches().await;
    drop(second);
    env.finish().await;
}
