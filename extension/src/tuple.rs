//! Reading tracked rows without SPI: column values as text and "did this row really change?".
//! These run inside the capture trigger on every user write, so they work on the raw tuple.

use std::ffi::{CStr, CString};

use pgrx::pg_sys;
use pgrx::pg_sys::Datum;

use crate::error::{Result, SyncError};

/// Columns a row can have for `Deformed` to hold its values (on the stack).
const INLINE_COLUMNS: usize = 64;

/// A row's column values, read in one pass over the tuple and kept on the stack: fetching
/// column after column walks the tuple from its start for every column that follows a
/// variable-length one, and heap buffers per write showed in the capture trigger's profile.
pub struct Deformed {
    values: [Datum; INLINE_COLUMNS],
    nulls: [bool; INLINE_COLUMNS],
}

impl Deformed {
    /// Deforms `tuple`; None when its relation has more columns than fit (the caller then
    /// reads the columns one by one).
    ///
    /// # Safety
    /// `tuple` must be valid and described by `desc`; the values point into the tuple.
    pub unsafe fn of(tuple: pg_sys::HeapTuple, desc: pg_sys::TupleDesc) -> Option<Self> {
        // SAFETY: per the contract; the arrays hold at least natts entries.
        unsafe {
            if (*desc).natts as usize > INLINE_COLUMNS {
                return None;
            }
            let mut row = Deformed {
                values: [Datum::from(0usize); INLINE_COLUMNS],
                nulls: [true; INLINE_COLUMNS],
            };
            // Unguarded (see crate::unguarded): heap_deform_tuple raises no ERROR.
            crate::unguarded::heap_deform_tuple(
                tuple,
                desc,
                row.values.as_mut_ptr(),
                row.nulls.as_mut_ptr(),
            );
            Some(row)
        }
    }

    /// The value of column `attnum` (1-based), None for NULL.
    pub fn get(&self, attnum: i32) -> Option<Datum> {
        let i = attnum as usize - 1;
        (!self.nulls[i]).then_some(self.values[i])
    }
}

/// A row as the trigger sees it: a heap tuple and its descriptor.
#[derive(Clone, Copy)]
pub struct Row {
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
}

impl Row {
    /// Wraps a trigger tuple.
    ///
    /// # Safety
    /// `tuple` must be valid and described by `desc` for the duration of the trigger call.
    pub unsafe fn new(tuple: pg_sys::HeapTuple, desc: pg_sys::TupleDesc) -> Self {
        Row { tuple, desc }
    }

    /// The underlying heap tuple.
    pub fn heap_tuple(&self) -> pg_sys::HeapTuple {
        self.tuple
    }

    fn natts(&self) -> i32 {
        // SAFETY: desc is valid per `new`'s contract.
        unsafe { (*self.desc).natts }
    }

    fn attr(&self, index: i32) -> &pg_sys::FormData_pg_attribute {
        // SAFETY: index < natts; desc is valid per `new`'s contract.
        unsafe { &*(*self.desc).attrs.as_ptr().add(index as usize) }
    }

    /// The 1-based attribute number of a live column, if it exists.
    pub fn attnum(&self, column: &str) -> Option<i32> {
        (0..self.natts()).find_map(|i| {
            let a = self.attr(i);
            (!a.attisdropped && pg_sys::name_data_to_str(&a.attname) == column).then_some(i + 1)
        })
    }

    /// Like `attnum`, but a missing column is an error naming the table.
    pub fn require_attnum(&self, table: &str, column: &str) -> Result<i32> {
        self.attnum(column).ok_or_else(|| SyncError::MissingColumn {
            table: table.to_string(),
            column: column.to_string(),
        })
    }

    fn datum(&self, attnum: i32) -> Option<Datum> {
        // SAFETY: attnum comes from `attnum()` on this descriptor; the tuple is valid per `new`.
        unsafe { column(self.tuple, self.desc, attnum) }
    }

