//! Running a planned query across the leader and its parallel workers.
//!
//! The leader ([`run`]):
//! 1. launches the workers, and plans the query physically for the
//!    participants that started (an SPMD plan, [`Distribute`]);
//! 2. gives every scan a slot: a Postgres parallel heap scan in the
//!    section's segment, initialized under the statement's snapshot;
//! 3. publishes the payload ([`Payload`]: the slots, the encoded plan,
//!    the scans' shared state, room for every participant's metrics),
//!    then runs participant 0's part: its result is the query's.
//!
//! A worker ([`worker`]) opens the slots' relations, checks they are the
//! ones the leader planned with, decodes the plan and runs its part.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::{SessionState, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionConfig;
use pgrx::pg_sys;
use weft_runtime::{
    exchange_count, exchange_traffic, explain as explain_plan, operator_runs, participant_config, spmd_config,
    Distribute, ExplainNode, ImpliedEqualities, Metrics, Participant, PlanCodec, RuntimeError, ShareRepeated,
};

use crate::catalog::utf8_database;
use crate::error::{report, Error};
use crate::exec::explain::{Explained, MeshMemory};
use crate::exec::parallel::{Job, Part, Section};
use crate::exec::participate;
use crate::exec::payload::Payload;
use crate::guc;
use crate::pgcall;
use crate::plan::codec::HeapCodec;
use crate::plan::codec::SlotTarget;
use crate::plan::keys;
use crate::plan::lookup::IndexLookups;
use crate::plan::pgfn;
use crate::plan::scan::HeapScanExec;
use crate::storage::stream::ScanBinding;

/// The default schema DataFusion resolves unqualified names in: a name no
/// one writes, registered with the tables the query names unqualified
/// (which Postgres resolved through search_path).
pub const SEARCH_PATH_SCHEMA: &str = "$search_path";
/// The catalog weft registers tables in.
pub const CATALOG: &str = "postgres";

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
pub fn explain(planned: &Planned) -> Explained {
    let participants = guc::workers() as usize + 1;
    let (plan, refused) = planned.physical(participants);
    // As each participant will run it (the join keys linked to the scans).
    let runners = if refused.is_some() { 1 } else { participants };
    let plan = keys::link(plan, runners).unwrap_or_else(|e| report("weft", &e.to_string()));
    Explained {
        participants,
        requested: participants - 1,
        refused,
        memory: None,
        plan: ExplainNode::new(plan.as_ref(), None),
        exchanges: Vec::new(),
        datafusion: explain_plan(plan.as_ref(), None),
    }
}

/// A query's result at the leader, and its EXPLAIN (when asked for).
pub struct Output {
    /// The result's schema.
    pub schema: SchemaRef,
    /// The result, in order.
    pub batches: Vec<RecordBatch>,
    /// The plan with the run's metrics, when asked for.
    pub explain: Option<Explained>,
}

/// A query planned logically over opened relations.
pub struct Planned {
    state: SessionState,
    logical: LogicalPlan,
    /// Every relation the query names, opened (locked AccessShare).
    relations: Vec<(pg_sys::Oid, pg_sys::Relation)>,
}

