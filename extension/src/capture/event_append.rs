//! Appending a change event to `odoo_sync.event_log` without the executor.
//!
//! The capture trigger appends one event on every write to a tracked table. Run as an SQL
//! INSERT, starting and stopping the executor for that one row cost more than the insert
//! itself: profiling showed ExecutorStart, plan revalidation and ExecutorEnd taking most of the
//! trigger's time, and made tracking slower than a naive PL/pgSQL trigger. So this does for
//! odoo_sync's own table what the executor would do: fill the columns' values, insert the heap
//! tuple and insert into every index. PostgreSQL writes its catalogs the same way
//! (`CatalogTupleInsert`), as do extensions such as TimescaleDB for their own tables.
//!
//! It covers the table as odoo_sync created it, and nothing the executor would have to run.
//! When a DBA has added a trigger, a CHECK constraint, row-level security, an expression,
//! partial or exclusion index, or a column this code does not know, `append` returns None and
//! the caller inserts through SQL instead, so the additions keep working.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::rc::Rc;

use pgrx::pg_sys::{self, Datum, Oid};

use super::{catalog_cache, own_relation};
use crate::error::Result;

/// One event to append.
pub struct Event<'a> {
    /// Row of odoo_sync.tracked_tables.
    pub tracking_id: i32,
    /// The order's key as text.
    pub entity_id: &'a str,
    /// ORDER_CREATED, ORDER_UPDATED, ...
    pub event_type: &'a str,
    /// The payload, as JSON text.
    pub payload: &'a str,
    /// True when the payload is the one the `events` view implies from the event type (an
    /// order's insert or update): it is left out (NULL) where the column allows it, else its
    /// jsonb form is remembered.
    pub implied_payload: bool,
}

/// How each column of event_log is filled, read once from the catalog (see catalog_cache).
pub struct EventLogLayout {
    relid: Oid,
    sequence: Oid,
    /// Per attribute, None for a dropped column. None as a whole when the table has a column
    /// this code does not know, or one of another type than odoo_sync gave it.
    columns: Option<Vec<Option<EventColumn>>>,
    /// False when a DBA made the payload NOT NULL: implied payloads are then written too.
    payload_nullable: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum EventColumn {
    Id,
    OccurredAt,
    EventType,
    TrackingId,
    EntityId,
    Actor,
    Payload,
}

impl EventLogLayout {
    /// True when a change of relation `relid` may change this layout.
    pub fn depends_on(&self, relid: Oid) -> bool {
        relid == self.relid || relid == self.sequence
    }

