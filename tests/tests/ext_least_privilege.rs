//! Least privilege, derived from the catalog rather than listed by hand, so that a function or
//! table added later is held to the same rules: what PUBLIC and each role may execute and read,
//! that every SECURITY DEFINER function pins a safe search_path, and that a caller who plants
//! functions, operators and temporary views first in its search_path never gets them run by
//! any function it may call. ext_privileges.rs holds the hand-written per-role checks.

use std::collections::BTreeSet;

use odoo_sync_tests::pg_cluster::{common_schema, db_error, TestDb};
use tokio_postgres::Client;

/// Base tables a role may ever read directly: the tracking registry and the setting and column
/// specs (documentation), and the partner/product maps the worker and admin maintain. Jobs,
/// their payloads and history, events, order state, settings, heartbeats and conflicts are
/// read through views and functions only.
const READABLE_TABLES: &[&str] = &[
    "tracked_tables",
    "setting_spec",
    "column_spec",
    "partner_map",
    "product_map",
];
/// Base tables a role may ever write directly.
const WRITABLE_TABLES: &[&str] = &["partner_map", "product_map"];
/// Internal helpers a role may execute: the views call them with the reader's privileges.
const INTERNAL_FOR_READERS: &[&str] = &["_setting", "_current_version"];

struct Roles {
    reader: String,
    worker: String,
    admin: String,
    app: String,
}

async fn setup(label: &str) -> (TestDb, Roles) {
    let mut db = TestDb::new(label).await;
    db.client
        .batch_execute(&format!(
            "{}
             SELECT odoo_sync.track_orders('orders', 'order_items');
             INSERT INTO orders (order_number, supplier_id) SELECT 'PO-' || g, 'S' FROM generate_series(1, 4) g;",
            common_schema("bigint")
        ))
        .await
        .unwrap();
    let roles = Roles {
        reader: db.create_role("reader", &["odoo_sync_reader"]).await,
        worker: db.create_role("worker", &["odoo_sync_worker"]).await,
        admin: db.create_role("admin", &["odoo_sync_admin"]).await,
        app: db.create_role("app", &[]).await,
    };
    db.client
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON orders, order_items TO {app};",
            app = roles.app
        ))
        .await
        .unwrap();
    (db, roles)
}