impl Planned {
    /// `logical`, planned over `relations` (every relation it names,
    /// opened and locked AccessShare), which [`Planned::close`] closes.
    pub fn new(state: SessionState, logical: LogicalPlan, relations: Vec<(pg_sys::Oid, pg_sys::Relation)>) -> Planned {
        check_encoding();
        Planned {
            state,
            logical,
            relations,
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
/// handed back to Postgres ([`crate::error::Error::HandBack`]); raises every other error.
pub fn run(planned: Planned, explain_run: bool) -> Result<Output, String> {
    pgcall::discard_pending();
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
    // Every participant runs the plan with the join keys linked (`execute`).
    let operators = keys::link(plan.clone(), participants)
        .map(|linked| operator_runs(linked.as_ref()).len())
        .unwrap_or_else(|e| report("weft", &e.to_string()));
    let layout = Payload::layout(bytes.len(), &scan_sizes, participants, runners, exchanges, operators);
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
    let (metrics, worker_runs) = section.finish(|part| {
        let (payload, _) = part.payload();
        // SAFETY: every participant has finished writing its slot.
        (1..participants)
            .map(|p| unsafe { (layout.read_metrics(payload, p), layout.read_operators(payload, p)) })
            .unzip::<_, _, Vec<_>, Vec<_>>()
    });
    let (batches, decoded, leader_metrics) = match outcome {
        Ok(((batches, decoded), metrics)) => (batches, decoded, metrics),
        Err(e) => match Error::from_runtime(&e) {
            Error::HandBack(reason) => {
                planned.close();
                return Err(reason);
            }
            error => error.raise("weft"),
        },
    };
    let explain = explain_run.then(|| {
        let mut all = vec![leader_metrics];
        all.extend(metrics);
        let mut runs = vec![operator_runs(decoded.as_ref())];
        runs.extend(worker_runs.into_iter().take(runners - 1));
        let (bytes, reserved) = section_segment;
        Explained {
            participants,
            requested,
            refused,
            memory: Some(MeshMemory {
                bytes,
                reserved,
                exchanges,
                ring,
            }),
            plan: ExplainNode::new(decoded.as_ref(), Some(&runs)),
            exchanges: exchange_traffic(&all),
            datafusion: explain_plan(decoded.as_ref(), Some(&all)),
        }
    });
    planned.close();
    Ok(Output {
        schema,
        batches,
        explain,
    })
}

/// A worker's part of a query.
pub fn worker(part: &Part) {
    pgcall::discard_pending();
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
        participate::run(part, Vec::new(), |node| execute(node, bytes, bindings))
            .map(|((_, plan), metrics)| (operator_runs(plan.as_ref()), metrics))
    } else {
        // The plan is the leader's alone; being done is all that is asked.
        participate::run(part, Vec::new(), |_| async { Ok(Vec::new()) })
    };
    pgcall::rethrow_pending();
    let (runs, metrics) = match outcome {
        Ok(ran) => ran,
        // Our own failure, recorded as the query's abort: the leader hands
        // the query back to Postgres, or rethrows this error as raised
        // here, as the leader would raise it (the SQLSTATE does not depend
        // on which process met the failure).
        Err(e @ RuntimeError::Aborted { participant, .. }) if participant == part.id => match Error::from_runtime(&e) {
            Error::HandBack(_) => (Vec::new(), Metrics::default()),
            error => error.raise("weft"),
        },
        // Another participant failed first and reports it.
        Err(RuntimeError::Aborted { .. }) => (Vec::new(), Metrics::default()),
        Err(e) => Error::from_runtime(&e).raise("weft"),
    };
    // SAFETY: our own metrics slot.
    unsafe {
        layout.write_metrics(payload, part.id as usize, &metrics);
        layout.write_operators(payload, part.id as usize, &runs);
    }
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
pub fn session_config(participants: usize) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, SEARCH_PATH_SCHEMA)
        .with_information_schema(false)
        .with_batch_size(crate::storage::stream::BATCH_ROWS);
    // `7.0` is a numeric in Postgres, not a float: keep such arithmetic
    // exact.
    config.options_mut().sql_parser.parse_float_as_decimal = true;
    spmd_config(config, participants)
}

/// A session with DataFusion's functions and weft's ([`pgfn`], [`crate::plan::spread`]).
pub fn new_state(config: SessionConfig) -> SessionState {
    let mut state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_analyzer_rule(Arc::new(ImpliedEqualities))
        .build();
    pgfn::register(&mut state).unwrap_or_else(|e| report("weft", &e.to_string()));
    crate::plan::spread::register(&mut state).unwrap_or_else(|e| report("weft", &e.to_string()));
    crate::plan::decimal_sum::register(&mut state).unwrap_or_else(|e| report("weft", &e.to_string()));
    crate::plan::moments::register(&mut state).unwrap_or_else(|e| report("weft", &e.to_string()));
    state
}

/// Plans a trivial query once, so that what DataFusion builds on first
/// use (its registry of functions, its rules' state) is in place in every
/// process forked after: called in the postmaster, it spares each
/// backend's first query and every worker that work. Pure Rust, no
/// Postgres call and no thread; a failure is left to the first query to
/// meet.
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
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| pgrx::error!("weft: cannot start a runtime: {e}"))
        .block_on(future)
}

/// weft reads text as UTF-8, which only a UTF8 database guarantees.
pub fn check_encoding() {
    if !utf8_database() {
        report("weft.query", "weft needs a database with UTF8 encoding");
    }
}
