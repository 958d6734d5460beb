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
    assert!(
        doc["odoo_notes"].is_null(),
        "no notes column: Odoo's are left alone"
    );
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
    let (doc, before, _) = read_during_a_change(
        "document_race",
        "SELECT odoo_sync.order_document(t.id, '1') FROM odoo_sync.tracked_tables t",
    )
    .await;
    assert_eq!(
        doc["order"]["status"], "DRAFT",
        "the row was read before the change"
    );
    assert_eq!(
        doc["version"], before,
        "a version that counts the change would let complete_job finish without pushing it"
    );
}

/// The same for order_documents(), which reads a document in one statement: the version is
/// the one of the rows it returns, whichever side of the change they are.
#[tokio::test]
async fn a_batch_read_during_a_change_returns_the_version_of_its_rows() {
    let (doc, before, after) = read_during_a_change(
        "documents_race",
        "SELECT d.document FROM odoo_sync.tracked_tables t,
                LATERAL odoo_sync.order_documents(ARRAY[t.id], '{1}') d",
    )
    .await;
    let expected = if doc["order"]["status"] == "CANCELLED" {
        after
    } else {
        before
    };
    assert_eq!(doc["version"], expected, "{doc}");
}

/// Runs `sql` (one document of order 1) while a change of the order commits: the read is held
/// by a lock on the items table until the change has committed. Returns the document and the
/// order's versions before and after the change.
async fn read_during_a_change(label: &str, sql: &'static str) -> (serde_json::Value, i64, i64) {
    let db = TestDb::new(label).await;
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
            .query_one(sql, &[])
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
    db.finish().await;
    (doc, before, after)
}

#[tokio::test]
async fn notes_travel_as_html_and_are_written_only_when_changed_since_the_last_sync() {
    let db = TestDb::new("document_notes").await;
    db.client
        .batch_execute(&odoo_sync_tests::pg_cluster::common_schema("bigint"))
        .await
        .unwrap();
    db.client
        .query_one(
            "SELECT odoo_sync.track_orders('orders', 'order_items')",
            &[],
        )
        .await
        .unwrap();

    // Text → HTML → text gives the text back (in canonical form), whatever it holds.
    let samples: Vec<&str> = vec![
        "a & b\r\nc",
        "x &lt; y &amp; &#39;",
        "  padded\n\n\nlines  ",
        "tabs\tand unicode é € \u{a0}",
        "<not a tag",
        "5 > 3 < 4",
        "<p>HTML kept as <b>HTML</b></p>",
    ];
    for row in db
        .client
        .query(
            "SELECT x, odoo_sync._text_html(x),
                    odoo_sync._html_text(odoo_sync._text_html(x)) IS NOT DISTINCT FROM odoo_sync._note_text(x)
             FROM unnest($1::text[]) x",
            &[&samples],
        )
        .await
        .unwrap()
    {
        let (text, html, round_trip): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
        assert!(round_trip, "{text:?} → {html:?}");
    }
    let one = |sql: &'static str| {
        let client = &db.client;
        async move {
            client
                .query_one(sql, &[])
                .await
                .unwrap()
                .get::<_, Option<String>>(0)
        }
    };
    assert_eq!(
        one("SELECT odoo_sync._text_html(E'Dock 2 & ramp\\r\\nafter 9')")
            .await
            .as_deref(),
        Some("<p>Dock 2 &amp; ramp<br>after 9</p>")
    );
    assert_eq!(one("SELECT odoo_sync._text_html(E' \\n ')").await, None);
    assert_eq!(
        one("SELECT odoo_sync._html_text('<p>a&nbsp;&#233;&#x20AC;</p><ul><li>one</li><li>two &amp;lt;</li></ul>')")
            .await
            .as_deref(),
        Some("a\u{a0}é€\none\ntwo &lt;")
    );

    let key: String = db
        .client
        .query_one(
            "INSERT INTO orders (order_number, supplier_id, notes) VALUES ('PO-N', 'S1', 'Dock 2') RETURNING id::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let notes_to_write = || {
        let (client, key) = (&db.client, key.clone());
        async move {
            let doc: serde_json::Value = client
                .query_one("SELECT odoo_sync.order_document(1, $1)", &[&key])
                .await
                .unwrap()
                .get(0);
            doc["odoo_notes"].clone()
        }
    };
    // Never synced: the local text, as HTML.
    assert_eq!(notes_to_write().await, json!({"html": "<p>Dock 2</p>"}));
    // Unchanged since the last sync: Odoo's HTML as it is (its formatting survives).
    let set_base = |base: serde_json::Value| {
        let (client, key) = (&db.client, key.clone());
        async move {
            client
                .execute(
                    "UPDATE odoo_sync.order_state SET base_snapshot = $2 WHERE order_key = $1",
                    &[&key, &base],
                )
                .await
                .unwrap();
        }
    };
    set_base(json!({"lines": {}, "notes": "Dock 2", "notes_html": "<p><b>Dock</b> 2</p>"})).await;
    assert_eq!(
        notes_to_write().await,
        json!({"html": "<p><b>Dock</b> 2</p>"})
    );
    // Changed: the new text; emptied: empty.
    db.client
        .batch_execute("UPDATE orders SET notes = ' Dock 3 '")
        .await
        .unwrap();
    assert_eq!(notes_to_write().await, json!({"html": "<p>Dock 3</p>"}));
    db.client
        .batch_execute("UPDATE orders SET notes = NULL")
        .await
        .unwrap();
    assert_eq!(notes_to_write().await, json!({"html": null}));
    // A base from before notes were synced, and no local notes: Odoo's are left alone.
    set_base(json!({"lines": {}})).await;
    assert_eq!(notes_to_write().await, serde_json::Value::Null);
    db.finish().await;
}

