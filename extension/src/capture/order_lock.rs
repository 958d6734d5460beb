//! Locking an order's row from the items trigger, so that item changes are serialized with the
//! order's other writers and with the worker deciding "this order is in sync" (see
//! `odoo_sync._lock_order`, the same lock taken from SQL).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::spi::{self, Spi};

use crate::error::{Result, SyncError};
use crate::privileges::{exec_as_owner, extension_owner, RunAs};

/// Where a tracking's orders live: table, key column, key type.
#[derive(Clone)]
struct OrdersTable {
    relid: pg_sys::Oid,
    key_column: String,
    key_type: String,
}

thread_local! {
    static TABLES: RefCell<HashMap<i32, OrdersTable>> = RefCell::new(HashMap::new());
}

fn orders_table(tracking_id: i32) -> Result<OrdersTable> {
    if let Some(t) = TABLES.with(|t| t.borrow().get(&tracking_id).cloned()) {
        return Ok(t);
    }
    let _as_owner = RunAs::user(extension_owner()?);
    let row = Spi::get_three_with_args::<pg_sys::Oid, String, String>(
        "SELECT t.orders_table::pg_catalog.oid,
                t.mapping OPERATOR(pg_catalog.->) 'orders' OPERATOR(pg_catalog.->>) 'id',
                pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'
                    OPERATOR(pg_catalog.||) pg_catalog.quote_ident(ty.typname)
         FROM odoo_sync.tracked_tables t
         JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) t.orders_table
          AND a.attname OPERATOR(pg_catalog.=)
              (t.mapping OPERATOR(pg_catalog.->) 'orders' OPERATOR(pg_catalog.->>) 'id')::pg_catalog.name
         JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) a.atttypid
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) ty.typnamespace
         WHERE t.id OPERATOR(pg_catalog.=) $1",
        &[tracking_id.into()],
    )?;
    let (Some(relid), Some(key_column), Some(key_type)) = row else {
        return Err(SyncError::BadTrigger {
            table: format!("tracking {tracking_id}"),
            detail: "this tracking no longer exists; run untrack_orders/track_orders again".into(),
        });
    };
    let table = OrdersTable {
        relid,
        key_column,
        key_type,
    };
    TABLES.with(|t| t.borrow_mut().insert(tracking_id, table.clone()));
    Ok(table)
}

/// The relation's current schema-qualified, quoted name.
fn qualified_name(relid: pg_sys::Oid) -> Option<String> {
    // SAFETY: syscache lookups; NULL when the relation is gone.
    unsafe {
        let name = pg_sys::get_rel_name(relid);
        if name.is_null() {
            return None;
        }
        let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        if schema.is_null() {
            return None;
        }
        Some(format!(
            "{}.{}",
            spi::quote_identifier(CStr::from_ptr(schema).to_string_lossy()),
            spi::quote_identifier(CStr::from_ptr(name).to_string_lossy())
        ))
    }
}

/// Locks the order's row (FOR NO KEY UPDATE) as the orders table's owner. A missing row (the
/// order is being deleted, or never existed) locks nothing.
pub fn lock_order(tracking_id: i32, order_key: &str) -> Result<()> {
    let table = orders_table(tracking_id)?;
    let name = qualified_name(table.relid).ok_or_else(|| SyncError::BadTrigger {
        table: format!("tracking {tracking_id}"),
        detail: "its orders table no longer exists".into(),
    })?;
    let query = format!(
        "SELECT 1 FROM {name} WHERE {} OPERATOR(pg_catalog.=) ($1[1])::{} FOR NO KEY UPDATE",
        spi::quote_identifier(&table.key_column),
        table.key_type
    );
    exec_as_owner(table.relid, &query, vec![Some(order_key.to_string())])?;
    Ok(())
}
