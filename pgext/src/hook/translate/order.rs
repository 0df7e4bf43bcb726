//! FROM lists put in the order of Postgres's own join tree.
//!
//! DataFusion does not search join orders: it joins a comma-separated FROM
//! list in the order it is written, taking next the first item that has a
//! join condition with what is joined so far (and then only picks each
//! join's build side by size). Written orders are often poor: TPC-H Q7
//! names supplier and lineitem first, so DataFusion joined all of
//! lineitem's 1.8 million rows of two years with every supplier before
//! reaching the nation filter that keeps 8% of them.
//!
//! Postgres has already searched the join orders (its stock plan is made
//! first), with its statistics. Its plan's scans, read depth-first, outer
//! side before inner, list the tables in an order where each one joins
//! what comes before it, the most selective joins first. Reordering each
//! FROM list of weft's copy of the Query to match changes no result (the
//! items of a FROM list are joined as a product, which commutes), and the
//! copy is what the Custom Scan keeps and translates again at execution.

use std::collections::HashMap;

use pgrx::pg_sys::{self, NodeTag};

use crate::nodes::{cast, list};

/// A table as the stock plan and the Query both name it: its OID and its
/// range table alias.
pub type Named = (pg_sys::Oid, String);

/// Each table's place in the order a plan scans the tables.
pub type Ranks = HashMap<Named, usize>;

/// Reorders every FROM list in `query` (its subqueries', CTEs' and
/// sublinks' too) to follow the order in which `stmt`, the stock plan of
/// the same query, scans their tables.
///
/// # Safety
/// `query` is weft's own copy of the analyzed Query that `stmt` planned;
/// on the backend thread.
pub unsafe fn follow_stock_plan(query: *mut pg_sys::Query, stmt: *mut pg_sys::PlannedStmt) {
    // SAFETY: per the caller.
    unsafe { reorder(query, &plan_ranks(stmt)) }
}

/// The tables of `stmt` numbered in the order its plan scans them
/// (depth-first, outer side before inner, then its subplans').
///
/// # Safety
/// `stmt` is a valid planned statement; on the backend thread.
pub unsafe fn plan_ranks(stmt: *mut pg_sys::PlannedStmt) -> Ranks {
    let mut order = Vec::new();
    // SAFETY: per the caller.
    unsafe {
        order.extend(scans((*stmt).planTree, (*stmt).rtable));
        for plan in list::<pg_sys::Plan>((*stmt).subplans) {
            order.extend(scans(plan, (*stmt).rtable));
        }
    }
    let mut ranks = HashMap::new();
    for named in order {
        let next = ranks.len();
        ranks.entry(named).or_insert(next);
    }
    ranks
}

/// The tables `plan` scans, depth-first, outer before inner, each once (at
/// its first scan); but a join of one table with a join of several lists
/// the several first.
///
/// DataFusion joins a FROM list left-deep, so the order is a tree's
/// linearization: in TPC-H Q21 Postgres hashes supplier joined to nation
/// (400 rows) and probes it with lineitem; listed outer first, lineitem,
/// supplier, nation, DataFusion joined lineitem to all 10 000 suppliers
/// (1.9 million rows) before the nation filter kept 4% of them. This
/// order relies on [`weft_runtime::ImpliedEqualities`]: Postgres joins
/// along equivalence classes (TPC-H Q5's customer to nation, where the
/// query only equates each with supplier's nation), and without the
/// equalities written out DataFusion would find no condition between
/// tables Postgres's tree puts next to each other.
///
/// Each node is visited once, its children's lists made before they are
/// ordered: deciding the order by walking the children first would make
/// the walk exponential in the plan's depth (a join of 64 tables).
///
/// # Safety
/// `plan` is NULL or a valid plan tree over `rtable`.
unsafe fn scans(plan: *mut pg_sys::Plan, rtable: *mut pg_sys::List) -> Vec<Named> {
    if plan.is_null() {
        return Vec::new();
    }
    // SAFETY: per the caller; each node is read as its tag's type.
    let order = unsafe {
        match (*plan).type_ {
            NodeTag::T_SeqScan
            | NodeTag::T_SampleScan
            | NodeTag::T_IndexScan
            | NodeTag::T_IndexOnlyScan
            | NodeTag::T_BitmapHeapScan
            | NodeTag::T_TidScan
            | NodeTag::T_TidRangeScan => {
                let scanrelid = (*plan.cast::<pg_sys::Scan>()).scanrelid;
                let rte = pg_sys::list_nth(rtable, scanrelid as i32 - 1).cast::<pg_sys::RangeTblEntry>();
                named(rte).into_iter().collect()
            }
            NodeTag::T_SubqueryScan => scans((*plan.cast::<pg_sys::SubqueryScan>()).subplan, rtable),
            NodeTag::T_Append => list::<pg_sys::Plan>((*plan.cast::<pg_sys::Append>()).appendplans)
                .into_iter()
                .flat_map(|child| scans(child, rtable))
                .collect(),
            NodeTag::T_MergeAppend => list::<pg_sys::Plan>((*plan.cast::<pg_sys::MergeAppend>()).mergeplans)
                .into_iter()
                .flat_map(|child| scans(child, rtable))
                .collect(),
            tag => {
                let outer = scans((*plan).lefttree, rtable);
                let inner = scans((*plan).righttree, rtable);
                let join = matches!(tag, NodeTag::T_HashJoin | NodeTag::T_NestLoop | NodeTag::T_MergeJoin);
                if join && outer.len() == 1 && inner.len() > 1 {
                    [inner, outer].concat()
                } else {
                    [outer, inner].concat()
                }
            }
        }
    };
    let mut once = Vec::with_capacity(order.len());
    for named in order {
        if !once.contains(&named) {
            once.push(named);
        }
    }
    once
}

