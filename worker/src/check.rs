//! `odoo-sync-worker check`: a doctor. It looks at everything the worker needs — PostgreSQL,
//! the extension and its version, tracked tables, the role's privileges, Odoo's reachability,
//! protocol, credentials, access rights and fields, and whether the orders waiting for a push
//! name suppliers and products Odoo has — and says for each whether it is fine and, if not,
//! what to do about it.
//!
//! Checks go on after a failure when they can still say something; those that depend on a
//! failed one are reported as skipped, naming the cause. Nothing here writes to Odoo; the only
//! write to PostgreSQL is the resolver's, which stores the partner/product ids it finds in
//! `odoo_sync.partner_map` / `product_map` exactly as a push would.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio_postgres::Client;

use crate::odoo::{
    Domain, OdooClient, OdooConfig, OdooError, OdooVersion, Protocol, ProtocolChoice, SecretKind,
    Session,
};
use crate::push::order_push::text;
use crate::push::resolve::{Resolver, Wanted};

/// The functions the worker calls, with the privilege it needs on each.
pub const WORKER_FUNCTIONS: &[&str] = &[
    "claim_jobs",
    "extend_leases",
    "complete_job",
    "fail_job",
    "heartbeat",
    "order_document",
    "order_documents",
];

/// Fields of `purchase.order` the worker reads or writes.
pub const ORDER_FIELDS: &[&str] = &[
    "partner_id",
    "origin",
    "order_line",
    "state",
    "amount_untaxed",
    "amount_tax",
    "amount_total",
    "write_date",
];

/// Fields of `purchase.order.line` the worker reads or writes.
pub const LINE_FIELDS: &[&str] = &["product_id", "product_qty", "price_unit", "qty_received"];

/// The Odoo models the worker touches and the operations it needs on each: orders and lines
/// are loaded (create/write), confirmed or cancelled (write), removed lines deleted (unlink);
/// partners and products are only looked up.
pub const ODOO_RIGHTS: &[(&str, &[&str])] = &[
    ("purchase.order", &["read", "create", "write"]),
    (
        "purchase.order.line",
        &["read", "create", "write", "unlink"],
    ),
    ("res.partner", &["read"]),
    ("product.product", &["read"]),
];

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Pass,
    /// Broken: the worker cannot work (fully) until it is fixed.
    Fail,
    /// Not looked at, because something it depends on failed.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Stable name of the check (`postgres`, `extension`, `odoo.login`, ...).
    pub name: &'static str,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do, for a failure.
    pub fix: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}  {:<15} {}",
            self.status.label(),
            self.name,
            self.detail
        )?;
        if let Some(fix) = &self.fix {
            write!(f, " -- fix: {fix}")?;
        }
        Ok(())
    }
}

/// All findings, in the order the checks ran.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The findings.
    pub findings: Vec<Finding>,
}

impl Report {
    /// No check failed.
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.status != Status::Fail)
    }

    /// The findings of check `name`.
    pub fn of(&self, name: &str) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.name == name).collect()
    }

    /// One line per finding, then a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&f.to_string());
            out.push('\n');
        }
        let count = |s| self.findings.iter().filter(|f| f.status == s).count();
        out.push_str(&format!(
            "{} passed, {} failed, {} skipped\n",
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Skip)
        ));
        out
    }

    fn pass(&mut self, name: &'static str, detail: impl Into<String>) {
        self.findings.push(Finding {
            name,
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        });
    }

    fn fail(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.findings.push(Finding {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }

    fn skip(&mut self, name: &'static str, why: &str) {
        self.findings.push(Finding {
            name,
            status: Status::Skip,
            detail: format!("skipped: {why}"),
            fix: None,
        });
    }
}

/// What the checks look at.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Where the configuration came from, for the first line.
    pub config_source: String,
    /// The PostgreSQL connection string, or why there is none.
    pub database_url: Result<String, String>,
    /// The Odoo configuration, or why it cannot be built.
    pub odoo: Result<OdooConfig, String>,
    /// The extension version this worker was built for.
    pub expected_version: String,
    /// Most orders waiting for a push whose references are resolved.
    pub max_orders: i64,
    /// Bound on connecting to PostgreSQL.
    pub pg_timeout: Duration,
}

impl CheckOptions {
    /// Options for this worker's version, with the default bounds.
    pub fn new(
        config_source: impl Into<String>,
        database_url: Result<String, String>,
        odoo: Result<OdooConfig, String>,
    ) -> Self {
        CheckOptions {
            config_source: config_source.into(),
            database_url,
            odoo,
            expected_version: env!("CARGO_PKG_VERSION").to_string(),
            max_orders: 200,
            pg_timeout: Duration::from_secs(10),
        }
    }
}

