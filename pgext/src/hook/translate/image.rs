//! What DataFusion may do with values weft carries as their images
//! ([`crate::types::Image`]): enums, jsonb, arrays, inet and every other
//! type without an Arrow counterpart.
//!
//! DataFusion compares, hashes and sorts Binary values by their bytes.
//! Equal bytes are equal values for every type, but equal values have
//! equal bytes only where the type's btree opclass says so (its
//! `equalimage` support function, which Postgres asks before
//! deduplicating a btree index): enums, inet, macaddr, money do; jsonb,
//! arrays, numeric do not (`'1.0'::jsonb = '1'::jsonb`). So equality,
//! grouping and joins on images are DataFusion's only for the first kind;
//! their order is never the bytes' (Postgres's comparison numbers them,
//! [`crate::plan::collate::order`]).

use datafusion::logical_expr::Operator;
use pgrx::pg_sys::{self, Oid};

use crate::types::PgType;

/// btree support function numbers (`nbtree.h`).
const BTORDER_PROC: i16 = 1;
const BTEQUALIMAGE_PROC: i16 = 4;
/// btree's equality strategy (`stratnum.h`).
const BT_EQUAL_STRATEGY: i32 = 3;

/// Whether `typid` is carried as images.
///
/// # Safety
/// On the backend thread.
pub(super) unsafe fn is_image(typid: Oid) -> bool {
    matches!(PgType::of(typid, -1), Ok(PgType::Image(_)))
}

/// The default btree opclass of `typid`: (opfamily, its input type).
///
/// # Safety
/// On the backend thread.
unsafe fn btree_opclass(typid: Oid) -> Option<(Oid, Oid)> {
    // SAFETY: per the caller; catalog lookups of an existing type.
    unsafe {
        let opclass = pg_sys::GetDefaultOpClass(typid, pg_sys::BTREE_AM_OID);
        if opclass == Oid::INVALID {
            return None;
        }
        Some((
            pg_sys::get_opclass_family(opclass),
            pg_sys::get_opclass_input_type(opclass),
        ))
    }
}

/// Whether equal values of `typid` (a type carried as images) under
/// `collation` always have equal images, so that DataFusion may compare,
/// group and hash them by their bytes.
///
/// # Safety
/// On the backend thread.
pub(super) unsafe fn equal_images(typid: Oid, collation: Oid) -> bool {
    // SAFETY: per the caller; the support function takes the opclass's
    // input type and only answers a boolean.
    unsafe {
        let Some((opfamily, input)) = btree_opclass(typid) else {
            return false;
        };
        let proc = pg_sys::get_opfamily_proc(opfamily, input, input, BTEQUALIMAGE_PROC);
        proc != Oid::INVALID && pg_sys::OidFunctionCall1Coll(proc, collation, pg_sys::Datum::from(input)).value() != 0
    }
}

/// `=` or `<>` (opno) between two values of one image type whose equal
/// values have equal images, as DataFusion's operator on the bytes.
///
/// # Safety
/// On the backend thread.
pub(super) unsafe fn byte_comparison(opno: Oid, left: Oid, right: Oid, collation: Oid) -> Option<Operator> {
    // SAFETY: per the caller.
    unsafe {
        if left != right || !is_image(left) || !equal_images(left, collation) {
            return None;
        }
        let (opfamily, _) = btree_opclass(left)?;
        if pg_sys::get_op_opfamily_strategy(opno, opfamily) == BT_EQUAL_STRATEGY {
            return Some(Operator::Eq);
        }
        let negator = pg_sys::get_negator(opno);
        (negator != Oid::INVALID && pg_sys::get_op_opfamily_strategy(negator, opfamily) == BT_EQUAL_STRATEGY)
            .then_some(Operator::NotEq)
    }
}

/// The btree comparison function behind ordering operator `sortop` (its
/// opfamily's support function 1 for the operator's input type).
///
/// # Safety
/// On the backend thread.
pub(super) unsafe fn comparison_function(sortop: Oid) -> Option<Oid> {
    // SAFETY: per the caller; catalog lookups.
    unsafe {
        let (mut opfamily, mut input, mut strategy) = (Oid::INVALID, Oid::INVALID, 0);
        if !pg_sys::get_ordering_op_properties(sortop, &mut opfamily, &mut input, &mut strategy) {
            return None;
        }
        let proc = pg_sys::get_opfamily_proc(opfamily, input, input, BTORDER_PROC);
        (proc != Oid::INVALID).then_some(proc)
    }
}