    /// The column's value in its text form (its type's output function), or None for NULL.
    /// Text and integer columns, which order keys and numbers nearly always are, are read
    /// directly: the output function's catalog lookup and call cost more than the rest of
    /// reading the row.
    pub fn text(&self, attnum: i32) -> Option<String> {
        let datum = self.datum(attnum)?;
        let typid = self.attr(attnum - 1).atttypid;
        // SAFETY: a non-null datum of the column's own type.
        unsafe {
            match typid {
                pg_sys::TEXTOID | pg_sys::VARCHAROID => {
                    return Some(String::from_utf8_lossy(varlena_bytes(datum)).into_owned())
                }
                pg_sys::INT8OID => return Some(datum.value().cast_signed().to_string()),
                pg_sys::INT4OID => return Some((datum.value() as i32).to_string()),
                pg_sys::UUIDOID => {
                    let bytes = std::slice::from_raw_parts(datum.cast_mut_ptr::<u8>(), 16);
                    return Some(uuid_text(bytes));
                }
                _ => {}
            }
        }
        let mut output_fn = pg_sys::InvalidOid;
        let mut is_varlena = false;
        // SAFETY: standard type output call on a non-null datum of the column's own type.
        unsafe {
            pg_sys::getTypeOutputInfo(typid, &mut output_fn, &mut is_varlena);
            let cstr = pg_sys::OidOutputFunctionCall(output_fn, datum);
            let text = CStr::from_ptr(cstr).to_string_lossy().into_owned();
            pg_sys::pfree(cstr.cast());
            Some(text)
        }
    }

    /// True when the column's text form is `value` (false for NULL), without making the text
    /// of a text column.
    pub fn text_is(&self, attnum: i32, value: &str) -> bool {
        match self.attr(attnum - 1).atttypid {
            pg_sys::TEXTOID | pg_sys::VARCHAROID => self.datum(attnum).is_some_and(|d| {
                // SAFETY: a non-null datum of a text column.
                unsafe { varlena_bytes(d) == value.as_bytes() }
            }),
            _ => self.text(attnum).as_deref() == Some(value),
        }
    }

    /// True when the two rows hold the same bytes in every column except `ignored` ones.
    /// A false "changed" only costs an unneeded push; a false "same" would lose a change, so
    /// values are compared by their stored bytes, never by a looser equality. Both rows are
    /// deformed once: fetching column after column would walk the tuple from its start for
    /// every column that follows a variable-length one.
    pub fn same_as(&self, other: &Row, ignored: &[i32]) -> bool {
        let n = self.natts();
        // SAFETY: both tuples are described by `desc` (one relation).
        let (Some(xs), Some(ys)) = (unsafe { Deformed::of(self.tuple, self.desc) }, unsafe {
            Deformed::of(other.tuple, self.desc)
        }) else {
            // A table this wide is rare: compare column by column.
            return (1..=n).all(|attnum| {
                self.attr(attnum - 1).attisdropped
                    || ignored.contains(&attnum)
                    || self.same_value(other, attnum)
            });
        };
        (1..=n).all(|attnum| {
            let a = self.attr(attnum - 1);
            a.attisdropped
                || ignored.contains(&attnum)
                || values_identical(a, xs.get(attnum), ys.get(attnum))
        })
    }

    /// True when column `attnum` holds the same bytes in both rows (same rule as `same_as`).
    pub fn same_value(&self, other: &Row, attnum: i32) -> bool {
        values_identical(
            self.attr(attnum - 1),
            self.datum(attnum),
            other.datum(attnum),
        )
    }

    /// A copy of this row with one column set from text through the column type's input
    /// function (so text, varchar and enum columns all work).
    pub fn with_text(&self, attnum: i32, value: &str) -> Result<pg_sys::HeapTuple> {
        let typid = self.attr(attnum - 1).atttypid;
        let typmod = self.attr(attnum - 1).atttypmod;
        let cvalue = CString::new(value).map_err(|_| SyncError::BadTrigger {
            table: String::new(),
            detail: "value with a NUL byte".into(),
        })?;
        let mut input_fn = pg_sys::InvalidOid;
        let mut ioparam = pg_sys::InvalidOid;
        // SAFETY: the datum is built by the column type's own input function and the tuple is
        // rebuilt by PostgreSQL from this descriptor.
        unsafe {
            pg_sys::getTypeInputInfo(typid, &mut input_fn, &mut ioparam);
            let datum =
                pg_sys::OidInputFunctionCall(input_fn, cvalue.as_ptr().cast_mut(), ioparam, typmod);
            let mut values = [datum];
            let mut nulls = [false];
            let mut cols = [attnum];
            Ok(pg_sys::heap_modify_tuple_by_cols(
                self.tuple,
                self.desc,
                1,
                cols.as_mut_ptr(),
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
            ))
        }
    }
}

