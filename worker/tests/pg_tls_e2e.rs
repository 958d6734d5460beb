//! TLS between the worker and PostgreSQL, against the real test cluster with TLS switched on
//! (a private CA made here, a server certificate for "localhost" only). Proves: `sslmode=require`
//! connects encrypted, a configured CA verifies both the chain and the host name, a wrong CA or
//! host name is refused, `sslmode=disable` stays plain, the binary takes `DATABASE_CA_FILE`, and
//! a SCRAM login over TLS is bound to the server's certificate (`channel_binding=require`).

use std::path::{Path, PathBuf};
use std::process::Command;

use odoo_sync_tests::pg_cluster::TestDb;
use odoo_sync_worker::pg_tls::{self, PgTls};
use tokio_postgres::Client;

/// A CA and a server certificate for "localhost" signed by it, as PEM.
struct Certs {
    ca: String,
    server_cert: String,
    server_key: String,
}

fn certs(server_names: &[&str]) -> Certs {
    certs_signed_with(server_names, &rcgen::PKCS_ECDSA_P256_SHA256)
}

/// Like `certs`, with the CA's key (and so the server certificate's signature) of `algorithm`.
fn certs_signed_with(
    server_names: &[&str],
    algorithm: &'static rcgen::SignatureAlgorithm,
) -> Certs {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "odoo_sync PostgreSQL test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate_for(algorithm).expect("CA key");
    let ca = CertifiedIssuer::self_signed(ca, ca_key).expect("CA");
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(
        server_names
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>(),
    )
    .expect("server params");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca).expect("server cert");
    Certs {
        ca: ca.pem(),
        server_cert: cert.pem(),
        server_key: key.serialize_pem(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// The cluster runs as `postgres` when the tests run as root (scripts/pg.sh): it must own the
/// key, which it refuses unless only its owner can read it.
fn hand_to_server(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let root = Command::new("id").arg("-u").output().expect("id -u");
    if String::from_utf8_lossy(&root.stdout).trim() == "0" {
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success(), "chown {}", path.display());
    }
}

/// The test database's connection string over TCP to `host`, with `sslmode`.
fn tcp_url(db: &TestDb, host: &str, sslmode: &str) -> String {
    let unix = db.conninfo();
    let rest: Vec<&str> = unix
        .split_whitespace()
        .filter(|kv| !kv.starts_with("host="))
        .collect();
    format!("host={host} {} sslmode={sslmode}", rest.join(" "))
}

async fn connect(url: &str, tls: &PgTls) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tls.clone()).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn encrypted(client: &Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

async fn set_server_tls(admin: &Client, on: Option<(&Path, &Path)>) {
    // One statement at a time: ALTER SYSTEM refuses to run inside a transaction block.
    let statements = match on {
        Some((cert, key)) => vec![
            format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
            format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
            "ALTER SYSTEM SET ssl = on".to_string(),
        ],
        None => vec![
            "ALTER SYSTEM RESET ssl".to_string(),
            "ALTER SYSTEM RESET ssl_cert_file".to_string(),
            "ALTER SYSTEM RESET ssl_key_file".to_string(),
        ],
    };
    for sql in statements
        .iter()
        .map(String::as_str)
        .chain(["SELECT pg_reload_conf()"])
    {
        admin.batch_execute(sql).await.expect("server TLS settings");
    }
    // The postmaster applies a reload asynchronously; new sessions show when it has.
    let want = if on.is_some() { "on" } else { "off" };
    for _ in 0..100 {
        let row = admin.query_one("SHOW ssl", &[]).await.expect("SHOW ssl");
        if row.get::<_, String>(0) == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server did not switch ssl {want}");
}

/// A role that logs in with a SCRAM password over TLS from loopback: pg_hba.conf lines of
/// its own, first in the file and marked, so they come out again (also after a crashed run).
const SCRAM_ROLE: &str = "odoo_sync_tls_scram";
const SCRAM_PASSWORD: &str = "binding-test-secret";
const HBA_MARK: &str = "# odoo_sync pg_tls_e2e";

async fn set_scram_login(admin: &Client, on: bool) {
    let hba: String = admin
        .query_one("SHOW hba_file", &[])
        .await
        .expect("hba_file")
        .get(0);
    let text = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.ends_with(HBA_MARK))
        .map(String::from)
        .collect();
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {SCRAM_ROLE}"))
        .await
        .expect("drop the SCRAM role");
    if on {
        admin
            .batch_execute(&format!(
                "SET password_encryption = 'scram-sha-256';
                 CREATE ROLE {SCRAM_ROLE} LOGIN PASSWORD '{SCRAM_PASSWORD}'"
            ))
            .await
            .expect("create the SCRAM role");
        lines.insert(
            0,
            format!("hostssl all {SCRAM_ROLE} 127.0.0.1/32 scram-sha-256 {HBA_MARK}"),
        );
    }
    std::fs::write(&hba, lines.join("\n") + "\n").expect("write pg_hba.conf");
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");
}

/// The connection string of the SCRAM role over TLS to localhost, with `channel_binding`.
fn scram_url(db: &TestDb, channel_binding: &str) -> String {
    let url: Vec<String> = tcp_url(db, "localhost", "require")
        .split_whitespace()
        .filter(|kv| !kv.starts_with("user="))
        .map(String::from)
        .collect();
    format!(
        "{} user={SCRAM_ROLE} password={SCRAM_PASSWORD} channel_binding={channel_binding}",
        url.join(" ")
    )
}

/// Connects, retrying while the postmaster applies a reload (pg_hba.conf, a new certificate)
/// asynchronously: until then a login is refused, or meets the old certificate.
async fn connect_after_reload(url: &str, tls: &PgTls) -> Result<Client, tokio_postgres::Error> {
    let mut last = None;
    for _ in 0..100 {
        match connect(url, tls).await {
            Ok(client) => return Ok(client),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(last.expect("at least one attempt"))
}

#[tokio::test]
async fn the_worker_speaks_tls_to_postgresql_and_verifies_when_given_a_ca() {
    let db = TestDb::new("pg_tls").await;
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pg_tls_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let server = certs(&["localhost"]);
    let cert = write(&dir, "server.crt", &server.server_cert);
    let key = write(&dir, "server.key", &server.server_key);
    hand_to_server(&cert);
    hand_to_server(&key);
    let ca = write(&dir, "ca.pem", &server.ca);
    let stranger = write(&dir, "other-ca.pem", &certs(&["localhost"]).ca);
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod dir");
    set_server_tls(&db.client, Some((&cert, &key))).await;

    // No CA configured: encrypted, like libpq's sslmode=require.
    let encrypt_only = PgTls::new(None).expect("TLS without CA");
    assert!(!encrypt_only.verifies_server());
    let c = connect(&tcp_url(&db, "127.0.0.1", "require"), &encrypt_only)
        .await
        .expect("sslmode=require connects");
    assert!(encrypted(&c).await, "the session is encrypted");
    // The default (prefer) takes TLS when the server offers it.
    let c = connect(&tcp_url(&db, "127.0.0.1", "prefer"), &encrypt_only)
        .await
        .expect("sslmode=prefer connects");
    assert!(encrypted(&c).await);
    // disable stays plain.
    let c = connect(&tcp_url(&db, "127.0.0.1", "disable"), &encrypt_only)
        .await
        .expect("sslmode=disable connects");
    assert!(!encrypted(&c).await, "sslmode=disable is not encrypted");

    // With the right CA and the certificate's host name: verified and encrypted.
    let verifying = PgTls::new(Some(&ca)).expect("TLS with CA");
    assert!(verifying.verifies_server());
    let c = connect(&tcp_url(&db, "localhost", "require"), &verifying)
        .await
        .expect("verified connection");
    assert!(encrypted(&c).await);
    // Right CA, wrong host name (the certificate names only "localhost"): refused.
    let wrong_host = connect(&tcp_url(&db, "127.0.0.1", "require"), &verifying).await;
    let e = wrong_host.expect_err("a certificate for another host is refused");
    assert!(format!("{e:?}").contains("NotValidForName"), "{e:?}");
    // Another CA: refused.
    let other = PgTls::new(Some(&stranger)).expect("TLS with another CA");
    let e = connect(&tcp_url(&db, "localhost", "require"), &other)
        .await
        .expect_err("a certificate from an unknown CA is refused");
    assert!(format!("{e:?}").contains("InvalidCertificate"), "{e:?}");

    // SCRAM over TLS is bound to the certificate the session saw (tls-server-end-point): the
    // server checks our hash of its certificate, and `require` refuses plain SCRAM. Also for a
    // certificate signed with ECDSA-SHA384, whose binding hash is SHA-384.
    set_scram_login(&db.client, true).await;
    for tls in [&encrypt_only, &verifying] {
        let c = connect_after_reload(&scram_url(&db, "require"), tls)
            .await
            .expect("SCRAM with channel binding over TLS");
        assert!(encrypted(&c).await);
    }
    let sha384 = certs_signed_with(&["localhost"], &rcgen::PKCS_ECDSA_P384_SHA384);
    let cert384 = write(&dir, "server384.crt", &sha384.server_cert);
    let key384 = write(&dir, "server384.key", &sha384.server_key);
    hand_to_server(&cert384);
    hand_to_server(&key384);
    set_server_tls(&db.client, Some((&cert384, &key384))).await;
    let verifying384 =
        PgTls::new(Some(&write(&dir, "ca384.pem", &sha384.ca))).expect("TLS with CA 384");
    connect_after_reload(&tcp_url(&db, "localhost", "require"), &verifying384)
        .await
        .expect("the server switches to the SHA-384 certificate");
    connect_after_reload(&scram_url(&db, "require"), &encrypt_only)
        .await
        .expect("SCRAM with a SHA-384 channel binding");
    set_scram_login(&db.client, false).await;
    set_server_tls(&db.client, Some((&cert, &key))).await;
    connect_after_reload(&tcp_url(&db, "localhost", "require"), &verifying)
        .await
        .expect("the server switches back to the first certificate");

    // A CA file that is not one: a configuration error naming the file.
    let junk = write(&dir, "junk.pem", "not a certificate\n");
    let e = PgTls::new(Some(&junk)).err().expect("junk CA file refused");
    assert!(e.to_string().contains("junk.pem"), "{e}");
    assert!(PgTls::new(Some(&dir.join("missing.pem"))).is_err());

    // The binary takes the CA from its config file (database.ca_file) or DATABASE_CA_FILE.
    let worker = env!("CARGO_BIN_EXE_odoo-sync-worker");
    let run = |config: Option<&Path>, ca_env: Option<&Path>| {
        let mut cmd = Command::new(worker);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        } else {
            cmd.env("DATABASE_URL", tcp_url(&db, "localhost", "require"));
        }
        if let Some(ca) = ca_env {
            cmd.env("DATABASE_CA_FILE", ca);
        }
        cmd.arg("status").output().expect("run the worker")
    };
    let config_with = |name: &str, ca: &Path| {
        write(
            &dir,
            name,
            &format!(
                "[database]\nurl = \"{}\"\nca_file = \"{}\"\n",
                tcp_url(&db, "localhost", "prefer"),
                ca.display()
            ),
        )
    };
    let ok = run(Some(&config_with("good.toml", &ca)), None);
    assert!(
        ok.status.success(),
        "status over verified TLS: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = run(Some(&config_with("stranger.toml", &stranger)), None);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(
            "cannot connect to PostgreSQL (database.url / DATABASE_URL): error performing TLS handshake: invalid peer certificate"
        ),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let by_env = run(None, Some(&ca));
    assert!(
        by_env.status.success(),
        "{}",
        String::from_utf8_lossy(&by_env.stderr)
    );
    let misconfigured = run(None, Some(&junk));
    assert_eq!(misconfigured.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&misconfigured.stderr).contains("DATABASE_CA_FILE"));

    // The worker's own connect, with a CA configured for this process: the default `prefer`
    // becomes `require`, so a server that stops offering TLS is refused, never downgraded to
    // plain text; a Unix socket ignores sslmode, as libpq does.
    pg_tls::configure(Some(&ca)).expect("configure the process");
    let (c, connection) = pg_tls::connect(&tcp_url(&db, "localhost", "prefer"))
        .await
        .expect("verified connection through pg_tls::connect");
    tokio::spawn(connection);
    assert!(encrypted(&c).await);
    let unix = format!("{} sslmode=require", db.conninfo());
    let (c, connection) = pg_tls::connect(&unix)
        .await
        .expect("a Unix socket connects whatever sslmode says");
    tokio::spawn(connection);
    assert!(!encrypted(&c).await);
    // Only an address, no host name: TLS is still used, with the address as the name the
    // certificate must carry (this one names only "localhost", so it is refused).
    let by_address = format!(
        "hostaddr=127.0.0.1 {}",
        tcp_url(&db, "localhost", "prefer").replace("host=localhost ", "")
    );
    let e = pg_tls::connect(&by_address)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("not valid for name \"127.0.0.1\""), "{e}");
    set_server_tls(&db.client, None).await;
    let downgraded = pg_tls::connect(&tcp_url(&db, "localhost", "prefer")).await;
    assert!(
        downgraded.is_err(),
        "a server without TLS is refused once a CA is configured"
    );

    let _ = std::fs::remove_dir_all(&dir);
    db.finish().await;
}