#[tokio::test]
async fn delivery_dates_become_odoo_utc_datetimes_whatever_the_column_type() {
    let mut db = TestDb::new("document_dates").await;
    db.client
        .batch_execute(
            "SET TimeZone = 'America/New_York';
             CREATE TABLE po (id bigint PRIMARY KEY, vendor text NOT NULL, due date, due_at timestamptz,
                              due_local timestamp);
             CREATE TABLE po_line (id int PRIMARY KEY, order_id bigint REFERENCES po, product_id text,
                                   quantity numeric, unit_price numeric);",
        )
        .await
        .unwrap();
    let worker = db.create_role("worker", &["odoo_sync_worker"]).await;
    let client = db.connect_as(&worker).await;
    // The worker's session zone must not matter either.
    client
        .batch_execute("SET TimeZone = 'Asia/Tokyo'")
        .await
        .unwrap();
    // One tracking at a time: track, read, untrack.
    let cases = [
        ("due", "'2026-12-15'", Some("2026-12-15 12:00:00")),
        (
            "due_at",
            "'2026-12-15 23:30-05'",
            Some("2026-12-16 04:30:00"),
        ),
        (
            "due_at",
            "'2026-12-15 09:15:42.5+01'",
            Some("2026-12-15 08:15:42"),
        ),
        (
            "due_local",
            "'2026-12-15 23:30'",
            Some("2026-12-15 23:30:00"),
        ),
        ("due", "'infinity'", None),
        ("due_at", "NULL", None),
    ];
    for (n, (column, value, expected)) in cases.into_iter().enumerate() {
        let mapping =
            json!({"orders": {"supplier_id": "vendor", "requested_delivery_date": column}});
        db.client
            .query_one(
                "SELECT odoo_sync.track_orders('po', 'po_line', $1)",
                &[&mapping],
            )
            .await
            .unwrap();
        db.client
            .batch_execute(&format!(
                "INSERT INTO po (id, vendor, {column}) VALUES ({n}, 'V', {value})"
            ))
            .await
            .unwrap();
        let doc: serde_json::Value = client
            .query_one(
                "SELECT odoo_sync.order_document(t.id, $1)
                 FROM odoo_sync.tracked_tables t WHERE t.orders_table = 'po'::regclass",
                &[&n.to_string()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            doc["odoo_date_planned"].as_str(),
            expected,
            "{column} = {value}: {doc}"
        );
        // The day the merge compares is that datetime's UTC date.
        let canonical: serde_json::Value = db
            .client
            .query_one("SELECT odoo_sync._canonical_local($1)", &[&doc])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            canonical["delivery_date"].as_str(),
            expected.map(|e| &e[..10]),
            "{canonical}"
        );
        db.client
            .batch_execute("SELECT odoo_sync.untrack_orders('po'); DELETE FROM po;")
            .await
            .unwrap();
    }
    db.finish().await;
}

