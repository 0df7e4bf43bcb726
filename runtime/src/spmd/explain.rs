//! EXPLAIN text of an SPMD plan: the plan with each exchange's mode and
//! keys and, after a run, every edge's traffic as both of its ends saw it.

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
