//! DataFusion plans run SPMD: the leader plans once for P participants,
//! every participant runs the same plan on its share of the data, and
//! exchanges move rows between them over the transport.
//!
//! - [`distribute`]: the rule that turns a single-process plan into an
//!   SPMD plan;
//! - [`estimate`]: how many rows a plan outputs, as these rules weigh it;
//! - [`joins`]: what a join type's output is made of, for the rules that
//!   move joins around (the distribution rule, pgext's passes);
//! - [`exchange`]: [`ExchangeExec`](exchange::ExchangeExec), hash
//!   shuffle, broadcast and gather between participants;
//! - [`leader`]: nodes whose rows are real on participant 0 alone;
//! - [`pass_through`]: the methods of nodes that pass their input's rows
//!   through;
//! - [`reuse`]: a subplan read more than once, run once;
//! - [`implied`]: the column equalities a filter implies, written out;
//! - [`ship`]: the plan's codec, leader to participants;
//! - [`share`]: deterministic shares of a list among participants;
//! - [`union`]: UNION ALL of distributed inputs, where each participant is;
//! - [`explain`]: the EXPLAIN text of an SPMD plan and its traffic.

pub mod distribute;
pub mod estimate;
pub mod exchange;
pub mod explain;
pub mod implied;
pub mod joins;
pub mod leader;
pub mod pass_through;
pub mod reuse;
pub mod share;
pub mod ship;
pub mod union;
