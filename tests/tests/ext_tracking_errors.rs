//! track_orders refuses what it cannot track, says why (SQLSTATE, message, hint) and attaches
//! nothing.

use odoo_sync_tests::pg_cluster::{common_schema, db_error, TestDb};
use serde_json::json;
use tokio_postgres::Client;

async fn nothing_attached(client: &Client) {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM odoo_sync.tracked_tables),
                    (SELECT count(*) FROM pg_trigger WHERE tgname = 'odoo_sync_capture'),
                    (SELECT count(*) FROM odoo_sync.order_state)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn invalid_tracking_requests_are_refused_with_nothing_attached() {
    let db = TestDb::new("trackerr").await;
    db.client
        .batch_execute(&format!(
            "{}
             INSERT INTO orders (order_number, supplier_id) VALUES ('PO-1', 'S');
             CREATE TABLE float_items (id int PRIMARY KEY, order_id uuid, product_id text, quantity float8, unit_price numeric);
             CREATE TABLE no_qty_items (id int PRIMARY KEY, order_id uuid, product_id text, unit_price numeric);
             CREATE TABLE int_ref_items (id int PRIMARY KEY, order_id int, product_id text, quantity numeric, unit_price numeric);
             CREATE TABLE json_key_orders (id jsonb, supplier_id text);
             CREATE TABLE nonunique_orders (id uuid, supplier_id text);
             CREATE VIEW orders_view AS SELECT * FROM orders;
             CREATE TABLE \"we;ird \"\"tbl\" (id int PRIMARY KEY, order_id uuid, product_id text, quantity numeric, unit_price numeric);",
            common_schema("uuid")
        ))
        .await
        .unwrap();
    let cases: Vec<(&str, serde_json::Value, &str, &str)> = vec![
        (
            "SELECT odoo_sync.track_orders('orders', 'float_items', $1)",
            json!({}),
            "42804",
            "has type double precision",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', 'no_qty_items', $1)",
            json!({}),
            "42703",
            "column \"quantity\" not found",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', 'int_ref_items', $1)",
            json!({}),
            "42804",
            "cannot reference",
        ),
        (
            "SELECT odoo_sync.track_orders('json_key_orders', 'order_items', $1)",
            json!({}),
            "42804",
            "does not fit",
        ),
        (
            "SELECT odoo_sync.track_orders('nonunique_orders', 'order_items', $1)",
            json!({}),
            "42P10",
            "is not unique",
        ),
        (
            "SELECT odoo_sync.track_orders('orders_view', 'order_items', $1)",
            json!({}),
            "42809",
            "is not a table",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', 'orders', $1)",
            json!({}),
            "22023",
            "two different tables",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', 'order_items', $1)",
            json!({"order": {}}),
            "22023",
            "unknown mapping key \"order\"",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', 'order_items', $1)",
            json!({"orders": {"totl": "x"}}),
            "22023",
            "unknown mapping key \"totl\"",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', 'order_items', $1)",
            json!({"orders": {"grand_total": "nope"}}),
            "42703",
            "column \"nope\" not found",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', 'order_items', $1)",
            json!({"orders": {"sync_status": "status"}}),
            "22023",
            "mapping uses column \"status\" of public.orders for both \"orders.status\" and \"orders.sync_status\"",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', 'order_items', $1)",
            json!({"orders": {"order_number": "notes"}}),
            "22023",
            "for both \"orders.notes\" and \"orders.order_number\"",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', 'order_items', $1)",
            json!({"items": {"notes": "product_id"}}),
            "22023",
            "for both \"items.notes\" and \"items.product_id\"",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', 'order_items', $1)",
            json!({"orders": {"notes": 5}}),
            "22023",
            "non-empty column name",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', 'order_items', $1)",
            json!({"orders": "id"}),
            "22023",
            "must be an object",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', 'order_items', $1)",
            json!([1]),
            "22023",
            "must be a JSON object",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', 'order_items', $1)",
            json!({"orders": {"notes": "x\"; DROP TABLE orders; --"}}),
            "42703",
            "not found",
        ),
        (
            "SELECT odoo_sync.track_orders('orders', '\"we;ird \"\"tbl\"', $1)",
            json!({"items": {"product_id": "ünïcødé"}}),
            "42703",
            "column \"ünïcødé\" not found",
        ),
        (
            "SELECT odoo_sync.track_orders('pg_catalog.pg_class', 'order_items', $1)",
            json!({}),
            "42501",
            "cannot be tracked",
        ),
        (
            "SELECT odoo_sync.track_orders('odoo_sync.jobs', 'order_items', $1)",
            json!({}),
            "42501",
            "cannot be tracked",
        ),
        (
            "SELECT odoo_sync.track_orders(NULL, 'order_items', $1)",
            json!({}),
            "22004",
            "needs both",
        ),
    ];
    for (sql, mapping, code, needle) in cases {
        let err = db.client.query(sql, &[&mapping]).await.unwrap_err();
        let (c, m) = db_error(&err);
        assert_eq!(c, code, "{sql} {mapping}: {m}");
        assert!(m.contains(needle), "{sql} {mapping}: {m}");
        let hint = err.as_db_error().and_then(|d| d.hint()).map(str::to_string);
        if code == "42804" || code == "42703" {
            assert!(
                hint.is_some(),
                "{sql}: a type or column error says how to fix it"
            );
        }
        nothing_attached(&db.client).await;
    }
    let err = db
        .client
        .query(
            "SELECT odoo_sync.track_orders('missing_table', 'order_items')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "42P01");
    // The identifier with a quote and a semicolon is a table like any other once it is valid.
    db.client
        .query_one(
            "SELECT odoo_sync.track_orders('orders', '\"we;ird \"\"tbl\"')",
            &[],
        )
        .await
        .unwrap();
    // Tracking the same tables twice is refused.
    let err = db
        .client
        .query(
            "SELECT odoo_sync.track_orders('orders', 'order_items')",
            &[],
        )
        .await
        .unwrap_err();
    let (c, m) = db_error(&err);
    assert_eq!(c, "42710");
    assert!(m.contains("already tracked"), "{m}");
    assert_eq!(
        db.client
            .query_one("SELECT count(*) FROM odoo_sync.tracked_tables", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );
    let err = db
        .client
        .query("SELECT odoo_sync.untrack_orders('order_items')", &[])
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "42704");
    db.finish().await;
}

#[tokio::test]
async fn a_role_cannot_track_tables_it_does_not_own() {
    let mut db = TestDb::new("trackown").await;
    db.client
        .batch_execute(&common_schema("uuid"))
        .await
        .unwrap();
    let admin = db.create_role("admin", &["odoo_sync_admin"]).await;
    let client = db.connect_as(&admin).await;
    let err = client
        .query(
            "SELECT odoo_sync.track_orders('orders', 'order_items')",
            &[],
        )
        .await
        .unwrap_err();
    let (code, msg) = db_error(&err);
    assert_eq!(code, "42501");
    assert!(msg.contains("must own table"), "{msg}");
    nothing_attached(&db.client).await;
    // Once it owns them, it can.
    db.client
        .batch_execute(&format!(
            "ALTER TABLE orders OWNER TO {admin}; ALTER TABLE order_items OWNER TO {admin};"
        ))
        .await
        .unwrap();
    client
        .query_one(
            "SELECT odoo_sync.track_orders('orders', 'order_items')",
            &[],
        )
        .await
        .unwrap();
    drop(client);
    db.client
        .batch_execute("DROP TABLE order_items; DROP TABLE orders;")
        .await
        .unwrap();
    db.finish().await;
}

/// An items table without an index on its order column is tracked, with a warning that names
/// the index to create: every push and pull of an order reads its items by that column.
#[tokio::test]
async fn an_items_table_without_an_order_index_is_tracked_with_a_warning() {
    let db = TestDb::new("trackidx").await;
    db.client
        .batch_execute(&format!(
            "{}
             CREATE TABLE bare_items (id int PRIMARY KEY, order_id bigint, product_id text,
                                      quantity numeric, unit_price numeric);",
            common_schema("bigint")
        ))
        .await
        .unwrap();
    let warnings = |items: &'static str| {
        let client = &db.client;
        async move {
            client
                .query_one(
                    "SELECT odoo_sync.track_orders('orders', $1::text::regclass) -> 'warnings'",
                    &[&items],
                )
                .await
                .unwrap()
                .get::<_, serde_json::Value>(0)
        }
    };
    assert_eq!(
        warnings("bare_items").await,
        json!([{
            "message": "public.bare_items has no index on order_id: every push and pull of an order reads the whole table",
            "fix": "CREATE INDEX CONCURRENTLY ON public.bare_items (order_id);"
        }])
    );
    let tracked: i64 = db
        .client
        .query_one("SELECT count(*) FROM odoo_sync.tracked_tables", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tracked, 1, "tracked all the same");
    db.client
        .batch_execute(
            "SELECT odoo_sync.untrack_orders('orders');
             CREATE INDEX ON bare_items (order_id, id);",
        )
        .await
        .unwrap();
    assert_eq!(warnings("bare_items").await, json!([]));
    db.finish().await;
}

