//! Reading an order's sync state in the capture trigger, and moving its version: one lookup in
//! `odoo_sync.order_state`, done without a query for the same reason `event_append` avoids the
//! executor (this runs on every write to a tracked table), and without the primary key when
//! this backend knows where the row starts (`catalog_cache::state_row`): searching the index
//! compared text keys by collation at every level and cost a third of the probe. A remembered
//! address is only a hint; the row found there must be the order's, else the index is asked.
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
#[derive(Clone, Copy, PartialEq)]
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
            let tracking_id = column(c"tracking_id")?;
            // The probe searches the key's two columns as the index's first and second.
            let index = pg_sys::index_open(pkey, pg_sys::AccessShareLock as i32);
            let info = &*(*index).rd_index;
            let keys = info.indkey.values.as_slice(info.indnkeyatts as usize);
            let ours = keys == [tracking_id, order_key];
            pg_sys::index_close(index, pg_sys::NoLock as i32);
            if !ours {
                return Err(damaged(c"its primary key on (tracking_id, order_key)"));
            }
            Ok(OrderStateLayout {
                relid: (*rel).rd_id,
                pkey,
                tracking_id,
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
    let layout = match catalog_cache::order_state().filter(|l| l.relid == relid) {
        Some(layout) => layout,
        // SAFETY: per the contract.
        None => unsafe { read_layout(relid)? },
    };
    let hint = catalog_cache::state_row(tracking_id, key);
    // SAFETY: `look_and_write` keeps to plain values and raw pointers (see crate::unguarded);
    // the relation it leaves open is closed below, after the rare follow-up that needs it.
    let pass = unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            look_and_write(relid, &layout, tracking_id, key, hint, bump_to)
        })
    };
    let address = |at: pg_sys::ItemPointerData| (block_of(&at), at.ip_posid);
    if pass.root.map(address) != hint.map(address) {
        catalog_cache::remember_state_row(tracking_id, key, pass.root);
    }
    // SAFETY: `pass.rel` is order_state, open with RowExclusiveLock; `row` was written to it.
    unsafe {
        let outcome = match pass.step {
            Step::Read => Ok(Probed::Done(pass.found)),
            Step::Written { row, hot } => {
                // A row version that did not fit on its page is in none of the indexes yet.
                if !hot {
                    insert_index_entries(pass.rel, row);
                }
                Ok(Probed::Done(pass.found))
            }
            Step::Moved | Step::LayoutChanged => Ok(Probed::Moved),
            Step::ByExecutor(version) => Ok(Probed::ByExecutor(pass.found, version)),
            Step::Failed(result) => Err(SyncError::BadTrigger {
                table: "odoo_sync.order_state".into(),
                detail: format!("writing an order's version failed (TM_Result {result})"),
            }),
        };
        pg_sys::table_close(pass.rel, pg_sys::NoLock as i32);
        outcome
    }
}

/// Reads and remembers the layout of order_state (`relid`).
///
/// # Safety
/// Must run inside a transaction.
unsafe fn read_layout(relid: pg_sys::Oid) -> Result<OrderStateLayout> {
    // SAFETY: the relation is opened with the lock the probe takes anyway, and kept locked.
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as i32);
        let layout = OrderStateLayout::read(rel);
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        let layout = layout?;
        catalog_cache::remember_order_state(layout);
        Ok(layout)
    }
}

/// What `look_and_write` found and did: plain values, as it runs inside the guard.
struct Pass {
    /// order_state, left open for the caller to close.
    rel: pg_sys::Relation,
    found: OrderProbe,
    step: Step,
    /// Where the order's row starts (None: it has none).
    root: Option<pg_sys::ItemPointerData>,
}

/// The version write of a `Pass`.
enum Step {
    /// Nothing to write: the order waits for no push, or its version is already as new.
    Read,
    /// The version was written: `row` is the new row version, `hot` true when it stayed on its
    /// page (and so needs no index entries).
    Written { row: pg_sys::HeapTuple, hot: bool },
    /// Another transaction updated the row first: look again.
    Moved,
    /// The version is left to an UPDATE (see `OrderStateLayout::plain_write`).
    ByExecutor(i64),
    /// heap_update answered with this TM_Result.
    Failed(u32),
    /// Opening the table announced a change of it (an ALTER committed since the layout was
    /// read): nothing was read; the caller looks again with the layout read anew.
    LayoutChanged,
}

