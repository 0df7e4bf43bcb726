//! The planner hook: plain SELECTs that weft can run exactly as Postgres
//! would, and that are expensive enough to gain, become a Custom Scan
//! (Weft) ([`crate::hook::scan`]).
//!
//! The stock plan is made first, always: its cost decides, and everything
//! the executor needs besides the plan tree (the range table, so that
//! privileges are checked as usual; the relations and items that
//! invalidate a cached plan) stays as Postgres made it. Only the plan tree
//! is replaced, by a scan that keeps a copy of the analyzed Query and
//! translates it again when it runs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::ExecutionPlan;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::guc;
use crate::hook::refusal::Refusal;
use crate::hook::translate;
use crate::plan::scan::HeapScanExec;
use crate::types::ColumnWriter;

static mut PREVIOUS: pg_sys::planner_hook_type = None;
static mut PREVIOUS_EXPLAIN: pg_sys::ExplainOneQuery_hook_type = None;

thread_local! {
    /// Why weft left the last planned query to Postgres (for EXPLAIN
    /// with weft.explain_fallback).
    static LAST_REFUSAL: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the hook (from `_PG_init`).
pub fn install() {
    // SAFETY: _PG_init runs once per process on its only thread; hooks
    // chain by keeping the previous value.
    unsafe {
        PREVIOUS = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(weft_planner);
        PREVIOUS_EXPLAIN = pg_sys::ExplainOneQuery_hook;
        pg_sys::ExplainOneQuery_hook = Some(weft_explain);
    }
    crate::hook::scan::register();
}

/// Why the last query planned in this backend was not taken over, if it
/// was not.
pub fn last_refusal() -> Option<String> {
    LAST_REFUSAL.with(|r| r.borrow().clone())
}

/// Postgres functions that weft's hooks call with nothing of Rust's to drop
/// in their frames: an ERROR they raise longjmps through those frames to
/// Postgres's own handler as it was raised, with its CONTEXT lines (the SQL
/// function being inlined, the JSON being parsed). pgrx's bindings catch
/// an ERROR and raise a copy of it, without them.
mod unguarded {
    use pgrx::pg_sys;

    unsafe extern "C" {
        pub fn standard_planner(
            parse: *mut pg_sys::Query,
            query_string: *const std::ffi::c_char,
            cursor_options: i32,
            bound_params: pg_sys::ParamListInfo,
        ) -> *mut pg_sys::PlannedStmt;

        pub fn pg_plan_query(
            query: *mut pg_sys::Query,
            query_string: *const std::ffi::c_char,
            cursor_options: i32,
            bound_params: pg_sys::ParamListInfo,
        ) -> *mut pg_sys::PlannedStmt;

        #[allow(clippy::too_many_arguments)]
        pub fn ExplainOnePlan(
            plannedstmt: *mut pg_sys::PlannedStmt,
            into: *mut pg_sys::IntoClause,
            es: *mut pg_sys::ExplainState,
            query_string: *const std::ffi::c_char,
            params: pg_sys::ParamListInfo,
            env: *mut pg_sys::QueryEnvironment,
            planduration: *const pg_sys::instr_time,
            bufusage: *const pg_sys::BufferUsage,
        );
    }
}

/// The hook: weft's part before and after the stock planner runs in
/// guarded functions of their own; this frame holds only plain values
/// across the planner (see [`unguarded`]).
unsafe extern "C-unwind" fn weft_planner(
    parse: *mut pg_sys::Query,
    query_string: *const std::ffi::c_char,
    cursor_options: i32,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    // SAFETY: called by Postgres with a valid Query, on the backend thread.
    let copy = unsafe { before_planning(parse, cursor_options) };
    // SAFETY: as above; the previous hook or the stock planner.
    let stmt = unsafe {
        match PREVIOUS {
            Some(previous) => previous(parse, query_string, cursor_options, bound_params),
            None => unguarded::standard_planner(parse, query_string, cursor_options, bound_params),
        }
    };
    if !copy.is_null() {
        // SAFETY: the stock plan and our copy of its Query.
        unsafe { after_planning(stmt, copy, bound_params) };
    }
    stmt
}

/// A copy of the Query to translate (the stock planner scribbles on its
/// own), or NULL when weft may not consider it (the reason kept for
/// EXPLAIN).
#[pg_guard]
unsafe extern "C-unwind" fn before_planning(parse: *mut pg_sys::Query, cursor_options: i32) -> *mut pg_sys::Query {
    // SAFETY: called with a valid Query, on the backend thread.
    match unsafe { eligible(parse, cursor_options) } {
        // SAFETY: as above.
        Ok(()) => unsafe { pg_sys::copyObjectImpl(parse.cast()).cast::<pg_sys::Query>() },
        Err(refusal) => {
            LAST_REFUSAL.with(|r| *r.borrow_mut() = Some(refusal.to_string()));
            std::ptr::null_mut()
        }
    }
}

/// Takes the query over if it may; keeps the reason if not.
#[pg_guard]
unsafe extern "C-unwind" fn after_planning(
    stmt: *mut pg_sys::PlannedStmt,
    copy: *mut pg_sys::Query,
    bound_params: pg_sys::ParamListInfo,
) {
    // SAFETY: the stock plan and our copy of its Query, on the backend
    // thread.
    let decision = unsafe { take_over(stmt, copy, bound_params) };
    LAST_REFUSAL.with(|r| *r.borrow_mut() = decision.err().map(|refusal| refusal.to_string()));
}

/// EXPLAIN of one query: as Postgres's own (`ExplainOneQuery`), plus, with
/// weft.explain_fallback, why weft left the query to Postgres: a last line
/// in the text format, a NOTICE in the others (whose structure has no
/// place for it). Like [`weft_planner`], it holds only plain values across
/// Postgres's planning and execution.
unsafe extern "C-unwind" fn weft_explain(
    query: *mut pg_sys::Query,
    cursor_options: i32,
    into: *mut pg_sys::IntoClause,
    es: *mut pg_sys::ExplainState,
    query_string: *const std::ffi::c_char,
    params: pg_sys::ParamListInfo,
    env: *mut pg_sys::QueryEnvironment,
) {
    forget_refusal();
    // SAFETY: called by Postgres with valid arguments, on the backend
    // thread; this is ExplainOneQuery's body for a planned query.
    unsafe {
        if let Some(previous) = PREVIOUS_EXPLAIN {
            previous(query, cursor_options, into, es, query_string, params, env);
        } else {
            let started = std::time::Instant::now();
            let buffers_before = (*es).buffers.then_some(pg_sys::pgBufferUsage);
            let plan = unguarded::pg_plan_query(query, query_string, cursor_options, params);
            let elapsed = started.elapsed();
            let planning = pg_sys::instr_time {
                tv_sec: elapsed.as_secs() as _,
                tv_nsec: elapsed.subsec_nanos() as _,
            };
            let mut buffers = pg_sys::BufferUsage::default();
            if let Some(before) = &buffers_before {
                pg_sys::BufferUsageAccumDiff(&mut buffers, &raw const pg_sys::pgBufferUsage, before);
            }
            let buffers = if buffers_before.is_some() {
                &raw const buffers
            } else {
                std::ptr::null()
            };
            unguarded::ExplainOnePlan(plan, into, es, query_string, params, env, &planning, buffers);
        }
        explain_refusal(es);
    }
}

#[pg_guard]
extern "C-unwind" fn forget_refusal() {
    LAST_REFUSAL.with(|r| *r.borrow_mut() = None);
}

/// With weft.explain_fallback, why weft left the last query to Postgres.
#[pg_guard]
unsafe extern "C-unwind" fn explain_refusal(es: *mut pg_sys::ExplainState) {
    if !guc::EXPLAIN_FALLBACK.get() {
        return;
    }
    let Some(reason) = last_refusal() else {
        return;
    };
    let line = format!("Weft: not used: {reason}");
    // SAFETY: Postgres's explain state, on the backend thread.
    unsafe {
        if (*es).format == pg_sys::ExplainFormat::EXPLAIN_FORMAT_TEXT {
            let line = std::ffi::CString::new(format!("{}\n", line.replace('\0', " "))).unwrap_or_default();
            pg_sys::appendStringInfoString((*es).str_, line.as_ptr());
        } else {
            pgrx::notice!("{line}");
        }
    }
}

/// The cost, in Postgres's units, of weft's participants reading
/// `relations` as `plan` does: each one's pages and tuples as a
/// sequential scan costs them, or the share of that its index lookups
/// cost if it is only looked up ([`crate::plan::lookup`]), shared among the
/// participants weft asks for.
///
/// # Safety
/// The relations are open, on the backend thread.
unsafe fn scan_cost(relations: &[(pg_sys::Oid, pg_sys::Relation)], plan: &Arc<dyn ExecutionPlan>) -> f64 {
    // The most any scan of a relation reads of it.
    let mut shares: HashMap<pg_sys::Oid, f64> = HashMap::new();
    let _ = plan.apply(|node| {
        if let Some(scan) = node.downcast_ref::<HeapScanExec>() {
            let share = shares.entry(scan.relid()).or_insert(0.0);
            *share = share.max(scan.reading_share());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    // SAFETY: per the caller; plain reads of cost GUCs and catalog rows.
    unsafe {
        let total: f64 = relations
            .iter()
            .map(|&(relid, rel)| {
                let class = &*(*rel).rd_rel;
                let tuples = f64::from(class.reltuples.max(0.0));
                let whole = f64::from(class.relpages) * pg_sys::seq_page_cost + tuples * pg_sys::cpu_tuple_cost;
                whole * shares.get(&relid).copied().unwrap_or(1.0)
            })
            .sum();
        total / f64::from(guc::workers().max(0) + 1)
    }
}

/// Whether weft may consider the query at all: Postgres's own conditions
/// for a parallel plan, and weft's settings.
unsafe fn eligible(parse: *mut pg_sys::Query, cursor_options: i32) -> Result<(), Refusal> {
    if !guc::ENABLE.get() {
        return Err(Refusal::NotEligible("weft.enable is off"));
    }
    // SAFETY: per the caller.
    let q = unsafe { &*parse };
    if !q.utilityStmt.is_null() {
        return Err(Refusal::NotEligible("not a SELECT"));
    }
    if q.commandType != pg_sys::CmdType::CMD_SELECT {
        // SAFETY: per the caller.
        unsafe { crate::hook::insert::insert_of_select(q)? };
    }
    if !crate::catalog::utf8_database() {
        return Err(Refusal::NotEligible("the database's encoding is not UTF8"));
    }
    // Without CURSOR_OPT_PARALLEL_OK (a cursor, a PL/pgSQL FOR loop, a
    // query fetched a few rows at a time), Postgres plans no workers
    // because its executor would stay in parallel mode between fetches.
    // weft's run enters and leaves parallel mode within the first fetch,
    // keeping every row, so that is no reason here. A cursor over a plain
    // scan of one table may be updated `WHERE CURRENT OF` it, which needs
    // the stock plan's scan of that table: such queries stay with Postgres.
    // SAFETY: per the caller.
    if cursor_options & pg_sys::CURSOR_OPT_PARALLEL_OK as i32 == 0 && unsafe { updatable_scan(q) } {
        return Err(Refusal::NotEligible(
            "a cursor over a plain scan of one table, which WHERE CURRENT OF may update",
        ));
    }
    // SAFETY: plain reads of the backend's state.
    if unsafe { pg_sys::IsInParallelMode() || pg_sys::ParallelWorkerNumber >= 0 } {
        return Err(Refusal::NotEligible("already in parallel mode"));
    }
    // SAFETY: per the caller.
    // Restricted is enough: Postgres counts every sublink as restricted
    // (its executor runs them in the leader), and what weft runs in
    // workers is only its allowlist of built-in, parallel-safe functions.
    // An INSERT's own target list (defaults, a serial column's nextval)
    // is the leader's to compute, as each row is written; weft computes
    // its SELECT.
    let computed = if q.commandType == pg_sys::CmdType::CMD_INSERT {
        // SAFETY: per the caller; eligible INSERTs read one subquery.
        unsafe { crate::hook::insert::source(q) }
    } else {
        parse
    };
    // SAFETY: a valid Query.
    if unsafe { pg_sys::max_parallel_hazard(computed) } as u8 == pg_sys::PROPARALLEL_UNSAFE {
        return Err(Refusal::NotEligible("the query calls a parallel-unsafe function"));
    }
    // SAFETY: a GUC variable.
    let workers_allowed = guc::workers() > 0;
    if !workers_allowed && !guc::FORCE.get() {
        return Err(Refusal::NotEligible(
            "no parallel workers allowed (weft.workers, max_parallel_workers_per_gather)",
        ));
    }
    Ok(())
}

/// Whether `q` reads one table in FROM (through subqueries and views
/// too) and no level of it groups, aggregates, windows, removes
/// duplicates or combines sets: a query whose stock plan may be a scan of
/// that table, through which `WHERE CURRENT OF` updates a row.
///
/// # Safety
/// `q` is a valid Query.
unsafe fn updatable_scan(q: &pg_sys::Query) -> bool {
    /// The tables `q`'s FROM reads, or None where a level does more than
    /// filter and project.
    unsafe fn tables(q: &pg_sys::Query) -> Option<usize> {
        if q.hasAggs
            || q.hasWindowFuncs
            || !q.groupClause.is_null()
            || !q.groupingSets.is_null()
            || !q.distinctClause.is_null()
            || !q.setOperations.is_null()
        {
            return None;
        }
        let mut count = 0;
        // SAFETY: per the caller; its range table.
        for rte in unsafe { crate::nodes::list::<pg_sys::RangeTblEntry>(q.rtable) } {
            // SAFETY: a range table entry, a subquery's Query.
            unsafe {
                match (*rte).rtekind {
                    pg_sys::RTEKind::RTE_RELATION => count += 1,
                    pg_sys::RTEKind::RTE_SUBQUERY if !(*rte).subquery.is_null() => count += tables(&*(*rte).subquery)?,
                    _ => {}
                }
            }
        }
        Some(count)
    }
    // SAFETY: per the caller.
    let count = unsafe { tables(q) };
    count == Some(1)
}

/// The most rows a sort of text under a collation other than C may be
/// estimated to sort for weft to take the query without `weft.force`.
const COLLATED_SORT_ROWS: f64 = 50_000.0;

/// About how many rows the query's ORDER BY sorts, by Postgres's
/// estimates: those of the first node under the stock plan's LIMIT,
/// Gather and projections (a Sort, a Gather Merge of the workers' sorts,
/// or an index scan that gives the order without one).
///
/// # Safety
/// `plan` is NULL or a valid plan tree.
unsafe fn ordered_rows(plan: *mut pg_sys::Plan) -> f64 {
    if plan.is_null() {
        return 0.0;
    }
    // SAFETY: per the caller.
    unsafe {
        match (*plan).type_ {
            pg_sys::NodeTag::T_Limit | pg_sys::NodeTag::T_Gather | pg_sys::NodeTag::T_Result
                if !(*plan).lefttree.is_null() =>
            {
                ordered_rows((*plan).lefttree)
            }
            _ => (*plan).plan_rows,
        }
    }
}

/// The most rows an ORDER BY with a LIMIT sorts anywhere in `plan` (a
/// subquery's `ORDER BY .. LIMIT`), as [`ordered_rows`] reads them under
/// each Limit node.
///
/// # Safety
/// `plan` is NULL or a valid plan tree.
unsafe fn limited_rows(plan: *mut pg_sys::Plan) -> f64 {
    if plan.is_null() {
        return 0.0;
    }
    // SAFETY: per the caller; each node read as its tag's type.
    unsafe {
        let own = if (*plan).type_ == pg_sys::NodeTag::T_Limit {
            ordered_rows((*plan).lefttree)
        } else {
            0.0
        };
        let mut children = vec![(*plan).lefttree, (*plan).righttree];
        match (*plan).type_ {
            pg_sys::NodeTag::T_SubqueryScan => children.push((*plan.cast::<pg_sys::SubqueryScan>()).subplan),
            pg_sys::NodeTag::T_Append => children.extend(crate::nodes::list::<pg_sys::Plan>(
                (*plan.cast::<pg_sys::Append>()).appendplans,
            )),
            _ => {}
        }
        children
            .into_iter()
            .map(|child| limited_rows(child))
            .fold(own, f64::max)
    }
}

/// Replaces the stock plan tree by a Weft scan when the stock plan costs
/// enough and the query translates.
unsafe fn take_over(
    stmt: *mut pg_sys::PlannedStmt,
    query: *mut pg_sys::Query,
    params: pg_sys::ParamListInfo,
) -> Result<(), Refusal> {
    // SAFETY: per the caller. An INSERT's rows are what its ModifyTable
    // reads: the plan under it, which weft replaces.
    let insert = unsafe { (*query).commandType } == pg_sys::CmdType::CMD_INSERT;
    // SAFETY: as above.
    let modify = unsafe { (*stmt).planTree };
    let (stock, leader_columns) = if insert {
        // SAFETY: as above; the INSERT's plan is a ModifyTable over its
        // source, and our copy of the Query becomes that source's SELECT.
        unsafe {
            if (*modify).type_ != pg_sys::NodeTag::T_ModifyTable || (*modify).lefttree.is_null() {
                return Err(Refusal::shape(
                    "an INSERT planned otherwise than a ModifyTable over its rows",
                ));
            }
            let leader = crate::hook::insert::as_select(query)?;
            ((*modify).lefttree, Some(leader))
        }
    } else {
        (modify, None)
    };
    // SAFETY: as above.
    let cost = unsafe { (*stock).total_cost };
    if !guc::FORCE.get() && cost < guc::MIN_COST.get() {
        return Err(Refusal::Cheap(format!(
            "the stock plan's cost {cost:.0} is below weft.min_cost"
        )));
    }
    // SAFETY: our copy of the Query, which `stmt` planned; on the backend
    // thread.
    let translation = unsafe {
        translate::follow_stock_plan(query, stmt);
        translate::translate(query, params, translate::Stage::Planning)?
    };
    // A query without a table has nothing to share among participants;
    // PL/pgSQL's simple expressions (`SELECT <expr>`), which it evaluates
    // without the executor's plan tree, are among them.
    if translation.relations.is_empty() {
        return Err(Refusal::shape("the query reads no table"));
    }
    // DataFusion must be able to plan it (its type coercion, for one, may
    // refuse what the translation built).
    let planned = crate::exec::run::check_plannable(&translation.plan);
    // SAFETY: the relations the translation opened.
    let reading = planned
        .as_ref()
        .map(|plan| unsafe { scan_cost(&translation.relations, plan) });
    for &(_, rel) in &translation.relations {
        // SAFETY: opened by the translation; the lock stays.
        unsafe { pg_sys::table_close(rel, pg_sys::NoLock as i32) };
    }
    let reading = reading.map_err(Refusal::datafusion)?;
    // weft reads most tables it uses whole (shared among the
    // participants); a stock plan not much dearer than that reading alone
    // (index lookups instead of scans) is left to Postgres.
    let ratio = guc::SCAN_COST_RATIO.get();
    // A call through the function bridge costs about what Postgres's own
    // evaluation costs per row where its arguments repeat, and more on
    // distinct values of wide types, which are copied into Postgres's form
    // and back (benches/README.md, 'The function bridge'). Beside joins,
    // grouping and DISTINCT, where weft gains most, that cost weighs
    // little; a query that only scans, filters and aggregates without
    // grouping gains nothing to pay it with, and is taken only under
    // weft.force.
    let plan = &translation.plan;
    if !guc::FORCE.get() && crate::plan::bridge::calls_postgres(plan) && !crate::plan::joins_or_groups(plan) {
        return Err(Refusal::Cheap(
            "the query calls Postgres functions through the function bridge and neither joins nor groups; only weft.force takes that".into(),
        ));
    }
    // A sort in Postgres's order (text under a collation other than C,
    // a type DataFusion does not order as Postgres) numbers the distinct
    // values of its whole input on one participant, comparing each pair
    // Postgres's way as a full sort does, where Postgres sorts in
    // parallel, and with a LIMIT keeps a bounded heap: past a few tens of
    // thousands of rows that costs more than weft gains (measured:
    // benches/README.md, 'TPC-H SF1 in an en_US.UTF-8 database').
    if !guc::FORCE.get() && crate::plan::collate::order::orders_by_postgres(&translation.plan) {
        // SAFETY: the stock plan tree and its subplans.
        let rows = unsafe {
            crate::nodes::list::<pg_sys::Plan>((*stmt).subplans)
                .into_iter()
                .chain([(*stmt).planTree])
                .map(|plan| limited_rows(plan))
                .fold(ordered_rows((*stmt).planTree), f64::max)
        };
        if rows > COLLATED_SORT_ROWS {
            return Err(Refusal::Cheap(format!(
                "it sorts about {rows:.0} rows in Postgres's order (text under a collation other than C, or a type DataFusion does not order as Postgres does), which weft sorts on one participant; only weft.force takes that"
            )));
        }
    }
    if !guc::FORCE.get() && cost < ratio * reading {
        return Err(Refusal::Cheap(format!(
            "the stock plan's cost {cost:.0} is below weft.scan_cost_ratio ({ratio}) times the cost of weft reading its tables, {reading:.0}"
        )));
    }
    // Every column DataFusion returns must convert into its Postgres type.
    let schema = translation.plan.schema();
    for (field, output) in schema.fields().iter().zip(&translation.outputs) {
        // SAFETY: on the backend thread.
        if unsafe { ColumnWriter::new(field.data_type(), output.typid, output.typmod) }.is_none() {
            return Err(Refusal::inexact(format!(
                "result column {} is {} in DataFusion, which does not convert exactly",
                field.name(),
                field.data_type()
            )));
        }
    }
    // SAFETY: as above.
    unsafe {
        // The scan keeps the stock plan, and its subplans stay, for a
        // query handed back while it runs (crate::error::Error::HandBack). weft's run
        // enters parallel mode itself; the stock plan, if it runs, runs
        // without workers, as Postgres runs a parallel plan whose rows are
        // fetched a few at a time.
        let scan = crate::hook::scan::plan(query, stock, &translation);
        if let Some(columns) = &leader_columns {
            crate::hook::insert::computed_by_leader(columns, scan);
            (*modify).lefttree = scan;
        } else {
            (*stmt).planTree = scan;
        }
        (*stmt).parallelModeNeeded = false;
    }
    Ok(())
}
