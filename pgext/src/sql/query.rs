//! `weft.query(sql)` and `weft.explain(sql, run)`: DataFusion SQL over
//! this database's tables, run by the leader and its parallel workers.
//!
//! The leader:
//! 1. parses the SQL, resolves every table it names as Postgres would
//!    (search_path, AccessShareLock), checks SELECT privilege (Postgres's
//!    own error when denied) and refuses tables with row-level security;
//! 2. sorts its FROM lists by Postgres's plan of the same text
//!    ([`sql_order`]), plans it logically, launches the workers, and
//!    plans it physically for the participants that started (an SPMD
//!    plan, [`Distribute`]);
//! 3. gives every scan a slot: a Postgres parallel heap scan in the
//!    section's segment, initialized under the statement's snapshot;
//! 4. publishes the payload ([`Payload`]: the slots, the encoded plan,
//!    the scans' shared state, room for every participant's metrics),
//!    then runs participant 0's part: its result is the query's.
//!
//! A worker opens the slots' relations, checks they are the ones the
//! leader planned with, decodes the plan and runs its part.

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::TableReference;
use datafusion::config::Dialect;
use datafusion::execution::{SessionState, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode};
use weft_runtime::{
    exchange_count, explain as explain_plan, participant_config, spmd_config, Distribute, Edge, EdgeStats,
    ImpliedEqualities, Metrics, Participant, PlanCodec, RuntimeError, ShareRepeated,
};

use crate::exec::parallel::{Job, Part, Section};
use crate::exec::participate;
use crate::guc;
use crate::hook::translate::{pgfn, Translation};
use crate::pgcall;
use crate::plan::heap::{HeapCodec, HeapColumn, HeapScanExec, HeapTable, ScanBinding, SlotTarget};
use crate::plan::keys;
use crate::plan::lookup::IndexLookups;
use crate::sql::order;
use crate::types::{ColumnWriter, PgType};

/// The default schema DataFusion resolves unqualified names in: a name no
/// one writes, registered with the tables the query names unqualified
/// (which Postgres resolved through search_path).
const SEARCH_PATH_SCHEMA: &str = "$search_path";
/// The catalog weft registers tables in.
const CATALOG: &str = "postgres";

extension_sql!(
    r#"
CREATE FUNCTION query(sql text) RETURNS SETOF record
    STRICT VOLATILE PARALLEL UNSAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'weft_query';
COMMENT ON FUNCTION query(text) IS
    'Runs DataFusion SQL over this database''s tables across the leader and parallel workers; use with a column definition list.';
"#,
    name = "weft_query"
);

/// `weft.query`'s version-1 function info.
#[no_mangle]
pub extern "C" fn pg_finfo_weft_query() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `weft.query(sql text) RETURNS SETOF record`: materializes the query's
/// rows as the caller's column definition list declares them.
///
/// # Safety
/// Called by Postgres's function manager with a valid `fcinfo`.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn weft_query(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: per the caller; the function is STRICT, so the argument is
    // a non-null text.
    let sql: String = unsafe { pgrx::fcinfo::pg_getarg::<String>(fcinfo, 0) }.unwrap_or_default();
    // SAFETY: as above; InitMaterializedSRF checks the call site allows a
    // materialized set and takes the column definition list's descriptor.
    let (tupdesc, store) = unsafe {
        pg_sys::InitMaterializedSRF(fcinfo, pg_sys::MAT_SRF_USE_EXPECTED_DESC);
        let rsinfo = (*fcinfo).resultinfo.cast::<pg_sys::ReturnSetInfo>();
        ((*rsinfo).setDesc, (*rsinfo).setResult)
    };
    let output = run(Planned::new(&sql), false).unwrap_or_else(|reason| report("weft.query", &reason));
    // SAFETY: the descriptor and store InitMaterializedSRF made, on the
    // backend thread, outside every tokio frame.
    unsafe { materialize("weft.query", &output.schema, &output.batches, tupdesc, store) };
    pg_sys::Datum::null()
}

/// `weft.explain(sql text, run boolean DEFAULT false)`: the SPMD plan weft
/// runs `sql` with; with `run`, after running it, with every operator's
/// metrics in the leader and every edge's traffic.
#[pg_extern(volatile, parallel_unsafe)]
fn explain(sql: &str, run: default!(bool, false)) -> SetOfIterator<'static, String> {
    let text = if run {
        self::run(Planned::new(sql), true)
            .unwrap_or_else(|reason| report("weft.explain", &reason))
            .explain
    } else {
        let planned = Planned::new(sql);
        let text = explain_text(&planned);
        planned.close();
        text
    };
    SetOfIterator::new(text.lines().map(str::to_string).collect::<Vec<_>>())
}

/// `logical` planned physically for one participant, with weft's index
/// lookups, or why DataFusion cannot plan it (a planning-time check and
/// what the cost gate weighs; the query plans again, for the
/// participants that start, when it runs).
pub fn check_plannable(logical: &LogicalPlan) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
    let state = new_state(session_config(1));
    let plan = block_on(state.create_physical_plan(logical))?;
    let lookups = IndexLookups::new(guc::INDEX_LOOKUP_RATIO.get());
    let plan = lookups.own_keys(plan)?;
    lookups.divided_keys(plan, 1)
}

