//! Change capture: what the triggers on tracked tables record, inside the user's transaction.
//!
//! Every change appends one event (`event_append`, without the executor) and looks up the
//! order's state (`state_probe`); for the common case, an order that already waits for its
//! push, that is all, with the order's new version (the event's id) written in place of the
//! state row. Only when the order has no active job (or its state must change:
//! created, deleted, renumbered, failed before) does an SQL statement upsert the order's state
//! and enqueue the job, and only then are listeners notified: a change that joins a waiting job
//! gives the workers nothing new to do, and each NOTIFY serializes the commit of its
//! transaction with every other notifying one. Changes of one order are serialized by the lock
//! on the order's row, which an UPDATE holds anyway and the items trigger takes. The
//! per-backend catalog facts all of this needs live in `catalog_cache`.

mod catalog_cache;
mod event_append;
pub mod item_trigger;
mod order_lock;
pub mod order_trigger;
mod state_probe;

pub use order_lock::lock_order;

use std::borrow::Cow;

use pgrx::pg_sys;
use pgrx::spi::Spi;

use crate::error::Result;
use crate::plans::plan;
use crate::privileges::{extension_owner, RunAs};

/// Appends the event through SQL, for an event_log a DBA extended beyond what
/// `event_append` writes by itself. Every operator and function is schema-qualified: the plan
/// is built under the search_path of whichever session writes first, and that session must not
/// be able to substitute its own.
const EVENT_SQL: &str = "
INSERT INTO odoo_sync.event_log (event_type, tracking_id, entity_id, payload)
VALUES ($3, $1, $2, $4::pg_catalog.jsonb)
RETURNING id";

/// Make sure the order has a push job (a running job keeps its lease) and upsert its state.
const ENQUEUE_SQL: &str = "
WITH held AS (
    SELECT EXISTS (SELECT 1 FROM odoo_sync.order_state s
                   WHERE s.tracking_id OPERATOR(pg_catalog.=) $1 AND s.order_key OPERATOR(pg_catalog.=) $2
                     AND s.sync_status OPERATOR(pg_catalog.=) 'CONFLICT') AS yes
), j AS (
    INSERT INTO odoo_sync.jobs AS j (kind, tracking_id, order_key, run_after)
    SELECT 'push', $1, $2, CASE WHEN held.yes THEN 'infinity'::pg_catalog.timestamptz ELSE pg_catalog.now() END FROM held
    ON CONFLICT (tracking_id, order_key) WHERE kind OPERATOR(pg_catalog.=) 'push'
    DO UPDATE SET run_after = CASE WHEN j.state OPERATOR(pg_catalog.=) 'running'
                                        OR j.run_after OPERATOR(pg_catalog.=) 'infinity'::pg_catalog.timestamptz
                                   THEN j.run_after
                                   ELSE LEAST(j.run_after, pg_catalog.now()) END
    RETURNING j.id
), s AS (
    INSERT INTO odoo_sync.order_state AS s
           (tracking_id, order_key, order_number, version, sync_status, deleted, tombstone, job_id)
    SELECT $1, $2, $3, $4, 'PENDING_SYNC', COALESCE($5, false), $6::pg_catalog.jsonb, j.id FROM j
    ON CONFLICT (tracking_id, order_key) DO UPDATE SET
        version = GREATEST(s.version, EXCLUDED.version),
        order_number = COALESCE(EXCLUDED.order_number, s.order_number),
        sync_status = CASE WHEN s.sync_status OPERATOR(pg_catalog.=) 'CONFLICT'
                           THEN 'CONFLICT' ELSE 'PENDING_SYNC' END,
        deleted = COALESCE($5, s.deleted),
        tombstone = COALESCE($6::pg_catalog.jsonb, s.tombstone),
        job_id = EXCLUDED.job_id,
        changed_at = pg_catalog.now()
    RETURNING s.sync_status
)
SELECT s.sync_status FROM s";

/// One change to record.
pub struct Change<'a> {
    /// Row of odoo_sync.tracked_tables.
    pub tracking_id: i32,
    /// The order's key as text.
    pub order_key: &'a str,
    /// Reads the order number, when the change comes from the orders table. Only called when
    /// the state row is written: a change that joins a waiting job does not need it.
    pub order_number: &'a dyn Fn() -> Option<String>,
    /// Some(true) when the order was deleted, Some(false) when it (re)exists, None to keep.
    pub deleted: Option<bool>,
    /// Snapshot of a deleted order, as JSON.
    pub tombstone: Option<String>,
    /// True when the order's state row must be written even if a job is waiting (created,
    /// deleted, renumbered).
    pub state_changed: bool,
    /// Event type for the event log.
    pub event_type: &'static str,
    /// Event payload, as JSON: a fixed text (`Cow::Borrowed`), which must be the one the
    /// `events` view implies from `event_type` and is not stored (see `event_append`), or one
    /// made for this change.
    pub payload: Cow<'static, str>,
}

/// What recording a change produced.
pub struct Captured {
    /// The order's sync status after the change (PENDING_SYNC, or CONFLICT while one is open).
    pub sync_status: Cow<'static, str>,
    /// True when this change created the order's job or changed its state row.
    pub state_written: bool,
    /// True when Odoo has confirmed the order: some local writes (removing a line, lowering
    /// a received quantity) can no longer succeed there.
    pub odoo_locked: bool,
}

