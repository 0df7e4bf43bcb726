//! A subplan the plan reads more than once, run once: [`SharedExec`] and
//! the [`ShareRepeated`] rule that places it.
//!
//! DataFusion inlines a `WITH` query at every reference, so TPC-H Q15,
//! which reads its `revenue0` view in the join and again for the maximum,
//! scans and aggregates lineitem twice. Postgres materializes such a CTE
//! once. [`ShareRepeated`] finds the subtrees that occur more than once
//! (equal as shipped plans: the same bytes under [`crate::PlanCodec`], so equal in
//! every operator, expression, type and source), and puts one
//! [`SharedExec`] at each place: the first consumer to execute it runs the
//! subtree, and every batch it yields is kept until each consumer has read
//! it.
//!
//! Every copy of a [`SharedExec`] (DataFusion's rules rebuild nodes with
//! `with_new_children`; each participant decodes the plan again) holds the
//! same [`SharedState`], so the subtree runs once per partition however
//! often the node is rebuilt; [`crate::Distribute`] turns the subtree into
//! exchanges once, and [`crate::PlanCodec::decode`] gives the copies of one id one
//! state.
//!
//! Only subtrees that aggregate are shared (see `aggregates` for why not
//! bare scans and joins). Memory: a batch is kept from the moment one
//! consumer reads it until the last one has, and counted against the
//! session's memory pool. A consumer that reads everything before another
//! starts (a hash join's build side) keeps the whole output, so the rule
//! shares only subtrees estimated at most [`SHARE_ROWS`] rows; a larger
//! one is run at each place, as DataFusion plans it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{exec_datafusion_err, DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{Stream, StreamExt};

use crate::spmd::estimate::estimated_rows;

/// Repeated subtrees estimated at more rows than this are not shared: a
/// consumer may hold all of their output (about 10 bytes a column a row)
/// until the last one reads it.
pub const SHARE_ROWS: usize = 1 << 20;

/// One subtree's output, run once for all the places that read it; see the
/// module docs.
///
/// ```
/// # use std::sync::Arc;
/// # use datafusion::arrow::datatypes::Schema;
/// # use datafusion::physical_plan::{empty::EmptyExec, ExecutionPlan};
/// use weft_runtime::SharedExec;
///
/// let input: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(Arc::new(Schema::empty())));
/// let shared = SharedExec::new(0, 2, input);
/// assert_eq!((shared.id(), shared.consumers()), (0, 2));
/// ```
pub struct SharedExec {
    /// Its number in the plan: the copies of one shared subtree have the
    /// same one.
    id: u32,
    /// How many places in the plan read it.
    consumers: usize,
    input: Arc<dyn ExecutionPlan>,
    /// The runs, by partition; the same for every copy of this node.
    state: Arc<SharedState>,
    /// Whether this copy's input is the one that ran (EXPLAIN ANALYZE
    /// shows the subtree's metrics under that copy only).
    ran: AtomicBool,
    properties: Arc<PlanProperties>,
}

/// The runs of one shared subtree, by partition.
#[derive(Default)]
pub struct SharedState {
    partitions: Mutex<HashMap<usize, Arc<Mutex<Tee>>>>,
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState").finish_non_exhaustive()
    }
}

/// One partition's run of the subtree and the batches not yet read by
/// every consumer.
struct Tee {
    /// The subtree's stream; None before the first consumer asks, after
    /// it ended, and while a consumer polls it (outside the lock).
    input: Option<SendableRecordBatchStream>,
    /// The input has ended (or failed).
    finished: bool,
    /// The input's error, told to every consumer but the one that met it.
    error: Option<String>,
    /// Batches `base..base + batches.len()` of the output.
    batches: VecDeque<RecordBatch>,
    base: usize,
    /// Each registered consumer's next batch.
    cursors: Vec<usize>,
    /// Consumers that found nothing to read and are waiting for whoever
    /// polls the input next.
    waiting: Vec<Waker>,
    /// The kept batches' memory.
    reservation: MemoryReservation,
}

