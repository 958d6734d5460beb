//! AFTER trigger on a tracked order items table: an item change is a change of its order.
//!
//! Arguments (set by track_orders): tracking id, item key column, order reference column.

use std::borrow::Cow;

use pgrx::prelude::*;
use pgrx::{AllocatedByPostgres, PgTrigger};

use super::{
    catalog_cache, check_item_rules, json_string, lock_order, record_change, tracking_id_arg,
    write_back_status, Change,
};
use crate::error::SyncError;
use crate::privileges::internal_write_active;
use crate::tuple::Row;

/// What the trigger's arguments resolve to on its table.
struct ItemColumns {
    table: String,
    order_column: String,
    tracking_id: i32,
    item: i32,
    order: i32,
}

fn item_columns(args: &[String], row: &Row, table: &str) -> crate::error::Result<ItemColumns> {
    let tracking_id = tracking_id_arg(args, table)?;
    if args.len() != 3 {
        return Err(SyncError::BadTrigger {
            table: table.to_string(),
            detail: format!("expected 3 arguments, got {}", args.len()),
        });
    }
    Ok(ItemColumns {
        table: table.to_string(),
        order_column: args[2].clone(),
        tracking_id,
        item: row.require_attnum(table, &args[1])?,
        order: row.require_attnum(table, &args[2])?,
    })
}

/// Capture trigger for tracked order items tables (attached by `odoo_sync.track_orders`).
#[pg_trigger]
fn capture_item_change<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, SyncError> {
    if let Err(e) = capture(trigger) {
        e.raise();
    }
    // The return value of an AFTER ROW trigger is ignored.
    Ok(None)
}

fn capture(trigger: &PgTrigger<'_>) -> crate::error::Result<()> {
    if internal_write_active() {
        return Ok(());
    }
    let data = trigger.trigger_data();
    // SAFETY: PostgreSQL hands a valid relation and tuples to a row trigger.
    let desc = unsafe { (*data.tg_relation).rd_att };
    let (old, new, op) = unsafe {
        match trigger.op()? {
            PgTriggerOperation::Insert => (None, Some(Row::new(data.tg_trigtuple, desc)), "INSERT"),
            PgTriggerOperation::Update => (
                Some(Row::new(data.tg_trigtuple, desc)),
                Some(Row::new(data.tg_newtuple, desc)),
                "UPDATE",
            ),
            PgTriggerOperation::Delete => (Some(Row::new(data.tg_trigtuple, desc)), None, "DELETE"),
            PgTriggerOperation::Truncate => (None, None, "TRUNCATE"),
        }
    };
    let Some(row) = new.or(old) else {
        return Err(SyncError::BadTrigger {
            table: trigger.table_name()?,
            detail: "expected a FOR EACH ROW trigger".into(),
        });
    };
    if let (Some(o), Some(n)) = (old, new) {
        if o.same_as(&n, &[]) {
            return Ok(());
        }
    }
    // SAFETY: a row trigger's relation is open for the call.
    let relid = unsafe { (*data.tg_relation).rd_id };
    let cols = catalog_cache::trigger_layout(trigger.trigger().tgoid, relid, || {
        item_columns(&trigger.extra_args()?, &row, &trigger.table_name()?)
    })?;
    let (tracking_id, item_col, order_col) = (cols.tracking_id, cols.item, cols.order);

    // The orders this change touches: both of them when an item moves to another order.
    let mut orders: Vec<String> = Vec::with_capacity(2);
    for r in [old, new].into_iter().flatten() {
        let key = r.text(order_col).ok_or_else(|| SyncError::NullKey {
            table: cols.table.clone(),
            column: cols.order_column.clone(),
        })?;
        if !orders.contains(&key) {
            orders.push(key);
        }
    }
    let item_key = row.text(item_col).unwrap_or_default();
    for order_key in &orders {
        lock_order(tracking_id, order_key)?;
        let captured = record_change(&Change {
            tracking_id,
            order_key,
            order_number: &|| None,
            deleted: None,
            tombstone: None,
            state_changed: false,
            event_type: "ORDER_UPDATED",
            payload: Cow::Owned(format!(
                "{{\"op\":{},\"table\":\"items\",\"item_id\":{}}}",
                json_string(op),
                json_string(&item_key)
            )),
        })?;
        // The order row was not written by the application: mark it pending when its state
        // changes (its job is created), not on every item change.
        if captured.state_written {
            write_back_status(tracking_id, order_key, &captured.sync_status)?;
        }
        if captured.odoo_locked && (op == "DELETE" || op == "UPDATE") {
            check_item_rules(tracking_id, order_key, &item_key, op)?;
        }
    }
    Ok(())
}
