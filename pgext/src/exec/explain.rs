//! A query's EXPLAIN as its run knows it: who runs the plan, the shared
//! memory the run took, the distributed plan with what every
//! participant's run of each operator did, and each exchange's traffic.
//! [`crate::hook::explain`] renders it in Postgres's EXPLAIN, in any of its
//! formats; `weft.explain` shows [`Explained::text`].

use std::fmt::Write;

use weft_runtime::{ExchangeTraffic, ExplainNode};

/// A query's EXPLAIN.
#[derive(Clone, Debug)]
pub struct Explained {
    /// Participants that run the plan's parts (the leader and the workers
    /// that started).
    pub participants: usize,
    /// Workers asked for.
    pub requested: usize,
    /// Why the plan is the leader's alone, when weft cannot distribute it.
    pub refused: Option<String>,
    /// After a run, the shared memory it took.
    pub memory: Option<MeshMemory>,
    /// The plan, with each operator's runs after a run.
    pub plan: ExplainNode,
    /// After a run, each exchange's traffic.
    pub exchanges: Vec<ExchangeTraffic>,
    /// The plan as the runtime shows it: one line per operator in
    /// preorder, with the leader's metrics after a run, then every edge's
    /// traffic ([`weft_runtime::explain`]).
    pub datafusion: String,
}

/// The shared memory of a run: the section's segment for its exchanges.
#[derive(Clone, Copy, Debug)]
pub struct MeshMemory {
    /// The segment's size in bytes.
    pub bytes: usize,
    /// Whether it was carved out of `weft.shared_memory` (else a segment of
    /// its own).
    pub reserved: bool,
    /// The exchanges it holds.
    pub exchanges: u32,
    /// Each ring's capacity in bytes.
    pub ring: usize,
}

impl Explained {
    /// Who runs the plan: `weft plan for 3 participants (the leader and 2
    /// workers; 2 requested)`, and why the leader runs it alone when it
    /// does.
    pub fn heading(&self) -> String {
        let who = format!(
            "{} participants (the leader and {} workers; {} requested)",
            self.participants,
            self.participants - 1,
            self.requested
        );
        match &self.refused {
            None => format!("weft plan for {who}"),
            Some(reason) => {
                format!("weft plan for the leader alone, of {who}: weft cannot distribute this query ({reason})")
            }
        }
    }

    /// The run's shared memory, in words: `shared memory: 1.2 MB for ..`.
    pub fn memory_line(&self) -> Option<String> {
        self.memory_value().map(|value| format!("shared memory: {value}"))
    }

    /// The run's shared memory, in words: `1.2 MB for 4 exchanges (rings
    /// of 256 kB) in weft.shared_memory`.
    pub fn memory_value(&self) -> Option<String> {
        let memory = self.memory?;
        let whence = if memory.reserved {
            "in weft.shared_memory"
        } else {
            "in a segment of its own (weft.shared_memory had no room for it)"
        };
        Some(format!(
            "{:.1} MB for {} exchanges (rings of {} kB) {whence}",
            memory.bytes as f64 / (1024.0 * 1024.0),
            memory.exchanges,
            memory.ring / 1024
        ))
    }

    /// The plan's operators as lines, each with what all participants'
    /// runs of it did after a run (`VERBOSE`: each participant's too),
    /// indented by depth.
    pub fn operator_lines(&self, verbose: bool) -> Vec<String> {
        let mut nodes = Vec::new();
        preorder(&self.plan, 0, &mut nodes);
        let datafusion: Vec<&str> = self
            .datafusion
            .lines()
            .take_while(|line| !line.starts_with("Edges ("))
            .collect();
        // DataFusion's text is one line per operator, in preorder; its own
        // (the leader's metrics included) where the two agree.
        let own = datafusion.len() == nodes.len();
        let mut lines = Vec::new();
        for (i, (depth, node)) in nodes.into_iter().enumerate() {
            let indent = "  ".repeat(depth);
            let mut line = if own {
                datafusion[i].to_string()
            } else {
                format!("{indent}{}: {}", node.name, node.detail)
            };
            if node.measured && !node.runs.is_empty() {
                write!(
                    line,
                    "  [all {} participants: rows={}, compute={}]",
                    node.runs.len(),
                    node.rows(),
                    millis(node.compute())
                )
                .ok();
            }
            lines.push(line);
            if verbose && node.measured && node.runs.len() > 1 {
                for (participant, run) in node.runs.iter().enumerate() {
                    lines.push(format!(
                        "{indent}    participant {participant}: rows={}, compute={}",
                        run.rows,
                        millis(run.compute)
                    ));
                }
            }
        }
        lines
    }

    /// Each exchange's traffic as a line (`VERBOSE`: each edge's too).
    pub fn exchange_lines(&self, verbose: bool) -> Vec<String> {
        let mut lines = Vec::new();
        for exchange in &self.exchanges {
            let mut line = format!(
                "exchange {}: rows={}, bytes={}, batches={}, worst send stall={}, worst receive stall={}",
                exchange.exchange,
                exchange.sent.rows,
                exchange.sent.bytes,
                exchange.sent.batches,
                millis(exchange.worst_send_stall),
                millis(exchange.worst_receive_stall)
            );
            // A receiver that stopped early (a satisfied limit) read less.
            if exchange.rows_received != exchange.sent.rows {
                write!(line, ", rows received={}", exchange.rows_received).ok();
            }
            lines.push(line);
            if verbose {
                for (edge, sent, received) in &exchange.edges {
                    lines.push(format!(
                        "  {} -> {}: rows={}, bytes={}, send stall={}, receive stall={}",
                        edge.sender,
                        edge.receiver,
                        sent.rows,
                        sent.bytes,
                        millis(sent.stalled),
                        millis(received.stalled)
                    ));
                }
            }
        }
        lines
    }

    /// The whole EXPLAIN as text, as `weft.explain` shows it: the
    /// runtime's form, every edge's traffic listed.
    pub fn text(&self) -> String {
        let mut lines = vec![self.heading()];
        lines.extend(self.memory_line());
        lines.push(self.datafusion.clone());
        lines.join("\n")
    }
}

/// `node`'s subtree in preorder, with each operator's depth.
pub fn preorder<'a>(node: &'a ExplainNode, depth: usize, out: &mut Vec<(usize, &'a ExplainNode)>) {
    out.push((depth, node));
    for child in &node.children {
        preorder(child, depth + 1, out);
    }
}

/// A duration as EXPLAIN shows times: milliseconds, three decimals.
pub fn millis(time: std::time::Duration) -> String {
    format!("{:.3}ms", time.as_secs_f64() * 1e3)
}