impl SharedExec {
    /// `input`, read from `consumers` places, numbered `id`.
    pub fn new(id: u32, consumers: usize, input: Arc<dyn ExecutionPlan>) -> SharedExec {
        SharedExec::with_state(id, consumers, input, Arc::default())
    }

    /// A copy of a shared node: the same runs as every other holder of
    /// `state`.
    pub fn with_state(id: u32, consumers: usize, input: Arc<dyn ExecutionPlan>, state: Arc<SharedState>) -> SharedExec {
        let properties = Arc::clone(input.properties());
        SharedExec {
            id,
            consumers,
            input,
            state,
            ran: AtomicBool::new(false),
            properties,
        }
    }

    /// Its number in the plan.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// How many places in the plan read it.
    pub fn consumers(&self) -> usize {
        self.consumers
    }

    /// The runs it shares with its copies.
    pub fn state(&self) -> &Arc<SharedState> {
        &self.state
    }
}

impl fmt::Debug for SharedExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedExec")
            .field("id", &self.id)
            .field("consumers", &self.consumers)
            .finish_non_exhaustive()
    }
}

impl DisplayAs for SharedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WeftShared: id={}, consumers={}", self.id, self.consumers)?;
        let executed = !lock(&self.state.partitions).is_empty();
        if executed && !self.ran.load(Ordering::Relaxed) {
            f.write_str(", read from its other place")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for SharedExec {
    crate::pass_through_rows!();

    fn name(&self) -> &str {
        "WeftShared"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
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
            .ok_or_else(|| exec_datafusion_err!("WeftShared takes exactly one child"))?;
        Ok(Arc::new(SharedExec::with_state(
            self.id,
            self.consumers,
            input,
            Arc::clone(&self.state),
        )))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let tee = {
            let mut partitions = lock(&self.state.partitions);
            Arc::clone(partitions.entry(partition).or_insert_with(|| {
                let reservation =
                    MemoryConsumer::new(format!("WeftShared[{}]", self.id)).register(context.memory_pool());
                Arc::new(Mutex::new(Tee {
                    input: None,
                    finished: false,
                    error: None,
                    batches: VecDeque::new(),
                    base: 0,
                    cursors: Vec::new(),
                    waiting: Vec::new(),
                    reservation,
                }))
            }))
        };
        let consumer = {
            let mut state = lock(&tee);
            if state.cursors.len() == self.consumers {
                // A batch read by every planned consumer is gone: a further
                // one would miss it.
                return Err(exec_datafusion_err!(
                    "WeftShared {} executed more often than its {} consumers",
                    self.id,
                    self.consumers
                ));
            }
            if state.cursors.is_empty() {
                state.input = Some(self.input.execute(partition, context)?);
                self.ran.store(true, Ordering::Relaxed);
            }
            state.cursors.push(0);
            state.cursors.len() - 1
        };
        Ok(Box::pin(SharedStream {
            schema: self.schema(),
            tee,
            consumer,
            consumers: self.consumers,
            ended: false,
        }))
    }
}

/// One consumer's read of a [`Tee`].
struct SharedStream {
    schema: SchemaRef,
    tee: Arc<Mutex<Tee>>,
    consumer: usize,
    consumers: usize,
    /// This consumer has had its end (or error).
    ended: bool,
}

impl Tee {
    /// The next kept batch for `consumer` of `consumers`, if it has not
    /// read them all; drops what every consumer has read.
    fn take_kept(&mut self, consumer: usize, consumers: usize) -> Option<RecordBatch> {
        let at = self.cursors[consumer] - self.base;
        let batch = self.batches.get(at)?.clone();
        self.cursors[consumer] += 1;
        self.trim(consumers);
        Some(batch)
    }

    /// Drops the batches every one of `consumers` has read (those that
    /// have not executed yet will read from batch 0); when none is left to
    /// read, the input too, which stops the subtree.
    fn trim(&mut self, consumers: usize) {
        if self.cursors.len() < consumers {
            return;
        }
        let everyone = self.cursors.iter().copied().min().unwrap_or(0);
        while self.base < everyone {
            let Some(dropped) = self.batches.pop_front() else {
                break;
            };
            self.reservation.shrink(dropped.get_array_memory_size());
            self.base += 1;
        }
        if everyone == usize::MAX {
            self.input = None;
        }
    }
}

impl Drop for SharedStream {
    fn drop(&mut self) {
        // A consumer that stops early (under a limit, or cancelled) keeps
        // nothing for itself.
        let mut tee = lock(&self.tee);
        tee.cursors[self.consumer] = usize::MAX;
        tee.trim(self.consumers);
    }
}

impl Stream for SharedStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let (consumer, consumers) = (self.consumer, self.consumers);
        let shared = Arc::clone(&self.tee);
        let mut input = {
            let mut tee = lock(&shared);
            if let Some(batch) = tee.take_kept(consumer, consumers) {
                return Poll::Ready(Some(Ok(batch)));
            }
            if tee.finished {
                let error = tee.error.clone();
                drop(tee);
                self.ended = true;
                return Poll::Ready(error.map(|e| Err(DataFusionError::Execution(format!("shared input: {e}")))));
            }
            if !tee.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                tee.waiting.push(cx.waker().clone());
            }
            match tee.input.take() {
                Some(input) => input,
                // Another consumer is polling it (on another thread); it
                // wakes us when it has something.
                None => return Poll::Pending,
            }
        };
        // Polled outside the lock: the subtree may take long, and may wake
        // another consumer of this tee, which then takes the lock.
        let polled = input.poll_next_unpin(cx);
        let mut tee = lock(&shared);
        let woken = std::mem::take(&mut tee.waiting);
        let result = match polled {
            Poll::Pending => {
                tee.input = Some(input);
                // Nothing new for anyone: the list stays as it was (ours
                // on it, and the input holds ours too).
                tee.waiting = woken;
                return Poll::Pending;
            }
            Poll::Ready(Some(Ok(batch))) => {
                tee.input = Some(input);
                if let Err(e) = tee.reservation.try_grow(batch.get_array_memory_size()) {
                    tee.finished = true;
                    tee.error = Some(e.to_string());
                    tee.input = None;
                    self.ended = true;
                    Poll::Ready(Some(Err(e)))
                } else {
                    tee.batches.push_back(batch);
                    // This consumer had read every kept batch, so the next
                    // one is the batch just kept.
                    let batch = tee.take_kept(consumer, consumers).ok_or_else(|| {
                        exec_datafusion_err!("WeftShared: the batch kept for consumer {consumer} went missing")
                    });
                    Poll::Ready(Some(batch))
                }
            }
            Poll::Ready(Some(Err(e))) => {
                tee.finished = true;
                tee.error = Some(e.to_string());
                self.ended = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                tee.finished = true;
                self.ended = true;
                Poll::Ready(None)
            }
        };
        drop(tee);
        for waker in woken.into_iter().filter(|w| !w.will_wake(cx.waker())) {
            waker.wake();
        }
        result
    }
}

