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

/// The OIDs of an OID list (a `T_OidList`: each cell's `oid_value`).
///
/// # Safety
/// `list` is NULL or a valid OID list.
pub unsafe fn oid_list(list: *mut pg_sys::List) -> Vec<pg_sys::Oid> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: per the caller; `elements` holds `length` cells, each an OID.
    unsafe {
        let cells = std::slice::from_raw_parts((*list).elements, (*list).length as usize);
        cells.iter().map(|cell| cell.oid_value).collect()
    }
}

/// The integers of an integer list (a `T_IntList`: each cell's
/// `int_value`).
///
/// # Safety
/// `list` is NULL or a valid integer list.
pub unsafe fn int_list(list: *mut pg_sys::List) -> Vec<i32> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: per the caller; `elements` holds `length` cells, each an int.
    unsafe {
        let cells = std::slice::from_raw_parts((*list).elements, (*list).length as usize);
        cells.iter().map(|cell| cell.int_value).collect()
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

/// The Postgres type of an expression: (type, typmod, collation), a
/// domain as its base type (whose operators, order and equality its
/// values have).
///
/// # Safety
/// `node` is a valid expression node.
pub unsafe fn expr_type(node: *mut Node) -> (pg_sys::Oid, i32, pg_sys::Oid) {
    // SAFETY: per the caller.
    unsafe {
        let (typid, typmod) = crate::types::base_type(pg_sys::exprType(node), pg_sys::exprTypmod(node));
        (typid, typmod, pg_sys::exprCollation(node))
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
    // SAFETY: a Const's value is a valid datum of its type (or NULL).
    unsafe { value(c.consttype, c.consttypmod, c.constvalue, c.constisnull) }
}

/// The elements of a constant array, as [`constant`] reads each.
///
/// # Safety
/// `c` is a valid, non-null Const of an array type.
pub unsafe fn array_elements(c: *mut pg_sys::Const) -> Result<Vec<ScalarValue>, String> {
    // SAFETY: per the caller.
    let c = unsafe { &*c };
    // SAFETY: a catalog lookup.
    let element = unsafe { pg_sys::get_element_type(c.consttype) };
    if c.constisnull || element == pg_sys::InvalidOid {
        return Err("an array constant that is NULL or not an array".into());
    }
    let (mut len, mut byval, mut align) = (0i16, false, 0 as std::ffi::c_char);
    let (mut datums, mut nulls, mut count) = (std::ptr::null_mut(), std::ptr::null_mut(), 0);
    // SAFETY: an array datum of `element`s (detoasted by DatumGetArrayTypeP's
    // equivalent, pg_detoast_datum); deconstruct_array pallocs the outputs.
    unsafe {
        pg_sys::get_typlenbyvalalign(element, &mut len, &mut byval, &mut align);
        let array = pg_sys::pg_detoast_datum(c.constvalue.cast_mut_ptr()).cast::<pg_sys::ArrayType>();
        pg_sys::deconstruct_array(
            array,
            element,
            len.into(),
            byval,
            align,
            &mut datums,
            &mut nulls,
            &mut count,
        );
        (0..count as usize)
            .map(|i| value(element, -1, *datums.add(i), *nulls.add(i)))
            .collect()
    }
}

/// A datum of `typid(typmod)` as a DataFusion value.
///
/// # Safety
/// `datum` is a valid value of the type, unless `null`.
pub unsafe fn value(typid: pg_sys::Oid, typmod: i32, datum: pg_sys::Datum, null: bool) -> Result<ScalarValue, String> {
    if typid == pg_sys::UNKNOWNOID {
        // A literal Postgres left untyped (an argument of "any", as
        // concat's): its text, a C string.
        if null {
            return Ok(ScalarValue::Utf8(None));
        }
        // SAFETY: per the caller, an unknown's datum is a C string.
        let text = unsafe { std::ffi::CStr::from_ptr(datum.cast_mut_ptr::<std::ffi::c_char>()) };
        return text
            .to_str()
            .map(|t| ScalarValue::Utf8(Some(t.to_owned())))
            .map_err(|_| "a literal that is not UTF-8".into());
    }
    let ty = match PgType::of(typid, typmod)? {
        // A numeric constant without a typmod reads at its own scale, as
        // a Decimal128 (as a column of values of one scale would), where
        // one holds it; a NULL has no scale to keep (a CASE without ELSE
        // has one).
        image @ PgType::Image(_) if typid == pg_sys::NUMERICOID => match null {
            false => numeric_literal_type(datum).unwrap_or(image),
            true => PgType::Numeric { precision: 1, scale: 0 },
        },
        ty => ty,
    };
    let mut reader = ColumnReader::new(ty, 1);
    // SAFETY: per the caller.
    unsafe { reader.push(datum, null) }.map_err(|e| e.to_string())?;
    let array = reader.finish().map_err(|e| e.to_string())?;
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