/// order_documents() (the worker reads a batch's documents with it) returns for each pair what
/// order_document() returns, in the order asked: across trackings with other key types and
/// column names, for an order asked twice, a missing one, and items linked to Odoo lines.
#[tokio::test]
async fn order_documents_are_order_document_of_each_pair_in_the_order_asked() {
    let db = TestDb::new("documents").await;
    db.client
        .batch_execute(&odoo_sync_tests::pg_cluster::common_schema("bigint"))
        .await
        .unwrap();
    db.client
        .batch_execute(
            "CREATE TABLE po (po_id uuid PRIMARY KEY, ref text, vendor text NOT NULL, total numeric(12,2));
             CREATE TABLE po_line (line_id int PRIMARY KEY, po uuid REFERENCES po, sku text,
                                   qty numeric(12,3), price numeric(12,2));
             CREATE INDEX ON po_line (po);
             SELECT odoo_sync.track_orders('orders', 'order_items');
             SELECT odoo_sync.track_orders('po', 'po_line', '{\"orders\": {\"id\": \"po_id\", \"order_number\": \"ref\",
                 \"supplier_id\": \"vendor\", \"grand_total\": \"total\"}, \"items\": {\"id\": \"line_id\",
                 \"order_id\": \"po\", \"product_id\": \"sku\", \"quantity\": \"qty\", \"unit_price\": \"price\"}}');
             INSERT INTO orders (id, supplier_id, notes) VALUES (1, 'S1', 'first'), (2, 'S2', NULL);
             INSERT INTO order_items (id, order_id, product_id, quantity, unit_price)
                 VALUES (11, 1, 'P1', 2, 10.50), (12, 1, 'P2', 1.5, 3), (21, 2, 'P3', 1, 1);
             INSERT INTO po VALUES ('00000000-0000-0000-0000-00000000000a', 'PO-A', 'V', 12.34);
             INSERT INTO po_line VALUES (3, '00000000-0000-0000-0000-00000000000a', 'SKU', 0.125, 98.76);
             INSERT INTO odoo_sync.line_links (tracking_id, item_key, order_key, odoo_line_id) VALUES (1, '12', '1', 4242);",
        )
        .await
        .unwrap();
    let (po, orders): (i32, i32) = {
        let r = db
            .client
            .query_one(
                "SELECT (SELECT id FROM odoo_sync.tracked_tables WHERE orders_table = 'po'::regclass),
                        (SELECT id FROM odoo_sync.tracked_tables WHERE orders_table = 'orders'::regclass)",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        orders, 1,
        "the line link above belongs to the orders tracking"
    );
    let asked: Vec<(i32, &str)> = vec![
        (orders, "2"),
        (po, "00000000-0000-0000-0000-00000000000a"),
        (orders, "1"),
        (orders, "404"),
        (orders, "2"),
    ];
    let trackings: Vec<i32> = asked.iter().map(|a| a.0).collect();
    let keys: Vec<&str> = asked.iter().map(|a| a.1).collect();
    let batch = db
        .client
        .query(
            "SELECT n, document FROM odoo_sync.order_documents($1, $2) ORDER BY n",
            &[&trackings, &keys],
        )
        .await
        .unwrap();
    assert_eq!(batch.len(), asked.len());
    for (row, (tracking, key)) in batch.iter().zip(&asked) {
        let one: serde_json::Value = db
            .client
            .query_one("SELECT odoo_sync.order_document($1, $2)", &[tracking, key])
            .await
            .unwrap()
            .get(0);
        assert_eq!(row.get::<_, serde_json::Value>(1), one, "{tracking} {key}");
    }
    let doc = |i: usize| batch[i].get::<_, serde_json::Value>(1);
    assert_eq!(doc(1)["items"][0]["unit_price"], "98.76");
    assert_eq!(doc(2)["items"][1]["odoo_line_id"], 4242);
    assert_eq!(doc(2)["items"][0].get("odoo_line_id"), None);
    assert_eq!(doc(3)["deleted"], true);
    assert_eq!(doc(0), doc(4));

    // Bad input: a clear error.
    let err = db
        .client
        .query(
            "SELECT * FROM odoo_sync.order_documents('{1, 1}', '{1}')",
            &[],
        )
        .await
        .unwrap_err();
    let (code, message) = db_error(&err);
    assert_eq!(code, "22023");
    assert!(
        message.contains("as many order keys (1) as tracking ids (2)"),
        "{message}"
    );
    let err = db
        .client
        .query(
            "SELECT * FROM odoo_sync.order_documents('{1, 999}', '{1, 1}')",
            &[],
        )
        .await
        .unwrap_err();
    let (code, message) = db_error(&err);
    assert_eq!(code, "P0002");
    assert!(message.contains("tracking 999 does not exist"), "{message}");
    db.finish().await;
}
