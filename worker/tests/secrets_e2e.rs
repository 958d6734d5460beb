//! The Odoo credential never leaves the worker: a real `odoo-sync-worker run` pushes orders
//! through a proxy that echoes the request (credential included) into its 502 pages, at
//! RUST_LOG=debug, with /metrics on; then a wrong credential is tried. The secret appears in
//! no table of the database, no log line, no error, no /metrics or /healthz body, no query
//! the server saw, and not in the process's command line. And TLS is verified: a server whose
//! certificate comes from an unknown CA, or names another host, is refused; trusting the CA
//! with ODOO_CA_FILE makes the same server work.
//!
//! faults_e2e.rs already checks the API key at RUST_LOG=trace against a well-behaved
//! simulator; this file adds the password, a hostile proxy, every table, /metrics, the
//! command line and TLS.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use odoo_sync_tests::pg_cluster::{common_schema, TestDb};
use odoo_sync_tests::sim::{self, SimConfig, SimHandle};
use odoo_sync_worker::odoo::{Domain, OdooClient, OdooConfig, OdooError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "sekret-KEY-4711";
const PASSWORD: &str = "sekret-PASS-4711";
const WRONG: &str = "wrong-sekret-0815";

/// Kills the worker on every path out of the test.
struct Worker(tokio::process::Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("secrets_e2e_{}_{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

// ---------------------------------------------------------------------------------------------
// A proxy that betrays its clients

/// Reads one HTTP/1.1 request (head and Content-Length body).
async fn read_request(socket: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = socket.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some((head, buf[end + 4..end + 4 + length].to_vec()));
        }
    }
}

/// A reverse proxy to `upstream`, one request per connection. The first `echoes` requests
/// whose head or body mentions `load` get a 502 page quoting the request: its Authorization
/// header first, then its body, so a bearer key or a JSON-RPC password lands within the first
/// few hundred characters, which the client quotes in its errors.
async fn echoing_proxy(
    upstream: std::net::SocketAddr,
    echoes: usize,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let echoed = Arc::new(AtomicUsize::new(0));
    let counter = echoed.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Some((head, body)) = read_request(&mut client).await else {
                    return;
                };
                let mentions_load =
                    head.contains("/load") || body.windows(6).any(|w| w == b"\"load\"");
                if mentions_load && counter.fetch_add(1, Ordering::SeqCst) < echoes {
                    let auth = head
                        .lines()
                        .find(|l| l.to_ascii_lowercase().starts_with("authorization"))
                        .unwrap_or("");
                    let page = format!(
                        "<html><body>502 upstream failed for {auth} {} -- {head}</body></html>",
                        String::from_utf8_lossy(&body)
                    );
                    let reply = format!(
                        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                        page.len()
                    );
                    let _ = client.write_all(reply.as_bytes()).await;
                    let _ = client.shutdown().await;
                    return;
                }
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    return;
                };
                // One request per upstream connection: ask the upstream to close after it.
                let mut lines = head.splitn(2, "\r\n");
                let first = lines.next().unwrap_or("");
                let rest = lines.next().unwrap_or("");
                let request = format!("{first}\r\nConnection: close\r\n{rest}\r\n\r\n");
                if up.write_all(request.as_bytes()).await.is_err()
                    || up.write_all(&body).await.is_err()
                {
                    return;
                }
                let mut response = Vec::new();
                let _ = up.read_to_end(&mut response).await;
                let _ = client.write_all(&response).await;
                let _ = client.shutdown().await;
            });
        }
    });
    (url, echoed)
}

// ---------------------------------------------------------------------------------------------
// The scenario