async fn names(client: &Client, sql: &str, role: &str) -> BTreeSet<String> {
    client
        .query(sql, &[&role])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Functions of odoo_sync that `role` ('public' for PUBLIC) may execute.
async fn executable(client: &Client, role: &str) -> BTreeSet<String> {
    names(
        client,
        "SELECT p.oid::regprocedure::text FROM pg_proc p
         WHERE p.pronamespace = 'odoo_sync'::regnamespace AND has_function_privilege($1, p.oid, 'EXECUTE')",
        role,
    )
    .await
}

/// Relations of odoo_sync on which `role` holds `privilege`, with their kind (r table, v view).
async fn relations(client: &Client, role: &str, privilege: &str) -> BTreeSet<String> {
    names(
        client,
        &format!(
            "SELECT c.relkind::text || ' ' || c.relname FROM pg_class c
             WHERE c.relnamespace = 'odoo_sync'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
               AND has_table_privilege($1, c.oid, '{privilege}')"
        ),
        role,
    )
    .await
}

async fn assert_denied(client: &Client, sql: &str) {
    let err = client.query(sql, &[]).await.map(|_| ()).expect_err(sql);
    let (code, msg) = db_error(&err);
    assert_eq!(code, "42501", "{sql}: {msg}");
}

/// The privilege matrix, printed for a reviewer, and held to the rules: PUBLIC and a role
/// granted nothing can execute and read nothing; no role writes more than the maps or reads a
/// table holding payloads, state or settings; no role executes an internal helper other than
/// the two the views need; the role hierarchy is reader ⊂ worker, reader ⊂ admin.
#[tokio::test]
async fn privileges_follow_the_rules_for_every_function_and_table() {
    let (db, roles) = setup("lp_matrix").await;
    let c = &db.client;
    let public = executable(c, "public").await;
    println!(
        "functions executable by PUBLIC ({}): {public:?}",
        public.len()
    );
    assert!(public.is_empty(), "PUBLIC may execute {public:?}");
    for privilege in ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"] {
        let rels = relations(c, "public", privilege).await;
        assert!(rels.is_empty(), "PUBLIC has {privilege} on {rels:?}");
    }
    let usage: bool = c
        .query_one(
            "SELECT has_schema_privilege('public', 'odoo_sync', 'USAGE') OR has_schema_privilege('public', 'odoo_sync', 'CREATE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!usage, "PUBLIC has USAGE or CREATE on schema odoo_sync");
    let app = executable(c, &roles.app).await;
    assert!(app.is_empty(), "a role granted nothing may execute {app:?}");

    let total: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'odoo_sync'::regnamespace",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mut per_role = Vec::new();
    for (label, role) in [
        ("reader", &roles.reader),
        ("worker", &roles.worker),
        ("admin", &roles.admin),
    ] {
        let exec = executable(c, role).await;
        println!(
            "\n{label}: executes {} of {total} functions:\n  {}",
            exec.len(),
            exec.iter().cloned().collect::<Vec<_>>().join("\n  ")
        );
        let internal: Vec<&String> = exec
            .iter()
            .filter(|f| {
                let name = f.trim_start_matches("odoo_sync.");
                name.starts_with('_')
                    && !INTERNAL_FOR_READERS
                        .iter()
                        .any(|n| name.starts_with(&format!("{n}(")))
            })
            .collect();
        assert!(
            internal.is_empty(),
            "{label} may execute internal {internal:?}"
        );
        for privilege in ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"] {
            let rels = relations(c, role, privilege).await;
            println!("{label}: {privilege} on {rels:?}");
            for rel in &rels {
                let (kind, name) = rel.split_once(' ').unwrap();
                let allowed = match (privilege, kind) {
                    ("SELECT", "v") => true,
                    ("SELECT", "r") => READABLE_TABLES.contains(&name),
                    ("INSERT" | "UPDATE" | "DELETE", "r") => WRITABLE_TABLES.contains(&name),
                    _ => false,
                };
                assert!(allowed, "{label} has {privilege} on {rel}");
            }
        }
        per_role.push(exec);
    }
    let (reader, worker, admin) = (&per_role[0], &per_role[1], &per_role[2]);
    assert!(reader.is_subset(worker) && reader.is_subset(admin));
    // What only one side may do stays on that side.
    let worker_only: BTreeSet<_> = worker.difference(admin).cloned().collect();
    let admin_only: BTreeSet<_> = admin.difference(worker).cloned().collect();
    for f in [
        "claim_jobs",
        "complete_job",
        "fail_job",
        "extend_leases",
        "release_jobs",
        "heartbeat",
        "order_document",
        "order_documents",
    ] {
        assert!(
            worker_only.iter().any(|s| s.contains(&format!(".{f}("))),
            "{f} is the worker's alone: {worker_only:?}"
        );
    }
    for f in [
        "update_settings",
        "track_orders",
        "untrack_orders",
        "retry_job",
        "import_orders",
        "start_realtime",
    ] {
        assert!(
            admin_only.iter().any(|s| s.contains(&format!(".{f}("))),
            "{f} is the admin's alone: {admin_only:?}"
        );
    }
    // Conflict resolution, once it exists, is the admin's alone.
    for f in reader.iter().chain(worker) {
        assert!(
            !f.contains(".resolve_conflict("),
            "{f} granted beyond admin"
        );
    }
    db.finish().await;
}

