//! Harness of the fault end-to-end tests: a test database with the common schema tracked, an
//! in-process Odoo simulator, the real `odoo-sync-worker` binary as child processes (killed on
//! every path), bounded waits, and the "zero duplicate, zero missing" check against the
//! simulator's own state (`/__sim/state`, never slowed or failed by faults).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use odoo_sync_tests::pg_cluster::{common_schema, TestDb};
use odoo_sync_tests::sim::client::Client as SimClient;
use odoo_sync_tests::sim::seed::Seed;
use odoo_sync_tests::sim::{self, SimConfig, SimHandle};
use rust_decimal::Decimal;
use serde_json::{json, Value};

pub const VENDORS: [(&str, &str); 5] = [
    ("V-GEMINI", "Gemini Furniture"),
    ("V-WOOD", "Wood Corner"),
    ("V-AZURE", "Azure Interior"),
    ("V-DECO", "Deco Addict"),
    ("V-READY", "Ready Mat"),
];
pub const PRODUCTS: [&str; 8] = [
    "FURN_7777",
    "FURN_0269",
    "FURN_8220",
    "FURN_0001",
    "FURN_8900",
    "E-COM11",
    "E-COM08",
    "FURN_0002",
];

/// One local order as the test inserted it.
#[derive(Debug, Clone)]
pub struct Expected {
    pub origin: String,
    pub vendor_ref: &'static str,
    /// (product default code, quantity, unit price)
    pub lines: Vec<(&'static str, Decimal, Decimal)>,
}

/// `lines` lines of order `n`: distinct products, varied quantities and prices.
pub fn lines_for(n: usize, lines: usize) -> Vec<(&'static str, String, String)> {
    (0..lines)
        .map(|j| {
            (
                PRODUCTS[(n + j * 3) % PRODUCTS.len()],
                format!("{}.{}", n % 40 + j + 1, (n * 7 + j) % 1000),
                format!("{}.{:02}", 10 + (n % 50) * 3 + j, (n * 13 + j) % 100),
            )
        })
        .collect()
}

fn dec(v: &Value) -> Decimal {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Decimal::from_str(&s)
        .unwrap_or_else(|_| panic!("not a decimal: {v}"))
        .normalize()
}

fn m2o(v: &Value) -> i64 {
    v.as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_i64)
        .or_else(|| v.as_i64())
        .unwrap_or_else(|| panic!("not a many2one: {v}"))
}

static WORKER_N: AtomicU32 = AtomicU32::new(0);

/// A worker child process; SIGKILLed and reaped when dropped.
pub struct WorkerProc {
    child: Child,
    /// stdout and stderr of the process.
    pub log: PathBuf,
}

impl WorkerProc {
    /// SIGKILL (what `Child::kill` sends on Unix) and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Exit status, if the process has ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `limit` for the process to end (killing it after that).
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }

    /// What the process printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Env {
    pub db: TestDb,
    pub sim: SimHandle,
    pub ctl: SimClient,
    /// Connection string of the worker role (member of odoo_sync_worker only).
    pub worker_url: String,
    pub api_key: String,
    pub expected: BTreeMap<i64, Expected>,
}

pub async fn setup(label: &str, version: u8) -> Env {
    setup_with_key(label, version, sim::DEFAULT_API_KEY).await
}

pub async fn setup_with_key(label: &str, version: u8, api_key: &str) -> Env {
    setup_in(TestDb::new(label).await, version, api_key).await
}