/// The SPMD plan `planned` would run with, for the workers weft asks for
/// (EXPLAIN without running).
pub fn explain_text(planned: &Planned) -> String {
    let participants = guc::workers() as usize + 1;
    let (plan, refused) = planned.physical(participants);
    // As each participant will run it (the join keys linked to the scans).
    let runners = if refused.is_some() { 1 } else { participants };
    let plan = keys::link(plan, runners).unwrap_or_else(|e| report("weft", &e.to_string()));
    format!(
        "{}\n{}",
        heading(participants, participants, refused.as_deref()),
        explain_plan(plan.as_ref(), None)
    )
}

/// A query's result at the leader, and its EXPLAIN (when asked for).
pub struct Output {
    /// The result's schema.
    pub schema: SchemaRef,
    /// The result, in order.
    pub batches: Vec<RecordBatch>,
    /// The plan with the run's metrics, when asked for.
    pub explain: String,
}

/// A query planned logically over opened relations.
pub struct Planned {
    state: SessionState,
    logical: LogicalPlan,
    /// Every relation the query names, opened (locked AccessShare).
    relations: Vec<(pg_sys::Oid, pg_sys::Relation)>,
}

impl Planned {
    /// Parses `sql`, resolves and checks its tables, plans it logically.
    fn new(sql: &str) -> Planned {
        check_encoding();
        let ctx = SessionContext::new_with_state(new_state(session_config(1)));
        let state = ctx.state();
        let mut statement = state
            .sql_to_statement(sql, &Dialect::PostgreSQL)
            .unwrap_or_else(|e| report("weft.query", &e.to_string()));
        let references = state
            .resolve_table_references(&statement)
            .unwrap_or_else(|e| report("weft.query", &e.to_string()));
        let mut relations = Vec::new();
        let mut relids = HashMap::new();
        for reference in references {
            let (relid, rel, table) = resolve(&reference);
            relations.push((relid, rel));
            relids.insert(reference.clone(), relid);
            let schema = reference.schema().unwrap_or(SEARCH_PATH_SCHEMA).to_string();
            let catalog = ctx.catalog(CATALOG).expect("weft's catalog exists");
            if catalog.schema(&schema).is_none() {
                catalog
                    .register_schema(&schema, Arc::new(MemorySchemaProvider::new()))
                    .unwrap_or_else(|e| report("weft.query", &e.to_string()));
            }
            let reference = TableReference::full(CATALOG, schema, reference.table());
            ctx.register_table(reference, Arc::new(table))
                .unwrap_or_else(|e| report("weft.query", &e.to_string()));
        }
        order::follow_postgres_plan(sql, &mut statement, &relids);
        let state = ctx.state();
        let logical =
            block_on(state.statement_to_plan(statement)).unwrap_or_else(|e| report("weft.query", &e.to_string()));
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&logical)
            .unwrap_or_else(|e| report("weft.query", &format!("{e} (weft.query runs queries only)")));
        Planned {
            state,
            logical,
            relations,
        }
    }

    /// A plan translated from a Postgres Query, over the relations the
    /// translation opened.
    pub fn from_translation(translation: Translation) -> Planned {
        check_encoding();
        Planned {
            state: new_state(session_config(1)),
            logical: translation.plan,
            relations: translation.relations,
        }
    }

    /// The physical SPMD plan for `participants`, every scan with its
    /// slot; or, when weft cannot distribute the query (a shape
    /// [`Distribute`] refuses), the plan for the leader alone and why.
    pub fn physical(&self, participants: usize) -> (Arc<dyn ExecutionPlan>, Option<String>) {
        match self.try_physical(participants) {
            Ok(plan) => (plan, None),
            Err(e) if participants > 1 => match self.try_physical(1) {
                Ok(plan) => (plan, Some(e.to_string())),
                Err(e) => report("weft", &e.to_string()),
            },
            Err(e) => report("weft", &e.to_string()),
        }
    }

    fn try_physical(&self, participants: usize) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let state = SessionStateBuilder::new_from_existing(self.state.clone())
            .with_config(session_config(participants))
            .build();
        let plan = block_on(state.create_physical_plan(&self.logical))?;
        // weft's rules run after DataFusion's and after its final check
        // that the plan is executable, which would refuse a join over
        // index lookups: partitioned, and yet neither side hash
        // partitioned (each participant joins its own build rows with the
        // rows their keys fetch).
        let options = state.config_options();
        let lookups = IndexLookups::new(guc::INDEX_LOOKUP_RATIO.get());
        let plan = ShareRepeated::new(PlanCodec::new(Arc::new(HeapCodec::comparing()))).optimize(plan, options)?;
        let plan = lookups.own_keys(plan)?;
        let plan = Distribute::new(participants).optimize(plan, options)?;
        let plan = lookups.divided_keys(plan, participants)?;
        let mut next = 0u32;
        Ok(plan
            .transform_up(|node| {
                Ok(match node.downcast_ref::<HeapScanExec>() {
                    Some(scan) => {
                        next += 1;
                        Transformed::yes(Arc::new(scan.with_slot(next - 1)) as Arc<dyn ExecutionPlan>)
                    }
                    None => Transformed::no(node),
                })
            })?
            .data)
    }

    /// The opened relation `relid`.
    fn relation(&self, relid: pg_sys::Oid) -> pg_sys::Relation {
        self.relations
            .iter()
            .find(|(r, _)| *r == relid)
            .map(|(_, rel)| *rel)
            .unwrap_or_else(|| pgrx::error!("weft: the plan scans a relation the query did not name"))
    }

    /// Closes the relations (their locks last until the transaction ends).
    pub fn close(self) {
        for (_, rel) in self.relations {
            // SAFETY: opened by `resolve`, closed once.
            unsafe { pg_sys::table_close(rel, pg_sys::NoLock as i32) };
        }
    }
}

