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
//!   half full (the setting `odoo_sync.notify_queue_limit`), odoo_sync's notifications are left
//!   out instead, and the workers poll.
//!
//! What a subtransaction queued is dropped when it rolls back, as its NOTIFY would be. This
//! runs at every commit of a tracked change, so it allocates nothing per transaction: the
//! payloads are a fixed set, their texts made once per backend.

use std::cell::{Cell, RefCell};
use std::ffi::{c_void, CStr};

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::SyncError;

/// `odoo_sync.notify_queue_limit`: from this fill of PostgreSQL's notification queue (0..1)
/// on, odoo_sync sends nothing (0 sends nothing ever, 1 sends until the queue is full).
static QUEUE_FILL_LIMIT: GucSetting<f64> = GucSetting::<f64>::new(0.5);

/// Registers odoo_sync's settings of this module (called when the library is loaded).
pub fn define_settings() {
    GucRegistry::define_float_guc(
        c"odoo_sync.notify_queue_limit",
        c"Fill of PostgreSQL's notification queue from which odoo_sync sends no NOTIFY.",
        c"A listener that stays in an open transaction lets the queue fill; past this share \
          (0 to 1) odoo_sync leaves its notifications out, so that COMMITs of tracked changes \
          do not fail, and the workers find their jobs by polling.",
        &QUEUE_FILL_LIMIT,
        0.0,
        1.0,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// How long (µs) a backend trusts its last look at the queue's fill. Asking takes the queue's
/// locks exclusively (PostgreSQL advances the queue's tail first); from half full to full
/// takes gigabytes of notifications, far more than a second of them.
const QUEUE_CHECK_INTERVAL_US: i64 = 1_000_000;

/// What odoo_sync tells listeners (see docs/dba-guide.md section 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A tracked order changed, or work was queued.
    Queue,
    /// One of odoo_sync's own events was written.
    Event,
    /// A conflict was recorded.
    Conflict,
    /// The settings changed.
    Settings,
    /// Realtime mode was switched.
    Realtime,
}

const PAYLOADS: [Payload; 5] = [
    Payload::Queue,
    Payload::Event,
    Payload::Conflict,
    Payload::Settings,
    Payload::Realtime,
];

impl Payload {
    fn name(self) -> &'static CStr {
        match self {
            Payload::Queue => c"queue",
            Payload::Event => c"event",
            Payload::Conflict => c"conflict",
            Payload::Settings => c"settings",
            Payload::Realtime => c"realtime",
        }
    }

    /// Its place in `PAYLOADS` (the variants are declared in that order).
    fn index(self) -> usize {
        self as usize
    }
}

/// One payload waiting for the commit, with the subtransaction that queued it.
#[derive(Clone, Copy)]
struct Pending {
    payload: Payload,
    subxact: pg_sys::SubTransactionId,
}

thread_local! {
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
    /// When (transaction start, µs) this backend last asked for the queue's fill, and the fill.
    static QUEUE_CHECKED: Cell<Option<(pg_sys::TimestampTz, f64)>> = const { Cell::new(None) };
    /// The channel's and each payload's text, made once in the backend's top memory.
    static TEXTS: Cell<Option<[pg_sys::Datum; 6]>> = const { Cell::new(None) };
}

/// Queues NOTIFY odoo_sync_events `payload` for the commit of the current transaction. Runs
/// on every captured change: when the payload is already queued it costs a comparison.
pub fn at_commit(payload: Payload) {
    register_callbacks();
    // SAFETY: reads the current transaction's state; triggers and functions run inside one.
    let subxact = unsafe { pg_sys::GetCurrentSubTransactionId() };
    PENDING.with(|p| {
        let mut pending = p.borrow_mut();
        if !pending
            .iter()
            .any(|e| e.subxact == subxact && e.payload == payload)
        {
            pending.push(Pending { payload, subxact });
        }
    });
}

