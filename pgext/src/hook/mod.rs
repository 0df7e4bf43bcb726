//! Plain SQL taken over: the planner hook that decides, the translation
//! of an analyzed Query into a DataFusion plan, and the Custom Scan that
//! runs it.
//!
//! - [`explain`]: EXPLAIN of a taken-over query in Postgres's own form;
//! - [`planner`]: the planner and EXPLAIN hooks, and the cost gate;
//! - [`insert`]: `INSERT .. SELECT` read as the SELECT of its rows;
//! - [`translate`]: analyzed Postgres Queries as DataFusion plans, from
//!   an allowlist of exact operators and functions;
//! - [`refusal`]: why weft leaves a query to Postgres;
//! - [`scan`]: Custom Scan (Weft), which runs the plan and returns its
//!   rows, or hands the query back to the stock plan.

pub mod explain;
pub mod insert;
pub mod planner;
pub mod refusal;
pub mod scan;
pub mod translate;