/// The database error's message, detail and hint, or the error itself.
fn pg_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = db.message().to_string();
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            s
        }
        None => e.to_string(),
    }
}

/// What to do about a failed connection, from what PostgreSQL or the network said.
fn pg_connect_fix(message: &str) -> String {
    let m = message.to_ascii_lowercase();
    if m.contains("password authentication failed") || m.contains("no password supplied") {
        "check the user and password of database.url / DATABASE_URL (or the worker's ~/.pgpass)"
            .into()
    } else if m.contains("role") && m.contains("does not exist") {
        "create the login role (CREATE ROLE ... LOGIN; GRANT odoo_sync_worker TO ...) or fix user= in database.url / DATABASE_URL".into()
    } else if m.contains("database") && m.contains("does not exist") {
        "fix dbname= in database.url / DATABASE_URL: it must name the application's database".into()
    } else if m.contains("pg_hba.conf") {
        "allow this host and user in the server's pg_hba.conf, then reload PostgreSQL".into()
    } else {
        "check host= and port= of database.url / DATABASE_URL and that PostgreSQL is running and reachable from this host".into()
    }
}

async fn connect_pg(url: &str, timeout: Duration) -> Result<Client, String> {
    match tokio::time::timeout(timeout, crate::pg_tls::connect(url)).await {
        Err(_) => Err(format!("no answer from PostgreSQL within {timeout:?}")),
        Ok(Err(crate::pg_tls::ConnectError::Postgres(e))) => Err(pg_text(&e)),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok((client, connection))) => {
            tokio::spawn(async move {
                // The connection ends with the check; its error then says nothing new.
                let _ = connection.await;
            });
            Ok(client)
        }
    }
}

/// Orders `major.minor.patch` versions numerically; other text compares as text.
fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Runs every check and returns the report; never fails itself.
pub async fn run(options: &CheckOptions) -> Report {
    let mut r = Report::default();
    r.pass("config", options.config_source.clone());

    // PostgreSQL side.
    let pg = match &options.database_url {
        Err(why) => {
            r.fail(
                "postgres",
                why.clone(),
                "set it in the config file's [database] section or the environment (see packaging/worker.toml.example)",
            );
            None
        }
        Ok(url) => match connect_pg(url, options.pg_timeout).await {
            Ok(pg) => Some(pg),
            Err(message) => {
                let fix = pg_connect_fix(&message);
                r.fail(
                    "postgres",
                    format!("cannot connect to PostgreSQL: {message}"),
                    fix,
                );
                None
            }
        },
    };
    let mut db_ready = false;
    let mut role = String::new();
    if let Some(pg) = &pg {
        match pg
            .query_one(
                "SELECT current_user::text, current_database()::text, current_setting('server_version')",
                &[],
            )
            .await
        {
            Ok(row) => {
                role = row.try_get(0).unwrap_or_default();
                let database: String = row.try_get(1).unwrap_or_default();
                let version: String = row.try_get(2).unwrap_or_default();
                r.pass(
                    "postgres",
                    format!("connected to PostgreSQL {version}, database {database} as role {role}"),
                );
                db_ready = check_extension(&mut r, pg, &database, &options.expected_version).await;
            }
            Err(e) => r.fail(
                "postgres",
                format!("connected, but cannot query: {}", pg_text(&e)),
                "check that the server accepts queries (not in recovery or shutting down)",
            ),
        }
    }
    match (&pg, db_ready) {
        (Some(pg), true) => {
            check_tracked_tables(&mut r, pg).await;
            check_privileges(&mut r, pg, &role).await;
        }
        (Some(_), false) if !role.is_empty() => {
            r.skip("tracked_tables", "the extension is not installed");
            r.skip("privileges", "the extension is not installed");
        }
        _ => {
            r.skip("tracked_tables", "PostgreSQL is not reachable");
            r.skip("privileges", "PostgreSQL is not reachable");
        }
    }

    // Odoo side.
    let odoo = check_odoo(&mut r, &options.odoo).await;

    // Both sides: the references of the orders waiting for a push.
    match (&pg, db_ready, &odoo) {
        (Some(pg), true, Some(odoo)) => {
            check_references(&mut r, pg, odoo, options.max_orders).await
        }
        (_, _, None) => r.skip("references", "Odoo is not usable (see above)"),
        _ => r.skip("references", "the database is not usable (see above)"),
    }
    r
}

