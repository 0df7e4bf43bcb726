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
//!
//! weft.query has SQL text instead of a Query: [`follow_stock_plan_sql`]
//! has Postgres plan the same text (when Postgres can) and reorders the
//! FROM lists of DataFusion's parse of it alike.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{self, VisitMut, VisitorMut};
use pgrx::pg_sys::{self, NodeTag};
use pgrx::PgTryBuilder;

use super::nodes::{cast, list};

/// A table as the stock plan and the Query both name it: its OID and its
/// range table alias.
type Named = (pg_sys::Oid, String);

/// Reorders every FROM list in `query` (its subqueries', CTEs' and
/// sublinks' too) to follow the order in which `stmt`, the stock plan of
/// the same query, scans their tables.
///
/// # Safety
/// `query` is weft's own copy of the analyzed Query that `stmt` planned;
/// on the backend thread.
pub unsafe fn follow_stock_plan(query: *mut pg_sys::Query, stmt: *mut pg_sys::PlannedStmt) {
    let mut ranks = HashMap::new();
    // SAFETY: per the caller.
    unsafe {
        scans((*stmt).planTree, (*stmt).rtable, &mut ranks);
        for plan in list::<pg_sys::Plan>((*stmt).subplans) {
            scans(plan, (*stmt).rtable, &mut ranks);
        }
        reorder(query, &ranks);
    }
}

/// Numbers the tables `plan` scans, depth-first, outer before inner, from
/// `ranks.len()` on (a table seen again keeps its first number).
///
/// # Safety
/// `plan` is NULL or a valid plan tree over `rtable`.
unsafe fn scans(plan: *mut pg_sys::Plan, rtable: *mut pg_sys::List, ranks: &mut HashMap<Named, usize>) {
    if plan.is_null() {
        return;
    }
    // SAFETY: per the caller; each node is read as its tag's type.
    unsafe {
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
                if let Some(named) = named(rte) {
                    let next = ranks.len();
                    ranks.entry(named).or_insert(next);
                }
            }
            NodeTag::T_SubqueryScan => scans((*plan.cast::<pg_sys::SubqueryScan>()).subplan, rtable, ranks),
            NodeTag::T_Append => {
                for child in list::<pg_sys::Plan>((*plan.cast::<pg_sys::Append>()).appendplans) {
                    scans(child, rtable, ranks);
                }
            }
            NodeTag::T_MergeAppend => {
                for child in list::<pg_sys::Plan>((*plan.cast::<pg_sys::MergeAppend>()).mergeplans) {
                    scans(child, rtable, ranks);
                }
            }
            _ => {
                scans((*plan).lefttree, rtable, ranks);
                scans((*plan).righttree, rtable, ranks);
            }
        }
    }
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
unsafe fn reorder(query: *mut pg_sys::Query, ranks: &HashMap<Named, usize>) {
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
        let mut context = ranks as *const HashMap<Named, usize>;
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
/// points to a `*const HashMap<Named, usize>`.
unsafe extern "C-unwind" fn sublinks(node: *mut pg_sys::Node, context: *mut std::ffi::c_void) -> bool {
    // SAFETY: per the caller; the walker hands a SubLink's subquery to
    // this function as a Query node.
    unsafe {
        if node.is_null() {
            return false;
        }
        if let Some(q) = cast::<pg_sys::Query>(node, NodeTag::T_Query) {
            reorder(q, &**context.cast::<*const HashMap<Named, usize>>());
            return false;
        }
        pg_sys::expression_tree_walker(node, Some(sublinks), context)
    }
}

/// The first rank among the tables of FROM item `item` of `query`.
///
/// # Safety
/// `item` is a FROM item of the valid Query `query`.
unsafe fn rank(query: *mut pg_sys::Query, item: *mut pg_sys::Node, ranks: &HashMap<Named, usize>) -> Option<usize> {
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

/// Reorders every FROM list of `statement`, weft.query's SQL parsed by
/// DataFusion, to follow the order in which Postgres's own plan of the
/// same text (`sql`) scans the tables, matched by alias. Leaves the
/// statement as written when Postgres cannot plan the text (DataFusion's
/// dialect differs from Postgres's in places).
///
/// A FROM list is reordered only where that cannot change the result's
/// columns or names: no `*` in its SELECT list (which expands in FROM
/// order) and nothing but tables and plain subqueries in it (no LATERAL).
///
/// # Safety
/// On the backend thread, inside a transaction, outside parallel mode.
pub unsafe fn follow_stock_plan_sql(statement: &mut DFStatement, sql: &str) {
    let DFStatement::Statement(statement) = statement else {
        return;
    };
    // SAFETY: per the caller.
    let Some(ranks) = (unsafe { stock_ranks(sql) }) else {
        return;
    };
    let _ = statement.visit(&mut FollowRanks(&ranks));
}

/// The tables Postgres's plan of `sql` scans, numbered depth-first, by
/// alias; None if Postgres cannot plan it as one SELECT.
///
/// The text is parsed, analyzed and planned (by the stock planner, past
/// every hook) in a subtransaction, so that any error (a syntax only
/// DataFusion accepts, a function only it has) is rolled back and only
/// means no reordering.
///
/// # Safety
/// As for [`follow_stock_plan_sql`].
unsafe fn stock_ranks(sql: &str) -> Option<HashMap<String, usize>> {
    let text = std::ffi::CString::new(sql).ok()?;
    // SAFETY: per the caller; the subtransaction's pattern of PL/pgSQL's
    // exception blocks: begin, run, release or roll back, then restore the
    // caller's memory context and resource owner.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let ranks = PgTryBuilder::new(|| {
            let ranks = planned_ranks(&text);
            pg_sys::ReleaseCurrentSubTransaction();
            ranks
        })
        .catch_others(|_| {
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            None
        })
        .execute();
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        ranks
    }
}

