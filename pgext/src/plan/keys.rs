//! Join keys pushed into heap scans: a hash join's build side, once
//! collected, tells the scan feeding its probe side which key values can
//! match at all, and the scan drops every other tuple as soon as it has
//! read the key, before walking the rest of the tuple.
//!
//! The probe side of a join is usually the large table (lineitem, orders)
//! and its key an early, fixed-width column. Without this the scan walks
//! every tuple to the last column the query reads, converts it to Arrow,
//! and the join then throws most of them away: in TPC-H Q3, 3.2 million
//! lineitems reach the join for 30 thousand matches.
//!
//! This is what DataFusion's dynamic filters do inside one process. They
//! stay off in weft because a partitioned join's build side in one
//! participant holds only that participant's share of the keys; here only
//! joins whose build side is whole in every participant qualify (a
//! broadcast build, or a plan for one participant), so each participant
//! filters with the complete set, computed locally.
//!
//! The filter is exact: a probe row whose key is not among the build
//! side's keys (or is NULL) matches nothing, and [`link`] only pushes it
//! through joins whose result cannot then depend on such a row (see
//! [`weft_runtime::joins::drops_unmatched_probe_rows`]). It is an
//! optimisation only: a scan that starts before the set is published, or
//! a set too large to collect, leaves the rows to the join, as without
//! it.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int16Type, Int32Type, Int64Type, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{JoinType, NullEquality, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{Stream, StreamExt};
use weft_runtime::{joins, ExchangeExec, ExchangeMode};

use crate::plan::scan::HeapScanExec;
use crate::storage::keys::{KeySet, KeySlot};

/// Build sides with more distinct keys than this are not collected: the
/// set would cost more memory than it saves, and a filter keeping that
/// many keys rarely drops much.
const MAX_KEYS: usize = 1 << 22;

/// Passes a hash join's build side through unchanged, collecting the join
/// key's values; when the input ends, publishes them in its [`KeySlot`].
#[derive(Debug)]
pub struct KeyCollectExec {
    input: Arc<dyn ExecutionPlan>,
    key: Arc<dyn PhysicalExpr>,
    slot: Arc<KeySlot>,
    /// What the keys are for, which decides whether there may be too many.
    purpose: Purpose,
    metrics: ExecutionPlanMetricsSet,
}

/// What a build side's keys are collected for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// To filter a scan: optional, so given up past [`MAX_KEYS`].
    Filter,
    /// To be looked up in an index ([`crate::plan::lookup`]): the scan reads
    /// nothing else, so every key is kept.
    Lookup,
}

impl KeyCollectExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        key: Arc<dyn PhysicalExpr>,
        slot: Arc<KeySlot>,
        purpose: Purpose,
    ) -> KeyCollectExec {
        KeyCollectExec {
            input,
            key,
            slot,
            purpose,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for KeyCollectExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.purpose {
            Purpose::Filter => write!(f, "JoinKeys: {} (to the probe side's scan)", self.key),
            Purpose::Lookup => write!(f, "JoinKeys: {} (looked up by the probe side's scan)", self.key),
        }
    }
}

impl ExecutionPlan for KeyCollectExec {
    weft_runtime::pass_through_rows!();