    /// Reads the layout of the open relation `rel`.
    unsafe fn read(rel: pg_sys::Relation) -> Self {
        // SAFETY: `rel` is open; its descriptor lives as long as it stays open.
        unsafe {
            let relid = (*rel).rd_id;
            let desc = (*rel).rd_att;
            let mut sequence = pg_sys::InvalidOid;
            let mut payload_nullable = false;
            let mut columns = Vec::with_capacity((*desc).natts as usize);
            for i in 0..(*desc).natts as usize {
                let attr = &*(*desc).attrs.as_ptr().add(i);
                if attr.attisdropped {
                    columns.push(None);
                    continue;
                }
                let (column, expected) = match pg_sys::name_data_to_str(&attr.attname) {
                    "id" => (EventColumn::Id, pg_sys::INT8OID),
                    "occurred_at" => (EventColumn::OccurredAt, pg_sys::TIMESTAMPTZOID),
                    "event_type" => (EventColumn::EventType, pg_sys::TEXTOID),
                    "tracking_id" => (EventColumn::TrackingId, pg_sys::INT4OID),
                    "entity_id" => (EventColumn::EntityId, pg_sys::TEXTOID),
                    "actor" => (EventColumn::Actor, pg_sys::TEXTOID),
                    "payload" => (EventColumn::Payload, pg_sys::JSONBOID),
                    _ => {
                        return EventLogLayout {
                            relid,
                            sequence,
                            columns: None,
                            payload_nullable: false,
                        }
                    }
                };
                // occurred_at and actor are filled with what their defaults compute; a DBA's
                // other default is left to the executor.
                let default_kept = match column {
                    EventColumn::OccurredAt => default_is(rel, i + 1, |node| {
                        (*node).type_ == pg_sys::NodeTag::T_FuncExpr
                            && (*node.cast::<pg_sys::FuncExpr>()).funcid
                                == pg_sys::Oid::from(pg_sys::F_NOW)
                    }),
                    // session_user is a name; the column's default casts it to text.
                    EventColumn::Actor => default_is(rel, i + 1, |node| {
                        let node = pg_sys::strip_implicit_coercions(node);
                        (*node).type_ == pg_sys::NodeTag::T_SQLValueFunction
                            && (*node.cast::<pg_sys::SQLValueFunction>()).op
                                == pg_sys::SQLValueFunctionOp::SVFOP_SESSION_USER
                    }),
                    _ => true,
                };
                if attr.atttypid != expected || !default_kept {
                    return EventLogLayout {
                        relid,
                        sequence,
                        columns: None,
                        payload_nullable: false,
                    };
                }
                if column == EventColumn::Id {
                    sequence = pg_sys::getIdentitySequence(relid, (i + 1) as i16, true);
                }
                if column == EventColumn::Payload {
                    payload_nullable = !attr.attnotnull;
                }
                columns.push(Some(column));
            }
            let complete = sequence != pg_sys::InvalidOid;
            EventLogLayout {
                relid,
                sequence,
                columns: complete.then_some(columns),
                payload_nullable,
            }
        }
    }
}

/// Appends `event` and returns its id, or None when the table needs the executor (see the
/// module documentation). Must run as the extension owner (nextval checks privileges).
pub fn append(event: &Event<'_>) -> Result<Option<i64>> {
    if [event.event_type, event.entity_id, event.payload]
        .iter()
        .any(|s| s.as_bytes().contains(&0))
    {
        // NUL bytes cannot be stored in text; let the SQL path report it the usual way.
        return Ok(None);
    }
    let Some(relid) = catalog_cache::event_log()
        .map(|l| l.relid)
        .or_else(|| own_relation(c"event_log"))
    else {
        return Ok(None);
    };
    // The second pass reads the layout again: the table changed since it was remembered.
    for fresh in [false, true] {
        let layout = match catalog_cache::event_log().filter(|l| l.relid == relid && !fresh) {
            Some(layout) => layout,
            // SAFETY: inside the trigger's transaction.
            None => unsafe { read_layout(relid) },
        };
        let Some(columns) = layout.columns.as_deref() else {
            return Ok(None);
        };
        // Made before the guard below: it may parse the JSON and remember its jsonb form.
        let payload = match event.implied_payload && layout.payload_nullable {
            true => None,
            // SAFETY: inside the trigger's transaction.
            false => Some(unsafe { payload_datum(event.payload, event.implied_payload)? }),
        };
        // SAFETY: `insert_event` keeps to plain values and raw pointers (see
        // crate::unguarded); `layout` and `columns` are borrowed from this frame.
        let inserted = unsafe {
            pg_sys::ffi::pg_guard_ffi_boundary(|| insert_event(&layout, columns, event, payload))
        };
        match inserted {
            Inserted::Id(id) => return Ok(Some(id)),
            Inserted::NeedsExecutor => return Ok(None),
            Inserted::LayoutChanged => continue,
        }
    }
    Ok(None)
}

/// Reads and remembers the layout of event_log (`relid`).
///
/// # Safety
/// Must run inside a transaction.
unsafe fn read_layout(relid: Oid) -> Rc<EventLogLayout> {
    // SAFETY: the relation is opened with the lock the insert takes anyway, and kept locked.
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as i32);
        let layout = Rc::new(EventLogLayout::read(rel));
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        catalog_cache::remember_event_log(layout.clone());
        layout
    }
}

