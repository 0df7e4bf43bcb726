//! [`LeaderOnlyExec`]: a node whose rows are real on participant 0 alone,
//! run there and nowhere else.
//!
//! A Single subplan (see [`crate::Distribute`]) runs on every participant:
//! the others run the same operators over the empty inputs their gathers
//! give them, so that the exchanges below keep sending, and their output
//! is discarded. Most operators make nothing of nothing, but an aggregate
//! without GROUP BY makes one row of an empty input (`count(*)` = 0, `sum`
//! NULL), and the expressions above it then run on that row: `13 /
//! count(*)` would raise division by zero in every participant but the
//! leader, where Postgres, which computes the aggregate once, raises
//! nothing. [`LeaderOnlyExec`] above such an aggregate runs it on
//! participant 0 only; elsewhere it runs the aggregate's inputs to their
//! end (so the exchanges among them send and finish) and yields no rows.

use std::fmt;
use std::sync::Arc;

use arrow_array::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{exec_datafusion_err, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{stream, StreamExt, TryStreamExt};

use crate::transport::participant::Participant;

/// Runs its input on participant 0 only; see the module docs.
///
/// ```
/// # use std::sync::Arc;
/// # use datafusion::arrow::datatypes::Schema;
/// # use datafusion::physical_plan::{empty::EmptyExec, ExecutionPlan};
/// use weft_runtime::LeaderOnlyExec;
///
/// let input: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(Arc::new(Schema::empty())));
/// let leader_only = LeaderOnlyExec::new(input);
/// assert_eq!(leader_only.name(), "WeftLeaderOnly");
/// ```
#[derive(Debug)]
pub struct LeaderOnlyExec {
    input: Arc<dyn ExecutionPlan>,
}

impl LeaderOnlyExec {
    /// `input`, run on participant 0 only.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> LeaderOnlyExec {
        LeaderOnlyExec { input }
    }
}

impl DisplayAs for LeaderOnlyExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeftLeaderOnly")
    }
}

impl ExecutionPlan for LeaderOnlyExec {
    crate::pass_through_rows!();

    fn name(&self) -> &str {
        "WeftLeaderOnly"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .filter(|_| children.is_empty())
            .ok_or_else(|| exec_datafusion_err!("WeftLeaderOnly takes exactly one child"))?;
        Ok(Arc::new(LeaderOnlyExec::new(input)))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let leader = context
            .session_config()
            .get_extension::<Participant>()
            .is_none_or(|node| node.id() == 0);
        if leader {
            return self.input.execute(partition, context);
        }
        // The input's own inputs, read to their end and dropped: their
        // exchanges send what the leader waits for, and end.
        let inputs = self
            .input
            .children()
            .into_iter()
            .map(|child| child.execute(partition, Arc::clone(&context)))
            .collect::<Result<Vec<_>>>()?;
        let drained = stream::select_all(inputs).try_filter_map(|_| async { Ok::<Option<RecordBatch>, _>(None) });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), drained.boxed())))
    }
}