/// Plans and runs `sql`; with `explain_run`, also renders the plan with
/// the run's metrics. Fails, with the reason, where the query is to be
/// handed back to Postgres ([`crate::handback`]); raises every other error.
pub fn run(planned: Planned, explain_run: bool) -> Result<Output, String> {
    let requested = guc::workers() as usize;
    let launched = Section::launch(Job::Query, [0; 4], requested, 1);
    let participants = launched.participants() as usize;
    let (plan, refused) = planned.physical(participants);
    // Workers run the plan only if it was made for them.
    let runners = if refused.is_some() { 1 } else { participants };
    let schema = plan.schema();
    let bytes = PlanCodec::new(Arc::new(HeapCodec::default()))
        .encode(plan.clone())
        .unwrap_or_else(|e| report("weft", &e.to_string()));

    // Each slot's relation, by slot number.
    let mut slots: Vec<Option<(SlotTarget, pg_sys::Relation)>> = Vec::new();
    plan.apply(|node| {
        if let Some(scan) = node.downcast_ref::<HeapScanExec>() {
            let rel = planned.relation(scan.relid());
            // SAFETY: an open relation.
            let relfilenode = unsafe { (*rel).rd_node.relNode.to_u32() };
            let slot = scan.slot().unwrap_or_default() as usize;
            slots.resize(slots.len().max(slot + 1), None);
            slots[slot] = Some((
                SlotTarget {
                    relid: scan.relid(),
                    relfilenode,
                },
                rel,
            ));
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .unwrap_or_else(|e| report("weft", &e.to_string()));
    let slots: Vec<(SlotTarget, pg_sys::Relation)> = slots
        .into_iter()
        .map(|slot| slot.unwrap_or_else(|| pgrx::error!("weft: a scan slot was left unassigned")))
        .collect();

    // SAFETY: the statement's snapshot, which the parallel scans carry to
    // every participant.
    let snapshot = unsafe { pg_sys::GetActiveSnapshot() };
    let scan_sizes: Vec<usize> = slots
        .iter()
        // SAFETY: open relations, on the backend thread.
        .map(|(_, rel)| unsafe { pg_sys::table_parallelscan_estimate(*rel, snapshot) })
        .collect();
    let exchanges = exchange_count(&plan);
    let layout = Payload::layout(bytes.len(), &scan_sizes, participants, runners, exchanges);
    let section = launched.publish(exchanges, guc::mesh_rings(), layout.len, |start| {
        // SAFETY: `start` is the payload, `layout.len` bytes, ours alone
        // until published.
        unsafe { layout.write(start, &bytes, &slots, snapshot) }
    });

    let section_segment = section.part().segment();
    let ring = section.part().mesh.layout().ring_capacity();
    let (payload, _) = section.part().payload();
    // SAFETY: the payload was written above and stays mapped until finish.
    let bindings = unsafe { layout.bindings(payload, slots.iter().map(|(target, rel)| (*target, *rel))) };
    let outcome = participate::run(section.part(), section.worker_handles(), |node| {
        execute(node, &bytes, bindings)
    });
    pgcall::rethrow_pending();
    // Workers finish (their first error is raised here) before their
    // metrics are read.
    let metrics = section.finish(|part| {
        let (payload, _) = part.payload();
        // SAFETY: every participant has finished writing its slot.
        (1..participants)
            .map(|p| unsafe { layout.read_metrics(payload, p) })
            .collect::<Vec<_>>()
    });
    let (batches, decoded, leader_metrics) = match outcome {
        Ok(((batches, decoded), metrics)) => (batches, decoded, metrics),
        Err(e) => {
            let message = e.to_string();
            if let Some(reason) = crate::handback::reason(&message) {
                planned.close();
                return Err(reason.to_string());
            }
            report("weft", &message)
        }
    };
    let explain = if explain_run {
        let mut all = vec![leader_metrics];
        all.extend(metrics);
        format!(
            "{}\n{}\n{}",
            heading(requested + 1, participants, refused.as_deref()),
            mesh_line(section_segment, exchanges, ring),
            explain_plan(decoded.as_ref(), Some(&all))
        )
    } else {
        String::new()
    };
    planned.close();
    Ok(Output {
        schema,
        batches,
        explain,
    })
}

/// EXPLAIN's first line: who runs the plan.
fn heading(requested: usize, participants: usize, refused: Option<&str>) -> String {
    let who = format!(
        "{participants} participants (the leader and {} workers; {} requested)",
        participants - 1,
        requested - 1
    );
    match refused {
        None => format!("weft plan for {who}"),
        Some(reason) => {
            format!("weft plan for the leader alone, of {who}: weft cannot distribute this query ({reason})")
        }
    }
}

/// EXPLAIN ANALYZE's line on the run's shared memory: the section's
/// segment (`size` bytes, `reserved` when carved out of
/// `weft.shared_memory`) for its `exchanges` exchanges of `ring`-byte
/// rings.
fn mesh_line((size, reserved): (usize, bool), exchanges: u32, ring: usize) -> String {
    let whence = if reserved {
        "in weft.shared_memory"
    } else {
        "in a segment of its own (weft.shared_memory had no room for it)"
    };
    format!(
        "shared memory: {:.1} MB for {exchanges} exchanges (rings of {} kB) {whence}",
        size as f64 / (1024.0 * 1024.0),
        ring / 1024
    )
}

/// A worker's part of a query.
pub fn worker(part: &Part) {
    let (payload, len) = part.payload();
    // SAFETY: the leader wrote the payload before letting us go.
    let layout = unsafe { Payload::read(payload, len) }.unwrap_or_else(|e| pgrx::error!("weft: {e}"));
    let mut relations = Vec::new();
    let mut targets = Vec::new();
    // SAFETY: as above.
    for target in unsafe { layout.targets(payload) } {
        // SAFETY: on the backend thread; table_open raises an ERROR if the
        // relation is gone.
        let rel = unsafe { pg_sys::table_open(target.relid, pg_sys::AccessShareLock as i32) };
        // SAFETY: an open relation.
        let relfilenode = unsafe { (*rel).rd_node.relNode.to_u32() };
        if relfilenode != target.relfilenode {
            pgrx::error!("weft: relation {} changed under the query", target.relid.to_u32());
        }
        relations.push(rel);
        targets.push((target, rel));
    }
    // SAFETY: as above.
    let bindings = unsafe { layout.bindings(payload, targets.into_iter()) };
    // SAFETY: the plan's bytes, written before publish, never changed.
    let bytes = unsafe { layout.plan(payload) };
    let outcome = if (part.id as usize) < layout.runners {
        participate::run(part, Vec::new(), |node| execute(node, bytes, bindings)).map(|(_, metrics)| ((), metrics))
    } else {
        // The plan is the leader's alone; being done is all that is asked.
        participate::run(part, Vec::new(), |_| async { Ok(()) })
    };
    pgcall::rethrow_pending();
    let metrics = match outcome {
        Ok((_, metrics)) => metrics,
        // Our own failure, recorded as the query's abort: the leader hands
        // the query back to Postgres, or rethrows this error as raised
        // here, as the leader would raise it (the SQLSTATE does not depend
        // on which process met the failure).
        Err(RuntimeError::Aborted {
            participant, message, ..
        }) if participant == part.id && crate::handback::reason(&message).is_none() => report("weft", &message),
        // Another participant failed first and reports it, or the leader
        // hands the query back.
        Err(RuntimeError::Aborted { .. }) => Metrics::default(),
        Err(e) => report("weft", &e.to_string()),
    };
    // SAFETY: our own metrics slot.
    unsafe { layout.write_metrics(payload, part.id as usize, &metrics) };
    for rel in relations {
        // SAFETY: opened above; the lock stays until the transaction ends.
        unsafe { pg_sys::table_close(rel, pg_sys::NoLock as i32) };
    }
}

/// One participant's run: decode the plan bound to its scans, run it.
async fn execute(
    node: Arc<Participant>,
    bytes: &[u8],
    bindings: Vec<(SlotTarget, ScanBinding)>,
) -> Result<(Vec<RecordBatch>, Arc<dyn ExecutionPlan>), RuntimeError> {
    let participants = node.participants() as usize;
    let config = participant_config(session_config(participants), node);
    let state = new_state(config);
    let task = Arc::new(TaskContext::from(&state));
    let plan = PlanCodec::new(Arc::new(HeapCodec::new(bindings))).decode(bytes, &task)?;
    let plan = keys::link(plan, participants)?;
    let batches = collect(plan.clone(), task).await?;
    Ok((batches, plan))
}

/// The session configuration every participant plans and runs with.
fn session_config(participants: usize) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, SEARCH_PATH_SCHEMA)
        .with_information_schema(false)
        .with_batch_size(crate::plan::heap::BATCH_ROWS);
    // `7.0` is a numeric in Postgres, not a float: keep such arithmetic
    // exact.
    config.options_mut().sql_parser.parse_float_as_decimal = true;
    spmd_config(config, participants)
}

/// A session with DataFusion's functions and weft's ([`pgfn`]).
fn new_state(config: SessionConfig) -> SessionState {
    let mut state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_analyzer_rule(Arc::new(ImpliedEqualities))
        .build();
    pgfn::register(&mut state).unwrap_or_else(|e| report("weft", &e.to_string()));
    state
}

/// Plans a trivial query once, so that what DataFusion builds on first
/// use (its registry of functions, its rules' state: half a millisecond
/// of work) is in place in every process forked after: called in the
/// postmaster, it spares each backend's first query and every worker
/// that much. Pure Rust, no Postgres call and no thread; a failure is
/// left to the first query to meet.
pub fn warm_up() {
    use datafusion::functions_aggregate::expr_fn::sum;
    use datafusion::logical_expr::{col, lit, LogicalPlanBuilder};
    // new_state's and block_on's errors are panics here, outside any
    // guarded call: caught below.
    let _ = std::panic::catch_unwind(|| {
        let state = new_state(session_config(1));
        let plan = LogicalPlanBuilder::empty(true)
            .project([lit(1i64).alias("x")])
            .and_then(|b| b.aggregate([col("x")], [sum(col("x"))]))
            .and_then(|b| b.build());
        if let Ok(plan) = plan {
            let _ = block_on(state.create_physical_plan(&plan));
        }
    });
}

/// Runs a planning future on a throwaway current-thread runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| pgrx::error!("weft: cannot start a runtime: {e}"))
        .block_on(future)
}