/// TRUNCATE fires no row triggers, so capture would miss it: the orders would vanish here and
/// stay in Odoo. On a tracked table (directly or through CASCADE) it is refused and changes
/// nothing; once the tables are untracked it works again.
#[tokio::test]
async fn truncate_of_a_tracked_table_is_refused_and_changes_nothing() {
    let db = TestDb::new("truncate").await;
    db.client
        .batch_execute(&format!(
            "{}
             CREATE TABLE suppliers (code text PRIMARY KEY);
             INSERT INTO suppliers VALUES ('S1');
             ALTER TABLE orders ADD CONSTRAINT orders_supplier FOREIGN KEY (supplier_id) REFERENCES suppliers;
             SELECT odoo_sync.track_orders('orders', 'order_items');
             INSERT INTO orders (id, supplier_id) VALUES (1, 'S1');
             INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES (1, 'P', 1, 2);",
            common_schema("bigint")
        ))
        .await
        .unwrap();
    let counts = || async {
        db.client
            .query_one(
                "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items),
                        (SELECT count(*) FROM odoo_sync.jobs), (SELECT count(*) FROM odoo_sync.event_log)",
                &[],
            )
            .await
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2), r.get::<_, i64>(3)))
            .unwrap()
    };
    let before = counts().await;
    assert_eq!((before.0, before.1, before.2), (1, 1, 1));
    for (sql, table) in [
        ("TRUNCATE order_items", "public.order_items"),
        ("TRUNCATE orders, order_items", "public.orders"),
        ("TRUNCATE suppliers CASCADE", "public.orders"),
    ] {
        let err = db.client.batch_execute(sql).await.unwrap_err();
        let db_err = err.as_db_error().expect("a database error");
        assert_eq!(db_err.code().code(), "0A000", "{sql}: {err:?}");
        assert!(
            db_err
                .message()
                .contains(&format!("odoo_sync tracks {table}")),
            "{sql}: {}",
            db_err.message()
        );
        let hint = db_err.hint().unwrap_or_default();
        assert!(
            hint.contains("Use DELETE FROM")
                && hint.contains("odoo_sync.untrack_orders('public.orders')"),
            "{sql}: {hint}"
        );
        assert_eq!(counts().await, before, "{sql} changed nothing");
    }

    // Untracked: the guard is gone with the capture triggers.
    db.client
        .batch_execute("SELECT odoo_sync.untrack_orders('orders'); TRUNCATE orders, order_items;")
        .await
        .unwrap();
    let left: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'odoo_sync%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "no odoo_sync trigger is left");
    db.finish().await;
}
