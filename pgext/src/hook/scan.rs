//! Custom Scan (Weft): runs a taken-over query across the leader and its
//! workers and returns its rows.
//!
//! The plan node keeps a copy of the analyzed Query (`custom_private`),
//! the query's result columns (`custom_scan_tlist`, typed as the Query's
//! target list) and the stock plan (`custom_plans`). At its first row the
//! scan translates the Query, runs it ([`crate::exec::run::run`]) and
//! materializes the result into a tuplestore (spilling past work_mem as
//! Postgres's own nodes do), from which it returns rows; a rescan rereads
//! the tuplestore. A query handed back while it runs ([`crate::error::Error::HandBack`];
//! no row has been returned then) is answered by the stock plan, started
//! only then.

use std::ffi::CString;

use pgrx::pg_sys::{self, NodeTag};
use pgrx::prelude::*;

use crate::exec::results::materialize;
use crate::exec::run::{self, Planned};
use crate::hook::explain::{emit, Explanation};
use crate::hook::translate::{self, Translation};

/// The scan's name in EXPLAIN.
const NAME: &std::ffi::CStr = c"Weft";

static mut SCAN_METHODS: pg_sys::CustomScanMethods = pg_sys::CustomScanMethods {
    CustomName: NAME.as_ptr(),
    CreateCustomScanState: Some(create_state),
};

static mut EXEC_METHODS: pg_sys::CustomExecMethods = pg_sys::CustomExecMethods {
    CustomName: NAME.as_ptr(),
    BeginCustomScan: Some(begin),
    ExecCustomScan: Some(exec),
    EndCustomScan: Some(end),
    ReScanCustomScan: Some(rescan),
    MarkPosCustomScan: None,
    RestrPosCustomScan: None,
    EstimateDSMCustomScan: None,
    InitializeDSMCustomScan: None,
    ReInitializeDSMCustomScan: None,
    InitializeWorkerCustomScan: None,
    ShutdownCustomScan: None,
    ExplainCustomScan: Some(explain),
};

/// Registers the scan's methods by name (plans are copied and may be
/// read back, and Postgres finds the methods by name then).
pub fn register() {
    // SAFETY: once, from _PG_init; Postgres keeps the pointer.
    unsafe { pg_sys::RegisterCustomScanMethods(&raw const SCAN_METHODS) };
}

/// The scan's state: Postgres's part first, then ours.
#[repr(C)]
struct WeftScanState {
    css: pg_sys::CustomScanState,
    /// The query, from the plan.
    query: *mut pg_sys::Query,
    /// The result, once run (in the executor's query memory context).
    store: *mut pg_sys::Tuplestorestate,
    /// The slot rows are returned in (the tuplestore holds minimal
    /// tuples; the scan slot Postgres makes is virtual).
    slot: *mut pg_sys::TupleTableSlot,
    /// What EXPLAIN ANALYZE shows, once run under instrumentation: the
    /// plan with the run's metrics, or why the query was handed back.
    explained: Option<Box<Explanation>>,
    /// The executor flags the scan began with (the stock plan starts with
    /// them too).
    eflags: i32,
    /// The stock plan's state, once the query is handed back to it (also
    /// the one entry of `css.custom_ps`, where EXPLAIN finds it); then
    /// `store` stays NULL.
    stock: *mut pg_sys::PlanState,
    /// For each result column, the stock plan's output column holding it
    /// (its junk columns, sort keys not selected, are skipped).
    stock_columns: Vec<usize>,
}

