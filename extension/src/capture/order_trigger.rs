//! BEFORE trigger on a tracked orders table.
//!
//! Arguments (set by track_orders): tracking id, key column, order number column, and the
//! write-back columns sync_status, odoo_order_id, last_synced_at ('' when absent).
//! BEFORE, not AFTER, because the new row's sync_status is set here without a second write.

use std::borrow::Cow;

use pgrx::prelude::*;
use pgrx::spi::Spi;
use pgrx::{AllocatedByPostgres, PgTrigger};

use super::{catalog_cache, record_change, tracking_id_arg, Change};
use crate::error::SyncError;
use crate::privileges::{internal_write_active, RunAs};
use crate::tuple::Row;

struct OrderColumns {
    table: String,
    key_column: String,
    tracking_id: i32,
    key: i32,
    order_number: Option<i32>,
    sync_status: Option<i32>,
    write_back: Vec<i32>,
}

fn columns(args: &[String], row: &Row, table: &str) -> crate::error::Result<OrderColumns> {
    let tracking_id = tracking_id_arg(args, table)?;
    if args.len() != 6 {
        return Err(SyncError::BadTrigger {
            table: table.to_string(),
            detail: format!("expected 6 arguments, got {}", args.len()),
        });
    }
    let optional = |i: usize| -> crate::error::Result<Option<i32>> {
        if args[i].is_empty() {
            Ok(None)
        } else {
            row.require_attnum(table, &args[i]).map(Some)
        }
    };
    let sync_status = optional(3)?;
    let write_back = [sync_status, optional(4)?, optional(5)?]
        .into_iter()
        .flatten()
        .collect();
    Ok(OrderColumns {
        table: table.to_string(),
        key_column: args[1].clone(),
        tracking_id,
        key: row.require_attnum(table, &args[1])?,
        order_number: optional(2)?,
        sync_status,
        write_back,
    })
}

/// Capture trigger for tracked orders tables (attached by `odoo_sync.track_orders`).
#[pg_trigger]
fn capture_order_change<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, SyncError> {
    Ok(Some(capture(trigger).unwrap_or_else(|e| e.raise())))
}

fn capture<'a>(
    trigger: &'a PgTrigger<'a>,
) -> crate::error::Result<PgHeapTuple<'a, AllocatedByPostgres>> {
    let data = trigger.trigger_data();
    // SAFETY: PostgreSQL hands a valid relation and tuples to a row trigger.
    let desc = unsafe { (*data.tg_relation).rd_att };
    let returned = |t: pg_sys::HeapTuple| unsafe {
        PgHeapTuple::from_heap_tuple(pgrx::PgTupleDesc::from_pg_unchecked(desc), t)
    };
    // SAFETY: PostgreSQL sets tg_trigtuple (and tg_newtuple for UPDATE) for row triggers.
    let (old, new) = unsafe {
        match trigger.op()? {
            PgTriggerOperation::Insert => (None, Some(Row::new(data.tg_trigtuple, desc))),
            PgTriggerOperation::Update => (
                Some(Row::new(data.tg_trigtuple, desc)),
                Some(Row::new(data.tg_newtuple, desc)),
            ),
            PgTriggerOperation::Delete => (Some(Row::new(data.tg_trigtuple, desc)), None),
            PgTriggerOperation::Truncate => (None, None),
        }
    };
    // The tuple PostgreSQL goes on with: NEW for INSERT/UPDATE, OLD for DELETE.
    let Some(passthrough) = new.or(old) else {
        return Err(SyncError::BadTrigger {
            table: trigger.table_name()?,
            detail: "must be a FOR EACH ROW trigger on INSERT, UPDATE or DELETE".into(),
        });
    };
    if internal_write_active() {
        return Ok(returned(passthrough.heap_tuple()));
    }

    // SAFETY: a row trigger's relation is open for the call.
    let relid = unsafe { (*data.tg_relation).rd_id };
    let cols = catalog_cache::trigger_layout(trigger.trigger().tgoid, relid, || {
        columns(&trigger.extra_args()?, &passthrough, &trigger.table_name()?)
    })?;
    if let (Some(o), Some(n)) = (old, new) {
        // Nothing but write-back columns changed: nothing to sync.
        if o.same_as(&n, &cols.write_back) {
            return Ok(returned(n.heap_tuple()));
        }
    }

    let key_of = |row: &Row| -> crate::error::Result<String> {
        row.text(cols.key).ok_or_else(|| SyncError::NullKey {
            table: cols.table.clone(),
            column: cols.key_column.clone(),
        })
    };
    let mut status = None;
    match (old, new) {
        (None, Some(n)) => {
            status = Some(record_upsert(
                &cols,
                &n,
                None,
                &key_of(&n)?,
                "ORDER_CREATED",
                ORDER_INSERTED,
            )?);
        }
        (Some(o), Some(n)) => {
            // The key's text is made once when the key did not change (the common case); the
            // old one only when its bytes changed, and then only a different text is a new key.
            let new_key = key_of(&n)?;
            let old_key = if o.same_value(&n, cols.key) {
                None
            } else {
                Some(key_of(&o)?).filter(|old| *old != new_key)
            };
            if let Some(old_key) = old_key {
                // A changed key is the old order gone and a new one created.
                record_delete(trigger, &cols, &o, &old_key)?;
                status = Some(record_upsert(
                    &cols,
                    &n,
                    None,
                    &new_key,
                    "ORDER_CREATED",
                    ORDER_INSERTED,
                )?);
            } else {
                status = Some(record_upsert(
                    &cols,
                    &n,
                    Some(&o),
                    &new_key,
                    "ORDER_UPDATED",
                    ORDER_UPDATED,
                )?);
            }
        }
        (Some(o), None) => record_delete(trigger, &cols, &o, &key_of(&o)?)?,
        (None, None) => {}
    }

    // Keep the row's own sync_status column in step, in the same write.
    if let (Some(n), Some(attnum), Some(status)) = (new, cols.sync_status, status) {
        if !n.text_is(attnum, &status) {
            return Ok(returned(n.with_text(attnum, &status)?));
        }
    }
    Ok(returned(passthrough.heap_tuple()))
}

