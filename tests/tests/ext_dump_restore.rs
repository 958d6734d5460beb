//! A pg_dump / pg_restore round trip keeps what odoo_sync holds for the user: tracking,
//! settings, mappings and pending work; and the restored database goes on capturing without
//! reusing ids.

use odoo_sync_tests::pg_cluster::{common_schema, connect, TestDb};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

#[tokio::test]
async fn dump_and_restore_keep_tracking_settings_mappings_and_pending_work() {
    let db = TestDb::new("dump").await;
    db.client
        .batch_execute(&common_schema("bigint"))
        .await
        .unwrap();
    db.client
        .batch_execute(
            "SELECT odoo_sync.track_orders('orders', 'order_items');
             INSERT INTO orders (order_number, supplier_id) SELECT 'PO-' || g, 'S' FROM generate_series(1, 5) g;
             SELECT odoo_sync.update_settings('{\"max_attempts\": 4}');
             INSERT INTO odoo_sync.partner_map (local_supplier_id, odoo_partner_id) VALUES ('S', 3);",
        )
        .await
        .unwrap();
    let dump = std::env::temp_dir().join(format!("{}.dump", db.name));
    let status = std::process::Command::new(format!("{PG_BIN}/pg_dump"))
        .args(["-Fc", "-f"])
        .arg(&dump)
        .arg(db.conninfo())
        .status()
        .expect("pg_dump");
    assert!(status.success());

    let restored = format!("{}_r", db.name);
    db.client
        .batch_execute(&format!("CREATE DATABASE {restored}"))
        .await
        .unwrap();
    let restored_conninfo = format!(
        "{} dbname={restored}",
        odoo_sync_tests::pg_cluster::cluster_conninfo()
    );
    let status = std::process::Command::new(format!("{PG_BIN}/pg_restore"))
        .args(["--exit-on-error", "-d", &restored_conninfo])
        .arg(&dump)
        .status()
        .expect("pg_restore");
    assert!(status.success());

    let client = connect(&restored_conninfo).await;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM odoo_sync.tracked_tables),
                    (SELECT count(*) FROM odoo_sync.jobs),
                    (SELECT count(*) FROM odoo_sync.events),
                    odoo_sync.get_settings()->>'max_attempts',
                    (SELECT odoo_partner_id FROM odoo_sync.partner_map WHERE local_supplier_id = 'S'),
                    (SELECT count(*) FROM pg_trigger WHERE tgname = 'odoo_sync_capture')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1, "tracking kept");
    assert_eq!(row.get::<_, i64>(1), 5, "pending work kept");
    assert_eq!(row.get::<_, i64>(2), 5, "events kept");
    assert_eq!(row.get::<_, String>(3), "4", "settings kept");
    assert_eq!(row.get::<_, i32>(4), 3, "mappings kept");
    assert_eq!(row.get::<_, i64>(5), 2, "capture triggers kept");

    // The restored database captures on, with new ids that do not collide with restored ones.
    client
        .execute(
            "INSERT INTO orders (order_number, supplier_id) VALUES ('PO-after', 'S')",
            &[],
        )
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT id) FROM odoo_sync.jobs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (6, 6));
    let claimed = client
        .query(
            "SELECT job_id FROM odoo_sync.claim_jobs('w', 10, '1 minute')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 6);

    drop(client);
    let _ = std::fs::remove_file(&dump);
    db.client
        .batch_execute(&format!("DROP DATABASE {restored} WITH (FORCE)"))
        .await
        .unwrap();
    db.finish().await;
}