/// Raises `message` as an ERROR from `what`.
pub fn report(what: &str, message: &str) -> ! {
    // An error Postgres itself would raise (overflow, division by zero)
    // keeps Postgres's SQLSTATE and words.
    if let Some((sqlstate, own)) = pgfn::sqlstate_of(message) {
        pgrx::ereport!(ERROR, PgSqlErrorCode::from(sqlstate), own);
    }
    pgrx::ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("{what}: {message}")
    );
}

/// weft reads text as UTF-8, which only a UTF8 database guarantees.
fn check_encoding() {
    if !utf8_database() {
        report("weft.query", "weft needs a database with UTF8 encoding");
    }
}

/// Whether this database's encoding is UTF8 (weft reads text as UTF-8).
pub fn utf8_database() -> bool {
    // SAFETY: a plain query of the backend's state.
    unsafe { pg_sys::GetDatabaseEncoding() == pg_sys::pg_enc::PG_UTF8 as i32 }
}

/// Resolves `reference` as Postgres resolves a table name, checks the
/// caller may read it and weft can, and opens it.
fn resolve(reference: &TableReference) -> (pg_sys::Oid, pg_sys::Relation, HeapTable) {
    if let Some(catalog) = reference.catalog() {
        // SAFETY: the current database's name, on the backend thread.
        let current = unsafe { std::ffi::CStr::from_ptr(pg_sys::get_database_name(pg_sys::MyDatabaseId)) };
        if current.to_str().ok() != Some(catalog) {
            pgrx::ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("cross-database references are not implemented: {reference}")
            );
        }
    }
    let schema = reference
        .schema()
        .map(|s| std::ffi::CString::new(s).expect("an identifier"));
    let table = std::ffi::CString::new(reference.table()).expect("an identifier");
    // SAFETY: on the backend thread; RangeVarGetRelidExtended raises
    // Postgres's own "relation does not exist" error, locks the relation
    // AccessShare (until the transaction ends) and follows search_path
    // for an unqualified name.
    let relid = unsafe {
        let range = pg_sys::makeRangeVar(
            schema.as_ref().map_or(std::ptr::null_mut(), |s| s.as_ptr().cast_mut()),
            table.as_ptr().cast_mut(),
            -1,
        );
        pg_sys::RangeVarGetRelidExtended(range, pg_sys::AccessShareLock as i32, 0, None, std::ptr::null_mut())
    };
    // SAFETY: the relation is locked; a plain catalog check.
    unsafe {
        let kind = pg_sys::get_rel_relkind(relid);
        let acl = pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), pg_sys::ACL_SELECT as pg_sys::AclMode);
        if acl != pg_sys::AclResult::ACLCHECK_OK {
            pg_sys::aclcheck_error(acl, pg_sys::get_relkind_objtype(kind), pg_sys::get_rel_name(relid));
        }
    }
    // SAFETY: locked above; a plain look at its catalog row.
    unsafe { check_populated(relid) };
    // SAFETY: on the backend thread, the relation locked.
    match unsafe { open_table(relid) } {
        Ok((rel, table)) => (relid, rel, table),
        Err(reason) => report("weft.query", &reason),
    }
}