/// Looks the order up and writes its version when it must move, with unguarded calls only
/// (the caller holds the guard; see crate::unguarded): one guard instead of one per call.
///
/// The row is looked for first where it was found last time (`hint`, see
/// `catalog_cache::state_row`), then through the primary key: the index search compared the
/// text keys by collation and was a third of the probe's instructions.
///
/// # Safety
/// Must run inside `pg_guard_ffi_boundary`, inside a transaction; `layout` describes `relid`.
unsafe fn look_and_write(
    relid: pg_sys::Oid,
    layout: &OrderStateLayout,
    tracking_id: i32,
    key: &str,
    hint: Option<pg_sys::ItemPointerData>,
    bump_to: Option<i64>,
) -> Pass {
    use crate::unguarded as pg;
    // SAFETY: the relation is opened and locked as for an UPDATE; the snapshot is registered
    // for the lookup and released after it; the row is read (and copied, when it is to be
    // written) while its page is pinned.
    unsafe {
        let rel = pg::table_open(relid, pg_sys::RowExclusiveLock as i32);
        // Opening the table processed the invalidations announced meanwhile.
        if catalog_cache::order_state() != Some(*layout) {
            return Pass {
                rel,
                found: OrderProbe::default(),
                step: Step::LayoutChanged,
                root: hint,
            };
        }
        let desc = (*rel).rd_att;

        // Make this statement's earlier writes (another row's state) visible to the lookup.
        pg::CommandCounterIncrement();
        let snapshot = pg::RegisterSnapshot(pg::GetLatestSnapshot());
        let wanted = Wanted {
            tracking_id,
            key: key.as_bytes(),
        };
        let mut at_hint = None;
        if let Some(root) = hint {
            // The page may be gone: a VACUUM truncates the empty pages at the table's end.
            if page_exists(rel, block_of(&root)) {
                at_hint = fetch(rel, root, snapshot, &mut false)
                    .and_then(|row| row.holds(desc, layout, &wanted));
            }
        }
        let (row, root) = match at_hint {
            Some(row) => (Some(row), hint),
            None => match find_by_key(rel, layout, snapshot, &wanted) {
                Some((row, root)) => (Some(row), Some(root)),
                None => (None, None),
            },
        };
        let mut found = OrderProbe::default();
        // The row with its new version, when the version must move.
        let mut rewritten: Option<pg_sys::HeapTuple> = None;
        let mut step = Step::Read;
        if let Some(row) = row {
            let columns = &row.columns;
            if columns.job_id.is_some() {
                if let Some(status) = columns.sync_status {
                    // Compared in place: copying the text out cost more than the comparison.
                    found.waiting = match crate::tuple::varlena_bytes_unguarded(status) {
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
                        let mut tuple = row.tuple;
                        let mut column = i32::from(layout.version);
                        let mut value = Datum::from(version);
                        let mut null = false;
                        rewritten = Some(pg::heap_modify_tuple_by_cols(
                            &mut tuple,
                            desc,
                            1,
                            &mut column,
                            &mut value,
                            &mut null,
                        ));
                    } else {
                        step = Step::ByExecutor(version);
                    }
                }
                _ => {}
            }
            pg::ReleaseBuffer(row.buffer);
        }
        pg::UnregisterSnapshot(snapshot);
        if let Some(new_row) = rewritten {
            step = write_row(rel, new_row);
        }
        Pass {
            rel,
            found,
            step,
            root,
        }
    }
}

/// The order a lookup is for.
struct Wanted<'a> {
    tracking_id: i32,
    key: &'a [u8],
}

/// A state row version found visible, on its pinned page.
struct Fetched {
    buffer: pg_sys::Buffer,
    tuple: pg_sys::HeapTupleData,
    columns: StateColumns,
}

impl Fetched {
    /// Reads the columns of the row `fetch` found and keeps it if it is the state of
    /// `wanted`; else unpins its page. Unguarded (inside the guard of `look_and_write`).
    unsafe fn holds(
        mut self,
        desc: pg_sys::TupleDesc,
        layout: &OrderStateLayout,
        wanted: &Wanted<'_>,
    ) -> Option<Self> {
        // SAFETY: the tuple is on the page this holds pinned; it is described by `desc`.
        unsafe {
            self.columns = StateColumns::read(&mut self.tuple, desc, layout);
            let same = self.columns.tracking_id.map(|v| v.value() as i32)
                == Some(wanted.tracking_id)
                && self
                    .columns
                    .order_key
                    .map(|v| crate::tuple::varlena_bytes_unguarded(v))
                    == Some(wanted.key);
            if same {
                Some(self)
            } else {
                crate::unguarded::ReleaseBuffer(self.buffer);
                None
            }
        }
    }
}

