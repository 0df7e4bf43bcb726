//! Running across processes: the parallel section that launches the
//! workers and shares the dynamic shared memory, each participant's run
//! with interrupts held, and the runtime's platform in a backend.
//!
//! - [`parallel`]: the DSM, the launch handshake, the worker entry
//!   point's side, and their teardown;
//! - [`participate`]: running one participant with interrupts held;
//! - [`platform`]: latches, interrupts and dead workers, for the runtime;
//! - [`run`]: a planned query run by the leader and its workers;
//! - [`explain`]: its EXPLAIN, as the run knows it;
//! - [`payload`]: what the leader publishes for its workers in the
//!   section's segment;
//! - [`results`]: a result written into a set-returning function's
//!   tuplestore.

pub mod explain;
pub mod parallel;
pub mod participate;
pub mod payload;
pub mod platform;
pub mod results;
pub mod run;
