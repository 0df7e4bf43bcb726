//! How many rows a table keeps under the WHERE conditions that read it
//! alone, as Postgres's planner estimates it from its statistics.
//!
//! DataFusion knows a filtered scan's input size (pg_class's row count)
//! but not its selectivity: it assumes 20%. Its join planning (which side
//! to build on, and whether weft broadcasts the build side or partitions
//! both) turns on these sizes, and 20% is far off for the selective
//! filters analytic queries are made of (TPC-H Q4 keeps 57 thousand of 1.5
//! million orders; 20% is 300 thousand, which partitions a join that a
//! broadcast of 57 thousand rows answers with no shuffle). Postgres has
//! the histograms, most common values and null fractions to do better, so
//! weft asks it: each filtered table is planned alone as
//! `SELECT FROM t WHERE <its conditions>`, and the plan's row estimate is
//! the scan's.

use std::collections::HashMap;

use pgrx::pg_sys::{self, NodeTag};

use super::nodes::list;

/// Postgres's estimate of the rows each table of `query`'s FROM list keeps
/// under the conjuncts of `quals` (its folded WHERE clause) that read that
/// table alone, by range table index; tables no conjunct reads alone are
/// not listed. `depth` is how many query levels enclose `query` (their
/// columns, outer references, cannot be planned alone).
///
/// # Safety
/// `query` is a valid analyzed Query, `quals` NULL or its folded WHERE
/// clause, `params` NULL or valid; on the backend thread.
pub unsafe fn filtered_rows(
    query: *mut pg_sys::Query,
    quals: *mut pg_sys::Node,
    depth: usize,
    params: pg_sys::ParamListInfo,
) -> HashMap<i32, f64> {
    let mut estimates = HashMap::new();
    if quals.is_null() {
        return estimates;
    }
    // SAFETY: per the caller.
    unsafe {
        let mut by_table: HashMap<i32, Vec<*mut pg_sys::Node>> = HashMap::new();
        let conjuncts = pg_sys::make_ands_implicit(quals.cast());
        for conjunct in list::<pg_sys::Node>(conjuncts) {
            if let Some(rtindex) = alone(conjunct, depth) {
                by_table.entry(rtindex).or_default().push(conjunct);
            }
        }
        let from = list::<pg_sys::Node>((*(*query).jointree).fromlist);
        for (rtindex, conjuncts) in by_table {
            // Only tables listed in FROM directly: a condition on a table
            // inside an outer join does not filter its scan.
            let listed = from.iter().any(|&item| {
                (*item).type_ == NodeTag::T_RangeTblRef && (*item.cast::<pg_sys::RangeTblRef>()).rtindex == rtindex
            });
            let rte = pg_sys::list_nth((*query).rtable, rtindex - 1).cast::<pg_sys::RangeTblEntry>();
            if listed && (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION {
                let entries = pg_sys::list_length((*query).rtable) as usize;
                estimates.insert(rtindex, planned_rows(rte, rtindex, entries, &conjuncts, params));
            }
        }
    }
    estimates
}

/// The one table `conjunct` reads, if it reads exactly one of this level
/// and nothing of enclosing levels, and holds no subquery.
///
/// # Safety
/// `conjunct` is a valid expression; on the backend thread.
unsafe fn alone(conjunct: *mut pg_sys::Node, depth: usize) -> Option<i32> {
    // SAFETY: per the caller; these walk the expression.
    unsafe {
        if has_sublink(conjunct, std::ptr::null_mut()) {
            return None;
        }
        if (1..=depth).any(|up| pg_sys::contain_vars_of_level(conjunct, up as i32)) {
            return None;
        }
        let varnos = pg_sys::pull_varnos(std::ptr::null_mut(), conjunct);
        let mut member = 0;
        pg_sys::bms_get_singleton_member(varnos, &mut member).then_some(member)
    }
}

/// Whether `node` holds a subquery (an expression tree walker).
///
/// # Safety
/// `node` is NULL or a valid expression; on the backend thread.
unsafe extern "C-unwind" fn has_sublink(node: *mut pg_sys::Node, context: *mut std::ffi::c_void) -> bool {
    // SAFETY: per the caller; the walker visits each child node once.
    unsafe {
        !node.is_null()
            && ((*node).type_ == NodeTag::T_SubLink || pg_sys::expression_tree_walker(node, Some(has_sublink), context))
    }
}

/// The planner's row estimate for range table entry `rte` (index
/// `rtindex`) filtered by `conjuncts`: the plan of a Query whose range
/// table holds a copy of the entry at every index (so the conjuncts'
/// columns need no renumbering) and whose FROM list names `rtindex` alone.
///
/// # Safety
/// `rte` is a relation's entry, `conjuncts` valid expressions reading only
/// it, `params` NULL or valid; on the backend thread.
unsafe fn planned_rows(
    rte: *mut pg_sys::RangeTblEntry,
    rtindex: i32,
    entries: usize,
    conjuncts: &[*mut pg_sys::Node],
    params: pg_sys::ParamListInfo,
) -> f64 {
    // SAFETY: per the caller. The Query is built from copies, so the
    // planner's rewriting of it leaves the original alone.
    unsafe {
        let mut quals: *mut pg_sys::List = std::ptr::null_mut();
        for &c in conjuncts {
            quals = pg_sys::lappend(quals, pg_sys::copyObjectImpl(c.cast()));
        }
        let quals = pg_sys::make_ands_explicit(quals).cast::<pg_sys::Node>();
        let mut rtable: *mut pg_sys::List = std::ptr::null_mut();
        for _ in 0..entries {
            rtable = pg_sys::lappend(rtable, pg_sys::copyObjectImpl(rte.cast()));
        }
        let reference = node::<pg_sys::RangeTblRef>(NodeTag::T_RangeTblRef);
        (*reference).rtindex = rtindex;
        let alone = node::<pg_sys::Query>(NodeTag::T_Query);
        (*alone).commandType = pg_sys::CmdType::CMD_SELECT;
        (*alone).querySource = pg_sys::QuerySource::QSRC_ORIGINAL;
        (*alone).canSetTag = true;
        (*alone).rtable = rtable;
        (*alone).jointree = pg_sys::makeFromExpr(pg_sys::lappend(std::ptr::null_mut(), reference.cast()), quals);
        // The stock planner itself, past every planner hook: this query is
        // weft's own (weft's hook would note it as refused, and EXPLAIN
        // would then show that note under a query weft did take).
        let planned = pg_sys::standard_planner(alone, std::ptr::null(), 0, params);
        (*(*planned).planTree).plan_rows
    }
}

/// A new zeroed node of type `T` tagged `tag` (makeNode).
///
/// # Safety
/// `tag` is `T`'s tag; on the backend thread (palloc).
unsafe fn node<T>(tag: NodeTag) -> *mut T {
    // SAFETY: per the caller; palloc0 raises on failure.
    unsafe {
        let node = pg_sys::palloc0(std::mem::size_of::<T>()).cast::<pg_sys::Node>();
        (*node).type_ = tag;
        node.cast()
    }
}