/// The visible version of the row whose chain of versions starts at `root`, with its page
/// pinned, as an index scan fetches it (pruning the page first). `all_dead` is set when no
/// transaction can see any version of it any more. Unguarded (inside the guard of
/// `look_and_write`).
unsafe fn fetch(
    rel: pg_sys::Relation,
    root: pg_sys::ItemPointerData,
    snapshot: pg_sys::Snapshot,
    all_dead: &mut bool,
) -> Option<Fetched> {
    use crate::unguarded as pg;
    // SAFETY: the block exists (the caller checked, or an index entry points to it); the
    // search takes the page's content lock and follows the chain from `root` only on it.
    unsafe {
        let buffer = pg::ReadBuffer(rel, block_of(&root));
        // An index scan prunes a page as soon as it is fuller than its fillfactor, which for
        // order_state is after nearly every change, and pruning walks every row of the page.
        // This prunes when the next row version might not fit (read without a lock: a hint,
        // as PostgreSQL reads it); meanwhile the search below walks the versions left on the
        // page, which costs less.
        if pg::PageGetHeapFreeSpace(pg_sys::BufferGetPage(buffer)) < ROOM_FOR_A_VERSION {
            pg::heap_page_prune_opt(rel, buffer);
        }
        pg::LockBuffer(buffer, pg_sys::BUFFER_LOCK_SHARE as i32);
        let mut at = root;
        let mut tuple: pg_sys::HeapTupleData = std::mem::zeroed();
        let visible =
            pg::heap_hot_search_buffer(&mut at, rel, buffer, snapshot, &mut tuple, all_dead, true);
        pg::LockBuffer(buffer, pg_sys::BUFFER_LOCK_UNLOCK as i32);
        if !visible {
            pg::ReleaseBuffer(buffer);
            return None;
        }
        Some(Fetched {
            buffer,
            tuple,
            columns: StateColumns::default(),
        })
    }
}

/// Finds the order's row through the primary key: the row, and the address its index entry
/// points to. Unguarded (inside the guard of `look_and_write`).
unsafe fn find_by_key(
    rel: pg_sys::Relation,
    layout: &OrderStateLayout,
    snapshot: pg_sys::Snapshot,
    wanted: &Wanted<'_>,
) -> Option<(Fetched, pg_sys::ItemPointerData)> {
    use crate::unguarded as pg;
    // SAFETY: the index is opened and locked as an index scan would; its keys are its own two
    // columns (checked by `OrderStateLayout::read`); the scan ends before the index closes.
    unsafe {
        let index = pg::index_open(layout.pkey, pg_sys::AccessShareLock as i32);
        let mut keys: [pg_sys::ScanKeyData; 2] = std::mem::zeroed();
        pg::ScanKeyEntryInitialize(
            &mut keys[0],
            0,
            1,
            pg_sys::BTEqualStrategyNumber as u16,
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            pg_sys::regproc::from(pg_sys::F_INT4EQ),
            Datum::from(wanted.tracking_id),
        );
        pg::ScanKeyEntryInitialize(
            &mut keys[1],
            0,
            2,
            pg_sys::BTEqualStrategyNumber as u16,
            pg_sys::InvalidOid,
            // The index orders text by the column's collation; the search must use the same.
            layout.key_collation,
            pg_sys::regproc::from(pg_sys::F_TEXTEQ),
            Datum::from(pg::cstring_to_text_with_len(
                wanted.key.as_ptr().cast(),
                wanted.key.len() as i32,
            )),
        );
        let scan = pg::index_beginscan(rel, index, snapshot, 2, 0);
        pg::index_rescan(scan, keys.as_mut_ptr(), 2, std::ptr::null_mut(), 0);
        let mut found = None;
        loop {
            let entry = pg::index_getnext_tid(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if entry.is_null() {
                break;
            }
            let root = *entry;
            let mut all_dead = false;
            if let Some(row) = fetch(rel, root, snapshot, &mut all_dead) {
                found = Some((row, root));
                break;
            }
            // As index_fetch_heap does: an entry no one can see any more is marked dead.
            if !(*scan).xactStartedInRecovery {
                (*scan).kill_prior_tuple = all_dead;
            }
        }
        pg::index_endscan(scan);
        pg::index_close(index, pg_sys::NoLock as i32);
        // Checked as a hinted row is: a row of another order here means a damaged index.
        let (row, root) = found?;
        row.holds((*rel).rd_att, layout, wanted)
            .map(|row| (row, root))
    }
}

/// Free space on a state row's page below which the probe prunes the page: room for one more
/// version of any row (a larger one is moved to TOAST first), so the version write stays on the
/// page. order_state's fillfactor of 50 leaves half of each page for versions, so narrow rows
/// are pruned about once in 18 changes of their page instead of at every change.
const ROOM_FOR_A_VERSION: usize = pg_sys::BLCKSZ as usize / 4;

/// True when block `block` of `rel` is in the table's file. A page in shared buffers is: a
/// VACUUM that cuts the table's end drops its pages from shared buffers first, and cannot run
/// while this transaction holds its lock on the table. Else the file's size is asked (a system
/// call, which on this benchmark's VM cost more than the whole lookup it guards).
/// Unguarded (inside the guard of `look_and_write`).
unsafe fn page_exists(rel: pg_sys::Relation, block: pg_sys::BlockNumber) -> bool {
    use crate::unguarded as pg;
    // SAFETY: the buffer mapping table is read as PostgreSQL's PrefetchSharedBuffer reads it,
    // under the shared lock of the tag's partition.
    unsafe {
        let mut tag = pg_sys::BufferTag {
            rnode: (*rel).rd_node,
            forkNum: pg_sys::ForkNumber::MAIN_FORKNUM,
            blockNum: block,
        };
        let hash = pg::BufTableHashCode(&mut tag);
        let partition = pg_sys::BUFFER_MAPPING_LWLOCK_OFFSET + hash % pg_sys::NUM_BUFFER_PARTITIONS;
        let lock = std::ptr::addr_of_mut!((*pg_sys::MainLWLockArray.add(partition as usize)).lock);
        pg::LWLockAcquire(lock, pg_sys::LWLockMode::LW_SHARED);
        let cached = pg::BufTableLookup(&mut tag, hash) >= 0;
        pg::LWLockRelease(lock);
        cached || block < pg::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM)
    }
}

