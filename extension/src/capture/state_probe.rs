//! Reading an order's sync state in the capture trigger: one primary-key lookup in
//! `odoo_sync.order_state`, done with an index scan rather than a query for the same reason
//! `event_append` avoids the executor (this runs on every write to a tracked table).

use std::ffi::{CStr, CString};

use pgrx::pg_sys::{self, Datum};

use super::{catalog_cache, own_relation};
use crate::error::{Result, SyncError};

/// What capture needs to know of an order before it decides whether to enqueue.
#[derive(Debug, Default)]
pub struct OrderProbe {
    /// PENDING_SYNC or CONFLICT when a push job is linked to the order and it has one of
    /// those statuses (its change only needs its event), else None.
    pub waiting: Option<&'static str>,
    /// True when Odoo has confirmed the order (the column does not exist before 0.2.0).
    pub odoo_locked: bool,
}

/// Where order_state and its primary key are and which columns the probe reads (see
/// catalog_cache).
#[derive(Clone, Copy)]
pub struct OrderStateLayout {
    relid: pg_sys::Oid,
    pkey: pg_sys::Oid,
    tracking_id: i16,
    order_key: i16,
    key_collation: pg_sys::Oid,
    sync_status: i16,
    job_id: i16,
    /// Not there before 0.2.0.
    odoo_locked: Option<i16>,
}

impl OrderStateLayout {
    /// True when a change of relation `relid` may change this layout.
    pub fn depends_on(&self, relid: pg_sys::Oid) -> bool {
        relid == self.relid || relid == self.pkey
    }

    /// Reads the layout of the open relation `rel`.
    unsafe fn read(rel: pg_sys::Relation) -> Result<Self> {
        // SAFETY: `rel` is open; its descriptor lives as long as it stays open.
        unsafe {
            let pkey = pg_sys::RelationGetPrimaryKeyIndex(rel);
            if pkey == pg_sys::InvalidOid {
                return Err(damaged(c"its primary key"));
            }
            let desc = (*rel).rd_att;
            let column = |name: &CStr| attnum(desc, name).ok_or_else(|| damaged(name));
            let order_key = column(c"order_key")?;
            Ok(OrderStateLayout {
                relid: (*rel).rd_id,
                pkey,
                tracking_id: column(c"tracking_id")?,
                order_key,
                key_collation: (*(*desc).attrs.as_ptr().add(order_key as usize - 1)).attcollation,
                sync_status: column(c"sync_status")?,
                job_id: column(c"job_id")?,
                odoo_locked: attnum(desc, c"odoo_locked"),
            })
        }
    }
}

fn damaged(what: &CStr) -> SyncError {
    SyncError::BadTrigger {
        table: "odoo_sync.order_state".into(),
        detail: format!(
            "{} is missing; reinstall the extension",
            what.to_string_lossy()
        ),
    }
}

/// Looks the order up. Reads with a fresh snapshot, not the statement's: the worker may have
/// finished the order's job after this statement began, and only the latest committed state
/// tells whether a job is still waiting for this change. (The caller holds the order's row
/// lock, which the worker takes before it finishes a job, so nothing changes after the read.)
/// Under REPEATABLE READ the enqueue that may follow then fails with a serialization error the
/// application retries, instead of a change committed with no job; under SERIALIZABLE this read
/// takes no predicate lock, which is fine: it only decides whether to enqueue.
pub fn probe(tracking_id: i32, order_key: &str) -> Result<OrderProbe> {
    let key = CString::new(order_key).map_err(|_| SyncError::BadTrigger {
        table: "odoo_sync.order_state".into(),
        detail: "an order key with a NUL byte".into(),
    })?;
    let relid = match catalog_cache::order_state() {
        Some(layout) => layout.relid,
        None => own_relation(c"order_state").ok_or(SyncError::NotInstalled)?,
    };
    // SAFETY: the relation is opened and locked for reading; the snapshot is registered for
    // the scan and released after it; the tuple is read before the scan ends.
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as i32);
        let layout = match catalog_cache::order_state().filter(|l| l.relid == relid) {
            Some(layout) => layout,
            None => match OrderStateLayout::read(rel) {
                Ok(layout) => {
                    catalog_cache::remember_order_state(layout);
                    layout
                }
                Err(e) => {
                    pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
                    return Err(e);
                }
            },
        };
        let desc = (*rel).rd_att;

        // Make this statement's earlier writes (another row's state) visible to the lookup.
        pg_sys::CommandCounterIncrement();
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot());
        let mut keys: [pg_sys::ScanKeyData; 2] = std::mem::zeroed();
        pg_sys::ScanKeyEntryInitialize(
            &mut keys[0],
            0,
            layout.tracking_id,
            pg_sys::BTEqualStrategyNumber as u16,
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            pg_sys::regproc::from(pg_sys::F_INT4EQ),
            Datum::from(tracking_id),
        );
        pg_sys::ScanKeyEntryInitialize(
            &mut keys[1],
            0,
            layout.order_key,
            pg_sys::BTEqualStrategyNumber as u16,
            pg_sys::InvalidOid,
            // The index orders text by the column's collation; the search must use the same.
            layout.key_collation,
            pg_sys::regproc::from(pg_sys::F_TEXTEQ),
            Datum::from(pg_sys::cstring_to_text_with_len(
                key.as_ptr(),
                key.as_bytes().len() as i32,
            )),
        );
        let scan =
            pg_sys::systable_beginscan(rel, layout.pkey, true, snapshot, 2, keys.as_mut_ptr());
        let tuple = pg_sys::systable_getnext(scan);
        let mut found = OrderProbe::default();
        if !tuple.is_null() {
            let mut isnull = false;
            pg_sys::heap_getattr(tuple, layout.job_id.into(), desc, &mut isnull);
            if !isnull {
                let status =
                    pg_sys::heap_getattr(tuple, layout.sync_status.into(), desc, &mut isnull);
                if !isnull {
                    // Compared in place: copying the text out cost more than the comparison.
                    found.waiting = match crate::tuple::varlena_bytes(status) {
                        b"PENDING_SYNC" => Some("PENDING_SYNC"),
                        b"CONFLICT" => Some("CONFLICT"),
                        _ => None,
                    };
                }
            }
            if let Some(col) = layout.odoo_locked {
                let locked = pg_sys::heap_getattr(tuple, col.into(), desc, &mut isnull);
                found.odoo_locked = !isnull && locked.value() != 0;
            }
        }
        pg_sys::systable_endscan(scan);
        pg_sys::UnregisterSnapshot(snapshot);
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        Ok(found)
    }
}

/// The attribute number of a live column of `desc`.
unsafe fn attnum(desc: pg_sys::TupleDesc, name: &CStr) -> Option<i16> {
    let name = name.to_str().ok()?;
    // SAFETY: `desc` is the descriptor of an open relation.
    unsafe {
        (0..(*desc).natts as usize).find_map(|i| {
            let attr = &*(*desc).attrs.as_ptr().add(i);
            (!attr.attisdropped && pg_sys::name_data_to_str(&attr.attname) == name)
                .then_some((i + 1) as i16)
        })
    }
}
