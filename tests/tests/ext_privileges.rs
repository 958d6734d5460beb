//! Least privilege with real roles: each role can do its job and nothing more.

use odoo_sync_tests::pg_cluster::{common_schema, db_error, TestDb};

const DENIED: &str = "42501";

async fn setup(label: &str) -> (TestDb, String, String, String, String) {
    let mut db = TestDb::new(label).await;
    db.client
        .batch_execute(&common_schema("uuid"))
        .await
        .unwrap();
    db.client
        .execute(
            "SELECT odoo_sync.track_orders('orders', 'order_items')",
            &[],
        )
        .await
        .unwrap();
    let reader = db.create_role("reader", &["odoo_sync_reader"]).await;
    let worker = db.create_role("worker", &["odoo_sync_worker"]).await;
    let admin = db.create_role("admin", &["odoo_sync_admin"]).await;
    let app = db.create_role("app", &[]).await;
    db.client
        .batch_execute(&format!(
            "GRANT USAGE, CREATE ON SCHEMA public TO {app};
             GRANT SELECT, INSERT, UPDATE, DELETE ON orders, order_items TO {app};"
        ))
        .await
        .unwrap();
    (db, reader, worker, admin, app)
}

async fn assert_denied(client: &tokio_postgres::Client, sql: &str) {
    let err = client.query(sql, &[]).await.unwrap_err();
    let (code, msg) = db_error(&err);
    assert_eq!(code, DENIED, "{sql}: {msg}");
}

