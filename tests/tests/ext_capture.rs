//! Change capture: what the triggers on tracked tables record, and that it commits or rolls
//! back with the user's transaction.

use odoo_sync_tests::pg_cluster::{common_schema, listen, TestDb};
use tokio_postgres::{Client, GenericClient};

async fn tracked_db(label: &str, key_type: &str) -> TestDb {
    let db = TestDb::new(label).await;
    db.client
        .batch_execute(&common_schema(key_type))
        .await
        .unwrap();
    db.client
        .query_one(
            "SELECT odoo_sync.track_orders('orders', 'order_items')",
            &[],
        )
        .await
        .unwrap();
    db
}

async fn count(client: &impl GenericClient, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn new_order(client: &Client, number: &str) -> String {
    client
        .query_one(
            "INSERT INTO orders (order_number, supplier_id) VALUES ($1, 'S1') RETURNING id::text",
            &[&number],
        )
        .await
        .unwrap()
        .get(0)
}

/// Claims the one ready job as worker 'w': (job id, attempt token, version).
async fn claim_one(client: &Client) -> (i64, i64, i64) {
    let claim = client
        .query_one(
            "SELECT job_id, attempt_token, version FROM odoo_sync.claim_jobs('w', 1, '1 minute')",
            &[],
        )
        .await
        .unwrap();
    (claim.get(0), claim.get(1), claim.get(2))
}

/// The test plays the worker: claim the order's job and report success.
async fn sync_as_worker(client: &Client, odoo_id: i32) {
    let rows = client
        .query("SELECT job_id, attempt_token, version FROM odoo_sync.claim_jobs('test-worker', 100, '1 minute')", &[])
        .await
        .unwrap();
    for row in rows {
        let (job, token, version): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        let result = serde_json::json!({"odoo_order_id": odoo_id, "version": version});
        client
            .query_one(
                "SELECT odoo_sync.complete_job($1, $2, $3)",
                &[&job, &token, &result],
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn rolled_back_change_leaves_no_job_no_event_no_state() {
    let mut db = tracked_db("rollback", "uuid").await;
    let tx = db.client.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO orders (order_number, supplier_id) VALUES ('PO-RB', 'S1')",
        &[],
    )
    .await
    .unwrap();
    // Inside the transaction the capture is visible...
    assert_eq!(count(&tx, "SELECT count(*) FROM odoo_sync.jobs").await, 1);
    tx.rollback().await.unwrap();
    // ...and gone with it.
    for table in ["jobs", "event_log", "order_state"] {
        assert_eq!(
            count(
                &db.client,
                &format!("SELECT count(*) FROM odoo_sync.{table}")
            )
            .await,
            0,
            "{table}"
        );
    }
    db.finish().await;
}

#[tokio::test]
async fn committed_insert_records_state_event_job_and_write_back() {
    let db = tracked_db("insert", "uuid").await;
    let id = new_order(&db.client, "PO-1").await;
    let row = db
        .client
        .query_one(
            "SELECT s.version = (SELECT id FROM odoo_sync.event_log WHERE entity_id = s.order_key),
                    s.sync_status, s.order_number, j.kind, j.state, o.sync_status
             FROM odoo_sync.order_state s JOIN odoo_sync.jobs j ON j.id = s.job_id
             JOIN orders o ON o.id::text = s.order_key WHERE s.order_key = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert!(
        row.get::<_, bool>(0),
        "the version is the id of the order's change event"
    );
    assert_eq!(row.get::<_, String>(1), "PENDING_SYNC");
    assert_eq!(row.get::<_, String>(2), "PO-1");
    assert_eq!(row.get::<_, String>(3), "push");
    assert_eq!(row.get::<_, String>(4), "queued");
    assert_eq!(
        row.get::<_, String>(5),
        "PENDING_SYNC",
        "write-back column set in the same write"
    );
    let ev = db
        .client
        .query_one(
            "SELECT event_type, payload FROM odoo_sync.events WHERE entity_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(ev.get::<_, String>(0), "ORDER_CREATED");
    assert_eq!(
        ev.get::<_, serde_json::Value>(1),
        serde_json::json!({"op": "INSERT", "table": "orders"})
    );
    db.finish().await;
}

#[tokio::test]
async fn hundred_updates_coalesce_into_one_job_with_the_last_version() {
    let db = tracked_db("coalesce", "bigint").await;
    let id = new_order(&db.client, "PO-C").await;
    for i in 0..100 {
        // Each statement is its own transaction (autocommit).
        db.client
            .execute(
                &format!("UPDATE orders SET notes = 'edit {i}' WHERE id = {id}"),
                &[],
            )
            .await
            .unwrap();
    }
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM odoo_sync.jobs").await,
        1
    );
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM odoo_sync.events").await,
        101
    );
    let claimed = db
        .client
        .query(
            "SELECT order_key, version FROM odoo_sync.claim_jobs('w', 10, '1 minute')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].get::<_, String>(0), id);
    let last_event: i64 = db
        .client
        .query_one("SELECT max(id) FROM odoo_sync.event_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        claimed[0].get::<_, i64>(1),
        last_event,
        "the job carries the latest version"
    );
    db.finish().await;
}

#[tokio::test]
async fn item_changes_enqueue_their_order_and_mark_it_pending() {
    let db = tracked_db("items", "uuid").await;
    let id = new_order(&db.client, "PO-I").await;
    sync_as_worker(&db.client, 7).await;
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM odoo_sync.jobs").await,
        0
    );
    let status: String = db
        .client
        .query_one("SELECT sync_status FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "SYNCED");

    db.client
        .execute(
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES ($1::text::uuid, 'P1', 2, 9.50)",
            &[&id],
        )
        .await
        .unwrap();
    let row = db
        .client
        .query_one(
            "SELECT s.version = (SELECT max(id) FROM odoo_sync.event_log WHERE event_type = 'ORDER_UPDATED'),
                    s.sync_status, o.sync_status, (SELECT count(*) FROM odoo_sync.jobs)
             FROM odoo_sync.order_state s JOIN orders o ON o.id::text = s.order_key",
            &[],
        )
        .await
        .unwrap();
    assert!(
        row.get::<_, bool>(0),
        "the item change is the order's latest version"
    );
    assert_eq!(row.get::<_, String>(1), "PENDING_SYNC");
    assert_eq!(
        row.get::<_, String>(2),
        "PENDING_SYNC",
        "the order row is marked too"
    );
    assert_eq!(row.get::<_, i64>(3), 1);

    db.client
        .execute("UPDATE order_items SET quantity = 3", &[])
        .await
        .unwrap();
    db.client
        .execute("DELETE FROM order_items", &[])
        .await
        .unwrap();
    let payloads: Vec<serde_json::Value> = db
        .client
        .query(
            "SELECT payload FROM odoo_sync.events WHERE payload->>'table' = 'items' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let ops: Vec<&str> = payloads.iter().map(|p| p["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["INSERT", "UPDATE", "DELETE"]);
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM odoo_sync.jobs").await,
        1,
        "still one job"
    );
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM odoo_sync.order_status WHERE version = (SELECT max(id) FROM odoo_sync.event_log)").await,
        1,
        "the order's version is its last change"
    );
    db.finish().await;
}

#[tokio::test]
async fn moving_an_item_to_another_order_touches_both_orders() {
    let db = tracked_db("move", "bigint").await;
    let a = new_order(&db.client, "PO-A").await;
    let b = new_order(&db.client, "PO-B").await;
    db.client
        .execute(&format!("INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES ({a}, 'P', 1, 1)"), &[])
        .await
        .unwrap();
    sync_as_worker(&db.client, 1).await;
    db.client
        .execute(&format!("UPDATE order_items SET order_id = {b}"), &[])
        .await
        .unwrap();
    let pending = count(
        &db.client,
        "SELECT count(*) FROM odoo_sync.order_state WHERE sync_status = 'PENDING_SYNC'",
    )
    .await;
    assert_eq!(pending, 2);
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM odoo_sync.jobs").await,
        2
    );
    db.finish().await;
}

#[tokio::test]
async fn delete_keeps_a_tombstone_and_enqueues_the_cancel() {
    let db = tracked_db("delete", "uuid").await;
    let id = new_order(&db.client, "PO-D").await;
    db.client
        .execute(
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES ($1::text::uuid, 'P1', 1, 5)",
            &[&id],
        )
        .await
        .unwrap();
    sync_as_worker(&db.client, 99).await;
    db.client.execute("DELETE FROM orders", &[]).await.unwrap();
    let row = db
        .client
        .query_one(
            "SELECT deleted, tombstone, sync_status, odoo_id, job_id IS NOT NULL FROM odoo_sync.order_state WHERE order_key = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    let tombstone: serde_json::Value = row.get(1);
    assert_eq!(tombstone["order_number"], "PO-D");
    assert_eq!(tombstone["id"], id.as_str());
    assert_eq!(tombstone["odoo_order_id"], 99);
    assert_eq!(row.get::<_, String>(2), "PENDING_SYNC");
    assert_eq!(row.get::<_, i32>(3), 99, "the Odoo id to cancel is kept");
    assert!(
        row.get::<_, bool>(4),
        "a job is queued to cancel it in Odoo"
    );
    let types: Vec<String> = db
        .client
        .query(
            "SELECT event_type FROM odoo_sync.events WHERE entity_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // The cascade deletes the item after the order: that is one more update of the tombstone.
    assert_eq!(
        types,
        [
            "ORDER_CREATED",
            "ORDER_UPDATED",
            "ORDER_SYNCED_TO_ODOO",
            "ORDER_DELETED",
            "ORDER_UPDATED"
        ]
    );
    let deleted_flag = count(
        &db.client,
        "SELECT count(*) FROM odoo_sync.order_state WHERE deleted",
    )
    .await;
    assert_eq!(
        deleted_flag, 1,
        "the cascaded item delete keeps the order deleted"
    );
    db.finish().await;
}

/// An update of the key is the old order gone (its Odoo order is cancelled) and a new order
/// created; an update that keeps the key is one change of the same order.
#[tokio::test]
async fn a_changed_key_deletes_the_old_order_and_creates_the_new_one() {
    let db = tracked_db("rekey", "bigint").await;
    let id = new_order(&db.client, "PO-K").await;
    sync_as_worker(&db.client, 77).await;
    let new_id = db
        .client
        .query_one(
            "UPDATE orders SET id = id + 1000, notes = 'moved' WHERE id = $1::text::bigint RETURNING id::text",
            &[&id],
        )
        .await
        .unwrap()
        .get::<_, String>(0);
    let states = db
        .client
        .query(
            "SELECT order_key, deleted, tombstone ->> 'order_number', odoo_id, sync_status, job_id IS NOT NULL
             FROM odoo_sync.order_state ORDER BY order_key::bigint",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(states.len(), 2, "one state per key");
    let (old, new) = (&states[0], &states[1]);
    assert_eq!(old.get::<_, String>(0), id);
    assert!(old.get::<_, bool>(1), "the old key is deleted");
    assert_eq!(old.get::<_, Option<String>>(2).as_deref(), Some("PO-K"));
    assert_eq!(
        old.get::<_, Option<i32>>(3),
        Some(77),
        "its Odoo order is kept to cancel"
    );
    assert!(old.get::<_, bool>(5), "a job cancels it in Odoo");
    assert_eq!(new.get::<_, String>(0), new_id);
    assert!(!new.get::<_, bool>(1));
    assert_eq!(
        new.get::<_, Option<i32>>(3),
        None,
        "the new key is a new order"
    );
    assert_eq!(new.get::<_, String>(4), "PENDING_SYNC");
    assert!(new.get::<_, bool>(5), "a job pushes it");
    let events = |key: String| {
        let client = &db.client;
        async move {
            client
                .query(
                    "SELECT event_type FROM odoo_sync.events WHERE entity_id = $1 ORDER BY id",
                    &[&key],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        events(id.clone()).await,
        ["ORDER_CREATED", "ORDER_SYNCED_TO_ODOO", "ORDER_DELETED"]
    );
    assert_eq!(events(new_id.clone()).await, ["ORDER_CREATED"]);

    // Keeping the key (even written with its own value) changes the same order.
    db.client
        .execute(
            "UPDATE orders SET id = id, notes = 'again' WHERE id = $1::text::bigint",
            &[&new_id],
        )
        .await
        .unwrap();
    assert_eq!(events(new_id).await, ["ORDER_CREATED", "ORDER_UPDATED"]);
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM odoo_sync.order_state").await,
        2
    );
    db.finish().await;
}

#[tokio::test]
async fn write_back_by_odoo_sync_does_not_echo() {
    let db = tracked_db("echo", "uuid").await;
    new_order(&db.client, "PO-E").await;
    sync_as_worker(&db.client, 5).await;
    let row = db
        .client
        .query_one(
            "SELECT o.sync_status, o.odoo_order_id, o.last_synced_at IS NOT NULL, s.version, s.synced_version,
                    (SELECT count(*) FROM odoo_sync.jobs), (SELECT count(*) FROM odoo_sync.job_history)
             FROM orders o JOIN odoo_sync.order_state s ON s.order_key = o.id::text",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "SYNCED");
    assert_eq!(row.get::<_, i32>(1), 5);
    assert!(row.get::<_, bool>(2));
    assert_eq!(
        row.get::<_, i64>(3),
        1,
        "write-back did not bump the version"
    );
    assert_eq!(row.get::<_, i64>(4), 1);
    assert_eq!(row.get::<_, i64>(5), 0, "write-back did not enqueue a push");
    assert_eq!(
        row.get::<_, i64>(6),
        1,
        "the finished job left the hot table"
    );
    // An application write that only touches write-back columns is not a change either.
    db.client
        .execute(
            "UPDATE orders SET sync_status = 'SYNCED', last_synced_at = now()",
            &[],
        )
        .await
        .unwrap();
    // Nor is an update that changes nothing.
    db.client
        .execute("UPDATE orders SET notes = notes", &[])
        .await
        .unwrap();
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM odoo_sync.jobs").await,
        0
    );
    // A real change is.
    db.client
        .execute("UPDATE orders SET notes = 'real'", &[])
        .await
        .unwrap();
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM odoo_sync.jobs").await,
        1
    );
    db.finish().await;
}

/// Capture compares a row on the stack up to 64 columns; a wider table takes another path,
/// which must tell a write-back-only update from a change just the same, in any column.
#[tokio::test]
async fn a_table_wider_than_64_columns_is_compared_column_by_column() {
    let db = tracked_db("wide", "bigint").await;
    db.client
        .batch_execute(
            "DO $$ BEGIN FOR i IN 1..70 LOOP
                 EXECUTE format('ALTER TABLE orders ADD COLUMN extra_%s text', i);
             END LOOP; END $$;",
        )
        .await
        .unwrap();
    new_order(&db.client, "PO-WIDE").await;
    sync_as_worker(&db.client, 7).await;
    let jobs = "SELECT count(*) FROM odoo_sync.jobs";
    db.client
        .execute(
            "UPDATE orders SET sync_status = 'SYNCED', last_synced_at = now(), extra_70 = extra_70",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(count(&db.client, jobs).await, 0, "a write-back-only update");
    db.client
        .execute("UPDATE orders SET extra_70 = 'changed'", &[])
        .await
        .unwrap();
    assert_eq!(
        count(&db.client, jobs).await,
        1,
        "a change of the last column"
    );
    let status: String = db
        .client
        .query_one("SELECT sync_status FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "PENDING_SYNC");
    db.finish().await;
}

#[tokio::test]
async fn change_during_push_is_pushed_again() {
    let db = tracked_db("inflight", "text").await;
    db.client
        .execute(
            "INSERT INTO orders (id, order_number, supplier_id) VALUES ('ord-1', 'PO-F', 'S1')",
            &[],
        )
        .await
        .unwrap();
    let (job, token, version) = claim_one(&db.client).await;
    db.client
        .execute("UPDATE orders SET notes = 'while pushing'", &[])
        .await
        .unwrap();
    let result = serde_json::json!({"odoo_order_id": 3, "version": version});
    let outcome: String = db
        .client
        .query_one(
            "SELECT odoo_sync.complete_job($1, $2, $3)",
            &[&job, &token, &result],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(outcome, "requeued");
    let row = db
        .client
        .query_one("SELECT s.sync_status, o.sync_status, o.odoo_order_id FROM odoo_sync.order_state s, orders o", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "PENDING_SYNC");
    assert_eq!(row.get::<_, String>(1), "PENDING_SYNC");
    assert_eq!(
        row.get::<_, i32>(2),
        3,
        "the Odoo id is written back already"
    );
    let again = db
        .client
        .query_one(
            "SELECT job_id, version FROM odoo_sync.claim_jobs('w', 1, '1 minute')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(again.get::<_, i64>(0), job);
    let last_change: i64 = db
        .client
        .query_one(
            "SELECT max(id) FROM odoo_sync.event_log WHERE event_type = 'ORDER_UPDATED'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(version < last_change);
    assert_eq!(again.get::<_, i64>(1), last_change);
    db.finish().await;
}

#[tokio::test]
async fn existing_rows_are_registered_when_tracking_starts() {
    let db = TestDb::new("backfill").await;
    db.client
        .batch_execute(&common_schema("bigint"))
        .await
        .unwrap();
    db.client
        .batch_execute(
            "INSERT INTO orders (order_number, supplier_id) SELECT 'PO-' || g, 'S1' FROM generate_series(1, 5) g;
             INSERT INTO orders (order_number, supplier_id, odoo_order_id) VALUES ('PO-linked', 'S1', 77);",
        )
        .await
        .unwrap();
    let info: serde_json::Value = db
        .client
        .query_one(
            "SELECT odoo_sync.track_orders('orders', 'order_items')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(info["existing_orders"], 6);
    assert_eq!(info["key_type"], "bigint");
    let row = db
        .client
        .query_one(
            "SELECT count(*) FILTER (WHERE sync_status = 'NOT_SYNCED'), count(*) FILTER (WHERE odoo_order_id = 77),
                    count(*) FILTER (WHERE job_id IS NULL) FROM odoo_sync.order_status",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 6);
    assert_eq!(row.get::<_, i64>(1), 1);
    assert_eq!(row.get::<_, i64>(2), 6, "tracking alone enqueues nothing");
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM orders WHERE sync_status = 'NOT_SYNCED'"
        )
        .await,
        6
    );
    db.finish().await;
}

#[tokio::test]
async fn renamed_columns_and_enum_status_are_supported() {
    let db = TestDb::new("mapping").await;
    db.client
        .batch_execute(
            "CREATE TYPE sync_state AS ENUM ('NOT_SYNCED', 'PENDING_SYNC', 'SYNCED', 'SYNC_FAILED', 'CONFLICT');
             CREATE TABLE po (po_id text PRIMARY KEY, vendor text NOT NULL, total numeric, state sync_state);
             CREATE TABLE po_line (line_id int PRIMARY KEY, po text REFERENCES po, sku text, qty numeric, price numeric);",
        )
        .await
        .unwrap();
    let mapping = serde_json::json!({
        "orders": {"id": "po_id", "supplier_id": "vendor", "grand_total": "total", "sync_status": "state"},
        "items": {"id": "line_id", "order_id": "po", "product_id": "sku", "quantity": "qty", "unit_price": "price"}
    });
    let info: serde_json::Value = db
        .client
        .query_one(
            "SELECT odoo_sync.track_orders('po', 'po_line', $1)",
            &[&mapping],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(info["orders"]["grand_total"], "total");
    assert!(
        info["orders"].get("notes").is_none(),
        "absent optional columns are not synced"
    );
    db.client
        .batch_execute("INSERT INTO po VALUES ('A-1', 'V', 10); INSERT INTO po_line VALUES (1, 'A-1', 'SKU', 1, 10);")
        .await
        .unwrap();
    let row = db
        .client
        .query_one(
            "SELECT state::text, (SELECT count(*) FROM odoo_sync.events WHERE entity_id = 'A-1') FROM po",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "PENDING_SYNC");
    assert_eq!(row.get::<_, i64>(1), 2);
    db.finish().await;
}

#[tokio::test]
async fn untrack_detaches_the_triggers() {
    let db = tracked_db("untrack", "uuid").await;
    new_order(&db.client, "PO-U").await;
    db.client
        .execute("SELECT odoo_sync.untrack_orders('orders')", &[])
        .await
        .unwrap();
    new_order(&db.client, "PO-after").await;
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM odoo_sync.order_state").await,
        0
    );
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM odoo_sync.jobs").await,
        0
    );
    assert_eq!(
        count(
            &db.client,
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'odoo_sync_capture'"
        )
        .await,
        0
    );
    // And it can be tracked again.
    db.client
        .execute(
            "SELECT odoo_sync.track_orders('orders', 'order_items')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM odoo_sync.order_state").await,
        2
    );
    db.finish().await;
}

/// A change still uncommitted while the worker reports its push must not be lost: the worker's
/// report waits for it (both lock the order's row) and then sees that the order changed.
#[tokio::test]
async fn uncommitted_item_change_during_completion_is_not_lost() {
    let mut db = tracked_db("race", "bigint").await;
    let id = new_order(&db.client, "PO-R").await;
    db.client
        .execute(
            &format!("INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES ({id}, 'P', 1, 1)"),
            &[],
        )
        .await
        .unwrap();
    let (job, token, version) = claim_one(&db.client).await;

    let worker = db.connect().await;
    // The application changes an item and has not committed yet.
    let tx = db.client.transaction().await.unwrap();
    tx.execute("UPDATE order_items SET quantity = 5", &[])
        .await
        .unwrap();

    let report = tokio::spawn(async move {
        let result = serde_json::json!({"odoo_order_id": 8, "version": version});
        worker
            .query_one(
                "SELECT odoo_sync.complete_job($1, $2, $3)",
                &[&job, &token, &result],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
    });
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        !report.is_finished(),
        "the report waits for the application's transaction"
    );
    tx.commit().await.unwrap();
    assert_eq!(report.await.unwrap(), "requeued");
    let pending: String = db
        .client
        .query_one("SELECT sync_status FROM odoo_sync.order_status", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, "PENDING_SYNC");
    db.finish().await;
}

/// The same race, with a worker session whose default isolation is REPEATABLE READ (a role or
/// database setting): its snapshot, taken before it waits for the order's lock, would miss the
/// item change committed meanwhile, which raises no serialization error since it only locked
/// the order's row. complete_job refuses to run there, and changes nothing.
#[tokio::test]
async fn completion_refuses_a_repeatable_read_session() {
    let db = tracked_db("rrworker", "bigint").await;
    let id = new_order(&db.client, "PO-RR").await;
    let (job, token, version) = claim_one(&db.client).await;
    let worker = db.connect().await;
    worker
        .batch_execute("SET default_transaction_isolation = 'repeatable read'")
        .await
        .unwrap();
    let result = serde_json::json!({"odoo_order_id": 8, "version": version});
    for call in [
        "SELECT odoo_sync.complete_job($1, $2, $3)",
        "SELECT odoo_sync.fail_job($1, $2, $3)",
    ] {
        let refused = worker
            .query_one(call, &[&job, &token, &result])
            .await
            .expect_err("refused at REPEATABLE READ");
        let refused = refused.as_db_error().expect("a database error");
        assert_eq!(refused.code().code(), "25000", "{call}");
        assert!(
            refused
                .message()
                .contains("must run at READ COMMITTED, not REPEATABLE READ"),
            "{}",
            refused.message()
        );
        assert!(refused
            .hint()
            .unwrap_or_default()
            .contains("default_transaction_isolation"));
    }
    let state: String = db
        .client
        .query_one("SELECT state FROM odoo_sync.jobs WHERE id = $1", &[&job])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "running", "nothing changed");

    // odoo-sync-worker sets READ COMMITTED for its sessions; then the report goes through.
    worker
        .batch_execute("SET default_transaction_isolation = 'read committed'")
        .await
        .unwrap();
    db.client
        .execute(
            &format!("UPDATE orders SET notes = 'x' WHERE id = {id}"),
            &[],
        )
        .await
        .unwrap();
    let outcome: String = worker
        .query_one(
            "SELECT odoo_sync.complete_job($1, $2, $3)",
            &[&job, &token, &result],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(outcome, "requeued");
    db.finish().await;
}

/// The payloads `listener` received up to a sentinel NOTIFY sent now on `client`: PostgreSQL
/// delivers notifications in commit order, so everything committed before has arrived.
async fn notifications_so_far(
    client: &Client,
    listener: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) -> Vec<String> {
    client
        .batch_execute("SELECT pg_notify('odoo_sync_events', 'sentinel')")
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let payload = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
            .await
            .expect("the sentinel notification arrives")
            .expect("the LISTEN connection stays open");
        if payload == "sentinel" {
            return seen;
        }
        seen.push(payload);
    }
}

/// A transaction that puts orders in the queue notifies once; changes that join jobs already
/// waiting give the workers nothing new to do and notify nobody.
#[tokio::test]
async fn a_transaction_that_queues_work_notifies_once() {
    let db = tracked_db("notify", "bigint").await;
    db.client
        .batch_execute(
            "INSERT INTO orders (order_number, supplier_id)
             SELECT 'PO-N' || g, 'S1' FROM generate_series(1, 20) g",
        )
        .await
        .unwrap();
    let (_listening, mut listener) = listen(&db.conninfo(), "odoo_sync_events").await;
    let jobs = "SELECT count(*) FROM odoo_sync.jobs";
    let events = "SELECT count(*) FROM odoo_sync.event_log";
    assert_eq!(count(&db.client, jobs).await, 20);

    // Every order already waits for its push: an update appends its events and joins the jobs.
    let events_before = count(&db.client, events).await;
    db.client
        .execute("UPDATE orders SET notes = 'all twenty'", &[])
        .await
        .unwrap();
    assert_eq!(
        notifications_so_far(&db.client, &mut listener).await,
        Vec::<String>::new(),
        "nothing new for the workers"
    );
    assert_eq!(count(&db.client, events).await, events_before + 20);
    assert_eq!(count(&db.client, jobs).await, 20, "coalesced");

    // Once pushed (one 'event' per completed job, which workers ignore), the same update
    // queues all twenty again: one notification for the whole transaction.
    sync_as_worker(&db.client, 9).await;
    assert_eq!(
        notifications_so_far(&db.client, &mut listener).await,
        vec!["event".to_string(); 20]
    );
    db.client
        .execute("UPDATE orders SET notes = 'all twenty again'", &[])
        .await
        .unwrap();
    assert_eq!(
        notifications_so_far(&db.client, &mut listener).await,
        ["queue"]
    );
    assert_eq!(count(&db.client, jobs).await, 20);

    // An order update and an item insert, each in its own transaction, each queueing a
    // pushed order: one notification each.
    sync_as_worker(&db.client, 9).await;
    notifications_so_far(&db.client, &mut listener).await;
    db.client
        .execute(
            "UPDATE orders SET notes = 'one' WHERE order_number = 'PO-N1'",
            &[],
        )
        .await
        .unwrap();
    db.client
        .execute(
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price)
             SELECT id, 'P1', 1, 2 FROM orders WHERE order_number = 'PO-N2'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        notifications_so_far(&db.client, &mut listener).await,
        ["queue", "queue"],
        "one per transaction: the order update, then the item insert"
    );

    // A rolled back change, a write-back-only update and a no-op update tell nobody.
    sync_as_worker(&db.client, 9).await;
    notifications_so_far(&db.client, &mut listener).await;
    db.client
        .batch_execute("BEGIN; UPDATE orders SET notes = 'undone'; ROLLBACK")
        .await
        .unwrap();
    db.client
        .batch_execute("UPDATE orders SET sync_status = 'SYNCED'; UPDATE orders SET notes = notes")
        .await
        .unwrap();
    assert_eq!(
        notifications_so_far(&db.client, &mut listener).await,
        Vec::<String>::new()
    );
    assert_eq!(count(&db.client, jobs).await, 0);
    db.finish().await;
}

/// Past `odoo_sync.notify_queue_limit` of PostgreSQL's notification queue, changes commit with
/// their jobs and events but notify nobody (the workers poll), so a full queue cannot make the
/// application's COMMIT fail. The real queue takes gigabytes to fill, so the limit is lowered
/// to 0 here to take the same path.
#[tokio::test]
async fn past_the_queue_limit_changes_commit_without_notifying() {
    let db = tracked_db("notify_limit", "bigint").await;
    let (_listening, mut listener) = listen(&db.conninfo(), "odoo_sync_events").await;
    let bad = db
        .client
        .batch_execute("SET odoo_sync.notify_queue_limit = 1.5")
        .await
        .unwrap_err();
    let bad = bad.as_db_error().expect("a database error");
    assert_eq!(bad.code().code(), "22023");
    assert!(
        bad.message().contains("outside the valid range"),
        "{}",
        bad.message()
    );

    db.client
        .batch_execute("SET odoo_sync.notify_queue_limit = 0")
        .await
        .unwrap();
    new_order(&db.client, "PO-Q1").await;
    db.client
        .batch_execute("UPDATE orders SET notes = 'past the limit'")
        .await
        .unwrap();
    assert_eq!(
        notifications_so_far(&db.client, &mut listener).await,
        Vec::<String>::new(),
        "nothing is sent past the limit"
    );
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM odoo_sync.jobs").await,
        1,
        "the change still has its job"
    );
    assert_eq!(
        count(&db.client, "SELECT count(*) FROM odoo_sync.event_log").await,
        2,
        "and its events"
    );

    db.client
        .batch_execute("RESET odoo_sync.notify_queue_limit")
        .await
        .unwrap();
    new_order(&db.client, "PO-Q2").await;
    assert_eq!(
        notifications_so_far(&db.client, &mut listener).await,
        ["queue"],
        "below the default limit (half full) the change notifies"
    );
    db.finish().await;
}

#[tokio::test]
async fn notifications_follow_savepoints_and_skip_prepared_transactions() {
    let db = tracked_db("notify2pc", "bigint").await;
    let order = new_order(&db.client, "PO-2PC").await;
    // Three pushed orders: a change to any of them queues it, and so notifies.
    let others = [
        new_order(&db.client, "PO-2PC-A").await,
        new_order(&db.client, "PO-2PC-B").await,
    ];
    sync_as_worker(&db.client, 7).await;
    let (_listening, mut listener) = listen(&db.conninfo(), "odoo_sync_events").await;
    let update = format!("UPDATE orders SET notes = md5(random()::text) WHERE id = {order}");

    // What a rolled back savepoint changed tells nobody; a released one does.
    db.client
        .batch_execute(&format!(
            "BEGIN; SAVEPOINT a; {update}; ROLLBACK TO a; COMMIT;
             BEGIN; SAVEPOINT a; SAVEPOINT b; {update}; RELEASE b; ROLLBACK TO a; COMMIT;"
        ))
        .await
        .unwrap();
    assert_eq!(
        notifications_so_far(&db.client, &mut listener).await,
        Vec::<String>::new()
    );
    db.client
        .batch_execute(&format!("BEGIN; SAVEPOINT a; {update}; RELEASE a; COMMIT;"))
        .await
        .unwrap();
    assert_eq!(
        notifications_so_far(&db.client, &mut listener).await,
        ["queue"]
    );
    sync_as_worker(&db.client, 7).await;
    db.client
        .batch_execute(&format!(
            "DO $$ BEGIN
                 FOR i IN 1..3 LOOP
                     BEGIN {update}; EXCEPTION WHEN others THEN NULL; END;
                 END LOOP;
             END $$;"
        ))
        .await
        .unwrap();
    assert_eq!(
        notifications_so_far(&db.client, &mut listener).await,
        ["event", "queue"],
        "one per committed transaction, however many subtransactions changed the order"
    );

    // A procedure that commits: each of its transactions that queues an order tells listeners.
    db.client
        .batch_execute(
            "CREATE PROCEDURE touch_each(ids bigint[]) LANGUAGE plpgsql AS $$
             BEGIN
                 FOR i IN 1..array_length(ids, 1) LOOP
                     UPDATE orders SET notes = md5(random()::text) WHERE id = ids[i];
                     COMMIT;
                 END LOOP;
             END $$",
        )
        .await
        .unwrap();
    sync_as_worker(&db.client, 7).await;
    notifications_so_far(&db.client, &mut listener).await;
    // Alone: a CALL that commits cannot share its query string with other statements.
    db.client
        .batch_execute(&format!(
            "CALL touch_each(ARRAY[{order}, {}, {}])",
            others[0], others[1]
        ))
        .await
        .unwrap();
    assert_eq!(
        notifications_so_far(&db.client, &mut listener).await,
        ["queue", "queue", "queue"]
    );
    sync_as_worker(&db.client, 7).await;
    notifications_so_far(&db.client, &mut listener).await;
    db.client
        .batch_execute(&format!(
            "CALL touch_each(ARRAY[{order}, {order}, {order}])"
        ))
        .await
        .unwrap();
    assert_eq!(
        notifications_so_far(&db.client, &mut listener).await,
        ["queue"],
        "the first transaction queues the order; the next two join its job"
    );

    // Two-phase commit: PostgreSQL refuses to PREPARE a transaction that executed NOTIFY, so
    // a prepared change notifies nobody; its job is there once COMMIT PREPARED ran (workers
    // find it by polling).
    let prepared: String = db
        .client
        .query_one("SHOW max_prepared_transactions", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(
        prepared, "0",
        "this cluster cannot prepare transactions: restart it (bash scripts/pg.sh stop) so that \
         scripts/pg.sh starts it with max_prepared_transactions"
    );
    sync_as_worker(&db.client, 7).await;
    let jobs = "SELECT count(*) FROM odoo_sync.jobs";
    assert_eq!(count(&db.client, jobs).await, 0);
    let gid = format!("{}_tx", db.name);
    db.client
        .batch_execute(&format!(
            "BEGIN; {update}; PREPARE TRANSACTION '{gid}_rollback'"
        ))
        .await
        .expect("a transaction that changed a tracked table can be prepared");
    db.client
        .batch_execute(&format!("ROLLBACK PREPARED '{gid}_rollback'"))
        .await
        .unwrap();
    assert_eq!(count(&db.client, jobs).await, 0, "rolled back: no job");
    db.client
        .batch_execute(&format!("BEGIN; {update}; PREPARE TRANSACTION '{gid}'"))
        .await
        .unwrap();
    assert_eq!(count(&db.client, jobs).await, 0, "not committed yet");
    db.client
        .batch_execute(&format!("COMMIT PREPARED '{gid}'"))
        .await
        .unwrap();
    assert_eq!(count(&db.client, jobs).await, 1);
    let status: String = db
        .client
        .query_one(
            "SELECT sync_status FROM odoo_sync.order_status WHERE local_order_id = $1",
            &[&order],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "PENDING_SYNC");
    assert_eq!(
        notifications_so_far(&db.client, &mut listener).await,
        vec!["event".to_string()],
        "only the completed push of the first part; nothing from the prepared transactions"
    );
    db.finish().await;
}
