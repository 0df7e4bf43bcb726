//! EXPLAIN of an SPMD plan: as text ([`explain`]: the plan with each
//! exchange's mode and keys and, after a run, every edge's traffic as both
//! of its ends saw it), or as a tree for an embedder to render in its own
//! form ([`ExplainNode`], [`ExchangeTraffic`]): each operator with what
//! every participant's run of it did, each exchange with its traffic
//! summed over its edges.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::physical_plan::{displayable, ExecutionPlan};

use crate::transport::metrics::{Edge, EdgeStats, Metrics};

/// `plan` as indented text; with `run` (every participant's metrics from
/// one run of it, in any order), the operators' metrics as this process saw
/// them and a table of the edges: per edge, the batches, rows and bytes
/// sent, and how long its sender waited on a full ring and its receiver on
/// an empty one.
///
/// ```
/// # use std::sync::Arc;
/// # use datafusion::physical_plan::empty::EmptyExec;
/// # use datafusion::arrow::datatypes::Schema;
/// let plan = EmptyExec::new(Arc::new(Schema::empty()));
/// assert_eq!(weft_runtime::explain(&plan, None).trim(), "EmptyExec");
/// ```
pub fn explain(plan: &dyn ExecutionPlan, run: Option<&[Metrics]>) -> String {
    let Some(run) = run else {
        return displayable(plan).indent(true).to_string();
    };
    let mut text = DisplayableExecutionPlan::with_metrics(plan).indent(true).to_string();
    text.push_str(&edge_table(run));
    text
}

/// Both ends of each edge, merged from every participant's metrics.
fn edges(run: &[Metrics]) -> BTreeMap<Edge, (EdgeStats, EdgeStats)> {
    let mut edges: BTreeMap<Edge, (EdgeStats, EdgeStats)> = BTreeMap::new();
    for metrics in run {
        for (edge, stats) in &metrics.sent {
            edges.entry(*edge).or_default().0.add(stats);
        }
        for (edge, stats) in &metrics.received {
            edges.entry(*edge).or_default().1.add(stats);
        }
    }
    edges
}

fn edge_table(run: &[Metrics]) -> String {
    let edges = edges(run);
    let mut text = String::from("Edges (exchange sender->receiver):\n");
    if edges.is_empty() {
        text.push_str("  none\n");
    }
    for (edge, (sent, received)) in edges {
        write!(
            text,
            "  {edge}: batches={}, rows={}, bytes={}, send_stall={}, receive_stall={}",
            sent.batches,
            sent.rows,
            sent.bytes,
            millis(sent.stalled),
            millis(received.stalled),
        )
        .ok();
        // A receiver that stopped early (a satisfied limit) read less.
        if received.rows != sent.rows {
            write!(text, ", rows_received={}", received.rows).ok();
        }
        text.push('\n');
    }
    text
}

fn millis(time: Duration) -> String {
    format!("{:.3}ms", time.as_secs_f64() * 1e3)
}

/// What one participant's run of one operator did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OperatorRun {
    /// Rows the operator output.
    pub rows: u64,
    /// Time the operator spent computing (DataFusion's `elapsed_compute`:
    /// its own work, not its inputs').
    pub compute: Duration,
}

/// What this participant's run of `plan` did, operator by operator, in
/// preorder (an operator, then its children's subtrees, left to right):
/// the order [`ExplainNode::new`] takes them in.
///
/// ```
/// # use std::sync::Arc;
/// # use datafusion::physical_plan::empty::EmptyExec;
/// # use datafusion::arrow::datatypes::Schema;
/// let plan = EmptyExec::new(Arc::new(Schema::empty()));
/// assert_eq!(weft_runtime::operator_runs(&plan).len(), 1);
/// ```
pub fn operator_runs(plan: &dyn ExecutionPlan) -> Vec<OperatorRun> {
    let mut runs = Vec::new();
    preorder(plan, &mut |node| {
        let metrics = node.metrics();
        runs.push(OperatorRun {
            rows: metrics.as_ref().and_then(|m| m.output_rows()).unwrap_or(0) as u64,
            compute: Duration::from_nanos(metrics.as_ref().and_then(|m| m.elapsed_compute()).unwrap_or(0) as u64),
        });
    });
    runs
}

fn preorder(plan: &dyn ExecutionPlan, visit: &mut impl FnMut(&dyn ExecutionPlan)) {
    visit(plan);
    for child in plan.children() {
        preorder(child.as_ref(), visit);
    }
}