#[tokio::test]
async fn each_role_can_do_its_job_and_no_more() {
    let (db, reader, worker, admin, app) = setup("roles").await;

    // The application writes orders; capture happens although it has no access to odoo_sync.
    let app_client = db.connect_as(&app).await;
    app_client
        .execute(
            "INSERT INTO orders (order_number, supplier_id) VALUES ('PO-APP', 'S')",
            &[],
        )
        .await
        .unwrap();
    let captured: i64 = db
        .client
        .query_one("SELECT count(*) FROM odoo_sync.jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(captured, 1);
    for sql in [
        "SELECT * FROM odoo_sync.claim_jobs('app', 1, '1 minute')",
        "SELECT * FROM odoo_sync.order_state",
        "SELECT * FROM odoo_sync.jobs",
        "SELECT * FROM odoo_sync.order_status",
        "SELECT odoo_sync.update_settings('{\"max_attempts\": 1}')",
        "SELECT odoo_sync._exec_as_owner('orders'::regclass, 'DELETE FROM orders', '{}')",
        "SELECT odoo_sync._write_back(1, 'x', '{}')",
        "SELECT odoo_sync.heartbeat('app', '{}')",
        "INSERT INTO odoo_sync.jobs (kind, odoo_id) VALUES ('pull', 1)",
        "SELECT odoo_sync.retry_job(1)",
    ] {
        assert_denied(&app_client, sql).await;
    }

    let reader_client = db.connect_as(&reader).await;
    for view in [
        "order_status",
        "queue",
        "dead_letters",
        "pending_conflicts",
        "recent_errors",
        "events",
        "workers",
    ] {
        reader_client
            .query(&format!("SELECT * FROM odoo_sync.{view}"), &[])
            .await
            .unwrap_or_else(|e| panic!("reader cannot read {view}: {:?}", e.as_db_error()));
    }
    let n: i64 = reader_client
        .query_one("SELECT count(*) FROM odoo_sync.order_status", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    reader_client
        .query_one("SELECT * FROM odoo_sync.health()", &[])
        .await
        .unwrap();
    reader_client
        .query("SELECT * FROM odoo_sync.queue", &[])
        .await
        .unwrap();
    reader_client
        .query("SELECT * FROM odoo_sync.events", &[])
        .await
        .unwrap();
    reader_client
        .query_one("SELECT odoo_sync.get_settings()", &[])
        .await
        .unwrap();
    for sql in [
        "SELECT * FROM odoo_sync.claim_jobs('r', 1, '1 minute')",
        "SELECT odoo_sync.update_settings('{\"max_attempts\": 1}')",
        "SELECT odoo_sync.sync_order_from_odoo(1)",
        "SELECT odoo_sync.start_realtime()",
        "SELECT * FROM odoo_sync.order_state",
        "UPDATE odoo_sync.settings SET value = '1'",
        "SELECT odoo_sync.maintenance()",
    ] {
        assert_denied(&reader_client, sql).await;
    }

    let worker_client = db.connect_as(&worker).await;
    let claimed = worker_client
        .query(
            "SELECT job_id, attempt_token FROM odoo_sync.claim_jobs('w', 5, '1 minute')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    worker_client
        .query_one(
            "SELECT odoo_sync.heartbeat('w', '{\"odoo_status\": \"CONNECTED\"}')",
            &[],
        )
        .await
        .unwrap();
    worker_client
        .execute("INSERT INTO odoo_sync.product_map (local_product_id, odoo_product_id, source) VALUES ('P', 3, 'default_code')", &[])
        .await
        .unwrap();
    for sql in [
        "SELECT odoo_sync.update_settings('{\"max_attempts\": 1}')",
        "SELECT odoo_sync.retry_job(1)",
        "SELECT odoo_sync.track_orders('orders', 'order_items')",
        "SELECT odoo_sync.stop_realtime()",
        "DELETE FROM odoo_sync.product_map",
        "UPDATE odoo_sync.jobs SET attempts = 0",
    ] {
        assert_denied(&worker_client, sql).await;
    }

    let admin_client = db.connect_as(&admin).await;
    admin_client
        .query_one(
            "SELECT odoo_sync.update_settings('{\"max_attempts\": 4}')",
            &[],
        )
        .await
        .unwrap();
    admin_client
        .query_one("SELECT odoo_sync.sync_order_from_odoo(3)", &[])
        .await
        .unwrap();
    for sql in [
        "SELECT * FROM odoo_sync.claim_jobs('a', 1, '1 minute')",
        "SELECT odoo_sync.complete_job(1, 1, '{}')",
        "SELECT * FROM odoo_sync.jobs",
    ] {
        assert_denied(&admin_client, sql).await;
    }

    // Nothing in the schema is executable by a role that was granted nothing.
    let public_exec: i64 = db
        .client
        .query_one(
            &format!(
                "SELECT count(*) FROM pg_proc WHERE pronamespace = 'odoo_sync'::regnamespace
                 AND has_function_privilege('{app}', oid, 'EXECUTE')"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(public_exec, 0);
    // Every SECURITY DEFINER function pins its search_path.
    let unpinned: Vec<String> = db
        .client
        .query(
            "SELECT proname::text FROM pg_proc WHERE pronamespace = 'odoo_sync'::regnamespace AND prosecdef
             AND NOT EXISTS (SELECT 1 FROM unnest(proconfig) c WHERE c LIKE 'search_path=%')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(unpinned.is_empty(), "{unpinned:?}");
    drop((app_client, reader_client, worker_client, admin_client));
    db.finish().await;
}

#[tokio::test]
async fn a_hostile_search_path_does_not_reach_the_capture_statements() {
    let (db, _reader, _worker, _admin, app) = setup("searchpath").await;
    // The app role plants an `=` and a `+` that would make it superuser if odoo_sync's
    // bookkeeping (which runs as the extension owner) ever resolved operators through the
    // caller's search_path. It writes first in a fresh session, so the capture statements are
    // prepared under its search_path.
    db.client
        .batch_execute(&format!("GRANT CREATE ON DATABASE {} TO {app}", db.name))
        .await
        .unwrap();
    let app_client = db.connect_as(&app).await;
    app_client
        .batch_execute(&format!(
            "CREATE SCHEMA evil;
             CREATE FUNCTION evil.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
               $$ BEGIN EXECUTE 'ALTER ROLE {app} SUPERUSER'; RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
             CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq);
             CREATE FUNCTION evil.plus(bigint, integer) RETURNS bigint LANGUAGE plpgsql AS
               $$ BEGIN EXECUTE 'ALTER ROLE {app} SUPERUSER'; RETURN $1 OPERATOR(pg_catalog.+) $2; END $$;
             CREATE OPERATOR evil.+ (LEFTARG = bigint, RIGHTARG = integer, FUNCTION = evil.plus);
             SET search_path = evil, pg_catalog, public;"
        ))
        .await
        .unwrap();
    app_client
        .batch_execute(
            "INSERT INTO orders (order_number, supplier_id) VALUES ('PO-X', 'S');
             UPDATE orders SET notes = 'again';
             INSERT INTO order_items (order_id, product_id, quantity, unit_price) SELECT id, 'P', 1, 1 FROM orders;
             DELETE FROM orders;",
        )
        .await
        .unwrap();
    let superuser: bool = db
        .client
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&app])
        .await
        .unwrap()
        .get(0);
    assert!(
        !superuser,
        "the planted operators ran with the extension owner's privileges"
    );
    let events: i64 = db
        .client
        .query_one("SELECT count(*) FROM odoo_sync.event_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        events, 5,
        "every write was still captured (the delete cascades to the item)"
    );
    drop(app_client);
    db.client
        .batch_execute("DROP SCHEMA evil CASCADE")
        .await
        .unwrap();
    db.finish().await;
}

/// The README's example DBA queries run as a reader.
#[tokio::test]
async fn example_dba_queries_run_as_reader() {
    let (db, reader, _worker, _admin, _app) = setup("dbaqueries").await;
    db.client
        .execute(
            "INSERT INTO orders (order_number, supplier_id) VALUES ('PO-Q', 'S')",
            &[],
        )
        .await
        .unwrap();
    let sql = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sql/examples/dba_queries.sql"
    ))
    .unwrap();
    let client = db.connect_as(&reader).await;
    client.batch_execute(&sql).await.unwrap();
    drop(client);
    db.finish().await;
}