/// What `insert_event` did: plain values, as it runs inside the guard.
enum Inserted {
    /// The event was appended with this id.
    Id(i64),
    /// Nothing was written: the table needs the executor (see the module documentation).
    NeedsExecutor,
    /// Nothing was written: the table changed since `layout` was read.
    LayoutChanged,
}

/// Inserts the event's row and its index entries, with unguarded calls only (the caller holds
/// the guard; see crate::unguarded): one guard instead of one per call.
///
/// # Safety
/// Must run inside `pg_guard_ffi_boundary`, inside a transaction, as the extension owner;
/// `layout` describes event_log and `columns` are its columns.
unsafe fn insert_event(
    layout: &EventLogLayout,
    columns: &[Option<EventColumn>],
    event: &Event<'_>,
    payload: Option<Datum>,
) -> Inserted {
    use crate::unguarded as pg;
    // SAFETY: the relation is opened and locked as the executor would; every pointer read
    // below belongs to it or to the index relations opened from its index list, and all of
    // them stay open until the end of this function.
    unsafe {
        let rel = pg::table_open(layout.relid, pg_sys::RowExclusiveLock as i32);
        // Opening the table processed the invalidations announced since `layout` was read.
        if !catalog_cache::is_event_log(layout) || (*(*rel).rd_att).natts as usize != columns.len()
        {
            pg::table_close(rel, pg_sys::NoLock as i32);
            return Inserted::LayoutChanged;
        }
        let mut indexes = [OpenIndex::NONE; MAX_INDEXES];
        let open = match columns.len() <= INLINE_COLUMNS && executor_free(rel) {
            true => open_indexes(rel, &mut indexes),
            false => None,
        };
        let Some(open) = open else {
            pg::table_close(rel, pg_sys::NoLock as i32);
            return Inserted::NeedsExecutor;
        };
        let indexes = &indexes[..open];
        // On the stack: a heap allocation per event showed in the profile.
        let mut datums = [Datum::from(0usize); INLINE_COLUMNS];
        let mut nulls = [true; INLINE_COLUMNS];
        let mut id = 0;
        for (i, column) in columns.iter().enumerate() {
            let Some(column) = column else { continue };
            datums[i] = match column {
                EventColumn::Id => {
                    id = pg::nextval_internal(layout.sequence, true);
                    Datum::from(id)
                }
                EventColumn::OccurredAt => Datum::from(pg::GetCurrentTransactionStartTimestamp()),
                EventColumn::EventType => text_datum(event.event_type),
                EventColumn::TrackingId => Datum::from(event.tracking_id),
                EventColumn::EntityId => text_datum(event.entity_id),
                // session_user as text, as the column's default makes it.
                EventColumn::Actor => Datum::from(pg::cstring_to_text(pg::GetUserNameFromId(
                    pg::GetSessionUserId(),
                    false,
                ))),
                EventColumn::Payload => match payload {
                    Some(payload) => payload,
                    None => continue,
                },
            };
            nulls[i] = false;
        }
        let tuple = pg::heap_form_tuple((*rel).rd_att, datums.as_mut_ptr(), nulls.as_mut_ptr());
        pg::simple_heap_insert(rel, tuple);
        for index in indexes {
            index.insert(rel, tuple, &datums, &nulls);
        }
        for index in indexes {
            pg::index_close(index.rel, pg_sys::NoLock as i32);
        }
        pg::table_close(rel, pg_sys::NoLock as i32);
        Inserted::Id(id)
    }
}

