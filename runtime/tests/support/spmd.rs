//! Running SQL as an SPMD plan through LocalMesh, and the same SQL through
//! plain DataFusion, for differential tests.
//!
//! As in pgext, the leader plans once and ships the plan: [`plan`] makes
//! the SPMD plan and encodes it with weft's [`PlanCodec`]; each participant
//! decodes it under its own session and runs it. Tables are [`SharedTable`]s:
//! every process holds the same batches, participant i scans share i, and
//! a shipped scan carries only the table's name, its projection and its
//! fault (the sources' codec, [`TableCodec`], looks the name up).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{exec_err, internal_datafusion_err, Result, Statistics};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{collect, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use futures::stream;
use prost::Message;
use weft_runtime::{
    exchange_count, explain, participant_config, share_range, spmd_config, Distribute, LocalMesh, Metrics, Participant,
    PlanCodec, RuntimeError, ShareRepeated,
};

/// A table: its name, schema and batches.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// What a scan does besides reading its share: faults for failure tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    #[default]
    None,
    /// Participant `participant` fails after `after` batches with
    /// "injected failure in participant N".
    Fail { participant: usize, after: usize },
    /// Every share is read `times` times over (a huge table).
    Repeat { times: usize },
}

/// Batches produced by every scan of this process, for tests that check a
/// query stopped early.
pub static BATCHES_SCANNED: AtomicU64 = AtomicU64::new(0);

/// A session over `tables`, each split into `partitions` shares (share i =
/// partition i); with `spmd`, planned as an SPMD plan for `partitions`
/// participants.
pub fn context(tables: &'static [Table], partitions: usize, spmd: bool) -> SessionContext {
    let mut config = SessionConfig::new().with_target_partitions(partitions);
    let mut builder = SessionStateBuilder::new().with_default_features();
    if spmd {
        config = spmd_config(config, partitions);
        builder = builder
            .with_physical_optimizer_rule(Arc::new(ShareRepeated::new(codec(tables))))
            .with_physical_optimizer_rule(Arc::new(Distribute::new(partitions)));
    }
    let ctx = SessionContext::new_with_state(builder.with_config(config).build());
    for table in tables {
        register(&ctx, table.name, table, partitions, Fault::None);
    }
    ctx
}

/// Registers `table` in `ctx` under `name`, with `fault`.
pub fn register(ctx: &SessionContext, name: &str, table: &'static Table, partitions: usize, fault: Fault) {
    let provider = SharedTable {
        table,
        partitions,
        fault,
    };
    ctx.register_table(name, Arc::new(provider)).expect("register");
}

/// `sql`'s result from plain single-process DataFusion.
pub async fn expected(tables: &'static [Table], sql: &str, partitions: usize) -> Vec<RecordBatch> {
    let ctx = context(tables, partitions, false);
    ctx.sql(sql).await.expect("plan").collect().await.expect("run")
}

/// The codec every participant uses for plans over `tables`.
pub fn codec(tables: &'static [Table]) -> PlanCodec {
    PlanCodec::new(Arc::new(TableCodec { tables }))
}

/// `sql` planned by the leader in `ctx` and encoded.
pub async fn ship(ctx: &SessionContext, tables: &'static [Table], sql: &str) -> Result<Vec<u8>> {
    Ok(ship_sized(ctx, tables, sql).await?.0)
}

/// `sql` planned by the leader in `ctx` and encoded, with the number of
/// exchanges its mesh needs ([`exchange_count`]).
pub async fn ship_sized(ctx: &SessionContext, tables: &'static [Table], sql: &str) -> Result<(Vec<u8>, u32)> {
    let plan = ctx.sql(sql).await?.create_physical_plan().await?;
    let exchanges = exchange_count(&plan);
    Ok((codec(tables).encode(plan)?, exchanges))
}

/// What a distributed run returns: participant 0's result, its decoded
/// plan as EXPLAIN text (with the run's metrics and edges), and every
/// participant's metrics.
pub struct Run {
    pub batches: Vec<RecordBatch>,
    pub explain: String,
    pub metrics: Vec<Metrics>,
}

