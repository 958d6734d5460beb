//! `odoo-sync-worker check` and the configuration file, against real PostgreSQL and the Odoo
//! simulator: a healthy setup passes (exit 0); each broken part — Odoo's URL, the password, the
//! extension missing or of another version, privileges, Odoo access rights, unresolvable
//! references, an invalid config file — fails with its own message and fix.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use odoo_sync_tests::pg_cluster::TestDb;
use odoo_sync_tests::sim::{self, SimConfig};
use odoo_sync_worker::check::{self, CheckOptions, Report, Status};
use odoo_sync_worker::odoo::{OdooConfig, Secret, SecretKind};
use support::{setup, Env};

static FILE_N: AtomicU32 = AtomicU32::new(0);

/// A fresh file under the target's tmp dir with `text` and `mode`.
fn write_file(name: &str, text: &str, mode: u32) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "check_e2e_{}_{}_{name}",
        std::process::id(),
        FILE_N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, text).expect("write file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    path
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Runs `odoo-sync-worker check` against `env` with `extra` variables; exit code and output.
fn check_binary(env: &Env, extra: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut w = env.spawn_worker(&["check"], extra);
    let status = w
        .wait_for_exit(Duration::from_secs(90))
        .expect("check ends within 90 s");
    (status.code(), w.output())
}

fn odoo_config(env: &Env, login: &str, secret: &str, kind: SecretKind) -> OdooConfig {
    OdooConfig::new(&env.sim.url(), "odoo", login, Secret::new(secret), kind).expect("config")
}

async fn run_check(database_url: &str, odoo: OdooConfig) -> Report {
    check::run(&CheckOptions::new(
        "test",
        Ok(database_url.to_string()),
        Ok(odoo),
    ))
    .await
}

/// The one finding of `name` (or the one of `name` whose detail starts with `prefix`).
fn line<'a>(report: &'a Report, name: &str, prefix: &str) -> &'a check::Finding {
    let found: Vec<_> = report
        .of(name)
        .into_iter()
        .filter(|f| f.detail.starts_with(prefix))
        .collect();
    assert_eq!(found.len(), 1, "{name} {prefix}:\n{}", report.render());
    found[0]
}

