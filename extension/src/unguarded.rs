//! PostgreSQL functions the capture trigger calls on every change, declared without pgrx's
//! guard.
//!
//! pgrx wraps every call into PostgreSQL in a guard (a `sigsetjmp`, a thread check) that turns
//! an ERROR into a Rust panic. A tracked update made about 40 such calls, and perf put their
//! guards at 2.6 µs of each update (about 4 % of it). The hot paths call these declarations
//! instead, all of them inside one `pgrx::pg_sys::ffi::pg_guard_ffi_boundary`, which catches an
//! ERROR raised by any of them the same way.
//!
//! That is sound only while no Rust frame between the guard and the call owns a value with a
//! destructor (an ERROR longjmps over those frames to the guard) and nothing in between panics:
//! code that uses these keeps to plain values, raw pointers and palloc'd memory, and returns
//! what went wrong as a plain value for the caller to turn into an error after the guard.
//! Functions that raise no ERROR (`heap_deform_tuple`, `nocachegetattr`, `getmissingattr`,
//! reading and setting the current user) are also called without any guard.

use pgrx::pg_sys::{
    AttrNumber, BlockNumber, Buffer, BufferTag, CommandId, Datum, ForkNumber, HeapTuple, IndexInfo,
    IndexScanDesc, IndexUniqueCheck, ItemPointer, LWLock, LWLockMode, List, LockTupleMode, Oid,
    Page, RegProcedure, Relation, ScanDirection, ScanKey, Size, Snapshot, StrategyNumber,
    TM_FailureData, TM_Result, TimestampTz, TupleDesc, LOCKMODE,
};
use std::ffi::{c_char, c_int};

// The names and signatures are PostgreSQL's own (see pgrx_pg_sys's bindings of the same
// functions); the symbols resolve against the server binary when the library is loaded.
#[allow(non_snake_case, clippy::too_many_arguments)]
unsafe extern "C-unwind" {
    pub fn table_open(relation_id: Oid, lockmode: LOCKMODE) -> Relation;
    pub fn table_close(relation: Relation, lockmode: LOCKMODE);
    pub fn CommandCounterIncrement();
    pub fn GetLatestSnapshot() -> Snapshot;
    pub fn RegisterSnapshot(snapshot: Snapshot) -> Snapshot;
    pub fn UnregisterSnapshot(snapshot: Snapshot);
    pub fn ScanKeyEntryInitialize(
        entry: ScanKey,
        flags: c_int,
        attribute_number: AttrNumber,
        strategy: StrategyNumber,
        subtype: Oid,
        collation: Oid,
        procedure: RegProcedure,
        argument: Datum,
    );
    pub fn cstring_to_text_with_len(s: *const c_char, len: c_int) -> *mut pgrx::pg_sys::text;
    pub fn index_beginscan(
        heap_relation: Relation,
        index_relation: Relation,
        snapshot: Snapshot,
        nkeys: c_int,
        norderbys: c_int,
    ) -> IndexScanDesc;
    pub fn index_rescan(
        scan: IndexScanDesc,
        keys: ScanKey,
        nkeys: c_int,
        orderbys: ScanKey,
        norderbys: c_int,
    );
    pub fn index_getnext_tid(scan: IndexScanDesc, direction: ScanDirection::Type) -> ItemPointer;
    pub fn index_endscan(scan: IndexScanDesc);
    pub fn RelationGetNumberOfBlocksInFork(
        relation: Relation,
        fork_num: ForkNumber::Type,
    ) -> BlockNumber;
    pub fn ReadBuffer(reln: Relation, block_num: BlockNumber) -> Buffer;
    pub fn heap_page_prune_opt(relation: Relation, buffer: Buffer);
    pub fn PageGetHeapFreeSpace(page: Page) -> Size;
    pub fn BufTableHashCode(tag: *mut BufferTag) -> u32;
    pub fn BufTableLookup(tag: *mut BufferTag, hashcode: u32) -> c_int;
    pub fn LWLockAcquire(lock: *mut LWLock, mode: LWLockMode::Type) -> bool;
    pub fn LWLockRelease(lock: *mut LWLock);
    pub fn LockBuffer(buffer: Buffer, mode: c_int);
    pub fn ReleaseBuffer(buffer: Buffer);
    pub fn heap_hot_search_buffer(
        tid: ItemPointer,
        relation: Relation,
        buffer: Buffer,
        snapshot: Snapshot,
        heap_tuple: HeapTuple,
        all_dead: *mut bool,
        first_call: bool,
    ) -> bool;
    pub fn heap_modify_tuple_by_cols(
        tuple: HeapTuple,
        tuple_desc: TupleDesc,
        n_cols: c_int,
        repl_cols: *mut c_int,
        repl_values: *mut Datum,
        repl_isnull: *mut bool,
    ) -> HeapTuple;
    pub fn heap_update(
        relation: Relation,
        otid: ItemPointer,
        newtup: HeapTuple,
        cid: CommandId,
        crosscheck: Snapshot,
        wait: bool,
        tmfd: *mut TM_FailureData,
        lockmode: *mut LockTupleMode::Type,
    ) -> TM_Result::Type;
    pub fn GetCurrentCommandId(used: bool) -> CommandId;
    pub fn nocachegetattr(tup: HeapTuple, attnum: c_int, att: TupleDesc) -> Datum;
    pub fn getmissingattr(tuple_desc: TupleDesc, attnum: c_int, is_null: *mut bool) -> Datum;
    pub fn GetUserIdAndSecContext(userid: *mut Oid, sec_context: *mut c_int);
    pub fn SetUserIdAndSecContext(userid: Oid, sec_context: c_int);
    pub fn heap_deform_tuple(
        tuple: HeapTuple,
        tuple_desc: TupleDesc,
        values: *mut Datum,
        isnull: *mut bool,
    );
    pub fn pg_detoast_datum_packed(datum: *mut pgrx::pg_sys::varlena)
        -> *mut pgrx::pg_sys::varlena;
    pub fn RelationGetIndexList(relation: Relation) -> *mut List;
    pub fn index_open(relation_id: Oid, lockmode: LOCKMODE) -> Relation;
    pub fn index_close(relation: Relation, lockmode: LOCKMODE);
    pub fn BuildIndexInfo(index: Relation) -> *mut IndexInfo;
    pub fn index_insert(
        index_relation: Relation,
        values: *mut Datum,
        isnull: *mut bool,
        heap_t_ctid: ItemPointer,
        heap_relation: Relation,
        check_unique: IndexUniqueCheck::Type,
        index_unchanged: bool,
        index_info: *mut IndexInfo,
    ) -> bool;
    /// commands/sequence.h; not among pgrx's bindings. nextval() without the function call.
    pub fn nextval_internal(relid: Oid, check_permissions: bool) -> i64;
    pub fn GetCurrentTransactionStartTimestamp() -> TimestampTz;
    pub fn GetUserNameFromId(roleid: Oid, noerr: bool) -> *mut c_char;
    pub fn GetSessionUserId() -> Oid;
    pub fn cstring_to_text(s: *const c_char) -> *mut pgrx::pg_sys::text;
    pub fn heap_form_tuple(
        tuple_descriptor: TupleDesc,
        values: *mut Datum,
        isnull: *mut bool,
    ) -> HeapTuple;
    pub fn simple_heap_insert(relation: Relation, tup: HeapTuple);
}