/// What the brief of each role forbids, tried for real: calls and direct reads end in 42501.
#[tokio::test]
async fn each_role_is_refused_what_it_is_not_for() {
    let (db, roles) = setup("lp_refused").await;
    let internal_tables = [
        "jobs",
        "job_history",
        "sync_log",
        "event_log",
        "order_state",
        "settings",
        "worker_heartbeats",
        "conflicts",
        "batches",
    ];
    let resolve_exists: bool = db
        .client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = 'odoo_sync'::regnamespace AND proname = 'resolve_conflict')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let resolve = "SELECT odoo_sync.resolve_conflict('00000000-0000-0000-0000-000000000000'::uuid, 'KEEP_LOCAL')";

    let reader = db.connect_as(&roles.reader).await;
    for sql in [
        "SELECT * FROM odoo_sync.claim_jobs('r', 1, '1 minute')",
        "SELECT odoo_sync.complete_job(1, 1, '{\"odoo_order_id\": 1}')",
        "SELECT odoo_sync.fail_job(1, 1, '{\"message\": \"x\"}')",
        "SELECT odoo_sync.update_settings('{}')",
        "SELECT odoo_sync.track_orders('orders', 'order_items')",
        "SELECT odoo_sync.untrack_orders('orders')",
        "SELECT odoo_sync.order_document(1, '1')",
        "SELECT odoo_sync.heartbeat('r', '{}')",
        "SELECT odoo_sync.sync_order(1::bigint)",
        "SELECT odoo_sync.batch_sync_pending(1)",
        "SELECT odoo_sync.import_orders('{}')",
        "SELECT odoo_sync.retry_job(1)",
        "INSERT INTO odoo_sync.partner_map VALUES ('S', 1)",
    ] {
        assert_denied(&reader, sql).await;
    }
    if resolve_exists {
        assert_denied(&reader, resolve).await;
    }
    for t in internal_tables {
        assert_denied(&reader, &format!("SELECT * FROM odoo_sync.{t}")).await;
    }

    let worker = db.connect_as(&roles.worker).await;
    for sql in [
        "SELECT odoo_sync.update_settings('{\"max_attempts\": 100}')",
        "SELECT odoo_sync.track_orders('orders', 'order_items')",
        "SELECT odoo_sync.untrack_orders('orders')",
        "SELECT odoo_sync.retry_job(1)",
        "SELECT odoo_sync.import_orders('{}')",
        "SELECT odoo_sync.sync_order(1::bigint)",
        "SELECT odoo_sync._exec_as_owner('orders'::regclass, 'DELETE FROM orders', '{}')",
        "INSERT INTO odoo_sync.settings (key, value) VALUES ('max_attempts', '100')",
        "UPDATE odoo_sync.order_state SET sync_status = 'SYNCED'",
        "DELETE FROM odoo_sync.partner_map",
        "SELECT * FROM orders",
    ] {
        assert_denied(&worker, sql).await;
    }
    if resolve_exists {
        assert_denied(&worker, resolve).await;
    }
    for t in internal_tables {
        assert_denied(&worker, &format!("SELECT * FROM odoo_sync.{t}")).await;
    }

    let app = db.connect_as(&roles.app).await;
    for sql in [
        "SELECT * FROM odoo_sync.claim_jobs('app', 1, '1 minute')",
        "SELECT odoo_sync.order_document(1, '1')",
        "SELECT odoo_sync.heartbeat('app', '{}')",
        "SELECT odoo_sync.health()",
        "SELECT odoo_sync.get_settings()",
        "SELECT payload FROM odoo_sync.jobs",
        "SELECT * FROM odoo_sync.worker_heartbeats",
        "SELECT * FROM odoo_sync.settings",
        "SELECT * FROM odoo_sync.workers",
        "SELECT * FROM odoo_sync.tracked_tables",
    ] {
        assert_denied(&app, sql).await;
    }
    if resolve_exists {
        assert_denied(&app, resolve).await;
    }

    // The admin may track and untrack only tables it owns, and cannot claim work.
    let admin = db.connect_as(&roles.admin).await;
    for sql in [
        "SELECT odoo_sync.untrack_orders('orders')",
        "SELECT * FROM odoo_sync.claim_jobs('a', 1, '1 minute')",
        "SELECT odoo_sync.heartbeat('a', '{}')",
        "SELECT * FROM odoo_sync.jobs",
    ] {
        assert_denied(&admin, sql).await;
    }
    let tracked: i64 = db
        .client
        .query_one("SELECT count(*) FROM odoo_sync.tracked_tables", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tracked, 1, "the refused untrack changed nothing");
    drop((reader, worker, app, admin));
    db.finish().await;
}

