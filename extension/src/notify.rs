//! NOTIFY odoo_sync_events, sent when the transaction commits.
//!
//! Everything odoo_sync tells listeners (a change waits in the queue, an event was written,
//! the settings changed) is collected here and sent as one NOTIFY per payload just before the
//! transaction commits: at `XACT_EVENT_PRE_COMMIT`, which PostgreSQL runs before it queues the
//! transaction's notifications. Calling `pg_notify` at the change instead would cost two
//! failures that have nothing to do with odoo_sync's job:
//! - PostgreSQL refuses to `PREPARE TRANSACTION` a transaction that executed NOTIFY, so every
//!   two-phase commit that changed a tracked table would fail. A prepared transaction now
//!   notifies nobody; the workers' periodic poll finds its jobs after `COMMIT PREPARED`.
//! - When PostgreSQL's notification queue fills up (some session that LISTENs stays in an
//!   open transaction), COMMIT fails with "too many notifications in the NOTIFY queue". Past
//!   half full, odoo_sync's notifications are left out instead, and the workers poll.
//!
//! What a subtransaction queued is dropped when it rolls back, as its NOTIFY would be.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::time::{Duration, Instant};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;

/// Above this fill of PostgreSQL's notification queue (0..1), odoo_sync sends nothing.
const QUEUE_FILL_LIMIT: f64 = 0.5;

/// How long a backend trusts its last look at the queue's fill. Asking takes the queue's locks
/// exclusively (PostgreSQL advances the queue's tail first); from half full to full takes
/// gigabytes of notifications, far more than a second of them.
const QUEUE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// One payload waiting for the commit, with the subtransaction that queued it.
struct Pending {
    payload: String,
    subxact: pg_sys::SubTransactionId,
}

thread_local! {
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
    /// When this backend last asked for the queue's fill, and whether it had room.
    static QUEUE_CHECKED: Cell<Option<(Instant, bool)>> = const { Cell::new(None) };
}

/// Queues NOTIFY odoo_sync_events `payload` for the commit of the current transaction. Runs
/// on every captured change: when the payload is already queued it costs a comparison.
pub fn at_commit(payload: &str) {
    register_callbacks();
    // SAFETY: reads the current transaction's state; triggers and functions run inside one.
    let subxact = unsafe { pg_sys::GetCurrentSubTransactionId() };
    PENDING.with(|p| {
        let mut pending = p.borrow_mut();
        if !pending
            .iter()
            .any(|e| e.subxact == subxact && e.payload == payload)
        {
            pending.push(Pending {
                payload: payload.to_string(),
                subxact,
            });
        }
    });
}

/// SQL face of [`at_commit`], for the notifications odoo_sync's SQL functions send.
#[pg_extern(volatile, parallel_unsafe, strict)]
fn _notify(payload: &str) {
    at_commit(payload);
}

fn register_callbacks() {
    if REGISTERED.with(|r| r.replace(true)) {
        return;
    }
    // SAFETY: registers plain functions for the life of the backend, as extensions do.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

/// The distinct payloads queued, emptying the queue.
fn take_payloads() -> Vec<String> {
    PENDING.with(|p| {
        let mut payloads: Vec<String> = p.borrow_mut().drain(..).map(|e| e.payload).collect();
        payloads.sort();
        payloads.dedup();
        payloads
    })
}

/// True while PostgreSQL's notification queue has room to spare (see the module doc).
fn queue_has_room() -> bool {
    if let Some((at, room)) = QUEUE_CHECKED.with(Cell::get) {
        if at.elapsed() < QUEUE_CHECK_INTERVAL {
            return room;
        }
    }
    // SAFETY: the built-in pg_notification_queue_usage() takes no argument and returns a
    // float8, passed by value.
    let usage = unsafe {
        pg_sys::OidFunctionCall0Coll(
            pg_sys::Oid::from(pg_sys::F_PG_NOTIFICATION_QUEUE_USAGE),
            pg_sys::InvalidOid,
        )
    };
    let room = f64::from_bits(usage.value() as u64) < QUEUE_FILL_LIMIT;
    QUEUE_CHECKED.with(|c| c.set(Some((Instant::now(), room))));
    room
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    if event != pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT {
        // Prepared, aborted, or already past the point where a notification can be queued.
        // (try_borrow_mut: no borrow spans a PostgreSQL call, and a panic while a transaction
        // aborts would escalate.)
        PENDING.with(|p| {
            if let Ok(mut pending) = p.try_borrow_mut() {
                pending.clear();
            }
        });
        return;
    }
    let payloads = take_payloads();
    if payloads.is_empty() || !queue_has_room() {
        return;
    }
    // Allocate in the transaction's memory, freed when it ends: a COMMIT inside a procedure
    // runs this in the procedure's memory, which lives until the CALL returns.
    // SAFETY: the top transaction context exists until the transaction ends, after PRE_COMMIT.
    unsafe {
        PgMemoryContexts::TopTransactionContext.switch_to(|_| {
            for payload in payloads {
                let Ok(payload) = std::ffi::CString::new(payload) else {
                    continue;
                };
                // pg_notify takes two text datums; the transaction is still in progress at
                // PRE_COMMIT, so the notification joins it.
                pg_sys::OidFunctionCall2Coll(
                    pg_sys::Oid::from(pg_sys::F_PG_NOTIFY),
                    pg_sys::InvalidOid,
                    pg_sys::Datum::from(pg_sys::cstring_to_text(c"odoo_sync_events".as_ptr())),
                    pg_sys::Datum::from(pg_sys::cstring_to_text(payload.as_ptr())),
                );
            }
        });
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    subxact: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    // Subtransactions end innermost first, so what a subtransaction's children queued carries
    // its own id by the time it ends.
    PENDING.with(|p| {
        let Ok(mut pending) = p.try_borrow_mut() else {
            return;
        };
        match event {
            pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => {
                // Entries move to the parent; one the parent holds already is dropped.
                let mut i = 0;
                while i < pending.len() {
                    if pending[i].subxact == subxact {
                        let payload = &pending[i].payload;
                        if pending
                            .iter()
                            .any(|e| e.subxact == parent && &e.payload == payload)
                        {
                            pending.swap_remove(i);
                            continue;
                        }
                        pending[i].subxact = parent;
                    }
                    i += 1;
                }
            }
            pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => {
                pending.retain(|e| e.subxact != subxact);
            }
            _ => {}
        }
    });
}