/// The Weft scan replacing `stock`, for `query` as `translation` computes
/// it.
///
/// # Safety
/// `query` is the translated Query (ours, kept by the plan), `stock` the
/// stock plan tree for it, on the backend thread.
pub unsafe fn plan(
    query: *mut pg_sys::Query,
    stock: *mut pg_sys::Plan,
    translation: &Translation,
) -> *mut pg_sys::Plan {
    // SAFETY: per the caller; palloc0 gives a zeroed node we fill.
    unsafe {
        let scan = pg_sys::palloc0(std::mem::size_of::<pg_sys::CustomScan>()).cast::<pg_sys::CustomScan>();
        let plan = &mut (*scan).scan.plan;
        plan.type_ = NodeTag::T_CustomScan;
        plan.startup_cost = (*stock).startup_cost;
        plan.total_cost = (*stock).total_cost;
        plan.plan_rows = (*stock).plan_rows;
        plan.plan_width = (*stock).plan_width;
        // The scan tuple: the DataFusion plan's columns.
        let mut scan_tlist = std::ptr::null_mut();
        for (i, output) in translation.outputs.iter().enumerate() {
            let column = pg_sys::makeNullConst(output.typid, output.typmod, output.collation);
            let name = CString::new(format!("weft_{}", i + 1)).expect("no NUL");
            scan_tlist = pg_sys::lappend(
                scan_tlist,
                pg_sys::makeTargetEntry(column.cast(), (i + 1) as i16, pg_sys::pstrdup(name.as_ptr()), false).cast(),
            );
        }
        // The result: each visible target entry, finished over the scan
        // tuple.
        let visible = translate::targets(query).into_iter().filter(|&t| !(*t).resjunk);
        let mut targetlist = std::ptr::null_mut();
        for (i, (target, finished)) in visible.zip(&translation.finish).enumerate() {
            let name = if (*target).resname.is_null() {
                std::ptr::null_mut()
            } else {
                pg_sys::pstrdup((*target).resname)
            };
            targetlist = pg_sys::lappend(
                targetlist,
                pg_sys::makeTargetEntry(finished.cast(), (i + 1) as i16, name, false).cast(),
            );
        }
        plan.targetlist = targetlist;
        (*scan).custom_scan_tlist = scan_tlist;
        (*scan).custom_private = pg_sys::lappend(std::ptr::null_mut(), query.cast());
        (*scan).custom_plans = pg_sys::lappend(std::ptr::null_mut(), stock.cast());
        (*scan).methods = &raw const SCAN_METHODS;
        // Rows are kept in a tuplestore that reads both ways; a cursor may
        // fetch backward exactly where it could over the stock plan (a
        // SCROLL cursor's has a Material node on top), so that weft
        // changes neither what it allows nor, handed back, what runs.
        if pg_sys::ExecSupportsBackwardScan(stock) {
            (*scan).flags |= pg_sys::CUSTOMPATH_SUPPORT_BACKWARD_SCAN;
        }
        scan.cast()
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn create_state(cscan: *mut pg_sys::CustomScan) -> *mut pg_sys::Node {
    // SAFETY: called by the executor with our plan node.
    unsafe {
        let state = pg_sys::palloc0(std::mem::size_of::<WeftScanState>()).cast::<WeftScanState>();
        (*state).css.ss.ps.type_ = NodeTag::T_CustomScanState;
        (*state).css.methods = &raw const EXEC_METHODS;
        let private = crate::hook::translate::node_list((*cscan).custom_private);
        (*state).query = private.first().copied().unwrap_or(std::ptr::null_mut()).cast();
        // palloc0 left the Vec's bytes zero, which is no Vec: write one.
        std::ptr::write(&raw mut (*state).stock_columns, Vec::new());
        std::ptr::write(&raw mut (*state).explained, None);
        state.cast()
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn begin(node: *mut pg_sys::CustomScanState, estate: *mut pg_sys::EState, eflags: i32) {
    let state = node.cast::<WeftScanState>();
    // SAFETY: our state, initialized by ExecInitCustomScan up to here.
    unsafe {
        let tupdesc = (*(*state).css.ss.ss_ScanTupleSlot).tts_tupleDescriptor;
        (*state).slot = pg_sys::ExecInitExtraTupleSlot(estate, tupdesc, &raw const pg_sys::TTSOpsMinimalTuple);
        (*state).eflags = eflags;
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn exec(node: *mut pg_sys::CustomScanState) -> *mut pg_sys::TupleTableSlot {
    let state = node.cast::<WeftScanState>();
    // SAFETY: our state, on the backend thread. ExecScan projects each
    // row through the plan's target list (the finishing expressions).
    unsafe {
        if (*state).store.is_null() && (*state).stock.is_null() {
            run(state);
        }
        if !(*state).stock.is_null() {
            return next_from_stock(state);
        }
        pg_sys::ExecScan(&raw mut (*state).css.ss, Some(next), Some(recheck))
    }
}

/// The stock plan's next row as the scan's result row (its visible
/// columns), or an empty slot at the end.
///
/// # Safety
/// `state` is our scan's state, handed back to the stock plan.
unsafe fn next_from_stock(state: *mut WeftScanState) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: per the caller; the stock plan's slot stays valid until its
    // next row, after the executor has taken ours.
    unsafe {
        let result = (*state).css.ss.ps.ps_ResultTupleSlot;
        pg_sys::ExecClearTuple(result);
        let row = pg_sys::ExecProcNode((*state).stock);
        if row.is_null() || (*row).tts_flags & pg_sys::TTS_FLAG_EMPTY as u16 != 0 {
            return result;
        }
        pg_sys::slot_getallattrs(row);
        let count = (*(*row).tts_tupleDescriptor).natts as usize;
        let values = std::slice::from_raw_parts((*row).tts_values, count);
        let nulls = std::slice::from_raw_parts((*row).tts_isnull, count);
        for (to, &from) in (*state).stock_columns.iter().enumerate() {
            *(*result).tts_values.add(to) = values[from];
            *(*result).tts_isnull.add(to) = nulls[from];
        }
        pg_sys::ExecStoreVirtualTuple(result)
    }
}

/// Starts the stock plan in place of weft's run, `reason` being why.
///
/// # Safety
/// `state` is our scan's state, on the backend thread, before it has
/// returned any row.
unsafe fn hand_back(state: *mut WeftScanState, reason: &str) {
    // SAFETY: per the caller; the plan node is our CustomScan, whose one
    // custom plan is the stock plan, started in the executor's query
    // memory as the executor starts every node.
    unsafe {
        let cscan = (*state).css.ss.ps.plan.cast::<pg_sys::CustomScan>();
        let stock_plan = crate::hook::translate::node_list((*cscan).custom_plans)
            .first()
            .copied()
            .unwrap_or_else(|| crate::error::report("weft", "the scan has no stock plan to hand the query back to"))
            .cast::<pg_sys::Plan>();
        let estate = (*state).css.ss.ps.state;
        let previous = pg_sys::MemoryContextSwitchTo((*estate).es_query_cxt);
        (*state).stock_columns = crate::hook::translate::node_list((*stock_plan).targetlist)
            .into_iter()
            .enumerate()
            .filter(|&(_, target)| !(*target.cast::<pg_sys::TargetEntry>()).resjunk)
            .map(|(i, _)| i)
            .collect();
        (*state).stock = pg_sys::ExecInitNode(stock_plan, estate, (*state).eflags);
        (*state).css.custom_ps = pg_sys::lappend(std::ptr::null_mut(), (*state).stock.cast());
        if !(*state).css.ss.ps.instrument.is_null() {
            (*state).explained = Some(Box::new(Explanation::HandedBack(reason.to_string())));
        }
        pg_sys::MemoryContextSwitchTo(previous);
    }
}

/// The next materialized row in the scan slot, or an empty slot at the
/// end.
#[pg_guard]
unsafe extern "C-unwind" fn next(node: *mut pg_sys::ScanState) -> *mut pg_sys::TupleTableSlot {
    let state = node.cast::<WeftScanState>();
    // SAFETY: our state (ScanState is its first member), run already. The
    // projection was compiled for the scan slot's kind (virtual), so the
    // row is copied there from the tuplestore's minimal tuple.
    unsafe {
        let scan = (*state).css.ss.ss_ScanTupleSlot;
        let fetched = (*state).slot;
        let forward = (*(*state).css.ss.ps.state).es_direction != pg_sys::ScanDirection::BackwardScanDirection;
        if pg_sys::tuplestore_gettupleslot((*state).store, forward, false, fetched) {
            let copy = (*(*scan).tts_ops).copyslot.expect("every slot kind copies");
            copy(scan, fetched);
            scan
        } else {
            pg_sys::ExecClearTuple(scan)
        }
    }
}

/// Rows are never rechecked (no EvalPlanQual: weft reads no row locks).
#[pg_guard]
unsafe extern "C-unwind" fn recheck(_node: *mut pg_sys::ScanState, _slot: *mut pg_sys::TupleTableSlot) -> bool {
    true
}

/// The scan's query translated again, with the execution's parameter
/// values; why not, where it no longer translates with them (a generic
/// plan's parameters, unknown when it was planned, may hold values weft
/// does not take).
///
/// # Safety
/// `state` is our scan's state, initialized by the executor.
unsafe fn planned(state: *mut WeftScanState) -> Result<Planned, String> {
    // SAFETY: per the caller.
    let (query, params) = unsafe { ((*state).query, (*(*state).css.ss.ps.state).es_param_list_info) };
    // SAFETY: the Query the plan keeps; the executor's parameters.
    let translation = unsafe { translate::translate(query, params, translate::Stage::Running) }
        .map_err(|refusal| format!("the query does not translate with its parameters' values: {refusal}"))?;
    Ok(Planned::new(
        run::new_state(run::session_config(1)),
        translation.plan,
        translation.relations,
    ))
}

/// Translates and runs the query, materializing its rows.
///
/// # Safety
/// `state` is our scan's state, on the backend thread.
unsafe fn run(state: *mut WeftScanState) {
    // SAFETY: per the caller.
    unsafe {
        // A plan cached outside parallel mode may run inside it (a
        // function's query, called by a parallel query's leader), where no
        // parallel section can start.
        if pg_sys::IsInParallelMode() {
            return hand_back(
                state,
                "the query runs inside parallel mode, where weft cannot start its workers",
            );
        }
        let analyze = !(*state).css.ss.ps.instrument.is_null();
        let output = match planned(state).and_then(|planned| run::run(planned, analyze)) {
            Ok(output) => output,
            Err(reason) => return hand_back(state, &reason),
        };
        let estate = (*state).css.ss.ps.state;
        let previous = pg_sys::MemoryContextSwitchTo((*estate).es_query_cxt);
        let store = pg_sys::tuplestore_begin_heap(true, false, pg_sys::work_mem);
        if let Some(explained) = output.explain {
            (*state).explained = Some(Box::new(Explanation::Plan(explained)));
        }
        pg_sys::MemoryContextSwitchTo(previous);
        let tupdesc = (*(*state).css.ss.ss_ScanTupleSlot).tts_tupleDescriptor;
        materialize("weft", &output.schema, &output.batches, tupdesc, store);
        (*state).store = store;
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn end(node: *mut pg_sys::CustomScanState) {
    let state = node.cast::<WeftScanState>();
    // SAFETY: our state; the store is ours.
    unsafe {
        if !(*state).store.is_null() {
            pg_sys::tuplestore_end((*state).store);
            (*state).store = std::ptr::null_mut();
        }
        if !(*state).stock.is_null() {
            pg_sys::ExecEndNode((*state).stock);
            (*state).stock = std::ptr::null_mut();
        }
        // The state's memory is the executor's; the Vec's is Rust's.
        drop(std::mem::take(&mut (*state).stock_columns));
        drop((*state).explained.take());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn rescan(node: *mut pg_sys::CustomScanState) {
    let state = node.cast::<WeftScanState>();
    // SAFETY: our state.
    unsafe {
        if !(*state).store.is_null() {
            pg_sys::tuplestore_rescan((*state).store);
        }
        if !(*state).stock.is_null() {
            pg_sys::ExecReScan((*state).stock);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn explain(
    node: *mut pg_sys::CustomScanState,
    _ancestors: *mut pg_sys::List,
    es: *mut pg_sys::ExplainState,
) {
    let state = node.cast::<WeftScanState>();
    // SAFETY: our state and Postgres's explain state.
    unsafe {
        match &(*state).explained {
            Some(explained) => emit(es, explained),
            None => match planned(state) {
                Ok(planned) => {
                    let explained = run::explain(&planned);
                    planned.close();
                    emit(es, &Explanation::Plan(explained));
                }
                Err(reason) => emit(es, &Explanation::HandedBack(reason)),
            },
        }
    }
}
