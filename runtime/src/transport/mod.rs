//! Moving bytes and Arrow batches between participants: async endpoints
//! over weft-core's rings, the participant that runs them on a
//! current-thread tokio runtime parked on the platform, and a mesh of
//! threads for tests. Nothing here knows about DataFusion plans.
//!
//! - [`platform`]: how a participant sleeps and wakes another (the seam
//!   pgext fills with Postgres latches);
//! - [`participant`]: one participant's runtime, its mesh and its abort;
//! - [`endpoint`]: [`Outbox`](endpoint::Outbox) and
//!   [`Inbox`](endpoint::Inbox), bytes over one ring;
//! - [`stream`]: Arrow record batch streams over an endpoint pair;
//! - [`metrics`]: per-edge traffic and stalls, for EXPLAIN ANALYZE;
//! - [`error`]: why a participant's exchange work stopped;
//! - [`local_mesh`]: a whole mesh of participants on threads.

pub mod endpoint;
pub mod error;
pub mod local_mesh;
pub mod metrics;
pub mod participant;
pub mod platform;
pub mod stream;
