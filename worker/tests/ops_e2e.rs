//! What an operator sees of a running worker: `/metrics`, `/healthz` and `status`, with the
//! real binary against real PostgreSQL and the Odoo simulator.

use std::time::{Duration, Instant};

use odoo_sync_tests::pg_cluster::{common_schema, TestDb};
use odoo_sync_tests::sim::{self, SimConfig};

/// Kills the worker on every path out of the test.
struct Worker(tokio::process::Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn worker_command(db: &TestDb, sim_url: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_odoo-sync-worker"));
    cmd.env("DATABASE_URL", db.conninfo())
        .env("ODOO_URL", sim_url)
        .env("ODOO_DB", "odoo")
        .env("ODOO_USER", "admin")
        .env("ODOO_API_KEY", sim::DEFAULT_API_KEY)
        .env_remove("ODOO_PASSWORD")
        .kill_on_drop(true);
    cmd
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

async fn synced(db: &TestDb) -> i64 {
    db.client
        .query_one(
            "SELECT count(*) FROM orders WHERE sync_status = 'SYNCED'",
            &[],
        )
        .await
        .expect("count")
        .get(0)
}

/// A test database with the common tables tracked.
async fn tracked_db(label: &str) -> TestDb {
    let db = TestDb::new(label).await;
    db.client
        .batch_execute(&common_schema("bigint"))
        .await
        .expect("schema");
    db.client
        .batch_execute("SELECT odoo_sync.track_orders('orders', 'order_items')")
        .await
        .expect("track");
    db
}

/// `odoo-sync-worker run` with its endpoints on `port`, logging in to Odoo with `api_key`.
fn run_worker(db: &TestDb, sim_url: &str, port: u16, api_key: &str) -> Worker {
    Worker(
        worker_command(db, sim_url)
            .arg("run")
            .env("ODOO_API_KEY", api_key)
            .env("ODOO_SYNC_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the worker"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_healthz_and_status_tell_what_the_worker_does() {
    let db = tracked_db("ops").await;
    db.client
        .batch_execute(
            "INSERT INTO orders (order_number, supplier_id, supplier_name)
             SELECT 'PO-OPS-' || g, 'V-GEMINI', 'Gemini Furniture' FROM generate_series(1, 3) g;
             INSERT INTO order_items (order_id, product_id, product_code, quantity, unit_price)
             SELECT id, 'FURN_7777', 'FURN_7777', 2, 12.50 FROM orders;",
        )
        .await
        .expect("orders");
    let sim = sim::spawn(SimConfig::default()).await.expect("simulator");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _worker = run_worker(&db, &sim.url(), port, sim::DEFAULT_API_KEY);

    let deadline = Instant::now() + Duration::from_secs(60);
    while synced(&db).await < 3 {
        assert!(Instant::now() < deadline, "orders not synced within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200, "{metrics}");
    assert!(
        metrics.contains("# TYPE odoo_sync_rpc_duration_seconds histogram"),
        "{metrics}"
    );
    assert!(
        metrics.contains("odoo_sync_rpc_duration_seconds_count{method=\"purchase.order.load\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("odoo_sync_queue_jobs{state=\"ready\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("odoo_sync_dead_letters 0"), "{metrics}");

    let (status, health) = get(&format!("{base}/healthz")).await;
    assert_eq!(status, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).expect("healthz JSON");
    assert_eq!(health["odoo"], "CONNECTED");
    assert_eq!(health["database"], "ok");

    // Odoo goes away: the next push fails, and /healthz says so.
    reqwest::Client::new()
        .post(format!("{}/__sim/faults", sim.url()))
        .json(&serde_json::json!({"outage_seconds": 60}))
        .send()
        .await
        .expect("inject outage");
    db.client
        .execute(
            "UPDATE orders SET notes = 'during the outage' WHERE order_number = 'PO-OPS-1'",
            &[],
        )
        .await
        .expect("update");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(&format!("{base}/healthz")).await;
        if status == 503 {
            assert!(body.contains("DISCONNECTED"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "healthz never reported the outage: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert!(metrics.contains("kind=\"transient\""), "{metrics}");

    let out = worker_command(&db, &sim.url())
        .arg("status")
        .output()
        .await
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("health:"), "{text}");
    assert!(text.contains("queue:"), "{text}");
    assert!(text.contains("last errors:"), "{text}");
    assert!(!text.contains(sim::DEFAULT_API_KEY));

    drop(_worker);
    let _ = sim.stop().await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_while_odoo_refuses_the_credentials() {
    let db = tracked_db("ops_badkey").await;
    db.client
        .batch_execute(
            "INSERT INTO orders (order_number, supplier_id) VALUES ('PO-KEY', 'V-GEMINI')",
        )
        .await
        .expect("order");
    let sim = sim::spawn(SimConfig::default()).await.expect("simulator");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _worker = run_worker(&db, &sim.url(), port, "an-expired-key");
    // Odoo answers (it is reachable) but refuses every call: no order can sync, and a probe
    // must not call the worker healthy.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(&format!("{base}/healthz")).await;
        if status == 503 && body.contains("\"odoo\":\"ERROR\"") {
            assert!(body.contains("\"database\":\"ok\""), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "healthz never reported the refused credentials: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(_worker);
    let _ = sim.stop().await;
    db.finish().await;
}

/// `odoo_sync_claim_rounds_total` from the worker's `/metrics`.
async fn claim_rounds(base: &str) -> u64 {
    let (status, body) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix("odoo_sync_claim_rounds_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no odoo_sync_claim_rounds_total in {body}"))
}

/// Runs the statement `sql(i)` 100 times, one every 20 ms, and returns how many claim rounds
/// the worker serving `/metrics` at `base` made meanwhile, and how long it took.
async fn claims_during_100(
    db: &TestDb,
    base: &str,
    sql: impl Fn(usize) -> String,
) -> (u64, Duration) {
    let before = claim_rounds(base).await;
    let started = Instant::now();
    for i in 0..100 {
        db.client.batch_execute(&sql(i)).await.expect("statement");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    (claim_rounds(base).await - before, started.elapsed())
}

/// A stream of `queue` notifications wakes an idle worker a few times a second, not once per
/// notification; edits of an order whose job another worker holds notify nobody (they join
/// that job), and the payload `event` (odoo_sync's own events) does not wake it at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_without_work_cost_a_few_claims_a_second() {
    let db = tracked_db("ops_wake").await;
    db.client
        .batch_execute(
            "INSERT INTO orders (order_number, supplier_id) VALUES ('PO-WAKE', 'V-GEMINI');
             SELECT odoo_sync.claim_jobs('another-worker', 10, '10 minutes');",
        )
        .await
        .expect("an order whose job another worker holds");
    let sim = sim::spawn(SimConfig::default()).await.expect("simulator");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _worker = run_worker(&db, &sim.url(), port, sim::DEFAULT_API_KEY);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listening: i64 = db
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                   AND query ILIKE 'LISTEN%'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if listening > 0 && get(&format!("{base}/metrics")).await.0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the worker never listened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 100 'queue' notifications in 2 s (what applications queueing orders send); 100 edits of
    // the held order, each its own transaction; 100 notifications 'event'. Only the first may
    // wake the worker; the others leave it to its 1 s poll.
    let (queue_rounds, queue_took) = claims_during_100(&db, &base, |_| {
        "SELECT pg_notify('odoo_sync_events', 'queue')".to_string()
    })
    .await;
    let (edits_rounds, edits_took) = claims_during_100(&db, &base, |i| {
        format!("UPDATE orders SET notes = 'edit {i}' WHERE order_number = 'PO-WAKE'")
    })
    .await;
    let (event_rounds, event_took) = claims_during_100(&db, &base, |_| {
        "SELECT pg_notify('odoo_sync_events', 'event')".to_string()
    })
    .await;
    println!(
        "100 'queue' notifications in {queue_took:.1?}: {queue_rounds} claim rounds; 100 edits in {edits_took:.1?}: {edits_rounds} claim rounds; 100 'event' notifications in {event_took:.1?}: {event_rounds} claim rounds"
    );
    // Woken by the notifications (more than the 1 s poll alone), yet at most one claim per
    // 100 ms.
    let most = |took: Duration| (took.as_millis() / 100) as u64 + 3;
    assert!(
        queue_rounds > (queue_took.as_secs() + 2) && queue_rounds <= most(queue_took),
        "{queue_rounds} claim rounds for 100 'queue' notifications in {queue_took:?}"
    );
    let poll_only = |took: Duration| took.as_secs() + 2;
    assert!(
        edits_rounds <= poll_only(edits_took),
        "{edits_rounds} claim rounds for 100 edits of a held order in {edits_took:?}"
    );
    assert!(
        event_rounds <= poll_only(event_took),
        "{event_rounds} claim rounds for 100 'event' notifications in {event_took:?}"
    );
    assert_eq!(
        synced(&db).await,
        0,
        "the job stays with the worker that holds it"
    );
    drop(_worker);
    let _ = sim.stop().await;
    db.finish().await;
}
