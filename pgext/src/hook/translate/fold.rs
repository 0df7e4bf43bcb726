//! Expressions constant for the statement, folded as the query runs:
//! `now()`, `CURRENT_DATE`, `current_setting('x')`, `now() - interval
//! '7 days'`, `to_char(now(), 'YYYY')`.
//!
//! A stable function returns the same value for the same arguments
//! throughout a statement, so an expression of stable functions over
//! constants (no column, aggregate, subquery or volatile function) has one
//! value for every row. Postgres's planner evaluates such expressions to
//! estimate selectivities (`estimate_expression_value`); weft evaluates
//! them the same way once each time it translates the query, which it
//! does again as the query runs (a prepared statement's next execution
//! gets its own `now()`), and DataFusion sees a constant.
//!
//! Postgres's executor evaluates the expression only for rows that reach
//! it: over an empty table an expression that would raise an ERROR never
//! does. Folding runs in a subtransaction, as PL/pgSQL's exception blocks
//! do, so an ERROR is rolled back and forgotten and the expression is left
//! to translate as any other (where it is Postgres's to raise, row by row).

use std::panic::{catch_unwind, AssertUnwindSafe};

use pgrx::pg_sys::{self, NodeTag};

use crate::nodes::cast;

/// `node`'s value when it is constant for the statement and not already
/// a constant, given the statement's parameter values `params` (NULL:
/// none known); None otherwise, or when evaluating it raised an ERROR.
///
/// # Safety
/// `node` is a valid expression of the Query being translated, on the
/// backend thread, outside parallel mode.
pub unsafe fn folded(node: *mut pg_sys::Node, params: pg_sys::ParamListInfo) -> Option<*mut pg_sys::Const> {
    // SAFETY: per the caller; catalog lookups and Postgres's walkers.
    unsafe {
        let foldable = matches!(
            (*node).type_,
            NodeTag::T_FuncExpr | NodeTag::T_OpExpr | NodeTag::T_SQLValueFunction | NodeTag::T_CoerceViaIO
        );
        if !foldable
            || pg_sys::IsInParallelMode()
            || !pg_sys::contain_mutable_functions(node)
            || pg_sys::contain_volatile_functions(node)
            || pg_sys::contain_var_clause(node)
            || pg_sys::contain_agg_clause(node)
            || pg_sys::contain_subplans(node)
        {
            return None;
        }
        // estimate_expression_value reads only the bound parameters of the
        // planner state it is given.
        let value = without_errors(|| pg_sys::estimate_expression_value(planner_with(params), node));
        cast::<pg_sys::Const>(value?, NodeTag::T_Const)
    }
}

/// A planner state as much as `eval_const_expressions` and
/// `estimate_expression_value` read of one: the statement's parameter
/// values `params` (NULL: none).
///
/// # Safety
/// `params` is NULL or valid; on the backend thread.
pub unsafe fn planner_with(params: pg_sys::ParamListInfo) -> *mut pg_sys::PlannerInfo {
    // SAFETY: per the caller; zeroed nodes, tagged.
    unsafe {
        let glob = pg_sys::palloc0(std::mem::size_of::<pg_sys::PlannerGlobal>()).cast::<pg_sys::PlannerGlobal>();
        (*glob).type_ = NodeTag::T_PlannerGlobal;
        (*glob).boundParams = params;
        let root = pg_sys::palloc0(std::mem::size_of::<pg_sys::PlannerInfo>()).cast::<pg_sys::PlannerInfo>();
        (*root).type_ = NodeTag::T_PlannerInfo;
        (*root).glob = glob;
        root
    }
}

/// `f`'s result, or None where it raised an ERROR, which is rolled back
/// and forgotten: `f` runs in a subtransaction, as PL/pgSQL's exception
/// blocks run their statements, with the caller's memory context (its
/// result outlives the subtransaction) and resource owner restored.
///
/// # Safety
/// On the backend thread, outside parallel mode; `f` calls Postgres.
pub unsafe fn without_errors<T>(f: impl FnOnce() -> T) -> Option<T> {
    // SAFETY: per the caller; the sequence PL/pgSQL's exception blocks use.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        let (interrupts, cancels) = (pg_sys::InterruptHoldoffCount, pg_sys::QueryCancelHoldoffCount);
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let value = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(value) => {
                pg_sys::ReleaseCurrentSubTransaction();
                Some(value)
            }
            Err(_) => {
                // pgrx has copied and flushed the error; as after any
                // caught ERROR, the interrupt holdoffs are restored
                // (Postgres zeroes them as it raises) before the rollback.
                pg_sys::InterruptHoldoffCount = interrupts;
                pg_sys::QueryCancelHoldoffCount = cancels;
                pg_sys::MemoryContextSwitchTo(context);
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
                None
            }
        };
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        value
    }
}
