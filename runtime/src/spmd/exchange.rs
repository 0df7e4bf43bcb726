//! [`ExchangeExec`]: the DataFusion operator that moves rows between
//! participants through the mesh.
//!
//! SPMD execution: every participant executes the same plan, and an
//! exchange's `execute` always works for the calling participant (found in
//! the task's session config), whatever partition index it is asked for:
//! it starts the local producer, which runs the input and routes its rows
//! to the participants' rings, and returns the merge of the rings that come
//! to this participant.

use std::fmt;
use std::sync::Arc;
use std::task::Poll;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{exec_datafusion_err, DataFusionError, Result, Statistics};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{LexOrdering, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{EvaluationType, SchedulingType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, RecordOutput, Time};
use datafusion::physical_plan::repartition::BatchPartitioner;
use datafusion::physical_plan::sorts::streaming_merge::StreamingMergeBuilder;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildStats, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, StatisticsArgs,
};
use futures::{stream, StreamExt, TryStreamExt};

use crate::transport::endpoint::{Inbox, Outbox};
use crate::transport::error::RuntimeError;
use crate::transport::participant::Participant;
use crate::transport::stream::{BatchReceiver, BatchSender};

/// Where an exchange's rows go.
#[derive(Clone, Debug)]
pub enum ExchangeMode {
    /// Each row to the participant its key hashes to (DataFusion's own hash
    /// partitioning, so a hash join or aggregate downstream agrees).
    Hash(Vec<Arc<dyn PhysicalExpr>>),
    /// Every row to participant 0, merged in `ordering` if given, keeping
    /// at most `fetch` rows. The others' output is empty.
    Gather {
        /// Sort order of each sender's stream, kept by the merge.
        ordering: Option<LexOrdering>,
        /// Row limit after the merge.
        fetch: Option<usize>,
    },
    /// Every row to every participant.
    Broadcast,
    /// Batch `k` of participant 0 to participant `k mod P`.
    RoundRobin,
}

/// Which participants' inputs are real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Senders {
    /// Every participant sends its share (the input is distributed).
    All,
    /// Only participant 0 sends: the input is a single-partition subplan,
    /// real only there; the others run it (it may feed exchanges of its
    /// own) and discard its rows.
    Leader,
}

/// Code recorded in the mesh when a query fails inside an exchange.
pub const QUERY_FAILURE_CODE: u32 = 2;

