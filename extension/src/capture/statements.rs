//! The capture statements, prepared once per backend and kept: a trigger that planned its SQL
//! on every row would cost more than the write it records.
//!
//! Every operator and function is schema-qualified: the plan is built under the search_path of
//! whichever session first writes, and that session must not be able to substitute its own `=`.

use std::cell::RefCell;

use pgrx::pg_sys;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};

use crate::error::Result;

/// Upsert the order state (version + 1, PENDING_SYNC unless a conflict is open) and append the
/// event. Returns the new version, whether a job must be created, and the sync status.
const CAPTURE_SQL: &str = "
WITH s AS (
    INSERT INTO odoo_sync.order_state AS s
           (tracking_id, order_key, order_number, sync_status, deleted, tombstone)
    VALUES ($1, $2, $3, 'PENDING_SYNC', COALESCE($4, false), $5::pg_catalog.jsonb)
    ON CONFLICT (tracking_id, order_key) DO UPDATE SET
        version = s.version OPERATOR(pg_catalog.+) 1,
        order_number = COALESCE(EXCLUDED.order_number, s.order_number),
        sync_status = CASE WHEN s.sync_status OPERATOR(pg_catalog.=) 'CONFLICT'
                           THEN 'CONFLICT' ELSE 'PENDING_SYNC' END,
        deleted = COALESCE($4, s.deleted),
        tombstone = COALESCE($5::pg_catalog.jsonb, s.tombstone),
        changed_at = pg_catalog.now()
    RETURNING s.version, s.job_id, s.sync_status
), e AS (
    INSERT INTO odoo_sync.event_log (event_type, tracking_id, entity_id, version, payload)
    SELECT $6, $1, $2, s.version, $7::pg_catalog.jsonb FROM s
)
SELECT version, job_id IS NULL, sync_status FROM s";

/// Create the order's push job, link it from the state row and wake the workers. PostgreSQL
/// folds identical notifications of one transaction into one.
const ENQUEUE_SQL: &str = "
WITH j AS (
    INSERT INTO odoo_sync.jobs AS j (kind, tracking_id, order_key) VALUES ('push', $1, $2)
    ON CONFLICT (tracking_id, order_key) WHERE kind OPERATOR(pg_catalog.=) 'push'
    DO UPDATE SET run_after = LEAST(j.run_after, pg_catalog.now())
    RETURNING j.id
), u AS (
    UPDATE odoo_sync.order_state s SET job_id = j.id FROM j
    WHERE s.tracking_id OPERATOR(pg_catalog.=) $1 AND s.order_key OPERATOR(pg_catalog.=) $2
)
SELECT j.id, pg_catalog.pg_notify('odoo_sync_events', 'queue') FROM j";

/// The kept statements of this backend.
pub struct Statements {
    /// See CAPTURE_SQL.
    pub capture: OwnedPreparedStatement,
    /// See ENQUEUE_SQL.
    pub enqueue: OwnedPreparedStatement,
}

thread_local! {
    static STATEMENTS: RefCell<Option<Statements>> = const { RefCell::new(None) };
}

/// Runs `f` with this backend's statements, preparing them on first use. PostgreSQL's plan
/// cache re-plans a kept statement by itself when the tables it reads change.
pub fn with_statements<'c, R>(
    client: &mut SpiClient<'c>,
    f: impl FnOnce(&mut SpiClient<'c>, &Statements) -> Result<R>,
) -> Result<R> {
    let ready = STATEMENTS.with(|s| s.borrow().is_some());
    if !ready {
        let text = pg_sys::TEXTOID;
        let capture = client
            .prepare_mut(
                CAPTURE_SQL,
                &[
                    pg_sys::INT4OID.into(),
                    text.into(),
                    text.into(),
                    pg_sys::BOOLOID.into(),
                    text.into(),
                    text.into(),
                    text.into(),
                ],
            )?
            .keep();
        let enqueue = client
            .prepare_mut(ENQUEUE_SQL, &[pg_sys::INT4OID.into(), text.into()])?
            .keep();
        STATEMENTS.with(|s| *s.borrow_mut() = Some(Statements { capture, enqueue }));
    }
    STATEMENTS.with(|s| {
        let guard = s.borrow();
        match guard.as_ref() {
            Some(stmts) => f(client, stmts),
            None => unreachable!("statements were prepared above"),
        }
    })
}
