//! Reading an order's sync state in the capture trigger, and moving its version: one
//! primary-key lookup in `odoo_sync.order_state`, done with an index scan rather than a query
//! for the same reason `event_append` avoids the executor (this runs on every write to a
//! tracked table).
//!
//! An order's version (the id of its latest change event) lives in its state row, and every
//! change writes it there. For a change that joins a waiting job that is the only write besides
//! the event, and it is made here, in place of the row the lookup just read: the page is in
//! memory already, and as `version` is in no index the new row version stays on that page (a
//! HOT update). Finding the version through an index of the event log instead (per order, the
//! id of its latest event) cost each change an insert at a random place of a large index, which
//! made capture slower than a naive trigger that appends one queue row.

use std::ffi::CStr;

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

/// Most times a version write looks the row up again after another transaction updated it.
const WRITE_RETRIES: usize = 10;

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
    version: i16,
    /// Not there before 0.2.0.
    odoo_locked: Option<i16>,
    /// True when the version can be written without the executor: nothing a DBA added to the
    /// table (a trigger, a rule, a CHECK constraint on `version`, ...) must run on the write.
    plain_write: bool,
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
                version: column(c"version")?,
                odoo_locked: attnum(desc, c"odoo_locked"),
                plain_write: false,
            }
            .with_plain_write(rel))
        }
    }

    /// Sets `plain_write` (see there) for the open relation `rel`.
    unsafe fn with_plain_write(mut self, rel: pg_sys::Relation) -> Self {
        // SAFETY: `rel` is open; its constraint expressions are node strings PostgreSQL wrote.
        unsafe {
            let constr = (*(*rel).rd_att).constr;
            let checks_version = !constr.is_null()
                && (0..(*constr).num_check as usize).any(|i| {
                    let check = &*(*constr).check.add(i);
                    let mut columns: *mut pg_sys::Bitmapset = std::ptr::null_mut();
                    pg_sys::pull_varattnos(
                        pg_sys::stringToNode(check.ccbin).cast(),
                        1,
                        &mut columns,
                    );
                    // Column 0 is a reference to the whole row.
                    [i32::from(self.version), 0].iter().any(|&column| {
                        pg_sys::bms_is_member(
                            column - pg_sys::FirstLowInvalidHeapAttributeNumber,
                            columns,
                        )
                    })
                });
            self.plain_write = super::plain_heap_table(rel) && !checks_version;
            self
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

/// Looks the order up and, when `bump_to` is given and the order waits for its push, writes
/// its version (the larger of the stored one and `bump_to`). Reads with a fresh snapshot, not
/// the statement's: the worker may have finished the order's job after this statement began,
/// and only the latest committed state tells whether a job is still waiting for this change.
/// (The caller holds the order's row lock, which the worker takes before it finishes a job, so
/// nothing changes after the read.) Under REPEATABLE READ the enqueue that may follow then fails
/// with a serialization error the application retries, instead of a change committed with no
/// job; under SERIALIZABLE this read takes no predicate lock, which is fine: it only decides
/// whether to enqueue. The version is written to the latest row version for the same reason,
/// as PostgreSQL writes its catalogs; a transaction that updates the row meanwhile is waited
/// for, and the row read again.
pub fn probe(tracking_id: i32, order_key: &str, bump_to: Option<i64>) -> Result<OrderProbe> {
    if order_key.as_bytes().contains(&0) {
        return Err(SyncError::BadTrigger {
            table: "odoo_sync.order_state".into(),
            detail: "an order key with a NUL byte".into(),
        });
    }
    let relid = match catalog_cache::order_state() {
        Some(layout) => layout.relid,
        None => own_relation(c"order_state").ok_or(SyncError::NotInstalled)?,
    };
    for _ in 0..WRITE_RETRIES {
        // SAFETY: see `probe_once`.
        match unsafe { probe_once(relid, tracking_id, order_key, bump_to)? } {
            Probed::Done(found) => return Ok(found),
            Probed::ByExecutor(found, version) => {
                write_version_with_sql(tracking_id, order_key, version)?;
                return Ok(found);
            }
            Probed::Moved => continue,
        }
    }
    Err(SyncError::StateChanged {
        order_key: order_key.to_string(),
    })
}

/// What one look at the state row came to.
enum Probed {
    /// Looked up, and the version written if it had to be.
    Done(OrderProbe),
    /// Looked up; the version is left to an UPDATE (see `OrderStateLayout::plain_write`).
    ByExecutor(OrderProbe, i64),
    /// Another transaction updated the row before the version was written: look again.
    Moved,
}

/// One lookup (and version write) of `probe`.
///
/// # Safety
/// Must run inside a transaction, in a trigger of a tracked table.
unsafe fn probe_once(
    relid: pg_sys::Oid,
    tracking_id: i32,
    key: &str,
    bump_to: Option<i64>,
) -> Result<Probed> {
    // SAFETY: the relation is opened and locked as for an UPDATE; the snapshot is registered
    // for the scan and released after it; the tuple is read (and copied, when it is to be
    // written) before the scan ends.
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as i32);
        let layout = match catalog_cache::order_state().filter(|l| l.relid == relid) {
            Some(layout) => layout,
            None => match OrderStateLayout::read(rel) {
                Ok(layout) => {
                    catalog_cache::remember_order_state(layout);
                    layout
                }
                Err(e) => {
                    pg_sys::table_close(rel, pg_sys::NoLock as i32);
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
                key.as_ptr().cast(),
                key.len() as i32,
            )),
        );
        let scan =
            pg_sys::systable_beginscan(rel, layout.pkey, true, snapshot, 2, keys.as_mut_ptr());
        let tuple = pg_sys::systable_getnext(scan);
        let mut found = OrderProbe::default();
        // The row with its new version, when the version must move.
        let mut rewritten: Option<pg_sys::HeapTuple> = None;
        let mut by_executor = None;
        if !tuple.is_null() {
            // One pass over the row for the four columns read: fetching them one by one walked
            // it from its start for each (they follow the variable-length order key).
            let columns = StateColumns::read(tuple, desc, &layout);
            if columns.job_id.is_some() {
                if let Some(status) = columns.sync_status {
                    // Compared in place: copying the text out cost more than the comparison.
                    found.waiting = match crate::tuple::varlena_bytes(status) {
                        b"PENDING_SYNC" => Some("PENDING_SYNC"),
                        b"CONFLICT" => Some("CONFLICT"),
                        _ => None,
                    };
                }
            }
            found.odoo_locked = columns.odoo_locked.is_some_and(|v| v.value() != 0);
            let stored = columns.version.map_or(0, |v| v.value() as i64);
            match bump_to {
                Some(version) if found.waiting.is_some() && version > stored => {
                    if layout.plain_write {
                        let mut column = i32::from(layout.version);
                        let mut value = Datum::from(version);
                        let mut null = false;
                        rewritten = Some(pg_sys::heap_modify_tuple_by_cols(
                            tuple,
                            desc,
                            1,
                            &mut column,
                            &mut value,
                            &mut null,
                        ));
                    } else {
                        by_executor = Some(version);
                    }
                }
                _ => {}
            }
        }
        pg_sys::systable_endscan(scan);
        pg_sys::UnregisterSnapshot(snapshot);
        let outcome = match (rewritten, by_executor) {
            (Some(row), _) => {
                if write_row(rel, row)? {
                    Probed::Done(found)
                } else {
                    Probed::Moved
                }
            }
            (None, Some(version)) => Probed::ByExecutor(found, version),
            (None, None) => Probed::Done(found),
        };
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        Ok(outcome)
    }
}

