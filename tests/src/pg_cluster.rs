//! Databases for end-to-end tests.
//!
//! `make test` starts one private PostgreSQL cluster (scripts/pg.sh) and passes its address in
//! `ODOO_SYNC_TEST_PG`. Each test gets a database of its own with the extension created, so
//! tests run in parallel and leave nothing behind: `TestDb::finish` drops the database and the
//! roles the test made.

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
        let base = cluster_conninfo();
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
        );"
    )
}