/// The same in a database made by the caller (e.g. in a private cluster it restarts).
pub async fn setup_in(mut db: TestDb, version: u8, api_key: &str) -> Env {
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
    let worker_url = format!("{} user={role}", db.conninfo());
    // The orders of `lines_for` have quantities of three decimals: the Odoo database keeps
    // them (its `Product Unit of Measure` precision is 3, where Odoo's default is 2).
    let mut seed = Seed::default_data();
    seed.company.precision.product_uom = 3;
    let sim = sim::spawn(SimConfig {
        version,
        api_key: api_key.to_string(),
        seed,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let ctl = SimClient::new(&sim.url());
    Env {
        db,
        sim,
        ctl,
        worker_url,
        api_key: api_key.to_string(),
        expected: BTreeMap::new(),
    }
}

impl Env {
    /// An Odoo client of the worker library on this simulator (for in-process calls such as
    /// `verify`).
    pub fn odoo_client(&self) -> odoo_sync_worker::odoo::OdooClient {
        use odoo_sync_worker::odoo::{OdooClient, OdooConfig, Secret, SecretKind};
        let mut config = OdooConfig::new(
            &self.sim.url(),
            "odoo",
            "admin",
            Secret::new(&self.api_key),
            SecretKind::ApiKey,
        )
        .expect("Odoo config");
        config.request_timeout = Duration::from_secs(30);
        OdooClient::new(config).expect("Odoo client")
    }

    /// A connection as the worker role.
    pub async fn worker_client(&self) -> tokio_postgres::Client {
        odoo_sync_tests::pg_cluster::connect(&self.worker_url).await
    }

    /// `model.method(args, kwargs)` straight on the simulator, as a person editing in Odoo
    /// would; returns the result (panics on an error).
    pub async fn odoo_call(&self, model: &str, method: &str, args: Value, kwargs: Value) -> Value {
        let reply = self
            .ctl
            .execute_kw("odoo", 2, &self.api_key, model, method, args, kwargs)
            .await
            .unwrap_or_else(|e| panic!("{model}.{method}: {e}"));
        assert!(
            reply.get("error").is_none(),
            "{model}.{method}: {}",
            reply["error"]
        );
        reply["result"].clone()
    }

    pub async fn finish(self) {
        let Env { db, sim, .. } = self;
        let _ = sim.stop().await;
        db.finish().await;
    }

    pub async fn settings(&self, changes: Value) {
        self.db
            .client
            .execute(
                "SELECT odoo_sync.update_settings($1::text::jsonb)",
                &[&changes.to_string()],
            )
            .await
            .expect("update_settings");
    }

    /// Inserts orders `first..first+count` with `lines` lines each, in one transaction.
    pub async fn insert_orders(&mut self, first: usize, count: usize, lines: usize) -> Vec<i64> {
        let mut sql = String::from("BEGIN;");
        for n in first..first + count {
            let (vref, vname) = VENDORS[n % VENDORS.len()];
            sql.push_str(&format!(
                "INSERT INTO orders (id, order_number, supplier_id, supplier_name) \
                 VALUES ({id}, 'PO-{n}', '{vref}', '{vname}');",
                id = n + 1
            ));
            for (code, qty, price) in lines_for(n, lines) {
                sql.push_str(&format!(
                    "INSERT INTO order_items (order_id, product_id, product_code, quantity, unit_price) \
                     VALUES ({id}, '{code}', '{code}', {qty}, {price});",
                    id = n + 1
                ));
            }
        }
        sql.push_str("COMMIT;");
        self.db
            .client
            .batch_execute(&sql)
            .await
            .expect("insert orders");
        let mut ids = Vec::new();
        for n in first..first + count {
            let id = (n + 1) as i64;
            let lines = lines_for(n, lines)
                .into_iter()
                .map(|(c, q, p)| {
                    (
                        c,
                        Decimal::from_str(&q).unwrap().normalize(),
                        Decimal::from_str(&p).unwrap().normalize(),
                    )
                })
                .collect();
            self.expected.insert(
                id,
                Expected {
                    origin: format!("PO-{n}"),
                    vendor_ref: VENDORS[n % VENDORS.len()].0,
                    lines,
                },
            );
            ids.push(id);
        }
        ids
    }

    /// Starts `odoo-sync-worker <args>` against this database and simulator.
    pub fn spawn_worker(&self, args: &[&str], extra_env: &[(&str, &str)]) -> WorkerProc {
        let n = WORKER_N.fetch_add(1, Ordering::SeqCst);
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("faults_e2e_{}_{n}.log", self.db.name));
        let file = File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_odoo-sync-worker"));
        cmd.args(args)
            .env("DATABASE_URL", &self.worker_url)
            .env("ODOO_URL", self.sim.url())
            .env("ODOO_DB", "odoo")
            .env("ODOO_USER", "admin")
            .env("ODOO_API_KEY", &self.api_key)
            .env_remove("ODOO_PASSWORD")
            .env_remove("ODOO_PASSWORD_FILE")
            .env_remove("ODOO_API_KEY_FILE")
            .env_remove("ODOO_PROTOCOL")
            // Tests run in parallel: no fixed metrics port.
            .env("ODOO_SYNC_METRICS_ADDR", "off")
            // Batches of 50 so that these scenarios span several batches (the default is 200).
            .env("ODOO_SYNC_CLAIM_SIZE", "50")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start odoo-sync-worker");
        WorkerProc { child, log }
    }

    pub async fn faults(&self, spec: Value) {
        let r = self.ctl.post("/__sim/faults", &spec).await.expect("faults");
        assert_eq!(r.status, 200, "POST /__sim/faults {spec}: {}", r.text);
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self.ctl.get(path).await.expect("control API");
        assert_eq!(r.status, 200, "GET {path}: {}", r.text);
        r.body()
    }

    /// Calls counted by the simulator for `model.method`.
    pub async fn calls(&self, key: &str) -> i64 {
        self.get("/__sim/stats").await["calls"][key]
            .as_i64()
            .unwrap_or(0)
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.db
            .client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<_, i64>(0)
    }

    pub async fn synced_count(&self) -> i64 {
        self.count("SELECT count(*) FROM orders WHERE sync_status = 'SYNCED'")
            .await
    }

    /// What `odoo_sync.order_status` says about orders not synced yet (for failure messages).
    pub async fn status_report(&self) -> String {
        let rows = self
            .db
            .client
            .query(
                "SELECT local_order_id, sync_status, odoo_order_id, job_state, attempts, \
                        next_attempt_at::text, last_error::text \
                 FROM odoo_sync.order_status \
                 WHERE sync_status IS DISTINCT FROM 'SYNCED' OR job_id IS NOT NULL \
                 ORDER BY local_order_id::bigint LIMIT 15",
                &[],
            )
            .await
            .expect("order_status");
        let mut out = String::new();
        for r in rows {
            out.push_str(&format!(
                "  order {:?} status {:?} odoo {:?} job {:?} attempts {:?} next {:?} error {:?}\n",
                r.get::<_, Option<String>>(0),
                r.get::<_, Option<String>>(1),
                r.get::<_, Option<i32>>(2),
                r.get::<_, Option<String>>(3),
                r.get::<_, Option<i32>>(4),
                r.get::<_, Option<String>>(5),
                r.get::<_, Option<String>>(6),
            ));
        }
        out
    }

    /// Polls every 100 ms until every expected order is SYNCED and no job is left; panics
    /// with the order status after `limit`.
    pub async fn wait_all_synced(&self, limit: Duration, workers: &mut [&mut WorkerProc]) {
        let want = self.expected.len() as i64;
        let deadline = Instant::now() + limit;
        loop {
            let synced = self.synced_count().await;
            let jobs = self.count("SELECT count(*) FROM odoo_sync.jobs").await;
            if synced == want && jobs == 0 {
                return;
            }
            for w in workers.iter_mut() {
                if let Some(status) = w.try_wait() {
                    panic!(
                        "worker {} exited ({status}) with {synced}/{want} synced; its output:\n{}",
                        w.pid(),
                        w.output()
                    );
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "after {limit:?}: {synced}/{want} orders SYNCED, {jobs} jobs left; order_status:\n{}",
                    self.status_report().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Exactly one Odoo order per local order (by origin), with exactly the local lines, the
    /// right vendor, and its id written back to the local row; nothing else in Odoo.
    pub async fn assert_odoo_matches(&self) {
        let state = self.get("/__sim/state").await;
        let models = &state["models"];
        let records = |m: &str| models[m].as_array().cloned().unwrap_or_default();
        let product_code: HashMap<i64, String> = records("product.product")
            .iter()
            .map(|p| {
                (
                    p["id"].as_i64().unwrap(),
                    p["default_code"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let partner_ref: HashMap<i64, String> = records("res.partner")
            .iter()
            .map(|p| {
                (
                    p["id"].as_i64().unwrap(),
                    p["ref"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let mut by_origin: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        let orders = records("purchase.order");
        for o in &orders {
            let origin = o["origin"].as_str().unwrap_or("<none>").to_string();
            by_origin.entry(origin).or_default().push(o);
        }
        let dups: Vec<_> = by_origin
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, v)| format!("{k}×{}", v.len()))
            .collect();
        assert!(dups.is_empty(), "duplicate Odoo orders: {dups:?}");
        let mut lines_of: HashMap<i64, Vec<(String, Decimal, Decimal)>> = HashMap::new();
        for l in records("purchase.order.line") {
            lines_of.entry(m2o(&l["order_id"])).or_default().push((
                product_code[&m2o(&l["product_id"])].clone(),
                dec(&l["product_qty"]),
                dec(&l["price_unit"]),
            ));
        }
        let local: HashMap<i64, (Option<String>, Option<i32>)> = self
            .db
            .client
            .query("SELECT id, sync_status, odoo_order_id FROM orders", &[])
            .await
            .expect("orders")
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        let mut missing = Vec::new();
        for (id, exp) in &self.expected {
            let Some(found) = by_origin.get(&exp.origin) else {
                missing.push(exp.origin.clone());
                continue;
            };
            let odoo = found[0];
            let odoo_id = odoo["id"].as_i64().unwrap();
            assert_eq!(
                partner_ref[&m2o(&odoo["partner_id"])],
                exp.vendor_ref,
                "vendor of {}",
                exp.origin
            );
            let mut got = lines_of.remove(&odoo_id).unwrap_or_default();
            got.sort();
            let mut want: Vec<_> = exp
                .lines
                .iter()
                .map(|(c, q, p)| (c.to_string(), *q, *p))
                .collect();
            want.sort();
            assert_eq!(got, want, "lines of {} (Odoo order {odoo_id})", exp.origin);
            let (status, written) = &local[id];
            assert_eq!(status.as_deref(), Some("SYNCED"), "local order {id}");
            assert_eq!(
                written.map(i64::from),
                Some(odoo_id),
                "Odoo id written back to local order {id}"
            );
        }
        assert!(missing.is_empty(), "missing Odoo orders: {missing:?}");
        assert_eq!(
            orders.len(),
            self.expected.len(),
            "Odoo holds only the expected orders: {:?}",
            by_origin.keys().collect::<Vec<_>>()
        );
        assert!(
            lines_of.is_empty(),
            "Odoo lines attached to no expected order: {lines_of:?}"
        );
    }
}

/// `{"error_rate": 1.0, "error_kind": "503"}`: an outage that counts its requests.
pub fn outage_spec(on: bool) -> Value {
    if on {
        json!({"error_rate": 1.0, "error_kind": "503"})
    } else {
        json!({"error_rate": 0.0})
    }
}