/// Raises Postgres's own error for a materialized view created `WITH NO
/// DATA` and not refreshed since, which Postgres refuses to read rather
/// than answer as empty.
///
/// # Safety
/// On the backend thread, `relid` locked.
unsafe fn check_populated(relid: pg_sys::Oid) {
    // SAFETY: per the caller.
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::NoLock as i32);
        let unpopulated = !(*(*rel).rd_rel).relispopulated;
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        if unpopulated {
            let name = std::ffi::CStr::from_ptr(pg_sys::get_rel_name(relid)).to_string_lossy();
            pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("materialized view \"{name}\" has not been populated"),
                "weft.query",
            )
            .set_hint("Use the REFRESH MATERIALIZED VIEW command.")
            .report(pgrx::PgLogLevel::ERROR);
            unreachable!("an ERROR does not return");
        }
    }
}

/// Opens `relid` (AccessShareLock, until the transaction ends) as a heap
/// table weft can scan, or says why weft cannot (closing it again).
/// Privileges are the caller's to check.
///
/// # Safety
/// On the backend thread.
pub unsafe fn open_table(relid: pg_sys::Oid) -> Result<(pg_sys::Relation, HeapTable), String> {
    // SAFETY: per the caller; table_open raises Postgres's own error for a
    // relation that does not exist.
    let rel = unsafe { pg_sys::table_open(relid, pg_sys::AccessShareLock as i32) };
    // SAFETY: an open relation's catalog row and descriptor.
    let table = unsafe { describe(relid, rel) };
    if table.is_err() {
        // SAFETY: opened above.
        unsafe { pg_sys::table_close(rel, pg_sys::NoLock as i32) };
    }
    table.map(|table| (rel, table))
}