/// The columns of a state row the probe reads (None for NULL).
struct StateColumns {
    sync_status: Option<Datum>,
    job_id: Option<Datum>,
    version: Option<Datum>,
    odoo_locked: Option<Datum>,
}

impl StateColumns {
    /// Reads them from `tuple`, a row of the relation `desc` and `layout` describe.
    ///
    /// # Safety
    /// `tuple` must be valid and described by `desc`; the datums point into it.
    unsafe fn read(
        tuple: pg_sys::HeapTuple,
        desc: pg_sys::TupleDesc,
        layout: &OrderStateLayout,
    ) -> Self {
        let pick = |get: &dyn Fn(i16) -> Option<Datum>| StateColumns {
            sync_status: get(layout.sync_status),
            job_id: get(layout.job_id),
            version: get(layout.version),
            odoo_locked: layout.odoo_locked.and_then(get),
        };
        // SAFETY: per the contract.
        match unsafe { crate::tuple::Deformed::of(tuple, desc) } {
            Some(row) => pick(&|attnum| row.get(attnum.into())),
            None => pick(&|attnum| {
                let mut isnull = false;
                // SAFETY: per the contract; attnum is a column of `desc`.
                let value =
                    unsafe { pg_sys::heap_getattr(tuple, attnum.into(), desc, &mut isnull) };
                (!isnull).then_some(value)
            }),
        }
    }
}