struct Scenario {
    /// Odoo version the simulator imitates (19: JSON-2 with the key; 17: JSON-RPC).
    version: u8,
    /// The credential the simulator accepts and the worker is given.
    secret: &'static str,
    /// `(variable, value)` giving the worker its credential; a `_FILE` variable names a file
    /// holding the secret.
    credential: fn(&std::path::Path) -> Vec<(&'static str, String)>,
    /// `(variable, value)` giving the worker a wrong credential.
    wrong: Vec<(&'static str, String)>,
    /// Whether the secret stays out of the process environment too (file variables).
    environ_clean: bool,
}

struct Env {
    db: TestDb,
    sim: SimHandle,
    proxy: String,
    echoed: Arc<AtomicUsize>,
    worker_url: String,
}

async fn setup(label: &str, version: u8, secret: &str) -> Env {
    let mut db = TestDb::new(label).await;
    db.client
        .batch_execute(&format!(
            "{}
             SELECT odoo_sync.track_orders('orders', 'order_items');
             INSERT INTO orders (id, order_number, supplier_id, supplier_name)
             SELECT g, 'PO-SECRET-' || g, 'V-GEMINI', 'Gemini Furniture' FROM generate_series(1, 3) g;
             INSERT INTO order_items (order_id, product_id, product_code, quantity, unit_price)
             SELECT o.id, p, p, 2, 12.50 FROM orders o, unnest(ARRAY['FURN_7777', 'FURN_0002']) p;
             SELECT odoo_sync.update_settings('{{\"backoff_base_seconds\": 0.2, \"backoff_max_seconds\": 1}}');",
            common_schema("bigint")
        ))
        .await
        .expect("schema and orders");
    let role = db.create_role("worker", &["odoo_sync_worker"]).await;
    // `odoo-sync-worker sync` requests the push itself, which the worker role may not.
    db.client
        .batch_execute(&format!(
            "GRANT EXECUTE ON FUNCTION odoo_sync.sync_order(text), odoo_sync.sync_order(bigint) TO {role}"
        ))
        .await
        .expect("grant sync_order");
    let worker_url = format!("{} user={role}", db.conninfo());
    let sim = sim::spawn(SimConfig {
        version,
        password: secret.to_string(),
        api_key: secret.to_string(),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let (proxy, echoed) = echoing_proxy(sim.addr, 2).await;
    Env {
        db,
        sim,
        proxy,
        echoed,
        worker_url,
    }
}

fn command(
    env: &Env,
    odoo_url: &str,
    credential: &[(&str, String)],
    log: &std::path::Path,
) -> tokio::process::Command {
    let file = std::fs::File::create(log).expect("log file");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_odoo-sync-worker"));
    cmd.env("DATABASE_URL", &env.worker_url)
        .env("ODOO_URL", odoo_url)
        .env("ODOO_DB", "odoo")
        .env("ODOO_USER", "admin")
        .env("RUST_LOG", "debug")
        .env("RUST_BACKTRACE", "1")
        .env("ODOO_SYNC_METRICS_ADDR", "off");
    for var in [
        "ODOO_API_KEY",
        "ODOO_API_KEY_FILE",
        "ODOO_PASSWORD",
        "ODOO_PASSWORD_FILE",
        "ODOO_PROTOCOL",
        "ODOO_CA_FILE",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in credential {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .kill_on_drop(true);
    cmd
}

async fn get(url: &str) -> String {
    match reqwest::get(url).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Every row of every table outside the system schemas, as text, one table after another.
async fn dump_all_tables(db: &TestDb) -> (String, usize) {
    let tables: Vec<String> = db
        .client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1",
            &[],
        )
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut dump = String::new();
    for t in &tables {
        let rows: String = db
            .client
            .query_one(
                &format!("SELECT coalesce(string_agg(x::text, E'\\n'), '') FROM {t} x"),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("dump {t}: {e}"))
            .get(0);
        dump.push_str(&format!("== {t}\n{rows}\n"));
    }
    (dump, tables.len())
}

fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        if let Some(at) = text.find(s) {
            let from = text[..at]
                .char_indices()
                .rev()
                .nth(200)
                .map_or(0, |(i, _)| i);
            panic!(
                "{what} holds the secret {s:?}: …{}…",
                &text[from..(at + s.len()).min(text.len())]
            );
        }
    }
}

async fn run_scenario(label: &str, s: Scenario) {
    let env = setup(label, s.version, s.secret).await;
    let dir = scratch(label);
    let credential = (s.credential)(&dir);
    let secrets = [s.secret, WRONG];
    let port = free_port();
    let log = dir.join("run.log");
    let mut cmd = command(&env, &env.proxy, &credential, &log);
    cmd.arg("run")
        .env("ODOO_SYNC_METRICS_ADDR", format!("127.0.0.1:{port}"));
    let mut worker = Worker(cmd.spawn().expect("start the worker"));
    let pid = worker.0.id().expect("pid");

    let deadline = Instant::now() + Duration::from_secs(60);
    while count(
        &env.db,
        "SELECT count(*) FROM orders WHERE sync_status = 'SYNCED'",
    )
    .await
        < 3
    {
        if let Ok(Some(status)) = worker.0.try_wait() {
            panic!(
                "the worker exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "not synced within 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // While it runs: what `ps` shows, what the process environment holds, what an operator
    // and Prometheus read, and what the database server sees.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("odoo-sync-worker"), "{cmdline}");
    assert_clean("the command line", &cmdline, &secrets);
    let environ =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).expect("environ"))
            .into_owned();
    if s.environ_clean {
        assert_clean(
            "the environment (secret given as a file)",
            &environ,
            &secrets,
        );
    } else {
        assert!(
            environ.contains(s.secret),
            "the secret is in the environment, as configured"
        );
    }
    let metrics = get(&format!("http://127.0.0.1:{port}/metrics")).await;
    assert!(metrics.contains("odoo_sync_rpc_errors_total"), "{metrics}");
    assert_clean("/metrics", &metrics, &secrets);
    let health = get(&format!("http://127.0.0.1:{port}/healthz")).await;
    assert_clean("/healthz", &health, &secrets);
    let activity: String = env
        .db
        .client
        .query_one(
            "SELECT coalesce(string_agg(coalesce(query, '') || ' ' || coalesce(application_name, ''), E'\\n'), '') FROM pg_stat_activity",
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .get(0);
    assert_clean("pg_stat_activity", &activity, &secrets);
    drop(worker);

    // The proxy really put the secret in front of the worker, and the worker cut it out of
    // what it kept.
    assert!(
        env.echoed.load(Ordering::SeqCst) >= 2,
        "the proxy echoed no request"
    );
    let redacted = count(
        &env.db,
        "SELECT count(*) FROM odoo_sync.sync_log WHERE NOT success AND error::text LIKE '%502%' AND error::text LIKE '%***%'",
    )
    .await;
    assert!(
        redacted >= 1,
        "no failed attempt quotes the echoed (redacted) request"
    );

    // A wrong credential: `sync` of an order fails its login and says so.
    env.db
        .client
        .execute("UPDATE orders SET notes = 'again' WHERE id = 1", &[])
        .await
        .expect("change");
    let wrong_log = dir.join("wrong.log");
    let status = command(&env, &env.sim.url(), &s.wrong, &wrong_log)
        .args(["sync", "1"])
        .status()
        .await
        .expect("sync");
    let wrong_out = std::fs::read_to_string(&wrong_log).unwrap_or_default();
    assert!(!status.success(), "a wrong credential fails:\n{wrong_out}");
    assert!(wrong_out.contains("refused the login"), "{wrong_out}");

    let run_out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        run_out.contains("DEBUG"),
        "the run was logged at debug level"
    );
    assert!(run_out.contains("502"), "the echoed 502 reached the log");
    assert_clean("the run log", &run_out, &secrets);
    assert_clean("the wrong-credential output", &wrong_out, &secrets);
    let (dump, tables) = dump_all_tables(&env.db).await;
    assert!(
        dump.contains("PO-SECRET-1") && tables >= 12,
        "{tables} tables dumped"
    );
    assert_clean("the database", &dump, &secrets);
    // And the server's own log (errors quote statements and their parameters).
    let server_log: String = env
        .db
        .client
        .query_one("SELECT pg_read_file('server.log')", &[])
        .await
        .expect("server log")
        .get(0);
    assert_clean("PostgreSQL's log", &server_log, &secrets);
    println!(
        "{label}: {} load calls through the proxy (2 echoed), {redacted} redacted errors kept, {tables} tables, {} log bytes, {} metrics bytes: no secret",
        env.echoed.load(Ordering::SeqCst),
        run_out.len(),
        metrics.len()
    );
    let Env { db, sim, .. } = env;
    let _ = sim.stop().await;
    db.finish().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Odoo 19, JSON-2: the API key from a file, in the bearer header the proxy echoes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_leaves_the_worker() {
    run_scenario(
        "sec_key",
        Scenario {
            version: 19,
            secret: KEY,
            credential: |dir| {
                let path = dir.join("api_key");
                std::fs::write(&path, format!("{KEY}\n")).expect("key file");
                vec![("ODOO_API_KEY_FILE", path.display().to_string())]
            },
            wrong: vec![("ODOO_API_KEY", WRONG.to_string())],
            environ_clean: true,
        },
    )
    .await;
}

/// Odoo 17, JSON-RPC: the password from the environment, in every execute_kw body the proxy
/// echoes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_never_leaves_the_worker() {
    run_scenario(
        "sec_pass",
        Scenario {
            version: 17,
            secret: PASSWORD,
            credential: |_| vec![("ODOO_PASSWORD", PASSWORD.to_string())],
            wrong: vec![("ODOO_PASSWORD", WRONG.to_string())],
            environ_clean: false,
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// TLS

struct Tls {
    ca_pem: String,
    /// Certificate for localhost and 127.0.0.1, signed by the CA.
    good: tokio_rustls::TlsAcceptor,
    /// Certificate for another host name, signed by the same CA.
    other_host: tokio_rustls::TlsAcceptor,
}

fn tls() -> Tls {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::{crypto::ring, ServerConfig};

    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "odoo_sync test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key")).expect("CA");
    let acceptor = |names: Vec<String>| {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca).expect("leaf");
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    };
    Tls {
        ca_pem: ca.pem(),
        good: acceptor(vec!["localhost".into(), "127.0.0.1".into()]),
        other_host: acceptor(vec!["odoo.example.test".into()]),
    }
}

/// An HTTPS front for `upstream`: TLS with `acceptor`, then bytes both ways. Returns the port
/// and a count of handshakes the client refused to finish.
async fn https_front(
    acceptor: tokio_rustls::TlsAcceptor,
    upstream: std::net::SocketAddr,
) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let refused = Arc::new(AtomicUsize::new(0));
    let counter = refused.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    counter.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                if let Ok(mut up) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    (port, refused)
}

/// Waits up to 2 s for `counter` to count something: the server learns of an abandoned
/// handshake a moment after the client has given up.
async fn eventually(counter: &AtomicUsize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while counter.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "{what}: not seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn odoo_config(url: &str, ca_file: Option<&std::path::Path>) -> Result<OdooConfig, OdooError> {
    let vars = [
        ("ODOO_URL", url.to_string()),
        ("ODOO_DB", "odoo".to_string()),
        ("ODOO_USER", "admin".to_string()),
        ("ODOO_API_KEY", sim::DEFAULT_API_KEY.to_string()),
        ("ODOO_REQUEST_TIMEOUT_SECS", "5".to_string()),
    ];
    OdooConfig::from_lookup(|k| {
        if k == "ODOO_CA_FILE" {
            return ca_file.map(|p| p.display().to_string());
        }
        vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
}

/// A certificate from a private CA is refused by default (the webpki roots do not know it),
/// accepted once ODOO_CA_FILE names the CA, and refused again, CA trusted, when it names
/// another host. The worker binary itself syncs an order over that TLS with ODOO_CA_FILE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_and_a_private_ca_is_trusted_only_when_configured() {
    let sim = sim::spawn(SimConfig::default()).await.expect("simulator");
    let tls = tls();
    let dir = scratch("tls");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &tls.ca_pem).expect("CA file");
    let (port, refused) = https_front(tls.good.clone(), sim.addr).await;
    let (other_port, other_refused) = https_front(tls.other_host.clone(), sim.addr).await;
    let url = format!("https://localhost:{port}");

    let search =
        |c: OdooClient| async move { c.search("res.partner", &Domain::all(), Some(1), None).await };
    let untrusted = OdooClient::new(odoo_config(&url, None).expect("config")).expect("client");
    let e = search(untrusted)
        .await
        .expect_err("an unknown CA is refused");
    let shown = format!("{e}");
    assert!(matches!(e, OdooError::Connect { .. }), "{e:?}");
    assert!(
        shown.to_lowercase().contains("certificate"),
        "the error says why: {shown}"
    );
    println!("default trust: {shown} (transient: {})", e.is_transient());
    eventually(&refused, "the client abandoned the handshake").await;

    let trusted =
        OdooClient::new(odoo_config(&url, Some(&ca_file)).expect("config")).expect("client");
    let ids = search(trusted)
        .await
        .expect("the private CA is trusted when configured");
    assert_eq!(ids.len(), 1);
    let by_ip = OdooClient::new(
        odoo_config(&format!("https://127.0.0.1:{port}"), Some(&ca_file)).expect("config"),
    )
    .expect("client");
    search(by_ip)
        .await
        .expect("an IP address in the certificate is accepted");

    let wrong_host = OdooClient::new(
        odoo_config(&format!("https://localhost:{other_port}"), Some(&ca_file)).expect("config"),
    )
    .expect("client");
    let e = search(wrong_host)
        .await
        .expect_err("a certificate for another host is refused");
    let shown = format!("{e}");
    assert!(matches!(e, OdooError::Connect { .. }), "{e:?}");
    assert!(shown.to_lowercase().contains("certificate"), "{shown}");
    eventually(&other_refused, "the client abandoned the handshake").await;
    println!("other host, CA trusted: {shown}");

    // The worker binary, configured by its environment.
    let mut db = TestDb::new("sec_tls").await;
    db.client
        .batch_execute(&format!(
            "{}
             SELECT odoo_sync.track_orders('orders', 'order_items');
             INSERT INTO orders (id, order_number, supplier_id, supplier_name) VALUES (1, 'PO-TLS', 'V-GEMINI', 'Gemini Furniture');
             INSERT INTO order_items (order_id, product_id, product_code, quantity, unit_price) VALUES (1, 'FURN_7777', 'FURN_7777', 1, 10);",
            common_schema("bigint")
        ))
        .await
        .expect("order");
    let role = db.create_role("worker", &["odoo_sync_worker"]).await;
    db.client
        .batch_execute(&format!(
            "GRANT EXECUTE ON FUNCTION odoo_sync.sync_order(text), odoo_sync.sync_order(bigint) TO {role}"
        ))
        .await
        .expect("grant sync_order");
    let sync = |ca: Option<PathBuf>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_odoo-sync-worker"));
        cmd.args(["sync", "1"])
            .env("DATABASE_URL", format!("{} user={role}", db.conninfo()))
            .env("ODOO_URL", &url)
            .env("ODOO_DB", "odoo")
            .env("ODOO_USER", "admin")
            .env("ODOO_API_KEY", sim::DEFAULT_API_KEY)
            .env("ODOO_REQUEST_TIMEOUT_SECS", "5")
            .env("ODOO_SYNC_METRICS_ADDR", "off")
            .env_remove("ODOO_PASSWORD")
            .env_remove("ODOO_API_KEY_FILE")
            .env_remove("ODOO_PROTOCOL")
            .env_remove("ODOO_CA_FILE")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(ca) = ca {
            cmd.env("ODOO_CA_FILE", ca);
        }
        cmd
    };
    let out = tokio::time::timeout(Duration::from_secs(60), sync(None).output())
        .await
        .expect("sync ends")
        .expect("sync runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "an untrusted certificate fails the sync:\n{text}"
    );
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        sync(Some(ca_file.clone())).output(),
    )
    .await
    .expect("sync ends")
    .expect("sync runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "with ODOO_CA_FILE the sync works:\n{text}"
    );
    let status: Option<String> = db
        .client
        .query_one("SELECT sync_status FROM orders WHERE id = 1", &[])
        .await
        .expect("status")
        .get(0);
    assert_eq!(status.as_deref(), Some("SYNCED"));
    db.finish().await;
    let _ = sim.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
