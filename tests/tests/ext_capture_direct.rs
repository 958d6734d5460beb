//! Capture's direct write path: the trigger appends events without the executor, reads the
//! order's state with a fresh snapshot and writes the order's version in place of its state row.
//! These tests prove the rows and index entries it writes are the ones an INSERT or UPDATE would
//! write, that anything a DBA adds to the event log or the state table (a trigger, an index)
//! still works because capture then goes through SQL or maintains it, and that a change made in
//! a REPEATABLE READ transaction is never left without a job.

use odoo_sync_tests::pg_cluster::{common_schema, TestDb};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// A tracked pair, with the index by order a DBA who reads one order's history often adds to
/// the event log (docs/operations.md): the direct path must keep it complete.
async fn tracked_db(label: &str) -> TestDb {
    let db = TestDb::new(label).await;
    db.client
        .batch_execute(&common_schema("bigint"))
        .await
        .unwrap();
    db.client
        .batch_execute(
            "SELECT odoo_sync.track_orders('orders', 'order_items');
             CREATE INDEX event_log_by_order ON odoo_sync.event_log (entity_id, tracking_id, id);",
        )
        .await
        .unwrap();
    db
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn new_order(client: &Client) -> i64 {
    client
        .query_one(
            "INSERT INTO orders (order_number, supplier_id) VALUES ('PO-1', 'S1') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Every index of the event log holds exactly the rows of the table (amcheck reads them all).
async fn assert_event_indexes_complete(client: &Client) {
    assert_indexes_complete(client, "odoo_sync.event_log").await;
}

/// Every btree index of `table` holds exactly the rows of the table.
async fn assert_indexes_complete(client: &Client, table: &str) {
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        .await
        .unwrap();
    let btrees = client
        .query(
            "SELECT i.indexrelid::regclass::text FROM pg_index i
             JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
             WHERE i.indrelid = $1::text::regclass AND a.amname = 'btree'",
            &[&table],
        )
        .await
        .unwrap();
    assert!(!btrees.is_empty(), "{table} has a btree index");
    for row in btrees {
        let index: String = row.get(0);
        client
            .execute(
                "SELECT bt_index_check($1::text::regclass, heapallindexed => true)",
                &[&index],
            )
            .await
            .unwrap_or_else(|e| panic!("{index} is missing entries: {e}"));
    }
}

#[tokio::test]
async fn directly_written_events_are_what_an_insert_would_write() {
    let db = tracked_db("direct_event").await;
    let c = &db.client;
    let id = new_order(c).await;
    let tx_time: std::time::SystemTime = {
        c.batch_execute("BEGIN").await.unwrap();
        c.execute("UPDATE orders SET notes = 'n' WHERE id = $1", &[&id])
            .await
            .unwrap();
        let t = c.query_one("SELECT now()", &[]).await.unwrap().get(0);
        c.batch_execute("COMMIT").await.unwrap();
        t
    };
    let row = c
        .query_one(
            "SELECT e.occurred_at, e.event_type, e.tracking_id, e.entity_id, e.actor::text = session_user,
                    e.payload
             FROM odoo_sync.event_log e WHERE e.entity_id = $1 ORDER BY e.id DESC LIMIT 1",
            &[&id.to_string()],
        )
        .await
        .unwrap();
    let occurred: std::time::SystemTime = row.get(0);
    assert_eq!(occurred, tx_time, "occurred_at is the transaction's now()");
    assert_eq!(row.get::<_, String>(1), "ORDER_UPDATED");
    assert_eq!(row.get::<_, Option<i32>>(2), Some(1));
    assert!(row.get::<_, bool>(4), "actor is the session user");
    assert_eq!(
        row.get::<_, Option<serde_json::Value>>(5),
        None,
        "the payload the event type implies is not stored"
    );
    let latest_payload =
        "SELECT payload FROM odoo_sync.events WHERE entity_id = $1 ORDER BY id DESC LIMIT 1";
    let shown: serde_json::Value = c
        .query_one(latest_payload, &[&id.to_string()])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        shown,
        serde_json::json!({"op": "UPDATE", "table": "orders"}),
        "the events view shows it"
    );
    // A DBA who wants every payload stored fills in the missing ones and makes the column NOT
    // NULL (docs/operations.md), and gets them.
    c.batch_execute(
        "UPDATE odoo_sync.event_log l SET payload = e.payload
           FROM odoo_sync.events e WHERE e.id = l.id AND l.payload IS NULL;
         ALTER TABLE odoo_sync.event_log ALTER COLUMN payload SET NOT NULL",
    )
    .await
    .unwrap();
    c.execute("UPDATE orders SET notes = 'stored' WHERE id = $1", &[&id])
        .await
        .unwrap();
    let stored: serde_json::Value = c
        .query_one(
            "SELECT payload FROM odoo_sync.event_log WHERE entity_id = $1 ORDER BY id DESC LIMIT 1",
            &[&id.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored,
        serde_json::json!({"op": "UPDATE", "table": "orders"})
    );
    c.batch_execute("ALTER TABLE odoo_sync.event_log ALTER COLUMN payload DROP NOT NULL")
        .await
        .unwrap();

    // The DBA's index finds the order's events, and amcheck finds every row of the table in
    // every btree index.
    c.batch_execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        .await
        .unwrap();
    let via_index = count(
        c,
        &format!(
            "SELECT count(*) FROM odoo_sync.event_log WHERE entity_id = '{id}' AND tracking_id = 1"
        ),
    )
    .await;
    c.batch_execute("RESET enable_seqscan; RESET enable_bitmapscan")
        .await
        .unwrap();
    assert_eq!(
        via_index, 3,
        "ORDER_CREATED and two ORDER_UPDATED, found by index"
    );
    assert_event_indexes_complete(c).await;

    // The version the queue reports is the id of the latest change event.
    let version: i64 = c
        .query_one(
            "SELECT version FROM odoo_sync.order_status WHERE local_order_id = $1",
            &[&id.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    let latest: i64 = c
        .query_one(
            "SELECT max(id) FROM odoo_sync.event_log WHERE entity_id = $1",
            &[&id.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, latest);
}

/// The version of `id` as the queue and the views see it, and the id of its latest event.
async fn version_and_latest_event(c: &Client, id: i64) -> (i64, i64) {
    let row = c
        .query_one(
            "SELECT s.version,
                    (SELECT max(e.id) FROM odoo_sync.event_log e
                     WHERE e.entity_id = s.order_key AND e.tracking_id = s.tracking_id)
             FROM odoo_sync.order_state s WHERE s.order_key = $1",
            &[&id.to_string()],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// A change that joins a waiting job writes the order's version in place of its state row.
/// An index on a column that changes (here `version` itself) makes every such write leave the
/// page's HOT chain, so capture must insert the new row version into every index itself,
/// partial ones by their predicate; a rolled back change leaves the version as it was.
#[tokio::test]
async fn the_version_written_in_place_is_in_every_index_of_the_state_table() {
    let db = tracked_db("direct_version_index").await;
    let c = &db.client;
    let id = new_order(c).await;
    c.batch_execute(
        "CREATE INDEX state_by_version ON odoo_sync.order_state (version);
         CREATE INDEX state_pending ON odoo_sync.order_state (order_key) WHERE sync_status = 'PENDING_SYNC';",
    )
    .await
    .unwrap();
    for n in 0..5 {
        c.execute(
            "UPDATE orders SET notes = $2 WHERE id = $1",
            &[&id, &format!("v{n}")],
        )
        .await
        .unwrap();
        c.execute(
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES ($1, 'P', 1, 2)",
            &[&id],
        )
        .await
        .unwrap();
    }
    let (version, latest) = version_and_latest_event(c, id).await;
    assert_eq!(version, latest, "the version is the latest change event");
    assert_indexes_complete(c, "odoo_sync.order_state").await;
    c.batch_execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        .await
        .unwrap();
    assert_eq!(
        count(
            c,
            &format!("SELECT count(*) FROM odoo_sync.order_state WHERE version = {version}")
        )
        .await,
        1,
        "found by the index on version"
    );
    assert_eq!(
        count(
            c,
            &format!(
                "SELECT count(*) FROM odoo_sync.order_state
                 WHERE order_key = '{id}' AND sync_status = 'PENDING_SYNC'"
            )
        )
        .await,
        1,
        "found by the partial index"
    );
    c.batch_execute("RESET enable_seqscan; RESET enable_bitmapscan")
        .await
        .unwrap();

    c.batch_execute("BEGIN").await.unwrap();
    c.execute("UPDATE orders SET notes = 'gone' WHERE id = $1", &[&id])
        .await
        .unwrap();
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(version_and_latest_event(c, id).await, (version, latest));
    assert_eq!(
        count(c, "SELECT count(*) FROM odoo_sync.jobs WHERE kind = 'push'").await,
        1,
        "one coalesced job"
    );
}

/// A trigger a DBA put on the state table sees capture's version writes (they go through an
/// UPDATE then), and the version is still the latest change event.
#[tokio::test]
async fn a_trigger_added_to_the_state_table_sees_the_version_writes() {
    let db = tracked_db("direct_state_trigger").await;
    let c = &db.client;
    let id = new_order(c).await;
    c.batch_execute(
        "CREATE TABLE version_audit (order_key text, version bigint);
         CREATE FUNCTION audit_version() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO public.version_audit VALUES (NEW.order_key, NEW.version); RETURN NEW; END $$;
         CREATE TRIGGER audit AFTER UPDATE ON odoo_sync.order_state
             FOR EACH ROW EXECUTE FUNCTION audit_version();",
    )
    .await
    .unwrap();
    for n in 0..3 {
        c.execute(
            "UPDATE orders SET notes = $2 WHERE id = $1",
            &[&id, &format!("v{n}")],
        )
        .await
        .unwrap();
    }
    let (version, latest) = version_and_latest_event(c, id).await;
    assert_eq!(version, latest);
    assert_eq!(
        count(c, "SELECT count(*) FROM version_audit").await,
        3,
        "the DBA's trigger saw each version write"
    );
    assert_eq!(
        count(c, "SELECT max(version) FROM version_audit").await,
        version
    );
}

/// Another transaction that updates the order's state row while a change is captured (here a
/// DBA's UPDATE; the worker's writes take the order's lock first): capture waits for it, reads
/// the row again and writes the version over the other transaction's update, losing neither.
#[tokio::test]
async fn a_state_row_updated_meanwhile_is_read_again() {
    let db = tracked_db("direct_state_race").await;
    let c = &db.client;
    let id = new_order(c).await;
    c.execute("UPDATE orders SET notes = 'first' WHERE id = $1", &[&id])
        .await
        .unwrap();
    let other = db.connect().await;
    other
        .batch_execute(&format!(
            "BEGIN; UPDATE odoo_sync.order_state SET last_error = '{{\"by\": \"dba\"}}' WHERE order_key = '{id}'"
        ))
        .await
        .unwrap();
    let app = db.connect().await;
    let change = tokio::spawn(async move {
        app.execute("UPDATE orders SET notes = 'second' WHERE id = $1", &[&id])
            .await
            .map(|_| ())
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !change.is_finished(),
        "the change waits for the other update"
    );
    other.batch_execute("COMMIT").await.unwrap();
    change.await.unwrap().unwrap();
    let (version, latest) = version_and_latest_event(c, id).await;
    assert_eq!(version, latest, "the version of the second change");
    assert_eq!(
        count(
            c,
            &format!(
                "SELECT count(*) FROM odoo_sync.order_state
                 WHERE order_key = '{id}' AND last_error ->> 'by' = 'dba'"
            )
        )
        .await,
        1,
        "the other transaction's update is kept"
    );
}

/// Whether this session has prepared capture's SQL insert of an event (`EVENT_SQL` in
/// extension/src/capture/mod.rs), which it does only when the direct path refuses the table: the
/// plan is kept for the session, and PostgreSQL names its memory context after the statement.
/// The patterns are split so that this query's own plan, named after its text, does not match.
async fn event_insert_prepared(c: &Client) -> bool {
    count(
        c,
        "SELECT count(*) FROM pg_backend_memory_contexts
         WHERE ident LIKE '%odoo_sync.' || 'event_log%'
           AND ident LIKE '%VALUES (' || '$3, $1, $2, $4::pg_catalog.jsonb)%'",
    )
    .await
        > 0
}

#[tokio::test]
async fn the_installed_event_log_is_written_without_the_executor() {
    let db = tracked_db("direct_taken").await;
    let c = &db.client;
    let id = new_order(c).await;
    c.execute("UPDATE orders SET notes = 'direct' WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(
        count(c, "SELECT count(*) FROM odoo_sync.event_log").await,
        2,
        "both changes were recorded"
    );
    assert!(
        !event_insert_prepared(c).await,
        "the event log as installed (actor text, default session_user) takes the direct path"
    );

    // The check sees the SQL path when capture takes it: a DBA's trigger on the log.
    c.batch_execute(
        "CREATE FUNCTION keep_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER keep BEFORE INSERT ON odoo_sync.event_log
             FOR EACH ROW EXECUTE FUNCTION keep_event();",
    )
    .await
    .unwrap();
    c.execute(
        "UPDATE orders SET notes = 'through SQL' WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap();
    assert_eq!(
        count(c, "SELECT count(*) FROM odoo_sync.event_log").await,
        3
    );
    assert!(event_insert_prepared(c).await);
}

#[tokio::test]
async fn a_trigger_added_to_the_event_log_still_fires() {
    let db = tracked_db("direct_trigger").await;
    let c = &db.client;
    let id = new_order(c).await;
    c.batch_execute(
        "CREATE TABLE event_audit (event_id bigint, entity_id text);
         CREATE FUNCTION audit_event() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO public.event_audit VALUES (NEW.id, NEW.entity_id); RETURN NEW; END $$;
         CREATE TRIGGER audit AFTER INSERT ON odoo_sync.event_log
             FOR EACH ROW EXECUTE FUNCTION audit_event();",
    )
    .await
    .unwrap();
    c.execute("UPDATE orders SET notes = 'seen' WHERE id = $1", &[&id])
        .await
        .unwrap();
    let audited = count(
        c,
        "SELECT count(*) FROM event_audit a JOIN odoo_sync.event_log e ON e.id = a.event_id",
    )
    .await;
    assert_eq!(audited, 1, "the DBA's trigger saw the event");
    assert_eq!(
        count(c, "SELECT count(*) FROM odoo_sync.jobs WHERE kind = 'push'").await,
        1
    );

    // Without the trigger, capture goes back to writing directly, and the audit stops.
    c.batch_execute("DROP TRIGGER audit ON odoo_sync.event_log")
        .await
        .unwrap();
    c.execute("UPDATE orders SET notes = 'unseen' WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(count(c, "SELECT count(*) FROM event_audit").await, 1);
    assert_eq!(
        count(
            c,
            &format!("SELECT count(*) FROM odoo_sync.event_log WHERE entity_id = '{id}'")
        )
        .await,
        3
    );
    assert_event_indexes_complete(c).await;
}

#[tokio::test]
async fn an_expression_index_added_to_the_event_log_is_maintained() {
    let db = tracked_db("direct_expr_index").await;
    let c = &db.client;
    let id = new_order(c).await;
    c.batch_execute(
        "CREATE INDEX event_op ON odoo_sync.event_log ((payload ->> 'op'));
         CREATE INDEX event_recent ON odoo_sync.event_log (id) WHERE event_type = 'ORDER_UPDATED';",
    )
    .await
    .unwrap();
    c.execute("UPDATE orders SET notes = 'indexed' WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_event_indexes_complete(c).await;
    c.batch_execute("SET enable_seqscan = off").await.unwrap();
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM odoo_sync.event_log WHERE payload ->> 'op' = 'UPDATE'"
        )
        .await,
        1
    );
    c.batch_execute(
        "RESET enable_seqscan; DROP INDEX odoo_sync.event_op; DROP INDEX odoo_sync.event_recent",
    )
    .await
    .unwrap();
}

/// A REPEATABLE READ transaction that took its snapshot before the worker finished the order's
/// job must not trust that snapshot's "a job is waiting": its change would then sit in the
/// event log with no job to push it. It either gets a job or fails with a serialization error
/// the application retries; it never commits without one.
#[tokio::test]
async fn a_repeatable_read_change_after_the_job_finished_is_not_lost() {
    let db = TestDb::new("direct_rr").await;
    let c = &db.client;
    // No write-back columns: the worker's completion then does not touch the order's row, so
    // PostgreSQL itself raises no serialization error for the application's update.
    c.batch_execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, order_number text, supplier_id text NOT NULL,
                              status text NOT NULL DEFAULT 'DRAFT', notes text);
         CREATE TABLE order_items (id bigint PRIMARY KEY, order_id bigint NOT NULL REFERENCES orders,
                                   product_id text NOT NULL, quantity numeric NOT NULL DEFAULT 1,
                                   unit_price numeric NOT NULL DEFAULT 0);
         SELECT odoo_sync.track_orders('orders', 'order_items');
         INSERT INTO orders (id, order_number, supplier_id) VALUES (1, 'PO-1', 'S1');",
    )
    .await
    .unwrap();
    let app = db.connect().await;
    app.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM orders")
        .await
        .unwrap();

    // The worker pushes the order and finishes its job after the application's snapshot.
    let claimed = c
        .query_one(
            "SELECT job_id, attempt_token, version FROM odoo_sync.claim_jobs('w', 1, '1 minute')",
            &[],
        )
        .await
        .unwrap();
    let (job, token, version): (i64, i64, i64) = (claimed.get(0), claimed.get(1), claimed.get(2));
    c.query_one(
        "SELECT odoo_sync.complete_job($1, $2, $3)",
        &[
            &job,
            &token,
            &serde_json::json!({"odoo_order_id": 7, "version": version}),
        ],
    )
    .await
    .unwrap();
    assert_eq!(count(c, "SELECT count(*) FROM odoo_sync.jobs").await, 0);

    let update = app
        .execute("UPDATE orders SET notes = 'late' WHERE id = 1", &[])
        .await;
    match update {
        Ok(_) => {
            app.batch_execute("COMMIT").await.unwrap();
            assert_eq!(
                count(
                    c,
                    "SELECT count(*) FROM odoo_sync.jobs WHERE order_key = '1' AND state = 'queued'"
                )
                .await,
                1,
                "the committed change has a job"
            );
        }
        Err(e) => {
            assert_eq!(e.code(), Some(&SqlState::T_R_SERIALIZATION_FAILURE), "{e}");
            app.batch_execute("ROLLBACK").await.unwrap();
            assert_eq!(count(c, "SELECT count(*) FROM odoo_sync.jobs").await, 0);
        }
    }
}

#[tokio::test]
async fn a_changed_default_or_a_rule_on_the_event_log_is_honoured() {
    let db = tracked_db("direct_default_rule").await;
    let c = &db.client;
    let id = new_order(c).await;
    c.batch_execute(
        "ALTER TABLE odoo_sync.event_log ALTER COLUMN occurred_at SET DEFAULT '2000-01-01'",
    )
    .await
    .unwrap();
    c.execute(
        "UPDATE orders SET notes = 'old clock' WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap();
    assert_eq!(
        latest_event_date(c, id).await,
        "2000-01-01",
        "the DBA's default is used"
    );
    c.batch_execute("ALTER TABLE odoo_sync.event_log ALTER COLUMN occurred_at SET DEFAULT now()")
        .await
        .unwrap();

    c.batch_execute(
        "CREATE TABLE event_copies (entity_id text);
         CREATE RULE copy_events AS ON INSERT TO odoo_sync.event_log
             DO ALSO INSERT INTO public.event_copies VALUES (NEW.entity_id);",
    )
    .await
    .unwrap();
    c.execute("UPDATE orders SET notes = 'copied' WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(
        count(c, "SELECT count(*) FROM event_copies").await,
        1,
        "the rule ran"
    );
    c.batch_execute("DROP RULE copy_events ON odoo_sync.event_log")
        .await
        .unwrap();
    c.execute(
        "UPDATE orders SET notes = 'direct again' WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap();
    assert_eq!(count(c, "SELECT count(*) FROM event_copies").await, 1);
    assert_ne!(latest_event_date(c, id).await, "2000-01-01");
    assert_event_indexes_complete(c).await;
}

/// The date of the order's latest event.
async fn latest_event_date(c: &Client, id: i64) -> String {
    c.query_one(
        "SELECT occurred_at::date::text FROM odoo_sync.event_log
         WHERE entity_id = $1 ORDER BY id DESC LIMIT 1",
        &[&id.to_string()],
    )
    .await
    .unwrap()
    .get(0)
}

/// Each backend remembers where an order's state row starts and looks there before asking the
/// primary key. A row that moved (an update of an indexed column, as a push's completion
/// makes), one deleted with its page's slots given to another order or cut off the table's end
/// by VACUUM, and a table rewritten by VACUUM FULL are all found again by their key: every
/// change still writes its own order's version, and never another order's.
#[tokio::test]
async fn a_state_row_that_moved_or_went_away_is_found_by_its_key() {
    let db = tracked_db("direct_state_moved").await;
    let c = &db.client;
    let other = db.connect().await;
    let change = |id: i64, note: &'static str| async move {
        c.execute("UPDATE orders SET notes = $2 WHERE id = $1", &[&id, &note])
            .await
            .unwrap();
    };

    // Moved: a new row version off its chain, with a new index entry.
    let moved = new_order(c).await;
    change(moved, "remembered").await;
    other
        .execute(
            "UPDATE odoo_sync.order_state SET odoo_id = 4242 WHERE order_key = $1",
            &[&moved.to_string()],
        )
        .await
        .unwrap();
    change(moved, "after the move").await;
    let (version, latest) = version_and_latest_event(c, moved).await;
    assert_eq!(version, latest, "the moved row got the version");
    assert_eq!(
        count(
            c,
            &format!("SELECT count(*) FROM odoo_sync.order_state WHERE order_key = '{moved}' AND odoo_id = 4242")
        )
        .await,
        1
    );

    // Deleted, its slots freed, and another order's row written there.
    let gone = new_order(c).await;
    change(gone, "remembered").await;
    other
        .execute(
            "DELETE FROM odoo_sync.order_state WHERE order_key = $1",
            &[&gone.to_string()],
        )
        .await
        .unwrap();
    other
        .batch_execute("VACUUM odoo_sync.order_state")
        .await
        .unwrap();
    let newcomer: i64 = other
        .query_one(
            "INSERT INTO orders (order_number, supplier_id) VALUES ('PO-2', 'S1') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let newcomer_before = version_and_latest_event(c, newcomer).await;
    change(gone, "after the delete").await;
    assert_eq!(
        version_and_latest_event(c, newcomer).await,
        newcomer_before,
        "the other order's version is untouched"
    );
    let (version, latest) = version_and_latest_event(c, gone).await;
    assert_eq!(
        version, latest,
        "the deleted order's state is written again"
    );
    assert_eq!(
        count(
            c,
            &format!(
                "SELECT count(*) FROM odoo_sync.jobs WHERE kind = 'push' AND order_key = '{gone}'"
            )
        )
        .await,
        1,
        "with its job"
    );

    // Cut off: state rows on the table's last pages deleted and the pages truncated.
    let many: Vec<i64> = c
        .query(
            "INSERT INTO orders (order_number, supplier_id)
             SELECT 'PO-' || g, 'S1' FROM generate_series(1, 300) g RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    c.execute(
        "UPDATE orders SET notes = 'remembered' WHERE id = ANY($1)",
        &[&many],
    )
    .await
    .unwrap();
    for id in many.iter().rev().take(3) {
        change(*id, "remembered one by one").await;
    }
    let pages_sql = "SELECT pg_relation_size('odoo_sync.order_state') / 8192";
    let before = count(c, pages_sql).await;
    other
        .execute(
            "DELETE FROM odoo_sync.order_state WHERE order_key = ANY($1)",
            &[&many
                .iter()
                .skip(10)
                .map(|id| id.to_string())
                .collect::<Vec<_>>()],
        )
        .await
        .unwrap();
    other
        .batch_execute("VACUUM odoo_sync.order_state")
        .await
        .unwrap();
    assert!(
        count(c, pages_sql).await < before,
        "VACUUM cut the table's end"
    );
    let last = *many.last().unwrap();
    change(last, "after the cut").await;
    let (version, latest) = version_and_latest_event(c, last).await;
    assert_eq!(version, latest, "the cut order's state is written again");

    // Rewritten: every row at a new address.
    other
        .batch_execute("VACUUM FULL odoo_sync.order_state")
        .await
        .unwrap();
    for id in [moved, gone, last] {
        change(id, "after the rewrite").await;
        let (version, latest) = version_and_latest_event(c, id).await;
        assert_eq!(version, latest, "order {id} after VACUUM FULL");
    }
    assert_indexes_complete(c, "odoo_sync.order_state").await;
}

/// A trigger created on the state table or the event log while a change waits for that table's
/// lock: the change's capture had read the table's layout before, and must see, once the lock is
/// granted, that the table changed meanwhile (here: the new trigger must fire), not write
/// directly with what it had read.
#[tokio::test]
async fn a_trigger_created_while_a_change_waits_for_the_table_fires_for_it() {
    let db = tracked_db("direct_layout_race").await;
    let c = &db.client;
    let id = new_order(c).await;
    c.batch_execute(
        "CREATE TABLE seen (what text, version bigint);
         CREATE FUNCTION saw_state() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO public.seen VALUES ('state', NEW.version); RETURN NEW; END $$;
         CREATE FUNCTION saw_event() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO public.seen VALUES ('event', NEW.id); RETURN NEW; END $$;",
    )
    .await
    .unwrap();
    let app = db.connect().await;
    // The application's session has captured a change of the order: it knows both layouts.
    app.execute("UPDATE orders SET notes = 'known' WHERE id = $1", &[&id])
        .await
        .unwrap();
    let app = std::sync::Arc::new(app);
    for (table, function, what) in [
        ("odoo_sync.order_state", "saw_state", "state"),
        ("odoo_sync.event_log", "saw_event", "event"),
    ] {
        let dba = db.connect().await;
        dba.batch_execute(&format!(
            "BEGIN; CREATE TRIGGER saw AFTER INSERT OR UPDATE ON {table}
                 FOR EACH ROW EXECUTE FUNCTION {function}()"
        ))
        .await
        .unwrap();
        let session = app.clone();
        let change = tokio::spawn(async move {
            // A new value each time: an update that changes nothing is not captured.
            session
                .execute("UPDATE orders SET notes = $2 WHERE id = $1", &[&id, &what])
                .await
                .map(|_| ())
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        if change.is_finished() {
            panic!(
                "the change did not wait for {table}: {:?}",
                change.await.unwrap()
            );
        }
        dba.batch_execute("COMMIT").await.unwrap();
        change.await.unwrap().unwrap();
        assert_eq!(
            count(
                c,
                &format!("SELECT count(*) FROM seen WHERE what = '{what}'")
            )
            .await,
            1,
            "the trigger on {table} fired for the change that waited"
        );
        dba.batch_execute(&format!("DROP TRIGGER saw ON {table}"))
            .await
            .unwrap();
    }
    let (version, latest) = version_and_latest_event(c, id).await;
    assert_eq!(version, latest);
}