/// The heap table `rel` is, or why weft cannot scan it.
///
/// # Safety
/// `rel` is open, on the backend thread.
unsafe fn describe(relid: pg_sys::Oid, rel: pg_sys::Relation) -> Result<HeapTable, String> {
    // SAFETY: per the caller.
    unsafe {
        let class = &*(*rel).rd_rel;
        let name = format!(
            "{}.{}",
            std::ffi::CStr::from_ptr(pg_sys::get_namespace_name(class.relnamespace)).to_string_lossy(),
            std::ffi::CStr::from_ptr(class.relname.data.as_ptr()).to_string_lossy()
        );
        let kind = class.relkind as u8;
        if kind != pg_sys::RELKIND_RELATION && kind != pg_sys::RELKIND_MATVIEW {
            return Err(format!(
                "{name} is not a table; weft reads tables and materialized views"
            ));
        }
        // Parallel workers cannot see the leader's local buffers, where a
        // temporary table's pages live.
        if class.relpersistence as u8 == pg_sys::RELPERSISTENCE_TEMP {
            return Err(format!(
                "{name} is a temporary table, which parallel workers cannot read"
            ));
        }
        // Postgres raises its own error when it reads one; the plan left
        // to it does.
        if !class.relispopulated {
            return Err(format!("materialized view {name} has not been populated"));
        }
        if pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, false)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
        {
            return Err(format!(
                "table {name} has row-level security enabled, and weft does not apply policies"
            ));
        }
        if (*rel).rd_tableam != pg_sys::GetHeapamTableAmRoutine() {
            return Err(format!("table {name} does not use the heap access method"));
        }
        let rows = (class.reltuples >= 0.0).then_some(f64::from(class.reltuples));
        let descriptor = &*(*rel).rd_att;
        let attributes = descriptor.attrs.as_slice(descriptor.natts as usize);
        let columns = attributes
            .iter()
            .filter(|a| !a.attisdropped)
            .map(|a| HeapColumn {
                attnum: a.attnum,
                name: std::ffi::CStr::from_ptr(a.attname.data.as_ptr())
                    .to_string_lossy()
                    .into_owned(),
                typid: a.atttypid,
                typmod: a.atttypmod,
                ty: PgType::of(a.atttypid, a.atttypmod),
                nullable: !a.attnotnull,
                type_name: std::ffi::CStr::from_ptr(pg_sys::format_type_with_typemod(a.atttypid, a.atttypmod))
                    .to_string_lossy()
                    .into_owned(),
                distinct: crate::plan::stats::distinct(relid, a.attnum, rows),
            })
            .collect();
        let relfilenode = (*rel).rd_node.relNode.to_u32();
        let mut table = HeapTable::new(relid, relfilenode, name, columns, rows);
        table.indexes = crate::plan::lookup::indexes(rel, rows);
        Ok(table)
    }
}

/// Writes the leader's result into the tuplestore as `tupdesc` declares.
///
/// # Safety
/// `tupdesc` and `store` from InitMaterializedSRF; on the backend thread,
/// outside tokio frames.
pub unsafe fn materialize(
    what: &str,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    tupdesc: pg_sys::TupleDesc,
    store: *mut pg_sys::Tuplestorestate,
) {
    // SAFETY: per the caller.
    let descriptor = unsafe { &*tupdesc };
    // SAFETY: as above.
    let attributes = unsafe { descriptor.attrs.as_slice(descriptor.natts as usize) };
    if attributes.len() != schema.fields().len() {
        report(
            what,
            &format!(
                "the query returns {} columns, and the column definition list has {}",
                schema.fields().len(),
                attributes.len()
            ),
        );
    }
    let mut writers = Vec::with_capacity(attributes.len());
    for (i, (field, attribute)) in schema.fields().iter().zip(attributes).enumerate() {
        // SAFETY: on the backend thread.
        let writer = unsafe { ColumnWriter::new(field.data_type(), attribute.atttypid, attribute.atttypmod) };
        match writer {
            Some(writer) => writers.push(writer),
            None => {
                // SAFETY: a valid type.
                let declared = unsafe {
                    std::ffi::CStr::from_ptr(pg_sys::format_type_with_typemod(
                        attribute.atttypid,
                        attribute.atttypmod,
                    ))
                }
                .to_string_lossy()
                .into_owned();
                pgrx::ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                    format!(
                        "{what}: result column {} (\"{}\") is {} in the query, which cannot be returned as {declared}",
                        i + 1,
                        field.name(),
                        field.data_type()
                    )
                );
            }
        }
    }
    // SAFETY: a context for each row's datums, reset per batch.
    let memory = unsafe {
        pg_sys::AllocSetContextCreateInternal(
            pg_sys::CurrentMemoryContext,
            c"weft.query rows".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        )
    };
    let mut values = vec![pg_sys::Datum::null(); writers.len()];
    let mut nulls = vec![false; writers.len()];
    for batch in batches {
        // SAFETY: as above.
        let previous = unsafe { pg_sys::MemoryContextSwitchTo(memory) };
        for row in 0..batch.num_rows() {
            for (c, writer) in writers.iter_mut().enumerate() {
                // SAFETY: the writer was made for this column's type.
                match unsafe { writer.datum(batch.column(c).as_ref(), row) } {
                    Some(datum) => {
                        values[c] = datum;
                        nulls[c] = false;
                    }
                    None => {
                        values[c] = pg_sys::Datum::null();
                        nulls[c] = true;
                    }
                }
            }
            // SAFETY: values and nulls match the descriptor; the store
            // copies the tuple into its own memory.
            unsafe { pg_sys::tuplestore_putvalues(store, tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr()) };
        }
        // SAFETY: as above.
        unsafe {
            pg_sys::MemoryContextSwitchTo(previous);
            pg_sys::MemoryContextReset(memory);
        }
    }
    // SAFETY: ours.
    unsafe { pg_sys::MemoryContextDelete(memory) };
}