/// Every SECURITY DEFINER function pins search_path to pg_catalog, then pg_temp last: without
/// pg_temp named, PostgreSQL searches it first for tables and views.
#[tokio::test]
async fn security_definer_functions_pin_a_safe_search_path() {
    let db = TestDb::new("lp_secdef").await;
    let rows = db
        .client
        .query(
            "SELECT p.oid::regprocedure::text,
                    (SELECT substr(c, 13) FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')
             FROM pg_proc p WHERE p.pronamespace = 'odoo_sync'::regnamespace AND p.prosecdef ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert!(
        rows.len() >= 30,
        "only {} SECURITY DEFINER functions",
        rows.len()
    );
    for r in &rows {
        let (f, path): (String, Option<String>) = (r.get(0), r.get(1));
        let path = path.unwrap_or_else(|| panic!("{f} does not pin search_path"));
        let parts: Vec<&str> = path.split(',').map(str::trim).collect();
        assert_eq!(parts, ["pg_catalog", "pg_temp"], "{f}: search_path={path}");
    }
    println!(
        "{} SECURITY DEFINER functions, each with search_path=pg_catalog, pg_temp",
        rows.len()
    );
    db.finish().await;
}

/// A value of `ty` for the sweep below; real ids come from the flows afterwards.
fn plausible(ty: &str, nth_of_type: usize) -> String {
    match ty {
        "integer" | "bigint" | "smallint" => "1".into(),
        "text" => "'1'".into(),
        "jsonb" => "'{}'::jsonb".into(),
        "interval" => "'1 second'::interval".into(),
        "boolean" => "false".into(),
        "uuid" => "'00000000-0000-0000-0000-000000000001'::uuid".into(),
        "bigint[]" => "'{1}'::bigint[]".into(),
        "text[]" => "'{text}'::text[]".into(),
        "oid" => "'orders'::regclass::oid".into(),
        "regclass" if nth_of_type == 0 => "'orders'::regclass".into(),
        "regclass" => "'order_items'::regclass".into(),
        "regtype" => "'text'::regtype".into(),
        other => format!("NULL::{other}"),
    }
}

/// Plants, in a schema the attacker owns and put first in its search_path, functions and
/// operators with the names and argument types odoo_sync's code uses, and temporary views
/// named like odoo_sync's tables; each logs to `trap_log` and tries to make the attacker
/// superuser.
fn traps(role: &str) -> String {
    let schema = format!("evil_{role}");
    let mut sql = format!(
        "CREATE SCHEMA {schema};
         CREATE FUNCTION {schema}.trap(what text) RETURNS boolean LANGUAGE plpgsql
           SET search_path = pg_catalog AS $$
         BEGIN
           INSERT INTO public.trap_log VALUES (what, current_user, left(current_query(), 200));
           BEGIN EXECUTE 'ALTER ROLE {role} SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
           RETURN true;
         END $$;"
    );
    // (name, arguments, result, the pg_catalog expression it stands for)
    let functions = [
        ("now", "", "timestamptz", "pg_catalog.now()"),
        (
            "clock_timestamp",
            "",
            "timestamptz",
            "pg_catalog.clock_timestamp()",
        ),
        ("random", "", "float8", "pg_catalog.random()"),
        ("length", "a text", "integer", "pg_catalog.length(a)"),
        (
            "octet_length",
            "a text",
            "integer",
            "pg_catalog.octet_length(a)",
        ),
        ("lower", "a text", "text", "pg_catalog.lower(a)"),
        ("left", "a text, n integer", "text", "pg_catalog.left(a, n)"),
        (
            "format",
            "a text, b text",
            "text",
            "pg_catalog.format(a, b)",
        ),
        (
            "format",
            "a text, b text, c text",
            "text",
            "pg_catalog.format(a, b, c)",
        ),
        (
            "jsonb_typeof",
            "a jsonb",
            "text",
            "pg_catalog.jsonb_typeof(a)",
        ),
        (
            "jsonb_build_object",
            "a text, b text",
            "jsonb",
            "pg_catalog.jsonb_build_object(a, b)",
        ),
        (
            "jsonb_build_object",
            "a text, b jsonb",
            "jsonb",
            "pg_catalog.jsonb_build_object(a, b)",
        ),
        ("to_jsonb", "a text", "jsonb", "pg_catalog.to_jsonb(a)"),
        (
            "pg_notify",
            "a text, b text",
            "void",
            "pg_catalog.pg_notify(a, b)",
        ),
        ("nextval", "a regclass", "bigint", "pg_catalog.nextval(a)"),
        (
            "current_setting",
            "a text",
            "text",
            "pg_catalog.current_setting(a)",
        ),
        ("trunc", "a numeric", "numeric", "pg_catalog.trunc(a)"),
        (
            "round",
            "a numeric, b integer",
            "numeric",
            "pg_catalog.round(a, b)",
        ),
        (
            "power",
            "a float8, b float8",
            "float8",
            "pg_catalog.power(a, b)",
        ),
        (
            "make_interval",
            "secs float8",
            "interval",
            "pg_catalog.make_interval(secs => secs)",
        ),
        ("pg_sleep", "a float8", "void", "pg_catalog.pg_sleep(a)"),
        (
            "array_to_string",
            "a text[], b text",
            "text",
            "pg_catalog.array_to_string(a, b)",
        ),
        (
            "cardinality",
            "a integer[]",
            "integer",
            "pg_catalog.cardinality(a)",
        ),
        (
            "format_type",
            "a oid, b integer",
            "text",
            "pg_catalog.format_type(a, b)",
        ),
        (
            "pg_has_role",
            "a name, b oid, c text",
            "boolean",
            "pg_catalog.pg_has_role(a, b, c)",
        ),
        (
            "gen_random_uuid",
            "",
            "uuid",
            "pg_catalog.gen_random_uuid()",
        ),
    ];
    for (i, (name, args, result, body)) in functions.iter().enumerate() {
        let ret = if *result == "void" {
            format!("PERFORM {body}; RETURN;")
        } else {
            format!("RETURN {body};")
        };
        sql.push_str(&format!(
            "CREATE FUNCTION {schema}.{name}({args}) RETURNS {result} LANGUAGE plpgsql
               SET search_path = pg_catalog AS $$
             BEGIN PERFORM {schema}.trap('function {name} #{i}'); {ret} END $$;"
        ));
    }
    // (operator, left, right, result)
    let operators = [
        ("=", "text", "text", "boolean"),
        ("=", "integer", "integer", "boolean"),
        ("=", "bigint", "bigint", "boolean"),
        ("=", "jsonb", "jsonb", "boolean"),
        ("=", "oid", "oid", "boolean"),
        ("=", "name", "text", "boolean"),
        ("<>", "text", "text", "boolean"),
        ("<", "timestamptz", "timestamptz", "boolean"),
        ("<=", "timestamptz", "timestamptz", "boolean"),
        (">", "bigint", "bigint", "boolean"),
        (">=", "integer", "integer", "boolean"),
        ("<", "interval", "interval", "boolean"),
        (">", "interval", "interval", "boolean"),
        ("+", "timestamptz", "interval", "timestamptz"),
        ("-", "timestamptz", "interval", "timestamptz"),
        ("+", "integer", "integer", "integer"),
        ("||", "jsonb", "jsonb", "jsonb"),
        ("||", "text", "text", "text"),
        ("->", "jsonb", "text", "jsonb"),
        ("->>", "jsonb", "text", "text"),
        ("?", "jsonb", "text", "boolean"),
        ("#>>", "jsonb", "text[]", "text"),
    ];
    for (i, (op, l, r, result)) in operators.iter().enumerate() {
        sql.push_str(&format!(
            "CREATE FUNCTION {schema}.op{i}(a {l}, b {r}) RETURNS {result} LANGUAGE plpgsql
               SET search_path = pg_catalog AS $$
             BEGIN PERFORM {schema}.trap('operator {op}({l}, {r})'); RETURN a OPERATOR(pg_catalog.{op}) b; END $$;
             CREATE OPERATOR {schema}.{op} (LEFTARG = {l}, RIGHTARG = {r}, FUNCTION = {schema}.op{i});"
        ));
    }
    for table in [
        "jobs",
        "job_history",
        "sync_log",
        "event_log",
        "order_state",
        "settings",
        "setting_spec",
        "tracked_tables",
        "column_spec",
        "worker_heartbeats",
        "conflicts",
        "batches",
        "partner_map",
        "product_map",
    ] {
        sql.push_str(&format!(
            "CREATE TEMP VIEW {table} AS SELECT {schema}.trap('temp view {table}') AS x;"
        ));
    }
    sql.push_str(&format!(
        "SET search_path = {schema}, pg_temp, public, pg_catalog;"
    ));
    sql
}

async fn trapped(db: &TestDb) -> Vec<String> {
    db.client
        .query(
            "SELECT what || ' as ' || who || ' in ' || query FROM trap_log",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The application role, granted nothing in odoo_sync but owning a schema, plants every trap
/// (operators such as `->` and `->>` on jsonb included, which the capture trigger's own
/// statements use) first in its search_path, then inserts, updates and deletes orders and
/// items in a fresh session, so the trigger prepares its statements under that path while it
/// runs as the extension owner. None of the traps may run, and every change is still captured.
#[tokio::test]
async fn the_application_cannot_plant_code_for_the_capture_trigger() {
    let (db, roles) = setup("lp_apptraps").await;
    let app = &roles.app;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE trap_log (what text, who name, query text);
             GRANT INSERT ON trap_log TO PUBLIC;
             GRANT CREATE ON DATABASE {} TO {app};",
            db.name
        ))
        .await
        .unwrap();
    let events_before: i64 = db
        .client
        .query_one("SELECT count(*) FROM odoo_sync.event_log", &[])
        .await
        .unwrap()
        .get(0);
    let client = db.connect_as(app).await;
    client.batch_execute(&traps(app)).await.unwrap();
    for sql in [
        "INSERT INTO orders (id, order_number, supplier_id) VALUES (100, 'PO-T', 'S')",
        "INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES (100, 'P', 1, 2)",
        "UPDATE order_items SET quantity = 3 WHERE order_id = 100",
        "UPDATE orders SET notes = 'n' WHERE id = 100",
        "DELETE FROM order_items WHERE order_id = 100",
        "DELETE FROM orders WHERE id = 100",
    ] {
        client
            .execute(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let hit = trapped(&db).await;
    let superuser: bool = db
        .client
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[app])
        .await
        .unwrap()
        .get(0);
    assert!(
        hit.is_empty() && !superuser,
        "the capture trigger ran the application's code (superuser now: {superuser}): {hit:?}"
    );
    let events: i64 = db
        .client
        .query_one("SELECT count(*) FROM odoo_sync.event_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events - events_before, 6, "every change was captured");
    drop(client);
    db.finish().await;
}

/// Calls every function `role` may execute, with plausible arguments, under the hostile
/// search_path; returns how many calls succeeded and failed.
async fn sweep(db: &TestDb, client: &Client, role: &str) -> (usize, usize) {
    let functions = db
        .client
        .query(
            "SELECT p.proname::text,
                    ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, i) ORDER BY i)
             FROM pg_proc p
             WHERE p.pronamespace = 'odoo_sync'::regnamespace AND p.prokind = 'f'
               AND p.prorettype <> 'trigger'::regtype AND has_function_privilege($1, p.oid, 'EXECUTE')
             ORDER BY p.oid::regprocedure::text",
            &[&role],
        )
        .await
        .unwrap();
    let (mut ok, mut failed) = (0, 0);
    for f in functions {
        let (name, types): (String, Vec<String>) = (f.get(0), f.get(1));
        let mut seen = std::collections::HashMap::new();
        let args: Vec<String> = types
            .iter()
            .map(|ty| {
                let n = seen.entry(ty.clone()).or_insert(0);
                let nth = *n;
                *n += 1;
                plausible(ty, nth)
            })
            .collect();
        let sql = format!(
            "SELECT count(*) FROM odoo_sync.{name}({}) r",
            args.join(", ")
        );
        match client.query_one(&sql, &[]).await {
            Ok(_) => ok += 1,
            Err(e) => {
                let (code, msg) = db_error(&e);
                assert_ne!(code, "XX000", "{sql}: {msg}");
                assert!(!code.is_empty(), "{sql}: {msg}");
                failed += 1;
            }
        }
    }
    (ok, failed)
}

/// The attacker is each role in turn, with CREATE on the database: its traps are live (an
/// unqualified `=` in its own session runs one), yet no call to any function it may execute,
/// nor the realistic flows of its job, ever runs one, and it never becomes superuser.
#[tokio::test]
async fn a_hostile_search_path_never_runs_the_callers_code() {
    let (db, roles) = setup("lp_searchpath").await;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE trap_log (what text, who name, query text);
             GRANT INSERT ON trap_log TO PUBLIC;
             GRANT CREATE ON DATABASE {} TO {}, {}, {};
             -- The admin tracks a pair of tables of its own.
             CREATE TABLE admin_orders (id text PRIMARY KEY, supplier_id text, sync_status text, odoo_order_id integer);
             CREATE TABLE admin_items (id int PRIMARY KEY, order_id text REFERENCES admin_orders,
                                       product_id text, quantity numeric, unit_price numeric);
             ALTER TABLE admin_orders OWNER TO {admin};
             ALTER TABLE admin_items OWNER TO {admin};",
            db.name,
            roles.reader,
            roles.worker,
            roles.admin,
            admin = roles.admin
        ))
        .await
        .unwrap();

    for role in [&roles.reader, &roles.worker, &roles.admin] {
        let client = db.connect_as(role).await;
        client.batch_execute(&traps(role)).await.unwrap();
        // The traps are live: an unqualified operator in the attacker's own session runs one.
        client
            .query_one("SELECT '1'::text = '1'::text", &[])
            .await
            .unwrap();
        let control = trapped(&db).await;
        assert!(
            control
                .iter()
                .any(|t| t.starts_with("operator =(text, text)")),
            "{role}: the traps do not work: {control:?}"
        );
        db.client
            .execute("DELETE FROM trap_log", &[])
            .await
            .unwrap();

        client
            .batch_execute("SET statement_timeout = '10s'")
            .await
            .unwrap();
        let (ok, failed) = sweep(&db, &client, role).await;
        println!("{role}: {ok} calls succeeded, {failed} refused, under search_path evil first");
        assert!(ok > 0, "{role}: nothing ran");
        let hit = trapped(&db).await;
        assert!(
            hit.is_empty(),
            "{role}: the sweep ran the attacker's code: {hit:?}"
        );
        drop(client);
    }

    // Realistic flows under the hostile search_path.
    let admin = db.connect_as(&roles.admin).await;
    admin
        .batch_execute(&format!(
            "SET search_path = evil_{}, pg_temp, public, pg_catalog",
            roles.admin
        ))
        .await
        .unwrap();
    for sql in [
        "SELECT odoo_sync.track_orders('admin_orders', 'admin_items', '{}')",
        "INSERT INTO admin_orders VALUES ('a-1', 'S', NULL, NULL), ('a-2', 'S', NULL, NULL)",
        "INSERT INTO admin_items VALUES (1, 'a-1', 'P', 2, 3.5)",
        "SELECT odoo_sync.sync_order('a-1'::text)",
        "SELECT odoo_sync.batch_sync_pending(10)",
        "SELECT odoo_sync.import_orders('{\"states\": [\"purchase\"], \"limit\": 5}')",
        "SELECT odoo_sync.sync_order_from_odoo(7)",
        "SELECT odoo_sync.update_settings('{\"max_attempts\": 3, \"partner_strategies\": [\"name\"]}')",
        "SELECT odoo_sync.start_realtime()",
        "SELECT odoo_sync.stop_realtime()",
        "SELECT odoo_sync.maintenance()",
    ] {
        admin.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let worker = db.connect_as(&roles.worker).await;
    worker
        .batch_execute(&format!(
            "SET search_path = evil_{}, pg_temp, public, pg_catalog",
            roles.worker
        ))
        .await
        .unwrap();
    let jobs = worker
        .query(
            "SELECT job_id, attempt_token, kind, tracking_id, order_key FROM odoo_sync.claim_jobs('w', 100, '1 minute')",
            &[],
        )
        .await
        .unwrap();
    assert!(jobs.len() >= 6, "claimed {}", jobs.len());
    let ids: Vec<i64> = jobs.iter().map(|j| j.get(0)).collect();
    worker
        .query(
            "SELECT * FROM odoo_sync.extend_leases('w', $1, '2 minutes')",
            &[&ids],
        )
        .await
        .unwrap();
    worker
        .query_one(
            "SELECT odoo_sync.heartbeat('w', '{\"odoo_status\": \"CONNECTED\", \"pid\": 1}')",
            &[],
        )
        .await
        .unwrap();
    let mut dead = None;
    for (n, j) in jobs.iter().enumerate() {
        let (job, token, kind): (i64, i64, String) = (j.get(0), j.get(1), j.get(2));
        if kind == "push" {
            let (tracking, key): (i32, String) = (j.get(3), j.get(4));
            worker
                .query_one(
                    "SELECT odoo_sync.order_document($1, $2)",
                    &[&tracking, &key],
                )
                .await
                .unwrap();
        }
        if n % 2 == 0 {
            worker
                .query_one(
                    "SELECT odoo_sync.complete_job($1, $2, $3)",
                    &[&job, &token, &serde_json::json!({"odoo_order_id": 100 + n, "amounts": {"grand_total": "7.00"}, "warnings": ["w"]})],
                )
                .await
                .unwrap();
        } else {
            worker
                .query_one(
                    "SELECT odoo_sync.fail_job($1, $2, '{\"message\": \"no\"}', $3, '1 second')",
                    &[&job, &token, &(n % 4 == 1)],
                )
                .await
                .unwrap();
            if n % 4 == 1 {
                dead = Some(job);
            }
        }
    }
    worker
        .query_one("SELECT odoo_sync.release_jobs('w')", &[])
        .await
        .unwrap();
    worker
        .query_one("SELECT odoo_sync.maintenance()", &[])
        .await
        .unwrap();
    if let Some(job) = dead {
        admin
            .query_one("SELECT odoo_sync.retry_job($1)", &[&job])
            .await
            .unwrap();
    }
    let reader = db.connect_as(&roles.reader).await;
    reader
        .batch_execute(&format!(
            "SET search_path = evil_{}, pg_temp, public, pg_catalog",
            roles.reader
        ))
        .await
        .unwrap();
    for sql in [
        "SELECT * FROM odoo_sync.order_status",
        "SELECT * FROM odoo_sync.queue",
        "SELECT * FROM odoo_sync.dead_letters",
        "SELECT * FROM odoo_sync.recent_errors",
        "SELECT * FROM odoo_sync.pending_conflicts",
        "SELECT * FROM odoo_sync.events",
        "SELECT * FROM odoo_sync.workers",
        "SELECT * FROM odoo_sync.health()",
        "SELECT * FROM odoo_sync.sync_metrics('1 hour')",
        "SELECT * FROM odoo_sync.last_sync_status()",
        "SELECT * FROM odoo_sync.event_history('a-1')",
        "SELECT * FROM odoo_sync.batch_status(1)",
        "SELECT odoo_sync.get_settings()",
    ] {
        reader
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let finished: i64 = db
        .client
        .query_one(
            "SELECT min(id) FROM odoo_sync.job_history WHERE state = 'done'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    reader
        .query_one(
            "SELECT * FROM odoo_sync.await_job($1, '1 second')",
            &[&finished],
        )
        .await
        .unwrap();
    admin.execute("DELETE FROM admin_items", &[]).await.unwrap();
    admin
        .execute("DELETE FROM admin_orders", &[])
        .await
        .unwrap();
    admin
        .execute("SELECT odoo_sync.untrack_orders('admin_orders')", &[])
        .await
        .unwrap();

    let hit = trapped(&db).await;
    assert!(hit.is_empty(), "the flows ran the attacker's code: {hit:?}");
    let supers: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolsuper AND rolname = ANY($1)",
            &[&vec![
                roles.reader.clone(),
                roles.worker.clone(),
                roles.admin.clone(),
            ]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(supers, 0);
    // Work really happened under the hostile path: synced orders, an event trail, a write-back.
    let synced: i64 = db
        .client
        .query_one("SELECT count(*) FROM odoo_sync.sync_log WHERE success", &[])
        .await
        .unwrap()
        .get(0);
    assert!(synced >= 3, "{synced}");
    drop((admin, worker, reader));
    let mut cleanup = String::new();
    for role in [&roles.reader, &roles.worker, &roles.admin] {
        cleanup.push_str(&format!("DROP SCHEMA evil_{role} CASCADE;"));
    }
    db.client.batch_execute(&cleanup).await.unwrap();
    db.client
        .batch_execute(&format!(
            "DROP TABLE admin_items, admin_orders; REVOKE CREATE ON DATABASE {} FROM {}, {}, {};",
            db.name, roles.reader, roles.worker, roles.admin
        ))
        .await
        .unwrap();
    db.finish().await;
}
