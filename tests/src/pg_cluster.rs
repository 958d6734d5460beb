//! Databases for end-to-end tests.
//!
//! `make test` starts one private PostgreSQL cluster (scripts/pg.sh) and passes its address in
//! `ODOO_SYNC_TEST_PG`. Each test gets a database of its own with the extension created, so
//! tests run in parallel and leave nothing behind: `TestDb::finish` drops the database and the
//! roles the test made.
//!
//! Tests that restart PostgreSQL or kill its backends must not do it to that shared cluster:
//! they start a [`PrivateCluster`] of their own.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::{Client, NoTls};

/// Connection string of the test cluster's maintenance database.
pub fn cluster_conninfo() -> String {
    std::env::var("ODOO_SYNC_TEST_PG").unwrap_or_else(|_| {
        panic!(
            "ODOO_SYNC_TEST_PG is not set: run the tests with `make test`, which starts the \
             private PostgreSQL cluster (or start it with scripts/pg.sh start and export \
             ODOO_SYNC_TEST_PG=\"$(scripts/pg.sh url)\")"
        )
    })
}

/// Opens a connection and drives it in the background.
pub async fn connect(conninfo: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {conninfo}: {e}"));
    tokio::spawn(async move {
        // The connection ends when the client is dropped; its error then is of no interest.
        let _ = connection.await;
    });
    client
}