/// The block number of a row address.
fn block_of(at: &pg_sys::ItemPointerData) -> pg_sys::BlockNumber {
    (u32::from(at.ip_blkid.bi_hi) << 16) | u32::from(at.ip_blkid.bi_lo)
}

/// The columns of a state row the probe reads (None for NULL).
#[derive(Default)]
struct StateColumns {
    tracking_id: Option<Datum>,
    order_key: Option<Datum>,
    sync_status: Option<Datum>,
    job_id: Option<Datum>,
    version: Option<Datum>,
    odoo_locked: Option<Datum>,
}

impl StateColumns {
    /// Reads them from `tuple`, a row of the relation `desc` and `layout` describe, in one
    /// pass over the row: fetching them one by one walked it from its start for each (they
    /// follow the variable-length order key).
    ///
    /// # Safety
    /// `tuple` must be valid and described by `desc`; the datums point into it. Unguarded
    /// (inside the guard of `look_and_write`).
    unsafe fn read(
        tuple: pg_sys::HeapTuple,
        desc: pg_sys::TupleDesc,
        layout: &OrderStateLayout,
    ) -> Self {
        let pick = |get: &dyn Fn(i16) -> Option<Datum>| StateColumns {
            tracking_id: get(layout.tracking_id),
            order_key: get(layout.order_key),
            sync_status: get(layout.sync_status),
            job_id: get(layout.job_id),
            version: get(layout.version),
            odoo_locked: layout.odoo_locked.and_then(get),
        };
        // SAFETY: per the contract.
        match unsafe { crate::tuple::Deformed::of(tuple, desc) } {
            Some(row) => pick(&|attnum| row.get(attnum.into())),
            // SAFETY: per the contract; attnum is a column of `desc`.
            None => pick(&|attnum| unsafe { crate::tuple::column(tuple, desc, attnum.into()) }),
        }
    }
}

/// Writes `row` (a modified copy of a state row, which carries its address) over the row
/// version it was read from. `Moved` when another transaction updated or deleted that version
/// first (after waiting for it to end): the caller reads the row again.
///
/// # Safety
/// `rel` is order_state, open with RowExclusiveLock; `row` was made from one of its tuples.
/// Runs inside the guard of `look_and_write`.
unsafe fn write_row(rel: pg_sys::Relation, row: pg_sys::HeapTuple) -> Step {
    use crate::unguarded as pg;
    // SAFETY: as the executor's UPDATE does it (heapam_tuple_update, ExecUpdate): the old
    // address is copied out first, as heap_update sets the new row's own.
    unsafe {
        let mut old = (*row).t_self;
        let mut failure: pg_sys::TM_FailureData = std::mem::zeroed();
        let mut lock_mode: pg_sys::LockTupleMode::Type = 0;
        let result = pg::heap_update(
            rel,
            &mut old,
            row,
            pg::GetCurrentCommandId(true),
            std::ptr::null_mut(),
            true,
            &mut failure,
            &mut lock_mode,
        );
        match result {
            pg_sys::TM_Result::TM_Ok => Step::Written {
                row,
                hot: (*(*row).t_data).t_infomask2 as u32 & pg_sys::HEAP_ONLY_TUPLE != 0,
            },
            pg_sys::TM_Result::TM_Updated | pg_sys::TM_Result::TM_Deleted => Step::Moved,
            other => Step::Failed(other),
        }
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