/// The payloads of an order's insert and update events (always the same text): the `events`
/// view (sql/views.sql) puts them back from the event type, as capture does not store them.
const ORDER_INSERTED: &str = r#"{"op":"INSERT","table":"orders"}"#;
const ORDER_UPDATED: &str = r#"{"op":"UPDATE","table":"orders"}"#;

fn record_upsert(
    cols: &OrderColumns,
    row: &Row,
    old: Option<&Row>,
    key: &str,
    event_type: &'static str,
    payload: &'static str,
) -> crate::error::Result<Cow<'static, str>> {
    // A plain update of a waiting order only appends its event; anything that changes what the
    // state row holds writes it too.
    let state_changed = match (old, cols.order_number) {
        (None, _) => true,
        (Some(o), Some(a)) => !o.same_value(row, a),
        (Some(_), None) => false,
    };
    let captured = record_change(&Change {
        tracking_id: cols.tracking_id,
        order_key: key,
        order_number: &|| cols.order_number.and_then(|a| row.text(a)),
        deleted: Some(false),
        tombstone: None,
        state_changed,
        event_type,
        payload: Cow::Borrowed(payload),
    })?;
    Ok(captured.sync_status)
}

fn record_delete(
    trigger: &PgTrigger<'_>,
    cols: &OrderColumns,
    row: &Row,
    key: &str,
) -> crate::error::Result<()> {
    let tombstone = snapshot(trigger, row)?;
    record_change(&Change {
        tracking_id: cols.tracking_id,
        order_key: key,
        order_number: &|| cols.order_number.and_then(|a| row.text(a)),
        deleted: Some(true),
        tombstone: tombstone.clone(),
        state_changed: true,
        event_type: "ORDER_DELETED",
        payload: Cow::Owned(format!(
            "{{\"op\":\"DELETE\",\"table\":\"orders\",\"row\":{}}}",
            tombstone.as_deref().unwrap_or("null")
        )),
    })?;
    Ok(())
}

/// The row as JSON, read by its physical address: in a BEFORE DELETE trigger it is still there.
fn snapshot(trigger: &PgTrigger<'_>, row: &Row) -> crate::error::Result<Option<String>> {
    let relation = trigger.relation()?;
    let query = format!(
        "SELECT pg_catalog.to_jsonb(o)::pg_catalog.text FROM {}.{} o WHERE o.ctid OPERATOR(pg_catalog.=) $1",
        spi::quote_identifier(relation.namespace()),
        spi::quote_identifier(relation.name())
    );
    // SAFETY: t_self of the valid heap tuple PostgreSQL handed to the trigger.
    let tid = unsafe { (*row.heap_tuple()).t_self };
    // Read as the table's owner: nothing of the user's table runs with more privileges than
    // its owner has.
    // SAFETY: a relation opened by the trigger manager has a valid rd_rel.
    let owner = unsafe { (*(*trigger.trigger_data().tg_relation).rd_rel).relowner };
    let _as_owner = RunAs::user(owner);
    Ok(Spi::get_one_with_args::<String>(&query, &[tid.into()])?)
}