impl RecordBatchStream for SharedStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

/// The lock, also after a consumer panicked holding it (the state is then
/// only read to fail the query).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The physical optimizer rule that shares repeated subtrees (see the
/// module docs); add it before [`crate::Distribute`].
///
/// ```
/// # use std::sync::Arc;
/// # use datafusion_proto::physical_plan::DefaultPhysicalExtensionCodec;
/// use weft_runtime::{PlanCodec, ShareRepeated};
///
/// let rule = ShareRepeated::new(PlanCodec::new(Arc::new(DefaultPhysicalExtensionCodec {})));
/// # let _ = rule;
/// ```
#[derive(Debug)]
pub struct ShareRepeated {
    /// Subtrees are equal when their encodings are.
    codec: Box<dyn PlanBytes>,
}

/// A plan's bytes as shipped, by which [`ShareRepeated`] tells equal
/// subtrees: [`crate::PlanCodec`]'s encoding.
pub trait PlanBytes: std::fmt::Debug + Send + Sync {
    /// `plan`'s bytes, or None where it cannot be encoded.
    fn bytes(&self, plan: &Arc<dyn ExecutionPlan>) -> Option<Vec<u8>>;
}

impl ShareRepeated {
    /// The rule, comparing subtrees as `codec` encodes them (the codec the
    /// plan is shipped with, so that sources compare by what they read).
    pub fn new(codec: impl PlanBytes + 'static) -> ShareRepeated {
        ShareRepeated { codec: Box::new(codec) }
    }