/// The query job's payload in the section's segment (offsets in bytes
/// from its start):
///
/// | at | what |
/// |---|---|
/// | 0 | header: magic, plan offset and length, slot count, metrics offset and words per participant, participants, total length, participants running the plan |
/// | 128 | one entry per slot: relid, relfilenode, scan state offset and length |
/// | after | the encoded plan |
/// | after, 64-aligned | each slot's parallel scan state |
/// | after, 64-aligned | each participant's metrics: a count of edges, then 9 words per edge |
///
/// The leader writes everything but the metrics before publishing; each
/// worker writes its own metrics slot, which the leader reads after the
/// workers finished.
#[derive(Clone, Debug)]
struct Payload {
    len: usize,
    plan_at: usize,
    plan_len: usize,
    /// Each slot's scan state: offset and length.
    scans: Vec<(usize, usize)>,
    metrics_at: usize,
    /// Words per participant's metrics slot.
    metrics_words: usize,
    participants: usize,
    /// Participants that run the plan (all, or the leader alone).
    runners: usize,
}

const PAYLOAD_MAGIC: u64 = 0x7765_6674_7175_6572; // "weftquer"
const HEADER_WORDS: usize = 9;
const ENTRIES_AT: usize = 128;
const ENTRY_WORDS: usize = 4;
const EDGE_WORDS: usize = 9;
const ALIGN: usize = 64;
const _: () = assert!(HEADER_WORDS * 8 <= ENTRIES_AT);

impl Payload {
    /// The layout for a plan of `plan_len` bytes, scans whose shared state
    /// takes `scan_sizes` bytes, and `participants` participants' metrics
    /// over `exchanges` exchanges.
    fn layout(plan_len: usize, scan_sizes: &[usize], participants: usize, runners: usize, exchanges: u32) -> Payload {
        let plan_at = ENTRIES_AT + scan_sizes.len() * ENTRY_WORDS * 8;
        let mut at = (plan_at + plan_len).next_multiple_of(ALIGN);
        let mut scans = Vec::with_capacity(scan_sizes.len());
        for &size in scan_sizes {
            scans.push((at, size));
            at = (at + size).next_multiple_of(ALIGN);
        }
        // At most every exchange's edge to and from every participant.
        let metrics_words = 1 + 2 * exchanges as usize * participants * EDGE_WORDS;
        Payload {
            len: at + participants * metrics_words * 8,
            plan_at,
            plan_len,
            scans,
            metrics_at: at,
            metrics_words,
            participants,
            runners,
        }
    }

    /// Writes the header, the slots, the plan and the scans' initial state.
    ///
    /// # Safety
    /// `start` must be `self.len` bytes of unpublished payload, 64-aligned;
    /// `slots` the open relations of this layout's scans; on the backend
    /// thread.
    unsafe fn write(
        &self,
        start: NonNull<u8>,
        plan: &[u8],
        slots: &[(SlotTarget, pg_sys::Relation)],
        snapshot: pg_sys::Snapshot,
    ) {
        let base = start.as_ptr();
        let header = [
            PAYLOAD_MAGIC,
            self.plan_at as u64,
            self.plan_len as u64,
            self.scans.len() as u64,
            self.metrics_at as u64,
            self.metrics_words as u64,
            self.participants as u64,
            self.len as u64,
            self.runners as u64,
        ];
        // SAFETY: per the caller, every write is inside the payload, and
        // the words are 8-aligned (offsets are multiples of 8 from a
        // 64-aligned start).
        unsafe {
            std::ptr::write_bytes(base, 0, self.len);
            base.cast::<[u64; HEADER_WORDS]>().write(header);
            for (i, ((target, rel), &(at, len))) in slots.iter().zip(&self.scans).enumerate() {
                let entry = [
                    u64::from(target.relid.to_u32()),
                    u64::from(target.relfilenode),
                    at as u64,
                    len as u64,
                ];
                base.add(ENTRIES_AT + i * ENTRY_WORDS * 8)
                    .cast::<[u64; ENTRY_WORDS]>()
                    .write(entry);
                pg_sys::table_parallelscan_initialize(*rel, base.add(at).cast(), snapshot);
            }
            std::ptr::copy_nonoverlapping(plan.as_ptr(), base.add(self.plan_at), plan.len());
        }
    }

    /// The layout a payload of `len` bytes at `start` describes, checked.
    ///
    /// # Safety
    /// `start` must be a published payload of `len` bytes.
    unsafe fn read(start: NonNull<u8>, len: usize) -> Result<Payload, String> {
        let base = start.as_ptr();
        if len < ENTRIES_AT {
            return Err("the query's payload is too short".into());
        }
        // SAFETY: per the caller; checked to be inside the payload.
        let header = unsafe { base.cast::<[u64; HEADER_WORDS]>().read() };
        let [magic, plan_at, plan_len, slots, metrics_at, metrics_words, participants, total, runners] =
            header.map(|w| w as usize);
        let fits = |at: usize, size: usize| at.checked_add(size).is_some_and(|end| end <= len);
        if magic as u64 != PAYLOAD_MAGIC
            || total != len
            || runners == 0
            || runners > participants
            || !fits(ENTRIES_AT, slots.saturating_mul(ENTRY_WORDS * 8))
            || !fits(plan_at, plan_len)
            || !fits(metrics_at, participants.saturating_mul(metrics_words).saturating_mul(8))
        {
            return Err("the query's payload is corrupt".into());
        }
        let mut scans = Vec::with_capacity(slots);
        for i in 0..slots {
            // SAFETY: inside the payload (checked above).
            let entry = unsafe {
                base.add(ENTRIES_AT + i * ENTRY_WORDS * 8)
                    .cast::<[u64; ENTRY_WORDS]>()
                    .read()
            };
            let (at, size) = (entry[2] as usize, entry[3] as usize);
            if !fits(at, size) || at % ALIGN != 0 {
                return Err("the query's payload is corrupt".into());
            }
            scans.push((at, size));
        }
        Ok(Payload {
            len,
            plan_at,
            plan_len,
            scans,
            metrics_at,
            metrics_words,
            participants,
            runners,
        })
    }

