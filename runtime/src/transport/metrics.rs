//! Per-edge traffic and stall times, kept by each participant and readable
//! after its run (they feed EXPLAIN ANALYZE).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// One directed edge of an exchange: the ring from `sender` to `receiver`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Edge {
    /// The exchange.
    pub exchange: u32,
    /// The participant writing the ring.
    pub sender: u32,
    /// The participant reading it.
    pub receiver: u32,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "x{} {}->{}", self.exchange, self.sender, self.receiver)
    }
}

/// Traffic through one edge as one side saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EdgeStats {
    /// Messages (frames, or fragmented messages) moved.
    pub messages: u64,
    /// Payload bytes moved.
    pub bytes: u64,
    /// Record batches moved (for Arrow streams).
    pub batches: u64,
    /// Rows moved (for Arrow streams).
    pub rows: u64,
    /// Time this side waited: a sender on a full ring, a receiver on an
    /// empty one.
    pub stalled: Duration,
}

impl EdgeStats {
    pub(crate) fn add(&mut self, other: &EdgeStats) {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.batches += other.batches;
        self.rows += other.rows;
        self.stalled += other.stalled;
    }
}

/// A participant's edge statistics: what it sent and what it received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Edges this participant wrote, by edge.
    pub sent: BTreeMap<Edge, EdgeStats>,
    /// Edges this participant read, by edge.
    pub received: BTreeMap<Edge, EdgeStats>,
}
