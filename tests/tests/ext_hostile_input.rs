//! Hostile input to the SQL interface: every refusal says why (SQLSTATE and message) and
//! changes nothing (a fingerprint of every table and trigger before and after), identifiers
//! that look like SQL work as plain names, and no argument, NULL included, crashes a backend
//! or ends in an internal error (XX000).

use odoo_sync_tests::pg_cluster::{common_schema, db_error, TestDb};
use serde_json::{json, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

/// Quotes an identifier the way PostgreSQL's quote_ident does, for the test's own DDL.
fn qi(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// At most 200 characters of `s`, so a failing assertion never prints megabytes.
fn short(s: &str) -> String {
    let cut: String = s.chars().take(200).collect();
    if cut.len() < s.len() {
        format!("{cut}… ({} bytes)", s.len())
    } else {
        cut
    }
}

/// What every user table, every odoo_sync table and every trigger of the database holds: row
/// count and a digest of the rows, per table. Two equal fingerprints mean nothing changed.
async fn fingerprint(client: &Client) -> Vec<(String, String)> {
    let tables: Vec<String> = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_%'
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for t in tables {
        let digest: String = client
            .query_one(
                &format!(
                    "SELECT count(*)::text || ' ' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '')
                     FROM {t} x"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        out.push((t, digest));
    }
    let triggers: String = client
        .query_one(
            "SELECT coalesce(string_agg(tgrelid::regclass::text || ':' || tgname, ',' ORDER BY tgrelid, tgname), '')
             FROM pg_trigger WHERE NOT tgisinternal",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    out.push(("triggers".into(), triggers));
    out
}

/// Runs `sql`, expects it to fail with `code` and a message containing `needle`, and checks
/// that the database is exactly as before. Returns the message.
async fn refused(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    code: &str,
    needle: &str,
) -> String {
    let before = fingerprint(client).await;
    let err = match client.query(sql, params).await {
        Ok(rows) => panic!("{} was accepted ({} rows)", short(sql), rows.len()),
        Err(e) => e,
    };
    let (c, m) = db_error(&err);
    assert_eq!(c, code, "{}: {}", short(sql), short(&m));
    assert!(
        m.contains(needle),
        "{}: {:?} lacks {needle:?}",
        short(sql),
        short(&m)
    );
    assert_eq!(
        fingerprint(client).await,
        before,
        "{} changed something",
        short(sql)
    );
    m
}

async fn tracked(label: &str, key_type: &str) -> TestDb {
    let db = TestDb::new(label).await;
    db.client
        .batch_execute(&common_schema(key_type))
        .await
        .unwrap();
    db.client
        .execute(
            "SELECT odoo_sync.track_orders('orders', 'order_items')",
            &[],
        )
        .await
        .unwrap();
    db
}

async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(client: &Client, sql: &str) -> T {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

// ---------------------------------------------------------------------------------------------
// Identifiers

/// Schema, tables and columns whose names are SQL fragments, quotes, unicode and `$1`: once
/// they exist, tracking, capture, write-back, sync_order, order_document, completion, delete
/// and untrack all work on them, and no fragment is ever executed (the canary table lives).
#[tokio::test]
async fn identifiers_that_look_like_sql_are_just_names() {
    let db = TestDb::new("hostile_ident").await;
    let schema = "sch\"; DROP SCHEMA public CASCADE; --";
    let orders = "Ord'ers\"; DROP TABLE canary; --";
    let items = "ïtems ☃ ; DELETE FROM canary";
    let o = [
        ("id", "i\"d; DROP TABLE canary"),
        ("supplier_id", "sup'plier"),
        ("order_number", "nümber ☃"),
        ("sync_status", "st%atus $1"),
        ("odoo_order_id", "odoo\\id"),
        ("notes", "no;tes"),
        ("grand_total", "€ total"),
    ];
    let i = [
        ("id", "li ne"),
        ("order_id", "o\"rder"),
        ("product_id", "prod')--"),
        ("quantity", "q::numeric"),
        ("unit_price", "$1[1]"),
    ];
    let col = |m: &[(&str, &str)], k: &str| qi(m.iter().find(|(c, _)| *c == k).unwrap().1);
    db.client
        .batch_execute(&format!(
            "CREATE TABLE canary (x int); INSERT INTO canary VALUES (1);
             CREATE SCHEMA {s};
             CREATE TABLE {s}.{ot} ({id} text PRIMARY KEY, {sup} text, {num} text, {st} text,
                                    {oid} integer, {notes} text, {total} numeric(12,2));
             CREATE TABLE {s}.{it} ({lid} int PRIMARY KEY, {oref} text REFERENCES {s}.{ot} ON DELETE CASCADE,
                                    {prod} text, {qty} numeric, {price} numeric(12,2));",
            s = qi(schema),
            ot = qi(orders),
            it = qi(items),
            id = col(&o, "id"),
            sup = col(&o, "supplier_id"),
            num = col(&o, "order_number"),
            st = col(&o, "sync_status"),
            oid = col(&o, "odoo_order_id"),
            notes = col(&o, "notes"),
            total = col(&o, "grand_total"),
            lid = col(&i, "id"),
            oref = col(&i, "order_id"),
            prod = col(&i, "product_id"),
            qty = col(&i, "quantity"),
            price = col(&i, "unit_price"),
        ))
        .await
        .unwrap();
    let mapping = json!({
        "orders": o.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "items": i.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    });
    let tracked: Value = db
        .client
        .query_one(
            "SELECT odoo_sync.track_orders(format('%I.%I', $1::text, $2::text)::regclass,
                                           format('%I.%I', $1::text, $3::text)::regclass, $4)",
            &[&schema, &orders, &items, &mapping],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tracked["key_type"], "text");
    assert_eq!(tracked["orders"]["sync_status"], "st%atus $1");
    let tracking = tracked["tracking_id"].as_i64().unwrap() as i32;

    // Capture: an order whose key is itself an injection attempt, two items, an update.
    let key = "k'1\"; DROP TABLE canary; --";
    let ot = format!("{}.{}", qi(schema), qi(orders));
    let it = format!("{}.{}", qi(schema), qi(items));
    db.client
        .execute(
            &format!(
                "INSERT INTO {ot} ({}, {}, {}, {}, {}) VALUES ($1, 'S\"1', 'PO-☃', 'a''b;c', 12.50)",
                col(&o, "id"),
                col(&o, "supplier_id"),
                col(&o, "order_number"),
                col(&o, "notes"),
                col(&o, "grand_total")
            ),
            &[&key],
        )
        .await
        .unwrap();
    db.client
        .execute(
            &format!("INSERT INTO {it} VALUES (1, $1, 'P1', 2.5, 3.10), (2, $1, 'P''2', 1, 0)"),
            &[&key],
        )
        .await
        .unwrap();
    db.client
        .execute(
            &format!(
                "UPDATE {ot} SET {} = 'changed' WHERE {} = $1",
                col(&o, "notes"),
                col(&o, "id")
            ),
            &[&key],
        )
        .await
        .unwrap();
    let events: Vec<String> = db
        .client
        .query(
            "SELECT event_type FROM odoo_sync.event_log WHERE entity_id = $1 ORDER BY id",
            &[&key],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        events,
        [
            "ORDER_CREATED",
            "ORDER_UPDATED",
            "ORDER_UPDATED",
            "ORDER_UPDATED"
        ]
    );
    let job: i64 = db
        .client
        .query_one(
            "SELECT id FROM odoo_sync.jobs WHERE order_key = $1",
            &[&key],
        )
        .await
        .unwrap()
        .get(0);
    let status: String = scalar(
        &db.client,
        &format!("SELECT {} FROM {ot}", col(&o, "sync_status")),
    )
    .await;
    assert_eq!(status, "PENDING_SYNC", "write-back into \"st%atus $1\"");
    let again: i64 = db
        .client
        .query_one("SELECT odoo_sync.sync_order($1::text)", &[&key])
        .await
        .unwrap()
        .get(0);
    assert_eq!(again, job, "sync_order finds the order by its hostile key");

    // The worker's view of it: canonical names, money as strings.
    let claim = db
        .client
        .query_one(
            "SELECT job_id, attempt_token, order_key FROM odoo_sync.claim_jobs('w', 10, '1 minute')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(claim.get::<_, String>(2), key);
    let doc: Value = db
        .client
        .query_one(
            "SELECT odoo_sync.order_document($1, $2)",
            &[&tracking, &key],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(doc["order"]["id"], key);
    assert_eq!(doc["order"]["supplier_id"], "S\"1");
    assert_eq!(doc["order"]["order_number"], "PO-☃");
    assert_eq!(doc["order"]["notes"], "changed");
    assert_eq!(doc["order"]["grand_total"], "12.50");
    assert_eq!(
        doc["items"],
        json!([
            {"id": 1, "order_id": key, "product_id": "P1", "quantity": "2.5", "unit_price": "3.10"},
            {"id": 2, "order_id": key, "product_id": "P'2", "quantity": "1", "unit_price": "0.00"}
        ])
    );
    let done: String = db
        .client
        .query_one(
            "SELECT odoo_sync.complete_job($1, $2, '{\"odoo_order_id\": 42}')",
            &[&claim.get::<_, i64>(0), &claim.get::<_, i64>(1)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(done, "done");
    let row = db
        .client
        .query_one(
            &format!(
                "SELECT {}, {} FROM {ot}",
                col(&o, "sync_status"),
                col(&o, "odoo_order_id")
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "SYNCED");
    assert_eq!(row.get::<_, i32>(1), 42);

    // Delete: the tombstone keeps the hostile column names as JSON keys.
    db.client
        .execute(&format!("DELETE FROM {ot}"), &[])
        .await
        .unwrap();
    let tombstone: Value = db
        .client
        .query_one(
            "SELECT tombstone FROM odoo_sync.order_state WHERE order_key = $1 AND deleted",
            &[&key],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tombstone["i\"d; DROP TABLE canary"], key);
    assert_eq!(tombstone["st%atus $1"], "SYNCED");

    db.client
        .execute(
            "SELECT odoo_sync.untrack_orders(format('%I.%I', $1::text, $2::text)::regclass)",
            &[&schema, &orders],
        )
        .await
        .unwrap();
    let row = db
        .client
        .query_one(
            "SELECT (SELECT count(*) FROM canary), (SELECT count(*) FROM pg_namespace WHERE nspname = 'public'),
                    (SELECT count(*) FROM pg_trigger WHERE tgname = 'odoo_sync_capture'),
                    (SELECT count(*) FROM odoo_sync.tracked_tables)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
            row.get::<_, i64>(3)
        ),
        (1, 1, 0, 0),
        "canary and public alive, triggers gone"
    );
    db.finish().await;
}

/// Names that do not exist or cannot be columns are refused before anything is attached.
#[tokio::test]
async fn hostile_names_that_are_not_columns_or_tables_are_refused() {
    let db = TestDb::new("hostile_names").await;
    db.client
        .batch_execute(&format!(
            "{}
             CREATE TABLE canary (x int);
             ALTER TABLE orders ADD COLUMN gone text;
             ALTER TABLE orders DROP COLUMN gone;
             CREATE TEMP TABLE tmp_orders (id uuid PRIMARY KEY, supplier_id text);
             CREATE SEQUENCE a_sequence;",
            common_schema("uuid")
        ))
        .await
        .unwrap();
    let dropped: String = scalar(
        &db.client,
        "SELECT attname::text FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attisdropped",
    )
    .await;
    let track = "SELECT odoo_sync.track_orders('orders', 'order_items', $1::text::jsonb)";
    let cases: Vec<(Value, &str, &str)> = vec![
        // Keys that are SQL or unknown.
        (
            json!({"orders; DROP TABLE canary": {}}),
            "22023",
            "unknown mapping key",
        ),
        (
            json!({"orders": {"id\"; DROP TABLE canary; --": "id"}}),
            "22023",
            "unknown mapping key",
        ),
        (
            json!({"items": {"ünïcødé": "id"}}),
            "22023",
            "unknown mapping key \"ünïcødé\"",
        ),
        // Values that cannot name a column.
        (
            json!({"orders": {"notes": null}}),
            "22023",
            "non-empty column name",
        ),
        (
            json!({"orders": {"notes": {"$ne": 1}}}),
            "22023",
            "non-empty column name",
        ),
        (
            json!({"orders": {"notes": ""}}),
            "22023",
            "non-empty column name",
        ),
        (json!({"orders": {"notes": " "}}), "42703", "not found"),
        (
            json!({"orders": {"notes": "a".repeat(100)}}),
            "22023",
            "at most 63",
        ),
        (
            json!({"orders": {"notes": "ctid"}}),
            "42703",
            "column \"ctid\" not found",
        ),
        (
            json!({"orders": {"notes": "xmin"}}),
            "42703",
            "column \"xmin\" not found",
        ),
        (json!({"orders": {"notes": dropped}}), "42703", "not found"),
        (
            json!({"items": {"quantity": "unit_price\", \"id"}}),
            "42703",
            "not found",
        ),
    ];
    for (mapping, code, needle) in cases {
        refused(&db.client, track, &[&mapping.to_string()], code, needle).await;
    }
    // NUL cannot even be written into jsonb or text: the cast refuses it.
    refused(
        &db.client,
        track,
        &[&r#"{"orders": {"notes": "no\u0000tes"}}"#],
        "22P05",
        "unsupported Unicode escape sequence",
    )
    .await;
    // Relations that are not tables, do not exist, or are temporary.
    for (sql, code, needle) in [
        (
            "SELECT odoo_sync.track_orders('orders_pkey', 'order_items')",
            "42809",
            "is not a table",
        ),
        (
            "SELECT odoo_sync.track_orders('a_sequence', 'order_items')",
            "42809",
            "is not a table",
        ),
        (
            "SELECT odoo_sync.track_orders(987654321::oid::regclass, 'order_items')",
            "42P01",
            "does not exist",
        ),
        (
            "SELECT odoo_sync.track_orders('\"x\"\"; DROP TABLE canary; --\"', 'order_items')",
            "42P01",
            "does not exist",
        ),
        (
            "SELECT odoo_sync.track_orders('orders; DROP TABLE canary', 'order_items')",
            "42602",
            "invalid name syntax",
        ),
        (
            "SELECT odoo_sync.track_orders('tmp_orders', 'order_items')",
            "42809",
            "temporary",
        ),
        (
            "SELECT odoo_sync.untrack_orders('\"; DROP TABLE canary; --')",
            "42602",
            "invalid name syntax",
        ),
    ] {
        refused(&db.client, sql, &[], code, needle).await;
    }
    db.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Import filters

/// SQL injection and Odoo-domain injection in every filter key: refused, no batch, no job.
#[tokio::test]
async fn import_filters_with_sql_or_domain_injection_are_refused() {
    let db = tracked("hostile_import", "uuid").await;
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"states": ["purchase'); DROP TABLE orders; --"]}),
            "22023",
            "unknown Odoo purchase order state",
        ),
        (
            json!({"states": ["purchase", "|"]}),
            "22023",
            "unknown Odoo purchase order state",
        ),
        (
            json!({"states": [["state", "=", "purchase"]]}),
            "22023",
            "unknown Odoo purchase order state",
        ),
        (
            json!({"states": ["purchase\")], [(\"id\", \">\", 0"]}),
            "22023",
            "unknown Odoo purchase order state",
        ),
        (
            json!({"partner_ids": ["1 OR 1=1"]}),
            "22023",
            "not a positive integer",
        ),
        (
            json!({"partner_ids": [["id", "!=", 0]]}),
            "22023",
            "not a positive integer",
        ),
        (
            json!({"partner_ids": [{"|": [1, 2]}]}),
            "22023",
            "not a positive integer",
        ),
        (
            json!({"partner_ids": [1.5]}),
            "22023",
            "not a positive integer",
        ),
        (
            json!({"partner_ids": [2147483648u64]}),
            "22023",
            "not a positive integer",
        ),
        (
            json!({"partner_ids": (1..=1001).collect::<Vec<_>>()}),
            "22023",
            "1 to 1000",
        ),
        (
            json!({"date_from": "2026-01-01' OR '1'='1"}),
            "22007",
            "ISO date",
        ),
        (
            json!({"date_from": ["write_date", ">=", "2026-01-01"]}),
            "22007",
            "ISO date",
        ),
        (
            json!({"date_to": "2026-01-01T00:00:00+99:99"}),
            "22008",
            "not a valid date",
        ),
        (
            json!({"date_to": "0000-01-01"}),
            "22008",
            "not a valid date",
        ),
        (json!({"limit": "100"}), "22023", "limit"),
        (json!({"limit": true}), "22023", "limit"),
        (json!({"limit": -0.0}), "22023", "limit"),
        (
            json!({"domain": [["state", "=", "purchase"]]}),
            "22023",
            "unknown import filter key \"domain\"",
        ),
        (
            json!({"states'; DROP TABLE orders; --": ["purchase"]}),
            "22023",
            "unknown import filter key",
        ),
    ];
    for (filter, code, needle) in cases {
        refused(
            &db.client,
            "SELECT odoo_sync.import_orders($1::text::jsonb)",
            &[&filter.to_string()],
            code,
            needle,
        )
        .await;
    }
    // Numbers too big for any type still fail cleanly (jsonb keeps them as numeric).
    refused(
        &db.client,
        "SELECT odoo_sync.import_orders('{\"limit\": 1e400}')",
        &[],
        "22023",
        "limit",
    )
    .await;
    refused(
        &db.client,
        "SELECT odoo_sync.import_orders('{\"partner_ids\": [1e400]}')",
        &[],
        "22023",
        "not a positive integer",
    )
    .await;
    db.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Huge and deep JSON

/// A JSON text nested `depth` arrays deep around `inner`, built as text: serde_json would
/// recurse once per level to build, print and drop it.
fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

/// 10 MB and 10,000-deep JSON to every function that takes JSON from a person: a clear error,
/// a message of bounded size, nothing changed, and the connection still works.
#[tokio::test]
async fn huge_and_deeply_nested_json_is_refused_cleanly() {
    let db = tracked("hostile_json", "uuid").await;
    let big = "x".repeat(10 * 1024 * 1024);
    let deep = nested(10_000, "\"purchase\"");
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "SELECT odoo_sync.import_orders($1::text::jsonb)",
            json!({"states": [big]}).to_string(),
            "22023",
            "too large",
        ),
        (
            "SELECT odoo_sync.import_orders($1::text::jsonb)",
            format!("{{\"states\": {deep}}}"),
            "22023",
            "unknown Odoo purchase order state",
        ),
        (
            "SELECT odoo_sync.update_settings($1::text::jsonb)",
            json!({"max_attempts": big}).to_string(),
            "22023",
            "too large",
        ),
        (
            "SELECT odoo_sync.update_settings($1::text::jsonb)",
            json!({ big.as_str(): 1 }).to_string(),
            "22023",
            "too large",
        ),
        (
            "SELECT odoo_sync.update_settings($1::text::jsonb)",
            format!("{{\"partner_strategies\": {deep}}}"),
            "22023",
            "too large",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', 'order_items', $1::text::jsonb)",
            json!({"orders": {"notes": big}}).to_string(),
            "22023",
            "too large",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', 'order_items', $1::text::jsonb)",
            format!("{{\"orders\": {{\"notes\": {deep}}}}}"),
            "22023",
            "non-empty column name",
        ),
    ];
    // The second table pair, so track_orders gets as far as the mapping.
    db.client
        .batch_execute("SELECT odoo_sync.untrack_orders('orders')")
        .await
        .unwrap();
    for (sql, arg, code, needle) in cases {
        let message = refused(&db.client, sql, &[&arg], code, needle).await;
        println!(
            "{:<72} {:>9} bytes in -> {code}, {} bytes of message: {}",
            short(sql),
            arg.len(),
            message.len(),
            short(&message)
        );
        // The deep import filter is under the 64 kB cap and is quoted in full: it stays
        // bounded by that cap. Everything else is short.
        let bound = if message.starts_with("unknown Odoo purchase order state") {
            65_536
        } else {
            1_000
        };
        assert!(message.len() < bound, "{}", short(&message));
    }
    // Deeper than the server's stack allows: the jsonb parser itself refuses, cleanly.
    let too_deep = format!("{{\"states\": {}}}", nested(200_000, "1"));
    refused(
        &db.client,
        "SELECT odoo_sync.import_orders($1::text::jsonb)",
        &[&too_deep],
        "54001",
        "stack depth limit exceeded",
    )
    .await;
    assert_eq!(scalar::<i32>(&db.client, "SELECT 1").await, 1);
    db.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Absurd numbers

/// Negative, zero, huge and fractional sizes, intervals and settings: refused with 22023 and
/// a message naming the bound, nothing changed.
#[tokio::test]
async fn absurd_sizes_intervals_and_settings_are_refused() {
    let db = tracked("hostile_numbers", "uuid").await;
    db.client
        .batch_execute("INSERT INTO orders (supplier_id) SELECT 'S' FROM generate_series(1, 2)")
        .await
        .unwrap();
    let job: i64 = scalar(&db.client, "SELECT min(id) FROM odoo_sync.jobs").await;
    let job_sql = |f: &str| f.replace("JOB", &job.to_string());
    let cases: Vec<(String, &str)> = vec![
        (
            "SELECT odoo_sync.batch_sync_pending(2147483647)".into(),
            "batch_size must be between 1 and 10000",
        ),
        (
            "SELECT odoo_sync.batch_sync_pending(-2147483648)".into(),
            "batch_size must be between 1 and 10000",
        ),
        (
            "SELECT odoo_sync.batch_sync_pending(10001)".into(),
            "batch_size must be between 1 and 10000",
        ),
        (
            job_sql("SELECT * FROM odoo_sync.await_job(JOB, '-1 second')"),
            "timeout must be between 0 and 1 hour",
        ),
        (
            job_sql("SELECT * FROM odoo_sync.await_job(JOB, '1 hour 1 second')"),
            "timeout must be between 0 and 1 hour",
        ),
        (
            job_sql("SELECT * FROM odoo_sync.await_job(JOB, '1 mon')"),
            "timeout must be between 0 and 1 hour",
        ),
        (
            job_sql("SELECT * FROM odoo_sync.await_job(JOB, '-178000000 years')"),
            "timeout must be between 0 and 1 hour",
        ),
        (
            "SELECT * FROM odoo_sync.sync_metrics('0')".into(),
            "window must be a positive interval",
        ),
        (
            "SELECT * FROM odoo_sync.sync_metrics('-1 microsecond')".into(),
            "window must be a positive interval",
        ),
        (
            "SELECT * FROM odoo_sync.sync_metrics('367 days')".into(),
            "at most 366 days",
        ),
        (
            "SELECT * FROM odoo_sync.sync_metrics('178000000 years')".into(),
            "at most 366 days",
        ),
        (
            "SELECT * FROM odoo_sync.claim_jobs('w', 1001, '1 minute')".into(),
            "max_jobs must be between 1 and 1000",
        ),
        (
            "SELECT * FROM odoo_sync.claim_jobs('w', 2147483647, '1 minute')".into(),
            "max_jobs must be between 1 and 1000",
        ),
        (
            "SELECT * FROM odoo_sync.claim_jobs('w', -2147483648, '1 minute')".into(),
            "max_jobs must be between 1 and 1000",
        ),
        (
            "SELECT * FROM odoo_sync.claim_jobs('w', 1, '0')".into(),
            "lease must be between 1 second and 1 hour",
        ),
        (
            "SELECT * FROM odoo_sync.claim_jobs('w', 1, '999 milliseconds')".into(),
            "lease must be between 1 second and 1 hour",
        ),
        (
            "SELECT * FROM odoo_sync.claim_jobs('w', 1, '1 hour 1 millisecond')".into(),
            "lease must be between 1 second and 1 hour",
        ),
        (
            "SELECT * FROM odoo_sync.claim_jobs('w', 1, '1 year')".into(),
            "lease must be between 1 second and 1 hour",
        ),
        (
            format!(
                "SELECT * FROM odoo_sync.claim_jobs('{}', 1, '1 minute')",
                "w".repeat(201)
            ),
            "at most 200 characters",
        ),
        (
            job_sql("SELECT * FROM odoo_sync.extend_leases('w', ARRAY[JOB], '0')"),
            "lease must be between 1 second and 1 hour",
        ),
        (
            job_sql("SELECT * FROM odoo_sync.extend_leases('w', ARRAY[JOB], '-1 hour')"),
            "lease must be between 1 second and 1 hour",
        ),
        (
            job_sql("SELECT * FROM odoo_sync.extend_leases('w', ARRAY[JOB], '2 hours')"),
            "lease must be between 1 second and 1 hour",
        ),
        (
            "SELECT odoo_sync.update_settings('{\"max_attempts\": 1e400}')".into(),
            "out of range",
        ),
        (
            "SELECT odoo_sync.update_settings('{\"max_attempts\": -1}')".into(),
            "out of range",
        ),
        (
            "SELECT odoo_sync.update_settings('{\"max_attempts\": 2147483648}')".into(),
            "out of range",
        ),
        (
            "SELECT odoo_sync.update_settings('{\"max_attempts\": 5.5}')".into(),
            "whole number",
        ),
        (
            "SELECT odoo_sync.update_settings('{\"backoff_base_seconds\": 1e-400}')".into(),
            "out of range",
        ),
        (
            "SELECT odoo_sync.update_settings('{\"lease_seconds\": 4}')".into(),
            "out of range",
        ),
        (
            "SELECT odoo_sync.update_settings('{\"history_retention_days\": 0}')".into(),
            "out of range",
        ),
        (
            "SELECT odoo_sync.update_settings('{\"poll_interval_seconds\": true}')".into(),
            "must be a number",
        ),
    ];
    for (sql, needle) in &cases {
        let m = refused(&db.client, sql, &[], "22023", needle).await;
        assert!(m.len() < 1_000, "{}", short(&m));
    }
    // Out of the argument's own type: PostgreSQL refuses before the function runs.
    refused(
        &db.client,
        "SELECT odoo_sync.batch_sync_pending(2147483648)",
        &[],
        "42883",
        "does not exist",
    )
    .await;
    refused(
        &db.client,
        "SELECT odoo_sync.batch_sync_pending('1e10')",
        &[],
        "22P02",
        "invalid input syntax",
    )
    .await;
    // Arrays of job ids that are huge or hold NULLs are simply nothing this worker holds.
    let huge: Vec<i64> = (1..=100_000).collect();
    let none = db
        .client
        .query(
            "SELECT * FROM odoo_sync.extend_leases('w', $1, '1 minute')",
            &[&huge],
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    let none = db
        .client
        .query(
            "SELECT * FROM odoo_sync.extend_leases('w', '{NULL,NULL}', '1 minute')",
            &[],
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(
        scalar::<i64>(
            &db.client,
            "SELECT count(*) FROM odoo_sync.jobs WHERE state = 'queued'"
        )
        .await,
        2,
        "nothing was claimed or extended"
    );
    db.finish().await;
}

/// An integer setting written as 5.0 (or 6e1) is stored as an integer, so everything that
/// reads it with ::int keeps working (claim_jobs, fail_job, maintenance, health).
#[tokio::test]
async fn integer_settings_with_a_fraction_part_are_stored_as_integers() {
    let db = tracked("hostile_intset", "uuid").await;
    db.client
        .execute("INSERT INTO orders (supplier_id) VALUES ('S')", &[])
        .await
        .unwrap();
    let settings: Value = scalar(
        &db.client,
        "SELECT odoo_sync.update_settings('{\"max_attempts\": 5.0, \"lease_seconds\": 6e1,
                                             \"history_retention_days\": 14.000, \"backoff_base_seconds\": 2.50}')",
    )
    .await;
    assert_eq!(settings["max_attempts"], json!(5));
    assert_eq!(settings["lease_seconds"], json!(60));
    assert_eq!(settings["history_retention_days"], json!(14));
    assert_eq!(settings["backoff_base_seconds"], json!(2.5));
    let claimed = db
        .client
        .query(
            "SELECT job_id, attempt_token FROM odoo_sync.claim_jobs('w', 1)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        1,
        "claim_jobs reads max_attempts and lease_seconds"
    );
    let outcome: String = db
        .client
        .query_one(
            "SELECT odoo_sync.fail_job($1, $2, '{\"message\": \"boom\"}')",
            &[&claimed[0].get::<_, i64>(0), &claimed[0].get::<_, i64>(1)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(outcome, "retry");
    db.client
        .query_one("SELECT odoo_sync.maintenance()", &[])
        .await
        .unwrap();
    db.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Hostile text in lookups

/// Injection attempts as keys, entity ids and worker names are values: nothing found, nothing
/// run, and a worker name with quotes and unicode is stored verbatim.
#[tokio::test]
async fn hostile_text_in_lookups_is_a_value() {
    let db = tracked("hostile_lookup", "text").await;
    db.client
        .batch_execute(
            "CREATE TABLE canary (x int); INSERT INTO orders (id, supplier_id) VALUES ('a', 'S');",
        )
        .await
        .unwrap();
    for key in [
        "a' OR '1'='1",
        "a'; DROP TABLE canary; --",
        "a\"); DROP TABLE canary; --",
        "%",
        "a\\",
    ] {
        refused(
            &db.client,
            "SELECT odoo_sync.sync_order($1::text)",
            &[&key],
            "P0002",
            "not found",
        )
        .await;
        for sql in [
            "SELECT * FROM odoo_sync.event_history($1)",
            "SELECT * FROM odoo_sync.conflict_history($1)",
        ] {
            assert!(db.client.query(sql, &[&key]).await.unwrap().is_empty());
        }
    }
    let name = "w'\"; DROP TABLE canary; -- ☃\u{1}";
    db.client
        .query_one("SELECT odoo_sync.heartbeat($1, '{}')", &[&name])
        .await
        .unwrap();
    let stored: String = scalar(&db.client, "SELECT worker_id FROM odoo_sync.workers").await;
    assert_eq!(stored, name);
    assert_eq!(
        scalar::<i64>(&db.client, "SELECT count(*) FROM canary").await,
        0,
        "the canary table is still there"
    );
    db.finish().await;
}

// ---------------------------------------------------------------------------------------------
// NULL for every argument of every function

/// Arguments whose NULL is a meaningful value, not a missing one: (function, argument index).
/// save_pull_position's watermark is NULL until the first poll has seen a write_date.
const NULL_IS_A_VALUE: &[(&str, usize)] = &[("save_pull_position", 0)];

struct Function {
    /// `odoo_sync.name(type, ...)`, for messages.
    signature: String,
    name: String,
    args: Vec<String>,
    /// How many trailing arguments have a DEFAULT: NULL there may mean "the default".
    defaults: usize,
}

/// A value of `ty` that makes sense in the test's database, for the arguments that are not
/// NULL in a call. A new argument type fails here until someone adds a value for it.
fn plausible(ty: &str, nth_of_type: usize) -> String {
    match ty {
        "integer" | "bigint" | "smallint" => "1".into(),
        "text" => "'x'".into(),
        "jsonb" => "'{}'::jsonb".into(),
        "interval" => "'1 second'::interval".into(),
        "boolean" => "false".into(),
        "uuid" => "'00000000-0000-0000-0000-000000000001'::uuid".into(),
        "bigint[]" => "'{1}'::bigint[]".into(),
        "integer[]" => "'{1}'::integer[]".into(),
        "text[]" => "'{text}'::text[]".into(),
        "oid" => "'orders'::regclass::oid".into(),
        "regclass" if nth_of_type == 0 => "'orders'::regclass".into(),
        "regclass" => "'order_items'::regclass".into(),
        "regtype" => "'text'::regtype".into(),
        other if other.starts_with("odoo_sync.") || other == "jobs" => format!("NULL::{other}"),
        other => panic!("add a plausible value for argument type {other}"),
    }
}

/// Every function of schema odoo_sync that takes arguments is called with all of them NULL;
/// every public one (no leading underscore) also with each argument NULL in turn, the others
/// plausible. None crashes the backend or raises XX000; every error has an SQLSTATE and a
/// message; nothing changes, except where a NULL stands for an argument's documented default
/// or is a meaningful value (NULL_IS_A_VALUE).
#[tokio::test]
async fn null_for_every_argument_of_every_function() {
    let db = TestDb::new("hostile_nulls").await;
    db.client
        .batch_execute(&format!(
            "{}
             SELECT odoo_sync.track_orders('orders', 'order_items');
             INSERT INTO orders (supplier_id) SELECT 'S' FROM generate_series(1, 3);
             SELECT odoo_sync.heartbeat('w', '{{}}');
             SELECT * FROM odoo_sync.claim_jobs('w', 1, '1 minute');
             SET statement_timeout = '10s';",
            common_schema("bigint")
        ))
        .await
        .unwrap();
    let started: std::time::SystemTime =
        scalar(&db.client, "SELECT pg_postmaster_start_time()").await;
    let functions: Vec<Function> = db
        .client
        .query(
            "SELECT p.oid::regprocedure::text, p.proname::text,
                    ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, i) ORDER BY i),
                    p.pronargdefaults::int
             FROM pg_proc p
             WHERE p.pronamespace = 'odoo_sync'::regnamespace AND p.prokind = 'f' AND p.pronargs > 0
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| Function {
            signature: r.get(0),
            name: r.get(1),
            args: r.get(2),
            defaults: r.get::<_, i32>(3) as usize,
        })
        .collect();
    assert!(
        functions.len() >= 40,
        "found only {} functions",
        functions.len()
    );

    let mut report = Vec::new();
    let mut calls = 0;
    let mut baseline = fingerprint(&db.client).await;
    for f in &functions {
        // None = every argument NULL; Some(i) = argument i NULL, the others plausible.
        let mut variants = vec![None];
        if !f.name.starts_with('_') && f.args.len() > 1 {
            variants.extend((0..f.args.len()).map(Some));
        }
        for variant in variants {
            let mut seen = std::collections::HashMap::new();
            let args: Vec<String> = f
                .args
                .iter()
                .enumerate()
                .map(|(i, ty)| {
                    let n = seen.entry(ty.clone()).or_insert(0);
                    let nth = *n;
                    *n += 1;
                    if variant.is_none() || variant == Some(i) {
                        format!("NULL::{ty}")
                    } else {
                        plausible(ty, nth)
                    }
                })
                .collect();
            let sql = format!(
                "SELECT count(*), left(string_agg(r::text, ' | '), 120) FROM odoo_sync.{}({}) r",
                qi(&f.name),
                args.join(", ")
            );
            calls += 1;
            let outcome = match db.client.query_one(&sql, &[]).await {
                Ok(row) => format!(
                    "ok: {} row(s) {}",
                    row.get::<_, i64>(0),
                    row.get::<_, Option<String>>(1).unwrap_or_default()
                ),
                Err(e) => {
                    let db_err = e.as_db_error().unwrap_or_else(|| {
                        panic!("{sql}: not a database error (backend gone?): {e}")
                    });
                    let code = db_err.code().code();
                    assert_ne!(code, "XX000", "{sql}: internal error {}", db_err.message());
                    assert!(!db_err.message().is_empty(), "{sql}: empty message");
                    format!("{code} {}", short(db_err.message()))
                }
            };
            // The backend survived.
            assert_eq!(
                scalar::<i32>(&db.client, "SELECT 1").await,
                1,
                "{sql} broke the connection"
            );
            let after = fingerprint(&db.client).await;
            let defaulted = variant.is_some_and(|i| {
                i >= f.args.len() - f.defaults || NULL_IS_A_VALUE.contains(&(f.name.as_str(), i))
            });
            if after != baseline {
                assert!(
                    defaulted,
                    "{sql} ({outcome}) changed {:?}",
                    after
                        .iter()
                        .zip(&baseline)
                        .filter(|(a, b)| a != b)
                        .map(|(a, _)| &a.0)
                        .collect::<Vec<_>>()
                );
                baseline = after;
            }
            let which = match variant {
                None => "all NULL".to_string(),
                Some(i) => format!("arg {} NULL", i + 1),
            };
            report.push(format!("{:<60} {:<11} {}", f.signature, which, outcome));
        }
    }
    println!("{}", report.join("\n"));
    println!("{calls} calls over {} functions", functions.len());
    let now: std::time::SystemTime = scalar(&db.client, "SELECT pg_postmaster_start_time()").await;
    assert_eq!(started, now, "the server did not restart");
    db.finish().await;
}
