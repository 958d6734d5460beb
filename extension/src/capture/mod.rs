//! Change capture: what the triggers on tracked tables record, inside the user's transaction.
//!
//! Per change, one statement upserts the order's sync state (version bump, status) and appends
//! the event. Only when the order has no active job does a second statement enqueue one and
//! NOTIFY the workers: every further change before a worker runs coalesces into that job.

pub mod item_trigger;
pub mod order_trigger;
mod statements;

use pgrx::spi::Spi;

use crate::error::Result;
use crate::privileges::{extension_owner, RunAs};
use statements::{with_statements, Statements};

/// One change to record.
pub struct Change<'a> {
    /// Row of odoo_sync.tracked_tables.
    pub tracking_id: i32,
    /// The order's key as text.
    pub order_key: &'a str,
    /// The order number, when the change comes from the orders table.
    pub order_number: Option<String>,
    /// Some(true) when the order was deleted, Some(false) when it (re)exists, None to keep.
    pub deleted: Option<bool>,
    /// Snapshot of a deleted order, as JSON.
    pub tombstone: Option<String>,
    /// Event type for the event log.
    pub event_type: &'static str,
    /// Event payload, as JSON.
    pub payload: String,
}

/// What recording a change produced.
pub struct Captured {
    /// The order's sync status after the change (PENDING_SYNC, or CONFLICT while one is open).
    pub sync_status: String,
    /// True when this change created the order's job (the first change since its last sync).
    pub job_created: bool,
}

/// Records one change: state upsert + event, and a job with a NOTIFY when none is active.
pub fn record_change(change: &Change<'_>) -> Result<Captured> {
    let _as_owner = RunAs::user(extension_owner()?);
    Spi::connect_mut(|client| {
        with_statements(client, |client, stmts: &Statements| {
            let row = client
                .update(
                    &stmts.capture,
                    None,
                    &[
                        change.tracking_id.into(),
                        change.order_key.into(),
                        change.order_number.clone().into(),
                        change.deleted.into(),
                        change.tombstone.clone().into(),
                        change.event_type.into(),
                        change.payload.as_str().into(),
                    ],
                )?
                .first();
            let needs_job = row.get::<bool>(2)?.unwrap_or(false);
            let sync_status = row.get::<String>(3)?.unwrap_or_default();
            if needs_job {
                client.update(
                    &stmts.enqueue,
                    None,
                    &[change.tracking_id.into(), change.order_key.into()],
                )?;
            }
            Ok(Captured {
                sync_status,
                job_created: needs_job,
            })
        })
    })
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
