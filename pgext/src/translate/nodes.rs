//! Reading Postgres parse nodes: lists, tags, casts, constants.
//!
//! Every function here takes pointers into a Query tree that the caller
//! holds alive (a copy the planner made), on the backend thread.

use datafusion::common::ScalarValue;
use pgrx::pg_sys::{self, Node, NodeTag};

use crate::types::{ColumnReader, PgType};

/// The pointers of a Postgres `List` of nodes (empty for NIL).
///
/// # Safety
/// `list` is NIL or a valid pointer list.
pub unsafe fn list<T>(list: *mut pg_sys::List) -> Vec<*mut T> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: per the caller; `elements` holds `length` cells.
    unsafe {
        let cells = std::slice::from_raw_parts((*list).elements, (*list).length as usize);
        cells.iter().map(|cell| cell.ptr_value.cast::<T>()).collect()
    }
}

/// A node's tag.
///
/// # Safety
/// `node` is a valid node.
pub unsafe fn tag(node: *mut Node) -> NodeTag {
    // SAFETY: per the caller; every node starts with its tag.
    unsafe { (*node).type_ }
}

/// `node` as a `T` when its tag is `wanted`.
///
/// # Safety
/// `node` is a valid node and `T` the struct of tag `wanted`.
pub unsafe fn cast<T>(node: *mut Node, wanted: NodeTag) -> Option<*mut T> {
    // SAFETY: per the caller.
    (!node.is_null() && unsafe { tag(node) } == wanted).then(|| node.cast::<T>())
}

/// A C string as Rust text (lossy; identifiers in a UTF8 database are
/// valid).
///
/// # Safety
/// `s` is NULL or a NUL-terminated string.
pub unsafe fn text(s: *const std::ffi::c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    // SAFETY: per the caller.
    unsafe { std::ffi::CStr::from_ptr(s).to_string_lossy().into_owned() }
}

/// The Postgres type of an expression: (type, typmod, collation).
///
/// # Safety
/// `node` is a valid expression node.
pub unsafe fn expr_type(node: *mut Node) -> (pg_sys::Oid, i32, pg_sys::Oid) {
    // SAFETY: per the caller.
    unsafe {
        (
            pg_sys::exprType(node),
            pg_sys::exprTypmod(node),
            pg_sys::exprCollation(node),
        )
    }
}

/// A Const as a DataFusion value of the type a column of its type reads
/// as, exactly as a scan would read it.
///
/// # Safety
/// `c` is a valid Const.
pub unsafe fn constant(c: *mut pg_sys::Const) -> Result<ScalarValue, String> {
    // SAFETY: per the caller.
    let c = unsafe { &*c };
    let ty = PgType::of(c.consttype, c.consttypmod).or_else(|e| match c.consttype {
        // A numeric literal has no typmod; read it at its own scale.
        pg_sys::NUMERICOID if !c.constisnull => numeric_literal_type(c.constvalue),
        _ => Err(e),
    })?;
    let mut reader = ColumnReader::new(ty, 1);
    // SAFETY: a Const's value is a valid datum of its type (or NULL).
    unsafe { reader.push(c.constvalue, c.constisnull)? };
    let array = reader.finish()?;
    ScalarValue::try_from_array(&array, 0).map_err(|e| e.to_string())
}

/// The Decimal128 type holding a numeric literal exactly: its display
/// scale, and enough precision; an error for NaN, infinities and values
/// Decimal128 cannot hold.
fn numeric_literal_type(datum: pg_sys::Datum) -> Result<PgType, String> {
    // SAFETY: a numeric datum, which numeric_out only reads.
    let text = unsafe {
        self::text(pg_sys::OidOutputFunctionCall(
            pg_sys::Oid::from(pg_sys::F_NUMERIC_OUT),
            datum,
        ))
    };
    // numeric_out writes exactly the value's display scale of decimals.
    let scale = text.split_once('.').map_or(0, |(_, decimals)| decimals.len());
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    if text.contains(['N', 'I', 'e']) || digits > 38 || scale > 38 {
        return Err(format!("the numeric constant {text} has no exact Decimal128 value"));
    }
    Ok(PgType::Numeric {
        precision: 38,
        scale: scale as i8,
    })
}