    fn name(&self) -> &str {
        "KeyCollectExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        f(&self.key)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.swap_remove(0);
        Ok(Arc::new(KeyCollectExec::new(
            input,
            Arc::clone(&self.key),
            Arc::clone(&self.slot),
            self.purpose,
        )))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let keys = MetricBuilder::new(&self.metrics).counter("keys", partition);
        Ok(Box::pin(KeyCollectStream {
            input: self.input.execute(partition, context)?,
            key: Arc::clone(&self.key),
            slot: Arc::clone(&self.slot),
            keys: Some(Vec::new()),
            limit: match self.purpose {
                Purpose::Filter => MAX_KEYS,
                Purpose::Lookup => usize::MAX,
            },
            published: keys,
        }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

struct KeyCollectStream {
    input: SendableRecordBatchStream,
    key: Arc<dyn PhysicalExpr>,
    slot: Arc<KeySlot>,
    /// The keys so far; None once given up (too many, or a key type the
    /// scan cannot compare).
    keys: Option<Vec<i64>>,
    /// Keys past this many are given up.
    limit: usize,
    /// The distinct keys published (EXPLAIN ANALYZE's `keys`).
    published: Count,
}

impl KeyCollectStream {
    fn gather(&mut self, batch: &RecordBatch) -> Result<()> {
        let Some(keys) = &mut self.keys else {
            return Ok(());
        };
        let values = self.key.evaluate(batch)?.into_array(batch.num_rows())?;
        match values.data_type() {
            DataType::Int16 => keys.extend(values.as_primitive::<Int16Type>().iter().flatten().map(i64::from)),
            DataType::Int32 => keys.extend(values.as_primitive::<Int32Type>().iter().flatten().map(i64::from)),
            DataType::Int64 => keys.extend(values.as_primitive::<Int64Type>().iter().flatten()),
            _ => self.keys = None,
        }
        if self.keys.as_ref().is_some_and(|k| k.len() > self.limit) {
            // Repeats count here too; they are rare on a build side.
            self.keys = None;
        }
        Ok(())
    }

    fn publish(&mut self) {
        if let Some(keys) = self.keys.take() {
            let set = KeySet::new(&keys);
            self.published.add(set.len());
            // Set once: a second execution of the same plan finds it set
            // with the same keys.
            self.slot.publish(set);
        }
    }
}

impl Stream for KeyCollectStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.input.poll_next_unpin(cx);
        match &next {
            Poll::Ready(Some(Ok(batch))) => {
                if let Err(e) = self.gather(batch) {
                    return Poll::Ready(Some(Err(e)));
                }
            }
            Poll::Ready(None) => self.publish(),
            Poll::Ready(Some(Err(_))) => self.keys = None,
            Poll::Pending => {}
        }
        next
    }
}

impl RecordBatchStream for KeyCollectStream {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }
}

/// `plan` (as decoded in a participant of `participants`) with each
/// eligible hash join's build keys pushed into the scan under its probe
/// side: as a filter, or as the keys an index lookup scan looks up
/// ([`crate::plan::lookup`]). Every participant makes the same change to the
/// same plan.
pub fn link(plan: Arc<dyn ExecutionPlan>, participants: usize) -> Result<Arc<dyn ExecutionPlan>> {
    let children = plan
        .children()
        .into_iter()
        .map(|c| link(Arc::clone(c), participants))
        .collect::<Result<Vec<_>>>()?;
    let plan = replace_children_if_necessary(plan, children)?;
    let Some(join) = plan.downcast_ref::<HashJoinExec>() else {
        return Ok(plan);
    };
    if join.null_equality() != NullEquality::NullEqualsNothing || join.null_aware {
        return Ok(plan);
    }
    // An index lookup scan under the probe side takes the keys it looks
    // up (only lookups make a partitioned join over a scan, with this
    // participant's own build side); any other scan may be filtered by
    // them.
    let purposes: &[Purpose] = match join.mode {
        PartitionMode::Partitioned => &[Purpose::Lookup],
        PartitionMode::CollectLeft if whole_everywhere(join.left(), participants) => {
            if joins::drops_unmatched_probe_rows(*join.join_type()) {
                &[Purpose::Lookup, Purpose::Filter]
            } else {
                &[Purpose::Lookup]
            }
        }
        _ => return Ok(plan),
    };
    for &purpose in purposes {
        for (build_key, probe_key) in join.on() {
            let Some(column) = probe_key.downcast_ref::<Column>() else {
                continue;
            };
            let slot = Arc::new(KeySlot::default());
            let at_scan = |scan: &HeapScanExec, at: usize| match purpose {
                Purpose::Filter => scan.with_key_filter(at, Arc::clone(&slot)),
                Purpose::Lookup => scan.with_lookup_keys(at, Arc::clone(&slot)),
            };
            let through = match purpose {
                Purpose::Filter => Through::Joins,
                Purpose::Lookup => Through::Rows,
            };
            if let Some(right) = push_to_scan(join.right(), column.index(), &at_scan, through) {
                let left: Arc<dyn ExecutionPlan> = Arc::new(KeyCollectExec::new(
                    Arc::clone(join.left()),
                    Arc::clone(build_key),
                    slot,
                    purpose,
                ));
                return replace_children_if_necessary(Arc::clone(&plan), vec![left, right]);
            }
        }
    }
    Ok(plan)
}

/// Whether every participant computes all of `plan`'s rows: it is
/// broadcast, or there is one participant.
pub fn whole_everywhere(plan: &Arc<dyn ExecutionPlan>, participants: usize) -> bool {
    if participants == 1 {
        return true;
    }
    let mut plan = plan;
    loop {
        if let Some(exchange) = plan.downcast_ref::<ExchangeExec>() {
            return matches!(exchange.mode(), ExchangeMode::Broadcast);
        }
        if plan.downcast_ref::<CooperativeExec>().is_none() {
            return false;
        }
        plan = plan.children()[0];
    }
}

/// The operators a column may be followed through, down to its scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Through {
    /// Those that keep each row whole or drop it: projections of plain
    /// columns, filters and sorts without a limit.
    Rows,
    /// Those too, and the sides of joins whose rows the join's output
    /// carries unchanged.
    Joins,
}

