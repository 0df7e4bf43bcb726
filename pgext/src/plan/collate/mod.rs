//! Values in Postgres's order where DataFusion's is not it: text under a
//! collation other than C, and types whose order is their btree opclass's
//! (floats, intervals, enums, any type carried as its image).
//!
//! Under C, Postgres orders text by its bytes, as DataFusion does. Under
//! any other collation (libc's `en_US.UTF-8`, ICU's `en-US`) the order is
//! `varstr_cmp`'s: the collation's comparison (`strcoll_l`, `ucol_strcoll`),
//! with ties between different strings broken by their bytes for a
//! deterministic collation. Sort keys (`strxfrm`) could stand in for it
//! under ICU only: Postgres does not trust glibc's to agree with its
//! `strcoll`. So weft asks Postgres, in each participant, through three
//! DataFusion functions that call `varstr_cmp` with the query's collation:
//!
//! - [`order::PgOrder`], a window function over a whole input that
//!   numbers its distinct values in Postgres's order: ORDER BY sorts by
//!   that number with DataFusion's own sort (top-k included); it orders
//!   any other type by the type's btree comparison function too;
//! - [`extreme::CollatedExtreme`], min and max;
//! - [`compare::CollatedComparison`], `<`, `<=`, `>`, `>=`.
//!
//! Equality needs none of them: under a deterministic collation equal
//! strings are equal bytes. Nondeterministic collations stay with
//! Postgres.

pub mod compare;
pub mod extreme;
pub mod order;

use std::cmp::Ordering;
use std::sync::Arc;

use datafusion::common::{exec_err, DataFusionError, Result};
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use pgrx::pg_sys::{self, Oid};

/// Postgres's order of `a` and `b` under `collation` (`varstr_cmp`).
///
/// # Safety
/// On the backend thread, inside [`crate::pgcall::call`] (the comparison
/// may raise a Postgres ERROR).
pub unsafe fn compare(collation: Oid, a: &str, b: &str) -> Ordering {
    if a == b {
        // What varstr_cmp answers too, without copying either string.
        return Ordering::Equal;
    }
    // Strings are shorter than a varlena's 1 GB limit, well within an int.
    let (len_a, len_b) = (a.len() as i32, b.len() as i32);
    // SAFETY: per the caller; both pointers are valid for their lengths,
    // which varstr_cmp reads without needing a terminator.
    let result = unsafe { pg_sys::varstr_cmp(a.as_ptr().cast(), len_a, b.as_ptr().cast(), len_b, collation) };
    result.cmp(&0)
}

/// What one of these functions is, as a shipped plan carries it.
#[derive(Clone, PartialEq, prost::Message)]
struct CollatedNode {
    /// The collation's OID.
    #[prost(uint32, tag = "1")]
    collation: u32,
    /// [`compare::CollatedComparison`]'s operator; 0 for the others.
    #[prost(uint32, tag = "2")]
    operator: u32,
    /// [`order::Comparator::Btree`]'s function, type and modifier; 0 for
    /// the others.
    #[prost(uint32, tag = "3")]
    function: u32,
    #[prost(uint32, tag = "4")]
    typid: u32,
    #[prost(int32, tag = "5")]
    typmod: i32,
}

fn encode(collation: Oid, operator: u32) -> Vec<u8> {
    use prost::Message;
    CollatedNode {
        collation: collation.to_u32(),
        operator,
        ..Default::default()
    }
    .encode_to_vec()
}

fn decode_node(name: &str, bytes: &[u8]) -> Result<CollatedNode> {
    use prost::Message;
    CollatedNode::decode(bytes).map_err(|e| DataFusionError::Internal(format!("weft: a shipped {name}: {e}")))
}

fn decode(name: &str, bytes: &[u8]) -> Result<(Oid, u32)> {
    let node = decode_node(name, bytes)?;
    Ok((Oid::from(node.collation), node.operator))
}

/// The bytes of `udf` in a shipped plan, if it is one of these.
pub fn encode_scalar(udf: &ScalarUDF) -> Option<Vec<u8>> {
    let f = udf.inner().downcast_ref::<compare::CollatedComparison>()?;
    Some(encode(f.collation(), f.operator()))
}

/// The comparison a shipped plan names `name`, if it is one.
pub fn decode_scalar(name: &str, bytes: &[u8]) -> Option<Result<Arc<ScalarUDF>>> {
    if !compare::CollatedComparison::names(name) {
        return None;
    }
    Some(decode(name, bytes).and_then(|(collation, operator)| {
        let f = compare::CollatedComparison::from_code(operator, collation)?;
        Ok(Arc::new(ScalarUDF::new_from_impl(f)))
    }))
}

/// The bytes of `udaf` in a shipped plan, if it is one of these.
pub fn encode_aggregate(udaf: &AggregateUDF) -> Option<Vec<u8>> {
    let f = udaf.inner().downcast_ref::<extreme::CollatedExtreme>()?;
    Some(encode(f.collation(), 0))
}

/// The aggregate a shipped plan names `name`, if it is one of these.
pub fn decode_aggregate(name: &str, bytes: &[u8]) -> Option<Result<Arc<AggregateUDF>>> {
    let largest = match name {
        extreme::MIN => false,
        extreme::MAX => true,
        _ => return None,
    };
    Some(decode(name, bytes).map(|(collation, _)| {
        Arc::new(AggregateUDF::new_from_impl(extreme::CollatedExtreme::new(
            collation, largest,
        )))
    }))
}

/// The bytes of `udwf` in a shipped plan, if it is one of these.
pub fn encode_window(udwf: &WindowUDF) -> Option<Vec<u8>> {
    use prost::Message;
    let f = udwf.inner().downcast_ref::<order::PgOrder>()?;
    Some(match f.comparator() {
        order::Comparator::Collation(collation) => encode(collation, 0),
        order::Comparator::Btree {
            function,
            typid,
            typmod,
            collation,
        } => CollatedNode {
            collation: collation.to_u32(),
            operator: 0,
            function: function.to_u32(),
            typid: typid.to_u32(),
            typmod,
        }
        .encode_to_vec(),
    })
}

/// The window function a shipped plan names `name`, if it is this one.
pub fn decode_window(name: &str, bytes: &[u8]) -> Option<Result<Arc<WindowUDF>>> {
    if name != order::NAME && name != order::BTREE_NAME {
        return None;
    }
    Some(decode_node(name, bytes).and_then(|node| {
        let collation = Oid::from(node.collation);
        let comparator = if name == order::NAME {
            order::Comparator::Collation(collation)
        } else {
            order::Comparator::Btree {
                function: Oid::from(node.function),
                typid: Oid::from(node.typid),
                typmod: node.typmod,
                collation,
            }
        };
        let order = order::PgOrder::new(comparator).map_err(DataFusionError::Execution)?;
        Ok(Arc::new(WindowUDF::new_from_impl(order)))
    }))
}

/// The strings of `array`, which must be Utf8 (the only form weft gives
/// text).
fn strings(array: &dyn datafusion::arrow::array::Array) -> Result<&datafusion::arrow::array::StringArray> {
    match array.as_any().downcast_ref() {
        Some(strings) => Ok(strings),
        None => exec_err!("weft: text under a collation arrived as {}", array.data_type()),
    }
}