/// True when column `attnum` of `rel` has a default and `is_expected` accepts its expression.
unsafe fn default_is(
    rel: pg_sys::Relation,
    attnum: usize,
    is_expected: impl Fn(*mut pg_sys::Node) -> bool,
) -> bool {
    // SAFETY: `rel` is open; its defaults are node strings PostgreSQL wrote itself.
    unsafe {
        let constr = (*(*rel).rd_att).constr;
        if constr.is_null() || (*constr).defval.is_null() {
            return false;
        }
        (0..(*constr).num_defval as usize).any(|i| {
            let default = &*(*constr).defval.add(i);
            default.adnum as usize == attnum
                && is_expected(pg_sys::stringToNode(default.adbin).cast::<pg_sys::Node>())
        })
    }
}

/// True when inserting into `rel` runs nothing but the insert: a plain heap table (see
/// `super::plain_heap_table`) without CHECK constraints or row-level security.
unsafe fn executor_free(rel: pg_sys::Relation) -> bool {
    // SAFETY: `rel` is open.
    unsafe {
        let constr = (*(*rel).rd_att).constr;
        super::plain_heap_table(rel)
            && !(*(*rel).rd_rel).relrowsecurity
            && (constr.is_null() || (*constr).num_check == 0)
    }
}

/// Columns of event_log whose values `append` builds on the stack (it has 7; one a DBA widened
/// past this, dropped columns included, takes the SQL path).
const INLINE_COLUMNS: usize = 16;

/// At most this many implied payloads have their jsonb form remembered (there are two today).
const REMEMBERED_PAYLOADS: usize = 8;

thread_local! {
    /// jsonb forms of the implied payloads that every change repeats
    /// (`{"op":"UPDATE","table":"orders"}`, ...), for a log whose payload a DBA made NOT NULL:
    /// parsing them again cost more than the heap insert of the event.
    static PAYLOADS: RefCell<HashMap<Vec<u8>, Vec<u8>>> = RefCell::new(HashMap::new());
}

/// The payload as a palloc'd jsonb datum; an implied one's jsonb form is remembered.
unsafe fn payload_datum(payload: &str, implied: bool) -> Result<Datum> {
    let text = payload.as_bytes();
    // SAFETY: the remembered bytes are a whole jsonb varlena made by jsonb_in in this backend;
    // the copy is palloc'd in the current context like jsonb_in's own result.
    let remembered = PAYLOADS.with(|p| {
        p.borrow().get(text).map(|bytes| unsafe {
            let copy = pg_sys::palloc(bytes.len()).cast::<u8>();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), copy, bytes.len());
            Datum::from(copy)
        })
    });
    if let Some(datum) = remembered {
        return Ok(datum);
    }
    // `append` checked there is no NUL byte.
    let payload = CString::new(payload).map_err(|_| crate::error::SyncError::BadTrigger {
        table: "odoo_sync.event_log".into(),
        detail: "an event payload with a NUL byte".into(),
    })?;
    // SAFETY: jsonb_in takes a NUL-terminated string and returns a plain (not toasted) varlena.
    unsafe {
        let datum = builtin(pg_sys::F_JSONB_IN, Datum::from(payload.as_ptr()));
        if implied {
            let ptr = datum.cast_mut_ptr::<u8>();
            let bytes = std::slice::from_raw_parts(ptr, pgrx::varlena::varsize_any(ptr.cast()));
            PAYLOADS.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < REMEMBERED_PAYLOADS {
                    p.insert(text.to_vec(), bytes.to_vec());
                }
            });
        }
        Ok(datum)
    }
}

/// Calls a built-in function of one argument (jsonb_in).
unsafe fn builtin(function: u32, arg: Datum) -> Datum {
    // SAFETY: built-in functions are looked up in PostgreSQL's own table; callers pass the
    // argument type the function takes.
    unsafe { pg_sys::OidFunctionCall1Coll(pg_sys::Oid::from(function), pg_sys::InvalidOid, arg) }
}

/// `value` as a palloc'd text (the caller checked it holds no NUL byte). Unguarded: runs
/// inside the guard of `insert_event`.
unsafe fn text_datum(value: &str) -> Datum {
    // SAFETY: copies the `len` bytes at the pointer into a palloc'd text; no terminator is read.
    Datum::from(unsafe {
        crate::unguarded::cstring_to_text_with_len(value.as_ptr().cast(), value.len() as i32)
    })
}