/// [`stock_ranks`]'s work, inside its subtransaction.
///
/// # Safety
/// As for [`follow_stock_plan_sql`].
unsafe fn planned_ranks(text: &std::ffi::CStr) -> Option<HashMap<String, usize>> {
    // SAFETY: per the caller; each call raises an ERROR on bad input,
    // which the caller rolls back.
    unsafe {
        let raw = list::<pg_sys::RawStmt>(pg_sys::raw_parser(
            text.as_ptr(),
            pg_sys::RawParseMode::RAW_PARSE_DEFAULT,
        ));
        let [raw] = raw.as_slice() else { return None };
        let queries = list::<pg_sys::Query>(pg_sys::pg_analyze_and_rewrite_fixedparams(
            *raw,
            text.as_ptr(),
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
        ));
        let [query] = queries.as_slice() else { return None };
        if (**query).commandType != pg_sys::CmdType::CMD_SELECT || !(**query).utilityStmt.is_null() {
            return None;
        }
        let stmt = pg_sys::standard_planner(*query, text.as_ptr(), 0, std::ptr::null_mut());
        let mut ranks = HashMap::new();
        scans((*stmt).planTree, (*stmt).rtable, &mut ranks);
        for plan in list::<pg_sys::Plan>((*stmt).subplans) {
            scans(plan, (*stmt).rtable, &mut ranks);
        }
        let mut by_alias: HashMap<String, usize> = HashMap::new();
        for ((_, alias), rank) in ranks {
            let entry = by_alias.entry(alias).or_insert(rank);
            *entry = (*entry).min(rank);
        }
        Some(by_alias)
    }
}

/// Sorts each FROM list it visits by [`item_rank`].
struct FollowRanks<'a>(&'a HashMap<String, usize>);

impl VisitorMut for FollowRanks<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        if let ast::SetExpr::Select(select) = query.body.as_mut() {
            let wildcard = select.projection.iter().any(|item| {
                matches!(
                    item,
                    ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..)
                )
            });
            let plain = select.from.iter().all(|item| {
                matches!(
                    item.relation,
                    ast::TableFactor::Table { .. } | ast::TableFactor::Derived { lateral: false, .. }
                )
            });
            if !wildcard && plain {
                select
                    .from
                    .sort_by_key(|item| item_rank(item, self.0).unwrap_or(usize::MAX));
            }
        }
        ControlFlow::Continue(())
    }
}

/// The first rank among the tables of FROM item `item` (and of the FROM
/// lists of a subquery in it), by alias as Postgres folds it.
fn item_rank(item: &ast::TableWithJoins, ranks: &HashMap<String, usize>) -> Option<usize> {
    std::iter::once(&item.relation)
        .chain(item.joins.iter().map(|join| &join.relation))
        .filter_map(|factor| factor_rank(factor, ranks))
        .min()
}

/// [`item_rank`] of one table or subquery.
fn factor_rank(factor: &ast::TableFactor, ranks: &HashMap<String, usize>) -> Option<usize> {
    let folded = |ident: &ast::Ident| match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    };
    match factor {
        ast::TableFactor::Table { name, alias, .. } => {
            let key = match alias {
                Some(alias) => folded(&alias.name),
                None => match name.0.last()? {
                    ast::ObjectNamePart::Identifier(ident) => folded(ident),
                    _ => return None,
                },
            };
            ranks.get(&key).copied()
        }
        ast::TableFactor::Derived { subquery, .. } => match subquery.body.as_ref() {
            ast::SetExpr::Select(select) => select.from.iter().filter_map(|item| item_rank(item, ranks)).min(),
            _ => None,
        },
        _ => None,
    }
}
