//! weft's runtime: async endpoints over weft-core's rings, scheduled on a
//! current-thread tokio runtime per participant that parks on the
//! platform (Postgres latches, or threads in tests) instead of spinning;
//! Arrow record batch streams over those endpoints; cancellation through
//! the mesh's abort; per-edge metrics; and [`LocalMesh`], which runs a
//! whole mesh of participants on threads for tests and benchmarks.
//! Above them, DataFusion: [`ExchangeExec`] moves rows between
//! participants, the [`Distribute`] rule turns a single-process plan into
//! an SPMD plan (with [`LeaderOnlyExec`] where only participant 0 may
//! run a node), [`ShareRepeated`] runs a subplan read twice (a `WITH`
//! query) once, and [`PlanCodec`] ships that plan from the leader to
//! every participant. [`ImpliedEqualities`] writes out the column
//! equalities a filter implies, so that DataFusion can join in any order
//! Postgres's planner chose.
//!
//! Nothing here knows about Postgres: the platform seam ([`Platform`]) is
//! how pgext plugs in its latches.

mod distribute;
mod endpoint;
mod error;
mod exchange;
mod explain;
mod implied;
mod leader;
mod local_mesh;
mod metrics;
mod participant;
mod platform;
mod reuse;
mod share;
mod ship;
mod stream;

pub use distribute::{estimated_rows, participant_config, spmd_config, Distribute};
pub use endpoint::{Inbox, Outbox};
pub use error::RuntimeError;
pub use exchange::{ExchangeExec, ExchangeMode, Senders, QUERY_FAILURE_CODE};
pub use explain::explain;
pub use implied::ImpliedEqualities;
pub use leader::LeaderOnlyExec;
pub use local_mesh::LocalMesh;
pub use metrics::{Edge, EdgeStats, Metrics};
pub use participant::{AbortHandle, Config, Participant, RunResult, FAILURE_CODE, INTERRUPT_CODE};
pub use platform::{Latch, Platform, ThreadPlatform};
pub use reuse::{ShareRepeated, SharedExec, SharedState, SHARE_ROWS};
pub use share::{share, share_range};
pub use ship::{exchange_count, PlanCodec};
pub use stream::{BatchReceiver, BatchSender};

// Endpoints and streams run inside DataFusion streams, which must be Send.
const _: () = {
    const fn send<T: Send>() {}
    send::<Outbox>();
    send::<Inbox>();
    send::<BatchSender>();
    send::<BatchReceiver>();
};