    /// `node`'s encoding, if it is worth sharing should it occur again:
    /// it aggregates, and is estimated small enough to keep.
    fn candidate(&self, node: &Arc<dyn ExecutionPlan>) -> Option<Vec<u8>> {
        if !aggregates(node) || estimated_rows(node).is_none_or(|rows| rows > SHARE_ROWS) {
            return None;
        }
        // A subtree weft cannot encode is not shipped either way.
        self.codec.bytes(node)
    }

    /// The candidates in `plan` that occur more than once.
    fn repeated(&self, plan: &Arc<dyn ExecutionPlan>) -> HashSet<Vec<u8>> {
        let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
        let _ = plan.apply(|node| {
            if let Some(bytes) = self.candidate(node) {
                *counts.entry(bytes).or_default() += 1;
            }
            Ok(TreeNodeRecursion::Continue)
        });
        counts
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(bytes, _)| bytes)
            .collect()
    }
}

impl PhysicalOptimizerRule for ShareRepeated {
    fn name(&self) -> &str {
        "WeftShareRepeated"
    }

    fn schema_check(&self) -> bool {
        true
    }

    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        let repeated = self.repeated(&plan);
        if repeated.is_empty() {
            return Ok(plan);
        }
        // Top down, so that the largest repeated subtree is shared and
        // not the smaller ones inside it; one node per subtree, placed at
        // each of its occurrences.
        let mut shared: HashMap<Vec<u8>, Arc<dyn ExecutionPlan>> = HashMap::new();
        let plan = plan
            .transform_down(|node| {
                let Some(bytes) = self.candidate(&node).filter(|bytes| repeated.contains(bytes)) else {
                    return Ok(Transformed::no(node));
                };
                let id = shared.len() as u32;
                let node = shared
                    .entry(bytes)
                    .or_insert_with(|| Arc::new(SharedExec::new(id, 0, node)));
                Ok(Transformed::new(Arc::clone(node), true, TreeNodeRecursion::Jump))
            })?
            .data;
        // How often each is read where it was placed (a subtree repeated
        // only inside a larger shared one is not placed twice): a node
        // read once is no node.
        let mut consumers: HashMap<u32, usize> = HashMap::new();
        plan.apply(|node| {
            if let Some(shared) = node.downcast_ref::<SharedExec>() {
                *consumers.entry(shared.id()).or_default() += 1;
                return Ok(TreeNodeRecursion::Jump);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let mut placed: HashMap<u32, Arc<dyn ExecutionPlan>> = HashMap::new();
        Ok(plan
            .transform_down(|node| {
                let Some(shared) = node.downcast_ref::<SharedExec>() else {
                    return Ok(Transformed::no(node));
                };
                let input = Arc::clone(&shared.input);
                let node = match consumers[&shared.id()] {
                    1 => input,
                    n => Arc::clone(
                        placed
                            .entry(shared.id())
                            .or_insert_with(|| Arc::new(SharedExec::new(shared.id(), n, input))),
                    ),
                };
                Ok(Transformed::new(node, true, TreeNodeRecursion::Jump))
            })?
            .data)
    }
}

/// Whether `plan` aggregates rows it reads: what sharing is for. A
/// repeated subtree that only scans or joins is better run at each place:
/// its rows are as many as it reads, and each place may shrink them in
/// its own way (a join's keys filter the scan under its probe side, which
/// a shared scan could not take: with its scans shared, TPC-H Q2 would
/// read all of partsupp twice over).
fn aggregates(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        found = node.downcast_ref::<AggregateExec>().is_some();
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found && reads_data(plan)
}

/// Whether `plan` reads a source with rows (not just constants), so that
/// running it twice costs a second read.
fn reads_data(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut reads = false;
    let _ = plan.apply(|node| {
        if node.children().is_empty() && !matches!(node.name(), "EmptyExec" | "PlaceholderRowExec") {
            reads = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    reads
}