/// A uuid's 16 bytes as uuid_out writes them (lower-case hex, 8-4-4-4-12).
fn uuid_text(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0x0f) as usize] as char);
    }
    out
}

/// The value of column `attnum` of `tuple` (a live column of `desc`, 1-based), None for NULL.
/// Unguarded (see crate::unguarded): nothing it calls raises an ERROR, so it also runs inside
/// the single guard of the state probe.
///
/// # Safety
/// `tuple` must be valid and described by `desc`; the value points into the tuple (or `desc`).
pub unsafe fn column(
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    attnum: i32,
) -> Option<Datum> {
    // SAFETY: per the contract.
    unsafe {
        let header = (*tuple).t_data;
        let mut isnull = false;
        if attnum > i32::from(pg_sys::HeapTupleHeaderGetNatts(header)) {
            // A column added after the row was written: its default, kept in the descriptor.
            let value = crate::unguarded::getmissingattr(desc, attnum, &mut isnull);
            return (!isnull).then_some(value);
        }
        if !pg_sys::HeapTupleNoNulls(tuple) {
            // The null bitmap has a 1 for each column with a value.
            let bits = (*header).t_bits.as_ptr();
            let index = (attnum - 1) as usize;
            if *bits.add(index / 8) & (1 << (index % 8)) == 0 {
                return None;
            }
        }
        // It walks the row to the column (or uses its cached offset), as heap_getattr does.
        Some(crate::unguarded::nocachegetattr(tuple, attnum, desc))
    }
}

/// The bytes of a text datum (detoasted if it must be).
///
/// # Safety
/// `datum` must be a non-null text or varchar value that outlives the returned slice.
pub unsafe fn varlena_bytes<'a>(datum: Datum) -> &'a [u8] {
    // SAFETY: per the contract; the guard catches an ERROR of reading a toasted value.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| varlena_bytes_unguarded(datum)) }
}

/// `varlena_bytes` without a guard, for code that runs inside one (see crate::unguarded).
///
/// # Safety
/// As `varlena_bytes`, and inside `pg_guard_ffi_boundary`.
pub unsafe fn varlena_bytes_unguarded<'a>(datum: Datum) -> &'a [u8] {
    // SAFETY: per the contract; a detoasted copy lives in the current memory context.
    unsafe {
        let text = crate::unguarded::pg_detoast_datum_packed(datum.cast_mut_ptr());
        std::slice::from_raw_parts(
            pgrx::varlena::vardata_any(text).cast::<u8>(),
            pgrx::varlena::varsize_any_exhdr(text),
        )
    }
}

/// True when two values of column `attr` (None for NULL) are both NULL or hold the same bytes.
fn values_identical(
    attr: &pg_sys::FormData_pg_attribute,
    x: Option<Datum>,
    y: Option<Datum>,
) -> bool {
    match (x, y) {
        (None, None) => true,
        // SAFETY: both datums are values of this column, taken from tuples of its descriptor.
        (Some(x), Some(y)) => unsafe { datums_identical(x, y, attr.attlen, attr.attbyval) },
        _ => false,
    }
}

/// Byte equality of two datums of one type, as PostgreSQL's datumIsEqual does it.
unsafe fn datums_identical(x: Datum, y: Datum, typlen: i16, byval: bool) -> bool {
    if byval {
        return x == y;
    }
    let (px, py) = (x.cast_mut_ptr::<u8>(), y.cast_mut_ptr::<u8>());
    let len = match typlen {
        n if n > 0 => n as usize,
        -1 => {
            // SAFETY: varlena datums; sizes read from their headers.
            let (lx, ly) = unsafe {
                (
                    pgrx::varlena::varsize_any(px.cast()),
                    pgrx::varlena::varsize_any(py.cast()),
                )
            };
            if lx != ly {
                return false;
            }
            lx
        }
        _ => {
            // SAFETY: cstring datums are NUL-terminated.
            return unsafe { CStr::from_ptr(px.cast()) == CStr::from_ptr(py.cast()) };
        }
    };
    // SAFETY: both pointers are valid for `len` bytes per the type's length.
    unsafe { std::slice::from_raw_parts(px, len) == std::slice::from_raw_parts(py, len) }
}
