//! order_document(): what a worker reads to push an order, in canonical names.

use odoo_sync_tests::pg_cluster::{db_error, TestDb};
use serde_json::json;

#[tokio::test]
async fn order_document_uses_canonical_names_and_reports_deletes() {
    let mut db = TestDb::new("document").await;
    db.client
        .batch_execute(
            "CREATE TABLE po (po_id bigint PRIMARY KEY, ref text, vendor text NOT NULL, total numeric(12,2), state text);
             CREATE TABLE po_line (line_id int PRIMARY KEY, po bigint REFERENCES po ON DELETE CASCADE,
                                   sku text, qty numeric(12,3), price numeric(12,2));",
        )
        .await
        .unwrap();
    let mapping = json!({
        "orders": {"id": "po_id", "order_number": "ref", "supplier_id": "vendor", "grand_total": "total", "sync_status": "state"},
        "items": {"id": "line_id", "order_id": "po", "product_id": "sku", "quantity": "qty", "unit_price": "price"}
    });
    db.client
        .query_one(
            "SELECT odoo_sync.track_orders('po', 'po_line', $1)",
            &[&mapping],
        )
        .await
        .unwrap();
    db.client
        .batch_execute(
            "INSERT INTO po VALUES (7, 'PO-7', 'V-GEMINI', 57.50, NULL);
             INSERT INTO po_line VALUES (2, 7, 'FURN_8888', 1, 40.00), (1, 7, 'FURN_7777', 1.5, 11.67);",
        )
        .await
        .unwrap();
    let worker = db.create_role("worker", &["odoo_sync_worker"]).await;
    let client = db.connect_as(&worker).await;
    let claim = client
        .query_one(
            "SELECT tracking_id, order_key, version FROM odoo_sync.claim_jobs('w', 1, '1 minute')",
            &[],
        )
        .await
        .unwrap();
    let (tracking, key, version): (i32, String, i64) = (claim.get(0), claim.get(1), claim.get(2));
    let doc: serde_json::Value = client
        .query_one(
            "SELECT odoo_sync.order_document($1, $2)",
            &[&tracking, &key],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(doc["version"], version);
    assert_eq!(doc["deleted"], false);
    assert_eq!(doc["order"]["order_number"], "PO-7");
    assert_eq!(doc["order"]["supplier_id"], "V-GEMINI");
    assert_eq!(
        doc["order"]["grand_total"], "57.50",
        "money travels as a string"
    );
    assert_eq!(doc["order"]["sync_status"], "PENDING_SYNC");
    let items = doc["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], 1, "items in key order");
    assert_eq!(items[0]["product_id"], "FURN_7777");
    assert_eq!(
        items[0]["quantity"], "1.500",
        "numeric keeps its scale, never a float"
    );
    assert_eq!(items[0]["unit_price"], "11.67");

    db.client.execute("DELETE FROM po", &[]).await.unwrap();
    let doc: serde_json::Value = client
        .query_one(
            "SELECT odoo_sync.order_document($1, $2)",
            &[&tracking, &key],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(doc["deleted"], true);
    assert_eq!(doc["order"], serde_json::Value::Null);
    assert_eq!(doc["tombstone"]["ref"], "PO-7");
    let err = client
        .query_one("SELECT odoo_sync.order_document(999, 'x')", &[])
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "P0002");
    drop(client);
    db.finish().await;
}

/// A change that commits while a worker reads the document must not hide behind the version:
/// the document may be newer than its version (one push too many), never older (the change
/// would never be pushed). The worker's read is held between the order row and the items by a
/// lock on the items table, and the change commits right then.
#[tokio::test]
async fn a_change_committed_during_the_read_is_never_older_than_the_version() {
    let db = TestDb::new("document_race").await;
    db.client
        .batch_execute(&odoo_sync_tests::pg_cluster::common_schema("bigint"))
        .await
        .unwrap();
    db.client
        .batch_execute(
            "SELECT odoo_sync.track_orders('orders', 'order_items');
             INSERT INTO orders (id, supplier_id) VALUES (1, 'S');",
        )
        .await
        .unwrap();
    let before: i64 = db
        .client
        .query_one("SELECT version FROM odoo_sync.order_status", &[])
        .await
        .unwrap()
        .get(0);

    let holder = db.connect().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE order_items IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let reader = db.connect().await;
    let read = tokio::spawn(async move {
        reader
            .query_one(
                "SELECT odoo_sync.order_document(t.id, '1') FROM odoo_sync.tracked_tables t",
                &[],
            )
            .await
            .map(|r| r.get::<_, serde_json::Value>(0))
    });
    // Until the reader waits for the items table, it has read the order row.
    let mut waiting = false;
    for _ in 0..200 {
        waiting = db
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'order_items'::regclass AND NOT granted)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(waiting, "the reader never reached the items table");
    db.client
        .execute("UPDATE orders SET status = 'CANCELLED' WHERE id = 1", &[])
        .await
        .unwrap();
    let after: i64 = db
        .client
        .query_one("SELECT version FROM odoo_sync.order_status", &[])
        .await
        .unwrap()
        .get(0);
    assert!(after > before);
    holder.batch_execute("COMMIT").await.unwrap();
    let doc = read.await.unwrap().unwrap();

    assert_eq!(
        doc["order"]["status"], "DRAFT",
        "the row was read before the change"
    );
    assert_eq!(
        doc["version"], before,
        "a version that counts the change would let complete_job finish without pushing it"
    );
    db.finish().await;
}