/// A participant's work: decode the shipped plan `bytes` under its own
/// session and run it; its result and the decoded plan (which holds the
/// run's operator metrics).
pub async fn execute(
    node: Arc<Participant>,
    codec: &PlanCodec,
    bytes: &[u8],
) -> Result<(Vec<RecordBatch>, Arc<dyn ExecutionPlan>), RuntimeError> {
    let config = participant_config(SessionConfig::new(), node);
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .build();
    let ctx = SessionContext::new_with_state(state);
    let plan = codec.decode(bytes, &ctx.task_ctx())?;
    let batches = collect(plan.clone(), ctx.task_ctx()).await?;
    Ok((batches, plan))
}

/// Runs the shipped plan `bytes` on `participants` LocalMesh participants.
pub fn run_shipped(
    tables: &'static [Table],
    bytes: &[u8],
    participants: usize,
    exchanges: u32,
) -> Result<Run, RuntimeError> {
    let mesh = LocalMesh::new(participants as u32, exchanges, 1 << 20)?;
    let codec = codec(tables);
    let mut results = mesh.run(|node| execute(node, &codec, bytes));
    let ((batches, plan), leader) = results.remove(0)?;
    let mut metrics = vec![leader];
    for other in results {
        metrics.push(other?.1);
    }
    Ok(Run {
        batches,
        explain: explain(plan.as_ref(), Some(&metrics)),
        metrics,
    })
}

/// `sql` run by `participants` LocalMesh participants: planned once,
/// shipped, run in a mesh sized for the plan; participant 0's result and
/// its plan as text.
pub fn distributed(
    tables: &'static [Table],
    sql: &str,
    participants: usize,
) -> Result<(Vec<RecordBatch>, String), RuntimeError> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let ctx = context(tables, participants, true);
    let (bytes, exchanges) = runtime.block_on(ship_sized(&ctx, tables, sql))?;
    let run = run_shipped(tables, &bytes, participants, exchanges)?;
    Ok((run.batches, run.explain))
}

/// Batches as text, for comparison and messages.
pub fn text(batches: &[RecordBatch]) -> String {
    datafusion::arrow::util::pretty::pretty_format_batches(batches)
        .expect("format")
        .to_string()
}

/// A [`Table`] as a DataFusion table: partition i is share i.
#[derive(Debug)]
struct SharedTable {
    table: &'static Table,
    partitions: usize,
    fault: Fault,
}

#[async_trait]
impl TableProvider for SharedTable {
    fn schema(&self) -> SchemaRef {
        self.table.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(ShareScan::new(
            self.table,
            projection.cloned(),
            self.partitions,
            self.fault,
        )?))
    }
}

/// The scan of a [`SharedTable`].
#[derive(Debug)]
struct ShareScan {
    table: &'static Table,
    projection: Option<Vec<usize>>,
    partitions: usize,
    fault: Fault,
    properties: Arc<PlanProperties>,
}