/// The extension is installed in the expected version; returns whether its schema is usable.
async fn check_extension(r: &mut Report, pg: &Client, database: &str, expected: &str) -> bool {
    let row = match pg
        .query_one(
            "SELECT (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'odoo_sync'),
                    (SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'odoo_sync')",
            &[],
        )
        .await
    {
        Ok(row) => row,
        Err(e) => {
            r.fail(
                "extension",
                format!("cannot read pg_extension: {}", pg_text(&e)),
                "connect as a role that may read the system catalogs",
            );
            return false;
        }
    };
    let installed: Option<String> = row.try_get(0).unwrap_or(None);
    let available: Option<String> = row.try_get(1).unwrap_or(None);
    match installed {
        None => {
            let fix = match available {
                Some(_) => format!(
                    "as a superuser, in database {database}: CREATE EXTENSION odoo_sync;"
                ),
                None => format!(
                    "install the odoo_sync {expected} extension files on the database server (make install, or the package's share/ and lib/ files), then as a superuser in database {database}: CREATE EXTENSION odoo_sync;"
                ),
            };
            r.fail(
                "extension",
                format!("odoo_sync is not installed in database {database}"),
                fix,
            );
            false
        }
        Some(v) if v == expected => {
            r.pass(
                "extension",
                format!("odoo_sync {v}, as this worker expects"),
            );
            true
        }
        Some(v) => {
            let fix = if version_key(&v) > version_key(expected) {
                format!("run odoo-sync-worker {v} (this one is {expected}), or install the extension {expected}")
            } else if available.as_deref() == Some(expected) {
                format!(
                    "as a superuser, in database {database}: ALTER EXTENSION odoo_sync UPDATE TO '{expected}';"
                )
            } else {
                format!(
                    "install the odoo_sync {expected} extension files on the database server, then as a superuser: ALTER EXTENSION odoo_sync UPDATE TO '{expected}'; (or run odoo-sync-worker {v})"
                )
            };
            r.fail(
                "extension",
                format!("odoo_sync {v} is installed in database {database}, but this worker is {expected}"),
                fix,
            );
            // The schema is there: the other database checks still say something useful.
            true
        }
    }
}

async fn check_tracked_tables(r: &mut Report, pg: &Client) {
    let rows = match pg
        .query(
            "SELECT t.id, t.orders_table::text, t.items_table::text,
                    EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.orders_table),
                    EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.items_table)
             FROM odoo_sync.tracked_tables t ORDER BY t.id",
            &[],
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            r.fail(
                "tracked_tables",
                format!("cannot read odoo_sync.tracked_tables: {}", pg_text(&e)),
                "connect as a member of odoo_sync_worker (GRANT odoo_sync_worker TO <login role>)",
            );
            return;
        }
    };
    if rows.is_empty() {
        r.fail(
            "tracked_tables",
            "no table is tracked: there is nothing to sync",
            "as the owner of the order tables, with odoo_sync_admin: SELECT odoo_sync.track_orders('orders', 'order_items');",
        );
        return;
    }
    let mut ok = Vec::new();
    let mut gone = Vec::new();
    for row in &rows {
        let id: i32 = row.try_get(0).unwrap_or_default();
        let orders: String = row.try_get(1).unwrap_or_default();
        let items: String = row.try_get(2).unwrap_or_default();
        let orders_ok: bool = row.try_get(3).unwrap_or(false);
        let items_ok: bool = row.try_get(4).unwrap_or(false);
        if orders_ok && items_ok {
            ok.push(format!("{orders} + {items}"));
        } else {
            let missing: Vec<&str> = [(orders_ok, "orders"), (items_ok, "items")]
                .iter()
                .filter(|(present, _)| !present)
                .map(|(_, what)| *what)
                .collect();
            gone.push(format!(
                "tracking {id} ({orders} + {items}): its {} table no longer exists",
                missing.join(" and ")
            ));
        }
    }
    if gone.is_empty() {
        r.pass(
            "tracked_tables",
            format!("{} tracked: {}", ok.len(), ok.join(", ")),
        );
        check_items_index(r, pg).await;
    } else {
        r.fail(
            "tracked_tables",
            gone.join("; "),
            "restore the table, or stop tracking it with odoo_sync.untrack_orders(...) as odoo_sync_admin",
        );
    }
}

/// What `odoo_sync.tracking_warnings()` says should be fixed (an items table without an index
/// on its order column: every push and pull of an order would read the whole table).
async fn check_items_index(r: &mut Report, pg: &Client) {
    let rows = match pg
        .query(
            "SELECT message, fix FROM odoo_sync.tracking_warnings()",
            &[],
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            r.fail(
                "items_index",
                format!("cannot read odoo_sync.tracking_warnings(): {}", pg_text(&e)),
                "connect as a member of odoo_sync_worker (GRANT odoo_sync_worker TO <login role>)",
            );
            return;
        }
    };
    if rows.is_empty() {
        r.pass(
            "items_index",
            "every items table has an index on its order column",
        );
        return;
    }
    let column = |i: usize| -> Vec<String> {
        rows.iter()
            .map(|row| row.try_get::<_, String>(i).unwrap_or_default())
            .collect()
    };
    r.fail(
        "items_index",
        column(0).join("; "),
        format!("as the table owner: {}", column(1).join(" ")),
    );
}

