//! Whose privileges odoo_sync's own writes run with, and how its own writes are told apart
//! from the application's.
//!
//! The capture trigger runs as whoever writes the order, who must not be able to write the
//! queue directly; so the trigger switches to the extension owner for its bookkeeping, the way
//! PostgreSQL's foreign-key triggers switch to the table owner. Writes into user tables
//! (write-back, applying Odoo's data) run as the owner of that table, never as the extension
//! owner, so the application's own triggers never run with more privileges than their owner has.

use std::cell::Cell;

use pgrx::prelude::*;
use pgrx::spi::Spi;

use crate::error::{Result, SyncError};
use crate::plans::plan;

thread_local! {
    /// Depth of odoo_sync's own writes into tracked tables in progress in this backend.
    static INTERNAL_WRITES: Cell<u32> = const { Cell::new(0) };
    /// Owner of the extension, looked up once per backend.
    static EXTENSION_OWNER: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
}

/// True while odoo_sync itself is writing to a tracked table: the capture triggers then record
/// nothing, which is what prevents echo loops. Only Rust code of this crate can set it.
pub fn internal_write_active() -> bool {
    INTERNAL_WRITES.with(|d| d.get() > 0)
}

/// Marks odoo_sync's own write for as long as it lives. Dropped on success and on error alike
/// (PostgreSQL errors unwind through Rust frames), so the mark never outlives the write.
pub struct InternalWrite;

impl InternalWrite {
    /// Starts an internal write.
    pub fn begin() -> Self {
        INTERNAL_WRITES.with(|d| d.set(d.get() + 1));
        InternalWrite
    }
}

impl Drop for InternalWrite {
    fn drop(&mut self) {
        INTERNAL_WRITES.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Runs as another role for as long as it lives (SECURITY_LOCAL_USERID_CHANGE, like
/// PostgreSQL's own referential-integrity triggers); restores the previous role on drop.
pub struct RunAs {
    previous_user: pg_sys::Oid,
    previous_context: i32,
}

impl RunAs {
    /// Switches to `user`.
    pub fn user(user: pg_sys::Oid) -> Self {
        let mut previous_user = pg_sys::InvalidOid;
        let mut previous_context = 0;
        // SAFETY: plain reads and writes of backend-local state, as PostgreSQL's own code does;
        // unguarded (see crate::unguarded): neither raises an ERROR.
        unsafe {
            crate::unguarded::GetUserIdAndSecContext(&mut previous_user, &mut previous_context);
            crate::unguarded::SetUserIdAndSecContext(
                user,
                previous_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
            );
        }
        RunAs {
            previous_user,
            previous_context,
        }
    }
}

impl Drop for RunAs {
    fn drop(&mut self) {
        // SAFETY: restores exactly what `user` saved (unguarded, as in `user`).
        unsafe {
            crate::unguarded::SetUserIdAndSecContext(self.previous_user, self.previous_context)
        }
    }
}

/// The role that owns the extension (and so its tables).
pub fn extension_owner() -> Result<pg_sys::Oid> {
    if let Some(owner) = EXTENSION_OWNER.with(|o| o.get()) {
        return Ok(owner);
    }
    let owner = Spi::get_one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'odoo_sync'",
    )?
    .ok_or(SyncError::NotInstalled)?;
    EXTENSION_OWNER.with(|o| o.set(Some(owner)));
    Ok(owner)
}

/// Runs `query` with `$1` bound to `params`, as the owner of `rel` and marked as odoo_sync's own
/// write (no capture). Returns the number of rows processed. Only the extension's SECURITY
/// DEFINER functions may call it (EXECUTE is revoked from PUBLIC): it exists so that their
/// writes into user tables run with the table owner's privileges, not the extension owner's.
#[pg_extern(volatile, parallel_unsafe)]
fn _exec_as_owner(rel: pg_sys::Oid, query: &str, params: Vec<Option<String>>) -> i64 {
    exec_as_owner(rel, query, params).unwrap_or_else(|e| e.raise())
}

/// See `_exec_as_owner`; callable from Rust.
pub fn exec_as_owner(rel: pg_sys::Oid, query: &str, params: Vec<Option<String>>) -> Result<i64> {
    let _as_owner = RunAs::user(relation_owner(rel)?);
    let _internal = InternalWrite::begin();
    let processed = Spi::connect_mut(|client| {
        let statement = plan(client, query, &[pg_sys::TEXTARRAYOID.into()])?;
        Ok::<_, SyncError>(client.update(&*statement, None, &[params.into()])?.len() as i64)
    })?;
    Ok(processed)
}

/// Like `_exec_as_owner`, for statements that return rows (`INSERT ... RETURNING id::text`):
/// the first column of every row, as text. Creating local rows from Odoo data needs the keys
/// the table's own defaults produced, evaluated with the owner's privileges, not ours.
#[pg_extern(volatile, parallel_unsafe)]
fn _query_as_owner(
    rel: pg_sys::Oid,
    query: &str,
    params: Vec<Option<String>>,
) -> Vec<Option<String>> {
    query_as_owner(rel, query, params).unwrap_or_else(|e| e.raise())
}

/// See `_query_as_owner`.
pub fn query_as_owner(
    rel: pg_sys::Oid,
    query: &str,
    params: Vec<Option<String>>,
) -> Result<Vec<Option<String>>> {
    let _as_owner = RunAs::user(relation_owner(rel)?);
    let _internal = InternalWrite::begin();
    Spi::connect_mut(|client| {
        let statement = plan(client, query, &[pg_sys::TEXTARRAYOID.into()])?;
        let rows = client.update(&*statement, None, &[params.into()])?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(row.get::<String>(1)?);
        }
        Ok(out)
    })
}

/// The role that owns `rel`.
fn relation_owner(rel: pg_sys::Oid) -> Result<pg_sys::Oid> {
    Spi::connect(|client| {
        let lookup = plan(
            client,
            "SELECT relowner FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1",
            &[pg_sys::OIDOID.into()],
        )?;
        Ok::<_, SyncError>(
            client
                .select(&*lookup, None, &[rel.into()])?
                .first()
                .get::<pg_sys::Oid>(1)?,
        )
    })?
    .ok_or_else(|| SyncError::BadTrigger {
        table: format!("relation {}", rel.to_u32()),
        detail: "the tracked table no longer exists".into(),
    })
}