/// Writes `row` (a modified copy of a state row, which carries its address) over the row
/// version it was read from. False when another transaction updated or deleted that version
/// first (after waiting for it to end): the caller reads the row again.
///
/// # Safety
/// `rel` is order_state, open with RowExclusiveLock; `row` was made from one of its tuples.
unsafe fn write_row(rel: pg_sys::Relation, row: pg_sys::HeapTuple) -> Result<bool> {
    // SAFETY: as the executor's UPDATE does it (heapam_tuple_update, ExecUpdate): the old
    // address is copied out first, as heap_update sets the new row's own.
    unsafe {
        let mut old = (*row).t_self;
        let mut failure: pg_sys::TM_FailureData = std::mem::zeroed();
        let mut lock_mode: pg_sys::LockTupleMode::Type = 0;
        let result = pg_sys::heap_update(
            rel,
            &mut old,
            row,
            pg_sys::GetCurrentCommandId(true),
            std::ptr::null_mut(),
            true,
            &mut failure,
            &mut lock_mode,
        );
        match result {
            pg_sys::TM_Result::TM_Ok => {}
            pg_sys::TM_Result::TM_Updated | pg_sys::TM_Result::TM_Deleted => return Ok(false),
            other => {
                return Err(SyncError::BadTrigger {
                    table: "odoo_sync.order_state".into(),
                    detail: format!("writing an order's version failed (TM_Result {other})"),
                })
            }
        }
        // A row version that did not fit on its page is in none of the indexes yet.
        if (*(*row).t_data).t_infomask2 as u32 & pg_sys::HEAP_ONLY_TUPLE == 0 {
            insert_index_entries(rel, row);
        }
        Ok(true)
    }
}

/// Inserts the index entries of the new row version `row` of `rel` into every index, with the
/// executor's own routine (partial indexes, uniqueness), as an UPDATE that is not HOT does.
///
/// # Safety
/// `rel` is open with RowExclusiveLock; `row` was just written to it.
unsafe fn insert_index_entries(rel: pg_sys::Relation, row: pg_sys::HeapTuple) {
    // SAFETY: a private executor state for this one call, freed at its end; the result
    // relation has no range table entry (index 0), which the index code does not need.
    unsafe {
        let estate = pg_sys::CreateExecutorState();
        let info = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
            .cast::<pg_sys::ResultRelInfo>();
        (*info).type_ = pg_sys::NodeTag::T_ResultRelInfo;
        pg_sys::InitResultRelInfo(info, rel, 0, std::ptr::null_mut(), 0);
        pg_sys::ExecOpenIndices(info, false);
        let slot = pg_sys::MakeSingleTupleTableSlot((*rel).rd_att, &pg_sys::TTSOpsHeapTuple);
        pg_sys::ExecStoreHeapTuple(row, slot, false);
        pg_sys::ExecInsertIndexTuples(
            info,
            slot,
            estate,
            false,
            false,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::ExecCloseIndices(info);
        pg_sys::FreeExecutorState(estate);
    }
}

/// Writes the version with an UPDATE, for a state table a DBA extended (see `plain_write`).
/// The UPDATE sees the row as the transaction's snapshot does: under REPEATABLE READ, a row
/// the lookup found but the snapshot cannot see is a serialization failure, not a version left
/// unwritten.
fn write_version_with_sql(tracking_id: i32, order_key: &str, version: i64) -> Result<()> {
    let written = pgrx::spi::Spi::connect_mut(|client| {
        let updated = client.update(
            "UPDATE odoo_sync.order_state SET version = GREATEST(version, $3)
             WHERE tracking_id OPERATOR(pg_catalog.=) $1 AND order_key OPERATOR(pg_catalog.=) $2",
            None,
            &[tracking_id.into(), order_key.into(), version.into()],
        )?;
        Ok::<_, SyncError>(updated.len())
    })?;
    if written == 0 {
        return Err(SyncError::StateChanged {
            order_key: order_key.to_string(),
        });
    }
    Ok(())
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