async fn check_privileges(r: &mut Report, pg: &Client, role: &str) {
    let names: Vec<&str> = WORKER_FUNCTIONS.to_vec();
    let rows = match pg
        .query(
            "SELECT f.name, p.oid IS NOT NULL,
                    COALESCE(pg_catalog.has_function_privilege(p.oid, 'EXECUTE'), false)
             FROM unnest($1::text[]) WITH ORDINALITY AS f(name, n)
             LEFT JOIN pg_catalog.pg_proc p
               ON p.proname = f.name
              AND p.pronamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'odoo_sync')
             ORDER BY f.n",
            &[&names],
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            r.fail(
                "privileges",
                format!("cannot read the privileges: {}", pg_text(&e)),
                "connect as a role that may read the system catalogs",
            );
            return;
        }
    };
    let mut missing = Vec::new();
    let mut denied = Vec::new();
    for row in &rows {
        let name: String = row.try_get(0).unwrap_or_default();
        let exists: bool = row.try_get(1).unwrap_or(false);
        let allowed: bool = row.try_get(2).unwrap_or(false);
        if !exists {
            missing.push(format!("odoo_sync.{name}"));
        } else if !allowed {
            denied.push(format!("odoo_sync.{name}"));
        }
    }
    // Whatever else the extension grants the worker role (the two-way sync's functions, and
    // those of later versions) is needed too.
    let others = pg
        .query(
            "SELECT p.oid::pg_catalog.regprocedure::text
             FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'odoo_sync')
               AND p.proname <> ALL($1)
               AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'odoo_sync_worker')
               AND pg_catalog.has_function_privilege('odoo_sync_worker', p.oid, 'EXECUTE')
               AND NOT pg_catalog.has_function_privilege(p.oid, 'EXECUTE')
             ORDER BY 1",
            &[&names],
        )
        .await;
    match others {
        Ok(rows) => {
            for row in rows {
                if let Ok(f) = row.try_get::<_, String>(0) {
                    denied.push(f);
                }
            }
        }
        Err(e) => denied.push(format!(
            "the functions of odoo_sync_worker ({})",
            pg_text(&e)
        )),
    }
    // Learned partner/product ids are stored by the worker itself.
    let maps = pg
        .query_one(
            "SELECT COALESCE(pg_catalog.has_table_privilege(pg_catalog.to_regclass('odoo_sync.partner_map'), 'INSERT'), false)
                AND COALESCE(pg_catalog.has_table_privilege(pg_catalog.to_regclass('odoo_sync.product_map'), 'INSERT'), false)",
            &[],
        )
        .await
        .and_then(|row| row.try_get::<_, bool>(0));
    match maps {
        Ok(true) => {}
        Ok(false) => denied.push("INSERT on odoo_sync.partner_map / product_map".into()),
        Err(e) => denied.push(format!("mapping tables ({})", pg_text(&e))),
    }
    if !missing.is_empty() {
        r.fail(
            "privileges",
            format!("the extension lacks {}", missing.join(", ")),
            "update the extension to this worker's version (see the extension check)",
        );
    } else if denied.is_empty() {
        // Everything is allowed to a superuser, which says nothing about the worker's role.
        let superuser = pg
            .query_one(
                "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .and_then(|row| row.try_get::<_, bool>(0))
            .unwrap_or(false);
        let note = if superuser {
            " (as a superuser: in production, connect as a login role that is a member of odoo_sync_worker only)"
        } else {
            ""
        };
        r.pass(
            "privileges",
            format!(
                "role {role} may run {} (and every function granted to odoo_sync_worker) and record partner/product mappings{note}",
                WORKER_FUNCTIONS.join(", ")
            ),
        );
    } else {
        r.fail(
            "privileges",
            format!("role {role} may not EXECUTE/use {}", denied.join(", ")),
            format!("as a superuser or the extension's owner: GRANT odoo_sync_worker TO {role};"),
        );
    }
}