/// One operator of a plan, for EXPLAIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExplainNode {
    /// The operator's name (`HashJoinExec`).
    pub name: String,
    /// Its one-line description, its name left out (`mode=Partitioned,
    /// join_type=Inner, on=[..]`).
    pub detail: String,
    /// Whether the operator keeps metrics at all (a wrapper such as
    /// `CooperativeExec` keeps none: its runs say nothing).
    pub measured: bool,
    /// After a run, what each participant's run of it did, by participant;
    /// empty before one.
    pub runs: Vec<OperatorRun>,
    /// Its inputs.
    pub children: Vec<ExplainNode>,
}

impl ExplainNode {
    /// `plan` as a tree; with `runs` (each participant's
    /// [`operator_runs`] of the same plan, by participant), what each did.
    /// A participant whose runs do not match the plan's operators (it ran
    /// none of it) is left out.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use datafusion::physical_plan::empty::EmptyExec;
    /// # use datafusion::arrow::datatypes::Schema;
    /// use weft_runtime::ExplainNode;
    ///
    /// let plan = EmptyExec::new(Arc::new(Schema::empty()));
    /// let node = ExplainNode::new(&plan, None);
    /// assert_eq!(node.name, "EmptyExec");
    /// assert!(node.children.is_empty() && node.runs.is_empty());
    /// ```
    pub fn new(plan: &dyn ExecutionPlan, runs: Option<&[Vec<OperatorRun>]>) -> ExplainNode {
        let mut count = 0;
        preorder(plan, &mut |_| count += 1);
        let runs: Vec<&[OperatorRun]> = runs
            .unwrap_or_default()
            .iter()
            .filter(|r| r.len() == count)
            .map(Vec::as_slice)
            .collect();
        let mut at = 0;
        ExplainNode::build(plan, &runs, &mut at)
    }

    fn build(plan: &dyn ExecutionPlan, runs: &[&[OperatorRun]], at: &mut usize) -> ExplainNode {
        let line = DisplayableExecutionPlan::new(plan).one_line().to_string();
        let name = plan.name().to_string();
        let detail = line
            .trim()
            .strip_prefix(name.as_str())
            .map(|rest| rest.trim_start_matches(':').trim())
            .unwrap_or(line.trim())
            .to_string();
        let own = runs.iter().map(|r| r[*at]).collect();
        *at += 1;
        let children = plan
            .children()
            .into_iter()
            .map(|child| ExplainNode::build(child.as_ref(), runs, at))
            .collect();
        ExplainNode {
            name,
            detail,
            measured: plan.metrics().is_some(),
            runs: own,
            children,
        }
    }

    /// Rows output, summed over the participants.
    pub fn rows(&self) -> u64 {
        self.runs.iter().map(|r| r.rows).sum()
    }

    /// Compute time, summed over the participants.
    pub fn compute(&self) -> Duration {
        self.runs.iter().map(|r| r.compute).sum()
    }
}

/// One exchange's traffic in a run, summed over its edges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeTraffic {
    /// The exchange.
    pub exchange: u32,
    /// What its senders sent, summed (rows, bytes, batches; `stalled` is
    /// the senders' waits summed).
    pub sent: EdgeStats,
    /// Rows its receivers read, summed (fewer than sent when a receiver
    /// stopped early, as under a satisfied LIMIT).
    pub rows_received: u64,
    /// The longest any sender waited on a full ring.
    pub worst_send_stall: Duration,
    /// The longest any receiver waited on an empty ring.
    pub worst_receive_stall: Duration,
    /// Each edge: as its sender and as its receiver saw it.
    pub edges: Vec<(Edge, EdgeStats, EdgeStats)>,
}

/// Each exchange's traffic in a run, from every participant's metrics (in
/// any order), by exchange.
///
/// ```
/// assert!(weft_runtime::exchange_traffic(&[]).is_empty());
/// ```
pub fn exchange_traffic(run: &[Metrics]) -> Vec<ExchangeTraffic> {
    let mut exchanges: BTreeMap<u32, ExchangeTraffic> = BTreeMap::new();
    for (edge, (sent, received)) in edges(run) {
        let traffic = exchanges.entry(edge.exchange).or_insert_with(|| ExchangeTraffic {
            exchange: edge.exchange,
            sent: EdgeStats::default(),
            rows_received: 0,
            worst_send_stall: Duration::ZERO,
            worst_receive_stall: Duration::ZERO,
            edges: Vec::new(),
        });
        traffic.sent.add(&sent);
        traffic.rows_received += received.rows;
        traffic.worst_send_stall = traffic.worst_send_stall.max(sent.stalled);
        traffic.worst_receive_stall = traffic.worst_receive_stall.max(received.stalled);
        traffic.edges.push((edge, sent, received));
    }
    exchanges.into_values().collect()
}
