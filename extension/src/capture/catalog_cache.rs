//! Per-backend memory of the catalog facts the capture trigger needs on every write: where
//! odoo_sync's own tables are and how their columns are laid out, and what each capture
//! trigger's arguments resolve to. Looking them up again on every write cost more than the
//! write itself.
//!
//! PostgreSQL announces every change of a relation (ALTER, DROP, CREATE INDEX, CREATE
//! TRIGGER, ...) with a relcache invalidation; the callback registered here forgets what it
//! knew about that relation, so the next write reads the catalog again. Entries are cloned out
//! and no borrow is held across a PostgreSQL call, since an invalidation can arrive inside one.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use pgrx::pg_sys::{self, Datum, Oid};

use super::event_append::EventLogLayout;
use super::state_probe::OrderStateLayout;
use crate::error::Result;

/// A trigger's resolved arguments, with the table they were resolved on.
type TriggerEntry = (Oid, Rc<dyn Any>);

thread_local! {
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    static EVENT_LOG: RefCell<Option<Rc<EventLogLayout>>> = const { RefCell::new(None) };
    static ORDER_STATE: Cell<Option<OrderStateLayout>> = const { Cell::new(None) };
    static TRIGGERS: RefCell<FastMap<Oid, TriggerEntry>> = RefCell::new(FastMap::default());
    /// Per tracking id and order key, where the order's state row starts (see `state_row`).
    static STATE_ROWS: RefCell<FastMap<i32, FastMap<String, pg_sys::ItemPointerData>>> =
        RefCell::new(FastMap::default());
}

/// A map hashed with `FastHasher`: these are looked up on every write of a tracked table, and
/// the standard SipHash (built against flooding by untrusted keys, which these are not: OIDs,
/// tracking ids and the keys of the backend's own writes) showed in its profile.
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// The multiply-rotate hash of rustc's FxHasher, 8 bytes at a time.
#[derive(Default)]
struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut rest = [0u8; 8];
        rest[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(rest));
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_i32(&mut self, value: i32) {
        self.add(u64::from(value as u32));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Most state row addresses a backend remembers; past this all are forgotten at once. An entry
/// is the order key and 6 bytes of address, about 100 bytes with the map's own: at most about
/// 1.6 MB per backend, outside PostgreSQL's memory contexts.
const MAX_STATE_ROWS: usize = 16_384;

/// Where the state row of order `key` of tracking `tracking_id` was last found: the address
/// its primary key entry points to (the start of its chain of row versions on one page). Only
/// a hint: the state probe checks the page is still in the table and the row found there is
/// this order's, and else asks the index.
pub fn state_row(tracking_id: i32, key: &str) -> Option<pg_sys::ItemPointerData> {
    STATE_ROWS.with(|rows| {
        let rows = rows.try_borrow().ok()?;
        rows.get(&tracking_id)?.get(key).copied()
    })
}

/// Remembers (Some) or forgets (None) where the state row of an order starts.
pub fn remember_state_row(tracking_id: i32, key: &str, at: Option<pg_sys::ItemPointerData>) {
    STATE_ROWS.with(|rows| {
        let Ok(mut rows) = rows.try_borrow_mut() else {
            return;
        };
        match at {
            Some(at) => {
                if rows.values().map(FastMap::len).sum::<usize>() >= MAX_STATE_ROWS {
                    rows.clear();
                }
                let orders = rows.entry(tracking_id).or_default();
                match orders.get_mut(key) {
                    Some(known) => *known = at,
                    None => {
                        orders.insert(key.to_owned(), at);
                    }
                }
            }
            None => {
                if let Some(orders) = rows.get_mut(&tracking_id) {
                    orders.remove(key);
                }
            }
        }
    });
}

/// The remembered layout of odoo_sync.event_log. Ask after opening the table, or check it
/// then (`is_event_log`): opening it processes pending invalidations.
pub fn event_log() -> Option<Rc<EventLogLayout>> {
    EVENT_LOG.with(|c| c.borrow().clone())
}

/// True while `layout` is the remembered layout of odoo_sync.event_log: no change of the table
/// was announced since it was read. Holds no borrow across a PostgreSQL call, so it may run
/// inside a guard of crate::unguarded.
pub fn is_event_log(layout: &EventLogLayout) -> bool {
    EVENT_LOG.with(|c| {
        c.try_borrow().is_ok_and(|known| {
            known
                .as_deref()
                .is_some_and(|known| std::ptr::eq(known, layout))
        })
    })
}

/// Remembers the layout of odoo_sync.event_log.
pub fn remember_event_log(layout: Rc<EventLogLayout>) {
    register_callback();
    EVENT_LOG.with(|c| *c.borrow_mut() = Some(layout));
}

/// The remembered layout of odoo_sync.order_state (same rule as `event_log`).
pub fn order_state() -> Option<OrderStateLayout> {
    ORDER_STATE.with(|c| c.get())
}

/// Remembers the layout of odoo_sync.order_state.
pub fn remember_order_state(layout: OrderStateLayout) {
    register_callback();
    ORDER_STATE.with(|c| c.set(Some(layout)));
}

/// What the capture trigger `tgoid` on table `relid` resolved its arguments to, built with
/// `build` the first time and again after the table changed.
pub fn trigger_layout<T: Any>(
    tgoid: Oid,
    relid: Oid,
    build: impl FnOnce() -> Result<T>,
) -> Result<Rc<T>> {
    let known = TRIGGERS.with(|t| t.borrow().get(&tgoid).map(|(_, layout)| layout.clone()));
    if let Some(layout) = known.and_then(|l| l.downcast::<T>().ok()) {
        return Ok(layout);
    }
    let layout = Rc::new(build()?);
    register_callback();
    TRIGGERS.with(|t| t.borrow_mut().insert(tgoid, (relid, layout.clone())));
    Ok(layout)
}

fn register_callback() {
    if REGISTERED.with(|r| r.replace(true)) {
        return;
    }
    // SAFETY: registers a plain function for the life of the backend, as extensions do.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget), Datum::from(0usize)) };
}

/// Relcache invalidation callback; InvalidOid means "any relation may have changed".
unsafe extern "C-unwind" fn forget(_arg: Datum, relid: Oid) {
    let all = relid == pg_sys::InvalidOid;
    // try_borrow: no borrow spans a PostgreSQL call, so these never fail; a panic here would
    // unwind into PostgreSQL.
    EVENT_LOG.with(|c| {
        if let Ok(mut layout) = c.try_borrow_mut() {
            if all || layout.as_ref().is_some_and(|l| l.depends_on(relid)) {
                *layout = None;
            }
        }
    });
    ORDER_STATE.with(|c| {
        if all || c.get().is_some_and(|l| l.depends_on(relid)) {
            c.set(None);
            // A rewritten table (VACUUM FULL, CLUSTER, TRUNCATE) has its rows elsewhere.
            STATE_ROWS.with(|rows| {
                if let Ok(mut rows) = rows.try_borrow_mut() {
                    rows.clear();
                }
            });
        }
    });
    TRIGGERS.with(|t| {
        if let Ok(mut triggers) = t.try_borrow_mut() {
            triggers.retain(|_, (table, _)| !all && *table != relid);
        }
    });
}