/// The protocol the client will pick (the rule of `OdooClient::connect`), with the reason, or
/// why it cannot work.
fn expected_protocol(
    config: &OdooConfig,
    version: &OdooVersion,
) -> Result<(Protocol, String), String> {
    let key = config.secret_kind == SecretKind::ApiKey;
    match config.protocol {
        ProtocolChoice::JsonRpc => Ok((Protocol::JsonRpc, "protocol jsonrpc".into())),
        ProtocolChoice::Json2 if version.has_json2() => Ok((Protocol::Json2, "protocol json2".into())),
        ProtocolChoice::Json2 => Err(format!(
            "protocol json2 is set, but Odoo {version} has no JSON-2 (Odoo 19 or later)"
        )),
        ProtocolChoice::Auto if version.has_json2() && key => Ok((
            Protocol::Json2,
            format!("protocol auto: Odoo {version} offers JSON-2 and an API key is configured"),
        )),
        ProtocolChoice::Auto if version.has_json2() => Ok((
            Protocol::JsonRpc,
            format!("protocol auto: Odoo {version} offers JSON-2, but it takes an API key and a password is configured"),
        )),
        ProtocolChoice::Auto => Ok((
            Protocol::JsonRpc,
            format!("protocol auto: Odoo {version} has no JSON-2"),
        )),
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::JsonRpc => "JSON-RPC",
        Protocol::Json2 => "JSON-2",
    }
}

/// What to do when Odoo cannot be reached.
fn reach_fix(e: &OdooError, config: &OdooConfig) -> String {
    match e {
        OdooError::Connect { detail, .. } if detail.to_ascii_lowercase().contains("certificate") => {
            "Odoo's TLS certificate is not trusted: if it comes from a private CA, set odoo.ca_file / ODOO_CA_FILE to that CA's PEM file".into()
        }
        OdooError::Connect { .. } => format!(
            "check odoo.url / ODOO_URL ({}: scheme, host, port) and that Odoo runs and is reachable from this host (DNS, firewall, proxy)",
            config.url
        ),
        OdooError::Timeout { .. } => "Odoo did not answer in time: check the network path and Odoo's load, or raise odoo.connect_timeout_secs / odoo.request_timeout_secs".into(),
        OdooError::Http { .. } | OdooError::Protocol { .. } => format!(
            "{} does not answer like Odoo: set odoo.url / ODOO_URL to Odoo's base URL (e.g. https://odoo.example.com, without /web or /odoo)",
            config.url
        ),
        _ => "check odoo.url / ODOO_URL and Odoo's logs".into(),
    }
}

/// What to do when the login fails.
fn login_fix(e: &OdooError, config: &OdooConfig) -> String {
    let credential = match config.secret_kind {
        SecretKind::ApiKey => "the API key (odoo.api_key_file / ODOO_API_KEY_FILE / ODOO_API_KEY)",
        SecretKind::Password => {
            "the password (odoo.password_file / ODOO_PASSWORD_FILE / ODOO_PASSWORD)"
        }
    };
    match e {
        OdooError::AuthenticationFailed { .. } => format!(
            "check odoo.user / ODOO_USER ({:?}), odoo.database / ODOO_DB ({:?}) and {credential}; an API key must belong to that user, and keys on Odoo 19 expire after at most 3 months: create a new one under Preferences -> Account Security",
            config.login, config.database
        ),
        OdooError::Config(_) => "set odoo.user / ODOO_USER to the login of the API key's owner".into(),
        e if e.odoo_message().is_some_and(|m| m.contains("does not exist")) => format!(
            "check odoo.database / ODOO_DB ({:?}): Odoo has no such database",
            config.database
        ),
        e if e.is_transient() => "Odoo failed while logging in: retry, and check Odoo's logs".into(),
        _ => format!("check odoo.user / ODOO_USER and {credential}"),
    }
}