impl ShareScan {
    fn new(table: &'static Table, projection: Option<Vec<usize>>, partitions: usize, fault: Fault) -> Result<Self> {
        let schema = match &projection {
            Some(columns) => Arc::new(table.schema.project(columns)?),
            None => table.schema.clone(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(ShareScan {
            table,
            projection,
            partitions,
            fault,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for ShareScan {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShareScan: {}", self.table.name)?;
        if self.fault != Fault::None {
            write!(f, ", fault={:?}", self.fault)?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ShareScan {
    fn name(&self) -> &str {
        "ShareScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    /// Exact row counts and sizes, as MemTable gives, so that DataFusion
    /// picks the same join sides as for a MemTable.
    fn statistics_from_inputs(&self, _inputs: &[Arc<Statistics>], args: &StatisticsArgs) -> Result<Arc<Statistics>> {
        let batches = match args.partition() {
            Some(partition) => {
                let (start, end) = share_range(self.table.batches.len(), self.partitions, partition);
                &self.table.batches[start..end]
            }
            None => &self.table.batches[..],
        };
        let mut rows = 0;
        let mut bytes = 0;
        for batch in batches {
            let batch = match &self.projection {
                Some(columns) => batch.project(columns)?,
                None => batch.clone(),
            };
            rows += batch.num_rows();
            bytes += batch.get_array_memory_size();
        }
        let mut statistics = Statistics::new_unknown(&self.schema());
        statistics.num_rows = Precision::Exact(rows);
        statistics.total_byte_size = Precision::Exact(bytes);
        Ok(Arc::new(statistics))
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let (start, end) = share_range(self.table.batches.len(), self.partitions, partition);
        let share = &self.table.batches[start..end];
        let times = match self.fault {
            Fault::Repeat { times } => times,
            _ => 1,
        };
        let fail_after = match self.fault {
            Fault::Fail { participant, after } if participant == partition => Some(after),
            _ => None,
        };
        let projection = self.projection.clone();
        let batches = share
            .iter()
            .cycle()
            .take(share.len() * times)
            .enumerate()
            .map(move |(n, batch)| {
                if fail_after == Some(n) {
                    return exec_err!("injected failure in participant {partition}");
                }
                BATCHES_SCANNED.fetch_add(1, Ordering::Relaxed);
                match &projection {
                    Some(columns) => Ok(batch.project(columns)?),
                    None => Ok(batch.clone()),
                }
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream::iter(batches),
        )))
    }
}

/// A [`ShareScan`] in a shipped plan.
#[derive(Clone, PartialEq, Message)]
struct ScanNode {
    #[prost(string, tag = "1")]
    table: String,
    #[prost(uint32, repeated, tag = "2")]
    projection: Vec<u32>,
    #[prost(bool, tag = "3")]
    projected: bool,
    #[prost(uint32, tag = "4")]
    partitions: u32,
    /// 0: none, 1: fail, 2: repeat.
    #[prost(uint32, tag = "5")]
    fault: u32,
    #[prost(uint64, tag = "6")]
    fault_a: u64,
    #[prost(uint64, tag = "7")]
    fault_b: u64,
}

/// The sources' codec for [`ShareScan`]s over `tables`.
#[derive(Debug)]
struct TableCodec {
    tables: &'static [Table],
}

impl PhysicalExtensionCodec for TableCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let node = ScanNode::decode(buf).map_err(|e| internal_datafusion_err!("scan node: {e}"))?;
        let Some(table) = self.tables.iter().find(|t| t.name == node.table) else {
            return exec_err!("shipped plan scans unknown table {}", node.table);
        };
        let fault = match node.fault {
            0 => Fault::None,
            1 => Fault::Fail {
                participant: node.fault_a as usize,
                after: node.fault_b as usize,
            },
            2 => Fault::Repeat {
                times: node.fault_a as usize,
            },
            other => return exec_err!("unknown fault {other}"),
        };
        let projection = node
            .projected
            .then(|| node.projection.iter().map(|&c| c as usize).collect());
        Ok(Arc::new(ShareScan::new(
            table,
            projection,
            node.partitions as usize,
            fault,
        )?))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(scan) = node.downcast_ref::<ShareScan>() else {
            return exec_err!("cannot ship {}", node.name());
        };
        let (fault, fault_a, fault_b) = match scan.fault {
            Fault::None => (0, 0, 0),
            Fault::Fail { participant, after } => (1, participant as u64, after as u64),
            Fault::Repeat { times } => (2, times as u64, 0),
        };
        let message = ScanNode {
            table: scan.table.name.to_owned(),
            projection: scan.projection.iter().flatten().map(|&c| c as u32).collect(),
            projected: scan.projection.is_some(),
            partitions: scan.partitions as u32,
            fault,
            fault_a,
            fault_b,
        };
        message
            .encode(buf)
            .map_err(|e| internal_datafusion_err!("scan node: {e}"))
    }
}