    /// The slots' relations, as the leader planned with them.
    ///
    /// # Safety
    /// `start` must be this layout's payload.
    unsafe fn targets(&self, start: NonNull<u8>) -> Vec<SlotTarget> {
        (0..self.scans.len())
            .map(|i| {
                // SAFETY: per the caller, inside the payload.
                let entry = unsafe {
                    start
                        .as_ptr()
                        .add(ENTRIES_AT + i * ENTRY_WORDS * 8)
                        .cast::<[u64; ENTRY_WORDS]>()
                        .read()
                };
                SlotTarget {
                    relid: pg_sys::Oid::from(entry[0] as u32),
                    relfilenode: entry[1] as u32,
                }
            })
            .collect()
    }

    /// Binds each slot to its relation (opened by this participant) and
    /// its scan state.
    ///
    /// # Safety
    /// `start` must be this layout's payload; `targets` in slot order.
    unsafe fn bindings(
        &self,
        start: NonNull<u8>,
        targets: impl Iterator<Item = (SlotTarget, pg_sys::Relation)>,
    ) -> Vec<(SlotTarget, ScanBinding)> {
        targets
            .zip(&self.scans)
            .map(|((target, rel), &(at, _))| {
                // SAFETY: per the caller, inside the payload.
                let pscan = unsafe { start.as_ptr().add(at) }.cast();
                (target, ScanBinding { rel, pscan })
            })
            .collect()
    }

    /// The encoded plan.
    ///
    /// # Safety
    /// `start` must be this layout's payload; the bytes live as long as it.
    unsafe fn plan<'a>(&self, start: NonNull<u8>) -> &'a [u8] {
        // SAFETY: per the caller; the plan never changes after publish.
        unsafe { std::slice::from_raw_parts(start.as_ptr().add(self.plan_at), self.plan_len) }
    }

    /// Participant `participant`'s metrics words.
    ///
    /// # Safety
    /// `start` must be this layout's payload.
    unsafe fn metrics_slot<'a>(&self, start: NonNull<u8>, participant: usize) -> &'a [AtomicU64] {
        assert!(participant < self.participants, "a participant of this section");
        // SAFETY: per the caller; inside the payload, 8-aligned, and
        // AtomicU64 is valid for any bits.
        unsafe {
            let at = start
                .as_ptr()
                .add(self.metrics_at + participant * self.metrics_words * 8);
            std::slice::from_raw_parts(at.cast::<AtomicU64>(), self.metrics_words)
        }
    }

    /// Records `metrics` in participant `participant`'s slot (edges that
    /// do not fit are left out).
    ///
    /// # Safety
    /// As for [`metrics_slot`](Self::metrics_slot).
    unsafe fn write_metrics(&self, start: NonNull<u8>, participant: usize, metrics: &Metrics) {
        // SAFETY: per the caller.
        let slot = unsafe { self.metrics_slot(start, participant) };
        let edges = metrics
            .sent
            .iter()
            .map(|e| (0u64, e))
            .chain(metrics.received.iter().map(|e| (1u64, e)))
            .take((self.metrics_words - 1) / EDGE_WORDS);
        let mut count = 0;
        for (i, (direction, (edge, stats))) in edges.enumerate() {
            let words = [
                direction,
                u64::from(edge.exchange),
                u64::from(edge.sender),
                u64::from(edge.receiver),
                stats.messages,
                stats.bytes,
                stats.batches,
                stats.rows,
                stats.stalled.as_nanos() as u64,
            ];
            for (w, word) in words.into_iter().enumerate() {
                slot[1 + i * EDGE_WORDS + w].store(word, Ordering::Relaxed);
            }
            count += 1;
        }
        slot[0].store(count, Ordering::Release);
    }

    /// Participant `participant`'s recorded metrics.
    ///
    /// # Safety
    /// As for [`metrics_slot`](Self::metrics_slot).
    unsafe fn read_metrics(&self, start: NonNull<u8>, participant: usize) -> Metrics {
        // SAFETY: per the caller.
        let slot = unsafe { self.metrics_slot(start, participant) };
        let count = (slot[0].load(Ordering::Acquire) as usize).min((self.metrics_words - 1) / EDGE_WORDS);
        let mut metrics = Metrics::default();
        for i in 0..count {
            let w = |k: usize| slot[1 + i * EDGE_WORDS + k].load(Ordering::Relaxed);
            let edge = Edge {
                exchange: w(1) as u32,
                sender: w(2) as u32,
                receiver: w(3) as u32,
            };
            let stats = EdgeStats {
                messages: w(4),
                bytes: w(5),
                batches: w(6),
                rows: w(7),
                stalled: Duration::from_nanos(w(8)),
            };
            if w(0) == 0 {
                metrics.sent.insert(edge, stats);
            } else {
                metrics.received.insert(edge, stats);
            }
        }
        metrics
    }
}