/// `plan` with the heap scan that produces its output column `column`
/// replaced by `at_scan(scan, column of the scan)`, if the column comes
/// straight from a scan through the operators `through` allows and
/// `at_scan` gives a scan; None otherwise. Exchanges stop it: the scan
/// must feed this participant's join.
pub fn push_to_scan(
    plan: &Arc<dyn ExecutionPlan>,
    column: usize,
    at_scan: &dyn Fn(&HeapScanExec, usize) -> Option<HeapScanExec>,
    through: Through,
) -> Option<Arc<dyn ExecutionPlan>> {
    if let Some(scan) = plan.downcast_ref::<HeapScanExec>() {
        return at_scan(scan, column).map(|s| Arc::new(s) as Arc<dyn ExecutionPlan>);
    }
    let joins = through == Through::Joins;
    let (child, at) = if plan.downcast_ref::<CooperativeExec>().is_some()
        || (joins && plan.downcast_ref::<KeyCollectExec>().is_some())
    {
        (0, column)
    } else if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let expr = &projection.expr().get(column)?.expr;
        (0, expr.downcast_ref::<Column>()?.index())
    } else if let Some(sort) = plan.downcast_ref::<SortExec>() {
        // A sort keeps every row; one with a limit keeps those that sort
        // first among all of them, which a filter below it would change.
        if sort.fetch().is_some() {
            return None;
        }
        (0, column)
    } else if let Some(filter) = plan.downcast_ref::<FilterExec>() {
        (
            0,
            filter
                .projection()
                .as_ref()
                .map_or(Some(column), |p| p.get(column).copied())?,
        )
    } else if let Some(join) = plan.downcast_ref::<HashJoinExec>().filter(|_| joins) {
        let at = join
            .projection
            .as_ref()
            .map_or(Some(column), |p| p.get(column).copied())?;
        let left = join.left().schema().fields().len();
        // Only the sides whose rows a row of the join's output carries
        // unchanged (never NULL-extended), and which are in the output.
        match join.join_type() {
            JoinType::Inner if at < left => (0, at),
            JoinType::Inner => (1, at - left),
            JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti if at < left => (0, at),
            JoinType::Right if at >= left => (1, at - left),
            JoinType::RightSemi | JoinType::RightAnti => (1, at),
            _ => return None,
        }
    } else {
        return None;
    };
    let children = plan.children();
    let pushed = push_to_scan(children[child], at, at_scan, through)?;
    let mut children: Vec<Arc<dyn ExecutionPlan>> = children.into_iter().cloned().collect();
    children[child] = pushed;
    replace_children_if_necessary(Arc::clone(plan), children).ok()
}