/// Configuration, reachability, protocol and login; the logged-in client when all pass, after
/// the access and field checks.
async fn check_odoo(r: &mut Report, config: &Result<OdooConfig, String>) -> Option<OdooClient> {
    const LATER: [&str; 5] = [
        "odoo.reachable",
        "odoo.protocol",
        "odoo.login",
        "odoo.access",
        "odoo.fields",
    ];
    let skip_from = |r: &mut Report, first: usize, why: &str| {
        for name in &LATER[first..] {
            r.skip(name, why);
        }
    };
    let config = match config {
        Ok(c) => c,
        Err(why) => {
            r.fail(
                "odoo.config",
                why.clone(),
                "set it in the config file's [odoo] section or the environment (see packaging/worker.toml.example)",
            );
            skip_from(r, 0, "the Odoo settings are incomplete");
            return None;
        }
    };
    let client = match OdooClient::new(config.clone()) {
        Ok(c) => c,
        Err(e) => {
            r.fail(
                "odoo.config",
                e.to_string(),
                "fix the [odoo] settings (odoo.protocol json2 needs an API key; odoo.ca_file must be a readable PEM file)",
            );
            skip_from(r, 0, "the Odoo settings are unusable");
            return None;
        }
    };
    r.pass(
        "odoo.config",
        format!(
            "{} database {:?} as {:?} with {}",
            config.url,
            config.database,
            config.login,
            match config.secret_kind {
                SecretKind::ApiKey => "an API key",
                SecretKind::Password => "a password",
            }
        ),
    );
    let version = match client.server_version().await {
        Ok(v) => {
            r.pass(
                "odoo.reachable",
                format!("Odoo {v} answers at {}", config.url),
            );
            v
        }
        Err(e) => {
            r.fail("odoo.reachable", e.to_string(), reach_fix(&e, config));
            skip_from(r, 1, "Odoo is unreachable");
            return None;
        }
    };
    let (protocol, why) = match expected_protocol(config, &version) {
        Ok(p) => p,
        Err(why) => {
            r.fail(
                "odoo.protocol",
                why,
                "set odoo.protocol / ODOO_PROTOCOL to auto or jsonrpc",
            );
            skip_from(r, 2, "no usable protocol");
            return None;
        }
    };
    let session: Session = match client.connect().await {
        Ok(s) => s.clone(),
        Err(e) => {
            r.pass(
                "odoo.protocol",
                format!("{} ({why})", protocol_name(protocol)),
            );
            r.fail("odoo.login", e.to_string(), login_fix(&e, config));
            skip_from(r, 3, "the login failed");
            return None;
        }
    };
    let mut detail = format!("{} ({why})", protocol_name(session.protocol));
    if session.protocol == Protocol::JsonRpc && version.has_json2() {
        detail.push_str("; JSON-RPC is deprecated since Odoo 19 and removed in 22: an API key with protocol auto moves to JSON-2");
    }
    r.pass("odoo.protocol", detail);
    r.pass(
        "odoo.login",
        format!(
            "logged in as {:?} (uid {}) on database {:?}",
            config.login, session.uid, config.database
        ),
    );
    check_access(r, &client, session.protocol, &config.login).await;
    check_fields(r, &client, &config.database).await;
    Some(client)
}

/// Whether Odoo's method is missing (older or newer Odoo), as opposed to failing.
fn method_missing(e: &OdooError) -> bool {
    e.odoo_name() == Some("builtins.AttributeError") || e.http_status() == Some(404)
}

/// Whether the logged-in user may do `operation` on `model`, asked without doing it:
/// `check_access_rights(operation, raise_exception=False)` (every model on Odoo 8–19), else
/// `has_access(operation)` on an empty recordset (18+, where the former is deprecated), else,
/// for reading only, a search of one record.
async fn may(
    odoo: &OdooClient,
    protocol: Protocol,
    model: &str,
    operation: &str,
) -> Result<bool, OdooError> {
    let mut kwargs = Map::new();
    kwargs.insert("operation".into(), json!(operation));
    kwargs.insert("raise_exception".into(), json!(false));
    match odoo
        .execute(model, "check_access_rights", vec![], kwargs)
        .await
    {
        Ok(Some(Value::Bool(b))) => return Ok(b),
        Ok(other) => {
            return Err(OdooError::Protocol {
                url: format!("{model}.check_access_rights"),
                status: 200,
                detail: "expected true or false".into(),
                excerpt: other.map(|v| v.to_string()).unwrap_or_default(),
            })
        }
        Err(e) if method_missing(&e) => {}
        Err(e) => return Err(e),
    }
    let mut kwargs = Map::new();
    kwargs.insert("operation".into(), json!(operation));
    let args = match protocol {
        // An empty recordset: the model-level answer.
        Protocol::JsonRpc => vec![json!([])],
        Protocol::Json2 => {
            kwargs.insert("ids".into(), json!([]));
            vec![]
        }
    };
    match odoo.execute(model, "has_access", args, kwargs).await {
        Ok(Some(Value::Bool(b))) => return Ok(b),
        Ok(_) => {}
        Err(e) if method_missing(&e) => {}
        Err(e) => return Err(e),
    }
    if operation != "read" {
        return Err(OdooError::Unsupported(format!(
            "Odoo offers neither check_access_rights nor has_access on {model}: {operation} rights cannot be asked"
        )));
    }
    match odoo.search(model, &Domain::all(), Some(1), None).await {
        Ok(_) => Ok(true),
        Err(e) if e.odoo_name() == Some("odoo.exceptions.AccessError") => Ok(false),
        Err(e) => Err(e),
    }
}

async fn check_access(r: &mut Report, odoo: &OdooClient, protocol: Protocol, login: &str) {
    for (model, operations) in ODOO_RIGHTS {
        let mut denied = Vec::new();
        let mut errors = Vec::new();
        for op in *operations {
            match may(odoo, protocol, model, op).await {
                Ok(true) => {}
                Ok(false) => denied.push(*op),
                Err(e) => errors.push(format!("{op}: {e}")),
            }
        }
        if !errors.is_empty() {
            r.fail(
                "odoo.access",
                format!("{model}: cannot ask for rights: {}", errors.join("; ")),
                "check Odoo's logs",
            );
        } else if denied.is_empty() {
            r.pass("odoo.access", format!("{model}: {}", operations.join(", ")));
        } else {
            let group = if model.starts_with("purchase.") {
                "Purchase / User"
            } else {
                "Purchase / User (which includes reading contacts and products)"
            };
            r.fail(
                "odoo.access",
                format!(
                    "{model}: user {login:?} may not {}",
                    denied.join(", ")
                ),
                format!(
                    "in Odoo, give {login:?} the group {group} (Settings -> Users & Companies -> Users), or access rights for {} on {model}",
                    denied.join(", ")
                ),
            );
        }
    }
}