/// Opens a connection that LISTENs on `channel`; the receiver yields each notification's
/// payload in commit order.
pub async fn listen(
    conninfo: &str,
    channel: &str,
) -> (Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {conninfo}: {e}"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .unwrap_or_else(|e| panic!("LISTEN {channel}: {e}"));
    (client, rx)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh database with `CREATE EXTENSION odoo_sync`, dropped by `finish`.
pub struct TestDb {
    /// Superuser connection to the test database.
    pub client: Client,
    /// Database name (also the prefix of the roles the test creates).
    pub name: String,
    base: String,
    roles: Vec<String>,
}

impl TestDb {
    /// Creates the database `t_<label>_<pid>_<n>` and the extension in it.
    pub async fn new(label: &str) -> TestDb {
        TestDb::new_in(&cluster_conninfo(), label).await
    }

    /// The same in another cluster (`base`: conninfo of its maintenance database), e.g. a
    /// [`PrivateCluster`] that a test restarts.
    pub async fn new_in(base: &str, label: &str) -> TestDb {
        let base = base.to_string();
        let name = format!(
            "t_{}_{}_{}",
            label,
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let admin = connect(&base).await;
        // Concurrent CREATE DATABASE from one template can collide ("source database is being
        // accessed by other users"); a short retry resolves it.
        let mut attempt = 0;
        while let Err(e) = admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
        {
            attempt += 1;
            assert!(attempt < 50, "create test database {name}: {e}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let client = connect(&format!("{base} dbname={name}")).await;
        client
            .batch_execute("CREATE EXTENSION odoo_sync")
            .await
            .expect("CREATE EXTENSION odoo_sync (is it installed? `make install`)");
        TestDb {
            client,
            name,
            base,
            roles: Vec::new(),
        }
    }

    /// Connection string of this database.
    pub fn conninfo(&self) -> String {
        format!("{} dbname={}", self.base, self.name)
    }

    /// Another superuser connection to this database.
    pub async fn connect(&self) -> Client {
        connect(&self.conninfo()).await
    }

    /// Creates a login role `<db>_<suffix>` (dropped by `finish`) and returns its name.
    pub async fn create_role(&mut self, suffix: &str, grants: &[&str]) -> String {
        let role = format!("{}_{}", self.name, suffix);
        let mut sql = format!("CREATE ROLE {role} LOGIN;");
        for g in grants {
            sql.push_str(&format!("GRANT {g} TO {role};"));
        }
        self.client.batch_execute(&sql).await.expect("create role");
        self.roles.push(role.clone());
        role
    }

    /// A connection to this database as `role`.
    pub async fn connect_as(&self, role: &str) -> Client {
        connect(&format!("{} user={role}", self.conninfo())).await
    }

    /// Drops the database and the roles of this test.
    pub async fn finish(self) {
        let TestDb {
            client,
            name,
            base,
            roles,
        } = self;
        drop(client);
        let admin = connect(&base).await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .expect("drop test database");
        for role in roles {
            admin
                .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
                .await
                .expect("drop test role");
        }
    }
}

/// The SQLSTATE and message of a database error, for asserting on errors.
pub fn db_error(err: &tokio_postgres::Error) -> (String, String) {
    match err.as_db_error() {
        Some(db) => (db.code().code().to_string(), db.message().to_string()),
        None => (String::new(), err.to_string()),
    }
}

/// The common application schema of DESIGN.md: `orders` and `order_items`, keyed by `key_type`
/// (uuid, bigint or text), with the write-back columns.
pub fn common_schema(key_type: &str) -> String {
    let default = match key_type {
        "uuid" => "DEFAULT gen_random_uuid()",
        "bigint" => "GENERATED BY DEFAULT AS IDENTITY",
        _ => "",
    };
    format!(
        "CREATE TABLE orders (
            id {key_type} PRIMARY KEY {default},
            order_number text,
            supplier_id text NOT NULL,
            supplier_name text,
            status text NOT NULL DEFAULT 'DRAFT',
            subtotal numeric(12,2),
            sales_tax numeric(12,2),
            grand_total numeric(12,2),
            notes text,
            requested_delivery_date date,
            approved_by text,
            approved_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            sync_status text,
            odoo_order_id integer,
            last_synced_at timestamptz
        );
        CREATE TABLE order_items (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            order_id {key_type} NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
            product_id text NOT NULL,
            product_name text,
            product_code text,
            quantity numeric(12,3) NOT NULL,
            unit_price numeric(12,2) NOT NULL,
            total_price numeric(12,2),
            notes text
        );
        CREATE INDEX order_items_order_id ON order_items (order_id);"
    )
}

/// A PostgreSQL 15 cluster of one test's own, started by `scripts/pg.sh` on a free port with its
/// own data directory, for tests that restart the server or terminate its backends (the cluster
/// of `ODOO_SYNC_TEST_PG` is shared by every test running at the same time). Stopped and
/// removed when dropped.
pub struct PrivateCluster {
    /// TCP port (the socket is in /tmp).
    pub port: u16,
    data: PathBuf,
}

impl PrivateCluster {
    /// initdb and start; panics with the server's output when that fails.
    pub fn start(label: &str) -> PrivateCluster {
        let port = free_port();
        let data = PathBuf::from(format!(
            "/tmp/odoo_sync_pg_{label}_{}_{port}",
            std::process::id()
        ));
        let cluster = PrivateCluster { port, data };
        cluster.pg_sh("start", &[]);
        cluster
    }

    /// Conninfo of the cluster's maintenance database, as superuser (for [`TestDb::new_in`]).
    pub fn conninfo(&self) -> String {
        format!("host=/tmp port={} user=postgres dbname=postgres", self.port)
    }

    /// Restarts the server, keeping the data: every session is terminated, as in a real
    /// restart. `immediate` crashes it instead (recovery at start).
    pub fn restart(&self, immediate: bool) {
        let mode = if immediate { "immediate" } else { "fast" };
        self.pg_sh("restart", &[("ODOO_SYNC_PG_RESTART_MODE", mode)]);
    }

    fn pg_sh(&self, command: &str, env: &[(&str, &str)]) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pg.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(command)
            .env("ODOO_SYNC_PG_PORT", self.port.to_string())
            .env("ODOO_SYNC_PG_DATA", &self.data)
            .envs(env.iter().copied())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
        assert!(
            out.status.success(),
            "scripts/pg.sh {command} (port {}): {}\n{}",
            self.port,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // pg_ctl stop by the data directory's pid file; never by process name.
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pg.sh");
        let _ = Command::new("bash")
            .arg(script)
            .arg("stop")
            .env("ODOO_SYNC_PG_PORT", self.port.to_string())
            .env("ODOO_SYNC_PG_DATA", &self.data)
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
        let _ = std::fs::remove_file(format!("{}.initdb.log", self.data.display()));
    }
}

/// A TCP port nobody listens on, whose Unix socket name in /tmp is free too.
fn free_port() -> u16 {
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("cannot find a free port: {e}"));
        if !std::path::Path::new(&format!("/tmp/.s.PGSQL.{port}")).exists() {
            return port;
        }
    }
    panic!("no free port for a private PostgreSQL cluster after 100 tries")
}