/// Most indexes of event_log that `append` inserts into itself; a log a DBA gave more takes
/// the SQL path.
const MAX_INDEXES: usize = 8;

/// An index of event_log, open for inserts.
#[derive(Clone, Copy)]
struct OpenIndex {
    rel: pg_sys::Relation,
    info: *mut pg_sys::IndexInfo,
}

impl OpenIndex {
    /// An unused slot.
    const NONE: OpenIndex = OpenIndex {
        rel: std::ptr::null_mut(),
        info: std::ptr::null_mut(),
    };

    /// Inserts the index entry of `tuple`, whose column values are `datums` / `nulls`.
    /// Unguarded: runs inside the guard of `insert_event`.
    unsafe fn insert(
        &self,
        heap: pg_sys::Relation,
        tuple: pg_sys::HeapTuple,
        datums: &[Datum],
        nulls: &[bool],
    ) {
        // SAFETY: `info` was built for this open index; its key columns are plain columns
        // (checked by `open_indexes`), so their values are the heap values.
        unsafe {
            let info = &*self.info;
            let mut values = [Datum::from(0usize); pg_sys::INDEX_MAX_KEYS as usize];
            let mut isnull = [false; pg_sys::INDEX_MAX_KEYS as usize];
            for k in 0..info.ii_NumIndexAttrs as usize {
                let column = info.ii_IndexAttrNumbers[k] as usize - 1;
                values[k] = datums[column];
                isnull[k] = nulls[column];
            }
            let check = if (*(*self.rel).rd_index).indisunique {
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
            } else {
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
            };
            crate::unguarded::index_insert(
                self.rel,
                values.as_mut_ptr(),
                isnull.as_mut_ptr(),
                &mut (*tuple).t_self,
                heap,
                check,
                false,
                self.info,
            );
        }
    }
}

/// Opens into `open` every index that takes inserts and returns how many; None (and nothing
/// left open) when one of them needs the executor (expressions, a predicate, exclusion or
/// deferred uniqueness) or there are more than `MAX_INDEXES`. Unguarded: runs inside the guard
/// of `insert_event`.
unsafe fn open_indexes(
    rel: pg_sys::Relation,
    open: &mut [OpenIndex; MAX_INDEXES],
) -> Option<usize> {
    use crate::unguarded as pg;
    // SAFETY: `rel` is open; the index list is a palloc'd list of index OIDs.
    unsafe {
        let list = pg::RelationGetIndexList(rel);
        let count = if list.is_null() {
            0
        } else {
            (*list).length as usize
        };
        if count > MAX_INDEXES {
            return None;
        }
        let mut kept = 0;
        for i in 0..count {
            let oid = (*(*list).elements.add(i)).oid_value;
            let index = pg::index_open(oid, pg_sys::RowExclusiveLock as i32);
            let info = pg::BuildIndexInfo(index);
            let plain = (*info).ii_Expressions.is_null()
                && (*info).ii_Predicate.is_null()
                && (*info).ii_ExclusionOps.is_null()
                && (!(*(*index).rd_index).indisunique || (*(*index).rd_index).indimmediate)
                && (0..(*info).ii_NumIndexAttrs as usize)
                    .all(|k| (*info).ii_IndexAttrNumbers[k] > 0);
            if !plain {
                pg::index_close(index, pg_sys::NoLock as i32);
                for other in &open[..kept] {
                    pg::index_close(other.rel, pg_sys::NoLock as i32);
                }
                return None;
            }
            // An index being built concurrently is not ready for inserts yet.
            match open.get_mut(kept) {
                Some(slot) if (*info).ii_ReadyForInserts => {
                    *slot = OpenIndex { rel: index, info };
                    kept += 1;
                }
                _ => pg::index_close(index, pg_sys::NoLock as i32),
            }
        }
        Some(kept)
    }
}