async fn check_fields(r: &mut Report, odoo: &OdooClient, database: &str) {
    let mut missing = Vec::new();
    let mut errors = Vec::new();
    for (model, wanted) in [
        ("purchase.order", ORDER_FIELDS),
        ("purchase.order.line", LINE_FIELDS),
    ] {
        match odoo.fields_get(model, &["type"]).await {
            Ok(fields) => {
                for f in wanted {
                    if !fields.contains_key(*f) {
                        missing.push(format!("{model}.{f}"));
                    }
                }
            }
            Err(e) => errors.push(format!("{model}: {e}")),
        }
    }
    if !errors.is_empty() {
        r.fail(
            "odoo.fields",
            format!("cannot read the field definitions: {}", errors.join("; ")),
            "give the Odoo user read access to purchase.order and purchase.order.line (see odoo.access)",
        );
    } else if missing.is_empty() {
        r.pass(
            "odoo.fields",
            format!(
                "purchase.order and purchase.order.line have the {} fields the worker uses",
                ORDER_FIELDS.len() + LINE_FIELDS.len()
            ),
        );
    } else {
        r.fail(
            "odoo.fields",
            format!("Odoo lacks {}", missing.join(", ")),
            format!(
                "install (or upgrade) the Purchase app (module purchase) in Odoo database {database:?}, and make sure no customisation hides these fields from the user"
            ),
        );
    }
}

