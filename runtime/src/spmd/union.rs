//! [`ParticipantUnionExec`]: UNION ALL across participants, each
//! participant's share of every input put together where it is.
//!
//! DataFusion's `UnionExec` outputs every partition of every input, one
//! after another: for P partitions in each of N inputs, N × P partitions.
//! Under SPMD participant i runs partition i and holds only partition i
//! of each distributed input, so a `UnionExec` over distributed inputs has
//! no place (and `InterleaveExec`, which outputs partition i of every
//! input as partition i, takes only inputs hash-partitioned alike). This
//! node outputs P partitions, partition i the rows of partition i of each
//! input: a union needs no rows to move, only each participant's shares
//! read together.
//!
//! Its inputs are all distributed: [`crate::Distribute`] spreads an input
//! that is whole on participant 0 (or on every participant) from
//! participant 0 first, so that its rows are counted once.
//!
//! Where every input's partitions are sorted alike (DataFusion pushes an
//! ORDER BY above a union down into its inputs, and merges their
//! partitions above it), each output partition is the sorted merge of its
//! inputs' partitions, so that it is sorted as DataFusion's union
//! declared its partitions to be.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{calculate_union, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::sorts::streaming_merge::StreamingMergeBuilder;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning, PlanProperties,
};
use futures::{stream, StreamExt};

/// Partition i of each input, as partition i; see the module docs.
///
/// ```
/// # use std::sync::Arc;
/// # use datafusion::arrow::datatypes::{DataType, Field, Schema};
/// # use datafusion::physical_plan::{empty::EmptyExec, ExecutionPlan};
/// use weft_runtime::ParticipantUnionExec;
///
/// let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
/// let share = |n| Arc::new(EmptyExec::new(Arc::clone(&schema)).with_partitions(n)) as Arc<dyn ExecutionPlan>;
/// let union = ParticipantUnionExec::try_new(vec![share(3), share(3)]).unwrap();
/// assert_eq!(union.properties().output_partitioning().partition_count(), 3);
/// assert!(ParticipantUnionExec::try_new(vec![share(3), share(1)]).is_err());
/// ```
#[derive(Debug)]
pub struct ParticipantUnionExec {
    /// At least one; each with the same number of partitions and the same
    /// schema.
    inputs: Vec<Arc<dyn ExecutionPlan>>,
    /// The equivalences every input keeps (`calculate_union`'s), with its
    /// output ordering, if any, the order each output partition is merged
    /// in.
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl ParticipantUnionExec {
    /// The union of `inputs`, partition by partition. Fails unless every
    /// input has as many partitions and columns of the same types as the
    /// first. Its columns are named as the first input's, and nullable
    /// where any input's is.
    pub fn try_new(inputs: Vec<Arc<dyn ExecutionPlan>>) -> Result<ParticipantUnionExec> {
        let Some(first) = inputs.first() else {
            return plan_err!("WeftUnion of no inputs");
        };
        let schema = union_schema(&inputs)?;
        let partitions = first.output_partitioning().partition_count();
        if let Some(other) = inputs
            .iter()
            .find(|input| input.output_partitioning().partition_count() != partitions)
        {
            return plan_err!(
                "WeftUnion of inputs with {partitions} and {} partitions",
                other.output_partitioning().partition_count()
            );
        }
        let equivalences = calculate_union(
            inputs
                .iter()
                .map(|input| input.equivalence_properties().clone())
                .collect(),
            schema,
        )?;
        let properties = PlanProperties::new(
            equivalences,
            Partitioning::UnknownPartitioning(partitions),
            emission(&inputs),
            Boundedness::Bounded,
        );
        Ok(ParticipantUnionExec {
            inputs,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

/// The schema of the union of `inputs`; see [`ParticipantUnionExec::try_new`].
fn union_schema(inputs: &[Arc<dyn ExecutionPlan>]) -> Result<SchemaRef> {
    let first = inputs[0].schema();
    let mut fields: Vec<Field> = first.fields().iter().map(|field| field.as_ref().clone()).collect();
    for input in &inputs[1..] {
        let schema = input.schema();
        if schema.fields().len() != fields.len() {
            return plan_err!(
                "WeftUnion of inputs with {} and {} columns",
                fields.len(),
                schema.fields().len()
            );
        }
        for (field, other) in fields.iter_mut().zip(schema.fields()) {
            if field.data_type() != other.data_type() {
                return plan_err!(
                    "WeftUnion of inputs whose column {} is {} and {}",
                    field.name(),
                    field.data_type(),
                    other.data_type()
                );
            }
            if other.is_nullable() {
                field.set_nullable(true);
            }
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// When the union's rows come: as its inputs' do, or both ways if they
/// differ. (Every weft input is bounded.)
fn emission(inputs: &[Arc<dyn ExecutionPlan>]) -> EmissionType {
    let mut kinds = inputs.iter().map(|input| input.pipeline_behavior());
    let first = kinds.next().unwrap_or(EmissionType::Incremental);
    if kinds.all(|kind| kind == first) {
        first
    } else {
        EmissionType::Both
    }
}

impl DisplayAs for ParticipantUnionExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeftUnion")
    }
}

impl ExecutionPlan for ParticipantUnionExec {
    fn name(&self) -> &str {
        "WeftUnion"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.inputs.iter().collect()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![self.properties.output_ordering().is_some(); self.inputs.len()]
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false; self.inputs.len()]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(ParticipantUnionExec::try_new(children)?))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition >= self.properties.output_partitioning().partition_count() {
            return exec_err!("WeftUnion has no partition {partition}");
        }
        // Read together, not one after another: an input's exchange may
        // wait for this participant to read another's before it sends.
        let schema = self.schema();
        let inputs = self
            .inputs
            .iter()
            .map(|input| {
                let rows = input.execute(partition, Arc::clone(&context))?;
                if rows.schema() == schema {
                    return Ok(rows);
                }
                // The same columns, told nullable where another input's are.
                let target = Arc::clone(&schema);
                let restamped = rows.map(move |batch| Ok(batch?.with_schema(Arc::clone(&target))?));
                Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), restamped))
                    as SendableRecordBatchStream)
            })
            .collect::<Result<Vec<_>>>()?;
        match self.properties.output_ordering() {
            Some(ordering) => StreamingMergeBuilder::new()
                .with_streams(inputs)
                .with_schema(self.schema())
                .with_expressions(ordering)
                .with_metrics(BaselineMetrics::new(&self.metrics, partition))
                .with_batch_size(context.session_config().batch_size())
                .with_reservation(MemoryConsumer::new("WeftUnion merge").register(context.memory_pool()))
                .build(),
            None => Ok(Box::pin(RecordBatchStreamAdapter::new(
                self.schema(),
                stream::select_all(inputs).boxed(),
            ))),
        }
    }
}
