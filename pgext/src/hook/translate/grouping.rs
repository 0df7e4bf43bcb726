//! GROUPING SETS, ROLLUP and CUBE, and `GROUPING()`.
//!
//! Postgres expands a query's grouping sets into the list of column sets
//! it groups by (`expand_grouping_sets`: a ROLLUP of n columns is n + 1
//! sets, a CUBE 2^n, duplicates kept unless `GROUP BY DISTINCT`); weft
//! hands that very list to DataFusion's grouping-sets aggregate, which
//! makes one group per set and distinct values, a column outside the set
//! NULL in its rows, and tells the sets apart (a rolled-up NULL from a
//! NULL value, and one duplicate set from another) by its grouping id.
//! `GROUPING(a, b, ...)` is DataFusion's `grouping`, read from that id:
//! bit k (from the right) set where the k-th argument from the end is not
//! grouped in the row's set, as Postgres numbers them.

use std::ffi::c_int;

use pgrx::pg_sys::{self, NodeTag};

use super::Refusal;
use crate::nodes::{cast, int_list, list};

/// The most grouping sets weft expands a query's into: DataFusion makes
/// each input row once per set, and Postgres's own limit for hashing them
/// is 4096.
const MOST_SETS: c_int = 4096;

/// The grouping sets of query `q`, each as the `tleSortGroupRef`s of its
/// columns, in Postgres's order; None for a plain GROUP BY.
///
/// # Safety
/// `q` is a valid Query, on the backend thread.
pub(super) unsafe fn grouping_sets(q: &pg_sys::Query) -> Result<Option<Vec<Vec<u32>>>, Refusal> {
    if q.groupingSets.is_null() {
        return Ok(None);
    }
    // SAFETY: per the caller; the expansion allocates in the current
    // memory context and raises only for a malformed tree.
    let sets = unsafe {
        pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
            parse_agg::expand_grouping_sets(q.groupingSets, q.groupDistinct, MOST_SETS)
        })
    };
    if sets.is_null() {
        return Err(Refusal::shape(format!("more than {MOST_SETS} grouping sets")));
    }
    // SAFETY: a List of integer lists.
    let sets: Vec<Vec<u32>> = unsafe { list::<pg_sys::List>(sets) }
        .into_iter()
        // SAFETY: as above.
        .map(|set| unsafe { int_list(set) }.into_iter().map(|r| r as u32).collect())
        .collect();
    if sets.iter().all(Vec::is_empty) {
        // `GROUP BY ()`: one row of all rows, as without GROUP BY. Several
        // empty sets and nothing else: DataFusion's grouping sets make no
        // row of them.
        return match sets.len() {
            1 => Ok(None),
            _ => Err(Refusal::shape("grouping sets that are all empty")),
        };
    }
    Ok(Some(sets))
}

/// Appends every `GROUPING()` call of `node` at its own level (not inside
/// a subquery) to `out`.
///
/// # Safety
/// `node` is NULL or a valid expression, on the backend thread.
pub(super) unsafe fn collect_grouping_funcs(node: *mut pg_sys::Node, out: &mut Vec<*mut pg_sys::GroupingFunc>) {
    // SAFETY: per the caller; the walker's context is `out`.
    unsafe { walk(node, std::ptr::from_mut(out).cast()) };
}

/// The walker behind [`collect_grouping_funcs`].
///
/// # Safety
/// `node` is NULL or a valid expression; `context` points to a
/// `Vec<*mut GroupingFunc>`.
unsafe extern "C-unwind" fn walk(node: *mut pg_sys::Node, context: *mut std::ffi::c_void) -> bool {
    // SAFETY: per the caller.
    unsafe {
        if node.is_null() || cast::<pg_sys::Query>(node, NodeTag::T_Query).is_some() {
            return false;
        }
        if let Some(func) = cast::<pg_sys::GroupingFunc>(node, NodeTag::T_GroupingFunc) {
            (*context.cast::<Vec<*mut pg_sys::GroupingFunc>>()).push(func);
            return false;
        }
        pg_sys::expression_tree_walker(node, Some(walk), context)
    }
}

/// A Postgres function of parse_agg.h, which pgrx does not bind; call it
/// through `pg_guard_ffi_boundary`.
mod parse_agg {
    use std::ffi::c_int;

    use pgrx::pg_sys::List;

    unsafe extern "C-unwind" {
        /// The grouping sets of a query, expanded: a List of integer
        /// lists of sort-group references; NIL beyond `limit` sets.
        pub fn expand_grouping_sets(grouping_sets: *mut List, group_distinct: bool, limit: c_int) -> *mut List;
    }
}