/// Records one change (see the module documentation).
pub fn record_change(change: &Change<'_>) -> Result<Captured> {
    let _as_owner = RunAs::user(extension_owner()?);
    let appended = event_append::append(&event_append::Event {
        tracking_id: change.tracking_id,
        entity_id: change.order_key,
        event_type: change.event_type,
        payload: &change.payload,
        implied_payload: matches!(change.payload, Cow::Borrowed(_)),
    })?;
    let version = match appended {
        Some(id) => id,
        None => append_with_sql(change)?,
    };
    // A change that joins a waiting job writes its version here; any other writes it with the
    // state row below.
    let bump_to = (!change.state_changed).then_some(version);
    let order = state_probe::probe(change.tracking_id, change.order_key, bump_to)?;
    if let (false, Some(status)) = (change.state_changed, order.waiting) {
        return Ok(Captured {
            sync_status: Cow::Borrowed(status),
            state_written: false,
            odoo_locked: order.odoo_locked,
        });
    }
    notify_listeners();
    Spi::connect_mut(|client| {
        let text = pg_sys::TEXTOID.into();
        let enqueue = plan(
            client,
            ENQUEUE_SQL,
            &[
                pg_sys::INT4OID.into(),
                text,
                text,
                pg_sys::INT8OID.into(),
                pg_sys::BOOLOID.into(),
                text,
            ],
        )?;
        let status = client
            .update(
                &*enqueue,
                None,
                &[
                    change.tracking_id.into(),
                    change.order_key.into(),
                    (change.order_number)().into(),
                    version.into(),
                    change.deleted.into(),
                    change.tombstone.clone().into(),
                ],
            )?
            .first()
            .get::<String>(1)?
            .unwrap_or_default();
        Ok(Captured {
            sync_status: Cow::Owned(status),
            state_written: true,
            odoo_locked: order.odoo_locked,
        })
    })
}

/// NOTIFY odoo_sync_events 'queue' at commit (see `crate::notify`): this change put the order
/// in the queue (or changed what its job must do), which is what this payload tells listeners.
/// A transaction sends it once however many orders it queues.
fn notify_listeners() {
    crate::notify::at_commit(crate::notify::Payload::Queue);
}

/// Appends the event with an INSERT (see EVENT_SQL); returns its id.
fn append_with_sql(change: &Change<'_>) -> Result<i64> {
    Spi::connect_mut(|client| {
        let text = pg_sys::TEXTOID.into();
        let event = plan(
            client,
            EVENT_SQL,
            &[pg_sys::INT4OID.into(), text, text, text],
        )?;
        Ok(client
            .update(
                &*event,
                None,
                &[
                    change.tracking_id.into(),
                    change.order_key.into(),
                    change.event_type.into(),
                    change.payload.as_ref().into(),
                ],
            )?
            .first()
            .get::<i64>(1)?
            .unwrap_or_default())
    })
}

/// The OID of odoo_sync's own relation `name` (a syscache lookup), if it exists.
fn own_relation(name: &std::ffi::CStr) -> Option<pg_sys::Oid> {
    // SAFETY: catalog lookups that report a missing object as InvalidOid.
    let oid = unsafe {
        let schema = pg_sys::get_namespace_oid(c"odoo_sync".as_ptr(), true);
        if schema == pg_sys::InvalidOid {
            return None;
        }
        pg_sys::get_relname_relid(name.as_ptr(), schema)
    };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// True when writing a row of `rel` directly runs nothing the executor would: a plain heap
/// table (not a partition, whose bounds are a constraint, nor another table access method) with
/// no trigger, rule or generated column. Callers check CHECK constraints and row-level security
/// as their write needs.
///
/// # Safety
/// `rel` must be open.
unsafe fn plain_heap_table(rel: pg_sys::Relation) -> bool {
    // SAFETY: the caller keeps `rel` open.
    unsafe {
        let class = &*(*rel).rd_rel;
        let constr = (*(*rel).rd_att).constr;
        class.relkind as u8 == pg_sys::RELKIND_RELATION
            && class.relam == pg_sys::HEAP_TABLE_AM_OID
            && !class.relispartition
            && !class.relhasrules
            && (*rel).rd_rules.is_null()
            && (*rel).trigdesc.is_null()
            && (constr.is_null() || !(*constr).has_generated_stored)
    }
}

/// Sets the order's write-back status column (used when an item change first marks its order
/// pending: the order row itself was not written by the application).
pub fn write_back_status(tracking_id: i32, order_key: &str, status: &str) -> Result<()> {
    let _as_owner = RunAs::user(extension_owner()?);
    Spi::connect_mut(|client| {
        client.update(
            "SELECT odoo_sync._write_back($1, $2, pg_catalog.jsonb_build_object('sync_status', $3::pg_catalog.text))",
            None,
            &[tracking_id.into(), order_key.into(), status.into()],
        )?;
        Ok(())
    })
}

/// Records a BUSINESS_RULE_VIOLATION when an item write of an order Odoo has confirmed cannot
/// succeed there (see `odoo_sync._check_item_rules`).
pub fn check_item_rules(tracking_id: i32, order_key: &str, item_key: &str, op: &str) -> Result<()> {
    let _as_owner = RunAs::user(extension_owner()?);
    Spi::connect_mut(|client| {
        client.update(
            "SELECT odoo_sync._check_item_rules($1, $2, $3, $4)",
            None,
            &[
                tracking_id.into(),
                order_key.into(),
                item_key.into(),
                op.into(),
            ],
        )?;
        Ok(())
    })
}

/// JSON string literal for `s` (quotes and escapes included).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Parses the tracking id given as the first trigger argument.
pub fn tracking_id_arg(args: &[String], table: &str) -> Result<i32> {
    args.first()
        .and_then(|a| a.parse::<i32>().ok())
        .ok_or_else(|| crate::error::SyncError::BadTrigger {
            table: table.to_string(),
            detail: format!("expected a tracking id as first argument, got {args:?}"),
        })
}
