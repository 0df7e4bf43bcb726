//! Running across processes: the parallel section that launches the
//! workers and shares the dynamic shared memory, each participant's run
//! with interrupts held, and the runtime's platform in a backend.
//!
//! - [`parallel`]: the DSM, the launch handshake, the worker entry
//!   point's side, and their teardown;
//! - [`participate`]: running one participant with interrupts held;
//! - [`platform`]: latches, interrupts and dead workers, for the runtime.

pub mod parallel;
pub mod participate;
pub mod platform;