/// The exchange operator; see the module docs.
#[derive(Debug)]
pub struct ExchangeExec {
    /// The exchange's number: its rings in the mesh. Assigned by the
    /// distribution rule in plan order, so the same in every process.
    id: u32,
    mode: ExchangeMode,
    senders: Senders,
    participants: usize,
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl ExchangeExec {
    /// An exchange numbered `id` of `input`'s rows among `participants`.
    pub fn new(
        id: u32,
        mode: ExchangeMode,
        senders: Senders,
        participants: usize,
        input: Arc<dyn ExecutionPlan>,
    ) -> ExchangeExec {
        let input_props = input.properties();
        // What holds of every row still holds after the exchange (columns
        // equal to each other or to a constant, which DataFusion's window
        // and sort rules read); an order holds only where a gather merges.
        let mut eq = input_props.equivalence_properties().clone();
        eq.clear_orderings();
        eq.clear_per_partition_constants();
        let partitioning = match &mode {
            ExchangeMode::Hash(keys) => Partitioning::Hash(keys.clone(), participants),
            ExchangeMode::RoundRobin => Partitioning::RoundRobinBatch(participants),
            ExchangeMode::Gather {
                ordering: Some(ordering),
                ..
            } => {
                eq.add_ordering(ordering.clone());
                Partitioning::UnknownPartitioning(1)
            }
            ExchangeMode::Gather { ordering: None, .. } | ExchangeMode::Broadcast => {
                Partitioning::UnknownPartitioning(1)
            }
        };
        // Eager (its producer runs the input as its own task) and not
        // cooperative by itself: DataFusion's EnsureCooperative then wraps
        // the exchange and the leaves below it, so that long computations
        // yield, and an abort is seen (see `route`).
        let properties = PlanProperties::new(eq, partitioning, input_props.emission_type, input_props.boundedness)
            .with_evaluation_type(EvaluationType::Eager)
            .with_scheduling_type(SchedulingType::NonCooperative);
        ExchangeExec {
            id,
            mode,
            senders,
            participants,
            input,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The exchange's number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Where its rows go.
    pub fn mode(&self) -> &ExchangeMode {
        &self.mode
    }

    /// Whose inputs are real.
    pub fn senders(&self) -> Senders {
        self.senders
    }

    /// How many participants it was planned for.
    pub fn participants(&self) -> usize {
        self.participants
    }

    /// The participants it routes to, from participant `me`.
    fn targets(&self, me: usize) -> Vec<usize> {
        if self.senders == Senders::Leader && me != 0 {
            return Vec::new();
        }
        match self.mode {
            ExchangeMode::Gather { .. } => vec![0],
            _ => (0..self.participants).collect(),
        }
    }

    /// The participants it receives from, at participant `me`.
    fn sources(&self, me: usize) -> Vec<usize> {
        let senders: Vec<usize> = match self.senders {
            Senders::All => (0..self.participants).collect(),
            Senders::Leader => vec![0],
        };
        match self.mode {
            ExchangeMode::Gather { .. } if me != 0 => Vec::new(),
            _ => senders,
        }
    }
}

impl DisplayAs for ExchangeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WeftExchange: id={}, ", self.id)?;
        match &self.mode {
            ExchangeMode::Hash(keys) => {
                let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
                write!(f, "mode=hash([{}])", keys.join(", "))?;
            }
            ExchangeMode::Gather { ordering, fetch } => {
                f.write_str("mode=gather")?;
                if let Some(ordering) = ordering {
                    write!(f, ", merge=[{ordering}]")?;
                }
                if let Some(fetch) = fetch {
                    write!(f, ", fetch={fetch}")?;
                }
            }
            ExchangeMode::Broadcast => f.write_str("mode=broadcast")?,
            ExchangeMode::RoundRobin => f.write_str("mode=round_robin")?,
        }
        if self.senders == Senders::Leader {
            f.write_str(", from=participant 0")?;
        }
        write!(f, ", participants={}", self.participants)
    }
}

impl ExecutionPlan for ExchangeExec {
    fn name(&self) -> &str {
        "WeftExchange"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![matches!(self.mode, ExchangeMode::Gather { ordering: Some(_), .. })]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        match &self.mode {
            ExchangeMode::Hash(keys) => {
                for key in keys {
                    if f(key)? == TreeNodeRecursion::Stop {
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            }
            _ => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .filter(|_| children.is_empty())
            .ok_or_else(|| exec_datafusion_err!("WeftExchange takes exactly one child"))?;
        Ok(Arc::new(ExchangeExec::new(
            self.id,
            self.mode.clone(),
            self.senders,
            self.participants,
            input,
        )))
    }

    fn execute(&self, _partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let node = context
            .session_config()
            .get_extension::<Participant>()
            .ok_or_else(|| exec_datafusion_err!("WeftExchange executed outside a weft participant"))?;
        let me = node.id() as usize;
        if node.participants() as usize != self.participants {
            return Err(exec_datafusion_err!(
                "WeftExchange planned for {} participants runs among {}",
                self.participants,
                node.participants()
            ));
        }
        let schema = self.schema();
        // The input partition this participant holds: its own share, or the
        // single partition of a leader-only subplan.
        let input_partition = match self.senders {
            Senders::All => me,
            Senders::Leader => 0,
        };
        let input = self.input.execute(input_partition, context.clone())?;
        let producer = Producer::spawn(
            &node,
            produce(
                node.clone(),
                self.id,
                self.mode.clone(),
                self.targets(me),
                me,
                self.participants,
                input,
            ),
        );

        let sources = self.sources(me);
        if sources.is_empty() {
            // Nothing comes here; the stream ends when the producer has
            // finished (so that its errors surface, and the participant
            // does not end before its rows are sent).
            let done = stream::once(async move { join(producer).await }).try_filter_map(|()| async { Ok(None) });
            return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, done)));
        }
        let mut inputs = Vec::with_capacity(sources.len());
        for from in sources {
            let inbox = Inbox::open(&node, self.id, from as u32).map_err(external)?;
            inputs.push(receive(schema.clone(), BatchReceiver::new(inbox)));
        }
        let merged: SendableRecordBatchStream = match &self.mode {
            ExchangeMode::Gather {
                ordering: Some(ordering),
                fetch,
            } => StreamingMergeBuilder::new()
                .with_streams(inputs)
                .with_schema(schema.clone())
                .with_expressions(ordering)
                .with_metrics(BaselineMetrics::new(&self.metrics, me))
                .with_batch_size(context.session_config().batch_size())
                .with_fetch(*fetch)
                .with_reservation(
                    MemoryConsumer::new(format!("WeftExchange[{}] merge", self.id)).register(context.memory_pool()),
                )
                .build()?,
            mode => {
                let output = BaselineMetrics::new(&self.metrics, me);
                let all = stream::select_all(inputs).inspect_ok(move |batch| {
                    batch.record_output(&output);
                });
                match mode {
                    ExchangeMode::Gather { fetch: Some(fetch), .. } => limit(schema.clone(), all, *fetch),
                    _ => Box::pin(RecordBatchStreamAdapter::new(schema.clone(), all)),
                }
            }
        };
        // The producer lives as long as the stream, and its outcome is
        // checked at the end.
        let tail = stream::once(async move { join(producer).await }).try_filter_map(|()| async { Ok(None) });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, merged.chain(tail))))
    }

    /// Statistics of the whole input, wherever it ends up: the planner
    /// (`Distribute`) estimates subplans that contain exchanges.
    fn child_stats_requests(&self, _partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(None)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let whole = input_stats[0].as_ref().clone();
        let statistics = match (&self.mode, args.partition()) {
            (ExchangeMode::Gather { fetch, .. }, _) => whole.with_fetch(*fetch, 0, 1)?,
            (ExchangeMode::Broadcast, _) | (_, None) => whole,
            // One participant's part of a hash or round-robin exchange.
            (_, Some(_)) => {
                let share = |n: usize| n / self.participants.max(1);
                let mut part = Statistics::new_unknown(&self.schema());
                part.num_rows = whole.num_rows.map(share).to_inexact();
                part.total_byte_size = whole.total_byte_size.map(share).to_inexact();
                part
            }
        };
        Ok(Arc::new(statistics))
    }

    fn metrics(&self) -> Option<datafusion::physical_plan::metrics::MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