/// SQL face of [`at_commit`], for the notifications odoo_sync's SQL functions send.
#[pg_extern(volatile, parallel_unsafe, strict)]
fn _notify(payload: &str) {
    match PAYLOADS.iter().find(|p| p.name().to_str() == Ok(payload)) {
        Some(p) => at_commit(*p),
        None => SyncError::UnknownPayload(payload.to_string()).raise(),
    }
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

/// The channel's text and the payloads' texts (in `PAYLOADS` order).
fn texts() -> [pg_sys::Datum; 6] {
    if let Some(texts) = TEXTS.with(Cell::get) {
        return texts;
    }
    // SAFETY: allocated once in TopMemoryContext, which lives as long as the backend.
    let texts = unsafe {
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let text = |s: &CStr| pg_sys::Datum::from(pg_sys::cstring_to_text(s.as_ptr()));
        let texts = [
            text(c"odoo_sync_events"),
            text(PAYLOADS[0].name()),
            text(PAYLOADS[1].name()),
            text(PAYLOADS[2].name()),
            text(PAYLOADS[3].name()),
            text(PAYLOADS[4].name()),
        ];
        pg_sys::MemoryContextSwitchTo(old);
        texts
    };
    TEXTS.with(|t| t.set(Some(texts)));
    texts
}

/// True while PostgreSQL's notification queue has room to spare (see the module doc).
fn queue_has_room() -> bool {
    // SAFETY: the start time of the transaction in progress (no clock read).
    let now = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    let limit = QUEUE_FILL_LIMIT.get();
    if let Some((at, usage)) = QUEUE_CHECKED.with(Cell::get) {
        if (0..QUEUE_CHECK_INTERVAL_US).contains(&(now - at)) {
            return usage < limit;
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
    let usage = f64::from_bits(usage.value() as u64);
    QUEUE_CHECKED.with(|c| c.set(Some((now, usage))));
    usage < limit
}

/// Restores the memory context it replaced, also when a PostgreSQL error unwinds.
struct SwitchedContext(pg_sys::MemoryContext);

impl Drop for SwitchedContext {
    fn drop(&mut self) {
        // SAFETY: switches back to the context that was current before.
        unsafe { pg_sys::MemoryContextSwitchTo(self.0) };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    // The distinct payloads queued, taken out (no borrow spans a PostgreSQL call, and a panic
    // while a transaction aborts would escalate: try_borrow_mut).
    let mut due: [Option<Payload>; PAYLOADS.len()] = [None; PAYLOADS.len()];
    PENDING.with(|p| {
        if let Ok(mut pending) = p.try_borrow_mut() {
            for e in pending.drain(..) {
                due[e.payload.index()] = Some(e.payload);
            }
        }
    });
    // Anything but PRE_COMMIT: prepared, aborted, or past the point where a notification can
    // be queued.
    if event != pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT
        || due.iter().all(Option::is_none)
        || !queue_has_room()
    {
        return;
    }
    let texts = texts();
    // pg_notify copies its arguments in the current memory, which for a COMMIT inside a
    // procedure lives until the CALL returns: use the transaction's, freed when it ends.
    // SAFETY: the top transaction context exists until the transaction ends, after PRE_COMMIT.
    let _restore =
        SwitchedContext(unsafe { pg_sys::MemoryContextSwitchTo(pg_sys::TopTransactionContext) });
    for payload in due.into_iter().flatten() {
        // SAFETY: pg_notify takes two text datums (read, not changed); the transaction is still
        // in progress at PRE_COMMIT, so the notification joins it.
        unsafe {
            pg_sys::OidFunctionCall2Coll(
                pg_sys::Oid::from(pg_sys::F_PG_NOTIFY),
                pg_sys::InvalidOid,
                texts[0],
                texts[1 + payload.index()],
            );
        }
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
                        let payload = pending[i].payload;
                        if pending
                            .iter()
                            .any(|e| e.subxact == parent && e.payload == payload)
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