/// The suppliers and products of the orders waiting for a push resolve in Odoo.
async fn check_references(r: &mut Report, pg: &Client, odoo: &OdooClient, max_orders: i64) {
    let waiting = pg
        .query(
            "SELECT t.id, q.local_order_id
             FROM odoo_sync.queue q
             JOIN odoo_sync.tracked_tables t ON t.orders_table = q.orders_table
             WHERE q.kind = 'push' AND q.local_order_id IS NOT NULL
             ORDER BY q.job_id
             LIMIT $1",
            &[&max_orders],
        )
        .await;
    let total = pg
        .query_one(
            "SELECT count(*) FROM odoo_sync.queue WHERE kind = 'push'",
            &[],
        )
        .await
        .and_then(|row| row.try_get::<_, i64>(0));
    let (rows, total) = match (waiting, total) {
        (Ok(rows), Ok(total)) => (rows, total),
        (Err(e), _) | (_, Err(e)) => {
            r.fail(
                "references",
                format!("cannot read the queue: {}", pg_text(&e)),
                "connect as a member of odoo_sync_worker (GRANT odoo_sync_worker TO <login role>)",
            );
            return;
        }
    };
    if rows.is_empty() {
        r.pass("references", "no order is waiting for a push");
        return;
    }
    let pairs: Vec<(i32, String)> = rows
        .iter()
        .filter_map(|row| Some((row.try_get(0).ok()?, row.try_get(1).ok()?)))
        .collect();
    let docs = match crate::queue::order_documents(pg, &pairs).await {
        Ok(docs) => docs,
        Err(e) => {
            r.fail(
                "references",
                format!("cannot read the waiting orders: {}", pg_text(&e)),
                "run odoo-sync-worker status and look at the last errors; the order tables may have changed shape since track_orders",
            );
            return;
        }
    };
    // Which orders name each reference, to say how many orders a missing one holds up.
    let mut suppliers: BTreeMap<String, (Wanted, BTreeSet<String>)> = BTreeMap::new();
    let mut products: BTreeMap<String, (Wanted, BTreeSet<String>)> = BTreeMap::new();
    let mut live = 0;
    for (doc, (_, key)) in docs.iter().zip(&pairs) {
        if doc["deleted"].as_bool().unwrap_or(false) || doc["order"].is_null() {
            continue;
        }
        live += 1;
        if let Some(s) = text(&doc["order"]["supplier_id"]) {
            suppliers
                .entry(s.clone())
                .or_insert_with(|| {
                    (
                        Wanted {
                            key: s.clone(),
                            code: s.clone(),
                            name: text(&doc["order"]["supplier_name"]),
                        },
                        BTreeSet::new(),
                    )
                })
                .1
                .insert(key.clone());
        }
        for item in doc["items"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let Some(p) = text(&item["product_id"]) else {
                continue;
            };
            let code = text(&item["product_code"])
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| p.clone());
            products
                .entry(p.clone())
                .or_insert_with(|| {
                    (
                        Wanted {
                            key: p.clone(),
                            code,
                            name: text(&item["product_name"]),
                        },
                        BTreeSet::new(),
                    )
                })
                .1
                .insert(key.clone());
        }
    }
    let mut resolver = Resolver::new();
    let wanted_s: Vec<Wanted> = suppliers.values().map(|(w, _)| w.clone()).collect();
    let wanted_p: Vec<Wanted> = products.values().map(|(w, _)| w.clone()).collect();
    let unresolved_s = resolver.partners_many(pg, odoo, &wanted_s).await;
    let unresolved_p = resolver.products_many(pg, odoo, &wanted_p).await;
    let (unresolved_s, unresolved_p) = match (unresolved_s, unresolved_p) {
        (Ok(s), Ok(p)) => (s, p),
        (Err(e), _) | (_, Err(e)) => {
            r.fail(
                "references",
                format!("cannot resolve suppliers and products: {e}"),
                "see the odoo.access and privileges checks",
            );
            return;
        }
    };
    let scope = if total > pairs.len() as i64 {
        format!(
            "the first {} of {total} orders waiting for a push",
            pairs.len()
        )
    } else {
        format!("{live} order(s) waiting for a push")
    };
    if unresolved_s.is_empty() && unresolved_p.is_empty() {
        r.pass(
            "references",
            format!(
                "the {} supplier(s) and {} product(s) of {scope} all resolve in Odoo",
                suppliers.len(),
                products.len()
            ),
        );
        return;
    }
    let mut problems = Vec::new();
    let mut blocked: BTreeSet<&String> = BTreeSet::new();
    for (key, message) in &unresolved_s {
        if let Some((_, orders)) = suppliers.get(key) {
            blocked.extend(orders);
            problems.push(format!("{message}, used by {} order(s)", orders.len()));
        }
    }
    for (key, message) in &unresolved_p {
        if let Some((_, orders)) = products.get(key) {
            blocked.extend(orders);
            problems.push(format!("{message}, used by {} order(s)", orders.len()));
        }
    }
    problems.sort();
    let shown = problems.len().min(5);
    let more = if problems.len() > shown {
        format!("; and {} more", problems.len() - shown)
    } else {
        String::new()
    };
    r.fail(
        "references",
        format!(
            "{} of {scope} cannot be pushed: {}{more}",
            blocked.len(),
            problems[..shown].join("; ")
        ),
        "create them in Odoo (vendor Internal Reference = the local supplier id, product Internal Reference = the local product code), or map them as odoo_sync_admin: INSERT INTO odoo_sync.partner_map (local_supplier_id, odoo_partner_id) VALUES ('<supplier>', <res.partner id>); likewise odoo_sync.product_map (local_product_id, odoo_product_id)",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_lines() {
        let f = Finding {
            name: "extension",
            status: Status::Fail,
            detail: "odoo_sync 0.0.9 is installed".into(),
            fix: Some("ALTER EXTENSION odoo_sync UPDATE TO '0.2.0';".into()),
        };
        assert_eq!(
            f.to_string(),
            "FAIL  extension       odoo_sync 0.0.9 is installed -- fix: ALTER EXTENSION odoo_sync UPDATE TO '0.2.0';"
        );
        let mut r = Report::default();
        r.pass("config", "environment");
        assert!(r.passed());
        r.skip("odoo.login", "Odoo is unreachable");
        assert!(r.passed());
        r.fail("postgres", "down", "start it");
        assert!(!r.passed());
        assert!(r.render().ends_with("1 passed, 1 failed, 1 skipped\n"));
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_key("0.10.0") > version_key("0.9.1"));
        assert!(version_key("0.1.0") == version_key("0.1.0"));
    }

    #[test]
    fn protocol_choice_follows_the_client() {
        let v19 = OdooVersion::from_value(&json!({"server_version_info": [19, 0]})).unwrap();
        let v17 = OdooVersion::from_value(&json!({"server_version_info": [17, 0]})).unwrap();
        let mut c = OdooConfig::new(
            "http://h",
            "d",
            "u",
            crate::odoo::Secret::new("k"),
            SecretKind::ApiKey,
        )
        .unwrap();
        assert_eq!(expected_protocol(&c, &v19).unwrap().0, Protocol::Json2);
        assert_eq!(expected_protocol(&c, &v17).unwrap().0, Protocol::JsonRpc);
        c.secret_kind = SecretKind::Password;
        assert_eq!(expected_protocol(&c, &v19).unwrap().0, Protocol::JsonRpc);
        c.protocol = ProtocolChoice::Json2;
        assert!(expected_protocol(&c, &v17).is_err());
    }
}