fn external(e: RuntimeError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The local producer's task, which this participant's output stream of
/// the exchange awaits at its end (so that its errors surface there, and
/// the participant does not end before its rows are sent).
///
/// If that stream is dropped first (its consumer stopped early: DataFusion's
/// hash join never reads its probe side when its build side is empty), the
/// task goes on: the other participants still expect this one's rows and
/// its end of stream, and would fail the query as having lost a sender.
/// It is handed to the participant ([`Participant::owe`]), which finishes
/// it before ending; it ends early once every receiver has closed or the
/// query is complete.
struct Producer {
    node: Arc<Participant>,
    /// The task, until it is awaited to its end or handed over.
    task: Option<tokio::task::JoinHandle<Result<()>>>,
}

impl Producer {
    fn spawn(
        node: &Arc<Participant>,
        work: impl std::future::Future<Output = Result<()>> + Send + 'static,
    ) -> Producer {
        Producer {
            node: node.clone(),
            task: Some(tokio::spawn(work)),
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take().filter(|task| !task.is_finished()) {
            // Its outcome is unheard from here: a failure has aborted the
            // query by then (`produce` records it).
            self.node.owe(task);
        }
    }
}

async fn join(mut producer: Producer) -> Result<()> {
    let Some(task) = producer.task.as_mut() else {
        return Ok(());
    };
    let outcome = task.await;
    // It has ended: nothing to hand over.
    producer.task = None;
    outcome.map_err(|e| exec_datafusion_err!("weft exchange producer task: {e}"))?
}

/// One incoming edge as a stream of batches.
fn receive(schema: SchemaRef, rx: BatchReceiver) -> SendableRecordBatchStream {
    let batches = stream::try_unfold(rx, |mut rx| async move {
        Ok(rx.next().await.map_err(external)?.map(|batch| (batch, rx)))
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}

/// At most `fetch` rows of `input`; then it ends, dropping (and so
/// closing) its inboxes, which stops their senders.
fn limit(
    schema: SchemaRef,
    input: impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static,
    fetch: usize,
) -> SendableRecordBatchStream {
    let limited = stream::try_unfold((Box::pin(input), fetch), |(mut input, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        Ok(input.try_next().await?.map(|batch| {
            let take = batch.num_rows().min(left);
            (batch.slice(0, take), (input, left - take))
        }))
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, limited))
}

/// The local producer: runs the input and routes its rows to `targets`.
/// A failure aborts the query (every participant fails with its message);
/// receivers that closed early (a satisfied limit) just end it.
async fn produce(
    node: Arc<Participant>,
    id: u32,
    mode: ExchangeMode,
    targets: Vec<usize>,
    me: usize,
    participants: usize,
    input: SendableRecordBatchStream,
) -> Result<()> {
    // The outboxes outlive `route`: on a failure they must close only after
    // the abort is recorded, or a receiver that sees its ring close first
    // reports this participant as vanished, and that, not our error,
    // becomes the query's first error.
    let mut outs = Vec::new();
    let result = async {
        open(&node, id, &targets, participants, &input.schema(), &mut outs).await?;
        route(&node, mode, &targets, me, participants, input, &mut outs).await
    }
    .await;
    let result = match result {
        Ok(()) | Err(RuntimeError::ReceiverClosed) => Ok(()),
        Err(e) => {
            if !matches!(e, RuntimeError::Aborted { .. }) {
                node.abort(e.code().unwrap_or(QUERY_FAILURE_CODE), &e.to_string());
            }
            Err(external(e))
        }
    };
    drop(outs);
    result
}

/// Opens the senders to `targets` into `outs`, indexed by participant
/// (`None` where we do not send).
async fn open(
    node: &Arc<Participant>,
    id: u32,
    targets: &[usize],
    participants: usize,
    schema: &SchemaRef,
    outs: &mut Vec<Option<BatchSender>>,
) -> Result<(), RuntimeError> {
    outs.extend((0..participants).map(|_| None));
    for &to in targets {
        outs[to] = Some(BatchSender::new(Outbox::open(node, id, to as u32).await?, schema)?);
    }
    Ok(())
}

/// Runs the input and routes its rows through `outs` (see [`open`]),
/// then finishes them.
async fn route(
    node: &Arc<Participant>,
    mode: ExchangeMode,
    targets: &[usize],
    me: usize,
    participants: usize,
    mut input: SendableRecordBatchStream,
    outs: &mut [Option<BatchSender>],
) -> Result<(), RuntimeError> {
    let query_error = RuntimeError::from;
    // The input may compute for long before its first batch (an aggregate,
    // a sort); it yields now and then (tokio's cooperative budget), and
    // every poll checks for an abort, which nothing else here would see
    // while this participant is busy.
    let mut input = stream::poll_fn(move |cx| {
        if let Err(aborted) = node.check_abort() {
            return Poll::Ready(Some(Err(aborted)));
        }
        if node.query_complete() {
            return Poll::Ready(None); // nobody needs more
        }
        input.poll_next_unpin(cx).map_err(RuntimeError::from)
    });
    let mut partitioner = match &mode {
        ExchangeMode::Hash(keys) => Some(
            BatchPartitioner::try_new(
                Partitioning::Hash(keys.clone(), participants),
                Time::new(),
                me,
                participants,
            )
            .map_err(query_error)?,
        ),
        _ => None,
    };
    let mut sent = 0usize;
    while let Some(batch) = input.next().await {
        let batch = batch?;
        if targets.is_empty() {
            continue; // a leader-only subplan run for its side effects
        }
        if outs.iter().all(Option::is_none) {
            return Ok(()); // every receiver closed early: nobody needs more
        }
        match (&mode, partitioner.as_mut()) {
            (ExchangeMode::Hash(_), Some(partitioner)) => {
                let pieces: Vec<(usize, RecordBatch)> = partitioner
                    .partition_iter(batch)
                    .and_then(|pieces| pieces.collect())
                    .map_err(query_error)?;
                for (to, piece) in pieces {
                    send(outs, to, &piece).await?;
                }
            }
            (ExchangeMode::Gather { .. }, _) => send(outs, 0, &batch).await?,
            (ExchangeMode::RoundRobin, _) => send(outs, sent % participants, &batch).await?,
            _ => {
                for &to in targets {
                    send(outs, to, &batch).await?;
                }
            }
        }
        sent += 1;
    }
    // Taken one at a time, so that after an error the rest stay open
    // until the abort is recorded (see `produce`). A receiver that closed
    // early needs no end of stream, but the ones after it still do.
    for slot in outs.iter_mut() {
        if let Some(out) = slot.take() {
            match out.finish().await {
                Ok(()) | Err(RuntimeError::ReceiverClosed) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Sends to one target. A receiver that closed early (it needs no more
/// rows) is dropped from `outs`, and the others go on: they still get their
/// rows and a clean end of stream.
async fn send(outs: &mut [Option<BatchSender>], to: usize, batch: &RecordBatch) -> Result<(), RuntimeError> {
    let Some(slot) = outs.get_mut(to) else {
        return Err(RuntimeError::Runtime(format!(
            "exchange routed a batch to participant {to}"
        )));
    };
    let Some(out) = slot.as_mut() else {
        return Ok(()); // closed earlier
    };
    match out.send(batch).await {
        Err(RuntimeError::ReceiverClosed) => {
            *slot = None;
            Ok(())
        }
        other => other,
    }
}