/// A relation's range table entry as (OID, alias); None for other entries.
///
/// # Safety
/// `rte` is NULL or a valid range table entry.
unsafe fn named(rte: *mut pg_sys::RangeTblEntry) -> Option<Named> {
    // SAFETY: per the caller.
    unsafe {
        if rte.is_null() || (*rte).rtekind != pg_sys::RTEKind::RTE_RELATION || (*rte).eref.is_null() {
            return None;
        }
        let alias = std::ffi::CStr::from_ptr((*(*rte).eref).aliasname)
            .to_string_lossy()
            .into_owned();
        Some(((*rte).relid, alias))
    }
}

/// Sorts `query`'s FROM list by the ranks of the tables in each item (an
/// item with none keeps its place after the ranked ones), and the FROM
/// lists of the queries inside it.
///
/// # Safety
/// `query` is a valid analyzed Query.
unsafe fn reorder(query: *mut pg_sys::Query, ranks: &Ranks) {
    // SAFETY: per the caller.
    unsafe {
        let mut items: Vec<(usize, *mut pg_sys::Node)> = list::<pg_sys::Node>((*(*query).jointree).fromlist)
            .into_iter()
            .map(|item| (rank(query, item, ranks).unwrap_or(usize::MAX), item))
            .collect();
        items.sort_by_key(|(rank, _)| *rank);
        let mut sorted: *mut pg_sys::List = std::ptr::null_mut();
        for (_, item) in items {
            sorted = pg_sys::lappend(sorted, item.cast());
        }
        (*(*query).jointree).fromlist = sorted;
        for rte in list::<pg_sys::RangeTblEntry>((*query).rtable) {
            if (*rte).rtekind == pg_sys::RTEKind::RTE_SUBQUERY && !(*rte).subquery.is_null() {
                reorder((*rte).subquery, ranks);
            }
        }
        for cte in list::<pg_sys::CommonTableExpr>((*query).cteList) {
            if let Some(q) = cast::<pg_sys::Query>((*cte).ctequery, NodeTag::T_Query) {
                reorder(q, ranks);
            }
        }
        let mut context = ranks as *const Ranks;
        let context = std::ptr::addr_of_mut!(context).cast();
        for expr in [
            (*(*query).jointree).quals,
            (*query).havingQual,
            (*query).targetList.cast(),
        ] {
            sublinks(expr, context);
        }
    }
}

/// Reorders the FROM lists of the subqueries in an expression (an
/// expression tree walker; `context` points to the ranks).
///
/// # Safety
/// `node` is NULL or a valid expression (or list of them); `context`
/// points to a `*const Ranks`.
unsafe extern "C-unwind" fn sublinks(node: *mut pg_sys::Node, context: *mut std::ffi::c_void) -> bool {
    // SAFETY: per the caller; the walker hands a SubLink's subquery to
    // this function as a Query node.
    unsafe {
        if node.is_null() {
            return false;
        }
        if let Some(q) = cast::<pg_sys::Query>(node, NodeTag::T_Query) {
            reorder(q, &**context.cast::<*const Ranks>());
            return false;
        }
        pg_sys::expression_tree_walker(node, Some(sublinks), context)
    }
}

/// The first rank among the tables of FROM item `item` of `query`.
///
/// # Safety
/// `item` is a FROM item of the valid Query `query`.
unsafe fn rank(query: *mut pg_sys::Query, item: *mut pg_sys::Node, ranks: &Ranks) -> Option<usize> {
    // SAFETY: per the caller.
    unsafe {
        if let Some(r) = cast::<pg_sys::RangeTblRef>(item, NodeTag::T_RangeTblRef) {
            let rte = pg_sys::list_nth((*query).rtable, (*r).rtindex - 1).cast::<pg_sys::RangeTblEntry>();
            if (*rte).rtekind == pg_sys::RTEKind::RTE_SUBQUERY && !(*rte).subquery.is_null() {
                let sub = (*rte).subquery;
                return list::<pg_sys::Node>((*(*sub).jointree).fromlist)
                    .into_iter()
                    .filter_map(|i| rank(sub, i, ranks))
                    .min();
            }
            return named(rte).and_then(|n| ranks.get(&n).copied());
        }
        if let Some(j) = cast::<pg_sys::JoinExpr>(item, NodeTag::T_JoinExpr) {
            return [rank(query, (*j).larg, ranks), rank(query, (*j).rarg, ranks)]
                .into_iter()
                .flatten()
                .min();
        }
        if let Some(f) = cast::<pg_sys::FromExpr>(item, NodeTag::T_FromExpr) {
            return list::<pg_sys::Node>((*f).fromlist)
                .into_iter()
                .filter_map(|i| rank(query, i, ranks))
                .min();
        }
        None
    }
}
