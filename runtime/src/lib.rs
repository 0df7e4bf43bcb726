//! weft's runtime: participants that exchange Arrow record batches over
//! weft-core's rings, and DataFusion plans run SPMD across them. Nothing
//! here knows about Postgres: the platform seam ([`Platform`]) is how
//! pgext plugs in its latches.
//!
//! - [`transport`](crate::transport): async endpoints over the rings,
//!   scheduled on a current-thread tokio runtime per participant that
//!   parks on the platform instead of spinning; Arrow record batch
//!   streams over them; cancellation through the mesh's abort; per-edge
//!   metrics; and [`LocalMesh`], a whole mesh of participants on threads
//!   for tests and benchmarks.
//! - [`spmd`](crate::spmd): DataFusion above the transport.
//!   [`ExchangeExec`] moves rows between participants, the [`Distribute`]
//!   rule turns a single-process plan into an SPMD plan (with
//!   [`LeaderOnlyExec`] where only participant 0 may run a node, and
//!   [`ParticipantUnionExec`] where a union's inputs are spread),
//!   [`ShareRepeated`] runs a subplan read twice (a `WITH` query) once,
//!   [`PlanCodec`] ships the plan from the leader to every participant,
//!   and [`ImpliedEqualities`] writes out the column equalities a filter
//!   implies, so that DataFusion can join in any order Postgres's planner
//!   chose.
//!
//! Everything a user of the crate needs is re-exported here.

mod spmd;
mod transport;

pub use spmd::distribute::{participant_config, spmd_config, Distribute};
pub use spmd::estimate::estimated_rows;
pub use spmd::exchange::{ExchangeExec, ExchangeMode, Senders, QUERY_FAILURE_CODE};
pub use spmd::explain::{exchange_traffic, explain, operator_runs, ExchangeTraffic, ExplainNode, OperatorRun};
pub use spmd::implied::ImpliedEqualities;
pub use spmd::joins;
pub use spmd::leader::LeaderOnlyExec;
pub use spmd::reuse::{PlanBytes, ShareRepeated, SharedExec, SharedState, SHARE_ROWS};
pub use spmd::share::{share, share_range};
pub use spmd::ship::{exchange_count, PlanCodec};
pub use spmd::union::ParticipantUnionExec;
pub use transport::endpoint::{Inbox, Outbox};
pub use transport::error::{CodedError, RuntimeError};
pub use transport::local_mesh::LocalMesh;
pub use transport::metrics::{Edge, EdgeStats, Metrics};
pub use transport::participant::{AbortHandle, Config, Participant, RunResult, FAILURE_CODE, INTERRUPT_CODE};
pub use transport::platform::{Latch, Platform, ThreadPlatform};
pub use transport::stream::{BatchReceiver, BatchSender};

// Endpoints and streams run inside DataFusion streams, which must be Send.
const _: () = {
    const fn send<T: Send>() {}
    send::<Outbox>();
    send::<Inbox>();
    send::<BatchSender>();
    send::<BatchReceiver>();
};
