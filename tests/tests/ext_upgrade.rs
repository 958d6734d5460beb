//! Upgrade path: the kept install script of 0.1.0 plus `ALTER EXTENSION odoo_sync UPDATE`
//! gives exactly what a fresh install of the current version gives, and keeps the data.

use std::collections::BTreeSet;

use odoo_sync_tests::pg_cluster::{common_schema, TestDb};
use tokio_postgres::Client;

/// Everything the extension consists of, as comparable text lines: its member objects,
/// functions (definition, volatility, security, settings, privileges), tables and their
/// columns, constraints, indexes, views, types, event triggers, the rows of its reference
/// tables and what pg_dump keeps.
const CATALOG: &str = r#"
SELECT 'member ' || pg_describe_object(d.classid, d.objid, 0)
FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'odoo_sync'
WHERE d.deptype = 'e'
UNION ALL
SELECT format('function %s(%s) %s %s secdef=%s config=%s acl=%s body=%s', p.proname,
              pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), p.provolatile,
              p.prosecdef, p.proconfig, p.proacl, md5(p.prosrc))
FROM pg_proc p WHERE p.pronamespace = 'odoo_sync'::regnamespace
UNION ALL
SELECT format('relation %s %s acl=%s options=%s', c.relname, c.relkind, c.relacl, c.reloptions)
FROM pg_class c WHERE c.relnamespace = 'odoo_sync'::regnamespace
UNION ALL
SELECT format('column %s.%s %s notnull=%s default=%s identity=%s statistics=%s', c.relname, a.attname,
              format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid),
              a.attidentity, a.attstattarget)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE c.relnamespace = 'odoo_sync'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT format('column order %s: %s', c.relname, string_agg(a.attname, ',' ORDER BY a.attnum))
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = 'odoo_sync'::regnamespace AND c.relkind IN ('r', 'v', 'c') AND a.attnum > 0
  AND NOT a.attisdropped
GROUP BY c.relname
UNION ALL
SELECT format('constraint %s.%s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
FROM pg_constraint WHERE connamespace = 'odoo_sync'::regnamespace
UNION ALL
SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relnamespace = 'odoo_sync'::regnamespace
UNION ALL
SELECT format('view %s %s', c.relname, pg_get_viewdef(c.oid)) FROM pg_class c
WHERE c.relnamespace = 'odoo_sync'::regnamespace AND c.relkind = 'v'
UNION ALL
SELECT format('event trigger %s %s %s %s', evtname, evtevent, evtfoid::regproc, evtenabled) FROM pg_event_trigger
UNION ALL
SELECT 'setting_spec ' || s::text FROM odoo_sync.setting_spec s
UNION ALL
SELECT 'column_spec ' || s::text FROM odoo_sync.column_spec s
UNION ALL
SELECT format('dumped %s %s', c.relname, x.cond)
FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(oid, cond) JOIN pg_class c ON c.oid = x.oid
WHERE e.extname = 'odoo_sync'
UNION ALL
SELECT 'version ' || extversion FROM pg_extension WHERE extname = 'odoo_sync'
"#;

async fn catalog(client: &Client) -> BTreeSet<String> {
    client
        .query(CATALOG, &[])
        .await
        .expect("catalog")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

#[tokio::test]
async fn updating_from_0_1_0_equals_a_fresh_install() {
    let fresh = TestDb::new("upg_fresh").await;
    let upgraded = TestDb::new("upg_from").await;
    upgraded
        .client
        .batch_execute("DROP EXTENSION odoo_sync; CREATE EXTENSION odoo_sync VERSION '0.1.0'")
        .await
        .expect("install 0.1.0");
    let old: String = upgraded
        .client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'odoo_sync'",
            &[],
        )
        .await
        .expect("version")
        .get(0);
    assert_eq!(old, "0.1.0");
    // Data written under 0.1.0 must survive the update.
    upgraded
        .client
        .batch_execute(&common_schema("bigint"))
        .await
        .expect("schema");
    upgraded
        .client
        .batch_execute(
            "SELECT odoo_sync.track_orders('orders', 'order_items');
             INSERT INTO orders (supplier_id, order_number) VALUES ('V-WOOD', 'PO-1');
             INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES (1, 'P', 2, 3);
             SELECT odoo_sync.update_settings('{\"max_attempts\": 5}');
             ALTER EXTENSION odoo_sync UPDATE;",
        )
        .await
        .expect("ALTER EXTENSION odoo_sync UPDATE");

    let want = catalog(&fresh.client).await;
    let got = catalog(&upgraded.client).await;
    let missing: Vec<&String> = want.difference(&got).collect();
    let extra: Vec<&String> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "upgraded != fresh\nmissing after the update:\n{}\nextra after the update:\n{}",
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        extra
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("{} catalog facts compared, all equal", want.len());

    let (jobs, setting, status): (i64, serde_json::Value, String) = {
        let r = upgraded
            .client
            .query_one(
                "SELECT (SELECT count(*) FROM odoo_sync.jobs), odoo_sync.get_settings() -> 'max_attempts',
                        (SELECT sync_status FROM orders)",
                &[],
            )
            .await
            .expect("data");
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(
        (jobs, setting, status.as_str()),
        (1, serde_json::json!(5), "PENDING_SYNC")
    );
    // The new version's features work on the upgraded database.
    upgraded
        .client
        .batch_execute("UPDATE order_items SET quantity = 3; SELECT odoo_sync.replay_events('{}');")
        .await
        .expect("0.2.0 functions");
    // Tables tracked before the update get the TRUNCATE guard a fresh tracking attaches.
    let err = upgraded
        .client
        .batch_execute("TRUNCATE orders, order_items")
        .await
        .expect_err("TRUNCATE of tracked tables");
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("0A000"),
        "{err:?}"
    );
    upgraded.finish().await;
    fresh.finish().await;
}
