//! The SQL-callable surface: functions a user calls by name.
//!
//! - [`query`]: `weft.query` and `weft.explain`, DataFusion SQL over this
//!   database's tables;
//! - [`order`]: their joins in the order of Postgres's plan of the same
//!   SQL;
//! - [`mesh_bench`]: `weft.mesh_bench`, the transport's check in real
//!   Postgres.

pub mod mesh_bench;
pub mod order;
pub mod query;