fn assert_status(report: &Report, name: &str, prefix: &str, status: Status) {
    let f = line(report, name, prefix);
    assert_eq!(f.status, status, "{name}:\n{}", report.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_a_healthy_setup() {
    let mut env = setup("chk_ok", 19).await;
    // Orders waiting for a push: their suppliers and products are resolved by the check.
    env.insert_orders(0, 3, 2).await;
    let (code, out) = check_binary(&env, &[]);
    assert_eq!(code, Some(0), "{out}");
    for name in [
        "config",
        "postgres",
        "extension",
        "tracked_tables",
        "items_index",
        "privileges",
        "odoo.config",
        "odoo.reachable",
        "odoo.protocol",
        "odoo.login",
        "references",
    ] {
        assert!(
            out.contains(&format!("PASS  {name:<15} ")),
            "{name}:\n{out}"
        );
    }
    assert!(!out.contains("FAIL") && !out.contains("SKIP"), "{out}");
    assert!(
        out.contains(&format!(
            "odoo_sync {}, as this worker expects",
            env!("CARGO_PKG_VERSION")
        )),
        "{out}"
    );
    assert!(out.contains("JSON-2 (protocol auto"), "{out}");
    assert!(
        out.contains("PASS  odoo.access     purchase.order.line: read, create, write, unlink"),
        "{out}"
    );
    assert!(
        out.contains("supplier(s) and 6 product(s) of 3 order(s) waiting for a push all resolve"),
        "{out}"
    );
    assert!(out.contains("16 passed, 0 failed, 0 skipped"), "{out}");
    assert!(
        !out.contains(&env.api_key),
        "the API key is printed:\n{out}"
    );
    // The check pushed nothing.
    assert_eq!(env.calls("purchase.order.load").await, 0);
    assert_eq!(env.synced_count().await, 0);

    // Odoo 17 over JSON-RPC with a password: the same verdict.
    let sim17 = sim::spawn(SimConfig {
        version: 17,
        ..SimConfig::default()
    })
    .await
    .expect("simulator 17");
    let config = OdooConfig::new(
        &sim17.url(),
        "odoo",
        "admin",
        Secret::new("admin"),
        SecretKind::Password,
    )
    .expect("config");
    let report = run_check(&env.worker_url, config).await;
    assert!(report.passed(), "{}", report.render());
    assert!(
        line(&report, "odoo.protocol", "")
            .detail
            .starts_with("JSON-RPC (protocol auto: Odoo 17.0 has no JSON-2)"),
        "{}",
        report.render()
    );
    let _ = sim17.stop().await;

    // Without an index on the items' order column, every push reads the whole items table.
    env.db
        .client
        .batch_execute("DROP INDEX order_items_order_id")
        .await
        .expect("drop the index");
    let (code, out) = check_binary(&env, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL  items_index     public.order_items has no index on order_id"),
        "{out}"
    );
    assert!(
        out.contains("CREATE INDEX CONCURRENTLY ON public.order_items (order_id);"),
        "{out}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_an_unreachable_odoo() {
    let env = setup("chk_url", 19).await;
    let url = format!("http://127.0.0.1:{}", free_port());
    let (code, out) = check_binary(&env, &[("ODOO_URL", &url)]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("PASS  postgres "), "{out}");
    assert!(out.contains("PASS  extension "), "{out}");
    assert!(
        out.contains(&format!(
            "FAIL  odoo.reachable  cannot connect to Odoo at {url}"
        )),
        "{out}"
    );
    assert!(out.contains("-- fix: check odoo.url / ODOO_URL"), "{out}");
    for name in ["odoo.protocol", "odoo.login", "odoo.access", "odoo.fields"] {
        assert!(
            out.contains(&format!("SKIP  {name:<15} skipped: Odoo is unreachable")),
            "{name}:\n{out}"
        );
    }
    assert!(out.contains("SKIP  references "), "{out}");
    assert!(
        out.contains("odoo-sync-worker: check found problems"),
        "{out}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_wrong_password() {
    let env = setup("chk_pw", 19).await;
    // An empty variable counts as unset: the password is the credential.
    let (code, out) = check_binary(
        &env,
        &[("ODOO_API_KEY", ""), ("ODOO_PASSWORD", "pw-not-it-7x")],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("PASS  odoo.reachable  Odoo 19.0 answers"),
        "{out}"
    );
    assert!(
        out.contains("PASS  odoo.protocol   JSON-RPC (protocol auto: Odoo 19.0 offers JSON-2, but it takes an API key and a password is configured)"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  odoo.login      Odoo refused the login \"admin\" on database \"odoo\""),
        "{out}"
    );
    assert!(
        out.contains("and the password (odoo.password_file"),
        "{out}"
    );
    assert!(
        out.contains("SKIP  odoo.access     skipped: the login failed"),
        "{out}"
    );
    assert!(
        !out.contains("pw-not-it-7x"),
        "the password is printed:\n{out}"
    );

    // A wrong API key on JSON-2: the same finding.
    let report = run_check(
        &env.worker_url,
        odoo_config(&env, "admin", "not-the-key", SecretKind::ApiKey),
    )
    .await;
    assert_status(
        &report,
        "odoo.login",
        "Odoo refused the login",
        Status::Fail,
    );
    assert!(!report.render().contains("not-the-key"));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_database_without_the_extension() {
    let db = TestDb::new("chk_noext").await;
    db.client
        .batch_execute("DROP EXTENSION odoo_sync CASCADE")
        .await
        .expect("drop extension");
    let sim = sim::spawn(SimConfig::default()).await.expect("simulator");
    let config = OdooConfig::new(
        &sim.url(),
        "odoo",
        "admin",
        Secret::new(sim::DEFAULT_API_KEY),
        SecretKind::ApiKey,
    )
    .expect("config");
    let report = run_check(&db.conninfo(), config).await;
    assert!(!report.passed());
    let f = line(&report, "extension", "");
    assert_eq!(f.status, Status::Fail);
    assert_eq!(
        f.detail,
        format!("odoo_sync is not installed in database {}", db.name)
    );
    assert!(
        f.fix
            .as_deref()
            .is_some_and(|fix| fix.contains("CREATE EXTENSION odoo_sync;")),
        "{}",
        report.render()
    );
    assert_status(
        &report,
        "tracked_tables",
        "skipped: the extension is not installed",
        Status::Skip,
    );
    assert_status(
        &report,
        "privileges",
        "skipped: the extension is not installed",
        Status::Skip,
    );
    // Odoo is checked all the same.
    assert_status(&report, "odoo.login", "", Status::Pass);
    assert_status(&report, "references", "skipped: the database", Status::Skip);
    let _ = sim.stop().await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_an_extension_of_another_version() {
    let env = setup("chk_ver", 19).await;
    let expected = env!("CARGO_PKG_VERSION");
    // This scratch database only: the catalog says 0.0.9, as after an older CREATE EXTENSION.
    env.db
        .client
        .batch_execute(
            "UPDATE pg_catalog.pg_extension SET extversion = '0.0.9' WHERE extname = 'odoo_sync'",
        )
        .await
        .expect("fake an old version");
    let (code, out) = check_binary(&env, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "FAIL  extension       odoo_sync 0.0.9 is installed in database {}, but this worker is {expected}",
            env.db.name
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "ALTER EXTENSION odoo_sync UPDATE TO '{expected}';"
        )),
        "{out}"
    );
    // The schema is there: the other checks still run and pass.
    assert!(out.contains("PASS  privileges "), "{out}");
    assert!(out.contains("PASS  odoo.login "), "{out}");

    // The expected version is a parameter of the check: a newer extension than the worker.
    env.db
        .client
        .batch_execute(&format!(
            "UPDATE pg_catalog.pg_extension SET extversion = '{expected}' WHERE extname = 'odoo_sync'"
        ))
        .await
        .expect("restore the version");
    let mut options = CheckOptions::new(
        "test",
        Ok(env.worker_url.clone()),
        Ok(odoo_config(&env, "admin", &env.api_key, SecretKind::ApiKey)),
    );
    options.expected_version = "0.0.1".into();
    let report = check::run(&options).await;
    let f = line(&report, "extension", "");
    assert_eq!(f.status, Status::Fail);
    assert!(
        f.fix
            .as_deref()
            .is_some_and(|fix| fix.starts_with(&format!("run odoo-sync-worker {expected}"))),
        "{}",
        report.render()
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_odoo_rights_the_user_lacks() {
    let env = setup("chk_viewer", 19).await;
    // The simulator's `viewer` is refused purchase.order and purchase.order.line.
    let (code, out) = check_binary(
        &env,
        &[("ODOO_USER", "viewer"), ("ODOO_API_KEY", "viewer-api-key")],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("PASS  odoo.login      logged in as \"viewer\" (uid 3)"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  odoo.access     purchase.order: user \"viewer\" may not read, create, write -- fix: in Odoo, give \"viewer\" the group Purchase / User"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  odoo.access     purchase.order.line: user \"viewer\" may not read, create, write, unlink"),
        "{out}"
    );
    assert!(
        out.contains("PASS  odoo.access     res.partner: read"),
        "{out}"
    );
    assert!(
        out.contains("PASS  odoo.access     product.product: read"),
        "{out}"
    );

    // Over JSON-RPC with the password: the same answer.
    let report = run_check(
        &env.worker_url,
        odoo_config(&env, "viewer", "viewer", SecretKind::Password),
    )
    .await;
    assert_status(&report, "odoo.protocol", "JSON-RPC", Status::Pass);
    assert_status(&report, "odoo.access", "purchase.order: user", Status::Fail);
    assert_status(&report, "odoo.access", "res.partner: read", Status::Pass);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_missing_privileges_and_unknown_references() {
    let mut env = setup("chk_priv", 19).await;
    env.insert_orders(0, 2, 1).await;
    env.db
        .client
        .batch_execute(
            "INSERT INTO orders (id, order_number, supplier_id, supplier_name) VALUES (100, 'PO-X', 'V-NOPE', 'Nobody Ltd');
             INSERT INTO order_items (order_id, product_id, product_code, quantity, unit_price)
             VALUES (100, 'NO-SUCH-PRODUCT', 'NO-SUCH-PRODUCT', 1, 1);",
        )
        .await
        .expect("orders with unknown references");
    let admin = odoo_config(&env, "admin", &env.api_key, SecretKind::ApiKey);

    let report = run_check(&env.worker_url, admin.clone()).await;
    let f = line(&report, "references", "");
    assert_eq!(f.status, Status::Fail, "{}", report.render());
    assert!(
        f.detail
            .starts_with("1 of 3 order(s) waiting for a push cannot be pushed: "),
        "{}",
        f.detail
    );
    assert!(
        f.detail.contains("supplier 'V-NOPE' not found in Odoo"),
        "{}",
        f.detail
    );
    assert!(
        f.detail
            .contains("product 'NO-SUCH-PRODUCT' not found in Odoo"),
        "{}",
        f.detail
    );
    assert!(
        f.fix
            .as_deref()
            .is_some_and(|fix| fix.contains("odoo_sync.partner_map")),
        "{f:?}"
    );
    assert_status(&report, "privileges", "", Status::Pass);

    // A role that may only read: the privileges check names the functions and the grant.
    let reader = env.db.create_role("reader", &["odoo_sync_reader"]).await;
    let reader_url = format!("{} user={reader}", env.db.conninfo());
    let report = run_check(&reader_url, admin).await;
    let f = line(&report, "privileges", "");
    assert_eq!(f.status, Status::Fail);
    assert!(
        f.detail.starts_with(&format!(
            "role {reader} may not EXECUTE/use odoo_sync.claim_jobs, odoo_sync.extend_leases"
        )),
        "{}",
        f.detail
    );
    assert_eq!(
        f.fix.as_deref(),
        Some(
            format!("as a superuser or the extension's owner: GRANT odoo_sync_worker TO {reader};")
                .as_str()
        )
    );
    assert_status(
        &report,
        "tracked_tables",
        "1 tracked: orders + order_items",
        Status::Pass,
    );

    // Granted the named functions one by one but not the role: what else odoo_sync_worker may
    // run is missing, and named.
    let piecemeal = env.db.create_role("piecemeal", &["odoo_sync_reader"]).await;
    env.db
        .client
        .batch_execute(&format!(
            "GRANT EXECUTE ON FUNCTION odoo_sync.claim_jobs(text, integer, interval),
                 odoo_sync.extend_leases(text, bigint[], interval),
                 odoo_sync.complete_job(bigint, bigint, jsonb),
                 odoo_sync.fail_job(bigint, bigint, jsonb, boolean, interval),
                 odoo_sync.heartbeat(text, jsonb), odoo_sync.order_document(integer, text)
               TO {piecemeal};
             GRANT SELECT, INSERT ON odoo_sync.partner_map, odoo_sync.product_map TO {piecemeal};"
        ))
        .await
        .expect("piecemeal grants");
    let url = format!("{} user={piecemeal}", env.db.conninfo());
    let report = run_check(
        &url,
        odoo_config(&env, "admin", &env.api_key, SecretKind::ApiKey),
    )
    .await;
    let f = line(&report, "privileges", "");
    assert_eq!(f.status, Status::Fail, "{}", report.render());
    assert!(
        f.detail.contains("odoo_sync.release_jobs(text)"),
        "{}",
        f.detail
    );
    assert!(!f.detail.contains("claim_jobs"), "{}", f.detail);
    env.finish().await;
}

/// Runs the binary with only the variables given (plus PATH), stdout and stderr apart.
fn run_binary(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_odoo-sync-worker"));
    cmd.args(args).env_clear().stdin(Stdio::null());
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("run odoo-sync-worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_a_config_file() {
    let env = setup("chk_file", 19).await;
    let key = write_file("key", &format!("{}\n", env.api_key), 0o600);
    let config = write_file(
        "worker.toml",
        &format!(
            "[database]\nurl = \"{}\"\n\n[odoo]\nurl = \"{}\"\ndatabase = \"odoo\"\nuser = \"admin\"\napi_key_file = \"{}\"\n\n[worker]\nmetrics_addr = \"off\"\n",
            env.worker_url,
            env.sim.url(),
            key.display()
        ),
        0o640,
    );
    let config_arg = config.display().to_string();
    let out = run_binary(&["--config", &config_arg, "check"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!("PASS  config          config file {config_arg}\n")),
        "{stdout}"
    );
    // ODOO_SYNC_CONFIG names the file as well, and the environment wins over it.
    let out = run_binary(
        &["check"],
        &[
            ("ODOO_SYNC_CONFIG", &config_arg),
            ("ODOO_USER", "viewer"),
            ("ODOO_API_KEY", "viewer-api-key"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("PASS  config          config file {config_arg}; from the environment: ODOO_USER, ODOO_API_KEY")),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL  odoo.access     purchase.order: user \"viewer\""),
        "{stdout}"
    );
    env.finish().await;
}

#[test]
fn an_invalid_config_stops_the_worker_naming_the_key() {
    let cases = [
        (
            "[worker]\nclaim_size = 0\n",
            "config error: worker.claim_size = 0 (must be 1..1000)",
        ),
        (
            "[worker]\nclaim_sise = 10\n",
            "config error: unknown key worker.claim_sise in ",
        ),
        (
            "[odoo]\nprotocol = \"xmlrpc\"\n",
            "config error: odoo.protocol = \"xmlrpc\" (must be one of auto, jsonrpc, json2)",
        ),
    ];
    for (text, message) in cases {
        let path = write_file("bad.toml", text, 0o600);
        let arg = path.display().to_string();
        for command in ["run", "status", "sync", "check"] {
            let mut args = vec!["--config", arg.as_str(), command];
            if command == "sync" {
                args.push("1");
            }
            let out = run_binary(&args, &[("DATABASE_URL", "host=/nonexistent dbname=x")]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {text}: {stderr}");
            assert!(stderr.contains(message), "{command}: {stderr}");
        }
    }
    // The environment goes through the same checks, and check says it in its own format.
    let out = run_binary(&["check"], &[("ODOO_SYNC_FINISHERS", "99")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout.starts_with(
            "FAIL  config          ODOO_SYNC_FINISHERS (worker.finishers) = \"99\" (must be 0..16)"
        ),
        "{stdout}"
    );
    let out = run_binary(&["--config", "/nonexistent/worker.toml", "status"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("config error: cannot read the config file /nonexistent/worker.toml"),
        "{stderr}"
    );
}
